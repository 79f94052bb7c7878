/* SPDX-License-Identifier: MIT */
/*
 * The runtime: construction and shutdown order, the VM table (create, destroy, get, list),
 * records on every state change, and re-adoption of recorded VMs at start (docs/contract.md, "The
 * daemon").
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
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

/* Under rt->lock. */
static struct vm *find_locked(struct runtime *rt, const char *name)
{
	for (struct vm *v = rt->vms; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static void unlink_vm(struct runtime *rt, struct vm *vm)
{
	pthread_mutex_lock(&rt->lock);
	for (struct vm **pp = &rt->vms; *pp; pp = &(*pp)->next) {
		if (*pp == vm) {
			*pp = vm->next;
			rt->n_vms--;
			if (vm->index < rt->cfg.uid_count)
				rt->index_used[vm->index] = 0;
			pthread_mutex_unlock(&rt->lock);
			vm_unref(vm); /* the table's reference */
			return;
		}
	}
	pthread_mutex_unlock(&rt->lock);
}

/* Under rt->lock: insert with a free index (or the given one). */
static int insert_locked(struct runtime *rt, struct vm *vm, long want_index)
{
	if (want_index >= 0) {
		if ((uint64_t)want_index >= rt->cfg.uid_count || rt->index_used[want_index])
			return -ENOSPC;
		vm->index = (uint32_t)want_index;
	} else {
		uint32_t i;
		for (i = 0; i < rt->cfg.uid_count && rt->index_used[i]; i++)
			;
		if (i == rt->cfg.uid_count)
			return -ENOSPC;
		vm->index = i;
	}
	rt->index_used[vm->index] = 1;
	vm->next = rt->vms;
	rt->vms = vm;
	rt->n_vms++;
	return 0;
}

struct create_req {
	vm_done_cb done;
	void *ud;
};

/* Give vm the address ip unless another VM of this node holds it (a database row that
 * duplicates a local VM's address). Checked and set under rt->lock, so two creates racing for one
 * address cannot both win. */
static int ip_claim(struct runtime *rt, struct vm *vm, const struct in6_addr *ip, struct err *err)
{
	char holder[sizeof(vm->name)] = "", text[INET6_ADDRSTRLEN];

	pthread_mutex_lock(&rt->lock);
	for (struct vm *o = rt->vms; o; o = o->next) {
		if (o == vm)
			continue;
		pthread_mutex_lock(&o->lock);
		if (o->has_ip && memcmp(&o->ip, ip, sizeof(*ip)) == 0)
			snprintf(holder, sizeof(holder), "%s", o->name);
		pthread_mutex_unlock(&o->lock);
		if (holder[0])
			break;
	}
	if (!holder[0]) {
		pthread_mutex_lock(&vm->lock);
		vm->ip = *ip;
		vm->has_ip = true;
		pthread_mutex_unlock(&vm->lock);
	}
	pthread_mutex_unlock(&rt->lock);
	if (!holder[0])
		return 0;
	inet_ntop(AF_INET6, ip, text, sizeof(text));
	return err_set(err, -EINVAL,
		       "the address of '%s' (instances.ip_address '%s') is already held by VM "
		       "'%s' on this node",
		       vm->name, text, holder);
}

static void job_create(struct runtime *rt, struct vm *vm, void *arg)
{
	struct create_req *req = arg;
	struct in6_addr ip;
	struct err err = {};
	char dir[4200];
	int r;

	snprintf(dir, sizeof(dir), "%s/vms/%s", rt->cfg.state_dir, vm->name);
	(void)rm_rf(dir); /* a leftover without a record is not a VM */
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		err_set(&err, r, "creating %s", dir);
		goto fail;
	}
	/* Not under net_lock: with a database this is a network round trip (bounded by
	 * --database-timeout), and other VMs' plumbing must not wait for it. */
	r = net_ip_assign(rt->net, vm->name, &ip, &err);
	if (r < 0)
		goto fail;
	r = ip_claim(rt, vm, &ip, &err);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&vm->lock);
	vm->live = true;
	pthread_mutex_unlock(&vm->lock);
	vm_record_save(vm);
	rt_report_notify(rt, vm, VM_ATTR_STATE);
	if (req->done)
		req->done(req->ud, 0);
	free(req);
	return;
fail:
	log_info("%s: create failed: %s", vm->name, err.msg);
	(void)rm_rf(dir);
	unlink_vm(rt, vm);
	if (req->done)
		req->done(req->ud, r == -ENOSPC ? -ENOSPC : -EIO);
	free(req);
}

