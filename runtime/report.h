/* SPDX-License-Identifier: MIT */
/*
 * runtime/report.h: health reports to the management API (docs/report.md).
 *
 * The reporter is a queue keyed by object (a VM) and one thread with its own curl handles (up
 * to `parallel` requests in flight, never two for one object, so they arrive in order). An
 * enqueue only marks the object dirty: O(1) under a short lock, never blocking on the network,
 * so a slow, down or failing API cannot hold up the control tree or the supervisor. The thread
 * builds the newest document of the object when it is about to send it (coalescing: however
 * many changes happened while the API was slow, one document with the latest values goes out),
 * skips change reports whose reportable content did not change, retries failures with jittered
 * exponential back-off, and re-sends every object every interval.
 * Document format: docs/report.schema.json (built by report-doc.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct reporter;

struct report_ops {
	/* Build the document of obj (reporter thread, no reporter lock held): malloc'd JSON in
	 * *ret_doc and a hash of its reportable content in *ret_hash (same hash: nothing to
	 * report). final: the object is gone, this is its last document. A negative return drops
	 * the report. */
	int (*build)(void *ud, void *obj, bool final, uint64_t seq, char **ret_doc,
		     uint64_t *ret_hash);
	void *(*ref)(void *obj);
	void (*unref)(void *obj);
	/* Every interval (and once at start): report_enqueue(r, obj, REPORT_FORCE) each object. */
	void (*each)(void *ud, struct reporter *r);
};

struct report_config {
	const char *url;
	const char *token_file;	     /* bearer token, re-read when the file changes; or NULL */
	const char *ca_file;	     /* NULL: the system CA store */
	unsigned interval_ms;	     /* periodic reports, default 30000 */
	unsigned connect_timeout_ms; /* default 2000 */
	unsigned timeout_ms;	     /* whole request, default 5000 */
	unsigned backoff_min_ms;     /* default 250 */
	unsigned backoff_max_ms;     /* default 10000 */
	unsigned max_objects;	     /* queue bound, default 8192 */
	unsigned parallel; /* requests in flight at once (one per VM), default 8, max 256 */
};

struct report_stats {
	uint64_t sent;	    /* 2xx */
	uint64_t failed;    /* attempts retried: transport error, timeout, 408, 429, 5xx */
	uint64_t rejected;  /* other answers: dropped */
	uint64_t coalesced; /* enqueues folded into a queued report */
	uint64_t dropped;   /* queue full */
	uint64_t skipped;   /* change reports with nothing new */
	unsigned queued;    /* objects waiting */
	unsigned objects;   /* objects known */
};

enum {
	REPORT_FORCE = 1 << 0, /* send even if nothing changed (periodic) */
	REPORT_FINAL = 1 << 1, /* the object is gone: last report, then forget it */
};

int report_new(const struct report_config *cfg, const struct report_ops *ops, void *ud,
	       struct reporter **ret, struct err *err);
int report_start(struct reporter *r);
/* Any thread, O(1), never blocks on I/O. */
void report_enqueue(struct reporter *r, void *obj, unsigned flags);
void report_get_stats(struct reporter *r, struct report_stats *ret);
/* Wait up to timeout_ms for the queue to empty: 0, -ETIMEDOUT, or -ESRCH when not running. */
int report_drain(struct reporter *r, unsigned timeout_ms);
/* Stop the thread (requests in flight are abandoned); enqueues still work but send nothing. */
void report_stop(struct reporter *r);
/* Stop, and drop what is queued. */
struct reporter *report_free(struct reporter *r);

/* ---- the VM document (report-doc.c) ---- */

#define REPORT_CHECKS_MAX 8
struct report_check {
	char name[16];
	char status[32];
	char since[40]; /* RFC 3339, or "" */
	char detail[256];
};
struct report_doc {
	const char *name, *node, *state; /* state: a vm_state word or "destroyed" */
	char state_since[40];
	char verdict[16];
	struct report_check checks[REPORT_CHECKS_MAX];
	unsigned n_checks;
	const char *ip;		  /* "" none */
	const char *image;	  /* reference as written, "" none */
	const char *image_digest; /* "" none */
	const char *error;	  /* "" none */
	int pid;		  /* 0 none */
	uint64_t boots, stops, failures;
	uint64_t seq;
	char time[40];
};
/* Pure: the verdict and checks of a health file's text into d. -EINVAL when malformed. */
int report_parse_health(const char *text, struct report_doc *d);
/* Pure: the JSON document, and the hash of what a change report compares (not seq, time, the
 * "since" times or the agent's heartbeat age). */
int report_doc_encode(const struct report_doc *d, char **ret, uint64_t *ret_hash);

struct runtime;
struct runtime_config;
struct vm;
struct metrics_node;
/* Pure: the reporter's settings from the daemon's (strings borrowed from cfg). */
void rt_report_config(const struct runtime_config *cfg, struct report_config *ret);
/* Runtime glue, rt->report: start (no-op without cfg.report_url); stop the thread at shutdown
 * (best-effort drain of 1 s first); free once no thread can notify any more. */
struct rt_report {
	struct runtime *rt;
	struct reporter *rep;
	char node[256];
};
int rt_report_start(struct runtime *rt, struct err *err);
void rt_report_stop(struct runtime *rt);
void rt_report_free(struct runtime *rt);
/* A VM attribute changed / the VM was destroyed (its last report says "destroyed"); in vm.c,
 * beside vm_notify, which calls the first. */
void rt_report_notify(struct runtime *rt, struct vm *vm, int attr);
void rt_report_destroyed(struct runtime *rt, struct vm *vm);
void report_fill_metrics(struct runtime *rt, struct metrics_node *node);
