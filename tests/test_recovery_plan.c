/*
 * Recovery as plan, then apply (src/recovery.h): what ringlog_check_plan() lists is
 * exactly what an open does, planning changes no byte, and a repair stopped after
 * any of its steps (a crash between two durable steps) is finished by the next
 * recovery in the same mode, to the same bytes as an uninterrupted one.
 *
 * The log: 40 batches of 3 records of 100 bytes, each waited for, written buffered
 * into 4192-byte segments of 12 frames (344 bytes each, from offset 64): segments
 * start at LSNs 1, 37, 73 and 109 (the last holds 4 batches).
 */
#include "testutil.h"

#include "file_io.h"
#include "format.h"
#include "recovery.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NB 40
#define NREC 3
#define RLEN 100
#define FRAME ((uint64_t)RINGLOG_FRAME_BYTES(NREC, NREC * RLEN)) /* 344 */
#define PER_SEG 12
#define SEG(k) ((uint64_t)NREC * PER_SEG * (k) + 1) /* first LSN of segment k */
#define OFF(b) (RL_SEG_HEADER_BYTES + FRAME * ((b) % PER_SEG))

static struct ringlog_options g_opts;

static void make_log(const char *dir)
{
	tu_options(&g_opts, RL_SEG_HEADER_BYTES + PER_SEG * FRAME, 1u << 16);
	g_opts.io_mode = RINGLOG_IO_BUFFERED;
	struct ringlog *log = tu_open(dir, &g_opts);
	for (uint64_t b = 0; b < NB; b++) {
		uint64_t lsn = tu_append_tagged(log, b, NREC, RLEN);
		assert_int_equal(ringlog_wait(log, lsn + NREC - 1), 0);
	}
	assert_int_equal(ringlog_close(log), 0);
}

static void flip(const char *path, uint64_t off)
{
	uint8_t x = 0x5a;
	tu_write_at(path, off, &x, 1);
}

/* ---- the damage of each case, and the plan expected for it ---- */

struct scenario {
	const char *name;
	uint32_t mode;
	void (*damage)(const char *dir);
	size_t nops;
	uint32_t ops[8]; /* the steps' kinds, in order */
};

/* Salvage: a damaged frame in segment 0, segment 1's header damaged, segment 2
 * missing, and the last segment's last frame torn. */
static void salvage_damage(const char *dir)
{
	flip(tu_segment_path(dir, SEG(0)), OFF(2) + 40);
	flip(tu_segment_path(dir, SEG(1)), 20);
	assert_int_equal(unlink(tu_segment_path(dir, SEG(2))), 0);
	const char *last = tu_segment_path(dir, SEG(3));
	tu_truncate(last, tu_data_end(last) - 100);
}

/* Point-in-time: a damaged frame in segment 1 (segments 2 and 3 go). */
static void pit_damage(const char *dir)
{
	flip(tu_segment_path(dir, SEG(1)), OFF(5) + 40);
}

/* Tolerate-tail: the last frame torn, zeros after it. */
static void tail_damage(const char *dir)
{
	const char *last = tu_segment_path(dir, SEG(3));
	uint64_t end = tu_data_end(last);
	tu_truncate(last, end - 100);
	tu_truncate(last, end + 4096);
}

/* Every mode but absolute: a rotation torn by a crash (the last segment sealed, and
 * a next one of 20 zero bytes). */
