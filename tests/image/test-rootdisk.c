/* SPDX-License-Identifier: MIT */
/* Root and data disks (mkfs.ext4), checked with debugfs/e2fsck rather than a loop mount; the
 * image config for the guest; the layer path mapping; disk-full reporting. */
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <time.h>

#include "build.h"
#include "layer-util.h"

static char *run_out(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	ASSERT_TRUE(p && buf);
	n = fread(buf, 1, 65535, p);
	buf[n] = '\0';
	ASSERT_EQ(pclose(p), 0);
	return buf;
}

static bool have_tool(const char *name)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin:/sbin command -v %s >/dev/null", name);
	return system(cmd) == 0;
}

static void unpack_into(const char *tmp, const char *rootfs, const struct ent *l, size_t n)
{
	struct img_unpack u;
	struct img_unpack_limits lim = {0};
	struct err err = {0};
	char path[4200], diff_id[72];
	int fd;

	snprintf(path, sizeof(path), "%s/layer", tmp);
	layer_make(path, l, n, LAYER_GZIP, diff_id);
	ASSERT_OK(mkdir(rootfs, 0755));
	ASSERT_OK(img_unpack_init(&u, rootfs, &lim, &err));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	if (img_unpack_layer(&u, fd, "sha256:l", diff_id, &err) < 0)
		TEST_FAIL("unpack: %s", err.msg);
	close(fd);
	img_unpack_done(&u);
}

static void test_root_disk(void)
{
	char *tmp, rootfs[4200], disk[4200], cmd[9000];
	char *out;
	struct err err = {0};
	struct stat st;
	const struct ent l[] = {
		{"etc/hostname", 'f', "box\n", 0644, 1000, 1001},
		{"bin/app", 'f', NULL, 0755, 0, 0, 3 << 20},
		{"bin/link", 'h', "bin/app"},
		{"lib", 'l', "usr/lib"},
		{"usr/lib/", 'd'},
	};

	if (!have_tool("mkfs.ext4") || !have_tool("debugfs") || !have_tool("e2fsck"))
		test_skip("e2fsprogs not installed");
	tmp = tmpdir_new();
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmp);
	snprintf(disk, sizeof(disk), "%s/rootfs.ext4", tmp);
	unpack_into(tmp, rootfs, l, ELEMENTSOF(l));
	if (img_make_root_disk(rootfs, disk, &err) < 0)
		TEST_FAIL("root disk: %s", err.msg);
	ASSERT_OK(stat(disk, &st));
	/* The file is padded to the fixed device size; the file system keeps its own size. */
	ASSERT_EQ((uint64_t)st.st_size, IMG_ROOT_DISK_ALIGN);
	ASSERT_TRUE((uint64_t)st.st_blocks * 512 < (16ULL << 20)); /* sparse */
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin dumpe2fs -h '%s' 2>/dev/null", disk);
	out = run_out(cmd);
	{
		const char *bc = strstr(out, "Block count:");
		unsigned long long blocks = bc ? strtoull(bc + 12, NULL, 10) : 0;

		ASSERT_TRUE(blocks * 4096 >= (64ULL << 20));
		ASSERT_TRUE(blocks * 4096 < (128ULL << 20));
	}
	free(out);

	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin e2fsck -fn '%s' >/dev/null 2>&1", disk);
	ASSERT_EQ(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin debugfs -R 'ls -l /' '%s' 2>/dev/null",
		 disk);
	out = run_out(cmd);
	ASSERT_TRUE(strstr(out, " etc") || strstr(out, "etc\n"));
	ASSERT_TRUE(strstr(out, "bin") != NULL);
	ASSERT_TRUE(strstr(out, "lib") != NULL);
	free(out);
	snprintf(cmd, sizeof(cmd),
		 "PATH=$PATH:/usr/sbin debugfs -R 'cat /etc/hostname' '%s' "
		 "2>/dev/null",
		 disk);
	out = run_out(cmd);
	ASSERT_STREQ(out, "box\n");
	free(out);
	snprintf(cmd, sizeof(cmd),
		 "PATH=$PATH:/usr/sbin debugfs -R 'stat /bin/link' '%s' "
		 "2>/dev/null",
		 disk);
	out = run_out(cmd);
	ASSERT_TRUE(strstr(out, "Links: 2") != NULL); /* hard link kept */
	ASSERT_TRUE(strstr(out, "Size: 3145728") != NULL);
	free(out);
	if (geteuid() == 0) {
		snprintf(cmd, sizeof(cmd),
			 "PATH=$PATH:/usr/sbin debugfs -R 'stat /etc/hostname' "
			 "'%s' 2>/dev/null",
			 disk);
		out = run_out(cmd);
		ASSERT_TRUE(strstr(out, "User:  1000") != NULL);
		ASSERT_TRUE(strstr(out, "Group:  1001") != NULL);
		free(out);
	}
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin dumpe2fs -h '%s' 2>/dev/null", disk);
	out = run_out(cmd);
	ASSERT_TRUE(strstr(out, "Filesystem volume name:   root") != NULL);
	free(out);
	(void)rm_rf(tmp);
	free(tmp);
}

