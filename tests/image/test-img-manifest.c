/* SPDX-License-Identifier: MIT */
/* Manifest and index decoding: media types, platform narrowing, strict descriptors. */
#include <stdio.h>

#include "fetch.h"
#include "test.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static const struct img_platform amd64 = {.os = "linux", .arch = "amd64"};
static const struct img_platform arm64 = {.os = "linux", .arch = "arm64"};

static int decode(const char *body, const char *ct, const struct img_platform *p,
		  struct img_manifest *m, struct img_descriptor *pick, struct err *err)
{
	return img_manifest_decode(body, strlen(body), ct, p, m, pick, err);
}

static char *manifest(char *buf, size_t size, const char *mt, const char *config_mt,
		      const char *layer_mt)
{
	snprintf(buf, size,
		 "{\"schemaVersion\":2%s%s%s,\"config\":{\"mediaType\":\"%s\",\"digest\":\"" D1
		 "\",\"size\":7},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"" D2
		 "\",\"size\":1000},{\"mediaType\":\"%s\",\"digest\":\"" D3 "\",\"size\":0}]}",
		 mt ? ",\"mediaType\":\"" : "", mt ? mt : "", mt ? "\"" : "", config_mt, layer_mt,
		 layer_mt);
	return buf;
}

static void test_oci_manifest(void)
{
	struct img_manifest m = {};
	struct img_descriptor pick;
	struct err err = {};
	char b[2048];

	ASSERT_EQ(decode(manifest(b, sizeof(b), IMG_MT_OCI_MANIFEST,
				  "application/vnd.oci.image.config.v1+json",
				  "application/vnd.oci.image.layer.v1.tar+gzip"),
			 IMG_MT_OCI_MANIFEST, &amd64, &m, &pick, &err),
		  IMG_DECODED_MANIFEST);
	ASSERT_STREQ(m.config.digest, D1);
	ASSERT_EQ(m.config.size, 7);
	ASSERT_EQ(m.n_layers, 2);
	ASSERT_STREQ(m.layers[0].digest, D2);
	ASSERT_EQ(m.layers[0].size, 1000);
	ASSERT_STREQ(m.layers[1].digest, D3);
	img_manifest_done(&m);

	/* mediaType is optional in OCI: the shape decides; application/json is no hint. */
	ASSERT_EQ(decode(manifest(b, sizeof(b), NULL, "application/vnd.oci.image.config.v1+json",
				  "application/vnd.oci.image.layer.v1.tar"),
			 "application/json", &amd64, &m, &pick, &err),
		  IMG_DECODED_MANIFEST);
	img_manifest_done(&m);
	ASSERT_EQ(decode(manifest(b, sizeof(b), NULL, "application/vnd.oci.image.config.v1+json",
				  "application/vnd.oci.image.layer.v1.tar+zstd"),
			 IMG_MT_OCI_MANIFEST "; charset=utf-8", &amd64, &m, &pick, &err),
		  IMG_DECODED_MANIFEST);
	img_manifest_done(&m);
}

static void test_docker_schema2(void)
{
	struct img_manifest m = {};
	struct img_descriptor pick;
	char b[2048];

	ASSERT_EQ(decode(manifest(b, sizeof(b), IMG_MT_DOCKER_V2,
				  "application/vnd.docker.container.image.v1+json",
				  "application/vnd.docker.image.rootfs.diff.tar.gzip"),
			 IMG_MT_DOCKER_V2, &amd64, &m, &pick, NULL),
		  IMG_DECODED_MANIFEST);
	ASSERT_EQ(m.n_layers, 2);
	img_manifest_done(&m);
}

