/* SPDX-License-Identifier: MIT */
/*
 * S3 source: s3://BUCKET/KEY names an OCI image layout archive (the tar `skopeo copy ...
 * oci-archive:FILE` writes). resolve() downloads the object once (SigV4-signed with libcurl's
 * CURLOPT_AWS_SIGV4, size-bounded, resumed with Range after a broken transfer) into an unnamed
 * temp file, then reads index.json and the manifest from it; fetch_blob() copies one
 * blobs/sha256/<hex> entry out of the archive with libarchive, verifying size and digest.
 * version() is a HEAD request: the object's ETag and size, hashed, which the store compares with
 * what it recorded last time so a warm start downloads nothing.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch.h"
#include "fileio.h"

#define S3_ATTEMPTS 5
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3 {
	struct img_source base;
	CURL *curl;
	struct img_s3_settings set;
	char who[1100];
	char url[4096];
	char tmpdir[4096];
	uint64_t max_bytes;
	int archive_fd; /* the downloaded archive, unlinked; -EBADF until resolve() */
};

static void archive_read_freep(struct archive **a)
{
	if (*a)
		(void)archive_read_free(*a);
}

/* An unnamed file for the archive: in the store's tmp dir when there is one. */
static int open_temp(const char *dir)
{
	char path[4200];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd >= 0 ? fd : negative_errno();
	snprintf(path, sizeof(path), "%s/s3-archive.XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	(void)unlink(path);
	return fd;
}

static int s3_headers(struct s3 *s, struct curl_slist **ret)
{
	struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " EMPTY_SHA256);
	char tok[sizeof(s->set.session_token) + 32];

	if (!h)
		return -ENOMEM;
	if (s->set.have_creds && s->set.session_token[0]) {
		struct curl_slist *n;
		snprintf(tok, sizeof(tok), "x-amz-security-token: %s", s->set.session_token);
		n = curl_slist_append(h, tok);
		explicit_bzero(tok, sizeof(tok));
		if (!n) {
			curl_slist_free_all(h);
			return -ENOMEM;
		}
		h = n;
	}
	*ret = h;
	return 0;
}

static int download(struct s3 *s, struct err *err)
{
	_cleanup_(curl_slist_free_allp) struct curl_slist *hdrs = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct img_blob_writer w = {.fd = -EBADF};
	int r;

	r = s3_headers(s, &hdrs);
	if (r < 0)
		return r;
	fd = open_temp(s->tmpdir);
	if (fd < 0)
		return err_set(err, fd, "%s: creating a temp file in '%s': %s", s->who, s->tmpdir,
			       strerror(-fd));
	/* A writer without a name: hashes, bounds and rewinds; we never commit it. */
	w.fd = fd;
	w.expect = s->max_bytes;
	w.md = img_sha256_new();
	if (!w.md)
		return -ENOMEM;
	for (int attempt = 1;; attempt++) {
		struct img_http_resp resp = {.sink = &w, .resume_from = (long)w.done};

		r = img_http_perform(&s->base.xfer, s->curl, s->url, hdrs, &resp, s->who, err);
		if (r == -EBADMSG)
			r = err_set(err, -EFBIG, "%s: archive larger than %llu bytes", s->who,
				    (unsigned long long)s->max_bytes);
		if (r >= 0 && resp.status != 200 && resp.status != 206) {
			r = img_http_status_error(&resp, s->who, NULL, err);
			img_http_resp_done(&resp);
			break;
		}
		if (r >= 0 && !resp.have_content_length) {
			r = err_set(err, -EBADMSG, "%s: no Content-Length in the answer", s->who);
			img_http_resp_done(&resp);
			break;
		}
		/* 206 carries the remaining length, 200 the whole. */
		if (r >= 0 &&
		    resp.content_length + (resp.status == 206 ? (uint64_t)resp.resume_from : 0) !=
			    w.done)
			r = err_set(err, -ECONNRESET, "%s: transfer ended early", s->who);
		img_http_resp_done(&resp);
		if (r >= 0 || !img_http_retryable(r) || attempt >= S3_ATTEMPTS ||
		    s->base.xfer.stopped)
			break;
		r = img_xfer_sleep(&s->base.xfer, 200u * (unsigned)attempt, err);
		if (r < 0)
			break;
	}
	EVP_MD_CTX_free(w.md);
	if (r < 0)
		return r;
	s->archive_fd = TAKE_FD(fd);
	return 0;
}

static int s3_version(struct img_source *src, char ret[IMG_VERSION_MAX], struct err *err)
{
	struct s3 *s = (struct s3 *)src;
	_cleanup_(curl_slist_free_allp) struct curl_slist *hdrs = NULL;
	struct img_http_resp resp = {};
	char line[sizeof(resp.etag) + 32], digest[IMG_DIGEST_MAX];
	int r;

	r = s3_headers(s, &hdrs);
	if (r < 0)
		return r;
	if (curl_easy_setopt(s->curl, CURLOPT_NOBODY, 1L) != CURLE_OK)
		return -ENOMEM;
	r = img_http_perform(&s->base.xfer, s->curl, s->url, hdrs, &resp, s->who, err);
	/* Back to GET for download(). */
	if (curl_easy_setopt(s->curl, CURLOPT_HTTPGET, 1L) != CURLE_OK && r >= 0)
		r = -ENOMEM;
	if (r >= 0 && resp.status != 200)
		r = img_http_status_error(&resp, s->who, NULL, err);
	if (r >= 0 && resp.etag[0] && resp.have_content_length) {
		/* Fixed length and charset whatever the server sent: the store keeps it in a record
		 * of bounded size. */
		snprintf(line, sizeof(line), "%s %llu", resp.etag,
			 (unsigned long long)resp.content_length);
		r = img_digest_buf(line, strlen(line), digest);
		if (r >= 0) {
			memcpy(ret, digest + 7, IMG_VERSION_MAX - 1); /* 128 bits are plenty */
			ret[IMG_VERSION_MAX - 1] = '\0';
		}
	}
	img_http_resp_done(&resp);
	return r;
}

/* Position the reader at the archive entry called name ("./" prefixes ignored). Returns the
 * entry size, -ENOENT when absent. */
static int64_t open_entry(struct s3 *s, const char *name, struct archive **ret, struct err *err)
{
	_cleanup_(archive_read_freep) struct archive *a = NULL;
	struct archive_entry *e;

	if (lseek(s->archive_fd, 0, SEEK_SET) < 0)
		return negative_errno();
	a = archive_read_new();
	if (!a)
		return -ENOMEM;
	/* Only the in-process decompressors: filter_all would run external programs (lrzip,
	 * lzop, grzip...) from PATH on the object's bytes. A libarchive without built-in zstd
	 * answers ARCHIVE_WARN ("using external program"): refused like any other. */
	if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_support_filter_none(a) != ARCHIVE_OK ||
	    archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(a) != ARCHIVE_OK)
		return err_set(err, -EOPNOTSUPP,
			       "%s: libarchive lacks built-in gzip/zstd/tar support", s->who);
	if (archive_read_open_fd(a, s->archive_fd, 65536) != ARCHIVE_OK)
		return err_set(err, -EBADMSG, "%s: not a tar archive (plain, gzip or zstd): %.200s",
			       s->who, archive_error_string(a) ? archive_error_string(a) : "?");
	for (;;) {
		int r = archive_read_next_header(a, &e);
		const char *p;

		if (r == ARCHIVE_EOF)
			return -ENOENT;
		if (r == ARCHIVE_WARN && archive_error_string(a) &&
		    strstr(archive_error_string(a), "external program"))
			return err_set(err, -EOPNOTSUPP, "%s: refusing an external decompressor",
				       s->who);
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
			return err_set(err, -EBADMSG, "%s: reading the archive: %.200s", s->who,
				       archive_error_string(a) ? archive_error_string(a) : "?");
		p = archive_entry_pathname(e);
		if (!p)
			continue;
		while (strncmp(p, "./", 2) == 0)
			p += 2;
		if (strcmp(p, name) != 0 || archive_entry_filetype(e) != AE_IFREG)
			continue;
		if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
			return err_set(err, -EBADMSG, "%s: %s has no size", s->who, name);
		*ret = TAKE_PTR(a);
		return archive_entry_size(e);
	}
}

