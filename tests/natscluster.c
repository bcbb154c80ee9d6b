#include "natscluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLUSTERS 8
#define DIR_PREFIX "ringlog-nats-"
#define CLUSTER_NAME "ringlog"
#define START_TRIES 3
#define HTTP_TIMEOUT_MS 2000
#define POLL_MS 20

/* One node.  pid is read and cleared by the signal handlers, so it is an atomic and the
 * one who swaps it to 0 is the one who kills and reaps. */
struct node {
	atomic_int pid; /* running server, 0 = none */
	int client_port, monitor_port, route_port;
	int status;    /* wait status of its last exit */
	int accounted; /* its last exit was asked for (kill, stop) or reported already */
	char url[40];
	char store[PATH_MAX + 8];
};

/* One cluster; the handle is the slot.  The signal handlers read this table, so it holds
 * no pointers to the heap and a slot's fields are written before it becomes LIVE. */
enum { SLOT_FREE, SLOT_TAKEN, SLOT_LIVE };
struct tu_nats {
	atomic_int state;
	pid_t owner; /* the process that started it: only that one stops it */
	unsigned n;
	char base[PATH_MAX];
	char server[PATH_MAX]; /* the nats-server program */
	char urls[TU_NATS_MAX_NODES * 40];
	struct node nodes[TU_NATS_MAX_NODES];
};
static struct tu_nats g_slots[MAX_CLUSTERS];

static const int g_signals[] = {SIGTERM, SIGINT, SIGABRT, SIGSEGV};
#define NSIGNALS (sizeof(g_signals) / sizeof(g_signals[0]))

static atomic_int g_atexit_done;

/* ---- cleanup (async-signal-safe: only syscalls, no stdio, no malloc) ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_str(const char *s)
{
	ssize_t n = write(STDERR_FILENO, s, strlen(s));
	(void)n;
}

static void put_num(long v)
{
	char buf[24], *p = buf + sizeof(buf);
	*--p = '\0';
	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	put_str(p);
}

/* Remove `name` (relative to dirfd) and everything under it, not following symlinks.
 * Uses only openat/getdents64/unlinkat: callable from a signal handler.  Entries are
 * removed while listing, so each directory is listed again until a pass finds nothing
 * left (bounded).  Returns 0 or -errno of the last failure. */
static int rm_tree_at(int dirfd, const char *name, int depth)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth > 32)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	int err = 0;
	for (int pass = 0, found = 1; found && pass < 64; pass++) {
		found = 0;
		if (lseek(fd, 0, SEEK_SET) < 0)
			break;
		char buf[2048] __attribute__((aligned(8)));
		ssize_t len;
		while ((len = getdents64(fd, buf, sizeof(buf))) > 0) {
			for (ssize_t off = 0; off < len;) {
				struct dirent64 *de = (struct dirent64 *)(void *)(buf + off);
				off += de->d_reclen;
				if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
					continue;
				found = 1;
				int r = rm_tree_at(fd, de->d_name, depth + 1);
				if (r)
					err = r;
			}
		}
		if (err)
			break;
	}
	close(fd);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		err = -errno;
	return err;
}

static int rm_tree(const char *path)
{
	return rm_tree_at(AT_FDCWD, path, 0);
}

/* SIGKILL and reap every server of cluster c (owned by this process), remove its
 * directory.  Whoever swaps a node's pid to 0 kills and reaps it. */
static void kill_and_remove(struct tu_nats *c)
{
	int pids[TU_NATS_MAX_NODES];
	for (unsigned i = 0; i < c->n; i++) {
		pids[i] = atomic_exchange(&c->nodes[i].pid, 0);
		if (pids[i] > 0)
			kill(pids[i], SIGKILL);
	}
	for (unsigned i = 0; i < c->n; i++)
		if (pids[i] > 0)
			while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
				;
	rm_tree(c->base);
}

/* Clean up every cluster this process owns; returns how many. */
static int cleanup_owned(void)
{
	pid_t self = getpid();
	int n = 0;
	for (int i = 0; i < MAX_CLUSTERS; i++) {
		struct tu_nats *c = &g_slots[i];
		if (atomic_load(&c->state) != SLOT_LIVE || c->owner != self)
			continue;
		kill_and_remove(c);
		n++;
	}
	return n;
}

static void on_signal(int sig)
{
	int saved = errno;
	int live = 0;
	pid_t self = getpid();
	for (int i = 0; i < MAX_CLUSTERS; i++)
		live += atomic_load(&g_slots[i].state) == SLOT_LIVE && g_slots[i].owner == self;
	if (live) {
		put_str("natscluster: signal ");
		put_num(sig);
		put_str(": killing ");
		put_num(live);
		put_str(" test NATS cluster(s)\n");
		cleanup_owned();
	}
	/* Die of the signal as the process would have without us: the signal is blocked
	 * while this runs, so it is delivered (to the default action) on return; a fault
	 * (SIGSEGV) happens again on return and kills as well. */
	signal(sig, SIG_DFL);
	raise(sig);
	errno = saved;
}

static void at_exit(void)
{
	int n = cleanup_owned();
	if (n) {
		put_str("natscluster: exit: killed ");
		put_num(n);
		put_str(" test NATS cluster(s) not stopped by the test\n");
	}
}

