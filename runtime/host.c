/* SPDX-License-Identifier: MIT */
/*
 * What a VM holds on the host around its VMM, and the one way to let go of it: the guest agent
 * client (vm_agent_start/stop) and vm_host_teardown, the kill -> wait -> backend cleanup -> strays
 * -> network -> image hold sequence that every path ending a VMM runs (a failed launch, the
 * cleanup after an exit, re-adoption at start, destroy).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "internal.h"
#include "log.h"

/* Where a start's time went from the VMM running to the app started, as the agent client saw it
 * (CLOCK_MONOTONIC ms; the launch logs the steps before, docs/template.md): once per client. */
static void log_guest_timing(struct vm *vm, struct agent *agent)
{
	struct agent_status st;
	uint64_t t0;

	agent_get_status(agent, &st);
	if (st.app_starts != 1)
		return;
	t0 = st.started_at_ms;
#define REL(x) ((x) >= t0 ? (long long)((x)-t0) : -1ll)
	log_info("%s: guest timing: agent answered +%lld ms, identity taken +%lld, network +%lld, "
		 "app started +%lld after the VMM ran (monotonic ms %llu)",
		 vm->name, REL(st.connected_at_ms),
		 st.identity_at_ms ? REL(st.identity_at_ms) : -1ll,
		 st.net_at_ms ? REL(st.net_at_ms) : -1ll, REL(st.app_started_at_ms),
		 (unsigned long long)t0);
#undef REL
}

static void on_agent_event(void *ud, struct agent *agent, enum agent_event ev)
{
	struct vm *vm = ud;
	enum vm_attr attr = ev == AGENT_EVENT_OUTPUT ? VM_ATTR_LOG : VM_ATTR_HEALTH;

	/* A restored guest that says another boot id did not continue: it booted again. */
	if (ev == AGENT_EVENT_REBOOTED) {
		log_warning("%s: the guest agent reports another boot than before", vm->name);
		vm_set_error(vm, "restore: the guest came back as another boot (it rebooted "
				 "instead of continuing)");
	}

	if (ev == AGENT_EVENT_APP_STARTED)
		log_guest_timing(vm, agent);

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
	char *identity;
	int r;

	if (!vm->h.agent_socket[0])
		return;
	pthread_mutex_lock(&vm->lock);
	if (vm->expect_boot_id && vm->has_boot_id)
		ac.expect_boot_id = vm->boot_id;
	vm->expect_boot_id = false;
	identity = vm->identity;
	vm->identity = NULL;
	pthread_mutex_unlock(&vm->lock);
	if (identity) {
		ac.identity = identity;
		ac.identity_len = strlen(identity);
	}
	r = agent_start(&ac, &a);
	free(identity);
	if (r < 0) {
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

void vm_host_teardown(struct runtime *rt, struct vm *vm, struct vmm_handle *h, unsigned flags)
{
	struct vmm_exit ex;

	vm_agent_stop(vm);
	if (h->pidfd >= 0) {
		struct pollfd pfd = {.fd = h->pidfd, .events = POLLIN};
		(void)rt->ops->kill(rt->ops_priv, h);
		(void)poll(&pfd, 1, 5000);
		vmm_handle_reap(h, &ex);
	}
	rt->ops->cleanup(rt->ops_priv, vm->name, h);
	if (flags & HOST_TEARDOWN_STRAYS)
		(void)rt_kill_strays(rt, vm->name, 0, 2000);
	if (vm->launching) {
		pthread_mutex_lock(&vm->lock);
		vm->launching = false;
		pthread_mutex_unlock(&vm->lock);
	}
	net_teardown(rt, vm);
	if (!(flags & HOST_TEARDOWN_KEEP_IMAGE) && rt->store &&
	    atomic_exchange(&vm->img_held, false))
		(void)img_release(rt->store, vm->name);
	atomic_store(&vm->launch_pid, 0);
}
