/* SPDX-License-Identifier: MIT */
/*
 * Prometheus text exposition 0.0.4 for the per-VM `metrics` file and the node-wide one (what
 * node_exporter's textfile collector reads as is), and the collection of Firecracker's metrics:
 * FlushMetrics every FC_FLUSH_MS from the health probe, then the new lines of the metrics file
 * in the jail are parsed and their deltas added to the VM's totals.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "jail-path.h"
#include "report.h"
#include "volume.h"

void metrics_escape_label(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	if (!size)
		return;
	for (; s && *s && o + 3 < size; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
}

enum fam_type { GAUGE, COUNTER };

static void family(FILE *f, const char *name, enum fam_type t, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
		t == GAUGE ? "gauge" : "counter");
}

/* One uint64 series per VM: value at byte offset off of struct metrics_vm. */
static void vm_family_u64(FILE *f, const struct metrics_vm *vms, char (*lbl)[160], size_t n,
			  const char *name, enum fam_type t, const char *help, size_t off)
{
	if (!n)
		return;
	family(f, name, t, help);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s{vm=\"%s\"} %llu\n", name, lbl[i],
			(unsigned long long)*(const uint64_t *)((const char *)&vms[i] + off));
}

#define VMX(m) offsetof(struct metrics_vm, mx.m)
#define FCX(m) offsetof(struct metrics_vm, mx.fc.m)

static const struct {
	const char *name, *help;
	size_t off;
} vm_counters[] = {
	{"mvmfs_vm_boots_total", "Times the VM reached running.",
	 offsetof(struct metrics_vm, boots)},
	{"mvmfs_vm_stops_total", "Times the VM reached stopped.", VMX(stops)},
	{"mvmfs_vm_failures_total", "Times the VM reached failed.",
	 offsetof(struct metrics_vm, failures)},
	{"mvmfs_vm_image_prepares_total", "Successful image preparations (pull or cache hit).",
	 VMX(image_prepares)},
	{"mvmfs_vm_image_pull_bytes_total", "Bytes reported by the image pulls.",
	 VMX(image_pull_bytes)},
	{"mvmfs_vm_vcpu_failures_total", "KVM exit errors (Firecracker vcpu.failures).",
	 FCX(vcpu_failures)},
	{"mvmfs_vm_block_read_bytes_total", "Bytes read by the guest's block devices.",
	 FCX(block_read_bytes)},
	{"mvmfs_vm_block_write_bytes_total", "Bytes written by the guest's block devices.",
	 FCX(block_write_bytes)},
	{"mvmfs_vm_block_reads_total", "Read requests of the guest's block devices.",
	 FCX(block_read_count)},
	{"mvmfs_vm_block_writes_total", "Write requests of the guest's block devices.",
	 FCX(block_write_count)},
	{"mvmfs_vm_net_rx_bytes_total", "Bytes received by the guest's NICs.", FCX(net_rx_bytes)},
	{"mvmfs_vm_net_tx_bytes_total", "Bytes sent by the guest's NICs.", FCX(net_tx_bytes)},
	{"mvmfs_vm_net_rx_packets_total", "Packets received by the guest's NICs.",
	 FCX(net_rx_packets)},
	{"mvmfs_vm_net_tx_packets_total", "Packets sent by the guest's NICs.", FCX(net_tx_packets)},
	{"mvmfs_vm_vmm_panics_total", "Firecracker vmm.panic_count.", FCX(vmm_panic_count)},
	{"mvmfs_vm_seccomp_faults_total", "Firecracker seccomp.num_faults.", FCX(seccomp_faults)},
	{"mvmfs_vm_vmm_missed_metrics_total", "Firecracker logger.missed_metrics_count.",
	 FCX(missed_metrics)},
	{"mvmfs_vm_vmm_metrics_lines_total", "Firecracker metrics lines accounted.", VMX(fc_lines)},
};

static const char *const exit_kinds[] = {"io_in", "io_out", "mmio_read", "mmio_write"};