/* Install on_signal for each signal still at its default action (a program, cmocka or a
 * sanitizer handling a signal keeps it), and the atexit handler once. */
static void install_handlers(void)
{
	for (size_t i = 0; i < NSIGNALS; i++) {
		struct sigaction cur;
		if (sigaction(g_signals[i], NULL, &cur) != 0 || cur.sa_handler != SIG_DFL ||
		    (cur.sa_flags & SA_SIGINFO))
			continue;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		for (size_t j = 0; j < NSIGNALS; j++)
			sigaddset(&sa.sa_mask, g_signals[j]);
		sigaction(g_signals[i], &sa, NULL);
	}
	if (atomic_exchange(&g_atexit_done, 1) == 0)
		atexit(at_exit);
}

static void block_signals(sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < NSIGNALS; i++)
		sigaddset(&set, g_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

static void restore_signals(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ---- messages ---- */

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("natscluster: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void log_path(const struct tu_nats *c, unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/n%u.log", c->base, i + 1);
}

static void conf_path(const struct tu_nats *c, unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/n%u.conf", c->base, i + 1);
}

/* Read the last `max` bytes of node i's log into buf (NUL-terminated). */
static void log_tail(const struct tu_nats *c, unsigned i, char *buf, size_t max)
{
	char path[PATH_MAX + 16];
	log_path(c, i, path, sizeof(path));
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)(max - 1) ? end - (off_t)(max - 1) : 0;
	ssize_t n = pread(fd, buf, max - 1, from);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
}

/* Print the last lines of node i's log, indented.  The "Healthcheck failed" warnings our
 * own polling makes (one per poll while it is not ready) are left out but the last. */
static void print_log_tail(const struct tu_nats *c, unsigned i)
{
	enum { TAIL = 32768, LINES = 20 };
	char *buf = malloc(TAIL), path[PATH_MAX + 16];
	if (!buf)
		return;
	log_tail(c, i, buf, TAIL);
	log_path(c, i, path, sizeof(path));
	/* Split into lines (the first may be partial when the tail was cut: dropped). */
	const char *lines[LINES];
	int nl = 0, omitted = 0;
	const char *last_hc = NULL;
	char *p = buf;
	if (strlen(buf) == TAIL - 1 && strchr(p, '\n'))
		p = strchr(p, '\n') + 1;
	for (char *save, *l = strtok_r(p, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (strstr(l, "Healthcheck failed")) {
			last_hc = l;
			omitted++;
			continue;
		}
		if (nl == LINES) {
			memmove(lines, lines + 1, sizeof(lines[0]) * (LINES - 1));
			nl--;
		}
		lines[nl++] = l;
	}
	fprintf(stderr, "    --- end of %s ---\n", path);
	for (int k = 0; k < nl; k++)
		fprintf(stderr, "    %s\n", lines[k]);
	if (last_hc)
		fprintf(
		    stderr,
		    "    (%d \"Healthcheck failed\" lines from our polling; the last:)\n    %s\n",
		    omitted, last_hc);
	fprintf(stderr, "    ---\n");
	free(buf);
}

static const char *status_str(int st)
{
	static char buf[64];
	if (WIFEXITED(st))
		snprintf(buf, sizeof(buf), "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, sizeof(buf), "was killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, sizeof(buf), "ended (wait status %#x)", (unsigned)st);
	return buf;
}

/* ---- the server program, ports, directories ---- */

/* Find nats-server: $RINGLOG_NATS_SERVER if set, else in $PATH, /usr/sbin, /usr/bin.
 * 0 with its path, or -ENOENT (reported). */
static int find_server(char *path, size_t len)
{
	const char *override = getenv("RINGLOG_NATS_SERVER");
	if (override && *override) {
		if ((size_t)snprintf(path, len, "%s", override) < len && access(path, X_OK) == 0)
			return 0;
		report("RINGLOG_NATS_SERVER=%s: %s", override, strerror(errno));
		return -ENOENT;
	}
	const char *env = getenv("PATH");
	char *dirs;
	if (asprintf(&dirs, "%s:/usr/sbin:/usr/bin", env ? env : "") < 0)
		return -ENOMEM;
	int err = -ENOENT;
	for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d == '\0' || (size_t)snprintf(path, len, "%s/nats-server", d) >= len)
			continue;
		struct stat st;
		if (access(path, X_OK) == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			err = 0;
			break;
		}
	}
	free(dirs);
	if (err)
		report("nats-server not found (searched $PATH, /usr/sbin, /usr/bin): run "
		       "tools/bootstrap (Debian package nats-server)");
	return err;
}

