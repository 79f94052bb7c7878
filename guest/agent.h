/* SPDX-License-Identifier: MIT */
/*
 * guest: the in-VM agent (PID 1 in the initramfs). Internal interface between its files.
 * Single-threaded: one poll loop in main.c owns everything.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent-proto.h"

#define AGENT_NAME "mvmfs-agent 0.1.0"
#define GUEST_CONFIG_PATH "/mvmfs/vm.json"
#define GUEST_MODULES_LIST "/mvmfs/modules.list"
#define NEWROOT "/newroot"

/* A volume to mount: the disk whose ext4 UUID is uuid, at path inside the container. fresh:
 * never mounted before, so it takes the content and ownership of the image's directory at
 * path (Docker's rule). */
#define GUEST_VOLUMES_MAX 16
struct guest_volume {
	uint8_t uuid[16];
	char path[1024];
	bool fresh;
};

/* The per-VM settings from /mvmfs/vm.json (runtime/guest-config.h writes it). */
struct guest_vm {
	char name[64];
	bool have_addr;
	struct in6_addr addr;
	unsigned prefix_len;
	bool have_gateway;
	struct in6_addr gateway;
	char mac[18];
	unsigned mtu;
	char **entrypoint; /* NULL-terminated, may be empty */
	char **cmd;
	char **env;    /* "K=V" */
	char *workdir; /* NULL or "" */
	char *user;    /* NULL or "" */
	bool vsock;    /* transport: vsock (Firecracker) vs virtio-serial (QEMU) */
	uint32_t port;
	unsigned heartbeat_ms;
	unsigned grace_ms;
	bool no_network;
	struct guest_volume volumes[GUEST_VOLUMES_MAX];
	unsigned n_volumes;
	bool template; /* a booted template: wait for the VM's identity (identity.c) */
};

/* config.c */
int guest_vm_parse(const char *json, size_t len, struct guest_vm *ret, char *errbuf, size_t errsz);
int guest_vm_load(const char *path, struct guest_vm *ret, char *errbuf, size_t errsz);
int guest_vm_load_initrd(const char *path, struct guest_vm *ret, char *errbuf, size_t errsz);
void guest_vm_done(struct guest_vm *vm);

/* identity.c: a template's identity, assembled from IDENTITY pieces (in order from offset 0;
 * a piece at offset 0 starts over), then checked against IDENTITY_END (length, CRC) and parsed
 * as vm.json: it must not be a template's and must use the channel the template uses. */
struct identity_asm {
	uint8_t *buf;
	uint32_t total, have;
	bool broken; /* a piece came out of order */
};
void identity_reset(struct identity_asm *a);
int identity_piece(struct identity_asm *a, const struct agent_identity *p);
int identity_finish(struct identity_asm *a, const struct agent_identity_end *e, bool vsock,
		    struct guest_vm *ret, char *errbuf, size_t errsz);
/* Add host entropy to the kernel's pool (RNDADDENTROPY, credited) and reseed the CRNG. */
int entropy_add(const uint8_t *data, size_t len);

/* log: to the console (stderr), and queued to the host as AGENT stream output. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* modules.c: load each module listed in path, in order. Returns the number loaded. */
int modules_load_list(const char *path);

/* mounts.c */
int mounts_early(void);
/* disks -> overlay at NEWROOT with proc/sys/dev/tmp; n_volumes disks are the volumes', not the
 * root's or the writable layer's */
int mounts_root(const struct guest_vm *vm);
int mounts_etc(const struct guest_vm *vm); /* hostname, resolv.conf, hosts */
/* Each mount of the last mounts_root and its time in ms ("/mnt/root 31.2, /mnt/data 12.0, ..."). */
const char *mounts_timing(void);
/* volumes.c: find each volume's disk by its ext4 UUID among /dev/vd*, waiting (bounded) for
 * all of them; others gets the first two other disks (root and writable layer), in name order.
 * -ENODEV when a volume's disk is missing. */
int volumes_scan(const struct guest_vm *vm, char others[2][8], unsigned *n_others);
/* Each volume's disk mounted at its path inside NEWROOT (root: the directory the
 * paths are inside), fresh ones filled from the image first. 0, or -errno when a volume cannot
 * be mounted (the app must not start without its data). */
int volumes_mount(const struct guest_vm *vm, const char *root);
/* statfs of the writable layer and of each mounted volume, as a DISK_USAGE message. */
void volumes_usage(struct agent_disk_usage *ret);
/* The pieces of volumes_mount, for tests. The directory path inside root (resolved there:
 * symlinks cannot leave it), created (0755, root's) with its missing parents; an O_PATH fd.
 * *ret_created: it did not exist. */
