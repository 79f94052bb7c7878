/* SPDX-License-Identifier: MIT */
/*
 * The worker pool and the blocking jobs the lifecycle queues: launch (image, network, data
 * disk, backend launch), the graceful stop request, and the cleanup after a VMM exited. A job
 * never changes a VM's state itself; it posts its outcome to the supervisor as an event.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "guest-config.h"
#include "internal.h"
#include "jail-path.h"
#include "log.h"

struct job {
	job_fn fn;
	struct vm *vm;
	void *arg;
	struct job *next;
};

int rt_job(struct runtime *rt, struct vm *vm, job_fn fn, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->vm = vm_ref(vm);
	j->arg = arg;
	pthread_mutex_lock(&rt->job_lock);
	if (rt->jobs_tail)
		rt->jobs_tail->next = j;
	else
		rt->jobs_head = j;
	rt->jobs_tail = j;
	pthread_cond_signal(&rt->job_cond);
	pthread_mutex_unlock(&rt->job_lock);
	return 0;
}

static void *worker_main(void *arg)
{
	struct runtime *rt = arg;

	for (;;) {
		struct job *j;

		pthread_mutex_lock(&rt->job_lock);
		while (!rt->jobs_head && !rt->jobs_stop)
			pthread_cond_wait(&rt->job_cond, &rt->job_lock);
		j = rt->jobs_head;
		if (!j) {
			pthread_mutex_unlock(&rt->job_lock);
			return NULL;
		}
		rt->jobs_head = j->next;
		if (!rt->jobs_head)
			rt->jobs_tail = NULL;
		pthread_mutex_unlock(&rt->job_lock);
		rt_job_enter(rt); /* no leak reaper pass while a job works on a VM */
		j->fn(rt, j->vm, j->arg);
		rt_job_leave(rt);
		vm_unref(j->vm);
		free(j);
	}
}

