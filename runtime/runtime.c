/* SPDX-License-Identifier: MIT */
/*
 * The runtime: construction (configuration checked, backend, network, image store), start
 * (re-adoption, bridge, reaper pass, threads), the bounded shutdown and the free, in that order
 * (docs/contract.md, "The daemon").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "config.h"
#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "parse.h"
#include "report.h"
#include "volume.h"

/* Settings left 0 or NULL take their defaults: the one place they are set (the daemon's --help
 * states them; the jail base and the bridge are the build's DEFAULT_CHROOT_BASE and
 * DEFAULT_BRIDGE). */
static int config_defaults(struct runtime *rt)
{
	struct runtime_config *c = &rt->cfg;

	if (!c->vcpus)
		c->vcpus = RUNTIME_DEFAULT_VCPUS;
	if (!c->mem_mib)
		c->mem_mib = RUNTIME_DEFAULT_MEM_MIB;
	if (!c->data_disk_bytes)
		c->data_disk_bytes = 1ULL << 30;
	if (!c->volume_bytes)
		c->volume_bytes = VOLUME_SIZE_DEFAULT;
	if (!c->stop_timeout_ms)
		c->stop_timeout_ms = 10000;
	if (!c->max_vms)
		c->max_vms = RUNTIME_DEFAULT_MAX_VMS;
	if (!c->uid_base)
		c->uid_base = RUNTIME_DEFAULT_UID_BASE;
	if (!c->uid_count)
		c->uid_count = RUNTIME_DEFAULT_UID_COUNT;
	if (!c->chroot_base)
		c->chroot_base = DEFAULT_CHROOT_BASE;
	if (!c->bridge)
		c->bridge = DEFAULT_BRIDGE;
	/* Kernel and initramfs default to files under the state dir. */
	if (!c->kernel) {
		if (asprintf(&rt->default_kernel, "%s/guest/vmlinux", c->state_dir) < 0) {
			rt->default_kernel = NULL;
			return -ENOMEM;
		}
		c->kernel = rt->default_kernel;
	}
	if (!c->initrd) {
		if (asprintf(&rt->default_initrd, "%s/guest/initramfs.cpio.gz", c->state_dir) < 0) {
			rt->default_initrd = NULL;
			return -ENOMEM;
		}
		c->initrd = rt->default_initrd;
	}
	return 0;
}

/* The host side: the VMM backend, the network context, the image store. */
static int open_host(struct runtime *rt, struct err *err)
{
	const struct runtime_config *c = &rt->cfg;
	struct net_config nc = {
		.state_dir = c->state_dir,
		.database_url = c->database_url,
		.database_timeout_ms = c->database_timeout_ms,
		.node_id = c->node_id,
		.bridge = c->bridge,
		.ipv6_prefix = c->ipv6_prefix,
		.no_host_plumbing = c->no_network,
	};
	struct img_store_config ic = {
		.state_dir = c->state_dir,
		.insecure = c->insecure_registries,
		.docker_config = c->docker_config,
		.verify_keys = c->verify_keys,
		.keep_bytes = c->image_keep_bytes ? c->image_keep_bytes : 10ULL << 30,
		.limits = {.pull_timeout_ms = c->pull_timeout_ms,
			   .stall_timeout_ms = c->pull_stall_timeout_ms,
			   .disk_reserve = c->disk_reserve_bytes,
			   .max_manifest_bytes = c->max_manifest_bytes,
			   .max_config_bytes = c->max_config_bytes,
			   .max_layer_bytes = c->max_layer_bytes,
			   .max_image_bytes = c->max_image_bytes},
	};
	int r;

	rt->ops = c->vmm == VMM_QEMU ? &vmm_qemu_ops : &vmm_firecracker_ops;
	r = rt->ops->init(&rt->cfg, &rt->ops_priv, err);
	if (r < 0)
		return err_prefix(err, "%s backend: ", c->vmm == VMM_QEMU ? "qemu" : "firecracker");
	r = net_ctx_new(&nc, &rt->net, err);
	if (r < 0)
		return err_prefix(err, "network: ");
	r = img_store_new(&ic, &rt->store, err);
	if (r < 0)
		return err_prefix(err, "image store: ");
	r = volume_store_new(c->state_dir, c->volume_bytes, &rt->volumes, err);
	if (r < 0)
		return err_prefix(err, "volumes: ");
	return 0;
}

