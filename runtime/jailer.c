/* SPDX-License-Identifier: MIT */
/*
 * The jailer: argv building (pure), posix_spawn, and process identity helpers (pidfd, start
 * time from /proc/<pid>/stat) shared by the backends.
 *
 * The jailer is spawned WITHOUT --daemonize: it execs into Firecracker keeping its pid, so the
 * VMM stays our child and waitid(P_PIDFD) yields its exit status. After a daemon restart the
 * VMM is no longer our child; it is re-adopted by pid + start time and its exit status is then
 * unknown (the reason says so).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "parse.h"

int jailer_argv(const struct jailer_params *p, const char **argv, size_t max, char uid[16],
		char gid[16])
{
	size_t n = 0;

	snprintf(uid, 16, "%u", (unsigned)p->uid);
	snprintf(gid, 16, "%u", (unsigned)p->gid);
#define A(x)                           \
	do {                           \
		if (n + 1 >= max)      \
			return -E2BIG; \
		argv[n++] = (x);       \
	} while (0)
	A(p->jailer);
	A("--id");
	A(p->id);
	A("--exec-file");
	A(p->exec_file);
	A("--uid");
	A(uid);
	A("--gid");
	A(gid);
	A("--chroot-base-dir");
	A(p->chroot_base);
	if (p->netns) {
		A("--netns");
		A(p->netns);
	}
	for (size_t i = 0; i < p->n_cgroup_args; i++)
		A(p->cgroup_args[i]);
	A("--");
	A("--api-sock");
	A(p->api_sock);
#undef A
	argv[n] = NULL;
	return (int)n;
}

int jailer_spawn(const struct jailer_params *p, pid_t *ret_pid)
{
	const char *argv[64];
	char uid[16], gid[16];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int n, r;

	if (p->uid == 0 || p->gid == 0)
		return -EPERM;
	n = jailer_argv(p, argv, ELEMENTSOF(argv), uid, gid);
	if (n < 0)
		return n;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (p->stdout_fd >= 0) {
		posix_spawn_file_actions_adddup2(&fa, p->stdout_fd, 1);
		posix_spawn_file_actions_adddup2(&fa, p->stdout_fd, 2);
	}
	/* Only stdin, stdout and stderr reach the jailer (and the VMM it becomes): no fd of
	 * the daemon (report connections, other VMs' sockets, the FUSE device) survives exec,
	 * whether or not it was opened close-on-exec. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	/* The child starts with default signal handling and an empty mask; own session so a
	 * terminal's signals do not reach the VMM. */
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETSID);
	/* The jailer clears the environment itself; pass ours for the fake. */
	r = posix_spawn(ret_pid, p->jailer, &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return -r;
}

int jailer_exec_dir(const char *chroot_base, const char *exec_file, char *buf, size_t size)
{
	char real[PATH_MAX];
	int n;

	if (!realpath(exec_file, real))
		return -errno;
	n = snprintf(buf, size, "%s/%s", chroot_base, basename(real));
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

void vmm_handle_init(struct vmm_handle *h)
{
	memset(h, 0, sizeof(*h));
	h->pidfd = -EBADF;
}

int vmm_proc_start_time(pid_t pid, uint64_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *p, *save = NULL;
	uint64_t v;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file_bounded(path, 4096, &buf, NULL) < 0)
		return -ESRCH;
	/* comm may contain spaces and ')': fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	p++;
	/* After ")" come fields 3.. ; starttime is field 22, i.e. the 20th token. */
	for (int i = 3; i <= 22; i++) {
		char *tok = strtok_r(i == 3 ? p : NULL, " ", &save);
		if (!tok)
			return -EINVAL;
		if (i == 22) {
			if (parse_u64(tok, &v) < 0)
				return -EINVAL;
			*ret = v;
			return 0;
		}
	}
	return -EINVAL;
}

int vmm_handle_open_pidfd(struct vmm_handle *h)
{
	uint64_t st;
	int fd;

	if (h->pid <= 0)
		return -ESRCH;
	fd = (int)syscall(SYS_pidfd_open, h->pid, 0);
	if (fd < 0)
		return -errno == -EINVAL ? -ESRCH : -errno;
	/* Checked after opening: a pidfd pins the pid, so a match now means it is ours. */
	if (vmm_proc_start_time(h->pid, &st) < 0 || (h->start_time && st != h->start_time)) {
		close(fd);
		return -ESRCH;
	}
	h->start_time = st;
	safe_close(h->pidfd);
	h->pidfd = fd;
	return 0;
}

int vmm_handle_reap(struct vmm_handle *h, struct vmm_exit *ret)
{
	struct vmm_exit ex = {};
	siginfo_t si = {};

	/* Only a child's status can be collected (ECHILD otherwise): re-adopted VMMs that are
	 * not our children end with an unknown status. */
	if (h->pidfd >= 0 &&
	    waitid((idtype_t)P_PIDFD, (id_t)h->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid) {
		ex.known = true;
		if (si.si_code == CLD_EXITED)
			ex.code = si.si_status;
		else
			ex.signal = si.si_status;
	}
	h->pidfd = safe_close(h->pidfd);
	h->pid = 0;
	h->is_child = false;
	*ret = ex;
	return 0;
}

int vmm_handle_kill(struct vmm_handle *h)
{
	if (h->pidfd < 0)
		return -ESRCH;
	return RET_NERRNO((int)syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, NULL, 0));
}
