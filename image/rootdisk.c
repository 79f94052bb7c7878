/* SPDX-License-Identifier: MIT */
/* Disks a VM boots with: the image's ext4 root (mkfs.ext4 -d from the unpacked tree) and the
 * per-VM writable disk, both sparse files. mkfs runs through posix_spawn, no shell. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
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

static const char *mkfs_path(void)
{
	static const char *const candidates[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};

	for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
		if (access(candidates[i], X_OK) == 0)
			return candidates[i];
	return "mkfs.ext4"; /* PATH lookup */
}

/* Run mkfs.ext4 with args (after argv[0]); its output is kept for the error message. */
static int run_mkfs(char *const *args, struct err *err)
{
	const char *prog = mkfs_path();
	char *argv[32];
	char out[2048];
	size_t n = 0, len = 0;
	posix_spawn_file_actions_t fa;
	_cleanup_close_ int rd = -EBADF;
	int p[2], status = 0, r;
	pid_t pid;

	argv[n++] = (char *)"mkfs.ext4";
	for (; args[n - 1] && n < ELEMENTSOF(argv) - 1; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;

	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set(err, -errno, "mkfs.ext4: pipe: %s", strerror(errno));
	rd = p[0];
	r = posix_spawn_file_actions_init(&fa);
	if (r == 0)
		r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	/* Nothing else of the daemon's reaches mkfs, close-on-exec or not. */
	if (r == 0)
		r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (r == 0)
		r = prog[0] == '/' ? posix_spawn(&pid, prog, &fa, NULL, argv, environ)
				   : posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	safe_close(p[1]);
	if (r != 0)
		return err_set(err, -r, "cannot run mkfs.ext4: %s", strerror(r));

	for (;;) {
		char buf[1024];
		ssize_t k = read(rd, buf, sizeof(buf));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		/* Keep the first part: mkfs prints the cause first. */
		size_t take = MIN((size_t)k, sizeof(out) - 1 - len);
		memcpy(out + len, buf, take);
		len += take;
	}
	out[len] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_set(err, -errno, "mkfs.ext4: waitpid: %s", strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (strstr(out, "No space left") || strstr(out, "Could not allocate block") ||
	    strstr(out, "Not enough space"))
		return err_set(err, -ENOSPC, "disk full while building the disk: %.300s", out);
	return err_set(err, -EIO, "mkfs.ext4 failed (status %d): %.300s",
		       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out);
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
		if (r >= 0)
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

static int mkfs_root(const char *dir, const char *path, char *inodes, struct err *err)
{
	/* 4 KiB blocks and 256-byte inodes: under 512 MiB mke2fs.conf's "small" type would pick
	 * 1 KiB blocks (four times the writes) and 128-byte inodes. */
	/* clang-format off */
	char *args[] = {"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-L", "root",
			"-m", "0", "-N", inodes, "-O", "^has_journal",
			"-E", "root_owner=0:0,nodiscard", "-d", (char *)dir, (char *)path, NULL};
	/* clang-format on */

	return run_mkfs(args, err);
}

int img_make_data_disk(const char *path, uint64_t size, struct err *err)
{
	int r;

	if (size < DATA_DISK_MIN)
		return err_set(err, -EINVAL, "data disk size %" PRIu64 " is below %llu MiB", size,
			       DATA_DISK_MIN / MIB);
	{
		/* Sparse: what mkfs writes (its metadata, well under 1/64 of the size) plus the
		 * reserve must fit now. */
		char dirbuf[4096];

		snprintf(dirbuf, sizeof(dirbuf), "%s", path);
		r = img_check_space(dirname(dirbuf), size / 64 + MIB, img_disk_reserve(),
				    "the data disk", err);
		if (r < 0)
			return r;
	}
	r = make_sparse(path, size, err);
	if (r < 0)
		return r;
	{
		/* clang-format off */
		char *args[] = {"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-L", "data",
				"-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
				(char *)path, NULL};
		/* clang-format on */
		r = run_mkfs(args, err);
	}
	if (r < 0)
		(void)unlink(path);
	return r;
}
