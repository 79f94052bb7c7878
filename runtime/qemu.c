/* SPDX-License-Identifier: MIT */
/*
 * The QEMU backend: qemu-system-x86_64 -M microvm with the same disks, TAP and guest agent as
 * Firecracker. Per VM a host dir <state_dir>/qemu/<name> (root's, 0700, marked ".mvmfs") holds
 * the QMP socket, the agent socket (virtio-serial port "agent" on a chardev the host connects
 * to), the pid file and root/, the empty mount point of the VMM's own root.
 *
 * QEMU is sandboxed as closely to the jailer as QEMU allows (runtime/sandbox.c): our child joins
 * the VM's cgroups and network namespace, keeps only the fds it is given (both sockets, bound by
 * the daemon; both disks and the console file, opened by the daemon and handed over with
 * -add-fd), enters a mount namespace whose root is a read-only tmpfs holding /usr (binary,
 * libraries, firmware), the kernel and initrd, and /dev/{null,urandom,net/tun[,kvm]}, drops to
 * the VM's uid:gid with no capabilities and no_new_privs, and runs under QEMU's seccomp filter
 * (-sandbox on with everything optional denied). Nothing QEMU can write is a path the daemon
 * later follows.
 */
#include "qemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "guest-config.h"
#include "internal.h"
#include "log.h"
#include "parse.h"
#include "qmp.h"
#include "sandbox.h"

#define QEMU_QMP "qmp.sock"
#define QEMU_AGENT "agent.serial" /* the suffix tells runtime/agent.c: no vsock handshake */
#define QEMU_PIDFILE "qemu.pid"
#define QEMU_SOCKET_WAIT_MS 10000
#define QEMU_CALL_MS 3000
#define QEMU_ROOT "root"
/* Guest RAM lives in this file of the saved state's directory (docs/suspend.md): a suspend then
 * streams only the device state (x-ignore-shared), and a restore maps the same file. */
#define QEMU_RAM "ram"
#define QEMU_MIGRATE_MS 60000
/* The memory limit is the guest's RAM plus this allowance for QEMU itself (code, libraries,
 * device emulation, the TCG translation cache; its RSS is about 220-260 MiB per VM): a guest
 * that fills its RAM meets its own OOM killer, never the host's for the VMM. */
#define QEMU_MEM_OVERHEAD_MIB 512
#define ARGV_MAX 224 /* 96 + 6 per volume (16) */
#define ARGV_STRS 84 /* formatted arguments: 20 + 4 per volume */
/* exit codes of the child before exec */
#define QEMU_EXIT_CGROUP 120
#define QEMU_EXIT_NETNS 121
#define QEMU_EXIT_SANDBOX 122

struct qemu_priv {
	const struct runtime_config *cfg;
	char qemu[VMM_PATH_MAX];
	char base_dir[VMM_PATH_MAX]; /* <state_dir>/qemu */
	bool kvm;
	struct cgroup_info cg;
	bool have_cg;
	char cg_error[ERR_MSG_MAX];	   /* why there are no cgroup limits: every launch fails */
	char cg_parent[CGROUP_PARENT_MAX]; /* mvmfs/NODE (cgroup_parent) */
};

/* /dev/kvm alone proves nothing (some KVM flavours hang ordinary guests): KVM only with a
 * loaded kvm_intel/kvm_amd module, or when MVMFS_QEMU_ACCEL says so. */
static bool kvm_usable(void)
{
	struct stat st;

	const char *accel = getenv("MVMFS_QEMU_ACCEL");

	if (accel)
		return strcmp(accel, "kvm") == 0;
	if (stat("/dev/kvm", &st) < 0 || !S_ISCHR(st.st_mode))
		return false;
	return access("/sys/module/kvm_intel", F_OK) == 0 ||
	       access("/sys/module/kvm_amd", F_OK) == 0;
}

static int qemu_init(const struct runtime_config *cfg, void **ret_priv, struct err *err)
{
	struct qemu_priv *qp;
	struct err e2 = {};
	int r;

	qp = calloc(1, sizeof(*qp));
	if (!qp)
		return -ENOMEM;
	qp->cfg = cfg;
	r = find_executable(cfg->qemu ?: "qemu-system-x86_64", qp->qemu, sizeof(qp->qemu));
	if (r < 0) {
		free(qp);
		return err_set(err, r, "qemu '%s' not found or not executable",
			       cfg->qemu ?: "qemu-system-x86_64");
	}
	snprintf(qp->base_dir, sizeof(qp->base_dir), "%s/%s", cfg->state_dir, QEMU_DIR);
	r = mkdir_p(qp->base_dir, 0755);
	if (r < 0) {
		free(qp);
		return err_set(err, r, "creating %s: %s", qp->base_dir, strerror(-r));
	}
	/* The sockets are later opened without following any symlink: use the real path (a
	 * symlinked --state-dir is fine). */
	{
		char real[PATH_MAX];

		if (realpath(qp->base_dir, real) && strlen(real) < sizeof(qp->base_dir))
			snprintf(qp->base_dir, sizeof(qp->base_dir), "%s", real);
	}
	r = cgroup_parent(cfg->node_id, qp->cg_parent);
	if (r < 0) {
		free(qp);
		return err_set(err, r, "node id '%s' is not 1-8 of [0-9a-f]", cfg->node_id);
	}
	qp->kvm = kvm_usable();
	qp->have_cg = cgroup_detect(cfg->cgroup_version, &qp->cg, &e2) >= 0;
	if (!qp->have_cg) {
		/* Fail closed: the daemon runs (monitoring, records), but no VM starts unlimited.
		 */
		snprintf(qp->cg_error, sizeof(qp->cg_error), "%s", e2.msg);
		log_error("qemu: cgroup limits cannot be applied, VMs will not start: %s", e2.msg);
	}
	log_info("qemu backend: %s, accel %s", qp->qemu, qp->kvm ? "kvm" : "tcg");
	*ret_priv = qp;
	return 0;
}

static void qemu_free(void *priv)
{
	struct qemu_priv *qp = priv;

	if (qp->have_cg)
		cgroup_parent_remove(&qp->cg, qp->cg_parent);
	free(priv);
}

