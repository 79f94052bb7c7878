/* SPDX-License-Identifier: MIT */
#pragma once

/* A set of strings on tsearch(3): a void * that starts NULL, owns copies of its strings, and is
 * freed with strset_free. Used where a set is built, probed and thrown away in one call. */

#include <errno.h>
#include <search.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline int strset_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* 0 (added or already there) or -ENOMEM. */
static inline int strset_add(void **set, const char *s)
{
	char *k = strdup(s), **slot;

	if (!k)
		return -ENOMEM;
	slot = tsearch(k, set, strset_cmp);
	if (!slot) {
		free(k);
		return -ENOMEM;
	}
	if (*slot != k)
		free(k);
	return 0;
}

static inline bool strset_has(void *const *set, const char *s)
{
	return tfind(s, set, strset_cmp) != NULL;
}

static inline void strset_free(void **set)
{
	tdestroy(*set, free);
	*set = NULL;
}
