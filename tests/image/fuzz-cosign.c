/* SPDX-License-Identifier: MIT */
/* Cosign's .sig manifest, the simple-signing payload, base64 and the reference match. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cosign.h"
#include "fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct img_ref ref = {.registry = "127.0.0.1:5000", .repository = "test/app"};
	struct img_sig_list l;
	struct img_sig_claims c;
	struct err err;
	unsigned char buf[IMG_SIG_DER_MAX];
	ssize_t n;

	if (img_sig_manifest_parse((const char *)data, size, &l, &err) == 0) {
		if (l.n + l.n_ignored > IMG_SIG_MAX_LAYERS)
			__builtin_trap();
		for (size_t i = 0; i < l.n; i++)
			if (!img_digest_is_valid(l.sigs[i].payload.digest) ||
			    l.sigs[i].sig_len == 0 || l.sigs[i].sig_len > IMG_SIG_DER_MAX ||
			    l.sigs[i].payload.size == 0 ||
			    l.sigs[i].payload.size > IMG_SIG_PAYLOAD_MAX)
				__builtin_trap();
		img_sig_list_done(&l);
	}
	if (img_sig_payload_parse((const char *)data, size, &c, &err) == 0) {
		if (!img_digest_is_valid(c.digest) || !c.reference[0] ||
		    strlen(c.reference) >= sizeof(c.reference))
			__builtin_trap();
		(void)img_sig_reference_matches(c.reference, &ref);
	}
	n = img_base64_decode((const char *)data, size, buf, sizeof(buf));
	if (n > (ssize_t)sizeof(buf))
		__builtin_trap();
	return 0;
}