static const char *tmp_base(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

/* A socket bound to 127.0.0.1:port (SO_REUSEADDR, like the server's own listeners, so
 * TIME_WAIT leftovers of an earlier run do not count as taken), or -errno. */
static int bind_port(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static unsigned random_u32(void)
{
	unsigned v;
	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = (unsigned)now_ms() * 2654435761u ^ (unsigned)getpid();
	return v;
}

/* Pick 3 free ports per node for c: random in [20000, start of the ephemeral range) (or,
 * if that range is too small, whatever bind(0) gives), each checked by binding it; the
 * check sockets stay open until all are picked, so they are distinct.  0 or -errno. */
static int pick_ports(struct tu_nats *c)
{
	int lo = 20000, hi = 32768;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		int a, b;
		if (fscanf(f, "%d %d", &a, &b) == 2)
			hi = a;
		fclose(f);
	}
	int fds[3 * TU_NATS_MAX_NODES], nfds = 0, err = 0;
	for (unsigned i = 0; i < c->n && !err; i++) {
		int *ports[3] = {&c->nodes[i].client_port, &c->nodes[i].monitor_port,
				 &c->nodes[i].route_port};
		for (int k = 0; k < 3 && !err; k++) {
			int fd = -1, port = 0;
			for (int tries = 0; fd < 0 && tries < 200; tries++) {
				port = hi - lo >= 1000
					   ? lo + (int)(random_u32() % (unsigned)(hi - lo))
					   : 0;
				fd = bind_port(port);
			}
			if (fd < 0) {
				err = fd;
				break;
			}
			if (port == 0) {
				struct sockaddr_in a;
				socklen_t alen = sizeof(a);
				getsockname(fd, (struct sockaddr *)&a, &alen);
				port = ntohs(a.sin_port);
			}
			fds[nfds++] = fd;
			*ports[k] = port;
		}
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return err;
}

/* Write node i's config file.  0 or -errno. */
static int write_config(const struct tu_nats *c, unsigned i)
{
	char path[PATH_MAX + 16];
	conf_path(c, i, path, sizeof(path));
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	const struct node *nd = &c->nodes[i];
	fprintf(f,
		"# written by tests/natscluster.c\n"
		"server_name: n%u\n"
		"listen: 127.0.0.1:%d\n"
		"http: 127.0.0.1:%d\n"
		"jetstream {\n"
		"  store_dir: \"%s\"\n"
		"  max_file_store: 1GB\n"
		"  max_memory_store: 256MB\n"
		"}\n",
		i + 1, nd->client_port, nd->monitor_port, nd->store);
	if (c->n > 1) {
		fprintf(f,
			"cluster {\n"
			"  name: " CLUSTER_NAME "\n"
			"  listen: 127.0.0.1:%d\n"
			"  routes: [\n",
			nd->route_port);
		for (unsigned j = 0; j < c->n; j++)
			if (j != i)
				fprintf(f, "    nats-route://127.0.0.1:%d\n",
					c->nodes[j].route_port);
		fprintf(f, "  ]\n}\n");
	}
	int err = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && !err)
		err = -errno;
	return err;
}

/* ---- processes ---- */

/* Move fd to 3 or above (close-on-exec), so the child's dup2 onto 0..2 cannot clobber it. */
static int high_fd(int fd)
{
	if (fd < 0 || fd > 2)
		return fd;
	int h = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return h;
}

/* Start node i's server.  Returns 0 (pid recorded), or -errno after reporting why. */
static int spawn_node(struct tu_nats *c, unsigned i)
{
	char conf[PATH_MAX + 16], logp[PATH_MAX + 16];
	conf_path(c, i, conf, sizeof(conf));
	log_path(c, i, logp, sizeof(logp));
	int logfd = high_fd(open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
	if (logfd < 0) {
		int e = errno;
		report("n%u: cannot open its log %s: %s", i + 1, logp, strerror(e));
		return -e;
	}
	int nullfd = high_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
	int pfd[2] = {-1, -1};
	if (nullfd < 0 || pipe2(pfd, O_CLOEXEC) != 0) {
		int e = errno;
		report("n%u: cannot set up its stdin or exec pipe: %s", i + 1, strerror(e));
		close(logfd);
		if (nullfd >= 0)
			close(nullfd);
		return -e;
	}
	pfd[1] = high_fd(pfd[1]);
	char *argv[] = {c->server, "-c", conf, NULL};
	pid_t parent = getpid();

	/* Every signal blocked from before the fork until the pid is recorded (a handler in
	 * between would not know to kill this server) and, in the child, until its handlers
	 * are reset (the parent's handlers must not run in it). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		/* The child of a possibly multi-threaded process: async-signal-safe calls only. */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		for (int s = 1; s < NSIG; s++)
			if (s != SIGKILL && s != SIGSTOP)
				sigaction(s, &dfl, NULL);
		int e = 0;
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			e = errno;
		else if (getppid() != parent)
			_exit(127); /* the test died already: do not start */
		if (!e && (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
			   dup2(pfd[1], 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0))
			e = errno;
		/* Nothing else of the test (its client sockets above all) goes to the server. */
		if (!e && close_range(4, ~0u, 0) != 0)
			for (int fd = 4; fd < 4096; fd++)
				close(fd);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (!e) {
			execv(argv[0], argv);
			e = errno;
		}
		ssize_t w = write(3, &e, sizeof(e));
		(void)w;
		_exit(127);
	}
	int fork_err = pid < 0 ? errno : 0;
	if (pid > 0) {
		atomic_store(&c->nodes[i].pid, pid);
		c->nodes[i].accounted = 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(pfd[1]);
	close(logfd);
	close(nullfd);
	if (pid < 0) {
		close(pfd[0]);
		report("n%u: fork: %s", i + 1, strerror(fork_err));
		return -fork_err;
	}
	/* EOF: exec succeeded (the pipe is close-on-exec); an int: the child's errno. */
	int child_err = 0;
	ssize_t r;
	while ((r = read(pfd[0], &child_err, sizeof(child_err))) < 0 && errno == EINTR)
		;
	close(pfd[0]);
	if (r == (ssize_t)sizeof(child_err)) {
		sigset_t o;
		block_signals(&o);
		int p = atomic_exchange(&c->nodes[i].pid, 0);
		if (p > 0)
			waitpid(p, NULL, 0);
		restore_signals(&o);
		report("n%u: cannot run %s: %s", i + 1, c->server, strerror(child_err));
		return -child_err;
	}
	return 0;
}

/* If node i's server has ended (or, with wait, once it ends), reap it: 1 (its wait status
 * in nd->status; -1 if someone else reaped it), else 0.  1 also when it was not running. */
static int reap(struct tu_nats *c, unsigned i, int wait)
{
	struct node *nd = &c->nodes[i];
	sigset_t old;
	block_signals(&old);
	int pid = atomic_load(&nd->pid), done = 1;
	if (pid > 0) {
		int st = 0;
		pid_t r;
		while ((r = waitpid(pid, &st, wait ? 0 : WNOHANG)) < 0 && errno == EINTR)
			;
		if (r == pid || (r < 0 && errno == ECHILD)) {
			nd->status = r == pid ? st : -1;
			atomic_compare_exchange_strong(&nd->pid, &pid, 0);
		} else {
			done = 0;
		}
	}
	restore_signals(&old);
	return done;
}

/* ---- HTTP to the monitoring port ---- */

/* GET path from 127.0.0.1:port within timeout_ms.  Returns the HTTP status with the body
 * in *body (malloc'd, NUL-terminated) if body is not NULL, or -errno. */
static int http_get(int port, const char *path, int timeout_ms, char **body)
{
	if (body)
		*body = NULL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	char req[512];
	int reqlen = snprintf(req, sizeof(req),
			      "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
			      path, port);
	int err = 0;
	if (reqlen >= (int)sizeof(req))
		err = -ENAMETOOLONG;
	else if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		err = -errno;
	for (int off = 0; !err && off < reqlen;) {
		ssize_t w = send(fd, req + off, (size_t)(reqlen - off), MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			err = w < 0 ? -errno : -EIO;
		else
			off += (int)w;
	}
	size_t cap = 4096, len = 0;
	char *buf = err ? NULL : malloc(cap);
	if (!err && !buf)
		err = -ENOMEM;
	long deadline = now_ms() + timeout_ms;
	while (!err) {
		if (len + 1 >= cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				err = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
		if (r < 0 && errno == EINTR && now_ms() < deadline)
			continue;
		if (r < 0)
			err = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		else if (r == 0)
			break;
		else
			len += (size_t)r;
	}
	close(fd);
	if (err) {
		free(buf);
		return err;
	}
	buf[len] = '\0';
	int status = 0;
	if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1 || status <= 0) {
		free(buf);
		return -EPROTO;
	}
	if (body) {
		const char *b = strstr(buf, "\r\n\r\n");
		b = b ? b + 4 : buf + len;
		memmove(buf, b, strlen(b) + 1);
		*body = buf;
	} else {
		free(buf);
	}
	return status;
}

/* ---- a minimal JSON walker (enough for /jsz) ---- */

static const char *ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
		p++;
	return p;
}

/* The end of the JSON value at p, or NULL if malformed. */
static const char *skip_value(const char *p)
{
	p = ws(p);
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++)
			if (*p == '\\' && p[1])
				p++;
		return *p ? p + 1 : NULL;
	}
	if (*p == '{' || *p == '[') {
		int depth = 0;
		for (; *p; p++) {
			if (*p == '"') {
				p = skip_value(p);
				if (!p)
					return NULL;
				p--;
			} else if (*p == '{' || *p == '[') {
				depth++;
			} else if ((*p == '}' || *p == ']') && --depth == 0) {
				return p + 1;
			}
		}
		return NULL;
	}
	const char *s = p;
	while (*p && !strchr(",}] \n\r\t", *p))
		p++;
	return p > s ? p : NULL;
}

/* The value of member `key` of the object at p, or NULL. */
static const char *member(const char *p, const char *key)
{
	if (!p || *(p = ws(p)) != '{')
		return NULL;
	p = ws(p + 1);
	if (*p == '}')
		return NULL;
	for (;;) {
		if (*p != '"')
			return NULL;
		const char *k = p + 1, *kend = skip_value(p);
		if (!kend)
			return NULL;
		size_t klen = (size_t)(kend - 1 - k);
		p = ws(kend);
		if (*p != ':')
			return NULL;
		p = ws(p + 1);
		if (klen == strlen(key) && memcmp(k, key, klen) == 0)
			return p;
		if (!(p = skip_value(p)))
			return NULL;
		p = ws(p);
		if (*p != ',')
			return NULL;
		p = ws(p + 1);
	}
}

/* Element `idx` of the array at p, or NULL. */
static const char *element(const char *p, int idx)
{
	if (!p || *(p = ws(p)) != '[')
		return NULL;
	p = ws(p + 1);
	if (*p == ']')
		return NULL;
	for (int i = 0;; i++) {
		if (i == idx)
			return p;
		if (!(p = skip_value(p)))
			return NULL;
		p = ws(p);
		if (*p != ',')
			return NULL;
		p = ws(p + 1);
	}
}

/* Copy the JSON string at p (without unescaping) into buf; 0, or -1 if not a string. */
static int string_value(const char *p, char *buf, size_t len)
{
	const char *end;
	if (!p || *(p = ws(p)) != '"' || !(end = skip_value(p)))
		return -1;
	size_t n = (size_t)(end - p - 2);
	if (n >= len)
		return -1;
	memcpy(buf, p + 1, n);
	buf[n] = '\0';
	return 0;
}

/* In a /jsz?streams=true answer, the leader named for `stream` (server name into buf).
 * 0, or -1 if the stream is not there or has no leader. */
static int jsz_leader(const char *jsz, const char *stream, char *buf, size_t len)
{
	const char *accs = member(jsz, "account_details");
	for (int a = 0; accs && element(accs, a); a++) {
		const char *sd = member(element(accs, a), "stream_detail");
		for (int s = 0; sd && element(sd, s); s++) {
			const char *st = element(sd, s);
			char name[256];
			if (string_value(member(st, "name"), name, sizeof(name)) != 0 ||
			    strcmp(name, stream) != 0)
				continue;
			const char *cl = member(st, "cluster");
			if (string_value(member(cl, "leader"), buf, len) == 0 && buf[0])
				return 0;
			return -1;
		}
	}
	return -1;
}

/* ---- stale directories ---- */

/* 1 if no process `pid` runs any more: none exists, or only its zombie. */
static int process_gone(int pid)
{
	if (kill(pid, 0) != 0)
		return errno == ESRCH;
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')'); /* "pid (comm) S ...", comm may hold ')' */
	return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* SIGKILL any process whose command line has "-c <base>/..." (a server left on a stale
 * directory: it should have died with its owner; this is belt and braces).  Returns how
 * many. */
static int kill_servers_under(const char *base)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	size_t blen = strlen(base);
	int killed = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		char path[64], cmd[4096];
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (n <= 0)
			continue;
		cmd[n] = '\0';
		for (char *arg = cmd; arg < cmd + n; arg += strlen(arg) + 1) {
			if (strcmp(arg, "-c") != 0 || arg + 3 > cmd + n)
				continue;
			const char *conf = arg + 3;
			if (strncmp(conf, base, blen) == 0 && conf[blen] == '/' &&
			    kill(pid, SIGKILL) == 0) {
				killed++;
				for (int t = 0; t < 100 && !process_gone(pid); t++)
					sleep_ms(10);
			}
			break;
		}
	}
	closedir(d);
	return killed;
}

