/* SPDX-License-Identifier: MIT */
/*
 * net: named network namespaces the way `ip netns add` makes them: a file under /run/netns
 * (a shared mount) with the namespace bind-mounted on it. Work that must happen inside a
 * namespace (opening a netlink socket or /dev/net/tun there, its sysctls) runs on a short-lived
 * thread: setns()/unshare(CLONE_NEWNET) only change the calling thread, so the daemon's own
 * threads never leave the host namespace.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "fileio.h"
#include "parse.h"
#include "plumbing.h"

int netns_path(const char *node, const char *name, char *buf, size_t size)
{
	int n = node && *node
			? snprintf(buf, size, "%s/%s%s.%s", NET_NETNS_DIR, NET_NETNS_PREFIX, node,
				   name)
			: snprintf(buf, size, "%s/%s%s", NET_NETNS_DIR, NET_NETNS_PREFIX, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Make /run/netns a shared mount so namespaces mounted later propagate to other mount
 * namespaces (iproute2 netns_add does the same). */
static int netns_dir_prepare(void)
{
	int r = mkdir_p(NET_NETNS_DIR, 0755);

	if (r < 0)
		return r;
	if (mount("", NET_NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* Not a mount point yet: bind it onto itself, then share. */
	if (mount(NET_NETNS_DIR, NET_NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
		return -errno;
	return RET_NERRNO(mount("", NET_NETNS_DIR, "none", MS_SHARED | MS_REC, NULL));
}

static bool fd_is_netns(int fd)
{
	struct statfs sfs;

	return fstatfs(fd, &sfs) == 0 && sfs.f_type == NSFS_MAGIC;
}

int netns_open(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	if (!fd_is_netns(fd))
		return -ENOENT; /* a stale placeholder file left by a crash */
	return TAKE_FD(fd);
}

struct ns_job {
	const char *path;
	int ns_fd; /* >= 0: enter it; else create at path */
	int (*fn)(void *ud);
	void *ud;
	int r;
};

static void *ns_thread(void *p)
{
	struct ns_job *job = p;

	if (job->ns_fd >= 0) {
		if (setns(job->ns_fd, CLONE_NEWNET) < 0) {
			job->r = -errno;
			return NULL;
		}
	} else {
		if (unshare(CLONE_NEWNET) < 0) {
			job->r = -errno;
			return NULL;
		}
		if (mount("/proc/thread-self/ns/net", job->path, "none", MS_BIND, NULL) < 0) {
			job->r = -errno;
			return NULL;
		}
	}
	job->r = job->fn ? job->fn(job->ud) : 0;
	return NULL;
}

static int run_thread(struct ns_job *job)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, ns_thread, job);

	if (r)
		return -r;
	r = pthread_join(t, NULL);
	if (r)
		return -r;
	return job->r;
}

int netns_run(const char *path, bool create, int (*fn)(void *ud), void *ud, bool *ret_created)
{
	struct ns_job job = {.path = path, .ns_fd = -EBADF, .fn = fn, .ud = ud};
	_cleanup_close_ int fd = netns_open(path);
	int r;

	if (fd >= 0 || !create || (fd != -ENOENT)) {
		if (fd < 0)
			return fd;
		job.ns_fd = fd;
		if (ret_created)
			*ret_created = false;
		return run_thread(&job);
	}

	r = netns_dir_prepare();
	if (r < 0)
		return r;
	/* Replace a stale placeholder (crash between create and mount). */
	(void)umount2(path, MNT_DETACH);
	(void)unlink(path);
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	fd = safe_close(fd);
	r = run_thread(&job);
	if (r < 0) {
		(void)netns_remove(path);
		return r;
	}
	if (ret_created)
		*ret_created = true;
	return 0;
}

int netns_remove(const char *path)
{
	int r = 0, mounted = 1;

	if (umount2(path, MNT_DETACH) < 0) {
		mounted = 0;
		if (errno != EINVAL && errno != ENOENT)
			r = -errno;
	}
	if (unlink(path) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r < 0 ? r : mounted;
}

int netns_foreach(const char *prefix, int (*cb)(const char *vm_name, void *ud), void *ud)
{
	_cleanup_closedir_ DIR *d = opendir(NET_NETNS_DIR);
	const size_t plen = strlen(prefix);
	struct dirent *de;
	int r, n = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((errno = 0, de = readdir(d))) {
		if (strncmp(de->d_name, prefix, plen) != 0)
			continue;
		if (!vmm_id_is_valid(de->d_name + plen))
			continue;
		r = cb(de->d_name + plen, ud);
		if (r < 0)
			return r;
		n += r;
	}
	return errno ? -errno : n;
}
