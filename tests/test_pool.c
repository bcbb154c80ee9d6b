/*
 * Prepared segment files, recycling and the I/O mode (src/pool.c, design note of issue
 * #10): the preparer keeps `prepared_segments` zero-filled files of the segment size
 * ready as pool.SEQ.STALE.ready and rotations turn them into segments (same inode);
 * open takes stock of leftover pool files (removes unfinished ones and those whose
 * stale bytes could hold LSNs the log will write again, re-makes ready ones of the
 * wrong size, leaves other files alone); retention moves removed segments into the
 * pool when recycle_segments allows, and the pool never holds more than
 * prepared + recycle files; io_mode decides between O_DIRECT (a pad entry aligns the
 * first frame) and buffered writes (frames from offset 64).
 *
 * Faults go through the file seam (src/file_io.h, rl_file_faults): refusing O_DIRECT,
 * failing a pool file's allocation, holding the preparer in the middle of a file.
 * Every wait for the preparer is a bounded poll, never a sleep-and-hope.
 */
#include "testutil.h"

#include "file_io.h"
#include "format.h"
#include "segment.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG 8192u
#define RING (1u << 16)
#define NRECS 2u
#define RECLEN 400u
/* RINGLOG_FRAME_BYTES(NRECS, NRECS * RECLEN) */
#define FRAME 840u

/* ---- small helpers ---- */

#define CHECK_OK(expr)                                                                             \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != 0)                                                                      \
			fail_msg("%s:%d: %s = %d (%s): %s", __FILE__, __LINE__, #expr, rc_,        \
				 ringlog_strerror(rc_), ringlog_last_error());                     \
	} while (0)

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {0, (long)ms * 1000000L};
	nanosleep(&ts, NULL);
}

/* Poll `cond` every millisecond for at most 20 s (sanitizers are slow); fail the test
 * if it never holds. */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		int ok_ = 0;                                                                       \
		for (int i_ = 0; i_ < 20000 && !(ok_ = (cond)); i_++)                              \
			sleep_ms(1);                                                               \
		if (!ok_)                                                                          \
			fail_msg("%s:%d: timed out waiting for %s", __FILE__, __LINE__, #cond);    \
	} while (0)

static struct ringlog_stats stats(struct ringlog *log)
{
	struct ringlog_stats st;
	CHECK_OK(ringlog_stats(log, &st));
	return st;
}

static uint64_t ino_of(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		fail_msg("lstat %s: %s", path, strerror(errno));
	return (uint64_t)st.st_ino;
}

