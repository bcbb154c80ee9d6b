/*
 * Real filesystems for tests: a fresh ext4, xfs or btrfs made in an image file and
 * loop-mounted on a temporary directory, plus filling it up for ENOSPC tests.
 *
 * Needs root, the mkfs.<type> tool and loop devices; without them tu_fs_mount says why
 * and returns NULL, and the caller skips (tu_fs_mount_or_skip does that).
 *
 * Everything tu_fs_mount makes is also removed when the process that made it ends:
 * from an atexit handler (normal exit, tu_fs_mount_or_skip's exit, cmocka's exit on a
 * failure outside the test runner) and from handlers for SIGTERM, SIGINT, SIGABRT and
 * SIGSEGV (a test runner's timeout, ^C, abort(), a crash), which then let the signal kill
 * the process as it would have.  A handler is installed (at each tu_fs_mount) only where
 * the signal still has its default action: a signal the program ignores, or handles
 * itself, is left to it.  cmocka has its own SIGSEGV handler while a test runs: a crash
 * there becomes a failed test and the program goes on, then exits normally.  Sanitizers
 * (ASan) also take SIGSEGV and end the process with _exit.  SIGKILL cannot be caught.
 * What a process left that way (still mounted or not) is removed by the first
 * tu_fs_mount of each process (so by the next test program): the temporary directory's
 * name carries the owner's pid, and a pid that no longer runs (or is a zombie) marks it
 * stale.  (A process in another pid
 * namespace sharing $TMPDIR would look dead: give it its own TMPDIR.)
 *
 * A mount belongs to the process that made it.  A child made with fork() inherits the
 * table but never cleans up its parent's mounts when it exits or is killed; mounts the
 * child makes itself are its own, cleaned up when it ends like any process's (a child
 * that ends with _exit() skips the atexit handler: its mounts stay until swept).
 *
 * Unmounting: a plain umount first (retried for a while if busy), then
 * umount2(MNT_DETACH) if still busy: the mount disappears from the namespace at once and
 * the filesystem, with its loop device, goes when the last file open on it is closed.
 * The loop device is set up by mount(8) with autoclear, so it goes with the filesystem.
 *
 * Sizes: the minimums below are those of the tools installed here (e2fsprogs 1.47.0,
 * xfsprogs 6.1.0, btrfs-progs 6.2); other versions differ (xfsprogs before 5.19
 * accepted far smaller filesystems).  mkfs plus mount takes about 10 ms for ext4, 15 ms
 * for xfs and 30 ms for btrfs, unmounting under 10 ms (the image is a sparse file, so
 * the size hardly matters).
 *
 * Call these from one thread at a time (a test's main thread, or setup/teardown).
 */
#ifndef RL_FSIMAGE_H
#define RL_FSIMAGE_H

#include <stdint.h>

/* mkfs.ext4 (made with 4 KiB blocks, see tu_fs_mount) accepts 1 MiB, but makes no
 * journal below 8 MiB ("Filesystem too small for a journal"): use 8 MiB or more. */
#define TU_FS_MIN_MB_EXT4 1u
/* mkfs.xfs 6.1 refuses anything under 300 MiB ("Filesystem must be larger than
 * 300MB"); 300 exactly is accepted. */
#define TU_FS_MIN_MB_XFS 300u
/* mkfs.btrfs 6.2: "minimum size for each btrfs device is 114294784" = 109 MiB.  Only
 * about 28 MiB of that is usable for data (metadata is DUP). */
#define TU_FS_MIN_MB_BTRFS 109u

/* The smallest size in MiB the mkfs installed here accepts for `type` (TU_FS_MIN_MB_*),
 * 0 for an unknown type. */
unsigned tu_fs_min_mb(const char *type);

/* Make a `size_mb` MiB image file of filesystem `type` ("ext4", "xfs", "btrfs"), loop-mount
 * it on a new temporary directory, and return that directory (caller frees).  Returns NULL and
 * prints why (to stderr, the reason on the last line) when it cannot (not root, mkfs missing,
 * loop devices unavailable, a size under the type's minimum, ...): callers then skip with exit
 * code 77 and that message.  The image and mountpoint live in a directory
 * $TMPDIR/ringlog-fs-<pid>-XXXXXX (or under /tmp), as "img" and "mnt".  Made with
 * `mkfs.ext4 -q -F -m 0 -b 4096` (4 KiB blocks like a real disk: mke2fs would pick 1 KiB
 * under 512 MiB; no root-reserved blocks), `mkfs.xfs -q -f`, `mkfs.btrfs -q -f`, all with
 * 4 KiB blocks, and `mount -t TYPE -o loop`.  The new filesystem's root is empty except
 * for ext4's lost+found: give the code under test a subdirectory if it minds. */
char *tu_fs_mount(const char *type, unsigned size_mb);

/* tu_fs_mount, or exit 77 (skipped) after its message.  With RINGLOG_REQUIRE_FSIMAGE set in
 * the environment (a CI machine where this must work) it exits 1 instead. */
char *tu_fs_mount_or_skip(const char *type, unsigned size_mb);

/* Unmount and delete everything tu_fs_mount made. Idempotent: a mountpoint not (or no
 * longer) made by tu_fs_mount is ignored.  Does not free `mountpoint`. */
void tu_fs_unmount(const char *mountpoint);

/* Fill the filesystem holding `dir` with a junk file, dir/.tu_fs_junk (allocated with
 * fallocate, or written where that is unsupported), until at most `leave_bytes` are free
 * (statvfs f_bavail * f_frsize: what an unprivileged writer could still get; root gets the
 * same on these mounts since ext4 is made with -m 0), or until the filesystem refuses to
 * allocate even one more block (it may then still report a little free: a full xfs
 * reports 20 KiB that neither fallocate nor write can get).  Exact to the block on ext4, xfs and btrfs (it syncs the
 * filesystem between steps: btrfs counts space as used only once committed).  Calling it
 * again extends the same file.  Takes milliseconds.  Returns 0 or -errno.  A file can
 * still be created afterwards on ext4 and btrfs but not on a full xfs (ENOSPC from
 * open): create the files a test will write before filling. */
int tu_fs_fill(const char *dir, uint64_t leave_bytes);

/* Delete the junk file tu_fs_fill made in `dir` and sync the filesystem, so the space is
 * reported free again (btrfs and xfs release it lazily). Idempotent. */
void tu_fs_unfill(const char *dir);

#endif
