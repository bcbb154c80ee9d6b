/*
 * Faults injected through the file seam (rl_file_faults, src/file_io.h): every file
 * operation the library makes on the log directory fails on purpose, once, at each
 * place it is used, and the library does what it promises:
 *  - the segment preparer (its own thread): a failed preparation removes its file and
 *    is not fatal while the current segment has room; a rotation that needs a file
 *    asks it once more, then fails the log with its error;
 *  - rotation (the consumer): fail-stop with the error, nothing acknowledged lost,
 *    and recovery finds a log that a reopen continues;
 *  - open: the O_DIRECT probe and its fallback, the last segment, the first segment
 *    of a new log, the pool's stock-taking, a new directory's entry;
 *  - recovery's cut of a torn tail (and the sync before it, a torn header's rewrite):
 *    open fails and changes nothing else; a later open repairs;
 *  - retention: unlink, the rename into the pool, the directory fsync;
 *  - the durable LSN published in LOCK at open (write, sync): open fails;
 *  - replication slots: creating (write, sync, rename, directory fsync), advancing,
 *    dropping: the call fails, and no slot or half a slot is left behind.
 * Every test checks the -errno, that ringlog_last_error() names the operation and the
 * file, that what was acknowledged reads back, and that no file descriptor leaks.
 *
 * Faults fire on the caller's thread, the consumer or the preparer: the fault table is
 * filled before it is published (release) and read after (acquire); its counters are
 * atomics.  Tests wait for other threads with bounded polling only.
 */
#include "testutil.h"

#include "errors.h"
#include "file_io.h"
#include "format.h"
#include "log_internal.h"
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- The fault table ---- */

enum on_thread { ANY_THREAD = 0, ON_THREAD, OFF_THREAD };

struct fault {
	enum rl_file_op op;
	const char *name;     /* substring the file name must contain; NULL: any name */
	int nth;	      /* first matching occurrence that fails (1-based) */
	int err;	      /* what it returns (-errno) */
	int times;	      /* occurrences failed from nth on; 0: every one */
	int flags;	      /* RL_FOP_OPEN: open flags that must all be set (0: any) */
	enum on_thread where; /* thread filter: tid is, or is not, the caller */
	pthread_t tid;
};

#define MAX_FAULTS 8

static struct {
	struct {
		struct fault f;
		char pat[64];	     /* copy of f.name */
		_Atomic int seen;    /* matching occurrences */
		_Atomic int fired;   /* failures injected */
		_Atomic int cleared; /* no longer applies */
		char name[64];	     /* file of the last failure (written before `fired`) */
	} slot[MAX_FAULTS];
	_Atomic int n;			      /* slots published */
	_Atomic unsigned calls[RL_FOP_COUNT]; /* operations seen, per op */
} ft;

static int ft_fail(void *arg, enum rl_file_op op, const char *name, uint64_t off, uint64_t len)
{
	(void)arg;
	(void)off;
	atomic_fetch_add(&ft.calls[op], 1);
	int n = atomic_load_explicit(&ft.n, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		const struct fault *f = &ft.slot[i].f;
		if (f->op != op || atomic_load(&ft.slot[i].cleared))
			continue;
		if (f->name && (!name || !strstr(name, ft.slot[i].pat)))
			continue;
		if (op == RL_FOP_OPEN && (len & (uint64_t)(unsigned)f->flags) != (unsigned)f->flags)
			continue;
		if (f->where != ANY_THREAD &&
		    (pthread_equal(pthread_self(), f->tid) != 0) != (f->where == ON_THREAD))
			continue;
		int k = atomic_fetch_add(&ft.slot[i].seen, 1) + 1;
		if (k < f->nth || (f->times && k >= f->nth + f->times))
			continue;
		snprintf(ft.slot[i].name, sizeof(ft.slot[i].name), "%s", name ? name : "");
		atomic_fetch_add_explicit(&ft.slot[i].fired, 1, memory_order_release);
		return f->err;
	}
	return 0;
}

static struct rl_file_faults hooks = {.fail = ft_fail};

static struct fault fault(enum rl_file_op op, const char *name, int nth, int err, int times)
{
	return (struct fault){.op = op, .name = name, .nth = nth, .err = err, .times = times};
}

/* Only where the open flags include `flags`. */
static struct fault with_flags(struct fault f, int flags)
{
	f.flags = flags;
	return f;
}

/* Only on (or off) thread `tid`. */
static struct fault on(struct fault f, enum on_thread where, pthread_t tid)
{
	f.where = where;
	f.tid = tid;
	return f;
}

/* Publish a fault; returns its slot.  Only the test thread adds. */
static int add_fault(struct fault f)
{
	int i = atomic_load(&ft.n);
	assert_true(i < MAX_FAULTS);
	if (f.nth == 0)
		f.nth = 1;
	ft.slot[i].f = f;
	if (f.name)
		snprintf(ft.slot[i].pat, sizeof(ft.slot[i].pat), "%s", f.name);
	atomic_store_explicit(&ft.n, i + 1, memory_order_release);
	return i;
}

static int fired(int slot)
{
	return atomic_load_explicit(&ft.slot[slot].fired, memory_order_acquire);
}

/* The file the last failure of `slot` was injected on (read once it fired). */
static const char *fired_on(int slot)
{
	assert_true(fired(slot) > 0);
	return ft.slot[slot].name;
}

/* Operations of kind `op` the library made since the last reset_ops(). */
static unsigned ops(enum rl_file_op op)
{
	return atomic_load(&ft.calls[op]);
}

/* Only while no log is open. */
static void reset_ops(void)
{
	for (int i = 0; i < RL_FOP_COUNT; i++)
		atomic_store(&ft.calls[i], 0);
}

static void clear_faults(void)
{
	int n = atomic_load(&ft.n);
	for (int i = 0; i < n; i++)
		atomic_store(&ft.slot[i].cleared, 1);
}

/* ---- Helpers ---- */

/* Poll (1 ms steps, 10 s at most) until cond holds; fail the test otherwise. */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		for (int w_ = 0; w_ < 10000 && !(cond); w_++)                                      \
			usleep(1000);                                                              \
		if (!(cond))                                                                       \
			fail_msg("timed out waiting for %s", #cond);                               \
	} while (0)

/* Bound on waiting for a failure, so that a library that does not fail does not
 * hang the test. */
#define FAIL_TIMEOUT_NS (10ll * 1000 * 1000 * 1000)

#define SEGMENT 16384u
#define BIG 14000u /* a record that never fits after anything else in a segment */

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void options(struct ringlog_options *o)
{
	tu_options(o, SEGMENT, 1 << 16);
}

static const char *seg_name(uint64_t lsn)
{
	static char buf[RL_SEG_NAME_LEN + 1];
	rl_seg_name(buf, lsn);
	return buf;
}

