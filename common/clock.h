/* SPDX-License-Identifier: MIT */
/* common/clock.h: absolute timeouts for pthread_cond_timedwait, pthread_timedjoin_np and the like;
 * RFC 3339 timestamps. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The time ms milliseconds from now on clock (the clock the waiter's condattr uses). */
static inline struct timespec clock_after_ms(clockid_t clock, uint64_t ms)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Format t as "2026-11-29T15:00:00Z" (RFC 3339, UTC) into buf. */
static inline void rfc3339_utc(time_t t, char *buf, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
