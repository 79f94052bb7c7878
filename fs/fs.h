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
#include <stdint.h>

#include "err.h"

struct fs;
struct runtime;

/* What openers of the mount may hold (0 = the default). The mount is allow_other, so every local
 * user can open files; uid 0 is never limited by what other uids hold. */
struct fs_limits {
	unsigned max_handles;  /* open files and directories in all, default 65536 */
	unsigned root_handles; /* of max_handles, only for uid 0, default 1024 (at most half) */
	unsigned max_handles_per_uid; /* each uid but 0, default 1024 */
	uint64_t max_buffer_per_uid;  /* render/listing memory held per uid but 0, default 16 MiB */
	uint64_t max_buffer_others;   /* held by all uids but 0 together, default 64 MiB */
};

struct fs_options {
	const char *mountpoint;
	const char *vmm_name; /* shown in the version file ("firecracker", "qemu", "fake") */
	unsigned max_threads; /* FUSE worker threads, default 16 */
	struct fs_limits limits;
	bool debug; /* libfuse request tracing */
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

/* What the openers of the mount hold now: files and directories in all and those of uids
 * other than 0, with their buffer bytes. Releases reach the daemon after close(2) returns. */
struct fs_open_stats {
	unsigned handles, handles_others;
	uint64_t bytes_others;
	uint64_t refused_emfile, refused_enfile, refused_enomem; /* since the start */
};
void fs_open_stats(struct fs *fs, struct fs_open_stats *ret);

/* Before mounting: if mountpoint is a dead FUSE mount (ENOTCONN, a crashed daemon), detach it.
 * Returns 1 when a stale mount was removed, 0 when there was none, -EBUSY when a live mvmfs is
 * mounted there, another negative errno on failure. */
int fs_cleanup_stale_mount(const char *mountpoint, struct err *err);
