/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fileio.h"
#include "test.h"

static void test_atomic_roundtrip(void)
{
	char dir[] = "/tmp/mvmfs-test-XXXXXX", path[256];
	char *data = NULL;
	size_t len = 0;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/a/b/rec.json", dir);
	{
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "%s", path);
		ASSERT_OK(mkdir_p(dirname(tmp), 0755));
	}
	ASSERT_OK(write_file_atomic(path, "hello", 5, 0600));
	ASSERT_OK(write_file_atomic(path, "world!", 6, 0600));
	ASSERT_OK(read_file_bounded(path, 100, &data, &len));
	ASSERT_EQ(len, 6);
	ASSERT_STREQ(data, "world!");
	free(data);
	ASSERT_ERRNO(read_file_bounded(path, 3, &data, &len), EFBIG);
	ASSERT_OK(rm_rf(dir));
	ASSERT_TRUE(access(dir, F_OK) < 0);
}

static void test_rm_rf_missing(void)
{
	ASSERT_OK(rm_rf("/tmp/mvmfs-does-not-exist-at-all"));
}

TEST_MAIN(TEST(test_atomic_roundtrip), TEST(test_rm_rf_missing))
