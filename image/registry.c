/* SPDX-License-Identifier: MIT */
/*
 * The distribution (OCI registry v2) client: manifests and blobs over libcurl, with anonymous,
 * Basic and Bearer-token authentication driven by the registry's WWW-Authenticate challenge.
 * One source per pull, one thread, one reused curl handle.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

#define TOKEN_MAX 16384
#define BLOB_ATTEMPTS 5

struct registry {
	struct img_source base;
	CURL *curl;
	char who[300];
	char base_url[600]; /* scheme://host/v2/<repository> */
	struct img_creds creds;
	bool have_creds;
	char auth[TOKEN_MAX + 64]; /* "Authorization: ..." or "" */
	bool auth_is_basic;
};

static bool is_insecure(const struct img_store_config *cfg, const char *registry)
{
	const char *port = NULL;
	size_t hostlen;

	if (!cfg || !cfg->insecure)
		return false;
	/* host part of "host:port" / "[v6]:port" */
	if (registry[0] == '[') {
		const char *close = strchr(registry, ']');
		port = close && close[1] == ':' ? close + 1 : NULL;
	} else {
		port = strchr(registry, ':');
	}
	hostlen = port ? (size_t)(port - registry) : strlen(registry);
	for (const char *const *e = cfg->insecure; *e; e++) {
		if (strcmp(*e, registry) == 0)
			return true;
		if (strlen(*e) == hostlen && strncmp(*e, registry, hostlen) == 0)
			return true; /* an entry without a port covers every port */
	}
	return false;
}

static int basic_header(const struct img_creds *c, char *buf, size_t size)
{
	char plain[sizeof(c->user) + sizeof(c->pass) + 2];
	unsigned char enc[((sizeof(plain) + 2) / 3) * 4 + 1];
	int n = snprintf(plain, sizeof(plain), "%s:%s", c->user, c->pass);

	if (n < 0 || (size_t)n >= sizeof(plain))
		return -EINVAL;
	(void)EVP_EncodeBlock(enc, (const unsigned char *)plain, n);
	explicit_bzero(plain, sizeof(plain));
	if ((size_t)snprintf(buf, size, "Authorization: Basic %s", enc) >= size)
		return -ENOBUFS;
	explicit_bzero(enc, sizeof(enc));
	return 0;
}

/* OAuth2 (Docker's token spec): trade the identity (refresh) token for an access token with a
 * form POST to the realm. The request body holds the secret and is wiped after. */
static int post_refresh(struct registry *reg, const struct img_challenge *ch, const char *scope,
			struct img_http_resp *resp, const char *who, struct err *err)
{
	_cleanup_(curl_slist_free_allp) struct curl_slist *hdrs = NULL;
	size_t size = sizeof(reg->creds.identity_token) * 3 + 4096;
	char *body = malloc(size);
	int r;

	if (!body)
		return -ENOMEM;
	snprintf(body, size, "grant_type=refresh_token&client_id=mvmfs&service=");
	r = img_url_escape(ch->service, false, body, size);
	if (r >= 0 && strlen(body) + 8 < size) {
		memcpy(body + strlen(body), "&scope=", 8);
		r = img_url_escape(scope, false, body, size);
	}
	if (r >= 0 && strlen(body) + 16 < size) {
		memcpy(body + strlen(body), "&refresh_token=", 16);
		r = img_url_escape(reg->creds.identity_token, false, body, size);
	}
	hdrs = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	if (r >= 0 && hdrs && curl_easy_setopt(reg->curl, CURLOPT_COPYPOSTFIELDS, body) == CURLE_OK)
		r = img_http_perform(&reg->base.xfer, reg->curl, ch->realm, hdrs, resp, who, err);
	else
		r = err_set(err, r < 0 ? -EINVAL : -ENOMEM, "%s: cannot build the token request",
			    who);
	(void)curl_easy_setopt(reg->curl, CURLOPT_HTTPGET, 1L); /* back to GET, copy freed */
	explicit_bzero(body, size);
	free(body);
	return r;
}

