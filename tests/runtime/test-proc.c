/* SPDX-License-Identifier: MIT */
/* runtime/proc.c, the process handle both backends use: identity from /proc (a recycled pid is
 * not ours), pid files, a child's end and the words for it, the bounded waits of a launch
 * (ready, exited, cancelled, late), SIGKILL through the pidfd, and a handle's host dirs. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "test.h"

static void test_identity(void)
{
	struct vmm_handle h;
	uint64_t st = 0;

	ASSERT_OK(vmm_proc_start_time(getpid(), &st));
	ASSERT_TRUE(st > 0);
	vmm_handle_init(&h);
	h.pid = getpid();
	ASSERT_OK(vmm_handle_open_pidfd(&h));
	ASSERT_EQ(h.start_time, st);
	close(h.pidfd);
	/* A recycled pid (other start time) is not ours. */
	vmm_handle_init(&h);
	h.pid = getpid();
	h.start_time = st + 1;
	ASSERT_ERRNO(vmm_handle_open_pidfd(&h), ESRCH);
	ASSERT_ERRNO(vmm_proc_start_time(0x3fffffff, &st), ESRCH);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ASSERT_TRUE(f != NULL);
	fputs(text, f);
	fclose(f);
}

static void test_pidfile(void)
{
	char d[] = "/tmp/test-proc-XXXXXX", path[64], text[32];
	struct vmm_handle h;

	ASSERT_TRUE(mkdtemp(d) != NULL);
	snprintf(path, sizeof(path), "%s/pid", d);
	vmm_handle_init(&h);
	ASSERT_ERRNO(vmm_handle_from_pidfile(&h, path), ESRCH); /* no file */
	for (const char *const *bad = (const char *const[]){"", "x\n", "1\n", "-5\n", "12 3\n",
							    "99999999999\n", NULL};
	     *bad; bad++) {
		write_text(path, *bad);
		ASSERT_ERRNO(vmm_handle_from_pidfile(&h, path), EINVAL);
		ASSERT_EQ(h.pidfd, -EBADF);
	}
	write_text(path, "1073741823\n"); /* no such process */
	ASSERT_ERRNO(vmm_handle_from_pidfile(&h, path), ESRCH);
	snprintf(text, sizeof(text), "%d\n", (int)getpid());
	write_text(path, text);
	ASSERT_OK(vmm_handle_from_pidfile(&h, path));
	ASSERT_EQ(h.pid, getpid());
	ASSERT_TRUE(h.pidfd >= 0 && h.start_time > 0);
	ASSERT_FALSE(vmm_handle_ended(&h));
	close(h.pidfd);
	unlink(path);
	rmdir(d);
}

static void test_file_tail(void)
{
	char d[] = "/tmp/test-proc-XXXXXX", path[64], buf[8];

	ASSERT_TRUE(mkdtemp(d) != NULL);
	snprintf(path, sizeof(path), "%s/log", d);
	vmm_file_tail(NULL, buf, sizeof(buf));
	ASSERT_STREQ(buf, "");
	vmm_file_tail(path, buf, sizeof(buf)); /* missing */
	ASSERT_STREQ(buf, "");
	write_text(path, "");
	vmm_file_tail(path, buf, sizeof(buf));
	ASSERT_STREQ(buf, "");
	write_text(path, "abc \r\n\n");
	vmm_file_tail(path, buf, sizeof(buf));
	ASSERT_STREQ(buf, "abc");
	write_text(path, "first line\nlast one\n"); /* the last size-1 bytes, then stripped */
	vmm_file_tail(path, buf, sizeof(buf));
	ASSERT_STREQ(buf, "st one");
	unlink(path);
	rmdir(d);
}

static void test_exit_reason(void)
{
	char buf[64];

	vmm_exit_reason(&(struct vmm_exit){.known = false}, buf, sizeof(buf));
	ASSERT_STREQ(buf, "exit status unknown");
	vmm_exit_reason(&(struct vmm_exit){.known = true, .code = 3}, buf, sizeof(buf));
	ASSERT_STREQ(buf, "exit code 3");
	vmm_exit_reason(&(struct vmm_exit){.known = true, .signal = SIGKILL}, buf, sizeof(buf));
	ASSERT_STREQ(buf, "killed by signal 9 (Killed)");
}

/* A child that writes a line to log (when not NULL), then sleeps ms and exits with code. */
static pid_t child(const char *log, int ms, int code)
{
	pid_t pid = fork();

	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		if (log) {
			int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			(void)!write(fd, "boom: no kernel\n", 16);
			close(fd);
		}
		usleep((useconds_t)ms * 1000);
		_exit(code);
	}
	return pid;
}

static void last_line(const char *path, char *buf, size_t size)
{
	vmm_file_tail(path, buf, size);
}

static const struct vmm_exit_text text = {.vmm = "the test VMM", .tail = last_line};

