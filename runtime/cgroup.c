/* SPDX-License-Identifier: MIT */
/*
 * cgroups: detect what the host runs (v2 with cpu+memory, else the v1 cpu and memory
 * hierarchies), turn the VM limits into jailer --cgroup flags, and remove the per-VM cgroup
 * directories the jailer created (the jailer never deletes them).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"

/* Does the comma-separated option list opts contain word? */
static bool has_opt(const char *opts, size_t len, const char *word)
{
	size_t wl = strlen(word);
	const char *p = opts, *end = opts + len;

	while (p < end) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t n = c ? (size_t)(c - p) : (size_t)(end - p);

		if (n == wl && memcmp(p, word, n) == 0)
			return true;
		p += n + 1;
	}
	return false;
}

static bool has_word(const char *text, const char *word)
{
	size_t wl = strlen(word);

	for (const char *p = text; p && *p;) {
		while (*p == ' ' || *p == '\n' || *p == '\t')
			p++;
		size_t n = strcspn(p, " \n\t");
		if (n == wl && memcmp(p, word, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/* Copy a /proc/mounts field, undoing the octal escapes (\040 for space). */
static int unescape(const char *s, size_t n, char *buf, size_t size)
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
		    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
			c = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) |
				   (s[i + 3] - '0'));
			i += 3;
		}
		if (j + 1 >= size)
			return -ENAMETOOLONG;
		buf[j++] = c;
	}
	buf[j] = '\0';
	return 0;
}

int cgroup_detect_from(const char *mounts, const char *v2_controllers, struct cgroup_info *ret)
{
	struct cgroup_info ci = {};
	const char *line = mounts;

	while (line && *line) {
		const char *eol = strchr(line, '\n');
		size_t ll = eol ? (size_t)(eol - line) : strlen(line);
		const char *f[4];
		size_t fl[4];
		size_t nf = 0;
		const char *p = line, *end = line + ll;

		while (nf < 4 && p < end) {
			while (p < end && *p == ' ')
				p++;
			if (p >= end)
				break;
			f[nf] = p;
			while (p < end && *p != ' ')
				p++;
			fl[nf] = (size_t)(p - f[nf]);
			nf++;
		}
		if (nf == 4) {
			char path[VMM_PATH_MAX];

			if (unescape(f[1], fl[1], path, sizeof(path)) == 0) {
				if (fl[2] == 7 && memcmp(f[2], "cgroup2", 7) == 0) {
					if (!ci.v2_mount[0])
						strcpy(ci.v2_mount, path);
				} else if (fl[2] == 6 && memcmp(f[2], "cgroup", 6) == 0) {
					if (has_opt(f[3], fl[3], "cpu") && !ci.cpu_mount[0])
						strcpy(ci.cpu_mount, path);
					if (has_opt(f[3], fl[3], "memory") && !ci.memory_mount[0])
						strcpy(ci.memory_mount, path);
				}
			}
		}
		line = eol ? eol + 1 : NULL;
	}
	if (ci.v2_mount[0] && v2_controllers && has_word(v2_controllers, "cpu") &&
	    has_word(v2_controllers, "memory"))
		ci.version = 2;
	else if (ci.cpu_mount[0] && ci.memory_mount[0])
		ci.version = 1;
	else
		return -ENOENT;
	*ret = ci;
	return 0;
}

int cgroup_detect(int forced_version, struct cgroup_info *ret, struct err *err)
{
	_cleanup_free_ char *mounts = NULL, *ctl = NULL;
	struct cgroup_info ci;
	char path[VMM_PATH_MAX + 64];
	int r;

	r = read_file_bounded("/proc/mounts", 1 << 20, &mounts, NULL);
	if (r < 0)
		return err_set(err, r, "reading /proc/mounts: %s", strerror(-r));
	/* Find the v2 mount first to read its controllers. */
	r = cgroup_detect_from(mounts, NULL, &ci);
	if (r < 0 && r != -ENOENT)
		return err_set(err, r, "parsing /proc/mounts");
	memset(&ci, 0, sizeof(ci));
	{
		struct cgroup_info tmp = {};
		(void)cgroup_detect_from(mounts, "cpu memory", &tmp);
		if (tmp.v2_mount[0]) {
			snprintf(path, sizeof(path), "%s/cgroup.controllers", tmp.v2_mount);
			(void)read_file_bounded(path, 4096, &ctl, NULL);
		}
	}
	r = cgroup_detect_from(mounts, ctl ? ctl : "", &ci);
	if (r < 0)
		return err_set(err, -ENOENT, "no cgroup hierarchy with cpu and memory controllers");
	if (forced_version == 1 && ci.cpu_mount[0] && ci.memory_mount[0])
		ci.version = 1;
	else if (forced_version == 2 && ci.version != 2)
		return err_set(
			err, -ENOTSUP,
			"cgroup v2 requested but cpu and memory are not in the unified hierarchy");
	if (ci.version == 1) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/memory.memsw.limit_in_bytes", ci.memory_mount);
		ci.memsw = stat(path, &st) == 0;
	}
	*ret = ci;
	return 0;
}

