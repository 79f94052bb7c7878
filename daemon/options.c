/* SPDX-License-Identifier: MIT */
/*
 * Options: one table drives getopt_long, --config FILE and --help, so every key exists in both
 * places with the same spelling. A config file holds "key = value" or "key value" lines, '#'
 * comments; flags take a boolean there ("no-network = yes").
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "fileio.h"
#include "macro.h"
#include "parse.h"

enum opt_kind {
	OPT_STR, /* const char * in runtime_config or daemon_options */
	OPT_U32,
	OPT_SIZE, /* uint64_t bytes, K/M/G suffixes */
	OPT_MS,	  /* unsigned milliseconds: "10" (seconds), "10s", "500ms", "2m" */
	OPT_FLAG, /* bool; takes a boolean value in a config file */
	OPT_VMM,
	OPT_LOGLEVEL,
	OPT_CGROUP,
	OPT_LIST, /* --insecure-registry, repeatable */
	OPT_KEYS, /* --verify-key, repeatable */
	OPT_CONFIG,
	OPT_HELP,
	OPT_VERSION,
};

/* A default's value as text, for --help. */
#define STR_(x) #x
#define STR(x) STR_(x)
#define RT(f) (offsetof(struct daemon_options, rt) + offsetof(struct runtime_config, f))
#define DO(f) offsetof(struct daemon_options, f)

struct opt_def {
	const char *name;
	enum opt_kind kind;
	size_t offset;
	const char *arg;
	const char *help;
};

