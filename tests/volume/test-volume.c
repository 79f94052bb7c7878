/* SPDX-License-Identifier: MIT */
/* The volume store on real files: names, paths and sizes; disks made by mkfs.ext4 (checked
 * through their superblock), grown by resize2fs, destroyed; crash leftovers recovered. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"
#include "test.h"
#include "volume.h"

#define MIB (1ULL << 20)

static char state[256];

static void setup(void)
{
	snprintf(state, sizeof(state), "/tmp/mvmfs-test-volume.XXXXXX");
	if (!mkdtemp(state))
		TEST_FAIL("mkdtemp: %m");
	if (access("/sbin/mkfs.ext4", X_OK) < 0 && access("/usr/sbin/mkfs.ext4", X_OK) < 0)
		test_skip("mkfs.ext4 not installed (e2fsprogs)");
	if (access("/sbin/resize2fs", X_OK) < 0 && access("/usr/sbin/resize2fs", X_OK) < 0)
		test_skip("resize2fs not installed (e2fsprogs)");
}

static void teardown(void)
{
	(void)rm_rf(state);
}

static struct volume_store *store(uint64_t def)
{
	struct volume_store *s = NULL;
	struct err err = {};

	if (volume_store_new(state, def, &s, &err) < 0)
		TEST_FAIL("volume_store_new: %s", err.msg);
	return s;
}

/* The ext4 superblock of a disk file: magic, label, block count (4 KiB blocks). */
struct sb {
	uint16_t magic;
	char label[17];
	uint64_t blocks;
};

static struct sb superblock(const char *path)
{
	unsigned char b[1024];
	struct sb sb = {};
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || pread(fd, b, sizeof(b), 1024) != (ssize_t)sizeof(b))
		TEST_FAIL("read superblock of %s: %m", path);
	close(fd);
	sb.magic = (uint16_t)(b[56] | b[57] << 8);
	memcpy(sb.label, b + 120, 16);
	sb.blocks =
		(uint64_t)b[4] | (uint64_t)b[5] << 8 | (uint64_t)b[6] << 16 | (uint64_t)b[7] << 24;
	return sb;
}

static void disk_of(struct volume_store *s, const char *vm, const char *vol, char *buf)
{
	ASSERT_OK(volume_disk_path(s, vm, vol, buf, 4096));
}

static void test_names(void)
{
	char name[VOLUME_NAME_MAX + 1];

	ASSERT_TRUE(volume_name_is_valid("data"));
	ASSERT_TRUE(volume_name_is_valid("a-0"));
	ASSERT_TRUE(volume_name_is_valid("abcdefghijklmnopqrstuvwxyz012345"));
	ASSERT_FALSE(volume_name_is_valid("abcdefghijklmnopqrstuvwxyz0123456"));
	ASSERT_FALSE(volume_name_is_valid(""));
	ASSERT_FALSE(volume_name_is_valid("Data"));
	ASSERT_FALSE(volume_name_is_valid("a_b"));
	ASSERT_FALSE(volume_name_is_valid(".new-a"));
	ASSERT_FALSE(volume_name_is_valid("a/b"));

	ASSERT_OK(volume_name_from_path("/var/lib/data", name));
	ASSERT_STREQ(name, "var-lib-data");
	ASSERT_OK(volume_name_from_path("/Srv/My_App.d", name));
	ASSERT_STREQ(name, "srv-my-app-d");
	ASSERT_OK(volume_name_from_path("/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", name));
	ASSERT_EQ(strlen(name), VOLUME_NAME_MAX);
	ASSERT_TRUE(volume_name_is_valid(name));
	ASSERT_ERRNO(volume_name_from_path("/", name), EINVAL);
	ASSERT_ERRNO(volume_name_from_path("var", name), EINVAL);
}

