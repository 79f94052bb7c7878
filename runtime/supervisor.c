/* SPDX-License-Identifier: MIT */
/*
 * The supervisor: one thread, an epoll loop over the VMMs' pidfds, the graceful-stop deadline
 * timerfds and an eventfd-driven message queue. It owns every state change: each event goes
 * through the lifecycle table on a copy of the VM's lifecycle fields, the result is committed
 * under vm->lock, and only then are the side effects run (jobs queued on the worker pool, a
 * SIGKILL, waiters completed, poll notifications) with no lock held.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"
#include "thread.h"

enum {
	SV_WATCH_PIDFD = 1,
	SV_WATCH_DEADLINE,
};

#define SV_PROBE_MS 2000
static struct sv_watch tick_watch; /* data.ptr marker for the probe timer */

/* Side effects asked for by the table, run after the new state is committed. */
struct sv_effects {
	bool launch, request_stop, arm_deadline, kill, cleanup, discard;
	enum lc_park park;
	struct {
		int verb;
		int result;
	} done[8];
	unsigned n_done;
};

static void fx_launch(void *ud)
{
	((struct sv_effects *)ud)->launch = true;
}
static void fx_request_stop(void *ud)
{
	((struct sv_effects *)ud)->request_stop = true;
}
static void fx_arm(void *ud)
{
	((struct sv_effects *)ud)->arm_deadline = true;
}
static void fx_kill(void *ud)
{
	((struct sv_effects *)ud)->kill = true;
}
static void fx_cleanup(void *ud)
{
	((struct sv_effects *)ud)->cleanup = true;
}
static void fx_complete(void *ud, int verb, int result)
{
	struct sv_effects *fx = ud;

	if (fx->n_done < ELEMENTSOF(fx->done))
		fx->done[fx->n_done++] = (typeof(fx->done[0])){verb, result};
}

static void fx_park(void *ud, enum lc_park op)
{
	((struct sv_effects *)ud)->park = op;
}
static void fx_discard(void *ud)
{
	((struct sv_effects *)ud)->discard = true;
}

static const struct lc_actions sv_lc_actions = {
	.park = fx_park,
	.discard = fx_discard,
	.launch = fx_launch,
	.request_stop = fx_request_stop,
	.arm_deadline = fx_arm,
	.kill = fx_kill,
	.cleanup = fx_cleanup,
	.complete = fx_complete,
};

int sv_watch_pidfd(struct runtime *rt, struct vm *vm)
{
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = &vm->pid_watch};

	if (vm->h.pidfd < 0 || vm->pidfd_watched)
		return 0;
	vm->pid_watch.kind = SV_WATCH_PIDFD;
	if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, vm->h.pidfd, &e) < 0)
		return -errno;
	vm->pidfd_watched = true;
	vm_ref(vm); /* the registration's reference */
	return 0;
}

static void unwatch_pidfd(struct runtime *rt, struct vm *vm)
{
	if (!vm->pidfd_watched)
		return;
	(void)epoll_ctl(rt->epfd, EPOLL_CTL_DEL, vm->h.pidfd, NULL);
	vm->pidfd_watched = false;
	vm_unref(vm);
}

static void disarm_deadline(struct runtime *rt, struct vm *vm)
{
	if (vm->deadline_fd < 0)
		return;
	(void)epoll_ctl(rt->epfd, EPOLL_CTL_DEL, vm->deadline_fd, NULL);
	vm->deadline_fd = safe_close(vm->deadline_fd);
	vm_unref(vm);
}

void sv_unwatch(struct runtime *rt, struct vm *vm)
{
	unwatch_pidfd(rt, vm);
	disarm_deadline(rt, vm);
}

static void arm_deadline(struct runtime *rt, struct vm *vm)
{
	unsigned ms = rt->cfg.stop_timeout_ms;
	struct itimerspec its = {
		.it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L}};
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = &vm->dl_watch};
	int fd;

	disarm_deadline(rt, vm);
	if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0) {
		log_error_errno(-errno, "%s: stop deadline timer, killing now", vm->name);
		safe_close(fd);
		(void)rt->ops->kill(rt->ops_priv, &vm->h);
		return;
	}
	vm->dl_watch.kind = SV_WATCH_DEADLINE;
	if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		safe_close(fd);
		(void)rt->ops->kill(rt->ops_priv, &vm->h);
		return;
	}
	vm->deadline_fd = fd;
	vm_ref(vm);
}