/* clang-format off */
static const struct opt_def opt_defs[] = {
	{ "state-dir", OPT_STR, RT(state_dir), "DIR", "records, image cache, disks (" DEFAULT_STATE_DIR ")" },
	{ "vmm", OPT_VMM, RT(vmm), "firecracker|qemu", "VMM backend (firecracker)" },
	{ "firecracker", OPT_STR, RT(firecracker), "PATH", "firecracker binary (from PATH)" },
	{ "jailer", OPT_STR, RT(jailer), "PATH", "jailer binary (from PATH)" },
	{ "qemu", OPT_STR, RT(qemu), "PATH", "qemu-system-x86_64 for --vmm qemu (from PATH)" },
	{ "chroot-base", OPT_STR, RT(chroot_base), "DIR", "the jailer's --chroot-base-dir (" DEFAULT_CHROOT_BASE ")" },
	{ "kernel", OPT_STR, RT(kernel), "PATH", "guest kernel (STATE_DIR/guest/vmlinux)" },
	{ "initrd", OPT_STR, RT(initrd), "PATH", "guest agent initramfs (STATE_DIR/guest/initramfs.cpio.gz)" },
	{ "database-url", OPT_STR, RT(database_url), "CONNINFO", "PostgreSQL with instances(id, ip_address) (none: local allocator)" },
	{ "database-timeout", OPT_MS, RT(database_timeout_ms), "TIME", "deadline of one address assignment in the database, connecting included, 100ms-60s (5s)" },
	{ "ipv6-prefix", OPT_STR, RT(ipv6_prefix), "PREFIX/LEN", "this node's VM prefix (a ULA /64 kept in the state dir)" },
	{ "bridge", OPT_STR, RT(bridge), "NAME", "host bridge (" DEFAULT_BRIDGE ")" },
	{ "report-url", OPT_STR, RT(report_url), "URL", "management API endpoint for health reports (none)" },
	{ "report-token-file", OPT_STR, RT(report_token_file), "FILE", "bearer token for --report-url" },
	{ "report-interval", OPT_MS, RT(report_interval_ms), "TIME", "period of the full health report of every VM (30s)" },
	{ "report-parallel", OPT_U32, RT(report_parallel), "N", "report requests in flight at once, 1-256 (8)" },
	{ "insecure-registry", OPT_LIST, 0, "HOST[:PORT]", "registry reached over plain HTTP (repeatable)" },
	{ "docker-config", OPT_STR, RT(docker_config), "FILE", "registry credentials (~/.docker/config.json)" },
	{ "verify-key", OPT_KEYS, 0, "FILE", "PEM public key (ECDSA P-256) images must be cosign-signed by (repeatable; none: no check)" },
	{ "uid-base", OPT_U32, RT(uid_base), "UID", "first uid/gid of the per-VM range (" STR(RUNTIME_DEFAULT_UID_BASE) ")" },
	{ "uid-count", OPT_U32, RT(uid_count), "N", "size of the per-VM uid/gid range (" STR(RUNTIME_DEFAULT_UID_COUNT) ")" },
	{ "vcpus", OPT_U32, RT(vcpus), "N", "vCPUs per VM (" STR(RUNTIME_DEFAULT_VCPUS) ")" },
	{ "mem-mib", OPT_U32, RT(mem_mib), "MIB", "memory per VM (" STR(RUNTIME_DEFAULT_MEM_MIB) ")" },
	{ "data-disk-size", OPT_SIZE, RT(data_disk_bytes), "SIZE", "per-VM writable disk, e.g. 1G (1G)" },
	{ "volume-size", OPT_SIZE, RT(volume_bytes), "SIZE", "size of a new volume, 16M-16T (1G)" },
	{ "image-keep", OPT_SIZE, RT(image_keep_bytes), "SIZE", "unused images kept in the cache (10G)" },
	{ "pull-timeout", OPT_MS, RT(pull_timeout_ms), "TIME", "deadline of a whole image pull (30m)" },
	{ "pull-stall-timeout", OPT_MS, RT(pull_stall_timeout_ms), "TIME", "a pull fails when no byte arrives for this long (60s)" },
	{ "disk-reserve", OPT_SIZE, RT(disk_reserve_bytes), "SIZE", "free space pulls and disks leave on the state dir's filesystem (512M)" },
	{ "max-manifest-size", OPT_SIZE, RT(max_manifest_bytes), "SIZE", "largest image manifest or index, at most 4M (4M)" },
	{ "max-config-size", OPT_SIZE, RT(max_config_bytes), "SIZE", "largest image config blob (8M)" },
	{ "max-layer-size", OPT_SIZE, RT(max_layer_bytes), "SIZE", "largest layer blob, declared or received (4G)" },
	{ "max-image-size", OPT_SIZE, RT(max_image_bytes), "SIZE", "largest image: its blobs, S3 archive, unpacked files (8G)" },
	{ "stop-timeout", OPT_MS, RT(stop_timeout_ms), "TIME", "graceful stop deadline before SIGKILL (10s)" },
	{ "app-grace", OPT_MS, RT(app_grace_ms), "TIME", "SIGTERM to SIGKILL inside the guest (5s)" },
	{ "heartbeat", OPT_MS, RT(heartbeat_ms), "TIME", "agent heartbeat period (1s)" },
	{ "max-vms", OPT_U32, RT(max_vms), "N", "limit of defined VMs (" STR(RUNTIME_DEFAULT_MAX_VMS) ")" },
	{ "cgroup-version", OPT_CGROUP, RT(cgroup_version), "auto|1|2", "cgroup hierarchy for limits (auto)" },
	{ "stop-vms-on-exit", OPT_FLAG, RT(stop_vms_on_exit), NULL, "stop VMs on SIGTERM instead of leaving them running" },
	{ "reap-interval", OPT_MS, RT(reap_interval_ms), "TIME", "leak reaper period (60s)" },
	{ "no-network", OPT_FLAG, RT(no_network), NULL, "skip host network plumbing (tests)" },
	{ "log-level", OPT_LOGLEVEL, DO(log_level), "LEVEL", "debug|info|notice|warning|err (info)" },
	{ "max-threads", OPT_U32, DO(max_threads), "N", "FUSE worker threads (16)" },
	{ "max-handles", OPT_U32, DO(max_handles), "N", "open files and directories of the mount in all (65536)" },
	{ "root-handles", OPT_U32, DO(root_handles), "N", "of --max-handles, kept for uid 0 (1024, at most half)" },
	{ "max-handles-per-uid", OPT_U32, DO(max_handles_per_uid), "N", "open files per uid other than 0 (1024)" },
	{ "max-buffer-per-uid", OPT_SIZE, DO(max_buffer_per_uid), "SIZE", "read buffers held per uid other than 0 (16M)" },
	{ "max-buffer-others", OPT_SIZE, DO(max_buffer_others), "SIZE", "read buffers held by all uids but 0 (64M)" },
	{ "fuse-debug", OPT_FLAG, DO(fuse_debug), NULL, "trace every FUSE request" },
	{ "config", OPT_CONFIG, 0, "FILE", "read these keys from FILE (command line wins)" },
	{ "help", OPT_HELP, 0, NULL, "this text" },
	{ "version", OPT_VERSION, 0, NULL, "print the version" },
};
/* clang-format on */

