/* The connection, the stream and its messages' headers: see stream.h. */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int rln_fail(int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ringlog_set_error(err, msg);
}

uint64_t rln_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

RINGLOG_NATS_API void ringlog_nats_options_init(struct ringlog_nats_options *o)
{
	memset(o, 0, sizeof(*o));
	o->servers = RINGLOG_NATS_DEFAULT_SERVERS;
	o->replicas = 1;
	o->max_pending = 256;
	o->ack_timeout_ms = 5000;
	o->max_backoff_ms = 2000;
	o->slot_hold_ms = RINGLOG_NATS_SLOT_HOLD_DEFAULT_MS;
}

static int stream_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > RLN_STREAM_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

int rln_config(const struct ringlog_nats_options *o, struct rln_config *c)
{
	memset(c, 0, sizeof(*c));
	ringlog_nats_options_init(&c->o);
	if (!o)
		return rln_fail(-EINVAL, "ringlog-nats: options are required (at least the stream "
					 "name)");
	c->o = *o;
	if (!c->o.servers || !*c->o.servers)
		c->o.servers = RINGLOG_NATS_DEFAULT_SERVERS;
	if (!stream_name_ok(o->stream))
		return rln_fail(-EINVAL,
				"ringlog-nats: stream name \"%s\": 1 to %d letters, digits, '-' "
				"and '_'",
				o->stream ? o->stream : "(none)", RLN_STREAM_NAME_MAX);
	if (c->o.replicas == 0)
		c->o.replicas = 1;
	if (c->o.replicas > 5)
		return rln_fail(-EINVAL, "ringlog-nats: replicas %u: JetStream allows 1 to 5",
				c->o.replicas);
	if (c->o.max_pending == 0)
		c->o.max_pending = 256;
	if (c->o.max_pending > 65536)
		return rln_fail(-EINVAL, "ringlog-nats: max_pending %u: at most 65536",
				c->o.max_pending);
	if (c->o.ack_timeout_ms == 0)
		c->o.ack_timeout_ms = 5000;
	if (c->o.max_backoff_ms == 0)
		c->o.max_backoff_ms = 2000;
	if (c->o.slot_hold_ms == 0)
		c->o.slot_hold_ms = RINGLOG_NATS_SLOT_HOLD_DEFAULT_MS;
	else if (c->o.slot_hold_ms == RINGLOG_NATS_SLOT_HOLD_NONE)
		c->o.slot_hold_ms = 0;
	if (c->o.max_message_bytes && c->o.max_message_bytes < 64)
		return rln_fail(-EINVAL, "ringlog-nats: max_message_bytes %u: at least 64",
				c->o.max_message_bytes);
	if (strlen(c->o.servers) >= sizeof(c->servers))
		return rln_fail(-EINVAL, "ringlog-nats: the server list is too long");
	snprintf(c->servers, sizeof(c->servers), "%s", c->o.servers);
	snprintf(c->stream, sizeof(c->stream), "%s", o->stream);
	snprintf(c->subject, sizeof(c->subject), RINGLOG_NATS_SUBJECT_PREFIX "%s", o->stream);
	if (o->slot && strlen(o->slot) >= sizeof(c->slot))
		return rln_fail(-EINVAL, "ringlog-nats: slot name \"%s\" is too long", o->slot);
	snprintf(c->slot, sizeof(c->slot), "%s", o->slot ? o->slot : "");
	/* (Left empty when "nats-" + the stream would pass a slot name's 64 characters:
	 * the shipper then asks for options.slot; restore has no slot.) */
	if (!o->slot && strlen(o->stream) <= 59)
		snprintf(c->slot, sizeof(c->slot), "nats-%s", o->stream);
	c->o.servers = c->servers;
	c->o.stream = c->stream;
	c->o.slot = c->slot;
	return 0;
}

const char *rln_status_text(natsStatus s)
{
	const char *t = natsStatus_GetText(s);
	return t ? t : "unknown NATS status";
}

