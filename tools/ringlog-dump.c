/*
 * ringlog-dump: inspect, verify and repair a ringlog directory.
 *
 *   ringlog-dump DIR                 segments: LSN ranges, frames, bytes, status
 *   ringlog-dump --records DIR       records (text when printable, else hex), and holes
 *   ringlog-dump --verify DIR        every frame and the segment chain; exit 1 at damage
 *   ringlog-dump --repair MODE DIR   recover in MODE, keeping a copy of what is cut
 *   ringlog-dump --repair MODE --dry-run DIR   print the repair plan, change nothing
 *   ringlog-dump --slots DIR         replication slots (SLOT.<name>): name and LSN
 *   ringlog-dump --drop-slot NAME DIR  remove a replication slot
 *   --json                           machine-readable output for any of them
 */
#include "ringlog.h"
#include "tool_common.h"
#include "segment.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_DAMAGED = 1, EXIT_USAGE = 2, EXIT_ERROR = 3 };

static int json;

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: ringlog-dump [options] DIR\n"
	    "Inspect, verify and repair a ringlog directory.\n\n"
	    "  (no option)          list the segments: first and last LSN, frames, records,\n"
	    "                       LSNs lost (holes left by a salvage), bytes, and whether\n"
	    "                       each reads cleanly to its end\n"
	    "  --records            print every record: LSN, length, data (text if printable)\n"
	    "  --from LSN           with --records: start at this LSN\n"
	    "  --hex                with --records: always print data as hex\n"
	    "  --verify             check every frame and the segment chain (absolute\n"
	    "                       consistency); exit 1 and name the file and offset of the\n"
	    "                       first damage\n"
	    "  --repair MODE        recover the log in MODE: tolerate-tail (cut a torn tail off\n"
	    "                       the last segment), point-in-time (keep everything before\n"
	    "                       the first damage, drop the rest) or skip-corrupted (keep\n"
	    "                       every valid frame; damaged stretches and missing segments\n"
	    "                       become holes, foreign segments are renamed NAME.salvaged);\n"
	    "                       copies every file its plan changes into a backup\n"
	    "                       directory first, then prints what was done\n"
	    "  --dry-run            with --repair: print the plan (one line per step: what,\n"
	    "                       which file, which offset, why) and change nothing\n"
	    "  --backup DIR         where --repair keeps its copies (default:\n"
	    "                       DIR.repair-backup-<time> beside the log)\n"
	    "  --slots              list the replication slots (SLOT.<name> files): each\n"
	    "                       slot's name and LSN (retention keeps the records after\n"
	    "                       the lowest)\n"
	    "  --drop-slot NAME     remove replication slot NAME, so that it no longer holds\n"
	    "                       retention back (stop the shipper that uses it first)\n"
	    "  --json               machine-readable output\n"
	    "  --help\n\n"
	    "Exit status: 0 fine, 1 damage found (listing, --verify, --records) or refused\n"
	    "(--repair), 2 usage, 3 cannot read the log (or a slot), or no such slot\n"
	    "(--drop-slot).  The log must not be open for writing during --repair.\n");
}

