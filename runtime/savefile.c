/* SPDX-License-Identifier: MIT */
/* Files of saved VM states (suspend, templates, Firecracker snapshots): a copy that keeps the
 * holes of a guest memory file, and the SHA-256 that says a state file is the one written. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "macro.h"

static int copy_sparse(const char *src, const char *dst, uid_t uid, gid_t gid, bool sync)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -EBADF;
	static _Thread_local char buf[1 << 16];
	struct stat st;
	off_t data = 0, hole;

	if (in < 0 || fstat(in, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0)
		return -errno;
	if (ftruncate(out, st.st_size) < 0)
		return -errno;
	/* pread/pwrite, not copy_file_range: the point is crossing file systems. */
	while ((data = lseek(in, data, SEEK_DATA)) >= 0) {
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		for (off_t off = data; off < hole;) {
			ssize_t n =
				pread(in, buf, (size_t)MIN(hole - off, (off_t)sizeof(buf)), off);

			if (n < 0)
				return -errno;
			if (n == 0)
				break;
			if (pwrite(out, buf, (size_t)n, off) != n)
				return errno ? -errno : -EIO;
			off += n;
		}
		data = hole;
	}
	if (errno != ENXIO)
		return -errno;
	if (fchown(out, uid, gid) < 0 || (sync && fsync(out) < 0))
		return -errno;
	return 0;
}

int savefile_copy_sparse(const char *src, const char *dst, uid_t uid, gid_t gid)
{
	return copy_sparse(src, dst, uid, gid, true);
}

int savefile_copy_scratch(const char *src, const char *dst)
{
	return copy_sparse(src, dst, (uid_t)-1, (gid_t)-1, false);
}

int savefile_fd_sha256(int fd, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ssize_t n;
	int r = 0;

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	for (off_t off = 0; r == 0;) {
		n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		else if (n == 0)
			break;
		else if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			r = -EIO;
		else
			off += n;
	}
	if (r == 0 && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen < 32))
		r = -EIO;
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; r == 0 && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return r;
}

int savefile_sha256(const char *path, char hex[65])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	return savefile_fd_sha256(fd, hex);
}
