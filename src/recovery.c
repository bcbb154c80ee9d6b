/*
 * Recovery, run by ringlog_open() before the consumer starts, and read-only by
 * ringlog_check().  docs/recovery.md states the promises; this is how they are kept.
 *
 * One pass over the segments in LSN order finds the first damage:
 *  - a segment header that is invalid, names another LSN than its file name, carries
 *    another log's id, does not start right after the previous segment's last LSN,
 *    or does not chain to the previous segment's last frame CRC (a missing,
 *    truncated, swapped or foreign segment);
 *  - a frame that is not valid (format.c), or bytes after a segment's last frame.
 *
 * A sealed segment (any but the last) ends exactly at the end of its last entry: the
 * writer cut its prepared bytes off before it started the next one.  The last segment
 * ends at its first invalid entry; what follows is a torn tail only if a writer of
 * this log put it there at or after the LSN due (rl_seg_torn_tail): a prepared file's
 * zeros, a recycled file's stale frames and the bytes an aligned write carried past
 * its last frame are not damage.
 *
 * What happens then depends on the mode:
 *  - TOLERATE_TAIL: a torn tail in the last segment -- nothing in it was
 *    acknowledged, since acknowledgement follows the fdatasync that would have made
 *    it whole -- is cut off: zeroed in place (so the segment keeps its prepared
 *    blocks), or truncated when it reaches the end of the file.  Anywhere else:
 *    -EBADMSG.
 *  - ABSOLUTE: any damage: -EBADMSG.
 *  - POINT_IN_TIME: keep everything before the damage; cut its segment there and
 *    remove every later segment (newest first, each removal made durable, so a crash
 *    in the middle leaves a log that the same mode finishes repairing).
 *  - SKIP_CORRUPTED: a pass of its own, in salvage.c.
 * Also in every mode but ABSOLUTE, a last segment with no more than a header's worth
 * of bytes and an invalid header is a rotation torn by a crash: its header is
 * written again.
 *
 * Before the last segment is scanned it is fdatasync'd and its cached pages are
 * dropped: a previous writer may have died between a write and its fdatasync, or an
 * fdatasync may have failed after the kernel marked the pages clean.  What recovery
 * keeps is then what is on the disk, and open may report all of it durable.  Every
 * cut is made durable (ftruncate + fdatasync) before open returns, so nothing is
 * ever appended after unreadable bytes.
 */
#include "recovery.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t rl_new_log_id(void)
{
	uint64_t id = 0;
	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
			id = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&id;
	}
	return id;
}

int rl_recovery_rewrite_torn(int dir_fd, int fd, const char *name, const struct rl_seg_header *h)
{
	uint8_t hdr[RL_SEG_HEADER_BYTES];
	rl_seg_header_encode(h, hdr);
	int err = rl_file_truncate(fd, name, 0);
	if (!err)
		err = rl_file_pwrite(fd, name, hdr, sizeof(hdr), 0);
	if (!err)
		err = rl_file_fdatasync(fd, name);
	if (err)
		return rl_fail(err, "recovery: rewriting the torn header of %s", name);
	err = rl_dir_sync(dir_fd);
	return err ? rl_fail(err, "recovery: fsync of the log directory") : 0;
}

int rl_recovery_tail(int fd, const char *name, uint64_t log_id, uint64_t end, uint64_t lsn,
		     uint64_t *torn_end)
{
	int torn = rl_seg_torn_tail(fd, log_id, end, lsn, torn_end);
	return torn < 0 ? rl_fail(torn, "recovery: reading the tail of %s", name) : torn;
}

/* Remove segments lsns[from..n) newest first, each removal durable. */
static int drop_segments(int dir_fd, const uint64_t *lsns, size_t from, size_t n)
{
	for (size_t i = n; i-- > from;) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		int err = rl_file_unlink(dir_fd, name);
		if (err)
			return rl_fail(err, "recovery: removing %s", name);
		err = rl_dir_sync(dir_fd);
		if (err)
			return rl_fail(err, "recovery: fsync of the log directory");
	}
	return 0;
}

