/* SPDX-License-Identifier: MIT */
/*
 * The VM object: reference count, accessors, the snapshot FUSE threads render from (copied under
 * vm->lock, formatted outside it), command acceptance (vm_command) and attribute rendering.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "internal.h"
#include "log-text.h"
#include "report.h"

struct vm *vm_new(struct runtime *rt, const char *name)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	atomic_init(&vm->refs, 1);
	atomic_init(&vm->cancel, false);
	atomic_init(&vm->img_cancel, false);
	atomic_init(&vm->pulling, false);
	pthread_cond_init(&vm->cmd_cond, NULL);
	vm->rt = rt;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->rec_lock, NULL);
	atomic_init(&vm->launch_pid, 0);
	atomic_init(&vm->probing, false);
	vm->lc.state = VM_STATE_CREATED;
	clock_gettime(CLOCK_REALTIME, &vm->state_since);
	vm->hs.vmm_since = vm->hs.net_since = vm->state_since;
	vmm_handle_init(&vm->h);
	vm->deadline_fd = -EBADF;
	vm->pid_watch.vm = vm->dl_watch.vm = vm;
	return vm;
}

struct vm *vm_ref(struct vm *vm)
{
	if (vm)
		atomic_fetch_add(&vm->refs, 1);
	return vm;
}

struct vm *vm_unref(struct vm *vm)
{
	if (!vm || atomic_fetch_sub(&vm->refs, 1) != 1)
		return NULL;
	safe_close(vm->h.pidfd);
	safe_close(vm->deadline_fd);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->rec_lock);
	pthread_cond_destroy(&vm->cmd_cond);
	free(vm->image);
	free(vm);
	return NULL;
}

void vm_unrefp(struct vm **p)
{
	vm_unref(*p);
}

const char *vm_name(const struct vm *vm)
{
	return vm->name;
}

enum vm_state vm_get_state(struct vm *vm)
{
	enum vm_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->lc.state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

void vm_touch_locked(struct vm *vm, enum vm_attr attr)
{
	vm->seq[attr]++;
}

uint64_t vm_attr_seq(struct vm *vm, enum vm_attr attr)
{
	uint64_t v;

	if ((unsigned)attr >= _VM_ATTR_MAX)
		return 0;
	pthread_mutex_lock(&vm->lock);
	v = vm->seq[attr];
	pthread_mutex_unlock(&vm->lock);
	return v;
}

void vm_notify(struct vm *vm, enum vm_attr attr)
{
	struct runtime *rt = vm->rt;

	if (rt->notify)
		rt->notify(rt->notify_ud, vm, attr);
	rt_report_notify(rt, vm, attr);
}

void rt_report_notify(struct runtime *rt, struct vm *vm, int attr)
{
	if (!rt->report)
		return;
	switch (attr) {
	case VM_ATTR_STATE:
	case VM_ATTR_HEALTH:
	case VM_ATTR_IP:
	case VM_ATTR_IMAGE:
	case VM_ATTR_ERROR:
	case VM_ATTR_PID:
		report_enqueue(rt->report->rep, vm, 0);
		break;
	default:
		break;
	}
}

void rt_report_destroyed(struct runtime *rt, struct vm *vm)
{
	if (rt->report)
		report_enqueue(rt->report->rep, vm, REPORT_FINAL);
}

void vm_record_save(struct vm *vm)
{
	vm_record_save_as(vm, _VM_STATE_MAX);
}

void vm_record_save_as(struct vm *vm, enum vm_state state)
{
	struct runtime *rt = vm->rt;
	struct vm_record *r = calloc(1, sizeof(*r));
	int k;

	if (!r)
		return;
	pthread_mutex_lock(&vm->rec_lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->destroying) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&vm->rec_lock);
		free(r);
		return;
	}
	snprintf(r->name, sizeof(r->name), "%s", vm->name);
	r->index = vm->index;
	r->state = state == _VM_STATE_MAX ? vm->lc.state : state;
	snprintf(r->image, sizeof(r->image), "%s", vm->image ? vm->image : "");
	memcpy(r->image_digest, vm->image_digest, sizeof(r->image_digest));
	memcpy(r->image_key, vm->image_key, sizeof(r->image_key));
	r->ip = vm->ip;
	r->has_ip = vm->has_ip;
	memcpy(r->error, vm->error, sizeof(r->error));
	r->launching = vm->launching;
	r->launch_uid = (uint32_t)(rt->cfg.uid_base + vm->index);
	pthread_mutex_unlock(&vm->lock);
	/* The handle is the supervisor's; it is stable whenever the state changes. */
	r->h = vm->h;
	snprintf(r->rootfs, sizeof(r->rootfs), "%s", vm->rootfs);
	snprintf(r->vmm, sizeof(r->vmm), "%s", rt->ops->name);
	k = record_write(rt->cfg.state_dir, r);
	pthread_mutex_unlock(&vm->rec_lock);
	if (k < 0)
		log_error_errno(k, "%s: writing the record", vm->name);
	free(r);
}

