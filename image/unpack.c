/* SPDX-License-Identifier: MIT */
/*
 * Applying OCI layers to a rootfs directory with libarchive. We do not use archive_write_disk:
 * it works relative to the process cwd (not thread-safe in the daemon) and follows symlinks in
 * parents. Every path is instead resolved beneath the rootfs fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so a symlink planted by a layer is never followed when writing, and
 * nothing outside the rootfs can be reached.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"
#include "macro.h"

#define READ_BLOCK (128 * 1024)
#define RESOLVE_SAFE \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

static inline void archive_read_freep(struct archive **a)
{
	if (*a)
		(void)archive_read_free(*a);
}
#define _cleanup_archive_ _cleanup_(archive_read_freep)

static inline void md_freep(EVP_MD_CTX **c)
{
	if (*c)
		EVP_MD_CTX_free(*c);
}

/* The uncompressed tar stream, hashed and counted as the tar reader pulls it. */
struct stream {
	struct archive *outer; /* decompression only (format raw) */
	EVP_MD_CTX *md;
	uint64_t bytes, limit;
	bool over;
	unsigned char buf[READ_BLOCK];
};

/* A directory whose metadata is applied at the end of the layer (children change mtimes, and a
 * read-only mode must not stop us writing into it). */
struct dir_meta {
	char *rel;
	mode_t mode;
	int64_t uid, gid;
	struct timespec mtime;
};

/* Per-layer state. */
struct layer {
	struct img_unpack *u;
	const char *name; /* layer digest, for messages */
	char entry[320];  /* current entry name (truncated copy), for messages */
	void *created;	  /* tsearch set of rel paths written by this layer */
	struct dir_meta *dirs;
	size_t n_dirs, cap_dirs;
	struct err *err;
};

static int layer_fail(struct layer *l, int code, const char *why)
{
	return err_set(l->err, code, "layer %s: entry '%s': %s", l->name, l->entry, why);
}

static int openat2_safe(int dfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)flags | O_CLOEXEC,
		.resolve = RESOLVE_SAFE,
	};
	long fd = syscall(SYS_openat2, dfd, path, &how, sizeof(how));

	return fd < 0 ? -errno : (int)fd;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool created_has(struct layer *l, const char *rel)
{
	return tfind(rel, &l->created, cmp_str) != NULL;
}

static int created_add(struct layer *l, const char *rel)
{
	char *k = strdup(rel), **slot;

	if (!k)
		return -ENOMEM;
	slot = tsearch(k, &l->created, cmp_str);
	if (!slot) {
		free(k);
		return -ENOMEM;
	}
	if (*slot != k)
		free(k);
	return 0;
}

/* rel and its ancestors: an opaque whiteout must keep a directory this layer wrote into even
 * when the layer has no entry for the directory itself. */
static int created_add_tree(struct layer *l, const char *rel)
{
	char buf[IMG_PATH_MAX + 1];
	char *slash;
	int r;

	snprintf(buf, sizeof(buf), "%s", rel);
	for (;;) {
		if (created_has(l, buf))
			return 0;
		r = created_add(l, buf);
		if (r < 0)
			return r;
		slash = strrchr(buf, '/');
		if (!slash)
			return 0;
		*slash = '\0';
	}
}

