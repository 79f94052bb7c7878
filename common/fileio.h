/* SPDX-License-Identifier: MIT */
/* Small file helpers: bounded reads, atomic writes (temp + fsync + rename), mkdir -p. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Read at most max bytes of path into a NUL-terminated heap buffer. -EFBIG if larger. */
int read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_len);
/* Write data to path atomically: path.tmp.PID, fsync, rename, fsync the directory. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* mkdir -p with mode for the created components. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf that never crosses into another filesystem (for jail and state dirs). */
int rm_rf(const char *path);
/* rm_rf of name under dir_fd (never following a symlink, never crossing into another mount);
 * missing is not an error; the first error is returned, the rest is still removed. */
int rm_rf_at(int dir_fd, const char *name);
/* PATH when the environment has none (or an empty one). */
#define EXEC_PATH_DEFAULT "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* The executable name (itself when it holds a '/', else the first in $PATH) into buf.
 * -ENOENT when there is none. */
int find_executable(const char *name, char *buf, size_t size);
/* Write a short string to a file (sysfs/cgroup/proc style), no O_CREAT. */
int write_string_file(const char *path, const char *s);