static int exists(const char *dir, const char *name)
{
	return access(tu_path(dir, name), F_OK) == 0;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
	int fd = open(tu_path(dir, name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* A file of `size` zero bytes (sparse: reads as zeros). */
static void zero_file(const char *dir, const char *name, uint64_t size)
{
	write_file(dir, name, "", 0);
	tu_truncate(tu_path(dir, name), size);
}

static int all_zero(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t buf[4096];
	ssize_t n;
	int zero = 1;
	while (zero && (n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++)
			if (buf[i]) {
				zero = 0;
				break;
			}
	close(fd);
	return zero;
}

/* Whether every block of the file is allocated and written (no hole, no unwritten or
 * delayed extent), so that writing into it changes no metadata; -1 if the filesystem
 * cannot tell (no FIEMAP). */
static int fully_written(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	const unsigned max = 256;
	struct fiemap *fm = calloc(1, sizeof(*fm) + max * sizeof(struct fiemap_extent));
	assert_non_null(fm);
	fm->fm_length = FIEMAP_MAX_OFFSET;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = max;
	int ok = ioctl(fd, FS_IOC_FIEMAP, fm) == 0 ? 1 : -1;
	uint64_t covered = 0;
	for (unsigned i = 0; ok == 1 && i < fm->fm_mapped_extents; i++) {
		const struct fiemap_extent *e = &fm->fm_extents[i];
		if (e->fe_logical > covered ||
		    (e->fe_flags &
		     (FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_UNKNOWN)))
			ok = 0;
		covered = e->fe_logical + e->fe_length;
	}
	if (ok == 1 && covered < (uint64_t)st.st_size)
		ok = 0;
	free(fm);
	close(fd);
	return ok;
}

static void read_at(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static size_t seg_count(const char *dir)
{
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	free(lsns);
	return n;
}

/* Entries in dir whose name starts with `prefix`. */
static size_t count_prefix(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* ---- pool files, parsed independently of the library ---- */

enum { PK_READY = 1, PK_RETIRED, PK_TMP };

struct pfile {
	char name[64];
	int kind;
	uint64_t seq, stale, ino, size;
};

static int digits(const char *s, size_t n, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return 0;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return 1;
}

/* pool.SEQ.tmp, pool.SEQ.STALE.ready, pool.SEQ.STALE.retired (SEQ 10 digits, STALE
 * 20 digits); 0 for anything else. */
static int parse_pool(const char *name, struct pfile *f)
{
	size_t len = strlen(name);
	memset(f, 0, sizeof(*f));
	if (strncmp(name, "pool.", 5) != 0 || len >= sizeof(f->name) ||
	    !digits(name + 5, 10, &f->seq))
		return 0;
	snprintf(f->name, sizeof(f->name), "%s", name);
	if (strcmp(name + 15, ".tmp") == 0)
		return f->kind = PK_TMP;
	if (name[15] != '.' || len < 37 || !digits(name + 16, 20, &f->stale) || name[36] != '.')
		return 0;
	if (strcmp(name + 37, "ready") == 0)
		return f->kind = PK_READY;
	if (strcmp(name + 37, "retired") == 0)
		return f->kind = PK_RETIRED;
	return 0;
}

static int cmp_seq(const void *a, const void *b)
{
	const struct pfile *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

#define MAX_PFILES 160

/* The pool files in dir, sorted by SEQ, with inode and size; returns the count. */
static size_t pool_files(const char *dir, struct pfile *out)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct pfile f;
		if (!parse_pool(de->d_name, &f))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue; /* renamed under us */
		f.ino = (uint64_t)st.st_ino;
		f.size = (uint64_t)st.st_size;
		assert_true(n < MAX_PFILES);
		out[n++] = f;
	}
	closedir(d);
	qsort(out, n, sizeof(*out), cmp_seq);
	return n;
}

static size_t count_kind(const char *dir, int kind)
{
	struct pfile f[MAX_PFILES];
	size_t n = pool_files(dir, f), k = 0;
	for (size_t i = 0; i < n; i++)
		k += f[i].kind == kind;
	return k;
}

static const char *pool_name(uint64_t seq, uint64_t stale, const char *kind)
{
	static char buf[64];
	snprintf(buf, sizeof(buf), "pool.%010" PRIu64 ".%020" PRIu64 ".%s", seq, stale, kind);
	return buf;
}

/* Size of a prepared file: the segment size rounded up to 4096 (or the alignment). */
static uint64_t file_bytes(struct ringlog *log, uint64_t segment_bytes)
{
	uint64_t a = tu_io_align(log);
	return tu_round_up(segment_bytes, a > 4096 ? a : 4096);
}

/* The preparer is idle: nothing being filled or waiting to be made ready, at least
 * `keep` ready files, and the counter agrees with the directory. */
static int pool_settled(struct ringlog *log, const char *dir, unsigned keep)
{
	struct pfile f[MAX_PFILES];
	size_t n = pool_files(dir, f), ready = 0;
	for (size_t i = 0; i < n; i++) {
		if (f[i].kind != PK_READY)
			return 0;
		ready++;
	}
	uint64_t now = stats(log).prepared_ready;
	return now >= keep && now == ready;
}

/* ---- the file seam ---- */

static pthread_mutex_t seam_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t seam_cv = PTHREAD_COND_INITIALIZER;

/* Under seam_mu: */
static struct {
	/* RL_FOP_OPEN with O_DIRECT in the flags: -EINVAL, as a filesystem that refuses it */
	int refuse_direct;
	int refused_lock_probe; /* ... and one of them was the probe of LOCK */
	/* the first PWRITE to a pool .tmp file waits while `hold` is set */
	int hold_tmp, held, released;
	/* op `fail_op` on a name starting with `fail_prefix` fails with `fail_err`, at most
	 * `fail_budget` times (0: always) */
	int fail_op, fail_err, fail_budget, failed;
	char fail_prefix[64];
	/* what was seen */
	char opened_retired[32][64];
	unsigned n_opened_retired;
	char renamed[64][64];
	unsigned n_renamed;
	char unlinked[64][64];
	unsigned n_unlinked;
} H;

static void note(char list[][64], unsigned *n, unsigned cap, const char *name)
{
	if (name && *n < cap)
		snprintf(list[(*n)++], 64, "%s", name);
}

static int ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);
	return a >= b && strcmp(s + a - b, tail) == 0;
}

static int seam(void *arg, enum rl_file_op op, const char *name, uint64_t off, uint64_t len)
{
	(void)arg;
	(void)off;
	int err = 0;
	pthread_mutex_lock(&seam_mu);
	if (op == RL_FOP_OPEN && H.refuse_direct && (len & (uint64_t)O_DIRECT)) {
		if (name && strcmp(name, "LOCK") == 0)
			H.refused_lock_probe = 1;
		err = -EINVAL;
	}
	if (op == RL_FOP_OPEN && name && ends_with(name, ".retired"))
		note(H.opened_retired, &H.n_opened_retired, 32, name);
	if (op == RL_FOP_RENAME)
		note(H.renamed, &H.n_renamed, 64, name);
	if (op == RL_FOP_UNLINK)
		note(H.unlinked, &H.n_unlinked, 64, name);
	if (!err && H.fail_err && (int)op == H.fail_op && name &&
	    strncmp(name, H.fail_prefix, strlen(H.fail_prefix)) == 0 &&
	    (H.fail_budget == 0 || H.failed < H.fail_budget)) {
		H.failed++;
		err = H.fail_err;
	}
	if (op == RL_FOP_PWRITE && H.hold_tmp && name && strncmp(name, "pool.", 5) == 0 &&
	    ends_with(name, ".tmp")) {
		H.hold_tmp = 0;
		H.held++;
		pthread_cond_broadcast(&seam_cv);
		while (!H.released)
			pthread_cond_wait(&seam_cv, &seam_mu);
		H.held--;
		pthread_cond_broadcast(&seam_cv);
	}
	pthread_mutex_unlock(&seam_mu);
	return err;
}

static struct rl_file_faults seam_hooks = {.fail = seam};

static void seam_on(void)
{
	rl_file_faults = &seam_hooks;
}

static int seam_get(const int *field)
{
	pthread_mutex_lock(&seam_mu);
	int v = *field;
	pthread_mutex_unlock(&seam_mu);
	return v;
}

static void seam_release(void)
{
	pthread_mutex_lock(&seam_mu);
	H.released = 1;
	pthread_cond_broadcast(&seam_cv);
	pthread_mutex_unlock(&seam_mu);
}

enum seen_list { OPENED_RETIRED, RENAMED, UNLINKED };

/* Whether the seam saw `name` (opened as .retired, renamed from, unlinked). */
static int seen(enum seen_list which, const char *name)
{
	pthread_mutex_lock(&seam_mu);
	char(*list)[64] = which == OPENED_RETIRED ? H.opened_retired
			  : which == RENAMED	  ? H.renamed
						  : H.unlinked;
	unsigned n = which == OPENED_RETIRED ? H.n_opened_retired
		     : which == RENAMED	     ? H.n_renamed
					     : H.n_unlinked;
	int hit = 0;
	for (unsigned i = 0; i < n && !hit; i++)
		hit = strcmp(list[i], name) == 0;
	pthread_mutex_unlock(&seam_mu);
	return hit;
}

/* ---- what was appended, to check what is read ---- */

struct expect {
	uint64_t tag;
	uint32_t idx, len;
};

static struct {
	struct expect *at; /* indexed by LSN */
	size_t cap;
	unsigned batches;
} M;

static uint64_t put(struct ringlog *log, unsigned nrecs, unsigned len)
{
	uint64_t tag = 0x9001000000000000ull + ++M.batches;
	uint64_t first = tu_append_tagged(log, tag, nrecs, len);
	if (first + nrecs > M.cap) {
		size_t cap = (first + nrecs) * 2;
		M.at = realloc(M.at, cap * sizeof(*M.at));
		assert_non_null(M.at);
		memset(M.at + M.cap, 0, (cap - M.cap) * sizeof(*M.at));
		M.cap = cap;
	}
	for (unsigned i = 0; i < nrecs; i++)
		M.at[first + i] = (struct expect){tag, i, len};
	return first + nrecs - 1;
}

/* One batch of NRECS x RECLEN, waited for: its last LSN. */
static uint64_t put_wait(struct ringlog *log)
{
	uint64_t last = put(log, NRECS, RECLEN);
	CHECK_OK(ringlog_wait(log, last));
	return last;
}

/* Waited batches until dir has `nsegs` segments; the last LSN. */
static uint64_t grow_to(struct ringlog *log, const char *dir, size_t nsegs)
{
	uint64_t last = ringlog_next_lsn(log) - 1;
	for (int i = 0; i < 4000 && seg_count(dir) < nsegs; i++)
		last = put_wait(log);
	assert_true(seg_count(dir) >= nsegs);
	return last;
}

/* The record is the one appended at its LSN (not an older or stale one). */
static void check_record(const struct ringlog_record *rec)
{
	if (rec->lsn >= M.cap || M.at[rec->lsn].tag == 0)
		fail_msg("reader returned LSN %" PRIu64 ", which was never appended", rec->lsn);
	const struct expect *e = &M.at[rec->lsn];
	const uint8_t *p = rec->data;
	uint64_t tag = 0;
	uint32_t idx = 0;
	for (int k = 0; k < 8 && k < (int)rec->len; k++)
		tag |= (uint64_t)p[k] << (8 * k);
	for (int k = 0; k < 4 && 8 + k < (int)rec->len; k++)
		idx |= (uint32_t)p[8 + k] << (8 * k);
	if (rec->len != e->len || tag != e->tag || idx != e->idx ||
	    !tu_record_ok(rec->data, rec->len))
		fail_msg("LSN %" PRIu64 ": got record (tag %" PRIx64 ", index %u, len %u), "
			 "appended (tag %" PRIx64 ", index %u, len %u)",
			 rec->lsn, tag, idx, rec->len, e->tag, e->idx, e->len);
}

/* The log in dir reads back exactly LSNs from..last, each the record appended there. */
static void read_back(const char *dir, uint64_t from, uint64_t last)
{
	struct ringlog_reader *r;
	CHECK_OK(ringlog_reader_open(dir, from, &r));
	struct ringlog_record rec;
	uint64_t want = from;
	int got;
	while ((got = ringlog_reader_next(r, &rec)) == 1) {
		assert_int_equal(rec.lsn, want);
		check_record(&rec);
		want++;
	}
	ringlog_reader_close(r);
	if (got != 0)
		fail_msg("reader stopped at LSN %" PRIu64 ": %d (%s): %s", want, got,
			 ringlog_strerror(got), ringlog_last_error());
	assert_int_equal(want, last + 1);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	pthread_mutex_lock(&seam_mu);
	memset(&H, 0, sizeof(H));
	pthread_mutex_unlock(&seam_mu);
	free(M.at);
	memset(&M, 0, sizeof(M));
	return tu_setup_dir(state);
}

static int teardown(void **state)
{
	/* A thread held by the seam (a failed test) goes on; nothing new enters it. */
	rl_file_faults = NULL;
	seam_release();
	for (int i = 0; i < 5000 && seam_get(&H.held); i++)
		sleep_ms(1);
	free(M.at);
	memset(&M, 0, sizeof(M));
	return tu_teardown_dir(state);
}

#define POOL_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* ---- prepared files ---- */

static void new_log_prepares_zeroed_files(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, 10000, RING); /* not a multiple of 4096 */
	o.prepared_segments = 3;
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(stats(log).prepared_ready == 3);
	uint64_t fb = file_bytes(log, 10000);
	assert_int_equal(fb, 12288);
	struct pfile f[MAX_PFILES];
	assert_int_equal(pool_files(dir, f), 3);
	assert_int_equal(count_prefix(dir, "pool."), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(f[i].kind, PK_READY);
		assert_int_equal(f[i].stale, 0);
		assert_int_equal(f[i].size, fb);
		if (!all_zero(tu_path(dir, f[i].name)))
			fail_msg("%s is not all zeros", f[i].name);
		if (fully_written(tu_path(dir, f[i].name)) == 0)
			fail_msg("%s has blocks not written yet", f[i].name);
	}
	/* The first segment is a prepared file too: 3 ready + the one it took (the
	 * counter follows the file's arrival in the list). */
	assert_int_equal(tu_file_size(tu_last_segment(dir)), fb);
	WAIT_FOR(stats(log).segments_prepared >= 4);
	struct ringlog_stats st = stats(log);
	assert_int_equal(st.segments_prepared, 4);
	assert_int_equal(st.segments_recycled, 0);
	assert_int_equal(ringlog_close(log), 0);
}

static void rotations_take_prepared_files_without_waiting(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(pool_settled(log, dir, 2));
	struct ringlog_stats st0 = stats(log);
	uint64_t last = 0;
	unsigned rotations = 0;
	for (int b = 0; b < 200 && rotations < 5; b++) {
		struct pfile f[MAX_PFILES];
		assert_int_equal(pool_files(dir, f), 2);
		size_t nseg = seg_count(dir);
		last = put_wait(log);
		size_t now = seg_count(dir);
		if (now != nseg) {
			/* The new segment is the ready file with the lowest SEQ, renamed. */
			assert_int_equal(now, nseg + 1);
			assert_int_equal(ino_of(tu_last_segment(dir)), f[0].ino);
			assert_false(exists(dir, f[0].name));
			rotations++;
		}
		WAIT_FOR(pool_settled(log, dir, 2)); /* the preparer keeps up */
	}
	assert_int_equal(rotations, 5);
	WAIT_FOR(stats(log).segments_prepared >= st0.segments_prepared + rotations);
	struct ringlog_stats st = stats(log);
	assert_int_equal(st.rotations, rotations);
	assert_int_equal(st.rotation_waits, st0.rotation_waits);
	assert_int_equal(st.segments_prepared, st0.segments_prepared + rotations);
	assert_int_equal(st.prepared_ready, 2);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

/* prepared_segments = 0 in one io_mode: segments grow as written, no pool file. */
static void grow_without_pool(const char *dir, uint32_t io_mode)
{
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = 0;
	o.io_mode = io_mode;
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(stats(log).direct_io, io_mode == RINGLOG_IO_AUTO);
	uint64_t a = tu_io_align(log), last = 0, prev = 0;
	size_t nseg = 1;
	for (int b = 0; b < 400 && seg_count(dir) < 4; b++) {
		last = put_wait(log);
		assert_int_equal(count_prefix(dir, "pool."), 0);
		assert_false(exists(dir, RL_SEG_BUILD_NAME));
		/* The last segment ends at its last frame (its last block, when direct). */
		char path[4096];
		snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
		uint64_t size = tu_file_size(path), end = tu_data_end(path);
		assert_int_equal(size, tu_round_up(end, a));
		if (seg_count(dir) == nseg)
			assert_true(size > prev);
		nseg = seg_count(dir);
		prev = size;
	}
	assert_int_equal(seg_count(dir), 4);
	struct ringlog_stats st = stats(log);
	assert_int_equal(st.segments_prepared, 0);
	assert_int_equal(st.prepared_ready, 0);
	assert_int_equal(st.rotation_waits, 0);
	assert_int_equal(ringlog_close(log), 0);
	/* Sealed segments end exactly at their last frame. */
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	for (size_t i = 0; i + 1 < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s", tu_segment_path(dir, lsns[i]));
		assert_int_equal(tu_file_size(path), tu_data_end(path));
	}
	free(lsns);
	read_back(dir, 1, last);
}

static void no_pool_files_without_prepared_segments(void **state)
{
	const char *dir = *state;
	char sub[4096];
	snprintf(sub, sizeof(sub), "%s/buffered", dir);
	grow_without_pool(sub, RINGLOG_IO_BUFFERED);
	free(M.at);
	memset(&M, 0, sizeof(M));
	snprintf(sub, sizeof(sub), "%s/auto", dir);
	grow_without_pool(sub, RINGLOG_IO_AUTO);
}

/* ---- pool files across opens ---- */

/* A closed log of `nsegs` segments (3 batches at least) and two ready zero files;
 * its last LSN. */
static uint64_t closed_log(const char *dir, struct ringlog_options *o, size_t nsegs)
{
	tu_options(o, SEG, RING);
	struct ringlog *log = tu_open(dir, o);
	for (int i = 0; i < 3; i++)
		put_wait(log);
	uint64_t last = grow_to(log, dir, nsegs);
	WAIT_FOR(pool_settled(log, dir, 2));
	assert_int_equal(ringlog_close(log), 0);
	return last;
}

static void open_removes_leftover_tmp(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	write_file(dir, "pool.0000000099.tmp", "half-filled", 11);
	struct ringlog *log = tu_open(dir, &o);
	assert_false(exists(dir, "pool.0000000099.tmp"));
	WAIT_FOR(pool_settled(log, dir, 2));
	assert_int_equal(count_kind(dir, PK_TMP), 0);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

static void open_removes_leftover_segment_new(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	write_file(dir, RL_SEG_BUILD_NAME, "torn rotation", 13);
	struct ringlog *log = tu_open(dir, &o);
	assert_false(exists(dir, RL_SEG_BUILD_NAME));
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

/* STALE >= the next LSN: the file may hold frames of LSNs the log will write again. */
static void open_removes_pool_files_with_stale_at_or_above_next_lsn(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1), next = last + 1;
	uint64_t fb = tu_round_up(SEG, 4096);
	char at_next[64], above[64], below[64];
	snprintf(at_next, sizeof(at_next), "%s", pool_name(90, next, "ready"));
	snprintf(above, sizeof(above), "%s", pool_name(91, next + 5, "retired"));
	snprintf(below, sizeof(below), "%s", pool_name(92, next - 1, "ready"));
	zero_file(dir, at_next, fb);
	zero_file(dir, above, 100);
	zero_file(dir, below, fb);
	struct ringlog *log = tu_open(dir, &o);
	assert_false(exists(dir, at_next));
	assert_false(exists(dir, above));
	assert_true(exists(dir, below)); /* all its LSNs lie below the next one: reusable */
	assert_int_equal(stats(log).prepared_ready, 3);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

static void open_remakes_ready_files_of_the_wrong_size(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	uint64_t fb = tu_round_up(SEG, 4096);
	struct pfile f[MAX_PFILES];
	assert_int_equal(pool_files(dir, f), 2);
	/* One too short, one too long (with bytes past the size it should have). */
	tu_truncate(tu_path(dir, f[0].name), 5000);
	tu_truncate(tu_path(dir, f[1].name), fb + 4096);
	uint8_t junk[4096];
	memset(junk, 0xa5, sizeof(junk));
	tu_write_at(tu_path(dir, f[1].name), fb, junk, sizeof(junk));
	uint64_t ino[2] = {f[0].ino, f[1].ino};
	seam_on();
	struct ringlog *log = tu_open(dir, &o);
	assert_false(exists(dir, f[0].name));
	assert_false(exists(dir, f[1].name));
	WAIT_FOR(pool_settled(log, dir, 2));
	/* Each went through .retired and came back ready, same file, right size. */
	for (int i = 0; i < 2; i++)
		if (!seen(OPENED_RETIRED, pool_name(f[i].seq, f[i].stale, "retired")))
			fail_msg("%s was not re-made as .retired", f[i].name);
	struct pfile g[MAX_PFILES];
	assert_int_equal(pool_files(dir, g), 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(g[i].kind, PK_READY);
		assert_int_equal(g[i].stale, 0); /* STALE kept; a new SEQ */
		assert_true(g[i].seq > f[1].seq);
		assert_int_equal(g[i].size, fb);
		assert_true(g[i].ino == ino[0] || g[i].ino == ino[1]);
		assert_true(all_zero(tu_path(dir, g[i].name)));
		assert_true(fully_written(tu_path(dir, g[i].name)) != 0);
	}
	assert_true(g[0].ino != g[1].ino);
	assert_int_equal(stats(log).segments_prepared, 0); /* no new file was needed */
	/* And they are used: the next two rotations take them. */
	int used = 0;
	for (int b = 0; b < 400 && used < 2; b++) {
		size_t nseg = seg_count(dir);
		last = put_wait(log);
		if (seg_count(dir) != nseg) {
			uint64_t s = ino_of(tu_last_segment(dir));
			assert_true(s == ino[0] || s == ino[1]);
			used++;
			WAIT_FOR(pool_settled(log, dir, 2));
		}
	}
	assert_int_equal(used, 2);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

static void open_leaves_other_files_alone(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	static const char *const others[] = {
	    "pool.txt",
	    "pool.1.2.ready.bak",
	    "pool.0000000007.tmp.old",
	    "pool.0000000008.00000000000000000000.ready~",
	    "pool.0000000009.00000000000000000000.ready.1",
	    "pool.0000000010.00000000000000000000.stale",
	    "mypool.0000000011.tmp",
	};
	size_t n = sizeof(others) / sizeof(others[0]);
	for (size_t i = 0; i < n; i++)
		write_file(dir, others[i], others[i], strlen(others[i]));
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(pool_settled(log, dir, 2));
	/* A rotation and the preparer's work after it change nothing either. */
	last = grow_to(log, dir, seg_count(dir) + 1);
	WAIT_FOR(pool_settled(log, dir, 2));
	assert_int_equal(ringlog_close(log), 0);
	for (size_t i = 0; i < n; i++) {
		char buf[64] = {0};
		if (!exists(dir, others[i]))
			fail_msg("%s was removed", others[i]);
		assert_int_equal(tu_file_size(tu_path(dir, others[i])), strlen(others[i]));
		read_at(tu_path(dir, others[i]), 0, buf, strlen(others[i]));
		assert_string_equal(buf, others[i]);
	}
	read_back(dir, 1, last);
}

/* Names that only look like pool files (SEQ and STALE not 10 and 20 digits) are not
 * pool files: open neither removes nor renames them, and no rotation uses them. */
static void open_leaves_pool_lookalikes_alone(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	assert_true(last >= 3);
	char big[64];
	snprintf(big, sizeof(big), "pool.3.%" PRIu64 ".retired", last + 100);
	const char *const names[] = {"pool.1.tmp", "pool.2.1.ready", big};
	for (int i = 0; i < 3; i++)
		write_file(dir, names[i], names[i], strlen(names[i]));
	struct ringlog *log = NULL;
	int err = ringlog_open(dir, &o, &log);
	if (err)
		fail_msg("ringlog_open: %d (%s): %s", err, ringlog_strerror(err),
			 ringlog_last_error());
	for (int i = 0; i < 3; i++)
		if (!exists(dir, names[i]))
			fail_msg("%s was removed or renamed", names[i]);
	last = grow_to(log, dir, 3);
	assert_int_equal(ringlog_close(log), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(tu_file_size(tu_path(dir, names[i])), strlen(names[i]));
	read_back(dir, 1, last);
}

/* Same with one of the segment file size: it is not taken for a segment. */
static void pool_lookalike_of_the_right_size_is_not_used(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	closed_log(dir, &o, 1);
	zero_file(dir, "pool.0.1.ready", tu_round_up(SEG, 4096));
	struct ringlog *log = tu_open(dir, &o);
	uint64_t last = ringlog_next_lsn(log) - 1;
	for (int b = 0; b < 400 && seg_count(dir) < 3; b++) {
		last = put(log, NRECS, RECLEN);
		int err = ringlog_wait(log, last);
		if (err) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", ringlog_last_error());
			ringlog_close(log);
			fail_msg("rotation with pool.0.1.ready in the directory: %d (%s): %s", err,
				 ringlog_strerror(err), msg);
		}
	}
	assert_int_equal(ringlog_close(log), 0);
	assert_true(exists(dir, "pool.0.1.ready"));
	read_back(dir, 1, last);
}

/* prepared_segments 0 after a log that had a pool: what an earlier writer left
 * unfinished (a pool file being filled, a segment being built) is removed at open
 * all the same. */
static void open_without_a_pool_removes_unfinished_files(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	write_file(dir, "pool.0000000099.tmp", "half-filled", 11);
	write_file(dir, RL_SEG_BUILD_NAME, "torn rotation", 13);
	o.prepared_segments = 0;
	struct ringlog *log = tu_open(dir, &o);
	int tmp = exists(dir, "pool.0000000099.tmp"), build = exists(dir, RL_SEG_BUILD_NAME);
	assert_int_equal(ringlog_close(log), 0);
	if (tmp || build)
		fail_msg("prepared_segments 0: open left%s%s in place",
			 tmp ? " pool.0000000099.tmp" : "", build ? " " RL_SEG_BUILD_NAME : "");
	read_back(dir, 1, last);
}

/* Open fails when a leftover pool file cannot be removed; the message names it. */
static void stock_taking_failure_names_the_file(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 1);
	write_file(dir, "pool.0000000099.tmp", "x", 1);
	H.fail_op = RL_FOP_UNLINK;
	H.fail_err = -EACCES;
	snprintf(H.fail_prefix, sizeof(H.fail_prefix), "pool.0000000099.tmp");
	seam_on();
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EACCES);
	assert_null(log);
	const char *msg = ringlog_last_error();
	if (!strstr(msg, "pool.0000000099.tmp") || !strstr(msg, "remov"))
		fail_msg("ringlog_last_error() does not name the file and the operation that "
			 "failed: \"%s\"",
			 msg);
	/* Nothing is held: without the fault it opens. */
	rl_file_faults = NULL;
	log = tu_open(dir, &o);
	assert_false(exists(dir, "pool.0000000099.tmp"));
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

/* ---- preparation failures ---- */

/* The batch about to be appended needs a new segment. */
static int needs_rotation(const char *dir)
{
	return tu_data_end(tu_last_segment(dir)) + FRAME > SEG;
}

static void failed_preparation_fails_only_the_rotation_that_needs_it(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = 1;
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(pool_settled(log, dir, 1));
	H.fail_op = RL_FOP_FALLOCATE;
	H.fail_err = -ENOSPC;
	snprintf(H.fail_prefix, sizeof(H.fail_prefix), "pool.");
	seam_on();
	/* The first rotation takes the ready file; preparing the next one fails. */
	grow_to(log, dir, 2);
	/* It frees what it took. */
	WAIT_FOR(seam_get(&H.failed) == 1 && count_prefix(dir, "pool.") == 0);
	/* The log goes on in its segment while batches fit... */
	uint64_t last = ringlog_next_lsn(log) - 1;
	int b;
	for (b = 0; b < 100 && !needs_rotation(dir); b++)
		last = put_wait(log);
	assert_true(b > 0 && b < 100);
	assert_int_equal(ringlog_error(log), 0);
	/* ... and the rotation that finds no ready file asks once more, then fails. */
	uint64_t l = put(log, NRECS, RECLEN);
	assert_int_equal(ringlog_wait(log, l), -ENOSPC);
	const char *msg = ringlog_last_error();
	if (!strstr(msg, "pool.") || !strstr(msg, "allocating"))
		fail_msg("message does not name the pool file and operation: \"%s\"", msg);
	assert_int_equal(seam_get(&H.failed), 2);
	assert_int_equal(count_prefix(dir, "pool."), 0);
	assert_int_equal(ringlog_close(log), -ENOSPC);
	rl_file_faults = NULL;
	read_back(dir, 1, last);
}

static void rotation_retries_a_failed_preparation(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = 1;
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(pool_settled(log, dir, 1));
	uint64_t waits0 = stats(log).rotation_waits;
	H.fail_op = RL_FOP_FALLOCATE;
	H.fail_err = -ENOSPC;
	H.fail_budget = 1; /* space comes back after one failure */
	snprintf(H.fail_prefix, sizeof(H.fail_prefix), "pool.");
	seam_on();
	grow_to(log, dir, 2);
	WAIT_FOR(seam_get(&H.failed) == 1);
	uint64_t last = grow_to(log, dir, 3); /* this rotation found no ready file */
	assert_int_equal(ringlog_error(log), 0);
	assert_true(stats(log).rotation_waits > waits0);
	assert_int_equal(seam_get(&H.failed), 1);
	WAIT_FOR(pool_settled(log, dir, 1));
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

/* ---- recycling ---- */

struct recycled {
	uint64_t lsns[3]; /* first LSNs of the removed segments */
	uint64_t ino[3];
	uint64_t next_kept; /* first LSN kept */
	uint64_t last;
};

/* A log (prepared 2, recycle 2) of at least 8 segments and two ready zero files; then
 * retention removes its first three segments: two go to the pool (then 4 files),
 * the third is deleted. */
static struct ringlog *recycle_three(const char *dir, struct ringlog_options *o,
				     struct recycled *rc)
{
	tu_options(o, SEG, RING);
	o->recycle_segments = 2;
	struct ringlog *log = tu_open(dir, o);
	rc->last = grow_to(log, dir, 8);
	WAIT_FOR(pool_settled(log, dir, 2));
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	for (int i = 0; i < 3; i++) {
		rc->lsns[i] = lsns[i];
		rc->ino[i] = ino_of(tu_segment_path(dir, lsns[i]));
	}
	rc->next_kept = lsns[3];
	free(lsns);
	seam_on();
	assert_int_equal(ringlog_truncate_before(log, rc->next_kept), 3);
	return log;
}

static void retention_moves_removed_segments_into_the_pool(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	struct recycled rc;
	struct ringlog *log = recycle_three(dir, &o, &rc);
	for (int i = 0; i < 3; i++)
		assert_false(access(tu_segment_path(dir, rc.lsns[i]), F_OK) == 0);
	assert_true(count_prefix(dir, "pool.") <= 4);
	WAIT_FOR(stats(log).segments_recycled == 2 && pool_settled(log, dir, 4));
	struct pfile f[MAX_PFILES];
	assert_int_equal(pool_files(dir, f), 4);
	assert_int_equal(count_prefix(dir, "pool."), 4);
	/* STALE = the last LSN the segment held; same file; went through .retired. */
	for (int i = 0; i < 2; i++) {
		uint64_t stale = rc.lsns[i + 1] - 1;
		int found = 0;
		for (int k = 0; k < 4; k++)
			if (f[k].stale == stale) {
				found++;
				assert_int_equal(f[k].kind, PK_READY);
				assert_int_equal(f[k].ino, rc.ino[i]);
				assert_int_equal(f[k].size, tu_round_up(SEG, 4096));
				assert_true(fully_written(tu_path(dir, f[k].name)) != 0);
			}
		assert_int_equal(found, 1);
		int retired = 0;
		pthread_mutex_lock(&seam_mu);
		for (unsigned k = 0; k < H.n_opened_retired; k++) {
			struct pfile p;
			retired +=
			    parse_pool(H.opened_retired[k], &p) == PK_RETIRED && p.stale == stale;
		}
		pthread_mutex_unlock(&seam_mu);
		assert_int_equal(retired, 1);
	}
	for (int k = 0; k < 4; k++) {
		assert_true(f[k].ino != rc.ino[2]);
		assert_true(f[k].stale != rc.next_kept - 1);
	}
	/* The pool is full: retention now deletes. */
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	uint64_t keep = lsns[2];
	free(lsns);
	assert_int_equal(ringlog_truncate_before(log, keep), 2);
	assert_int_equal(count_prefix(dir, "pool."), 4);
	WAIT_FOR(pool_settled(log, dir, 4));
	assert_int_equal(count_prefix(dir, "pool."), 4);
	assert_int_equal(stats(log).segments_recycled, 2);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, keep, rc.last);
}

/* Rotate (waited batches) until a segment is the file of inode `ino`; each new
 * segment is the lowest-SEQ ready file.  Returns the last LSN. */
static uint64_t rotate_into(struct ringlog *log, const char *dir, uint64_t ino, unsigned keep)
{
	uint64_t last = ringlog_next_lsn(log) - 1;
	for (int b = 0; b < 1000; b++) {
		struct pfile f[MAX_PFILES];
		size_t n = pool_files(dir, f);
		assert_true(n > 0);
		size_t nseg = seg_count(dir);
		last = put_wait(log);
		if (seg_count(dir) != nseg) {
			uint64_t s = ino_of(tu_last_segment(dir));
			assert_int_equal(s, f[0].ino);
			WAIT_FOR(pool_settled(log, dir, keep));
			if (s == ino)
				return last;
		}
	}
	fail_msg("no rotation took the file of inode %" PRIu64, ino);
	return 0;
}

static void recycled_files_are_reused_and_the_log_reads_back(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	struct recycled rc;
	struct ringlog *log = recycle_three(dir, &o, &rc);
	WAIT_FOR(stats(log).segments_recycled == 2 && pool_settled(log, dir, 4));
	struct ringlog_stats st0 = stats(log);
	rotate_into(log, dir, rc.ino[0], 2);
	uint64_t last = rotate_into(log, dir, rc.ino[1], 2);
	/* Both recycled files are segments now, holding new LSNs only. */
	uint64_t s0 = 0, s1 = 0;
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	for (size_t i = 0; i < n; i++) {
		uint64_t x = ino_of(tu_segment_path(dir, lsns[i]));
		if (x == rc.ino[0])
			s0 = lsns[i];
		if (x == rc.ino[1])
			s1 = lsns[i];
	}
	free(lsns);
	assert_true(s0 > rc.last && s1 > s0);
	/* Two zero files were used before them, and one was made after the first. */
	struct ringlog_stats st = stats(log);
	assert_true(st.segments_prepared >= st0.segments_prepared + 1);
	assert_int_equal(st.segments_recycled, 2);
	assert_int_equal(st.rotation_waits, st0.rotation_waits); /* the preparer kept up */
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, rc.next_kept, last);
}

static void recycled_last_segment_recovers_cleanly(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	struct recycled rc;
	struct ringlog *log = recycle_three(dir, &o, &rc);
	WAIT_FOR(stats(log).segments_recycled == 2 && pool_settled(log, dir, 4));
	uint64_t last = rotate_into(log, dir, rc.ino[0], 2);
	last = put_wait(log);
	assert_int_equal(ringlog_close(log), 0);
	/* Precondition: the last segment is the recycled file, with old frames of this
	 * log after its data. */
	char path[4096];
	snprintf(path, sizeof(path), "%s", tu_last_segment(dir));
	assert_int_equal(ino_of(path), rc.ino[0]);
	uint64_t end = tu_data_end(path), size = tu_file_size(path);
	assert_true(size > end);
	uint8_t *buf = malloc(size);
	assert_non_null(buf);
	read_at(path, 0, buf, size);
	int stale_frames = 0;
	for (uint64_t off = tu_round_up(end, 8); off + 32 <= size; off += 8)
		if (rl_get32(buf + off) == RL_FRAME_MAGIC &&
		    rl_get64(buf + off + 24) == rl_get64(buf + 16) &&
		    rl_get64(buf + off + 16) < rc.lsns[1])
			stale_frames++;
	free(buf);
	assert_true(stale_frames > 0);
	/* Not damage: even the strictest mode accepts it, and nothing is cut. */
	struct ringlog_recovery rep;
	CHECK_OK(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep));
	assert_int_equal(rep.damage, 0);
	o.recovery_mode = RINGLOG_RECOVER_ABSOLUTE;
	log = tu_open(dir, &o);
	CHECK_OK(ringlog_recovery_report(log, &rep));
	assert_int_equal(rep.damage, 0);
	assert_int_equal(rep.cut_bytes, 0);
	assert_int_equal(rep.last_lsn, last);
	assert_int_equal(tu_file_size(path), size);
	last = put_wait(log);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, rc.next_kept, last);
}

static void retention_deletes_without_recycling(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.recycle_segments = 0;
	struct ringlog *log = tu_open(dir, &o);
	uint64_t last = grow_to(log, dir, 6);
	WAIT_FOR(pool_settled(log, dir, 2));
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	uint64_t ino[3];
	char names[3][RL_SEG_NAME_LEN + 1];
	for (int i = 0; i < 3; i++) {
		ino[i] = ino_of(tu_segment_path(dir, lsns[i]));
		rl_seg_name(names[i], lsns[i]);
	}
	uint64_t keep = lsns[3];
	free(lsns);
	seam_on();
	assert_int_equal(ringlog_truncate_before(log, keep), 3);
	for (int i = 0; i < 3; i++) {
		assert_true(seen(UNLINKED, names[i]));
		assert_false(seen(RENAMED, names[i]));
	}
	WAIT_FOR(pool_settled(log, dir, 2));
	struct pfile f[MAX_PFILES];
	assert_int_equal(pool_files(dir, f), 2);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(f[k].stale, 0);
		for (int i = 0; i < 3; i++)
			assert_true(f[k].ino != ino[i]);
	}
	assert_int_equal(stats(log).segments_recycled, 0);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, keep, last);
}

