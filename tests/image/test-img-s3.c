/* SPDX-License-Identifier: MIT */
/*
 * The S3 source against a real S3-compatible server (@20minutes/s3rver, installed with npm by
 * registry-fixture.py) holding oci-archive tars written by skopeo.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"
#include "fileio.h"
#include "fixture.h"
#include "test.h"

static void use_env_creds(const char *secret)
{
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%s", fx("PORT_S3"));
	setenv("AWS_ENDPOINT_URL", url, 1);
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
	setenv("AWS_REGION", "us-east-1", 1);
	setenv("HOME", "/nonexistent", 1);
}

static int open_resolve(const char *s, struct img_source **src, struct img_manifest *m,
			struct err *err)
{
	struct img_store_config cfg = {.state_dir = fx_dir};
	struct img_ref ref;
	int r;

	ASSERT_OK(img_ref_parse(s, &ref, NULL));
	r = img_source_open(&cfg, &ref, NULL, src, err);
	if (r < 0)
		return r;
	r = img_source_resolve(*src, m, err);
	if (r < 0)
		printf("# %s\n", err->msg);
	return r;
}

static void fetch_all(struct img_source *src, const struct img_manifest *m)
{
	char dir[] = "/tmp/imgfetch-s3blobs-XXXXXX", path[512], got[IMG_DIGEST_MAX];
	struct err err = {};

	ASSERT_TRUE(mkdtemp(dir));
	for (size_t i = 0; i <= m->n_layers; i++) {
		const struct img_descriptor *d = i < m->n_layers ? &m->layers[i] : &m->config;

		snprintf(path, sizeof(path), "%s/%zu", dir, i);
		if (img_source_fetch_blob(src, d, path, NULL, NULL, &err) < 0)
			TEST_FAIL("%s", err.msg);
		ASSERT_OK(img_digest_file(path, got));
		ASSERT_STREQ(got, d->digest);
	}
	ASSERT_OK(rm_rf(dir));
}

static void test_pull_archive(void)
{
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct err err = {};

	use_env_creds("S3RVER");
	ASSERT_OK(open_resolve("s3://images/oci/simple.tar", &src, &m, &err));
	ASSERT_STREQ(m.digest, fx("SIMPLE_DIGEST"));
	ASSERT_EQ(m.n_layers, 2);
	fetch_all(src, &m);
	img_manifest_done(&m);
	img_source_free(src);
}

static void test_multi_platform_archive(void)
{
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct img_platform host;
	struct err err = {};

	img_platform_host(&host);
	use_env_creds("S3RVER");
	ASSERT_OK(open_resolve("s3://images/oci/multi.tar", &src, &m, &err));
	if (strcmp(host.arch, "amd64") == 0)
		ASSERT_STREQ(m.digest, fx("AMD64_DIGEST"));
	fetch_all(src, &m);
	img_manifest_done(&m);
	img_source_free(src);
}

static void test_profile_files(void)
{
	char home[300], dir[400], text[400];
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct err err = {};

	use_env_creds("unused");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_REGION");
	snprintf(home, sizeof(home), "%s/home-%d", fx_dir, getpid());
	snprintf(dir, sizeof(dir), "%s/.aws", home);
	ASSERT_OK(mkdir_p(dir, 0700));
	snprintf(dir, sizeof(dir), "%s/.aws/credentials", home);
	snprintf(text, sizeof(text),
		 "[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n"
		 "[ci]\n# the test server's built-in key\naws_access_key_id = S3RVER\n"
		 "aws_secret_access_key=S3RVER\n");
	ASSERT_OK(write_file_atomic(dir, text, strlen(text), 0600));
	snprintf(dir, sizeof(dir), "%s/.aws/config", home);
	snprintf(text, sizeof(text), "[profile ci]\nregion = us-east-1\n");
	ASSERT_OK(write_file_atomic(dir, text, strlen(text), 0600));
	setenv("HOME", home, 1);
	setenv("AWS_PROFILE", "ci", 1);
	ASSERT_OK(open_resolve("s3://images/oci/simple.tar", &src, &m, &err));
	ASSERT_STREQ(m.digest, fx("SIMPLE_DIGEST"));
	img_manifest_done(&m);
	img_source_free(src);

	/* The default profile's wrong key is refused by the server. */
	unsetenv("AWS_PROFILE");
	ASSERT_ERRNO(open_resolve("s3://images/oci/simple.tar", &src, &m, &err), EACCES);
	img_source_free(src);
}

