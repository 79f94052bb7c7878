/* SPDX-License-Identifier: MIT */
/*
 * The health file: a verdict word, then one "key: status ... since TIME" line per check
 * (SPEC section 2). The verdict is a pure function of the state and the checks' statuses so it
 * is unit-tested on its own; a slow boot (agent pending) is "starting", not "unhealthy".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *health_verdict_to_string(enum health_verdict v)
{
	static const char *const names[] = {
		[HEALTH_HEALTHY] = "healthy", [HEALTH_UNHEALTHY] = "unhealthy",
		[HEALTH_STARTING] = "starting", [HEALTH_STOPPED] = "stopped",
		[HEALTH_FAILED] = "failed",
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

int health_render(const struct vm_snap *s, char **ret, size_t *ret_len)
{
	struct health_input in = {
		.state = s->state,
		.agent = CHECK_UNKNOWN,
		.app = CHECK_UNKNOWN,
		.agent_available = false,
		.net_expected = s->net_expected,
	};
	char t_vmm[32], t_net[32], t_state[32], a[32], b[32], image[160] = "";
	const char *vmm_word, *net_word;
	char *out = NULL;
	int n;

	since(&s->hs.vmm_since, t_vmm, sizeof(t_vmm));
	since(&s->hs.net_since, t_net, sizeof(t_net));
	since(&s->state_since, t_state, sizeof(t_state));

	if (s->state == VM_STATE_RUNNING && s->pid > 0 && s->hs.vmm_run == VMM_RUN_RUNNING) {
		in.vmm = CHECK_OK;
		vmm_word = "running";
	} else if (s->state == VM_STATE_RUNNING && s->hs.vmm_run == VMM_RUN_PAUSED) {
		in.vmm = CHECK_DOWN;
		vmm_word = "paused";
	} else if (s->state == VM_STATE_STARTING) {
		in.vmm = CHECK_PENDING;
		vmm_word = "starting";
	} else if (s->pid > 0) {
		in.vmm = CHECK_DOWN;
		vmm_word = s->state == VM_STATE_STOPPING ? "stopping" : "unresponsive";
	} else {
		in.vmm = CHECK_DOWN;
		vmm_word = "down";
	}
	if (!s->net_expected) {
		in.net = CHECK_UNKNOWN;
		net_word = "disabled";
	} else if (!s->hs.net_known) {
		in.net = CHECK_PENDING;
		net_word = "pending";
	} else {
		in.net = s->hs.net_ok ? CHECK_OK : CHECK_DOWN;
		net_word = s->hs.net_ok ? "up" : "down";
	}
	if (s->hs.image_phase[0] && s->state == VM_STATE_STARTING)
		snprintf(image, sizeof(image), "image: %s %u/%u layers %s/%s\n", s->hs.image_phase,
			 s->hs.img_layers_done, s->hs.img_layers_total,
			 mib(s->hs.img_bytes_done, a, sizeof(a)),
			 mib(s->hs.img_bytes_total, b, sizeof(b)));
	else if (s->image_digest[0])
		snprintf(image, sizeof(image), "image: ready %s\n", s->image_digest);

	n = asprintf(&out,
		     "%s\n"
		     "vmm: %s since %s%s%.0d\n"
		     "agent: unknown since %s (no agent channel)\n"
		     "app: unknown since %s (no agent channel)\n"
		     "net: %s since %s\n"
		     "%s",
		     health_verdict_to_string(health_verdict(&in)), vmm_word, t_vmm,
		     s->pid > 0 ? " pid " : "", s->pid > 0 ? (int)s->pid : 0, t_state, t_state,
		     net_word, t_net, image);
	if (n < 0)
		return -ENOMEM;
	*ret = out;
	*ret_len = (size_t)n;
	return 0;
}
