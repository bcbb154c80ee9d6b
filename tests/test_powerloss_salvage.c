/*
 * Salvage over random damage (tests/powerloss.h): flipped bytes in frames and
 * headers, truncated sealed segments and deleted middle segments, up to three at
 * once: exactly the touched batches lost, the report derived independently from the
 * layout, ringlog_check predicts the open byte for byte, and an interrupted salvage
 * (any mix of done and not done file changes) ends in the same bytes.
 */
#include "powerloss.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- 7. salvage: random damage anywhere, and salvages interrupted ---- */

/* What a salvage of the world with these batches lost must report (see the top of
 * src/salvage.c), derived from the layout and the damage alone. */
struct salvage_expect {
	uint64_t lost_lsns, cut_bytes, next_lsn;
	uint32_t holes, rewritten;
	int damaged;
	size_t dseg; /* index in w->seg */
	uint64_t doff, dlsn;
};

static void note_first(struct salvage_expect *x, size_t k, uint64_t off, uint64_t lsn)
{
	if (x->damaged)
		return;
	x->damaged = 1;
	x->dseg = k;
	x->doff = off;
	x->dlsn = lsn;
}

static struct salvage_expect salvage_outcome(const struct world *w, const char *lost,
					     const int *hdr, const int *del, const uint64_t *size)
{
	struct salvage_expect x = {0};
	int prev_gap = 0;
	for (size_t k = 0; k < w->nseg; k++) {
		if (del[k])
			continue;
		const struct seg *sg = &w->seg[k];
		if (hdr[k] || prev_gap) {
			x.rewritten++;
			note_first(&x, k, 0, sg->first_lsn);
		}
		/* Damaged frames followed by a valid one become holes in place; a damaged run
		 * reaching the end of the segment is cut. */
		size_t t = sg->nfr;
		while (t > 0 && lost[sg->fr[t - 1].batch])
			t--;
		for (size_t i = 0; i < sg->nfr; i++) {
			const struct batch *b = &w->b[sg->fr[i].batch];
			if (!lost[sg->fr[i].batch])
				continue;
			if (sg->fr[i].off < size[k])
				note_first(&x, k, sg->fr[i].off, b->first_lsn);
			if (i < t) {
				x.lost_lsns += b->nrecs;
				if (i == 0 || !lost[sg->fr[i - 1].batch])
					x.holes++;
			}
		}
		uint64_t cut_off = t < sg->nfr ? sg->fr[t].off : sg->size;
		uint64_t end_lsn = lsn_at(w, k, cut_off);
		if (size[k] > cut_off)
			x.cut_bytes += size[k] - cut_off;
		size_t j = k + 1;
		while (j < w->nseg && del[j])
			j++;
		prev_gap = 0;
		if (j == w->nseg) {
			x.next_lsn = end_lsn;
		} else if (end_lsn < w->seg[j].first_lsn) {
			note_first(&x, k, cut_off, end_lsn);
			x.holes++;
			x.lost_lsns += w->seg[j].first_lsn - end_lsn;
			prev_gap = 1;
		}
	}
	return x;
}

/* The log in `dir` holds exactly the batches not lost[], whole, at their LSNs. */
static void expect_all_but_lost(const struct world *w, const char *dir, const char *lost)
{
	struct ringlog_reader *r = NULL;
	EXPECT_INT(ringlog_reader_open(dir, 0, &r), 0);
	struct ringlog_record rec;
	uint8_t buf[512];
	for (size_t bi = 0; bi < w->nb; bi++) {
		if (lost[bi])
			continue;
		const struct batch *b = &w->b[bi];
		for (unsigned i = 0; i < b->nrecs; i++) {
			EXPECT_INT(ringlog_reader_next(r, &rec), 1);
			EXPECT_U64(rec.lsn, b->first_lsn + i);
			EXPECT_U64(rec.batch_first_lsn, b->first_lsn);
			EXPECT_U64(rec.batch_nrecs, b->nrecs);
			EXPECT_U64(rec.len, b->len);
			tu_fill_record(buf, b->len, b->tag, i);
			EXPECT(memcmp(buf, rec.data, b->len) == 0);
		}
	}
	EXPECT_INT(ringlog_reader_next(r, &rec), 0);
	ringlog_reader_close(r);
}

