/* SPDX-License-Identifier: MIT */
/* A caller-owned error: a negative errno plus a human message, no heap. */
#pragma once

#include "macro.h"

#define ERR_MSG_MAX 512

struct err {
	int code;	       /* negative errno, 0 when unset */
	char msg[ERR_MSG_MAX]; /* NUL-terminated, truncated, single line */
};

/* Fill err (may be NULL) and return code (a negative errno). Newlines become spaces. */
int err_set(struct err *err, int code, const char *fmt, ...) _printf_(3, 4);
/* Prefix an existing message with context ("starting VM: " + msg); returns err->code. */
int err_prefix(struct err *err, const char *fmt, ...) _printf_(2, 3);
void err_clear(struct err *err);
