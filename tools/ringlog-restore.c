/*
 * ringlog-restore: rebuild a ringlog log from the NATS JetStream stream ringlog-ship
 * wrote, with ringlog_nats_restore (include/ringlog_nats.h); or follow the stream, as a
 * standby, until SIGINT/SIGTERM.
 *
 *   ringlog-restore --stream NAME DIR                 restore everything, then exit
 *   ringlog-restore --stream NAME --until-lsn N DIR   point in time (whole batches)
 *   ringlog-restore --stream NAME --follow DIR        keep applying new messages
 *
 * With --follow, as in ringlog-ship, SIGINT and SIGTERM are blocked in every thread and
 * taken by one thread with sigwait: the first sets the restore's stop flag, a second one
 * kills the process as the signal would (what is durable stays; a later run continues
 * from it).  Without --follow they keep their default action.
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

#define TOOL "ringlog-restore"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " TOOL " [options] --stream NAME DIR\n"
	    "Rebuild the ringlog log in DIR from the NATS JetStream stream NAME that\n"
	    "ringlog-ship wrote: the same log id, LSNs, batches and bytes, every frame's\n"
	    "checksum checked and every LSN following on from the one before.  DIR missing\n"
	    "or empty: a new copy of the log.  DIR holding this log already (an earlier\n"
	    "restore, a standby): continued from its next LSN.\n"
	    "\n"
	    "  --stream NAME      the stream (required)\n"
	    "  --servers URLS     comma-separated NATS URLs (default " RINGLOG_NATS_DEFAULT_SERVERS
	    ")\n"
	    "  --server URLS      the same\n"
	    "  --until-lsn N      point in time: restore only whole batches whose last LSN is\n"
	    "                     at or below N (a batch is never split)\n"
	    "  --follow           after the end of the stream, keep applying new messages\n"
	    "                     until SIGINT or SIGTERM (a standby)\n"
	    "  --json             print what was restored as one JSON object on stdout\n"
	    "  -h, --help         this help\n"
	    "  --version          print the version and exit\n"
	    "\n"
	    "Everything restored is durable when it exits.  No writer may have DIR open while\n"
	    "it runs.  Afterwards, ringlog_open() on DIR continues the log (same id, next\n"
	    "LSN), and ringlog-ship can ship it on to the same stream.\n"
	    "\n"
	    "Exit status: 0 restored (or --follow stopped by a signal), 1 failed (no server,\n"
	    "no such stream, DIR holds another log, a gap in the stream, ...), 2 usage.\n"
	    "\n"
	    "Examples:\n"
	    "  " TOOL " --stream orders /srv/orders-copy\n"
	    "  " TOOL " --servers nats://n1:4222,nats://n2:4222 --stream orders \\\n"
	    "      --until-lsn 1200000 /srv/orders-before-the-bad-deploy\n"
	    "  " TOOL " --stream orders --follow /srv/orders-standby    (^C to stop)\n");
}

#define usage_error(...) nats_cli_usage_error(TOOL, __VA_ARGS__)

static uint64_t parse_lsn(const char *flag, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || *v == '+' || *v == ' ' || n == 0)
		usage_error("%s takes an LSN (1 or more), not '%s'", flag, v);
	return n;
}

/* The restore's stop flag (an int, as the API takes it), set by the signal thread with
 * an atomic store: the restore reads it in another thread. */
static volatile int g_stop;

/* What a failure means here, where ringlog_strerror speaks of the core library. */
static const char *describe(int err)
{
	switch (err) {
	case -ENOENT:
		return "no such stream";
	case -EEXIST:
		return "the directory holds another log";
	case -ESTALE:
		return "the directory does not follow on from the stream";
	case -EBADMSG:
		return "the stream does not hold the log whole and in order";
	case -ETIMEDOUT:
		return "timed out: no server answered";
	}
	return ringlog_strerror(err);
}

/* Something a person can act on, after the error and the library's detail. */
static void hint(int err, const char *servers, const char *stream, const char *dir,
		 const char *detail)
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
	case -ENOENT:
		fprintf(
		    stderr,
		    "  ringlog-ship --stream %s creates the stream as it ships a log; --servers\n"
		    "  names the servers that hold it.\n",
		    stream);
		break;
	case -EEXIST:
	case -ESTALE:
		fprintf(stderr, "  Restore into a new or empty directory.\n");
		break;
	case -EBADMSG:
		fprintf(stderr,
			"  What came before that message is in %s, durable; --until-lsn stops\n"
			"  before it.\n",
			dir);
		break;
	case -EBUSY:
		fprintf(stderr, "  A writer has %s open: stop it first.\n", dir);
		break;
	}
}

