/* SPDX-License-Identifier: MIT */
/* The health verdict (pure) and the rendered file's shape. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "test.h"

static enum health_verdict v(enum vm_state st, enum check_status vmm, enum check_status agent,
			     enum check_status app, enum check_status net, bool agent_av,
			     bool net_exp)
{
	struct health_input in = {.state = st,
				  .vmm = vmm,
				  .agent = agent,
				  .app = app,
				  .net = net,
				  .agent_available = agent_av,
				  .net_expected = net_exp};
	return health_verdict(&in);
}

static void test_verdict(void)
{
	ASSERT_EQ(v(VM_STATE_FAILED, CHECK_DOWN, 0, 0, 0, true, true), HEALTH_FAILED);
	/* Parked: whatever the checks say (no heartbeats while paused, no VMM when suspended). */
	ASSERT_EQ(v(VM_STATE_PAUSED, CHECK_OK, CHECK_DOWN, CHECK_OK, CHECK_OK, true, true),
		  HEALTH_PAUSED);
	ASSERT_EQ(v(VM_STATE_SUSPENDING, CHECK_OK, CHECK_OK, CHECK_OK, CHECK_OK, true, true),
		  HEALTH_PAUSED);
	ASSERT_EQ(v(VM_STATE_SUSPENDED, CHECK_DOWN, 0, 0, 0, true, true), HEALTH_SUSPENDED);
	ASSERT_STREQ(health_verdict_to_string(HEALTH_PAUSED), "paused");
	ASSERT_STREQ(health_verdict_to_string(HEALTH_SUSPENDED), "suspended");
	ASSERT_EQ(v(VM_STATE_STARTING, CHECK_PENDING, 0, 0, 0, true, true), HEALTH_STARTING);
	ASSERT_EQ(v(VM_STATE_CREATED, CHECK_DOWN, 0, 0, 0, true, true), HEALTH_STOPPED);
	ASSERT_EQ(v(VM_STATE_STOPPED, CHECK_DOWN, 0, 0, 0, true, true), HEALTH_STOPPED);
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_OK, CHECK_OK, CHECK_OK, true, true),
		  HEALTH_HEALTHY);
	/* A slow boot: agent not there yet is starting, not unhealthy. */
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_PENDING, CHECK_UNKNOWN, CHECK_OK, true, true),
		  HEALTH_STARTING);
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_DOWN, CHECK_OK, CHECK_OK, true, true),
		  HEALTH_UNHEALTHY);
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_OK, CHECK_DOWN, CHECK_OK, true, true),
		  HEALTH_UNHEALTHY);
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_DOWN, CHECK_OK, CHECK_OK, CHECK_OK, true, true),
		  HEALTH_UNHEALTHY);
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_OK, CHECK_OK, CHECK_DOWN, true, true),
		  HEALTH_UNHEALTHY);
	/* Network off (tests): its status does not count. */
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_OK, CHECK_OK, CHECK_DOWN, true, false),
		  HEALTH_HEALTHY);
	/* No agent channel: the VMM and the network decide. */
	ASSERT_EQ(
		v(VM_STATE_RUNNING, CHECK_OK, CHECK_UNKNOWN, CHECK_UNKNOWN, CHECK_OK, false, true),
		HEALTH_HEALTHY);
	ASSERT_EQ(v(VM_STATE_RUNNING, CHECK_OK, CHECK_UNKNOWN, CHECK_UNKNOWN, CHECK_PENDING, false,
		    true),
		  HEALTH_STARTING);
	ASSERT_STREQ(health_verdict_to_string(HEALTH_UNHEALTHY), "unhealthy");
}

static void test_render(void)
{
	struct vm_snap s = {};
	char *out = NULL;
	size_t len = 0;

	s.state = VM_STATE_RUNNING;
	s.pid = 42;
	s.hs.vmm_run = VMM_RUN_RUNNING;
	s.state_since.tv_sec = s.hs.vmm_since.tv_sec = s.hs.net_since.tv_sec = 1796050800;
	s.net_expected = false;
	ASSERT_OK(health_render(&s, &out, &len));
	ASSERT_EQ(strlen(out), len);
	ASSERT_TRUE(strncmp(out, "healthy\nvmm: running since 2026-", 32) == 0);
	ASSERT_TRUE(strstr(out, " pid 42\n") != NULL);
	ASSERT_TRUE(strstr(out, "\nagent: unknown since ") != NULL); /* no agent channel */
	ASSERT_TRUE(strstr(out, "\napp: unknown since ") != NULL);
	ASSERT_TRUE(strstr(out, "\nnet: disabled since ") != NULL);
	ASSERT_EQ(out[len - 1], '\n');
	free(out);

	s.state = VM_STATE_STARTING;
	s.pid = 0;
	strcpy(s.hs.image_phase, "pulling");
	s.hs.img_layers_done = 3;
	s.hs.img_layers_total = 5;
	s.hs.img_bytes_done = 40ULL << 20;
	s.hs.img_bytes_total = 100ULL << 20;
	ASSERT_OK(health_render(&s, &out, &len));
	ASSERT_TRUE(strncmp(out, "starting\n", 9) == 0);
	ASSERT_TRUE(strstr(out, "\nimage: pulling 3/5 layers 40MiB/100MiB\n") != NULL);
	free(out);

	s.state = VM_STATE_FAILED;
	ASSERT_OK(health_render(&s, &out, &len));
	ASSERT_TRUE(strncmp(out, "failed\nvmm: down since ", 23) == 0);
	free(out);

	/* The digest run, and with --verify-key the key that verified it (full length). */
	s.state = VM_STATE_RUNNING;
	s.hs.image_phase[0] = '\0';
	memset(s.image_digest, 'a', sizeof(s.image_digest) - 1);
	memcpy(s.image_digest, "sha256:", 7);
	s.image_digest[sizeof(s.image_digest) - 1] = '\0';
	ASSERT_OK(health_render(&s, &out, &len));
	ASSERT_TRUE(strstr(out, "\nimage: ready sha256:aaaa") != NULL);
	ASSERT_TRUE(strstr(out, "signed by") == NULL);
	free(out);
	memcpy(s.image_key, s.image_digest, sizeof(s.image_key));
	s.image_key[7] = 'b';
	ASSERT_OK(health_render(&s, &out, &len));
	{
		char want[256];
		snprintf(want, sizeof(want), "\nimage: ready %s signed by key %s\n", s.image_digest,
			 s.image_key);
		ASSERT_TRUE(strstr(out, want) != NULL);
	}
	free(out);
}

TEST_MAIN(TEST(test_verdict), TEST(test_render))
