/* SPDX-License-Identifier: MIT */
/*
 * Re-adoption at start, before any thread runs: every recorded VM is put back in the table; a
 * running one's VMM is adopted (or, gone, the VM ends failed), a starting one is undone (failed),
 * a stopping one finished (stopped), and whatever a stopped one left is cleaned. A record with a
 * destroy mark is left to the reaper.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log.h"

/* Kill what is left of a recorded VMM (adopted or not) and remove its host resources. */
static void adopt_cleanup(struct runtime *rt, struct vm *vm)
{
	/* The record does not say how far the network got: tear down whatever exists. A launch
	 * the record announced may have left processes no handle names (intent). */
	vm->net_set_up = !rt->cfg.no_network;
	vm_host_teardown(rt, vm, &vm->h, HOST_TEARDOWN_STRAYS);
	vmm_handle_init(&vm->h);
}

static bool destroy_marked(struct runtime *rt, const char *name)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/vms/%s/" RT_DESTROY_MARK, rt->cfg.state_dir, name);
	return access(path, F_OK) == 0;
}

/* A VM from its record (its VMM not adopted yet: no pidfd). */
static struct vm *vm_from_record(struct runtime *rt, const char *name, const struct vm_record *rec)
{
	struct vm *vm = vm_new(rt, name);

	if (!vm)
		return NULL;
	vm->image = rec->image[0] ? strdup(rec->image) : NULL;
	memcpy(vm->image_digest, rec->image_digest, sizeof(vm->image_digest));
	memcpy(vm->image_key, rec->image_key, sizeof(vm->image_key));
	vm->ip = rec->ip;
	vm->has_ip = rec->has_ip;
	memcpy(vm->error, rec->error, sizeof(vm->error));
	vm->h = rec->h;
	vm->h.pidfd = -EBADF;
	snprintf(vm->rootfs, sizeof(vm->rootfs), "%s", rec->rootfs);
	vm->has_boot_id = rec->has_boot_id;
	memcpy(vm->boot_id, rec->boot_id, sizeof(vm->boot_id));
	return vm;
}

/* A VM recorded running: its VMM adopted (the only process of its jail from now on), or, gone,
 * the VM ends failed. */
static void adopt_running(struct runtime *rt, struct vm *vm)
{
	struct err err = {};

	if (rt->ops->adopt(rt->ops_priv, vm->name, &vm->h, &err) >= 0) {
		/* Exactly one VMM per jail: any other process of it goes. */
		(void)rt_kill_strays(rt, vm->name, vm->h.pid, 2000);
		vm->pid = vm->h.pid;
		vm->hs.vmm_run = VMM_RUN_RUNNING;
		vm->hs.net_known = true;
		vm->hs.net_ok = true;
		vm->net_set_up = !rt->cfg.no_network;
		atomic_store(&vm->img_held, true);
		vm_agent_start(rt, vm);
		log_info("%s: re-adopted VMM pid %d", vm->name, (int)vm->pid);
		return;
	}
	vm_set_error(vm, "vmm: the VMM died while the daemon was down (%s); exit status unknown",
		     err.msg);
	adopt_cleanup(rt, vm);
	vm->lc.state = VM_STATE_FAILED;
}

/* A VM recorded paused: its VMM adopted and still paused (asked, not assumed). */
static void adopt_paused(struct runtime *rt, struct vm *vm)
{
	enum vmm_run_state run = VMM_RUN_UNKNOWN;
	struct err err = {};

	adopt_running(rt, vm);
	if (vm->lc.state == VM_STATE_FAILED)
		return;
	if (rt->ops->query(rt->ops_priv, &vm->h, &run, &err) >= 0 && run == VMM_RUN_RUNNING) {
		vm->lc.state = VM_STATE_RUNNING;
		return;
	}
	vm->lc.vmm_paused = true;
	vm->hs.vmm_run = VMM_RUN_PAUSED;
	if (vm->agent)
		agent_pause(vm->agent);
}

/* A VM recorded suspending: the saved state is complete (renamed into place) or it is not.
 * Complete: the VMM goes, the VM is suspended. Not: a VMM still there runs on (resumed),
 * otherwise the VM failed. Never a half-written state taken as good. */
