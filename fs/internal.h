/* SPDX-License-Identifier: MIT */
/* fs/ private: the session object, inode table, attribute tables, open handles. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* config.h sets FUSE_USE_VERSION, which fuse_lowlevel.h needs first. */
/* clang-format off */
#include "config.h"
#include <fuse_lowlevel.h>
/* clang-format on */

#include "fs.h"
#include "runtime.h"

/* Fixed inode numbers; dynamic ones (VM directories and their files) start at FS_INO_FIRST. */
enum {
	FS_INO_ROOT = FUSE_ROOT_ID,
	FS_INO_VMS,
	FS_INO_VERSION,
	FS_INO_METRICS,
	FS_INO_FIRST = 16,
};

/* Longest accepted write (docs/contract.md); longer writes fail with EFBIG. */
#define FS_WRITE_MAX 4096

/* readdir entries whose ino we do not allocate (as libfuse's high-level API does). */
#define FS_UNKNOWN_INO 0xffffffffu

/* Timeouts: names and modes that never change are cached for long, except the vms entry (its
 * presence is the readiness signal, which must not survive the daemon in the dcache).
 * vms/NAME entries only for a second: mkdir/rmdir keep the kernel's dentries right by themselves,
 * and a VM that appeared or vanished some other way (re-adoption happens before vms/ is shown) is
 * seen within 1 s; every operation on a stale node still answers ENOENT because the VM object is
 * checked live. */
#define FS_TIMEOUT_STATIC 3600.0
#define FS_TIMEOUT_VMDIR 1.0
#define FS_TIMEOUT_NONE 0.0

enum node_kind {
	NODE_ROOT,
	NODE_VMS,
	NODE_ROOT_ATTR,
	NODE_VM_DIR,
	NODE_VM_ATTR,
	NODE_VOLS,     /* vms/NAME/volumes */
	NODE_VOL_DIR,  /* vms/NAME/volumes/VOL */
	NODE_VOL_ATTR, /* vms/NAME/volumes/VOL/{path,size} */
};

struct fs_handle;

/* Every open file and directory, so fs_free() can release what the kernel never did. The first
 * member of struct fs_handle and struct fs_dirbuf. */
struct fs_open {
	struct fs_open *prev, *next; /* protected by fs->open_lock */
	void (*release)(struct fs_open *o);
	uid_t uid;    /* the opener (the FUSE request's uid) */
	size_t bytes; /* buffer memory charged to uid; protected by fs->open_lock */
};

/* What one uid other than 0 holds (open.c); entries exist while handles > 0. */
struct fs_uid {
	struct fs_uid *next;
	uid_t uid;
	unsigned handles;
	uint64_t bytes;
};
#define FS_UID_BUCKETS 64

/* An attribute file (sysfs device_attribute). show renders the value; store parses a
 * NUL-terminated, newline-stripped copy (state writes are handled by state.c instead). vol is
 * the volume's name for the files of volumes/VOL, NULL for the others. */
struct fs_attr {
	const char *name;
	mode_t mode;
	int vm_attr;   /* enum vm_attr for pollable VM files (-1: root, volume, disk-usage) */
	bool pollable; /* POLLPRI when the change sequence moves */
	bool deferred; /* writes go through the deferred state-write path */
	int (*show)(struct fs *fs, struct vm *vm, const char *vol, char **ret, size_t *ret_len);
	int (*store)(struct fs *fs, struct vm *vm, const char *vol, const char *value);
};

extern const struct fs_attr fs_vm_attrs[];
extern const size_t fs_vm_attrs_count;
extern const struct fs_attr fs_vol_attrs[];
extern const size_t fs_vol_attrs_count;
extern const struct fs_attr fs_root_attrs[];
extern const size_t fs_root_attrs_count;
/* Index of name in a table or -ENOENT. */
int fs_attr_find(const struct fs_attr *table, size_t n, const char *name);

/* What an inode resolves to; vm is a reference the caller drops (vm_unref). */
struct node_info {
	enum node_kind kind;
	struct vm *vm;
	const struct fs_attr *attr;
	uint64_t generation;
	char vol[VOLUME_NAME_MAX + 1]; /* NODE_VOL_DIR, NODE_VOL_ATTR: the volume; else "" */
};

struct node_table;

int node_table_new(struct node_table **ret);
struct node_table *node_table_free(struct node_table *t);
/* Find or create the node for (kind, vm, volume name or NULL, attr index or -1 for a
 * directory) and take one lookup reference (what fuse_reply_entry hands the kernel). */
int node_table_get(struct node_table *t, enum node_kind kind, struct vm *vm, const char *vol,
		   int attr, fuse_ino_t *ret_ino, uint64_t *ret_gen);
/* Drop nlookup references; the node goes away at 0. */
void node_table_forget(struct node_table *t, fuse_ino_t ino, uint64_t nlookup);
/* Resolve a dynamic ino: -ENOENT if unknown. */
int node_table_resolve(struct node_table *t, fuse_ino_t ino, struct node_info *ret);
size_t node_table_count(struct node_table *t);

