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

#define STRAYS_MAX 32
#define CMDLINE_MAX 65536

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

static bool pid_is_stray(pid_t pid, const char *name, const char *chroot_base,
			 const char *jail_root)
{
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
	return stray_matches(cmd, len, n > 0 ? link : NULL, name, chroot_base, jail_root);
}

int rt_kill_strays(struct runtime *rt, const char *name, pid_t except, unsigned wait_ms)
{
	char real_base[PATH_MAX], exec_dir[VMM_PATH_MAX], jail_root[VMM_PATH_MAX + 64];
	_cleanup_closedir_ DIR *d = NULL;
	int fds[STRAYS_MAX];
	unsigned n = 0;
	struct dirent *de;
	pid_t self = getpid();

	if (strcmp(rt->ops->name, "firecracker") != 0 || !rt->cfg.firecracker)
		return 0;
	/* The jail as /proc shows a process's root: under the chroot base's real path. */
	if (!realpath(rt->cfg.chroot_base, real_base))
		snprintf(real_base, sizeof(real_base), "%s", rt->cfg.chroot_base);
	if (jailer_exec_dir(real_base, rt->cfg.firecracker, exec_dir, sizeof(exec_dir)) < 0 ||
	    snprintf(jail_root, sizeof(jail_root), "%s/%s/root", exec_dir, name) >=
		    (int)sizeof(jail_root))
		return 0;
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
		if (pid == self || pid == except ||
		    !pid_is_stray(pid, name, rt->cfg.chroot_base, jail_root))
			continue;
		/* Pin it, then check again: the pid cannot be recycled under a pidfd. */
		fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0)
			continue;
		if (!pid_is_stray(pid, name, rt->cfg.chroot_base, jail_root) ||
		    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) < 0) {
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
		/* Reap it when it is our own child (a jailer this daemon spawned). */
		(void)waitid(P_PIDFD, (id_t)fds[i], &si, WEXITED | WNOHANG);
		close(fds[i]);
	}
	return (int)n;
}