static size_t nsegments(const char *dir)
{
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	free(lsns);
	return n;
}

/* Files named pool.* in dir whose name contains `part` (NULL: all). */
static int pool_files(const char *dir, const char *part)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "pool.", 5) == 0 && (!part || strstr(de->d_name, part)))
			n++;
	closedir(d);
	return n;
}

static void drop_pool_files(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "pool.", 5) == 0)
			assert_int_equal(unlink(tu_path(dir, de->d_name)), 0);
	closedir(d);
}

static int exists(const char *dir, const char *name)
{
	return access(tu_path(dir, name), F_OK) == 0;
}

/* A saved ringlog_last_error() must contain every given part (NULL parts are
 * skipped). */
static void expect_in(const char *msg, const char *a, const char *b, const char *c)
{
	const char *need[] = {a, b, c};
	for (int i = 0; i < 3; i++)
		if (need[i] && !strstr(msg, need[i]))
			fail_msg("ringlog_last_error() \"%s\" does not mention \"%s\"", msg,
				 need[i]);
}

static void expect_detail(const char *a, const char *b, const char *c)
{
	expect_in(ringlog_last_error(), a, b, c);
}

/* ringlog_last_error() now, to check after more calls. */
static const char *save_detail(char *buf, size_t size)
{
	snprintf(buf, size, "%s", ringlog_last_error());
	return buf;
}

/* The preparer is idle after a failed preparation. */
static int preparer_failed(struct ringlog *log)
{
	pthread_mutex_lock(&log->pool.lock);
	int failed = log->pool.error != 0 && !log->pool.busy;
	pthread_mutex_unlock(&log->pool.lock);
	return failed;
}

static uint64_t stat_of(struct ringlog *log, size_t field)
{
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	uint64_t v;
	memcpy(&v, (const char *)&st + field, sizeof(v));
	return v;
}
#define STAT(log, f) stat_of(log, offsetof(struct ringlog_stats, f))

/* A new log of one segment holding one batch of 8 x 500 bytes (LSNs 1..8), closed. */
static uint64_t make_log(const char *dir, const struct ringlog_options *o)
{
	struct ringlog *log = tu_open(dir, o);
	uint64_t a = tu_append_tagged(log, 1, 8, 500) + 7;
	assert_int_equal(ringlog_wait(log, a), 0);
	assert_int_equal(ringlog_close(log), 0);
	return a;
}

/*
 * The log failed with `err` at batch `x`, after `acked` was acknowledged: every side
 * reports it (with a detail containing the given parts), nothing more is
 * acknowledged, close returns it.
 */
static void expect_fail_stop(struct ringlog *log, uint64_t x, uint64_t acked, int err,
			     const char *a, const char *b, const char *c)
{
	assert_int_equal(ringlog_wait_timeout(log, x, FAIL_TIMEOUT_NS), err);
	expect_detail(a, b, c);
	rl_set_last_error("");
	assert_int_equal(ringlog_error(log), err);
	expect_detail(a, b, c);
	assert_int_equal(ringlog_durable_lsn(log), acked);
	assert_int_equal(ringlog_wait(log, acked), 0); /* what was durable stays so */
	struct iovec iov = {"late", 4};
	uint64_t next = ringlog_next_lsn(log);
	assert_int_equal(ringlog_append(log, &iov, 1, NULL), err);
	assert_int_equal(ringlog_next_lsn(log), next);
	assert_int_equal(ringlog_durable_lsn(log), acked);
	assert_int_equal(ringlog_close(log), err);
}

/*
 * Reopen without faults: the log holds [first, next) -- every acknowledged batch --
 * appends continue (through a rotation), and everything reads back, the sealed
 * segments exact (ABSOLUTE accepts the log).  *rep: what recovery found.
 */
static void reopen_continues(const char *dir, const struct ringlog_options *o, uint64_t first,
			     uint64_t next, struct ringlog_recovery *rep)
{
	clear_faults();
	struct ringlog *log = tu_open(dir, o);
	ringlog_recovery_report(log, rep);
	assert_int_equal(ringlog_next_lsn(log), next);
	uint64_t n, f, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &f, &last, 1), 0);
	assert_int_equal(f, first);
	assert_int_equal(last, next - 1);
	tu_append_tagged(log, 90, 3, 100);
	tu_append_tagged(log, 91, 1, BIG);
	tu_append_tagged(log, 92, 1, BIG); /* two never share a segment: a rotation */
	uint64_t c = tu_append_tagged(log, 93, 3, 100) + 2;
	assert_int_equal(ringlog_wait(log, c), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(tu_read_all(dir, 0, &n, &f, &last, 1), 0);
	assert_int_equal(f, first);
	assert_int_equal(last, c);
	assert_int_equal(n, c - first + 1);
	struct ringlog_recovery check;
	assert_int_equal(ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &check), 0);
}

/* A directory's files: names, sizes and a hash of their bytes, sorted by name. */
struct snap {
	size_t n;
	char name[32][64];
	uint64_t size[32], hash[32];
};

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void snapshot(const char *dir, struct snap *s)
{
	memset(s, 0, sizeof(*s));
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.') {
			assert_true(s->n < 32);
			assert_true(strlen(de->d_name) < 64);
			memcpy(s->name[s->n++], de->d_name, strlen(de->d_name) + 1);
		}
	closedir(d);
	qsort(s->name, s->n, 64, cmp_name);
	for (size_t i = 0; i < s->n; i++) {
		FILE *f = fopen(tu_path(dir, s->name[i]), "rb");
		assert_non_null(f);
		uint64_t h = 1469598103934665603ull, size = 0;
		int ch;
		while ((ch = fgetc(f)) != EOF) {
			h = (h ^ (uint8_t)ch) * 1099511628211ull;
			size++;
		}
		fclose(f);
		s->size[i] = size;
		s->hash[i] = h;
	}
}

/* Same files with the same bytes, but for the bytes of file `skip` (NULL: none). */
static void expect_same(const struct snap *a, const struct snap *b, const char *skip)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_string_equal(a->name[i], b->name[i]);
		if (skip && strcmp(a->name[i], skip) == 0)
			continue;
		if (a->size[i] != b->size[i] || a->hash[i] != b->hash[i])
			fail_msg("%s changed", a->name[i]);
	}
}

static int setup(void **state)
{
	memset(&ft, 0, sizeof(ft));
	rl_file_faults = &hooks;
	*state = tu_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	rl_file_faults = NULL;
	tu_rmrf(*state);
	free(*state);
	return 0;
}

/* ---- The preparer ---- */

/*
 * The preparer fails (fault `f`, from the first preparation of a reopened log whose
 * pool files were removed, on every try) with `err` while `what` on a pool.*.tmp
 * file: the log goes on in its current segment; the file is gone; the rotation that
 * needs a file fails the log with that error; a reopen continues.
 */
