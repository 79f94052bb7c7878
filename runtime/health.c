/* SPDX-License-Identifier: MIT */
/*
 * The health file: a verdict word, then one "key: status ... since TIME" line per check
 * (docs/contract.md, "health"). The verdict is a pure function of the state and the checks'
 * statuses so it is unit-tested on its own; a slow boot (agent pending) is "starting", not
 * "unhealthy".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "internal.h"

const char *health_verdict_to_string(enum health_verdict v)
{
	static const char *const names[_HEALTH_VERDICT_MAX] = {
		[HEALTH_HEALTHY] = "healthy",	  [HEALTH_UNHEALTHY] = "unhealthy",
		[HEALTH_STARTING] = "starting",	  [HEALTH_STOPPED] = "stopped",
		[HEALTH_FAILED] = "failed",	  [HEALTH_PAUSED] = "paused",
		[HEALTH_SUSPENDED] = "suspended",
	};
	return (unsigned)v < ELEMENTSOF(names) ? names[v] : "unhealthy";
}

enum health_verdict health_verdict(const struct health_input *in)
{
	switch (in->state) {
	case VM_STATE_FAILED:
		return HEALTH_FAILED;
	case VM_STATE_STARTING:
		return HEALTH_STARTING;
	case VM_STATE_CREATED:
	case VM_STATE_STOPPED:
	case VM_STATE_STOPPING:
		return HEALTH_STOPPED;
	case VM_STATE_PAUSED:
	case VM_STATE_SUSPENDING:
		return HEALTH_PAUSED;
	case VM_STATE_SUSPENDED:
		return HEALTH_SUSPENDED;
	case VM_STATE_RUNNING:
		break;
	default:
		return HEALTH_UNHEALTHY;
	}
	if (in->vmm != CHECK_OK)
		return HEALTH_UNHEALTHY;
	if (in->net_expected && in->net == CHECK_DOWN)
		return HEALTH_UNHEALTHY;
	if (in->agent_available) {
		if (in->agent == CHECK_DOWN || in->app == CHECK_DOWN)
			return HEALTH_UNHEALTHY;
		if (in->agent != CHECK_OK || in->app != CHECK_OK)
			return HEALTH_STARTING;
	}
	if (in->net_expected && in->net != CHECK_OK)
		return HEALTH_STARTING;
	return HEALTH_HEALTHY;
}

static void since(const struct timespec *t, char *buf, size_t size)
{
	rfc3339_utc(t->tv_sec, buf, size);
}

static const char *mib(uint64_t b, char *buf, size_t size)
{
	snprintf(buf, size, "%lluMiB", (unsigned long long)(b >> 20));
	return buf;
}

/* A monotonic agent timestamp (ms) as wall-clock text. */
static void mono_since(const struct vm_snap *s, uint64_t t_ms, char *buf, size_t size)
{
	struct timespec now;
	time_t t;

	clock_gettime(CLOCK_REALTIME, &now);
	t = now.tv_sec - (time_t)((s->now_mono_ms - MIN(t_ms, s->now_mono_ms)) / 1000);
	rfc3339_utc(t, buf, size);
}

/* Agent and app checks from the agent client's status. A guest that has not answered yet is
 * pending for AGENT_BOOT_GRACE_S after the VMM started, then down. */
#define AGENT_BOOT_GRACE_S 60
static void agent_checks(const struct vm_snap *s, struct health_input *in, char *agent, size_t asz,
			 char *app, size_t psz)
{
	const struct agent_status *a = &s->agent;
	char v[200], t[32];
	struct timespec now;

	if (!s->has_agent) {
		char ts[32];
		since(&s->state_since, ts, sizeof(ts));
		snprintf(agent, asz, "unknown since %s (no agent channel)", ts);
		snprintf(app, psz, "unknown since %s (no agent channel)", ts);
		return;
	}
	in->agent_available = true;
	clock_gettime(CLOCK_REALTIME, &now);
	agent_format_health_agent(a, v, sizeof(v));
	if (!a->ever_connected) {
		in->agent = now.tv_sec - s->hs.vmm_since.tv_sec < AGENT_BOOT_GRACE_S ? CHECK_PENDING
										     : CHECK_DOWN;
		since(&s->hs.vmm_since, t, sizeof(t));
	} else {
		in->agent = a->heartbeat_fresh ? CHECK_OK : CHECK_DOWN;
		mono_since(s, a->heartbeat_fresh ? a->connected_at_ms : a->last_heartbeat_ms, t,
			   sizeof(t));
	}
	snprintf(agent, asz, "%s since %s", v, t);
	agent_format_health_app(a, v, sizeof(v));
	switch (a->app) {
	case AGENT_APP_RUNNING:
		in->app = CHECK_OK;
		mono_since(s, a->app_started_at_ms, t, sizeof(t));
		break;
	case AGENT_APP_EXITED:
	case AGENT_APP_START_FAILED:
		in->app = CHECK_DOWN;
		mono_since(s, a->app_started_at_ms, t, sizeof(t));
		break;
	default:
		in->app = in->agent == CHECK_DOWN ? CHECK_DOWN : CHECK_PENDING;
		since(&s->hs.vmm_since, t, sizeof(t));
		break;
	}
	snprintf(app, psz, "%s since %s", v, t);
}

