/* Replication slots: the public functions are in ringlog.h, the file in slot.c. */
#ifndef RL_SLOT_H
#define RL_SLOT_H

#include "ringlog.h"

#include <stddef.h>
#include <stdint.h>

/* Whether `name` may name a slot. */
int rl_slot_name_ok(const char *name);

/* The oldest position among the slots of dir_fd (a damaged slot counts as 0) and its
 * name: 1 with *lsn and name, 0 if there is no slot, or -errno. */
int rl_slots_oldest(int dir_fd, uint64_t *lsn, char *name, size_t name_len);

#endif
