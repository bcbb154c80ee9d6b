/*
 * A real full disk, on ext4, xfs and btrfs made in image files and loop-mounted
 * (tests/fsimage.h; needs root and the mkfs tools, else the program is skipped).
 *
 * full_at_preparation_*: the log is open and its preparer has its files ready; then the
 * filesystem is filled so that no further segment file can be prepared, while the
 * current segment (and the files already prepared) still have room.  Appends are
 * acknowledged exactly until all of that room is used (counted, and compared with
 * what the segment layout says fits); the rotation after that fails the log with
 * -ENOSPC naming the segment preparation; nothing more becomes durable; close
 * returns -ENOSPC; a reopen while the disk is still full succeeds and fails again at
 * its first rotation; once the space is freed a reopen has every acknowledged batch
 * and the log goes on across several rotations, leaving no pool.*.tmp behind.
 *
 * full_during_burst_*: the disk fills while a burst of appends (no waits) is being
 * written: it is left with room for one more prepared file, which the log's preparer
 * takes at the first rotation, and once the burst is half-way through the next segment
 * another thread fills the filesystem to the last block, so a segment write can meet
 * ENOSPC too (on btrfs, copy-on-write makes even overwrites of prepared blocks
 * allocate).  Whatever fails, it fails with -ENOSPC, nothing acknowledged is lost, and
 * after the space is freed a reopen continues.
 *
 * Each runs with prepared_segments 1 and 2 (recycle_segments 0), one log directory each
 * on the same fresh filesystem.  Each case prints one line: what was acknowledged,
 * what failed, what the reopen on the full disk did.
 */
#include "testutil.h"

#include "fsimage.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
	SEG = 256 << 10, /* segment_bytes: a multiple of 4096, so the files are this size */
	FRAME = 4096,	 /* every batch: one record making a 4096-byte frame */
	REC_LEN = FRAME - 32 - 4, /* frame header and the record's length field */
	RING = 1 << 20,
	WINDOW = 16,		   /* batches appended before waiting, in the counted phase */
	BURST = 2000,		   /* batches of the burst: far more than the room left */
	AFTER_SEGMENTS = 4,	   /* rotations made after the space is freed */
	LEAVE = SEG / 2,	   /* free bytes left by the fill: less than one segment file */
	BURST_LEAVE = SEG * 3 / 2, /* before the burst: room for one more prepared file */
};

/* A hang in the library must fail the test, not stall it: every wait is bounded by this
 * (far above anything a healthy log needs here). */
#define WAIT_NS (60ll * 1000000000)

_Static_assert(RINGLOG_FRAME_BYTES(1, REC_LEN) == FRAME, "one record makes one FRAME");

/* ---- the filesystem of each test ---- */

struct fs {
	const char *type;
	unsigned mb;
	char *mnt;
};

static struct fs g_ext4 = {"ext4", 64, NULL};
static struct fs g_xfs = {"xfs", TU_FS_MIN_MB_XFS, NULL};
static struct fs g_btrfs = {"btrfs", 128, NULL};

static int fs_setup(void **state)
{
	struct fs *f = *state;
	f->mnt = tu_fs_mount(f->type, f->mb);
	if (!f->mnt) {
		/* main() made sure these mount here: this is a failure, not a skip. */
		fprintf(stderr, "fullfs: mounting %s failed (see above)\n", f->type);
		return -1;
	}
	return 0;
}

/* The log a test has open, closed by the teardown when an assertion left it open (an
 * open log keeps the filesystem busy). */
static struct ringlog *g_log;

static struct ringlog *held(struct ringlog *log)
{
	g_log = log;
	return log;
}

static int close_held(struct ringlog *log)
{
	g_log = NULL;
	return ringlog_close(log);
}

static int fs_teardown(void **state)
{
	struct fs *f = *state;
	if (g_log) {
		ringlog_close(g_log);
		g_log = NULL;
	}
	if (f->mnt) {
		tu_fs_unmount(f->mnt);
		free(f->mnt);
		f->mnt = NULL;
	}
	return 0;
}

/* ---- appending and checking ---- */

static void options(struct ringlog_options *o, unsigned prepared)
{
	tu_options(o, SEG, RING);
	o->prepared_segments = prepared;
	o->recycle_segments = 0;
}