static void render_vms(FILE *f, const struct metrics_vm *vms, char (*lbl)[160], size_t n)
{
	if (!n)
		return;
	family(f, "mvmfs_vm_state", GAUGE, "1 for the VM's current state, 0 for the others.");
	for (size_t i = 0; i < n; i++)
		for (int s = 0; s < _VM_STATE_MAX; s++)
			fprintf(f, "mvmfs_vm_state{vm=\"%s\",state=\"%s\"} %d\n", lbl[i],
				vm_state_to_string(s), vms[i].state == s);
	family(f, "mvmfs_vm_health", GAUGE,
	       "1 for the VM's current health verdict, 0 for the others.");
	for (size_t i = 0; i < n; i++)
		for (size_t v = 0; v < _HEALTH_VERDICT_MAX; v++)
			fprintf(f, "mvmfs_vm_health{vm=\"%s\",verdict=\"%s\"} %d\n", lbl[i],
				health_verdict_to_string((enum health_verdict)v),
				vms[i].verdict == (int)v);
	family(f, "mvmfs_vm_up", GAUGE, "1 when the VM is running.");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "mvmfs_vm_up{vm=\"%s\"} %d\n", lbl[i], vms[i].state == VM_STATE_RUNNING);
	for (size_t c = 0; c < ELEMENTSOF(vm_counters); c++)
		vm_family_u64(f, vms, lbl, n, vm_counters[c].name, COUNTER, vm_counters[c].help,
			      vm_counters[c].off);
	family(f, "mvmfs_vm_saved_state_bytes", GAUGE,
	       "Bytes the VM's saved state (suspend) takes on disk; 0 when none.");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "mvmfs_vm_saved_state_bytes{vm=\"%s\"} %llu\n", lbl[i],
			(unsigned long long)vms[i].mx.saved_state_bytes);
	family(f, "mvmfs_vm_image_prepare_seconds_total", COUNTER,
	       "Wall time spent preparing the VM's images.");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "mvmfs_vm_image_prepare_seconds_total{vm=\"%s\"} %.6f\n", lbl[i],
			vms[i].mx.image_seconds);
	family(f, "mvmfs_vm_disk_size_bytes", GAUGE,
	       "Size of the VM's writable layer and volumes (the guest's statfs, else "
	       "configured).");
	for (size_t i = 0; i < n; i++)
		for (size_t d = 0; d < vms[i].n_disks; d++)
			fprintf(f, "mvmfs_vm_disk_size_bytes{vm=\"%s\",disk=\"%s\"} %llu\n", lbl[i],
				vms[i].disks[d].name, (unsigned long long)vms[i].disks[d].size);
	family(f, "mvmfs_vm_disk_used_bytes", GAUGE,
	       "Bytes used on the VM's writable layer and volumes, as the guest last reported.");
	for (size_t i = 0; i < n; i++)
		for (size_t d = 0; d < vms[i].n_disks; d++)
			if (vms[i].disks[d].known)
				fprintf(f, "mvmfs_vm_disk_used_bytes{vm=\"%s\",disk=\"%s\"} %llu\n",
					lbl[i], vms[i].disks[d].name,
					(unsigned long long)vms[i].disks[d].used);
	family(f, "mvmfs_vm_disk_avail_bytes", GAUGE,
	       "Bytes available to the app on the VM's writable layer and volumes, as the guest "
	       "last reported.");
	for (size_t i = 0; i < n; i++)
		for (size_t d = 0; d < vms[i].n_disks; d++)
			if (vms[i].disks[d].known)
				fprintf(f,
					"mvmfs_vm_disk_avail_bytes{vm=\"%s\",disk=\"%s\"} %llu\n",
					lbl[i], vms[i].disks[d].name,
					(unsigned long long)vms[i].disks[d].avail);
	family(f, "mvmfs_vm_vcpu_exits_total", COUNTER,
	       "vCPU exits by kind (Firecracker vcpu.exit_*).");
	for (size_t i = 0; i < n; i++) {
		const struct fc_metrics *m = &vms[i].mx.fc;
		const uint64_t v[] = {m->vcpu_exit_io_in, m->vcpu_exit_io_out,
				      m->vcpu_exit_mmio_read, m->vcpu_exit_mmio_write};
		for (size_t k = 0; k < ELEMENTSOF(exit_kinds); k++)
			fprintf(f, "mvmfs_vm_vcpu_exits_total{vm=\"%s\",kind=\"%s\"} %llu\n",
				lbl[i], exit_kinds[k], (unsigned long long)v[k]);
	}
}

