/*
 * The planner of the tolerate-tail, absolute and point-in-time modes (recovery.h:
 * it reads, the applier writes).  docs/recovery.md states the promises; this is how
 * they are kept.
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
 * What the plan does then depends on the mode:
 *  - TOLERATE_TAIL: a torn tail in the last segment -- nothing in it was
 *    acknowledged, since acknowledgement follows the fdatasync that would have made
 *    it whole -- is cut off: zeroed in place (so the segment keeps its prepared
 *    blocks), or truncated when it reaches the end of the file.  Anywhere else:
 *    -EBADMSG.
 *  - ABSOLUTE: any damage: -EBADMSG.
 *  - POINT_IN_TIME: keep everything before the damage: remove every later segment,
 *    newest first, then cut the damaged one (a crash in the middle leaves the
 *    damage, and a log that the same mode finishes repairing).
 * Also in every mode but ABSOLUTE, a last segment with no more than a header's worth
 * of bytes and an invalid header is a rotation torn by a crash: its header is
 * written again (RESET_FILE).  Skip-corrupted has a planner of its own (salvage.c).
 *
 * When opening, the last segment was fdatasync'd and its cached pages dropped before
 * this reads it (rl_plan_recovery), so what recovery keeps is what is on the disk,
 * and open may report all of it durable.  Every cut is durable before open returns,
 * so nothing is ever appended after unreadable bytes.
 */
#include "recovery.h"

#include "errors.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <unistd.h>

int rl_plan_verify(int dir_fd, uint32_t mode, const uint64_t *lsns, size_t n, struct rl_plan *p)
{
	struct ringlog_recovery *rep = &p->report;
	uint64_t expect = lsns[0], log_id = 0;
	uint32_t prev_crc = 0;
	/* The report's range follows the scan, so a refusal shows what was valid. */
	rep->first_lsn = lsns[0];
	rep->last_lsn = lsns[0] - 1;
	size_t kept = n;       /* segments lsns[0..kept) stay */
	int cut_pending = 0;   /* the last kept segment is cut at its end (damage) */
	uint64_t cut_end = 0, cut_size = 0;
	int err = 0;
	for (size_t i = 0; i < n; i++) {
		int is_last = i == n - 1;
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		int fd = rl_file_open(dir_fd, name, O_RDONLY);
		if (fd < 0)
			return rl_fail(fd, "recovery: opening %s", name);
		struct rl_seg_header h;
		uint64_t size;
		int read = rl_seg_read_header(fd, &h, &size);
		if (read && read != -EBADMSG) {
			close(fd);
			return rl_fail(read, "recovery: reading the header of %s", name);
		}
		const char *bad = rl_seg_header_problem(read, &h, lsns[i], i == 0, log_id, expect,
						 prev_crc);
		if (bad) {
			close(fd);
			/* A rotation torn by a crash: the header never reached the disk, and
			 * nothing in the file was acknowledged. */
			if (read == -EBADMSG && is_last && size <= RL_SEG_HEADER_BYTES &&
			    lsns[i] == expect && mode != RINGLOG_RECOVER_ABSOLUTE) {
				if (i == 0)
					log_id = rl_new_log_id(); /* a new log: nothing to match */
				h = (struct rl_seg_header){.first_lsn = lsns[i], .log_id = log_id,
							   .prev_last_lsn = lsns[i] - 1,
							   .prev_tail_crc = prev_crc};
				if ((err = rl_plan_reset_file(p, lsns[i], size, &h)) != 0)
					return err;
				p->last = (struct rl_segment){.fd = -1, .first_lsn = lsns[i],
							      .size = RL_SEG_HEADER_BYTES};
				break;
			}
			rl_note_damage(rep, name, 0, expect, bad);
			if (mode != RINGLOG_RECOVER_POINT_IN_TIME || i == 0)
				return rl_refuse(rep);
			kept = i; /* point-in-time: the log ends with the previous segment */
			break;
		}
		if (i == 0)
			log_id = h.log_id;
		struct rl_seg_verdict v;
		err = rl_seg_judge(fd, &h, is_last, &v);
		close(fd);
		if (err)
			return rl_fail(err, "recovery: reading %s", name);
		rep->lost_lsns += v.lost;
		rep->last_lsn = v.next_lsn - 1;
		expect = v.next_lsn;
		prev_crc = v.last_crc;
		p->last = (struct rl_segment){.fd = -1, .first_lsn = lsns[i], .size = v.end,
					      .last_crc = v.last_crc};
		if (v.damaged) {
			rl_note_damage(rep, name, v.end, v.next_lsn, v.reason);
			if (mode == RINGLOG_RECOVER_ABSOLUTE ||
			    (mode == RINGLOG_RECOVER_TOLERATE_TAIL && !is_last))
				return rl_refuse(rep);
			cut_pending = 1;
			cut_end = v.cut_end;
			cut_size = v.file_size;
			kept = i + 1;
			break;
		}
	}
	/* Point-in-time: whatever follows the damage goes, newest first; then the
	 * damaged segment is cut, so that until then a crash leaves the damage to find. */
	rep->dropped_segments = (uint32_t)(n - kept);
	for (size_t k = n; k-- > kept;) {
		struct rl_action a = {.op = RINGLOG_REPAIR_REMOVE, .seg = lsns[k],
				      .why = "follows the damage (point-in-time)"};
		if ((err = rl_plan_add(p, &a, NULL, 0)) != 0)
			return err;
	}
	if (cut_pending &&
	    (err = rl_plan_cut(p, p->last.first_lsn, p->last.size, cut_end, cut_size,
			       kept == n ? "torn tail after the last valid frame"
					 : "damage: the log ends here (point-in-time)")) != 0)
		return err;
	p->log_id = log_id;
	p->next_lsn = expect;
	rep->last_lsn = expect - 1;
	/* What the writer starts from: a kept segment that ends after its header, at an
	 * entry boundary, and LSNs that only go forward from the first segment's. */
	assert(p->last.size >= RL_SEG_HEADER_BYTES && p->last.size % RL_FRAME_ALIGN == 0);
	assert(p->next_lsn >= lsns[0] && p->last.first_lsn <= p->next_lsn);
	assert(kept >= 1 && kept <= n && rep->dropped_segments == n - kept);
	return 0;
}
