/*
 * The shipper: one thread that reads a log's durable frames in LSN order and
 * publishes them into the stream, pipelined, exactly once.
 *
 * How "exactly once, in order" is kept (the stream is the only record of what was
 * shipped; nothing else is trusted):
 *  - Every message carries Nats-Expected-Last-Sequence = the stream sequence of the
 *    message before it.  With one writer per stream, the sequence each message will get
 *    is known when it is published (the stream's last sequence at the resync, plus its
 *    place since), so a window of them can be in flight.  A message lost on the way
 *    (a dead socket) makes every later one fail with "wrong last sequence" instead of
 *    being stored after a gap; the stream never has a gap or a reordering.
 *  - Every message also carries Nats-Msg-Id, naming its bytes: a resend of a message
 *    the stream already stored (its acknowledgement was lost) is answered "duplicate"
 *    and stored once; and Nats-Expected-Last-Msg-Id, the one sent before it, so that
 *    a message left over from an earlier attempt (stream.h) cannot splice two
 *    numberings together.
 *  - Any failure (an error or a timeout on any message, an acknowledgement with an
 *    unexpected sequence) stops publishing and resynchronises: wait for what is in
 *    flight, drop the rest, read the stream's last message, and go on from the LSN
 *    after it.  Before that, the log's frame at that LSN must be byte for byte the one
 *    in the stream, or the log is not the one the stream copies (restored from an older
 *    copy and written again): -ESTALE, and nothing more is published.
 *  - Only durable frames are read (a live reader, or RINGLOG_READ_DURABLE), so the
 *    stream never holds an LSN a power loss could take from the log.
 *  - The replication slot follows the last LSN the stream acknowledged, contiguously,
 *    so retention never removes a record that is not in the stream yet.
 *
 * Threads: the shipper thread does everything but run the acknowledgement callback,
 * which nats.c calls on its own thread; they share the in-flight queue and the stats
 * under `lock`.
 */
#include "stream.h"

#include "format.h"
#include "histogram.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- The shipper ---- */

/* Acknowledged LSNs waiting out options.slot_hold_ms before the slot releases them:
 * (time, LSN) in acknowledgement order, entries less than HOLD_TICK_NS apart merged. */
#define HOLD_ENTRIES 8192
#define HOLD_TICK_NS 50000000ull

struct hold {
	uint64_t at_ns[HOLD_ENTRIES];
	uint64_t lsn[HOLD_ENTRIES];
	uint32_t head, len;
};

enum inflight_state { PENDING = 0, ACKED = 1, FAILED = 2 };

struct inflight {
	uint64_t seq;		    /* the stream sequence it must get */
	uint64_t last_lsn;	    /* shipped once it is acknowledged (0: a chunk but the last) */
	uint64_t records;	    /* LSNs it completes */
	uint64_t bytes;		    /* payload bytes */
	uint64_t publish_ns;
	const void *msg;	    /* identity of the natsMsg (for the callback) */
	enum inflight_state state;
};

struct ringlog_nats_shipper {
	struct rln_config cfg;
	struct ringlog *log; /* in this process, or NULL */
	char *dir;
	uint64_t log_id;
	struct ringlog_slot *slot;
	struct rln_conn conn;
	pthread_t thread;
	int thread_started;

	pthread_mutex_t lock; /* everything from here to the end of the block */
	pthread_cond_t cond;
	struct inflight *q; /* ring of max_pending entries */
	uint32_t q_head, q_len;
	int pub_failed; /* an acknowledgement said something went wrong: resync */
	char pub_why[256];
	struct ringlog_nats_stats st;
	struct rl_hist lat; /* publish-to-acknowledgement times, ns */
	int stop;
	int finished; /* the thread is done (stopped or failed) */
	int caught_up;
	char error[512];

	/* The shipper thread only. */
	struct ringlog_reader *reader;
	uint64_t next_seq;	  /* the sequence the next message gets */
	int published;		  /* anything was published asynchronously */
	int once;		  /* options.once */
	uint64_t once_target;	  /* options.once: ship up to here, then stop */
	natsStatistics *nstats;	  /* for the reconnect count */
	struct hold hold;	  /* acknowledged, not yet released to the slot */
	uint64_t behind_since_ns; /* lag_ns */
	uint64_t read_lsn;	  /* the last LSN read from the log (or found in the stream) */
	char last_id[RLN_MSG_ID_MAX]; /* Msg-Id of the last message sent ("": none since
				       * the resync) */
	uint32_t msg_max;	  /* payload bytes per message */
	uint8_t *buf;		  /* frames packed for the next message */
	size_t buf_len;
	struct rln_meta buf_meta;
	uint64_t buf_records;
	/* A frame whose first chunks are in the stream already (after a resync). */
	uint64_t resume_lsn;
	uint32_t resume_chunk, resume_chunks;
	uint64_t resume_off;
};

#define FATAL 1000000 /* added to an error that must not be retried */

