/*
 * The public writer API: open (lock, recover, start the consumer), append (the hot
 * path), wait, close.
 */
#include "log_internal.h"

#include "errors.h"
#include "futex.h"
#include "probes.h"
#include "recovery.h"
#include "spin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RL_DEFAULT_SEGMENT_BYTES (64ull << 20)
#define RL_DEFAULT_RING_BYTES (16u << 20)
#define RL_DEFAULT_MAX_BATCH_BYTES (1u << 20)
/* The ring is registered mapped twice: a registered buffer holds at most 1 GiB. */
#define RL_MAX_RING_BYTES (1u << 29)
#define RL_DEFAULT_PREPARED_SEGMENTS 2u
#define RL_DEFAULT_RECYCLE_SEGMENTS 2u
#define RL_MIN_SEGMENT_BYTES 4096u
#define RL_MIN_MAX_BATCH_BYTES 64u

RINGLOG_API void ringlog_options_init(struct ringlog_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->segment_bytes = RL_DEFAULT_SEGMENT_BYTES;
	opts->ring_bytes = RL_DEFAULT_RING_BYTES;
	opts->max_batch_bytes = RL_DEFAULT_MAX_BATCH_BYTES;
	opts->create_if_missing = 1;
	opts->pipeline_depth = RINGLOG_DEFAULT_PIPELINE_DEPTH;
	opts->prepared_segments = RL_DEFAULT_PREPARED_SEGMENTS;
	opts->recycle_segments = RL_DEFAULT_RECYCLE_SEGMENTS;
	opts->spin_us = RINGLOG_DEFAULT_SPIN_US;
}

static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t p = 4096;
	while (p < v)
		p <<= 1;
	return p;
}

static int check_options(const struct ringlog_options *o)
{
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return rl_fail(-EINVAL, "options: reserved fields must be zero "
						"(fill the struct with ringlog_options_init())");
	if (o->io_mode > RINGLOG_IO_BUFFERED)
		return rl_fail(-EINVAL, "options: unknown io_mode %u", o->io_mode);
	if (o->prepared_segments > RINGLOG_MAX_POOL_FILES ||
	    o->recycle_segments > RINGLOG_MAX_POOL_FILES)
		return rl_fail(-EINVAL,
			       "options: prepared_segments %u and recycle_segments %u must be at "
			       "most %u",
			       o->prepared_segments, o->recycle_segments, RINGLOG_MAX_POOL_FILES);
	if (o->recovery_mode > RL_RECOVER_MODE_LAST)
		return rl_fail(-EINVAL, "options: unknown recovery_mode %u", o->recovery_mode);
	if (o->pipeline_depth < 1 || o->pipeline_depth > RINGLOG_MAX_PIPELINE_DEPTH)
		return rl_fail(-EINVAL, "options: pipeline_depth %u is outside [1, %u]",
			       o->pipeline_depth, RINGLOG_MAX_PIPELINE_DEPTH);
	if (o->segment_bytes < RL_MIN_SEGMENT_BYTES)
		return rl_fail(-EINVAL,
			       "options: segment_bytes %" PRIu64 " is below the minimum %u",
			       o->segment_bytes, RL_MIN_SEGMENT_BYTES);
	if (o->max_batch_bytes < RL_MIN_MAX_BATCH_BYTES ||
	    o->max_batch_bytes > RINGLOG_MAX_BATCH_BYTES_LIMIT)
		return rl_fail(-EINVAL, "options: max_batch_bytes %u is outside [%u, %u]",
			       o->max_batch_bytes, RL_MIN_MAX_BATCH_BYTES,
			       RINGLOG_MAX_BATCH_BYTES_LIMIT);
	if (o->ring_bytes > RL_MAX_RING_BYTES)
		return rl_fail(-EINVAL, "options: ring_bytes %u exceeds %u", o->ring_bytes,
			       RL_MAX_RING_BYTES);
	if (pow2_at_least(o->ring_bytes) < 2ull * o->max_batch_bytes)
		return rl_fail(-EINVAL,
			       "options: ring_bytes %u must hold two batches of "
			       "max_batch_bytes %u",
			       o->ring_bytes, o->max_batch_bytes);
	return 0;
}

