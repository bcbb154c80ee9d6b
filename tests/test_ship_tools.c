/*
 * tools/ringlog-ship and tools/ringlog-restore (and ringlog-dump --slots), run as a new
 * user would, against a real 3-node nats-server cluster (tests/natscluster.h):
 *  - --help names every option, --version works, usage errors exit 2 with a message;
 *  - ship --once (twice, then again after more appends) and restore give a log
 *    identical to the original, record for record, that ringlog_open continues;
 *  - ringlog-ship in the background while a writer appends, with status lines; SIGTERM
 *    stops it with exit 0 and its final statistics;
 *  - --json prints one JSON object with the documented keys (ship and restore);
 *  - ringlog-restore --follow applies what is shipped later and stops on SIGTERM,
 *    leaving a standby that ringlog_open accepts;
 *  - no server: exit 1 with a message naming the URL.
 * Every wait is bounded (WAIT_MS); no timing is asserted.
 *
 * Skips (77) without io_uring or nats-server; RINGLOG_REQUIRE_NATS makes the latter a
 * failure.
 */
#include "testutil.h"

#include "natscluster.h"

#include <nats/nats.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The longest any one wait here lasts before the test fails. */
#define WAIT_MS 60000

static char g_ship[PATH_MAX + 32], g_restore[PATH_MAX + 32], g_dump[PATH_MAX + 32];
static struct tu_nats *g_nats;
static natsConnection *g_nc;
static jsCtx *g_js;

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- running the tools ---- */

/* Start `argv` (argv[0] a path) with stdout and stderr into files; SIGINT and SIGTERM
 * unblocked and at their default action, whatever this process has. */
static pid_t spawn(char *const argv[], const char *out, const char *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawnattr_init(&at);
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0)
		fail_msg("cannot run %s: %s", argv[0], strerror(rc));
	return pid;
}

/* Wait at most WAIT_MS for `pid` to exit; its exit status.  A process killed by a
 * signal, or still running then (SIGKILLed), fails the test. */
static int wait_exit(pid_t pid, const char *what)
{
	long deadline = now_ms() + WAIT_MS;
	int status;
	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			break;
		assert_int_equal(got, 0);
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s did not exit within %d ms", what, WAIT_MS);
		}
		sleep_ms(10);
	}
	if (!WIFEXITED(status))
		fail_msg("%s was killed by signal %d", what, WTERMSIG(status));
	return WEXITSTATUS(status);
}

static char *slurp_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = '\0';
	fclose(f);
	return buf;
}

/* The output of one run, kept in the test's directory. */
struct result {
	int status;
	char *out, *err;
};

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
}

/* Run a tool to its end (bounded): `tool` then the NULL-terminated arguments. */
static struct result run_v(const char *dir, const char *tool, const char *const *args)
{
	char *argv[64];
	int n = 0;
	argv[n++] = (char *)tool;
	while (*args && n < 63)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	char out[4200], err[4200];
	snprintf(out, sizeof(out), "%s/out.txt", dir);
	snprintf(err, sizeof(err), "%s/err.txt", dir);
	pid_t pid = spawn(argv, out, err);
	struct result r;
	r.status = wait_exit(pid, tool);
	r.out = slurp_text(out);
	r.err = slurp_text(err);
	/* On a failed assertion, cmocka prints this test's output first. */
	print_message("$ %s ... -> exit %d\n--- stdout\n%s--- stderr\n%s---\n",
		      strrchr(tool, '/') + 1, r.status, r.out, r.err);
	return r;
}

#define RUN(dir, tool, ...) run_v(dir, tool, (const char *const[]){__VA_ARGS__, NULL})

/* ---- logs ---- */

