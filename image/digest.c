/* SPDX-License-Identifier: MIT */
/* sha256 digests in the "sha256:<hex>" form, with OpenSSL's EVP interface. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"

EVP_MD_CTX *img_sha256_new(void)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return NULL;
	}
	return md;
}

int img_sha256_final(EVP_MD_CTX *md, char ret[IMG_DIGEST_MAX])
{
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned hl = 0;

	if (EVP_DigestFinal_ex(md, h, &hl) != 1 || hl != 32)
		return -EIO;
	memcpy(ret, "sha256:", 7);
	for (unsigned i = 0; i < 32; i++)
		snprintf(ret + 7 + 2 * i, 3, "%02x", h[i]);
	return 0;
}

int img_digest_buf(const void *data, size_t len, char ret[IMG_DIGEST_MAX])
{
	_cleanup_(img_sha256_freep) EVP_MD_CTX *md = img_sha256_new();

	if (!md)
		return -ENOMEM;
	if (EVP_DigestUpdate(md, data, len) != 1)
		return -EIO;
	return img_sha256_final(md, ret);
}

int img_digest_file(const char *path, char ret[IMG_DIGEST_MAX])
{
	_cleanup_(img_sha256_freep) EVP_MD_CTX *md = img_sha256_new();
	_cleanup_close_ int fd = -EBADF;
	char buf[65536];

	if (!md)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
			return -EIO;
	}
	return img_sha256_final(md, ret);
}
