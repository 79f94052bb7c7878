/* SPDX-License-Identifier: MIT */
/*
 * libcurl plumbing shared by the registry and S3 sources: handle defaults, one request with
 * bounded in-memory bodies or a streaming blob sink, and CURLcode/HTTP status -> -errno with a
 * message quoting the server's own error text.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "fetch.h"

#define CONNECT_TIMEOUT_S 20L
#define LOW_SPEED_BYTES 1024L
#define LOW_SPEED_TIME_S 60L
#define POLL_MS 100 /* how often a transfer looks at its cancel flag and deadlines */

uint64_t img_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void img_xfer_init(struct img_xfer *x, const struct img_limits *lim, const atomic_bool *cancel,
		   const char *name)
{
	x->cancel = cancel;
	x->timeout_ms = lim->pull_timeout_ms;
	x->deadline_ns = lim->pull_timeout_ms
				 ? img_now_ns() + (uint64_t)lim->pull_timeout_ms * 1000000ULL
				 : 0;
	x->stall_ms = lim->stall_timeout_ms;
	x->stopped = 0;
	x->stop_msg[0] = '\0';
	snprintf(x->name, sizeof(x->name), "%s", name);
}

void img_xfer_done(struct img_xfer *x)
{
	if (x->multi)
		(void)curl_multi_cleanup(x->multi);
	x->multi = NULL;
}

static int xfer_stop(struct img_xfer *x, int code, struct err *err, const char *fmt, ...)
	_printf_(4, 5);
static int xfer_stop(struct img_xfer *x, int code, struct err *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(x->stop_msg, sizeof(x->stop_msg), fmt, ap);
	va_end(ap);
	x->stopped = code;
	return err_set(err, code, "%s", x->stop_msg);
}

static double secs(unsigned ms)
{
	return (double)ms / 1000.0;
}

int img_xfer_check(struct img_xfer *x, struct err *err)
{
	if (x->stopped)
		return err_set(err, x->stopped, "%s", x->stop_msg);
	if (x->cancel && atomic_load(x->cancel))
		return xfer_stop(x, -ECANCELED, err, "pull of %.300s cancelled", x->name);
	if (x->deadline_ns && img_now_ns() >= x->deadline_ns)
		return xfer_stop(x, -ETIMEDOUT, err, "pull of %.300s timed out after %g s", x->name,
				 secs(x->timeout_ms));
	return 0;
}

int img_xfer_sleep(struct img_xfer *x, unsigned ms, struct err *err)
{
	uint64_t end = img_now_ns() + (uint64_t)ms * 1000000ULL;

	for (;;) {
		int r = img_xfer_check(x, err);
		uint64_t now = img_now_ns();
		struct timespec ts;
		uint64_t step;

		if (r < 0 || now >= end)
			return r;
		step = MIN(end - now, (uint64_t)POLL_MS * 1000000ULL);
		ts = (struct timespec){.tv_sec = (time_t)(step / 1000000000ULL),
				       .tv_nsec = (long)(step % 1000000000ULL)};
		(void)nanosleep(&ts, NULL);
	}
}

static bool v4_internal(uint32_t a)
{
	return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 || (a >> 20) == 0xac1 ||
	       (a >> 16) == 0xc0a8 || (a >> 16) == 0xa9fe || (a >> 22) == (100u << 2 | 1) ||
	       (a >> 28) >= 0xe; /* multicast, reserved, broadcast */
}

int img_addr_class(const struct sockaddr *sa, size_t len)
{
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return v4_internal(ntohl(in->sin_addr.s_addr)) ? IMG_ADDR_INTERNAL
							       : IMG_ADDR_PUBLIC;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		const uint8_t *b = a->s6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
			uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
				      (uint32_t)b[14] << 8 | b[15];
			return v4_internal(v4) ? IMG_ADDR_INTERNAL : IMG_ADDR_PUBLIC;
		}
		if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) ||
		    (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* link-local */
		    (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) || /* site-local */
		    (b[0] & 0xfe) == 0xfc ||		       /* ULA */
		    b[0] == 0xff)			       /* multicast */
			return IMG_ADDR_INTERNAL;
		return IMG_ADDR_PUBLIC;
	}
	return IMG_ADDR_INTERNAL; /* nothing else is expected: refuse it once public */
}

