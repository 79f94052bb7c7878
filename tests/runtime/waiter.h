/* SPDX-License-Identifier: MIT */
/*
 * A completion for runtime calls that report through a vm_done_cb (runtime.h):
 * on_done(&w, result) from the runtime's thread, the test waits for w.done.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int result;
};

static inline void on_done(void *ud, int result)
{
	struct waiter *w = ud;

	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->result = result;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}
