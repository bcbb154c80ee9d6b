/*
 * Helpers shared by test_ship.c and test_ship_faults.c (libringlog-nats scenario tests):
 * a libnats client that reads a stream back and checks every message the shipper
 * published, log comparison frame by frame, a writer thread, restores run in a thread
 * with a bound, and children re-executed from the test's own binary.
 *
 * Header-only (static functions) because each test program links only natscluster.o and
 * testutil.o (ninja/nats.ninja); every function is marked unused so that a program that
 * needs only some of them still builds with -Werror.
 *
 * Nothing here asserts from a thread other than the caller's (cmocka's failures longjmp):
 * threads only record what happened, the test's thread checks it.
 */
#ifndef RL_SHIPTEST_H
#define RL_SHIPTEST_H

#include "testutil.h"

#include "format.h"
#include "natscluster.h"
#include "ringlog_nats.h"

#include <nats/nats.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define ST_UNUSED __attribute__((unused))
#define ST_SEC 1000000000ll

/* The name the checking client gives its connections (so /connz tells them apart). */
#define ST_CLIENT_NAME "ringlog-test-checker"

ST_UNUSED static uint64_t st_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

ST_UNUSED static void st_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* dir + "/" + name, malloc'd. */
ST_UNUSED static char *st_sub(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

/* 1 if the decimal number n appears in s as a whole number (no digit either side). */
ST_UNUSED static int st_has_number(const char *s, uint64_t n)
{
	char num[32];
	snprintf(num, sizeof(num), "%" PRIu64, n);
	size_t len = strlen(num);
	for (const char *p = s; (p = strstr(p, num)) != NULL; p++) {
		int before = p > s && p[-1] >= '0' && p[-1] <= '9';
		int after = p[len] >= '0' && p[len] <= '9';
		if (!before && !after)
			return 1;
	}
	return 0;
}

/* ---- logs ---- */

/* Small segments and ring (the writers here rotate often; opening prepares little). */
ST_UNUSED static void st_log_options(struct ringlog_options *o)
{
	tu_options(o, 256 << 10, 1 << 20);
}

/* Append one tagged batch (contents checkable with tu_record_ok); no cmocka calls, so a
 * writer thread may use it.  Returns 0 or the append's error; *last = its last LSN. */
ST_UNUSED static int st_append(struct ringlog *log, uint64_t tag, unsigned nrecs, unsigned len,
			       uint64_t *last)
{
	struct iovec iov[8];
	uint8_t *data = malloc((size_t)nrecs * len + 1);
	if (!data || nrecs > 8)
		abort();
	for (unsigned i = 0; i < nrecs; i++) {
		iov[i].iov_base = data + (size_t)i * len;
		iov[i].iov_len = len;
		tu_fill_record(iov[i].iov_base, len, tag, i);
	}
	uint64_t first = 0;
	int err = ringlog_append(log, iov, nrecs, &first);
	free(data);
	if (!err)
		*last = first + nrecs - 1;
	return err;
}

/* Append `batches` batches of varied sizes (tags from `tag`), wait until durable; returns
 * the last LSN.  *records / *bytes (if not NULL) add what was appended. */
ST_UNUSED static uint64_t st_append_some(struct ringlog *log, uint64_t tag, unsigned batches,
					 uint64_t *records, uint64_t *bytes)
{
	uint64_t last = 0;
	for (unsigned i = 0; i < batches; i++) {
		unsigned nrecs = 1 + (unsigned)((tag + i) % 4);
		unsigned len = 40 + (unsigned)(((tag + i) * 53) % 700);
		int err = st_append(log, tag + i, nrecs, len, &last);
		if (err)
			fail_msg("append: %s (%s)", ringlog_strerror(err), ringlog_last_error());
		if (records)
			*records += nrecs;
		if (bytes)
			*bytes += RINGLOG_FRAME_BYTES(nrecs, (uint64_t)nrecs * len);
	}
	if (batches) {
		int err = ringlog_wait(log, last);
		if (err)
			fail_msg("wait: %s (%s)", ringlog_strerror(err), ringlog_last_error());
	}
	return last;
}

/* What a log directory holds, read frame by frame (holes included). */
struct st_log_info {
	uint64_t frames, holes, records, bytes;
	uint64_t first_lsn, last_lsn; /* 0, 0 when empty */
};

ST_UNUSED static void st_log_info(const char *dir, struct st_log_info *out)
{
	memset(out, 0, sizeof(*out));
	struct ringlog_reader *r;
	int err = ringlog_reader_open(dir, 0, &r);
	if (err)
		fail_msg("reader_open %s: %s (%s)", dir, ringlog_strerror(err), ringlog_last_error());
	struct ringlog_frame f;
	int got;
	while ((got = ringlog_reader_next_frame(r, &f)) == 1) {
		if (out->frames == 0)
			out->first_lsn = f.first_lsn;
		out->frames++;
		out->bytes += f.len;
		if (f.kind == RINGLOG_FRAME_HOLE)
			out->holes++;
		else
			out->records += f.nrecs;
		if (f.nrecs)
			out->last_lsn = f.first_lsn + f.nrecs - 1;
	}
	if (got != 0)
		fail_msg("reading %s: %s (%s)", dir, ringlog_strerror(got), ringlog_last_error());
	ringlog_reader_close(r);
}

/* Every frame of log `a` equals log `b`'s, byte for byte and in order (so the same log
 * id, LSNs, batches, holes and records); `b` may hold more after them only if
 * `b_may_have_more`.  Returns the frames compared. */
ST_UNUSED static uint64_t st_compare_logs(const char *a, const char *b, int b_may_have_more)
{
	struct ringlog_reader *ra, *rb;
	int err = ringlog_reader_open(a, 0, &ra);
	if (err)
		fail_msg("reader_open %s: %s (%s)", a, ringlog_strerror(err), ringlog_last_error());
	err = ringlog_reader_open(b, 0, &rb);
	if (err)
		fail_msg("reader_open %s: %s (%s)", b, ringlog_strerror(err), ringlog_last_error());
	struct ringlog_frame x, y;
	uint64_t n = 0;
	int ga;
	while ((ga = ringlog_reader_next_frame(ra, &x)) == 1) {
		int gb = ringlog_reader_next_frame(rb, &y);
		if (gb != 1)
			fail_msg("%s ends (%d) where %s has a frame at LSN %" PRIu64, b, gb, a,
				 x.first_lsn);
		if (x.first_lsn != y.first_lsn || x.len != y.len || x.nrecs != y.nrecs ||
		    x.kind != y.kind || memcmp(x.bytes, y.bytes, x.len) != 0)
			fail_msg("frame %" PRIu64 " differs: %s has LSN %" PRIu64 " (%u bytes, %u "
				 "LSNs, kind %u), %s has LSN %" PRIu64 " (%u bytes, %u LSNs, kind %u)",
				 n, a, x.first_lsn, x.len, x.nrecs, x.kind, b, y.first_lsn, y.len,
				 y.nrecs, y.kind);
		n++;
	}
	assert_int_equal(ga, 0);
	if (!b_may_have_more) {
		int gb = ringlog_reader_next_frame(rb, &y);
		if (gb != 0)
			fail_msg("%s holds more than %s: a frame at LSN %" PRIu64, b, a,
				 gb == 1 ? y.first_lsn : 0);
	}
	ringlog_reader_close(ra);
	ringlog_reader_close(rb);
	return n;
}

/* The log in dir checks clean (every frame valid, no torn tail) and ends at `last`. */
ST_UNUSED static void st_assert_log_clean(const char *dir, uint64_t last)
{
	struct ringlog_recovery rep;
	int err = ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &rep);
	if (err)
		fail_msg("ringlog_check %s: %s (%s: %s at %s+%" PRIu64 ")", dir, ringlog_strerror(err),
			 ringlog_last_error(), rep.damage_reason, rep.damage_file, rep.damage_offset);
	assert_int_equal(rep.last_lsn, last);
}

