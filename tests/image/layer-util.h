/* SPDX-License-Identifier: MIT */
/* Test helpers: build OCI layer tars with libarchive's writer, temp dirs, canaries. */
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "test.h"

enum { LAYER_PLAIN, LAYER_GZIP, LAYER_ZSTD };

struct ent {
	const char *path;
	char type;	  /* 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'p' fifo, 'c' chr */
	const char *data; /* file contents, symlink or hard link target */
	mode_t perm;	  /* 0: 0644 / 0755 */
	int uid, gid;
	size_t size;	   /* 'f' with data NULL: size bytes of 'x' (or zeros if zero_fill) */
	const char *xattr; /* "name=value" */
	unsigned rmajor, rminor;
};

static inline void sha256_hex(const void *data, size_t len, char ret[72])
{
	unsigned char md[32];
	unsigned int n = 0;

	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	strcpy(ret, "sha256:");
	for (unsigned i = 0; i < 32; i++)
		snprintf(ret + 7 + 2 * i, 3, "%02x", md[i]);
}

/* Build the uncompressed tar in memory. */
static inline void *tar_build(const struct ent *ents, size_t n, size_t *ret_len)
{
	struct archive *a = archive_write_new();
	size_t cap = 1 << 20, used = 0;
	char *buf = NULL;

	for (size_t i = 0; i < n; i++)
		cap += (ents[i].data && ents[i].type == 'f' ? strlen(ents[i].data) : ents[i].size) +
		       8192;
	buf = malloc(cap);
	ASSERT_TRUE(a && buf);
	ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	ASSERT_EQ(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
	ASSERT_EQ(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *e = &ents[i];
		struct archive_entry *ae = archive_entry_new();
		char *fill = NULL;
		size_t len = 0;

		archive_entry_set_pathname(ae, e->path);
		archive_entry_set_uid(ae, e->uid);
		archive_entry_set_gid(ae, e->gid);
		archive_entry_set_mtime(ae, 1700000000, 0);
		switch (e->type) {
		case 'f':
			len = e->data ? strlen(e->data) : e->size;
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, e->perm ? e->perm : 0644);
			archive_entry_set_size(ae, (la_int64_t)len);
			break;
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, e->perm ? e->perm : 0755);
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_perm(ae, 0777);
			archive_entry_set_symlink(ae, e->data);
			break;
		case 'h':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_hardlink(ae, e->data);
			archive_entry_set_size(ae, 0);
			break;
		case 'p':
			archive_entry_set_filetype(ae, AE_IFIFO);
			archive_entry_set_perm(ae, e->perm ? e->perm : 0600);
			break;
		case 'c':
			archive_entry_set_filetype(ae, AE_IFCHR);
			archive_entry_set_perm(ae, e->perm ? e->perm : 0666);
			archive_entry_set_rdevmajor(ae, e->rmajor);
			archive_entry_set_rdevminor(ae, e->rminor);
			break;
		default:
			TEST_FAIL("bad test entry type %c", e->type);
		}
		if (e->xattr) {
			const char *eq = strchr(e->xattr, '=');
			char name[256];
			snprintf(name, sizeof(name), "%.*s", (int)(eq - e->xattr), e->xattr);
			archive_entry_xattr_add_entry(ae, name, eq + 1, strlen(eq + 1));
		}
		ASSERT_EQ(archive_write_header(a, ae), ARCHIVE_OK);
		if (e->type == 'f' && len > 0) {
			if (!e->data) {
				fill = malloc(len);
				ASSERT_TRUE(fill != NULL);
				memset(fill, 'x', len);
			}
			ASSERT_EQ(archive_write_data(a, e->data ? e->data : fill, len),
				  (ssize_t)len);
		}
		free(fill);
		archive_entry_free(ae);
	}
	ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	*ret_len = used;
	return buf;
}

/* Write data (compressed as asked) to path. */
static inline void blob_write(const char *path, const void *data, size_t len, int filter)
{
	if (filter == LAYER_PLAIN) {
		ASSERT_OK(write_file_atomic(path, data, len, 0644));
		return;
	}
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();

	ASSERT_EQ(archive_write_set_format_raw(a), ARCHIVE_OK);
	ASSERT_EQ(filter == LAYER_GZIP ? archive_write_add_filter_gzip(a)
				       : archive_write_add_filter_zstd(a),
		  ARCHIVE_OK);
	ASSERT_EQ(archive_write_open_filename(a, path), ARCHIVE_OK);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_pathname(ae, "layer");
	archive_entry_set_size(ae, (la_int64_t)len);
	ASSERT_EQ(archive_write_header(a, ae), ARCHIVE_OK);
	ASSERT_EQ(archive_write_data(a, data, len), (ssize_t)len);
	ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	archive_entry_free(ae);
}

/* Make a layer file at path; ret_diff_id gets the uncompressed sha256. */
static inline void layer_make(const char *path, const struct ent *ents, size_t n, int filter,
			      char ret_diff_id[72])
{
	size_t len = 0;
	void *tar = tar_build(ents, n, &len);

	if (ret_diff_id)
		sha256_hex(tar, len, ret_diff_id);
	blob_write(path, tar, len, filter);
	free(tar);
}

static inline char *tmpdir_new(void)
{
	const char *base = getenv("TMPDIR");
	char *p = NULL;

	ASSERT_TRUE(asprintf(&p, "%s/mvmfs-imgtest.XXXXXX", base ? base : "/tmp") > 0);
	ASSERT_TRUE(mkdtemp(p) != NULL);
	return p;
}

/* Number of entries in a directory (canary check). */
static inline int dir_count(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static inline bool path_exists(const char *dir, const char *rel)
{
	char p[8192];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return lstat(p, &st) == 0;
}
