/* SPDX-License-Identifier: MIT */
/*
 * Helpers the tests that talk to a real agent (test mode, Firecracker, QEMU) share.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "test.h"

/* Wait until the agent's log ring contains needle, looking every poll_ms; prints the log on
 * the last look when it does not. */
static inline bool log_has_poll(struct agent *a, const char *needle, unsigned timeout_ms,
				unsigned poll_ms)
{
	uint64_t end = agent_now_ms() + timeout_ms;

	do {
		char *log = NULL;
		bool found;

		ASSERT_OK(agent_log_copy(a, &log, NULL));
		found = strstr(log, needle) != NULL;
		if (!found && agent_now_ms() + poll_ms >= end)
			printf("# log:\n%s\n", log);
		free(log);
		if (found)
			return true;
		usleep(poll_ms * 1000);
	} while (agent_now_ms() < end);
	return false;
}

/* log_has_poll() looking every 50 ms. */
static inline bool log_has(struct agent *a, const char *needle, unsigned timeout_ms)
{
	return log_has_poll(a, needle, timeout_ms, 50);
}
