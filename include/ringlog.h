/*
 * ringlog: a durable, segmented append-only log for Linux, written through io_uring.
 *
 * Model
 *   A log is a directory of segment files.  Each call to ringlog_append() adds one
 *   *batch* of records atomically: after a crash a batch is either wholly present or
 *   wholly absent.  Every record gets a log sequence number (LSN); LSNs start at 1,
 *   are dense, follow log order and continue across reopens.
 *
 *   Appends only queue the batch (the data is copied into the log's ring).  A single
 *   consumer thread writes every queued batch in one write followed by a linked
 *   fdatasync ("group commit").  A record is *durable* once that fdatasync has
 *   completed; ringlog_wait(), ringlog_durable_lsn() and ringlog_event_fd() report it.
 *
 * Errors
 *   Every function that can fail returns a negative errno value (-EINVAL, -EIO, ...)
 *   and never sets errno.  ringlog_strerror() describes any code; ringlog_last_error()
 *   gives the detail of the last failure in the calling thread (file, offset, cause).
 *   When a call fails, nothing was queued and nothing will complete for it later.
 *
 * Fail-stop
 *   If a write or fdatasync fails, the log enters a failed state for good: every
 *   waiter and every later append gets that error and nothing more is acknowledged.
 *   Close it and reopen it; recovery decides what reached the disk.  The log's error
 *   is the failing operation's (-EIO, -ENOSPC, ...); one the API uses for its own
 *   meaning (-EAGAIN, -EBUSY, -EINVAL, -EMSGSIZE, -ETIMEDOUT, -EINTR) is reported as
 *   -EIO, with the original in ringlog_last_error().
 *
 * Threads
 *   Every call on a `struct ringlog` may be made from any number of threads at once,
 *   except ringlog_close(), which must not race with any other call on the handle
 *   (and returns -EBUSY while live readers of it are open: close them first).  A reader is used by one thread
 *   at a time.
 */
#ifndef RINGLOG_H
#define RINGLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RINGLOG_BUILDING) && defined(__GNUC__)
#define RINGLOG_API __attribute__((visibility("default")))
#else
#define RINGLOG_API
#endif

#define RINGLOG_VERSION_MAJOR 0
#define RINGLOG_VERSION_MINOR 1

/* Hard ceiling for options.max_batch_bytes (a frame's length field and a registered
 * buffer are both bounded by this). */
#define RINGLOG_MAX_BATCH_BYTES_LIMIT (256u << 20)
/* Ceiling for options.pipeline_depth. */
#define RINGLOG_MAX_PIPELINE_DEPTH 8u
/* Ceiling for options.prepared_segments and options.recycle_segments. */
#define RINGLOG_MAX_POOL_FILES 64u

/* How segment files are written (options.io_mode). */
enum ringlog_io_mode {
	/* O_DIRECT where the filesystem accepts it, buffered writes elsewhere (tmpfs,
	 * some network filesystems).  The default. */
	RINGLOG_IO_AUTO = 0,
	/* O_DIRECT or nothing: ringlog_open() fails with -EINVAL where it is refused. */
	RINGLOG_IO_DIRECT = 1,
	/* Buffered writes through the page cache. */
	RINGLOG_IO_BUFFERED = 2,
};

/* Bytes a batch of `nrecs` records holding `data_bytes` bytes in all takes in the
 * log: a 32-byte frame header, a 4-byte length per record, the data, rounded up to
 * a multiple of 8 (see docs/format.md).  A batch fits if this is at most
 * options.max_batch_bytes. */
#define RINGLOG_FRAME_HEADER_BYTES 32u
#define RINGLOG_FRAME_BYTES(nrecs, data_bytes)                                                     \
	((RINGLOG_FRAME_HEADER_BYTES + 4ull * (nrecs) + (uint64_t)(data_bytes) + 7) & ~7ull)

