/* SPDX-License-Identifier: MIT */
/* runtime/qmp: a minimal QMP client (QEMU Machine Protocol) over a Unix socket, with jansson.
 * Private to the QEMU backend. One connection per call sequence: QEMU serves one QMP client at
 * a time, so callers connect, talk and close. */
#pragma once

#include <jansson.h>

#include "backend.h"
#include "err.h"

struct qmp;

/* Connect, read the greeting, negotiate capabilities, all within timeout_ms (a QEMU that
 * accepts but never answers gives -ETIMEDOUT). The socket is opened without following
 * symlinks (runtime/jail-path.h). -ECONNREFUSED/-ENOENT while QEMU is not listening,
 * -ETIMEDOUT, -EPROTO on a malformed greeting (message in err). */
int qmp_connect(const char *path, int timeout_ms, struct qmp **ret, struct err *err);
void qmp_close(struct qmp *q);
/* Run cmd with args (borrowed, may be NULL), sending and waiting for the reply within
 * timeout_ms in total; *ret gets the "return" value (new reference) when ret is not NULL. A QMP
 * error becomes -EIO with "cmd: <desc>" in err. Events are skipped. */
int qmp_execute(struct qmp *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms,
		struct err *err);

/* getfd: hand QEMU a copy of fd (SCM_RIGHTS) under name (for "fd:NAME" migration URIs). */
int qmp_getfd(struct qmp *q, const char *name, int fd, int timeout_ms, struct err *err);

/* Pure: query-status's return object -> run state. -EINVAL when malformed. Fuzzed. */
int qmp_parse_status(const char *text, size_t len, enum vmm_run_state *ret);
/* Pure: classify one QMP line: 1 greeting, 2 return, 3 error (desc copied), 4 event, -EINVAL. */
int qmp_parse_line(const char *line, size_t len, json_t **ret_value, char *desc, size_t descsz);