static char *subdir(const char *dir, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

/* Append `batches` batches of 1..4 records (various sizes) to the log in `dir` (made if
 * missing), durably, then close it.  Returns the last LSN. */
static uint64_t append_batches(const char *dir, uint64_t tag, unsigned batches)
{
	struct ringlog_options o;
	tu_options(&o, 64 * 1024, 1u << 20);
	struct ringlog *log = tu_open(dir, &o);
	uint64_t last = 0;
	for (unsigned b = 0; b < batches; b++) {
		unsigned n = 1 + (unsigned)((tag + b) % 4);
		uint64_t first =
		    tu_append_tagged(log, tag + b, n, 60 + (unsigned)((tag + b) * 37 % 900));
		last = first + n - 1;
	}
	assert_int_equal(ringlog_wait(log, last), 0);
	assert_int_equal(ringlog_close(log), 0);
	return last;
}

/* The two logs hold the same records: LSNs, batches, lengths, bytes. */
static uint64_t assert_same_log(const char *a, const char *b)
{
	struct ringlog_reader *ra, *rb;
	assert_int_equal(ringlog_reader_open(a, 1, &ra), 0);
	assert_int_equal(ringlog_reader_open(b, 1, &rb), 0);
	struct ringlog_record x, y;
	uint64_t n = 0;
	for (;;) {
		int ea = ringlog_reader_next(ra, &x), eb = ringlog_reader_next(rb, &y);
		assert_int_equal(ea, eb);
		if (ea != 1)
			break;
		assert_int_equal(x.lsn, y.lsn);
		assert_int_equal(x.batch_first_lsn, y.batch_first_lsn);
		assert_int_equal(x.len, y.len);
		assert_memory_equal(x.data, y.data, x.len);
		assert_true(tu_record_ok(y.data, y.len));
		n++;
	}
	ringlog_reader_close(ra);
	ringlog_reader_close(rb);
	return n;
}

static uint64_t log_id_of(const char *dir)
{
	uint64_t durable, id;
	assert_int_equal(ringlog_published_durable(dir, &durable, &id), 0);
	return id;
}

/* The restored copy in `dir` is a log ringlog_open continues: the same id, the next
 * LSN after `last`. */
static void assert_continues(const char *dir, uint64_t log_id, uint64_t last)
{
	struct ringlog_options o;
	tu_options(&o, 64 * 1024, 1u << 20);
	o.create_if_missing = 0;
	struct ringlog *log = tu_open(dir, &o);
	assert_int_equal(ringlog_log_id(log), log_id);
	assert_int_equal(ringlog_next_lsn(log), last + 1);
	uint64_t lsn = tu_append_tagged(log, 999, 2, 100);
	assert_int_equal(lsn, last + 1);
	assert_int_equal(ringlog_wait(log, lsn + 1), 0);
	assert_int_equal(ringlog_close(log), 0);
}

/* ---- the stream, seen through libnats ---- */

/* The last LSN in `stream` (its last message's Ringlog-Last-Lsn header); 0 if empty or
 * missing.  Asks for the stream's state first and reads a message only from a stream
 * that holds one: nats-server 2.9.10 can crash (a nil store in jsMsgGetRequest) on a
 * message request that races the stream's creation. */
static uint64_t stream_last_lsn(const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	if (js_GetStreamInfo(&si, g_js, stream, NULL, &jerr) != NATS_OK)
		return 0;
	uint64_t seq = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	natsMsg *m = NULL;
	if (seq == 0 || js_GetMsg(&m, g_js, stream, seq, NULL, &jerr) != NATS_OK)
		return 0;
	const char *v = NULL;
	uint64_t lsn = 0;
	if (natsMsgHeader_Get(m, "Ringlog-Last-Lsn", &v) == NATS_OK && v)
		lsn = strtoull(v, NULL, 10);
	natsMsg_Destroy(m);
	return lsn;
}

static void wait_stream_at(const char *stream, uint64_t lsn)
{
	long deadline = now_ms() + WAIT_MS;
	uint64_t at;
	while ((at = stream_last_lsn(stream)) < lsn) {
		if (now_ms() > deadline)
			fail_msg("stream %s at LSN %llu after %d ms, not %llu", stream,
				 (unsigned long long)at, WAIT_MS, (unsigned long long)lsn);
		sleep_ms(20);
	}
	assert_int_equal(at, lsn);
}

/* Wait until the file at `path` contains `text` (bounded). */
static void wait_file_has(const char *path, const char *text)
{
	long deadline = now_ms() + WAIT_MS;
	for (;;) {
		char *s = slurp_text(path);
		int found = strstr(s, text) != NULL;
		free(s);
		if (found)
			return;
		if (now_ms() > deadline)
			fail_msg("%s has no '%s' after %d ms", path, text, WAIT_MS);
		sleep_ms(20);
	}
}

/* ---- a small JSON checker: one value, its top-level members ---- */

static const char *j_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *j_value(const char *p, int depth);

static const char *j_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p && *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
						return NULL;
				p += 4;
			} else if (!*p || !strchr("\"\\/bfnrt", *p)) {
				return NULL;
			}
		}
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *j_number(const char *p)
{
	const char *s = p;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return NULL;
	if (*p == '.') {
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return p > s ? p : NULL;
}

static const char *j_value(const char *p, int depth)
{
	p = j_ws(p);
	if (depth > 32)
		return NULL;
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = j_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (!(p = j_string(j_ws(p))))
					return NULL;
				p = j_ws(p);
				if (*p++ != ':')
					return NULL;
			}
			if (!(p = j_value(p, depth + 1)))
				return NULL;
			p = j_ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	if (*p == '"')
		return j_string(p);
	if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
		return p + 4;
	if (!strncmp(p, "false", 5))
		return p + 5;
	return j_number(p);
}

