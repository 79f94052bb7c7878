/* SPDX-License-Identifier: MIT */
/*
 * The VMM process handle both backends use: identity (pid + start time from /proc/<pid>/stat,
 * a pidfd that pins it), the end of the process (poll, reap, the words for an exit), SIGKILL
 * through the pidfd, and the bounded waits of a launch.
 *
 * A VMM we spawned is our child and waitid(P_PIDFD) yields its exit status. After a daemon
 * restart it is no longer our child; it is re-adopted by pid + start time and its exit status
 * is then unknown (the reason says so).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "parse.h"

void vmm_handle_init(struct vmm_handle *h)
{
	memset(h, 0, sizeof(*h));
	h->pidfd = -EBADF;
}

int vmm_proc_start_time(pid_t pid, uint64_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *p, *save = NULL;
	uint64_t v;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file_bounded(path, 4096, &buf, NULL) < 0)
		return -ESRCH;
	/* comm may contain spaces and ')': fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	p++;
	/* After ")" come fields 3.. ; starttime is field 22, i.e. the 20th token. */
	for (int i = 3; i <= 22; i++) {
		char *tok = strtok_r(i == 3 ? p : NULL, " ", &save);
		if (!tok)
			return -EINVAL;
		if (i == 22) {
			if (parse_u64(tok, &v) < 0)
				return -EINVAL;
			*ret = v;
			return 0;
		}
	}
	return -EINVAL;
}

int vmm_handle_open_pidfd(struct vmm_handle *h)
{
	uint64_t st;
	int fd;

	if (h->pid <= 0)
		return -ESRCH;
	fd = (int)syscall(SYS_pidfd_open, h->pid, 0);
	if (fd < 0)
		return -errno == -EINVAL ? -ESRCH : -errno;
	/* Checked after opening: a pidfd pins the pid, so a match now means it is ours. */
	if (vmm_proc_start_time(h->pid, &st) < 0 || (h->start_time && st != h->start_time)) {
		close(fd);
		return -ESRCH;
	}
	h->start_time = st;
	safe_close(h->pidfd);
	h->pidfd = fd;
	return 0;
}

int vmm_handle_track_child(struct vmm_handle *h, pid_t pid, atomic_int *pid_out)
{
	h->pid = pid;
	h->is_child = true;
	if (pid_out)
		atomic_store(pid_out, (int)pid);
	h->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (h->pidfd < 0)
		return -errno;
	/* A child that already ended has no start time to read: it is reaped as it is. */
	(void)vmm_proc_start_time(pid, &h->start_time);
	return 0;
}

int vmm_handle_from_pidfile(struct vmm_handle *h, const char *path)
{
	_cleanup_free_ char *text = NULL;
	uint32_t pid;

	if (read_file_bounded(path, 64, &text, NULL) < 0)
		return -ESRCH;
	text[strcspn(text, "\n")] = '\0';
	if (parse_u32(text, &pid) < 0 || pid <= 1)
		return -EINVAL;
	h->pid = (pid_t)pid;
	return vmm_handle_open_pidfd(h);
}

bool vmm_handle_ended(const struct vmm_handle *h)
{
	struct pollfd pfd = {.fd = h->pidfd, .events = POLLIN};

	return h->pidfd >= 0 && poll(&pfd, 1, 0) > 0;
}

int vmm_handle_reap(struct vmm_handle *h, struct vmm_exit *ret)
{
	struct vmm_exit ex = {};
	siginfo_t si = {};

	/* Only a child's status can be collected (ECHILD otherwise): re-adopted VMMs that are
	 * not our children end with an unknown status. */
	if (h->pidfd >= 0 &&
	    waitid((idtype_t)P_PIDFD, (id_t)h->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid) {
		ex.known = true;
		if (si.si_code == CLD_EXITED)
			ex.code = si.si_status;
		else
			ex.signal = si.si_status;
	}
	h->pidfd = safe_close(h->pidfd);
	h->pid = 0;
	h->is_child = false;
	*ret = ex;
	return 0;
}

int vmm_handle_kill(struct vmm_handle *h)
{
	if (h->pidfd < 0)
		return -ESRCH;
	return RET_NERRNO((int)syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, NULL, 0));
}

void vmm_handle_kill_wait(struct vmm_handle *h, int timeout_ms)
{
	struct pollfd pfd = {.fd = h->pidfd, .events = POLLIN};
	struct vmm_exit ex;

	if (h->pidfd < 0)
		return;
	(void)vmm_handle_kill(h);
	(void)poll(&pfd, 1, timeout_ms);
	vmm_handle_reap(h, &ex);
}

int vmm_kill_op(void *priv, struct vmm_handle *h)
{
	(void)priv;
	return vmm_handle_kill(h);
}

long vmm_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

void vmm_file_tail(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = -EBADF;
	ssize_t n;
	off_t end;

	if (!size)
		return;
	buf[0] = '\0';
	if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end <= 0)
		return;
	n = pread(fd, buf, size - 1, end > (off_t)size - 1 ? end - (off_t)size + 1 : 0);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
}