/* What recovery does with damage (options.recovery_mode; docs/recovery.md). */
enum ringlog_recovery_mode {
	/* Cut a torn tail off the last segment (normal after a crash); refuse any other
	 * damage with -EBADMSG.  The default. */
	RINGLOG_RECOVER_TOLERATE_TAIL = 0,
	/* Refuse any damage, a torn tail included. */
	RINGLOG_RECOVER_ABSOLUTE = 1,
	/* Keep the log up to its first damage, wherever it is; drop everything after it
	 * (the rest of that segment and all later segments) and report what was dropped. */
	RINGLOG_RECOVER_POINT_IN_TIME = 2,
	/* Salvage: keep every valid frame, wherever the damage is.  A damaged stretch
	 * is marked in place as a hole that stands for the LSNs lost there (readers
	 * skip it: LSNs jump), a missing segment becomes a hole at the end of the one
	 * before, a segment that is not the log's is renamed aside, a broken header is
	 * written again.  Damage in the last segment is treated the same way: frames
	 * after it are kept; what follows the last valid frame is cut, as by default. */
	RINGLOG_RECOVER_SKIP_CORRUPTED = 3,
};

/* What recovery found and did (ringlog_recovery_report) or would do (ringlog_check). */
struct ringlog_recovery {
	uint32_t mode;		   /* the enum ringlog_recovery_mode applied */
	uint32_t segments;	   /* segment files found */
	uint64_t first_lsn;	   /* first LSN kept (0: empty log) */
	uint64_t last_lsn;	   /* last LSN kept (first_lsn - 1 when none) */
	uint64_t cut_bytes;	   /* bytes removed from the end of the kept log */
	uint32_t dropped_segments; /* whole segment files removed (point-in-time) */
	int32_t damage;		   /* 0, or -EBADMSG when damage was found */
	char damage_file[32];	   /* the segment where the first damage is ("" if none) */
	uint64_t damage_offset;	   /* its byte offset in that file */
	uint64_t damage_lsn;	   /* the LSN that was expected there */
	char damage_reason[80];	   /* what is wrong there */
	/* LSNs lost to damage by salvage, this one or an earlier one (with those that
	 * set-aside segments of this log hold past its end): the hole frames in the log
	 * stand for them, readers skip them, appends never reuse them.  Any mode counts
	 * them. */
	uint64_t lost_lsns;
	/* Salvage (RINGLOG_RECOVER_SKIP_CORRUPTED) only: */
	uint32_t holes;		     /* hole frames written */
	uint32_t set_aside_segments; /* segment files renamed to NAME.salvaged */
	uint32_t rewritten_headers;  /* damaged segment headers written again */
	uint32_t reserved_pad;
	uint64_t reserved[5];
};

struct ringlog;	       /* a log opened for appending (one writer per directory) */
struct ringlog_reader; /* a cursor over a log's records */

/*
 * Options.  Always fill with ringlog_options_init() first, then change fields.
 * The struct's size never changes: new fields take space from `reserved`, which
 * must stay zero (ringlog_open() returns -EINVAL otherwise).
 */