/* `text` is exactly one JSON object (and white space). */
static void assert_one_object(const char *text)
{
	const char *p = j_ws(text);
	assert_true(*p == '{');
	const char *end = j_value(p, 0);
	if (!end)
		fail_msg("not valid JSON: %s", text);
	if (*j_ws(end) != '\0')
		fail_msg("more than one JSON value: %s", text);
}

/* The raw text of top-level member `key` of the object `text` (static buffer), or NULL. */
static const char *member(const char *text, const char *key)
{
	static char buf[1024];
	const char *p = j_ws(text);
	if (*p != '{')
		return NULL;
	p = j_ws(p + 1);
	while (*p == '"') {
		const char *k = p + 1, *kend = j_string(p);
		if (!kend)
			return NULL;
		p = j_ws(kend);
		p = j_ws(p + 1); /* ':' */
		const char *v = p, *vend = j_value(p, 1);
		if (!vend)
			return NULL;
		if ((size_t)(kend - 1 - k) == strlen(key) && !strncmp(k, key, strlen(key))) {
			snprintf(buf, sizeof(buf), "%.*s", (int)(vend - v), v);
			return buf;
		}
		p = j_ws(vend);
		if (*p == ',')
			p = j_ws(p + 1);
	}
	return NULL;
}

static uint64_t member_u64(const char *text, const char *key)
{
	const char *v = member(text, key);
	if (!v)
		fail_msg("no member %s in %s", key, text);
	return strtoull(v, NULL, 10);
}

/* ---- the tests ---- */

static void help_names_every_option(void **state)
{
	const char *dir = *state;
	static const char *ship_opts[] = {
	    "--servers URLS",
	    "--stream NAME",
	    "--replicas N",
	    "--max-pending N",
	    "--ack-timeout MS",
	    "--max-backoff MS",
	    "--slot NAME",
	    "--slot-hold MS",
	    "--max-message-bytes N",
	    "--once",
	    "--status-interval SEC",
	    "--json",
	    "--help",
	    "--version",
	    "Examples:",
	    "Exit status",
	};
	static const char *restore_opts[] = {
	    "--servers URLS", "--stream NAME", "--until-lsn N", "--follow",    "--json",
	    "--help",	      "--version",     "Examples:",	"Exit status",
	};
	struct result r = RUN(dir, g_ship, "--help");
	assert_int_equal(r.status, 0);
	for (size_t i = 0; i < sizeof(ship_opts) / sizeof(ship_opts[0]); i++)
		if (!strstr(r.out, ship_opts[i]))
			fail_msg("ringlog-ship --help does not mention %s", ship_opts[i]);
	result_free(&r);
	r = RUN(dir, g_ship, "-h");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--stream NAME"));
	result_free(&r);
	r = RUN(dir, g_restore, "--help");
	assert_int_equal(r.status, 0);
	for (size_t i = 0; i < sizeof(restore_opts) / sizeof(restore_opts[0]); i++)
		if (!strstr(r.out, restore_opts[i]))
			fail_msg("ringlog-restore --help does not mention %s", restore_opts[i]);
	result_free(&r);
	r = RUN(dir, g_ship, "--version");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "ringlog-ship"));
	assert_non_null(strstr(r.out, "ringlog 0."));
	result_free(&r);
	r = RUN(dir, g_restore, "--version");
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "ringlog-restore"));
	result_free(&r);
}

