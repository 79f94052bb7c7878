/* SPDX-License-Identifier: MIT */
/*
 * image/ private interface of the building half: layer path mapping, unpacking, the image
 * config for the guest, root and data disks. Never included outside image/ and its tests.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "image.h"

#define IMG_PATH_MAX 4096
#define IMG_MAX_ENTRIES 1000000
#define IMG_DEFAULT_MAX_BYTES IMG_DEFAULT_MAX_IMAGE

/* What a layer entry's path means once mapped (path.c). */
enum img_path_kind {
	IMG_PATH_ROOT,	   /* "." or "./": the root itself */
	IMG_PATH_NORMAL,   /* a file to create at rel */
	IMG_PATH_WHITEOUT, /* ".wh.NAME": delete rel (= dir/NAME) from lower layers */
	IMG_PATH_OPAQUE,   /* "dir/.wh..wh..opq": empty rel (= dir) of lower-layer content */
	IMG_PATH_SKIP,	   /* other reserved ".wh..wh.*" names (old AUFS metadata): ignored */
};

/*
 * Map an entry name from a layer tar to a clean relative path: leading "./" and duplicate or
 * trailing slashes dropped. Refuses (-EINVAL, with why in *ret_why) absolute paths, ".."
 * components, empty components in odd places, control characters, over-long paths and whiteout
 * names that would delete the root; -ENAMETOOLONG past IMG_PATH_MAX or NAME_MAX. Pure; fuzzed.
 * ret (size >= IMG_PATH_MAX) gets "" for IMG_PATH_ROOT.
 */
int img_path_map(const char *name, char *ret, size_t size, enum img_path_kind *ret_kind,
		 const char **ret_why);

/* Limits for one image's unpack. */
struct img_unpack_limits {
	uint64_t max_bytes;   /* uncompressed tar bytes over all layers */
	uint64_t max_entries; /* entries over all layers */
};

/* State kept across the layers of one image (running totals against the limits). */
struct img_unpack {
	int root_fd;		 /* the rootfs directory, owned */
	const atomic_bool *stop; /* NULL, or a flag that ends the unpack with -ECANCELED */
	struct img_unpack_limits limits;
	uint64_t bytes, entries; /* totals so far */
	bool privileged;	 /* euid 0: chown, devices, trusted xattrs */
};

int img_unpack_init(struct img_unpack *u, const char *rootfs, const struct img_unpack_limits *lim,
		    struct err *err);
void img_unpack_done(struct img_unpack *u);

/* Apply one layer (a tar, gzip/zstd/uncompressed, read from fd) on top of the rootfs. When
 * diff_id is not NULL the uncompressed stream's sha256 must match it (-EBADMSG otherwise).
 * Hostile content fails with -EPERM/-EINVAL/-EFBIG/-E2BIG and a message naming layer_name and
 * the entry. Nothing outside the rootfs is ever created, changed or followed. */
int img_unpack_layer(struct img_unpack *u, int fd, const char *layer_name, const char *diff_id,
		     struct err *err);

/* The parts of an OCI image config the store needs. */
struct img_config {
	char **diff_ids; /* n_diff_ids "sha256:..." strings */
	size_t n_diff_ids;
	/* {"entrypoint":[],"cmd":[],"env":[],"workdir":"","user":"","volumes":[]} */
	char *guest_json;
	char **volumes; /* n_volumes paths of config.Volumes, normalised and sorted */
	size_t n_volumes;
};
/* Strict parse of an image config blob (bounded by the caller). Pure; fuzzed. */
int img_config_parse(const char *data, size_t len, struct img_config *ret, struct err *err);
void img_config_done(struct img_config *c);

/* Build an ext4 image at path from the tree at dir (mkfs.ext4 -d), sized from the content,
 * the file then padded to a multiple of IMG_ROOT_DISK_ALIGN (img_pad_root_disk). -ENOSPC
 * ("disk full") when it would leave less than the disk reserve free. */
