/*
 * libFuzzer target: the input is the contents of a log directory.
 *
 * Input layout (all integers little-endian; a short input reads as zero-padded):
 *
 *   off size field
 *     0    1 flags      bits 0-1: segments = 1 + value % 3
 *                       bit 2: recompute the CRC of every frame found by a walk
 *                       bit 3: recompute each segment header's CRC
 *                       bit 4: chain the segment headers (first_lsn, log_id,
 *                              prev_last_lsn, prev_tail_crc follow the walk)
 *                       bits 5-6: recovery mode for the applied recovery (0-3)
 *                       bit 7: frames take the LSN and log id the walk expects
 *     1    2 len0       bytes of segment 0 (when there is a segment after it)
 *     3    2 len1       bytes of segment 1 (when there is a segment after it)
 *     5    1 names      2 bits per segment choosing its file name (name_for())
 *     6    1 delta      small offset used by the name choices
 *     7    8 explicit   LSN used by name choice 3; with bit 4 of flags, its byte 0
 *                       (signed) is added to each chained first_lsn and its byte 1 is
 *                       xor'ed into each chained log_id (0: an exact chain)
 *    15    1 extra      bit 0: also write a file recovery and readers must ignore
 *                       bit 1: set each header's prev_last_lsn to first_lsn - 1 (so a
 *                              mutated first_lsn alone still decodes)
 *    16    . payload    segment 0, segment 1, ..., the last segment takes the rest
 *
 * The fix-up bits only repair checksums and chaining fields, so that mutations reach
 * past them; with all of them clear the bytes are written exactly as given.
 *
 * Each run writes the segments into a per-process scratch directory on /dev/shm
 * (emptied after every run), then:
 *   (a) rl_frame_check / rl_frame_check_header at every 8-aligned offset of every
 *       segment, and rl_seg_header_decode on its first 64 bytes;
 *   (b) rl_plan_recovery read-only in all four modes, cross-checking the modes;
 *   (c) a full read with ringlog_reader_open / ringlog_reader_next, checking LSN
 *       continuity and bounds, and that it agrees with read-only TOLERATE_TAIL
 *       recovery; then that nothing read-only changed a byte on disk;
 *   (d) rl_plan_recovery applied in the mode the input picks, which must do exactly what
 *       the read-only run of that mode predicted; after it the log must be clean
 *       (read-only TOLERATE_TAIL and ABSOLUTE succeed with no damage; nothing after
 *       the last segment's end can pass for this log's write: tail_is_clean) and read
 *       back in full; after a salvage (SKIP_CORRUPTED) the reader must still return
 *       every record it returned before, byte for byte, at the same LSNs.
 * A violated invariant prints what failed and traps.  The number of open file
 * descriptors must be the same before and after every run.
 *
 * Environment: FUZZ_LOG_LAX=1 steps around the library findings known when this was
 * written, so that fuzzing can go on past them (see tests/fuzz/README.md): the
 * reader/recovery agreement checks of (c) become warnings printed once, and inputs
 * whose segment names come within 2^20 of 2^64 (the LSN wrap-around findings) are
 * skipped.
 * FUZZ_LOG_VERBOSE=1 prints what each run wrote, recovered and read (for looking at
 * one input).
 */
#include "format.h"
#include "layout_oracle.h"
#include "log_internal.h"
#include "recovery.h"
#include "ringlog.h"
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_HDR 16u
#define FZ_MAX_SEGS 3u

enum {
	FZ_FIX_FRAME_CRC = 1u << 2,
	FZ_FIX_HEADER_CRC = 1u << 3,
	FZ_FIX_CHAIN = 1u << 4,
	FZ_FIX_FRAME_LSN = 1u << 7,
	FZ_EXTRA_STRAY = 1u << 0,
	FZ_EXTRA_FIX_PREV_LAST = 1u << 1,
};

static char g_dir[128];
static int g_dir_fd = -1;
static int g_lax;
static int g_verbose;

__attribute__((noreturn)) static void fz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "\nfuzz_log: invariant violated at %s:%d: %s\n", file, line, what);
	fprintf(stderr, "fuzz_log: last ringlog error: %s\n", ringlog_last_error());
	__builtin_trap();
}

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond))                                                               \
			fz_fail(#cond, __FILE__, __LINE__);                                \
	} while (0)

/* A check of agreement between the reader and recovery: FUZZ_LOG_LAX=1 reports it
 * once instead of trapping, so fuzzing can go on past a known divergence. */
#define XCHECK(cond)                                                                       \
	do {                                                                               \
		if (!(cond)) {                                                             \
			if (!g_lax)                                                        \
				fz_fail(#cond, __FILE__, __LINE__);                        \
			static int warned_;                                                \
			if (!warned_) {                                                    \
				warned_ = 1;                                               \
				fprintf(stderr, "fuzz_log: (lax) reader/recovery divergence "  \
						"at %s:%d: %s\n",                          \
					__FILE__, __LINE__, #cond);                        \
			}                                                                  \
		}                                                                          \
	} while (0)

struct fz_seg {
	uint8_t *buf; /* exactly len bytes (so ASan sees any read past them) */
	size_t len;
	uint64_t name;
	char fname[RL_SEG_NAME_LEN + 1];
	/* what a walk over its frames found */
	uint64_t walk_next_lsn;
	uint32_t walk_last_crc;
};

struct fz_run {
	uint8_t flags, extra;
	unsigned nseg;
	struct fz_seg seg[FZ_MAX_SEGS];
	uint64_t total;    /* bytes of all segment files */
	uint64_t max_seg;  /* bytes of the largest segment file */
	uint64_t min_name; /* LSN of the first segment */
	char stray[48];    /* "" or a file that is not a segment */
};

struct fz_rec {
	int ret;
	int empty;
	uint64_t next_lsn, log_id;
	struct rl_segment last; /* fd already closed */
	uint64_t last_file_size;
	int tail_clean; /* nothing after the last segment's end passes for this log's */
	size_t nactions; /* steps of the plan */
	struct ringlog_recovery rep;
};

/* ---- scratch directory ---- */

static void clear_dir(void)
{
	int fd = dup(g_dir_fd);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, ".."))
			unlinkat(g_dir_fd, de->d_name, 0);
	}
	closedir(d);
}

