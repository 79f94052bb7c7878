/* SPDX-License-Identifier: MIT */
/*
 * Cosign signatures, checked the way cosign and skopeo find them (docs/signatures.md): the
 * manifest tagged "sha256-<hex>.sig" in the image's own repository lists simple-signing
 * payloads as layers, each with its base64 ECDSA signature in a layer annotation. A signature
 * counts when it verifies over the payload bytes with a configured key, and the payload then
 * names the digest being run and the image's repository. Signatures are checked before the
 * payload JSON is parsed, so the parser only sees authenticated bytes in the normal case (it is
 * strict and fuzzed all the same).
 */
#include "cosign.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "build.h"
#include "fetch.h"
#include "fileio.h"

#define KEY_FILE_MAX (64u << 10)

struct img_key {
	EVP_PKEY *pkey;
	char id[IMG_DIGEST_MAX]; /* sha256 of the DER SubjectPublicKeyInfo */
};
struct img_keys {
	struct img_key *k;
	size_t n;
};

/* ---- keys ---- */

static int key_id(EVP_PKEY *pkey, char ret[IMG_DIGEST_MAX])
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pkey, &der);
	int r;

	if (n <= 0)
		return -EINVAL;
	r = img_digest_buf(der, (size_t)n, ret);
	OPENSSL_free(der);
	return r;
}

static int load_one(const char *path, struct img_key *ret, struct err *err)
{
	_cleanup_free_ char *text = NULL;
	char group[64] = "";
	size_t len = 0, glen = 0;
	EVP_PKEY *pkey;
	BIO *bio;
	int r;

	r = read_file_bounded(path, KEY_FILE_MAX, &text, &len);
	if (r < 0)
		return err_set(err, -EINVAL, "verify key '%s': cannot read: %s", path,
			       strerror(-r));
	bio = BIO_new_mem_buf(text, (int)len);
	if (!bio)
		return err_set(err, -ENOMEM, "out of memory");
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (!pkey)
		return err_set(
			err, -EINVAL,
			"verify key '%s': not a PEM public key (\"-----BEGIN PUBLIC KEY-----\", "
			"as cosign generate-key-pair writes)",
			path);
	if (!EVP_PKEY_is_a(pkey, "EC") ||
	    !EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    &glen) ||
	    strcmp(group, "prime256v1") != 0) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return err_set(err, -EINVAL, "verify key '%s': not an ECDSA P-256 key", path);
	}
	if (key_id(pkey, ret->id) < 0) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return err_set(err, -EINVAL, "verify key '%s': cannot encode the key", path);
	}
	ret->pkey = pkey;
	return 0;
}

int img_keys_load(const char *const *paths, struct img_keys **ret, struct err *err)
{
	struct img_keys *keys;
	size_t n = 0;

	*ret = NULL;
	for (; paths && paths[n]; n++)
		;
	if (n == 0)
		return 0;
	keys = calloc(1, sizeof(*keys));
	if (keys)
		keys->k = calloc(n, sizeof(*keys->k));
	if (!keys || !keys->k) {
		free(keys);
		return err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		int r = load_one(paths[i], &keys->k[keys->n], err);
		if (r < 0) {
			img_keys_free(keys);
			return r;
		}
		keys->n++;
	}
	*ret = keys;
	return 0;
}

int img_verify_keys_check(const char *const *paths, struct err *err)
{
	struct img_keys *keys = NULL;
	int r = img_keys_load(paths, &keys, err);

	img_keys_free(keys);
	return r;
}

struct img_keys *img_keys_free(struct img_keys *keys)
{
	if (!keys)
		return NULL;
	for (size_t i = 0; i < keys->n; i++)
		EVP_PKEY_free(keys->k[i].pkey);
	free(keys->k);
	free(keys);
	return NULL;
}

size_t img_keys_count(const struct img_keys *keys)
{
	return keys ? keys->n : 0;
}

bool img_keys_have(const struct img_keys *keys, const char *id)
{
	for (size_t i = 0; keys && i < keys->n; i++)
		if (strcmp(keys->k[i].id, id) == 0)
			return true;
	return false;
}

/* ---- the .sig manifest ---- */

void img_sig_list_done(struct img_sig_list *l)
{
	free(l->sigs);
	*l = (struct img_sig_list){0};
}

