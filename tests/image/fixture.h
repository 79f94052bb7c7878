/* SPDX-License-Identifier: MIT */
/*
 * The registry fixture (registry-fixture.py: docker-registry instances, or an S3 server) as
 * the registry, S3 and store tests use it: start it under <tmp>/fx, read the values it writes
 * to its env file (ports, user, paths), stop it.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

static char fx_dir[256];

/* KEY's value in dir/env (KEY=value lines, as the fixtures write them); fails the case when
 * absent. The result stays valid for the next seven calls. */
static inline const char *fx_env_in(const char *dir, const char *key)
{
	static char val[8][512];
	static int slot;
	char path[1024], line[1024];
	FILE *f;
	char *v = val[slot++ % 8];

	snprintf(path, sizeof(path), "%s/env", dir);
	f = fopen(path, "re");
	if (!f)
		TEST_FAIL("fixture env %s missing", path);
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(key);
		if (strncmp(line, key, n) == 0 && line[n] == '=') {
			snprintf(v, 512, "%.511s", line + n + 1);
			v[strcspn(v, "\n")] = '\0';
			fclose(f);
			return v;
		}
	}
	fclose(f);
	TEST_FAIL("fixture has no %s", key);
}

/* The registry fixture's value of key (in fx_dir/env). */
static inline const char *fx(const char *key)
{
	return fx_env_in(fx_dir, key);
}

/*
 * Start `registry-fixture.py verb <tmp>/fx args` (src: the source tree). 0 when it is up;
 * otherwise prints the TAP plan and returns main()'s exit status: 77 when the fixture says it
 * cannot run here (what_skip names what is missing), 1 when it failed (what names it).
 */
static inline int fx_up(const char *src, const char *tmp, const char *verb, const char *args,
			const char *what, const char *what_skip)
{
	char cmd[2048];
	int st;

	snprintf(fx_dir, sizeof(fx_dir), "%s/fx", tmp);
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/image/registry-fixture.py %s %s%s%s >&2", src,
		 verb, fx_dir, args[0] ? " " : "", args);
	st = system(cmd);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		printf("1..0 # SKIP %s\n", what_skip);
		return 77;
	}
	printf("1..0\n# %s failed to start\n", what);
	return 1;
}

/* Stop what fx_up() started. */
static inline void fx_down(const char *src)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "python3 %s/tests/image/registry-fixture.py down %s", src,
		 fx_dir);
	(void)system(cmd);
}