static void preparer_fails(const char *dir, struct fault f, const char *what)
{
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t acked = make_log(dir, &o);
	drop_pool_files(dir); /* so that the reopened log's preparer has work at once */
	int slot = add_fault(f);
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(fired(slot) >= 1 && preparer_failed(log));
	assert_int_equal(pool_files(dir, NULL), 0); /* the partial file is gone */
	assert_int_equal(ringlog_error(log), 0);

	/* Nothing fails while the segment has room. */
	for (unsigned i = 0; i < 4; i++) {
		uint64_t l = tu_append_tagged(log, 10 + i, 1, 500);
		assert_int_equal(ringlog_wait(log, l), 0);
		acked = l;
	}
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(STAT(log, rotations), 0);
	assert_int_equal(nsegments(dir), 1);

	/* The rotation asks the preparer once more; it fails again: fail-stop. */
	int before = fired(slot);
	uint64_t x = tu_append_tagged(log, 20, 1, BIG);
	assert_int_equal(ringlog_wait_timeout(log, x, FAIL_TIMEOUT_NS), f.err);
	assert_int_equal(fired(slot), before + 1);
	expect_detail("preparing", what, fired_on(slot));
	expect_detail("pool.", ".tmp", NULL);
	expect_fail_stop(log, x, acked, f.err, "preparing", what, fired_on(slot));
	assert_int_equal(pool_files(dir, NULL), 0);
	assert_int_equal(nsegments(dir), 1);

	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, x, &rep);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(rep.cut_bytes, 0);
	assert_int_equal(fd_count(), fds);
}

static void preparer_open_enospc(void **state)
{
	preparer_fails(*state, fault(RL_FOP_OPEN, ".tmp", 1, -ENOSPC, 0), "opening");
}

static void preparer_fallocate_enospc(void **state)
{
	preparer_fails(*state, fault(RL_FOP_FALLOCATE, ".tmp", 1, -ENOSPC, 0), "allocating");
}

static void preparer_zero_fill_enospc(void **state)
{
	preparer_fails(*state, fault(RL_FOP_PWRITE, ".tmp", 1, -ENOSPC, 0), "zero-filling");
}

static void preparer_zero_fill_eio(void **state)
{
	preparer_fails(*state, fault(RL_FOP_PWRITE, ".tmp", 1, -EIO, 0), "zero-filling");
}

static void preparer_fdatasync_eio(void **state)
{
	preparer_fails(*state, fault(RL_FOP_FDATASYNC, ".tmp", 1, -EIO, 0), "fdatasync");
}

static void preparer_rename_eio(void **state)
{
	preparer_fails(*state, fault(RL_FOP_RENAME, ".tmp", 1, -EIO, 0), "renaming");
}

static void preparer_dirsync_eio(void **state)
{
	/* The only directory syncs while the log is open and not rotating are the
	 * preparer's: not this thread's. */
	preparer_fails(*state,
		       on(fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 0), OFF_THREAD, pthread_self()),
		       "fsync of the directory");
}

/* The fault is gone when the rotation asks the preparer once more: no failure. */
static void preparer_fault_clears_before_rotation(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	make_log(dir, &o);
	drop_pool_files(dir);
	int slot = add_fault(fault(RL_FOP_FALLOCATE, ".tmp", 1, -ENOSPC, 1));
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(fired(slot) == 1 && preparer_failed(log));
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(ringlog_wait(log, tu_append_tagged(log, 10 + i, 1, 500)), 0);
	assert_int_equal(STAT(log, rotations), 0);
	uint64_t x = tu_append_tagged(log, 20, 1, BIG);
	assert_int_equal(ringlog_wait(log, x), 0);
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(fired(slot), 1);
	assert_int_equal(STAT(log, rotations), 1);
	assert_true(STAT(log, rotation_waits) >= 1); /* it waited for the retry */
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(nsegments(dir), 2);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, x);
	assert_int_equal(fd_count(), fds);
}

/* A pool file that refuses O_DIRECT is zero-filled buffered: nothing fails. */
static void preparer_direct_refused_falls_back(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	make_log(dir, &o);
	drop_pool_files(dir);
	int slot = add_fault(with_flags(fault(RL_FOP_OPEN, ".tmp", 1, -EINVAL, 0), O_DIRECT));
	struct ringlog *log = tu_open(dir, &o);
	if (!STAT(log, direct_io)) {
		ringlog_close(log);
		skip(); /* the filesystem refuses O_DIRECT anyway */
	}
	WAIT_FOR(STAT(log, prepared_ready) == 2);
	assert_true(fired(slot) >= 2);
	assert_int_equal(pool_files(dir, ".ready"), 2);
	uint64_t x = tu_append_tagged(log, 20, 1, BIG);
	assert_int_equal(ringlog_wait(log, x), 0);
	assert_int_equal(STAT(log, rotations), 1);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(n, x);
	assert_int_equal(fd_count(), fds);
}

/* Four segments, one batch of 1 x 9000 bytes each (two never share a 16 KiB
 * segment): LSN k in segment k. */
static struct ringlog *four_segments(const char *dir, const struct ringlog_options *o)
{
	struct ringlog *log = tu_open(dir, o);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(ringlog_wait(log, tu_append_tagged(log, i + 1, 1, 9000)), 0);
	assert_int_equal(nsegments(dir), 4);
	return log;
}

/* Making a recycled file ready fails (its rename to .ready): the file is dropped,
 * nothing fails, and later rotations get files. */
static void preparer_recycled_file_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	o.recycle_segments = 2;
	struct ringlog *log = four_segments(dir, &o);
	WAIT_FOR(STAT(log, prepared_ready) == 2);
	int slot = add_fault(
	    on(fault(RL_FOP_RENAME, ".retired", 1, -EIO, 1), ON_THREAD, log->pool.thread));
	assert_int_equal(ringlog_truncate_before(log, 3), 2);
	WAIT_FOR(fired(slot) == 1 && !exists(dir, fired_on(slot)));
	assert_int_equal(pool_files(dir, ".tmp"), 0);
	assert_int_equal(ringlog_error(log), 0);
	uint64_t last = 4;
	for (unsigned i = 0; i < 4; i++) { /* four rotations */
		last = tu_append_tagged(log, 10 + i, 1, 9000);
		assert_int_equal(ringlog_wait(log, last), 0);
	}
	assert_int_equal(ringlog_error(log), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(fired(slot), 1);
	uint64_t n, first, end;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &end, 1), 0);
	assert_int_equal(first, 3);
	assert_int_equal(end, last);
	assert_int_equal(fd_count(), fds);
}

/* Retention frees space while the preparer is stopped after a failure: it tries
 * again at once, and the next rotations find files ready. */
