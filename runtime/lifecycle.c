/* SPDX-License-Identifier: MIT */
/*
 * The VM lifecycle as one constant [state][event] table of small functions (s6's shape). Only
 * the supervisor thread feeds events; side effects go through struct lc_actions, so the table is
 * testable on its own. docs/contract.md ("States and verbs") is the law for what each verb does
 * where.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

/* The names of the states and verbs (the words of the state file). */
static const char *const state_names[_VM_STATE_MAX] = {
	[VM_STATE_CREATED] = "created",	    [VM_STATE_STARTING] = "starting",
	[VM_STATE_RUNNING] = "running",	    [VM_STATE_STOPPING] = "stopping",
	[VM_STATE_STOPPED] = "stopped",	    [VM_STATE_FAILED] = "failed",
	[VM_STATE_PAUSED] = "paused",	    [VM_STATE_SUSPENDING] = "suspending",
	[VM_STATE_SUSPENDED] = "suspended",
};
static const char *const verb_names[_VM_VERB_MAX] = {
	[VM_VERB_START] = "start",     [VM_VERB_STOP] = "stop",	  [VM_VERB_KILL] = "kill",
	[VM_VERB_RESTART] = "restart", [VM_VERB_PAUSE] = "pause", [VM_VERB_RESUME] = "resume",
	[VM_VERB_SUSPEND] = "suspend",
};

const char *vm_state_to_string(enum vm_state s)
{
	return (unsigned)s < _VM_STATE_MAX ? state_names[s] : NULL;
}

