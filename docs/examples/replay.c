/*
 * Rebuild state at startup by replaying the log with a reader, then open it for
 * appending and continue where it ended.
 *
 *   cc replay.c $(pkg-config --cflags --libs ringlog) -o replay && ./replay DIR
 */
#include <ringlog.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "service-wal";
	/* Opening the writer first recovers the log (cuts a torn tail) and takes the
	 * directory lock, so the replay sees exactly what later appends follow. */
	struct ringlog *wal;
	int err = ringlog_open(dir, NULL, &wal);
	if (err) {
		fprintf(stderr, "open %s: %s (%s)\n", dir, ringlog_strerror(err),
			ringlog_last_error());
		return 1;
	}
	struct ringlog_reader *r;
	uint64_t records = 0, batches = 0, bytes = 0, last = 0;
	err = ringlog_reader_open(dir, 1, &r);
	if (err == 0) {
		struct ringlog_record rec;
		while ((err = ringlog_reader_next(r, &rec)) == 1) {
			if (rec.lsn == rec.batch_first_lsn)
				batches++; /* apply whole batches: they are atomic */
			records++;
			bytes += rec.len;
			last = rec.lsn;
		}
		ringlog_reader_close(r);
	}
	if (err < 0) {
		fprintf(stderr, "replay: %s (%s)\n", ringlog_strerror(err), ringlog_last_error());
		ringlog_close(wal);
		return 1;
	}
	printf("replayed %llu records in %llu batches (%llu bytes), last LSN %llu\n",
	       (unsigned long long)records, (unsigned long long)batches, (unsigned long long)bytes,
	       (unsigned long long)last);
	/* Appends continue after the last record (further after it only if a salvage
	 * marked the LSNs in between as lost: see ringlog(7)). */
	if (ringlog_next_lsn(wal) <= last) {
		fprintf(stderr, "replay: next LSN %llu does not follow the replay\n",
			(unsigned long long)ringlog_next_lsn(wal));
		ringlog_close(wal);
		return 1;
	}
	struct iovec rec = {"restarted", 9};
	uint64_t lsn;
	err = ringlog_append(wal, &rec, 1, &lsn);
	if (!err)
		err = ringlog_wait(wal, lsn);
	printf("appended a marker at LSN %llu\n", (unsigned long long)lsn);
	int cerr = ringlog_close(wal);
	return err || cerr ? 1 : 0;
}
