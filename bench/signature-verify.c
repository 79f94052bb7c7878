/* SPDX-License-Identifier: MIT */
/*
 * Cost of cosign signature checking (--verify-key) on a start: img_prepare of a small
 * signed image from a local docker-registry (sign-fixture.py), with and without a key, runs
 * interleaved so load changes hit both alike:
 *   cold   empty store: resolve + (check) + pull + unpack + ext4
 *   cached tag: resolve (one manifest GET) + (check: .sig manifest GET, payload GET, ECDSA)
 *   cached digest: no network; with a key, the recorded verification is looked up
 * Prints the median wall time and the median CPU time of this process (the registry's own CPU is
 * not in it) per case, and the difference the check makes.
 * Usage: bench-signature-verify [RUNS]   (from the source tree, or with MVMFS_SRCDIR set)
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fileio.h"
#include "image.h"

static char dir[128];
static char port[16], key[512], digest[80];

static double now_ms(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void env_value(const char *k, char *buf, size_t size)
{
	char path[256], line[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/fx/env", dir);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, k, strlen(k)) == 0 && line[strlen(k)] == '=') {
			line[strcspn(line, "\n")] = '\0';
			snprintf(buf, size, "%s", line + strlen(k) + 1);
		}
	if (f)
		fclose(f);
}

static struct img_store *open_store(const char *name, bool with_key)
{
	static char insecure[64];
	static const char *ins[2], *keys[2];
	char state[256];
	struct img_store *s;
	struct err err = {0};

	snprintf(insecure, sizeof(insecure), "127.0.0.1:%s", port);
	ins[0] = insecure;
	keys[0] = key;
	snprintf(state, sizeof(state), "%s/%s", dir, name);
	struct img_store_config cfg = {.state_dir = state,
				       .insecure = ins,
				       .docker_config = "/nonexistent",
				       .keep_bytes = 1ULL << 30,
				       .verify_keys = with_key ? keys : NULL};
	if (img_store_new(&cfg, &s, &err) < 0) {
		fprintf(stderr, "store: %s\n", err.msg);
		exit(1);
	}
	return s;
}

static void prepare(struct img_store *s, const char *ref, double *wall, double *cpu)
{
	struct img_prepared p;
	struct err err = {0};
	double w0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);

	if (img_prepare(s, ref, "bench", NULL, NULL, NULL, &p, &err) < 0) {
		fprintf(stderr, "prepare %s: %s\n", ref, err.msg);
		exit(1);
	}
	*wall = now_ms(CLOCK_MONOTONIC) - w0;
	*cpu = now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 20;
	const char *src = getenv("MVMFS_SRCDIR") ? getenv("MVMFS_SRCDIR") : ".";
	char cmd[1024], tag[256], dref[256];
	static const char *const names[] = {"cold", "cached tag", "cached digest"};
	double *w[3][2], *c[3][2];
	struct img_store *warm[2];

	if (runs < 1 || runs > 1000)
		runs = 20;
	snprintf(dir, sizeof(dir), "/var/tmp/mvmfs-bench-sig.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/image/sign-fixture.py up %s/fx >&2", src, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "bench: sign-fixture.py failed (run from the source tree)\n");
		(void)rm_rf(dir);
		return 1;
	}
	env_value("PORT", port, sizeof(port));
	env_value("KEY_A", key, sizeof(key));
	env_value("DIGEST_SIGNED", digest, sizeof(digest));
	snprintf(tag, sizeof(tag), "127.0.0.1:%s/test/signed:1", port);
	snprintf(dref, sizeof(dref), "127.0.0.1:%s/test/signed@%s", port, digest);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (int k = 0; k < 3; k++)
		for (int m = 0; m < 2; m++) {
			w[k][m] = calloc((size_t)runs, sizeof(double));
			c[k][m] = calloc((size_t)runs, sizeof(double));
		}
	for (int m = 0; m < 2; m++) {
		double x, y;
		warm[m] = open_store(m ? "warm-key" : "warm-nokey", m);
		prepare(warm[m], tag, &x, &y);
	}
	for (int i = 0; i < runs; i++)
		for (int m = 0; m < 2; m++) {
			struct img_store *s;
			char name[32], p[256];

			snprintf(name, sizeof(name), "cold-%d-%d", i, m);
			s = open_store(name, m);
			prepare(s, tag, &w[0][m][i], &c[0][m][i]);
			img_store_free(s);
			snprintf(p, sizeof(p), "%s/%s", dir, name);
			(void)rm_rf(p);
			prepare(warm[m], tag, &w[1][m][i], &c[1][m][i]);
			prepare(warm[m], dref, &w[2][m][i], &c[2][m][i]);
		}
	printf("signature check cost per start, %d runs each, medians (wall under shared load is "
	       "noisy; CPU is this process only)\n",
	       runs);
	printf("%-14s %12s %12s %10s %12s %12s %10s\n", "case", "wall no key", "wall key", "delta",
	       "cpu no key", "cpu key", "delta");
	for (int k = 0; k < 3; k++) {
		double a = median(w[k][0], runs), b = median(w[k][1], runs);
		double x = median(c[k][0], runs), y = median(c[k][1], runs);
		printf("%-14s %10.2fms %10.2fms %8.2fms %10.2fms %10.2fms %8.2fms\n", names[k], a,
		       b, b - a, x, y, y - x);
	}
	for (int m = 0; m < 2; m++)
		img_store_free(warm[m]);
	for (int k = 0; k < 3; k++)
		for (int m = 0; m < 2; m++) {
			free(w[k][m]);
			free(c[k][m]);
		}
	curl_global_cleanup();
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/image/registry-fixture.py down %s/fx", src,
		 dir);
	(void)system(cmd);
	(void)rm_rf(dir);
	return 0;
}
