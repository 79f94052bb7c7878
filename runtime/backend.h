/* SPDX-License-Identifier: MIT */
/*
 * runtime/backend.h: the VMM backend interface (Firecracker under the jailer, QEMU). Private to
 * runtime/; the lifecycle (lifecycle.c, supervisor.c) calls a backend only through struct vmm_ops.
 *
 * Threading: launch, query, request_stop, adopt and cleanup block (process spawn, API calls) and
 * are called from runtime worker threads, never from the supervisor loop or a FUSE thread. One
 * VM's calls are serialised by the lifecycle (at most one in flight per VM), except kill, which
 * may be called from the supervisor at any time (it only signals a pidfd and never blocks).
 * Different VMs' calls run concurrently, so a backend keeps no unguarded shared mutable state.
 */
#pragma once

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct runtime_config;

#define VMM_PATH_MAX 4096
#define VMM_SOCK_MAX 108   /* sizeof(sockaddr_un.sun_path) */
#define VMM_VOLUMES_MAX 16 /* volume disks of one VM (VOLUME_MAX_PER_VM) */
#define VMM_DIR_MAX 256	   /* cgroup dirs: <mount>/mvmfs/NODE/<name>, kept small (per-VM memory) */

/* Everything a backend needs to start one VM. Strings are borrowed for the call. */
struct vmm_launch {
	const char *name; /* VM name, 1..36 of [A-Za-z0-9-]: jailer --id, QEMU -name */
	uint32_t index;	  /* the VM's slot in the uid range (persisted) */
	uid_t uid;	  /* distinct per VM, never 0 */
	gid_t gid;
	const char *netns_path; /* NULL: no network namespace (cfg->no_network) */
	const char *tap_name;	/* NULL: no NIC */
	const char *mac;	/* "02:xx:xx:xx:xx:xx" */
	const char *kernel;	/* host paths; the backend places them where the VMM sees them */
	const char *initrd;
	const char *rootfs;    /* shared, read-only: never chown'ed */
	const char *data_disk; /* per-VM, read-write, owned by uid:gid after launch */
	/* The VM's volumes' disks (host paths), read-write, owned by uid:gid after launch, in the
	 * same order at every start (by name); the guest finds each by its ext4 UUID. They must
	 * not be copied: the VMM writes the very file. */
	const char *const *volume_disks;
	size_t n_volume_disks;
	const char *boot_args; /* guest settings appended to the backend's base command line */
	unsigned vcpus;
	unsigned mem_mib;
	const char *run_dir;	 /* per-VM host dir the runtime owns (state_dir/vms/NAME) */
	const char *console_log; /* host path where the VMM's console/log output goes, or NULL */
	/* Set by the supervisor to ask a blocking launch to give up early (kill during start). */
	atomic_bool *cancel;
	/* The backend stores the VMM pid here as soon as it exists, so a kill during the launch
	 * can signal it (the supervisor pins it with its own pidfd). May be NULL. */
	atomic_int *pid_out;
	/* Restore the VM saved in this directory (docs/suspend.md) instead of booting it: the
	 * same devices, the guest continues. NULL: a cold boot. The state file ("state") is
	 * removed before the restored guest runs again. */
	const char *restore_dir;
};

/* What identifies a live VMM, persisted in the VM's record and restored at re-adoption. */
struct vmm_handle {
	pid_t pid;			 /* VMM pid (0: none) */
	uint64_t start_time;		 /* field 22 of /proc/<pid>/stat, in clock ticks */
	int pidfd;			 /* -EBADF when none; not persisted */
	bool is_child;			 /* our child: waitid(P_PIDFD) gives the exit status */
	char api_socket[VMM_SOCK_MAX];	 /* host path of the API / QMP socket */
	char agent_socket[VMM_SOCK_MAX]; /* host path of the agent channel (vsock uds / serial) */
	char jail_dir[VMM_PATH_MAX];	 /* per-VM host dir the backend created ("" none) */
	char cgroup[4][VMM_DIR_MAX];	 /* cgroup dirs created for the VM ("" unused) */
	int cgroup_version;		 /* 1 or 2, 0 none */
};