int runtime_vm_create(struct runtime *rt, const char *name, vm_done_cb done, void *ud)
{
	struct create_req *req;
	struct vm *vm;
	int r;

	if (!vm_name_is_valid(name))
		return -EINVAL;
	req = calloc(1, sizeof(*req));
	vm = vm_new(rt, name);
	if (!req || !vm) {
		free(req);
		vm_unref(vm);
		return -ENOMEM;
	}
	req->done = done;
	req->ud = ud;
	pthread_mutex_lock(&rt->lock);
	if (find_locked(rt, name))
		r = -EEXIST;
	else if (rt->n_vms >= rt->cfg.max_vms)
		r = -ENOSPC;
	else
		r = insert_locked(rt, vm, -1);
	pthread_mutex_unlock(&rt->lock);
	if (r < 0) {
		free(req);
		vm_unref(vm);
		return r;
	}
	r = rt_job_long(rt, vm, job_create, req);
	if (r < 0) {
		unlink_vm(rt, vm);
		free(req);
	}
	return r;
}

static void job_destroy(struct runtime *rt, struct vm *vm, void *arg)
{
	struct create_req *req = arg;
	struct err err = {};
	struct vmm_handle h;
	char dir[4200];

	/* Tombstone: a daemon killed during the teardown finishes it at the next start
	 * (reaper.c) instead of re-adopting a half-destroyed VM. */
	snprintf(dir, sizeof(dir), "%s/vms/%s/" RT_DESTROY_MARK, rt->cfg.state_dir, vm->name);
	{
		int fd = open(dir, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			log_warning("%s: cannot mark the destroy: %m", vm->name);
		safe_close(fd);
	}
	/* cleanup() clears names in the handle it is given, and the supervisor may still be
	 * copying vm->h into a record (vm_record_save, under rec_lock): work on a copy. */
	pthread_mutex_lock(&vm->rec_lock);
	h = vm->h;
	pthread_mutex_unlock(&vm->rec_lock);
	rt->ops->cleanup(rt->ops_priv, vm->name, &h);
	(void)rt_kill_strays(rt, vm->name, 0, 2000);
	pthread_mutex_lock(&rt->net_lock);
	if (!rt->cfg.no_network && net_vm_teardown(rt->net, vm->name, &err) < 0)
		log_warning("%s: network teardown: %s", vm->name, err.msg);
	pthread_mutex_unlock(&rt->net_lock);
	if (net_ip_release(rt->net, vm->name, &err) < 0) /* thread-safe, no net_lock */
		log_warning("%s: releasing the address: %s", vm->name, err.msg);
	if (rt->store) {
		int64_t freed;
		(void)img_release(rt->store, vm->name);
		/* Unused images beyond --image-keep go when their last VM does. */
		freed = img_gc(rt->store);
		if (freed > 0)
			log_info("image store: freed %" PRId64 " bytes of unused images", freed);
	}
	pthread_mutex_lock(&vm->rec_lock); /* no record write may race the removal */
	snprintf(dir, sizeof(dir), "%s/vms/%s", rt->cfg.state_dir, vm->name);
	(void)rm_rf(dir);
	pthread_mutex_unlock(&vm->rec_lock);
	rt_report_destroyed(rt, vm);
	unlink_vm(rt, vm);
	if (req->done)
		req->done(req->ud, 0);
	free(req);
}

int runtime_vm_destroy(struct runtime *rt, const char *name, vm_done_cb done, void *ud)
{
	struct create_req *req;
	struct vm *vm;
	int r = 0;

	pthread_mutex_lock(&rt->lock);
	vm = find_locked(rt, name);
	if (!vm) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&vm->lock);
	if (!vm->live)
		r = -ENOENT;
	else if (vm->cmd_pending || vm->lc.exiting || vm->n_waiters ||
		 !(vm->lc.state == VM_STATE_CREATED || vm->lc.state == VM_STATE_STOPPED ||
		   vm->lc.state == VM_STATE_FAILED))
		r = -EBUSY;
	else {
		vm->live = false;
		vm->destroying = true;
	}
	pthread_mutex_unlock(&vm->lock);
	vm_ref(vm);
	pthread_mutex_unlock(&rt->lock);
	if (r < 0) {
		vm_unref(vm);
		return r;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		vm_unref(vm);
		return -ENOMEM;
	}
	req->done = done;
	req->ud = ud;
	r = rt_job_long(rt, vm, job_destroy, req);
	if (r < 0)
		free(req);
	vm_unref(vm);
	return r;
}

