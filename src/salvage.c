/*
 * Salvage recovery (RINGLOG_RECOVER_SKIP_CORRUPTED): keep every valid frame of the
 * log, wherever the damage is, and mark what was lost so that LSNs are never reused.
 *
 * The log id is the one most valid segment headers (those that match their file
 * name) carry; on a tie, the newest such segment's.  Then, oldest segment first:
 *  - A segment that is not this log's is set aside: renamed to NAME.salvaged, never
 *    deleted.  That is a segment whose valid header carries another log id or names
 *    another first LSN than its file name, or whose header is invalid but whose first
 *    frame carries another log id.
 *  - A kept segment whose header is invalid or does not chain to the segment before
 *    gets its header written again from its name, the log id and the chain.  (A last
 *    segment of at most 64 bytes with an invalid header is a torn rotation, as in
 *    the other modes: not damage.)
 *  - Its frames are scanned.  At a frame that is not valid, salvage looks for the
 *    next offset (8-byte steps, at least 32 bytes on) where a valid frame of this log
 *    starts whose LSN is plausible: not below the LSN expected at the damage, and at
 *    most one LSN per 4 damaged bytes above it (a record costs at least 4 bytes).
 *    Headers are judged first; only a plausible one has its frame read and its CRC
 *    checked, within a budget of bytes per damaged stretch, so that forged headers
 *    cannot make the search slow.  The damaged stretch becomes a hole frame
 *    (format.c) written over its first 32 bytes (several in a row if it is longer
 *    than a hole can cover): it stands for the LSNs between, and the bytes after its
 *    header stay as they were.  When no valid frame follows, the segment is cut at
 *    the damage: the damage reaches its end.
 *  - A later segment that starts before the LSN this one ends at (an overlap), or
 *    more than 2^44 LSNs after it, is set aside too: the earlier frames win.
 *  - When a segment ends before the LSN its successor starts at (a missing segment,
 *    or a cut), a 32-byte hole for the missing LSNs is appended to it, and the
 *    successor's header is then written again to chain to that hole.
 *  - When a segment of this log that was set aside holds LSNs past the end of the
 *    log, holes for them end the log, so that they are not handed out again.
 * Segments are renamed aside last, after every hole and header is written: until
 * then the log still holds them, and another salvage takes the same decisions.
 *
 * Every write is a whole 32- or 64-byte header, made durable (fdatasync) before the
 * next step, and every step leaves a log that this mode accepts or repairs the same
 * way again: a crash in the middle of salvage is finished by the next salvage.  When
 * applied, every kept segment is synced and its cached pages dropped before it is
 * read, so only what is on the disk counts.  The read-only run (ringlog_check) takes
 * the same decisions without writing.
 */
#include "recovery.h"

#include "errors.h"

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
/* Bytes of candidate frames whose CRC one search after damage may check, beyond 4
 * per byte searched. */
#define RL_RESYNC_BUDGET (64ull << 20)

/* Longest hole salvage writes; a longer damaged stretch takes several.  A variable
 * so that tests can make it small (tests/test_salvage.c). */
uint64_t rl_salvage_max_hole_bytes = RL_HOLE_MAX_BYTES;

/* keep[i] of the segments: kept, or set aside for a reason. */
enum { SEG_FOREIGN = 0, SEG_KEPT = 1, SEG_OVERLAP = 2, SEG_FAR = 3 };

struct salvage {
	int dir_fd;
	int apply;
	uint64_t log_id;
	struct ringlog_recovery *rep;
	uint64_t claimed; /* LSN after the last one a set-aside segment of this log holds */
};

/* Write `len` bytes at `off` of segment `name` and make them durable. */
static int write_durably(int fd, const char *name, const void *buf, size_t len, uint64_t off,
			 const char *what)
{
	const uint8_t *p = buf;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return rl_fail(n < 0 ? -errno : -EIO,
				       "salvage: writing %s at offset %" PRIu64 " of %s", what, off,
				       name);
		done += (size_t)n;
	}
	if (fdatasync(fd) < 0)
		return rl_fail(-errno, "salvage: fdatasync of %s", name);
	return 0;
}

/* Write (when applying) a hole frame at `off` covering `frame_len` bytes and standing
 * for `nrecs` LSNs from `first_lsn`.  Returns its CRC through *crc; 0 or -errno. */
static int put_hole(struct salvage *sv, int fd, const char *name, uint64_t off, uint32_t frame_len,
		    uint32_t nrecs, uint64_t first_lsn, uint32_t *crc)
{
	uint8_t hole[RL_FRAME_HEADER_BYTES];
	*crc = rl_hole_encode(hole, frame_len, nrecs, first_lsn, sv->log_id);
	sv->rep->holes++;
	sv->rep->lost_lsns += nrecs;
	if (!sv->apply)
		return 0;
	return write_durably(fd, name, hole, sizeof(hole), off, "a hole frame");
}