struct ringlog_options {
	/* Soft size cap of a segment file, in bytes.  A segment is closed once a group
	 * commit leaves it at or past this size, so it may overshoot by at most one
	 * group.  Default 64 MiB; minimum 4096. */
	uint64_t segment_bytes;
	/* Capacity of the submission ring, in bytes (rounded up to a power of two).
	 * Queued batches wait here until they are written; appends block (or
	 * try_append returns -EAGAIN) while it is full.  Default 16 MiB. */
	uint32_t ring_bytes;
	/* Largest batch accepted, as RINGLOG_FRAME_BYTES(); larger ones fail with
	 * -EMSGSIZE.  Default 1 MiB; at most ring_bytes / 2 and
	 * RINGLOG_MAX_BATCH_BYTES_LIMIT. */
	uint32_t max_batch_bytes;
	/* Non-zero: create the directory if it does not exist.  Default 1. */
	uint32_t create_if_missing;
	/* Non-zero: do not register the ring with io_uring (plain write SQEs instead
	 * of write_fixed).  Registration falls back to this on its own when the
	 * kernel refuses it (e.g. RLIMIT_MEMLOCK).  Default 0. */
	uint32_t no_registered_buffer;
	/* Group commits in flight at once, 1..RINGLOG_MAX_PIPELINE_DEPTH: each is a write
	 * with its own linked fdatasync; they are acknowledged in order.  A group whose
	 * write shares a block with the one before it is submitted once that write has
	 * completed.  Default RINGLOG_DEFAULT_PIPELINE_DEPTH. */
	uint32_t pipeline_depth;
	/* enum ringlog_recovery_mode: what open does with damage.  Default
	 * RINGLOG_RECOVER_TOLERATE_TAIL. */
	uint32_t recovery_mode;
	/* Non-zero: time every group's stages and every batch's append-to-durable
	 * latency (ringlog_latency).  Costs one clock read per append and a few per
	 * group (docs/profiling.md has the measured overhead).  Default 0. */
	uint32_t profile;
	/* enum ringlog_io_mode.  Default RINGLOG_IO_AUTO; ringlog_stats() tells what is
	 * in use. */
	uint32_t io_mode;
	/* Segment files kept ready ahead by a helper thread, every block allocated and
	 * written (zero-filled or recycled), so that appends never wait for block
	 * allocation and a rotation is a header write and a rename.  0..
	 * RINGLOG_MAX_POOL_FILES; 0: segments are created empty and grow as they are
	 * written (slower: each fdatasync then commits allocation).  Default 2. */
	uint32_t prepared_segments;
	/* ringlog_truncate_before() keeps up to this many removed segment files in the
	 * pool for reuse instead of deleting them (as RocksDB's recycle_log_file_num and
	 * PostgreSQL's wal_recycle): no zero-filling for them, at the price of their
	 * disk space.  0..RINGLOG_MAX_POOL_FILES; without prepared_segments there is no
	 * pool and retention deletes.  Default 2. */
	uint32_t recycle_segments;
	/* Longest a waiter (ringlog_wait, a live reader's wait) and the consumer spin, in
	 * microseconds, instead of sleeping when the wait should be short: a spin saves
	 * two hand-offs between threads (tens of microseconds each on a virtual machine)
	 * for CPU time.  Spinning is adaptive (about twice a group's usual time), only
	 * when a completion or an append is expected, and by at most one waiter per spare
	 * CPU.  0 never spins.  Default RINGLOG_DEFAULT_SPIN_US. */
	uint32_t spin_us;
	uint32_t reserved_pad;
	uint64_t reserved[9]; /* the struct is 128 bytes, for good */
};

#define RINGLOG_DEFAULT_PIPELINE_DEPTH 8u
#define RINGLOG_DEFAULT_SPIN_US 200u
/* Ceiling for options.spin_us (10 ms). */
#define RINGLOG_MAX_SPIN_US 10000u

/* One record, as returned by a reader. */
struct ringlog_record {
	uint64_t lsn;		  /* the record's log sequence number */
	const void *data;	  /* its bytes: valid until the next call on the reader */
	uint32_t len;		  /* its length in bytes */
	uint32_t batch_nrecs;	  /* records in the batch it belongs to */
	uint64_t batch_first_lsn; /* LSN of the first record of that batch */
};

/* Fill *opts with the defaults above. */
RINGLOG_API void ringlog_options_init(struct ringlog_options *opts);

/*
 * Open (creating if needed) the log in directory `dir` for appending, after
 * recovering it: sealed segments are verified, a torn tail in the last segment is
 * cut off and the cut made durable.  `opts` may be NULL for the defaults.
 * Starts the consumer thread.  On success stores the handle in *out and returns 0.
 *
 * Errors: -EINVAL bad options or NULL arguments; -ENOENT dir missing and
 * create_if_missing is 0;
 * -ENOTDIR dir is not a directory; -EBUSY another writer has the log open;
 * -EBADMSG corruption that recovery may not repair (ringlog_last_error() names the
 * file and offset); -ENOSYS or -EPERM io_uring is unavailable; -ENOMEM; or the
 * error of the failing system call.
 */
