/* SPDX-License-Identifier: MIT */
/*
 * runtime: VM objects, their lifecycle, the supervisor thread and the VMM backends.
 * This is the only header fs/ and daemon/ include from runtime/.
 *
 * Threading: every function here may be called from any thread (FUSE workers) and never blocks
 * on a VMM, the registry or the database. Long work is done by the supervisor and its workers,
 * which report completion through a vm_done_cb.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct runtime;
struct vm;

enum vmm_kind {
	VMM_FIRECRACKER,
	VMM_QEMU,
};

/* Defaults of the settings runtime_new fills when left 0 (the daemon's --help states them). */
#define RUNTIME_DEFAULT_VCPUS 2
#define RUNTIME_DEFAULT_MEM_MIB 2048
#define RUNTIME_DEFAULT_UID_BASE 200000
#define RUNTIME_DEFAULT_UID_COUNT 65536
#define RUNTIME_DEFAULT_MAX_VMS 4096

/* Node-wide configuration (command line / --config FILE). Strings are borrowed for the
 * runtime's whole life. */
struct runtime_config {
	const char *state_dir;
	enum vmm_kind vmm;
	const char *firecracker; /* binary path (resolved by daemon from PATH when NULL) */
	const char *jailer;
	const char *qemu; /* qemu-system-x86_64 */
	const char *chroot_base;
	const char *kernel;
	const char *initrd;
	const char *database_url;
	unsigned database_timeout_ms; /* bound of one address assignment (mkdir), default 5000 */
	const char *node_id; /* marks this daemon's host resources (net/); NULL: unmarked (tests) */
	const char *ipv6_prefix;
	const char *bridge;
	const char *report_url;
	const char *report_token_file;
	unsigned report_interval_ms; /* periodic health reports, default 30000 */
	unsigned report_parallel;    /* report requests in flight at once, default 8 (1-256) */
	const char *const *insecure_registries; /* NULL-terminated */
	const char *docker_config;
	const char *const *verify_keys; /* NULL-terminated cosign public keys (PEM), or NULL */
	uid_t uid_base;			/* per-VM uid/gid range: [uid_base, uid_base + uid_count) */
	uint32_t uid_count;
	unsigned vcpus;		   /* default 2 */
	unsigned mem_mib;	   /* default 2048 */
	uint64_t data_disk_bytes;  /* per-VM writable disk, default 1 GiB */
	uint64_t volume_bytes;	   /* a new volume's size (16M..16T), default 1 GiB */
	uint64_t image_keep_bytes; /* unused images kept up to this much, default 10 GiB */
	unsigned stop_timeout_ms;  /* graceful stop deadline before SIGKILL, default 10000 */
	unsigned app_grace_ms;	   /* SIGTERM -> SIGKILL inside the guest, default 5000 */
	unsigned heartbeat_ms;	   /* agent heartbeat period, default 1000 */
	unsigned max_vms;	   /* hard limit of defined VMs, default 4096 */
	int cgroup_version;	   /* 0: detect, 1 or 2 */
	bool stop_vms_on_exit;	   /* SIGTERM stops VMs instead of leaving them running */
	bool no_network;	   /* tests: skip host plumbing (IPAM still runs) */
	unsigned reap_interval_ms; /* leak reaper period, default 60000 */

	/* Image pull bounds (struct img_limits in image/image.h; 0: its defaults). */
	unsigned pull_timeout_ms;	/* whole pull, default 30 min */
	unsigned pull_stall_timeout_ms; /* no byte received, default 60 s */
	uint64_t disk_reserve_bytes;	/* kept free on the state dir's filesystem, 512 MiB */
	uint64_t max_manifest_bytes;	/* default 4 MiB (also the most allowed) */
	uint64_t max_config_bytes;	/* default 8 MiB */
	uint64_t max_layer_bytes;	/* default 4 GiB */
	uint64_t max_image_bytes;	/* blobs declared, S3 archive, unpacked tree; 8 GiB */
};