/* ---- a libnats client that reads streams back ---- */

struct st_client {
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
};

ST_UNUSED static void st_client_open(struct st_client *cl, const char *urls)
{
	char buf[1024];
	const char *servers[TU_NATS_MAX_NODES];
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", urls);
	for (char *save, *u = strtok_r(buf, ",", &save); u && n < (int)TU_NATS_MAX_NODES;
	     u = strtok_r(NULL, ",", &save))
		servers[n++] = u;
	assert_int_equal(natsOptions_Create(&cl->opts), NATS_OK);
	assert_int_equal(natsOptions_SetServers(cl->opts, servers, n), NATS_OK);
	assert_int_equal(natsOptions_SetName(cl->opts, ST_CLIENT_NAME), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(cl->opts, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(cl->opts, 100), NATS_OK);
	assert_int_equal(natsOptions_SetFailRequestsOnDisconnect(cl->opts, true), NATS_OK);
	natsStatus s = NATS_OK;
	for (int tries = 0; tries < 50; tries++) {
		s = natsConnection_Connect(&cl->nc, cl->opts);
		if (s == NATS_OK)
			break;
		st_sleep_ms(100);
	}
	if (s != NATS_OK)
		fail_msg("connect to %s: %s", urls, natsStatus_GetText(s));
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 3000;
	assert_int_equal(natsConnection_JetStream(&cl->js, cl->nc, &jo), NATS_OK);
}

ST_UNUSED static void st_client_close(struct st_client *cl)
{
	jsCtx_Destroy(cl->js);
	natsConnection_Destroy(cl->nc);
	natsOptions_Destroy(cl->opts);
	memset(cl, 0, sizeof(*cl));
}

struct st_stream_info {
	uint64_t msgs, first_seq, last_seq;
	char description[128];
	char subject[128];
	int64_t replicas;
};

/* The stream's state from its leader, asked until it answers (15 s at most: through a
 * leader election).  0, or -ENOENT when there is no such stream. */
ST_UNUSED static int st_stream_info(struct st_client *cl, const char *stream,
				    struct st_stream_info *out)
{
	uint64_t deadline = st_now_ns() + 15 * ST_SEC;
	memset(out, 0, sizeof(*out));
	for (;;) {
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		natsStatus s = js_GetStreamInfo(&si, cl->js, stream, NULL, &jerr);
		if (s == NATS_OK) {
			out->msgs = si->State.Msgs;
			out->first_seq = si->State.FirstSeq;
			out->last_seq = si->State.LastSeq;
			snprintf(out->description, sizeof(out->description), "%s",
				 si->Config && si->Config->Description ? si->Config->Description
									: "");
			snprintf(out->subject, sizeof(out->subject), "%s",
				 si->Config && si->Config->SubjectsLen > 0 ? si->Config->Subjects[0]
									   : "");
			out->replicas = si->Config ? si->Config->Replicas : 0;
			jsStreamInfo_Destroy(si);
			return 0;
		}
		if (s == NATS_NOT_FOUND && jerr == JSStreamNotFoundErr)
			return -ENOENT;
		if (st_now_ns() > deadline)
			fail_msg("js_GetStreamInfo %s: %s (jerr %d)", stream, natsStatus_GetText(s),
				 (int)jerr);
		st_sleep_ms(100);
	}
}

/* Publish a message to a stream's subject as something other than a shipper would (a
 * foreign or forged message); returns its stream sequence. */
ST_UNUSED static uint64_t st_publish_raw(struct st_client *cl, const char *stream,
					 const void *data, int len, const char *const *headers)
{
	char subject[256];
	snprintf(subject, sizeof(subject), RINGLOG_NATS_SUBJECT_PREFIX "%s", stream);
	natsMsg *m = NULL;
	assert_int_equal(natsMsg_Create(&m, subject, NULL, data, len), NATS_OK);
	for (int i = 0; headers && headers[i]; i += 2)
		assert_int_equal(natsMsgHeader_Set(m, headers[i], headers[i + 1]), NATS_OK);
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_PublishMsg(&pa, cl->js, m, NULL, &jerr);
	if (s != NATS_OK)
		fail_msg("js_PublishMsg to %s: %s (jerr %d)", subject, natsStatus_GetText(s),
			 (int)jerr);
	uint64_t seq = pa->Sequence;
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	return seq;
}

/* A header's value as a whole unsigned number in `base`; fails the test otherwise. */
ST_UNUSED static uint64_t st_header_u64(natsMsg *m, uint64_t seq, const char *key, int base)
{
	const char *v = NULL;
	if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v || !*v)
		fail_msg("stream message %" PRIu64 ": no %s header", seq, key);
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, base);
	if (errno || *end || end == v || v[0] == '-')
		fail_msg("stream message %" PRIu64 ": %s is \"%s\", not a base-%d number", seq, key, v,
			 base);
	return n;
}

