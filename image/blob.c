/* SPDX-License-Identifier: MIT */
/*
 * Writing one blob: a temp file beside the destination, hashed while it is written, never
 * longer than its descriptor says, and renamed into place only once size and sha256 match.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"

int img_blob_writer_open(struct img_blob_writer *w, const char *path, uint64_t expect,
			 img_bytes_cb cb, void *ud)
{
	*w = (struct img_blob_writer){.fd = -EBADF, .expect = expect, .cb = cb, .ud = ud};
	if (snprintf(w->path, sizeof(w->path), "%s", path) >= (int)sizeof(w->path) ||
	    snprintf(w->tmp, sizeof(w->tmp), "%s.part.XXXXXX", path) >= (int)sizeof(w->tmp)) {
		w->tmp[0] = '\0';
		return -ENAMETOOLONG;
	}
	w->md = img_sha256_new();
	if (!w->md) {
		w->tmp[0] = '\0';
		return -ENOMEM;
	}
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		int r = negative_errno();
		w->tmp[0] = '\0';
		return r;
	}
	return 0;
}

int img_blob_writer_write(struct img_blob_writer *w, const void *data, size_t len)
{
	const char *p = data;

	if (len > w->expect - w->done)
		return -EFBIG;
	if (EVP_DigestUpdate(w->md, data, len) != 1)
		return -EIO;
	while (len > 0) {
		ssize_t n = write(w->fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		p += n;
		len -= (size_t)n;
		w->done += (uint64_t)n;
	}
	if (w->cb)
		w->cb(w->ud, w->done);
	return 0;
}

int img_blob_writer_rewind(struct img_blob_writer *w)
{
	if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
		return negative_errno();
	if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1)
		return -EIO;
	w->done = 0;
	return 0;
}

int img_blob_writer_commit(struct img_blob_writer *w, const char *digest, const char *what,
			   struct err *err)
{
	char got[IMG_DIGEST_MAX];
	int r;

	if (w->done != w->expect)
		return err_set(err, -EBADMSG, "%s: blob %s: got %llu bytes, descriptor says %llu",
			       what, digest, (unsigned long long)w->done,
			       (unsigned long long)w->expect);
	r = img_sha256_final(w->md, got);
	if (r < 0)
		return err_set(err, r, "%s: hashing blob %s failed", what, digest);
	if (strcmp(got, digest) != 0)
		return err_set(err, -EBADMSG, "%s: digest mismatch for blob %s (got %s)", what,
			       digest, got);
	if (fsync(w->fd) < 0)
		return err_set(err, negative_errno(), "%s: writing blob %s: %m", what, digest);
	if (rename(w->tmp, w->path) < 0)
		return err_set(err, negative_errno(), "%s: storing blob %s: %m", what, digest);
	w->tmp[0] = '\0';
	return 0;
}

void img_blob_writer_done(struct img_blob_writer *w)
{
	if (w->tmp[0])
		(void)unlink(w->tmp);
	w->tmp[0] = '\0';
	w->fd = safe_close(w->fd);
	if (w->md)
		EVP_MD_CTX_free(w->md);
	w->md = NULL;
}
