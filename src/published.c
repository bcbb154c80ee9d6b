/* The durable LSN published across processes.  Layout and rules in published.h. */
#include "published.h"

#include "errors.h"
#include "file_io.h"
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define OFF_LOG_ID 8
#define OFF_DURABLE 16
#define OFF_CHECK 24

static void put_value(uint8_t *b, uint64_t lsn)
{
	rl_put64(b, lsn);
	rl_put64(b + 8, ~lsn);
}

int rl_published_create(int dir_fd, uint64_t log_id, uint64_t durable_lsn,
			struct rl_published *p)
{
	memset(p, 0, sizeof(*p));
	p->fd = p->notify_fd = -1;
	uint8_t buf[RL_PUBLISHED_BYTES] = {0};
	rl_put32(buf, RL_PUBLISHED_MAGIC);
	buf[4] = RL_PUBLISHED_VERSION;
	buf[6] = RL_PUBLISHED_BYTES;
	rl_put64(buf + OFF_LOG_ID, log_id);
	put_value(buf + OFF_DURABLE, durable_lsn);
	int fd = rl_file_open(dir_fd, RL_PUBLISHED_NAME, O_RDWR | O_CREAT);
	const char *what = "opening";
	int err = fd < 0 ? fd : 0;
	/* The size first, so that a reader that maps it never finds it shorter. */
	if (!err && (what = "writing", err = rl_file_truncate(fd, RL_PUBLISHED_NAME,
							       RL_PUBLISHED_BYTES)) == 0)
		err = rl_file_pwrite(fd, RL_PUBLISHED_NAME, buf, sizeof(buf), 0);
	if (!err && (what = "fdatasync of", err = rl_file_fdatasync(fd, RL_PUBLISHED_NAME)) == 0)
		(what = "fsync of the directory after creating", err = rl_dir_sync(dir_fd));
	if (err) {
		if (fd >= 0)
			close(fd);
		return rl_fail(err, "%s %s (which holds the durable LSN for readers in other "
				    "processes)",
			       what, RL_PUBLISHED_NAME);
	}
	p->fd = fd;
	p->last = durable_lsn;
	return 0;
}

void rl_published_set(struct rl_published *p, uint64_t durable_lsn)
{
	if (p->fd < 0 || (durable_lsn == p->last && !p->write_err))
		return;
	uint8_t b[16];
	put_value(b, durable_lsn);
	p->write_err = rl_file_pwrite(p->fd, RL_PUBLISHED_NAME, b, sizeof(b), OFF_DURABLE);
	if (!p->write_err)
		p->last = durable_lsn;
}

static size_t map_bytes(void)
{
	long page = sysconf(_SC_PAGESIZE);
	return page > (long)RL_PUBLISHED_BYTES ? (size_t)page : RL_PUBLISHED_BYTES;
}

int rl_published_map(int dir_fd, struct rl_published *p, uint64_t *log_id)
{
	memset(p, 0, sizeof(*p));
	p->fd = p->notify_fd = -1;
	int fd = rl_file_open(dir_fd, RL_PUBLISHED_NAME, O_RDONLY);
	if (fd < 0)
		return fd;
	int64_t size = rl_file_size(fd);
	if (size < (int64_t)RL_PUBLISHED_BYTES) {
		close(fd);
		return size < 0 ? (int)size : size == 0 ? -ENOENT : -EBADMSG;
	}
	/* A whole page, mapped and unmapped: the kernel maps pages anyway, and TSan clears
	 * its shadow of an unmapped range only in whole pages, so a 64-byte unmap left
	 * stale state that it later took for a race with io_uring's rings (mapped by
	 * liburing without its interceptor) at the same address. */
	void *m = mmap(NULL, map_bytes(), PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		int err = -errno;
		close(fd);
		return err;
	}
	p->map = m;
	p->fd = fd;
	if (rl_get32(p->map) != RL_PUBLISHED_MAGIC || p->map[4] != RL_PUBLISHED_VERSION) {
		rl_published_close(p);
		return -EBADMSG;
	}
	*log_id = rl_get64(p->map + OFF_LOG_ID);
	/* Waiting falls back to polling without it (no inotify instances left, say). */
	p->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (p->notify_fd >= 0) {
		char path[32];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (inotify_add_watch(p->notify_fd, path, IN_MODIFY) < 0) {
			close(p->notify_fd);
			p->notify_fd = -1;
		}
	}
	return 0;
}

uint64_t rl_published_get(struct rl_published *p)
{
	if (!p->map)
		return 0;
	/* A pwrite() in progress: read again.  A value that never checks out (the file was
	 * damaged) leaves the last good one (0 at first): less is returned, never more. */
	for (int tries = 0; tries < 1000; tries++) {
		const volatile uint8_t *v = p->map + OFF_DURABLE;
		uint8_t b[16];
		for (int i = 0; i < 16; i++)
			b[i] = v[i];
		atomic_thread_fence(memory_order_acquire);
		uint64_t lsn = rl_get64(b);
		if (rl_get64(b + 8) == ~lsn) {
			p->last = lsn;
			return lsn;
		}
		if (tries > 10)
			sched_yield();
	}
	return p->last;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void drain(int fd)
{
	char buf[4096];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

int rl_published_wait(struct rl_published *p, uint64_t lsn, int64_t timeout_ns)
{
	uint64_t deadline = timeout_ns >= 0 ? now_ns() + (uint64_t)timeout_ns : UINT64_MAX;
	for (;;) {
		if (p->notify_fd >= 0)
			drain(p->notify_fd); /* events before this check need no wake-up */
		if (rl_published_get(p) >= lsn)
			return 0;
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left_ms = (deadline - now + 999999) / 1000000;
		if (p->notify_fd < 0) {
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
			continue;
		}
		/* At most 1 s at a time: a check now and then costs nothing and covers an
		 * event lost to a full inotify queue. */
		struct pollfd pfd = {.fd = p->notify_fd, .events = POLLIN};
		poll(&pfd, 1, left_ms < 1000 ? (int)left_ms : 1000);
	}
}

void rl_published_close(struct rl_published *p)
{
	if (p->map)
		munmap((void *)p->map, map_bytes());
	if (p->fd >= 0)
		close(p->fd);
	if (p->notify_fd >= 0)
		close(p->notify_fd);
	p->map = NULL;
	p->fd = p->notify_fd = -1;
}