/* Moving a removed segment into the pool fails: truncate_before says which and
 * removes nothing more; without the fault it finishes the job. */
static void failed_move_into_the_pool_is_reported(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.recycle_segments = 2;
	struct ringlog *log = tu_open(dir, &o);
	uint64_t last = grow_to(log, dir, 6);
	WAIT_FOR(pool_settled(log, dir, 2));
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, lsns[0]);
	H.fail_op = RL_FOP_RENAME;
	H.fail_err = -EIO;
	snprintf(H.fail_prefix, sizeof(H.fail_prefix), "%s", name);
	seam_on();
	assert_int_equal(ringlog_truncate_before(log, lsns[3]), -EIO);
	const char *msg = ringlog_last_error();
	if (!strstr(msg, name) || !strstr(msg, "pool"))
		fail_msg("message should name %s and the pool: \"%s\"", name, msg);
	for (int i = 0; i < 3; i++)
		assert_true(access(tu_segment_path(dir, lsns[i]), F_OK) == 0);
	assert_int_equal(count_kind(dir, PK_RETIRED), 0);
	assert_int_equal(ringlog_error(log), 0);
	rl_file_faults = NULL;
	assert_int_equal(ringlog_truncate_before(log, lsns[3]), 3);
	WAIT_FOR(stats(log).segments_recycled == 2 && pool_settled(log, dir, 4));
	uint64_t keep = lsns[3];
	free(lsns);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, keep, last);
}