int cgroup_jailer_args(const struct cgroup_info *ci, unsigned vcpus, unsigned mem_mib,
		       const char *parent, char args[][128], size_t max, size_t *ret_n)
{
	unsigned long long mem = (unsigned long long)mem_mib << 20;
	unsigned long long quota = (unsigned long long)vcpus * 100000ULL;
	size_t n = 0;

#define ADD(...)                                       \
	do {                                           \
		if (n >= max)                          \
			return -E2BIG;                 \
		snprintf(args[n++], 128, __VA_ARGS__); \
	} while (0)
	ADD("--cgroup-version");
	ADD("%d", ci->version);
	ADD("--parent-cgroup");
	ADD("%s", parent);
	if (ci->version == 2) {
		ADD("--cgroup");
		ADD("cpu.max=%llu 100000", quota);
		ADD("--cgroup");
		ADD("memory.max=%llu", mem);
		ADD("--cgroup");
		ADD("memory.swap.max=0");
	} else {
		/* memsw must not be set below the memory limit: the limit goes first. */
		ADD("--cgroup");
		ADD("cpu.cfs_period_us=100000");
		ADD("--cgroup");
		ADD("cpu.cfs_quota_us=%llu", quota);
		ADD("--cgroup");
		ADD("memory.limit_in_bytes=%llu", mem);
		ADD("--cgroup");
		if (ci->memsw)
			ADD("memory.memsw.limit_in_bytes=%llu", mem);
		else
			ADD("memory.swappiness=0");
	}
#undef ADD
	*ret_n = n;
	return 0;
}

int cgroup_dirs(const struct cgroup_info *ci, const char *parent, const char *id,
		char dirs[][VMM_DIR_MAX], size_t max)
{
	const char *mounts[2];
	size_t nm = 0, n = 0;

	if (ci->version == 2) {
		mounts[nm++] = ci->v2_mount;
	} else if (ci->version == 1) {
		mounts[nm++] = ci->cpu_mount;
		if (strcmp(ci->cpu_mount, ci->memory_mount) != 0)
			mounts[nm++] = ci->memory_mount;
	}
	for (size_t i = 0; i < nm && n < max; i++) {
		int k = snprintf(dirs[n], VMM_DIR_MAX, "%s/%s/%s", mounts[i], parent, id);
		if (k < 0 || k >= VMM_DIR_MAX)
			return -ENAMETOOLONG;
		n++;
	}
	return (int)n;
}

int cgroup_parent(const char *node_id, char buf[CGROUP_PARENT_MAX])
{
	size_t n = node_id ? strlen(node_id) : 0;

	if (n > 8 || strspn(node_id ? node_id : "", "0123456789abcdef") != n)
		return -EINVAL;
	if (n == 0)
		snprintf(buf, CGROUP_PARENT_MAX, "%s", CGROUP_PARENT);
	else
		snprintf(buf, CGROUP_PARENT_MAX, "%s/%s", CGROUP_PARENT, node_id);
	return 0;
}

void cgroup_parent_remove(const struct cgroup_info *ci, const char *parent)
{
	char dirs[4][VMM_DIR_MAX];
	int n;

	if (strcmp(parent, CGROUP_PARENT) == 0)
		return;
	n = cgroup_dirs(ci, parent, "", dirs, ELEMENTSOF(dirs));
	for (int i = 0; i < n; i++)
		(void)rmdir(dirs[i]);
}

int cgroup_v2_enable(const char *v2_mount, const char *parent, struct err *err)
{
	char path[VMM_PATH_MAX + CGROUP_PARENT_MAX + 32];
	size_t n = strlen(parent);
	int r;

	for (size_t i = 0; i <= n; i++) {
		if (parent[i] != '/' && parent[i] != '\0')
			continue;
		if (snprintf(path, sizeof(path), "%s/%.*s/cgroup.subtree_control", v2_mount, (int)i,
			     parent) >= (int)sizeof(path))
			return err_set(err, -ENAMETOOLONG, "cgroup path too long");
		r = write_string_file(path, "+cpu +memory");
		if (r < 0)
			return err_set(err, -EIO, "cgroup limits cannot be applied: %s: %s", path,
				       strerror(-r));
	}
	return 0;
}

/* SIGKILL every task left in a VM's cgroup: the jailed VMM's children, or what a guest-side
 * helper left behind. Everything in that cgroup is the VM's (cgroup.kill where the kernel has
 * it, else each pid of cgroup.procs). */
static void cgroup_kill_all(const char *dir)
{
	char p[4200], *procs = NULL;

	snprintf(p, sizeof(p), "%s/cgroup.kill", dir);
	if (write_string_file(p, "1") == 0)
		return;
	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	if (read_file_bounded(p, 64 * 1024, &procs, NULL) < 0)
		return;
	for (char *l = procs, *end; *l; l = end) {
		long pid = strtol(l, &end, 10);

		if (end == l)
			break;
		if (pid > 1)
			(void)kill((pid_t)pid, SIGKILL);
		end += strspn(end, "\n");
	}
	free(procs);
}

int cgroup_remove(const char *dir)
{
	/* A just-killed task may linger in the cgroup for a moment: retry for up to 2 s; after
	 * the first 0.5 s, kill whatever is still in it. */
	for (int i = 0; i < 200; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		if (i == 50)
			cgroup_kill_all(dir);
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	return -EBUSY;
}
