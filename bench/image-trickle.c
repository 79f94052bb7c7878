/* SPDX-License-Identifier: MIT */
/*
 * bench-image-trickle: img_prepare of a cached image while N pulls trickle (a pull
 * must never hold up other VMs' image work). Against tests/image/hostile-registry.py:
 *
 *   bench-image-trickle STATE_DIR HOST:PORT FAST_DIGEST [PULLS [N]]
 *
 * prepares test/fast:1 once, then times N prepares of it by tag (one manifest GET) and by
 * digest (no network) with no pull running, then again while PULLS (default 8) pulls of
 * test/slow, test/slow2, ... trickle at the registry's RATE; prints p50/p99 of each. The
 * trickling pulls are cancelled at the end (the store waits for their threads).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "image.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void measure(struct img_store *s, const char *ref, int n, double *p50, double *p99)
{
	double *v = calloc((size_t)n, sizeof(double));
	struct img_prepared p;
	struct err err;

	if (!v)
		exit(1);
	for (int i = 0; i < n; i++) {
		double t = now_ms();
		if (img_prepare(s, ref, "bench", NULL, NULL, NULL, &p, &err) < 0) {
			fprintf(stderr, "bench: %s: %s\n", ref, err.msg);
			exit(1);
		}
		v[i] = now_ms() - t;
	}
	qsort(v, (size_t)n, sizeof(double), cmp);
	*p50 = v[n / 2];
	*p99 = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	free(v);
}

struct puller {
	struct img_store *s;
	char ref[300];
	atomic_bool cancel;
	int r;
	struct err err;
};

static void *pull(void *ud)
{
	struct puller *p = ud;
	struct img_prepared out;

	p->r = img_prepare(p->s, p->ref, NULL, NULL, NULL, &p->cancel, &out, &p->err);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *insecure[2] = {NULL, NULL};
	struct img_store_config cfg = {0};
	struct img_store *s;
	struct err err = {0};
	char tag[300], dig[400];
	int pulls = argc > 4 ? atoi(argv[4]) : 8, n = argc > 5 ? atoi(argv[5]) : 200;
	double t50[2], t99[2], d50[2], d99[2];
	struct puller *pl;
	pthread_t *th;

	if (argc < 4 || pulls < 1 || pulls > 10 || n < 1) {
		fprintf(stderr, "usage: bench-image-trickle STATE_DIR HOST:PORT FAST_DIGEST [PULLS "
				"(1-10) [N]]\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	insecure[0] = argv[2];
	cfg.state_dir = argv[1];
	cfg.insecure = insecure;
	cfg.docker_config = "/nonexistent";
	if (img_store_new(&cfg, &s, &err) < 0) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}
	snprintf(tag, sizeof(tag), "%s/test/fast:1", argv[2]);
	snprintf(dig, sizeof(dig), "%s/test/fast@%s", argv[2], argv[3]);
	measure(s, tag, 1, &t50[0], &t99[0]); /* pull it once */
	measure(s, tag, n, &t50[0], &t99[0]);
	measure(s, dig, n, &d50[0], &d99[0]);

	pl = calloc((size_t)pulls, sizeof(*pl));
	th = calloc((size_t)pulls, sizeof(*th));
	if (!pl || !th) {
		fprintf(stderr, "bench: out of memory\n");
		exit(1);
	}
	for (int i = 0; i < pulls; i++) {
		pl[i].s = s;
		if (i == 0)
			snprintf(pl[i].ref, sizeof(pl[i].ref), "%s/test/slow:1", argv[2]);
		else
			snprintf(pl[i].ref, sizeof(pl[i].ref), "%s/test/slow%d:1", argv[2], i + 1);
		atomic_init(&pl[i].cancel, false);
		if (pthread_create(&th[i], NULL, pull, &pl[i]) != 0) {
			fprintf(stderr, "bench: cannot start a pull thread\n");
			exit(1);
		}
	}
	usleep(1000 * 1000); /* every pull past its manifest, trickling its layer */
	measure(s, tag, n, &t50[1], &t99[1]);
	measure(s, dig, n, &d50[1], &d99[1]);
	for (int i = 0; i < pulls; i++)
		atomic_store(&pl[i].cancel, true);
	for (int i = 0; i < pulls; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < pulls; i++)
		if (pl[i].r >= 0)
			fprintf(stderr, "bench: pull %d finished before the end: raise N\n", i);

	{
		char a[64], b[64];

		snprintf(a, sizeof(a), "by tag, %d pulls trickling", pulls);
		snprintf(b, sizeof(b), "by digest, %d pulls trickling", pulls);
		printf("%-44s %9s %9s\n", "cached image, img_prepare", "p50 ms", "p99 ms");
		printf("%-44s %9.3f %9.3f\n", "by tag (manifest GET), no pull running", t50[0],
		       t99[0]);
		printf("%-44s %9.3f %9.3f\n", a, t50[1], t99[1]);
		printf("%-44s %9.3f %9.3f\n", "by digest (no network), no pull running", d50[0],
		       d99[0]);
		printf("%-44s %9.3f %9.3f\n", b, d50[1], d99[1]);
	}
	free(pl);
	free(th);
	img_store_free(s);
	curl_global_cleanup();
	return 0;
}
