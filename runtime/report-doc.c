/* SPDX-License-Identifier: MIT */
/*
 * The report document of a VM (docs/report.schema.json) and the glue between the runtime and
 * the reporter: which changes enqueue a report, the periodic walk over the VM table, the final
 * "destroyed" report, and the reporter's counters in the node metrics.
 *
 * The checks are taken from the health file's own text, so a report always says exactly what
 * `health` says at that moment (docs/contract.md: each value starts with its status word; "since
 * TIME" gives when the check entered that status; the rest is the detail).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "metrics.h"
#include "report.h"

static void copy_trim(char *dst, size_t size, const char *s, size_t len)
{
	while (len && *s == ' ')
		s++, len--;
	while (len && s[len - 1] == ' ')
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, s, len);
	dst[len] = '\0';
}

static int parse_check(const char *line, size_t len, struct report_check *c)
{
	const char *colon = memchr(line, ':', len), *v, *end = line + len, *sp, *since;
	char rest[512];
	size_t rl = 0;

	if (!colon || colon == line || colon + 1 >= end || colon[1] != ' ')
		return -EINVAL;
	copy_trim(c->name, sizeof(c->name), line, (size_t)(colon - line));
	v = colon + 2;
	sp = memchr(v, ' ', (size_t)(end - v));
	copy_trim(c->status, sizeof(c->status), v, (size_t)((sp ? sp : end) - v));
	if (!c->status[0])
		return -EINVAL;
	c->since[0] = '\0';
	v = sp ? sp : end;
	/* detail = the rest without " since TIME" */
	since = memmem(v, (size_t)(end - v), " since ", 7);
	if (since) {
		const char *t = since + 7, *te = memchr(t, ' ', (size_t)(end - t));
		te = te ? te : end;
		copy_trim(c->since, sizeof(c->since), t, (size_t)(te - t));
		rl = (size_t)snprintf(rest, sizeof(rest), "%.*s%.*s", (int)(since - v), v,
				      (int)(end - te), te);
	} else {
		rl = (size_t)snprintf(rest, sizeof(rest), "%.*s", (int)(end - v), v);
	}
	copy_trim(c->detail, sizeof(c->detail), rest, MIN(rl, sizeof(rest) - 1));
	return 0;
}

int report_parse_health(const char *text, struct report_doc *d)
{
	const char *p = text, *nl;

	nl = strchr(p, '\n');
	if (!nl || nl == p || (size_t)(nl - p) >= sizeof(d->verdict))
		return -EINVAL;
	copy_trim(d->verdict, sizeof(d->verdict), p, (size_t)(nl - p));
	d->n_checks = 0;
	for (p = nl + 1; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			nl = p + strlen(p);
		if (nl > p && d->n_checks < REPORT_CHECKS_MAX &&
		    parse_check(p, (size_t)(nl - p), &d->checks[d->n_checks]) == 0)
			d->n_checks++;
		if (!*nl)
			break;
	}
	return 0;
}

static uint64_t fnv(uint64_t h, const char *s)
{
	for (; s && *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	h ^= 0xff; /* field separator */
	return h * 0x100000001b3ULL;
}

static json_t *str_or_null(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

int report_doc_encode(const struct report_doc *d, char **ret, uint64_t *ret_hash)
{
	json_t *root, *checks;
	uint64_t h = 0xcbf29ce484222325ULL;
	char num[32];
	char *out;

	checks = json_object();
	if (!checks)
		return -ENOMEM;
	h = fnv(fnv(fnv(h, d->name), d->state), d->verdict);
	for (unsigned i = 0; i < d->n_checks; i++) {
		const struct report_check *c = &d->checks[i];
		json_t *o = json_pack("{s:s,s:o,s:s}", "status", c->status, "since",
				      str_or_null(c->since), "detail", c->detail);
		if (!o || json_object_set_new(checks, c->name, o) < 0) {
			json_decref(checks);
			return -ENOMEM;
		}
		h = fnv(fnv(h, c->name), c->status);
		/* The agent's detail is its heartbeat age: it moves on every heartbeat. */
		if (strcmp(c->name, "agent") != 0)
			h = fnv(h, c->detail);
	}
	h = fnv(fnv(fnv(fnv(h, d->ip), d->image), d->image_digest), d->error);
	snprintf(num, sizeof(num), "%d", d->pid);
	h = fnv(h, num);
	root = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:o},s:o,s:{s:o,s:o},s:o,s:o,"
			 "s:{s:I,s:I,s:I}}",
			 "schema", "mvmfs.report/v1", "sequence", (json_int_t)d->seq, "time",
			 d->time, "node", d->node, "name", d->name, "state", d->state,
			 "state_since", d->state_since, "health", "verdict", d->verdict, "checks",
			 checks, "ip", str_or_null(d->ip), "image", "reference",
			 str_or_null(d->image), "digest", str_or_null(d->image_digest), "error",
			 str_or_null(d->error), "pid",
			 d->pid > 0 ? json_integer(d->pid) : json_null(), "counters", "boots",
			 (json_int_t)d->boots, "stops", (json_int_t)d->stops, "failures",
			 (json_int_t)d->failures);
	if (!root)
		return -ENOMEM;
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!out)
		return -ENOMEM;
	*ret = out;
	*ret_hash = h;
	return 0;
}

/* ---- runtime glue ---- */

