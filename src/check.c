/*
 * Recovery seen from the API: ringlog_recovery_report (what the open did) and
 * ringlog_check / ringlog_check_plan (what an open would do, planned read-only by
 * rl_plan_recovery; recovery.h).
 */
#include "log_internal.h"

#include "errors.h"
#include "recovery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

RINGLOG_API int ringlog_recovery_report(struct ringlog *log, struct ringlog_recovery *out)
{
	*out = log->recovery;
	return 0;
}

RINGLOG_API int ringlog_check_plan(const char *dir, uint32_t mode, struct ringlog_recovery *out,
				   struct ringlog_repair_action **actions, size_t *count)
{
	if (actions)
		*actions = NULL;
	if (count)
		*count = 0;
	if (!out)
		return rl_fail(-EINVAL, "check: out must not be NULL");
	memset(out, 0, sizeof(*out));
	if (!dir)
		return rl_fail(-EINVAL, "check: dir must not be NULL");
	if (mode > RL_RECOVER_MODE_LAST)
		return rl_fail(-EINVAL, "check: unknown recovery mode %u", mode);
	int dir_fd = rl_dir_open("check", dir, 0);
	if (dir_fd < 0)
		return dir_fd;
	struct rl_plan plan;
	int err = rl_plan_recovery(dir_fd, mode, 0, &plan);
	close(dir_fd);
	*out = plan.report;
	if (!err && actions && plan.nactions) {
		*actions = calloc(plan.nactions, sizeof(**actions));
		if (!*actions)
			err = rl_fail(-ENOMEM, "check: allocating the plan");
		for (size_t i = 0; !err && i < plan.nactions; i++)
			rl_action_export(&plan.actions[i], &(*actions)[i]);
	}
	if (!err && count)
		*count = plan.nactions; /* (also when only the count is asked for) */
	rl_plan_free(&plan);
	return err;
}

RINGLOG_API int ringlog_check(const char *dir, uint32_t mode, struct ringlog_recovery *out)
{
	return ringlog_check_plan(dir, mode, out, NULL, NULL);
}
