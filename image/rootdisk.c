/* SPDX-License-Identifier: MIT */
/* Disks a VM boots with: the image's ext4 root (mkfs.ext4 -d from the unpacked tree, the file
 * padded with a sparse tail to a multiple of IMG_ROOT_DISK_ALIGN), the per-VM writable disk and the
 * VM's volumes, all sparse files; volumes grow with resize2fs. mkfs.ext4 and resize2fs run through
 * posix_spawn, no shell. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "macro.h"

#define MIB (1024ULL * 1024)
#define ROOT_DISK_MIN (64 * MIB)
#define DATA_DISK_MIN (4 * MIB)
#define INODE_SIZE 256

static _Atomic uint64_t disk_reserve = IMG_DEFAULT_DISK_RESERVE;

void img_disk_reserve_set(uint64_t bytes)
{
	atomic_store(&disk_reserve, bytes);
}

uint64_t img_disk_reserve(void)
{
	return atomic_load(&disk_reserve);
}

static const char *human(uint64_t v, char *buf, size_t size)
{
	if (v >= 10 * MIB)
		snprintf(buf, size, "%" PRIu64 " MiB", (uint64_t)(v / MIB));
	else if (v >= 10 * 1024)
		snprintf(buf, size, "%" PRIu64 " KiB", v / 1024);
	else
		snprintf(buf, size, "%" PRIu64 " bytes", v);
	return buf;
}

int img_check_space(const char *dir, uint64_t need, uint64_t reserve, const char *what,
		    struct err *err)
{
	struct statvfs vfs;
	uint64_t avail;
	char a[32], b[32], c[32];

	if (statvfs(dir, &vfs) < 0)
		return err_set(err, -errno, "cannot check free space in %s: %s", dir,
			       strerror(errno));
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail >= need && avail - need >= reserve)
		return 0;
	return err_set(err, -ENOSPC,
		       "disk full: %s needs %s, the state directory's filesystem has %s free and "
		       "keeps %s in reserve",
		       what, human(need, a, sizeof(a)), human(avail, b, sizeof(b)),
		       human(reserve, c, sizeof(c)));
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An e2fsprogs tool by name: /usr/sbin, /sbin, else a PATH lookup. */
static const char *tool_path(const char *name, char *buf, size_t size)
{
	static const char *const dirs[] = {"/usr/sbin/", "/sbin/"};

	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		snprintf(buf, size, "%s%s", dirs[i], name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return name;
}

/* Run the e2fsprogs tool name with args (after argv[0]); its output is kept for the error
 * message. timeout_ms > 0: the tool is killed past it (-ETIMEDOUT); 0: no deadline (the root
 * disk's mkfs -d, whose time grows with the image). */
static int run_tool(const char *name, char *const *args, unsigned timeout_ms, struct err *err)
{
	char pbuf[64];
	const char *prog = tool_path(name, pbuf, sizeof(pbuf));
	char *argv[32];
	char out[2048];
	size_t n = 0, len = 0;
	posix_spawn_file_actions_t fa;
	_cleanup_close_ int rd = -EBADF;
	int p[2], status = 0, r;
	bool timed_out = false;
	int64_t deadline = mono_ms() + timeout_ms;
	pid_t pid;

	argv[n++] = (char *)name;
	for (; args[n - 1] && n < ELEMENTSOF(argv) - 1; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;

	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set(err, -errno, "%s: pipe: %s", name, strerror(errno));
	rd = p[0];
	r = posix_spawn_file_actions_init(&fa);
	if (r == 0)
		r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	/* Nothing else of the daemon's reaches the tool, close-on-exec or not. */
	if (r == 0)
		r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (r == 0)
		r = prog[0] == '/' ? posix_spawn(&pid, prog, &fa, NULL, argv, environ)
				   : posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	safe_close(p[1]);
	if (r != 0)
		return err_set(err, -r, "cannot run %s: %s", name, strerror(r));

	for (;;) {
		char buf[1024];
		struct pollfd pfd = {.fd = rd, .events = POLLIN};
		ssize_t k;

		if (timeout_ms) {
			int64_t left = deadline - mono_ms();

			if (left <= 0 || poll(&pfd, 1, (int)MIN(left, 1000)) == 0) {
				if (deadline - mono_ms() > 0)
					continue;
				timed_out = true;
				(void)kill(pid, SIGKILL);
				break;
			}
		}
		k = read(rd, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		/* Keep the first part: the tools print the cause first. */
		size_t take = MIN((size_t)k, sizeof(out) - 1 - len);
		memcpy(out + len, buf, take);
		len += take;
	}
	out[len] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_set(err, -errno, "%s: waitpid: %s", name, strerror(errno));
	if (timed_out)
		return err_set(err, -ETIMEDOUT, "%s did not finish within %u s", name,
			       timeout_ms / 1000);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (strstr(out, "No space left") || strstr(out, "Could not allocate block") ||
	    strstr(out, "Not enough space"))
		return err_set(err, -ENOSPC, "disk full while building the disk: %.300s", out);
	return err_set(err, -EIO, "%s failed (status %d): %.300s", name,
		       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out);
}

static int run_mkfs(char *const *args, unsigned timeout_ms, struct err *err)
{
	return run_tool("mkfs.ext4", args, timeout_ms, err);
}

/* What an inode will take in ext4 (4 KiB blocks): allocated blocks, but never less than the
 * data rounded to a block (filesystems with inline or compressed data under-report), and a
 * block for symlink targets too long to live in the inode. */
static uint64_t ext4_bytes(const struct stat *st)
{
	uint64_t alloc = (uint64_t)st->st_blocks * 512, size = (uint64_t)st->st_size;

	if (S_ISLNK(st->st_mode))
		return size >= 60 ? 4096 : 0;
	if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
		return 0;
	if (alloc == 0 && size > 0)
		alloc = size;
	return (alloc + 4095) / 4096 * 4096;
}

static int tree_walk(int dfd, dev_t dev, unsigned depth, uint64_t *bytes, uint64_t *inodes)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd, r;

	if (depth > 4096)
		return -ELOOP;
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		(*inodes)++;
		*bytes += ext4_bytes(&st);
		if (S_ISDIR(st.st_mode) && st.st_dev == dev) {
			_cleanup_close_ int sub =
				openat(dirfd(d), de->d_name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return -errno;
			r = tree_walk(sub, dev, depth + 1, bytes, inodes);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int img_tree_usage(int dir_fd, uint64_t *ret_bytes, uint64_t *ret_inodes)
{
	struct stat st;
	uint64_t bytes = 0, inodes = 1;
	int r;

	if (fstat(dir_fd, &st) < 0)
		return -errno;
	r = tree_walk(dir_fd, st.st_dev, 0, &bytes, &inodes);
	if (r < 0)
		return r;
	*ret_bytes = bytes + ext4_bytes(&st);
	*ret_inodes = inodes;
	return 0;
}

static int make_sparse(const char *path, uint64_t size, struct err *err)
{
	_cleanup_close_ int fd = -EBADF;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0) {
		int r = -errno;
		(void)unlink(path);
		return err_set(err, r, "cannot size %s: %s", path, strerror(-r));
	}
	return 0;
}

static int mkfs_root(const char *dir, const char *path, char *inodes, struct err *err);

int img_make_root_disk(const char *dir, const char *path, struct err *err)
{
	_cleanup_close_ int dfd = -EBADF;
	uint64_t bytes = 0, inodes = 0, size;
	char nbuf[32];
	int r;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return err_set(err, -errno, "cannot open %s: %s", dir, strerror(errno));
	r = img_tree_usage(dfd, &bytes, &inodes);
	if (r < 0)
		return err_set(err, r, "cannot measure %s: %s", dir, strerror(-r));

	/* Data plus ~10% for extent and directory blocks, the inode tables, group metadata, and
	 * headroom; no journal: the root is shared read-only. */
	inodes = inodes + inodes / 4 + 1024;
	size = bytes + bytes / 10 + inodes * INODE_SIZE + 8 * MIB;
	size = size + size / 20;
	size = MAX(size, ROOT_DISK_MIN);
	size = (size + MIB - 1) / MIB * MIB;
	snprintf(nbuf, sizeof(nbuf), "%" PRIu64, inodes);

	for (int attempt = 0;; attempt++) {
		struct statvfs vfs;
		char dirbuf[4096];

		/* The disk will hold about the tree's bytes; the reserve stays free. */
		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		r = img_check_space(dirname(dirbuf), bytes + bytes / 10, img_disk_reserve(),
				    "the root disk", err);
		if (r < 0)
			return r;

		r = make_sparse(path, size, err);
		if (r < 0)
			return r;
		r = mkfs_root(dir, path, nbuf, err);
		if (r >= 0 && (r = img_pad_root_disk(path, err)) >= 0)
			return 0;
		(void)unlink(path);
		/* Our estimate was short (the host's ENOSPC looks the same): grow and retry while
		 * the host filesystem has room for it. */
		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		if (r != -ENOSPC || attempt >= 2 || statvfs(dirname(dirbuf), &vfs) < 0 ||
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < 2 * size)
			return r;
		size *= 2;
	}
}

int img_pad_root_disk(const char *path, struct err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	uint64_t want;

	fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return err_set(err, -errno, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size <= 0)
		return err_set(err, -EINVAL, "%s is not a root disk file", path);
	want = ((uint64_t)st.st_size + IMG_ROOT_DISK_ALIGN - 1) / IMG_ROOT_DISK_ALIGN *
	       IMG_ROOT_DISK_ALIGN;
	if (want != (uint64_t)st.st_size && ftruncate(fd, (off_t)want) < 0)
		return err_set(err, -errno, "cannot pad %s: %s", path, strerror(errno));
	return 0;
}

static int mkfs_root(const char *dir, const char *path, char *inodes, struct err *err)
{
	/* 4 KiB blocks and 256-byte inodes: under 512 MiB mke2fs.conf's "small" type would pick
	 * 1 KiB blocks (four times the writes) and 128-byte inodes. */
	/* clang-format off */
	char *args[] = {"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-L", "root",
			"-m", "0", "-N", inodes, "-O", "^has_journal",
			"-E", "root_owner=0:0,nodiscard", "-d", (char *)dir, (char *)path, NULL};
	/* clang-format on */

	return run_mkfs(args, 0, err);
}

/* mkfs of an empty disk writes little (lazy inode tables): a minute is far beyond it. */
#define EMPTY_DISK_TIMEOUT_MS 60000

static int make_empty_disk(const char *path, uint64_t size, const char *label, const char *what,
			   struct err *err)
{
	int r;

	if (size < DATA_DISK_MIN)
		return err_set(err, -EINVAL, "%s size %" PRIu64 " is below %llu MiB", what, size,
			       DATA_DISK_MIN / MIB);
	{
		/* Sparse: what mkfs writes (its metadata, well under 1/64 of the size) plus the
		 * reserve must fit now. */
		char dirbuf[4096];

		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		r = img_check_space(dirname(dirbuf), size / 64 + MIB, img_disk_reserve(), what,
				    err);
		if (r < 0)
			return r;
	}
	r = make_sparse(path, size, err);
	if (r < 0)
		return r;
	{
		/* clang-format off */
		char *args[] = {"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-L", (char *)label,
				"-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
				(char *)path, NULL};
		/* clang-format on */
		r = run_mkfs(args, EMPTY_DISK_TIMEOUT_MS, err);
	}
	if (r < 0)
		(void)unlink(path);
	return r;
}

int img_make_data_disk(const char *path, uint64_t size, struct err *err)
{
	return make_empty_disk(path, size, "data", "the data disk", err);
}

int img_make_volume_disk(const char *path, uint64_t size, struct err *err)
{
	return make_empty_disk(path, size, "volume", "the volume", err);
}

/* resize2fs of a grown, mostly empty filesystem adds group descriptors and bitmaps: seconds. */
#define RESIZE_TIMEOUT_MS 60000

int img_grow_disk(const char *path, uint64_t size, struct err *err)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	char sbuf[32];
	int r;

	fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return err_set(err, -errno, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EINVAL, "%s is not a regular file", path);
	if ((uint64_t)st.st_size > size)
		return err_set(err, -EINVAL,
			       "cannot shrink %s from %" PRIu64 " to %" PRIu64 " bytes", path,
			       (uint64_t)st.st_size, size);
	if ((uint64_t)st.st_size < size) {
		char dirbuf[4096];

		/* resize2fs writes the new groups' metadata (well under 1/64 of the growth). */
		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		r = img_check_space(dirname(dirbuf), (size - (uint64_t)st.st_size) / 64 + MIB,
				    img_disk_reserve(), "growing the volume", err);
		if (r < 0)
			return r;
		if (ftruncate(fd, (off_t)size) < 0)
			return err_set(err, -errno, "cannot grow %s: %s", path, strerror(errno));
	}
	fd = safe_close(fd);
	/* Always run, also when the file already has the size: a grow interrupted after the
	 * truncate is finished here. "-f": no e2fsck first (the disk is not mounted, and its
	 * journal is replayed by the guest's kernel). The size in 4 KiB blocks. */
	snprintf(sbuf, sizeof(sbuf), "%" PRIu64 "K", size / 1024);
	{
		char *args[] = {"-f", (char *)path, sbuf, NULL};

		r = run_tool("resize2fs", args, RESIZE_TIMEOUT_MS, err);
	}
	return r;
}
