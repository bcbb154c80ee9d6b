/*
 * nats-pub-bench: the baseline for shipping throughput.  A plain nats.c asynchronous
 * publish loop into a JetStream stream (created here, file storage, --replicas),
 * messages of --size bytes, at most --max-pending unacknowledged; it reports the bytes
 * per second the stream acknowledged.  tools/ship-compare runs it beside ringlog-ship
 * on the same cluster.
 */
#include <nats/nats.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic uint64_t acked, failed;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)closure;
	(void)pa;
	if (pae)
		atomic_fetch_add(&failed, 1);
	else
		atomic_fetch_add(&acked, 1);
	natsMsg_Destroy(msg);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: nats-pub-bench [options]\n"
		"Publish messages asynchronously into a new JetStream stream for a while and\n"
		"report what the stream acknowledged per second (the baseline ringlog-ship is\n"
		"compared with, see tools/ship-compare).\n\n"
		"  --servers URLS     comma-separated NATS URLs (default nats://127.0.0.1:4222)\n"
		"  --stream NAME      stream to create (default pubbench; deleted at the end\n"
		"                     unless --keep); its subject is pubbench.NAME\n"
		"  --replicas N       stream replicas (default 3)\n"
		"  --size BYTES       message size (default 65536)\n"
		"  --duration SEC     how long to publish (default 5)\n"
		"  --max-pending N    unacknowledged messages at most (default 256)\n"
		"  --keep             keep the stream\n"
		"  --json             one JSON object on stdout instead of the text line\n"
		"  -h, --help         this text\n");
}

int main(int argc, char **argv)
{
	const char *servers = "nats://127.0.0.1:4222", *stream = "pubbench";
	long replicas = 3, size = 65536, max_pending = 256;
	double duration = 5;
	int keep = 0, json = 0;
	static const struct option opts[] = {
	    {"servers", 1, 0, 's'},  {"stream", 1, 0, 'n'},	  {"replicas", 1, 0, 'r'},
	    {"size", 1, 0, 'z'},     {"duration", 1, 0, 'd'}, {"max-pending", 1, 0, 'p'},
	    {"keep", 0, 0, 'k'},     {"json", 0, 0, 'j'},	  {"help", 0, 0, 'h'},
	    {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': servers = optarg; break;
		case 'n': stream = optarg; break;
		case 'r': replicas = strtol(optarg, NULL, 10); break;
		case 'z': size = strtol(optarg, NULL, 10); break;
		case 'd': duration = strtod(optarg, NULL); break;
		case 'p': max_pending = strtol(optarg, NULL, 10); break;
		case 'k': keep = 1; break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || replicas < 1 || replicas > 5 || size < 1 || size > (1 << 20) ||
	    duration <= 0 || max_pending < 1) {
		usage(stderr);
		return 2;
	}
	natsOptions *no = NULL;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	/* natsOptions_SetURL takes one URL: split the list for natsOptions_SetServers. */
	char list[4096];
	snprintf(list, sizeof(list), "%s", servers);
	const char *urls[32];
	int nurls = 0;
	for (char *save = NULL, *u = strtok_r(list, ",", &save); u && nurls < 32;
	     u = strtok_r(NULL, ",", &save))
		urls[nurls++] = u;
	natsStatus s = natsOptions_Create(&no);
	if (s == NATS_OK)
		s = nurls ? natsOptions_SetServers(no, urls, nurls) : NATS_INVALID_ARG;
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(no, -1);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, no);
	if (s != NATS_OK) {
		fprintf(stderr, "nats-pub-bench: cannot connect to %s: %s\n", servers,
			natsStatus_GetText(s));
		return 1;
	}
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = max_pending;
	jo.PublishAsync.AckHandler = on_ack;
	s = natsConnection_JetStream(&js, nc, &jo);
	char subject[300];
	snprintf(subject, sizeof(subject), "pubbench.%s", stream);
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subjects[1] = {subject};
	cfg.Name = stream;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = replicas;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	if (s == NATS_OK)
		s = js_AddStream(&si, js, &cfg, NULL, &jerr);
	if (si)
		jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		fprintf(stderr, "nats-pub-bench: creating stream %s: %s (%d)\n", stream,
			natsStatus_GetText(s), (int)jerr);
		return 1;
	}
	char *data = malloc((size_t)size);
	memset(data, 0x5a, (size_t)size);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 10000;
	uint64_t sent = 0;
	double t0 = now_s(), end = t0 + duration;
	while (now_s() < end) {
		s = js_PublishAsync(js, subject, data, (int)size, &po);
		if (s == NATS_OK)
			sent++;
		else if (s != NATS_TIMEOUT) { /* NATS_TIMEOUT: stalled on the window */
			fprintf(stderr, "nats-pub-bench: publish: %s\n", natsStatus_GetText(s));
			break;
		}
	}
	jsPubOptions done;
	jsPubOptions_Init(&done);
	done.MaxWait = 30000;
	js_PublishAsyncComplete(js, &done);
	double t1 = now_s();
	uint64_t ok = atomic_load(&acked), bad = atomic_load(&failed);
	double mbps = (double)ok * (double)size / (t1 - t0) / 1e6;
	if (json)
		printf("{\"tool\":\"nats-pub-bench\",\"stream\":\"%s\",\"replicas\":%ld,"
		       "\"size\":%ld,\"max_pending\":%ld,\"seconds\":%.3f,\"sent\":%" PRIu64
		       ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
		       ",\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f}\n",
		       stream, replicas, size, max_pending, t1 - t0, sent, ok, bad,
		       (double)ok / (t1 - t0), mbps);
	else
		printf("nats-pub-bench: %" PRIu64 " messages of %ld bytes acknowledged in %.2f s "
		       "(%" PRIu64 " failed): %.0f msgs/s, %.1f MB/s into %ld replicas\n",
		       ok, size, t1 - t0, bad, (double)ok / (t1 - t0), mbps, replicas);
	if (!keep)
		js_DeleteStream(js, stream, NULL, NULL);
	free(data);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(no);
	return bad ? 1 : 0;
}
