/* SPDX-License-Identifier: MIT */
/* Attribute tables (sysfs device_attribute): what each file is, its mode, show and store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "internal.h"
#include "log.h"

static int show_vm(struct vm *vm, int attr, char **ret, size_t *ret_len)
{
	return vm_show(vm, (enum vm_attr)attr, ret, ret_len);
}

#define VM_SHOW(fn, a)                                                                            \
	static int fn(struct fs *fs, struct vm *vm, const char *vol, char **ret, size_t *ret_len) \
	{                                                                                         \
		(void)fs, (void)vol;                                                              \
		return show_vm(vm, a, ret, ret_len);                                              \
	}

VM_SHOW(show_state, VM_ATTR_STATE)
VM_SHOW(show_image, VM_ATTR_IMAGE)
VM_SHOW(show_ip, VM_ATTR_IP)
VM_SHOW(show_health, VM_ATTR_HEALTH)
VM_SHOW(show_error, VM_ATTR_ERROR)
VM_SHOW(show_log, VM_ATTR_LOG)
VM_SHOW(show_config, VM_ATTR_CONFIG)
VM_SHOW(show_pid, VM_ATTR_PID)
VM_SHOW(show_metrics, VM_ATTR_METRICS)

static int show_disk_usage(struct fs *fs, struct vm *vm, const char *vol, char **ret,
			   size_t *ret_len)
{
	(void)fs, (void)vol;
	return vm_disk_usage_show(vm, ret, ret_len);
}

static int store_image(struct fs *fs, struct vm *vm, const char *vol, const char *value)
{
	struct err err = {};
	int r;

	(void)fs, (void)vol;
	r = vm_set_image(vm, value, &err);
	if (r < 0)
		log_debug_errno(r, "%s: image '%s' refused: %s", vm_name(vm), value,
				err.msg[0] ? err.msg : "-");
	return r < 0 ? r : 0;
}

/* Order is the readdir order. state's store is the deferred path in state.c. */
/* clang-format off */
const struct fs_attr fs_vm_attrs[] = {
	{ "state",   0644, VM_ATTR_STATE,   true,  true,  show_state,   NULL },
	{ "image",   0644, VM_ATTR_IMAGE,   false, false, show_image,   store_image },
	{ "ip",      0444, VM_ATTR_IP,      false, false, show_ip,      NULL },
	{ "health",  0444, VM_ATTR_HEALTH,  true,  false, show_health,  NULL },
	{ "error",   0444, VM_ATTR_ERROR,   false, false, show_error,   NULL },
	{ "log",     0444, VM_ATTR_LOG,     false, false, show_log,     NULL },
	{ "config",  0444, VM_ATTR_CONFIG,  false, false, show_config,  NULL },
	{ "pid",     0444, VM_ATTR_PID,     false, false, show_pid,     NULL },
	{ "metrics", 0444, VM_ATTR_METRICS, false, false, show_metrics, NULL },
	{ "disk-usage", 0444, -1,           false, false, show_disk_usage, NULL },
};
/* clang-format on */
const size_t fs_vm_attrs_count = ELEMENTSOF(fs_vm_attrs);

static int show_vol(struct vm *vm, const char *vol, enum volume_attr a, char **ret, size_t *ret_len)
{
	return vm_volume_show(vm, vol, a, ret, ret_len);
}

static int store_vol(struct vm *vm, const char *vol, enum volume_attr a, const char *value)
{
	struct err err = {};
	int r;

	r = vm_volume_store(vm, vol, a, value, &err);
	if (r < 0)
		log_debug_errno(r, "%s: volume '%s': '%s' refused: %s", vm_name(vm), vol, value,
				err.msg[0] ? err.msg : "-");
	return r < 0 ? r : 0;
}

