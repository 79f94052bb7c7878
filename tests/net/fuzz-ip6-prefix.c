/* SPDX-License-Identifier: MIT */
/* Fuzz: "PREFIX/LEN" parsing (--ipv6-prefix, the prefix file) and the math on what it accepts. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ip6.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[256], text[IP6_PREFIX_STRLEN];
	struct in6_addr p, q, a, m;
	unsigned len, len2;
	uint8_t rnd[16] = {0};
	uint64_t idx;

	if (size >= sizeof(buf))
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (ip6_prefix_parse(buf, &p, &len) < 0)
		return 0;
	/* Invariants: no host bits, canonical text round-trips. */
	m = p;
	ip6_mask(&m, len);
	if (len > 128 || memcmp(&m, &p, sizeof(p)) != 0)
		__builtin_trap();
	ip6_prefix_format(&p, len, text, sizeof(text));
	if (ip6_prefix_parse(text, &q, &len2) < 0 || len2 != len || memcmp(&p, &q, sizeof(p)) != 0)
		__builtin_trap();
	/* A draw from the input bytes is inside and allocatable, or the pool is empty. */
	memcpy(rnd, data, size < sizeof(rnd) ? size : sizeof(rnd));
	if (ip6_random_in_prefix(&p, len, rnd, &a) == 0) {
		if (!ip6_in_prefix(&a, &p, len) || ip6_is_excluded(&a, &p, len))
			__builtin_trap();
		if (len > 64 &&
		    (ip6_pool_index(&a, &p, len, &idx) < 0 || ip6_pool_nth(&p, len, idx, &q) < 0 ||
		     memcmp(&a, &q, sizeof(a)) != 0))
			__builtin_trap();
	} else if (ip6_pool_size(len) != 0) {
		__builtin_trap();
	}
	return 0;
}
