/* SPDX-License-Identifier: MIT */
/*
 * runtime/internal.h: what the runtime sources share. Never included from another directory (except
 * the runtime's own tests).
 *
 * Lock order: rt->lock (VM table) before vm->lock (snapshot). No runtime lock is held while
 * calling a vm_done_cb or vm_notify_cb, or while calling into a backend, net/ or image/.
 */
#pragma once

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "agent.h"
#include "backend.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "parse.h"
#include "runtime.h"

/* ---- lifecycle (lifecycle.c): the [state][event] table ---- */

enum lc_event {
	LC_EV_START, /* commands (vm_command) */
	LC_EV_STOP,
	LC_EV_KILL,
	LC_EV_RESTART,
	LC_EV_PAUSE,
	LC_EV_RESUME,
	LC_EV_SUSPEND,
	LC_EV_LAUNCH_OK,    /* worker: launch finished, VMM running */
	LC_EV_LAUNCH_FAIL,  /* worker: launch failed, everything already cleaned up */
	LC_EV_EXIT,	    /* supervisor: the VMM process ended (pidfd readable) */
	LC_EV_DEADLINE,	    /* supervisor: the graceful-stop deadline passed */
	LC_EV_CLEANUP_DONE, /* worker: host resources of an exited VMM removed */
	LC_EV_PARK_OK,	    /* worker: the pause/resume/suspend job (lc_vm.park) succeeded */
	LC_EV_PARK_FAIL,    /* worker: it failed; the VM is as it was (reason in error) */
	_LC_EV_MAX,
};

/* What a park job does (lc_vm.park): one VMM operation in flight on a running/paused VM. */
enum lc_park {
	LC_PARK_NONE,
	LC_PARK_PAUSE,
	LC_PARK_RESUME,
	LC_PARK_SUSPEND,
};

/* Lifecycle fields of a VM; owned by the supervisor thread (copied into the snapshot). */
struct lc_vm {
	enum vm_state state;
	bool pending_stop;    /* stop asked while starting */
	bool pending_kill;    /* kill asked while starting, or sent while stopping */
	bool restart;	      /* start again after the stop completes */
	bool exiting;	      /* VMM exited on its own, cleanup in flight */
	bool exit_clean;      /* that exit was clean (exit code 0) */
	bool stop_by_request; /* the exit was asked for (stop/kill) */
	enum lc_park park;    /* a pause/resume/suspend job in flight */
	bool vmm_paused;      /* the VMM's vCPUs are stopped (paused, or suspending) */
	bool saved;	      /* a complete saved state exists (suspended, or a failed restore) */
	bool restore;	      /* the launch in flight restores the saved state */
};

/* Side effects the table asks for; the supervisor implements them, tests record them. */
struct lc_actions {
	void (*launch)(void *ud);	/* start a launch job on a worker */
	void (*request_stop)(void *ud); /* ask the guest to stop (agent, else the VMM) */
	void (*arm_deadline)(void *ud); /* timer: stop_timeout_ms */
	void (*kill)(void *ud);		/* SIGKILL the VMM (or cancel a launch) */
	void (*cleanup)(void *ud);	/* start a cleanup job on a worker */
	/* Complete waiters of the verb (or all, when verb < 0) with result. */
	void (*complete)(void *ud, int verb, int result);
	void (*park)(void *ud, enum lc_park op); /* start the pause/resume/suspend job */
	void (*discard)(void *ud);		 /* remove the saved state (a job) */
};

/* Synchronous verdict for a command in this lifecycle state: 0 accept, 1 no-op, -EBUSY, -EINVAL
 * (a verb with no meaning in this state: pause/resume/suspend of created/stopped/failed). */
int lifecycle_check(const struct lc_vm *s, enum vm_verb verb);
/* vm_command without waiting for the supervisor (runtime threads). */
int vm_command_post(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud);
/* Feed an event; returns 0 if handled, -EINVAL if the event is not expected in this state
 * (ignored, logged by the caller). */
int lifecycle_event(struct lc_vm *s, enum lc_event ev, const struct lc_actions *a, void *ud);
const char *lc_event_to_string(enum lc_event ev);

/* ---- VM object (vm.c) ---- */

#define VM_WAITERS_MAX 8
struct vm_waiter {
	int verb;	 /* enum vm_verb or -1 */
	uint64_t ticket; /* the command it waits for (vm->cmds_posted at acceptance) */
	vm_done_cb done;
	void *ud;
};