static void test_refused(void)
{
	struct img_manifest m = {};
	struct img_descriptor pick;
	struct err err = {};
	char b[2048];

	ASSERT_ERRNO(decode("{\"schemaVersion\":1,\"name\":\"a\",\"fsLayers\":[]}", NULL, &amd64,
			    &m, &pick, &err),
		     EPROTONOSUPPORT);
	ASSERT_TRUE(strstr(err.msg, "schema 1"));
	ASSERT_ERRNO(decode("{}", "application/vnd.docker.distribution.manifest.v1+prettyjws",
			    &amd64, &m, &pick, &err),
		     EPROTONOSUPPORT);
	ASSERT_ERRNO(decode("{\"schemaVersion\":2,\"mediaType\":\"application/x-bogus\"}", NULL,
			    &amd64, &m, &pick, &err),
		     EPROTONOSUPPORT);
	ASSERT_TRUE(strstr(err.msg, "application/x-bogus"));
	ASSERT_ERRNO(decode(manifest(b, sizeof(b), IMG_MT_OCI_MANIFEST,
				     "application/vnd.cncf.helm.config.v1+json",
				     "application/vnd.oci.image.layer.v1.tar"),
			    NULL, &amd64, &m, &pick, &err),
		     EPROTONOSUPPORT);
	ASSERT_ERRNO(decode(manifest(b, sizeof(b), IMG_MT_OCI_MANIFEST,
				     "application/vnd.oci.image.config.v1+json",
				     "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
			    NULL, &amd64, &m, &pick, &err),
		     EPROTONOSUPPORT);
	ASSERT_TRUE(strstr(err.msg, "layer media type"));
	/* Body and transport disagree. */
	ASSERT_ERRNO(decode(manifest(b, sizeof(b), IMG_MT_OCI_MANIFEST,
				     "application/vnd.oci.image.config.v1+json",
				     "application/vnd.oci.image.layer.v1.tar"),
			    IMG_MT_DOCKER_V2, &amd64, &m, &pick, &err),
		     EINVAL);
}

static void test_malformed(void)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"schemaVersion\":2,\"config\":{},\"layers\":[]}",
		"{\"schemaVersion\":\"2\",\"config\":{},\"layers\":[]}",
		"{\"schemaVersion\":2,\"schemaVersion\":2,\"manifests\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/"
		"vnd.oci.image.config.v1+json\","
		"\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/"
		"vnd.oci.image.config.v1+json\","
		"\"digest\":\"sha256:abc\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/"
		"vnd.oci.image.config.v1+json\","
		"\"digest\":\"" D1 "\",\"size\":1},\"layers\":{}}",
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/"
		"vnd.oci.image.config.v1+json\","
		"\"digest\":\"" D1 "\",\"size\":1.5},\"layers\":[]}",
		"{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_OCI_INDEX "\",\"manifests\":{}}",
	};
	struct img_manifest m = {};
	struct img_descriptor pick;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct err err = {};
		int r = decode(bad[i], NULL, &amd64, &m, &pick, &err);
		if (r >= 0)
			TEST_FAIL("accepted: %s", bad[i]);
		ASSERT_TRUE(err.msg[0]);
	}
}

static void test_layer_limit(void)
{
	size_t size = 200 * (IMG_MAX_LAYERS + 2);
	char *b = malloc(size), *p;
	struct img_manifest m = {};
	struct img_descriptor pick;

	ASSERT_TRUE(b);
	p = b + sprintf(b, "{\"schemaVersion\":2,\"config\":{\"mediaType\":"
			   "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1
			   "\",\"size\":1},\"layers\":[");
	for (int i = 0; i < IMG_MAX_LAYERS + 1; i++)
		p += sprintf(p,
			     "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
			     "\"digest\":\"" D2 "\",\"size\":1}",
			     i ? "," : "");
	strcpy(p, "]}");
	ASSERT_ERRNO(decode(b, NULL, &amd64, &m, &pick, NULL), EINVAL);
	free(b);
}

static const char *index_body(char *b, size_t size, const char *type)
{
	snprintf(b, size,
		 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
		 "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D3
		 "\",\"size\":1,\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}},"
		 "{\"mediaType\":\"%s\",\"digest\":\"" D1 "\",\"size\":11,"
		 "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
		 "{\"mediaType\":\"%s\",\"digest\":\"" D2 "\",\"size\":22,"
		 "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
		 "{\"mediaType\":\"%s\",\"digest\":\"" D3 "\",\"size\":33,"
		 "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}}]}",
		 type, strcmp(type, IMG_MT_OCI_INDEX) == 0 ? IMG_MT_OCI_MANIFEST : IMG_MT_DOCKER_V2,
		 strcmp(type, IMG_MT_OCI_INDEX) == 0 ? IMG_MT_OCI_MANIFEST : IMG_MT_DOCKER_V2,
		 strcmp(type, IMG_MT_OCI_INDEX) == 0 ? IMG_MT_OCI_MANIFEST : IMG_MT_DOCKER_V2);
	return b;
}

