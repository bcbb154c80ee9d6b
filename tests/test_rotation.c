/*
 * Rotation with small segments, checked from the files themselves: every segment
 * holds whole frames only (no batch crosses a file), starts at the LSN in its name,
 * chains to its predecessor, never passes the cap (but for a batch larger than a
 * segment, alone in its own), and is closed only when the next batch did not fit.
 */
#include "testutil.h"

#include "format.h"
#include "segment.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Walk every segment with the format's own scanner; returns the records seen. */
static uint64_t check_segments(const char *dir, uint64_t cap, size_t *nseg)
{
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	uint64_t expect = lsns[0], records = 0, log_id = 0, prev_end = 0, first_len = 0;
	uint32_t prev_crc = 0;
	for (size_t i = 0; i < n; i++) {
		int fd = open(tu_segment_path(dir, lsns[i]), O_RDONLY);
		assert_true(fd >= 0);
		struct rl_seg_header h;
		uint64_t size;
		assert_int_equal(rl_seg_read_header(fd, &h, &size), 0);
		assert_int_equal(h.first_lsn, lsns[i]);
		assert_int_equal(h.first_lsn, expect); /* dense across files */
		if (i == 0)
			log_id = h.log_id;
		assert_int_equal(h.log_id, log_id);
		if (i > 0)
			assert_int_equal(h.prev_tail_crc, prev_crc);
		struct rl_seg_scan s;
		assert_int_equal(rl_scan_init(&s, fd, &h), 0);
		enum rl_frame_status why;
		uint64_t frames = 0;
		while (rl_scan_next(&s, &why) == 1) {
			if (s.info.pad)
				continue;
			frames++;
			records += s.info.nrecs;
			prev_crc = s.info.crc;
			if (first_len == 0)
				first_len = s.info.frame_len;
		}
		/* Whole frames, then the end: a sealed segment ends exactly at its last
		 * frame.  The last one is a prepared file, longer: after its last frame
		 * come the bytes an aligned write carried, then zeros, which recovery
		 * finds clean. */
		if (i + 1 < n) {
			assert_int_equal(why, RL_FRAME_END);
			assert_int_equal(s.off, size);
		} else {
			uint64_t torn_end;
			assert_int_equal(rl_seg_torn_tail(fd, log_id, s.off, s.expect_lsn, &torn_end), 0);
		}
		if (i > 0) {
			/* The previous one was closed because this one's first batch did not
			 * fit in it. */
			assert_true(prev_end + first_len > cap);
		}
		if (i + 1 < n) {
			assert_true(frames > 0);
			assert_true(s.off <= cap || frames == 1); /* never past the cap */
		}
		prev_end = s.off;
		first_len = 0;
		expect = s.expect_lsn;
		rl_scan_free(&s);
		close(fd);
	}
	free(lsns);
	*nseg = n;
	return records;
}

struct worker {
	struct ringlog *log;
	unsigned id;
	int err;
};

static void *append_mix(void *arg)
{
	struct worker *w = arg;
	uint8_t buf[8 * 400];
	struct iovec iov[8];
	for (unsigned b = 0; b < 300 && !w->err; b++) {
		unsigned nrecs = 1 + (b + w->id) % 8;
		for (unsigned r = 0; r < nrecs; r++) {
			unsigned len = 17 + (b * 31 + r * 7 + w->id) % 380;
			iov[r].iov_base = buf + r * 400;
			iov[r].iov_len = len;
			tu_fill_record(iov[r].iov_base, len, (uint64_t)w->id << 32 | b, r);
		}
		uint64_t first;
		w->err = ringlog_append(w->log, iov, nrecs, &first);
		if (!w->err && b % 7 == 0)
			w->err = ringlog_wait(w->log, first + nrecs - 1);
	}
	return NULL;
}

static void threads_with_small_segments_at_depth(const char *dir, unsigned depth)
{
	struct ringlog_options o;
	tu_options(&o, 8192, 1 << 18);
	o.pipeline_depth = depth;
	struct ringlog *log = tu_open(dir, &o);
	struct worker w[4];
	pthread_t t[4];
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){log, i, 0};
		pthread_create(&t[i], NULL, append_mix, &w[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].err, 0);
	}
	uint64_t next = ringlog_next_lsn(log);
	assert_int_equal(ringlog_close(log), 0);
	size_t nseg;
	assert_int_equal(check_segments(dir, 8192, &nseg), next - 1);
	assert_true(nseg > 10);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, next - 1);
	/* Reopen appends after the last segment and the files still check out. */
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_next_lsn(log), next);
	tu_append_tagged(log, 5, 3, 3000);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(check_segments(dir, 8192, &nseg), next + 2);
}

static void threads_with_small_segments(void **state)
{
	threads_with_small_segments_at_depth(*state, 1);
}

static void threads_with_small_segments_pipelined(void **state)
{
	threads_with_small_segments_at_depth(*state, 4);
}

static void batch_larger_than_a_segment_stays_whole(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	struct ringlog *log = tu_open(dir, &o);
	uint64_t a = tu_append_tagged(log, 1, 4, 5000) + 3; /* 20 KiB batch, 4 KiB cap */
	assert_int_equal(ringlog_wait(log, a), 0);
	uint64_t b = tu_append_tagged(log, 2, 1, 10);
	assert_int_equal(ringlog_wait(log, b), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t *lsns;
	assert_int_equal(tu_segments(dir, &lsns), 2);
	assert_int_equal(lsns[1], b); /* the big batch alone filled the first */
	const char *first = tu_path(dir, "00000000000000000001.rlog");
	assert_int_equal(tu_file_size(first), tu_data_start(first) + RINGLOG_FRAME_BYTES(4, 20000));
	free(lsns);
	size_t nseg;
	assert_int_equal(check_segments(dir, 4096, &nseg), 5);
}

/* A segment already past a smaller cap takes no more batches: the next one starts a
 * segment (when it comes). */
static void reopen_with_smaller_cap_rotates_before_the_next_batch(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	uint64_t a = tu_append_tagged(log, 1, 10, 1000) + 9;
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_options o;
	tu_options(&o, 4096, 1 << 16);
	log = tu_open(dir, &o);
	uint64_t b = tu_append_tagged(log, 2, 1, 10);
	assert_int_equal(b, a + 1);
	assert_int_equal(ringlog_wait(log, b), 0);
	uint64_t *lsns;
	assert_int_equal(tu_segments(dir, &lsns), 2);
	assert_int_equal(lsns[1], b);
	free(lsns);
	assert_int_equal(ringlog_close(log), 0);
	size_t nseg;
	assert_int_equal(check_segments(dir, 4096, &nseg), b);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(threads_with_small_segments),
	    TU_DIR_TEST(threads_with_small_segments_pipelined),
	    TU_DIR_TEST(batch_larger_than_a_segment_stays_whole),
	    TU_DIR_TEST(reopen_with_smaller_cap_rotates_before_the_next_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
