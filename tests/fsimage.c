#include "fsimage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_MOUNTS 16
#define DIR_PREFIX "ringlog-fs-"
#define JUNK_NAME ".tu_fs_junk"

/* One mount.  The signal handlers read this table, so it holds no pointers to the heap
 * and a slot's paths are written before it becomes LIVE (with the signals blocked). */
enum { SLOT_FREE, SLOT_TAKEN, SLOT_LIVE };
struct slot {
	atomic_int state;
	pid_t owner; /* the process that made it: only that one cleans it up */
	char base[PATH_MAX];
	char img[PATH_MAX + 8];
	char mnt[PATH_MAX + 8];
};
static struct slot g_slots[MAX_MOUNTS];

/* The mkfs or mount(8) being waited for (0 = none): a handler waits for it to end
 * before unmounting, or a mount could appear after the cleanup. */
static volatile pid_t g_helper;
static volatile pid_t g_helper_owner;

static const int g_signals[] = {SIGTERM, SIGINT, SIGABRT, SIGSEGV};
#define NSIGNALS (sizeof(g_signals) / sizeof(g_signals[0]))

static atomic_int g_atexit_done;
static volatile pid_t g_swept_by; /* the process that swept (each process sweeps once) */

/* ---- cleanup (async-signal-safe: only syscalls, no stdio, no malloc) ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Unmount `mnt`: plainly, retried while busy for about `busy_ms`, then detached.
 * Returns 0 (unmounted or was not mounted), 1 (detached lazily) or -errno. */
static int unmount_dir(const char *mnt, long busy_ms)
{
	for (long waited = 0;; waited += 10) {
		if (umount2(mnt, 0) == 0)
			return 0;
		if (errno == EINVAL || errno == ENOENT)
			return 0; /* not a mountpoint (any more), or gone */
		if (errno != EBUSY)
			return -errno;
		if (waited >= busy_ms)
			break;
		sleep_ms(10);
	}
	if (umount2(mnt, MNT_DETACH) == 0)
		return 1;
	return errno == EINVAL ? 0 : -errno;
}

/* Everything under base that tu_fs_mount makes: the mount, the image, the two
 * directories.  Idempotent; a step that fails leaves the rest to be tried. */
static int remove_all(const char *base, const char *img, const char *mnt, long busy_ms)
{
	int r = unmount_dir(mnt, busy_ms);
	unlink(img);
	rmdir(mnt);
	rmdir(base);
	return r;
}

static void put_str(const char *s)
{
	ssize_t n = write(STDERR_FILENO, s, strlen(s));
	(void)n;
}

static void put_num(long v)
{
	char buf[24], *p = buf + sizeof(buf);
	*--p = '\0';
	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	put_str(p);
}

/* Clean up every mount this process owns; returns how many. */
static int cleanup_owned(long busy_ms)
{
	pid_t self = getpid();
	int n = 0;
	if (g_helper && g_helper_owner == self) {
		while (waitpid(g_helper, NULL, 0) < 0 && errno == EINTR)
			;
		g_helper = 0;
	}
	for (int i = 0; i < MAX_MOUNTS; i++) {
		struct slot *s = &g_slots[i];
		if (atomic_load(&s->state) != SLOT_LIVE || s->owner != self)
			continue;
		remove_all(s->base, s->img, s->mnt, busy_ms);
		n++;
	}
	return n;
}

static void on_signal(int sig)
{
	int saved = errno;
	int live = 0;
	pid_t self = getpid();
	for (int i = 0; i < MAX_MOUNTS; i++)
		live += atomic_load(&g_slots[i].state) == SLOT_LIVE && g_slots[i].owner == self;
	if (live) {
		put_str("fsimage: signal ");
		put_num(sig);
		put_str(": removing ");
		put_num(live);
		put_str(" test filesystem(s)\n");
		cleanup_owned(0);
	}
	/* Die of the signal as the process would have without us: the signal is blocked
	 * while this runs, so it is delivered (to the default action) on return; a fault
	 * (SIGSEGV) happens again on return and kills as well. */
	signal(sig, SIG_DFL);
	raise(sig);
	errno = saved;
}

static void at_exit(void)
{
	cleanup_owned(100);
}

/* Install on_signal for each signal still at its default action (a program or cmocka
 * handling a signal keeps it), and the atexit handler once. */
static void install_handlers(void)
{
	for (size_t i = 0; i < NSIGNALS; i++) {
		struct sigaction cur;
		if (sigaction(g_signals[i], NULL, &cur) != 0 || cur.sa_handler != SIG_DFL ||
		    (cur.sa_flags & SA_SIGINFO))
			continue;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		for (size_t j = 0; j < NSIGNALS; j++)
			sigaddset(&sa.sa_mask, g_signals[j]);
		sigaction(g_signals[i], &sa, NULL);
	}
	if (atomic_exchange(&g_atexit_done, 1) == 0)
		atexit(at_exit);
}

