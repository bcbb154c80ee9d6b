/*
 * libringlog-nats under faults: exactly once, whatever fails.  While a writer keeps
 * appending, the stream leader is SIGKILLed, the node the shipper is connected to is
 * SIGKILLed, the whole cluster is stopped and started again, or the shipper process itself
 * is SIGKILLed and another takes over.  After each: the stream holds every durable LSN of
 * the log exactly once, in order, byte for byte (read back with libnats, every message
 * checked: tests/shiptest.h), a restore equals the log, and the shipper either recovered by
 * itself (and counted it: retries, reconnects) or failed with a clear error, after which a
 * new shipper finishes the job.
 *
 * And what must be refused: a log behind its stream (an older copy of the directory:
 * shipping it would hand out the same LSNs again) with -ESTALE, publishing nothing; a
 * foreign or corrupted message in the stream stops a restore with -EBADMSG naming its
 * stream sequence, the directory left valid up to the message before.
 *
 * Each test starts its own cluster (3 nodes for the faults, 1 for the refusals) in its
 * setup and stops it in its teardown, failed or not.  Skips (77) only without nats-server
 * or io_uring.  Children are this binary run again with "--child ..." (a shipper process).
 */
#include "shiptest.h"

#include <dirent.h>
#include <sys/stat.h>

struct fixture {
	char *dir;
	struct tu_nats *c;
	const char *urls;
};

static int setup_cluster(void **state, unsigned nodes)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = tu_tmpdir();
	f->c = tu_nats_start(nodes);
	if (!f->c) {
		tu_rmrf(f->dir);
		free(f->dir);
		free(f);
		return -1;
	}
	f->urls = tu_nats_urls(f->c);
	*state = f;
	return 0;
}

static int setup3(void **state)
{
	return setup_cluster(state, 3);
}