/* Append the batch whose tag is its expected LSN `lsn` (one record of REC_LEN bytes).
 * Returns 0 or the append's error; a successful append must hand out `lsn`. */
static int append_lsn(struct ringlog *log, uint64_t lsn)
{
	static uint8_t buf[REC_LEN];
	tu_fill_record(buf, REC_LEN, lsn, 0);
	struct iovec iov = {buf, REC_LEN};
	uint64_t first = 0;
	int err = ringlog_append(log, &iov, 1, &first);
	if (!err && first != lsn)
		fail_msg("append handed out LSN %" PRIu64 ", %" PRIu64 " expected", first, lsn);
	return err;
}

/* Append `n` batches from the log's next LSN and wait for them; all must succeed. */
static void append_ok(struct ringlog *log, unsigned n)
{
	uint64_t lsn = ringlog_next_lsn(log);
	for (unsigned i = 0; i < n; i++) {
		int err = append_lsn(log, lsn + i);
		if (err)
			fail_msg("append of LSN %" PRIu64 ": %s: %s", lsn + i,
				 ringlog_strerror(err), ringlog_last_error());
	}
	int err = ringlog_wait_timeout(log, lsn + n - 1, WAIT_NS);
	if (err)
		fail_msg("wait for LSN %" PRIu64 ": %s: %s", lsn + n - 1, ringlog_strerror(err),
			 ringlog_last_error());
}

/* Read the whole log: LSNs dense from 1, each record the one appended for its LSN.
 * Returns how many there are. */
static uint64_t verify(const char *dir)
{
	struct ringlog_reader *r = NULL;
	int err = ringlog_reader_open(dir, 0, &r);
	if (err)
		fail_msg("reader_open(%s): %s: %s", dir, ringlog_strerror(err),
			 ringlog_last_error());
	struct ringlog_record rec;
	uint64_t n = 0;
	uint8_t expect[REC_LEN];
	while ((err = ringlog_reader_next(r, &rec)) == 1) {
		n++;
		if (rec.lsn != n || rec.len != REC_LEN || rec.batch_nrecs != 1) {
			ringlog_reader_close(r);
			fail_msg("record %" PRIu64 " (length %u, batch of %u) where LSN %" PRIu64
				 " of length %u was appended",
				 rec.lsn, rec.len, rec.batch_nrecs, n, REC_LEN);
		}
		tu_fill_record(expect, REC_LEN, n, 0);
		if (memcmp(expect, rec.data, REC_LEN) != 0) {
			ringlog_reader_close(r);
			fail_msg("record %" PRIu64 " has wrong contents", n);
		}
	}
	ringlog_reader_close(r);
	if (err != 0)
		fail_msg("reader_next after LSN %" PRIu64 ": %s: %s", n, ringlog_strerror(err),
			 ringlog_last_error());
	return n;
}

