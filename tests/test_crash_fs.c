/*
 * Crash torture on real filesystems (tests/crash.h): the cycles again, fewer of them,
 * on a fresh ext4 (default mount options), xfs and btrfs each made in an image file
 * and loop-mounted (tests/fsimage.h): real O_DIRECT, allocation and journalling
 * instead of tmpfs.  They need root and the mkfs tools; where a type cannot be
 * mounted its case is skipped (RINGLOG_REQUIRE_FSIMAGE makes that a failure).  Each
 * filesystem gets a quarter of RINGLOG_CRASH_SECONDS (an eighth under sanitizers).
 */
#include "crash.h"

#include "fsimage.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* The same on a fresh loop-mounted filesystem of `type`, in a directory on it, with
 * fewer cycles.  Each type draws its own random choices from the seed. */
static void crash_cycles_on(const char *type, uint64_t salt)
{
	const char *why = NULL;
	if ((g_mnt = tu_fs_mount(type, FS_IMAGE_MB)) == NULL)
		why = "no test filesystem here (see above)";
	if (why) {
		if (getenv("RINGLOG_REQUIRE_FSIMAGE"))
			fail_msg("crash on %s: %s, and RINGLOG_REQUIRE_FSIMAGE is set", type, why);
		print_message("crash on %s: %s: skipped\n", type, why);
		skip();
	}
	if (asprintf(&g_dir, "%s/log", g_mnt) < 0)
		abort();
	assert_int_equal(mkdir(g_dir, 0755), 0);
	g_rng = g_seed ^ salt;
	char where[32];
	snprintf(where, sizeof(where), " on %s", type);
	run_cycles(where, budget_seconds() / (CRASH_SANITIZED ? 8 : 4), FS_MAX_CYCLES,
		   FS_MIN_CYCLES);
}

static void crash_cycles_ext4(void **state)
{
	(void)state;
	crash_cycles_on("ext4", 0xe4e4e4e4e4ull);
}

static void crash_cycles_xfs(void **state)
{
	(void)state;
	crash_cycles_on("xfs", 0xf5f5f5f5f5ull);
}

static void crash_cycles_btrfs(void **state)
{
	(void)state;
	crash_cycles_on("btrfs", 0xb7b7b7b7b7ull);
}

int main(void)
{
	crash_start("crash on filesystems");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(crash_cycles_ext4, crash_teardown),
	    cmocka_unit_test_teardown(crash_cycles_xfs, crash_teardown),
	    cmocka_unit_test_teardown(crash_cycles_btrfs, crash_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
