/* SPDX-License-Identifier: MIT */
/*
 * The registry of open files and directories and what each opener may hold. The mount is
 * allow_other, so any local user can open files and make the daemon keep render buffers: every
 * uid but 0 gets at most max_handles_per_uid handles (EMFILE) and max_buffer_per_uid bytes of
 * buffers (ENOMEM), and all of them together at most max_handles - root_handles handles
 * (ENFILE) and max_buffer_others bytes (ENOMEM). uid 0 is limited by max_handles only, so
 * nothing other users hold can make root's reads and writes fail.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"
#include "log.h"

#define FS_DEFAULT_MAX_HANDLES 65536u
#define FS_DEFAULT_ROOT_HANDLES 1024u
#define FS_DEFAULT_HANDLES_PER_UID 1024u
#define FS_DEFAULT_BUFFER_PER_UID (16ull << 20)
#define FS_DEFAULT_BUFFER_OTHERS (64ull << 20)

int fs_limits_init(struct fs_limits *l, struct err *err)
{
	if (!l->max_handles)
		l->max_handles = FS_DEFAULT_MAX_HANDLES;
	if (!l->root_handles)
		l->root_handles = l->max_handles / 2 < FS_DEFAULT_ROOT_HANDLES
					  ? l->max_handles / 2
					  : FS_DEFAULT_ROOT_HANDLES;
	if (!l->max_handles_per_uid)
		l->max_handles_per_uid = FS_DEFAULT_HANDLES_PER_UID;
	if (!l->max_buffer_per_uid)
		l->max_buffer_per_uid = FS_DEFAULT_BUFFER_PER_UID;
	if (!l->max_buffer_others)
		l->max_buffer_others = FS_DEFAULT_BUFFER_OTHERS;
	if (l->root_handles >= l->max_handles)
		return err_set(err, -EINVAL,
			       "root-handles (%u) must be less than max-handles (%u): other users "
			       "could not open anything",
			       l->root_handles, l->max_handles);
	return 0;
}

static struct fs_uid **uid_slot(struct fs *fs, uid_t uid)
{
	struct fs_uid **p = &fs->uids[uid % FS_UID_BUCKETS];

	while (*p && (*p)->uid != uid)
		p = &(*p)->next;
	return p;
}

/* Count a refusal; called with open_lock held. */
static void count_refused(struct fs *fs, int r)
{
	if (r == -EMFILE)
		fs->refused_emfile++;
	else if (r == -ENFILE)
		fs->refused_enfile++;
	else
		fs->refused_enomem++;
}

/* Users trigger these at will: rate-limited. */
static void log_refused(uid_t uid, const char *what, int r)
{
	if (fs_log_ratelimit())
		log_notice("uid %u: %s (%s)", (unsigned)uid, what,
			   r == -EMFILE	  ? "EMFILE"
			   : r == -ENFILE ? "ENFILE"
					  : "ENOMEM");
}

int fs_open_add(struct fs *fs, struct fs_open *o, uid_t uid)
{
	const struct fs_limits *l = &fs->limits;
	struct fs_uid **slot = NULL, *u = NULL;
	int r = 0;

	pthread_mutex_lock(&fs->open_lock);
	if (fs->n_open >= l->max_handles) {
		r = -ENFILE;
	} else if (uid != 0) {
		slot = uid_slot(fs, uid);
		u = *slot;
		if (u && u->handles >= l->max_handles_per_uid)
			r = -EMFILE;
		else if (fs->n_open_others >= l->max_handles - l->root_handles)
			r = -ENFILE;
		else if (!u && !(u = calloc(1, sizeof(*u))))
			r = -ENOMEM;
		else if (!*slot) {
			u->uid = uid;
			*slot = u;
		}
	}
	if (r < 0) {
		if (r != -ENOMEM)
			count_refused(fs, r);
		pthread_mutex_unlock(&fs->open_lock);
		if (r != -ENOMEM)
			log_refused(uid, "open refused, too many open files", r);
		return r;
	}
	if (u) {
		u->handles++;
		fs->n_open_others++;
	}
	o->uid = uid;
	o->bytes = 0;
	o->prev = NULL;
	o->next = fs->opens;
	if (fs->opens)
		fs->opens->prev = o;
	fs->opens = o;
	fs->n_open++;
	pthread_mutex_unlock(&fs->open_lock);
	return 0;
}

int fs_open_charge(struct fs *fs, struct fs_open *o, size_t bytes)
{
	const struct fs_limits *l = &fs->limits;
	struct fs_uid *u;
	uint64_t mine, others;

	pthread_mutex_lock(&fs->open_lock);
	if (o->uid == 0) {
		o->bytes = bytes;
		pthread_mutex_unlock(&fs->open_lock);
		return 0;
	}
	/* Registered by fs_open_add; the entry lives while o is open. */
	u = *uid_slot(fs, o->uid);
	if (!u) {
		pthread_mutex_unlock(&fs->open_lock);
		return -EIO;
	}
	mine = u->bytes - o->bytes + bytes;
	others = fs->bytes_others - o->bytes + bytes;
	if (bytes > o->bytes && (mine > l->max_buffer_per_uid || others > l->max_buffer_others)) {
		count_refused(fs, -ENOMEM);
		pthread_mutex_unlock(&fs->open_lock);
		log_refused(o->uid, "read refused, too much buffer memory held", -ENOMEM);
		return -ENOMEM;
	}
	u->bytes = mine;
	fs->bytes_others = others;
	o->bytes = bytes;
	pthread_mutex_unlock(&fs->open_lock);
	return 0;
}

void fs_open_del(struct fs *fs, struct fs_open *o)
{
	pthread_mutex_lock(&fs->open_lock);
	if (o->prev)
		o->prev->next = o->next;
	else
		fs->opens = o->next;
	if (o->next)
		o->next->prev = o->prev;
	o->prev = o->next = NULL;
	fs->n_open--;
	if (o->uid != 0) {
		struct fs_uid **slot = uid_slot(fs, o->uid), *u = *slot;

		if (!u) /* cannot happen: registered by fs_open_add */
			abort();
		u->bytes -= o->bytes;
		fs->bytes_others -= o->bytes;
		fs->n_open_others--;
		if (--u->handles == 0) {
			*slot = u->next;
			free(u);
		}
	}
	o->bytes = 0;
	pthread_mutex_unlock(&fs->open_lock);
}

void fs_open_stats(struct fs *fs, struct fs_open_stats *ret)
{
	pthread_mutex_lock(&fs->open_lock);
	*ret = (struct fs_open_stats){.handles = fs->n_open,
				      .handles_others = fs->n_open_others,
				      .bytes_others = fs->bytes_others,
				      .refused_emfile = fs->refused_emfile,
				      .refused_enfile = fs->refused_enfile,
				      .refused_enomem = fs->refused_enomem};
	pthread_mutex_unlock(&fs->open_lock);
}