/* Ask the token endpoint named by a Bearer challenge for a pull token. */
static int get_token(struct registry *reg, const struct img_challenge *ch, struct err *err)
{
	_cleanup_(curl_slist_free_allp) struct curl_slist *hdrs = NULL;
	struct img_http_resp resp = {.body_max = 1u << 20};
	char url[4096], basic[sizeof(reg->auth)], scope[1100], who[400];
	_cleanup_free_ char *token = NULL;
	int r;

	if (strncmp(ch->realm, "https://", 8) != 0 && strncmp(ch->realm, "http://", 7) != 0)
		return err_set(err, -EACCES, "%s: token realm is not an http(s) URL", reg->who);
	if (ch->scope[0])
		snprintf(scope, sizeof(scope), "%s", ch->scope);
	else
		snprintf(scope, sizeof(scope), "repository:%s:pull", reg->base.ref.repository);
	snprintf(url, sizeof(url), "%s%cservice=", ch->realm, strchr(ch->realm, '?') ? '&' : '?');
	r = img_url_escape(ch->service, false, url, sizeof(url));
	if (r >= 0 && strlen(url) + 8 < sizeof(url)) {
		strcat(url, "&scope=");
		r = img_url_escape(scope, false, url, sizeof(url));
	}
	if (r < 0)
		return err_set(err, -EACCES, "%s: token URL too long", reg->who);
	/* Credentials go over TLS unless the registry itself was declared plain HTTP. */
	if (reg->have_creds && strncmp(ch->realm, "http://", 7) == 0 &&
	    strncmp(reg->base_url, "https://", 8) == 0)
		return err_set(err, -EACCES,
			       "%s: token realm '%s' is plain HTTP, not sending credentials there",
			       reg->who, ch->realm);
	snprintf(who, sizeof(who), "%s token endpoint", reg->who);
	if (reg->creds.identity_token[0]) {
		r = post_refresh(reg, ch, scope, &resp, who, err);
		if (r < 0)
			return r;
		goto answer;
	}
	if (reg->have_creds) {
		r = basic_header(&reg->creds, basic, sizeof(basic));
		if (r < 0)
			return err_set(err, -EINVAL, "%s: credentials too long", reg->who);
		hdrs = curl_slist_append(NULL, basic);
		explicit_bzero(basic, sizeof(basic));
		if (!hdrs)
			return -ENOMEM;
	}
	r = img_http_perform(&reg->base.xfer, reg->curl, url, hdrs, &resp, who, err);
	if (r < 0)
		return r;
answer:
	if (resp.status != 200 && reg->creds.identity_token[0] &&
	    (resp.status == 400 || resp.status == 401)) {
		img_http_resp_done(&resp);
		return err_set(err, -EACCES, "%s: identity token refused (HTTP %ld)", who,
			       resp.status);
	}
	if (resp.status != 200) {
		r = img_http_status_error(&resp, who, NULL, err);
		img_http_resp_done(&resp);
		/* Whatever the token server says, it means we may not pull. */
		if (r == -ENOENT || r == -EIO) {
			r = -EACCES;
			if (err)
				err->code = r;
		}
		return r;
	}
	token = malloc(TOKEN_MAX);
	if (!token) {
		img_http_resp_done(&resp);
		return -ENOMEM;
	}
	r = img_auth_parse_token(resp.body ? resp.body : "", resp.len, token, TOKEN_MAX);
	img_http_resp_done(&resp);
	if (r < 0)
		return err_set(err, -EACCES, "%s: no usable token in the answer", who);
	snprintf(reg->auth, sizeof(reg->auth), "Authorization: Bearer %s", token);
	reg->auth_is_basic = false;
	return 0;
}

/* React to a 401: 1 when we have new credentials to retry with, 0 when we don't. */
static int authenticate(struct registry *reg, const struct img_http_resp *resp, struct err *err)
{
	struct img_challenge ch;

	if (img_auth_parse_challenge(resp->www_authenticate, &ch) < 0)
		return 0;
	if (strcmp(ch.scheme, "basic") == 0) {
		if (!reg->have_creds || !reg->creds.user[0] || reg->auth_is_basic)
			return 0;
		if (basic_header(&reg->creds, reg->auth, sizeof(reg->auth)) < 0)
			return err_set(err, -EINVAL, "%s: credentials too long", reg->who);
		reg->auth_is_basic = true;
		return 1;
	}
	int r = get_token(reg, &ch, err);
	return r < 0 ? r : 1;
}