/* Every socket curl opens: close-on-exec (no child ever inherits a registry connection), and
 * the address policy applied to the address actually connected. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct img_xfer *x = ud;

	if (purpose == CURLSOCKTYPE_IPCXN) {
		int cls = img_addr_class(&a->addr, a->addrlen);

		if (!x->origin_class) {
			x->origin_class = cls;
		} else if (x->origin_class == IMG_ADDR_PUBLIC && cls != IMG_ADDR_PUBLIC) {
			char host[INET6_ADDRSTRLEN] = "?";
			const void *p =
				a->family == AF_INET6
					? (const void *)&((struct sockaddr_in6 *)&a->addr)
						  ->sin6_addr
					: (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr;
			(void)inet_ntop(a->family, p, host, sizeof(host));
			snprintf(x->refused, sizeof(x->refused), "%s", host);
			return CURL_SOCKET_BAD;
		}
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

void img_sanitize(const char *s, size_t len, char *buf, size_t size)
{
	size_t o = 0;

	if (!size)
		return;
	for (size_t i = 0; i < len && s[i] && o + 1 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	buf[o] = '\0';
}

int img_url_escape(const char *s, bool keep_slash, char *buf, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(buf);

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
			     c == '~' || (keep_slash && c == '/');
		if (o + (plain ? 1 : 3) >= size)
			return -ENOBUFS;
		if (plain) {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	buf[o] = '\0';
	return 0;
}

void img_http_resp_done(struct img_http_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

CURL *img_http_new(struct img_xfer *x)
{
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	if (curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, x) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    /* Blob GETs redirect to storage backends. libcurl drops Authorization (ours is a
	     * custom header) when the host, port or scheme changes (CVE-2018-1000007,
	     * CVE-2022-27774 fixes), so credentials never reach the redirect target. */
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 8L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT, "mvmfs/" PACKAGE_VERSION) != CURLE_OK) {
		curl_easy_cleanup(c);
		return NULL;
	}
	return c;
}