static void test_wrong_secret(void)
{
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct err err = {};

	use_env_creds("not-the-secret");
	ASSERT_ERRNO(open_resolve("s3://images/oci/simple.tar", &src, &m, &err), EACCES);
	ASSERT_TRUE(strstr(err.msg, "s3://images/oci/simple.tar"));
	img_source_free(src);
}

static void test_missing_object(void)
{
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct err err = {};

	use_env_creds("S3RVER");
	ASSERT_ERRNO(open_resolve("s3://images/oci/nope.tar", &src, &m, &err), ENOENT);
	ASSERT_TRUE(strstr(err.msg, "NoSuchKey"));
	img_source_free(src);
	src = NULL;
	ASSERT_ERRNO(open_resolve("s3://nobucket/oci/simple.tar", &src, &m, &err), ENOENT);
	img_source_free(src);
}

static void test_tampered_blob(void)
{
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct err err = {};
	char path[512];
	struct stat st;
	bool found = false;

	use_env_creds("S3RVER");
	ASSERT_OK(open_resolve("s3://images/oci/tampered.tar", &src, &m, &err));
	snprintf(path, sizeof(path), "%s/tampered-%d", fx_dir, getpid());
	for (size_t i = 0; i < m.n_layers; i++) {
		if (strcmp(m.layers[i].digest, fx("TAMPERED_BLOB")) != 0)
			continue;
		found = true;
		ASSERT_ERRNO(img_source_fetch_blob(src, &m.layers[i], path, NULL, NULL, &err),
			     EBADMSG);
		ASSERT_TRUE(strstr(err.msg, "digest mismatch"));
		ASSERT_SYSERR(stat(path, &st), ENOENT);
	}
	ASSERT_TRUE(found);
	img_manifest_done(&m);
	img_source_free(src);
}

static void test_size_limit(void)
{
	struct img_store_config cfg = {.state_dir = fx_dir, .max_image_bytes = 1000};
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct img_ref ref;
	struct err err = {};

	use_env_creds("S3RVER");
	ASSERT_OK(img_ref_parse("s3://images/oci/simple.tar", &ref, NULL));
	ASSERT_OK(img_source_open(&cfg, &ref, NULL, &src, &err));
	ASSERT_ERRNO(img_source_resolve(src, &m, &err), EFBIG);
	img_source_free(src);
}

/* Requests the counting proxy saw, "METHOD /bucket/key". */
static int count_requests(const char *method, const char *path)
{
	char line[1200], want[1100];
	FILE *f = fopen(fx("S3_COUNT_LOG"), "re");
	int n = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), "%s %s\n", method, path);
	while (fgets(line, sizeof(line), f))
		n += strcmp(line, want) == 0;
	fclose(f);
	return n;
}

static void upload(const char *archive, const char *key)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "curl -sf -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER "
		 "-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --data-binary @%s/%s "
		 "http://127.0.0.1:%s/images/%s",
		 fx_dir, archive, fx("PORT_S3"), key);
	ASSERT_EQ(system(cmd), 0);
}

static void prepare(struct img_store *st, const char *ref, const char *holder,
		    struct img_prepared *ret)
{
	struct err err = {};

	if (img_prepare(st, ref, holder, NULL, NULL, NULL, ret, &err) < 0)
		TEST_FAIL("prepare %s: %s", ref, err.msg);
}

/* A warm start asks S3 with a HEAD whether the object changed and downloads it only when it
 * did; with S3 down it starts from the cache. */
