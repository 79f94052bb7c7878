/* SPDX-License-Identifier: MIT */
/*
 * The jailer: argv building (pure) and posix_spawn. The process handle of the VMM it becomes is
 * runtime/proc.c's.
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
