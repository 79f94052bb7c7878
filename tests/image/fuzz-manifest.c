/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, const char *ct)
{
	static const struct img_platform plat = {.os = "linux", .arch = "amd64"};
	struct img_manifest m = {};
	struct img_descriptor pick;
	struct err err;
	int r = img_manifest_decode((const char *)data, size, ct, &plat, &m, &pick, &err);

	if (r == IMG_DECODED_MANIFEST) {
		if (!img_digest_is_valid(m.config.digest) || m.n_layers > IMG_MAX_LAYERS)
			__builtin_trap();
		for (size_t i = 0; i < m.n_layers; i++)
			if (!img_digest_is_valid(m.layers[i].digest) ||
			    !img_layer_media_type_ok(m.layers[i].media_type))
				__builtin_trap();
	} else if (r == IMG_DECODED_INDEX) {
		if (!img_digest_is_valid(pick.digest))
			__builtin_trap();
	} else if (r >= 0) {
		__builtin_trap();
	}
	img_manifest_done(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size, NULL);
	check(data, size, IMG_MT_OCI_INDEX);
	check(data, size, IMG_MT_DOCKER_V2 "; charset=utf-8");
	return 0;
}
