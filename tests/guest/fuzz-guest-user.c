/* SPDX-License-Identifier: MIT */
/* The agent resolving the image's user (OCI config "user") against the image's own /etc/passwd
 * and /etc/group: all three come from the registry. Input: spec NUL passwd NUL group.
 * Invariants: at most GROUPS_MAX (64) supplementary groups, home NUL-terminated. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* app.c logs through the agent's channel; here nowhere. */
void agent_log(const char *fmt, ...)
{
	(void)fmt;
}

static char root[64];

static void cleanup(void)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/etc/passwd", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/etc/group", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/etc", root);
	rmdir(p);
	rmdir(root);
}

static void put(const char *name, const uint8_t *d, size_t n)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/etc/%s", root, name);
	if (!d) {
		unlink(p); /* a missing file is a case too */
		return;
	}
	f = fopen(p, "we");
	if (!f)
		abort();
	if (n && fwrite(d, 1, n, f) != n)
		abort();
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char spec[300], home[256], p[128];
	const uint8_t *pw, *gr, *end = data + size;
	gid_t groups[64];
	int ngroups = -1;
	uid_t uid;
	gid_t gid;
	size_t n;

	if (!root[0]) {
		snprintf(root, sizeof(root), "/tmp/fuzz-guest-user.XXXXXX");
		if (!mkdtemp(root))
			abort();
		snprintf(p, sizeof(p), "%s/etc", root);
		if (mkdir(p, 0755) < 0)
			abort();
		atexit(cleanup);
	}
	if (size > 65536)
		return 0;
	pw = memchr(data, '\0', size);
	n = pw ? (size_t)(pw - data) : size;
	if (n >= sizeof(spec))
		return 0;
	memcpy(spec, data, n);
	spec[n] = '\0';
	if (pw)
		pw++;
	gr = pw ? memchr(pw, '\0', (size_t)(end - pw)) : NULL;
	put("passwd", pw, gr ? (size_t)(gr - pw) : pw ? (size_t)(end - pw) : 0);
	if (gr)
		gr++;
	put("group", gr, gr ? (size_t)(end - gr) : 0);

	memset(home, 'x', sizeof(home));
	if (user_resolve(root, spec, &uid, &gid, groups, &ngroups, home, sizeof(home)) == 0) {
		if (ngroups < 0 || ngroups > 64 || !memchr(home, '\0', sizeof(home)))
			__builtin_trap();
	}
	return 0;
}
