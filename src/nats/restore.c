/*
 * Restore: rebuild (or keep up to date) a log directory from its stream.
 *
 * The stream is replayed message by message from its leader (replay() says why not
 * through a consumer), from the message that holds the directory's next LSN.  Every message must
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
#include <time.h>
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
	uint64_t messages; /* messages applied by this run */
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
	uint32_t nrecs = rl_entry_nrecs(f);
	uint64_t first = rl_entry_first_lsn(f);
	uint64_t last = first + nrecs - 1;
	if (r->next_lsn && first < r->next_lsn) {
		/* Already in the log: only where a continued restore starts, inside its first
		 * message; anywhere else the stream holds these LSNs twice. */
		if (r->messages || first + nrecs > r->next_lsn) {
			char d[64];
			snprintf(d, sizeof(d), "%" PRIu64, first);
			return bad_message(r, seq, "LSN %s again (it was restored already)", d);
		}
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
	r->st.records += rl_entry_records(f);
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
		    rl_entry_len(r->chunk_buf) != r->chunk_len ||
		    rl_entry_first_lsn(r->chunk_buf) != meta.first_lsn)
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
		uint32_t fl = rl_entry_len(data + off);
		if (fl < RL_FRAME_HEADER_BYTES || fl > len - off || fl % 8)
			return bad_message(r, seq, "%s", "a frame whose length does not fit");
		if (rl_entry_first_lsn(data + off) != expect)
			return bad_message(r, seq, "%s", "frames that do not follow its headers");
		int err = apply_frame(r, seq, data + off, fl);
		if (err)
			return err;
		expect += rl_entry_nrecs(data + off);
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
			/* A chunk: its frame starts at the frame's first chunk; if the frame
			 * holds `lsn`, that is the answer, else look below it. */
			if (meta.chunks && meta.chunk > 1) {
				*out = mid - (meta.chunk - 1);
				if (meta.first_lsn <= lsn || *out <= lo)
					return 0;
				hi = *out - 1;
				continue;
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

/* How often a follower asks for the next message when it has caught up, ms. */
#define FOLLOW_POLL_MS 50
/* Give up without follow when the stream does not answer for this long. */
#define GIVE_UP_NS (120ull * 1000000000u)

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/*
 * Apply the stream's messages start_seq..end_seq (with follow: and on, until *stop), in
 * order, each fetched from the stream leader by its sequence.
 *
 * Not through a consumer: a consumer reads the store of whichever replica it is placed
 * on, and nats-server 2.9.10 can leave a replica with another message at a sequence
 * after the whole cluster stopped with a message in flight (seen in
 * tests/test_ship_faults.c: one replica held LSNs 211..212 at a sequence where the
 * other two held 211..2330, and stopped catching up).  The leader's copy is the one a
 * majority agreed on.
 */
static int replay(struct restore *r, uint64_t start_seq, uint64_t end_seq, int follow,
		  const volatile int *stop)
{
	uint64_t seq = start_seq;
	uint64_t progress_at = rln_now_ns();
	int err = 0;
	while (!err && !r->done) {
		if (!follow && seq > end_seq)
			break;
		if (follow && stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))
			break;
		natsMsg *m = NULL;
		err = rln_get_msg(&r->conn, &r->cfg, seq, &m);
		if (err == -ENOENT && follow) { /* not there yet */
			err = 0;
			sleep_ms(FOLLOW_POLL_MS);
			continue;
		}
		if (err == -ENOENT) {
			err = bad_message(r, seq, "%s", "missing from the stream");
			break;
		}
		if (err) {
			/* The leader is away (an election, a lost server): wait for it, a while
			 * (for ever when following). */
			if (!follow && rln_now_ns() - progress_at > GIVE_UP_NS)
				break;
			err = 0;
			sleep_ms(200);
			continue;
		}
		progress_at = rln_now_ns();
		err = apply_message(r, m, seq);
		natsMsg_Destroy(m);
		r->messages++;
		seq++;
	}
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
