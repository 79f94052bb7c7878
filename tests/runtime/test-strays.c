/* SPDX-License-Identifier: MIT */
/* Stray VMM processes: which processes count as a VM's (argv of the jailer invoked for it with
 * our chroot base, or a root inside its jail) and which never do. */
#include <string.h>

#include "internal.h"
#include "test.h"

#define BASE "/srv/jailer"
#define ROOT "/srv/jailer/firecracker/web-1/root"

static bool m(const char *argv, size_t len, const char *root)
{
	return stray_matches(argv, len, root, "web-1", BASE, ROOT);
}

#define ARGV(s) s, sizeof(s) /* the literal's final NUL ends the last word */

static void test_jailer_argv(void)
{
	ASSERT_TRUE(m(ARGV("/usr/bin/jailer\0--id\0web-1\0--exec-file\0/usr/bin/firecracker\0"
			   "--chroot-base-dir\0" BASE "\0--uid\0200001"),
		      "/"));
	/* the test fake: python3 running the jailer script */
	ASSERT_TRUE(m(ARGV("python3\0/x/tests/fakes/jailer\0--chroot-base-dir\0" BASE
			   "\0--id\0web-1\0--\0--api-sock\0/run/firecracker.socket"),
		      NULL));
}

static void test_not_ours(void)
{
	/* another VM, another chroot base (another daemon), a prefix of the name */
	ASSERT_FALSE(m(ARGV("jailer\0--id\0web-2\0--chroot-base-dir\0" BASE), "/"));
	ASSERT_FALSE(m(ARGV("jailer\0--id\0web-1\0--chroot-base-dir\0/other"), "/"));
	ASSERT_FALSE(m(ARGV("jailer\0--id\0web-10\0--chroot-base-dir\0" BASE), "/"));
	ASSERT_FALSE(m(ARGV("jailer\0--id\0web-1"), "/"));
	ASSERT_FALSE(m(ARGV("echo\0web-1\0--id\0" BASE), "/"));
	/* the key must come right before its value */
	ASSERT_FALSE(m(ARGV("jailer\0--id\0x\0web-1\0--chroot-base-dir\0" BASE), NULL));
	/* a root next to the jail's, or below another jail */
	ASSERT_FALSE(m(ARGV("firecracker"), "/srv/jailer/firecracker/web-10/root"));
	ASSERT_FALSE(m(ARGV("firecracker"), ROOT "x"));
	ASSERT_FALSE(m(ARGV("firecracker"), ROOT "/sub"));
	ASSERT_FALSE(m(NULL, 0, NULL));
	/* argv not NUL-terminated (cut short): not trusted */
	ASSERT_FALSE(m("jailer\0--id\0web-1\0--chroot-base-dir\0/srv/jailer", 44, NULL));
}

static void test_jail_root(void)
{
	ASSERT_TRUE(m(ARGV("/firecracker\0--id\0web-1"), ROOT));
	ASSERT_TRUE(m(NULL, 0, ROOT " (deleted)"));
}

#define MARK "MVMFS_QEMU_DIR=/var/lib/mvmfs/qemu/web-1"

/* QEMU's: the exact environment entry, anywhere in a NUL-terminated environment. */
static void test_qemu_env(void)
{
	ASSERT_TRUE(stray_env_matches(ARGV(MARK), MARK));
	ASSERT_TRUE(stray_env_matches(ARGV("PATH=/bin\0" MARK "\0HOME=/"), MARK));
	/* another VM (a prefix of the name or of the dir), another state dir, a value */
	ASSERT_FALSE(stray_env_matches(ARGV(MARK "0"), MARK));
	ASSERT_FALSE(stray_env_matches(ARGV("MVMFS_QEMU_DIR=/var/lib/mvmfs/qemu/web-"), MARK));
	ASSERT_FALSE(stray_env_matches(ARGV("MVMFS_QEMU_DIR=/srv/other/qemu/web-1"), MARK));
	ASSERT_FALSE(stray_env_matches(ARGV("X=" MARK), MARK));
	ASSERT_FALSE(stray_env_matches(ARGV("X\0" MARK "/sub"), MARK));
	/* cut short (no final NUL), empty */
	ASSERT_FALSE(stray_env_matches(MARK, sizeof(MARK) - 1, MARK));
	ASSERT_FALSE(stray_env_matches(NULL, 0, MARK));
	ASSERT_FALSE(stray_env_matches("", 0, MARK));
}

TEST_MAIN(TEST(test_jailer_argv), TEST(test_not_ours), TEST(test_jail_root), TEST(test_qemu_env))
