/*
 * ringlog-ship: ship the log in a directory into a NATS JetStream stream, exactly once
 * and in LSN order, with ringlog_nats_shipper_start_dir (include/ringlog_nats.h).
 *
 *   ringlog-ship --stream NAME DIR          follow the log until SIGINT/SIGTERM
 *   ringlog-ship --stream NAME --once DIR   ship what is durable now, then exit
 *
 * SIGINT and SIGTERM are blocked in every thread and taken by one thread with sigwait,
 * so that no thread of the library, of libnats or of ringlog is interrupted by them
 * (EINTR); the first asks for a clean stop, a second one kills the process as the
 * signal would (nothing shipped is lost: a later run resumes from the stream).
 */
#include "ringlog.h"
#include "ringlog_nats.h"
#include "nats_cli.h"
#include "tool_common.h"

#include <nats/nats.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

#define TOOL "ringlog-ship"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " TOOL " [options] --stream NAME DIR\n"
	    "Ship the ringlog log in DIR into the NATS JetStream stream NAME, exactly once and\n"
	    "in LSN order: every durable record lands in the stream once, batches whole, and\n"
	    "never before the writer has synced it.  Another process may be writing the log\n"
	    "(or none); only what it published as durable is shipped.  A run resumes where\n"
	    "the stream ends, and holds the replication slot SLOT.<slot> in DIR at the last\n"
	    "LSN the stream acknowledged, so that retention keeps what is not shipped yet.\n"
	    "\n"
	    "  --stream NAME           the stream (required): letters, digits, '-' and '_';\n"
	    "                          created if missing, with subject ringlog.NAME\n"
	    "  --servers URLS          comma-separated NATS URLs "
	    "(default " RINGLOG_NATS_DEFAULT_SERVERS ")\n"
	    "  --server URLS           the same\n"
	    "  --replicas N            replicas when creating the stream, 1..5 (default 1)\n"
	    "  --max-pending N         messages published and not yet acknowledged, at most,\n"
	    "                          1..65536 (default 256)\n"
	    "  --ack-timeout MS        wait this long for an acknowledgement before resending\n"
	    "                          from the last acknowledged point (default 5000)\n"
	    "  --max-backoff MS        longest pause between retries, doubling from 50 ms\n"
	    "                          (default 2000)\n"
	    "  --slot NAME             replication slot in DIR (default nats-STREAM)\n"
	    "  --slot-hold MS|none     keep an LSN in the slot this long after the stream\n"
	    "                          acknowledged it (nats-server 2.9 syncs its files only\n"
	    "                          every 2 minutes); 0 or none: release at once\n"
	    "                          (default 360000, 6 minutes)\n"
	    "  --max-message-bytes N   largest message payload; k/M suffixes (default: the\n"
	    "                          server's max_payload less 4 KiB); larger frames are\n"
	    "                          split into chunks\n"
	    "  --once                  ship what is durable now, wait until the stream has\n"
	    "                          acknowledged it all, and exit\n"
	    "  --status-interval SEC   print a status line to stderr every SEC seconds (state,\n"
	    "                          shipped and durable LSN, lag, rates, retries,\n"
	    "                          reconnects, acknowledgement latency); on a terminal\n"
	    "                          without it, one status line rewritten every second\n"
	    "  --json                  print the final statistics as one JSON object on stdout\n"
	    "  -h, --help              this help\n"
	    "  --version               print the version and exit\n"
	    "\n"
	    "Without --once it runs until SIGINT or SIGTERM, then stops cleanly: it waits (at\n"
	    "most the ack timeout) for what is in flight, advances the slot, and prints the\n"
	    "final statistics.  A lost server or a timeout is retried, not fatal.\n"
	    "\n"
	    "Exit status: 0 stopped cleanly (or --once done), 1 the shipper failed (no server,\n"
	    "the stream belongs to another log, ...), 2 usage.\n"
	    "\n"
	    "Examples:\n"
	    "  " TOOL " --stream orders /var/lib/orders/wal\n"
	    "  " TOOL " --servers nats://n1:4222,nats://n2:4222 --stream orders --replicas 3 \\\n"
	    "      --status-interval 10 /var/lib/orders/wal\n"
	    "  " TOOL " --stream orders --once --json /var/lib/orders/wal\n"
	    "  ringlog-restore --stream orders /srv/orders-copy     (and back again)\n");
}

