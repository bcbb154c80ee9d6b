/* Copying a log frame by frame (ringlog_reader_next_frame, ringlog_init_dir,
 * ringlog_append_frame): the copy keeps the log's id, LSNs, batches and bytes. */
#include "testutil.h"

#include "format.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Copy every frame of `src` from `from` into the open log `dst`; returns the frames. */
static unsigned copy_frames(const char *src, uint64_t from, struct ringlog *dst)
{
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(src, from, &r), 0);
	struct ringlog_frame f;
	unsigned n = 0;
	int got;
	while ((got = ringlog_reader_next_frame(r, &f)) == 1) {
		uint64_t first;
		int err = ringlog_append_frame(dst, f.bytes, f.len, &first);
		if (err)
			fail_msg("append_frame at LSN %" PRIu64 ": %s (%s)", f.first_lsn,
				 ringlog_strerror(err), ringlog_last_error());
		assert_int_equal(first, f.first_lsn);
		n++;
	}
	assert_int_equal(got, 0);
	ringlog_reader_close(r);
	return n;
}

/* Every record of `a` from `from` equals `b`'s, batch boundaries included (b may hold
 * more after them). */
static void assert_same_records(const char *a, const char *b, uint64_t from, uint64_t count)
{
	struct ringlog_reader *ra, *rb;
	assert_int_equal(ringlog_reader_open(a, from, &ra), 0);
	assert_int_equal(ringlog_reader_open(b, from, &rb), 0);
	struct ringlog_record x, y;
	uint64_t n = 0;
	int ga;
	while ((ga = ringlog_reader_next(ra, &x)) == 1) {
		assert_int_equal(ringlog_reader_next(rb, &y), 1);
		assert_int_equal(x.lsn, y.lsn);
		assert_int_equal(x.len, y.len);
		assert_int_equal(x.batch_first_lsn, y.batch_first_lsn);
		assert_int_equal(x.batch_nrecs, y.batch_nrecs);
		assert_memory_equal(x.data, y.data, x.len);
		n++;
	}
	assert_int_equal(ga, 0);
	assert_int_equal(n, count);
	ringlog_reader_close(ra);
	ringlog_reader_close(rb);
}

static char *sibling(const char *dir, const char *name)
{
	char *p = malloc(4096);
	snprintf(p, 4096, "%s/%s", dir, name);
	return p;
}

static void a_copy_keeps_id_lsns_batches_and_bytes(void **state)
{
	const char *dir = *state;
	char *src = sibling(dir, "src"), *dst = sibling(dir, "dst");
	struct ringlog_options o;
	tu_options(&o, 8192, 1 << 16);
	struct ringlog *log = tu_open(src, &o);
	uint64_t total = 0;
	for (int i = 0; i < 40; i++) {
		unsigned k = 1 + (unsigned)i % 5;
		tu_append_tagged(log, (uint64_t)i, k, 50 + 37u * (unsigned)i);
		total += k;
	}
	uint64_t id = ringlog_log_id(log);
	assert_int_equal(ringlog_close(log), 0);

	assert_int_equal(ringlog_init_dir(dst, id, 1), 0);
	struct ringlog *copy = tu_open(dst, &o);
	assert_int_equal(ringlog_log_id(copy), id);
	assert_int_equal(ringlog_next_lsn(copy), 1);
	assert_int_equal(copy_frames(src, 1, copy), 40);
	assert_int_equal(ringlog_next_lsn(copy), total + 1);
	assert_int_equal(ringlog_wait(copy, total), 0);
	/* The copy goes on as a log of its own. */
	uint64_t more = tu_append_tagged(copy, 99, 2, 10);
	assert_int_equal(more, total + 1);
	assert_int_equal(ringlog_close(copy), 0);
	assert_same_records(src, dst, 1, total);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dst, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	assert_int_equal(rep.last_lsn, total + 2);
	free(src);
	free(dst);
}

