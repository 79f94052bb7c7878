/* SPDX-License-Identifier: MIT */
/*
 * image/ fetching internals shared by ref.c, digest.c, blob.c, manifest.c, auth.c, http.c,
 * registry.c, s3.c and source.c. The building half only uses internal.h.
 */
#pragma once

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "build.h"
#include "internal.h"

/* ---- digests (digest.c) ---- */

/* Streaming sha256 as "sha256:<hex>". */
EVP_MD_CTX *img_sha256_new(void);
int img_sha256_final(EVP_MD_CTX *md, char ret[IMG_DIGEST_MAX]);
int img_digest_buf(const void *data, size_t len, char ret[IMG_DIGEST_MAX]);
static inline void img_sha256_freep(EVP_MD_CTX **md)
{
	if (*md)
		EVP_MD_CTX_free(*md);
}

/* ---- blob writer (blob.c): temp file beside the target, hashed, size-bounded ---- */

struct img_blob_writer {
	int fd;
	char tmp[4096];
	char path[4096];
	EVP_MD_CTX *md;
	uint64_t done, expect;
	img_bytes_cb cb;
	void *ud;
};
int img_blob_writer_open(struct img_blob_writer *w, const char *path, uint64_t expect,
			 img_bytes_cb cb, void *ud);
/* -EFBIG once more than expect bytes arrive. */
int img_blob_writer_write(struct img_blob_writer *w, const void *data, size_t len);
/* Start over (the server ignored our Range). */
int img_blob_writer_rewind(struct img_blob_writer *w);
/* Check size and digest, fsync, rename to path. -EBADMSG on mismatch. */
int img_blob_writer_commit(struct img_blob_writer *w, const char *digest, const char *what,
			   struct err *err);
/* Remove the temp file if not committed. Idempotent. */
void img_blob_writer_done(struct img_blob_writer *w);

/* ---- manifests (manifest.c): pure jansson decoding ---- */

#define IMG_MANIFEST_MAX (4u << 20)
#define IMG_MAX_LAYERS 512

#define IMG_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define IMG_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define IMG_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define IMG_MT_DOCKER_V2 "application/vnd.docker.distribution.manifest.v2+json"
/* What we ask registries for, best first. Schema 1 is deliberately absent. */
#define IMG_MANIFEST_ACCEPT \
	IMG_MT_OCI_INDEX ", " IMG_MT_OCI_MANIFEST ", " IMG_MT_DOCKER_LIST ", " IMG_MT_DOCKER_V2

struct img_platform {
	char os[32];
	char arch[32];
	char variant[32]; /* "" when the platform has none */
};
/* The node's platform from uname(2): linux/amd64, linux/arm64/v8, ... */
void img_platform_host(struct img_platform *ret);

enum {
	IMG_DECODED_MANIFEST = 0,
	IMG_DECODED_INDEX = 1,
};
/*
 * Decode a manifest body (at most IMG_MANIFEST_MAX bytes). content_type (may be NULL or
 * "application/json") is the transport's Content-Type. An image manifest fills ret_manifest
 * (digest left empty for the caller) and returns IMG_DECODED_MANIFEST; an index/list picks the
 * entry for plat into ret_pick and returns IMG_DECODED_INDEX. -EPROTONOSUPPORT for schema 1 and
 * unknown media types, -ENOENT when the index has no entry for plat, -EINVAL for malformed input.
 */
int img_manifest_decode(const char *body, size_t len, const char *content_type,
			const struct img_platform *plat, struct img_manifest *ret_manifest,
			struct img_descriptor *ret_pick, struct err *err);
/* Layer media types we can unpack (tar, tar+gzip, tar+zstd; OCI and Docker names). */
bool img_layer_media_type_ok(const char *mt);

/* ---- auth (auth.c): pure parsers plus the config file loader ---- */

struct img_challenge {
	char scheme[16]; /* "basic" or "bearer", lowercased */
	char realm[1024];
	char service[256];
	char scope[1024];
};
/* Parse one WWW-Authenticate header value; the first Bearer challenge wins over Basic. */
int img_auth_parse_challenge(const char *value, struct img_challenge *ret);

struct img_creds {
	char user[256]; /* "" when only an identity token is known */
	char pass[2048];
	char identity_token[4096]; /* OAuth2 refresh token for the token endpoint, or "" */
	char helper[64];	   /* from the config: ask docker-credential-<helper>, or "" */
};
/* Look registry up in a Docker config.json text: credHelpers, then credsStore (ret->helper
 * set, nothing else), then auths ("auth", "username"/"password", "identitytoken"; a "<token>"
 * user means the password is an identity token). 0 and ret filled, -ENOENT when absent,
 * -EINVAL when malformed. */
