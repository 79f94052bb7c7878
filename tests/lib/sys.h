/* SPDX-License-Identifier: MIT */
/*
 * Small host-side helpers the system tests (real VMs, daemon end to end) share: a monotonic
 * clock in seconds, shell commands with and without their output, and isolate(), which moves
 * the rest of a case into its own PID and mount namespaces. Include after test.h.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
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

/* Read a small file (a control file) whole into buf, NUL-terminated; its length or -errno. */
static inline int read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

/* Write val to path in one write() (flags: extra open flags, e.g. O_NONBLOCK); 0 or -errno. */
static inline int write_str(const char *path, const char *val, int flags)
{
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* VmRSS of pid in KiB, 0 when unknown. */
static inline long proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
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