static int lock_dir(int dir_fd, const char *dir)
{
	int fd = rl_file_open(dir_fd, "LOCK", O_RDWR | O_CREAT);
	if (fd < 0)
		return rl_fail(fd, "creating %s/LOCK", dir);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return rl_fail(err, "locking %s/LOCK: another writer has this log open", dir);
	}
	return fd;
}

/*
 * Decide how segments are written: O_DIRECT where the filesystem takes it (probed on
 * the LOCK file, a regular file in the log directory) unless io_mode says buffered,
 * and the alignment of every write.  Returns 0 or -errno.
 */
static int choose_io(struct ringlog *log, const char *dir)
{
	log->direct = 0;
	log->align = 1;
	if (log->opts.io_mode == RINGLOG_IO_BUFFERED)
		return 0;
	int fd = rl_file_open(log->dir_fd, "LOCK", O_RDONLY | O_DIRECT);
	if (fd == -EINVAL) {
		if (log->opts.io_mode == RINGLOG_IO_DIRECT)
			return rl_fail(-EINVAL,
				       "the filesystem of %s refuses O_DIRECT, which io_mode "
				       "RINGLOG_IO_DIRECT requires (use RINGLOG_IO_AUTO to fall back "
				       "to buffered writes)",
				       dir);
		return 0;
	}
	if (fd < 0)
		return rl_fail(fd, "opening %s/LOCK to probe O_DIRECT", dir);
	log->direct = 1;
	log->align = rl_file_dio_align(fd);
	close(fd);
	return 0;
}

/* Round v up to a multiple of a. */
static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/*
 * Set up the ring and the segment the consumer starts in.  A new log gets its first
 * segment; otherwise appends continue the last one at its end E: ring positions start
 * at E modulo the alignment, and the written part of E's block is copied into the
 * ring before them, so the first group writes that block again unchanged.
 */
static int start_writing(struct ringlog *log, const struct rl_plan *rec, const char *dir)
{
	uint64_t a = log->align;
	uint64_t end = rec->empty ? 0 : rec->last.size;
	uint64_t pos = end % a;
	uint64_t bytes = log->opts.ring_bytes;
	if (bytes < 2ull * log->opts.max_batch_bytes)
		bytes = 2ull * log->opts.max_batch_bytes;
	if (bytes < log->opts.max_batch_bytes + 2 * a)
		bytes = log->opts.max_batch_bytes + 2 * a;
	int err = rl_ring_init(&log->ring, bytes, rec->next_lsn, pos, 0);
	if (err)
		return rl_fail(err, "allocating the %" PRIu64 "-byte submission ring", bytes);
	log->scan = pos;
	if (rec->empty) {
		log->seg.fd = -1;
		int waited;
		err = rl_start_segment(log, 1, 0, pos, &waited);
		log->seg_empty = 1;
		return err ? rl_fail(err, "creating the first segment in %s: %s", dir,
				     ringlog_last_error())
			   : 0; /* (rl_fail formats before it writes the detail) */
	}
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, rec->last.first_lsn);
	if (pos) {
		int rfd = rl_file_open(log->dir_fd, name, O_RDONLY);
		ssize_t got = rfd < 0 ? rfd
				      : rl_file_pread(rfd, rl_ring_at(&log->ring, 0), pos, end - pos);
		if (rfd >= 0)
			close(rfd);
		if (got != (ssize_t)pos)
			return rl_fail(got < 0 ? (int)got : -EIO,
				       "reading the last block of %s before appending to it", name);
	}
	int direct = log->direct;
	int fd = rl_file_open_rw(log->dir_fd, name, 0, &direct, 0);
	if (fd < 0)
		return rl_fail(fd, "opening %s for appending", name);
	log->seg = rec->last;
	log->seg.fd = fd;
	log->seg_delta = end - pos;
	/* Empty: it holds no LSN (only its header, and pads), wherever its end is. */
	log->seg_empty = rec->next_lsn == rec->last.first_lsn;
	return 0;
}