static void rfc3339_ms(const struct timespec *t, char *buf, size_t size)
{
	struct tm tm;
	char s[32];

	gmtime_r(&t->tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%.20s.%03uZ", s, (unsigned)(t->tv_nsec / 1000000) % 1000u);
}

static int build_vm(void *ud, void *obj, bool final, uint64_t seq, char **ret_doc,
		    uint64_t *ret_hash)
{
	struct rt_report *g = ud;
	struct vm *vm = obj;
	struct report_doc *d = calloc(1, sizeof(*d));
	struct vm_snap *s = malloc(sizeof(*s));
	_cleanup_free_ char *health = NULL, *image = NULL;
	char ip[INET6_ADDRSTRLEN] = "";
	const char *error;
	struct timespec now;
	size_t hl;
	bool live;
	int r = -ENOMEM;

	if (!d || !s)
		goto out;
	pthread_mutex_lock(&vm->lock);
	live = vm->live;
	image = vm->image ? strdup(vm->image) : NULL;
	d->boots = vm->boots;
	d->failures = vm->failures;
	d->stops = vm->mx.stops;
	pthread_mutex_unlock(&vm->lock);
	/* Not yet created, or being destroyed (its final report follows): nothing to say. */
	r = -ENOENT;
	if (!live && !final)
		goto out;
	vm_snapshot(vm, s);
	r = health_render(s, &health, &hl);
	if (r < 0 || (r = report_parse_health(health, d)) < 0)
		goto out;
	if (s->has_ip)
		inet_ntop(AF_INET6, &s->ip, ip, sizeof(ip));
	/* error is "RFC3339 message": reported as it is shown. */
	error = s->error;
	clock_gettime(CLOCK_REALTIME, &now);
	d->name = vm->name;
	d->node = g->node;
	d->state = final ? "destroyed" : vm_state_to_string(s->state);
	rfc3339_ms(&s->state_since, d->state_since, sizeof(d->state_since));
	d->ip = ip;
	d->image = image ? image : "";
	d->image_digest = s->image_digest;
	d->error = error;
	d->pid = final ? 0 : (int)s->pid;
	d->seq = seq;
	rfc3339_ms(&now, d->time, sizeof(d->time));
	r = report_doc_encode(d, ret_doc, ret_hash);
out:
	free(d);
	free(s);
	return r;
}

static void *ref_vm(void *obj)
{
	return vm_ref(obj);
}

static void unref_vm(void *obj)
{
	vm_unref(obj);
}

static void each_vm(void *ud, struct reporter *rep)
{
	struct rt_report *g = ud;
	struct runtime *rt = g->rt;

	pthread_mutex_lock(&rt->lock);
	for (struct vm *v = rt->vms; v; v = v->next) {
		bool live;
		pthread_mutex_lock(&v->lock);
		live = v->live;
		pthread_mutex_unlock(&v->lock);
		if (live)
			report_enqueue(rep, v, REPORT_FORCE);
	}
	pthread_mutex_unlock(&rt->lock);
}

static const struct report_ops vm_report_ops = {
	.build = build_vm,
	.ref = ref_vm,
	.unref = unref_vm,
	.each = each_vm,
};

void rt_report_config(const struct runtime_config *cfg, struct report_config *ret)
{
	*ret = (struct report_config){
		.url = cfg->report_url,
		.token_file = cfg->report_token_file,
		.interval_ms = cfg->report_interval_ms,
		.parallel = cfg->report_parallel,
		.max_objects = cfg->max_vms + 1024,
	};
}

int rt_report_start(struct runtime *rt, struct err *err)
{
	struct report_config rc;
	struct rt_report *g;
	int r;

	if (!rt->cfg.report_url || !rt->cfg.report_url[0])
		return 0;
	rt_report_config(&rt->cfg, &rc);
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->rt = rt;
	if (gethostname(g->node, sizeof(g->node) - 1) < 0)
		snprintf(g->node, sizeof(g->node), "unknown");
	r = report_new(&rc, &vm_report_ops, g, &g->rep, err);
	if (r < 0) {
		free(g);
		return err_prefix(err, "--report-url: ");
	}
	r = report_start(g->rep);
	if (r < 0) {
		report_free(g->rep);
		free(g);
		return err_set(err, r, "starting the reporter: %s", strerror(-r));
	}
	rt->report = g;
	return 0;
}

void rt_report_stop(struct runtime *rt)
{
	if (!rt->report)
		return;
	/* Best effort: the last changes (e.g. VMs stopped at exit) go out if the API answers. */
	(void)report_drain(rt->report->rep, 1000);
	report_stop(rt->report->rep);
}

void rt_report_free(struct runtime *rt)
{
	if (!rt->report)
		return;
	report_free(rt->report->rep);
	free(rt->report);
	rt->report = NULL;
}

void report_fill_metrics(struct runtime *rt, struct metrics_node *node)
{
	struct report_stats st;

	if (!rt->report)
		return;
	report_get_stats(rt->report->rep, &st);
	node->reports_enabled = true;
	node->reports_sent = st.sent;
	node->reports_failed = st.failed;
	node->reports_rejected = st.rejected;
	node->reports_coalesced = st.coalesced;
	node->reports_dropped = st.dropped;
	node->reports_skipped = st.skipped;
	node->report_queue = st.queued;
}
