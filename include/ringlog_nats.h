/*
 * ringlog-nats: ship a ringlog log's committed batches into a NATS JetStream stream,
 * exactly once and in LSN order, and rebuild a log from such a stream.
 *
 * A separate library (libringlog-nats, pkg-config ringlog-nats) so that the core
 * library has no NATS dependency.  Built on nats.c (libnats 3.4) and nats-server
 * 2.9's JetStream.
 *
 * What goes into the stream (docs/replication.md has the details):
 *  - one subject, RINGLOG_NATS_SUBJECT_PREFIX + the stream name; file storage; the
 *    stream's Description names the log ("ringlog log_id=<16 hex digits>"), and a
 *    shipper refuses a stream that names another log;
 *  - each message holds whole frames exactly as they are on disk (CRC included),
 *    consecutive in LSN order, up to the server's max payload; a frame larger than
 *    that is split into chunks that restore joins;
 *  - headers: Nats-Msg-Id (the log id, the first LSN and the chunk: a resent message
 *    is de-duplicated), Nats-Expected-Last-Sequence (the stream sequence of the
 *    message before it, on every message: a message lost in flight makes every later
 *    one fail instead of leaving a gap), Ringlog-Log-Id, Ringlog-First-Lsn,
 *    Ringlog-Last-Lsn and, for chunks, Ringlog-Chunk ("k/n").
 *
 * Only durable records are shipped (never past what the writer synced, so the
 * stream never runs ahead of the log), and a shipper resumes from the stream itself:
 * its last message says the last LSN shipped.  It holds a replication slot in the log
 * directory (ringlog_slot_open) at the last LSN the stream acknowledged (at least
 * options.slot_hold_ms ago), so that retention never drops what is not shipped yet.
 *
 * Functions return 0 or a negative errno value, as the core library; the detail is in
 * ringlog_last_error() of the calling thread (ringlog_nats_shipper_error() for the
 * shipper's own thread).
 */
#ifndef RINGLOG_NATS_H
#define RINGLOG_NATS_H

#include <ringlog.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RINGLOG_NATS_BUILDING) && defined(__GNUC__)
#define RINGLOG_NATS_API __attribute__((visibility("default")))
#else
#define RINGLOG_NATS_API
#endif

#define RINGLOG_NATS_SUBJECT_PREFIX "ringlog."
#define RINGLOG_NATS_DEFAULT_SERVERS "nats://127.0.0.1:4222"
#define RINGLOG_NATS_SLOT_HOLD_DEFAULT_MS 360000u
#define RINGLOG_NATS_SLOT_HOLD_NONE UINT32_MAX

struct ringlog_nats_options {
	/* Comma-separated NATS URLs.  Default RINGLOG_NATS_DEFAULT_SERVERS. */
	const char *servers;
	/* The stream's name (required): letters, digits, '-' and '_'. */
	const char *stream;
	/* Replicas when the shipper creates the stream (1..5).  Default 1. */
	uint32_t replicas;
	/* Messages published and not yet acknowledged, at most.  Default 256. */
	uint32_t max_pending;
	/* How long a message may wait for its acknowledgement before the shipper
	 * backs off and resends from the last acknowledged point, ms.  Default 5000. */
	uint32_t ack_timeout_ms;
	/* Longest pause between retries after a failure (doubling from 50 ms), ms.
	 * Default 2000. */
	uint32_t max_backoff_ms;
	/* Replication slot name in the log directory.  Default "nats-" + stream. */
	const char *slot;
	/* Ship what is durable when the shipper starts, then stop (ringlog-ship --once):
	 * ringlog_nats_shipper_wait() returns once it is all acknowledged. */
	uint32_t once;
	/* Largest message payload, bytes (0: the server's max_payload less 4 KiB for the
	 * headers).  Frames are packed up to it; a larger frame is split into chunks. */
	uint32_t max_message_bytes;
	/* How long the slot keeps an LSN after the stream acknowledged it, ms: nats-server
	 * 2.9 syncs its stream files every 2 minutes and its Raft log every 5, so an
	 * acknowledgement survives losing any one node but not a power loss of the
	 * majority; until this has passed the log keeps its own copy.  Default 360000
	 * (6 minutes); RINGLOG_NATS_SLOT_HOLD_NONE: release at once. */
	uint32_t slot_hold_ms;
	uint32_t reserved_pad;
	uint64_t reserved[7];
};

/* Fill *o with the defaults. */
RINGLOG_NATS_API void ringlog_nats_options_init(struct ringlog_nats_options *o);

enum ringlog_nats_state {
	RINGLOG_NATS_CONNECTING = 0, /* connecting, or looking the stream up */
	RINGLOG_NATS_SHIPPING = 1,   /* publishing; durable records are waiting */
	RINGLOG_NATS_CAUGHT_UP = 2,  /* everything durable is acknowledged */
	RINGLOG_NATS_BACKING_OFF = 3, /* after a timeout or a lost server: waiting to retry */
	RINGLOG_NATS_STOPPED = 4,    /* stopped (after --once, or by ringlog_nats_shipper_stop) */
	RINGLOG_NATS_FAILED = 5,     /* stopped on an error it cannot retry (see error) */
};

