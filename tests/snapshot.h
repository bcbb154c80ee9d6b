/*
 * A log directory held in memory, file by file, for the tests that damage a log and
 * compare what recovery left with what they predicted (tests/powerloss.c,
 * test_prepared.c): load it, copy it, edit it, write it back as a fresh directory.
 */
#ifndef RL_TEST_SNAPSHOT_H
#define RL_TEST_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct file {
	char name[256];
	uint8_t *data; /* size bytes, with room for one more */
	size_t size;
};

struct snap {
	struct file *f; /* sorted by name */
	size_t n;
};

/* The whole of `path` (fails the test if it cannot be read). */
uint8_t *read_whole(const char *path, size_t *size);
/* Create `path` (it must not exist) holding `data`. */
void write_whole(const char *path, const uint8_t *data, size_t len);

/* Whether `name` is a segment file's name (20 digits, ".rlog"). */
int is_seg_name(const char *name);

/* Load the regular files of `dir`, sorted by name; only its segment files with
 * segs_only (other files may come and go while a log is open). */
void snap_load(const char *dir, struct snap *s, int segs_only);
void snap_free(struct snap *s);
void snap_clone(const struct snap *src, struct snap *dst);
void snap_remove(struct snap *s, size_t i);
/* The index of file `name` in `s`, or -1. */
ssize_t snap_find(const struct snap *s, const char *name);
/* Make `dir` hold exactly the files of `s` (a fresh directory, file by file). */
void snap_write(const struct snap *s, const char *dir);
/* Indices of the segment files of `s`, in log order (the names sort numerically), at
 * most `cap` (more fails the test). */
size_t snap_segs(const struct snap *s, size_t *idx, size_t cap);
/* The k-th segment file of `s`. */
struct file *snap_seg(struct snap *s, size_t k);
/* Cut or extend `f` to `size` bytes (zeros). */
void file_resize(struct file *f, size_t size);

#endif