static void preparer_retries_when_retention_frees_space(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	assert_int_equal(ringlog_close(four_segments(dir, &o)), 0);
	drop_pool_files(dir);
	int slot = add_fault(fault(RL_FOP_FALLOCATE, ".tmp", 1, -ENOSPC, 1));
	struct ringlog *log = tu_open(dir, &o);
	WAIT_FOR(fired(slot) == 1 && preparer_failed(log));
	assert_int_equal(STAT(log, prepared_ready), 0);
	assert_int_equal(ringlog_truncate_before(log, 3), 2);
	WAIT_FOR(STAT(log, prepared_ready) == 2); /* no rotation asked */
	tu_append_tagged(log, 10, 1, BIG);
	uint64_t y = tu_append_tagged(log, 11, 1, BIG);
	assert_int_equal(ringlog_wait(log, y), 0);
	assert_int_equal(STAT(log, rotations), 2);
	assert_int_equal(STAT(log, rotation_waits), 0);
	assert_int_equal(ringlog_close(log), 0);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(first, 3);
	assert_int_equal(last, y);
	assert_int_equal(fd_count(), fds);
}

/* ---- Rotation (the consumer) ---- */

enum rot_after { NO_NEW_SEGMENT, NEW_SEGMENT };

/*
 * A rotation fails (fault `f`, on the consumer thread) with `err`; the detail names
 * `what` and the segment `who` (the new one: LSN 9; the sealed one: LSN 1).  The log
 * fails stop at the batch that needed the rotation; a reopen finds a clean log
 * (with the new segment, empty, if it was renamed into place) and continues.
 */
static void rotation_fails(const char *dir, struct ringlog_options *o, struct fault f, int err,
			   const char *what, uint64_t who, enum rot_after after)
{
	int fds = fd_count();
	struct ringlog *log = tu_open(dir, o);
	uint64_t a = tu_append_tagged(log, 1, 8, 500) + 7;
	assert_int_equal(ringlog_wait(log, a), 0);
	if (o->prepared_segments)
		WAIT_FOR(STAT(log, prepared_ready) == o->prepared_segments);
	f.where = ON_THREAD;
	f.tid = log->consumer;
	int slot = add_fault(f);
	uint64_t x = tu_append_tagged(log, 2, 1, BIG);
	assert_int_equal(x, a + 1);
	char name[RL_SEG_NAME_LEN + 1];
	snprintf(name, sizeof(name), "%s", seg_name(who));
	expect_fail_stop(log, x, a, err, what, name, NULL);
	assert_int_equal(fired(slot), 1);
	clear_faults();
	assert_int_equal(nsegments(dir), after == NEW_SEGMENT ? 2 : 1);
	assert_int_equal(pool_files(dir, ".tmp"), 0);
	assert_false(exists(dir, RL_SEG_BUILD_NAME));

	struct ringlog_recovery rep;
	reopen_continues(dir, o, 1, x, &rep);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(rep.cut_bytes, 0);
	assert_int_equal(fd_count(), fds);
}

static void rotation_open_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_OPEN, ".ready", 1, -EIO, 1), -EIO, "opening", 9,
		       NO_NEW_SEGMENT);
}

/* The prepared file refuses O_DIRECT after the log chose it: the file is already the
 * segment (renamed) when that shows; the log fails (-EINVAL reported as -EIO). */
static void rotation_direct_refused(void **state)
{
	struct ringlog_options o;
	options(&o);
	o.io_mode = RINGLOG_IO_DIRECT;
	rotation_fails(*state, &o,
		       with_flags(fault(RL_FOP_OPEN, ".ready", 1, -EINVAL, 1), O_DIRECT), -EIO,
		       "O_DIRECT", 9, NEW_SEGMENT);
}

static void rotation_header_write_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_PWRITE, ".ready", 1, -EIO, 1), -EIO,
		       "writing the header", 9, NO_NEW_SEGMENT);
}

static void rotation_header_write_enospc(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_PWRITE, ".ready", 1, -ENOSPC, 1), -ENOSPC,
		       "writing the header", 9, NO_NEW_SEGMENT);
}

static void rotation_header_fdatasync_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_FDATASYNC, ".ready", 1, -EIO, 1), -EIO, "fdatasync",
		       9, NO_NEW_SEGMENT);
}

static void rotation_rename_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_RENAME, ".ready", 1, -EIO, 1), -EIO, "renaming", 9,
		       NO_NEW_SEGMENT);
}

/* Renamed, so the new segment (header only) exists: recovery takes it as the last
 * segment, clean, and appends go into it. */
static void rotation_dirsync_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1), -EIO,
		       "fsync of the log directory", 9, NEW_SEGMENT);
}

/* The seal's ftruncate fails: the full segment keeps its prepared bytes after its
 * last frame.  That would be damage in a sealed segment, but no successor was made:
 * it is the last segment, whose stale tail is clean.  The next rotation seals it. */
static void rotation_seal_truncate_eio(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	options(&o);
	rotation_fails(dir, &o, fault(RL_FOP_FTRUNCATE, ".rlog", 1, -EIO, 1), -EIO, "sealing", 1,
		       NO_NEW_SEGMENT);
	/* Sealed by the rotation after the reopen: it ends at its last frame. */
	const char *path = tu_segment_path(dir, 1);
	assert_int_equal(tu_file_size(path), tu_data_end(path));
}

static void rotation_seal_fdatasync_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	rotation_fails(*state, &o, fault(RL_FOP_FDATASYNC, ".rlog", 1, -EIO, 1), -EIO, "sealing", 1,
		       NO_NEW_SEGMENT);
}

/* Without a pool the segment is built as segment.new, removed when that fails. */
static void rotation_without_pool_header_write_eio(void **state)
{
	struct ringlog_options o;
	options(&o);
	o.prepared_segments = 0;
	rotation_fails(*state, &o, fault(RL_FOP_PWRITE, RL_SEG_BUILD_NAME, 1, -EIO, 1), -EIO,
		       RL_SEG_BUILD_NAME, 9, NO_NEW_SEGMENT);
}

/* ---- Open ---- */

static void open_probe_einval_falls_back_to_buffered(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	int slot = add_fault(with_flags(fault(RL_FOP_OPEN, "LOCK", 1, -EINVAL, 0), O_DIRECT));
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(fired(slot), 1);
	assert_int_equal(STAT(log, direct_io), 0);
	assert_int_equal(STAT(log, io_align), 1);
	uint64_t a = tu_append_tagged(log, 1, 8, 500) + 7;
	uint64_t x = tu_append_tagged(log, 2, 1, BIG); /* and a rotation */
	assert_int_equal(ringlog_wait(log, x), 0);
	assert_true(x > a);
	assert_int_equal(ringlog_close(log), 0);
	/* The same log, reopened where O_DIRECT works, goes on. */
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, x + 1, &rep);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(fd_count(), fds);
}