struct vm_health_src {
	struct timespec vmm_since, net_since;
	enum vmm_run_state vmm_run;
	bool net_ok;
	bool net_known;
	char image_phase[32];
	uint64_t img_bytes_done, img_bytes_total;
	unsigned img_layers_done, img_layers_total;
};

/* An epoll registration of the supervisor (pidfd or deadline timer of a VM). */
struct sv_watch {
	int kind; /* SV_WATCH_* in supervisor.c */
	struct vm *vm;
};

struct vm {
	atomic_int refs;
	struct runtime *rt;
	char name[VM_NAME_MAX + 1];
	uint32_t index; /* slot in the uid range */

	pthread_mutex_t lock; /* protects everything below up to "supervisor only" */
	struct lc_vm lc;      /* written by the supervisor under lock */
	/* A command accepted and not yet committed by the supervisor: set by vm_command, cleared
	 * in the same critical section that commits what the command did (or answers it), so a
	 * second command is always checked against the state the first one left. */
	bool cmd_pending;
	/* Read-your-writes: vm_command returns once the supervisor committed what its command
	 * did (cmds_done reached the command's ticket; cmd_cond is broadcast under lock). */
	uint64_t cmds_posted, cmds_done;
	pthread_cond_t cmd_cond;
	bool live; /* visible: created, not being destroyed */
	bool destroying;
	char *image; /* reference as written, or NULL */
	char image_digest[IMG_DIGEST_MAX];
	char image_key[IMG_DIGEST_MAX]; /* key that verified its signature, "" unchecked */
	struct in6_addr ip;
	bool has_ip;
	char error[ERR_MSG_MAX + 64]; /* "RFC3339 message" or "" */
	pid_t pid;		      /* VMM pid or 0 */
	struct vm_health_src hs;
	struct timespec state_since;
	struct agent *agent; /* guest agent client while the VMM lives, or NULL */
	/* The guest's boot id as its agent said it at the last suspend (kept in the record), and
	 * whether the next agent client must find it again (a restore). */
	uint8_t boot_id[AGENT_BOOT_ID_LEN];
	bool has_boot_id, expect_boot_id;
	/* A guest booted in template mode or restored from a template waits for this vm.json
	 * (docs/template.md): the agent client started next sends it. malloc'd, taken by
	 * vm_agent_start. */
	char *identity;
	struct vm_waiter waiters[VM_WAITERS_MAX];
	unsigned n_waiters;
	uint64_t seq[_VM_ATTR_MAX];
	uint64_t boots, failures;
	struct vm_metrics mx; /* metrics.h: stops, image, Firecracker counters */

	/* supervisor only (or the single job working on this VM) */
	struct vmm_handle h;
	struct vmm_exit last_exit;
	atomic_bool cancel;	  /* kill while starting: the launch gives up */
	atomic_bool img_cancel;	  /* stop/kill/shutdown while starting: the image step gives up */
	atomic_bool pulling;	  /* the launch job is in its image step */
	atomic_int launch_pid;	  /* published by the backend as soon as it spawned */
	atomic_bool probing;	  /* a health probe job is queued or running */
	pthread_mutex_t rec_lock; /* serialises record writes of this VM */
	/* Serialises the saved state's directory between a launch (which creates or restores
	 * it) and the job discarding it; held across a whole launch job. */
	pthread_mutex_t park_lock;
	/* Serialises changes of this VM's volumes (vm-volume.c: the state check and the change,
	 * under it) with the launch's use of them, which takes it after the start was accepted:
	 * a change either ends before the launch reads the volumes or is refused (EBUSY).
	 * Taken before vm->lock. */
	pthread_mutex_t vol_lock;
	int deadline_fd; /* timerfd, -EBADF */
	bool pidfd_watched;
	struct sv_watch pid_watch, dl_watch;
	struct net_vm_info net;
	bool net_set_up;
	atomic_bool img_held; /* released by whoever exchanges it to false (discard vs destroy) */
	bool launching;	      /* the launch job is in the backend's launch (recorded: intent) */
	char rootfs[VMM_PATH_MAX];
	struct vm *next; /* runtime table chain */
};