static void block_signals(sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < NSIGNALS; i++)
		sigaddset(&set, g_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

static void restore_signals(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ---- running mkfs and mount(8) ---- */

/* Find `name` in $PATH or the sbin directories (root's tools are there, and a test
 * runner's PATH may lack them).  Returns 0 with the full path in `path`, or -ENOENT. */
static int find_prog(const char *name, char *path, size_t len)
{
	const char *env = getenv("PATH");
	char *dirs;
	if (asprintf(&dirs, "%s:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin", env ? env : "") < 0)
		return -ENOMEM;
	int err = -ENOENT;
	for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d == '\0' || (size_t)snprintf(path, len, "%s/%s", d, name) >= len)
			continue;
		if (access(path, X_OK) == 0) {
			err = 0;
			break;
		}
	}
	free(dirs);
	return err;
}

/* argv joined with spaces, for messages (static buffer, one at a time). */
static const char *cmdline(char *const argv[])
{
	static char buf[3 * PATH_MAX];
	size_t n = 0;
	buf[0] = '\0';
	for (int i = 0; argv[i] && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", argv[i]);
	return buf;
}

/* Run argv (argv[0] a full path) with stdin from /dev/null and stdout and stderr into
 * `out` (NUL-terminated, cut to outlen - 1 bytes).  Returns its wait status, or -errno
 * when it could not be started. */
static int run_captured(char *const argv[], char *out, size_t outlen)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, old;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

	/* Blocked from before the spawn until g_helper is set: a handler running in
	 * between would not know to wait for this child. */
	block_signals(&old);
	pid_t pid;
	int err = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	if (err == 0) {
		g_helper_owner = getpid();
		g_helper = pid;
	}
	restore_signals(&old);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(fds[1]);
	if (err) {
		close(fds[0]);
		return -err;
	}

	size_t n = 0;
	for (;;) {
		char chunk[512];
		ssize_t r = read(fds[0], chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		size_t take = (size_t)r < outlen - 1 - n ? (size_t)r : outlen - 1 - n;
		memcpy(out + n, chunk, take);
		n += take;
	}
	out[n] = '\0';
	close(fds[0]);

	int status = 0;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = -errno;
			break;
		}
	}
	g_helper = 0;
	return status;
}

/* Print `out` indented (its first lines), then the one-line reason (last, for a runner that shows the
 * last line of a skipped test's log). */
static void report(const char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(const char *out, const char *fmt, ...)
{
	int lines = 0;
	for (const char *p = out ? out : ""; *p; lines++) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);
		if (lines == 8) {
			fputs("    ...\n", stderr); /* mkfs.xfs adds its whole usage */
			break;
		}
		fprintf(stderr, "    %.*s\n", len, p);
		p += len + (nl != NULL);
	}
	va_list ap;
	va_start(ap, fmt);
	fputs("tu_fs_mount: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* The first line of `out`, for the one-line reason (static buffer). */
static const char *first_line(const char *out)
{
	static char buf[256];
	while (*out == '\n' || *out == ' ')
		out++;
	size_t len = strcspn(out, "\n");
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, out, len);
	buf[len] = '\0';
	return buf;
}

