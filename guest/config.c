/* SPDX-License-Identifier: MIT */
/* /mvmfs/vm.json: the per-VM settings the host appended to the initramfs. Strictly typed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define CONFIG_MAX (256 * 1024)
#define LIST_MAX 4096

static int fail(char *errbuf, size_t errsz, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *errbuf, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errsz, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* A JSON array of strings (or null/absent) -> NULL-terminated vector. */
static int get_strv(json_t *arr, char ***ret)
{
	size_t n, i;
	char **v;

	if (!arr || json_is_null(arr)) {
		n = 0;
	} else if (!json_is_array(arr)) {
		return -EINVAL;
	} else {
		n = json_array_size(arr);
		if (n > LIST_MAX)
			return -E2BIG;
	}
	v = calloc(n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		json_t *s = json_array_get(arr, i);

		if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
			strv_free(v);
			return -EINVAL;
		}
		v[i] = strdup(json_string_value(s));
		if (!v[i]) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	*ret = v;
	return 0;
}

static int get_str(json_t *o, const char *key, char **ret)
{
	json_t *s = json_object_get(o, key);

	*ret = NULL;
	if (!s || json_is_null(s))
		return 0;
	if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s))
		return -EINVAL;
	*ret = strdup(json_string_value(s));
	return *ret ? 0 : -ENOMEM;
}

static int get_uint(json_t *o, const char *key, unsigned max, unsigned *ret)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
		return -EINVAL;
	*ret = (unsigned)json_integer_value(v);
	return 0;
}

static int get_addr(json_t *o, const char *key, struct in6_addr *ret, bool *have)
{
	json_t *v = json_object_get(o, key);

	*have = false;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || inet_pton(AF_INET6, json_string_value(v), ret) != 1)
		return -EINVAL;
	*have = true;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* An absolute path without empty, "." or ".." components, printable ASCII, not "/". */
static bool volume_path_ok(const char *p)
{
	size_t n = strlen(p);

	if (p[0] != '/' || n < 2 || n >= sizeof(((struct guest_volume *)0)->path) ||
	    p[n - 1] == '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
			return false;
		if (p[i] != '/')
			continue;
		if (p[i + 1] == '/' ||
		    (p[i + 1] == '.' &&
		     (p[i + 2] == '/' || p[i + 2] == '\0' ||
		      (p[i + 2] == '.' && (p[i + 3] == '/' || p[i + 3] == '\0')))))
			return false;
	}
	return true;
}

/* "volumes": [{"uuid": "<32 lowercase hex>", "path": "/abs", "fresh": bool}, ...] */
static int get_volumes(json_t *arr, struct guest_vm *vm)
{
	json_t *v;
	size_t i;

	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > GUEST_VOLUMES_MAX)
		return -EINVAL;
	json_array_foreach (arr, i, v) {
		struct guest_volume *g = &vm->volumes[i];
		json_t *uuid = json_object_get(v, "uuid"), *path = json_object_get(v, "path"),
		       *fresh = json_object_get(v, "fresh");
		const char *u;

		if (!json_is_object(v) || json_object_size(v) != 3 || !json_is_string(uuid) ||
		    !json_is_string(path) || !json_is_boolean(fresh) ||
		    json_string_length(uuid) != 32 ||
		    strlen(json_string_value(path)) != json_string_length(path) ||
		    !volume_path_ok(json_string_value(path)))
			return -EINVAL;
		u = json_string_value(uuid);
		for (int k = 0; k < 16; k++) {
			int hi = hexval(u[2 * k]), lo = hexval(u[2 * k + 1]);

			if (hi < 0 || lo < 0)
				return -EINVAL;
			g->uuid[k] = (uint8_t)(hi << 4 | lo);
		}
		for (size_t k = 0; k < i; k++)
			if (memcmp(vm->volumes[k].uuid, g->uuid, 16) == 0)
				return -EINVAL;
		snprintf(g->path, sizeof(g->path), "%s", json_string_value(path));
		g->fresh = json_is_true(fresh);
		vm->n_volumes++;
	}
	return 0;
}

