/* SPDX-License-Identifier: MIT */
/*
 * image/ signature verification (cosign.c): public keys given with --verify-key, the strict
 * parsers of a cosign ".sig" manifest and of a simple-signing payload (pure, fuzzed), and the
 * check run on a resolved manifest digest before anything of the image is fetched. The format
 * is described in docs/signatures.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base64.h"
#include "internal.h"

#define IMG_SIG_MANIFEST_MAX (1u << 20) /* the .sig manifest */
#define IMG_SIG_PAYLOAD_MAX (64u << 10) /* one simple-signing payload */
#define IMG_SIG_MAX_LAYERS 64		/* signatures considered per image */
#define IMG_SIG_DER_MAX 256		/* a decoded signature (P-256 DER: at most 72) */
#define IMG_SIG_B64_MAX 1024		/* its base64 annotation */

#define IMG_MT_SIMPLESIGNING "application/vnd.dev.cosign.simplesigning.v1+json"
#define IMG_SIG_ANNOTATION "dev.cosignproject.cosign/signature"
#define IMG_SIG_TYPE "cosign container image signature"

/* Configured public keys (ECDSA P-256), loaded once at store creation. */
struct img_keys;
/* Load every PEM file of paths (NULL-terminated; NULL or empty: *ret = NULL, no check).
 * -EINVAL with a message naming the file when one is not an ECDSA P-256 public key. */
int img_keys_load(const char *const *paths, struct img_keys **ret, struct err *err);
struct img_keys *img_keys_free(struct img_keys *keys);
size_t img_keys_count(const struct img_keys *keys);
/* True if id ("sha256:<hex>" fingerprint) is one of keys. */
bool img_keys_have(const struct img_keys *keys, const char *id);

/* One signature of a .sig manifest: the payload blob and the decoded signature over it. */
struct img_sig {
	struct img_descriptor payload;
	unsigned char sig[IMG_SIG_DER_MAX];
	size_t sig_len;
};
struct img_sig_list {
	struct img_sig *sigs;
	size_t n;
	size_t n_ignored; /* layers of other media types or without a signature annotation */
};
/* Decode a .sig manifest (OCI image manifest or Docker schema 2). -EINVAL with a message when
 * malformed; a well-formed manifest without any signature layer gives n == 0. */
int img_sig_manifest_parse(const char *body, size_t len, struct img_sig_list *ret, struct err *err);
void img_sig_list_done(struct img_sig_list *l);

/* What a simple-signing payload claims. */
struct img_sig_claims {
	char digest[IMG_DIGEST_MAX]; /* critical.image.docker-manifest-digest */
	char reference[IMG_REF_MAX]; /* critical.identity.docker-reference */
};
/* Decode a payload (at most IMG_SIG_PAYLOAD_MAX bytes): -EINVAL with a message when it is not a
 * cosign simple-signing payload. */
int img_sig_payload_parse(const char *body, size_t len, struct img_sig_claims *ret,
			  struct err *err);
/* True if reference (a docker-reference claim) names the repository of ref. */
bool img_sig_reference_matches(const char *reference, const struct img_ref *ref);

/* Check that digest (the manifest digest resolved from src's reference) carries a signature by
 * one of keys, found as cosign stores it in src's repository. 0 and the fingerprint of the key
 * that verified in ret_key; -EKEYREJECTED with the reasons every signature failed in err; other
 * errors (registry unreachable, ...) as the registry gives them. */
int img_cosign_verify(const struct img_keys *keys, struct img_source *src, const char *digest,
		      char ret_key[IMG_DIGEST_MAX], struct err *err);

/* The store's side (store.c calls these; both are no-ops without keys). */
struct img_store;
/* Verify the signature of m (the platform manifest run, or else the index it was picked from,
 * which is what cosign signs for a multi-platform tag) at src, and record which key verified
 * it. */
int img_signature_check(struct img_store *s, struct img_source *src, const struct img_manifest *m,
			char ret_key[IMG_DIGEST_MAX], struct err *err);
/* True if a configured key verified digest before (ret_key: that key), or there are no keys. */
bool img_signature_cached(struct img_store *s, const char *digest, char ret_key[IMG_DIGEST_MAX]);