static void open_probe_einval_fails_direct_mode(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	o.io_mode = RINGLOG_IO_DIRECT;
	add_fault(with_flags(fault(RL_FOP_OPEN, "LOCK", 1, -EINVAL, 0), O_DIRECT));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EINVAL);
	assert_null(log);
	expect_detail("O_DIRECT", dir, NULL);
	/* The directory, LOCK and the probe: no pool file, no segment. */
	assert_int_equal(ops(RL_FOP_OPEN), 3);
	assert_int_equal(nsegments(dir), 0);
	assert_int_equal(fd_count(), fds);
	clear_faults();
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_wait(log, tu_append_tagged(log, 1, 1, 100)), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(fd_count(), fds);
}

static void open_probe_eacces_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t a = make_log(dir, &o);
	add_fault(with_flags(fault(RL_FOP_OPEN, "LOCK", 1, -EACCES, 0), O_DIRECT));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EACCES);
	assert_null(log);
	expect_detail("LOCK", "O_DIRECT", NULL);
	assert_int_equal(fd_count(), fds);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, a + 1, &rep);
	assert_int_equal(fd_count(), fds);
}

/* Recovery opens the last segment first; open's second open of it (for appending)
 * fails. */
static void open_last_segment_for_append_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t a = make_log(dir, &o);
	/* (Recovery opens it read-only; nothing needs repair, so only the append opens
	 * it for writing.) */
	int slot = add_fault(with_flags(fault(RL_FOP_OPEN, seg_name(1), 1, -EIO, 1), O_RDWR));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EIO);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail("opening", seg_name(1), "for appending");
	assert_int_equal(fd_count(), fds);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, a + 1, &rep);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(fd_count(), fds);
}

/* A new log's first segment comes from the pool: if the preparer cannot make one
 * (after the one retry), open fails cleanly and the directory opens later. */
static void open_first_segment_cannot_be_created(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	int slot = add_fault(fault(RL_FOP_FALLOCATE, ".tmp", 1, -ENOSPC, 0));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -ENOSPC);
	assert_null(log);
	char msg[512];
	save_detail(msg, sizeof(msg));
	assert_int_equal(fired(slot), 2); /* the first try and the one retry */
	assert_int_equal(fd_count(), fds);
	assert_int_equal(nsegments(dir), 0);
	assert_int_equal(pool_files(dir, NULL), 0);
	assert_false(exists(dir, RL_SEG_BUILD_NAME));
	/* A new log opens there once the space is back. */
	clear_faults();
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_next_lsn(log), 1);
	assert_int_equal(ringlog_wait(log, tu_append_tagged(log, 1, 1, 100)), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(fd_count(), fds);
	/* The detail keeps the preparer's: what failed, on which file. */
	expect_in(msg, "creating the first segment", dir, NULL);
	expect_in(msg, "preparing", "allocating", fired_on(slot));
}

/* The same without a pool: the first segment is built as segment.new, whose header
 * write fails. */
static void open_first_segment_without_pool_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	o.prepared_segments = 0;
	int slot = add_fault(fault(RL_FOP_PWRITE, RL_SEG_BUILD_NAME, 1, -EIO, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EIO);
	assert_null(log);
	char msg[512];
	save_detail(msg, sizeof(msg));
	assert_int_equal(fired(slot), 1);
	assert_int_equal(fd_count(), fds);
	assert_int_equal(nsegments(dir), 0);
	assert_false(exists(dir, RL_SEG_BUILD_NAME));
	clear_faults();
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_wait(log, tu_append_tagged(log, 1, 1, 100)), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(fd_count(), fds);
	expect_in(msg, "creating the first segment", dir, NULL);
	expect_in(msg, "writing the header", RL_SEG_BUILD_NAME, seg_name(1));
}

/*
 * Open takes stock of the pool files: `junk` (`size` bytes) is the only one, and
 * handling it fails with fault `f` while `what`.  Open fails with the error, naming the
 * stock-taking, the operation and the file;
 * nothing changed (but `junk` when `junk_gone`); the next open deals with it.
 */
static void pool_stock_taking_fails(const char *dir, const char *junk, uint64_t size,
				    struct fault f, const char *what, int junk_gone)
{
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t a = make_log(dir, &o);
	drop_pool_files(dir);
	int fd = open(tu_path(dir, junk), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	struct snap before, after;
	snapshot(dir, &before);
	int slot = add_fault(f);
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), f.err);
	assert_null(log);
	char msg[512];
	save_detail(msg, sizeof(msg));
	assert_int_equal(fired(slot), 1);
	assert_int_equal(fd_count(), fds);
	if (junk_gone) {
		assert_false(exists(dir, junk));
	} else {
		snapshot(dir, &after);
		expect_same(&before, &after, NULL);
	}
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, a + 1, &rep);
	assert_false(exists(dir, junk));
	assert_int_equal(pool_files(dir, ".tmp"), 0);
	assert_int_equal(fd_count(), fds);
	expect_in(msg, "taking stock of the pool files", what, junk_gone ? NULL : junk);
}

/* An unfinished pool file left by an earlier run cannot be removed. */
static void open_pool_unlink_fails(void **state)
{
	const char *junk = "pool.0000000099.tmp";
	pool_stock_taking_fails(*state, junk, 0, fault(RL_FOP_UNLINK, junk, 1, -EIO, 1), "removing",
				0);
}

/* It was removed, but the directory fsync after that fails. */
static void open_pool_dirsync_fails(void **state)
{
	pool_stock_taking_fails(
	    *state, "pool.0000000099.tmp", 0,
	    on(fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1), ON_THREAD, pthread_self()), "fsync", 1);
}

/* A ready file of the wrong size cannot be renamed to be made again. */
static void open_pool_wrong_size_rename_fails(void **state)
{
	const char *junk = "pool.0000000099.00000000000000000000.ready";
	pool_stock_taking_fails(*state, junk, 100, fault(RL_FOP_RENAME, junk, 1, -EIO, 1),
				"renaming", 0);
}

/* A ready file that cannot be opened to check its size is not trusted: it is made
 * again (as one of the wrong size), and open succeeds. */
static void open_pool_size_check_open_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t a = make_log(dir, &o);
	drop_pool_files(dir);
	const char *junk = "pool.0000000099.00000000000000000000.ready";
	int fd = open(tu_path(dir, junk), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SEGMENT), 0);
	close(fd);
	int slot = add_fault(on(fault(RL_FOP_OPEN, junk, 1, -EIO, 1), ON_THREAD, pthread_self()));
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(fired(slot), 1);
	WAIT_FOR(STAT(log, prepared_ready) == 2);
	assert_false(exists(dir, junk)); /* retired, then made ready under a new name */
	assert_int_equal(STAT(log, segments_recycled), 1);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, a + 1, &rep);
	assert_int_equal(fd_count(), fds);
}

