/*
 * The power-loss simulation shared by tests/test_powerloss_*.c.  Each test builds a
 * multi-segment log (8 KiB segments, batches of varying record counts and sizes with
 * tagged contents, each waited so that rotation happens at group boundaries), keeps
 * the exact list of batches, its on-disk layout (parsed with tests/layout_oracle.h,
 * independently of the library) and a pristine copy of the directory.  The log is
 * written buffered (frames from offset 64, no pads) and its last segment is cut at
 * its last frame, as a log whose segments grew as they were written
 * (prepared_segments 0) leaves it: tests/test_prepared.c covers what direct I/O and
 * prepared or recycled files leave after a power loss.  Then each program damages
 * fresh copies of it in its own ways and checks the outcome with verify_mode().
 *
 * The expected outcome follows from the comment at the top of src/recovery.c:
 * TOLERATE_TAIL cuts damage in the last segment's frames and refuses any other
 * damage; ABSOLUTE refuses any damage; POINT_IN_TIME keeps everything before the
 * first damage, cuts that segment there and removes every later one (and refuses
 * when the first segment's header is the damage: nothing identifies the log;
 * docs/recovery.md); a last segment of at most 64 bytes with an invalid header (a
 * torn rotation) gets its header rewritten except in ABSOLUTE.  A refusal is
 * -EBADMSG, changes no file (ringlog_open may leave an empty LOCK behind, nothing
 * else), and names the file, offset and LSN (ringlog_last_error(), ringlog_check()).
 * What an open keeps is checked record by record against the batches (a
 * batch-aligned prefix at the original LSNs), the segment files against the pristine
 * bytes, the recovery report field by field (and byte for byte against
 * ringlog_check's), and an append after the recovery must land right after it and
 * survive a reopen.  A reader on each damaged copy, before recovery, must return that
 * same prefix and no more.
 *
 * Seeded: the seed is printed; RINGLOG_POWERLOSS_SEED=0x... repeats a run.  The
 * reader case described at expect_reader_before_recovery() fails the test
 * (RINGLOG_POWERLOSS_STRICT=0 only counts it, for bisecting).
 */
#ifndef RL_TEST_POWERLOSS_H
#define RL_TEST_POWERLOSS_H

#include "layout_oracle.h"
#include "scenario.h"
#include "snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#define SEG_BYTES 8192u
#define RING_BYTES (1u << 16)
#define HDR 64u
#define MAX_SEGS 256
#define TAG_BASE 0x5eed000000000000ull
#define TAG_EXTRA 0xa11ce00000000000ull

#define TOLERATE RINGLOG_RECOVER_TOLERATE_TAIL
#define ABSOLUTE RINGLOG_RECOVER_ABSOLUTE
#define PIT RINGLOG_RECOVER_POINT_IN_TIME


extern unsigned g_test_no; /* cases run so far: each builds its own world */
extern int g_strict;
extern unsigned g_reader_bug;

struct batch {
	uint64_t first_lsn, tag;
	unsigned nrecs, len;
};

struct frame {
	uint64_t off, len;
	size_t batch;
};

struct seg {
	char name[32];
	uint64_t first_lsn, size;
	struct frame *fr;
	size_t nfr;
};

struct world {
	char *base;
	char pristine[4096], work[4096], other[4096];
	struct ringlog_options o;
	struct batch *b;
	size_t nb, capb;
	uint64_t next_lsn; /* after the last batch */
	struct seg seg[MAX_SEGS];
	size_t nseg;
	uint64_t log_id;
	struct snap snap; /* the pristine directory */
	uint64_t rng;
	unsigned opens, scenarios, extras;
	struct timespec t0;
};

/* The first damage in a damaged copy, as this test placed it. */
struct expect {
	int damaged;	   /* recovery must find damage at (dfile, doff) */
	int torn_rotation; /* the last segment is at most 64 bytes with an invalid header */
	size_t dfile;	   /* index among the damaged directory's segments */
	uint64_t doff;
	uint64_t dlsn;	    /* the LSN expected there = the first LSN not kept */
	const char *reason; /* a substring of damage_reason, or NULL */
	uint64_t cut_end;   /* damage in the last segment's tail: where its torn bytes end
			     * (settle_tail; 0: the end of the file) */
};

struct outcome {
	int ok;		   /* the open succeeds */
	size_t kept_files; /* segments of the damaged directory that stay */
	int cut;	   /* the last of them is cut at doff */
	uint64_t cut_bytes;
	uint32_t dropped;
};

struct extra {
	uint64_t first, tag;
	unsigned nrecs, len;
};

void expect_dir_is(const char *dir, const struct snap *s, int ignore_lock, const char *after);
void add_batches(struct world *w, size_t count, int small);
void exact_last_segment(const char *dir);
void write_batches(struct world *w, const char *dir, size_t from, size_t to);
void free_layout(struct world *w);
void parse_layout(struct world *w);
void build_world(struct world *w, unsigned test_no);
int pl_setup(void **state);
int pl_teardown(void **state);
size_t batch_at(const struct world *w, uint64_t lsn);
uint64_t lsn_at(const struct world *w, size_t k, uint64_t off);
uint64_t boundary_le(const struct world *w, size_t k, uint64_t c);
const struct frame *frame_holding(const struct world *w, size_t k, uint64_t off);
struct outcome outcome_for(const struct expect *e, uint32_t mode, size_t nfiles,
				  const uint64_t *sizes);
void settle_tail(const struct world *w, const struct snap *dmg, struct expect *e);
const char *mode_name(uint32_t mode);
void expect_damage_fields(const struct ringlog_recovery *r, const struct expect *e,
				 const char *dname);
void expect_report(const struct ringlog_recovery *r, int rc, const struct expect *e,
			  uint32_t mode, size_t nfiles, const uint64_t *sizes, const char *dname);
void expect_last_error_names(const char *name, uint64_t off);
int read_prefix(const struct world *w, const char *dir, size_t keep, const struct extra *x,
		       size_t *whole, unsigned *partial);
void expect_contents(const struct world *w, const char *dir, size_t keep,
			    const struct extra *x);
void expect_reader_before_recovery(const struct world *w, const struct snap *dmg,
					  const struct expect *e, size_t nfiles, size_t keep);
void expect_segments_after_open(const struct world *w, const struct snap *dmg,
				       const struct expect *e, const struct outcome *oc);
int verify_mode(struct world *w, const struct snap *dmg, const struct expect *given,
		       uint32_t mode, int full);
struct expect expect_at_byte(const struct world *w, size_t s, uint64_t off);

/* Run `tests` (each with pl_setup/pl_teardown) after printing the seed; `name` is the
 * program's.  Returns what cmocka_run_group_tests returns. */
int pl_run(const char *name, const struct CMUnitTest *tests, size_t n);

#endif