/* Copy the open entry (size bytes) into w. */
static int copy_entry(struct s3 *s, struct archive *a, struct img_blob_writer *w, int64_t size,
		      struct err *err)
{
	char buf[65536];
	int64_t left = size;

	while (left > 0) {
		la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
		int r;

		if (n < 0)
			return err_set(err, -EBADMSG, "%s: reading the archive: %s", s->who,
				       archive_error_string(a) ? archive_error_string(a) : "?");
		if (n == 0)
			return err_set(err, -EBADMSG, "%s: archive entry truncated", s->who);
		r = img_blob_writer_write(w, buf, (size_t)n);
		if (r == -EFBIG)
			return err_set(err, -EBADMSG, "%s: blob larger than its descriptor",
				       s->who);
		if (r < 0)
			return err_set(err, r, "%s: writing blob: %s", s->who, strerror(-r));
		left -= n;
	}
	return 0;
}

/* A small file from the archive into memory: index.json or a manifest blob. */
static int read_small(struct s3 *s, const char *name, char **ret, size_t *ret_len, struct err *err)
{
	_cleanup_(archive_read_freep) struct archive *a = NULL;
	_cleanup_free_ char *buf = NULL;
	int64_t size = open_entry(s, name, &a, err);
	size_t got = 0;

	if (size == -ENOENT)
		return err_set(err, -ENOENT, "%s: no %s in the archive (not an OCI layout?)",
			       s->who, name);
	if (size < 0)
		return (int)size;
	if ((uint64_t)size > s->base.limits.max_manifest_bytes)
		return err_set(err, -EFBIG, "%s: %s declares %lld bytes, over the limit of %llu",
			       s->who, name, (long long)size,
			       (unsigned long long)s->base.limits.max_manifest_bytes);
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)size) {
		la_ssize_t n = archive_read_data(a, buf + got, (size_t)size - got);
		if (n <= 0)
			return err_set(err, -EBADMSG, "%s: reading %s from the archive failed",
				       s->who, name);
		got += (size_t)n;
	}
	buf[got] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_len = got;
	return 0;
}

