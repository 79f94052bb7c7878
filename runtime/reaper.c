/* SPDX-License-Identifier: MIT */
/*
 * The leak reaper: at start and every reap_interval_ms, host resources that
 * carry this node's ownership marks but belong to no VM in the table are removed and counted:
 *  - "vmm":   marked jail dirs (<jail>/.mvmfs), cgroups under this node's "mvmfs/NODE", the VMM
 *             processes in them, their sockets (inside the jail) — the backend's reap;
 *  - "net":   netns mvmfs-NODE.*, links aliased mvmfs:NODE:*, nft chains commented so, /128
 *             routes on our bridge — net_reap (only this daemon's node id; net/plumbing.h);
 *  - "state": <state>/vms/<name> with no record.json (a create interrupted before the record)
 *             or with a "destroying" tombstone (a destroy interrupted half-way): address
 *             released, image hold dropped, directory (data disk) removed;
 *  - "ip":    local address leases (net_ip_list) of names with no VM and no state dir (with a
 *             database the platform owns the addresses: none are listed);
 *  - "image": image holds (img_holders_list) of names with no VM and no state dir; the images
 *             nobody holds any more are then collected as after a destroy;
 *  - "volume": the volumes (STATE_DIR/volumes/NAME) of names with no VM and no state dir (a
 *             destroy interrupted after its state dir went).
 * A state dir whose record exists but cannot be read is kept: nothing proves it dead, so its
 * lease and hold are kept too.
 *
 * Why a lock: "belongs to no VM" is decided from the table, and a worker job may be creating
 * the very resources of a VM that was just added. Every job runs under the read side of
 * reaper->rw, a pass under the write side, so a pass never sees a half-made VM. glibc's
 * default rwlock prefers readers: a long launch (image pull) only delays the pass.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "thread.h"
#include "volume.h"

#define REAP_INTERVAL_DEFAULT_MS 60000u

/* clang-format off */
static const char *const leak_kind[_RT_LEAK_MAX] = {
	[RT_LEAK_VMM] = "vmm",
	[RT_LEAK_NET] = "net",
	[RT_LEAK_STATE] = "state",
	[RT_LEAK_IP] = "ip",
	[RT_LEAK_IMAGE] = "image",
	[RT_LEAK_VOLUME] = "volume",
};
/* clang-format on */

struct rt_reaper {
	pthread_rwlock_t rw;
	pthread_mutex_t mx; /* protects stop, wakes the thread */
	pthread_cond_t cond;
	pthread_t thread;
	bool running, stop;
	bool abandoned; /* rt_reaper_stop gave up waiting for a pass */
	atomic_uint_least64_t n[_RT_LEAK_MAX];
	atomic_uint_least64_t passes;
};

int rt_reaper_new(struct runtime *rt)
{
	struct rt_reaper *rp = calloc(1, sizeof(*rp));
	pthread_condattr_t ca;

	if (!rp)
		return -ENOMEM;
	pthread_rwlock_init(&rp->rw, NULL);
	pthread_mutex_init(&rp->mx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rp->cond, &ca);
	pthread_condattr_destroy(&ca);
	rt->reaper = rp;
	return 0;
}

void rt_reaper_free(struct runtime *rt)
{
	struct rt_reaper *rp = rt->reaper;

	if (!rp)
		return;
	rt_reaper_stop(rt);
	pthread_rwlock_destroy(&rp->rw);
	pthread_mutex_destroy(&rp->mx);
	pthread_cond_destroy(&rp->cond);
	free(rp);
	rt->reaper = NULL;
}

void rt_job_enter(struct runtime *rt)
{
	if (rt->reaper)
		pthread_rwlock_rdlock(&rt->reaper->rw);
}

void rt_job_leave(struct runtime *rt)
{
	if (rt->reaper)
		pthread_rwlock_unlock(&rt->reaper->rw);
}

/* Under the write lock, so the table is stable with respect to jobs. */
static bool is_known(const char *name, void *ud)
{
	struct runtime *rt = ud;
	bool found = false;

	pthread_mutex_lock(&rt->lock);
	for (struct vm *v = rt->vms; v && !found; v = v->next)
		found = strcmp(v->name, name) == 0;
	pthread_mutex_unlock(&rt->lock);
	return found;
}