/* A log directory ringlog_open creates: its entry in the parent is synced. */
static void open_new_directory_parent_sync_fails(void **state)
{
	char sub[4096];
	snprintf(sub, sizeof(sub), "%s/log", (const char *)*state);
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	add_fault(fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(sub, &o, &log), -EIO);
	assert_null(log);
	expect_detail("fsync of the parent", sub, NULL);
	assert_int_equal(fd_count(), fds);
	clear_faults();
	log = tu_open(sub, &o);
	assert_int_equal(ringlog_wait(log, tu_append_tagged(log, 1, 1, 100)), 0);
	assert_int_equal(ringlog_close(log), 0);
	assert_int_equal(fd_count(), fds);
}

/* Creating the log directory fails: the open fails with that error and says so; the
 * directory is created by the next open. */
static void open_new_directory_mkdir_fails(void **state)
{
	char sub[4096];
	snprintf(sub, sizeof(sub), "%s/log", (const char *)*state);
	struct ringlog_options o;
	options(&o);
	int slot = add_fault(fault(RL_FOP_MKDIR, "/log", 1, -EACCES, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(sub, &o, &log), -EACCES);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail("creating log directory", sub, NULL);
	assert_int_not_equal(access(sub, F_OK), 0);
	clear_faults();
	log = tu_open(sub, &o);
	assert_int_equal(ringlog_close(log), 0);
}

/* Opening an existing log directory fails (the readers and checks open it the same
 * way): the error and the directory are named. */
static void open_directory_fails(void **state)
{
	const char *dir = *state;
	struct ringlog_options o;
	options(&o);
	make_log(dir, &o);
	int slot = add_fault(with_flags(fault(RL_FOP_OPEN, dir, 1, -EMFILE, 0), O_DIRECTORY));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EMFILE);
	expect_detail("opening log directory", dir, NULL);
	struct ringlog_reader *r = NULL;
	assert_int_equal(ringlog_reader_open(dir, 0, &r), -EMFILE);
	expect_detail("reader: opening log directory", dir, NULL);
	struct ringlog_recovery rep;
	assert_int_equal(ringlog_check(dir, 0, &rep), -EMFILE);
	expect_detail("check: opening log directory", dir, NULL);
	assert_true(fired(slot) >= 3);
	clear_faults();
	log = tu_open(dir, &o);
	assert_int_equal(ringlog_close(log), 0);
}

/* ---- Recovery ---- */

/* Offset, length and first LSN of the last frame of the segment at `path`. */
static void last_frame(const char *path, uint64_t *off, uint32_t *len, uint64_t *lsn)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct rl_seg_header h;
	uint64_t size;
	assert_int_equal(rl_seg_read_header(fd, &h, &size), 0);
	struct rl_seg_scan s;
	assert_int_equal(rl_scan_init(&s, fd, &h), 0);
	enum rl_frame_status why;
	*len = 0;
	*off = 0;
	*lsn = 0;
	for (uint64_t at = s.off; rl_scan_next(&s, &why) == 1; at = s.off)
		if (!s.info.hole) {
			*off = at;
			*len = s.info.frame_len;
			*lsn = s.info.first_lsn;
		}
	rl_scan_free(&s);
	close(fd);
	assert_true(*len > 0);
}

enum tear { TEAR_INSIDE, TEAR_AT_END };

/*
 * A closed log of one segment, three batches of 2 x 300 bytes (LSNs 1..6), whose last
 * batch is torn: a byte flipped inside it (the cut zeroes it in place: the prepared
 * file goes on after it), or the file truncated inside it (the cut truncates).
 * Returns that batch's LSN (5); *off: where it starts.
 */
static uint64_t torn_log(const char *dir, const struct ringlog_options *o, enum tear how,
			 uint64_t *off)
{
	struct ringlog *log = tu_open(dir, o);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(ringlog_wait(log, tu_append_tagged(log, i + 1, 2, 300) + 1), 0);
	assert_int_equal(ringlog_close(log), 0);
	const char *path = tu_segment_path(dir, 1);
	uint32_t len = 0;
	uint64_t lsn = 0;
	last_frame(path, off, &len, &lsn);
	assert_int_equal(lsn, 5);
	if (how == TEAR_INSIDE) {
		assert_true(*off + len < tu_file_size(path));
		uint8_t b = 0xa5;
		tu_write_at(path, *off + 100, &b, 1);
	} else {
		tu_truncate(path, *off + len / 2);
	}
	return lsn;
}

/* Recovery's cut fails (fault `f` on the segment): open fails with the error and
 * changes nothing (but the bytes of the segment when `cut_done`); a later open
 * repairs and continues. */
static void recovery_cut_fails(const char *dir, enum tear how, struct fault f, const char *what,
			       int cut_done)
{
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t off;
	uint64_t torn = torn_log(dir, &o, how, &off);
	struct snap before, after;
	snapshot(dir, &before);
	int slot = add_fault(f);
	reset_ops();
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), f.err);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail("recovery", what, seg_name(1));
	/* Open stopped there: no pool file was touched. */
	assert_int_equal(ops(RL_FOP_FALLOCATE) + ops(RL_FOP_RENAME) + ops(RL_FOP_UNLINK), 0);
	assert_int_equal(fd_count(), fds);
	snapshot(dir, &after);
	expect_same(&before, &after, cut_done ? seg_name(1) : NULL);

	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, torn, &rep);
	if (!cut_done) {
		assert_int_equal(rep.damage, -EBADMSG);
		assert_string_equal(rep.damage_file, seg_name(1));
		assert_int_equal(rep.damage_offset, off);
		assert_true(rep.cut_bytes > 0);
	}
	assert_int_equal(fd_count(), fds);
}

static void recovery_cut_zeroing_fails(void **state)
{
	recovery_cut_fails(*state, TEAR_INSIDE, fault(RL_FOP_PWRITE, seg_name(1), 1, -EIO, 1),
			   "cutting", 0);
}

static void recovery_cut_truncate_fails(void **state)
{
	recovery_cut_fails(*state, TEAR_AT_END, fault(RL_FOP_FTRUNCATE, seg_name(1), 1, -EIO, 1),
			   "cutting", 0);
}

/* The first fdatasync of the last segment is recovery's before it reads it; the
 * second is the cut's.  The zeros were written (not synced): the next open finds
 * them, a clean end. */
static void recovery_cut_fdatasync_fails(void **state)
{
	recovery_cut_fails(*state, TEAR_INSIDE, fault(RL_FOP_FDATASYNC, seg_name(1), 2, -EIO, 1),
			   "cutting", 1);
}

