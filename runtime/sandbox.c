/* SPDX-License-Identifier: MIT */
/* The VMM child's sandbox: fds, mount namespace, minimal root, credentials (see sandbox.h). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"

#define SB_TMPFS_OPTS "mode=0755,size=1m,nr_inodes=256"
#define SB_FD_HIGH 512 /* planned fds are moved above this before they are renumbered */

/* Resource limits of the VMM (per process; the uid is the VM's own, so NPROC counts this VMM's
 * threads only). Memory is limited by the cgroup, not by RLIMIT_AS (QEMU reserves far more
 * address space than it uses). */
static const struct {
	int res;
	rlim_t value;
} sb_rlimits[] = {
	{RLIMIT_NOFILE, 1024},	     {RLIMIT_NPROC, 512},  {RLIMIT_CORE, 0},
	{RLIMIT_MEMLOCK, 64 * 1024}, {RLIMIT_MSGQUEUE, 0},
};

void sandbox_init(struct sandbox *sb, const char *root, uid_t uid, gid_t gid)
{
	memset(sb, 0, sizeof(*sb));
	if (snprintf(sb->root, sizeof(sb->root), "%s", root) >= (int)sizeof(sb->root))
		sb->overflow = true;
	sb->uid = uid;
	sb->gid = gid;
	sb->stdin_fd = -EBADF;
	sb->out_fd = -EBADF;
}

void sandbox_done(struct sandbox *sb)
{
	for (int i = 0; i < sb->nstrs; i++)
		free(sb->strs[i]);
	sb->nstrs = 0;
	sb->nsteps = 0;
}

static const char *keep(struct sandbox *sb, const char *s)
{
	char *d;

	if (!s)
		return NULL;
	if (sb->nstrs >= SB_STRS_MAX || !(d = strdup(s))) {
		sb->overflow = true;
		return NULL;
	}
	sb->strs[sb->nstrs++] = d;
	return d;
}

static struct sb_step *add(struct sandbox *sb, enum sb_step_kind kind, const char *path)
{
	struct sb_step *st;

	if (sb->nsteps >= SB_STEPS_MAX || !path || path[0] == '/' || !path[0]) {
		sb->overflow = true;
		return NULL;
	}
	st = &sb->steps[sb->nsteps++];
	memset(st, 0, sizeof(*st));
	st->kind = kind;
	st->path = keep(sb, path);
	return st;
}

void sandbox_mkdir(struct sandbox *sb, const char *path, mode_t mode)
{
	struct sb_step *st = add(sb, SB_MKDIR, path);

	if (st)
		st->mode = mode;
}

void sandbox_add_parents(struct sandbox *sb, const char *path)
{
	char buf[4096];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		sb->overflow = true;
		return;
	}
	for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
		bool seen = false;

		*p = '\0';
		for (int i = 0; i < sb->nsteps; i++)
			if (sb->steps[i].kind == SB_MKDIR && strcmp(sb->steps[i].path, buf) == 0)
				seen = true;
		if (!seen)
			sandbox_mkdir(sb, buf, 0755);
		*p = '/';
	}
}

void sandbox_symlink(struct sandbox *sb, const char *path, const char *target)
{
	struct sb_step *st = add(sb, SB_SYMLINK, path);

	if (st)
		st->src = keep(sb, target);
}

int sandbox_bind(struct sandbox *sb, const char *path, const char *host_src)
{
	struct sb_step *st;
	struct stat s;

	if (stat(host_src, &s) < 0)
		return -errno;
	st = add(sb, SB_BIND, path);
	if (!st)
		return -E2BIG;
	st->src = keep(sb, host_src);
	st->is_dir = S_ISDIR(s.st_mode);
	return 0;
}

int sandbox_bind_rw(struct sandbox *sb, const char *path, const char *host_src)
{
	struct sb_step *st;
	struct stat s;

	if (lstat(host_src, &s) < 0)
		return -errno;
	if (!S_ISREG(s.st_mode))
		return -EINVAL;
	st = add(sb, SB_BIND_RW, path);
	if (!st)
		return -E2BIG;
	st->src = keep(sb, host_src);
	return 0;
}

void sandbox_mknod(struct sandbox *sb, const char *path, mode_t mode, dev_t dev, bool owned)
{
	struct sb_step *st = add(sb, SB_MKNOD, path);

	if (st) {
		st->mode = mode;
		st->dev = dev;
		st->owned = owned;
	}
}

void sandbox_mirror(struct sandbox *sb, const char *name)
{
	char host[64], target[4096];
	struct stat s;
	ssize_t n;

	snprintf(host, sizeof(host), "/%s", name);
	if (lstat(host, &s) < 0)
		return;
	if (S_ISLNK(s.st_mode)) {
		n = readlink(host, target, sizeof(target) - 1);
		if (n <= 0)
			return;
		target[n] = '\0';
		sandbox_symlink(sb, name, target);
	} else if (S_ISDIR(s.st_mode)) {
		(void)sandbox_bind(sb, name, host);
	}
}