/* Instance state as the VMM reports it. */
enum vmm_run_state {
	VMM_RUN_UNKNOWN,
	VMM_RUN_NOT_STARTED,
	VMM_RUN_RUNNING,
	VMM_RUN_PAUSED,
	VMM_RUN_GONE, /* process not alive */
};

/* How the VMM process ended. */
struct vmm_exit {
	bool known; /* false after re-adoption: the process was not our child */
	int code;   /* exit code when !signal */
	int signal; /* terminating signal or 0 */
};

struct vmm_ops {
	const char *name; /* "firecracker", "qemu" */

	/* Node-wide setup at runtime_new (check binaries, detect cgroups). *ret_priv is passed to
	 * every other op. */
	int (*init)(const struct runtime_config *cfg, void **ret_priv, struct err *err);
	void (*free)(void *priv);

	/* Spawn, configure and boot until the VMM says the guest is running. Fills h (pid, pidfd,
	 * start_time, sockets, jail dir, cgroups) as soon as each piece exists, so that on failure
	 * the caller can still kill and clean up with it. The VMM's own error text (Firecracker's
	 * fault_message) goes verbatim into err, prefixed with the call, e.g.
	 * "PUT /drives/rootfs: Drive config error: ...". */
	int (*launch)(void *priv, const struct vmm_launch *p, struct vmm_handle *h,
		      struct err *err);

	/* The VMM's view of the instance (GET / for Firecracker, query-status for QEMU). */
	int (*query)(void *priv, struct vmm_handle *h, enum vmm_run_state *ret, struct err *err);

	/* Ask the guest to shut down (SendCtrlAltDel, system_powerdown). Returns at once; the
	 * caller waits for the process to exit and kills it at its deadline. */
	int (*request_stop)(void *priv, struct vmm_handle *h, struct err *err);

	/* SIGKILL through the pidfd. Never blocks. -ESRCH when already gone. */
	int (*kill)(void *priv, struct vmm_handle *h);

	/* Pause / resume the guest's vCPUs (memory stays in the VMM). Idempotent. */
	int (*pause)(void *priv, struct vmm_handle *h, struct err *err);
	int (*resume)(void *priv, struct vmm_handle *h, struct err *err);
	/* Save the whole paused VM into dir: the device state as dir/state.tmp (the caller
	 * checksums, fsyncs and renames it), the guest memory beside it, on disk when this
	 * returns. The VMM stays alive and paused; the caller then kills it. */
	int (*save)(void *priv, const char *name, struct vmm_handle *h, const char *dir,
		    struct err *err);

	/* After a daemon restart: h comes from the record (pidfd -EBADF). Check that h->pid still
	 * is the VMM (start time), open its pidfd, reconnect what is needed. -ESRCH when it is gone
	 * (the caller then marks the VM failed). */
	int (*adopt)(void *priv, const char *name, struct vmm_handle *h, struct err *err);

	/* Remove everything the backend created on the host for this VM (jail dir, cgroups,
	 * sockets). The process must be dead. Idempotent; missing pieces are not errors. */
	void (*cleanup)(void *priv, const char *name, struct vmm_handle *h);

	/* At start: remove the backend's marked leftovers (jail dirs, cgroups, processes) whose VM
	 * name is_known() rejects. Returns the number removed. */
	int (*reap)(void *priv, bool (*is_known)(const char *name, void *ud), void *ud);
};

extern const struct vmm_ops vmm_firecracker_ops;
extern const struct vmm_ops vmm_qemu_ops; /* runtime/qemu.c (helper "guest") */

/* The process handle both backends use (runtime/proc.c). */
#include "proc.h"
