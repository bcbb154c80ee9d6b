/* The writer API on real files through real io_uring: append, wait, reopen, errors. */
#include "testutil.h"

#include "uring_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int setup(void **state)
{
	*state = tu_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	tu_rmrf(*state);
	free(*state);
	rl_io_faults = NULL;
	return 0;
}

static void append_wait_reopen_continues_lsns(void **state)
{
	const char *dir = tu_path(*state, "log"); /* does not exist yet: created */
	char *d = strdup(dir);
	struct ringlog *log = tu_open(d, NULL);
	assert_int_equal(ringlog_next_lsn(log), 1);
	assert_int_equal(ringlog_durable_lsn(log), 0);
	assert_int_equal(tu_append_tagged(log, 1, 3, 100), 1);
	assert_int_equal(tu_append_tagged(log, 2, 1, 5000), 4);
	assert_int_equal(ringlog_wait(log, 4), 0);
	assert_true(ringlog_durable_lsn(log) >= 4);
	assert_int_equal(ringlog_wait(log, 0), 0);
	assert_int_equal(ringlog_close(log), 0);
	/* Both batches are in the first segment, back to back after its header (and the
	 * pad that aligns its first frame for direct I/O). */
	const char *seg = tu_path(d, "00000000000000000001.rlog");
	assert_int_equal(tu_data_end(seg), tu_data_start(seg) + RINGLOG_FRAME_BYTES(3, 300) +
						RINGLOG_FRAME_BYTES(1, 5000));

	log = tu_open(d, NULL);
	assert_int_equal(ringlog_next_lsn(log), 5);
	assert_int_equal(ringlog_durable_lsn(log), 4);
	assert_int_equal(tu_append_tagged(log, 3, 2, 10), 5);
	assert_int_equal(ringlog_close(log), 0); /* close syncs what is queued */

	uint64_t n, first, last;
	assert_int_equal(tu_read_all(d, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, 6);
	assert_int_equal(first, 1);
	assert_int_equal(last, 6);
	free(d);
}

static void records_read_back_exactly(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	struct iovec iov[4] = {{"alpha", 5}, {"", 0}, {"gamma-gamma", 11}, {"d", 1}};
	uint64_t first;
	assert_int_equal(ringlog_append(log, iov, 4, &first), 0);
	assert_int_equal(ringlog_append(log, iov + 2, 1, NULL), 0);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ringlog_reader_next(r, &rec), 1);
		const struct iovec *want = i < 4 ? &iov[i] : &iov[2];
		assert_int_equal(rec.lsn, first + (uint64_t)i);
		assert_int_equal(rec.len, want->iov_len);
		assert_memory_equal(rec.data, want->iov_base, want->iov_len);
		assert_int_equal(rec.batch_first_lsn, i < 4 ? first : first + 4);
		assert_int_equal(rec.batch_nrecs, i < 4 ? 4 : 1);
	}
	assert_int_equal(ringlog_reader_next(r, &rec), 0);
	ringlog_reader_close(r);
}

static void invalid_arguments(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	struct iovec iov = {"x", 1};
	assert_int_equal(ringlog_append(log, &iov, 0, NULL), -EINVAL);
	assert_int_equal(ringlog_append(log, NULL, 1, NULL), -EINVAL);
	assert_int_equal(ringlog_try_append(log, &iov, 0, NULL), -EINVAL);
	assert_non_null(strstr(ringlog_last_error(), "at least one record"));
	/* Waiting for an LSN nobody was given would never return. */
	assert_int_equal(ringlog_wait(log, 1), -EINVAL);
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0);
	assert_int_equal(ringlog_wait(log, 2), -EINVAL);
	assert_int_equal(ringlog_wait(log, 1), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(ringlog_close(NULL), 0);
	ringlog_reader_close(NULL);
	assert_int_equal(ringlog_open(NULL, NULL, &log), -EINVAL);
}

static void bad_options(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	struct ringlog *log;
	ringlog_options_init(&o);
	o.segment_bytes = 100;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	assert_non_null(strstr(ringlog_last_error(), "segment_bytes"));
	ringlog_options_init(&o);
	o.reserved[3] = 1;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	ringlog_options_init(&o);
	o.ring_bytes = 1 << 20;
	o.max_batch_bytes = 1 << 20; /* the ring must hold two */
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	ringlog_options_init(&o);
	o.max_batch_bytes = 8;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	ringlog_options_init(&o);
	o.max_batch_bytes = RINGLOG_MAX_BATCH_BYTES_LIMIT + 8;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	ringlog_options_init(&o);
	o.ring_bytes = 2u << 30;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	assert_null(log);
}

