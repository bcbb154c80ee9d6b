/*
 * Replication slots (ringlog.h): SLOT.<name> in the log directory.
 *
 *   off size field
 *     0    4 magic     "RLSL" (0x4c534c52)
 *     4    4 version   1
 *     8    8 lsn       records up to this LSN may be removed by retention
 *    16    4 crc       CRC32C of bytes 0..15
 *    20   12 reserved  zero
 *
 * The 32 bytes are written in place at offset 0 (one sector: written whole or not at
 * all on the devices ringlog targets).  A slot whose bytes do not check (a torn or
 * damaged file) holds everything back: retention reads its position as 0.
 */
#include "slot.h"

#include "errors.h"
#include "file_io.h"
#include "format.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RL_SLOT_MAGIC 0x4c534c52u
#define RL_SLOT_BYTES 32u
#define RL_SLOT_PREFIX "SLOT."
#define RL_SLOT_NAME_MAX 64

struct ringlog_slot {
	int fd;
	uint64_t lsn;
	char file[sizeof(RL_SLOT_PREFIX) + RL_SLOT_NAME_MAX];
};

int rl_slot_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > RL_SLOT_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static void encode(uint8_t out[RL_SLOT_BYTES], uint64_t lsn)
{
	memset(out, 0, RL_SLOT_BYTES);
	rl_put32(out, RL_SLOT_MAGIC);
	rl_put32(out + 4, 1);
	rl_put64(out + 8, lsn);
	rl_put32(out + 16, rl_crc32c(out, 16));
}

/* The position a slot file holds: 1 with *lsn, 0 if its bytes do not check, -errno. */
static int read_slot(int fd, uint64_t *lsn)
{
	uint8_t b[RL_SLOT_BYTES];
	ssize_t got = rl_file_pread(fd, b, sizeof(b), 0);
	if (got < 0)
		return (int)got;
	if (got != (ssize_t)sizeof(b) || rl_get32(b) != RL_SLOT_MAGIC || rl_get32(b + 4) != 1 ||
	    rl_get32(b + 16) != rl_crc32c(b, 16))
		return 0;
	*lsn = rl_get64(b + 8);
	return 1;
}

/* Create slot file `file` at `lsn`: made whole under a temporary name, synced, then
 * named and the name made durable, so that a slot file is always complete.  One that
 * appeared meanwhile is not an error.  Returns 0 or -errno. */
static int create_slot(int dir_fd, const char *file, uint64_t lsn)
{
	/* Not SLOT.*: a leftover of a crash here must not read as a slot. */
	char tmp[sizeof(RL_SLOT_PREFIX) + RL_SLOT_NAME_MAX + 8];
	snprintf(tmp, sizeof(tmp), "new.%s", file);
	uint8_t b[RL_SLOT_BYTES];
	encode(b, lsn);
	int fd = rl_file_open(dir_fd, tmp, O_RDWR | O_CREAT | O_TRUNC); /* replaces a leftover */
	int err = fd < 0 ? fd : rl_file_pwrite(fd, tmp, b, sizeof(b), 0);
	if (!err)
		err = rl_file_fdatasync(fd, tmp);
	if (fd >= 0)
		close(fd);
	if (!err)
		err = rl_file_rename(dir_fd, tmp, file, 1);
	if (!err)
		return rl_dir_sync(dir_fd);
	rl_file_unlink(dir_fd, tmp);
	return err == -EEXIST ? 0 : err;
}