/* Remove what processes that died without cleaning up (SIGKILL, _exit) left in the
 * temporary directory: DIR_PREFIX<pid>-XXXXXX whose pid no longer runs. */
static void sweep_stale(void)
{
	const char *tmp = tmp_base();
	DIR *d = opendir(tmp);
	if (!d)
		return;
	sigset_t old;
	block_signals(&old);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int pid = 0, end = 0;
		if (sscanf(de->d_name, DIR_PREFIX "%d-%n", &pid, &end) != 1 || end == 0 || pid <= 0)
			continue;
		if (!process_gone(pid))
			continue;
		char base[PATH_MAX];
		snprintf(base, sizeof(base), "%s/%s", tmp, de->d_name);
		int killed = kill_servers_under(base);
		int r = rm_tree(base);
		fprintf(stderr, "natscluster: removed %s, left by dead process %d%s%s\n", base, pid,
			killed ? " (and killed a nats-server still running on it)" : "",
			r ? " (not all of it could be removed)" : "");
	}
	closedir(d);
	restore_signals(&old);
}

/* ---- the cluster ---- */

static struct tu_nats *new_slot(unsigned n, const char *server)
{
	struct tu_nats *c = NULL;
	for (int i = 0; i < MAX_CLUSTERS && !c; i++) {
		int expect = SLOT_FREE;
		if (atomic_compare_exchange_strong(&g_slots[i].state, &expect, SLOT_TAKEN))
			c = &g_slots[i];
	}
	if (!c) {
		report("more than %d clusters at once (tu_nats_stop the ones done with)",
		       MAX_CLUSTERS);
		return NULL;
	}
	char base[PATH_MAX];
	const char *tmp = tmp_base();
	if ((size_t)snprintf(base, sizeof(base), "%s/" DIR_PREFIX "%d-XXXXXX", tmp,
			     (int)getpid()) >= sizeof(base) - 32) {
		report("$TMPDIR is too long");
		atomic_store(&c->state, SLOT_FREE);
		return NULL;
	}
	if (strpbrk(base, "\"\\\n")) {
		report("$TMPDIR (%s) holds a quote, backslash or newline: cannot put it in a "
		       "nats-server config",
		       tmp);
		atomic_store(&c->state, SLOT_FREE);
		return NULL;
	}
	/* Blocked until the slot is LIVE, so a handler sees either nothing or all of it. */
	sigset_t old;
	block_signals(&old);
	if (!mkdtemp(base)) {
		int e = errno;
		restore_signals(&old);
		atomic_store(&c->state, SLOT_FREE);
		report("mkdtemp(%s): %s", base, strerror(e));
		return NULL;
	}
	c->owner = getpid();
	c->n = n;
	strcpy(c->base, base);
	snprintf(c->server, sizeof(c->server), "%s", server);
	for (unsigned i = 0; i < TU_NATS_MAX_NODES; i++) {
		struct node *nd = &c->nodes[i];
		atomic_store(&nd->pid, 0);
		nd->client_port = nd->monitor_port = nd->route_port = 0;
		nd->status = 0;
		nd->accounted = 0;
		nd->url[0] = '\0';
		snprintf(nd->store, sizeof(nd->store), "%s/n%u", base, i + 1);
	}
	c->urls[0] = '\0';
	atomic_store(&c->state, SLOT_LIVE);
	restore_signals(&old);
	return c;
}