int workers_start(struct runtime *rt)
{
	sigset_t all, old;
	int r = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (rt->n_workers = 0; rt->n_workers < ELEMENTSOF(rt->workers); rt->n_workers++) {
		r = -pthread_create(&rt->workers[rt->n_workers], NULL, worker_main, rt);
		if (r < 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rt->n_workers ? 0 : r;
}

/* Finish the queued jobs, then join. */
void workers_stop(struct runtime *rt)
{
	pthread_mutex_lock(&rt->job_lock);
	rt->jobs_stop = true;
	pthread_cond_broadcast(&rt->job_cond);
	pthread_mutex_unlock(&rt->job_lock);
	for (unsigned i = 0; i < rt->n_workers; i++)
		pthread_join(rt->workers[i], NULL);
	rt->n_workers = 0;
}

static void on_progress(void *ud, const struct img_progress *p)
{
	struct vm *vm = ud;

	pthread_mutex_lock(&vm->lock);
	snprintf(vm->hs.image_phase, sizeof(vm->hs.image_phase), "%s", p->phase ? p->phase : "");
	vm->hs.img_bytes_done = p->bytes_done;
	vm->hs.img_bytes_total = p->bytes_total;
	vm->hs.img_layers_done = p->layers_done;
	vm->hs.img_layers_total = p->layers_total;
	vm_touch_locked(vm, VM_ATTR_HEALTH);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_HEALTH);
}

int rt_prepare_image(struct runtime *rt, struct vm *vm, const char *ref, struct img_prepared *ret,
		     struct err *err)
{
	if (!rt->store)
		return err_set(err, -ENOTSUP, "no image store");
	struct timespec t0, t1;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = img_prepare(rt->store, ref, vm->name, on_progress, vm, NULL, ret, err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	metrics_note_image(
		vm, r, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return r;
}

static void net_teardown(struct runtime *rt, struct vm *vm)
{
	struct err err = {};

	if (!vm->net_set_up || !rt->net)
		return;
	pthread_mutex_lock(&rt->net_lock);
	if (net_vm_teardown(rt->net, vm->name, &err) < 0)
		log_warning("%s: network teardown: %s", vm->name, err.msg);
	pthread_mutex_unlock(&rt->net_lock);
	vm->net_set_up = false;
}

static void on_agent_event(void *ud, struct agent *agent, enum agent_event ev)
{
	struct vm *vm = ud;
	enum vm_attr attr = ev == AGENT_EVENT_OUTPUT ? VM_ATTR_LOG : VM_ATTR_HEALTH;

	pthread_mutex_lock(&vm->lock);
	vm_touch_locked(vm, attr);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, attr);
}

void vm_agent_start(struct runtime *rt, struct vm *vm)
{
	struct agent_config ac = {
		.transport = agent_transport_for_vmm(rt->ops->name),
		.socket_path = vm->h.agent_socket,
		.vsock_port = AGENT_DEFAULT_VSOCK_PORT,
		.heartbeat_ms = rt->cfg.heartbeat_ms,
		.cb = on_agent_event,
		.ud = vm,
	};
	struct agent *a = NULL;

	if (!vm->h.agent_socket[0])
		return;
	if (agent_start(&ac, &a) < 0) {
		log_warning("%s: cannot start the agent client", vm->name);
		return;
	}
	pthread_mutex_lock(&vm->lock);
	vm->agent = a;
	pthread_mutex_unlock(&vm->lock);
}

void vm_agent_stop(struct vm *vm)
{
	struct agent *a;

	pthread_mutex_lock(&vm->lock);
	a = vm->agent;
	vm->agent = NULL;
	pthread_mutex_unlock(&vm->lock);
	/* Joins the agent thread, whose callback takes vm->lock: never under it. */
	agent_free(a);
}

/* The per-VM initramfs: the project's base plus /mvmfs/vm.json for the guest agent. */
static int write_guest_initrd(struct runtime *rt, struct vm *vm, const struct img_prepared *prep,
			      const struct in6_addr *addr, const char *out, struct err *err)
{
	const struct runtime_config *c = &rt->cfg;
	_cleanup_free_ char *img_cfg = NULL;
	struct guest_config gc = {
		.name = vm->name,
		.addr = *addr,
		.prefix_len = 64,
		.transport = agent_transport_for_vmm(rt->ops->name),
		.heartbeat_ms = c->heartbeat_ms,
		.grace_ms = c->app_grace_ms,
		.no_network = c->no_network,
	};
	int r;

	if (prep->config[0]) {
		r = read_file_bounded(prep->config, 1 << 20, &img_cfg, NULL);
		if (r < 0)
			return err_set(err, r, "image config %s: %s", prep->config, strerror(-r));
	}
	gc.image_config_json = img_cfg;
	if (vm->net.tap_name[0]) {
		gc.addr = vm->net.addr;
		gc.prefix_len = vm->net.prefix_len;
		gc.gateway = vm->net.gateway;
		gc.mac = vm->net.mac;
		gc.mtu = vm->net.mtu;
	} else if (rt->net) {
		unsigned len = 64;
		struct in6_addr pfx;
		pthread_mutex_lock(&rt->net_lock);
		if (net_prefix(rt->net, &pfx, &len, &gc.gateway) >= 0)
			gc.prefix_len = len;
		pthread_mutex_unlock(&rt->net_lock);
	}
	return guest_config_write_initrd(&gc, c->initrd, out, err);
}

/* Kill (if alive), wait for the exit, and remove everything of a failed launch. */
static void launch_undo(struct runtime *rt, struct vm *vm)
{
	struct vmm_exit ex;

	vm_agent_stop(vm);
	if (vm->h.pidfd >= 0) {
		struct pollfd pfd = {.fd = vm->h.pidfd, .events = POLLIN};
		(void)rt->ops->kill(rt->ops_priv, &vm->h);
		(void)poll(&pfd, 1, 5000);
		vmm_handle_reap(&vm->h, &ex);
	}
	rt->ops->cleanup(rt->ops_priv, vm->name, &vm->h);
	net_teardown(rt, vm);
	if (vm->img_held && rt->store) {
		(void)img_release(rt->store, vm->name);
		vm->img_held = false;
	}
	atomic_store(&vm->launch_pid, 0);
}

void job_launch(struct runtime *rt, struct vm *vm, void *arg)
{
	const struct runtime_config *c = &rt->cfg;
	_cleanup_free_ char *ref = NULL;
	struct img_prepared prep;
	struct vmm_launch p;
	struct err err = {};
	char run_dir[4200], data[4300], console[4300], initrd[4300], boot_args[256], ip[64] = "";
	struct in6_addr addr;
	bool has_ip;
	int r;

	pthread_mutex_lock(&vm->lock);
	ref = vm->image ? strdup(vm->image) : NULL;
	addr = vm->ip;
	has_ip = vm->has_ip;
	pthread_mutex_unlock(&vm->lock);
	vmm_handle_init(&vm->h);
	snprintf(run_dir, sizeof(run_dir), "%s/vms/%s", c->state_dir, vm->name);

	if (!ref) {
		r = err_set(&err, -EINVAL, "no image set (write a reference to 'image' first)");
		goto fail;
	}
	r = rt->prepare_image(rt, vm, ref, &prep, &err);
	if (r < 0) {
		err_prefix(&err, "image '%s': ", ref);
		goto fail;
	}
	vm->img_held = true;
	snprintf(vm->rootfs, sizeof(vm->rootfs), "%s", prep.rootfs);
	pthread_mutex_lock(&vm->lock);
	memcpy(vm->image_digest, prep.digest, sizeof(vm->image_digest));
	memcpy(vm->image_key, prep.verified_key, sizeof(vm->image_key));
	vm->hs.image_phase[0] = '\0';
	pthread_mutex_unlock(&vm->lock);

	memset(&vm->net, 0, sizeof(vm->net));
	if (!c->no_network) {
		if (!has_ip || !rt->net) {
			r = err_set(&err, -EIO, "no address assigned");
			goto fail;
		}
		pthread_mutex_lock(&rt->net_lock);
		vm->net_set_up = true;
		r = net_vm_setup(rt->net, vm->name, &addr, c->uid_base + vm->index,
				 (gid_t)(c->uid_base + vm->index), &vm->net, &err);
		pthread_mutex_unlock(&rt->net_lock);
		pthread_mutex_lock(&vm->lock);
		vm->hs.net_known = true;
		vm->hs.net_ok = r >= 0;
		clock_gettime(CLOCK_REALTIME, &vm->hs.net_since);
		pthread_mutex_unlock(&vm->lock);
		if (r < 0) {
			err_prefix(&err, "network: ");
			goto fail;
		}
	}

	snprintf(data, sizeof(data), "%s/data.ext4", run_dir);
	if (access(data, F_OK) < 0) {
		r = img_make_data_disk(data, c->data_disk_bytes, &err);
		if (r < 0) {
			err_prefix(&err, "data disk: ");
			goto fail;
		}
	}
	snprintf(console, sizeof(console), "%s/console.log", run_dir);
	if (c->initrd) {
		snprintf(initrd, sizeof(initrd), "%s/initrd.img", run_dir);
		r = write_guest_initrd(rt, vm, &prep, &addr, initrd, &err);
		if (r < 0) {
			err_prefix(&err, "guest config: ");
			goto fail;
		}
	}
	if (has_ip)
		inet_ntop(AF_INET6, &addr, ip, sizeof(ip));
	/* Guest settings as key=value words: they reach init's environment (TESTRIG 2). */
	snprintf(boot_args, sizeof(boot_args), "vmname=%s%s%s", vm->name, ip[0] ? " ip6=" : "", ip);
	p = (struct vmm_launch){
		.name = vm->name,
		.index = vm->index,
		.uid = c->uid_base + vm->index,
		.gid = (gid_t)(c->uid_base + vm->index),
		.netns_path = vm->net.netns_path[0] ? vm->net.netns_path : NULL,
		.tap_name = vm->net.tap_name[0] ? vm->net.tap_name : NULL,
		.mac = vm->net.mac[0] ? vm->net.mac : NULL,
		.kernel = c->kernel,
		.initrd = c->initrd ? initrd : NULL,
		.rootfs = prep.rootfs,
		.data_disk = data,
		.boot_args = boot_args,
		.vcpus = c->vcpus,
		.mem_mib = c->mem_mib,
		.run_dir = run_dir,
		.console_log = console,
		.cancel = &vm->cancel,
		.pid_out = &vm->launch_pid,
	};
	r = rt->ops->launch(rt->ops_priv, &p, &vm->h, &err);
	if (r < 0)
		goto fail;
	vm_agent_start(rt, vm);
	pthread_mutex_lock(&vm->lock);
	vm->pid = vm->h.pid;
	vm->hs.vmm_run = VMM_RUN_RUNNING;
	vm_touch_locked(vm, VM_ATTR_PID);
	pthread_mutex_unlock(&vm->lock);
	rt_notify(rt, vm, VM_ATTR_PID);
	(void)sv_post_event(rt, vm, LC_EV_LAUNCH_OK);
	return;
fail:
	log_info("%s: start failed: %s", vm->name, err.msg);
	launch_undo(rt, vm);
	if (atomic_load(&vm->cancel))
		vm_set_error(vm, "start: cancelled by kill (%s)", err.msg);
	else
		vm_set_error(vm, "start: %s", err.msg[0] ? err.msg : strerror(-r));
	(void)sv_post_event(rt, vm, LC_EV_LAUNCH_FAIL);
}

void job_request_stop(struct runtime *rt, struct vm *vm, void *arg)
{
	struct err err = {};
	struct agent_status st = {};
	int r;

	/* Ask the agent first (SIGTERM to the app, grace, clean power-off); else the VMM. */
	pthread_mutex_lock(&vm->lock);
	if (vm->agent)
		agent_get_status(vm->agent, &st);
	if (st.connected)
		r = agent_stop_request(vm->agent, rt->cfg.app_grace_ms);
	else
		r = -ENOTCONN;
	pthread_mutex_unlock(&vm->lock);
	if (r >= 0)
		return;
	r = rt->ops->request_stop(rt->ops_priv, &vm->h, &err);
	if (r < 0) {
		/* The guest cannot be asked: do not wait for the deadline. */
		log_info("%s: graceful stop request failed (%s), killing", vm->name, err.msg);
		(void)sv_post_event(rt, vm, LC_EV_DEADLINE);
	}
}

void job_cleanup(struct runtime *rt, struct vm *vm, void *arg)
{
	vm_agent_stop(vm);
	metrics_vm_collect(rt, vm, true); /* what the VMM wrote at exit, before the jail goes */
	rt->ops->cleanup(rt->ops_priv, vm->name, &vm->h);
	net_teardown(rt, vm);
	if (vm->img_held && rt->store) {
		(void)img_release(rt->store, vm->name);
		vm->img_held = false;
	}
	atomic_store(&vm->launch_pid, 0);
	(void)sv_post_event(rt, vm, LC_EV_CLEANUP_DONE);
}

/* Keep a file some VMM process appends to (console, Firecracker log and metrics) bounded: past
 * max bytes it is cut back to its last keep bytes. A writer using O_APPEND simply continues. */
#define FILE_MAX (4u << 20)
#define FILE_KEEP (256u << 10)
static void bound_file(const char *path, bool in_jail)
{
	/* In a jail (whose files the VM's uid owns): no symlink anywhere in the path. */
	_cleanup_close_ int fd = in_jail ? jail_openat(AT_FDCWD, path, O_RDWR, 0)
					 : open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_free_ char *tail = NULL;
	struct stat st;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= FILE_MAX)
		return;
	tail = malloc(FILE_KEEP);
	if (!tail)
		return;
	n = pread(fd, tail, FILE_KEEP, st.st_size - FILE_KEEP);
	if (n <= 0 || ftruncate(fd, 0) < 0)
		return;
	(void)!pwrite(fd, tail, (size_t)n, 0);
}

void job_probe(struct runtime *rt, struct vm *vm, void *arg)
{
	char path[VMM_PATH_MAX + 64];
	enum vmm_run_state run = VMM_RUN_UNKNOWN;
	struct net_vm_status ns = {};
	struct err err = {};
	bool net_ok = false, check_net = vm->net_set_up && rt->net, changed = false;

	if (rt->ops->query(rt->ops_priv, &vm->h, &run, &err) < 0)
		run = VMM_RUN_UNKNOWN;
	metrics_vm_collect(rt, vm, false); /* before the metrics file may be cut back */
	snprintf(path, sizeof(path), "%s/vms/%s/console.log", rt->cfg.state_dir, vm->name);
	bound_file(path, false);
	if (vm->h.jail_dir[0] && strcmp(rt->ops->name, "firecracker") == 0) {
		snprintf(path, sizeof(path), "%s/root/firecracker.log", vm->h.jail_dir);
		bound_file(path, true);
		snprintf(path, sizeof(path), "%s/root/metrics.json", vm->h.jail_dir);
		bound_file(path, true);
	}
	if (check_net) {
		pthread_mutex_lock(&rt->net_lock);
		if (net_vm_status(rt->net, vm->name, &ns) >= 0)
			net_ok = ns.netns_present && ns.tap_up && ns.veth_up && ns.bridge_up;
		pthread_mutex_unlock(&rt->net_lock);
	}
	pthread_mutex_lock(&vm->lock);
	if (vm->lc.state == VM_STATE_RUNNING && !vm->lc.exiting) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		if (vm->hs.vmm_run != run) {
			vm->hs.vmm_run = run;
			vm->hs.vmm_since = now;
			changed = true;
		}
		if (check_net && (!vm->hs.net_known || vm->hs.net_ok != net_ok)) {
			vm->hs.net_known = true;
			vm->hs.net_ok = net_ok;
			vm->hs.net_since = now;
			changed = true;
		}
		if (changed)
			vm_touch_locked(vm, VM_ATTR_HEALTH);
	}
	pthread_mutex_unlock(&vm->lock);
	atomic_store(&vm->probing, false);
	if (changed)
		vm_notify(vm, VM_ATTR_HEALTH);
}
