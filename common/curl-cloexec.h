/* SPDX-License-Identifier: MIT */
/*
 * common/curl-cloexec.h: libcurl opens its sockets without close-on-exec. Every easy handle of
 * the daemon sets CURLOPT_OPENSOCKETFUNCTION to this, so no connection (a registry download,
 * the management API's report connection) can leak into a spawned VMM, jailer or mkfs even if
 * a spawn site forgot to close fds. Header-only.
 */
#pragma once

#include <curl/curl.h>
#include <sys/socket.h>

static inline curl_socket_t curl_cloexec_socket(void *clientp, curlsocktype purpose,
						struct curl_sockaddr *a)
{
	(void)clientp;
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Set the callback on c; returns the curl_easy_setopt result. */
static inline CURLcode curl_set_cloexec(CURL *c)
{
	return curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, curl_cloexec_socket);
}
