/* SPDX-License-Identifier: MIT */
/*
 * The template build job (docs/template.md): on the outside pool, queued at daemon start for the
 * node's default layout (a 1 GiB root device, the --data-disk-size writable disk, a NIC, no
 * volumes) and by a start that found no template for its key (that start cold-boots at once).
 * The template VM is the daemon's own: an id no VM name can take (TPL_ID_PREFIX + the key, 37
 * characters), the uid/gid right after the VMs' range, a namespace with only its TAP (the guest
 * configures no network), sparse disks of the layout's sizes in the build dir, the template-mode
 * initramfs, the backend's normal launch; then template_capture and a complete teardown. Every
 * wait is bounded, and the daemon's shutdown (rt->tpl_cancel) cuts it short.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log.h"

/* + the 16 hex digits of the key: 37 characters, more than a VM name may have (36), within the
 * jailer's id rule (64); the same for every daemon's build of that key on this node. */
#define TPL_ID_PREFIX "mvmfs-template-build-"

/* At most one build per key queued or running in this daemon (another daemon, or a stale
 * one, is kept off by the build dir's mkdir and flock): its slot, the job's argument, until the
 * job ends (a job dropped unrun at shutdown holds no memory of its own). NULL: already there,
 * or no free slot. */
static struct rt_tpl_build *build_claim(struct runtime *rt, const struct tpl_plan *t)
{
	struct rt_tpl_build *slot = NULL;
	bool dup = false;

	pthread_mutex_lock(&rt->tpl_lock);
	for (int i = 0; i < RT_TPL_BUILDS_MAX && !dup; i++) {
		struct rt_tpl_build *b = &rt->tpl_builds[i];

		if (strcmp(b->key, t->key) == 0) {
			/* Its job may be past the point where it found the template there (a
			 * start found it corrupt since): it looks again when done. */
			b->again = true;
			dup = true;
		} else if (!b->key[0] && !slot)
			slot = b;
	}
	if (dup)
		slot = NULL;
	if (slot) {
		snprintf(slot->key, sizeof(slot->key), "%s", t->key);
		slot->root = t->root;
		slot->data = t->data;
		slot->again = false;
	}
	pthread_mutex_unlock(&rt->tpl_lock);
	return slot;
}

static void build_unclaim(struct runtime *rt, struct rt_tpl_build *slot)
{
	pthread_mutex_lock(&rt->tpl_lock);
	slot->key[0] = '\0';
	pthread_mutex_unlock(&rt->tpl_lock);
}

/* The job ends and frees its slot, unless it was asked for again meanwhile. */
static bool build_done(struct runtime *rt, struct rt_tpl_build *slot)
{
	bool again;

	pthread_mutex_lock(&rt->tpl_lock);
	again = slot->again && !atomic_load(&rt->tpl_cancel);
	slot->again = false;
	if (!again)
		slot->key[0] = '\0';
	pthread_mutex_unlock(&rt->tpl_lock);
	return !again;
}

/* A sparse file of size bytes (the guest sees a device of that size; template mode mounts
 * nothing, so its content never matters). */
static int sparse_file(const char *path, long long size, mode_t mode)
{
	_cleanup_close_ int fd =
		open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);

	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0 || ftruncate(fd, (off_t)size) < 0)
		return -errno;
	return 0;
}