/* prepared 1 + recycle 1: the pool holds at most 2 files, also when retention runs
 * while the preparer is in the middle of a new file. */
static void pool_stays_bounded_while_the_preparer_is_busy(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = 1;
	o.recycle_segments = 1;
	struct ringlog *log = tu_open(dir, &o);
	grow_to(log, dir, 6);
	WAIT_FOR(pool_settled(log, dir, 1));
	seam_on();
	pthread_mutex_lock(&seam_mu);
	H.hold_tmp = 1;
	pthread_mutex_unlock(&seam_mu);
	/* A rotation takes the ready file; the preparer starts a new one and is held. */
	uint64_t last = grow_to(log, dir, seg_count(dir) + 1);
	WAIT_FOR(seam_get(&H.held) == 1);
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	uint64_t keep = lsns[3];
	free(lsns);
	assert_int_equal(ringlog_truncate_before(log, keep), 3);
	size_t during = count_prefix(dir, "pool.");
	seam_release();
	WAIT_FOR(pool_settled(log, dir, 1));
	size_t after = count_prefix(dir, "pool.");
	uint64_t recycled = stats(log).segments_recycled;
	assert_int_equal(ringlog_close(log), 0);
	if (during > 2 || after > 2)
		fail_msg("prepared_segments 1 + recycle_segments 1, but the pool held %zu files "
			 "(%zu once the preparer finished; %" PRIu64 " recycled)",
			 during, after, recycled);
	read_back(dir, keep, last);
}