/* Scratch directories of fuzzing processes that died (a crash skips the atexit
 * handler): remove them, so that crashes do not pile up in /dev/shm. */
static void remove_stale_dirs(const char *base)
{
	DIR *d = opendir(base);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		long pid;
		char tail;
		if (sscanf(de->d_name, "ringlog-fuzz.%ld%c", &pid, &tail) != 1 || pid <= 0 ||
		    pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		DIR *sub = fdopendir(fd);
		if (!sub) {
			close(fd);
			continue;
		}
		struct dirent *e;
		while ((e = readdir(sub)) != NULL)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				unlinkat(fd, e->d_name, 0);
		closedir(sub);
		unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

static void remove_dir(void)
{
	if (g_dir_fd < 0)
		return;
	clear_dir();
	close(g_dir_fd);
	g_dir_fd = -1;
	rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *lax = getenv("FUZZ_LOG_LAX");
	g_lax = lax && *lax && strcmp(lax, "0") != 0;
	const char *verbose = getenv("FUZZ_LOG_VERBOSE");
	g_verbose = verbose && *verbose && strcmp(verbose, "0") != 0;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	remove_stale_dirs(base);
	snprintf(g_dir, sizeof(g_dir), "%s/ringlog-fuzz.%ld", base, (long)getpid());
	if (mkdir(g_dir, 0700) < 0 && errno != EEXIST) {
		perror(g_dir);
		abort();
	}
	g_dir_fd = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g_dir_fd < 0) {
		perror(g_dir);
		abort();
	}
	clear_dir(); /* a directory left by an earlier process with the same pid */
	atexit(remove_dir);
	return 0;
}

/* Lowest free descriptor number: grows by one with every descriptor leaked. */
static int lowest_free_fd(void)
{
	int fd = dup(g_dir_fd);
	CHECK(fd >= 0);
	close(fd);
	return fd;
}

/* ---- building the directory from the input ---- */

static uint64_t get_u64(const uint8_t *p)
{
	return rl_get64(p);
}

/* Walk the frames of a segment as a writer would have laid them out, from offset 64:
 * while the bytes hold a plausible frame header whose length fits, step over it.
 * Optionally give each frame the expected LSN and log id, and recompute its CRC.
 * `due` is the LSN due at the segment's start, used when it has no header. */
static void walk_frames(struct fz_seg *s, uint64_t due, int fix_lsn, int fix_crc)
{
	uint64_t lsn = s->len >= 16 ? get_u64(s->buf + 8) : due;
	uint64_t log_id = s->len >= 24 ? get_u64(s->buf + 16) : 0;
	uint32_t last_crc = 0;
	uint64_t off = RL_SEG_HEADER_BYTES;
	while (off + RL_FRAME_HEADER_BYTES <= s->len) {
		uint8_t *f = s->buf + off;
		uint32_t magic = rl_get32(f);
		if (magic != RL_FRAME_MAGIC && magic != RL_HOLE_MAGIC && magic != RL_PAD_MAGIC)
			break;
		uint32_t flen = rl_get32(f + 8), nrecs = rl_get32(f + 12);
		if (magic == RL_PAD_MAGIC ? flen < RL_FRAME_HEADER_BYTES || nrecs != 0
		    : magic == RL_HOLE_MAGIC
			? flen < RL_FRAME_HEADER_BYTES
			: nrecs == 0 || (uint64_t)RL_FRAME_HEADER_BYTES + 4ull * nrecs > flen)
			break;
		if (flen % RL_FRAME_ALIGN != 0 || flen > s->len - off)
			break;
		if (fix_lsn) {
			rl_put64(f + 16, lsn);
			rl_put64(f + 24, log_id);
		}
		if (fix_crc && magic == RL_HOLE_MAGIC)
			rl_hole_encode(f, flen, nrecs, rl_get64(f + 16), rl_get64(f + 24));
		else if (fix_crc && magic == RL_PAD_MAGIC)
			rl_pad_encode(f, flen, rl_get64(f + 16), rl_get64(f + 24));
		else if (fix_crc)
			rl_frame_seal(f);
		last_crc = rl_get32(f + 4);
		lsn = rl_get64(f + 16) + nrecs;
		off += flen;
	}
	s->walk_next_lsn = lsn;
	s->walk_last_crc = last_crc;
}

/* Make segment k's header chain to segment k-1 (only the fields that fit), or miss in
 * its first LSN or log id by what the input's header says (skew[0], skew[1]). */
static void chain_header(struct fz_run *run, unsigned k, const uint8_t *skew_bytes)
{
	struct fz_seg *s = &run->seg[k];
	uint64_t skew = (uint64_t)(int64_t)(int8_t)skew_bytes[0];
	uint64_t xor = skew_bytes[1];
	if (k > 0 && s->len >= 16)
		rl_put64(s->buf + 8, run->seg[k - 1].walk_next_lsn + skew);
	if (k > 0 && s->len >= 24 && run->seg[0].len >= 24)
		rl_put64(s->buf + 16, get_u64(run->seg[0].buf + 16) ^ xor);
	if (s->len >= 32)
		rl_put64(s->buf + 24, get_u64(s->buf + 8) - 1);
	if (s->len >= 36)
		rl_put32(s->buf + 32, k > 0 ? run->seg[k - 1].walk_last_crc : 0);
}

/* The file name (first LSN) of segment k, from the input's choice:
 *   0: the first_lsn in its header (if it has one), else the LSN expected there;
 *   1: the LSN expected there (after the previous segment's frames) + delta;
 *   2: its header's first_lsn + (signed) delta;
 *   3: the explicit LSN + k. */
static uint64_t name_for(const struct fz_run *run, const uint8_t *hdr, unsigned k)
{
	const struct fz_seg *s = &run->seg[k];
	unsigned choice = (hdr[5] >> (2 * k)) & 3;
	uint8_t delta = hdr[6];
	uint64_t in_header = s->len >= 16 ? get_u64(s->buf + 8) : 0;
	uint64_t expected = k == 0 ? (in_header ? in_header : 1) : run->seg[k - 1].walk_next_lsn;
	uint64_t v;
	switch (choice) {
	case 0: v = in_header ? in_header : expected; break;
	case 1: v = expected + delta; break;
	case 2: v = (in_header ? in_header : expected) + (uint64_t)(int64_t)(int8_t)delta; break;
	default: v = get_u64(hdr + 7) + k; break;
	}
	for (;;) {
		if (v == 0)
			v = 1;
		int dup = 0;
		for (unsigned j = 0; j < k; j++)
			dup |= run->seg[j].name == v;
		if (!dup)
			return v;
		v++;
	}
}

static void write_file(const char *name, const uint8_t *buf, size_t len)
{
	int fd = openat(g_dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		CHECK(n > 0);
		done += (size_t)n;
	}
	close(fd);
}

/* Names that look almost like segments; recovery and readers must ignore them. */
static void stray_name(char *out, size_t cap, uint8_t pick, uint64_t lsn)
{
	switch (pick % 7) {
	case 0: snprintf(out, cap, "LOCK"); break;
	case 1: snprintf(out, cap, "%020" PRIu64 ".rlog.tmp", lsn); break;
	case 2: snprintf(out, cap, "%019" PRIu64 ".rlog", (uint64_t)(lsn % 10000000000000000000ull)); break;
	case 3: snprintf(out, cap, "%020" PRIu64 ".rlo", lsn); break;
	case 4: snprintf(out, cap, "00000000000000000000.rlog"); break;
	case 5: snprintf(out, cap, "99999999999999999999.rlog"); break;
	default: snprintf(out, cap, "%020" PRIu64 ".RLOG", lsn); break;
	}
}

/* LAX mode: names this close to 2^64 could make LSNs wrap (a known finding). */
#define FZ_LAX_NAME_LIMIT (UINT64_MAX - (1ull << 20))

/* Write the input's segments.  Returns 0 when the input is skipped (LAX mode). */
static int build_run(struct fz_run *run, const uint8_t *data, size_t size)
{
	uint8_t hdr[FZ_HDR] = {0};
	size_t h = size < FZ_HDR ? size : FZ_HDR;
	memcpy(hdr, data, h);
	const uint8_t *p = data + h;
	size_t rem = size - h;

	memset(run, 0, sizeof(*run));
	run->flags = hdr[0];
	run->extra = hdr[15];
	run->nseg = 1 + (hdr[0] & 3) % 3;
	for (unsigned k = 0; k < run->nseg; k++) {
		size_t want = k + 1 == run->nseg ? rem : (size_t)(hdr[1 + 2 * k] | hdr[2 + 2 * k] << 8);
		if (want > rem)
			want = rem;
		struct fz_seg *s = &run->seg[k];
		s->len = want;
		s->buf = malloc(want ? want : 1);
		CHECK(s->buf != NULL);
		if (want)
			memcpy(s->buf, p, want);
		p += want;
		rem -= want;
	}
	for (unsigned k = 0; k < run->nseg; k++) {
		struct fz_seg *s = &run->seg[k];
		if (run->flags & FZ_FIX_CHAIN)
			chain_header(run, k, hdr + 7);
		else if ((run->extra & FZ_EXTRA_FIX_PREV_LAST) && s->len >= 32)
			rl_put64(s->buf + 24, get_u64(s->buf + 8) - 1);
		walk_frames(s, k ? run->seg[k - 1].walk_next_lsn : 1,
			    !!(run->flags & FZ_FIX_FRAME_LSN), !!(run->flags & FZ_FIX_FRAME_CRC));
		if ((run->flags & FZ_FIX_HEADER_CRC) && s->len >= RL_SEG_HEADER_BYTES)
			rl_put32(s->buf + 60, rl_crc32c(s->buf, 60));
		s->name = name_for(run, hdr, k);
		if (g_lax && s->name > FZ_LAX_NAME_LIMIT)
			return 0;
		rl_seg_name(s->fname, s->name);
		uint64_t parsed = 0;
		/* 2^64 - 1 cannot start a segment: that name is not a segment's. */
		if (s->name == UINT64_MAX) {
			CHECK(rl_seg_name_parse(s->fname, &parsed) == 0);
			return 0;
		}
		CHECK(rl_seg_name_parse(s->fname, &parsed) == 1 && parsed == s->name);
		if (k == 0 || s->name < run->min_name)
			run->min_name = s->name;
		run->total += s->len;
		if (s->len > run->max_seg)
			run->max_seg = s->len;
		write_file(s->fname, s->buf, s->len);
		if (g_verbose)
			fprintf(stderr, "  segment %u: %s, %zu bytes\n", k, s->fname, s->len);
	}
	if (run->extra & FZ_EXTRA_STRAY) {
		stray_name(run->stray, sizeof(run->stray), hdr[6], run->seg[0].name);
		uint64_t ignored;
		CHECK(!rl_seg_name_parse(run->stray, &ignored));
		write_file(run->stray, run->seg[0].buf, run->seg[0].len);
	}
	return 1;
}

static void finish_run(struct fz_run *run)
{
	for (unsigned k = 0; k < run->nseg; k++) {
		if (run->seg[k].fname[0]) { /* "" when a skipped input never named it */
			unlinkat(g_dir_fd, run->seg[k].fname, 0);
			char aside[RL_SEG_NAME_LEN + 16]; /* set aside by a salvage */
			snprintf(aside, sizeof(aside), "%s.salvaged", run->seg[k].fname);
			unlinkat(g_dir_fd, aside, 0);
		}
		free(run->seg[k].buf);
	}
	if (run->stray[0])
		unlinkat(g_dir_fd, run->stray, 0);
}

/* 1 if every segment file holds exactly the bytes written. */
static int files_unchanged(const struct fz_run *run)
{
	for (unsigned k = 0; k < run->nseg; k++) {
		const struct fz_seg *s = &run->seg[k];
		int fd = openat(g_dir_fd, s->fname, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return 0;
		struct stat st;
		int same = fstat(fd, &st) == 0 && (uint64_t)st.st_size == s->len;
		if (same && s->len) {
			uint8_t *b = malloc(s->len);
			CHECK(b != NULL);
			same = pread(fd, b, s->len, 0) == (ssize_t)s->len && !memcmp(b, s->buf, s->len);
			free(b);
		}
		close(fd);
		if (!same)
			return 0;
	}
	return 1;
}

/* ---- (a) the frame and header checks over raw bytes ---- */

static int all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* The validity rule's record part, written out again: lengths from offset 32 end
 * inside the frame with fewer than 8 bytes, all zero, left over. */
static int records_tile(const uint8_t *f, uint32_t flen, uint32_t nrecs)
{
	uint64_t pos = RL_FRAME_HEADER_BYTES;
	for (uint32_t i = 0; i < nrecs; i++) {
		if (pos + 4 > flen)
			return 0;
		pos += 4 + (uint64_t)rl_get32(f + pos);
		if (pos > flen)
			return 0;
	}
	return flen - pos < RL_FRAME_ALIGN && all_zero(f + pos, flen - pos);
}

/* The hole and pad rule (docs/format.md), written out again: length a multiple of 8
 * and at least 32 (and for a pad, no LSN: nrecs 0), the log id, LSN not 0, not
 * wrapping, the one due; CRC over bytes 8..31; the entry inside the bytes given.
 * Neither has records. */
static void check_hole_at(const uint8_t *p, uint64_t avail, uint64_t expect, uint64_t log_id,
			  enum rl_frame_status hs, enum rl_frame_status st,
			  const struct rl_frame_info *hinfo)
{
	uint32_t flen = rl_get32(p + 8), nrecs = rl_get32(p + 12);
	uint64_t first = rl_get64(p + 16);
	enum rl_frame_status want = RL_FRAME_OK;
	int pad = rl_get32(p) == RL_PAD_MAGIC;
	if (flen % RL_FRAME_ALIGN != 0 || flen < RL_FRAME_HEADER_BYTES || (pad && nrecs != 0))
		want = RL_FRAME_BAD_LENGTH;
	else if (rl_get64(p + 24) != log_id)
		want = RL_FRAME_BAD_LOG_ID;
	else if (first == 0 || first > UINT64_MAX - nrecs || (expect != 0 && first != expect))
		want = RL_FRAME_BAD_LSN;
	else if (rl_crc32c(p + 8, RL_FRAME_HEADER_BYTES - 8) != rl_get32(p + 4))
		want = RL_FRAME_BAD_CRC;
	CHECK(hs == want);
	if (want != RL_FRAME_OK) {
		CHECK(st == want);
		return;
	}
	CHECK(hinfo->hole == 1 && hinfo->pad == (uint32_t)pad && hinfo->frame_len == flen &&
	      hinfo->nrecs == nrecs && hinfo->first_lsn == first);
	CHECK(st == (flen > avail ? RL_FRAME_TRUNCATED : RL_FRAME_OK));
	struct rl_frame_info info = *hinfo;
	struct rl_record_cursor cur = {0, 0};
	const uint8_t *d;
	uint32_t n;
	CHECK(!rl_frame_next_record(p, &info, &cur, &d, &n));
}

static void check_frame_at(const uint8_t *p, uint64_t avail, uint64_t expect, uint64_t log_id)
{
	struct rl_frame_info info, hinfo;
	memset(&info, 0, sizeof(info));
	enum rl_frame_status st = rl_frame_check(p, avail, expect, log_id, &info);
	CHECK(st <= RL_FRAME_BAD_RECORDS);
	CHECK(rl_frame_status_str(st) != NULL);
	if (avail < RL_FRAME_HEADER_BYTES) {
		CHECK(st == (all_zero(p, avail) ? RL_FRAME_END : RL_FRAME_TRUNCATED));
		return;
	}
	memset(&hinfo, 0, sizeof(hinfo));
	enum rl_frame_status hs = rl_frame_check_header(p, expect, log_id, &hinfo);
	if (rl_get32(p) == RL_HOLE_MAGIC || rl_get32(p) == RL_PAD_MAGIC) {
		check_hole_at(p, avail, expect, log_id, hs, st, &hinfo);
		return;
	}
	CHECK(hs == RL_FRAME_OK || hs == RL_FRAME_END || hs == RL_FRAME_BAD_MAGIC ||
	      hs == RL_FRAME_BAD_LENGTH || hs == RL_FRAME_BAD_LOG_ID || hs == RL_FRAME_BAD_LSN);
	if (hs != RL_FRAME_OK) {
		CHECK(st == hs);
		CHECK((hs == RL_FRAME_END) == (rl_get32(p) != RL_FRAME_MAGIC &&
					       all_zero(p, RL_FRAME_HEADER_BYTES)));
		return;
	}
	/* The header passed: rules 1-5 hold for it. */
	CHECK(rl_get32(p) == RL_FRAME_MAGIC);
	CHECK(hinfo.frame_len == rl_get32(p + 8) && hinfo.nrecs == rl_get32(p + 12));
	CHECK(hinfo.frame_len % RL_FRAME_ALIGN == 0 && hinfo.frame_len <= RL_FRAME_MAX_BYTES);
	CHECK(hinfo.nrecs >= 1);
	CHECK((uint64_t)RL_FRAME_HEADER_BYTES + 4ull * hinfo.nrecs <= hinfo.frame_len);
	CHECK(rl_get64(p + 24) == log_id);
	CHECK(expect == 0 || hinfo.first_lsn == expect);
	if (hinfo.frame_len > avail) {
		CHECK(st == RL_FRAME_TRUNCATED);
		return;
	}
	int crc_ok = rl_crc32c(p + 8, hinfo.frame_len - 8) == rl_get32(p + 4);
	int tiles = records_tile(p, hinfo.frame_len, hinfo.nrecs);
	if (!crc_ok) {
		CHECK(st == RL_FRAME_BAD_CRC);
		return;
	}
	CHECK(st == (tiles ? RL_FRAME_OK : RL_FRAME_BAD_RECORDS));
	if (st != RL_FRAME_OK)
		return;
	CHECK(info.frame_len == hinfo.frame_len && info.nrecs == hinfo.nrecs &&
	      info.first_lsn == hinfo.first_lsn && info.crc == hinfo.crc);

	/* Walk the records: exactly nrecs, each inside the frame, in order. */
	struct rl_record_cursor cur = {0, 0};
	const uint8_t *d, *prev_end = p + RL_FRAME_HEADER_BYTES;
	uint32_t n, count = 0;
	while (rl_frame_next_record(p, &info, &cur, &d, &n)) {
		CHECK(count < info.nrecs);
		CHECK(d == prev_end + 4);
		CHECK(d + n <= p + info.frame_len);
		prev_end = d + n;
		count++;
	}
	CHECK(count == info.nrecs);
	CHECK(p + info.frame_len - prev_end < (ptrdiff_t)RL_FRAME_ALIGN);
	CHECK(!rl_frame_next_record(p, &info, &cur, &d, &n));
}

static void check_segment_bytes(const struct fz_seg *s)
{
	uint64_t hdr_first = 0, hdr_id = 0;
	if (s->len >= RL_SEG_HEADER_BYTES) {
		struct rl_seg_header h;
		int r = rl_seg_header_decode(s->buf, &h);
		CHECK(r == 0 || r == -EBADMSG);
		if (r == 0) {
			CHECK(h.first_lsn != 0 && h.prev_last_lsn == h.first_lsn - 1);
			CHECK(rl_get32(s->buf) == RL_SEG_MAGIC);
			uint8_t again[RL_SEG_HEADER_BYTES];
			struct rl_seg_header h2;
			rl_seg_header_encode(&h, again);
			CHECK(rl_seg_header_decode(again, &h2) == 0);
			CHECK(h2.first_lsn == h.first_lsn && h2.log_id == h.log_id &&
			      h2.prev_last_lsn == h.prev_last_lsn &&
			      h2.prev_tail_crc == h.prev_tail_crc);
			hdr_first = h.first_lsn;
			hdr_id = h.log_id;
		}
	}
	for (uint64_t off = 0; off <= s->len; off += RL_FRAME_ALIGN) {
		const uint8_t *p = s->buf + off;
		uint64_t avail = s->len - off;
		uint64_t own_lsn = avail >= 24 ? get_u64(p + 16) : 0;
		uint64_t own_id = avail >= 32 ? get_u64(p + 24) : 0;
		check_frame_at(p, avail, 0, own_id);
		check_frame_at(p, avail, own_lsn, own_id);
		check_frame_at(p, avail, hdr_first, hdr_id);
		if (avail >= RL_FRAME_HEADER_BYTES && own_lsn + 1 != 0) {
			/* The LSN rule: a frame never passes where another LSN is due. */
			struct rl_frame_info info;
			CHECK(rl_frame_check_header(p, own_lsn + 1, own_id, &info) != RL_FRAME_OK);
		}
	}
}

/* ---- (b) recovery ---- */

/* The end rule of the last segment, as the tests read docs/format.md (layout_oracle.h,
 * shared with the power-loss tests): nothing after its end `end` is a frame, hole or
 * pad header of log `log_id` at LSN `lsn` or later, at any 8-byte offset. */
static int tail_is_clean(int fd, uint64_t log_id, uint64_t end, uint64_t lsn)
{
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	uint64_t size = (uint64_t)st.st_size;
	if (end >= size)
		return 1;
	uint8_t *buf = malloc(size);
	CHECK(buf != NULL);
	CHECK(pread(fd, buf, size, 0) == (ssize_t)size);
	int clean = lo_torn_end(buf, size, end, log_id, lsn) == 0;
	free(buf);
	return clean;
}

static void recover(int apply, uint32_t mode, struct fz_rec *r)
{
	struct rl_plan out;
	memset(r, 0, sizeof(*r));
	r->ret = rl_plan_recovery(g_dir_fd, mode, apply, &out);
	r->nactions = out.nactions;
	rl_plan_free(&out);
	r->empty = out.empty;
	r->next_lsn = out.next_lsn;
	r->log_id = out.log_id;
	r->last = out.last;
	r->rep = out.report;
	if (r->ret == 0 && !out.empty) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, out.last.first_lsn);
		int fd = openat(g_dir_fd, name, O_RDONLY | O_CLOEXEC);
		CHECK(fd >= 0);
		struct stat st;
		CHECK(fstat(fd, &st) == 0);
		r->last_file_size = (uint64_t)st.st_size;
		r->tail_clean = tail_is_clean(fd, out.log_id, out.last.size, out.next_lsn);
		close(fd);
	}
	r->last.fd = -1;
	if (g_verbose)
		fprintf(stderr,
			"  recover(apply=%d, mode=%u) = %d: LSN %" PRIu64 "..%" PRIu64 " next %" PRIu64
			", cut %" PRIu64 ", dropped %u, damage %d %s@%" PRIu64 " (%s)%s%s\n",
			apply, mode, r->ret, r->rep.first_lsn, r->rep.last_lsn, r->next_lsn,
			r->rep.cut_bytes, r->rep.dropped_segments, r->rep.damage,
			r->rep.damage_file, r->rep.damage_offset, r->rep.damage_reason,
			r->ret ? ": " : "", r->ret ? ringlog_last_error() : "");
	CHECK(r->ret == 0 || r->ret == -EBADMSG);
	/* A refusal plans nothing; a plan without steps changes nothing, so reports no
	 * cut, drop, hole, rewrite or set-aside. */
	CHECK(r->ret == 0 || r->nactions == 0);
	if (r->ret == 0 && r->nactions == 0)
		CHECK(r->rep.cut_bytes == 0 && r->rep.dropped_segments == 0 && r->rep.holes == 0 &&
		      r->rep.rewritten_headers == 0 && r->rep.set_aside_segments == 0);
}