static double since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Boot the template VM of t (mode BUILD) and capture it. Everything it made on the host is
 * gone when it returns, whatever the result (the build dir: the caller's). */
static int build(struct runtime *rt, struct tpl_plan *t, struct err *err)
{
	const struct runtime_config *c = &rt->cfg;
	char id[VMM_ID_MAX + 1], work[4500], run[4600], park[4700], root[4600], data[4600],
		console[4600];
	struct net_vm_info net = {0};
	struct vmm_handle h;
	atomic_int pid = 0;
	bool net_up = false;
	uid_t uid = c->uid_base + c->uid_count; /* right after every VM's */
	int r;

	snprintf(id, sizeof(id), TPL_ID_PREFIX "%s", t->key);
	snprintf(work, sizeof(work), "%s/" TPL_WORK, t->dir);
	snprintf(run, sizeof(run), "%s/run", work);
	snprintf(park, sizeof(park), "%s/suspend", run); /* where QEMU keeps the RAM file */
	snprintf(root, sizeof(root), "%s/root.img", work);
	snprintf(data, sizeof(data), "%s/data.img", work);
	snprintf(console, sizeof(console), "%s/console.log", work);
	vmm_handle_init(&h);
	r = mkdir_p(run, 0700);
	if (r < 0)
		return err_set(err, r, "%s: %s", run, strerror(-r));
	/* The root disk is read by the VMM as it is (world-readable, as an image's); the data
	 * disk becomes the template VM's at launch. */
	if ((r = sparse_file(root, t->root, 0644)) < 0 ||
	    (r = sparse_file(data, t->data, 0600)) < 0)
		return err_set(err, r, "the layout's disks: %s", strerror(-r));
	r = template_write_initrd(rt, t, err);
	if (r < 0)
		return err_prefix(err, "initramfs: ");
	/* Leftovers of a killed daemon's build of this key, if the reaper has not seen them. */
	(void)rt_kill_strays(rt, id, 0, 2000);
	pthread_mutex_lock(&rt->net_lock);
	net_up = true;
	r = net_vm_setup_unplugged(rt->net, id, uid, (gid_t)uid, &net, err);
	pthread_mutex_unlock(&rt->net_lock);
	if (r >= 0) {
		struct vmm_launch p = {
			.name = id,
			.index = c->uid_count,
			.uid = uid,
			.gid = (gid_t)uid,
			.netns_path = net.netns_path,
			.tap_name = net.tap_name,
			.mac = net.mac,
			.kernel = c->kernel,
			.initrd = t->initrd,
			.rootfs = root,
			.data_disk = data,
			.boot_args = "",
			.vcpus = c->vcpus,
			.mem_mib = c->mem_mib,
			.run_dir = run,
			.console_log = console,
			.cancel = &rt->tpl_cancel,
			.pid_out = &pid,
		};

		r = rt->ops->launch(rt->ops_priv, &p, &h, err);
		if (r >= 0)
			r = template_capture(rt, id, &h, t, park, &rt->tpl_cancel, err);
	}
	/* The template's VMM ends once its state is written; nothing of it stays. */
	vmm_handle_kill_wait(&h, 5000);
	(void)rt_kill_strays(rt, id, 0, 2000);
	rt->ops->cleanup(rt->ops_priv, id, &h);
	if (net_up) {
		struct err e = {0};

		pthread_mutex_lock(&rt->net_lock);
		if (net_vm_teardown(rt->net, id, &e) < 0)
			log_warning("template: %s: network teardown: %s", id, e.msg);
		pthread_mutex_unlock(&rt->net_lock);
	}
	return r;
}

/* One pass: the template of b built unless it exists or is being built. */
static void build_once(struct runtime *rt, const struct rt_tpl_build *b)
{
	struct tpl_plan t;
	struct timespec t0;
	struct err err = {0};
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = template_key(rt, b->root, b->data, &t);
	if (r >= 0 && !atomic_load(&rt->tpl_cancel))
		r = template_build_begin(&t);
	if (r == -EEXIST || r == -EBUSY || r == -ENOTSUP || atomic_load(&rt->tpl_cancel)) {
		template_abandon(&t); /* built already, being built, or no templates */
	} else if (r < 0) {
		log_warning("template: cannot build %s: %s", t.final[0] ? t.final : b->key,
			    t.why[0] ? t.why : strerror(-r));
	} else {
		log_info("template: building %s in the background", t.final);
		r = build(rt, &t, &err);
		if (r < 0) {
			log_warning("template: not built: %s: starts cold-boot until it is",
				    err.msg[0] ? err.msg : strerror(-r));
			template_abandon(&t);
		} else {
			log_info("template: built %s in %.2f s", t.final, since(&t0));
			template_release(&t);
			(void)template_gc(rt); /* templates of other inputs go once this is there */
		}
	}
}

static void job_template_build(struct runtime *rt, struct vm *unused, void *arg)
{
	struct rt_tpl_build *slot = arg, b;

	(void)unused;
	do {
		pthread_mutex_lock(&rt->tpl_lock);
		b = *slot;
		pthread_mutex_unlock(&rt->tpl_lock);
		build_once(rt, &b);
	} while (!build_done(rt, slot));
}

int template_build_queue(struct runtime *rt, const struct tpl_plan *t)
{
	struct rt_tpl_build *slot;
	int r;

	if (!t->key[0] || !rt->net || rt->cfg.no_network || rt->cfg.no_template)
		return -ENOTSUP;
	slot = build_claim(rt, t);
	if (!slot)
		return 0; /* queued or running already (or RT_TPL_BUILDS_MAX are) */
	r = rt_job_long(rt, NULL, job_template_build, slot);
	if (r < 0)
		build_unclaim(rt, slot);
	return r;
}
int template_build_default(struct runtime *rt)
{
	struct tpl_plan t;
	int r;

	r = template_key(rt, (long long)IMG_ROOT_DISK_ALIGN, (long long)rt->cfg.data_disk_bytes,
			 &t);
	if (r < 0) {
		if (!rt->cfg.no_template)
			log_info("template: none built: %s", t.why);
		return r;
	}
	if (access(t.final, F_OK) == 0)
		return 0;
	return template_build_queue(rt, &t);
}
