/* SPDX-License-Identifier: MIT */
/*
 * The two worker pools: the lifecycle pool (a fixed set of threads for the short jobs the
 * supervisor queues) and the outside pool (a thread per job up to RT_LONG_POOL_MAX, idle ones
 * ending, for jobs that wait on registries, the database or a VMM API); their bounded stop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "thread.h"

struct job {
	job_fn fn;
	struct vm *vm;
	void *arg;
	struct job *next;
};

/* One slot per thread a pool may have; a thread that ended is joined when its slot is reused
 * or at workers_stop. */
enum { SLOT_FREE, SLOT_RUNNING, SLOT_EXITED };

struct worker_slot {
	pthread_t thread;
	int state;
	struct rt_pool *pool;
};

struct rt_pool {
	const char *name;
	struct runtime *rt;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* jobs queued, stop, a thread ended (CLOCK_MONOTONIC) */
	struct job *head, *tail;
	unsigned max;	    /* threads at most */
	unsigned idle_ms;   /* an idle thread ends after this (0: never) */
	unsigned n_threads; /* SLOT_RUNNING */
	unsigned n_idle;    /* of which waiting for a job */
	unsigned n_busy;    /* running a job */
	unsigned n_queued;  /* jobs waiting for a thread */
	uint64_t n_done;    /* jobs finished (metrics, tests) */
	bool stop;
	struct worker_slot slots[RT_LONG_POOL_MAX];
};

static struct rt_pool *pool_new(struct runtime *rt, const char *name, unsigned max,
				unsigned idle_ms)
{
	struct rt_pool *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;

	if (!p)
		return NULL;
	p->name = name;
	p->rt = rt;
	p->max = MIN(max, (unsigned)RT_LONG_POOL_MAX);
	p->idle_ms = idle_ms;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
	*ts = clock_after_ms(CLOCK_MONOTONIC, ms);
}

static void *worker_main(void *arg)
{
	struct worker_slot *slot = arg;
	struct rt_pool *p = slot->pool;
	struct runtime *rt = p->rt;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j;

		p->n_idle++;
		while (!p->head && !p->stop) {
			if (p->idle_ms) {
				struct timespec ts;
				deadline_in(&ts, p->idle_ms);
				if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT &&
				    !p->head)
					break;
			} else {
				pthread_cond_wait(&p->cond, &p->lock);
			}
		}
		p->n_idle--;
		j = p->head;
		if (!j)
			break; /* stop, or idle too long */
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		p->n_queued--;
		p->n_busy++;
		pthread_mutex_unlock(&p->lock);
		rt_job_enter(rt); /* no leak reaper pass while a job works on a VM */
		j->fn(rt, j->vm, j->arg);
		rt_job_leave(rt);
		vm_unref(j->vm);
		free(j);
		pthread_mutex_lock(&p->lock);
		p->n_busy--;
		p->n_done++;
	}
	slot->state = SLOT_EXITED;
	p->n_threads--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Under p->lock: one more thread, when none is idle and the pool may grow. */
static int pool_grow_locked(struct rt_pool *p, bool force)
{
	struct worker_slot *free_slot = NULL;
	int r;

	/* Enough idle threads for what is queued and the job about to be. */
	if ((!force && p->n_idle > p->n_queued) || p->n_threads >= p->max || p->stop)
		return 0;
	for (unsigned i = 0; i < p->max && !free_slot; i++) {
		if (p->slots[i].state == SLOT_EXITED) {
			pthread_join(p->slots[i].thread, NULL); /* it has returned already */
			p->slots[i].state = SLOT_FREE;
		}
		if (p->slots[i].state == SLOT_FREE)
			free_slot = &p->slots[i];
	}
	if (!free_slot)
		return -EAGAIN;
	free_slot->pool = p;
	r = thread_create_nosig(&free_slot->thread, worker_main, free_slot);
	if (r < 0)
		return r;
	free_slot->state = SLOT_RUNNING;
	p->n_threads++;
	return 0;
}