static int seg_name_ok(const char *name)
{
	uint64_t lsn;
	return rl_seg_name_parse(name, &lsn);
}

/* What must hold for any recovery result over a directory of nseg segments. */
static void check_recovery(const struct fz_run *run, const struct fz_rec *r, uint32_t mode,
			   uint32_t nseg, uint64_t total)
{
	const struct ringlog_recovery *rep = &r->rep;
	CHECK(rep->mode == mode);
	CHECK(rep->segments == nseg);
	CHECK(!r->empty);
	/* (Salvage may set the first segments aside.) */
	CHECK(rep->set_aside_segments ? rep->first_lsn >= run->min_name
				      : rep->first_lsn == run->min_name);
	if (r->ret != 0) {
		CHECK(rep->damage == -EBADMSG);
		CHECK(seg_name_ok(rep->damage_file));
		CHECK(rep->damage_reason[0] != '\0');
		return;
	}
	if (rep->damage) {
		CHECK(rep->damage == -EBADMSG);
		CHECK(seg_name_ok(rep->damage_file));
	}
	/* The LSNs kept: first_lsn .. last_lsn, and the writer would go on at next_lsn.
	 * No wrap-around: next_lsn is a real LSN after all of them. */
	CHECK(r->next_lsn == rep->last_lsn + 1);
	CHECK(r->next_lsn != 0);
	CHECK(r->next_lsn >= rep->first_lsn);
	/* Every record takes at least 4 bytes in a file; holes stand for the rest. */
	CHECK(r->next_lsn - rep->first_lsn <= total / 4 + rep->lost_lsns);
	CHECK(rep->lost_lsns <= r->next_lsn - rep->first_lsn);
	CHECK(r->last.first_lsn >= rep->first_lsn && r->last.first_lsn <= r->next_lsn);
	/* (A torn segment header counts as rewritten: 64 bytes, even read-only.) */
	CHECK(r->last.size >= RL_SEG_HEADER_BYTES);
	/* (Read-only, salvage counts the holes it would append to the last segment.) */
	uint64_t base = r->last_file_size > RL_SEG_HEADER_BYTES ? r->last_file_size
								: RL_SEG_HEADER_BYTES;
	CHECK(r->last.size <= base + (uint64_t)RL_FRAME_HEADER_BYTES * rep->holes);
	CHECK(r->last.size % RL_FRAME_ALIGN == 0);
	CHECK(rep->dropped_segments < nseg);
	if (mode == RINGLOG_RECOVER_ABSOLUTE)
		CHECK(rep->damage == 0 && rep->cut_bytes == 0 && rep->dropped_segments == 0);
	if (mode == RINGLOG_RECOVER_TOLERATE_TAIL || mode == RINGLOG_RECOVER_SKIP_CORRUPTED)
		CHECK(rep->dropped_segments == 0);
	if (mode != RINGLOG_RECOVER_SKIP_CORRUPTED)
		CHECK(rep->holes == 0 && rep->set_aside_segments == 0 &&
		      rep->rewritten_headers == 0);
	CHECK(rep->set_aside_segments < nseg);
	CHECK(rep->reserved_pad == 0);
	for (size_t i = 0; i < sizeof(rep->reserved) / sizeof(rep->reserved[0]); i++)
		CHECK(rep->reserved[i] == 0);
	CHECK(rep->cut_bytes <= total);
}

