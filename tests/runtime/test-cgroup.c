/* SPDX-License-Identifier: MIT */
/* cgroup detection from sample /proc/mounts texts and the jailer flags for each version. */
#include <string.h>

#include "internal.h"
#include "test.h"

/* Test machines often have the controllers on v1, cgroup2 holds only hugetlb. */
static const char *mounts_v1 =
	"sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
	"tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
	"cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
	"cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
	"cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
	"cgroup /sys/fs/cgroup/cpuset cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0\n";

static const char *mounts_v2 =
	"proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
	"cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n";

static void test_v1(void)
{
	struct cgroup_info ci;
	char args[16][128], dirs[4][VMM_DIR_MAX];
	size_t n;

	ASSERT_OK(cgroup_detect_from(mounts_v1, "hugetlb\n", &ci));
	ASSERT_EQ(ci.version, 1);
	ASSERT_STREQ(ci.cpu_mount, "/sys/fs/cgroup/cpu,cpuacct");
	ASSERT_STREQ(ci.memory_mount, "/sys/fs/cgroup/memory");
	ASSERT_STREQ(ci.v2_mount, "/sys/fs/cgroup/unified");
	ci.memsw = false;
	ASSERT_OK(cgroup_jailer_args(&ci, 2, 2048, "mvmfs", args, 16, &n));
	ASSERT_EQ(n, 12);
	ASSERT_STREQ(args[0], "--cgroup-version");
	ASSERT_STREQ(args[1], "1");
	ASSERT_STREQ(args[3], "mvmfs");
	ASSERT_STREQ(args[5], "cpu.cfs_period_us=100000");
	ASSERT_STREQ(args[7], "cpu.cfs_quota_us=200000");
	ASSERT_STREQ(args[9], "memory.limit_in_bytes=2147483648");
	ASSERT_STREQ(args[11], "memory.swappiness=0");
	ci.memsw = true;
	ASSERT_OK(cgroup_jailer_args(&ci, 2, 2048, "mvmfs", args, 16, &n));
	ASSERT_STREQ(args[11], "memory.memsw.limit_in_bytes=2147483648");
	ASSERT_EQ(cgroup_dirs(&ci, "mvmfs", "vm1", dirs, 4), 2);
	ASSERT_STREQ(dirs[0], "/sys/fs/cgroup/cpu,cpuacct/mvmfs/vm1");
	ASSERT_STREQ(dirs[1], "/sys/fs/cgroup/memory/mvmfs/vm1");
	ASSERT_ERRNO(cgroup_jailer_args(&ci, 2, 2048, "mvmfs", args, 4, &n), E2BIG);
}

static void test_v2(void)
{
	struct cgroup_info ci;
	char args[16][128], dirs[4][VMM_DIR_MAX];
	size_t n;

	ASSERT_OK(cgroup_detect_from(mounts_v2, "cpuset cpu io memory hugetlb pids\n", &ci));
	ASSERT_EQ(ci.version, 2);
	ASSERT_STREQ(ci.v2_mount, "/sys/fs/cgroup");
	ASSERT_OK(cgroup_jailer_args(&ci, 2, 2048, "mvmfs", args, 16, &n));
	ASSERT_EQ(n, 10);
	ASSERT_STREQ(args[1], "2");
	ASSERT_STREQ(args[5], "cpu.max=200000 100000");
	ASSERT_STREQ(args[7], "memory.max=2147483648");
	ASSERT_STREQ(args[9], "memory.swap.max=0");
	ASSERT_EQ(cgroup_dirs(&ci, "mvmfs", "vm1", dirs, 4), 1);
	ASSERT_STREQ(dirs[0], "/sys/fs/cgroup/mvmfs/vm1");
	/* v2 without the controllers and no v1 hierarchies: nothing usable. */
	ASSERT_ERRNO(cgroup_detect_from(mounts_v2, "hugetlb pids", &ci), ENOENT);
	ASSERT_ERRNO(cgroup_detect_from(mounts_v2, NULL, &ci), ENOENT);
}