RINGLOG_API int ringlog_open(const char *dir, const struct ringlog_options *opts,
			     struct ringlog **out);

/*
 * Append one batch of `nrecs` records (recs[i] is record i) atomically.  The data is
 * copied: the caller may reuse its buffers on return.  Does not wait for
 * durability; stores the batch's first LSN in *first_lsn (if not NULL), the records
 * getting first_lsn .. first_lsn + nrecs - 1.  Blocks while the ring is full.
 * While the consumer is busy writing, an append makes no system call.
 *
 * Returns 0.  Errors: -EINVAL (nrecs == 0, NULL recs, log closing); -EMSGSIZE (the
 * batch exceeds max_batch_bytes); the log's error if it has failed.
 */
RINGLOG_API int ringlog_append(struct ringlog *log, const struct iovec *recs, unsigned nrecs,
			       uint64_t *first_lsn);

/* As ringlog_append(), but returns -EAGAIN instead of blocking when the ring is
 * full. */
RINGLOG_API int ringlog_try_append(struct ringlog *log, const struct iovec *recs, unsigned nrecs,
				   uint64_t *first_lsn);

/*
 * Wait until every record up to and including `lsn` is durable.  Returns 0 then
 * (at once if it already is).  Errors: -EINVAL if `lsn` has not been handed out
 * yet; the log's error if it failed before `lsn` became durable.
 */
RINGLOG_API int ringlog_wait(struct ringlog *log, uint64_t lsn);

/* As ringlog_wait(), but gives up after `timeout_ns` nanoseconds (< 0: never) with
 * -ETIMEDOUT. */
RINGLOG_API int ringlog_wait_timeout(struct ringlog *log, uint64_t lsn, int64_t timeout_ns);

/* The highest LSN known durable (0 if none yet).  Never blocks. */
RINGLOG_API uint64_t ringlog_durable_lsn(struct ringlog *log);

/* The next LSN an append will hand out. */
RINGLOG_API uint64_t ringlog_next_lsn(struct ringlog *log);

/*
 * Counters since open.  Counted by the consumer (durable batches only) so appends pay
 * nothing for them, except ring_full_waits.  The struct never changes size: new
 * fields take `reserved`.
 */
struct ringlog_stats {
	uint64_t batches;	  /* batches made durable */
	uint64_t records;	  /* records made durable */
	uint64_t bytes;		  /* frame bytes made durable (headers included) */
	uint64_t groups;	  /* group commits: one write + one fdatasync each */
	uint64_t writes;	  /* write operations submitted (> groups after retries) */
	uint64_t fdatasyncs;	  /* fdatasync operations submitted */
	uint64_t retries;	  /* resubmissions after short writes, EINTR, EAGAIN */
	uint64_t rotations;	  /* segments started after open */
	uint64_t ring_full_waits; /* appends that found the ring full (counted by them):
				   * blocking ones that waited, and -EAGAIN returns */
	uint64_t durable_lsn;
	uint64_t next_lsn;
	uint64_t segment_first_lsn; /* first LSN of the segment being written */
	uint64_t direct_io;	    /* 1: segments are written with O_DIRECT; 0: buffered */
	uint64_t io_align;	    /* every write starts and ends at a multiple of this
				     * (1 when buffered) */
	uint64_t pipeline_depth;    /* group commits in flight at most */
	uint64_t bytes_written;	    /* bytes written to segment files: more than `bytes`
				     * when a group ends inside a block, which the next
				     * group then writes again */
	uint64_t segments_prepared; /* files zero-filled ahead by the preparer */
	uint64_t segments_recycled; /* files reused after retention */
	uint64_t rotation_waits;    /* rotations that waited for a prepared file */
	uint64_t prepared_ready;    /* prepared files ready now */
	uint64_t retention_held;    /* ringlog_truncate_before calls that a slot held back */
	uint64_t retention_held_lsn; /* the LSN the last of them stopped at (the oldest
				      * slot's position + 1), 0 if none */
	uint64_t reserved[10];
};

