/*
 * Power-loss simulation.  Each test builds a multi-segment log (8 KiB segments,
 * batches of varying record counts and sizes with tagged contents, each waited so
 * that rotation happens at group boundaries), keeps the exact list of batches, its
 * on-disk layout (parsed independently of the library) and a pristine copy of the
 * directory.  The log is written buffered (frames from offset 64, no pads) and its
 * last segment is cut at its last frame, as a log whose segments grew as they were
 * written (prepared_segments 0) leaves it: tests/test_prepared.c covers what direct
 * I/O and prepared or recycled files leave after a power loss.  Then, for many
 * damage scenarios, each on a fresh copy:
 *
 *  1. the last segment cut at arbitrary offsets (in the header, at frame boundaries,
 *     mid-frame);
 *  2. the tail of the last segment zeroed, and zeros appended after it;
 *  3. a byte flipped in one of the last frames of the last segment;
 *  4. whole trailing segments deleted;
 *  5. a sealed segment damaged: a flipped byte, a truncation, bytes after its last
 *     frame, a deleted middle segment, a same-named segment of another log; and a
 *     point-in-time repair interrupted between its steps;
 *  6. ringlog_check in every mode, which must change nothing and agree with open.
 *
 * For every scenario the expected outcome follows from the comment at the top of
 * src/recovery.c: TOLERATE_TAIL cuts damage in the last segment's frames and refuses
 * any other damage; ABSOLUTE refuses any damage; POINT_IN_TIME keeps everything
 * before the first damage, cuts that segment there and removes every later one (and
 * refuses when the first segment's header is the damage: nothing identifies the log;
 * docs/recovery.md); a last segment of at most 64 bytes with an invalid header (a torn
 * rotation) gets its header rewritten except in ABSOLUTE.  A refusal is -EBADMSG,
 * changes no file (ringlog_open may leave an empty LOCK behind, nothing else), and
 * names the file, offset and LSN (ringlog_last_error(), ringlog_check()).  What an
 * open keeps is checked record by record against the batches (a batch-aligned prefix
 * at the original LSNs), the segment files against the pristine bytes, the recovery
 * report field by field (and byte for byte against ringlog_check's), and an append
 * after the recovery must land right after it and survive a reopen.  A reader on each
 * damaged copy, before recovery, must return that same prefix and no more.
 *
 * Seeded: the seed is printed; RINGLOG_POWERLOSS_SEED=0x... repeats a run.
 * The reader case described at expect_reader_before_recovery() fails the test
 * (RINGLOG_POWERLOSS_STRICT=0 only counts it, for bisecting).
 */
#include "testutil.h"
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG_BYTES 8192u
#define RING_BYTES (1u << 16)
#define HDR 64u
#define MAX_SEGS 256
#define TAG_BASE 0x5eed000000000000ull
#define TAG_EXTRA 0xa11ce00000000000ull

#define TOLERATE RINGLOG_RECOVER_TOLERATE_TAIL
#define ABSOLUTE RINGLOG_RECOVER_ABSOLUTE
#define PIT RINGLOG_RECOVER_POINT_IN_TIME

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(undefined_behavior_sanitizer)
#define PL_SANITIZED 1
#endif
#endif
#ifndef PL_SANITIZED
#define PL_SANITIZED 0
#endif

/* Fewer scenarios under sanitizers: there every recovery pass costs far more (each
 * segment scan allocates a 1 MiB window, which ASan maps and unmaps). */
static unsigned iters(unsigned n)
{
	return PL_SANITIZED ? (n + 4) / 5 : n;
}

static uint64_t g_seed;
static unsigned g_test_no;
static char g_what[256]; /* the scenario being checked, for failure messages */

#define SCEN(...) snprintf(g_what, sizeof(g_what), __VA_ARGS__)

#define EXPECT(c)                                                                                  \
	do {                                                                                       \
		if (!(c))                                                                          \
			fail_msg("%s:%d: expected %s [scenario: %s; seed 0x%016" PRIx64 "]",       \
				 __FILE__, __LINE__, #c, g_what, g_seed);                          \
	} while (0)

#define EXPECT_U64(a, b)                                                                           \
	do {                                                                                       \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                   \
		if (a_ != b_)                                                                      \
			fail_msg("%s:%d: %s == %s: %" PRIu64 " != %" PRIu64                        \
				 " [scenario: %s; seed 0x%016" PRIx64 "]",                         \
				 __FILE__, __LINE__, #a, #b, a_, b_, g_what, g_seed);              \
	} while (0)

#define EXPECT_INT(a, b)                                                                           \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			fail_msg(                                                                  \
			    "%s:%d: %s == %s: %lld != %lld [scenario: %s; last ringlog error: "    \
			    "%s; seed 0x%016" PRIx64 "]",                                          \
			    __FILE__, __LINE__, #a, #b, a_, b_, g_what, ringlog_last_error(),      \
			    g_seed);                                                               \
	} while (0)

/* ---- PRNG (splitmix64) ---- */

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static uint64_t below(uint64_t *s, uint64_t n)
{
	return rnd(s) % n;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- a directory held in memory ---- */

/* Fail unless `dir` holds exactly the files of `s`, byte for byte.  With
 * ignore_lock, a LOCK file present on one side only is not a difference. */
static void expect_dir_is(const char *dir, const struct snap *s, int ignore_lock, const char *after)
{
	struct snap now;
	snap_load(dir, &now, 0);
	size_t i = 0, j = 0;
	while (i < s->n || j < now.n) {
		int c = i == s->n ? 1 : j == now.n ? -1 : strcmp(s->f[i].name, now.f[j].name);
		const char *name = c <= 0 ? s->f[i].name : now.f[j].name;
		if (c != 0 && ignore_lock && strcmp(name, "LOCK") == 0) {
			if (c > 0)
				EXPECT_U64(now.f[j].size, 0);
			c < 0 ? i++ : j++;
			continue;
		}
		if (c < 0)
			fail_msg("%s removed %s [scenario: %s; seed 0x%016" PRIx64 "]", after, name,
				 g_what, g_seed);
		if (c > 0)
			fail_msg("%s created %s [scenario: %s; seed 0x%016" PRIx64 "]", after, name,
				 g_what, g_seed);
		if (s->f[i].size != now.f[j].size ||
		    memcmp(s->f[i].data, now.f[j].data, s->f[i].size) != 0)
			fail_msg("%s changed %s (size %zu -> %zu) [scenario: %s; seed 0x%016" PRIx64
				 "]",
				 after, name, s->f[i].size, now.f[j].size, g_what, g_seed);
		i++;
		j++;
	}
	snap_free(&now);
}

/* ---- the original log ---- */

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

static void add_batches(struct world *w, size_t count, int small)
{
	for (size_t i = 0; i < count; i++) {
		if (w->nb == w->capb) {
			w->capb = w->capb ? 2 * w->capb : 128;
			w->b = realloc(w->b, w->capb * sizeof(*w->b));
			assert_non_null(w->b);
		}
		struct batch *b = &w->b[w->nb];
		uint64_t r = below(&w->rng, 100);
		if (small)
			b->nrecs = 1 + (unsigned)below(&w->rng, 3);
		else if (r < 25)
			b->nrecs = 1;
		else if (r < 60)
			b->nrecs = 2 + (unsigned)below(&w->rng, 3);
		else
			b->nrecs = 5 + (unsigned)below(&w->rng, 12);
		/* >= 17 bytes, so every record carries its tag and index. */
		b->len = 17 + (unsigned)below(&w->rng, small ? 64 : 360);
		b->tag = TAG_BASE + w->nb;
		b->first_lsn = w->next_lsn;
		w->next_lsn += b->nrecs;
		w->nb++;
	}
}

/* Remove the prepared segment files from `dir`, and cut its last segment at its last
 * frame: the log as a writer without prepared files leaves it. */
static void exact_last_segment(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "pool.", 5) == 0)
			assert_int_equal(unlink(tu_path(dir, de->d_name)), 0);
	closedir(d);
	char last[4096];
	snprintf(last, sizeof(last), "%s", tu_last_segment(dir));
	tu_truncate(last, tu_data_end(last));
}

/* Append batches [from, to) to the log in `dir`, waiting for each, and close. */
static void write_batches(struct world *w, const char *dir, size_t from, size_t to)
{
	struct ringlog *log = tu_open(dir, &w->o);
	w->opens++;
	for (size_t i = from; i < to; i++) {
		const struct batch *b = &w->b[i];
		uint64_t first = tu_append_tagged(log, b->tag, b->nrecs, b->len);
		EXPECT_U64(first, b->first_lsn);
		EXPECT_INT(ringlog_wait(log, first + b->nrecs - 1), 0);
	}
	EXPECT_INT(ringlog_close(log), 0);
	exact_last_segment(dir);
}