/* Names in dir that start with `prefix` and end with `suffix`. */
static unsigned count_files(const char *dir, const char *prefix, const char *suffix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name), sl = strlen(suffix);
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 && len >= sl &&
		    strcmp(de->d_name + len - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void assert_no_tmp(const char *dir, const char *when)
{
	unsigned n = count_files(dir, "pool.", ".tmp");
	if (n)
		fail_msg("%u pool.*.tmp file(s) left in %s %s", n, dir, when);
	if (count_files(dir, "segment.new", ""))
		fail_msg("segment.new left in %s %s", dir, when);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Wait (bounded) until the preparer has `n` files ready. */
static void wait_prepared(struct ringlog *log, unsigned n)
{
	struct ringlog_stats st;
	for (int i = 0; i < 60000; i++) {
		ringlog_stats(log, &st);
		if (st.prepared_ready >= n)
			return;
		sleep_ms(1);
	}
	fail_msg("the preparer did not make %u files ready within a minute (%" PRIu64 " ready)", n,
		 st.prepared_ready);
}

/* The message of a log that failed because a segment file could not be prepared. */
static void assert_preparation_enospc(const char *msg, const char *when)
{
	if (!strstr(msg, "preparing the next segment file") ||
	    !strstr(msg, "No space left on device"))
		fail_msg("%s: the error should name the segment preparation and ENOSPC: \"%s\"",
			 when, msg);
}

/* Append until the log fails, WINDOW batches at a time.  Returns the first LSN
 * appended; *appended gets how many appends succeeded, *err the failure (the first
 * failing append's or wait's). */
static uint64_t append_until_failure(struct ringlog *log, uint64_t limit, uint64_t *appended,
				     int *err)
{
	uint64_t first = ringlog_next_lsn(log), lsn = first;
	*err = 0;
	while (!*err && lsn - first < limit) {
		for (unsigned i = 0; i < WINDOW && !*err; i++) {
			*err = append_lsn(log, lsn);
			if (!*err)
				lsn++;
		}
		if (!*err && lsn > first)
			*err = ringlog_wait_timeout(log, lsn - 1, WAIT_NS);
		if (*err == -ETIMEDOUT)
			fail_msg("LSN %" PRIu64 " neither durable nor failed after 60 s (durable "
				 "%" PRIu64 ", error %d): a hang",
				 lsn - 1, ringlog_durable_lsn(log), ringlog_error(log));
	}
	*appended = lsn - first;
	return first;
}

/* Of the `n` batches from `first`, how many ringlog_wait acknowledges; the others must
 * get `fail_err`. */
static uint64_t count_acked(struct ringlog *log, uint64_t first, uint64_t n, int fail_err)
{
	uint64_t acked = 0;
	for (uint64_t i = 0; i < n; i++) {
		int err = ringlog_wait_timeout(log, first + i, WAIT_NS);
		if (err == 0) {
			if (acked != i)
				fail_msg("LSN %" PRIu64 " acknowledged after LSN %" PRIu64
					 " failed",
					 first + i, first + acked);
			acked++;
		} else if (err != fail_err) {
			fail_msg("wait for LSN %" PRIu64 ": %s (%s), expected %s", first + i,
				 ringlog_strerror(err), ringlog_last_error(),
				 ringlog_strerror(fail_err));
		}
	}
	return acked;
}

/* Where the first frame of a new segment starts with O_DIRECT alignment `a`: after the
 * header and a pad up to the next multiple of `a` (the ring position is a multiple of
 * FRAME, hence of `a`, throughout these tests); 64 when buffered. */
static uint64_t data_start(uint32_t a)
{
	return a > 1 ? tu_round_up(64 + 32, a) : 64;
}

/* Frames that fit from `data_end` to the end of a segment. */
static uint64_t frames_fitting(uint64_t data_end)
{
	return data_end >= SEG ? 0 : (SEG - data_end) / FRAME;
}

/* After the space is freed: reopen, find every acknowledged batch, go on across
 * several rotations, close cleanly.  Returns the log's final record count. */
static uint64_t reopen_and_continue(const char *dir, unsigned prepared, uint64_t acked,
				    uint64_t *cut)
{
	struct ringlog_options o;
	options(&o, prepared);
	struct ringlog *log = held(tu_open(dir, &o));
	struct ringlog_recovery rep;
	ringlog_recovery_report(log, &rep);
	*cut = rep.cut_bytes;
	uint64_t have = verify(dir);
	if (have < acked)
		fail_msg("after the space was freed the log holds %" PRIu64 " batches, %" PRIu64
			 " were acknowledged",
			 have, acked);
	assert_int_equal(ringlog_next_lsn(log), have + 1);
	assert_int_equal(ringlog_durable_lsn(log), have);
	unsigned per_seg = (unsigned)frames_fitting(data_start(tu_io_align(log)));
	append_ok(log, AFTER_SEGMENTS * per_seg + 1);
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	if (st.rotations < AFTER_SEGMENTS)
		fail_msg("only %" PRIu64 " rotations after the space was freed", st.rotations);
	assert_int_equal(close_held(log), 0);
	assert_no_tmp(dir, "after the last close");
	uint64_t total = verify(dir);
	assert_int_equal(total, have + AFTER_SEGMENTS * per_seg + 1);
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep), 0);
	assert_int_equal(rep.last_lsn, total);
	return total;
}

/* A fresh log on `mnt` with `prepared` prepared segments, 5 batches in it, the pool
 * ready.  Returns its O_DIRECT alignment. */
