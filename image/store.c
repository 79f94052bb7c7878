/* SPDX-License-Identifier: MIT */
/*
 * The content-addressed image store under <state_dir>/images:
 *
 *   blobs/sha256/<hex>                 layers and configs, shared by every image
 *   images/<manifest-hex>/             rootfs.ext4, config.json (guest), manifest.json, size
 *   refs/holders/<holder>              manifest digest a VM holds (GC never drops it)
 *   refs/digests/<hex>                 index digest -> manifest digest, so digest refs stay local
 *   tmp/                               builds in progress; renamed into images/ when complete
 *
 * Concurrent img_prepare calls for one manifest digest coalesce: the first runs the pull, the
 * others wait on the store's condvar for its result.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "build.h"
#include "fileio.h"
#include "internal.h"
#include "macro.h"

#define CONFIG_BLOB_MAX (8u << 20)

DEFINE_CLEANUP_FUNC(struct img_source, img_source_free);

int img_store_path(const struct img_store *s, char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(buf, size, "%s/", s->root);

	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, size - (size_t)n, fmt, ap);
	va_end(ap);
	return m < 0 || (size_t)m >= size - (size_t)n ? -ENAMETOOLONG : 0;
}

bool img_holder_is_valid(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	if (n == 0 || n > 64 || h[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
		      (h[i] >= '0' && h[i] <= '9') || h[i] == '.' || h[i] == '_' || h[i] == '-'))
			return false;
	return true;
}

static bool hex_digest_ok(const char *d)
{
	if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static void progress(img_progress_cb cb, void *ud, const char *phase, uint64_t done,
		     uint64_t total, unsigned ldone, unsigned ltotal)
{
	struct img_progress p = {phase, done, total, ldone, ltotal};

	if (cb)
		cb(ud, &p);
}

static bool image_present(struct img_store *s, const char *digest)
{
	char p[4096];

	return img_store_path(s, p, sizeof(p), "images/%s/rootfs.ext4", digest + 7) == 0 &&
	       access(p, F_OK) == 0;
}

/* Fill ret for a present image and (under the lock) move holder's reference to it. */
static int finish(struct img_store *s, const char *digest, const char *holder,
		  struct img_prepared *ret, struct err *err)
{
	char p[4096], line[IMG_DIGEST_MAX + 1];
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (!image_present(s, digest)) {
		pthread_mutex_unlock(&s->lock);
		return -EAGAIN; /* collected meanwhile: the caller pulls again */
	}
	if (holder) {
		snprintf(line, sizeof(line), "%s\n", digest);
		r = img_store_path(s, p, sizeof(p), "refs/holders/%s", holder);
		if (r == 0)
			r = write_file_atomic(p, line, strlen(line), 0644);
	}
	/* Last use, for GC order. */
	if (r == 0 && img_store_path(s, p, sizeof(p), "images/%s/size", digest + 7) == 0)
		(void)utimensat(AT_FDCWD, p, NULL, 0);
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return err_set(err, r, "cannot record image reference for '%s': %s", holder,
			       strerror(-r));

	*ret = (struct img_prepared){0};
	snprintf(ret->digest, sizeof(ret->digest), "%s", digest);
	if (img_store_path(s, ret->rootfs, sizeof(ret->rootfs), "images/%s/rootfs.ext4",
			   digest + 7) < 0 ||
	    img_store_path(s, ret->config, sizeof(ret->config), "images/%s/config.json",
			   digest + 7) < 0)
		return err_set(err, -ENAMETOOLONG, "state directory path too long");
	return 0;
}

/* A digest reference: the manifest digest it stands for, from the alias table if it named an
 * index. Empty when unknown. */
