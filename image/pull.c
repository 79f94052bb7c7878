/* SPDX-License-Identifier: MIT */
/*
 * Building one image into the store: the config blob, then the layers, fetched by a helper
 * thread while this thread unpacks the ones already there (download and unpack overlap), then
 * the ext4 root disk. Everything happens in tmp/<hex>.XXXXXX, renamed to images/<hex> at the
 * end, so a crash or failure never leaves a half-built image where the store would use it.
 * Before anything is fetched the declared sizes are checked against the store's limits, and
 * before each blob the free space (blob plus the disk reserve) of the state directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"
#include "internal.h"
#include "macro.h"

#define BLOB_PATH_MAX 4096

/* Shared between the unpacking (calling) thread and the fetch thread. */
struct pipeline {
	struct img_store *s;
	struct img_source *src; /* used by the fetch thread only, once it runs */
	const struct img_manifest *m;
	char (*paths)[BLOB_PATH_MAX];
	atomic_bool cancel;	  /* the unpack is over: the fetch thread stops */
	const atomic_bool *abort; /* nobody waits for this pull any more (may be NULL) */

	/* Protects all below and serialises progress callbacks. Taken before img_store.lock
	 * (the progress relay takes that inside a callback), never after it. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t fetched; /* layers fully fetched */
	int result;	/* first fetch failure */
	struct err err;
	img_progress_cb cb;
	void *ud;
	const char *phase;
	uint64_t base, bytes, total;
	uint64_t emitted; /* bytes at the last byte-progress callback */
	unsigned layers_done;
};

#define PROGRESS_STEP (1u << 20) /* byte progress at most once per MiB */

static void emit_locked(struct pipeline *p)
{
	img_progress_emit(p->cb, p->ud, p->phase, p->bytes, p->total, p->layers_done,
			  (unsigned)p->m->n_layers);
}

static void on_bytes(void *ud, uint64_t bytes)
{
	struct pipeline *p = ud;

	pthread_mutex_lock(&p->lock);
	p->bytes = p->base + bytes;
	if (p->bytes - MIN(p->emitted, p->bytes) >= PROGRESS_STEP) {
		p->emitted = p->bytes;
		emit_locked(p);
	}
	pthread_mutex_unlock(&p->lock);
}

/* The blob at blobs/sha256/<hex>, fetched unless already there with the right size. */
static int ensure_blob(struct pipeline *p, const struct img_descriptor *d, char *path,
		       struct err *err)
{
	char dir[BLOB_PATH_MAX], what[128];
	struct stat st;
	int r;

	if (!img_digest_is_valid(d->digest))
		return err_set(err, -EBADMSG, "manifest names an invalid digest '%.80s'",
			       d->digest);
	r = img_store_path(p->s, path, BLOB_PATH_MAX, "blobs/sha256/%s", d->digest + 7);
	if (r < 0)
		return err_set(err, r, "state directory path too long");
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == d->size)
		return 0;
	/* Room for the blob plus the reserve, before a byte is fetched. */
	r = img_store_path(p->s, dir, sizeof(dir), "blobs");
	if (r < 0)
		return err_set(err, r, "state directory path too long");
	snprintf(what, sizeof(what), "blob %.80s", d->digest);
	r = img_check_space(dir, d->size, p->s->limits.disk_reserve, what, err);
	if (r < 0)
		return r;
	return img_source_fetch_blob(p->src, d, path, on_bytes, p, err);
}

static void *fetch_thread(void *ud)
{
	struct pipeline *p = ud;

	/* An abort ends the source's transfers (its cancel flag), so no extra check here. */
	for (size_t i = 0; i < p->m->n_layers && !atomic_load(&p->cancel); i++) {
		struct err err = {0};
		int r = ensure_blob(p, &p->m->layers[i], p->paths[i], &err);

		pthread_mutex_lock(&p->lock);
		if (r < 0) {
			p->result = r;
			p->err = err;
		} else {
			p->fetched = i + 1;
			p->base += p->m->layers[i].size;
			p->bytes = p->base;
			if (p->fetched == p->m->n_layers)
				p->phase = "unpacking";
			emit_locked(p);
		}
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		if (r < 0)
			break;
	}
	return NULL;
}

