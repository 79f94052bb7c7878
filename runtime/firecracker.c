/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend: a jail per VM (<chroot-base>/<exec name>/<name>/root), the jailer
 * spawned not daemonized (Firecracker stays our child), the files placed in the jail, then the
 * API configuration sequence over the socket, InstanceStart and GET / until Running.
 *
 * Ownership marks: <jail dir>/.mvmfs (outside the chroot) and the cgroup parent "mvmfs/NODE"
 * (cgroup_parent); the reaper touches nothing without them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "guest-config.h"
#include "internal.h"
#include "jail-path.h"
#include "log.h"
#include "parse.h"

#define FC_API_SOCK "/run/firecracker.socket"
#define FC_VSOCK "v.sock"
#define FC_CALL_TIMEOUT_MS 5000
#define FC_START_TIMEOUT_MS 30000
#define FC_SOCKET_WAIT_MS 5000
#define FC_RUNNING_WAIT_MS 5000
/* The memory limit is the guest's RAM plus this allowance for Firecracker itself (its own
 * code and heap are a few MiB; the rest covers the page cache of the disks, charged to the
 * VM's cgroup): a guest that fills its RAM meets its own OOM killer, never the host's for the
 * VMM. */
#define FC_MEM_OVERHEAD_MIB 128
/* The snapshot's files inside the jail (docs/firecracker.md N): the same names at the restore. */
#define FC_SNAP_STATE "snapshot"
#define FC_SNAP_MEM "mem"
#define FC_SNAPSHOT_TIMEOUT_MS 60000

struct fc_priv {
	const struct runtime_config *cfg;
	struct cgroup_info cg;
	bool have_cg;
	char cg_error[ERR_MSG_MAX]; /* why there are no cgroup limits: every launch fails */
	char exec_dir[VMM_PATH_MAX];
	char cg_parent[CGROUP_PARENT_MAX]; /* mvmfs/NODE (cgroup_parent) */
};

static int fc_init(const struct runtime_config *cfg, void **ret_priv, struct err *err)
{
	char real[PATH_MAX];
	struct err e2 = {};
	struct fc_priv *fp;
	const char *base;
	int r;

	if (!cfg->firecracker || !cfg->jailer || !cfg->chroot_base)
		return err_set(err, -EINVAL, "firecracker, jailer and chroot base must be set");
	if (access(cfg->jailer, X_OK) < 0)
		return err_set(err, -errno, "jailer '%s': %s", cfg->jailer, strerror(errno));
	fp = calloc(1, sizeof(*fp));
	if (!fp)
		return -ENOMEM;
	fp->cfg = cfg;
	r = cgroup_parent(cfg->node_id, fp->cg_parent);
	if (r < 0) {
		free(fp);
		return err_set(err, r, "node id '%s' is not 1-8 of [0-9a-f]", cfg->node_id);
	}
	/* Jail paths are later resolved without following any symlink: start from the chroot
	 * base's real path (a symlinked --chroot-base-dir is fine; inside the jail nothing is). */
	base = realpath(cfg->chroot_base, real) ? real : cfg->chroot_base;
	r = jailer_exec_dir(base, cfg->firecracker, fp->exec_dir, sizeof(fp->exec_dir));
	if (r < 0) {
		free(fp);
		return err_set(err, r, "firecracker '%s': %s", cfg->firecracker, strerror(-r));
	}
	/* Fail closed: the daemon runs (records, monitoring, re-adoption), but no VM starts
	 * without its limits. */
	fp->have_cg = cgroup_detect(cfg->cgroup_version, &fp->cg, &e2) >= 0;
	if (!fp->have_cg) {
		snprintf(fp->cg_error, sizeof(fp->cg_error), "%s", e2.msg);
		log_error("firecracker: cgroup limits cannot be applied, VMs will not start: %s",
			  e2.msg);
	}
	*ret_priv = fp;
	return 0;
}

static void fc_free(void *priv)
{
	struct fc_priv *fp = priv;

	if (fp->have_cg)
		cgroup_parent_remove(&fp->cg, fp->cg_parent);
	free(priv);
}

static int copy_file(const char *src, const char *dst, uid_t uid, gid_t gid, mode_t mode)
{
	_cleanup_close_ int in = -EBADF, out = -EBADF;
	struct stat st;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0 || fstat(in, &st) < 0)
		return -errno;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (out < 0 || ftruncate(out, st.st_size) < 0)
		return -errno;
	/* Holes stay holes: a root disk is mostly its sparse padding (image/README.md). */
	for (off_t data = 0, hole; (data = lseek(in, data, SEEK_DATA)) >= 0; data = hole) {
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || lseek(out, data, SEEK_SET) < 0)
			return -errno;
		for (off_t off = data; off < hole;) {
			ssize_t n = sendfile(out, in, &off, (size_t)MIN(hole - off, 1 << 30));
			if (n < 0)
				return -errno;
			if (n == 0)
				break;
		}
	}
	if (errno != ENXIO)
		return -errno;
	if (fchown(out, uid, gid) < 0)
		return -errno;
	return 0;
}