/* Holes over the damaged stretch [off, off + len) (len >= 32, a multiple of 8)
 * standing for `lost` LSNs from `first`: one, or several in a row when the stretch is
 * longer than a hole may be (the first ones then carry the LSNs). */
static int put_holes(struct salvage *sv, int fd, const char *name, uint64_t off, uint64_t len,
		     uint64_t lost, uint64_t first)
{
	uint64_t max = rl_salvage_max_hole_bytes;
	uint32_t crc;
	for (;;) {
		/* Half a maximal hole at a time, so that what is left stays >= 32 bytes. */
		uint64_t chunk = len > max ? (max / 2) & ~(uint64_t)(RL_FRAME_ALIGN - 1) : len;
		uint32_t n = lost > UINT32_MAX ? UINT32_MAX : (uint32_t)lost;
		int err = put_hole(sv, fd, name, off, (uint32_t)chunk, n, first, &crc);
		if (err || chunk == len)
			return err;
		off += chunk;
		len -= chunk;
		lost -= n;
		first += n;
	}
}

/*
 * After damage at `off` (LSN `expect` due there): the first offset `at` from which
 * the scan can go on -- a valid frame or hole of this log with a plausible LSN (see
 * the top of this file).  Returns 1 with *at and *lsn (its first LSN), 0 if there is
 * none, or -errno.  Leaves s->off / s->expect_lsn for the caller to set.
 */