/* 1 if c is a live cluster and node < n, else 0 (and report, with `what`). */
static int valid(const struct tu_nats *c, unsigned node, const char *what)
{
	if (!c || atomic_load(&c->state) != SLOT_LIVE) {
		report("%s: not a running cluster (stopped already?)", what);
		return 0;
	}
	if (node >= c->n) {
		report("%s: no node %u in a %u-node cluster (nodes are 0-based)", what, node, c->n);
		return 0;
	}
	return 1;
}

/* valid() and owned by this process. 0 or -errno (reported). */
static int check_owned(const struct tu_nats *c, unsigned node, const char *what)
{
	if (!valid(c, node, what))
		return -EINVAL;
	if (c->owner != getpid()) {
		report("%s: the cluster belongs to process %d, not to this one (%d): its servers "
		       "are not our children",
		       what, (int)c->owner, (int)getpid());
		return -EPERM;
	}
	return 0;
}

/* 1 if node i's log says it could not listen because a port was taken. */
static int port_taken(const struct tu_nats *c, unsigned i)
{
	char buf[4096];
	log_tail(c, i, buf, sizeof(buf));
	return strstr(buf, "address already in use") != NULL;
}

/* Report that node i ended unexpectedly (its status and log tail). */
static void report_exit(struct tu_nats *c, unsigned i, const char *what)
{
	c->nodes[i].accounted = 1;
	print_log_tail(c, i);
	if (c->nodes[i].status == -1)
		report("%s: n%u (%s) has ended (reaped elsewhere)", what, i + 1, c->nodes[i].url);
	else
		report("%s: n%u (%s) %s%s", what, i + 1, c->nodes[i].url,
		       status_str(c->nodes[i].status),
		       port_taken(c, i) ? ": a port of its was taken by another process" : "");
}