/* What a shipper has done.  Times in nanoseconds. */
struct ringlog_nats_stats {
	uint32_t state;	       /* enum ringlog_nats_state */
	int32_t error;	       /* the -errno that failed it (state FAILED), else 0 */
	uint64_t log_id;       /* the log's id */
	uint64_t shipped_lsn;  /* last LSN the stream acknowledged */
	uint64_t durable_lsn;  /* last LSN durable in the log, as the shipper sees it */
	uint64_t lag_lsns;     /* durable_lsn - shipped_lsn */
	uint64_t lag_bytes;    /* bytes published and not acknowledged yet */
	uint64_t lag_ns;       /* how long it has been behind the durable LSN without a
				* break (0 when caught up) */
	uint64_t messages;     /* messages acknowledged (duplicates included) */
	uint64_t bytes;	       /* frame bytes acknowledged */
	uint64_t records;      /* records acknowledged */
	uint64_t retries;      /* resends from the last acknowledged point */
	uint64_t duplicates;   /* acknowledgements that said "duplicate" */
	uint64_t timeouts;     /* messages whose acknowledgement did not come in time */
	uint64_t reconnects;   /* connections re-established */
	uint64_t stream_seq;   /* the stream's last sequence, as last acknowledged */
	/* Publish-to-acknowledgement latency of the messages acknowledged so far. */
	uint64_t ack_p50_ns, ack_p90_ns, ack_p99_ns, ack_p999_ns, ack_max_ns;
	uint64_t started_ns;   /* CLOCK_MONOTONIC when it started (rates: divide by now - it) */
	uint64_t reserved[8];
};

struct ringlog_nats_shipper;

/*
 * Start shipping, in a thread of the calling process:
 *  - from an open log (`log`, in this process): ringlog_nats_shipper_start();
 *  - from a log directory another process writes (or none does):
 *    ringlog_nats_shipper_start_dir(), which reads only what the writer published as
 *    durable (RINGLOG_READ_DURABLE).
 * The stream is created if missing (file storage, options.replicas), and must
 * otherwise belong to this log (-EEXIST: it names another log id, with the detail).
 * Returns 0 with *out, or -EINVAL (options), -EEXIST, -ENOENT (no log in dir),
 * -ECONNREFUSED / -ETIMEDOUT (no server answered the first connection), -errno.
 */
RINGLOG_NATS_API int ringlog_nats_shipper_start(struct ringlog *log,
						const struct ringlog_nats_options *o,
						struct ringlog_nats_shipper **out);
RINGLOG_NATS_API int ringlog_nats_shipper_start_dir(const char *dir,
						    const struct ringlog_nats_options *o,
						    struct ringlog_nats_shipper **out);

/* Wait until the shipper is caught up (everything durable when the call started is
 * acknowledged; with options.once, everything durable at its start), stopped or
 * failed, at most timeout_ns (< 0: no limit).  Returns 0, -ETIMEDOUT, or its error. */
RINGLOG_NATS_API int ringlog_nats_shipper_wait(struct ringlog_nats_shipper *s,
					       int64_t timeout_ns);

/* Fill *out.  Cheap; any thread.  Returns 0. */
RINGLOG_NATS_API int ringlog_nats_shipper_stats(struct ringlog_nats_shipper *s,
						struct ringlog_nats_stats *out);

/* The detail of the error that failed the shipper ("" if none). */
RINGLOG_NATS_API const char *ringlog_nats_shipper_error(struct ringlog_nats_shipper *s);

/* Stop: publish nothing new, wait (at most the ack timeout) for what is in flight,
 * advance the slot, disconnect, free.  Accepts NULL.  Returns 0 or the error that
 * had failed it.  Stop shippers of a log before closing it. */
RINGLOG_NATS_API int ringlog_nats_shipper_stop(struct ringlog_nats_shipper *s);

/* What a restore did. */
struct ringlog_nats_restore_stats {
	uint64_t log_id;
	uint64_t first_lsn, last_lsn; /* the LSNs this call added (0, 0: none) */
	uint64_t messages, frames, records, bytes;
	uint64_t reserved[8];
};

/*
 * Rebuild the log in `dir` from the stream (options: servers and stream; the rest is
 * ignored): the same log id, LSNs, batches and bytes, every frame's CRC checked and
 * every LSN following on from the one before (a gap, a duplicate or a foreign message
 * in the stream is refused with -EBADMSG naming the stream sequence).
 *  - `dir` missing or without a log: made with ringlog_init_dir() at the stream's
 *    first LSN.  `dir` holding this log already (an earlier restore, a standby):
 *    continued from its next LSN, which the stream must still hold.  Another log's, or
 *    one ahead of the stream: -EEXIST / -ESTALE, untouched.
 *  - `until_lsn` (0: none): point in time; only whole batches whose last LSN is at or
 *    below it are restored (a batch is never split).
 *  - `follow`: after the stream's end, keep applying new messages until *stop becomes
 *    non-zero (a standby; stop it, then ringlog_open() the directory to take over and
 *    continue the LSNs, and ship it on to the same stream).  *stop is read with an
 *    atomic load: set it from a signal handler, or from another thread with an atomic
 *    store (__atomic_store_n); it is checked between two requests to the stream, every
 *    50 ms while caught up (a request waits at most options.ack_timeout_ms).
 * Everything restored is durable when it returns.  Returns 0, -ENOENT (no such stream),
 * -ECONNREFUSED / -ETIMEDOUT (no server), -EBADMSG, -EEXIST, -ESTALE, -errno; *out
 * (if not NULL) says what it did, also on failure.
 */
RINGLOG_NATS_API int ringlog_nats_restore(const char *dir, const struct ringlog_nats_options *o,
					  uint64_t until_lsn, int follow, const volatile int *stop,
					  struct ringlog_nats_restore_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* RINGLOG_NATS_H */