static void free_layout(struct world *w)
{
	for (size_t i = 0; i < w->nseg; i++)
		free(w->seg[i].fr);
	w->nseg = 0;
}

/* Parse the pristine snapshot with this file's own reading of docs/format.md and
 * check that it holds exactly the batches, in order, one frame each. */
static void parse_layout(struct world *w)
{
	size_t idx[MAX_SEGS];
	size_t n = snap_segs(&w->snap, idx, MAX_SEGS);
	size_t bi = 0;
	uint32_t prev_crc = 0;
	w->nseg = n;
	for (size_t k = 0; k < n; k++) {
		const struct file *f = &w->snap.f[idx[k]];
		struct seg *sg = &w->seg[k];
		memset(sg, 0, sizeof(*sg));
		snprintf(sg->name, sizeof(sg->name), "%.25s", f->name);
		sg->size = f->size;
		EXPECT(f->size >= HDR);
		const uint8_t *d = f->data;
		EXPECT_U64(get32(d), 0x47534c52u);
		sg->first_lsn = get64(d + 8);
		char want[32];
		snprintf(want, sizeof(want), "%020" PRIu64 ".rlog", sg->first_lsn);
		EXPECT(strcmp(want, f->name) == 0);
		if (k == 0)
			w->log_id = get64(d + 16);
		EXPECT_U64(get64(d + 16), w->log_id);
		EXPECT_U64(get64(d + 24), sg->first_lsn - 1);
		EXPECT_U64(get32(d + 32), prev_crc);
		EXPECT_U64(sg->first_lsn, bi < w->nb ? w->b[bi].first_lsn : w->next_lsn);
		size_t cap = 0;
		uint64_t off = HDR;
		while (off < f->size) {
			EXPECT(off + 32 <= f->size);
			EXPECT(bi < w->nb);
			const struct batch *b = &w->b[bi];
			EXPECT_U64(get32(d + off), 0x52464c52u);
			uint64_t len = get32(d + off + 8);
			EXPECT_U64(len, RINGLOG_FRAME_BYTES(b->nrecs, (uint64_t)b->nrecs * b->len));
			EXPECT_U64(get32(d + off + 12), b->nrecs);
			EXPECT_U64(get64(d + off + 16), b->first_lsn);
			EXPECT_U64(get64(d + off + 24), w->log_id);
			EXPECT(off + len <= f->size);
			if (sg->nfr == cap) {
				cap = cap ? 2 * cap : 16;
				sg->fr = realloc(sg->fr, cap * sizeof(*sg->fr));
				assert_non_null(sg->fr);
			}
			sg->fr[sg->nfr++] = (struct frame){off, len, bi};
			prev_crc = get32(d + off + 4);
			off += len;
			bi++;
		}
		EXPECT_U64(off, f->size);
	}
	EXPECT_U64(bi, w->nb);
}

static void build_world(struct world *w, unsigned test_no)
{
	memset(w, 0, sizeof(*w));
	clock_gettime(CLOCK_MONOTONIC, &w->t0);
	w->rng = g_seed ^ (0x632be59bd9b4e019ull * (test_no + 1));
	w->next_lsn = 1;
	w->base = tu_tmpdir();
	snprintf(w->pristine, sizeof(w->pristine), "%s/pristine", w->base);
	snprintf(w->work, sizeof(w->work), "%s/work", w->base);
	snprintf(w->other, sizeof(w->other), "%s/other", w->base);
	tu_options(&w->o, SEG_BYTES, RING_BYTES);
	w->o.io_mode = RINGLOG_IO_BUFFERED;
	w->o.prepared_segments = 0; /* recovery's files only: no pool files come and go */
	SCEN("building the original log");
	add_batches(w, 50 + below(&w->rng, 30), 0);
	write_batches(w, w->pristine, 0, w->nb);
	/* The last segment must hold several frames (not be a fresh header-only one) and
	 * the log several segments; add small batches until it does. */
	for (unsigned round = 0;; round++) {
		snap_load(w->pristine, &w->snap, 0);
		parse_layout(w);
		if (w->nseg >= 4 && w->seg[w->nseg - 1].nfr >= 5)
			break;
		EXPECT(round < 40);
		free_layout(w);
		snap_free(&w->snap);
		size_t from = w->nb;
		add_batches(w, 3, 1);
		write_batches(w, w->pristine, from, w->nb);
	}
	EXPECT(snap_find(&w->snap, "LOCK") >= 0);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	build_world(w, g_test_no++);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs =
	    (double)(t1.tv_sec - w->t0.tv_sec) + (double)(t1.tv_nsec - w->t0.tv_nsec) / 1e9;
	size_t frames = 0;
	for (size_t i = 0; i < w->nseg; i++)
		frames += w->seg[i].nfr;
	printf("    log of %zu batches in %zu segments (%zu frames); %u scenarios, %u opens, "
	       "%.2f s\n",
	       w->nb, w->nseg, frames, w->scenarios, w->opens, secs);
	fflush(stdout);
	SCEN("teardown: the pristine copy must be untouched");
	expect_dir_is(w->pristine, &w->snap, 0, "the tests");
	tu_rmrf(w->base);
	free(w->base);
	free_layout(w);
	snap_free(&w->snap);
	free(w->b);
	free(w);
	return 0;
}

/* Index of the batch that starts at `lsn`; nb for the LSN after the last batch. */
static size_t batch_at(const struct world *w, uint64_t lsn)
{
	if (lsn == w->next_lsn)
		return w->nb;
	size_t lo = 0, hi = w->nb;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (w->b[mid].first_lsn < lsn)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == w->nb || w->b[lo].first_lsn != lsn)
		fail_msg("LSN %" PRIu64 " does not start a batch [scenario: %s]", lsn, g_what);
	return lo;
}

/* The LSN of the frame at frame boundary `off` of segment k (the LSN after the
 * segment's frames when off is its end). */
static uint64_t lsn_at(const struct world *w, size_t k, uint64_t off)
{
	const struct seg *sg = &w->seg[k];
	for (size_t i = 0; i < sg->nfr; i++)
		if (sg->fr[i].off == off)
			return w->b[sg->fr[i].batch].first_lsn;
	EXPECT_U64(off, sg->size);
	if (sg->nfr == 0)
		return sg->first_lsn;
	const struct batch *b = &w->b[sg->fr[sg->nfr - 1].batch];
	return b->first_lsn + b->nrecs;
}

/* The last frame boundary at or before c (c >= HDR) in segment k. */
static uint64_t boundary_le(const struct world *w, size_t k, uint64_t c)
{
	const struct seg *sg = &w->seg[k];
	uint64_t b = HDR;
	for (size_t i = 0; i < sg->nfr; i++)
		if (sg->fr[i].off + sg->fr[i].len <= c)
			b = sg->fr[i].off + sg->fr[i].len;
	return b;
}

/* The frame of segment k that holds byte `off` (off >= HDR). */
static const struct frame *frame_holding(const struct world *w, size_t k, uint64_t off)
{
	const struct seg *sg = &w->seg[k];
	for (size_t i = 0; i < sg->nfr; i++)
		if (off >= sg->fr[i].off && off < sg->fr[i].off + sg->fr[i].len)
			return &sg->fr[i];
	fail_msg("no frame holds offset %" PRIu64 " of %s", off, sg->name);
	return NULL;
}

/* ---- what recovery must do ---- */

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

static struct outcome outcome_for(const struct expect *e, uint32_t mode, size_t nfiles,
				  const uint64_t *sizes)
{
	struct outcome o = {.kept_files = nfiles};
	if (e->torn_rotation) {
		o.ok = mode != ABSOLUTE;
		o.cut_bytes = sizes[nfiles - 1];
		return o;
	}
	if (!e->damaged) {
		o.ok = 1;
		return o;
	}
	int in_tail = e->dfile == nfiles - 1 && e->doff >= HDR;
	if (mode == TOLERATE)
		o.ok = in_tail;
	else if (mode == ABSOLUTE)
		o.ok = 0;
	else /* the first segment's header identifies the log: nothing to keep without it */
		o.ok = !(e->dfile == 0 && e->doff == 0);
	if (!o.ok)
		return o;
	if (e->doff == 0) { /* a segment's header or its chain */
		o.kept_files = e->dfile;
		o.dropped = (uint32_t)(nfiles - e->dfile);
	} else {
		o.kept_files = e->dfile + 1;
		o.cut = 1;
		o.cut_bytes = (e->cut_end ? e->cut_end : sizes[e->dfile]) - e->doff;
		o.dropped = (uint32_t)(nfiles - e->dfile - 1);
	}
	return o;
}

