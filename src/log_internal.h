/* struct ringlog and what the library's modules share about it. */
#ifndef RL_LOG_INTERNAL_H
#define RL_LOG_INTERNAL_H

#include "pool.h"
#include "profile.h"
#include "published.h"
#include "ring.h"
#include "ringlog.h"
#include "segment.h"
#include "uring_io.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

#define RL_MAX_PIPELINE_DEPTH RINGLOG_MAX_PIPELINE_DEPTH
#define RL_WAIT_BUCKETS 64
#define RL_RECOVER_MODE_LAST RINGLOG_RECOVER_SKIP_CORRUPTED

struct ringlog {
	struct rl_ring ring;
	struct ringlog_options opts;
	/* Fault tables of this log only (tests; file_io.h), or NULL: the process-wide. */
	const struct rl_faults *faults;

	/* The short path (spin.h).  group_ns: average time from a group's submission to
	 * its durability, kept by the consumer; spinners: waiters spinning now, at most
	 * spin_slots; waiting: threads in rl_wait_durable; spin_max_ns: options.spin_us. */
	_Alignas(64) _Atomic uint64_t group_ns;
	_Atomic uint32_t spinners;
	_Atomic uint32_t waiting;
	/* How often recent spins ended with the LSN durable: 0..RL_SPIN_SCORE_MAX, an
	 * average (spin.h); below RL_SPIN_SCORE_MIN, waiters spin only to re-probe. */
	_Atomic uint32_t spin_score;
	_Atomic uint32_t spin_skips;
	uint32_t spin_slots;
	uint64_t spin_max_ns;

	/* Sticky failure: 0, or the -errno that failed the log.  Written once, by the
	 * consumer (after fail_msg), read by everyone. */
	_Alignas(64) _Atomic int error;
	_Atomic int closing;
	/* Live readers (ringlog_reader_open_live) not yet closed: ringlog_close refuses
	 * with -EBUSY while there are any, since they use this struct. */
	_Atomic unsigned live_readers;
	char fail_msg[384];

	/* Durability, published by the consumer only. */
	_Alignas(64) _Atomic uint64_t durable_lsn;
	/* Waiters for LSN x sleep on bucket x % RL_WAIT_BUCKETS, so an advance wakes only
	 * the threads whose LSNs became durable (not every waiter of the log). */
	struct rl_wait_bucket {
		_Atomic uint32_t seq;	  /* futex word: bumped to wake the bucket */
		_Atomic uint32_t waiters; /* threads sleeping in it */
	} wait[RL_WAIT_BUCKETS];

	int event_fd;
	_Atomic int event_fd_used;
	struct ringlog_recovery recovery; /* what open found and did */
	struct rl_profile profile;	  /* stage timing, when options.profile */

	int dir_fd;
	int lock_fd;
	pthread_mutex_t retention_lock; /* one ringlog_truncate_before at a time */
	uint64_t log_id;

	/* How segments are written, decided at open: O_DIRECT or buffered, and the
	 * alignment of every write (1 when buffered). */
	int direct;
	uint32_t align;
	struct rl_pool pool; /* prepared segment files (started when prepared_segments) */
	char *dir_path; /* as given to ringlog_open */
	struct rl_published published; /* in LOCK: the durable LSN for other processes */

	/* Consumer thread and its private state. */
	pthread_t consumer;
	sem_t started;
	int start_err;
	struct rl_io io;
	struct rl_segment seg;
	/* File offset of ring position x in seg: x + seg_delta (mod 2^64).  Always a
	 * multiple of `align`, so an aligned ring position is an aligned file offset. */
	uint64_t seg_delta;
	int seg_empty; /* at open: seg holds no frame yet */
	uint64_t scan; /* ring position up to which frames were taken */

	/* Counters: written by the consumer only (relaxed), read by ringlog_stats. */
	_Alignas(64) _Atomic uint64_t st_batches, st_records, st_bytes, st_groups, st_writes,
	    st_fdatasyncs, st_retries, st_rotations, st_segment_first_lsn, st_bytes_written,
	    st_retention_held, st_retention_held_lsn;
};

/* Add to a counter that only one thread writes. */
static inline void rl_count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* log.c: wait until `lsn` is durable (it need not be handed out yet), at most
 * timeout_ns (< 0: forever).  Returns 0, -ETIMEDOUT or the log's error. */
int rl_wait_durable(struct ringlog *log, uint64_t lsn, int64_t timeout_ns);

/* consumer.c: wake the waiters of LSNs (from, to] (all of them if to - from is large,
 * or when from == to: a failure). */
void rl_wake_waiters(struct ringlog *log, uint64_t from, uint64_t to);

/* consumer.c: the thread that writes, syncs, publishes and rotates. */
void *rl_consumer_main(void *log);

/* ringlog_open with fault tables of this log's own (tests: several logs at once, one
 * failing; file_io.h).  `faults` must outlive the log; NULL is ringlog_open. */
int rl_log_open(const char *dir, const struct ringlog_options *opts,
		const struct rl_faults *faults, struct ringlog **out);
/* Fail the log with `err` (once; later calls keep the first error) and wake every
 * waiter and blocked producer. */
void rl_log_fail(struct ringlog *log, int err, const char *msg);

/* consumer.c: start the segment whose first LSN is `first_lsn` (the next frame's) for
 * frames from ring position `pos` on: from a prepared file if the pool runs, with a pad
 * that puts its first frame at a file offset congruent to `pos`; sets log->seg and
 * log->seg_delta.  Used at rotation and by open for a new log.  *waited: it had to wait
 * for a prepared file.  Returns 0 or -errno with ringlog_last_error() set. */
int rl_start_segment(struct ringlog *log, uint64_t first_lsn, uint32_t prev_crc, uint64_t pos,
		     int *waited);

#endif
