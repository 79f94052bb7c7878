/* SPDX-License-Identifier: MIT */
/*
 * Firecracker API bodies, encoded and decoded with jansson. Pure (no I/O), so each body is
 * unit-tested against its expected JSON and the decoders are fuzzed. Field names follow
 * docs/firecracker.md A.4; request structs there reject unknown fields, so we send only known ones.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Compact, key order as built (Firecracker does not care; tests compare exact text). */
static int dump(json_t *o, char **ret)
{
	char *s;

	if (!o)
		return -ENOMEM;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int fc_json_logger(const char *log_path, char **ret)
{
	return dump(json_pack("{s:s, s:s, s:b, s:b}", "log_path", log_path, "level", "Info",
			      "show_level", 1, "show_log_origin", 0),
		    ret);
}

int fc_json_metrics(const char *metrics_path, char **ret)
{
	return dump(json_pack("{s:s}", "metrics_path", metrics_path), ret);
}

int fc_json_boot_source(const char *kernel, const char *initrd, const char *boot_args, char **ret)
{
	json_t *o = json_pack("{s:s}", "kernel_image_path", kernel);

	if (!o)
		return -ENOMEM;
	if ((initrd && json_object_set_new(o, "initrd_path", json_string(initrd)) < 0) ||
	    (boot_args && json_object_set_new(o, "boot_args", json_string(boot_args)) < 0)) {
		json_decref(o);
		return -EINVAL;
	}
	return dump(o, ret);
}

int fc_json_drive(const char *id, const char *path, bool root, bool read_only, char **ret)
{
	return dump(json_pack("{s:s, s:s, s:b, s:b}", "drive_id", id, "path_on_host", path,
			      "is_root_device", root, "is_read_only", read_only),
		    ret);
}

int fc_json_machine_config(unsigned vcpus, unsigned mem_mib, char **ret)
{
	if (vcpus < 1 || vcpus > 32 || mem_mib < 1)
		return -EINVAL;
	return dump(json_pack("{s:i, s:i, s:b}", "vcpu_count", (int)vcpus, "mem_size_mib",
			      (json_int_t)mem_mib, "smt", 0),
		    ret);
}

int fc_json_net(const char *iface, const char *tap, const char *mac, char **ret)
{
	json_t *o = json_pack("{s:s, s:s}", "iface_id", iface, "host_dev_name", tap);

	if (!o)
		return -ENOMEM;
	if (mac && json_object_set_new(o, "guest_mac", json_string(mac)) < 0) {
		json_decref(o);
		return -EINVAL;
	}
	return dump(o, ret);
}

int fc_json_vsock(unsigned cid, const char *uds_path, char **ret)
{
	return dump(json_pack("{s:I, s:s}", "guest_cid", (json_int_t)cid, "uds_path", uds_path),
		    ret);
}

int fc_json_action(const char *action, char **ret)
{
	return dump(json_pack("{s:s}", "action_type", action), ret);
}

int fc_json_snapshot_load(const char *state, const char *mem, const char *iface, const char *tap,
			  char **ret)
{
	json_t *o = json_pack("{s:s, s:{s:s, s:s}, s:b}", "snapshot_path", state, "mem_backend",
			      "backend_type", "File", "backend_path", mem, "resume_vm", 0);

	if (!o)
		return -ENOMEM;
	if (iface && tap &&
	    json_object_set_new(
		    o, "network_overrides",
		    json_pack("[{s:s, s:s}]", "iface_id", iface, "host_dev_name", tap)) < 0) {
		json_decref(o);
		return -EINVAL;
	}
	return dump(o, ret);
}

int fc_json_instance_state(const char *body, size_t len, enum vmm_run_state *ret)
{
	json_t *o, *st;
	const char *s;
	int r = 0;

	if (!body || len > FC_BODY_MAX)
		return -EINVAL;
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!o)
		return -EINVAL;
	st = json_is_object(o) ? json_object_get(o, "state") : NULL;
	s = json_string_value(st);
	if (!s)
		r = -EINVAL;
	else if (strcmp(s, "Running") == 0)
		*ret = VMM_RUN_RUNNING;
	else if (strcmp(s, "Not started") == 0)
		*ret = VMM_RUN_NOT_STARTED;
	else if (strcmp(s, "Paused") == 0)
		*ret = VMM_RUN_PAUSED;
	else
		r = -EINVAL;
	json_decref(o);
	return r;
}

/* Copy printable text, replacing control characters (the error file is one line). */
static void copy_line(char *buf, size_t size, const char *s, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && s[i] && j + 1 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	buf[j] = '\0';
}

void fc_json_fault(const char *body, size_t len, char *buf, size_t size)
{
	json_t *o = NULL, *m = NULL;
	const char *s;

	if (!size)
		return;
	buf[0] = '\0';
	if (!body || !len)
		return;
	if (len <= FC_BODY_MAX) {
		/* micro-http puts a raw newline inside its "error" string: not valid JSON. */
		char *clean = malloc(len);
		if (clean) {
			for (size_t i = 0; i < len; i++)
				clean[i] = (unsigned char)body[i] < 0x20 ? ' ' : body[i];
			o = json_loadb(clean, len, JSON_REJECT_DUPLICATES, NULL);
			free(clean);
		}
	}
	if (json_is_object(o)) {
		m = json_object_get(o, "fault_message");
		if (!json_is_string(m))
			m = json_object_get(o, "error");
	}
	s = json_string_value(m);
	if (s)
		copy_line(buf, size, s, json_string_length(m));
	else
		copy_line(buf, size, body, len);
	json_decref(o);
}