int img_auth_parse_docker_config(const char *json, size_t len, const char *registry,
				 struct img_creds *ret, struct err *err);
/* A credential helper's answer to "get" ({"ServerURL","Username","Secret"}; a "<token>"
 * Username makes Secret an identity token). -ENOENT when both are empty (nothing stored),
 * -EINVAL when malformed; the message never quotes the input. */
int img_auth_parse_helper_output(const char *json, size_t len, struct img_creds *ret,
				 struct err *err);
/* The server name Docker hands a helper for registry: "https://index.docker.io/v1/" for
 * Docker Hub, else the registry as written ("host:port"). */
void img_auth_helper_server(const char *registry, char *buf, size_t size);
/* Read path, or $DOCKER_CONFIG/config.json, or ~/.docker/config.json when NULL, and look the
 * registry up; run the helper the config names (credhelper.c), waiting at most
 * helper_timeout_ms (0: IMG_CRED_HELPER_TIMEOUT_MS). -ENOENT when there is no file, no entry,
 * or the helper has no credentials for the registry. */
int img_auth_load(const char *path, const char *registry, unsigned helper_timeout_ms,
		  struct img_creds *ret, struct err *err);

/* ---- credential helpers (credhelper.c) ---- */

#define IMG_CRED_HELPER_TIMEOUT_MS 10000
#define IMG_CRED_HELPER_OUTPUT_MAX (64u << 10)
/* True for a usable helper name: 1-63 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool img_cred_helper_name_ok(const char *name);
/* Run "docker-credential-<helper> get" (found in PATH, no shell, only fds 0-2 passed: stdin
 * carries server, stdout is read up to IMG_CRED_HELPER_OUTPUT_MAX bytes, stderr is discarded),
 * killed after timeout_ms. 0 and ret filled; -ENOENT when the helper says it has no
 * credentials; else an error whose message has the helper's own error text (what it printed
 * when failing), never its successful output. */
int img_cred_helper_get(const char *helper, const char *server, unsigned timeout_ms,
			struct img_creds *ret, struct err *err);
/* Decode a token endpoint answer ({"token"} or {"access_token"}). */
int img_auth_parse_token(const char *json, size_t len, char *ret, size_t size);

/* ---- HTTP helpers (http.c) ---- */

/*
 * What bounds every request of one source: a cancel flag, a total deadline, a stall deadline,
 * and where connections may go. Requests run on a multi handle polled every 100 ms, so a
 * cancel or a deadline ends a transfer within that. Once one fired, every later request of
 * the source fails the same way at once (retries stop).
 */
struct img_xfer {
	CURLM *multi;		   /* created on first use; keeps the connection cache */
	const atomic_bool *cancel; /* NULL: never cancelled */
	uint64_t deadline_ns;	   /* CLOCK_MONOTONIC; 0: none */
	unsigned timeout_ms;	   /* what the deadline was, for the message */
	unsigned stall_ms;	   /* 0: no stall deadline */
	char name[IMG_REF_MAX];	   /* the reference, for "pull of NAME timed out" */
	int stopped;		   /* sticky -ECANCELED or -ETIMEDOUT */
	char stop_msg[512];
	/* Addresses: the class of the first address this source connected to (its registry
	 * or endpoint); once that is public, loopback, link-local and private addresses are
	 * refused (a redirect or token realm pointing inwards). */
	int origin_class; /* 0 unknown, else IMG_ADDR_* */
	char refused[128];
};
enum {
	IMG_ADDR_PUBLIC = 1,
	IMG_ADDR_INTERNAL = 2, /* loopback, link-local, RFC 1918, ULA, unspecified, CGNAT */
};
/* Classify an address (struct sockaddr_in/in6). Pure. */
struct sockaddr;
int img_addr_class(const struct sockaddr *sa, size_t len);
uint64_t img_now_ns(void);
/* Arm x from limits (0 fields: defaults) with cancel and the reference's name. */
void img_xfer_init(struct img_xfer *x, const struct img_limits *lim, const atomic_bool *cancel,
		   const char *name);
void img_xfer_done(struct img_xfer *x);
/* 0, or x's stop reason (-ECANCELED/-ETIMEDOUT, message in err) if cancelled or past the
 * deadline now. */
int img_xfer_check(struct img_xfer *x, struct err *err);
/* Sleep ms, waking early (with the error) on cancel or the deadline. */
int img_xfer_sleep(struct img_xfer *x, unsigned ms, struct err *err);

