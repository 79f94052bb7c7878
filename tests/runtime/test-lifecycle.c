/* SPDX-License-Identifier: MIT */
/* The lifecycle table: every [state][event] pair, the synchronous verdicts, and whole flows. */
#include <string.h>

#include "internal.h"
#include "test.h"

struct rec {
	int launch, request_stop, arm, kill, cleanup, park, discard;
	enum lc_park park_op;
	int done_verb[8], done_result[8];
	int n_done;
};

static void a_launch(void *ud)
{
	((struct rec *)ud)->launch++;
}
static void a_stop(void *ud)
{
	((struct rec *)ud)->request_stop++;
}
static void a_arm(void *ud)
{
	((struct rec *)ud)->arm++;
}
static void a_kill(void *ud)
{
	((struct rec *)ud)->kill++;
}
static void a_cleanup(void *ud)
{
	((struct rec *)ud)->cleanup++;
}
static void a_park(void *ud, enum lc_park op)
{
	((struct rec *)ud)->park++;
	((struct rec *)ud)->park_op = op;
}
static void a_discard(void *ud)
{
	((struct rec *)ud)->discard++;
}
static void a_complete(void *ud, int verb, int result)
{
	struct rec *r = ud;
	if (r->n_done < 8) {
		r->done_verb[r->n_done] = verb;
		r->done_result[r->n_done++] = result;
	}
}

static const struct lc_actions acts = {
	.launch = a_launch,
	.request_stop = a_stop,
	.arm_deadline = a_arm,
	.kill = a_kill,
	.cleanup = a_cleanup,
	.complete = a_complete,
	.park = a_park,
	.discard = a_discard,
};

/* Expected outcome of one pair: -1 = event rejected; else the new state and the actions. */
struct expect {
	int state; /* -1: rejected */
	int launch, request_stop, arm, kill, cleanup;
	int park, discard;
};

#define REJ                       \
	{                         \
		-1, 0, 0, 0, 0, 0 \
	}
#define C VM_STATE_CREATED
#define SG VM_STATE_STARTING
#define R VM_STATE_RUNNING
#define SP VM_STATE_STOPPING
#define S VM_STATE_STOPPED
#define F VM_STATE_FAILED
#define P VM_STATE_PAUSED
#define SI VM_STATE_SUSPENDING
#define SD VM_STATE_SUSPENDED
/* pause/resume/suspend and the park job's answers where they mean nothing */
#define NO_PARK                                                                                  \
	[LC_EV_PAUSE] = REJ, [LC_EV_RESUME] = REJ, [LC_EV_SUSPEND] = REJ, [LC_EV_PARK_OK] = REJ, \
	[LC_EV_PARK_FAIL] = REJ

