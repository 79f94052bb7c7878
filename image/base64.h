/* SPDX-License-Identifier: MIT */
/* image/base64.h: strict base64 decoding shared by cosign.c and auth.c. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Strict standard base64 into buf; the decoded length, or -EINVAL (bad or non-canonical input,
 * or more than size bytes). */
ssize_t img_base64_decode(const char *s, size_t n, unsigned char *buf, size_t size);