struct vm *vm_new(struct runtime *rt, const char *name);
/* Under vm->lock: bump the change counter of attr (caller notifies after unlocking). */
void vm_touch_locked(struct vm *vm, enum vm_attr attr);
/* Set the error file ("<RFC 3339> msg") and bump its counter; takes the lock. */
void vm_set_error(struct vm *vm, const char *fmt, ...) _printf_(2, 3);
/* Tell the FUSE layer (the notify callback) and the health reporter that attr of vm may have
 * changed. */
void vm_notify(struct vm *vm, enum vm_attr attr);
/* Write vm's record (STATE_DIR/vms/NAME/record.json); a destroyed VM's is not written. */
void vm_record_save(struct vm *vm);
/* The record as it will be once state is published (written before anyone can see it). */
void vm_record_save_as(struct vm *vm, enum vm_state state);

/* ---- health (health.c) ---- */

enum health_verdict {
	HEALTH_HEALTHY,
	HEALTH_UNHEALTHY,
	HEALTH_STARTING,
	HEALTH_STOPPED,
	HEALTH_FAILED,
	HEALTH_PAUSED,
	HEALTH_SUSPENDED,
	_HEALTH_VERDICT_MAX,
};
enum check_status {
	CHECK_OK,
	CHECK_DOWN,
	CHECK_PENDING,
	CHECK_UNKNOWN,
};
struct health_input {
	enum vm_state state;
	enum check_status vmm, agent, app, net;
	bool agent_available; /* an agent channel exists in this build */
	bool net_expected;    /* host networking configured */
};
const char *health_verdict_to_string(enum health_verdict v);
/* Pure: the verdict from the state and the checks. */
enum health_verdict health_verdict(const struct health_input *in);
/* A consistent copy of what FUSE threads render (taken under vm->lock). */
struct vm_snap {
	enum vm_state state;
	struct timespec state_since;
	pid_t pid;
	bool has_ip;
	struct in6_addr ip;
	char image_digest[IMG_DIGEST_MAX];
	char image_key[IMG_DIGEST_MAX];
	struct vm_health_src hs;
	bool net_expected;
	bool has_agent;
	struct agent_status agent;  /* valid when has_agent */
	uint64_t now_mono_ms;	    /* agent_now_ms() at the snapshot */
	uint64_t saved_state_bytes; /* the saved state on disk, 0 none */
	char error[ERR_MSG_MAX + 64];
};
void vm_snapshot(struct vm *vm, struct vm_snap *ret);
/* Render the health file of a snapshot. */
int health_render(const struct vm_snap *s, char **ret, size_t *ret_len);

/* ---- records (record.c) ---- */

struct vm_record {
	char name[VM_NAME_MAX + 1];
	uint32_t index;
	enum vm_state state; /* as last written */
	char image[IMG_REF_MAX];
	char image_digest[IMG_DIGEST_MAX];
	char image_key[IMG_DIGEST_MAX]; /* key that verified it (--verify-key), "" */
	struct in6_addr ip;
	bool has_ip;
	char error[ERR_MSG_MAX + 64];
	struct vmm_handle h; /* pidfd not stored */
	char rootfs[VMM_PATH_MAX];
	char vmm[16]; /* backend name */
	/* Intent: a VMM launch is about to begin or in progress (written before the jailer or
	 * QEMU is spawned), with the uid it runs as: the next daemon then looks for its
	 * processes even when the handle has no pid yet. */
	bool launching;
	uint32_t launch_uid;
	/* The guest's boot id as its agent said it (a suspended VM's restore must find it
	 * again), "boot_id": 32 hex digits. */
	bool has_boot_id;
	uint8_t boot_id[AGENT_BOOT_ID_LEN];
};
/* Pure: encode / decode (strict, bounded). */
int record_encode(const struct vm_record *r, char **ret);
int record_decode(const char *data, size_t len, struct vm_record *ret, struct err *err);
int record_write(const char *state_dir, const struct vm_record *r);
int record_read(const char *state_dir, const char *name, struct vm_record *ret, struct err *err);
int record_remove(const char *state_dir, const char *name);

/* ---- stray VMM processes (strays.c) ---- */

/* Pure: is a process with this argv (NUL-separated, len bytes) and /proc/PID/root link (or
 * NULL) one of VM name's jail: the jailer invoked for it with our chroot base, or a process
 * whose root is jail_root (also " (deleted)")? */
bool stray_matches(const char *cmdline, size_t len, const char *root_link, const char *name,
		   const char *chroot_base, const char *jail_root);
