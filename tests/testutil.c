#include "testutil.h"

#include "format.h"
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tu_require_uring(void)
{
	struct io_uring ring;
	int err = io_uring_queue_init(4, &ring, 0);
	if (err == 0) {
		io_uring_queue_exit(&ring);
		return;
	}
	fprintf(stderr, "io_uring is unavailable here (io_uring_queue_init: %s)\n", strerror(-err));
	if (getenv("RINGLOG_REQUIRE_URING")) {
		fprintf(stderr, "RINGLOG_REQUIRE_URING is set: failing instead of skipping\n");
		exit(1);
	}
	exit(77);
}

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path;
	if (asprintf(&path, "%s/ringlog-test-XXXXXX", base && *base ? base : "/tmp") < 0)
		abort();
	if (!mkdtemp(path)) {
		perror("mkdtemp");
		abort();
	}
	return path;
}

int tu_setup_dir(void **state)
{
	*state = tu_tmpdir();
	return 0;
}

int tu_teardown_dir(void **state)
{
	tu_rmrf(*state);
	free(*state);
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

void tu_rmrf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_path(const char *dir, const char *name)
{
	static char buf[4096];
	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

uint64_t tu_file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

size_t tu_segments(const char *dir, uint64_t **lsns)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0, cap = 64;
	*lsns = malloc(cap * sizeof(**lsns));
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		unsigned long long v;
		char tail[16];
		if (strlen(de->d_name) == 25 && sscanf(de->d_name, "%20llu%15s", &v, tail) == 2 &&
		    strcmp(tail, ".rlog") == 0) {
			if (n == cap)
				*lsns = realloc(*lsns, (cap *= 2) * sizeof(**lsns));
			(*lsns)[n++] = v;
		}
	}
	closedir(d);
	qsort(*lsns, n, sizeof(**lsns), cmp_u64);
	return n;
}

const char *tu_segment_path(const char *dir, uint64_t first_lsn)
{
	static char buf[4096];
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, first_lsn);
	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

const char *tu_last_segment(const char *dir)
{
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_true(n > 0);
	uint64_t last = lsns[n - 1];
	free(lsns);
	return tu_segment_path(dir, last);
}

/* Scan the entries of a segment file: where the first frame (or hole) starts, and
 * where the last valid entry ends. */
static void scan_entries(const char *path, uint64_t *start, uint64_t *end)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct rl_seg_header h;
	uint64_t size;
	assert_int_equal(rl_seg_read_header(fd, &h, &size), 0);
	struct rl_seg_scan scan;
	assert_int_equal(rl_scan_init(&scan, fd, &h), 0);
	enum rl_frame_status why;
	*start = RL_SEG_HEADER_BYTES;
	int leading = 1;
	while (rl_scan_next(&scan, &why) == 1) {
		if (leading && scan.info.pad)
			*start = scan.off;
		else
			leading = 0;
	}
	*end = scan.off;
	rl_scan_free(&scan);
	close(fd);
}

uint64_t tu_data_start(const char *path)
{
	uint64_t start, end;
	scan_entries(path, &start, &end);
	return start;
}

uint64_t tu_data_end(const char *path)
{
	uint64_t start, end;
	scan_entries(path, &start, &end);
	return end;
}

uint32_t tu_io_align(struct ringlog *log)
{
	struct ringlog_stats st;
	ringlog_stats(log, &st);
	return (uint32_t)st.io_align;
}

uint64_t tu_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

void tu_options(struct ringlog_options *o, uint64_t segment_bytes, uint32_t ring_bytes)
{
	ringlog_options_init(o);
	o->segment_bytes = segment_bytes;
	o->ring_bytes = ring_bytes;
	if (o->max_batch_bytes > ring_bytes / 2)
		o->max_batch_bytes = ring_bytes / 2;
}

struct ringlog *tu_open(const char *dir, const struct ringlog_options *o)
{
	struct ringlog *log = NULL;
	int err = ringlog_open(dir, o, &log);
	if (err)
		fail_msg("ringlog_open(%s): %s: %s", dir, ringlog_strerror(err),
			 ringlog_last_error());
	return log;
}

