/*
 * What ringlog-ship and ringlog-restore share on their command lines: usage errors
 * (exit status 2), the --servers and --stream values, --version, and the one log
 * directory after the options.  Each exits with a usage error when the input is bad.
 */
#ifndef RINGLOG_NATS_CLI_H
#define RINGLOG_NATS_CLI_H

#define NATS_CLI_EXIT_USAGE 2

/* "TOOL: <message>" and a pointer to --help on stderr, then exit(2). */
void __attribute__((noreturn, format(printf, 2, 3)))
nats_cli_usage_error(const char *tool, const char *fmt, ...);

/* --servers: a non-empty comma-separated list of URLs. */
const char *nats_cli_servers(const char *tool, const char *v);
/* --stream: 1 to 200 letters, digits, '-' and '_'. */
const char *nats_cli_stream(const char *tool, const char *v);
/* --version: the tool's, ringlog's and libnats's versions on stdout. */
void nats_cli_version(const char *tool);
/* getopt_long returned ':' (a value missing) or '?' (unknown): the usage error. */
void __attribute__((noreturn)) nats_cli_bad_option(const char *tool, int c, char **argv,
						   int optind);
/* After the options: --stream was given (`stream` not NULL; `role` says what the stream
 * is to the tool, e.g. "to ship into") and exactly one directory follows.  Returns it. */
const char *nats_cli_dir(const char *tool, const char *stream, const char *role, int argc,
			 char **argv, int optind);

#endif
