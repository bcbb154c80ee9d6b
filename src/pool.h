/*
 * The pool of prepared segment files.  A segment is written into blocks that exist
 * before the writer reaches them, so that no fdatasync has to commit block
 * allocation or a size change: a helper thread (the preparer) keeps files of the
 * segment size, every block allocated and written, ready in the log directory, and
 * the consumer turns one into its next segment at rotation (a header write and a
 * rename, rl_seg_start).  Files come from two sources:
 *  - zero-filled by the preparer (fallocate, then zeros written and synced);
 *  - recycled: a segment that retention removed (ringlog_truncate_before), renamed
 *    into the pool and brought to the segment size.  Its old frames stay in it as
 *    stale bytes; they can never pass for live ones because every one of them has an
 *    LSN below any LSN the log will write again (docs/format.md).
 *
 * Pool file names (never taken for segments):
 *   pool.SEQ.tmp             being zero-filled; removed at open
 *   pool.SEQ.STALE.retired   a retired segment waiting to be made ready
 *   pool.SEQ.STALE.ready     ready: exactly the segment file size, all blocks written
 * SEQ is a 10-digit counter, STALE the highest LSN the file's bytes may hold (20
 * digits, 0 for zeros).  A file whose STALE is not below the log's next LSN (a log
 * restored from an older copy, say) is removed at open rather than reused.
 *
 * A preparation that fails (a full disk) is remembered, not fatal: the log goes on in
 * its current segment, and only a rotation that finds no ready file reports the error
 * (after asking the preparer to try once more).
 */
#ifndef RL_POOL_H
#define RL_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RL_POOL_NAME_MAX 48

struct rl_pool_entry {
	uint64_t seq;
	uint64_t stale; /* highest LSN its bytes may hold */
	int ready;	/* 0: retired, to be made ready */
};

struct rl_pool {
	int dir_fd;
	const struct rl_faults *faults; /* the opener's (file_io.h), for the preparer */
	uint64_t file_bytes; /* size of a prepared file */
	int direct;	     /* zero-fill with O_DIRECT */
	uint32_t align;	     /* direct-I/O alignment */
	unsigned keep;	     /* ready files to keep (options.prepared_segments) */
	unsigned max_files;  /* files the pool may hold, retired ones included */
	pthread_t thread;
	int started;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock: */
	struct rl_pool_entry *files;
	size_t nfiles, cap;
	uint64_t next_seq;
	int stop;
	int busy;	     /* the preparer is working on a file */
	int busy_new;	     /* ... on a new one (not in the list yet) */
	int error;	     /* the last preparation's error, 0 after a success */
	char error_msg[256]; /* its detail */
	int retry;	     /* someone asked the preparer to try again after an error */

	/* Counters (relaxed atomics): files zero-filled, files made ready again from
	 * retired ones, rotations that had to wait for a ready file (counted by the
	 * consumer), files ready now. */
	_Atomic uint64_t prepared, recycled, waits, ready_now;
};

/*
 * Take stock of the pool files in dir_fd (remove unfinished and unusable ones, see
 * above: `next_lsn` is the log's next LSN) and start the preparer, which keeps `keep`
 * files of `file_bytes` ready and makes retired ones ready.  `max_files` bounds what
 * retention may add.  With `keep` 0 there is no pool: every pool file is removed and
 * no thread starts.  Returns 0 or -errno (ringlog_last_error() set).
 */
int rl_pool_start(struct rl_pool *p, int dir_fd, uint64_t file_bytes, int direct, uint32_t align,
		  unsigned keep, unsigned max_files, uint64_t next_lsn);
/* Stop the preparer (an unfinished file is removed at the next open). */
void rl_pool_stop(struct rl_pool *p);

/*
 * Take a ready file for a segment whose first LSN is `first_lsn`: its name into
 * name[RL_POOL_NAME_MAX].  Waits while one is being prepared (*waited set).  When the
 * preparer failed, it is asked to try once more; if that fails too, returns its error
 * (-ENOSPC for a full disk) with ringlog_last_error() set.  Returns 0 or -errno.
 */
int rl_pool_take(struct rl_pool *p, uint64_t first_lsn, char *name, int *waited);

/*
 * Retention: move segment file `seg_name`, whose LSNs all lie below `stale` + 1, into
 * the pool for reuse if the pool has room.  Returns 1 if it was renamed (the caller
 * makes the directory durable), 0 if the pool is full or not running (the caller
 * removes it), or -errno.
 */
int rl_pool_retire(struct rl_pool *p, const char *seg_name, uint64_t stale);

/* Ask a preparer that stopped after an error to try again (space was freed). */
void rl_pool_kick(struct rl_pool *p);

#endif
