/*
 * tools/ringlog-dump, run for real: listing, --records, --verify, --repair in each
 * mode (with its backup copies), --slots and --drop-slot, --json, and its usage and
 * error exits.
 */
#include "testutil.h"

#include "format.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NB 40
#define FRAME ((uint64_t)RINGLOG_FRAME_BYTES(3, 300))

static char g_tool[PATH_MAX + 32];

/* The second segment of the log made by make_log: its first LSN and path, and the
 * number of segments. */
static uint64_t second_segment(const char *dir, char path[4096], size_t *nseg)
{
	uint64_t *lsns;
	*nseg = tu_segments(dir, &lsns);
	assert_true(*nseg >= 3);
	uint64_t lsn = lsns[1];
	free(lsns);
	snprintf(path, 4096, "%s", tu_segment_path(dir, lsn));
	return lsn;
}

static void make_log(const char *dir)
{
	struct ringlog_options o;
	tu_options(&o, 4096, 1u << 16);
	struct ringlog *log = tu_open(dir, &o);
	for (uint64_t b = 0; b < NB; b++) {
		uint64_t lsn = tu_append_tagged(log, b, 3, 100);
		assert_int_equal(ringlog_wait(log, lsn + 2), 0);
	}
	assert_int_equal(ringlog_close(log), 0);
}

/* Run ringlog-dump with `args`; its stdout (and stderr) in a static buffer, its exit
 * status in *status. */
static const char *dump(const char *args, int *status)
{
	static char out[1 << 20];
	char cmd[PATH_MAX + 8192];
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", g_tool, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int rc = pclose(p);
	assert_true(WIFEXITED(rc));
	*status = WEXITSTATUS(rc);
	return out;
}

/* dump() with options `opts` (may be "") and the log directory `dir`. */
static const char *dump_on(const char *opts, const char *dir, int *status)
{
	char args[8400];
	snprintf(args, sizeof(args), "%s '%s'", opts, dir);
	return dump(args, status);
}

static size_t count_lines(const char *s, const char *with)
{
	size_t n = 0;
	for (const char *line = s; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char buf[512];
		snprintf(buf, sizeof(buf), "%.*s", (int)(len < 511 ? len : 511), line);
		if (strstr(buf, with))
			n++;
		line += len + (end != NULL);
	}
	return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void flip(const char *path, uint64_t off)
{
	size_t len;
	uint8_t *buf = slurp(path, &len);
	uint8_t b = buf[off] ^ 0x77;
	tu_write_at(path, off, &b, 1);
	free(buf);
}

static void clean_log_lists_reads_and_verifies(void **state)
{
	const char *dir = *state;
	make_log(dir);
	int st;
	char seg[4096];
	size_t nseg;
	second_segment(dir, seg, &nseg);
	const char *out = dump_on("", dir, &st);
	assert_int_equal(st, 0);
	assert_int_equal(count_lines(out, ".rlog"), nseg);
	assert_non_null(strstr(out, strrchr(seg, '/') + 1));

	out = dump_on("--verify", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "verified"));

	out = dump_on("--records", dir, &st);
	assert_int_equal(st, 0);
	assert_int_equal(count_lines(out, "[batch "), 3 * NB);

	out = dump_on("--records --from 100 --hex", dir, &st);
	assert_int_equal(st, 0);
	assert_int_equal(count_lines(out, "[batch "), 3 * NB - 99);
	assert_true(strncmp(out, "100 [batch 100] 100: ", 21) == 0);

	out = dump_on("--json", dir, &st);
	assert_int_equal(st, 0);
	assert_true(out[0] == '{');
	assert_non_null(strstr(out, "\"lost_lsns\":0"));
	assert_int_equal(count_lines(out, "\"status\":\"ok\"") > 0, 1);
}

/* make_log, then a byte flipped in the 4th frame of the second segment (path into
 * seg1, the number of segments into *nseg).  Returns that frame's offset. */
static uint64_t damaged_log(const char *dir, char seg1[4096], size_t *nseg)
{
	make_log(dir);
	second_segment(dir, seg1, nseg);
	uint64_t off = tu_data_start(seg1) + 3 * FRAME;
	flip(seg1, off + 100);
	return off;
}

/* A damaged sealed segment: --verify names it; the default mode refuses the repair
 * and changes nothing; point-in-time repairs, keeping a copy of what it cuts. */
