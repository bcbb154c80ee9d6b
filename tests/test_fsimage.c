/*
 * tests/fsimage.c on this machine: ext4, xfs and btrfs made, mounted, written, filled to
 * ENOSPC, emptied and removed; failures leave nothing behind; a process's mounts are
 * removed when it is killed by a signal or aborts, never by its children, and what a
 * SIGKILLed process left is swept by the next process that mounts.  Needs root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fsimage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The directory tu_fs_mount made around mountpoint `mnt` (.../ringlog-fs-PID-XXXXXX). */
static void base_of(const char *mnt, char *base, size_t len)
{
	snprintf(base, len, "%s", mnt);
	char *slash = strrchr(base, '/');
	assert_non_null(slash);
	*slash = '\0';
}

/* Filesystem type `mnt` is mounted with in this namespace ("" if not mounted; static). */
static const char *mounted_type(const char *mnt)
{
	static char type[64];
	type[0] = '\0';
	FILE *f = fopen("/proc/self/mountinfo", "r");
	assert_non_null(f);
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		/* id parent major:minor root mountpoint options [optional...] - type source */
		char point[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 || strcmp(point, mnt) != 0)
			continue;
		const char *dash = strstr(line, " - ");
		if (dash)
			sscanf(dash + 3, "%63s", type);
	}
	fclose(f);
	return type;
}

/* 1 if some loop device is backed by a file under `base`. */
static int loop_backed_under(const char *base)
{
	DIR *d = opendir("/sys/block");
	if (!d)
		return 0;
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		char path[512], back[PATH_MAX];
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(back, sizeof(back), f) && strncmp(back, base, strlen(base)) == 0)
			found = 1;
		fclose(f);
	}
	closedir(d);
	return found;
}

/* Nothing of mountpoint `mnt` left: not mounted, no loop device on its image, its
 * directory gone.  The loop device can go a moment after the umount: waits up to 3 s. */
static void assert_gone(const char *mnt)
{
	char base[PATH_MAX];
	base_of(mnt, base, sizeof(base));
	struct stat st;
	for (int i = 0; i < 300; i++) {
		if (!*mounted_type(mnt) && !loop_backed_under(base) && stat(base, &st) != 0)
			return;
		usleep(10000);
	}
	fail_msg("%s left behind: mounted as \"%s\", loop device %d, directory %s", mnt,
		 mounted_type(mnt), loop_backed_under(base), stat(base, &st) == 0 ? "exists" : "gone");
}

/* Number of directories this process's tu_fs_mount calls left in the temporary dir. */
static int my_leftovers(void)
{
	const char *t = getenv("TMPDIR");
	DIR *d = opendir(t && *t ? t : "/tmp");
	assert_non_null(d);
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "ringlog-fs-%d-", (int)getpid());
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

static char *mount_or_skip_test(const char *type, unsigned mb)
{
	char *mnt = tu_fs_mount(type, mb);
	if (!mnt) {
		print_message("%s unavailable here (see above): skipped\n", type);
		skip();
	}
	return mnt;
}

static void write_file(const char *dir, const char *name, size_t len, int byte)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	char *buf = malloc(len);
	memset(buf, byte, len);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
	free(buf);
}

static void check_file(const char *dir, const char *name, size_t len, int byte)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	char *buf = malloc(len + 1);
	assert_int_equal(read(fd, buf, len + 1), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != (char)byte)
			fail_msg("%s: byte %zu is %d, not %d", path, i, buf[i], byte);
	close(fd);
	free(buf);
}

static uint64_t avail_bytes(const char *dir)
{
	struct statvfs sv;
	assert_int_equal(statvfs(dir, &sv), 0);
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

/* Write 64 KiB at a time into dir/name, which exists (a full xfs refuses to create a
 * file, ENOSPC from open), until a write fails (at most `cap` bytes); returns that
 * write's errno (0 if none failed), the bytes written in *written. */
static int write_until_error(const char *dir, const char *name, uint64_t cap, uint64_t *written)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	static char buf[1 << 16];
	memset(buf, 0x5a, sizeof(buf));
	int err = 0;
	*written = 0;
	while (*written < cap) {
		ssize_t w = write(fd, buf, sizeof(buf));
		if (w < 0) {
			err = errno;
			break;
		}
		*written += (uint64_t)w;
	}
	close(fd);
	return err;
}

