/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[IMG_REF_MAX + 16], buf[IMG_REF_MAX + 64];
	struct img_ref ref, again;
	struct err err;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (img_ref_parse(s, &ref, &err) < 0)
		return 0;
	/* Invariant: the canonical text parses back to the same reference. */
	if (img_ref_format(&ref, buf, sizeof(buf)) < 0 || img_ref_parse(buf, &again, &err) < 0)
		__builtin_trap();
	if (strcmp(ref.registry, again.registry) || strcmp(ref.repository, again.repository) ||
	    strcmp(ref.tag, again.tag) || strcmp(ref.digest, again.digest) ||
	    ref.is_s3 != again.is_s3 || strcmp(ref.s3_bucket, again.s3_bucket) ||
	    strcmp(ref.s3_key, again.s3_key))
		__builtin_trap();
	if (!ref.is_s3 && !ref.tag[0] && !img_digest_is_valid(ref.digest))
		__builtin_trap();
	return 0;
}
