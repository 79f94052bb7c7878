/* SPDX-License-Identifier: MIT */
/* Symlink-free opens and socket connects inside VM jails (see jail-path.h). */
#include "jail-path.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

#define JAIL_RESOLVE \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

int jail_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	_cleanup_close_ int root = -EBADF;
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = JAIL_RESOLVE,
	};
	long fd;

	if (!path || !*path)
		return -EINVAL;
	if (path[0] == '/') {
		/* RESOLVE_BENEATH refuses absolute paths: resolve beneath "/" instead. NO_XDEV
		 * would refuse every mount point on the way, so only here it is left out. */
		root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (root < 0)
			return -errno;
		dirfd = root;
		while (*path == '/')
			path++;
		if (!*path)
			return -EINVAL;
		how.resolve &= ~(unsigned long long)RESOLVE_NO_XDEV;
	}
	fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

static long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int jail_socket_open(const char *path, char *proc_path, size_t size)
{
	_cleanup_close_ int pfd = -EBADF, dfd = -EBADF;
	char dir[4096];
	const char *slash;
	struct stat st, dst;

	slash = strrchr(path, '/');
	if (!slash || (size_t)(slash - path) >= sizeof(dir))
		return -EINVAL;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	/* The directory first (itself resolved without symlinks), then the socket beneath it. */
	dfd = jail_openat(AT_FDCWD, dir[0] ? dir : "/", O_PATH | O_DIRECTORY, 0);
	if (dfd < 0)
		return dfd;
	pfd = jail_openat(dfd, slash + 1, O_PATH, 0);
	if (pfd < 0)
		return pfd;
	if (fstat(pfd, &st) < 0 || fstat(dfd, &dst) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	if (st.st_uid != 0 && st.st_uid != dst.st_uid)
		return -EPERM;
	if ((size_t)snprintf(proc_path, size, "/proc/self/fd/%d", pfd) >= size)
		return -ENAMETOOLONG;
	return TAKE_FD(pfd);
}

int jail_connect(const char *path, int timeout_ms)
{
	_cleanup_close_ int pfd = -EBADF, s = -EBADF;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	long deadline = mono_ms() + timeout_ms;
	int r;

	pfd = jail_socket_open(path, sa.sun_path, sizeof(sa.sun_path));
	if (pfd < 0)
		return pfd;
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -errno;
	for (;;) {
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		r = -errno;
		if (r != -EAGAIN && r != -EINTR)
			return r;
		/* A full backlog (a VMM that stopped accepting): retry until the deadline. */
		if (mono_ms() >= deadline)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
	}
	if (fcntl(s, F_SETFL, 0) < 0)
		return -errno;
	return TAKE_FD(s);
}
