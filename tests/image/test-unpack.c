/* SPDX-License-Identifier: MIT */
/* Layer unpacking: whiteouts, links, nodes, metadata, limits, and hostile layers that must fail
 * without touching anything outside the rootfs. */
#include <errno.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "build.h"
#include "layer-util.h"

struct fx {
	char *tmp;
	char rootfs[4096], canary[4096];
	struct img_unpack u;
	int n;
};

static void fx_init(struct fx *f, uint64_t max_bytes, uint64_t max_entries)
{
	struct img_unpack_limits lim = {max_bytes, max_entries};
	struct err err = {0};
	char p[4200];

	*f = (struct fx){0};
	f->tmp = tmpdir_new();
	snprintf(f->rootfs, sizeof(f->rootfs), "%s/rootfs", f->tmp);
	snprintf(f->canary, sizeof(f->canary), "%s/canary", f->tmp);
	ASSERT_OK(mkdir(f->rootfs, 0755));
	ASSERT_OK(mkdir(f->canary, 0755));
	snprintf(p, sizeof(p), "%s/secret", f->canary);
	ASSERT_OK(write_file_atomic(p, "s", 1, 0644));
	ASSERT_OK(img_unpack_init(&f->u, f->rootfs, &lim, &err));
}

static void fx_done(struct fx *f)
{
	img_unpack_done(&f->u);
	(void)rm_rf(f->tmp);
	free(f->tmp);
}

/* Apply a layer built from ents; bad_diff_id passes a wrong diff_id. */
static int fx_apply(struct fx *f, const struct ent *ents, size_t n, int filter, bool bad_diff_id,
		    struct err *err)
{
	char path[4200], diff_id[72];
	int fd, r;

	snprintf(path, sizeof(path), "%s/layer%d", f->tmp, f->n++);
	layer_make(path, ents, n, filter, diff_id);
	if (bad_diff_id)
		diff_id[10] = diff_id[10] == 'a' ? 'b' : 'a';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	r = img_unpack_layer(&f->u, fd, "sha256:test", diff_id, err);
	close(fd);
	return r;
}

static void read_rel(struct fx *f, const char *rel, char *buf, size_t size)
{
	char p[8192];
	int fd;
	ssize_t n;

	snprintf(p, sizeof(p), "%s/%s", f->rootfs, rel);
	fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ASSERT_TRUE(fd >= 0);
	n = read(fd, buf, size - 1);
	ASSERT_TRUE(n >= 0);
	buf[n] = '\0';
	close(fd);
}

static void stat_rel(struct fx *f, const char *rel, struct stat *st)
{
	char p[8192];

	snprintf(p, sizeof(p), "%s/%s", f->rootfs, rel);
	ASSERT_OK(lstat(p, st));
}

static void canary_intact(struct fx *f)
{
	ASSERT_EQ(dir_count(f->canary), 1);
	ASSERT_EQ(dir_count(f->tmp), 2 + f->n); /* rootfs, canary, layer files */
}

