/* SPDX-License-Identifier: MIT */
/*
 * image/ private interface between fetching (ref, registry, auth, manifest, s3) and building
 * (store, unpack, rootdisk). Never included outside image/.
 */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

struct img_descriptor {
	char media_type[128];
	char digest[IMG_DIGEST_MAX]; /* "sha256:<64 hex>" */
	uint64_t size;
};

/* A single-platform image manifest, resolved from a reference (an index is already narrowed to
 * the node's platform). */
struct img_manifest {
	char digest[IMG_DIGEST_MAX]; /* digest of the manifest bytes */
	/* The index the reference named, when it named one ("" otherwise; registries only):
	 * cosign signs that digest when given a multi-platform tag. */
	char index_digest[IMG_DIGEST_MAX];
	struct img_descriptor config;
	struct img_descriptor *layers; /* n_layers entries, base first */
	size_t n_layers;
};
void img_manifest_done(struct img_manifest *m);

/* A connection to where an image lives: a registry (v2 API) or an S3 OCI archive. One per
 * pull, used by one thread at a time. Every request is bounded by cfg's limits: the total
 * deadline runs from this open, and cancel (may be NULL) ends requests with -ECANCELED. */
struct img_source;
int img_source_open(const struct img_store_config *cfg, const struct img_ref *ref,
		    const atomic_bool *cancel, struct img_source **ret, struct err *err);
/* Watch another flag from now on (the store hands a caller's source to a shared pull). */
void img_source_set_cancel(struct img_source *src, const atomic_bool *cancel);
struct img_source *img_source_free(struct img_source *src);

/* Resolve the reference to its manifest. Errors (-ENOENT unknown image, -EACCES unauthorized,
 * -EHOSTUNREACH registry down, -EBADMSG digest mismatch, -EPROTONOSUPPORT schema 1 or unknown
 * media type) come with a message fit for the VM's error file. */
int img_source_resolve(struct img_source *src, struct img_manifest *ret, struct err *err);

/* A cheap fingerprint of what the reference names now (S3: ETag and size from a HEAD), so a
 * warm start can skip resolve() when it matches the last one. 0 with ret "" when the source has
 * none (registries: resolving a tag is already cheap). ret holds at most IMG_VERSION_MAX - 1
 * characters of [0-9a-f]. */
#define IMG_VERSION_MAX 33
int img_source_version(struct img_source *src, char ret[IMG_VERSION_MAX], struct err *err);

/* Progress: bytes received so far for this blob (monotonic within one call). */
typedef void (*img_bytes_cb)(void *ud, uint64_t bytes);

/* Download desc to path atomically: streamed to a temp file beside path, size and sha256
 * verified, then renamed. Retries and resumes broken transfers. -EBADMSG on mismatch. */
int img_source_fetch_blob(struct img_source *src, const struct img_descriptor *desc,
			  const char *path, img_bytes_cb cb, void *ud, struct err *err);

/* sha256 of a file as "sha256:<hex>". */
int img_digest_file(const char *path, char ret[IMG_DIGEST_MAX]);
/* True if s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool img_digest_is_valid(const char *s);