/* Put src into the jail as dst. Shared files (kernel, initrd, rootfs) are hard-linked only when
 * world-readable, and never chown'ed (a hard link shares the inode); otherwise copied. Per-VM
 * files are hard-linked (or copied across devices) and given to uid:gid. */
static int place_file(const char *src, const char *dst, bool shared, uid_t uid, gid_t gid,
		      struct err *err)
{
	struct stat st;

	if (stat(src, &st) < 0)
		return err_set(err, -errno, "%s: %s", src, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EINVAL, "%s: not a regular file", src);
	if (!shared || (st.st_mode & S_IROTH)) {
		if (link(src, dst) == 0) {
			if (!shared && chown(dst, uid, gid) < 0)
				return err_set(err, -errno, "chown %s: %s", dst, strerror(errno));
			return 0;
		}
		if (errno != EXDEV && errno != EPERM && errno != EMLINK)
			return err_set(err, -errno, "link %s: %s", dst, strerror(errno));
	}
	if (copy_file(src, dst, uid, gid, shared ? 0400 : 0600) < 0)
		return err_set(err, -errno, "copying %s into the jail: %s", src, strerror(errno));
	return 0;
}

static int make_owned_file(const char *path, uid_t uid, gid_t gid)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	return fchown(fd, uid, gid) < 0 ? -errno : 0;
}

/* The tail of the console file, one line, for "VMM exited" messages (the jailer's error). */
static void console_tail(const char *path, char *buf, size_t size)
{
	char tmp[400];

	vmm_file_tail(path, tmp, sizeof(tmp));
	buf[0] = '\0';
	if (tmp[0])
		fc_json_fault(tmp, strlen(tmp), buf, size);
}

static const struct vmm_exit_text fc_exit_text = {.vmm = "the VMM", .tail = console_tail};

/* Is the VMM gone? If so reap it and describe why into err. */
static int check_alive(struct vmm_handle *h, const char *console, const char *what, struct err *err)
{
	return vmm_check_alive(h, &fc_exit_text, console, what, err);
}

/* One launch, carried through its steps. */
struct fc_launch_ctx {
	struct fc_priv *fp;
	const struct vmm_launch *p;
	struct vmm_handle *h;
	char root[VMM_PATH_MAX]; /* <jail dir>/root, the VMM's / */
	char boot_args[2048];
	struct fc_client *c;
};

/* Launch: the jail dir, its root and the two sockets in h; the cgroups the jailer will create. */
static int jail_paths(struct fc_launch_ctx *lc, struct err *err)
{
	struct fc_priv *fp = lc->fp;
	struct vmm_handle *h = lc->h;

	if (snprintf(h->jail_dir, sizeof(h->jail_dir), "%s/%s", fp->exec_dir, lc->p->name) >=
		    (int)sizeof(h->jail_dir) ||
	    snprintf(lc->root, sizeof(lc->root), "%s/root", h->jail_dir) >= (int)sizeof(lc->root))
		return err_set(err, -ENAMETOOLONG, "jail path too long");
	if (snprintf(h->api_socket, sizeof(h->api_socket), "%s%s", lc->root, FC_API_SOCK) >=
		    (int)sizeof(h->api_socket) ||
	    snprintf(h->agent_socket, sizeof(h->agent_socket), "%s/%s", lc->root, FC_VSOCK) >=
		    (int)sizeof(h->agent_socket))
		return err_set(err, -ENAMETOOLONG, "socket path longer than 107 bytes under %s",
			       lc->root);
	if (!fp->have_cg)
		return err_set(err, -EIO, "cgroup limits cannot be applied: %s", fp->cg_error);
	h->cgroup_version = fp->cg.version;
	cgroup_dirs(&fp->cg, fp->cg_parent, lc->p->name, h->cgroup, ELEMENTSOF(h->cgroup));
	return 0;
}

/* Launch: a fresh marked jail with the kernel, initrd, disks and the VMM's log and metrics
 * files in its root. */