static void batch_size_limit(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 1 << 20, 1 << 16);
	o.max_batch_bytes = 4096;
	struct ringlog *log = tu_open(dir, &o);
	static char big[8192];
	/* Exactly at the limit: 32 + 4 + 4060 = 4096. */
	struct iovec iov = {big, 4060};
	assert_int_equal(RINGLOG_FRAME_BYTES(1, 4060), 4096);
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0);
	iov.iov_len = 4061;
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), -EMSGSIZE);
	assert_non_null(strstr(ringlog_last_error(), "max_batch_bytes"));
	/* Many small records add up too (each costs 4 bytes of length). */
	struct iovec many[1100];
	for (int i = 0; i < 1100; i++)
		many[i] = (struct iovec){big, 0};
	assert_int_equal(ringlog_append(log, many, 1100, NULL), -EMSGSIZE);
	/* A record longer than 4 GiB must not wrap a 32-bit length, nor a huge one the
	 * 64-bit sum. */
	iov.iov_len = (size_t)1 << 32;
	assert_int_equal(ringlog_try_append(log, &iov, 1, NULL), -EMSGSIZE);
	struct iovec two[2] = {{big, 8}, {big, SIZE_MAX}};
	assert_int_equal(ringlog_append(log, two, 2, NULL), -EMSGSIZE);
	two[1].iov_len = SIZE_MAX - 40;
	assert_int_equal(ringlog_append(log, two, 2, NULL), -EMSGSIZE);
	assert_int_equal(ringlog_next_lsn(log), 2); /* failed calls took no LSN */
	assert_int_equal(ringlog_close(log), 0);
}

/* Records full of frame and pad magics, through a small ring that wraps many
 * times: stale bytes must never be taken for a published frame. */
static void records_that_look_like_frames(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 1 << 20, 8192);
	struct ringlog *log = tu_open(dir, &o);
	static uint8_t rec[1500];
	for (size_t i = 0; i + 8 <= sizeof(rec); i += 4) {
		memcpy(rec + i, i % 8 ? "RPAD" : "RLFR", 4);
		rec[i + 4] = 64; /* a plausible length right after */
	}
	uint64_t last = 0;
	for (int i = 0; i < 400; i++) {
		struct iovec iov = {rec + i % 8, sizeof(rec) - 8};
		assert_int_equal(ringlog_append(log, &iov, 1, &last), 0);
		assert_true(ringlog_durable_lsn(log) <= last);
		if (i % 50 == 49)
			assert_int_equal(ringlog_wait(log, last), 0);
	}
	assert_int_equal(ringlog_wait(log, last), 0);
	assert_int_equal(ringlog_durable_lsn(log), last);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record x;
	uint64_t n = 0;
	while (ringlog_reader_next(r, &x) == 1) {
		assert_int_equal(x.len, sizeof(rec) - 8);
		assert_memory_equal(x.data, rec + n % 8, x.len);
		n++;
	}
	ringlog_reader_close(r);
	assert_int_equal(n, 400);
}

static void second_writer_gets_ebusy(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL), *other = NULL;
	assert_int_equal(ringlog_open(dir, NULL, &other), -EBUSY);
	assert_null(other);
	assert_non_null(strstr(ringlog_last_error(), "another writer"));
	/* The refused open must not have disturbed the first. */
	tu_append_tagged(log, 1, 1, 64);
	assert_int_equal(ringlog_wait(log, 1), 0);
	assert_int_equal(ringlog_close(log), 0);
	log = tu_open(dir, NULL); /* released on close */
	assert_int_equal(ringlog_close(log), 0);
}

static void not_a_directory_and_missing(void **state)
{
	const char *dir = *state;
	char *file = strdup(tu_path(dir, "plain-file"));
	int fd = open(file, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	struct ringlog *log;
	assert_int_equal(ringlog_open(file, NULL, &log), -ENOTDIR);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(file, 0, &r), -ENOTDIR);
	free(file);
	struct ringlog_options o;
	ringlog_options_init(&o);
	o.create_if_missing = 0;
	char *missing = strdup(tu_path(dir, "nope"));
	assert_int_equal(ringlog_open(missing, &o, &log), -ENOENT);
	assert_int_equal(ringlog_reader_open(missing, 0, &r), -ENOENT);
	free(missing);
	/* An empty directory has no log to read. */
	assert_int_equal(ringlog_reader_open(dir, 0, &r), -ENOENT);
}