static void lookup_digest(struct img_store *s, const char *digest, char ret[IMG_DIGEST_MAX])
{
	char p[4096];
	_cleanup_free_ char *buf = NULL;

	ret[0] = '\0';
	if (image_present(s, digest)) {
		snprintf(ret, IMG_DIGEST_MAX, "%s", digest);
		return;
	}
	if (img_store_path(s, p, sizeof(p), "refs/digests/%s", digest + 7) < 0 ||
	    read_file_bounded(p, 128, &buf, NULL) < 0)
		return;
	buf[strcspn(buf, "\n")] = '\0';
	if (hex_digest_ok(buf))
		snprintf(ret, IMG_DIGEST_MAX, "%s", buf);
}

struct fetch_progress {
	img_progress_cb cb;
	void *ud;
	uint64_t base, total;
	unsigned layers_done, layers_total;
};

static void on_bytes(void *ud, uint64_t bytes)
{
	struct fetch_progress *f = ud;

	progress(f->cb, f->ud, "pulling", f->base + bytes, f->total, f->layers_done,
		 f->layers_total);
}

/* The blob at blobs/sha256/<hex>, fetched unless already there with the right size. */
static int ensure_blob(struct img_store *s, struct img_source *src,
		       const struct img_descriptor *d, struct fetch_progress *fp, char *path,
		       size_t size, struct err *err)
{
	struct stat st;
	int r;

	if (!hex_digest_ok(d->digest))
		return err_set(err, -EBADMSG, "manifest names an invalid digest '%.80s'", d->digest);
	r = img_store_path(s, path, size, "blobs/sha256/%s", d->digest + 7);
	if (r < 0)
		return err_set(err, r, "state directory path too long");
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == d->size)
		return 0;
	return img_source_fetch_blob(src, d, path, on_bytes, fp, err);
}

static int write_manifest_json(const char *path, const struct img_manifest *m)
{
	json_auto_t *o = NULL;
	json_t *layers;
	_cleanup_free_ char *text = NULL;

	o = json_pack("{s:s, s:{s:s, s:s, s:I}, s:[]}", "digest", m->digest, "config",
		      "mediaType", m->config.media_type, "digest", m->config.digest, "size",
		      (json_int_t)m->config.size, "layers");
	if (!o)
		return -ENOMEM;
	layers = json_object_get(o, "layers");
	for (size_t i = 0; i < m->n_layers; i++) {
		const struct img_descriptor *d = &m->layers[i];
		if (json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType",
							    d->media_type, "digest", d->digest,
							    "size", (json_int_t)d->size)) < 0)
			return -ENOMEM;
	}
	text = json_dumps(o, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0644);
}

static int file_usage(const char *path, uint64_t *ret)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*ret = (uint64_t)st.st_blocks * 512;
	return 0;
}

