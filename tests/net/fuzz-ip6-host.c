/* SPDX-License-Identifier: MIT */
/* Fuzz: a database ip_address value (inet text output or a text column) as ipam-pg reads it. */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ip6.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[128], text[INET6_ADDRSTRLEN];
	struct in6_addr a, b;

	why[0] = '\0';
	if (ip6_host_parse((const char *)data, size, &a, why, sizeof(why)) < 0) {
		/* A rejection always says why. */
		if (why[0] == '\0' || !memchr(why, '\0', sizeof(why)))
			__builtin_trap();
		return 0;
	}
	/* Accepted: a usable native IPv6 unicast address whose RFC 5952 text parses back. */
	if (IN6_IS_ADDR_V4MAPPED(&a) || IN6_IS_ADDR_MULTICAST(&a) || IN6_IS_ADDR_UNSPECIFIED(&a))
		__builtin_trap();
	ip6_format(&a, text, sizeof(text));
	if (ip6_host_parse(text, strlen(text), &b, why, sizeof(why)) < 0 ||
	    memcmp(&a, &b, sizeof(a)) != 0)
		__builtin_trap();
	return 0;
}
