/* Command-line pieces of ringlog-ship and ringlog-restore.  Contract in nats_cli.h. */
#include "nats_cli.h"

#include "ringlog.h"
#include "tool_common.h"

#include <nats/nats.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void nats_cli_usage_error(const char *tool, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", tool);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for the options.\n", tool);
	exit(NATS_CLI_EXIT_USAGE);
}

const char *nats_cli_servers(const char *tool, const char *v)
{
	if (!*v)
		nats_cli_usage_error(tool, "--servers takes a comma-separated list of URLs");
	return v;
}

const char *nats_cli_stream(const char *tool, const char *v)
{
	if (!tool_name_ok(v, "-_", 200))
		nats_cli_usage_error(tool,
				     "--stream: '%s' is not a stream name (1 to 200 letters, "
				     "digits, '-' and '_')",
				     v);
	return v;
}

void nats_cli_version(const char *tool)
{
	printf("%s (ringlog %d.%d, libnats %s)\n", tool, RINGLOG_VERSION_MAJOR,
	       RINGLOG_VERSION_MINOR, nats_GetVersion());
}

void nats_cli_bad_option(const char *tool, int c, char **argv, int optind)
{
	if (c == ':')
		nats_cli_usage_error(tool, "%s needs a value", argv[optind - 1]);
	nats_cli_usage_error(tool, "unknown option '%s'", argv[optind - 1]);
}

const char *nats_cli_dir(const char *tool, const char *stream, const char *role, int argc,
			 char **argv, int optind)
{
	if (!stream)
		nats_cli_usage_error(tool, "--stream NAME is required: the JetStream stream %s",
				     role);
	if (optind == argc)
		nats_cli_usage_error(tool, "no log directory given");
	if (optind + 1 != argc)
		nats_cli_usage_error(tool, "one log directory, not %d", argc - optind);
	return argv[optind];
}