/* Empty dir (rel, open as dfd) of everything this layer did not write (opaque whiteout). */
static int opaque_clear(struct layer *l, int dfd, const char *rel)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd, r;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		_cleanup_free_ char *child = NULL;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&child, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) < 0)
			return -ENOMEM;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;

			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return -errno;
			de->d_type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
		}
		if (!created_has(l, child)) {
			r = rm_rf_at(dirfd(d), de->d_name);
		} else if (de->d_type == DT_DIR) {
			_cleanup_close_ int sub =
				openat2_safe(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY);
			r = sub < 0 ? sub : opaque_clear(l, sub, child);
		} else {
			r = 0;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Open the directory that holds rel (O_PATH), creating missing parents (0755, like Docker) and
 * refusing any symlink or non-directory on the way. *ret_base points into rel.
 */
static int open_parent(struct layer *l, const char *rel, bool create, int *ret_fd,
		       const char **ret_base)
{
	const char *slash = strrchr(rel, '/');
	char dir[IMG_PATH_MAX + 1];
	int fd, r;

	*ret_base = slash ? slash + 1 : rel;
	if (!slash) {
		fd = fcntl(l->u->root_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
		*ret_fd = fd;
		return 0;
	}
	memcpy(dir, rel, (size_t)(slash - rel));
	dir[slash - rel] = '\0';
	fd = openat2_safe(l->u->root_fd, dir, O_PATH | O_DIRECTORY);
	if (fd >= 0) {
		*ret_fd = fd;
		return 0;
	}
	if (fd != -ENOENT || !create)
		return fd;

	/* Walk down, creating what is missing. */
	fd = fcntl(l->u->root_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	for (char *p = dir, *e;; p = e + 1) {
		int nfd;

		e = strchrnul(p, '/');
		bool last = *e == '\0';
		*e = '\0';
		if (mkdirat(fd, p, 0755) == 0) {
			(void)fchmodat(fd, p, 0755, 0); /* whatever the umask */
			r = created_add(l, dir);
			if (r < 0) {
				safe_close(fd);
				return r;
			}
		} else if (errno != EEXIST) {
			r = -errno;
			safe_close(fd);
			return r;
		}
		nfd = openat2_safe(fd, p, O_PATH | O_DIRECTORY);
		safe_close(fd);
		if (nfd < 0)
			return nfd;
		fd = nfd;
		if (last)
			break;
		*e = '/';
	}
	*ret_fd = fd;
	return 0;
}

static const char *resolve_why(int r)
{
	switch (r) {
	case -ELOOP:
		return "path goes through a symlink";
	case -EXDEV:
		return "path leaves the image root";
	case -ENOTDIR:
		return "a parent is not a directory";
	case -ENOSPC:
		return "disk full";
	default:
		return "cannot open parent directory";
	}
}

/* Make room for a new entry at (pfd, name): a directory stays if the new entry is one too. */
static int clear_target(int pfd, const char *name, bool want_dir, bool *ret_is_dir)
{
	struct stat st;

	*ret_is_dir = false;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode) && want_dir) {
		*ret_is_dir = true;
		return 0;
	}
	return rm_rf_at(pfd, name);
}

static int apply_xattrs(struct layer *l, struct archive_entry *e, int fd)
{
	const char *name;
	const void *value;
	size_t size;

	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (!name || !*name)
			continue;
		if (fsetxattr(fd, name, value, size, 0) < 0) {
			if (errno == ENOTSUP || errno == EOPNOTSUPP ||
			    (!l->u->privileged && (errno == EPERM || errno == EACCES)))
				continue;
			return layer_fail(l, -errno, "cannot set xattr");
		}
	}
	return 0;
}

static int owner_ok(struct layer *l, struct archive_entry *e)
{
	int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);

	if (uid < 0 || gid < 0 || uid >= UINT32_MAX || gid >= UINT32_MAX)
		return layer_fail(l, -EINVAL, "uid/gid out of range");
	return 0;
}

static struct timespec entry_mtime(struct archive_entry *e)
{
	if (!archive_entry_mtime_is_set(e))
		return (struct timespec){.tv_nsec = UTIME_OMIT};
	return (struct timespec){.tv_sec = archive_entry_mtime(e),
				 .tv_nsec = archive_entry_mtime_nsec(e)};
}

/* chown (root only), chmod, mtime for a just-created non-directory, by name. */
static int apply_meta_at(struct layer *l, struct archive_entry *e, int pfd, const char *name,
			 bool symlink)
{
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(e)};

	if (l->u->privileged && fchownat(pfd, name, (uid_t)archive_entry_uid(e),
					 (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) < 0)
		return layer_fail(l, -errno, "cannot set owner");
	if (!symlink && fchmodat(pfd, name, archive_entry_perm(e) & 07777, 0) < 0)
		return layer_fail(l, -errno, "cannot set mode");
	if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return layer_fail(l, -errno, "cannot set times");
	return 0;
}

