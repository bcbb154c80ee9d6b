/*
 * dio-pattern: the two ways of writing small durable groups with O_DIRECT, measured
 * on the device with ringlog's own I/O shape (an io_uring write from a registered
 * buffer linked to an fdatasync, up to --depth groups in flight), into a pre-written
 * file:
 *
 *   pad      each group starts on a block boundary: it takes its bytes rounded up to
 *            the alignment, and its writes may be in flight together with others;
 *   rewrite  groups follow each other byte for byte; a group's write starts at the
 *            block its first byte is in (writing the previous group's bytes there
 *            again) and waits until the previous group's write has completed (two
 *            writes of one block must not be in flight together).  ringlog does this.
 *
 * It reports durable groups per second, the file space each payload byte takes, and
 * the bytes written per payload byte.  docs/benchmarks.md has the figures and the
 * reasons for ringlog's choice.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 64

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dio-pattern --file PATH [options]\n"
		"Durable group writes with O_DIRECT into a pre-written file: padded to the\n"
		"alignment (writes overlap) or back to back (a shared block is written again,\n"
		"one write of it at a time).\n\n"
		"  --file PATH      the file (made and written once if shorter than --size)\n"
		"  --size BYTES     file size (default 256 MiB); the writes wrap around in it\n"
		"  --group BYTES    payload bytes per durable group (default 136: one 100-byte\n"
		"                   record in a ringlog frame)\n"
		"  --align BYTES    write alignment (default 512)\n"
		"  --depth D        groups in flight at most (default 1, at most 64)\n"
		"  --mode M         pad, rewrite or both (default both)\n"
		"  --duration S     seconds per mode (default 3)\n");
}

/* Make sure the file holds `size` written bytes, synced. */
static int prewrite(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= size) {
		close(fd);
		return 0;
	}
	static char zeros[1 << 20];
	for (uint64_t off = 0; off < size; off += sizeof(zeros)) {
		size_t n = size - off < sizeof(zeros) ? (size_t)(size - off) : sizeof(zeros);
		if (pwrite(fd, zeros, n, (off_t)off) != (ssize_t)n) {
			int err = -errno;
			close(fd);
			return err ? err : -EIO;
		}
	}
	int err = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return err;
}

struct slot {
	int busy, written, synced;
};

