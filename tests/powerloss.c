/* The power-loss simulation's world and checks.  Contract in powerloss.h. */
#include "powerloss.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


unsigned g_test_no;





/* ---- a directory held in memory ---- */

/* Fail unless `dir` holds exactly the files of `s`, byte for byte.  With
 * ignore_lock, a LOCK file present on one side only is not a difference. */
void expect_dir_is(const char *dir, const struct snap *s, int ignore_lock, const char *after)
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





void add_batches(struct world *w, size_t count, int small)
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
void exact_last_segment(const char *dir)
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
void write_batches(struct world *w, const char *dir, size_t from, size_t to)
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

void free_layout(struct world *w)
{
	for (size_t i = 0; i < w->nseg; i++)
		free(w->seg[i].fr);
	w->nseg = 0;
}

/* Parse the pristine snapshot with this file's own reading of docs/format.md and
 * check that it holds exactly the batches, in order, one frame each. */
void parse_layout(struct world *w)
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
		EXPECT_U64(lo_get32(d), 0x47534c52u);
		sg->first_lsn = lo_get64(d + 8);
		char want[32];
		snprintf(want, sizeof(want), "%020" PRIu64 ".rlog", sg->first_lsn);
		EXPECT(strcmp(want, f->name) == 0);
		if (k == 0)
			w->log_id = lo_get64(d + 16);
		EXPECT_U64(lo_get64(d + 16), w->log_id);
		EXPECT_U64(lo_get64(d + 24), sg->first_lsn - 1);
		EXPECT_U64(lo_get32(d + 32), prev_crc);
		EXPECT_U64(sg->first_lsn, bi < w->nb ? w->b[bi].first_lsn : w->next_lsn);
		size_t cap = 0;
		uint64_t off = HDR;
		while (off < f->size) {
			EXPECT(off + 32 <= f->size);
			EXPECT(bi < w->nb);
			const struct batch *b = &w->b[bi];
			EXPECT_U64(lo_get32(d + off), 0x52464c52u);
			uint64_t len = lo_get32(d + off + 8);
			EXPECT_U64(len, RINGLOG_FRAME_BYTES(b->nrecs, (uint64_t)b->nrecs * b->len));
			EXPECT_U64(lo_get32(d + off + 12), b->nrecs);
			EXPECT_U64(lo_get64(d + off + 16), b->first_lsn);
			EXPECT_U64(lo_get64(d + off + 24), w->log_id);
			EXPECT(off + len <= f->size);
			if (sg->nfr == cap) {
				cap = cap ? 2 * cap : 16;
				sg->fr = realloc(sg->fr, cap * sizeof(*sg->fr));
				assert_non_null(sg->fr);
			}
			sg->fr[sg->nfr++] = (struct frame){off, len, bi};
			prev_crc = lo_get32(d + off + 4);
			off += len;
			bi++;
		}
		EXPECT_U64(off, f->size);
	}
	EXPECT_U64(bi, w->nb);
}

void build_world(struct world *w, unsigned test_no)
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

int pl_setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	build_world(w, g_test_no++);
	*state = w;
	return 0;
}

int pl_teardown(void **state)
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
size_t batch_at(const struct world *w, uint64_t lsn)
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
uint64_t lsn_at(const struct world *w, size_t k, uint64_t off)
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
uint64_t boundary_le(const struct world *w, size_t k, uint64_t c)
{
	const struct seg *sg = &w->seg[k];
	uint64_t b = HDR;
	for (size_t i = 0; i < sg->nfr; i++)
		if (sg->fr[i].off + sg->fr[i].len <= c)
			b = sg->fr[i].off + sg->fr[i].len;
	return b;
}

/* The frame of segment k that holds byte `off` (off >= HDR). */
const struct frame *frame_holding(const struct world *w, size_t k, uint64_t off)
{
	const struct seg *sg = &w->seg[k];
	for (size_t i = 0; i < sg->nfr; i++)
		if (off >= sg->fr[i].off && off < sg->fr[i].off + sg->fr[i].len)
			return &sg->fr[i];
	fail_msg("no frame holds offset %" PRIu64 " of %s", off, sg->name);
	return NULL;
}

/* ---- what recovery must do ---- */



struct outcome outcome_for(const struct expect *e, uint32_t mode, size_t nfiles,
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
void settle_tail(const struct world *w, const struct snap *dmg, struct expect *e)
{
	size_t idx[MAX_SEGS];
	size_t n = snap_segs(dmg, idx, MAX_SEGS);
	if (!e->damaged || e->torn_rotation || e->dfile != n - 1 || e->doff < HDR)
		return;
	const struct file *f = &dmg->f[idx[e->dfile]];
	uint64_t end = lo_torn_end(f->data, f->size, e->doff, w->log_id, e->dlsn);
	if (end == 0)
		e->damaged = 0;
	else
		e->cut_end = end < f->size ? end : 0;
}

const char *mode_name(uint32_t mode)
{
	return mode == TOLERATE ? "TOLERATE_TAIL" : mode == ABSOLUTE ? "ABSOLUTE" : "POINT_IN_TIME";
}

void expect_damage_fields(const struct ringlog_recovery *r, const struct expect *e,
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
void expect_report(const struct ringlog_recovery *r, int rc, const struct expect *e,
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
void expect_last_error_names(const char *name, uint64_t off)
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


/* The log in `dir` holds exactly batches [0, keep) at their LSNs, then `x` if any. */
/* Read the log in `dir` from its start, checking every record returned against
 * batches [0, keep) and then `x`: the right LSN, batch and contents, and nothing
 * beyond them.  Returns ringlog_reader_next's final result (or ringlog_reader_open's
 * error); *whole gets the number of batches read whole, *partial the records of a
 * batch read only in part (must be 0: a batch is whole or absent). */
int read_prefix(const struct world *w, const char *dir, size_t keep, const struct extra *x,
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
void expect_contents(const struct world *w, const char *dir, size_t keep,
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
int g_strict;
unsigned g_reader_bug;

void expect_reader_before_recovery(const struct world *w, const struct snap *dmg,
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
void expect_segments_after_open(const struct world *w, const struct snap *dmg,
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
int verify_mode(struct world *w, const struct snap *dmg, const struct expect *given,
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
	int all_modes = !SCN_SANITIZED || w->scenarios % 4 == 1;
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

struct expect expect_at_byte(const struct world *w, size_t s, uint64_t off)
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


int pl_run(const char *name, const struct CMUnitTest *tests, size_t n)
{
	tu_require_uring();
	g_seed = pick_seed("RINGLOG_POWERLOSS_SEED");
	g_strict =
	    !(getenv("RINGLOG_POWERLOSS_STRICT") && *getenv("RINGLOG_POWERLOSS_STRICT") == '0');
	printf("%s: seed 0x%016" PRIx64 " (RINGLOG_POWERLOSS_SEED=0x%016" PRIx64
	       " repeats this run)%s\n",
	       name, g_seed, g_seed, SCN_SANITIZED ? "; sanitizer build: fewer scenarios" : "");
	fflush(stdout);
	int failed = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
	if (g_reader_bug)
		printf("%s: reader bug reproduced %u times: a reader reports a clean end at a "
		       "sealed segment torn inside its header (<= 64 bytes) and skips every "
		       "later segment, where recovery refuses the log\n",
		       name, g_reader_bug);
	return failed;
}