static void damage_verify_and_repair_point_in_time(void **state)
{
	const char *dir = *state;
	char seg1[4096];
	size_t nseg;
	uint64_t off = damaged_log(dir, seg1, &nseg);
	size_t dlen;
	uint8_t *damaged = slurp(seg1, &dlen);

	char args[8300], want[128];
	int st;
	const char *out = dump_on("--verify", dir, &st);
	assert_int_equal(st, 1);
	snprintf(want, sizeof(want), "%s at offset %llu", strrchr(seg1, '/') + 1,
		 (unsigned long long)off);
	assert_non_null(strstr(out, want));

	out = dump_on("", dir, &st);
	assert_int_equal(st, 1);
	assert_non_null(strstr(out, "checksum"));

	out = dump_on("--repair tolerate-tail", dir, &st);
	assert_int_equal(st, 1);
	assert_non_null(strstr(out, "refuses"));
	size_t len;
	uint8_t *now = slurp(seg1, &len);
	assert_int_equal(len, dlen);
	free(now);

	char backup[4200];
	snprintf(backup, sizeof(backup), "%s/../dump-backup-pit", dir);
	snprintf(args, sizeof(args), "--repair point-in-time --backup '%s' '%s'", backup, dir);
	out = dump(args, &st);
	assert_int_equal(st, 0);
	snprintf(want, sizeof(want), "dropped %zu segments", nseg - 2);
	assert_non_null(strstr(out, want));
	char copy[8300];
	snprintf(copy, sizeof(copy), "%s/%s", backup, strrchr(seg1, '/') + 1);
	now = slurp(copy, &len);
	assert_int_equal(len, dlen);
	assert_memory_equal(now, damaged, len);
	free(now);
	assert_int_equal(tu_file_size(seg1), off);
	dump_on("--verify", dir, &st);
	assert_int_equal(st, 0);
	free(damaged);
	tu_rmrf(backup);
}

/* Salvage: the damaged frame becomes a hole; --records shows it, the listing counts
 * it, --verify accepts the log and reports the LSNs lost. */
static void repair_skip_corrupted_and_show_the_hole(void **state)
{
	const char *dir = *state;
	make_log(dir);
	char seg1[4096];
	size_t nseg;
	uint64_t first = second_segment(dir, seg1, &nseg);
	flip(seg1, tu_data_start(seg1) + 3 * FRAME + 100); /* its 4th batch */
	uint64_t lost = first + 9; /* LSNs lost..lost+2 */
	size_t dlen;
	uint8_t *damaged = slurp(seg1, &dlen);
	char backup[4200], args[8300];
	snprintf(backup, sizeof(backup), "%s/../dump-backup-skip", dir);
	snprintf(args, sizeof(args), "--repair skip-corrupted --backup '%s' '%s'", backup, dir);
	int st;
	const char *out = dump(args, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "wrote 1 hole frames"));
	assert_non_null(strstr(out, "3 LSNs lost"));
	char copy[8300];
	snprintf(copy, sizeof(copy), "%s/%s", backup, strrchr(seg1, '/') + 1);
	size_t len;
	uint8_t *kept = slurp(copy, &len);
	assert_int_equal(len, dlen);
	assert_memory_equal(kept, damaged, len);
	free(kept);
	free(damaged);

	out = dump_on("--records", dir, &st);
	assert_int_equal(st, 0);
	char want[160];
	snprintf(want, sizeof(want), "-- LSNs %llu..%llu lost (hole) --\n%llu [batch %llu]",
		 (unsigned long long)lost, (unsigned long long)lost + 2,
		 (unsigned long long)lost + 3, (unsigned long long)lost + 3);
	assert_non_null(strstr(out, want));
	assert_int_equal(count_lines(out, "[batch "), 3 * NB - 3);

	out = dump_on("--records --json", dir, &st);
	snprintf(want, sizeof(want), "{\"lsn\":%llu,\"batch\":%llu,\"len\":100,\"lost_before\":3",
		 (unsigned long long)lost + 3, (unsigned long long)lost + 3);
	assert_non_null(strstr(out, want));

	out = dump_on("--verify", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "3 LSNs lost"));

	out = dump_on("--json", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "\"holes\":1,\"lost_lsns\":3"));
	tu_rmrf(backup);
}

/* Entries of directory `path` (not . and ..). */
static size_t entries(const char *path)
{
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	unsigned long n = 0;
	assert_int_equal(fscanf(p, "%lu", &n), 1);
	pclose(p);
	return n;
}

/* --repair MODE --dry-run prints the plan, one line per step naming the file and the
 * offset, and changes no byte; --repair then copies exactly the files the plan
 * touches (the damaged segment, and the ones after it it removes) and nothing else. */
