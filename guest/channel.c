/* SPDX-License-Identifier: MIT */
/* The agent's end of the host channel: a virtio-serial port found by name (QEMU), an AF_VSOCK
 * listener (Firecracker) or stdin/stdout (--test-mode). Outgoing frames go through a bounded
 * buffer so a slow or absent host never blocks the agent or the app: output that does not fit
 * is dropped and counted, control messages keep a reserve. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

#define OUT_MAX (256 * 1024)
#define OUT_RESERVE (16 * 1024) /* kept free of output for control messages */
#define REOPEN_MS 200

struct channel {
	enum channel_kind kind;
	uint32_t port;
	int fd;	 /* serial port / accepted vsock connection / stdin */
	int wfd; /* write side: fd, or stdout in stdio mode */
	int lfd; /* vsock listener */
	bool host_present;
	bool read_eof; /* stdio: the host end is gone for good */
	uint64_t reopen_at;
	struct agent_decoder dec;
	uint8_t *out;
	size_t out_head, out_len;
	uint64_t dropped;
};

struct channel *agent_channel;

/* /dev/vportNpM whose /sys/class/virtio-ports/<dev>/name is "agent". */
static int find_serial_port(char *buf, size_t size)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *de;
	int r = -ENOENT;

	if (!d)
		return -ENOENT;
	while ((de = readdir(d))) {
		char path[300], name[64] = "";
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, name, sizeof(name) - 1);
		close(fd);
		if (n <= 0)
			continue;
		name[n] = '\0';
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, "agent") == 0) {
			snprintf(buf, size, "/dev/%s", de->d_name);
			r = 0;
			break;
		}
	}
	closedir(d);
	return r;
}

/* The serial port reports POLLHUP (and read() EOF) while no host client is connected. */
static bool serial_host_connected(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return !(poll(&p, 1, 0) == 1 && (p.revents & POLLHUP));
}

/* The connection ended: eof (read() 0) or an error. */
static void channel_close_conn(struct channel *ch, uint64_t now, bool eof)
{
	if (ch->kind == CHANNEL_STDIO) {
		ch->read_eof = true;
		ch->host_present = false;
		return;
	}
	if (ch->kind == CHANNEL_SERIAL && ch->fd >= 0 && eof) {
		/* The host went away (the serial port's EOF): keep the port open. Its return
		 * raises SIGIO (O_ASYNC) and what it sends waits in the port; channel_tick looks
		 * at once (it may be back already) and then on SIGIO. */
		ch->host_present = false;
		ch->reopen_at = now;
		agent_decoder_init(&ch->dec);
		return;
	}
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = ch->wfd = -1;
	ch->host_present = false;
	ch->reopen_at = now + REOPEN_MS;
	agent_decoder_init(&ch->dec);
}

