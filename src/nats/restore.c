/*
 * Restore: rebuild (or keep up to date) a log directory from its stream.
 *
 * The stream is replayed with an ordered push consumer (nats.c re-creates it by itself
 * after a gap in delivery, a lost server or missed heartbeats, from the last sequence
 * delivered), from the message that holds the directory's next LSN.  Every message must
 * be this log's and follow on from the one before (stream.h); every frame is checked
 * again by ringlog_append_frame() (its CRC, its log id, its LSN) and written as it was.
 * Anything else stops the restore with -EBADMSG naming the stream sequence; what was
 * restored before it stays, durable, and a later restore continues from there.
 */
#include "stream.h"

#include "format.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct restore {
	struct rln_config cfg;
	struct rln_conn conn;
	const char *dir;
	struct ringlog *log; /* opened once the first LSN is known */
	uint64_t log_id;
	uint64_t next_lsn; /* the LSN the log needs next (0: no log yet) */
	uint64_t until_lsn;
	int done; /* until_lsn reached */
	/* A frame in chunks being put together. */
	uint8_t *chunk_buf;
	size_t chunk_len, chunk_cap;
	uint32_t chunk_k, chunk_n;
	uint64_t chunk_lsn;
	struct ringlog_nats_restore_stats st;
};

/* Whether `dir` holds segment files (a log). */
static int holds_log(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		found = n == 25 && strcmp(de->d_name + 20, ".rlog") == 0;
	}
	closedir(d);
	return found;
}

static int bad_message(struct restore *r, uint64_t seq, const char *fmt, const char *detail)
{
	char what[512];
	snprintf(what, sizeof(what), fmt, detail);
	return rln_fail(-EBADMSG,
			"ringlog-nats: stream %s sequence %" PRIu64 ": %.300s; the log in %s holds "
			"everything before it (up to LSN %" PRIu64 ")",
			r->cfg.stream, seq, what, r->dir, r->next_lsn ? r->next_lsn - 1 : 0);
}

/* Make the log at `first_lsn` if there is none yet, and open it. */
static int ensure_log(struct restore *r, uint64_t first_lsn)
{
	if (r->log)
		return 0;
	int err = ringlog_init_dir(r->dir, r->log_id, first_lsn);
	if (err)
		return err;
	err = ringlog_open(r->dir, NULL, &r->log);
	if (err)
		return err;
	r->next_lsn = ringlog_next_lsn(r->log);
	return 0;
}

/* The source log took a batch larger than this log's max_batch_bytes (its writer had
 * a larger option): reopen with room for `len` bytes, the ring twice that. */
static int reopen_for(struct restore *r, size_t len)
{
	struct ringlog_options o;
	ringlog_options_init(&o);
	uint32_t batch = o.max_batch_bytes;
	while (batch < len)
		batch *= 2;
	o.max_batch_bytes = batch;
	if (o.ring_bytes < 2ull * batch)
		o.ring_bytes = 2 * batch;
	int err = ringlog_close(r->log); /* durable: everything appended so far */
	r->log = NULL;
	if (!err)
		err = ringlog_open(r->dir, &o, &r->log);
	return err;
}

/* Append one whole frame from message `seq`. */
static int apply_frame(struct restore *r, uint64_t seq, const uint8_t *f, size_t len)
{
	if (len < RL_FRAME_HEADER_BYTES)
		return bad_message(r, seq, "%s", "a frame shorter than its header");
	uint32_t nrecs = rl_get32(f + 12);
	uint64_t first = rl_get64(f + 16);
	uint64_t last = first + nrecs - 1;
	if (r->next_lsn && first < r->next_lsn) {
		/* Already in the log (a continued restore starts inside a message). */
		if (first + nrecs > r->next_lsn)
			return bad_message(r, seq, "%s", "a frame that overlaps the log's end");
		return 0;
	}
	if (r->until_lsn && last > r->until_lsn) {
		r->done = 1;
		return 0;
	}
	int err = ensure_log(r, first);
	if (err)
		return err;
	if (first != r->next_lsn) {
		char d[96];
		snprintf(d, sizeof(d), "LSN %" PRIu64 " where %" PRIu64 " was due", first,
			 r->next_lsn);
		return bad_message(r, seq, "a gap in the LSNs: %s", d);
	}
	uint64_t at;
	err = ringlog_append_frame(r->log, f, len, &at);
	if (err == -EMSGSIZE && len <= RINGLOG_MAX_BATCH_BYTES_LIMIT) {
		err = reopen_for(r, len);
		if (!err)
			err = ringlog_append_frame(r->log, f, len, &at);
	}
	if (err == -EBADMSG || err == -ESTALE) {
		char d[200];
		snprintf(d, sizeof(d), "%s", ringlog_last_error());
		return bad_message(r, seq, "a frame the log refuses: %s", d);
	}
	if (err)
		return err;
	if (!r->st.first_lsn)
		r->st.first_lsn = first;
	r->st.last_lsn = last;
	r->st.frames++;
	r->st.bytes += len;
	if (rl_get32(f) == RL_FRAME_MAGIC)
		r->st.records += nrecs;
	r->next_lsn = last + 1;
	if (r->until_lsn && r->next_lsn > r->until_lsn)
		r->done = 1;
	return 0;
}

