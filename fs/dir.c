/* SPDX-License-Identifier: MIT */
/* Names and directories: lookup/forget/getattr/setattr, readdir, and the operations the tree
 * refuses. Unsupported namespace operations (create, mknod, symlink, link, unlink, rename, mkdir
 * outside vms/ and vms/NAME/volumes/, rmdir of anything but vms/NAME and
 * vms/NAME/volumes/VOL) fail with EPERM, as the VFS and configfs do for operations a directory
 * does not implement. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "macro.h"

bool fs_vm_is_live(struct fs *fs, struct vm *vm)
{
	struct vm *cur = runtime_vm_get(fs->rt, vm_name(vm));
	bool live = cur == vm;

	vm_unref(cur);
	return live;
}

bool fs_file_is_live(struct fs *fs, struct vm *vm, const char *vol)
{
	return fs_vm_is_live(fs, vm) && (!vol || !vol[0] || vm_volume_exists(vm, vol));
}

int fs_resolve(struct fs *fs, fuse_ino_t ino, struct node_info *ret)
{
	int r;

	*ret = (struct node_info){.generation = 1};
	switch (ino) {
	case FS_INO_ROOT:
		ret->kind = NODE_ROOT;
		return 0;
	case FS_INO_VMS:
		if (!atomic_load(&fs->ready))
			return -ENOENT;
		ret->kind = NODE_VMS;
		return 0;
	case FS_INO_VERSION:
	case FS_INO_METRICS:
		ret->kind = NODE_ROOT_ATTR;
		ret->attr = &fs_root_attrs[ino - FS_INO_VERSION];
		return 0;
	default:
		break;
	}
	r = node_table_resolve(fs->nodes, ino, ret);
	if (r < 0)
		return r;
	if (!fs_file_is_live(fs, ret->vm, ret->vol)) {
		ret->vm = vm_unref(ret->vm);
		return -ENOENT;
	}
	return 0;
}

void fs_fill_stat(struct fs *fs, fuse_ino_t ino, const struct node_info *ni, struct stat *st)
{
	*st = (struct stat){.st_ino = ino, .st_uid = 0, .st_gid = 0};
	if (ni->attr) {
		st->st_mode = S_IFREG | ni->attr->mode;
		st->st_nlink = 1;
		st->st_size = 4096; /* a hint, as sysfs: reads go to EOF (direct_io) */
		st->st_blksize = 4096;
	} else {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		st->st_blksize = 4096;
	}
	st->st_atim = st->st_mtim = st->st_ctim = fs->start_time;
}

/* A child of the mount's root: vms/ (once ready) or a root file; inodes of the root's are fixed. */
static int lookup_in_root(struct fs *fs, const char *name, struct node_info *child, fuse_ino_t *ino,
			  struct fuse_entry_param *e)
{
	int i;

	if (strcmp(name, "vms") == 0) {
		if (!atomic_load(&fs->ready))
			return -ENOENT;
		*ino = FS_INO_VMS;
		child->kind = NODE_VMS;
		/* Not cached: after a crash the kernel would otherwise keep showing vms/ of the
		 * dead mount, and "vms/ exists" is how users and scripts see readiness. */
		e->entry_timeout = FS_TIMEOUT_NONE;
		return 0;
	}
	i = fs_attr_find(fs_root_attrs, fs_root_attrs_count, name);
	if (i < 0)
		return -ENOENT;
	*ino = FS_INO_VERSION + (fuse_ino_t)i;
	child->kind = NODE_ROOT_ATTR;
	child->attr = &fs_root_attrs[i];
	return 0;
}

