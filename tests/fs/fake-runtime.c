/* SPDX-License-Identifier: MIT */
/*
 * A fake runtime: VM objects with the real state words and the async contract of runtime.h
 * (done callbacks exactly once, later, from the runtime's own thread, with no lock held), but
 * transitions are timers or explicit control commands instead of VMMs.
 */
#include "fake-runtime.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "parse.h"
#include "runtime.h"
#include "volume.h"

/* A volume of the fake: the record only, no disk. */
struct fake_volume {
	char name[VOLUME_NAME_MAX + 1];
	char path[VOLUME_PATH_MAX + 1];
	uint64_t size;
};

struct vm {
	atomic_int ref;
	struct runtime *rt;
	char name[VM_NAME_MAX + 1];
	unsigned serial;
	pthread_mutex_t lock; /* protects everything below */
	enum vm_state state;
	bool busy, dead, fail;
	enum vm_verb verb;
	vm_done_cb done;
	void *ud;
	char image[4097];
	char error[600];
	char failmsg[512];
	uint64_t txn; /* transition serial, so a stale timer never ends a later one */
	char health[32];
	size_t log_size; /* 0: one line; else the log is this many bytes */
	uint64_t seq[_VM_ATTR_MAX];
	struct fake_volume vols[VOLUME_MAX_PER_VM]; /* sorted by name */
	size_t n_vols;
};

enum task_kind { TASK_CREATE, TASK_DESTROY, TASK_FINISH };

struct task {
	struct timespec when;
	enum task_kind kind;
	char name[VM_NAME_MAX + 1];
	struct vm *vm; /* reference (DESTROY, FINISH) */
	vm_done_cb done;
	void *ud;
	int result;
	uint64_t txn;
	struct task *next;
};

#define FAKE_MAX 8192
#define FAKE_LOG_MAX (64 * 1024)

struct runtime {
	pthread_mutex_t lock; /* protects everything below; taken before a vm lock */
	pthread_cond_t cond;
	struct vm *vms[FAKE_MAX];
	size_t n;
	char *pending[FAKE_MAX];
	size_t npending;
	unsigned serial;
	struct task *tasks; /* sorted by when */
	bool stop;
	pthread_t thread;
	bool started;
	bool manual;
	unsigned delay_ms, create_delay_ms, max_vms;
	bool fail_next;
	int create_fail;
	int volume_fail; /* the next volume create fails with -volume_fail */

	pthread_rwlock_t notify_lock; /* held (read) while calling notify */
	vm_notify_cb notify;
	void *notify_ud;
};

static const char *const state_names[_VM_STATE_MAX] = {
	"created", "starting", "running",    "stopping",  "stopped",
	"failed",  "paused",   "suspending", "suspended",
};
static const char *const verb_names[_VM_VERB_MAX] = {"start", "stop",	"kill",	  "restart",
						     "pause", "resume", "suspend"};

const char *vm_state_to_string(enum vm_state s)
{
	return (unsigned)s < _VM_STATE_MAX ? state_names[s] : NULL;
}