/* Fill *out with the log's counters.  Cheap (no lock, no system call).  Returns 0. */
RINGLOG_API int ringlog_stats(struct ringlog *log, struct ringlog_stats *out);

/* Where an append's time goes (options.profile).  All times in nanoseconds. */
enum ringlog_stage {
	RINGLOG_STAGE_QUEUE = 0,  /* first batch of a group enqueued -> consumer takes the group */
	RINGLOG_STAGE_SUBMIT,	  /* group taken -> write and fdatasync submitted */
	RINGLOG_STAGE_WRITE,	  /* submitted -> write completed */
	RINGLOG_STAGE_SYNC,	  /* write completed -> fdatasync completed */
	RINGLOG_STAGE_WAKE,	  /* fdatasync completed -> durability published, waiters woken */
	RINGLOG_STAGE_END_TO_END, /* per batch: append -> durability published */
	RINGLOG_STAGES
};

struct ringlog_latency_stage {
	uint64_t count; /* samples: groups, or batches for END_TO_END */
	uint64_t mean_ns, p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
	uint64_t reserved[2];
};

/* Room for stages added later without changing the struct's size: stage[i] for
 * i >= RINGLOG_STAGES is zero. */
#define RINGLOG_STAGES_MAX 10

struct ringlog_latency {
	struct ringlog_latency_stage stage[RINGLOG_STAGES_MAX];
	uint64_t reserved[8];
};

/*
 * The stage latencies since open (or the last reset): with `reset` non-zero the
 * histograms start over after being read, so successive calls give intervals.  A
 * group is recorded right after its waiters are woken, so a waiter that reads this at
 * once may not see its own group yet.
 * Returns 0, or -EINVAL if the log was opened without options.profile.
 */
RINGLOG_API int ringlog_latency(struct ringlog *log, struct ringlog_latency *out, int reset);

/* One percentile (0..100) of a stage's latency since open or the last reset, in ns;
 * 0 if there are no samples or profiling is off. */
RINGLOG_API uint64_t ringlog_latency_percentile(struct ringlog *log, unsigned stage, double p);

/* 0 while the log is healthy, else the error that failed it. */
RINGLOG_API int ringlog_error(struct ringlog *log);

/*
 * An eventfd (non-blocking, close-on-exec, owned by the log) that becomes readable
 * whenever the durable LSN advances or the log fails, from the first call of this
 * function on (call it before appending).  Read it to reset it, then check
 * ringlog_durable_lsn() / ringlog_error().  Returns the fd (>= 0).
 */
RINGLOG_API int ringlog_event_fd(struct ringlog *log);

/*
 * Write and sync everything queued, stop the consumer, release the directory and
 * free the log.  No other call on `log` may run concurrently or follow.
 * Accepts NULL.  Returns 0, or the log's error if it had failed (the handle is
 * freed either way), or -EBUSY if live readers of the log (ringlog_reader_open_live)
 * are still open: then nothing is done and the log stays usable; close them and
 * call again.
 */
RINGLOG_API int ringlog_close(struct ringlog *log);

/* Set the calling thread's ringlog_last_error() to `detail` and return `err`: for
 * libraries built on ringlog (libringlog-nats) that report through it. */
RINGLOG_API int ringlog_set_error(int err, const char *detail);

/* A static, human-readable description of a ringlog return code (negative errno). */
RINGLOG_API const char *ringlog_strerror(int err);

/* Detail of the most recent failure of a ringlog call in the calling thread (what
 * failed, on which file and offset); "" if none.  Valid until the next ringlog call
 * in this thread. */
RINGLOG_API const char *ringlog_last_error(void);