/* Fill e for a child and take its lookup reference. One case per kind of directory. */
static int lookup_child(struct fs *fs, const struct node_info *parent, fuse_ino_t parent_ino,
			const char *name, struct fuse_entry_param *e)
{
	struct node_info child = {};
	fuse_ino_t ino;
	uint64_t gen = 1;
	int r, i;

	*e = (struct fuse_entry_param){.attr_timeout = FS_TIMEOUT_STATIC,
				       .entry_timeout = FS_TIMEOUT_STATIC};
	switch (parent->kind) {
	case NODE_ROOT:
		r = lookup_in_root(fs, name, &child, &ino, e);
		if (r < 0)
			return r;
		break;
	case NODE_VMS: {
		struct vm *vm = runtime_vm_get(fs->rt, name);
		if (!vm)
			return -ENOENT;
		r = node_table_get(fs->nodes, NODE_VM_DIR, vm, NULL, -1, &ino, &gen);
		vm_unref(vm);
		if (r < 0)
			return r;
		child.kind = NODE_VM_DIR;
		e->entry_timeout = FS_TIMEOUT_VMDIR;
		break;
	}
	case NODE_VM_DIR:
		if (strcmp(name, "volumes") == 0) {
			r = node_table_get(fs->nodes, NODE_VOLS, parent->vm, NULL, -1, &ino, &gen);
			if (r < 0)
				return r;
			child.kind = NODE_VOLS;
			break;
		}
		i = fs_attr_find(fs_vm_attrs, fs_vm_attrs_count, name);
		if (i < 0)
			return -ENOENT;
		r = node_table_get(fs->nodes, NODE_VM_ATTR, parent->vm, NULL, i, &ino, &gen);
		if (r < 0)
			return r;
		child.kind = NODE_VM_ATTR;
		child.attr = &fs_vm_attrs[i];
		break;
	case NODE_VOLS:
		if (!volume_name_is_valid(name) || !vm_volume_exists(parent->vm, name))
			return -ENOENT;
		r = node_table_get(fs->nodes, NODE_VOL_DIR, parent->vm, name, -1, &ino, &gen);
		if (r < 0)
			return r;
		child.kind = NODE_VOL_DIR;
		/* rmdir and mkdir keep the dentry right; a volume the runtime adds (the image's)
		 * shows within a second. */
		e->entry_timeout = FS_TIMEOUT_VMDIR;
		break;
	case NODE_VOL_DIR:
		i = fs_attr_find(fs_vol_attrs, fs_vol_attrs_count, name);
		if (i < 0)
			return -ENOENT;
		r = node_table_get(fs->nodes, NODE_VOL_ATTR, parent->vm, parent->vol, i, &ino,
				   &gen);
		if (r < 0)
			return r;
		child.kind = NODE_VOL_ATTR;
		child.attr = &fs_vol_attrs[i];
		break;
	default:
		(void)parent_ino;
		return -ENOTDIR;
	}
	e->ino = ino;
	e->generation = gen;
	fs_fill_stat(fs, ino, &child, &e->attr);
	return 0;
}

/* Reply an entry; if the kernel never got it (interrupted), give the lookup reference back. */
static void reply_entry(struct fs *fs, fuse_req_t req, const struct fuse_entry_param *e)
{
	if (fuse_reply_entry(req, e) < 0 && e->ino >= FS_INO_FIRST)
		node_table_forget(fs->nodes, e->ino, 1);
}

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	struct node_info pi = {};
	struct fuse_entry_param e;
	int r;

	r = fs_resolve(fs, parent, &pi);
	if (r >= 0)
		r = lookup_child(fs, &pi, parent, name, &e);
	vm_unref(pi.vm);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_entry(fs, req, &e);
}

void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_table_forget(req_fs(req)->nodes, ino, nlookup);
	fuse_reply_none(req);
}

void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = req_fs(req);

	for (size_t i = 0; i < count; i++)
		node_table_forget(fs->nodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct node_info ni = {};
	struct stat st;
	int r;

	(void)fi;
	r = fs_resolve(fs, ino, &ni);
	if (r >= 0)
		fs_fill_stat(fs, ino, &ni, &st);
	vm_unref(ni.vm);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, FS_TIMEOUT_STATIC);
}

/* Only a truncation to 0 (what O_TRUNC and `echo x >` do) is accepted, as a no-op; modes,
 * owners and times are fixed (EPERM). */
static int do_setattr(struct fs *fs, fuse_ino_t ino, const struct stat *attr, int to_set,
		      struct stat *st)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	struct node_info ni = {};
	bool is_truncate;
	int r;

	r = fs_resolve(fs, ino, &ni);
	if (r < 0)
		return r;
	/* A truncate (size, maybe times) of a file: EACCES if read-only, else only to 0. */
	is_truncate = ni.attr && (to_set & FUSE_SET_ATTR_SIZE) &&
		      !(to_set & ~(FUSE_SET_ATTR_SIZE | times));
	if (is_truncate && !(ni.attr->mode & 0200))
		r = -EACCES;
	else if (!is_truncate || attr->st_size != 0)
		r = -EPERM;
	else
		fs_fill_stat(fs, ino, &ni, st);
	vm_unref(ni.vm);
	return r;
}

void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi)
{
	struct stat st;
	int r;

	(void)fi;
	r = do_setattr(req_fs(req), ino, attr, to_set, &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, FS_TIMEOUT_STATIC);
}

/* The listing of one opendir, served in slices so offsets stay stable. */
struct dirbuf {
	struct fs_open open; /* first */
	struct fs *fs;
	char *p;
	size_t size;
};

static int dirbuf_add(fuse_req_t req, struct dirbuf *b, const char *name, fuse_ino_t ino,
		      mode_t type)
{
	struct stat st = {.st_ino = ino, .st_mode = type};
	size_t len = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	char *p = realloc(b->p, b->size + len);

	if (!p)
		return -ENOMEM;
	b->p = p;
	fuse_add_direntry(req, b->p + b->size, len, name, &st, (off_t)(b->size + len));
	b->size += len;
	return 0;
}

