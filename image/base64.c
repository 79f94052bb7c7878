/* SPDX-License-Identifier: MIT */
/*
 * Strict standard base64 decoding (RFC 4648 section 4, padding optional, canonical only), for
 * the values registries and config files hand us: cosign signatures, Docker's "auth" field.
 */
#include "base64.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t img_base64_decode(const char *s, size_t n, unsigned char *buf, size_t size)
{
	size_t total = n, out = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (n > 0 && s[n - 1] == '=')
		n--;
	if (n != total && (total % 4 != 0 || total - n > 2))
		return -EINVAL; /* padding only up to a multiple of 4 */
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (out >= size)
				return -EINVAL;
			buf[out++] = (unsigned char)((acc >> bits) & 0xff);
		}
	}
	/* A lone 6-bit group, or leftover bits that are not zero, is not canonical base64. */
	if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
		return -EINVAL;
	return (ssize_t)out;
}