void vm_set_error(struct vm *vm, const char *fmt, ...)
{
	char ts[32], msg[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	rfc3339_utc(time(NULL), ts, sizeof(ts));
	pthread_mutex_lock(&vm->lock);
	snprintf(vm->error, sizeof(vm->error), "%s %s", ts, msg);
	vm_touch_locked(vm, VM_ATTR_ERROR);
	pthread_mutex_unlock(&vm->lock);
	vm_notify(vm, VM_ATTR_ERROR);
}

void vm_snapshot(struct vm *vm, struct vm_snap *ret)
{
	pthread_mutex_lock(&vm->lock);
	ret->state = vm->lc.state;
	ret->state_since = vm->state_since;
	ret->pid = vm->pid;
	ret->has_ip = vm->has_ip;
	ret->ip = vm->ip;
	memcpy(ret->image_digest, vm->image_digest, sizeof(ret->image_digest));
	memcpy(ret->image_key, vm->image_key, sizeof(ret->image_key));
	ret->hs = vm->hs;
	memcpy(ret->error, vm->error, sizeof(ret->error));
	ret->has_agent = vm->agent != NULL;
	if (vm->agent)
		agent_get_status(vm->agent, &ret->agent);
	pthread_mutex_unlock(&vm->lock);
	ret->now_mono_ms = agent_now_ms();
	ret->net_expected = !vm->rt->cfg.no_network;
}

/* Accept a command and post it to the supervisor; *ticket identifies it for vm_command. */
static int command_post(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud,
			uint64_t *ticket)
{
	int r;

	if ((unsigned)verb >= _VM_VERB_MAX)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	if (!vm->live) {
		r = -ENOENT;
	} else if (vm->cmd_pending) {
		r = -EBUSY;
	} else {
		r = lifecycle_check(&vm->lc, verb);
		if (r == 0) {
			if (vm->n_waiters >= VM_WAITERS_MAX) {
				r = -EBUSY;
			} else {
				*ticket = ++vm->cmds_posted;
				vm->waiters[vm->n_waiters++] = (struct vm_waiter){.verb = (int)verb,
										  .ticket = *ticket,
										  .done = done,
										  .ud = ud};
				vm->cmd_pending = true;
			}
		}
	}
	pthread_mutex_unlock(&vm->lock);
	if (r != 0)
		return r;
	/* The verb enum and the first lifecycle events share their order. */
	r = sv_post_command(vm->rt, vm, (enum lc_event)verb, *ticket);
	if (r < 0) {
		pthread_mutex_lock(&vm->lock);
		vm->n_waiters--;
		vm->cmd_pending = false;
		vm->cmds_posted--;
		pthread_mutex_unlock(&vm->lock);
	}
	return r;
}

int vm_command_post(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud)
{
	uint64_t ticket;

	return command_post(vm, verb, done, ud, &ticket);
}

/* How long a writer waits for the supervisor to take its command (it never blocks: this only
 * covers a loaded machine; past it the write returns and the transition still happens). */
#define CMD_VISIBLE_WAIT_MS 2000

int vm_command(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud)
{
	struct timespec deadline;
	uint64_t ticket = 0;
	int r;

	r = command_post(vm, verb, done, ud, &ticket);
	if (r != 0)
		return r;
	/* Read-your-writes: once this returns, `state` shows the transition the command started
	 * (or its end), never the state before it. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += CMD_VISIBLE_WAIT_MS / 1000;
	pthread_mutex_lock(&vm->lock);
	while (vm->cmds_done < ticket && !atomic_load(&vm->rt->stopping))
		if (pthread_cond_timedwait(&vm->cmd_cond, &vm->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_set_image(struct vm *vm, const char *ref, struct err *err)
{
	struct img_ref parsed;
	char *copy;
	int r;

	if (strlen(ref) >= IMG_REF_MAX)
		return err_set(err, -EINVAL, "image reference too long");
	r = img_ref_parse(ref, &parsed, err);
	if (r < 0)
		return r;
	copy = strdup(ref);
	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&vm->lock);
	if (!vm->live) {
		r = -ENOENT;
	} else if (vm->cmd_pending || vm->lc.exiting ||
		   !(vm->lc.state == VM_STATE_CREATED || vm->lc.state == VM_STATE_STOPPED ||
		     vm->lc.state == VM_STATE_FAILED)) {
		r = err_set(err, -EBUSY, "the image can only change in created, stopped or failed");
	} else {
		free(vm->image);
		vm->image = TAKE_PTR(copy);
		vm_touch_locked(vm, VM_ATTR_IMAGE);
		r = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	free(copy);
	if (r == 0) {
		vm_notify(vm, VM_ATTR_IMAGE);
		vm_record_save(vm);
	}
	return r;
}

static int ret_str(char *s, char **ret, size_t *ret_len)
{
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}

static int show_log(struct vm *vm, char **ret, size_t *ret_len)
{
	char path[4200];
	_cleanup_close_ int fd = -EBADF;
	const size_t max = 64 * 1024;
	char *buf;
	off_t end, start;
	ssize_t n;

	pthread_mutex_lock(&vm->lock);
	if (vm->agent) {
		/* The app's own output when the agent is there (console stays in console.log). */
		int r = agent_log_copy(vm->agent, ret, ret_len);
		pthread_mutex_unlock(&vm->lock);
		if (r >= 0 && *ret_len > 0)
			return r;
		if (r >= 0)
			free(*ret);
	} else {
		pthread_mutex_unlock(&vm->lock);
	}
	snprintf(path, sizeof(path), "%s/vms/%s/console.log", vm->rt->cfg.state_dir, vm->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ret_str(strdup(""), ret, ret_len);
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	start = end > (off_t)max ? end - (off_t)max : 0;
	buf = malloc((size_t)(end - start) + 2);
	if (!buf)
		return -ENOMEM;
	n = pread(fd, buf, (size_t)(end - start), start);
	if (n < 0) {
		free(buf);
		return -errno;
	}
	n = (ssize_t)log_text_neutralize(buf, (size_t)n); /* the guest's console: no escapes */
	if (n > 0 && buf[n - 1] != '\n')
		buf[n++] = '\n';
	buf[n] = '\0';
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

int vm_show(struct vm *vm, enum vm_attr attr, char **ret, size_t *ret_len)
{
	struct vm_snap s;
	char *out = NULL;
	char ip[INET6_ADDRSTRLEN] = "";

	vm_snapshot(vm, &s);
	if (s.has_ip)
		inet_ntop(AF_INET6, &s.ip, ip, sizeof(ip));
	switch (attr) {
	case VM_ATTR_STATE:
		return ret_str(asprintf(&out, "%s\n", vm_state_to_string(s.state)) < 0 ? NULL : out,
			       ret, ret_len);
	case VM_ATTR_IMAGE:
		pthread_mutex_lock(&vm->lock);
		if (asprintf(&out, "%s\n", vm->image ? vm->image : "") < 0)
			out = NULL;
		pthread_mutex_unlock(&vm->lock);
		return ret_str(out, ret, ret_len);
	case VM_ATTR_IP:
		return ret_str(asprintf(&out, "%s\n", ip) < 0 ? NULL : out, ret, ret_len);
	case VM_ATTR_HEALTH:
		return health_render(&s, ret, ret_len);
	case VM_ATTR_ERROR:
		if (!s.error[0])
			return ret_str(strdup(""), ret, ret_len);
		return ret_str(asprintf(&out, "%s\n", s.error) < 0 ? NULL : out, ret, ret_len);
	case VM_ATTR_LOG:
		return show_log(vm, ret, ret_len);
	case VM_ATTR_CONFIG: {
		const struct runtime_config *c = &vm->rt->cfg;
		return ret_str(asprintf(&out,
					"vmm: %s\nvcpus: %u\nmem_mib: %u\nuid: %u\ngid: %u\n"
					"data_disk_bytes: %llu\nstop_timeout_ms: %u\nip: %s\n",
					vm->rt->ops->name, c->vcpus, c->mem_mib,
					(unsigned)(c->uid_base + vm->index),
					(unsigned)(c->uid_base + vm->index),
					(unsigned long long)c->data_disk_bytes, c->stop_timeout_ms,
					ip) < 0
				       ? NULL
				       : out,
			       ret, ret_len);
	}
	case VM_ATTR_PID:
		if (!s.pid)
			return ret_str(strdup(""), ret, ret_len);
		return ret_str(asprintf(&out, "%d\n", (int)s.pid) < 0 ? NULL : out, ret, ret_len);
	case VM_ATTR_METRICS:
		return metrics_vm_show(vm, ret, ret_len);
	default:
		return -EINVAL;
	}
}