static void recovery_sync_before_scan_fails(void **state)
{
	recovery_cut_fails(*state, TEAR_INSIDE, fault(RL_FOP_FDATASYNC, seg_name(1), 1, -EIO, 1),
			   "fdatasync", 0);
}

/* A rotation torn by a crash (an empty last segment): rewriting its header fails. */
static void recovery_torn_header_rewrite_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t a = make_log(dir, &o);
	/* As a rotation leaves it: the full segment sealed, the next one empty. */
	const char *path = tu_segment_path(dir, 1);
	tu_truncate(path, tu_data_end(path));
	int fd = open(tu_segment_path(dir, a + 1), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	struct snap before, after;
	snapshot(dir, &before);
	add_fault(fault(RL_FOP_PWRITE, seg_name(a + 1), 1, -EIO, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EIO);
	assert_null(log);
	expect_detail("torn header", seg_name(a + 1), NULL);
	assert_int_equal(fd_count(), fds);
	snapshot(dir, &after);
	expect_same(&before, &after, NULL);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, a + 1, &rep);
	assert_int_equal(fd_count(), fds);
}

/* Opening a sealed segment fails: nothing changes. */
static void recovery_open_segment_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	assert_int_equal(ringlog_close(four_segments(dir, &o)), 0);
	struct snap before, after;
	snapshot(dir, &before);
	int slot = add_fault(fault(RL_FOP_OPEN, seg_name(2), 1, -EIO, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EIO);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail("recovery: opening", seg_name(2), NULL);
	assert_int_equal(fd_count(), fds);
	snapshot(dir, &after);
	expect_same(&before, &after, NULL);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, 5, &rep);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(fd_count(), fds);
}

/* Four segments (LSN k in segment k), closed, the frame of LSN 2 damaged: for
 * point-in-time recovery, which drops segments 4 and 3 (newest first), then cuts
 * segment 2 before LSN 2. */
static void damaged_sealed_segment(const char *dir, struct ringlog_options *o)
{
	options(o);
	assert_int_equal(ringlog_close(four_segments(dir, o)), 0);
	uint64_t off, lsn;
	uint32_t len;
	last_frame(tu_segment_path(dir, 2), &off, &len, &lsn);
	assert_int_equal(lsn, 2);
	uint8_t b = 0x5a;
	tu_write_at(tu_segment_path(dir, 2), off + 100, &b, 1);
	o->recovery_mode = RINGLOG_RECOVER_POINT_IN_TIME;
}

/* Removing the newest segment fails: nothing changed; the next open does it all. */
static void recovery_pit_drop_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	damaged_sealed_segment(dir, &o);
	struct snap before, after;
	snapshot(dir, &before);
	int slot = add_fault(fault(RL_FOP_UNLINK, seg_name(4), 1, -EIO, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EIO);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail("recovery: removing", seg_name(4), NULL);
	assert_int_equal(fd_count(), fds);
	snapshot(dir, &after);
	expect_same(&before, &after, NULL);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, 2, &rep);
	assert_int_equal(rep.damage, -EBADMSG);
	assert_string_equal(rep.damage_file, seg_name(2));
	assert_int_equal(rep.dropped_segments, 2);
	assert_int_equal(fd_count(), fds);
}

/* The later segments are gone when the cut of the damaged one fails: the damage is
 * left for the next open, which finishes (the damaged segment is the last now). */
static void recovery_pit_cut_fails(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	damaged_sealed_segment(dir, &o);
	int slot = add_fault(fault(RL_FOP_FTRUNCATE, seg_name(2), 1, -EIO, 1));
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), -EIO);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail("recovery: cutting", seg_name(2), NULL);
	assert_int_equal(fd_count(), fds);
	assert_int_equal(nsegments(dir), 2);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, 2, &rep);
	assert_int_equal(rep.damage, -EBADMSG);
	assert_string_equal(rep.damage_file, seg_name(2));
	assert_int_equal(rep.dropped_segments, 0);
	assert_true(rep.cut_bytes > 0);
	assert_int_equal(fd_count(), fds);
}

/* ---- Retention ---- */

/* truncate_before(3) fails on segment 1 with fault `f`: the error and its detail;
 * the log itself is unharmed; `gone` segments left the log (0: segment 1 is still
 * read); a second call removes the rest. */
static void retention_fails(const char *dir, unsigned recycle, struct fault f, const char *what,
			    unsigned gone)
{
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	o.recycle_segments = recycle;
	struct ringlog *log = four_segments(dir, &o);
	WAIT_FOR(STAT(log, prepared_ready) == 2);
	int slot = add_fault(f);
	assert_int_equal(ringlog_truncate_before(log, 3), f.err);
	assert_int_equal(fired(slot), 1);
	expect_detail("truncate_before", what, f.name);
	assert_int_equal(nsegments(dir), 4 - gone);
	uint64_t n, first, last;
	assert_int_equal(tu_read_all(dir, 0, &n, &first, &last, 1), 0);
	assert_int_equal(first, 1 + gone);
	assert_int_equal(last, 4);
	/* Not the log's failure: it goes on. */
	assert_int_equal(ringlog_error(log), 0);
	uint64_t l = tu_append_tagged(log, 9, 1, 100);
	assert_int_equal(ringlog_wait(log, l), 0);
	assert_int_equal(ringlog_truncate_before(log, 3), (int)(2 - gone));
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 3, l + 1, &rep);
	assert_int_equal(rep.damage, 0);
	assert_int_equal(fd_count(), fds);
}

static void retention_unlink_eio(void **state)
{
	static char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, 1);
	retention_fails(*state, 0, fault(RL_FOP_UNLINK, name, 1, -EIO, 1), "removing", 0);
}

static void retention_dirsync_eio(void **state)
{
	retention_fails(*state, 0,
			on(fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1), ON_THREAD, pthread_self()),
			"fsync of the log directory", 1);
}

static void retention_recycle_rename_eio(void **state)
{
	static char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, 1);
	retention_fails(*state, 2, fault(RL_FOP_RENAME, name, 1, -EIO, 1), "moving", 0);
}

/* The segment is in the pool already when the directory fsync fails. */
static void retention_recycle_dirsync_eio(void **state)
{
	retention_fails(*state, 2,
			on(fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1), ON_THREAD, pthread_self()),
			"fsync of the log directory", 1);
}

/* ---- The durable LSN published at open, and replication slots ---- */

static void open_publish_fails(const char *dir, struct fault f, const char *what)
{
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	uint64_t a = make_log(dir, &o);
	int slot = add_fault(f);
	struct ringlog *log = NULL;
	assert_int_equal(ringlog_open(dir, &o, &log), f.err);
	assert_null(log);
	assert_int_equal(fired(slot), 1);
	expect_detail(what, "LOCK", "durable LSN for readers");
	assert_int_equal(fd_count(), fds);
	clear_faults();
	struct ringlog_recovery rep;
	reopen_continues(dir, &o, 1, a + 1, &rep);
	uint64_t d, id;
	assert_int_equal(ringlog_published_durable(dir, &d, &id), 0);
	assert_true(d > a);
	assert_int_equal(fd_count(), fds);
}

