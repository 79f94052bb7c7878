/* SPDX-License-Identifier: MIT */
/* Test double of runtime/runtime.h (and of the VM part of runtime/volume.h: volumes are records
 * only, no disks) for the fs tests: same API, controllable behaviour. */
#pragma once

#include <stddef.h>

struct runtime;

/*
 * One control command per call; a short answer goes to reply ("ok", a value, or "error ...").
 *   mode auto|manual        transitions complete after `delay` ms, or only on complete/fail
 *   delay MS                transition duration in auto mode (default 100)
 *   complete NAME           finish NAME's transition successfully
 *   fail NAME MESSAGE...    finish NAME's transition as failed (state failed, error set, EIO)
 *   failnext                the next accepted transition fails in auto mode
 *   health NAME WORD|-      override (or clear) NAME's health verdict and notify
 *   createfail ERRNO        the next mkdir completes with -ERRNO (0 clears)
 *   volumefail ERRNO        the next mkdir of a volume fails with -ERRNO (0 clears)
 *   createdelay MS          how long a define takes (default 20)
 *   maxvms N                limit of defined VMs (default 4096)
 *   busy NAME               "1" while a transition of NAME is in flight, else "0"
 *   state NAME              NAME's state word
 *   logsize NAME BYTES      NAME's log renders BYTES bytes (0: one line; at most 64 KiB, the
 *                           real runtime's log tail)
 */
void fake_runtime_control(struct runtime *rt, const char *line, char *reply, size_t size);