/*
 * Retention: delete every whole segment whose records all have LSNs below `lsn`
 * (oldest first, making each removal durable).  The segment being written is never
 * deleted.  Readers that have a deleted segment open keep reading it; a reader
 * opened later at a removed LSN gets -ENOENT.  Returns the number of segments
 * deleted (>= 0) or -errno.
 */
RINGLOG_API int ringlog_truncate_before(struct ringlog *log, uint64_t lsn);

/* What recovery found and did when `log` was opened.  Returns 0. */
RINGLOG_API int ringlog_recovery_report(struct ringlog *log, struct ringlog_recovery *out);

/*
 * Check the log in `dir` without changing anything: fill *out with what an open in
 * `mode` would find and do.  Returns 0 if such an open would succeed, -EBADMSG if it
 * would refuse (out->damage_* say where and why), or -ENOENT / -ENOTDIR / -errno.
 * Works while a writer has the log open (its unsynced tail may then show as torn).
 */
RINGLOG_API int ringlog_check(const char *dir, uint32_t mode, struct ringlog_recovery *out);

/* The kinds of step a repair takes (struct ringlog_repair_action.op). */
enum ringlog_repair_op {
	/* A last segment whose creation a crash tore (no valid header, at most 64 bytes):
	 * cut to nothing and its header written.  `length`: bytes it held. */
	RINGLOG_REPAIR_RESET_FILE = 1,
	/* A damaged or unchained segment header written again (64 bytes at offset 0). */
	RINGLOG_REPAIR_WRITE_HEADER = 2,
	/* Hole frames written at `offset` (`length` bytes) standing for `lsns` LSNs from
	 * `first_lsn` (salvage). */
	RINGLOG_REPAIR_WRITE_HOLES = 3,
	/* The segment ends at `offset` from now on: the `length` bytes after it are zeroed,
	 * or the file is truncated there when they reach its end (`truncate` 1). */
	RINGLOG_REPAIR_CUT = 4,
	/* The segment file is removed (point-in-time, the segments after the damage). */
	RINGLOG_REPAIR_REMOVE = 5,
	/* The segment file is renamed to NAME.salvaged (salvage; never deleted). */
	RINGLOG_REPAIR_SET_ASIDE = 6,
};

/* One step of the plan an open would apply, in the order it would apply them; each
 * step is made durable before the next. */
struct ringlog_repair_action {
	uint32_t op;	   /* enum ringlog_repair_op */
	uint32_t truncate; /* RINGLOG_REPAIR_CUT: 1 truncates the file, 0 zeroes in place */
	char file[32];	   /* the segment file, in the log directory */
	uint64_t offset;   /* where in it (0 for whole-file steps) */
	uint64_t length;   /* bytes written, cut or (whole-file steps) the file's size */
	uint64_t first_lsn;  /* RINGLOG_REPAIR_WRITE_HOLES: first LSN the holes stand for */
	uint64_t lsns;	     /* ... and how many */
	char why[80];	     /* why this step */
	uint64_t reserved[4];
};

/*
 * ringlog_check(), and the steps of the repair an open in `mode` would carry out:
 * *actions is set to a malloc'd array of *count steps (NULL and 0 when there are
 * none, or on any error); release it with free().  `actions` and `count` may be NULL.
 * Returns as ringlog_check() does; on -EBADMSG the mode would refuse and repair
 * nothing.
 */
RINGLOG_API int ringlog_check_plan(const char *dir, uint32_t mode, struct ringlog_recovery *out,
				   struct ringlog_repair_action **actions, size_t *count);

/*
 * Open a reader over the log in `dir`, positioned at record `from_lsn` (0 or 1: the
 * beginning).  Works while a writer has the log open; never modifies any file.
 * Errors: -ENOENT no such log or `from_lsn` is before the first record kept;
 * -ENOTDIR; -ENOMEM; -EBADMSG.
 */
RINGLOG_API int ringlog_reader_open(const char *dir, uint64_t from_lsn,
				    struct ringlog_reader **out);