/* What a VM file shows. Each has a change sequence for poll(). */
enum vm_attr {
	VM_ATTR_STATE,
	VM_ATTR_IMAGE,
	VM_ATTR_IP,
	VM_ATTR_HEALTH,
	VM_ATTR_ERROR,
	VM_ATTR_LOG,
	VM_ATTR_CONFIG,	 /* effective settings, one "key: value" per line */
	VM_ATTR_PID,	 /* VMM pid or empty */
	VM_ATTR_METRICS, /* Prometheus text for this VM */
	_VM_ATTR_MAX,
};

enum vm_state {
	VM_STATE_CREATED,
	VM_STATE_STARTING,
	VM_STATE_RUNNING,
	VM_STATE_STOPPING,
	VM_STATE_STOPPED,
	VM_STATE_FAILED,
	VM_STATE_PAUSED,     /* vCPUs stopped, memory in the VMM */
	VM_STATE_SUSPENDING, /* the whole VM being saved under the state dir */
	VM_STATE_SUSPENDED,  /* saved on disk, no VMM (docs/suspend.md) */
	_VM_STATE_MAX,
};

enum vm_verb {
	VM_VERB_START,
	VM_VERB_STOP,
	VM_VERB_KILL,
	VM_VERB_RESTART,
	VM_VERB_PAUSE,
	VM_VERB_RESUME,
	VM_VERB_SUSPEND,
	_VM_VERB_MAX,
};

const char *vm_state_to_string(enum vm_state s);
int vm_state_from_string(const char *s); /* enum value or -EINVAL */
const char *vm_verb_to_string(enum vm_verb v);
int vm_verb_from_string(const char *s); /* enum value or -EINVAL */

/* Completion of an asynchronous request: result is >= 0 or a negative errno (-EIO when the
 * transition failed; the reason is in the VM's error file). Called exactly once, from a runtime
 * thread, with no runtime lock held. */
typedef void (*vm_done_cb)(void *ud, int result);

/* Called when an attribute of vm may have changed (for poll wake-ups), from a runtime thread,
 * with no runtime lock held. */
typedef void (*vm_notify_cb)(void *ud, struct vm *vm, enum vm_attr attr);

int runtime_new(const struct runtime_config *cfg, struct runtime **ret, struct err *err);
/* Re-adopt recorded VMs, reap leftovers, start the supervisor. */
int runtime_start(struct runtime *rt, struct err *err);
/* Stop the supervisor (VMs keep running unless cfg->stop_vms_on_exit). Bounded: pulls in
 * flight are cancelled, and jobs still waiting on the outside world after a few seconds are
 * abandoned (then runtime_shutdown_abandoned() is true, runtime_free() frees nothing and the
 * caller should exit soon; the records let the next daemon redo or undo that work). */
void runtime_shutdown(struct runtime *rt);
bool runtime_shutdown_abandoned(const struct runtime *rt);
struct runtime *runtime_free(struct runtime *rt);
void runtime_set_notify(struct runtime *rt, vm_notify_cb cb, void *ud);

/* Define a VM: validates synchronously (-EINVAL name, -EEXIST, -ENOSPC over max_vms), then
 * assigns its address and writes its record asynchronously; done gets 0, -EIO or -ENOSPC. On
 * failure nothing is left behind. While pending the name is reserved (lookups see nothing). */
int runtime_vm_create(struct runtime *rt, const char *name, vm_done_cb done, void *ud);
/* Destroy a VM: -ENOENT, -EBUSY unless created/stopped/failed; teardown is asynchronous. */
int runtime_vm_destroy(struct runtime *rt, const char *name, vm_done_cb done, void *ud);

/* Look up a live (fully created, not being destroyed) VM; returns a new reference or NULL. */
struct vm *runtime_vm_get(struct runtime *rt, const char *name);
/* Names of live VMs, sorted; *ret is a NULL-terminated array the caller frees with free()
 * (one allocation). Returns the count or -ENOMEM. */