static void set_state(struct ringlog_nats_shipper *s, enum ringlog_nats_state st)
{
	pthread_mutex_lock(&s->lock);
	s->st.state = st;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static int stopping(struct ringlog_nats_shipper *s)
{
	pthread_mutex_lock(&s->lock);
	int stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

/* The deadline `ns` from now for s->cond, on CLOCK_MONOTONIC (the clock s->cond waits
 * on: a change of the wall clock neither stretches nor cuts a wait). */
static struct timespec deadline_in(uint64_t ns)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += (time_t)(ns / 1000000000);
	t.tv_nsec += (long)(ns % 1000000000);
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

/* Sleep up to ms, waking early on stop.  Returns whether stop was asked. */
static int pause_ms(struct ringlog_nats_shipper *s, uint32_t ms)
{
	struct timespec until = deadline_in((uint64_t)ms * 1000000);
	pthread_mutex_lock(&s->lock);
	while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
		;
	int stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

/* Called by nats.c on its thread for every message published asynchronously. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	struct ringlog_nats_shipper *s = closure;
	uint64_t now = rln_now_ns();
	pthread_mutex_lock(&s->lock);
	struct inflight *e = NULL;
	uint32_t cap = s->cfg.o.max_pending;
	for (uint32_t i = 0; i < s->q_len; i++) {
		struct inflight *c = &s->q[(s->q_head + i) % cap];
		if (c->msg == msg && c->state == PENDING) {
			e = c;
			break;
		}
	}
	if (e) {
		if (pa && pa->Sequence == e->seq) {
			e->state = ACKED;
			if (pa->Duplicate)
				s->st.duplicates++;
			uint64_t d = now - e->publish_ns;
			rl_hist_record(&s->lat, d);
			if (d > s->st.ack_max_ns)
				s->st.ack_max_ns = d;
		} else {
			e->state = FAILED;
			if (!s->pub_failed) {
				if (pa)
					snprintf(s->pub_why, sizeof(s->pub_why),
						 "stored as sequence %" PRIu64 ", expected %" PRIu64,
						 pa->Sequence, e->seq);
				else
					snprintf(s->pub_why, sizeof(s->pub_why),
						 "sequence %" PRIu64 ": %s%s%s (%d)", e->seq,
						 rln_status_text(pae->Err), pae->ErrText ? ": " : "",
						 pae->ErrText ? pae->ErrText : "", (int)pae->ErrCode);
			}
			if (pae && pae->Err == NATS_TIMEOUT)
				s->st.timeouts++;
			s->pub_failed = 1;
		}
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	natsMsg_Destroy(msg);
}

/* Release to the slot what was acknowledged at least slot_hold_ms ago, and note that
 * `acked` (0: nothing new) was acknowledged now. */
static void hold_and_release(struct ringlog_nats_shipper *s, uint64_t acked)
{
	struct hold *h = &s->hold;
	uint64_t now = rln_now_ns();
	if (acked) {
		uint32_t tail = (h->head + h->len - 1) % HOLD_ENTRIES;
		/* Merge into the newest entry when close in time (it is released a tick
		 * later than its time, below, so no LSN merged into it leaves early), or when
		 * full (then the entry takes this time: it only releases later). */
		if (h->len && (now - h->at_ns[tail] < HOLD_TICK_NS || h->len == HOLD_ENTRIES)) {
			if (acked > h->lsn[tail])
				h->lsn[tail] = acked;
			if (h->len == HOLD_ENTRIES)
				h->at_ns[tail] = now;
		} else {
			tail = (h->head + h->len) % HOLD_ENTRIES;
			h->at_ns[tail] = now;
			h->lsn[tail] = acked;
			h->len++;
		}
	}
	uint64_t hold_ns = (uint64_t)s->cfg.o.slot_hold_ms * 1000000u, release = 0;
	if (hold_ns)
		hold_ns += HOLD_TICK_NS; /* (see the merge above) */
	while (h->len && now - h->at_ns[h->head] >= hold_ns) {
		release = h->lsn[h->head];
		h->head = (h->head + 1) % HOLD_ENTRIES;
		h->len--;
	}
	if (release > ringlog_slot_lsn(s->slot))
		ringlog_slot_advance(s->slot, release); /* a failure only holds more back */
}

/* Under s->lock: an acknowledgement overdue by far (nats.c's own timeout did not report
 * it) counts as a timeout, so that the shipper resyncs instead of waiting forever. */
static void check_overdue(struct ringlog_nats_shipper *s, uint64_t now)
{
	if (!s->q_len || s->pub_failed || s->q[s->q_head].state != PENDING)
		return;
	uint64_t limit = 2ull * s->cfg.o.ack_timeout_ms * 1000000u + 1000000000u;
	if (now - s->q[s->q_head].publish_ns < limit)
		return;
	s->st.timeouts++;
	s->pub_failed = 1;
	snprintf(s->pub_why, sizeof(s->pub_why),
		 "sequence %" PRIu64 ": no acknowledgement within %" PRIu64 " ms",
		 s->q[s->q_head].seq, limit / 1000000u);
	pthread_cond_broadcast(&s->cond);
}

/* Pop the acknowledged prefix of the queue into the stats; advance the slot. */
static void collect_acks(struct ringlog_nats_shipper *s)
{
	uint32_t cap = s->cfg.o.max_pending;
	uint64_t shipped = 0;
	pthread_mutex_lock(&s->lock);
	while (s->q_len && s->q[s->q_head].state == ACKED) {
		struct inflight *e = &s->q[s->q_head];
		s->st.messages++;
		s->st.bytes += e->bytes;
		s->st.records += e->records;
		s->st.stream_seq = e->seq;
		if (e->last_lsn) {
			s->st.shipped_lsn = e->last_lsn;
			shipped = e->last_lsn;
		}
		s->q_head = (s->q_head + 1) % cap;
		s->q_len--;
	}
	check_overdue(s, rln_now_ns());
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	hold_and_release(s, shipped);
}

/* Publish one message.  Returns 0, or -EAGAIN when publishing must stop for a
 * resync (an acknowledgement failed, or this publish did), or -ECANCELED on stop. */
static int publish(struct ringlog_nats_shipper *s, const void *data, size_t len,
		   const struct rln_meta *meta, uint64_t records)
{
	uint32_t cap = s->cfg.o.max_pending;
	int err;
	for (;;) {
		collect_acks(s); /* (frees room: acknowledged entries leave only here) */
		pthread_mutex_lock(&s->lock);
		err = s->stop ? -ECANCELED : s->pub_failed ? -EAGAIN : 0;
		if (err || s->q_len < cap)
			break;
		struct timespec until = deadline_in(100000000); /* look at the oldest every 100 ms */
		pthread_cond_timedwait(&s->cond, &s->lock, &until);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	if (err)
		return err;

	natsMsg *m = NULL;
	natsStatus ns = natsMsg_Create(&m, s->cfg.subject, NULL, data, (int)len);
	if (ns != NATS_OK || rln_meta_set(m, meta, len, s->next_seq - 1, s->last_id) != 0) {
		natsMsg_Destroy(m);
		return rln_fail(-ENOMEM, "ringlog-nats: making a message: %s", rln_status_text(ns));
	}
	pthread_mutex_lock(&s->lock);
	struct inflight *e = &s->q[(s->q_head + s->q_len) % cap];
	*e = (struct inflight){.seq = s->next_seq,
			       .last_lsn = meta->chunk == meta->chunks ? meta->last_lsn : 0,
			       .records = records,
			       .bytes = len,
			       .publish_ns = rln_now_ns(),
			       .msg = m,
			       .state = PENDING};
	s->q_len++;
	pthread_mutex_unlock(&s->lock);

	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = s->cfg.o.ack_timeout_ms; /* else a lost acknowledgement waits forever */
	natsMsg *pub = m;
	for (;;) {
		ns = js_PublishMsgAsync(s->conn.js, &pub, &po);
		if (ns != NATS_TIMEOUT || stopping(s))
			break; /* NATS_TIMEOUT: stalled on the window; the callback frees room */
	}
	s->published = 1;
	if (ns == NATS_OK) {
		s->next_seq++;
		rln_msg_id(meta, len, s->last_id, sizeof(s->last_id));
		return 0;
	}
	/* Not sent: the message is still ours, and no callback will come for it. */
	natsMsg_Destroy(pub);
	pthread_mutex_lock(&s->lock);
	s->q_len--;
	if (!s->pub_failed) {
		s->pub_failed = 1;
		snprintf(s->pub_why, sizeof(s->pub_why), "publishing sequence %" PRIu64 ": %s",
			 s->next_seq, rln_status_text(ns));
	}
	pthread_mutex_unlock(&s->lock);
	return -EAGAIN;
}

static int flush(struct ringlog_nats_shipper *s)
{
	if (!s->buf_len)
		return 0;
	int err = publish(s, s->buf, s->buf_len, &s->buf_meta, s->buf_records);
	s->buf_len = 0;
	s->buf_records = 0;
	return err;
}

/* Ship a frame too large for one message as chunks k..n (from byte `off`). */
static int ship_chunks(struct ringlog_nats_shipper *s, const struct ringlog_frame *f,
		       uint32_t k, uint32_t n, uint64_t off)
{
	uint64_t left = f->len - off;
	for (; k <= n; k++) {
		uint64_t chunks_left = n - k + 1;
		uint64_t part = (left + chunks_left - 1) / chunks_left;
		if (part > s->msg_max)
			return rln_fail(-EMSGSIZE - FATAL,
					"ringlog-nats: LSN %" PRIu64 ": the stream holds chunks "
					"1..%u of %u of its frame, and the rest no longer fits "
					"%u-byte messages (was max_message_bytes lowered?)",
					f->first_lsn, k - 1, n, s->msg_max);
		struct rln_meta meta = {.log_id = s->log_id,
					.first_lsn = f->first_lsn,
					.last_lsn = f->first_lsn + f->nrecs - 1,
					.chunk = k,
					.chunks = n};
		int err = publish(s, (const uint8_t *)f->bytes + off, part, &meta,
				  k == n ? f->nrecs : 0);
		if (err)
			return err;
		off += part;
		left -= part;
	}
	return 0;
}

static int ship_frame(struct ringlog_nats_shipper *s, const struct ringlog_frame *f)
{
	if (s->resume_lsn && f->first_lsn == s->resume_lsn) {
		uint32_t k = s->resume_chunk + 1, n = s->resume_chunks;
		uint64_t off = s->resume_off;
		s->resume_lsn = 0;
		return ship_chunks(s, f, k, n, off);
	}
	if (f->len > s->msg_max) {
		int err = flush(s);
		if (err)
			return err;
		uint32_t n = (uint32_t)((f->len + s->msg_max - 1) / s->msg_max);
		return ship_chunks(s, f, 1, n, 0);
	}
	if (s->buf_len + f->len > s->msg_max) {
		int err = flush(s);
		if (err)
			return err;
	}
	if (!s->buf_len)
		s->buf_meta = (struct rln_meta){.log_id = s->log_id, .first_lsn = f->first_lsn};
	memcpy(s->buf + s->buf_len, f->bytes, f->len);
	s->buf_len += f->len;
	s->buf_meta.last_lsn = f->first_lsn + f->nrecs - 1;
	s->buf_records += f->nrecs;
	return 0;
}

/* ---- Resynchronising with the stream ---- */

/* Wait for what is in flight, forget the rest. */
static void quiesce(struct ringlog_nats_shipper *s)
{
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = (int64_t)s->cfg.o.ack_timeout_ms + 1000;
	js_PublishAsyncComplete(s->conn.js, &po);
	natsMsgList left = {0};
	/* (nats.c 3.4.1 crashes here before the first asynchronous publish.) */
	if (s->published && js_PublishAsyncGetPendingList(&left, s->conn.js) == NATS_OK)
		natsMsgList_Destroy(&left);
	/* No callback comes for what was taken back; one already running holds nats.c's
	 * pending count until it returns, and this waits for that. */
	js_PublishAsyncComplete(s->conn.js, &po);
}

static void drain(struct ringlog_nats_shipper *s)
{
	quiesce(s);
	collect_acks(s);
	pthread_mutex_lock(&s->lock);
	s->q_len = 0;
	s->pub_failed = 0;
	pthread_mutex_unlock(&s->lock);
	s->buf_len = 0;
	s->buf_records = 0;
	s->last_id[0] = 0; /* (see stream.h: the first message after a resync) */
}

static int open_reader(struct ringlog_nats_shipper *s, uint64_t from)
{
	ringlog_reader_close(s->reader);
	s->reader = NULL;
	return s->log ? ringlog_reader_open_live(s->log, from, &s->reader)
		      : ringlog_reader_open_ex(s->dir, from, RINGLOG_READ_DURABLE, &s->reader);
}

/* The last frame of a message's payload (whole frames back to back). */
static int last_frame_in(const uint8_t *p, size_t len, const uint8_t **frame, size_t *flen)
{
	size_t off = 0;
	while (off + RL_FRAME_HEADER_BYTES <= len) {
		uint32_t fl = rl_entry_len(p + off);
		if (fl < RL_FRAME_HEADER_BYTES || fl > len - off)
			return 0;
		*frame = p + off;
		*flen = fl;
		off += fl;
	}
	return off == len && len > 0;
}

static int mismatch(struct ringlog_nats_shipper *s, uint64_t lsn, uint64_t seq, const char *what)
{
	return rln_fail(-ESTALE - FATAL,
			"ringlog-nats: stream %s sequence %" PRIu64 " holds LSN %" PRIu64
			" %s than this log has it: the log is not the one the stream copies "
			"(restored from an older copy and written again?); nothing more is "
			"published",
			s->cfg.stream, seq, lsn, what);
}

/*
 * Find where the stream ends and position the reader after it.  Returns 0, a
 * retryable -errno (the stream cannot be read now), or -errno - FATAL.
 */
static int resync(struct ringlog_nats_shipper *s)
{
	set_state(s, RINGLOG_NATS_CONNECTING);
	drain(s);
	s->resume_lsn = 0;
	uint64_t id = s->log_id, first_seq = 0, last_seq = 0;
	int err = rln_stream_lookup(&s->conn, &s->cfg, &id, &first_seq, &last_seq);
	if (err == -ENOENT) { /* (gone: made again, empty) */
		err = rln_stream_create(&s->conn, &s->cfg, s->log_id);
		id = s->log_id;
		first_seq = last_seq = 0;
	}
	if (err == -ENOENT || (err == 0 && last_seq == 0 && first_seq == 0))
		last_seq = 0;
	if (err)
		return err == -EEXIST ? err - FATAL : err;
	if (id != s->log_id && last_seq)
		return rln_fail(-EEXIST - FATAL,
				"ringlog-nats: stream %s holds log %016" PRIx64 ", not this log "
				"(%016" PRIx64 ")",
				s->cfg.stream, id, s->log_id);
	uint64_t shipped = 0;
	if (last_seq == 0) {
		err = open_reader(s, 0);
		if (err)
			return err - FATAL;
	} else {
		natsMsg *m;
		err = rln_get_msg(&s->conn, &s->cfg, last_seq, &m);
		if (err)
			return err == -ENOENT ? -EAGAIN : err;
		struct rln_meta meta;
		char why[160];
		err = rln_meta_parse(m, &meta, why, sizeof(why));
		if (err || meta.log_id != s->log_id) {
			natsMsg_Destroy(m);
			return rln_fail(-EBADMSG - FATAL,
					"ringlog-nats: stream %s sequence %" PRIu64
					" is not a message of this log: %s",
					s->cfg.stream, last_seq, err ? why : "another log id");
		}
		int partial = meta.chunks && meta.chunk < meta.chunks;
		uint64_t key = partial ? meta.first_lsn : meta.last_lsn;
		uint64_t durable = 0;
		err = open_reader(s, key);
		if (!err)
			durable = ringlog_reader_durable_lsn(s->reader);
		if (!err && meta.last_lsn > durable) {
			natsMsg_Destroy(m);
			return rln_fail(-ESTALE - FATAL,
					"ringlog-nats: stream %s holds LSNs up to %" PRIu64
					", this log only up to %" PRIu64
					" durable: the log lost records the stream has (restored "
					"from an older copy?); nothing is published",
					s->cfg.stream, meta.last_lsn, durable);
		}
		struct ringlog_frame f;
		int got = err ? err : ringlog_reader_next_frame(s->reader, &f);
		if (got == -ENOENT && !partial) {
			/* Retention took that frame: the next one must start right after. */
			err = open_reader(s, key + 1);
			got = err ? err : ringlog_reader_next_frame(s->reader, &f);
			if (got == 1 && f.first_lsn != key + 1)
				got = -ENOENT;
			if (got == 1)
				err = open_reader(s, key + 1);
			natsMsg_Destroy(m);
			shipped = key; /* (the stream has everything up to its last message) */
			if (got == 0 || got == 1)
				goto positioned;
			return rln_fail(got - FATAL,
					"ringlog-nats: this log no longer holds LSN %" PRIu64
					", the first the stream lacks (retention removed it before "
					"it was shipped; was the slot dropped?)",
					key + 1);
		}
		if (got != 1) {
			natsMsg_Destroy(m);
			return rln_fail((got < 0 ? got : -ENOENT) - FATAL,
					"ringlog-nats: reading LSN %" PRIu64
					" of the log to match the stream's end: %s",
					key, got < 0 ? ringlog_last_error() : "not there");
		}
		const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
		size_t dlen = (size_t)natsMsg_GetDataLength(m);
		if (f.first_lsn != meta.first_lsn && (partial || meta.chunks)) {
			natsMsg_Destroy(m);
			return mismatch(s, key, last_seq, "in another frame");
		}
		if (!partial && f.first_lsn + f.nrecs - 1 != meta.last_lsn) {
			natsMsg_Destroy(m);
			return mismatch(s, key, last_seq, "in a frame that ends elsewhere");
		}
		if (meta.chunks) {
			/* Chunks 1..k: their bytes are the frame's first bytes. */
			uint64_t off = 0;
			for (uint32_t k = 1; k <= meta.chunk && !err; k++) {
				natsMsg *c = m;
				if (k < meta.chunk)
					err = rln_get_msg(&s->conn, &s->cfg,
							  last_seq - (meta.chunk - k), &c);
				if (err)
					break;
				size_t cl = (size_t)natsMsg_GetDataLength(c);
				if (off + cl > f.len ||
				    memcmp((const uint8_t *)f.bytes + off, natsMsg_GetData(c), cl))
					err = mismatch(s, key, last_seq - (meta.chunk - k),
						       "with other bytes");
				off += cl;
				if (c != m)
					natsMsg_Destroy(c);
			}
			if (!err && partial) {
				s->resume_lsn = f.first_lsn;
				s->resume_chunk = meta.chunk;
				s->resume_chunks = meta.chunks;
				s->resume_off = off;
				err = open_reader(s, f.first_lsn); /* read it again */
				if (err)
					err -= FATAL;
			} else if (!err && off != f.len) {
				err = mismatch(s, key, last_seq, "with another length");
			}
		} else {
			const uint8_t *lf = NULL;
			size_t lfl = 0;
			if (!last_frame_in(data, dlen, &lf, &lfl))
				err = rln_fail(-EBADMSG - FATAL,
					       "ringlog-nats: stream %s sequence %" PRIu64
					       " does not hold whole frames",
					       s->cfg.stream, last_seq);
			else if (lfl != f.len || memcmp(lf, f.bytes, lfl) != 0)
				err = mismatch(s, key, last_seq, "with other bytes");
		}
		natsMsg_Destroy(m);
		if (err)
			return err;
		shipped = partial ? meta.first_lsn - 1 : meta.last_lsn;
	}
positioned:
	s->next_seq = last_seq + 1;
	s->read_lsn = shipped;
	/* Acknowledged LSNs the stream no longer has (it lost recent messages, e.g. a
	 * majority power loss) must not reach the slot when their hold ends. */
	for (uint32_t i = 0; i < s->hold.len; i++) {
		uint32_t k = (s->hold.head + i) % HOLD_ENTRIES;
		if (s->hold.lsn[k] > shipped)
			s->hold.lsn[k] = shipped;
	}
	pthread_mutex_lock(&s->lock);
	if (shipped > s->st.shipped_lsn)
		s->st.shipped_lsn = shipped;
	s->st.stream_seq = last_seq;
	pthread_mutex_unlock(&s->lock);
	hold_and_release(s, shipped); /* (when it was acknowledged is not known: now) */
	return 0;
}

/* ---- The thread ---- */

static void update_lag(struct ringlog_nats_shipper *s, uint64_t durable)
{
	uint64_t now = rln_now_ns();
	pthread_mutex_lock(&s->lock);
	if (durable != UINT64_MAX)
		s->st.durable_lsn = durable;
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < s->q_len; i++)
		bytes += s->q[(s->q_head + i) % s->cfg.o.max_pending].bytes;
	s->st.lag_bytes = bytes + s->buf_len;
	int behind = s->st.shipped_lsn < s->st.durable_lsn;
	s->st.lag_lsns = behind ? s->st.durable_lsn - s->st.shipped_lsn : 0;
	if (!behind)
		s->behind_since_ns = 0;
	else if (!s->behind_since_ns)
		s->behind_since_ns = now;
	s->st.lag_ns = behind ? now - s->behind_since_ns : 0;
	s->caught_up = !behind && s->q_len == 0;
	if (s->st.state == RINGLOG_NATS_SHIPPING || s->st.state == RINGLOG_NATS_CAUGHT_UP)
		s->st.state = s->caught_up ? RINGLOG_NATS_CAUGHT_UP : RINGLOG_NATS_SHIPPING;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Read and publish until a failure (-EAGAIN: resync), stop (-ECANCELED), the end of
 * options.once (1), or a fatal error. */
static int pump(struct ringlog_nats_shipper *s)
{
	set_state(s, RINGLOG_NATS_SHIPPING);
	for (;;) {
		collect_acks(s);
		pthread_mutex_lock(&s->lock);
		int stop = s->stop, failed = s->pub_failed;
		pthread_mutex_unlock(&s->lock);
		if (failed)
			return -EAGAIN;
		if (stop) {
			int err = flush(s);
			return err && err != -ECANCELED ? err : -ECANCELED;
		}
		uint64_t durable = ringlog_reader_durable_lsn(s->reader);
		struct ringlog_frame f;
		int got = ringlog_reader_next_frame(s->reader, &f);
		if (got < 0)
			return rln_fail(got - FATAL, "ringlog-nats: reading the log: %s",
					ringlog_last_error());
		int past_once = got == 1 && s->once && f.first_lsn > s->once_target;
		int at_end = got == 0 || past_once;
		if (got == 1 && !past_once) {
			s->read_lsn = f.first_lsn + f.nrecs - 1;
			int err = ship_frame(s, &f);
			if (err)
				return err;
			continue;
		}
		/* Nothing more durable for now.  Send what is packed if nothing is in flight;
		 * else keep packing until the oldest acknowledgement is back (as Nagle's
		 * algorithm does): a trickle of small groups then makes one message per round
		 * trip instead of one per group, which costs the cluster far less. */
		collect_acks(s);
		pthread_mutex_lock(&s->lock);
		int in_flight = s->q_len;
		pthread_mutex_unlock(&s->lock);
		if (!in_flight) {
			int err = flush(s);
			if (err)
				return err;
		}
		pthread_mutex_lock(&s->lock);
		int idle = s->q_len == 0;
		/* Everything read is acknowledged.  (Not `durable`: the frames end at a batch
		 * boundary at or below it, and the shipper claims only what it read.) */
		uint64_t moved = 0;
		if (idle && at_end && s->read_lsn > s->st.shipped_lsn)
			s->st.shipped_lsn = moved = s->read_lsn;
		uint64_t shipped = s->st.shipped_lsn;
		pthread_mutex_unlock(&s->lock);
		hold_and_release(s, moved);
		update_lag(s, durable);
		/* (At the end, every whole frame up to the bound, at least `durable`, was read.) */
		if (s->once && idle && (shipped >= s->once_target ||
					(at_end && durable != UINT64_MAX && durable >= s->once_target)))
			return 1;
		if (idle) {
			int w = ringlog_reader_wait(s->reader, 20 * 1000 * 1000);
			if (w && w != -ETIMEDOUT)
				return rln_fail(w - FATAL, "ringlog-nats: the log failed: %s",
						ringlog_last_error());
		} else {
			pause_ms(s, 1); /* acknowledgements arrive on nats.c's thread */
		}
	}
}

static void finish(struct ringlog_nats_shipper *s, enum ringlog_nats_state state, int err,
		   const char *why)
{
	pthread_mutex_lock(&s->lock);
	s->st.state = state;
	s->st.error = err;
	if (err && why)
		snprintf(s->error, sizeof(s->error), "%s", why);
	s->finished = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void *ship_main(void *arg)
{
	struct ringlog_nats_shipper *s = arg;
	uint32_t backoff = 50;
	int first = 1;
	for (;;) {
		if (stopping(s))
			break;
		int err = resync(s);
		if (!err) {
			if (!first) {
				pthread_mutex_lock(&s->lock);
				s->st.retries++;
				pthread_mutex_unlock(&s->lock);
			}
			first = 0;
			err = pump(s);
			if (err == 1) { /* options.once: done */
				drain(s);
				finish(s, RINGLOG_NATS_STOPPED, 0, NULL);
				return NULL;
			}
			if (err == -ECANCELED)
				break;
			if (err == -EAGAIN)
				backoff = 50; /* a resync right away may do */
		}
		if (err <= -FATAL) {
			drain(s);
			finish(s, RINGLOG_NATS_FAILED, err + FATAL, ringlog_last_error());
			return NULL;
		}
		char why[512];
		if (err == -EAGAIN) {
			pthread_mutex_lock(&s->lock);
			snprintf(why, sizeof(why), "resending after: %s", s->pub_why);
			pthread_mutex_unlock(&s->lock);
		} else {
			snprintf(why, sizeof(why), "%s", ringlog_last_error());
		}
		/* The log goes on while the stream cannot be reached: so does the lag. */
		update_lag(s, s->reader ? ringlog_reader_durable_lsn(s->reader) : UINT64_MAX);
		pthread_mutex_lock(&s->lock);
		s->st.state = RINGLOG_NATS_BACKING_OFF;
		snprintf(s->error, sizeof(s->error), "%s", why); /* the latest trouble */
		pthread_mutex_unlock(&s->lock);
		if (pause_ms(s, backoff))
			break;
		backoff = backoff * 2 > s->cfg.o.max_backoff_ms ? s->cfg.o.max_backoff_ms
								: backoff * 2;
	}
	/* Stop: what is in flight gets its acknowledgement (or its timeout); then no
	 * callback may run once the shipper is freed. */
	quiesce(s);
	collect_acks(s);
	pthread_mutex_lock(&s->lock);
	s->error[0] = 0;
	pthread_mutex_unlock(&s->lock);
	finish(s, RINGLOG_NATS_STOPPED, 0, NULL);
	return NULL;
}

/* ---- Public ---- */

static void free_shipper(struct ringlog_nats_shipper *s)
{
	ringlog_reader_close(s->reader);
	rln_disconnect(&s->conn);
	ringlog_slot_close(s->slot);
	if (s->nstats)
		natsStatistics_Destroy(s->nstats);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->q);
	rl_hist_free(&s->lat);
	free(s->buf);
	free(s->dir);
	free(s);
}

static int start(struct ringlog *log, const char *dir, const struct ringlog_nats_options *o,
		 struct ringlog_nats_shipper **out)
{
	if (!out)
		return rln_fail(-EINVAL, "ringlog-nats: shipper_start: out must not be NULL");
	*out = NULL;
	int slot_made = 0;
	struct ringlog_nats_shipper *s = calloc(1, sizeof(*s));
	if (!s)
		return rln_fail(-ENOMEM, "ringlog-nats: allocating the shipper");
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	int err = rln_config(o, &s->cfg);
	if (err)
		goto fail;
	s->log = log;
	s->dir = strdup(dir);
	s->q = calloc(s->cfg.o.max_pending, sizeof(*s->q));
	if (!s->dir || !s->q) {
		err = rln_fail(-ENOMEM, "ringlog-nats: allocating the shipper");
		goto fail;
	}
	uint64_t durable;
	if (log) {
		s->log_id = ringlog_log_id(log);
		durable = ringlog_durable_lsn(log);
	} else if ((err = ringlog_published_durable(dir, &durable, &s->log_id)) != 0) {
		err = rln_fail(err, "ringlog-nats: %s: %s", dir, ringlog_last_error());
		goto fail;
	}
	s->once = s->cfg.o.once != 0;
	s->once_target = durable;
	/* Hold retention from now on; the resync moves the slot to the stream's end.  A
	 * slot made here is removed again if the start fails (it would hold retention at
	 * LSN 0 for a shipper that never ran). */
	if (!s->cfg.slot[0]) {
		err = rln_fail(-EINVAL,
			       "ringlog-nats: stream name %.64s... is too long for the default slot "
			       "name nats-<stream> (64 characters at most): set options.slot "
			       "(ringlog-ship --slot)",
			       s->cfg.stream);
		goto fail;
	}
	err = ringlog_slot_open(dir, s->cfg.slot, 0, 0, &s->slot);
	if (err == -ENOENT) {
		err = ringlog_slot_open(dir, s->cfg.slot, 1, 0, &s->slot);
		slot_made = !err;
	}
	if (err)
		goto fail;
	err = rln_connect(&s->cfg, on_ack, s, s->cfg.o.max_pending, &s->conn);
	if (err)
		goto fail;
	int64_t room = s->conn.max_payload - (int64_t)RLN_HEADER_ROOM;
	if (room < 64) {
		err = rln_fail(-EMSGSIZE, "ringlog-nats: the server's max_payload (%" PRId64
					  " bytes) leaves no room for frames",
			       s->conn.max_payload);
		goto fail;
	}
	s->msg_max = s->cfg.o.max_message_bytes && s->cfg.o.max_message_bytes < room
			 ? s->cfg.o.max_message_bytes
			 : (uint32_t)room;
	s->buf = malloc(s->msg_max);
	if (!s->buf || rl_hist_init(&s->lat) != 0 || natsStatistics_Create(&s->nstats) != NATS_OK) {
		err = rln_fail(-ENOMEM, "ringlog-nats: allocating the message buffer");
		goto fail;
	}
	/* The stream: made now, or checked to be this log's. */
	uint64_t id;
	err = rln_stream_lookup(&s->conn, &s->cfg, &id, NULL, NULL);
	if (err == -ENOENT)
		err = rln_stream_create(&s->conn, &s->cfg, s->log_id);
	else if (!err && id != s->log_id)
		err = rln_fail(-EEXIST,
			       "ringlog-nats: stream %s belongs to log %016" PRIx64
			       ", and this log is %016" PRIx64 ": use another stream name",
			       s->cfg.stream, id, s->log_id);
	if (err)
		goto fail;
	s->st.log_id = s->log_id;
	s->st.started_ns = rln_now_ns();
	if ((err = -pthread_create(&s->thread, NULL, ship_main, s)) != 0) {
		err = rln_fail(err, "ringlog-nats: starting the shipper thread");
		goto fail;
	}
	s->thread_started = 1;
	*out = s;
	return 0;
fail:
	if (slot_made) {
		ringlog_slot_close(s->slot);
		s->slot = NULL;
		ringlog_slot_drop(dir, s->cfg.slot); /* (a failure leaves it: it only holds) */
	}
	free_shipper(s);
	return err;
}

RINGLOG_NATS_API int ringlog_nats_shipper_start(struct ringlog *log,
						const struct ringlog_nats_options *o,
						struct ringlog_nats_shipper **out)
{
	if (!log)
		return rln_fail(-EINVAL, "ringlog-nats: shipper_start: log must not be NULL");
	return start(log, ringlog_dir(log), o, out);
}

RINGLOG_NATS_API int ringlog_nats_shipper_start_dir(const char *dir,
						    const struct ringlog_nats_options *o,
						    struct ringlog_nats_shipper **out)
{
	if (!dir)
		return rln_fail(-EINVAL, "ringlog-nats: shipper_start_dir: dir must not be NULL");
	return start(NULL, dir, o, out);
}

RINGLOG_NATS_API int ringlog_nats_shipper_wait(struct ringlog_nats_shipper *s,
					       int64_t timeout_ns)
{
	uint64_t target;
	if (s->once)
		target = s->once_target;
	else if (s->log)
		target = ringlog_durable_lsn(s->log);
	else {
		uint64_t id;
		int err = ringlog_published_durable(s->dir, &target, &id);
		if (err)
			return err;
	}
	struct timespec until = deadline_in(timeout_ns > 0 ? (uint64_t)timeout_ns : 0);
	int err = 0;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		if (s->finished || (s->st.shipped_lsn >= target && s->q_len == 0)) {
			err = s->st.state == RINGLOG_NATS_FAILED ? s->st.error : 0;
			break;
		}
		if (timeout_ns < 0)
			pthread_cond_wait(&s->cond, &s->lock);
		else if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT) {
			err = -ETIMEDOUT;
			break;
		}
	}
	char why[512];
	snprintf(why, sizeof(why), "%s", s->error);
	uint64_t shipped = s->st.shipped_lsn;
	pthread_mutex_unlock(&s->lock);
	if (err == -ETIMEDOUT)
		return rln_fail(err,
				"ringlog-nats: shipped up to LSN %" PRIu64 " of %" PRIu64
				" within the wait%s%s",
				shipped, target, why[0] ? "; latest trouble: " : "", why);
	return err ? ringlog_set_error(err, why) : 0;
}

RINGLOG_NATS_API int ringlog_nats_shipper_stats(struct ringlog_nats_shipper *s,
						struct ringlog_nats_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->st;
	/* Acknowledgements since the last look at the log may have closed the lag. */
	if (out->shipped_lsn > out->durable_lsn)
		out->durable_lsn = out->shipped_lsn;
	if (out->lag_lsns > out->durable_lsn - out->shipped_lsn)
		out->lag_lsns = out->durable_lsn - out->shipped_lsn;
	if (!out->lag_lsns)
		out->lag_ns = 0;
	uint64_t pct[4] = {0};
	const double want[4] = {50, 90, 99, 99.9};
	for (int w = 0; w < 4 && rl_hist_count(&s->lat); w++) {
		pct[w] = rl_hist_percentile(&s->lat, want[w]);
		if (pct[w] > s->st.ack_max_ns) /* (a bucket's bound can pass the largest seen) */
			pct[w] = s->st.ack_max_ns;
	}
	pthread_mutex_unlock(&s->lock);
	out->ack_p50_ns = pct[0];
	out->ack_p90_ns = pct[1];
	out->ack_p99_ns = pct[2];
	out->ack_p999_ns = pct[3];
	uint64_t reconnects = 0;
	if (s->nstats && natsConnection_GetStats(s->conn.nc, s->nstats) == NATS_OK)
		natsStatistics_GetCounts(s->nstats, NULL, NULL, NULL, NULL, &reconnects);
	out->reconnects = reconnects;
	return 0;
}

RINGLOG_NATS_API const char *ringlog_nats_shipper_error(struct ringlog_nats_shipper *s)
{
	return s->error;
}

RINGLOG_NATS_API int ringlog_nats_shipper_stop(struct ringlog_nats_shipper *s)
{
	if (!s)
		return 0;
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	int err = s->st.state == RINGLOG_NATS_FAILED ? s->st.error : 0;
	char why[512];
	snprintf(why, sizeof(why), "%s", s->error);
	free_shipper(s);
	return err ? ringlog_set_error(err, why) : 0;
}