static void channel_open(struct channel *ch, uint64_t now)
{
	char path[300];

	if (ch->kind == CHANNEL_VSOCK) {
		struct sockaddr_vm sa = {
			.svm_family = AF_VSOCK,
			.svm_cid = VMADDR_CID_ANY,
			.svm_port = ch->port,
		};

		if (ch->lfd >= 0)
			return;
		ch->lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (ch->lfd < 0 || bind(ch->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(ch->lfd, 4) < 0) {
			if (ch->lfd >= 0)
				close(ch->lfd);
			ch->lfd = -1;
			ch->reopen_at = now + REOPEN_MS;
		}
		return;
	}
	if (ch->kind != CHANNEL_SERIAL || ch->fd >= 0)
		return;
	if (find_serial_port(path, sizeof(path)) < 0) {
		ch->reopen_at = now + REOPEN_MS;
		return;
	}
	ch->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (ch->fd < 0) {
		ch->reopen_at = now + REOPEN_MS;
		return;
	}
	ch->wfd = ch->fd;
	/* SIGIO when the host connects or goes (virtio_console signals a port's host connection
	 * changes to its owner): the agent wakes at once instead of polling the port. Set before
	 * the first look, so a host that connects in between is not missed. */
	if (fcntl(ch->fd, F_SETOWN, getpid()) < 0 ||
	    fcntl(ch->fd, F_SETFL, fcntl(ch->fd, F_GETFL) | O_ASYNC) < 0)
		fprintf(stderr, "mvmfs-agent: agent port: no SIGIO (%s): polling for the host\n",
			strerror(errno));
	ch->host_present = serial_host_connected(ch->fd);
	if (!ch->host_present)
		ch->reopen_at = now + REOPEN_MS;
}

struct channel *channel_new(enum channel_kind kind, uint32_t port)
{
	struct channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->out = malloc(OUT_MAX);
	if (!ch->out) {
		free(ch);
		return NULL;
	}
	ch->kind = kind;
	ch->port = port;
	ch->fd = ch->wfd = ch->lfd = -1;
	agent_decoder_init(&ch->dec);
	if (kind == CHANNEL_STDIO) {
		ch->fd = 0;
		ch->wfd = 1;
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
		fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
		ch->host_present = true;
	} else {
		channel_open(ch, now_ms());
	}
	return ch;
}

int channel_poll_fds(struct channel *ch, int *fds, short *events, uint64_t now)
{
	int n = 0;

	(void)now;
	if (ch->lfd >= 0) {
		fds[n] = ch->lfd;
		events[n++] = POLLIN;
	}
	if (ch->kind == CHANNEL_STDIO) {
		if (!ch->read_eof) {
			fds[n] = ch->fd;
			events[n++] = POLLIN;
		}
		if (ch->wfd >= 0 && ch->out_len) {
			fds[n] = ch->wfd;
			events[n++] = POLLOUT;
		}
		return n;
	}
	if (ch->fd >= 0 && ch->host_present) {
		fds[n] = ch->fd;
		events[n++] = POLLIN | (ch->out_len ? POLLOUT : 0);
	}
	return n;
}

static void channel_write(struct channel *ch, uint64_t now)
{
	while (ch->out_len && ch->wfd >= 0 && (ch->host_present || ch->kind == CHANNEL_STDIO)) {
		ssize_t n = write(ch->wfd, ch->out + ch->out_head, ch->out_len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			if (ch->kind == CHANNEL_STDIO) {
				/* The host is gone for good: forget what it would have read. */
				ch->wfd = -1;
				ch->out_len = 0;
			} else {
				channel_close_conn(ch, now, false);
			}
			return;
		}
		ch->out_head += (size_t)n;
		ch->out_len -= (size_t)n;
		if (ch->out_len == 0)
			ch->out_head = 0;
	}
}

void channel_handle(struct channel *ch, int fd, short revents, uint64_t now,
		    void (*cb)(void *ud, const struct agent_msg *m), void *ud)
{
	uint8_t buf[4096];
	struct agent_msg m;

	if (fd == ch->lfd) {
		int c = accept4(ch->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (c < 0)
			return;
		/* A new host connection replaces the old one (the host reconnected). */
		if (ch->fd >= 0)
			close(ch->fd);
		ch->fd = ch->wfd = c;
		ch->host_present = true;
		agent_decoder_init(&ch->dec);
		return;
	}
	if (fd == ch->wfd && (revents & POLLOUT))
		channel_write(ch, now);
	if (fd != ch->fd || !(revents & (POLLIN | POLLHUP | POLLERR)))
		return;
	for (;;) {
		ssize_t n = read(ch->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			channel_close_conn(ch, now, n == 0);
			break;
		}
		for (size_t off = 0; off < (size_t)n;) {
			off += agent_decoder_feed(&ch->dec, buf + off, (size_t)n - off);
			while (agent_decoder_next(&ch->dec, &m) > 0)
				cb(ud, &m);
		}
	}
}

int channel_tick(struct channel *ch, uint64_t now)
{
	bool want = (ch->kind == CHANNEL_SERIAL && ch->fd < 0) ||
		    (ch->kind == CHANNEL_VSOCK && ch->lfd < 0);

	if (ch->kind == CHANNEL_SERIAL && ch->fd >= 0 && !ch->host_present) {
		/* Open, no host: look again now (the caller woke on SIGIO, or a boot step
		 * ended) and at the latest after REOPEN_MS, should a SIGIO be missed. */
		if (serial_host_connected(ch->fd)) {
			ch->host_present = true;
			channel_write(ch, now);
			return -1;
		}
		if (now >= ch->reopen_at)
			ch->reopen_at = now + REOPEN_MS;
		return (int)(ch->reopen_at - now);
	}
	if (!want)
		return -1;
	if (now >= ch->reopen_at)
		channel_open(ch, now);
	want = (ch->kind == CHANNEL_SERIAL && ch->fd < 0) ||
	       (ch->kind == CHANNEL_VSOCK && ch->lfd < 0);
	if (!want)
		return -1;
	return ch->reopen_at > now ? (int)(ch->reopen_at - now) : REOPEN_MS;
}

int channel_send(struct channel *ch, const struct agent_msg *m)
{
	uint8_t frame[AGENT_FRAME_MAX];
	size_t room;
	int n;

	if (!ch)
		return -ENOTCONN;
	n = agent_msg_encode(m, frame, sizeof(frame));
	if (n < 0)
		return n;
	if (ch->out_head + ch->out_len + (size_t)n > OUT_MAX) {
		memmove(ch->out, ch->out + ch->out_head, ch->out_len);
		ch->out_head = 0;
	}
	room = OUT_MAX - ch->out_len;
	if ((size_t)n > room || (m->type == AGENT_MSG_OUTPUT && (size_t)n + OUT_RESERVE > room)) {
		if (m->type == AGENT_MSG_OUTPUT)
			ch->dropped += m->output.len;
		return -ENOBUFS;
	}
	memcpy(ch->out + ch->out_head + ch->out_len, frame, (size_t)n);
	ch->out_len += (size_t)n;
	channel_write(ch, now_ms());
	return 0;
}

bool channel_host_present(struct channel *ch)
{
	return ch && (ch->host_present || (ch->kind == CHANNEL_STDIO && ch->wfd >= 0));
}

uint64_t channel_dropped(struct channel *ch)
{
	return ch ? ch->dropped : 0;
}

void channel_flush(struct channel *ch, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (ch && ch->out_len && ch->wfd >= 0 && now_ms() < end) {
		struct pollfd p = {.fd = ch->wfd, .events = POLLOUT};

		if (poll(&p, 1, 20) > 0)
			channel_write(ch, now_ms());
		if (p.revents & (POLLHUP | POLLERR))
			break;
	}
}
