/* SPDX-License-Identifier: MIT */
/*
 * runtime/sandbox.h: the confinement a VMM child enters between fork and exec (the QEMU
 * backend; Firecracker gets the same from its jailer). Planned in the parent (allocations
 * allowed), entered in the forked child with async-signal-safe system calls only:
 *  - fds: only the planned ones survive, as 0 (stdin), 1+2 (output) and 3, 4, ... in order;
 *  - a private mount namespace whose root is a small read-only tmpfs on the (empty) host
 *    directory root, holding only what the plan puts there: read-only bind mounts of host
 *    files and directories, symlinks, device nodes owned by the VM's uid; pivot_root into it
 *    and the old root detached;
 *  - rlimits, no supplementary groups, the VM's uid/gid (which drops every capability), an
 *    empty capability bounding set and no_new_privs; then execve with the planned environment.
 */
#pragma once

#include <stdbool.h>
#include <sys/resource.h>
#include <sys/types.h>

#define SB_STEPS_MAX 48
#define SB_FDS_MAX 40 /* QEMU: 6, plus 2 per volume (16) */
#define SB_STRS_MAX 64

enum sb_step_kind {
	SB_MKDIR,   /* path (mode) */
	SB_SYMLINK, /* path -> src */
	SB_BIND,    /* host src (file or dir) read-only at path */
	SB_MKNOD,   /* character device dev at path (mode), owned by the VM's uid:gid if owned */
	SB_BIND_RW, /* host regular file src writable at path (nosuid, nodev, noexec) */
};

struct sb_step {
	enum sb_step_kind kind;
	const char *path; /* relative to the new root */
	const char *src;
	mode_t mode;
	dev_t dev;
	bool owned;
	bool is_dir;
};

struct sandbox {
	char root[4096]; /* host dir the tmpfs root is mounted on (in the child's namespace) */
	struct sb_step steps[SB_STEPS_MAX];
	int nsteps;
	int fds[SB_FDS_MAX]; /* become 3, 4, ... in the child */
	int nfds;
	int stdin_fd, out_fd; /* -EBADF: /dev/null is not provided, so the plan must set them */
	uid_t uid;
	gid_t gid;
	char *strs[SB_STRS_MAX]; /* owned strings, freed by sandbox_done */
	int nstrs;
	bool overflow; /* a plan call did not fit: sandbox_enter refuses */
};

void sandbox_init(struct sandbox *sb, const char *root, uid_t uid, gid_t gid);
void sandbox_done(struct sandbox *sb);
/* Plan steps. Paths are relative to the new root, without a leading '/'; parent directories
 * must have been planned before (sandbox_add_parents plans them). Strings are copied. */
void sandbox_mkdir(struct sandbox *sb, const char *path, mode_t mode);
void sandbox_add_parents(struct sandbox *sb, const char *path);
void sandbox_symlink(struct sandbox *sb, const char *path, const char *target);
int sandbox_bind(struct sandbox *sb, const char *path, const char *host_src);
/* A host regular file bound writable (the QEMU guest's RAM file). */
int sandbox_bind_rw(struct sandbox *sb, const char *path, const char *host_src);
void sandbox_mknod(struct sandbox *sb, const char *path, mode_t mode, dev_t dev, bool owned);
/* Mirror a top-level host entry (/lib, /lib64, /bin, ...): the same symlink, or a read-only
 * bind of the directory; nothing when the host has none. */
void sandbox_mirror(struct sandbox *sb, const char *name);
/* An fd the child keeps; returns the number it will have there (3, 4, ...), -E2BIG. */
int sandbox_pass_fd(struct sandbox *sb, int fd);

/* In the forked child: enter the sandbox and exec path (a path in the new root). Returns only
 * on failure, with *stage naming the step that failed and the errno as the return value. */
int sandbox_exec(const struct sandbox *sb, const char *path, char *const argv[], char *const envp[],
		 const char **stage);