int volume_dir_in_root(int root_fd, const char *path, bool *ret_created);
/* A new filesystem: nothing but lost+found. */
bool volume_is_empty(int vol_fd);
/* Docker's rule for a new volume (vol_fd its root): lost+found goes, then the content, owner and
 * mode of the directory at path inside root, if there is one, are copied into it. */
int volume_fill_fresh(int root_fd, const char *path, int vol_fd);
/* Unmount every mount below NEWROOT that mounts_teardown does not know (the volumes). */
void volumes_unmount(void);
void mounts_teardown(void); /* kill leftovers, sync, unmount */
_Noreturn void power_off(bool vsock);
int wait_for_path(const char *path, unsigned timeout_ms);

/* warm.c: read ahead, on a thread, the files the app's start reads first (passwd, group, the
 * program and its "#!" interpreter) inside root; warm_end joins it. Best effort, never fails. */
#define WARM_HEAD 256 /* the bytes of a program the kernel looks at for "#!" */
void warm_begin(const struct guest_vm *vm, const char *root);
void warm_end(void);
/* The same in line, calling seen for each file read ahead (tests). -errno when root cannot be
 * opened. */
int warm_run(const struct guest_vm *vm, const char *root, void (*seen)(void *ud, const char *path),
	     void *ud);
/* The interpreter of a "#!" line in the first len (<= WARM_HEAD) bytes of a file: strict (the
 * line ends inside them, the path is absolute and fits outsz). 0, or -EINVAL. */
int warm_shebang(const uint8_t *buf, size_t len, char *out, size_t outsz);

/* netcfg.c */
int net_configure(const struct guest_vm *vm);
/* The unsolicited neighbour advertisement of eth0's address again (after a restore: the host
 * rebuilt the VM's network and forgot its neighbour entry). */
void net_announce(const struct guest_vm *vm);

/* app.c */
struct app {
	pid_t pid;	    /* 0 when not running */
	int out_fd, err_fd; /* read ends, -1 when closed */
	bool exited;
	int code, signal;
	bool start_failed;
};
/* Start vm's process; root is "/" in test mode or NEWROOT. */
int app_start(const struct guest_vm *vm, const char *root, struct app *app);
/* Resolve "name", "uid", "uid:gid", "name:group" against root's /etc/passwd and /etc/group. */
int user_resolve(const char *root, const char *spec, uid_t *ret_uid, gid_t *ret_gid, gid_t *groups,
		 int *ngroups, char *home, size_t homesz);

/* channel.c: the transport plus a bounded outgoing buffer. */
struct channel;
enum channel_kind { CHANNEL_SERIAL, CHANNEL_VSOCK, CHANNEL_STDIO };
struct channel *channel_new(enum channel_kind kind, uint32_t port);
/* fds to poll and their events; returns count (<= 2). */
int channel_poll_fds(struct channel *ch, int *fds, short *events, uint64_t now_ms);
/* Handle readiness; decoded host messages are passed to cb. */
void channel_handle(struct channel *ch, int fd, short revents, uint64_t now_ms,
		    void (*cb)(void *ud, const struct agent_msg *m), void *ud);
/* Timer work (reopen after the host went away). Returns ms until it wants to be called. */
int channel_tick(struct channel *ch, uint64_t now_ms);
/* Queue a message. Output beyond the buffer's output share is dropped and counted. */
int channel_send(struct channel *ch, const struct agent_msg *m);
bool channel_host_present(struct channel *ch);
uint64_t channel_dropped(struct channel *ch);
/* Try to flush for up to timeout_ms (before power-off). */
void channel_flush(struct channel *ch, unsigned timeout_ms);
extern struct channel *agent_channel; /* for agent_log */

uint64_t now_ms(void);

/* The steps of a boot after the identity (cold: after the channel opened), each marked with
 * boot_mark when it ends and logged as one "boot timing" line once the app runs. */
enum boot_step {
	BT_BEGIN,
	BT_DISKS, /* the disks are there */
	BT_IMAGE, /* the image's root disk mounted */
	BT_DATA,  /* the writable disk mounted */
	BT_ROOT,  /* the overlay and the API file systems inside it */
	BT_ETC,
	BT_VOLUMES,
	BT_NET,
	BT_APP,
	_BT_MAX,
};
void boot_mark(enum boot_step step);

static inline int MIN_INT(int a, int b)
{
	return a < b ? a : b;
}
