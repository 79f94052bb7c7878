/* SPDX-License-Identifier: MIT */
/*
 * Attribute files: open/read/write/release (sysfs semantics). Reads render the value into a
 * per-open buffer at offset 0 and serve later offsets from it; writes take the whole value at
 * offset 0 (EINVAL otherwise), at most FS_WRITE_MAX bytes (EFBIG), one trailing newline.
 * Buffers count against the opener's limits (open.c).
 * Read-only files refuse write opens with EACCES even for root (the kernel's mode check lets
 * CAP_DAC_OVERRIDE through). Files of a VM (or a volume) destroyed while open fail with ENODEV,
 * as sysfs does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "internal.h"
#include "log.h"
#include "macro.h"
#include "parse.h"

static bool attr_writable(const struct fs_attr *a)
{
	return (a->mode & 0200) && (a->store || a->deferred);
}

static struct fs_handle *handle_free(struct fs_handle *h)
{
	if (!h)
		return NULL;
	fs_open_del(h->fs, &h->open);
	fs_poll_release(h);
	vm_unref(h->vm);
	free(h->buf);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return NULL;
}

static void handle_release(struct fs_open *o)
{
	handle_free((struct fs_handle *)o);
}

static int do_open(struct fs *fs, fuse_ino_t ino, int flags, uid_t uid, struct fs_handle **ret)
{
	struct node_info ni = {};
	struct fs_handle *h;
	int r;

	r = fs_resolve(fs, ino, &ni);
	if (r < 0)
		return r;
	if (!ni.attr)
		r = -EISDIR;
	else if ((flags & O_ACCMODE) != O_RDONLY && !attr_writable(ni.attr))
		r = -EACCES;
	if (r < 0) {
		vm_unref(ni.vm);
		return r;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		vm_unref(ni.vm);
		return -ENOMEM;
	}
	h->open.release = handle_release;
	h->fs = fs;
	h->vm = ni.vm;
	h->attr = ni.attr;
	strcpy(h->vol, ni.vol);
	r = fs_open_add(fs, &h->open, uid);
	if (r < 0) {
		vm_unref(h->vm);
		free(h);
		return r;
	}
	pthread_mutex_init(&h->lock, NULL);
	/* sysfs: POLLPRI reports changes after open (or the last read), not before. */
	if (h->attr->pollable)
		h->last_seq = vm_attr_seq(h->vm, (enum vm_attr)h->attr->vm_attr);
	*ret = h;
	return 0;
}

/*
 * The FUSE open reply, built by hand for writable files: libfuse 3.14 cannot set
 * FOPEN_PARALLEL_DIRECT_WRITES (protocol 7.38, Linux 6.2). On older kernels a second
 * writer to the same state file waits for the first one's transition. Without it the kernel holds
 * the inode lock for the whole of a blocking state write, so a second writer would wait for the
 * first transition instead of getting EBUSY.
 */
struct fs_open_out {
	uint64_t fh;
	uint32_t open_flags;
	uint32_t padding;
};
#define FS_FOPEN_DIRECT_IO (1u << 0)
#define FS_FOPEN_PARALLEL_DIRECT_WRITES (1u << 6)

static int reply_open(fuse_req_t req, struct fs_handle *h, struct fuse_file_info *fi)
{
	struct fs_open_out out = {.fh = fi->fh, .open_flags = FS_FOPEN_DIRECT_IO};
	struct iovec iov = {.iov_base = &out, .iov_len = sizeof(out)};

	if (!attr_writable(h->attr) || !atomic_load(&h->fs->parallel_writes))
		return fuse_reply_open(req, fi);
	out.open_flags |= FS_FOPEN_PARALLEL_DIRECT_WRITES;
	return fuse_reply_iov(req, &iov, 1);
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_handle *h = NULL;
	int r;

	r = do_open(req_fs(req), ino, fi->flags, fuse_req_ctx(req)->uid, &h);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	if (reply_open(req, h, fi) < 0)
		handle_free(h);
}

/* Render the value into h->buf; called with h->lock held. */
static int render(struct fs_handle *h)
{
	char *buf = NULL;
	size_t len = 0;
	uint64_t seq = 0;
	int r;

	if (h->vm && !fs_file_is_live(h->fs, h->vm, h->vol))
		return -ENODEV;
	/* Sample the sequence first so a change during rendering still raises POLLPRI. */
	if (h->attr->pollable)
		seq = vm_attr_seq(h->vm, (enum vm_attr)h->attr->vm_attr);
	r = h->attr->show(h->fs, h->vm, h->vol[0] ? h->vol : NULL, &buf, &len);
	if (r < 0)
		return r;
	/* The opener's buffer limits (ENOMEM); the old buffer is kept on failure. */
	r = fs_open_charge(h->fs, &h->open, len);
	if (r < 0) {
		free(buf);
		return r;
	}
	free(h->buf);
	h->buf = buf;
	h->len = len;
	h->rendered = true;
	h->last_seq = seq;
	return 0;
}

/* The whole value went out in one read from offset 0 (what cat does): nothing later needs the
 * buffer but an EOF check at offset len, so it is freed and only len kept. A held-open file
 * then costs its opener no buffer memory. A later read at 0 < offset < len renders anew. */
static void drop_served(struct fs_handle *h)
{
	free(h->buf);
	h->buf = NULL;
	(void)fs_open_charge(h->fs, &h->open, 0);
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	char *slice = NULL;
	size_t n = 0;
	int r = 0;

	(void)ino;
	/* Copy the slice out: once the reply is written the kernel may complete the read and
	 * release the file (freeing h) before this thread would get to unlock h->lock. */
	pthread_mutex_lock(&h->lock);
	if (off == 0 || (!h->buf && (!h->rendered || (off > 0 && (size_t)off < h->len))))
		r = render(h);
	if (r >= 0 && off >= 0 && (size_t)off < h->len) {
		n = MIN(size, h->len - (size_t)off);
		slice = malloc(n);
		if (slice)
			memcpy(slice, h->buf + off, n);
		else
			r = -ENOMEM;
		if (slice && off == 0 && n == h->len)
			drop_served(h);
	}
	pthread_mutex_unlock(&h->lock);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, slice, n);
	free(slice);
}

/* Validate a write; on success value holds the NUL-terminated value without its newline. */
static int check_write(struct fs_handle *h, const char *buf, size_t size, off_t off, char *value,
		       size_t value_size)
{
	int r;

	if (!attr_writable(h->attr))
		return -EACCES;
	if (off != 0)
		return -EINVAL;
	r = parse_control_value(buf, size, FS_WRITE_MAX, value, value_size);
	if (r < 0)
		return r;
	if (h->vm && !fs_file_is_live(h->fs, h->vm, h->vol))
		return -ENODEV;
	return 0;
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	char value[FS_WRITE_MAX + 1];
	int r;

	(void)ino;
	r = check_write(h, buf, size, off, value, sizeof(value));
	if (r >= 0 && h->attr->deferred) {
		/* fi->flags of a write are the file's current flags (fcntl included). */
		fs_state_write(req, h, value, size, fi->flags & O_NONBLOCK);
		return;
	}
	if (r >= 0)
		r = h->attr->store(h->fs, h->vm, h->vol[0] ? h->vol : NULL, value);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	handle_free((struct fs_handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}