/* GET url with our Accept/Authorization, answering one 401 challenge. */
static int request(struct registry *reg, const char *url, const char *accept,
		   struct img_http_resp *resp, struct err *err)
{
	for (int attempt = 0;; attempt++) {
		_cleanup_(curl_slist_free_allp) struct curl_slist *hdrs = NULL;
		int r;

		if (accept && !(hdrs = curl_slist_append(hdrs, accept)))
			return -ENOMEM;
		if (reg->auth[0]) {
			struct curl_slist *n = curl_slist_append(hdrs, reg->auth);
			if (!n)
				return -ENOMEM;
			hdrs = n;
		}
		r = img_http_perform(&reg->base.xfer, reg->curl, url, hdrs, resp, reg->who, err);
		if (r < 0 || resp->status != 401 || attempt > 0)
			return r;
		r = authenticate(reg, resp, err);
		if (r <= 0)
			return r;
	}
}

static int fetch_manifest(struct registry *reg, const char *reference, const char *expect,
			  struct img_http_resp *resp, char digest[IMG_DIGEST_MAX], struct err *err)
{
	char url[1024], what[400];
	int r;

	snprintf(what, sizeof(what), "%s%c%s", reg->base.ref.repository,
		 img_digest_is_valid(reference) ? '@' : ':', reference);
	if ((size_t)snprintf(url, sizeof(url), "%s/manifests/%s", reg->base_url, reference) >=
	    sizeof(url))
		return err_set(err, -EINVAL, "%s: URL too long", reg->who);
	resp->body_max = (size_t)reg->base.limits.max_manifest_bytes;
	r = request(reg, url, "Accept: " IMG_MANIFEST_ACCEPT, resp, err);
	if (r == -EFBIG)
		return err_set(err, -EFBIG, "%s: manifest %s larger than %zu bytes", reg->who, what,
			       resp->body_max);
	if (r < 0)
		return r;
	if (resp->status != 200)
		return img_http_status_error(resp, reg->who, what, err);
	r = img_digest_buf(resp->body ? resp->body : "", resp->len, digest);
	if (r < 0)
		return err_set(err, r, "%s: hashing manifest failed", reg->who);
	if (expect && strcmp(expect, digest) != 0)
		return err_set(err, -EBADMSG, "%s: manifest %s has digest %s", reg->who, what,
			       digest);
	if (resp->docker_digest[0] && strcmp(resp->docker_digest, digest) != 0)
		return err_set(
			err, -EBADMSG,
			"%s: manifest %s: Docker-Content-Digest %s does not match the body (%s)",
			reg->who, what, resp->docker_digest, digest);
	return 0;
}