/* SIGKILL every process of VM name's jail (Firecracker) or host dir (QEMU) except pid except
 * (the adopted VMM, or 0), and wait up to wait_ms for each to end. Returns how many were
 * killed. */
int rt_kill_strays(struct runtime *rt, const char *name, pid_t except, unsigned wait_ms);
/* Pure (fuzzed): does the NUL-separated environment hold exactly the entry mark? */
bool stray_env_matches(const char *env, size_t len, const char *mark);
/* The QEMU backend's strays: every process whose environment holds QEMU_ENV_MARK<dir> (dir: the
 * VM's host dir, real path), except pid except, SIGKILLed and waited for up to wait_ms each.
 * Returns how many. */
int qemu_kill_strays(const char *dir, const char *name, pid_t except, unsigned wait_ms);

/* ---- cgroups (cgroup.c) ---- */

struct cgroup_info {
	int version;		      /* 1 or 2 */
	char v2_mount[VMM_PATH_MAX];  /* "" when none */
	char cpu_mount[VMM_PATH_MAX]; /* v1 mount holding cpu (and cpuacct) */
	char memory_mount[VMM_PATH_MAX];
	bool memsw; /* v1 memory.memsw.limit_in_bytes available */
};
/* Pure: detect from a /proc/mounts text and the v2 root's cgroup.controllers text (may be
 * NULL). Prefers v2 when it holds both cpu and memory. */
int cgroup_detect_from(const char *mounts, const char *v2_controllers, struct cgroup_info *ret);
int cgroup_detect(int forced_version, struct cgroup_info *ret, struct err *err);
/* Append the jailer's --cgroup-version/--cgroup/--parent-cgroup arguments for the limits. */
int cgroup_jailer_args(const struct cgroup_info *ci, unsigned vcpus, unsigned mem_mib,
		       const char *parent, char args[][128], size_t max, size_t *ret_n);
/* The directories the jailer creates for id; fills dirs, returns how many. */
int cgroup_dirs(const struct cgroup_info *ci, const char *parent, const char *id,
		char dirs[][VMM_DIR_MAX], size_t max);
/* rmdir a cgroup dir (retrying briefly while tasks drain). Missing is not an error. */
int cgroup_remove(const char *dir);

/* ---- files of saved states (savefile.c) ---- */

/* Copy a regular file keeping its holes (data extents only), across file systems; dst must
 * not exist; it ends owned by uid:gid ((uid_t)-1: unchanged), 0600, fsynced. src is never
 * followed if it is a symlink. */
int savefile_copy_sparse(const char *src, const char *dst, uid_t uid, gid_t gid);
/* The same without the fsync, owner unchanged: a copy that dies with the run it is for (a
 * template's staged copy; a crash leaves nothing that needs it). */
int savefile_copy_scratch(const char *src, const char *dst);
/* SHA-256 of a file as 64 lowercase hex digits + NUL. */
int savefile_sha256(const char *path, char hex[65]);
/* The same of what fd reads from its start (pread: fd's offset is left alone). */
int savefile_fd_sha256(int fd, char hex[65]);
/* The parent of every VM cgroup: CGROUP_PARENT/NODE with a node id (so that daemons sharing a
 * host never share a VM's cgroup, nor reap each other's), CGROUP_PARENT without one (tests;
 * records written before node ids name their cgroups there too). */
#define CGROUP_PARENT "mvmfs"
#define CGROUP_PARENT_MAX 32
/* node_id: NULL or "" for none, else 1-8 of [0-9a-f] (-EINVAL otherwise). */
int cgroup_parent(const char *node_id, char buf[CGROUP_PARENT_MAX]);
/* rmdir the node's own parent (not the shared CGROUP_PARENT) in every hierarchy when empty: at
 * the backend's free, after every job ended; VMs left running keep it (EBUSY, ignored). */
void cgroup_parent_remove(const struct cgroup_info *ci, const char *parent);
/* v2: enable the cpu and memory controllers for the children of each level of parent (the
 * root's are the host's business). */
int cgroup_v2_enable(const char *v2_mount, const char *parent, struct err *err);

/* ---- Firecracker API bodies (fc-json.c, pure) ---- */