static void test_paths(void)
{
	char longp[VOLUME_PATH_MAX + 2];
	const char *why = NULL;

	ASSERT_OK(volume_path_check("/data", NULL));
	ASSERT_OK(volume_path_check("/var/lib/my data", NULL));
	ASSERT_OK(volume_path_check("/procfs", NULL));
	ASSERT_OK(volume_path_check("/a/..b/c.", NULL));
	ASSERT_ERRNO(volume_path_check("/", &why), EINVAL);
	ASSERT_STREQ(why, "the container's root");
	ASSERT_ERRNO(volume_path_check("", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("data", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/data/", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("//data", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/a//b", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/a/./b", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/a/../b", &why), EINVAL);
	ASSERT_STREQ(why, "'.' or '..' component");
	ASSERT_ERRNO(volume_path_check("/..", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/proc", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/sys/fs", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/dev/shm", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/a\tb", NULL), EINVAL);
	ASSERT_ERRNO(volume_path_check("/caf\xc3\xa9", NULL), EINVAL);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	longp[0] = '/';
	for (size_t i = 200; i < sizeof(longp) - 1; i += 200)
		longp[i] = '/';
	ASSERT_ERRNO(volume_path_check(longp, &why), EINVAL);
	ASSERT_STREQ(why, "too long");
	longp[VOLUME_PATH_MAX] = '\0';
	ASSERT_OK(volume_path_check(longp, NULL));
	memset(longp, 'a', 300);
	longp[0] = '/';
	longp[300] = '\0';
	ASSERT_ERRNO(volume_path_check(longp, NULL), EINVAL);

	ASSERT_TRUE(volume_paths_overlap("/data", "/data"));
	ASSERT_TRUE(volume_paths_overlap("/data", "/data/db"));
	ASSERT_TRUE(volume_paths_overlap("/data/db", "/data"));
	ASSERT_FALSE(volume_paths_overlap("/data", "/database"));
	ASSERT_FALSE(volume_paths_overlap("/data/a", "/data/b"));
}

static void test_sizes(void)
{
	uint64_t v;
	const char *why = NULL;

	ASSERT_OK(volume_size_parse("1G", &v, NULL));
	ASSERT_TRUE(v == 1ULL << 30);
	ASSERT_OK(volume_size_parse("16M", &v, NULL));
	ASSERT_TRUE(v == 16 * MIB);
	ASSERT_OK(volume_size_parse("16T", &v, NULL));
	ASSERT_TRUE(v == 16ULL << 40);
	ASSERT_OK(volume_size_parse("16777217", &v, NULL));
	ASSERT_TRUE(v == 16 * MIB + 4096);
	ASSERT_OK(volume_size_parse("20480K", &v, NULL));
	ASSERT_TRUE(v == 20 * MIB);
	ASSERT_ERRNO(volume_size_parse("15M", &v, &why), EINVAL);
	ASSERT_STREQ(why, "under 16M");
	ASSERT_ERRNO(volume_size_parse("17T", &v, &why), EINVAL);
	ASSERT_STREQ(why, "over 16T");
	ASSERT_ERRNO(volume_size_parse("18446744073709551615", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("99999999999T", &v, &why), EINVAL);
	ASSERT_STREQ(why, "too large");
	ASSERT_ERRNO(volume_size_parse("", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("G", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("1 G", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("1GB", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("-1G", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("0x100000000", &v, NULL), EINVAL);
	ASSERT_ERRNO(volume_size_parse("01G", &v, NULL), EINVAL);
}

static void test_config(void)
{
	struct volume a = {.name = "x", .path = "/data", .size = 32 * MIB, .fresh = true}, b;
	struct err err = {};
	char *s = NULL;

	ASSERT_OK(volume_config_encode(&a, &s));
	ASSERT_OK(volume_config_decode(s, strlen(s), &b, &err));
	ASSERT_STREQ(b.path, "/data");
	ASSERT_TRUE(b.size == 32 * MIB && b.fresh && !b.growing);
	free(s);
#define BAD(js) ASSERT_ERRNO(volume_config_decode(js, strlen(js), &b, &err), EINVAL)
	BAD("");
	BAD("[]");
	BAD("{\"path\":\"/a\",\"size\":16777216}");
	BAD("{\"path\":\"/a\",\"size\":16777216,\"fresh\":1}");
	BAD("{\"path\":\"/a\",\"size\":\"16M\",\"fresh\":true}");
	BAD("{\"path\":\"/a\",\"size\":4096,\"fresh\":true}");
	BAD("{\"path\":\"/a\",\"size\":16777217,\"fresh\":true}");
	BAD("{\"path\":\"/\",\"size\":16777216,\"fresh\":true}");
	BAD("{\"path\":\"/a/\",\"size\":16777216,\"fresh\":true}");
	BAD("{\"path\":\"/a\\u0000\",\"size\":16777216,\"fresh\":true}");
	BAD("{\"path\":\"/a\",\"size\":16777216,\"fresh\":true,\"other\":1}");
	BAD("{\"path\":\"/a\",\"path\":\"/b\",\"size\":16777216,\"fresh\":true}");
#undef BAD
	{
		char big[VOLUME_CONFIG_MAX + 2];

		memset(big, ' ', sizeof(big));
		ASSERT_ERRNO(volume_config_decode(big, sizeof(big), &b, &err), EFBIG);
	}
}

static void test_create_destroy(void)
{
	struct volume_store *s;
	struct volume v, *vols = NULL;
	struct err err = {};
	char disk[4096];
	struct stat st;
	struct sb sb;

	setup();
	s = store(64 * MIB);
	{
		char **vms = NULL;

		ASSERT_EQ(volume_store_vms(s, &vms), 0);
		ASSERT_TRUE(vms && vms[0] == NULL);
		free(vms);
	}
	ASSERT_OK(volume_create(s, "web-1", "data", "/var/lib/data", 0, &err));
	ASSERT_OK(volume_create(s, "web-1", "cache", NULL, 32 * MIB, &err));
	ASSERT_OK(volume_get(s, "web-1", "data", &v, &err));
	ASSERT_STREQ(v.name, "data");
	ASSERT_STREQ(v.path, "/var/lib/data");
	ASSERT_TRUE(v.size == 64 * MIB && v.fresh && !v.growing);
	disk_of(s, "web-1", "data", disk);
	ASSERT_OK(stat(disk, &st));
	ASSERT_TRUE((uint64_t)st.st_size == 64 * MIB);
	/* Sparse: mkfs with lazy tables writes a small part of it. */
	ASSERT_TRUE((uint64_t)st.st_blocks * 512 < 16 * MIB);
	sb = superblock(disk);
	ASSERT_EQ(sb.magic, 0xEF53);
	ASSERT_STREQ(sb.label, "volume");
	ASSERT_TRUE(sb.blocks == 64 * MIB / 4096);

	ASSERT_EQ(volume_list(s, "web-1", &vols, &err), 2);
	ASSERT_STREQ(vols[0].name, "cache");
	ASSERT_STREQ(vols[0].path, "");
	ASSERT_STREQ(vols[1].name, "data");
	free(vols);
	ASSERT_EQ(volume_list(s, "other", &vols, &err), 0);
	ASSERT_TRUE(vols == NULL);

	/* Refusals change nothing. */
	ASSERT_ERRNO(volume_create(s, "web-1", "data", NULL, 0, &err), EEXIST);
	ASSERT_ERRNO(volume_create(s, "web-1", "Bad", NULL, 0, &err), EINVAL);
	ASSERT_ERRNO(volume_create(s, "web-1", "x", "/var/lib", 0, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "overlaps") != NULL);
	ASSERT_ERRNO(volume_create(s, "web-1", "x", "/var/lib/data/sub", 0, &err), EINVAL);
	ASSERT_ERRNO(volume_create(s, "web-1", "x", "/", 0, &err), EINVAL);
	ASSERT_ERRNO(volume_create(s, "web-1", "x", NULL, 1 * MIB, &err), EINVAL);
	ASSERT_ERRNO(volume_get(s, "web-1", "x", &v, &err), ENOENT);
	/* Another VM's paths do not count. */
	ASSERT_OK(volume_create(s, "web-2", "data", "/var/lib/data", 16 * MIB, &err));

	ASSERT_OK(volume_destroy(s, "web-1", "data", &err));
	ASSERT_ERRNO(volume_get(s, "web-1", "data", &v, &err), ENOENT);
	ASSERT_SYSERR(stat(disk, &st), ENOENT);
	ASSERT_ERRNO(volume_destroy(s, "web-1", "data", &err), ENOENT);
	ASSERT_EQ(volume_list(s, "web-1", &vols, &err), 1);
	free(vols);

	ASSERT_OK(volume_destroy_all(s, "web-1", &err));
	ASSERT_EQ(volume_list(s, "web-1", &vols, &err), 0);
	ASSERT_OK(volume_destroy_all(s, "never-defined", &err));
	{
		char **vms = NULL;

		ASSERT_EQ(volume_store_vms(s, &vms), 1);
		ASSERT_STREQ(vms[0], "web-2");
		ASSERT_TRUE(vms[1] == NULL);
		free(vms);
	}
	volume_store_free(s);
	teardown();
}

static void test_limit(void)
{
	struct volume_store *s;
	struct err err = {};
	char name[8];

	setup();
	s = store(16 * MIB);
	for (int i = 0; i < VOLUME_MAX_PER_VM; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		ASSERT_OK(volume_create(s, "vm", name, NULL, 0, &err));
	}
	ASSERT_ERRNO(volume_create(s, "vm", "one-more", NULL, 0, &err), ENOSPC);
	volume_store_free(s);
	teardown();
}

static void test_path_and_size(void)
{
	struct volume_store *s;
	struct volume v;
	struct err err = {};
	char disk[4096];
	struct stat st;

	setup();
	s = store(16 * MIB);
	ASSERT_OK(volume_create(s, "vm", "a", "/a", 0, &err));
	ASSERT_OK(volume_create(s, "vm", "b", NULL, 0, &err));
	ASSERT_ERRNO(volume_set_path(s, "vm", "b", "/a/b", &err), EINVAL);
	ASSERT_ERRNO(volume_set_path(s, "vm", "b", "/", &err), EINVAL);
	ASSERT_ERRNO(volume_set_path(s, "vm", "b", "b", &err), EINVAL);
	ASSERT_ERRNO(volume_set_path(s, "vm", "c", "/c", &err), ENOENT);
	ASSERT_OK(volume_set_path(s, "vm", "b", "/b", &err));
	ASSERT_OK(volume_set_path(s, "vm", "a", "/a", &err)); /* its own path: no overlap */
	ASSERT_OK(volume_set_path(s, "vm", "a", "/srv/a", &err));
	ASSERT_OK(volume_get(s, "vm", "a", &v, &err));
	ASSERT_STREQ(v.path, "/srv/a");

	disk_of(s, "vm", "a", disk);
	ASSERT_OK(volume_set_size(s, "vm", "a", 48 * MIB, &err));
	ASSERT_OK(volume_get(s, "vm", "a", &v, &err));
	ASSERT_TRUE(v.size == 48 * MIB && !v.growing);
	ASSERT_OK(stat(disk, &st));
	ASSERT_TRUE((uint64_t)st.st_size == 48 * MIB);
	ASSERT_TRUE(superblock(disk).blocks == 48 * MIB / 4096);
	ASSERT_OK(volume_set_size(s, "vm", "a", 48 * MIB, &err)); /* same: no-op */
	ASSERT_ERRNO(volume_set_size(s, "vm", "a", 32 * MIB, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "not shrink") != NULL);
	ASSERT_ERRNO(volume_set_size(s, "vm", "a", 1 * MIB, &err), EINVAL);
	ASSERT_ERRNO(volume_set_size(s, "vm", "a", 32ULL << 40, &err), EINVAL);
	ASSERT_ERRNO(volume_set_size(s, "vm", "zz", 64 * MIB, &err), ENOENT);
	ASSERT_TRUE(superblock(disk).blocks == 48 * MIB / 4096);

	ASSERT_OK(volume_mark_used(s, "vm", "a", &err));
	ASSERT_OK(volume_get(s, "vm", "a", &v, &err));
	ASSERT_FALSE(v.fresh);
	ASSERT_TRUE(v.size == 48 * MIB);
	volume_store_free(s);
	teardown();
}

static void write_text(const char *path, const char *text)
{
	ASSERT_OK(write_file_atomic(path, text, strlen(text), 0600));
}

static void test_recover(void)
{
	struct volume_store *s;
	struct volume v, *vols = NULL;
	struct err err = {};
	char p[4096], disk[4096];
	struct stat st;

	setup();
	s = store(16 * MIB);
	ASSERT_OK(volume_create(s, "vm", "keep", "/keep", 0, &err));
	ASSERT_OK(volume_create(s, "vm", "grow", "/grow", 0, &err));
	ASSERT_OK(volume_create(s, "vm", "nodisk", "/nodisk", 0, &err));
	/* An interrupted create and destroy, stray files, a volume without its disk, a volume
	 * whose grow stopped after the truncate. */
	snprintf(p, sizeof(p), "%s/volumes/vm/.new-half", state);
	ASSERT_OK(mkdir_p(p, 0700));
	snprintf(p, sizeof(p), "%s/volumes/vm/.del-gone/x", state);
	ASSERT_OK(mkdir_p(p, 0700));
	snprintf(p, sizeof(p), "%s/volumes/vm/keep/volume.json.tmp.123", state);
	write_text(p, "{");
	snprintf(p, sizeof(p), "%s/volumes/bad name", state);
	ASSERT_OK(mkdir_p(p, 0700));
	disk_of(s, "vm", "nodisk", disk);
	ASSERT_OK(unlink(disk));
	snprintf(p, sizeof(p), "%s/volumes/vm/grow/volume.json", state);
	write_text(p, "{\"path\":\"/grow\",\"size\":33554432,\"fresh\":true,\"growing\":true}");
	disk_of(s, "vm", "grow", disk);
	ASSERT_OK(truncate(disk, 32 * MIB));
	ASSERT_TRUE(superblock(disk).blocks == 16 * MIB / 4096);

	ASSERT_EQ(volume_store_recover(s, &err), 5); /* the stray temp file is not counted */
	ASSERT_EQ(volume_list(s, "vm", &vols, &err), 2);
	ASSERT_STREQ(vols[0].name, "grow");
	ASSERT_STREQ(vols[1].name, "keep");
	free(vols);
	ASSERT_OK(volume_get(s, "vm", "grow", &v, &err));
	ASSERT_TRUE(v.size == 32 * MIB && !v.growing);
	ASSERT_TRUE(superblock(disk).blocks == 32 * MIB / 4096);
	snprintf(p, sizeof(p), "%s/volumes/vm/.new-half", state);
	ASSERT_TRUE(stat(p, &st) < 0);
	snprintf(p, sizeof(p), "%s/volumes/vm/.del-gone", state);
	ASSERT_TRUE(stat(p, &st) < 0);
	snprintf(p, sizeof(p), "%s/volumes/vm/keep/volume.json.tmp.123", state);
	ASSERT_TRUE(stat(p, &st) < 0);
	snprintf(p, sizeof(p), "%s/volumes/vm/nodisk", state);
	ASSERT_TRUE(stat(p, &st) < 0);
	/* Nothing left to do the second time. */
	ASSERT_EQ(volume_store_recover(s, &err), 0);
	volume_store_free(s);
	teardown();
}

static void test_disk_full(void)
{
	struct volume_store *s;
	struct err err = {};

	setup();
	s = store(16 * MIB);
	/* Sparse disks are checked against the free space mkfs and resize2fs need (1/64). */
	ASSERT_ERRNO(volume_create(s, "vm", "huge", NULL, 16ULL << 40, &err), ENOSPC);
	ASSERT_TRUE(strstr(err.msg, "disk full") != NULL);
	ASSERT_OK(volume_create(s, "vm", "a", NULL, 0, &err));
	ASSERT_ERRNO(volume_set_size(s, "vm", "a", 16ULL << 40, &err), ENOSPC);
	{
		struct volume v;

		ASSERT_OK(volume_get(s, "vm", "a", &v, &err));
		ASSERT_TRUE(v.size == 16 * MIB && !v.growing);
	}
	{
		char p[4096];
		struct stat st;

		snprintf(p, sizeof(p), "%s/volumes/vm/.new-huge", state);
		ASSERT_TRUE(stat(p, &st) < 0);
	}
	volume_store_free(s);
	teardown();
}

static void test_prepare_start(void)
{
	static const char *const declared[] = {"/var/lib/data", "/srv", "/srv/cache", "/proc/x",
					       "/user/sub"};
	struct volume_store *s;
	struct volume_attach *a = NULL;
	struct volume v;
	struct err err = {};
	uint8_t uuid[16];

	setup();
	s = store(16 * MIB);
	/* No volumes, nothing declared: nothing to attach. */
	ASSERT_EQ(volume_prepare_start(s, "vm", NULL, 0, true, &a, &err), 0);
	ASSERT_TRUE(a == NULL);
	/* A volume of the user's at /user covers the image's /user/sub; the name "srv" is taken
	 * by a volume without a path, which fails the start until it has one. */
	ASSERT_OK(volume_create(s, "vm", "mine", "/user", 0, &err));
	ASSERT_OK(volume_create(s, "vm", "srv", NULL, 0, &err));
	ASSERT_ERRNO(volume_prepare_start(s, "vm", declared, ELEMENTSOF(declared), true, &a, &err),
		     EINVAL);
	ASSERT_TRUE(strstr(err.msg, "'srv' has no path") != NULL);
	/* The declared ones were made anyway (the first time), the bad and covered ones not. */
	ASSERT_OK(volume_get(s, "vm", "var-lib-data", &v, &err));
	ASSERT_STREQ(v.path, "/var/lib/data");
	ASSERT_TRUE(v.fresh && v.size == 16 * MIB);
	ASSERT_OK(volume_get(s, "vm", "srv-2", &v, &err));
	ASSERT_STREQ(v.path, "/srv");
	ASSERT_ERRNO(volume_get(s, "vm", "srv-cache", &v, &err), ENOENT); /* inside /srv */
	ASSERT_ERRNO(volume_get(s, "vm", "user-sub", &v, &err), ENOENT);
	ASSERT_ERRNO(volume_get(s, "vm", "proc-x", &v, &err), ENOENT);

	ASSERT_OK(volume_destroy(s, "vm", "srv", &err));
	/* Not a new image: what the user removed stays removed. */
	ASSERT_OK(volume_destroy(s, "vm", "var-lib-data", &err));
	ASSERT_EQ(volume_prepare_start(s, "vm", declared, ELEMENTSOF(declared), false, &a, &err),
		  2);
	ASSERT_STREQ(a[0].name, "mine");
	ASSERT_STREQ(a[0].path, "/user");
	ASSERT_STREQ(a[1].name, "srv-2");
	ASSERT_TRUE(a[1].fresh);
	ASSERT_OK(volume_disk_uuid(a[1].disk, uuid, &err));
	ASSERT_TRUE(memcmp(uuid, a[1].uuid, 16) == 0);
	ASSERT_TRUE(memcmp(a[0].uuid, a[1].uuid, 16) != 0);
	free(a);
	/* A new image again: the removed one comes back, the others are kept as they are. */
	ASSERT_EQ(volume_prepare_start(s, "vm", declared, ELEMENTSOF(declared), true, &a, &err), 3);
	ASSERT_STREQ(a[2].name, "var-lib-data");
	free(a);
	{
		char disk[4096];

		ASSERT_OK(volume_disk_path(s, "vm", "mine", disk, sizeof(disk)));
		ASSERT_OK(truncate(disk, 0));
		ASSERT_ERRNO(volume_disk_uuid(disk, uuid, &err), EIO);
	}
	volume_store_free(s);
	teardown();
}

TEST_MAIN(TEST(test_names), TEST(test_paths), TEST(test_sizes), TEST(test_config),
	  TEST(test_create_destroy), TEST(test_limit), TEST(test_path_and_size), TEST(test_recover),
	  TEST(test_disk_full), TEST(test_prepare_start))
