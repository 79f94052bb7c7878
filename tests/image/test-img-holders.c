/* SPDX-License-Identifier: MIT */
/* Unit tests: img_holders_list (image/gc.c), what the runtime's leak reaper walks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "image.h"
#include "test.h"

static char dir[64];

static void hold(const char *name)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/images/refs/holders/%s", dir, name);
	ASSERT_OK(write_file_atomic(
		p,
		"sha256:"
		"0000000000000000000000000000000000000000000000000000000000000000\n",
		72, 0644));
}

static void test_list_and_release(void)
{
	struct img_store_config cfg = {.state_dir = dir};
	struct img_store *s = NULL;
	struct err err = {};
	char **names = NULL, p[256];

	snprintf(dir, sizeof(dir), "/tmp/test-img-holders-XXXXXX");
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	if (img_store_new(&cfg, &s, &err) < 0)
		TEST_FAIL("store: %s", err.msg);
	ASSERT_EQ(img_holders_list(s, &names), 0);
	ASSERT_TRUE(names[0] == NULL);
	free(names);

	hold("vm-b");
	hold("vm-a");
	hold("tool.x_1");
	/* Not holders: a temp file of an interrupted atomic write, a name no holder can have. */
	snprintf(p, sizeof(p), "%s/images/refs/holders/vm-c.tmp.123", dir);
	ASSERT_OK(write_file_atomic(p, "x\n", 2, 0644));
	snprintf(p, sizeof(p), "%s/images/refs/holders/.hidden", dir);
	ASSERT_OK(write_file_atomic(p, "x\n", 2, 0644));

	ASSERT_EQ(img_holders_list(s, &names), 3);
	ASSERT_STREQ(names[0], "tool.x_1");
	ASSERT_STREQ(names[1], "vm-a");
	ASSERT_STREQ(names[2], "vm-b");
	ASSERT_TRUE(names[3] == NULL);
	free(names);

	ASSERT_OK(img_release(s, "vm-a"));
	ASSERT_EQ(img_holders_list(s, &names), 2);
	ASSERT_STREQ(names[0], "tool.x_1");
	ASSERT_STREQ(names[1], "vm-b");
	free(names);

	img_store_free(s);
	ASSERT_OK(rm_rf(dir));
}

TEST_MAIN(TEST(test_list_and_release))