static int write_file(struct layer *l, struct archive *a, struct archive_entry *e, int pfd,
		      const char *name)
{
	_cleanup_close_ int fd = -EBADF;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, entry_mtime(e)};
	int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	int r;

	if (size < 0 || (uint64_t)size > l->u->limits.max_bytes)
		return layer_fail(l, -EFBIG, "file larger than the image size limit");
	fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return layer_fail(l, -errno, errno == ENOSPC ? "disk full" : "cannot create file");
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;

		r = archive_read_data_block(a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return -EIO; /* the caller reports the archive error */
		if (off < 0 || (uint64_t)off + len > (uint64_t)size)
			return layer_fail(l, -EINVAL, "data beyond the file size");
		for (size_t done = 0; done < len;) {
			ssize_t n =
				pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return layer_fail(l, -errno,
						  errno == ENOSPC ? "disk full" : "write failed");
			}
			done += (size_t)n;
		}
	}
	if (ftruncate(fd, size) < 0) /* trailing holes of sparse files */
		return layer_fail(l, -errno, errno == ENOSPC ? "disk full" : "truncate failed");
	if (l->u->privileged &&
	    fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
		return layer_fail(l, -errno, "cannot set owner");
	if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
		return layer_fail(l, -errno, "cannot set mode");
	r = apply_xattrs(l, e, fd);
	if (r < 0)
		return r;
	if (futimens(fd, ts) < 0)
		return layer_fail(l, -errno, "cannot set times");
	return 0;
}