/* A directory's files; ino_base FS_UNKNOWN_INO: inodes not known yet (they come with lookup). */
static int dirbuf_add_attrs(fuse_req_t req, struct dirbuf *b, const struct fs_attr *attrs, size_t n,
			    fuse_ino_t ino_base)
{
	for (size_t i = 0; i < n; i++) {
		int r = dirbuf_add(req, b, attrs[i].name,
				   ino_base == FS_UNKNOWN_INO ? FS_UNKNOWN_INO : ino_base + i,
				   S_IFREG);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Subdirectories by name (a NULL-terminated list). */
static int dirbuf_add_dirs(fuse_req_t req, struct dirbuf *b, char **names)
{
	for (size_t i = 0; names[i]; i++) {
		int r = dirbuf_add(req, b, names[i], FS_UNKNOWN_INO, S_IFDIR);
		if (r < 0)
			return r;
	}
	return 0;
}

static int build_listing(fuse_req_t req, struct fs *fs, fuse_ino_t ino, const struct node_info *ni,
			 struct dirbuf *b)
{
	int r;

	r = dirbuf_add(req, b, ".", ino, S_IFDIR);
	if (r >= 0)
		r = dirbuf_add(req, b, "..",
			       ni->kind == NODE_VM_DIR			       ? FS_INO_VMS
			       : ni->kind == NODE_ROOT || ni->kind == NODE_VMS ? FUSE_ROOT_ID
									       : FS_UNKNOWN_INO,
			       S_IFDIR);
	if (r < 0)
		return r;
	switch (ni->kind) {
	case NODE_ROOT:
		if (atomic_load(&fs->ready)) {
			r = dirbuf_add(req, b, "vms", FS_INO_VMS, S_IFDIR);
			if (r < 0)
				return r;
		}
		return dirbuf_add_attrs(req, b, fs_root_attrs, fs_root_attrs_count, FS_INO_VERSION);
	case NODE_VMS: {
		_cleanup_free_ char **names = NULL;
		r = runtime_vm_list(fs->rt, &names);
		return r < 0 ? r : dirbuf_add_dirs(req, b, names);
	}
	case NODE_VM_DIR:
		r = dirbuf_add_attrs(req, b, fs_vm_attrs, fs_vm_attrs_count, FS_UNKNOWN_INO);
		return r < 0 ? r : dirbuf_add(req, b, "volumes", FS_UNKNOWN_INO, S_IFDIR);
	case NODE_VOLS: {
		_cleanup_free_ char **names = NULL;
		r = vm_volume_list(ni->vm, &names);
		return r < 0 ? r : dirbuf_add_dirs(req, b, names);
	}
	case NODE_VOL_DIR:
		return dirbuf_add_attrs(req, b, fs_vol_attrs, fs_vol_attrs_count, FS_UNKNOWN_INO);
	default:
		return -ENOTDIR;
	}
}

static struct dirbuf *dirbuf_free(struct dirbuf *b)
{
	fs_open_del(b->fs, &b->open);
	free(b->p);
	free(b);
	return NULL;
}

static void dirbuf_release(struct fs_open *o)
{
	dirbuf_free((struct dirbuf *)o);
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct node_info ni = {};
	struct dirbuf *b = NULL;
	int r;

	r = fs_resolve(fs, ino, &ni);
	if (r >= 0) {
		b = calloc(1, sizeof(*b));
		if (b) {
			b->fs = fs;
			b->open.release = dirbuf_release;
		}
		/* Registered (and counted against the opener's limits) before the listing is
		 * built, so a refused opener costs no listing. */
		r = b ? fs_open_add(fs, &b->open, fuse_req_ctx(req)->uid) : -ENOMEM;
		if (r < 0) {
			free(b);
			b = NULL;
		}
	}
	if (r >= 0) {
		r = build_listing(req, fs, ino, &ni, b);
		if (r >= 0)
			r = fs_open_charge(fs, &b->open, b->size);
		if (r < 0)
			b = dirbuf_free(b);
	}
	vm_unref(ni.vm);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)b;
	if (fuse_reply_open(req, fi) < 0)
		dirbuf_release(&b->open);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct dirbuf *b = (struct dirbuf *)(uintptr_t)fi->fh;
	char *slice;
	size_t n;

	(void)ino;
	if (off < 0 || (size_t)off >= b->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* A copy: after the reply the kernel may release the directory (freeing b) at once. */
	n = MIN(b->size - (size_t)off, size);
	slice = malloc(n);
	if (!slice) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(slice, b->p + off, n);
	fuse_reply_buf(req, slice, n);
	free(slice);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirbuf *b = (struct dirbuf *)(uintptr_t)fi->fh;

	(void)ino;
	if (b)
		dirbuf_release(&b->open);
	fuse_reply_err(req, 0);
}

void fs_op_eperm_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EPERM);
}

void fs_op_eperm_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EPERM);
}

void fs_op_eperm_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

void fs_op_eperm_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);
}

void fs_op_eperm_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

void fs_op_eperm_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EPERM);
}