int rln_errno(natsStatus s, jsErrCode jerr)
{
	switch (s) {
	case NATS_OK:
		return 0;
	case NATS_NO_SERVER:
	case NATS_CONNECTION_CLOSED:
		return -ECONNREFUSED;
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_STALE_CONNECTION:
	case NATS_IO_ERROR:
		return -ENOTCONN;
	case NATS_TIMEOUT:
		return -ETIMEDOUT;
	case NATS_NOT_FOUND:
		return -ENOENT;
	case NATS_NO_RESPONDERS:
		return -EAGAIN; /* no stream leader right now (an election) */
	case NATS_NO_MEMORY:
		return -ENOMEM;
	case NATS_MAX_PAYLOAD:
		return -EMSGSIZE;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
	case NATS_ADDRESS_MISSING:
		return -EINVAL;
	case NATS_CONNECTION_AUTH_FAILED:
	case NATS_NOT_PERMITTED:
		return -EACCES;
	case NATS_ERR:
		if (jerr == JSStreamWrongLastSequenceErr)
			return -ESTALE;
		if (jerr == JSStreamNameExistErr)
			return -EEXIST;
		if (jerr == JSStreamNotFoundErr || jerr == JSNoMessageFoundErr)
			return -ENOENT;
		return -EPROTO;
	default:
		return -EIO;
	}
}

int rln_retryable(int err)
{
	return err == -ECONNREFUSED || err == -ENOTCONN || err == -ETIMEDOUT || err == -EAGAIN ||
	       err == -EIO || err == -EPROTO || err == -ESTALE;
}

int rln_connect(const struct rln_config *c, jsPubAckHandler ack, void *closure,
		int64_t max_pending, struct rln_conn *out)
{
	memset(out, 0, sizeof(*out));
	char list[sizeof(c->servers)];
	snprintf(list, sizeof(list), "%s", c->servers);
	const char *urls[32];
	int n = 0;
	for (char *save = NULL, *u = strtok_r(list, ",", &save); u && n < 32;
	     u = strtok_r(NULL, ",", &save))
		if (*u)
			urls[n++] = u;
	if (n == 0)
		return rln_fail(-EINVAL, "ringlog-nats: no server URL in \"%s\"", c->servers);
	natsStatus s = natsOptions_Create(&out->opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(out->opts, urls, n);
	/* Never give up reconnecting: the shipper decides when to stop. */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(out->opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(out->opts, 100);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(out->opts, 2000);
	/* A request in flight when the connection drops fails at once. */
	if (s == NATS_OK)
		s = natsOptions_SetFailRequestsOnDisconnect(out->opts, true);
	if (s != NATS_OK) {
		int err = rln_errno(s, 0);
		rln_disconnect(out);
		return rln_fail(err, "ringlog-nats: connection options for %s: %s", c->servers,
				rln_status_text(s));
	}
	s = natsConnection_Connect(&out->nc, out->opts);
	if (s != NATS_OK) {
		int err = rln_errno(s, 0);
		if (err == -ENOTCONN || err == -EIO)
			err = -ECONNREFUSED;
		rln_disconnect(out);
		return rln_fail(err, "ringlog-nats: no NATS server answered at %s (%s): is "
				     "nats-server running there?",
				c->servers, rln_status_text(s));
	}
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = c->o.ack_timeout_ms;
	if (ack) {
		jo.PublishAsync.MaxPending = max_pending;
		jo.PublishAsync.AckHandler = ack;
		jo.PublishAsync.AckHandlerClosure = closure;
		jo.PublishAsync.StallWait = 50;
	}
	s = natsConnection_JetStream(&out->js, out->nc, &jo);
	if (s != NATS_OK) {
		rln_disconnect(out);
		return rln_fail(rln_errno(s, 0), "ringlog-nats: JetStream context: %s",
				rln_status_text(s));
	}
	out->max_payload = natsConnection_GetMaxPayload(out->nc);
	return 0;
}

void rln_disconnect(struct rln_conn *conn)
{
	if (conn->js)
		jsCtx_Destroy(conn->js);
	if (conn->nc) {
		natsConnection_Close(conn->nc);
		natsConnection_Destroy(conn->nc);
	}
	if (conn->opts)
		natsOptions_Destroy(conn->opts);
	memset(conn, 0, sizeof(*conn));
}

static int parse_u64(const char *s, int base, uint64_t *v)
{
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return 0;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, base);
	if (errno || *end)
		return 0;
	*v = x;
	return 1;
}

int rln_stream_lookup(struct rln_conn *conn, const struct rln_config *c, uint64_t *log_id,
		      uint64_t *first_seq, uint64_t *last_seq)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, conn->js, c->stream, NULL, &jerr);
	if (s != NATS_OK) {
		int err = rln_errno(s, jerr);
		if (err == -ENOENT)
			return rln_fail(-ENOENT, "ringlog-nats: no stream %s at %s", c->stream,
					c->servers);
		return rln_fail(err, "ringlog-nats: looking up stream %s at %s: %s (%d)",
				c->stream, c->servers, rln_status_text(s), (int)jerr);
	}
	const char *d = si->Config && si->Config->Description ? si->Config->Description : "";
	int ours = 0;
	for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++)
		ours |= strcmp(si->Config->Subjects[i], c->subject) == 0;
	size_t plen = strlen(RLN_DESCRIPTION_PREFIX);
	int err = 0;
	if (!ours || strncmp(d, RLN_DESCRIPTION_PREFIX, plen) != 0 || strlen(d + plen) != 16 ||
	    !parse_u64(d + plen, 16, log_id))
		err = rln_fail(-EEXIST,
			       "ringlog-nats: stream %s exists but is not a ringlog log's (subject "
			       "%s %s, description \"%.64s\")",
			       c->stream, c->subject, ours ? "present" : "missing", d);
	else {
		if (first_seq)
			*first_seq = si->State.FirstSeq;
		if (last_seq)
			*last_seq = si->State.LastSeq;
	}
	jsStreamInfo_Destroy(si);
	return err;
}

