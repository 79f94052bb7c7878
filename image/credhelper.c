/* SPDX-License-Identifier: MIT */
/*
 * Docker credential helpers: "docker-credential-<name> get", the server name on stdin, a JSON
 * answer on stdout (docker/docker-credential-helpers' protocol). The helper is found in PATH by
 * us and exec'd directly (no shell), in its own session, with stdin, stdout and stderr
 * (/dev/null) as its only open files; its answer is bounded and the whole exchange has a
 * deadline, after which the helper's process group is killed. What a failing helper prints is
 * its error message and goes into ours (sanitised, truncated); a successful answer never does,
 * even when it does not parse, since it holds the secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "fileio.h"

/* What helpers print when they hold nothing for the server (credentials.ErrCredentialsNotFound). */
#define NOT_FOUND "credentials not found in native keychain"

bool img_cred_helper_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '.' || name[i] == '_' ||
		      name[i] == '-'))
			return false;
	return true;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The child, between fork and exec: only async-signal-safe calls. */
static _Noreturn void child(const char *exe, int in, int out, int null_fd)
{
	char *const argv[] = {(char *)exe, (char *)"get", NULL};
	sigset_t all;

	/* Copies above 2 first, so no dup2 below clobbers another source or is a no-op that
	 * keeps FD_CLOEXEC (when the parent ran with 0-2 closed). */
	int a = fcntl(in, F_DUPFD, 3), b = fcntl(out, F_DUPFD, 3), c = fcntl(null_fd, F_DUPFD, 3);

	(void)setsid();
	if (a < 0 || b < 0 || c < 0 || dup2(a, 0) < 0 || dup2(b, 1) < 0 || dup2(c, 2) < 0)
		_exit(127);
	(void)syscall(SYS_close_range, 3U, ~0U, 0U);
	sigemptyset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	execve(exe, argv, environ);
	_exit(127);
}

/* Wait for pid until deadline, then kill its group and reap it. -ETIMEDOUT if killed. */
static int reap(pid_t pid, long long deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= deadline) {
			(void)kill(-pid, SIGKILL);
			(void)kill(pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};
		(void)nanosleep(&ts, NULL);
	}
}

/* Send server on in (then close it) and read out to EOF, bounded, until deadline. */
static int exchange(int in, int out, const char *server, char *buf, size_t size, size_t *len,
		    long long deadline)
{
	size_t sent = 0, want = strlen(server);
	bool too_big = false;

	*len = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = out, .events = POLLIN}, {.fd = in, .events = POLLOUT}};
		long long left = deadline - now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(p, in >= 0 ? 2 : 1, (int)MIN(left, 1000LL));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		if (in >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t w = (p[1].revents & POLLOUT)
					    ? send(in, server + sent, want - sent, MSG_NOSIGNAL)
					    : -1;
			if (w > 0)
				sent += (size_t)w;
			if (w < 0 || sent == want) {
				(void)shutdown(in, SHUT_WR);
				in = -1; /* a helper that stops reading early is its own business */
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			char tmp[4096];
			ssize_t r = read(out, tmp, sizeof(tmp));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0)
				return too_big ? -EFBIG : 0;
			if (*len + (size_t)r > size - 1)
				too_big = true; /* drain to EOF, keep nothing more */
			else {
				memcpy(buf + *len, tmp, (size_t)r);
				*len += (size_t)r;
			}
			explicit_bzero(tmp, sizeof(tmp));
		}
	}
}

/* The first line of a failing helper's output, printable and short, for our message. */
static void error_text(const char *buf, size_t len, char *out, size_t size)
{
	size_t n = 0;

	while (n < len && buf[n] != '\n' && n < 200)
		n++;
	img_sanitize(buf, n, out, size);
}

/* What the helper's run means: credentials, nothing stored (-ENOENT: anonymous), or an error
 * whose message quotes the helper's first line, never its secrets. */
static int judge(const char *prog, int r, int status, const char *buf, size_t len,
		 unsigned timeout_ms, struct img_creds *ret, struct err *err)
{
	char msg[256];

	if (r == -ETIMEDOUT)
		return err_set(err, -ETIMEDOUT, "credential helper %s did not answer within %u ms",
			       prog, timeout_ms);
	if (r == -EFBIG)
		return err_set(err, -EIO, "credential helper %s answered more than %u bytes", prog,
			       IMG_CRED_HELPER_OUTPUT_MAX);
	if (r < 0)
		return err_set(err, r, "credential helper %s: %s", prog, strerror(-r));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		error_text(buf, len, msg, sizeof(msg));
		if (strstr(buf, NOT_FOUND))
			return -ENOENT; /* nothing stored for this server: anonymous */
		if (WIFEXITED(status))
			return err_set(err, -EACCES,
				       "credential helper %s failed (exit status %d): %s", prog,
				       WEXITSTATUS(status), msg[0] ? msg : "no message");
		return err_set(err, -EACCES, "credential helper %s killed by signal %d", prog,
			       WTERMSIG(status));
	}
	struct err perr = {0};

	r = img_auth_parse_helper_output(buf, len, ret, &perr);
	if (r < 0 && r != -ENOENT)
		return err_set(err, -EACCES, "credential helper %s: %s", prog, perr.msg);
	return r;
}

int img_cred_helper_get(const char *helper, const char *server, unsigned timeout_ms,
			struct img_creds *ret, struct err *err)
{
	char prog[128], exe[4096];
	int sv[2] = {-1, -1}, pipefd[2] = {-1, -1}, null_fd, status = 0, r, q;
	long long deadline = now_ms() + timeout_ms;
	size_t len = 0;
	char *buf;
	pid_t pid;

	if (!img_cred_helper_name_ok(helper))
		return err_set(err, -EINVAL, "bad credential helper name");
	snprintf(prog, sizeof(prog), "docker-credential-%s", helper);
	if (find_executable(prog, exe, sizeof(exe)) < 0)
		return err_set(err, -EACCES, "credential helper %s not found in PATH", prog);
	buf = malloc(IMG_CRED_HELPER_OUTPUT_MAX + 1);
	if (!buf)
		return err_set(err, -ENOMEM, "out of memory");
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (pid == 0)
		child(exe, sv[1], pipefd[1], null_fd);
	close(sv[1]);
	close(pipefd[1]);
	sv[1] = pipefd[1] = -1;

	r = exchange(sv[0], pipefd[0], server, buf, IMG_CRED_HELPER_OUTPUT_MAX + 1, &len, deadline);
	q = reap(pid, r == -ETIMEDOUT ? 0 : deadline, &status);
	if (r == 0 && q < 0)
		r = q;
	buf[len] = '\0';
	r = judge(prog, r, status, buf, len, timeout_ms, ret, err);
	goto done;
out:
	r = err_set(err, r, "cannot run credential helper %s: %s", prog, strerror(-r));
done:
	explicit_bzero(buf, IMG_CRED_HELPER_OUTPUT_MAX + 1);
	free(buf);
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (pipefd[i] >= 0)
			close(pipefd[i]);
	}
	if (null_fd >= 0)
		close(null_fd);
	return r;
}
