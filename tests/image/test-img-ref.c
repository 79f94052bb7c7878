/* SPDX-License-Identifier: MIT */
/* Image reference parsing: Docker's grammar and defaults, S3 form, formatting round trips. */
#include "fetch.h"
#include "test.h"

struct ok_case {
	const char *in, *registry, *repository, *tag, *digest, *canonical;
};

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct ok_case ok_cases[] = {
	{"busybox", "docker.io", "library/busybox", "latest", "",
	 "docker.io/library/busybox:latest"},
	{"busybox:1.36", "docker.io", "library/busybox", "1.36", "", NULL},
	{"library/busybox", "docker.io", "library/busybox", "latest", "", NULL},
	{"user/app:v1", "docker.io", "user/app", "v1", "", NULL},
	{"docker.io/busybox", "docker.io", "library/busybox", "latest", "", NULL},
	{"index.docker.io/busybox", "docker.io", "library/busybox", "latest", "", NULL},
	{"docker.io/a/b/c", "docker.io", "a/b/c", "latest", "", NULL},
	{"quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd", "v3.5.0", "", NULL},
	{"localhost/app", "localhost", "app", "latest", "", NULL},
	{"localhost:5000/app:tag", "localhost:5000", "app", "tag", "", NULL},
	{"127.0.0.1:5000/test/simple:1", "127.0.0.1:5000", "test/simple", "1", "", NULL},
	{"[::1]:5000/app", "[::1]:5000", "app", "latest", "", "[::1]:5000/app:latest"},
	{"[fe80::1]/app:x", "[fe80::1]", "app", "x", "", NULL},
	{"Registry.Example/app", "Registry.Example", "app", "latest", "", NULL},
	{"busybox@sha256:" D64, "docker.io", "library/busybox", "", "sha256:" D64,
	 "docker.io/library/busybox@sha256:" D64},
	{"busybox:1@sha256:" D64, "docker.io", "library/busybox", "1", "sha256:" D64, NULL},
	{"localhost:5000/a@sha256:" D64, "localhost:5000", "a", "", "sha256:" D64, NULL},
	{"a.b/x__y.z-w---v", "a.b", "x__y.z-w---v", "latest", "", NULL},
	{"app:_Tag.-x", "docker.io", "library/app", "_Tag.-x", "", NULL},
	/* localhost:5000 alone is an image "localhost" tagged 5000, as Docker reads it */
	{"localhost:5000", "docker.io", "library/localhost", "5000", "", NULL},
};

static const char *const bad_cases[] = {
	"",
	"Busybox",
	"busybox:",
	":tag",
	"busybox:-tag",
	"busybox:.tag",
	"busybox:t@g",
	"/busybox",
	"busybox/",
	"a//b",
	"a/-b",
	"a/b-",
	"a/b.",
	"a/.b",
	"a/b___c",
	"a/b..c",
	"host:0/app",
	"host:65536/app",
	"host:port/app",
	"host:/app",
	"-host.com/app",
	"host-.com/app",
	"ho_st.com/app",
	"[::1/app",
	"[]:5000/app",
	"[::g]/app",
	"[1.2.3.4]/app",
	"busybox@sha256:abc",
	"busybox@sha256:" D64 "0",
	"busybox@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	"busybox@sha512:" D64 D64,
	"busybox@",
	"bus ybox",
	"busybox\n",
	"http://registry/app",
	"docker.io/" D64,
	D64,
	"s3://",
	"s3://bucket",
	"s3://bucket/",
	"s3://bu/key",
	"s3://Bucket/key",
	"s3://-bucket/key",
	"s3://bucket-/key",
	"s3://buc..ket/key",
	"s3://192.168.1.1/key",
	"s3://xn--bucket/key",
	"s3://bucket-s3alias/key",
	"s3://bucket//key",
	"s3://bucket/a/../b",
	"s3://bucket/./b",
	"s3://bucket/a/..",
	"s3://bucket_x/key",
};