static void test_basic_gzip(void)
{
	struct fx f;
	struct err err = {0};
	char buf[64], lnk[256];
	struct stat a, b;
	const struct ent l[] = {
		{"./etc/", 'd'},
		{"./etc/hostname", 'f', "box\n", 0640},
		{"bin/sh", 'f', "#!", 0755}, /* parent "bin" not in the tar */
		{"etc/rel", 'l', "hostname"},
		{"etc/abs", 'l', "/etc/hostname"},
		{"etc/up", 'l', "../../../../outside"},
		{"etc/hard", 'h', "etc/hostname"},
		{"run/fifo", 'p'},
		{"ro/", 'd', NULL, 0555},
		{"ro/file", 'f', "r"},
		{"./", 'd'},
	};

	fx_init(&f, 0, 0);
	ASSERT_OK(fx_apply(&f, l, ELEMENTSOF(l), LAYER_GZIP, false, &err));
	read_rel(&f, "etc/hostname", buf, sizeof(buf));
	ASSERT_STREQ(buf, "box\n");
	stat_rel(&f, "etc/hostname", &a);
	ASSERT_EQ(a.st_mode & 07777, 0640);
	ASSERT_EQ(a.st_mtim.tv_sec, 1700000000);
	stat_rel(&f, "bin/sh", &a);
	ASSERT_EQ(a.st_mode & 07777, 0755);
	stat_rel(&f, "bin", &a);
	ASSERT_TRUE(S_ISDIR(a.st_mode));
	/* Symlinks are stored as written, never resolved. */
	snprintf(buf, sizeof(buf), "%s", "");
	{
		char p[8192];
		ssize_t n;
		snprintf(p, sizeof(p), "%s/etc/abs", f.rootfs);
		n = readlink(p, lnk, sizeof(lnk) - 1);
		ASSERT_TRUE(n > 0);
		lnk[n] = '\0';
		ASSERT_STREQ(lnk, "/etc/hostname");
		snprintf(p, sizeof(p), "%s/etc/up", f.rootfs);
		n = readlink(p, lnk, sizeof(lnk) - 1);
		ASSERT_TRUE(n > 0);
		lnk[n] = '\0';
		ASSERT_STREQ(lnk, "../../../../outside");
	}
	stat_rel(&f, "etc/rel", &a);
	ASSERT_TRUE(S_ISLNK(a.st_mode));
	/* Hard link: same inode. */
	stat_rel(&f, "etc/hostname", &a);
	stat_rel(&f, "etc/hard", &b);
	ASSERT_EQ(a.st_ino, b.st_ino);
	ASSERT_EQ(a.st_nlink, 2);
	stat_rel(&f, "run/fifo", &a);
	ASSERT_TRUE(S_ISFIFO(a.st_mode));
	/* Directory modes are applied after their contents were written. */
	stat_rel(&f, "ro", &a);
	ASSERT_EQ(a.st_mode & 07777, 0555);
	read_rel(&f, "ro/file", buf, sizeof(buf));
	ASSERT_STREQ(buf, "r");
	canary_intact(&f);
	fx_done(&f);
}

static void test_whiteouts(void)
{
	struct fx f;
	struct err err = {0};
	const struct ent l1[] = {
		{"a/x", 'f', "1"},	    {"a/y", 'f', "1"},	  {"b/z", 'f', "1"},
		{"b/sub/deep", 'f', "1"},   {"c/keep", 'f', "1"}, {"d/tree/t1", 'f', "1"},
		{"d/tree/t2/t3", 'f', "1"}, {"e/old", 'f', "1"},  {"x", 'f', "top"},
		{"o/keep/old", 'f', "1"},   {"o/gone", 'f', "1"},
	};
	const struct ent l2[] = {
		{"a/.wh.x", 'f', ""},
		{"b/.wh..wh..opq", 'f', ""},
		{"b/new", 'f', "2"},
		{"d/.wh.tree", 'f', ""},
		{"e/new", 'f', "2"},
		{"e/.wh..wh..opq", 'f', ""}, /* after a sibling: the sibling stays */
		{".wh.x", 'f', ""},
		{".wh..wh.plnk", 'f', ""},	 /* AUFS metadata: ignored */
		{"f/.wh.missing", 'f', ""},	 /* nothing to delete */
		{"x/.wh.under-a-file", 'f', ""}, /* parent is a file (deleted above): ignored */
		{"o/keep/new", 'f', "2"},
		{"o/.wh..wh..opq", 'f', ""}, /* after o/keep/new: it stays, lower content goes */
	};

	fx_init(&f, 0, 0);
	ASSERT_OK(fx_apply(&f, l1, ELEMENTSOF(l1), LAYER_PLAIN, false, &err));
	ASSERT_OK(fx_apply(&f, l2, ELEMENTSOF(l2), LAYER_ZSTD, false, &err));
	ASSERT_FALSE(path_exists(f.rootfs, "a/x"));
	ASSERT_TRUE(path_exists(f.rootfs, "a/y"));
	ASSERT_FALSE(path_exists(f.rootfs, "a/.wh.x"));
	ASSERT_FALSE(path_exists(f.rootfs, "b/z"));
	ASSERT_FALSE(path_exists(f.rootfs, "b/sub"));
	ASSERT_TRUE(path_exists(f.rootfs, "b/new"));
	ASSERT_FALSE(path_exists(f.rootfs, "b/.wh..wh..opq"));
	ASSERT_TRUE(path_exists(f.rootfs, "c/keep"));
	ASSERT_TRUE(path_exists(f.rootfs, "d"));
	ASSERT_FALSE(path_exists(f.rootfs, "d/tree"));
	ASSERT_TRUE(path_exists(f.rootfs, "e/new"));
	ASSERT_FALSE(path_exists(f.rootfs, "e/old"));
	ASSERT_FALSE(path_exists(f.rootfs, "x"));
	ASSERT_FALSE(path_exists(f.rootfs, ".wh..wh.plnk"));
	ASSERT_FALSE(path_exists(f.rootfs, "f/.wh.missing"));
	ASSERT_TRUE(path_exists(f.rootfs, "o/keep/new"));
	ASSERT_FALSE(path_exists(f.rootfs, "o/keep/old"));
	ASSERT_FALSE(path_exists(f.rootfs, "o/gone"));
	canary_intact(&f);
	fx_done(&f);
}

