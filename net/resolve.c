/* SPDX-License-Identifier: MIT */
/*
 * net: a host name lookup with a deadline and a cancel. getaddrinfo() has no timeout (a silent
 * DNS server costs the resolver's own retries, tens of seconds), so it runs on a detached thread
 * that shares a small reference-counted request with the caller; the caller polls an eventfd
 * against its deadline and walks away when it passes. The thread frees the request if it
 * finishes last. Only the addresses leave this file, as numeric text.
 */
#include "resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

struct req {
	atomic_int refs;
	int done_fd; /* eventfd, written once the lookup finished */
	int rc;	     /* getaddrinfo's result */
	char host[NET_RESOLVE_HOST_MAX + 1];
	char addrs[NET_RESOLVE_MAX][INET6_ADDRSTRLEN];
	unsigned n;
};

static void req_unref(struct req *q)
{
	if (atomic_fetch_sub(&q->refs, 1) != 1)
		return;
	close(q->done_fd);
	free(q);
}

static void *lookup(void *arg)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct req *q = arg;
	struct addrinfo *res = NULL;
	uint64_t one = 1;
	ssize_t w;

	q->rc = getaddrinfo(q->host, NULL, &hints, &res);
	for (struct addrinfo *ai = q->rc == 0 ? res : NULL; ai && q->n < NET_RESOLVE_MAX;
	     ai = ai->ai_next) {
		const void *a =
			ai->ai_family == AF_INET6
				? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
			: ai->ai_family == AF_INET
				? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
				: NULL;
		bool dup = false;

		if (!a || !inet_ntop(ai->ai_family, a, q->addrs[q->n], sizeof(q->addrs[0])))
			continue;
		for (unsigned i = 0; i < q->n && !dup; i++)
			dup = strcmp(q->addrs[i], q->addrs[q->n]) == 0;
		if (!dup)
			q->n++;
	}
	if (res)
		freeaddrinfo(res);
	/* The eventfd write publishes rc, addrs and n: the caller reads them only after reading
	 * the eventfd. */
	w = write(q->done_fd, &one, sizeof(one));
	(void)w;
	req_unref(q);
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool net_resolve_needed(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return host && *host && host[0] != '/' && host[0] != '@' && !strchr(host, ',') &&
	       strlen(host) <= NET_RESOLVE_HOST_MAX && inet_pton(AF_INET, host, &a4) != 1 &&
	       inet_pton(AF_INET6, host, &a6) != 1;
}

int net_resolve(const char *host, int64_t deadline, int cancel_fd,
		char ret[NET_RESOLVE_MAX][INET6_ADDRSTRLEN], unsigned *ret_n, char *why,
		size_t why_size)
{
	struct pollfd p[2] = {{.events = POLLIN}, {.fd = cancel_fd, .events = POLLIN}};
	pthread_attr_t attr;
	struct req *q;
	pthread_t t;
	int r;

	if (strlen(host) > NET_RESOLVE_HOST_MAX)
		return -ENAMETOOLONG;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	snprintf(q->host, sizeof(q->host), "%s", host);
	q->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->done_fd < 0) {
		r = -errno;
		free(q);
		return r;
	}
	atomic_init(&q->refs, 2);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, lookup, q);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		close(q->done_fd);
		free(q);
		return -r;
	}
	p[0].fd = q->done_fd;
	for (;;) {
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		n = poll(p, cancel_fd >= 0 ? 2 : 1, (int)MIN(left, (int64_t)INT32_MAX));
		if (n > 0 && cancel_fd >= 0 && p[1].revents) {
			r = -ECANCELED;
			break;
		}
		if (n > 0) {
			uint64_t v;

			if (read(q->done_fd, &v, sizeof(v)) != sizeof(v))
				continue; /* spurious */
			if (q->rc != 0) {
				(void)snprintf(why, why_size, "%s", gai_strerror(q->rc));
				r = -ENOENT;
			} else if (q->n == 0) {
				(void)snprintf(why, why_size, "no IPv4 or IPv6 address");
				r = -ENOENT;
			} else {
				memcpy(ret, q->addrs, sizeof(q->addrs));
				*ret_n = q->n;
				r = 0;
			}
			break;
		}
		if (n < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
	}
	req_unref(q); /* a lookup still running frees the request when it ends */
	return r;
}