static void open_publish_write_eio(void **state)
{
	open_publish_fails(*state, fault(RL_FOP_PWRITE, "LOCK", 1, -EIO, 1), "writing");
}

static void open_publish_fdatasync_eio(void **state)
{
	open_publish_fails(*state, fault(RL_FOP_FDATASYNC, "LOCK", 1, -EIO, 1), "fdatasync of");
}

static void no_slot_file(const char *dir, const char *name)
{
	struct stat sb;
	char path[4096];
	snprintf(path, sizeof(path), "%s/SLOT.%s", dir, name);
	assert_int_equal(stat(path, &sb), -1);
	snprintf(path, sizeof(path), "%s/new.SLOT.%s", dir, name);
	assert_int_equal(stat(path, &sb), -1);
}

static void slot_create_fails(const char *dir, struct fault f, int left)
{
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	make_log(dir, &o);
	int slot = add_fault(f);
	struct ringlog_slot *s = NULL;
	assert_int_equal(ringlog_slot_open(dir, "s1", 1, 7, &s), f.err);
	assert_null(s);
	assert_int_equal(fired(slot), 1);
	expect_detail("slot_open: creating SLOT.s1", dir, NULL);
	assert_int_equal(fd_count(), fds);
	if (!left)
		no_slot_file(dir, "s1");
	clear_faults();
	/* Whatever it left (a named slot whose name was not synced yet), opening with
	 * create gets a whole slot. */
	assert_int_equal(ringlog_slot_open(dir, "s1", 1, 7, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 7);
	ringlog_slot_close(s);
	assert_int_equal(fd_count(), fds);
}

static void slot_create_write_eio(void **state)
{
	slot_create_fails(*state, fault(RL_FOP_PWRITE, "new.SLOT.s1", 1, -EIO, 1), 0);
}

static void slot_create_fdatasync_eio(void **state)
{
	slot_create_fails(*state, fault(RL_FOP_FDATASYNC, "new.SLOT.s1", 1, -EIO, 1), 0);
}

static void slot_create_rename_enospc(void **state)
{
	slot_create_fails(*state, fault(RL_FOP_RENAME, "SLOT.s1", 1, -ENOSPC, 1), 0);
}

static void slot_create_dirsync_eio(void **state)
{
	slot_create_fails(*state, fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1), 1);
}

static void slot_advance_and_drop_fail(void **state)
{
	const char *dir = *state;
	int fds = fd_count();
	struct ringlog_options o;
	options(&o);
	make_log(dir, &o);
	struct ringlog_slot *s;
	assert_int_equal(ringlog_slot_open(dir, "s2", 1, 3, &s), 0);
	int slot = add_fault(fault(RL_FOP_PWRITE, "SLOT.s2", 1, -EIO, 1));
	assert_int_equal(ringlog_slot_advance(s, 5), -EIO);
	assert_int_equal(fired(slot), 1);
	expect_detail("slot_advance", "SLOT.s2", NULL);
	assert_int_equal(ringlog_slot_lsn(s), 3); /* not moved */
	assert_int_equal(ringlog_slot_advance(s, 5), 0);
	ringlog_slot_close(s);
	slot = add_fault(fault(RL_FOP_UNLINK, "SLOT.s2", 1, -EIO, 1));
	assert_int_equal(ringlog_slot_drop(dir, "s2"), -EIO);
	expect_detail("slot_drop", "SLOT.s2", NULL);
	assert_int_equal(ringlog_slot_open(dir, "s2", 0, 0, &s), 0);
	assert_int_equal(ringlog_slot_lsn(s), 5);
	ringlog_slot_close(s);
	slot = add_fault(fault(RL_FOP_DIRSYNC, NULL, 1, -EIO, 1));
	assert_int_equal(ringlog_slot_drop(dir, "s2"), -EIO);
	assert_int_equal(fired(slot), 1);
	clear_faults();
	assert_int_equal(ringlog_slot_drop(dir, "s2"), -ENOENT); /* the unlink went through */
	assert_int_equal(fd_count(), fds);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    T(preparer_open_enospc),
	    T(preparer_fallocate_enospc),
	    T(preparer_zero_fill_enospc),
	    T(preparer_zero_fill_eio),
	    T(preparer_fdatasync_eio),
	    T(preparer_rename_eio),
	    T(preparer_dirsync_eio),
	    T(preparer_fault_clears_before_rotation),
	    T(preparer_direct_refused_falls_back),
	    T(preparer_recycled_file_fails),
	    T(preparer_retries_when_retention_frees_space),
	    T(rotation_open_eio),
	    T(rotation_direct_refused),
	    T(rotation_header_write_eio),
	    T(rotation_header_write_enospc),
	    T(rotation_header_fdatasync_eio),
	    T(rotation_rename_eio),
	    T(rotation_dirsync_eio),
	    T(rotation_seal_truncate_eio),
	    T(rotation_seal_fdatasync_eio),
	    T(rotation_without_pool_header_write_eio),
	    T(open_probe_einval_falls_back_to_buffered),
	    T(open_probe_einval_fails_direct_mode),
	    T(open_probe_eacces_fails),
	    T(open_last_segment_for_append_fails),
	    T(open_first_segment_cannot_be_created),
	    T(open_first_segment_without_pool_fails),
	    T(open_pool_unlink_fails),
	    T(open_pool_dirsync_fails),
	    T(open_pool_wrong_size_rename_fails),
	    T(open_pool_size_check_open_fails),
	    T(open_new_directory_parent_sync_fails),
	    T(open_new_directory_mkdir_fails),
	    T(open_directory_fails),
	    T(recovery_cut_zeroing_fails),
	    T(recovery_cut_truncate_fails),
	    T(recovery_cut_fdatasync_fails),
	    T(recovery_sync_before_scan_fails),
	    T(recovery_torn_header_rewrite_fails),
	    T(recovery_open_segment_fails),
	    T(recovery_pit_drop_fails),
	    T(recovery_pit_cut_fails),
	    T(retention_unlink_eio),
	    T(retention_dirsync_eio),
	    T(retention_recycle_rename_eio),
	    T(retention_recycle_dirsync_eio),
	    T(open_publish_write_eio),
	    T(open_publish_fdatasync_eio),
	    T(slot_create_write_eio),
	    T(slot_create_fdatasync_eio),
	    T(slot_create_rename_enospc),
	    T(slot_create_dirsync_eio),
	    T(slot_advance_and_drop_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
