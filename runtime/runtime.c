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

#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "parse.h"
#include "report.h"

int runtime_new(const struct runtime_config *cfg, struct runtime **ret, struct err *err)
{
	struct runtime *rt;
	struct net_config nc;
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
	atomic_init(&rt->stopping, false);
	if (rt_reaper_new(rt) < 0) {
		free(rt);
		return -ENOMEM;
	}
	rt->prepare_image = rt_prepare_image;
	if (!rt->cfg.vcpus)
		rt->cfg.vcpus = 2;
	if (!rt->cfg.mem_mib)
		rt->cfg.mem_mib = 2048;
	if (!rt->cfg.data_disk_bytes)
		rt->cfg.data_disk_bytes = 1ULL << 30;
	if (!rt->cfg.stop_timeout_ms)
		rt->cfg.stop_timeout_ms = 10000;
	if (!rt->cfg.max_vms)
		rt->cfg.max_vms = 4096;
	if (!rt->cfg.uid_base)
		rt->cfg.uid_base = 200000;
	if (!rt->cfg.uid_count)
		rt->cfg.uid_count = 65536;
	if (!rt->cfg.chroot_base)
		rt->cfg.chroot_base = "/srv/jailer";
	/* Kernel and initramfs default to files under the state dir. */
	if (!rt->cfg.kernel) {
		if (asprintf(&rt->default_kernel, "%s/guest/vmlinux", cfg->state_dir) < 0) {
			rt->default_kernel = NULL;
			runtime_free(rt);
			return -ENOMEM;
		}
		rt->cfg.kernel = rt->default_kernel;
	}
	if (!rt->cfg.initrd) {
		if (asprintf(&rt->default_initrd, "%s/guest/initramfs.cpio.gz", cfg->state_dir) <
		    0) {
			rt->default_initrd = NULL;
			runtime_free(rt);
			return -ENOMEM;
		}
		rt->cfg.initrd = rt->default_initrd;
	}
	if (rt->cfg.uid_base == 0 || (uint64_t)rt->cfg.uid_base + rt->cfg.uid_count > UINT32_MAX) {
		runtime_free(rt);
		return err_set(err, -EINVAL, "the uid range must not include 0 and must fit");
	}
	rt->index_used = calloc(rt->cfg.uid_count, 1);
	if (!rt->index_used) {
		runtime_free(rt);
		return -ENOMEM;
	}
	rt->ops = cfg->vmm == VMM_QEMU ? &vmm_qemu_ops : &vmm_firecracker_ops;
	snprintf(path, sizeof(path), "%s/vms", rt->cfg.state_dir);
	r = mkdir_p(path, 0700);
	if (r < 0) {
		runtime_free(rt);
		return err_set(err, r, "creating %s: %s", path, strerror(-r));
	}
	r = rt->ops->init(&rt->cfg, &rt->ops_priv, err);
	if (r < 0) {
		runtime_free(rt);
		return err_prefix(err,
				  "%s backend: ", cfg->vmm == VMM_QEMU ? "qemu" : "firecracker");
	}
	nc = (struct net_config){
		.state_dir = rt->cfg.state_dir,
		.database_url = rt->cfg.database_url,
		.database_timeout_ms = rt->cfg.database_timeout_ms,
		.node_id = rt->cfg.node_id,
		.bridge = rt->cfg.bridge ? rt->cfg.bridge : "mvmbr0",
		.ipv6_prefix = rt->cfg.ipv6_prefix,
		.no_host_plumbing = rt->cfg.no_network,
	};
	r = net_ctx_new(&nc, &rt->net, err);
	if (r < 0) {
		runtime_free(rt);
		return err_prefix(err, "network: ");
	}
	{
		struct img_store_config ic = {
			.state_dir = rt->cfg.state_dir,
			.insecure = rt->cfg.insecure_registries,
			.docker_config = rt->cfg.docker_config,
			.verify_keys = rt->cfg.verify_keys,
			.keep_bytes =
				rt->cfg.image_keep_bytes ? rt->cfg.image_keep_bytes : 10ULL << 30,
			.limits = {.pull_timeout_ms = rt->cfg.pull_timeout_ms,
				   .stall_timeout_ms = rt->cfg.pull_stall_timeout_ms,
				   .disk_reserve = rt->cfg.disk_reserve_bytes,
				   .max_manifest_bytes = rt->cfg.max_manifest_bytes,
				   .max_config_bytes = rt->cfg.max_config_bytes,
				   .max_layer_bytes = rt->cfg.max_layer_bytes,
				   .max_image_bytes = rt->cfg.max_image_bytes},
		};
		r = img_store_new(&ic, &rt->store, err);
		if (r < 0) {
			runtime_free(rt);
			return err_prefix(err, "image store: ");
		}
	}
	rt->epfd = epoll_create1(EPOLL_CLOEXEC);
	rt->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rt->epfd < 0 || rt->evfd < 0) {
		r = -errno;
		runtime_free(rt);
		return err_set(err, r, "epoll/eventfd: %s", strerror(-r));
	}
	*ret = rt;
	return 0;
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
	rt_reap_pass(rt); /* leftovers of VMs that are not in the records (reaper.c) */
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
	free(rt);
	return NULL;
}