static int make_dir(struct layer *l, struct archive_entry *e, int pfd, const char *name,
		    const char *rel, bool exists)
{
	_cleanup_close_ int fd = -EBADF;
	struct dir_meta *m;

	if (!exists && mkdirat(pfd, name, 0700) < 0)
		return layer_fail(l, -errno,
				  errno == ENOSPC ? "disk full" : "cannot create directory");
	fd = openat2_safe(pfd, name, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return layer_fail(l, fd, "cannot open directory");
	if (archive_entry_xattr_count(e) > 0) {
		int r = apply_xattrs(l, e, fd);
		if (r < 0)
			return r;
	}
	if (l->n_dirs == l->cap_dirs) {
		size_t cap = l->cap_dirs ? l->cap_dirs * 2 : 64;
		struct dir_meta *n = reallocarray(l->dirs, cap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		l->dirs = n;
		l->cap_dirs = cap;
	}
	m = &l->dirs[l->n_dirs];
	*m = (struct dir_meta){
		.rel = strdup(rel),
		.mode = archive_entry_perm(e) & 07777,
		.uid = archive_entry_uid(e),
		.gid = archive_entry_gid(e),
		.mtime = entry_mtime(e),
	};
	if (!m->rel)
		return -ENOMEM;
	l->n_dirs++;
	return 0;
}

static int make_hardlink(struct layer *l, struct archive_entry *e, int pfd, const char *name)
{
	char target[IMG_PATH_MAX + 1];
	enum img_path_kind kind;
	const char *why = NULL, *tbase;
	_cleanup_close_ int tfd = -EBADF;
	int r;

	r = img_path_map(archive_entry_hardlink(e), target, sizeof(target), &kind, &why);
	if (r < 0)
		return layer_fail(l, r, why ? why : "bad hard link target");
	if (kind != IMG_PATH_NORMAL)
		return layer_fail(l, -EINVAL, "hard link to a whiteout or the root");
	r = open_parent(l, target, false, &tfd, &tbase);
	if (r < 0)
		return layer_fail(l, r, r == -ENOENT ? "hard link target missing" : resolve_why(r));
	if (linkat(tfd, tbase, pfd, name, 0) < 0)
		return layer_fail(l, -errno,
				  errno == ENOENT ? "hard link target missing"
						  : "cannot create hard link");
	return 0;
}

static int make_node(struct layer *l, struct archive_entry *e, int pfd, const char *name,
		     mode_t type)
{
	dev_t dev = 0;

	if (type != S_IFIFO) {
		/* Unprivileged (tests, rootless) the kernel refuses device nodes: leave them out,
		 * as rootless container runtimes do. */
		if (!l->u->privileged)
			return 0;
		dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
	}
	if (mknodat(pfd, name, type | 0600, dev) < 0)
		return layer_fail(l, -errno, "cannot create device node");
	return apply_meta_at(l, e, pfd, name, false);
}

/* One tar entry. */
/* The entry's name, checked and mapped into rel (*kind: what it means); its owner checked. */
static int entry_map(struct layer *l, struct archive_entry *e, char rel[IMG_PATH_MAX + 1],
		     enum img_path_kind *kind)
{
	const char *why = NULL, *name = archive_entry_pathname(e);
	int r;

	snprintf(l->entry, sizeof(l->entry), "%s", name ? name : "?");
	for (char *c = l->entry; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?'; /* the name ends up in the VM's error file */
	if (!name)
		return layer_fail(l, -EINVAL, "entry without a usable name");
	if (++l->u->entries > l->u->limits.max_entries)
		return layer_fail(l, -E2BIG, "too many entries in the image");
	r = img_path_map(name, rel, IMG_PATH_MAX + 1, kind, &why);
	if (r < 0)
		return layer_fail(l, r, why);
	return owner_ok(l, e);
}

/* A whiteout: what a lower layer put at rel goes (not what this layer wrote). */
static int apply_whiteout(struct layer *l, const char *rel)
{
	_cleanup_close_ int pfd = -EBADF;
	const char *base;
	int r;

	if (created_has(l, rel))
		return 0;
	r = open_parent(l, rel, false, &pfd, &base);
	if (r == -ENOENT || r == -ENOTDIR)
		return 0; /* nothing there to delete */
	if (r < 0)
		return layer_fail(l, r, resolve_why(r));
	r = rm_rf_at(pfd, base);
	return r < 0 ? layer_fail(l, r, "cannot apply whiteout") : 0;
}

/* An opaque whiteout: the directory rel keeps only what this layer wrote. */
static int apply_opaque(struct layer *l, const char *rel)
{
	_cleanup_close_ int pfd = -EBADF, dfd = -EBADF;
	const char *base;
	int r;

	if (rel[0] == '\0') {
		dfd = fcntl(l->u->root_fd, F_DUPFD_CLOEXEC, 3);
		if (dfd < 0)
			dfd = -errno;
	} else {
		r = open_parent(l, rel, true, &pfd, &base);
		if (r < 0)
			return layer_fail(l, r, resolve_why(r));
		dfd = openat2_safe(pfd, base, O_RDONLY | O_DIRECTORY);
		if (dfd == -ENOENT)
			return 0;
	}
	if (dfd < 0)
		return layer_fail(l, dfd, resolve_why(dfd));
	r = opaque_clear(l, dfd, rel);
	return r < 0 ? layer_fail(l, r, "cannot apply opaque whiteout") : 0;
}

/* A file, directory, link or node at rel, replacing what a lower layer had there. */
static int apply_normal(struct layer *l, struct archive *a, struct archive_entry *e,
			const char *rel)
{
	_cleanup_close_ int pfd = -EBADF;
	mode_t type = archive_entry_filetype(e);
	bool is_dir = false;
	const char *base;
	int r;

	r = open_parent(l, rel, true, &pfd, &base);
	if (r < 0)
		return layer_fail(l, r, resolve_why(r));
	/* Type 0 below means "hard link": an entry of no type (a link header with an empty
	 * target) must not reach make_hardlink, nor replace what is there. */
	if (archive_entry_hardlink(e))
		type = 0; /* hard link, whatever type the header claims */
	else if (type == 0)
		return layer_fail(l, -EINVAL, "unsupported entry type");
	r = clear_target(pfd, base, type == AE_IFDIR, &is_dir);
	if (r < 0)
		return layer_fail(l, r, "cannot replace existing entry");
	r = created_add_tree(l, rel);
	if (r < 0)
		return r;

	switch (type) {
	case 0:
		return make_hardlink(l, e, pfd, base);
	case AE_IFREG:
		return write_file(l, a, e, pfd, base);
	case AE_IFDIR:
		return make_dir(l, e, pfd, base, rel, is_dir);
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);

		if (!target || strnlen(target, IMG_PATH_MAX + 1) > IMG_PATH_MAX || !*target)
			return layer_fail(l, -EINVAL, "bad symlink target");
		if (symlinkat(target, pfd, base) < 0)
			return layer_fail(l, -errno, "cannot create symlink");
		return apply_meta_at(l, e, pfd, base, true);
	}
	case AE_IFCHR:
		return make_node(l, e, pfd, base, S_IFCHR);
	case AE_IFBLK:
		return make_node(l, e, pfd, base, S_IFBLK);
	case AE_IFIFO:
		return make_node(l, e, pfd, base, S_IFIFO);
	default:
		return layer_fail(l, -EINVAL, "unsupported entry type");
	}
}

static int apply_entry(struct layer *l, struct archive *a, struct archive_entry *e)
{
	char rel[IMG_PATH_MAX + 1];
	enum img_path_kind kind;
	int r;

	r = entry_map(l, e, rel, &kind);
	if (r < 0)
		return r;
	switch (kind) {
	case IMG_PATH_SKIP:
	case IMG_PATH_ROOT: /* the root's owner and mode are the disk's, not the layer's */
		return 0;
	case IMG_PATH_WHITEOUT:
		return apply_whiteout(l, rel);
	case IMG_PATH_OPAQUE:
		return apply_opaque(l, rel);
	case IMG_PATH_NORMAL:
		break;
	}
	return apply_normal(l, a, e, rel);
}

/* Directory metadata last, deepest first, so mtimes and read-only modes stick. */
static int finish_dirs(struct layer *l)
{
	for (size_t i = l->n_dirs; i-- > 0;) {
		struct dir_meta *m = &l->dirs[i];
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, m->mtime};
		_cleanup_close_ int fd =
			openat2_safe(l->u->root_fd, m->rel, O_RDONLY | O_DIRECTORY);

		snprintf(l->entry, sizeof(l->entry), "%s", m->rel);
		if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR)
			continue; /* removed or replaced again later in the layer */
		if (fd < 0)
			return layer_fail(l, fd, "cannot open directory");
		if (l->u->privileged && fchown(fd, (uid_t)m->uid, (gid_t)m->gid) < 0)
			return layer_fail(l, -errno, "cannot set owner");
		if (fchmod(fd, m->mode) < 0)
			return layer_fail(l, -errno, "cannot set mode");
		if (futimens(fd, ts) < 0)
			return layer_fail(l, -errno, "cannot set times");
	}
	return 0;
}

