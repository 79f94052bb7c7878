/* SPDX-License-Identifier: MIT */
/*
 * Manifest and index decoding (pure, fuzzed). Bodies are untrusted: size-capped by the caller,
 * every field type-checked, descriptors validated, unknown media types refused.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "fetch.h"

#define IMG_INDEX_MAX_ENTRIES 1024

void img_manifest_done(struct img_manifest *m)
{
	if (!m)
		return;
	free(m->layers);
	m->layers = NULL;
	m->n_layers = 0;
}

void img_platform_host(struct img_platform *ret)
{
	static const struct {
		const char *machine, *arch, *variant;
	} map[] = {
		{"x86_64", "amd64", ""},    {"aarch64", "arm64", ""}, {"armv7l", "arm", "v7"},
		{"armv6l", "arm", "v6"},    {"i686", "386", ""},      {"i386", "386", ""},
		{"ppc64le", "ppc64le", ""}, {"s390x", "s390x", ""},   {"riscv64", "riscv64", ""},
	};
	struct utsname u;

	*ret = (struct img_platform){.os = "linux", .arch = "amd64"};
	if (uname(&u) < 0)
		return;
	for (size_t i = 0; i < ELEMENTSOF(map); i++)
		if (strcmp(u.machine, map[i].machine) == 0) {
			snprintf(ret->arch, sizeof(ret->arch), "%s", map[i].arch);
			snprintf(ret->variant, sizeof(ret->variant), "%s", map[i].variant);
		}
}

bool img_layer_media_type_ok(const char *mt)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.diff.tar.zstd",
	};

	for (size_t i = 0; i < ELEMENTSOF(ok); i++)
		if (strcmp(mt, ok[i]) == 0)
			return true;
	return false;
}

static bool config_media_type_ok(const char *mt)
{
	return strcmp(mt, "application/vnd.oci.image.config.v1+json") == 0 ||
	       strcmp(mt, "application/vnd.docker.container.image.v1+json") == 0;
}

/* A JSON string field that must fit in size; absent is "" when optional. */
static int get_str(json_t *obj, const char *key, bool required, char *buf, size_t size,
		   const char *what, struct err *err)
{
	json_t *v = json_object_get(obj, key);
	const char *s;
	size_t n;

	buf[0] = '\0';
	if (!v) {
		if (required)
			return err_set(err, -EINVAL, "%s: missing \"%s\"", what, key);
		return 0;
	}
	if (!json_is_string(v))
		return err_set(err, -EINVAL, "%s: \"%s\" is not a string", what, key);
	s = json_string_value(v);
	n = json_string_length(v);
	if (n >= size || strlen(s) != n)
		return err_set(err, -EINVAL, "%s: \"%s\" too long or has NUL", what, key);
	memcpy(buf, s, n + 1);
	return 0;
}