static void test_index_picks_platform(void)
{
	const char *types[] = {IMG_MT_OCI_INDEX, IMG_MT_DOCKER_LIST};
	struct img_platform armv7 = {.os = "linux", .arch = "arm", .variant = "v7"};
	struct img_platform armv6 = {.os = "linux", .arch = "arm", .variant = "v6"};
	struct img_platform arm64v8 = {.os = "linux", .arch = "arm64", .variant = "v8"};
	struct img_platform win = {.os = "windows", .arch = "amd64"};
	struct img_manifest m = {};
	struct img_descriptor pick;
	struct err err = {};
	char b[4096];

	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		index_body(b, sizeof(b), types[i]);
		ASSERT_EQ(decode(b, types[i], &amd64, &m, &pick, &err), IMG_DECODED_INDEX);
		ASSERT_STREQ(pick.digest, D2);
		ASSERT_EQ(pick.size, 22);
		ASSERT_EQ(decode(b, NULL, &arm64, &m, &pick, &err), IMG_DECODED_INDEX);
		ASSERT_STREQ(pick.digest, D1);
		ASSERT_EQ(decode(b, NULL, &arm64v8, &m, &pick, &err), IMG_DECODED_INDEX);
		ASSERT_STREQ(pick.digest, D1);
		ASSERT_EQ(decode(b, NULL, &armv7, &m, &pick, &err), IMG_DECODED_INDEX);
		ASSERT_STREQ(pick.digest, D3);
		ASSERT_EQ(pick.size, 33);
		ASSERT_ERRNO(decode(b, NULL, &armv6, &m, &pick, &err), ENOENT);
		ASSERT_TRUE(strstr(err.msg, "linux/arm/v6"));
		ASSERT_ERRNO(decode(b, NULL, &win, &m, &pick, &err), ENOENT);
	}
}

static void test_index_variant_absent(void)
{
	/* Only amd64/v3 offered: a node that asks for plain amd64 gets nothing. */
	const char *b = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" IMG_MT_OCI_MANIFEST
			"\",\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"architecture\":"
			"\"amd64\",\"os\":\"linux\",\"variant\":\"v3\"}}]}";
	struct img_manifest m = {};
	struct img_descriptor pick;

	ASSERT_ERRNO(decode(b, NULL, &amd64, &m, &pick, NULL), ENOENT);
}

static void test_layout_index(void)
{
	/* index.json of an OCI layout: one manifest without platform, or one nested index. */
	const char *one =
		"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" IMG_MT_OCI_MANIFEST
		"\",\"digest\":\"" D1 "\",\"size\":5,\"annotations\":"
		"{\"org.opencontainers.image.ref.name\":\"1\"}}]}";
	const char *nested =
		"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" IMG_MT_OCI_INDEX
		"\",\"digest\":\"" D2 "\",\"size\":5}]}";
	const char *two =
		"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" IMG_MT_OCI_MANIFEST
		"\",\"digest\":\"" D1 "\",\"size\":5},{\"mediaType\":\"" IMG_MT_OCI_MANIFEST
		"\",\"digest\":\"" D2 "\",\"size\":5}]}";
	struct img_manifest m = {};
	struct img_descriptor pick;

	ASSERT_EQ(decode(one, IMG_MT_OCI_INDEX, &amd64, &m, &pick, NULL), IMG_DECODED_INDEX);
	ASSERT_STREQ(pick.digest, D1);
	ASSERT_EQ(decode(nested, IMG_MT_OCI_INDEX, &amd64, &m, &pick, NULL), IMG_DECODED_INDEX);
	ASSERT_STREQ(pick.digest, D2);
	ASSERT_ERRNO(decode(two, IMG_MT_OCI_INDEX, &amd64, &m, &pick, NULL), ENOENT);
}

static void test_size_cap(void)
{
	struct img_manifest m = {};
	struct img_descriptor pick;

	ASSERT_ERRNO(img_manifest_decode("{}", IMG_MANIFEST_MAX + 1, NULL, &amd64, &m, &pick, NULL),
		     EFBIG);
}

static void test_host_platform(void)
{
	struct img_platform p;

	img_platform_host(&p);
	ASSERT_STREQ(p.os, "linux");
	ASSERT_TRUE(p.arch[0]);
#if defined(__x86_64__)
	ASSERT_STREQ(p.arch, "amd64");
#elif defined(__aarch64__)
	ASSERT_STREQ(p.arch, "arm64");
#endif
}

TEST_MAIN(TEST(test_oci_manifest), TEST(test_docker_schema2), TEST(test_refused),
	  TEST(test_malformed), TEST(test_layer_limit), TEST(test_index_picks_platform),
	  TEST(test_index_variant_absent), TEST(test_layout_index), TEST(test_size_cap),
	  TEST(test_host_platform))