static void test_ok(void)
{
	for (size_t i = 0; i < ELEMENTSOF(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		struct img_ref ref, again;
		struct err err = {};
		char buf[IMG_REF_MAX];

		if (img_ref_parse(c->in, &ref, &err) < 0)
			TEST_FAIL("'%s': %s", c->in, err.msg);
		ASSERT_STREQ(ref.registry, c->registry);
		ASSERT_STREQ(ref.repository, c->repository);
		ASSERT_STREQ(ref.tag, c->tag);
		ASSERT_STREQ(ref.digest, c->digest);
		ASSERT_FALSE(ref.is_s3);
		ASSERT_TRUE(img_ref_format(&ref, buf, sizeof(buf)) > 0);
		if (c->canonical)
			ASSERT_STREQ(buf, c->canonical);
		/* The canonical form parses back to the same reference. */
		ASSERT_OK(img_ref_parse(buf, &again, NULL));
		ASSERT_STREQ(again.registry, ref.registry);
		ASSERT_STREQ(again.repository, ref.repository);
		ASSERT_STREQ(again.tag, ref.tag);
		ASSERT_STREQ(again.digest, ref.digest);
	}
}

static void test_bad(void)
{
	for (size_t i = 0; i < ELEMENTSOF(bad_cases); i++) {
		struct img_ref ref;
		struct err err = {};
		int r = img_ref_parse(bad_cases[i], &ref, &err);

		if (r != -EINVAL)
			TEST_FAIL("'%s' parsed (r=%d)", bad_cases[i], r);
		ASSERT_EQ(err.code, -EINVAL);
		ASSERT_TRUE(err.msg[0] != '\0');
	}
}

static void test_messages_name_the_problem(void)
{
	struct img_ref ref;
	struct err err = {};

	ASSERT_ERRNO(img_ref_parse("Busybox", &ref, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "lowercase"));
	ASSERT_ERRNO(img_ref_parse("busybox@sha512:" D64 D64, &ref, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "digest algorithm"));
	ASSERT_ERRNO(img_ref_parse("host:99999/a", &ref, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "port"));
	ASSERT_ERRNO(img_ref_parse("s3://b/key", &ref, &err), EINVAL);
	ASSERT_TRUE(strstr(err.msg, "bucket"));
}

static void test_length_limits(void)
{
	char name[400], tag[200];
	struct img_ref ref;

	/* Name of exactly 255 characters is fine, 256 is not. */
	memset(name, 'a', 255);
	name[255] = '\0';
	memcpy(name, "x.io/", 5);
	ASSERT_OK(img_ref_parse(name, &ref, NULL));
	memset(name, 'a', 256);
	name[256] = '\0';
	memcpy(name, "x.io/", 5);
	ASSERT_ERRNO(img_ref_parse(name, &ref, NULL), EINVAL);
	/* One-component docker.io names gain "library/" and must still fit. */
	memset(name, 'b', 250);
	name[250] = '\0';
	ASSERT_ERRNO(img_ref_parse(name, &ref, NULL), EINVAL);

	snprintf(name, sizeof(name), "app:");
	memset(tag, 't', 128);
	tag[128] = '\0';
	strcat(name, tag);
	ASSERT_OK(img_ref_parse(name, &ref, NULL));
	ASSERT_EQ(strlen(ref.tag), 128);
	strcat(name, "t");
	ASSERT_ERRNO(img_ref_parse(name, &ref, NULL), EINVAL);
}

static void test_s3(void)
{
	struct img_ref ref;
	char buf[IMG_REF_MAX], key[1100];

	ASSERT_OK(img_ref_parse("s3://images/oci/simple.tar", &ref, NULL));
	ASSERT_TRUE(ref.is_s3);
	ASSERT_STREQ(ref.s3_bucket, "images");
	ASSERT_STREQ(ref.s3_key, "oci/simple.tar");
	ASSERT_TRUE(img_ref_format(&ref, buf, sizeof(buf)) > 0);
	ASSERT_STREQ(buf, "s3://images/oci/simple.tar");
	ASSERT_ERRNO(img_ref_parse("s3://my.bucket-1/a b", &ref, NULL), EINVAL);
	ASSERT_OK(img_ref_parse("s3://my.bucket-1/a?c#d%20e@f", &ref, NULL));
	ASSERT_STREQ(ref.s3_key, "a?c#d%20e@f");

	snprintf(key, sizeof(key), "s3://abc/");
	memset(key + 9, 'k', 1023);
	key[9 + 1023] = '\0';
	ASSERT_OK(img_ref_parse(key, &ref, NULL));
	key[9 + 1023] = 'k';
	key[9 + 1024] = '\0';
	ASSERT_ERRNO(img_ref_parse(key, &ref, NULL), EINVAL);
}

static void test_format_small_buffer(void)
{
	struct img_ref ref;
	char buf[8];

	ASSERT_OK(img_ref_parse("busybox", &ref, NULL));
	ASSERT_ERRNO(img_ref_format(&ref, buf, sizeof(buf)), ENOBUFS);
}

static void test_digest_is_valid(void)
{
	ASSERT_TRUE(img_digest_is_valid("sha256:" D64));
	ASSERT_FALSE(img_digest_is_valid("sha256:" D64 "a"));
	ASSERT_FALSE(img_digest_is_valid("sha256:0123"));
	ASSERT_FALSE(img_digest_is_valid("sha512:" D64));
	ASSERT_FALSE(img_digest_is_valid("SHA256:" D64));
	ASSERT_FALSE(img_digest_is_valid(NULL));
	ASSERT_FALSE(img_digest_is_valid(""));
}

static void test_digest_file(void)
{
	char path[] = "/tmp/imgfetch-digest-XXXXXX", d[IMG_DIGEST_MAX];
	int fd = mkstemp(path);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, "abc", 3), 3);
	close(fd);
	ASSERT_OK(img_digest_file(path, d));
	ASSERT_STREQ(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ASSERT_OK(img_digest_buf("", 0, d));
	ASSERT_STREQ(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	unlink(path);
	ASSERT_ERRNO(img_digest_file(path, d), ENOENT);
}

TEST_MAIN(TEST(test_ok), TEST(test_bad), TEST(test_messages_name_the_problem),
	  TEST(test_length_limits), TEST(test_s3), TEST(test_format_small_buffer),
	  TEST(test_digest_is_valid), TEST(test_digest_file))
