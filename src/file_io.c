/* File operations on the log directory.  Contracts in file_io.h. */
#include "file_io.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct rl_file_faults *_Atomic rl_file_faults;

static _Thread_local const struct rl_faults *thread_faults;

const struct rl_faults *rl_faults_enter(const struct rl_faults *f)
{
	const struct rl_faults *prev = thread_faults;
	thread_faults = f;
	return prev;
}

const struct rl_faults *rl_faults_current(void)
{
	return thread_faults;
}

static int injected(enum rl_file_op op, const char *name, uint64_t off, uint64_t len)
{
	struct rl_file_faults *f = thread_faults ? thread_faults->file : rl_file_faults;
	if (!f || !f->fail)
		return 0;
	int err = f->fail(f->arg, op, name, off, len);
	return err < 0 ? err : 0;
}

int rl_dir_open(const char *who, const char *path, int create)
{
	const char *sep = who ? ": " : "";
	who = who ? who : "";
	int err = injected(RL_FOP_OPEN, path, 0, O_RDONLY | O_DIRECTORY);
	int fd = err ? (errno = -err, -1) : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT || !create)
		return fd >= 0 ? fd : rl_fail(-errno, "%s%sopening log directory %s", who, sep, path);
	if ((err = injected(RL_FOP_MKDIR, path, 0, 0)) != 0 ||
	    (mkdir(path, 0755) < 0 && errno != EEXIST))
		return rl_fail(err ? err : -errno, "%s%screating log directory %s", who, sep, path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return rl_fail(-errno, "%s%sopening log directory %s", who, sep, path);
	/* Make the new directory's own entry durable in its parent. */
	char *parent = strdup(path);
	if (!parent) {
		close(fd);
		return rl_fail(-ENOMEM, "%s%sopening log directory %s", who, sep, path);
	}
	char *slash = strrchr(parent, '/');
	const char *pdir = slash ? (slash == parent ? "/" : (*slash = '\0', parent)) : ".";
	int pfd = open(pdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	err = pfd < 0 ? -errno : rl_dir_sync(pfd);
	if (pfd >= 0)
		close(pfd);
	free(parent);
	if (err) {
		close(fd);
		return rl_fail(err, "%s%sfsync of the parent of %s", who, sep, path);
	}
	return fd;
}

int rl_file_open(int dir_fd, const char *name, int flags)
{
	int err = injected(RL_FOP_OPEN, name, 0, (uint64_t)(unsigned)flags);
	if (err)
		return err;
	int fd;
	do
		fd = openat(dir_fd, name, flags | O_CLOEXEC, 0644);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

int rl_file_open_rw(int dir_fd, const char *name, int flags, int *direct, int fallback)
{
	if (!*direct)
		return rl_file_open(dir_fd, name, flags | O_RDWR);
	int fd = rl_file_open(dir_fd, name, flags | O_RDWR | O_DIRECT);
	if (fd == -EINVAL && fallback) {
		*direct = 0;
		fd = rl_file_open(dir_fd, name, flags | O_RDWR);
	}
	return fd;
}

/* The logical block size of the device holding `fd`, from sysfs; 0 if unknown. */
static uint32_t logical_block_size(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return 0;
	static const char *const forms[] = {
	    "/sys/dev/block/%u:%u/queue/logical_block_size",
	    "/sys/dev/block/%u:%u/../queue/logical_block_size", /* a partition */
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		char path[128];
		snprintf(path, sizeof(path), forms[i], major(st.st_dev), minor(st.st_dev));
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		unsigned v = 0;
		int ok = fscanf(f, "%u", &v) == 1;
		fclose(f);
		if (ok && v >= 512 && (v & (v - 1)) == 0)
			return v;
	}
	return 0;
}

uint32_t rl_file_dio_align(int fd)
{
	uint32_t align = 0;
#ifdef STATX_DIOALIGN
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
		align = sx.stx_dio_offset_align;
		if (sx.stx_dio_mem_align > align)
			align = sx.stx_dio_mem_align;
	}
#endif
	if (!align)
		align = logical_block_size(fd);
	if (!align)
		align = 4096;
	return align < 512 ? 512 : align;
}

int rl_file_pwrite(int fd, const char *name, const void *buf, size_t len, uint64_t off)
{
	int err = injected(RL_FOP_PWRITE, name, off, len);
	if (err)
		return err;
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

ssize_t rl_file_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int rl_file_fdatasync(int fd, const char *name)
{
	int err = injected(RL_FOP_FDATASYNC, name, 0, 0);
	if (err)
		return err;
	return fdatasync(fd) < 0 ? -errno : 0;
}

int rl_file_truncate(int fd, const char *name, uint64_t size)
{
	int err = injected(RL_FOP_FTRUNCATE, name, size, 0);
	if (err)
		return err;
	int r;
	do
		r = ftruncate(fd, (off_t)size);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int rl_file_allocate(int fd, const char *name, uint64_t off, uint64_t len)
{
	int err = injected(RL_FOP_FALLOCATE, name, off, len);
	if (err)
		return err;
	int r;
	do
		r = fallocate(fd, 0, (off_t)off, (off_t)len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int rl_file_rename(int dir_fd, const char *from, const char *to, int noreplace)
{
	int err = injected(RL_FOP_RENAME, from, 0, 0);
	if (err)
		return err;
	return renameat2(dir_fd, from, dir_fd, to, noreplace ? RENAME_NOREPLACE : 0) < 0 ? -errno
											  : 0;
}

int rl_file_unlink(int dir_fd, const char *name)
{
	int err = injected(RL_FOP_UNLINK, name, 0, 0);
	if (err)
		return err;
	return unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

int rl_dir_sync(int dir_fd)
{
	int err = injected(RL_FOP_DIRSYNC, NULL, 0, 0);
	if (err)
		return err;
	return fsync(dir_fd) < 0 ? -errno : 0;
}

int64_t rl_file_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) < 0 ? -errno : (int64_t)st.st_size;
}

int rl_file_set_nocow(int fd, const char *name)
{
	int err = injected(RL_FOP_NOCOW, name, 0, 0);
	if (err)
		return err;
	int flags;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		return errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL ? 0 : -errno;
	if (flags & FS_NOCOW_FL)
		return 1;
	flags |= FS_NOCOW_FL;
	if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
		return errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL ? 0 : -errno;
	return 1;
}