static void torn_rotation(const char *dir)
{
	const char *last = tu_segment_path(dir, SEG(3));
	tu_truncate(last, tu_data_end(last)); /* sealed, as rotation does first */
	int fd = open(tu_segment_path(dir, NREC * NB + 1), O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	uint8_t zeros[20] = {0};
	assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
	close(fd);
}

static const struct scenario scenarios[] = {
    {"skip-corrupted", RINGLOG_RECOVER_SKIP_CORRUPTED, salvage_damage, 5,
     {RINGLOG_REPAIR_WRITE_HOLES, RINGLOG_REPAIR_WRITE_HEADER, RINGLOG_REPAIR_WRITE_HOLES,
      RINGLOG_REPAIR_WRITE_HEADER, RINGLOG_REPAIR_CUT}},
    {"point-in-time", RINGLOG_RECOVER_POINT_IN_TIME, pit_damage, 3,
     {RINGLOG_REPAIR_REMOVE, RINGLOG_REPAIR_REMOVE, RINGLOG_REPAIR_CUT}},
    {"tolerate-tail", RINGLOG_RECOVER_TOLERATE_TAIL, tail_damage, 1, {RINGLOG_REPAIR_CUT}},
    {"torn rotation", RINGLOG_RECOVER_TOLERATE_TAIL, torn_rotation, 1,
     {RINGLOG_REPAIR_RESET_FILE}},
};

static char *damaged_log(const struct scenario *sc)
{
	char *dir = tu_tmpdir();
	make_log(dir);
	sc->damage(dir);
	return dir;
}

static int open_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* ---- the tests ---- */

/* ringlog_check_plan lists the steps expected, in order, each naming a segment file
 * of the directory, and planning changes no byte. */
static void plan_lists_the_steps_and_changes_nothing(void **state)
{
	(void)state;
	for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
		const struct scenario *sc = &scenarios[s];
		char *dir = damaged_log(sc);
		size_t len0, len1;
		char *before = tu_dir_digest(dir, &len0);
		struct ringlog_recovery rep;
		struct ringlog_repair_action *acts;
		size_t n;
		if (ringlog_check_plan(dir, sc->mode, &rep, &acts, &n) != 0)
			fail_msg("%s: %s", sc->name, ringlog_last_error());
		char *after = tu_dir_digest(dir, &len1);
		assert_int_equal(len0, len1);
		assert_memory_equal(before, after, len0);
		if (n != sc->nops) {
			for (size_t i = 0; i < n; i++)
				print_message("  step %zu: op %u %s at %llu: %s\n", i, acts[i].op,
					      acts[i].file, (unsigned long long)acts[i].offset,
					      acts[i].why);
			fail_msg("%s: %zu steps planned, %zu expected", sc->name, n, sc->nops);
		}
		for (size_t i = 0; i < n; i++) {
			if (acts[i].op != sc->ops[i])
				fail_msg("%s: step %zu is op %u, expected %u", sc->name, i,
					 acts[i].op, sc->ops[i]);
			assert_true(acts[i].why[0] != '\0');
			assert_true(access(tu_path(dir, acts[i].file), F_OK) == 0);
		}
		free(acts);
		free(before);
		free(after);
		tu_rmrf(dir);
		free(dir);
	}
}

/* The salvage plan's steps name the files and offsets of the damage: the hole over
 * batch 2's frame, the header of segment 1, holes for segment 2's LSNs appended to
 * segment 1, segment 3's header chained to them, and the torn frame cut. */
static void plan_names_files_and_offsets(void **state)
{
	(void)state;
	char *dir = damaged_log(&scenarios[0]);
	struct ringlog_recovery rep;
	struct ringlog_repair_action *a;
	size_t n;
	assert_int_equal(ringlog_check_plan(dir, RINGLOG_RECOVER_SKIP_CORRUPTED, &rep, &a, &n), 0);
	assert_int_equal(n, 5);
	size_t only = 0; /* the count alone, without the steps */
	assert_int_equal(ringlog_check_plan(dir, RINGLOG_RECOVER_SKIP_CORRUPTED, &rep, NULL, &only), 0);
	assert_int_equal(only, 5);
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, SEG(0));
	assert_string_equal(a[0].file, name);
	assert_int_equal(a[0].offset, OFF(2));
	assert_int_equal(a[0].first_lsn, NREC * 2 + 1);
	assert_int_equal(a[0].lsns, NREC);
	rl_seg_name(name, SEG(1));
	assert_string_equal(a[1].file, name);
	assert_int_equal(a[1].offset, 0);
	assert_int_equal(a[1].length, RL_SEG_HEADER_BYTES);
	assert_string_equal(a[2].file, name);
	assert_int_equal(a[2].offset, OFF(0) + PER_SEG * FRAME);
	assert_int_equal(a[2].first_lsn, SEG(2));
	assert_int_equal(a[2].lsns, NREC * PER_SEG);
	rl_seg_name(name, SEG(3));
	assert_string_equal(a[3].file, name);
	assert_string_equal(a[4].file, name);
	assert_int_equal(a[4].offset, OFF(3));
	assert_int_equal(a[4].truncate, 1);
	assert_int_equal(a[4].length, FRAME - 100);
	free(a);
	tu_rmrf(dir);
	free(dir);
}

/* An open applies what the plan said: the report is the same, and afterwards there
 * is nothing left to do in any mode. */
