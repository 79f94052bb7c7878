/* SPDX-License-Identifier: MIT */
/* Jailer argv (docs/firecracker.md D.1: separate "--flag value" words, no --daemonize, nothing
 * repeated after "--"), and the jail directory name. */
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

static void test_argv(void)
{
	static const char cg[4][128] = {"--cgroup-version", "1", "--cgroup",
					"memory.limit_in_bytes=2147483648"};
	struct jailer_params p = {
		.jailer = "/usr/bin/jailer",
		.exec_file = "/usr/bin/firecracker",
		.chroot_base = "/srv/jailer",
		.id = "web-1",
		.uid = 200007,
		.gid = 200007,
		.netns = "/run/netns/mvmfs-web-1",
		.cgroup_args = cg,
		.n_cgroup_args = 4,
		.api_sock = "/run/firecracker.socket",
		.stdout_fd = -1,
	};
	static const char *const want[] = {
		"/usr/bin/jailer",
		"--id",
		"web-1",
		"--exec-file",
		"/usr/bin/firecracker",
		"--uid",
		"200007",
		"--gid",
		"200007",
		"--chroot-base-dir",
		"/srv/jailer",
		"--netns",
		"/run/netns/mvmfs-web-1",
		"--cgroup-version",
		"1",
		"--cgroup",
		"memory.limit_in_bytes=2147483648",
		"--",
		"--api-sock",
		"/run/firecracker.socket",
	};
	const char *argv[64];
	char uid[16], gid[16];
	int n = jailer_argv(&p, argv, 64, uid, gid);

	ASSERT_EQ(n, (int)ELEMENTSOF(want));
	for (int i = 0; i < n; i++)
		ASSERT_STREQ(argv[i], want[i]);
	ASSERT_TRUE(argv[n] == NULL);
	/* Not daemonized (the VMM stays our child); no "--flag=value" words. */
	for (int i = 0; i < n; i++) {
		ASSERT_TRUE(strcmp(argv[i], "--daemonize") != 0);
		ASSERT_FALSE(strncmp(argv[i], "--", 2) == 0 && strchr(argv[i], '='));
	}
	p.netns = NULL;
	ASSERT_EQ(jailer_argv(&p, argv, 64, uid, gid), n - 2);
	ASSERT_ERRNO(jailer_argv(&p, argv, 5, uid, gid), E2BIG);
	p.uid = 0;
	ASSERT_ERRNO(jailer_spawn(&p, &(pid_t){0}), EPERM);
}

static void test_exec_dir(void)
{
	char buf[256];

	/* The jail is named after the resolved exec file (a symlink's target). */
	ASSERT_OK(jailer_exec_dir("/srv/jailer", "/proc/self/exe", buf, sizeof(buf)));
	ASSERT_TRUE(strncmp(buf, "/srv/jailer/test-runtime-jailer", 31) == 0);
	ASSERT_ERRNO(jailer_exec_dir("/srv/jailer", "/nonexistent/fc", buf, sizeof(buf)), ENOENT);
	ASSERT_ERRNO(jailer_exec_dir("/srv/jailer", "/proc/self/exe", buf, 8), ENAMETOOLONG);
}

TEST_MAIN(TEST(test_argv), TEST(test_exec_dir))