/* Written independently of lifecycle.c, from docs/contract.md ("States and verbs"). */
static const struct expect table[_VM_STATE_MAX][_LC_EV_MAX] =
	{
		[C] =
			{
				[LC_EV_START] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_STOP] = {C, 0, 0, 0, 0, 0},
				[LC_EV_KILL] = {C, 0, 0, 0, 0, 0},
				[LC_EV_RESTART] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = REJ,
				[LC_EV_DEADLINE] = REJ,
				[LC_EV_CLEANUP_DONE] = REJ,
				NO_PARK,
			},
		[SG] =
			{
				[LC_EV_START] = REJ,
				[LC_EV_STOP] = {SG, 0, 0, 0, 0, 0},
				[LC_EV_KILL] = {SG, 0, 0, 0, 1, 0},
				[LC_EV_RESTART] = REJ,
				[LC_EV_LAUNCH_OK] = {R, 0, 0, 0, 0, 0},
				[LC_EV_LAUNCH_FAIL] = {F, 0, 0, 0, 0, 0},
				[LC_EV_EXIT] = REJ,
				[LC_EV_DEADLINE] = REJ,
				[LC_EV_CLEANUP_DONE] = REJ,
				NO_PARK,
			},
		[R] =
			{
				[LC_EV_START] = {R, 0, 0, 0, 0, 0},
				[LC_EV_STOP] = {SP, 0, 1, 1, 0, 0},
				[LC_EV_KILL] = {SP, 0, 0, 0, 1, 0},
				[LC_EV_RESTART] = {SP, 0, 1, 1, 0, 0},
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = {R, 0, 0, 0, 0, 1},
				[LC_EV_DEADLINE] = REJ,
				/* exit_clean false in the base state: a VMM that ended on its own
				   failed. */
				[LC_EV_CLEANUP_DONE] = {F, 0, 0, 0, 0, 0},
				[LC_EV_PAUSE] = {R, 0, 0, 0, 0, 0, 1, 0},
				[LC_EV_RESUME] = {R, 0, 0, 0, 0, 0},
				[LC_EV_SUSPEND] = {SI, 0, 0, 0, 0, 0, 1, 0},
				/* no park job in flight in the base state */
				[LC_EV_PARK_OK] = REJ,
				[LC_EV_PARK_FAIL] = REJ,
			},
		[SP] =
			{
				[LC_EV_START] = REJ,
				[LC_EV_STOP] = REJ,
				/* kill escalates a stop that hangs */
				[LC_EV_KILL] = {SP, 0, 0, 0, 1, 0},
				[LC_EV_RESTART] = REJ,
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = {SP, 0, 0, 0, 0, 1},
				[LC_EV_DEADLINE] = {SP, 0, 0, 0, 1, 0},
				[LC_EV_CLEANUP_DONE] = {S, 0, 0, 0, 0, 0},
				NO_PARK,
			},
		[S] =
			{
				[LC_EV_START] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_STOP] = {S, 0, 0, 0, 0, 0},
				[LC_EV_KILL] = {S, 0, 0, 0, 0, 0},
				[LC_EV_RESTART] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = REJ,
				[LC_EV_DEADLINE] = REJ,
				[LC_EV_CLEANUP_DONE] = REJ,
				NO_PARK,
			},
		[F] =
			{
				[LC_EV_START] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_STOP] = {F, 0, 0, 0, 0, 0},
				[LC_EV_KILL] = {F, 0, 0, 0, 0, 0},
				[LC_EV_RESTART] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = REJ,
				[LC_EV_DEADLINE] = REJ,
				[LC_EV_CLEANUP_DONE] = REJ,
				NO_PARK,
			},
		[P] =
			{
				[LC_EV_START] = {P, 0, 0, 0, 0, 0, 1, 0}, /* resumes */
				[LC_EV_STOP] = {SP, 0, 1, 1, 0, 0},
				[LC_EV_KILL] = {SP, 0, 0, 0, 1, 0},
				[LC_EV_RESTART] = {SP, 0, 1, 1, 0, 0},
				[LC_EV_PAUSE] = {P, 0, 0, 0, 0, 0},
				[LC_EV_RESUME] = {P, 0, 0, 0, 0, 0, 1, 0},
				[LC_EV_SUSPEND] = {SI, 0, 0, 0, 0, 0, 1, 0},
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = {P, 0, 0, 0, 0, 1},
				[LC_EV_DEADLINE] = REJ,
				[LC_EV_CLEANUP_DONE] = {F, 0, 0, 0, 0, 0},
				[LC_EV_PARK_OK] = REJ,
				[LC_EV_PARK_FAIL] = REJ,
			},
		[SI] =
			{
				[LC_EV_START] = REJ,
				[LC_EV_STOP] = REJ,
				[LC_EV_KILL] = REJ,
				[LC_EV_RESTART] = REJ,
				[LC_EV_PAUSE] = REJ,
				[LC_EV_RESUME] = REJ,
				[LC_EV_SUSPEND] = REJ,
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = {SI, 0, 0, 0, 0, 1},
				[LC_EV_DEADLINE] = REJ,
				/* nothing saved in the base state: the VMM died mid-suspend */
				[LC_EV_CLEANUP_DONE] = {F, 0, 0, 0, 0, 0},
				[LC_EV_PARK_OK] = REJ,
				[LC_EV_PARK_FAIL] = REJ,
			},
		[SD] =
			{
				[LC_EV_START] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_STOP] = {S, 0, 0, 0, 0, 0, 0, 1},
				[LC_EV_KILL] = {S, 0, 0, 0, 0, 0, 0, 1},
				[LC_EV_RESTART] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_PAUSE] = {SD, 0, 0, 0, 0, 0},
				[LC_EV_RESUME] = {SG, 1, 0, 0, 0, 0},
				[LC_EV_SUSPEND] = {SD, 0, 0, 0, 0, 0},
				[LC_EV_LAUNCH_OK] = REJ,
				[LC_EV_LAUNCH_FAIL] = REJ,
				[LC_EV_EXIT] = REJ,
				[LC_EV_DEADLINE] = REJ,
				[LC_EV_CLEANUP_DONE] = REJ,
				[LC_EV_PARK_OK] = REJ,
				[LC_EV_PARK_FAIL] = REJ,
			},
};

