/* SPDX-License-Identifier: MIT */
/*
 * runtime/sandbox.c without a VM: a shell run through the same plan the QEMU backend uses
 * (read-only /usr and library links, devices, one bound file, passed fds) sees only that root,
 * runs as the given uid with no capabilities and no_new_privs, cannot write anywhere, and holds
 * exactly the fds it was given. Needs root (mount namespace, mknod, setuid).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"
#include "sandbox.h"
#include "test.h"

#define UID 41777

static void test_shell_in_sandbox(void)
{
	static const char *const mirrored[] = {"usr", "lib", "lib64", "bin", "sbin"};
	char dir[] = "/tmp/sandbox-test.XXXXXX", root[64], file[64], canary[64], out[8192];
	const char *stage = "";
	struct sandbox sb;
	int p[2], nul, keep, n_keep;
	size_t len = 0;
	ssize_t k;
	pid_t pid;
	int status;

	if (geteuid() != 0)
		test_skip("needs root (mount namespace, mknod, setuid)");
	if (access("/bin/sh", X_OK) < 0)
		test_skip("no /bin/sh");
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(root, sizeof(root), "%s/root", dir);
	ASSERT_OK(mkdir(root, 0755));
	snprintf(file, sizeof(file), "%s/kernel", dir);
	ASSERT_OK(write_file_atomic(file, "kernel-bytes\n", 13, 0644));
	snprintf(canary, sizeof(canary), "%s/canary", dir);
	ASSERT_OK(write_file_atomic(canary, "secret\n", 7, 0644));
	ASSERT_OK(pipe(p));
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	keep = open(file, O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(nul >= 0 && keep >= 0);

	sandbox_init(&sb, root, UID, UID);
	for (size_t i = 0; i < ELEMENTSOF(mirrored); i++)
		sandbox_mirror(&sb, mirrored[i]);
	sandbox_mkdir(&sb, "dev", 0755);
	sandbox_mknod(&sb, "dev/null", 0666, makedev(1, 3), false);
	sandbox_mknod(&sb, "dev/urandom", 0666, makedev(1, 9), false);
	sandbox_mkdir(&sb, "vm", 0755);
	ASSERT_OK(sandbox_bind(&sb, "vm/vmlinux", file));
	sb.stdin_fd = nul;
	sb.out_fd = p[1];
	n_keep = sandbox_pass_fd(&sb, keep);
	ASSERT_EQ(n_keep, 3);
	ASSERT_TRUE(!sb.overflow);

	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		char *const argv[] = {
			"/bin/sh", "-c",
			"echo root: $(ls /); echo uid: $(id -u) $(id -g) groups: $(id -G); "
			"cat /vm/vmlinux; cat <&3; "
			"ls /tmp /proc/1 /root /etc/passwd >/dev/null 2>&1 && echo HOST-SEEN; "
			"touch /x /vm/x /usr/x /dev/x 2>/dev/null && echo WROTE; "
			"echo done",
			NULL};
		char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
		int e = sandbox_exec(&sb, "/bin/sh", argv, envp, &stage);

		dprintf(2, "sandbox_exec: %s: %s\n", stage, strerror(e));
		_exit(122);
	}
	close(p[1]);
	while ((k = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)k;
	out[len] = '\0';
	close(p[0]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	printf("# %s", out);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_TRUE(strstr(out, "root: bin dev lib") != NULL);
	ASSERT_TRUE(strstr(out, " usr vm\n") != NULL);
	ASSERT_TRUE(strstr(out, "uid: 41777 41777 groups: 41777\n") != NULL);
	ASSERT_TRUE(strstr(out, "kernel-bytes\nkernel-bytes\n") != NULL); /* bound + fd 3 */
	ASSERT_TRUE(strstr(out, "HOST-SEEN") == NULL);
	ASSERT_TRUE(strstr(out, "WROTE") == NULL);
	ASSERT_TRUE(strstr(out, "secret") == NULL);
	ASSERT_TRUE(strstr(out, "done\n") != NULL);
	sandbox_done(&sb);
	close(nul);
	close(keep);
	/* The host saw nothing of the child's mounts: its root dir is still empty. */
	ASSERT_OK(rmdir(root));
	rm_rf(dir);
}

/* The credentials the child ends with, read from /proc while it waits. */
static void test_credentials(void)
{
	char dir[] = "/tmp/sandbox-test.XXXXXX", root[64], path[64], *status = NULL;
	const char *stage = "";
	struct sandbox sb;
	int nul, ready[2];
	pid_t pid;
	char c;

	if (geteuid() != 0)
		test_skip("needs root (mount namespace, mknod, setuid)");
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(root, sizeof(root), "%s/root", dir);
	ASSERT_OK(mkdir(root, 0755));
	ASSERT_OK(pipe(ready));
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	sandbox_init(&sb, root, UID, UID);
	sandbox_mirror(&sb, "usr");
	sandbox_mirror(&sb, "lib");
	sandbox_mirror(&sb, "lib64");
	sandbox_mirror(&sb, "bin");
	sb.stdin_fd = nul;
	sb.out_fd = ready[1];
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		char *const argv[] = {"/bin/sh", "-c", "echo; exec sleep 30", NULL};
		char *const envp[] = {NULL};

		sandbox_exec(&sb, "/bin/sh", argv, envp, &stage);
		_exit(122);
	}
	close(ready[1]);
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	usleep(100000);
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	ASSERT_OK(read_file_bounded(path, 65536, &status, NULL));
	printf("# %s", status);
	ASSERT_TRUE(strstr(status, "Max open files            1024                 1024") != NULL);
	ASSERT_TRUE(strstr(status, "Max core file size        0                    0") != NULL);
	free(status);
	status = NULL;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ASSERT_OK(read_file_bounded(path, 65536, &status, NULL));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ASSERT_TRUE(strstr(status, "\nUid:\t41777\t41777\t41777\t41777\n") != NULL);
	ASSERT_TRUE(strstr(status, "\nGid:\t41777\t41777\t41777\t41777\n") != NULL);
	ASSERT_TRUE(strstr(status, "\nCapEff:\t0000000000000000\n") != NULL);
	ASSERT_TRUE(strstr(status, "\nCapPrm:\t0000000000000000\n") != NULL);
	ASSERT_TRUE(strstr(status, "\nCapBnd:\t0000000000000000\n") != NULL);
	ASSERT_TRUE(strstr(status, "\nNoNewPrivs:\t1\n") != NULL);
	free(status);
	close(ready[0]);
	close(nul);
	sandbox_done(&sb);
	ASSERT_OK(rmdir(root));
	rm_rf(dir);
}

TEST_MAIN(TEST(test_shell_in_sandbox), TEST(test_credentials))
