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

#include "clock.h"
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

/* One slot per thread a pool may have; a thread that ended is joined when its slot is reused
 * or at workers_stop. */
enum { SLOT_FREE, SLOT_RUNNING, SLOT_EXITED };

struct worker_slot {
	pthread_t thread;
	int state;
	struct rt_pool *pool;
};

struct rt_pool {
	const char *name;
	struct runtime *rt;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* jobs queued, stop, a thread ended (CLOCK_MONOTONIC) */
	struct job *head, *tail;
	unsigned max;	    /* threads at most */
	unsigned idle_ms;   /* an idle thread ends after this (0: never) */
	unsigned n_threads; /* SLOT_RUNNING */
	unsigned n_idle;    /* of which waiting for a job */
	unsigned n_busy;    /* running a job */
	unsigned n_queued;  /* jobs waiting for a thread */
	uint64_t n_done;    /* jobs finished (metrics, tests) */
	bool stop;
	struct worker_slot slots[RT_LONG_POOL_MAX];
};

static struct rt_pool *pool_new(struct runtime *rt, const char *name, unsigned max,
				unsigned idle_ms)
{
	struct rt_pool *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;

	if (!p)
		return NULL;
	p->name = name;
	p->rt = rt;
	p->max = MIN(max, (unsigned)RT_LONG_POOL_MAX);
	p->idle_ms = idle_ms;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
	*ts = clock_after_ms(CLOCK_MONOTONIC, ms);
}

static void *worker_main(void *arg)
{
	struct worker_slot *slot = arg;
	struct rt_pool *p = slot->pool;
	struct runtime *rt = p->rt;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j;

		p->n_idle++;
		while (!p->head && !p->stop) {
			if (p->idle_ms) {
				struct timespec ts;
				deadline_in(&ts, p->idle_ms);
				if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT &&
				    !p->head)
					break;
			} else {
				pthread_cond_wait(&p->cond, &p->lock);
			}
		}
		p->n_idle--;
		j = p->head;
		if (!j)
			break; /* stop, or idle too long */
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		p->n_queued--;
		p->n_busy++;
		pthread_mutex_unlock(&p->lock);
		rt_job_enter(rt); /* no leak reaper pass while a job works on a VM */
		j->fn(rt, j->vm, j->arg);
		rt_job_leave(rt);
		vm_unref(j->vm);
		free(j);
		pthread_mutex_lock(&p->lock);
		p->n_busy--;
		p->n_done++;
	}
	slot->state = SLOT_EXITED;
	p->n_threads--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Under p->lock: one more thread, when none is idle and the pool may grow. */
static int pool_grow_locked(struct rt_pool *p, bool force)
{
	struct worker_slot *free_slot = NULL;
	sigset_t all, old;
	int r;

	/* Enough idle threads for what is queued and the job about to be. */
	if ((!force && p->n_idle > p->n_queued) || p->n_threads >= p->max || p->stop)
		return 0;
	for (unsigned i = 0; i < p->max && !free_slot; i++) {
		if (p->slots[i].state == SLOT_EXITED) {
			pthread_join(p->slots[i].thread, NULL); /* it has returned already */
			p->slots[i].state = SLOT_FREE;
		}
		if (p->slots[i].state == SLOT_FREE)
			free_slot = &p->slots[i];
	}
	if (!free_slot)
		return -EAGAIN;
	free_slot->pool = p;
	/* Signals belong to the FUSE threads: block them in ours. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&free_slot->thread, NULL, worker_main, free_slot);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		return r;
	free_slot->state = SLOT_RUNNING;
	p->n_threads++;
	return 0;
}

static int pool_push(struct rt_pool *p, struct vm *vm, job_fn fn, void *arg)
{
	struct job *j;
	int r;

	if (!p)
		return -ESHUTDOWN;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->vm = vm_ref(vm);
	j->arg = arg;
	pthread_mutex_lock(&p->lock);
	if (p->stop) {
		pthread_mutex_unlock(&p->lock);
		vm_unref(j->vm);
		free(j);
		return -ESHUTDOWN;
	}
	r = pool_grow_locked(p, false);
	if (r < 0 && p->n_threads == 0) {
		pthread_mutex_unlock(&p->lock);
		vm_unref(j->vm);
		free(j);
		return r;
	}
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->n_queued++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int rt_job(struct runtime *rt, struct vm *vm, job_fn fn, void *arg)
{
	return pool_push(rt->pool_short, vm, fn, arg);
}

int rt_job_long(struct runtime *rt, struct vm *vm, job_fn fn, void *arg)
{
	return pool_push(rt->pool_long, vm, fn, arg);
}

int workers_start(struct runtime *rt)
{
	int r = 0;

	rt->pool_short = pool_new(rt, "lifecycle", RT_SHORT_POOL_THREADS, 0);
	rt->pool_long = pool_new(rt, "outside", RT_LONG_POOL_MAX, RT_LONG_POOL_IDLE_MS);
	if (!rt->pool_short || !rt->pool_long)
		return -ENOMEM;
	/* The lifecycle pool's threads exist from the start (no creation on the hot path). */
	pthread_mutex_lock(&rt->pool_short->lock);
	for (unsigned i = 0; i < RT_SHORT_POOL_THREADS && r >= 0; i++)
		r = pool_grow_locked(rt->pool_short, true);
	pthread_mutex_unlock(&rt->pool_short->lock);
	return rt->pool_short->n_threads ? 0 : r;
}

