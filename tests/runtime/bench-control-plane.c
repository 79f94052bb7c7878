/* SPDX-License-Identifier: MIT */
/*
 * Benchmark (not a test): control-plane overhead at the runtime API level, against the fake
 * jailer + Firecracker. N VMs started then stopped by W concurrent writer threads; p50/p99 of
 * "start returning" (vm_command(start) until its completion, i.e. the blocking write's time).
 * Then the daemon's RSS growth per defined VM over M VMs. Host networking is off (IPAM runs).
 *
 * Usage: bench-control-plane SRCDIR N W M
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "waiter.h"

static char T[64] = "/tmp/mcp-XXXXXX";
static struct runtime *rt;
static int n_vms, n_writers;
static double *lat_ms;
static atomic_int n_failed;

static int wait_w(struct waiter *w)
{
	pthread_mutex_lock(&w->lock);
	while (!w->done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	return w->result;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fixture_image(struct runtime *r, struct vm *vm, const char *ref,
			 struct img_prepared *ret, struct err *err)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->rootfs, sizeof(ret->rootfs), "%s/rootfs.ext4", T);
	snprintf(ret->digest, sizeof(ret->digest), "sha256:%064d", 0);
	return 0;
}

static int cmd(struct vm *vm, enum vm_verb verb)
{
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	int r = vm_command(vm, verb, on_done, &w);

	return r != 0 ? (r == 1 ? 0 : r) : wait_w(&w);
}

static int define(const char *name)
{
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	struct err err = {};
	struct vm *vm;
	int r = runtime_vm_create(rt, name, on_done, &w);

	if (r < 0 || (r = wait_w(&w)) < 0)
		return r;
	vm = runtime_vm_get(rt, name);
	if (!vm)
		return -ENOENT;
	r = vm_set_image(vm, "127.0.0.1:5000/app:v1", &err);
	vm_unref(vm);
	return r;
}

static void *writer(void *arg)
{
	long t = (long)arg;

	for (int i = (int)t; i < n_vms; i += n_writers) {
		char name[32];
		struct vm *vm;
		double t0;
		int r;

		snprintf(name, sizeof(name), "b%d", i);
		vm = runtime_vm_get(rt, name);
		t0 = now_ms();
		r = cmd(vm, VM_VERB_START);
		lat_ms[i] = now_ms() - t0;
		if (r < 0) {
			char *e = NULL;
			size_t el;
			if (vm_show(vm, VM_ATTR_ERROR, &e, &el) == 0)
				fprintf(stderr, "%s: start failed: %s", name, e);
			free(e);
			n_failed++;
		}
		if (cmd(vm, VM_VERB_STOP) < 0)
			fprintf(stderr, "%s: stop failed\n", name);
		vm_unref(vm);
	}
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static long rss_kib(void)
{
	char *s = NULL, *p;
	long v = -1;

	if (read_file_bounded("/proc/self/status", 1 << 16, &s, NULL) < 0)
		return -1;
	p = strstr(s, "VmRSS:");
	if (p)
		v = strtol(p + 6, NULL, 10);
	free(s);
	return v;
}

static void touch(const char *name, size_t size)
{
	char p[256];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", T, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		exit(1);
	fchmod(fd, 0644);
	close(fd);
}

int main(int argc, char **argv)
{
	static char state[128], chroot_base[128], kernel[128], initrd[128], fc[512], jailer[512];
	struct runtime_config cfg;
	struct err err = {};
	pthread_t th[64];
	double t0, total;
	int m;
	long rss0, rss1;

	if (argc != 5) {
		fprintf(stderr, "usage: %s SRCDIR N WRITERS M\n", argv[0]);
		return 2;
	}
	n_vms = atoi(argv[2]);
	n_writers = atoi(argv[3]);
	m = atoi(argv[4]);
	if (n_writers < 1 || n_writers > 64 || n_vms < 1 || m < 0)
		return 2;
	if (!mkdtemp(T))
		return 1;
	chmod(T, 0755);
	snprintf(fc, sizeof(fc), "%s/tests/fakes/firecracker", argv[1]);
	snprintf(jailer, sizeof(jailer), "%s/tests/fakes/jailer", argv[1]);
	snprintf(state, sizeof(state), "%s/state", T);
	snprintf(chroot_base, sizeof(chroot_base), "%s/jail", T);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", T);
	snprintf(initrd, sizeof(initrd), "%s/initrd", T);
	mkdir_p(chroot_base, 0755);
	touch("vmlinux", 4096);
	touch("initrd", 4096);
	touch("rootfs.ext4", 1 << 20);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	log_set_max_level(LOG_WARNING);
	cfg = (struct runtime_config){
		.state_dir = state,
		.firecracker = fc,
		.jailer = jailer,
		.chroot_base = chroot_base,
		.kernel = kernel,
		.initrd = initrd,
		.uid_base = 400000,
		.uid_count = 5000,
		.data_disk_bytes = 16ULL << 20,
		.stop_timeout_ms = 3000,
		.no_network = true,
	};
	if (runtime_new(&cfg, &rt, &err) < 0 ||
	    (rt->prepare_image = fixture_image, runtime_start(rt, &err) < 0)) {
		fprintf(stderr, "runtime: %s\n", err.msg);
		return 1;
	}
	lat_ms = calloc((size_t)n_vms, sizeof(double));
	for (int i = 0; i < n_vms; i++) {
		char name[32];
		snprintf(name, sizeof(name), "b%d", i);
		if (define(name) < 0) {
			fprintf(stderr, "define %s failed\n", name);
			return 1;
		}
	}
	t0 = now_ms();
	for (long t = 0; t < n_writers; t++)
		pthread_create(&th[t], NULL, writer, (void *)t);
	for (int t = 0; t < n_writers; t++)
		pthread_join(th[t], NULL);
	total = now_ms() - t0;
	if (atomic_load(&n_failed))
		printf("WARNING: %d of %d starts failed (see above)\n", atomic_load(&n_failed),
		       n_vms);
	qsort(lat_ms, (size_t)n_vms, sizeof(double), cmp_d);
	printf("control-plane (runtime API level, fake VMM, %d VMs, %d writers): start p50 %.1f ms "
	       "p99 %.1f ms; all starts+stops %.1f s\n",
	       n_vms, n_writers, lat_ms[n_vms / 2], lat_ms[(n_vms * 99 + 99) / 100 - 1],
	       total / 1000);
	for (int i = 0; i < n_vms; i++) {
		char name[32];
		struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
		snprintf(name, sizeof(name), "b%d", i);
		if (runtime_vm_destroy(rt, name, on_done, &w) == 0)
			wait_w(&w);
	}
	if (m > 0) {
		rss0 = rss_kib();
		for (int i = 0; i < m; i++) {
			char name[32];
			snprintf(name, sizeof(name), "m%d", i);
			if (define(name) < 0) {
				fprintf(stderr, "define %s failed\n", name);
				return 1;
			}
		}
		rss1 = rss_kib();
		printf("memory: RSS %ld KiB -> %ld KiB over %d defined VMs: %.1f KiB per VM\n",
		       rss0, rss1, m, (double)(rss1 - rss0) / m);
	}
	runtime_free(rt);
	rm_rf(T);
	return 0;
}