/* A usage error: the message, a pointer to --help, exit 2. */
#define usage_error(...) nats_cli_usage_error(TOOL, __VA_ARGS__)

/* An unsigned number in [min, max], with k/M/G suffixes (powers of 1024) if `sizes`. */
static uint64_t parse_uint(const char *flag, const char *v, uint64_t min, uint64_t max, int sizes)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	int bad = errno || end == v || *v == '-' || *v == '+' || *v == ' ';
	if (!bad && sizes && *end) {
		int shift = *end == 'k' || *end == 'K' ? 10
			    : *end == 'M'	       ? 20
			    : *end == 'G'	       ? 30
						       : -1;
		if (shift < 0 || n > (UINT64_MAX >> shift))
			bad = 1;
		else
			n <<= shift, end++;
	}
	if (bad || *end != '\0')
		usage_error("%s takes a number, not '%s'", flag, v);
	if (n < min || n > max)
		usage_error("%s must be between %" PRIu64 " and %" PRIu64 ", not %s", flag, min,
			    max, v);
	return n;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The stop request: 0, or the first SIGINT/SIGTERM (tool_take_signals). */
static volatile int g_stop_signal;

static const char *state_name(uint32_t state)
{
	static const char *names[] = {"connecting",  "shipping", "caught-up",
				      "backing-off", "stopped",	 "failed"};
	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "unknown";
}

/* One status line on stderr; rates over the interval since *prev (updated). */
static void status_line(const struct ringlog_nats_stats *st, struct ringlog_nats_stats *prev,
			uint64_t *prev_ns, int live)
{
	uint64_t now = tool_now_ns();
	double dt = (double)(now - *prev_ns) / 1e9;
	if (dt <= 0)
		dt = 1e-9;
	char lag[32];
	fprintf(stderr,
		"%s" TOOL ": %s shipped %" PRIu64 " durable %" PRIu64 " lag %" PRIu64
		     " LSNs %.0f ms %s in flight | %.0f msgs/s %.2f MB/s | retries %" PRIu64
		     " reconnects %" PRIu64 " | ack p50 %.2f p99 %.2f ms%s",
		live ? "\r" : "", state_name(st->state), st->shipped_lsn, st->durable_lsn, st->lag_lsns,
		(double)st->lag_ns / 1e6, tool_human_bytes(st->lag_bytes, lag),
		(double)(st->messages - prev->messages) / dt,
		(double)(st->bytes - prev->bytes) / dt / 1e6, st->retries, st->reconnects,
		(double)st->ack_p50_ns / 1e6, (double)st->ack_p99_ns / 1e6,
		live ? "\033[K" : "\n");
	*prev = *st;
	*prev_ns = now;
}

/* What a failure means here, where ringlog_strerror speaks of the core library. */
static const char *describe(int err)
{
	switch (err) {
	case -ENOENT:
		return "no log that a writer has opened";
	case -EEXIST:
		return "the stream belongs to another log";
	case -EBADMSG:
		return "the stream does not hold this log whole and in order";
	case -ESTALE:
		return "the log is not the one the stream copies";
	case -ETIMEDOUT:
		return "timed out: no server answered";
	}
	return ringlog_strerror(err);
}

