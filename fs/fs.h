/* SPDX-License-Identifier: MIT */
/*
 * fs: the FUSE control tree of docs/contract.md (libfuse 3.14 low-level API).
 * Only daemon/ (and the fs tests) include this header.
 *
 * Lifetime: fs_new() creates the session and mounts it (vms/ hidden), fs_set_ready() shows
 * vms/, fs_run() serves requests until a signal or fs_exit(), fs_unmount() detaches the mount
 * and closes the FUSE fd, fs_free() destroys the session. Call runtime_shutdown() after fs_run()
 * and before fs_unmount(): a done callback replying after the fd is closed could write into an
 * unrelated file that reused the fd number.
 */
#pragma once

#include <stdbool.h>

#include "err.h"

struct fs;
struct runtime;

struct fs_options {
	const char *mountpoint;
	const char *vmm_name; /* shown in the version file ("firecracker", "qemu", "fake") */
	unsigned max_threads; /* FUSE worker threads, default 16 */
	unsigned max_handles; /* open files limit, default 65536 */
	bool debug;	      /* libfuse request tracing */
};

/* Create the session and mount it at opts->mountpoint. Registers the runtime notify callback.
 * Installs libfuse's SIGINT/SIGTERM/SIGHUP handlers. */
int fs_new(struct runtime *rt, const struct fs_options *opts, struct fs **ret, struct err *err);
/* The daemon is ready: vms/ appears. */
void fs_set_ready(struct fs *fs);
/* Serve until a signal or fs_exit(). Returns 0 or a negative errno. */
int fs_run(struct fs *fs);
/* Ask fs_run() to return (thread-safe, async-signal-safe apart from libfuse internals). */
void fs_exit(struct fs *fs);
/* Unmount (idempotent); the session stays allocated. */
void fs_unmount(struct fs *fs);
/* Detach from the runtime, destroy the session, free. Accepts NULL. */
struct fs *fs_free(struct fs *fs);

/* Before mounting: if mountpoint is a dead FUSE mount (ENOTCONN, a crashed daemon), detach it.
 * Returns 1 when a stale mount was removed, 0 when there was none, -EBUSY when a live mvmfs is
 * mounted there, another negative errno on failure. */
int fs_cleanup_stale_mount(const char *mountpoint, struct err *err);