/* Fetch, verify, unpack and build into tmp, then rename to images/<hex>. */
static int build_image(struct img_store *s, struct img_source *src, const struct img_manifest *m,
		       img_progress_cb cb, void *ud, struct err *err)
{
	char tmp[3072], p[4096], dst[4096], cfgpath[4096];
	_cleanup_free_ char *cfgbuf = NULL;
	struct img_config cfg = {0};
	struct img_unpack u = {.root_fd = -EBADF};
	struct img_unpack_limits lim = {.max_bytes = s->cfg.max_image_bytes};
	struct fetch_progress fp = {.cb = cb, .ud = ud, .layers_total = (unsigned)m->n_layers};
	size_t cfglen = 0;
	uint64_t used = 0, dsize = 0;
	char sizebuf[32];
	int r;

	fp.total = m->config.size;
	for (size_t i = 0; i < m->n_layers; i++)
		fp.total += m->layers[i].size;

	r = img_store_path(s, tmp, sizeof(tmp), "tmp/%s.XXXXXX", m->digest + 7);
	if (r < 0 || !mkdtemp(tmp))
		return err_set(err, r < 0 ? r : -errno, "cannot create build directory: %s",
			       strerror(r < 0 ? -r : errno));

	progress(cb, ud, "pulling", 0, fp.total, 0, fp.layers_total);
	r = ensure_blob(s, src, &m->config, &fp, cfgpath, sizeof(cfgpath), err);
	if (r < 0)
		goto out_rm;
	fp.base += m->config.size;
	r = read_file_bounded(cfgpath, CONFIG_BLOB_MAX, &cfgbuf, &cfglen);
	if (r < 0) {
		err_set(err, r, "cannot read image config: %s", strerror(-r));
		goto out_rm;
	}
	r = img_config_parse(cfgbuf, cfglen, &cfg, err);
	if (r < 0)
		goto out_rm;
	if (cfg.n_diff_ids != m->n_layers) {
		r = err_set(err, -EBADMSG, "image config lists %zu diff_ids for %zu layers",
			    cfg.n_diff_ids, m->n_layers);
		goto out_cfg;
	}

	snprintf(p, sizeof(p), "%s/rootfs", tmp);
	if (mkdir(p, 0755) < 0)
		r = -errno;
	if (r < 0) {
		err_set(err, r, "cannot create rootfs directory: %s", strerror(-r));
		goto out_cfg;
	}
	r = img_unpack_init(&u, p, &lim, err);
	if (r < 0)
		goto out_cfg;
	for (size_t i = 0; i < m->n_layers; i++) {
		char lpath[4096];
		_cleanup_close_ int fd = -EBADF;

		r = ensure_blob(s, src, &m->layers[i], &fp, lpath, sizeof(lpath), err);
		if (r < 0)
			goto out_unpack;
		fp.base += m->layers[i].size;
		progress(cb, ud, "unpacking", fp.base, fp.total, (unsigned)i, fp.layers_total);
		fd = open(lpath, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = err_set(err, -errno, "cannot open layer %s: %s", m->layers[i].digest,
				    strerror(errno));
			goto out_unpack;
		}
		r = img_unpack_layer(&u, fd, m->layers[i].digest, cfg.diff_ids[i], err);
		if (r < 0)
			goto out_unpack;
		fp.layers_done = (unsigned)i + 1;
	}
	img_unpack_done(&u);

	progress(cb, ud, "building disk", fp.total, fp.total, fp.layers_done, fp.layers_total);
	snprintf(dst, sizeof(dst), "%s/rootfs.ext4", tmp);
	r = img_make_root_disk(p, dst, err);
	if (r < 0)
		goto out_cfg;
	(void)rm_rf(p);
	r = file_usage(dst, &dsize);
	snprintf(p, sizeof(p), "%s/config.json", tmp);
	if (r == 0)
		r = write_file_atomic(p, cfg.guest_json, strlen(cfg.guest_json), 0644);
	snprintf(p, sizeof(p), "%s/manifest.json", tmp);
	if (r == 0)
		r = write_manifest_json(p, m);
	used = dsize + 3 * 4096;
	snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64 "\n", used);
	snprintf(p, sizeof(p), "%s/size", tmp);
	if (r == 0)
		r = write_file_atomic(p, sizebuf, strlen(sizebuf), 0644);
	if (r < 0) {
		err_set(err, r, "cannot write image metadata: %s", strerror(-r));
		goto out_cfg;
	}
	r = img_store_path(s, dst, sizeof(dst), "images/%s", m->digest + 7);
	if (r == 0 && rename(tmp, dst) < 0)
		r = errno == EEXIST || errno == ENOTEMPTY ? 0 : -errno; /* built meanwhile */
	if (r < 0) {
		err_set(err, r, "cannot move image into place: %s", strerror(-r));
		goto out_cfg;
	}
	(void)rm_rf(tmp);
	img_config_done(&cfg);
	return 0;

out_unpack:
	img_unpack_done(&u);
out_cfg:
	img_config_done(&cfg);
out_rm:
	(void)rm_rf(tmp);
	return r;
}

static void pull_unref(struct img_store *s, struct img_pull *pl)
{
	if (--pl->users > 0)
		return;
	for (struct img_pull **pp = &s->pulls; *pp; pp = &(*pp)->next)
		if (*pp == pl) {
			*pp = pl->next;
			break;
		}
	for (size_t i = 0; i < pl->n_blobs; i++)
		free(pl->blobs[i]);
	free(pl->blobs);
	free(pl);
}