/* A string member that must fit dst (size bytes); absent leaves dst as it is. */
static int get_str_into(json_t *o, const char *key, char *dst, size_t size)
{
	char *s = NULL;
	int r = get_str(o, key, &s);

	if (r >= 0 && s && strlen(s) >= size)
		r = -EINVAL;
	if (r >= 0 && s)
		snprintf(dst, size, "%s", s);
	free(s);
	return r;
}

/* Who the VM is: name, addresses, MAC, volumes. */
static int parse_identity(json_t *root, struct guest_vm *vm, char *errbuf, size_t errsz)
{
	snprintf(vm->name, sizeof(vm->name), "mvm");
	if (get_str_into(root, "name", vm->name, sizeof(vm->name)) < 0)
		return fail(errbuf, errsz, "vm.json: bad name");
	if (get_addr(root, "address", &vm->addr, &vm->have_addr) < 0 ||
	    get_addr(root, "gateway", &vm->gateway, &vm->have_gateway) < 0 ||
	    get_uint(root, "prefix_len", 128, &vm->prefix_len) < 0 ||
	    get_uint(root, "mtu", 65535, &vm->mtu) < 0 ||
	    get_uint(root, "grace_ms", 3600000, &vm->grace_ms) < 0)
		return fail(errbuf, errsz,
			    "vm.json: bad address, gateway, prefix_len, mtu or grace_ms");
	if (get_str_into(root, "mac", vm->mac, sizeof(vm->mac)) < 0)
		return fail(errbuf, errsz, "vm.json: bad mac");
	vm->no_network = json_is_true(json_object_get(root, "no_network"));
	if (get_volumes(json_object_get(root, "volumes"), vm) < 0)
		return fail(errbuf, errsz, "vm.json: bad volumes");
	return 0;
}

/* What the app runs as: the image config's Entrypoint, Cmd, Env, WorkingDir, User. */
static int parse_image(json_t *img, struct guest_vm *vm, char *errbuf, size_t errsz)
{
	if (img && !json_is_null(img)) {
		if (!json_is_object(img))
			return fail(errbuf, errsz, "vm.json: image is not an object");
		if (get_strv(json_object_get(img, "entrypoint"), &vm->entrypoint) < 0 ||
		    get_strv(json_object_get(img, "cmd"), &vm->cmd) < 0 ||
		    get_strv(json_object_get(img, "env"), &vm->env) < 0 ||
		    get_str(img, "workdir", &vm->workdir) < 0 ||
		    get_str(img, "user", &vm->user) < 0)
			return fail(errbuf, errsz,
				    "vm.json: bad image entrypoint/cmd/env/workdir/user");
	}
	if (!vm->entrypoint)
		vm->entrypoint = calloc(1, sizeof(char *));
	if (!vm->cmd)
		vm->cmd = calloc(1, sizeof(char *));
	if (!vm->env)
		vm->env = calloc(1, sizeof(char *));
	return vm->entrypoint && vm->cmd && vm->env ? 0 : -ENOMEM;
}

/* How the agent talks to the host: transport, port, heartbeat period. */
static int parse_agent(json_t *agent, struct guest_vm *vm, char *errbuf, size_t errsz)
{
	unsigned port = AGENT_DEFAULT_VSOCK_PORT;

	if (agent && json_is_object(agent)) {
		json_t *t = json_object_get(agent, "transport");

		if (t && !json_is_string(t))
			return fail(errbuf, errsz, "vm.json: bad agent.transport");
		vm->vsock = t && strcmp(json_string_value(t), "vsock") == 0;
		if (get_uint(agent, "port", UINT32_MAX >> 1, &port) < 0 ||
		    get_uint(agent, "heartbeat_ms", 600000, &vm->heartbeat_ms) < 0)
			return fail(errbuf, errsz, "vm.json: bad agent.port or heartbeat_ms");
	}
	vm->port = port;
	if (vm->heartbeat_ms < 50)
		vm->heartbeat_ms = 50;
	return 0;
}

