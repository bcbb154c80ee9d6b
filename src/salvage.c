/*
 * The planner of salvage recovery (RINGLOG_RECOVER_SKIP_CORRUPTED; recovery.h: it
 * reads, the applier writes): keep every valid frame of the log, wherever the damage
 * is, and mark what was lost so that LSNs are never reused.
 *
 * When opening, every segment was fdatasync'd and its cached pages dropped first
 * (rl_plan_recovery), so that only what is on the disk counts.  The log id is the one most valid segment headers
 * (those that name their own file's LSN) carry; on a tie, the oldest of them's, as in
 * the other modes.  Then, oldest first:
 *  - A segment that is not this log's is set aside (renamed NAME.salvaged, never
 *    deleted): its valid header carries another log id, or its header is invalid and
 *    it holds no valid frame of this log but one of another log.  A segment of this
 *    log whose valid header names another LSN than its file name, or whose invalid
 *    header is followed by frames of this log whose LSN cannot follow its name, is set
 *    aside too (misnamed).
 *  - A kept segment whose header is invalid or does not chain to the segment before
 *    gets its header written again from its name, the log id and the chain.  (A last
 *    segment of at most 64 bytes with an invalid header is a torn rotation, as in
 *    the other modes: not damage.)
 *  - Its frames are scanned.  At a frame that is not valid, salvage looks for the
 *    next offset (8-byte steps, at least 32 bytes on) where a valid frame of this log
 *    starts whose LSN is plausible: not below the LSN expected at the damage, and at
 *    most one LSN per 4 damaged bytes above it (a record costs at least 4 bytes).
 *    Headers are judged first; only a plausible one has its frame read and checked,
 *    within a budget per segment (64 MiB + 4 bytes per byte of the segment): if the
 *    search would need more, salvage refuses (forged headers, surely) rather than
 *    decide without looking.  The damaged stretch becomes a hole frame (format.c)
 *    written over its first 32 bytes (several in a row if it is longer than a hole
 *    can cover, plan_holes): it stands for the LSNs between, and the bytes after its
 *    header stay as they were.  When no valid frame with a plausible LSN follows,
 *    the segment is cut at the damage: the damage reaches its end.
 *  - A later segment that starts before the LSN this one ends at (an overlap), or
 *    more than 2^44 LSNs after it (far), is set aside too: the earlier frames win.
 *  - When a segment ends before the LSN its successor starts at (a missing segment,
 *    or a cut), 32-byte holes for the missing LSNs are appended to it, and the
 *    successor's header is then written again to chain to them.
 *  - When a set-aside segment of this log (misnamed, overlapping) holds LSNs past the
 *    end of the log, holes for them end the log, so that they are not handed out
 *    again.
 *
 * Every decision is taken before anything is written, so a refusal changes nothing.
 * Every write the plan holds is a whole 32- or 64-byte header (or a run of holes),
 * made durable before the next step, and segments are renamed aside only at the end,
 * in an order chosen so that a crash at any point leaves a directory on which
 * another salvage plans the same decisions: it finishes the job.
 */
#include "recovery.h"

#include "errors.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest gap in LSNs between two segments that salvage fills with holes (2^44: a
 * missing stretch of 17.6 trillion records, 128 KiB of holes). */
#define RL_SALVAGE_MAX_GAP (1ull << 44)
/* Bytes of candidate frames whose records and CRC salvage may check in one segment,
 * beyond 4 per byte of the segment: forged frame headers cannot make it slow. */
#define RL_SEARCH_BUDGET (64ull << 20)

/* Longest hole salvage writes; a longer damaged stretch takes several.  A variable
 * so that tests can make it small (tests/test_salvage.c); at least 64. */
uint64_t rl_salvage_max_hole_bytes = RL_HOLE_MAX_BYTES;

