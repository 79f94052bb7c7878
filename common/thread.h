/* SPDX-License-Identifier: MIT */
/* common/thread.h: threads of the daemon's own, which never take a signal. */
#pragma once

#include <pthread.h>
#include <signal.h>

/* pthread_create with every signal blocked in the new thread (signals belong to the threads
 * that wait for them: FUSE's and the daemon's main thread). Returns 0 or -errno. */
static inline int thread_create_nosig(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}