int runtime_vm_list(struct runtime *rt, char ***ret);
/* Node-wide Prometheus text into a malloc'd buffer. */
int runtime_metrics(struct runtime *rt, char **ret, size_t *ret_len);

struct vm *vm_ref(struct vm *vm);
struct vm *vm_unref(struct vm *vm);
const char *vm_name(const struct vm *vm);
enum vm_state vm_get_state(struct vm *vm);

/* Request a transition. Synchronous checks: -EINVAL bad verb (or pause/resume/suspend of a
 * created, stopped or failed VM), -EBUSY another transition in flight, -ENOENT VM destroyed.
 * Returns 0 when accepted (done will be called), or 1 when the verb is a no-op in this state (done
 * is NOT called; the write succeeds at once). */
int vm_command(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud);
/* Set the image reference: -EINVAL malformed, -EBUSY unless created/stopped/failed. */
int vm_set_image(struct vm *vm, const char *ref, struct err *err);

/* Render an attribute's current value (newline-terminated) into a malloc'd buffer. */
int vm_show(struct vm *vm, enum vm_attr attr, char **ret, size_t *ret_len);
/* Monotonic change counter of an attribute, for POLLPRI. */
uint64_t vm_attr_seq(struct vm *vm, enum vm_attr attr);

/* ---- volumes: vms/NAME/volumes/VOL (runtime/volume.h keeps them on disk) ---- */

#define VOLUME_NAME_MAX 32		 /* 1..32 of [a-z0-9-] */
#define VOLUME_SIZE_MIN (16ULL << 20)	 /* 16 MiB: room for ext4's journal */
#define VOLUME_SIZE_MAX (16ULL << 40)	 /* 16 TiB: ext4's limit with 4 KiB blocks */
#define VOLUME_SIZE_DEFAULT (1ULL << 30) /* --volume-size */

/* 1..VOLUME_NAME_MAX of [a-z0-9-]. */
bool volume_name_is_valid(const char *name);

enum volume_attr {
	VOLUME_ATTR_PATH, /* rw: the path inside the container, "" until written */
	VOLUME_ATTR_SIZE, /* rw: bytes */
	_VOLUME_ATTR_MAX,
};

/* 0 when vm's volumes may change now (created, stopped or failed, no transition in flight),
 * -EBUSY otherwise, -ENOENT when the VM is gone. */
int vm_volumes_may_change(struct vm *vm);
/* mkdir volumes/VOL: -EINVAL name, -EEXIST, -EBUSY, -ENOSPC, -EIO. */
int vm_volume_create(struct vm *vm, const char *vol, struct err *err);
/* rmdir volumes/VOL: -ENOENT, -EBUSY. */
int vm_volume_destroy(struct vm *vm, const char *vol, struct err *err);
/* Volume names, sorted; *ret a NULL-terminated array in one allocation. Returns the count. */
int vm_volume_list(struct vm *vm, char ***ret);
bool vm_volume_exists(struct vm *vm, const char *vol);
/* Render a volume file's value (newline-terminated) into a malloc'd buffer; -ENOENT. */
int vm_volume_show(struct vm *vm, const char *vol, enum volume_attr attr, char **ret,
		   size_t *ret_len);
/* Write a volume file: -EINVAL (bad value, overlap, shrink), -EBUSY, -ENOSPC, -ENOENT. */
int vm_volume_store(struct vm *vm, const char *vol, enum volume_attr attr, const char *value,
		    struct err *err);
/* The VM's disk-usage file: one line per disk, the writable layer first, then the volumes by
 * name: "writable: used BYTES free BYTES size BYTES" ("volume VOL: ..."), as the guest last
 * reported its statfs, or "writable: unknown size BYTES" before any report. */
int vm_disk_usage_show(struct vm *vm, char **ret, size_t *ret_len);