/*
 * This test's reading of the last segment's tail rule (docs/format.md, "The end of
 * the log"): after the last valid frame, at e->doff, the bytes are a torn tail only
 * if they hold, at an 8-byte offset, a frame, hole or pad header of this log whose
 * LSN is at least e->dlsn.  Anything else there is stale and the log simply ends (no
 * damage).  A torn tail is
 * cut up to the end of the last such entry (its length if plausible, else its 32
 * header bytes; the end of the file at most): zeroed in place, or truncated when that
 * reaches the end of the file (e->cut_end = 0).
 */
static void settle_tail(const struct world *w, const struct snap *dmg, struct expect *e)
{
	size_t idx[MAX_SEGS];
	size_t n = snap_segs(dmg, idx, MAX_SEGS);
	if (!e->damaged || e->torn_rotation || e->dfile != n - 1 || e->doff < HDR)
		return;
	const struct file *f = &dmg->f[idx[e->dfile]];
	uint64_t end = 0;
	for (uint64_t x = e->doff; x + 32 <= f->size; x += 8) {
		const uint8_t *h = f->data + x;
		uint32_t magic = get32(h);
		if ((magic != 0x52464c52u && magic != 0x4c484c52u && magic != 0x44504c52u) ||
		    get64(h + 24) != w->log_id || get64(h + 16) < e->dlsn)
			continue;
		uint64_t len = get32(h + 8);
		if (len < 32 || len > (256u << 20))
			len = 32;
		uint64_t stop = x + len < f->size ? x + len : f->size;
		if (stop > end)
			end = stop;
	}
	if (end == 0)
		e->damaged = 0;
	else
		e->cut_end = end < f->size ? end : 0;
}

static const char *mode_name(uint32_t mode)
{
	return mode == TOLERATE ? "TOLERATE_TAIL" : mode == ABSOLUTE ? "ABSOLUTE" : "POINT_IN_TIME";
}

static void expect_damage_fields(const struct ringlog_recovery *r, const struct expect *e,
				 const char *dname)
{
	EXPECT_INT(r->damage, -EBADMSG);
	if (strcmp(r->damage_file, dname) != 0)
		fail_msg("damage_file \"%s\", expected \"%s\" (offset %" PRIu64 ", reason %s) "
			 "[scenario: %s; seed 0x%016" PRIx64 "]",
			 r->damage_file, dname, r->damage_offset, r->damage_reason, g_what, g_seed);
	EXPECT_U64(r->damage_offset, e->doff);
	EXPECT_U64(r->damage_lsn, e->dlsn);
	EXPECT(r->damage_reason[0] != '\0');
	if (e->reason && !strstr(r->damage_reason, e->reason))
		fail_msg("damage_reason \"%s\" lacks \"%s\" [scenario: %s; seed 0x%016" PRIx64 "]",
			 r->damage_reason, e->reason, g_what, g_seed);
}

/* A report (from ringlog_check, or of an open) against the expectation. */
static void expect_report(const struct ringlog_recovery *r, int rc, const struct expect *e,
			  uint32_t mode, size_t nfiles, const uint64_t *sizes, const char *dname)
{
	struct outcome oc = outcome_for(e, mode, nfiles, sizes);
	EXPECT_INT(rc, oc.ok ? 0 : -EBADMSG);
	EXPECT_U64(r->mode, mode);
	EXPECT_U64(r->segments, nfiles);
	EXPECT_U64(r->first_lsn, 1);
	EXPECT_U64(r->last_lsn, e->dlsn - 1); /* on a refusal: what was valid */
	for (size_t i = 0; i < sizeof(r->reserved) / sizeof(r->reserved[0]); i++)
		EXPECT_U64(r->reserved[i], 0);
	if (!oc.ok) {
		expect_damage_fields(r, e, dname);
		return;
	}
	EXPECT_U64(r->cut_bytes, oc.cut_bytes);
	EXPECT_U64(r->dropped_segments, oc.dropped);
	if (e->damaged) {
		expect_damage_fields(r, e, dname);
	} else if (!e->torn_rotation) {
		EXPECT_INT(r->damage, 0);
		EXPECT(r->damage_file[0] == '\0');
	}
}

/* The last error text names the file and the offset. */
static void expect_last_error_names(const char *name, uint64_t off)
{
	const char *msg = ringlog_last_error();
	int found = 0;
	for (const char *p = msg; (p = strstr(p, "offset ")) != NULL; p += 7) {
		char *end;
		unsigned long long v = strtoull(p + 7, &end, 10);
		if (end != p + 7 && v == off)
			found = 1;
	}
	if (!strstr(msg, name) || !found)
		fail_msg("ringlog_last_error() \"%s\" does not name %s at offset %" PRIu64
			 " [scenario: %s; seed 0x%016" PRIx64 "]",
			 msg, name, off, g_what, g_seed);
}

struct extra {
	uint64_t first, tag;
	unsigned nrecs, len;
};

/* The log in `dir` holds exactly batches [0, keep) at their LSNs, then `x` if any. */
/* Read the log in `dir` from its start, checking every record returned against
 * batches [0, keep) and then `x`: the right LSN, batch and contents, and nothing
 * beyond them.  Returns ringlog_reader_next's final result (or ringlog_reader_open's
 * error); *whole gets the number of batches read whole, *partial the records of a
 * batch read only in part (must be 0: a batch is whole or absent). */
static int read_prefix(const struct world *w, const char *dir, size_t keep, const struct extra *x,
		       size_t *whole, unsigned *partial)
{
	struct ringlog_reader *r = NULL;
	size_t bi = 0;
	unsigned ri = 0, xi = 0;
	*whole = 0;
	*partial = 0;
	int err = ringlog_reader_open(dir, 0, &r);
	if (err)
		return err;
	uint64_t next = 1;
	uint8_t buf[512];
	struct ringlog_record rec;
	while ((err = ringlog_reader_next(r, &rec)) == 1) {
		uint64_t tag, first;
		unsigned nrecs, len, i;
		if (bi < keep) {
			const struct batch *b = &w->b[bi];
			tag = b->tag, first = b->first_lsn, nrecs = b->nrecs, len = b->len;
			i = ri;
			if (++ri == nrecs)
				bi++, ri = 0;
		} else if (x && xi < x->nrecs) {
			tag = x->tag, first = x->first, nrecs = x->nrecs, len = x->len;
			i = xi++;
		} else {
			ringlog_reader_close(r);
			fail_msg("record %" PRIu64 " follows the expected end (%zu batches kept) "
				 "[scenario: %s; seed 0x%016" PRIx64 "]",
				 rec.lsn, keep, g_what, g_seed);
			return -1;
		}
		EXPECT_U64(rec.lsn, next);
		EXPECT_U64(rec.lsn, first + i);
		EXPECT_U64(rec.batch_first_lsn, first);
		EXPECT_U64(rec.batch_nrecs, nrecs);
		EXPECT_U64(rec.len, len);
		tu_fill_record(buf, len, tag, i);
		EXPECT(memcmp(buf, rec.data, len) == 0);
		next++;
	}
	ringlog_reader_close(r);
	*whole = bi + (x && xi == x->nrecs);
	*partial = ri + (x && xi != x->nrecs ? xi : 0);
	return err;
}

/* The log in `dir` holds exactly batches [0, keep) at their LSNs, then `x` if any. */
static void expect_contents(const struct world *w, const char *dir, size_t keep,
			    const struct extra *x)
{
	size_t whole;
	unsigned partial;
	EXPECT_INT(read_prefix(w, dir, keep, x, &whole, &partial), 0);
	EXPECT_U64(whole, keep + (x != NULL));
	EXPECT_U64(partial, 0);
}

/*
 * A reader on the damaged copy before any recovery (a reader started after the crash,
 * before the writer reopens; ringlog.h): every record before the damage, whole
 * batches only, none after it; then a clean end when the damage is a torn tail (in the
 * last segment's frames, or a torn rotation), -EBADMSG when it is in a sealed segment
 * or the segment chain.
 *
 * A sealed segment (one with successors) torn inside its header, <= 64 bytes, must
 * not read as a rotation in progress: a reader that reported a clean end there would
 * silently miss every later segment (this test found that bug in src/reader.c).
 */
static int g_strict;
static unsigned g_reader_bug;

static void expect_reader_before_recovery(const struct world *w, const struct snap *dmg,
					  const struct expect *e, size_t nfiles, size_t keep)
{
	int tail = !e->damaged || e->torn_rotation || (e->dfile == nfiles - 1 && e->doff >= HDR);
	size_t whole;
	unsigned partial;
	int err = read_prefix(w, w->work, keep, NULL, &whole, &partial);
	EXPECT_U64(partial, 0);
	if (err == -EBADMSG && whole == 0 && e->damaged && e->dfile == 0 && e->doff == 0)
		return; /* the first segment's header: ringlog_reader_open refuses */
	EXPECT_U64(whole, keep);
	if (err == 0 && !tail && e->doff == 0 && e->dfile < nfiles - 1) {
		size_t idx[MAX_SEGS];
		snap_segs(dmg, idx, MAX_SEGS);
		if (dmg->f[idx[e->dfile]].size <= HDR && !g_strict) {
			g_reader_bug++;
			return;
		}
	}
	EXPECT_INT(err, tail ? 0 : -EBADMSG);
}

