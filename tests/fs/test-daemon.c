/* SPDX-License-Identifier: MIT */
/*
 * The mvmfs daemon binary (daemon/): command line and --config, readiness, SIGTERM/SIGINT exit 0
 * with the mount gone and VMs kept, stale mount cleanup after a crash, refusing a live mount, and
 * the tree over the REAL runtime with the Firecracker backend pointed at tests/fakes (no VM is
 * started: the start path fails fast on an unreachable registry, which checks EIO + error), and
 * the open limits for other users set by options (tried as `nobody`).
 * Each case runs in a private mount namespace.
 */
#include <arpa/inet.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static char T[128], MNT[160];

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static const char *daemon_path(void)
{
	const char *p = getenv("MVMFS_DAEMON");
	if (!p)
		test_skip("MVMFS_DAEMON not set (run through meson test)");
	return p;
}

static const char *srcdir(void)
{
	const char *p = getenv("MVMFS_SRCDIR");
	if (!p)
		test_skip("MVMFS_SRCDIR not set (run through meson test)");
	return p;
}

static void setup(void)
{
	if (geteuid() != 0)
		test_skip("needs root (FUSE mount)");
	if (access("/dev/fuse", R_OK | W_OK) < 0)
		test_skip("no usable /dev/fuse");
	(void)daemon_path();
	if (unshare(CLONE_NEWNS) < 0)
		test_skip("cannot unshare the mount namespace");
	ASSERT_OK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	snprintf(T, sizeof(T), "/tmp/mvmfs-daemon-test-XXXXXX");
	ASSERT_TRUE(mkdtemp(T));
	snprintf(MNT, sizeof(MNT), "%s/mnt", T);
	ASSERT_OK(mkdir(MNT, 0755));
}

static void teardown(void)
{
	char cmd[300];

	(void)umount2(MNT, MNT_DETACH);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", T);
	ASSERT_EQ(system(cmd), 0);
}

/* Run the daemon with the fakes and a temp state dir plus extra args (NULL-terminated);
 * stderr goes to T/log.N. Returns its pid. */
static pid_t spawn(int n, const char *extra, ...)
{
	char fc[PATH_MAX], jl[PATH_MAX], st[200], jail[200], log[200];
	const char *argv[64];
	int argc = 0;
	va_list ap;
	pid_t pid;

	snprintf(fc, sizeof(fc), "%s/tests/fakes/firecracker", srcdir());
	snprintf(jl, sizeof(jl), "%s/tests/fakes/jailer", srcdir());
	snprintf(st, sizeof(st), "%s/state", T);
	snprintf(jail, sizeof(jail), "%s/jail", T);
	snprintf(log, sizeof(log), "%s/log.%d", T, n);
	argv[argc++] = daemon_path();
	argv[argc++] = "--state-dir";
	argv[argc++] = st;
	argv[argc++] = "--chroot-base";
	argv[argc++] = jail;
	argv[argc++] = "--firecracker";
	argv[argc++] = fc;
	argv[argc++] = "--jailer";
	argv[argc++] = jl;
	argv[argc++] = "--no-network";
	va_start(ap, extra);
	for (const char *a = extra; a && argc < 62; a = va_arg(ap, const char *))
		argv[argc++] = a;
	va_end(ap);
	argv[argc++] = MNT;
	argv[argc] = NULL;
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0)
			dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static bool log_contains(int n, const char *s)
{
	char path[200], buf[16384] = "";
	FILE *f;
	size_t k;

	snprintf(path, sizeof(path), "%s/log.%d", T, n);
	f = fopen(path, "re");
	if (!f)
		return false;
	k = fread(buf, 1, sizeof(buf) - 1, f);
	buf[k] = '\0';
	fclose(f);
	return strstr(buf, s) != NULL;
}

/* Wait for vms/ (readiness); fails if the daemon exits first. */
static void wait_ready(pid_t pid)
{
	char p[200];
	long long deadline = now_ms() + 15000;
	int status;

	snprintf(p, sizeof(p), "%s/vms", MNT);
	while (access(p, F_OK) < 0) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			TEST_FAIL("daemon exited before ready (status %d)", status);
		if (now_ms() > deadline)
			TEST_FAIL("vms/ did not appear");
		usleep(10000);
	}
}

