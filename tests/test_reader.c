/* The reader: positioning, following a growing log, read-only, retention gaps. */
#include "testutil.h"

#include "uring_io.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void from_lsn_positions_inside_a_batch(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	for (int i = 0; i < 10; i++)
		tu_append_tagged(log, (uint64_t)i, 5, 40); /* LSNs 1..50 */
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 23, &n, &first, &last, 1), 0);
	assert_int_equal(first, 23);
	assert_int_equal(last, 50);
	assert_int_equal(tu_read_all(dir, 1, &n, &first, &last, 1), 0);
	assert_int_equal(n, 50);
	assert_int_equal(tu_read_all(dir, 50, &n, &first, &last, 1), 0);
	assert_int_equal(n, 1);
	assert_int_equal(tu_read_all(dir, 51, &n, &first, &last, 1), 0);
	assert_int_equal(n, 0); /* past the end: nothing (yet) */
}

static void follows_a_growing_log_across_rotations(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	uint64_t l = tu_append_tagged(log, 1, 2, 100) + 1;
	assert_int_equal(ringlog_wait(log, l), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	uint64_t seen = 0;
	while (ringlog_reader_next(r, &rec) == 1)
		seen++;
	assert_int_equal(seen, 2);
	for (int round = 0; round < 20; round++) {
		l = tu_append_tagged(log, (uint64_t)round, 3, 500) + 2;
		assert_int_equal(ringlog_wait(log, l), 0);
		while (ringlog_reader_next(r, &rec) == 1) {
			seen++;
			assert_int_equal(rec.lsn, seen);
			assert_true(tu_record_ok(rec.data, rec.len));
		}
		assert_int_equal(seen, l); /* caught up, segment after segment */
	}
	ringlog_reader_close(r);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t *lsns;
	assert_true(tu_segments(dir, &lsns) > 5);
	free(lsns);
}

static void never_modifies_files_even_with_torn_tail(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	for (int i = 0; i < 5; i++)
		tu_append_tagged(log, (uint64_t)i, 2, 300);
	assert_int_equal(ringlog_close(log), 0);
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
	uint64_t size = tu_data_end(path);
	tu_truncate(path, size - 50); /* a torn last batch */
	char *before = malloc(size);
	int fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, before, size), (ssize_t)(size - 50));
	close(fd);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, 8); /* the torn batch is not returned */
	assert_int_equal(tu_file_size(path), size - 50);
	char *after = malloc(size);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, after, size), (ssize_t)(size - 50));
	close(fd);
	assert_memory_equal(before, after, size - 50);
	free(before);
	free(after);
}

static void removed_segments_are_a_clear_error(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	for (int i = 0; i < 20; i++) {
		uint64_t l = tu_append_tagged(log, (uint64_t)i, 2, 400) + 1;
		assert_int_equal(ringlog_wait(log, l), 0);
	}
	assert_int_equal(ringlog_close(log), 0);
	uint64_t *lsns;
	assert_true(tu_segments(dir, &lsns) >= 3);
	uint64_t kept = lsns[1];
	assert_int_equal(unlink(tu_path(dir, "00000000000000000001.rlog")), 0);
	free(lsns);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 2, &r), -ENOENT);
	assert_non_null(strstr(ringlog_last_error(), "retention"));
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(first, kept); /* "from the beginning" = the first record kept */
	assert_int_equal(last, 40);
}

/* A log whose only segment is a torn creation is empty to a reader, not damaged; it
 * sees the first records once a writer has repaired it and appended. */
static void only_segment_torn_at_creation_reads_as_empty(void **state)
{
	const char *dir = *state;
	FILE *f = fopen(tu_path(dir, "00000000000000000001.rlog"), "w");
	assert_non_null(f);
	fputs("torn", f);
	fclose(f);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(r, &rec), 0);
	struct ringlog *log = tu_open(dir, NULL); /* repairs the header */
	uint64_t l = tu_append_tagged(log, 1, 2, 30) + 1;
	assert_int_equal(ringlog_wait(log, l), 0);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, 1);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(ringlog_reader_next(r, &rec), 0);
	ringlog_reader_close(r);
	assert_int_equal(ringlog_close(log), 0);
}

/* A completion hook that holds each fdatasync completion until released. */
static sem_t held, arrived;
static _Atomic int holding;
static int hold_fsync(void *arg, enum rl_io_op op, int res, uint32_t len)
{
	(void)arg;
	(void)len;
	if (op == RL_IO_FSYNC && atomic_load(&holding)) {
		sem_post(&arrived);
		sem_wait(&held);
	}
	return res;
}

