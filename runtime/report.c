/* SPDX-License-Identifier: MIT */
/*
 * The reporter: a bounded table of objects (VMs) with a FIFO of the dirty ones, and one thread
 * that POSTs the newest document of each with its own curl handle (see report.h for the
 * contract). Failures back off exponentially with full jitter in [d/2, d]; a slow API costs
 * only this thread's time (connect and total timeouts bound each request).
 */
#include "report.h"

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

#include "clock.h"
#include "curl-cloexec.h"
#include "fileio.h"
#include "log.h"
#include "macro.h"
#include "thread.h"

#define BUCKETS 1024u
#define TOKEN_MAX 4096

struct entry {
	void *obj;
	unsigned flags;	     /* REPORT_* pending for the next build */
	bool queued;	     /* in the FIFO */
	bool inflight;	     /* a request for it is in flight */
	bool has_sent;	     /* sent_hash valid (thread only) */
	uint64_t sent_hash;  /* thread only */
	struct entry *hnext; /* bucket chain */
	struct entry *qprev, *qnext;
	struct entry *next_free; /* forgotten, to unref outside the lock */
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
	uint64_t backoff, retry_at; /* ms; monotonic deadline of the next attempt */
	uint64_t failed_at;	    /* ms; last failure that grew the back-off */
	struct entry *free_list;

	/* thread only */
	pthread_t thread;
	bool running;
	CURLM *multi; /* curl_multi_wakeup is the only call from other threads */
	struct slot *slots;
	unsigned n_slots, n_busy;
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
		/* Only the first queued entry needs to wake the thread: while entries wait, it
		 * picks the next one as soon as a request slot frees up. */
		bool was_empty = !r->qhead;
		q_push_locked(r, e, false);
		if (was_empty) {
			pthread_cond_signal(&r->cond);
			if (r->multi)
				curl_multi_wakeup(r->multi);
		}
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

/* One request in flight. */
struct slot {
	CURL *easy;
	struct curl_slist *headers;
	struct entry *e;
	char *doc;
	uint64_t hash, started_ms;
	unsigned flags;
	bool busy;
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

/* Re-read the token file when it changed (inode, size or mtime). */
static void refresh_token(struct reporter *r)
{
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t len = 0;

	if (!r->token_file)
		return;
	if (stat(r->token_file, &st) < 0) {
		if (r->have_token || r->token_st.st_ino == 0)
			log_warning("report: token file '%s': %s; sending without a token",
				    r->token_file, strerror(errno));
		r->have_token = false;
		r->token_st = (struct stat){.st_ino = 1};
		return;
	}
	if (st.st_ino == r->token_st.st_ino && st.st_size == r->token_st.st_size &&
	    st.st_mtim.tv_sec == r->token_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == r->token_st.st_mtim.tv_nsec)
		return;
	r->token_st = st;
	r->have_token = false;
	if (read_file_bounded(r->token_file, TOKEN_MAX - 1, &buf, &len) < 0) {
		log_warning("report: cannot read the token file '%s'", r->token_file);
		return;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (buf[i] <= 0x20 || buf[i] >= 0x7f) {
			log_warning("report: the token file '%s' holds more than one printable "
				    "word, ignoring it",
				    r->token_file);
			explicit_bzero(buf, len);
			return;
		}
	if (len) {
		memcpy(r->token, buf, len + 1);
		r->have_token = true;
	}
	explicit_bzero(buf, len);
}

/* Per request: the slot owns its header list (a token change must not free a list that
 * another request in flight still uses). */
static struct curl_slist *make_headers(struct reporter *r)
{
	char auth[TOKEN_MAX + 32];
	struct curl_slist *h, *h2;

	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (!h || !r->have_token)
		return h;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", r->token);
	h2 = curl_slist_append(h, auth);
	explicit_bzero(auth, sizeof(auth));
	if (!h2) {
		curl_slist_free_all(h);
		return NULL;
	}
	return h2;
}

static CURL *easy_new(struct reporter *r)
{
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	if (curl_easy_setopt(c, CURLOPT_URL, r->url) != CURLE_OK ||
	    curl_set_cloexec(c) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK) {
		curl_easy_cleanup(c);
		return NULL;
	}
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "mvmfs-report/1");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)r->cfg.connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->cfg.timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	/* TLS: peer and host verified against the system CA store (or the given bundle). */
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (r->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
	return c;
}

enum post_result { POST_OK, POST_RETRY, POST_REJECT };

static enum post_result result_of(struct reporter *r, CURL *c, CURLcode cc)
{
	long code = 0;

	if (cc != CURLE_OK) {
		log_debug("report: POST %s: %s", r->url, curl_easy_strerror(cc));
		return POST_RETRY;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code < 300)
		return POST_OK;
	log_debug("report: POST %s: HTTP %ld", r->url, code);
	if (code == 408 || code == 429 || code >= 500)
		return POST_RETRY;
	return POST_REJECT;
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
	ts = clock_after_ms(CLOCK_MONOTONIC, d);
	pthread_cond_timedwait(&r->cond, &r->lock, &ts);
}

/* Under lock: the first queued entry without a request in flight (at most n_slots skipped, so
 * two documents of one object are never in flight at once and arrive in order). */
static struct entry *q_pop_ready_locked(struct reporter *r)
{
	struct entry *e = r->qhead;