static void test_every_pair(void)
{
	for (int st = 0; st < _VM_STATE_MAX; st++) {
		for (int ev = 0; ev < _LC_EV_MAX; ev++) {
			struct lc_vm s = {.state = st};
			struct rec r = {};
			const struct expect *e = &table[st][ev];
			int k = lifecycle_event(&s, ev, &acts, &r);

			if (e->state < 0) {
				if (k != -EINVAL)
					TEST_FAIL("%s + %s: expected rejection, got %d",
						  vm_state_to_string(st), lc_event_to_string(ev),
						  k);
				if (s.state != (enum vm_state)st || r.launch || r.kill ||
				    r.cleanup || r.n_done || r.park || r.discard)
					TEST_FAIL("%s + %s: a rejected event changed something",
						  vm_state_to_string(st), lc_event_to_string(ev));
				continue;
			}
			if (k < 0 || (int)s.state != e->state || r.launch != e->launch ||
			    r.request_stop != e->request_stop || r.arm != e->arm ||
			    r.kill != e->kill || r.cleanup != e->cleanup || r.park != e->park ||
			    r.discard != e->discard)
				TEST_FAIL("%s + %s: got state %s launch %d stop %d arm %d kill %d "
					  "cleanup %d park %d discard %d (r=%d)",
					  vm_state_to_string(st), lc_event_to_string(ev),
					  vm_state_to_string(s.state), r.launch, r.request_stop,
					  r.arm, r.kill, r.cleanup, r.park, r.discard, k);
		}
	}
}

static void test_checks(void)
{
	struct lc_vm s = {};

	s.state = VM_STATE_CREATED;
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_START), 0);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_RESTART), 0);
	s.state = VM_STATE_RUNNING;
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_START), 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), 0);
	s.exiting = true;
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), -EBUSY);
	s.exiting = false;
	s.state = VM_STATE_STARTING;
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_START), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_RESTART), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), 0);
	s.pending_stop = true;
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), 0);
	s.state = VM_STATE_STOPPING;
	s.pending_stop = s.pending_kill = false;
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_START), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_RESTART), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), 0); /* escalates a graceful stop */
	s.pending_kill = true;				 /* a kill is already under way */
	for (int v = 0; v < _VM_VERB_MAX; v++)
		ASSERT_EQ(lifecycle_check(&s, v), -EBUSY);
	ASSERT_EQ(lifecycle_check(&s, (enum vm_verb)99), -EINVAL);
}

static bool has_done(const struct rec *r, int verb, int result)
{
	for (int i = 0; i < r->n_done; i++)
		if (r->done_verb[i] == verb && r->done_result[i] == result)
			return true;
	return false;
}

