/*
 * File operations on the log directory, behind one small interface with a fault-injection
 * hook (as uring_io.h is for io_uring): opening segment and pool files (with O_DIRECT and
 * its fallback), writing, syncing, truncating, allocating, renaming, unlinking and
 * syncing the directory.  Every function returns 0 (or a count / fd) on success and
 * -errno on failure; none sets errno for the caller.
 *
 * `name` arguments are the file's name in the log directory; the fault hook sees them,
 * so a test can fail exactly the operation it means (e.g. zero-filling a pool file).
 */
#ifndef RL_FILE_IO_H
#define RL_FILE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum rl_file_op {
	RL_FOP_OPEN = 0,   /* opening or creating a file */
	RL_FOP_PWRITE,	   /* a write (data, zero-fill, header) */
	RL_FOP_FDATASYNC,  /* fdatasync of a file */
	RL_FOP_FTRUNCATE,  /* ftruncate */
	RL_FOP_FALLOCATE,  /* fallocate */
	RL_FOP_RENAME,	   /* renameat2 within the directory */
	RL_FOP_UNLINK,	   /* unlinkat */
	RL_FOP_DIRSYNC,	   /* fsync of the directory */
	RL_FOP_NOCOW,	   /* marking a new file no-copy-on-write (btrfs) */
	RL_FOP_MKDIR,	   /* creating the log directory */
	RL_FOP_COUNT
};

/*
 * Fault-injection seam for tests (SQLite's test_vfs in spirit): NULL in production.
 * `fail` is called before every operation with its kind, the file name (NULL when not
 * known) and the byte range (0 when none; for RL_FOP_OPEN, `len` holds the open
 * flags, so O_DIRECT opens can be told apart); a negative return makes the operation
 * fail with that error without doing it.  It may be called from the caller's thread, the
 * consumer or the segment preparer.
 */
struct rl_file_faults {
	int (*fail)(void *arg, enum rl_file_op op, const char *name, uint64_t off, uint64_t len);
	void *arg;
};
extern struct rl_file_faults *_Atomic rl_file_faults;

/*
 * One log's fault tables, for tests that run several logs at once and fail only one
 * (rl_log_open in log_internal.h).  The threads that work for such a log -- its
 * opener during ringlog_open, its consumer, its preparer, a caller inside its
 * ringlog_truncate_before or ringlog_close -- consult these instead of the process-wide
 * rl_file_faults and rl_io_faults (uring_io.h); a NULL member means no faults of that
 * kind for this log.  Logs opened with ringlog_open use the process-wide tables.
 */
struct rl_io_faults;
struct rl_faults {
	struct rl_file_faults *file;
	struct rl_io_faults *io;
};
/* Make `f` (NULL: the process-wide tables) this thread's; returns the one it replaces. */
const struct rl_faults *rl_faults_enter(const struct rl_faults *f);
/* This thread's log tables, or NULL. */
const struct rl_faults *rl_faults_current(void);

/*
 * Open the log directory `path` (RL_FOP_OPEN with name = path); when it does not exist
 * and `create` is set, create it (RL_FOP_MKDIR) and make its entry durable in its
 * parent (RL_FOP_DIRSYNC).  Returns the fd, or -errno (-ENOENT, -ENOTDIR as such) with
 * ringlog_last_error() set, prefixed with "who: " unless who is NULL.
 */
int rl_dir_open(const char *who, const char *path, int create);

/* openat(dir_fd, name, flags | O_CLOEXEC, 0644).  Returns the fd or -errno. */
int rl_file_open(int dir_fd, const char *name, int flags);

/*
 * Open `name` for writing with O_DIRECT when `*direct` is set; if the filesystem
 * refuses O_DIRECT (EINVAL) and `fallback` is set, open it buffered and clear *direct.
 * Returns the fd or -errno.
 */
int rl_file_open_rw(int dir_fd, const char *name, int flags, int *direct, int fallback);

/*
 * The direct-I/O alignment of file `fd`, in bytes: the larger of statx's
 * STATX_DIOALIGN memory and offset alignments where the kernel reports them, else the
 * logical block size of the filesystem's device, else 4096; never below 512.
 */
uint32_t rl_file_dio_align(int fd);

/* Write all of buf at off (retrying EINTR and short writes).  Returns 0 or -errno. */
int rl_file_pwrite(int fd, const char *name, const void *buf, size_t len, uint64_t off);
/* Read up to len bytes at off (retrying EINTR).  Returns the count or -errno. */
ssize_t rl_file_pread(int fd, void *buf, size_t len, uint64_t off);
int rl_file_fdatasync(int fd, const char *name);
int rl_file_truncate(int fd, const char *name, uint64_t size);
/* Allocate [off, off + len) (mode 0: also extends the file). */
int rl_file_allocate(int fd, const char *name, uint64_t off, uint64_t len);
/* renameat2 within dir_fd; `noreplace`: fail with -EEXIST rather than replace. */
int rl_file_rename(int dir_fd, const char *from, const char *to, int noreplace);
/* unlinkat; a name that is already gone is not an error. */
int rl_file_unlink(int dir_fd, const char *name);
int rl_dir_sync(int dir_fd);
/* The file's size, or -errno. */
int64_t rl_file_size(int fd);

/*
 * Mark the new, empty file `fd` no-copy-on-write where the filesystem has the notion
 * (btrfs): its blocks are then overwritten in place, so writing into a prepared file
 * needs no free space (a copy-on-write overwrite does, and fails on a full disk), and
 * btrfs keeps no checksums of its own for it (ringlog's frames carry theirs).
 * Returns 1 if it was set, 0 where the filesystem has no such flag, or -errno.
 */
int rl_file_set_nocow(int fd, const char *name);

#endif