	while (e && e->inflight)
		e = e->qnext;
	if (!e)
		return NULL;
	if (e->qprev)
		e->qprev->qnext = e->qnext;
	else
		r->qhead = e->qnext;
	if (e->qnext)
		e->qnext->qprev = e->qprev;
	else
		r->qtail = e->qprev;
	e->queued = false;
	e->qprev = e->qnext = NULL;
	r->st.queued--;
	return e;
}

/* Under lock: a request for e ended (or was never sent: pr REJECT with no doc). */
static void finish_locked(struct reporter *r, struct entry *e, unsigned flags, uint64_t hash,
			  uint64_t started_ms, bool sent, enum post_result pr)
{
	e->inflight = false;
	if (pr == POST_RETRY) {
		uint64_t now = now_ms(CLOCK_MONOTONIC);

		r->st.failed++;
		/* Back to the front: the next attempt rebuilds it with the newest values. */
		e->flags |= flags;
		if (!e->queued)
			q_push_locked(r, e, true);
		/* Requests that were already in flight when an earlier one failed say nothing
		 * new about the API: the back-off grows once per round of attempts. */
		if (started_ms < r->failed_at)
			return;
		r->failed_at = now;
		r->backoff = r->backoff ? MIN(r->backoff * 2, (uint64_t)r->cfg.backoff_max_ms)
					: r->cfg.backoff_min_ms;
		r->retry_at = now + jitter(r, r->backoff);
		return;
	}
	r->backoff = 0;
	r->retry_at = 0;
	if (pr == POST_OK) {
		r->st.sent++;
		e->sent_hash = hash;
		e->has_sent = true;
	} else if (sent) {
		r->st.rejected++;
	}
	/* Forgotten after its last report, or when there is nothing to report (a VM being
	 * destroyed whose final report already went out): a later change re-adds it. */
	if (((flags & REPORT_FINAL) || !sent) && !e->queued) {
		remove_locked(r, e);
		e->next_free = r->free_list;
		r->free_list = e;
	}
	pthread_cond_broadcast(&r->cond); /* report_drain */
}

/* Unref and free the entries forgotten under the lock (unref may take other locks). */
static void release_freed(struct reporter *r)
{
	struct entry *e;

	pthread_mutex_lock(&r->lock);
	e = r->free_list;
	r->free_list = NULL;
	pthread_mutex_unlock(&r->lock);
	while (e) {
		struct entry *n = e->next_free;
		r->ops->unref(e->obj);
		free(e);
		e = n;
	}
}

/* Build and start one request for e in slot s; false when there is nothing to send. */
static bool start_one(struct reporter *r, struct slot *s, struct entry *e, unsigned flags)
{
	_cleanup_free_ char *doc = NULL;
	uint64_t hash = 0;

	if (r->ops->build(r->ud, e->obj, flags & REPORT_FINAL, next_seq(r), &doc, &hash) < 0) {
		pthread_mutex_lock(&r->lock);
		finish_locked(r, e, flags, 0, 0, false, POST_REJECT);
		pthread_mutex_unlock(&r->lock);
		return false;
	}
	if (!(flags & (REPORT_FORCE | REPORT_FINAL)) && e->has_sent && hash == e->sent_hash) {
		pthread_mutex_lock(&r->lock);
		r->st.skipped++;
		e->inflight = false;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		return false;
	}
	curl_slist_free_all(s->headers);
	s->headers = make_headers(r);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(doc));
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, doc);
	if (curl_multi_add_handle(r->multi, s->easy) != CURLM_OK) {
		pthread_mutex_lock(&r->lock);
		finish_locked(r, e, flags, 0, now_ms(CLOCK_MONOTONIC), true, POST_RETRY);
		pthread_mutex_unlock(&r->lock);
		return false;
	}
	s->doc = TAKE_PTR(doc);
	s->e = e;
	s->hash = hash;
	s->started_ms = now_ms(CLOCK_MONOTONIC);
	s->flags = flags;
	s->busy = true;
	r->n_busy++;
	return true;
}

static void reap_done(struct reporter *r)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(r->multi, &left))) {
		struct slot *s = NULL;
		enum post_result pr;

		if (m->msg != CURLMSG_DONE)
			continue;
		for (unsigned i = 0; i < r->n_slots; i++)
			if (r->slots[i].busy && r->slots[i].easy == m->easy_handle)
				s = &r->slots[i];
		if (!s)
			continue;
		pr = result_of(r, s->easy, m->data.result);
		curl_multi_remove_handle(r->multi, s->easy);
		free(s->doc);
		s->doc = NULL;
		s->busy = false;
		r->n_busy--;
		pthread_mutex_lock(&r->lock);
		finish_locked(r, s->e, s->flags, s->hash, s->started_ms, true, pr);
		pthread_mutex_unlock(&r->lock);
		s->e = NULL;
	}
}

