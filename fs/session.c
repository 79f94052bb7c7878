/* SPDX-License-Identifier: MIT */
/* The FUSE session: options, mount, the operation table, the loop and teardown. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "internal.h"
#include "log.h"
#include "macro.h"

/* Mount options: the kernel enforces the mode bits, other users may read. */
#define FS_MOUNT_OPTS \
	"default_permissions,allow_other,nosuid,nodev,noexec,fsname=mvmfs,subtype=mvmfs"

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	/* Without atomic O_TRUNC the kernel truncates through setattr, whose reply keeps i_size at
	 * our 4096 hint; with it, i_size drops to 0 and every write looks like one past EOF, which
	 * the kernel serialises under the exclusive inode lock (no EBUSY for a second writer). */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	atomic_store(&fs->parallel_writes,
		     conn->proto_major > 7 || (conn->proto_major == 7 && conn->proto_minor >= 38));
	log_debug("FUSE protocol %u.%u, capable 0x%x", conn->proto_major, conn->proto_minor,
		  conn->capable);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.mkdir = fs_op_mkdir,
	.rmdir = fs_op_rmdir,
	.mknod = fs_op_eperm_mknod,
	.symlink = fs_op_eperm_symlink,
	.link = fs_op_eperm_link,
	.unlink = fs_op_eperm_unlink,
	.rename = fs_op_eperm_rename,
	.create = fs_op_eperm_create,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.releasedir = fs_op_releasedir,
	.open = fs_op_open,
	.read = fs_op_read,
	.write = fs_op_write,
	.release = fs_op_release,
	.poll = fs_op_poll,
};

bool fs_log_ratelimit(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static time_t window; /* protected by lock */
	static unsigned used, suppressed;
	unsigned dropped = 0;
	bool ok;
	time_t now = time(NULL);

	pthread_mutex_lock(&lock);
	if (now - window >= FS_LOG_INTERVAL_S) {
		dropped = suppressed;
		window = now;
		used = suppressed = 0;
	}
	ok = used < FS_LOG_BURST;
	if (ok)
		used++;
	else
		suppressed++;
	pthread_mutex_unlock(&lock);
	if (dropped)
		log_notice("%u messages about failed requests suppressed", dropped);
	return ok;
}

/* libfuse's own messages go through our logger (its levels are syslog levels). */
static void fs_log_func(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char buf[1024];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_full_errno((int)level, 0, "fuse: %s", buf);
}

int fs_new(struct runtime *rt, const struct fs_options *opts, struct fs **ret, struct err *err)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fs *fs;
	int r;

	fuse_set_log_func(fs_log_func);
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return err_set(err, -ENOMEM, "out of memory");
	fs->rt = rt;
	fs->max_threads = opts->max_threads ? opts->max_threads : 16;
	fs->limits = opts->limits;
	r = fs_limits_init(&fs->limits, err);
	if (r < 0) {
		free(fs);
		return r;
	}
	fs->mountpoint = strdup(opts->mountpoint);
	fs->vmm_name = strdup(opts->vmm_name ? opts->vmm_name : "firecracker");
	pthread_mutex_init(&fs->poll_lock, NULL);
	pthread_mutex_init(&fs->open_lock, NULL);
	pthread_rwlock_init(&fs->notify_lock, NULL);
	clock_gettime(CLOCK_REALTIME, &fs->start_time);
	if (!fs->mountpoint || !fs->vmm_name) {
		fs_free(fs);
		return err_set(err, -ENOMEM, "out of memory");
	}
	r = node_table_new(&fs->nodes);
	if (r < 0) {
		fs_free(fs);
		return err_set(err, r, "out of memory");
	}
	/* fuse_opt_add_arg() reallocates argv: it must be built by it from the start. */
	if (fuse_opt_add_arg(&args, "mvmfs") < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, FS_MOUNT_OPTS) < 0 ||
	    (opts->debug && fuse_opt_add_arg(&args, "-d") < 0)) {
		fuse_opt_free_args(&args);
		fs_free(fs);
		return err_set(err, -ENOMEM, "out of memory");
	}
	fs->se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	fuse_opt_free_args(&args);
	if (!fs->se) {
		fs_free(fs);
		return err_set(err, -EINVAL, "cannot create the FUSE session");
	}
	if (fuse_set_signal_handlers(fs->se) < 0) {
		fs_free(fs);
		return err_set(err, -EIO, "cannot install the FUSE signal handlers");
	}
	if (fuse_session_mount(fs->se, fs->mountpoint) < 0) {
		r = err_set(err, -EIO, "cannot mount on '%s' (see the fuse message above)",
			    fs->mountpoint);
		fs_free(fs);
		return r;
	}
	atomic_store(&fs->mounted, true);
	pthread_rwlock_wrlock(&fs->notify_lock);
	fs->notify_live = true;
	pthread_rwlock_unlock(&fs->notify_lock);
	runtime_set_notify(rt, fs_notify_cb, fs);
	*ret = fs;
	return 0;
}

void fs_set_ready(struct fs *fs)
{
	atomic_store(&fs->ready, true);
	log_info("control tree ready at %s", fs->mountpoint);
}

int fs_run(struct fs *fs)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int r;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, fs->max_threads);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	r = fuse_session_loop_mt(fs->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	/* libfuse returns the signal number when a handler ended the loop. */
	return r < 0 ? r : 0;
}

void fs_exit(struct fs *fs)
{
	fuse_session_exit(fs->se);
	/* Wake a worker blocked in read(/dev/fuse): libfuse's handler is installed. */
	(void)kill(getpid(), SIGTERM);
}

void fs_unmount(struct fs *fs)
{
	if (fs && atomic_exchange(&fs->mounted, false))
		fuse_session_unmount(fs->se);
}

struct fs *fs_free(struct fs *fs)
{
	if (!fs)
		return NULL;
	if (fs->rt)
		runtime_set_notify(fs->rt, NULL, NULL);
	pthread_rwlock_wrlock(&fs->notify_lock);
	fs->notify_live = false;
	pthread_rwlock_unlock(&fs->notify_lock);
	fs_unmount(fs);
	if (fs->se) {
		fuse_remove_signal_handlers(fs->se);
		fuse_session_destroy(fs->se);
	}
	/* Files and directories the kernel never released (still open at unmount). */
	for (;;) {
		struct fs_open *o;

		pthread_mutex_lock(&fs->open_lock);
		o = fs->opens;
		pthread_mutex_unlock(&fs->open_lock);
		if (!o)
			break;
		o->release(o);
	}
	node_table_free(fs->nodes);
	pthread_rwlock_destroy(&fs->notify_lock);
	pthread_mutex_destroy(&fs->poll_lock);
	pthread_mutex_destroy(&fs->open_lock);
	free(fs->mountpoint);
	free(fs->vmm_name);
	free(fs);
	return NULL;
}