/* Run a tool by name; 0 on exit status 0, else -1 after reporting (with `what`). */
static int run_tool(const char *what, char *argv[])
{
	char path[PATH_MAX], out[4096];
	const char *name = argv[0];
	if (find_prog(name, path, sizeof(path)) != 0) {
		report(NULL, "%s: %s not found (searched $PATH, /usr/sbin, /sbin)", what, name);
		return -1;
	}
	argv[0] = path;
	int st = run_captured(argv, out, sizeof(out));
	argv[0] = (char *)name;
	if (st < 0) {
		report(NULL, "%s: cannot run %s: %s", what, path, strerror(-st));
		return -1;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	argv[0] = path;
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "%s", cmdline(argv));
	argv[0] = (char *)name;
	if (WIFEXITED(st))
		report(out, "%s: `%s` failed with exit status %d: %s", what, cmd, WEXITSTATUS(st),
		       first_line(out));
	else
		report(out, "%s: `%s` killed by signal %d", what, cmd,
		       WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return -1;
}

/* ---- mounting ---- */

static const char *tmp_base(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

/* 1 if no process `pid` runs any more: none exists, or only its zombie. */
static int process_gone(int pid)
{
	if (kill(pid, 0) != 0)
		return errno == ESRCH;
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')'); /* "pid (comm) S ...", comm may hold ')' */
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* Remove what processes that died without cleaning up (SIGKILL, _exit) left in the
 * temporary directory: DIR_PREFIX<pid>-XXXXXX whose pid no longer exists. */
static void sweep_stale(void)
{
	const char *tmp = tmp_base();
	DIR *d = opendir(tmp);
	if (!d)
		return;
	/* Blocked so that a signal (the whole test group's timeout) cannot stop the sweep
	 * half-way through an entry; it is delivered when the sweep is done. */
	sigset_t old;
	block_signals(&old);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int pid = 0, end = 0;
		if (sscanf(de->d_name, DIR_PREFIX "%d-%n", &pid, &end) != 1 || end == 0 || pid <= 0)
			continue;
		if (!process_gone(pid))
			continue;
		char base[PATH_MAX], img[PATH_MAX + 8], mnt[PATH_MAX + 8];
		snprintf(base, sizeof(base), "%s/%s", tmp, de->d_name);
		snprintf(img, sizeof(img), "%s/img", base);
		snprintf(mnt, sizeof(mnt), "%s/mnt", base);
		int r = remove_all(base, img, mnt, 0);
		fprintf(stderr, "tu_fs_mount: removed %s, left by dead process %d%s\n", base, pid,
			r == 1 ? " (was still mounted and busy: detached)" : "");
	}
	closedir(d);
	restore_signals(&old);
}

unsigned tu_fs_min_mb(const char *type)
{
	if (strcmp(type, "ext4") == 0)
		return TU_FS_MIN_MB_EXT4;
	if (strcmp(type, "xfs") == 0)
		return TU_FS_MIN_MB_XFS;
	if (strcmp(type, "btrfs") == 0)
		return TU_FS_MIN_MB_BTRFS;
	return 0;
}

/* Take a free slot, fill in its paths and create the base directory; the slot is LIVE
 * on return (NULL if none is free or mkdtemp fails, reported). */
static struct slot *new_slot(void)
{
	struct slot *s = NULL;
	for (int i = 0; i < MAX_MOUNTS && !s; i++) {
		int expect = SLOT_FREE;
		if (atomic_compare_exchange_strong(&g_slots[i].state, &expect, SLOT_TAKEN))
			s = &g_slots[i];
	}
	if (!s) {
		report(NULL, "more than %d filesystems mounted at once", MAX_MOUNTS);
		return NULL;
	}
	char base[PATH_MAX];
	if ((size_t)snprintf(base, sizeof(base), "%s/" DIR_PREFIX "%d-XXXXXX", tmp_base(),
			     (int)getpid()) >= sizeof(base) - 8) {
		report(NULL, "$TMPDIR is too long");
		atomic_store(&s->state, SLOT_FREE);
		return NULL;
	}
	/* Blocked until the slot is LIVE, so a handler sees either nothing or all of it. */
	sigset_t old;
	block_signals(&old);
	if (!mkdtemp(base)) {
		int e = errno;
		restore_signals(&old);
		atomic_store(&s->state, SLOT_FREE);
		report(NULL, "mkdtemp(%s): %s", base, strerror(e));
		return NULL;
	}
	s->owner = getpid();
	strcpy(s->base, base);
	snprintf(s->img, sizeof(s->img), "%s/img", base);
	snprintf(s->mnt, sizeof(s->mnt), "%s/mnt", base);
	atomic_store(&s->state, SLOT_LIVE);
	restore_signals(&old);
	return s;
}

static void free_slot(struct slot *s)
{
	remove_all(s->base, s->img, s->mnt, 1000);
	atomic_store(&s->state, SLOT_FREE);
}

char *tu_fs_mount(const char *type, unsigned size_mb)
{
	unsigned min = tu_fs_min_mb(type);
	if (min == 0) {
		report(NULL, "unknown filesystem type \"%s\" (ext4, xfs or btrfs)", type);
		return NULL;
	}
	if (geteuid() != 0) {
		report(NULL, "%s: mounting a loop image needs root (euid %d)", type, (int)geteuid());
		return NULL;
	}
	if (g_swept_by != getpid()) {
		g_swept_by = getpid();
		sweep_stale();
	}
	install_handlers();

	struct slot *s = new_slot();
	if (!s)
		return NULL;
	char what[64];
	snprintf(what, sizeof(what), "%s, %u MiB", type, size_mb);

	int fd = open(s->img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size_mb << 20) != 0) {
		report(NULL, "%s: creating the image %s: %s", what, s->img, strerror(errno));
		if (fd >= 0)
			close(fd);
		free_slot(s);
		return NULL;
	}
	close(fd);
	if (mkdir(s->mnt, 0755) != 0) {
		report(NULL, "%s: mkdir %s: %s", what, s->mnt, strerror(errno));
		free_slot(s);
		return NULL;
	}

	/* Fast options: quiet, no prompts; ext4 with 4 KiB blocks like a real disk (mke2fs
	 * picks 1 KiB under 512 MiB) and no root-reserved blocks, so root sees ENOSPC where
	 * statvfs's f_bavail says. */
	char mkfs[32];
	snprintf(mkfs, sizeof(mkfs), "mkfs.%s", type);
	char *ext4_argv[] = {mkfs, "-q", "-F", "-m", "0", "-b", "4096", s->img, NULL};
	char *other_argv[] = {mkfs, "-q", "-f", s->img, NULL};
	char *mount_argv[] = {"mount", "-t", (char *)type, "-o", "loop", s->img, s->mnt, NULL};
	if (run_tool(what, strcmp(type, "ext4") == 0 ? ext4_argv : other_argv) != 0 ||
	    run_tool(what, mount_argv) != 0) {
		free_slot(s);
		return NULL;
	}
	char *ret = strdup(s->mnt);
	if (!ret)
		abort();
	return ret;
}