#define VOL_FILE(show_fn, store_fn, a)                                                        \
	static int show_fn(struct fs *fs, struct vm *vm, const char *vol, char **ret,         \
			   size_t *ret_len)                                                   \
	{                                                                                     \
		(void)fs;                                                                     \
		return show_vol(vm, vol, a, ret, ret_len);                                    \
	}                                                                                     \
	static int store_fn(struct fs *fs, struct vm *vm, const char *vol, const char *value) \
	{                                                                                     \
		(void)fs;                                                                     \
		return store_vol(vm, vol, a, value);                                          \
	}

VOL_FILE(show_vol_path, store_vol_path, VOLUME_ATTR_PATH)
VOL_FILE(show_vol_size, store_vol_size, VOLUME_ATTR_SIZE)

/* The files of volumes/VOL, in readdir order. */
/* clang-format off */
const struct fs_attr fs_vol_attrs[] = {
	{ "path", 0644, -1, false, false, show_vol_path, store_vol_path },
	{ "size", 0644, -1, false, false, show_vol_size, store_vol_size },
};
/* clang-format on */
const size_t fs_vol_attrs_count = ELEMENTSOF(fs_vol_attrs);

static int show_version(struct fs *fs, struct vm *vm, const char *vol, char **ret, size_t *ret_len)
{
	char *s = NULL;
	int n;

	(void)vm, (void)vol;
	n = asprintf(&s, "mvmfs %s %s\n", PACKAGE_VERSION, fs->vmm_name);
	if (n < 0)
		return -ENOMEM;
	*ret = s;
	*ret_len = (size_t)n;
	return 0;
}

/* The runtime's node metrics, then the open limits' (open.c). */
static int show_node_metrics(struct fs *fs, struct vm *vm, const char *vol, char **ret,
			     size_t *ret_len)
{
	struct fs_open_stats st;
	char *rt_text = NULL, *out = NULL;
	size_t rt_len = 0;
	int r, n;

	(void)vm, (void)vol;
	r = runtime_metrics(fs->rt, &rt_text, &rt_len);
	if (r < 0)
		return r;
	fs_open_stats(fs, &st);
	n = asprintf(
		&out,
		"%.*s"
		"# HELP mvmfs_fs_open_files Files and directories of the mount open now, by "
		"opener.\n"
		"# TYPE mvmfs_fs_open_files gauge\n"
		"mvmfs_fs_open_files{opener=\"root\"} %u\n"
		"mvmfs_fs_open_files{opener=\"others\"} %u\n"
		"# HELP mvmfs_fs_buffer_bytes Read buffers held for openers other than root.\n"
		"# TYPE mvmfs_fs_buffer_bytes gauge\n"
		"mvmfs_fs_buffer_bytes{opener=\"others\"} %llu\n"
		"# HELP mvmfs_fs_refused_total Opens and reads refused by the per-uid limits.\n"
		"# TYPE mvmfs_fs_refused_total counter\n"
		"mvmfs_fs_refused_total{errno=\"EMFILE\"} %llu\n"
		"mvmfs_fs_refused_total{errno=\"ENFILE\"} %llu\n"
		"mvmfs_fs_refused_total{errno=\"ENOMEM\"} %llu\n",
		(int)rt_len, rt_text, st.handles - st.handles_others, st.handles_others,
		(unsigned long long)st.bytes_others, (unsigned long long)st.refused_emfile,
		(unsigned long long)st.refused_enfile, (unsigned long long)st.refused_enomem);
	free(rt_text);
	if (n < 0)
		return -ENOMEM;
	*ret = out;
	*ret_len = (size_t)n;
	return 0;
}

/* Root files; their inode numbers are fixed (FS_INO_VERSION + index). */
/* clang-format off */
const struct fs_attr fs_root_attrs[] = {
	{ "version", 0444, -1, false, false, show_version,      NULL },
	{ "metrics", 0444, -1, false, false, show_node_metrics, NULL },
};
/* clang-format on */
const size_t fs_root_attrs_count = ELEMENTSOF(fs_root_attrs);

int fs_attr_find(const struct fs_attr *table, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(table[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}
