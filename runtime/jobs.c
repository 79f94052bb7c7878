/* SPDX-License-Identifier: MIT */
/*
 * The short jobs the supervisor queues for a VM whose VMM runs or ran: the graceful stop request
 * (agent first, else the VMM), the cleanup after the VMM exited, and the periodic health probe
 * (VMM state, network, bounded log files). A job never changes a VM's state itself; it posts its
 * outcome to the supervisor as an event.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "jail-path.h"
#include "log.h"

void job_request_stop(struct runtime *rt, struct vm *vm, void *arg)
{
	struct err err = {};
	struct agent_status st = {};
	int r;

	/* A paused guest cannot stop itself: its vCPUs run again first. */
	pthread_mutex_lock(&vm->lock);
	bool paused = vm->lc.vmm_paused;
	pthread_mutex_unlock(&vm->lock);
	if (paused && rt->ops->resume && rt->ops->resume(rt->ops_priv, &vm->h, &err) >= 0) {
		pthread_mutex_lock(&vm->lock);
		if (vm->agent)
			agent_resume(vm->agent, false);
		pthread_mutex_unlock(&vm->lock);
	}
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
	bool suspended;

	pthread_mutex_lock(&vm->lock);
	suspended = vm->lc.state == VM_STATE_SUSPENDING && vm->lc.saved;
	pthread_mutex_unlock(&vm->lock);
	metrics_vm_collect(rt, vm, true); /* what the VMM wrote at exit, before the jail goes */
	/* The VMM was reaped when it exited: nothing to kill, no strays (its jail's process ended).
	 * A suspended VM keeps the hold on its image: the restore needs the same disks. */
	vm_host_teardown(rt, vm, &vm->h, suspended ? HOST_TEARDOWN_KEEP_IMAGE : 0);
	if (suspended)
		park_drop_cache(rt, vm->name);
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
