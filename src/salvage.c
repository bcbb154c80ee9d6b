/*
 * Salvage recovery (RINGLOG_RECOVER_SKIP_CORRUPTED): keep every valid frame of the
 * log, wherever the damage is, and mark what was lost so that LSNs are never reused.
 *
 * The log id is the one in the oldest segment header that matches its file name.
 * Then, oldest segment first:
 *  - A segment whose valid header names another log or another first LSN than its
 *    file name is not part of this log: it is renamed to NAME.salvaged (set aside,
 *    never deleted).
 *  - A kept segment whose header is invalid or does not chain to the segment before
 *    gets its header written again from its name, the log id and the chain.  (A last
 *    segment of at most 64 bytes with an invalid header is a torn rotation, as in
 *    the other modes: not damage.)
 *  - Its frames are scanned.  At a frame that is not valid, salvage looks for the
 *    next offset (8-byte steps, at least 32 bytes on) where a valid frame of this log
 *    starts whose LSN is plausible: not below the LSN expected at the damage, and at
 *    most one LSN per 4 damaged bytes above it (a record costs at least 4 bytes).
 *    The damaged stretch becomes a hole frame
 *    (format.c) written over its first 32 bytes: it stands for the LSNs between, and
 *    the bytes after its header stay as they were.  When no valid frame follows,
 *    the segment is cut at the damage.
 *  - A later segment that starts before the LSN this one ends at (an overlap), or
 *    more than 2^44 LSNs after it, is set aside too: the earlier frames win.
 *  - When a segment ends before the LSN its successor starts at (a missing segment,
 *    or a cut), a 32-byte hole for the missing LSNs is appended to it, and the
 *    successor's header is then written again to chain to that hole.
 *
 * Every write is a whole 32- or 64-byte header, made durable (fdatasync) before the
 * next step, and every step leaves a log that this mode accepts or repairs the same
 * way again: a crash in the middle of salvage is finished by the next salvage.  The
 * read-only run (ringlog_check) takes the same decisions without writing.
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

struct salvage {
	int dir_fd;
	int apply;
	uint64_t log_id;
	struct ringlog_recovery *rep;
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

/*
 * After damage at `off` (LSN `expect` due there): the first offset `at` from which
 * the scan can go on -- a valid frame or hole of this log with a plausible LSN (see
 * the top of this file).  Returns 1 with *at and *lsn (its first LSN), 0 if there is
 * none, or -errno.  Leaves s->off / s->expect_lsn for the caller to set.
 */
static int resync(struct rl_seg_scan *s, uint64_t off, uint64_t expect, uint64_t *at,
		  uint64_t *lsn)
{
	uint64_t limit = s->file_size;
	if (limit < off)
		return 0;
	if (limit - off > RL_HOLE_MAX_BYTES)
		limit = off + RL_HOLE_MAX_BYTES;
	for (uint64_t p = off + RL_FRAME_HEADER_BYTES; p + RL_FRAME_HEADER_BYTES <= limit;
	     p += RL_FRAME_ALIGN) {
		enum rl_frame_status why;
		s->off = p;
		s->expect_lsn = 0; /* any LSN: judged below */
		int got = rl_scan_next(s, &why);
		if (got < 0)
			return got;
		if (got == 0)
			continue;
		uint64_t first = s->info.first_lsn;
		if (first < expect || first - expect > (p - off) / 4)
			continue;
		*at = p;
		*lsn = first;
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
			uint32_t crc;
			err = put_hole(sv, fd, name, off, (uint32_t)(at - off), (uint32_t)(lsn - expect),
				       expect, &crc);
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

/* LSNs [*next_lsn, next_first) that no segment holds: append holes that stand for
 * them to *seg (several if they are more than a 32-bit count). */
static int fill_gap(struct salvage *sv, const char *name, struct rl_segment *seg,
		    uint64_t *next_lsn, uint64_t next_first)
{
	while (*next_lsn < next_first) {
		uint64_t lost = next_first - *next_lsn;
		uint32_t n = lost > UINT32_MAX ? UINT32_MAX : (uint32_t)lost;
		rl_note_damage(sv->rep, name, seg->size, *next_lsn,
			       "LSNs missing before the next segment (missing or cut segment)");
		int err = put_hole(sv, seg->fd, name, seg->size, RL_FRAME_HEADER_BYTES, n,
				   *next_lsn, &seg->last_crc);
		if (err)
			return err;
		seg->size += RL_FRAME_HEADER_BYTES;
		*next_lsn += n;
	}
	return 0;
}

static const char *const ALIEN = "segment of another log, or misnamed: set aside";

/* Rename segment `lsn` to NAME.salvaged (or NAME.salvaged.K if that exists). */
static int set_aside(struct salvage *sv, uint64_t lsn, const char *why)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	rl_note_damage(sv->rep, name, 0, lsn, why);
	sv->rep->set_aside_segments++;
	if (!sv->apply)
		return 0;
	char to[RL_SEG_NAME_LEN + 24];
	for (unsigned k = 0;; k++) {
		if (k == 0)
			snprintf(to, sizeof(to), "%s.salvaged", name);
		else
			snprintf(to, sizeof(to), "%s.salvaged.%u", name, k);
		if (faccessat(sv->dir_fd, to, F_OK, 0) != 0)
			break;
		if (k == 1000)
			return rl_fail(-EEXIST, "salvage: no free name to set %s aside", name);
	}
	if (renameat(sv->dir_fd, name, sv->dir_fd, to) < 0)
		return rl_fail(-errno, "salvage: renaming %s to %s", name, to);
	int err = rl_dir_fsync(sv->dir_fd);
	return err ? rl_fail(err, "salvage: fsync of the log directory") : 0;
}

/* Header and size of segment `name`: 1 if the header is valid, 0 if not, or -errno. */
static int read_header(int fd, const char *name, struct rl_seg_header *h, uint64_t *size)
{
	int err = rl_seg_read_header(fd, h, size);
	if (err == -EBADMSG)
		return 0;
	return err ? rl_fail(err, "salvage: reading the header of %s", name) : 1;
}

/* The log id: from the oldest valid header that matches its file name.  Returns 1,
 * 0 if no header identifies the log, or -errno. */
static int find_log_id(int dir_fd, const uint64_t *lsns, size_t n, uint64_t *log_id)
{
	for (size_t i = 0; i < n; i++) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return rl_fail(-errno, "salvage: opening %s", name);
		struct rl_seg_header h;
		uint64_t size;
		int ok = read_header(fd, name, &h, &size);
		close(fd);
		if (ok < 0)
			return ok;
		if (ok && h.first_lsn == lsns[i]) {
			*log_id = h.log_id;
			return 1;
		}
	}
	return 0;
}