/* ---- options ---- */

static void expect_einval(const char *dir, const struct ringlog_options *o, const char *w1,
			  const char *w2)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/log", dir);
	struct ringlog *log = (struct ringlog *)&log; /* not NULL: open must clear it */
	assert_int_equal(ringlog_open(path, o, &log), -EINVAL);
	assert_null(log);
	const char *msg = ringlog_last_error();
	if (!strstr(msg, w1) || (w2 && !strstr(msg, w2)))
		fail_msg("message should name %s%s%s: \"%s\"", w1, w2 ? " and " : "", w2 ? w2 : "",
			 msg);
	assert_int_equal(access(path, F_OK), -1); /* refused before touching anything */
}

/* Without prepared files there is no pool to recycle into: recycle_segments is
 * accepted (it is on by default) and retention deletes. */
static void recycling_without_a_pool_deletes(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = 0;
	o.recycle_segments = 1;
	struct ringlog *log = tu_open(dir, &o);
	uint64_t last = grow_to(log, dir, 4);
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	char first[RL_SEG_NAME_LEN + 1];
	rl_seg_name(first, lsns[0]);
	uint64_t keep = lsns[1];
	free(lsns);
	seam_on();
	assert_int_equal(ringlog_truncate_before(log, keep), 1);
	assert_true(seen(UNLINKED, first));
	assert_false(seen(RENAMED, first));
	struct pfile f[MAX_PFILES];
	assert_int_equal(pool_files(dir, f), 0);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, keep, last);
}