/* The whole round on one type: mount, magic, write + fsync + read back, fill, ENOSPC
 * from a write, unfill, write again, unmount (twice), nothing left. */
static void exercise(const char *type, unsigned mb, unsigned long magic)
{
	double t0 = now_ms();
	char *mnt = mount_or_skip_test(type, mb);
	double t1 = now_ms();

	struct statfs sf;
	assert_int_equal(statfs(mnt, &sf), 0);
	if ((unsigned long)sf.f_type != magic)
		fail_msg("%s: f_type %#lx, want %#lx", mnt, (unsigned long)sf.f_type, magic);
	assert_string_equal(mounted_type(mnt), type);
	uint64_t free_at_start = avail_bytes(mnt);

	write_file(mnt, "hello", 1 << 20, 'h');
	check_file(mnt, "hello", 1 << 20, 'h');

	write_file(mnt, "overflow", 0, 0);
	double t2 = now_ms();
	assert_int_equal(tu_fs_fill(mnt, 0), 0);
	double t3 = now_ms();
	uint64_t left = avail_bytes(mnt), written;
	int err = write_until_error(mnt, "overflow", 64ull << 20, &written);
	if (err != ENOSPC)
		fail_msg("%s: after tu_fs_fill(0) (%llu bytes reported free), writing %llu bytes "
			 "ended with %s, not ENOSPC",
			 type, (unsigned long long)left, (unsigned long long)written,
			 err ? strerror(err) : "no error");
	check_file(mnt, "hello", 1 << 20, 'h');

	tu_fs_unfill(mnt);
	tu_fs_unfill(mnt); /* idempotent */
	assert_true(avail_bytes(mnt) > 4u << 20);
	write_file(mnt, "after", 4 << 20, 'a');
	check_file(mnt, "after", 4 << 20, 'a');

	double t4 = now_ms();
	tu_fs_unmount(mnt);
	double t5 = now_ms();
	tu_fs_unmount(mnt); /* idempotent */
	assert_gone(mnt);
	print_message("%-5s %3u MiB (%llu B free): mkfs+mount %3.0f ms, fill %3.0f ms "
		      "(%llu B free after, then %llu B written before ENOSPC), unmount %3.0f ms\n",
		      type, mb, (unsigned long long)free_at_start, t1 - t0, t3 - t2,
		      (unsigned long long)left, (unsigned long long)written, t5 - t4);
	free(mnt);
}

static void ext4_round(void **state)
{
	(void)state;
	exercise("ext4", 16, EXT4_SUPER_MAGIC);
}

static void xfs_round(void **state)
{
	(void)state;
	exercise("xfs", TU_FS_MIN_MB_XFS, XFS_SUPER_MAGIC);
}

static void btrfs_round(void **state)
{
	(void)state;
	exercise("btrfs", TU_FS_MIN_MB_BTRFS, BTRFS_SUPER_MAGIC);
}

/* The documented minimums are what this machine's tools accept, and one MiB less is
 * refused; a refusal and an unknown type leave nothing behind. */
static void minimum_sizes_and_failures(void **state)
{
	(void)state;
	int leftovers = my_leftovers();
	const char *types[] = {"ext4", "xfs", "btrfs"};
	for (int i = 0; i < 3; i++) {
		unsigned min = tu_fs_min_mb(types[i]);
		char *mnt = mount_or_skip_test(types[i], min);
		assert_string_equal(mounted_type(mnt), types[i]);
		tu_fs_unmount(mnt);
		assert_gone(mnt);
		free(mnt);
		if (min > 1) {
			print_message("expect a refusal from mkfs.%s:\n", types[i]);
			assert_null(tu_fs_mount(types[i], min - 1));
		}
	}
	assert_int_equal(tu_fs_min_mb("vfat"), 0);
	assert_null(tu_fs_mount("vfat", 64));
	assert_null(tu_fs_mount("ext4", 0)); /* mkfs refuses an empty image */
	assert_int_equal(my_leftovers(), leftovers);
}

