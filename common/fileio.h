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
/* Write a short string to a file (sysfs/cgroup/proc style), no O_CREAT. */
int write_string_file(const char *path, const char *s);