void daemon_options_help(const char *prog)
{
	printf("Usage: %s [OPTIONS] MOUNTPOINT\n\n"
	       "Mounts the mvmfs control tree and drives microVMs from it.\n\n",
	       prog);
	for (size_t i = 0; i < ELEMENTSOF(opt_defs); i++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", opt_defs[i].name,
			 opt_defs[i].arg ? " " : "", opt_defs[i].arg ? opt_defs[i].arg : "");
		printf("  %-32s %s\n", left, opt_defs[i].help);
	}
	printf("\nTIME is N seconds, Nms, Ns or Nm. A config file takes the same keys without the\n"
	       "dashes, one \"key = value\" per line; '#' starts a comment.\n");
}

static int parse_ms(const char *s, unsigned *ret)
{
	char num[32];
	size_t n = strspn(s, "0123456789");
	uint64_t mult, v;
	const char *unit = s + n;

	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	if (parse_u64(num, &v) < 0)
		return -EINVAL;
	if (*unit == '\0' || strcmp(unit, "s") == 0)
		mult = 1000;
	else if (strcmp(unit, "ms") == 0)
		mult = 1;
	else if (strcmp(unit, "m") == 0)
		mult = 60000;
	else
		return -EINVAL;
	if (v > UINT_MAX / mult)
		return -ERANGE;
	*ret = (unsigned)(v * mult);
	return 0;
}

