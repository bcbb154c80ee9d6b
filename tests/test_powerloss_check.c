/*
 * ringlog_check in every mode over damaged copies of the power-loss log
 * (tests/powerloss.h): it changes no byte and agrees with what open then does.
 */
#include "powerloss.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- 6. ringlog_check is read-only and agrees with open ---- */

static void check_is_read_only_and_agrees(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	const struct seg *last = &w->seg[L];
	const struct frame *lf = &last->fr[last->nfr - 1];
	size_t s = L / 2;
	const struct seg *mid = &w->seg[s];

	/* Damage cases, each given to ringlog_check in every mode, then to an open in
	 * every mode (verify_mode checks the directory after every check, and that the
	 * open's verdict and report equal the check's).  The copies have no LOCK file:
	 * a check must not create one either. */
	for (unsigned c = 0; c < 11; c++) {
		struct snap d;
		snap_clone(&w->snap, &d);
		snap_remove(&d, (size_t)snap_find(&d, "LOCK"));
		struct expect e = {.damaged = 1};
		switch (c) {
		case 0:
			SCEN("check: intact log");
			e = (struct expect){.dlsn = w->next_lsn};
			break;
		case 1:
			SCEN("check: last frame torn");
			file_resize(snap_seg(&d, L), lf->off + lf->len / 2);
			e.dfile = L, e.doff = lf->off, e.dlsn = w->b[lf->batch].first_lsn;
			break;
		case 2:
			SCEN("check: last segment torn inside its header");
			file_resize(snap_seg(&d, L), 40);
			e = (struct expect){
			    .torn_rotation = 1, .dfile = L, .dlsn = last->first_lsn};
			break;
		case 3:
			SCEN("check: last segment cut at a frame boundary");
			file_resize(snap_seg(&d, L), lf->off);
			e = (struct expect){.dlsn = w->b[lf->batch].first_lsn};
			break;
		case 4:
			SCEN("check: zeros after the last frame");
			file_resize(snap_seg(&d, L), last->size + 4096);
			e.dfile = L, e.doff = last->size, e.dlsn = w->next_lsn;
			break;
		case 5:
			SCEN("check: flipped byte in the last frame");
			snap_seg(&d, L)->data[lf->off + lf->len - 3] ^= 0x21;
			e.dfile = L, e.doff = lf->off, e.dlsn = w->b[lf->batch].first_lsn;
			break;
		case 6:
			SCEN("check: two trailing segments deleted");
			snap_remove(&d, (size_t)snap_find(&d, w->seg[L].name));
			snap_remove(&d, (size_t)snap_find(&d, w->seg[L - 1].name));
			e = (struct expect){.dlsn = w->seg[L - 1].first_lsn};
			break;
		case 7:
			SCEN("check: flipped byte in sealed %s", mid->name);
			snap_seg(&d, s)->data[mid->size / 2] ^= 0x08;
			e = expect_at_byte(w, s, mid->size / 2);
			break;
		case 8:
			SCEN("check: sealed %s truncated mid-frame", mid->name);
			file_resize(snap_seg(&d, s), mid->fr[mid->nfr - 1].off + 13);
			e.dfile = s, e.doff = mid->fr[mid->nfr - 1].off;
			e.dlsn = w->b[mid->fr[mid->nfr - 1].batch].first_lsn;
			break;
		case 9:
			SCEN("check: middle segment %s deleted", mid->name);
			snap_remove(&d, (size_t)snap_find(&d, mid->name));
			e.dfile = s, e.doff = 0, e.dlsn = mid->first_lsn;
			break;
		default:
			SCEN("check: first segment's header damaged");
			snap_seg(&d, 0)->data[20] ^= 0x01;
			e.dfile = 0, e.doff = 0, e.dlsn = 1;
			break;
		}
		char base[sizeof(g_what)];
		snprintf(base, sizeof(base), "%s", g_what);
		for (uint32_t m = 0; m < 3; m++) {
			snprintf(g_what, sizeof(g_what), "%s", base);
			verify_mode(w, &d, &e, m, 0);
		}
		snap_free(&d);
	}

	struct ringlog_recovery r;
	/* An unknown mode is refused by both, and changes nothing. */
	SCEN("check: unknown mode");
	snap_write(&w->snap, w->work);
	EXPECT_INT(ringlog_check(w->work, RINGLOG_RECOVER_SKIP_CORRUPTED + 1, &r), -EINVAL);
	expect_dir_is(w->work, &w->snap, 0, "ringlog_check(mode 4)");
	struct ringlog_options o = w->o;
	o.recovery_mode = RINGLOG_RECOVER_SKIP_CORRUPTED + 1;
	struct ringlog *log = NULL;
	EXPECT_INT(ringlog_open(w->work, &o, &log), -EINVAL);
	expect_dir_is(w->work, &w->snap, 0, "ringlog_open(mode 4)");

	/* Works while a writer has the log open, and changes nothing then either. */
	SCEN("check: while the log is open");
	log = tu_open(w->work, &w->o);
	w->opens++;
	struct snap open_snap;
	snap_load(w->work, &open_snap, 0);
	for (uint32_t m = 0; m < 3; m++) {
		EXPECT_INT(ringlog_check(w->work, m, &r), 0);
		EXPECT_INT(r.damage, 0);
		EXPECT_U64(r.last_lsn, w->next_lsn - 1);
		expect_dir_is(w->work, &open_snap, 0, "ringlog_check on an open log");
	}
	snap_free(&open_snap);
	EXPECT_INT(ringlog_close(log), 0);

	/* No log there: nothing is created. */
	SCEN("check: empty, missing and non-directory paths");
	tu_rmrf(w->work);
	assert_int_equal(mkdir(w->work, 0755), 0);
	for (uint32_t m = 0; m < 3; m++) {
		EXPECT_INT(ringlog_check(w->work, m, &r), 0);
		EXPECT_U64(r.segments, 0);
		EXPECT_U64(r.first_lsn, 0);
		EXPECT_INT(r.damage, 0);
	}
	struct snap empty = {0};
	expect_dir_is(w->work, &empty, 0, "ringlog_check on an empty directory");
	char missing[4200];
	snprintf(missing, sizeof(missing), "%s/missing", w->work);
	EXPECT_INT(ringlog_check(missing, TOLERATE, &r), -ENOENT);
	EXPECT(access(missing, F_OK) != 0);
	write_whole(missing, (const uint8_t *)"x", 1);
	EXPECT_INT(ringlog_check(missing, TOLERATE, &r), -ENOTDIR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(check_is_read_only_and_agrees, pl_setup, pl_teardown),
	};
	return pl_run("test_powerloss_check", tests, sizeof(tests) / sizeof(tests[0]));
}