int fc_json_logger(const char *log_path, char **ret);
int fc_json_metrics(const char *metrics_path, char **ret);
int fc_json_boot_source(const char *kernel, const char *initrd, const char *boot_args, char **ret);
int fc_json_drive(const char *id, const char *path, bool root, bool read_only, char **ret);
int fc_json_machine_config(unsigned vcpus, unsigned mem_mib, char **ret);
int fc_json_net(const char *iface, const char *tap, const char *mac, char **ret);
int fc_json_vsock(unsigned cid, const char *uds_path, char **ret);
int fc_json_action(const char *action, char **ret);
/* PUT /snapshot/load: the File memory backend, loaded paused; with iface and tap, that
 * interface's TAP given by network_overrides. */
int fc_json_snapshot_load(const char *state, const char *mem, const char *iface, const char *tap,
			  char **ret);
/* Decode GET / into a run state. -EINVAL on anything malformed. */
int fc_json_instance_state(const char *body, size_t len, enum vmm_run_state *ret);
/* Extract fault_message (or micro-http's "error") from an error body into buf; when the body
 * is not such JSON, a sanitised prefix of the raw body. */
void fc_json_fault(const char *body, size_t len, char *buf, size_t size);

/* ---- Firecracker API client (fc-client.c) ---- */

#define FC_BODY_MAX 65536
struct fc_client;
int fc_client_new(const char *socket_path, struct fc_client **ret);
struct fc_client *fc_client_free(struct fc_client *c);
/* One request. 2xx -> 0 (body in *ret_body if non-NULL, malloc'd). 4xx/5xx -> -EIO with
 * "<METHOD> <path>: <fault_message>" in err. Transport failure -> -ECONNREFUSED/-ETIMEDOUT... */
int fc_request(struct fc_client *c, const char *method, const char *path, const char *body,
	       long timeout_ms, char **ret_body, size_t *ret_len, struct err *err);

/* ---- jailer (jailer.c) ---- */

struct jailer_params {
	const char *jailer;
	const char *exec_file;
	const char *chroot_base;
	const char *id;
	uid_t uid;
	gid_t gid;
	const char *netns; /* or NULL */
	const char (*cgroup_args)[128];
	size_t n_cgroup_args;
	const char *api_sock; /* inside the jail */
	int stdout_fd;	      /* console/log sink or -1 */
};
/* Build argv (pure; strings point into p or static text). Returns argc. */
int jailer_argv(const struct jailer_params *p, const char **argv, size_t max, char uid[16],
		char gid[16]);
/* posix_spawn the jailer (not daemonized: it execs into firecracker, our child). */
int jailer_spawn(const struct jailer_params *p, pid_t *ret_pid);
/* <chroot_base>/<basename(realpath(exec_file))> */
int jailer_exec_dir(const char *chroot_base, const char *exec_file, char *buf, size_t size);

/* ---- runtime / supervisor (runtime.c, supervisor.c) ---- */

struct job;
#define RT_TPL_BUILDS_MAX 8 /* template builds queued or running at once */
typedef void (*job_fn)(struct runtime *rt, struct vm *vm, void *arg);

/* Image preparation seam: tests replace img_prepare with a local fixture. */
typedef int (*rt_image_fn)(struct runtime *rt, struct vm *vm, const char *ref,
			   struct img_prepared *ret, struct err *err);

typedef void (*sv_hook_fn)(struct runtime *rt, struct vm *vm, enum lc_event ev);

struct runtime {
	struct runtime_config cfg;
	char *default_kernel, *default_initrd; /* owned defaults when cfg left them NULL */
	const struct vmm_ops *ops;
	void *ops_priv;
	struct img_store *store;
	struct volume_store *volumes; /* volume.h: STATE_DIR/volumes */
	struct net_ctx *net;	      /* used only by the net worker */
	rt_image_fn prepare_image;

	pthread_mutex_t lock; /* protects the table, index map, counters below */
	struct vm *vms;	      /* all VMs, pending ones included */
	unsigned n_vms;
	uint8_t *index_used; /* cfg.uid_count entries */
	uint64_t n_boots, n_failures, n_stops;

	vm_notify_cb notify;
	void *notify_ud;
	struct rt_report *report; /* report.h: health reports, or NULL */
	struct rt_reaper *reaper; /* reaper.c: leak reaper, or NULL */

