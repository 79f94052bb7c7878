/* SPDX-License-Identifier: MIT */
/*
 * The content-addressed image store under <state_dir>/images:
 *
 *   blobs/sha256/<hex>                 layers and configs, shared by every image
 *   images/<manifest-hex>/             rootfs.ext4 (padded), config.json (guest), manifest.json,
 *                                      size (allocated bytes)
 *   refs/holders/<holder>              manifest digest a VM holds (GC never drops it)
 *   refs/digests/<hex>                 index digest -> manifest digest, so digest refs stay local
 *   refs/verified/<hex>                key that verified a signature of that digest (cosign.c)
 *   refs/tags/<sha256 of reference>    manifest digest a tag or s3:// reference last resolved
 *                                      to; for S3 a second line, the object's version
 *                                      (img_source_version), so an unchanged object is not
 *                                      downloaded again
 *   tmp/                               builds in progress; renamed into images/ when complete
 *
 * Concurrent img_prepare calls for one manifest digest coalesce into one pull, run by a thread
 * of its own; every caller waits on the store's condvar (waking every 100 ms to look at its
 * cancel flag). A caller that is cancelled leaves at once; the last one to leave aborts the
 * pull (its transfers and unpack stop, its partial files are removed). Resolving a reference
 * (manifest GETs, the S3 download) happens in the caller's thread, bounded by the same cancel
 * flag and deadlines.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "cosign.h"
#include "fileio.h"
#include "internal.h"
#include "log.h"
#include "macro.h"

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

static bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

void img_progress_emit(img_progress_cb cb, void *ud, const char *phase, uint64_t done,
		       uint64_t total, unsigned ldone, unsigned ltotal)
{
	struct img_progress p = {phase, done, total, ldone, ltotal};

	if (cb)
		cb(ud, &p);
}

/* A small record file, written (with its fsyncs) only when its content changes: a restarted
 * VM holds the same image, a tag mostly resolves to the same digest. */