static bool str_field(json_t *o, const char *key, size_t max, const char **ret)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return false;
	*ret = json_string_value(v);
	return true;
}

static int parse_sig_layer(json_t *l, size_t i, struct img_sig *ret, bool *ignored, struct err *err)
{
	json_t *size = json_object_get(l, "size"), *ann = json_object_get(l, "annotations");
	const char *mt, *digest, *sig;
	ssize_t n;

	*ignored = false;
	if (!json_is_object(l) || !str_field(l, "mediaType", 127, &mt) ||
	    !str_field(l, "digest", IMG_DIGEST_MAX - 1, &digest) || !json_is_integer(size))
		return err_set(err, -EINVAL, "layer %zu is not a descriptor", i + 1);
	if (!img_digest_is_valid(digest))
		return err_set(err, -EINVAL, "layer %zu has an invalid digest", i + 1);
	if (ann && !json_is_object(ann))
		return err_set(err, -EINVAL, "layer %zu: annotations is not an object", i + 1);
	if (strcmp(mt, IMG_MT_SIMPLESIGNING) != 0 || !json_object_get(ann, IMG_SIG_ANNOTATION)) {
		*ignored = true; /* attestations and such: not ours to judge */
		return 0;
	}
	if (json_integer_value(size) <= 0 || json_integer_value(size) > IMG_SIG_PAYLOAD_MAX)
		return err_set(err, -EINVAL, "layer %zu: payload size %lld out of range (1-%u)",
			       i + 1, (long long)json_integer_value(size), IMG_SIG_PAYLOAD_MAX);
	if (!str_field(ann, IMG_SIG_ANNOTATION, IMG_SIG_B64_MAX, &sig))
		return err_set(err, -EINVAL, "layer %zu: signature annotation is not a string",
			       i + 1);
	n = img_base64_decode(sig, strlen(sig), ret->sig, sizeof(ret->sig));
	if (n <= 0)
		return err_set(err, -EINVAL, "layer %zu: signature is not base64", i + 1);
	ret->sig_len = (size_t)n;
	snprintf(ret->payload.media_type, sizeof(ret->payload.media_type), "%s", mt);
	snprintf(ret->payload.digest, sizeof(ret->payload.digest), "%s", digest);
	ret->payload.size = (uint64_t)json_integer_value(size);
	return 0;
}

int img_sig_manifest_parse(const char *body, size_t len, struct img_sig_list *ret, struct err *err)
{
	_cleanup_(json_decrefp) json_t *root = NULL;
	struct img_sig_list l = {0};
	json_error_t jerr;
	json_t *layers, *v, *mt;
	size_t i;

	*ret = (struct img_sig_list){0};
	if (len > IMG_SIG_MANIFEST_MAX)
		return err_set(err, -EINVAL, "signature manifest larger than %u bytes",
			       IMG_SIG_MANIFEST_MAX);
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root))
		return err_set(err, -EINVAL, "signature manifest is not a JSON object");
	v = json_object_get(root, "schemaVersion");
	if (!json_is_integer(v) || json_integer_value(v) != 2)
		return err_set(err, -EINVAL, "signature manifest: schemaVersion is not 2");
	mt = json_object_get(root, "mediaType");
	if (mt &&
	    (!json_is_string(mt) || (strcmp(json_string_value(mt), IMG_MT_OCI_MANIFEST) != 0 &&
				     strcmp(json_string_value(mt), IMG_MT_DOCKER_V2) != 0)))
		return err_set(err, -EINVAL, "signature manifest is not an image manifest");
	layers = json_object_get(root, "layers");
	if (!json_is_array(layers))
		return err_set(err, -EINVAL, "signature manifest has no layers array");
	if (json_array_size(layers) > IMG_SIG_MAX_LAYERS)
		return err_set(err, -EINVAL, "signature manifest has more than %d layers",
			       IMG_SIG_MAX_LAYERS);
	l.sigs = calloc(json_array_size(layers) + 1, sizeof(*l.sigs));
	if (!l.sigs)
		return err_set(err, -ENOMEM, "out of memory");
	json_array_foreach (layers, i, v) {
		bool ignored;
		int r = parse_sig_layer(v, i, &l.sigs[l.n], &ignored, err);

		if (r < 0) {
			img_sig_list_done(&l);
			return err_prefix(err, "signature manifest: ");
		}
		if (ignored)
			l.n_ignored++;
		else
			l.n++;
	}
	*ret = l;
	return 0;
}