/* Whether segment i belongs to the log: 1 kept, 0 set aside, or -errno. */
static int belongs(struct salvage *sv, uint64_t lsn)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsn);
	int fd = openat(sv->dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rl_fail(-errno, "salvage: opening %s", name);
	struct rl_seg_header h;
	uint64_t size;
	int ok = read_header(fd, name, &h, &size);
	close(fd);
	if (ok < 0)
		return ok;
	return !ok || (h.log_id == sv->log_id && h.first_lsn == lsn);
}

int rl_salvage(int dir_fd, int apply, const uint64_t *lsns, size_t n, struct rl_recovered *out)
{
	struct ringlog_recovery *rep = &out->report;
	struct salvage sv = {dir_fd, apply, 0, rep};
	int fd = -1, err = 0;
	/* keep[i]: 1 kept; set aside as 0 alien, 2 overlapping, 3 too far */
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
		int k = found ? belongs(&sv, lsns[i]) : 1;
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
		if (keep[i] != 1) {
			/* Those after a kept segment are set aside with it, below. */
			if (first_kept && (err = set_aside(&sv, lsns[i], ALIEN)) != 0)
				goto out;
			continue;
		}
		size_t j = i + 1;
		while (j < n && keep[j] != 1)
			j++;
		int is_last = j == n;
		fd = openat(dir_fd, name, (apply ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0) {
			err = rl_fail(-errno, "salvage: opening %s", name);
			goto out;
		}
		if (apply && is_last) {
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
		if (!ok && is_last && size <= RL_SEG_HEADER_BYTES) {
			/* A rotation (or the log's creation) torn by a crash: not damage. */
			if (apply && (err = rl_recovery_rewrite_torn(dir_fd, fd, name, &want)) != 0)
				goto out;
			rep->cut_bytes += size;
			out->last = (struct rl_segment){fd, lsns[i], RL_SEG_HEADER_BYTES, 0};
			fd = -1;
			for (size_t m = i + 1; m < n; m++)
				if ((err = set_aside(&sv, lsns[m], ALIEN)) != 0)
					goto out;
			break;
		}
		if (!found) {
			rl_note_damage(rep, name, 0, lsns[i],
				       "no segment header identifies the log (all invalid)");
			err = rl_refuse(rep);
			goto out;
		}
		if (!ok || h.prev_tail_crc != want.prev_tail_crc) {
			rl_note_damage(rep, name, 0, lsns[i],
				       ok ? "segment does not chain to the previous one: header "
					    "written again"
					  : "invalid segment header: written again");
			rep->rewritten_headers++;
			uint8_t hdr[RL_SEG_HEADER_BYTES];
			rl_seg_header_encode(&want, hdr);
			if (apply && (err = write_durably(fd, name, hdr, sizeof(hdr), 0,
							  "the segment header")) != 0)
				goto out;
		}
		struct rl_segment seg;
		err = salvage_frames(&sv, fd, name, &want, &seg, &expect);
		if (err)
			goto out;
		/* A segment that starts inside this one's LSNs, or implausibly far after
		 * them (the holes for the gap would fill a disk), is not taken as the log's
		 * continuation. */
		while (j < n && (lsns[j] < expect || lsns[j] - expect > RL_SALVAGE_MAX_GAP)) {
			keep[j] = lsns[j] < expect ? 2 : 3;
			while (++j < n && keep[j] != 1)
				;
		}
		if (!is_last && j == n) {
			is_last = 1; /* it became the last: sync what was scanned */
			if (apply && fdatasync(fd) < 0) {
				err = rl_fail(-errno, "salvage: fdatasync of %s", name);
				goto out;
			}
		}
		uint64_t next_first = is_last ? 0 : lsns[j];
		/* The segments up to the next kept one are not part of the log (first, so
		 * that the damage reported first is theirs), and their LSNs are lost. */
		for (size_t m = i + 1; m < j; m++) {
			static const char *const why[] = {
			    ALIEN, ALIEN, "segment starts inside the LSNs of the one before: set aside",
			    "segment starts implausibly far (2^44 LSNs) after the one before: set aside"};
			if ((err = set_aside(&sv, lsns[m], why[(unsigned char)keep[m]])) != 0)
				goto out;
		}
		if (!is_last && (err = fill_gap(&sv, name, &seg, &expect, next_first)) != 0)
			goto out;
		prev_crc = seg.last_crc;
		first_kept = 0;
		if (is_last) {
			out->last = seg;
			fd = -1;
			break;
		}
		close(fd);
		fd = -1;
	}
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
