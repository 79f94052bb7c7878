/* SPDX-License-Identifier: MIT */
/*
 * runtime/volume.h: a VM's volumes, persistent disks that outlive its writable layer.
 *
 * Two parts. The store (volume.c) keeps each volume on the host:
 *
 *     STATE_DIR/volumes/VM/VOL/volume.json   {"path": "/data", "size": N, "fresh": true,
 *                                             "growing": false}, written atomically
 *     STATE_DIR/volumes/VM/VOL/disk.ext4     sparse ext4 file of size bytes
 *
 * A volume is built in STATE_DIR/volumes/VM/.new-VOL and renamed into place once its disk and
 * config are complete; a destroy renames it to .del-VOL before removing it; a grow records
 * "growing" before it truncates and runs resize2fs. volume_store_recover() finishes or removes
 * whatever a crash left half done. One store per state dir; its lock serialises the calls, but
 * is not held across mkfs or resize2fs (bounded by 60 s each), so the calls for one VM must be
 * serialised by the caller (the runtime holds that VM's vol_lock).
 *
 * What fs/ calls for vms/NAME/volumes/ (the vm_volume_* functions) is in runtime.h.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "runtime.h" /* VOLUME_NAME_MAX, sizes, volume_name_is_valid, enum volume_attr */

#define VOLUME_NAME_MAX 32		 /* 1..32 of [a-z0-9-] */
#define VOLUME_PATH_MAX 1023		 /* bytes of a path inside the container */
#define VOLUME_MAX_PER_VM 16		 /* disks a VM gets beside its root and writable layer */
#define VOLUME_SIZE_MIN (16ULL << 20)	 /* 16 MiB: room for ext4's journal */
#define VOLUME_SIZE_MAX (16ULL << 40)	 /* 16 TiB: ext4's limit with 4 KiB blocks */
#define VOLUME_SIZE_DEFAULT (1ULL << 30) /* --volume-size */
#define VOLUME_CONFIG_MAX 4096		 /* bytes of a volume.json */

/* ---- pure rules (fuzzed) ---- */

/* An absolute, normalised path inside the container: starts with '/', not "/" itself, no empty,
 * "." or ".." component, no trailing '/', components of at most 255 bytes, at most
 * VOLUME_PATH_MAX bytes of printable ASCII, not /proc, /sys or /dev or below them (the agent's
 * own mounts). 0 or -EINVAL with why in *ret_why (may be NULL). */
int volume_path_check(const char *path, const char **ret_why);
/* a and b are equal or one is an ancestor of the other (whole components). */
bool volume_paths_overlap(const char *a, const char *b);
/* A size: decimal bytes with an optional K, M, G or T suffix (binary units), rounded up to a
 * multiple of 4096, within [VOLUME_SIZE_MIN, VOLUME_SIZE_MAX]. -EINVAL (why in *ret_why) or 0. */
int volume_size_parse(const char *s, uint64_t *ret, const char **ret_why);
/* The name a volume declared by an image at path gets: the path without its leading '/',
 * '/' and every character outside [a-z0-9-] as '-', upper case folded, cut to VOLUME_NAME_MAX
 * ("/var/lib/data" -> "var-lib-data"). -EINVAL when the path is not valid. */
int volume_name_from_path(const char *path, char ret[VOLUME_NAME_MAX + 1]);

/* One volume as recorded. path is "" until one is written. */
struct volume {
	char name[VOLUME_NAME_MAX + 1];
	char path[VOLUME_PATH_MAX + 1];
	uint64_t size;
	bool fresh;   /* never mounted yet: the guest fills it from the image's directory */
	bool growing; /* a grow did not finish (recovery runs resize2fs again) */
};

/* Strict decode of a volume.json (bounded by VOLUME_CONFIG_MAX): an object with exactly the
 * keys path, size, fresh and optionally growing, each valid. Pure; fuzzed. */
int volume_config_decode(const char *data, size_t len, struct volume *ret, struct err *err);
/* Encode v into a malloc'd NUL-terminated buffer. */
int volume_config_encode(const struct volume *v, char **ret);

/* ---- the store ---- */

struct volume_store;

/* Open (creating) STATE_DIR/volumes. default_size: 0 for VOLUME_SIZE_DEFAULT. */
int volume_store_new(const char *state_dir, uint64_t default_size, struct volume_store **ret,
		     struct err *err);