RINGLOG_API int ringlog_slot_open(const char *dir, const char *name, int create, uint64_t lsn,
				  struct ringlog_slot **out)
{
	if (!dir || !out)
		return rl_fail(-EINVAL, "slot_open: dir and out must not be NULL");
	*out = NULL;
	if (!rl_slot_name_ok(name))
		return rl_fail(-EINVAL,
			       "slot_open: a slot name is 1 to %d of letters, digits, '_', '-' "
			       "and '.'",
			       RL_SLOT_NAME_MAX);
	struct ringlog_slot *s = calloc(1, sizeof(*s));
	if (!s)
		return rl_fail(-ENOMEM, "slot_open: allocating");
	s->fd = -1;
	snprintf(s->file, sizeof(s->file), RL_SLOT_PREFIX "%s", name);
	int dir_fd = rl_dir_open("slot_open", dir, 0);
	int err = dir_fd < 0 ? dir_fd : 0;
	if (!err) {
		s->fd = rl_file_open(dir_fd, s->file, O_RDWR);
		if (s->fd == -ENOENT && create &&
		    (err = create_slot(dir_fd, s->file, lsn)) == 0)
			s->fd = rl_file_open(dir_fd, s->file, O_RDWR);
		if (err)
			err = rl_fail(err, "slot_open: creating %s in %s", s->file, dir);
		else if (s->fd < 0)
			err = rl_fail(s->fd, "slot_open: opening %s in %s", s->file, dir);
	}
	if (!err) {
		int ok = read_slot(s->fd, &s->lsn);
		if (ok < 0)
			err = rl_fail(ok, "slot_open: reading %s", s->file);
		else if (!ok)
			s->lsn = 0; /* damaged: holds everything back until advanced */
	}
	if (dir_fd >= 0)
		close(dir_fd);
	if (err) {
		ringlog_slot_close(s);
		return err;
	}
	*out = s;
	return 0;
}

RINGLOG_API uint64_t ringlog_slot_lsn(const struct ringlog_slot *slot)
{
	return slot->lsn;
}

RINGLOG_API int ringlog_slot_advance(struct ringlog_slot *slot, uint64_t lsn)
{
	if (lsn < slot->lsn)
		return rl_fail(-EINVAL, "slot_advance: %s is at %" PRIu64 ", past %" PRIu64,
			       slot->file, slot->lsn, lsn);
	if (lsn == slot->lsn)
		return 0;
	uint8_t b[RL_SLOT_BYTES];
	encode(b, lsn);
	int err = rl_file_pwrite(slot->fd, slot->file, b, sizeof(b), 0);
	if (err)
		return rl_fail(err, "slot_advance: writing %s", slot->file);
	slot->lsn = lsn;
	return 0;
}

RINGLOG_API void ringlog_slot_close(struct ringlog_slot *slot)
{
	if (!slot)
		return;
	if (slot->fd >= 0)
		close(slot->fd);
	free(slot);
}

RINGLOG_API int ringlog_slot_drop(const char *dir, const char *name)
{
	if (!dir || !rl_slot_name_ok(name))
		return rl_fail(-EINVAL, "slot_drop: bad directory or slot name");
	char file[sizeof(RL_SLOT_PREFIX) + RL_SLOT_NAME_MAX];
	snprintf(file, sizeof(file), RL_SLOT_PREFIX "%s", name);
	int dir_fd = rl_dir_open("slot_drop", dir, 0);
	if (dir_fd < 0)
		return dir_fd;
	int err = faccessat(dir_fd, file, F_OK, 0) < 0 ? -errno : 0;
	if (!err)
		err = rl_file_unlink(dir_fd, file);
	if (!err)
		err = rl_dir_sync(dir_fd);
	close(dir_fd);
	return err ? rl_fail(err, "slot_drop: removing %s from %s", file, dir) : 0;
}

int rl_slots_oldest(int dir_fd, uint64_t *lsn, char *name, size_t name_len)
{
	int fd = dup(dir_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	rewinddir(d);
	int found = 0, err = 0;
	struct dirent *de;
	while (!err && (de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (strncmp(n, RL_SLOT_PREFIX, strlen(RL_SLOT_PREFIX)) != 0 ||
		    !rl_slot_name_ok(n + strlen(RL_SLOT_PREFIX)))
			continue;
		int sfd = rl_file_open(dir_fd, n, O_RDONLY);
		if (sfd == -ENOENT)
			continue; /* dropped meanwhile */
		if (sfd < 0) {
			err = sfd;
			break;
		}
		uint64_t v = 0;
		int ok = read_slot(sfd, &v);
		close(sfd);
		if (ok < 0) {
			err = ok;
			break;
		}
		if (!found || v < *lsn) {
			*lsn = ok ? v : 0;
			snprintf(name, name_len, "%s", n + strlen(RL_SLOT_PREFIX));
		}
		found = 1;
	}
	closedir(d);
	return err ? err : found;
}
