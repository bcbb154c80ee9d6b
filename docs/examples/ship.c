/*
 * A service that ships its log into a NATS JetStream stream as it writes, and a standby
 * rebuilt from the stream: the same records, batches and LSNs.
 *
 *   cc ship.c $(pkg-config --cflags --libs ringlog-nats) -o ship
 *   ./ship DIR STANDBY_DIR [nats://127.0.0.1:4222]
 */
#include <ringlog_nats.h>

#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

static int fail(const char *what, int err)
{
	fprintf(stderr, "%s: %s (%s)\n", what, ringlog_strerror(err), ringlog_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: ship DIR STANDBY_DIR [SERVERS]\n");
		return 2;
	}
	struct ringlog *wal;
	int err = ringlog_open(argv[1], NULL, &wal);
	if (err)
		return fail("open", err);

	struct ringlog_nats_options o;
	ringlog_nats_options_init(&o);
	o.servers = argc > 3 ? argv[3] : RINGLOG_NATS_DEFAULT_SERVERS;
	o.stream = "example";
	struct ringlog_nats_shipper *ship;
	err = ringlog_nats_shipper_start(wal, &o, &ship);
	if (err) {
		ringlog_close(wal);
		return fail("shipper", err);
	}
	/* The service appends as usual; the shipper publishes what became durable. */
	for (int i = 0; i < 100; i++) {
		char a[32], b[32];
		snprintf(a, sizeof(a), "debit %d", i);
		snprintf(b, sizeof(b), "credit %d", i);
		struct iovec batch[2] = {{a, strlen(a)}, {b, strlen(b)}};
		uint64_t lsn;
		if ((err = ringlog_append(wal, batch, 2, &lsn)) != 0)
			break;
	}
	if (!err)
		err = ringlog_wait(wal, ringlog_next_lsn(wal) - 1);
	/* Everything durable now is in the stream once this returns 0. */
	if (!err)
		err = ringlog_nats_shipper_wait(ship, 30ll * 1000 * 1000 * 1000);
	struct ringlog_nats_stats st;
	ringlog_nats_shipper_stats(ship, &st);
	printf("shipped up to LSN %llu in %llu messages, stream sequence %llu\n",
	       (unsigned long long)st.shipped_lsn, (unsigned long long)st.messages,
	       (unsigned long long)st.stream_seq);
	int stop_err = ringlog_nats_shipper_stop(ship); /* before closing the log */
	ringlog_close(wal);
	if (err || stop_err)
		return fail("shipping", err ? err : stop_err);

	/* Elsewhere: a standby from the stream alone. */
	struct ringlog_nats_restore_stats rs;
	err = ringlog_nats_restore(argv[2], &o, 0, 0, NULL, &rs);
	if (err)
		return fail("restore", err);
	printf("standby %s: LSNs %llu..%llu, %llu records in %llu frames\n", argv[2],
	       (unsigned long long)rs.first_lsn, (unsigned long long)rs.last_lsn,
	       (unsigned long long)rs.records, (unsigned long long)rs.frames);
	return 0;
}
