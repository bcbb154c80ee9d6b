/*
 * Fault tables of one log (struct rl_faults, file_io.h): a log opened with tables of
 * its own consults only those -- on its opener's thread, its consumer and its
 * preparer -- and every other log only the process-wide ones.  So a test can fail one
 * of several logs open at once.
 */
#include "testutil.h"

#include "file_io.h"
#include "log_internal.h"
#include "uring_io.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int fsync_fails; /* fdatasync completions turned into -EIO */

static int fail_fsync(void *arg, enum rl_io_op op, int res, uint32_t len)
{
	(void)arg, (void)len;
	if (op != RL_IO_FSYNC)
		return res;
	atomic_fetch_add(&fsync_fails, 1);
	return -EIO;
}

static struct rl_io_faults failing_io = {.complete = fail_fsync};

static _Atomic int alloc_fails; /* pool files that could not be allocated */

static int fail_alloc(void *arg, enum rl_file_op op, const char *name, uint64_t off, uint64_t len)
{
	(void)arg, (void)name, (void)off, (void)len;
	if (op != RL_FOP_FALLOCATE)
		return 0;
	atomic_fetch_add(&alloc_fails, 1);
	return -ENOSPC;
}

static struct rl_file_faults failing_files = {.fail = fail_alloc};

/* Append one batch and wait for it: 0, or the error. */
static int append_and_wait(struct ringlog *log)
{
	static char rec[100];
	struct iovec iov = {rec, sizeof(rec)};
	uint64_t lsn;
	int err = ringlog_append(log, &iov, 1, &lsn);
	return err ? err : ringlog_wait(log, lsn);
}

/* Log A's own table fails its fdatasyncs; log B, open at the same time, is not
 * touched: A fails, B goes on. */
static void one_log_fails_the_other_goes_on(void **state)
{
	const char *dir = *state;
	char a[4200], b[4200];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	atomic_store(&fsync_fails, 0);
	struct rl_faults own = {.io = &failing_io};
	struct ringlog *la = NULL, *lb = NULL;
	assert_int_equal(rl_log_open(a, NULL, &own, &la), 0);
	assert_int_equal(ringlog_open(b, NULL, &lb), 0);
	assert_int_equal(append_and_wait(lb), 0);
	assert_int_equal(append_and_wait(la), -EIO);
	assert_true(atomic_load(&fsync_fails) > 0);
	assert_int_equal(append_and_wait(lb), 0);
	assert_int_equal(ringlog_error(lb), 0);
	assert_int_equal(ringlog_close(la), -EIO);
	assert_int_equal(ringlog_close(lb), 0);
}

/* The other way round: the process-wide table fails every fdatasync, and a log with
 * tables of its own (none for io_uring) does not see it. */
static void own_tables_shield_from_the_process_wide_ones(void **state)
{
	const char *dir = *state;
	char a[4200], b[4200];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	struct rl_faults none = {0};
	struct ringlog *la = NULL, *lb = NULL;
	rl_io_faults = &failing_io;
	int ea = rl_log_open(a, NULL, &none, &la);
	int eb = ringlog_open(b, NULL, &lb);
	int wa = ea ? ea : append_and_wait(la);
	int wb = eb ? eb : append_and_wait(lb);
	int ca = la ? ringlog_close(la) : 0, cb = lb ? ringlog_close(lb) : 0;
	rl_io_faults = NULL; /* (once no consumer reads it) */
	assert_int_equal(ea, 0);
	assert_int_equal(eb, 0);
	assert_int_equal(wa, 0);
	assert_int_equal(wb, -EIO);
	assert_int_equal(ca, 0);
	assert_int_equal(cb, -EIO);
}

/* A file-operation table of one log reaches its preparer thread: its first segment
 * cannot be made (the pool file's allocation fails), so its open fails -ENOSPC, while
 * another log opened meanwhile prepares its files and works; without the table the
 * first log opens. */
static void file_faults_reach_the_logs_preparer_only(void **state)
{
	const char *dir = *state;
	char a[4200], b[4200];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	atomic_store(&alloc_fails, 0);
	struct rl_faults own = {.file = &failing_files};
	struct ringlog *la = NULL, *lb = NULL;
	assert_int_equal(ringlog_open(b, NULL, &lb), 0);
	assert_int_equal(rl_log_open(a, NULL, &own, &la), -ENOSPC);
	assert_null(la);
	assert_true(atomic_load(&alloc_fails) > 0);
	assert_int_equal(append_and_wait(lb), 0);
	struct ringlog_stats st;
	assert_int_equal(ringlog_stats(lb, &st), 0);
	assert_true(st.segments_prepared > 0);
	assert_int_equal(ringlog_close(lb), 0);
	assert_int_equal(ringlog_open(a, NULL, &la), 0);
	assert_int_equal(append_and_wait(la), 0);
	assert_int_equal(ringlog_close(la), 0);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(one_log_fails_the_other_goes_on),
	    TU_DIR_TEST(own_tables_shield_from_the_process_wide_ones),
	    TU_DIR_TEST(file_faults_reach_the_logs_preparer_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
