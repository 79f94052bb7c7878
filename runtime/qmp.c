/* SPDX-License-Identifier: MIT */
/* QMP client: line-delimited JSON over a Unix stream socket (see qmp.h). Every step is
 * bounded by the call's deadline: the connect (a full backlog), sending (a VMM that stopped
 * reading) and every reply (a VMM that never answers); the socket is non-blocking. */
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "jail-path.h"
#include "macro.h"

#define QMP_LINE_MAX (256 * 1024)

struct qmp {
	int fd;
	char *buf;
	size_t len;
	char *line; /* the last line read, NUL-free copy */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int qmp_parse_line(const char *line, size_t len, json_t **ret_value, char *desc, size_t descsz)
{
	json_error_t jerr;
	json_t *o, *v;
	int r = -EINVAL;

	if (ret_value)
		*ret_value = NULL;
	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return -EINVAL;
	if (!json_is_object(o))
		goto out;
	if ((v = json_object_get(o, "QMP")) && json_is_object(v)) {
		r = 1;
	} else if ((v = json_object_get(o, "return"))) {
		if (ret_value)
			*ret_value = json_incref(v);
		r = 2;
	} else if ((v = json_object_get(o, "error")) && json_is_object(v)) {
		json_t *d = json_object_get(v, "desc");

		if (desc && descsz)
			snprintf(desc, descsz, "%s",
				 json_is_string(d) ? json_string_value(d) : "unknown QMP error");
		r = 3;
	} else if ((v = json_object_get(o, "event")) && json_is_string(v)) {
		r = 4;
	}
out:
	json_decref(o);
	return r;
}

int qmp_parse_status(const char *text, size_t len, enum vmm_run_state *ret)
{
	json_error_t jerr;
	json_t *o, *st;
	const char *s;
	int r = -EINVAL;

	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return -EINVAL;
	st = json_object_get(o, "status");
	if (!json_is_object(o) || !json_is_string(st))
		goto out;
	s = json_string_value(st);
	if (strcmp(s, "running") == 0)
		*ret = VMM_RUN_RUNNING;
	else if (strcmp(s, "paused") == 0 || strcmp(s, "suspended") == 0)
		*ret = VMM_RUN_PAUSED;
	else if (strcmp(s, "prelaunch") == 0 || strcmp(s, "inmigrate") == 0)
		*ret = VMM_RUN_NOT_STARTED;
	else if (strcmp(s, "shutdown") == 0 || strcmp(s, "guest-panicked") == 0 ||
		 strcmp(s, "internal-error") == 0 || strcmp(s, "io-error") == 0)
		*ret = VMM_RUN_GONE;
	else
		*ret = VMM_RUN_UNKNOWN;
	r = 0;
out:
	json_decref(o);
	return r;
}

/* Next line (without the newline) into *ret, valid until the next call. */
static int read_line(struct qmp *q, char **ret, size_t *ret_len, uint64_t deadline)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		struct pollfd p = {.fd = q->fd, .events = POLLIN};
		uint64_t now;
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - q->buf);

			memcpy(q->line, q->buf, l);
			memmove(q->buf, nl + 1, q->len - l - 1);
			q->len -= l + 1;
			*ret = q->line;
			*ret_len = l;
			return 0;
		}
		if (q->len >= QMP_LINE_MAX)
			return -EMSGSIZE;
		now = mono_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		n = recv(q->fd, q->buf + q->len, QMP_LINE_MAX - q->len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		q->len += (size_t)n;
	}
}