	/* supervisor */
	pthread_t sv_thread;
	bool sv_running;
	int tick_fd; /* health probe timer */
	int epfd;
	int evfd;		/* command/event queue wake-up */
	pthread_mutex_t q_lock; /* protects q_head/q_tail */
	struct sv_msg *q_head, *q_tail;
	atomic_bool stopping;
	/* Tests only (NULL otherwise): called on the supervisor thread after an event was
	 * decided and before it is committed, to pin down orderings deterministically. */
	_Atomic(sv_hook_fn) sv_before_commit;

	/* workers (worker.c): the lifecycle pool runs the short jobs the supervisor queues (stop
	 * request, cleanup); the outside pool runs the jobs that wait on the outside world for
	 * long (launch with its image pull, create and destroy with the address allocator, the
	 * health probe of a VMM whose API may hang), each on its own thread up to
	 * RT_LONG_POOL_MAX, so slow pulls, a slow database or hung VMMs never take the capacity
	 * the lifecycle and other VMs need. */
	struct rt_pool *pool_short, *pool_long;
	bool workers_abandoned;	  /* workers_stop timed out: jobs still run, nothing is freed */
	bool shut_down;		  /* runtime_shutdown ran */
	pthread_mutex_t net_lock; /* serialises every use of net (single-threaded ctx) */
	/* template builds (template-build.c): the keys queued or building (a leaf lock), and the
	 * shutdown's cancel of a build in flight */
	pthread_mutex_t tpl_lock;
	struct rt_tpl_build {
		char key[17]; /* "": a free slot */
		long long root, data;
		bool again; /* asked for while its job ran: the job builds again (if needed) */
	} tpl_builds[RT_TPL_BUILDS_MAX]; /* each job's argument, until it ends */
	atomic_bool tpl_cancel;
};

/* ---- host resources of a VM (host.c) ---- */

/* Start / stop the guest agent client of a VM whose VMM runs (h.agent_socket). */
void vm_agent_start(struct runtime *rt, struct vm *vm);
void vm_agent_stop(struct vm *vm);
#define HOST_TEARDOWN_STRAYS 0x1     /* also SIGKILL the VM's stray VMM processes (strays.c) */
#define HOST_TEARDOWN_KEEP_IMAGE 0x2 /* keep the image hold (a suspended VM's disks) */
/* Everything a VM's VMM held on the host, in one order on every path: the agent client stops,
 * the VMM (h's pidfd, if any) is SIGKILLed and waited for (5 s) and reaped, the backend removes
 * its jail or host dir and cgroups, strays go (flags), the network is torn down (when
 * vm->net_set_up), the image hold is released (vm->img_held). Called by the single job working
 * on vm (or at start, before the threads run). */
void vm_host_teardown(struct runtime *rt, struct vm *vm, struct vmm_handle *h, unsigned flags);

/* ---- the supervisor's queue (queue.c) ---- */

/* An event (or a command: a verb's event with its ticket) for a VM. */
struct sv_msg {
	struct vm *vm; /* holds a reference */
	enum lc_event ev;
	uint64_t ticket; /* a command's, else 0 */
	struct sv_msg *next;
};

/* Post an event for vm to the supervisor (any thread). */
int sv_post_event(struct runtime *rt, struct vm *vm, enum lc_event ev);
/* Post the command vm_command accepted as ticket (its waiter carries the same ticket). */
int sv_post_command(struct runtime *rt, struct vm *vm, enum lc_event ev, uint64_t ticket);
int sv_start(struct runtime *rt);
void sv_stop(struct runtime *rt);
/* After sv_stop and the workers: drop what jobs posted too late (their records already say
 * what the next daemon must do). */
void sv_discard(struct runtime *rt);
/* Queue a job on the lifecycle pool (short, bounded jobs) or on the outside pool (jobs that wait
 * on registries, the database, the disk). Takes a VM reference. -ESHUTDOWN once stopping. */
#define RT_SHORT_POOL_THREADS 4
#define RT_LONG_POOL_MAX 64
#define RT_LONG_POOL_IDLE_MS 10000
/* Shutdown budget for jobs in flight (the daemon must be gone within 5 s of SIGTERM). */
#define RT_SHUTDOWN_REAPER_MS 1000
#define RT_SHUTDOWN_WORKERS_MS 1500
int rt_job(struct runtime *rt, struct vm *vm, job_fn fn, void *arg);
int rt_job_long(struct runtime *rt, struct vm *vm, job_fn fn, void *arg);
/* Supervisor: watch / unwatch a VM's pidfd and deadline timer. */
int sv_watch_pidfd(struct runtime *rt, struct vm *vm);
void sv_unwatch(struct runtime *rt, struct vm *vm);

