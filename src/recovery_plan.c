/*
 * The recovery plan (recovery.h): its container, what the planners share, and
 * rl_plan_recovery(), the one entry that ringlog_open() (apply) and ringlog_check()
 * (plan only) go through.  docs/recovery.md states the promises.
 */
#include "recovery.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

uint64_t rl_new_log_id(void)
{
	uint64_t id = 0;
	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
			id = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&id;
	}
	return id;
}

void rl_plan_init(struct rl_plan *p, uint32_t mode)
{
	*p = (struct rl_plan){.report = {.mode = mode}, .last = {.fd = -1}};
}

void rl_plan_free(struct rl_plan *p)
{
	for (size_t i = 0; i < p->nactions; i++)
		free(p->actions[i].bytes);
	free(p->actions);
	p->actions = NULL;
	p->nactions = p->cap = 0;
}

int rl_plan_add(struct rl_plan *p, const struct rl_action *a, const void *bytes, size_t len)
{
	if (p->nactions == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct rl_action *more = realloc(p->actions, cap * sizeof(*more));
		if (!more)
			return rl_fail(-ENOMEM, "recovery: allocating the plan");
		p->actions = more;
		p->cap = cap;
	}
	struct rl_action *to = &p->actions[p->nactions];
	*to = *a;
	to->bytes = NULL;
	to->len = len;
	if (len) {
		if (!(to->bytes = malloc(len)))
			return rl_fail(-ENOMEM, "recovery: allocating the plan");
		memcpy(to->bytes, bytes, len);
	}
	p->nactions++;
	return 0;
}

int rl_plan_reset_file(struct rl_plan *p, uint64_t seg, uint64_t size, const struct rl_seg_header *h)
{
	uint8_t hdr[RL_SEG_HEADER_BYTES];
	rl_seg_header_encode(h, hdr);
	p->report.cut_bytes += size;
	struct rl_action a = {.op = RINGLOG_REPAIR_RESET_FILE, .seg = seg, .end = size,
			      .why = "segment creation torn by a crash: header written again"};
	return rl_plan_add(p, &a, hdr, sizeof(hdr));
}

int rl_plan_cut(struct rl_plan *p, uint64_t seg, uint64_t off, uint64_t end, uint64_t size,
		const char *why)
{
	int truncate = end >= size;
	if (truncate)
		end = size > off ? size : off;
	p->report.cut_bytes += end - off;
	struct rl_action a = {.op = RINGLOG_REPAIR_CUT, .seg = seg, .off = off, .end = end,
			      .truncate = (uint32_t)truncate, .why = why};
	return rl_plan_add(p, &a, NULL, 0);
}

void rl_note_damage(struct ringlog_recovery *rep, const char *name, uint64_t off, uint64_t lsn,
		    const char *reason)
{
	if (rep->damage)
		return;
	rep->damage = -EBADMSG;
	snprintf(rep->damage_file, sizeof(rep->damage_file), "%s", name);
	rep->damage_offset = off;
	rep->damage_lsn = lsn;
	snprintf(rep->damage_reason, sizeof(rep->damage_reason), "%s", reason);
}

int rl_refuse(const struct ringlog_recovery *rep)
{
	return rl_fail(-EBADMSG,
		       "recovery: %s is damaged at offset %" PRIu64 " (LSN %" PRIu64
		       " expected there): %s",
		       rep->damage_file, rep->damage_offset, rep->damage_lsn, rep->damage_reason);
}

int rl_recovery_tail(int fd, const char *name, uint64_t log_id, uint64_t end, uint64_t lsn,
		     uint64_t *torn_end)
{
	int torn = rl_seg_torn_tail(fd, log_id, end, lsn, torn_end);
	return torn < 0 ? rl_fail(torn, "recovery: reading the tail of %s", name) : torn;
}

void rl_action_export(const struct rl_action *a, struct ringlog_repair_action *out)
{
	memset(out, 0, sizeof(*out));
	out->op = a->op;
	rl_seg_name(out->file, a->seg);
	out->offset = a->off;
	switch (a->op) {
	case RINGLOG_REPAIR_CUT:
		out->length = a->end - a->off;
		break;
	case RINGLOG_REPAIR_RESET_FILE:
		out->length = a->end;
		break;
	default:
		out->length = a->len;
	}
	out->truncate = a->truncate;
	out->first_lsn = a->first_lsn;
	out->lsns = a->lsns;
	snprintf(out->why, sizeof(out->why), "%s", a->why ? a->why : "");
}

/*
 * Make what the planner reads what is on the disk: a writer may have died between a
 * write and its fdatasync, or an fdatasync may have failed after the kernel marked
 * the pages clean.  fdatasync each segment from `from` on and drop its cached pages.
 */
static int settle(int dir_fd, const uint64_t *lsns, size_t from, size_t n)
{
	for (size_t i = from; i < n; i++) {
		char name[RL_SEG_NAME_LEN + 1];
		rl_seg_name(name, lsns[i]);
		int fd = rl_file_open(dir_fd, name, O_RDONLY);
		if (fd < 0)
			return rl_fail(fd, "recovery: opening %s", name);
		int err = rl_file_fdatasync(fd, name);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
		if (err)
			return rl_fail(err, "recovery: fdatasync of %s", name);
	}
	return 0;
}

int rl_plan_recovery(int dir_fd, uint32_t mode, int apply, struct rl_plan *p)
{
	rl_plan_init(p, mode);
	if (mode > RL_RECOVER_MODE_LAST)
		return rl_fail(-EINVAL, "recovery: unknown recovery mode %u", mode);
	uint64_t *lsns;
	size_t n;
	int err = rl_seg_list(dir_fd, &lsns, &n);
	if (err)
		return rl_fail(err, "recovery: listing the log directory");
	p->report.segments = (uint32_t)n;
	if (n == 0) {
		p->empty = 1;
		p->log_id = rl_new_log_id();
		p->next_lsn = 1;
		return 0;
	}
	int salvage = mode == RINGLOG_RECOVER_SKIP_CORRUPTED;
	/* Salvage may write anywhere; the other modes judge the sealed segments only by
	 * what they hold, and read the last one's tail, which is what a crash leaves. */
	if (apply)
		err = settle(dir_fd, lsns, salvage ? 0 : n - 1, n);
	if (!err)
		err = salvage ? rl_plan_salvage(dir_fd, lsns, n, p)
			      : rl_plan_verify(dir_fd, mode, lsns, n, p);
	free(lsns);
	if (!err && apply)
		err = rl_plan_apply(dir_fd, p);
	return err;
}
