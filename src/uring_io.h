/*
 * The io_uring interface of the consumer: set up a ring, register the submission
 * ring as buffer 0, queue "write then linked fdatasync" chains, reap completions.
 * Every io_uring call of the library goes through here, so tests can inject faults
 * (see struct rl_io_faults).
 */
#ifndef RL_URING_IO_H
#define RL_URING_IO_H

#include <stddef.h>
#include <stdint.h>

struct io_uring; /* liburing.h is included by uring_io.c only */

enum rl_io_op {
	RL_IO_WRITE = 1,
	RL_IO_FSYNC = 2,
	RL_IO_WAKE = 3, /* the read of the consumer's wake eventfd */
};

struct rl_io {
	struct io_uring *uring; /* NULL before rl_io_init succeeds */
	int registered; /* the buffer is registered as fixed buffer 0 */
	uint64_t wake_buf; /* target of the wake eventfd read */
};

/*
 * Fault-injection seam for tests (SQLite's test_vfs in spirit).  NULL in
 * production; a test points rl_io_faults at its table before ringlog_open(), or gives
 * one log a table of its own (struct rl_faults in file_io.h).
 * Each hook may be NULL.  Hooks run on the consumer thread.
 */
struct rl_io_faults {
	/* Return < 0 to make io_uring setup fail with that error. */
	int (*setup)(void *arg);
	/* Return < 0 to make buffer registration fail with that error. */
	int (*register_buffer)(void *arg);
	/* Called before each io_uring_submit of writes and fdatasyncs; return < 0 to make
	 * it fail. May block (tests use that to hold the consumer while the ring fills). */
	int (*submit)(void *arg);
	/* Called before the submission of the read of the consumer's wake eventfd (when
	 * it goes idle); return < 0 to make it fail. */
	int (*arm_wake)(void *arg);
	/* Rewrite a completion's result: `res` is what the kernel returned for an
	 * operation of `len` bytes (0 for fsync and the wake read); return the result to
	 * act on. */
	int (*complete)(void *arg, enum rl_io_op op, int res, uint32_t len);
	void *arg;
};
extern struct rl_io_faults *rl_io_faults;

/* Set up the io_uring instance (on the thread that will submit) and register
 * [buf, buf + len) unless no_register.  Registration failure is not an error: the
 * writes then use plain write SQEs.  Returns 0 or -errno from io_uring_queue_init
 * (-ENOMEM if the instance cannot be allocated). */
int rl_io_init(struct rl_io *io, void *buf, size_t len, int no_register);
void rl_io_exit(struct rl_io *io);

/* Queue a write of `len` bytes from `src` (inside the registered buffer) at file
 * offset `off`, linked to an fdatasync when `sync` is set, and submit.  `tag` (< 256)
 * comes back with their completions.  Returns 0 or -errno (nothing queued then). */
int rl_io_write_sync(struct rl_io *io, int fd, const void *src, uint32_t len, uint64_t off,
		     int sync, unsigned tag);
/* Queue and submit an fdatasync alone.  Returns 0 or -errno. */
int rl_io_sync(struct rl_io *io, int fd, unsigned tag);
/* Queue and submit a read of eventfd `efd`: it completes (RL_IO_WAKE) once the
 * eventfd is signalled.  Returns 0 or -errno. */
int rl_io_arm_wake(struct rl_io *io, int efd);

/* Wait for one completion; stores which operation, its tag and its result.  Returns
 * 0 or -errno if waiting itself failed. */
int rl_io_wait(struct rl_io *io, enum rl_io_op *op, unsigned *tag, int *res);

#endif
