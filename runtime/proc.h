/* SPDX-License-Identifier: MIT */
/*
 * runtime/proc.h: the VMM process handle both backends use (runtime/proc.c). A handle names a
 * process by pid + start time and holds a pidfd once opened, so no signal ever reaches a
 * recycled pid. Private to runtime/; included by backend.h, which defines the structs.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct cgroup_info;
struct err;
struct vmm_exit;
struct vmm_handle;
struct vmm_launch;
struct vmm_ops;

/* Initialise a handle with no process. */
void vmm_handle_init(struct vmm_handle *h);
/* Field 22 (starttime) of /proc/<pid>/stat. */
int vmm_proc_start_time(pid_t pid, uint64_t *ret);
/* Open a pidfd for h->pid and check its start time against h->start_time (0: take the current
 * one). -ESRCH if gone or recycled. */
int vmm_handle_open_pidfd(struct vmm_handle *h);
/* The child pid just spawned: store it in h (and *pid_out when not NULL, for a kill during the
 * launch), open its pidfd, record its start time. -errno when no pidfd could be opened. */
int vmm_handle_track_child(struct vmm_handle *h, pid_t pid, atomic_int *pid_out);
/* The process named by a pid file (a decimal pid, one line) with its pidfd open. -ESRCH when
 * the file or the process is missing, -EINVAL for a malformed file. */
int vmm_handle_from_pidfile(struct vmm_handle *h, const char *path);
/* Has the process ended (its pidfd readable)? False without a pidfd. */
bool vmm_handle_ended(const struct vmm_handle *h);
/* Collect the exit status once h->pidfd is readable (waitid for children; for others only
 * that it ended). Closes the pidfd. */
int vmm_handle_reap(struct vmm_handle *h, struct vmm_exit *ret);
/* SIGKILL through the pidfd (never a recycled pid); -ESRCH without one. */
int vmm_handle_kill(struct vmm_handle *h);
/* SIGKILL, wait up to timeout_ms for the end, reap. The pidfd is closed either way. */
void vmm_handle_kill_wait(struct vmm_handle *h, int timeout_ms);
/* The kill op of both backends: vmm_handle_kill. */
int vmm_kill_op(void *priv, struct vmm_handle *h);

/* Milliseconds on CLOCK_MONOTONIC since t0. */
long vmm_ms_since(const struct timespec *t0);
/* The last size-1 bytes of the file at path (a console or log file), trailing newlines and
 * blanks stripped; "" when path is NULL or unreadable. */
void vmm_file_tail(const char *path, char *buf, size_t size);
/* "exit code N", "killed by signal N (NAME)" or "exit status unknown". */
void vmm_exit_reason(const struct vmm_exit *ex, char *buf, size_t size);

/* How a backend words a VMM that exited during a call: "<what>: <vmm> exited (<reason>): <tail>".
 */
struct vmm_exit_text {
	const char *vmm; /* "the VMM", "QEMU" */
	/* the reason; NULL: vmm_exit_reason */
	void (*reason)(const struct vmm_exit *ex, char *buf, size_t size);
	/* one line of the log file at path for the message ("" none) */
	void (*tail)(const char *path, char *buf, size_t size);
};

/* Is the VMM gone? If so reap it and describe why into err (-EIO); 0 while it runs. */
int vmm_check_alive(struct vmm_handle *h, const struct vmm_exit_text *t, const char *log,
		    const char *what, struct err *err);

/* A bounded wait of a launch for something of the VMM (its socket, its running state). */
struct vmm_wait {
	const char *what; /* for "<what>: <vmm> exited" */
	const char *late; /* the error at the deadline, " within N ms" appended */
	long timeout_ms;
	long step_ms;
	/* > 0 done, 0 not yet, < 0 failed (err set) */
	int (*ready)(struct vmm_handle *h, void *ud, struct err *err);
	void *ud;
};

/* Poll w->ready every w->step_ms until it is done or fails, the VMM exits, the launch is
 * cancelled (p->cancel) or w->timeout_ms pass. */
int vmm_wait_for(struct vmm_handle *h, const struct vmm_launch *p, const struct vmm_exit_text *t,
		 const struct vmm_wait *w, struct err *err);

/* A backend's adopt: h comes from a record; check that h->pid still is the VMM (start time),
 * open its pidfd, and ask ops->query that it answers (else it is no usable VMM). -ESRCH with
 * "<vmm> (pid N) is gone" when it is not there; the query's error prefixed with
 * "re-adopting <vmm> pid N: " when it does not answer. */
int vmm_adopt(const struct vmm_ops *ops, void *priv, struct vmm_handle *h, const char *vmm,
	      struct err *err);

/* A handle without host dirs (a daemon killed mid-start, a leftover being reaped): the VM's dir
 * <base>/<name> and its cgroups under cg_parent follow from the name. */
void vmm_handle_dirs_from_name(struct vmm_handle *h, const char *base, const char *name,
			       const struct cgroup_info *cg, const char *cg_parent);
/* Remove the handle's cgroups and its dir (its processes must be gone) and forget them.
 * Missing pieces are not errors. */
void vmm_handle_remove_dirs(struct vmm_handle *h, const char *name);
/* A backend's host dir of a VM is marked as ours by this file (holding the VM's name); the
 * reaper touches no dir without it. */
#define VMM_MARK ".mvmfs"
/* Write <dir>/VMM_MARK. */
int vmm_mark_dir(const char *dir, const char *name, struct err *err);
/* At start and every reap pass: call reap(priv, name) for each dir <base>/<name> that holds the
 * mark and whose (valid) VM name is_known rejects. Returns how many. */
int vmm_reap_marked_dirs(const char *base, bool (*is_known)(const char *name, void *ud), void *ud,
			 void (*reap)(void *priv, const char *name), void *priv);