char *tu_fs_mount_or_skip(const char *type, unsigned size_mb)
{
	char *mnt = tu_fs_mount(type, size_mb);
	if (mnt)
		return mnt;
	if (getenv("RINGLOG_REQUIRE_FSIMAGE")) {
		fprintf(stderr, "RINGLOG_REQUIRE_FSIMAGE is set: failing instead of skipping\n");
		exit(1);
	}
	exit(77);
}

void tu_fs_unmount(const char *mountpoint)
{
	if (!mountpoint)
		return;
	for (int i = 0; i < MAX_MOUNTS; i++) {
		struct slot *s = &g_slots[i];
		if (atomic_load(&s->state) != SLOT_LIVE || strcmp(s->mnt, mountpoint) != 0)
			continue;
		int r = unmount_dir(s->mnt, 2000);
		if (r == 1)
			fprintf(stderr, "tu_fs_unmount: %s still busy after 2 s: detached lazily\n",
				s->mnt);
		else if (r < 0)
			fprintf(stderr, "tu_fs_unmount: umount %s: %s\n", s->mnt, strerror(-r));
		if (unlink(s->img) != 0 && errno != ENOENT)
			fprintf(stderr, "tu_fs_unmount: unlink %s: %s\n", s->img, strerror(errno));
		if ((rmdir(s->mnt) != 0 && errno != ENOENT) || (rmdir(s->base) != 0 && errno != ENOENT))
			fprintf(stderr, "tu_fs_unmount: rmdir in %s: %s\n", s->base, strerror(errno));
		atomic_store(&s->state, SLOT_FREE);
		return;
	}
}

/* ---- filling ---- */

static int free_bytes(const char *dir, uint64_t *avail, uint64_t *bsize)
{
	struct statvfs sv;
	if (statvfs(dir, &sv) != 0)
		return -errno;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	*bsize = sv.f_frsize ? sv.f_frsize : 4096;
	return 0;
}

/* Allocate [off, off + len) in fd: fallocate, or zeros written where that is not
 * supported.  0 or -errno (a short write counts as -ENOSPC). */
static int grow(int fd, uint64_t off, uint64_t len)
{
	if (fallocate(fd, 0, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	static const char zeros[1 << 16];
	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if ((size_t)w < n)
			return -ENOSPC;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return fdatasync(fd) == 0 ? 0 : -errno;
}

int tu_fs_fill(const char *dir, uint64_t leave_bytes)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof(path), "%s/" JUNK_NAME, dir) >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct stat st;
	int err = fstat(fd, &st) == 0 ? 0 : -errno;
	uint64_t off = err ? 0 : (uint64_t)st.st_size;
	/* Ask for what statvfs says is left over leave_bytes; where the filesystem
	 * refuses (its estimate was optimistic, or metadata needs a share), ask for half as
	 * much, down to one block.  Bounded, in case a filesystem's estimate never moves. */
	for (int round = 0; !err && round < 4096; round++) {
		uint64_t avail = 0, bsize = 0;
		if ((err = free_bytes(dir, &avail, &bsize)) != 0 || avail <= leave_bytes)
			break;
		uint64_t want = avail - leave_bytes;
		while ((err = grow(fd, off, want)) == -ENOSPC && want > bsize)
			want = want / 2 > bsize ? want / 2 : bsize;
		if (err == -ENOSPC) {
			err = 0; /* not even one block: full */
			break;
		}
		if (err)
			break;
		off += want;
		/* btrfs reports the space as used only once the transaction commits. */
		if (syncfs(fd) != 0)
			err = -errno;
	}
	if (!err && fsync(fd) != 0)
		err = -errno;
	close(fd);
	return err;
}

void tu_fs_unfill(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/" JUNK_NAME, dir);
	if (unlink(path) != 0 && errno != ENOENT)
		fprintf(stderr, "tu_fs_unfill: unlink %s: %s\n", path, strerror(errno));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}