struct vm *runtime_vm_get(struct runtime *rt, const char *name)
{
	struct vm *vm;
	bool live = false;

	pthread_mutex_lock(&rt->lock);
	vm = find_locked(rt, name);
	if (vm) {
		pthread_mutex_lock(&vm->lock);
		live = vm->live;
		pthread_mutex_unlock(&vm->lock);
	}
	vm = live ? vm_ref(vm) : NULL;
	pthread_mutex_unlock(&rt->lock);
	return vm;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int runtime_vm_list(struct runtime *rt, char ***ret)
{
	size_t n = 0, bytes = 0;
	char **arr, *p;

	pthread_mutex_lock(&rt->lock);
	for (struct vm *v = rt->vms; v; v = v->next) {
		n++;
		bytes += strlen(v->name) + 1;
	}
	arr = malloc((n + 1) * sizeof(char *) + bytes);
	if (!arr) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOMEM;
	}
	p = (char *)(arr + n + 1);
	n = 0;
	for (struct vm *v = rt->vms; v; v = v->next) {
		bool live;
		pthread_mutex_lock(&v->lock);
		live = v->live;
		pthread_mutex_unlock(&v->lock);
		if (!live)
			continue;
		arr[n++] = p;
		strcpy(p, v->name);
		p += strlen(v->name) + 1;
	}
	pthread_mutex_unlock(&rt->lock);
	arr[n] = NULL;
	qsort(arr, n, sizeof(char *), cmp_str);
	*ret = arr;
	return (int)n;
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

/* ---- start: records, re-adoption, leftovers ---- */

/* Kill what is left of a recorded VMM (adopted or not) and remove its host resources. */
static void adopt_cleanup(struct runtime *rt, struct vm *vm)
{
	struct err err = {};
	struct vmm_exit ex;

	if (vm->h.pidfd >= 0) {
		struct pollfd pfd = {.fd = vm->h.pidfd, .events = POLLIN};
		(void)rt->ops->kill(rt->ops_priv, &vm->h);
		(void)poll(&pfd, 1, 5000);
		vmm_handle_reap(&vm->h, &ex);
	}
	rt->ops->cleanup(rt->ops_priv, vm->name, &vm->h);
	/* A launch the record announced may have left processes no handle names (intent). */
	(void)rt_kill_strays(rt, vm->name, 0, 2000);
	if (!rt->cfg.no_network) {
		pthread_mutex_lock(&rt->net_lock);
		(void)net_vm_teardown(rt->net, vm->name, &err);
		pthread_mutex_unlock(&rt->net_lock);
	}
	vmm_handle_init(&vm->h);
}

static bool destroy_marked(struct runtime *rt, const char *name)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/vms/%s/" RT_DESTROY_MARK, rt->cfg.state_dir, name);
	return access(path, F_OK) == 0;
}

