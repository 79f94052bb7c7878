/* SPDX-License-Identifier: MIT */
/*
 * Deferred state writes. A verb is validated and handed to vm_command(); the fuse_req_t is kept
 * and answered from the runtime's done callback when the transition ends, so the writer blocks
 * while no FUSE worker does. O_NONBLOCK writes are answered on acceptance. An interrupt (signal
 * in the writer) answers EINTR at once and the transition goes on.
 *
 * Exactly one reply per request: the interrupt callback and the done callback race for it with
 * a compare-and-swap on w->state. The winner replies; the done callback (always called exactly
 * once by the runtime when the command was accepted) frees w. Before replying, a winning done
 * callback unregisters the interrupt callback: libfuse takes the request lock for that, which
 * waits for an interrupt callback already running to return, so it never sees a freed w.
 * An interrupt that arrived before the callback was registered is answered by the writer's
 * thread after registration (libfuse 3.14 would free the request under its own lock otherwise).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "log.h"
#include "parse.h"

enum {
	PENDING,     /* the writer waits; whoever moves it on replies */
	INTERRUPTED, /* EINTR sent by the interrupt callback */
	ANSWERED,    /* the result sent by the done callback (or the synchronous path) */
	DETACHED,    /* O_NONBLOCK: answered on acceptance, nobody waits */
};

struct state_write {
	fuse_req_t req;
	size_t count;
	atomic_int state;
	char name[VM_NAME_MAX + 1];
	enum vm_verb verb;
	bool early_interrupt; /* interrupted before registration; only the writer thread uses it */
};

/* True on a thread while it registers the interrupt callback (see state_interrupt). */
static __thread bool registering;

/* libfuse calls this with the request lock held: from the thread that read the interrupt
 * (which holds a reference on the request, so replying is safe), or from
 * fuse_req_interrupt_func() itself when the writer was interrupted before we registered. In
 * that second case libfuse holds no reference and replying would free the request under its
 * lock, so the registering code replies instead. */
static void state_interrupt(fuse_req_t req, void *data)
{
	struct state_write *w = data;
	int expected = PENDING;

	if (!atomic_compare_exchange_strong(&w->state, &expected, INTERRUPTED))
		return;
	if (registering) {
		w->early_interrupt = true;
		return;
	}
	fuse_reply_err(req, EINTR);
	/* w must not be touched after a successful exchange: the done callback may free it. */
}

static void reply_result(fuse_req_t req, size_t count, int result)
{
	if (result >= 0)
		fuse_reply_write(req, count);
	else
		fuse_reply_err(req, -result);
}

/* Claim the reply and answer it; returns false when an interrupt answered first. */
static bool claim_and_reply(struct state_write *w, int result)
{
	int expected = PENDING;

	if (!atomic_compare_exchange_strong(&w->state, &expected, ANSWERED))
		return false;
	fuse_req_interrupt_func(w->req, NULL, NULL);
	reply_result(w->req, w->count, result);
	return true;
}

/* Runtime thread, no runtime lock held, exactly once per accepted command. */
static void state_done(void *ud, int result)
{
	struct state_write *w = ud;

	/* The runtime logs why a transition failed; this is the writer's side only. */
	log_debug_errno(result, "%s: %s answered", w->name, vm_verb_to_string(w->verb));
	(void)claim_and_reply(w, result);
	free(w);
}

void fs_state_write(fuse_req_t req, struct fs_handle *h, const char *value, size_t count,
		    bool nonblock)
{
	struct state_write *w;
	int verb, r;

	verb = vm_verb_from_string(value);
	if (verb < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->req = req;
	w->count = count;
	w->verb = (enum vm_verb)verb;
	snprintf(w->name, sizeof(w->name), "%s", vm_name(h->vm));
	atomic_init(&w->state, nonblock ? DETACHED : PENDING);
	if (!nonblock) {
		/* Calls state_interrupt at once if the writer was already interrupted. */
		registering = true;
		fuse_req_interrupt_func(req, state_interrupt, w);
		registering = false;
		if (w->early_interrupt)
			fuse_reply_err(req, EINTR);
		if (atomic_load(&w->state) == INTERRUPTED) {
			/* answered (above, or by the interrupt thread, which no longer uses w) */
			free(w);
			return;
		}
	}

	r = vm_command(h->vm, w->verb, state_done, w);
	if (r == 0) {
		/* Accepted: w now belongs to state_done (which may already have run). */
		if (nonblock)
			fuse_reply_write(req, count);
		return;
	}
	/* Refused (< 0) or a no-op (1): done will not be called. */
	if (r > 0)
		r = 0;
	if (nonblock)
		reply_result(req, count, r);
	else
		(void)claim_and_reply(w, r);
	free(w);
}
