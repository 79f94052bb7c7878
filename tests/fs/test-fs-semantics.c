/* SPDX-License-Identifier: MIT */
/*
 * fs semantics (docs/contract.md) of the real FUSE tree over the FAKE runtime
 * (tests/fs/fake-runtime.c): names, errnos, reads, whole-value writes, blocking / O_NONBLOCK /
 * interrupted state writes, concurrent writers, poll wake-ups, rmdir, and the per-uid limits on
 * open files and buffer memory (as `nobody` and other uids, in child processes). Driven with plain
 * syscalls. Each case runs mvmfs-fs-testd in a private mount namespace (so a failing case
 * never leaves a mount behind) and unmounts it at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
// (after test.h)
#include "sys.h"

static struct {
	pid_t pid;
	FILE *ctl_w, *ctl_r;
	char dir[128];
	char mnt[160];
} F;

#define FS_BIG 4096
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static const char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char pathbuf[8][PATH_MAX];
static int pathidx;

/* A path under the mount (rotating static buffers, enough for one statement). */
static const char *P(const char *fmt, ...)
{
	char rel[3000];
	char *out = pathbuf[pathidx++ % 8];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(out, PATH_MAX, "%s/%s", F.mnt, rel);
	return out;
}

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void setup(void)
{
	const char *testd = getenv("MVMFS_FS_TESTD");
	int in[2], out[2];
	char line[64] = "";

	if (geteuid() != 0)
		test_skip("needs root (FUSE mount)");
	if (access("/dev/fuse", R_OK | W_OK) < 0)
		test_skip("no usable /dev/fuse");
	if (!testd)
		test_skip("MVMFS_FS_TESTD not set (run through meson test)");
	if (unshare(CLONE_NEWNS) < 0)
		test_skip("cannot unshare the mount namespace");
	ASSERT_OK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	snprintf(F.dir, sizeof(F.dir), "/tmp/mvmfs-fs-test-XXXXXX");
	ASSERT_TRUE(mkdtemp(F.dir));
	snprintf(F.mnt, sizeof(F.mnt), "%s/mnt", F.dir);
	ASSERT_OK(mkdir(F.mnt, 0755));
	ASSERT_OK(pipe2(in, O_CLOEXEC));
	ASSERT_OK(pipe2(out, O_CLOEXEC));
	F.pid = fork();
	ASSERT_TRUE(F.pid >= 0);
	if (F.pid == 0) {
		/* Die (and unmount) with the test case, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl(testd, testd, F.mnt, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	F.ctl_w = fdopen(in[1], "w");
	F.ctl_r = fdopen(out[0], "r");
	ASSERT_TRUE(F.ctl_w && F.ctl_r);
	if (!fgets(line, sizeof(line), F.ctl_r) || strcmp(line, "ready\n") != 0)
		TEST_FAIL("test daemon did not become ready: '%s'", line);
}

static void teardown(void)
{
	int status;
	long long deadline = now_ms() + 5000;

	fclose(F.ctl_w); /* EOF: the daemon unmounts and exits */
	while (waitpid(F.pid, &status, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(F.pid, SIGKILL);
			waitpid(F.pid, &status, 0);
			break;
		}
		usleep(10000);
	}
	(void)umount2(F.mnt, MNT_DETACH);
	ASSERT_OK(rmdir(F.mnt));
	ASSERT_OK(rmdir(F.dir));
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Send a control line to the fake runtime; returns its answer. */
static const char *ctl(const char *fmt, ...)
{
	static char reply[256];
	va_list ap;

	va_start(ap, fmt);
	vfprintf(F.ctl_w, fmt, ap);
	va_end(ap);
	fputc('\n', F.ctl_w);
	fflush(F.ctl_w);
	if (!fgets(reply, sizeof(reply), F.ctl_r))
		TEST_FAIL("control channel closed");
	reply[strcspn(reply, "\n")] = '\0';
	return reply;
}
#define CTL_OK(...) ASSERT_STREQ(ctl(__VA_ARGS__), "ok")

/* Whole file with a read loop (cat), returns length or -errno. */
static ssize_t cat(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t k = read(fd, buf + n, size - 1 - n);
		if (k < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	buf[n] = '\0';
	close(fd);
	return (ssize_t)n;
}

/* `echo -n s > path` (O_TRUNC) or with extra open flags; returns bytes or -errno. */
static ssize_t put(const char *path, const char *s, int flags)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | flags);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = write(fd, s, strlen(s));
	if (r < 0)
		r = -errno;
	close(fd);
	return r;
}

static void expect_content(const char *path, const char *want)
{
	char buf[8192];
	ASSERT_TRUE(cat(path, buf, sizeof(buf)) >= 0);
	ASSERT_STREQ(buf, want);
}

static void mkvm(const char *name)
{
	ASSERT_OK(mkdir(P("vms/%s", name), 0755) < 0 ? -errno : 0);
}

/* A writer in a child process; the result (bytes or -errno) and its duration come back. */
struct writer {
	pid_t pid;
	int fd;
};

static struct writer spawn_writer(const char *path, const char *value, int flags)
{
	struct writer w;
	int p[2];

	ASSERT_OK(pipe2(p, O_CLOEXEC));
	w.pid = fork();
	ASSERT_TRUE(w.pid >= 0);
	if (w.pid == 0) {
		long long t0 = now_ms(), res[2];
		res[0] = put(path, value, flags);
		res[1] = now_ms() - t0;
		(void)!write(p[1], res, sizeof(res));
		_exit(0);
	}
	close(p[1]);
	w.fd = p[0];
	return w;
}

/* Wait for a writer's result within timeout_ms. */
static long long writer_result(struct writer w, int timeout_ms, long long *ret_ms)
{
	struct pollfd pfd = {.fd = w.fd, .events = POLLIN};
	long long res[2] = {0, 0};

	if (poll(&pfd, 1, timeout_ms) != 1)
		TEST_FAIL("writer still blocked after %d ms", timeout_ms);
	ASSERT_EQ(read(w.fd, res, sizeof(res)), (ssize_t)sizeof(res));
	close(w.fd);
	waitpid(w.pid, NULL, 0);
	if (ret_ms)
		*ret_ms = res[1];
	return res[0];
}

static void writer_still_blocked(struct writer w, int ms)
{
	struct pollfd pfd = {.fd = w.fd, .events = POLLIN};
	ASSERT_EQ(poll(&pfd, 1, ms), 0);
}

static void wait_busy(const char *name, const char *want)
{
	long long deadline = now_ms() + 10000;
	while (strcmp(ctl("busy %s", name), want) != 0) {
		if (now_ms() > deadline)
			TEST_FAIL("%s never became busy=%s", name, want);
		usleep(2000);
	}
}

/* ---- the tree ---- */

static void test_tree_and_modes(void)
{
	struct stat st;
	char buf[4096];
	static const char *const rw[] = {"state", "image"};
	static const char *const ro[] = {"ip",	   "health", "error",  "log",
					 "config", "pid",    "metrics"};

	setup();
	ASSERT_OK(stat(P("vms"), &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(st.st_mode & 07777, 0755);
	ASSERT_EQ(st.st_uid, 0);
	ASSERT_TRUE(cat(P("version"), buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strncmp(buf, "mvmfs ", 6) == 0);
	ASSERT_TRUE(strstr(buf, "fake\n") != NULL);
	ASSERT_OK(stat(P("version"), &st));
	ASSERT_EQ(st.st_mode & 07777, 0444);
	ASSERT_TRUE(cat(P("metrics"), buf, sizeof(buf)) > 0);

	mkvm("vm1");
	ASSERT_OK(stat(P("vms/vm1"), &st));
	ASSERT_EQ(st.st_mode, S_IFDIR | 0755);
	for (size_t i = 0; i < ELEMENTSOF(rw); i++) {
		ASSERT_OK(stat(P("vms/vm1/%s", rw[i]), &st));
		ASSERT_EQ(st.st_mode, S_IFREG | 0644);
		ASSERT_EQ(st.st_uid, 0);
		ASSERT_EQ(st.st_gid, 0);
	}
	for (size_t i = 0; i < ELEMENTSOF(ro); i++) {
		ASSERT_OK(stat(P("vms/vm1/%s", ro[i]), &st));
		ASSERT_EQ(st.st_mode, S_IFREG | 0444);
	}
	ASSERT_SYSERR(stat(P("vms/vm1/nope"), &st), ENOENT);
	ASSERT_SYSERR(stat(P("vms/nope"), &st), ENOENT);

	/* readdir of root, vms/ and a VM directory */
	{
		DIR *d = opendir(P("vms/vm1"));
		struct dirent *de;
		int seen = 0;
		ASSERT_TRUE(d);
		while ((de = readdir(d)))
			seen += strcmp(de->d_name, "state") == 0 ||
				strcmp(de->d_name, "health") == 0;
		closedir(d);
		ASSERT_EQ(seen, 2);
		d = opendir(P("vms"));
		seen = 0;
		ASSERT_TRUE(d);
		while ((de = readdir(d)))
			seen += strcmp(de->d_name, "vm1") == 0;
		closedir(d);
		ASSERT_EQ(seen, 1);
		d = opendir(F.mnt);
		seen = 0;
		ASSERT_TRUE(d);
		while ((de = readdir(d)))
			seen += strcmp(de->d_name, "vms") == 0 ||
				strcmp(de->d_name, "version") == 0;
		closedir(d);
		ASSERT_EQ(seen, 2);
	}
	expect_content(P("vms/vm1/state"), "created\n");
	expect_content(P("vms/vm1/image"), "");
	expect_content(P("vms/vm1/error"), "");
	ASSERT_TRUE(cat(P("vms/vm1/ip"), buf, sizeof(buf)) > 1);
	ASSERT_EQ(buf[strlen(buf) - 1], '\n');
	ASSERT_TRUE(cat(P("vms/vm1/health"), buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strncmp(buf, "stopped\n", 8) == 0);
	teardown();
}

static void test_names(void)
{
	char n36[37], n37[38];

	setup();
	memset(n36, 'a', 36);
	n36[36] = '\0';
	memset(n37, 'b', 37);
	n37[37] = '\0';
	ASSERT_SYSERR(mkdir(P("vms/-a"), 0755), EINVAL);
	ASSERT_SYSERR(mkdir(P("vms/a_b"), 0755), EINVAL);
	ASSERT_SYSERR(mkdir(P("vms/a.b"), 0755), EINVAL);
	ASSERT_SYSERR(mkdir(P("vms/a b"), 0755), EINVAL);
	ASSERT_SYSERR(mkdir(P("vms/é"), 0755), EINVAL);
	ASSERT_SYSERR(mkdir(P("vms/%s", n37), 0755), EINVAL);
	{
		char n300[301];
		memset(n300, 'c', 300);
		n300[300] = '\0';
		ASSERT_SYSERR(mkdir(P("vms/%s", n300), 0755), EINVAL);
	}
	mkvm(n36);
	mkvm("0f8fad5b-d9cb-469f-a165-70867728950e");
	mkvm("A-1");
	ASSERT_SYSERR(mkdir(P("vms/A-1"), 0755), EEXIST);
	/* mkdir anywhere but vms/: EPERM */
	ASSERT_SYSERR(mkdir(P("x"), 0755), EPERM);
	ASSERT_SYSERR(mkdir(P("vms/A-1/sub"), 0755), EPERM);
	ASSERT_SYSERR(mkdir(P("vms/A-1/state/x"), 0755), ENOTDIR);
	/* rmdir */
	ASSERT_SYSERR(rmdir(P("vms/ghost")), ENOENT);
	ASSERT_SYSERR(rmdir(P("vms")), EPERM);
	ASSERT_SYSERR(rmdir(P("version")), ENOTDIR);
	ASSERT_OK(rmdir(P("vms/A-1")));
	ASSERT_SYSERR(access(P("vms/A-1"), F_OK), ENOENT);
	teardown();
}

static void test_mkdir_limits_and_failures(void)
{
	struct stat st;

	setup();
	CTL_OK("maxvms 2");
	mkvm("a");
	mkvm("b");
	ASSERT_SYSERR(mkdir(P("vms/c"), 0755), ENOSPC);
	CTL_OK("maxvms 10");
	CTL_OK("createfail %d", EIO);
	ASSERT_SYSERR(mkdir(P("vms/c"), 0755), EIO);
	ASSERT_SYSERR(stat(P("vms/c"), &st), ENOENT);
	CTL_OK("createfail %d", ENOSPC);
	ASSERT_SYSERR(mkdir(P("vms/c"), 0755), ENOSPC);
	mkvm("c");
	teardown();
}

static void test_refused_operations(void)
{
	struct timespec ts[2] = {{0, 0}, {0, 0}};
	int fd;

	setup();
	mkvm("v");
	ASSERT_SYSERR(open(P("vms/v/new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), EPERM);
	ASSERT_SYSERR(open(P("new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), EPERM);
	ASSERT_SYSERR(unlink(P("vms/v/state")), EPERM);
	ASSERT_SYSERR(unlink(P("version")), EPERM);
	ASSERT_SYSERR(rename(P("vms/v/state"), P("vms/v/s2")), EPERM);
	ASSERT_SYSERR(rename(P("vms/v"), P("vms/w")), EPERM);
	ASSERT_SYSERR(symlink("state", P("vms/v/link")), EPERM);
	ASSERT_SYSERR(link(P("vms/v/state"), P("vms/v/hard")), EPERM);
	ASSERT_SYSERR(mknod(P("vms/v/fifo"), S_IFIFO | 0644, 0), EPERM);
	ASSERT_SYSERR(chmod(P("vms/v/state"), 0600), EPERM);
	ASSERT_SYSERR(chmod(P("vms/v"), 0700), EPERM);
	ASSERT_SYSERR(chown(P("vms/v/state"), 1, 1), EPERM);
	ASSERT_SYSERR(utimensat(AT_FDCWD, P("vms/v/state"), ts, 0), EPERM);
	/* truncation: size 0 is the no-op of `echo >`, anything else refused */
	ASSERT_OK(truncate(P("vms/v/state"), 0));
	ASSERT_OK(truncate(P("vms/v/image"), 0));
	ASSERT_SYSERR(truncate(P("vms/v/state"), 3), EPERM);
	ASSERT_SYSERR(truncate(P("vms/v/ip"), 0), EACCES);
	/* read-only files: EACCES at open for writing (even for root), EBADF on a read fd */
	ASSERT_SYSERR(open(P("vms/v/ip"), O_WRONLY | O_CLOEXEC), EACCES);
	ASSERT_SYSERR(open(P("vms/v/health"), O_RDWR | O_CLOEXEC), EACCES);
	ASSERT_SYSERR(open(P("version"), O_WRONLY | O_CLOEXEC), EACCES);
	fd = open(P("vms/v/ip"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_SYSERR(write(fd, "x", 1), EBADF);
	close(fd);
	expect_content(P("vms/v/state"), "created\n");
	teardown();
}

static void test_reads(void)
{
	char buf[256], one;
	size_t n = 0;
	ssize_t k;
	int fd;

	setup();
	mkvm("r");
	/* dd bs=1: one byte per read still yields the whole value */
	fd = open(P("vms/r/state"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	while ((k = read(fd, &one, 1)) == 1 && n < sizeof(buf) - 1)
		buf[n++] = one;
	ASSERT_EQ(k, 0);
	buf[n] = '\0';
	ASSERT_STREQ(buf, "created\n");
	/* later offsets come from the per-open buffer; pread at 0 re-renders (sysfs) */
	ASSERT_EQ(pread(fd, buf, 3, 0), 3);
	ASSERT_EQ(put(P("vms/r/state"), "start\n", O_TRUNC), 6);
	k = pread(fd, buf, sizeof(buf) - 1, 3);
	ASSERT_EQ(k, 5);
	buf[k] = '\0';
	ASSERT_STREQ(buf, "ated\n");
	k = pread(fd, buf, sizeof(buf) - 1, 0);
	ASSERT_EQ(k, 8);
	buf[k] = '\0';
	ASSERT_STREQ(buf, "running\n");
	ASSERT_EQ(pread(fd, buf, sizeof(buf), 100), 0);
	close(fd);
	expect_content(P("vms/r/state"), "running\n");
	teardown();
}

static void test_write_errnos(void)
{
	char big[FS_BIG + 2];
	int fd;

	setup();
	mkvm("w");
	ASSERT_EQ(put(P("vms/w/state"), "bogus", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/state"), "START", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/state"), " start", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/state"), "start\n\n", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/state"), "st\nart", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/state"), "", O_TRUNC), 0); /* the kernel never sends it */
	memset(big, 'a', sizeof(big));
	big[FS_BIG + 1] = '\0'; /* 4097 bytes */
	ASSERT_EQ(put(P("vms/w/image"), big, O_TRUNC), -EFBIG);
	ASSERT_EQ(put(P("vms/w/state"), big, O_TRUNC), -EFBIG);
	big[FS_BIG] = '\0'; /* 4096 bytes: size accepted, value judged by the runtime */
	ASSERT_EQ(put(P("vms/w/image"), big, O_TRUNC), FS_BIG);
	/* offset != 0 */
	fd = open(P("vms/w/state"), O_WRONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_SYSERR(pwrite(fd, "start", 5, 1), EINVAL);
	close(fd);
	/* O_APPEND (`echo x >> state`) writes at the end: refused like any offset != 0 */
	ASSERT_EQ(put(P("vms/w/state"), "start", O_APPEND), -EINVAL);
	/* a second write(2) on the same fd lands at offset > 0 */
	fd = open(P("vms/w/image"), O_WRONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, "alpine", 6), 6);
	ASSERT_SYSERR(write(fd, ":3.19", 5), EINVAL);
	close(fd);
	/* image: malformed, echo semantics, read back, EBUSY while running */
	ASSERT_EQ(put(P("vms/w/image"), "bad ref", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/image"), "a\tb", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/w/image"), "alpine:3.19\n", O_TRUNC), 12);
	expect_content(P("vms/w/image"), "alpine:3.19\n");
	ASSERT_EQ(put(P("vms/w/image"), "docker.io/library/nginx:1.25", 0), 28);
	expect_content(P("vms/w/image"), "docker.io/library/nginx:1.25\n");
	/* no-op verbs return at once: stop on created, start on running */
	ASSERT_EQ(put(P("vms/w/state"), "stop\n", O_TRUNC), 5);
	expect_content(P("vms/w/state"), "created\n");
	ASSERT_EQ(put(P("vms/w/state"), "start", O_TRUNC), 5);
	ASSERT_EQ(put(P("vms/w/state"), "start", O_TRUNC), 5);
	expect_content(P("vms/w/state"), "running\n");
	ASSERT_EQ(put(P("vms/w/image"), "alpine", O_TRUNC), -EBUSY);
	ASSERT_SYSERR(rmdir(P("vms/w")), EBUSY);
	teardown();
}

static void test_blocking_write(void)
{
	long long t0, dt;

	setup();
	CTL_OK("delay 300");
	mkvm("b");
	t0 = now_ms();
	ASSERT_EQ(put(P("vms/b/state"), "start\n", O_TRUNC), 6);
	dt = now_ms() - t0;
	ASSERT_TRUE(dt >= 250);
	ASSERT_TRUE(dt < 5000);
	expect_content(P("vms/b/state"), "running\n");
	ASSERT_EQ(put(P("vms/b/state"), "restart", O_TRUNC), 7);
	expect_content(P("vms/b/state"), "running\n");
	ASSERT_EQ(put(P("vms/b/state"), "stop", O_TRUNC), 4);
	expect_content(P("vms/b/state"), "stopped\n");
	ASSERT_EQ(put(P("vms/b/state"), "start", O_TRUNC), 5);
	ASSERT_EQ(put(P("vms/b/state"), "kill", O_TRUNC), 4);
	expect_content(P("vms/b/state"), "stopped\n");
	ASSERT_OK(rmdir(P("vms/b")));
	teardown();
}

static void test_blocking_write_waits_for_transition(void)
{
	struct writer w;
	long long ms;

	setup();
	CTL_OK("mode manual");
	mkvm("m");
	w = spawn_writer(P("vms/m/state"), "start\n", O_TRUNC);
	wait_busy("m", "1");
	writer_still_blocked(w, 300);
	expect_content(P("vms/m/state"), "starting\n");
	CTL_OK("complete m");
	ASSERT_EQ(writer_result(w, 10000, &ms), 6);
	ASSERT_TRUE(ms >= 300);
	expect_content(P("vms/m/state"), "running\n");
	teardown();
}

static void test_nonblock_returns_on_acceptance(void)
{
	long long t0;

	setup();
	CTL_OK("mode manual");
	mkvm("n");
	t0 = now_ms();
	ASSERT_EQ(put(P("vms/n/state"), "start", O_TRUNC | O_NONBLOCK), 5);
	ASSERT_TRUE(now_ms() - t0 < 2000);
	ASSERT_STREQ(ctl("busy n"), "1");
	expect_content(P("vms/n/state"), "starting\n");
	/* another transition in flight: EBUSY for writers, rmdir and image */
	ASSERT_EQ(put(P("vms/n/state"), "stop", O_TRUNC | O_NONBLOCK), -EBUSY);
	ASSERT_EQ(put(P("vms/n/state"), "start", O_TRUNC), -EBUSY);
	ASSERT_EQ(put(P("vms/n/image"), "alpine", O_TRUNC), -EBUSY);
	ASSERT_SYSERR(rmdir(P("vms/n")), EBUSY);
	CTL_OK("complete n");
	wait_busy("n", "0");
	expect_content(P("vms/n/state"), "running\n");
	teardown();
}

/*
 * Concurrent writers. A writer that opens without O_TRUNC while another transition is in flight
 * gets EBUSY. An `echo` writer (O_TRUNC) cannot: the kernel truncates under the inode lock,
 * which a blocked writer holds shared, so it waits for the transition and then runs its verb.
 */
static bool kernel_has_parallel_dio_writes(void)
{
	struct utsname u;
	unsigned major = 0, minor = 0;

	/* FOPEN_PARALLEL_DIRECT_WRITES: Linux 6.2 (FUSE 7.38) */
	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return false;
	return major > 6 || (major == 6 && minor >= 2);
}

static void test_concurrent_writers(void)
{
	struct writer a, b;

	if (!kernel_has_parallel_dio_writes())
		test_skip("kernel < 6.2: no parallel FUSE direct writes, a second writer waits");
	setup();
	CTL_OK("mode manual");
	mkvm("c");
	a = spawn_writer(P("vms/c/state"), "start", O_TRUNC);
	wait_busy("c", "1");
	b = spawn_writer(P("vms/c/state"), "stop", 0);
	ASSERT_EQ(writer_result(b, 10000, NULL), -EBUSY);
	b = spawn_writer(P("vms/c/state"), "start", 0);
	ASSERT_EQ(writer_result(b, 10000, NULL), -EBUSY);
	ASSERT_EQ(put(P("vms/c/state"), "kill", O_NONBLOCK), -EBUSY);
	writer_still_blocked(a, 100);
	/* the echo-style writer queues behind the blocked one */
	b = spawn_writer(P("vms/c/state"), "start", O_TRUNC);
	writer_still_blocked(b, 200);
	CTL_OK("complete c");
	ASSERT_EQ(writer_result(a, 10000, NULL), 5);
	ASSERT_EQ(writer_result(b, 10000, NULL), 5); /* start on running: no-op success */
	expect_content(P("vms/c/state"), "running\n");

	/* many writers at once: one transition, the others EBUSY or the later no-op */
	CTL_OK("mode auto");
	CTL_OK("delay 200");
	ASSERT_EQ(put(P("vms/c/state"), "stop", O_TRUNC), 4);
	{
		struct writer ws[6];
		int ok = 0, busy = 0;
		for (int i = 0; i < 6; i++)
			ws[i] = spawn_writer(P("vms/c/state"), "start", 0);
		for (int i = 0; i < 6; i++) {
			long long r = writer_result(ws[i], 5000, NULL);
			if (r == 5)
				ok++;
			else if (r == -EBUSY)
				busy++;
			else
				TEST_FAIL("writer %d: unexpected %lld", i, r);
		}
		ASSERT_TRUE(ok >= 1);
		ASSERT_EQ(ok + busy, 6);
	}
	expect_content(P("vms/c/state"), "running\n");
	teardown();
}

static void test_failed_transition_eio(void)
{
	struct writer w;
	char buf[1024];

	setup();
	CTL_OK("mode manual");
	mkvm("f");
	w = spawn_writer(P("vms/f/state"), "start", O_TRUNC);
	wait_busy("f", "1");
	CTL_OK("fail f jailer exited with status 1: no such file 'vmlinux'");
	ASSERT_EQ(writer_result(w, 10000, NULL), -EIO);
	expect_content(P("vms/f/state"), "failed\n");
	ASSERT_TRUE(cat(P("vms/f/error"), buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "no such file 'vmlinux'") != NULL);
	ASSERT_EQ(buf[4], '-'); /* RFC 3339 date first */
	/* auto mode failure as well; start from failed is allowed */
	CTL_OK("mode auto");
	CTL_OK("failnext");
	ASSERT_EQ(put(P("vms/f/state"), "start", O_TRUNC), -EIO);
	expect_content(P("vms/f/state"), "failed\n");
	ASSERT_EQ(put(P("vms/f/state"), "start", O_TRUNC), 5);
	expect_content(P("vms/f/state"), "running\n");
	teardown();
}

static volatile sig_atomic_t got_alarm;
static void on_alarm(int sig)
{
	(void)sig;
	got_alarm = 1;
}

static void test_interrupted_write_eintr(void)
{
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
	struct itimerval it = {.it_value = {0, 200000}};
	long long t0, dt;
	ssize_t r;

	setup();
	CTL_OK("mode manual");
	mkvm("i");
	ASSERT_OK(sigaction(SIGALRM, &sa, NULL));
	t0 = now_ms();
	ASSERT_OK(setitimer(ITIMER_REAL, &it, NULL));
	r = put(P("vms/i/state"), "start", O_TRUNC);
	dt = now_ms() - t0;
	ASSERT_EQ(r, -EINTR);
	ASSERT_TRUE(got_alarm);
	ASSERT_TRUE(dt >= 150 && dt < 3000);
	/* the transition goes on */
	ASSERT_STREQ(ctl("busy i"), "1");
	expect_content(P("vms/i/state"), "starting\n");
	CTL_OK("complete i");
	wait_busy("i", "0");
	expect_content(P("vms/i/state"), "running\n");
	/* and the daemon still serves (the late done callback did not reply twice) */
	ASSERT_EQ(put(P("vms/i/state"), "stop", O_TRUNC | O_NONBLOCK), 4);
	CTL_OK("complete i");
	wait_busy("i", "0");
	expect_content(P("vms/i/state"), "stopped\n");
	/* interrupt racing completion, many times: never a double reply or a lost one */
	CTL_OK("mode auto");
	CTL_OK("delay 20");
	for (int k = 0; k < 40; k++) {
		struct itimerval it2 = {.it_value = {0, 15000 + (k % 10) * 1000}};
		const char *verb = k % 2 ? "stop" : "start";
		got_alarm = 0;
		ASSERT_OK(setitimer(ITIMER_REAL, &it2, NULL));
		r = put(P("vms/i/state"), verb, O_TRUNC);
		if (r != (ssize_t)strlen(verb) && r != -EINTR && r != -EBUSY)
			TEST_FAIL("round %d: %zd", k, r);
		while (!got_alarm)
			usleep(1000);
		wait_busy("i", "0");
	}
	teardown();
}

/* poll(POLLPRI) on state and health: wakes within a bound when the value changes. */
static short poll_pri(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLPRI};
	int r = poll(&pfd, 1, timeout_ms);
	ASSERT_TRUE(r >= 0);
	return r == 0 ? 0 : pfd.revents;
}

static void test_poll_state(void)
{
	char buf[64];
	long long t0;
	int fd;
	ssize_t k;

	setup();
	CTL_OK("mode manual");
	mkvm("p");
	fd = open(P("vms/p/state"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(read(fd, buf, sizeof(buf)) > 0);
	{
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ASSERT_EQ(poll(&pfd, 1, 0), 1);
		ASSERT_TRUE(pfd.revents & POLLIN);
	}
	ASSERT_EQ(poll_pri(fd, 50), 0);
	ASSERT_EQ(put(P("vms/p/state"), "start", O_TRUNC | O_NONBLOCK), 5);
	t0 = now_ms();
	ASSERT_TRUE(poll_pri(fd, 2000) & POLLPRI);
	ASSERT_TRUE(now_ms() - t0 < 1000);
	k = pread(fd, buf, sizeof(buf) - 1, 0);
	ASSERT_TRUE(k > 0);
	buf[k] = '\0';
	ASSERT_STREQ(buf, "starting\n");
	ASSERT_EQ(poll_pri(fd, 50), 0);
	/* a poller that blocks first and is woken by the change */
	{
		struct writer w;
		pid_t pid;
		int p[2];
		ASSERT_OK(pipe2(p, O_CLOEXEC));
		pid = fork();
		ASSERT_TRUE(pid >= 0);
		if (pid == 0) {
			short re = poll_pri(fd, 5000);
			(void)!write(p[1], &re, sizeof(re));
			_exit(0);
		}
		close(p[1]);
		usleep(200000);
		CTL_OK("complete p");
		w = (struct writer){.pid = pid, .fd = p[0]};
		{
			struct pollfd pfd = {.fd = p[0], .events = POLLIN};
			short re = 0;
			ASSERT_EQ(poll(&pfd, 1, 2000), 1);
			ASSERT_EQ(read(p[0], &re, sizeof(re)), (ssize_t)sizeof(re));
			ASSERT_TRUE(re & POLLPRI);
		}
		close(w.fd);
		waitpid(pid, NULL, 0);
	}
	k = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[k > 0 ? k : 0] = '\0';
	ASSERT_STREQ(buf, "running\n");
	close(fd);
	teardown();
}

static void test_poll_health(void)
{
	char buf[512];
	int fd, fd2;
	ssize_t k;

	setup();
	mkvm("h");
	ASSERT_EQ(put(P("vms/h/state"), "start", O_TRUNC), 5);
	fd = open(P("vms/h/health"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(read(fd, buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strncmp(buf, "healthy\n", 8) == 0);
	ASSERT_EQ(poll_pri(fd, 50), 0);
	/* non-pollable attributes never report POLLPRI */
	fd2 = open(P("vms/h/ip"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd2 >= 0);
	CTL_OK("health h unhealthy");
	ASSERT_TRUE(poll_pri(fd, 2000) & POLLPRI);
	ASSERT_EQ(poll_pri(fd2, 50), 0);
	k = pread(fd, buf, sizeof(buf) - 1, 0);
	ASSERT_TRUE(k > 0);
	buf[k] = '\0';
	ASSERT_TRUE(strncmp(buf, "unhealthy\n", 10) == 0);
	ASSERT_TRUE(strstr(buf, "\nvmm: ") && strstr(buf, "\nagent: ") && strstr(buf, "\napp: ") &&
		    strstr(buf, "\nnet: "));
	ASSERT_EQ(poll_pri(fd, 50), 0);
	/* a state change moves health too */
	ASSERT_EQ(put(P("vms/h/state"), "stop", O_TRUNC | O_NONBLOCK), 4);
	ASSERT_TRUE(poll_pri(fd, 2000) & POLLPRI);
	close(fd2);
	close(fd);
	teardown();
}

static void test_rmdir_and_reuse(void)
{
	char buf[64];
	struct stat st;
	int fd;

	setup();
	mkvm("d");
	ASSERT_EQ(put(P("vms/d/state"), "start", O_TRUNC), 5);
	ASSERT_SYSERR(rmdir(P("vms/d")), EBUSY);
	ASSERT_EQ(put(P("vms/d/state"), "stop", O_TRUNC), 4);
	fd = open(P("vms/d/state"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(rmdir(P("vms/d")));
	ASSERT_SYSERR(stat(P("vms/d"), &st), ENOENT);
	ASSERT_SYSERR(stat(P("vms/d/state"), &st), ENOENT);
	/* a file left open on a destroyed VM: ENODEV, like sysfs */
	ASSERT_SYSERR(pread(fd, buf, sizeof(buf), 0), ENODEV);
	/* the same name again is a new VM */
	mkvm("d");
	expect_content(P("vms/d/state"), "created\n");
	ASSERT_SYSERR(pread(fd, buf, sizeof(buf), 0), ENODEV);
	close(fd);
	teardown();
}

/* Names in a directory, sorted, joined by spaces (without . and ..). */
static void list_dir(const char *path, char *out, size_t size)
{
	struct dirent **names = NULL;
	int n = scandir(path, &names, NULL, alphasort);

	out[0] = '\0';
	if (n < 0)
		TEST_FAIL("scandir %s: %m", path);
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0)
			snprintf(out + strlen(out), size - strlen(out), "%s%s", out[0] ? " " : "",
				 names[i]->d_name);
		free(names[i]);
	}
	free(names);
}

static int mkdir_errno(const char *path)
{
	return mkdir(path, 0755) < 0 ? errno : 0;
}

static void test_volumes(void)
{
	char buf[8192];
	struct stat st;
	int fd;

	setup();
	mkvm("v");
	/* The tree: volumes/ in the VM, path and size in a volume, disk-usage read-only. */
	ASSERT_OK(stat(P("vms/v/volumes"), &st));
	ASSERT_EQ(st.st_mode, S_IFDIR | 0755);
	list_dir(P("vms/v/volumes"), buf, sizeof(buf));
	ASSERT_STREQ(buf, "");
	list_dir(P("vms/v"), buf, sizeof(buf));
	ASSERT_TRUE(strstr(buf, "disk-usage") && strstr(buf, " volumes"));
	ASSERT_OK(stat(P("vms/v/disk-usage"), &st));
	ASSERT_EQ(st.st_mode, S_IFREG | 0444);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/data")), 0);
	ASSERT_OK(stat(P("vms/v/volumes/data"), &st));
	ASSERT_EQ(st.st_mode, S_IFDIR | 0755);
	ASSERT_OK(stat(P("vms/v/volumes/data/path"), &st));
	ASSERT_EQ(st.st_mode, S_IFREG | 0644);
	ASSERT_OK(stat(P("vms/v/volumes/data/size"), &st));
	ASSERT_EQ(st.st_mode, S_IFREG | 0644);
	list_dir(P("vms/v/volumes/data"), buf, sizeof(buf));
	ASSERT_STREQ(buf, "path size");
	expect_content(P("vms/v/volumes/data/path"), "");
	expect_content(P("vms/v/volumes/data/size"), "1073741824\n");
	expect_content(P("vms/v/disk-usage"),
		       "writable: unknown size 1073741824\nvolume data: unknown size 1073741824\n");

	/* Names: EINVAL; an existing one: EEXIST; mkdir anywhere else in a VM: EPERM. */
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/Data")), EINVAL);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/a_b")), EINVAL);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/abcdefghijklmnopqrstuvwxyz0123456")), EINVAL);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/data")), EEXIST);
	ASSERT_EQ(mkdir_errno(P("vms/v/other")), EPERM);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/data/sub")), EPERM);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/x/sub")), ENOENT);
	ASSERT_SYSERR(rmdir(P("vms/v/volumes")), EPERM);
	ASSERT_SYSERR(rmdir(P("vms/v/volumes/nope")), ENOENT);
	ASSERT_SYSERR(unlink(P("vms/v/volumes/data/path")), EPERM);
	ASSERT_SYSERR(stat(P("vms/v/volumes/data/nope"), &st), ENOENT);
	ASSERT_SYSERR(open(P("vms/v/disk-usage"), O_WRONLY), EACCES);

	/* path: absolute, normalised, not /, no overlap with another volume's. */
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "/var/lib/data\n", O_TRUNC), 14);
	expect_content(P("vms/v/volumes/data/path"), "/var/lib/data\n");
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "/", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "var", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "/a/../b", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "/a//b", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "/proc/x", O_TRUNC), -EINVAL);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/logs")), 0);
	ASSERT_EQ(put(P("vms/v/volumes/logs/path"), "/var/lib", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/logs/path"), "/var/lib/data/logs", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/logs/path"), "/var/lib/database", O_TRUNC), 17);
	expect_content(P("vms/v/volumes/data/path"), "/var/lib/data\n");

	/* size: K/M/G/T, grows, never shrinks. */
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "2G", O_TRUNC), 2);
	expect_content(P("vms/v/volumes/data/size"), "2147483648\n");
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "1G", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "lots", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "2GB", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "99999999999999T", O_TRUNC), -EINVAL);
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "2147483648", O_TRUNC), 10);
	expect_content(P("vms/v/volumes/data/size"), "2147483648\n");
	list_dir(P("vms/v/volumes"), buf, sizeof(buf));
	ASSERT_STREQ(buf, "data logs");

	/* Not while starting, running or stopping: EBUSY for every change, reads still work. */
	CTL_OK("mode manual");
	ASSERT_EQ(put(P("vms/v/state"), "start", O_TRUNC | O_NONBLOCK), 5);
	wait_busy("v", "1");
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/more")), EBUSY);
	ASSERT_SYSERR(rmdir(P("vms/v/volumes/logs")), EBUSY);
	ASSERT_EQ(put(P("vms/v/volumes/data/path"), "/elsewhere", O_TRUNC), -EBUSY);
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "3G", O_TRUNC), -EBUSY);
	/* a bad value is EINVAL whatever the state */
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "x", O_TRUNC), -EINVAL);
	CTL_OK("complete v");
	wait_busy("v", "0");
	expect_content(P("vms/v/state"), "running\n");
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/more")), EBUSY);
	ASSERT_SYSERR(rmdir(P("vms/v/volumes/logs")), EBUSY);
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "3G", O_TRUNC), -EBUSY);
	expect_content(P("vms/v/volumes/data/path"), "/var/lib/data\n");
	ASSERT_EQ(put(P("vms/v/state"), "stop", O_TRUNC | O_NONBLOCK), 4);
	wait_busy("v", "1");
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/more")), EBUSY);
	CTL_OK("complete v");
	wait_busy("v", "0");
	expect_content(P("vms/v/state"), "stopped\n");
	CTL_OK("mode auto");

	/* Stopped: changes allowed again; a failed create says why. */
	ASSERT_EQ(put(P("vms/v/volumes/data/size"), "3G", O_TRUNC), 2);
	CTL_OK("volumefail 28");
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/more")), ENOSPC);
	ASSERT_SYSERR(stat(P("vms/v/volumes/more"), &st), ENOENT);

	/* rmdir of a volume: gone, its open files answer ENODEV. */
	fd = open(P("vms/v/volumes/logs/path"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(rmdir(P("vms/v/volumes/logs")));
	ASSERT_SYSERR(stat(P("vms/v/volumes/logs"), &st), ENOENT);
	ASSERT_SYSERR(pread(fd, buf, sizeof(buf), 0), ENODEV);
	close(fd);
	list_dir(P("vms/v/volumes"), buf, sizeof(buf));
	ASSERT_STREQ(buf, "data");

	/* The limit of volumes per VM: ENOSPC. */
	for (int i = 0; i < 15; i++)
		ASSERT_EQ(mkdir_errno(P("vms/v/volumes/n%d", i)), 0);
	ASSERT_EQ(mkdir_errno(P("vms/v/volumes/one-too-many")), ENOSPC);

	/* rmdir of the VM takes its volumes: the same name again has none. */
	fd = open(P("vms/v/volumes/data/size"), O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(rmdir(P("vms/v")));
	ASSERT_SYSERR(stat(P("vms/v/volumes/data"), &st), ENOENT);
	ASSERT_SYSERR(pread(fd, buf, sizeof(buf), 0), ENODEV);
	close(fd);
	mkvm("v");
	list_dir(P("vms/v/volumes"), buf, sizeof(buf));
	ASSERT_STREQ(buf, "");
	ASSERT_SYSERR(stat(P("vms/v/volumes/data"), &st), ENOENT);
	teardown();
}

/*
 * A local user holding files open: a child that drops to uid (and gid) U, opens path up to
 * max times, then reads rsize bytes at offset 0 of each open file (1 renders the value and keeps
 * the buffer, as the read did not take it whole; a large rsize is a cat), reports what it got and
 * holds everything until holder_end().
 */
struct holder {
	pid_t pid;
	int hold_w;
	int opened, open_errno, reads, read_errno;
};

static void holder_start(struct holder *h, uid_t uid, const char *path, int max, size_t rsize)
{
	int res[2], hold[2];
	int got[4];

	ASSERT_OK(pipe2(res, O_CLOEXEC));
	ASSERT_OK(pipe2(hold, O_CLOEXEC));
	h->pid = fork();
	ASSERT_TRUE(h->pid >= 0);
	if (h->pid == 0) {
		struct rlimit rl = {.rlim_cur = 8192, .rlim_max = 8192};
		int r[4] = {0, 0, 0, 0}, *fds = calloc((size_t)max, sizeof(int));
		char c, *rbuf = malloc(rsize);

		/* nothing of the test's or of other holders (their hold pipes) stays open */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != res[1] && fd != hold[0])
				close(fd);
		if (!fds || !rbuf || setrlimit(RLIMIT_NOFILE, &rl) < 0 || setgroups(0, NULL) < 0 ||
		    setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
			_exit(3);
		for (; r[0] < max; r[0]++) {
			fds[r[0]] = open(path, O_RDONLY | O_CLOEXEC);
			if (fds[r[0]] < 0) {
				r[1] = errno;
				break;
			}
		}
		for (; r[2] < r[0]; r[2]++) {
			struct stat st;
			if (fstat(fds[r[2]], &st) < 0 || S_ISDIR(st.st_mode))
				break;
			if (pread(fds[r[2]], rbuf, rsize, 0) <= 0) {
				r[3] = errno;
				break;
			}
		}
		if (write(res[1], r, sizeof(r)) != sizeof(r))
			_exit(4);
		(void)!read(hold[0], &c, 1); /* until holder_end() */
		_exit(0);
	}
	close(res[1]);
	close(hold[0]);
	h->hold_w = hold[1];
	if (read(res[0], got, sizeof(got)) != sizeof(got))
		TEST_FAIL("holder as uid %u died", (unsigned)uid);
	close(res[0]);
	h->opened = got[0];
	h->open_errno = got[1];
	h->reads = got[2];
	h->read_errno = got[3];
	printf("# uid %u: %d opens (then %s), %d held buffers (then %s)\n", (unsigned)uid,
	       h->opened, h->open_errno ? strerror(h->open_errno) : "-", h->reads,
	       h->read_errno ? strerror(h->read_errno) : "-");
}

/* Wait until the daemon counts this many open files (close(2) does not wait for the release). */
static void wait_opens(unsigned handles)
{
	double deadline = now_s() + 10;
	unsigned n = 0;

	while (now_s() < deadline) {
		if (sscanf(ctl("opens"), "%u", &n) == 1 && n == handles)
			return;
		usleep(5000);
	}
	TEST_FAIL("the daemon counts %u open files, expected %u", n, handles);
}

/* Close everything the holder has open (it exits), wait for it and for the releases. */
static void holder_end(struct holder *h, unsigned left)
{
	int status;

	close(h->hold_w);
	ASSERT_EQ(waitpid(h->pid, &status, 0), h->pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wait_opens(left);
}

/* How much the daemon may grow while nobody holds its maximum (16 MiB of buffers, 1024 handles,
 * and root's 64 x 64 KiB): ThreadSanitizer's shadow memory multiplies everything. */
#if defined(__SANITIZE_THREAD__)
#define LIMITS_RSS_GROWTH_KB (8 * 48 * 1024)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LIMITS_RSS_GROWTH_KB (8 * 48 * 1024)
#endif
#endif
#ifndef LIMITS_RSS_GROWTH_KB
#define LIMITS_RSS_GROWTH_KB (48 * 1024)
#endif

/* Other users may open the mount (allow_other) but not exhaust it: `nobody` holding its
 * maximum of files and of 64 KiB log buffers (the defaults: 1024 files, 16 MiB) gets EMFILE
 * and ENOMEM, while root's reads and state writes work and are fast and the daemon's memory
 * stays bounded. A full read (cat) keeps no buffer, and everything comes back on close. */
static void test_limits_nobody(void)
{
	struct holder h, h2;
	static char big[70000];
	char buf[256];
	long rss0, rss1, rss2;
	double worst = 0;
	int fds[64];

	setup();
	ASSERT_OK(chmod(F.dir, 0755)); /* the mount's parent: others must reach the mount */
	mkvm("a");
	CTL_OK("logsize a 65536");
	/* warm up the daemon's threads and allocator before the baseline */
	for (int i = 0; i < 200; i++)
		ASSERT_TRUE(cat(P("vms/a/log"), big, sizeof(big)) == 65536);
	rss0 = proc_rss_kb(F.pid);

	holder_start(&h, 65534, P("vms/a/log"), 5000, 1);
	ASSERT_EQ(h.opened, 1024);
	ASSERT_EQ(h.open_errno, EMFILE);
	ASSERT_EQ(h.reads, 256); /* 256 x 64 KiB = 16 MiB */
	ASSERT_EQ(h.read_errno, ENOMEM);

	/* root: reads and state writes work, and fast (wall clock on a shared machine: a loose
	 * bound, the median is printed) */
	for (int i = 0; i < 200; i++) {
		double t = now_s();
		ASSERT_TRUE(cat(P("version"), buf, sizeof(buf)) > 0);
		ASSERT_TRUE(cat(P("vms/a/state"), buf, sizeof(buf)) > 0);
		t = now_s() - t;
		worst = t > worst ? t : worst;
	}
	printf("# root: 200 x (cat version + cat state) while nobody is at its limits, worst %.1f "
	       "ms\n",
	       worst * 1000);
	ASSERT_TRUE(worst < 1.0);
	ASSERT_EQ(put(P("vms/a/state"), "start", O_TRUNC), 5);
	expect_content(P("vms/a/state"), "running\n");
	/* root holds more big buffers than nobody may */
	for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
		fds[i] = open(P("vms/a/log"), O_RDONLY | O_CLOEXEC);
		ASSERT_TRUE(fds[i] >= 0);
		ASSERT_EQ(pread(fds[i], buf, 1, 0), 1);
	}
	for (size_t i = 0; i < ELEMENTSOF(fds); i++)
		close(fds[i]);
	wait_opens(1024);
	ASSERT_STREQ(ctl("opens"), "1024 1024 16777216");
	rss1 = proc_rss_kb(F.pid);
	printf("# daemon RSS %ld KiB before, %ld KiB with nobody at its limits\n", rss0, rss1);
	ASSERT_TRUE(rss0 > 0 && rss1 - rss0 < LIMITS_RSS_GROWTH_KB);
	holder_end(&h, 0);

	/* released: nobody gets its 1024 files again; whole reads (cat) keep no buffer */
	holder_start(&h2, 65534, P("vms/a/log"), 1024, sizeof(big));
	ASSERT_EQ(h2.opened, 1024);
	ASSERT_EQ(h2.reads, 1024);
	holder_end(&h2, 0);
	ASSERT_STREQ(ctl("opens"), "0 0 0");
	rss2 = proc_rss_kb(F.pid);
	printf("# daemon RSS %ld KiB after release\n", rss2);
	teardown();
}

/* The others' share and the buffer totals, with small limits: 64 files, 16 of them only for
 * root, 20 per uid; 64 KiB of buffers per uid, 128 KiB for all uids but 0 together. */
static void test_limits_share(void)
{
	struct holder a, b, c, d, e;
	static char big[20000];
	char buf[64];
	int fds[17], n;

	setenv("MVMFS_TESTD_LIMITS", "64 16 20 65536 131072", 1);
	setup();
	ASSERT_OK(chmod(F.dir, 0755));
	mkvm("a");
	CTL_OK("logsize a 16384");

	holder_start(&a, 65534, P("vms/a/log"), 100, 1);
	ASSERT_EQ(a.opened, 20);
	ASSERT_EQ(a.open_errno, EMFILE);
	ASSERT_EQ(a.reads, 4);
	ASSERT_EQ(a.read_errno, ENOMEM);
	holder_start(&b, 65533, P("vms/a/log"), 100, 1);
	ASSERT_EQ(b.opened, 20);
	ASSERT_EQ(b.reads, 4); /* the others' 128 KiB are now held */
	holder_start(&c, 65532, P("vms/a/log"), 100, 1);
	ASSERT_EQ(c.opened, 8); /* 64 - 16 for the others in all */
	ASSERT_EQ(c.open_errno, ENFILE);
	ASSERT_EQ(c.reads, 0);
	ASSERT_EQ(c.read_errno, ENOMEM);

	/* root: its 16, and its reads, whatever the others hold */
	for (n = 0; n < (int)ELEMENTSOF(fds); n++) {
		fds[n] = open(P("vms/a/log"), O_RDONLY | O_CLOEXEC);
		if (fds[n] < 0)
			break;
		ASSERT_EQ(pread(fds[n], buf, 1, 0), 1);
	}
	ASSERT_EQ(n, 16);
	ASSERT_EQ(errno, ENFILE);
	while (n-- > 0)
		close(fds[n]);
	wait_opens(48);
	ASSERT_STREQ(ctl("opens"), "48 48 131072");
	ASSERT_TRUE(cat(P("vms/a/log"), big, sizeof(big)) == 16384);
	ASSERT_EQ(put(P("vms/a/state"), "start", O_TRUNC), 5);

	/* b's files and buffers come back: d gets files, and buffers up to its own limit */
	holder_end(&b, 28);
	holder_start(&d, 65531, P("vms/a/log"), 100, 1);
	ASSERT_EQ(d.opened, 20);
	ASSERT_EQ(d.open_errno, EMFILE);
	ASSERT_EQ(d.reads, 4);
	holder_end(&d, 28);
	/* directory handles count against the same limits */
	holder_start(&e, 65531, P("vms"), 100, 1);
	ASSERT_EQ(e.opened, 20);
	ASSERT_EQ(e.open_errno, EMFILE);
	holder_end(&e, 28);
	holder_end(&c, 20);
	holder_end(&a, 0);
	ASSERT_STREQ(ctl("opens"), "0 0 0");
	/* what was refused, in the node metrics */
	ASSERT_TRUE(cat(P("metrics"), big, sizeof(big)) > 0);
	ASSERT_TRUE(strstr(big, "\nmvmfs_fs_refused_total{errno=\"EMFILE\"} 4\n"));
	ASSERT_TRUE(strstr(big, "\nmvmfs_fs_refused_total{errno=\"ENFILE\"} 2\n"));
	ASSERT_TRUE(strstr(big, "\nmvmfs_fs_refused_total{errno=\"ENOMEM\"} 4\n"));
	ASSERT_TRUE(strstr(big, "\nmvmfs_fs_open_files{opener=\"others\"} 0\n"));
	teardown();
}

/* vms/ appears only once the daemon is ready. */
static void test_readiness(void)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int seen = 0;

	setenv("MVMFS_TESTD_HOLD_READY", "1", 1);
	setup();
	ASSERT_SYSERR(stat(P("vms"), &st), ENOENT);
	ASSERT_SYSERR(mkdir(P("vms/early"), 0755), ENOENT);
	ASSERT_SYSERR(mkdir(P("vms"), 0755), EPERM);
	d = opendir(F.mnt);
	ASSERT_TRUE(d);
	while ((de = readdir(d)))
		seen += strcmp(de->d_name, "vms") == 0;
	closedir(d);
	ASSERT_EQ(seen, 0);
	ASSERT_OK(stat(P("version"), &st));
	CTL_OK("setready");
	ASSERT_OK(stat(P("vms"), &st));
	mkvm("late");
	expect_content(P("vms/late/state"), "created\n");
	teardown();
}

TEST_MAIN(TEST(test_readiness), TEST(test_tree_and_modes), TEST(test_names),
	  TEST(test_mkdir_limits_and_failures), TEST(test_refused_operations), TEST(test_reads),
	  TEST(test_write_errnos), TEST(test_blocking_write),
	  TEST(test_blocking_write_waits_for_transition), TEST(test_nonblock_returns_on_acceptance),
	  TEST(test_concurrent_writers), TEST(test_failed_transition_eio),
	  TEST(test_interrupted_write_eintr), TEST(test_poll_state), TEST(test_poll_health),
	  TEST(test_rmdir_and_reuse), TEST(test_volumes), TEST(test_limits_nobody),
	  TEST(test_limits_share))
