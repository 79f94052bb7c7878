/* SPDX-License-Identifier: MIT */
/*
 * A QEMU orphaned by a daemon killed mid-start, without booting a guest: the QEMU backend
 * launches a stand-in "QEMU" (a shell script that sleeps, run through the real sandbox, cgroups
 * and environment) from a child process, which is SIGKILLed while the launch waits for QMP.
 * The stand-in survives with no handle pointing at it, as after a daemon's kill -9 between the
 * fork and the record. Then:
 *  - the backend's cleanup with an empty handle (what the restarted daemon runs for a record
 *    that announced the launch) kills it and removes its dir and its cgroups (mvmfs/NODE/NAME);
 *  - rt_kill_strays (re-adoption, before a launch, at destroy) kills it too, and leaves alone a
 *    process whose environment names another state dir's VM of the same name.
 * Needs root (cgroups, mount namespace, uid switch).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "parse.h"
#include "qemu.h"
#include "test.h"

#define NODE "7e57ab1e"
#define NAME "qstray"

static char dir[] = "/tmp/test-qemu-strays.XXXXXX";
static char state[128], fake[128], rootfs[128], kernel[128], console[128];

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ASSERT_OK(fchmod(fd, mode));
	close(fd);
}

/* The pid of a process whose environment holds the entry mark, or 0. */
static pid_t find_marked(const char *mark)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;

	ASSERT_TRUE(d != NULL);
	while (!found && (de = readdir(d))) {
		char path[64], *env = NULL;
		size_t len = 0;
		uint32_t v;

		if (parse_u32(de->d_name, &v) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%u/environ", v);
		if (read_file_bounded(path, 65536, &env, &len) == 0 &&
		    stray_env_matches(env, len, mark))
			found = (pid_t)v;
		free(env);
	}
	closedir(d);
	return found;
}

/* Launch from a child, SIGKILL the child mid-launch: returns a pidfd on the orphaned stand-in. */
static int orphan_qemu(void *priv, const char *mark, pid_t *ret_pid)
{
	pid_t child, pid = 0;
	int status, fd;

	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		struct vmm_launch p = {.name = NAME,
				       .uid = 41998,
				       .gid = 41998,
				       .kernel = kernel,
				       .rootfs = rootfs,
				       .vcpus = 1,
				       .mem_mib = 128,
				       .console_log = console};
		struct vmm_handle h;
		struct err err = {};

		vmm_handle_init(&h);
		/* QMP never answers: this waits until it is killed (or fails at its deadline). */
		(void)vmm_qemu_ops.launch(priv, &p, &h, &err);
		fprintf(stderr, "# launch returned: %s\n", err.msg);
		_exit(1);
	}
	for (int i = 0; i < 1000 && !(pid = find_marked(mark)); i++)
		usleep(10000);
	if (!pid)
		TEST_FAIL("the stand-in QEMU never ran with %s", mark);
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(kill(child, SIGKILL));
	ASSERT_EQ(waitpid(child, &status, 0), child);
	ASSERT_TRUE(WIFSIGNALED(status));
	/* The daemon is gone; its QEMU is not. */
	usleep(100000);
	ASSERT_EQ(poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 0), 0);
	*ret_pid = pid;
	return fd;
}

static void assert_gone(int pidfd, pid_t pid)
{
	if (poll(&(struct pollfd){.fd = pidfd, .events = POLLIN}, 1, 3000) != 1)
		TEST_FAIL("the orphaned QEMU %d is still running", (int)pid);
	close(pidfd);
}

static void assert_no_cgroups(void)
{
	static const char *const mounts[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory",
					     "/sys/fs/cgroup"};
	char path[256];
	struct stat st;

	for (size_t i = 0; i < ELEMENTSOF(mounts); i++) {
		snprintf(path, sizeof(path), "%s/mvmfs/%s/%s", mounts[i], NODE, NAME);
		if (stat(path, &st) == 0)
			TEST_FAIL("cgroup left: %s", path);
	}
}