static int resync(struct rl_seg_scan *s, uint64_t off, uint64_t expect, uint64_t *at,
		  uint64_t *lsn)
{
	if (s->file_size < off)
		return 0;
	uint64_t budget = RL_RESYNC_BUDGET + 4 * (s->file_size - off);
	for (uint64_t p = off + RL_FRAME_HEADER_BYTES; p + RL_FRAME_HEADER_BYTES <= s->file_size;
	     p += RL_FRAME_ALIGN) {
		struct rl_frame_info info;
		int got = rl_scan_peek(s, p, &info);
		if (got < 0)
			return got;
		if (got == 0 || info.first_lsn < expect || info.first_lsn - expect > (p - off) / 4)
			continue;
		if (!info.hole) {
			/* Only now read the frame and check its records and CRC. */
			if (info.frame_len > budget)
				continue;
			budget -= info.frame_len;
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

/*
 * Salvage the frames of a kept segment (open as fd, its header `h` as it is or will
 * be written).  Fills *seg (fd not taken) and *next_lsn.  Returns 0 or -errno.
 */
static int salvage_frames(struct salvage *sv, int fd, const char *name,
			  const struct rl_seg_header *h, struct rl_segment *seg, uint64_t *next_lsn)
{
	struct ringlog_recovery *rep = sv->rep;
	struct rl_seg_scan scan;
	int err = rl_scan_init(&scan, fd, h);
	if (err)
		return rl_fail(err, "salvage: fstat of %s", name);
	/* A file shorter than a header gets one written (read-only: would get one). */
	if (scan.file_size < RL_SEG_HEADER_BYTES)
		scan.file_size = RL_SEG_HEADER_BYTES;
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
		if (why == RL_FRAME_END) {
			if (off == scan.file_size)
				break;
			reason = "bytes after the last frame";
		}
		rl_note_damage(rep, name, off, expect, reason);
		uint64_t at, lsn;
		got = resync(&scan, off, expect, &at, &lsn);
		if (got < 0) {
			err = rl_fail(got, "salvage: reading %s", name);
			break;
		}
		if (got == 1) {
			err = put_holes(sv, fd, name, off, at - off, lsn - expect, expect);
			if (err)
				break;
			scan.off = at;
			scan.expect_lsn = lsn;
			continue;
		}
		/* Nothing valid follows: the segment ends at the damage. */
		rep->cut_bytes += scan.file_size - off;
		if (sv->apply && (err = rl_recovery_cut(fd, name, off)) != 0)
			break;
		scan.off = off;
		scan.expect_lsn = expect;
		break;
	}
	rl_scan_free(&scan);
	if (err)
		return err;
	*seg = (struct rl_segment){fd, h->first_lsn, scan.off, last_crc};
	*next_lsn = scan.expect_lsn;
	return 0;
}

/* LSNs [*next_lsn, until) that no segment holds: append holes that stand for them to
 * *seg (several if they are more than a 32-bit count). */
static int fill_gap(struct salvage *sv, const char *name, struct rl_segment *seg,
		    uint64_t *next_lsn, uint64_t until, const char *reason)
{
	while (*next_lsn < until) {
		uint64_t lost = until - *next_lsn;
		uint32_t n = lost > UINT32_MAX ? UINT32_MAX : (uint32_t)lost;
		rl_note_damage(sv->rep, name, seg->size, *next_lsn, reason);
		int err = put_hole(sv, seg->fd, name, seg->size, RL_FRAME_HEADER_BYTES, n,
				   *next_lsn, &seg->last_crc);
		if (err)
			return err;
		seg->size += RL_FRAME_HEADER_BYTES;
		*next_lsn += n;
	}
	return 0;
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
 * LSN, 0 invalid, or -errno.  With `frame_id`, also the log id of a frame or hole that
 * starts right after the header (0 if none does). */
static int peek_segment(int dir_fd, uint64_t lsn, struct rl_seg_header *h, uint64_t *frame_id)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rl_fail(-errno, "salvage: opening %s", name);
	uint64_t size;
	int ok = read_header(fd, name, h, &size);
	if (ok >= 0 && frame_id) {
		uint8_t f[RL_FRAME_HEADER_BYTES];
		*frame_id = 0;
		ssize_t got = pread(fd, f, sizeof(f), RL_SEG_HEADER_BYTES);
		if (got == (ssize_t)sizeof(f) &&
		    (rl_get32(f) == RL_FRAME_MAGIC || rl_get32(f) == RL_HOLE_MAGIC))
			*frame_id = rl_get64(f + 24);
	}
	close(fd);
	return ok <= 0 ? ok : h->first_lsn == lsn ? 1 : 2;
}

/* The log id (see the top of this file).  Returns 1, 0 if no header identifies the
 * log, or -errno. */
static int find_log_id(int dir_fd, const uint64_t *lsns, size_t n, uint64_t *log_id)
{
	uint64_t *ids = malloc((n ? n : 1) * sizeof(*ids));
	if (!ids)
		return rl_fail(-ENOMEM, "salvage: allocating");
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		struct rl_seg_header h;
		int ok = peek_segment(dir_fd, lsns[i], &h, NULL);
		if (ok < 0) {
			free(ids);
			return ok;
		}
		if (ok == 1)
			ids[m++] = h.log_id;
	}
	size_t best = 0, best_votes = 0;
	for (size_t a = 0; a < m; a++) {
		size_t votes = 0;
		for (size_t b = 0; b < m; b++)
			votes += ids[b] == ids[a];
		if (votes >= best_votes) { /* ">=": the newest wins a tie */
			best = a;
			best_votes = votes;
		}
	}
	if (m)
		*log_id = ids[best];
	free(ids);
	return m > 0;
}

/* Whether segment `lsn` is this log's: SEG_KEPT, SEG_FOREIGN, or -errno. */
static int belongs(struct salvage *sv, uint64_t lsn)
{
	struct rl_seg_header h;
	uint64_t frame_id;
	int ok = peek_segment(sv->dir_fd, lsn, &h, &frame_id);
	if (ok < 0)
		return ok;
	if (ok == 1)
		return h.log_id == sv->log_id ? SEG_KEPT : SEG_FOREIGN;
	if (ok == 2)
		return SEG_FOREIGN; /* misnamed */
	/* An invalid header: kept and written again, unless another log's frames follow. */
	return frame_id == 0 || frame_id == sv->log_id ? SEG_KEPT : SEG_FOREIGN;
}

static const char *aside_reason(int why)
{
	switch (why) {
	case SEG_OVERLAP:
		return "segment starts inside the LSNs of the one before: set aside";
	case SEG_FAR:
		return "segment starts implausibly far (2^44 LSNs) after the one before: set aside";
	default:
		return "segment of another log, or misnamed: set aside";
	}
}

/*
 * Segment `lsn` is not part of the log (why: SEG_FOREIGN, SEG_OVERLAP or SEG_FAR):
 * report it, and if it holds LSNs of this log (not too far off), remember the end of
 * them in sv->claimed.  It is renamed later (rename_aside).  Returns 0 or -errno.
 */
static int note_aside(struct salvage *sv, uint64_t lsn, int why)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	rl_note_damage(sv->rep, name, 0, lsn, aside_reason(why));
	sv->rep->set_aside_segments++;
	if (why == SEG_FAR)
		return 0;
	int fd = openat(sv->dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rl_fail(-errno, "salvage: opening %s", name);
	struct rl_seg_header h;
	uint64_t size;
	int err = read_header(fd, name, &h, &size);
	if (err == 1 && h.log_id == sv->log_id) {
		struct rl_seg_scan scan;
		enum rl_frame_status st;
		err = rl_scan_init(&scan, fd, &h);
		if (err == 0)
			while ((err = rl_scan_next(&scan, &st)) == 1)
				;
		if (err == 0 && scan.expect_lsn > sv->claimed)
			sv->claimed = scan.expect_lsn;
		rl_scan_free(&scan);
	}
	close(fd);
	return err < 0 ? rl_fail(err, "salvage: reading %s", name) : 0;
}

/* Rename segment `lsn` to NAME.salvaged (or NAME.salvaged.K if that is taken). */
static int rename_aside(struct salvage *sv, uint64_t lsn)
{
	char name[RL_SEG_NAME_LEN + 1], to[RL_SEG_NAME_LEN + 24];
	rl_seg_name(name, lsn);
	for (unsigned k = 0;; k++) {
		if (k == 0)
			snprintf(to, sizeof(to), "%s.salvaged", name);
		else
			snprintf(to, sizeof(to), "%s.salvaged.%u", name, k);
		if (renameat2(sv->dir_fd, name, sv->dir_fd, to, RENAME_NOREPLACE) == 0)
			break;
		if (errno != EEXIST)
			return rl_fail(-errno, "salvage: renaming %s to %s", name, to);
		if (k == 1000)
			return rl_fail(-EEXIST, "salvage: no free name to set %s aside", name);
	}
	int err = rl_dir_fsync(sv->dir_fd);
	return err ? rl_fail(err, "salvage: fsync of the log directory") : 0;
}

int rl_salvage(int dir_fd, int apply, const uint64_t *lsns, size_t n, struct rl_recovered *out)
{
	struct ringlog_recovery *rep = &out->report;
	struct salvage sv = {dir_fd, apply, 0, rep, 0};
	int fd = -1, err = 0;
	char *keep = calloc(n, 1);
	if (!keep)
		return rl_fail(-ENOMEM, "salvage: allocating");
	int found = find_log_id(dir_fd, lsns, n, &sv.log_id);
	if (found < 0) {
		err = found;
		goto out;
	}
	if (found == 0)
		sv.log_id = rl_new_log_id(); /* no header says: only a torn creation may pass */
	for (size_t i = 0; i < n; i++) {
		int k = found ? belongs(&sv, lsns[i]) : SEG_KEPT;
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
	char last_name[RL_SEG_NAME_LEN + 1] = "";
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
		fd = openat(dir_fd, name, (apply ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0) {
			err = rl_fail(-errno, "salvage: opening %s", name);
			goto out;
		}
		if (apply) {
			/* As in the other modes: only what is on the disk counts. */
			if (fdatasync(fd) < 0) {
				err = rl_fail(-errno, "salvage: fdatasync of %s", name);
				goto out;
			}
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
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
		struct rl_seg_header want = {lsns[i], sv.log_id, lsns[i] - 1, prev_crc};
		struct rl_segment seg;
		if (!ok && j == n && size <= RL_SEG_HEADER_BYTES) {
			/* A rotation (or the log's creation) torn by a crash: not damage. */
			if (apply && (err = rl_recovery_rewrite_torn(dir_fd, fd, name, &want)) != 0)
				goto out;
			rep->cut_bytes += size;
			seg = (struct rl_segment){fd, lsns[i], RL_SEG_HEADER_BYTES, 0};
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
				if (apply && (err = write_durably(fd, name, hdr, sizeof(hdr), 0,
								  "the segment header")) != 0)
					goto out;
			}
			err = salvage_frames(&sv, fd, name, &want, &seg, &expect);
			if (err)
				goto out;
		}
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
		if (j < n && (err = fill_gap(&sv, name, &seg, &expect, lsns[j],
					     "LSNs missing before the next segment (missing or "
					     "cut segment)")) != 0)
			goto out;
		prev_crc = seg.last_crc;
		first_kept = 0;
		if (j == n) {
			out->last = seg;
			fd = -1;
			snprintf(last_name, sizeof(last_name), "%s", name);
			break;
		}
		close(fd);
		fd = -1;
	}
	/* LSNs that set-aside segments of this log hold past the end: never again. */
	if (sv.claimed > expect && sv.claimed - expect <= RL_SALVAGE_MAX_GAP &&
	    (err = fill_gap(&sv, last_name, &out->last, &expect, sv.claimed,
			    "LSNs of a segment set aside follow the end of the log")) != 0)
		goto out;
	if (apply)
		for (size_t i = 0; i < n; i++)
			if (keep[i] != SEG_KEPT && (err = rename_aside(&sv, lsns[i])) != 0)
				goto out;
	out->log_id = sv.log_id;
	out->next_lsn = expect;
	rep->last_lsn = expect - 1;
out:
	if (fd >= 0)
		close(fd);
	if (err && out->last.fd >= 0) {
		close(out->last.fd);
		out->last.fd = -1;
	}
	free(keep);
	return err;
}