static void pool_sizes_are_bounded(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = RINGLOG_MAX_POOL_FILES + 1;
	expect_einval(dir, &o, "prepared_segments", "64");
	tu_options(&o, SEG, RING);
	o.recycle_segments = RINGLOG_MAX_POOL_FILES + 1;
	expect_einval(dir, &o, "recycle_segments", "64");
	/* The ceilings themselves are accepted. */
	tu_options(&o, SEG, RING);
	o.prepared_segments = RINGLOG_MAX_POOL_FILES;
	o.recycle_segments = RINGLOG_MAX_POOL_FILES;
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(ringlog_close(log), 0);
}

static void io_mode_is_bounded(void **state)
{
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.io_mode = RINGLOG_IO_BUFFERED + 1;
	expect_einval(*state, &o, "io_mode", "3");
	o.io_mode = UINT32_MAX;
	expect_einval(*state, &o, "io_mode", "4294967295");
}

/* ---- io_mode ---- */

static void buffered_frames_start_at_64(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.io_mode = RINGLOG_IO_BUFFERED;
	struct ringlog *log = tu_open(dir, &o);
	struct ringlog_stats st = stats(log);
	assert_int_equal(st.direct_io, 0);
	assert_int_equal(st.io_align, 1);
	uint64_t last = grow_to(log, dir, 3);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s", tu_segment_path(dir, lsns[i]));
		assert_int_equal(tu_data_start(path), RL_SEG_HEADER_BYTES);
		uint8_t f[32];
		read_at(path, RL_SEG_HEADER_BYTES, f, sizeof(f));
		assert_memory_equal(f, "RLFR", 4); /* a frame, no pad */
		assert_int_equal(rl_get64(f + 16), lsns[i]);
	}
	free(lsns);
	read_back(dir, 1, last);
}