struct img_http_resp {
	long status;
	char *body; /* NUL-terminated, at most body_max bytes */
	size_t len, body_max;
	bool body_too_big;
	char content_type[128];
	char docker_digest[IMG_DIGEST_MAX];
	char www_authenticate[2048];
	char amz_checksum[128];
	char etag[128];
	uint64_t content_length;
	bool have_content_length;
	struct img_blob_writer *sink; /* when set, 2xx bodies go here instead of body */
	long resume_from;	      /* range start asked for; 206 expected */
	long long range_start;	      /* from Content-Range, -1 when absent */
	int sink_error;
};
void img_http_resp_done(struct img_http_resp *r);
/* A fresh easy handle with our defaults: no signals, timeouts, http(s) only, redirects, and
 * the address policy of x (which must outlive the handle). */
CURL *img_http_new(struct img_xfer *x);
/* Perform a request under x's bounds; returns 0 or -errno from a CURLcode with text in err:
 * -ECANCELED, -ETIMEDOUT ("pull of X timed out after N s", "... stalled: no data for N s"),
 * -EACCES for a refused address, -ENOSPC ("disk full") when the sink cannot be written. */
int img_http_perform(struct img_xfer *x, CURL *c, const char *url, struct curl_slist *headers,
		     struct img_http_resp *r, const char *who, struct err *err);
/* Map an HTTP error status plus a registry JSON error body to -errno and a message. */
int img_http_status_error(const struct img_http_resp *r, const char *who, const char *what,
			  struct err *err);
/* Copy printable ASCII of s (len bytes) to buf, for quoting remote text in messages. */
void img_sanitize(const char *s, size_t len, char *buf, size_t size);
/* Append percent-encoded s to buf; keep_slash keeps '/' literal. -ENOBUFS if it doesn't fit. */
int img_url_escape(const char *s, bool keep_slash, char *buf, size_t size);
/* True if the transfer error is worth retrying (connection broke mid-body). */
bool img_http_retryable(int r);

DEFINE_CLEANUP_FUNC(CURL, curl_easy_cleanup);
DEFINE_CLEANUP_FUNC(struct curl_slist, curl_slist_free_all);

/* ---- sources (registry.c, s3.c, dispatched by source.c) ---- */

struct img_source_ops {
	int (*resolve)(struct img_source *src, struct img_manifest *ret, struct err *err);
	/* Optional: see img_source_version(). */
	int (*version)(struct img_source *src, char ret[IMG_VERSION_MAX], struct err *err);
	int (*fetch_blob)(struct img_source *src, const struct img_descriptor *desc,
			  const char *path, img_bytes_cb cb, void *ud, struct err *err);
	void (*free)(struct img_source *src);
};
struct img_source {
	const struct img_source_ops *ops;
	struct img_ref ref;
	struct img_platform platform;
	struct img_limits limits; /* defaults filled in */
	struct img_xfer xfer;	  /* bounds of every request; the store re-arms cancel */
};

int img_registry_open(const struct img_store_config *cfg, const struct img_ref *ref,
		      struct img_source **ret, struct err *err);
/* Registry sources only, for signature checks (cosign.c): the raw manifest at reference (a tag
 * or digest; -ENOENT when absent), and a blob of at most max bytes into memory, checked against
 * desc. *ret is NUL-terminated, the caller frees it. -EPROTONOSUPPORT for other sources. */
int img_registry_get_manifest(struct img_source *src, const char *reference, char **ret,
			      size_t *ret_len, struct err *err);
int img_registry_get_blob(struct img_source *src, const struct img_descriptor *desc, size_t max,
			  char **ret, size_t *ret_len, struct err *err);
int img_s3_open(const struct img_store_config *cfg, const struct img_ref *ref,
		struct img_source **ret, struct err *err);

/* ---- S3 settings (s3-config.c) ---- */

/* Minimal INI lookup as the AWS CLI files use it: "[section]", "key = value", '#'/';'
 * comments. 0 and buf filled, -ENOENT when absent, -EINVAL when the value doesn't fit. */
int img_ini_get(const char *text, size_t len, const char *section, const char *key, char *buf,
		size_t size);

struct img_s3_settings {
	char region[64];
	char endpoint[512]; /* "" for AWS itself */
	char access_key[128];
	char secret_key[256];
	char session_token[4096];
	bool have_creds;
};
/* From AWS_* variables, then ~/.aws/credentials and ~/.aws/config (AWS_PROFILE). */
int img_s3_settings_load(struct img_s3_settings *ret, struct err *err);
/* The object URL: path style for custom endpoints and dotted buckets. */
int img_s3_object_url(const struct img_s3_settings *s, const char *bucket, const char *key,
		      char *buf, size_t size);
