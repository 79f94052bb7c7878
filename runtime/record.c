/* SPDX-License-Identifier: MIT */
/*
 * VM records: <state>/vms/<name>/record.json, written atomically (temp + fsync + rename), read
 * back at start for re-adoption. Decoding is strict and bounded (fuzzed): every field has a
 * type and a length limit, unknown keys are ignored for forward compatibility.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"

#define RECORD_MAX (64 * 1024)
#define RECORD_VERSION 1

int record_encode(const struct vm_record *r, char **ret)
{
	char ip[INET6_ADDRSTRLEN] = "";
	json_t *o, *cg;
	char *s;

	if (r->has_ip)
		inet_ntop(AF_INET6, &r->ip, ip, sizeof(ip));
	cg = json_array();
	for (size_t i = 0; cg && i < ELEMENTSOF(r->h.cgroup); i++)
		if (r->h.cgroup[i][0])
			json_array_append_new(cg, json_string(r->h.cgroup[i]));
	o = json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I, s:s, "
		      "s:s, s:s, s:o, s:i}}",
		      "version", RECORD_VERSION, "name", r->name, "index", (json_int_t)r->index,
		      "state", vm_state_to_string(r->state), "vmm", r->vmm, "image", r->image,
		      "image_digest", r->image_digest, "image_key", r->image_key, "ip", ip, "error",
		      r->error, "rootfs", r->rootfs, "handle", "pid", (json_int_t)r->h.pid,
		      "start_time", (json_int_t)r->h.start_time, "api_socket", r->h.api_socket,
		      "agent_socket", r->h.agent_socket, "jail_dir", r->h.jail_dir, "cgroups", cg,
		      "cgroup_version", r->h.cgroup_version);
	if (!o)
		return -ENOMEM;
	if (r->has_boot_id) {
		char hex[2 * AGENT_BOOT_ID_LEN + 1];

		for (size_t i = 0; i < AGENT_BOOT_ID_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02x", r->boot_id[i]);
		if (json_object_set_new(o, "boot_id", json_string(hex)) < 0) {
			json_decref(o);
			return -ENOMEM;
		}
	}
	if (r->launching && json_object_set_new(o, "launch",
						json_pack("{s:b, s:I}", "in_progress", 1, "uid",
							  (json_int_t)r->launch_uid)) < 0) {
		json_decref(o);
		return -ENOMEM;
	}
	s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

static int get_str(json_t *o, const char *key, char *buf, size_t size, bool required,
		   struct err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		buf[0] = '\0';
		return required ? err_set(err, -EINVAL, "record: missing '%s'", key) : 0;
	}
	if (!json_is_string(v))
		return err_set(err, -EINVAL, "record: '%s' is not a string", key);
	if (json_string_length(v) >= size || strlen(json_string_value(v)) != json_string_length(v))
		return err_set(err, -EINVAL, "record: '%s' too long or has NUL", key);
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int get_int(json_t *o, const char *key, long long min, long long max, long long *ret,
		   struct err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		*ret = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return err_set(err, -EINVAL, "record: '%s' is not an integer in range", key);
	*ret = json_integer_value(v);
	return 0;
}

/* "boot_id": absent, or exactly 32 lowercase hex digits. */
static int decode_boot_id(json_t *o, struct vm_record *r, struct err *err)
{
	char hex[2 * AGENT_BOOT_ID_LEN + 2];
	int k = get_str(o, "boot_id", hex, sizeof(hex), false, err);

	if (k < 0 || !hex[0])
		return k;
	if (strlen(hex) != 2 * AGENT_BOOT_ID_LEN)
		return err_set(err, -EINVAL, "record: bad boot_id");
	for (size_t i = 0; i < AGENT_BOOT_ID_LEN; i++) {
		unsigned v = 0;

		for (size_t j = 0; j < 2; j++) {
			char c = hex[2 * i + j];

			if (c >= '0' && c <= '9')
				v = v * 16 + (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v = v * 16 + (unsigned)(c - 'a' + 10);
			else
				return err_set(err, -EINVAL, "record: bad boot_id");
		}
		r->boot_id[i] = (uint8_t)v;
	}
	r->has_boot_id = true;
	return 0;
}

/* The VMM handle's object (h may be NULL: no handle). */
static int decode_handle(json_t *h, struct vmm_handle *ret, struct err *err)
{
	json_t *cg, *e;
	long long v;
	size_t i;
	int k;

	if (!h)
		return 0;
	if (!json_is_object(h))
		return err_set(err, -EINVAL, "record: 'handle' is not an object");
	if ((k = get_int(h, "pid", 0, INT32_MAX, &v, err)) < 0)
		return k;
	ret->pid = (pid_t)v;
	if ((k = get_int(h, "start_time", 0, INT64_MAX, &v, err)) < 0)
		return k;
	ret->start_time = (uint64_t)v;
	if ((k = get_int(h, "cgroup_version", 0, 2, &v, err)) < 0)
		return k;
	ret->cgroup_version = (int)v;
	if ((k = get_str(h, "api_socket", ret->api_socket, sizeof(ret->api_socket), false, err)) <
		    0 ||
	    (k = get_str(h, "agent_socket", ret->agent_socket, sizeof(ret->agent_socket), false,
			 err)) < 0 ||
	    (k = get_str(h, "jail_dir", ret->jail_dir, sizeof(ret->jail_dir), false, err)) < 0)
		return k;
	cg = json_object_get(h, "cgroups");
	if (!cg)
		return 0;
	if (!json_is_array(cg) || json_array_size(cg) > ELEMENTSOF(ret->cgroup))
		return err_set(err, -EINVAL, "record: bad 'cgroups'");
	json_array_foreach (cg, i, e) {
		if (!json_is_string(e) || json_string_length(e) >= sizeof(ret->cgroup[0]) ||
		    strlen(json_string_value(e)) != json_string_length(e))
			return err_set(err, -EINVAL, "record: bad cgroup path");
		memcpy(ret->cgroup[i], json_string_value(e), json_string_length(e) + 1);
	}
	return 0;
}

/* The launch intent (h may be NULL: none). */
static int decode_launch(json_t *h, struct vm_record *ret, struct err *err)
{
	json_t *busy = json_object_get(h, "in_progress");
	long long v;
	int k;

	if (!h)
		return 0;
	if (!json_is_object(h) || !json_is_boolean(busy))
		return err_set(err, -EINVAL, "record: bad 'launch'");
	ret->launching = json_is_true(busy);
	if ((k = get_int(h, "uid", 0, UINT32_MAX, &v, err)) < 0)
		return k;
	ret->launch_uid = (uint32_t)v;
	return 0;
}

int record_decode(const char *data, size_t len, struct vm_record *ret, struct err *err)
{
	struct vm_record r;
	json_t *o;
	char state[16], ip[INET6_ADDRSTRLEN + 1];
	long long v;
	int s, k;

	memset(&r, 0, sizeof(r));
	vmm_handle_init(&r.h);
	if (len > RECORD_MAX)
		return err_set(err, -EFBIG, "record: larger than %d bytes", RECORD_MAX);
	o = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return err_set(err, -EINVAL, "record: not a JSON object");
	}
#define CHECK(x)                   \
	do {                       \
		if ((k = (x)) < 0) \
			goto fail; \
	} while (0)
	CHECK(get_int(o, "version", 1, RECORD_VERSION, &v, err));
	if (v != RECORD_VERSION) {
		k = err_set(err, -EINVAL, "record: unsupported version");
		goto fail;
	}
	CHECK(get_str(o, "name", r.name, sizeof(r.name), true, err));
	if (!vm_name_is_valid(r.name)) {
		k = err_set(err, -EINVAL, "record: invalid name");
		goto fail;
	}
	CHECK(get_int(o, "index", 0, UINT32_MAX, &v, err));
	r.index = (uint32_t)v;
	CHECK(get_str(o, "state", state, sizeof(state), true, err));
	s = vm_state_from_string(state);
	if (s < 0) {
		k = err_set(err, -EINVAL, "record: unknown state");
		goto fail;
	}
	r.state = (enum vm_state)s;
	CHECK(get_str(o, "vmm", r.vmm, sizeof(r.vmm), false, err));
	CHECK(get_str(o, "image", r.image, sizeof(r.image), false, err));
	CHECK(get_str(o, "image_digest", r.image_digest, sizeof(r.image_digest), false, err));
	CHECK(get_str(o, "image_key", r.image_key, sizeof(r.image_key), false, err));
	CHECK(get_str(o, "ip", ip, sizeof(ip), false, err));
	if (ip[0]) {
		if (inet_pton(AF_INET6, ip, &r.ip) != 1) {
			k = err_set(err, -EINVAL, "record: bad ip");
			goto fail;
		}
		r.has_ip = true;
	}
	CHECK(get_str(o, "error", r.error, sizeof(r.error), false, err));
	CHECK(get_str(o, "rootfs", r.rootfs, sizeof(r.rootfs), false, err));
	CHECK(decode_handle(json_object_get(o, "handle"), &r.h, err));
	CHECK(decode_launch(json_object_get(o, "launch"), &r, err));
	CHECK(decode_boot_id(o, &r, err));
#undef CHECK
	json_decref(o);
	*ret = r;
	return 0;
fail:
	json_decref(o);
	return k;
}

