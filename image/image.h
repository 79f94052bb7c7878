/* SPDX-License-Identifier: MIT */
/*
 * image: OCI image references, registry and S3 pulls, a content-addressed store, unpacking,
 * and the root disk a guest boots with. Public interface.
 *
 * Threading: img_store_* functions are thread-safe; img_prepare blocks (network, disk) and must
 * not be called from a FUSE worker or the supervisor loop.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define IMG_REF_MAX 4096
#define IMG_DIGEST_MAX 72 /* "sha256:" + 64 hex + NUL */

/* A parsed reference, Docker's defaults applied (docker.io, library/, latest). */
struct img_ref {
	char registry[256];	     /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
	char repository[256];	     /* "library/busybox" */
	char tag[129];		     /* "" when only a digest is given */
	char digest[IMG_DIGEST_MAX]; /* "" or "sha256:..." */
	bool is_s3;		     /* s3://BUCKET/KEY */
	char s3_bucket[64];
	char s3_key[1024];
};

/* Strict parse; -EINVAL with a message naming the problem. Pure, fuzzed. */
int img_ref_parse(const char *s, struct img_ref *ret, struct err *err);
/* Canonical text "registry/repository[:tag][@digest]" or "s3://bucket/key". */
int img_ref_format(const struct img_ref *ref, char *buf, size_t size);

struct img_store;

/* Bounds on one pull; 0 in any field means its default (the IMG_DEFAULT_* values). */
struct img_limits {
	unsigned pull_timeout_ms;    /* whole pull, resolve to root disk (30 min) */
	unsigned stall_timeout_ms;   /* no byte received for this long (60 s) */
	uint64_t disk_reserve;	     /* free bytes kept on the state dir's filesystem (512 MiB) */
	uint64_t max_manifest_bytes; /* a manifest or index (4 MiB) */
	uint64_t max_config_bytes;   /* the image config blob (8 MiB) */
	uint64_t max_layer_bytes;    /* one layer blob as declared and as received (4 GiB) */
	uint64_t max_image_bytes;    /* all blobs declared, the S3 archive, and the unpacked tree
				      * (8 GiB) */
};
#define IMG_DEFAULT_PULL_TIMEOUT_MS (30u * 60 * 1000)
#define IMG_DEFAULT_STALL_TIMEOUT_MS (60u * 1000)
#define IMG_DEFAULT_DISK_RESERVE (512ULL << 20)
#define IMG_DEFAULT_MAX_MANIFEST (4ULL << 20)
#define IMG_DEFAULT_MAX_CONFIG (8ULL << 20)
#define IMG_DEFAULT_MAX_LAYER (4ULL << 30)
#define IMG_DEFAULT_MAX_IMAGE (8ULL << 30)

struct img_store_config {
	const char *state_dir;	     /* store lives in <state_dir>/images */
	const char *const *insecure; /* NULL-terminated "host[:port]" list for plain HTTP */
	const char *docker_config;   /* NULL: $DOCKER_CONFIG/config.json or ~/.docker/config.json */
	unsigned cred_helper_timeout_ms; /* docker-credential-* deadline (0: 10 s) */
	uint64_t keep_bytes;		 /* unused images kept up to this much (GC) */
	uint64_t max_image_bytes;	 /* used when limits.max_image_bytes is 0 */
	struct img_limits limits;
	/* NULL-terminated PEM public keys (ECDSA P-256); with any, every image must carry a cosign
	 * signature by one of them (docs/signatures.md). NULL or empty: no check. */
	const char *const *verify_keys;
};

/* Load every --verify-key file and drop them again: -EINVAL with a message naming the first
 * file that is not an ECDSA P-256 PEM public key. Lets the daemon refuse to start early. */
int img_verify_keys_check(const char *const *paths, struct err *err);

int img_store_new(const struct img_store_config *cfg, struct img_store **ret, struct err *err);
struct img_store *img_store_free(struct img_store *store);

struct img_progress {
	const char *phase; /* "resolving", "pulling", "unpacking", "building disk", "ready" */
	uint64_t bytes_done, bytes_total;
	unsigned layers_done, layers_total;
};
/* Called from the pulling thread; must be quick and must not call back into the store. */
typedef void (*img_progress_cb)(void *ud, const struct img_progress *p);

/* The files a VM boots from, all inside the store. */
struct img_prepared {
	char digest[IMG_DIGEST_MAX]; /* manifest digest actually run */
	char rootfs[4096];	     /* ext4 image, shared read-only */
	/* Path of a JSON file: {"entrypoint":[],"cmd":[],"env":[],"workdir":"","user":"",
	 * "volumes":["/path",...]} (volumes: the image's declared Volumes, sorted; absent in
	 * configs cached before they were recorded) */
	char config[4096];
	/* With verify keys: "sha256:<hex>" fingerprint (of the DER public key) of the key whose
	 * signature verified digest; "" without keys. */
	char verified_key[IMG_DIGEST_MAX];
};

/*
 * Resolve, pull, verify, unpack, build the root disk (cached by manifest digest). Concurrent
 * calls for the same image coalesce into one pull, which runs in a thread of its own. holder
 * (the VM name) takes a reference on the result that img_release drops; GC never removes a
 * referenced image. Blocking, but bounded: the pull fails with -ETIMEDOUT after
 * limits.pull_timeout_ms or when no byte arrives for limits.stall_timeout_ms. When *cancel
 * (may be NULL) becomes true, this call returns -ECANCELED within a second, holding nothing;
 * the shared pull goes on while another caller still waits for it, and is aborted (partial
 * files removed) when none does. -ENOSPC (message "disk full ...") when the state directory's
 * filesystem would keep less than limits.disk_reserve free; -EFBIG for content over the
 * limits.
 */
int img_prepare(struct img_store *store, const char *ref, const char *holder, img_progress_cb cb,
		void *ud, const atomic_bool *cancel, struct img_prepared *ret, struct err *err);
int img_release(struct img_store *store, const char *holder);
/* Holders with a reference, sorted; *ret is a NULL-terminated array (one block, the caller
 * frees it with free()). Returns the count. Lets the runtime drop holds of names it does not
 * know. */
int img_holders_list(struct img_store *store, char ***ret);
/* Drop unreferenced images beyond keep_bytes. Returns bytes freed. */
int64_t img_gc(struct img_store *store);

/* Every image's root disk file has a length that is a multiple of this (a sparse tail after the
 * ext4 file system, which keeps its own, content-based size): the guest's root device has the
 * same size for all usual images, so they share one booted template (docs/template.md). */
#define IMG_ROOT_DISK_ALIGN (1ULL << 30)

/* A sparse, empty ext4 file of size bytes at path (the per-VM writable disk). -ENOSPC ("disk
 * full") unless its filesystem keeps the reserve of the image store opened last (or the
 * default) free once the disk's metadata is written. */
int img_make_data_disk(const char *path, uint64_t size, struct err *err);
/* The same for a volume (label "volume"). */
int img_make_volume_disk(const char *path, uint64_t size, struct err *err);
/* Grow the (unmounted) ext4 disk file at path to size bytes: truncate, then resize2fs -f, each
 * tool bounded by a deadline (-ETIMEDOUT). -EINVAL when the file is larger than size (no
 * shrinking); a file already of that size is resized anyway (finishes an interrupted grow).
 * -ENOSPC ("disk full") unless the growth's metadata fits beside the reserve. */
int img_grow_disk(const char *path, uint64_t size, struct err *err);