void vmm_exit_reason(const struct vmm_exit *ex, char *buf, size_t size)
{
	if (!ex->known)
		snprintf(buf, size, "exit status unknown");
	else if (ex->signal)
		snprintf(buf, size, "killed by signal %d (%s)", ex->signal, strsignal(ex->signal));
	else
		snprintf(buf, size, "exit code %d", ex->code);
}

int vmm_check_alive(struct vmm_handle *h, const struct vmm_exit_text *t, const char *log,
		    const char *what, struct err *err)
{
	struct vmm_exit ex;
	char reason[64], tail[300];

	if (!vmm_handle_ended(h))
		return 0;
	vmm_handle_reap(h, &ex);
	(t->reason ? t->reason : vmm_exit_reason)(&ex, reason, sizeof(reason));
	t->tail(log, tail, sizeof(tail));
	return err_set(err, -EIO, "%s: %s exited (%s)%s%s", what, t->vmm, reason,
		       tail[0] ? ": " : "", tail);
}

int vmm_wait_for(struct vmm_handle *h, const struct vmm_launch *p, const struct vmm_exit_text *t,
		 const struct vmm_wait *w, struct err *err)
{
	struct timespec t0;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		r = w->ready(h, w->ud, err);
		if (r != 0)
			return r < 0 ? r : 0;
		r = vmm_check_alive(h, t, p->console_log, w->what, err);
		if (r < 0)
			return r;
		if (p->cancel && atomic_load(p->cancel))
			return err_set(err, -ECANCELED, "start cancelled");
		if (vmm_ms_since(&t0) > w->timeout_ms)
			return err_set(err, -ETIMEDOUT, "%s within %ld ms", w->late, w->timeout_ms);
		nanosleep(&(struct timespec){.tv_nsec = w->step_ms * 1000 * 1000}, NULL);
	}
}

int vmm_adopt(const struct vmm_ops *ops, void *priv, struct vmm_handle *h, const char *vmm,
	      struct err *err)
{
	enum vmm_run_state st = VMM_RUN_UNKNOWN;
	int r;

	h->is_child = false;
	if (vmm_handle_open_pidfd(h) < 0)
		return err_set(err, -ESRCH, "%s (pid %d) is gone", vmm, (int)h->pid);
	r = ops->query(priv, h, &st, err);
	if (r < 0)
		return err_prefix(err, "re-adopting %s pid %d: ", vmm, (int)h->pid);
	if (st == VMM_RUN_GONE)
		return err_set(err, -ESRCH, "%s (pid %d) is gone", vmm, (int)h->pid);
	return 0;
}

void vmm_handle_dirs_from_name(struct vmm_handle *h, const char *base, const char *name,
			       const struct cgroup_info *cg, const char *cg_parent)
{
	bool any_cg = false;

	if (!h->jail_dir[0] && snprintf(h->jail_dir, sizeof(h->jail_dir), "%s/%s", base, name) >=
				       (int)sizeof(h->jail_dir))
		h->jail_dir[0] = '\0';
	for (size_t i = 0; i < ELEMENTSOF(h->cgroup); i++)
		any_cg |= h->cgroup[i][0] != '\0';
	if (!any_cg)
		(void)cgroup_dirs(cg, cg_parent, name, h->cgroup, ELEMENTSOF(h->cgroup));
}

void vmm_handle_remove_dirs(struct vmm_handle *h, const char *name)
{
	int r;

	for (size_t i = 0; i < ELEMENTSOF(h->cgroup); i++) {
		if (!h->cgroup[i][0])
			continue;
		r = cgroup_remove(h->cgroup[i]);
		if (r < 0)
			log_debug_errno(r, "%s: removing cgroup %s", name, h->cgroup[i]);
		h->cgroup[i][0] = '\0';
	}
	if (h->jail_dir[0]) {
		r = rm_rf(h->jail_dir);
		if (r < 0 && r != -ENOENT)
			log_debug_errno(r, "%s: removing %s", name, h->jail_dir);
		h->jail_dir[0] = '\0';
	}
}

int vmm_mark_dir(const char *dir, const char *name, struct err *err)
{
	char path[VMM_PATH_MAX + 16];
	int r;

	if (snprintf(path, sizeof(path), "%s/%s", dir, VMM_MARK) >= (int)sizeof(path))
		return err_set(err, -ENAMETOOLONG, "marking %s: path too long", dir);
	r = write_file_atomic(path, name, strlen(name), 0600);
	if (r < 0)
		return err_set(err, r, "marking %s: %s", dir, strerror(-r));
	return 0;
}

int vmm_reap_marked_dirs(const char *base, bool (*is_known)(const char *name, void *ud), void *ud,
			 void (*reap)(void *priv, const char *name), void *priv)
{
	_cleanup_closedir_ DIR *d = opendir(base);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d))) {
		char path[VMM_PATH_MAX + 300];

		if (de->d_name[0] == '.' || !vmm_id_is_valid(de->d_name))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s/%s", base, de->d_name, VMM_MARK) >=
			    (int)sizeof(path) ||
		    access(path, F_OK) < 0 || is_known(de->d_name, ud))
			continue;
		reap(priv, de->d_name);
		n++;
	}
	return n;
}