int main(int argc, char **argv)
{
	enum { O_SERVERS = 256, O_STREAM, O_UNTIL_LSN, O_FOLLOW, O_JSON, O_VERSION };
	static const struct option lo[] = {
	    {"servers", 1, 0, O_SERVERS},     {"server", 1, 0, O_SERVERS},
	    {"stream", 1, 0, O_STREAM},
	    {"until-lsn", 1, 0, O_UNTIL_LSN}, {"follow", 0, 0, O_FOLLOW},
	    {"json", 0, 0, O_JSON},	      {"help", 0, 0, 'h'},
	    {"version", 0, 0, O_VERSION},     {0, 0, 0, 0},
	};
	struct ringlog_nats_options o;
	ringlog_nats_options_init(&o);
	uint64_t until = 0;
	int follow = 0, json = 0, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case O_SERVERS:
			o.servers = nats_cli_servers(TOOL, optarg);
			break;
		case O_STREAM:
			o.stream = nats_cli_stream(TOOL, optarg);
			break;
		case O_UNTIL_LSN:
			until = parse_lsn("--until-lsn", optarg);
			break;
		case O_FOLLOW:
			follow = 1;
			break;
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
	const char *dir = nats_cli_dir(TOOL, o.stream, "to restore from", argc, argv, optind);
	const char *servers = o.servers ? o.servers : RINGLOG_NATS_DEFAULT_SERVERS;

	/* Only a follower is stopped through the flag; a restore without --follow ends at
	 * the stream's end, and a signal ends it at once, as the crash of a writer: what
	 * is durable stays, and the next run continues from there. */
	if (follow)
		tool_take_signals(&g_stop, TOOL ": stopping\n",
				  TOOL ": second signal: exiting at once (what is durable "
				       "stays; a later run continues from it)\n");
	fprintf(stderr, TOOL ": %s stream %s at %s into %s%s\n", follow ? "following" : "restoring",
		o.stream, servers, dir, follow ? " until SIGINT or SIGTERM" : "");
	struct ringlog_nats_restore_stats st;
	memset(&st, 0, sizeof(st));
	uint64_t t0 = tool_now_ns();
	int err = ringlog_nats_restore(dir, &o, until, follow, &g_stop, &st);
	double secs = (double)(tool_now_ns() - t0) / 1e9;
	char detail[1024];
	snprintf(detail, sizeof(detail), "%s", err ? ringlog_last_error() : "");
	int stopped = __atomic_load_n(&g_stop, __ATOMIC_ACQUIRE) != 0;
	/* What DIR holds now (this run may have restored nothing new): the durable LSN
	 * the restore's writer published as it closed the log. */
	uint64_t holds = st.last_lsn, log_id = st.log_id, published, published_id;
	if (!err && ringlog_published_durable(dir, &published, &published_id) == 0 &&
	    (!log_id || published_id == log_id)) {
		log_id = published_id;
		if (published > holds)
			holds = published;
	}

	if (err) {
		fprintf(stderr, TOOL ": restoring %s from stream %s at %s failed: %s\n  %s\n", dir,
			o.stream, servers, describe(err), detail[0] ? detail : "(no detail)");
		hint(err, servers, o.stream, dir, detail);
	}
	if (json) {
		printf("{\"state\":\"%s\",\"error\":%d,\"error_name\":",
		       err	 ? "failed"
		       : stopped ? "stopped"
				 : "done",
		       err);
		tool_json_str(err ? (strerrorname_np(-err) ? strerrorname_np(-err) : "?") : "");
		printf(",\"error_detail\":");
		tool_json_str(detail);
		printf(",\"dir\":");
		tool_json_str(dir);
		printf(",\"servers\":");
		tool_json_str(servers);
		printf(",\"stream\":");
		tool_json_str(o.stream);
		printf(",\"follow\":%s,\"until_lsn\":", follow ? "true" : "false");
		if (until)
			printf("%" PRIu64, until);
		else
			printf("null");
		if (log_id)
			printf(",\"log_id\":\"%016" PRIx64 "\"", log_id);
		else
			printf(",\"log_id\":null");
		printf(",\"holds_lsn\":%" PRIu64, holds);
		printf(",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64 ",\"messages\":%" PRIu64
		       ",\"frames\":%" PRIu64 ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"elapsed_s\":%.3f}\n",
		       st.first_lsn, st.last_lsn, st.messages, st.frames, st.records, st.bytes,
		       secs);
		return err ? EXIT_FAILED : EXIT_OK;
	}
	if (err) {
		if (st.messages)
			printf(TOOL ": before failing, restored %" PRIu64
				    " messages into %s: LSNs %" PRIu64 "..%" PRIu64
				    " are there, durable\n",
			       st.messages, dir, st.first_lsn, st.last_lsn);
		return EXIT_FAILED;
	}
	char b[32];
	if (follow)
		printf(TOOL ": stopped; %s is a standby of log %016" PRIx64
			    " from stream %s up to LSN %" PRIu64 "\n",
		       dir, log_id, o.stream, holds);
	else if (st.records == 0 && holds == 0)
		printf(TOOL ": stream %s holds no records%s: %s is an empty copy of log %016" PRIx64
			    "\n",
		       o.stream, until ? " at or below --until-lsn" : "", dir, log_id);
	else if (st.records == 0)
		printf(TOOL ": nothing new: %s already holds log %016" PRIx64 " up to LSN %" PRIu64
			    ", %s\n",
		       dir, log_id, holds,
		       until ? "as far as --until-lsn goes" : "the stream's end");
	else
		printf(TOOL ": restored LSNs %" PRIu64 "..%" PRIu64 " of log %016" PRIx64
			    " from stream %s into %s\n",
		       st.first_lsn, st.last_lsn, log_id, o.stream, dir);
	printf("  this run: %" PRIu64 " messages, %" PRIu64 " frames, %" PRIu64
	       " records, %s in %.2f s\n",
	       st.messages, st.frames, st.records, tool_human_bytes(st.bytes, b), secs);
	if (until)
		printf("  point in time: %s ends at LSN %" PRIu64
		       ", the last whole batch at or below %" PRIu64 "\n",
		       dir, holds, until);
	if (follow)
		printf("  next: run " TOOL " --follow again to keep following; or, to take over,\n"
		       "        open %s with ringlog_open() and ship it on:\n"
		       "        ringlog-ship --stream %s %s\n",
		       dir, o.stream, dir);
	else
		printf("  next: open %s with ringlog_open() to continue the log;\n"
		       "        ringlog-ship --stream %s %s ships it on to the same stream\n",
		       dir, o.stream, dir);
	return EXIT_OK;
}