static void test_flows(void)
{
	struct lc_vm s = {.state = VM_STATE_RUNNING};
	struct rec r = {};

	/* A clean exit of its own: stopped. */
	s.exit_clean = true;
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_TRUE(s.exiting);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_START), -EBUSY);
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);

	/* restart: stop, cleanup, then a new launch; the restart writer completes at launch. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_RUNNING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_RESTART, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPING);
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STARTING);
	ASSERT_EQ(r.launch, 1);
	ASSERT_OK(lifecycle_event(&s, LC_EV_LAUNCH_OK, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_RUNNING);
	ASSERT_TRUE(has_done(&r, VM_VERB_RESTART, 0));

	/* stop while starting: the start completes, then a graceful stop follows. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_STARTING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_STOP, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_LAUNCH_OK, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPING);
	ASSERT_EQ(r.request_stop, 1);
	ASSERT_TRUE(has_done(&r, VM_VERB_START, 0));
	ASSERT_OK(lifecycle_event(&s, LC_EV_DEADLINE, &acts, &r));
	ASSERT_EQ(r.kill, 1);
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);
	ASSERT_TRUE(has_done(&r, -1, 0));

	/* kill during a start that then fails: stopped, start writer -EIO, kill writer ok. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_STARTING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_KILL, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_LAUNCH_FAIL, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);
	ASSERT_TRUE(has_done(&r, VM_VERB_START, -EIO));
	ASSERT_TRUE(has_done(&r, -1, 0));

	/* kill while a graceful stop hangs: SIGKILL now, then stopped; every writer gets 0; a
	 * second kill is refused while the first one is under way. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_RUNNING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_STOP, &acts, &r));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), 0);
	ASSERT_OK(lifecycle_event(&s, LC_EV_KILL, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPING);
	ASSERT_EQ(r.kill, 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), -EBUSY);
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);
	ASSERT_EQ(r.launch, 0);
	ASSERT_TRUE(has_done(&r, -1, 0));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_START), 0);

	/* kill during a restart's stop: the restart is called off (its writer fails), the VM
	 * ends stopped and nothing is launched. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_RUNNING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_RESTART, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_KILL, &acts, &r));
	ASSERT_FALSE(s.restart);
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);
	ASSERT_EQ(r.launch, 0);
	ASSERT_TRUE(has_done(&r, VM_VERB_RESTART, -EIO));
	ASSERT_TRUE(has_done(&r, -1, 0));

	/* kill after the VMM already exited (cleanup in flight): nothing to signal. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_RUNNING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_STOP, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), 0);
	ASSERT_OK(lifecycle_event(&s, LC_EV_KILL, &acts, &r));
	ASSERT_EQ(r.kill, 0);
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);

	/* A plain failed launch: failed and every writer gets -EIO. */
	memset(&r, 0, sizeof(r));
	s = (struct lc_vm){.state = VM_STATE_STARTING};
	ASSERT_OK(lifecycle_event(&s, LC_EV_LAUNCH_FAIL, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_FAILED);
	ASSERT_TRUE(has_done(&r, VM_VERB_START, -EIO));
}

