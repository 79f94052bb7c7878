/* SPDX-License-Identifier: MIT */
/* daemon: the state dir lock (one daemon per state dir) and the node identity kept there. */
#pragma once

#include <stddef.h>

#include "err.h"

#define NODE_ID_LEN 8

/* Create state_dir if needed and lock STATE_DIR/daemon.lock for the daemon's life (the fd is
 * close-on-exec; closing it, or dying, releases the lock). -EBUSY with a message naming the
 * holder when another daemon has it. */
int node_lock(const char *state_dir, const char *mountpoint, int *ret_fd, struct err *err);
/* The same for the Firecracker jail base (--chroot-base): CHROOT_BASE/.mvmfs-daemon.lock. */
int node_lock_jails(const char *chroot_base, const char *mountpoint, int *ret_fd, struct err *err);
/* STATE_DIR/node-id: read it, or generate and keep it on the first start (call under the lock).
 * -EINVAL when the file is corrupt (never replaced silently). */
int node_id_load(const char *state_dir, char ret[NODE_ID_LEN + 1], struct err *err);
/* Strict: exactly NODE_ID_LEN lowercase hex digits, one trailing newline allowed. */
int node_id_parse(const char *s, size_t len, char ret[NODE_ID_LEN + 1]);