static void pool_request_stop(struct rt_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Ask a pool to stop; wait until its threads ended or the deadline passed. Returns the number
 * of threads still running (their jobs are abandoned: the pool is then never freed). */
static unsigned pool_stop(struct rt_pool *p, const struct timespec *deadline)
{
	unsigned left;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	while (p->n_threads > 0 &&
	       pthread_cond_timedwait(&p->cond, &p->lock, deadline) != ETIMEDOUT)
		;
	left = p->n_threads;
	if (left) {
		/* Abandoned: never joined, so detached (finished or not). */
		for (unsigned i = 0; i < p->max; i++)
			if (p->slots[i].state != SLOT_FREE)
				pthread_detach(p->slots[i].thread);
		pthread_mutex_unlock(&p->lock);
		return left;
	}
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->max; i++)
		if (p->slots[i].state == SLOT_EXITED) {
			pthread_join(p->slots[i].thread, NULL);
			p->slots[i].state = SLOT_FREE;
		}
	/* Jobs queued but never run: drop them (their VMs' records say what was in flight). */
	while (p->head) {
		struct job *j = p->head;
		p->head = j->next;
		vm_unref(j->vm);
		free(j);
	}
	p->tail = NULL;
	return 0;
}

static void pool_free(struct rt_pool *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

int workers_stop(struct runtime *rt, unsigned timeout_ms)
{
	struct timespec deadline;
	unsigned left;

	deadline_in(&deadline, timeout_ms);
	/* Both told at once; the lifecycle pool's jobs are short, so it is waited for first. */
	pool_request_stop(rt->pool_long);
	left = pool_stop(rt->pool_short, &deadline);
	left += pool_stop(rt->pool_long, &deadline);
	if (left) {
		log_warning("shutdown: %u job%s still running after %u ms, abandoned (the next "
			    "start finishes or undoes them from the records)",
			    left, left == 1 ? "" : "s", timeout_ms);
		rt->workers_abandoned = true;
		return -ETIMEDOUT;
	}
	pool_free(rt->pool_long);
	pool_free(rt->pool_short);
	rt->pool_long = rt->pool_short = NULL;
	return 0;
}

void workers_stats(struct runtime *rt, struct rt_pool_stats *ret)
{
	struct rt_pool *pools[2] = {rt->pool_short, rt->pool_long};

	memset(ret, 0, sizeof(*ret));
	for (unsigned i = 0; i < 2; i++) {
		struct rt_pool *p = pools[i];
		if (!p)
			continue;
		pthread_mutex_lock(&p->lock);
		ret->threads[i] = p->n_threads;
		ret->busy[i] = p->n_busy;
		ret->queued[i] = p->n_queued;
		ret->done[i] = p->n_done;
		pthread_mutex_unlock(&p->lock);
	}
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
	r = img_prepare(rt->store, ref, vm->name, on_progress, vm, &vm->img_cancel, ret, err);
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
	if (vm->launching)
		(void)rt_kill_strays(rt, vm->name, 0, 2000);
	pthread_mutex_lock(&vm->lock);
	vm->launching = false;
	pthread_mutex_unlock(&vm->lock);
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
	atomic_store(&vm->pulling, true);
	r = rt->prepare_image(rt, vm, ref, &prep, &err);
	atomic_store(&vm->pulling, false);
	if (r >= 0)
		vm->img_held = true;
	if (r >= 0 && atomic_load(&vm->img_cancel))
		r = err_set(&err, -ECANCELED, "cancelled");
	if (r < 0) {
		err_prefix(&err, "image '%s': ", ref);
		goto fail;
	}
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
	/* Guest settings as key=value words: they reach init's environment (the kernel hands
	 * unknown key=value words of its command line to init). */
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
	/* Never a second VMM in a jail whose VMM still runs: whatever is left of an earlier
	 * launch of this VM (an orphan of a killed daemon) goes first. */
	(void)rt_kill_strays(rt, vm->name, 0, 2000);
	/* Intent first: the record says a launch is under way (and as which uid) before the
	 * jailer or QEMU exists, so a daemon killed from here on leaves a record from which the
	 * next one finds and reaps what was spawned. */
	pthread_mutex_lock(&vm->lock);
	vm->launching = true;
	pthread_mutex_unlock(&vm->lock);
	vm_record_save(vm);
	r = rt->ops->launch(rt->ops_priv, &p, &vm->h, &err);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&vm->lock);
	vm->launching = false;
	pthread_mutex_unlock(&vm->lock);
	vm_agent_start(rt, vm);
	pthread_mutex_lock(&vm->lock);
	vm->pid = vm->h.pid;
	vm->hs.vmm_run = VMM_RUN_RUNNING;
	vm_touch_locked(vm, VM_ATTR_PID);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_PID);
	(void)sv_post_event(rt, vm, LC_EV_LAUNCH_OK);
	return;
fail:
	log_info("%s: start failed: %s", vm->name, err.msg);
	launch_undo(rt, vm);
	if (atomic_load(&vm->cancel) || atomic_load(&vm->img_cancel))
		vm_set_error(vm, "start: cancelled by stop or kill (%s)", err.msg);
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
		bool gone;

		/* A kill (or the VMM's exit) got there first: that is why the call failed. */
		pthread_mutex_lock(&vm->lock);
		gone = vm->lc.pending_kill || vm->lc.exiting;
		pthread_mutex_unlock(&vm->lock);
		if (gone)
			return;
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
