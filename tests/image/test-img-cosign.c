/* SPDX-License-Identifier: MIT */
/* The pure parts of signature checking: .sig manifests, simple-signing payloads, base64, the
 * docker-reference match. The registry suite's img-sign covers verification end to end. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cosign.h"
#include "fetch.h"
#include "test.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define SIG                                                              \
	"MEUCIQDXmXWj59naoPFlLnCADIPLKgLG3LyFtKrbjpnkYiGNGgIhAJ/eNx5zr/" \
	"l1MJKSFpFMjPKKr4fjh5RHEtT2DhMamZuT"

static int payload(const char *json, struct img_sig_claims *c)
{
	struct err err = {0};
	int r = img_sig_payload_parse(json, strlen(json), c, &err);

	if (r < 0)
		printf("# %s\n", err.msg);
	return r;
}

static void test_payload(void)
{
	struct img_sig_claims c;

	/* As cosign writes it. */
	ASSERT_OK(payload("{\"critical\":{\"identity\":{\"docker-reference\":\"127.0.0.1:5000/"
			  "test/app\"},\"image\":{\"docker-manifest-digest\":\"" D1 "\"},\"type\":"
			  "\"cosign container image signature\"},\"optional\":null}",
			  &c));
	ASSERT_STREQ(c.digest, D1);
	ASSERT_STREQ(c.reference, "127.0.0.1:5000/test/app");
	/* The capitalised key of the specification's example, and optional claims. */
	ASSERT_OK(payload("{\"critical\":{\"identity\":{\"docker-reference\":\"a/b\"},\"image\":{"
			  "\"Docker-manifest-digest\":\"" D2 "\"},\"type\":\"cosign container "
			  "image signature\"},\"optional\":{\"creator\":\"atomic\"}}",
			  &c));
	ASSERT_STREQ(c.digest, D2);
	/* Refused: unknown critical member, duplicate (case-insensitive), wrong type, bad digest,
	 * missing identity, top-level extras, not an object, empty reference. */
	ASSERT_ERRNO(
		payload("{\"critical\":{\"identity\":{\"docker-reference\":\"a/b\"},\"image\":{"
			"\"docker-manifest-digest\":\"" D1 "\"},\"type\":\"cosign container "
			"image signature\",\"expires\":1}}",
			&c),
		EINVAL);
	ASSERT_ERRNO(
		payload("{\"critical\":{\"identity\":{\"docker-reference\":\"a/b\"},\"image\":{"
			"\"docker-manifest-digest\":\"" D1 "\",\"Docker-Manifest-Digest\":\"" D2
			"\"},\"type\":\"cosign container image signature\"}}",
			&c),
		EINVAL);
	ASSERT_ERRNO(
		payload("{\"critical\":{\"identity\":{\"docker-reference\":\"a/b\"},\"image\":{"
			"\"docker-manifest-digest\":\"" D1 "\"},\"type\":\"atomic container "
			"signature\"}}",
			&c),
		EINVAL);
	ASSERT_ERRNO(
		payload("{\"critical\":{\"identity\":{\"docker-reference\":\"a/b\"},\"image\":{"
			"\"docker-manifest-digest\":\"sha256:abc\"},\"type\":\"cosign "
			"container image signature\"}}",
			&c),
		EINVAL);
	ASSERT_ERRNO(payload("{\"critical\":{\"image\":{\"docker-manifest-digest\":\"" D1
			     "\"},\"type\":\"cosign container image signature\"}}",
			     &c),
		     EINVAL);
	ASSERT_ERRNO(
		payload("{\"critical\":{\"identity\":{\"docker-reference\":\"a/b\"},\"image\":{"
			"\"docker-manifest-digest\":\"" D1 "\"},\"type\":\"cosign container "
			"image signature\"},\"x\":1}",
			&c),
		EINVAL);
	ASSERT_ERRNO(payload("{\"critical\":{\"identity\":{\"docker-reference\":\"\"},\"image\":{"
			     "\"docker-manifest-digest\":\"" D1 "\"},\"type\":\"cosign container "
			     "image signature\"}}",
			     &c),
		     EINVAL);
	ASSERT_ERRNO(payload("[]", &c), EINVAL);
	ASSERT_ERRNO(payload("{\"critical\":", &c), EINVAL);
}

static int manifest(const char *json, struct img_sig_list *l)
{
	struct err err = {0};
	int r = img_sig_manifest_parse(json, strlen(json), l, &err);

	if (r < 0)
		printf("# %s\n", err.msg);
	return r;
}

#define LAYER(mt, size, ann)                                                                       \
	"{\"mediaType\":\"" mt "\",\"size\":" #size ",\"digest\":\"" D1 "\",\"annotations\":{" ann \
	"}}"