/* Direct-I/O alignment of files in dir as the design states it: statx DIOALIGN (the
 * larger of its offset and memory alignments), at least 512; 0 if not reported. */
static uint32_t statx_align(const char *dir)
{
	struct statx sx;
	if (statx(AT_FDCWD, tu_path(dir, "LOCK"), 0, STATX_DIOALIGN, &sx) != 0 ||
	    !(sx.stx_mask & STATX_DIOALIGN) || !sx.stx_dio_offset_align)
		return 0;
	uint32_t a = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align
								    : sx.stx_dio_mem_align;
	return a < 512 ? 512 : a;
}

static void auto_writes_direct_with_a_pad_before_the_first_frame(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	struct ringlog *log = tu_open(dir, &o);
	struct ringlog_stats st = stats(log);
	assert_int_equal(st.direct_io, 1);
	uint32_t want = statx_align(dir);
	if (want)
		assert_int_equal(st.io_align, want);
	assert_true(st.io_align >= 512 && (st.io_align & (st.io_align - 1)) == 0);
	uint64_t a = st.io_align;
	grow_to(log, dir, 3);
	assert_int_equal(ringlog_close(log), 0);
	log = tu_open(dir, &o); /* continues the last segment, then rotates again */
	uint64_t last = grow_to(log, dir, 5);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s", tu_segment_path(dir, lsns[i]));
		uint64_t d = tu_data_start(path), base = tu_round_up(96, a);
		assert_true(d >= base && d < base + a && d % 8 == 0);
		uint8_t h[64], pad[32], f[32];
		read_at(path, 0, h, sizeof(h));
		read_at(path, RL_SEG_HEADER_BYTES, pad, sizeof(pad));
		read_at(path, d, f, sizeof(f));
		assert_memory_equal(pad, "RLPD", 4);
		assert_int_equal(rl_get32(pad + 4), rl_crc32c(pad + 8, 24));
		assert_int_equal(rl_get32(pad + 8), d - RL_SEG_HEADER_BYTES);
		assert_int_equal(rl_get32(pad + 12), 0);
		assert_int_equal(rl_get64(pad + 16), lsns[i]);
		assert_int_equal(rl_get64(pad + 24), rl_get64(h + 16)); /* the log id */
		assert_memory_equal(f, "RLFR", 4);
		assert_int_equal(rl_get64(f + 16), lsns[i]);
	}
	free(lsns);
	read_back(dir, 1, last);
}

static void auto_falls_back_to_buffered_when_o_direct_is_refused(void **state)
{
	const char *dir = *state;
	H.refuse_direct = 1;
	seam_on();
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	struct ringlog *log = tu_open(dir, &o);
	assert_true(seam_get(&H.refused_lock_probe));
	struct ringlog_stats st = stats(log);
	assert_int_equal(st.direct_io, 0);
	assert_int_equal(st.io_align, 1);
	uint64_t last = grow_to(log, dir, 3);
	WAIT_FOR(pool_settled(log, dir, 2));
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(tu_data_start(tu_last_segment(dir)), RL_SEG_HEADER_BYTES);
	read_back(dir, 1, last);
}