static int place_files(struct fc_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	const struct {
		const char *name, *what, *src; /* src NULL: the launch has none */
		bool shared;
	} files[] = {
		{"vmlinux", "kernel: ", p->kernel, true},
		{"initrd", "initrd: ", p->initrd, true},
		{"rootfs.ext4", "root disk: ", p->rootfs, true},
		{"data.ext4", "data disk: ", p->data_disk, false},
	};
	static const char *const owned[] = {"firecracker.log", "metrics.json"};
	char path[VMM_PATH_MAX + 64];
	int r;

	/* A leftover jail of the same id would make the jailer fail (mknod, pid file). */
	(void)rm_rf(lc->h->jail_dir);
	r = mkdir_p(lc->root, 0700);
	if (r < 0)
		return err_set(err, r, "creating %s: %s", lc->root, strerror(-r));
	r = vmm_mark_dir(lc->h->jail_dir, p->name, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(files); i++) {
		if (!files[i].src)
			continue;
		snprintf(path, sizeof(path), "%s/%s", lc->root, files[i].name);
		r = place_file(files[i].src, path, files[i].shared, p->uid, p->gid, err);
		if (r < 0)
			return err_prefix(err, "%s", files[i].what);
	}
	/* The volumes: hard links only, never copies (the VMM must write the volume's own file),
	 * so the jail base and the state dir must share a filesystem. */
	for (size_t i = 0; i < p->n_volume_disks; i++) {
		snprintf(path, sizeof(path), "%s/vol%zu.ext4", lc->root, i);
		if (link(p->volume_disks[i], path) < 0)
			return err_set(
				err, -errno,
				"volume disk %s: cannot be hard-linked into the jail (%s): the "
				"jail base and the state dir must be on one filesystem",
				p->volume_disks[i], strerror(errno));
		if (chown(path, p->uid, p->gid) < 0)
			return err_set(err, -errno, "chown %s: %s", path, strerror(errno));
	}
	for (size_t i = 0; i < ELEMENTSOF(owned); i++) {
		snprintf(path, sizeof(path), "%s/%s", lc->root, owned[i]);
		if ((r = make_owned_file(path, p->uid, p->gid)) < 0)
			return err_set(err, r, "creating %s: %s", path, strerror(-r));
	}
	return 0;
}

/* Launch: the jailer's cgroup arguments, its spawn (output into the console file) and the
 * pidfd of the VMM it becomes. */
static int spawn_vmm(struct fc_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	struct fc_priv *fp = lc->fp;
	_cleanup_close_ int console = -EBADF;
	char cg_args[16][128];
	size_t n_cg = 0;
	pid_t pid;
	int r;

	r = cgroup_jailer_args(&fp->cg, p->vcpus, p->mem_mib + FC_MEM_OVERHEAD_MIB, fp->cg_parent,
			       cg_args, ELEMENTSOF(cg_args), &n_cg);
	if (r < 0)
		return err_set(err, r, "cgroup arguments");
	if (p->console_log) {
		console = open(p->console_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			       0600);
		if (console < 0)
			return err_set(err, -errno, "%s: %s", p->console_log, strerror(errno));
	}
	r = jailer_spawn(&(struct jailer_params){.jailer = fp->cfg->jailer,
						 .exec_file = fp->cfg->firecracker,
						 .chroot_base = fp->cfg->chroot_base,
						 .id = p->name,
						 .uid = p->uid,
						 .gid = p->gid,
						 .netns = p->netns_path,
						 .cgroup_args = (const char(*)[128])cg_args,
						 .n_cgroup_args = n_cg,
						 .api_sock = FC_API_SOCK,
						 .stdout_fd = console},
			 &pid);
	if (r < 0)
		return err_set(err, r, "spawning the jailer '%s': %s", fp->cfg->jailer,
			       strerror(-r));
	r = vmm_handle_track_child(lc->h, pid, p->pid_out);
	if (r < 0)
		return err_set(err, r, "pidfd for the VMM %d: %s", (int)pid, strerror(-r));
	return 0;
}

/* The socket is in run/, which the VM's uid owns: connect without following symlinks. The file
 * appears at bind(), before listen(): ready once a connect succeeds. */
static int socket_accepts(struct vmm_handle *h, void *ud, struct err *err)
{
	_cleanup_close_ int fd = jail_connect(h->api_socket, 100);

	return fd >= 0;
}

/* Launch: the API socket accepts; then the client for the configuration. */
static int connect_api(struct fc_launch_ctx *lc, struct err *err)
{
	char late[VMM_SOCK_MAX + 64];
	int r;

	snprintf(late, sizeof(late), "the API socket %s did not appear", lc->h->api_socket);
	r = vmm_wait_for(lc->h, lc->p, &fc_exit_text,
			 &(struct vmm_wait){.what = "waiting for the API socket",
					    .late = late,
					    .timeout_ms = FC_SOCKET_WAIT_MS,
					    .step_ms = 5,
					    .ready = socket_accepts},
			 err);
	if (r < 0)
		return r;
	r = fc_client_new(lc->h->api_socket, &lc->c);
	if (r < 0)
		return err_set(err, r, "API client: %s", strerror(-r));
	return 0;
}