static struct ringlog *start_log(const char *dir, unsigned prepared, uint32_t *align)
{
	struct ringlog_options o;
	options(&o, prepared);
	struct ringlog *log = held(tu_open(dir, &o));
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	/* These filesystems take O_DIRECT: the path under test. */
	assert_int_equal(st.direct_io, 1);
	*align = (uint32_t)st.io_align;
	if (*align > FRAME || FRAME % *align != 0)
		fail_msg("O_DIRECT alignment %u does not divide the %u-byte frames", *align, FRAME);
	append_ok(log, 5);
	wait_prepared(log, prepared);
	return log;
}

static void full_at_preparation(const struct fs *f, unsigned prepared)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/log-prepared-%u", f->mnt, prepared);
	uint32_t a;
	struct ringlog *log = start_log(dir, prepared, &a);

	/* Room: the rest of the current segment and the files already prepared. */
	uint64_t room = frames_fitting(tu_data_end(tu_last_segment(dir))) +
			prepared * frames_fitting(data_start(a));
	int err = tu_fs_fill(f->mnt, LEAVE);
	if (err)
		fail_msg("tu_fs_fill(%s): %s", f->mnt, strerror(-err));

	/* Appends are acknowledged until that room is used, then the log fails. */
	uint64_t appended;
	uint64_t first = append_until_failure(log, room + 4 * WINDOW, &appended, &err);
	if (err == 0)
		fail_msg("%s: %" PRIu64
			 " batches acknowledged on the full filesystem, where %" PRIu64
			 " fit without a new segment file",
			 f->type, appended, room);
	if (err != -ENOSPC)
		fail_msg("%s: the log failed with %s (%s), -ENOSPC expected", f->type,
			 ringlog_strerror(err), ringlog_last_error());
	char why[512];
	snprintf(why, sizeof(why), "%s", ringlog_last_error());
	uint64_t acked = count_acked(log, first, appended, -ENOSPC);
	/* (On btrfs a segment write fails here: overwriting a prepared block is
	 * copy-on-write and allocates, and the old extent stays allocated as long as a part
	 * of it is still referenced, so the filled disk runs out before the segment does.) */
	if (!strstr(why, "preparing the next segment file"))
		fail_msg("%s, prepared %u: the log failed after %" PRIu64 " of the %" PRIu64
			 " batches that fit without a new segment file, on \"%s\"; expected: "
			 "every one of them acknowledged, then the segment preparation's ENOSPC",
			 f->type, prepared, acked, room, why);
	assert_preparation_enospc(why, "the failed append or wait");
	if (acked != room)
		fail_msg("%s, prepared %u: %" PRIu64
			 " batches acknowledged after the fill, %" PRIu64
			 " fit in the current segment and the prepared files",
			 f->type, prepared, acked, room);
	uint64_t last = first + acked - 1;
	assert_int_equal(ringlog_durable_lsn(log), last);
	assert_int_equal(ringlog_error(log), -ENOSPC);
	assert_preparation_enospc(ringlog_last_error(), "ringlog_error");
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	assert_int_equal(st.rotations, prepared); /* every prepared file was used */

	/* Fail-stop: no append is taken, nothing more becomes durable. */
	assert_int_equal(append_lsn(log, ringlog_next_lsn(log)), -ENOSPC);
	assert_preparation_enospc(ringlog_last_error(), "an append after the failure");
	sleep_ms(20);
	assert_int_equal(ringlog_durable_lsn(log), last);
	assert_no_tmp(dir, "after the failed preparation");
	/* The full segment was sealed at its last frame before the rotation failed. */
	const char *seg = tu_last_segment(dir);
	uint64_t end = tu_data_end(seg);
	assert_int_equal(tu_file_size(seg), end);
	assert_int_equal(frames_fitting(end), 0);
	assert_int_equal(close_held(log), -ENOSPC);
	assert_no_tmp(dir, "after closing the failed log");

	/* Reopen while still full: the open itself needs no new segment file and succeeds;
	 * the first append needs one (the last segment is full) and fails the log again. */
	struct ringlog_options o;
	options(&o, prepared);
	log = NULL;
	err = ringlog_open(dir, &o, &log);
	held(log);
	if (err)
		fail_msg("%s: reopen on the full filesystem: %s: %s", f->type,
			 ringlog_strerror(err), ringlog_last_error());
	struct ringlog_recovery rep;
	ringlog_recovery_report(log, &rep);
	assert_int_equal(rep.last_lsn, last);
	assert_int_equal(rep.cut_bytes, 0);
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(append_lsn(log, last + 1), 0);
	err = ringlog_wait_timeout(log, last + 1, WAIT_NS);
	assert_int_equal(err, -ENOSPC);
	assert_preparation_enospc(ringlog_last_error(), "the wait after the reopen on a full disk");
	assert_int_equal(ringlog_durable_lsn(log), last);
	assert_int_equal(close_held(log), -ENOSPC);
	assert_no_tmp(dir, "after the reopen on a full disk");
	/* Readers need no space: everything acknowledged is there, nothing else. */
	assert_int_equal(verify(dir), last);

	tu_fs_unfill(f->mnt);
	uint64_t cut;
	uint64_t total = reopen_and_continue(dir, prepared, last, &cut);
	assert_int_equal(cut, 0);
	print_message("%s, prepared %u: %" PRIu64 " batches acknowledged after the fill (room for "
		      "%" PRIu64 "), then -ENOSPC; reopen while full: opens, fails at the first "
		      "rotation; after freeing: %" PRIu64 " batches\n",
		      f->type, prepared, acked, room, total);
}