/* SIGKILL: while starting the launch job owns the handle, so cancel it and signal the pid it
 * published (pinned: the job holds a pidfd and has not reaped it). */
static void do_kill(struct runtime *rt, struct vm *vm, enum vm_state state)
{
	if (state == VM_STATE_STARTING) {
		pid_t pid;
		int fd;

		atomic_store(&vm->cancel, true);
		pid = (pid_t)atomic_load(&vm->launch_pid);
		if (pid > 0 && (fd = (int)syscall(SYS_pidfd_open, pid, 0)) >= 0) {
			(void)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
			close(fd);
		}
		return;
	}
	if (rt->ops->kill(rt->ops_priv, &vm->h) < 0 && vm->h.pidfd < 0)
		log_debug("%s: kill: no VMM process", vm->name);
}

/* Waiters taken off a VM, to be answered once its lock is released. */
struct sv_answers {
	struct {
		struct vm_waiter w;
		int result;
	} v[VM_WAITERS_MAX];
	unsigned n;
};

/* Under vm->lock: take the waiters of verb (all when < 0). */
static void take_waiters_locked(struct vm *vm, int verb, int result, struct sv_answers *ans)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < vm->n_waiters; i++) {
		if ((verb < 0 || vm->waiters[i].verb == verb) && ans->n < VM_WAITERS_MAX) {
			ans->v[ans->n].w = vm->waiters[i];
			ans->v[ans->n++].result = result;
		} else {
			vm->waiters[keep++] = vm->waiters[i];
		}
	}
	vm->n_waiters = keep;
}

static void answer_waiters(struct sv_answers *ans)
{
	for (unsigned i = 0; i < ans->n; i++)
		if (ans->v[i].w.done)
			ans->v[i].w.done(ans->v[i].w.ud, ans->v[i].result);
	ans->n = 0;
}

/* A command left the queue without changing the state: its own waiter (and only it: other
 * writers of the same verb may wait for a transition that goes on) gets result, and the next
 * command may be accepted. */
static void command_refused(struct vm *vm, uint64_t ticket, int result)
{
	struct sv_answers ans = {};
	unsigned keep = 0;

	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->n_waiters; i++) {
		if (ticket && vm->waiters[i].ticket == ticket && ans.n == 0) {
			ans.v[ans.n].w = vm->waiters[i];
			ans.v[ans.n++].result = result;
		} else {
			vm->waiters[keep++] = vm->waiters[i];
		}
	}
	vm->n_waiters = keep;
	vm->cmd_pending = false;
	vm->cmds_done++;
	pthread_cond_broadcast(&vm->cmd_cond);
	pthread_mutex_unlock(&vm->lock);
	answer_waiters(&ans);
}

/* The decision: the event through the table on a copy of the lifecycle fields (*s; *before the
 * fields it started from), a command re-checked first. false: nothing to commit (a refused
 * command was answered). */
static bool decide(struct vm *vm, enum lc_event ev, uint64_t ticket, struct lc_vm *before,
		   struct lc_vm *s, struct sv_effects *fx)
{
	bool is_cmd = (int)ev < _VM_VERB_MAX;
	int r;

	/* cmd_pending stays set until the commit: no other command can be accepted against the
	 * state this one is about to replace. */
	pthread_mutex_lock(&vm->lock);
	*s = vm->lc;
	pthread_mutex_unlock(&vm->lock);
	*before = *s;
	if (is_cmd) {
		/* The state may have moved since vm_command accepted (a crash): re-check. */
		r = lifecycle_check(s, (enum vm_verb)ev);
		if (r != 0) {
			command_refused(vm, ticket, r > 0 ? 0 : r);
			return false;
		}
	}
	r = lifecycle_event(s, ev, &sv_lc_actions, fx);
	if (r < 0) {
		log_debug("%s: event %s ignored in state %s", vm->name, lc_event_to_string(ev),
			  vm_state_to_string(s->state));
		if (is_cmd)
			command_refused(vm, ticket, -EBUSY);
		return false;
	}
	return true;
}