static void test_warm_start(void)
{
	static const char *ref = "s3://images/oci/warm.tar", *path = "/images/oci/warm.tar";
	char state[] = "/tmp/mvmfs-s3-warm-XXXXXX", url[128], first[IMG_DIGEST_MAX];
	struct img_store_config cfg = {.state_dir = state, .keep_bytes = 1ull << 30};
	struct img_store *st = NULL;
	struct img_prepared p;
	struct img_platform host;
	struct err err = {};

	img_platform_host(&host);
	use_env_creds("S3RVER");
	snprintf(url, sizeof(url), "http://127.0.0.1:%s", fx("PORT_S3_COUNT"));
	setenv("AWS_ENDPOINT_URL", url, 1);
	upload("simple.tar", "oci/warm.tar");
	ASSERT_TRUE(mkdtemp(state));
	if (img_store_new(&cfg, &st, &err) < 0)
		TEST_FAIL("store: %s", err.msg);

	prepare(st, ref, "vm1", &p);
	ASSERT_STREQ(p.digest, fx("SIMPLE_DIGEST"));
	ASSERT_EQ(count_requests("GET", path), 1);
	ASSERT_EQ(count_requests("HEAD", path), 1);
	prepare(st, ref, "vm2", &p);
	ASSERT_STREQ(p.digest, fx("SIMPLE_DIGEST"));
	ASSERT_EQ(count_requests("GET", path), 1);
	ASSERT_EQ(count_requests("HEAD", path), 2);

	/* A restarted daemon: the record is on disk. */
	st = img_store_free(st);
	if (img_store_new(&cfg, &st, &err) < 0)
		TEST_FAIL("store: %s", err.msg);
	prepare(st, ref, "vm1", &p);
	ASSERT_STREQ(p.digest, fx("SIMPLE_DIGEST"));
	ASSERT_EQ(count_requests("GET", path), 1);

	/* Re-uploaded with other content: pulled again, then warm again. */
	snprintf(first, sizeof(first), "%s", p.digest);
	upload("multi.tar", "oci/warm.tar");
	prepare(st, ref, "vm1", &p);
	ASSERT_EQ(count_requests("GET", path), 2);
	ASSERT_TRUE(strcmp(p.digest, first) != 0);
	if (strcmp(host.arch, "amd64") == 0)
		ASSERT_STREQ(p.digest, fx("AMD64_DIGEST"));
	snprintf(first, sizeof(first), "%s", p.digest);
	prepare(st, ref, "vm2", &p);
	ASSERT_STREQ(p.digest, first);
	ASSERT_EQ(count_requests("GET", path), 2);

	/* S3 unreachable: the cached resolution. */
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
	prepare(st, ref, "vm3", &p);
	ASSERT_STREQ(p.digest, first);

	st = img_store_free(st);
	ASSERT_OK(rm_rf(state));
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_pull_archive),   TEST(test_multi_platform_archive),
		TEST(test_profile_files),  TEST(test_wrong_secret),
		TEST(test_missing_object), TEST(test_tampered_blob),
		TEST(test_size_limit),	   TEST(test_warm_start),
	};
	const char *src = getenv("MVMFS_SRCDIR"), *build = getenv("MVMFS_BUILDDIR");
	char tmpl[] = "/tmp/mvmfs-imgfetch-s3-XXXXXX", args[1024];
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!src || !build || !mkdtemp(tmpl)) {
		printf("1..0 # SKIP no MVMFS_SRCDIR/MVMFS_BUILDDIR or temp dir\n");
		return 77;
	}
	snprintf(args, sizeof(args), "%s/npm-s3rver", build);
	r = fx_up(src, tmpl, "s3-up", args, "S3 fixture",
		  "S3 test server unavailable (node/npm/@20minutes/s3rver)");
	if (r != 0) {
		rmdir(tmpl);
		return r;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = test_run(cases, ELEMENTSOF(cases));
	fx_down(src);
	(void)rmdir(tmpl);
	curl_global_cleanup();
	return r;
}