/* The kernel command line: the backend's base, then the guest settings. */
static int boot_cmdline(struct fc_launch_ctx *lc, struct err *err)
{
	const char *extra = lc->p->boot_args;
	size_t size = sizeof(lc->boot_args);
	int r;

	r = guest_kernel_cmdline(GUEST_CMDLINE_FIRECRACKER, lc->boot_args, size);
	if (r < 0 || (extra && extra[0] &&
		      snprintf(lc->boot_args + r, size - (size_t)r, " %s", extra) >=
			      (int)(size - (size_t)r)))
		return err_set(err, -E2BIG, "kernel command line too long");
	return 0;
}

/* The configuration bodies, one per API call. An encoder returns fc-json.c's result, and 0 with
 * *ret NULL when the launch has no such piece (no data disk, no NIC). */
static int enc_logger(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_logger("firecracker.log", ret);
}

static int enc_metrics(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_metrics("metrics.json", ret);
}

static int enc_boot_source(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_boot_source("vmlinux", lc->p->initrd ? "initrd" : NULL, lc->boot_args, ret);
}

static int enc_root_drive(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_drive("rootfs", "rootfs.ext4", true, true, ret);
}

static int enc_data_drive(const struct fc_launch_ctx *lc, char **ret)
{
	return lc->p->data_disk ? fc_json_drive("data", "data.ext4", false, false, ret) : 0;
}

static int enc_machine(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_machine_config(lc->p->vcpus, lc->p->mem_mib, ret);
}

static int enc_net(const struct fc_launch_ctx *lc, char **ret)
{
	return lc->p->tap_name ? fc_json_net("eth0", lc->p->tap_name, lc->p->mac, ret) : 0;
}

static int enc_vsock(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_vsock(3, FC_VSOCK, ret);
}

static int enc_start(const struct fc_launch_ctx *lc, char **ret)
{
	return fc_json_action("InstanceStart", ret);
}

/* The configuration of a launch: PUT in this order; InstanceStart last. */
static const struct fc_config_row {
	const char *path;
	int (*encode)(const struct fc_launch_ctx *lc, char **ret);
	long timeout_ms;
} fc_config[] = {
	{"/logger", enc_logger, FC_CALL_TIMEOUT_MS},
	{"/metrics", enc_metrics, FC_CALL_TIMEOUT_MS},
	{"/boot-source", enc_boot_source, FC_CALL_TIMEOUT_MS},
	{"/drives/rootfs", enc_root_drive, FC_CALL_TIMEOUT_MS},
	{"/drives/data", enc_data_drive, FC_CALL_TIMEOUT_MS},
	{"/machine-config", enc_machine, FC_CALL_TIMEOUT_MS},
	{"/network-interfaces/eth0", enc_net, FC_CALL_TIMEOUT_MS},
	{"/vsock", enc_vsock, FC_CALL_TIMEOUT_MS},
	{"/actions", enc_start, FC_START_TIMEOUT_MS},
};

/* Launch: a PUT; a transport failure says whether the VMM died. */
static int put(struct fc_launch_ctx *lc, const char *path, const char *body, long timeout_ms,
	       struct err *err)
{
	int r = fc_request(lc->c, "PUT", path, body, timeout_ms, NULL, NULL, err);

	if (r < 0 && r != -EIO) {
		struct err e2 = {};
		if (check_alive(lc->h, lc->p->console_log, path, &e2) < 0)
			*err = e2;
	}
	return r;
}