/* Under vm->lock: publish the new lifecycle fields s (was old) and what follows from a state
 * change (times, counters, health fields, change counters). */
static void commit_locked(struct vm *vm, const struct lc_vm *s, enum vm_state old)
{
	vm->lc = *s;
	if (s->state == old)
		return;
	clock_gettime(CLOCK_REALTIME, &vm->state_since);
	vm->hs.vmm_since = vm->state_since;
	if (s->state == VM_STATE_STARTING) {
		vm->hs.image_phase[0] = '\0';
		vm->hs.vmm_run = VMM_RUN_NOT_STARTED;
	}
	if (s->state == VM_STATE_RUNNING && old == VM_STATE_STARTING)
		vm->boots++;
	if (s->state == VM_STATE_PAUSED)
		vm->hs.vmm_run = VMM_RUN_PAUSED;
	if (s->state == VM_STATE_RUNNING && old == VM_STATE_PAUSED)
		vm->hs.vmm_run = VMM_RUN_RUNNING;
	if (s->state == VM_STATE_FAILED)
		vm->failures++;
	if (s->state == VM_STATE_STOPPED)
		vm->mx.stops++;
	if (s->state == VM_STATE_STOPPED || s->state == VM_STATE_FAILED ||
	    s->state == VM_STATE_SUSPENDED) {
		vm->pid = 0;
		vm->hs.vmm_run = VMM_RUN_GONE;
		vm->hs.net_known = false;
		vm_touch_locked(vm, VM_ATTR_PID);
	}
	vm_touch_locked(vm, VM_ATTR_STATE);
	vm_touch_locked(vm, VM_ATTR_HEALTH);
}

/* The side effects the table asked for, with no lock held (state: the committed one, old: the
 * one before). */
static void run_effects(struct runtime *rt, struct vm *vm, const struct sv_effects *fx,
			enum vm_state old, enum vm_state state)
{
	if (fx->kill)
		do_kill(rt, vm,
			old == VM_STATE_STARTING && state == VM_STATE_STARTING ? VM_STATE_STARTING
									       : state);
	if (fx->arm_deadline)
		arm_deadline(rt, vm);
	if (fx->launch) {
		atomic_store(&vm->cancel, false);
		atomic_store(&vm->img_cancel, false);
		/* On the outside pool: an image pull may take minutes. */
		if (rt_job_long(rt, vm, job_launch, NULL) < 0) {
			log_error("%s: cannot queue the start job", vm->name);
			vm_set_error(vm, "start: cannot queue the start job (shutting down?)");
			(void)sv_post_event(rt, vm, LC_EV_LAUNCH_FAIL);
		}
	}
	if (fx->request_stop && rt_job(rt, vm, job_request_stop, NULL) < 0)
		do_kill(rt, vm, state);
	if (fx->cleanup) {
		disarm_deadline(rt, vm);
		if (rt_job(rt, vm, job_cleanup, NULL) < 0)
			log_error("%s: cannot queue the cleanup job", vm->name);
	}
	if (fx->discard && rt_job(rt, vm, job_discard, NULL) < 0)
		log_error("%s: cannot queue the job discarding the saved state", vm->name);
	if (fx->park != LC_PARK_NONE) {
		/* A suspend writes to the disk: the outside pool. Pause and resume are one call. */
		int r = fx->park == LC_PARK_SUSPEND
				? rt_job_long(rt, vm, job_park, (void *)(uintptr_t)fx->park)
				: rt_job(rt, vm, job_park, (void *)(uintptr_t)fx->park);
		if (r < 0) {
			vm_set_error(vm, "%s: cannot queue the job (shutting down?)",
				     lc_park_to_string(fx->park));
			(void)sv_post_event(rt, vm, LC_EV_PARK_FAIL);
		}
	}
}

/* One event: decide on a copy, write the record, commit under vm->lock, notify, then the side
 * effects and the answers of the finished commands. */