/* ---- the burst ---- */

struct filler {
	const char *mnt;
	struct ringlog *log;
	uint64_t trigger; /* fill once this LSN is durable (or the log failed) */
	int err;
	int filled_early; /* the log had failed already */
};

static void *fill_main(void *arg)
{
	struct filler *fl = arg;
	for (int i = 0; i < 600000; i++) {
		if (ringlog_durable_lsn(fl->log) >= fl->trigger)
			break;
		if (ringlog_error(fl->log)) {
			fl->filled_early = 1;
			break;
		}
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	fl->err = tu_fs_fill(fl->mnt, 0);
	return NULL;
}

static void full_during_burst(const struct fs *f, unsigned prepared)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/burst-prepared-%u", f->mnt, prepared);
	uint32_t a;
	struct ringlog *log = start_log(dir, prepared, &a);
	uint64_t per_seg = frames_fitting(data_start(a));
	/* Room for one more prepared file, which the preparer makes at the first rotation;
	 * half-way through the next segment the filler takes the rest, down to the last
	 * block (how these race varies: any outcome but a lost acknowledgement is fine). */
	int err = tu_fs_fill(f->mnt, BURST_LEAVE);
	if (err)
		fail_msg("tu_fs_fill(%s): %s", f->mnt, strerror(-err));
	uint64_t first = ringlog_next_lsn(log);
	struct filler fl = {.mnt = f->mnt, .log = log, .trigger = first + per_seg + per_seg / 2};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fill_main, &fl), 0);
	uint64_t appended = 0;
	int aerr = 0;
	while (appended < BURST && (aerr = append_lsn(log, first + appended)) == 0)
		appended++;
	pthread_join(t, NULL);
	if (fl.err)
		fail_msg("tu_fs_fill(%s, 0): %s", f->mnt, strerror(-fl.err));
	if (aerr && aerr != -ENOSPC)
		fail_msg("%s: append during the burst: %s (%s), -ENOSPC expected", f->type,
			 ringlog_strerror(aerr), ringlog_last_error());
	err = appended ? ringlog_wait_timeout(log, first + appended - 1, WAIT_NS) : aerr;
	if (err == -ETIMEDOUT)
		fail_msg(
		    "%s: the burst's last LSN is neither durable nor failed after 60 s: a hang",
		    f->type);
	if (err != -ENOSPC)
		fail_msg("%s: the burst (%" PRIu64 " batches, far more than the disk holds) ended "
			 "with %s (%s), -ENOSPC expected",
			 f->type, appended, ringlog_strerror(err), ringlog_last_error());
	char why[512];
	snprintf(why, sizeof(why), "%s", ringlog_last_error());
	if (!strstr(why, "No space left on device"))
		fail_msg("%s: the error does not say ENOSPC: \"%s\"", f->type, why);
	uint64_t acked = count_acked(log, first, appended, -ENOSPC);
	uint64_t last = first + acked - 1;
	assert_int_equal(ringlog_durable_lsn(log), last);
	sleep_ms(20);
	assert_int_equal(ringlog_durable_lsn(log), last);
	assert_int_equal(close_held(log), -ENOSPC);
	assert_no_tmp(dir, "after closing the failed log");

	/* Reopen while still full: it may succeed (then it is healthy until it needs
	 * space) or refuse, but only with -ENOSPC and a message that says so. */
	struct ringlog_options o;
	options(&o, prepared);
	log = NULL;
	err = ringlog_open(dir, &o, &log);
	held(log);
	char full_open[600];
	if (err == 0) {
		snprintf(full_open, sizeof(full_open), "opens");
		assert_int_equal(ringlog_durable_lsn(log), ringlog_next_lsn(log) - 1);
		if (ringlog_durable_lsn(log) < last)
			fail_msg("%s: reopened on the full disk with LSNs up to %" PRIu64
				 ", %" PRIu64 " were acknowledged",
				 f->type, ringlog_durable_lsn(log), last);
		assert_int_equal(close_held(log), 0);
	} else {
		snprintf(full_open, sizeof(full_open), "refused: %s", ringlog_last_error());
		if (err != -ENOSPC || !strstr(ringlog_last_error(), "No space left on device"))
			fail_msg("%s: reopen on the full disk: %s (%s): only a clear -ENOSPC may "
				 "refuse it",
				 f->type, ringlog_strerror(err), ringlog_last_error());
	}
	assert_no_tmp(dir, "after the reopen on a full disk");

	tu_fs_unfill(f->mnt);
	uint64_t cut;
	uint64_t total = reopen_and_continue(dir, prepared, last, &cut);
	print_message("%s, prepared %u: burst of %" PRIu64 " appends, %" PRIu64
		      " acknowledged, failed with: %s%s; reopen while full %s; after freeing: "
		      "cut %" PRIu64 " bytes, %" PRIu64 " batches\n",
		      f->type, prepared, appended, acked, why,
		      fl.filled_early ? " (before the filler ran)" : "", full_open, cut, total);
}