static void layer_done(struct layer *l)
{
	tdestroy(l->created, free);
	for (size_t i = 0; i < l->n_dirs; i++)
		free(l->dirs[i].rel);
	free(l->dirs);
}

static la_ssize_t stream_read(struct archive *inner, void *ud, const void **ret_buf)
{
	struct stream *s = ud;
	la_ssize_t n = archive_read_data(s->outer, s->buf, sizeof(s->buf));

	if (n < 0) {
		archive_set_error(inner, archive_errno(s->outer), "%s",
				  archive_error_string(s->outer) ?: "decompression failed");
		return -1;
	}
	s->bytes += (uint64_t)n;
	if (s->bytes > s->limit) {
		s->over = true;
		archive_set_error(inner, EFBIG, "image too large");
		return -1;
	}
	if (n > 0 && EVP_DigestUpdate(s->md, s->buf, (size_t)n) != 1) {
		archive_set_error(inner, ENOMEM, "sha256 failed");
		return -1;
	}
	*ret_buf = s->buf;
	return n;
}

static int archive_fail(struct layer *l, struct archive *a, struct stream *s)
{
	const char *msg = archive_error_string(a);

	if (s->over)
		return err_set(l->err, -EFBIG, "layer %s: image larger than %llu bytes unpacked",
			       l->name, (unsigned long long)l->u->limits.max_bytes);
	return err_set(l->err, -EBADMSG, "layer %s: not a valid layer: %s%s%s", l->name,
		       msg ? msg : "read error", l->entry[0] ? " at entry " : "", l->entry);
}

static int check_diff_id(struct layer *l, struct stream *s, const char *diff_id)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (EVP_DigestFinal_ex(s->md, md, &len) != 1)
		return err_set(l->err, -ENOMEM, "layer %s: sha256 failed", l->name);
	for (unsigned int i = 0; i < len; i++)
		snprintf(hex + (size_t)2 * i, 3, "%02x", md[i]);
	if (diff_id && (strncmp(diff_id, "sha256:", 7) != 0 || strcmp(diff_id + 7, hex) != 0))
		return err_set(
			l->err, -EBADMSG,
			"layer %s: digest mismatch: uncompressed content is sha256:%s, config "
			"diff_id says %.80s",
			l->name, hex, diff_id);
	return 0;
}

/* Every entry of the layer's tar, applied in order; stops at the first failure or a cancel. */
static int layer_entries(struct layer *l, struct archive *inner, struct stream *s)
{
	struct archive_entry *e;
	int r = 0;

	for (;;) {
		int ar = archive_read_next_header(inner, &e);

		if (ar == ARCHIVE_EOF)
			return 0;
		if (ar < ARCHIVE_WARN)
			return archive_fail(l, inner, s);
		if (l->u->stop && atomic_load(l->u->stop))
			return err_set(l->err, -ECANCELED, "layer %s: unpack cancelled", l->name);
		r = apply_entry(l, inner, e);
		if (r == -EIO && (!l->err || l->err->code == 0))
			r = archive_fail(l, inner, s);
		if (r < 0)
			return r;
	}
}