static void print_report(const struct ringlog_recovery *r)
{
	static const char *modes[] = {"tolerate-tail", "absolute", "point-in-time",
				      "skip-corrupted"};
	const char *mode = r->mode < 4 ? modes[r->mode] : "?";
	if (json) {
		printf("{\"mode\":\"%s\",\"segments\":%u,\"first_lsn\":%" PRIu64
		       ",\"last_lsn\":%" PRIu64 ",\"cut_bytes\":%" PRIu64
		       ",\"dropped_segments\":%u,\"lost_lsns\":%" PRIu64 ",\"holes_written\":%u"
		       ",\"set_aside_segments\":%u,\"rewritten_headers\":%u,\"damaged\":%s",
		       mode, r->segments, r->first_lsn, r->last_lsn, r->cut_bytes,
		       r->dropped_segments, r->lost_lsns, r->holes, r->set_aside_segments,
		       r->rewritten_headers, r->damage ? "true" : "false");
		if (r->damage) {
			printf(",\"damage\":{\"file\":");
			tool_json_str(r->damage_file);
			printf(",\"offset\":%" PRIu64 ",\"expected_lsn\":%" PRIu64 ",\"reason\":",
			       r->damage_offset, r->damage_lsn);
			tool_json_str(r->damage_reason);
			printf("}");
		}
		printf("}");
		return;
	}
	printf("%u segments, LSNs %" PRIu64 "..%" PRIu64 " (mode %s)\n", r->segments, r->first_lsn,
	       r->last_lsn, mode);
	if (r->damage)
		printf("damage: %s at offset %" PRIu64 " (LSN %" PRIu64 " expected): %s\n",
		       r->damage_file, r->damage_offset, r->damage_lsn, r->damage_reason);
	if (r->cut_bytes || r->dropped_segments)
		printf("cut %" PRIu64 " bytes, dropped %u segments\n", r->cut_bytes,
		       r->dropped_segments);
	if (r->holes || r->set_aside_segments || r->rewritten_headers)
		printf("wrote %u hole frames, set aside %u segments (NAME.salvaged), rewrote %u "
		       "segment headers\n",
		       r->holes, r->set_aside_segments, r->rewritten_headers);
	if (r->lost_lsns)
		printf("%" PRIu64 " LSNs lost to damage (holes: readers skip them)\n",
		       r->lost_lsns);
}

/* One line (or JSON object) per segment, read with the format's own scanner. */
static int list_segments(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		fprintf(stderr, "ringlog-dump: %s: %s\n", dir, strerror(errno));
		return EXIT_ERROR;
	}
	uint64_t *lsns;
	size_t n;
	if (rl_seg_list(dfd, &lsns, &n) != 0) {
		fprintf(stderr, "ringlog-dump: cannot list %s\n", dir);
		return EXIT_ERROR;
	}
	if (json) {
		printf("{\"dir\":");
		tool_json_str(dir);
		printf(",\"segments\":[");
	} else
		printf("%-26s %20s %20s %9s %10s %10s %12s  %s\n", "segment", "first LSN",
		       "last LSN", "frames", "records", "lost", "bytes", "status");
	int rc = EXIT_OK;
	/* The log so far, for the chain rule: its id, the LSN and chain value due next,
	 * and whether the segment before was whole (after damage, the next segment is
	 * judged on its own, so that one damage is not reported again on every later
	 * segment). */
	uint64_t log_id = 0, expect = 0;
	uint32_t prev_crc = 0;
	int prev_ok = 0;
	for (size_t i = 0; i < n; i++) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
		struct rl_seg_header h;
		uint64_t size = 0, frames = 0, records = 0, lost = 0, holes = 0, end = 0,
			 last = lsns[i] - 1;
		uint32_t last_crc = 0;
		const char *status = "ok";
		int err = fd < 0 ? -errno : rl_seg_read_header(fd, &h, &size);
		/* The library's rules: the header must fit the chain (the same rule
		 * recovery and --verify apply), then the entries are judged. */
		const char *bad = err == 0 || err == -EBADMSG
				      ? rl_seg_header_problem(err, &h, lsns[i], !prev_ok, log_id,
							      expect, prev_crc)
				      : NULL;
		if (err == 0 && (i == 0 || !log_id))
			log_id = h.log_id;
		if (err && err != -EBADMSG) {
			status = strerror(-err);
		} else if (bad) {
			status = bad;
		} else {
			/* The library's own verdict: a sealed segment ends at the end of its
			 * file, the last one where no torn tail follows its last entry. */
			struct rl_seg_verdict v;
			err = rl_seg_judge(fd, &h, i + 1 == n, &v);
			if (err) {
				status = strerror(-err);
			} else {
				frames = v.frames;
				records = v.records;
				holes = v.holes;
				lost = v.lost;
				end = v.end;
				last = v.next_lsn - 1;
				last_crc = v.last_crc;
				if (v.damaged)
					status = v.reason;
			}
		}
		/* The next segment is judged against this one as its file says it ends. */
		expect = last + 1;
		prev_crc = last_crc;
		prev_ok = strcmp(status, "ok") == 0 && (i > 0 || err == 0);
		if (strcmp(status, "ok") != 0)
			rc = EXIT_DAMAGED;
		if (json) {
			printf("%s{\"file\":\"%s\",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64
			       ",\"frames\":%" PRIu64 ",\"records\":%" PRIu64 ",\"holes\":%" PRIu64
			       ",\"lost_lsns\":%" PRIu64 ",\"bytes\":%" PRIu64
			       ",\"valid_bytes\":%" PRIu64 ",\"status\":",
			       i ? "," : "", name, lsns[i], last, frames, records, holes, lost, size,
			       end);
			tool_json_str(status);
			printf("}");
		} else {
			printf("%-26s %20" PRIu64 " %20" PRIu64 " %9" PRIu64 " %10" PRIu64
			       " %10" PRIu64 " %12" PRIu64 "  %s",
			       name, lsns[i], last, frames, records, lost, size, status);
			if (strcmp(status, "ok") != 0 && end)
				printf(" at offset %" PRIu64, end);
			printf("\n");
		}
		if (fd >= 0)
			close(fd);
	}
	if (json)
		printf("]}\n");
	free(lsns);
	close(dfd);
	return rc;
}