/* Launch: the volume drives vol0.. (vol<i>.ext4 in the jail), in the runtime's order. */
static int configure_volumes(struct fc_launch_ctx *lc, struct err *err)
{
	for (size_t i = 0; i < lc->p->n_volume_disks; i++) {
		_cleanup_free_ char *body = NULL;
		char id[32], file[48], path[48];
		int r;

		snprintf(id, sizeof(id), "vol%zu", i);
		snprintf(file, sizeof(file), "vol%zu.ext4", i);
		snprintf(path, sizeof(path), "/drives/%s", id);
		if (fc_json_drive(id, file, false, false, &body) < 0)
			return err_set(err, -ENOMEM, "PUT %s: encoding the body failed", path);
		r = put(lc, path, body, FC_CALL_TIMEOUT_MS, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A restore configures only what the snapshot does not hold (logger, metrics), then loads it
 * paused (the state file goes before the guest runs again; docs/suspend.md). */
static const struct fc_config_row fc_restore_config[] = {
	{"/logger", enc_logger, FC_CALL_TIMEOUT_MS},
	{"/metrics", enc_metrics, FC_CALL_TIMEOUT_MS},
};

/* Launch: every row of fc_config (or fc_restore_config), in order (the volume drives before
 * InstanceStart). A transport failure says whether the VMM died. */
static int configure(struct fc_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	const struct fc_config_row *rows = p->restore_dir ? fc_restore_config : fc_config;
	size_t nrows = p->restore_dir ? ELEMENTSOF(fc_restore_config) : ELEMENTSOF(fc_config);
	int r;

	for (size_t i = 0; i < nrows; i++) {
		const struct fc_config_row *row = &rows[i];
		_cleanup_free_ char *body = NULL;

		if (strcmp(row->path, "/actions") == 0) {
			r = configure_volumes(lc, err);
			if (r < 0)
				return r;
		}

		r = row->encode(lc, &body);
		if (r < 0)
			return err_set(err, -ENOMEM, "PUT %s: encoding the body failed", row->path);
		if (!body)
			continue;
		if (p->cancel && atomic_load(p->cancel))
			return err_set(err, -ECANCELED, "start cancelled");
		r = put(lc, row->path, body, row->timeout_ms, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* GET / answers Running. A failed call ends the wait (saying whether the VMM died). */
static int instance_running(struct vmm_handle *h, void *ud, struct err *err)
{
	struct fc_launch_ctx *lc = ud;
	_cleanup_free_ char *body = NULL;
	enum vmm_run_state st;
	size_t len = 0;
	int r;

	r = fc_request(lc->c, "GET", "/", NULL, FC_CALL_TIMEOUT_MS, &body, &len, err);
	if (r < 0) {
		struct err e2 = {};
		if (check_alive(h, lc->p->console_log, "GET /", &e2) < 0)
			*err = e2;
		return r;
	}
	if (fc_json_instance_state(body, len, &st) < 0)
		return err_set(err, -EPROTO, "GET /: unexpected response");
	return st == VMM_RUN_RUNNING;
}

/* Restore, step 2b: the snapshot's state and memory files at the in-jail names it was taken
 * with (hard links: the memory file stays unchanged for the restored VM's life, and a start from
 * a booted template maps the template's own read-only file; a sparse copy, logged, when the
 * state dir is on another file system than the jails). */
static int place_snapshot(struct fc_launch_ctx *lc, struct err *err)
{
	static const char *const names[] = {FC_SNAP_STATE, FC_SNAP_MEM};
	static const char *const saved[] = {"state", FC_SNAP_MEM};
	char src[VMM_PATH_MAX + 32], dst[VMM_PATH_MAX + 32];

	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		snprintf(src, sizeof(src), "%s/%s", lc->p->restore_dir, saved[i]);
		snprintf(dst, sizeof(dst), "%s/%s", lc->root, names[i]);
		if (link(src, dst) < 0) {
			int r = errno == EXDEV
					? savefile_copy_sparse(src, dst, lc->p->uid, lc->p->gid)
					: -errno;

			if (r < 0)
				return err_set(err, r, "placing %s in the jail: %s", src,
					       strerror(-r));
			log_info("%s: %s copied into the jail (another file system: not shared)",
				 lc->p->name, src);
		}
	}
	return 0;
}

/* Restore, step 8: snapshot/load (File backend, paused), the saved state removed, resumed.
 * The disks and the vsock socket are at the in-jail paths every snapshot records (the same for
 * every VM: rootfs.ext4, data.ext4, v.sock); the TAP is named by network_overrides, so a
 * snapshot of another VM (a booted template) loads with this VM's. */
static int load_snapshot(struct fc_launch_ctx *lc, struct err *err)
{
	_cleanup_free_ char *body = NULL;
	char path[VMM_PATH_MAX + 32];
	int r;

	r = fc_json_snapshot_load(FC_SNAP_STATE, FC_SNAP_MEM, lc->p->tap_name ? "eth0" : NULL,
				  lc->p->tap_name, &body);
	if (r < 0)
		return err_set(err, r, "PUT /snapshot/load: encoding the body failed");
	r = fc_request(lc->c, "PUT", "/snapshot/load", body, FC_SNAPSHOT_TIMEOUT_MS, NULL, NULL,
		       err);
	if (r < 0) {
		struct err e2 = {};

		if (r != -EIO && check_alive(lc->h, lc->p->console_log, "/snapshot/load", &e2) < 0)
			*err = e2;
		return r;
	}
	snprintf(path, sizeof(path), "%s/state", lc->p->restore_dir);
	if (unlink(path) < 0)
		return err_set(err, -errno, "removing %s: %m", path);
	snprintf(path, sizeof(path), "%s/%s", lc->root, FC_SNAP_STATE);
	(void)unlink(path);
	r = fc_request(lc->c, "PATCH", "/vm", "{\"state\":\"Resumed\"}", FC_CALL_TIMEOUT_MS, NULL,
		       NULL, err);
	if (r < 0)
		return r;
	/* Mapped by the VMM: the jail's link keeps it while it runs; the saved copy goes. */
	(void)rm_rf(lc->p->restore_dir);
	return 0;
}

/* Suspend: snapshot/create (Full) of the paused VM inside the jail, the two files moved out of
 * it into dir (state as state.tmp) before the jail goes. They belong to the jail's uid: moved
 * with rename (never followed), then checked to be regular files. The jail's names are freed
 * first: after a restore "mem" is the file the guest runs from (mapped privately: it must not
 * change while mapped; from a template, the template's read-only file), so the snapshot writes
 * new files of its own. */
static int fc_save(void *priv, const char *name, struct vmm_handle *h, const char *dir,
		   struct err *err)
{
	static const char *const names[] = {FC_SNAP_STATE, FC_SNAP_MEM};
	static const char *const out[] = {"state.tmp", FC_SNAP_MEM};
	const char *body = "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"" FC_SNAP_STATE
			   "\",\"mem_file_path\":\"" FC_SNAP_MEM "\"}";
	struct fc_client *c = NULL;
	char src[VMM_PATH_MAX + 32], dst[VMM_PATH_MAX + 32];
	int r;

	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		snprintf(src, sizeof(src), "%s/root/%s", h->jail_dir, names[i]);
		if (unlink(src) < 0 && errno != ENOENT)
			return err_set(err, -errno, "removing %s: %s", src, strerror(errno));
	}
	r = fc_client_new(h->api_socket, &c);
	if (r < 0)
		return err_set(err, r, "API socket %s: %s", h->api_socket, strerror(-r));
	r = fc_request(c, "PUT", "/snapshot/create", body, FC_SNAPSHOT_TIMEOUT_MS, NULL, NULL, err);
	fc_client_free(c);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		struct stat st;

		snprintf(src, sizeof(src), "%s/root/%s", h->jail_dir, names[i]);
		snprintf(dst, sizeof(dst), "%s/%s", dir, out[i]);
		(void)unlink(dst);
		if (rename(src, dst) < 0) {
			/* Another file system: a sparse copy (the jail goes with the original). */
			r = errno == EXDEV ? savefile_copy_sparse(src, dst, 0, 0) : -errno;
			if (r < 0)
				return err_set(err, r, "moving %s out of the jail: %s", src,
					       strerror(-r));
		}
		if (lstat(dst, &st) < 0 || !S_ISREG(st.st_mode))
			return err_set(err, -EPERM, "%s: the VMM left no regular file", dst);
		{
			_cleanup_close_ int fd = open(dst, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

			if (fd < 0 || fsync(fd) < 0)
				return err_set(err, -errno, "fsync %s: %m", dst);
		}
	}
	return 0;
}

static int fc_launch(void *priv, const struct vmm_launch *p, struct vmm_handle *h, struct err *err)
{
	struct fc_launch_ctx lc = {.fp = priv, .p = p, .h = h};
	int r;

	/* h is filled as each piece exists: on failure the caller kills and cleans up with it. */
	r = jail_paths(&lc, err);
	if (r >= 0)
		r = place_files(&lc, err);
	if (r >= 0 && p->restore_dir)
		r = place_snapshot(&lc, err);
	if (r >= 0)
		r = spawn_vmm(&lc, err);
	if (r >= 0)
		r = connect_api(&lc, err);
	if (r >= 0)
		r = boot_cmdline(&lc, err);
	if (r >= 0)
		r = configure(&lc, err);
	if (r >= 0 && p->restore_dir)
		r = load_snapshot(&lc, err);
	if (r >= 0)
		r = vmm_wait_for(h, p, &fc_exit_text,
				 &(struct vmm_wait){.what = "GET /",
						    .late = "GET /: instance not Running",
						    .timeout_ms = FC_RUNNING_WAIT_MS,
						    .step_ms = 10,
						    .ready = instance_running,
						    .ud = &lc},
				 err);
	fc_client_free(lc.c);
	return r < 0 ? r : 0;
}

/* One API call of an op, on a connection of its own (the ops of one VM may run on different
 * threads). An op added later (pause, snapshot) is one fc_call with its fc-json.c body. */
static int fc_call(struct vmm_handle *h, const char *method, const char *path, const char *body,
		   char **ret_body, size_t *ret_len, struct err *err)
{
	struct fc_client *c = NULL;
	int r;

	r = fc_client_new(h->api_socket, &c);
	if (r < 0)
		return r;
	r = fc_request(c, method, path, body, FC_CALL_TIMEOUT_MS, ret_body, ret_len, err);
	fc_client_free(c);
	return r;
}

static int fc_query(void *priv, struct vmm_handle *h, enum vmm_run_state *ret, struct err *err)
{
	_cleanup_free_ char *body = NULL;
	size_t len = 0;
	int r;

	r = fc_call(h, "GET", "/", NULL, &body, &len, err);
	if (r < 0)
		return r;
	r = fc_json_instance_state(body, len, ret);
	return r < 0 ? err_set(err, -EPROTO, "GET /: unexpected response") : 0;
}

static int fc_request_stop(void *priv, struct vmm_handle *h, struct err *err)
{
	_cleanup_free_ char *b = NULL;
	int r;

	r = fc_json_action("SendCtrlAltDel", &b);
	if (r < 0)
		return r;
	return fc_call(h, "PUT", "/actions", b, NULL, NULL, err);
}

/* PATCH /vm: Paused or Resumed (idempotent on Firecracker's side too). */
static int fc_vm_state(struct vmm_handle *h, const char *state, struct err *err)
{
	struct fc_client *c = NULL;
	char body[64];
	int r;

	r = fc_client_new(h->api_socket, &c);
	if (r < 0)
		return err_set(err, r, "API socket %s: %s", h->api_socket, strerror(-r));
	snprintf(body, sizeof(body), "{\"state\":\"%s\"}", state);
	r = fc_request(c, "PATCH", "/vm", body, FC_CALL_TIMEOUT_MS, NULL, NULL, err);
	fc_client_free(c);
	return r;
}

static int fc_pause(void *priv, struct vmm_handle *h, struct err *err)
{
	return fc_vm_state(h, "Paused", err);
}

static int fc_resume(void *priv, struct vmm_handle *h, struct err *err)
{
	return fc_vm_state(h, "Resumed", err);
}

static int fc_adopt(void *priv, const char *name, struct vmm_handle *h, struct err *err)
{
	return vmm_adopt(&vmm_firecracker_ops, priv, h, "the VMM", err);
}

/* Is pid a process of jail id? Its root is the jail (chroot) or it sits in our cgroup for id
 * (the real jailer pivot_roots, so its root then reads "/"): under this node's parent, or the
 * shared one a VM recorded before node ids was started in. */
static bool is_jailed(struct fc_priv *fp, pid_t pid, const char *id)
{
	char path[64], link[VMM_PATH_MAX], want[128], legacy[128];
	_cleanup_free_ char *cg = NULL;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		char tail[80];
		link[n] = '\0';
		snprintf(tail, sizeof(tail), "/%s/root", id);
		if (strlen(link) >= strlen(tail) &&
		    strcmp(link + strlen(link) - strlen(tail), tail) == 0)
			return true;
	}
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	snprintf(want, sizeof(want), "/%s/%s\n", fp->cg_parent, id);
	snprintf(legacy, sizeof(legacy), "/" CGROUP_PARENT "/%s\n", id);
	return read_file_bounded(path, 65536, &cg, NULL) == 0 &&
	       (strstr(cg, want) || strstr(cg, legacy));
}

/* A VMM left in jail_dir (pid file) whose identity checks out: kill it and wait. */
static void kill_jailed(struct fc_priv *fp, const char *id, const char *jail_dir)
{
	char path[VMM_PATH_MAX + 64];
	struct vmm_handle h;

	vmm_handle_init(&h);
	if (snprintf(path, sizeof(path), "%s/root/firecracker.pid", jail_dir) >=
		    (int)sizeof(path) ||
	    vmm_handle_from_pidfile(&h, path) < 0)
		return;
	if (is_jailed(fp, h.pid, id))
		vmm_handle_kill_wait(&h, 2000);
	h.pidfd = safe_close(h.pidfd);
}

/* Is pid, found in our cgroup for id, a process of OUR jail for id: is its root
 * <exec_dir>/<id>/root? Several daemons (tests), or another backend, may share the cgroup
 * parent, so the cgroup alone does not make a process ours. (The real jailer pivot_roots:
 * its VMMs read "/" and are found through the jail's pid file instead.) */
static bool in_our_jail(struct fc_priv *fp, pid_t pid, const char *id)
{
	char path[64], link[VMM_PATH_MAX], want[VMM_PATH_MAX + 200];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	snprintf(want, sizeof(want), "%s/%s/root", fp->exec_dir, id);
	/* A jail removed under a live process reads "<path> (deleted)". */
	return strcmp(link, want) == 0 || (strncmp(link, want, strlen(want)) == 0 &&
					   strcmp(link + strlen(want), " (deleted)") == 0);
}

/* Kill the processes of our jail for id in a cgroup dir (what the pid file missed). With
 * all_or_none, nothing when any process in it is not provably ours. Returns how many. */
static int kill_cgroup_procs(struct fc_priv *fp, const char *cg_dir, const char *id,
			     bool all_or_none)
{
	char path[VMM_PATH_MAX + 400];
	_cleanup_free_ char *procs = NULL;
	pid_t pids[64];
	size_t np = 0;
	int n = 0;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", cg_dir) >= (int)sizeof(path) ||
	    read_file_bounded(path, 65536, &procs, NULL) < 0)
		return all_or_none ? -ENOENT : 0;
	for (char *save = NULL, *tok = strtok_r(procs, "\n", &save); tok;
	     tok = strtok_r(NULL, "\n", &save)) {
		uint32_t pid;
		if (parse_u32(tok, &pid) < 0 || pid <= 1 || np == ELEMENTSOF(pids) ||
		    !in_our_jail(fp, (pid_t)pid, id)) {
			if (all_or_none)
				return -EPERM; /* not provably ours */
			continue;
		}
		pids[np++] = (pid_t)pid;
	}
	for (size_t i = 0; i < np; i++) {
		struct vmm_handle h;
		vmm_handle_init(&h);
		h.pid = pids[i];
		if (vmm_handle_open_pidfd(&h) < 0)
			continue;
		if (in_our_jail(fp, h.pid, id)) {
			log_info("%s: killing leftover VMM process %d", id, (int)h.pid);
			vmm_handle_kill_wait(&h, 2000);
			n++;
		}
		h.pidfd = safe_close(h.pidfd);
	}
	return n;
}

static void fc_cleanup(void *priv, const char *name, struct vmm_handle *h)
{
	struct fc_priv *fp = priv;

	/* Without a recorded handle (a daemon killed mid-start), the jail and cgroups follow
	 * from the name. */
	vmm_handle_dirs_from_name(h, fp->exec_dir, name, &fp->cg, fp->cg_parent);
	if (h->pidfd < 0 && h->jail_dir[0])
		kill_jailed(fp, name, h->jail_dir);
	/* A process of our jail the pid file did not name (a jailer killed early). */
	for (size_t i = 0; i < ELEMENTSOF(h->cgroup); i++)
		if (h->cgroup[i][0])
			(void)kill_cgroup_procs(fp, h->cgroup[i], name, false);
	vmm_handle_remove_dirs(h, name);
}

/* Does cgroup dir hold child cgroups (a node's parent, seen from an unmarked daemon)? */
static bool has_children(const char *dir)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (de->d_type == DT_DIR && strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			return true;
	return false;
}

/* A cgroup of ours for a VM that does not exist (its jail already gone, or a jailer killed
 * before the pid file): its processes killed when all are of our jail for id, then removed.
 * An empty one only when older than 30 s: our own launch never races a pass (jobs hold the
 * reaper's lock), but a daemon without a node id shares its parent with tests of its own.
 * Returns how many things were reaped. */
static int reap_cgroup(struct fc_priv *fp, const char *cg_dir, const char *id)
{
	struct stat st;
	int n;

	if (stat(cg_dir, &st) < 0 || has_children(cg_dir))
		return 0;
	n = kill_cgroup_procs(fp, cg_dir, id, true);
	if (n < 0 || (n == 0 && time(NULL) - st.st_ctime < 30))
		return 0;
	return cgroup_remove(cg_dir) == 0 ? n + 1 : n;
}

/* A leftover jail: kill its VMM if still there, then remove cgroups and the directory. */
static void reap_one(void *priv, const char *id)
{
	struct vmm_handle h;

	vmm_handle_init(&h);
	fc_cleanup(priv, id, &h);
}

static int fc_reap(void *priv, bool (*is_known)(const char *name, void *ud), void *ud)
{
	struct fc_priv *fp = priv;
	char dirs[4][VMM_DIR_MAX];
	struct dirent *de;
	int n, nd;

	n = vmm_reap_marked_dirs(fp->exec_dir, is_known, ud, reap_one, fp);
	/* Cgroups under our parent with no known VM (the jail may already be gone). */
	nd = cgroup_dirs(&fp->cg, fp->cg_parent, "", dirs, ELEMENTSOF(dirs));
	for (int i = 0; i < nd; i++) {
		_cleanup_closedir_ DIR *cd = opendir(dirs[i]);

		while (cd && (de = readdir(cd))) {
			char p[VMM_PATH_MAX + 300];

			if (de->d_type != DT_DIR || !vmm_id_is_valid(de->d_name) ||
			    is_known(de->d_name, ud) ||
			    snprintf(p, sizeof(p), "%s%s", dirs[i], de->d_name) >= (int)sizeof(p))
				continue;
			n += reap_cgroup(fp, p, de->d_name);
		}
	}
	return n;
}

const struct vmm_ops vmm_firecracker_ops = {
	.name = "firecracker",
	.init = fc_init,
	.free = fc_free,
	.launch = fc_launch,
	.query = fc_query,
	.request_stop = fc_request_stop,
	.kill = vmm_kill_op,
	.pause = fc_pause,
	.resume = fc_resume,
	.save = fc_save,
	.adopt = fc_adopt,
	.cleanup = fc_cleanup,
	.reap = fc_reap,
};
