/*
 * The applier of recovery plans (recovery.h): the only code that changes a log
 * directory during recovery.  It decides nothing; it carries out each action of the
 * plan in order through file_io.h and makes it durable (the file's data, and the
 * directory entry when a name changes) before it starts the next, so that a crash
 * leaves a prefix of the plan done.
 */
#include "recovery.h"

#include "errors.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

/* RINGLOG_REPAIR_RESET_FILE: the file holds only the new header. */
static int reset_file(int dir_fd, int fd, const char *name, const struct rl_action *a)
{
	int err = rl_file_truncate(fd, name, 0);
	if (!err)
		err = rl_file_pwrite(fd, name, a->bytes, a->len, 0);
	if (!err)
		err = rl_file_fdatasync(fd, name);
	if (err)
		return rl_fail(err, "recovery: rewriting the torn header of %s", name);
	err = rl_dir_sync(dir_fd);
	return err ? rl_fail(err, "recovery: fsync of the log directory") : 0;
}

static int write_durably(int fd, const char *name, const struct rl_action *a)
{
	const char *what = a->op == RINGLOG_REPAIR_WRITE_HEADER ? "the segment header"
								: "hole frames";
	int err = rl_file_pwrite(fd, name, a->bytes, a->len, a->off);
	if (err)
		return rl_fail(err, "recovery: writing %s at offset %" PRIu64 " of %s", what,
			       a->off, name);
	err = rl_file_fdatasync(fd, name);
	return err ? rl_fail(err, "recovery: fdatasync of %s", name) : 0;
}

/* Rename segment `name` to NAME.salvaged (or NAME.salvaged.K if that is taken). */
static int set_aside(int dir_fd, const char *name)
{
	char to[RL_SEG_NAME_LEN + 24];
	for (unsigned k = 0;; k++) {
		if (k == 0)
			snprintf(to, sizeof(to), "%s.salvaged", name);
		else
			snprintf(to, sizeof(to), "%s.salvaged.%u", name, k);
		int err = rl_file_rename(dir_fd, name, to, 1);
		if (err == 0)
			break;
		if (err != -EEXIST)
			return rl_fail(err, "recovery: renaming %s to %s", name, to);
		if (k == 1000)
			return rl_fail(-EEXIST, "recovery: no free name to set %s aside", name);
	}
	int err = rl_dir_sync(dir_fd);
	return err ? rl_fail(err, "recovery: fsync of the log directory") : 0;
}

static int remove_segment(int dir_fd, const char *name)
{
	int err = rl_file_unlink(dir_fd, name);
	if (err)
		return rl_fail(err, "recovery: removing %s", name);
	err = rl_dir_sync(dir_fd);
	return err ? rl_fail(err, "recovery: fsync of the log directory") : 0;
}

static int apply_one(int dir_fd, const struct rl_action *a)
{
	char name[RL_SEG_NAME_LEN + 1];
	rl_seg_name(name, a->seg);
	if (a->op == RINGLOG_REPAIR_SET_ASIDE)
		return set_aside(dir_fd, name);
	if (a->op == RINGLOG_REPAIR_REMOVE)
		return remove_segment(dir_fd, name);
	int fd = rl_file_open(dir_fd, name, O_RDWR);
	if (fd < 0)
		return rl_fail(fd, "recovery: opening %s", name);
	int err;
	switch (a->op) {
	case RINGLOG_REPAIR_RESET_FILE:
		err = reset_file(dir_fd, fd, name, a);
		break;
	case RINGLOG_REPAIR_WRITE_HEADER:
	case RINGLOG_REPAIR_WRITE_HOLES:
		/* Whole headers at entry boundaries: 64 bytes at 0, or holes of 32 each. */
		assert(a->op == RINGLOG_REPAIR_WRITE_HEADER
			   ? a->off == 0 && a->len == RL_SEG_HEADER_BYTES
			   : a->off >= RL_SEG_HEADER_BYTES && a->off % RL_FRAME_ALIGN == 0 &&
				 a->len % RL_FRAME_HEADER_BYTES == 0);
		err = write_durably(fd, name, a);
		break;
	case RINGLOG_REPAIR_CUT:
		assert(a->off >= RL_SEG_HEADER_BYTES && a->off <= a->end);
		err = rl_seg_cut(fd, name, a->off, a->truncate ? UINT64_MAX : a->end);
		break;
	default:
		err = rl_fail(-EINVAL, "recovery: unknown repair step %u", a->op);
	}
	close(fd);
	return err;
}

int rl_plan_apply(int dir_fd, const struct rl_plan *p)
{
	for (size_t i = 0; i < p->nactions; i++) {
		int err = apply_one(dir_fd, &p->actions[i]);
		if (err)
			return err;
	}
	return 0;
}
