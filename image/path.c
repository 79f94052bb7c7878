/* SPDX-License-Identifier: MIT */
/* Layer entry names to safe relative paths, and OCI whiteout names to what they delete. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "build.h"

#define WH_PREFIX ".wh."
#define WH_META ".wh..wh."
#define WH_OPAQUE ".wh..wh..opq"

static int fail(const char **ret_why, int code, const char *why)
{
	if (ret_why)
		*ret_why = why;
	return code;
}

int img_path_map(const char *name, char *ret, size_t size, enum img_path_kind *ret_kind,
		 const char **ret_why)
{
	size_t n = strnlen(name, IMG_PATH_MAX + 1), out = 0, last = 0;
	const char *p = name;
	enum img_path_kind kind = IMG_PATH_NORMAL;

	if (n == 0)
		return fail(ret_why, -EINVAL, "empty path");
	if (n > IMG_PATH_MAX || size < n + 1)
		return fail(ret_why, -ENAMETOOLONG, "path too long");
	if (name[0] == '/')
		return fail(ret_why, -EINVAL, "absolute path");

	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);

		if (len == 0 || (len == 1 && p[0] == '.')) {
			/* "a//b", "./a", "a/./b", "a/": nothing to add */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			return fail(ret_why, -EINVAL, "'..' component");
		} else if (len > NAME_MAX) {
			return fail(ret_why, -ENAMETOOLONG, "path component too long");
		} else {
			last = out;
			if (out > 0)
				ret[out++] = '/';
			memcpy(ret + out, p, len);
			out += len;
		}
		p = *e ? e + 1 : e;
	}
	ret[out] = '\0';
	if (out == 0) {
		*ret_kind = IMG_PATH_ROOT;
		return 0;
	}
	/* Whiteouts are leaves: a ".wh." directory on the way is a malformed layer. */
	for (size_t i = 0; i < last; i++)
		if ((i == 0 || ret[i - 1] == '/') &&
		    strncmp(ret + i, WH_PREFIX, strlen(WH_PREFIX)) == 0)
			return fail(ret_why, -EINVAL, "whiteout name used as a directory");

	/* Whiteouts are decided by the last component only. */
	{
		char *base = ret + last + (last > 0 ? 1 : 0);
		size_t blen = strlen(base);

		if (strcmp(base, WH_OPAQUE) == 0) {
			kind = IMG_PATH_OPAQUE;
			*(last > 0 ? ret + last : ret) = '\0';
		} else if (strncmp(base, WH_META, strlen(WH_META)) == 0) {
			kind = IMG_PATH_SKIP;
		} else if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
			const char *victim = base + strlen(WH_PREFIX);

			if (victim[0] == '\0' || strcmp(victim, ".") == 0 ||
			    strcmp(victim, "..") == 0)
				return fail(ret_why, -EINVAL, "whiteout of nothing");
			memmove(base, victim, blen - strlen(WH_PREFIX) + 1);
			kind = IMG_PATH_WHITEOUT;
		}
	}
	*ret_kind = kind;
	return 0;
}