/* After a successful open (the log still open): the segment files are the kept ones,
 * byte for byte (the damaged one cut at the damage, a torn header rewritten), the
 * later ones are gone, and a new segment exists only if the last kept one is full. */
static void expect_segments_after_open(const struct world *w, const struct snap *dmg,
				       const struct expect *e, const struct outcome *oc)
{
	size_t idx[MAX_SEGS];
	size_t n = snap_segs(dmg, idx, MAX_SEGS);
	uint64_t *lsns;
	size_t got = tu_segments(w->work, &lsns);
	EXPECT(got >= oc->kept_files);
	for (size_t j = 0; j < oc->kept_files && j < got; j++) {
		const struct file *src = &dmg->f[idx[j]];
		const uint8_t *want = src->data;
		size_t want_len = src->size;
		if (e->torn_rotation && j == n - 1) {
			ssize_t p = snap_find(&w->snap, src->name);
			EXPECT(p >= 0);
			want = w->snap.f[p].data; /* the header the writer had written */
			want_len = HDR;
		} else if (oc->cut && j == oc->kept_files - 1 && !e->cut_end) {
			want_len = e->doff;
		}
		uint8_t *zeroed = NULL;
		if (oc->cut && j == oc->kept_files - 1 && e->cut_end) {
			/* A torn tail cut in place: its bytes zeroed, the file as long. */
			zeroed = malloc(want_len + 1);
			memcpy(zeroed, want, want_len);
			memset(zeroed + e->doff, 0, e->cut_end - e->doff);
			want = zeroed;
		}
		EXPECT_U64(lsns[j], strtoull(src->name, NULL, 10));
		size_t len;
		uint8_t *have = read_whole(tu_path(w->work, src->name), &len);
		free(zeroed == want ? NULL : zeroed);
		if (len != want_len || memcmp(have, want, len) != 0)
			fail_msg(
			    "after the open, %s is %zu bytes, expected %zu (%s) [scenario: %s; "
			    "seed 0x%016" PRIx64 "]",
			    src->name, len, want_len,
			    len == want_len ? "contents differ" : "size differs", g_what, g_seed);
		free(have);
		free(zeroed);
	}
	/* Recovery starts no segment: the next one comes when the writer needs it. */
	EXPECT_U64(got, oc->kept_files);
	free(lsns);
}

/*
 * Put `dmg` in the work directory, run ringlog_check in every mode (nothing may
 * change), then open it in `mode` and check everything against `e`.  With `full`, a
 * successful open is followed by an append, a close and a reopen in the default
 * mode, which must find a clean log.  Returns 1 if the open succeeded.
 */
static int verify_mode(struct world *w, const struct snap *dmg, const struct expect *given,
		       uint32_t mode, int full)
{
	struct expect settled = *given;
	settle_tail(w, dmg, &settled);
	const struct expect *e = &settled;
	size_t idx[MAX_SEGS];
	uint64_t sizes[MAX_SEGS];
	size_t n = snap_segs(dmg, idx, MAX_SEGS);
	for (size_t i = 0; i < n; i++)
		sizes[i] = dmg->f[idx[i]].size;
	const char *dname = e->dfile < n ? dmg->f[idx[e->dfile]].name : "";
	struct outcome oc = outcome_for(e, mode, n, sizes);
	size_t keep = batch_at(w, e->dlsn);
	char saved[sizeof(g_what)];
	snprintf(saved, sizeof(saved), "%s", g_what);
	snprintf(g_what, sizeof(g_what), "%.200s / %s", saved, mode_name(mode));
	w->scenarios++;

	snap_write(dmg, w->work);
	struct ringlog_recovery crep[3];
	int crc[3];
	/* Under sanitizers, the other modes' checks only for every fourth scenario. */
	int all_modes = !PL_SANITIZED || w->scenarios % 4 == 1;
	for (uint32_t m = 0; m < 3; m++) {
		if (m != mode && !all_modes)
			continue;
		snprintf(g_what, sizeof(g_what), "%.200s / %s, ringlog_check(%s)", saved,
			 mode_name(mode), mode_name(m));
		crc[m] = ringlog_check(w->work, m, &crep[m]);
		expect_dir_is(w->work, dmg, 0, "ringlog_check");
		expect_report(&crep[m], crc[m], e, m, n, sizes, dname);
	}
	snprintf(g_what, sizeof(g_what), "%.200s / %s", saved, mode_name(mode));

	if (mode == TOLERATE)
		expect_reader_before_recovery(w, dmg, e, n, keep);

	struct ringlog_options o = w->o;
	o.recovery_mode = mode;
	struct ringlog *log = NULL;
	int err = ringlog_open(w->work, &o, &log);
	w->opens++;
	EXPECT_INT(err, crc[mode]); /* the open does what the check said */
	if (!oc.ok) {
		EXPECT_INT(err, -EBADMSG);
		EXPECT(log == NULL);
		expect_last_error_names(dname, e->doff);
		/* ringlog_open creates the (empty) LOCK file before recovery runs, so a
		 * refused open leaves one behind in a directory that had none; every
		 * other byte must be as it was. */
		expect_dir_is(w->work, dmg, 1, "a refused ringlog_open");
		snprintf(g_what, sizeof(g_what), "%s", saved);
		return 0;
	}
	EXPECT_INT(err, 0);
	struct ringlog_recovery rep;
	EXPECT_INT(ringlog_recovery_report(log, &rep), 0);
	expect_report(&rep, 0, e, mode, n, sizes, dname);
	EXPECT(memcmp(&rep, &crep[mode], sizeof(rep)) == 0);
	EXPECT_U64(ringlog_next_lsn(log), e->dlsn);
	EXPECT_U64(ringlog_durable_lsn(log), e->dlsn - 1);
	expect_segments_after_open(w, dmg, e, &oc);
	if (!full) {
		EXPECT_INT(ringlog_close(log), 0);
		expect_contents(w, w->work, keep, NULL);
	} else {
		struct extra x = {e->dlsn, TAG_EXTRA + w->extras++, 1 + w->extras % 4,
				  17 + (w->extras * 37) % 200};
		uint64_t first = tu_append_tagged(log, x.tag, x.nrecs, x.len);
		EXPECT_U64(first, e->dlsn);
		EXPECT_INT(ringlog_wait(log, first + x.nrecs - 1), 0);
		EXPECT_INT(ringlog_close(log), 0);
		/* Nothing torn may reappear: the default mode finds a clean log. */
		log = NULL;
		EXPECT_INT(ringlog_open(w->work, &w->o, &log), 0);
		w->opens++;
		EXPECT_INT(ringlog_recovery_report(log, &rep), 0);
		EXPECT_INT(rep.damage, 0);
		EXPECT_U64(rep.cut_bytes, 0);
		EXPECT_U64(rep.dropped_segments, 0);
		EXPECT_U64(rep.first_lsn, 1);
		EXPECT_U64(rep.last_lsn, e->dlsn + x.nrecs - 1);
		EXPECT_U64(ringlog_next_lsn(log), e->dlsn + x.nrecs);
		EXPECT_INT(ringlog_close(log), 0);
		expect_contents(w, w->work, keep, &x);
	}
	snprintf(g_what, sizeof(g_what), "%s", saved);
	return 1;
}

/* ---- 1. the last segment cut at arbitrary offsets ---- */

