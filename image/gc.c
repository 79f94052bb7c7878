/* SPDX-License-Identifier: MIT */
/* Image references held by VMs, and collecting what nobody holds (store layout: store.c). */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"
#include "macro.h"
#include "parse.h"
#include "strset.h"

int img_release(struct img_store *s, const char *holder)
{
	char p[4096];
	int r;

	if (!img_holder_is_valid(holder))
		return -EINVAL;
	r = img_store_path(s, p, sizeof(p), "refs/holders/%s", holder);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = unlink(p) < 0 && errno != ENOENT ? -errno : 0;
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Holder names joined by NULs into names (len bytes), n of them. Under s->lock. */
static int read_holders(struct img_store *s, char **ret_names, size_t *ret_len, size_t *ret_n)
{
	char p[4096];
	_cleanup_closedir_ DIR *d = NULL;
	_cleanup_free_ char *names = NULL;
	size_t len = 0, size = 0, n = 0;
	struct dirent *de;
	int r;

	r = img_store_path(s, p, sizeof(p), "refs/holders");
	if (r < 0)
		return r;
	d = opendir(p);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name) + 1;

		/* Temp files of write_file_atomic are not holders. */
		if (!img_holder_is_valid(de->d_name) || strstr(de->d_name, ".tmp."))
			continue;
		if (len + l > size) {
			char *m = realloc(names, size * 2 + 256);

			if (!m)
				return -ENOMEM;
			names = m;
			size = size * 2 + 256;
		}
		memcpy(names + len, de->d_name, l);
		len += l;
		n++;
	}
	*ret_names = TAKE_PTR(names);
	*ret_len = len;
	*ret_n = n;
	return 0;
}

int img_holders_list(struct img_store *s, char ***ret)
{
	_cleanup_free_ char *names = NULL;
	size_t len = 0, n = 0;
	char **arr, *p;
	int r;

	pthread_mutex_lock(&s->lock);
	r = read_holders(s, &names, &len, &n);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return r;
	if (n > INT_MAX)
		return -EOVERFLOW;
	arr = malloc((n + 1) * sizeof(char *) + len);
	if (!arr)
		return -ENOMEM;
	p = (char *)(arr + n + 1);
	if (len)
		memcpy(p, names, len);
	for (size_t i = 0; i < n; i++) {
		arr[i] = p;
		p += strlen(p) + 1;
	}
	arr[n] = NULL;
	qsort(arr, n, sizeof(char *), cmp_strp);
	*ret = arr;
	return (int)n;
}

