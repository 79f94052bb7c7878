/* SPDX-License-Identifier: MIT */
#include "parse.h"
#include "test.h"

static void test_u64(void)
{
	uint64_t v;
	ASSERT_OK(parse_u64("0", &v));
	ASSERT_EQ(v, 0);
	ASSERT_OK(parse_u64("18446744073709551615", &v));
	ASSERT_TRUE(v == UINT64_MAX);
	ASSERT_ERRNO(parse_u64("18446744073709551616", &v), ERANGE);
	ASSERT_ERRNO(parse_u64("", &v), EINVAL);
	ASSERT_ERRNO(parse_u64("-1", &v), EINVAL);
	ASSERT_ERRNO(parse_u64("1 ", &v), EINVAL);
	ASSERT_ERRNO(parse_u64("01", &v), EINVAL);
	ASSERT_ERRNO(parse_u64("0x10", &v), EINVAL);
}

static void test_u32(void)
{
	uint32_t v;
	ASSERT_OK(parse_u32("4294967295", &v));
	ASSERT_TRUE(v == UINT32_MAX);
	ASSERT_ERRNO(parse_u32("4294967296", &v), ERANGE);
}

static void test_size(void)
{
	uint64_t v;
	ASSERT_OK(parse_size("2048M", &v));
	ASSERT_TRUE(v == 2048ULL << 20);
	ASSERT_OK(parse_size("1G", &v));
	ASSERT_TRUE(v == 1ULL << 30);
	ASSERT_OK(parse_size("512", &v));
	ASSERT_EQ(v, 512);
	ASSERT_ERRNO(parse_size("G", &v), EINVAL);
	ASSERT_ERRNO(parse_size("1X", &v), EINVAL);
	ASSERT_ERRNO(parse_size("17179869184T", &v), ERANGE);
}

static void test_bool(void)
{
	bool b;
	ASSERT_OK(parse_bool("yes", &b));
	ASSERT_TRUE(b);
	ASSERT_OK(parse_bool("0", &b));
	ASSERT_FALSE(b);
	ASSERT_ERRNO(parse_bool("maybe", &b), EINVAL);
}

static void test_control_value(void)
{
	char buf[16];
	ASSERT_OK(parse_control_value("start\n", 6, 4096, buf, sizeof(buf)));
	ASSERT_STREQ(buf, "start");
	ASSERT_OK(parse_control_value("start", 5, 4096, buf, sizeof(buf)));
	ASSERT_STREQ(buf, "start");
	ASSERT_ERRNO(parse_control_value("start\n\n", 7, 4096, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(parse_control_value("st\0rt", 5, 4096, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(parse_control_value("st\trt", 5, 4096, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(parse_control_value("0123456789abcdefg", 17, 4096, buf, sizeof(buf)), EFBIG);
	ASSERT_ERRNO(parse_control_value("abc", 3, 2, buf, sizeof(buf)), EFBIG);
	ASSERT_OK(parse_control_value("\n", 1, 4096, buf, sizeof(buf)));
	ASSERT_STREQ(buf, "");
}

static void test_vm_name(void)
{
	ASSERT_TRUE(vm_name_is_valid("web-1"));
	ASSERT_TRUE(vm_name_is_valid("a"));
	ASSERT_TRUE(vm_name_is_valid("123e4567-e89b-12d3-a456-426614174000"));
	ASSERT_FALSE(vm_name_is_valid("123e4567-e89b-12d3-a456-4266141740001"));
	ASSERT_FALSE(vm_name_is_valid(""));
	ASSERT_FALSE(vm_name_is_valid("-web"));
	ASSERT_FALSE(vm_name_is_valid("web_1"));
	ASSERT_FALSE(vm_name_is_valid("web.1"));
	ASSERT_FALSE(vm_name_is_valid("wéb"));
	ASSERT_FALSE(vm_name_is_valid(".."));
}

/* A VMM's id: every VM name, and the template builds' ids (longer than any VM name, up to the
 * jailer's 64), nothing else. */
static void test_vmm_id(void)
{
	char id[80];

	ASSERT_TRUE(vmm_id_is_valid("web-1"));
	ASSERT_TRUE(vmm_id_is_valid("123e4567-e89b-12d3-a456-426614174000"));
	ASSERT_TRUE(vmm_id_is_valid("mvmfs-template-build-0123456789abcdef"));
	ASSERT_FALSE(vm_name_is_valid("mvmfs-template-build-0123456789abcdef"));
	memset(id, 'a', 64);
	id[64] = '\0';
	ASSERT_TRUE(vmm_id_is_valid(id));
	id[64] = 'a';
	id[65] = '\0';
	ASSERT_FALSE(vmm_id_is_valid(id));
	ASSERT_FALSE(vmm_id_is_valid(""));
	ASSERT_FALSE(vmm_id_is_valid(NULL));
	ASSERT_FALSE(vmm_id_is_valid("-tpl"));
	ASSERT_FALSE(vmm_id_is_valid("mvmfs.template"));
	ASSERT_FALSE(vmm_id_is_valid("a/b"));
}

TEST_MAIN(TEST(test_u64), TEST(test_u32), TEST(test_size), TEST(test_bool),
	  TEST(test_control_value), TEST(test_vm_name), TEST(test_vmm_id))