static int write_if_changed(const char *path, const char *line)
{
	_cleanup_free_ char *old = NULL;

	if (read_file_bounded(path, 128, &old, NULL) == 0 && streq(old, line))
		return 0;
	return write_file_atomic(path, line, strlen(line), 0644);
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
	/* A root disk an older version built unpadded is padded now (a sparse tail: the VMs that
	 * have it open keep the device size they probed). If that fails it works as it is, with a
	 * device size, so a booted template, of its own. */
	if (img_store_path(s, p, sizeof(p), "images/%s/rootfs.ext4", digest + 7) == 0) {
		struct err perr = {0};

		if (img_pad_root_disk(p, &perr) < 0)
			log_warning("image %s: %s", digest, perr.msg);
	}
	if (holder) {
		snprintf(line, sizeof(line), "%s\n", digest);
		r = img_store_path(s, p, sizeof(p), "refs/holders/%s", holder);
		if (r == 0)
			r = write_if_changed(p, line);
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
	if (img_digest_is_valid(buf))
		snprintf(ret, IMG_DIGEST_MAX, "%s", buf);
}

static void pull_unlist(struct img_store *s, struct img_pull *pl)
{
	if (!pl->listed)
		return;
	for (struct img_pull **pp = &s->pulls; *pp; pp = &(*pp)->next)
		if (*pp == pl) {
			*pp = pl->next;
			break;
		}
	pl->listed = false;
	pthread_cond_broadcast(&s->cond); /* GC and img_store_free look at the list */
}

static void pull_free(struct img_pull *pl)
{
	for (size_t i = 0; pl->blobs && i < pl->n_blobs; i++)
		free(pl->blobs[i]);
	free(pl->blobs);
	img_source_free(pl->src);
	if (pl->m) {
		img_manifest_done(pl->m);
		free(pl->m);
	}
	pthread_mutex_destroy(&pl->cb_lock);
	free(pl);
}

/* Under s->lock. */
static void pull_unref(struct img_store *s, struct img_pull *pl)
{
	if (--pl->refs > 0)
		return;
	pull_unlist(s, pl);
	pull_free(pl);
}

static struct img_pull *pull_new(struct img_store *s, const struct img_manifest *m)
{
	struct img_pull *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pthread_mutex_init(&pl->cb_lock, NULL);
	pl->s = s;
	atomic_init(&pl->abort, false);
	snprintf(pl->digest, sizeof(pl->digest), "%s", m->digest);
	pl->blobs = calloc(m->n_layers + 1, sizeof(char *));
	pl->m = calloc(1, sizeof(*pl->m));
	if (!pl->blobs || !pl->m) {
		pull_free(pl);
		return NULL;
	}
	for (size_t i = 0; i <= m->n_layers; i++) {
		pl->blobs[i] = strdup(i == 0 ? m->config.digest : m->layers[i - 1].digest);
		if (!pl->blobs[i]) {
			pl->n_blobs = i;
			pull_free(pl);
			return NULL;
		}
	}
	pl->n_blobs = m->n_layers + 1;
	return pl;
}

/* The pull's progress: to the creating caller while it waits (from this thread, as before
 * pulls had threads of their own), and kept for the other waiters. */
static void relay_progress(void *ud, const struct img_progress *p)
{
	struct img_pull *pl = ud;

	pthread_mutex_lock(&pl->cb_lock);
	if (pl->cb)
		pl->cb(pl->ud, p);
	pthread_mutex_unlock(&pl->cb_lock);
	pthread_mutex_lock(&pl->s->lock);
	pl->progress = *p; /* phase points to a string constant */
	pl->progress_seq++;
	pthread_cond_broadcast(&pl->s->cond);
	pthread_mutex_unlock(&pl->s->lock);
}

static void *pull_thread(void *ud)
{
	struct img_pull *pl = ud;
	struct img_store *s = pl->s;
	struct err err = {0};
	int r;

	r = img_build_image(s, pl->src, pl->m, relay_progress, pl, &pl->abort, &err);
	/* Its connections are closed here, not under the store lock. */
	pl->src = img_source_free(pl->src);
	if (r < 0 && atomic_load(&pl->abort))
		r = err_set(&err, -ECANCELED, "pull of %s cancelled: nobody waits for it",
			    pl->digest);
	pthread_mutex_lock(&s->lock);
	pl->done = true;
	pl->result = r;
	pl->err = err;
	pull_unlist(s, pl);
	pthread_cond_broadcast(&s->cond);
	s->pull_threads--;
	pull_unref(s, pl);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += ms * 1000000L;
	ts->tv_sec += ts->tv_nsec / 1000000000L;
	ts->tv_nsec %= 1000000000L;
}

#define WAIT_POLL_MS 100 /* a waiter looks at its cancel flag this often */

/*
 * Wait for pl under s->lock, holding a ref and counted in waiters. creator: its progress
 * callback is called by the pull thread; others get the pull's progress relayed here. Drops
 * the ref and returns the result, or -ECANCELED as soon as *cancel is set (aborting the pull
 * if no waiter is left).
 */
static int pull_wait(struct img_store *s, struct img_pull *pl, bool creator, img_progress_cb cb,
		     void *ud, const atomic_bool *cancel, const char *name, struct err *err)
{
	unsigned long seen = 0;
	int r;

	while (!pl->done) {
		struct timespec ts;

		if (cancel && atomic_load(cancel)) {
			if (creator) {
				/* No more calls into our caller's callback from the pull thread. */
				pthread_mutex_unlock(&s->lock);
				pthread_mutex_lock(&pl->cb_lock);
				pl->cb = NULL;
				pl->ud = NULL;
				pthread_mutex_unlock(&pl->cb_lock);
				pthread_mutex_lock(&s->lock);
			}
			if (--pl->waiters == 0 && !pl->done) {
				atomic_store(&pl->abort, true);
				pull_unlist(s, pl); /* a new caller starts afresh */
			}
			pull_unref(s, pl);
			return err_set(err, -ECANCELED, "pull of %.300s cancelled", name);
		}
		if (!creator && cb && pl->progress_seq != seen) {
			struct img_progress p = pl->progress;

			seen = pl->progress_seq;
			pthread_mutex_unlock(&s->lock);
			cb(ud, &p);
			pthread_mutex_lock(&s->lock);
			continue;
		}
		deadline_in(&ts, WAIT_POLL_MS);
		(void)pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	r = pl->result;
	if (r < 0 && err)
		*err = pl->err;
	pl->waiters--;
	pull_unref(s, pl);
	return r;
}

/* Run the pull for *m in a thread of its own (taking *srcp and *m), or join the one already
 * running; wait for it. */
static int pull_coalesced(struct img_store *s, struct img_source **srcp, struct img_manifest *m,
			  img_progress_cb cb, void *ud, const atomic_bool *cancel, const char *name,
			  struct err *err)
{
	struct img_pull *pl;
	pthread_attr_t attr;
	pthread_t thread;
	bool creator = false;
	int r;

	pthread_mutex_lock(&s->lock);
	if (image_present(s, m->digest)) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	for (pl = s->pulls; pl; pl = pl->next)
		if (strcmp(pl->digest, m->digest) == 0)
			break;
	if (!pl) {
		pl = pull_new(s, m);
		if (!pl) {
			pthread_mutex_unlock(&s->lock);
			return err_set(err, -ENOMEM, "out of memory");
		}
		pl->src = TAKE_PTR(*srcp);
		*pl->m = *m; /* the pull thread owns the layers array now */
		*m = (struct img_manifest){0};
		snprintf(m->digest, sizeof(m->digest), "%s", pl->digest);
		img_source_set_cancel(pl->src, &pl->abort);
		pl->cb = cb;
		pl->ud = ud;
		pl->refs = 1; /* the thread's */
		r = pthread_attr_init(&attr);
		if (r == 0) {
			(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			r = pthread_create(&thread, &attr, pull_thread, pl);
			pthread_attr_destroy(&attr);
		}
		if (r != 0) {
			pull_free(pl);
			pthread_mutex_unlock(&s->lock);
			return err_set(err, -r, "cannot start a pull thread: %s", strerror(r));
		}
		pl->listed = true;
		pl->next = s->pulls;
		s->pulls = pl;
		s->pulls_started++;
		s->pull_threads++;
		creator = true;
	}
	pl->refs++;
	pl->waiters++;
	r = pull_wait(s, pl, creator, cb, ud, cancel, name, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void save_alias(struct img_store *s, const char *from, const char *to)
{
	char p[4096], line[IMG_DIGEST_MAX + 1];

	if (strcmp(from, to) == 0 ||
	    img_store_path(s, p, sizeof(p), "refs/digests/%s", from + 7) < 0)
		return;
	snprintf(line, sizeof(line), "%s\n", to);
	pthread_mutex_lock(&s->lock);
	(void)write_if_changed(p, line);
	pthread_mutex_unlock(&s->lock);
}

/* refs/tags/<sha256 of the canonical reference>: the manifest digest a tag last resolved to,
 * so a VM can start from the cache while its registry is unreachable. */
static int tag_path(struct img_store *s, const struct img_ref *ref, char *buf, size_t size)
{
	char canon[IMG_REF_MAX], hex[65];
	unsigned char md[32];
	unsigned int n = 0;

	if (img_ref_format(ref, canon, sizeof(canon)) < 0 ||
	    EVP_Digest(canon, strlen(canon), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -EINVAL;
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + (size_t)2 * i, 3, "%02x", md[i]);
	return img_store_path(s, buf, size, "refs/tags/%s", hex);
}

/* version: "" when the source has none. The record stays under the 128 bytes GC reads. */
static void save_tag(struct img_store *s, const struct img_ref *ref, const char *digest,
		     const char *version)
{
	char p[4096], line[IMG_DIGEST_MAX + IMG_VERSION_MAX + 2];

	if (tag_path(s, ref, p, sizeof(p)) < 0)
		return;
	snprintf(line, sizeof(line), "%s\n%s%s", digest, version, version[0] ? "\n" : "");
	pthread_mutex_lock(&s->lock);
	(void)write_if_changed(p, line);
	pthread_mutex_unlock(&s->lock);
}

static bool registry_unreachable(int r)
{
	return r == -EHOSTUNREACH || r == -ETIMEDOUT || r == -ECONNRESET || r == -ECONNREFUSED ||
	       r == -ENETUNREACH || r == -EAGAIN;
}

/* The cached image a tag last resolved to, if still present, and the source's version then
 * ("" when none was recorded; ret_version may be NULL). */
static bool cached_tag(struct img_store *s, const struct img_ref *ref, char ret[IMG_DIGEST_MAX],
		       char ret_version[IMG_VERSION_MAX])
{
	char p[4096];
	_cleanup_free_ char *buf = NULL;
	char *version;

	if (tag_path(s, ref, p, sizeof(p)) < 0 || read_file_bounded(p, 128, &buf, NULL) < 0)
		return false;
	version = buf + strcspn(buf, "\n");
	if (*version)
		*version++ = '\0';
	version[strcspn(version, "\n")] = '\0';
	if (!img_digest_is_valid(buf) || !image_present(s, buf))
		return false;
	snprintf(ret, IMG_DIGEST_MAX, "%s", buf);
	if (ret_version)
		snprintf(ret_version, IMG_VERSION_MAX, "%s",
			 strlen(version) < IMG_VERSION_MAX ? version : "");
	return true;
}

/* An s3:// reference whose object is unchanged since it was last resolved: the cached image,
 * without downloading the archive. Returns true with *ret_r set when it decided the call. */
static bool warm_start(struct img_store *s, const struct img_ref *ref, const char *version,
		       const char *holder, struct img_prepared *ret, struct err *err, int *ret_r)
{
	char digest[IMG_DIGEST_MAX], cached[IMG_VERSION_MAX];
	int r;

	if (!version[0] || !cached_tag(s, ref, digest, cached) || !streq(version, cached))
		return false;
	r = finish(s, digest, holder, ret, err);
	if (r == -EAGAIN)
		return false; /* collected meanwhile: resolve and pull */
	*ret_r = r;
	return true;
}

/* One resolve + verify + pull + build of ref from its source ("ready" is the caller's to say).
 * Falls back to the cached tag when
 * the registry cannot be reached (only for a tag, only if its signature is cached). */
static int prepare_once(struct img_store *s, const struct img_ref *ref, const char *name,
			const char *holder, img_progress_cb cb, void *ud, const atomic_bool *cancel,
			struct img_prepared *ret, char key[IMG_DIGEST_MAX], struct err *err)
{
	_cleanup_(img_source_freep) struct img_source *src = NULL;
	struct img_manifest m = {0};
	char version[IMG_VERSION_MAX] = "", digest[IMG_DIGEST_MAX];
	int r;

	img_progress_emit(cb, ud, "resolving", 0, 0, 0, 0);
	r = img_source_open(&s->cfg, ref, cancel, &src, err);
	if (r >= 0 && !ref->digest[0]) {
		r = img_source_version(src, version, err);
		if (r >= 0 && warm_start(s, ref, version, holder, ret, err, &r))
			return r;
	}
	if (r >= 0)
		r = img_source_resolve(src, &m, err);
	if (r < 0 && registry_unreachable(r) && !ref->digest[0] &&
	    cached_tag(s, ref, digest, NULL) && img_signature_cached(s, digest, key)) {
		log_debug("registry unreachable (%s), starting from cached %s", err ? err->msg : "",
			  digest);
		r = finish(s, digest, holder, ret, err);
		if (r >= 0)
			err_clear(err);
		return r;
	}
	if (r < 0)
		return r;
	if (!img_digest_is_valid(m.digest)) {
		img_manifest_done(&m);
		return err_set(err, -EBADMSG, "registry gave no usable manifest digest");
	}
	if (ref->digest[0])
		save_alias(s, ref->digest, m.digest);
	r = img_signature_check(s, src, &m, key, err);
	if (r >= 0)
		r = pull_coalesced(s, &src, &m, cb, ud, cancel, name, err);
	if (r >= 0)
		r = finish(s, m.digest, holder, ret, err);
	if (r >= 0 && !ref->digest[0])
		save_tag(s, ref, m.digest, version);
	img_manifest_done(&m);
	return r;
}

/* img_prepare; key: the fingerprint of the key that vouched for the image (cosign.c). */
static int prepare(struct img_store *s, const char *ref_s, const char *holder, img_progress_cb cb,
		   void *ud, const atomic_bool *cancel, struct img_prepared *ret,
		   char key[IMG_DIGEST_MAX], struct err *err)
{
	struct img_ref ref;
	char digest[IMG_DIGEST_MAX], name[IMG_REF_MAX];
	int r;

	if (err)
		err_clear(err);
	if (holder && !img_holder_is_valid(holder))
		return err_set(err, -EINVAL, "invalid image holder name '%.80s'", holder);
	r = img_ref_parse(ref_s, &ref, err);
	if (r < 0)
		return r;
	if (ref.is_s3 && s->keys)
		return err_set(err, -EKEYREJECTED,
			       "signature check failed for %s: s3:// images "
			       "carry no cosign signatures",
			       ref_s);
	if (img_ref_format(&ref, name, sizeof(name)) < 0)
		snprintf(name, sizeof(name), "%.200s", ref_s);
	if (cancel && atomic_load(cancel))
		return err_set(err, -ECANCELED, "pull of %.300s cancelled", name);

	/* A digest we have needs no network at all. */
	if (ref.digest[0] && img_digest_is_valid(ref.digest)) {
		lookup_digest(s, ref.digest, digest);
		if (digest[0] && img_signature_cached(s, digest, key)) {
			r = finish(s, digest, holder, ret, err);
			if (r != -EAGAIN) {
				if (r >= 0)
					img_progress_emit(cb, ud, "ready", 0, 0, 0, 0);
				return r;
			}
		}
	}

	for (int attempt = 0;; attempt++) {
		r = prepare_once(s, &ref, name, holder, cb, ud, cancel, ret, key, err);
		/* -EAGAIN: GC removed the image between build and reference; once more. */
		if (r != -EAGAIN || attempt > 0)
			break;
	}
	if (r == -EAGAIN)
		r = err_set(err, -EAGAIN, "image was collected while it was being prepared");
	if (r >= 0)
		img_progress_emit(cb, ud, "ready", 0, 0, 0, 0);
	return r;
}

int img_prepare(struct img_store *s, const char *ref_s, const char *holder, img_progress_cb cb,
		void *ud, const atomic_bool *cancel, struct img_prepared *ret, struct err *err)
{
	char key[IMG_DIGEST_MAX] = "";
	int r = prepare(s, ref_s, holder, cb, ud, cancel, ret, key, err);

	if (r >= 0)
		snprintf(ret->verified_key, sizeof(ret->verified_key), "%s", key);
	/* The message quotes what registries, archives and layers said (error texts, entry
	 * names, parser context): it reaches the VM's error file as printable ASCII only. */
	if (r < 0 && err)
		for (char *p = err->msg; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
				*p = '?';
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

/* The store's directories, and its lock: one process per store. */
static int open_dirs(struct img_store *s, struct err *err)
{
	static const char *const dirs[] = {"blobs/sha256", "images",	"refs/holders",
					   "refs/digests", "refs/tags", "refs/verified",
					   "tmp"};
	char p[4096];
	int r;

	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		r = img_store_path(s, p, sizeof(p), "%s", dirs[i]);
		if (r == 0)
			r = mkdir_p(p, 0755);
		if (r < 0)
			return err_set(err, r, "cannot create image store in %s: %s",
				       s->cfg.state_dir, strerror(-r));
	}
	r = img_store_path(s, p, sizeof(p), "lock");
	if (r == 0) {
		s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
			r = errno == EWOULDBLOCK ? -EBUSY : -errno;
	}
	if (r < 0)
		return err_set(err, r, "image store %s/images is in use by another process",
			       s->cfg.state_dir);
	return 0;
}

int img_store_new(const struct img_store_config *cfg, struct img_store **ret, struct err *err)
{
	struct img_store *s;
	bool oom = false;
	size_t n = 0;
	char p[4096];
	int r;

	if (!cfg || !cfg->state_dir || !*cfg->state_dir)
		return err_set(err, -EINVAL, "image store: no state directory");
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, -ENOMEM, "out of memory");
	s->lock_fd = -EBADF;
	pthread_mutex_init(&s->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
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
	img_limits_fill(cfg, &s->limits);
	s->cfg.limits = s->limits;
	s->cfg.max_image_bytes = s->limits.max_image_bytes;
	img_disk_reserve_set(s->limits.disk_reserve);
	s->cfg.verify_keys = NULL; /* loaded into keys below; the paths are not kept */
	if (oom) {
		img_store_free(s);
		return err_set(err, -ENOMEM, "out of memory");
	}

	r = img_keys_load(cfg->verify_keys, &s->keys, err);
	if (r < 0) {
		img_store_free(s);
		return r;
	}
	r = open_dirs(s, err);
	if (r < 0) {
		img_store_free(s);
		return r;
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
	/* Pulls nobody can wait for any more: abort them and wait for their threads. */
	pthread_mutex_lock(&s->lock);
	for (struct img_pull *pl = s->pulls; pl; pl = pl->next)
		atomic_store(&pl->abort, true);
	while (s->pull_threads > 0)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; s->insecure && s->insecure[i]; i++)
		free(s->insecure[i]);
	free(s->insecure);
	free((char *)s->cfg.state_dir);
	free((char *)s->cfg.docker_config);
	free(s->root);
	img_keys_free(s->keys);
	safe_close(s->lock_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}