static void print_data(const uint8_t *p, uint32_t len, int hex)
{
	int text = !hex;
	for (uint32_t i = 0; i < len && text; i++)
		text = isprint(p[i]) || p[i] == '\t';
	if (json) {
		printf(",\"%s\":\"", text ? "text" : "hex");
		for (uint32_t i = 0; i < len; i++) {
			if (!text)
				printf("%02x", p[i]);
			else if (p[i] == '"' || p[i] == '\\')
				printf("\\%c", p[i]);
			else if (p[i] == '\t')
				printf("\\t");
			else
				putchar(p[i]);
		}
		putchar('"');
		return;
	}
	if (text)
		printf("%.*s", (int)len, (const char *)p);
	else
		for (uint32_t i = 0; i < len; i++)
			printf("%02x", p[i]);
}

static int dump_records(const char *dir, uint64_t from, int hex)
{
	struct ringlog_reader *r;
	int err = ringlog_reader_open(dir, from, &r);
	if (err) {
		fprintf(stderr, "ringlog-dump: %s: %s\n  %s\n", dir, ringlog_strerror(err),
			ringlog_last_error());
		return EXIT_ERROR;
	}
	struct ringlog_record rec;
	if (json)
		printf("[");
	int first = 1;
	uint64_t expect = from;
	while ((err = ringlog_reader_next(r, &rec)) == 1) {
		/* LSNs skipped inside the log: holes left by a salvage. */
		uint64_t lost = !first && rec.lsn > expect ? rec.lsn - expect : 0;
		expect = rec.lsn + 1;
		if (json) {
			printf("%s{\"lsn\":%" PRIu64 ",\"batch\":%" PRIu64 ",\"len\":%u",
			       first ? "" : ",\n", rec.lsn, rec.batch_first_lsn, rec.len);
			if (lost)
				printf(",\"lost_before\":%" PRIu64, lost);
			print_data(rec.data, rec.len, hex);
			printf("}");
		} else {
			if (lost)
				printf("-- LSNs %" PRIu64 "..%" PRIu64 " lost (hole) --\n",
				       rec.lsn - lost, rec.lsn - 1);
			printf("%" PRIu64 " [batch %" PRIu64 "] %u: ", rec.lsn, rec.batch_first_lsn,
			       rec.len);
			print_data(rec.data, rec.len, hex);
			printf("\n");
		}
		first = 0;
	}
	if (json)
		printf("]\n");
	ringlog_reader_close(r);
	if (err < 0) {
		fprintf(stderr, "ringlog-dump: %s: %s\n  %s\n", dir, ringlog_strerror(err),
			ringlog_last_error());
		return err == -EBADMSG ? EXIT_DAMAGED : EXIT_ERROR;
	}
	return EXIT_OK;
}

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		int err = -errno;
		close(in);
		return err;
	}
	char buf[1 << 16];
	ssize_t n;
	int err = 0;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			err = -EIO;
			break;
		}
	if (n < 0)
		err = -errno;
	if (!err && fsync(out) < 0)
		err = -errno;
	close(in);
	close(out);
	return err;
}