static void open_does_what_the_plan_says(void **state)
{
	(void)state;
	for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
		const struct scenario *sc = &scenarios[s];
		char *dir = damaged_log(sc);
		struct ringlog_recovery planned, done;
		assert_int_equal(ringlog_check_plan(dir, sc->mode, &planned, NULL, NULL), 0);
		struct ringlog_options o = g_opts;
		o.recovery_mode = sc->mode;
		struct ringlog *log = tu_open(dir, &o);
		assert_int_equal(ringlog_recovery_report(log, &done), 0);
		assert_int_equal(ringlog_close(log), 0);
		if (memcmp(&planned, &done, sizeof(done)) != 0)
			fail_msg("%s: the open's report differs from the plan's", sc->name);
		for (uint32_t m = 0; m <= RINGLOG_RECOVER_SKIP_CORRUPTED; m++) {
			struct ringlog_repair_action *acts;
			size_t n = 99;
			struct ringlog_recovery again;
			assert_int_equal(ringlog_check_plan(dir, m, &again, &acts, &n), 0);
			if (n != 0)
				fail_msg("%s: mode %u still plans %zu steps after the repair",
					 sc->name, m, n);
			assert_null(acts);
		}
		tu_rmrf(dir);
		free(dir);
	}
}

/* A repair stopped after any number of its steps (each durable: what a crash between
 * two of them leaves) is finished by the next recovery in the same mode: the same
 * bytes and names as one that ran through. */
static void every_prefix_of_the_plan_converges(void **state)
{
	(void)state;
	for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
		const struct scenario *sc = &scenarios[s];
		char *dir = damaged_log(sc);
		char *ref = tu_tmpdir();
		tu_copy_dir(dir, ref);
		int fd = open_dir(ref);
		struct rl_plan full;
		assert_int_equal(rl_plan_recovery(fd, sc->mode, 1, &full), 0);
		close(fd);
		size_t nsteps = full.nactions;
		assert_int_equal(nsteps, sc->nops);
		rl_plan_free(&full);
		size_t rlen;
		char *done = tu_dir_digest(ref, &rlen);
		for (size_t k = 0; k < nsteps; k++) {
			char *work = tu_tmpdir();
			tu_copy_dir(dir, work);
			fd = open_dir(work);
			struct rl_plan p;
			assert_int_equal(rl_plan_recovery(fd, sc->mode, 0, &p), 0);
			size_t all = p.nactions;
			p.nactions = k; /* the crash: only the first k steps happened */
			assert_int_equal(rl_plan_apply(fd, &p), 0);
			p.nactions = all;
			rl_plan_free(&p);
			struct rl_plan rest;
			if (rl_plan_recovery(fd, sc->mode, 1, &rest) != 0)
				fail_msg("%s: after %zu of %zu steps the same mode refuses: %s",
					 sc->name, k, nsteps, ringlog_last_error());
			rl_plan_free(&rest);
			close(fd);
			size_t wlen;
			char *got = tu_dir_digest(work, &wlen);
			if (wlen != rlen || memcmp(got, done, rlen) != 0)
				fail_msg("%s: stopped after %zu of %zu steps, recovery ends elsewhere",
					 sc->name, k, nsteps);
			free(got);
			tu_rmrf(work);
			free(work);
		}
		free(done);
		tu_rmrf(ref);
		free(ref);
		tu_rmrf(dir);
		free(dir);
	}
}

/* A mode that refuses plans nothing; the arguments are checked. */
static void refusal_and_bad_arguments(void **state)
{
	const char *dir = *state;
	make_log(dir);
	pit_damage(dir);
	struct ringlog_recovery rep;
	struct ringlog_repair_action *acts = (void *)1;
	size_t n = 7;
	assert_int_equal(ringlog_check_plan(dir, RINGLOG_RECOVER_TOLERATE_TAIL, &rep, &acts, &n),
			 -EBADMSG);
	assert_null(acts);
	assert_int_equal(n, 0);
	assert_int_equal(rep.damage, -EBADMSG);
	assert_non_null(strstr(ringlog_last_error(), rep.damage_file));
	assert_int_equal(ringlog_check_plan(dir, 9, &rep, &acts, &n), -EINVAL);
	assert_non_null(strstr(ringlog_last_error(), "unknown recovery mode"));
	assert_int_equal(ringlog_check_plan(NULL, 0, &rep, &acts, &n), -EINVAL);
	assert_int_equal(ringlog_check_plan(dir, 0, NULL, &acts, &n), -EINVAL);
	assert_null(acts);
	assert_int_equal(ringlog_check_plan(tu_path(dir, "nowhere"), 0, &rep, &acts, &n), -ENOENT);
	assert_non_null(strstr(ringlog_last_error(), "nowhere"));
}