/* Everything but the threads (runtime_start); on failure, what was built is freed. */
int runtime_new(const struct runtime_config *cfg, struct runtime **ret, struct err *err)
{
	struct runtime *rt;
	char path[4200];
	int r;

	if (!cfg->state_dir)
		return err_set(err, -EINVAL, "no state dir");
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->cfg = *cfg;
	rt->epfd = rt->evfd = rt->tick_fd = -EBADF;
	pthread_mutex_init(&rt->lock, NULL);
	pthread_mutex_init(&rt->q_lock, NULL);
	pthread_mutex_init(&rt->net_lock, NULL);
	pthread_mutex_init(&rt->tpl_lock, NULL);
	atomic_init(&rt->stopping, false);
	if (rt_reaper_new(rt) < 0) {
		free(rt);
		return -ENOMEM;
	}
	rt->prepare_image = rt_prepare_image;
	r = config_defaults(rt);
	if (r < 0)
		goto fail;
	if (rt->cfg.uid_base == 0 || (uint64_t)rt->cfg.uid_base + rt->cfg.uid_count >= UINT32_MAX) {
		r = err_set(err, -EINVAL,
			    "the uid range (and the template VM's uid after it) must not include 0 "
			    "and must fit");
		goto fail;
	}
	rt->index_used = calloc(rt->cfg.uid_count, 1);
	if (!rt->index_used) {
		r = -ENOMEM;
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/vms", rt->cfg.state_dir);
	r = mkdir_p(path, 0700);
	if (r < 0) {
		err_set(err, r, "creating %s: %s", path, strerror(-r));
		goto fail;
	}
	r = open_host(rt, err);
	if (r < 0)
		goto fail;
	rt->epfd = epoll_create1(EPOLL_CLOEXEC);
	rt->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rt->epfd < 0 || rt->evfd < 0) {
		r = -errno;
		err_set(err, r, "epoll/eventfd: %s", strerror(-r));
		goto fail;
	}
	*ret = rt;
	return 0;
fail:
	runtime_free(rt);
	return r;
}

void runtime_set_notify(struct runtime *rt, vm_notify_cb cb, void *ud)
{
	rt->notify = cb;
	rt->notify_ud = ud;
}

int runtime_metrics(struct runtime *rt, char **ret, size_t *ret_len)
{
	int r = metrics_node_show(rt, ret, ret_len);

	if (r >= 0 && (r = rt_reaper_metrics(rt, ret, ret_len)) < 0) {
		free(*ret);
		*ret = NULL;
	}
	return r;
}

int runtime_start(struct runtime *rt, struct err *err)
{
	int r;

	/* Volumes a crash left half created, grown or destroyed: finished or removed. */
	r = volume_store_recover(rt->volumes, err);
	if (r < 0)
		return err_prefix(err, "volumes: ");
	r = rt_adopt_all(rt, err);
	if (r < 0)
		return r;
	if (!rt->cfg.no_network) {
		pthread_mutex_lock(&rt->net_lock);
		r = net_bridge_ensure(rt->net, err);
		pthread_mutex_unlock(&rt->net_lock);
		if (r < 0)
			return err_prefix(err, "bridge: ");
	}
	rt_reap_pass(rt);      /* leftovers of VMs that are not in the records (reaper.c) */
	(void)template_gc(rt); /* templates of other inputs, broken ones (docs/template.md) */
	/* Adopted VMMs: watched before the loop starts (single-threaded still). */
	for (struct vm *v = rt->vms; v; v = v->next)
		if (v->h.pidfd >= 0 && sv_watch_pidfd(rt, v) < 0)
			log_error("%s: cannot watch the VMM pidfd", v->name);
	r = workers_start(rt);
	if (r < 0)
		return err_set(err, r, "starting workers: %s", strerror(-r));
	r = sv_start(rt);
	if (r < 0)
		return err_set(err, r, "starting the supervisor: %s", strerror(-r));
	/* The default layout's template, built in the background: no start waits for it. */
	(void)template_build_default(rt);
	r = rt_reaper_start(rt);
	if (r < 0)
		return err_set(err, r, "starting the leak reaper: %s", strerror(-r));
	return rt_report_start(rt, err);
}