/* Wait until /healthz of every node in `mask` is 200 in one pass (or deadline).  0,
 * -ETIMEDOUT (each unhealthy node's answer reported), -ECHILD (a node in the mask ended:
 * *dead = it, reaped, not reported).  Nodes not running are skipped. */
static int wait_nodes(struct tu_nats *c, unsigned mask, long deadline, unsigned *dead)
{
	unsigned healthy = 0;
	long start = now_ms();
	for (;;) {
		/* All in one pass: a node healthy earlier may not be any more. */
		healthy = 0;
		for (unsigned i = 0; i < c->n; i++) {
			if (!(mask & (1u << i)))
				continue;
			if (atomic_load(&c->nodes[i].pid) <= 0) {
				healthy |= 1u << i; /* not running: not waited for */
				continue;
			}
			if (c->owner == getpid() && reap(c, i, 0)) {
				*dead = i;
				return -ECHILD;
			}
			long left = deadline - now_ms();
			int tmo = left > 1000 ? 1000 : left > 50 ? (int)left : 50;
			int st = http_get(c->nodes[i].monitor_port, "/healthz", tmo, NULL);
			if (st == 200)
				healthy |= 1u << i;
		}
		if ((healthy & mask) == mask)
			return 0;
		if (now_ms() >= deadline)
			break;
		/* Often at first (a start takes 0.02-0.3 s), then less: each failed poll is a
		 * warning in the server's log. */
		sleep_ms(now_ms() - start < 1000 ? POLL_MS : 5 * POLL_MS);
	}
	for (unsigned i = 0; i < c->n; i++) {
		if (!(mask & (1u << i)) || (healthy & (1u << i)))
			continue;
		char *body = NULL;
		int st = http_get(c->nodes[i].monitor_port, "/healthz", 1000, &body);
		char *nl = body ? strchr(body, '\n') : NULL;
		if (nl)
			*nl = '\0';
		if (st > 0)
			fprintf(stderr, "    n%u /healthz: %d %s\n", i + 1, st, body ? body : "");
		else
			fprintf(stderr, "    n%u /healthz: no answer (%s)\n", i + 1, strerror(-st));
		free(body);
	}
	return -ETIMEDOUT;
}

/* Stop the nodes in mask: `sig` to each running one, then wait up to timeout_ms for all,
 * SIGKILL what is left.  Returns 0, or -ETIMEDOUT if some needed SIGKILL. */