static int apply_message(struct restore *r, natsMsg *m, uint64_t seq)
{
	struct rln_meta meta;
	char why[160];
	if (rln_meta_parse(m, &meta, why, sizeof(why)))
		return bad_message(r, seq, "%s", why);
	if (meta.log_id != r->log_id) {
		char d[64];
		snprintf(d, sizeof(d), "%016" PRIx64, meta.log_id);
		return bad_message(r, seq, "a message of another log (%s)", d);
	}
	const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
	size_t len = (size_t)natsMsg_GetDataLength(m);
	r->st.messages++;
	if (meta.chunks) {
		int starts = meta.chunk == 1;
		if (starts ? r->chunk_n != 0
			   : (r->chunk_n != meta.chunks || meta.chunk != r->chunk_k + 1 ||
			      meta.first_lsn != r->chunk_lsn))
			return bad_message(r, seq, "%s", "a chunk out of its sequence");
		if (starts) {
			r->chunk_len = 0;
			r->chunk_n = meta.chunks;
			r->chunk_lsn = meta.first_lsn;
		}
		r->chunk_k = meta.chunk;
		if (r->chunk_len + len > r->chunk_cap) {
			size_t cap = (r->chunk_len + len) * 2;
			uint8_t *b = realloc(r->chunk_buf, cap);
			if (!b)
				return rln_fail(-ENOMEM, "ringlog-nats: restore: a chunked frame of "
							 "%zu bytes",
						r->chunk_len + len);
			r->chunk_buf = b;
			r->chunk_cap = cap;
		}
		memcpy(r->chunk_buf + r->chunk_len, data, len);
		r->chunk_len += len;
		if (meta.chunk < meta.chunks)
			return 0;
		r->chunk_n = 0;
		if (r->chunk_len < RL_FRAME_HEADER_BYTES ||
		    rl_get32(r->chunk_buf + 8) != r->chunk_len ||
		    rl_get64(r->chunk_buf + 16) != meta.first_lsn)
			return bad_message(r, seq, "%s", "chunks that do not make up their frame");
		return apply_frame(r, seq, r->chunk_buf, r->chunk_len);
	}
	if (r->chunk_n)
		return bad_message(r, seq, "%s", "a message inside a chunked frame");
	if (r->next_lsn && meta.first_lsn > r->next_lsn) {
		char d[96];
		snprintf(d, sizeof(d), "LSN %" PRIu64 " where %" PRIu64 " was due", meta.first_lsn,
			 r->next_lsn);
		return bad_message(r, seq, "a gap in the LSNs: %s", d);
	}
	size_t off = 0;
	uint64_t expect = meta.first_lsn;
	while (off < len && !r->done) {
		if (len - off < RL_FRAME_HEADER_BYTES)
			return bad_message(r, seq, "%s", "a partial frame at the end");
		uint32_t fl = rl_get32(data + off + 8);
		if (fl < RL_FRAME_HEADER_BYTES || fl > len - off || fl % 8)
			return bad_message(r, seq, "%s", "a frame whose length does not fit");
		if (rl_get64(data + off + 16) != expect)
			return bad_message(r, seq, "%s", "frames that do not follow its headers");
		int err = apply_frame(r, seq, data + off, fl);
		if (err)
			return err;
		expect += rl_get32(data + off + 12);
		off += fl;
	}
	if (!r->done && expect != meta.last_lsn + 1)
		return bad_message(r, seq, "%s", "frames that end elsewhere than its headers say");
	return 0;
}

/* The stream sequence of the first message whose last LSN is at least `lsn`, by
 * bisection over [lo, hi] (LSNs grow with the sequence).  0 if none. */