int rln_stream_create(struct rln_conn *conn, const struct rln_config *c, uint64_t log_id)
{
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	char desc[64];
	snprintf(desc, sizeof(desc), RLN_DESCRIPTION_PREFIX "%016" PRIx64, log_id);
	const char *subjects[1] = {c->subject};
	cfg.Name = c->stream;
	cfg.Description = desc;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = c->o.replicas;
	cfg.DenyDelete = true;
	cfg.DenyPurge = true;
	cfg.AllowDirect = true;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_AddStream(&si, conn->js, &cfg, NULL, &jerr);
	if (si)
		jsStreamInfo_Destroy(si);
	if (s != NATS_OK)
		return rln_fail(rln_errno(s, jerr),
				"ringlog-nats: creating stream %s (%u replicas) at %s: %s (%d)",
				c->stream, c->o.replicas, c->servers, rln_status_text(s), (int)jerr);
	return 0;
}

static int header_u64(natsMsg *m, const char *key, int base, uint64_t *v, char *why,
		      size_t why_len)
{
	const char *s = NULL;
	if (natsMsgHeader_Get(m, key, &s) != NATS_OK || !s) {
		snprintf(why, why_len, "no %s header", key);
		return 0;
	}
	if (!parse_u64(s, base, v)) {
		snprintf(why, why_len, "%s header \"%.40s\" is not a number", key, s);
		return 0;
	}
	return 1;
}