/*
 * Read the next record into *rec.  Returns 1 and fills *rec; 0 at the end of the log
 * (a later call may return more if a writer appended); or -EBADMSG when a segment
 * other than the last is damaged, or an I/O error.  Never returns a record of a torn
 * or corrupt batch.
 */
RINGLOG_API int ringlog_reader_next(struct ringlog_reader *r, struct ringlog_record *rec);

/*
 * Open a reader inside the writing process that follows `log` as it grows: it
 * returns only records that are durable (never beyond ringlog_durable_lsn()), and
 * ringlog_reader_wait() waits for more.  Close it before closing `log`.  Errors as
 * ringlog_reader_open().
 */
RINGLOG_API int ringlog_reader_open_live(struct ringlog *log, uint64_t from_lsn,
					 struct ringlog_reader **out);

/*
 * For a live reader, or one opened with RINGLOG_READ_DURABLE: wait until the record it
 * would return next is durable, at most `timeout_ns` (< 0: no limit).  Returns 0
 * (ringlog_reader_next() has more), -ETIMEDOUT, the log's error if it failed (live), or
 * -EINVAL for a reader that is neither.
 */
RINGLOG_API int ringlog_reader_wait(struct ringlog_reader *r, int64_t timeout_ns);

/* A frame as ringlog_reader_next_frame() returns it. */
struct ringlog_frame {
	uint64_t first_lsn; /* its first LSN */
	const void *bytes;  /* the frame as on disk (docs/format.md), valid until the next
			     * call on the reader */
	uint32_t len;	    /* its length in bytes */
	uint32_t nrecs;	    /* records (LSNs) it holds */
	uint32_t kind;	    /* RINGLOG_FRAME_BATCH, or RINGLOG_FRAME_HOLE: LSNs lost to
			     * damage (salvage), as a 32-byte hole with no records */
	uint32_t reserved;
};
#define RINGLOG_FRAME_BATCH 0u
#define RINGLOG_FRAME_HOLE 1u

/*
 * Read the next whole frame (one batch, byte for byte with its CRC, or a hole), for
 * copying a log elsewhere: ringlog_append_frame() takes it back.  The same bounds and
 * errors as ringlog_reader_next(); a frame that holds the reader's starting LSN is
 * returned whole (its first_lsn may be below it).  -EINVAL after ringlog_reader_next()
 * returned part of a frame.  Returns 1, 0 at the end, or a negative errno.
 */
RINGLOG_API int ringlog_reader_next_frame(struct ringlog_reader *r, struct ringlog_frame *f);

/* Close a reader.  Accepts NULL. */
RINGLOG_API void ringlog_reader_close(struct ringlog_reader *r);

/*
 * Durability across processes.  While a log is open, its writer publishes the durable
 * LSN in the log directory's LOCK file (64 bytes it maps and updates after every
 * group commit, without syncing it: after a crash it holds a value at or below
 * what was durable, and the next open rewrites it).  A reader in another process that
 * must never return a record that a power loss could still take (a shipper: its
 * copies must never run ahead of the log, or the log could hand the same LSNs out
 * again) opens with RINGLOG_READ_DURABLE: it returns only records whose LSN is at or
 * below that published value, for the same log id.  With no writer running the value
 * stays where the last writer left it: everything it says is on the disk.
 */
#define RINGLOG_READ_DURABLE 1u

/*
 * As ringlog_reader_open(), with `flags` (RINGLOG_READ_DURABLE or 0).  With
 * RINGLOG_READ_DURABLE, ringlog_reader_wait() works across processes (it sleeps until
 * the writer publishes a durable LSN at or past the next record).  Errors as
 * ringlog_reader_open(); -ENOENT also when no writer of this version has opened the log
 * yet (its LOCK file is missing or empty), -EINVAL for an unknown flag.
 */
RINGLOG_API int ringlog_reader_open_ex(const char *dir, uint64_t from_lsn, uint32_t flags,
				       struct ringlog_reader **out);

