/*
 * Faults injected through the io seam (rl_io_faults): fail-stop on EIO/ENOSPC from
 * write or fdatasync, transparent resubmission of short writes, retries of
 * EINTR/EAGAIN, fallback without a registered buffer, io_uring unavailable.
 *
 * The completion hook emulates the kernel: when it turns a write's result into a
 * failure or a short count, it also turns the linked fdatasync's result into
 * -ECANCELED, as a broken link does.
 */
#include "testutil.h"

#include "log_internal.h"
#include "uring_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum mode { SET, SHORT };

static struct {
	/* RL_IO_WRITE, RL_IO_FSYNC or RL_IO_WAKE, 0 = off.  Atomic and stored last by arm():
	 * the hook runs on the consumer, which may complete a wake read while the test
	 * thread arms a fault. */
	_Atomic int op;
	int nth;   /* first occurrence (1-based) it applies to */
	int times; /* how many occurrences from nth (0 = all) */
	enum mode mode;
	int value;
	int seen[4]; /* completions per op */
	uint32_t write_lens[16];
	int cancel_next_fsync;
	int setup_err, register_err, submit_err, arm_wake_err;
	/* Before the armed fault fires, wait (up to 5 s) until this many threads sleep in
	 * ringlog_wait on fx_log: the failure must wake them, not just be seen early. */
	struct ringlog *log;
	unsigned sleepers;
	/* Hold each fdatasync completion until released (ordering test). */
	sem_t *_Atomic hold_sync;
	sem_t *sync_seen;
} fx;

static void await_sleepers(void)
{
	for (int i = 0; fx.log && i < 5000; i++) {
		unsigned sleeping = 0;
		for (int b = 0; b < RL_WAIT_BUCKETS; b++)
			sleeping += atomic_load(&fx.log->wait[b].waiters);
		if (sleeping >= fx.sleepers)
			return;
		usleep(1000);
	}
}

static int fx_complete(void *arg, enum rl_io_op op, int res, uint32_t len)
{
	(void)arg;
	int n = ++fx.seen[op];
	if (op == RL_IO_WRITE && n <= 16)
		fx.write_lens[n - 1] = len;
	sem_t *hold = atomic_load(&fx.hold_sync);
	if (op == RL_IO_FSYNC && hold) {
		sem_post(fx.sync_seen);
		sem_wait(hold);
	}
	if (op == RL_IO_FSYNC && fx.cancel_next_fsync) {
		fx.cancel_next_fsync = 0;
		return -ECANCELED;
	}
	if ((int)op != atomic_load_explicit(&fx.op, memory_order_acquire) || n < fx.nth ||
	    (fx.times && n >= fx.nth + fx.times))
		return res;
	await_sleepers();
	if (fx.mode == SHORT) {
		fx.cancel_next_fsync = 1;
		return res / 2 > 0 ? res / 2 : 1;
	}
	if (op == RL_IO_WRITE && fx.value != 0 && fx.value != (int)len)
		fx.cancel_next_fsync = 1;
	return fx.value;
}
static int fx_setup(void *arg)
{
	(void)arg;
	return fx.setup_err;
}
static int fx_register(void *arg)
{
	(void)arg;
	return fx.register_err;
}
static int fx_submit(void *arg)
{
	(void)arg;
	return fx.submit_err;
}
static int fx_arm_wake(void *arg)
{
	(void)arg;
	return fx.arm_wake_err;
}

static struct rl_io_faults hooks = {
    .setup = fx_setup,
    .register_buffer = fx_register,
    .submit = fx_submit,
    .arm_wake = fx_arm_wake,
    .complete = fx_complete,
};

static int setup(void **state)
{
	memset(&fx, 0, sizeof(fx));
	rl_io_faults = &hooks;
	*state = tu_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	rl_io_faults = NULL;
	tu_rmrf(*state);
	free(*state);
	return 0;
}