static void adopt_suspending(struct runtime *rt, struct vm *vm)
{
	struct err err = {};

	if (park_saved_exists(rt, vm->name)) {
		(void)rt->ops->adopt(rt->ops_priv, vm->name, &vm->h, &err);
		vm->net_set_up = !rt->cfg.no_network;
		vm_host_teardown(rt, vm, &vm->h, HOST_TEARDOWN_STRAYS | HOST_TEARDOWN_KEEP_IMAGE);
		vmm_handle_init(&vm->h);
		vm->lc.state = VM_STATE_SUSPENDED;
		vm->lc.saved = true;
		atomic_store(&vm->img_held, true);
		return;
	}
	adopt_running(rt, vm);
	if (vm->lc.state == VM_STATE_FAILED) {
		vm_set_error(vm, "suspend: interrupted by a daemon restart before the saved state "
				 "was complete, and the VMM is gone");
		return;
	}
	vm->lc.state = VM_STATE_RUNNING;
	if (rt->ops->resume && rt->ops->resume(rt->ops_priv, &vm->h, &err) >= 0) {
		if (vm->agent)
			agent_resume(vm->agent, false);
		vm_set_error(vm, "suspend: interrupted by a daemon restart; the VM runs on");
		return;
	}
	vm_set_error(vm, "suspend: interrupted by a daemon restart; the VM stays paused (%s)",
		     err.msg);
	vm->lc.state = VM_STATE_PAUSED;
	vm->lc.vmm_paused = true;
	vm->hs.vmm_run = VMM_RUN_PAUSED;
}

/* A VM recorded suspended: no VMM may run (one left over goes); the saved state stays. */
static void adopt_suspended(struct runtime *rt, struct vm *vm, const struct vm_record *rec)
{
	if (rec->h.pid || rec->h.jail_dir[0]) {
		vm->net_set_up = !rt->cfg.no_network;
		vm_host_teardown(rt, vm, &vm->h, HOST_TEARDOWN_STRAYS | HOST_TEARDOWN_KEEP_IMAGE);
		vmm_handle_init(&vm->h);
	}
	vm->lc.saved = park_saved_exists(rt, vm->name);
	atomic_store(&vm->img_held, true);
	if (!vm->lc.saved) {
		vm_set_error(vm, "suspended, but the saved state is gone");
		vm->lc.state = VM_STATE_FAILED;
	}
}

/* Settle a VM in its recorded state: at rest it stays (what is left is cleaned), running is
 * adopted, a start is undone (failed), a stop finished (stopped). */
static void adopt_settle(struct runtime *rt, struct vm *vm, const struct vm_record *rec)
{
	struct err err = {};

	vm->lc.state = rec->state;
	switch (rec->state) {
	case VM_STATE_CREATED:
	case VM_STATE_STOPPED:
	case VM_STATE_FAILED:
		if (rec->h.pid || rec->h.jail_dir[0])
			adopt_cleanup(rt, vm);
		/* A failed restore keeps its saved state (start retries it). */
		vm->lc.saved = rec->state == VM_STATE_FAILED && park_saved_exists(rt, vm->name);
		break;
	case VM_STATE_RUNNING:
		adopt_running(rt, vm);
		break;
	case VM_STATE_PAUSED:
		adopt_paused(rt, vm);
		break;
	case VM_STATE_SUSPENDING:
		adopt_suspending(rt, vm);
		break;
	case VM_STATE_SUSPENDED:
		adopt_suspended(rt, vm, rec);
		break;
	case VM_STATE_STARTING:
		/* Half-configured VMM: the safe direction is back to a clean slate. */
		(void)rt->ops->adopt(rt->ops_priv, vm->name, &vm->h, &err);
		adopt_cleanup(rt, vm);
		vm_set_error(vm, "start: interrupted by a daemon restart");
		vm->lc.state = VM_STATE_FAILED;
		/* A restore cut short before the guest ran again keeps its saved state. */
		vm->lc.saved = park_saved_exists(rt, vm->name);
		break;
	case VM_STATE_STOPPING:
	default:
		/* A stop was asked: finish it. */
		(void)rt->ops->adopt(rt->ops_priv, vm->name, &vm->h, &err);
		adopt_cleanup(rt, vm);
		vm->lc.state = VM_STATE_STOPPED;
		break;
	}
}

static int adopt_one(struct runtime *rt, const char *name)
{
	_cleanup_free_ struct vm_record *rec = calloc(1, sizeof(*rec));
	struct err err = {};
	struct vm *vm;
	int r;

	if (!rec)
		return -ENOMEM;
	r = record_read(rt->cfg.state_dir, name, rec, &err);
	if (r == -ENOENT || (r >= 0 && destroy_marked(rt, name)))
		return 0; /* a create before its record, or a destroy begun: the reaper finishes it
			   */
	if (r < 0) {
		log_warning("%s: unreadable record (%s), ignoring", name, err.msg);
		return 0;
	}
	vm = vm_from_record(rt, name, rec);
	if (!vm)
		return -ENOMEM;
	pthread_mutex_lock(&rt->lock);
	r = table_insert_locked(rt, vm, rec->index);
	pthread_mutex_unlock(&rt->lock);
	if (r < 0) {
		log_error("%s: record index %u clashes, ignoring", name, rec->index);
		vm_unref(vm);
		return 0;
	}
	vm->live = true;
	adopt_settle(rt, vm, rec);
	vm->mx.saved_state_bytes = park_saved_bytes(rt, vm->name);
	if (vm->lc.state != rec->state)
		vm_record_save(vm);
	return 0;
}

int rt_adopt_all(struct runtime *rt, struct err *err)
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