int vm_state_from_string(const char *s)
{
	for (int i = 0; s && i < _VM_STATE_MAX; i++)
		if (strcmp(s, state_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *vm_verb_to_string(enum vm_verb v)
{
	return (unsigned)v < _VM_VERB_MAX ? verb_names[v] : NULL;
}

int vm_verb_from_string(const char *s)
{
	for (int i = 0; s && i < _VM_VERB_MAX; i++)
		if (strcmp(s, verb_names[i]) == 0)
			return i;
	return -EINVAL;
}

/* A verb is posted to the supervisor as the lifecycle event of the same value (vm_command). */
static_assert((int)LC_EV_START == (int)VM_VERB_START, "verb and event orders differ");
static_assert((int)LC_EV_STOP == (int)VM_VERB_STOP, "verb and event orders differ");
static_assert((int)LC_EV_KILL == (int)VM_VERB_KILL, "verb and event orders differ");
static_assert((int)LC_EV_RESTART == (int)VM_VERB_RESTART, "verb and event orders differ");
static_assert((int)LC_EV_PAUSE == (int)VM_VERB_PAUSE, "verb and event orders differ");
static_assert((int)LC_EV_RESUME == (int)VM_VERB_RESUME, "verb and event orders differ");
static_assert((int)LC_EV_SUSPEND == (int)VM_VERB_SUSPEND, "verb and event orders differ");
static_assert((int)LC_EV_SUSPEND + 1 == (int)_VM_VERB_MAX, "every verb is an event");

typedef int (*lc_fn)(struct lc_vm *s, const struct lc_actions *a, void *ud);

/* start (or resume) of an idle or suspended VM: a saved state is restored, never replaced by a
 * cold boot (docs/suspend.md). */
static int lc_start(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->state = VM_STATE_STARTING;
	s->pending_stop = s->pending_kill = s->restart = false;
	s->exiting = s->exit_clean = s->stop_by_request = false;
	s->park = LC_PARK_NONE;
	s->vmm_paused = false;
	s->restore = s->saved;
	a->launch(ud);
	return 0;
}

/* restart of an idle or suspended VM: the saved state goes, the VM boots afresh (the cold
 * launch removes the saved state's directory itself). */
static int lc_restart_idle(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->saved = false;
	return lc_start(s, a, ud);
}

/* stop/kill of a suspended VM (or of a failed one that keeps a saved state): the saved state is
 * discarded and the VM is stopped. Elsewhere idle: nothing to do. */
static int lc_idle_stop(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	if (!s->saved && s->state != VM_STATE_SUSPENDED)
		return 0;
	s->saved = false;
	s->state = VM_STATE_STOPPED;
	a->discard(ud);
	a->complete(ud, VM_VERB_STOP, 0);
	a->complete(ud, VM_VERB_KILL, 0);
	return 0;
}

/* pause / resume / suspend: one VMM operation on a worker (park job). */
static int lc_park(struct lc_vm *s, const struct lc_actions *a, void *ud, enum lc_park op)
{
	s->park = op;
	if (op == LC_PARK_SUSPEND)
		s->state = VM_STATE_SUSPENDING;
	a->park(ud, op);
	return 0;
}

static int lc_pause(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	return lc_park(s, a, ud, LC_PARK_PAUSE);
}

static int lc_resume(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	return lc_park(s, a, ud, LC_PARK_RESUME);
}

static int lc_suspend(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	return lc_park(s, a, ud, LC_PARK_SUSPEND);
}

static int lc_park_ok(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	enum lc_park op = s->park;

	s->park = LC_PARK_NONE;
	switch (op) {
	case LC_PARK_PAUSE:
		s->state = VM_STATE_PAUSED;
		s->vmm_paused = true;
		a->complete(ud, VM_VERB_PAUSE, 0);
		return 0;
	case LC_PARK_RESUME:
		s->state = VM_STATE_RUNNING;
		s->vmm_paused = false;
		a->complete(ud, VM_VERB_RESUME, 0);
		a->complete(ud, VM_VERB_START, 0);
		return 0;
	case LC_PARK_SUSPEND:
		/* The saved state is complete on disk: the VMM goes (its exit, then the cleanup,
		 * end the suspend). */
		s->saved = true;
		s->stop_by_request = true;
		if (!s->exiting)
			a->kill(ud);
		return 0;
	default:
		return -EINVAL;
	}
}

static int lc_park_fail(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	enum lc_park op = s->park;

	if (op == LC_PARK_NONE)
		return -EINVAL;
	s->park = LC_PARK_NONE;
	if (op == LC_PARK_SUSPEND) {
		/* Nothing was saved; the job left the VM as it found it. */
		if (s->exiting)
			return 0; /* the VMM died meanwhile: the cleanup decides */
		s->state = s->vmm_paused ? VM_STATE_PAUSED : VM_STATE_RUNNING;
		a->complete(ud, VM_VERB_SUSPEND, -EIO);
		return 0;
	}
	a->complete(ud, op == LC_PARK_PAUSE ? VM_VERB_PAUSE : VM_VERB_RESUME, -EIO);
	if (op == LC_PARK_RESUME)
		a->complete(ud, VM_VERB_START, -EIO);
	return 0;
}

/* The suspend's VMM is gone and cleaned up: suspended with the saved state, or failed (the
 * VMM died before the state was complete). */
static int lc_suspending_cleaned(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->exiting = false;
	s->stop_by_request = false;
	s->vmm_paused = false;
	s->park = LC_PARK_NONE;
	if (s->saved) {
		s->state = VM_STATE_SUSPENDED;
		a->complete(ud, VM_VERB_SUSPEND, 0);
		a->complete(ud, -1, 0);
		return 0;
	}
	s->state = VM_STATE_FAILED;
	a->complete(ud, -1, -EIO);
	return 0;
}

static int lc_noop(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	return 0;
}

static int lc_starting_stop(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->pending_stop = true;
	return 0;
}

static int lc_starting_kill(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->pending_kill = true;
	a->kill(ud);
	return 0;
}

static int lc_graceful(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->state = VM_STATE_STOPPING;
	s->stop_by_request = true;
	a->request_stop(ud);
	a->arm_deadline(ud);
	return 0;
}

static int lc_launch_ok(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	/* The start itself succeeded: its writers get success even if a stop follows. A restore
	 * consumed the saved state (removed before the guest ran again). */
	if (s->restore)
		s->saved = false;
	s->restore = false;
	a->complete(ud, VM_VERB_START, 0);
	a->complete(ud, VM_VERB_RESUME, 0);
	a->complete(ud, VM_VERB_RESTART, 0);
	if (s->pending_kill) {
		s->state = VM_STATE_STOPPING;
		s->stop_by_request = true;
		a->kill(ud);
		return 0;
	}
	if (s->pending_stop)
		return lc_graceful(s, a, ud);
	s->state = VM_STATE_RUNNING;
	return 0;
}

static int lc_launch_fail(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	bool asked = s->pending_kill || s->pending_stop;

	/* A start cut short by stop/kill ends stopped; the start's writers still see the failure.
	 */
	s->state = asked ? VM_STATE_STOPPED : VM_STATE_FAILED;
	s->pending_kill = s->pending_stop = false;
	/* A failed restore keeps its saved state (failed, never a cold boot instead); a stop or
	 * kill that cut it short discards it like a stop of the suspended VM would. */
	if (s->restore && asked && s->saved) {
		s->saved = false;
		a->discard(ud);
	}
	s->restore = false;
	a->complete(ud, VM_VERB_START, -EIO);
	a->complete(ud, VM_VERB_RESUME, -EIO);
	a->complete(ud, VM_VERB_RESTART, -EIO);
	a->complete(ud, -1, asked ? 0 : -EIO);
	return 0;
}

static int lc_running_kill(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	/* A pause or resume in flight is called off: its writer gets the failure. */
	if (s->park == LC_PARK_PAUSE || s->park == LC_PARK_RESUME) {
		a->complete(ud, VM_VERB_PAUSE, -EIO);
		a->complete(ud, VM_VERB_RESUME, -EIO);
		a->complete(ud, VM_VERB_START, -EIO);
		s->park = LC_PARK_NONE;
	}
	s->state = VM_STATE_STOPPING;
	s->stop_by_request = true;
	s->pending_kill = true;
	a->kill(ud);
	return 0;
}

/* kill escalates a graceful stop (or a restart's stop) that hangs: the VMM is killed now and
 * the VM ends stopped; a restart under way is called off (its writer gets the failure). */
static int lc_stopping_kill(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->pending_kill = true;
	s->stop_by_request = true;
	s->restart = false;
	if (!s->exiting)
		a->kill(ud);
	return 0;
}

static int lc_running_restart(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	lc_graceful(s, a, ud);
	s->restart = true;
	return 0;
}

static int lc_exited(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->exiting = true;
	a->cleanup(ud);
	return 0;
}

static int lc_running_cleaned(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	/* The VMM ended on its own: clean exit is stopped, anything else failed (docs/contract.md).
	 */
	s->state = s->exit_clean ? VM_STATE_STOPPED : VM_STATE_FAILED;
	s->exiting = false;
	s->park = LC_PARK_NONE;
	s->vmm_paused = false;
	a->complete(ud, -1, -EIO);
	return 0;
}

static int lc_deadline(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	if (!s->exiting)
		a->kill(ud);
	return 0;
}

static int lc_stopping_cleaned(struct lc_vm *s, const struct lc_actions *a, void *ud)
{
	s->vmm_paused = false;
	s->exiting = false;
	s->stop_by_request = false;
	s->pending_stop = s->pending_kill = false;
	if (s->restart) {
		a->complete(ud, VM_VERB_STOP, 0);
		a->complete(ud, VM_VERB_KILL, 0);
		s->state = VM_STATE_STARTING;
		s->restart = false;
		a->launch(ud);
		return 0;
	}
	s->state = VM_STATE_STOPPED;
	a->complete(ud, VM_VERB_START, -EIO);
	a->complete(ud, VM_VERB_RESTART, -EIO);
	a->complete(ud, -1, 0);
	return 0;
}

#define IDLE_ROW                                                                \
	{                                                                       \
		[LC_EV_START] = lc_start, [LC_EV_STOP] = lc_idle_stop,          \
		[LC_EV_KILL] = lc_idle_stop, [LC_EV_RESTART] = lc_restart_idle, \
	}

/* NULL: the event is unexpected in that state. */
static const lc_fn lc_table[_VM_STATE_MAX][_LC_EV_MAX] = {
	[VM_STATE_CREATED] = IDLE_ROW,
	[VM_STATE_STOPPED] = IDLE_ROW,
	[VM_STATE_FAILED] = IDLE_ROW,
	[VM_STATE_STARTING] =
		{
			[LC_EV_STOP] = lc_starting_stop,
			[LC_EV_KILL] = lc_starting_kill,
			[LC_EV_LAUNCH_OK] = lc_launch_ok,
			[LC_EV_LAUNCH_FAIL] = lc_launch_fail,
		},
	[VM_STATE_RUNNING] =
		{
			[LC_EV_START] = lc_noop,
			[LC_EV_STOP] = lc_graceful,
			[LC_EV_KILL] = lc_running_kill,
			[LC_EV_RESTART] = lc_running_restart,
			[LC_EV_PAUSE] = lc_pause,
			[LC_EV_RESUME] = lc_noop,
			[LC_EV_SUSPEND] = lc_suspend,
			[LC_EV_EXIT] = lc_exited,
			[LC_EV_CLEANUP_DONE] = lc_running_cleaned,
			[LC_EV_PARK_OK] = lc_park_ok,
			[LC_EV_PARK_FAIL] = lc_park_fail,
		},
	[VM_STATE_PAUSED] =
		{
			[LC_EV_START] = lc_resume,
			[LC_EV_STOP] = lc_graceful,
			[LC_EV_KILL] = lc_running_kill,
			[LC_EV_RESTART] = lc_running_restart,
			[LC_EV_PAUSE] = lc_noop,
			[LC_EV_RESUME] = lc_resume,
			[LC_EV_SUSPEND] = lc_suspend,
			[LC_EV_EXIT] = lc_exited,
			[LC_EV_CLEANUP_DONE] = lc_running_cleaned,
			[LC_EV_PARK_OK] = lc_park_ok,
			[LC_EV_PARK_FAIL] = lc_park_fail,
		},
	[VM_STATE_SUSPENDING] =
		{
			[LC_EV_EXIT] = lc_exited,
			[LC_EV_CLEANUP_DONE] = lc_suspending_cleaned,
			[LC_EV_PARK_OK] = lc_park_ok,
			[LC_EV_PARK_FAIL] = lc_park_fail,
		},
	[VM_STATE_SUSPENDED] =
		{
			[LC_EV_START] = lc_start,
			[LC_EV_RESUME] = lc_start,
			[LC_EV_STOP] = lc_idle_stop,
			[LC_EV_KILL] = lc_idle_stop,
			[LC_EV_RESTART] = lc_restart_idle,
			[LC_EV_PAUSE] = lc_noop,
			[LC_EV_SUSPEND] = lc_noop,
		},
	[VM_STATE_STOPPING] =
		{
			[LC_EV_KILL] = lc_stopping_kill,
			[LC_EV_EXIT] = lc_exited,
			[LC_EV_DEADLINE] = lc_deadline,
			[LC_EV_CLEANUP_DONE] = lc_stopping_cleaned,
		},
};

int lifecycle_check(const struct lc_vm *s, enum vm_verb verb)
{
	if ((unsigned)verb >= _VM_VERB_MAX)
		return -EINVAL;
	switch (s->state) {
	case VM_STATE_CREATED:
	case VM_STATE_STOPPED:
	case VM_STATE_FAILED:
		if (verb == VM_VERB_PAUSE || verb == VM_VERB_RESUME || verb == VM_VERB_SUSPEND)
			return -EINVAL;
		if (verb == VM_VERB_STOP || verb == VM_VERB_KILL)
			return s->saved ? 0 : 1;
		return 0;
	case VM_STATE_RUNNING:
	case VM_STATE_PAUSED:
		if (s->exiting)
			return -EBUSY;
		/* A pause or resume in flight: only kill cuts in. */
		if (s->park != LC_PARK_NONE)
			return verb == VM_VERB_KILL ? 0 : -EBUSY;
		if (s->state == VM_STATE_RUNNING)
			return verb == VM_VERB_START || verb == VM_VERB_RESUME ? 1 : 0;
		return verb == VM_VERB_PAUSE ? 1 : 0;
	case VM_STATE_SUSPENDED:
		return verb == VM_VERB_PAUSE || verb == VM_VERB_SUSPEND ? 1 : 0;
	case VM_STATE_SUSPENDING:
		return -EBUSY;
	case VM_STATE_STARTING:
		/* docs/contract.md: stop goes starting -> stopping; kill cuts a start short. */
		if (verb == VM_VERB_STOP)
			return s->pending_stop || s->pending_kill ? -EBUSY : 0;
		if (verb == VM_VERB_KILL)
			return s->pending_kill ? -EBUSY : 0;
		return -EBUSY;
	case VM_STATE_STOPPING:
		/* kill escalates a stop in flight, once; anything else waits for its end. */
		if (verb == VM_VERB_KILL)
			return s->pending_kill ? -EBUSY : 0;
		return -EBUSY;
	default:
		return -EBUSY;
	}
}

int lifecycle_event(struct lc_vm *s, enum lc_event ev, const struct lc_actions *a, void *ud)
{
	lc_fn fn;

	if ((unsigned)s->state >= _VM_STATE_MAX || (unsigned)ev >= _LC_EV_MAX)
		return -EINVAL;
	fn = lc_table[s->state][ev];
	if (!fn)
		return -EINVAL;
	return fn(s, a, ud);
}

const char *lc_event_to_string(enum lc_event ev)
{
	static const char *const names[_LC_EV_MAX] = {
		[LC_EV_START] = "start",
		[LC_EV_STOP] = "stop",
		[LC_EV_KILL] = "kill",
		[LC_EV_RESTART] = "restart",
		[LC_EV_PAUSE] = "pause",
		[LC_EV_RESUME] = "resume",
		[LC_EV_SUSPEND] = "suspend",
		[LC_EV_LAUNCH_OK] = "launch-ok",
		[LC_EV_LAUNCH_FAIL] = "launch-fail",
		[LC_EV_EXIT] = "exit",
		[LC_EV_DEADLINE] = "deadline",
		[LC_EV_CLEANUP_DONE] = "cleanup-done",
		[LC_EV_PARK_OK] = "park-ok",
		[LC_EV_PARK_FAIL] = "park-fail",
	};
	return (unsigned)ev < _LC_EV_MAX ? names[ev] : "?";
}