static bool exists_in(const char *dir, const char *name, const char *file)
{
	char path[4400];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/%s/%s", dir, name, file) >= (int)sizeof(path))
		return true; /* cannot tell: keep */
	return lstat(path, &st) == 0 || errno != ENOENT;
}

/* State dirs of no VM that can be proven dead (see the top). */
static int reap_state(struct runtime *rt)
{
	char dir[4200], path[4600];
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/vms", rt->cfg.state_dir);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct err err = {};

		if (!vm_name_is_valid(de->d_name) || is_known(de->d_name, rt))
			continue;
		if (exists_in(dir, de->d_name, "record.json") &&
		    !exists_in(dir, de->d_name, RT_DESTROY_MARK))
			continue;
		/* Address calls are thread-safe and never take net_lock (net.h). */
		if (net_ip_release(rt->net, de->d_name, &err) < 0)
			log_warning("%s: releasing the address of a leftover: %s", de->d_name,
				    err.msg);
		if (rt->store)
			(void)img_release(rt->store, de->d_name);
		/* The record first (table.c's destroy says why). */
		(void)record_remove(rt->cfg.state_dir, de->d_name);
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
		    rm_rf(path) < 0)
			continue;
		log_info("%s: reaped a leftover state dir", de->d_name);
		n++;
	}
	return n;
}

/* A name whose lease or hold may be reaped: ours by its form, not in the table, no state dir. */
static bool is_orphan(struct runtime *rt, const char *name)
{
	char dir[4200];

	if (!vm_name_is_valid(name) || is_known(name, rt))
		return false;
	snprintf(dir, sizeof(dir), "%s/vms", rt->cfg.state_dir);
	return !exists_in(dir, name, "");
}

static int reap_ips(struct runtime *rt)
{
	_cleanup_free_ char **names = NULL;
	struct err err = {};
	int n = 0, r;

	r = net_ip_list(rt->net, &names, &err);
	if (r < 0) {
		log_warning("listing address leases: %s", err.msg[0] ? err.msg : strerror(-r));
		return 0;
	}
	for (char **p = names; *p; p++) {
		if (!is_orphan(rt, *p))
			continue;
		r = net_ip_release(rt->net, *p, &err);
		if (r < 0) {
			log_warning("%s: releasing a leftover address lease: %s", *p, err.msg);
			continue;
		}
		log_info("%s: released a leftover address lease", *p);
		n++;
	}
	return n;
}

static int reap_holds(struct runtime *rt)
{
	_cleanup_free_ char **names = NULL;
	int n = 0, r;

	if (!rt->store)
		return 0;
	r = img_holders_list(rt->store, &names);
	if (r < 0) {
		log_warning_errno(r, "listing image holds");
		return 0;
	}
	for (char **p = names; *p; p++) {
		if (!is_orphan(rt, *p) || img_release(rt->store, *p) < 0)
			continue;
		log_info("%s: dropped a leftover image hold", *p);
		n++;
	}
	if (n > 0) {
		int64_t freed = img_gc(rt->store);

		if (freed > 0)
			log_info("image store: freed %" PRId64 " bytes of unused images", freed);
	}
	return n;
}

static int reap_volumes(struct runtime *rt)
{
	_cleanup_free_ char **names = NULL;
	int n = 0, r;

	if (!rt->volumes)
		return 0;
	r = volume_store_vms(rt->volumes, &names);
	if (r < 0) {
		log_warning_errno(r, "listing volumes");
		return 0;
	}
	for (char **p = names; *p; p++) {
		struct err err = {};

		if (!is_orphan(rt, *p))
			continue;
		if (volume_destroy_all(rt->volumes, *p, &err) < 0) {
			log_warning("%s: leftover volumes: %s", *p, err.msg);
			continue;
		}
		log_info("%s: removed leftover volumes", *p);
		n++;
	}
	return n;
}

static void count(struct runtime *rt, enum rt_leak kind, int n, const char *what)
{
	if (n <= 0)
		return;
	atomic_fetch_add(&rt->reaper->n[kind], (uint64_t)n);
	log_info("reaped %d leftover %s", n, what);
}