/* What a stream holds, as read back message by message by st_scan_stream. */
struct st_scan {
	uint64_t msgs;		 /* messages read (= the stream's) */
	uint64_t first_seq, last_seq;
	uint64_t first_lsn, last_lsn; /* the LSNs covered (0, 0 when empty) */
	uint64_t frames, holes, records, bytes;
	uint64_t chunk_msgs;	 /* messages that are chunks of a frame */
	uint64_t chunked_frames; /* frames that came in chunks */
	uint64_t packed_msgs;	 /* messages holding more than one frame */
	uint64_t max_payload;	 /* the largest payload seen */
	uint32_t tail_chunks;	 /* chunks of a frame not complete at the end (only with
				  * st_scan_stream_ex(..., allow_partial_tail)) */
};

struct st_scan_state {
	uint64_t log_id;
	uint64_t next_lsn; /* the LSN the next frame must start at (0: any) */
	struct ringlog_reader *src;
	const char *src_dir;
	uint8_t *chunk_buf;
	size_t chunk_len, chunk_cap;
	uint32_t chunk_k, chunk_n;
	uint64_t chunk_first, chunk_last;
};

/* Check one frame taken from the stream (message `seq`): valid, this log's, starting at
 * the next LSN, and byte for byte the source log's frame there. */