static void render_node(FILE *f, const struct metrics_vm *vms, size_t n,
			const struct metrics_node *node)
{
	unsigned states[_VM_STATE_MAX] = {}, verdicts[_HEALTH_VERDICT_MAX] = {};
	char host[160];

	for (size_t i = 0; i < n; i++) {
		if ((unsigned)vms[i].state < _VM_STATE_MAX)
			states[vms[i].state]++;
		if ((unsigned)vms[i].verdict < _HEALTH_VERDICT_MAX)
			verdicts[vms[i].verdict]++;
	}
	metrics_escape_label(node->node, host, sizeof(host));
	family(f, "mvmfs_node_info", GAUGE, "Constant 1, labelled with the node name.");
	fprintf(f, "mvmfs_node_info{node=\"%s\"} 1\n", host);
	family(f, "mvmfs_vms", GAUGE, "Defined VMs by state.");
	for (int s = 0; s < _VM_STATE_MAX; s++)
		fprintf(f, "mvmfs_vms{state=\"%s\"} %u\n", vm_state_to_string(s), states[s]);
	family(f, "mvmfs_vms_health", GAUGE, "Defined VMs by health verdict.");
	for (size_t v = 0; v < _HEALTH_VERDICT_MAX; v++)
		fprintf(f, "mvmfs_vms_health{verdict=\"%s\"} %u\n",
			health_verdict_to_string((enum health_verdict)v), verdicts[v]);
	if (!node->reports_enabled)
		return;
	family(f, "mvmfs_reports_sent_total", COUNTER,
	       "Health reports the management API accepted (2xx).");
	fprintf(f, "mvmfs_reports_sent_total %llu\n", (unsigned long long)node->reports_sent);
	family(f, "mvmfs_reports_failed_total", COUNTER,
	       "Report attempts that failed and are retried (transport error, timeout, 408, 429, "
	       "5xx).");
	fprintf(f, "mvmfs_reports_failed_total %llu\n", (unsigned long long)node->reports_failed);
	family(f, "mvmfs_reports_rejected_total", COUNTER,
	       "Reports the management API refused with another 4xx (not retried).");
	fprintf(f, "mvmfs_reports_rejected_total %llu\n",
		(unsigned long long)node->reports_rejected);
	family(f, "mvmfs_reports_coalesced_total", COUNTER,
	       "Report triggers folded into a report already queued for the same VM.");
	fprintf(f, "mvmfs_reports_coalesced_total %llu\n",
		(unsigned long long)node->reports_coalesced);
	family(f, "mvmfs_reports_dropped_total", COUNTER, "Reports dropped: the queue was full.");
	fprintf(f, "mvmfs_reports_dropped_total %llu\n", (unsigned long long)node->reports_dropped);
	family(f, "mvmfs_reports_unchanged_total", COUNTER,
	       "Change reports not sent because nothing reportable changed.");
	fprintf(f, "mvmfs_reports_unchanged_total %llu\n",
		(unsigned long long)node->reports_skipped);
	family(f, "mvmfs_report_queue_length", GAUGE, "VMs with a report waiting to be sent.");
	fprintf(f, "mvmfs_report_queue_length %u\n", node->report_queue);
}

