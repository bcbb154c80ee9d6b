/*
 * What the shipper (ship.c) and restore (restore.c) share: the connection to NATS, the
 * stream that holds a log, and the messages in it.
 *
 * The stream: name = options.stream; one subject, RINGLOG_NATS_SUBJECT_PREFIX + name;
 * file storage; Description "ringlog log_id=<16 hex digits>" (nats-server 2.9 has no
 * stream metadata; nats.c 3.4 does not escape the description, so it holds only these
 * characters).  Deletes and purges are refused by the stream (DenyDelete, DenyPurge):
 * a gap in it would be a gap in the log.
 *
 * A message: payload = whole frames back to back, exactly as on disk, in LSN order; or
 * one chunk of one frame too large for a message (chunks k = 1..n of a frame are
 * consecutive messages).  Headers (all values decimal but the log id, 16 hex digits):
 *
 *   Nats-Msg-Id                  <log id>-<first LSN>-<last LSN>, or on a chunk
 *                                <log id>-<first LSN>-<k>of<n>-<payload bytes>
 *   Nats-Expected-Last-Sequence  stream sequence of the message before it (0: first)
 *   Nats-Expected-Last-Msg-Id    the Nats-Msg-Id of the message before it (absent on
 *                                the first message after a resync)
 *   Ringlog-Log-Id               <log id>
 *   Ringlog-First-Lsn            first LSN of the first frame
 *   Ringlog-Last-Lsn             last LSN of the last frame
 *   Ringlog-Chunk                "k/n" on a chunk only
 *
 * A Msg-Id names the bytes of its message (frames never change; a chunk's place and
 * length fix its bytes), so a "duplicate" acknowledgement means those very bytes are in
 * the stream.  The expected last Msg-Id chains each message to the one the shipper
 * sent before it: a message left from an earlier attempt (nats.c resends what it
 * buffered while disconnected, after the shipper has resynchronised and numbered its
 * messages anew) can take a sequence number, but then the new attempt's next message
 * names another predecessor and is refused, instead of being stored after a gap.
 * (nats-server 2.9 knows the last Msg-Id after a restart only when that message is
 * within the duplicate window; so the first message after a resync carries none, and
 * relies on the sequence and on its Msg-Id.)
 *
 * The message with stream sequence s + 1 follows the message with sequence s in the
 * log: its first LSN is the previous one's last LSN + 1 (or, for chunk k > 1, the same
 * frame as chunk k - 1).  Restore checks that and every frame; the shipper keeps it.
 */
#ifndef RLN_STREAM_H
#define RLN_STREAM_H

#include "ringlog_nats.h"

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

#define RLN_HDR_MSG_ID "Nats-Msg-Id"
#define RLN_HDR_EXPECT_LAST_SEQ "Nats-Expected-Last-Sequence"
#define RLN_HDR_EXPECT_LAST_ID "Nats-Expected-Last-Msg-Id"
#define RLN_MSG_ID_MAX 96
#define RLN_HDR_LOG_ID "Ringlog-Log-Id"
#define RLN_HDR_FIRST_LSN "Ringlog-First-Lsn"
#define RLN_HDR_LAST_LSN "Ringlog-Last-Lsn"
#define RLN_HDR_CHUNK "Ringlog-Chunk"

#define RLN_STREAM_NAME_MAX 200
/* Room left for the headers under the server's max_payload. */
#define RLN_HEADER_ROOM 4096u
#define RLN_DESCRIPTION_PREFIX "ringlog log_id="

/* Options with the defaults filled in, and the stream's names. */
struct rln_config {
	struct ringlog_nats_options o;
	char servers[2048];
	char stream[RLN_STREAM_NAME_MAX + 1];
	char subject[RLN_STREAM_NAME_MAX + sizeof(RINGLOG_NATS_SUBJECT_PREFIX)];
	char slot[80];
};

/* Check `o` (NULL: defaults; stream is required) into *c.  Returns 0 or -EINVAL with
 * ringlog_last_error() set. */
int rln_config(const struct ringlog_nats_options *o, struct rln_config *c);

/* Set ringlog_last_error() (printf format) and return err. */
int rln_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The -errno for a NATS status (and a JetStream error code, 0 if none). */
int rln_errno(natsStatus s, jsErrCode jerr);
/* Text for a status and the library's last error detail, for messages. */
const char *rln_status_text(natsStatus s);

/* Network errors and a stream without a leader: worth retrying after a pause. */
int rln_retryable(int err);

struct rln_conn {
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	int64_t max_payload;
};

/* Connect to c->servers (retrying reconnects forever) and make a JetStream context
 * whose async publishes call `ack` (NULL: none) with `closure`.  Returns 0, or
 * -ECONNREFUSED / -ETIMEDOUT / -errno with the URLs in the message. */
int rln_connect(const struct rln_config *c, jsPubAckHandler ack, void *closure,
		int64_t max_pending, struct rln_conn *out);
void rln_disconnect(struct rln_conn *conn);

/* Look the stream up.  Returns 0 with *log_id (from its Description), -ENOENT (no such
 * stream), -EEXIST (a stream of that name that is not a ringlog log's), -errno.
 * *last_seq, *first_seq (if not NULL): the stream's last and first sequence. */
int rln_stream_lookup(struct rln_conn *conn, const struct rln_config *c, uint64_t *log_id,
		      uint64_t *first_seq, uint64_t *last_seq);
/* Create the stream for `log_id` (options.replicas).  Returns 0, or -EEXIST when one
 * of that name appeared meanwhile with another configuration, -errno. */
int rln_stream_create(struct rln_conn *conn, const struct rln_config *c, uint64_t log_id);

/* A message's ringlog headers. */
struct rln_meta {
	uint64_t log_id;
	uint64_t first_lsn, last_lsn;
	uint32_t chunk, chunks; /* 0, 0 when not a chunk */
	uint64_t seq;		/* its stream sequence (0 when unknown) */
};

/* Parse the headers of `m`.  Returns 0 or -EBADMSG (missing or malformed; the detail
 * in `why`). */
int rln_meta_parse(natsMsg *m, struct rln_meta *meta, char *why, size_t why_len);

/* Fetch the message with stream sequence `seq` (0: the last one).  Returns 0 with *m
 * (the caller destroys it), -ENOENT (none), -errno. */
int rln_get_msg(struct rln_conn *conn, const struct rln_config *c, uint64_t seq, natsMsg **m);

/* Set the headers of a message.  Returns 0 or -ENOMEM. */
void rln_msg_id(const struct rln_meta *meta, size_t len, char *out, size_t out_len);
int rln_meta_set(natsMsg *m, const struct rln_meta *meta, size_t len, uint64_t expect_last_seq,
		 const char *expect_last_id);

uint64_t rln_now_ns(void);

#endif
