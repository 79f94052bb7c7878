/* SPDX-License-Identifier: MIT */
/*
 * The registry source against real docker-registry instances (anonymous, htpasswd, bearer
 * token) started by registry-fixture.py with hand-built images pushed by skopeo.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"
#include "fileio.h"
#include "fixture.h"
#include "test.h"

struct pull {
	char insecure_entry[64];
	const char *insecure[2];
	char docker_config[512];
	struct img_store_config cfg;
	struct img_source *src;
	struct img_manifest m;
	struct err err;
};

/* A docker config.json for the fixture's registries, good or bad password. */
static void write_docker_config(struct pull *p, const char *port_key, const char *password)
{
	char auth[256], cmd[1024], json[1024];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "printf %%s '%s:%s' | base64 -w0", fx("USER"), password);
	f = popen(cmd, "re");
	ASSERT_TRUE(f && fgets(auth, sizeof(auth), f));
	pclose(f);
	snprintf(p->docker_config, sizeof(p->docker_config), "%s/config-%d.json", fx_dir, getpid());
	snprintf(json, sizeof(json), "{\"auths\":{\"http://127.0.0.1:%s/v2/\":{\"auth\":\"%s\"}}}",
		 fx(port_key), auth);
	ASSERT_OK(write_file_atomic(p->docker_config, json, strlen(json), 0600));
}

static int open_ref(struct pull *p, const char *port_key, const char *rest)
{
	char s[512];
	struct img_ref ref;

	snprintf(p->insecure_entry, sizeof(p->insecure_entry), "127.0.0.1:%s", fx(port_key));
	p->insecure[0] = p->insecure_entry;
	if (!p->docker_config[0])
		snprintf(p->docker_config, sizeof(p->docker_config), "%s/no-such-config.json",
			 fx_dir);
	p->cfg.insecure = p->insecure;
	p->cfg.docker_config = p->docker_config;
	snprintf(s, sizeof(s), "127.0.0.1:%s/%s", fx(port_key), rest);
	ASSERT_OK(img_ref_parse(s, &ref, NULL));
	return img_source_open(&p->cfg, &ref, NULL, &p->src, &p->err);
}

static int resolve(struct pull *p, const char *port_key, const char *rest)
{
	int r = open_ref(p, port_key, rest);

	if (r < 0)
		return r;
	r = img_source_resolve(p->src, &p->m, &p->err);
	if (r < 0)
		printf("# %s\n", p->err.msg);
	return r;
}

static uint64_t last_bytes;
static void count_bytes(void *ud, uint64_t bytes)
{
	ASSERT_TRUE(bytes >= last_bytes);
	last_bytes = bytes;
	(*(unsigned *)ud)++;
}

/* Fetch every blob of p->m into a temp dir and check each file's digest. */
static void fetch_all(struct pull *p)
{
	char dir[] = "/tmp/imgfetch-blobs-XXXXXX", path[512], got[IMG_DIGEST_MAX];
	unsigned calls = 0;

	ASSERT_TRUE(mkdtemp(dir));
	for (size_t i = 0; i <= p->m.n_layers; i++) {
		const struct img_descriptor *d = i < p->m.n_layers ? &p->m.layers[i] : &p->m.config;

		snprintf(path, sizeof(path), "%s/%zu", dir, i);
		last_bytes = 0;
		ASSERT_OK(img_source_fetch_blob(p->src, d, path, count_bytes, &calls, &p->err));
		ASSERT_EQ(last_bytes, d->size);
		ASSERT_OK(img_digest_file(path, got));
		ASSERT_STREQ(got, d->digest);
	}
	ASSERT_TRUE(calls > 0);
	ASSERT_OK(rm_rf(dir));
}