static int stop_nodes(struct tu_nats *c, unsigned mask, int sig, int timeout_ms)
{
	for (unsigned i = 0; i < c->n; i++) {
		int pid = atomic_load(&c->nodes[i].pid);
		if ((mask & (1u << i)) && pid > 0) {
			c->nodes[i].accounted = 1;
			kill(pid, sig);
		}
	}
	long deadline = now_ms() + timeout_ms;
	int err = 0;
	for (;;) {
		unsigned left = 0;
		for (unsigned i = 0; i < c->n; i++)
			if ((mask & (1u << i)) && !reap(c, i, 0))
				left |= 1u << i;
		if (!left)
			return err;
		if (now_ms() >= deadline) {
			for (unsigned i = 0; i < c->n; i++) {
				int pid = atomic_load(&c->nodes[i].pid);
				if ((left & (1u << i)) && pid > 0) {
					report(
					    "n%u did not stop within %d ms of signal %d: SIGKILL",
					    i + 1, timeout_ms, sig);
					kill(pid, SIGKILL);
					reap(c, i, 1);
				}
			}
			return -ETIMEDOUT;
		}
		sleep_ms(5);
	}
}

/* Forget slot c (its servers are gone, or not ours). */
static void release(struct tu_nats *c)
{
	atomic_store(&c->state, SLOT_FREE);
}

static struct tu_nats *start_once(unsigned n, const char *server, int *retry)
{
	*retry = 0;
	struct tu_nats *c = new_slot(n, server);
	if (!c)
		return NULL;
	int err = pick_ports(c);
	if (err) {
		report("no free ports on 127.0.0.1: %s", strerror(-err));
		goto fail;
	}
	size_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		struct node *nd = &c->nodes[i];
		snprintf(nd->url, sizeof(nd->url), "nats://127.0.0.1:%d", nd->client_port);
		off += (size_t)snprintf(c->urls + off, sizeof(c->urls) - off, "%s%s", i ? "," : "",
					nd->url);
		if ((err = write_config(c, i)) != 0) {
			report("writing n%u's config in %s: %s", i + 1, c->base, strerror(-err));
			goto fail;
		}
	}
	for (unsigned i = 0; i < n; i++)
		if (spawn_node(c, i) != 0)
			goto fail;
	unsigned dead = 0;
	err = wait_nodes(c, (1u << n) - 1, now_ms() + TU_NATS_START_TIMEOUT_MS, &dead);
	if (err == -ECHILD) {
		if (port_taken(c, dead)) {
			fprintf(stderr, "natscluster: n%u found a port taken; trying other ports\n",
				dead + 1);
			*retry = 1;
		} else {
			report_exit(c, dead, "start");
		}
		goto fail;
	}
	if (err) {
		for (unsigned i = 0; i < n; i++)
			print_log_tail(c, i);
		report("%u-node cluster in %s: not every node answered /healthz 200 within %d ms",
		       n, c->base, TU_NATS_START_TIMEOUT_MS);
		goto fail;
	}
	return c;
fail:
	kill_and_remove(c);
	release(c);
	return NULL;
}

struct tu_nats *tu_nats_start(unsigned n)
{
	if (n < 1 || n > TU_NATS_MAX_NODES) {
		report("tu_nats_start(%u): a cluster has 1 to %u nodes", n, TU_NATS_MAX_NODES);
		return NULL;
	}
	char server[PATH_MAX];
	if (find_server(server, sizeof(server)) != 0)
		return NULL;
	sweep_stale();
	install_handlers();
	for (int t = 0; t < START_TRIES; t++) {
		int retry = 0;
		struct tu_nats *c = start_once(n, server, &retry);
		if (c || !retry)
			return c;
	}
	report("%u-node cluster: ports kept being taken by other processes (%d tries)", n,
	       START_TRIES);
	return NULL;
}

static void require_fail(void)
{
	if (getenv("RINGLOG_REQUIRE_NATS")) {
		fprintf(stderr, "RINGLOG_REQUIRE_NATS is set: failing instead of skipping\n");
		exit(1);
	}
	exit(77);
}

struct tu_nats *tu_nats_start_or_skip(unsigned n)
{
	struct tu_nats *c = tu_nats_start(n);
	if (!c)
		require_fail();
	return c;
}

void tu_nats_require_server(void)
{
	char server[PATH_MAX];
	if (find_server(server, sizeof(server)) != 0)
		require_fail();
}

const char *tu_nats_urls(const struct tu_nats *c)
{
	return c ? c->urls : NULL;
}

const char *tu_nats_url(const struct tu_nats *c, unsigned node)
{
	return c && node < c->n ? c->nodes[node].url : NULL;
}

unsigned tu_nats_size(const struct tu_nats *c)
{
	return c ? c->n : 0;
}

const char *tu_nats_dir(const struct tu_nats *c)
{
	return c ? c->base : NULL;
}

const char *tu_nats_store_dir(const struct tu_nats *c, unsigned node)
{
	return c && node < c->n ? c->nodes[node].store : NULL;
}

int tu_nats_pid(const struct tu_nats *c, unsigned node)
{
	return c && node < c->n ? atomic_load(&c->nodes[node].pid) : 0;
}