/* A later layer replaces a symlink by a file: the file must not be written through it. */
static void test_replace_symlink(void)
{
	struct fx f;
	struct err err = {0};
	char target[4200];
	struct stat st;
	const struct ent l1[] = {{"f", 'l', NULL}, {"d", 'd'}, {"d/in", 'f', "1"}};
	const struct ent l2[] = {{"f", 'f', "new"}, {"d", 'l', "/"}};
	struct ent l1c[3];

	fx_init(&f, 0, 0);
	memcpy(l1c, l1, sizeof(l1));
	snprintf(target, sizeof(target), "%s/secret", f.canary);
	l1c[0].data = target; /* absolute symlink to the canary, written as-is */
	ASSERT_OK(fx_apply(&f, l1c, 3, LAYER_PLAIN, false, &err));
	ASSERT_OK(fx_apply(&f, l2, 2, LAYER_PLAIN, false, &err));
	stat_rel(&f, "f", &st);
	ASSERT_TRUE(S_ISREG(st.st_mode));
	stat_rel(&f, "d", &st);
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	{
		char buf[8];
		int fd = open(target, O_RDONLY | O_CLOEXEC);
		ASSERT_TRUE(fd >= 0);
		ASSERT_EQ(read(fd, buf, sizeof(buf)), 1);
		close(fd);
	}
	canary_intact(&f);
	fx_done(&f);
}

/* Each hostile layer fails naming the layer and entry; the canary stays as it was. */
static void hostile(const struct ent *l, size_t n, const char *entry, int expect)
{
	struct fx f;
	struct err err = {0};
	int r;

	fx_init(&f, 0, 0);
	r = fx_apply(&f, l, n, LAYER_GZIP, false, &err);
	if (r != -expect)
		TEST_FAIL("entry %s: expected %s, got %d (%s)", entry, strerror(expect), r,
			  err.msg);
	ASSERT_TRUE(strstr(err.msg, "sha256:test") != NULL);
	if (entry && !strstr(err.msg, entry))
		TEST_FAIL("message does not name %s: %s", entry, err.msg);
	canary_intact(&f);
	fx_done(&f);
}

static void test_hostile_dotdot(void)
{
	const struct ent a[] = {{"../canary/pwn", 'f', "x"}};
	const struct ent b[] = {{"ok/../../canary/pwn", 'f', "x"}};
	const struct ent c[] = {{"a", 'd'}, {"a/..", 'd'}};

	hostile(a, 1, "../canary/pwn", EINVAL);
	hostile(b, 1, "ok/../../canary/pwn", EINVAL);
	hostile(c, 2, "a/..", EINVAL);
}

static void test_hostile_absolute(void)
{
	const struct ent a[] = {{"/tmp/mvmfs-pwn", 'f', "x"}};
	const struct ent b[] = {{"x", 'h', "/etc/passwd"}};

	hostile(a, 1, "/tmp/mvmfs-pwn", EINVAL);
	hostile(b, 1, "'x'", EINVAL);
	ASSERT_FALSE(access("/tmp/mvmfs-pwn", F_OK) == 0);
}

