/* SPDX-License-Identifier: MIT */
/*
 * Stray VMM processes: processes of a VM's jail that no handle points at. A daemon killed
 * between spawning the jailer and recording its pid, or a jailer that was still setting up the
 * jail when its jail was cleaned, leaves one. The record says a launch was about to happen
 * (intent first), and this finds every process that is provably ours for that VM, wherever it
 * is in its life:
 *  - the jailer before it execs (or the test fake for its whole life): its argv carries
 *    "--id NAME" and "--chroot-base-dir BASE" with this node's chroot base;
 *  - the VMM inside the jail: its root is <chroot base>/<exec name>/NAME/root (or that path
 *    " (deleted)" when the jail was removed under it).
 * Nothing else is touched (other daemons on the host use other chroot bases or names).
 *
 * The QEMU backend's VMM is recognised by its environment, the single entry
 * MVMFS_QEMU_DIR=<STATE_DIR/qemu/NAME> (real path) the daemon gives it at exec: a QEMU whose
 * start the daemon did not live to record (no pid in the record, its pid file maybe not yet
 * written or its dir already cleaned) is found all the same. Other daemons have other state
 * dirs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "qemu.h"

#define STRAYS_MAX 32
#define CMDLINE_MAX 65536
#define ENVIRON_MAX 65536

/* Does the NUL-separated argv hold key followed by value? */
static bool argv_has_pair(const char *argv, size_t len, const char *key, const char *value)
{
	const char *end = argv + len, *prev = NULL;

	for (const char *p = argv; p < end; p += strlen(p) + 1) {
		if (prev && strcmp(prev, key) == 0 && strcmp(p, value) == 0)
			return true;
		prev = p;
	}
	return false;
}

bool stray_matches(const char *cmdline, size_t len, const char *root_link, const char *name,
		   const char *chroot_base, const char *jail_root)
{
	size_t n = strlen(jail_root);

	if (cmdline && len > 0 && cmdline[len - 1] == '\0' &&
	    argv_has_pair(cmdline, len, "--id", name) &&
	    argv_has_pair(cmdline, len, "--chroot-base-dir", chroot_base))
		return true;
	return root_link && strncmp(root_link, jail_root, n) == 0 &&
	       (root_link[n] == '\0' || strcmp(root_link + n, " (deleted)") == 0);
}

bool stray_env_matches(const char *env, size_t len, const char *mark)
{
	const char *end = env + len;

	if (!env || len == 0 || env[len - 1] != '\0')
		return false;
	for (const char *p = env; p < end; p += strlen(p) + 1)
		if (strcmp(p, mark) == 0)
			return true;
	return false;
}

struct fc_match {
	const char *name, *chroot_base, *jail_root;
};

static bool fc_pid_is_stray(pid_t pid, const void *ud)
{
	const struct fc_match *m = ud;
	char path[64], link[VMM_PATH_MAX + 16];
	_cleanup_free_ char *cmd = NULL;
	size_t len = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (read_file_bounded(path, CMDLINE_MAX, &cmd, &len) < 0)
		len = 0;
	return stray_matches(cmd, len, n > 0 ? link : NULL, m->name, m->chroot_base, m->jail_root);
}

static bool qemu_pid_is_stray(pid_t pid, const void *ud)
{
	char path[64];
	_cleanup_free_ char *env = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	/* QEMU's environment is the one mark; a larger one is not ours. */
	return read_file_bounded(path, ENVIRON_MAX, &env, &len) == 0 &&
	       stray_env_matches(env, len, ud);
}

/* SIGKILL every process match accepts (checked again once pinned by a pidfd), then wait. */
static int kill_matching(bool (*match)(pid_t pid, const void *ud), const void *ud, const char *name,
			 pid_t except, unsigned wait_ms)
{
	_cleanup_closedir_ DIR *d = NULL;
	int fds[STRAYS_MAX];
	unsigned n = 0;
	struct dirent *de;
	pid_t self = getpid();

	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d)) && n < STRAYS_MAX) {
		uint32_t v;
		pid_t pid;
		int fd;

		if (parse_u32(de->d_name, &v) < 0 || v <= 1)
			continue;
		pid = (pid_t)v;
		if (pid == self || pid == except || !match(pid, ud))
			continue;
		/* Pin it, then check again: the pid cannot be recycled under a pidfd. */
		fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0)
			continue;
		if (!match(pid, ud) || syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) < 0) {
			close(fd);
			continue;
		}
		log_warning("%s: killed stray VMM process %d (no handle pointed at it)", name,
			    (int)pid);
		fds[n++] = fd;
	}
	for (unsigned i = 0; i < n; i++) {
		struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
		siginfo_t si;

		(void)poll(&pfd, 1, (int)wait_ms);
		/* Reap it when it is our own child (a jailer or QEMU this daemon spawned). */
		(void)waitid(P_PIDFD, (id_t)fds[i], &si, WEXITED | WNOHANG);
		close(fds[i]);
	}
	return (int)n;
}

int qemu_kill_strays(const char *dir, const char *name, pid_t except, unsigned wait_ms)
{
	char mark[VMM_PATH_MAX + 32];

	if (snprintf(mark, sizeof(mark), "%s%s", QEMU_ENV_MARK, dir) >= (int)sizeof(mark))
		return 0;
	return kill_matching(qemu_pid_is_stray, mark, name, except, wait_ms);
}

int rt_kill_strays(struct runtime *rt, const char *name, pid_t except, unsigned wait_ms)
{
	char real_base[PATH_MAX], exec_dir[VMM_PATH_MAX], jail_root[VMM_PATH_MAX + 64];
	struct fc_match m = {.name = name, .chroot_base = rt->cfg.chroot_base};

	if (strcmp(rt->ops->name, "qemu") == 0) {
		char base[VMM_PATH_MAX + 16], dir[PATH_MAX + 80];

		/* The VM's dir as the backend names it: under the real path of STATE_DIR/qemu. */
		if (snprintf(base, sizeof(base), "%s/%s", rt->cfg.state_dir, QEMU_DIR) >=
		    (int)sizeof(base))
			return 0;
		if (!realpath(base, real_base) &&
		    snprintf(real_base, sizeof(real_base), "%s", base) >= (int)sizeof(real_base))
			return 0;
		snprintf(dir, sizeof(dir), "%s/%s", real_base, name);
		return qemu_kill_strays(dir, name, except, wait_ms);
	}
	if (strcmp(rt->ops->name, "firecracker") != 0 || !rt->cfg.firecracker)
		return 0;
	/* The jail as /proc shows a process's root: under the chroot base's real path. */
	if (!realpath(rt->cfg.chroot_base, real_base))
		snprintf(real_base, sizeof(real_base), "%s", rt->cfg.chroot_base);
	if (jailer_exec_dir(real_base, rt->cfg.firecracker, exec_dir, sizeof(exec_dir)) < 0 ||
	    snprintf(jail_root, sizeof(jail_root), "%s/%s/root", exec_dir, name) >=
		    (int)sizeof(jail_root))
		return 0;
	m.jail_root = jail_root;
	return kill_matching(fc_pid_is_stray, &m, name, except, wait_ms);
}
