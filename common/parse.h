/* SPDX-License-Identifier: MIT */
/* Strict, full-string parsers for untrusted text. All return 0 or -EINVAL/-ERANGE.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int parse_u64(const char *s, uint64_t *ret);
int parse_u32(const char *s, uint32_t *ret);
/* "512", "64K", "2M", "10G" (binary units) -> bytes. */
int parse_size(const char *s, uint64_t *ret);
int parse_bool(const char *s, bool *ret);

/* A control-file write: at most max bytes, no NULs, one trailing '\n' allowed, no other control
 * characters. Copies into buf (size >= len + 1) without the newline. */
int parse_control_value(const char *data, size_t len, size_t max, char *buf, size_t bufsize);

/* A VM name: 1..36 of [A-Za-z0-9-], not starting with '-'. */
bool vm_name_is_valid(const char *name);
#define VM_NAME_MAX 36
/* The id of a VMM on the host (jail, QEMU dir, netns, cgroup): a VM's name, or the id of the
 * daemon's own template build (longer than any VM name, so no VM can take it). 1..64 of
 * [A-Za-z0-9-], not starting with '-' (the jailer's --id rule). */
bool vmm_id_is_valid(const char *name);
#define VMM_ID_MAX 64