static void cut_last_segment(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *sg = &w->seg[L];
	uint64_t offs[1024];
	size_t n = 0;
	const uint64_t fixed[] = {0, 31, 63, HDR, HDR + 8, HDR + 32,
				  1, 7,	 32, 33,  HDR + 1, HDR + 31};
	size_t nfixed = PL_SANITIZED ? 6 : sizeof(fixed) / sizeof(fixed[0]);
	for (size_t i = 0; i < nfixed; i++)
		offs[n++] = fixed[i];
	for (size_t i = 0; i < sg->nfr; i++) { /* at, just after and inside every frame */
		const struct frame *f = &sg->fr[i];
		const uint64_t rel[] = {f->len, 33, f->len - 1, 8};
		size_t nrel = !PL_SANITIZED ? sizeof(rel) / sizeof(rel[0]) : i % 2 ? 1 : 2;
		for (size_t j = 0; j < nrel && n < 600; j++)
			offs[n++] = f->off + rel[j];
	}
	for (unsigned i = 0; i < iters(90); i++) /* and anywhere */
		offs[n++] = below(&w->rng, sg->size + 1);
	printf("    %s: %" PRIu64 " bytes, %zu frames; %zu cuts\n", sg->name, sg->size, sg->nfr, n);
	unsigned at_boundary = 0, torn = 0, in_header = 0;
	for (size_t k = 0; k < n; k++) {
		uint64_t c = offs[k];
		if (c > sg->size)
			continue;
		SCEN("%s cut to %" PRIu64 " of %" PRIu64 " bytes", sg->name, c, sg->size);
		struct snap d;
		snap_clone(&w->snap, &d);
		file_resize(snap_seg(&d, L), c);
		struct expect e = {.dfile = L};
		if (c < HDR) {
			e.torn_rotation = 1;
			e.dlsn = sg->first_lsn;
			in_header++;
		} else {
			uint64_t b = boundary_le(w, L, c);
			e.dlsn = lsn_at(w, L, b);
			if (b != c) {
				e.damaged = 1;
				e.doff = b;
				torn++;
			} else {
				at_boundary++;
			}
		}
		/* With an append and a reopen after the recovery for every other cut. */
		verify_mode(w, &d, &e, TOLERATE, k % 2 == 0 || !e.damaged);
		/* ABSOLUTE opens exactly at frame boundaries, refuses every other cut (but
		 * one inside a frame's header, which cannot pass for a frame). */
		int opened = verify_mode(w, &d, &e, ABSOLUTE, 1);
		struct expect se = e;
		settle_tail(w, &d, &se);
		EXPECT_INT(opened, !se.damaged && !se.torn_rotation);
		if (k % 4 == 0)
			verify_mode(w, &d, &e, PIT, 0);
		snap_free(&d);
	}
	printf("    cuts in the header %u, at a frame boundary %u, mid-frame %u\n", in_header,
	       at_boundary, torn);
	EXPECT(in_header > 0 && at_boundary > 0 && torn > 0);
}

/* ---- 2. a zeroed tail, zeros after the end ---- */

static void zeroed_tail(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *sg = &w->seg[L];
	const struct file *orig = snap_seg(&w->snap, L);
	uint64_t frames_bytes = sg->size - HDR;
	unsigned count = iters(45);
	for (unsigned it = 0; it < count; it++) {
		uint64_t zero = 0, extend = 0;
		switch (it % 5) {
		case 0:
			zero = 1 + below(&w->rng, 64);
			break;
		case 1:
			zero = 1 + below(&w->rng, frames_bytes);
			break;
		case 2:
			extend = 1 + below(&w->rng, 4096);
			break;
		case 3:
			zero = 1 + below(&w->rng, 600 < frames_bytes ? 600 : frames_bytes);
			extend = 1 + below(&w->rng, 4096);
			break;
		default:
			zero = frames_bytes;
			extend = below(&w->rng, 2) * 512;
			break;
		}
		SCEN("%s: last %" PRIu64 " of %" PRIu64 " bytes zeroed, %" PRIu64
		     " zero bytes appended",
		     sg->name, zero, sg->size, extend);
		struct snap d;
		snap_clone(&w->snap, &d);
		struct file *f = snap_seg(&d, L);
		memset(f->data + f->size - zero, 0, zero);
		file_resize(f, f->size + extend);
		/* The frames that are still intact (zero padding may have been zeroed again)
		 * are kept; the first that changed, and all after it, are not. */
		uint64_t b = sg->size;
		for (size_t i = 0; i < sg->nfr; i++)
			if (memcmp(orig->data + sg->fr[i].off, f->data + sg->fr[i].off,
				   sg->fr[i].len) != 0) {
				b = sg->fr[i].off;
				break;
			}
		struct expect e = {.dfile = L, .dlsn = lsn_at(w, L, b)};
		if (b != f->size) {
			e.damaged = 1;
			e.doff = b;
			if (b == sg->size)
				e.reason = "bytes after the last frame";
		}
		verify_mode(w, &d, &e, TOLERATE, 1);
		verify_mode(w, &d, &e, ABSOLUTE, 0);
		if (it % 3 == 0)
			verify_mode(w, &d, &e, PIT, it % 2);
		snap_free(&d);
	}
	/* The whole last segment zeroed, header included, and longer than a header: not a
	 * torn rotation by the rule in src/recovery.c (at most a header's worth of bytes),
	 * so damage outside the frames: refused by default, dropped by point-in-time. */
	SCEN("%s wholly zeroed (%" PRIu64 " bytes)", sg->name, sg->size);
	struct snap d;
	snap_clone(&w->snap, &d);
	struct file *f = snap_seg(&d, L);
	memset(f->data, 0, f->size);
	struct expect e = {.damaged = 1,
			   .dfile = L,
			   .doff = 0,
			   .dlsn = sg->first_lsn,
			   .reason = "invalid segment header"};
	for (uint32_t m = 0; m < 3; m++)
		verify_mode(w, &d, &e, m, m == PIT);
	/* ... while the same file with at most 64 (zero) bytes is a torn rotation. */
	for (uint64_t len = 0; len <= HDR; len += 32) {
		SCEN("%s zeroed and %" PRIu64 " bytes long", sg->name, len);
		file_resize(f, len);
		struct expect t = {.torn_rotation = 1, .dfile = L, .dlsn = sg->first_lsn};
		for (uint32_t m = 0; m < 3; m++)
			verify_mode(w, &d, &t, m, m != ABSOLUTE);
	}
	snap_free(&d);
}

/* ---- 3. a flipped byte in one of the last frames ---- */

static void flipped_byte_near_the_end(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *sg = &w->seg[L];
	unsigned count = iters(45);
	size_t last_k = sg->nfr < 4 ? sg->nfr : 4;
	for (unsigned it = 0; it < count; it++) {
		const struct frame *fr = &sg->fr[sg->nfr - 1 - below(&w->rng, last_k)];
		/* The header fields, the first record's length, or anywhere in the frame. */
		uint64_t rel = it % 3 == 0 ? below(&w->rng, 36) : below(&w->rng, fr->len);
		uint8_t x = (uint8_t)(1 + below(&w->rng, 255));
		SCEN("%s: byte %" PRIu64 " (frame at %" PRIu64 ", +%" PRIu64 ") ^= 0x%02x",
		     sg->name, fr->off + rel, fr->off, rel, x);
		struct snap d;
		snap_clone(&w->snap, &d);
		snap_seg(&d, L)->data[fr->off + rel] ^= x;
		struct expect e = {
		    .damaged = 1, .dfile = L, .doff = fr->off, .dlsn = w->b[fr->batch].first_lsn};
		verify_mode(w, &d, &e, TOLERATE, 1);
		verify_mode(w, &d, &e, ABSOLUTE, 0);
		if (it % 3 == 1)
			verify_mode(w, &d, &e, PIT, 0);
		snap_free(&d);
	}
}

/* ---- 4. whole trailing segments lost ---- */

static void trailing_segments_dropped(void **state)
{
	struct world *w = *state;
	for (size_t k = 1; k < w->nseg; k++) {
		size_t left = w->nseg - k;
		SCEN("last %zu of %zu segments deleted", k, w->nseg);
		struct snap d;
		snap_clone(&w->snap, &d);
		for (size_t j = 0; j < k; j++)
			snap_remove(&d, (size_t)snap_find(&d, w->seg[w->nseg - 1 - j].name));
		/* Nothing marks a segment as the last one: every mode opens with the prefix. */
		struct expect e = {.dlsn = w->seg[left].first_lsn};
		verify_mode(w, &d, &e, TOLERATE, 1);
		verify_mode(w, &d, &e, ABSOLUTE, k % 2);
		verify_mode(w, &d, &e, PIT, 0);
		snap_free(&d);
	}
}

/* ---- 5. damage in sealed segments ---- */

/* Damage in sealed segment s, as placed by the caller: refused by TOLERATE_TAIL and
 * ABSOLUTE (nothing changed), repaired by POINT_IN_TIME. */
static void sealed_case(struct world *w, const struct snap *d, const struct expect *e)
{
	EXPECT_INT(verify_mode(w, d, e, TOLERATE, 0), 0);
	EXPECT_INT(verify_mode(w, d, e, ABSOLUTE, 0), 0);
	verify_mode(w, d, e, PIT, 1);
}

static struct expect expect_at_byte(const struct world *w, size_t s, uint64_t off)
{
	struct expect e = {.damaged = 1, .dfile = s};
	if (off < HDR) {
		e.doff = 0;
		e.dlsn = w->seg[s].first_lsn;
		e.reason = "invalid segment header";
	} else {
		const struct frame *fr = frame_holding(w, s, off);
		e.doff = fr->off;
		e.dlsn = w->b[fr->batch].first_lsn;
	}
	return e;
}