/* What salvage makes of each segment file. */
enum {
	SEG_FOREIGN = 0, /* another log's: set aside first */
	SEG_KEPT = 1,
	SEG_MISNAMED = 2, /* this log's, but its header names another LSN */
	SEG_OVERLAP = 3,  /* starts inside the LSNs of the kept segment before it */
	SEG_FAR = 4,	  /* starts more than RL_SALVAGE_MAX_GAP after them */
};

struct salvage {
	int dir_fd;
	struct rl_plan *plan; /* where actions go; NULL: a probe, which records none */
	uint64_t log_id;
	struct ringlog_recovery *rep;
	uint64_t *claims; /* per set-aside segment of this log: the LSN after its last */
	size_t nclaims;
	uint64_t budget;  /* bytes of candidate frames the search may still check */
};

/* Plan holes[0..count) (32-byte headers standing for `lsns` LSNs from `first`) to be
 * written at `off` of segment `seg`. */
static int plan_write_holes(struct salvage *sv, uint64_t seg, uint64_t off, const uint8_t *holes,
			    size_t count, uint64_t first, uint64_t lsns, const char *why)
{
	sv->rep->holes += (uint32_t)count;
	sv->rep->lost_lsns += lsns;
	if (!sv->plan)
		return 0;
	struct rl_action a = {.op = RINGLOG_REPAIR_WRITE_HOLES, .seg = seg, .off = off,
			      .first_lsn = first, .lsns = lsns, .why = why};
	return rl_plan_add(sv->plan, &a, holes, count * RL_FRAME_HEADER_BYTES);
}

/* A hole frame at `off` of segment `seg` covering `frame_len` bytes and standing for
 * `nrecs` LSNs from `first_lsn`. */
static int plan_hole(struct salvage *sv, uint64_t seg, uint64_t off, uint32_t frame_len,
		     uint32_t nrecs, uint64_t first_lsn)
{
	uint8_t hole[RL_FRAME_HEADER_BYTES];
	rl_hole_encode(hole, frame_len, nrecs, first_lsn, sv->log_id);
	return plan_write_holes(sv, seg, off, hole, 1, first_lsn, nrecs,
				"damaged frames: a hole stands for their LSNs");
}

/*
 * Holes over the damaged stretch [off, off + len) (len >= 32, a multiple of 8)
 * standing for `lost` (<= 2^32 - 1) LSNs from `first`: a first hole of 32 bytes up
 * to 32 + C carrying the LSNs, then holes of exactly C = half the maximum carrying
 * none (so a stretch of less than 32 + C bytes is one hole).  The first is written
 * last: after a crash in between, the stretch still starts with damage, and another
 * salvage either finds the same end, or stops at one of the holes already written
 * and splits the shorter stretches before and after it the same way (the split of
 * off + head + k * C is a prefix of the split, and what follows a written hole is
 * exactly C-sized), so it writes the same bytes.
 */
static int plan_holes(struct salvage *sv, uint64_t seg, uint64_t off, uint64_t len, uint64_t lost,
		      uint64_t first)
{
	/* A damaged stretch is whole entries' worth of bytes, and its LSNs fit a hole. */
	assert(len >= RL_FRAME_HEADER_BYTES && len % RL_FRAME_ALIGN == 0 && lost <= UINT32_MAX);
	uint64_t max = rl_salvage_max_hole_bytes < 64 ? 64 : rl_salvage_max_hole_bytes;
	uint64_t chunk = (max / 2) & ~(uint64_t)(RL_FRAME_ALIGN - 1);
	uint64_t head = len - (len - RL_FRAME_HEADER_BYTES) / chunk * chunk;
	assert(head >= RL_FRAME_HEADER_BYTES && head < RL_FRAME_HEADER_BYTES + chunk);
	for (uint64_t at = off + head; at < off + len; at += chunk) {
		int err = plan_hole(sv, seg, at, (uint32_t)chunk, 0, first + lost);
		if (err)
			return err;
	}
	return plan_hole(sv, seg, off, (uint32_t)head, (uint32_t)lost, first);
}