static void dispatch(struct runtime *rt, struct vm *vm, enum lc_event ev, uint64_t ticket)
{
	struct sv_effects fx = {};
	struct sv_answers ans = {};
	struct lc_vm before, s;
	enum vm_state old;
	bool is_cmd = (int)ev < _VM_VERB_MAX, restarting;
	sv_hook_fn hook;

	if (!decide(vm, ev, ticket, &before, &s, &fx))
		return;
	old = before.state;
	restarting = before.restart;
	hook = atomic_load(&rt->sv_before_commit);
	if (hook)
		hook(rt, vm, ev);
	/* kill while a restart stops the VM: the restart's writers fail, error says why. */
	if (ev == LC_EV_KILL && restarting && !s.restart)
		vm_set_error(vm, "restart: called off by kill (the VM ends stopped)");
	/* stop or kill of a start still in its image step: the pull's part for this VM ends now
	 * (the start then fails, and the VM ends stopped). */
	if ((ev == LC_EV_STOP || ev == LC_EV_KILL) && s.state == VM_STATE_STARTING)
		atomic_store(&vm->img_cancel, true);
	/* On disk before visible: a state a reader has seen survives a kill -9. */
	if (s.state != old)
		vm_record_save_as(vm, s.state);
	pthread_mutex_lock(&vm->lock);
	commit_locked(vm, &s, old);
	/* The finished commands leave with the state that ends them: a reader that sees
	 * "stopped" can rmdir or set the image at once (no EBUSY from a pending waiter). */
	for (unsigned i = 0; i < fx.n_done; i++)
		take_waiters_locked(vm, fx.done[i].verb, fx.done[i].result, &ans);
	if (is_cmd) {
		vm->cmd_pending = false;
		vm->cmds_done++;
		pthread_cond_broadcast(&vm->cmd_cond);
	}
	pthread_mutex_unlock(&vm->lock);
	if (s.state != old) {
		vm_notify(vm, VM_ATTR_STATE);
		vm_notify(vm, VM_ATTR_HEALTH);
	}
	run_effects(rt, vm, &fx, old, s.state);
	answer_waiters(&ans);
}

static void sv_dispatch(struct runtime *rt, struct vm *vm, enum lc_event ev)
{
	dispatch(rt, vm, ev, 0);
}