static void test_orphaned_qemu_killed(void)
{
	struct runtime_config cfg = {.vcpus = 1, .mem_mib = 128, .node_id = NODE};
	char qdir[PATH_MAX + 64], mark[PATH_MAX + 96], other[PATH_MAX + 96];
	struct runtime rt = {.ops = &vmm_qemu_ops};
	struct vmm_handle h;
	struct err err = {};
	struct stat st;
	void *priv = NULL;
	pid_t pid, decoy;
	int pidfd;

	if (geteuid() != 0)
		test_skip("needs root (cgroups, mount namespace, uid switch)");
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	ASSERT_OK(chmod(dir, 0755));
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(fake, sizeof(fake), "%s/fake-qemu", dir);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
	snprintf(console, sizeof(console), "%s/console.log", dir);
	ASSERT_OK(mkdir(state, 0700));
	write_file(fake, "#!/bin/sh\nexec sleep 600\n", 0755);
	write_file(rootfs, "", 0644);
	ASSERT_OK(truncate(rootfs, 1 << 20));
	write_file(kernel, "not a kernel\n", 0644);
	cfg.state_dir = state;
	cfg.qemu = fake;
	if (vmm_qemu_ops.init(&cfg, &priv, &err) < 0)
		TEST_FAIL("init: %s", err.msg);
	rt.cfg = cfg;
	ASSERT_TRUE(realpath(state, qdir) != NULL);
	snprintf(mark, sizeof(mark), "%s%s/%s/%s", QEMU_ENV_MARK, qdir, QEMU_DIR, NAME);
	snprintf(qdir + strlen(qdir), sizeof(qdir) - strlen(qdir), "/%s/%s", QEMU_DIR, NAME);

	/* The restarted daemon's cleanup of a record that announced the launch (no pid). */
	pidfd = orphan_qemu(priv, mark, &pid);
	printf("# orphaned stand-in QEMU %d\n", (int)pid);
	vmm_handle_init(&h);
	vmm_qemu_ops.cleanup(priv, NAME, &h);
	assert_gone(pidfd, pid);
	ASSERT_TRUE(stat(qdir, &st) < 0 && errno == ENOENT);
	assert_no_cgroups();

	/* rt_kill_strays: ours goes, another state dir's VM of the same name stays. */
	pidfd = orphan_qemu(priv, mark, &pid);
	snprintf(other, sizeof(other), "%s/elsewhere/%s/%s", QEMU_ENV_MARK, QEMU_DIR, NAME);
	decoy = fork();
	ASSERT_TRUE(decoy >= 0);
	if (decoy == 0) {
		char *envp[] = {other, NULL};
		execle("/bin/sleep", "sleep", "600", (char *)NULL, envp);
		_exit(127);
	}
	for (int i = 0; i < 500 && find_marked(other) != decoy; i++)
		usleep(10000);
	ASSERT_EQ(find_marked(other), decoy);
	ASSERT_EQ(rt_kill_strays(&rt, NAME, 0, 2000), 1);
	assert_gone(pidfd, pid);
	ASSERT_EQ(waitpid(decoy, NULL, WNOHANG), 0);
	kill(decoy, SIGKILL);
	ASSERT_EQ(waitpid(decoy, NULL, 0), decoy);
	vmm_handle_init(&h);
	vmm_qemu_ops.cleanup(priv, NAME, &h);
	assert_no_cgroups();
	vmm_qemu_ops.free(priv);
	/* The node's parent went with the backend (nothing else in it). */
	ASSERT_TRUE(stat("/sys/fs/cgroup/memory/mvmfs/" NODE, &st) < 0 &&
		    stat("/sys/fs/cgroup/mvmfs/" NODE, &st) < 0);
	{
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		ASSERT_EQ(system(cmd), 0);
	}
}

TEST_MAIN(TEST(test_orphaned_qemu_killed))