int qemu_cgroup_settings(int version, bool memsw, int ndirs, unsigned vcpus, unsigned mem_mib,
			 struct qemu_cg_setting *out, size_t max)
{
	unsigned long long mem = ((unsigned long long)mem_mib + QEMU_MEM_OVERHEAD_MIB) << 20;
	unsigned long long quota = (unsigned long long)(vcpus ? vcpus : 2) * 100000ULL;
	int mdir = ndirs > 1 ? 1 : 0;
	size_t n = 0;

#define SET(d, f, ...)                                                     \
	do {                                                               \
		if (n >= max)                                              \
			return -E2BIG;                                     \
		out[n].dir = (d);                                          \
		out[n].file = (f);                                         \
		snprintf(out[n].value, sizeof(out[n].value), __VA_ARGS__); \
		n++;                                                       \
	} while (0)
	if (version == 2) {
		SET(0, "cpu.max", "%llu 100000", quota);
		SET(0, "memory.max", "%llu", mem);
		SET(0, "memory.swap.max", "0");
	} else if (version == 1) {
		SET(0, "cpu.cfs_period_us", "100000");
		SET(0, "cpu.cfs_quota_us", "%llu", quota);
		/* memsw must not go below the memory limit: the limit first. */
		SET(mdir, "memory.limit_in_bytes", "%llu", mem);
		if (memsw)
			SET(mdir, "memory.memsw.limit_in_bytes", "%llu", mem);
		else
			SET(mdir, "memory.swappiness", "0");
	} else {
		return -EINVAL;
	}
#undef SET
	return (int)n;
}

/* Create the VM's cgroups with the same limits the jailer sets for Firecracker (plus QEMU's own
 * overhead in memory). */
static int setup_cgroups(struct qemu_priv *qp, const struct vmm_launch *p, struct vmm_handle *h,
			 struct err *err)
{
	struct qemu_cg_setting set[8];
	int n, k, r;

	if (!qp->have_cg)
		return err_set(err, -EIO, "cgroup limits cannot be applied: %s", qp->cg_error);
	h->cgroup_version = qp->cg.version;
	n = cgroup_dirs(&qp->cg, qp->cg_parent, p->name, h->cgroup, ELEMENTSOF(h->cgroup));
	for (int i = 0; i < n; i++) {
		r = mkdir_p(h->cgroup[i], 0755);
		if (r < 0)
			return err_set(err, r, "creating cgroup %s: %s", h->cgroup[i],
				       strerror(-r));
	}
	if (qp->cg.version == 2) {
		r = cgroup_v2_enable(qp->cg.v2_mount, qp->cg_parent, err);
		if (r < 0)
			return r;
	}
	k = qemu_cgroup_settings(qp->cg.version, qp->cg.memsw, n, p->vcpus, p->mem_mib, set,
				 ELEMENTSOF(set));
	if (k < 0)
		return err_set(err, k, "cgroup limits: %s", strerror(-k));
	for (int i = 0; i < k; i++) {
		char path[VMM_PATH_MAX + 64];

		snprintf(path, sizeof(path), "%s/%s", h->cgroup[set[i].dir], set[i].file);
		r = write_string_file(path, set[i].value);
		if (r < 0)
			return err_set(err, -EIO, "cgroup limit %s=%s: %s", path, set[i].value,
				       strerror(-r));
	}
	return 0;
}

/* Everything the forked child needs, prepared before fork (only async-signal-safe calls
 * happen between fork and exec). */
struct child_plan {
	const char *argv[ARGV_MAX];
	char *envp[2];
	char env_mark[VMM_PATH_MAX + 32];
	const char *exec_path; /* QEMU's path inside the sandbox root */
	char exec_buf[PATH_MAX];
	int netns_fd;
	int cg_fds[4];
	int ncg;
	int out_fd;
	int null_fd;
	int qmp_fd, agent_fd, root_fd, data_fd, data_ro_fd, console_fd;
	int vol_fd[VMM_VOLUMES_MAX], vol_ro_fd[VMM_VOLUMES_MAX];
	size_t n_vols;
	/* their numbers in the child */
	int qmp_n, agent_n, root_n, data_n, data_ro_n, console_n;
	int vol_n[VMM_VOLUMES_MAX], vol_ro_n[VMM_VOLUMES_MAX];
	struct sandbox sb;
	char ram[VMM_PATH_MAX + 32]; /* host path of the RAM file, "" for anonymous memory */
};

/* In the child: say what failed on the console log (async-signal-safe), then exit with code. */
static _Noreturn void child_fail(int fd, const char *what, int e, int code)
{
	char num[12];
	int n = (int)sizeof(num);

	do {
		num[--n] = (char)('0' + e % 10);
		e /= 10;
	} while (e && n > 0);
	if (fd >= 0) {
		(void)!write(fd, "mvmfs: ", 7);
		(void)!write(fd, what, strlen(what));
		(void)!write(fd, " failed, errno ", 15);
		(void)!write(fd, num + n, sizeof(num) - (size_t)n);
		(void)!write(fd, "\n", 1);
	}
	_exit(code);
}

static _Noreturn void child_run(const struct child_plan *cp)
{
	static const char zero[] = "0";
	const char *stage = "";
	sigset_t none;
	int e;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int i = 0; i < cp->ncg; i++) {
		ssize_t w;

		do
			w = write(cp->cg_fds[i], zero, 1);
		while (w < 0 && errno == EINTR);
		if (w != 1)
			child_fail(cp->out_fd, "joining the VM's cgroup", w < 0 ? errno : 0,
				   QEMU_EXIT_CGROUP);
	}
	if (cp->netns_fd >= 0 && setns(cp->netns_fd, CLONE_NEWNET) < 0)
		child_fail(cp->out_fd, "entering the network namespace", errno, QEMU_EXIT_NETNS);
	(void)setsid();
	e = sandbox_exec(&cp->sb, cp->exec_path, (char *const *)cp->argv, cp->envp, &stage);
	/* fds were renumbered (or not): the output is on 2 once set up, else still out_fd. */
	child_fail(fcntl(2, F_GETFD) >= 0 ? 2 : cp->out_fd, stage, e,
		   strcmp(stage, "exec") == 0 ? 127 : QEMU_EXIT_SANDBOX);
}

