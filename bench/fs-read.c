/* SPDX-License-Identifier: MIT */
/* Timing loop for bench/fs-read: p50/p99 of open+read+close of each file given, N times each,
 * interleaved so drift hits every file alike. Usage: fs-read-loop N FILE... */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[1]) : 0, files = argc - 2;
	double *t;
	char buf[8192];

	if (n <= 0 || files <= 0) {
		fprintf(stderr, "usage: %s N FILE...\n", argv[0]);
		return 2;
	}
	t = calloc((size_t)n * files, sizeof(double));
	if (!t)
		return 1;
	for (int i = 0; i < n; i++)
		for (int f = 0; f < files; f++) {
			struct timespec a, b;
			int fd;
			clock_gettime(CLOCK_MONOTONIC, &a);
			fd = open(argv[2 + f], O_RDONLY | O_CLOEXEC);
			if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0) {
				perror(argv[2 + f]);
				return 1;
			}
			close(fd);
			clock_gettime(CLOCK_MONOTONIC, &b);
			t[(size_t)f * n + i] =
				(b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
		}
	for (int f = 0; f < files; f++) {
		double *v = t + (size_t)f * n;
		qsort(v, (size_t)n, sizeof(double), cmp);
		printf("%s %.2f %.2f\n", argv[2 + f], v[n / 2], v[(size_t)n * 99 / 100]);
	}
	free(t);
	return 0;
}