/* A usage error: exit 2, a message on stderr containing `want`, nothing on stdout. */
static void assert_usage_error(struct result r, const char *want)
{
	assert_int_equal(r.status, 2);
	if (!strstr(r.err, want))
		fail_msg("no '%s' in the message: %s", want, r.err);
	assert_non_null(strstr(r.err, "--help"));
	assert_string_equal(r.out, "");
	result_free(&r);
}

static void usage_errors_exit_2_with_a_message(void **state)
{
	const char *dir = *state;
	assert_usage_error(RUN(dir, g_ship, dir), "--stream NAME is required");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s"), "no log directory");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", dir, dir), "one log directory");
	assert_usage_error(RUN(dir, g_ship, "--bogus", "--stream", "s", dir), "--bogus");
	assert_usage_error(RUN(dir, g_ship, "--stream"), "--stream needs a value");
	assert_usage_error(RUN(dir, g_ship, "--stream", "no.dots", dir), "not a stream name");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--replicas", "7", dir),
			   "--replicas must be between 1 and 5");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--max-pending", "lots", dir),
			   "--max-pending takes a number");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--ack-timeout", "-5", dir),
			   "--ack-timeout takes a number");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--status-interval", "0", dir),
			   "--status-interval");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--slot", "a/b", dir),
			   "not a slot name");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--max-message-bytes", "1x", dir),
			   "--max-message-bytes");
	assert_usage_error(RUN(dir, g_ship, "--stream", "s", "--slot-hold", "forever", dir),
			   "--slot-hold takes a number");
	assert_usage_error(RUN(dir, g_restore, dir), "--stream NAME is required");
	assert_usage_error(RUN(dir, g_restore, "--stream", "s"), "no log directory");
	assert_usage_error(RUN(dir, g_restore, "--stream", "s", "--until-lsn", "x", dir),
			   "--until-lsn takes an LSN");
	assert_usage_error(RUN(dir, g_restore, "--stream", "s", "--until-lsn", "0", dir),
			   "--until-lsn takes an LSN");
	assert_usage_error(RUN(dir, g_restore, "--follow", "--oops", "--stream", "s", dir),
			   "--oops");
}

/* Ship --once, again with nothing new, again after more appends; restore; the copy is
 * the same log, record for record, and ringlog_open continues it. */
static void ship_once_then_restore_gives_an_identical_log(void **state)
{
	const char *dir = *state;
	char *a = subdir(dir, "a"), *b = subdir(dir, "b");
	const char *urls = tu_nats_urls(g_nats);
	uint64_t n1 = append_batches(a, 1, 300);
	struct result r = RUN(dir, g_ship, "--servers", urls, "--stream", "once", "--once", a);
	assert_int_equal(r.status, 0);
	char want[200];
	snprintf(want, sizeof(want), "through LSN %llu\n", (unsigned long long)n1);
	assert_non_null(strstr(r.out, "done;"));
	assert_non_null(strstr(r.out, want));
	assert_non_null(strstr(r.out, "slot nats-once"));
	result_free(&r);
	assert_int_equal(stream_last_lsn("once"), n1);

	/* Nothing new: nothing shipped again. */
	r = RUN(dir, g_ship, "--servers", urls, "--stream", "once", "--once", a);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, want));
	result_free(&r);

	uint64_t n2 = append_batches(a, 5000, 100);
	r = RUN(dir, g_ship, "--servers", urls, "--stream", "once", "--once", a);
	assert_int_equal(r.status, 0);
	snprintf(want, sizeof(want), "through LSN %llu\n", (unsigned long long)n2);
	assert_non_null(strstr(r.out, want));
	result_free(&r);

	r = RUN(dir, g_restore, "--servers", urls, "--stream", "once", b);
	assert_int_equal(r.status, 0);
	snprintf(want, sizeof(want), "restored LSNs 1..%llu of log %016llx from stream once",
		 (unsigned long long)n2, (unsigned long long)log_id_of(a));
	assert_non_null(strstr(r.out, want));
	assert_non_null(strstr(r.out, "ringlog_open()"));
	result_free(&r);

	assert_int_equal(assert_same_log(a, b), n2);
	uint64_t id = log_id_of(a);
	assert_int_equal(log_id_of(b), id);
	assert_continues(b, id, n2);
	free(a);
	free(b);
}