/*
 * After damage at `off` (LSN `expect` due there): the first offset `at` from which
 * the scan can go on -- a valid frame or hole of this log with a plausible LSN (see
 * the top of this file).  Returns 1 with *at and *lsn (its first LSN), 0 if there is
 * none, -E2BIG when the budget would be exceeded, or -errno.  Leaves s->off /
 * s->expect_lsn for the caller to set.
 */
static int resync(struct salvage *sv, struct rl_seg_scan *s, uint64_t off, uint64_t expect,
		  uint64_t *at, uint64_t *lsn)
{
	for (uint64_t p = off + RL_FRAME_HEADER_BYTES; p + RL_FRAME_HEADER_BYTES <= s->file_size;
	     p += RL_FRAME_ALIGN) {
		struct rl_frame_info info;
		int got = rl_scan_peek(s, p, &info);
		if (got < 0)
			return got;
		if (got == 0 || info.first_lsn < expect || info.first_lsn - expect > (p - off) / 4 ||
		    info.first_lsn - expect > UINT32_MAX)
			continue;
		if (!info.hole) {
			/* Only now read the frame and check its records and CRC. */
			if (info.frame_len > sv->budget)
				return -E2BIG;
			sv->budget -= info.frame_len;
			enum rl_frame_status why;
			s->off = p;
			s->expect_lsn = info.first_lsn;
			got = rl_scan_next(s, &why);
			if (got < 0)
				return got;
			if (got == 0)
				continue;
		}
		*at = p;
		*lsn = info.first_lsn;
		return 1;
	}
	return 0;
}

/* The search for frames in segment `name` would check more bytes than its budget:
 * forged frame headers, most likely.  Salvage refuses rather than decide without
 * looking (a later run could look further and decide otherwise). */
static int budget_spent(struct salvage *sv, const char *name, uint64_t off)
{
	rl_note_damage(sv->rep, name, off, 0, "too many forged-looking frame headers");
	return rl_fail(-EBADMSG,
		       "salvage: %s: the search for valid frames after offset %" PRIu64
		       " would check more than its budget of frame bytes (forged frame "
		       "headers?); refusing to decide",
		       name, off);
}

/*
 * Salvage the frames of a segment (open as fd, its header `h` as it is or will be
 * written; `is_last`: the log's last segment, whose stale tail is not damage).  Fills
 * *seg (fd not taken) and *next_lsn.  Returns 0 or -errno.
 */