static int registry_resolve(struct img_source *src, struct img_manifest *ret, struct err *err)
{
	struct registry *reg = (struct registry *)src;
	struct img_descriptor pick = {};
	struct img_manifest m = {};
	char digest[IMG_DIGEST_MAX], name[400], index_digest[IMG_DIGEST_MAX] = "";
	bool have_pick = false;
	int r;

	for (int depth = 0;; depth++) {
		struct img_http_resp resp = {};
		struct img_descriptor next = {};
		const char *reference = have_pick	     ? pick.digest
					: src->ref.digest[0] ? src->ref.digest
							     : src->ref.tag;
		const char *expect = have_pick		  ? pick.digest
				     : src->ref.digest[0] ? src->ref.digest
							  : NULL;

		snprintf(name, sizeof(name), "%s%c%s", src->ref.repository,
			 img_digest_is_valid(reference) ? '@' : ':', reference);
		if (have_pick && pick.size > src->limits.max_manifest_bytes)
			return err_set(
				err, -EFBIG,
				"%s: manifest %s declares %llu bytes, over the limit of %llu",
				reg->who, name, (unsigned long long)pick.size,
				(unsigned long long)src->limits.max_manifest_bytes);
		r = fetch_manifest(reg, reference, expect, &resp, digest, err);
		if (r >= 0 && have_pick && resp.len != pick.size)
			r = err_set(err, -EBADMSG, "%s: manifest %s is %zu bytes, index says %llu",
				    reg->who, name, resp.len, (unsigned long long)pick.size);
		if (r >= 0) {
			r = img_manifest_decode(resp.body ? resp.body : "", resp.len,
						resp.content_type, &src->platform, &m, &next, err);
			if (r < 0)
				err_prefix(err, "%s: %s: ", reg->who, name);
		}
		img_http_resp_done(&resp);
		if (r < 0)
			return r;
		if (r == IMG_DECODED_MANIFEST)
			break;
		if (depth >= 2)
			return err_set(err, -EPROTONOSUPPORT,
				       "%s: %s: image indexes nested too deep", reg->who, name);
		if (depth == 0)
			memcpy(index_digest, digest, IMG_DIGEST_MAX);
		pick = next;
		have_pick = true;
	}
	memcpy(m.digest, digest, IMG_DIGEST_MAX);
	memcpy(m.index_digest, index_digest, IMG_DIGEST_MAX);
	*ret = m;
	return 0;
}

static int registry_fetch_blob(struct img_source *src, const struct img_descriptor *desc,
			       const char *path, img_bytes_cb cb, void *ud, struct err *err)
{
	struct registry *reg = (struct registry *)src;
	_cleanup_(img_blob_writer_done) struct img_blob_writer w = {.fd = -EBADF};
	char url[1024];
	int r;

	if (!img_digest_is_valid(desc->digest))
		return err_set(err, -EINVAL, "%s: bad blob digest", reg->who);
	snprintf(url, sizeof(url), "%s/blobs/%s", reg->base_url, desc->digest);
	r = img_blob_writer_open(&w, path, desc->size, cb, ud);
	if (r < 0)
		return err_set(err, r, "%s: creating a file for blob %s: %s", reg->who,
			       desc->digest, strerror(-r));
	for (int attempt = 1;; attempt++) {
		struct img_http_resp resp = {.sink = &w, .resume_from = (long)w.done};

		r = request(reg, url, NULL, &resp, err);
		if (r >= 0 && resp.status == 416) {
			/* Nothing after the bytes we have: the blob is shorter than described. */
			img_http_resp_done(&resp);
			return err_set(
				err, -EBADMSG,
				"%s: blob %s is shorter than its descriptor says (%llu bytes)",
				reg->who, desc->digest, (unsigned long long)desc->size);
		} else if (r >= 0 && resp.status == 200 && resp.have_content_length &&
			   resp.content_length != desc->size) {
			img_http_resp_done(&resp);
			return err_set(err, -EBADMSG,
				       "%s: blob %s is %llu bytes, its descriptor says %llu",
				       reg->who, desc->digest,
				       (unsigned long long)resp.content_length,
				       (unsigned long long)desc->size);
		} else if (r >= 0 && resp.status != 200 && resp.status != 206) {
			r = img_http_status_error(&resp, reg->who, desc->digest, err);
			/* Overload and gateway trouble pass; anything else is final. */
			if (r != -EAGAIN && r != -EHOSTUNREACH) {
				img_http_resp_done(&resp);
				return r;
			}
			r = -ECONNRESET;
		} else if (r >= 0 && w.done < desc->size) {
			r = err_set(err, -ECONNRESET, "%s: blob %s: connection closed early",
				    reg->who, desc->digest);
		}
		img_http_resp_done(&resp);
		if (r >= 0)
			break;
		if (!img_http_retryable(r) || attempt >= BLOB_ATTEMPTS || reg->base.xfer.stopped)
			return err ? err->code : r;
		r = img_xfer_sleep(&reg->base.xfer, 200u * (unsigned)attempt, err);
		if (r < 0)
			return r;
	}
	return img_blob_writer_commit(&w, desc->digest, reg->who, err);
}

