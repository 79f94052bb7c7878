/* SPDX-License-Identifier: MIT */
/*
 * mkdir vms/NAME defines a VM, rmdir vms/NAME destroys it (configfs). Both replies are deferred
 * to the runtime's done callback: defining a VM may wait for the address database and
 * destroying one tears down host resources, and no FUSE worker thread waits for either.
 * mkdir/rmdir vms/NAME/volumes/VOL create and destroy a volume synchronously: its disk is made
 * by mkfs.ext4 on an empty sparse file (bounded, tens of milliseconds).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "macro.h"
#include "parse.h"

struct vmdir_req {
	struct fs *fs;
	fuse_req_t req;
	char name[VM_NAME_MAX + 1];
};

static struct vmdir_req *vmdir_req_new(struct fs *fs, fuse_req_t req, const char *name)
{
	struct vmdir_req *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fs = fs;
	c->req = req;
	strncpy(c->name, name, VM_NAME_MAX);
	return c;
}

/* Runtime thread, no runtime lock held. */
static void mkdir_done(void *ud, int result)
{
	_cleanup_free_ struct vmdir_req *c = ud;
	struct fs *fs = c->fs;
	struct fuse_entry_param e = {.entry_timeout = FS_TIMEOUT_VMDIR,
				     .attr_timeout = FS_TIMEOUT_STATIC};
	struct node_info ni = {.kind = NODE_VM_DIR};
	struct vm *vm;
	int r = result;

	if (r >= 0) {
		vm = runtime_vm_get(fs->rt, c->name);
		r = vm ? node_table_get(fs->nodes, NODE_VM_DIR, vm, NULL, -1, &e.ino, &e.generation)
		       : -ENOENT;
		vm_unref(vm);
	}
	if (r < 0) {
		if (fs_log_ratelimit())
			log_info_errno(r, "mkdir '%s' failed", c->name);
		fuse_reply_err(c->req, -r);
		return;
	}
	log_info("VM '%s' defined", c->name);
	fs_fill_stat(fs, e.ino, &ni, &e.attr);
	if (fuse_reply_entry(c->req, &e) < 0)
		node_table_forget(fs->nodes, e.ino, 1);
}

static void rmdir_done(void *ud, int result)
{
	_cleanup_free_ struct vmdir_req *c = ud;

	if (result < 0) {
		if (fs_log_ratelimit())
			log_info_errno(result, "rmdir '%s' failed", c->name);
	} else
		log_info("VM '%s' destroyed", c->name);
	fuse_reply_err(c->req, result < 0 ? -result : 0);
}

/* The volumes/ directory parent resolves to, with a VM reference in *ret_vm; -EPERM when it is
 * something else, -ENOENT when it is gone. */
static int volumes_parent(struct fs *fs, fuse_ino_t parent, struct vm **ret_vm)
{
	struct node_info ni = {};
	int r;

	if (parent < FS_INO_FIRST)
		return -EPERM;
	r = fs_resolve(fs, parent, &ni);
	if (r < 0)
		return r;
	if (ni.kind != NODE_VOLS) {
		vm_unref(ni.vm);
		return -EPERM;
	}
	*ret_vm = ni.vm;
	return 0;
}

/* One line per volume mkdir/rmdir: done, or why not (rate-limited; a missing one is no news). */
static void log_volume_op(struct vm *vm, const char *name, const char *op, const char *done, int r,
			  const struct err *err)
{
	if (r >= 0)
		log_info("VM '%s': volume '%s' %s", vm_name(vm), name, done);
	else if (r != -ENOENT && fs_log_ratelimit())
		log_info_errno(r, "%s '%s/volumes/%s' failed%s%s", op, vm_name(vm), name,
			       err->msg[0] ? ": " : "", err->msg);
}

/* mkdir volumes/VOL: answered here, with the new directory's entry. */
static int volume_mkdir(struct fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = {.entry_timeout = FS_TIMEOUT_VMDIR,
				     .attr_timeout = FS_TIMEOUT_STATIC};
	struct node_info ni = {.kind = NODE_VOL_DIR};
	struct err err = {};
	struct vm *vm = NULL;
	int r;

	r = volumes_parent(fs, parent, &vm);
	if (r < 0)
		return r;
	if (!volume_name_is_valid(name))
		r = -EINVAL;
	else
		r = vm_volume_create(vm, name, &err);
	if (r >= 0)
		r = node_table_get(fs->nodes, NODE_VOL_DIR, vm, name, -1, &e.ino, &e.generation);
	log_volume_op(vm, name, "mkdir", "created", r, &err);
	vm_unref(vm);
	if (r < 0)
		return r;
	fs_fill_stat(fs, e.ino, &ni, &e.attr);
	if (fuse_reply_entry(req, &e) < 0)
		node_table_forget(fs->nodes, e.ino, 1);
	return 0;
}

static int volume_rmdir(struct fs *fs, fuse_ino_t parent, const char *name)
{
	struct err err = {};
	struct vm *vm = NULL;
	int r;

	r = volumes_parent(fs, parent, &vm);
	if (r < 0)
		return r;
	if (!volume_name_is_valid(name))
		r = -ENOENT;
	else
		r = vm_volume_destroy(vm, name, &err);
	log_volume_op(vm, name, "rmdir", "destroyed", r, &err);
	vm_unref(vm);
	return r;
}

static int do_mkdir(struct fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vmdir_req *c;
	int r;

	if (!atomic_load(&fs->ready))
		return -EPERM;
	if (parent != FS_INO_VMS)
		return volume_mkdir(fs, req, parent, name); /* replied when >= 0 */
	if (!vm_name_is_valid(name))
		return -EINVAL;
	c = vmdir_req_new(fs, req, name);
	if (!c)
		return -ENOMEM;
	r = runtime_vm_create(fs->rt, name, mkdir_done, c);
	if (r < 0)
		free(c);
	return r;
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	int r;

	(void)mode;
	r = do_mkdir(req_fs(req), req, parent, name);
	if (r < 0)
		fuse_reply_err(req, -r);
	/* else: mkdir_done replies */
}

static int do_rmdir(struct fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vmdir_req *c;
	int r;

	if (!atomic_load(&fs->ready))
		return -EPERM;
	if (parent != FS_INO_VMS) {
		r = volume_rmdir(fs, parent, name);
		if (r >= 0)
			fuse_reply_err(req, 0);
		return r;
	}
	if (!vm_name_is_valid(name))
		return -ENOENT;
	c = vmdir_req_new(fs, req, name);
	if (!c)
		return -ENOMEM;
	r = runtime_vm_destroy(fs->rt, name, rmdir_done, c);
	if (r < 0)
		free(c);
	return r;
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r;

	r = do_rmdir(req_fs(req), req, parent, name);
	if (r < 0)
		fuse_reply_err(req, -r);
}