static int parse_log_level(const char *s, int *ret)
{
	static const char *const names[] = {"emerg",   "alert",	 "crit", "err",
					    "warning", "notice", "info", "debug"};
	uint32_t v;

	for (int i = 0; i < (int)ELEMENTSOF(names); i++)
		if (strcmp(s, names[i]) == 0) {
			*ret = i;
			return 0;
		}
	if (strcmp(s, "error") == 0) {
		*ret = LOG_ERR;
		return 0;
	}
	if (parse_u32(s, &v) < 0 || v > LOG_DEBUG)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

static int add_insecure(struct daemon_options *o, const char *v)
{
	const char **p = realloc(o->insecure, sizeof(*p) * (o->n_insecure + 2));

	if (!p)
		return -ENOMEM;
	p[o->n_insecure++] = v;
	p[o->n_insecure] = NULL;
	o->insecure = p;
	o->rt.insecure_registries = p;
	return 0;
}

static int add_verify_key(struct daemon_options *o, const char *v)
{
	const char **p = realloc(o->verify_keys, sizeof(*p) * (o->n_verify_keys + 2));

	if (!p)
		return -ENOMEM;
	p[o->n_verify_keys++] = v;
	p[o->n_verify_keys] = NULL;
	o->verify_keys = p;
	o->rt.verify_keys = p;
	return 0;
}

/* A config file's line buffer is reused: keep a copy of a value the options point at. */
static int keep_copy(struct daemon_options *o, const char **value)
{
	char *copy = strdup(*value);
	char **owned = realloc(o->owned, sizeof(*owned) * (o->n_owned + 1));

	if (owned)
		o->owned = owned;
	if (!copy || !owned) {
		free(copy);
		return -ENOMEM;
	}
	o->owned[o->n_owned++] = copy;
	*value = copy;
	return 0;
}

/* Apply one option. from_file: flags take a value, strings must be copied. One switch over
 * the option kinds, so each kind's rule is in one place. */
static int apply(struct daemon_options *o, const struct opt_def *d, const char *value,
		 bool from_file, struct err *err)
{
	char *base = (char *)o + d->offset;
	int r = 0;

	if (from_file && d->kind != OPT_FLAG && d->kind != OPT_HELP && d->kind != OPT_VERSION &&
	    d->kind != OPT_CONFIG && keep_copy(o, &value) < 0)
		return err_set(err, -ENOMEM, "out of memory");
	switch (d->kind) {
	case OPT_STR:
		*(const char **)base = value;
		break;
	case OPT_U32:
		r = parse_u32(value, (uint32_t *)base);
		break;
	case OPT_SIZE:
		r = parse_size(value, (uint64_t *)base);
		break;
	case OPT_MS:
		r = parse_ms(value, (unsigned *)base);
		break;
	case OPT_FLAG:
		if (from_file)
			r = parse_bool(value, (bool *)base);
		else
			*(bool *)base = true;
		break;
	case OPT_VMM:
		if (strcmp(value, "firecracker") == 0)
			o->rt.vmm = VMM_FIRECRACKER;
		else if (strcmp(value, "qemu") == 0)
			o->rt.vmm = VMM_QEMU;
		else
			r = -EINVAL;
		break;
	case OPT_LOGLEVEL:
		r = parse_log_level(value, &o->log_level);
		break;
	case OPT_CGROUP:
		if (strcmp(value, "auto") == 0)
			o->rt.cgroup_version = 0;
		else if (strcmp(value, "1") == 0 || strcmp(value, "2") == 0)
			o->rt.cgroup_version = value[0] - '0';
		else
			r = -EINVAL;
		break;
	case OPT_LIST:
		r = add_insecure(o, value);
		if (r < 0)
			return err_set(err, r, "out of memory");
		break;
	case OPT_KEYS:
		if (!*value)
			return err_set(err, -EINVAL, "verify-key needs a file name");
		r = add_verify_key(o, value);
		if (r < 0)
			return err_set(err, r, "out of memory");
		break;
	case OPT_HELP:
		o->show_help = true;
		break;
	case OPT_VERSION:
		o->show_version = true;
		break;
	case OPT_CONFIG:
		break;
	}
	if (r < 0)
		return err_set(err, -EINVAL, "invalid value '%s' for %s", value, d->name);
	return 0;
}

static const struct opt_def *find_def(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(opt_defs); i++)
		if (strcmp(opt_defs[i].name, name) == 0)
			return &opt_defs[i];
	return NULL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

int daemon_config_parse(struct daemon_options *o, char *data, size_t len, const char *path,
			struct err *err)
{
	char *line, *next;
	unsigned lineno = 0;
	int r;

	if (strlen(data) != len)
		return err_set(err, -EINVAL, "%s: contains a NUL byte", path);
	for (line = data; line; line = next) {
		const struct opt_def *d;
		char *key, *value, *sep;
		size_t vlen;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		key = trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		sep = key + strcspn(key, "= \t");
		value = *sep ? sep + 1 : sep;
		*sep = '\0';
		value = trim(value);
		if (*value == '=')
			value = trim(value + 1);
		vlen = strlen(value);
		if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') &&
		    value[vlen - 1] == value[0]) {
			value[vlen - 1] = '\0';
			value++;
		}
		d = find_def(key);
		if (!d || d->kind == OPT_CONFIG || d->kind == OPT_HELP || d->kind == OPT_VERSION)
			return err_set(err, -EINVAL, "%s:%u: unknown key '%s'", path, lineno, key);
		if (*value == '\0')
			return err_set(err, -EINVAL, "%s:%u: '%s' needs a value", path, lineno,
				       key);
		r = apply(o, d, value, true, err);
		if (r < 0)
			return err_prefix(err, "%s:%u: ", path, lineno);
	}
	return 0;
}

static int load_config(struct daemon_options *o, const char *path, struct err *err)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r;

	r = read_file_bounded(path, 1 << 20, &data, &len);
	if (r < 0)
		return err_set(err, r, "cannot read config file '%s': %s", path, strerror(-r));
	return daemon_config_parse(o, data, len, path, err);
}

/* Find name in PATH; returns a malloc'd path or NULL. */
static char *path_lookup(const char *name)
{
	char buf[PATH_MAX];

	return find_executable(name, buf, sizeof(buf)) < 0 ? NULL : strdup(buf);
}