static int find_seq(struct restore *r, uint64_t lsn, uint64_t lo, uint64_t hi, uint64_t *out)
{
	*out = 0;
	while (lo <= hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		natsMsg *m;
		int err = rln_get_msg(&r->conn, &r->cfg, mid, &m);
		if (err)
			return err == -ENOENT ? bad_message(r, mid, "%s", "missing from the stream")
					      : err;
		struct rln_meta meta;
		char why[160];
		err = rln_meta_parse(m, &meta, why, sizeof(why));
		natsMsg_Destroy(m);
		if (err)
			return bad_message(r, mid, "%s", why);
		if (meta.last_lsn >= lsn) {
			*out = mid;
			/* A chunk: go back to the frame's first chunk. */
			if (meta.chunks && meta.chunk > 1) {
				*out = mid - (meta.chunk - 1);
				return 0;
			}
			if (mid == lo)
				return 0;
			hi = mid - 1;
		} else {
			lo = mid + 1;
		}
	}
	return 0;
}

/* An ordered push consumer from `seq`. */
static int subscribe_from(struct restore *r, uint64_t seq, natsSubscription **sub)
{
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = r->cfg.stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = seq;
	so.Config.Heartbeat = 1000000000; /* 1 s: a lost server is noticed in ~2 s */
	jsErrCode jerr = 0;
	natsStatus s = js_SubscribeSync(sub, r->conn.js, r->cfg.subject, NULL, &so, &jerr);
	if (s == NATS_OK)
		return 0;
	*sub = NULL;
	return rln_fail(rln_errno(s, jerr),
			"ringlog-nats: restore: replaying stream %s from sequence %" PRIu64 ": %s (%d)",
			r->cfg.stream, seq, rln_status_text(s), (int)jerr);
}

static void unsubscribe(natsSubscription **sub)
{
	if (*sub) {
		natsSubscription_Unsubscribe(*sub);
		natsSubscription_Destroy(*sub);
	}
	*sub = NULL;
}

/* Quiet this long with messages due (or, following, with the stream ahead of us): the
 * consumer is stuck (nats.c 3.4's ordered consumer does not always come back after the
 * whole cluster restarted), so subscribe again from the next sequence. */
#define RESUBSCRIBE_NS (5ull * 1000000000u)
/* Give up without follow when nothing at all arrived for this long. */
#define GIVE_UP_NS (120ull * 1000000000u)

static int replay(struct restore *r, uint64_t start_seq, uint64_t end_seq, int follow,
		  const volatile int *stop)
{
	natsSubscription *sub = NULL;
	int err = subscribe_from(r, start_seq, &sub);
	uint64_t last_seq = start_seq - 1;
	uint64_t quiet_since = rln_now_ns(), progress_at = quiet_since;
	while (!err && !r->done) {
		if (!follow && last_seq >= end_seq)
			break;
		if (follow && stop && *stop)
			break;
		natsMsg *m = NULL;
		natsStatus s = sub ? natsSubscription_NextMsg(&m, sub, 200) : NATS_TIMEOUT;
		if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_SLOW_CONSUMER &&
		    s != NATS_MISSED_HEARTBEAT) {
			err = rln_fail(rln_errno(s, 0), "ringlog-nats: restore: reading stream %s: %s",
				       r->cfg.stream, rln_status_text(s));
			break;
		}
		if (s != NATS_OK) {
			/* (Slow consumer, missed heartbeat: the ordered consumer resets itself
			 * from the last sequence delivered; unless it is stuck.) */
			uint64_t now = rln_now_ns();
			if (!follow && now - progress_at > GIVE_UP_NS) {
				err = rln_fail(-ETIMEDOUT,
					       "ringlog-nats: restore: stream %s delivered nothing "
					       "for %llu s after sequence %" PRIu64 " of %" PRIu64,
					       r->cfg.stream, GIVE_UP_NS / 1000000000u, last_seq,
					       end_seq);
				break;
			}
			if (now - quiet_since < RESUBSCRIBE_NS)
				continue;
			quiet_since = now;
			uint64_t stream_last = end_seq, id;
			if (follow && rln_stream_lookup(&r->conn, &r->cfg, &id, NULL,
							&stream_last) != 0)
				continue; /* (the cluster is away: try later) */
			if (stream_last <= last_seq)
				continue;
			unsubscribe(&sub);
			if (subscribe_from(r, last_seq + 1, &sub) != 0)
				unsubscribe(&sub); /* (try again after the next quiet spell) */
			continue;
		}
		quiet_since = progress_at = rln_now_ns();
		jsMsgMetaData *md = NULL;
		uint64_t seq = 0;
		if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
			seq = md->Sequence.Stream;
			jsMsgMetaData_Destroy(md);
		}
		if (seq != last_seq + 1)
			err = bad_message(r, seq ? seq : last_seq + 1, "%s",
					  seq ? "delivered out of sequence"
					      : "delivered without its stream sequence");
		else
			err = apply_message(r, m, seq);
		natsMsg_Destroy(m);
		last_seq = seq;
	}
	unsubscribe(&sub);
	return err;
}

