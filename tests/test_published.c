/* The durable LSN published for other processes (the LOCK file) and the readers that
 * stop at it (RINGLOG_READ_DURABLE). */
#include "testutil.h"

#include "format.h"
#include "published.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOCK_DURABLE_OFF 16

/* Store `lsn` as the published value, with a matching check word unless `bad_check`. */
static void write_published(const char *dir, uint64_t lsn, int bad_check)
{
	uint8_t b[16];
	rl_put64(b, lsn);
	rl_put64(b + 8, bad_check ? lsn : ~lsn);
	tu_write_at(tu_path(dir, "LOCK"), LOCK_DURABLE_OFF, b, sizeof(b));
}

/* Records a RINGLOG_READ_DURABLE reader returns from the start (0 at the end). */
static uint64_t count_durable(const char *dir)
{
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open_ex(dir, 0, RINGLOG_READ_DURABLE, &r), 0);
	struct ringlog_record rec;
	uint64_t n = 0;
	int got;
	while ((got = ringlog_reader_next(r, &rec)) == 1) {
		assert_int_equal(rec.lsn, n + 1);
		n++;
	}
	assert_int_equal(got, 0);
	ringlog_reader_close(r);
	return n;
}

static void writer_publishes_each_durable_lsn(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t d, id;
	assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
	assert_int_equal(d, 0);
	assert_int_equal(id, ringlog_log_id(log));
	for (int i = 0; i < 20; i++) {
		uint64_t last = tu_append_tagged(log, (uint64_t)i, 3, 100) + 2;
		assert_int_equal(ringlog_wait(log, last), 0);
		assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
		/* Published after the fdatasync, before or right after the waiter wakes. */
		for (int spin = 0; d < last && spin < 1000; spin++) {
			usleep(100);
			assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
		}
		assert_int_equal(d, last);
	}
	assert_int_equal(ringlog_close(log), 0);
	/* With no writer it keeps saying where the last one stopped, and a reopen agrees. */
	assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
	assert_int_equal(d, 60);
	log = tu_open(dir, NULL);
	assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
	assert_int_equal(d, 60);
	assert_int_equal(id, ringlog_log_id(log));
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(count_durable(dir), 60);
}

static void durable_reader_stops_at_the_published_lsn(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	for (int i = 0; i < 10; i++)
		tu_append_tagged(log, (uint64_t)i, 2, 64);
	assert_int_equal(ringlog_close(log), 0);
	/* As if the writer had synced only up to 7 when it stopped: the records past it
	 * are in the file, and a plain reader returns them; a durable reader does not. */
	write_published(dir, 7, 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, 20);
	/* Batches come whole: 7..8 is not all durable. */
	assert_int_equal(count_durable(dir), 6);
	write_published(dir, 8, 0);
	assert_int_equal(count_durable(dir), 8);
	/* Its wait says so rather than returning more. */
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open_ex(dir, 8, RINGLOG_READ_DURABLE, &r), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, 8);
	assert_int_equal(ringlog_reader_next(r, &rec), 0);
	assert_int_equal(ringlog_reader_wait(r, 20 * 1000 * 1000), -ETIMEDOUT);
	write_published(dir, 20, 0);
	assert_int_equal(ringlog_reader_wait(r, 1000 * 1000 * 1000), 0);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, 9);
	ringlog_reader_close(r);
}

static void a_value_that_does_not_check_out_is_not_used(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	for (int i = 0; i < 5; i++)
		tu_append_tagged(log, (uint64_t)i, 1, 64);
	assert_int_equal(ringlog_close(log), 0);
	/* A damaged value (its check word disagrees) is never taken: the reader falls back
	 * to the last good value it saw, none here, so it returns nothing. */
	write_published(dir, 5, 1);
	assert_int_equal(count_durable(dir), 0);
	write_published(dir, 5, 0);
	assert_int_equal(count_durable(dir), 5);
}

static void another_logs_lock_bounds_nothing(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	tu_append_tagged(log, 1, 4, 64);
	assert_int_equal(ringlog_close(log), 0);
	/* The LOCK names another log id (copied in from elsewhere): nothing is durable
	 * as far as this reader can tell. */
	uint8_t id[8];
	rl_put64(id, 0x1234);
	tu_write_at(tu_path(dir, "LOCK"), 8, id, sizeof(id));
	assert_int_equal(count_durable(dir), 0);
}

