/* SPDX-License-Identifier: MIT */
/* runtime/qemu: pure pieces of the QEMU backend, exposed for tests. Private to runtime/. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* A VM's host dir is <state dir>/QEMU_DIR/<name>; QEMU runs with the only environment entry
 * QEMU_ENV_MARK<that dir, real path>, which proves a process ours wherever its dir went. */
#define QEMU_DIR "qemu"
#define QEMU_ENV_MARK "MVMFS_QEMU_DIR="

/* One cgroup file to write: dir indexes the dirs cgroup_dirs() returned. */
struct qemu_cg_setting {
	int dir;
	const char *file;
	char value[48];
};

/* The limits for a QEMU VM (Firecracker's: vcpus CPU quota, memory without swap; the memory
 * limit adds QEMU's own overhead), in write order. Returns the count, -EINVAL for an unknown
 * version, -E2BIG when max is too small. */
int qemu_cgroup_settings(int version, bool memsw, int ndirs, unsigned vcpus, unsigned mem_mib,
			 struct qemu_cg_setting *out, size_t max);