void rt_reap_pass(struct runtime *rt)
{
	struct rt_reaper *rp = rt->reaper;
	int n;

	pthread_rwlock_wrlock(&rp->rw);
	n = rt->ops->reap(rt->ops_priv, is_known, rt);
	count(rt, RT_LEAK_VMM, n, "VMM jail(s)/cgroup(s)");
	if (!rt->cfg.no_network) {
		pthread_mutex_lock(&rt->net_lock);
		n = net_reap(rt->net, is_known, rt);
		pthread_mutex_unlock(&rt->net_lock);
		if (n < 0)
			log_warning_errno(n, "reaping leftover networks");
		count(rt, RT_LEAK_NET, n, "network resource(s)");
	}
	count(rt, RT_LEAK_STATE, reap_state(rt), "state dir(s)");
	count(rt, RT_LEAK_IP, reap_ips(rt), "address lease(s)");
	count(rt, RT_LEAK_IMAGE, reap_holds(rt), "image hold(s)");
	count(rt, RT_LEAK_VOLUME, reap_volumes(rt), "VM(s)' volumes");
	atomic_fetch_add(&rp->passes, 1);
	pthread_rwlock_unlock(&rp->rw);
}

static void *reaper_main(void *arg)
{
	struct runtime *rt = arg;
	struct rt_reaper *rp = rt->reaper;
	unsigned ms =
		rt->cfg.reap_interval_ms ? rt->cfg.reap_interval_ms : REAP_INTERVAL_DEFAULT_MS;

	pthread_mutex_lock(&rp->mx);
	while (!rp->stop) {
		struct timespec t = clock_after_ms(CLOCK_MONOTONIC, ms);

		while (!rp->stop && pthread_cond_timedwait(&rp->cond, &rp->mx, &t) != ETIMEDOUT)
			;
		if (rp->stop)
			break;
		pthread_mutex_unlock(&rp->mx);
		rt_reap_pass(rt);
		pthread_mutex_lock(&rp->mx);
	}
	pthread_mutex_unlock(&rp->mx);
	return NULL;
}

int rt_reaper_start(struct runtime *rt)
{
	struct rt_reaper *rp = rt->reaper;
	int r;

	r = thread_create_nosig(&rp->thread, reaper_main, rt);
	if (r < 0)
		return r;
	rp->running = true;
	return 0;
}

void rt_reaper_stop(struct runtime *rt)
{
	struct rt_reaper *rp = rt->reaper;

	if (!rp || !rp->running)
		return;
	pthread_mutex_lock(&rp->mx);
	rp->stop = true;
	pthread_cond_signal(&rp->cond);
	pthread_mutex_unlock(&rp->mx);
	{
		/* A pass waits for running jobs (a pull can take minutes): bounded. */
		struct timespec ts = clock_after_ms(CLOCK_REALTIME, RT_SHUTDOWN_REAPER_MS);

		if (pthread_timedjoin_np(rp->thread, NULL, &ts) != 0) {
			log_warning("shutdown: the leak reaper's pass is still waiting, abandoned");
			rp->abandoned = true;
			pthread_detach(rp->thread);
			return;
		}
	}
	rp->running = false;
}

bool rt_reaper_abandoned(const struct runtime *rt)
{
	return rt->reaper && rt->reaper->abandoned;
}

int rt_reaper_metrics(struct runtime *rt, char **buf, size_t *len)
{
	char *out = NULL;
	size_t size = 0;
	FILE *f;

	if (!rt->reaper)
		return 0;
	f = open_memstream(&out, &size);
	if (!f)
		return -ENOMEM;
	fwrite(*buf, 1, *len, f);
	fputs("# HELP mvmfs_leaks_reaped_total Host resources with this node's marks but no VM, "
	      "removed.\n# TYPE mvmfs_leaks_reaped_total counter\n",
	      f);
	for (int k = 0; k < _RT_LEAK_MAX; k++)
		fprintf(f, "mvmfs_leaks_reaped_total{kind=\"%s\"} %llu\n", leak_kind[k],
			(unsigned long long)atomic_load(&rt->reaper->n[k]));
	fputs("# HELP mvmfs_reap_passes_total Leak reaper passes done.\n"
	      "# TYPE mvmfs_reap_passes_total counter\n",
	      f);
	fprintf(f, "mvmfs_reap_passes_total %llu\n",
		(unsigned long long)atomic_load(&rt->reaper->passes));
	if (fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	free(*buf);
	*buf = out;
	*len = size;
	return 0;
}