/* One line of QEMU's own stderr (kept in the console log) for "QEMU exited" messages. */
static void log_tail(const char *path, char *buf, size_t size)
{
	char tmp[600], *line;

	vmm_file_tail(path, tmp, sizeof(tmp));
	line = strrchr(tmp, '\n');
	line = line ? line + 1 : tmp;
	if (strlen(line) >= size)
		line[size - 1] = '\0';
	memcpy(buf, line, strlen(line) + 1);
	for (char *c = buf; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
}

/* The exit codes of our child before exec say which step of entering the sandbox failed. */
static void exit_reason(const struct vmm_exit *ex, char *buf, size_t size)
{
	if (ex->known && !ex->signal &&
	    (ex->code == QEMU_EXIT_CGROUP || ex->code == QEMU_EXIT_NETNS ||
	     ex->code == QEMU_EXIT_SANDBOX))
		snprintf(buf, size, "could not enter its %s",
			 ex->code == QEMU_EXIT_CGROUP  ? "cgroup"
			 : ex->code == QEMU_EXIT_NETNS ? "network namespace"
						       : "sandbox");
	else
		vmm_exit_reason(ex, buf, size);
}

static const struct vmm_exit_text qemu_exit_text = {
	.vmm = "QEMU", .reason = exit_reason, .tail = log_tail};

/* One QMP command of an op, on a connection of its own; *ret (when not NULL) gets its return
 * value. An op added later (stop, cont) is one qmp_call. */
static int qmp_call(struct vmm_handle *h, const char *cmd, json_t **ret, struct err *err)
{
	struct qmp *q = NULL;
	int r;

	r = qmp_connect(h->api_socket, QEMU_CALL_MS, &q, err);
	if (r < 0)
		return r;
	r = qmp_execute(q, cmd, NULL, ret, QEMU_CALL_MS, err);
	qmp_close(q);
	return r;
}

static int query_status(struct vmm_handle *h, enum vmm_run_state *ret, struct err *err)
{
	json_t *v = NULL;
	char *text;
	int r;

	r = qmp_call(h, "query-status", &v, err);
	if (r < 0)
		return r;
	text = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!text)
		return -ENOMEM;
	r = qmp_parse_status(text, strlen(text), ret);
	free(text);
	return r < 0 ? err_set(err, -EPROTO, "query-status: unexpected reply") : 0;
}

/* QEMU's argv under construction: the strings it needs formatted go into s. */
struct argv_build {
	const char **argv;
	size_t a;
	char (*s)[VMM_PATH_MAX + 160];
	size_t k;
};

#define ARG(x) (b->argv[b->a++] = (x))
#define FMT(...) (snprintf(b->s[b->k], sizeof(b->s[b->k]), __VA_ARGS__), b->s[b->k++])

/* The machine, the sandbox, the console and the kernel with its command line. */
static int argv_machine(struct argv_build *b, struct qemu_priv *qp, const struct vmm_launch *p,
			const struct child_plan *cp)
{
	char base[512];
	int r;

	r = guest_kernel_cmdline(GUEST_CMDLINE_QEMU, base, sizeof(base));
	if (r < 0)
		return r;
	if (qp->kvm)
		snprintf(base, sizeof(base),
			 "console=ttyS0 rdinit=/init panic=-1 quiet "
			 "mitigations=off cryptomgr.notests");
	ARG(cp->exec_path);
	ARG("-name");
	ARG(FMT("mvmfs-%s", p->name));
	ARG("-accel");
	ARG(qp->kvm ? "kvm" : "tcg");
	ARG("-M");
	if (cp->ram[0]) {
		ARG("microvm,memory-backend=mem");
		ARG("-object");
		ARG(FMT("memory-backend-file,id=mem,mem-path=/vm/" QEMU_RAM ",size=%uM,share=on",
			p->mem_mib ? p->mem_mib : 2048));
	} else {
		ARG("microvm");
	}
	ARG("-cpu");
	ARG(qp->kvm ? "host" : "max");
	ARG("-smp");
	ARG(FMT("%u", p->vcpus ? p->vcpus : 2));
	ARG("-m");
	ARG(FMT("%u", p->mem_mib ? p->mem_mib : 2048));
	ARG("-nodefaults");
	ARG("-no-user-config");
	ARG("-nographic");
	ARG("-no-reboot");
	/* seccomp: no obsolete calls, no set*id, no fork/exec, no scheduler or affinity changes */
	ARG("-sandbox");
	ARG("on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	if (cp->console_n >= 0) {
		ARG("-add-fd");
		ARG(FMT("fd=%d,set=3", cp->console_n));
		ARG("-serial");
		ARG("file:/dev/fdset/3");
	} else {
		ARG("-serial");
		ARG("null");
	}
	ARG("-kernel");
	ARG("/vm/vmlinux");
	if (p->initrd) {
		ARG("-initrd");
		ARG("/vm/initrd");
	}
	ARG("-append");
	ARG(FMT("%s%s%s", base, p->boot_args && *p->boot_args ? " " : "",
		p->boot_args ? p->boot_args : ""));
	return 0;
}