static void arm(int op, int nth, int times, enum mode mode, int value)
{
	fx.nth = nth;
	fx.times = times;
	fx.mode = mode;
	fx.value = value;
	atomic_store_explicit(&fx.op, op, memory_order_release);
}

struct waiter {
	struct ringlog *log;
	uint64_t lsn;
	int result;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	w->result = ringlog_wait(w->log, w->lsn);
	return NULL;
}

/* The log fails with `err` on the second group: check fail-stop from every side,
 * then that a reopen (without faults) keeps what was acknowledged. */
static void expect_fail_stop(const char *dir, int op, int err, const char *what)
{
	struct ringlog *log = tu_open(dir, NULL);
	int efd = ringlog_event_fd(log);
	uint64_t a = tu_append_tagged(log, 1, 4, 200) + 3;
	assert_int_equal(ringlog_wait(log, a), 0);
	fx.log = log;
	fx.sleepers = 5; /* the four waiter threads and this one */
	uint64_t v;
	while (read(efd, &v, sizeof(v)) > 0)
		;
	arm(op, 2, 0, SET, err);
	uint64_t b = tu_append_tagged(log, 2, 4, 200) + 3;
	struct waiter w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct waiter){log, b - (uint64_t)i, 1};
		pthread_create(&t[i], NULL, wait_thread, &w[i]);
	}
	assert_int_equal(ringlog_wait(log, b), err);
	assert_non_null(strstr(ringlog_last_error(), what));
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].result, err); /* every waiter gets the error */
	}
	struct pollfd p = {.fd = efd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1); /* the event fd reports the failure */
	assert_int_equal(ringlog_error(log), err);
	assert_int_equal(ringlog_durable_lsn(log), a); /* nothing more acknowledged */
	assert_int_equal(ringlog_wait(log, a), 0);     /* what was durable stays so */
	struct iovec iov = {"late", 4};
	uint64_t next = ringlog_next_lsn(log);
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), err);
	assert_int_equal(ringlog_try_append(log, &iov, 1, NULL), err);
	assert_int_equal(ringlog_next_lsn(log), next); /* no LSN handed out after failure */
	fx.log = NULL;
	assert_int_equal(ringlog_close(log), err);

	rl_io_faults = NULL;
	log = tu_open(dir, NULL);
	/* The failed batch is indeterminate (here the fault was injected after the real
	 * I/O, so it is on disk); what was acknowledged must be. */
	assert_true(ringlog_next_lsn(log) > a);
	uint64_t c = tu_append_tagged(log, 3, 1, 10);
	assert_int_equal(ringlog_wait(log, c), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(first, 1);
	assert_int_equal(last, c);
	assert_int_equal(n, c);
}

static void fdatasync_eio_fails_stop(void **state)
{
	expect_fail_stop(*state, RL_IO_FSYNC, -EIO, "fdatasync");
}

static void write_eio_fails_stop(void **state)
{
	expect_fail_stop(*state, RL_IO_WRITE, -EIO, "write");
}

static void write_enospc_fails_stop(void **state)
{
	expect_fail_stop(*state, RL_IO_WRITE, -ENOSPC, "write");
}

static void short_write_resubmits_remainder(void **state)
{
	const char *dir = *state;
	arm(RL_IO_WRITE, 1, 1, SHORT, 0);
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t last = tu_append_tagged(log, 7, 50, 300) + 49;
	assert_int_equal(ringlog_wait(log, last), 0);
	assert_int_equal(ringlog_error(log), 0);
	/* First write: the whole group (the first group of a new log starts on a block
	 * boundary; its end is rounded up to one), reported half done; second: the rest
	 * from the block the first half ended in, with a new linked fdatasync (the first
	 * was cancelled). */
	uint32_t a = tu_io_align(log);
	uint32_t total = (uint32_t)tu_round_up(RINGLOG_FRAME_BYTES(50, 50 * 300), a);
	assert_int_equal(fx.write_lens[0], total);
	assert_int_equal(fx.write_lens[1], total - total / 2 / a * a);
	assert_int_equal(fx.seen[RL_IO_FSYNC], 2);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, end;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &end, 1), 0);
	assert_int_equal(n, 50);
}