ST_UNUSED static void st_scan_frame(struct st_scan_state *ss, struct st_scan *out, uint64_t seq,
			  const uint8_t *buf, uint64_t avail, struct rl_frame_info *info)
{
	enum rl_frame_status fs = rl_frame_check(buf, avail, ss->next_lsn, ss->log_id, info);
	if (fs != RL_FRAME_OK)
		fail_msg("stream message %" PRIu64 ": frame at LSN %" PRIu64 " is %s", seq,
			 ss->next_lsn, rl_frame_status_str(fs));
	if (ss->src_dir) {
		if (!ss->src) {
			int err = ringlog_reader_open(ss->src_dir, info->first_lsn, &ss->src);
			if (err)
				fail_msg("reader_open %s at %" PRIu64 ": %s (%s)", ss->src_dir,
					 info->first_lsn, ringlog_strerror(err), ringlog_last_error());
		}
		struct ringlog_frame f;
		int got = ringlog_reader_next_frame(ss->src, &f);
		if (got != 1)
			fail_msg("stream message %" PRIu64 " holds LSN %" PRIu64
				 ", which the log %s does not have (%d)",
				 seq, info->first_lsn, ss->src_dir, got);
		if (f.first_lsn != info->first_lsn || f.len != info->frame_len ||
		    memcmp(f.bytes, buf, f.len) != 0)
			fail_msg("stream message %" PRIu64 ": the frame at LSN %" PRIu64
				 " (%u bytes) is not the log's (LSN %" PRIu64 ", %u bytes)",
				 seq, info->first_lsn, info->frame_len, f.first_lsn, f.len);
	}
	out->frames++;
	out->bytes += info->frame_len;
	if (info->hole)
		out->holes++;
	else
		out->records += info->nrecs;
	ss->next_lsn = info->first_lsn + info->nrecs;
}

/* Check one message: its headers (log id, LSN range, chunk, Nats-Msg-Id, and the expected
 * last sequence naming the message before it) and the frames in its payload. */
