/*
 * Recovery as plan, then apply.
 *
 *   rl_recover()                          recovery_plan.c: list, settle, plan, apply
 *     rl_plan_verify()                    recovery.c: tolerate-tail, absolute, point-in-time
 *     rl_plan_salvage()                   salvage.c: skip-corrupted
 *     rl_plan_apply()                     recovery_apply.c: the only writer
 *
 * A planner reads the directory and never writes to it: it fills a struct rl_plan
 * with the report (what ringlog_check returns), the state the log is in once the
 * plan is applied (log id, next LSN, last segment), and the actions that get it
 * there, in the order they must happen.  The applier carries them out one by one,
 * each made durable before the next; the planners choose the order so that a crash
 * after any action leaves a directory on which the same mode plans the rest.  The
 * two planners share only what is in this header; neither calls the other.
 */
#ifndef RL_RECOVERY_H
#define RL_RECOVERY_H

#include "log_internal.h"

/* One step of a repair.  `op` is an enum ringlog_repair_op (ringlog.h). */
struct rl_action {
	uint32_t op;
	uint64_t seg;	    /* the segment file, by the LSN in its name */
	uint64_t off;	    /* WRITE_*: where; CUT: where the segment ends from now on */
	uint64_t end;	    /* CUT: end of the bytes cut; RESET_FILE: the file's size */
	uint32_t truncate;  /* CUT: the cut reaches the end of the file: truncate at off */
	uint64_t first_lsn; /* WRITE_HOLES: the first LSN the holes stand for */
	uint64_t lsns;	    /* WRITE_HOLES: how many */
	uint8_t *bytes;	    /* WRITE_*, RESET_FILE: what is written (malloc'd) */
	size_t len;
	const char *why;    /* static text */
};

struct rl_plan {
	struct ringlog_recovery report;
	int empty;		/* no segment: a new log */
	uint64_t log_id;
	uint64_t next_lsn;	/* first LSN the writer hands out */
	struct rl_segment last; /* the last segment kept (fd unused: -1) */
	struct rl_action *actions;
	size_t nactions, cap;
};

void rl_plan_init(struct rl_plan *p, uint32_t mode);
void rl_plan_free(struct rl_plan *p);

/* Append an action; `bytes` (len of them) are copied.  Returns 0 or -ENOMEM (reported). */
int rl_plan_add(struct rl_plan *p, const struct rl_action *a, const void *bytes, size_t len);
/* The last segment `seg` (size `size` bytes) was torn while it was being created: make
 * it hold only header `h`. */
int rl_plan_reset_file(struct rl_plan *p, uint64_t seg, uint64_t size, const struct rl_seg_header *h);
/* Cut segment `seg` at `off`: zero [off, end), or truncate at `off` when end >= size. */
int rl_plan_cut(struct rl_plan *p, uint64_t seg, uint64_t off, uint64_t end, uint64_t size,
		const char *why);

/* Planners, over the n (> 0) segments lsns[] of dir_fd, all read-only.  Return 0,
 * -EBADMSG when the mode refuses the damage (p->report says where), or -errno; with
 * ringlog_last_error() set. */
int rl_plan_verify(int dir_fd, uint32_t mode, const uint64_t *lsns, size_t n, struct rl_plan *p);
extern uint64_t rl_salvage_max_hole_bytes; /* longest hole salvage writes (tests lower it) */
int rl_plan_salvage(int dir_fd, const uint64_t *lsns, size_t n, struct rl_plan *p);

/* Carry out p's actions in order, each durable before the next.  Returns 0 or -errno
 * (reported; the actions before the failed one are done, and the same mode plans
 * the rest on the next open). */
int rl_plan_apply(int dir_fd, const struct rl_plan *p);

/* Plan recovery of dir_fd in `mode` (read-only), and with `apply` settle the segments
 * first and apply the plan.  Returns 0 or -errno (-EBADMSG: the mode refuses). */
int rl_plan_recovery(int dir_fd, uint32_t mode, int apply, struct rl_plan *p);

/* A new random log id (never 0). */
uint64_t rl_new_log_id(void);

/* Record the first damage found (later calls keep the first). */
void rl_note_damage(struct ringlog_recovery *rep, const char *name, uint64_t off, uint64_t lsn,
		    const char *reason);

/* Fail with -EBADMSG naming the damage noted in *rep. */
int rl_refuse(const struct ringlog_recovery *rep);

/* Whether the last segment `name` has a torn tail after its last valid entry at `end`
 * (LSN `lsn` due there; rl_seg_torn_tail): 1 with *torn_end, 0, or -errno (reported). */
int rl_recovery_tail(int fd, const char *name, uint64_t log_id, uint64_t end, uint64_t lsn,
		     uint64_t *torn_end);

/* The public form of action `a` (ringlog_check_plan). */
void rl_action_export(const struct rl_action *a, struct ringlog_repair_action *out);

#endif