static void test_odd_input(void)
{
	struct cgroup_info ci;

	ASSERT_ERRNO(cgroup_detect_from("", NULL, &ci), ENOENT);
	ASSERT_ERRNO(cgroup_detect_from("garbage\n\n  \n", NULL, &ci), ENOENT);
	/* Escaped space in a mount point; "cpuset" is not "cpu". */
	ASSERT_OK(cgroup_detect_from("cgroup /a\\040b cgroup rw,cpu 0 0\n"
				     "cgroup /c cgroup rw,cpuset 0 0\n"
				     "cgroup /m cgroup rw,memory 0 0",
				     NULL, &ci));
	ASSERT_STREQ(ci.cpu_mount, "/a b");
	ASSERT_EQ(ci.version, 1);
	ASSERT_ERRNO(cgroup_detect_from("cgroup /c cgroup rw,cpuset 0 0\n"
					"cgroup /m cgroup rw,memory 0 0\n",
					NULL, &ci),
		     ENOENT);
}

static void test_host(void)
{
	struct cgroup_info ci;
	struct err err = {};

	/* Whatever this host runs must be detectable (both kinds are supported). */
	if (cgroup_detect(0, &ci, &err) < 0)
		test_skip("no cgroup hierarchy with cpu and memory here");
	ASSERT_TRUE(ci.version == 1 || ci.version == 2);
}

/* Each node's VMs under their own parent: the same name on two nodes is two cgroups. */
static void test_node_parent(void)
{
	struct cgroup_info ci;
	char pa[CGROUP_PARENT_MAX], pb[CGROUP_PARENT_MAX], args[16][128], da[4][VMM_DIR_MAX],
		db[4][VMM_DIR_MAX];
	size_t n;

	ASSERT_OK(cgroup_parent("0a1b2c3d", pa));
	ASSERT_STREQ(pa, "mvmfs/0a1b2c3d");
	ASSERT_OK(cgroup_parent("ffffffff", pb));
	ASSERT_OK(cgroup_parent(NULL, pb));
	ASSERT_STREQ(pb, "mvmfs");
	ASSERT_OK(cgroup_parent("", pb));
	ASSERT_STREQ(pb, "mvmfs");
	ASSERT_ERRNO(cgroup_parent("0a1b2c3d4", pb), EINVAL);
	ASSERT_ERRNO(cgroup_parent("../x", pb), EINVAL);
	ASSERT_ERRNO(cgroup_parent("ABCD", pb), EINVAL);
	ASSERT_OK(cgroup_parent("7", pb));
	ASSERT_STREQ(pb, "mvmfs/7");

	ASSERT_OK(cgroup_detect_from(mounts_v1, "hugetlb\n", &ci));
	ASSERT_OK(cgroup_jailer_args(&ci, 1, 256, pa, args, 16, &n));
	ASSERT_STREQ(args[2], "--parent-cgroup");
	ASSERT_STREQ(args[3], "mvmfs/0a1b2c3d");
	ASSERT_EQ(cgroup_dirs(&ci, pa, "web", da, 4), 2);
	ASSERT_EQ(cgroup_dirs(&ci, pb, "web", db, 4), 2);
	ASSERT_STREQ(da[0], "/sys/fs/cgroup/cpu,cpuacct/mvmfs/0a1b2c3d/web");
	ASSERT_STREQ(da[1], "/sys/fs/cgroup/memory/mvmfs/0a1b2c3d/web");
	ASSERT_STREQ(db[1], "/sys/fs/cgroup/memory/mvmfs/7/web");
	/* The reaper lists the node's own parent only. */
	ASSERT_EQ(cgroup_dirs(&ci, pa, "", da, 4), 2);
	ASSERT_STREQ(da[1], "/sys/fs/cgroup/memory/mvmfs/0a1b2c3d/");
	ASSERT_OK(cgroup_detect_from(mounts_v2, "cpu memory", &ci));
	ASSERT_EQ(cgroup_dirs(&ci, pa, "web", da, 4), 1);
	ASSERT_STREQ(da[0], "/sys/fs/cgroup/mvmfs/0a1b2c3d/web");
}

TEST_MAIN(TEST(test_v1), TEST(test_v2), TEST(test_odd_input), TEST(test_node_parent),
	  TEST(test_host))