/* Something a person can act on, after the error and the library's detail. */
static void hint(int err, const char *servers, const char *dir, const char *detail)
{
	switch (err) {
	case -ECONNREFUSED:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ECONNRESET:
		if (strstr(detail, "nats-server running")) /* the library asked already */
			fprintf(stderr,
				"  Start it with JetStream enabled (nats-server -js), or give "
				"its URL with --servers.\n");
		else
			fprintf(
			    stderr,
			    "  is nats-server running at %s, with JetStream enabled (nats-server "
			    "-js)?\n  Give its URL with --servers.\n",
			    servers);
		break;
	case -EEXIST:
		fprintf(stderr, "  Ship this log to another --stream, or remove that stream if "
				"nothing needs it.\n");
		break;
	case -ENOENT:
		fprintf(stderr,
			"  " TOOL " ships what a writer published as durable: open the log in %s\n"
			"  with ringlog_open() first.\n",
			dir);
		break;
	case -EBADMSG:
		fprintf(stderr, "  Give each log a stream of its own, and one shipper.\n");
		break;
	case -ESTALE:
		fprintf(stderr, "  Was it restored from an older copy and written again?  Ship it "
				"to a new --stream.\n");
		break;
	case -ENOSPC:
		fprintf(stderr, "  The server's JetStream storage is full (max_file_store).\n");
		break;
	}
}

struct run {
	const char *dir, *servers, *stream, *slot;
	uint32_t slot_hold_ms;
	int json;
};

static void print_final(const struct run *r, const struct ringlog_nats_stats *st,
			const char *outcome, int err, const char *detail, int have_slot,
			uint64_t slot_lsn)
{
	uint64_t now = tool_now_ns();
	double secs =
	    st->started_ns && now > st->started_ns ? (double)(now - st->started_ns) / 1e9 : 0;
	double mps = secs > 0 ? (double)st->messages / secs : 0;
	double mbps = secs > 0 ? (double)st->bytes / secs / 1e6 : 0;
	if (r->json) {
		printf("{\"state\":\"%s\",\"error\":%d,\"error_name\":", outcome, err);
		tool_json_str(err ? (strerrorname_np(-err) ? strerrorname_np(-err) : "?") : "");
		printf(",\"error_detail\":");
		tool_json_str(detail);
		printf(",\"dir\":");
		tool_json_str(r->dir);
		printf(",\"servers\":");
		tool_json_str(r->servers);
		printf(",\"stream\":");
		tool_json_str(r->stream);
		printf(",\"slot\":");
		tool_json_str(r->slot);
		printf(",\"slot_lsn\":");
		if (have_slot)
			printf("%" PRIu64, slot_lsn);
		else
			printf("null");
		printf(",\"slot_hold_ms\":");
		if (r->slot_hold_ms == RINGLOG_NATS_SLOT_HOLD_NONE)
			printf("null");
		else
			printf("%" PRIu32, r->slot_hold_ms);
		if (st->log_id)
			printf(",\"log_id\":\"%016" PRIx64 "\"", st->log_id);
		else
			printf(",\"log_id\":null");
		printf(",\"shipped_lsn\":%" PRIu64 ",\"durable_lsn\":%" PRIu64
		       ",\"lag_lsns\":%" PRIu64 ",\"lag_bytes\":%" PRIu64
		       ",\"lag_ms\":%.3f,\"messages\":%" PRIu64 ",\"records\":%" PRIu64
		       ",\"bytes\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"duplicates\":%" PRIu64
		       ",\"timeouts\":%" PRIu64 ",\"reconnects\":%" PRIu64
		       ",\"stream_seq\":%" PRIu64
		       ",\"elapsed_s\":%.3f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f"
		       ",\"ack_p50_ms\":%.3f,\"ack_p90_ms\":%.3f,\"ack_p99_ms\":%.3f"
		       ",\"ack_p999_ms\":%.3f,\"ack_max_ms\":%.3f}\n",
		       st->shipped_lsn, st->durable_lsn, st->lag_lsns, st->lag_bytes,
		       (double)st->lag_ns / 1e6, st->messages, st->records, st->bytes, st->retries,
		       st->duplicates, st->timeouts, st->reconnects, st->stream_seq, secs, mps,
		       mbps, (double)st->ack_p50_ns / 1e6, (double)st->ack_p90_ns / 1e6,
		       (double)st->ack_p99_ns / 1e6, (double)st->ack_p999_ns / 1e6,
		       (double)st->ack_max_ns / 1e6);
		return;
	}
	char b[32], slot_text[96] = "";
	if (have_slot && r->slot_hold_ms == RINGLOG_NATS_SLOT_HOLD_NONE)
		snprintf(slot_text, sizeof(slot_text), "; slot %s at LSN %" PRIu64, r->slot,
			 slot_lsn);
	else if (have_slot)
		snprintf(slot_text, sizeof(slot_text), "; slot %s at LSN %" PRIu64 " (held %.0f s)",
			 r->slot, slot_lsn, r->slot_hold_ms / 1e3);
	printf(TOOL ": %s; log %016" PRIx64 " in stream %s through LSN %" PRIu64 "\n", outcome,
	       st->log_id, r->stream, st->shipped_lsn);
	printf("  durable LSN %" PRIu64 " (%" PRIu64 " behind)%s\n", st->durable_lsn, st->lag_lsns,
	       slot_text);
	printf("  this run: %" PRIu64 " messages (%" PRIu64 " duplicates), %" PRIu64
	       " records, %s in %.2f s\n",
	       st->messages, st->duplicates, st->records, tool_human_bytes(st->bytes, b), secs);
	printf("  %.0f msgs/s, %.2f MB/s; retries %" PRIu64 ", timeouts %" PRIu64
	       ", reconnects %" PRIu64 "\n",
	       mps, mbps, st->retries, st->timeouts, st->reconnects);
	printf("  ack latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
	       (double)st->ack_p50_ns / 1e6, (double)st->ack_p90_ns / 1e6,
	       (double)st->ack_p99_ns / 1e6, (double)st->ack_max_ns / 1e6);
}