static void live_reader_returns_only_durable_records(void **state)
{
	const char *dir = *state;
	sem_init(&held, 0, 0);
	sem_init(&arrived, 0, 0);
	static struct rl_io_faults hooks = {.complete = hold_fsync};
	rl_io_faults = &hooks;
	struct ringlog *log = tu_open(dir, NULL);
	struct ringlog_reader *live, *plain;
	assert_int_equal(ringlog_reader_open_live(log, 0, &live), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(live, &rec), 0);
	assert_int_equal(ringlog_reader_wait(live, 10 * 1000 * 1000), -ETIMEDOUT);
	atomic_store(&holding, 1);
	uint64_t l = tu_append_tagged(log, 1, 3, 200) + 2;
	sem_wait(&arrived); /* written and synced by the kernel, completion held */
	/* The bytes are in the file: a plain reader sees them... */
	assert_int_equal(ringlog_reader_open(dir, 0, &plain), 0);
	assert_int_equal(ringlog_reader_next(plain, &rec), 1);
	ringlog_reader_close(plain);
	/* ...but they are not durable yet as far as the log knows: the live one waits. */
	assert_int_equal(ringlog_durable_lsn(log), 0);
	assert_int_equal(ringlog_reader_next(live, &rec), 0);
	assert_int_equal(ringlog_reader_wait(live, 10 * 1000 * 1000), -ETIMEDOUT);
	atomic_store(&holding, 0);
	sem_post(&held);
	assert_int_equal(ringlog_reader_wait(live, 10ll * 1000 * 1000 * 1000), 0);
	for (uint64_t i = 1; i <= 3; i++) {
		assert_int_equal(ringlog_reader_next(live, &rec), 1);
		assert_int_equal(rec.lsn, i);
		assert_true(tu_record_ok(rec.data, rec.len));
	}
	assert_int_equal(ringlog_reader_next(live, &rec), 0);
	assert_true(ringlog_durable_lsn(log) >= l);
	ringlog_reader_close(live);
	assert_int_equal(ringlog_close(log), 0);
	rl_io_faults = NULL;
	sem_destroy(&held);
	sem_destroy(&arrived);
}

struct follower {
	struct ringlog *log;
	uint64_t want, seen;
	int bad;
};

static void *follow_live(void *arg)
{
	struct follower *f = arg;
	struct ringlog_reader *r;
	if (ringlog_reader_open_live(f->log, 0, &r)) {
		f->bad = 1;
		return NULL;
	}
	struct ringlog_record rec;
	while (f->seen < f->want) {
		int got = ringlog_reader_next(r, &rec);
		if (got < 0 ||
		    (got == 1 && (rec.lsn != f->seen + 1 || rec.lsn > ringlog_durable_lsn(f->log) ||
				  !tu_record_ok(rec.data, rec.len)))) {
			f->bad = 1;
			break;
		}
		if (got == 1)
			f->seen++;
		else if (ringlog_reader_wait(r, 5ll * 1000 * 1000 * 1000) != 0) {
			f->bad = 1;
			break;
		}
	}
	ringlog_reader_close(r);
	return NULL;
}

static void live_reader_follows_appends_across_rotations(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 8192, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	struct follower f = {.log = log, .want = 600};
	pthread_t t;
	pthread_create(&t, NULL, follow_live, &f);
	for (int i = 0; i < 200; i++)
		tu_append_tagged(log, (uint64_t)i, 3, 100 + i % 50);
	pthread_join(t, NULL);
	assert_int_equal(f.bad, 0);
	assert_int_equal(f.seen, 600);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	assert_int_equal(ringlog_reader_wait(r, 0), -EINVAL); /* not a live reader */
	ringlog_reader_close(r);
	assert_int_equal(ringlog_close(log), 0);
}

/* Closing a log while a live reader of it is open is refused with -EBUSY, and the
 * log stays usable: appends, waits and the reader go on; once the readers are
 * closed, the close succeeds. */
static void close_with_a_live_reader_is_busy(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	struct ringlog_reader *a, *b;
	assert_int_equal(ringlog_reader_open_live(log, 0, &a), 0);
	assert_int_equal(ringlog_reader_open_live(log, 0, &b), 0);
	assert_int_equal(ringlog_close(log), -EBUSY);
	assert_non_null(strstr(ringlog_last_error(), "2 live readers"));
	uint64_t lsn = tu_append_tagged(log, 7, 2, 50);
	assert_int_equal(ringlog_wait(log, lsn + 1), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(a, &rec), 1);
	assert_int_equal(rec.lsn, lsn);
	ringlog_reader_close(a);
	assert_int_equal(ringlog_close(log), -EBUSY);
	assert_non_null(strstr(ringlog_last_error(), "1 live reader of"));
	ringlog_reader_close(b);
	assert_int_equal(ringlog_close(log), 0);
	/* What was appended while the close was refused is in the log. */
	uint64_t count = 0, first = 0, last = 0;
	assert_int_equal(tu_read_all(dir, 0, &count, &first, &last, 1), 0);
	assert_int_equal(count, 2);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(from_lsn_positions_inside_a_batch),
	    TU_DIR_TEST(follows_a_growing_log_across_rotations),
	    TU_DIR_TEST(never_modifies_files_even_with_torn_tail),
	    TU_DIR_TEST(removed_segments_are_a_clear_error),
	    TU_DIR_TEST(only_segment_torn_at_creation_reads_as_empty),
	    TU_DIR_TEST(live_reader_returns_only_durable_records),
	    TU_DIR_TEST(live_reader_follows_appends_across_rotations),
	    TU_DIR_TEST(close_with_a_live_reader_is_busy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
