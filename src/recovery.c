/*
 * Recovery, run by ringlog_open() before the consumer starts.
 *
 * Rules (docs/recovery.md and docs/design.md say why):
 *  - Segments are taken in LSN order of their names.  Each must have a valid
 *    header whose first_lsn matches its name and the LSN after the previous
 *    segment's last record, the log's log_id, and the previous segment's last frame
 *    CRC (the chain).  Anything else is a missing, swapped or foreign segment:
 *    -EBADMSG.
 *  - A sealed segment (any but the last) must hold only valid frames, up to exactly
 *    its end.  Damage there is not a torn write (it was fully synced before the
 *    next segment was created): -EBADMSG naming file and offset.
 *  - The last segment is cut at its first invalid frame: that is a torn tail, and
 *    nothing in it was acknowledged (acknowledgement follows the fdatasync that
 *    would have made it whole).  The cut is made durable (ftruncate + fdatasync)
 *    before open returns, so no append can land after unreadable bytes.
 *  - A last segment shorter than a header, or with an invalid header and no bytes
 *    beyond it, is a rotation torn by a crash: its header is written again.
 *  - The last segment is fdatasync'd before it is scanned, and its cached pages are
 *    dropped: a previous writer may have died between a write and its fdatasync
 *    (its bytes would be in the page cache only), or an fdatasync may have failed
 *    after the kernel marked the pages clean.  What recovery keeps is then what is
 *    on the disk, and open may report it durable.
 */
#include "log_internal.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static uint64_t new_log_id(void)
{
	uint64_t id = 0;
	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
			id = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&id;
	}
	return id;
}

/* Rewrite the header of a last segment whose creation a crash tore. */
static int rewrite_header(int dir_fd, int fd, const char *name, const struct rl_seg_header *h)
{
	uint8_t hdr[RL_SEG_HEADER_BYTES];
	rl_seg_header_encode(h, hdr);
	ssize_t n = 0;
	if (ftruncate(fd, 0) < 0 || (n = pwrite(fd, hdr, sizeof(hdr), 0)) < 0 || fdatasync(fd) < 0)
		return rl_fail(-errno, "recovery: rewriting the torn header of %s", name);
	if (n != (ssize_t)sizeof(hdr))
		return rl_fail(-EIO, "recovery: short write rewriting the header of %s", name);
	int err = rl_dir_fsync(dir_fd);
	return err ? rl_fail(err, "recovery: fsync of the log directory") : 0;
}

int rl_recover(int dir_fd, struct rl_recovered *out)
{
	memset(out, 0, sizeof(*out));
	out->last.fd = -1;
	uint64_t *lsns;
	size_t n;
	int err = rl_seg_list(dir_fd, &lsns, &n);
	if (err)
		return rl_fail(err, "recovery: listing the log directory");
	if (n == 0) {
		out->empty = 1;
		out->log_id = new_log_id();
		out->next_lsn = 1;
		return 0;
	}
	out->segments = (unsigned)n;
	uint64_t expect = 0, log_id = 0;
	uint32_t prev_crc = 0;
	int fd = -1;
	for (size_t i = 0; i < n; i++) {
		int is_last = i == n - 1;
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		fd = openat(dir_fd, name, (is_last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0) {
			err = rl_fail(-errno, "recovery: opening %s", name);
			goto out;
		}
		if (is_last) {
			if (fdatasync(fd) < 0) {
				err = rl_fail(-errno, "recovery: fdatasync of %s", name);
				goto out;
			}
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		}
		struct rl_seg_header h;
		uint64_t size;
		err = rl_seg_read_header(fd, &h, &size);
		if (err == -EBADMSG && is_last && size <= RL_SEG_HEADER_BYTES &&
		    (i == 0 || lsns[i] == expect)) {
			h.first_lsn = lsns[i];
			h.log_id = i == 0 ? new_log_id() : log_id;
			h.prev_last_lsn = lsns[i] - 1;
			h.prev_tail_crc = prev_crc;
			err = rewrite_header(dir_fd, fd, name, &h);
			if (err)
				goto out;
			out->cut_bytes = size;
			out->log_id = h.log_id;
			out->next_lsn = h.first_lsn;
			out->last = (struct rl_segment){fd, h.first_lsn, RL_SEG_HEADER_BYTES, 0};
			fd = -1;
			goto out;
		}
		if (err == -EBADMSG) {
			err = rl_fail(err, "recovery: %s: invalid segment header (%" PRIu64
				      " bytes in file)", name, size);
			goto out;
		}
		if (err) {
			err = rl_fail(err, "recovery: reading the header of %s", name);
			goto out;
		}
		if (h.first_lsn != lsns[i]) {
			err = rl_fail(-EBADMSG, "recovery: %s: header says first LSN %" PRIu64,
				      name, h.first_lsn);
			goto out;
		}
		if (i == 0) {
			log_id = h.log_id;
		} else if (h.log_id != log_id) {
			err = rl_fail(-EBADMSG, "recovery: %s belongs to another log (log id %016" PRIx64
				      ", expected %016" PRIx64 ")", name, h.log_id, log_id);
			goto out;
		} else if (h.first_lsn != expect) {
			err = rl_fail(-EBADMSG, "recovery: %s starts at LSN %" PRIu64
				      " but the previous segment ends at %" PRIu64
				      " (missing or truncated segment)", name, h.first_lsn, expect - 1);
			goto out;
		} else if (h.prev_tail_crc != prev_crc) {
			err = rl_fail(-EBADMSG, "recovery: %s does not chain to the previous segment"
				      " (its last frame was replaced)", name);
			goto out;
		}

		struct rl_seg_scan scan;
		err = rl_scan_init(&scan, fd, &h);
		if (err) {
			err = rl_fail(err, "recovery: fstat of %s", name);
			goto out;
		}
		enum rl_frame_status why;
		uint32_t last_crc = 0;
		while ((err = rl_scan_next(&scan, &why)) == 1)
			last_crc = scan.info.crc;
		rl_scan_free(&scan);
		if (err < 0) {
			err = rl_fail(err, "recovery: reading %s", name);
			goto out;
		}
		err = 0;
		uint64_t end = scan.off;
		if (!is_last && (why != RL_FRAME_END || end != size)) {
			err = rl_fail(-EBADMSG, "recovery: sealed segment %s is damaged at offset %" PRIu64
				      ": %s", name, end, rl_frame_status_str(why));
			goto out;
		}
		if (is_last && end != size) {
			if (ftruncate(fd, (off_t)end) < 0 || fdatasync(fd) < 0) {
				err = rl_fail(-errno, "recovery: cutting the torn tail of %s at %" PRIu64,
					      name, end);
				goto out;
			}
			out->cut_bytes = size - end;
		}
		expect = scan.expect_lsn;
		prev_crc = last_crc;
		if (is_last) {
			out->last = (struct rl_segment){fd, h.first_lsn, end, last_crc};
			fd = -1;
		} else {
			close(fd);
			fd = -1;
		}
	}
	out->log_id = log_id;
	out->next_lsn = expect;
out:
	if (fd >= 0)
		close(fd);
	free(lsns);
	return err;
}
