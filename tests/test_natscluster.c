/*
 * tests/natscluster.c on this machine: real nats-server clusters of 1 and 3 nodes started,
 * used through libnats (JetStream streams, publishes across a killed stream leader),
 * nodes killed, stopped and restarted, and everything gone afterwards: no nats-server
 * child left, the temporary directory removed, also when the owning process exits
 * without stopping, is killed by SIGTERM or by SIGKILL; a forked child never touches its
 * parent's cluster.  Prints how long each step took.
 *
 * Skips (77) without nats-server, or without libnats-dev at build time (then only the
 * skip message is built); RINGLOG_REQUIRE_NATS makes either a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "natscluster.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<nats/nats.h>)
#include <nats/nats.h>
#define HAVE_NATS 1
#endif
#endif
#ifndef HAVE_NATS
#define HAVE_NATS 0
#endif

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Children of this process named nats-server (zombies included), from /proc. */
static int our_servers(void)
{
	DIR *d = opendir("/proc");
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		char path[64], buf[512];
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		/* "pid (comm) state ppid ..." */
		char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
		int ppid = 0;
		if (!lp || !rp || sscanf(rp + 2, "%*c %d", &ppid) != 1)
			continue;
		*rp = '\0';
		if (ppid == getpid() && strcmp(lp + 1, "nats-server") == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* 1 if process pid no longer runs (absent, or a zombie). */
static int gone(int pid)
{
	if (kill(pid, 0) != 0)
		return errno == ESRCH;
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* Wait up to ms for pid to be gone. */
static int gone_within(int pid, int ms)
{
	for (int t = 0; t < ms / 10 && !gone(pid); t++)
		sleep_ms(10);
	return gone(pid);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* ---- starting, node control, stopping (no client library needed) ---- */

static void test_node_control(void **state)
{
	(void)state;
	double t = now_ms();
	struct tu_nats *c = tu_nats_start(3);
	assert_non_null(c);
	printf("# 3-node start to all /healthz 200: %.0f ms\n", now_ms() - t);
	assert_int_equal(tu_nats_size(c), 3);
	assert_int_equal(our_servers(), 3);

	/* The URL list is the nodes' URLs in order. */
	char want[256];
	snprintf(want, sizeof(want), "%s,%s,%s", tu_nats_url(c, 0), tu_nats_url(c, 1),
		 tu_nats_url(c, 2));
	assert_string_equal(tu_nats_urls(c), want);
	assert_null(tu_nats_url(c, 3));
	assert_int_equal(strncmp(tu_nats_url(c, 0), "nats://127.0.0.1:", 17), 0);

	/* Each node has its config with a cluster block naming the two others. */
	char path[4200];
	snprintf(path, sizeof(path), "%s/n2.conf", tu_nats_dir(c));
	const char *conf = read_file(path);
	assert_non_null(strstr(conf, "server_name: n2\n"));
	assert_non_null(strstr(conf, "cluster {"));
	assert_int_equal(strstr(conf, "nats-route://") != NULL, 1);

	/* Monitoring: each node answers with its own name. */
	for (unsigned i = 0; i < 3; i++) {
		int st = 0;
		char *body = tu_nats_http_get(c, i, "/varz", &st);
		assert_int_equal(st, 200);
		char name[32];
		snprintf(name, sizeof(name), "\"server_name\": \"n%u\"", i + 1);
		assert_non_null(strstr(body, name));
		free(body);
	}
	assert_int_equal(tu_nats_stream_leader(c, "NO_SUCH_STREAM"), -1);

	/* Bad calls say why and change nothing. */
	assert_int_equal(tu_nats_kill(c, 3), -EINVAL);
	assert_int_equal(tu_nats_restart(c, 0), -EBUSY);

	/* A clean stop and a restart with the same store. */
	int pid0 = tu_nats_pid(c, 0);
	assert_true(pid0 > 0);
	t = now_ms();
	assert_int_equal(tu_nats_stop_node(c, 0), 0);
	printf("# stop_node (SIGTERM): %.0f ms\n", now_ms() - t);
	assert_int_equal(tu_nats_pid(c, 0), 0);
	assert_true(gone(pid0));
	assert_int_equal(our_servers(), 2);
	assert_int_equal(tu_nats_stop_node(c, 0), -ESRCH);
	assert_int_equal(tu_nats_kill(c, 0), -ESRCH);
	/* Two of three: still a quorum, the running nodes stay healthy. */
	assert_int_equal(tu_nats_wait_healthy(c, 10000), 0);
	t = now_ms();
	assert_int_equal(tu_nats_restart(c, 0), 0);
	printf("# restart after a clean stop, to /healthz 200: %.0f ms\n", now_ms() - t);
	assert_true(tu_nats_pid(c, 0) > 0);

	/* SIGKILL and restart. */
	int pid1 = tu_nats_pid(c, 1);
	t = now_ms();
	assert_int_equal(tu_nats_kill(c, 1), 0);
	printf("# kill (SIGKILL + reap): %.1f ms\n", now_ms() - t);
	assert_true(gone(pid1));
	assert_int_equal(tu_nats_wait_healthy(c, 10000), 0);
	t = now_ms();
	assert_int_equal(tu_nats_restart(c, 1), 0);
	printf("# restart after SIGKILL, to /healthz 200: %.0f ms\n", now_ms() - t);
	assert_int_equal(tu_nats_wait_healthy(c, 10000), 0);
	assert_int_equal(our_servers(), 3);

	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", tu_nats_dir(c));
	t = now_ms();
	tu_nats_stop(c);
	printf("# stop of 3 nodes: %.0f ms\n", now_ms() - t);
	tu_nats_stop(c); /* idempotent */
	tu_nats_stop(NULL);
	assert_false(exists(dir));
	assert_int_equal(our_servers(), 0);
}

/* A forked child does not stop its parent's cluster: not by exiting, not by dying of a
 * signal the helper handles, not by calling the control functions. */
static void test_child_leaves_parent_cluster(void **state)
{
	(void)state;
	struct tu_nats *c = tu_nats_start(1);
	assert_non_null(c);
	int server = tu_nats_pid(c, 0);

	for (int mode = 0; mode < 2; mode++) {
		pid_t child = fork();
		assert_true(child >= 0);
		if (child == 0) {
			int ok = tu_nats_kill(c, 0) == -EPERM && tu_nats_restart(c, 0) == -EPERM &&
				 tu_nats_stop_node(c, 0) == -EPERM &&
				 tu_nats_wait_healthy(c, 5000) == 0;
			if (mode == 1)
				raise(SIGTERM); /* the helper's handler runs in the child */
			exit(ok ? 0 : 1);	/* the atexit handler runs in the child */
		}
		int st = 0;
		assert_int_equal(waitpid(child, &st, 0), child);
		if (mode == 0)
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		else
			assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
		assert_int_equal(tu_nats_pid(c, 0), server);
		assert_false(gone(server));
		assert_true(exists(tu_nats_store_dir(c, 0)));
		assert_int_equal(tu_nats_wait_healthy(c, 5000), 0);
	}
	tu_nats_stop(c);
	assert_int_equal(our_servers(), 0);
}

/* What a process that started a cluster leaves when it ends without tu_nats_stop:
 * nothing after exit() or SIGTERM; after SIGKILL, no server (PR_SET_PDEATHSIG) and a
 * directory that the next tu_nats_start removes. */
static void test_owner_death(void **state)
{
	(void)state;
	static const char *const how[] = {"exit", "SIGTERM", "SIGKILL"};
	for (int mode = 0; mode < 3; mode++) {
		int fds[2];
		assert_int_equal(pipe(fds), 0);
		pid_t parent = getpid();
		pid_t child = fork();
		assert_true(child >= 0);
		if (child == 0) {
			close(fds[0]);
			/* If this test dies meanwhile, so does the child, cleaning up (SIGTERM). */
			if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
				_exit(3);
			struct tu_nats *c = tu_nats_start(mode == 2 ? 3 : 1);
			char info[4200];
			int len = c ? snprintf(info, sizeof(info), "%d %d %d %s", tu_nats_pid(c, 0),
					       tu_nats_pid(c, 1), tu_nats_pid(c, 2), tu_nats_dir(c))
				    : 0;
			if (write(fds[1], info, (size_t)len) != len)
				_exit(2);
			close(fds[1]);
			if (mode == 0 || !c)
				exit(c ? 0 : 1);
			for (;;)
				pause();
		}
		close(fds[1]);
		char info[4200];
		ssize_t n = read(fds[0], info, sizeof(info) - 1);
		close(fds[0]);
		assert_true(n > 0);
		info[n] = '\0';
		int pids[3];
		char dir[4096];
		assert_int_equal(sscanf(info, "%d %d %d %4095s", &pids[0], &pids[1], &pids[2], dir),
				 4);
		assert_true(exists(dir));
		double t = now_ms();
		if (mode == 1)
			kill(child, SIGTERM);
		if (mode == 2)
			kill(child, SIGKILL);
		int st = 0;
		assert_int_equal(waitpid(child, &st, 0), child);
		for (int i = 0; i < 3; i++)
			if (pids[i] > 0)
				assert_true(gone_within(pids[i], 5000));
		printf("# owner ends by %s: its servers gone %.0f ms later\n", how[mode],
		       now_ms() - t);
		if (mode == 0)
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		else
			assert_true(WIFSIGNALED(st) &&
				    WTERMSIG(st) == (mode == 1 ? SIGTERM : SIGKILL));
		if (mode < 2) {
			assert_false(exists(dir));
		} else {
			/* Left behind; swept by the next start in any process (maybe another
			 * test program's, running meanwhile). */
			if (!exists(dir))
				printf("# %s was swept by another process already\n", dir);
			struct tu_nats *c = tu_nats_start(1);
			assert_non_null(c);
			assert_false(exists(dir));
			tu_nats_stop(c);
		}
	}
	assert_int_equal(our_servers(), 0);
}

#if HAVE_NATS

/* ---- through libnats ---- */

struct client {
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
};

static void client_open(struct client *cl, const struct tu_nats *c)
{
	char urls[512];
	const char *servers[TU_NATS_MAX_NODES];
	int n = 0;
	snprintf(urls, sizeof(urls), "%s", tu_nats_urls(c));
	for (char *save, *u = strtok_r(urls, ",", &save); u && n < (int)TU_NATS_MAX_NODES;
	     u = strtok_r(NULL, ",", &save))
		servers[n++] = u;
	assert_int_equal(n, (int)tu_nats_size(c));
	assert_int_equal(natsOptions_Create(&cl->opts), NATS_OK);
	assert_int_equal(natsOptions_SetServers(cl->opts, servers, n), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(cl->opts, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(cl->opts, 100), NATS_OK);
	assert_int_equal(natsOptions_SetFailRequestsOnDisconnect(cl->opts, true), NATS_OK);
	natsStatus s = natsConnection_Connect(&cl->nc, cl->opts);
	if (s != NATS_OK)
		fail_msg("connect to %s: %s", tu_nats_urls(c), natsStatus_GetText(s));
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 2000;
	assert_int_equal(natsConnection_JetStream(&cl->js, cl->nc, &jo), NATS_OK);
}

static void client_close(struct client *cl)
{
	jsCtx_Destroy(cl->js);
	natsConnection_Destroy(cl->nc);
	natsOptions_Destroy(cl->opts);
}

static void add_stream(struct client *cl, const char *name, const char *subject, int replicas)
{
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subjects[] = {subject};
	cfg.Name = name;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = replicas;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_AddStream(&si, cl->js, &cfg, NULL, &jerr);
	if (s != NATS_OK)
		fail_msg("js_AddStream %s: %s (jerr %d)", name, natsStatus_GetText(s), (int)jerr);
	jsStreamInfo_Destroy(si);
}

/* Publish message `i` (Msg-Id "m-<i>", so a retry after a lost ack is not stored
 * twice).  Retries every 50 ms until it is acknowledged or deadline; returns the
 * number of failed attempts (fails the test at the deadline). */
static int publish(struct client *cl, const char *subject, int i, double deadline,
		   natsStatus *last_err)
{
	char id[32], data[64];
	snprintf(id, sizeof(id), "m-%d", i);
	int len = snprintf(data, sizeof(data), "message %d", i);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.MaxWait = 1000;
	for (int failures = 0;; failures++) {
		jsPubAck *pa = NULL;
		jsErrCode jerr = 0;
		natsStatus s = js_Publish(&pa, cl->js, subject, data, len, &po, &jerr);
		jsPubAck_Destroy(pa);
		if (s == NATS_OK)
			return failures;
		*last_err = s;
		if (now_ms() > deadline)
			fail_msg("publish %d: still failing (%s, jerr %d) after %d attempts", i,
				 natsStatus_GetText(s), (int)jerr, failures + 1);
		sleep_ms(50);
	}
}

/* The stream's message count (State.Msgs), asked until it answers or 10 s pass. */
static uint64_t stream_msgs(struct client *cl, const char *stream, uint64_t *last_seq)
{
	double deadline = now_ms() + 10000;
	for (;;) {
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		natsStatus s = js_GetStreamInfo(&si, cl->js, stream, NULL, &jerr);
		if (s == NATS_OK) {
			uint64_t msgs = si->State.Msgs;
			if (last_seq)
				*last_seq = si->State.LastSeq;
			jsStreamInfo_Destroy(si);
			return msgs;
		}
		if (now_ms() > deadline)
			fail_msg("js_GetStreamInfo %s: %s (jerr %d)", stream, natsStatus_GetText(s),
				 (int)jerr);
		sleep_ms(50);
	}
}

/* The leader of `stream`, asked until known or 10 s pass. */
static int leader_of(struct tu_nats *c, const char *stream)
{
	double deadline = now_ms() + 10000;
	int l;
	while ((l = tu_nats_stream_leader(c, stream)) < 0 && now_ms() < deadline)
		sleep_ms(20);
	if (l < 0)
		fail_msg("no leader for stream %s within 10 s", stream);
	return l;
}

/* A 1-node "cluster": no cluster block; a stream survives a clean stop and restart. */
static void test_single_node(void **state)
{
	(void)state;
	double t = now_ms();
	struct tu_nats *c = tu_nats_start(1);
	assert_non_null(c);
	printf("# 1-node start to /healthz 200: %.0f ms\n", now_ms() - t);
	assert_string_equal(tu_nats_urls(c), tu_nats_url(c, 0));
	char path[4200];
	snprintf(path, sizeof(path), "%s/n1.conf", tu_nats_dir(c));
	assert_null(strstr(read_file(path), "cluster {"));

	struct client cl;
	client_open(&cl, c);
	add_stream(&cl, "ONE", "one", 1);
	for (int i = 1; i <= 50; i++)
		assert_int_equal(publish(&cl, "one", i, now_ms() + 5000, &(natsStatus){0}), 0);
	assert_int_equal(stream_msgs(&cl, "ONE", NULL), 50);
	assert_int_equal(tu_nats_stream_leader(c, "ONE"), 0);

	assert_int_equal(tu_nats_stop_node(c, 0), 0);
	assert_int_equal(tu_nats_stream_leader(c, "ONE"), -1); /* nothing running */
	t = now_ms();
	assert_int_equal(tu_nats_restart(c, 0), 0);
	printf("# 1-node restart to /healthz 200: %.0f ms\n", now_ms() - t);
	/* The client reconnects by itself; the stream is read back from the store. */
	assert_int_equal(stream_msgs(&cl, "ONE", NULL), 50);
	natsStatus last = NATS_OK;
	for (int i = 51; i <= 60; i++)
		publish(&cl, "one", i, now_ms() + 10000, &last);
	uint64_t last_seq = 0;
	assert_int_equal(stream_msgs(&cl, "ONE", &last_seq), 60);
	assert_int_equal(last_seq, 60);

	client_close(&cl);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", tu_nats_dir(c));
	tu_nats_stop(c);
	assert_false(exists(dir));
	assert_int_equal(our_servers(), 0);
}

/* 3 nodes, an R3 file stream, 100 messages; the stream leader is SIGKILLed and publishing
 * goes on (retrying) until it works again; the node is restarted and catches up. */
static void test_leader_failover(void **state)
{
	(void)state;
	double t = now_ms();
	struct tu_nats *c = tu_nats_start(3);
	assert_non_null(c);
	printf("# 3-node start to all /healthz 200: %.0f ms\n", now_ms() - t);

	struct client cl;
	client_open(&cl, c);
	t = now_ms();
	add_stream(&cl, "FAIL", "fail", 3);
	printf("# js_AddStream R3: %.0f ms\n", now_ms() - t);
	t = now_ms();
	for (int i = 1; i <= 100; i++)
		assert_int_equal(publish(&cl, "fail", i, now_ms() + 5000, &(natsStatus){0}), 0);
	printf("# 100 js_Publish: %.0f ms\n", now_ms() - t);
	assert_int_equal(stream_msgs(&cl, "FAIL", NULL), 100);

	int leader = leader_of(c, "FAIL");
	char url[128] = "?";
	natsConnection_GetConnectedUrl(cl.nc, url, sizeof(url));
	printf("# stream leader: n%d (the client is connected to %s)\n", leader + 1, url);
	double killed = now_ms();
	assert_int_equal(tu_nats_kill(c, leader), 0);

	/* Publish 101..200, each retried until acknowledged (bounded). */
	int failures = 0;
	double first_ok = 0;
	natsStatus last_err = NATS_OK;
	for (int i = 101; i <= 200; i++) {
		failures += publish(&cl, "fail", i, killed + 60000, &last_err);
		if (i == 101)
			first_ok = now_ms();
	}
	printf("# leader n%d SIGKILLed: publishing worked again after %.0f ms (%d failed "
	       "attempts, last error %s)\n",
	       leader + 1, first_ok - killed, failures, natsStatus_GetText(last_err));
	int new_leader = leader_of(c, "FAIL");
	assert_int_not_equal(new_leader, leader);
	printf("# new stream leader: n%d\n", new_leader + 1);

	t = now_ms();
	assert_int_equal(tu_nats_restart(c, leader), 0);
	printf("# restart of n%d to its /healthz 200 (stream caught up): %.0f ms\n", leader + 1,
	       now_ms() - t);
	assert_int_equal(tu_nats_wait_healthy(c, 15000), 0);

	/* Every message once: 200 messages, sequences 1..200 (Msg-Id dedup absorbed any
	 * retry of a message whose ack was lost). */
	uint64_t last_seq = 0;
	assert_int_equal(stream_msgs(&cl, "FAIL", &last_seq), 200);
	assert_int_equal(last_seq, 200);
	/* The restarted node holds them too (/jsz "messages" counts its local streams').  Not
	 * necessarily at once: /healthz 200 means current with the leader, but a follower
	 * learns that the last entry is committed from the leader's next append or heartbeat
	 * (1 s), so it may show 199 for up to a second. */
	t = now_ms();
	for (int done = 0; !done;) {
		int st = 0;
		char *body = tu_nats_http_get(c, (unsigned)leader, "/jsz", &st);
		assert_int_equal(st, 200);
		done = strstr(body, "\"messages\": 200,") != NULL;
		if (!done && now_ms() - t > 5000) {
			const char *m = strstr(body, "\"messages\"");
			fail_msg("n%d: /jsz says %.16s, not 200, 5 s after it was healthy",
				 leader + 1, m ? m : "(no \"messages\")");
		}
		free(body);
		if (!done)
			sleep_ms(20);
	}
	printf("# restarted n%d holds all 200 messages %.0f ms after its /healthz 200\n",
	       leader + 1, now_ms() - t);

	client_close(&cl);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", tu_nats_dir(c));
	t = now_ms();
	tu_nats_stop(c);
	printf("# stop of 3 nodes: %.0f ms\n", now_ms() - t);
	assert_false(exists(dir));
	assert_int_equal(our_servers(), 0);
}

#endif

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
#if !HAVE_NATS
	fprintf(stderr, "libnats-dev (nats/nats.h) was not installed when this test was built: "
			"run tools/bootstrap\n");
	exit(getenv("RINGLOG_REQUIRE_NATS") ? 1 : 77);
#endif
	tu_nats_require_server();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_control),
		cmocka_unit_test(test_child_leaves_parent_cluster),
		cmocka_unit_test(test_owner_death),
#if HAVE_NATS
		cmocka_unit_test(test_single_node),
		cmocka_unit_test(test_leader_failover),
#endif
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
#if HAVE_NATS
	nats_CloseAndWait(2000);
#endif
	assert_int_equal(our_servers(), 0);
	return r;
}