static void sealed_segment_damage(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;

	/* A flipped byte anywhere in a sealed segment (its header now and then). */
	for (unsigned it = 0; it < iters(30); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		uint64_t off =
		    it % 6 == 0 ? below(&w->rng, HDR) : sg->size / 4 + below(&w->rng, sg->size / 2);
		uint8_t x = (uint8_t)(1 + below(&w->rng, 255));
		SCEN("sealed %s: byte %" PRIu64 " of %" PRIu64 " ^= 0x%02x", sg->name, off,
		     sg->size, x);
		struct snap d;
		snap_clone(&w->snap, &d);
		snap_seg(&d, s)->data[off] ^= x;
		struct expect e = expect_at_byte(w, s, off);
		sealed_case(w, &d, &e);
		snap_free(&d);
	}
	/* The first segment's header: even point-in-time has nothing to keep. */
	SCEN("sealed %s: header byte 9 flipped", w->seg[0].name);
	struct snap d;
	snap_clone(&w->snap, &d);
	snap_seg(&d, 0)->data[9] ^= 0x40;
	struct expect e0 = expect_at_byte(w, 0, 9);
	EXPECT_INT(verify_mode(w, &d, &e0, PIT, 0), 0);
	snap_free(&d);

	/* Truncated: inside its header, at a frame boundary, mid-frame. */
	for (unsigned it = 0; it < iters(24); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		uint64_t c;
		if (it % 4 == 0)
			c = below(&w->rng, HDR);
		else if (it % 4 == 1 && sg->nfr > 0)
			c = sg->fr[below(&w->rng, sg->nfr)].off; /* a boundary, HDR included */
		else
			c = HDR + below(&w->rng, sg->size - HDR);
		SCEN("sealed %s truncated to %" PRIu64 " of %" PRIu64 " bytes", sg->name, c,
		     sg->size);
		snap_clone(&w->snap, &d);
		file_resize(snap_seg(&d, s), c);
		struct expect e = {.damaged = 1, .dfile = s};
		if (c < HDR) {
			e.dlsn = sg->first_lsn;
			e.reason = "invalid segment header";
		} else {
			uint64_t b = boundary_le(w, s, c);
			e.dlsn = lsn_at(w, s, b);
			if (b != c) {
				e.doff = b;
			} else { /* the segment is valid: the next one does not follow it */
				e.dfile = s + 1;
				e.reason = "missing or truncated";
			}
		}
		sealed_case(w, &d, &e);
		snap_free(&d);
	}

	/* Bytes after a sealed segment's last frame (zeros, then garbage). */
	for (unsigned it = 0; it < iters(6); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		uint64_t extra = 1 + below(&w->rng, 300);
		SCEN("sealed %s: %" PRIu64 " %s bytes appended", sg->name, extra,
		     it % 2 ? "garbage" : "zero");
		snap_clone(&w->snap, &d);
		struct file *f = snap_seg(&d, s);
		file_resize(f, f->size + extra);
		for (uint64_t i = 0; it % 2 && i < extra; i++)
			f->data[sg->size + i] = (uint8_t)(0x80 | (i * 7));
		struct expect e = {
		    .damaged = 1, .dfile = s, .doff = sg->size, .dlsn = lsn_at(w, s, sg->size)};
		if (it % 2 == 0)
			e.reason = "bytes after the last frame";
		sealed_case(w, &d, &e);
		snap_free(&d);
	}

	/* Under sanitizers, only the first, a middle and the last candidate segment. */
#define SOME(s, first, last)                                                                       \
	(!PL_SANITIZED || (s) == (first) || (s) == (last) || (s) == ((first) + (last)) / 2)
	/* A middle segment deleted: its successor does not chain. */
	for (size_t s = 1; s < L; s++) {
		if (!SOME(s, 1, L - 1))
			continue;
		SCEN("middle segment %s deleted", w->seg[s].name);
		snap_clone(&w->snap, &d);
		snap_remove(&d, (size_t)snap_find(&d, w->seg[s].name));
		struct expect e = {.damaged = 1,
				   .dfile = s,
				   .doff = 0,
				   .dlsn = w->seg[s].first_lsn,
				   .reason = "missing"};
		sealed_case(w, &d, &e);
		snap_free(&d);
	}

	/* A segment replaced by the same-named segment of another log written with the
	 * same batches: same names, sizes and records; another log id. */
	SCEN("building another log with the same batches");
	write_batches(w, w->other, 0, w->nb);
	struct snap other;
	snap_load(w->other, &other, 0);
	for (size_t s = 1; s <= L; s++) {
		if (!SOME(s, 1, L))
			continue;
		ssize_t p = snap_find(&other, w->seg[s].name);
		EXPECT(p >= 0);
		EXPECT_U64(other.f[p].size, w->seg[s].size);
		EXPECT(get64(other.f[p].data + 16) != w->log_id);
		SCEN("%s replaced by the same-named segment of another log", w->seg[s].name);
		snap_clone(&w->snap, &d);
		struct file *f = snap_seg(&d, s);
		free(f->data);
		f->data = malloc(other.f[p].size);
		assert_non_null(f->data);
		memcpy(f->data, other.f[p].data, other.f[p].size);
		struct expect e = {.damaged = 1,
				   .dfile = s,
				   .doff = 0,
				   .dlsn = w->seg[s].first_lsn,
				   .reason = "another log"};
		sealed_case(w, &d, &e);
		snap_free(&d);
	}
	snap_free(&other);
}

/* A point-in-time repair interrupted after any of its steps (cut the damaged segment,
 * then remove the later ones newest first): the same mode finishes it with the same
 * result, and the default mode refuses until it has. */
static void interrupted_point_in_time_repair(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	for (unsigned it = 0; it < iters(4); it++) {
		size_t s = below(&w->rng, L);
		const struct seg *sg = &w->seg[s];
		const struct frame *fr = &sg->fr[below(&w->rng, sg->nfr)];
		uint64_t dlsn = w->b[fr->batch].first_lsn;
		size_t later = L - s;
		for (size_t removed = 0; removed <= later; removed++) {
			SCEN("point-in-time repair of %s at %" PRIu64 " interrupted: cut done, "
			     "%zu of %zu later segments removed",
			     sg->name, fr->off, removed, later);
			struct snap d;
			snap_clone(&w->snap, &d);
			file_resize(snap_seg(&d, s), fr->off);
			for (size_t j = 0; j < removed; j++)
				snap_remove(&d, (size_t)snap_find(&d, w->seg[L - j].name));
			struct expect e = {.dlsn = dlsn};
			if (removed < later) {
				e.damaged = 1;
				e.dfile = s + 1;
				e.reason = "missing or truncated";
				EXPECT_INT(verify_mode(w, &d, &e, TOLERATE, 0), 0);
			} else {
				EXPECT_INT(verify_mode(w, &d, &e, TOLERATE, 0), 1);
			}
			verify_mode(w, &d, &e, PIT, 1);
			snap_free(&d);
		}
	}
}

/* ---- 6. ringlog_check is read-only and agrees with open ---- */