struct volume_store *volume_store_free(struct volume_store *s);
uint64_t volume_store_default_size(const struct volume_store *s);

/* Finish or remove what a crash left: .new-* and .del-* directories are removed, a volume
 * whose grow was interrupted is grown again, a volume directory without a valid config or disk
 * is removed (logged). Returns the number of entries repaired or removed. */
int volume_store_recover(struct volume_store *s, struct err *err);
/* VM names that have a directory in the store (sorted, NULL-terminated, one allocation),
 * so the runtime can drop the volumes of VMs it does not know. Returns the count. */
int volume_store_vms(struct volume_store *s, char ***ret);

/* Create volume vol of VM vm: path (NULL or "" for none yet, else checked and not overlapping
 * another volume of vm), size (0: the store's default; else checked). -EINVAL bad name, path or
 * size; -EEXIST; -ENOSPC over VOLUME_MAX_PER_VM or disk full; -EIO mkfs failed. Nothing is left
 * behind on failure. */
int volume_create(struct volume_store *s, const char *vm, const char *vol, const char *path,
		  uint64_t size, struct err *err);
/* Remove a volume and its data. -ENOENT if unknown. */
int volume_destroy(struct volume_store *s, const char *vm, const char *vol, struct err *err);
/* Remove every volume of vm (the VM's destroy). */
int volume_destroy_all(struct volume_store *s, const char *vm, struct err *err);
/* One volume's record. -ENOENT if unknown. */
int volume_get(struct volume_store *s, const char *vm, const char *vol, struct volume *ret,
	       struct err *err);
/* All volumes of vm sorted by name into a malloc'd array (NULL when none). Returns the count. */
int volume_list(struct volume_store *s, const char *vm, struct volume **ret, struct err *err);
/* Set the path (checked; -EINVAL when it overlaps another volume of vm). */
int volume_set_path(struct volume_store *s, const char *vm, const char *vol, const char *path,
		    struct err *err);
/* Grow to size (rounded as volume_size_parse does): -EINVAL when smaller than now or out of
 * bounds, -ENOSPC disk full; the same size is a no-op. */
int volume_set_size(struct volume_store *s, const char *vm, const char *vol, uint64_t size,
		    struct err *err);
/* Clear the fresh flag (the guest has mounted and filled it). */
int volume_mark_used(struct volume_store *s, const char *vm, const char *vol, struct err *err);
/* The disk file of a volume (whether or not it exists). -ENAMETOOLONG. */
int volume_disk_path(const struct volume_store *s, const char *vm, const char *vol, char *buf,
		     size_t size);

/* ---- at a start (the launch job) ---- */

/* What a start attaches: each volume of the VM, by name, with its disk and ext4 UUID. */
struct volume_attach {
	char name[VOLUME_NAME_MAX + 1];
	char path[VOLUME_PATH_MAX + 1];
	char disk[4096]; /* the disk file on the host */
	uint8_t uuid[16];
	uint64_t size;
	bool fresh;
};

/* Before a start: when new_image (the first start that runs this image digest), each path the
 * image declares (declared[0..n_declared), normalised) that no volume of vm has, and that
 * overlaps none, becomes a volume named after it (volume_name_from_path; "-2", "-3"... when the
 * name is taken) at the default size; a declared path the rules refuse, or one overlapping a
 * volume of the user's, is skipped (logged). Then every volume is checked (a path is set, an
 * interrupted grow is finished) and listed in ret (malloc'd, by name; NULL when none). Returns
 * the count, or -EINVAL ("volume VOL has no path") / another -errno with a message. */
int volume_prepare_start(struct volume_store *s, const char *vm, const char *const *declared,
			 size_t n_declared, bool new_image, struct volume_attach **ret,
			 struct err *err);
/* The ext4 UUID of a volume's disk (its superblock). */
int volume_disk_uuid(const char *disk, uint8_t uuid[16], struct err *err);

/* The VM's disks for disk-usage and metrics (vm-volume.c): the writable layer, then the
 * volumes by name, each with its size and, when the guest has reported them, used and avail
 * bytes. Returns the count (at most max). */
struct metrics_disk;
size_t vm_disks_sample(struct vm *vm, struct metrics_disk *ret, size_t max);