/* The session. Lock order: fs->poll_lock, then fs_handle->lock; node table lock is a leaf.
 * fs->notify_lock (rwlock) is only taken by the runtime notify path (read) and fs_free (write):
 * no FUSE handler takes it, so sending notifications under it cannot deadlock with a worker. */
struct fs {
	struct runtime *rt;
	struct fuse_session *se;
	struct node_table *nodes;
	char *mountpoint;
	char *vmm_name;
	unsigned max_threads;
	struct fs_limits limits; /* defaults filled in */
	atomic_bool ready;
	atomic_bool mounted;
	atomic_bool parallel_writes; /* kernel speaks FUSE >= 7.38 (FOPEN_PARALLEL_DIRECT_WRITES) */
	pthread_mutex_t open_lock;   /* a leaf lock */
	struct fs_open *opens;	     /* open files and directories; protected by open_lock */
	unsigned n_open;	     /* protected by open_lock */
	/* Per-uid accounting (open.c), protected by open_lock: every uid but 0. */
	struct fs_uid *uids[FS_UID_BUCKETS];
	unsigned n_open_others;
	uint64_t bytes_others;
	uint64_t refused_emfile, refused_enfile, refused_enomem;
	struct timespec start_time; /* st_[amc]tim of every node */

	pthread_mutex_t poll_lock;
	struct fs_handle *pollers; /* handles holding a pollhandle; protected by poll_lock */

	pthread_rwlock_t notify_lock;
	bool notify_live; /* protected by notify_lock */
};

/* An open attribute file. */
struct fs_handle {
	struct fs_open open; /* first */
	struct fs *fs;
	struct vm *vm; /* reference; NULL for root files */
	const struct fs_attr *attr;
	char vol[VOLUME_NAME_MAX + 1]; /* the volume of a volumes/VOL file, else "" */

	pthread_mutex_t lock; /* protects buf, len, rendered, last_seq; taken before open_lock */
	char *buf;	      /* NULL once a read took the whole value (len stays) */
	size_t len;
	bool rendered;
	uint64_t last_seq;

	/* protected by fs->poll_lock */
	struct fuse_pollhandle *ph;
	struct fs_handle *poll_prev, *poll_next;
};

static inline struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Check that vm is still the live VM of its name (not destroyed, not replaced). */
bool fs_vm_is_live(struct fs *fs, struct vm *vm);
/* The same for a file of vm, and for a volume's file that the volume still exists. */
bool fs_file_is_live(struct fs *fs, struct vm *vm, const char *vol);
/* Resolve any ino (fixed or dynamic) to a live node: -ENOENT for an unknown ino, a VM that is
 * gone or vms/ before readiness. ret->vm is a reference the caller drops. */
int fs_resolve(struct fs *fs, fuse_ino_t ino, struct node_info *ret);
/* Fill a stat for a node. */
void fs_fill_stat(struct fs *fs, fuse_ino_t ino, const struct node_info *ni, struct stat *st);
/* open.c: the registry of open files and directories and its limits (fs_limits in fs.h).
 * fs_open_add registers o for uid: -ENFILE beyond max_handles, or for uid != 0 beyond the share
 * the others may use (max_handles - root_handles); -EMFILE beyond max_handles_per_uid; -ENOMEM.
 * fs_open_charge sets the buffer bytes o holds: growing past max_buffer_per_uid or
 * max_buffer_others (uid != 0) fails with -ENOMEM and changes nothing; shrinking always works.
 * fs_open_del forgets o and releases what it held. open_lock is a leaf: callable with
 * fs_handle->lock held. */
int fs_open_add(struct fs *fs, struct fs_open *o, uid_t uid);
int fs_open_charge(struct fs *fs, struct fs_open *o, size_t bytes);
void fs_open_del(struct fs *fs, struct fs_open *o);
/* Fill the zero fields of l with the defaults; -EINVAL (message in err) if inconsistent. */
int fs_limits_init(struct fs_limits *l, struct err *err);

/* Handlers, grouped by file. */
void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_eperm_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			struct fuse_file_info *fi);
void fs_op_eperm_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       dev_t rdev);
void fs_op_eperm_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_eperm_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_op_eperm_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_eperm_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			const char *newname, unsigned int flags);
void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph);

/* Rate limit for messages users can trigger at will (failed mkdir/rmdir): true when this one
 * may be logged. At most FS_LOG_BURST per FS_LOG_INTERVAL_S seconds, process-wide. */
#define FS_LOG_BURST 20
#define FS_LOG_INTERVAL_S 10
bool fs_log_ratelimit(void);

/* state.c: a state write whose reply may be deferred to the runtime's done callback. */
void fs_state_write(fuse_req_t req, struct fs_handle *h, const char *value, size_t count,
		    bool nonblock);

/* poll.c */
void fs_poll_release(struct fs_handle *h);
void fs_notify_cb(void *ud, struct vm *vm, enum vm_attr attr);