/* While a group's fdatasync has not completed, nothing in it is acknowledged, and
 * nothing after it either (with several groups in flight). */
static void nothing_acknowledged_before_fdatasync_completes(void **state)
{
	const char *dir = *state;
	sem_t hold, seen;
	sem_init(&hold, 0, 0);
	sem_init(&seen, 0, 0);
	struct ringlog_options o;
	ringlog_options_init(&o);
	o.pipeline_depth = 4;
	struct ringlog *log = tu_open(dir, &o);
	fx.sync_seen = &seen;
	atomic_store(&fx.hold_sync, &hold);
	uint64_t a = tu_append_tagged(log, 1, 2, 100) + 1;
	sem_wait(&seen); /* the first group's fdatasync completed in the kernel... */
	uint64_t b = tu_append_tagged(log, 2, 2, 100) + 1;
	usleep(20 * 1000);
	/* ...but its completion is held: neither group may be acknowledged. */
	assert_int_equal(ringlog_durable_lsn(log), 0);
	assert_int_equal(ringlog_wait_timeout(log, a, 20 * 1000 * 1000), -ETIMEDOUT);
	sem_post(&hold); /* release the first; the second's sync then arrives and waits */
	assert_int_equal(ringlog_wait(log, a), 0);
	sem_wait(&seen);
	assert_true(ringlog_durable_lsn(log) < b);
	assert_int_equal(ringlog_wait_timeout(log, b, 20 * 1000 * 1000), -ETIMEDOUT);
	atomic_store(&fx.hold_sync, NULL);
	sem_post(&hold);
	assert_int_equal(ringlog_wait(log, b), 0);
	assert_int_equal(ringlog_close(log), 0);
	sem_destroy(&hold);
	sem_destroy(&seen);
}

static void eintr_and_eagain_are_retried(void **state)
{
	const char *dir = *state;
	arm(RL_IO_WRITE, 1, 2, SET, -EINTR);
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t a = tu_append_tagged(log, 1, 3, 100) + 2;
	assert_int_equal(ringlog_wait(log, a), 0);
	assert_int_equal(fx.seen[RL_IO_WRITE], 3);
	arm(RL_IO_FSYNC, fx.seen[RL_IO_FSYNC] + 1, 3, SET, -EAGAIN);
	uint64_t b = tu_append_tagged(log, 2, 3, 100) + 2;
	assert_int_equal(ringlog_wait(log, b), 0);
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, 6);
}

static void cancelled_fdatasync_is_resubmitted(void **state)
{
	const char *dir = *state;
	arm(RL_IO_FSYNC, 1, 1, SET, -ECANCELED);
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t a = tu_append_tagged(log, 1, 1, 100);
	assert_int_equal(ringlog_wait(log, a), 0);
	assert_int_equal(fx.seen[RL_IO_WRITE], 1); /* the write was whole: not redone */
	assert_int_equal(fx.seen[RL_IO_FSYNC], 2);
	assert_int_equal(ringlog_close(log), 0);
}

static void endless_eagain_gives_up(void **state)
{
	const char *dir = *state;
	arm(RL_IO_WRITE, 1, 0, SET, -EAGAIN);
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t a = tu_append_tagged(log, 1, 1, 100);
	assert_int_equal(ringlog_wait(log, a), -EIO);
	assert_non_null(strstr(ringlog_last_error(), "retries"));
	assert_int_equal(ringlog_close(log), -EIO);
}

static void submit_failure_fails_stop(void **state)
{
	const char *dir = *state;
	fx.submit_err = -ENOMEM;
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t a = tu_append_tagged(log, 1, 1, 100);
	assert_int_equal(ringlog_wait(log, a), -ENOMEM);
	assert_non_null(strstr(ringlog_last_error(), "submit"));
	assert_int_equal(ringlog_durable_lsn(log), 0);
	assert_int_equal(ringlog_close(log), -ENOMEM);
}

