/*
 * Retention: ringlog_truncate_before removes (or recycles into the pool of prepared
 * files) whole segments below an LSN, oldest first, each removal durable before the
 * next, never past what a replication slot still holds (slot.c) and never the
 * segment being written.  docs/recovery.md, "Retention", states the promises.
 */
#include "log_internal.h"

#include "errors.h"
#include "slot.h"

#include <stdlib.h>

RINGLOG_API int ringlog_truncate_before(struct ringlog *log, uint64_t lsn)
{
	const struct rl_faults *prev = rl_faults_enter(log->faults);
	pthread_mutex_lock(&log->retention_lock);
	uint64_t *lsns;
	size_t n;
	int err = rl_seg_list(log->dir_fd, &lsns, &n);
	int removed = 0;
	if (err) {
		err = rl_fail(err, "truncate_before: listing the log directory");
		goto out;
	}
	/* A replication slot holds back what it has not released (ringlog.h). */
	uint64_t slot_lsn;
	char slot[80];
	int slots = rl_slots_oldest(log->dir_fd, &slot_lsn, slot, sizeof(slot));
	if (slots < 0) {
		err = rl_fail(slots, "truncate_before: reading the replication slots");
		free(lsns);
		goto out;
	}
	if (slots && slot_lsn + 1 < lsn) {
		lsn = slot_lsn + 1;
		rl_count(&log->st_retention_held, 1);
		atomic_store_explicit(&log->st_retention_held_lsn, lsn, memory_order_relaxed);
	}
	/* Segment i holds LSNs [lsns[i], lsns[i+1]).  One with a successor is sealed,
	 * hence durable in full; the last is being written and always stays. */
	for (size_t i = 0; i + 1 < n && lsns[i + 1] <= lsn; i++) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		/* Into the pool for reuse if it has room (its frames all lie below the next
		 * segment's first LSN), else deleted. */
		int recycled = log->opts.recycle_segments
				   ? rl_pool_retire(&log->pool, name, lsns[i + 1] - 1)
				   : 0;
		if (recycled < 0) {
			err = rl_fail(recycled, "truncate_before: moving %s to the pool", name);
			break;
		}
		if (!recycled && (err = rl_file_unlink(log->dir_fd, name)) != 0) {
			err = rl_fail(err, "truncate_before: removing %s", name);
			break;
		}
		/* Oldest first, each durable: a crash leaves a contiguous log. */
		if ((err = rl_dir_sync(log->dir_fd)) != 0) {
			err = rl_fail(err, "truncate_before: fsync of the log directory");
			break;
		}
		removed++;
	}
	free(lsns);
	if (removed)
		rl_pool_kick(&log->pool); /* space was freed, or a file came to reuse */
out:
	pthread_mutex_unlock(&log->retention_lock);
	rl_faults_enter(prev);
	return err ? err : removed;
}