static int adopt_one(struct runtime *rt, const char *name)
{
	struct vm_record *rec = calloc(1, sizeof(*rec));
	struct err err = {};
	struct vm *vm;
	int r;

	if (!rec)
		return -ENOMEM;
	r = record_read(rt->cfg.state_dir, name, rec, &err);
	if (r == -ENOENT || (r >= 0 && destroy_marked(rt, name))) {
		/* A create before its record, or a destroy begun: the reaper finishes it. */
		free(rec);
		return 0;
	}
	if (r < 0) {
		log_warning("%s: unreadable record (%s), ignoring", name, err.msg);
		free(rec);
		return 0;
	}
	vm = vm_new(rt, name);
	if (!vm) {
		free(rec);
		return -ENOMEM;
	}
	vm->image = rec->image[0] ? strdup(rec->image) : NULL;
	memcpy(vm->image_digest, rec->image_digest, sizeof(vm->image_digest));
	memcpy(vm->image_key, rec->image_key, sizeof(vm->image_key));
	vm->ip = rec->ip;
	vm->has_ip = rec->has_ip;
	memcpy(vm->error, rec->error, sizeof(vm->error));
	vm->h = rec->h;
	vm->h.pidfd = -EBADF;
	snprintf(vm->rootfs, sizeof(vm->rootfs), "%s", rec->rootfs);
	pthread_mutex_lock(&rt->lock);
	r = insert_locked(rt, vm, rec->index);
	pthread_mutex_unlock(&rt->lock);
	if (r < 0) {
		log_error("%s: record index %u clashes, ignoring", name, rec->index);
		vm_unref(vm);
		free(rec);
		return 0;
	}
	vm->live = true;
	vm->lc.state = rec->state;
	switch (rec->state) {
	case VM_STATE_CREATED:
	case VM_STATE_STOPPED:
	case VM_STATE_FAILED:
		if (rec->h.pid || rec->h.jail_dir[0])
			adopt_cleanup(rt, vm);
		break;
	case VM_STATE_RUNNING:
		r = rt->ops->adopt(rt->ops_priv, name, &vm->h, &err);
		if (r >= 0) {
			/* Exactly one VMM per jail: any other process of it goes. */
			(void)rt_kill_strays(rt, name, vm->h.pid, 2000);
			vm->pid = vm->h.pid;
			vm->hs.vmm_run = VMM_RUN_RUNNING;
			vm->hs.net_known = true;
			vm->hs.net_ok = true;
			vm->net_set_up = !rt->cfg.no_network;
			vm->img_held = true;
			vm_agent_start(rt, vm);
			log_info("%s: re-adopted VMM pid %d", name, (int)vm->pid);
			break;
		}
		vm_set_error(vm,
			     "vmm: the VMM died while the daemon was down (%s); exit status "
			     "unknown",
			     err.msg);
		adopt_cleanup(rt, vm);
		vm->lc.state = VM_STATE_FAILED;
		break;
	case VM_STATE_STARTING:
		/* Half-configured VMM: the safe direction is back to a clean slate. */
		(void)rt->ops->adopt(rt->ops_priv, name, &vm->h, &err);
		adopt_cleanup(rt, vm);
		vm_set_error(vm, "start: interrupted by a daemon restart");
		vm->lc.state = VM_STATE_FAILED;
		break;
	case VM_STATE_STOPPING:
	default:
		/* A stop was asked: finish it. */
		(void)rt->ops->adopt(rt->ops_priv, name, &vm->h, &err);
		adopt_cleanup(rt, vm);
		vm->lc.state = VM_STATE_STOPPED;
		break;
	}
	if (vm->lc.state != rec->state)
		vm_record_save(vm);
	free(rec);
	return 0;
}

static int rt_adopt_all(struct runtime *rt, struct err *err)
{
	char dir[4200];
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	snprintf(dir, sizeof(dir), "%s/vms", rt->cfg.state_dir);
	d = opendir(dir);
	if (!d)
		return err_set(err, -errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		if (!vm_name_is_valid(de->d_name))
			continue;
		r = adopt_one(rt, de->d_name);
		if (r < 0)
			return err_set(err, r, "%s: re-adoption failed", de->d_name);
	}
	return 0;
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