/* The consumer, idle, arms a read of its wake eventfd; if that submission fails, the
 * log fails (it could no longer be woken for new work) and says so. */
static void wake_arm_failure_fails_stop(void **state)
{
	const char *dir = *state;
	fx.arm_wake_err = -EIO;
	struct ringlog *log = tu_open(dir, NULL);
	static char rec[100];
	struct iovec iov = {rec, sizeof(rec)};
	uint64_t lsn = 0;
	int err = ringlog_append(log, &iov, 1, &lsn);
	if (err == 0)
		err = ringlog_wait(log, lsn);
	assert_int_equal(err, -EIO);
	assert_int_equal(ringlog_error(log), -EIO);
	assert_int_equal(ringlog_close(log), -EIO);
	assert_non_null(strstr(ringlog_last_error(), "arming the wake-up read"));
}

/* The wake read completing with an error (not -EAGAIN or -EINTR) fails the log. */
static void wake_read_error_fails_stop(void **state)
{
	const char *dir = *state;
	arm(RL_IO_WAKE, 1, 0, SET, -EBADF);
	struct ringlog *log = tu_open(dir, NULL);
	static char rec[100];
	struct iovec iov = {rec, sizeof(rec)};
	/* Let the consumer go idle (past its spin) so that an append wakes it through
	 * the eventfd; an append it still caught spinning takes another round. */
	int err = 0;
	for (int i = 0; i < 200 && !err; i++) {
		usleep(10000);
		uint64_t lsn = 0;
		err = ringlog_append(log, &iov, 1, &lsn);
		if (err == 0)
			err = ringlog_wait(log, lsn);
	}
	assert_int_equal(err, -EBADF);
	assert_int_equal(ringlog_close(log), -EBADF);
	assert_non_null(strstr(ringlog_last_error(), "reading the wake eventfd"));
}

/* An io_uring error that means something else in this API (-EAGAIN: "ring full")
 * fails the log as -EIO, the original named in the detail. */
static void ambiguous_errors_become_eio(void **state)
{
	const char *dir = *state;
	fx.submit_err = -EAGAIN;
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t a = tu_append_tagged(log, 1, 1, 100);
	assert_int_equal(ringlog_wait(log, a), -EIO);
	assert_non_null(strstr(ringlog_last_error(), "Resource temporarily unavailable"));
	struct iovec iov = {"x", 1};
	assert_int_equal(ringlog_try_append(log, &iov, 1, NULL), -EIO);
	assert_int_equal(ringlog_close(log), -EIO);
}

static void unregistered_buffer_fallback(void **state)
{
	const char *dir = *state;
	fx.register_err = -ENOMEM; /* as with a low RLIMIT_MEMLOCK */
	struct ringlog *log = tu_open(dir, NULL);
	assert_int_equal(log->io.registered, 0);
	uint64_t a = tu_append_tagged(log, 1, 10, 1000) + 9;
	assert_int_equal(ringlog_wait(log, a), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, 10);
	/* And registered by default. */
	fx.register_err = 0;
	log = tu_open(dir, NULL);
	assert_int_equal(log->io.registered, 1);
	assert_int_equal(ringlog_close(log), 0);
}

static void io_uring_unavailable_is_a_clear_error(void **state)
{
	const char *dir = *state;
	int codes[] = {-ENOSYS, -EPERM};
	for (int i = 0; i < 2; i++) {
		fx.setup_err = codes[i];
		struct ringlog *log = NULL;
		assert_int_equal(ringlog_open(dir, NULL, &log), codes[i]);
		assert_null(log);
		assert_non_null(strstr(ringlog_last_error(), "io_uring is unavailable"));
	}
	fx.setup_err = 0;
	struct ringlog *log = tu_open(dir, NULL); /* the directory lock was released */
	assert_int_equal(ringlog_close(log), 0);
}