static void free_log(struct ringlog *log)
{
	rl_pool_stop(&log->pool);
	rl_published_close(&log->published);
	if (log->seg.fd >= 0)
		close(log->seg.fd);
	if (log->event_fd >= 0)
		close(log->event_fd);
	if (log->lock_fd >= 0)
		close(log->lock_fd); /* releases the flock */
	if (log->dir_fd >= 0)
		close(log->dir_fd);
	rl_ring_destroy(&log->ring);
	rl_profile_free(&log->profile);
	sem_destroy(&log->started);
	pthread_mutex_destroy(&log->retention_lock);
	free(log->dir_path);
	free(log);
}

static int open_log(const char *dir, const struct ringlog_options *opts,
		    const struct rl_faults *faults, struct ringlog **out)
{
	struct ringlog_options defaults;
	if (!dir || !out)
		return rl_fail(-EINVAL, "ringlog_open: dir and out must not be NULL");
	*out = NULL;
	if (!opts) {
		ringlog_options_init(&defaults);
		opts = &defaults;
	}
	int err = check_options(opts);
	if (err)
		return err;

	struct ringlog *log = calloc(1, sizeof(*log));
	if (!log)
		return rl_fail(-ENOMEM, "allocating the log");
	log->opts = *opts;
	log->faults = faults;
	log->seg.fd = log->event_fd = log->lock_fd = -1;
	log->published.fd = log->published.notify_fd = -1;
	log->spin_max_ns = (uint64_t)opts->spin_us * 1000;
	atomic_init(&log->spin_score, RL_SPIN_SCORE_MAX);
	/* One spinning waiter per CPU the consumer does not need. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	log->spin_slots = cpus > 2 ? (uint32_t)(cpus - 1) : 1;
	sem_init(&log->started, 0, 0);
	pthread_mutex_init(&log->retention_lock, NULL);

	log->dir_path = strdup(dir);
	if (!log->dir_path) {
		err = rl_fail(-ENOMEM, "allocating the log");
		goto fail;
	}
	log->dir_fd = rl_dir_open(NULL, dir, (int)opts->create_if_missing);
	if (log->dir_fd < 0) {
		err = log->dir_fd;
		goto fail;
	}
	log->lock_fd = lock_dir(log->dir_fd, dir);
	if (log->lock_fd < 0) {
		err = log->lock_fd;
		goto fail;
	}

	struct rl_plan rec;
	err = rl_plan_recovery(log->dir_fd, opts->recovery_mode, 1, &rec);
	rl_plan_free(&rec);
	log->recovery = rec.report;
	if (err)
		goto fail;
	log->log_id = rec.log_id;
	err = choose_io(log, dir);
	if (!err) {
		/* (Without prepared_segments this only removes what an earlier open left.) */
		uint64_t file_bytes = round_up(opts->segment_bytes, log->align > 4096 ? log->align : 4096);
		err = rl_pool_start(&log->pool, log->dir_fd, file_bytes, log->direct, log->align,
				    opts->prepared_segments,
				    opts->prepared_segments + opts->recycle_segments, rec.next_lsn);
	}
	if (!err)
		err = start_writing(log, &rec, dir);
	/* Everything recovery kept is durable: say so to readers of other processes. */
	if (!err)
		err = rl_published_create(log->dir_fd, log->log_id, rec.next_lsn - 1,
					  &log->published);
	if (err)
		goto fail;
	atomic_init(&log->durable_lsn, rec.next_lsn - 1);
	atomic_init(&log->st_segment_first_lsn, log->seg.first_lsn);

	err = rl_profile_init(&log->profile, (int)opts->profile, log->ring.capacity);
	if (err) {
		err = rl_fail(err, "allocating the profiling histograms");
		goto fail;
	}
	log->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (log->event_fd < 0) {
		err = rl_fail(-errno, "eventfd");
		goto fail;
	}
	err = -pthread_create(&log->consumer, NULL, rl_consumer_main, log);
	if (err) {
		err = rl_fail(err, "starting the consumer thread");
		goto fail;
	}
	while (sem_wait(&log->started) < 0)
		;
	if (log->start_err) {
		pthread_join(log->consumer, NULL);
		err = log->start_err;
		if (err == -ENOSYS || err == -EPERM)
			err = rl_fail(err, "io_uring_queue_init: io_uring is unavailable here "
					   "(kernel without it, kernel.io_uring_disabled, or a "
					   "seccomp/container policy)");
		else
			err = rl_fail(err, "io_uring_queue_init");
		goto fail;
	}
	*out = log;
	return 0;