static void registry_free(struct img_source *src)
{
	struct registry *reg = (struct registry *)src;

	if (reg->curl)
		curl_easy_cleanup(reg->curl);
	img_xfer_done(&reg->base.xfer);
	explicit_bzero(&reg->creds, sizeof(reg->creds));
	explicit_bzero(reg->auth, sizeof(reg->auth));
	free(reg);
}

static const struct img_source_ops registry_ops = {
	.resolve = registry_resolve,
	.fetch_blob = registry_fetch_blob,
	.free = registry_free,
};

int img_registry_open(const struct img_store_config *cfg, const struct img_ref *ref,
		      struct img_source **ret, struct err *err)
{
	struct registry *reg;
	const char *host =
		strcmp(ref->registry, "docker.io") == 0 ? "registry-1.docker.io" : ref->registry;
	int r;

	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	reg->base.ops = &registry_ops;
	reg->base.ref = *ref;
	img_platform_host(&reg->base.platform);
	snprintf(reg->who, sizeof(reg->who), "registry %s", ref->registry);
	snprintf(reg->base_url, sizeof(reg->base_url), "%s://%s/v2/%s",
		 is_insecure(cfg, ref->registry) ? "http" : "https", host, ref->repository);
	r = img_auth_load(cfg ? cfg->docker_config : NULL, ref->registry,
			  cfg ? cfg->cred_helper_timeout_ms : 0, &reg->creds, err);
	if (r < 0 && r != -ENOENT) {
		registry_free(&reg->base);
		return r;
	}
	reg->have_creds = r == 0;
	reg->curl = img_http_new(&reg->base.xfer);
	if (!reg->curl) {
		registry_free(&reg->base);
		return -ENOMEM;
	}
	*ret = &reg->base;
	return 0;
}

/* ---- for signature checks (cosign.c) ---- */

int img_registry_get_manifest(struct img_source *src, const char *reference, char **ret,
			      size_t *ret_len, struct err *err)
{
	struct registry *reg = (struct registry *)src;
	struct img_http_resp resp = {};
	char digest[IMG_DIGEST_MAX];
	int r;

	if (src->ops != &registry_ops)
		return err_set(err, -EPROTONOSUPPORT, "signatures live in registries only");
	r = fetch_manifest(reg, reference, NULL, &resp, digest, err);
	if (r < 0) {
		img_http_resp_done(&resp);
		return r;
	}
	*ret = resp.body ? resp.body : strdup("");
	*ret_len = resp.len;
	return *ret ? 0 : -ENOMEM;
}

int img_registry_get_blob(struct img_source *src, const struct img_descriptor *desc, size_t max,
			  char **ret, size_t *ret_len, struct err *err)
{
	struct registry *reg = (struct registry *)src;
	struct img_http_resp resp = {.body_max = max};
	char url[1024], digest[IMG_DIGEST_MAX];
	int r;

	if (src->ops != &registry_ops)
		return err_set(err, -EPROTONOSUPPORT, "signatures live in registries only");
	if (!img_digest_is_valid(desc->digest) || desc->size > max)
		return err_set(err, -EINVAL, "%s: bad blob descriptor", reg->who);
	snprintf(url, sizeof(url), "%s/blobs/%s", reg->base_url, desc->digest);
	r = request(reg, url, NULL, &resp, err);
	if (r >= 0 && resp.status != 200)
		r = img_http_status_error(&resp, reg->who, desc->digest, err);
	if (r >= 0 && (resp.len != desc->size ||
		       img_digest_buf(resp.body ? resp.body : "", resp.len, digest) < 0 ||
		       strcmp(digest, desc->digest) != 0))
		r = err_set(err, -EBADMSG, "%s: blob %s does not match its digest and size",
			    reg->who, desc->digest);
	if (r < 0) {
		img_http_resp_done(&resp);
		return r;
	}
	*ret = resp.body ? resp.body : strdup("");
	*ret_len = resp.len;
	return *ret ? 0 : -ENOMEM;
}