/* tu_fs_fill leaves at most leave_bytes free, and not much less; a second call
 * extends the same junk file. */
static void fill_leaves_what_was_asked(void **state)
{
	(void)state;
	const char *types[] = {"ext4", "xfs", "btrfs"};
	const unsigned sizes[] = {64, TU_FS_MIN_MB_XFS, TU_FS_MIN_MB_BTRFS};
	for (int i = 0; i < 3; i++) {
		char *mnt = mount_or_skip_test(types[i], sizes[i]);
		const uint64_t leave = 8u << 20;
		assert_int_equal(tu_fs_fill(mnt, leave), 0);
		uint64_t left = avail_bytes(mnt);
		if (left > leave || left + (1u << 20) < leave)
			fail_msg("%s: %llu bytes free after tu_fs_fill(%llu)", types[i],
				 (unsigned long long)left, (unsigned long long)leave);
		write_file(mnt, "fits", 4u << 20, 'f');
		write_file(mnt, "nope", 0, 0);
		assert_int_equal(tu_fs_fill(mnt, 0), 0);
		assert_true(avail_bytes(mnt) < (1u << 20));
		uint64_t written;
		assert_int_equal(write_until_error(mnt, "nope", 16u << 20, &written), ENOSPC);
		tu_fs_unfill(mnt);
		check_file(mnt, "fits", 4u << 20, 'f');
		assert_true(avail_bytes(mnt) > leave);
		tu_fs_unmount(mnt);
		assert_gone(mnt);
		free(mnt);
	}
}

/* ---- processes ---- */

enum ending { END_ABORT, END_SIGTERM, END_SEGV, END_EXIT, END_SIGKILL };


/* Fork a child that mounts ext4, keeps a file open on it (so a plain umount is busy),
 * sends its mountpoint over a pipe, then ends as `how` says (END_SIGTERM and END_SIGKILL:
 * it waits to be killed by the parent).  Returns the child's wait status and its
 * mountpoint in `mnt`. */
static int child_mounts_and_ends(enum ending how, char *mnt, size_t len)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		/* Not outliving a parent killed alone (kill PID rather than the group). */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(7);
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core);
		/* cmocka's SIGSEGV handler, inherited, would jump back into the test runner
		 * in this child: let the default action (and so tu_fs_mount's handler) be. */
		signal(SIGSEGV, SIG_DFL);
		char *m = tu_fs_mount("ext4", 16);
		if (!m)
			_exit(2);
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/held", m);
		int fd = open(path, O_RDWR | O_CREAT, 0644);
		if (fd < 0 || write(fds[1], m, strlen(m) + 1) != (ssize_t)strlen(m) + 1)
			_exit(3);
		switch (how) {
		case END_ABORT:
			abort();
		case END_SEGV:
			/* A real fault would be undefined behaviour, which UBSan stops
			 * first; the signal is what matters here. */
			raise(SIGSEGV);
			_exit(4);
		case END_EXIT:
			free(m); /* LeakSanitizer would turn the exit status into 1 */
			exit(5); /* atexit handlers, as cmocka's exit on a failure */
		case END_SIGTERM:
		case END_SIGKILL:
			for (;;)
				pause();
		}
		_exit(6);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], mnt, len);
	close(fds[0]);
	if (n <= 0) {
		int st;
		waitpid(pid, &st, 0);
		fail_msg("child could not mount (wait status %#x)", st);
	}
	mnt[len - 1] = '\0';
	if (how == END_SIGTERM || how == END_SIGKILL) {
		assert_string_equal(mounted_type(mnt), "ext4"); /* the others may be gone */
		kill(pid, how == END_SIGTERM ? SIGTERM : SIGKILL);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static void child_abort_removes_its_mount(void **state)
{
	(void)state;
	char mnt[PATH_MAX];
	int st = child_mounts_and_ends(END_ABORT, mnt, sizeof(mnt));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGABRT);
	assert_gone(mnt);
}