static void check_is_read_only_and_agrees(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *last = &w->seg[L];
	const struct frame *lf = &last->fr[last->nfr - 1];
	size_t s = L / 2;
	const struct seg *mid = &w->seg[s];

	/* Damage cases, each given to ringlog_check in every mode, then to an open in
	 * every mode (verify_mode checks the directory after every check, and that the
	 * open's verdict and report equal the check's).  The copies have no LOCK file:
	 * a check must not create one either. */
	for (unsigned c = 0; c < 11; c++) {
		struct snap d;
		snap_clone(&w->snap, &d);
		snap_remove(&d, (size_t)snap_find(&d, "LOCK"));
		struct expect e = {.damaged = 1};
		switch (c) {
		case 0:
			SCEN("check: intact log");
			e = (struct expect){.dlsn = w->next_lsn};
			break;
		case 1:
			SCEN("check: last frame torn");
			file_resize(snap_seg(&d, L), lf->off + lf->len / 2);
			e.dfile = L, e.doff = lf->off, e.dlsn = w->b[lf->batch].first_lsn;
			break;
		case 2:
			SCEN("check: last segment torn inside its header");
			file_resize(snap_seg(&d, L), 40);
			e = (struct expect){
			    .torn_rotation = 1, .dfile = L, .dlsn = last->first_lsn};
			break;
		case 3:
			SCEN("check: last segment cut at a frame boundary");
			file_resize(snap_seg(&d, L), lf->off);
			e = (struct expect){.dlsn = w->b[lf->batch].first_lsn};
			break;
		case 4:
			SCEN("check: zeros after the last frame");
			file_resize(snap_seg(&d, L), last->size + 4096);
			e.dfile = L, e.doff = last->size, e.dlsn = w->next_lsn;
			break;
		case 5:
			SCEN("check: flipped byte in the last frame");
			snap_seg(&d, L)->data[lf->off + lf->len - 3] ^= 0x21;
			e.dfile = L, e.doff = lf->off, e.dlsn = w->b[lf->batch].first_lsn;
			break;
		case 6:
			SCEN("check: two trailing segments deleted");
			snap_remove(&d, (size_t)snap_find(&d, w->seg[L].name));
			snap_remove(&d, (size_t)snap_find(&d, w->seg[L - 1].name));
			e = (struct expect){.dlsn = w->seg[L - 1].first_lsn};
			break;
		case 7:
			SCEN("check: flipped byte in sealed %s", mid->name);
			snap_seg(&d, s)->data[mid->size / 2] ^= 0x08;
			e = expect_at_byte(w, s, mid->size / 2);
			break;
		case 8:
			SCEN("check: sealed %s truncated mid-frame", mid->name);
			file_resize(snap_seg(&d, s), mid->fr[mid->nfr - 1].off + 13);
			e.dfile = s, e.doff = mid->fr[mid->nfr - 1].off;
			e.dlsn = w->b[mid->fr[mid->nfr - 1].batch].first_lsn;
			break;
		case 9:
			SCEN("check: middle segment %s deleted", mid->name);
			snap_remove(&d, (size_t)snap_find(&d, mid->name));
			e.dfile = s, e.doff = 0, e.dlsn = mid->first_lsn;
			break;
		default:
			SCEN("check: first segment's header damaged");
			snap_seg(&d, 0)->data[20] ^= 0x01;
			e.dfile = 0, e.doff = 0, e.dlsn = 1;
			break;
		}
		char base[sizeof(g_what)];
		snprintf(base, sizeof(base), "%s", g_what);
		for (uint32_t m = 0; m < 3; m++) {
			snprintf(g_what, sizeof(g_what), "%s", base);
			verify_mode(w, &d, &e, m, 0);
		}
		snap_free(&d);
	}

	struct ringlog_recovery r;
	/* An unknown mode is refused by both, and changes nothing. */
	SCEN("check: unknown mode");
	snap_write(&w->snap, w->work);
	EXPECT_INT(ringlog_check(w->work, RINGLOG_RECOVER_SKIP_CORRUPTED + 1, &r), -EINVAL);
	expect_dir_is(w->work, &w->snap, 0, "ringlog_check(mode 4)");
	struct ringlog_options o = w->o;
	o.recovery_mode = RINGLOG_RECOVER_SKIP_CORRUPTED + 1;
	struct ringlog *log = NULL;
	EXPECT_INT(ringlog_open(w->work, &o, &log), -EINVAL);
	expect_dir_is(w->work, &w->snap, 0, "ringlog_open(mode 4)");

	/* Works while a writer has the log open, and changes nothing then either. */
	SCEN("check: while the log is open");
	log = tu_open(w->work, &w->o);
	w->opens++;
	struct snap open_snap;
	snap_load(w->work, &open_snap, 0);
	for (uint32_t m = 0; m < 3; m++) {
		EXPECT_INT(ringlog_check(w->work, m, &r), 0);
		EXPECT_INT(r.damage, 0);
		EXPECT_U64(r.last_lsn, w->next_lsn - 1);
		expect_dir_is(w->work, &open_snap, 0, "ringlog_check on an open log");
	}
	snap_free(&open_snap);
	EXPECT_INT(ringlog_close(log), 0);

	/* No log there: nothing is created. */
	SCEN("check: empty, missing and non-directory paths");
	tu_rmrf(w->work);
	assert_int_equal(mkdir(w->work, 0755), 0);
	for (uint32_t m = 0; m < 3; m++) {
		EXPECT_INT(ringlog_check(w->work, m, &r), 0);
		EXPECT_U64(r.segments, 0);
		EXPECT_U64(r.first_lsn, 0);
		EXPECT_INT(r.damage, 0);
	}
	struct snap empty = {0};
	expect_dir_is(w->work, &empty, 0, "ringlog_check on an empty directory");
	char missing[4200];
	snprintf(missing, sizeof(missing), "%s/missing", w->work);
	EXPECT_INT(ringlog_check(missing, TOLERATE, &r), -ENOENT);
	EXPECT(access(missing, F_OK) != 0);
	write_whole(missing, (const uint8_t *)"x", 1);
	EXPECT_INT(ringlog_check(missing, TOLERATE, &r), -ENOTDIR);
}

/* ---- 7. salvage: random damage anywhere, and salvages interrupted ---- */

/* What a salvage of the world with these batches lost must report (see the top of
 * src/salvage.c), derived from the layout and the damage alone. */
struct salvage_expect {
	uint64_t lost_lsns, cut_bytes, next_lsn;
	uint32_t holes, rewritten;
	int damaged;
	size_t dseg; /* index in w->seg */
	uint64_t doff, dlsn;
};

static void note_first(struct salvage_expect *x, size_t k, uint64_t off, uint64_t lsn)
{
	if (x->damaged)
		return;
	x->damaged = 1;
	x->dseg = k;
	x->doff = off;
	x->dlsn = lsn;
}

static struct salvage_expect salvage_outcome(const struct world *w, const char *lost,
					     const int *hdr, const int *del, const uint64_t *size)
{
	struct salvage_expect x = {0};
	int prev_gap = 0;
	for (size_t k = 0; k < w->nseg; k++) {
		if (del[k])
			continue;
		const struct seg *sg = &w->seg[k];
		if (hdr[k] || prev_gap) {
			x.rewritten++;
			note_first(&x, k, 0, sg->first_lsn);
		}
		/* Damaged frames followed by a valid one become holes in place; a damaged run
		 * reaching the end of the segment is cut. */
		size_t t = sg->nfr;
		while (t > 0 && lost[sg->fr[t - 1].batch])
			t--;
		for (size_t i = 0; i < sg->nfr; i++) {
			const struct batch *b = &w->b[sg->fr[i].batch];
			if (!lost[sg->fr[i].batch])
				continue;
			if (sg->fr[i].off < size[k])
				note_first(&x, k, sg->fr[i].off, b->first_lsn);
			if (i < t) {
				x.lost_lsns += b->nrecs;
				if (i == 0 || !lost[sg->fr[i - 1].batch])
					x.holes++;
			}
		}
		uint64_t cut_off = t < sg->nfr ? sg->fr[t].off : sg->size;
		uint64_t end_lsn = lsn_at(w, k, cut_off);
		if (size[k] > cut_off)
			x.cut_bytes += size[k] - cut_off;
		size_t j = k + 1;
		while (j < w->nseg && del[j])
			j++;
		prev_gap = 0;
		if (j == w->nseg) {
			x.next_lsn = end_lsn;
		} else if (end_lsn < w->seg[j].first_lsn) {
			note_first(&x, k, cut_off, end_lsn);
			x.holes++;
			x.lost_lsns += w->seg[j].first_lsn - end_lsn;
			prev_gap = 1;
		}
	}
	return x;
}