static void dry_run_prints_the_plan_and_backup_holds_what_it_touches(void **state)
{
	const char *dir = *state;
	char seg1[4096];
	size_t nseg;
	uint64_t off = damaged_log(dir, seg1, &nseg);
	size_t len0, len1;
	char *before = tu_dir_digest(dir, &len0);
	int st;
	const char *out = dump_on("--repair point-in-time --dry-run", dir, &st);
	assert_int_equal(st, 0);
	char want[160];
	snprintf(want, sizeof(want), "plan: %zu steps", nseg - 1);
	assert_non_null(strstr(out, want));
	assert_int_equal(count_lines(out, "  remove "), nseg - 2);
	snprintf(want, sizeof(want), "  cut          %s at offset %llu", strrchr(seg1, '/') + 1,
		 (unsigned long long)off);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "nothing was changed"));
	out = dump_on("--repair point-in-time --dry-run --json", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "\"plan\":[{\"op\":\"remove\""));
	char *after = tu_dir_digest(dir, &len1);
	assert_int_equal(len0, len1);
	assert_memory_equal(before, after, len0);
	free(before);
	free(after);

	char backup[4200], args[8300];
	snprintf(backup, sizeof(backup), "%s/../dump-backup-exact", dir);
	snprintf(args, sizeof(args), "--repair point-in-time --backup '%s' '%s'", backup, dir);
	out = dump(args, &st);
	assert_int_equal(st, 0);
	assert_int_equal(entries(backup), nseg - 1); /* not the first segment */
	char copy[8300];
	snprintf(copy, sizeof(copy), "%s/%s", backup, strrchr(seg1, '/') + 1);
	assert_true(access(copy, F_OK) == 0);
	out = dump_on("--repair point-in-time --dry-run", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "plan: 0 steps"));
	dump_on("--dry-run", dir, &st);
	assert_int_equal(st, 2); /* only with --repair */
	tu_rmrf(backup);
}

/* The listing judges by the library's rules, chain included, so it never calls a log
 * whole that --verify calls damaged: with a middle segment missing, both exit 1 and
 * name the segment after the gap. */
static void listing_and_verify_agree_on_a_missing_segment(void **state)
{
	const char *dir = *state;
	make_log(dir);
	uint64_t *lsns;
	size_t n = tu_segments(dir, &lsns);
	assert_true(n >= 4);
	assert_int_equal(unlink(tu_segment_path(dir, lsns[1])), 0);
	char after[RL_SEG_NAME_LEN + 1];
	rl_seg_name(after, lsns[2]);
	free(lsns);
	int st;
	const char *out = dump_on("", dir, &st);
	assert_int_equal(st, 1);
	assert_int_equal(count_lines(out, "does not start after the previous one"), 1);
	char want[160];
	snprintf(want, sizeof(want), "%s", after);
	const char *line = strstr(out, want);
	assert_non_null(line);
	assert_non_null(strstr(line, "does not start after"));
	out = dump_on("--verify", dir, &st);
	assert_int_equal(st, 1);
	snprintf(want, sizeof(want), "damage: %s at offset 0", after);
	assert_non_null(strstr(out, want));
}

static void usage_and_errors(void **state)
{
	const char *dir = *state;
	int st;
	const char *out = dump("--help", &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "skip-corrupted"));
	dump("", &st);
	assert_int_equal(st, 2);
	dump("--bogus x", &st);
	assert_int_equal(st, 2);
	char args[4300];
	dump_on("--records --verify", dir, &st);
	assert_int_equal(st, 2);
	make_log(dir);
	out = dump_on("--repair absolute", dir, &st);
	assert_int_equal(st, 2);
	assert_non_null(strstr(out, "skip-corrupted"));
	snprintf(args, sizeof(args), "'%s/no-such-log'", dir);
	dump(args, &st);
	assert_int_equal(st, 3);
	snprintf(args, sizeof(args), "--records '%s/no-such-log'", dir);
	out = dump(args, &st);
	assert_int_equal(st, 3);
	assert_non_null(strstr(out, "no-such-log"));
}

/* Make slot `name` of the log in `dir` at `lsn`. */
static void make_slot(const char *dir, const char *name, uint64_t lsn)
{
	struct ringlog_slot *slot;
	assert_int_equal(ringlog_slot_open(dir, name, 1, lsn, &slot), 0);
	ringlog_slot_close(slot);
}

static int slot_exists(const char *dir, const char *name)
{
	struct ringlog_slot *slot;
	int err = ringlog_slot_open(dir, name, 0, 0, &slot);
	if (err == 0)
		ringlog_slot_close(slot);
	else
		assert_int_equal(err, -ENOENT);
	return err == 0;
}

/* --slots: one line per SLOT.<name> file, in name order, with its LSN. */
static void slots_lists_each_slot_with_its_lsn(void **state)
{
	const char *dir = *state;
	make_log(dir);
	make_slot(dir, "nats-orders", 57);
	make_slot(dir, "backup.1", 0);
	int st;
	const char *out = dump_on("--slots", dir, &st);
	assert_int_equal(st, 0);
	const char *b = strstr(out, "\nbackup.1 "), *n = strstr(out, "\nnats-orders ");
	assert_non_null(b);
	assert_non_null(n);
	assert_true(b < n);
	assert_non_null(strstr(b, " 0\n"));
	assert_non_null(strstr(n, " 57\n"));
	assert_int_equal(count_lines(out, "SLOT."), 0);
}