static void direct_fails_when_o_direct_is_refused(void **state)
{
	const char *dir = *state;
	H.refuse_direct = 1;
	seam_on();
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.io_mode = RINGLOG_IO_DIRECT;
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	assert_null(log);
	const char *msg = ringlog_last_error();
	if (!strstr(msg, "O_DIRECT") || !strstr(msg, "RINGLOG_IO_AUTO") || !strstr(msg, dir))
		fail_msg("message should name the directory, O_DIRECT and RINGLOG_IO_AUTO: \"%s\"",
			 msg);
	assert_int_equal(seg_count(dir), 0);
	assert_int_equal(count_prefix(dir, "pool."), 0);
}

/* ---- readers and recycled files ---- */

/* A reader in the first segment; retention recycles it (and the next three) while the
 * reader is behind.  With `reuse`, rotations then write new segments into them. */
static void lagging_reader(const char *dir, int reuse)
{
	struct ringlog_options o;
	tu_options(&o, SEG, RING);
	o.prepared_segments = 1;
	o.recycle_segments = 4;
	struct ringlog *log = tu_open(dir, &o);
	uint64_t last = grow_to(log, dir, 8);
	WAIT_FOR(pool_settled(log, dir, 1));
	uint64_t *lsns;
	tu_segments(dir, &lsns);
	uint64_t first_end = lsns[1] - 1, keep = lsns[4];
	uint64_t ino0 = ino_of(tu_segment_path(dir, lsns[0]));
	free(lsns);
	struct ringlog_reader *r;
	CHECK_OK(ringlog_reader_open(dir, 0, &r));
	struct ringlog_record rec;
	assert_int_equal(ringlog_reader_next(r, &rec), 1);
	check_record(&rec);
	assert_int_equal(ringlog_truncate_before(log, keep), 4);
	WAIT_FOR(stats(log).segments_recycled == 4 && pool_settled(log, dir, 5));
	if (reuse) {
		/* Other batch sizes, so the new frames do not line up with the old ones. */
		for (int b = 0; b < 2000; b++) {
			size_t nseg = seg_count(dir);
			last = put(log, 3, 300);
			CHECK_OK(ringlog_wait(log, last));
			if (seg_count(dir) != nseg && ino_of(tu_last_segment(dir)) == ino0)
				break;
		}
		assert_int_equal(ino_of(tu_last_segment(dir)), ino0);
		last = put(log, 3, 300);
		CHECK_OK(ringlog_wait(log, last));
	}
	/* The reader finishes the segment it has open, then learns the rest is gone. */
	uint64_t want = 2;
	int got;
	while ((got = ringlog_reader_next(r, &rec)) == 1) {
		assert_int_equal(rec.lsn, want);
		check_record(&rec);
		want++;
	}
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", ringlog_last_error());
	ringlog_reader_close(r);
	assert_int_equal(ringlog_close(log), 0);
	if (got != -ENOENT || !strstr(msg, "retention"))
		fail_msg("reader behind retention (segment recycled%s): got %d (%s) after LSN "
			 "%" PRIu64 ", expected -ENOENT about retention: \"%s\"",
			 reuse ? " and reused" : "", got, ringlog_strerror(got), want - 1, msg);
	assert_int_equal(want - 1, first_end);
	read_back(dir, keep, last);
}

static void lagging_reader_on_a_recycled_segment_gets_enoent(void **state)
{
	lagging_reader(*state, 0);
}

static void lagging_reader_on_a_reused_segment_gets_enoent(void **state)
{
	lagging_reader(*state, 1);
}

/* A restored older copy of the directory, with a pool file left from the newer log:
 * it holds frames of LSNs the log will write again, so open must drop it. */
static void pool_file_from_a_newer_log_is_removed_at_open(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	uint64_t last = closed_log(dir, &o, 4);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	uint64_t gone = lsns[n - 1];
	free(lsns);
	/* The newer log's last segment becomes a ready pool file (STALE = its last LSN);
	 * the older copy ends before it. */
	char seg[4096], name[64];
	snprintf(seg, sizeof(seg), "%s", tu_segment_path(dir, gone));
	snprintf(name, sizeof(name), "%s", pool_name(500, last, "ready"));
	assert_int_equal(rename(seg, tu_path(dir, name)), 0);
	tu_truncate(tu_path(dir, name), tu_round_up(SEG, 4096));
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(ringlog_next_lsn(log), gone);
	assert_false(exists(dir, name));
	/* The LSNs are written again, with other contents; only those are read. */
	for (uint64_t l = gone; l <= last; l++)
		M.at[l].tag = 0;
	last = grow_to(log, dir, n + 1);
	assert_int_equal(ringlog_close(log), 0);
	log = tu_open(dir, &o);
	struct ringlog_recovery rep;
	CHECK_OK(ringlog_recovery_report(log, &rep));
	assert_int_equal(rep.damage, 0);
	assert_int_equal(rep.last_lsn, last);
	assert_int_equal(ringlog_close(log), 0);
	read_back(dir, 1, last);
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    POOL_TEST(new_log_prepares_zeroed_files),
	    POOL_TEST(rotations_take_prepared_files_without_waiting),
	    POOL_TEST(no_pool_files_without_prepared_segments),
	    POOL_TEST(open_removes_leftover_tmp),
	    POOL_TEST(open_removes_leftover_segment_new),
	    POOL_TEST(open_removes_pool_files_with_stale_at_or_above_next_lsn),
	    POOL_TEST(open_remakes_ready_files_of_the_wrong_size),
	    POOL_TEST(open_leaves_other_files_alone),
	    POOL_TEST(open_leaves_pool_lookalikes_alone),
	    POOL_TEST(pool_lookalike_of_the_right_size_is_not_used),
	    POOL_TEST(open_without_a_pool_removes_unfinished_files),
	    POOL_TEST(stock_taking_failure_names_the_file),
	    POOL_TEST(failed_preparation_fails_only_the_rotation_that_needs_it),
	    POOL_TEST(rotation_retries_a_failed_preparation),
	    POOL_TEST(retention_moves_removed_segments_into_the_pool),
	    POOL_TEST(recycled_files_are_reused_and_the_log_reads_back),
	    POOL_TEST(recycled_last_segment_recovers_cleanly),
	    POOL_TEST(retention_deletes_without_recycling),
	    POOL_TEST(failed_move_into_the_pool_is_reported),
	    POOL_TEST(pool_stays_bounded_while_the_preparer_is_busy),
	    POOL_TEST(recycling_without_a_pool_deletes),
	    POOL_TEST(pool_sizes_are_bounded),
	    POOL_TEST(io_mode_is_bounded),
	    POOL_TEST(buffered_frames_start_at_64),
	    POOL_TEST(auto_writes_direct_with_a_pad_before_the_first_frame),
	    POOL_TEST(auto_falls_back_to_buffered_when_o_direct_is_refused),
	    POOL_TEST(direct_fails_when_o_direct_is_refused),
	    POOL_TEST(lagging_reader_on_a_recycled_segment_gets_enoent),
	    POOL_TEST(lagging_reader_on_a_reused_segment_gets_enoent),
	    POOL_TEST(pool_file_from_a_newer_log_is_removed_at_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