void rl_note_damage(struct ringlog_recovery *rep, const char *name, uint64_t off, uint64_t lsn,
			const char *reason)
{
	if (rep->damage)
		return;
	rep->damage = -EBADMSG;
	snprintf(rep->damage_file, sizeof(rep->damage_file), "%s", name);
	rep->damage_offset = off;
	rep->damage_lsn = lsn;
	snprintf(rep->damage_reason, sizeof(rep->damage_reason), "%s", reason);
}

int rl_refuse(const struct ringlog_recovery *rep)
{
	return rl_fail(-EBADMSG,
		       "recovery: %s is damaged at offset %" PRIu64 " (LSN %" PRIu64
		       " expected there): %s",
		       rep->damage_file, rep->damage_offset, rep->damage_lsn, rep->damage_reason);
}

int rl_recover(int dir_fd, uint32_t mode, int apply, struct rl_recovered *out)
{
	memset(out, 0, sizeof(*out));
	out->last.fd = -1;
	struct ringlog_recovery *rep = &out->report;
	rep->mode = mode;
	if (mode > RL_RECOVER_MODE_LAST)
		return rl_fail(-EINVAL, "recovery: unknown recovery mode %u", mode);
	uint64_t *lsns;
	size_t n;
	int err = rl_seg_list(dir_fd, &lsns, &n);
	if (err)
		return rl_fail(err, "recovery: listing the log directory");
	rep->segments = (uint32_t)n;
	if (n == 0) {
		out->empty = 1;
		out->log_id = rl_new_log_id();
		out->next_lsn = 1;
		return 0;
	}
	if (mode == RINGLOG_RECOVER_SKIP_CORRUPTED) {
		err = rl_salvage(dir_fd, apply, lsns, n, out);
		free(lsns);
		return err;
	}
	uint64_t expect = lsns[0], log_id = 0;
	uint32_t prev_crc = 0;
	/* The report's range follows the scan, so a refusal shows what was valid. */
	rep->first_lsn = lsns[0];
	rep->last_lsn = lsns[0] - 1;
	int fd = -1, pending_cut = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		int is_last = i == n - 1;
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		/* Point-in-time may cut any segment; others only write to the last one. */
		int writable = apply && (is_last || mode == RINGLOG_RECOVER_POINT_IN_TIME);
		fd = rl_file_open(dir_fd, name, writable ? O_RDWR : O_RDONLY);
		if (fd < 0) {
			err = rl_fail(fd, "recovery: opening %s", name);
			fd = -1;
			goto out;
		}
		if (apply && is_last) {
			if ((err = rl_file_fdatasync(fd, name)) != 0) {
				err = rl_fail(err, "recovery: fdatasync of %s", name);
				goto out;
			}
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		}
		struct rl_seg_header h;
		uint64_t size;
		err = rl_seg_read_header(fd, &h, &size);
		if (err && err != -EBADMSG) {
			err = rl_fail(err, "recovery: reading the header of %s", name);
			goto out;
		}
		const char *bad = NULL;
		int header_invalid = err == -EBADMSG;
		if (header_invalid)
			bad = "invalid segment header";
		else if (h.first_lsn != lsns[i])
			bad = "segment header names another first LSN than the file name";
		else if (i > 0 && h.log_id != log_id)
			bad = "segment belongs to another log (log id mismatch)";
		else if (i > 0 && h.first_lsn != expect)
			bad = "segment does not start after the previous one (missing or truncated "
			      "segment)";
		else if (i > 0 && h.prev_tail_crc != prev_crc)
			bad = "segment does not chain to the previous one (its last frame differs)";
		err = 0;
		if (bad) {
			/* A rotation torn by a crash: the header never reached the disk, and
			 * nothing in the file was acknowledged. */
			if (header_invalid && is_last && size <= RL_SEG_HEADER_BYTES &&
			    lsns[i] == expect && mode != RINGLOG_RECOVER_ABSOLUTE) {
				if (i == 0)
					log_id = rl_new_log_id(); /* a new log: nothing to match */
				h = (struct rl_seg_header){lsns[i], log_id, lsns[i] - 1, prev_crc};
				if (apply && (err = rl_recovery_rewrite_torn(dir_fd, fd, name, &h)) != 0)
					goto out;
				rep->cut_bytes += size;
				out->last =
				    (struct rl_segment){fd, h.first_lsn, RL_SEG_HEADER_BYTES, 0};
				fd = -1;
				i++; /* kept */
				break;
			}
			rl_note_damage(rep, name, 0, expect, bad);
			if (mode != RINGLOG_RECOVER_POINT_IN_TIME || i == 0) {
				err = rl_refuse(rep);
				goto out;
			}
			/* Point-in-time: the log ends with the previous segment. */
			close(fd);
			fd = -1;
			break;
		}
		if (i == 0)
			log_id = h.log_id;

		struct rl_seg_verdict v;
		err = rl_seg_judge(fd, &h, is_last, &v);
		if (err) {
			err = rl_fail(err, "recovery: reading %s", name);
			goto out;
		}
		rep->lost_lsns += v.lost;
		rep->last_lsn = v.next_lsn - 1;
		uint64_t end = v.end;
		uint32_t last_crc = v.last_crc;
		int damaged = v.damaged;
		if (damaged) {
			rl_note_damage(rep, name, end, v.next_lsn, v.reason);
			if (mode == RINGLOG_RECOVER_ABSOLUTE ||
			    (mode == RINGLOG_RECOVER_TOLERATE_TAIL && !is_last)) {
				err = rl_refuse(rep);
				goto out;
			}
			/* Point-in-time cuts after dropping the later segments: a crash in
			 * between leaves this damage in place for the next run to finish. */
			if (apply && is_last && (err = rl_seg_cut(fd, name, end, v.cut_end)) != 0)
				goto out;
			rep->cut_bytes += v.cut_end - end;
		}
		expect = v.next_lsn;
		prev_crc = last_crc;
		if (is_last || damaged) {
			pending_cut = damaged && !is_last;
			out->last = (struct rl_segment){fd, h.first_lsn, end, last_crc};
			fd = -1;
			i++;
			break;
		}
		close(fd);
		fd = -1;
	}
	/* Point-in-time: whatever follows the damage goes, then the damaged one is cut. */
	if (i < n) {
		rep->dropped_segments = (uint32_t)(n - i);
		if (apply && (err = drop_segments(dir_fd, lsns, i, n)) != 0)
			goto out;
	}
	if (apply && pending_cut) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, out->last.first_lsn);
		if ((err = rl_seg_cut(out->last.fd, name, out->last.size, UINT64_MAX)) != 0)
			goto out;
	}
	if (out->last.fd < 0) {
		/* The damage was a whole segment after the first: the previous one is now
		 * the last, and it was fully valid. */
		char name[RL_SEG_NAME_LEN + 1];
		size_t k = i - 1;
		rl_seg_name(name, lsns[k]);
		fd = rl_file_open(dir_fd, name, apply ? O_RDWR : O_RDONLY);
		if (fd < 0) {
			err = rl_fail(fd, "recovery: opening %s", name);
			fd = -1;
			goto out;
		}
		off_t size = lseek(fd, 0, SEEK_END);
		out->last = (struct rl_segment){fd, lsns[k], (uint64_t)size, prev_crc};
		fd = -1;
	}
	out->log_id = log_id;
	out->next_lsn = expect;
	rep->last_lsn = expect - 1;
out:
	if (fd >= 0)
		close(fd);
	if (err && out->last.fd >= 0) {
		close(out->last.fd);
		out->last.fd = -1;
	}
	free(lsns);
	return err;
}
