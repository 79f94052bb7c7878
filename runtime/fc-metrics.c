/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's metrics lines (docs/firecracker.md K): one JSON object per line, counters are
 * deltas since the previous line. Pure and strict: the file lives in the jail, writable by the
 * VMM's uid, so it is untrusted input (fuzzed in tests/runtime/fuzz-fc-metrics.c).
 */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <string.h>

#include "macro.h"
#include "metrics.h"

struct field {
	const char *group, *key;
	size_t off;
};

#define F(g, k, m)                                   \
	{                                            \
		g, k, offsetof(struct fc_metrics, m) \
	}
static const struct field fields[] = {
	F("vcpu", "exit_io_in", vcpu_exit_io_in),
	F("vcpu", "exit_io_out", vcpu_exit_io_out),
	F("vcpu", "exit_mmio_read", vcpu_exit_mmio_read),
	F("vcpu", "exit_mmio_write", vcpu_exit_mmio_write),
	F("vcpu", "failures", vcpu_failures),
	F("block", "read_bytes", block_read_bytes),
	F("block", "write_bytes", block_write_bytes),
	F("block", "read_count", block_read_count),
	F("block", "write_count", block_write_count),
	F("net", "rx_bytes_count", net_rx_bytes),
	F("net", "tx_bytes_count", net_tx_bytes),
	F("net", "rx_packets_count", net_rx_packets),
	F("net", "tx_packets_count", net_tx_packets),
	F("vmm", "panic_count", vmm_panic_count),
	F("seccomp", "num_faults", seccomp_faults),
	F("logger", "missed_metrics_count", missed_metrics),
};
#undef F

int fc_metrics_parse_line(const char *line, size_t len, struct fc_metrics *ret, uint64_t *ret_ts_ms)
{
	struct fc_metrics m = {};
	json_error_t jerr;
	json_t *root, *ts;
	int r = 0;

	if (len > FC_METRICS_LINE_MAX)
		return -E2BIG;
	/* One line: a newline may only end it. */
	if (len && line[len - 1] == '\n')
		len--;
	if (memchr(line, '\n', len) || memchr(line, '\0', len))
		return -EINVAL;
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return -EINVAL;
	if (!json_is_object(root)) {
		r = -EINVAL;
		goto out;
	}
	ts = json_object_get(root, "utc_timestamp_ms");
	if (!json_is_integer(ts) || json_integer_value(ts) < 0) {
		r = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		json_t *g = json_object_get(root, fields[i].group), *v;

		if (!g)
			continue; /* a group this Firecracker version does not have */
		if (!json_is_object(g)) {
			r = -EINVAL;
			goto out;
		}
		v = json_object_get(g, fields[i].key);
		if (!v)
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			r = -EINVAL;
			goto out;
		}
		*(uint64_t *)((char *)&m + fields[i].off) = (uint64_t)json_integer_value(v);
	}
	*ret = m;
	*ret_ts_ms = (uint64_t)json_integer_value(ts);
out:
	json_decref(root);
	return r;
}

void fc_metrics_add(struct fc_metrics *acc, const struct fc_metrics *d)
{
	uint64_t *a = (uint64_t *)acc;
	const uint64_t *b = (const uint64_t *)d;

	/* struct fc_metrics is only uint64_t counters; wrap-around is what a counter does. */
	for (size_t i = 0; i < sizeof(*acc) / sizeof(uint64_t); i++)
		a[i] += b[i];
}

unsigned fc_metrics_account(const char *buf, size_t len, uint64_t *last_ts_ms,
			    struct fc_metrics *acc)
{
	uint64_t since = *last_ts_ms, newest = *last_ts_ms;
	const char *p = buf, *end = buf + len, *nl;
	unsigned n = 0;

	for (; p < end; p = nl + 1) {
		struct fc_metrics d;
		uint64_t ts;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break; /* a line being written: next time */
		/* Firecracker writes at its own offset (no O_APPEND): after the probe cut the
		 * file back, its next line follows a hole that reads as NULs. */
		while (p < nl && *p == '\0')
			p++;
		if (fc_metrics_parse_line(p, (size_t)(nl - p), &d, &ts) < 0 || ts <= since)
			continue;
		fc_metrics_add(acc, &d);
		if (ts > newest)
			newest = ts;
		n++;
	}
	*last_ts_ms = newest;
	return n;
}
