/*
 * Writes the seed corpus of fuzz_log: real logs made through the public API
 * (ringlog_open / ringlog_append / ringlog_wait / ringlog_close, in a temporary
 * directory), packed into fuzz_log's input encoding (see the top of fuzz_log.c).
 *
 *   make_corpus OUTDIR
 *
 * A few seeds then damage the packed log the way a crash or a bad disk would (a
 * torn tail, a torn segment creation, a flipped byte), so that the fuzzer starts from
 * both sides of the validity rule.  Every seed stays under 8 KiB (SEED_MAX); a log
 * with two segments needs a little over 4 KiB, since segment_bytes is at least 4096.
 */
#include "ringlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SEED_MAX 8192u
#define MAX_SEGS 8

/* fuzz_log's input header (keep in step with fuzz_log.c). */
#define FZ_HDR 16u
enum {
	FZ_FIX_FRAME_CRC = 1u << 2,
	FZ_FIX_HEADER_CRC = 1u << 3,
	FZ_FIX_CHAIN = 1u << 4,
	FZ_FIX_FRAME_LSN = 1u << 7,
	FZ_FIX_ALL = FZ_FIX_FRAME_CRC | FZ_FIX_HEADER_CRC | FZ_FIX_CHAIN | FZ_FIX_FRAME_LSN,
	FZ_EXTRA_STRAY = 1u << 0,
	FZ_EXTRA_FIX_PREV_LAST = 1u << 1,
};
#define FZ_MODE(m) ((unsigned)(m) << 5)

struct seg {
	unsigned char *buf;
	size_t len;
};

struct logdir {
	char path[256];
	struct seg seg[MAX_SEGS];
	unsigned nseg;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "make_corpus: %s: %s (%s)\n", what, ringlog_strerror(err),
		ringlog_last_error());
	exit(1);
}

static void make_tmpdir(struct logdir *d)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(d->path, sizeof(d->path), "%s/ringlog-corpus.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(d->path)) {
		perror("mkdtemp");
		exit(1);
	}
}