int vm_state_from_string(const char *s)
{
	for (int i = 0; i < _VM_STATE_MAX; i++)
		if (strcmp(s, state_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *vm_verb_to_string(enum vm_verb v)
{
	return (unsigned)v < _VM_VERB_MAX ? verb_names[v] : NULL;
}

int vm_verb_from_string(const char *s)
{
	for (int i = 0; i < _VM_VERB_MAX; i++)
		if (strcmp(s, verb_names[i]) == 0)
			return i;
	return -EINVAL;
}

struct vm *vm_ref(struct vm *vm)
{
	if (vm)
		atomic_fetch_add(&vm->ref, 1);
	return vm;
}

struct vm *vm_unref(struct vm *vm)
{
	if (vm && atomic_fetch_sub(&vm->ref, 1) == 1) {
		pthread_mutex_destroy(&vm->lock);
		free(vm);
	}
	return NULL;
}

const char *vm_name(const struct vm *vm)
{
	return vm->name;
}

enum vm_state vm_get_state(struct vm *vm)
{
	enum vm_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

static void notify(struct runtime *rt, struct vm *vm, enum vm_attr attr)
{
	pthread_rwlock_rdlock(&rt->notify_lock);
	if (rt->notify)
		rt->notify(rt->notify_ud, vm, attr);
	pthread_rwlock_unlock(&rt->notify_lock);
}

void runtime_set_notify(struct runtime *rt, vm_notify_cb cb, void *ud)
{
	pthread_rwlock_wrlock(&rt->notify_lock);
	rt->notify = cb;
	rt->notify_ud = ud;
	pthread_rwlock_unlock(&rt->notify_lock);
}

static struct timespec after_ms(unsigned ms)
{
	return clock_after_ms(CLOCK_MONOTONIC, ms);
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Called with rt->lock held; takes ownership of t. */
static void schedule(struct runtime *rt, struct task *t, unsigned ms)
{
	struct task **p;

	t->when = after_ms(ms);
	for (p = &rt->tasks; *p && !ts_before(&t->when, &(*p)->when); p = &(*p)->next)
		;
	t->next = *p;
	*p = t;
	pthread_cond_signal(&rt->cond);
}

static void bump(struct vm *vm, enum vm_attr a)
{
	vm->seq[a]++;
}

/* Finish vm's transition; called from the runtime thread without locks. */
static void finish(struct runtime *rt, struct vm *vm, uint64_t txn, bool ok, const char *msg)
{
	vm_done_cb done;
	void *ud;

	pthread_mutex_lock(&vm->lock);
	if (!vm->busy || vm->txn != txn) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	if (ok) {
		vm->state = (vm->verb == VM_VERB_START || vm->verb == VM_VERB_RESTART)
				    ? VM_STATE_RUNNING
				    : VM_STATE_STOPPED;
	} else {
		time_t now = time(NULL);
		struct tm tm;
		char ts[32];
		gmtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		vm->state = VM_STATE_FAILED;
		snprintf(vm->error, sizeof(vm->error), "%s %s\n", ts, msg);
		bump(vm, VM_ATTR_ERROR);
	}
	vm->busy = false;
	done = vm->done;
	ud = vm->ud;
	vm->done = NULL;
	bump(vm, VM_ATTR_STATE);
	bump(vm, VM_ATTR_HEALTH);
	pthread_mutex_unlock(&vm->lock);
	notify(rt, vm, VM_ATTR_STATE);
	notify(rt, vm, VM_ATTR_HEALTH);
	if (!ok)
		notify(rt, vm, VM_ATTR_ERROR);
	done(ud, ok ? 0 : -EIO);
}

static void run_task(struct runtime *rt, struct task *t)
{
	switch (t->kind) {
	case TASK_CREATE: {
		struct vm *vm = NULL;
		int r = t->result;
		pthread_mutex_lock(&rt->lock);
		for (size_t i = 0; i < rt->npending; i++)
			if (strcmp(rt->pending[i], t->name) == 0) {
				free(rt->pending[i]);
				rt->pending[i] = rt->pending[--rt->npending];
				break;
			}
		if (r == 0) {
			vm = calloc(1, sizeof(*vm));
			if (!vm) {
				r = -ENOMEM;
			} else {
				atomic_init(&vm->ref, 1);
				vm->rt = rt;
				snprintf(vm->name, sizeof(vm->name), "%s", t->name);
				vm->serial = ++rt->serial;
				pthread_mutex_init(&vm->lock, NULL);
				vm->state = VM_STATE_CREATED;
				rt->vms[rt->n++] = vm;
			}
		}
		pthread_mutex_unlock(&rt->lock);
		t->done(t->ud, r);
		break;
	}
	case TASK_DESTROY:
		t->done(t->ud, 0);
		vm_unref(t->vm);
		break;
	case TASK_FINISH: {
		char msg[512];
		bool fail;
		pthread_mutex_lock(&t->vm->lock);
		fail = t->vm->fail;
		snprintf(msg, sizeof(msg), "%s", t->vm->failmsg);
		pthread_mutex_unlock(&t->vm->lock);
		finish(rt, t->vm, t->txn, !fail, msg);
		vm_unref(t->vm);
		break;
	}
	}
	free(t);
}

static void *worker(void *arg)
{
	struct runtime *rt = arg;

	pthread_mutex_lock(&rt->lock);
	while (!rt->stop) {
		struct timespec now;
		struct task *t = rt->tasks;
		if (!t) {
			pthread_cond_wait(&rt->cond, &rt->lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (ts_before(&now, &t->when)) {
			pthread_cond_timedwait(&rt->cond, &rt->lock, &t->when);
			continue;
		}
		rt->tasks = t->next;
		pthread_mutex_unlock(&rt->lock);
		run_task(rt, t);
		pthread_mutex_lock(&rt->lock);
	}
	pthread_mutex_unlock(&rt->lock);
	return NULL;
}

int runtime_new(const struct runtime_config *cfg, struct runtime **ret, struct err *err)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	pthread_condattr_t ca;

	if (!rt)
		return err_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&rt->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rt->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_rwlock_init(&rt->notify_lock, NULL);
	rt->delay_ms = 100;
	rt->create_delay_ms = 20;
	rt->max_vms = cfg && cfg->max_vms ? cfg->max_vms : 4096;
	if (rt->max_vms > FAKE_MAX)
		rt->max_vms = FAKE_MAX;
	*ret = rt;
	return 0;
}

int runtime_start(struct runtime *rt, struct err *err)
{
	sigset_t all, old;
	int r;

	/* The worker must not take the signals meant for the FUSE threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&rt->thread, NULL, worker, rt);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return err_set(err, -r, "cannot start the fake runtime thread");
	rt->started = true;
	return 0;
}

/* Every accepted request gets its done callback, also at shutdown (the contract says exactly
 * once): defines and transitions still in flight are cancelled, destroys complete. */
static void cancel_pending(struct runtime *rt)
{
	struct task *t;

	pthread_mutex_lock(&rt->lock);
	t = rt->tasks;
	rt->tasks = NULL;
	pthread_mutex_unlock(&rt->lock);
	while (t) {
		struct task *next = t->next;
		if (t->kind == TASK_CREATE)
			t->done(t->ud, -ECANCELED);
		else if (t->kind == TASK_DESTROY)
			t->done(t->ud, 0);
		vm_unref(t->vm);
		free(t);
		t = next;
	}
	for (size_t i = 0;; i++) {
		struct vm *vm = NULL;
		vm_done_cb done = NULL;
		void *ud = NULL;
		pthread_mutex_lock(&rt->lock);
		if (i < rt->n)
			vm = vm_ref(rt->vms[i]);
		pthread_mutex_unlock(&rt->lock);
		if (!vm)
			break;
		pthread_mutex_lock(&vm->lock);
		if (vm->busy && vm->done) {
			done = vm->done;
			ud = vm->ud;
			vm->done = NULL;
		}
		pthread_mutex_unlock(&vm->lock);
		if (done)
			done(ud, -ECANCELED);
		vm_unref(vm);
	}
}

void runtime_shutdown(struct runtime *rt)
{
	if (!rt->started)
		return;
	pthread_mutex_lock(&rt->lock);
	rt->stop = true;
	pthread_cond_signal(&rt->cond);
	pthread_mutex_unlock(&rt->lock);
	pthread_join(rt->thread, NULL);
	rt->started = false;
	cancel_pending(rt);
}

struct runtime *runtime_free(struct runtime *rt)
{
	if (!rt)
		return NULL;
	runtime_shutdown(rt);
	while (rt->tasks) {
		struct task *t = rt->tasks;
		rt->tasks = t->next;
		vm_unref(t->vm);
		free(t);
	}
	for (size_t i = 0; i < rt->n; i++)
		vm_unref(rt->vms[i]);
	for (size_t i = 0; i < rt->npending; i++)
		free(rt->pending[i]);
	pthread_rwlock_destroy(&rt->notify_lock);
	pthread_cond_destroy(&rt->cond);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
	return NULL;
}

/* Called with rt->lock held. */
static ssize_t find(struct runtime *rt, const char *name)
{
	for (size_t i = 0; i < rt->n; i++)
		if (strcmp(rt->vms[i]->name, name) == 0)
			return (ssize_t)i;
	return -1;
}

int runtime_vm_create(struct runtime *rt, const char *name, vm_done_cb done, void *ud)
{
	struct task *t;

	if (!vm_name_is_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&rt->lock);
	if (find(rt, name) >= 0) {
		pthread_mutex_unlock(&rt->lock);
		return -EEXIST;
	}
	for (size_t i = 0; i < rt->npending; i++)
		if (strcmp(rt->pending[i], name) == 0) {
			pthread_mutex_unlock(&rt->lock);
			return -EEXIST;
		}
	if (rt->n + rt->npending >= rt->max_vms) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOSPC;
	}
	t = calloc(1, sizeof(*t));
	rt->pending[rt->npending] = strdup(name);
	if (!t || !rt->pending[rt->npending]) {
		free(t);
		free(rt->pending[rt->npending]);
		pthread_mutex_unlock(&rt->lock);
		return -ENOMEM;
	}
	rt->npending++;
	t->kind = TASK_CREATE;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->done = done;
	t->ud = ud;
	t->result = rt->create_fail ? -rt->create_fail : 0;
	rt->create_fail = 0;
	schedule(rt, t, rt->create_delay_ms);
	pthread_mutex_unlock(&rt->lock);
	return 0;
}

int runtime_vm_destroy(struct runtime *rt, const char *name, vm_done_cb done, void *ud)
{
	struct task *t;
	struct vm *vm;
	ssize_t i;

	pthread_mutex_lock(&rt->lock);
	i = find(rt, name);
	if (i < 0) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOENT;
	}
	vm = rt->vms[i];
	pthread_mutex_lock(&vm->lock);
	if (vm->busy || !(vm->state == VM_STATE_CREATED || vm->state == VM_STATE_STOPPED ||
			  vm->state == VM_STATE_FAILED)) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return -EBUSY;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return -ENOMEM;
	}
	vm->dead = true;
	pthread_mutex_unlock(&vm->lock);
	rt->vms[i] = rt->vms[--rt->n];
	t->kind = TASK_DESTROY;
	t->vm = vm; /* the table's reference moves to the task */
	t->done = done;
	t->ud = ud;
	schedule(rt, t, rt->create_delay_ms);
	pthread_mutex_unlock(&rt->lock);
	return 0;
}

struct vm *runtime_vm_get(struct runtime *rt, const char *name)
{
	struct vm *vm = NULL;
	ssize_t i;

	pthread_mutex_lock(&rt->lock);
	i = find(rt, name);
	if (i >= 0)
		vm = vm_ref(rt->vms[i]);
	pthread_mutex_unlock(&rt->lock);
	return vm;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int runtime_vm_list(struct runtime *rt, char ***ret)
{
	size_t n, bytes;
	char **v, *p;

	pthread_mutex_lock(&rt->lock);
	n = rt->n;
	bytes = (n + 1) * sizeof(char *);
	for (size_t i = 0; i < n; i++)
		bytes += strlen(rt->vms[i]->name) + 1;
	v = malloc(bytes);
	if (!v) {
		pthread_mutex_unlock(&rt->lock);
		return -ENOMEM;
	}
	p = (char *)(v + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(rt->vms[i]->name) + 1;
		memcpy(p, rt->vms[i]->name, l);
		v[i] = p;
		p += l;
	}
	v[n] = NULL;
	pthread_mutex_unlock(&rt->lock);
	qsort(v, n, sizeof(char *), cmp_str);
	*ret = v;
	return (int)n;
}

int runtime_metrics(struct runtime *rt, char **ret, size_t *ret_len)
{
	size_t n;
	int len;

	pthread_mutex_lock(&rt->lock);
	n = rt->n;
	pthread_mutex_unlock(&rt->lock);
	len = asprintf(ret, "# TYPE mvmfs_vms gauge\nmvmfs_vms %zu\n", n);
	if (len < 0)
		return -ENOMEM;
	*ret_len = (size_t)len;
	return 0;
}

int vm_command(struct vm *vm, enum vm_verb verb, vm_done_cb done, void *ud)
{
	struct runtime *rt = vm->rt;
	enum vm_state s, next;
	struct task *t;

	if ((unsigned)verb >= _VM_VERB_MAX)
		return -EINVAL;
	pthread_mutex_lock(&rt->lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->dead) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return -ENOENT;
	}
	if (vm->busy) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return -EBUSY;
	}
	s = vm->state;
	switch (verb) {
	case VM_VERB_PAUSE:
	case VM_VERB_RESUME:
	case VM_VERB_SUSPEND:
		/* The FUSE layer passes these through like any verb; parking is not modelled
		 * here (tests/runtime and tests/integration cover it). */
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return s == VM_STATE_RUNNING ? -EOPNOTSUPP : -EINVAL;
	case VM_VERB_START:
		next = s == VM_STATE_RUNNING ? s : VM_STATE_STARTING;
		break;
	case VM_VERB_STOP:
	case VM_VERB_KILL:
		next = s == VM_STATE_RUNNING ? VM_STATE_STOPPING : s;
		break;
	default:
		next = s == VM_STATE_RUNNING ? VM_STATE_STOPPING : VM_STATE_STARTING;
		break;
	}
	if (next == s) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return 1;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&rt->lock);
		return -ENOMEM;
	}
	vm->state = next;
	vm->busy = true;
	vm->txn++;
	vm->verb = verb;
	vm->done = done;
	vm->ud = ud;
	vm->fail = rt->fail_next;
	snprintf(vm->failmsg, sizeof(vm->failmsg), "fake: transition failed as asked (failnext)");
	rt->fail_next = false;
	bump(vm, VM_ATTR_STATE);
	bump(vm, VM_ATTR_HEALTH);
	pthread_mutex_unlock(&vm->lock);
	if (!rt->manual) {
		t->kind = TASK_FINISH;
		t->vm = vm_ref(vm);
		t->txn = vm->txn;
		schedule(rt, t, rt->delay_ms);
	} else {
		free(t);
	}
	pthread_mutex_unlock(&rt->lock);
	notify(rt, vm, VM_ATTR_STATE);
	notify(rt, vm, VM_ATTR_HEALTH);
	return 0;
}

static bool image_ref_ok(const char *s)
{
	if (!*s || strlen(s) > 4096)
		return false;
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:@-",
			    *s))
			return false;
	return true;
}