/* ---- the applier's failures: fault injection on the file operations ---- */

static enum rl_file_op g_fail_op;
static int g_fired;

static int fail_op(void *arg, enum rl_file_op op, const char *name, uint64_t off, uint64_t len)
{
	(void)arg, (void)off, (void)len;
	if (op != g_fail_op || !name || !strstr(name, ".rlog"))
		return 0;
	g_fired++;
	return -EIO;
}

static struct rl_file_faults g_faults = {fail_op, NULL};

/* Another log's segment under a name after this log's end: salvage sets it aside. */
static void foreign_segment(const char *dir)
{
	char *other = tu_tmpdir();
	make_log(other);
	char from[4200], to[4200];
	snprintf(from, sizeof(from), "%s", tu_segment_path(other, SEG(1)));
	snprintf(to, sizeof(to), "%s", tu_segment_path(dir, 1000));
	char cmd[8600];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
	tu_rmrf(other);
	free(other);
}

/* A step that fails fails the open with its error and names what it was doing and
 * the file; the steps before it stay done, and the next open finishes the repair:
 * nothing left to do, and the LSNs kept are the ones planned. */
static void failed_step_fails_the_open_and_reopen_finishes(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		uint32_t mode;
		void (*damage)(const char *dir);
		enum rl_file_op op;
		const char *says;
	} cases[] = {
	    {"removal", RINGLOG_RECOVER_POINT_IN_TIME, pit_damage, RL_FOP_UNLINK, "removing"},
	    {"cut", RINGLOG_RECOVER_POINT_IN_TIME, pit_damage, RL_FOP_FTRUNCATE, "cutting"},
	    {"hole write", RINGLOG_RECOVER_SKIP_CORRUPTED, salvage_damage, RL_FOP_PWRITE,
	     "writing hole frames"},
	    {"set-aside rename", RINGLOG_RECOVER_SKIP_CORRUPTED, foreign_segment, RL_FOP_RENAME,
	     "renaming"},
	    {"torn header reset", RINGLOG_RECOVER_TOLERATE_TAIL, torn_rotation, RL_FOP_FTRUNCATE,
	     "rewriting the torn header"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char *d = tu_tmpdir();
		make_log(d);
		cases[c].damage(d);
		struct ringlog_recovery planned;
		struct ringlog_repair_action *acts;
		size_t n;
		assert_int_equal(ringlog_check_plan(d, cases[c].mode, &planned, &acts, &n), 0);
		assert_true(n > 0);
		free(acts);
		struct ringlog_options o = g_opts;
		o.recovery_mode = cases[c].mode;
		g_fail_op = cases[c].op;
		g_fired = 0;
		rl_file_faults = &g_faults;
		struct ringlog *log = NULL;
		int err = ringlog_open(d, &o, &log);
		rl_file_faults = NULL;
		if (err != -EIO || log || g_fired == 0)
			fail_msg("%s: open gave %d (fault fired %d times)", cases[c].name, err,
				 g_fired);
		if (!strstr(ringlog_last_error(), cases[c].says) ||
		    !strstr(ringlog_last_error(), ".rlog"))
			fail_msg("%s: \"%s\" does not say \"%s\" and name the file",
				 cases[c].name, ringlog_last_error(), cases[c].says);
		log = tu_open(d, &o);
		struct ringlog_recovery rep;
		assert_int_equal(ringlog_recovery_report(log, &rep), 0);
		assert_int_equal(ringlog_close(log), 0);
		assert_int_equal(rep.last_lsn, planned.last_lsn);
		struct ringlog_recovery again;
		assert_int_equal(ringlog_check_plan(d, cases[c].mode, &again, &acts, &n), 0);
		if (n != 0)
			fail_msg("%s: %zu steps left after the reopen", cases[c].name, n);
		tu_rmrf(d);
		free(d);
	}
}

int main(void)
{
	tu_require_uring();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(plan_lists_the_steps_and_changes_nothing),
	    cmocka_unit_test(plan_names_files_and_offsets),
	    cmocka_unit_test(open_does_what_the_plan_says),
	    cmocka_unit_test(every_prefix_of_the_plan_converges),
	    TU_DIR_TEST(refusal_and_bad_arguments),
	    cmocka_unit_test(failed_step_fails_the_open_and_reopen_finishes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
