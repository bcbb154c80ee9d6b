/*
 * Many appending threads and a live reader at once.  Afterwards every batch is in
 * the log exactly once, whole, with consecutive LSNs, in each thread's own order;
 * the live reader never saw a record that was not whole.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 8, BATCHES = 400, MAXREC = 6 };

struct worker {
	struct ringlog *log;
	unsigned id;
	uint64_t first_lsn[BATCHES];
	int err;
};

static void *append_batches(void *arg)
{
	struct worker *w = arg;
	uint8_t buf[MAXREC * 256];
	struct iovec iov[MAXREC];
	for (unsigned b = 0; b < BATCHES && !w->err; b++) {
		unsigned nrecs = 1 + (b * 3 + w->id) % MAXREC;
		for (unsigned r = 0; r < nrecs; r++) {
			iov[r].iov_base = buf + r * 256;
			iov[r].iov_len = 20 + (b + r * 11 + w->id * 5) % 230;
			tu_fill_record(iov[r].iov_base, (unsigned)iov[r].iov_len,
				       (uint64_t)w->id << 32 | b, r);
		}
		w->err = ringlog_append(w->log, iov, nrecs, &w->first_lsn[b]);
		if (!w->err && b % 10 == 9)
			w->err = ringlog_wait(w->log, w->first_lsn[b] + nrecs - 1);
	}
	return NULL;
}

struct live {
	const char *dir;
	_Atomic int stop;
	uint64_t seen;
	int bad;
};

/* Follow the log while it is written: only whole, checkable records, dense LSNs. */
static void *follow(void *arg)
{
	struct live *l = arg;
	struct ringlog_reader *r = NULL;
	if (ringlog_reader_open(l->dir, 0, &r)) {
		l->bad = 1;
		return NULL;
	}
	struct ringlog_record rec;
	uint64_t expect = 1;
	for (;;) {
		int stop = atomic_load(&l->stop);
		int got = ringlog_reader_next(r, &rec);
		if (got < 0) {
			fprintf(stderr, "live reader: %s: %s\n", ringlog_strerror(got),
				ringlog_last_error());
			l->bad = 1;
			break;
		}
		if (got == 0) {
			if (stop)
				break; /* one full pass after the writers finished */
			continue;
		}
		if (rec.lsn != expect++ || !tu_record_ok(rec.data, rec.len)) {
			l->bad = 1;
			break;
		}
		l->seen++;
	}
	ringlog_reader_close(r);
	return NULL;
}

static void run_threads_and_live_reader(unsigned depth, uint32_t ring)
{
	char *dir = tu_tmpdir();
	struct ringlog_options o;
	tu_options(&o, 256 << 10, ring);
	o.pipeline_depth = depth;
	struct ringlog *log = tu_open(dir, &o);
	static struct worker w[THREADS];
	pthread_t t[THREADS], rt;
	struct live l = {.dir = dir};
	pthread_create(&rt, NULL, follow, &l);
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.log = log, .id = i};
		pthread_create(&t[i], NULL, append_batches, &w[i]);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].err, 0);
	}
	uint64_t next = ringlog_next_lsn(log);
	assert_int_equal(ringlog_wait(log, next - 1), 0);
	atomic_store(&l.stop, 1);
	pthread_join(rt, NULL);
	assert_int_equal(l.bad, 0);
	assert_int_equal(l.seen, next - 1); /* the follower caught up with everything */
	assert_int_equal(ringlog_close(log), 0);

	/* Every batch once, whole, in each thread's order, at the LSN append returned. */
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	uint64_t count = 0;
	static uint8_t seen[THREADS][BATCHES];
	memset(seen, 0, sizeof(seen));
	int got;
	while ((got = ringlog_reader_next(r, &rec)) == 1) {
		count++;
		assert_true(tu_record_ok(rec.data, rec.len));
		const uint8_t *p = rec.data;
		uint64_t tag = 0;
		uint32_t idx = 0;
		for (int k = 0; k < 8; k++)
			tag |= (uint64_t)p[k] << (8 * k);
		for (int k = 0; k < 4; k++)
			idx |= (uint32_t)p[8 + k] << (8 * k);
		unsigned id = (unsigned)(tag >> 32), b = (unsigned)tag;
		assert_true(id < THREADS && b < BATCHES);
		assert_int_equal(rec.lsn, w[id].first_lsn[b] + idx);
		assert_int_equal(rec.batch_first_lsn, w[id].first_lsn[b]);
		assert_int_equal(rec.batch_nrecs, 1 + (b * 3 + id) % MAXREC);
		if (idx == 0) {
			assert_int_equal(seen[id][b], 0);
			seen[id][b] = 1;
			if (b > 0) /* each thread's batches in its own order */
				assert_true(w[id].first_lsn[b] > w[id].first_lsn[b - 1]);
		}
	}
	assert_int_equal(got, 0);
	ringlog_reader_close(r);
	assert_int_equal(count, next - 1);
	for (unsigned i = 0; i < THREADS; i++)
		for (unsigned b = 0; b < BATCHES; b++)
			assert_int_equal(seen[i][b], 1);
	tu_rmrf(dir);
	free(dir);
}

static void threads_and_live_reader(void **state)
{
	(void)state;
	run_threads_and_live_reader(1, 1 << 18);
}

/* Several groups in flight, in a ring small enough that they often cover all of it
 * and wrap: frames still in flight must never be taken again. */
static void threads_pipelined_small_ring(void **state)
{
	(void)state;
	run_threads_and_live_reader(4, 16384);
	run_threads_and_live_reader(8, 8192);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(threads_and_live_reader),
	    cmocka_unit_test(threads_pipelined_small_ring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
