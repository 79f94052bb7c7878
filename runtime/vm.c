/* SPDX-License-Identifier: MIT */
/*
 * The VM object: reference count, accessors, the snapshot FUSE threads render from (copied under
 * vm->lock, formatted outside it), the error file, change notification (FUSE poll and the health
 * reporter) and the record written on every change.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "internal.h"
#include "report.h"

struct vm *vm_new(struct runtime *rt, const char *name)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	atomic_init(&vm->refs, 1);
	atomic_init(&vm->cancel, false);
	atomic_init(&vm->img_cancel, false);
	atomic_init(&vm->pulling, false);
	pthread_cond_init(&vm->cmd_cond, NULL);
	vm->rt = rt;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->rec_lock, NULL);
	pthread_mutex_init(&vm->park_lock, NULL);
	pthread_mutex_init(&vm->vol_lock, NULL);
	atomic_init(&vm->launch_pid, 0);
	atomic_init(&vm->probing, false);
	vm->lc.state = VM_STATE_CREATED;
	clock_gettime(CLOCK_REALTIME, &vm->state_since);
	vm->hs.vmm_since = vm->hs.net_since = vm->state_since;
	vmm_handle_init(&vm->h);
	vm->deadline_fd = -EBADF;
	vm->pid_watch.vm = vm->dl_watch.vm = vm;
	return vm;
}

struct vm *vm_ref(struct vm *vm)
{
	if (vm)
		atomic_fetch_add(&vm->refs, 1);
	return vm;
}

struct vm *vm_unref(struct vm *vm)
{
	if (!vm || atomic_fetch_sub(&vm->refs, 1) != 1)
		return NULL;
	safe_close(vm->h.pidfd);
	safe_close(vm->deadline_fd);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->rec_lock);
	pthread_mutex_destroy(&vm->park_lock);
	pthread_mutex_destroy(&vm->vol_lock);
	pthread_cond_destroy(&vm->cmd_cond);
	free(vm->image);
	free(vm);
	return NULL;
}

const char *vm_name(const struct vm *vm)
{
	return vm->name;
}

enum vm_state vm_get_state(struct vm *vm)
{
	enum vm_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->lc.state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

void vm_touch_locked(struct vm *vm, enum vm_attr attr)
{
	vm->seq[attr]++;
}

uint64_t vm_attr_seq(struct vm *vm, enum vm_attr attr)
{
	uint64_t v;

	if ((unsigned)attr >= _VM_ATTR_MAX)
		return 0;
	pthread_mutex_lock(&vm->lock);
	v = vm->seq[attr];
	pthread_mutex_unlock(&vm->lock);
	return v;
}

void vm_notify(struct vm *vm, enum vm_attr attr)
{
	struct runtime *rt = vm->rt;

	if (rt->notify)
		rt->notify(rt->notify_ud, vm, attr);
	rt_report_notify(rt, vm, attr);
}

void rt_report_notify(struct runtime *rt, struct vm *vm, int attr)
{
	if (!rt->report)
		return;
	switch (attr) {
	case VM_ATTR_STATE:
	case VM_ATTR_HEALTH:
	case VM_ATTR_IP:
	case VM_ATTR_IMAGE:
	case VM_ATTR_ERROR:
	case VM_ATTR_PID:
		report_enqueue(rt->report->rep, vm, 0);
		break;
	default:
		break;
	}
}

void rt_report_destroyed(struct runtime *rt, struct vm *vm)
{
	if (rt->report)
		report_enqueue(rt->report->rep, vm, REPORT_FINAL);
}

void vm_record_save(struct vm *vm)
{
	vm_record_save_as(vm, _VM_STATE_MAX);
}

void vm_record_save_as(struct vm *vm, enum vm_state state)
{
	struct runtime *rt = vm->rt;
	struct vm_record *r = calloc(1, sizeof(*r));
	int k;

	if (!r)
		return;
	pthread_mutex_lock(&vm->rec_lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->destroying) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&vm->rec_lock);
		free(r);
		return;
	}
	snprintf(r->name, sizeof(r->name), "%s", vm->name);
	r->index = vm->index;
	r->state = state == _VM_STATE_MAX ? vm->lc.state : state;
	snprintf(r->image, sizeof(r->image), "%s", vm->image ? vm->image : "");
	memcpy(r->image_digest, vm->image_digest, sizeof(r->image_digest));
	memcpy(r->image_key, vm->image_key, sizeof(r->image_key));
	r->ip = vm->ip;
	r->has_ip = vm->has_ip;
	memcpy(r->error, vm->error, sizeof(r->error));
	r->launching = vm->launching;
	r->launch_uid = (uint32_t)(rt->cfg.uid_base + vm->index);
	r->has_boot_id = vm->has_boot_id;
	memcpy(r->boot_id, vm->boot_id, sizeof(r->boot_id));
	pthread_mutex_unlock(&vm->lock);
	/* The handle is the supervisor's; it is stable whenever the state changes. */
	r->h = vm->h;
	snprintf(r->rootfs, sizeof(r->rootfs), "%s", vm->rootfs);
	snprintf(r->vmm, sizeof(r->vmm), "%s", rt->ops->name);
	k = record_write(rt->cfg.state_dir, r);
	pthread_mutex_unlock(&vm->rec_lock);
	if (k < 0)
		log_error_errno(k, "%s: writing the record", vm->name);
	free(r);
}

void vm_set_error(struct vm *vm, const char *fmt, ...)
{
	char ts[32], msg[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	rfc3339_utc(time(NULL), ts, sizeof(ts));
	pthread_mutex_lock(&vm->lock);
	snprintf(vm->error, sizeof(vm->error), "%s %s", ts, msg);
	vm_touch_locked(vm, VM_ATTR_ERROR);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_ERROR);
}

void vm_snapshot(struct vm *vm, struct vm_snap *ret)
{
	pthread_mutex_lock(&vm->lock);
	ret->state = vm->lc.state;
	ret->state_since = vm->state_since;
	ret->pid = vm->pid;
	ret->has_ip = vm->has_ip;
	ret->ip = vm->ip;
	memcpy(ret->image_digest, vm->image_digest, sizeof(ret->image_digest));
	memcpy(ret->image_key, vm->image_key, sizeof(ret->image_key));
	ret->hs = vm->hs;
	memcpy(ret->error, vm->error, sizeof(ret->error));
	ret->has_agent = vm->agent != NULL;
	ret->saved_state_bytes = vm->mx.saved_state_bytes;
	if (vm->agent)
		agent_get_status(vm->agent, &ret->agent);
	pthread_mutex_unlock(&vm->lock);
	ret->now_mono_ms = agent_now_ms();
	ret->net_expected = !vm->rt->cfg.no_network;
}