int guest_vm_parse(const char *json, size_t len, struct guest_vm *vm, char *errbuf, size_t errsz)
{
	json_error_t jerr;
	json_t *root;
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->heartbeat_ms = 1000;
	vm->grace_ms = 5000;
	vm->prefix_len = 64;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(errbuf, errsz, "vm.json: %s at line %d", jerr.text, jerr.line);
	if (!json_is_object(root))
		r = fail(errbuf, errsz, "vm.json: not an object");
	else
		r = parse_identity(root, vm, errbuf, errsz);
	if (r >= 0)
		r = parse_image(json_object_get(root, "image"), vm, errbuf, errsz);
	if (r >= 0)
		r = parse_agent(json_object_get(root, "agent"), vm, errbuf, errsz);
	json_decref(root);
	if (r < 0)
		guest_vm_done(vm);
	return r < 0 ? r : 0;
}

int guest_vm_load(const char *path, struct guest_vm *vm, char *errbuf, size_t errsz)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		fail(errbuf, errsz, "%s: %s", path, strerror(-r));
		return r;
	}
	buf = malloc(CONFIG_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = read(fd, buf + len, CONFIG_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (n < 0 || len == CONFIG_MAX) {
		free(buf);
		return fail(errbuf, errsz, "%s: unreadable or too large", path);
	}
	r = guest_vm_parse(buf, len, vm, errbuf, errsz);
	free(buf);
	return r;
}

/* 8 hex digits of a newc header field. */
static int hex8(const char *p, size_t *ret)
{
	size_t v = 0;

	for (int i = 0; i < 8; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (size_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (size_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (size_t)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	*ret = v;
	return 0;
}

/* Test mode under the Firecracker fake: read vm.json out of the per-VM initramfs, i.e. the last
 * uncompressed newc member named mvmfs/vm.json (the archive the host appended). */
int guest_vm_load_initrd(const char *path, struct guest_vm *vm, char *errbuf, size_t errsz)
{
	static const char name[] = "mvmfs/vm.json";
	const size_t hdr = 110, nlen = sizeof(name); /* with the NUL */
	char *buf = NULL, *hit = NULL;
	size_t len = 0, cap = 0, fsize, nsize, off;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		fail(errbuf, errsz, "%s: %s", path, strerror(-r));
		return r;
	}
	do {
		if (len == cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap ? cap * 2 : 1 << 20) : NULL;

			if (!nb) {
				free(buf);
				close(fd);
				return fail(errbuf, errsz, "%s: too large", path);
			}
			buf = nb;
			cap = cap ? cap * 2 : 1 << 20;
		}
		n = read(fd, buf + len, cap - len);
		if (n > 0)
			len += (size_t)n;
	} while (n > 0);
	close(fd);
	for (char *p = buf; len >= hdr + nlen && p <= buf + len - hdr - nlen; p++) {
		p = memmem(p, (size_t)(buf + len - p), name, nlen);
		if (!p)
			break;
		if (p - buf >= (long)hdr && memcmp(p - hdr, "070701", 6) == 0)
			hit = p - hdr;
	}
	r = -ENOENT;
	if (hit && hex8(hit + 54, &fsize) == 0 && hex8(hit + 94, &nsize) == 0 && nsize == nlen) {
		off = (size_t)(hit - buf) + ((hdr + nsize + 3) & ~(size_t)3);
		if (off <= len && fsize <= len - off)
			r = guest_vm_parse(buf + off, fsize, vm, errbuf, errsz);
	}
	if (r == -ENOENT)
		fail(errbuf, errsz, "%s: no %s inside", path, name);
	free(buf);
	return r;
}

void guest_vm_done(struct guest_vm *vm)
{
	strv_free(vm->entrypoint);
	strv_free(vm->cmd);
	strv_free(vm->env);
	free(vm->workdir);
	free(vm->user);
	vm->entrypoint = vm->cmd = vm->env = NULL;
	vm->workdir = vm->user = NULL;
}