static void test_hostile_symlink_write_through(void)
{
	const struct ent a[] = {{"evil", 'l', "../canary"}, {"evil/pwn", 'f', "x"}};
	const struct ent b[] = {{"evil", 'l', "/"}, {"evil/tmp/mvmfs-pwn2", 'f', "x"}};
	const struct ent c[] = {{"evil", 'l', "../canary"}, {"evil/sub/", 'd'}};
	const struct ent d[] = {{"evil", 'l', "../canary"}, {"evil/.wh.secret", 'f', ""}};
	const struct ent e[] = {{"evil", 'l', "../canary"}, {"evil/.wh..wh..opq", 'f', ""}};
	const struct ent g[] = {{"evil", 'l', "../canary"}, {"evil/secret", 'h', "x"}};

	hostile(a, 2, "evil/pwn", ELOOP);
	hostile(b, 2, "evil/tmp/mvmfs-pwn2", ELOOP);
	hostile(c, 2, "evil/sub", ELOOP);
	hostile(d, 2, "evil/.wh.secret", ELOOP);
	hostile(e, 2, "evil/.wh..wh..opq", ELOOP);
	hostile(g, 2, "evil/secret", ELOOP);
	ASSERT_FALSE(access("/tmp/mvmfs-pwn2", F_OK) == 0);
}

static void test_hostile_hardlink(void)
{
	const struct ent a[] = {{"h", 'h', "../canary/secret"}};
	const struct ent b[] = {{"lnk", 'l', "../canary"}, {"h", 'h', "lnk/secret"}};
	const struct ent c[] = {{"h", 'h', "nothere"}};

	hostile(a, 1, "'h'", EINVAL);
	hostile(b, 2, "'h'", ELOOP);
	hostile(c, 1, "'h'", ENOENT);
}

static void test_hostile_long_paths(void)
{
	char *longp = malloc(5000), *longc = malloc(300);
	struct ent a[1] = {{NULL, 'f', "x"}}, b[1] = {{NULL, 'f', "x"}};

	ASSERT_TRUE(longp && longc);
	for (int i = 0; i < 4999; i++)
		longp[i] = i % 100 == 99 ? '/' : 'p';
	longp[4999] = '\0';
	memset(longc, 'c', 299);
	longc[299] = '\0';
	a[0].path = longp;
	b[0].path = longc;
	hostile(a, 1, NULL, ENAMETOOLONG);
	hostile(b, 1, NULL, ENAMETOOLONG);
	free(longp);
	free(longc);
}

static void test_limit_entries(void)
{
	struct fx f;
	struct err err = {0};
	struct ent l[20];
	char names[20][16];

	for (int i = 0; i < 20; i++) {
		snprintf(names[i], sizeof(names[i]), "f%d", i);
		l[i] = (struct ent){names[i], 'f', "x"};
	}
	fx_init(&f, 0, 10);
	ASSERT_ERRNO(fx_apply(&f, l, 20, LAYER_PLAIN, false, &err), E2BIG);
	ASSERT_TRUE(strstr(err.msg, "too many entries") != NULL);
	ASSERT_TRUE(strstr(err.msg, "f10") != NULL);
	ASSERT_FALSE(path_exists(f.rootfs, "f10"));
	canary_intact(&f);
	fx_done(&f);
}

static void test_limit_bytes(void)
{
	struct fx f;
	struct err err = {0};
	const struct ent big[] = {{"big", 'f', NULL, 0, 0, 0, 2 << 20}};
	const struct ent small[] = {{"a", 'f', NULL, 0, 0, 0, 600 << 10}};

	/* One file over the limit: refused from its header. */
	fx_init(&f, 1 << 20, 0);
	ASSERT_ERRNO(fx_apply(&f, big, 1, LAYER_GZIP, false, &err), EFBIG);
	ASSERT_TRUE(strstr(err.msg, "big") != NULL);
	canary_intact(&f);
	fx_done(&f);

	/* The limit spans layers: the second 600 KiB layer (compressed to almost nothing, a
	 * small bomb) goes over 1 MiB. */
	fx_init(&f, 1 << 20, 0);
	ASSERT_OK(fx_apply(&f, small, 1, LAYER_ZSTD, false, &err));
	ASSERT_ERRNO(fx_apply(&f, small, 1, LAYER_ZSTD, false, &err), EFBIG);
	ASSERT_TRUE(strstr(err.msg, "larger than") != NULL);
	fx_done(&f);
}

static void test_diff_id_mismatch(void)
{
	struct fx f;
	struct err err = {0};
	const struct ent l[] = {{"a", 'f', "1"}};

	fx_init(&f, 0, 0);
	ASSERT_ERRNO(fx_apply(&f, l, 1, LAYER_GZIP, true, &err), EBADMSG);
	ASSERT_TRUE(strstr(err.msg, "digest mismatch") != NULL);
	ASSERT_TRUE(strstr(err.msg, "sha256:test") != NULL);
	fx_done(&f);
}

