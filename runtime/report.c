/* SPDX-License-Identifier: MIT */
/*
 * The reporter: a bounded table of objects (VMs) with a FIFO of the dirty ones, and one thread
 * that POSTs the newest document of each with its own curl handle (see report.h for the
 * contract). Failures back off exponentially with full jitter in [d/2, d]; a slow API costs
 * only this thread's time (connect and total timeouts bound each request).
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"
#include "macro.h"
#include "report.h"

#define BUCKETS 1024u
#define TOKEN_MAX 4096

struct entry {
	void *obj;
	unsigned flags;	     /* REPORT_* pending for the next build */
	bool queued;	     /* in the FIFO */
	bool has_sent;	     /* sent_hash valid (thread only) */
	uint64_t sent_hash;  /* thread only */
	struct entry *hnext; /* bucket chain */
	struct entry *qprev, *qnext;
};

struct reporter {
	struct report_config cfg;
	char *url, *token_file, *ca_file;
	const struct report_ops *ops;
	void *ud;

	pthread_mutex_t lock; /* protects everything up to "thread only" */
	pthread_cond_t cond;
	struct entry *buckets[BUCKETS];
	struct entry *qhead, *qtail;
	struct report_stats st;
	bool stop;
	atomic_bool abort; /* makes an in-flight request give up */

	/* thread only */
	pthread_t thread;
	bool running;
	CURL *curl;
	struct curl_slist *headers;
	char token[TOKEN_MAX];
	bool have_token;
	struct stat token_st;
	uint64_t seq;
	uint64_t rng;
};