static int decode_descriptor(json_t *v, struct img_descriptor *d, const char *what, struct err *err)
{
	json_t *size;
	char digest[160];
	int r;

	if (!json_is_object(v))
		return err_set(err, -EINVAL, "%s: descriptor is not an object", what);
	r = get_str(v, "mediaType", true, d->media_type, sizeof(d->media_type), what, err);
	if (r < 0)
		return r;
	r = get_str(v, "digest", true, digest, sizeof(digest), what, err);
	if (r < 0)
		return r;
	if (!img_digest_is_valid(digest)) {
		char q[80];
		img_sanitize(digest, strlen(digest), q, sizeof(q));
		return err_set(err, strncmp(digest, "sha256:", 7) == 0 ? -EINVAL : -EPROTONOSUPPORT,
			       "%s: unsupported or malformed digest '%s'", what, q);
	}
	memcpy(d->digest, digest, IMG_DIGEST_MAX);
	size = json_object_get(v, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return err_set(err, -EINVAL, "%s: descriptor size missing or negative", what);
	d->size = (uint64_t)json_integer_value(size);
	return 0;
}

/* arm64 without a variant means v8, like containerd's platform normaliser. */
static void normalize_variant(const char *arch, const char *variant, char *buf, size_t size)
{
	if (strcmp(arch, "arm64") == 0 && strcmp(variant, "v8") == 0)
		variant = "";
	snprintf(buf, size, "%s", variant);
}

static int decode_index(json_t *root, const struct img_platform *plat, struct img_descriptor *ret,
			struct err *err)
{
	json_t *list = json_object_get(root, "manifests"), *e;
	struct img_descriptor only = {}, nested = {};
	size_t i, n_candidates = 0, n_noplatform = 0, n_nested = 0;
	char want_variant[32];

	if (!json_is_array(list))
		return err_set(err, -EINVAL, "image index: \"manifests\" is not an array");
	if (json_array_size(list) > IMG_INDEX_MAX_ENTRIES)
		return err_set(err, -EINVAL, "image index: more than %d entries",
			       IMG_INDEX_MAX_ENTRIES);
	normalize_variant(plat->arch, plat->variant, want_variant, sizeof(want_variant));
	json_array_foreach (list, i, e) {
		struct img_descriptor d = {};
		char os[32], arch[32], variant[32], nv[32];
		json_t *p;
		int r;

		r = decode_descriptor(e, &d, "image index entry", err);
		if (r < 0)
			return r;
		if (strcmp(d.media_type, IMG_MT_OCI_INDEX) == 0 ||
		    strcmp(d.media_type, IMG_MT_DOCKER_LIST) == 0) {
			n_nested++;
			nested = d;
			continue;
		}
		if (strcmp(d.media_type, IMG_MT_OCI_MANIFEST) != 0 &&
		    strcmp(d.media_type, IMG_MT_DOCKER_V2) != 0)
			continue; /* schema 1, artifacts: not ours */
		n_candidates++;
		p = json_object_get(e, "platform");
		if (!p) {
			n_noplatform++;
			only = d;
			continue;
		}
		if (!json_is_object(p))
			return err_set(err, -EINVAL, "image index: \"platform\" is not an object");
		r = get_str(p, "os", true, os, sizeof(os), "image index platform", err);
		if (r >= 0)
			r = get_str(p, "architecture", true, arch, sizeof(arch),
				    "image index platform", err);
		if (r >= 0)
			r = get_str(p, "variant", false, variant, sizeof(variant),
				    "image index platform", err);
		if (r < 0)
			return r;
		normalize_variant(arch, variant, nv, sizeof(nv));
		if (strcmp(os, plat->os) == 0 && strcmp(arch, plat->arch) == 0 &&
		    strcmp(nv, want_variant) == 0) {
			*ret = d;
			return IMG_DECODED_INDEX;
		}
	}
	/* An OCI layout's index.json often lists one manifest with no platform: take it. */
	if (n_candidates == 1 && n_noplatform == 1) {
		*ret = only;
		return IMG_DECODED_INDEX;
	}
	/* ... or one multi-platform index (`skopeo copy --all` into an OCI layout). */
	if (n_candidates == 0 && n_nested == 1) {
		*ret = nested;
		return IMG_DECODED_INDEX;
	}
	return err_set(err, -ENOENT, "image index has no manifest for %s/%s%s%s", plat->os,
		       plat->arch, plat->variant[0] ? "/" : "", plat->variant);
}

static int decode_image(json_t *root, struct img_manifest *ret, struct err *err)
{
	_cleanup_free_ struct img_descriptor *layers = NULL;
	json_t *list, *e;
	struct img_descriptor config = {};
	size_t i, n;
	int r;

	r = decode_descriptor(json_object_get(root, "config"), &config, "manifest config", err);
	if (r < 0)
		return r;
	if (!config_media_type_ok(config.media_type)) {
		char q[130];
		img_sanitize(config.media_type, strlen(config.media_type), q, sizeof(q));
		return err_set(err, -EPROTONOSUPPORT,
			       "not a container image: unsupported config media type '%s'", q);
	}
	list = json_object_get(root, "layers");
	if (!json_is_array(list))
		return err_set(err, -EINVAL, "manifest: \"layers\" is not an array");
	n = json_array_size(list);
	if (n > IMG_MAX_LAYERS)
		return err_set(err, -EINVAL, "manifest: more than %d layers", IMG_MAX_LAYERS);
	layers = calloc(n ? n : 1, sizeof(*layers));
	if (!layers)
		return -ENOMEM;
	json_array_foreach (list, i, e) {
		r = decode_descriptor(e, &layers[i], "manifest layer", err);
		if (r < 0)
			return r;
		if (!img_layer_media_type_ok(layers[i].media_type)) {
			char q[130];
			img_sanitize(layers[i].media_type, strlen(layers[i].media_type), q,
				     sizeof(q));
			return err_set(err, -EPROTONOSUPPORT,
				       "unsupported layer media type '%s' (layer %zu)", q, i + 1);
		}
	}
	*ret = (struct img_manifest){.config = config, .layers = TAKE_PTR(layers), .n_layers = n};
	return IMG_DECODED_MANIFEST;
}

int img_manifest_decode(const char *body, size_t len, const char *content_type,
			const struct img_platform *plat, struct img_manifest *ret_manifest,
			struct img_descriptor *ret_pick, struct err *err)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	json_error_t jerr;
	json_t *sv;
	char mt[128] = "", ct[128] = "";
	const char *type;
	int r;

	if (len > IMG_MANIFEST_MAX)
		return err_set(err, -EFBIG, "manifest larger than %u bytes", IMG_MANIFEST_MAX);
	if (content_type) {
		size_t n = strcspn(content_type, "; \t");
		if (n >= sizeof(ct))
			n = sizeof(ct) - 1;
		memcpy(ct, content_type, n);
		ct[n] = '\0';
	}
	if (strncmp(ct, "application/vnd.docker.distribution.manifest.v1", 47) == 0)
		return err_set(err, -EPROTONOSUPPORT,
			       "Docker image manifest schema 1 is not supported (push the image "
			       "again with a current client)");

	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_set(err, -EINVAL, "manifest is not valid JSON (line %d: %s)", jerr.line,
			       jerr.text);
	if (!json_is_object(root))
		return err_set(err, -EINVAL, "manifest is not a JSON object");
	sv = json_object_get(root, "schemaVersion");
	if (json_is_integer(sv) && json_integer_value(sv) == 1)
		return err_set(err, -EPROTONOSUPPORT,
			       "Docker image manifest schema 1 is not supported (push the image "
			       "again with a current client)");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2)
		return err_set(err, -EPROTONOSUPPORT, "unsupported manifest schemaVersion");
	r = get_str(root, "mediaType", false, mt, sizeof(mt), "manifest", err);
	if (r < 0)
		return r;

	/* The body's mediaType wins; the transport's type must agree when both are specific. */
	if (mt[0] && ct[0] && strcmp(ct, "application/json") != 0 &&
	    strcmp(ct, "application/octet-stream") != 0 && strcmp(mt, ct) != 0) {
		char q1[130], q2[130];
		img_sanitize(mt, strlen(mt), q1, sizeof(q1));
		img_sanitize(ct, strlen(ct), q2, sizeof(q2));
		return err_set(err, -EINVAL,
			       "manifest mediaType '%s' differs from Content-Type '%s'", q1, q2);
	}
	type = mt[0] ? mt : ct;
	if (!type[0] || strcmp(type, "application/json") == 0 ||
	    strcmp(type, "application/octet-stream") == 0) {
		/* OCI makes mediaType optional; infer from the shape. */
		if (json_object_get(root, "manifests"))
			type = IMG_MT_OCI_INDEX;
		else if (json_object_get(root, "config") && json_object_get(root, "layers"))
			type = IMG_MT_OCI_MANIFEST;
	}
	if (strcmp(type, IMG_MT_OCI_INDEX) == 0 || strcmp(type, IMG_MT_DOCKER_LIST) == 0)
		return decode_index(root, plat, ret_pick, err);
	if (strcmp(type, IMG_MT_OCI_MANIFEST) == 0 || strcmp(type, IMG_MT_DOCKER_V2) == 0)
		return decode_image(root, ret_manifest, err);
	{
		char q[130];
		img_sanitize(type, strlen(type), q, sizeof(q));
		return err_set(err, -EPROTONOSUPPORT, "unsupported manifest media type '%s'",
			       q[0] ? q : "(none)");
	}
}