static int salvage_frames(struct salvage *sv, int fd, const char *name,
			  const struct rl_seg_header *h, int is_last, struct rl_segment *seg,
			  uint64_t *next_lsn)
{
	struct ringlog_recovery *rep = sv->rep;
	struct rl_seg_scan scan;
	int err = rl_scan_init(&scan, fd, h);
	if (err)
		return rl_fail(err, "salvage: fstat of %s", name);
	/* A file shorter than a header gets one written (read-only: would get one). */
	if (scan.file_size < RL_SEG_HEADER_BYTES)
		scan.file_size = RL_SEG_HEADER_BYTES;
	sv->budget = RL_SEARCH_BUDGET + 4 * scan.file_size;
	uint32_t last_crc = 0;
	for (;;) {
		uint64_t off = scan.off, expect = scan.expect_lsn;
		enum rl_frame_status why;
		int got = rl_scan_next(&scan, &why);
		if (got < 0) {
			err = rl_fail(got, "salvage: reading %s", name);
			break;
		}
		const char *reason = rl_frame_status_str(why);
		if (got == 1) {
			last_crc = scan.info.crc;
			if (scan.info.hole)
				rep->lost_lsns += scan.info.nrecs;
			continue;
		}
		/* Where the last segment's tail is only stale bytes, it ends cleanly here. */
		uint64_t torn_end = scan.file_size;
		if (is_last) {
			int torn = rl_recovery_tail(fd, name, sv->log_id, off, expect, &torn_end);
			if (torn <= 0) {
				err = torn;
				break;
			}
		} else if (why == RL_FRAME_END && off == scan.file_size) {
			break;
		}
		if (why == RL_FRAME_END)
			reason = is_last ? "a frame written after a gap (torn write)"
					 : "bytes after the last frame";
		rl_note_damage(rep, name, off, expect, reason);
		uint64_t at = 0, lsn = 0;
		got = resync(sv, &scan, off, expect, &at, &lsn);
		if (got == -E2BIG) {
			err = budget_spent(sv, name, off);
			break;
		}
		if (got < 0) {
			err = rl_fail(got, "salvage: reading %s", name);
			break;
		}
		if (got == 1) {
			err = plan_holes(sv, h->first_lsn, off, at - off, lsn - expect, expect);
			if (err)
				break;
			scan.off = at;
			scan.expect_lsn = lsn;
			continue;
		}
		/* Nothing valid follows: the segment ends at the damage. */
		if (sv->plan && (err = rl_plan_cut(sv->plan, h->first_lsn, off, torn_end,
						   scan.file_size, reason)) != 0)
			break;
		scan.off = off;
		scan.expect_lsn = expect;
		break;
	}
	rl_scan_free(&scan);
	if (err)
		return err;
	*seg = (struct rl_segment){.fd = fd, .first_lsn = h->first_lsn, .size = scan.off,
				   .last_crc = last_crc};
	*next_lsn = scan.expect_lsn;
	return 0;
}

/* Where segment `name` (fd, header h) ends, as salvage_frames would find it, without
 * writing or reporting anything: the LSN after its last valid entry into *end. */
static int probe_end(struct salvage *sv, int fd, const char *name, const struct rl_seg_header *h,
		     uint64_t *end)
{
	struct ringlog_recovery scratch;
	memset(&scratch, 0, sizeof(scratch));
	struct salvage probe = {.dir_fd = sv->dir_fd, .log_id = sv->log_id, .rep = &scratch};
	struct rl_segment seg;
	return salvage_frames(&probe, fd, name, h, 0, &seg, end);
}

/* LSNs [*next_lsn, until) that no segment holds: append holes that stand for them to
 * *seg, as many as needed (2^32 - 1 LSNs each), in one write. */
static int fill_gap(struct salvage *sv, struct rl_segment *seg, uint64_t *next_lsn,
		    uint64_t until, const char *reason)
{
	if (*next_lsn >= until)
		return 0;
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, seg->first_lsn);
	uint64_t first = *next_lsn, lost = until - first;
	size_t count = (size_t)((lost + UINT32_MAX - 1) / UINT32_MAX);
	uint8_t *buf = malloc(count * RL_FRAME_HEADER_BYTES);
	if (!buf)
		return rl_fail(-ENOMEM, "salvage: allocating");
	rl_note_damage(sv->rep, name, seg->size, first, reason);
	for (size_t k = 0; k < count; k++) {
		uint32_t n = until - *next_lsn > UINT32_MAX ? UINT32_MAX
							   : (uint32_t)(until - *next_lsn);
		seg->last_crc = rl_hole_encode(buf + k * RL_FRAME_HEADER_BYTES,
					       RL_FRAME_HEADER_BYTES, n, *next_lsn, sv->log_id);
		*next_lsn += n;
	}
	int err = plan_write_holes(sv, seg->first_lsn, seg->size, buf, count, first, lost, reason);
	free(buf);
	seg->size += count * RL_FRAME_HEADER_BYTES;
	return err;
}

/* Header and size of segment `name`: 1 if the header is valid, 0 if not, or -errno. */
static int read_header(int fd, const char *name, struct rl_seg_header *h, uint64_t *size)
{
	int err = rl_seg_read_header(fd, h, size);
	if (err == -EBADMSG)
		return 0;
	return err ? rl_fail(err, "salvage: reading the header of %s", name) : 1;
}

