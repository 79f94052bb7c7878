/* SPDX-License-Identifier: MIT */
/*
 * A TCP proxy on 127.0.0.1 in front of a Unix or TCP server (a PostgreSQL of pg-fixture.h), in
 * its own thread, that can go silent at will: while silent it still accepts connections (the
 * kernel completes the handshake anyway) but forwards nothing in either direction and closes
 * nothing, like a frozen server or a black-holed link. Resuming forwards what was held back.
 */
#pragma once

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TPX_MAX 64

struct tcp_proxy {
	int lfd, port;
	struct sockaddr_un up; /* upstream Unix socket */
	atomic_bool silent, quit;
	pthread_t thread;
	int a[TPX_MAX], b[TPX_MAX]; /* client side, upstream side; -1 when free */
	atomic_uint accepted;
};

static inline void tpx_close_pair(struct tcp_proxy *p, int i)
{
	close(p->a[i]);
	close(p->b[i]);
	p->a[i] = p->b[i] = -1;
}

/* Copy what is readable on from to to; false when the pair must close (EOF or error). */
static inline bool tpx_pump(int from, int to)
{
	char buf[16384];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n <= 0)
		return n < 0 && errno == EINTR;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += w;
	}
	return true;
}

static inline void *tpx_main(void *arg)
{
	struct tcp_proxy *p = arg;

	while (!atomic_load(&p->quit)) {
		struct pollfd fds[1 + 2 * TPX_MAX];
		int idx[1 + 2 * TPX_MAX], n = 0;
		bool silent = atomic_load(&p->silent);

		fds[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
		idx[n++] = -1;
		for (int i = 0; i < TPX_MAX && !silent; i++) {
			if (p->a[i] < 0)
				continue;
			fds[n] = (struct pollfd){.fd = p->a[i], .events = POLLIN};
			idx[n++] = i;
			fds[n] = (struct pollfd){.fd = p->b[i], .events = POLLIN};
			idx[n++] = i;
		}
		if (poll(fds, (nfds_t)n, 20) <= 0)
			continue;
		if (fds[0].revents & POLLIN) {
			int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC), u = -1, slot = -1;

			for (int i = 0; i < TPX_MAX && c >= 0; i++)
				if (p->a[i] < 0) {
					slot = i;
					break;
				}
			if (c >= 0 && slot >= 0)
				u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (u >= 0 && connect(u, (struct sockaddr *)&p->up, sizeof(p->up)) == 0) {
				p->a[slot] = c;
				p->b[slot] = u;
				atomic_fetch_add(&p->accepted, 1);
			} else {
				if (u >= 0)
					close(u);
				if (c >= 0)
					close(c);
			}
		}
		for (int k = 1; k < n; k++) {
			int i = idx[k];

			if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR)) || p->a[i] < 0)
				continue;
			if (fds[k].fd == p->a[i] ? !tpx_pump(p->a[i], p->b[i])
						 : !tpx_pump(p->b[i], p->a[i]))
				tpx_close_pair(p, i);
		}
	}
	return NULL;
}

/* Listen on a free loopback port, forwarding to the Unix socket at path. 0 or -errno. */
static inline int tpx_start(struct tcp_proxy *p, const char *unix_path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < TPX_MAX; i++)
		p->a[i] = p->b[i] = -1;
	p->up.sun_family = AF_UNIX;
	if (strlen(unix_path) >= sizeof(p->up.sun_path))
		return -ENAMETOOLONG;
	(void)snprintf(p->up.sun_path, sizeof(p->up.sun_path), "%s", unix_path);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->lfd < 0)
		return -errno;
	if (bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(p->lfd, 64) < 0 ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &len) < 0) {
		close(p->lfd);
		return -errno;
	}
	p->port = ntohs(sa.sin_port);
	if (pthread_create(&p->thread, NULL, tpx_main, p) != 0) {
		close(p->lfd);
		return -EAGAIN;
	}
	return 0;
}

static inline void tpx_silent(struct tcp_proxy *p, bool on)
{
	atomic_store(&p->silent, on);
}

static inline void tpx_stop(struct tcp_proxy *p)
{
	atomic_store(&p->quit, true);
	(void)pthread_join(p->thread, NULL);
	for (int i = 0; i < TPX_MAX; i++)
		if (p->a[i] >= 0)
			tpx_close_pair(p, i);
	close(p->lfd);
}
