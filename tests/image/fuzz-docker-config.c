/* SPDX-License-Identifier: MIT */
/* Small config and answer parsers: Docker config.json, a credential helper's answer, the token
 * endpoint's JSON, AWS INI. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const regs[] = {"docker.io", "127.0.0.1:5000", "[::1]:5000"};
	struct img_creds c;
	struct err err;
	char tok[256], v[64];

	for (size_t i = 0; i < ELEMENTSOF(regs); i++)
		if (img_auth_parse_docker_config((const char *)data, size, regs[i], &c, &err) == 0)
			if ((!c.user[0] && !c.identity_token[0] && !c.helper[0]) ||
			    (c.helper[0] && !img_cred_helper_name_ok(c.helper)) ||
			    strlen(c.user) >= sizeof(c.user) || strlen(c.pass) >= sizeof(c.pass))
				__builtin_trap();
	if (img_auth_parse_helper_output((const char *)data, size, &c, &err) == 0)
		if ((!c.user[0] && !c.identity_token[0]) ||
		    (c.identity_token[0] && (c.user[0] || c.pass[0])))
			__builtin_trap();
	if (img_auth_parse_token((const char *)data, size, tok, sizeof(tok)) == 0)
		if (!tok[0] || strchr(tok, ' '))
			__builtin_trap();
	if (img_ini_get((const char *)data, size, "default", "region", v, sizeof(v)) == 0)
		if (strlen(v) >= sizeof(v))
			__builtin_trap();
	return 0;
}