/* The header of segment `lsn`: 1 valid and naming `lsn`, 2 valid but naming another
 * LSN, 0 invalid, or -errno. */
static int peek_segment(int dir_fd, uint64_t lsn, struct rl_seg_header *h)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	int fd = rl_file_open(dir_fd, name, O_RDONLY);
	if (fd < 0)
		return rl_fail(fd, "salvage: opening %s", name);
	uint64_t size;
	int ok = read_header(fd, name, h, &size);
	close(fd);
	return ok <= 0 ? ok : h->first_lsn == lsn ? 1 : 2;
}

/*
 * For a segment whose header is invalid: the first frame in it that passes its
 * checks, of this log if it has one, else of any log.  Returns 1 with its log id,
 * first LSN and offset; 0 if none; or -errno (-EBADMSG: the budget ran out).
 */
static int first_frame(struct salvage *sv, uint64_t lsn, uint64_t *id, uint64_t *first,
		       uint64_t *at)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	int fd = rl_file_open(sv->dir_fd, name, O_RDONLY);
	if (fd < 0)
		return rl_fail(fd, "salvage: opening %s", name);
	struct rl_seg_header any = {.first_lsn = lsn, .prev_last_lsn = lsn - 1};
	struct rl_seg_scan scan;
	int got = rl_scan_init(&scan, fd, &any);
	if (got == 0) {
		got = rl_scan_find_any(&scan, RL_SEG_HEADER_BYTES,
				       RL_SEARCH_BUDGET + 4 * scan.file_size, sv->log_id, id, first,
				       at);
		rl_scan_free(&scan);
	}
	close(fd);
	if (got == -E2BIG)
		return budget_spent(sv, name, RL_SEG_HEADER_BYTES);
	return got < 0 ? rl_fail(got, "salvage: reading %s", name) : got;
}

struct vote {
	uint64_t id;
	size_t pos; /* among the valid headers, oldest first */
};

static int cmp_vote(const void *a, const void *b)
{
	const struct vote *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The log id (see the top of this file).  Returns 1, 0 if no header identifies the
 * log, or -errno. */
static int find_log_id(struct salvage *sv, const uint64_t *lsns, size_t n)
{
	uint64_t *ids = malloc((n ? n : 1) * sizeof(*ids));
	if (!ids)
		return rl_fail(-ENOMEM, "salvage: allocating");
	size_t m = 0;
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		struct rl_seg_header h;
		int ok = peek_segment(sv->dir_fd, lsns[i], &h);
		if (ok < 0)
			err = ok;
		else if (ok == 1)
			ids[m++] = h.log_id;
	}
	/* Most votes; on a tie, the oldest segment's (as in the other modes).  Sorted
	 * by id, then by position, so that runs of one id count its votes. */
	size_t best = 0, best_votes = 0;
	if (!err && m) {
		struct vote *v = malloc(m * sizeof(*v));
		if (!v) {
			free(ids);
			return rl_fail(-ENOMEM, "salvage: allocating");
		}
		for (size_t a = 0; a < m; a++)
			v[a] = (struct vote){.id = ids[a], .pos = a};
		qsort(v, m, sizeof(*v), cmp_vote);
		for (size_t a = 0; a < m;) {
			size_t b = a;
			while (b < m && v[b].id == v[a].id)
				b++;
			if (b - a > best_votes || (b - a == best_votes && v[a].pos < best))
				best = v[a].pos, best_votes = b - a;
			a = b;
		}
		free(v);
	}
	if (!err && m)
		sv->log_id = ids[best];
	free(ids);
	return err ? err : m > 0;
}