static void test_anonymous_oci(void)
{
	struct pull p = {};

	ASSERT_OK(resolve(&p, "PORT_ANON", "test/simple:1"));
	ASSERT_STREQ(p.m.digest, fx("SIMPLE_DIGEST"));
	ASSERT_EQ(p.m.n_layers, 2);
	ASSERT_STREQ(p.m.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
	ASSERT_STREQ(p.m.config.media_type, "application/vnd.oci.image.config.v1+json");
	fetch_all(&p);
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

static void test_pull_by_digest(void)
{
	struct pull p = {}, q = {};
	char rest[256];

	snprintf(rest, sizeof(rest), "test/simple@%s", fx("SIMPLE_DIGEST"));
	ASSERT_OK(resolve(&p, "PORT_ANON", rest));
	ASSERT_STREQ(p.m.digest, fx("SIMPLE_DIGEST"));
	img_manifest_done(&p.m);
	img_source_free(p.src);

	snprintf(rest, sizeof(rest), "test/simple@sha256:%064d", 0);
	ASSERT_ERRNO(resolve(&q, "PORT_ANON", rest), ENOENT);
	img_source_free(q.src);
}

static void test_docker_schema2(void)
{
	struct pull p = {};

	ASSERT_OK(resolve(&p, "PORT_ANON", "test/docker:1"));
	ASSERT_EQ(p.m.n_layers, 2);
	ASSERT_STREQ(p.m.layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");
	ASSERT_STREQ(p.m.config.media_type, "application/vnd.docker.container.image.v1+json");
	fetch_all(&p);
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

static void test_uncompressed_and_zstd_layers(void)
{
	struct pull p = {};

	ASSERT_OK(resolve(&p, "PORT_ANON", "test/mixed:1"));
	ASSERT_STREQ(p.m.digest, fx("MIXED_DIGEST"));
	ASSERT_EQ(p.m.n_layers, 2);
	ASSERT_STREQ(p.m.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar");
	ASSERT_STREQ(p.m.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
	fetch_all(&p);
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

static void test_multi_platform_index(void)
{
	struct pull p = {};
	struct img_platform host;

	img_platform_host(&host);
	ASSERT_OK(resolve(&p, "PORT_ANON", "test/multi:1"));
	if (strcmp(host.arch, "amd64") == 0)
		ASSERT_STREQ(p.m.digest, fx("AMD64_DIGEST"));
	else if (strcmp(host.arch, "arm64") == 0)
		ASSERT_STREQ(p.m.digest, fx("ARM64_DIGEST"));
	fetch_all(&p);
	img_manifest_done(&p.m);

	/* The other platform (arm64 has variant v8 in the index, none asked). */
	snprintf(p.src->platform.arch, sizeof(p.src->platform.arch), "arm64");
	p.src->platform.variant[0] = '\0';
	ASSERT_OK(img_source_resolve(p.src, &p.m, &p.err));
	ASSERT_STREQ(p.m.digest, fx("ARM64_DIGEST"));
	img_manifest_done(&p.m);

	snprintf(p.src->platform.arch, sizeof(p.src->platform.arch), "s390x");
	ASSERT_ERRNO(img_source_resolve(p.src, &p.m, &p.err), ENOENT);
	ASSERT_TRUE(strstr(p.err.msg, "linux/s390x"));
	img_source_free(p.src);
}

static void test_basic_auth(void)
{
	struct pull p = {}, none = {}, bad = {};

	write_docker_config(&p, "PORT_BASIC", fx("PASSWORD"));
	ASSERT_OK(resolve(&p, "PORT_BASIC", "test/simple:1"));
	ASSERT_STREQ(p.m.digest, fx("SIMPLE_DIGEST"));
	fetch_all(&p);
	img_manifest_done(&p.m);
	img_source_free(p.src);

	ASSERT_ERRNO(resolve(&none, "PORT_BASIC", "test/simple:1"), EACCES);
	ASSERT_TRUE(strstr(none.err.msg, "unauthorized"));
	ASSERT_TRUE(strstr(none.err.msg, "registry 127.0.0.1:"));
	img_source_free(none.src);

	write_docker_config(&bad, "PORT_BASIC", "wrong");
	ASSERT_ERRNO(resolve(&bad, "PORT_BASIC", "test/simple:1"), EACCES);
	img_source_free(bad.src);
}

static void test_bearer_auth(void)
{
	struct pull p = {}, none = {}, bad = {};

	write_docker_config(&p, "PORT_TOKEN", fx("PASSWORD"));
	ASSERT_OK(resolve(&p, "PORT_TOKEN", "test/simple:1"));
	ASSERT_STREQ(p.m.digest, fx("SIMPLE_DIGEST"));
	fetch_all(&p);
	img_manifest_done(&p.m);
	img_source_free(p.src);

	/* Anonymous token without pull access: the registry still says no. */
	ASSERT_ERRNO(resolve(&none, "PORT_TOKEN", "test/simple:1"), EACCES);
	img_source_free(none.src);

	write_docker_config(&bad, "PORT_TOKEN", "wrong");
	ASSERT_ERRNO(resolve(&bad, "PORT_TOKEN", "test/simple:1"), EACCES);
	ASSERT_TRUE(strstr(bad.err.msg, "token endpoint"));
	img_source_free(bad.src);
}

static void test_unknown_image(void)
{
	struct pull a = {}, b = {};

	ASSERT_ERRNO(resolve(&a, "PORT_ANON", "test/nosuchrepo:1"), ENOENT);
	ASSERT_TRUE(strstr(a.err.msg, "unknown"));
	img_source_free(a.src);
	ASSERT_ERRNO(resolve(&b, "PORT_ANON", "test/simple:nosuchtag"), ENOENT);
	ASSERT_TRUE(strstr(b.err.msg, "manifest unknown"));
	img_source_free(b.src);
}

static void test_registry_down(void)
{
	struct img_store_config cfg = {.docker_config = "/nonexistent/config.json"};
	const char *insecure[2] = {NULL, NULL};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	socklen_t sl = sizeof(sa);
	struct img_source *src = NULL;
	struct img_manifest m = {};
	struct img_ref ref;
	struct err err = {};
	char s[128], entry[64];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* A port that was just free: nothing listens there. */
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &sl));
	close(fd);
	snprintf(entry, sizeof(entry), "127.0.0.1:%u", ntohs(sa.sin_port));
	insecure[0] = entry;
	cfg.insecure = insecure;
	snprintf(s, sizeof(s), "%s/test/simple:1", entry);
	ASSERT_OK(img_ref_parse(s, &ref, NULL));
	ASSERT_OK(img_source_open(&cfg, &ref, NULL, &src, &err));
	ASSERT_ERRNO(img_source_resolve(src, &m, &err), EHOSTUNREACH);
	ASSERT_TRUE(strstr(err.msg, entry));
	img_source_free(src);
}

static void test_https_by_default(void)
{
	struct pull p = {};
	struct img_ref ref;
	char s[128];

	/* Not in the insecure list: we speak TLS to a plain-HTTP registry and fail. */
	snprintf(s, sizeof(s), "127.0.0.1:%s/test/simple:1", fx("PORT_ANON"));
	ASSERT_OK(img_ref_parse(s, &ref, NULL));
	p.cfg.docker_config = "/nonexistent/config.json";
	ASSERT_OK(img_source_open(&p.cfg, &ref, NULL, &p.src, &p.err));
	ASSERT_ERRNO(img_source_resolve(p.src, &p.m, &p.err), EHOSTUNREACH);
	img_source_free(p.src);
}

static void test_tampered_blob(void)
{
	struct pull p = {};
	char data[1024], path[512], pattern[600];
	const char *hex;
	int fd;
	unsigned char c;
	struct stat st;

	ASSERT_OK(resolve(&p, "PORT_ANON", "test/tamper:1"));
	ASSERT_EQ(p.m.n_layers, 1);
	hex = p.m.layers[0].digest + 7;
	snprintf(data, sizeof(data), "%s/docker/registry/v2/blobs/sha256/%.2s/%s/data",
		 fx("ANON_DATA"), hex, hex);
	fd = open(data, O_RDWR | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(pread(fd, &c, 1, 20), 1);
	c ^= 0xff;
	ASSERT_EQ(pwrite(fd, &c, 1, 20), 1);
	close(fd);

	snprintf(path, sizeof(path), "%s/tampered-%d", fx_dir, getpid());
	ASSERT_ERRNO(img_source_fetch_blob(p.src, &p.m.layers[0], path, NULL, NULL, &p.err),
		     EBADMSG);
	ASSERT_TRUE(strstr(p.err.msg, "digest mismatch"));
	ASSERT_SYSERR(stat(path, &st), ENOENT);
	/* No temp file left behind either. */
	snprintf(pattern, sizeof(pattern), "ls %s | grep -q tampered-%d", fx_dir, getpid());
	ASSERT_TRUE(system(pattern) != 0);
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

static void test_descriptor_size_checked(void)
{
	struct pull p = {};
	struct img_descriptor d;
	char path[512];

	ASSERT_OK(resolve(&p, "PORT_ANON", "test/simple:1"));
	snprintf(path, sizeof(path), "%s/size-%d", fx_dir, getpid());
	d = p.m.layers[1];
	d.size -= 1;
	ASSERT_ERRNO(img_source_fetch_blob(p.src, &d, path, NULL, NULL, &p.err), EBADMSG);
	d.size += 2;
	ASSERT_ERRNO(img_source_fetch_blob(p.src, &d, path, NULL, NULL, &p.err), EBADMSG);
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

static void test_unknown_config_media_type(void)
{
	struct pull p = {};

	ASSERT_ERRNO(resolve(&p, "PORT_ANON", "test/bogus:1"), EPROTONOSUPPORT);
	ASSERT_TRUE(strstr(p.err.msg, "application/vnd.example.bogus.config.v1+json"));
	img_source_free(p.src);
}

static void test_unknown_layer_media_type(void)
{
	struct pull p = {};

	ASSERT_ERRNO(resolve(&p, "PORT_ANON", "test/bogus-layer:1"), EPROTONOSUPPORT);
	ASSERT_TRUE(strstr(p.err.msg, "layer media type 'application/vnd.example.bogus.layer.v1'"));
	img_source_free(p.src);
}

static void test_schema1_refused(void)
{
	struct pull p = {};

	/* The flaky proxy plays an old registry for this one tag. */
	ASSERT_ERRNO(resolve(&p, "PORT_FLAKY", "test/simple:schema1"), EPROTONOSUPPORT);
	ASSERT_TRUE(strstr(p.err.msg, "schema 1"));
	img_source_free(p.src);
}

static bool log_has(const char *file, const char *needle)
{
	char line[256];
	bool found = false;
	FILE *f = fopen(file, "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static void test_broken_transfer_resumed(void)
{
	struct pull p = {};

	/* The proxy sends half of each blob's first transfer, then hangs up. */
	ASSERT_OK(resolve(&p, "PORT_FLAKY", "test/big:1"));
	ASSERT_STREQ(p.m.digest, fx("BIG_DIGEST"));
	ASSERT_TRUE(p.m.layers[0].size > 700 * 1024);
	fetch_all(&p);
	ASSERT_TRUE(log_has(fx("FLAKY_LOG"), "cut"));
	ASSERT_TRUE(log_has(fx("FLAKY_LOG"), "range bytes="));
	ASSERT_TRUE(log_has(fx("FLAKY_LOG"), "-> 206"));
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

static void test_redirect_drops_credentials(void)
{
	struct pull p = {};

	/* Blob GETs on this basic-auth registry are redirected to another port. */
	write_docker_config(&p, "PORT_REDIRECT", fx("PASSWORD"));
	ASSERT_OK(resolve(&p, "PORT_REDIRECT", "test/simple:1"));
	fetch_all(&p);
	ASSERT_TRUE(log_has(fx("REDIRECT_LOG"), "redirect"));
	ASSERT_TRUE(log_has(fx("REDIRECT_LOG"), "storage auth=absent"));
	ASSERT_FALSE(log_has(fx("REDIRECT_LOG"), "storage auth=present"));
	img_manifest_done(&p.m);
	img_source_free(p.src);
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_anonymous_oci),
		TEST(test_pull_by_digest),
		TEST(test_docker_schema2),
		TEST(test_uncompressed_and_zstd_layers),
		TEST(test_multi_platform_index),
		TEST(test_basic_auth),
		TEST(test_bearer_auth),
		TEST(test_unknown_image),
		TEST(test_registry_down),
		TEST(test_https_by_default),
		TEST(test_tampered_blob),
		TEST(test_descriptor_size_checked),
		TEST(test_unknown_config_media_type),
		TEST(test_unknown_layer_media_type),
		TEST(test_schema1_refused),
		TEST(test_broken_transfer_resumed),
		TEST(test_redirect_drops_credentials),
	};
	const char *src = getenv("MVMFS_SRCDIR");
	char tmpl[] = "/tmp/mvmfs-imgfetch-XXXXXX";
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!src || !mkdtemp(tmpl)) {
		printf("1..0 # SKIP no MVMFS_SRCDIR or temp dir\n");
		return 77;
	}
	r = fx_up(src, tmpl, "up", "", "registry fixture",
		  "registry fixture unavailable (docker-registry/skopeo)");
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
