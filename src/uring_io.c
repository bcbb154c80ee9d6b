/* io_uring calls of the consumer.  Contract in uring_io.h. */
#include "uring_io.h"

#include "file_io.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

struct rl_io_faults *rl_io_faults;

/* The tables of the log this thread works for (file_io.h), else the process-wide one. */
static struct rl_io_faults *faults(void)
{
	const struct rl_faults *f = rl_faults_current();
	return f ? f->io : rl_io_faults;
}

/* Queue depth: two entries (write + fsync) per group in flight, one for the wake
 * read; RL_MAX_PIPELINE_DEPTH groups at most. */
#define RL_IO_ENTRIES 32

int rl_io_init(struct rl_io *io, void *buf, size_t len, int no_register)
{
	memset(io, 0, sizeof(*io));
	struct rl_io_faults *hooks = faults();
	if (hooks && hooks->setup) {
		int err = hooks->setup(hooks->arg);
		if (err < 0)
			return err;
	}
	struct io_uring *ring = calloc(1, sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	/* Newest flags first; older kernels reject them with -EINVAL. Only this
	 * thread ever submits, and it reaps completions itself. */
	static const unsigned try_flags[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	int err = -EINVAL;
	for (size_t i = 0; i < sizeof(try_flags) / sizeof(try_flags[0]); i++) {
		err = io_uring_queue_init(RL_IO_ENTRIES, ring, try_flags[i]);
		if (err != -EINVAL)
			break;
	}
	if (err < 0) {
		free(ring);
		return err;
	}
	io->uring = ring;
	if (!no_register) {
		int rerr = 0;
		if (hooks && hooks->register_buffer)
			rerr = hooks->register_buffer(hooks->arg);
		if (rerr == 0) {
			struct iovec iov = {.iov_base = buf, .iov_len = len};
			rerr = io_uring_register_buffers(io->uring, &iov, 1);
		}
		io->registered = rerr == 0;
	}
	return 0;
}

void rl_io_exit(struct rl_io *io)
{
	if (io->uring) {
		io_uring_queue_exit(io->uring);
		free(io->uring);
	}
	memset(io, 0, sizeof(*io));
}

/* Submit what is queued (`expect` entries) after the fault hook `hook` of `hooks`
 * (NULL: none). */
static int submit(struct rl_io *io, unsigned expect, const struct rl_io_faults *hooks,
		  int (*hook)(void *))
{
	if (hook) {
		int err = hook(hooks->arg);
		/* The prepared entries stay unsubmitted: a failed submit fails the log,
		 * and nothing submits on this ring again. */
		if (err < 0)
			return err;
	}
	int n;
	do
		n = io_uring_submit(io->uring);
	while (n == -EINTR);
	if (n < 0)
		return n;
	return (unsigned)n == expect ? 0 : -EIO;
}

/* user_data: op in bits 0-7, tag in 8-15, the write's length in 32-63. */
static uint64_t user_data(enum rl_io_op op, unsigned tag, uint32_t len)
{
	return (uint64_t)op | (uint64_t)(tag & 0xff) << 8 | (uint64_t)len << 32;
}

static void prep_fsync(struct io_uring_sqe *sqe, int fd, unsigned tag)
{
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, user_data(RL_IO_FSYNC, tag, 0));
}

int rl_io_write_sync(struct rl_io *io, int fd, const void *src, uint32_t len, uint64_t off,
		     int sync, unsigned tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(io->uring);
	if (io->registered)
		io_uring_prep_write_fixed(sqe, fd, src, len, off, 0);
	else
		io_uring_prep_write(sqe, fd, src, len, off);
	io_uring_sqe_set_data64(sqe, user_data(RL_IO_WRITE, tag, len));
	if (sync) {
		/* The link makes the fdatasync start only after the write completed in
		 * full; a short or failed write cancels it (-ECANCELED). */
		sqe->flags |= IOSQE_IO_LINK;
		prep_fsync(io_uring_get_sqe(io->uring), fd, tag);
	}
	struct rl_io_faults *hooks = faults();
	return submit(io, sync ? 2 : 1, hooks, hooks ? hooks->submit : NULL);
}

int rl_io_sync(struct rl_io *io, int fd, unsigned tag)
{
	prep_fsync(io_uring_get_sqe(io->uring), fd, tag);
	struct rl_io_faults *hooks = faults();
	return submit(io, 1, hooks, hooks ? hooks->submit : NULL);
}

int rl_io_arm_wake(struct rl_io *io, int efd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(io->uring);
	io_uring_prep_read(sqe, efd, &io->wake_buf, sizeof(io->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, user_data(RL_IO_WAKE, 0, 0));
	struct rl_io_faults *hooks = faults();
	return submit(io, 1, hooks, hooks ? hooks->arm_wake : NULL);
}

int rl_io_wait(struct rl_io *io, enum rl_io_op *op, unsigned *tag, int *res)
{
	struct io_uring_cqe *cqe;
	int err;
	do
		err = io_uring_wait_cqe(io->uring, &cqe);
	while (err == -EINTR);
	if (err < 0)
		return err;
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	*op = (enum rl_io_op)(ud & 0xff);
	*tag = (unsigned)(ud >> 8 & 0xff);
	*res = cqe->res;
	io_uring_cqe_seen(io->uring, cqe);
	struct rl_io_faults *hooks = faults();
	if (hooks && hooks->complete)
		*res = hooks->complete(hooks->arg, *op, *res, (uint32_t)(ud >> 32));
	return 0;
}