static struct img_pull *pull_new(const struct img_manifest *m)
{
	struct img_pull *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pl->blobs = calloc(m->n_layers + 1, sizeof(char *));
	if (!pl->blobs) {
		free(pl);
		return NULL;
	}
	snprintf(pl->digest, sizeof(pl->digest), "%s", m->digest);
	pl->users = 1;
	for (size_t i = 0; i <= m->n_layers; i++) {
		pl->blobs[i] = strdup(i == 0 ? m->config.digest : m->layers[i - 1].digest);
		if (!pl->blobs[i]) {
			pl->n_blobs = i;
			pl->users = 0;
			for (size_t j = 0; j < i; j++)
				free(pl->blobs[j]);
			free(pl->blobs);
			free(pl);
			return NULL;
		}
	}
	pl->n_blobs = m->n_layers + 1;
	return pl;
}

/* Run the pull for m, or wait for the one already running. */
static int pull_coalesced(struct img_store *s, struct img_source *src,
			  const struct img_manifest *m, img_progress_cb cb, void *ud,
			  struct err *err)
{
	struct img_pull *pl;
	int r;

	pthread_mutex_lock(&s->lock);
	if (image_present(s, m->digest)) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	for (pl = s->pulls; pl; pl = pl->next)
		if (strcmp(pl->digest, m->digest) == 0)
			break;
	if (pl) {
		pl->users++;
		progress(cb, ud, "pulling", 0, 0, 0, (unsigned)m->n_layers);
		while (!pl->done)
			pthread_cond_wait(&s->cond, &s->lock);
		r = pl->result;
		if (r < 0 && err)
			*err = pl->err;
		pull_unref(s, pl);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	pl = pull_new(m);
	if (!pl) {
		pthread_mutex_unlock(&s->lock);
		return err_set(err, -ENOMEM, "out of memory");
	}
	pl->next = s->pulls;
	s->pulls = pl;
	s->pulls_started++;
	pthread_mutex_unlock(&s->lock);

	r = build_image(s, src, m, cb, ud, &pl->err);

	pthread_mutex_lock(&s->lock);
	pl->done = true;
	pl->result = r;
	if (r < 0 && err)
		*err = pl->err;
	pthread_cond_broadcast(&s->cond);
	pull_unref(s, pl);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void save_alias(struct img_store *s, const char *from, const char *to)
{
	char p[4096], line[IMG_DIGEST_MAX + 1];

	if (strcmp(from, to) == 0 || img_store_path(s, p, sizeof(p), "refs/digests/%s",
						     from + 7) < 0)
		return;
	snprintf(line, sizeof(line), "%s\n", to);
	pthread_mutex_lock(&s->lock);
	(void)write_file_atomic(p, line, strlen(line), 0644);
	pthread_mutex_unlock(&s->lock);
}

int img_prepare(struct img_store *s, const char *ref_s, const char *holder, img_progress_cb cb,
		void *ud, struct img_prepared *ret, struct err *err)
{
	struct img_ref ref;
	char digest[IMG_DIGEST_MAX];
	int r;

	if (err)
		err_clear(err);
	if (holder && !img_holder_is_valid(holder))
		return err_set(err, -EINVAL, "invalid image holder name '%.80s'", holder);
	r = img_ref_parse(ref_s, &ref, err);
	if (r < 0)
		return r;

	/* A digest we have needs no network at all. */
	if (ref.digest[0] && hex_digest_ok(ref.digest)) {
		lookup_digest(s, ref.digest, digest);
		if (digest[0]) {
			r = finish(s, digest, holder, ret, err);
			if (r != -EAGAIN) {
				if (r >= 0)
					progress(cb, ud, "ready", 0, 0, 0, 0);
				return r;
			}
		}
	}

	for (int attempt = 0;; attempt++) {
		_cleanup_(img_source_freep) struct img_source *src = NULL;
		struct img_manifest m = {0};

		progress(cb, ud, "resolving", 0, 0, 0, 0);
		r = img_source_open(&s->cfg, &ref, &src, err);
		if (r < 0)
			return r;
		r = img_source_resolve(src, &m, err);
		if (r < 0)
			return r;
		if (!hex_digest_ok(m.digest)) {
			img_manifest_done(&m);
			return err_set(err, -EBADMSG, "registry gave no usable manifest digest");
		}
		if (ref.digest[0])
			save_alias(s, ref.digest, m.digest);
		r = pull_coalesced(s, src, &m, cb, ud, err);
		if (r >= 0)
			r = finish(s, m.digest, holder, ret, err);
		img_manifest_done(&m);
		/* -EAGAIN: GC removed the image between build and reference; once more. */
		if (r != -EAGAIN || attempt > 0)
			break;
	}
	if (r == -EAGAIN)
		r = err_set(err, -EAGAIN, "image was collected while it was being prepared");
	if (r >= 0)
		progress(cb, ud, "ready", 0, 0, 0, 0);
	return r;
}

unsigned long img_store_pulls(struct img_store *s)
{
	unsigned long n;

	pthread_mutex_lock(&s->lock);
	n = s->pulls_started;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static char *strdup_or_null(const char *s, bool *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

int img_store_new(const struct img_store_config *cfg, struct img_store **ret, struct err *err)
{
	struct img_store *s;
	bool oom = false;
	size_t n = 0;
	char p[4096];
	static const char *const dirs[] = {"blobs/sha256", "images", "refs/holders",
					   "refs/digests", "tmp"};
	int r;

	if (!cfg || !cfg->state_dir || !*cfg->state_dir)
		return err_set(err, -EINVAL, "image store: no state directory");
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, -ENOMEM, "out of memory");
	s->lock_fd = -EBADF;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->cfg = *cfg;
	s->cfg.state_dir = strdup_or_null(cfg->state_dir, &oom);
	s->cfg.docker_config = strdup_or_null(cfg->docker_config, &oom);
	if (asprintf(&s->root, "%s/images", cfg->state_dir) < 0) {
		s->root = NULL;
		oom = true;
	}
	for (; cfg->insecure && cfg->insecure[n]; n++)
		;
	s->insecure = calloc(n + 1, sizeof(char *));
	if (!s->insecure)
		oom = true;
	for (size_t i = 0; s->insecure && i < n; i++)
		s->insecure[i] = strdup_or_null(cfg->insecure[i], &oom);
	s->cfg.insecure = (const char *const *)s->insecure;
	if (s->cfg.max_image_bytes == 0)
		s->cfg.max_image_bytes = IMG_DEFAULT_MAX_BYTES;
	if (oom) {
		img_store_free(s);
		return err_set(err, -ENOMEM, "out of memory");
	}

	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		r = img_store_path(s, p, sizeof(p), "%s", dirs[i]);
		if (r == 0)
			r = mkdir_p(p, 0755);
		if (r < 0) {
			img_store_free(s);
			return err_set(err, r, "cannot create image store in %s: %s",
				       cfg->state_dir, strerror(-r));
		}
	}
	r = img_store_path(s, p, sizeof(p), "lock");
	if (r == 0) {
		s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
			r = errno == EWOULDBLOCK ? -EBUSY : -errno;
	}
	if (r < 0) {
		img_store_free(s);
		return err_set(err, r, "image store %s/images is in use by another process",
			       cfg->state_dir);
	}
	/* Builds a crash interrupted. */
	if (img_store_path(s, p, sizeof(p), "tmp") == 0 && rm_rf(p) == 0)
		(void)mkdir(p, 0755);
	*ret = s;
	return 0;
}

struct img_store *img_store_free(struct img_store *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; s->insecure && s->insecure[i]; i++)
		free(s->insecure[i]);
	free(s->insecure);
	free((char *)s->cfg.state_dir);
	free((char *)s->cfg.docker_config);
	free(s->root);
	safe_close(s->lock_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}