static const char *op_name(uint32_t op)
{
	switch (op) {
	case RINGLOG_REPAIR_RESET_FILE:
		return "reset";
	case RINGLOG_REPAIR_WRITE_HEADER:
		return "write-header";
	case RINGLOG_REPAIR_WRITE_HOLES:
		return "write-holes";
	case RINGLOG_REPAIR_CUT:
		return "cut";
	case RINGLOG_REPAIR_REMOVE:
		return "remove";
	case RINGLOG_REPAIR_SET_ASIDE:
		return "set-aside";
	default:
		return "?";
	}
}

/* One line (or JSON object) for a step of the repair plan. */
static void print_action(const struct ringlog_repair_action *a)
{
	if (json) {
		printf("{\"op\":\"%s\",\"file\":", op_name(a->op));
		tool_json_str(a->file);
		printf(",\"offset\":%" PRIu64 ",\"length\":%" PRIu64, a->offset, a->length);
		if (a->op == RINGLOG_REPAIR_CUT)
			printf(",\"truncate\":%s", a->truncate ? "true" : "false");
		if (a->op == RINGLOG_REPAIR_WRITE_HOLES)
			printf(",\"first_lsn\":%" PRIu64 ",\"lsns\":%" PRIu64, a->first_lsn,
			       a->lsns);
		printf(",\"why\":");
		tool_json_str(a->why);
		printf("}");
		return;
	}
	printf("  %-12s %s", op_name(a->op), a->file);
	if (a->op != RINGLOG_REPAIR_REMOVE)
		printf(" ");
	switch (a->op) {
	case RINGLOG_REPAIR_RESET_FILE:
		printf("(%" PRIu64 " bytes) -> a 64-byte header", a->length);
		break;
	case RINGLOG_REPAIR_WRITE_HEADER:
		printf("at offset 0, 64 bytes");
		break;
	case RINGLOG_REPAIR_WRITE_HOLES:
		printf("at offset %" PRIu64 ", %" PRIu64 " bytes: LSNs %" PRIu64 "..%" PRIu64,
		       a->offset, a->length, a->first_lsn, a->first_lsn + a->lsns - 1);
		if (!a->lsns)
			printf(" (none)");
		break;
	case RINGLOG_REPAIR_CUT:
		printf("at offset %" PRIu64 ", %" PRIu64 " bytes %s", a->offset, a->length,
		       a->truncate ? "truncated" : "zeroed");
		break;
	case RINGLOG_REPAIR_SET_ASIDE:
		printf("-> %s.salvaged", a->file);
		break;
	default:
		break;
	}
	printf(": %s\n", a->why);
}

static void print_plan(const struct ringlog_repair_action *acts, size_t n)
{
	if (json) {
		printf("[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				printf(",");
			print_action(&acts[i]);
		}
		printf("]");
		return;
	}
	printf("plan: %zu step%s%s\n", n, n == 1 ? "" : "s", n ? ", in this order:" : "");
	for (size_t i = 0; i < n; i++)
		print_action(&acts[i]);
}

/* Copy every file the plan touches (each once) into `path`.  Returns 0 or EXIT_ERROR. */
static int back_up(const char *dir, const char *path, const struct ringlog_repair_action *acts,
		   size_t n)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "ringlog-dump: mkdir %s: %s\n", path, strerror(errno));
		return EXIT_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < i && strcmp(acts[k].file, acts[i].file) != 0)
			k++;
		if (k < i)
			continue; /* copied already */
		char src[4200], dst[4200];
		snprintf(src, sizeof(src), "%s/%s", dir, acts[i].file);
		snprintf(dst, sizeof(dst), "%s/%s", path, acts[i].file);
		int err = copy_file(src, dst);
		if (err) {
			fprintf(stderr, "ringlog-dump: copying %s to %s: %s\n", src, dst,
				strerror(-err));
			return EXIT_ERROR;
		}
	}
	return 0;
}