static void missing_empty_or_foreign_lock_is_reported(void **state)
{
	const char *dir = *state;
	uint64_t d, id;
	struct ringlog_reader *r = NULL;
	/* No log at all. */
	assert_int_equal(ringlog_published_durable(dir, &d, &id), -ENOENT);
	struct ringlog *log = tu_open(dir, NULL);
	tu_append_tagged(log, 1, 1, 8);
	assert_int_equal(ringlog_close(log), 0);
	/* An empty LOCK: what a writer before this version left. */
	tu_truncate(tu_path(dir, "LOCK"), 0);
	assert_int_equal(ringlog_published_durable(dir, &d, &id), -ENOENT);
	assert_non_null(strstr(ringlog_last_error(), "no writer of this version"));
	assert_int_equal(ringlog_reader_open_ex(dir, 0, RINGLOG_READ_DURABLE, &r), -ENOENT);
	assert_null(r);
	/* Something else in it. */
	char junk[64];
	memset(junk, '.', sizeof(junk));
	memcpy(junk, "not a ringlog LOCK file", 23);
	tu_write_at(tu_path(dir, "LOCK"), 0, junk, sizeof(junk));
	assert_int_equal(ringlog_published_durable(dir, &d, &id), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "does not hold a durable LSN"));
	assert_int_equal(ringlog_reader_open_ex(dir, 0, RINGLOG_READ_DURABLE, &r), -EBADMSG);
	/* Too short to hold the layout. */
	tu_truncate(tu_path(dir, "LOCK"), 20);
	assert_int_equal(ringlog_published_durable(dir, &d, &id), -EBADMSG);
	/* The next writer rewrites it. */
	log = tu_open(dir, NULL);
	assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
	assert_int_equal(d, 1);
	assert_int_equal(ringlog_close(log), 0);
	/* Bad arguments. */
	assert_int_equal(ringlog_reader_open_ex(dir, 0, 0x80, &r), -EINVAL);
	assert_int_equal(ringlog_published_durable(dir, NULL, &id), -EINVAL);
}

static void plain_reader_cannot_wait(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open_ex(dir, 0, 0, &r), 0);
	assert_int_equal(ringlog_reader_wait(r, 0), -EINVAL);
	ringlog_reader_close(r);
}

/* The writer in a child process; the parent follows it with a durable reader, waking
 * on what the child publishes. */
static void follows_a_writer_in_another_process(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	tu_append_tagged(log, 0, 1, 64);
	assert_int_equal(ringlog_close(log), 0);
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		struct ringlog *w;
		if (ringlog_open(dir, NULL, &w))
			_exit(2);
		char c;
		/* One batch per byte from the parent; 'q' closes. */
		uint64_t tag = 1;
		while (read(go[0], &c, 1) == 1 && c != 'q') {
			uint8_t rec[64];
			tu_fill_record(rec, sizeof(rec), tag++, 0);
			struct iovec v = {rec, sizeof(rec)};
			uint64_t lsn;
			if (ringlog_append(w, &v, 1, &lsn) || ringlog_wait(w, lsn))
				_exit(3);
		}
		_exit(ringlog_close(w) ? 4 : 0);
	}
	close(go[0]);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open_ex(dir, 0, RINGLOG_READ_DURABLE, &r), 0);
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(ringlog_reader_next(r, &rec), 0);
	for (uint64_t want = 2; want <= 30; want++) {
		assert_int_equal(write(go[1], "a", 1), 1);
		/* Woken by the publication (inotify), well within the limit. */
		int err = ringlog_reader_wait(r, 10ll * 1000 * 1000 * 1000);
		if (err)
			fail_msg("waiting for LSN %" PRIu64 ": %s (%s)", want, ringlog_strerror(err),
				 ringlog_last_error());
		assert_int_equal(ringlog_reader_next(r, &rec), 1);
		assert_int_equal(rec.lsn, want);
		assert_true(tu_record_ok(rec.data, rec.len));
		assert_int_equal(ringlog_reader_next(r, &rec), 0);
	}
	assert_int_equal(write(go[1], "q", 1), 1);
	close(go[1]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	ringlog_reader_close(r);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(writer_publishes_each_durable_lsn),
	    TU_DIR_TEST(durable_reader_stops_at_the_published_lsn),
	    TU_DIR_TEST(a_value_that_does_not_check_out_is_not_used),
	    TU_DIR_TEST(another_logs_lock_bounds_nothing),
	    TU_DIR_TEST(missing_empty_or_foreign_lock_is_reported),
	    TU_DIR_TEST(plain_reader_cannot_wait),
	    TU_DIR_TEST(follows_a_writer_in_another_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