static int s3_resolve(struct img_source *src, struct img_manifest *ret, struct err *err)
{
	struct s3 *s = (struct s3 *)src;
	struct img_descriptor pick = {};
	struct img_manifest m = {};
	char name[100], digest[IMG_DIGEST_MAX];
	int r;

	if (s->archive_fd < 0) {
		r = download(s, err);
		if (r < 0)
			return r;
	}
	snprintf(name, sizeof(name), "index.json");
	for (int depth = 0;; depth++) {
		_cleanup_free_ char *body = NULL;
		struct img_descriptor next = {};
		size_t len = 0;

		r = read_small(s, name, &body, &len, err);
		if (r < 0)
			return r;
		if (depth > 0) {
			r = img_digest_buf(body, len, digest);
			if (r < 0)
				return r;
			if (strcmp(digest, pick.digest) != 0 || len != pick.size)
				return err_set(err, -EBADMSG,
					       "%s: manifest %s does not match its digest or size",
					       s->who, pick.digest);
		}
		r = img_manifest_decode(body, len, depth == 0 ? IMG_MT_OCI_INDEX : NULL,
					&src->platform, &m, &next, err);
		if (r < 0)
			return err_prefix(err, "%s: %s: ", s->who, name);
		if (r == IMG_DECODED_MANIFEST) {
			if (depth == 0)
				return err_set(err, -EPROTONOSUPPORT,
					       "%s: index.json is not an image index", s->who);
			break;
		}
		if (depth >= 3)
			return err_set(err, -EPROTONOSUPPORT, "%s: image indexes nested too deep",
				       s->who);
		pick = next;
		snprintf(name, sizeof(name), "blobs/sha256/%s", pick.digest + 7);
	}
	memcpy(m.digest, pick.digest, IMG_DIGEST_MAX);
	*ret = m;
	return 0;
}