ST_UNUSED static void st_scan_message(struct st_scan_state *ss, struct st_scan *out, natsMsg *m,
			    uint64_t seq)
{
	const char *v = NULL;
	if (natsMsgHeader_Get(m, "Nats-Msg-Id", &v) != NATS_OK || !v || !*v)
		fail_msg("stream message %" PRIu64 ": no Nats-Msg-Id", seq);
	if (natsMsgHeader_Get(m, "Nats-Expected-Last-Sequence", &v) == NATS_OK) {
		uint64_t want = st_header_u64(m, seq, "Nats-Expected-Last-Sequence", 10);
		if (want != seq - 1)
			fail_msg("stream message %" PRIu64 ": Nats-Expected-Last-Sequence %" PRIu64,
				 seq, want);
	} else if (seq != 1) {
		/* Only the stream's first message may go without it (it expects nothing). */
		fail_msg("stream message %" PRIu64 ": no Nats-Expected-Last-Sequence", seq);
	}
	uint64_t id = st_header_u64(m, seq, "Ringlog-Log-Id", 16);
	if (id != ss->log_id)
		fail_msg("stream message %" PRIu64 ": Ringlog-Log-Id %016" PRIx64 ", the log is "
			 "%016" PRIx64,
			 seq, id, ss->log_id);
	uint64_t first = st_header_u64(m, seq, "Ringlog-First-Lsn", 10);
	uint64_t last = st_header_u64(m, seq, "Ringlog-Last-Lsn", 10);
	if (last < first)
		fail_msg("stream message %" PRIu64 ": LSNs %" PRIu64 "..%" PRIu64, seq, first, last);
	const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
	uint64_t len = (uint64_t)natsMsg_GetDataLength(m);
	if (len > out->max_payload)
		out->max_payload = len;

	const char *chunk = NULL;
	if (natsMsgHeader_Get(m, "Ringlog-Chunk", &chunk) == NATS_OK) {
		unsigned k = 0, n = 0;
		int end = 0;
		if (sscanf(chunk, "%u/%u%n", &k, &n, &end) != 2 || chunk[end] || k < 1 || k > n ||
		    n < 2)
			fail_msg("stream message %" PRIu64 ": Ringlog-Chunk \"%s\"", seq, chunk);
		out->chunk_msgs++;
		if (k == 1) {
			if (ss->chunk_n)
				fail_msg("stream message %" PRIu64 ": chunk 1/%u while chunk %u/%u "
					 "is not complete",
					 seq, n, ss->chunk_k, ss->chunk_n);
			if (ss->next_lsn && first != ss->next_lsn)
				fail_msg("stream message %" PRIu64 ": starts at LSN %" PRIu64
					 ", expected %" PRIu64 " (a gap or a duplicate)",
					 seq, first, ss->next_lsn);
			ss->chunk_n = n;
			ss->chunk_first = first;
			ss->chunk_last = last;
			ss->chunk_len = 0;
		} else if (ss->chunk_n != n || k != ss->chunk_k + 1 || first != ss->chunk_first ||
			   last != ss->chunk_last) {
			fail_msg("stream message %" PRIu64 ": chunk %u/%u of LSNs %" PRIu64 "..%" PRIu64
				 " after chunk %u/%u of %" PRIu64 "..%" PRIu64,
				 seq, k, n, first, last, ss->chunk_k, ss->chunk_n, ss->chunk_first,
				 ss->chunk_last);
		}
		ss->chunk_k = k;
		if (ss->chunk_len + len > ss->chunk_cap) {
			ss->chunk_cap = (ss->chunk_len + len) * 2;
			ss->chunk_buf = realloc(ss->chunk_buf, ss->chunk_cap);
			assert_non_null(ss->chunk_buf);
		}
		memcpy(ss->chunk_buf + ss->chunk_len, data, len);
		ss->chunk_len += len;
		if (k < n)
			return;
		/* The last chunk: the pieces joined are exactly one frame. */
		struct rl_frame_info info;
		ss->next_lsn = first;
		st_scan_frame(ss, out, seq, ss->chunk_buf, ss->chunk_len, &info);
		if (info.frame_len != ss->chunk_len || ss->next_lsn != last + 1)
			fail_msg("stream messages up to %" PRIu64 ": chunks of %zu bytes hold a frame "
				 "of %u bytes for LSNs %" PRIu64 "..%" PRIu64 ", headers say ..%" PRIu64,
				 seq, ss->chunk_len, info.frame_len, info.first_lsn,
				 ss->next_lsn - 1, last);
		out->chunked_frames++;
		ss->chunk_n = ss->chunk_k = 0;
		if (out->first_lsn == 0)
			out->first_lsn = first;
		out->last_lsn = last;
		return;
	}
	if (ss->chunk_n)
		fail_msg("stream message %" PRIu64 ": not a chunk, while chunk %u/%u is not complete",
			 seq, ss->chunk_k, ss->chunk_n);
	if (ss->next_lsn && first != ss->next_lsn)
		fail_msg("stream message %" PRIu64 ": starts at LSN %" PRIu64 ", expected %" PRIu64
			 " (a gap or a duplicate)",
			 seq, first, ss->next_lsn);
	ss->next_lsn = first;
	uint64_t off = 0, frames = 0;
	while (off < len) {
		struct rl_frame_info info;
		st_scan_frame(ss, out, seq, data + off, len - off, &info);
		off += info.frame_len;
		frames++;
	}
	if (frames == 0 || ss->next_lsn != last + 1)
		fail_msg("stream message %" PRIu64 ": %" PRIu64 " frames up to LSN %" PRIu64
			 ", headers say %" PRIu64 "..%" PRIu64,
			 seq, frames, ss->next_lsn - 1, first, last);
	if (frames > 1)
		out->packed_msgs++;
	if (out->first_lsn == 0)
		out->first_lsn = first;
	out->last_lsn = last;
}

/*
 * Read the whole stream back (an ordered consumer from its first message to the last one
 * it held when this started) and check that it holds the log's frames exactly once, in
 * order: every message as st_scan_message says, every frame starting at the LSN after the
 * one before, and, with `src_dir`, byte for byte the frame the log in src_dir holds there.
 * The stream must be quiet (no shipper running).  Fails the test otherwise.  With
 * `allow_partial_tail` the stream may end with the first chunks of a frame (what a
 * shipper killed between two chunks leaves); out->tail_chunks says how many.
 */