/* ---- the simple-signing payload ---- */

/* The one member of o whose name equals key ignoring case (Go's JSON decoding, which cosign
 * uses, matches names that way); NULL when absent or ambiguous (*ambiguous set). */
static json_t *get_ci(json_t *o, const char *key, bool *ambiguous)
{
	const char *k;
	json_t *v, *found = NULL;

	json_object_foreach (o, k, v)
		if (strcasecmp(k, key) == 0) {
			if (found)
				*ambiguous = true;
			found = v;
		}
	return *ambiguous ? NULL : found;
}

/* Every member of o is one of names (case-insensitive). */
static bool only_keys(json_t *o, const char *const *names, size_t n)
{
	const char *k;
	json_t *v;

	json_object_foreach (o, k, v) {
		bool known = false;
		for (size_t i = 0; i < n && !known; i++)
			known = strcasecmp(k, names[i]) == 0;
		if (!known)
			return false;
	}
	return true;
}

int img_sig_payload_parse(const char *body, size_t len, struct img_sig_claims *ret, struct err *err)
{
	static const char *const top_keys[] = {"critical", "optional"};
	static const char *const crit_keys[] = {"identity", "image", "type"};
	static const char *const id_keys[] = {"docker-reference"};
	static const char *const img_keys[] = {"docker-manifest-digest"};
	_cleanup_(json_decrefp) json_t *root = NULL;
	json_t *crit, *id, *image, *type, *ref, *dig, *opt;
	bool amb = false;
	json_error_t jerr;

	*ret = (struct img_sig_claims){0};
	if (len > IMG_SIG_PAYLOAD_MAX)
		return err_set(err, -EINVAL, "payload larger than %u bytes", IMG_SIG_PAYLOAD_MAX);
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root))
		return err_set(err, -EINVAL, "payload is not a JSON object");
	if (!only_keys(root, top_keys, ELEMENTSOF(top_keys)))
		return err_set(err, -EINVAL,
			       "payload has members other than critical and optional");
	crit = get_ci(root, "critical", &amb);
	opt = get_ci(root, "optional", &amb);
	if (amb || !json_is_object(crit) || (opt && !json_is_object(opt) && !json_is_null(opt)))
		return err_set(err, -EINVAL, "payload has no critical object");
	/* Unknown critical members must be refused: the signer meant them to be understood. */
	if (!only_keys(crit, crit_keys, ELEMENTSOF(crit_keys)))
		return err_set(err, -EINVAL, "payload has unknown critical members");
	id = get_ci(crit, "identity", &amb);
	image = get_ci(crit, "image", &amb);
	type = get_ci(crit, "type", &amb);
	if (amb || !json_is_object(id) || !json_is_object(image) || !json_is_string(type))
		return err_set(err, -EINVAL, "payload lacks critical identity, image or type");
	if (strcmp(json_string_value(type), IMG_SIG_TYPE) != 0)
		return err_set(err, -EINVAL, "payload type is not \"" IMG_SIG_TYPE "\"");
	if (!only_keys(id, id_keys, ELEMENTSOF(id_keys)) ||
	    !only_keys(image, img_keys, ELEMENTSOF(img_keys)))
		return err_set(err, -EINVAL, "payload has unknown critical members");
	ref = get_ci(id, "docker-reference", &amb);
	dig = get_ci(image, "docker-manifest-digest", &amb);
	if (amb || !json_is_string(ref) || !json_is_string(dig))
		return err_set(err, -EINVAL,
			       "payload lacks docker-reference or docker-manifest-digest");
	if (!img_digest_is_valid(json_string_value(dig)) ||
	    json_string_length(dig) != strlen(json_string_value(dig)))
		return err_set(err, -EINVAL,
			       "payload's docker-manifest-digest is not a sha256 digest");
	if (json_string_length(ref) == 0 || json_string_length(ref) >= sizeof(ret->reference) ||
	    strlen(json_string_value(ref)) != json_string_length(ref))
		return err_set(err, -EINVAL, "payload's docker-reference is empty or too long");
	snprintf(ret->digest, sizeof(ret->digest), "%s", json_string_value(dig));
	snprintf(ret->reference, sizeof(ret->reference), "%s", json_string_value(ref));
	return 0;
}