static void test_garbage(void)
{
	struct fx f;
	struct err err = {0};
	char path[4200];
	int fd;
	static const char junk[] = "\x1f\x8b\x08\x00this is not really gzip at all, nor a tar";

	fx_init(&f, 0, 0);
	snprintf(path, sizeof(path), "%s/layer%d", f.tmp, f.n++);
	ASSERT_OK(write_file_atomic(path, junk, sizeof(junk), 0644));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_ERRNO(img_unpack_layer(&f.u, fd, "sha256:junk", NULL, &err), EBADMSG);
	ASSERT_TRUE(strstr(err.msg, "sha256:junk") != NULL);
	close(fd);
	canary_intact(&f);
	fx_done(&f);
}

static void test_xattr_user(void)
{
	struct fx f;
	struct err err = {0};
	char p[4200], v[16];
	const struct ent l[] = {{"x", 'f', "1", 0, 0, 0, 0, "user.mvmfs=yes"}};
	ssize_t n;

	fx_init(&f, 0, 0);
	snprintf(p, sizeof(p), "%s/probe", f.tmp);
	ASSERT_OK(write_file_atomic(p, "", 0, 0644));
	if (setxattr(p, "user.probe", "1", 1, 0) < 0) {
		fx_done(&f);
		test_skip("no user xattrs on TMPDIR");
	}
	unlink(p);
	ASSERT_OK(fx_apply(&f, l, 1, LAYER_PLAIN, false, &err));
	snprintf(p, sizeof(p), "%s/x", f.rootfs);
	n = getxattr(p, "user.mvmfs", v, sizeof(v));
	ASSERT_EQ(n, 3);
	ASSERT_TRUE(memcmp(v, "yes", 3) == 0);
	fx_done(&f);
}

static void test_root_owner_devices(void)
{
	struct fx f;
	struct err err = {0};
	struct stat st;
	const struct ent l[] = {
		{"dev/null", 'c', NULL, 0666, 0, 0, 0, NULL, 1, 3},
		{"home/u", 'd', NULL, 0700, 1234, 5678},
		{"home/u/f", 'f', "x", 04755, 1234, 5678},
		{"home/u/l", 'l', "f", 0, 1234, 5678},
		{"t", 'f', "x", 0755, 0, 0, 0, "trusted.mvmfs=t"},
	};

	if (geteuid() != 0)
		test_skip("needs root for devices and ownership");
	fx_init(&f, 0, 0);
	ASSERT_OK(fx_apply(&f, l, ELEMENTSOF(l), LAYER_GZIP, false, &err));
	stat_rel(&f, "dev/null", &st);
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(major(st.st_rdev), 1);
	ASSERT_EQ(minor(st.st_rdev), 3);
	ASSERT_EQ(st.st_mode & 07777, 0666);
	stat_rel(&f, "home/u", &st);
	ASSERT_EQ(st.st_uid, 1234);
	ASSERT_EQ(st.st_gid, 5678);
	ASSERT_EQ(st.st_mode & 07777, 0700);
	stat_rel(&f, "home/u/f", &st);
	ASSERT_EQ(st.st_uid, 1234);
	ASSERT_EQ(st.st_mode & 07777, 04755); /* setuid survives the chown */
	stat_rel(&f, "home/u/l", &st);
	ASSERT_EQ(st.st_uid, 1234);
	{
		char p[4200], v[4];
		snprintf(p, sizeof(p), "%s/t", f.rootfs);
		ASSERT_EQ(getxattr(p, "trusted.mvmfs", v, sizeof(v)), 1);
	}
	canary_intact(&f);
	fx_done(&f);
}

TEST_MAIN(TEST(test_basic_gzip), TEST(test_whiteouts), TEST(test_replace_symlink),
	  TEST(test_hostile_dotdot), TEST(test_hostile_absolute),
	  TEST(test_hostile_symlink_write_through), TEST(test_hostile_hardlink),
	  TEST(test_hostile_long_paths), TEST(test_limit_entries), TEST(test_limit_bytes),
	  TEST(test_diff_id_mismatch), TEST(test_garbage), TEST(test_xattr_user),
	  TEST(test_root_owner_devices))
