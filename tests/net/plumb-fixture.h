/* SPDX-License-Identifier: MIT */
/*
 * Fixture for the host plumbing tests and the benchmark: a private network namespace and a
 * private mount namespace with a tmpfs on /run/netns, so nothing on the host is touched.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net.h"

/* 0 or a reason why the machine cannot run these tests. */
static inline const char *plumb_enter_private(void)
{
	if (geteuid() != 0)
		return "needs root";
	if (access("/dev/net/tun", R_OK | W_OK) < 0)
		return "no /dev/net/tun";
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0)
		return "unshare(CLONE_NEWNET|CLONE_NEWNS) failed";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return "cannot make / private";
	(void)mkdir("/run", 0755);
	(void)mkdir("/run/netns", 0755);
	if (mount("tmpfs", "/run/netns", "tmpfs", 0, "mode=0755") < 0)
		return "cannot mount a tmpfs on /run/netns";
	/* Our own /sys for this netns, so /sys/class/net shows its links. */
	if (mount("sysfs", "/sys", "sysfs", 0, NULL) < 0)
		return "cannot mount sysfs";
	if (system("ip link set lo up") != 0)
		return "ip link set lo up failed";
	return NULL;
}

/* Run a shell command (in the caller's namespaces); its exit status. */
static inline int plumb_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Output of a shell command (bounded, NUL-terminated) into buf; exit status. */
static inline int plumb_sh_out(char *buf, size_t size, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *f;
	size_t n;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	st = pclose(f);
	return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline int plumb_ctx(const char *state_dir, struct net_ctx **ret, struct err *err)
{
	struct net_config cfg = {
		.state_dir = state_dir,
		.bridge = "mvmbr0",
		.ipv6_prefix = "fd42:1::/64",
		.mtu = 1500,
	};

	return net_ctx_new(&cfg, ret, err);
}
