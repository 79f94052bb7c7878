/* SPDX-License-Identifier: MIT */
/*
 * img-tool: drive the image store from the command line (benchmarks, manual checks).
 *   img-tool prepare STATE_DIR REF [HOLDER] [INSECURE_HOST:PORT]   -> "digest rootfs ms"
 *   img-tool datadisk PATH SIZE                                    -> "ms"
 *   img-tool gc STATE_DIR KEEP_BYTES                               -> "freed bytes"
 *   img-tool release STATE_DIR HOLDER
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build.h"
#include "parse.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double start_ms;

/* IMG_TOOL_PROGRESS=1: one line per phase or layer change, with the time since the start. */
static void on_progress(void *ud, const struct img_progress *p)
{
	static const char *last_phase;
	static unsigned last_layers = ~0u;

	if (!getenv("IMG_TOOL_PROGRESS") ||
	    (p->phase == last_phase && p->layers_done == last_layers))
		return;
	last_phase = p->phase;
	last_layers = p->layers_done;
	fprintf(stderr, "%8.1f ms  %-13s %llu/%llu bytes, %u/%u layers\n", now_ms() - start_ms,
		p->phase, (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_total,
		p->layers_done, p->layers_total);
}

static int open_store(const char *state, const char *insecure, uint64_t keep,
		      struct img_store **ret)
{
	static const char *list[2];
	struct img_store_config cfg = {.state_dir = state, .keep_bytes = keep};
	struct err err = {0};

	list[0] = insecure;
	cfg.insecure = list;
	if (img_store_new(&cfg, ret, &err) < 0) {
		fprintf(stderr, "img-tool: %s\n", err.msg);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct img_store *s = NULL;
	struct err err = {0};
	uint64_t v = 0;
	double t0;
	int r = 1;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (argc >= 4 && strcmp(argv[1], "prepare") == 0) {
		struct img_prepared p;

		if (open_store(argv[2], argc > 5 ? argv[5] : NULL, 0, &s) < 0)
			return 1;
		t0 = start_ms = now_ms();
		if (img_prepare(s, argv[3], argc > 4 ? argv[4] : NULL, on_progress, NULL, NULL, &p,
				&err) < 0) {
			fprintf(stderr, "img-tool: %s\n", err.msg);
		} else {
			printf("%s %s %.2f\n", p.digest, p.rootfs, now_ms() - t0);
			r = 0;
		}
	} else if (argc == 4 && strcmp(argv[1], "datadisk") == 0 && parse_size(argv[3], &v) == 0) {
		t0 = now_ms();
		if (img_make_data_disk(argv[2], v, &err) < 0) {
			fprintf(stderr, "img-tool: %s\n", err.msg);
		} else {
			printf("%.2f\n", now_ms() - t0);
			r = 0;
		}
	} else if (argc == 4 && strcmp(argv[1], "gc") == 0 && parse_size(argv[3], &v) == 0) {
		if (open_store(argv[2], NULL, v, &s) < 0)
			return 1;
		int64_t freed = img_gc(s);
		printf("%lld\n", (long long)freed);
		r = freed < 0;
	} else if (argc == 4 && strcmp(argv[1], "release") == 0) {
		if (open_store(argv[2], NULL, 0, &s) < 0)
			return 1;
		r = img_release(s, argv[3]) < 0;
	} else {
		fprintf(stderr, "usage: img-tool prepare STATE REF [HOLDER] [INSECURE] | datadisk "
				"PATH SIZE | gc STATE KEEP | release STATE HOLDER\n");
		return 2;
	}
	img_store_free(s);
	curl_global_cleanup();
	return r;
}