/* The VMM check and its word. */
static const char *vmm_check(const struct vm_snap *s, enum check_status *ret)
{
	if (s->state == VM_STATE_RUNNING && s->pid > 0 && s->hs.vmm_run == VMM_RUN_RUNNING) {
		*ret = CHECK_OK;
		return "running";
	}
	if (s->state == VM_STATE_RUNNING && s->hs.vmm_run == VMM_RUN_PAUSED) {
		*ret = CHECK_DOWN;
		return "paused";
	}
	if (s->state == VM_STATE_PAUSED || s->state == VM_STATE_SUSPENDING) {
		*ret = CHECK_OK;
		return s->state == VM_STATE_PAUSED ? "paused" : "suspending";
	}
	if (s->state == VM_STATE_SUSPENDED) {
		*ret = CHECK_DOWN;
		return "suspended";
	}
	if (s->state == VM_STATE_STARTING) {
		*ret = CHECK_PENDING;
		return "starting";
	}
	*ret = CHECK_DOWN;
	if (s->pid > 0)
		return s->state == VM_STATE_STOPPING ? "stopping" : "unresponsive";
	return "down";
}

/* The host network check and its word. */
static const char *net_check(const struct vm_snap *s, enum check_status *ret)
{
	if (!s->net_expected) {
		*ret = CHECK_UNKNOWN;
		return "disabled";
	}
	if (!s->hs.net_known) {
		*ret = s->state == VM_STATE_RUNNING ? CHECK_PENDING : CHECK_UNKNOWN;
		return s->state == VM_STATE_RUNNING || s->state == VM_STATE_STARTING ? "pending"
										     : "down";
	}
	*ret = s->hs.net_ok ? CHECK_OK : CHECK_DOWN;
	return s->hs.net_ok ? "up" : "down";
}

/* The "saved:" line of a suspended VM (or of a failed restore that keeps its saved state),
 * appended to buf. */
static void saved_line(const struct vm_snap *s, const char *since_text, char *buf, size_t size)
{
	size_t l = strlen(buf);
	char a[32];

	if (s->state != VM_STATE_SUSPENDED && !s->saved_state_bytes)
		return;
	snprintf(buf + l, size - l, "saved: %s %s on disk since %s\n",
		 s->state == VM_STATE_SUSPENDED ? "suspended" : "kept",
		 mib(s->saved_state_bytes, a, sizeof(a)), since_text);
}

/* The "image:" line (pull progress while starting, else the digest and key), or "". */
static void image_line(const struct vm_snap *s, char *buf, size_t size)
{
	char a[32], b[32];

	if (s->hs.image_phase[0] && s->state == VM_STATE_STARTING)
		snprintf(buf, size, "image: %s %u/%u layers %s/%s\n", s->hs.image_phase,
			 s->hs.img_layers_done, s->hs.img_layers_total,
			 mib(s->hs.img_bytes_done, a, sizeof(a)),
			 mib(s->hs.img_bytes_total, b, sizeof(b)));
	else if (s->image_digest[0] && s->image_key[0])
		snprintf(buf, size, "image: ready %s signed by key %s\n", s->image_digest,
			 s->image_key);
	else if (s->image_digest[0])
		snprintf(buf, size, "image: ready %s\n", s->image_digest);
}

int health_render(const struct vm_snap *s, char **ret, size_t *ret_len)
{
	struct health_input in = {
		.state = s->state,
		.agent = CHECK_UNKNOWN,
		.app = CHECK_UNKNOWN,
		.agent_available = false,
		.net_expected = s->net_expected,
	};
	char t_vmm[32], t_net[32], image[384] = "", agent[300], app[300];
	char guest_net[96] = "";
	const char *vmm_word, *net_word;
	char *out = NULL;
	int n;

	since(&s->hs.vmm_since, t_vmm, sizeof(t_vmm));
	since(&s->hs.net_since, t_net, sizeof(t_net));

	vmm_word = vmm_check(s, &in.vmm);
	net_word = net_check(s, &in.net);
	if (s->state == VM_STATE_RUNNING || s->state == VM_STATE_STOPPING ||
	    s->state == VM_STATE_PAUSED || s->state == VM_STATE_SUSPENDING) {
		agent_checks(s, &in, agent, sizeof(agent), app, sizeof(app));
	} else {
		snprintf(agent, sizeof(agent), "down since %s (VM not running)", t_vmm);
		snprintf(app, sizeof(app), "down since %s (VM not running)", t_vmm);
	}
	image_line(s, image, sizeof(image));
	saved_line(s, t_vmm, image, sizeof(image));

	/* The host side says the links are up; the guest side is what the agent reported. */
	if (s->has_agent && s->agent.net_configured)
		snprintf(guest_net, sizeof(guest_net), ", guest address %s configured",
			 s->agent.net_addr);
	else if (s->has_agent && s->agent.ever_connected && s->net_expected)
		snprintf(guest_net, sizeof(guest_net), ", guest address not configured");
	n = asprintf(&out,
		     "%s\n"
		     "vmm: %s since %s%s%.0d\n"
		     "agent: %s\n"
		     "app: %s\n"
		     "net: %s since %s%s\n"
		     "%s",
		     health_verdict_to_string(health_verdict(&in)), vmm_word, t_vmm,
		     s->pid > 0 ? " pid " : "", s->pid > 0 ? (int)s->pid : 0, agent, app, net_word,
		     t_net, guest_net, image);
	if (n < 0)
		return -ENOMEM;
	*ret = out;
	*ret_len = (size_t)n;
	return 0;
}