static void copy_value(const char *v, size_t n, char *buf, size_t size)
{
	while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	img_sanitize(v, n, buf, size);
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct img_http_resp *r = ud;
	size_t n = size * nmemb;
	const char *colon, *v;
	size_t nl, vl;

	/* A new status line (after a redirect or 100): forget earlier headers and body. */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		r->len = 0;
		if (r->body)
			r->body[0] = '\0';
		r->content_type[0] = r->docker_digest[0] = r->www_authenticate[0] = '\0';
		r->amz_checksum[0] = r->etag[0] = '\0';
		r->have_content_length = false;
		r->range_start = -1;
		return n;
	}
	colon = memchr(data, ':', n);
	if (!colon)
		return n;
	nl = (size_t)(colon - data);
	v = colon + 1;
	while (v < data + n && (*v == ' ' || *v == '\t'))
		v++;
	vl = (size_t)(data + n - v);
	if (nl == 12 && strncasecmp(data, "content-type", nl) == 0) {
		copy_value(v, vl, r->content_type, sizeof(r->content_type));
	} else if (nl == 21 && strncasecmp(data, "docker-content-digest", nl) == 0) {
		copy_value(v, vl, r->docker_digest, sizeof(r->docker_digest));
	} else if (nl == 16 && strncasecmp(data, "www-authenticate", nl) == 0) {
		/* Several challenges may come in several headers: keep the Bearer one. */
		if (!r->www_authenticate[0] || strncasecmp(v, "bearer", 6) == 0)
			copy_value(v, vl, r->www_authenticate, sizeof(r->www_authenticate));
	} else if (nl == 21 && strncasecmp(data, "x-amz-checksum-sha256", nl) == 0) {
		copy_value(v, vl, r->amz_checksum, sizeof(r->amz_checksum));
	} else if (nl == 4 && strncasecmp(data, "etag", nl) == 0) {
		copy_value(v, vl, r->etag, sizeof(r->etag));
	} else if (nl == 13 && strncasecmp(data, "content-range", nl) == 0) {
		char buf[96], *end;
		long long start;

		/* strtoll, not sscanf: an out-of-range number from the server is undefined there.
		 */
		copy_value(v, vl, buf, sizeof(buf));
		if (strncmp(buf, "bytes ", 6) == 0 && buf[6] >= '0' && buf[6] <= '9') {
			errno = 0;
			start = strtoll(buf + 6, &end, 10);
			if (errno == 0 && *end == '-')
				r->range_start = start;
		}
	} else if (nl == 14 && strncasecmp(data, "content-length", nl) == 0) {
		char buf[32];
		char *end;
		unsigned long long x;

		copy_value(v, vl, buf, sizeof(buf));
		errno = 0;
		x = strtoull(buf, &end, 10);
		if (buf[0] >= '0' && buf[0] <= '9' && !*end && errno == 0) {
			r->content_length = x;
			r->have_content_length = true;
		}
	}
	return n;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct img_http_resp *r = ud;
	size_t n = size * nmemb;

	if (r->sink && r->status >= 200 && r->status < 300) {
		int e = img_blob_writer_write(r->sink, data, n);
		if (e < 0) {
			r->sink_error = e;
			return 0;
		}
		return n;
	}
	if (r->len + n > r->body_max) {
		r->body_too_big = true;
		return 0;
	}
	char *nb = realloc(r->body, r->len + n + 1);
	if (!nb) {
		r->sink_error = -ENOMEM;
		return 0;
	}
	r->body = nb;
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* The status is needed inside write_cb to route the body; curl knows it by then. */
static int prereq_status(CURL *c, struct img_http_resp *r)
{
	long code = 0;

	(void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	r->status = code;
	return 0;
}

struct write_ctx {
	CURL *c;
	struct img_http_resp *r;
	bool checked;
};

static size_t write_cb_outer(char *data, size_t size, size_t nmemb, void *ud)
{
	struct write_ctx *w = ud;

	/* Bodies of redirects may pass through here too: look at the status every time, and
	 * only the first chunk of the final 2xx body decides about the range. */
	prereq_status(w->c, w->r);
	if (!w->checked && w->r->status >= 200 && w->r->status < 300) {
		w->checked = true;
		/* We asked for a range and got the whole body: start the file over. */
		if (w->r->sink && w->r->resume_from > 0 && w->r->status == 200) {
			int e = img_blob_writer_rewind(w->r->sink);
			if (e < 0) {
				w->r->sink_error = e;
				return 0;
			}
		}
		/* A part that doesn't start where we stopped is useless: start over next time. */
		if (w->r->sink && w->r->status == 206 && w->r->range_start != w->r->resume_from) {
			int e = img_blob_writer_rewind(w->r->sink);
			w->r->sink_error = e < 0 ? e : -ECONNRESET;
			return 0;
		}
	}
	return write_cb(data, size, nmemb, w->r);
}

bool img_http_retryable(int r)
{
	/* A broken or stalled body, or a server that went away for a moment. */
	return r == -ECONNRESET || r == -ETIMEDOUT || r == -EHOSTUNREACH;
}

/* Run c on x's multi handle until it ends, x is cancelled, or a deadline passes. 0 with the
 * transfer's result in *ret, or x's stop reason. */
static int run(struct img_xfer *x, CURL *c, CURLcode *ret, struct err *err)
{
	uint64_t last = img_now_ns();
	curl_off_t seen = -1;
	int r = 0;

	if (!x->multi && !(x->multi = curl_multi_init()))
		return err_set(err, -ENOMEM, "out of memory");
	if (curl_multi_add_handle(x->multi, c) != CURLM_OK)
		return err_set(err, -ENOMEM, "cannot start a transfer");
	*ret = CURLE_RECV_ERROR;
	for (;;) {
		int running = 0, queued;
		bool done = false;
		curl_off_t dl = 0;
		long hdr = 0;
		CURLMsg *msg;
		uint64_t now;

		if (curl_multi_perform(x->multi, &running) != CURLM_OK) {
			*ret = CURLE_OUT_OF_MEMORY;
			break;
		}
		while ((msg = curl_multi_info_read(x->multi, &queued)))
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == c) {
				*ret = msg->data.result;
				done = true;
			}
		if (done || !running)
			break;
		r = img_xfer_check(x, err);
		if (r < 0)
			break;
		now = img_now_ns();
		(void)curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &dl);
		(void)curl_easy_getinfo(c, CURLINFO_HEADER_SIZE, &hdr);
		if (dl + hdr != seen) {
			seen = dl + hdr;
			last = now;
		} else if (x->stall_ms && now - last >= (uint64_t)x->stall_ms * 1000000ULL) {
			r = xfer_stop(x, -ETIMEDOUT, err,
				      "pull of %.300s stalled: no data for %g s", x->name,
				      secs(x->stall_ms));
			break;
		}
		(void)curl_multi_poll(x->multi, NULL, 0, POLL_MS, NULL);
	}
	(void)curl_multi_remove_handle(x->multi, c);
	return r;
}

int img_http_perform(struct img_xfer *x, CURL *c, const char *url, struct curl_slist *headers,
		     struct img_http_resp *r, const char *who, struct err *err)
{
	struct write_ctx w = {.c = c, .r = r};
	char range[48];
	CURLcode cc = CURLE_OK;
	int q;

