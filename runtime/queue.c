/* SPDX-License-Identifier: MIT */
/*
 * The supervisor's message queue: any thread posts an event, a command or a call for a VM; the
 * supervisor thread (supervisor.c) drains it when the eventfd wakes its loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

static int queue_push(struct runtime *rt, struct sv_msg *m)
{
	uint64_t one = 1;

	pthread_mutex_lock(&rt->q_lock);
	if (rt->q_tail)
		rt->q_tail->next = m;
	else
		rt->q_head = m;
	rt->q_tail = m;
	pthread_mutex_unlock(&rt->q_lock);
	if (write(rt->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int sv_post_command(struct runtime *rt, struct vm *vm, enum lc_event ev, uint64_t ticket)
{
	struct sv_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->vm = vm_ref(vm);
	m->ev = ev;
	m->ticket = ticket;
	return queue_push(rt, m);
}

int sv_post_event(struct runtime *rt, struct vm *vm, enum lc_event ev)
{
	return sv_post_command(rt, vm, ev, 0);
}