fail:
	free_log(log);
	return err;
}

int rl_log_open(const char *dir, const struct ringlog_options *opts,
		const struct rl_faults *faults, struct ringlog **out)
{
	/* The opener's file operations, and the preparer it starts, use the log's tables. */
	const struct rl_faults *prev = rl_faults_enter(faults);
	int err = open_log(dir, opts, faults, out);
	rl_faults_enter(prev);
	return err;
}

RINGLOG_API int ringlog_open(const char *dir, const struct ringlog_options *opts,
			     struct ringlog **out)
{
	return rl_log_open(dir, opts, NULL, out);
}

static int wait_durable(struct ringlog *log, uint64_t lsn, int64_t timeout_ns);

/* The error a call returns once the log failed, with its detail for this thread. */
static int log_error(struct ringlog *log, int err)
{
	if (err == atomic_load_explicit(&log->error, memory_order_acquire) && err != 0)
		rl_set_last_error(log->fail_msg);
	return err;
}

static int append(struct ringlog *log, const struct iovec *recs, unsigned nrecs,
		  uint64_t *first_lsn, int block)
{
	if (!log || !recs || nrecs == 0)
		return rl_fail(-EINVAL, "append: a batch needs at least one record");
	uint64_t bytes = RL_FRAME_HEADER_BYTES + 4ull * nrecs;
	/* Each length is checked before it is added, so the sum cannot wrap. */
	for (unsigned i = 0; i < nrecs && bytes <= log->opts.max_batch_bytes; i++)
		bytes += recs[i].iov_len <= log->opts.max_batch_bytes
			     ? recs[i].iov_len
			     : log->opts.max_batch_bytes + 1ull;
	bytes = rl_align_frame(bytes);
	if (bytes > log->opts.max_batch_bytes)
		return rl_fail(-EMSGSIZE, "append: batch of %u records exceeds max_batch_bytes %u",
			       nrecs, log->opts.max_batch_bytes);
	if (atomic_load_explicit(&log->closing, memory_order_relaxed))
		return rl_fail(-EINVAL, "append: the log is closing");

	uint64_t t0 = log->profile.on ? rl_now_ns() : 0;
	struct rl_reservation res;
	int err = rl_ring_reserve(&log->ring, (uint32_t)bytes, nrecs, block, 0, &log->error, &res);
	if (err)
		return err == -EAGAIN ? rl_fail(err, "append: the submission ring is full")
				      : log_error(log, err);
	/* No lock held from here on: encode the frame in place, then publish it. */
	uint8_t *f = res.frame;
	rl_frame_header_fill(f, (uint32_t)bytes, nrecs, res.first_lsn, log->log_id);
	uint8_t *p = f + RL_FRAME_HEADER_BYTES;
	for (unsigned i = 0; i < nrecs; i++)
		p = rl_record_put(p, recs[i].iov_base, (uint32_t)recs[i].iov_len);
	memset(p, 0, (size_t)(f + bytes - p));
	rl_frame_seal(f);
	if (t0)
		log->profile.enqueue_ns[res.seq % log->profile.slots] = t0;
	rl_ring_publish(&log->ring, &res, RL_FRAME_MAGIC);
	RL_PROBE_APPEND(res.first_lsn, nrecs, bytes);
	if (first_lsn)
		*first_lsn = res.first_lsn;
	return 0;
}

