/* SPDX-License-Identifier: MIT */
/*
 * Commands from FUSE threads: a verb checked against the lifecycle and queued for the supervisor
 * under vm->lock (vm_command returns once the supervisor committed what it did), and a new image
 * reference (vm_set_image).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Accept a command and post it to the supervisor; *ticket identifies it for vm_command. */
static int command_post(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud,
			uint64_t *ticket)
{
	int r;

	if ((unsigned)verb >= _VM_VERB_MAX)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	if (!vm->live) {
		r = -ENOENT;
	} else if (vm->cmd_pending) {
		r = -EBUSY;
	} else {
		r = lifecycle_check(&vm->lc, verb);
		if (r == 0) {
			if (vm->n_waiters >= VM_WAITERS_MAX) {
				r = -EBUSY;
			} else {
				*ticket = ++vm->cmds_posted;
				vm->waiters[vm->n_waiters++] = (struct vm_waiter){.verb = (int)verb,
										  .ticket = *ticket,
										  .done = done,
										  .ud = ud};
				vm->cmd_pending = true;
			}
		}
	}
	pthread_mutex_unlock(&vm->lock);
	if (r != 0)
		return r;
	/* A verb is the lifecycle event of the same value (static_asserts in lifecycle.c). */
	r = sv_post_command(vm->rt, vm, (enum lc_event)verb, *ticket);
	if (r < 0) {
		pthread_mutex_lock(&vm->lock);
		vm->n_waiters--;
		vm->cmd_pending = false;
		vm->cmds_posted--;
		pthread_mutex_unlock(&vm->lock);
	}
	return r;
}

int vm_command_post(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud)
{
	uint64_t ticket;

	return command_post(vm, verb, done, ud, &ticket);
}

/* How long a writer waits for the supervisor to take its command (it never blocks: this only
 * covers a loaded machine; past it the write returns and the transition still happens). */
#define CMD_VISIBLE_WAIT_MS 2000

int vm_command(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud)
{
	struct timespec deadline;
	uint64_t ticket = 0;
	int r;

	r = command_post(vm, verb, done, ud, &ticket);
	if (r != 0)
		return r;
	/* Read-your-writes: once this returns, `state` shows the transition the command started
	 * (or its end), never the state before it. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += CMD_VISIBLE_WAIT_MS / 1000;
	pthread_mutex_lock(&vm->lock);
	while (vm->cmds_done < ticket && !atomic_load(&vm->rt->stopping))
		if (pthread_cond_timedwait(&vm->cmd_cond, &vm->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_set_image(struct vm *vm, const char *ref, struct err *err)
{
	struct img_ref parsed;
	char *copy;
	int r;

	if (strlen(ref) >= IMG_REF_MAX)
		return err_set(err, -EINVAL, "image reference too long");
	r = img_ref_parse(ref, &parsed, err);
	if (r < 0)
		return r;
	copy = strdup(ref);
	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&vm->lock);
	if (!vm->live) {
		r = -ENOENT;
	} else if (vm->cmd_pending || vm->lc.exiting ||
		   !(vm->lc.state == VM_STATE_CREATED || vm->lc.state == VM_STATE_STOPPED ||
		     vm->lc.state == VM_STATE_FAILED)) {
		r = err_set(err, -EBUSY, "the image can only change in created, stopped or failed");
	} else {
		free(vm->image);
		vm->image = TAKE_PTR(copy);
		vm_touch_locked(vm, VM_ATTR_IMAGE);
		r = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	free(copy);
	if (r == 0) {
		vm_notify(vm, VM_ATTR_IMAGE);
		vm_record_save(vm);
	}
	return r;
}
