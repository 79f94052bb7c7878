/* SPDX-License-Identifier: MIT */
/* The agent's volume pieces on real directories (root: owners are copied): a fresh volume takes
 * the content, owner and mode of the image's directory (Docker's rule) and loses lost+found; a
 * volume's directory is made inside the container root, never through a symlink out of it. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "test.h"

/* The agent's main.c provides these. */
void agent_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void boot_mark(enum boot_step step)
{
	(void)step;
}

static char base[128];

static void setup(void)
{
	if (geteuid() != 0)
		test_skip("needs root (copies owners)");
	snprintf(base, sizeof(base), "/tmp/mvmfs-guest-volumes.XXXXXX");
	ASSERT_TRUE(mkdtemp(base) != NULL);
}

static void cleanup(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	ASSERT_EQ(system(cmd), 0);
}

static const char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *P(const char *fmt, ...)
{
	static char bufs[4][600];
	static int k;
	char rel[400];
	char *out = bufs[k++ % 4];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(out, 600, "%s/%s", base, rel);
	return out;
}

static void write_file(const char *path, const char *text, mode_t mode, uid_t uid)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	ASSERT_OK(chmod(path, mode));
	ASSERT_OK(chown(path, uid, uid));
}

static void test_fill_fresh(void)
{
	struct stat st;
	char buf[64];
	int root, vol;

	setup();
	ASSERT_OK(mkdir(P("root"), 0755));
	ASSERT_OK(mkdir(P("root/var"), 0755));
	ASSERT_OK(mkdir(P("root/var/data"), 0750));
	ASSERT_OK(chown(P("root/var/data"), 1000, 1001));
	write_file(P("root/var/data/conf"), "hello\n", 0640, 1000);
	ASSERT_OK(mkdir(P("root/var/data/sub"), 0700));
	ASSERT_OK(chown(P("root/var/data/sub"), 1000, 1000));
	write_file(P("root/var/data/sub/deep"), "deep\n", 0600, 1002);
	ASSERT_OK(symlink("conf", P("root/var/data/link")));
	ASSERT_OK(mkfifo(P("root/var/data/fifo"), 0600));
	ASSERT_OK(mkdir(P("vol"), 0755));
	ASSERT_OK(mkdir(P("vol/lost+found"), 0700));

	root = open(P("root"), O_PATH | O_DIRECTORY | O_CLOEXEC);
	vol = open(P("vol"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_TRUE(root >= 0 && vol >= 0);
	ASSERT_TRUE(volume_is_empty(vol));
	ASSERT_OK(volume_fill_fresh(root, "/var/data", vol));
	ASSERT_FALSE(volume_is_empty(vol));
	/* The volume's root took the directory's owner and mode; lost+found is gone. */
	ASSERT_OK(stat(P("vol"), &st));
	ASSERT_EQ(st.st_uid, 1000);
	ASSERT_EQ(st.st_gid, 1001);
	ASSERT_EQ(st.st_mode & 07777, 0750);
	ASSERT_SYSERR(stat(P("vol/lost+found"), &st), ENOENT);
	ASSERT_OK(stat(P("vol/conf"), &st));
	ASSERT_TRUE(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640 && st.st_uid == 1000);
	ASSERT_OK(stat(P("vol/sub/deep"), &st));
	ASSERT_TRUE((st.st_mode & 07777) == 0600 && st.st_uid == 1002);
	ASSERT_OK(lstat(P("vol/link"), &st));
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	ASSERT_EQ(readlink(P("vol/link"), buf, sizeof(buf)), 4);
	ASSERT_OK(lstat(P("vol/fifo"), &st));
	ASSERT_TRUE(S_ISFIFO(st.st_mode));
	{
		FILE *f = fopen(P("vol/sub/deep"), "r");

		ASSERT_TRUE(f && fgets(buf, sizeof(buf), f));
		fclose(f);
		ASSERT_STREQ(buf, "deep\n");
	}

	/* No such directory in the image: the volume stays empty, root's. */
	ASSERT_OK(mkdir(P("vol2"), 0755));
	close(vol);
	vol = open(P("vol2"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_OK(volume_fill_fresh(root, "/not/there", vol));
	ASSERT_TRUE(volume_is_empty(vol));
	ASSERT_OK(stat(P("vol2"), &st));
	ASSERT_EQ(st.st_uid, 0);
	close(vol);
	close(root);
	cleanup();
}

static void test_dir_in_root(void)
{
	struct stat st;
	bool created;
	char outside[160];
	int root, fd;

	setup();
	ASSERT_OK(mkdir(P("root"), 0755));
	snprintf(outside, sizeof(outside), "%s/outside", base);
	ASSERT_OK(mkdir(outside, 0755));
	/* Absolute and relative symlinks that point out of the root. */
	ASSERT_OK(symlink(outside, P("root/abs")));
	ASSERT_OK(symlink("../../..", P("root/up")));
	root = open(P("root"), O_PATH | O_DIRECTORY | O_CLOEXEC);
	ASSERT_TRUE(root >= 0);

	fd = volume_dir_in_root(root, "/srv/app/data", &created);
	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(created);
	close(fd);
	ASSERT_OK(stat(P("root/srv/app/data"), &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 07777) == 0755);
	fd = volume_dir_in_root(root, "/srv/app/data", &created);
	ASSERT_TRUE(fd >= 0);
	ASSERT_FALSE(created);
	close(fd);

	/* A symlink to a directory inside the root is followed there. */
	ASSERT_OK(symlink("/srv/app", P("root/app")));
	fd = volume_dir_in_root(root, "/app/z", &created);
	ASSERT_TRUE(fd >= 0);
	close(fd);
	ASSERT_OK(stat(P("root/srv/app/z"), &st));
	/* ".." stops at the root: "up" is the root itself. */
	fd = volume_dir_in_root(root, "/up/y", &created);
	ASSERT_TRUE(fd >= 0);
	close(fd);
	ASSERT_OK(stat(P("root/y"), &st));
	/* An absolute symlink means the same path inside the root, which does not exist: refused
	 * (no directory is made through a dangling link), and nothing appears outside. */
	ASSERT_TRUE(volume_dir_in_root(root, "/abs/x", &created) < 0);
	ASSERT_SYSERR(stat(P("outside/x"), &st), ENOENT);
	close(root);
	cleanup();
}

TEST_MAIN(TEST(test_fill_fresh), TEST(test_dir_in_root))
