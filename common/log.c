/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int max_level = LOG_INFO;
static bool under_journal;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;

static void detect_journal(void)
{
	under_journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_max_level(int level)
{
	atomic_store(&max_level, level);
}

int log_get_max_level(void)
{
	return atomic_load(&max_level);
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
{
	char buf[2048];
	size_t n;
	va_list ap;

	if (level > atomic_load(&max_level))
		return error;
	pthread_once(&journal_once, detect_journal);

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = strlen(buf);
	if (error < 0 && n < sizeof(buf) - 2)
		snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(-error));

	/* One fprintf per message keeps lines whole across threads (stdio locks the stream). */
	if (under_journal)
		fprintf(stderr, "<%d>%s\n", level, buf);
	else if (atomic_load(&max_level) >= LOG_DEBUG)
		fprintf(stderr, "mvmfs: %s (%s:%d)\n", buf, file, line);
	else
		fprintf(stderr, "mvmfs: %s\n", buf);
	return error;
}