/* What segment `lsn` is to the log: SEG_KEPT, SEG_FOREIGN or SEG_MISNAMED; or -errno. */
static int classify(struct salvage *sv, uint64_t lsn)
{
	struct rl_seg_header h;
	int ok = peek_segment(sv->dir_fd, lsn, &h);
	if (ok < 0)
		return ok;
	if (ok)
		return h.log_id != sv->log_id ? SEG_FOREIGN : ok == 1 ? SEG_KEPT : SEG_MISNAMED;
	/* An invalid header: the frames tell.  This log's with an LSN that cannot follow
	 * the file name: misnamed; another log's only: foreign; none: kept (its header
	 * is written again, and what follows it judged as damage). */
	uint64_t id = 0, first = 0, at = 0;
	int got = first_frame(sv, lsn, &id, &first, &at);
	if (got <= 0)
		return got < 0 ? got : SEG_KEPT;
	if (id != sv->log_id)
		return SEG_FOREIGN;
	/* (What salvage keeps must be a frame its search would reach from the header: at
	 * offset 64, or 32 bytes or more after it.) */
	uint64_t gap = at - RL_SEG_HEADER_BYTES;
	if (first < lsn || first - lsn > gap / 4 || (gap > 0 && gap < RL_FRAME_HEADER_BYTES))
		return SEG_MISNAMED;
	return SEG_KEPT;
}

static const char *aside_reason(int why)
{
	switch (why) {
	case SEG_MISNAMED:
		return "segment header names another LSN than its file name: set aside";
	case SEG_OVERLAP:
		return "segment starts inside the LSNs of the one before: set aside";
	case SEG_FAR:
		return "segment starts implausibly far (2^44 LSNs) after the one before: set aside";
	default:
		return "segment of another log: set aside";
	}
}

/*
 * Segment `lsn` is not part of the log (why: a SEG_ value other than SEG_KEPT): report
 * it, and if it is this log's, remember in sv->claims the LSN after the last one its
 * frames hold (scanned as salvage would, read-only).  It is renamed at the end
 * (set_aside_all).  Returns 0 or -errno.
 */
static int note_aside(struct salvage *sv, uint64_t lsn, int why)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	rl_note_damage(sv->rep, name, 0, lsn, aside_reason(why));
	sv->rep->set_aside_segments++;
	if (why == SEG_FOREIGN || why == SEG_FAR)
		return 0;
	int fd = rl_file_open(sv->dir_fd, name, O_RDONLY);
	if (fd < 0)
		return rl_fail(fd, "salvage: opening %s", name);
	struct rl_seg_header h;
	uint64_t size;
	int valid = read_header(fd, name, &h, &size), err = valid < 0 ? valid : 0;
	/* A misnamed one's LSNs are its header's (or, with an invalid header, its first
	 * frame's); an overlapping one's follow its name. */
	uint64_t start = lsn, id = 0, at = 0;
	if (!err && why == SEG_MISNAMED) {
		if (valid)
			start = h.first_lsn;
		else if ((err = first_frame(sv, lsn, &id, &start, &at)) > 0)
			err = 0;
	}
	if (!err) {
		struct rl_seg_header from = {.first_lsn = start, .log_id = sv->log_id,
					     .prev_last_lsn = start - 1};
		struct ringlog_recovery scratch;
		memset(&scratch, 0, sizeof(scratch));
		struct salvage probe = {.dir_fd = sv->dir_fd, .log_id = sv->log_id,
					.rep = &scratch};
		struct rl_segment seg;
		uint64_t end;
		err = salvage_frames(&probe, fd, name, &from, 0, &seg, &end);
		if (!err) {
			uint64_t *c = realloc(sv->claims, (sv->nclaims + 1) * sizeof(*c));
			if (!c)
				err = rl_fail(-ENOMEM, "salvage: allocating");
			else
				sv->claims = c, sv->claims[sv->nclaims++] = end;
		}
	}
	close(fd);
	return err;
}