int sandbox_pass_fd(struct sandbox *sb, int fd)
{
	if (sb->nfds >= SB_FDS_MAX || fd < 0)
		return -E2BIG;
	sb->fds[sb->nfds] = fd;
	return 3 + sb->nfds++;
}

/* ---- in the child: async-signal-safe from here on ---- */

static int fds_setup(const struct sandbox *sb)
{
	int high[SB_FDS_MAX + 2];
	int n = 0;

	/* Move every planned fd above the range they will take, then renumber. */
	if ((high[n++] = fcntl(sb->stdin_fd, F_DUPFD, SB_FD_HIGH)) < 0 ||
	    (high[n++] = fcntl(sb->out_fd, F_DUPFD, SB_FD_HIGH)) < 0)
		return errno;
	for (int i = 0; i < sb->nfds; i++)
		if ((high[n++] = fcntl(sb->fds[i], F_DUPFD, SB_FD_HIGH)) < 0)
			return errno;
	if (dup2(high[0], 0) < 0 || dup2(high[1], 1) < 0 || dup2(high[1], 2) < 0)
		return errno;
	for (int i = 0; i < sb->nfds; i++)
		if (dup2(high[2 + i], 3 + i) < 0)
			return errno;
	/* dup2 leaves the new fds without FD_CLOEXEC; everything else goes. */
	if (syscall(SYS_close_range, 3 + sb->nfds, ~0U, 0) < 0)
		return errno;
	return 0;
}

static int touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int step_run(const struct sandbox *sb, const struct sb_step *st)
{
	const unsigned long ro = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;

	switch (st->kind) {
	case SB_MKDIR:
		return mkdir(st->path, st->mode) < 0 && errno != EEXIST ? errno : 0;
	case SB_SYMLINK:
		return symlink(st->src, st->path) < 0 ? errno : 0;
	case SB_BIND:
		if (st->is_dir ? mkdir(st->path, 0755) < 0 : touch(st->path) != 0)
			return errno;
		if (mount(st->src, st->path, NULL, MS_BIND | MS_REC, NULL) < 0)
			return errno;
		return mount(NULL, st->path, NULL, ro, NULL) < 0 ? errno : 0;
	case SB_BIND_RW:
		if (touch(st->path) != 0)
			return errno;
		if (mount(st->src, st->path, NULL, MS_BIND, NULL) < 0)
			return errno;
		return mount(NULL, st->path, NULL,
			     MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0
			       ? errno
			       : 0;
	case SB_MKNOD:
		if (mknod(st->path, S_IFCHR | (st->mode & 07777), st->dev) < 0)
			return errno;
		if (chmod(st->path, st->mode & 07777) < 0)
			return errno;
		return st->owned && chown(st->path, sb->uid, sb->gid) < 0 ? errno : 0;
	}
	return EINVAL;
}

int sandbox_exec(const struct sandbox *sb, const char *path, char *const argv[], char *const envp[],
		 const char **stage)
{
	int e;

#define FAIL(what)               \
	do {                     \
		*stage = (what); \
		return errno;    \
	} while (0)
	*stage = "planning the sandbox";
	if (sb->overflow)
		return E2BIG;
	*stage = "setting up fds";
	if ((e = fds_setup(sb)) != 0)
		return e;
	/* A mount namespace of its own in which nothing propagates back to the host. */
	if (unshare(CLONE_NEWNS) < 0)
		FAIL("unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		FAIL("making mounts private");
	if (mount("mvmfs-vmm", sb->root, "tmpfs", MS_NOSUID | MS_NOEXEC, SB_TMPFS_OPTS) < 0)
		FAIL("mounting the root tmpfs");
	if (chdir(sb->root) < 0)
		FAIL("chdir to the new root");
	for (int i = 0; i < sb->nsteps; i++) {
		e = step_run(sb, &sb->steps[i]);
		if (e) {
			*stage = sb->steps[i].path;
			return e;
		}
	}
	/* pivot_root(".", "."): the old root ends up on top of the new one; detach it. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		FAIL("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		FAIL("detaching the old root");
	if (chdir("/") < 0)
		FAIL("chdir /");
	if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) <
	    0)
		FAIL("making the root read-only");
	for (size_t i = 0; i < ELEMENTSOF(sb_rlimits); i++) {
		struct rlimit rl = {sb_rlimits[i].value, sb_rlimits[i].value};

		if (setrlimit(sb_rlimits[i].res, &rl) < 0)
			FAIL("setrlimit");
	}
	/* Empty bounding set (needs CAP_SETPCAP, so before the uid changes). */
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			FAIL("dropping the capability bounding set");
	/* Raw system calls: the forked child is single-threaded and must not take glibc's
	 * set*id broadcast path. Leaving uid 0 for good clears every capability. */
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		FAIL("setgroups");
	if (syscall(SYS_setresgid, sb->gid, sb->gid, sb->gid) < 0)
		FAIL("setresgid");
	if (syscall(SYS_setresuid, sb->uid, sb->uid, sb->uid) < 0)
		FAIL("setresuid");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		FAIL("no_new_privs");
	execve(path, argv, envp);
	FAIL("exec");
#undef FAIL
}