int vm_set_image(struct vm *vm, const char *ref, struct err *err)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->busy || !(vm->state == VM_STATE_CREATED || vm->state == VM_STATE_STOPPED ||
			  vm->state == VM_STATE_FAILED)) {
		pthread_mutex_unlock(&vm->lock);
		return err_set(err, -EBUSY,
			       "the image can only change while the VM is not running");
	}
	if (!image_ref_ok(ref)) {
		pthread_mutex_unlock(&vm->lock);
		return err_set(err, -EINVAL, "malformed image reference");
	}
	snprintf(vm->image, sizeof(vm->image), "%s", ref);
	bump(vm, VM_ATTR_IMAGE);
	pthread_mutex_unlock(&vm->lock);
	notify(vm->rt, vm, VM_ATTR_IMAGE);
	return 0;
}

static const char *health_word(struct vm *vm)
{
	if (vm->health[0])
		return vm->health;
	switch (vm->state) {
	case VM_STATE_RUNNING:
		return "healthy";
	case VM_STATE_STARTING:
		return "starting";
	case VM_STATE_FAILED:
		return "failed";
	default:
		return "stopped";
	}
}

int vm_show(struct vm *vm, enum vm_attr attr, char **ret, size_t *ret_len)
{
	char *s = NULL;
	int n;

	pthread_mutex_lock(&vm->lock);
	switch (attr) {
	case VM_ATTR_STATE:
		n = asprintf(&s, "%s\n", state_names[vm->state]);
		break;
	case VM_ATTR_IMAGE:
		n = vm->image[0] ? asprintf(&s, "%s\n", vm->image) : asprintf(&s, "%s", "");
		break;
	case VM_ATTR_IP:
		n = asprintf(&s, "fd00:6d76:6d66::%x\n", vm->serial);
		break;
	case VM_ATTR_HEALTH:
		n = asprintf(&s, "%s\nvmm: %s fake\nagent: %s fake\napp: %s fake\nnet: ok fake\n",
			     health_word(vm), vm->state == VM_STATE_RUNNING ? "ok" : "down",
			     vm->state == VM_STATE_RUNNING ? "ok" : "down",
			     vm->state == VM_STATE_RUNNING ? "running" : "stopped");
		break;
	case VM_ATTR_ERROR:
		n = asprintf(&s, "%s", vm->error);
		break;
	case VM_ATTR_LOG:
		if (vm->log_size) {
			/* lines of 64 bytes, as many as fit */
			n = (int)vm->log_size;
			s = malloc(vm->log_size);
			for (size_t i = 0; s && i < vm->log_size; i++)
				s[i] = i % 64 == 63 || i + 1 == vm->log_size ? '\n' : 'x';
			if (!s)
				n = -1;
			break;
		}
		n = asprintf(&s, "fake console of %s\n", vm->name);
		break;
	case VM_ATTR_CONFIG:
		n = asprintf(&s, "vcpus: 2\nmem_mib: 2048\n");
		break;
	case VM_ATTR_PID:
		n = vm->state == VM_STATE_RUNNING ? asprintf(&s, "%u\n", 100000 + vm->serial)
						  : asprintf(&s, "%s", "");
		break;
	case VM_ATTR_METRICS:
		n = asprintf(&s, "mvmfs_vm_up{vm=\"%s\"} %d\n", vm->name,
			     vm->state == VM_STATE_RUNNING);
		break;
	default:
		n = -1;
		errno = EINVAL;
		break;
	}
	pthread_mutex_unlock(&vm->lock);
	if (n < 0)
		return -ENOMEM;
	*ret = s;
	*ret_len = (size_t)n;
	return 0;
}