/* ringlog-ship in the background, a writer appending meanwhile: status lines on stderr;
 * SIGTERM stops it with exit 0 and the final statistics. */
static void background_ship_stops_cleanly_on_sigterm(void **state)
{
	const char *dir = *state;
	char *a = subdir(dir, "a");
	const char *urls = tu_nats_urls(g_nats);
	append_batches(a, 1, 50);
	struct ringlog_options o;
	tu_options(&o, 64 * 1024, 1u << 20);
	struct ringlog *log = tu_open(a, &o);

	char out[4200], err[4200];
	snprintf(out, sizeof(out), "%s/ship.out", dir);
	snprintf(err, sizeof(err), "%s/ship.err", dir);
	char *argv[] = {g_ship, "--servers",	     (char *)urls, "--stream", "bg", "--slot-hold",
			"none", "--status-interval", "0.2",	   a,	       NULL};
	pid_t pid = spawn(argv, out, err);

	uint64_t last = 0;
	for (unsigned b = 0; b < 400; b++) {
		uint64_t first = tu_append_tagged(log, 100 + b, 3, 200);
		last = first + 2;
		if (b % 20 == 0)
			assert_int_equal(ringlog_wait(log, last), 0);
	}
	assert_int_equal(ringlog_wait(log, last), 0);
	wait_stream_at("bg", last);
	wait_file_has(err, " shipped ");
	wait_file_has(err, "caught-up");

	assert_int_equal(kill(pid, SIGTERM), 0);
	int status = wait_exit(pid, "ringlog-ship");
	char *o_text = slurp_text(out), *e_text = slurp_text(err);
	print_message("--- stdout\n%s--- stderr\n%s---\n", o_text, e_text);
	assert_int_equal(status, 0);
	char want[200];
	snprintf(want, sizeof(want), "stopped; log %016llx in stream bg through LSN %llu\n",
		 (unsigned long long)ringlog_log_id(log), (unsigned long long)last);
	assert_non_null(strstr(o_text, want));
	assert_non_null(strstr(o_text, "messages"));
	assert_non_null(strstr(o_text, "ack latency p50"));
	assert_non_null(strstr(e_text, "SIGTERM"));
	assert_non_null(strstr(e_text, "reconnects"));
	free(o_text);
	free(e_text);
	assert_int_equal(ringlog_close(log), 0);

	/* The slot (--slot-hold none) is where the stream ends; ringlog-dump --slots shows
	 * it. */
	struct result r = RUN(dir, g_dump, "--slots", a);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "nats-bg"));
	snprintf(want, sizeof(want), " %llu\n", (unsigned long long)last);
	assert_non_null(strstr(r.out, want));
	result_free(&r);
	free(a);
}