/* Image steps in flight give up: their starts are recorded as starting, and the next daemon
 * ends them failed ("interrupted by a daemon restart"); no VMM runs for them yet. */
static void cancel_pulls(struct runtime *rt)
{
	pthread_mutex_lock(&rt->lock);
	for (struct vm *v = rt->vms; v; v = v->next)
		if (atomic_load(&v->pulling))
			atomic_store(&v->img_cancel, true);
	pthread_mutex_unlock(&rt->lock);
}

void runtime_shutdown(struct runtime *rt)
{
	if (!rt || rt->shut_down)
		return;
	rt->shut_down = true;
	atomic_store(&rt->tpl_cancel, true); /* a template build ends within its bounded stop */
	cancel_pulls(rt);
	/* A mkdir waiting on the database ends now (EIO), not at its deadline. */
	if (rt->net)
		net_ip_cancel(rt->net);
	rt_reaper_stop(rt);
	if (rt->cfg.stop_vms_on_exit && rt->sv_running) {
		/* Graceful stops (SIGKILL at each VM's deadline), then wait for the cleanups. */
		unsigned ms = rt->cfg.stop_timeout_ms + 5000;
		for (unsigned waited = 0; waited < ms; waited += 50) {
			bool busy = false;
			pthread_mutex_lock(&rt->lock);
			for (struct vm *v = rt->vms; v; v = v->next) {
				enum vm_state st = vm_get_state(v);
				if (st == VM_STATE_RUNNING || st == VM_STATE_STARTING ||
				    st == VM_STATE_STOPPING) {
					busy = true;
					(void)vm_command_post(v, VM_VERB_STOP, NULL, NULL);
				}
			}
			pthread_mutex_unlock(&rt->lock);
			if (!busy)
				break;
			usleep(50000);
		}
	}
	cancel_pulls(rt);
	sv_stop(rt);
	/* Whatever still waits on the outside world past the budget is abandoned: the records
	 * (written before each step is visible) let the next daemon finish or undo it. */
	(void)workers_stop(rt, RT_SHUTDOWN_WORKERS_MS);
	rt_report_stop(rt);
}

bool runtime_shutdown_abandoned(const struct runtime *rt)
{
	return rt && (rt->workers_abandoned || rt_reaper_abandoned(rt));
}

struct runtime *runtime_free(struct runtime *rt)
{
	if (!rt)
		return NULL;
	runtime_shutdown(rt);
	if (runtime_shutdown_abandoned(rt)) {
		/* Threads still use it: the process is about to exit, leave it to the kernel. */
		log_warning("runtime not freed: jobs still in flight at exit");
		return NULL;
	}
	sv_discard(rt);
	while (rt->vms) {
		struct vm *v = rt->vms;
		struct vm_waiter w[VM_WAITERS_MAX];
		unsigned n;

		rt->vms = v->next;
		vm_agent_stop(v);
		sv_unwatch(rt, v);
		/* Writers still waiting on a transition get an answer; the VM goes on. */
		pthread_mutex_lock(&v->lock);
		n = v->n_waiters;
		memcpy(w, v->waiters, sizeof(w));
		v->n_waiters = 0;
		pthread_mutex_unlock(&v->lock);
		for (unsigned i = 0; i < n; i++)
			if (w[i].done)
				w[i].done(w[i].ud, -EINTR);
		vm_unref(v);
	}
	rt_report_free(rt);
	rt_reaper_free(rt);
	net_ctx_free(rt->net);
	img_store_free(rt->store);
	volume_store_free(rt->volumes);
	if (rt->ops && rt->ops_priv)
		rt->ops->free(rt->ops_priv);
	safe_close(rt->epfd);
	safe_close(rt->evfd);
	free(rt->index_used);
	free(rt->default_kernel);
	free(rt->default_initrd);
	pthread_mutex_destroy(&rt->lock);
	pthread_mutex_destroy(&rt->q_lock);
	pthread_mutex_destroy(&rt->net_lock);
	pthread_mutex_destroy(&rt->tpl_lock);
	free(rt);
	return NULL;
}