static int same_damage(const struct ringlog_recovery *a, const struct ringlog_recovery *b)
{
	return strcmp(a->damage_file, b->damage_file) == 0 &&
	       a->damage_offset == b->damage_offset && a->damage_lsn == b->damage_lsn;
}

static void check_modes(const struct fz_rec *tol, const struct fz_rec *abs,
			const struct fz_rec *pit, const struct fz_rec *skip)
{
	/* Salvage refuses only what point-in-time refuses too, and keeps at least as
	 * much: the log up to the first damage is its prefix -- unless most segment
	 * headers name another log than the first segment's, and salvage sets the
	 * first segment aside. */
	if (skip->ret != 0)
		CHECK(pit->ret != 0);
	if (pit->ret == 0 && skip->ret == 0 && skip->rep.first_lsn == pit->rep.first_lsn)
		CHECK(skip->next_lsn >= pit->next_lsn);
	if (pit->ret == 0 && skip->ret == 0 && skip->rep.first_lsn != pit->rep.first_lsn)
		CHECK(skip->rep.set_aside_segments > 0);
	if (tol->ret == 0 && tol->rep.damage == 0) {
		CHECK(skip->ret == 0 && skip->rep.damage == 0 && skip->rep.holes == 0);
		CHECK(skip->next_lsn == tol->next_lsn && skip->rep.lost_lsns == tol->rep.lost_lsns);
		CHECK(skip->rep.cut_bytes == tol->rep.cut_bytes);
	}
	/* Salvage reports damage no later in the log than point-in-time does (unless it
	 * set segments aside: then its last kept segment may be a torn rotation, which
	 * is not damage, where point-in-time sees a damaged middle segment). */
	if (pit->rep.damage && !skip->rep.set_aside_segments) {
		int c = strcmp(skip->rep.damage_file, pit->rep.damage_file);
		CHECK(skip->rep.damage != 0);
		CHECK(c < 0 || (c == 0 && skip->rep.damage_offset <= pit->rep.damage_offset));
	}
	if (abs->ret == 0) {
		CHECK(tol->ret == 0 && pit->ret == 0);
		CHECK(tol->rep.damage == 0 && pit->rep.damage == 0);
		CHECK(tol->rep.last_lsn == abs->rep.last_lsn && pit->rep.last_lsn == abs->rep.last_lsn);
	}
	if (tol->ret == 0) {
		CHECK(pit->ret == 0);
		CHECK(pit->rep.last_lsn == tol->rep.last_lsn);
		CHECK(pit->rep.cut_bytes == tol->rep.cut_bytes);
		CHECK(pit->rep.dropped_segments == 0);
		CHECK(pit->next_lsn == tol->next_lsn);
	}
	if (pit->ret != 0)
		CHECK(tol->ret != 0 && abs->ret != 0);
	/* One scan, so the first damage is found at the same place by every mode. */
	if (tol->rep.damage && pit->rep.damage)
		CHECK(same_damage(&tol->rep, &pit->rep));
	if (tol->rep.damage && abs->rep.damage)
		CHECK(same_damage(&tol->rep, &abs->rep));
}