static void json_output_is_one_object_with_the_keys(void **state)
{
	const char *dir = *state;
	char *a = subdir(dir, "a"), *b = subdir(dir, "b");
	const char *urls = tu_nats_urls(g_nats);
	uint64_t n = append_batches(a, 7, 120);
	struct result r =
	    RUN(dir, g_ship, "--servers", urls, "--stream", "js", "--once", "--json", a);
	assert_int_equal(r.status, 0);
	assert_one_object(r.out);
	static const char *keys[] = {
	    "state",	    "error",	  "error_detail", "stream",	 "slot",       "slot_lsn",
	    "slot_hold_ms", "log_id",	  "shipped_lsn",  "durable_lsn", "lag_lsns",   "lag_bytes",
	    "lag_ms",	    "messages",	  "records",	  "bytes",	 "retries",    "duplicates",
	    "timeouts",	    "reconnects", "stream_seq",	  "elapsed_s",	 "msgs_per_s", "mb_per_s",
	    "ack_p50_ms",   "ack_p99_ms",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!member(r.out, keys[i]))
			fail_msg("ringlog-ship --json has no %s: %s", keys[i], r.out);
	assert_string_equal(member(r.out, "state"), "\"done\"");
	assert_string_equal(member(r.out, "stream"), "\"js\"");
	assert_int_equal(member_u64(r.out, "shipped_lsn"), n);
	assert_true(member_u64(r.out, "slot_lsn") <= n); /* it trails by --slot-hold */
	assert_int_equal(member_u64(r.out, "lag_lsns"), 0);
	assert_int_equal(member_u64(r.out, "records"), n);
	assert_int_equal(member_u64(r.out, "error"), 0);
	char id[40];
	snprintf(id, sizeof(id), "\"%016llx\"", (unsigned long long)log_id_of(a));
	assert_string_equal(member(r.out, "log_id"), id);
	result_free(&r);

	r = RUN(dir, g_restore, "--servers", urls, "--stream", "js", "--json", b);
	assert_int_equal(r.status, 0);
	assert_one_object(r.out);
	static const char *rkeys[] = {"state",	  "error",  "log_id",  "first_lsn", "last_lsn",
				      "messages", "frames", "records", "bytes",	    "elapsed_s"};
	for (size_t i = 0; i < sizeof(rkeys) / sizeof(rkeys[0]); i++)
		if (!member(r.out, rkeys[i]))
			fail_msg("ringlog-restore --json has no %s: %s", rkeys[i], r.out);
	assert_string_equal(member(r.out, "log_id"), id);
	assert_int_equal(member_u64(r.out, "first_lsn"), 1);
	assert_int_equal(member_u64(r.out, "last_lsn"), n);
	assert_int_equal(member_u64(r.out, "records"), n);
	result_free(&r);
	free(a);
	free(b);
}

/* A standby: ringlog-restore --follow applies what is shipped while it runs; SIGTERM
 * stops it with exit 0, and the directory is a log ringlog_open continues. */
static void restore_follow_stops_on_sigterm_leaving_a_standby(void **state)
{
	const char *dir = *state;
	char *a = subdir(dir, "a"), *b = subdir(dir, "b");
	const char *urls = tu_nats_urls(g_nats);
	uint64_t n1 = append_batches(a, 3, 150);
	struct result r = RUN(dir, g_ship, "--servers", urls, "--stream", "fol", "--once", a);
	assert_int_equal(r.status, 0);
	result_free(&r);

	char out[4200], err[4200];
	snprintf(out, sizeof(out), "%s/restore.out", dir);
	snprintf(err, sizeof(err), "%s/restore.err", dir);
	char *argv[] = {g_restore,  "--servers", (char *)urls, "--stream", "fol",
			"--follow", b,		 NULL};
	pid_t pid = spawn(argv, out, err);

	/* What it has applied, as its writer publishes it. */
	long deadline = now_ms() + WAIT_MS;
	uint64_t durable = 0, id = 0;
	while (ringlog_published_durable(b, &durable, &id) != 0 || durable < n1) {
		if (now_ms() > deadline)
			fail_msg("the standby is at LSN %llu after %d ms, not %llu",
				 (unsigned long long)durable, WAIT_MS, (unsigned long long)n1);
		sleep_ms(20);
	}
	uint64_t n2 = append_batches(a, 800, 60);
	r = RUN(dir, g_ship, "--servers", urls, "--stream", "fol", "--once", a);
	assert_int_equal(r.status, 0);
	result_free(&r);
	deadline = now_ms() + WAIT_MS;
	while (ringlog_published_durable(b, &durable, &id) != 0 || durable < n2) {
		if (now_ms() > deadline)
			fail_msg("the standby is at LSN %llu after %d ms, not %llu",
				 (unsigned long long)durable, WAIT_MS, (unsigned long long)n2);
		sleep_ms(20);
	}

	assert_int_equal(kill(pid, SIGTERM), 0);
	int status = wait_exit(pid, "ringlog-restore --follow");
	char *o_text = slurp_text(out), *e_text = slurp_text(err);
	print_message("--- stdout\n%s--- stderr\n%s---\n", o_text, e_text);
	assert_int_equal(status, 0);
	char want[300];
	snprintf(want, sizeof(want),
		 "stopped; %s is a standby of log %016llx from stream fol up "
		 "to LSN %llu\n",
		 b, (unsigned long long)log_id_of(a), (unsigned long long)n2);
	assert_non_null(strstr(o_text, want));
	assert_non_null(strstr(o_text, "ringlog_open()"));
	free(o_text);
	free(e_text);

	assert_int_equal(assert_same_log(a, b), n2);
	assert_continues(b, log_id_of(a), n2);
	free(a);
	free(b);
}

