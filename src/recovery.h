/*
 * What recovery.c (the first three modes) and salvage.c (skip-corrupted) share:
 * how a finding is reported and how a repair is made durable.
 */
#ifndef RL_RECOVERY_H
#define RL_RECOVERY_H

#include "log_internal.h"

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

/* Replace the whole content of a last segment whose creation a crash tore with header
 * `h`, durably (file and directory).  Returns 0 or -errno (reported). */
int rl_recovery_rewrite_torn(int dir_fd, int fd, const char *name, const struct rl_seg_header *h);

/* Salvage recovery over the n (> 0) segments lsns[] of dir_fd; see salvage.c. */
extern uint64_t rl_salvage_max_hole_bytes; /* longest hole it writes (tests lower it) */
int rl_salvage(int dir_fd, int apply, const uint64_t *lsns, size_t n, struct rl_recovered *out);

#endif