ST_UNUSED static void st_scan_stream_ex(struct st_client *cl, const char *stream,
					uint64_t log_id, const char *src_dir, int allow_partial_tail,
					struct st_scan *out)
{
	memset(out, 0, sizeof(*out));
	struct st_stream_info si;
	if (st_stream_info(cl, stream, &si) != 0)
		fail_msg("stream %s does not exist", stream);
	out->first_seq = si.first_seq;
	out->last_seq = si.last_seq;
	if (si.msgs == 0)
		return;
	if (si.msgs != si.last_seq - si.first_seq + 1)
		fail_msg("stream %s: %" PRIu64 " messages in sequences %" PRIu64 "..%" PRIu64, stream,
			 si.msgs, si.first_seq, si.last_seq);
	/* Message by message from the stream leader (js_GetMsg), as restore reads: a
	 * consumer reads whichever replica it is placed on, and nats-server 2.9.10 can
	 * leave one replica diverged after a whole-cluster stop (src/nats/restore.c). */
	struct st_scan_state ss = {.log_id = log_id, .src_dir = src_dir};
	for (uint64_t seq = si.first_seq; seq <= si.last_seq; seq++) {
		natsMsg *m = NULL;
		natsStatus s = NATS_TIMEOUT;
		uint64_t deadline = st_now_ns() + 15 * ST_SEC;
		while (st_now_ns() < deadline) {
			jsErrCode jerr = 0;
			s = js_GetMsg(&m, cl->js, stream, seq, NULL, &jerr);
			if (s == NATS_OK || jerr == JSNoMessageFoundErr)
				break;
			st_sleep_ms(100); /* (no leader for a moment) */
		}
		if (s != NATS_OK)
			fail_msg("stream %s: message %" PRIu64 " of %" PRIu64 "..%" PRIu64
				 " could not be read: %s",
				 stream, seq, si.first_seq, si.last_seq, natsStatus_GetText(s));
		st_scan_message(&ss, out, m, seq);
		out->msgs++;
		natsMsg_Destroy(m);
	}
	if (ss.chunk_n && !allow_partial_tail)
		fail_msg("stream %s ends inside a chunked frame (chunk %u/%u)", stream, ss.chunk_k,
			 ss.chunk_n);
	out->tail_chunks = ss.chunk_n ? ss.chunk_k : 0;
	ringlog_reader_close(ss.src);
	free(ss.chunk_buf);
}

ST_UNUSED static void st_scan_stream(struct st_client *cl, const char *stream, uint64_t log_id,
				     const char *src_dir, struct st_scan *out)
{
	st_scan_stream_ex(cl, stream, log_id, src_dir, 0, out);
}

/* st_scan_stream through a client of its own on `urls`. */
ST_UNUSED static void st_scan_with(const char *urls, const char *stream, uint64_t log_id,
				   const char *dir, struct st_scan *out)
{
	struct st_client cl;
	st_client_open(&cl, urls);
	st_scan_stream(&cl, stream, log_id, dir, out);
	st_client_close(&cl);
}

/* ---- shippers ---- */

ST_UNUSED static void st_ship_options(struct ringlog_nats_options *o, const char *urls,
				      const char *stream)
{
	ringlog_nats_options_init(o);
	o->servers = urls;
	o->stream = stream;
}

ST_UNUSED static struct ringlog_nats_shipper *st_ship_start(struct ringlog *log,
							    const struct ringlog_nats_options *o)
{
	struct ringlog_nats_shipper *s = NULL;
	int err = ringlog_nats_shipper_start(log, o, &s);
	if (err)
		fail_msg("ringlog_nats_shipper_start (stream %s): %s (%s)", o->stream,
			 ringlog_strerror(err), ringlog_last_error());
	assert_non_null(s);
	return s;
}

ST_UNUSED static struct ringlog_nats_shipper *st_ship_start_dir(const char *dir,
								const struct ringlog_nats_options *o)
{
	struct ringlog_nats_shipper *s = NULL;
	int err = ringlog_nats_shipper_start_dir(dir, o, &s);
	if (err)
		fail_msg("ringlog_nats_shipper_start_dir %s (stream %s): %s (%s)", dir, o->stream,
			 ringlog_strerror(err), ringlog_last_error());
	assert_non_null(s);
	return s;
}

ST_UNUSED static const char *st_state_name(uint32_t state)
{
	static const char *const names[] = {"CONNECTING", "SHIPPING", "CAUGHT_UP",
					    "BACKING_OFF", "STOPPED", "FAILED"};
	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "?";
}

ST_UNUSED static void st_print_stats(const char *what, struct ringlog_nats_shipper *s)
{
	struct ringlog_nats_stats st;
	ringlog_nats_shipper_stats(s, &st);
	printf("# %s: %s shipped %" PRIu64 "/%" PRIu64 " messages %" PRIu64 " retries %" PRIu64
	       " duplicates %" PRIu64 " timeouts %" PRIu64 " reconnects %" PRIu64
	       " ack p50 %.2f ms max %.2f ms%s%s\n",
	       what, st_state_name(st.state), st.shipped_lsn, st.durable_lsn, st.messages,
	       st.retries, st.duplicates, st.timeouts, st.reconnects, st.ack_p50_ns / 1e6,
	       st.ack_max_ns / 1e6, st.error ? ", error: " : "",
	       st.error ? ringlog_nats_shipper_error(s) : "");
}