/* The tar end may leave padding unread: the rest of the stream is hashed too (and counted). */
static int layer_hash_rest(struct layer *l, struct archive *outer, struct archive *inner,
			   struct stream *s)
{
	for (;;) {
		la_ssize_t n = archive_read_data(outer, s->buf, sizeof(s->buf));
		if (n < 0)
			return err_set(l->err, -EBADMSG, "layer %s: not a valid layer: %s", l->name,
				       archive_error_string(outer) ?: "read error");
		if (n == 0)
			return 0;
		s->bytes += (uint64_t)n;
		if (s->bytes > s->limit) {
			s->over = true;
			return archive_fail(l, inner, s);
		}
		if (EVP_DigestUpdate(s->md, s->buf, (size_t)n) != 1)
			return -ENOMEM;
	}
}

int img_unpack_layer(struct img_unpack *u, int fd, const char *layer_name, const char *diff_id,
		     struct err *err)
{
	_cleanup_archive_ struct archive *outer = NULL, *inner = NULL;
	_cleanup_(md_freep) EVP_MD_CTX *md = NULL;
	_cleanup_free_ struct stream *s = NULL;
	struct archive_entry *raw;
	struct layer l = {.u = u, .name = layer_name, .err = err};
	int r;

	if (err)
		err_clear(err);
	s = calloc(1, sizeof(*s));
	md = EVP_MD_CTX_new();
	outer = archive_read_new();
	inner = archive_read_new();
	if (!s || !md || !outer || !inner || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		return err_set(err, -ENOMEM, "layer %s: out of memory", layer_name);
	s->outer = outer;
	s->md = md;
	s->limit = u->limits.max_bytes - MIN(u->bytes, u->limits.max_bytes);

	/* Only in-process decompressors: filter_all would fall back to running external
	 * programs (lzop, lrzip...) on untrusted data. */
	if (archive_read_support_filter_gzip(outer) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(outer) != ARCHIVE_OK ||
	    archive_read_support_format_raw(outer) != ARCHIVE_OK ||
	    archive_read_support_format_tar(inner) != ARCHIVE_OK)
		return err_set(err, -EOPNOTSUPP, "layer %s: libarchive lacks gzip/zstd/tar support",
			       layer_name);
	if (archive_read_open_fd(outer, fd, READ_BLOCK) != ARCHIVE_OK ||
	    archive_read_next_header(outer, &raw) != ARCHIVE_OK)
		return err_set(err, -EBADMSG, "layer %s: not a valid layer: %s", layer_name,
			       archive_error_string(outer) ?: "empty");
	if (archive_read_open(inner, s, NULL, stream_read, NULL) != ARCHIVE_OK)
		return archive_fail(&l, inner, s);

	r = layer_entries(&l, inner, s);
	if (r >= 0)
		r = finish_dirs(&l);
	layer_done(&l);
	if (r < 0) {
		if (!err || err->code == 0)
			r = err_set(err, r, "layer %s: %s", layer_name, strerror(-r));
		return r;
	}
	r = layer_hash_rest(&l, outer, inner, s);
	if (r < 0)
		return r;
	u->bytes += s->bytes;
	return check_diff_id(&l, s, diff_id);
}

int img_unpack_init(struct img_unpack *u, const char *rootfs, const struct img_unpack_limits *lim,
		    struct err *err)
{
	*u = (struct img_unpack){.root_fd = -EBADF};
	u->root_fd = open(rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u->root_fd < 0)
		return err_set(err, -errno, "cannot open rootfs directory %s: %s", rootfs,
			       strerror(errno));
	u->limits = *lim;
	if (u->limits.max_bytes == 0)
		u->limits.max_bytes = IMG_DEFAULT_MAX_BYTES;
	if (u->limits.max_entries == 0)
		u->limits.max_entries = IMG_MAX_ENTRIES;
	u->privileged = geteuid() == 0;
	return 0;
}

void img_unpack_done(struct img_unpack *u)
{
	u->root_fd = safe_close(u->root_fd);
}
