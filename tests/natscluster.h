/*
 * A real NATS JetStream cluster for tests: n nats-server processes (1..5) on 127.0.0.1,
 * each with its own client, monitoring and route ports, its own store directory and log.
 *
 * Node numbers are 0-based: node i is the server named "n<i+1>".  Everything a cluster
 * uses lives in one temporary directory, $TMPDIR/ringlog-nats-<pid>-XXXXXX (or under
 * /tmp): n<k>.conf (the config written here), n<k>.log (the server's stdout and stderr,
 * appended to across restarts) and n<k>/ (its JetStream store_dir).
 *
 * Needs the nats-server program ($RINGLOG_NATS_SERVER if set, else looked up in $PATH,
 * then /usr/sbin, /usr/bin; Debian's package nats-server, 2.9.10 here).  Without it
 * tu_nats_start says so and returns NULL, and the caller skips (tu_nats_start_or_skip,
 * tu_nats_require_server do that).
 *
 * Nothing is left running, whatever way the test ends:
 *  - tu_nats_stop; else an atexit handler (normal exit, a cmocka failure's exit, exit(77));
 *  - handlers for SIGTERM, SIGINT, SIGABRT and SIGSEGV (a runner's timeout, ^C, abort(), a
 *    crash) that SIGKILL and reap the servers, remove the directory, then let the signal
 *    kill the process as it would have.  As in fsimage.c, a handler is installed (at each
 *    tu_nats_start) only where the signal still has its default action, so cmocka's and
 *    the sanitizers' own handlers are left alone;
 *  - SIGKILL of the test, or an _exit (ASan's death): every server is started with
 *    prctl(PR_SET_PDEATHSIG, SIGKILL), so the kernel kills it when the test dies.  That
 *    signal follows the *thread* that forked the server: start, restart and stop clusters
 *    from a thread that outlives them (the main thread; cmocka runs tests there).  The
 *    directory such a process leaves is removed by the next tu_nats_start of any process
 *    (the directory name carries the owner's pid; a pid that no longer runs marks it
 *    stale, and a server still running on it is killed first).
 *
 * A cluster belongs to the process that started it.  A child made with fork() inherits the
 * handle but never stops its parent's servers or removes their directory, neither when it
 * exits nor when it is killed; in a child, tu_nats_kill/restart/stop_node refuse (-EPERM:
 * the servers are not its children) and tu_nats_stop only forgets the handle.  The
 * read-only calls (urls, wait_healthy, stream_leader, http_get) work in a child.
 *
 * Ports: random, below the kernel's ephemeral range (net.ipv4.ip_local_port_range; from
 * 20000 up), each checked free by binding it: a port taken from the ephemeral range (by
 * binding port 0) can be taken by any outgoing connection, the cluster's own route
 * connections included, between the check and the server's bind or while a node is down.
 * If a node still finds its port taken, tu_nats_start tries again with new ports (3 tries).
 *
 * Readiness is /healthz 200 (nats-server 2.9.10: ready for clients, JetStream on, a meta
 * leader known and current with it, every stream and consumer it holds current).  Mind:
 *  - after a SIGKILL of the meta leader, the other nodes still answer 200 for about 2 s
 *    (then 503 "not current with the meta leader" until the election, ~5.5 s after the
 *    kill): tu_nats_wait_healthy straight after tu_nats_kill proves nothing.  A clean stop
 *    (tu_nats_stop_node) hands the leadership over in ~30 ms;
 *  - a restarted follower answers 200 while its copy of a stream may still lack the last
 *    message (it learns that it was committed from the leader's next heartbeat, ~1 s):
 *    read counts from the stream leader (js_GetStreamInfo), not from its /jsz.
 * Each failed /healthz poll is a "Healthcheck failed" warning in the node's log (polls
 * are every 20 ms for the first second, then every 100 ms); printed log tails skip them.
 *
 * Timings on this machine (2 vCPU, nats-server 2.9.10; 7 runs of test_natscluster): start
 * to all /healthz 200, 3 nodes 0.17-0.49 s, 1 node 25 ms; SIGKILL + reap 2 ms; restart to
 * /healthz 200 about 1 s after a SIGKILL, 2 s after a clean stop, 4-7 s when the node
 * killed was the meta leader (the election is waited for); a 1-node restart 25 ms; clean
 * stop of a node 5 ms, of 3 nodes 10-40 ms.  A SIGKILLed R3 stream leader: publishing
 * works again 4.3-7.0 s later.
 *
 * SIGKILL of the test: its servers die at once, but are zombies until the machine's pid 1
 * reaps them (here `pgrep nats-server` lists them, state Z, for up to 2 s).
 *
 * Call these from one thread at a time (a test's main thread, or setup/teardown).
 * Messages go to stderr, the reason on the last line (run.sh shows the last line of a
 * skipped test's log).
 */
#ifndef RL_NATSCLUSTER_H
#define RL_NATSCLUSTER_H