static int record_path(const char *state_dir, const char *name, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s/record.json", state_dir, name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int record_write(const char *state_dir, const struct vm_record *r)
{
	char path[4200];
	_cleanup_free_ char *s = NULL;
	int k;

	k = record_path(state_dir, r->name, path, sizeof(path));
	if (k < 0)
		return k;
	k = record_encode(r, &s);
	if (k < 0)
		return k;
	return write_file_atomic(path, s, strlen(s), 0600);
}

int record_read(const char *state_dir, const char *name, struct vm_record *ret, struct err *err)
{
	char path[4200];
	_cleanup_free_ char *s = NULL;
	size_t len = 0;
	int k;

	k = record_path(state_dir, name, path, sizeof(path));
	if (k < 0)
		return err_set(err, k, "record path too long");
	k = read_file_bounded(path, RECORD_MAX, &s, &len);
	if (k < 0)
		return err_set(err, k, "%s: %s", path, strerror(-k));
	k = record_decode(s, len, ret, err);
	if (k >= 0 && strcmp(ret->name, name) != 0)
		return err_set(err, -EINVAL, "%s: name mismatch", path);
	return k;
}

int record_remove(const char *state_dir, const char *name)
{
	char path[4200];
	int k = record_path(state_dir, name, path, sizeof(path));

	if (k < 0)
		return k;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}