/* Record layout: u64 tag, u32 index, u32 len, then bytes derived from them, and a
 * final byte that is the sum of all the others. */
void tu_fill_record(uint8_t *buf, unsigned len, uint64_t tag, unsigned i)
{
	uint8_t sum = 0;
	for (unsigned k = 0; k < len; k++) {
		uint8_t b;
		if (k < 8)
			b = (uint8_t)(tag >> (8 * k));
		else if (k < 12)
			b = (uint8_t)(i >> (8 * (k - 8)));
		else if (k < 16)
			b = (uint8_t)(len >> (8 * (k - 12)));
		else
			b = (uint8_t)(tag * 31 + i * 7 + k);
		if (k + 1 == len && len > 16)
			b = sum;
		buf[k] = b;
		sum = (uint8_t)(sum + b);
	}
}

int tu_record_ok(const void *data, unsigned len)
{
	const uint8_t *p = data;
	if (len < 17)
		return 1; /* too short to carry a check */
	uint64_t tag = 0;
	uint32_t i = 0, l = 0;
	for (int k = 0; k < 8; k++)
		tag |= (uint64_t)p[k] << (8 * k);
	for (int k = 0; k < 4; k++) {
		i |= (uint32_t)p[8 + k] << (8 * k);
		l |= (uint32_t)p[12 + k] << (8 * k);
	}
	if (l != len)
		return 0;
	uint8_t *expect = malloc(len);
	tu_fill_record(expect, len, tag, i);
	int ok = memcmp(expect, p, len) == 0;
	free(expect);
	return ok;
}

uint64_t tu_append_tagged(struct ringlog *log, uint64_t tag, unsigned nrecs, unsigned len)
{
	struct iovec *iov = calloc(nrecs, sizeof(*iov));
	uint8_t *data = malloc((size_t)nrecs * len + 1);
	for (unsigned i = 0; i < nrecs; i++) {
		iov[i].iov_base = data + (size_t)i * len;
		iov[i].iov_len = len;
		tu_fill_record(iov[i].iov_base, len, tag, i);
	}
	uint64_t first = 0;
	int err = ringlog_append(log, iov, nrecs, &first);
	free(iov);
	free(data);
	if (err)
		fail_msg("append: %s: %s", ringlog_strerror(err), ringlog_last_error());
	return first;
}

int tu_read_all(const char *dir, uint64_t from, uint64_t *count, uint64_t *first, uint64_t *last,
		int tagged)
{
	struct ringlog_reader *r;
	int err = ringlog_reader_open(dir, from, &r);
	if (err)
		return err;
	struct ringlog_record rec;
	*count = *first = *last = 0;
	while ((err = ringlog_reader_next(r, &rec)) == 1) {
		if (*count == 0)
			*first = rec.lsn;
		else
			assert_int_equal(rec.lsn, *last + 1);
		*last = rec.lsn;
		(*count)++;
		if (tagged && !tu_record_ok(rec.data, rec.len))
			fail_msg("record %llu (len %u) has bad contents",
				 (unsigned long long)rec.lsn, rec.len);
	}
	ringlog_reader_close(r);
	return err;
}

void tu_write_at(const char *path, uint64_t off, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	close(fd);
}

void tu_truncate(const char *path, uint64_t size)
{
	assert_int_equal(truncate(path, (off_t)size), 0);
}

char *tu_dir_digest(const char *dir, size_t *len)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && for f in $(ls | sort); do case \"$f\" in pool.*) continue;; esac; "
		 "echo \"$f\"; cat \"$f\"; done",
		 dir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	size_t got;
	while ((got = fread(buf + n, 1, cap - n, p)) > 0) {
		n += got;
		if (n == cap) {
			buf = realloc(buf, cap *= 2);
			assert_non_null(buf);
		}
	}
	assert_int_equal(pclose(p), 0);
	*len = n;
	return buf;
}

void tu_copy_dir(const char *from, const char *to)
{
	char cmd[8400];
	snprintf(cmd, sizeof(cmd), "cp -a '%s'/. '%s'/", from, to);
	assert_int_equal(system(cmd), 0);
}
