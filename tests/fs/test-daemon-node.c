/* SPDX-License-Identifier: MIT */
/* daemon/node.c: the state dir and jail base locks, and the node id kept in the state dir. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "node.h"
#include "test.h"

static char dir[64];

static void test_parse(void)
{
	static const char *const bad[] = {"",	       "0a1b2c3",   "0a1b2c3d4",
					  "0A1B2C3D",  "0a1b2c3g",  "0a1b2c3d\n\n",
					  " 0a1b2c3d", "0a1b2c3d ", "0a1b\n2c3d"};
	char id[NODE_ID_LEN + 1];

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (node_id_parse(bad[i], strlen(bad[i]), id) != -EINVAL)
			TEST_FAIL("accepted '%s'", bad[i]);
	ASSERT_OK(node_id_parse("0a1b2c3d\n", 9, id));
	ASSERT_STREQ(id, "0a1b2c3d");
	ASSERT_OK(node_id_parse("ffffffffgarbage", 8, id));
	ASSERT_STREQ(id, "ffffffff");
}

static void test_id_kept(void)
{
	char a[NODE_ID_LEN + 1], b[NODE_ID_LEN + 1], path[128], *text = NULL;
	struct err err = {0};
	size_t len;

	ASSERT_OK(node_id_load(dir, a, &err));
	ASSERT_OK(node_id_parse(a, strlen(a), b));
	ASSERT_OK(node_id_load(dir, b, &err));
	ASSERT_STREQ(a, b);
	/* A corrupt file is never replaced: the node's resources carry the old id. */
	(void)snprintf(path, sizeof(path), "%s/node-id", dir);
	ASSERT_OK(write_file_atomic(path, "XYZ\n", 4, 0644));
	ASSERT_ERRNO(node_id_load(dir, b, &err), EINVAL);
	printf("# %s\n", err.msg);
	ASSERT_TRUE(strstr(err.msg, "node-id is corrupt") != NULL);
	ASSERT_OK(read_file_bounded(path, 64, &text, &len));
	ASSERT_STREQ(text, "XYZ\n");
	free(text);
	ASSERT_OK(unlink(path));
}

static void test_locks(void)
{
	char jails[96], want[64];
	struct err err = {0};
	int fd = -1, fd2 = -1, jfd = -1;

	ASSERT_OK(node_lock(dir, "/mnt/a", &fd, &err));
	/* An open-file-description lock: a second open conflicts even in the same process. */
	ASSERT_ERRNO(node_lock(dir, "/mnt/b", &fd2, &err), EBUSY);
	printf("# %s\n", err.msg);
	(void)snprintf(want, sizeof(want), "(pid %ld, mount /mnt/a)", (long)getpid());
	ASSERT_TRUE(strstr(err.msg, "is in use by another mvmfs daemon") != NULL);
	ASSERT_TRUE(strstr(err.msg, want) != NULL);
	ASSERT_TRUE(fd2 < 0);
	(void)snprintf(jails, sizeof(jails), "%s/jails", dir);
	ASSERT_OK(node_lock_jails(jails, "/mnt/a", &jfd, &err));
	ASSERT_ERRNO(node_lock_jails(jails, "/mnt/b", &fd2, &err), EBUSY);
	ASSERT_TRUE(strstr(err.msg, "jail base") != NULL);
	/* Released with the fd (and by the kernel when the holder dies). */
	close(fd);
	close(jfd);
	ASSERT_OK(node_lock(dir, "/mnt/b", &fd2, &err));
	close(fd2);
	ASSERT_OK(node_lock_jails(jails, "/mnt/b", &fd2, &err));
	/* Close-on-exec: a VMM never inherits the lock. */
	ASSERT_TRUE(fcntl(fd2, F_GETFD) & FD_CLOEXEC);
	close(fd2);
}

int main(void)
{
	static const struct test_case cases[] = {TEST(test_parse), TEST(test_id_kept),
						 TEST(test_locks)};
	int r;

	(void)snprintf(dir, sizeof(dir), "/tmp/mvmfs-node-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	r = test_run(cases, ELEMENTSOF(cases));
	(void)rm_rf(dir);
	return r;
}