/* A port nothing listens on (bound, then released). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t len = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void no_server_exits_1_naming_the_url(void **state)
{
	const char *dir = *state;
	char *a = subdir(dir, "a"), *b = subdir(dir, "b");
	append_batches(a, 1, 10);
	char url[64];
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", free_port());
	struct result r = RUN(dir, g_ship, "--servers", url, "--stream", "none", "--once", a);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, url));
	assert_non_null(strstr(r.err, "is nats-server running"));
	result_free(&r);
	r = RUN(dir, g_ship, "--servers", url, "--stream", "none", "--once", "--json", a);
	assert_int_equal(r.status, 1);
	assert_one_object(r.out);
	assert_string_equal(member(r.out, "state"), "\"failed\"");
	result_free(&r);
	r = RUN(dir, g_restore, "--servers", url, "--stream", "none", b);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, url));
	assert_non_null(strstr(r.err, "is nats-server running"));
	result_free(&r);
	free(a);
	free(b);
}

static void tool_path(char *out, size_t len, const char *self, const char *name)
{
	snprintf(out, len, "%s/../%s", self, name);
	if (access(out, X_OK) != 0) {
		fprintf(stderr, "%s is missing: build it first\n", out);
		exit(1);
	}
}

int main(void)
{
	/* The tools sit one directory above this test program. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	tool_path(g_ship, sizeof(g_ship), self, "ringlog-ship");
	tool_path(g_restore, sizeof(g_restore), self, "ringlog-restore");
	tool_path(g_dump, sizeof(g_dump), self, "ringlog-dump");
	tu_require_uring();
	g_nats = tu_nats_start_or_skip(3);
	if (natsConnection_ConnectTo(&g_nc, tu_nats_urls(g_nats)) != NATS_OK ||
	    natsConnection_JetStream(&g_js, g_nc, NULL) != NATS_OK) {
		fprintf(stderr, "cannot connect to the test cluster at %s\n", tu_nats_urls(g_nats));
		tu_nats_stop(g_nats);
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(help_names_every_option),
	    TU_DIR_TEST(usage_errors_exit_2_with_a_message),
	    TU_DIR_TEST(ship_once_then_restore_gives_an_identical_log),
	    TU_DIR_TEST(background_ship_stops_cleanly_on_sigterm),
	    TU_DIR_TEST(json_output_is_one_object_with_the_keys),
	    TU_DIR_TEST(restore_follow_stops_on_sigterm_leaving_a_standby),
	    TU_DIR_TEST(no_server_exits_1_naming_the_url),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	jsCtx_Destroy(g_js);
	natsConnection_Destroy(g_nc);
	nats_Close();
	tu_nats_stop(g_nats);
	return rc;
}
