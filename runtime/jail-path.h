/* SPDX-License-Identifier: MIT */
/*
 * runtime/jail-path.h: opening files and Unix sockets inside a VM's jail without following
 * anything the VM's uid controls. Part of a jail path (the jail root of Firecracker, its run/)
 * belongs to that uid, which a compromised VMM may swap for a symlink to another VM's socket
 * or to a host file. Every path here is resolved with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): no symlink anywhere in it is
 * followed, and the object found is type- and owner-checked through its fd before use.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* openat2 with the rules above, relative to dirfd (AT_FDCWD and an absolute path: from "/").
 * -ELOOP when a component is a symlink, -EXDEV when it would leave dirfd or cross a mount. */
int jail_openat(int dirfd, const char *path, int flags, mode_t mode);

/* Open the socket file at path as an O_PATH fd with jail_openat and check it: a socket, owned
 * by root or by the owner of its directory (the jail's uid: never another VM's). Writes
 * "/proc/self/fd/N" into proc_path: connecting to that name reaches exactly this inode, with
 * nothing resolved again. Returns the fd (the caller closes it after connecting) or -errno. */
int jail_socket_open(const char *path, char *proc_path, size_t size);

/* Connect a SOCK_STREAM Unix socket to the socket file at path, opened with jail_openat as an
 * O_PATH fd and connected through /proc/self/fd/N (so nothing is resolved again). The socket
 * file must be a socket owned by root or by the owner of its directory (the jail's uid: never
 * another VM's). Waits at most timeout_ms for a full listen backlog. Returns a blocking,
 * close-on-exec socket, or -errno (-ENOTSOCK, -EPERM owner mismatch, -ELOOP symlink,
 * -ETIMEDOUT, the connect error). */
int jail_connect(const char *path, int timeout_ms);