/* The log in `dir` holds exactly the batches not lost[], whole, at their LSNs. */
static void expect_all_but_lost(const struct world *w, const char *dir, const char *lost)
{
	struct ringlog_reader *r = NULL;
	EXPECT_INT(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	uint8_t buf[512];
	for (size_t bi = 0; bi < w->nb; bi++) {
		if (lost[bi])
			continue;
		const struct batch *b = &w->b[bi];
		for (unsigned i = 0; i < b->nrecs; i++) {
			EXPECT_INT(ringlog_reader_next(r, &rec), 1);
			EXPECT_U64(rec.lsn, b->first_lsn + i);
			EXPECT_U64(rec.batch_first_lsn, b->first_lsn);
			EXPECT_U64(rec.batch_nrecs, b->nrecs);
			EXPECT_U64(rec.len, b->len);
			tu_fill_record(buf, b->len, b->tag, i);
			EXPECT(memcmp(buf, rec.data, b->len) == 0);
		}
	}
	EXPECT_INT(ringlog_reader_next(r, &rec), 0);
	ringlog_reader_close(r);
}

static void salvage_open_close(struct world *w)
{
	struct ringlog_options o = w->o;
	o.recovery_mode = RINGLOG_RECOVER_SKIP_CORRUPTED;
	struct ringlog *log = NULL;
	EXPECT_INT(ringlog_open(w->work, &o, &log), 0);
	w->opens++;
	EXPECT_INT(ringlog_close(log), 0);
}

/*
 * Up to three kinds of damage at random places of a copy -- a flipped byte in any
 * frame, a flipped byte in any segment header, a sealed segment truncated, a middle
 * segment deleted -- then salvage.  It must keep every batch not touched, whole and
 * at its LSN, lose exactly the touched ones, report what it did as salvage_outcome()
 * says (ringlog_check first, changing nothing), leave a log every mode opens clean,
 * take appends after it, and reach the same bytes again when it is interrupted:
 * any mix of its finished and unfinished file changes salvages to the same result.
 */
static void salvage_random_damage(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	char *lost = malloc(w->nb);
	assert_non_null(lost);
	for (unsigned it = 0; it < iters(40); it++) {
		struct snap d;
		snap_clone(&w->snap, &d);
		memset(lost, 0, w->nb);
		int hdr[MAX_SEGS] = {0}, del[MAX_SEGS] = {0};
		uint64_t size[MAX_SEGS];
		for (size_t k = 0; k < w->nseg; k++)
			size[k] = w->seg[k].size;
		char what[200] = "";
		size_t wl = 0;
		unsigned ndmg = 1 + (unsigned)below(&w->rng, 3);
		for (unsigned q = 0; q < ndmg; q++) {
			unsigned kind = (unsigned)below(&w->rng, 4);
			size_t k = kind == 3 ? 1 + below(&w->rng, L - 1)
				 : kind == 2 ? below(&w->rng, L)
					     : below(&w->rng, w->nseg);
			const struct seg *sg = &w->seg[k];
			if (del[k])
				continue;
			struct file *f = &d.f[snap_find(&d, sg->name)];
			uint64_t off;
			switch (kind) {
			case 0: /* a byte of a frame */
				if (size[k] <= HDR)
					continue;
				off = HDR + below(&w->rng, size[k] - HDR);
				f->data[off] ^= (uint8_t)(1 + below(&w->rng, 255));
				lost[frame_holding(w, k, off)->batch] = 1;
				break;
			case 1: /* a byte of the header */
				off = below(&w->rng, HDR);
				f->data[off] ^= (uint8_t)(1 + below(&w->rng, 255));
				hdr[k] = 1;
				break;
			case 2: /* a sealed segment truncated */
				if (size[k] <= HDR)
					continue;
				off = HDR + below(&w->rng, size[k] - HDR);
				file_resize(f, off);
				size[k] = off;
				for (size_t i = 0; i < sg->nfr; i++)
					if (sg->fr[i].off + sg->fr[i].len > off)
						lost[sg->fr[i].batch] = 1;
				break;
			default: /* a middle segment deleted */
				off = 0;
				snap_remove(&d, (size_t)snap_find(&d, sg->name));
				del[k] = 1;
				for (size_t i = 0; i < sg->nfr; i++)
					lost[sg->fr[i].batch] = 1;
				break;
			}
			static const char *kinds[] = {"flip", "header flip", "truncate", "delete"};
			wl += (size_t)snprintf(what + wl, sizeof(what) - wl, "%s%s %s@%" PRIu64,
					       q ? ", " : "", kinds[kind], sg->name + 14, off);
			if (wl >= sizeof(what))
				wl = sizeof(what) - 1;
		}
		SCEN("salvage after: %s", what);
		w->scenarios++;
		struct salvage_expect x = salvage_outcome(w, lost, hdr, del, size);

		snap_write(&d, w->work);
		struct ringlog_recovery check, rep;
		EXPECT_INT(ringlog_check(w->work, RINGLOG_RECOVER_SKIP_CORRUPTED, &check), 0);
		expect_dir_is(w->work, &d, 0, "ringlog_check(SKIP_CORRUPTED)");
		EXPECT_U64(check.lost_lsns, x.lost_lsns);
		EXPECT_U64(check.holes, x.holes);
		EXPECT_U64(check.rewritten_headers, x.rewritten);
		EXPECT_U64(check.set_aside_segments, 0);
		EXPECT_U64(check.cut_bytes, x.cut_bytes);
		EXPECT_U64(check.dropped_segments, 0);
		EXPECT_U64(check.first_lsn, 1);
		EXPECT_U64(check.last_lsn, x.next_lsn - 1);
		EXPECT_INT(check.damage, x.damaged ? -EBADMSG : 0);
		if (x.damaged) {
			if (strcmp(check.damage_file, w->seg[x.dseg].name) != 0)
				fail_msg("damage_file %s, expected %s [scenario: %s; seed 0x%016" PRIx64
					 "]",
					 check.damage_file, w->seg[x.dseg].name, g_what, g_seed);
			EXPECT_U64(check.damage_offset, x.doff);
			EXPECT_U64(check.damage_lsn, x.dlsn);
		}

		struct ringlog_options o = w->o;
		o.recovery_mode = RINGLOG_RECOVER_SKIP_CORRUPTED;
		struct ringlog *log = NULL;
		EXPECT_INT(ringlog_open(w->work, &o, &log), 0);
		w->opens++;
		EXPECT_INT(ringlog_recovery_report(log, &rep), 0);
		EXPECT(memcmp(&rep, &check, sizeof(rep)) == 0);
		EXPECT_U64(ringlog_next_lsn(log), x.next_lsn);
		EXPECT_INT(ringlog_close(log), 0);
		expect_all_but_lost(w, w->work, lost);
		for (uint32_t m = 0; m <= RINGLOG_RECOVER_SKIP_CORRUPTED; m++) {
			EXPECT_INT(ringlog_check(w->work, m, &rep), 0);
			EXPECT_INT(rep.damage, 0);
			EXPECT_U64(rep.last_lsn, x.next_lsn - 1);
			EXPECT_U64(rep.lost_lsns, x.lost_lsns);
			EXPECT_U64(rep.holes, 0);
		}

		/* Interrupted: each changed file either done or not, salvaged again. */
		struct snap done;
		snap_load(w->work, &done, 0);
		struct snap mix;
		snap_clone(&done, &mix);
		for (size_t i = 0; i < mix.n; i++) {
			ssize_t p = snap_find(&d, mix.f[i].name);
			if (p >= 0 && below(&w->rng, 2)) {
				free(mix.f[i].data);
				mix.f[i].size = d.f[p].size;
				mix.f[i].data = malloc(d.f[p].size + 1);
				assert_non_null(mix.f[i].data);
				memcpy(mix.f[i].data, d.f[p].data, d.f[p].size);
			}
		}
		snap_write(&mix, w->work);
		salvage_open_close(w);
		expect_dir_is(w->work, &done, 0, "a salvage resumed after an interruption");
		snap_free(&mix);
		snap_free(&done);

		/* Appends go on after the last LSN kept and survive the default mode. */
		log = tu_open(w->work, &w->o);
		w->opens++;
		uint64_t first = tu_append_tagged(log, TAG_EXTRA, 2, 40);
		EXPECT_U64(first, x.next_lsn);
		EXPECT_INT(ringlog_wait(log, first + 1), 0);
		EXPECT_INT(ringlog_close(log), 0);
		log = tu_open(w->work, &w->o);
		w->opens++;
		EXPECT_U64(ringlog_next_lsn(log), x.next_lsn + 2);
		EXPECT_INT(ringlog_close(log), 0);
		snap_free(&d);
	}
	free(lost);
}

static uint64_t pick_seed(void)
{
	const char *env = getenv("RINGLOG_POWERLOSS_SEED");
	if (env && *env)
		return strtoull(env, NULL, 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t s =
	    (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
	return rnd(&s);
}

int main(void)
{
	tu_require_uring();
	g_seed = pick_seed();
	g_strict =
	    !(getenv("RINGLOG_POWERLOSS_STRICT") && *getenv("RINGLOG_POWERLOSS_STRICT") == '0');
	printf("test_powerloss: seed 0x%016" PRIx64 " (RINGLOG_POWERLOSS_SEED=0x%016" PRIx64
	       " repeats this run)%s\n",
	       g_seed, g_seed, PL_SANITIZED ? "; sanitizer build: fewer scenarios" : "");
	fflush(stdout);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(cut_last_segment, setup, teardown),
	    cmocka_unit_test_setup_teardown(zeroed_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(flipped_byte_near_the_end, setup, teardown),
	    cmocka_unit_test_setup_teardown(trailing_segments_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(sealed_segment_damage, setup, teardown),
	    cmocka_unit_test_setup_teardown(interrupted_point_in_time_repair, setup, teardown),
	    cmocka_unit_test_setup_teardown(check_is_read_only_and_agrees, setup, teardown),
	    cmocka_unit_test_setup_teardown(salvage_random_damage, setup, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (g_reader_bug)
		printf(
		    "test_powerloss: reader bug reproduced %u times: a reader reports a clean end "
		    "at a sealed segment torn inside its header (<= 64 bytes) and skips every "
		    "later segment, where recovery refuses the log\n",
		    g_reader_bug);
	return failed;
}