/* The disks, the NIC, the agent's serial port and the QMP monitor, on the fds passed. */
static void argv_devices(struct argv_build *b, const struct vmm_launch *p,
			 const struct child_plan *cp)
{
	ARG("-add-fd");
	ARG(FMT("fd=%d,set=1", cp->root_n));
	ARG("-drive");
	ARG("file=/dev/fdset/1,format=raw,if=none,id=root,readonly=on");
	ARG("-device");
	ARG("virtio-blk-device,drive=root,serial=root");
	if (cp->data_n >= 0) {
		/* QEMU probes read-only before it opens read-write: one fd per access mode. */
		ARG("-add-fd");
		ARG(FMT("fd=%d,set=2", cp->data_n));
		ARG("-add-fd");
		ARG(FMT("fd=%d,set=2", cp->data_ro_n));
		ARG("-drive");
		ARG("file=/dev/fdset/2,format=raw,if=none,id=data");
		ARG("-device");
		ARG("virtio-blk-device,drive=data,serial=data");
	}
	/* The volumes, in the runtime's order (by name), fd sets 16 and up. */
	for (size_t i = 0; i < cp->n_vols; i++) {
		ARG("-add-fd");
		ARG(FMT("fd=%d,set=%zu", cp->vol_n[i], 16 + i));
		ARG("-add-fd");
		ARG(FMT("fd=%d,set=%zu", cp->vol_ro_n[i], 16 + i));
		ARG("-drive");
		ARG(FMT("file=/dev/fdset/%zu,format=raw,if=none,id=vol%zu", 16 + i, i));
		ARG("-device");
		ARG(FMT("virtio-blk-device,drive=vol%zu,serial=vol%zu", i, i));
	}
	if (p->tap_name) {
		ARG("-netdev");
		ARG(FMT("tap,id=n0,ifname=%s,script=no,downscript=no", p->tap_name));
		ARG("-device");
		ARG(FMT("virtio-net-device,netdev=n0%s%s", p->mac ? ",mac=" : "", p->mac ?: ""));
	}
	ARG("-chardev");
	ARG(FMT("socket,id=agent,fd=%d,server=on,wait=off", cp->agent_n));
	ARG("-device");
	ARG("virtio-serial-device");
	ARG("-device");
	ARG("virtserialport,chardev=agent,name=agent");
	ARG("-chardev");
	ARG(FMT("socket,id=qmp,fd=%d,server=on,wait=off", cp->qmp_n));
	ARG("-mon");
	ARG("chardev=qmp,mode=control");
	if (p->restore_dir) {
		ARG("-incoming");
		ARG("defer");
	}
}

#undef ARG
#undef FMT

static int build_argv(struct qemu_priv *qp, const struct vmm_launch *p, struct child_plan *cp,
		      char (*s)[VMM_PATH_MAX + 160], size_t nstr)
{
	struct argv_build b = {.argv = cp->argv, .s = s};
	int r;

	if (nstr < 20 + 4 * cp->n_vols)
		return -E2BIG;
	r = argv_machine(&b, qp, p, cp);
	if (r < 0)
		return r;
	argv_devices(&b, p, cp);
	b.argv[b.a++] = NULL;
	return (int)b.a;
}

/* A listening socket at path (in the root-owned VM dir), bound by the daemon and handed to
 * QEMU: QEMU creates no file at all. */
static int bind_listener(const char *path, struct err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -EBADF;

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= (int)sizeof(sa.sun_path))
		return err_set(err, -ENAMETOOLONG, "socket path too long: %s", path);
	(void)unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(err, -errno, "socket: %m");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 8) < 0)
		return err_set(err, -errno, "listening on %s: %m", path);
	return TAKE_FD(fd);
}

/* The VMM can read a host file (kernel, initrd) only if its uid may: a bind mount keeps the
 * inode's permissions. */
static int check_readable(const char *what, const char *path, uid_t uid, gid_t gid, struct err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return err_set(err, -errno, "%s %s: %m", what, path);
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EINVAL, "%s %s: not a regular file", what, path);
	if ((st.st_mode & S_IROTH) || (st.st_uid == uid && (st.st_mode & S_IRUSR)) ||
	    (st.st_gid == gid && (st.st_mode & S_IRGRP)))
		return 0;
	return err_set(err, -EACCES,
		       "%s %s is not readable by the VM's uid %u (make it world-readable)", what,
		       path, (unsigned)uid);
}

/* The VMM's root: only what QEMU needs, everything read-only, devices owned by the VM. Long: a
 * flat list of what the sandbox holds (mirrored dirs, files, devices, the RAM file), kept in
 * one place so a reviewer sees the whole root at once. */
static int plan_sandbox(struct qemu_priv *qp, const struct vmm_launch *p, struct vmm_handle *h,
			struct child_plan *cp, struct err *err)
{
	static const char *const mirrored[] = {"usr",	 "lib", "lib64", "lib32",
					       "libx32", "bin", "sbin"};
	struct sandbox *sb = &cp->sb;
	char root[VMM_PATH_MAX + 16], real[PATH_MAX];
	int r;

	snprintf(root, sizeof(root), "%s/%s", h->jail_dir, QEMU_ROOT);
	sandbox_init(sb, root, p->uid, p->gid);
	for (size_t i = 0; i < ELEMENTSOF(mirrored); i++)
		sandbox_mirror(sb, mirrored[i]);
	if (!realpath(qp->qemu, real))
		return err_set(err, -errno, "qemu %s: %m", qp->qemu);
	bool in_mirror = false;