/* ---- (c) the reader ---- */

/* FNV-1a over a record's LSN, length and bytes, folded into *h. */
static void digest_record(uint64_t *h, const struct ringlog_record *rec)
{
	uint8_t head[12];
	rl_put64(head, rec->lsn);
	rl_put32(head + 8, rec->len);
	const uint8_t *parts[2] = {head, rec->data};
	size_t lens[2] = {sizeof(head), rec->len};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < lens[k]; i++)
			*h = (*h ^ parts[k][i]) * 0x100000001b3ull;
}

/* Read the whole log; `tol` is read-only TOLERATE_TAIL recovery of the same files.
 * Returns the number of records read; *digest gets the digest of the first `limit`
 * of them (digest_record). */
static uint64_t read_all(const struct fz_run *run, const struct fz_rec *tol, uint64_t total,
			 uint64_t limit, uint64_t *digest)
{
	*digest = 0xcbf29ce484222325ull;
	struct ringlog_reader *r = (struct ringlog_reader *)1;
	int ret = ringlog_reader_open(g_dir, 0, &r);
	if (ret < 0) {
		if (g_verbose)
			fprintf(stderr, "  reader: open = %d: %s\n", ret, ringlog_last_error());
		CHECK(r == NULL);
		CHECK(ret == -EBADMSG);
		/* Only a log recovery refuses, or one with nothing to read: its only
		 * segment is a torn creation (recovery would write its header). */
		XCHECK(tol->ret != 0 || (tol->rep.last_lsn + 1 == tol->rep.first_lsn &&
					 tol->rep.segments == 1 && tol->rep.damage == 0));
		return 0;
	}
	CHECK(ret == 0 && r != NULL);
	uint64_t prev = 0, count = 0, bytes = 0;
	volatile uint8_t sink = 0;
	for (;;) {
		struct ringlog_record rec;
		memset(&rec, 0, sizeof(rec));
		ret = ringlog_reader_next(r, &rec);
		if (ret <= 0)
			break;
		CHECK(ret == 1);
		CHECK(rec.lsn != 0);
		/* Rising LSNs from the first segment's on; dense but over holes, which
		 * tol->rep.lost_lsns counts (checked below). */
		CHECK(count == 0 ? rec.lsn >= run->min_name : rec.lsn > prev);
		CHECK(rec.lsn <= tol->rep.last_lsn || tol->ret != 0);
		CHECK(rec.batch_nrecs >= 1 && rec.lsn >= rec.batch_first_lsn &&
		      rec.lsn - rec.batch_first_lsn < rec.batch_nrecs);
		/* Inside what was fed: a segment header, a frame header, a length. */
		CHECK((uint64_t)rec.len + RL_SEG_HEADER_BYTES + RL_FRAME_HEADER_BYTES + 4 <=
		      run->max_seg);
		CHECK(rec.len == 0 || rec.data != NULL);
		if (rec.len) {
			const uint8_t *d = rec.data;
			sink ^= d[0] ^ d[rec.len - 1];
		}
		if (rec.lsn == rec.batch_first_lsn)
			bytes += RL_FRAME_HEADER_BYTES;
		bytes += 4 + (uint64_t)rec.len;
		CHECK(bytes <= total);
		if (count < limit)
			digest_record(digest, &rec);
		count++;
		prev = rec.lsn;
	}
	(void)sink;
	if (g_verbose)
		fprintf(stderr, "  reader: %" PRIu64 " records (LSN %" PRIu64 "..%" PRIu64
				"), then %d%s%s\n",
			count, count ? run->min_name : 0, count ? prev : 0, ret, ret ? ": " : "",
			ret ? ringlog_last_error() : "");
	CHECK(ret == 0 || ret == -EBADMSG);
	ringlog_reader_close(r);
	/* Agreement with recovery: the reader returns exactly the records recovery keeps,
	 * and fails where recovery refuses. */
	XCHECK((ret == 0) == (tol->ret == 0));
	XCHECK(tol->ret != 0 ||
	       count == tol->rep.last_lsn + 1 - tol->rep.first_lsn - tol->rep.lost_lsns);
	return count;
}