static void remove_tmpdir(struct logdir *d)
{
	DIR *dir = opendir(d->path);
	if (dir) {
		struct dirent *de;
		char p[512];
		while ((de = readdir(dir)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(p, sizeof(p), "%s/%s", d->path, de->d_name);
			unlink(p);
		}
		closedir(dir);
	}
	rmdir(d->path);
	for (unsigned i = 0; i < d->nseg; i++)
		free(d->seg[i].buf);
	d->nseg = 0;
}

static struct ringlog *open_log_in(const char *dir, uint32_t mode)
{
	struct ringlog_options o;
	ringlog_options_init(&o);
	o.recovery_mode = mode;
	o.segment_bytes = 4096;
	o.ring_bytes = 1u << 16;
	o.max_batch_bytes = 1u << 14;
	struct ringlog *log;
	int err = ringlog_open(dir, &o, &log);
	if (err)
		die("ringlog_open", err);
	return log;
}

static struct ringlog *open_log(const char *dir)
{
	return open_log_in(dir, RINGLOG_RECOVER_TOLERATE_TAIL);
}

/* Append one batch of `nrecs` records of the given lengths (cycled), and wait for it,
 * so that every batch is its own group commit (rotation happens between batches). */
static void append(struct ringlog *log, unsigned nrecs, const unsigned *lens, unsigned nlens,
		   unsigned char tag)
{
	struct iovec iov[16];
	static unsigned char data[16][1024];
	if (nrecs > 16)
		nrecs = 16;
	for (unsigned i = 0; i < nrecs; i++) {
		unsigned len = lens[i % nlens];
		for (unsigned j = 0; j < len; j++)
			data[i][j] = (unsigned char)('a' + (tag + i + j) % 26);
		iov[i].iov_base = data[i];
		iov[i].iov_len = len;
	}
	uint64_t first;
	int err = ringlog_append(log, iov, nrecs, &first);
	if (err)
		die("ringlog_append", err);
	err = ringlog_wait(log, first + nrecs - 1);
	if (err)
		die("ringlog_wait", err);
}

static int is_segment_name(const char *name)
{
	if (strlen(name) != 25 || strcmp(name + 20, ".rlog") != 0)
		return 0;
	for (int i = 0; i < 20; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	return 1;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read the segment files of the log (in name order = log order). */
static void load_segments(struct logdir *d)
{
	DIR *dir = opendir(d->path);
	if (!dir) {
		perror(d->path);
		exit(1);
	}
	char *names[MAX_SEGS];
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL)
		if (is_segment_name(de->d_name) && n < MAX_SEGS)
			names[n++] = strdup(de->d_name);
	closedir(dir);
	qsort(names, n, sizeof(names[0]), cmp_name);
	for (unsigned i = 0; i < d->nseg; i++)
		free(d->seg[i].buf);
	d->nseg = n;
	for (unsigned i = 0; i < n; i++) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", d->path, names[i]);
		free(names[i]);
		FILE *f = fopen(p, "rb");
		if (!f) {
			perror(p);
			exit(1);
		}
		struct stat st;
		if (fstat(fileno(f), &st) < 0) {
			perror(p);
			exit(1);
		}
		d->seg[i].len = (size_t)st.st_size;
		d->seg[i].buf = malloc(d->seg[i].len ? d->seg[i].len : 1);
		if (!d->seg[i].buf || fread(d->seg[i].buf, 1, d->seg[i].len, f) != d->seg[i].len) {
			fprintf(stderr, "make_corpus: reading %s failed\n", p);
			exit(1);
		}
		fclose(f);
	}
}

/* Write segs[0..n) (n <= 3) as one fuzz input.  Names come from the headers (name
 * choice 0: a segment too short to have one is named by the LSN due there). */
static void pack(const char *outdir, const char *name, const struct seg *segs, unsigned n,
		 unsigned flags, unsigned extra)
{
	if (n < 1 || n > 3) {
		fprintf(stderr, "make_corpus: %s: %u segments do not fit the encoding\n", name, n);
		exit(1);
	}
	unsigned char hdr[FZ_HDR] = {0};
	hdr[0] = (unsigned char)((n - 1) | (flags & ~3u));
	for (unsigned k = 0; k + 1 < n && k < 2; k++) {
		if (segs[k].len > 0xffff) {
			fprintf(stderr, "make_corpus: %s: segment too large\n", name);
			exit(1);
		}
		hdr[1 + 2 * k] = (unsigned char)segs[k].len;
		hdr[2 + 2 * k] = (unsigned char)(segs[k].len >> 8);
	}
	hdr[15] = (unsigned char)extra;
	size_t total = FZ_HDR;
	for (unsigned k = 0; k < n; k++)
		total += segs[k].len;
	if (total > SEED_MAX) {
		fprintf(stderr, "make_corpus: %s: %zu bytes, over %u\n", name, total, SEED_MAX);
		exit(1);
	}
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", outdir, name);
	FILE *f = fopen(p, "wb");
	if (!f) {
		perror(p);
		exit(1);
	}
	fwrite(hdr, 1, sizeof(hdr), f);
	for (unsigned k = 0; k < n; k++)
		fwrite(segs[k].buf, 1, segs[k].len, f);
	if (fclose(f) != 0) {
		perror(p);
		exit(1);
	}
	printf("%-28s %u segment(s) %5zu bytes\n", name, n, total);
}

/* Offset of the end of frame `n` (counting from 0) of a segment written by the library:
 * each frame's length is at its offset 8. */
static size_t frame_end(const struct seg *s, unsigned n)
{
	size_t off = 64;
	for (unsigned i = 0; i <= n && off + 32 <= s->len; i++) {
		const unsigned char *f = s->buf + off;
		off += (size_t)f[8] | (size_t)f[9] << 8 | (size_t)f[10] << 16 | (size_t)f[11] << 24;
	}
	return off;
}

/* Cut one segment into `n` small ones at frame boundaries: each piece gets a copy of the
 * original header (fuzz_log's chain fix-up then gives it the right first LSN, log id,
 * previous-segment fields and CRC).  A sealed segment is not small in a real log
 * (segment_bytes >= 4096), but nothing in the format or in recovery depends on that,
 * and small segments put every header within a few hundred bytes of mutation. */
static void split_segment(const struct seg *in, unsigned n, const unsigned *last_frame,
			  struct seg *out)
{
	size_t from = 64;
	for (unsigned k = 0; k < n; k++) {
		size_t to = k + 1 == n ? in->len : frame_end(in, last_frame[k]);
		out[k].len = 64 + (to - from);
		out[k].buf = malloc(out[k].len);
		if (!out[k].buf) {
			perror("malloc");
			exit(1);
		}
		memcpy(out[k].buf, in->buf, 64);
		memcpy(out[k].buf + 64, in->buf + from, to - from);
		from = to;
	}
}

static const unsigned small_lens[] = {0, 1, 7, 8, 13, 100};
static const unsigned tiny_lens[] = {3, 0, 5};
static const unsigned big_lens[] = {1000};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_corpus OUTDIR\n");
		return 2;
	}
	const char *out = argv[1];
	if (mkdir(out, 0755) < 0 && errno != EEXIST) {
		perror(out);
		return 1;
	}
	struct logdir d = {0};

	/* One segment, single-record batches of assorted lengths (padding 0..7). */
	make_tmpdir(&d);
	struct ringlog *log = open_log(d.path);
	for (unsigned i = 0; i < 6; i++)
		append(log, 1, &small_lens[i], 1, (unsigned char)i);
	append(log, 4, small_lens, 6, 9);
	ringlog_close(log);
	load_segments(&d);
	pack(out, "one-segment", d.seg, 1, FZ_MODE(0), 0);
	pack(out, "one-segment-fixups", d.seg, 1, FZ_FIX_ALL | FZ_MODE(2), 0);
	/* The same frames as a chain of three small segments. */
	struct seg small[3];
	static const unsigned cuts[] = {1, 3};
	split_segment(&d.seg[0], 3, cuts, small);
	pack(out, "three-small-segments", small, 3, FZ_FIX_ALL | FZ_MODE(0), 0);
	for (unsigned k = 0; k < 3; k++)
		free(small[k].buf);
	/* A torn tail: the last frame only partly written. */
	struct seg torn = d.seg[0];
	torn.len -= 13;
	pack(out, "torn-tail", &torn, 1, FZ_MODE(0), 0);
	/* Garbage after the last frame: a flipped byte in the last frame's data. */
	d.seg[0].buf[d.seg[0].len - 9] ^= 0x40;
	pack(out, "bad-crc-tail", d.seg, 1, FZ_MODE(2), FZ_EXTRA_STRAY);
	remove_tmpdir(&d);

	/* Reopened: recovery, then more batches of several tiny records. */
	make_tmpdir(&d);
	log = open_log(d.path);
	append(log, 3, tiny_lens, 3, 1);
	ringlog_close(log);
	log = open_log(d.path);
	append(log, 10, tiny_lens, 3, 2);
	append(log, 16, tiny_lens, 3, 3);
	ringlog_close(log);
	load_segments(&d);
	pack(out, "reopened-multi-record", d.seg, 1, FZ_MODE(1), FZ_EXTRA_STRAY);
	remove_tmpdir(&d);

	/* Two segments: 1000-byte records until the 4096-byte segment rotates, then
	 * a few small batches in the second. */
	make_tmpdir(&d);
	log = open_log(d.path);
	for (unsigned i = 0; i < 4; i++)
		append(log, 1, big_lens, 1, (unsigned char)i);
	append(log, 3, small_lens, 6, 4);
	append(log, 1, small_lens, 6, 5);
	ringlog_close(log);
	load_segments(&d);
	if (d.nseg != 2) {
		fprintf(stderr, "make_corpus: expected a rotation, got %u segment(s)\n", d.nseg);
		return 1;
	}
	/* Checksums fixed up but not the chain: a mutated header field reaches the
	 * chain checks (log id, first LSN, prev_tail_crc) instead of the CRC check. */
	pack(out, "two-segments", d.seg, 2, FZ_FIX_FRAME_CRC | FZ_FIX_HEADER_CRC | FZ_MODE(2),
	     FZ_EXTRA_FIX_PREV_LAST);
	/* A rotation torn by a crash: the third segment's header only partly written
	 * (its 12 bytes are the start of a header; named by the LSN due there). */
	struct seg three[3] = {d.seg[0], d.seg[1], {d.seg[1].buf, 12}};
	pack(out, "torn-rotation", three, 3, FZ_FIX_ALL | FZ_MODE(0), 0);
	remove_tmpdir(&d);

	/* Retention removed the first segment: the log starts past LSN 1 and its first
	 * header chains to a segment that is gone. */
	make_tmpdir(&d);
	log = open_log(d.path);
	for (unsigned i = 0; i < 5; i++)
		append(log, 1, big_lens, 1, (unsigned char)(i + 3));
	int removed = ringlog_truncate_before(log, ringlog_next_lsn(log));
	if (removed != 1)
		die("ringlog_truncate_before", removed < 0 ? removed : -EIO);
	append(log, 2, small_lens, 6, 7);
	ringlog_close(log);
	load_segments(&d);
	pack(out, "after-retention", d.seg, d.nseg, FZ_MODE(0), 0);
	remove_tmpdir(&d);

	/* Salvage: a byte flipped in the second of five frames, packed as it is (for the
	 * fuzzer to salvage), and after a salvage wrote a hole over it. */
	make_tmpdir(&d);
	log = open_log(d.path);
	for (unsigned i = 0; i < 5; i++)
		append(log, 2, small_lens, 6, (unsigned char)(i + 11));
	ringlog_close(log);
	load_segments(&d);
	size_t second = 64 + (size_t)(*(uint32_t *)(d.seg[0].buf + 64 + 8)); /* LE host */
	d.seg[0].buf[second + 40] ^= 0x10;
	pack(out, "salvage-damaged", d.seg, 1, FZ_MODE(3), 0);
	char first[300];
	snprintf(first, sizeof(first), "%s/00000000000000000001.rlog", d.path);
	FILE *f = fopen(first, "r+b");
	if (!f || fseek(f, (long)second + 40, SEEK_SET) != 0 ||
	    fputc(d.seg[0].buf[second + 40], f) == EOF || fclose(f) != 0)
		die("damaging a segment", -EIO);
	log = open_log_in(d.path, RINGLOG_RECOVER_SKIP_CORRUPTED);
	ringlog_close(log);
	load_segments(&d);
	pack(out, "salvaged-hole", d.seg, 1, FZ_FIX_ALL | FZ_MODE(1), 0);
	remove_tmpdir(&d);
	return 0;
}