static void canonical_registry(const char *r, char *buf, size_t size)
{
	if (strcmp(r, "index.docker.io") == 0 || strcmp(r, "registry-1.docker.io") == 0)
		r = "docker.io";
	snprintf(buf, size, "%s", r);
}

bool img_sig_reference_matches(const char *reference, const struct img_ref *ref)
{
	struct img_ref claim;
	char a[256], b[256];

	if (img_ref_parse(reference, &claim, NULL) < 0 || claim.is_s3)
		return false;
	canonical_registry(claim.registry, a, sizeof(a));
	canonical_registry(ref->registry, b, sizeof(b));
	return strcmp(a, b) == 0 && strcmp(claim.repository, ref->repository) == 0;
}

/* ---- verification ---- */

static bool verify_with(EVP_PKEY *pkey, const struct img_sig *sig, const char *payload, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		  EVP_DigestVerify(ctx, sig->sig, sig->sig_len, (const unsigned char *)payload,
				   len) == 1;

	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* Append "; text" to the reasons, keeping it one bounded line. */
static void add_reason(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static void add_reason(char *buf, size_t size, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 3 >= size)
		return;
	if (n > 0) {
		memcpy(buf + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	(void)vsnprintf(buf + n, size - n, fmt, ap);
	va_end(ap);
}

/* One signature: 1 when it verifies and names digest and the repository; 0 with a reason. */
static int check_one(const struct img_keys *keys, struct img_source *src, const char *digest,
		     const struct img_sig *sig, size_t nr, char ret_key[IMG_DIGEST_MAX], char *why,
		     size_t why_size)
{
	_cleanup_free_ char *payload = NULL;
	struct img_sig_claims claims;
	const struct img_key *by = NULL;
	struct err err = {0};
	size_t len = 0;
	int r;

	r = img_registry_get_blob(src, &sig->payload, IMG_SIG_PAYLOAD_MAX, &payload, &len, &err);
	if (r < 0) {
		if (r == -ENOMEM)
			return r;
		add_reason(why, why_size, "signature %zu: payload unavailable (%s)", nr, err.msg);
		return 0;
	}
	for (size_t k = 0; k < keys->n && !by; k++)
		if (verify_with(keys->k[k].pkey, sig, payload, len))
			by = &keys->k[k];
	if (!by) {
		add_reason(why, why_size,
			   "signature %zu does not verify with any configured key (made by another "
			   "key, or its payload was altered)",
			   nr);
		return 0;
	}
	if (img_sig_payload_parse(payload, len, &claims, &err) < 0) {
		add_reason(why, why_size, "signature %zu: %s", nr, err.msg);
		return 0;
	}
	if (strcmp(claims.digest, digest) != 0) {
		add_reason(why, why_size, "signature %zu is for another image (%s)", nr,
			   claims.digest);
		return 0;
	}
	if (!img_sig_reference_matches(claims.reference, &src->ref)) {
		char q[160];
		img_sanitize(claims.reference, strlen(claims.reference), q, sizeof(q));
		add_reason(why, why_size, "signature %zu names another repository ('%s')", nr, q);
		return 0;
	}
	snprintf(ret_key, IMG_DIGEST_MAX, "%s", by->id);
	return 1;
}

int img_cosign_verify(const struct img_keys *keys, struct img_source *src, const char *digest,
		      char ret_key[IMG_DIGEST_MAX], struct err *err)
{
	_cleanup_free_ char *body = NULL;
	struct img_sig_list l = {0};
	char tag[80], name[600], why[ERR_MSG_MAX] = "";
	struct err e = {0};
	size_t len = 0;
	int r;

	ret_key[0] = '\0';
	if (!img_digest_is_valid(digest))
		return err_set(err, -EINVAL, "no digest to check a signature for");
	snprintf(name, sizeof(name), "%s/%s@%s", src->ref.registry, src->ref.repository, digest);
	if (img_keys_count(keys) == 0)
		return err_set(err, -EKEYREJECTED, "signature check failed for %s: no keys", name);
	snprintf(tag, sizeof(tag), "sha256-%s.sig", digest + 7);
	r = img_registry_get_manifest(src, tag, &body, &len, &e);
	if (r == -ENOENT)
		return err_set(err, -EKEYREJECTED,
			       "signature check failed for %s: not signed (no %s tag in the "
			       "repository)",
			       name, tag);
	if (r < 0) {
		if (err)
			*err = e;
		return err_prefix(err, "fetching the signatures of %s: ", name);
	}
	r = img_sig_manifest_parse(body, len, &l, &e);
	if (r < 0)
		return err_set(err, r == -ENOMEM ? r : -EKEYREJECTED,
			       "signature check failed for %s: %s", name, e.msg);
	if (l.n == 0) {
		img_sig_list_done(&l);
		return err_set(err, -EKEYREJECTED,
			       "signature check failed for %s: %s lists no cosign signature", name,
			       tag);
	}
	for (size_t i = 0; i < l.n; i++) {
		r = check_one(keys, src, digest, &l.sigs[i], i + 1, ret_key, why, sizeof(why));
		if (r != 0)
			break;
	}
	img_sig_list_done(&l);
	if (r == 1)
		return 0;
	if (r < 0)
		return err_set(err, r, "out of memory");
	return err_set(err, -EKEYREJECTED, "no signature verified for %s: %s", name, why);
}

/* ---- the store's side: check, and remember what was checked ---- */

/* refs/verified/<hex>: the key that last verified a signature of that manifest digest, so an
 * image started without contacting its registry (a cached digest reference, an unreachable
 * registry) still needs a configured key to have vouched for it. */
static int verified_path(struct img_store *s, const char *digest, char *buf, size_t size)
{
	return img_store_path(s, buf, size, "refs/verified/%s", digest + 7);
}

bool img_signature_cached(struct img_store *s, const char *digest, char ret_key[IMG_DIGEST_MAX])
{
	_cleanup_free_ char *buf = NULL;
	char p[4096];

	ret_key[0] = '\0';
	if (!s->keys)
		return true;
	if (!img_digest_is_valid(digest) || verified_path(s, digest, p, sizeof(p)) < 0 ||
	    read_file_bounded(p, 128, &buf, NULL) < 0)
		return false;
	buf[strcspn(buf, "\n")] = '\0';
	if (!img_keys_have(s->keys, buf))
		return false;
	snprintf(ret_key, IMG_DIGEST_MAX, "%s", buf);
	return true;
}

/* The record, renamed into place but not fsynced: after a crash it may be empty or missing,
 * which only means the signature is checked at the registry once more. Under s->lock. */
static void write_record(const char *path, const char *line)
{
	char tmp[4200];
	int fd;
	bool ok;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return;
	ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line);
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0)
		(void)unlink(tmp);
}

int img_signature_check(struct img_store *s, struct img_source *src, const struct img_manifest *m,
			char ret_key[IMG_DIGEST_MAX], struct err *err)
{
	char p[4096], line[IMG_DIGEST_MAX + 1];
	const char *digest = m->digest;
	int r;

	ret_key[0] = '\0';
	if (!s->keys)
		return 0;
	r = img_cosign_verify(s->keys, src, digest, ret_key, err);
	if (r == -EKEYREJECTED && m->index_digest[0] && strcmp(m->index_digest, digest) != 0) {
		/* A multi-platform image: cosign signs the index the tag names. */
		struct err e2 = {0};
		int r2 = img_cosign_verify(s->keys, src, m->index_digest, ret_key, &e2);

		if (r2 >= 0)
			r = 0;
		else if (err && r2 == -EKEYREJECTED) {
			char first[ERR_MSG_MAX];

			memcpy(first, err->msg, sizeof(first));
			err_set(err, -EKEYREJECTED, "%s; and for its index: %s", first, e2.msg);
		}
	}
	if (r < 0)
		return r;
	/* Written only when it changes: a restart checks the same signature. */
	snprintf(line, sizeof(line), "%s\n", ret_key);
	if (verified_path(s, digest, p, sizeof(p)) == 0) {
		_cleanup_free_ char *old = NULL;

		pthread_mutex_lock(&s->lock);
		if (read_file_bounded(p, 128, &old, NULL) < 0 || strcmp(old, line) != 0)
			write_record(p, line);
		pthread_mutex_unlock(&s->lock);
	}
	return 0;
}