int metrics_render(const struct metrics_vm *vms, size_t n, const struct metrics_node *node,
		   char **ret, size_t *ret_len)
{
	char(*lbl)[160] = calloc(n ? n : 1, sizeof(*lbl));
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (!lbl)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		metrics_escape_label(vms[i].name, lbl[i], sizeof(lbl[i]));
	f = open_memstream(&out, &len);
	if (!f) {
		free(lbl);
		return -ENOMEM;
	}
	if (node)
		render_node(f, vms, n, node);
	render_vms(f, vms, lbl, n);
	free(lbl);
	if (fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	*ret = out;
	*ret_len = len;
	return 0;
}

/* ---- runtime glue ---- */

static int verdict_of(const struct vm_snap *s)
{
	_cleanup_free_ char *h = NULL;
	size_t len;

	if (health_render(s, &h, &len) < 0)
		return HEALTH_UNHEALTHY;
	for (size_t v = 0; v < _HEALTH_VERDICT_MAX; v++) {
		size_t k = strlen(health_verdict_to_string((enum health_verdict)v));
		if (strncmp(h, health_verdict_to_string((enum health_verdict)v), k) == 0 &&
		    h[k] == '\n')
			return (int)v;
	}
	return HEALTH_UNHEALTHY;
}

static void sample(struct vm *vm, struct metrics_vm *ret)
{
	struct vm_snap *s = malloc(sizeof(*s));

	pthread_mutex_lock(&vm->lock);
	ret->name = vm->name;
	ret->boots = vm->boots;
	ret->failures = vm->failures;
	ret->mx = vm->mx;
	pthread_mutex_unlock(&vm->lock);
	if (!s) {
		ret->state = vm_get_state(vm);
		ret->verdict = HEALTH_UNHEALTHY;
		return;
	}
	vm_snapshot(vm, s);
	ret->n_disks = vm_disks_sample(vm, ret->disks, METRICS_DISKS_MAX);
	ret->state = s->state;
	ret->verdict = verdict_of(s);
	free(s);
}

int metrics_vm_show(struct vm *vm, char **ret, size_t *ret_len)
{
	struct metrics_vm m = {};

	sample(vm, &m);
	return metrics_render(&m, 1, NULL, ret, ret_len);
}

int metrics_node_show(struct runtime *rt, char **ret, size_t *ret_len)
{
	struct metrics_node node = {};
	struct metrics_vm *ms = NULL;
	struct vm **vms = NULL;
	char host[256] = "";
	size_t n = 0, cap;
	int r;

	pthread_mutex_lock(&rt->lock);
	cap = rt->n_vms;
	vms = calloc(cap ? cap : 1, sizeof(*vms));
	for (struct vm *v = rt->vms; vms && v && n < cap; v = v->next) {
		bool live;
		pthread_mutex_lock(&v->lock);
		live = v->live;
		pthread_mutex_unlock(&v->lock);
		if (live)
			vms[n++] = vm_ref(v);
	}
	pthread_mutex_unlock(&rt->lock);
	if (!vms)
		return -ENOMEM;
	ms = calloc(n ? n : 1, sizeof(*ms));
	if (!ms) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		sample(vms[i], &ms[i]);
	(void)gethostname(host, sizeof(host) - 1);
	node.node = host;
	report_fill_metrics(rt, &node);
	r = metrics_render(ms, n, &node, ret, ret_len);
out:
	for (size_t i = 0; i < n; i++)
		vm_unref(vms[i]);
	free(vms);
	free(ms);
	return r;
}

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* The last METRICS_READ_MAX bytes of the metrics file (it is cut back by the probe, and only
 * lines newer than the last accounted one count, so a tail is enough). */
#define METRICS_READ_MAX (256u << 10)
static int read_tail(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = jail_openat(AT_FDCWD, path, O_RDONLY | O_NONBLOCK, 0);
	struct stat st;
	off_t start;
	ssize_t n;
	char *buf;

	if (fd < 0)
		return fd;
	/* The jail is the VMM's: only a regular file is read (no FIFO, device or link). */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return -EINVAL;
	start = st.st_size > (off_t)METRICS_READ_MAX ? st.st_size - (off_t)METRICS_READ_MAX : 0;
	buf = malloc(METRICS_READ_MAX + 1);
	if (!buf)
		return -ENOMEM;
	n = pread(fd, buf, METRICS_READ_MAX, start);
	if (n < 0) {
		free(buf);
		return -errno;
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

static void flush_vmm(struct vm *vm)
{
	struct fc_client *c = NULL;
	_cleanup_free_ char *body = NULL;
	struct err err = {};

	if (!vm->h.api_socket[0] || fc_client_new(vm->h.api_socket, &c) < 0)
		return;
	if (fc_json_action("FlushMetrics", &body) >= 0 &&
	    fc_request(c, "PUT", "/actions", body, 1000, NULL, NULL, &err) < 0)
		log_debug("%s: FlushMetrics: %s", vm->name, err.msg);
	fc_client_free(c);
}

void metrics_vm_collect(struct runtime *rt, struct vm *vm, bool final)
{
	char path[VMM_PATH_MAX + 64];
	_cleanup_free_ char *buf = NULL;
	struct fc_metrics sum = {};
	uint64_t now = mono_ms(), newest;
	unsigned lines;
	size_t len = 0;

	if (!vm->h.jail_dir[0] || strcmp(rt->ops->name, "firecracker") != 0)
		return;
	pthread_mutex_lock(&vm->lock);
	if (!final && vm->mx.fc_last_flush_ms && now - vm->mx.fc_last_flush_ms < FC_FLUSH_MS) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	vm->mx.fc_last_flush_ms = now;
	newest = vm->mx.fc_last_ts_ms;
	pthread_mutex_unlock(&vm->lock);
	if (!final)
		flush_vmm(vm);
	snprintf(path, sizeof(path), "%s/root/metrics.json", vm->h.jail_dir);
	if (read_tail(path, &buf, &len) < 0)
		return;
	lines = fc_metrics_account(buf, len, &newest, &sum);
	if (!lines)
		return;
	pthread_mutex_lock(&vm->lock);
	/* Only this job accounts this VM's lines: last_ts did not move meanwhile. */
	fc_metrics_add(&vm->mx.fc, &sum);
	vm->mx.fc_lines += lines;
	vm->mx.fc_last_ts_ms = newest;
	vm_touch_locked(vm, VM_ATTR_METRICS);
	pthread_mutex_unlock(&vm->lock);
}

void metrics_note_image(struct vm *vm, int r, double seconds)
{
	pthread_mutex_lock(&vm->lock);
	if (r >= 0) {
		vm->mx.image_prepares++;
		vm->mx.image_pull_bytes += vm->hs.img_bytes_done;
	}
	vm->mx.image_seconds += seconds;
	pthread_mutex_unlock(&vm->lock);
}
