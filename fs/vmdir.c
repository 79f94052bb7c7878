/* SPDX-License-Identifier: MIT */
/*
 * mkdir vms/NAME defines a VM, rmdir vms/NAME destroys it (configfs). Both replies are deferred
 * to the runtime's done callback: defining a VM may wait for the address database and
 * destroying one tears down host resources, and no FUSE worker thread waits for either.
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
		r = vm ? node_table_get(fs->nodes, NODE_VM_DIR, vm, -1, &e.ino, &e.generation)
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

static int do_mkdir(struct fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vmdir_req *c;
	int r;

	if (parent != FS_INO_VMS || !atomic_load(&fs->ready))
		return -EPERM;
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

	if (parent != FS_INO_VMS || !atomic_load(&fs->ready))
		return -EPERM;
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