uint64_t vm_attr_seq(struct vm *vm, enum vm_attr attr)
{
	uint64_t s;

	pthread_mutex_lock(&vm->lock);
	s = (unsigned)attr < _VM_ATTR_MAX ? vm->seq[attr] : 0;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

/* ---- volumes (runtime/volume.h), records only ---- */

/* With vm->lock held. */
static int volumes_may_change_locked(struct vm *vm)
{
	if (vm->dead)
		return -ENOENT;
	if (vm->busy || !(vm->state == VM_STATE_CREATED || vm->state == VM_STATE_STOPPED ||
			  vm->state == VM_STATE_FAILED))
		return -EBUSY;
	return 0;
}

static ssize_t find_vol(struct vm *vm, const char *vol)
{
	for (size_t i = 0; i < vm->n_vols; i++)
		if (strcmp(vm->vols[i].name, vol) == 0)
			return (ssize_t)i;
	return -1;
}

int vm_volumes_may_change(struct vm *vm)
{
	int r;

	pthread_mutex_lock(&vm->lock);
	r = volumes_may_change_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vm_volume_create(struct vm *vm, const char *vol, struct err *err)
{
	struct runtime *rt = vm->rt;
	size_t at;
	int fail, r;

	if (!volume_name_is_valid(vol))
		return err_set(err, -EINVAL, "bad volume name");
	pthread_mutex_lock(&rt->lock);
	fail = rt->volume_fail;
	rt->volume_fail = 0;
	pthread_mutex_unlock(&rt->lock);
	pthread_mutex_lock(&vm->lock);
	r = volumes_may_change_locked(vm);
	if (r >= 0 && find_vol(vm, vol) >= 0)
		r = err_set(err, -EEXIST, "volume exists");
	if (r >= 0 && vm->n_vols >= VOLUME_MAX_PER_VM)
		r = err_set(err, -ENOSPC, "too many volumes");
	if (r >= 0 && fail)
		r = err_set(err, -fail, "volume create failed (fake)");
	if (r >= 0) {
		for (at = 0; at < vm->n_vols && strcmp(vm->vols[at].name, vol) < 0; at++)
			;
		memmove(&vm->vols[at + 1], &vm->vols[at], (vm->n_vols - at) * sizeof(vm->vols[0]));
		vm->vols[at] = (struct fake_volume){.size = VOLUME_SIZE_DEFAULT};
		snprintf(vm->vols[at].name, sizeof(vm->vols[at].name), "%s", vol);
		vm->n_vols++;
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vm_volume_destroy(struct vm *vm, const char *vol, struct err *err)
{
	ssize_t i;
	int r;

	pthread_mutex_lock(&vm->lock);
	i = find_vol(vm, vol);
	r = i < 0 ? err_set(err, -ENOENT, "no such volume") : volumes_may_change_locked(vm);
	if (r >= 0) {
		memmove(&vm->vols[i], &vm->vols[i + 1],
			(vm->n_vols - (size_t)i - 1) * sizeof(vm->vols[0]));
		vm->n_vols--;
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vm_volume_list(struct vm *vm, char ***ret)
{
	size_t n, bytes;
	char **v, *p;

	pthread_mutex_lock(&vm->lock);
	n = vm->n_vols;
	bytes = (n + 1) * sizeof(char *);
	for (size_t i = 0; i < n; i++)
		bytes += strlen(vm->vols[i].name) + 1;
	v = malloc(bytes);
	if (!v) {
		pthread_mutex_unlock(&vm->lock);
		return -ENOMEM;
	}
	p = (char *)(v + n + 1);
	for (size_t i = 0; i < n; i++) {
		v[i] = strcpy(p, vm->vols[i].name);
		p += strlen(p) + 1;
	}
	v[n] = NULL;
	pthread_mutex_unlock(&vm->lock);
	*ret = v;
	return (int)n;
}

bool vm_volume_exists(struct vm *vm, const char *vol)
{
	bool r;

	pthread_mutex_lock(&vm->lock);
	r = !vm->dead && find_vol(vm, vol) >= 0;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vm_volume_show(struct vm *vm, const char *vol, enum volume_attr attr, char **ret,
		   size_t *ret_len)
{
	ssize_t i;
	int n = -1;

	pthread_mutex_lock(&vm->lock);
	i = find_vol(vm, vol);
	if (i >= 0 && attr == VOLUME_ATTR_PATH)
		n = vm->vols[i].path[0] ? asprintf(ret, "%s\n", vm->vols[i].path)
					: asprintf(ret, "%s", "");
	else if (i >= 0 && attr == VOLUME_ATTR_SIZE)
		n = asprintf(ret, "%llu\n", (unsigned long long)vm->vols[i].size);
	pthread_mutex_unlock(&vm->lock);
	if (i < 0)
		return -ENOENT;
	if (n < 0)
		return -ENOMEM;
	*ret_len = (size_t)n;
	return 0;
}

int vm_volume_store(struct vm *vm, const char *vol, enum volume_attr attr, const char *value,
		    struct err *err)
{
	const char *why = NULL;
	uint64_t size = 0;
	ssize_t i;
	int r;

	if (attr == VOLUME_ATTR_PATH && volume_path_check(value, &why) < 0)
		return err_set(err, -EINVAL, "bad path: %s", why);
	if (attr == VOLUME_ATTR_SIZE && volume_size_parse(value, &size, &why) < 0)
		return err_set(err, -EINVAL, "bad size: %s", why);
	pthread_mutex_lock(&vm->lock);
	i = find_vol(vm, vol);
	r = i < 0 ? err_set(err, -ENOENT, "no such volume") : volumes_may_change_locked(vm);
	if (r >= 0 && attr == VOLUME_ATTR_PATH) {
		for (size_t j = 0; j < vm->n_vols && r >= 0; j++)
			if ((ssize_t)j != i && vm->vols[j].path[0] &&
			    volume_paths_overlap(vm->vols[j].path, value))
				r = err_set(err, -EINVAL, "overlaps volume %s", vm->vols[j].name);
		if (r >= 0)
			snprintf(vm->vols[i].path, sizeof(vm->vols[i].path), "%s", value);
	} else if (r >= 0 && attr == VOLUME_ATTR_SIZE) {
		if (size < vm->vols[i].size)
			r = err_set(err, -EINVAL, "cannot shrink");
		else
			vm->vols[i].size = size;
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

int vm_disk_usage_show(struct vm *vm, char **ret, size_t *ret_len)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&vm->lock);
	fprintf(f, "writable: unknown size 1073741824\n");
	for (size_t i = 0; i < vm->n_vols; i++)
		fprintf(f, "volume %s: unknown size %llu\n", vm->vols[i].name,
			(unsigned long long)vm->vols[i].size);
	pthread_mutex_unlock(&vm->lock);
	if (fclose(f) != 0) {
		free(s);
		return -ENOMEM;
	}
	*ret = s;
	*ret_len = len;
	return 0;
}

/* Finish a manual transition from the runtime thread, as the real runtime would. */
static int queue_finish(struct runtime *rt, const char *name, bool ok, const char *msg)
{
	struct vm *vm = runtime_vm_get(rt, name);
	struct task *t;
	uint64_t txn;
	bool busy;

	if (!vm)
		return -ENOENT;
	pthread_mutex_lock(&vm->lock);
	busy = vm->busy;
	txn = vm->txn;
	if (busy) {
		vm->fail = !ok;
		if (!ok)
			snprintf(vm->failmsg, sizeof(vm->failmsg), "%s", msg);
	}
	pthread_mutex_unlock(&vm->lock);
	t = busy ? calloc(1, sizeof(*t)) : NULL;
	if (!t) {
		vm_unref(vm);
		return busy ? -ENOMEM : -EALREADY;
	}
	t->kind = TASK_FINISH;
	t->vm = vm;
	t->txn = txn;
	pthread_mutex_lock(&rt->lock);
	schedule(rt, t, 0);
	pthread_mutex_unlock(&rt->lock);
	return 0;
}

void fake_runtime_control(struct runtime *rt, const char *line, char *reply, size_t size)
{
	char cmd[32] = "", arg[64] = "", rest[512] = "";
	int r = 0;

	snprintf(reply, size, "ok");
	if (sscanf(line, "%31s %63s %511[^\n]", cmd, arg, rest) < 1) {
		snprintf(reply, size, "error empty");
		return;
	}
	if (strcmp(cmd, "mode") == 0) {
		pthread_mutex_lock(&rt->lock);
		rt->manual = strcmp(arg, "manual") == 0;
		pthread_mutex_unlock(&rt->lock);
	} else if (strcmp(cmd, "volumefail") == 0) {
		uint32_t v;
		r = parse_u32(arg, &v);
		if (r >= 0) {
			pthread_mutex_lock(&rt->lock);
			rt->volume_fail = (int)v;
			pthread_mutex_unlock(&rt->lock);
		}
	} else if (strcmp(cmd, "delay") == 0 || strcmp(cmd, "createdelay") == 0 ||
		   strcmp(cmd, "maxvms") == 0 || strcmp(cmd, "createfail") == 0) {
		uint32_t v;
		r = parse_u32(arg, &v);
		if (r >= 0) {
			pthread_mutex_lock(&rt->lock);
			if (cmd[0] == 'd')
				rt->delay_ms = v;
			else if (strcmp(cmd, "createdelay") == 0)
				rt->create_delay_ms = v;
			else if (cmd[0] == 'm')
				rt->max_vms = v < FAKE_MAX ? v : FAKE_MAX;
			else
				rt->create_fail = (int)v;
			pthread_mutex_unlock(&rt->lock);
		}
	} else if (strcmp(cmd, "failnext") == 0) {
		pthread_mutex_lock(&rt->lock);
		rt->fail_next = true;
		pthread_mutex_unlock(&rt->lock);
	} else if (strcmp(cmd, "complete") == 0) {
		r = queue_finish(rt, arg, true, NULL);
	} else if (strcmp(cmd, "fail") == 0) {
		r = queue_finish(rt, arg, false, rest);
	} else if (strcmp(cmd, "health") == 0) {
		struct vm *vm = runtime_vm_get(rt, arg);
		if (!vm) {
			r = -ENOENT;
		} else {
			pthread_mutex_lock(&vm->lock);
			snprintf(vm->health, sizeof(vm->health), "%s",
				 strcmp(rest, "-") == 0 ? "" : rest);
			bump(vm, VM_ATTR_HEALTH);
			pthread_mutex_unlock(&vm->lock);
			notify(rt, vm, VM_ATTR_HEALTH);
			vm_unref(vm);
		}
	} else if (strcmp(cmd, "logsize") == 0) {
		struct vm *vm = runtime_vm_get(rt, arg);
		uint32_t v = 0;
		r = vm ? parse_u32(rest, &v) : -ENOENT;
		if (r >= 0 && v > FAKE_LOG_MAX)
			r = -ERANGE;
		if (r >= 0) {
			pthread_mutex_lock(&vm->lock);
			vm->log_size = v;
			pthread_mutex_unlock(&vm->lock);
		}
		vm_unref(vm);
	} else if (strcmp(cmd, "busy") == 0 || strcmp(cmd, "state") == 0) {
		struct vm *vm = runtime_vm_get(rt, arg);
		if (!vm) {
			r = -ENOENT;
		} else {
			pthread_mutex_lock(&vm->lock);
			if (cmd[0] == 'b')
				snprintf(reply, size, "%d", vm->busy);
			else
				snprintf(reply, size, "%s", state_names[vm->state]);
			pthread_mutex_unlock(&vm->lock);
			vm_unref(vm);
		}
	} else {
		r = -EINVAL;
	}
	if (r < 0)
		snprintf(reply, size, "error %s", strerror(-r));
}