/* ---- the run ---- */

/* The segment files there are now, and their bytes. */
static uint32_t count_segment_files(const struct fz_run *run, uint64_t *bytes)
{
	uint32_t n = 0;
	struct stat st;
	*bytes = 0;
	for (unsigned k = 0; k < run->nseg; k++) {
		if (fstatat(g_dir_fd, run->seg[k].fname, &st, 0) == 0) {
			n++;
			*bytes += (uint64_t)st.st_size;
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (g_dir_fd < 0)
		LLVMFuzzerInitialize(NULL, NULL);
	int fd_base = lowest_free_fd();
	struct fz_run run;
	if (!build_run(&run, data, size)) {
		finish_run(&run);
		return 0;
	}

	/* (a) */
	for (unsigned k = 0; k < run.nseg; k++)
		check_segment_bytes(&run.seg[k]);

	/* (b) */
	struct fz_rec ro[4];
	for (uint32_t m = 0; m < 4; m++) {
		recover(0, m, &ro[m]);
		check_recovery(&run, &ro[m], m, run.nseg, run.total);
	}
	const struct fz_rec *tol = &ro[RINGLOG_RECOVER_TOLERATE_TAIL];
	check_modes(tol, &ro[RINGLOG_RECOVER_ABSOLUTE], &ro[RINGLOG_RECOVER_POINT_IN_TIME],
		    &ro[RINGLOG_RECOVER_SKIP_CORRUPTED]);

	/* (c) */
	uint64_t digest_before;
	uint64_t read_before = read_all(&run, tol, run.total, UINT64_MAX, &digest_before);
	CHECK(files_unchanged(&run)); /* nothing read-only wrote a byte */

	/* (d) */
	uint32_t mode = (uint32_t)((run.flags >> 5) & 3);
	const struct fz_rec *pred = &ro[mode];
	struct fz_rec ap;
	recover(1, mode, &ap);
	check_recovery(&run, &ap, mode, run.nseg, run.total);
	/* Read-only recovery predicts exactly what applying it does. */
	CHECK(ap.ret == pred->ret);
	CHECK(ap.rep.first_lsn == pred->rep.first_lsn && ap.rep.last_lsn == pred->rep.last_lsn);
	CHECK(ap.rep.cut_bytes == pred->rep.cut_bytes);
	CHECK(ap.rep.dropped_segments == pred->rep.dropped_segments);
	CHECK(ap.rep.lost_lsns == pred->rep.lost_lsns && ap.rep.holes == pred->rep.holes &&
	      ap.rep.set_aside_segments == pred->rep.set_aside_segments &&
	      ap.rep.rewritten_headers == pred->rep.rewritten_headers);
	CHECK(ap.rep.damage == pred->rep.damage && same_damage(&ap.rep, &pred->rep));
	CHECK(ap.next_lsn == pred->next_lsn);
	CHECK(ap.last.first_lsn == pred->last.first_lsn && ap.last.size == pred->last.size &&
	      ap.last.last_crc == pred->last.last_crc);
	if (ap.ret != 0) {
		CHECK(files_unchanged(&run)); /* a refusal repairs nothing */
	} else {
		uint32_t left = run.nseg - ap.rep.dropped_segments - ap.rep.set_aside_segments;
		uint64_t now; /* bytes on disk after the repair (a rewritten header adds some) */
		CHECK(count_segment_files(&run, &now) == left);
		CHECK(ap.tail_clean); /* the cut was made */
		/* Recovery's output is clean, in every mode. */
		struct fz_rec again, strict;
		recover(0, RINGLOG_RECOVER_TOLERATE_TAIL, &again);
		check_recovery(&run, &again, RINGLOG_RECOVER_TOLERATE_TAIL, left, now);
		CHECK(again.ret == 0);
		CHECK(again.rep.damage == 0 && again.rep.cut_bytes == 0 &&
		      again.rep.dropped_segments == 0);
		CHECK(again.rep.lost_lsns == ap.rep.lost_lsns);
		CHECK(again.rep.first_lsn == ap.rep.first_lsn && again.rep.last_lsn == ap.rep.last_lsn);
		CHECK(again.next_lsn == ap.next_lsn && again.log_id == ap.log_id);
		CHECK(again.last.first_lsn == ap.last.first_lsn && again.last.size == ap.last.size &&
		      again.last.last_crc == ap.last.last_crc);
		recover(0, RINGLOG_RECOVER_ABSOLUTE, &strict);
		check_recovery(&run, &strict, RINGLOG_RECOVER_ABSOLUTE, left, now);
		CHECK(strict.ret == 0);
		uint64_t digest_after;
		uint64_t n = read_all(&run, &again, now, read_before, &digest_after);
		CHECK(n == ap.rep.last_lsn + 1 - ap.rep.first_lsn - ap.rep.lost_lsns);
		if (mode == RINGLOG_RECOVER_SKIP_CORRUPTED && ap.rep.first_lsn == run.min_name) {
			/* Salvage keeps every record a reader could read before it (when it
			 * keeps the first segment, where the reader took the log id from). */
			CHECK(n >= read_before);
			CHECK(digest_after == digest_before);
		}
	}

	finish_run(&run);
	CHECK(lowest_free_fd() == fd_base); /* no descriptor leaked */
	return 0;
}