/* Run one mode; prints a line.  Returns 0 or -errno. */
static int measure(const char *path, uint64_t size, uint64_t group, uint64_t align, unsigned depth,
		   int pad, double seconds)
{
	int fd = open(path, O_RDWR | O_DIRECT);
	if (fd < 0)
		return -errno;
	struct io_uring ring;
	int err = io_uring_queue_init(2 * MAX_DEPTH + 2, &ring, 0);
	if (err) {
		close(fd);
		return err;
	}
	size_t buf_len = (size_t)(group + 2 * align) * MAX_DEPTH + (1 << 20);
	void *buf;
	if (posix_memalign(&buf, 4096, buf_len)) {
		io_uring_queue_exit(&ring);
		close(fd);
		return -ENOMEM;
	}
	memset(buf, 0xa5, buf_len);
	struct iovec iov = {buf, buf_len};
	int fixed = io_uring_register_buffers(&ring, &iov, 1) == 0;
	struct slot slots[MAX_DEPTH] = {{0}};
	uint64_t pos = 0, groups = 0, written = 0, submitted = 0, retired = 0;
	int last_write_pending = 0; /* rewrite: the newest group's write is in flight */
	uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(seconds * 1e9);
	for (;;) {
		int running = now_ns() < stop;
		while (running && submitted - retired < depth && (pad || !last_write_pending)) {
			uint64_t start = pos, end = pos + group;
			uint64_t wstart = start / align * align;
			uint64_t wend = (end + align - 1) / align * align;
			if (wend > size) {
				pos = 0; /* wrap around in the file */
				continue;
			}
			pos = pad ? wend : end;
			unsigned k = (unsigned)(submitted % depth);
			slots[k] = (struct slot){1, 0, 0};
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			char *src = (char *)buf + k * (group + 2 * align) / align * align;
			if (fixed)
				io_uring_prep_write_fixed(sqe, fd, src, (unsigned)(wend - wstart), wstart, 0);
			else
				io_uring_prep_write(sqe, fd, src, (unsigned)(wend - wstart), wstart);
			sqe->flags |= IOSQE_IO_LINK;
			io_uring_sqe_set_data64(sqe, (uint64_t)k << 1);
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
			io_uring_sqe_set_data64(sqe, (uint64_t)k << 1 | 1);
			if ((err = io_uring_submit(&ring)) < 0)
				goto out;
			written += wend - wstart;
			submitted++;
			last_write_pending = 1;
		}
		if (submitted == retired && !running)
			break;
		struct io_uring_cqe *cqe;
		if ((err = io_uring_wait_cqe(&ring, &cqe)) < 0)
			goto out;
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		if (res < 0) {
			err = res;
			goto out;
		}
		struct slot *s = &slots[ud >> 1];
		if (ud & 1)
			s->synced = 1;
		else
			s->written = 1;
		if (!(ud & 1) && (ud >> 1) == (submitted - 1) % depth)
			last_write_pending = 0;
		while (submitted > retired && slots[retired % depth].written &&
		       slots[retired % depth].synced) {
			slots[retired % depth].busy = 0;
			retired++;
			groups++;
		}
	}
	err = 0;
	double s = (double)(now_ns() - t0) / 1e9;
	uint64_t space = pad ? (group + align - 1) / align * align : group;
	printf("%-8s group %6" PRIu64 " B, align %5" PRIu64 ", depth %2u: %8.0f groups/s, %8.2f "
	       "MB/s of payload, %5.2f bytes of file and %5.2f bytes written per payload byte\n",
	       pad ? "pad" : "rewrite", group, align, depth, (double)groups / s,
	       (double)groups * (double)group / 1e6 / s, (double)space / (double)group,
	       (double)written / ((double)submitted * (double)group));
out:
	free(buf);
	io_uring_queue_exit(&ring);
	close(fd);
	return err;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *mode = "both";
	uint64_t size = 256ull << 20, group = 136, align = 512;
	unsigned depth = 1;
	double seconds = 3;
	static const struct option lo[] = {
	    {"file", 1, 0, 'f'},  {"size", 1, 0, 's'},	   {"group", 1, 0, 'g'},
	    {"align", 1, 0, 'a'}, {"depth", 1, 0, 'd'},	   {"mode", 1, 0, 'm'},
	    {"duration", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			path = optarg;
			break;
		case 's':
			size = strtoull(optarg, NULL, 0);
			break;
		case 'g':
			group = strtoull(optarg, NULL, 0);
			break;
		case 'a':
			align = strtoull(optarg, NULL, 0);
			break;
		case 'd':
			depth = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'm':
			mode = optarg;
			break;
		case 't':
			seconds = strtod(optarg, NULL);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	int pad = strcmp(mode, "pad") == 0, rewrite = strcmp(mode, "rewrite") == 0;
	if (!path || optind < argc || group == 0 || align < 512 || (align & (align - 1)) ||
	    depth < 1 || depth > MAX_DEPTH || seconds <= 0 || size < 8 * (group + align) ||
	    (!pad && !rewrite && strcmp(mode, "both") != 0)) {
		usage(stderr);
		return 2;
	}
	int err = prewrite(path, size);
	if (err) {
		fprintf(stderr, "dio-pattern: preparing %s: %s\n", path, strerror(-err));
		return 1;
	}
	if (!rewrite && (err = measure(path, size, group, align, depth, 1, seconds)) != 0) {
		fprintf(stderr, "dio-pattern: pad: %s\n", strerror(-err));
		return 1;
	}
	if (!pad && (err = measure(path, size, group, align, depth, 0, seconds)) != 0) {
		fprintf(stderr, "dio-pattern: rewrite: %s\n", strerror(-err));
		return 1;
	}
	return 0;
}
