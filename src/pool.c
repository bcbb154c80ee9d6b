/* The pool of prepared segment files and its preparer thread.  Contracts in pool.h. */
#include "pool.h"

#include "errors.h"
#include "file_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes zero-filled per write. */
#define RL_FILL_CHUNK (1u << 20)

static void ready_name(char *out, const struct rl_pool_entry *e)
{
	snprintf(out, RL_POOL_NAME_MAX, "pool.%010" PRIu64 ".%020" PRIu64 ".%s", e->seq, e->stale,
		 e->ready ? "ready" : "retired");
}

static void tmp_name(char *out, uint64_t seq)
{
	snprintf(out, RL_POOL_NAME_MAX, "pool.%010" PRIu64 ".tmp", seq);
}

/* `n` decimal digits at *p (advanced past them) into *v; 0 if they are not there. */
static int digits(const char **p, int n, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return 0;
		uint64_t d = (uint64_t)(**p - '0');
		if (*v > (UINT64_MAX - d) / 10)
			return 0;
		*v = *v * 10 + d;
	}
	return 1;
}

/* Parse a pool file name, exactly as ready_name() and tmp_name() make them: 1 ready,
 * 2 retired, 3 tmp, 0 not a pool file (left alone). */
static int parse_name(const char *name, uint64_t *seq, uint64_t *stale)
{
	const char *p = name;
	*stale = 0;
	if (strncmp(p, "pool.", 5) != 0)
		return 0;
	p += 5;
	if (!digits(&p, 10, seq) || *p++ != '.')
		return 0;
	if (strcmp(p, "tmp") == 0)
		return 3;
	if (!digits(&p, 20, stale) || *p++ != '.')
		return 0;
	return strcmp(p, "ready") == 0 ? 1 : strcmp(p, "retired") == 0 ? 2 : 0;
}

