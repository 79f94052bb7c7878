/* SPDX-License-Identifier: MIT */
/*
 * Small host-side helpers the system tests (real VMs, daemon end to end) share: a monotonic
 * clock in seconds, shell commands with and without their output, and isolate(), which moves
 * the rest of a case into its own PID and mount namespaces. Include after test.h.
 */
#pragma once

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "test.h"

/* Seconds on the monotonic clock. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run a shell command; its exit status, -1 when it did not exit. */
static inline int sh(const char *fmt, ...) _printf_(1, 2);
static inline int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run a command, its stdout (trimmed to size) in out; returns the exit status. */
static inline int sh_out(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);
static inline int sh_out(char *out, size_t size, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	size_t n;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether prog is on PATH. */
static inline bool have(const char *prog)
{
	return sh("command -v %s >/dev/null 2>&1", prog) == 0;
}

/* Run the rest of the case as PID 1 of new PID and mount namespaces (plus extra_flags, e.g.
 * CLONE_NEWNET) with its own /proc, so a failing case takes every process it started
 * (registry, daemon, QEMU) down with it. The calling process only relays the exit status. */
static inline void isolate(int extra_flags)
{
	int status;
	pid_t pid;

	ASSERT_OK(unshare(CLONE_NEWPID | CLONE_NEWNS | extra_flags));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
			TEST_FAIL("isolate: %s", strerror(errno));
		return;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	fflush(stdout);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