static sem_t gate;
static int gated_submit(void *arg)
{
	(void)arg;
	sem_wait(&gate);
	return fx.submit_err;
}

struct appender {
	struct ringlog *log;
	int err;
};
static void *append_big(void *arg)
{
	struct appender *a = arg;
	static char rec[6000];
	struct iovec iov = {rec, sizeof(rec)};
	a->err = ringlog_append(a->log, &iov, 1, NULL);
	return NULL;
}

static void blocked_appender_gets_the_failure(void **state)
{
	const char *dir = *state;
	sem_init(&gate, 0, 0);
	static struct rl_io_faults gated = {.submit = gated_submit};
	rl_io_faults = &gated;
	struct ringlog_options o;
	tu_options(&o, 1 << 20, 16384);
	struct ringlog *log = tu_open(dir, &o);
	static char rec[6000];
	struct iovec iov = {rec, sizeof(rec)};
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0);
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0);
	struct appender a = {log, 1};
	pthread_t t;
	pthread_create(&t, NULL, append_big, &a);
	for (int i = 0; i < 5000 && atomic_load(&log->ring.space_waiters) == 0; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&log->ring.space_waiters), 1); /* asleep on a full ring */
	fx.submit_err = -EIO;
	sem_post(&gate);
	pthread_join(t, NULL);
	assert_int_equal(a.err, -EIO);
	assert_int_equal(ringlog_close(log), -EIO);
	sem_destroy(&gate);
}

static void rotation_failure_fails_stop_and_recovers(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	/* A 3000-byte batch fills a 4096-byte segment (whatever the alignment of the
	 * first frame), so segment N holds LSN N.  Occupy the name of the third so that
	 * the rotation to it fails. */
	int fd = open(tu_path(dir, "00000000000000000003.rlog"), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < 2; i++) {
		uint64_t l = tu_append_tagged(log, (uint64_t)i, 1, 2900);
		assert_int_equal(ringlog_wait(log, l), 0); /* durable before the rotation */
	}
	/* The rotation before LSN 3 fails; the append of LSN 3 succeeds (it only
	 * queues) and its wait gets the error. */
	uint64_t l = tu_append_tagged(log, 2, 1, 2900);
	assert_int_equal(l, 3);
	assert_int_equal(ringlog_wait(log, l), -EEXIST);
	assert_non_null(strstr(ringlog_last_error(), "00000000000000000003.rlog"));
	assert_int_equal(ringlog_durable_lsn(log), 2);
	assert_int_equal(ringlog_close(log), -EEXIST);
	/* The empty file looks like a rotation torn by a crash: recovery repairs it. */
	log = tu_open(dir, &o);
	/* The consumer stopped at the failed rotation: LSN 3 was never written. */
	assert_int_equal(ringlog_next_lsn(log), 3);
	l = tu_append_tagged(log, 5, 1, 1000);
	assert_int_equal(ringlog_wait(log, l), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 0), 0);
	assert_int_equal(n, l);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(fdatasync_eio_fails_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(write_eio_fails_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(write_enospc_fails_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(short_write_resubmits_remainder, setup, teardown),
	    cmocka_unit_test_setup_teardown(nothing_acknowledged_before_fdatasync_completes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(eintr_and_eagain_are_retried, setup, teardown),
	    cmocka_unit_test_setup_teardown(cancelled_fdatasync_is_resubmitted, setup, teardown),
	    cmocka_unit_test_setup_teardown(endless_eagain_gives_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(submit_failure_fails_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(ambiguous_errors_become_eio, setup, teardown),
	    cmocka_unit_test_setup_teardown(unregistered_buffer_fallback, setup, teardown),
	    cmocka_unit_test_setup_teardown(io_uring_unavailable_is_a_clear_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(wake_arm_failure_fails_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(wake_read_error_fails_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(blocked_appender_gets_the_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(rotation_failure_fails_stop_and_recovers, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