static void a_copy_may_start_later(void **state)
{
	const char *dir = *state;
	char *src = sibling(dir, "src"), *dst = sibling(dir, "dst");
	struct ringlog *log = tu_open(src, NULL);
	for (int i = 0; i < 10; i++)
		tu_append_tagged(log, (uint64_t)i, 3, 100); /* LSNs 1..30, batches of 3 */
	uint64_t id = ringlog_log_id(log);
	assert_int_equal(ringlog_close(log), 0);
	/* From LSN 17: the frame holding it (16..18) comes whole. */
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(src, 17, &r), 0);
	struct ringlog_frame f;
	assert_int_equal(ringlog_reader_next_frame(r, &f), 1);
	assert_int_equal(f.first_lsn, 16);
	assert_int_equal(f.nrecs, 3);
	assert_int_equal(f.kind, RINGLOG_FRAME_BATCH);
	ringlog_reader_close(r);

	assert_int_equal(ringlog_init_dir(dst, id, 16), 0);
	struct ringlog *copy = tu_open(dst, NULL);
	assert_int_equal(ringlog_next_lsn(copy), 16);
	assert_int_equal(copy_frames(src, 16, copy), 5);
	assert_int_equal(ringlog_close(copy), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dst, 0, &n, &first, &last, 1), 0);
	assert_int_equal(first, 16);
	assert_int_equal(last, 30);
	assert_same_records(src, dst, 16, 15);
	free(src);
	free(dst);
}

static void holes_are_copied_as_holes(void **state)
{
	const char *dir = *state;
	char *src = sibling(dir, "src"), *dst = sibling(dir, "dst");
	struct ringlog *log = tu_open(src, NULL);
	tu_append_tagged(log, 1, 2, 64); /* 1..2 */
	/* LSNs 3..9 lost (what salvage writes over damage), then more records. */
	uint8_t hole[32];
	rl_hole_encode(hole, sizeof(hole), 7, 3, ringlog_log_id(log));
	uint64_t at;
	assert_int_equal(ringlog_append_frame(log, hole, sizeof(hole), &at), 0);
	assert_int_equal(at, 3);
	assert_int_equal(ringlog_next_lsn(log), 10);
	assert_int_equal(tu_append_tagged(log, 2, 1, 64), 10);
	uint64_t id = ringlog_log_id(log);
	assert_int_equal(ringlog_close(log), 0);

	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(src, 0, &r), 0);
	struct ringlog_frame f;
	assert_int_equal(ringlog_reader_next_frame(r, &f), 1);
	assert_int_equal(f.kind, RINGLOG_FRAME_BATCH);
	assert_int_equal(ringlog_reader_next_frame(r, &f), 1);
	assert_int_equal(f.kind, RINGLOG_FRAME_HOLE);
	assert_int_equal(f.first_lsn, 3);
	assert_int_equal(f.nrecs, 7);
	assert_int_equal(f.len, 32);
	assert_int_equal(ringlog_reader_next_frame(r, &f), 1);
	assert_int_equal(f.first_lsn, 10);
	assert_int_equal(ringlog_reader_next_frame(r, &f), 0);
	ringlog_reader_close(r);

	assert_int_equal(ringlog_init_dir(dst, id, 1), 0);
	struct ringlog *copy = tu_open(dst, NULL);
	assert_int_equal(copy_frames(src, 1, copy), 3);
	assert_int_equal(ringlog_close(copy), 0);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dst, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	assert_int_equal(rep.last_lsn, 10);
	assert_same_records(src, dst, 1, 3);
	free(src);
	free(dst);
}