int main(int argc, char **argv)
{
	enum {
		O_SERVERS = 256,
		O_STREAM,
		O_REPLICAS,
		O_MAX_PENDING,
		O_ACK_TIMEOUT,
		O_MAX_BACKOFF,
		O_SLOT,
		O_SLOT_HOLD,
		O_MAX_MESSAGE_BYTES,
		O_ONCE,
		O_STATUS_INTERVAL,
		O_JSON,
		O_VERSION,
	};
	static const struct option lo[] = {
	    {"servers", 1, 0, O_SERVERS},
	    {"server", 1, 0, O_SERVERS},
	    {"stream", 1, 0, O_STREAM},
	    {"replicas", 1, 0, O_REPLICAS},
	    {"max-pending", 1, 0, O_MAX_PENDING},
	    {"ack-timeout", 1, 0, O_ACK_TIMEOUT},
	    {"max-backoff", 1, 0, O_MAX_BACKOFF},
	    {"slot", 1, 0, O_SLOT},
	    {"slot-hold", 1, 0, O_SLOT_HOLD},
	    {"max-message-bytes", 1, 0, O_MAX_MESSAGE_BYTES},
	    {"once", 0, 0, O_ONCE},
	    {"status-interval", 1, 0, O_STATUS_INTERVAL},
	    {"json", 0, 0, O_JSON},
	    {"help", 0, 0, 'h'},
	    {"version", 0, 0, O_VERSION},
	    {0, 0, 0, 0},
	};
	struct ringlog_nats_options o;
	ringlog_nats_options_init(&o);
	double interval_s = 0;
	int json = 0, c;
	opterr = 0; /* our own messages */
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case O_SERVERS:
			o.servers = nats_cli_servers(TOOL, optarg);
			break;
		case O_STREAM:
			o.stream = nats_cli_stream(TOOL, optarg);
			break;
		case O_REPLICAS:
			o.replicas = (uint32_t)parse_uint("--replicas", optarg, 1, 5, 0);
			break;
		case O_MAX_PENDING:
			o.max_pending = (uint32_t)parse_uint("--max-pending", optarg, 1, 65536, 0);
			break;
		case O_ACK_TIMEOUT:
			o.ack_timeout_ms =
			    (uint32_t)parse_uint("--ack-timeout", optarg, 1, 3600000, 0);
			break;
		case O_MAX_BACKOFF:
			o.max_backoff_ms =
			    (uint32_t)parse_uint("--max-backoff", optarg, 1, 3600000, 0);
			break;
		case O_SLOT:
			if (!tool_name_ok(optarg, "-_.", 64) || !strcmp(optarg, ".") ||
			    !strcmp(optarg, ".."))
				usage_error("--slot: '%s' is not a slot name (1 to 64 of letters, "
					    "digits, '_', '-' and '.')",
					    optarg);
			o.slot = optarg;
			break;
		case O_SLOT_HOLD:
			/* 0 is "none" here (in the options, 0 asks for the default). */
			if (!strcmp(optarg, "none"))
				o.slot_hold_ms = RINGLOG_NATS_SLOT_HOLD_NONE;
			else
				o.slot_hold_ms = (uint32_t)parse_uint(
				    "--slot-hold", optarg, 0, RINGLOG_NATS_SLOT_HOLD_NONE - 1, 0);
			if (!o.slot_hold_ms)
				o.slot_hold_ms = RINGLOG_NATS_SLOT_HOLD_NONE;
			break;
		case O_MAX_MESSAGE_BYTES:
			o.max_message_bytes =
			    (uint32_t)parse_uint("--max-message-bytes", optarg, 64, UINT32_MAX, 1);
			break;
		case O_ONCE:
			o.once = 1;
			break;
		case O_STATUS_INTERVAL: {
			char *end;
			errno = 0;
			interval_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(interval_s > 0) ||
			    interval_s > 86400)
				usage_error("--status-interval takes seconds above 0 (e.g. 10 or "
					    "0.5), not '%s'",
					    optarg);
			break;
		}
		case O_JSON:
			json = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case O_VERSION:
			nats_cli_version(TOOL);
			return EXIT_OK;
		default:
			nats_cli_bad_option(TOOL, c, argv, optind);
		}
	}
	const char *dir = nats_cli_dir(TOOL, o.stream, "to ship into", argc, argv, optind);
	char default_slot[80];
	if (!o.slot) {
		snprintf(default_slot, sizeof(default_slot), "nats-%s", o.stream);
		if (strlen(o.stream) > 59)
			usage_error("the stream name is too long for the default slot name "
				    "nats-STREAM (64 characters at most): give --slot");
	}
	struct run r = {
	    .dir = dir,
	    .servers = o.servers ? o.servers : RINGLOG_NATS_DEFAULT_SERVERS,
	    .stream = o.stream,
	    .slot = o.slot ? o.slot : default_slot,
	    .slot_hold_ms = o.slot_hold_ms,
	    .json = json,
	};

	tool_take_signals(&g_stop_signal, NULL,
			  TOOL ": second signal: exiting at once (a later run resumes from "
			       "the stream)\n");
	struct ringlog_nats_shipper *s;
	int err = ringlog_nats_shipper_start_dir(r.dir, &o, &s);
	if (err) {
		fprintf(stderr, TOOL ": cannot ship %s to stream %s at %s: %s\n  %s\n", r.dir,
			r.stream, r.servers, describe(err), ringlog_last_error());
		hint(err, r.servers, r.dir, ringlog_last_error());
		if (json) {
			struct ringlog_nats_stats none = {0};
			none.state = RINGLOG_NATS_FAILED;
			none.error = err;
			print_final(&r, &none, "failed", err, ringlog_last_error(), 0, 0);
		}
		return err == -EINVAL ? EXIT_USAGE : EXIT_FAILED;
	}
	struct ringlog_nats_stats st, prev;
	ringlog_nats_shipper_stats(s, &st);
	fprintf(stderr, TOOL ": shipping %s (log %016" PRIx64 ") to stream %s at %s%s\n", r.dir,
		st.log_id, r.stream, r.servers,
		o.once ? ", what is durable now" : ", until SIGINT or SIGTERM");

	/* Poll in short steps: a stop request, a failure (or --once done), a status line. */
	const uint64_t step = 50000000ull;
	/* On a terminal, without --status-interval: one line, rewritten every second. */
	int live = interval_s == 0 && isatty(STDERR_FILENO), live_shown = 0;
	if (live)
		interval_s = 1;
	uint64_t interval = (uint64_t)(interval_s * 1e9), last = tool_now_ns();
	prev = st;
	int failed = 0, done = 0;
	while (!__atomic_load_n(&g_stop_signal, __ATOMIC_ACQUIRE)) {
		if (o.once) {
			err = ringlog_nats_shipper_wait(s, (int64_t)step);
			if (err != -ETIMEDOUT) {
				done = 1;
				failed = err != 0;
			}
		} else {
			sleep_ns(step);
		}
		ringlog_nats_shipper_stats(s, &st);
		if (st.state == RINGLOG_NATS_FAILED) {
			failed = 1;
			err = st.error ? st.error : err;
		}
		if (interval && tool_now_ns() - last >= interval && !done && !failed) {
			status_line(&st, &prev, &last, live);
			live_shown = live;
		}
		if (done || failed)
			break;
	}
	if (live_shown)
		fputc('\n', stderr);
	int sig = __atomic_load_n(&g_stop_signal, __ATOMIC_ACQUIRE);
	if (sig && !done && !failed)
		fprintf(stderr, TOOL ": %s: stopping (waiting for what is in flight)\n",
			sig == SIGINT ? "SIGINT" : "SIGTERM");

	/* The detail lives in the shipper: copy it before ringlog_nats_shipper_stop frees
	 * it. */
	char detail[1024];
	ringlog_nats_shipper_stats(s, &st);
	snprintf(detail, sizeof(detail), "%s", ringlog_nats_shipper_error(s));
	int stop_err = ringlog_nats_shipper_stop(s);
	if (stop_err && !failed) {
		failed = 1;
		err = stop_err;
		if (!detail[0])
			snprintf(detail, sizeof(detail), "%s", ringlog_last_error());
	}
	if (failed && !err)
		err = stop_err ? stop_err : -EIO;

	/* The stop advanced the slot to what the stream acknowledged last: the most exact
	 * statement of where this log stands in the stream. */
	struct ringlog_slot *slot = NULL;
	int have_slot = ringlog_slot_open(r.dir, r.slot, 0, 0, &slot) == 0;
	uint64_t slot_lsn = have_slot ? ringlog_slot_lsn(slot) : 0;
	ringlog_slot_close(slot);
	/* And the log's durable LSN as its writer published it (the shipper's own view
	 * may be older). */
	uint64_t published, published_id;
	if (ringlog_published_durable(r.dir, &published, &published_id) == 0 &&
	    published_id == st.log_id && published > st.durable_lsn)
		st.durable_lsn = published;
	if (have_slot && slot_lsn > st.shipped_lsn && slot_lsn <= st.durable_lsn)
		st.shipped_lsn = slot_lsn;
	/* The lag as it stands after the stop, by its definition. */
	st.lag_lsns = st.durable_lsn > st.shipped_lsn ? st.durable_lsn - st.shipped_lsn : 0;
	if (!st.lag_lsns)
		st.lag_bytes = st.lag_ns = 0;

	if (failed) {
		fprintf(stderr, TOOL ": shipping %s to stream %s failed: %s\n  %s\n", r.dir,
			r.stream, describe(err), detail[0] ? detail : "(no detail)");
		hint(err, r.servers, r.dir, detail);
	}
	print_final(&r, &st,
		    failed ? "failed"
		    : sig  ? "stopped"
			   : "done",
		    failed ? err : 0, failed ? detail : "", have_slot, slot_lsn);
	fflush(stdout);
	return failed ? EXIT_FAILED : EXIT_OK;
}