/* What a test runner's timeout sends first. */
static void child_sigterm_removes_its_mount(void **state)
{
	(void)state;
	char mnt[PATH_MAX];
	int st = child_mounts_and_ends(END_SIGTERM, mnt, sizeof(mnt));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGTERM);
	assert_gone(mnt);
}

static void child_segv_removes_its_mount(void **state)
{
	(void)state;
	char mnt[PATH_MAX];
	int st = child_mounts_and_ends(END_SEGV, mnt, sizeof(mnt));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSEGV);
	assert_gone(mnt);
}

static void child_exit_removes_its_mount(void **state)
{
	(void)state;
	char mnt[PATH_MAX];
	int st = child_mounts_and_ends(END_EXIT, mnt, sizeof(mnt));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 5);
	assert_gone(mnt);
}

/* SIGKILL leaves the mount; the next process to mount sweeps it. */
static void sigkill_leftovers_are_swept(void **state)
{
	(void)state;
	/* From the SIGKILL until the sweeper is done, SIGTERM and SIGINT stay blocked here
	 * and in the sweeper (it inherits the mask): a runner's timeout killing the whole
	 * group then cannot leave the killed child's mount behind. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	char mnt[PATH_MAX];
	int st = child_mounts_and_ends(END_SIGKILL, mnt, sizeof(mnt));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
	assert_string_equal(mounted_type(mnt), "ext4");
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *m = tu_fs_mount("ext4", 4);
		tu_fs_unmount(m);
		_exit(m ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	sigprocmask(SIG_SETMASK, &old, NULL);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_gone(mnt);
}

/* Teardown of sigkill_leftovers_are_swept: a failure there jumps out with SIGTERM and
 * SIGINT still blocked. */
static int unblock_signals(void **state)
{
	(void)state;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	return 0;
}

/* Children inherit the table but not the mounts: their exit, their death by a signal,
 * leave the parent's mount alone. */
static void children_leave_parent_mount_alone(void **state)
{
	(void)state;
	char *mnt = mount_or_skip_test("ext4", 16);
	write_file(mnt, "parent", 8192, 'p');
	const int endings[] = {0, SIGTERM, SIGABRT, SIGINT};
	for (int i = 0; i < 4; i++) {
		struct sigaction cur;
		sigaction(endings[i] ? endings[i] : SIGTERM, NULL, &cur);
		if (cur.sa_handler == SIG_IGN)
			continue; /* SIGINT in a background job of a shell: it would not end */
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct rlimit no_core = {0, 0};
			setrlimit(RLIMIT_CORE, &no_core);
			if (endings[i])
				raise(endings[i]);
			exit(0);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(endings[i] ? WIFSIGNALED(st) && WTERMSIG(st) == endings[i]
				       : WIFEXITED(st) && WEXITSTATUS(st) == 0);
		assert_string_equal(mounted_type(mnt), "ext4");
		check_file(mnt, "parent", 8192, 'p');
	}
	tu_fs_unmount(mnt);
	assert_gone(mnt);
	free(mnt);
}

/* Left mounted on purpose: the atexit handler removes it (checked by hand with
 * `mount | grep ringlog-fs`). */
static void leave_one_for_atexit(void **state)
{
	(void)state;
	char *mnt = mount_or_skip_test("ext4", 8);
	write_file(mnt, "leftover", 4096, 'l');
	print_message("left %s mounted for the atexit handler\n", mnt);
	free(mnt);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_fsimage: needs root to loop-mount filesystem images\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ext4_round),
	    cmocka_unit_test(xfs_round),
	    cmocka_unit_test(btrfs_round),
	    cmocka_unit_test(minimum_sizes_and_failures),
	    cmocka_unit_test(fill_leaves_what_was_asked),
	    cmocka_unit_test(child_abort_removes_its_mount),
	    cmocka_unit_test(child_sigterm_removes_its_mount),
	    cmocka_unit_test(child_segv_removes_its_mount),
	    cmocka_unit_test(child_exit_removes_its_mount),
	    cmocka_unit_test_teardown(sigkill_leftovers_are_swept, unblock_signals),
	    cmocka_unit_test(children_leave_parent_mount_alone),
	    cmocka_unit_test(leave_one_for_atexit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