RINGLOG_API int ringlog_append(struct ringlog *log, const struct iovec *recs, unsigned nrecs,
			       uint64_t *first_lsn)
{
	return append(log, recs, nrecs, first_lsn, 1);
}

RINGLOG_API int ringlog_try_append(struct ringlog *log, const struct iovec *recs, unsigned nrecs,
				   uint64_t *first_lsn)
{
	return append(log, recs, nrecs, first_lsn, 0);
}

RINGLOG_API uint64_t ringlog_durable_lsn(struct ringlog *log)
{
	return atomic_load_explicit(&log->durable_lsn, memory_order_acquire);
}

RINGLOG_API uint64_t ringlog_next_lsn(struct ringlog *log)
{
	return atomic_load_explicit(&log->ring.next_lsn_pub, memory_order_acquire);
}

RINGLOG_API int ringlog_error(struct ringlog *log)
{
	return log_error(log, atomic_load_explicit(&log->error, memory_order_acquire));
}

/*
 * The short path for a waiter (spin.h): spin on durable_lsn for about twice a group's
 * usual time, at most options.spin_us, if no more threads wait than there are spare
 * CPUs (else the spinner would take a core the others need) and a spinning slot is
 * free.  Bounded by the deadline too.  Returns 1 if `lsn` became durable (or the log
 * failed) meanwhile.
 */
static int spin_for(struct ringlog *log, uint64_t lsn, int64_t timeout_ns)
{
	if (atomic_load_explicit(&log->waiting, memory_order_relaxed) > log->spin_slots)
		return 0;
	uint32_t score = atomic_load_explicit(&log->spin_score, memory_order_relaxed);
	if (score < RL_SPIN_SCORE_MIN &&
	    atomic_fetch_add_explicit(&log->spin_skips, 1, memory_order_relaxed) %
		    RL_SPIN_PROBE_EVERY !=
		0)
		return 0;
	uint64_t budget = 2 * atomic_load_explicit(&log->group_ns, memory_order_relaxed);
	if (budget == 0 || budget > log->spin_max_ns)
		budget = log->spin_max_ns;
	if (timeout_ns >= 0 && budget > (uint64_t)timeout_ns)
		budget = (uint64_t)timeout_ns;
	if (budget == 0)
		return 0;
	uint32_t n = atomic_load_explicit(&log->spinners, memory_order_relaxed);
	do
		if (n >= log->spin_slots)
			return 0;
	while (!atomic_compare_exchange_weak_explicit(&log->spinners, &n, n + 1,
						      memory_order_relaxed, memory_order_relaxed));
	int done = 0;
	uint64_t until = rl_now_ns() + budget;
	do {
		for (int i = 0; i < RL_SPIN_POLLS && !done; i++) {
			done = atomic_load_explicit(&log->durable_lsn, memory_order_acquire) >= lsn ||
			       atomic_load_explicit(&log->error, memory_order_relaxed) != 0;
			rl_cpu_relax();
		}
	} while (!done && rl_now_ns() < until);
	atomic_fetch_sub_explicit(&log->spinners, 1, memory_order_relaxed);
	/* (Racy read-modify-write of a heuristic: a lost update costs nothing.) */
	score = atomic_load_explicit(&log->spin_score, memory_order_relaxed);
	score = done ? score + (RL_SPIN_SCORE_MAX - score) / 8 : score - score / 8;
	atomic_store_explicit(&log->spin_score, score, memory_order_relaxed);
	return done;
}

int rl_wait_durable(struct ringlog *log, uint64_t lsn, int64_t timeout_ns)
{
	atomic_fetch_add_explicit(&log->waiting, 1, memory_order_seq_cst);
	int err = wait_durable(log, lsn, timeout_ns);
	atomic_fetch_sub_explicit(&log->waiting, 1, memory_order_relaxed);
	return err;
}