static int never(struct vmm_handle *h, void *ud, struct err *err)
{
	(*(int *)ud)++;
	return 0;
}

static int after_three(struct vmm_handle *h, void *ud, struct err *err)
{
	return ++*(int *)ud >= 3;
}

static int fails(struct vmm_handle *h, void *ud, struct err *err)
{
	return err_set(err, -EPROTO, "bad answer");
}

static void test_wait(void)
{
	char d[] = "/tmp/test-proc-XXXXXX", log[64];
	atomic_int pid_out = 0;
	atomic_bool cancel = false;
	struct vmm_launch p = {.cancel = &cancel};
	struct vmm_handle h;
	struct vmm_wait w = {
		.what = "waiting", .late = "not there", .timeout_ms = 100, .step_ms = 5};
	struct err err = {};
	int calls = 0;

	ASSERT_TRUE(mkdtemp(d) != NULL);
	snprintf(log, sizeof(log), "%s/console", d);
	p.console_log = log;

	/* Ready on the third poll; late; failed; cancelled: the VMM runs on. */
	vmm_handle_init(&h);
	ASSERT_OK(vmm_handle_track_child(&h, child(NULL, 10000, 0), &pid_out));
	ASSERT_EQ(atomic_load(&pid_out), h.pid);
	ASSERT_TRUE(h.is_child && h.pidfd >= 0 && h.start_time > 0);
	w.ready = after_three;
	w.ud = &calls;
	ASSERT_OK(vmm_wait_for(&h, &p, &text, &w, &err));
	ASSERT_EQ(calls, 3);
	w.ready = never;
	ASSERT_ERRNO(vmm_wait_for(&h, &p, &text, &w, &err), ETIMEDOUT);
	ASSERT_STREQ(err.msg, "not there within 100 ms");
	ASSERT_TRUE(calls > 3);
	w.ready = fails;
	ASSERT_ERRNO(vmm_wait_for(&h, &p, &text, &w, &err), EPROTO);
	atomic_store(&cancel, true);
	w.ready = never;
	ASSERT_ERRNO(vmm_wait_for(&h, &p, &text, &w, &err), ECANCELED);
	ASSERT_STREQ(err.msg, "start cancelled");
	ASSERT_FALSE(vmm_handle_ended(&h));
	ASSERT_OK(vmm_check_alive(&h, &text, log, "x", &err));

	/* SIGKILL through the pidfd, waited for and reaped. */
	vmm_handle_kill_wait(&h, 2000);
	ASSERT_EQ(h.pidfd, -EBADF);
	ASSERT_EQ(h.pid, 0);
	ASSERT_ERRNO(vmm_handle_kill(&h), ESRCH);
	ASSERT_ERRNO(vmm_kill_op(NULL, &h), ESRCH);

	/* A VMM that exits during the wait: reaped, the reason and the log's tail in err. */
	atomic_store(&cancel, false);
	w.timeout_ms = 5000;
	vmm_handle_init(&h);
	ASSERT_OK(vmm_handle_track_child(&h, child(log, 50, 3), NULL));
	ASSERT_ERRNO(vmm_wait_for(&h, &p, &text, &w, &err), EIO);
	ASSERT_STREQ(err.msg, "waiting: the test VMM exited (exit code 3): boom: no kernel");
	ASSERT_EQ(h.pidfd, -EBADF);
	ASSERT_EQ(h.pid, 0);
	ASSERT_EQ(waitpid(-1, NULL, WNOHANG), -1); /* no zombie left */
	unlink(log);
	rmdir(d);
}

static int query_answer; /* what fake_query says: 0 running, 1 gone, < 0 an error */

static int fake_query(void *priv, struct vmm_handle *h, enum vmm_run_state *ret, struct err *err)
{
	ASSERT_TRUE(h->pidfd >= 0 && !h->is_child);
	if (query_answer < 0)
		return err_set(err, query_answer, "GET /: no answer");
	*ret = query_answer ? VMM_RUN_GONE : VMM_RUN_RUNNING;
	return 0;
}