/* Plan the renaming aside of the segments marked `which`. */
static int set_aside_all(struct salvage *sv, const uint64_t *lsns, const char *keep, size_t n,
			 int which)
{
	for (size_t i = 0; i < n; i++)
		if (keep[i] == which) {
			struct rl_action a = {.op = RINGLOG_REPAIR_SET_ASIDE, .seg = lsns[i],
					      .why = aside_reason(which)};
			int err = rl_plan_add(sv->plan, &a, NULL, 0);
			if (err)
				return err;
		}
	return 0;
}

int rl_plan_salvage(int dir_fd, const uint64_t *lsns, size_t n, struct rl_plan *p)
{
	struct ringlog_recovery *rep = &p->report;
	struct salvage sv = {.dir_fd = dir_fd, .plan = p, .rep = rep};
	int fd = -1, err = 0;
	char *keep = calloc(n, 1);
	if (!keep)
		return rl_fail(-ENOMEM, "salvage: allocating");
	rep->first_lsn = lsns[0];
	rep->last_lsn = lsns[0] - 1;
	int found = find_log_id(&sv, lsns, n);
	if (found < 0) {
		err = found;
		goto out;
	}
	if (found == 0)
		sv.log_id = rl_new_log_id(); /* no header says: only a torn creation may pass */
	for (size_t i = 0; i < n; i++) {
		int k = found ? classify(&sv, lsns[i]) : SEG_KEPT;
		if (k < 0) {
			err = k;
			goto out;
		}
		keep[i] = (char)k;
	}
	rep->first_lsn = lsns[0];
	rep->last_lsn = lsns[0] - 1;
	uint64_t expect = 0;
	uint32_t prev_crc = 0;
	int first_kept = 1;
	for (size_t i = 0; i < n; i++) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		if (keep[i] != SEG_KEPT) {
			/* Those after a kept segment are noted with it, below. */
			if (first_kept && (err = note_aside(&sv, lsns[i], keep[i])) != 0)
				goto out;
			continue;
		}
		size_t j = i + 1;
		while (j < n && keep[j] != SEG_KEPT)
			j++;
		fd = rl_file_open(dir_fd, name, O_RDONLY);
		if (fd < 0) {
			err = rl_fail(fd, "salvage: opening %s", name);
			fd = -1;
			goto out;
		}
		struct rl_seg_header h;
		uint64_t size;
		int ok = read_header(fd, name, &h, &size);
		if (ok < 0) {
			err = ok;
			goto out;
		}
		if (first_kept) {
			rep->first_lsn = lsns[i];
			expect = lsns[i];
			prev_crc = ok ? h.prev_tail_crc : 0;
		}
		struct rl_seg_header want = {.first_lsn = lsns[i], .log_id = sv.log_id,
					     .prev_last_lsn = lsns[i] - 1, .prev_tail_crc = prev_crc};
		struct rl_segment seg;
		if (!ok && j == n && size <= RL_SEG_HEADER_BYTES) {
			/* A rotation (or the log's creation) torn by a crash: not damage. */
			if ((err = rl_plan_reset_file(p, lsns[i], size, &want)) != 0)
				goto out;
			seg = (struct rl_segment){.fd = -1, .first_lsn = lsns[i],
						  .size = RL_SEG_HEADER_BYTES};
		} else {
			if (!found) {
				rl_note_damage(rep, name, 0, lsns[i],
					       "no segment header identifies the log (all invalid)");
				err = rl_refuse(rep);
				goto out;
			}
			if (!ok || h.prev_tail_crc != want.prev_tail_crc) {
				rl_note_damage(rep, name, 0, lsns[i],
					       ok ? "segment does not chain to the previous one: "
						    "header written again"
						  : "invalid segment header: written again");
				rep->rewritten_headers++;
				uint8_t hdr[RL_SEG_HEADER_BYTES];
				rl_seg_header_encode(&want, hdr);
				struct rl_action a = {.op = RINGLOG_REPAIR_WRITE_HEADER, .seg = lsns[i],
						      .why = ok ? "header does not chain to the "
								  "previous segment"
								: "invalid segment header"};
				if ((err = rl_plan_add(p, &a, hdr, sizeof(hdr))) != 0)
					goto out;
			}
			/* Whether it is the log's last segment (whose stale tail is not
			 * damage): the kept ones after it may yet be set aside for where it
			 * ends, which a read-only look tells. */
			int is_last = j == n;
			if (!is_last) {
				uint64_t end_lsn;
				if ((err = probe_end(&sv, fd, name, &want, &end_lsn)) != 0)
					goto out;
				size_t k = j;
				while (k < n && (lsns[k] < end_lsn || lsns[k] - end_lsn > RL_SALVAGE_MAX_GAP))
					while (++k < n && keep[k] != SEG_KEPT)
						;
				is_last = k == n;
			}
			err = salvage_frames(&sv, fd, name, &want, is_last, &seg, &expect);
			if (err)
				goto out;
		}
		seg.fd = -1;
		close(fd);
		fd = -1;
		/* A segment that starts inside this one's LSNs, or implausibly far after
		 * them (the holes for the gap would fill a disk), is not taken as the log's
		 * continuation. */
		while (j < n && (lsns[j] < expect || lsns[j] - expect > RL_SALVAGE_MAX_GAP)) {
			keep[j] = lsns[j] < expect ? SEG_OVERLAP : SEG_FAR;
			while (++j < n && keep[j] != SEG_KEPT)
				;
		}
		/* The segments up to the next kept one are not part of the log (noted
		 * first, so that the damage reported first is theirs). */
		for (size_t m = i + 1; m < j; m++)
			if ((err = note_aside(&sv, lsns[m], keep[m])) != 0)
				goto out;
		if (j < n && (err = fill_gap(&sv, &seg, &expect, lsns[j],
					     "LSNs missing before the next segment (missing or "
					     "cut segment)")) != 0)
			goto out;
		prev_crc = seg.last_crc;
		first_kept = 0;
		if (j == n) {
			p->last = seg;
			break;
		}
	}
	/*
	 * Set aside, in an order that a crash cannot turn into other decisions: other
	 * logs' segments first (they only ever vote against this log), then the far
	 * ones (before the holes below move the end they were measured from), then
	 * holes for LSNs that this log's set-aside segments hold past its end, then
	 * those segments.
	 */
	if ((err = set_aside_all(&sv, lsns, keep, n, SEG_FOREIGN)) != 0 ||
	    (err = set_aside_all(&sv, lsns, keep, n, SEG_FAR)) != 0)
		goto out;
	/* (Each claim on its own: one far-off segment must not void a near one's.) */
	uint64_t claimed = 0;
	for (size_t c = 0; c < sv.nclaims; c++)
		if (sv.claims[c] > expect && sv.claims[c] - expect <= RL_SALVAGE_MAX_GAP &&
		    sv.claims[c] > claimed)
			claimed = sv.claims[c];
	if (claimed && (err = fill_gap(&sv, &p->last, &expect, claimed,
				       "LSNs of a segment set aside follow the end of the log")) != 0)
		goto out;
	if ((err = set_aside_all(&sv, lsns, keep, n, SEG_MISNAMED)) != 0 ||
	    (err = set_aside_all(&sv, lsns, keep, n, SEG_OVERLAP)) != 0)
		goto out;
	p->log_id = sv.log_id;
	p->next_lsn = expect;
	rep->last_lsn = expect - 1;
	/* The writer starts after every LSN kept or claimed, in a segment of this log. */
	assert(p->last.size >= RL_SEG_HEADER_BYTES && p->last.size % RL_FRAME_ALIGN == 0);
	assert(p->next_lsn >= p->last.first_lsn && p->next_lsn >= claimed);
out:
	if (fd >= 0)
		close(fd);
	free(keep);
	free(sv.claims);
	return err;
}