/* The durable LSN a writer of the log in `dir` published (see above) and the log's
 * id, read without opening the log.  Returns 0, or -ENOENT (no writer of this version has
 * opened the log yet), -EBADMSG (LOCK holds something else), -errno. */
RINGLOG_API int ringlog_published_durable(const char *dir, uint64_t *durable_lsn,
					  uint64_t *log_id);

/* The random id of an open log (every segment and frame carries it). */
RINGLOG_API uint64_t ringlog_log_id(struct ringlog *log);

/* The directory an open log was opened in (the string given to ringlog_open()). */
RINGLOG_API const char *ringlog_dir(struct ringlog *log);

/* The durable LSN bounding a reader: the log's for a live reader, the published one
 * for a RINGLOG_READ_DURABLE reader (0 if it names another log), UINT64_MAX for a
 * reader with no bound. */
RINGLOG_API uint64_t ringlog_reader_durable_lsn(struct ringlog_reader *r);

/*
 * Replication slots: a named position in the log directory that retention respects,
 * as PostgreSQL's replication slots do.  A consumer of the log (a shipper) creates
 * one and advances it as the records up to an LSN are safely elsewhere;
 * ringlog_truncate_before (and so recycling) never removes a segment holding an LSN
 * above any slot's position, and counts that it held back (ringlog_stats:
 * retention_held, retention_held_lsn).  A slot is the file SLOT.<name> in the log
 * directory; names are 1 to 64 of [A-Za-z0-9_.-].  Creating and dropping a slot are
 * durable; advancing one is not synced (after a crash a slot may read as an earlier
 * position, which only holds more back), so it costs one small write.
 */
struct ringlog_slot;

/* Open slot `name` of the log in `dir`, creating it at `lsn` (records up to `lsn` are
 * released; 0: none) if `create` is set and it does not exist.  Returns 0, or
 * -ENOENT (no such slot and !create), -EINVAL (bad name), -errno. */
RINGLOG_API int ringlog_slot_open(const char *dir, const char *name, int create, uint64_t lsn,
				  struct ringlog_slot **out);
/* The slot's position: records up to it may be removed by retention. */
RINGLOG_API uint64_t ringlog_slot_lsn(const struct ringlog_slot *slot);
/* Move the slot to `lsn`.  Returns 0, -EINVAL if `lsn` is below its position, -errno. */
RINGLOG_API int ringlog_slot_advance(struct ringlog_slot *slot, uint64_t lsn);
/* Close the handle (the slot stays).  Accepts NULL. */
RINGLOG_API void ringlog_slot_close(struct ringlog_slot *slot);
/* Remove slot `name` of the log in `dir`, durably.  Returns 0, -ENOENT, -errno. */
RINGLOG_API int ringlog_slot_drop(const char *dir, const char *name);

/*
 * For copying a log elsewhere and back (tools/ringlog-restore):
 *
 * Make `dir` (created if missing, and empty but for files that are not the log's) a
 * new, empty log with id `log_id` whose first LSN will be `first_lsn`, so that a copy
 * keeps the identity and the LSNs of the log it copies.  Open it afterwards with
 * ringlog_open().  Returns 0, -EEXIST (dir already holds a log), -EINVAL, -errno.
 */
RINGLOG_API int ringlog_init_dir(const char *dir, uint64_t log_id, uint64_t first_lsn);

/*
 * Append one frame as it is on disk (docs/format.md: a frame, or a hole), byte for
 * byte: it must be valid, carry this log's id and start at the next LSN.  Otherwise
 * as ringlog_append() (queued, copied, durable later; *first_lsn set).  Returns 0,
 * -EBADMSG (not a valid frame, or another log's), -ESTALE (its first LSN is not the
 * next one: *first_lsn then holds the next one), -EMSGSIZE, the log's error.
 */
RINGLOG_API int ringlog_append_frame(struct ringlog *log, const void *frame, size_t len,
				     uint64_t *first_lsn);

#ifdef __cplusplus
}
#endif
#endif /* RINGLOG_H */