/* Wait until layer i is on disk (or the fetch failed). */
static int wait_layer(struct pipeline *p, size_t i, struct err *err)
{
	int r = 0;

	pthread_mutex_lock(&p->lock);
	while (p->fetched <= i && p->result == 0)
		pthread_cond_wait(&p->cond, &p->lock);
	if (p->fetched <= i) {
		r = p->result;
		if (err)
			*err = p->err;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

static int write_manifest_json(const char *path, const struct img_manifest *m)
{
	json_auto_t *o = NULL;
	json_t *layers;
	_cleanup_free_ char *text = NULL;

	o = json_pack("{s:s, s:{s:s, s:s, s:I}, s:[]}", "digest", m->digest, "config", "mediaType",
		      m->config.media_type, "digest", m->config.digest, "size",
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

/* The config blob, parsed; a cached copy is re-verified (it is small) and refetched if bad. */
static int load_config(struct pipeline *p, struct img_config *ret, struct err *err)
{
	char path[BLOB_PATH_MAX], dig[IMG_DIGEST_MAX];
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = ensure_blob(p, &p->m->config, path, err);
	if (r < 0)
		return r;
	if (img_digest_file(path, dig) < 0 || strcmp(dig, p->m->config.digest) != 0) {
		(void)unlink(path);
		r = ensure_blob(p, &p->m->config, path, err);
		if (r < 0)
			return r;
	}
	r = read_file_bounded(path, (size_t)p->s->limits.max_config_bytes, &buf, &len);
	if (r < 0)
		return err_set(err, r, "cannot read image config: %s", strerror(-r));
	r = img_config_parse(buf, len, ret, err);
	if (r < 0)
		return r;
	if (ret->n_diff_ids != p->m->n_layers) {
		img_config_done(ret);
		return err_set(err, -EBADMSG, "image config lists %zu diff_ids for %zu layers",
			       ret->n_diff_ids, p->m->n_layers);
	}
	return 0;
}

/* Unpack every layer into rootfs as the fetch thread delivers them. */
static int unpack_all(struct pipeline *p, const struct img_config *cfg, const char *rootfs,
		      struct err *err)
{
	struct img_unpack u;
	struct img_unpack_limits lim = {.max_bytes = p->s->limits.max_image_bytes};
	int r;

	r = img_unpack_init(&u, rootfs, &lim, err);
	if (r < 0)
		return r;
	u.stop = p->abort;
	for (size_t i = 0; i < p->m->n_layers; i++) {
		_cleanup_close_ int fd = -EBADF;

		r = wait_layer(p, i, err);
		if (r < 0)
			break;
		fd = open(p->paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = err_set(err, -errno, "cannot open layer %s: %s", p->m->layers[i].digest,
				    strerror(errno));
			break;
		}
		r = img_unpack_layer(&u, fd, p->m->layers[i].digest, cfg->diff_ids[i], err);
		if (r == -EBADMSG)
			/* A corrupt cached blob would fail every retry: fetch it afresh next time.
			 */
			(void)unlink(p->paths[i]);
		if (r < 0)
			break;
		pthread_mutex_lock(&p->lock);
		p->layers_done = (unsigned)i + 1;
		emit_locked(p);
		pthread_mutex_unlock(&p->lock);
	}
	img_unpack_done(&u);
	return r;
}

/* rootfs.ext4, config.json, manifest.json and size in dir, from the unpacked rootfs. */
static int write_image_files(const char *dir, const char *rootfs, const struct img_manifest *m,
			     const struct img_config *cfg, struct err *err)
{
	char p[4096 + 32], sizebuf[32];
	struct stat st;
	int r;

	snprintf(p, sizeof(p), "%s/rootfs.ext4", dir);
	r = img_make_root_disk(rootfs, p, err);
	if (r < 0)
		return r;
	(void)rm_rf(rootfs); /* the disk has it all now */
	if (stat(p, &st) < 0)
		return err_set(err, -errno, "cannot stat root disk: %s", strerror(errno));
	snprintf(p, sizeof(p), "%s/config.json", dir);
	r = write_file_atomic(p, cfg->guest_json, strlen(cfg->guest_json), 0644);
	snprintf(p, sizeof(p), "%s/manifest.json", dir);
	if (r == 0)
		r = write_manifest_json(p, m);
	snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64 "\n",
		 (uint64_t)st.st_blocks * 512 + (uint64_t)3 * 4096);
	snprintf(p, sizeof(p), "%s/size", dir);
	if (r == 0)
		r = write_file_atomic(p, sizebuf, strlen(sizebuf), 0644);
	if (r < 0)
		return err_set(err, r,
			       r == -ENOSPC ? "disk full writing image metadata"
					    : "cannot write image metadata: %s",
			       strerror(-r));
	return 0;
}

static int build_in(struct pipeline *p, const char *tmp, struct err *err)
{
	struct img_config cfg = {0};
	char rootfs[4096 + 16], dst[4096];
	pthread_t thread;
	int r, q;

	r = load_config(p, &cfg, err);
	if (r < 0)
		return r;
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmp);
	if (mkdir(rootfs, 0755) < 0 || chmod(rootfs, 0755) < 0) {
		r = err_set(err, -errno, "cannot create rootfs directory: %s", strerror(errno));
		img_config_done(&cfg);
		return r;
	}

	pthread_mutex_lock(&p->lock);
	p->base = p->bytes = p->m->config.size;
	emit_locked(p);
	pthread_mutex_unlock(&p->lock);
	q = pthread_create(&thread, NULL, fetch_thread, p);
	if (q != 0) {
		img_config_done(&cfg);
		return err_set(err, -q, "cannot start fetch thread: %s", strerror(q));
	}
	r = unpack_all(p, &cfg, rootfs, err);
	atomic_store(&p->cancel, true);
	(void)pthread_join(thread, NULL);

	if (r >= 0) {
		pthread_mutex_lock(&p->lock);
		p->phase = "building disk";
		emit_locked(p);
		pthread_mutex_unlock(&p->lock);
		r = write_image_files(tmp, rootfs, p->m, &cfg, err);
	}
	img_config_done(&cfg);
	if (r < 0)
		return r;

	r = img_store_path(p->s, dst, sizeof(dst), "images/%s", p->m->digest + 7);
	if (r == 0 && rename(tmp, dst) < 0)
		r = errno == EEXIST || errno == ENOTEMPTY ? 0 : -errno; /* built meanwhile */
	if (r < 0)
		return err_set(err, r, "cannot move image into place: %s", strerror(-r));
	return 0;
}

/* The declared sizes against the limits, before anything is fetched. */
static int check_declared(const struct img_limits *lim, const struct img_manifest *m,
			  struct err *err)
{
	uint64_t total = m->config.size;

	if (m->config.size > lim->max_config_bytes)
		return err_set(err, -EFBIG,
			       "image config %.80s declares %" PRIu64
			       " bytes, over the limit of %" PRIu64,
			       m->config.digest, m->config.size, lim->max_config_bytes);
	for (size_t i = 0; i < m->n_layers; i++) {
		const struct img_descriptor *d = &m->layers[i];

		if (d->size > lim->max_layer_bytes)
			return err_set(err, -EFBIG,
				       "layer %.80s declares %" PRIu64
				       " bytes, over the limit of %" PRIu64,
				       d->digest, d->size, lim->max_layer_bytes);
		if (d->size > UINT64_MAX - total)
			total = UINT64_MAX;
		else
			total += d->size;
	}
	if (total > lim->max_image_bytes)
		return err_set(err, -EFBIG,
			       "image declares %" PRIu64
			       " bytes of blobs, over the limit of %" PRIu64,
			       total, lim->max_image_bytes);
	return 0;
}

int img_build_image(struct img_store *s, struct img_source *src, const struct img_manifest *m,
		    img_progress_cb cb, void *ud, const atomic_bool *abort, struct err *err)
{
	struct pipeline p = {
		.s = s,
		.src = src,
		.m = m,
		.cb = cb,
		.ud = ud,
		.phase = "pulling",
		.abort = abort,
	};
	char tmp[3072];
	int r;

	r = check_declared(&s->limits, m, err);
	if (r < 0)
		return r;
	p.total = m->config.size;
	for (size_t i = 0; i < m->n_layers; i++)
		p.total += m->layers[i].size;
	p.paths = calloc(m->n_layers + 1, sizeof(*p.paths));
	if (!p.paths)
		return err_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);

	r = img_store_path(s, tmp, sizeof(tmp), "tmp/%s.XXXXXX", m->digest + 7);
	if (r < 0 || !mkdtemp(tmp)) {
		r = err_set(err, r < 0 ? r : -errno, "cannot create build directory: %s",
			    strerror(r < 0 ? -r : errno));
	} else {
		r = build_in(&p, tmp, err);
		(void)rm_rf(tmp); /* gone already after a successful rename */
	}
	pthread_cond_destroy(&p.cond);
	pthread_mutex_destroy(&p.lock);
	free(p.paths);
	return r;
}