static uint64_t now_ms(clockid_t c)
{
	struct timespec t;

	clock_gettime(c, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static unsigned bucket_of(const void *obj)
{
	uint64_t x = (uint64_t)(uintptr_t)obj;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (unsigned)(x & (BUCKETS - 1));
}

/* Under lock. */
static struct entry *find_locked(struct reporter *r, const void *obj)
{
	for (struct entry *e = r->buckets[bucket_of(obj)]; e; e = e->hnext)
		if (e->obj == obj)
			return e;
	return NULL;
}

static void q_push_locked(struct reporter *r, struct entry *e, bool front)
{
	e->queued = true;
	if (front) {
		e->qprev = NULL;
		e->qnext = r->qhead;
		if (r->qhead)
			r->qhead->qprev = e;
		else
			r->qtail = e;
		r->qhead = e;
	} else {
		e->qnext = NULL;
		e->qprev = r->qtail;
		if (r->qtail)
			r->qtail->qnext = e;
		else
			r->qhead = e;
		r->qtail = e;
	}
	r->st.queued++;
}

static struct entry *q_pop_locked(struct reporter *r)
{
	struct entry *e = r->qhead;

	if (!e)
		return NULL;
	r->qhead = e->qnext;
	if (r->qhead)
		r->qhead->qprev = NULL;
	else
		r->qtail = NULL;
	e->queued = false;
	e->qprev = e->qnext = NULL;
	r->st.queued--;
	return e;
}

/* Under lock; e must not be queued. */
static void remove_locked(struct reporter *r, struct entry *e)
{
	for (struct entry **pp = &r->buckets[bucket_of(e->obj)]; *pp; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	r->st.objects--;
}

void report_enqueue(struct reporter *r, void *obj, unsigned flags)
{
	struct entry *e, *fresh = NULL;

	if (!r || !obj)
		return;
	pthread_mutex_lock(&r->lock);
	e = find_locked(r, obj);
	if (!e) {
		if (r->st.objects >= r->cfg.max_objects || !(fresh = calloc(1, sizeof(*fresh)))) {
			r->st.dropped++;
			pthread_mutex_unlock(&r->lock);
			return;
		}
		e = fresh;
		e->obj = r->ops->ref(obj);
		e->hnext = r->buckets[bucket_of(obj)];
		r->buckets[bucket_of(obj)] = e;
		r->st.objects++;
	}
	e->flags |= flags;
	if (e->queued) {
		r->st.coalesced++;
	} else {
		q_push_locked(r, e, false);
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

void report_get_stats(struct reporter *r, struct report_stats *ret)
{
	pthread_mutex_lock(&r->lock);
	*ret = r->st;
	pthread_mutex_unlock(&r->lock);
}

/* ---- HTTP ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

static int progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct reporter *r = ud;

	(void)a, (void)b, (void)c, (void)d;
	return atomic_load(&r->abort) ? 1 : 0;
}

/* Re-read the token file when it changed (inode, size or mtime). */
static void refresh_token(struct reporter *r)
{
	_cleanup_free_ char *buf = NULL;
	struct curl_slist *h = NULL;
	struct stat st;
	size_t len = 0;
	bool changed;
	char auth[TOKEN_MAX + 32];

	if (!r->token_file)
		goto build;
	if (stat(r->token_file, &st) < 0) {
		if (r->have_token || r->token_st.st_ino == 0)
			log_warning("report: token file '%s': %s; sending without a token",
				    r->token_file, strerror(errno));
		changed = r->have_token || !r->headers;
		r->have_token = false;
		r->token_st = (struct stat){.st_ino = 1};
		if (!changed)
			return;
		goto build;
	}
	if (r->headers && st.st_ino == r->token_st.st_ino && st.st_size == r->token_st.st_size &&
	    st.st_mtim.tv_sec == r->token_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == r->token_st.st_mtim.tv_nsec)
		return;
	r->token_st = st;
	r->have_token = false;
	if (read_file_bounded(r->token_file, TOKEN_MAX - 1, &buf, &len) < 0) {
		log_warning("report: cannot read the token file '%s'", r->token_file);
		goto build;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (buf[i] <= 0x20 || buf[i] >= 0x7f) {
			log_warning("report: the token file '%s' holds more than one printable "
				    "word, ignoring it",
				    r->token_file);
			goto build;
		}
	if (len) {
		memcpy(r->token, buf, len + 1);
		r->have_token = true;
	}
build:
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && r->have_token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", r->token);
		struct curl_slist *h2 = curl_slist_append(h, auth);
		if (!h2) {
			curl_slist_free_all(h);
			h = NULL;
		} else {
			h = h2;
		}
	}
	r->headers = h;
	explicit_bzero(auth, sizeof(auth));
}

enum post_result { POST_OK, POST_RETRY, POST_REJECT };

static enum post_result post(struct reporter *r, const char *doc)
{
	long code = 0;
	CURLcode cc;

	refresh_token(r);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, doc);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(doc));
	cc = curl_easy_perform(r->curl);
	if (cc != CURLE_OK) {
		log_debug("report: POST %s: %s", r->url, curl_easy_strerror(cc));
		return POST_RETRY;
	}
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code < 300)
		return POST_OK;
	log_debug("report: POST %s: HTTP %ld", r->url, code);
	if (code == 408 || code == 429 || code >= 500)
		return POST_RETRY;
	return POST_REJECT;
}

static int curl_setup(struct reporter *r)
{
	r->curl = curl_easy_init();
	if (!r->curl)
		return -ENOMEM;
	if (curl_easy_setopt(r->curl, CURLOPT_URL, r->url) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
		return -EINVAL;
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(r->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "mvmfs-report/1");
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)r->cfg.connect_timeout_ms);
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long)r->cfg.timeout_ms);
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(r->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(r->curl, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(r->curl, CURLOPT_XFERINFODATA, r);
	/* TLS: peer and host verified against the system CA store (or the given bundle). */
	curl_easy_setopt(r->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(r->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (r->ca_file)
		curl_easy_setopt(r->curl, CURLOPT_CAINFO, r->ca_file);
	return 0;
}

/* ---- the thread ---- */

static uint64_t jitter(struct reporter *r, uint64_t d)
{
	/* xorshift64: no locking, no global state. */
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return d / 2 + (d > 1 ? r->rng % (d - d / 2) : 0);
}

static uint64_t next_seq(struct reporter *r)
{
	/* Strictly increasing per node, across daemon restarts too (microseconds of wall time
	 * when that is ahead): a receiver keeps the report with the highest sequence. */
	uint64_t us = now_ms(CLOCK_REALTIME) * 1000;

	r->seq = us > r->seq ? us : r->seq + 1;
	return r->seq;
}

static void wait_until_locked(struct reporter *r, uint64_t deadline_mono_ms)
{
	struct timespec ts;
	uint64_t now = now_ms(CLOCK_MONOTONIC), d;

	if (deadline_mono_ms <= now)
		return;
	d = deadline_mono_ms - now;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(d / 1000);
	ts.tv_nsec += (long)(d % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&r->cond, &r->lock, &ts);
}

static void *report_main(void *arg)
{
	struct reporter *r = arg;
	uint64_t next_periodic = 0, retry_at = 0, backoff = 0;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		uint64_t now = now_ms(CLOCK_MONOTONIC), hash = 0;
		_cleanup_free_ char *doc = NULL;
		enum post_result pr;
		struct entry *e;
		unsigned flags;
		bool final;

		if (now >= next_periodic) {
			next_periodic = now + r->cfg.interval_ms;
			pthread_mutex_unlock(&r->lock);
			r->ops->each(r->ud, r);
			pthread_mutex_lock(&r->lock);
			continue;
		}
		if (!r->qhead || now < retry_at) {
			wait_until_locked(r, r->qhead && retry_at < next_periodic ? retry_at
										 : next_periodic);
			continue;
		}
		e = q_pop_locked(r);
		flags = e->flags;
		e->flags = 0;
		pthread_mutex_unlock(&r->lock);

		final = flags & REPORT_FINAL;
		if (r->ops->build(r->ud, e->obj, final, next_seq(r), &doc, &hash) < 0) {
			pr = POST_REJECT;
		} else if (!(flags & (REPORT_FORCE | REPORT_FINAL)) && e->has_sent &&
			   hash == e->sent_hash) {
			pthread_mutex_lock(&r->lock);
			r->st.skipped++;
			continue;
		} else {
			pr = post(r, doc);
		}
		pthread_mutex_lock(&r->lock);
		if (pr == POST_RETRY) {
			r->st.failed++;
			/* Back to the front: the next attempt rebuilds it with the newest values. */
			e->flags |= flags;
			if (!e->queued)
				q_push_locked(r, e, true);
			backoff = backoff ? MIN(backoff * 2, (uint64_t)r->cfg.backoff_max_ms)
					  : r->cfg.backoff_min_ms;
			retry_at = now_ms(CLOCK_MONOTONIC) + jitter(r, backoff);
			continue;
		}
		backoff = 0;
		retry_at = 0;
		if (pr == POST_OK) {
			r->st.sent++;
			e->sent_hash = hash;
			e->has_sent = true;
		} else if (doc) {
			r->st.rejected++;
		}
		if (final && !e->queued) {
			remove_locked(r, e);
			pthread_mutex_unlock(&r->lock);
			r->ops->unref(e->obj);
			free(e);
			pthread_mutex_lock(&r->lock);
		}
		pthread_cond_broadcast(&r->cond); /* report_drain */
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int report_new(const struct report_config *cfg, const struct report_ops *ops, void *ud,
	       struct reporter **ret, struct err *err)
{
	struct reporter *r;
	pthread_condattr_t ca;

	if (!cfg->url || (strncmp(cfg->url, "http://", 7) != 0 &&
			  strncmp(cfg->url, "https://", 8) != 0))
		return err_set(err, -EINVAL, "the report URL must start with http:// or https://");
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	r->ops = ops;
	r->ud = ud;
	r->url = strdup(cfg->url);
	r->token_file = cfg->token_file ? strdup(cfg->token_file) : NULL;
	r->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	if (!r->cfg.interval_ms)
		r->cfg.interval_ms = 30000;
	if (!r->cfg.connect_timeout_ms)
		r->cfg.connect_timeout_ms = 2000;
	if (!r->cfg.timeout_ms)
		r->cfg.timeout_ms = 5000;
	if (!r->cfg.backoff_min_ms)
		r->cfg.backoff_min_ms = 250;
	if (!r->cfg.backoff_max_ms)
		r->cfg.backoff_max_ms = 10000;
	if (!r->cfg.max_objects)
		r->cfg.max_objects = 8192;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&r->abort, false);
	r->rng = now_ms(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	if (!r->url || (cfg->token_file && !r->token_file) || (cfg->ca_file && !r->ca_file)) {
		report_free(r);
		return -ENOMEM;
	}
	if (curl_setup(r) < 0) {
		report_free(r);
		return err_set(err, -EINVAL, "the report URL is not usable by libcurl");
	}
	*ret = r;
	return 0;
}

int report_start(struct reporter *r)
{
	sigset_t all, old;
	int k;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	k = -pthread_create(&r->thread, NULL, report_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (k == 0)
		r->running = true;
	return k;
}

int report_drain(struct reporter *r, unsigned timeout_ms)
{
	uint64_t end = now_ms(CLOCK_MONOTONIC) + timeout_ms;
	int k = 0;

	pthread_mutex_lock(&r->lock);
	while (r->qhead) {
		if (now_ms(CLOCK_MONOTONIC) >= end) {
			k = -ETIMEDOUT;
			break;
		}
		wait_until_locked(r, MIN(end, now_ms(CLOCK_MONOTONIC) + 50));
	}
	pthread_mutex_unlock(&r->lock);
	return k;
}

void report_stop(struct reporter *r)
{
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	atomic_store(&r->abort, true);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->running)
		pthread_join(r->thread, NULL);
	r->running = false;
}

struct reporter *report_free(struct reporter *r)
{
	if (!r)
		return NULL;
	report_stop(r);
	for (unsigned b = 0; b < BUCKETS; b++)
		while (r->buckets[b]) {
			struct entry *e = r->buckets[b];
			r->buckets[b] = e->hnext;
			r->ops->unref(e->obj);
			free(e);
		}
	if (r->curl)
		curl_easy_cleanup(r->curl);
	curl_slist_free_all(r->headers);
	explicit_bzero(r->token, sizeof(r->token));
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r->url);
	free(r->token_file);
	free(r->ca_file);
	free(r);
	return NULL;
}