static int s3_fetch_blob(struct img_source *src, const struct img_descriptor *desc,
			 const char *path, img_bytes_cb cb, void *ud, struct err *err)
{
	struct s3 *s = (struct s3 *)src;
	_cleanup_(img_blob_writer_done) struct img_blob_writer w = {.fd = -EBADF};
	_cleanup_(archive_read_freep) struct archive *a = NULL;
	char name[100];
	int64_t size;
	int r;

	if (s->archive_fd < 0)
		return err_set(err, -EINVAL, "%s: resolve first", s->who);
	if (!img_digest_is_valid(desc->digest))
		return err_set(err, -EINVAL, "%s: bad blob digest", s->who);
	snprintf(name, sizeof(name), "blobs/sha256/%s", desc->digest + 7);
	size = open_entry(s, name, &a, err);
	if (size == -ENOENT)
		return err_set(err, -ENOENT, "%s: blob %s is not in the archive", s->who,
			       desc->digest);
	if (size < 0)
		return (int)size;
	if ((uint64_t)size != desc->size)
		return err_set(err, -EBADMSG, "%s: blob %s is %lld bytes, its descriptor says %llu",
			       s->who, desc->digest, (long long)size,
			       (unsigned long long)desc->size);
	r = img_blob_writer_open(&w, path, desc->size, cb, ud);
	if (r < 0)
		return err_set(err, r, "%s: creating a file for blob %s: %s", s->who, desc->digest,
			       strerror(-r));
	r = copy_entry(s, a, &w, size, err);
	if (r < 0)
		return r;
	return img_blob_writer_commit(&w, desc->digest, s->who, err);
}

static void s3_free(struct img_source *src)
{
	struct s3 *s = (struct s3 *)src;

	if (s->curl)
		curl_easy_cleanup(s->curl);
	img_xfer_done(&s->base.xfer);
	safe_close(s->archive_fd);
	explicit_bzero(&s->set, sizeof(s->set));
	free(s);
}

static const struct img_source_ops s3_ops = {
	.resolve = s3_resolve,
	.version = s3_version,
	.fetch_blob = s3_fetch_blob,
	.free = s3_free,
};

int img_s3_open(const struct img_store_config *cfg, const struct img_ref *ref,
		struct img_source **ret, struct err *err)
{
	struct s3 *s;
	char sigv4[128];
	const char *tmp;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &s3_ops;
	s->base.ref = *ref;
	s->archive_fd = -EBADF;
	img_platform_host(&s->base.platform);
	snprintf(s->who, sizeof(s->who), "s3://%s/%s", ref->s3_bucket, ref->s3_key);
	{
		struct img_limits lim;

		img_limits_fill(cfg, &lim);
		s->max_bytes = lim.max_image_bytes;
	}

	r = img_s3_settings_load(&s->set, err);
	if (r >= 0 &&
	    img_s3_object_url(&s->set, ref->s3_bucket, ref->s3_key, s->url, sizeof(s->url)) < 0)
		r = err_set(err, -EINVAL, "%s: URL too long", s->who);
	if (r < 0) {
		err_prefix(err, "%s: ", s->who);
		s3_free(&s->base);
		return r;
	}
	/* The store's tmp dir keeps big archives off a small /tmp. */
	if (cfg && cfg->state_dir && *cfg->state_dir)
		snprintf(s->tmpdir, sizeof(s->tmpdir), "%s/images/tmp", cfg->state_dir);
	if (!s->tmpdir[0] || access(s->tmpdir, W_OK) < 0)
		snprintf(s->tmpdir, sizeof(s->tmpdir), "%s",
			 (tmp = getenv("TMPDIR")) && *tmp ? tmp : "/var/tmp");

	s->curl = img_http_new(&s->base.xfer);
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", s->set.region);
	if (!s->curl ||
	    /* A signed request must not wander to another host. */
	    curl_easy_setopt(s->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    (s->set.have_creds &&
	     (curl_easy_setopt(s->curl, CURLOPT_AWS_SIGV4, sigv4) != CURLE_OK ||
	      curl_easy_setopt(s->curl, CURLOPT_USERNAME, s->set.access_key) != CURLE_OK ||
	      curl_easy_setopt(s->curl, CURLOPT_PASSWORD, s->set.secret_key) != CURLE_OK))) {
		s3_free(&s->base);
		return -ENOMEM;
	}
	*ret = &s->base;
	return 0;
}
