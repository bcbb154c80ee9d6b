/* ringlog_strerror() and the thread-local detail behind ringlog_last_error(). */
#include "errors.h"

#include "ringlog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static __thread char last_error[512];

int rl_fail(int err, const char *fmt, ...)
{
	/* Format apart first: an argument may be this thread's detail itself (a caller
	 * adding context to the detail a callee left). */
	char msg[sizeof(last_error)];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(msg) - 8 && err < 0) {
		const char *desc = strerrordesc_np(-err);
		char tail[96];
		snprintf(tail, sizeof(tail), " (%s)", desc ? desc : "unknown error");
		if (!strstr(msg, tail)) /* a callee's detail may carry it already */
			snprintf(msg + n, sizeof(msg) - (size_t)n, "%s", tail);
	}
	memcpy(last_error, msg, sizeof(msg));
	return err;
}

void rl_set_last_error(const char *msg)
{
	snprintf(last_error, sizeof(last_error), "%s", msg);
}

RINGLOG_API int ringlog_set_error(int err, const char *detail)
{
	rl_set_last_error(detail ? detail : "");
	return err;
}

const char *ringlog_last_error(void)
{
	return last_error;
}

const char *ringlog_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument (empty batch, bad option, unknown LSN, or the log is "
		       "closing)";
	case -EMSGSIZE:
		return "batch larger than the log's max_batch_bytes";
	case -EAGAIN:
		return "submission ring full; retry, or use ringlog_append() to wait";
	case -EBUSY:
		return "another writer holds this log directory (LOCK is flock'ed)";
	case -ENOTDIR:
		return "path is not a directory";
	case -ENOENT:
		return "no such log directory, or the requested LSN is no longer kept";
	case -EBADMSG:
		return "log corruption that recovery may not repair; see ringlog_last_error() "
		       "for file and offset";
	case -ENOSYS:
		return "io_uring is not available: kernel built without it, or blocked by seccomp";
	case -EPERM:
		return "operation not permitted (for io_uring: disabled by sysctl "
		       "kernel.io_uring_disabled or a container policy)";
	case -EIO:
		return "I/O error: the log has failed and acknowledges nothing more; reopen it "
		       "to recover";
	case -ENOSPC:
		return "no space left on device: the log has failed; free space and reopen it";
	case -ENOMEM:
		return "out of memory (or RLIMIT_MEMLOCK too low for io_uring)";
	case -ETIMEDOUT:
		return "timed out waiting for durability";
	}
	if (err < 0) {
		const char *desc = strerrordesc_np(-err);
		if (desc)
			return desc;
	}
	return "unknown error code";
}