static int repair(const char *dir, const char *mode_name, const char *backup, int dry_run)
{
	uint32_t mode;
	if (strcmp(mode_name, "tolerate-tail") == 0)
		mode = RINGLOG_RECOVER_TOLERATE_TAIL;
	else if (strcmp(mode_name, "point-in-time") == 0)
		mode = RINGLOG_RECOVER_POINT_IN_TIME;
	else if (strcmp(mode_name, "skip-corrupted") == 0)
		mode = RINGLOG_RECOVER_SKIP_CORRUPTED;
	else {
		fprintf(stderr, "ringlog-dump: --repair takes tolerate-tail, point-in-time or "
				"skip-corrupted\n");
		return EXIT_USAGE;
	}
	struct ringlog_recovery plan;
	struct ringlog_repair_action *acts;
	size_t nacts;
	int err = ringlog_check_plan(dir, mode, &plan, &acts, &nacts);
	if (err && err != -EBADMSG) {
		fprintf(stderr, "ringlog-dump: %s: %s\n  %s\n", dir, ringlog_strerror(err),
			ringlog_last_error());
		return EXIT_ERROR;
	}
	if (err == -EBADMSG) {
		if (json)
			print_report(&plan), printf("\n");
		fprintf(stderr, "ringlog-dump: mode %s refuses this damage:\n  %s\n", mode_name,
			ringlog_last_error());
		return EXIT_DAMAGED;
	}
	if (dry_run) {
		if (json) {
			printf("{\"report\":");
			print_report(&plan);
			printf(",\"plan\":");
			print_plan(acts, nacts);
			printf("}\n");
		} else {
			print_report(&plan);
			print_plan(acts, nacts);
			printf("dry run: nothing was changed\n");
		}
		free(acts);
		return EXIT_OK;
	}
	if (nacts) {
		char path[4096];
		if (backup)
			snprintf(path, sizeof(path), "%s", backup);
		else
			snprintf(path, sizeof(path), "%s.repair-backup-%ld", dir, (long)time(NULL));
		int rc = back_up(dir, path, acts, nacts);
		if (rc) {
			free(acts);
			return rc;
		}
		if (!json)
			printf("copies of the %s the repair changes are in %s\n",
			       nacts == 1 ? "file" : "files", path);
	}
	free(acts);
	struct ringlog_options o;
	ringlog_options_init(&o);
	o.recovery_mode = mode;
	o.create_if_missing = 0;
	struct ringlog *log;
	err = ringlog_open(dir, &o, &log);
	if (err) {
		fprintf(stderr, "ringlog-dump: repair of %s failed: %s\n  %s\n", dir,
			ringlog_strerror(err), ringlog_last_error());
		return err == -EBADMSG ? EXIT_DAMAGED : EXIT_ERROR;
	}
	struct ringlog_recovery done;
	ringlog_recovery_report(log, &done);
	err = ringlog_close(log);
	print_report(&done);
	if (json)
		printf("\n");
	return err ? EXIT_ERROR : EXIT_OK;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The replication slots of the log in `dir`: every file named SLOT.<name>, read through
 * the library (ringlog_slot_open without create), in name order. */
static int list_slots(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "ringlog-dump: %s: %s\n", dir, strerror(errno));
		return EXIT_ERROR;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "SLOT.", 5) != 0 || !de->d_name[5])
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			char **more = realloc(names, cap * sizeof(*names));
			if (!more)
				break;
			names = more;
		}
		if ((names[n] = strdup(de->d_name + 5)) != NULL)
			n++;
	}
	closedir(d);
	int width = 4;
	if (n)
		qsort(names, n, sizeof(*names), cmp_name);
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(names[i]) > width)
			width = (int)strlen(names[i]);
	int rc = EXIT_OK;
	if (json) {
		printf("{\"dir\":");
		tool_json_str(dir);
		printf(",\"slots\":[");
	} else if (n) {
		printf("%-*s %20s\n", width, "slot", "LSN");
	}
	size_t shown = 0;
	for (size_t i = 0; i < n; i++) {
		struct ringlog_slot *slot = NULL;
		int err = ringlog_slot_open(dir, names[i], 0, 0, &slot);
		if (err) {
			fprintf(stderr, "ringlog-dump: %s: slot %s: %s\n  %s\n", dir, names[i],
				ringlog_strerror(err), ringlog_last_error());
			rc = EXIT_ERROR;
			continue;
		}
		uint64_t lsn = ringlog_slot_lsn(slot);
		ringlog_slot_close(slot);
		if (json) {
			printf("%s{\"name\":", shown ? "," : "");
			tool_json_str(names[i]);
			printf(",\"lsn\":%" PRIu64 "}", lsn);
		} else {
			printf("%-*s %20" PRIu64 "\n", width, names[i], lsn);
		}
		shown++;
	}
	if (json)
		printf("]}\n");
	else if (n == 0)
		printf("no replication slots in %s\n", dir);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