int tu_nats_kill(struct tu_nats *c, unsigned node)
{
	int err = check_owned(c, node, "tu_nats_kill");
	if (err)
		return err;
	struct node *nd = &c->nodes[node];
	int pid = atomic_load(&nd->pid);
	if (pid <= 0 || reap(c, node, 0)) {
		if (pid > 0)
			report_exit(c, node, "tu_nats_kill");
		report("tu_nats_kill: n%u is not running", node + 1);
		return -ESRCH;
	}
	nd->accounted = 1;
	kill(pid, SIGKILL);
	reap(c, node, 1);
	return 0;
}

int tu_nats_restart(struct tu_nats *c, unsigned node)
{
	int err = check_owned(c, node, "tu_nats_restart");
	if (err)
		return err;
	if (atomic_load(&c->nodes[node].pid) > 0) {
		if (!reap(c, node, 0)) {
			report(
			    "tu_nats_restart: n%u is running (tu_nats_kill or tu_nats_stop_node it "
			    "first)",
			    node + 1);
			return -EBUSY;
		}
		report_exit(c, node, "tu_nats_restart (before the restart)");
	}
	if ((err = spawn_node(c, node)) != 0)
		return err;
	unsigned dead = 0;
	err = wait_nodes(c, 1u << node, now_ms() + TU_NATS_START_TIMEOUT_MS, &dead);
	if (err == -ECHILD) {
		report_exit(c, node, "tu_nats_restart");
		return port_taken(c, node) ? -EADDRINUSE : -EIO;
	}
	if (err) {
		print_log_tail(c, node);
		report("tu_nats_restart: n%u's /healthz not 200 within %d ms (left running)",
		       node + 1, TU_NATS_START_TIMEOUT_MS);
	}
	return err;
}

int tu_nats_stop_node(struct tu_nats *c, unsigned node)
{
	int err = check_owned(c, node, "tu_nats_stop_node");
	if (err)
		return err;
	int pid = atomic_load(&c->nodes[node].pid);
	if (pid <= 0 || reap(c, node, 0)) {
		if (pid > 0)
			report_exit(c, node, "tu_nats_stop_node");
		report("tu_nats_stop_node: n%u is not running", node + 1);
		return -ESRCH;
	}
	return stop_nodes(c, 1u << node, SIGTERM, TU_NATS_STOP_TIMEOUT_MS);
}

int tu_nats_wait_healthy(struct tu_nats *c, int timeout_ms)
{
	if (!valid(c, 0, "tu_nats_wait_healthy"))
		return -EINVAL;
	unsigned dead = 0;
	int err = wait_nodes(c, (1u << c->n) - 1, now_ms() + timeout_ms, &dead);
	if (err == -ECHILD)
		report_exit(c, dead, "tu_nats_wait_healthy");
	else if (err)
		report("tu_nats_wait_healthy: not every running node answered /healthz 200 within "
		       "%d ms",
		       timeout_ms);
	return err;
}

int tu_nats_stream_leader(struct tu_nats *c, const char *stream)
{
	if (!valid(c, 0, "tu_nats_stream_leader") || !stream)
		return -1;
	int claimed = -1, named = -1;
	for (unsigned i = 0; i < c->n && claimed < 0; i++) {
		if (atomic_load(&c->nodes[i].pid) <= 0)
			continue;
		char *body = NULL, leader[64];
		int st =
		    http_get(c->nodes[i].monitor_port, "/jsz?streams=true", HTTP_TIMEOUT_MS, &body);
		unsigned k = 0;
		int end = 0;
		if (st == 200 && jsz_leader(body, stream, leader, sizeof(leader)) == 0 &&
		    sscanf(leader, "n%u%n", &k, &end) == 1 && leader[end] == '\0' && k >= 1 &&
		    k <= c->n && atomic_load(&c->nodes[k - 1].pid) > 0) {
			if (k - 1 == i)
				claimed = (int)i;
			else if (named < 0)
				named = (int)(k - 1);
		}
		free(body);
	}
	return claimed >= 0 ? claimed : named;
}

char *tu_nats_http_get(const struct tu_nats *c, unsigned node, const char *path, int *status)
{
	char *body = NULL;
	int st = -EINVAL;
	if (valid(c, node, "tu_nats_http_get"))
		st = http_get(c->nodes[node].monitor_port, path, HTTP_TIMEOUT_MS, &body);
	if (status)
		*status = st;
	return body;
}

void tu_nats_stop(struct tu_nats *c)
{
	if (!c || atomic_load(&c->state) != SLOT_LIVE)
		return;
	if (c->owner != getpid()) {
		release(c); /* a forked child's copy: the parent's servers are left alone */
		return;
	}
	for (unsigned i = 0; i < c->n; i++)
		if (atomic_load(&c->nodes[i].pid) > 0 && reap(c, i, 0))
			report_exit(c, i, "tu_nats_stop (it ended before the stop)");
	stop_nodes(c, (1u << c->n) - 1, SIGTERM, TU_NATS_STOP_TIMEOUT_MS);
	/* RINGLOG_NATS_KEEP=1 keeps the stores and logs, to look at after a failure. */
	int err = getenv("RINGLOG_NATS_KEEP") ? 0 : rm_tree(c->base);
	if (err)
		report("tu_nats_stop: removing %s: %s", c->base, strerror(-err));
	else if (getenv("RINGLOG_NATS_KEEP"))
		report("tu_nats_stop: kept %s (RINGLOG_NATS_KEEP)", c->base);
	release(c);
}