/* pause, resume, suspend and the restore, with their writers and the SPEC's no-ops and EINVAL. */
static void test_park_flows(void)
{
	struct lc_vm s = {.state = VM_STATE_RUNNING};
	struct rec r = {};

	/* SPEC: pause/resume/suspend mean nothing on created, stopped, failed: EINVAL. */
	for (int st = VM_STATE_CREATED; st <= VM_STATE_FAILED; st++) {
		struct lc_vm idle = {.state = st};

		if (st == VM_STATE_STARTING || st == VM_STATE_RUNNING || st == VM_STATE_STOPPING)
			continue;
		ASSERT_EQ(lifecycle_check(&idle, VM_VERB_PAUSE), -EINVAL);
		ASSERT_EQ(lifecycle_check(&idle, VM_VERB_RESUME), -EINVAL);
		ASSERT_EQ(lifecycle_check(&idle, VM_VERB_SUSPEND), -EINVAL);
	}
	/* No-ops: resume on running, pause on paused and suspended, suspend on suspended. */
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_RESUME), 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_PAUSE), 0);

	/* pause: the job runs, the writer completes when it succeeded. */
	ASSERT_OK(lifecycle_event(&s, LC_EV_PAUSE, &acts, &r));
	ASSERT_EQ(r.park_op, LC_PARK_PAUSE);
	ASSERT_EQ(s.state, VM_STATE_RUNNING);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), -EBUSY); /* in flight */
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), 0);
	ASSERT_OK(lifecycle_event(&s, LC_EV_PARK_OK, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_PAUSED);
	ASSERT_TRUE(s.vmm_paused);
	ASSERT_TRUE(has_done(&r, VM_VERB_PAUSE, 0));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_PAUSE), 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_RESUME), 0);

	/* a failed resume leaves it paused; its writer gets EIO. */
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_RESUME, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_PARK_FAIL, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_PAUSED);
	ASSERT_TRUE(has_done(&r, VM_VERB_RESUME, -EIO));

	/* suspend of a paused VM: saved, the VMM killed, then suspended once it is cleaned. */
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_SUSPEND, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_SUSPENDING);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_KILL), -EBUSY);
	ASSERT_OK(lifecycle_event(&s, LC_EV_PARK_OK, &acts, &r));
	ASSERT_TRUE(s.saved);
	ASSERT_EQ(r.kill, 1);
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_SUSPENDED);
	ASSERT_TRUE(has_done(&r, VM_VERB_SUSPEND, 0));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_SUSPEND), 1);
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_PAUSE), 1);

	/* resume of a suspended VM restores it; a failed restore keeps the saved state and a
	 * later start tries the restore again (never a cold boot instead). */
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_RESUME, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STARTING);
	ASSERT_TRUE(s.restore);
	ASSERT_OK(lifecycle_event(&s, LC_EV_LAUNCH_FAIL, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_FAILED);
	ASSERT_TRUE(s.saved);
	ASSERT_TRUE(has_done(&r, VM_VERB_RESUME, -EIO));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), 0); /* would discard */
	ASSERT_OK(lifecycle_event(&s, LC_EV_START, &acts, &r));
	ASSERT_TRUE(s.restore);
	ASSERT_OK(lifecycle_event(&s, LC_EV_LAUNCH_OK, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_RUNNING);
	ASSERT_FALSE(s.saved);
	ASSERT_TRUE(has_done(&r, VM_VERB_START, 0));

	/* a suspend that fails leaves a running VM running; one whose VMM dies fails. */
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_SUSPEND, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_PARK_FAIL, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_RUNNING);
	ASSERT_TRUE(has_done(&r, VM_VERB_SUSPEND, -EIO));
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_SUSPEND, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_EXIT, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_PARK_FAIL, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_CLEANUP_DONE, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_FAILED);
	ASSERT_FALSE(s.saved);

	/* stop of a suspended VM discards the saved state; restart boots afresh. */
	s = (struct lc_vm){.state = VM_STATE_SUSPENDED, .saved = true};
	memset(&r, 0, sizeof(r));
	ASSERT_EQ(lifecycle_check(&s, VM_VERB_STOP), 0);
	ASSERT_OK(lifecycle_event(&s, LC_EV_STOP, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STOPPED);
	ASSERT_EQ(r.discard, 1);
	ASSERT_FALSE(s.saved);
	ASSERT_TRUE(has_done(&r, VM_VERB_STOP, 0)); /* its writer is answered */
	s = (struct lc_vm){.state = VM_STATE_SUSPENDED, .saved = true};
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_RESTART, &acts, &r));
	ASSERT_EQ(s.state, VM_STATE_STARTING);
	ASSERT_FALSE(s.restore);
	ASSERT_FALSE(s.saved);

	/* kill while a pause is in flight: the pause writer fails, the VM is killed. */
	s = (struct lc_vm){.state = VM_STATE_RUNNING};
	memset(&r, 0, sizeof(r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_PAUSE, &acts, &r));
	ASSERT_OK(lifecycle_event(&s, LC_EV_KILL, &acts, &r));
	ASSERT_TRUE(has_done(&r, VM_VERB_PAUSE, -EIO));
	ASSERT_EQ(s.state, VM_STATE_STOPPING);
	ASSERT_EQ(s.park, LC_PARK_NONE);
}

static void test_strings(void)
{
	for (int i = 0; i < _VM_STATE_MAX; i++)
		ASSERT_EQ(vm_state_from_string(vm_state_to_string(i)), i);
	for (int i = 0; i < _VM_VERB_MAX; i++)
		ASSERT_EQ(vm_verb_from_string(vm_verb_to_string(i)), i);
	ASSERT_EQ(vm_verb_from_string("Start"), -EINVAL);
	ASSERT_EQ(vm_state_from_string(""), -EINVAL);
}

TEST_MAIN(TEST(test_every_pair), TEST(test_checks), TEST(test_flows), TEST(test_park_flows),
	  TEST(test_strings))