static int drop_slot(const char *dir, const char *name)
{
	int err = ringlog_slot_drop(dir, name);
	if (err == -ENOENT) {
		struct stat st;
		if (stat(dir, &st) != 0)
			fprintf(stderr, "ringlog-dump: %s: %s\n", dir, strerror(errno));
		else
			fprintf(stderr,
				"ringlog-dump: %s has no replication slot '%s' (no file SLOT.%s); "
				"ringlog-dump --slots %s lists them\n",
				dir, name, name, dir);
		return EXIT_ERROR;
	}
	if (err == -EINVAL) {
		fprintf(stderr,
			"ringlog-dump: --drop-slot: '%s' is not a slot name (1 to 64 of letters, "
			"digits, '_', '-' and '.')\n",
			name);
		return EXIT_USAGE;
	}
	if (err) {
		fprintf(stderr, "ringlog-dump: %s: dropping slot %s: %s\n  %s\n", dir, name,
			ringlog_strerror(err), ringlog_last_error());
		return EXIT_ERROR;
	}
	if (json) {
		printf("{\"dir\":");
		tool_json_str(dir);
		printf(",\"dropped_slot\":");
		tool_json_str(name);
		printf("}\n");
	} else {
		printf("dropped replication slot %s of %s: it no longer holds retention back\n",
		       name, dir);
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	enum {
		O_RECORDS = 256,
		O_FROM,
		O_HEX,
		O_VERIFY,
		O_REPAIR,
		O_BACKUP,
		O_JSON,
		O_HELP,
		O_SLOTS,
		O_DROP_SLOT,
		O_DRY_RUN,
	};
	static const struct option lo[] = {
	    {"records", 0, 0, O_RECORDS},
	    {"from", 1, 0, O_FROM},
	    {"hex", 0, 0, O_HEX},
	    {"verify", 0, 0, O_VERIFY},
	    {"repair", 1, 0, O_REPAIR},
	    {"backup", 1, 0, O_BACKUP},
	    {"json", 0, 0, O_JSON},
	    {"help", 0, 0, O_HELP},
	    {"slots", 0, 0, O_SLOTS},
	    {"drop-slot", 1, 0, O_DROP_SLOT},
	    {"dry-run", 0, 0, O_DRY_RUN},
	    {0, 0, 0, 0},
	};
	int records = 0, hex = 0, verify = 0, slots = 0, dry_run = 0, c;
	uint64_t from = 0;
	const char *repair_mode = NULL, *backup = NULL, *drop = NULL;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_RECORDS:
			records = 1;
			break;
		case O_FROM:
			from = strtoull(optarg, NULL, 10);
			break;
		case O_HEX:
			hex = 1;
			break;
		case O_VERIFY:
			verify = 1;
			break;
		case O_REPAIR:
			repair_mode = optarg;
			break;
		case O_BACKUP:
			backup = optarg;
			break;
		case O_JSON:
			json = 1;
			break;
		case O_SLOTS:
			slots = 1;
			break;
		case O_DROP_SLOT:
			drop = optarg;
			break;
		case O_DRY_RUN:
			dry_run = 1;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 ||
	    records + verify + slots + (repair_mode != NULL) + (drop != NULL) > 1 ||
	    (dry_run && !repair_mode)) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *dir = argv[optind];
	if (records)
		return dump_records(dir, from, hex);
	if (repair_mode)
		return repair(dir, repair_mode, backup, dry_run);
	if (slots)
		return list_slots(dir);
	if (drop)
		return drop_slot(dir, drop);
	if (verify) {
		struct ringlog_recovery r;
		int err = ringlog_check(dir, RINGLOG_RECOVER_ABSOLUTE, &r);
		if (err && err != -EBADMSG) {
			fprintf(stderr, "ringlog-dump: %s: %s\n  %s\n", dir, ringlog_strerror(err),
				ringlog_last_error());
			return EXIT_ERROR;
		}
		print_report(&r);
		if (json)
			printf("\n");
		else if (!r.damage)
			printf("verified: every frame valid, segments chained\n");
		return r.damage ? EXIT_DAMAGED : EXIT_OK;
	}
	return list_segments(dir);
}