	for (size_t i = 0; i < ELEMENTSOF(mirrored); i++) {
		size_t l = strlen(mirrored[i]);

		in_mirror |= strncmp(real + 1, mirrored[i], l) == 0 && real[1 + l] == '/';
	}
	if (!in_mirror) {
		sandbox_add_parents(sb, real + 1);
		r = sandbox_bind(sb, real + 1, real);
		if (r < 0)
			return err_set(err, r, "qemu %s: %s", real, strerror(-r));
	}
	snprintf(cp->env_mark, sizeof(cp->env_mark), "%s%s", QEMU_ENV_MARK, h->jail_dir);
	cp->envp[0] = cp->env_mark;
	cp->envp[1] = NULL;
	/* Its real path: in a mirrored dir, or bound at the same place. */
	snprintf(cp->exec_buf, sizeof(cp->exec_buf), "%s", real);
	cp->exec_path = cp->exec_buf;
	sandbox_mkdir(sb, "etc", 0755);
	if (access("/etc/ld.so.cache", R_OK) == 0)
		(void)sandbox_bind(sb, "etc/ld.so.cache", "/etc/ld.so.cache");
	sandbox_mkdir(sb, "dev", 0755);
	sandbox_mknod(sb, "dev/null", 0666, makedev(1, 3), false);
	sandbox_mknod(sb, "dev/urandom", 0666, makedev(1, 9), false);
	if (p->tap_name) {
		sandbox_mkdir(sb, "dev/net", 0755);
		sandbox_mknod(sb, "dev/net/tun", 0600, makedev(10, 200), true);
	}
	if (qp->kvm)
		sandbox_mknod(sb, "dev/kvm", 0600, makedev(10, 232), true);
	sandbox_mkdir(sb, "vm", 0755);
	if (cp->ram[0]) {
		r = sandbox_bind_rw(sb, "vm/" QEMU_RAM, cp->ram);
		if (r < 0)
			return err_set(err, r, "RAM file %s: %s", cp->ram, strerror(-r));
	}
	r = check_readable("kernel", p->kernel, p->uid, p->gid, err);
	if (r < 0)
		return r;
	r = sandbox_bind(sb, "vm/vmlinux", p->kernel);
	if (r < 0)
		return err_set(err, r, "kernel %s: %s", p->kernel, strerror(-r));
	if (p->initrd) {
		r = check_readable("initrd", p->initrd, p->uid, p->gid, err);
		if (r < 0)
			return r;
		r = sandbox_bind(sb, "vm/initrd", p->initrd);
		if (r < 0)
			return err_set(err, r, "initrd %s: %s", p->initrd, strerror(-r));
	}
	sb->stdin_fd = cp->null_fd;
	sb->out_fd = cp->out_fd >= 0 ? cp->out_fd : cp->null_fd;
	cp->qmp_n = sandbox_pass_fd(sb, cp->qmp_fd);
	cp->agent_n = sandbox_pass_fd(sb, cp->agent_fd);
	cp->root_n = sandbox_pass_fd(sb, cp->root_fd);
	cp->data_n = cp->data_fd >= 0 ? sandbox_pass_fd(sb, cp->data_fd) : -1;
	cp->data_ro_n = cp->data_ro_fd >= 0 ? sandbox_pass_fd(sb, cp->data_ro_fd) : -1;
	cp->console_n = cp->console_fd >= 0 ? sandbox_pass_fd(sb, cp->console_fd) : -1;
	for (size_t i = 0; i < cp->n_vols; i++) {
		cp->vol_n[i] = sandbox_pass_fd(sb, cp->vol_fd[i]);
		cp->vol_ro_n[i] = sandbox_pass_fd(sb, cp->vol_ro_fd[i]);
		if (cp->vol_n[i] < 0 || cp->vol_ro_n[i] < 0)
			return err_set(err, -E2BIG, "sandbox plan too large");
	}
	if (sb->overflow || cp->qmp_n < 0 || cp->agent_n < 0 || cp->root_n < 0 ||
	    (cp->data_fd >= 0 && (cp->data_n < 0 || cp->data_ro_n < 0)) ||
	    (cp->console_fd >= 0 && cp->console_n < 0))
		return err_set(err, -E2BIG, "sandbox plan too large");
	return 0;
}

static void plan_close(struct child_plan *cp)
{
	for (int i = 0; i < cp->ncg; i++)
		safe_close(cp->cg_fds[i]);
	cp->ncg = 0;
	cp->netns_fd = safe_close(cp->netns_fd);
	cp->out_fd = safe_close(cp->out_fd);
	cp->null_fd = safe_close(cp->null_fd);
	cp->qmp_fd = safe_close(cp->qmp_fd);
	cp->agent_fd = safe_close(cp->agent_fd);
	cp->root_fd = safe_close(cp->root_fd);
	cp->data_fd = safe_close(cp->data_fd);
	cp->data_ro_fd = safe_close(cp->data_ro_fd);
	cp->console_fd = safe_close(cp->console_fd);
	for (size_t i = 0; i < cp->n_vols; i++) {
		cp->vol_fd[i] = safe_close(cp->vol_fd[i]);
		cp->vol_ro_fd[i] = safe_close(cp->vol_ro_fd[i]);
	}
	cp->n_vols = 0;
	sandbox_done(&cp->sb);
}

/* One launch, carried through its steps. */
struct qemu_launch_ctx {
	struct qemu_priv *qp;
	const struct vmm_launch *p;
	struct vmm_handle *h;
	struct child_plan cp;
};