static int wait_durable(struct ringlog *log, uint64_t lsn, int64_t timeout_ns)
{
	struct timespec deadline;
	if (timeout_ns >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout_ns / 1000000000;
		deadline.tv_nsec += timeout_ns % 1000000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	if (ringlog_durable_lsn(log) < lsn && log->spin_max_ns)
		spin_for(log, lsn, timeout_ns);
	for (;;) {
		if (ringlog_durable_lsn(log) >= lsn)
			return 0;
		int err = atomic_load_explicit(&log->error, memory_order_acquire);
		if (err)
			return log_error(log, err);
		if (timeout_ns >= 0) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > deadline.tv_sec ||
			    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
				return rl_fail(-ETIMEDOUT,
					       "wait: LSN %" PRIu64 " not durable within %" PRId64
					       " ns (durable: %" PRIu64 ")",
					       lsn, timeout_ns, ringlog_durable_lsn(log));
		}
		struct rl_wait_bucket *b = &log->wait[lsn % RL_WAIT_BUCKETS];
		uint32_t seq = atomic_load_explicit(&b->seq, memory_order_seq_cst);
		atomic_fetch_add_explicit(&b->waiters, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&log->durable_lsn, memory_order_seq_cst) < lsn &&
		    !atomic_load(&log->error)) {
			if (timeout_ns >= 0)
				rl_futex_wait_until(&b->seq, seq, &deadline);
			else
				rl_futex_wait(&b->seq, seq);
		}
		atomic_fetch_sub_explicit(&b->waiters, 1, memory_order_seq_cst);
	}
}

RINGLOG_API int ringlog_wait_timeout(struct ringlog *log, uint64_t lsn, int64_t timeout_ns)
{
	if (lsn >= ringlog_next_lsn(log))
		return rl_fail(
		    -EINVAL, "wait: LSN %" PRIu64 " has not been handed out (next is %" PRIu64 ")",
		    lsn, ringlog_next_lsn(log));
	return rl_wait_durable(log, lsn, timeout_ns);
}

RINGLOG_API int ringlog_wait(struct ringlog *log, uint64_t lsn)
{
	return ringlog_wait_timeout(log, lsn, -1);
}

RINGLOG_API int ringlog_event_fd(struct ringlog *log)
{
	atomic_store_explicit(&log->event_fd_used, 1, memory_order_seq_cst);
	return log->event_fd;
}

RINGLOG_API int ringlog_close(struct ringlog *log)
{
	if (!log)
		return 0;
	unsigned live = atomic_load(&log->live_readers);
	if (live)
		return rl_fail(-EBUSY,
			       "close: %u live reader%s of this log still open; close %s first "
			       "(ringlog_reader_close): the log stays open",
			       live, live == 1 ? "" : "s", live == 1 ? "it" : "them");
	atomic_store(&log->closing, 1);
	rl_ring_kick(&log->ring);
	pthread_join(log->consumer, NULL);
	int err = ringlog_error(log);
	const struct rl_faults *prev = rl_faults_enter(log->faults);
	free_log(log);
	rl_faults_enter(prev);
	return err;
}

RINGLOG_API uint64_t ringlog_log_id(struct ringlog *log)
{
	return log->log_id;
}

RINGLOG_API int ringlog_published_durable(const char *dir, uint64_t *durable_lsn,
					  uint64_t *log_id)
{
	if (!dir || !durable_lsn || !log_id)
		return rl_fail(-EINVAL, "published_durable: NULL argument");
	int dir_fd = rl_dir_open("published_durable", dir, 0);
	if (dir_fd < 0)
		return dir_fd;
	struct rl_published p;
	int err = rl_published_map(dir_fd, &p, log_id);
	close(dir_fd);
	if (err)
		return rl_fail(err, "published_durable: %s/" RL_PUBLISHED_NAME "%s", dir,
			       err == -ENOENT ? " is missing or empty (no writer of this version opened this log yet)"
			       : err == -EBADMSG ? " does not hold a durable LSN of this format"
						 : "");
	*durable_lsn = rl_published_get(&p);
	rl_published_close(&p);
	return 0;
}