static int setup1(void **state)
{
	return setup_cluster(state, 1);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	tu_nats_stop(f->c);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

#define FAULT_TEST(t) cmocka_unit_test_setup_teardown(t, setup3, teardown)
#define REFUSAL_TEST(t) cmocka_unit_test_setup_teardown(t, setup1, teardown)

static struct ringlog *open_log(const char *dir)
{
	struct ringlog_options o;
	st_log_options(&o);
	return tu_open(dir, &o);
}

/* Replicated, quick to notice a lost acknowledgement and to retry. */
static void fault_options(struct ringlog_nats_options *o, const char *urls, const char *stream)
{
	st_ship_options(o, urls, stream);
	o->replicas = 3;
	o->ack_timeout_ms = 1000;
	o->max_backoff_ms = 500;
}

/* Wait (at most 15 s) until the shipper has had LSNs up to `lsn` acknowledged. */
static void wait_shipped(struct ringlog_nats_shipper *s, uint64_t lsn)
{
	uint64_t deadline = st_now_ns() + 15 * ST_SEC;
	struct ringlog_nats_stats st;
	for (;;) {
		ringlog_nats_shipper_stats(s, &st);
		if (st.shipped_lsn >= lsn)
			return;
		if (st_now_ns() > deadline)
			fail_msg("shipped %" PRIu64 " after 15 s, waiting for %" PRIu64 " (%s: %s)",
				 st.shipped_lsn, lsn, st_state_name(st.state),
				 ringlog_nats_shipper_error(s));
		st_sleep_ms(20);
	}
}

/* The node leading `stream`, asked until known (15 s at most). */
static int wait_leader(struct tu_nats *c, const char *stream)
{
	uint64_t deadline = st_now_ns() + 15 * ST_SEC;
	int l;
	while ((l = tu_nats_stream_leader(c, stream)) < 0 && st_now_ns() < deadline)
		st_sleep_ms(50);
	if (l < 0)
		fail_msg("no leader for stream %s within 15 s", stream);
	return l;
}

/*
 * After a fault: the shipper either catches up by itself, having counted what it went
 * through (retries or reconnects; reconnects if `must_reconnect`), or has failed with an
 * error it states, and then a new shipper catches up.  Either way the stream then holds
 * every LSN of the log up to `last` exactly once, in order, byte for byte, and a restore
 * of it equals the log.  Stops the shipper.
 */
static void check_exactly_once(struct fixture *f, struct ringlog *log, const char *src,
			       struct ringlog_nats_shipper *s,
			       const struct ringlog_nats_options *o, uint64_t last,
			       int must_reconnect)
{
	int err = ringlog_nats_shipper_wait(s, 40 * ST_SEC);
	struct ringlog_nats_stats st;
	ringlog_nats_shipper_stats(s, &st);
	st_print_stats("after the fault", s);
	if (err == 0) {
		assert_int_equal(st.shipped_lsn, last);
		assert_int_equal(st.lag_lsns, 0);
		if (st.retries + st.reconnects == 0)
			fail_msg("the shipper caught up but counted no retry or reconnect");
		if (must_reconnect && st.reconnects == 0)
			fail_msg("the shipper's server was lost, yet it counted no reconnect");
		st_ship_stop(s);
	} else {
		if (err == -ETIMEDOUT)
			fail_msg("40 s after the fault the shipper is neither caught up nor failed: "
				 "%s, shipped %" PRIu64 " of %" PRIu64,
				 st_state_name(st.state), st.shipped_lsn, st.durable_lsn);
		/* Gave up: with a state, an error and the detail that say so. */
		printf("# the shipper failed: %s: %s\n", ringlog_strerror(err),
		       ringlog_nats_shipper_error(s));
		assert_int_equal(st.state, RINGLOG_NATS_FAILED);
		assert_int_equal(st.error, err);
		assert_true(strlen(ringlog_nats_shipper_error(s)) > 0);
		assert_int_equal(ringlog_nats_shipper_stop(s), err);
		s = st_ship_start(log, o);
		st_ship_wait(s, 40);
		ringlog_nats_shipper_stats(s, &st);
		assert_int_equal(st.shipped_lsn, last);
		st_ship_stop(s);
	}

	struct st_client cl;
	st_client_open(&cl, f->urls);
	struct st_scan sc;
	st_scan_stream(&cl, o->stream, ringlog_log_id(log), src, &sc);
	st_client_close(&cl);
	printf("# stream: %" PRIu64 " messages, LSNs %" PRIu64 "..%" PRIu64 ", %" PRIu64
	       " frames (%" PRIu64 " chunked)\n",
	       sc.msgs, sc.first_lsn, sc.last_lsn, sc.frames, sc.chunked_frames);
	assert_int_equal(sc.first_lsn, 1);
	assert_int_equal(sc.last_lsn, last);

	char *dst = st_sub(f->dir, "restored");
	struct ringlog_nats_restore_stats rs = st_restore_ok(dst, f->urls, o->stream, 0);
	assert_int_equal(rs.last_lsn, last);
	assert_int_equal(rs.frames, sc.frames);
	assert_int_equal(st_compare_logs(src, dst, 0), sc.frames);
	st_assert_log_clean(dst, last);
	free(dst);
}

/* ---- faults ---- */

/* SIGKILL of the stream leader while the writer appends and the shipper publishes: the
 * shipper rides out the election (acknowledgements time out, it resends from the last
 * acknowledged point) and nothing is lost or stored twice. */
static void a_killed_stream_leader_loses_and_duplicates_nothing(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src");
	struct ringlog *log = open_log(src);
	struct ringlog_nats_options o;
	fault_options(&o, f->urls, "leaderkill");
	struct ringlog_nats_shipper *s = st_ship_start(log, &o);
	struct st_writer w;
	st_writer_start(&w, log, 1, 2000, 0);
	wait_shipped(s, 200);
	int leader = wait_leader(f->c, "leaderkill");
	uint64_t at_kill = atomic_load(&w.last_lsn);
	assert_int_equal(tu_nats_kill(f->c, (unsigned)leader), 0);
	printf("# killed the stream leader n%d at LSN %" PRIu64 "\n", leader + 1, at_kill);
	st_sleep_ms(3000); /* the writer goes on through the election */
	assert_int_equal(tu_nats_restart(f->c, (unsigned)leader), 0);
	st_sleep_ms(500);
	uint64_t last = st_writer_stop(&w);
	assert_true(last > at_kill);
	check_exactly_once(f, log, src, s, &o, last, 0);
	assert_int_equal(ringlog_close(log), 0);
	free(src);
}

/* The nodes that hold a client connection other than the checker's: the shipper's. */
static int shipper_node(struct tu_nats *c)
{
	for (unsigned i = 0; i < tu_nats_size(c); i++) {
		int st = 0;
		char *body = tu_nats_http_get(c, i, "/connz", &st);
		int n = 0, checkers = 0;
		const char *p;
		if (st == 200 && body && (p = strstr(body, "\"num_connections\":")) != NULL)
			n = atoi(p + strlen("\"num_connections\":"));
		for (p = body; p && (p = strstr(p, "\"name\": \"" ST_CLIENT_NAME "\"")) != NULL; p++)
			checkers++;
		free(body);
		if (n > checkers)
			return (int)i;
	}
	return -1;
}

/* SIGKILL of the node the shipper is connected to (made a follower of the stream first, so
 * that stored messages lose their acknowledgements): the shipper reconnects to another
 * node, finds out from the stream what was stored, and goes on without a gap or a
 * duplicate. */
static void a_killed_connected_node_is_reconnected_around(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src");
	struct ringlog *log = open_log(src);
	struct ringlog_nats_options o;
	fault_options(&o, f->urls, "connkill");
	struct ringlog_nats_shipper *s = st_ship_start(log, &o);
	struct st_writer w;
	st_writer_start(&w, log, 1, 2000, 0);
	wait_shipped(s, 200);
	int node = shipper_node(f->c);
	if (node < 0)
		fail_msg("no node shows the shipper's connection in /connz");
	int leader = wait_leader(f->c, "connkill");
	if (leader == node) {
		/* Move the leadership elsewhere, asking through another node. */
		struct st_client cl;
		st_client_open(&cl, tu_nats_url(f->c, (unsigned)(node + 1) % 3));
		natsMsg *reply = NULL;
		natsStatus ns = natsConnection_RequestString(
		    &reply, cl.nc, "$JS.API.STREAM.LEADER.STEPDOWN.connkill", "", 5000);
		printf("# stepdown of n%d: %s %.*s\n", leader + 1, natsStatus_GetText(ns),
		       reply ? natsMsg_GetDataLength(reply) : 0, reply ? natsMsg_GetData(reply) : "");
		natsMsg_Destroy(reply);
		st_client_close(&cl);
		uint64_t deadline = st_now_ns() + 15 * ST_SEC;
		do {
			st_sleep_ms(50);
			leader = tu_nats_stream_leader(f->c, "connkill");
		} while ((leader < 0 || leader == node) && st_now_ns() < deadline);
	}
	uint64_t at_kill = atomic_load(&w.last_lsn);
	printf("# the shipper is connected to n%d, the stream leader is n%d; killing n%d at LSN "
	       "%" PRIu64 "\n",
	       node + 1, leader + 1, node + 1, at_kill);
	assert_int_equal(tu_nats_kill(f->c, (unsigned)node), 0);
	st_sleep_ms(1500);
	assert_int_equal(tu_nats_restart(f->c, (unsigned)node), 0);
	st_sleep_ms(500);
	uint64_t last = st_writer_stop(&w);
	assert_true(last > at_kill);
	check_exactly_once(f, log, src, s, &o, last, 1);
	assert_int_equal(ringlog_close(log), 0);
	free(src);
}

/* The whole cluster stopped while the writer keeps appending: the shipper shows the lag
 * growing (not CAUGHT_UP, nothing acknowledged), and once the cluster is back it ships the
 * rest, each LSN once. */
static void a_whole_cluster_restart_is_waited_out(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src");
	struct ringlog *log = open_log(src);
	struct ringlog_nats_options o;
	fault_options(&o, f->urls, "restartall");
	struct ringlog_nats_shipper *s = st_ship_start(log, &o);
	struct st_writer w;
	st_writer_start(&w, log, 1, 2000, 0);
	wait_shipped(s, 200);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(tu_nats_stop_node(f->c, i), 0);
	uint64_t stopped_at = atomic_load(&w.last_lsn);
	st_sleep_ms(1000);

	/* Down: the durable LSN moves on, the shipped one cannot. */
	struct ringlog_nats_stats a, b;
	uint64_t deadline = st_now_ns() + 10 * ST_SEC;
	do {
		ringlog_nats_shipper_stats(s, &a);
		if (a.durable_lsn > stopped_at && a.durable_lsn > a.shipped_lsn)
			break;
		st_sleep_ms(20);
	} while (st_now_ns() < deadline);
	st_print_stats("cluster down", s);
	if (!(a.durable_lsn > stopped_at && a.durable_lsn > a.shipped_lsn))
		fail_msg("with the cluster down, the shipper says durable %" PRIu64 ", shipped %" PRIu64
			 " (the log is at %" PRIu64 ")",
			 a.durable_lsn, a.shipped_lsn, ringlog_durable_lsn(log));
	assert_int_not_equal(a.state, RINGLOG_NATS_CAUGHT_UP);
	assert_int_equal(a.lag_lsns, a.durable_lsn - a.shipped_lsn);
	assert_true(a.lag_ns > 0);
	st_sleep_ms(500);
	ringlog_nats_shipper_stats(s, &b);
	assert_int_equal(b.shipped_lsn, a.shipped_lsn);
	assert_true(b.durable_lsn >= a.durable_lsn);

	/* Back.  n1 alone has no quorum, so its restart may time out waiting to be healthy
	 * (it is left running); with the second a meta leader is elected, which on a busy
	 * machine can outlast that wait too: the cluster gets a minute to be healthy. */
	for (unsigned i = 0; i < 3; i++) {
		int err = tu_nats_restart(f->c, i);
		assert_true(err == 0 || err == -ETIMEDOUT);
	}
	assert_int_equal(tu_nats_wait_healthy(f->c, 60000), 0);
	st_sleep_ms(1000);
	uint64_t last = st_writer_stop(&w);
	check_exactly_once(f, log, src, s, &o, last, 1);
	assert_int_equal(ringlog_close(log), 0);
	free(src);
}

/* A shipper process SIGKILLed mid-stream (frames chunked, so the kill may land between two
 * chunks of a frame): the stream it leaves is a clean prefix of the log, and a new shipper
 * continues it to the end, each LSN once. */
static void a_killed_shipper_process_is_succeeded_cleanly(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src");
	struct ringlog *log = open_log(src);
	struct ringlog_nats_options o;
	fault_options(&o, f->urls, "shipkill");
	o.max_message_bytes = 4096;
	struct st_writer w;
	st_writer_start(&w, log, 1, 1000, 5000); /* every 5th batch: 5 KB records, chunked */

	int ready[2];
	assert_int_equal(pipe(ready), 0);
	char fd[16];
	snprintf(fd, sizeof(fd), "%d", ready[1]);
	const char *args[] = {"ship", src, f->urls, "shipkill", fd, NULL};
	pid_t pid = st_spawn_child(args);
	close(ready[1]);
	char line[256];
	if (!st_read_ready(ready[0], 15000, line, sizeof(line)))
		fail_msg("the shipper child did not start (\"%s\")", line);
	close(ready[0]);

	struct st_client cl;
	st_client_open(&cl, f->urls);
	struct st_stream_info si;
	uint64_t deadline = st_now_ns() + 15 * ST_SEC;
	do {
		st_sleep_ms(50);
		assert_int_equal(st_stream_info(&cl, "shipkill", &si), 0);
	} while (si.msgs < 100 && st_now_ns() < deadline);
	assert_true(si.msgs >= 100);
	assert_int_equal(kill(pid, SIGKILL), 0);
	int status = st_wait_child(pid, 5000);
	assert_true(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	uint64_t at_kill = atomic_load(&w.last_lsn);

	/* What the killed one left is a clean prefix (maybe ending inside a chunked frame). */
	struct st_scan sc;
	st_scan_stream_ex(&cl, "shipkill", ringlog_log_id(log), src, 1, &sc);
	st_client_close(&cl);
	printf("# killed the shipper with LSNs 1..%" PRIu64 " in the stream%s (%u chunks of the "
	       "next frame), the log at %" PRIu64 "\n",
	       sc.last_lsn, sc.tail_chunks ? ", inside a chunked frame" : "", sc.tail_chunks,
	       at_kill);
	assert_int_equal(sc.first_lsn, 1);
	assert_true(sc.last_lsn <= ringlog_durable_lsn(log));

	st_sleep_ms(300);
	struct ringlog_nats_shipper *s = st_ship_start(log, &o);
	st_sleep_ms(300);
	uint64_t last = st_writer_stop(&w);
	st_ship_wait(s, 30);
	struct ringlog_nats_stats st;
	ringlog_nats_shipper_stats(s, &st);
	st_print_stats("successor", s);
	assert_int_equal(st.shipped_lsn, last);
	/* It shipped only what the stream lacked (a resend of the dead one's unacknowledged
	 * messages is absorbed as duplicates, never stored twice). */
	assert_true(st.records <= last - sc.last_lsn);
	st_ship_stop(s);

	st_client_open(&cl, f->urls);
	st_scan_stream(&cl, "shipkill", ringlog_log_id(log), src, &sc);
	st_client_close(&cl);
	assert_int_equal(sc.first_lsn, 1);
	assert_int_equal(sc.last_lsn, last);
	char *dst = st_sub(f->dir, "restored");
	st_restore_ok(dst, f->urls, "shipkill", 0);
	assert_int_equal(st_compare_logs(src, dst, 0), sc.frames);
	free(dst);
	assert_int_equal(ringlog_close(log), 0);
	free(src);
}

/* ---- refusals ---- */

/* Copy every regular file of directory `from` into a new directory `to`. */
static void copy_dir(const char *from, const char *to)
{
	assert_int_equal(mkdir(to, 0755), 0);
	DIR *d = opendir(from);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *a = st_sub(from, de->d_name), *b = st_sub(to, de->d_name);
		struct stat sb;
		if (stat(a, &sb) == 0 && S_ISREG(sb.st_mode)) {
			FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
			assert_non_null(in);
			assert_non_null(out);
			char buf[65536];
			size_t n;
			while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
				assert_int_equal(fwrite(buf, 1, n, out), n);
			fclose(in);
			assert_int_equal(fclose(out), 0);
		}
		free(a);
		free(b);
	}
	closedir(d);
}

/* Check that starting a shipper was refused with -ESTALE: at once, or by failing before it
 * published anything. */
static void assert_refused_stale(int err, struct ringlog_nats_shipper *s, const char *how)
{
	if (err == 0) {
		err = ringlog_nats_shipper_wait(s, 20 * ST_SEC);
		struct ringlog_nats_stats st;
		ringlog_nats_shipper_stats(s, &st);
		printf("# %s: %s (%s)\n", how, ringlog_strerror(err), ringlog_nats_shipper_error(s));
		assert_int_equal(err, -ESTALE);
		assert_int_equal(st.state, RINGLOG_NATS_FAILED);
		assert_int_equal(st.error, -ESTALE);
		assert_int_equal(st.messages, 0);
		assert_true(strlen(ringlog_nats_shipper_error(s)) > 0);
		assert_int_equal(ringlog_nats_shipper_stop(s), -ESTALE);
	} else {
		printf("# %s: %s (%s)\n", how, ringlog_strerror(err), ringlog_last_error());
		assert_int_equal(err, -ESTALE);
		assert_true(strlen(ringlog_last_error()) > 0);
	}
}

/* An older copy of the log directory (the stream holds LSNs it does not have) is refused
 * with -ESTALE, in-process and as a directory, and nothing is published: shipping it
 * would let it hand the same LSNs out again. */
static void a_log_behind_its_stream_is_refused_stale(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src"), *old = st_sub(f->dir, "old");
	struct ringlog *log = open_log(src);
	uint64_t old_last = st_append_some(log, 1, 10, NULL, NULL);
	uint64_t id = ringlog_log_id(log);
	assert_int_equal(ringlog_close(log), 0);
	copy_dir(src, old);
	log = open_log(src);
	uint64_t last = st_append_some(log, 50, 10, NULL, NULL);
	struct ringlog_nats_options o;
	st_ship_options(&o, f->urls, "stale");
	st_ship_all(log, &o);
	assert_int_equal(ringlog_close(log), 0);
	struct st_client cl;
	st_client_open(&cl, f->urls);
	struct st_stream_info before, after;
	assert_int_equal(st_stream_info(&cl, "stale", &before), 0);

	struct ringlog *ol = open_log(old);
	assert_int_equal(ringlog_next_lsn(ol), old_last + 1);
	struct ringlog_nats_shipper *s = NULL;
	{ /* (the start sets s: call it before passing s) */
		int err = ringlog_nats_shipper_start(ol, &o, &s);
		assert_refused_stale(err, s, "in-process");
	}
	assert_int_equal(ringlog_close(ol), 0);
	s = NULL;
	{ /* (the start sets s: call it before passing s) */
		int err = ringlog_nats_shipper_start_dir(old, &o, &s);
		assert_refused_stale(err, s, "directory");
	}

	assert_int_equal(st_stream_info(&cl, "stale", &after), 0);
	assert_int_equal(after.msgs, before.msgs);
	assert_int_equal(after.last_seq, before.last_seq);
	struct st_scan sc;
	st_scan_stream(&cl, "stale", id, src, &sc);
	st_client_close(&cl);
	assert_int_equal(sc.last_lsn, last);
	/* The old copy is as it was. */
	st_assert_log_clean(old, old_last);
	free(src);
	free(old);
}

/* An older copy of the directory that was then written on (its LSNs run past the stream's
 * end, with other records where the two overlap) is not the log the stream copies: the
 * shipper compares its frame at the stream's last LSN with the stream's, refuses with
 * -ESTALE, and publishes nothing (src/nats/ship.c: "Before that, the log's frame at that
 * LSN must be byte for byte the one in the stream"). */
static void a_log_that_diverged_from_its_stream_is_refused_stale(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src"), *old = st_sub(f->dir, "old");
	struct ringlog *log = open_log(src);
	st_append_some(log, 1, 10, NULL, NULL);
	assert_int_equal(ringlog_close(log), 0);
	copy_dir(src, old);
	log = open_log(src);
	uint64_t last = st_append_some(log, 50, 10, NULL, NULL);
	struct ringlog_nats_options o;
	st_ship_options(&o, f->urls, "diverged");
	st_ship_all(log, &o);
	uint64_t id = ringlog_log_id(log);
	assert_int_equal(ringlog_close(log), 0);
	struct st_client cl;
	st_client_open(&cl, f->urls);
	struct st_stream_info before, after;
	assert_int_equal(st_stream_info(&cl, "diverged", &before), 0);

	/* The old copy goes on with other records, past the stream's end. */
	struct ringlog *ol = open_log(old);
	uint64_t old_last = st_append_some(ol, 7000, 15, NULL, NULL);
	assert_true(old_last > last);
	struct ringlog_nats_shipper *s = NULL;
	{
		int err = ringlog_nats_shipper_start(ol, &o, &s);
		assert_refused_stale(err, s, "diverged, in-process");
	}
	assert_int_equal(ringlog_close(ol), 0);
	s = NULL;
	{
		int err = ringlog_nats_shipper_start_dir(old, &o, &s);
		assert_refused_stale(err, s, "diverged, directory");
	}

	assert_int_equal(st_stream_info(&cl, "diverged", &after), 0);
	assert_int_equal(after.msgs, before.msgs);
	assert_int_equal(after.last_seq, before.last_seq);
	struct st_scan sc;
	st_scan_stream(&cl, "diverged", id, src, &sc);
	st_client_close(&cl);
	assert_int_equal(sc.last_lsn, last);
	free(src);
	free(old);
}

/* A message that repeats LSNs the stream already holds (its first message published
 * again with another Msg-Id, by something other than the shipper) stops restore at its
 * sequence: only the first message of a continued restore may start below the log's
 * next LSN. */
static void a_repeated_message_stops_restore_at_its_sequence(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src"), *dst = st_sub(f->dir, "dst");
	struct ringlog *log = open_log(src);
	uint64_t last = st_append_some(log, 1, 20, NULL, NULL);
	struct ringlog_nats_options o;
	st_ship_options(&o, f->urls, "repeated");
	st_ship_all(log, &o);
	assert_int_equal(ringlog_close(log), 0);
	struct st_client cl;
	st_client_open(&cl, f->urls);
	natsMsg *first = NULL;
	jsErrCode jerr = 0;
	assert_int_equal(js_GetMsg(&first, cl.js, "repeated", 1, NULL, &jerr), NATS_OK);
	const char *keys[] = {"Ringlog-Log-Id", "Ringlog-First-Lsn", "Ringlog-Last-Lsn"};
	const char *headers[9] = {0}; /* (NULL-terminated) */
	for (int i = 0; i < 3; i++) {
		headers[2 * i] = keys[i];
		assert_int_equal(natsMsgHeader_Get(first, keys[i], &headers[2 * i + 1]), NATS_OK);
	}
	headers[6] = "Nats-Msg-Id";
	headers[7] = "a-copy-of-the-first-message";
	uint64_t seq = st_publish_raw(&cl, "repeated", natsMsg_GetData(first),
				      natsMsg_GetDataLength(first), headers);
	natsMsg_Destroy(first);
	st_client_close(&cl);

	struct ringlog_nats_restore_stats rs;
	char error[1024];
	int err = st_restore(dst, f->urls, "repeated", 0, &rs, error, sizeof(error));
	printf("# restore: %s (%s)\n", ringlog_strerror(err), error);
	assert_int_equal(err, -EBADMSG);
	if (!st_has_number(error, seq))
		fail_msg("the detail does not name stream sequence %" PRIu64 ": \"%s\"", seq, error);
	assert_int_equal(rs.last_lsn, last);
	st_assert_log_clean(dst, last);
	assert_int_equal(st_compare_logs(src, dst, 0), 20);
	free(src);
	free(dst);
}

/* A restore that meets a message no shipper wrote (no headers, not frames) fails with
 * -EBADMSG naming its stream sequence; what came before it is restored, durable and
 * valid, and restoring again stops at the same place. */
static void a_foreign_message_stops_restore_at_its_sequence(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src"), *dst = st_sub(f->dir, "dst");
	struct ringlog *log = open_log(src);
	uint64_t last = st_append_some(log, 1, 20, NULL, NULL);
	uint64_t id = ringlog_log_id(log);
	struct ringlog_nats_options o;
	st_ship_options(&o, f->urls, "foreign");
	st_ship_all(log, &o);
	assert_int_equal(ringlog_close(log), 0);
	struct st_client cl;
	st_client_open(&cl, f->urls);
	struct st_stream_info si;
	assert_int_equal(st_stream_info(&cl, "foreign", &si), 0);
	const char garbage[] = "not a ringlog message";
	uint64_t seq = st_publish_raw(&cl, "foreign", garbage, (int)sizeof(garbage) - 1, NULL);
	assert_int_equal(seq, si.last_seq + 1);
	st_client_close(&cl);

	for (int round = 0; round < 2; round++) {
		struct ringlog_nats_restore_stats rs;
		char error[1024];
		int err = st_restore(dst, f->urls, "foreign", 0, &rs, error, sizeof(error));
		printf("# restore %d: %s (%s)\n", round, ringlog_strerror(err), error);
		assert_int_equal(err, -EBADMSG);
		if (!st_has_number(error, seq))
			fail_msg("the detail does not name stream sequence %" PRIu64 ": \"%s\"", seq,
				 error);
		assert_int_equal(rs.log_id, id);
		/* The first restore adds 1..last, the second nothing. */
		assert_int_equal(rs.last_lsn, round == 0 ? last : 0);
		st_assert_log_clean(dst, last);
		assert_int_equal(st_compare_logs(src, dst, 0), 20);
	}
	free(src);
	free(dst);
}

/* A message that looks like the next one (headers as the shipper writes them) but whose
 * frame is damaged (one bit) fails the restore with -EBADMSG naming its sequence; the
 * directory holds everything before it. */
static void a_corrupted_frame_stops_restore_at_its_sequence(void **state)
{
	struct fixture *f = *state;
	char *src = st_sub(f->dir, "src"), *dst = st_sub(f->dir, "dst");
	struct ringlog *log = open_log(src);
	uint64_t last = st_append_some(log, 1, 20, NULL, NULL);
	struct ringlog_nats_options o;
	st_ship_options(&o, f->urls, "corrupt");
	st_ship_all(log, &o);
	/* One more batch, not shipped: the frame to forge. */
	uint64_t next = tu_append_tagged(log, 99, 3, 200);
	assert_int_equal(ringlog_wait(log, next + 2), 0);
	assert_int_equal(ringlog_close(log), 0);
	struct ringlog_reader *r;
	assert_int_equal(ringlog_reader_open(src, next, &r), 0);
	struct ringlog_frame fr;
	assert_int_equal(ringlog_reader_next_frame(r, &fr), 1);
	assert_int_equal(fr.first_lsn, last + 1);
	uint8_t *frame = malloc(fr.len);
	memcpy(frame, fr.bytes, fr.len);
	uint32_t len = fr.len;
	ringlog_reader_close(r);
	frame[RINGLOG_FRAME_HEADER_BYTES + 4 + 10] ^= 0x10;

	struct st_client cl;
	st_client_open(&cl, f->urls);
	struct st_stream_info si;
	assert_int_equal(st_stream_info(&cl, "corrupt", &si), 0);
	natsMsg *prev = NULL;
	jsErrCode jerr = 0;
	assert_int_equal(js_GetMsg(&prev, cl.js, "corrupt", si.last_seq, NULL, &jerr), NATS_OK);
	const char *log_id_hdr = NULL;
	assert_int_equal(natsMsgHeader_Get(prev, "Ringlog-Log-Id", &log_id_hdr), NATS_OK);
	char first_s[32], last_s[32], expect_s[32];
	snprintf(first_s, sizeof(first_s), "%" PRIu64, last + 1);
	snprintf(last_s, sizeof(last_s), "%" PRIu64, last + 3);
	snprintf(expect_s, sizeof(expect_s), "%" PRIu64, si.last_seq);
	const char *headers[] = {"Nats-Msg-Id",	     "forged-next-message",
				 "Nats-Expected-Last-Sequence", expect_s,
				 "Ringlog-Log-Id",   log_id_hdr,
				 "Ringlog-First-Lsn", first_s,
				 "Ringlog-Last-Lsn", last_s,
				 NULL};
	uint64_t seq = st_publish_raw(&cl, "corrupt", frame, (int)len, headers);
	natsMsg_Destroy(prev);
	st_client_close(&cl);
	assert_int_equal(seq, si.last_seq + 1);

	struct ringlog_nats_restore_stats rs;
	char error[1024];
	int err = st_restore(dst, f->urls, "corrupt", 0, &rs, error, sizeof(error));
	printf("# restore: %s (%s)\n", ringlog_strerror(err), error);
	assert_int_equal(err, -EBADMSG);
	if (!st_has_number(error, seq))
		fail_msg("the detail does not name stream sequence %" PRIu64 ": \"%s\"", seq, error);
	assert_int_equal(rs.last_lsn, last);
	st_assert_log_clean(dst, last);
	assert_int_equal(st_compare_logs(dst, src, 1), 20);
	free(frame);
	free(src);
	free(dst);
}

/* ---- children ---- */

/* "ship DIR URLS STREAM FD": ship the directory (fault options, 4 KiB messages), say
 * "ready" on FD, and keep shipping until killed (or 120 s). */
static int child_ship(const char *dir, const char *urls, const char *stream, int fd)
{
	struct ringlog_nats_options o;
	fault_options(&o, urls, stream);
	o.max_message_bytes = 4096;
	struct ringlog_nats_shipper *s;
	int err = ringlog_nats_shipper_start_dir(dir, &o, &s);
	if (err) {
		dprintf(fd, "start_dir: %s (%s)\n", ringlog_strerror(err), ringlog_last_error());
		return 2;
	}
	if (write(fd, "ready\n", 6) != 6)
		return 3;
	close(fd);
	for (int i = 0; i < 1200; i++)
		usleep(100000);
	return ringlog_nats_shipper_stop(s) ? 4 : 0;
}

static int child_main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[0], "ship") == 0)
		return child_ship(argv[1], argv[2], argv[3], atoi(argv[4]));
	fprintf(stderr, "unknown child\n");
	return 64;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return child_main(argc - 2, argv + 2);
	setvbuf(stdout, NULL, _IOLBF, 0);
	tu_require_uring();
	tu_nats_require_server();
	const struct CMUnitTest tests[] = {
	    FAULT_TEST(a_killed_stream_leader_loses_and_duplicates_nothing),
	    FAULT_TEST(a_killed_connected_node_is_reconnected_around),
	    FAULT_TEST(a_whole_cluster_restart_is_waited_out),
	    FAULT_TEST(a_killed_shipper_process_is_succeeded_cleanly),
	    REFUSAL_TEST(a_log_behind_its_stream_is_refused_stale),
	    REFUSAL_TEST(a_log_that_diverged_from_its_stream_is_refused_stale),
	    REFUSAL_TEST(a_foreign_message_stops_restore_at_its_sequence),
	    REFUSAL_TEST(a_repeated_message_stops_restore_at_its_sequence),
	    REFUSAL_TEST(a_corrupted_frame_stops_restore_at_its_sequence),
	};
	if (getenv("RINGLOG_TEST_FILTER")) /* one test by name (a glob), when debugging */
		cmocka_set_test_filter(getenv("RINGLOG_TEST_FILTER"));
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	nats_CloseAndWait(2000);
	return r;
}
