/* SPDX-License-Identifier: MIT */
/*
 * The rules of volume.h that need no store: names, paths, sizes and the volume.json codec.
 * Pure (no I/O), so fs/'s test double of the runtime builds them too; fuzzed
 * (tests/volume/fuzz-volume.c).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "parse.h"
#include "volume.h"

bool volume_name_is_valid(const char *name)
{
	size_t n = 0;

	if (!name)
		return false;
	for (; name[n]; n++) {
		char c = name[n];

		if (n >= VOLUME_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return n > 0;
}

static bool under(const char *path, const char *top)
{
	size_t n = strlen(top);

	return strncmp(path, top, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int volume_path_check(const char *path, const char **ret_why)
{
	const char *why = NULL, *comp;
	size_t len;

	if (!path || path[0] != '/')
		why = "not an absolute path";
	else if ((len = strlen(path)) > VOLUME_PATH_MAX)
		why = "too long";
	else if (len == 1)
		why = "the container's root";
	else if (path[len - 1] == '/')
		why = "trailing '/'";
	else if (under(path, "/proc") || under(path, "/sys") || under(path, "/dev"))
		why = "inside /proc, /sys or /dev";
	for (comp = path; !why && *comp; comp++) {
		const char *end;
		size_t clen;

		if ((unsigned char)*comp < 0x20 || (unsigned char)*comp > 0x7e) {
			why = "not printable ASCII";
			break;
		}
		if (*comp != '/')
			continue;
		end = strchr(comp + 1, '/');
		clen = end ? (size_t)(end - comp - 1) : strlen(comp + 1);
		if (clen == 0)
			why = "empty component";
		else if ((clen == 1 && comp[1] == '.') ||
			 (clen == 2 && comp[1] == '.' && comp[2] == '.'))
			why = "'.' or '..' component";
		else if (clen > 255)
			why = "component over 255 bytes";
	}
	if (ret_why)
		*ret_why = why;
	return why ? -EINVAL : 0;
}

bool volume_paths_overlap(const char *a, const char *b)
{
	return under(a, b) || under(b, a);
}

int volume_size_parse(const char *s, uint64_t *ret, const char **ret_why)
{
	uint64_t v;
	int r;

	r = parse_size(s, &v);
	if (r < 0) {
		if (ret_why)
			*ret_why = r == -ERANGE
					   ? "too large"
					   : "not a size (bytes, or a number with K, M, G or T)";
		return -EINVAL;
	}
	if (v > VOLUME_SIZE_MAX) {
		if (ret_why)
			*ret_why = "over 16T";
		return -EINVAL;
	}
	v = (v + 4095) / 4096 * 4096;
	if (v < VOLUME_SIZE_MIN) {
		if (ret_why)
			*ret_why = "under 16M";
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

int volume_name_from_path(const char *path, char ret[VOLUME_NAME_MAX + 1])
{
	size_t n = 0;

	if (volume_path_check(path, NULL) < 0)
		return -EINVAL;
	for (const char *p = path + 1; *p && n < VOLUME_NAME_MAX; p++) {
		char c = *p;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			c = '-';
		ret[n++] = c;
	}
	ret[n] = '\0';
	return 0;
}

int volume_config_decode(const char *data, size_t len, struct volume *ret, struct err *err)
{
	json_t *o = NULL, *path, *size, *fresh, *growing;
	const char *why = NULL;
	struct volume v = {};
	int r = -EINVAL;

	if (len > VOLUME_CONFIG_MAX)
		return err_set(err, -EFBIG, "volume config over %d bytes", VOLUME_CONFIG_MAX);
	o = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(o)) {
		err_set(err, -EINVAL, "volume config is not a JSON object");
		goto out;
	}
	path = json_object_get(o, "path");
	size = json_object_get(o, "size");
	fresh = json_object_get(o, "fresh");
	growing = json_object_get(o, "growing");
	if (json_object_size(o) != 3u + (growing ? 1u : 0u) || !json_is_string(path) ||
	    !json_is_integer(size) || !json_is_boolean(fresh) ||
	    (growing && !json_is_boolean(growing))) {
		err_set(err, -EINVAL, "volume config: unknown, missing or mistyped keys");
		goto out;
	}
	if (json_string_length(path) > VOLUME_PATH_MAX ||
	    strlen(json_string_value(path)) != json_string_length(path)) {
		err_set(err, -EINVAL, "volume config: bad path");
		goto out;
	}
	strcpy(v.path, json_string_value(path));
	if (v.path[0] && volume_path_check(v.path, &why) < 0) {
		err_set(err, -EINVAL, "volume config: path %s", why);
		goto out;
	}
	if (json_integer_value(size) < (json_int_t)VOLUME_SIZE_MIN ||
	    (uint64_t)json_integer_value(size) > VOLUME_SIZE_MAX ||
	    json_integer_value(size) % 4096 != 0) {
		err_set(err, -EINVAL, "volume config: size out of bounds");
		goto out;
	}
	v.size = (uint64_t)json_integer_value(size);
	v.fresh = json_is_true(fresh);
	v.growing = growing && json_is_true(growing);
	*ret = v;
	r = 0;
out:
	json_decref(o);
	return r;
}

int volume_config_encode(const struct volume *v, char **ret)
{
	json_t *o = json_pack("{s:s, s:I, s:b, s:b}", "path", v->path, "size", (json_int_t)v->size,
			      "fresh", v->fresh, "growing", v->growing);
	char *s;

	if (!o)
		return -ENOMEM;
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}