#define TU_NATS_MAX_NODES 5u
/* How long tu_nats_start and tu_nats_restart wait for /healthz 200. */
#define TU_NATS_START_TIMEOUT_MS 15000
/* How long tu_nats_stop_node and tu_nats_stop wait after SIGTERM before SIGKILL. */
#define TU_NATS_STOP_TIMEOUT_MS 10000

struct tu_nats; /* a cluster of n nats-server processes */

/* Start n (1..5) nats-servers with JetStream (max_file_store 1 GiB, max_memory_store 256 MiB:
 * "1GB" and "256MB" in the config; in nats-server's config "1G" means 10^9, "1GB" 2^30)
 * named n1..nN, in cluster "ringlog" (listen + routes to the other nodes) when n > 1, and
 * wait up to TU_NATS_START_TIMEOUT_MS until every node's /healthz answers 200.  Returns
 * NULL and prints why when it cannot (nats-server missing, ports, a node that exits, with
 * the tail of its log, a timeout with each unhealthy node's /healthz answer and log).  At
 * most 8 clusters at once per process.  The handle is static storage: never freed by the caller. */
struct tu_nats *tu_nats_start(unsigned n);

/* tu_nats_start, or exit 77 (skipped) after its message.  With RINGLOG_REQUIRE_NATS set in
 * the environment (a CI machine where this must work) it exits 1 instead. */
struct tu_nats *tu_nats_start_or_skip(unsigned n);

/* Exit 77 (or 1 with RINGLOG_REQUIRE_NATS) with a message if nats-server is not installed;
 * for a test's main() before it runs anything. */
void tu_nats_require_server(void);

/* The client URLs of all nodes, comma-separated ("nats://127.0.0.1:P1,nats://127.0.0.1:P2"),
 * and of node `node` alone (NULL for a node out of range).  Valid until tu_nats_stop. */
const char *tu_nats_urls(const struct tu_nats *c);
const char *tu_nats_url(const struct tu_nats *c, unsigned node);

/* The number of nodes; the temporary directory holding everything; node's store_dir. */
unsigned tu_nats_size(const struct tu_nats *c);
const char *tu_nats_dir(const struct tu_nats *c);
const char *tu_nats_store_dir(const struct tu_nats *c, unsigned node);
/* The pid of node's server, 0 when it is not running. */
int tu_nats_pid(const struct tu_nats *c, unsigned node);

/* Kill node's server with SIGKILL and reap it.  0, -EINVAL (no such node), -ESRCH (not
 * running), -EPERM (called in a process that did not start the cluster). */
int tu_nats_kill(struct tu_nats *c, unsigned node);
/* Start node's server again with the same config, ports and store, and wait up to
 * TU_NATS_START_TIMEOUT_MS until its /healthz is 200 (so it has caught up with the meta
 * leader and its streams).  0; -EBUSY if it is running; -EIO if it exits at once (its log
 * tail printed; -EADDRINUSE if its port was taken meanwhile); -ETIMEDOUT, leaving it
 * running (tu_nats_wait_healthy can wait longer); -EINVAL, -EPERM as above. */
int tu_nats_restart(struct tu_nats *c, unsigned node);
/* Stop node's server cleanly: SIGTERM, then wait up to TU_NATS_STOP_TIMEOUT_MS (it is
 * SIGKILLed after that: -ETIMEDOUT).  nats-server exits with status 1 on SIGTERM; that is
 * a clean stop.  0, -ESRCH, -EINVAL, -EPERM as above. */
int tu_nats_stop_node(struct tu_nats *c, unsigned node);

/* Wait (bounded by timeout_ms) until every running node's /healthz is 200.  0 or
 * -ETIMEDOUT (printing each unhealthy node's answer); -ECHILD, with its log tail, if a node
 * exited without being killed or stopped here. */
int tu_nats_wait_healthy(struct tu_nats *c, int timeout_ms);

/* The node leading stream `stream` (in any account), from /jsz?streams=true of the running
 * nodes: the node that reports itself as the leader, else the running node the others
 * report; -1 if unknown (no such stream, or an election going on: a killed leader is never
 * returned). */
int tu_nats_stream_leader(struct tu_nats *c, const char *stream);

/* GET `path` (e.g. "/jsz?streams=true", "/varz") from node's monitoring port, waiting at
 * most 2 s.  Returns the body (malloc'd, NUL-terminated; caller frees) and the HTTP status
 * in *status (if not NULL), or NULL (with *status = -errno) when there is no answer. */
char *tu_nats_http_get(const struct tu_nats *c, unsigned node, const char *path, int *status);

/* Stop every node (SIGTERM, bounded, then SIGKILL), reap them, remove the store directories
 * and the temporary directory.  Idempotent (and a no-op for NULL); the handle must not be
 * used afterwards except for more tu_nats_stop calls, until its slot is reused by a later
 * tu_nats_start. */
void tu_nats_stop(struct tu_nats *c);

#endif