/* Under lock. */
static int add_entry(struct rl_pool *p, uint64_t seq, uint64_t stale, int ready)
{
	if (p->nfiles == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct rl_pool_entry *f = realloc(p->files, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		p->files = f;
		p->cap = cap;
	}
	p->files[p->nfiles++] =
	    (struct rl_pool_entry){.seq = seq, .stale = stale, .ready = ready};
	if (ready)
		atomic_fetch_add_explicit(&p->ready_now, 1, memory_order_relaxed);
	return 0;
}

static void remove_entry(struct rl_pool *p, size_t i)
{
	if (p->files[i].ready)
		atomic_fetch_sub_explicit(&p->ready_now, 1, memory_order_relaxed);
	p->files[i] = p->files[--p->nfiles];
}

/* Write zeros over [from, to) of fd (from and to multiples of the alignment when
 * direct). */
static int zero_fill(int fd, const char *name, const uint8_t *zeros, uint64_t from, uint64_t to)
{
	for (uint64_t at = from; at < to;) {
		size_t n = to - at < RL_FILL_CHUNK ? (size_t)(to - at) : RL_FILL_CHUNK;
		int err = rl_file_pwrite(fd, name, zeros, n, at);
		if (err)
			return err;
		at += n;
	}
	return 0;
}

/*
 * Make one file ready: a new zero-filled one (e == NULL) or the retired file *e.
 * Runs without the lock.  On failure the file is removed (a full disk is then left
 * as it was found) and the error returned with p->error_msg set.
 */
static int prepare(struct rl_pool *p, const struct rl_pool_entry *e, uint64_t seq,
		   const uint8_t *zeros)
{
	char from[RL_POOL_NAME_MAX], to[RL_POOL_NAME_MAX];
	struct rl_pool_entry done = {.seq = seq, .stale = e ? e->stale : 0, .ready = 1};
	if (e)
		ready_name(from, e);
	else
		tmp_name(from, seq);
	ready_name(to, &done);
	int direct = p->direct;
	int fd = rl_file_open_rw(p->dir_fd, from, e ? 0 : O_CREAT | O_EXCL, &direct, 1);
	const char *what = "opening";
	int err = fd < 0 ? fd : 0;
	uint64_t start = 0;
	if (!err && !e) {
		/* Overwritten in place on btrfs too: writing into it then needs no space. */
		what = "marking no-copy-on-write";
		int cow = rl_file_set_nocow(fd, from);
		err = cow < 0 ? cow : 0;
	}
	if (!err && e) {
		int64_t size = rl_file_size(fd);
		err = size < 0 ? (int)size : 0;
		if (!err && (uint64_t)size > p->file_bytes) {
			what = "truncating";
			err = rl_file_truncate(fd, from, p->file_bytes);
			size = (int64_t)p->file_bytes;
		}
		/* Rewrite from the block the old data ends in: its block is written then. */
		uint64_t blk = p->align > 4096 ? p->align : 4096;
		start = (uint64_t)size / blk * blk;
	}
	if (!err && start < p->file_bytes) {
		what = "allocating";
		err = rl_file_allocate(fd, from, start, p->file_bytes - start);
		if (err == -EOPNOTSUPP)
			err = 0;
		if (!err) {
			what = "zero-filling";
			err = zero_fill(fd, from, zeros, start, p->file_bytes);
		}
	}
	if (!err) {
		what = "fdatasync of";
		err = rl_file_fdatasync(fd, from);
	}
	if (fd >= 0)
		close(fd);
	if (!err) {
		what = "renaming";
		err = rl_file_rename(p->dir_fd, from, to, 1);
	}
	if (!err) {
		what = "fsync of the directory after preparing";
		err = rl_dir_sync(p->dir_fd);
	}
	if (err) {
		snprintf(p->error_msg, sizeof(p->error_msg),
			 "preparing the next segment file: %s %s failed", what, from);
		/* Free what it took: a full disk must not stay full because of it. */
		rl_file_unlink(p->dir_fd, from);
		rl_file_unlink(p->dir_fd, to);
	}
	return err;
}

static void *preparer_main(void *arg)
{
	struct rl_pool *p = arg;
	rl_faults_enter(p->faults);
	uint8_t *zeros = NULL;
	if (posix_memalign((void **)&zeros, p->align > 4096 ? p->align : 4096, RL_FILL_CHUNK))
		zeros = NULL;
	else
		memset(zeros, 0, RL_FILL_CHUNK);
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		/* The job: a retired file first, else a new one while too few are ready. */
		size_t job = p->nfiles, ready = 0;
		for (size_t i = 0; i < p->nfiles; i++) {
			if (p->files[i].ready)
				ready++;
			else if (job == p->nfiles)
				job = i;
		}
		int want_new = job == p->nfiles && ready < p->keep;
		if ((job == p->nfiles && !want_new) || (p->error && !p->retry) || !zeros) {
			if (!zeros && !p->error) {
				p->error = -ENOMEM;
				snprintf(p->error_msg, sizeof(p->error_msg),
					 "preparing segment files: out of memory");
				pthread_cond_broadcast(&p->cond);
			}
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		p->retry = 0;
		p->busy = 1;
		int retired = job < p->nfiles;
		p->busy_new = !retired;
		struct rl_pool_entry e = retired ? p->files[job] : (struct rl_pool_entry){.seq = 0};
		uint64_t seq = p->next_seq++;
		pthread_mutex_unlock(&p->lock);
		int err = prepare(p, retired ? &e : NULL, seq, zeros);
		pthread_mutex_lock(&p->lock);
		p->busy = 0;
		p->busy_new = 0;
		if (retired) {
			/* Entries only leave the list under this lock, and only ready ones. */
			for (size_t i = 0; i < p->nfiles; i++)
				if (p->files[i].seq == e.seq && !p->files[i].ready) {
					remove_entry(p, i);
					break;
				}
		}
		if (!err)
			err = add_entry(p, seq, e.stale, 1);
		if (err) {
			p->error = err;
		} else {
			p->error = 0;
			atomic_fetch_add_explicit(retired ? &p->recycled : &p->prepared, 1,
						  memory_order_relaxed);
		}
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	free(zeros);
	return NULL;
}

int rl_pool_start(struct rl_pool *p, int dir_fd, uint64_t file_bytes, int direct, uint32_t align,
		  unsigned keep, unsigned max_files, uint64_t next_lsn)
{
	memset(p, 0, sizeof(*p));
	p->dir_fd = dir_fd;
	p->faults = rl_faults_current();
	p->file_bytes = file_bytes;
	p->direct = direct;
	p->align = align;
	p->keep = keep;
	p->max_files = max_files;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);

	int fd = dup(dir_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return rl_fail(err, "listing the log directory for pool files");
	}
	rewinddir(d);
	int err = 0, removed = 0;
	const char *what = NULL;
	char failed[NAME_MAX + 1] = "";
	struct dirent *de;
	while (!err && (de = readdir(d)) != NULL) {
		uint64_t seq, stale;
		int kind = parse_name(de->d_name, &seq, &stale);
		if (kind == 0 && strcmp(de->d_name, "segment.new") != 0)
			continue;
		if (kind != 0 && seq >= p->next_seq)
			p->next_seq = seq + 1;
		snprintf(failed, sizeof(failed), "%s", de->d_name);
		/* Unfinished, or holding LSNs the log may write again: not reusable. */
		if (kind == 0 || kind == 3 || stale >= next_lsn) {
			what = "removing";
			err = rl_file_unlink(dir_fd, de->d_name);
			removed = 1;
			continue;
		}
		what = "keeping track of";
		err = add_entry(p, seq, stale, 0);
		if (err)
			break;
		if (kind == 1) {
			/* Ready only if it still has the size this log wants; if its size
			 * cannot be read, it is made ready again all the same. */
			int ffd = rl_file_open(dir_fd, de->d_name, O_RDONLY);
			int64_t size = ffd < 0 ? ffd : rl_file_size(ffd);
			if (ffd >= 0)
				close(ffd);
			if (size == (int64_t)file_bytes) {
				p->files[p->nfiles - 1].ready = 1;
				atomic_fetch_add_explicit(&p->ready_now, 1, memory_order_relaxed);
			} else {
				struct rl_pool_entry r = {.seq = seq, .stale = stale, .ready = 1},
						     t = {.seq = seq, .stale = stale, .ready = 0};
				char a[RL_POOL_NAME_MAX], b[RL_POOL_NAME_MAX];
				ready_name(a, &r);
				ready_name(b, &t);
				what = "renaming (to be brought to the segment size)";
				err = rl_file_rename(dir_fd, a, b, 1);
			}
		}
	}
	closedir(d);
	if (!err && removed) {
		what = "fsync of the log directory after removing pool files";
		failed[0] = '\0';
		err = rl_dir_sync(dir_fd);
	}
	if (err) {
		free(p->files);
		p->files = NULL;
		return rl_fail(err, "taking stock of the pool files: %s %s", what, failed);
	}
	if (keep == 0) {
		/* No pool wanted: what an earlier open prepared is only taking space. */
		for (size_t i = 0; i < p->nfiles && !err; i++) {
			char name[RL_POOL_NAME_MAX];
			ready_name(name, &p->files[i]);
			snprintf(failed, sizeof(failed), "%s", name);
			what = "removing (prepared_segments is 0)";
			err = rl_file_unlink(dir_fd, name);
		}
		if (!err && p->nfiles) {
			what = "fsync of the log directory after removing pool files";
			failed[0] = '\0';
			err = rl_dir_sync(dir_fd);
		}
		free(p->files);
		p->files = NULL;
		p->nfiles = p->cap = 0;
		return err ? rl_fail(err, "taking stock of the pool files: %s %s", what, failed) : 0;
	}
	err = -pthread_create(&p->thread, NULL, preparer_main, p);
	if (err) {
		free(p->files);
		p->files = NULL;
		return rl_fail(err, "starting the segment preparer thread");
	}
	p->started = 1;
	return 0;
}

void rl_pool_stop(struct rl_pool *p)
{
	if (!p->started)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	p->started = 0;
	free(p->files);
	p->files = NULL;
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

int rl_pool_take(struct rl_pool *p, uint64_t first_lsn, char *name, int *waited)
{
	int asked = 0;
	*waited = 0;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		size_t best = p->nfiles;
		for (size_t i = 0; i < p->nfiles; i++)
			if (p->files[i].ready && p->files[i].stale < first_lsn &&
			    (best == p->nfiles || p->files[i].seq < p->files[best].seq))
				best = i;
		if (best < p->nfiles) {
			ready_name(name, &p->files[best]);
			remove_entry(p, best);
			pthread_cond_broadcast(&p->cond); /* prepare the next one */
			pthread_mutex_unlock(&p->lock);
			return 0;
		}
		if (p->error && !p->busy) {
			if (!asked) {
				/* Space may have been freed since: one more try. */
				asked = 1;
				p->retry = 1;
				pthread_cond_broadcast(&p->cond);
			} else if (!p->retry) {
				int err = p->error;
				char msg[sizeof(p->error_msg)];
				snprintf(msg, sizeof(msg), "%s", p->error_msg);
				pthread_mutex_unlock(&p->lock);
				return rl_fail(err, "%s", msg);
			}
		}
		*waited = 1;
		pthread_cond_wait(&p->cond, &p->lock);
	}
}

int rl_pool_retire(struct rl_pool *p, const char *seg_name, uint64_t stale)
{
	if (!p->started)
		return 0;
	pthread_mutex_lock(&p->lock);
	/* (A new file being zero-filled is not in the list yet, but counts.) */
	if (p->nfiles + (size_t)p->busy_new >= p->max_files) {
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	struct rl_pool_entry e = {.seq = p->next_seq++, .stale = stale, .ready = 0};
	pthread_mutex_unlock(&p->lock);
	char to[RL_POOL_NAME_MAX];
	ready_name(to, &e);
	int err = rl_file_rename(p->dir_fd, seg_name, to, 1);
	if (err)
		return err;
	pthread_mutex_lock(&p->lock);
	err = add_entry(p, e.seq, e.stale, 0);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return err ? err : 1;
}

void rl_pool_kick(struct rl_pool *p)
{
	if (!p->started)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->error)
		p->retry = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}
