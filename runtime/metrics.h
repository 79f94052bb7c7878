/* SPDX-License-Identifier: MIT */
/*
 * runtime/metrics.h: Prometheus text exposition (format 0.0.4) of the per-VM `metrics` file and
 * the node-wide `metrics` file at the mount root, and Firecracker's own metrics
 * (docs/firecracker.md K) parsed from the JSON lines it writes into the jail and accumulated (its
 * counters are deltas). Private to runtime/.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Firecracker counters we keep, cumulative since the VMM started (summed from delta lines). */
struct fc_metrics {
	uint64_t vcpu_exit_io_in, vcpu_exit_io_out, vcpu_exit_mmio_read, vcpu_exit_mmio_write;
	uint64_t vcpu_failures;
	uint64_t block_read_bytes, block_write_bytes, block_read_count, block_write_count;
	uint64_t net_rx_bytes, net_tx_bytes, net_rx_packets, net_tx_packets;
	uint64_t vmm_panic_count, seccomp_faults, missed_metrics;
};

#define FC_METRICS_LINE_MAX 65536
/* Pure, strict: one JSON line as Firecracker writes it. Fills *ret with the line's values
 * (deltas) and *ret_ts_ms with utc_timestamp_ms. -EINVAL on anything malformed (not an object,
 * no timestamp, a kept field that is not a non-negative integer), -E2BIG over the line limit. */
int fc_metrics_parse_line(const char *line, size_t len, struct fc_metrics *ret,
			  uint64_t *ret_ts_ms);
void fc_metrics_add(struct fc_metrics *acc, const struct fc_metrics *d);
/* Pure: account the complete lines of buf (a tail of the metrics file: its first line may be
 * cut, its last may be still being written) that are newer than *last_ts_ms: their deltas are
 * added to *acc, *last_ts_ms moves to the newest, malformed lines are skipped. Returns the
 * number of lines accounted. */
unsigned fc_metrics_account(const char *buf, size_t len, uint64_t *last_ts_ms,
			    struct fc_metrics *acc);

/* Per-VM counters kept by the runtime (under vm->lock). */
struct vm_metrics {
	uint64_t stops;		    /* transitions into stopped */
	uint64_t image_prepares;    /* image preparations (pull or cache hit) that succeeded */
	uint64_t image_pull_bytes;  /* bytes reported by the pulls */
	double image_seconds;	    /* wall time spent preparing images */
	struct fc_metrics fc;	    /* VMM counters since the VM was defined */
	uint64_t fc_lines;	    /* metrics lines accounted */
	uint64_t fc_last_ts_ms;	    /* newest line accounted (lines are read again after a cut) */
	uint64_t fc_last_flush_ms;  /* monotonic time of the last FlushMetrics */
	uint64_t saved_state_bytes; /* the saved state on disk (suspended), 0 none */
};

/* One disk of a VM: the writable layer or a volume, with the guest's last statfs. */
#define METRICS_DISKS_MAX 17
struct metrics_disk {
	char name[48]; /* "writable" or "volume/VOL" */
	bool known;    /* used and avail reported by the guest */
	uint64_t size, used, avail;
};

/* One VM as the renderer sees it (a copy, rendered without locks). */
struct metrics_vm {
	const char *name;
	int state;   /* enum vm_state */
	int verdict; /* enum health_verdict */
	uint64_t boots, failures;
	struct vm_metrics mx;
	struct metrics_disk disks[METRICS_DISKS_MAX];
	size_t n_disks;
};

/* Node-wide values. */
struct metrics_node {
	const char *node;
	bool reports_enabled;
	uint64_t reports_sent, reports_failed, reports_rejected, reports_coalesced;
	uint64_t reports_dropped, reports_skipped;
	unsigned report_queue;
};

/* Pure: Prometheus text for vms[0..n) (each family once, HELP and TYPE first); node may be
 * NULL (the per-VM file). */
int metrics_render(const struct metrics_vm *vms, size_t n, const struct metrics_node *node,
		   char **ret, size_t *ret_len);
/* Escape a label value (\\, \", \n) into buf; truncates safely. */
void metrics_escape_label(const char *s, char *buf, size_t size);

struct runtime;
struct vm;
/* The VM_ATTR_METRICS file and runtime_metrics(). */
int metrics_vm_show(struct vm *vm, char **ret, size_t *ret_len);
int metrics_node_show(struct runtime *rt, char **ret, size_t *ret_len);
/* Worker thread: ask Firecracker to flush (at most every FC_FLUSH_MS unless final) and account
 * the new lines of <jail>/root/metrics.json. final: the VMM is gone, read what it left. */
#define FC_FLUSH_MS 10000
void metrics_vm_collect(struct runtime *rt, struct vm *vm, bool final);
/* An image preparation finished (r >= 0: success) after seconds; bytes from its progress. */
void metrics_note_image(struct vm *vm, int r, double seconds);