/* The manifest digests named by refs/holders/ (hex only). */
static int load_held(struct img_store *s, void **held)
{
	_cleanup_free_ char *names = NULL;
	size_t len, n;
	char f[4096];
	int r;

	r = read_holders(s, &names, &len, &n);
	if (r < 0)
		return r;
	for (const char *h = names; h < names + len; h += strlen(h) + 1) {
		_cleanup_free_ char *buf = NULL;

		if (img_store_path(s, f, sizeof(f), "refs/holders/%s", h) < 0 ||
		    read_file_bounded(f, 128, &buf, NULL) < 0)
			continue;
		buf[strcspn(buf, "\n")] = '\0';
		if (strncmp(buf, "sha256:", 7) == 0 && strlen(buf) == 71) {
			r = strset_add(held, buf + 7);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

struct image_info {
	char hex[65];
	uint64_t size;
	struct timespec used;
};

static int cmp_newest_first(const void *a, const void *b)
{
	const struct image_info *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? 1 : -1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? 1 : -1;
	return strcmp(x->hex, y->hex);
}

static bool is_hex64(const char *n)
{
	if (strlen(n) != 64)
		return false;
	for (; *n; n++)
		if (!((*n >= '0' && *n <= '9') || (*n >= 'a' && *n <= 'f')))
			return false;
	return true;
}

/* Add the blobs an image's manifest.json names to needed. */
static int need_blobs(struct img_store *s, const char *hex, void **needed)
{
	char p[4096];
	json_auto_t *o = NULL;
	json_t *layers, *l;
	size_t i;
	const char *d;
	int r;

	if (img_store_path(s, p, sizeof(p), "images/%s/manifest.json", hex) < 0)
		return -ENAMETOOLONG;
	o = json_load_file(p, 0, NULL);
	if (!o)
		return 0; /* not ours to judge: its blobs may go, the image stays usable */
	d = json_string_value(json_object_get(json_object_get(o, "config"), "digest"));
	if (d && strlen(d) == 71 && (r = strset_add(needed, d + 7)) < 0)
		return r;
	layers = json_object_get(o, "layers");
	json_array_foreach (layers, i, l) {
		d = json_string_value(json_object_get(l, "digest"));
		if (d && strlen(d) == 71 && (r = strset_add(needed, d + 7)) < 0)
			return r;
	}
	return 0;
}

static uint64_t image_size(struct img_store *s, const char *hex, struct timespec *ret_used)
{
	char p[4096];
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	uint64_t v = 0;

	*ret_used = (struct timespec){0};
	if (img_store_path(s, p, sizeof(p), "images/%s/size", hex) < 0)
		return 0;
	if (stat(p, &st) == 0)
		*ret_used = st.st_mtim;
	if (read_file_bounded(p, 64, &buf, NULL) < 0)
		return 0;
	buf[strcspn(buf, "\n")] = '\0';
	return parse_u64(buf, &v) < 0 ? 0 : v;
}

static int list_images(struct img_store *s, struct image_info **ret, size_t *ret_n)
{
	char p[4096];
	_cleanup_closedir_ DIR *d = NULL;
	_cleanup_free_ struct image_info *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	if (img_store_path(s, p, sizeof(p), "images") < 0)
		return -ENAMETOOLONG;
	d = opendir(p);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!is_hex64(de->d_name))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct image_info *nv = reallocarray(v, nc, sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			v = nv;
			cap = nc;
		}
		memcpy(v[n].hex, de->d_name, 65); /* is_hex64: exactly 64 + NUL */
		v[n].size = image_size(s, de->d_name, &v[n].used);
		n++;
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* Remove blobs nobody needs, and stale partial downloads when no pull is running. */
static uint64_t collect_blobs(struct img_store *s, void **needed)
{
	char p[4096], f[4096 + 512];
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	uint64_t freed = 0;

	if (img_store_path(s, p, sizeof(p), "blobs/sha256") < 0)
		return 0;
	d = opendir(p);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat st;
		bool partial = strlen(de->d_name) > 64 && strncmp(de->d_name + 64, ".part", 5) == 0;

		if (de->d_name[0] == '.')
			continue;
		if (partial ? s->pulls != NULL : strset_has(needed, de->d_name))
			continue;
		snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
		if (lstat(f, &st) == 0 && S_ISREG(st.st_mode) && unlink(f) == 0)
			freed += (uint64_t)st.st_blocks * 512;
	}
	return freed;
}

/* Remove aliases (refs/digests, refs/tags) whose target image is gone. */
static void collect_aliases(struct img_store *s, const char *dir)
{
	char p[4096], f[4096 + 512], img[4096];
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;

	if (img_store_path(s, p, sizeof(p), "%s", dir) < 0)
		return;
	d = opendir(p);
	if (!d)
		return;
	while ((de = readdir(d))) {
		_cleanup_free_ char *buf = NULL;

		if (de->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
		if (read_file_bounded(f, 128, &buf, NULL) == 0) {
			buf[strcspn(buf, "\n")] = '\0';
			if (strlen(buf) == 71 &&
			    img_store_path(s, img, sizeof(img), "images/%s", buf + 7) == 0 &&
			    access(img, F_OK) == 0)
				continue;
		}
		(void)unlink(f);
	}
}

int64_t img_gc(struct img_store *s)
{
	void *held = NULL, *needed = NULL;
	_cleanup_free_ struct image_info *imgs = NULL;
	size_t n = 0;
	uint64_t kept = 0, freed = 0;
	int r;

	pthread_mutex_lock(&s->lock);
	r = load_held(s, &held);
	if (r >= 0)
		r = list_images(s, &imgs, &n);
	if (r < 0)
		goto out;
	if (n > 0)
		qsort(imgs, n, sizeof(*imgs), cmp_newest_first);
	for (size_t i = 0; i < n; i++) {
		char p[4096];

		if (!strset_has(&held, imgs[i].hex) && kept + imgs[i].size > s->cfg.keep_bytes) {
			if (img_store_path(s, p, sizeof(p), "images/%s", imgs[i].hex) == 0 &&
			    rm_rf(p) == 0) {
				freed += imgs[i].size;
				/* Its signature record goes too (cosign.c). */
				if (img_store_path(s, p, sizeof(p), "refs/verified/%s",
						   imgs[i].hex) == 0)
					(void)unlink(p);
				continue;
			}
		} else if (!strset_has(&held, imgs[i].hex)) {
			kept += imgs[i].size;
		}
		r = need_blobs(s, imgs[i].hex, &needed);
		if (r < 0)
			goto out;
	}
	for (struct img_pull *pl = s->pulls; pl; pl = pl->next)
		for (size_t i = 0; i < pl->n_blobs; i++)
			if (strlen(pl->blobs[i]) == 71 &&
			    (r = strset_add(&needed, pl->blobs[i] + 7)) < 0)
				goto out;
	freed += collect_blobs(s, &needed);
	collect_aliases(s, "refs/digests");
	collect_aliases(s, "refs/tags");
	r = 0;
out:
	pthread_mutex_unlock(&s->lock);
	strset_free(&held);
	strset_free(&needed);
	return r < 0 ? r : (int64_t)freed;
}