/* ---- the tests ---- */

static void full_at_preparation_both(const struct fs *f)
{
	full_at_preparation(f, 1);
	tu_fs_unfill(f->mnt);
	full_at_preparation(f, 2);
}

static void full_during_burst_both(const struct fs *f)
{
	full_during_burst(f, 1);
	tu_fs_unfill(f->mnt);
	full_during_burst(f, 2);
}

/* One test of each kind per filesystem type; *state is its struct fs (setup mounts). */
#define FS_TESTS(t)                                                                                \
	static void full_at_preparation_##t(void **state)                                          \
	{                                                                                          \
		full_at_preparation_both(*state);                                                  \
	}                                                                                          \
	static void full_during_burst_##t(void **state)                                            \
	{                                                                                          \
		full_during_burst_both(*state);                                                    \
	}
FS_TESTS(ext4)
FS_TESTS(xfs)
FS_TESTS(btrfs)

#define FS_UNIT(test, t)                                                                           \
	cmocka_unit_test_prestate_setup_teardown(test##_##t, fs_setup, fs_teardown, &g_##t)

/* Skip the whole program (exit 77, with tu_fs_mount's reason) where a type cannot be
 * mounted here, before any test runs: a skip must not hide a failure. */
static void require_fs(const struct fs *f)
{
	char *mnt = tu_fs_mount_or_skip(f->type, f->mb);
	tu_fs_unmount(mnt);
	free(mnt);
}

int main(void)
{
	tu_require_uring();
	require_fs(&g_ext4);
	require_fs(&g_xfs);
	require_fs(&g_btrfs);
	const struct CMUnitTest tests[] = {
	    FS_UNIT(full_at_preparation, ext4),	 FS_UNIT(full_during_burst, ext4),
	    FS_UNIT(full_at_preparation, xfs),	 FS_UNIT(full_during_burst, xfs),
	    FS_UNIT(full_at_preparation, btrfs), FS_UNIT(full_during_burst, btrfs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