static int own(struct daemon_options *o, char *s)
{
	char **owned;

	if (!s)
		return -ENOMEM;
	owned = realloc(o->owned, sizeof(*owned) * (o->n_owned + 1));
	if (!owned) {
		free(s);
		return -ENOMEM;
	}
	o->owned = owned;
	o->owned[o->n_owned++] = s;
	return 0;
}

static int fill_defaults(struct daemon_options *o, struct err *err)
{
	char *s = NULL;

	if (!o->rt.state_dir)
		o->rt.state_dir = DEFAULT_STATE_DIR;
	/* The jail base now: the daemon locks it before the runtime exists. */
	if (!o->rt.chroot_base)
		o->rt.chroot_base = DEFAULT_CHROOT_BASE;
	if (!o->rt.bridge)
		o->rt.bridge = DEFAULT_BRIDGE;
	/* 0: the runtime's default. */
	if (o->rt.volume_bytes &&
	    (o->rt.volume_bytes < VOLUME_SIZE_MIN || o->rt.volume_bytes > VOLUME_SIZE_MAX))
		return err_set(err, -EINVAL, "volume-size must be within 16M..16T");
	o->rt.volume_bytes = (o->rt.volume_bytes + 4095) / 4096 * 4096;
	/* Kernel, initramfs and the sizes left unset take the runtime's defaults (runtime_new),
	 * which --help states. */
	if (o->rt.vmm == VMM_FIRECRACKER) {
		if (!o->rt.firecracker) {
			s = path_lookup("firecracker");
			if (!s)
				return err_set(
					err, -ENOENT,
					"firecracker not found in PATH (use --firecracker PATH)");
			if (own(o, s) < 0)
				return err_set(err, -ENOMEM, "out of memory");
			o->rt.firecracker = s;
		}
		if (!o->rt.jailer) {
			s = path_lookup("jailer");
			if (!s)
				return err_set(err, -ENOENT,
					       "jailer not found in PATH (use --jailer PATH)");
			if (own(o, s) < 0)
				return err_set(err, -ENOMEM, "out of memory");
			o->rt.jailer = s;
		}
	}
	return 0;
}

int daemon_options_parse(int argc, char **argv, struct daemon_options *o, struct err *err)
{
	struct option longopts[ELEMENTSOF(opt_defs) + 1];
	const char *config = NULL;
	int c, r;

	*o = (struct daemon_options){.log_level = LOG_INFO};
	for (size_t i = 0; i < ELEMENTSOF(opt_defs); i++) {
		bool has_arg = opt_defs[i].arg != NULL;
		longopts[i] =
			(struct option){opt_defs[i].name, has_arg ? required_argument : no_argument,
					NULL, (int)(256 + i)};
	}
	longopts[ELEMENTSOF(opt_defs)] = (struct option){};

	/* Pass 1: find --config, so the command line can override the file. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1)
		if (c >= 256 && opt_defs[c - 256].kind == OPT_CONFIG)
			config = optarg;
	if (config) {
		r = load_config(o, config, err);
		if (r < 0)
			return r;
	}

	/* Pass 2: everything, in order. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		if (c == 'h') {
			o->show_help = true;
			continue;
		}
		if (c == 'V') {
			o->show_version = true;
			continue;
		}
		if (c == '?' || c < 256) {
			if (optopt >= 256)
				return err_set(err, -EINVAL, "option --%s needs a value",
					       opt_defs[optopt - 256].name);
			return err_set(err, -EINVAL, "unknown option '%s'", argv[optind - 1]);
		}
		r = apply(o, &opt_defs[c - 256], optarg, false, err);
		if (r < 0)
			return r;
	}
	if (o->show_help || o->show_version)
		return 0;
	if (optind != argc - 1)
		return err_set(err, -EINVAL, "expected exactly one MOUNTPOINT (see --help)");
	o->mountpoint = argv[optind];
	return fill_defaults(o, err);
}

void daemon_options_done(struct daemon_options *o)
{
	for (unsigned i = 0; i < o->n_owned; i++)
		free(o->owned[i]);
	free(o->owned);
	free(o->insecure);
	free(o->verify_keys);
	*o = (struct daemon_options){};
}