	img_http_resp_done(r);
	r->status = 0;
	r->body_too_big = false;
	r->sink_error = 0;
	r->content_type[0] = r->docker_digest[0] = r->www_authenticate[0] = '\0';
	r->amz_checksum[0] = r->etag[0] = '\0';
	r->have_content_length = false;
	r->range_start = -1;
	if (!r->body_max)
		r->body_max = 64 * 1024;
	x->refused[0] = '\0';
	q = img_xfer_check(x, err);
	if (q < 0)
		return q;
	snprintf(range, sizeof(range), "%ld-", r->resume_from);
	if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HEADERDATA, r) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb_outer) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, &w) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_RANGE, r->resume_from > 0 ? range : NULL) != CURLE_OK)
		return err_set(err, -EINVAL, "%s: setting up the request failed", who);
	q = run(x, c, &cc, err);
	(void)curl_easy_setopt(c, CURLOPT_RANGE, NULL);
	prereq_status(c, r);
	if (q < 0)
		return q;
	if (cc == CURLE_OK)
		return 0;
	if (x->refused[0])
		return err_set(err, -EACCES,
			       "%s: refusing to connect to internal address %s (redirect or token "
			       "realm of a public registry)",
			       who, x->refused);
	if (r->sink_error == -ENOSPC)
		return err_set(err, -ENOSPC, "%s: disk full writing the download", who);
	if (r->sink_error == -EFBIG)
		return err_set(err, -EBADMSG, "%s: blob larger than its descriptor says", who);
	if (r->sink_error == -ECONNRESET)
		return err_set(err, -ECONNRESET, "%s: server sent the wrong range", who);
	if (r->sink_error)
		return err_set(err, r->sink_error, "%s: writing the download failed: %s", who,
			       strerror(-r->sink_error));
	if (r->body_too_big)
		return err_set(err, -EFBIG, "%s: response larger than %zu bytes", who, r->body_max);
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		return err_set(err, -EHOSTUNREACH, "%s: %s", who, curl_easy_strerror(cc));
	case CURLE_OPERATION_TIMEDOUT:
		return err_set(err, -ETIMEDOUT, "%s: %s", who, curl_easy_strerror(cc));
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return err_set(err, -ECONNRESET, "%s: transfer broken: %s", who,
			       curl_easy_strerror(cc));
	case CURLE_TOO_MANY_REDIRECTS:
		return err_set(err, -ELOOP, "%s: %s", who, curl_easy_strerror(cc));
	case CURLE_UNSUPPORTED_PROTOCOL:
		return err_set(err, -EPROTONOSUPPORT, "%s: %s", who, curl_easy_strerror(cc));
	default:
		return err_set(err, -EIO, "%s: %s", who, curl_easy_strerror(cc));
	}
}

/* S3 answers errors in XML: <Code>NoSuchKey</Code><Message>...</Message>. */
static bool xml_field(const char *body, const char *tag, char *buf, size_t size)
{
	char open[40], close[40];
	const char *a, *b;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = strstr(body, open);
	if (!a)
		return false;
	a += strlen(open);
	b = strstr(a, close);
	if (!b)
		return false;
	img_sanitize(a, (size_t)(b - a), buf, size);
	return true;
}

int img_http_status_error(const struct img_http_resp *r, const char *who, const char *what,
			  struct err *err)
{
	char code[64] = "", msg[256] = "";
	int e;

	if (r->status == 401 || r->status == 403)
		e = -EACCES;
	else if (r->status == 404)
		e = -ENOENT;
	else if (r->status == 429)
		e = -EAGAIN;
	else if (r->status == 502 || r->status == 503 || r->status == 504)
		e = -EHOSTUNREACH;
	else
		e = -EIO;

	if (r->body && r->len > 0) {
		json_error_t jerr;
		json_t *root = json_loadb(r->body, r->len, 0, &jerr);
		json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
		json_t *c = json_object_get(e0, "code"), *m = json_object_get(e0, "message");

		if (!e0 && json_is_string(json_object_get(root, "details")))
			m = json_object_get(root, "details"); /* token servers */
		if (json_is_string(c))
			img_sanitize(json_string_value(c), json_string_length(c), code,
				     sizeof(code));
		if (json_is_string(m))
			img_sanitize(json_string_value(m), json_string_length(m), msg, sizeof(msg));
		json_decref(root);
		if (!code[0] && !msg[0]) {
			(void)xml_field(r->body, "Code", code, sizeof(code));
			(void)xml_field(r->body, "Message", msg, sizeof(msg));
		}
	}
	/* Docker prints "MANIFEST_UNKNOWN" as "manifest unknown"; S3's "NoSuchKey" stays. */
	if (strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(code))
		for (char *p = code; *p; p++)
			*p = *p == '_' ? ' ' : (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	if (code[0] || msg[0])
		return err_set(err, e, "%s: %s%s%s%s%s%s", who, code, code[0] && msg[0] ? ": " : "",
			       msg, what ? " (" : "", what ? what : "", what ? ")" : "");
	return err_set(err, e, "%s: HTTP %ld%s%s%s", who, r->status, what ? " (" : "",
		       what ? what : "", what ? ")" : "");
}