/* launch.c: the launch job (image, network, files, backend). */
void job_launch(struct runtime *rt, struct vm *vm, void *arg);
/* Default image step: img_prepare with progress into the VM's health. */
int rt_prepare_image(struct runtime *rt, struct vm *vm, const char *ref, struct img_prepared *ret,
		     struct err *err);
/* jobs.c: the other jobs the lifecycle queues */
void job_request_stop(struct runtime *rt, struct vm *vm, void *arg);
/* park.c: pause, resume or suspend (arg: the enum lc_park), then LC_EV_PARK_OK/FAIL; the
 * saved state (docs/suspend.md) and its removal (job_discard). */
void job_park(struct runtime *rt, struct vm *vm, void *arg);
void job_discard(struct runtime *rt, struct vm *vm, void *arg);
const char *lc_park_to_string(enum lc_park op);
/* STATE_DIR/vms/NAME/suspend: the saved state's directory. */
int park_dir(struct runtime *rt, const char *name, char *buf, size_t size);
/* Does a complete saved state exist (the state file was renamed into place)? */
bool park_saved_exists(struct runtime *rt, const char *name);
/* Bytes the saved state takes on disk (allocated blocks), 0 when none. */
uint64_t park_saved_bytes(struct runtime *rt, const char *name);
/* The saved state is complete and its checksum matches; else -ENOENT / -EBADMSG with the reason
 * in err ("saved state corrupt: checksum mismatch ..."). */
int park_verify(struct runtime *rt, const char *name, struct err *err);
/* A suspended VM holds no host memory: the page cache of its saved files is dropped. */
void park_drop_cache(struct runtime *rt, const char *name);
void job_cleanup(struct runtime *rt, struct vm *vm, void *arg);

/* template.c: booted templates (docs/template.md), QEMU and Firecracker backends. */
enum tpl_mode {
	TPL_NONE,  /* cold boot (why says why) */
	TPL_BUILD, /* the build job: boot in template mode, capture the template */
	TPL_USE,   /* restore a copy of the template, then hand over the identity */
};
#define TPL_WORK "work" /* in a build dir: the build's disks, console and run dir */
struct tpl_plan {
	enum tpl_mode mode;
	bool build;	   /* NONE: no template of this key yet, the build job should make it */
	long long root;	   /* the layout: root and writable disks' device sizes */
	long long data;	   /* (the key's inputs) */
	char key[17];	   /* the key (16 hex digits) */
	char dir[4400];	   /* USE: the template; BUILD: the dir being built */
	char final[4300];  /* STATE_DIR/templates/KEY */
	char initrd[4500]; /* the template-mode initramfs the VMM is given */
	char why[160];
	char inputs[4096]; /* the key's input text, kept in the template as `inputs` */
	int hold_fd;	   /* held: a shared flock on dir until template_release */
	bool held;
	const char *mem; /* the memory file's name: "ram" (QEMU), "mem" (Firecracker) */
	bool shared;	 /* Firecracker: clones link the template's read-only files, not copy */
};
/* The key of a layout (root and writable disks of these sizes) from the node's kernel,
 * initramfs, vCPUs, memory and backend: t filled (mode NONE, key, final, inputs). -errno and
 * t->why when there can be no template (--no-template, another backend, no initramfs, the
 * kernel unreadable). */
int template_key(struct runtime *rt, long long root, long long data, struct tpl_plan *t);
/* What this start does, from the node's inputs and the VM's device layout (root and writable
 * disk sizes, volumes, NIC): USE (the template held until template_release) or NONE with why;
 * t->build when there is no template of that key yet (the caller queues its build). */
void template_plan(struct runtime *rt, const char *rootfs, const char *data_disk, size_t n_vols,
		   bool has_nic, struct tpl_plan *t);
/* The build job takes t->final + ".build" (mkdir, then a shared flock; one nobody holds, left
 * by a killed daemon, taken over): mode BUILD. -EEXIST the template exists, -EBUSY another builds
 * it. */
int template_build_begin(struct tpl_plan *t);
int template_write_initrd(struct runtime *rt, const struct tpl_plan *t, struct err *err);
/* USE: the template's state checked against its checksum, state and RAM copied (sparse) into
 * park_dir for the backend's restore; shared (Firecracker): the memory file's size and sum
 * checked too (the sum once per process), both hard-linked instead. */
