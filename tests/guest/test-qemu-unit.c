/* SPDX-License-Identifier: MIT */
/* The pure parts of the QEMU backend: cgroup limits per hierarchy, QMP reply parsing. */
#include <errno.h>
#include <string.h>

#include "qemu.h"
#include "qmp.h"
#include "test.h"

static void test_cgroup_v2(void)
{
	struct qemu_cg_setting s[8];
	int n = qemu_cgroup_settings(2, false, 1, 2, 2048, s, 8);

	ASSERT_EQ(n, 3);
	ASSERT_STREQ(s[0].file, "cpu.max");
	ASSERT_STREQ(s[0].value, "200000 100000");
	ASSERT_STREQ(s[1].file, "memory.max");
	ASSERT_STREQ(s[1].value, "2684354560"); /* (2048 + 512) MiB */
	ASSERT_STREQ(s[2].file, "memory.swap.max");
	ASSERT_STREQ(s[2].value, "0");
	for (int i = 0; i < n; i++)
		ASSERT_EQ(s[i].dir, 0);
}

static void test_cgroup_v1_split_dirs_memsw(void)
{
	struct qemu_cg_setting s[8];
	int n = qemu_cgroup_settings(1, true, 2, 1, 256, s, 8);

	ASSERT_EQ(n, 4);
	ASSERT_STREQ(s[0].file, "cpu.cfs_period_us");
	ASSERT_STREQ(s[1].file, "cpu.cfs_quota_us");
	ASSERT_STREQ(s[1].value, "100000");
	ASSERT_EQ(s[1].dir, 0);
	/* the memory limit before memsw, both in the memory hierarchy's dir */
	ASSERT_STREQ(s[2].file, "memory.limit_in_bytes");
	ASSERT_STREQ(s[3].file, "memory.memsw.limit_in_bytes");
	ASSERT_STREQ(s[2].value, s[3].value);
	ASSERT_STREQ(s[2].value, "805306368");
	ASSERT_EQ(s[2].dir, 1);
	ASSERT_EQ(s[3].dir, 1);
}

static void test_cgroup_v1_no_memsw_and_errors(void)
{
	struct qemu_cg_setting s[8];
	int n = qemu_cgroup_settings(1, false, 1, 2, 2048, s, 8);

	ASSERT_EQ(n, 4);
	ASSERT_STREQ(s[3].file, "memory.swappiness");
	ASSERT_STREQ(s[3].value, "0");
	ASSERT_EQ(s[3].dir, 0);
	ASSERT_ERRNO(qemu_cgroup_settings(3, false, 1, 2, 2048, s, 8), EINVAL);
	ASSERT_ERRNO(qemu_cgroup_settings(1, false, 1, 2, 2048, s, 2), E2BIG);
}

static void test_qmp_lines(void)
{
	static const char greeting[] = "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}";
	static const char ret[] = "{\"return\": {\"status\": \"running\", \"running\": true}}";
	static const char error[] =
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}";
	static const char event[] = "{\"timestamp\": {}, \"event\": \"SHUTDOWN\"}";
	json_t *v = NULL;
	char desc[64];

	ASSERT_EQ(qmp_parse_line(greeting, strlen(greeting), &v, desc, sizeof(desc)), 1);
	ASSERT_TRUE(v == NULL);
	ASSERT_EQ(qmp_parse_line(ret, strlen(ret), &v, desc, sizeof(desc)), 2);
	ASSERT_TRUE(json_is_object(v));
	json_decref(v);
	ASSERT_EQ(qmp_parse_line(error, strlen(error), &v, desc, sizeof(desc)), 3);
	ASSERT_STREQ(desc, "no such thing");
	ASSERT_EQ(qmp_parse_line(event, strlen(event), &v, desc, sizeof(desc)), 4);
	ASSERT_ERRNO(qmp_parse_line("[1]", 3, &v, desc, sizeof(desc)), EINVAL);
	ASSERT_ERRNO(qmp_parse_line("{\"x\":1}", 7, &v, desc, sizeof(desc)), EINVAL);
	ASSERT_ERRNO(qmp_parse_line("{bad", 4, &v, desc, sizeof(desc)), EINVAL);
}

static void test_qmp_status(void)
{
	static const struct {
		const char *json;
		int want;
	} cases[] = {
		{"{\"status\":\"running\",\"running\":true}", VMM_RUN_RUNNING},
		{"{\"status\":\"paused\"}", VMM_RUN_PAUSED},
		{"{\"status\":\"prelaunch\"}", VMM_RUN_NOT_STARTED},
		{"{\"status\":\"shutdown\"}", VMM_RUN_GONE},
		{"{\"status\":\"guest-panicked\"}", VMM_RUN_GONE},
		{"{\"status\":\"colo\"}", VMM_RUN_UNKNOWN},
		{"{\"status\":7}", -EINVAL},
		{"[]", -EINVAL},
	};
	enum vmm_run_state st;

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		int r = qmp_parse_status(cases[i].json, strlen(cases[i].json), &st);

		if (cases[i].want < 0)
			ASSERT_EQ(r, cases[i].want);
		else {
			ASSERT_OK(r);
			ASSERT_EQ(st, cases[i].want);
		}
	}
}

TEST_MAIN(TEST(test_cgroup_v2), TEST(test_cgroup_v1_split_dirs_memsw),
	  TEST(test_cgroup_v1_no_memsw_and_errors), TEST(test_qmp_lines), TEST(test_qmp_status))
