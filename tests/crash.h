/*
 * The crash-torture harness shared by tests/test_crash*.c.  A child process opens the log and appends from several threads;
 * each thread reports every batch that ringlog_wait() acknowledged to the parent
 * through a pipe.  The parent SIGKILLs the child at a random instant, reaps it, and
 * then (with no writer running) checks the log:
 *   1. ringlog_open() recovers it;
 *   2. every batch acknowledged by any incarnation so far is there, at its LSN,
 *      whole and with the contents its tag implies;
 *   3. every batch in the log is whole and valid, the LSNs are dense from 1, and the
 *      log is a prefix of what each incarnation wrote (per thread, batch numbers are
 *      dense from 0);
 *   4. a marker batch appended after recovery is acknowledged and survives into the
 *      next cycle.
 * LSNs after the last acknowledged one may be reused after a crash, so batches are
 * identified by (first LSN, tag) and only acknowledged ones are required.
 *
 * test_crash runs these cycles in a temporary directory; test_crash_follow adds a
 * reader in the parent; test_crash_fs runs them on loop-mounted ext4, xfs and btrfs.
 *
 * Environment: RINGLOG_CRASH_SECONDS (time budget of test_crash, default 20; each
 * loop-mounted filesystem gets a quarter of it, an eighth under sanitizers),
 * RINGLOG_CRASH_SEED (replay the random choices of a run -- kill delays, options --
 * printed at the start; the timing itself cannot be replayed), RINGLOG_CRASH_VERBOSE
 * (one line per cycle).
 */
#ifndef RL_TEST_CRASH_H
#define RL_TEST_CRASH_H

#include "testutil.h"

#include <stdint.h>

enum {
	CHILD_THREADS = 4,
	MARKER_THREAD = 0xff, /* thread field of the parent's marker batches */
	MAX_RECS = 8,	      /* records per batch: 1..MAX_RECS */
	MIN_REC_LEN = 17,     /* tu_record_ok needs > 16 bytes to check anything */
	MAX_REC_LEN = MIN_REC_LEN + 143,
	WINDOW_MAX = 32,
	SEGMENT_BYTES = 64 << 10,
	MAX_CYCLES = 200,
	MIN_CYCLES = 5,
	DEFAULT_SECONDS = 20,
	FOLLOW_CYCLES = 4,
	KILL_MIN_MS = 5, /* kill delay after the child's open */
	KILL_MAX_MS = 150,
	EARLY_KILL_MAX_US = 25000, /* kill delay after the fork, for early kills */
	FS_MAX_CYCLES = 40,	   /* on a loop-mounted filesystem */
	FS_MIN_CYCLES = 3,
	FS_IMAGE_MB = 512, /* sparse: only what the log writes takes space */
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CRASH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CRASH_SANITIZED 1
#endif
#endif
#ifndef CRASH_SANITIZED
#define CRASH_SANITIZED 0
#endif

struct totals {
	unsigned cycles, kills, early_kills, killed_before_open, tails_cut;
	uint64_t acked_batches, log_records, follower_batches;
	uint64_t max_kill_ms;
};

extern uint64_t g_seed; /* printed by crash_start; RINGLOG_CRASH_SEED replays it */
extern uint64_t g_rng;	/* the random choices of the running case */
extern char *g_dir;	/* the log directory (removed by crash_teardown) */
extern char *g_mnt;	/* the loop-mounted filesystem g_dir is on, or NULL */
extern struct ringlog *g_log; /* a log the parent has open, closed by crash_teardown */

/* Require io_uring, pick (or take) the seed and print it, prefixed with `name`. */
void crash_start(const char *name);
/* cmocka teardown: kill and reap the child, stop the follower, remove g_dir, unmount. */
int crash_teardown(void **state);
uint64_t now_ns(void);
/* The tag of batch `batch` of thread `thread` of incarnation `inc`. */
uint64_t make_tag(unsigned inc, unsigned thread, uint32_t batch);
/* Append the parent's marker batch (tag) to `log` and wait for it; returns its LSN. */
uint64_t append_marker(struct ringlog *log, uint64_t tag, unsigned cycle);
/* One cycle: fork a writer, kill it, recover, check; with a follower reading along. */
void run_cycle(unsigned cycle, int with_follower, struct totals *tot);
/* RINGLOG_CRASH_SECONDS, or DEFAULT_SECONDS. */
double budget_seconds(void);
/* Cycles in g_dir for `secs` seconds or `max_cycles`; at least `min_cycles` must run. */
void run_cycles(const char *where, double secs, unsigned max_cycles, unsigned min_cycles);

#endif