static void slots_json_lists_names_and_lsns(void **state)
{
	const char *dir = *state;
	make_log(dir);
	make_slot(dir, "nats-orders", 57);
	make_slot(dir, "backup.1", 0);
	int st;
	const char *out = dump_on("--slots --json", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "\"slots\":[{\"name\":\"backup.1\",\"lsn\":0},"
				    "{\"name\":\"nats-orders\",\"lsn\":57}]}"));
}

static void slots_on_a_log_without_slots_says_so(void **state)
{
	const char *dir = *state;
	make_log(dir);
	int st;
	const char *out = dump_on("--slots", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "no replication slots"));
	out = dump_on("--slots --json", dir, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "\"slots\":[]"));
}

/* --drop-slot removes the slot (and only it), durably through the library. */
static void drop_slot_removes_it(void **state)
{
	const char *dir = *state;
	make_log(dir);
	make_slot(dir, "nats-orders", 57);
	make_slot(dir, "keep", 3);
	char args[4300];
	snprintf(args, sizeof(args), "--drop-slot nats-orders '%s'", dir);
	int st;
	const char *out = dump(args, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "dropped replication slot nats-orders"));
	assert_false(slot_exists(dir, "nats-orders"));
	assert_true(slot_exists(dir, "keep"));
	out = dump_on("--slots", dir, &st);
	assert_null(strstr(out, "nats-orders"));
}

/* An unknown slot: a message naming it and how to list the slots; exit 3. */
static void drop_unknown_slot_fails_with_a_clear_message(void **state)
{
	const char *dir = *state;
	make_log(dir);
	make_slot(dir, "keep", 3);
	int st;
	const char *out = dump_on("--drop-slot nats-nope", dir, &st);
	assert_int_equal(st, 3);
	assert_non_null(strstr(out, "no replication slot 'nats-nope'"));
	assert_non_null(strstr(out, "--slots"));
	assert_true(slot_exists(dir, "keep"));
}

static void drop_slot_with_a_bad_name_is_a_usage_error(void **state)
{
	const char *dir = *state;
	make_log(dir);
	int st;
	const char *out = dump_on("--drop-slot 'a/b'", dir, &st);
	assert_int_equal(st, 2);
	assert_non_null(strstr(out, "not a slot name"));
}

static void slots_usage_and_missing_directory(void **state)
{
	const char *dir = *state;
	int st;
	const char *out = dump("--help", &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "--slots"));
	assert_non_null(strstr(out, "--drop-slot NAME"));
	dump_on("--slots --verify", dir, &st);
	assert_int_equal(st, 2);
	dump_on("--drop-slot x --records", dir, &st);
	assert_int_equal(st, 2);
	dump_on("--drop-slot", dir, &st); /* the directory taken as the name: no DIR */
	assert_int_equal(st, 2);
	char args[4300];
	snprintf(args, sizeof(args), "--slots '%s/no-such-log'", dir);
	out = dump(args, &st);
	assert_int_equal(st, 3);
	assert_non_null(strstr(out, "no-such-log"));
	snprintf(args, sizeof(args), "--drop-slot x '%s/no-such-log'", dir);
	out = dump(args, &st);
	assert_int_equal(st, 3);
	assert_non_null(strstr(out, "no-such-log"));
}

int main(void)
{
	/* The tool sits one directory above this test program. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(g_tool, sizeof(g_tool), "%s/../ringlog-dump", self);
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    TU_DIR_TEST(clean_log_lists_reads_and_verifies),
	    TU_DIR_TEST(damage_verify_and_repair_point_in_time),
	    TU_DIR_TEST(repair_skip_corrupted_and_show_the_hole),
	    TU_DIR_TEST(dry_run_prints_the_plan_and_backup_holds_what_it_touches),
	    TU_DIR_TEST(listing_and_verify_agree_on_a_missing_segment),
	    TU_DIR_TEST(usage_and_errors),
	    TU_DIR_TEST(slots_lists_each_slot_with_its_lsn),
	    TU_DIR_TEST(slots_json_lists_names_and_lsns),
	    TU_DIR_TEST(slots_on_a_log_without_slots_says_so),
	    TU_DIR_TEST(drop_slot_removes_it),
	    TU_DIR_TEST(drop_unknown_slot_fails_with_a_clear_message),
	    TU_DIR_TEST(drop_slot_with_a_bad_name_is_a_usage_error),
	    TU_DIR_TEST(slots_usage_and_missing_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
