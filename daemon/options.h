/* SPDX-License-Identifier: MIT */
/* Command line and --config FILE (same keys) for the mvmfs daemon. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "runtime.h"

struct daemon_options {
	struct runtime_config rt;
	const char *mountpoint;
	int log_level;
	unsigned max_threads;
	/* limits on what openers of the mount hold (struct fs_limits; 0 = the default) */
	unsigned max_handles, root_handles, max_handles_per_uid;
	uint64_t max_buffer_per_uid, max_buffer_others;
	bool fuse_debug;
	bool show_help, show_version;
	/* storage for --insecure-registry (NULL-terminated, rt.insecure_registries points here) */
	const char **insecure;
	unsigned n_insecure;
	/* storage for --verify-key (NULL-terminated, rt.verify_keys points here) */
	const char **verify_keys;
	unsigned n_verify_keys;
	/* strings copied from a config file, freed by daemon_options_done() */
	char **owned;
	unsigned n_owned;
};

/* Parse argv (and the --config FILE it names; the command line wins). Fills defaults; resolves
 * --firecracker/--jailer from PATH and --kernel/--initrd under the state dir when absent.
 * Returns 0, or a negative errno with a message in err. */
int daemon_options_parse(int argc, char **argv, struct daemon_options *o, struct err *err);
/* Apply the "key = value" lines of a config file already in memory (data is modified; len is
 * its length, data[len] == '\0'); path only names it in messages. Exposed for the fuzz target. */
int daemon_config_parse(struct daemon_options *o, char *data, size_t len, const char *path,
			struct err *err);
void daemon_options_done(struct daemon_options *o);
void daemon_options_help(const char *prog);