int img_make_root_disk(const char *dir, const char *path, struct err *err);
/* Grow the length of the root disk file at path to the next multiple of IMG_ROOT_DISK_ALIGN
 * with a sparse ftruncate (no block is allocated; the file system on it is unchanged). A file
 * already padded is left alone. Also for root disks an older version built unpadded: a longer
 * file changes nothing for a VMM that has it open (the guest's device size is read once, at
 * probe). */
int img_pad_root_disk(const char *path, struct err *err);

/* Free space: 0 when the filesystem holding dir has need bytes plus reserve available, else
 * -ENOSPC with "disk full: WHAT needs ..." in err. */
int img_check_space(const char *dir, uint64_t need, uint64_t reserve, const char *what,
		    struct err *err);
/* The reserve img_make_root_disk and img_make_data_disk keep (img_store_new sets it from its
 * limits; one store per process). */
void img_disk_reserve_set(uint64_t bytes);
uint64_t img_disk_reserve(void);
/* Limits with every 0 field replaced by its default (cfg->max_image_bytes honoured). */
void img_limits_fill(const struct img_store_config *cfg, struct img_limits *ret);

/* Allocated bytes of a tree (st_blocks), not crossing filesystems; -errno on failure. */
int img_tree_usage(int dir_fd, uint64_t *ret_bytes, uint64_t *ret_inodes);

/* ---- the store (store.c, gc.c) ---- */

#include <pthread.h>

/* One pull in flight, keyed by manifest digest, run by a thread of its own; every caller for
 * the same digest waits on it. Fields protected by img_store.lock unless noted. */
struct img_source;
struct img_pull {
	struct img_pull *next;
	struct img_store *s;
	char digest[IMG_DIGEST_MAX];
	unsigned refs;	  /* the pull thread plus callers inside img_prepare; last one frees */
	unsigned waiters; /* callers still waiting and not cancelled */
	bool listed;	  /* in img_store.pulls: new callers may join it */
	bool done;
	int result;
	struct err err;
	atomic_bool abort; /* no waiter left: the thread stops its transfers and its unpack */
	char **blobs;	   /* digests this pull writes into blobs/ (GC keeps them) */
	size_t n_blobs;
	struct img_progress progress; /* the pull's latest, relayed to the waiters */
	unsigned long progress_seq;
	/* The pull thread's own. */
	struct img_source *src;
	struct img_manifest *m;
	/* The creating caller's progress callback, called from the pull thread under cb_lock
	 * while that caller waits (NULL once it left). */
	pthread_mutex_t cb_lock;
	img_progress_cb cb;
	void *ud;
};

struct img_store {
	struct img_store_config cfg; /* deep copy, strings owned */
	char **insecure;
	char *root;  /* <state_dir>/images */
	int lock_fd; /* flock on <root>/lock: one daemon per store */
	/* Never held across network I/O or unpacking. Protects the pulls list, holder and alias
	 * files, renames into images/ and GC. Lock order: a pull's pipeline lock (pull.c) may be
	 * held while taking this one (progress relay), never the reverse. */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct img_pull *pulls;
	unsigned pull_threads;	     /* running; img_store_free waits for them */
	struct img_limits limits;    /* cfg.limits with the defaults filled in */
	unsigned long pulls_started; /* statistics for tests: pulls actually run */
	struct img_keys *keys;	     /* --verify-key keys, NULL when none (cosign.c) */
};

/* Paths inside the store. */
int img_store_path(const struct img_store *s, char *buf, size_t size, const char *fmt, ...)
	_printf_(4, 5);
/* Holder names: 1..64 of [A-Za-z0-9._-], not starting with '.'. */
bool img_holder_is_valid(const char *holder);
void img_progress_emit(img_progress_cb cb, void *ud, const char *phase, uint64_t done,
		       uint64_t total, unsigned ldone, unsigned ltotal);
/* Fetch, verify, unpack and build m into images/<hex> (pull.c); the caller coalesces. */
struct img_manifest;
struct img_source;
int img_build_image(struct img_store *s, struct img_source *src, const struct img_manifest *m,
		    img_progress_cb cb, void *ud, const atomic_bool *abort, struct err *err);
/* Number of pulls that actually ran (not coalesced or cached), for tests and benchmarks. */
unsigned long img_store_pulls(struct img_store *s);