/* Wait (at most `seconds`) until the shipper is caught up; fails the test with its state
 * and error otherwise. */
ST_UNUSED static void st_ship_wait(struct ringlog_nats_shipper *s, int seconds)
{
	int err = ringlog_nats_shipper_wait(s, seconds * ST_SEC);
	if (err) {
		struct ringlog_nats_stats st;
		ringlog_nats_shipper_stats(s, &st);
		fail_msg("shipper_wait: %s; state %s, shipped %" PRIu64 " of %" PRIu64
			 ", error %d: %s",
			 ringlog_strerror(err), st_state_name(st.state), st.shipped_lsn,
			 st.durable_lsn, st.error, ringlog_nats_shipper_error(s));
	}
}

ST_UNUSED static void st_ship_stop(struct ringlog_nats_shipper *s)
{
	int err = ringlog_nats_shipper_stop(s);
	if (err)
		fail_msg("shipper_stop: %s (%s)", ringlog_strerror(err), ringlog_last_error());
}

/* Ship everything durable in the open log to the stream and stop (start, wait, stop). */
ST_UNUSED static void st_ship_all(struct ringlog *log, const struct ringlog_nats_options *o)
{
	struct ringlog_nats_shipper *s = st_ship_start(log, o);
	st_ship_wait(s, 20);
	struct ringlog_nats_stats st;
	ringlog_nats_shipper_stats(s, &st);
	assert_int_equal(st.shipped_lsn, ringlog_durable_lsn(log));
	st_ship_stop(s);
}

/* ---- restores, in a thread (bounded; the thread records, the caller checks) ---- */

struct st_restore_run {
	char dir[4096], servers[1024], stream[256];
	int no_stream; /* pass NULL as the stream name */
	uint64_t until_lsn;
	int follow;
	volatile int stop;
	pthread_t thread;
	atomic_int done;
	int ret;
	struct ringlog_nats_restore_stats stats;
	char error[1024]; /* ringlog_last_error() of the restoring thread */
};

ST_UNUSED static void *st_restore_main(void *arg)
{
	struct st_restore_run *r = arg;
	struct ringlog_nats_options o;
	ringlog_nats_options_init(&o);
	o.servers = r->servers;
	o.stream = r->no_stream ? NULL : r->stream;
	r->ret = ringlog_nats_restore(r->dir, &o, r->until_lsn, r->follow, &r->stop, &r->stats);
	snprintf(r->error, sizeof(r->error), "%s", ringlog_last_error());
	atomic_store(&r->done, 1);
	return NULL;
}

/* Start ringlog_nats_restore(dir, {urls, stream}, until_lsn, follow, &r->stop, &r->stats)
 * in a thread. */
ST_UNUSED static struct st_restore_run *st_restore_start(const char *dir, const char *urls,
							 const char *stream, uint64_t until_lsn,
							 int follow)
{
	struct st_restore_run *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	snprintf(r->servers, sizeof(r->servers), "%s", urls);
	snprintf(r->stream, sizeof(r->stream), "%s", stream ? stream : "");
	r->no_stream = stream == NULL;
	r->until_lsn = until_lsn;
	r->follow = follow;
	memset(&r->stats, 0xee, sizeof(r->stats)); /* so that "not filled in" shows */
	assert_int_equal(pthread_create(&r->thread, NULL, st_restore_main, r), 0);
	return r;
}

/* Wait at most `seconds` for the restore to return; its result (r is freed unless it
 * hangs, which fails the test and leaves it running). */
ST_UNUSED static int st_restore_finish(struct st_restore_run *r, int seconds,
				       struct ringlog_nats_restore_stats *stats, char *error,
				       size_t error_len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	if (pthread_timedjoin_np(r->thread, NULL, &ts) != 0)
		fail_msg("ringlog_nats_restore into %s (stream %s) did not return within %d s",
			 r->dir, r->stream, seconds);
	int ret = r->ret;
	if (stats)
		*stats = r->stats;
	if (error)
		snprintf(error, error_len, "%s", r->error);
	free(r);
	return ret;
}

/* Restore (no follow), bounded to 60 s. */
ST_UNUSED static int st_restore(const char *dir, const char *urls, const char *stream,
				uint64_t until_lsn, struct ringlog_nats_restore_stats *stats,
				char *error, size_t error_len)
{
	struct st_restore_run *r = st_restore_start(dir, urls, stream, until_lsn, 0);
	return st_restore_finish(r, 60, stats, error, error_len);
}