static void test_adopt(void)
{
	static const struct vmm_ops ops = {.name = "fake", .query = fake_query};
	struct vmm_handle h;
	struct err err = {};
	char want[128];
	uint64_t st;

	ASSERT_OK(vmm_proc_start_time(getpid(), &st));
	vmm_handle_init(&h);
	h.pid = getpid();
	h.start_time = st;
	h.is_child = true;
	ASSERT_OK(vmm_adopt(&ops, NULL, &h, "the VMM", &err));
	ASSERT_FALSE(h.is_child);
	ASSERT_TRUE(h.pidfd >= 0);
	h.pidfd = safe_close(h.pidfd);
	/* It does not answer: the query's error, prefixed. */
	query_answer = -ECONNREFUSED;
	ASSERT_ERRNO(vmm_adopt(&ops, NULL, &h, "QEMU", &err), ECONNREFUSED);
	snprintf(want, sizeof(want), "re-adopting QEMU pid %d: GET /: no answer", (int)h.pid);
	ASSERT_STREQ(err.msg, want);
	h.pidfd = safe_close(h.pidfd);
	/* It says it is gone, or the pid is another process now. */
	query_answer = 1;
	ASSERT_ERRNO(vmm_adopt(&ops, NULL, &h, "QEMU", &err), ESRCH);
	h.pidfd = safe_close(h.pidfd);
	query_answer = 0;
	h.start_time = st + 1;
	ASSERT_ERRNO(vmm_adopt(&ops, NULL, &h, "QEMU", &err), ESRCH);
	ASSERT_TRUE(strstr(err.msg, "QEMU (pid ") && strstr(err.msg, ") is gone"));
	ASSERT_EQ(h.pidfd, -EBADF);
}

static void test_dirs(void)
{
	char d[] = "/tmp/test-proc-XXXXXX", path[128];
	struct cgroup_info none = {};
	struct vmm_handle h;
	struct stat st;

	ASSERT_TRUE(mkdtemp(d) != NULL);
	vmm_handle_init(&h);
	/* No recorded dirs: they follow from the name (no cgroups without a hierarchy). */
	vmm_handle_dirs_from_name(&h, d, "web-1", &none, "mvmfs");
	snprintf(path, sizeof(path), "%s/web-1", d);
	ASSERT_STREQ(h.jail_dir, path);
	ASSERT_STREQ(h.cgroup[0], "");
	/* Recorded dirs are kept. */
	snprintf(h.jail_dir, sizeof(h.jail_dir), "%s/other", d);
	vmm_handle_dirs_from_name(&h, d, "web-1", &none, "mvmfs");
	ASSERT_TRUE(strstr(h.jail_dir, "/other") != NULL);
	snprintf(path, sizeof(path), "%s/other/root", d);
	ASSERT_OK(mkdir_p(path, 0700));
	write_text(strcat(path, "/f"), "x");
	/* A cgroup dir that is an ordinary empty dir stands in for one (rmdir). */
	snprintf(h.cgroup[0], sizeof(h.cgroup[0]), "%s/cg", d);
	ASSERT_TRUE(mkdir(h.cgroup[0], 0755) == 0);
	vmm_handle_remove_dirs(&h, "web-1");
	ASSERT_STREQ(h.jail_dir, "");
	ASSERT_STREQ(h.cgroup[0], "");
	snprintf(path, sizeof(path), "%s/other", d);
	ASSERT_TRUE(stat(path, &st) < 0 && errno == ENOENT);
	snprintf(path, sizeof(path), "%s/cg", d);
	ASSERT_TRUE(stat(path, &st) < 0 && errno == ENOENT);
	vmm_handle_remove_dirs(&h, "web-1"); /* idempotent */
	ASSERT_TRUE(rmdir(d) == 0);
}

static bool known_c(const char *name, void *ud)
{
	return strcmp(name, "c") == 0;
}

static void reap_record(void *priv, const char *name)
{
	char *seen = priv;

	strcat(seen, name);
	strcat(seen, " ");
}

/* Only marked dirs with a valid, unknown VM name are reaped. */
static void test_reap_marked(void)
{
	char d[] = "/tmp/test-proc-XXXXXX", path[128], seen[64] = "";
	struct err err = {};

	ASSERT_TRUE(mkdtemp(d) != NULL);
	for (const char *const *n = (const char *const[]){"a", "b", "c", ".x", "bad_name", NULL};
	     *n; n++) {
		snprintf(path, sizeof(path), "%s/%s", d, *n);
		ASSERT_TRUE(mkdir(path, 0700) == 0);
		if (strcmp(*n, "b") != 0)
			ASSERT_OK(vmm_mark_dir(path, *n, &err));
	}
	snprintf(path, sizeof(path), "%s/a/%s", d, VMM_MARK);
	write_text(path, "a"); /* overwritten as it would be by a launch */
	ASSERT_EQ(vmm_reap_marked_dirs(d, known_c, NULL, reap_record, seen), 1);
	ASSERT_STREQ(seen, "a ");
	ASSERT_EQ(vmm_reap_marked_dirs("/nonexistent", known_c, NULL, reap_record, seen), 0);
	ASSERT_ERRNO(vmm_mark_dir("/nonexistent/x", "x", &err), ENOENT);
	ASSERT_TRUE(strstr(err.msg, "marking /nonexistent/x: ") == err.msg);
	ASSERT_OK(rm_rf(d));
}

TEST_MAIN(TEST(test_identity), TEST(test_pidfile), TEST(test_file_tail), TEST(test_exit_reason),
	  TEST(test_wait), TEST(test_adopt), TEST(test_dirs), TEST(test_reap_marked))