/* Launch: the VM's host dir (marked, with the empty root/ mount point) and its two sockets. */
static int host_dir(struct qemu_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	struct vmm_handle *h = lc->h;
	char path[VMM_PATH_MAX + 64];
	int r;

	if (snprintf(h->jail_dir, sizeof(h->jail_dir), "%s/%s", lc->qp->base_dir, p->name) >=
		    (int)sizeof(h->jail_dir) ||
	    snprintf(h->api_socket, sizeof(h->api_socket), "%s/%s", h->jail_dir, QEMU_QMP) >=
		    (int)sizeof(h->api_socket) ||
	    snprintf(h->agent_socket, sizeof(h->agent_socket), "%s/%s", h->jail_dir, QEMU_AGENT) >=
		    (int)sizeof(h->agent_socket))
		return err_set(err, -ENAMETOOLONG, "socket path longer than 107 bytes under %s",
			       lc->qp->base_dir);
	(void)rm_rf(h->jail_dir);
	r = mkdir_p(h->jail_dir, 0700);
	if (r < 0)
		return err_set(err, r, "creating %s: %s", h->jail_dir, strerror(-r));
	r = vmm_mark_dir(h->jail_dir, p->name, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s", h->jail_dir, QEMU_ROOT);
	if (mkdir(path, 0755) < 0)
		return err_set(err, -errno, "creating %s: %m", path);
	/* The writable disk belongs to the VM's uid (QEMU gets it as an fd; a later reopen, e.g.
	 * on a flush error, happens as that uid). */
	if (p->data_disk && chown(p->data_disk, p->uid, p->gid) < 0)
		return err_set(err, -errno, "chown %s: %m", p->data_disk);
	for (size_t i = 0; i < p->n_volume_disks; i++)
		if (chown(p->volume_disks[i], p->uid, p->gid) < 0)
			return err_set(err, -errno, "chown %s: %m", p->volume_disks[i]);
	return 0;
}

/* Step 2b: the guest's RAM file in the saved state's directory: a new sparse file of the
 * guest's size for a boot (an earlier one goes), the saved one for a restore. Owned by the VM's
 * uid (QEMU opens it in its sandbox). */
static int ram_file(struct qemu_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	struct child_plan *cp = &lc->cp;
	off_t size = (off_t)(p->mem_mib ? p->mem_mib : 2048) << 20;
	char dir[VMM_PATH_MAX + 16];
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int r;

	if (!p->run_dir)
		return 0;
	if (p->restore_dir)
		snprintf(dir, sizeof(dir), "%s", p->restore_dir);
	else
		snprintf(dir, sizeof(dir), "%s/suspend", p->run_dir);
	snprintf(cp->ram, sizeof(cp->ram), "%s/" QEMU_RAM, dir);
	if (p->restore_dir) {
		fd = open(cp->ram, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return err_set(err, -errno, "saved RAM %s: %m", cp->ram);
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != size)
			return err_set(
				err, -EBADMSG,
				"saved RAM %s: not a %lld-byte file (the memory size changed?)",
				cp->ram, (long long)size);
	} else {
		r = mkdir_p(dir, 0700);
		if (r < 0)
			return err_set(err, r, "creating %s: %s", dir, strerror(-r));
		(void)unlink(cp->ram);
		fd = open(cp->ram, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return err_set(err, -errno, "RAM file %s: %m", cp->ram);
		if (ftruncate(fd, size) < 0)
			return err_set(err, -errno, "RAM file %s: %m", cp->ram);
	}
	if (fchown(fd, p->uid, p->gid) < 0)
		return err_set(err, -errno, "chown %s: %m", cp->ram);
	return 0;
}

/* open() close-on-exec into *fd; -errno on failure (errno kept for the caller's message). */
static int open_into(int *fd, const char *path, int flags, mode_t mode)
{
	*fd = open(path, flags | O_CLOEXEC, mode);
	return *fd < 0 ? -errno : 0;
}

/* Launch: what the child gets as fds: the cgroups it joins, the network namespace, /dev/null,
 * the console file, the disks, and both listening sockets. */
static int open_child_fds(struct qemu_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	struct child_plan *cp = &lc->cp;
	char path[VMM_PATH_MAX + 64];
	int r;

	for (int i = 0; i < 4 && lc->h->cgroup[i][0]; i++) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", lc->h->cgroup[i]);
		if (open_into(&cp->cg_fds[cp->ncg], path, O_WRONLY, 0) < 0)
			return err_set(err, -EIO, "cgroup limits cannot be applied: %s: %m", path);
		cp->ncg++;
	}
	if (p->netns_path && open_into(&cp->netns_fd, p->netns_path, O_RDONLY, 0) < 0)
		return err_set(err, -errno, "network namespace %s: %m", p->netns_path);
	if (open_into(&cp->null_fd, "/dev/null", O_RDWR, 0) < 0)
		return err_set(err, -errno, "/dev/null: %m");
	if (p->console_log) {
		/* QEMU's own messages and the guest console, both into the console file. */
		if (open_into(&cp->out_fd, p->console_log, O_WRONLY | O_CREAT | O_APPEND, 0600) < 0)
			return err_set(err, -errno, "%s: %m", p->console_log);
		cp->console_fd = fcntl(cp->out_fd, F_DUPFD_CLOEXEC, 3);
		if (cp->console_fd < 0)
			return err_set(err, -errno, "dup: %m");
	}
	if (open_into(&cp->root_fd, p->rootfs, O_RDONLY, 0) < 0)
		return err_set(err, -errno, "root disk %s: %m", p->rootfs);
	if (p->data_disk && (open_into(&cp->data_fd, p->data_disk, O_RDWR, 0) < 0 ||
			     open_into(&cp->data_ro_fd, p->data_disk, O_RDONLY, 0) < 0))
		return err_set(err, -errno, "data disk %s: %m", p->data_disk);
	if (p->n_volume_disks > VMM_VOLUMES_MAX)
		return err_set(err, -E2BIG, "more than %d volumes", VMM_VOLUMES_MAX);
	for (size_t i = 0; i < p->n_volume_disks; i++) {
		cp->vol_fd[i] = cp->vol_ro_fd[i] = -EBADF;
		cp->n_vols = i + 1;
		if (open_into(&cp->vol_fd[i], p->volume_disks[i], O_RDWR | O_NOFOLLOW, 0) < 0 ||
		    open_into(&cp->vol_ro_fd[i], p->volume_disks[i], O_RDONLY | O_NOFOLLOW, 0) < 0)
			return err_set(err, -errno, "volume disk %s: %m", p->volume_disks[i]);
	}
	r = bind_listener(lc->h->api_socket, err);
	if (r < 0)
		return r;
	cp->qmp_fd = r;
	r = bind_listener(lc->h->agent_socket, err);
	if (r < 0)
		return r;
	cp->agent_fd = r;
	return 0;
}

/* Launch: the command line, fork (the child enters its cgroups, namespace and sandbox, then
 * execs QEMU), the pidfd, and the pid file the reaper trusts. */
static int spawn_qemu(struct qemu_launch_ctx *lc, struct err *err)
{
	static char strs[ARGV_STRS][VMM_PATH_MAX + 160]; /* guarded by launch_lock */
	static pthread_mutex_t launch_lock = PTHREAD_MUTEX_INITIALIZER;
	char path[VMM_PATH_MAX + 64], txt[16];
	pid_t pid;
	int r, n;

	pthread_mutex_lock(&launch_lock);
	r = build_argv(lc->qp, lc->p, &lc->cp, strs, ELEMENTSOF(strs));
	if (r < 0) {
		pthread_mutex_unlock(&launch_lock);
		return err_set(err, r, "building the QEMU command line: %s", strerror(-r));
	}
	pid = fork();
	if (pid == 0)
		child_run(&lc->cp);
	pthread_mutex_unlock(&launch_lock);
	if (pid < 0)
		return err_set(err, -errno, "fork: %m");
	r = vmm_handle_track_child(lc->h, pid, lc->p->pid_out);
	if (r < 0)
		return err_set(err, r, "pidfd for QEMU %d: %s", (int)pid, strerror(-r));
	n = snprintf(txt, sizeof(txt), "%d\n", (int)pid);
	snprintf(path, sizeof(path), "%s/%s", lc->h->jail_dir, QEMU_PIDFILE);
	r = write_file_atomic(path, txt, (size_t)n, 0600);
	if (r < 0)
		return err_set(err, r, "writing %s: %s", path, strerror(-r));
	return 0;
}

/* QMP answers and query-status says running. QEMU accepts on its sockets once initialised;
 * then the guest is running at once. */
static int qmp_running(struct vmm_handle *h, void *ud, struct err *err)
{
	struct err e2 = {};
	enum vmm_run_state st;

	if (query_status(h, &st, &e2) < 0)
		return 0;
	/* The start time read right after fork may be the pre-exec child's: same process, same
	 * value, but re-read to be sure it is recorded. */
	(void)vmm_proc_start_time(h->pid, &h->start_time);
	return st == VMM_RUN_RUNNING;
}

static int qmp_up(struct vmm_handle *h, void *ud, struct err *err)
{
	struct err e2 = {};
	enum vmm_run_state st;

	if (query_status(h, &st, &e2) < 0)
		return 0;
	(void)vmm_proc_start_time(h->pid, &h->start_time);
	return 1;
}

/* query-migrate: 1 completed, 0 not yet, -EIO failed ("<what> failed: <QEMU's reason>"). */
static int migration_done(struct vmm_handle *h, const char *what, struct err *err)
{
	json_t *v = NULL;
	const char *st;
	int r;

	r = qmp_call(h, "query-migrate", &v, err);
	if (r < 0)
		return r;
	st = json_string_value(json_object_get(v, "status"));
	if (st && strcmp(st, "failed") == 0) {
		const char *why = json_string_value(json_object_get(v, "error-desc"));

		r = err_set(err, -EIO, "%s failed: %s", what, why ? why : "(no reason given)");
	} else {
		r = st && strcmp(st, "completed") == 0;
	}
	json_decref(v);
	return r;
}

/* The incoming state is loaded and QEMU waits, paused. */
static int qmp_paused(struct vmm_handle *h, void *ud, struct err *err)
{
	enum vmm_run_state run;
	struct err e2 = {};
	int r = migration_done(h, "loading the saved state", err);

	if (r <= 0)
		return r;
	return query_status(h, &run, &e2) >= 0 && run == VMM_RUN_PAUSED;
}

/* x-ignore-shared (the RAM is the shared file), fd handed over with getfd, then cmd
 * ("migrate" to save, "migrate-incoming" to restore) on "fd:mvmfs-state". */
static int migrate_fd(struct vmm_handle *h, const char *cmd, int fd, struct err *err)
{
	struct qmp *q = NULL;
	json_t *args;
	int r;

	r = qmp_connect(h->api_socket, QEMU_CALL_MS, &q, err);
	if (r < 0)
		return r;
	args = json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared",
			 "state", 1);
	r = args ? qmp_execute(q, "migrate-set-capabilities", args, NULL, QEMU_CALL_MS, err)
		 : -ENOMEM;
	json_decref(args);
	if (r >= 0)
		r = qmp_getfd(q, "mvmfs-state", fd, QEMU_CALL_MS, err);
	if (r >= 0) {
		args = json_pack("{s:s}", "uri", "fd:mvmfs-state");
		r = args ? qmp_execute(q, cmd, args, NULL, QEMU_CALL_MS, err) : -ENOMEM;
		json_decref(args);
	}
	qmp_close(q);
	return r;
}