/* Restore that must succeed; returns its stats. */
ST_UNUSED static struct ringlog_nats_restore_stats st_restore_ok(const char *dir, const char *urls,
								 const char *stream,
								 uint64_t until_lsn)
{
	struct ringlog_nats_restore_stats st;
	char error[1024];
	int err = st_restore(dir, urls, stream, until_lsn, &st, error, sizeof(error));
	if (err)
		fail_msg("ringlog_nats_restore into %s from %s: %s (%s)", dir, stream,
			 ringlog_strerror(err), error);
	return st;
}

/* ---- a writer thread that keeps appending ---- */

struct st_writer {
	struct ringlog *log;
	pthread_t thread;
	unsigned pause_us;
	unsigned big_len; /* every 5th batch has records of this many bytes (0: none) */
	atomic_int stop;
	atomic_int err;
	_Atomic uint64_t last_lsn; /* the last LSN appended */
	_Atomic uint64_t batches;
	uint64_t tag;
};

ST_UNUSED static void *st_writer_main(void *arg)
{
	struct st_writer *w = arg;
	while (!atomic_load(&w->stop)) {
		uint64_t tag = w->tag++;
		unsigned nrecs = 1 + (unsigned)(tag % 4);
		unsigned len = 24 + (unsigned)((tag * 131) % 900);
		if (w->big_len && tag % 5 == 0)
			len = w->big_len;
		uint64_t last = 0;
		int err = st_append(w->log, tag, nrecs, len, &last);
		if (err) {
			atomic_store(&w->err, err);
			break;
		}
		atomic_store(&w->last_lsn, last);
		atomic_fetch_add(&w->batches, 1);
		usleep(w->pause_us);
	}
	return NULL;
}

ST_UNUSED static void st_writer_start(struct st_writer *w, struct ringlog *log, uint64_t tag,
				      unsigned pause_us, unsigned big_len)
{
	memset(w, 0, sizeof(*w));
	w->log = log;
	w->tag = tag;
	w->pause_us = pause_us;
	w->big_len = big_len;
	w->last_lsn = ringlog_next_lsn(log) - 1;
	assert_int_equal(pthread_create(&w->thread, NULL, st_writer_main, w), 0);
}

/* Stop the writer and wait until all it appended is durable; returns the last LSN. */
ST_UNUSED static uint64_t st_writer_stop(struct st_writer *w)
{
	atomic_store(&w->stop, 1);
	assert_int_equal(pthread_join(w->thread, NULL), 0);
	int err = atomic_load(&w->err);
	if (err)
		fail_msg("writer: %s", ringlog_strerror(err));
	uint64_t last = atomic_load(&w->last_lsn);
	if (last) {
		err = ringlog_wait(w->log, last);
		if (err)
			fail_msg("writer wait: %s (%s)", ringlog_strerror(err), ringlog_last_error());
	}
	return last;
}

/* ---- children: this test binary again, run with "--child <what> ..." ---- */

/* Fork and exec this program with args (NULL-terminated, after "--child"); the child dies
 * with the calling thread (PR_SET_PDEATHSIG). */
ST_UNUSED static pid_t st_spawn_child(const char *const *args)
{
	char *argv[16];
	int n = 0;
	argv[n++] = (char *)"test-child";
	argv[n++] = (char *)"--child";
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(len > 0);
	exe[len] = '\0';
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(126);
		execv(exe, argv);
		_exit(127);
	}
	return pid;
}

/* Wait at most timeout_ms for a line from fd (a child saying it is ready); 1 if one came. */
ST_UNUSED static int st_read_ready(int fd, int timeout_ms, char *line, size_t len)
{
	size_t got = 0;
	uint64_t deadline = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (got + 1 < len) {
		int64_t left = (int64_t)(deadline - st_now_ns()) / 1000000;
		if ((int64_t)(deadline - st_now_ns()) <= 0)
			break;
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		ssize_t n = read(fd, line + got, 1);
		if (n <= 0)
			break;
		if (line[got] == '\n') {
			line[got] = '\0';
			return 1;
		}
		got++;
	}
	line[got] = '\0';
	return 0;
}

/* Wait at most timeout_ms for child pid to end; its wait status, or -1 (then it is killed
 * and reaped). */
ST_UNUSED static int st_wait_child(pid_t pid, int timeout_ms)
{
	uint64_t deadline = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int status = 0;
	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			return status;
		if (st_now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		st_sleep_ms(10);
	}
}

/* A TCP port on 127.0.0.1 where nothing listens (bound, then closed). */
ST_UNUSED static int st_dead_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t alen = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	return ntohs(a.sin_port);
}

#endif
