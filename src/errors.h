/* Error detail for ringlog_last_error(): a thread-local message. */
#ifndef RL_ERRORS_H
#define RL_ERRORS_H

/* Set the calling thread's detail message (printf format) and return `err`, so a
 * failing path reads: return rl_fail(-EBADMSG, "segment %s: ...", name); */
int rl_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copy a message into the calling thread's detail. */
void rl_set_last_error(const char *msg);

#endif