static int pool_push(struct rt_pool *p, struct vm *vm, job_fn fn, void *arg)
{
	struct job *j;
	int r;

	if (!p)
		return -ESHUTDOWN;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->vm = vm_ref(vm);
	j->arg = arg;
	pthread_mutex_lock(&p->lock);
	if (p->stop) {
		pthread_mutex_unlock(&p->lock);
		vm_unref(j->vm);
		free(j);
		return -ESHUTDOWN;
	}
	r = pool_grow_locked(p, false);
	if (r < 0 && p->n_threads == 0) {
		pthread_mutex_unlock(&p->lock);
		vm_unref(j->vm);
		free(j);
		return r;
	}
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->n_queued++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int rt_job(struct runtime *rt, struct vm *vm, job_fn fn, void *arg)
{
	return pool_push(rt->pool_short, vm, fn, arg);
}

int rt_job_long(struct runtime *rt, struct vm *vm, job_fn fn, void *arg)
{
	return pool_push(rt->pool_long, vm, fn, arg);
}

int workers_start(struct runtime *rt)
{
	int r = 0;

	rt->pool_short = pool_new(rt, "lifecycle", RT_SHORT_POOL_THREADS, 0);
	rt->pool_long = pool_new(rt, "outside", RT_LONG_POOL_MAX, RT_LONG_POOL_IDLE_MS);
	if (!rt->pool_short || !rt->pool_long)
		return -ENOMEM;
	/* The lifecycle pool's threads exist from the start (no creation on the hot path). */
	pthread_mutex_lock(&rt->pool_short->lock);
	for (unsigned i = 0; i < RT_SHORT_POOL_THREADS && r >= 0; i++)
		r = pool_grow_locked(rt->pool_short, true);
	pthread_mutex_unlock(&rt->pool_short->lock);
	return rt->pool_short->n_threads ? 0 : r;
}

static void pool_request_stop(struct rt_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Ask a pool to stop; wait until its threads ended or the deadline passed. Returns the number
 * of threads still running (their jobs are abandoned: the pool is then never freed). */
static unsigned pool_stop(struct rt_pool *p, const struct timespec *deadline)
{
	unsigned left;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	while (p->n_threads > 0 &&
	       pthread_cond_timedwait(&p->cond, &p->lock, deadline) != ETIMEDOUT)
		;
	left = p->n_threads;
	if (left) {
		/* Abandoned: never joined, so detached (finished or not). */
		for (unsigned i = 0; i < p->max; i++)
			if (p->slots[i].state != SLOT_FREE)
				pthread_detach(p->slots[i].thread);
		pthread_mutex_unlock(&p->lock);
		return left;
	}
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->max; i++)
		if (p->slots[i].state == SLOT_EXITED) {
			pthread_join(p->slots[i].thread, NULL);
			p->slots[i].state = SLOT_FREE;
		}
	/* Jobs queued but never run: drop them (their VMs' records say what was in flight). */
	while (p->head) {
		struct job *j = p->head;
		p->head = j->next;
		vm_unref(j->vm);
		free(j);
	}
	p->tail = NULL;
	return 0;
}

static void pool_free(struct rt_pool *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

int workers_stop(struct runtime *rt, unsigned timeout_ms)
{
	struct timespec deadline;
	unsigned left;

	deadline_in(&deadline, timeout_ms);
	/* Both told at once; the lifecycle pool's jobs are short, so it is waited for first. */
	pool_request_stop(rt->pool_long);
	left = pool_stop(rt->pool_short, &deadline);
	left += pool_stop(rt->pool_long, &deadline);
	if (left) {
		log_warning("shutdown: %u job%s still running after %u ms, abandoned (the next "
			    "start finishes or undoes them from the records)",
			    left, left == 1 ? "" : "s", timeout_ms);
		rt->workers_abandoned = true;
		return -ETIMEDOUT;
	}
	pool_free(rt->pool_long);
	pool_free(rt->pool_short);
	rt->pool_long = rt->pool_short = NULL;
	return 0;
}