/* Is fd readable right now (a pidfd whose process ended, an expired timerfd)? */
static bool fd_ready(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* The VMM process ended. */
static void on_pidfd(struct runtime *rt, struct vm *vm)
{
	struct vmm_exit ex;
	enum vm_state st;
	bool asked;

	unwatch_pidfd(rt, vm);
	vmm_handle_reap(&vm->h, &ex);
	vm->last_exit = ex;
	pthread_mutex_lock(&vm->lock);
	st = vm->lc.state;
	asked = vm->lc.stop_by_request;
	vm->lc.exit_clean = ex.known && !ex.signal && ex.code == 0;
	pthread_mutex_unlock(&vm->lock);
	if (st == VM_STATE_RUNNING && !asked) {
		if (!ex.known)
			vm_set_error(
				vm,
				"vmm: the VMM exited on its own; exit status unknown (re-adopted "
				"after a daemon restart, not our child)");
		else if (ex.signal)
			vm_set_error(vm, "vmm: the VMM was killed by signal %d (%s)", ex.signal,
				     strsignal(ex.signal));
		else if (ex.code != 0)
			vm_set_error(vm, "vmm: the VMM exited with code %d", ex.code);
		log_info("%s: VMM exited (%s %d)", vm->name, ex.signal ? "signal" : "code",
			 ex.signal ? ex.signal : ex.code);
	}
	sv_dispatch(rt, vm, LC_EV_EXIT);
}

static void drain_queue(struct runtime *rt)
{
	struct sv_msg *m;
	uint64_t v;

	(void)!read(rt->evfd, &v, sizeof(v));
	for (;;) {
		pthread_mutex_lock(&rt->q_lock);
		m = rt->q_head;
		if (m) {
			rt->q_head = m->next;
			if (!rt->q_head)
				rt->q_tail = NULL;
		}
		pthread_mutex_unlock(&rt->q_lock);
		if (!m)
			return;
		if (m->ev == LC_EV_LAUNCH_OK)
			(void)sv_watch_pidfd(rt, m->vm);
		dispatch(rt, m->vm, m->ev, m->ticket);
		vm_unref(m->vm);
		free(m);
	}
}

/* Queue a health probe for each running VM that has none in flight. */
static void probe_all(struct runtime *rt)
{
	pthread_mutex_lock(&rt->lock);
	for (struct vm *v = rt->vms; v; v = v->next) {
		bool run;
		pthread_mutex_lock(&v->lock);
		run = v->live && v->lc.state == VM_STATE_RUNNING && !v->lc.exiting;
		pthread_mutex_unlock(&v->lock);
		/* On the outside pool: a VMM whose API hangs holds its probe for the call's
		 * deadline, and must not delay other VMs' stops and cleanups. */
		if (run && !atomic_exchange(&v->probing, true) &&
		    rt_job_long(rt, v, job_probe, NULL) < 0)
			atomic_store(&v->probing, false);
	}
	pthread_mutex_unlock(&rt->lock);
}

static void *sv_main(void *arg)
{
	struct runtime *rt = arg;
	struct epoll_event evs[16];

	while (!atomic_load(&rt->stopping)) {
		int n = epoll_wait(rt->epfd, evs, ELEMENTSOF(evs), 1000);

		if (n < 0 && errno != EINTR) {
			log_error_errno(-errno, "supervisor: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			struct sv_watch *w = evs[i].data.ptr;
			struct vm *vm;

			if (!w) {
				drain_queue(rt);
				continue;
			}
			if (w == &tick_watch) {
				uint64_t n_exp;
				(void)!read(rt->tick_fd, &n_exp, sizeof(n_exp));
				probe_all(rt);
				continue;
			}
			vm = vm_ref(w->vm);
			/* An event of this batch may be stale: an earlier one (a drained
			 * message) can have replaced the VM's pidfd or deadline timer since
			 * epoll_wait returned. Act only on the current fd being ready. */
			if (w->kind == SV_WATCH_PIDFD && vm->pidfd_watched &&
			    fd_ready(vm->h.pidfd)) {
				on_pidfd(rt, vm);
			} else if (w->kind == SV_WATCH_DEADLINE && vm->deadline_fd >= 0 &&
				   fd_ready(vm->deadline_fd)) {
				disarm_deadline(rt, vm);
				sv_dispatch(rt, vm, LC_EV_DEADLINE);
			}
			vm_unref(vm);
		}
	}
	drain_queue(rt);
	return NULL;
}

int sv_start(struct runtime *rt)
{
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
	int r;

	struct itimerspec its = {.it_value = {.tv_sec = SV_PROBE_MS / 1000},
				 .it_interval = {.tv_sec = SV_PROBE_MS / 1000}};
	struct epoll_event te = {.events = EPOLLIN, .data.ptr = &tick_watch};

	if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->evfd, &e) < 0)
		return -errno;
	rt->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (rt->tick_fd < 0 || timerfd_settime(rt->tick_fd, 0, &its, NULL) < 0 ||
	    epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->tick_fd, &te) < 0)
		return -errno;
	r = thread_create_nosig(&rt->sv_thread, sv_main, rt);
	if (r < 0)
		return r;
	rt->sv_running = true;
	return 0;
}

void sv_stop(struct runtime *rt)
{
	uint64_t one = 1;

	if (!rt->sv_running)
		return;
	atomic_store(&rt->stopping, true);
	(void)!write(rt->evfd, &one, sizeof(one));
	pthread_join(rt->sv_thread, NULL);
	rt->sv_running = false;
	rt->tick_fd = safe_close(rt->tick_fd);
}

void sv_discard(struct runtime *rt)
{
	pthread_mutex_lock(&rt->q_lock);
	while (rt->q_head) {
		struct sv_msg *m = rt->q_head;
		rt->q_head = m->next;
		vm_unref(m->vm);
		free(m);
	}
	rt->q_tail = NULL;
	pthread_mutex_unlock(&rt->q_lock);
}