RINGLOG_API const char *ringlog_dir(struct ringlog *log)
{
	return log->dir_path;
}

RINGLOG_API int ringlog_init_dir(const char *dir, uint64_t log_id, uint64_t first_lsn)
{
	if (!dir || log_id == 0 || first_lsn == 0 || first_lsn == UINT64_MAX)
		return rl_fail(-EINVAL, "init_dir: needs a directory, a log id and a first LSN "
					"(not 0)");
	int dir_fd = rl_dir_open("init_dir", dir, 1);
	if (dir_fd < 0)
		return dir_fd;
	uint64_t *lsns;
	size_t n;
	int err = rl_seg_list(dir_fd, &lsns, &n);
	if (!err && n)
		err = rl_fail(-EEXIST, "init_dir: %s already holds a log", dir);
	else if (err)
		err = rl_fail(err, "init_dir: listing %s", dir);
	free(lsns);
	if (!err) {
		/* A first segment of a header only: appends continue it. */
		struct rl_seg_header h = {.first_lsn = first_lsn, .log_id = log_id,
					  .prev_last_lsn = first_lsn - 1};
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, first_lsn);
		int direct = 0;
		struct rl_segment seg;
		err = rl_seg_start(dir_fd, NULL, &h, RL_SEG_HEADER_BYTES, &direct, 1, &seg);
		if (!err)
			close(seg.fd);
	}
	close(dir_fd);
	return err;
}

RINGLOG_API int ringlog_append_frame(struct ringlog *log, const void *frame, size_t len,
				     uint64_t *first_lsn)
{
	if (!log || !frame)
		return rl_fail(-EINVAL, "append_frame: NULL argument");
	struct rl_frame_info info;
	enum rl_frame_status st =
	    len > RL_FRAME_MAX_BYTES ? RL_FRAME_BAD_LENGTH
				     : rl_frame_check(frame, len, 0, log->log_id, &info);
	if (st != RL_FRAME_OK || info.frame_len != len || info.pad || info.nrecs == 0)
		return rl_fail(-EBADMSG, "append_frame: %zu bytes that are not one valid frame or "
					 "hole of this log: %s",
			       len,
			       st != RL_FRAME_OK	  ? rl_frame_status_str(st)
			       : info.frame_len != len ? "its frame_len says another length"
			       : info.pad		  ? "a pad (it stands for no LSN)"
						  : "a hole for no LSN");
	if (len > log->opts.max_batch_bytes)
		return rl_fail(-EMSGSIZE, "append_frame: frame of %zu bytes exceeds max_batch_bytes %u",
			       len, log->opts.max_batch_bytes);
	if (atomic_load_explicit(&log->closing, memory_order_relaxed))
		return rl_fail(-EINVAL, "append_frame: the log is closing");
	struct rl_reservation res;
	int err = rl_ring_reserve(&log->ring, (uint32_t)len, info.nrecs, 1, info.first_lsn,
				  &log->error, &res);
	if (err == -ESTALE) {
		if (first_lsn)
			*first_lsn = res.first_lsn;
		return rl_fail(-ESTALE, "append_frame: the frame starts at LSN %" PRIu64
					", the log's next is %" PRIu64,
			       info.first_lsn, res.first_lsn);
	}
	if (err)
		return log_error(log, err);
	/* Everything but the magic, which publishes it. */
	memcpy(res.frame + RL_ENTRY_CRC, (const uint8_t *)frame + RL_ENTRY_CRC, len - RL_ENTRY_CRC);
	if (log->profile.on)
		log->profile.enqueue_ns[res.seq % log->profile.slots] = rl_now_ns();
	rl_ring_publish(&log->ring, &res, rl_entry_magic(frame));
	if (first_lsn)
		*first_lsn = res.first_lsn;
	return 0;
}