/* Root disks an older version built unpadded are padded in place: only the length grows (no
 * block allocated, the file system unchanged); a padded one is left alone. */
static void test_pad_root_disk(void)
{
	char *tmp, disk[4200], cmd[9000];
	struct err err = {0};
	struct stat st;
	char *before, *after;

	if (!have_tool("mkfs.ext4") || !have_tool("e2fsck") || !have_tool("dumpe2fs"))
		test_skip("e2fsprogs not installed");
	tmp = tmpdir_new();
	snprintf(disk, sizeof(disk), "%s/old.ext4", tmp);
	/* What an older version made: an ext4 file system exactly as long as its file. */
	snprintf(cmd, sizeof(cmd),
		 "PATH=$PATH:/usr/sbin mkfs.ext4 -q -F -b 4096 -O ^has_journal '%s' 70M "
		 ">/dev/null 2>&1",
		 disk);
	ASSERT_EQ(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin dumpe2fs -h '%s' 2>/dev/null", disk);
	before = run_out(cmd);
	ASSERT_OK(stat(disk, &st));
	ASSERT_EQ(st.st_size, 70LL << 20);
	blkcnt_t blocks = st.st_blocks;

	if (img_pad_root_disk(disk, &err) < 0)
		TEST_FAIL("pad: %s", err.msg);
	ASSERT_OK(stat(disk, &st));
	ASSERT_EQ((uint64_t)st.st_size, IMG_ROOT_DISK_ALIGN);
	ASSERT_EQ(st.st_blocks, blocks); /* a sparse tail */
	after = run_out(cmd);
	ASSERT_STREQ(after, before); /* the file system is unchanged */
	free(before);
	free(after);
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin e2fsck -fn '%s' >/dev/null 2>&1", disk);
	ASSERT_EQ(system(cmd), 0);
	/* Padded already: unchanged. */
	ASSERT_OK(img_pad_root_disk(disk, &err));
	ASSERT_OK(stat(disk, &st));
	ASSERT_EQ((uint64_t)st.st_size, IMG_ROOT_DISK_ALIGN);
	/* One byte over a multiple: the next multiple. */
	ASSERT_OK(truncate(disk, (off_t)IMG_ROOT_DISK_ALIGN + 1));
	ASSERT_OK(img_pad_root_disk(disk, &err));
	ASSERT_OK(stat(disk, &st));
	ASSERT_EQ((uint64_t)st.st_size, 2 * IMG_ROOT_DISK_ALIGN);
	/* Not a disk file: refused, nothing changed. */
	ASSERT_EQ(img_pad_root_disk(tmp, &err), -EISDIR);
	snprintf(disk, sizeof(disk), "%s/empty", tmp);
	ASSERT_OK(close(open(disk, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)));
	ASSERT_EQ(img_pad_root_disk(disk, &err), -EINVAL);
	ASSERT_OK(stat(disk, &st));
	ASSERT_EQ(st.st_size, 0);
	snprintf(disk, sizeof(disk), "%s/missing", tmp);
	ASSERT_EQ(img_pad_root_disk(disk, &err), -ENOENT);
	(void)rm_rf(tmp);
	free(tmp);
}

static void test_data_disk(void)
{
	char *tmp, disk[4200], cmd[9000];
	char *out;
	struct err err = {0};
	struct stat st;
	struct timespec t0, t1;

	if (!have_tool("mkfs.ext4") || !have_tool("dumpe2fs"))
		test_skip("e2fsprogs not installed");
	tmp = tmpdir_new();
	snprintf(disk, sizeof(disk), "%s/data.ext4", tmp);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (img_make_data_disk(disk, 1ULL << 30, &err) < 0)
		TEST_FAIL("data disk: %s", err.msg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# 1 GiB data disk in %.1f ms\n",
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	ASSERT_OK(stat(disk, &st));
	ASSERT_EQ(st.st_size, 1LL << 30);
	ASSERT_TRUE((uint64_t)st.st_blocks * 512 < (64ULL << 20)); /* sparse */
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin dumpe2fs -h '%s' 2>/dev/null", disk);
	out = run_out(cmd);
	ASSERT_TRUE(strstr(out, "Filesystem volume name:   data") != NULL);
	free(out);
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin e2fsck -fn '%s' >/dev/null 2>&1", disk);
	ASSERT_EQ(system(cmd), 0);
	/* Too small is refused before touching the path. */
	snprintf(disk, sizeof(disk), "%s/tiny.ext4", tmp);
	ASSERT_ERRNO(img_make_data_disk(disk, 4096, &err), EINVAL);
	ASSERT_FALSE(access(disk, F_OK) == 0);
	(void)rm_rf(tmp);
	free(tmp);
}

/* A full filesystem gives -ENOSPC with "disk full", from unpacking and from mkfs. */
static void test_disk_full(void)
{
	char *tmp, mnt[3000], rootfs[4200], disk[4200], src[4200];
	struct err err = {0};
	struct img_unpack u;
	struct img_unpack_limits lim = {0};
	char path[4200], diff_id[72];
	const struct ent big[] = {{"big", 'f', NULL, 0, 0, 0, 6 << 20}};
	const struct ent small[] = {{"f", 'f', NULL, 0, 0, 0, 1 << 20}};
	int fd, r;

	if (geteuid() != 0)
		test_skip("needs root to mount a small tmpfs");
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		test_skip("cannot make a private mount namespace");
	tmp = tmpdir_new();
	snprintf(mnt, sizeof(mnt), "%s/small", tmp);
	ASSERT_OK(mkdir(mnt, 0755));
	ASSERT_OK(mount("tmpfs", mnt, "tmpfs", 0, "size=2m"));

	snprintf(path, sizeof(path), "%s/layer", tmp);
	layer_make(path, big, 1, LAYER_GZIP, diff_id);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", mnt);
	ASSERT_OK(mkdir(rootfs, 0755));
	ASSERT_OK(img_unpack_init(&u, rootfs, &lim, &err));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	r = img_unpack_layer(&u, fd, "sha256:big", diff_id, &err);
	close(fd);
	img_unpack_done(&u);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strstr(err.msg, "disk full") != NULL);
	ASSERT_TRUE(strstr(err.msg, "sha256:big") != NULL);

	/* mkfs of a 1 MiB tree onto the nearly full tmpfs. */
	(void)rm_rf(rootfs);
	snprintf(src, sizeof(src), "%s/src", tmp);
	unpack_into(tmp, src, small, 1);
	snprintf(disk, sizeof(disk), "%s/fill", mnt);
	{
		int ffd = open(disk, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		char z[65536] = {0};
		while (write(ffd, z, sizeof(z)) > 0)
			;
		close(ffd);
		unlink(disk); /* space back, minus what we keep below */
		ffd = open(disk, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		for (int i = 0; i < 24; i++)
			ASSERT_EQ(write(ffd, z, sizeof(z)), (ssize_t)sizeof(z));
		close(ffd);
	}
	snprintf(disk, sizeof(disk), "%s/rootfs.ext4", mnt);
	r = img_make_root_disk(src, disk, &err);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strstr(err.msg, "disk full") != NULL);
	ASSERT_FALSE(access(disk, F_OK) == 0);
	(void)umount2(mnt, MNT_DETACH);
	(void)rm_rf(tmp);
	free(tmp);
}

/* The disk reserve: a data disk or root disk that would eat into it is refused up front. */
static void test_disk_reserve(void)
{
	char *tmp, mnt[3000], disk[4200], src[4200];
	struct err err = {0};
	const struct ent small[] = {{"f", 'f', NULL, 0, 0, 0, 1 << 20}};
	int r;

	if (geteuid() != 0)
		test_skip("needs root to mount a small tmpfs");
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		test_skip("cannot make a private mount namespace");
	tmp = tmpdir_new();
	snprintf(mnt, sizeof(mnt), "%s/small", tmp);
	ASSERT_OK(mkdir(mnt, 0755));
	ASSERT_OK(mount("tmpfs", mnt, "tmpfs", 0, "size=16m"));
	snprintf(disk, sizeof(disk), "%s/data.ext4", mnt);

	img_disk_reserve_set(12 << 20);
	r = img_make_data_disk(disk, 256 << 20, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strncmp(err.msg, "disk full: the data disk", 24) == 0);
	ASSERT_FALSE(access(disk, F_OK) == 0);
	snprintf(src, sizeof(src), "%s/src", tmp);
	unpack_into(tmp, src, small, 1);
	snprintf(disk, sizeof(disk), "%s/rootfs.ext4", mnt);
	img_disk_reserve_set(15 << 20);
	r = img_make_root_disk(src, disk, &err);
	printf("# %d: %s\n", r, err.msg);
	ASSERT_ERRNO(r, ENOSPC);
	ASSERT_TRUE(strncmp(err.msg, "disk full: the root disk", 24) == 0);
	ASSERT_FALSE(access(disk, F_OK) == 0);

	/* With a small reserve both fit. */
	img_disk_reserve_set(1 << 20);
	ASSERT_OK(img_make_root_disk(src, disk, &err));
	snprintf(disk, sizeof(disk), "%s/data.ext4", mnt);
	if (img_make_data_disk(disk, 64 << 20, &err) < 0)
		TEST_FAIL("data disk: %s", err.msg);
	(void)umount2(mnt, MNT_DETACH);
	(void)rm_rf(tmp);
	free(tmp);
}

static void test_image_config(void)
{
	struct img_config c = {0};
	struct err err = {0};
	static const char good[] =
		"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":"
		"[\"/bin/sh\",\"-c\"],\"Cmd\":[\"echo hi\"],\"Env\":[\"PATH=/bin\",\"A=b\"],"
		"\"WorkingDir\":\"/srv\",\"User\":\"1000:1000\",\"Labels\":{\"x\":\"y\"}},"
		"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:"
		"0000000000000000000000000000000000000000000000000000000000000000\"]},"
		"\"history\":[]}";
	static const char minimal[] = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},"
				      "\"config\":{\"Cmd\":null}}";
#define VOLS(v) "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"Volumes\":" v "}}"
	static const char with_volumes[] = VOLS("{\"/var/lib/data/\":{},\"/srv/cache\":{}}");
	static const char *const bad[] = {
		VOLS("[\"/data\"]"),
		VOLS("{\"/data\":1}"),
		VOLS("{\"data\":{}}"),
		VOLS("{\"/\":{}}"),
		VOLS("{\"//\":{}}"),
		VOLS("{\"/a//b\":{}}"),
		VOLS("{\"/a/../b\":{}}"),
		VOLS("{\"/a/.\":{}}"),
		VOLS("{\"/a\\tb\":{}}"),
		VOLS("{\"/a/\":{},\"/a\":{}}"),
		VOLS("{\"/1\":{},\"/2\":{},\"/3\":{},\"/4\":{},\"/5\":{},\"/6\":{},\"/7\":{},"
		     "\"/8\":{},\"/9\":{},\"/10\":{},\"/11\":{},\"/12\":{},\"/13\":{},\"/14\":{},"
		     "\"/15\":{},\"/16\":{},\"/17\":{}}"),
		"",
		"[]",
		"{\"rootfs\":{\"type\":\"layers\"}}",
		"{\"rootfs\":{\"type\":\"other\",\"diff_ids\":[]}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"md5:00\"]}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"Cmd\":\"sh\"}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"Env\":[1]}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"User\":5}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":[]}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"rootfs\":{}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"Cmd\":["
		"\"a\\u0000b\"]}}",
	};

	ASSERT_OK(img_config_parse(good, strlen(good), &c, &err));
	ASSERT_EQ(c.n_diff_ids, 1);
	ASSERT_STREQ(c.guest_json,
		     "{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"echo hi\"],\"env\":"
		     "[\"PATH=/bin\",\"A=b\"],\"workdir\":\"/srv\",\"user\":\"1000:1000\","
		     "\"volumes\":[]}");
	img_config_done(&c);
	ASSERT_OK(img_config_parse(minimal, strlen(minimal), &c, &err));
	ASSERT_EQ(c.n_diff_ids, 0);
	ASSERT_STREQ(c.guest_json,
		     "{\"entrypoint\":[],\"cmd\":[],\"env\":[],\"workdir\":\"\",\"user\":\"\","
		     "\"volumes\":[]}");
	img_config_done(&c);
	/* Volumes: normalised (one trailing '/' dropped), sorted, in the guest JSON. */
	ASSERT_OK(img_config_parse(with_volumes, strlen(with_volumes), &c, &err));
	ASSERT_EQ(c.n_volumes, 2);
	ASSERT_STREQ(c.volumes[0], "/srv/cache");
	ASSERT_STREQ(c.volumes[1], "/var/lib/data");
	ASSERT_TRUE(strstr(c.guest_json, "\"volumes\":[\"/srv/cache\",\"/var/lib/data\"]"));
	img_config_done(&c);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int r = img_config_parse(bad[i], strlen(bad[i]), &c, &err);
		if (r != -EBADMSG)
			TEST_FAIL("bad config %zu accepted (%d): %s", i, r, bad[i]);
	}
}

