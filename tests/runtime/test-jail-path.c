/* SPDX-License-Identifier: MIT */
/*
 * runtime/jail-path.c: opening and connecting inside a jail never follows a symlink (in the
 * last component or in a directory on the way), refuses what is not a socket or belongs to
 * another uid, and a listener that never accepts costs at most the deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "jail-path.h"
#include "macro.h"
#include "test.h"

static char D[64];

static int listen_at(const char *name, int backlog)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ASSERT_TRUE(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", D, name);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(fd, backlog));
	return fd;
}

static void path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", D, name);
}

static void setup(void)
{
	char p[128];

	snprintf(D, sizeof(D), "/tmp/jail-path.XXXXXX");
	ASSERT_TRUE(mkdtemp(D) != NULL);
	path(p, sizeof(p), "run");
	ASSERT_OK(mkdir(p, 0700));
	path(p, sizeof(p), "other");
	ASSERT_OK(mkdir(p, 0700));
}

static void test_connect_and_symlinks(void)
{
	char p[128], q[128];
	int l, fd;

	setup();
	l = listen_at("run/api.sock", 8);
	path(p, sizeof(p), "run/api.sock");
	fd = jail_connect(p, 500);
	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	/* A symlink as the socket itself. */
	path(q, sizeof(q), "link.sock");
	ASSERT_OK(symlink(p, q));
	ASSERT_ERRNO(jail_connect(q, 500), ELOOP);
	/* A directory on the way swapped for a symlink (run2 -> run). */
	path(q, sizeof(q), "run2");
	path(p, sizeof(p), "run");
	ASSERT_OK(symlink(p, q));
	path(q, sizeof(q), "run2/api.sock");
	ASSERT_ERRNO(jail_connect(q, 500), ELOOP);
	/* Not a socket; missing. */
	path(p, sizeof(p), "run/file");
	ASSERT_OK(write_file_atomic(p, "x", 1, 0600));
	ASSERT_ERRNO(jail_connect(p, 500), ENOTSOCK);
	path(p, sizeof(p), "run/none");
	ASSERT_ERRNO(jail_connect(p, 500), ENOENT);
	/* jail_openat: a file through a symlinked dir, and a symlinked file. */
	path(q, sizeof(q), "run2/file");
	ASSERT_ERRNO(jail_openat(AT_FDCWD, q, O_RDONLY, 0), ELOOP);
	path(q, sizeof(q), "filelink");
	path(p, sizeof(p), "run/file");
	ASSERT_OK(symlink(p, q));
	ASSERT_ERRNO(jail_openat(AT_FDCWD, q, O_RDONLY, 0), ELOOP);
	fd = jail_openat(AT_FDCWD, p, O_RDONLY, 0);
	ASSERT_TRUE(fd >= 0);
	close(fd);
	close(l);
	rm_rf(D);
}

/* A socket owned by neither root nor the owner of its directory (another VM's uid) is refused
 * (as root: the test chowns it). */
static void test_owner(void)
{
	char p[128];
	int l, fd;

	if (geteuid() != 0)
		test_skip("needs root (chown)");
	setup();
	l = listen_at("run/api.sock", 8);
	path(p, sizeof(p), "run");
	ASSERT_OK(chown(p, 41001, 41001));
	path(p, sizeof(p), "run/api.sock");
	ASSERT_OK(chown(p, 41001, 41001)); /* the dir's owner: accepted */
	fd = jail_connect(p, 500);
	ASSERT_TRUE(fd >= 0);
	close(fd);
	ASSERT_OK(chown(p, 41002, 41002)); /* another uid's socket in that dir */
	ASSERT_ERRNO(jail_connect(p, 500), EPERM);
	close(l);
	rm_rf(D);
}

/* A listener whose backlog is full and who never accepts: the connect gives up at its
 * deadline (300 ms; generous slack for a loaded machine). */
static void test_full_backlog(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char p[100];
	int l, fill[64], n = 0;
	struct timespec t0, t1;
	long ms;

	setup();
	l = listen_at("run/api.sock", 0);
	path(p, sizeof(p), "run/api.sock");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p);
	while (n < (int)ELEMENTSOF(fill)) {
		fill[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		ASSERT_TRUE(fill[n] >= 0);
		if (connect(fill[n++], (struct sockaddr *)&sa, sizeof(sa)) < 0)
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_ERRNO(jail_connect(p, 300), ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	if (ms < 250 || ms > 3300)
		TEST_FAIL("a 300 ms connect deadline ended after %ld ms", ms);
	for (int i = 0; i < n; i++)
		close(fill[i]);
	close(l);
	rm_rf(D);
}

TEST_MAIN(TEST(test_connect_and_symlinks), TEST(test_owner), TEST(test_full_backlog))
