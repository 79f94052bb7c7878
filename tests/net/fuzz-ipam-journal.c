/* SPDX-License-Identifier: MIT */
/* Fuzz: the local allocator's journal (<state_dir>/ipam/leases) as found on disk after a crash
 * or tampering: loading it must fail cleanly or yield a consistent allocator. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "ip6.h"
#include "ipam-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dir[64];
	struct ipam_local *l = NULL;
	struct in6_addr p, a, b;
	char path[128];
	unsigned len;
	int r;

	if (!dir[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

		(void)snprintf(dir, sizeof(dir), "%s/fuzz-ipam-journal-%d", base, (int)getpid());
	}
	(void)rm_rf(dir);
	if (ipam_local_new(dir, &l, NULL) < 0)
		abort();
	(void)snprintf(path, sizeof(path), "%s/ipam/leases", dir);
	if (write_file_atomic(path, data, size, 0600) < 0)
		abort();
	if (ip6_prefix_parse("2001:db8::100/120", &p, &len) < 0)
		abort();
	r = ipam_local_assign(l, &p, len, "fuzz-new", &a, NULL);
	if (r == 0) {
		/* Stable, and a second name never gets the same address. */
		if (ipam_local_assign(l, &p, len, "fuzz-new", &b, NULL) < 0 ||
		    memcmp(&a, &b, sizeof(a)) != 0)
			__builtin_trap();
		r = ipam_local_assign(l, &p, len, "fuzz-other", &b, NULL);
		if (r == 0 && memcmp(&a, &b, sizeof(a)) == 0)
			__builtin_trap();
		if (ipam_local_release(l, "fuzz-new", NULL) < 0)
			__builtin_trap();
	} else if (r != -EINVAL && r != -ENOSPC && r != -EFBIG) {
		__builtin_trap();
	}
	ipam_local_free(l);
	(void)rm_rf(dir);
	return 0;
}