/* A submit hook that holds the consumer until released: the ring fills up. */
static sem_t gate;
static _Atomic int gate_armed;
static int hold_submit(void *arg)
{
	(void)arg;
	if (atomic_load(&gate_armed))
		sem_wait(&gate);
	return 0;
}

/* Open a log whose consumer stops at its first submission until release_held():
 * appends then stay in the ring.  ring_bytes 0: the default ring. */
static struct ringlog *open_held(const char *dir, uint32_t ring_bytes)
{
	static struct rl_io_faults hold = {.submit = hold_submit};
	sem_init(&gate, 0, 0);
	atomic_store(&gate_armed, 1);
	rl_io_faults = &hold;
	struct ringlog_options o;
	if (ring_bytes)
		tu_options(&o, 1 << 20, ring_bytes);
	else
		ringlog_options_init(&o);
	return tu_open(dir, &o);
}

static void release_held(void)
{
	atomic_store(&gate_armed, 0);
	sem_post(&gate);
}

static void try_append_eagain_when_full(void **state)
{
	const char *dir = *state;
	struct ringlog *log = open_held(dir, 16384);
	static char rec[1000];
	struct iovec iov = {rec, sizeof(rec)};
	int n = 0, err;
	while ((err = ringlog_try_append(log, &iov, 1, NULL)) == 0)
		n++;
	assert_int_equal(err, -EAGAIN);
	assert_non_null(strstr(ringlog_last_error(), "full"));
	/* 16 KiB of ring, 1040-byte frames, the first taken by the held consumer. */
	assert_in_range(n, 14, 16);
	release_held();
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0); /* blocks until space */
	assert_int_equal(ringlog_wait(log, (uint64_t)n + 1), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t cnt, first, last;
	assert_int_equal(tu_read_all(dir, 0, &cnt, &first, &last, 0), 0);
	assert_int_equal(cnt, (uint64_t)n + 1);
	sem_destroy(&gate);
}

struct appender {
	struct ringlog *log;
	_Atomic int done;
	int err;
};

static void *append_one_big(void *arg)
{
	struct appender *a = arg;
	static char rec[6000];
	struct iovec iov = {rec, sizeof(rec)};
	a->err = ringlog_append(a->log, &iov, 1, NULL);
	atomic_store(&a->done, 1);
	return NULL;
}

static void append_blocks_while_full(void **state)
{
	const char *dir = *state;
	struct ringlog *log = open_held(dir, 16384);
	static char rec[6000];
	struct iovec iov = {rec, sizeof(rec)};
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0);
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), 0);
	struct appender a = {.log = log};
	pthread_t t;
	pthread_create(&t, NULL, append_one_big, &a);
	usleep(100 * 1000);
	assert_int_equal(atomic_load(&a.done), 0); /* blocked: no room for a third */
	release_held();
	pthread_join(t, NULL);
	assert_int_equal(a.err, 0);
	assert_int_equal(ringlog_wait(log, 3), 0);
	assert_int_equal(ringlog_close(log), 0);
	sem_destroy(&gate);
}

static void wait_timeout_expires_then_succeeds(void **state)
{
	const char *dir = *state;
	struct ringlog *log = open_held(dir, 0);
	uint64_t lsn = tu_append_tagged(log, 1, 1, 10);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ringlog_wait_timeout(log, lsn, 30 * 1000 * 1000), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(strstr(ringlog_last_error(), "not durable within"));
	int64_t waited = (t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec);
	assert_true(waited >= 30 * 1000 * 1000); /* it did wait, at least that long */
	assert_int_equal(ringlog_wait_timeout(log, lsn, 0), -ETIMEDOUT);
	release_held();
	assert_int_equal(ringlog_wait_timeout(log, lsn, 10ll * 1000 * 1000 * 1000), 0);
	assert_int_equal(ringlog_wait_timeout(log, lsn, 0), 0);
	assert_int_equal(ringlog_close(log), 0);
	sem_destroy(&gate);
}