int template_stage(const struct tpl_plan *t, const char *park_dir, struct err *err);
/* BUILD, once the VMM h (id) runs the template-mode guest: waits (30 s, ended early by
 * *cancel) for IDENTITY_WAIT, pauses, saves into park_dir, moves the files into the build dir,
 * removes its work dir, checksums and publishes it (rename to final). The caller then kills
 * the VMM. */
int template_capture(struct runtime *rt, const char *id, struct vmm_handle *h, struct tpl_plan *t,
		     const char *park_dir, atomic_bool *cancel, struct err *err);
/* template-build.c: the build job on the outside pool, for the layout of t (root, data, key),
 * unless one for that key is queued or running already. 0 queued (or there already),
 * -ENOTSUP no template without network, -errno. */
int template_build_queue(struct runtime *rt, const struct tpl_plan *t);
/* At daemon start: the node's default layout (a 1 GiB root device, the writable disk of
 * --data-disk-size, a NIC, no volumes), unless its template exists. */
int template_build_default(struct runtime *rt);
/* BUILD failed: its dir goes; the plan's hold is released. */
void template_abandon(struct tpl_plan *t);
/* The start is done with the template (its VMM runs on its own copies): the hold that kept
 * template_gc off it goes. Idempotent; a plan never made holds nothing. */
void template_release(struct tpl_plan *t);
/* The sum of a guest memory file (mem.sum): SHA-256 over the offset and content of every page
 * that is not all zeros, then the size; holes are not read. The same for the same bytes
 * whatever the file's holes. */
int template_mem_sum(const char *path, off_t *ret_size, char hex[65]);
/* t->inputs into t->dir/inputs (template_capture; tests). */
int template_write_inputs(const struct tpl_plan *t);
/* Removes, with a log line each, templates made for other node-wide inputs than the current
 * configuration's (kernel, initramfs, vCPUs, memory, backend, layout, writable disk size),
 * templates without inputs or state.sum, unfinished build dirs nobody is building, and
 * leftovers of an interrupted removal; never one a start holds (it goes at a later pass). At
 * daemon start and after a template is published. The number removed, or -errno. */
int template_gc(struct runtime *rt);
/* Health probe of a running VM: the VMM's own state and the network's. */
void job_probe(struct runtime *rt, struct vm *vm, void *arg);
int workers_start(struct runtime *rt);
/* Stop both pools; their threads get timeout_ms to finish their jobs. -ETIMEDOUT: some still
 * run (rt->workers_abandoned; the runtime must then not be freed). */
int workers_stop(struct runtime *rt, unsigned timeout_ms);
/* table.c: the VM table (under rt->lock: find, insert with a free index or want_index >= 0) */
int table_insert_locked(struct runtime *rt, struct vm *vm, long want_index);
/* adopt.c: every recorded VM back in the table (runtime_start, before the threads). */
int rt_adopt_all(struct runtime *rt, struct err *err);
/* reaper.c: leftovers with our marks but no VM, at start and every reap_interval_ms. */
enum rt_leak {
	RT_LEAK_VMM,
	RT_LEAK_NET,
	RT_LEAK_STATE,
	RT_LEAK_IP,
	RT_LEAK_IMAGE,
	RT_LEAK_VOLUME,
	_RT_LEAK_MAX
};
#define RT_DESTROY_MARK "destroying" /* in <state>/vms/<name>/: a destroy began */
int rt_reaper_new(struct runtime *rt);
void rt_reaper_free(struct runtime *rt);
int rt_reaper_start(struct runtime *rt);
/* Stop the reaper thread; a pass still waiting for jobs after RT_SHUTDOWN_REAPER_MS is
 * abandoned (rt_reaper_abandoned). */
void rt_reaper_stop(struct runtime *rt);
bool rt_reaper_abandoned(const struct runtime *rt);
/* One pass (blocks until no job runs). */
void rt_reap_pass(struct runtime *rt);
/* Every worker job runs between these (the read side of the reaper's lock). */
void rt_job_enter(struct runtime *rt);
void rt_job_leave(struct runtime *rt);
/* Append the reaper's counters to a rendered node metrics text (replaces *buf). */
int rt_reaper_metrics(struct runtime *rt, char **buf, size_t *len);