int rln_meta_parse(natsMsg *m, struct rln_meta *meta, char *why, size_t why_len)
{
	memset(meta, 0, sizeof(*meta));
	meta->seq = natsMsg_GetSequence(m);
	if (!header_u64(m, RLN_HDR_LOG_ID, 16, &meta->log_id, why, why_len) ||
	    !header_u64(m, RLN_HDR_FIRST_LSN, 10, &meta->first_lsn, why, why_len) ||
	    !header_u64(m, RLN_HDR_LAST_LSN, 10, &meta->last_lsn, why, why_len))
		return -EBADMSG;
	if (meta->first_lsn == 0 || meta->last_lsn < meta->first_lsn) {
		snprintf(why, why_len, "LSNs %" PRIu64 "..%" PRIu64 " make no range",
			 meta->first_lsn, meta->last_lsn);
		return -EBADMSG;
	}
	const char *ch = NULL;
	if (natsMsgHeader_Get(m, RLN_HDR_CHUNK, &ch) == NATS_OK && ch) {
		unsigned k, n;
		char extra;
		if (sscanf(ch, "%u/%u%c", &k, &n, &extra) != 2 || k == 0 || n < 2 || k > n) {
			snprintf(why, why_len, "%s header \"%.40s\" is not k/n", RLN_HDR_CHUNK, ch);
			return -EBADMSG;
		}
		meta->chunk = k;
		meta->chunks = n;
	}
	return 0;
}

void rln_msg_id(const struct rln_meta *meta, size_t len, char *out, size_t out_len)
{
	if (meta->chunks)
		snprintf(out, out_len, "%016" PRIx64 "-%" PRIu64 "-%uof%u-%zu", meta->log_id,
			 meta->first_lsn, meta->chunk, meta->chunks, len);
	else
		snprintf(out, out_len, "%016" PRIx64 "-%" PRIu64 "-%" PRIu64, meta->log_id,
			 meta->first_lsn, meta->last_lsn);
}

int rln_meta_set(natsMsg *m, const struct rln_meta *meta, size_t len, uint64_t expect_last_seq,
		 const char *expect_last_id)
{
	char id[RLN_MSG_ID_MAX], v[32];
	rln_msg_id(meta, len, id, sizeof(id));
	natsStatus s = natsMsgHeader_Set(m, RLN_HDR_MSG_ID, id);
	snprintf(v, sizeof(v), "%" PRIu64, expect_last_seq);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, RLN_HDR_EXPECT_LAST_SEQ, v);
	if (s == NATS_OK && expect_last_id && *expect_last_id)
		s = natsMsgHeader_Set(m, RLN_HDR_EXPECT_LAST_ID, expect_last_id);
	snprintf(v, sizeof(v), "%016" PRIx64, meta->log_id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, RLN_HDR_LOG_ID, v);
	snprintf(v, sizeof(v), "%" PRIu64, meta->first_lsn);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, RLN_HDR_FIRST_LSN, v);
	snprintf(v, sizeof(v), "%" PRIu64, meta->last_lsn);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, RLN_HDR_LAST_LSN, v);
	if (s == NATS_OK && meta->chunks) {
		snprintf(v, sizeof(v), "%u/%u", meta->chunk, meta->chunks);
		s = natsMsgHeader_Set(m, RLN_HDR_CHUNK, v);
	}
	return s == NATS_OK ? 0 : -ENOMEM;
}

int rln_get_msg(struct rln_conn *conn, const struct rln_config *c, uint64_t seq, natsMsg **m)
{
	*m = NULL;
	jsErrCode jerr = 0;
	/* Both are answered by the stream leader: never a stale last message. */
	natsStatus s = seq ? js_GetMsg(m, conn->js, c->stream, seq, NULL, &jerr)
			   : js_GetLastMsg(m, conn->js, c->stream, c->subject, NULL, &jerr);
	if (s == NATS_OK)
		return 0;
	int err = rln_errno(s, jerr);
	if (err == -ENOENT)
		return -ENOENT;
	return rln_fail(err, "ringlog-nats: reading %s message %" PRIu64 " of stream %s: %s (%d)",
			seq ? "" : "the last", seq, c->stream, rln_status_text(s), (int)jerr);
}