/* Signal the daemon and return its exit status (or -signal). */
static int stop(pid_t pid, int sig)
{
	long long deadline = now_ms() + 10000;
	int status;

	kill(pid, sig);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			TEST_FAIL("daemon did not exit on signal %d", sig);
		}
		usleep(10000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static int run_wait(pid_t pid)
{
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static bool is_mounted(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[1024];
	bool found = false;

	ASSERT_TRUE(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, MNT) && strstr(line, "fuse.mvmfs"))
			found = true;
	fclose(f);
	return found;
}

static ssize_t cat(const char *rel, char *buf, size_t size)
{
	char p[400];
	ssize_t n = 0, k;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", MNT, rel);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while ((k = read(fd, buf + n, size - 1 - (size_t)n)) > 0)
		n += k;
	close(fd);
	buf[n] = '\0';
	return k < 0 ? -1 : n;
}

static ssize_t put(const char *rel, const char *s)
{
	char p[400];
	ssize_t r;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", MNT, rel);
	fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = write(fd, s, strlen(s));
	if (r < 0)
		r = -errno;
	close(fd);
	return r;
}

static int rmd(const char *rel)
{
	char p[300];

	snprintf(p, sizeof(p), "%s/%s", MNT, rel);
	return rmdir(p) < 0 ? -errno : 0;
}

static int mkd(const char *rel)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", MNT, rel);
	return mkdir(p, 0755) < 0 ? -errno : 0;
}