static void test_path_map(void)
{
	static const struct {
		const char *in;
		int r;
		enum img_path_kind kind;
		const char *out;
	} cases[] = {
		{"a/b", 0, IMG_PATH_NORMAL, "a/b"},
		{"./a//b/", 0, IMG_PATH_NORMAL, "a/b"},
		{"./", 0, IMG_PATH_ROOT, ""},
		{".", 0, IMG_PATH_ROOT, ""},
		{"a/./b", 0, IMG_PATH_NORMAL, "a/b"},
		{"a/.wh.b", 0, IMG_PATH_WHITEOUT, "a/b"},
		{".wh.top", 0, IMG_PATH_WHITEOUT, "top"},
		{"a/.wh..wh..opq", 0, IMG_PATH_OPAQUE, "a"},
		{".wh..wh..opq", 0, IMG_PATH_OPAQUE, ""},
		{"a/.wh..wh.plnk", 0, IMG_PATH_SKIP, "a/.wh..wh.plnk"},
		{".wh.x/y", -EINVAL, 0, NULL},
		{"a/.wh..wh..opq/b", -EINVAL, 0, NULL},
		{"a/.wh.x/", 0, IMG_PATH_WHITEOUT, "a/x"},
		{"a..b/..c", 0, IMG_PATH_NORMAL, "a..b/..c"},
		{"", -EINVAL, 0, NULL},
		{"/etc/passwd", -EINVAL, 0, NULL},
		{"../x", -EINVAL, 0, NULL},
		{"a/../../x", -EINVAL, 0, NULL},
		{"a/..", -EINVAL, 0, NULL},
		{"a/.wh.", -EINVAL, 0, NULL},
		{"a/.wh...", -EINVAL, 0, NULL},
		{".wh..", -EINVAL, 0, NULL},
	};
	char out[IMG_PATH_MAX + 1];

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		enum img_path_kind kind = 99;
		const char *why = NULL;
		int r = img_path_map(cases[i].in, out, sizeof(out), &kind, &why);

		if (r != cases[i].r)
			TEST_FAIL("'%s': %d, expected %d", cases[i].in, r, cases[i].r);
		if (r < 0) {
			ASSERT_TRUE(why != NULL);
			continue;
		}
		ASSERT_EQ(kind, cases[i].kind);
		ASSERT_STREQ(out, cases[i].out);
	}
}

TEST_MAIN(TEST(test_root_disk), TEST(test_pad_root_disk), TEST(test_data_disk),
	  TEST(test_disk_full), TEST(test_disk_reserve), TEST(test_image_config),
	  TEST(test_path_map))