static void event_fd_signals_durability(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	int efd = ringlog_event_fd(log);
	assert_true(efd >= 0);
	assert_int_equal(fcntl(efd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	uint64_t v;
	assert_int_equal(read(efd, &v, sizeof(v)), -1); /* nothing yet (non-blocking) */
	assert_int_equal(errno, EAGAIN);
	uint64_t lsn = tu_append_tagged(log, 9, 2, 32) + 1;
	struct pollfd p = {.fd = efd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_int_equal(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
	assert_true(v >= 1);
	/* Readable means "look again": the durable LSN moved. */
	assert_int_equal(ringlog_wait(log, lsn), 0);
	assert_true(ringlog_durable_lsn(log) >= lsn);
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(ringlog_close(log), 0);
}

static void close_drains_everything_queued(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 1 << 20, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	for (int i = 0; i < 2000; i++)
		tu_append_tagged(log, (uint64_t)i, 1 + i % 3, 40 + i % 50);
	uint64_t next = ringlog_next_lsn(log);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(last, next - 1);
	assert_int_equal(n, next - 1);
}

static void latency_profile_counts_and_resets(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	struct ringlog_latency lat;
	assert_int_equal(ringlog_latency(log, &lat, 0), -EINVAL); /* profiling is off */
	assert_int_equal(ringlog_latency_percentile(log, RINGLOG_STAGE_SYNC, 50), 0);
	assert_int_equal(ringlog_close(log), 0);

	struct ringlog_options o;
	ringlog_options_init(&o);
	o.profile = 1;
	log = tu_open(dir, &o);
	for (int i = 0; i < 20; i++) {
		uint64_t l = tu_append_tagged(log, (uint64_t)i, 2, 50) + 1;
		assert_int_equal(ringlog_wait(log, l), 0);
	}
	/* A group's stages are recorded just after its waiters wake: let the last settle. */
	struct ringlog_stats st;
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(ringlog_latency(log, &lat, 0), 0);
		ringlog_stats(log, &st);
		if (lat.stage[RINGLOG_STAGE_END_TO_END].count == 20)
			break;
		usleep(1000);
	}
	assert_int_equal(lat.stage[RINGLOG_STAGE_END_TO_END].count, 20);  /* one per batch */
	assert_int_equal(lat.stage[RINGLOG_STAGE_SYNC].count, st.groups); /* one per group */
	for (int i = 0; i < RINGLOG_STAGES; i++) {
		const struct ringlog_latency_stage *s = &lat.stage[i];
		assert_true(s->p50_ns <= s->p99_ns && s->p99_ns <= s->p999_ns &&
			    s->p999_ns <= s->max_ns);
	}
	/* A durable append includes an fdatasync: end to end is at least that long. */
	assert_true(lat.stage[RINGLOG_STAGE_END_TO_END].max_ns >=
		    lat.stage[RINGLOG_STAGE_SYNC].p50_ns);
	assert_true(lat.stage[RINGLOG_STAGE_SYNC].p50_ns > 0);
	uint64_t p50 = ringlog_latency_percentile(log, RINGLOG_STAGE_END_TO_END, 50);
	assert_int_equal(p50, lat.stage[RINGLOG_STAGE_END_TO_END].p50_ns);
	assert_int_equal(ringlog_latency(log, &lat, 1), 0); /* read and reset */
	assert_int_equal(ringlog_latency(log, &lat, 0), 0);
	assert_int_equal(lat.stage[RINGLOG_STAGE_END_TO_END].count, 0);
	assert_int_equal(ringlog_close(log), 0);
}

static void strerror_covers_codes(void **state)
{
	(void)state;
	int codes[] = {0,	 -EINVAL, -EMSGSIZE, -EAGAIN, -EBUSY,  -ENOTDIR, -ENOENT,
		       -EBADMSG, -ENOSYS, -EPERM,    -EIO,    -ENOSPC, -ENOMEM,	 -EROFS};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *s = ringlog_strerror(codes[i]);
		assert_non_null(s);
		assert_true(strlen(s) > 3);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, ringlog_strerror(codes[j]));
	}
	assert_non_null(strstr(ringlog_strerror(-ENOSYS), "io_uring"));
	assert_string_equal(ringlog_strerror(-99999), "unknown error code");
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(append_wait_reopen_continues_lsns, setup, teardown),
	    cmocka_unit_test_setup_teardown(records_read_back_exactly, setup, teardown),
	    cmocka_unit_test_setup_teardown(invalid_arguments, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_options, setup, teardown),
	    cmocka_unit_test_setup_teardown(batch_size_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(records_that_look_like_frames, setup, teardown),
	    cmocka_unit_test_setup_teardown(second_writer_gets_ebusy, setup, teardown),
	    cmocka_unit_test_setup_teardown(not_a_directory_and_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(try_append_eagain_when_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(append_blocks_while_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(wait_timeout_expires_then_succeeds, setup, teardown),
	    cmocka_unit_test_setup_teardown(event_fd_signals_durability, setup, teardown),
	    cmocka_unit_test_setup_teardown(close_drains_everything_queued, setup, teardown),
	    cmocka_unit_test_setup_teardown(latency_profile_counts_and_resets, setup, teardown),
	    cmocka_unit_test(strerror_covers_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