static void *report_main(void *arg)
{
	struct reporter *r = arg;
	uint64_t next_periodic = 0;

	for (;;) {
		uint64_t now = now_ms(CLOCK_MONOTONIC);
		int running = 0;

		pthread_mutex_lock(&r->lock);
		if (r->stop) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		if (now >= next_periodic) {
			next_periodic = now + r->cfg.interval_ms;
			pthread_mutex_unlock(&r->lock);
			r->ops->each(r->ud, r);
			continue;
		}
		/* Fill free slots, unless backing off. */
		if (now >= r->retry_at && r->n_busy < r->n_slots) {
			struct entry *e = q_pop_ready_locked(r);
			if (e) {
				unsigned flags = e->flags;
				struct slot *s = NULL;

				e->flags = 0;
				e->inflight = true;
				pthread_mutex_unlock(&r->lock);
				for (unsigned i = 0; i < r->n_slots && !s; i++)
					if (!r->slots[i].busy)
						s = &r->slots[i];
				refresh_token(r);
				(void)start_one(r, s, e, flags);
				release_freed(r);
				continue;
			}
		}
		if (!r->n_busy) {
			wait_until_locked(r, r->qhead && r->retry_at < next_periodic
						     ? MAX(r->retry_at, now + 1)
						     : next_periodic);
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		pthread_mutex_unlock(&r->lock);
		/* Requests in flight: drive them; an enqueue or a stop wakes the poll. */
		curl_multi_perform(r->multi, &running);
		reap_done(r);
		release_freed(r);
		if (running)
			curl_multi_poll(r->multi, NULL, 0, 200, NULL);
	}
	for (unsigned i = 0; i < r->n_slots; i++)
		if (r->slots[i].busy) {
			curl_multi_remove_handle(r->multi, r->slots[i].easy);
			free(r->slots[i].doc);
			r->slots[i].doc = NULL;
			r->slots[i].busy = false;
			pthread_mutex_lock(&r->lock);
			r->slots[i].e->inflight = false;
			pthread_mutex_unlock(&r->lock);
		}
	r->n_busy = 0;
	return NULL;
}

int report_new(const struct report_config *cfg, const struct report_ops *ops, void *ud,
	       struct reporter **ret, struct err *err)
{
	struct reporter *r;
	pthread_condattr_t ca;

	if (!cfg->url ||
	    (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0))
		return err_set(err, -EINVAL, "the report URL must start with http:// or https://");
	if (cfg->parallel > 256)
		return err_set(err, -EINVAL, "at most 256 parallel report requests, not %u",
			       cfg->parallel);
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
	if (!r->cfg.parallel)
		r->cfg.parallel = 8;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	r->rng = now_ms(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	r->n_slots = r->cfg.parallel;
	r->slots = calloc(r->n_slots, sizeof(*r->slots));
	r->multi = curl_multi_init();
	if (!r->url || (cfg->token_file && !r->token_file) || (cfg->ca_file && !r->ca_file) ||
	    !r->slots || !r->multi) {
		report_free(r);
		return -ENOMEM;
	}
	/* Keep-alive connections, at most one per slot, to the one API host. */
	curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)r->n_slots);
	for (unsigned i = 0; i < r->n_slots; i++) {
		r->slots[i].easy = easy_new(r);
		if (!r->slots[i].easy) {
			report_free(r);
			return err_set(err, -EINVAL, "the report URL is not usable by libcurl");
		}
	}
	*ret = r;
	return 0;
}

int report_start(struct reporter *r)
{
	int k = thread_create_nosig(&r->thread, report_main, r);

	if (k == 0)
		r->running = true;
	return k;
}

int report_drain(struct reporter *r, unsigned timeout_ms)
{
	uint64_t end = now_ms(CLOCK_MONOTONIC) + timeout_ms;
	int k = 0;
	bool busy;

	if (!r->running)
		return -ESRCH; /* nobody would empty it */
	pthread_mutex_lock(&r->lock);
	for (;;) {
		busy = r->qhead != NULL;
		for (unsigned b = 0; !busy && b < BUCKETS; b++)
			for (struct entry *e = r->buckets[b]; e && !busy; e = e->hnext)
				busy = e->inflight;
		if (!busy)
			break;
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
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->multi)
		curl_multi_wakeup(r->multi);
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
	while (r->free_list) {
		struct entry *e = r->free_list;
		r->free_list = e->next_free;
		r->ops->unref(e->obj);
		free(e);
	}
	for (unsigned i = 0; r->slots && i < r->n_slots; i++) {
		if (r->slots[i].easy)
			curl_easy_cleanup(r->slots[i].easy);
		curl_slist_free_all(r->slots[i].headers);
	}
	free(r->slots);
	if (r->multi)
		curl_multi_cleanup(r->multi);
	explicit_bzero(r->token, sizeof(r->token));
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r->url);
	free(r->token_file);
	free(r->ca_file);
	free(r);
	return NULL;
}
