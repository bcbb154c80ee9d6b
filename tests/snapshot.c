#include "snapshot.h"

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAX_SEGS 256 /* snap_seg's look-up */

uint8_t *read_whole(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open(%s): %s", path, strerror(errno));
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	size_t len = (size_t)st.st_size, got = 0;
	uint8_t *buf = malloc(len + 1);
	assert_non_null(buf);
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	close(fd);
	*size = len;
	return buf;
}

void write_whole(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_msg("create %s: %s", path, strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		assert_true(n > 0);
		done += (size_t)n;
	}
	close(fd);
}

int is_seg_name(const char *name)
{
	if (strlen(name) != 25 || strcmp(name + 20, ".rlog") != 0)
		return 0;
	for (int i = 0; i < 20; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	return 1;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->name, ((const struct file *)b)->name);
}

void snap_load(const char *dir, struct snap *s, int segs_only)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t cap = 0;
	s->f = NULL;
	s->n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (segs_only && !is_seg_name(de->d_name))
			continue;
		char path[4400];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat st;
		assert_int_equal(lstat(path, &st), 0);
		if (!S_ISREG(st.st_mode) || strlen(de->d_name) >= sizeof(s->f[0].name))
			fail_msg("%s: not a regular file, or its name is too long", path);
		if (s->n == cap) {
			cap = cap ? 2 * cap : 32;
			s->f = realloc(s->f, cap * sizeof(*s->f));
			assert_non_null(s->f);
		}
		struct file *f = &s->f[s->n++];
		snprintf(f->name, sizeof(f->name), "%s", de->d_name);
		f->data = read_whole(path, &f->size);
	}
	closedir(d);
	if (s->n > 1)
		qsort(s->f, s->n, sizeof(*s->f), cmp_file);
}

void snap_free(struct snap *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->f[i].data);
	free(s->f);
	s->f = NULL;
	s->n = 0;
}

void snap_clone(const struct snap *src, struct snap *dst)
{
	dst->n = src->n;
	dst->f = malloc((src->n ? src->n : 1) * sizeof(*dst->f));
	assert_non_null(dst->f);
	for (size_t i = 0; i < src->n; i++) {
		dst->f[i] = src->f[i];
		dst->f[i].data = malloc(src->f[i].size + 1);
		assert_non_null(dst->f[i].data);
		memcpy(dst->f[i].data, src->f[i].data, src->f[i].size);
	}
}

void snap_remove(struct snap *s, size_t i)
{
	free(s->f[i].data);
	memmove(&s->f[i], &s->f[i + 1], (s->n - i - 1) * sizeof(*s->f));
	s->n--;
}

ssize_t snap_find(const struct snap *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->f[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

void snap_write(const struct snap *s, const char *dir)
{
	tu_rmrf(dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	for (size_t i = 0; i < s->n; i++)
		write_whole(tu_path(dir, s->f[i].name), s->f[i].data, s->f[i].size);
}

size_t snap_segs(const struct snap *s, size_t *idx, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		if (is_seg_name(s->f[i].name)) {
			assert_true(n < cap);
			idx[n++] = i;
		}
	return n;
}

struct file *snap_seg(struct snap *s, size_t k)
{
	size_t idx[SNAP_MAX_SEGS];
	size_t n = snap_segs(s, idx, SNAP_MAX_SEGS);
	assert_true(k < n);
	return &s->f[idx[k]];
}

void file_resize(struct file *f, size_t size)
{
	f->data = realloc(f->data, size + 1);
	assert_non_null(f->data);
	if (size > f->size)
		memset(f->data + f->size, 0, size - f->size);
	f->size = size;
}