static void salvage_open_close(struct world *w)
{
	struct ringlog_options o = w->o;
	o.recovery_mode = RINGLOG_RECOVER_SKIP_CORRUPTED;
	struct ringlog *log = NULL;
	EXPECT_INT(ringlog_open(w->work, &o, &log), 0);
	w->opens++;
	EXPECT_INT(ringlog_close(log), 0);
}

/*
 * Up to three kinds of damage at random places of a copy -- a flipped byte in any
 * frame, a flipped byte in any segment header, a sealed segment truncated, a middle
 * segment deleted -- then salvage.  It must keep every batch not touched, whole and
 * at its LSN, lose exactly the touched ones, report what it did as salvage_outcome()
 * says (ringlog_check first, changing nothing), leave a log every mode opens clean,
 * take appends after it, and reach the same bytes again when it is interrupted:
 * any mix of its finished and unfinished file changes salvages to the same result.
 */
static void salvage_random_damage(void **state)
{
	struct world *w = *state;
	size_t L = w->nseg - 1;
	char *lost = malloc(w->nb);
	assert_non_null(lost);
	for (unsigned it = 0; it < iters(40); it++) {
		struct snap d;
		snap_clone(&w->snap, &d);
		memset(lost, 0, w->nb);
		int hdr[MAX_SEGS] = {0}, del[MAX_SEGS] = {0};
		uint64_t size[MAX_SEGS];
		for (size_t k = 0; k < w->nseg; k++)
			size[k] = w->seg[k].size;
		char what[200] = "";
		size_t wl = 0;
		unsigned ndmg = 1 + (unsigned)below(&w->rng, 3);
		for (unsigned q = 0; q < ndmg; q++) {
			unsigned kind = (unsigned)below(&w->rng, 4);
			size_t k = kind == 3 ? 1 + below(&w->rng, L - 1)
				 : kind == 2 ? below(&w->rng, L)
					     : below(&w->rng, w->nseg);
			const struct seg *sg = &w->seg[k];
			if (del[k])
				continue;
			struct file *f = &d.f[snap_find(&d, sg->name)];
			uint64_t off;
			switch (kind) {
			case 0: /* a byte of a frame */
				if (size[k] <= HDR)
					continue;
				off = HDR + below(&w->rng, size[k] - HDR);
				f->data[off] ^= (uint8_t)(1 + below(&w->rng, 255));
				lost[frame_holding(w, k, off)->batch] = 1;
				break;
			case 1: /* a byte of the header */
				off = below(&w->rng, HDR);
				f->data[off] ^= (uint8_t)(1 + below(&w->rng, 255));
				hdr[k] = 1;
				break;
			case 2: /* a sealed segment truncated */
				if (size[k] <= HDR)
					continue;
				off = HDR + below(&w->rng, size[k] - HDR);
				file_resize(f, off);
				size[k] = off;
				for (size_t i = 0; i < sg->nfr; i++)
					if (sg->fr[i].off + sg->fr[i].len > off)
						lost[sg->fr[i].batch] = 1;
				break;
			default: /* a middle segment deleted */
				off = 0;
				snap_remove(&d, (size_t)snap_find(&d, sg->name));
				del[k] = 1;
				for (size_t i = 0; i < sg->nfr; i++)
					lost[sg->fr[i].batch] = 1;
				break;
			}
			static const char *kinds[] = {"flip", "header flip", "truncate", "delete"};
			wl += (size_t)snprintf(what + wl, sizeof(what) - wl, "%s%s %s@%" PRIu64,
					       q ? ", " : "", kinds[kind], sg->name + 14, off);
			if (wl >= sizeof(what))
				wl = sizeof(what) - 1;
		}
		SCEN("salvage after: %s", what);
		w->scenarios++;
		struct salvage_expect x = salvage_outcome(w, lost, hdr, del, size);

		snap_write(&d, w->work);
		struct ringlog_recovery check, rep;
		EXPECT_INT(ringlog_check(w->work, RINGLOG_RECOVER_SKIP_CORRUPTED, &check), 0);
		expect_dir_is(w->work, &d, 0, "ringlog_check(SKIP_CORRUPTED)");
		EXPECT_U64(check.lost_lsns, x.lost_lsns);
		EXPECT_U64(check.holes, x.holes);
		EXPECT_U64(check.rewritten_headers, x.rewritten);
		EXPECT_U64(check.set_aside_segments, 0);
		EXPECT_U64(check.cut_bytes, x.cut_bytes);
		EXPECT_U64(check.dropped_segments, 0);
		EXPECT_U64(check.first_lsn, 1);
		EXPECT_U64(check.last_lsn, x.next_lsn - 1);
		EXPECT_INT(check.damage, x.damaged ? -EBADMSG : 0);
		if (x.damaged) {
			if (strcmp(check.damage_file, w->seg[x.dseg].name) != 0)
				fail_msg("damage_file %s, expected %s [scenario: %s; seed 0x%016" PRIx64
					 "]",
					 check.damage_file, w->seg[x.dseg].name, g_what, g_seed);
			EXPECT_U64(check.damage_offset, x.doff);
			EXPECT_U64(check.damage_lsn, x.dlsn);
		}

		struct ringlog_options o = w->o;
		o.recovery_mode = RINGLOG_RECOVER_SKIP_CORRUPTED;
		struct ringlog *log = NULL;
		EXPECT_INT(ringlog_open(w->work, &o, &log), 0);
		w->opens++;
		EXPECT_INT(ringlog_recovery_report(log, &rep), 0);
		EXPECT(memcmp(&rep, &check, sizeof(rep)) == 0);
		EXPECT_U64(ringlog_next_lsn(log), x.next_lsn);
		EXPECT_INT(ringlog_close(log), 0);
		expect_all_but_lost(w, w->work, lost);
		for (uint32_t m = 0; m <= RINGLOG_RECOVER_SKIP_CORRUPTED; m++) {
			EXPECT_INT(ringlog_check(w->work, m, &rep), 0);
			EXPECT_INT(rep.damage, 0);
			EXPECT_U64(rep.last_lsn, x.next_lsn - 1);
			EXPECT_U64(rep.lost_lsns, x.lost_lsns);
			EXPECT_U64(rep.holes, 0);
		}

		/* Interrupted: each changed file either done or not, salvaged again. */
		struct snap done;
		snap_load(w->work, &done, 0);
		struct snap mix;
		snap_clone(&done, &mix);
		for (size_t i = 0; i < mix.n; i++) {
			ssize_t p = snap_find(&d, mix.f[i].name);
			if (p >= 0 && below(&w->rng, 2)) {
				free(mix.f[i].data);
				mix.f[i].size = d.f[p].size;
				mix.f[i].data = malloc(d.f[p].size + 1);
				assert_non_null(mix.f[i].data);
				memcpy(mix.f[i].data, d.f[p].data, d.f[p].size);
			}
		}
		snap_write(&mix, w->work);
		salvage_open_close(w);
		expect_dir_is(w->work, &done, 0, "a salvage resumed after an interruption");
		snap_free(&mix);
		snap_free(&done);

		/* Appends go on after the last LSN kept and survive the default mode. */
		log = tu_open(w->work, &w->o);
		w->opens++;
		uint64_t first = tu_append_tagged(log, TAG_EXTRA, 2, 40);
		EXPECT_U64(first, x.next_lsn);
		EXPECT_INT(ringlog_wait(log, first + 1), 0);
		EXPECT_INT(ringlog_close(log), 0);
		log = tu_open(w->work, &w->o);
		w->opens++;
		EXPECT_U64(ringlog_next_lsn(log), x.next_lsn + 2);
		EXPECT_INT(ringlog_close(log), 0);
		snap_free(&d);
	}
	free(lost);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(salvage_random_damage, pl_setup, pl_teardown),
	};
	return pl_run("test_powerloss_salvage", tests, sizeof(tests) / sizeof(tests[0]));
}