/* The restore: QEMU waits for its incoming state (-incoming defer); x-ignore-shared (the RAM is
 * the file it mapped), the state file through getfd, then the state is removed before the
 * guest runs again (from then on the RAM file is the live memory: the old state would no
 * longer match it). */
static int restore_incoming(struct qemu_launch_ctx *lc, struct err *err)
{
	const struct vmm_launch *p = lc->p;
	struct vmm_handle *h = lc->h;
	char path[VMM_PATH_MAX + 32];
	_cleanup_close_ int fd = -EBADF;
	int r;

	r = vmm_wait_for(h, p, &qemu_exit_text,
			 &(struct vmm_wait){.what = "starting QEMU for the restore",
					    .late = "QEMU did not answer",
					    .timeout_ms = QEMU_SOCKET_WAIT_MS,
					    .step_ms = 5,
					    .ready = qmp_up},
			 err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/state", p->restore_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return err_set(err, -errno, "saved state %s: %m", path);
	r = migrate_fd(h, "migrate-incoming", fd, err);
	if (r < 0)
		return r;
	r = vmm_wait_for(h, p, &qemu_exit_text,
			 &(struct vmm_wait){.what = "loading the saved state",
					    .late = "QEMU did not finish loading the saved state",
					    .timeout_ms = QEMU_MIGRATE_MS,
					    .step_ms = 5,
					    .ready = qmp_paused},
			 err);
	if (r < 0)
		return r;
	if (unlink(path) < 0)
		return err_set(err, -errno, "removing %s: %m", path);
	snprintf(path, sizeof(path), "%s/state.sum", p->restore_dir);
	(void)unlink(path);
	{
		_cleanup_close_ int dfd = open(p->restore_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0)
			(void)fsync(dfd);
	}
	return qmp_call(h, "cont", NULL, err);
}

static int qemu_launch(void *priv, const struct vmm_launch *p, struct vmm_handle *h,
		       struct err *err)
{
	struct qemu_launch_ctx lc = {.qp = priv,
				     .p = p,
				     .h = h,
				     .cp = {.netns_fd = -EBADF,
					    .out_fd = -EBADF,
					    .null_fd = -EBADF,
					    .qmp_fd = -EBADF,
					    .agent_fd = -EBADF,
					    .root_fd = -EBADF,
					    .data_fd = -EBADF,
					    .data_ro_fd = -EBADF,
					    .console_fd = -EBADF}};
	int r;

	/* h is filled as each piece exists: on failure the caller kills and cleans up with it. */
	r = host_dir(&lc, err);
	if (r >= 0)
		r = setup_cgroups(lc.qp, p, h, err);
	if (r >= 0)
		r = ram_file(&lc, err);
	if (r >= 0)
		r = open_child_fds(&lc, err);
	if (r >= 0)
		r = plan_sandbox(lc.qp, p, h, &lc.cp, err);
	if (r >= 0)
		r = spawn_qemu(&lc, err);
	/* The daemon's copies of the child's fds go now: the listeners stay QEMU's alone. */
	plan_close(&lc.cp);
	if (r >= 0 && p->restore_dir)
		r = restore_incoming(&lc, err);
	if (r >= 0)
		r = vmm_wait_for(h, p, &qemu_exit_text,
				 &(struct vmm_wait){.what = "starting QEMU",
						    .late = "QEMU did not report running",
						    .timeout_ms = QEMU_SOCKET_WAIT_MS,
						    .step_ms = 5,
						    .ready = qmp_running},
				 err);
	return r < 0 ? r : 0;
}

static int qemu_query(void *priv, struct vmm_handle *h, enum vmm_run_state *ret, struct err *err)
{
	if (vmm_handle_ended(h)) {
		*ret = VMM_RUN_GONE;
		return 0;
	}
	return query_status(h, ret, err);
}

/* ACPI power button: the agent sees KEY_POWER and stops the app with its grace period. The
 * runtime's graceful path asks the agent directly first; this is the fallback. */
static int qemu_request_stop(void *priv, struct vmm_handle *h, struct err *err)
{
	return qmp_call(h, "system_powerdown", NULL, err);
}

static int qemu_pause(void *priv, struct vmm_handle *h, struct err *err)
{
	return qmp_call(h, "stop", NULL, err);
}

static int qemu_resume(void *priv, struct vmm_handle *h, struct err *err)
{
	return qmp_call(h, "cont", NULL, err);
}

/* Suspend: the device state streamed into dir/state.tmp (an fd handed over with getfd), the RAM
 * file (already the guest's memory) flushed to disk. QEMU stays, stopped. */
static int qemu_save(void *priv, const char *name, struct vmm_handle *h, const char *dir,
		     struct err *err)
{
	char path[VMM_PATH_MAX + 32];
	_cleanup_close_ int fd = -EBADF;
	uint64_t end;
	int r;

	snprintf(path, sizeof(path), "%s/" QEMU_RAM, dir);
	if (access(path, F_OK) < 0)
		return err_set(err, -EOPNOTSUPP,
			       "this VM's RAM is not in a file (started before suspend support?)");
	snprintf(path, sizeof(path), "%s/state.tmp", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_set(err, -errno, "%s: %m", path);
	r = migrate_fd(h, "migrate", fd, err);
	if (r < 0)
		return r;
	end = (uint64_t)time(NULL) * 1000 + QEMU_MIGRATE_MS;
	while ((r = migration_done(h, "saving the VM", err)) == 0) {
		if ((uint64_t)time(NULL) * 1000 > end)
			return err_set(err, -ETIMEDOUT, "saving the VM took longer than %d ms",
				       QEMU_MIGRATE_MS);
		usleep(2000);
	}
	if (r < 0)
		return r;
	if (fsync(fd) < 0)
		return err_set(err, -errno, "fsync %s: %m", path);
	snprintf(path, sizeof(path), "%s/" QEMU_RAM, dir);
	{
		_cleanup_close_ int rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

		if (rfd < 0 || fsync(rfd) < 0)
			return err_set(err, -errno, "fsync %s: %m", path);
	}
	return 0;
}

static int qemu_adopt(void *priv, const char *name, struct vmm_handle *h, struct err *err)
{
	return vmm_adopt(&vmm_qemu_ops, priv, h, "QEMU", err);
}

static void qemu_cleanup(void *priv, const char *name, struct vmm_handle *h)
{
	struct qemu_priv *qp = priv;

	/* Without a recorded handle (a daemon killed mid-start: the record announced the launch
	 * but holds no pid), the dir and cgroups follow from the name, and a QEMU of the VM's
	 * dir that no handle points at is killed before its cgroups go. */
	vmm_handle_dirs_from_name(h, qp->base_dir, name, &qp->cg, qp->cg_parent);
	if (h->pidfd < 0 && h->jail_dir[0])
		(void)qemu_kill_strays(h->jail_dir, name, 0, 2000);
	vmm_handle_remove_dirs(h, name);
}

/* Does the NUL-separated list (environ, cmdline) hold an entry equal to want (or, with
 * substring, containing it)? */
static bool has_entry(const char *list, size_t len, const char *want, bool substring)
{
	for (size_t i = 0; i < len;) {
		const char *e = list + i;
		size_t n = strnlen(e, len - i);

		if (substring ? memmem(e, n, want, strlen(want)) != NULL
			      : n == strlen(want) && memcmp(e, want, n) == 0)
			return true;
		i += n + 1;
	}
	return false;
}

/* A leftover QEMU of ours: its pid file's process (the file is written by the daemon in its
 * own dir) whose environment marks our dir (older versions: whose command line names it). */
static void kill_leftover(const char *dir)
{
	char path[VMM_PATH_MAX + 32], want[VMM_PATH_MAX + 32], *env = NULL;
	struct vmm_handle h;
	size_t len = 0;

	vmm_handle_init(&h);
	snprintf(path, sizeof(path), "%s/%s", dir, QEMU_PIDFILE);
	if (vmm_handle_from_pidfile(&h, path) < 0)
		return;
	snprintf(want, sizeof(want), "%s%s", QEMU_ENV_MARK, dir);
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)h.pid);
	if (read_file_bounded(path, 1 << 20, &env, &len) >= 0 && has_entry(env, len, want, false))
		(void)vmm_handle_kill(&h);
	free(env);
	env = NULL;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)h.pid);
	if (read_file_bounded(path, 65536, &env, &len) >= 0 && has_entry(env, len, dir, true))
		(void)vmm_handle_kill(&h);
	free(env);
	h.pidfd = safe_close(h.pidfd);
}

/* A leftover dir: kill the QEMU its pid file names if it is ours, then what qemu_cleanup does. */
static void reap_one(void *priv, const char *name)
{
	struct qemu_priv *qp = priv;
	struct vmm_handle h;

	vmm_handle_init(&h);
	vmm_handle_dirs_from_name(&h, qp->base_dir, name, &qp->cg, qp->cg_parent);
	if (h.jail_dir[0])
		kill_leftover(h.jail_dir);
	qemu_cleanup(priv, name, &h);
}

static int qemu_reap(void *priv, bool (*is_known)(const char *name, void *ud), void *ud)
{
	struct qemu_priv *qp = priv;

	return vmm_reap_marked_dirs(qp->base_dir, is_known, ud, reap_one, qp);
}

const struct vmm_ops vmm_qemu_ops = {
	.name = "qemu",
	.init = qemu_init,
	.free = qemu_free,
	.launch = qemu_launch,
	.query = qemu_query,
	.request_stop = qemu_request_stop,
	.kill = vmm_kill_op,
	.pause = qemu_pause,
	.resume = qemu_resume,
	.save = qemu_save,
	.adopt = qemu_adopt,
	.cleanup = qemu_cleanup,
	.reap = qemu_reap,
};