static void append_frame_refuses_what_does_not_fit(void **state)
{
	const char *dir = *state;
	char *src = sibling(dir, "src"), *other = sibling(dir, "other");
	struct ringlog *log = tu_open(src, NULL);
	tu_append_tagged(log, 1, 2, 64);
	tu_append_tagged(log, 2, 2, 64);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_wait(log, 4), 0);
	assert_int_equal(ringlog_reader_open(src, 0, &r), 0);
	struct ringlog_frame f;
	assert_int_equal(ringlog_reader_next_frame(r, &f), 1);
	uint8_t frame[256];
	assert_true(f.len <= sizeof(frame));
	uint32_t len = f.len;
	memcpy(frame, f.bytes, len);
	ringlog_reader_close(r);

	/* Its own first frame again: not the next LSN. */
	uint64_t next = 0;
	assert_int_equal(ringlog_append_frame(log, frame, len, &next), -ESTALE);
	assert_int_equal(next, 5);
	assert_non_null(strstr(ringlog_last_error(), "the log's next is 5"));
	/* Damaged: one data bit. */
	frame[40] ^= 1;
	assert_int_equal(ringlog_append_frame(log, frame, len, NULL), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "not one valid frame"));
	frame[40] ^= 1;
	/* Cut short, or with bytes after it. */
	assert_int_equal(ringlog_append_frame(log, frame, len - 8, NULL), -EBADMSG);
	assert_int_equal(ringlog_append_frame(log, frame, len + 8, NULL), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "another length"));
	/* A pad, and a hole for no LSN. */
	uint8_t h[32];
	rl_pad_encode(h, 32, 5, ringlog_log_id(log));
	assert_int_equal(ringlog_append_frame(log, h, 32, NULL), -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), "pad"));
	rl_hole_encode(h, 32, 0, 5, ringlog_log_id(log));
	assert_int_equal(ringlog_append_frame(log, h, 32, NULL), -EBADMSG);
	assert_int_equal(ringlog_append_frame(log, NULL, 32, NULL), -EINVAL);
	/* Another log's frame. */
	struct ringlog *o = tu_open(other, NULL);
	assert_int_equal(ringlog_append_frame(o, frame, len, NULL), -EBADMSG);
	assert_int_equal(ringlog_close(o), 0);
	/* Larger than the log takes. */
	struct ringlog_options small;
	ringlog_options_init(&small);
	small.max_batch_bytes = 64;
	assert_int_equal(ringlog_close(log), 0);
	log = tu_open(src, &small);
	assert_true(len > 64);
	/* (Its LSN is stale too; the size is checked first.) */
	assert_int_equal(ringlog_append_frame(log, frame, len, NULL), -EMSGSIZE);
	/* Nothing of that reached the log. */
	assert_int_equal(ringlog_next_lsn(log), 5);
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(src, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	assert_int_equal(rep.last_lsn, 4);
	free(src);
	free(other);
}

static void next_frame_reads_whole_frames_only(void **state)
{
	const char *dir = *state;
	struct ringlog *log = tu_open(dir, NULL);
	tu_append_tagged(log, 1, 3, 64);
	tu_append_tagged(log, 2, 3, 64);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	struct ringlog_frame f;
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(ringlog_reader_next_frame(r, &f), -EINVAL);
	assert_non_null(strstr(ringlog_last_error(), "read whole"));
	ringlog_reader_close(r);
	/* Whole frames then records: the frame read is consumed. */
	assert_int_equal(ringlog_reader_open(dir, 0, &r), 0);
	assert_int_equal(ringlog_reader_next_frame(r, &f), 1);
	assert_int_equal(f.first_lsn, 1);
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	assert_int_equal(rec.lsn, 4);
	ringlog_reader_close(r);
	assert_int_equal(ringlog_reader_next_frame(NULL, &f), -EINVAL);
}

static void init_dir_refuses_a_log_or_bad_arguments(void **state)
{
	const char *dir = *state;
	char *a = sibling(dir, "a");
	assert_int_equal(ringlog_init_dir(a, 0, 1), -EINVAL);
	assert_int_equal(ringlog_init_dir(a, 7, 0), -EINVAL);
	assert_int_equal(ringlog_init_dir(a, 7, UINT64_MAX), -EINVAL);
	assert_int_equal(ringlog_init_dir(NULL, 7, 1), -EINVAL);
	assert_int_equal(ringlog_init_dir(a, 7, 100), 0);
	assert_int_equal(ringlog_init_dir(a, 7, 100), -EEXIST);
	assert_non_null(strstr(ringlog_last_error(), "already holds a log"));
	/* A file where the directory should be. */
	char *file = sibling(dir, "file");
	FILE *fp = fopen(file, "w");
	fclose(fp);
	assert_int_equal(ringlog_init_dir(file, 7, 1), -ENOTDIR);
	/* The empty copy opens, at the LSN it was made for, and holds nothing yet. */
	struct ringlog *log = tu_open(a, NULL);
	assert_int_equal(ringlog_log_id(log), 7);
	assert_int_equal(ringlog_next_lsn(log), 100);
	assert_int_equal(ringlog_durable_lsn(log), 99);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(a, 0, &n, &first, &last, 0), 0);
	assert_int_equal(n, 0);
	free(a);
	free(file);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(a_copy_keeps_id_lsns_batches_and_bytes),
	    TU_DIR_TEST(a_copy_may_start_later),
	    TU_DIR_TEST(holes_are_copied_as_holes),
	    TU_DIR_TEST(append_frame_refuses_what_does_not_fit),
	    TU_DIR_TEST(next_frame_reads_whole_frames_only),
	    TU_DIR_TEST(init_dir_refuses_a_log_or_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