RINGLOG_NATS_API int ringlog_nats_restore(const char *dir, const struct ringlog_nats_options *o,
					  uint64_t until_lsn, int follow, const volatile int *stop,
					  struct ringlog_nats_restore_stats *out)
{
	struct restore r;
	memset(&r, 0, sizeof(r));
	if (out)
		memset(out, 0, sizeof(*out));
	if (!dir)
		return rln_fail(-EINVAL, "ringlog-nats: restore: dir must not be NULL");
	if (follow && !stop)
		return rln_fail(-EINVAL, "ringlog-nats: restore: follow needs a stop flag");
	r.dir = dir;
	r.until_lsn = until_lsn;
	int err = rln_config(o, &r.cfg);
	if (!err)
		err = rln_connect(&r.cfg, NULL, NULL, 0, &r.conn);
	uint64_t first_seq = 0, last_seq = 0;
	if (!err)
		err = rln_stream_lookup(&r.conn, &r.cfg, &r.log_id, &first_seq, &last_seq);
	r.st.log_id = r.log_id;
	if (!err && holds_log(dir)) {
		err = ringlog_open(dir, NULL, &r.log);
		if (!err && ringlog_log_id(r.log) != r.log_id)
			err = rln_fail(-EEXIST,
				       "ringlog-nats: restore: %s holds log %016" PRIx64
				       ", stream %s log %016" PRIx64 ": restore into another "
				       "directory",
				       dir, ringlog_log_id(r.log), r.cfg.stream, r.log_id);
		if (!err)
			r.next_lsn = ringlog_next_lsn(r.log);
	}
	uint64_t start_seq = first_seq ? first_seq : 1;
	if (!err && r.next_lsn && last_seq) {
		/* Continue: the stream must hold the LSN after the log's end, and no less. */
		natsMsg *m;
		struct rln_meta first_meta, last_meta;
		char why[160];
		err = rln_get_msg(&r.conn, &r.cfg, first_seq, &m);
		if (!err) {
			err = rln_meta_parse(m, &first_meta, why, sizeof(why)) ? bad_message(
										     &r, first_seq, "%s", why)
									       : 0;
			natsMsg_Destroy(m);
		}
		if (!err && (err = rln_get_msg(&r.conn, &r.cfg, last_seq, &m)) == 0) {
			err = rln_meta_parse(m, &last_meta, why, sizeof(why)) ? bad_message(
										    &r, last_seq, "%s", why)
									      : 0;
			natsMsg_Destroy(m);
		}
		if (!err && r.next_lsn - 1 > last_meta.last_lsn)
			err = rln_fail(-ESTALE,
				       "ringlog-nats: restore: %s holds LSNs up to %" PRIu64
				       ", past the end of stream %s (LSN %" PRIu64 ")",
				       dir, r.next_lsn - 1, r.cfg.stream, last_meta.last_lsn);
		else if (!err && r.next_lsn < first_meta.first_lsn)
			err = rln_fail(-ESTALE,
				       "ringlog-nats: restore: %s needs LSN %" PRIu64
				       " next, stream %s starts at %" PRIu64,
				       dir, r.next_lsn, r.cfg.stream, first_meta.first_lsn);
		else if (!err && r.next_lsn - 1 == last_meta.last_lsn)
			start_seq = last_seq + 1; /* up to date */
		else if (!err)
			err = find_seq(&r, r.next_lsn, first_seq, last_seq, &start_seq);
	} else if (!err && r.next_lsn && !last_seq) {
		start_seq = 1;
	}
	if (!err && (follow || (last_seq && start_seq <= last_seq)))
		err = replay(&r, start_seq, last_seq, follow, stop);
	/* An empty stream, or nothing up to until_lsn: an empty log of this id. */
	if (!err && !r.log && !holds_log(dir))
		err = ensure_log(&r, 1);
	if (r.log) {
		int cerr = ringlog_close(r.log); /* writes and syncs everything appended */
		if (!err && cerr)
			err = rln_fail(cerr, "ringlog-nats: restore: closing %s: %s", dir,
				       ringlog_last_error());
	}
	rln_disconnect(&r.conn);
	free(r.chunk_buf);
	if (out)
		*out = r.st;
	return err;
}