/* Run the daemon with args, capture stdout+stderr, return its exit code. */
static int run_cli(char *out, size_t size, const char *a1, const char *a2, const char *a3,
		   const char *a4)
{
	const char *argv[] = {daemon_path(), a1, a2, a3, a4, NULL};
	int p[2], status;
	size_t n = 0;
	ssize_t k;
	pid_t pid;

	ASSERT_OK(pipe2(p, O_CLOEXEC));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	while ((k = read(p[0], out + n, size - 1 - n)) > 0)
		n += (size_t)k;
	out[n] = '\0';
	close(p[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_command_line(void)
{
	char out[8192], cfg[] = "/tmp/mvmfs-cfg-XXXXXX";
	int fd;

	ASSERT_EQ(run_cli(out, sizeof(out), "--help", NULL, NULL, NULL), 0);
	ASSERT_TRUE(strstr(out, "--state-dir DIR") && strstr(out, "--config FILE") &&
		    strstr(out, "--insecure-registry") && strstr(out, "--database-url"));
	ASSERT_EQ(run_cli(out, sizeof(out), "--version", NULL, NULL, NULL), 0);
	ASSERT_TRUE(strncmp(out, "mvmfs ", 6) == 0);
	ASSERT_EQ(run_cli(out, sizeof(out), "--bogus", "/x", NULL, NULL), 2);
	ASSERT_TRUE(strstr(out, "unknown option") != NULL);
	ASSERT_EQ(run_cli(out, sizeof(out), "--vmm", "xen", "/x", NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "--stop-timeout", "5x", "/x", NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "--data-disk-size", "lots", "/x", NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "--uid-base", "-1", "/x", NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "--log-level", "loud", "/x", NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "--stop-timeout", NULL, NULL, NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "/a", "/b", NULL, NULL), 2);
	ASSERT_EQ(run_cli(out, sizeof(out), "--config", "/nonexistent/mvmfs.conf", "/x", NULL), 2);
	fd = mkstemp(cfg);
	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(dprintf(fd, "# comment\nvmm = qemu\n\nstop-timeout 500ms\nno-such-key = 1\n") >
		    0);
	close(fd);
	ASSERT_EQ(run_cli(out, sizeof(out), "--config", cfg, "/x", NULL), 2);
	ASSERT_TRUE(strstr(out, ":5: unknown key 'no-such-key'") != NULL);
	unlink(cfg);
}

static void test_config_file_and_precedence(void)
{
	char cfg[300], buf[256];
	FILE *f;
	pid_t pid;

	setup();
	snprintf(cfg, sizeof(cfg), "%s/mvmfs.conf", T);
	f = fopen(cfg, "we");
	ASSERT_TRUE(f);
	fprintf(f, "# test config\nmax-vms = 1\nlog-level = debug\nstop-timeout = 2s\n"
		   "data-disk-size = 64M\nuid-base = 300000\nuid-count = 100\n");
	fclose(f);
	pid = spawn(1, "--config", cfg, (const char *)NULL);
	wait_ready(pid);
	ASSERT_TRUE(cat("version", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strncmp(buf, "mvmfs ", 6) == 0 && strstr(buf, "firecracker"));
	ASSERT_OK(mkd("vms/a"));
	ASSERT_EQ(mkd("vms/b"), -ENOSPC);
	ASSERT_TRUE(cat("vms/a/config", buf, sizeof(buf)) > 0);
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	ASSERT_TRUE(log_contains(1, "mounted at")); /* log-level from the file */
	/* the command line wins over the file */
	pid = spawn(2, "--config", cfg, "--max-vms", "2", (const char *)NULL);
	wait_ready(pid);
	ASSERT_OK(mkd("vms/b"));
	ASSERT_EQ(mkd("vms/c"), -ENOSPC);
	ASSERT_EQ(stop(pid, SIGINT), 0);
	teardown();
}

static void test_signals_unmount_and_keep_vms(void)
{
	char ip1[128], ip2[128], buf[256];
	struct in6_addr a;
	pid_t pid;

	setup();
	pid = spawn(1, NULL);
	wait_ready(pid);
	ASSERT_TRUE(is_mounted());
	ASSERT_OK(mkd("vms/keep"));
	ASSERT_TRUE(cat("vms/keep/ip", ip1, sizeof(ip1)) > 1);
	ip1[strcspn(ip1, "\n")] = '\0';
	ASSERT_EQ(inet_pton(AF_INET6, ip1, &a), 1);
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	ASSERT_FALSE(is_mounted());
	/* the next daemon has the VM again, same address */
	pid = spawn(2, NULL);
	wait_ready(pid);
	ASSERT_TRUE(cat("vms/keep/state", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "created\n");
	ASSERT_TRUE(cat("vms/keep/ip", ip2, sizeof(ip2)) > 1);
	ip2[strcspn(ip2, "\n")] = '\0';
	ASSERT_STREQ(ip1, ip2);
	ASSERT_EQ(stop(pid, SIGINT), 0);
	ASSERT_FALSE(is_mounted());
	teardown();
}

static void test_stale_mount_after_crash(void)
{
	struct stat st;
	pid_t pid, second;
	char p[200];

	setup();
	pid = spawn(1, NULL);
	wait_ready(pid);
	ASSERT_OK(mkd("vms/x"));
	/* a second daemon on the same state dir and live mount refuses */
	second = spawn(2, NULL);
	ASSERT_NE(run_wait(second), 0);
	/* (refused by the state dir lock, before it looks at the mount) */
	ASSERT_TRUE(log_contains(2, "is in use by another mvmfs daemon"));
	/* crash: the mount stays, dead */
	ASSERT_EQ(stop(pid, SIGKILL), -SIGKILL);
	snprintf(p, sizeof(p), "%s/vms", MNT);
	ASSERT_SYSERR(stat(p, &st), ENOTCONN);
	pid = spawn(3, NULL);
	wait_ready(pid);
	ASSERT_TRUE(log_contains(3, "stale mount"));
	snprintf(p, sizeof(p), "%s/vms/x", MNT);
	ASSERT_OK(stat(p, &st));
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	ASSERT_FALSE(is_mounted());
	teardown();
}

static void test_real_runtime_tree(void)
{
	char buf[1024];
	struct stat st;
	char p[300];
	pid_t pid;

	setup();
	pid = spawn(1, "--insecure-registry", "127.0.0.1:1", (const char *)NULL);
	wait_ready(pid);
	ASSERT_EQ(mkd("vms/-bad"), -EINVAL);
	ASSERT_EQ(mkd("version2"), -EPERM);
	ASSERT_OK(mkd("vms/r1"));
	ASSERT_EQ(mkd("vms/r1"), -EEXIST);
	snprintf(p, sizeof(p), "%s/vms/r1/state", MNT);
	ASSERT_OK(stat(p, &st));
	ASSERT_EQ(st.st_mode, S_IFREG | 0644);
	ASSERT_TRUE(cat("vms/r1/health", buf, sizeof(buf)) > 0);
	ASSERT_TRUE(strstr(buf, "\nvmm: ") && strstr(buf, "\nagent: ") && strstr(buf, "\napp: ") &&
		    strstr(buf, "\nnet: "));
	ASSERT_EQ(put("vms/r1/state", "launch"), -EINVAL);
	ASSERT_EQ(put("vms/r1/state", "stop\n"), 5); /* no-op on created */
	ASSERT_EQ(put("vms/r1/image", "not a ref"), -EINVAL);
	ASSERT_EQ(put("vms/r1/image", "127.0.0.1:1/app:1\n"), 18);
	ASSERT_TRUE(cat("vms/r1/image", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "127.0.0.1:1/app:1\n");
	/* the pull fails at once (nothing listens): EIO, failed, and a reason in error */
	ASSERT_EQ(put("vms/r1/state", "start"), -EIO);
	ASSERT_TRUE(cat("vms/r1/state", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "failed\n");
	ASSERT_TRUE(cat("vms/r1/error", buf, sizeof(buf)) > 20);
	ASSERT_EQ(buf[4], '-');
	snprintf(p, sizeof(p), "%s/vms/r1", MNT);
	ASSERT_OK(rmdir(p));
	ASSERT_SYSERR(stat(p, &st), ENOENT);
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	teardown();
}

/* Volumes through the real runtime: mkdir makes the disk in the state dir (sparse ext4 of
 * --volume-size), size grows it, path is checked, the daemon restart keeps them, rmdir of the
 * VM removes them, and a leftover volume dir of no VM is reaped at start. */
static void test_real_runtime_volumes(void)
{
	char buf[1024], p[300];
	struct stat st;
	pid_t pid;

	setup();
	pid = spawn(1, "--volume-size", "32M", (const char *)NULL);
	wait_ready(pid);
	ASSERT_OK(mkd("vms/v1"));
	ASSERT_OK(mkd("vms/v1/volumes/data"));
	ASSERT_EQ(mkd("vms/v1/volumes/data"), -EEXIST);
	ASSERT_EQ(mkd("vms/v1/volumes/Bad"), -EINVAL);
	snprintf(p, sizeof(p), "%s/state/volumes/v1/data/disk.ext4", T);
	ASSERT_OK(stat(p, &st));
	ASSERT_TRUE(st.st_size == 32 << 20 && st.st_blocks * 512 < (8 << 20));
	ASSERT_TRUE(cat("vms/v1/volumes/data/size", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "33554432\n");
	ASSERT_EQ(put("vms/v1/volumes/data/size", "16M"), -EINVAL);
	ASSERT_EQ(put("vms/v1/volumes/data/size", "64M\n"), 4);
	ASSERT_OK(stat(p, &st));
	ASSERT_TRUE(st.st_size == 64 << 20);
	ASSERT_EQ(put("vms/v1/volumes/data/path", "/"), -EINVAL);
	ASSERT_EQ(put("vms/v1/volumes/data/path", "/srv/data"), 9);
	ASSERT_OK(mkd("vms/v1/volumes/logs"));
	ASSERT_EQ(put("vms/v1/volumes/logs/path", "/srv"), -EINVAL);
	ASSERT_TRUE(cat("vms/v1/disk-usage", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "writable: unknown size 1073741824\nvolume data: unknown size 67108864\n"
			  "volume logs: unknown size 33554432\n");
	ASSERT_EQ(rmd("vms/v1/volumes/logs"), 0);
	/* A daemon restart keeps them. */
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	pid = spawn(2, (const char *)NULL);
	wait_ready(pid);
	ASSERT_TRUE(cat("vms/v1/volumes/data/path", buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "/srv/data\n");
	ASSERT_EQ(cat("vms/v1/volumes/logs/path", buf, sizeof(buf)), -ENOENT);
	/* rmdir of the VM takes them. */
	ASSERT_EQ(rmd("vms/v1"), 0);
	snprintf(p, sizeof(p), "%s/state/volumes/v1", T);
	ASSERT_SYSERR(stat(p, &st), ENOENT);
	/* Volumes of a VM that no longer exists are reaped at the next start. */
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	snprintf(p, sizeof(p), "%s/state/volumes/ghost", T);
	ASSERT_OK(mkdir(p, 0700) == 0 || errno == EEXIST ? 0 : -1);
	pid = spawn(3, (const char *)NULL);
	wait_ready(pid);
	snprintf(p, sizeof(p), "%s/state/volumes/ghost", T);
	ASSERT_SYSERR(stat(p, &st), ENOENT);
	ASSERT_EQ(stop(pid, SIGTERM), 0);
	teardown();
}

/* The open limits come from the options: `nobody` gets --max-handles-per-uid files of metrics
 * (EMFILE after), and --max-buffer-per-uid of held buffers (ENOMEM after: each metrics render is
 * 2-8 KB), while root reads on; an inconsistent pair of limits is refused at start. */
static void test_open_limit_options(void)
{
	char buf[8192], p[300];
	int res[2], got[4] = {0, 0, 0, 0};
	ssize_t len;
	pid_t pid, child;

	setup();
	ASSERT_OK(chmod(T, 0755)); /* nobody must reach the mount */
	pid = spawn(1, "--max-handles-per-uid", "8", "--max-buffer-per-uid", "16K",
		    (const char *)NULL);
	wait_ready(pid);
	ASSERT_OK(mkd("vms/l1"));
	len = cat("metrics", buf, sizeof(buf));
	ASSERT_TRUE(len > 2048 && len < 8192);
	snprintf(p, sizeof(p), "%s/metrics", MNT);
	ASSERT_OK(pipe2(res, O_CLOEXEC));
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		int r[4] = {0, 0, 0, 0}, fds[16];
		char c;

		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(3);
		for (; r[0] < 16; r[0]++) {
			fds[r[0]] = open(p, O_RDONLY | O_CLOEXEC);
			if (fds[r[0]] < 0) {
				r[1] = errno;
				break;
			}
		}
		for (; r[2] < r[0]; r[2]++)
			if (pread(fds[r[2]], &c, 1, 0) != 1) {
				r[3] = errno;
				break;
			}
		_exit(write(res[1], r, sizeof(r)) == sizeof(r) ? 0 : 4);
	}
	close(res[1]);
	ASSERT_EQ(run_wait(child), 0);
	ASSERT_EQ(read(res[0], got, sizeof(got)), sizeof(got));
	close(res[0]);
	ASSERT_EQ(got[0], 8);
	ASSERT_EQ(got[1], EMFILE);
	printf("# nobody: %d opens, %d held buffers of ~%zd bytes (then %s)\n", got[0], got[2], len,
	       strerror(got[3]));
	/* as many as fit in 16 KiB (metrics may grow by a few digits between reads) */
	ASSERT_TRUE(got[2] >= 16384 / (len + 64) && got[2] <= 16384 / len);
	ASSERT_EQ(got[3], ENOMEM);
	ASSERT_TRUE(cat("metrics", buf, sizeof(buf)) > 1024);
	ASSERT_EQ(put("vms/l1/state", "stop\n"), 5);
	ASSERT_EQ(stop(pid, SIGTERM), 0);

	pid = spawn(2, "--max-handles", "100", "--root-handles", "100", (const char *)NULL);
	ASSERT_EQ(run_wait(pid), 1);
	ASSERT_TRUE(log_contains(2, "root-handles (100) must be less than max-handles (100)"));
	teardown();
}

/* Type=notify: READY=1 reaches $NOTIFY_SOCKET once vms/ is there, STOPPING=1 on SIGTERM. */
static void test_sd_notify(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pollfd pfd;
	char buf[256], vms[200];
	ssize_t n;
	pid_t pid;
	int fd;

	setup();
	ASSERT_TRUE(strlen(T) + sizeof("/notify") <= sizeof(sa.sun_path));
	memcpy(sa.sun_path, T, strlen(T));
	memcpy(sa.sun_path + strlen(T), "/notify", sizeof("/notify"));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	pid = spawn(1, NULL);
	unsetenv("NOTIFY_SOCKET");
	pfd = (struct pollfd){.fd = fd, .events = POLLIN};
	ASSERT_EQ(poll(&pfd, 1, 15000), 1);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ASSERT_TRUE(n > 0);
	buf[n] = '\0';
	ASSERT_TRUE(strstr(buf, "READY=1") != NULL);
	snprintf(vms, sizeof(vms), "%s/vms", MNT);
	ASSERT_OK(access(vms, F_OK)); /* ready means vms/ is there */
	kill(pid, SIGTERM);
	ASSERT_EQ(poll(&pfd, 1, 10000), 1);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ASSERT_TRUE(n > 0);
	buf[n] = '\0';
	ASSERT_TRUE(strstr(buf, "STOPPING=1") != NULL);
	ASSERT_EQ(run_wait(pid), 0);
	close(fd);
	teardown();
}

TEST_MAIN(TEST(test_command_line), TEST(test_sd_notify), TEST(test_config_file_and_precedence),
	  TEST(test_signals_unmount_and_keep_vms), TEST(test_stale_mount_after_crash),
	  TEST(test_real_runtime_tree), TEST(test_real_runtime_volumes),
	  TEST(test_open_limit_options))
