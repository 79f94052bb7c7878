/* SPDX-License-Identifier: MIT */
/*
 * Firecracker API client: libcurl over the Unix socket. One client per VM launch/query, used by
 * one thread at a time (libcurl-thread(3)). Response bodies are bounded; a 4xx body's
 * fault_message is returned verbatim in err, prefixed with the call. Every request has a total
 * deadline (connect included), so a hung VMM cannot hold a worker.
 *
 * The socket lives in the jail's run/, which the VM's uid owns: libcurl never resolves that
 * path. Per request the socket file is opened as an O_PATH fd without following symlinks and
 * owner-checked (runtime/jail-path.h), and libcurl connects to /proc/self/fd/N, i.e. exactly
 * that inode, so a VMM that swaps run/ for a link to another VM's never receives this VM's
 * calls. libcurl's own socket is close-on-exec.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "curl-cloexec.h"
#include "internal.h"
#include "jail-path.h"

struct fc_client {
	CURL *curl;
	char socket_path[VMM_SOCK_MAX];
};

struct body_buf {
	char *data;
	size_t len;
	bool overflow;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body_buf *b = ud;
	size_t n = size * nmemb;
	char *nd;

	if (b->len + n > FC_BODY_MAX) {
		b->overflow = true;
		return 0;
	}
	nd = realloc(b->data, b->len + n + 1);
	if (!nd)
		return 0;
	memcpy(nd + b->len, ptr, n);
	b->data = nd;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

int fc_client_new(const char *socket_path, struct fc_client **ret)
{
	struct fc_client *c;

	if (strlen(socket_path) >= VMM_SOCK_MAX)
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return -ENOMEM;
	}
	snprintf(c->socket_path, sizeof(c->socket_path), "%s", socket_path);
	*ret = c;
	return 0;
}

struct fc_client *fc_client_free(struct fc_client *c)
{
	if (!c)
		return NULL;
	curl_easy_cleanup(c->curl);
	free(c);
	return NULL;
}

static int curl_to_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return -ECONNRESET;
	case CURLE_WRITE_ERROR:
		return -EFBIG;
	default:
		return -EIO;
	}
}

int fc_request(struct fc_client *c, const char *method, const char *path, const char *body,
	       long timeout_ms, char **ret_body, size_t *ret_len, struct err *err)
{
	_cleanup_close_ int pfd = -EBADF;
	char proc_path[32];
	struct body_buf b = {};
	struct curl_slist *hdrs = NULL;
	char url[512];
	long status = 0;
	CURLcode cc;
	int r;

	if (strlen(path) > 256)
		return err_set(err, -EINVAL, "%s %s: path too long", method, path);
	snprintf(url, sizeof(url), "http://localhost%s", path);
	pfd = jail_socket_open(c->socket_path, proc_path, sizeof(proc_path));
	if (pfd < 0)
		return err_set(err, pfd, "%s %s: %s: %s", method, path, c->socket_path,
			       strerror(-pfd));
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, proc_path);
	curl_set_cloexec(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (body) {
		/* No "Expect: 100-continue" round trip for our small bodies. */
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		hdrs = curl_slist_append(hdrs, "Expect:");
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (!hdrs) {
		free(b.data);
		return err_set(err, -ENOMEM, "%s %s: out of memory", method, path);
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	cc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	if (cc != CURLE_OK) {
		free(b.data);
		if (b.overflow)
			return err_set(err, -EFBIG, "%s %s: response larger than %d bytes", method,
				       path, FC_BODY_MAX);
		r = curl_to_errno(cc);
		return err_set(err, r, "%s %s: %s", method, path, curl_easy_strerror(cc));
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		char fault[ERR_MSG_MAX];

		fc_json_fault(b.data, b.len, fault, sizeof(fault));
		free(b.data);
		return err_set(err, -EIO, "%s %s: %s", method, path,
			       fault[0] ? fault : "error without a message");
	}
	if (ret_body) {
		*ret_body = b.data ? b.data : strdup("");
		if (ret_len)
			*ret_len = b.len;
		if (!*ret_body)
			return -ENOMEM;
	} else {
		free(b.data);
	}
	return 0;
}