#define SS IMG_MT_SIMPLESIGNING
#define ANN "\"" IMG_SIG_ANNOTATION "\":\"" SIG "\""
#define MANIFEST(layers)                                                                     \
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"," \
	"\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"size\":2," \
	"\"digest\":\"" D2 "\"},\"layers\":[" layers "]}"

static void test_sig_manifest(void)
{
	struct img_sig_list l;

	ASSERT_OK(manifest(MANIFEST(LAYER(SS, 250, ANN) "," LAYER("application/x-other", 3,
								  "") "," LAYER(SS, 12, "")),
			   &l));
	ASSERT_EQ(l.n, 1u);
	ASSERT_EQ(l.n_ignored, 2u);
	ASSERT_STREQ(l.sigs[0].payload.digest, D1);
	ASSERT_EQ(l.sigs[0].payload.size, 250u);
	ASSERT_EQ(l.sigs[0].sig_len, 72u);
	img_sig_list_done(&l);
	ASSERT_OK(manifest(MANIFEST(""), &l));
	ASSERT_EQ(l.n, 0u);
	img_sig_list_done(&l);
	/* Refused: payload too big, bad base64, non-string signature, schema 1, no layers. */
	ASSERT_ERRNO(manifest(MANIFEST(LAYER(SS, 70000, ANN)), &l), EINVAL);
	ASSERT_ERRNO(manifest(MANIFEST(LAYER(SS, 250, "\"" IMG_SIG_ANNOTATION "\":\"M*==\"")), &l),
		     EINVAL);
	ASSERT_ERRNO(manifest(MANIFEST(LAYER(SS, 250, "\"" IMG_SIG_ANNOTATION "\":7")), &l),
		     EINVAL);
	ASSERT_ERRNO(manifest("{\"schemaVersion\":1,\"layers\":[]}", &l), EINVAL);
	ASSERT_ERRNO(manifest("{\"schemaVersion\":2}", &l), EINVAL);
	ASSERT_ERRNO(manifest("{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_OCI_INDEX
			      "\",\"layers\":[]}",
			      &l),
		     EINVAL);
}

static void test_base64(void)
{
	unsigned char b[8];

	ASSERT_EQ(img_base64_decode("aGk=", 4, b, sizeof(b)), 2);
	ASSERT_EQ(memcmp(b, "hi", 2), 0);
	ASSERT_EQ(img_base64_decode("aGk", 3, b, sizeof(b)), 2);	  /* padding optional */
	ASSERT_ERRNO(img_base64_decode("aGl=", 4, b, sizeof(b)), EINVAL); /* non-zero tail bits */
	ASSERT_ERRNO(img_base64_decode("a", 1, b, sizeof(b)), EINVAL);
	ASSERT_ERRNO(img_base64_decode("aG k=", 5, b, sizeof(b)), EINVAL);
	ASSERT_ERRNO(img_base64_decode("aGk==", 5, b, sizeof(b)), EINVAL);
	ASSERT_ERRNO(img_base64_decode("aGVsbG8gd29ybGQ=", 16, b, sizeof(b)), EINVAL); /* > size */
}

static void test_reference_match(void)
{
	struct img_ref r = {.registry = "127.0.0.1:5000", .repository = "test/app"};
	struct img_ref hub = {.registry = "docker.io", .repository = "library/busybox"};

	ASSERT_TRUE(img_sig_reference_matches("127.0.0.1:5000/test/app", &r));
	ASSERT_TRUE(img_sig_reference_matches("127.0.0.1:5000/test/app:1", &r));
	ASSERT_TRUE(img_sig_reference_matches("127.0.0.1:5000/test/app@" D1, &r));
	ASSERT_FALSE(img_sig_reference_matches("127.0.0.1:5000/test/other", &r));
	ASSERT_FALSE(img_sig_reference_matches("127.0.0.1:5001/test/app", &r));
	ASSERT_FALSE(img_sig_reference_matches("test/app", &r));
	ASSERT_FALSE(img_sig_reference_matches("s3://bucket/key", &r));
	ASSERT_TRUE(img_sig_reference_matches("index.docker.io/library/busybox", &hub));
	ASSERT_TRUE(img_sig_reference_matches("busybox", &hub));
	ASSERT_FALSE(img_sig_reference_matches("quay.io/library/busybox", &hub));
}

int main(void)
{
	static const struct test_case cases[] = {
		TEST(test_payload),
		TEST(test_sig_manifest),
		TEST(test_base64),
		TEST(test_reference_match),
	};
	return test_run(cases, ELEMENTSOF(cases));
}
