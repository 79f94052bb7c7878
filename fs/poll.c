/* SPDX-License-Identifier: MIT */
/*
 * poll() on attribute files (sysfs model). Readable files always report POLLIN; pollable ones
 * (state, health) add POLLPRI|POLLERR when the attribute's change sequence differs from the one
 * this open file last read. Each open file keeps only its newest fuse_pollhandle.
 *
 * The runtime's notify callback takes the pollhandles of matching files out of the list under
 * fs->poll_lock, drops the lock, then sends fuse_lowlevel_notify_poll() and destroys them: no
 * lock a FUSE handler needs is held while talking to the kernel. The kernel polls again after a
 * wake-up and hands us a fresh pollhandle.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

/* Called with fs->poll_lock held. */
static void pollers_unlink(struct fs *fs, struct fs_handle *h)
{
	if (h->poll_prev)
		h->poll_prev->poll_next = h->poll_next;
	else if (fs->pollers == h)
		fs->pollers = h->poll_next;
	if (h->poll_next)
		h->poll_next->poll_prev = h->poll_prev;
	h->poll_prev = h->poll_next = NULL;
}

void fs_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct fs *fs = h->fs;
	struct fuse_pollhandle *old = NULL;
	unsigned revents = POLLIN | POLLRDNORM;
	uint64_t seq, last;

	(void)ino;
	if (h->attr->mode & 0200)
		revents |= POLLOUT | POLLWRNORM;
	if (!h->attr->pollable) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, revents);
		return;
	}
	/* Store the handle before sampling the sequence, so a change in between notifies it. */
	if (ph) {
		pthread_mutex_lock(&fs->poll_lock);
		old = h->ph;
		h->ph = ph;
		if (!old) {
			h->poll_prev = NULL;
			h->poll_next = fs->pollers;
			if (fs->pollers)
				fs->pollers->poll_prev = h;
			fs->pollers = h;
		}
		pthread_mutex_unlock(&fs->poll_lock);
		if (old)
			fuse_pollhandle_destroy(old);
	}
	seq = vm_attr_seq(h->vm, (enum vm_attr)h->attr->vm_attr);
	pthread_mutex_lock(&h->lock);
	last = h->last_seq;
	pthread_mutex_unlock(&h->lock);
	if (seq != last || !fs_vm_is_live(fs, h->vm))
		revents |= POLLPRI | POLLERR;
	fuse_reply_poll(req, revents);
}

void fs_poll_release(struct fs_handle *h)
{
	struct fs *fs = h->fs;
	struct fuse_pollhandle *ph;

	pthread_mutex_lock(&fs->poll_lock);
	ph = h->ph;
	h->ph = NULL;
	if (ph)
		pollers_unlink(fs, h);
	pthread_mutex_unlock(&fs->poll_lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
}

/* One poll handle taken out of the list (a struct, so the array's element size is not a
 * pointer's, which clang-tidy's sizeof checks take for a mistake). */
struct ph_slot {
	struct fuse_pollhandle *ph;
};

/* Runtime thread, no runtime lock held. */
void fs_notify_cb(void *ud, struct vm *vm, enum vm_attr attr)
{
	struct fs *fs = ud;
	struct ph_slot stack[64], *phs = stack;
	size_t n = 0, cap = 64;
	struct fs_handle *h, *next;

	pthread_rwlock_rdlock(&fs->notify_lock);
	if (!fs->notify_live) {
		pthread_rwlock_unlock(&fs->notify_lock);
		return;
	}
	pthread_mutex_lock(&fs->poll_lock);
	for (h = fs->pollers; h; h = next) {
		next = h->poll_next;
		if (h->vm != vm || h->attr->vm_attr != (int)attr)
			continue;
		if (n == cap) {
			struct ph_slot *p;
			p = calloc(cap * 2, sizeof(p[0]));
			if (!p)
				break; /* the rest wait for the next change or their timeout */
			memcpy(p, phs, n * sizeof(p[0]));
			if (phs != stack)
				free(phs);
			phs = p;
			cap *= 2;
		}
		phs[n++].ph = h->ph;
		h->ph = NULL;
		pollers_unlink(fs, h);
	}
	pthread_mutex_unlock(&fs->poll_lock);

	for (size_t i = 0; i < n; i++) {
		int r = fuse_lowlevel_notify_poll(phs[i].ph);
		if (r < 0 && r != -ENOENT)
			log_debug_errno(r, "notify_poll failed, ignoring");
		fuse_pollhandle_destroy(phs[i].ph);
	}
	if (phs != stack)
		free(phs);
	pthread_rwlock_unlock(&fs->notify_lock);
}