/* Send all of buf before the deadline. */
static int send_all(struct qmp *q, const char *buf, size_t len, uint64_t deadline)
{
	while (len > 0) {
		struct pollfd p = {.fd = q->fd, .events = POLLOUT};
		uint64_t now = mono_ms();
		ssize_t n;

		n = send(q->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (now >= deadline)
			return -ETIMEDOUT;
		(void)poll(&p, 1, (int)(deadline - now));
	}
	return 0;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	safe_close(q->fd);
	free(q->buf);
	free(q->line);
	free(q);
}

/* The first byte of a command with fd attached (SCM_RIGHTS), before the deadline. */
static int send_fd_byte(struct qmp *q, const char *byte, int fd, uint64_t deadline)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u = {};
	struct iovec iov = {.iov_base = (void *)byte, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	for (;;) {
		struct pollfd p = {.fd = q->fd, .events = POLLOUT};
		uint64_t now = mono_ms();
		ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == 1)
			return 0;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (now >= deadline)
			return -ETIMEDOUT;
		(void)poll(&p, 1, (int)(deadline - now));
	}
}

static int execute(struct qmp *q, const char *cmd, json_t *args, int fd, json_t **ret,
		   int timeout_ms, struct err *err)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	json_t *req;
	char *text;
	size_t len;
	int r = 0;

	req = json_pack("{s:s}", "execute", cmd);
	if (!req)
		return -ENOMEM;
	if (args)
		json_object_set(req, "arguments", args);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	if (fd >= 0)
		r = send_fd_byte(q, text, fd, deadline);
	if (r >= 0)
		r = send_all(q, text + (fd >= 0), len - (fd >= 0), deadline);
	if (r >= 0)
		r = send_all(q, "\n", 1, deadline);
	free(text);
	if (r < 0)
		return err_set(err, r, "QMP %s: %s", cmd, strerror(-r));
	for (;;) {
		char desc[256], *line;
		size_t l;
		json_t *v;

		r = read_line(q, &line, &l, deadline);
		if (r < 0)
			return err_set(err, r, "QMP %s: %s", cmd, strerror(-r));
		r = qmp_parse_line(line, l, &v, desc, sizeof(desc));
		if (r == 2) {
			if (ret)
				*ret = v;
			else
				json_decref(v);
			return 0;
		}
		if (r == 3)
			return err_set(err, -EIO, "QMP %s: %s", cmd, desc);
		if (r < 0)
			return err_set(err, -EPROTO, "QMP %s: malformed reply", cmd);
		/* greeting or event: keep reading */
	}
}

int qmp_execute(struct qmp *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms,
		struct err *err)
{
	return execute(q, cmd, args, -1, ret, timeout_ms, err);
}

int qmp_getfd(struct qmp *q, const char *name, int fd, int timeout_ms, struct err *err)
{
	json_t *args = json_pack("{s:s}", "fdname", name);
	int r;

	if (!args)
		return -ENOMEM;
	r = execute(q, "getfd", args, fd, NULL, timeout_ms, err);
	json_decref(args);
	return r;
}

int qmp_connect(const char *path, int timeout_ms, struct qmp **ret, struct err *err)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	struct qmp *q;
	char *line = NULL;
	size_t l = 0;
	int r;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->buf = malloc(QMP_LINE_MAX);
	q->line = malloc(QMP_LINE_MAX);
	q->fd = -EBADF;
	if (!q->buf || !q->line) {
		r = -ENOMEM;
		goto fail;
	}
	/* Never through a symlink; the socket must be root's or the dir owner's. */
	q->fd = jail_connect(path, timeout_ms);
	if (q->fd < 0) {
		r = err_set(err, q->fd, "QMP connect %s: %s", path, strerror(-q->fd));
		goto fail;
	}
	r = read_line(q, &line, &l, deadline);
	if (r < 0) {
		err_set(err, r, "QMP greeting from %s: %s", path, strerror(-r));
		goto fail;
	}
	if (qmp_parse_line(line, l, NULL, NULL, 0) != 1) {
		r = err_set(err, -EPROTO, "QMP %s: unexpected greeting", path);
		goto fail;
	}
	{
		uint64_t now = mono_ms();

		r = qmp_execute(q, "qmp_capabilities", NULL, NULL,
				now < deadline ? (int)(deadline - now) : 0, err);
	}
	if (r < 0)
		goto fail;
	*ret = q;
	return 0;
fail:
	qmp_close(q);
	return r;
}
