/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend with the real guest agent over vsock, against the fake jailer +
 * Firecracker (tests/fakes): the fake answers the host's "CONNECT <port>" and runs the agent
 * (--test-mode) with the connection as stdin/stdout, reading vm.json from the per-VM initramfs
 * the backend placed in the jail. The host side is runtime/agent.c with the vsock transport.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "backend.h"
#include "fileio.h"
#include "guest-config.h"
#include "guest-test.h"
#include "runtime.h"
#include "test.h"

static bool p_running(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->connected && s->app == AGENT_APP_RUNNING;
}

static bool p_exited(const struct agent_status *s, void *ud)
{
	(void)ud;
	return s->app == AGENT_APP_EXITED && s->shutdown;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	fchmod(fd, mode);
	close(fd);
}

static void test_fc_vsock_agent(void)
{
	const char *src = getenv("MVMFS_SRCDIR"), *agent_bin = getenv("MVMFS_AGENT");
	char T[] = "/tmp/mfa-XXXXXX", fc[512], jailer[512], p[600], knobs[1400];
	char kernel[300], base[300], initrd[300], rootfs[300], chroot[300], console[300], buf[256];
	struct runtime_config cfg = {0};
	struct guest_config gc = {
		.name = "fca1",
		.prefix_len = 64,
		.image_config_json = "{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":["
				     "\"trap 'echo fc-term; exit 5' TERM; echo hi-from-fc $MARK; "
				     "while :; do sleep 0.05; done\"],\"env\":[\"MARK=vsock\"]}",
		.transport = AGENT_TRANSPORT_VSOCK,
		.heartbeat_ms = 200,
	};
	struct vmm_launch l = {0};
	struct agent_config ac = {0};
	struct agent *a = NULL;
	struct agent_status s;
	struct vmm_handle h;
	struct err err = {};
	void *priv = NULL;

	if (geteuid() != 0)
		test_skip("needs root (the fake jailer switches uid, chowns, makes cgroups)");
	if (!src || !agent_bin || access(agent_bin, X_OK) < 0)
		test_skip("MVMFS_SRCDIR or MVMFS_AGENT not set");
	snprintf(fc, sizeof(fc), "%s/tests/fakes/firecracker", src);
	snprintf(jailer, sizeof(jailer), "%s/tests/fakes/jailer", src);
	if (access(fc, X_OK) < 0 || access(jailer, X_OK) < 0 ||
	    access("/usr/bin/python3", X_OK) < 0)
		test_skip("the fake firecracker/jailer (python3) are not available");
	ASSERT_TRUE(mkdtemp(T) != NULL);
	chmod(T, 0755);
	snprintf(chroot, sizeof(chroot), "%s/jail", T);
	ASSERT_OK(mkdir_p(chroot, 0755));
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", T);
	snprintf(base, sizeof(base), "%s/base-initrd", T);
	snprintf(initrd, sizeof(initrd), "%s/initrd", T);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", T);
	snprintf(console, sizeof(console), "%s/console.log", T);
	write_text(kernel, "kernel", 0644);
	write_text(base, "base-initramfs", 0644);
	write_text(rootfs, "rootfs", 0644);
	ASSERT_OK(guest_config_write_initrd(&gc, base, initrd, &err));
	snprintf(p, sizeof(p), "%s/knobs.json", T);
	snprintf(knobs, sizeof(knobs),
		 "{\"agent_cmd\": \"exec %s --test-mode --ctl-fd 3 --initrd \\\"$(dirname "
		 "\\\"$FAKE_FC_VSOCK_UDS\\\")/initrd\\\"\", \"agent_ports\": [%u]}",
		 agent_bin, AGENT_DEFAULT_VSOCK_PORT);
	write_text(p, knobs, 0644);
	setenv("FAKE_FC_KNOBS", p, 1);

	cfg = (struct runtime_config){.state_dir = T,
				      .vmm = VMM_FIRECRACKER,
				      .firecracker = fc,
				      .jailer = jailer,
				      .chroot_base = chroot};
	if (vmm_firecracker_ops.init(&cfg, &priv, &err) < 0)
		TEST_FAIL("init: %s", err.msg);
	vmm_handle_init(&h);
	l.name = gc.name;
	l.uid = 310000;
	l.gid = 310000;
	l.kernel = kernel;
	l.initrd = initrd;
	l.rootfs = rootfs;
	l.vcpus = 2;
	l.mem_mib = 2048;
	l.run_dir = T;
	l.console_log = console;
	if (vmm_firecracker_ops.launch(priv, &l, &h, &err) < 0)
		TEST_FAIL("launch: %s", err.msg);

	ac.transport = agent_transport_for_vmm(vmm_firecracker_ops.name);
	ASSERT_EQ(ac.transport, AGENT_TRANSPORT_VSOCK);
	ac.socket_path = h.agent_socket;
	ac.vsock_port = AGENT_DEFAULT_VSOCK_PORT;
	ac.heartbeat_ms = 200;
	ASSERT_OK(agent_start(&ac, &a));
	ASSERT_OK(agent_wait(a, p_running, NULL, 10000));
	ASSERT_TRUE(log_has(a, "[stdout] hi-from-fc vsock\n", 3000));
	agent_get_status(a, &s);
	agent_format_health_agent(&s, buf, sizeof(buf));
	ASSERT_TRUE(strncmp(buf, "ok ", 3) == 0);
	ASSERT_OK(agent_stop_request(a, 2000));
	ASSERT_OK(agent_wait(a, p_exited, NULL, 5000));
	agent_get_status(a, &s);
	ASSERT_EQ(s.exit_code, 5);
	ASSERT_TRUE(log_has(a, "[stdout] fc-term\n", 2000));

	/* The agent "reset the guest" (reboot=k): Firecracker exits 0 by itself. */
	a = agent_free(a);
	{
		struct pollfd pfd = {.fd = h.pidfd, .events = POLLIN};
		struct vmm_exit ex;

		ASSERT_EQ(poll(&pfd, 1, 5000), 1);
		ASSERT_OK(vmm_handle_reap(&h, &ex));
		ASSERT_EQ(ex.code, 0);
		ASSERT_EQ(ex.signal, 0);
	}
	vmm_firecracker_ops.cleanup(priv, gc.name, &h);
	vmm_firecracker_ops.free(priv);
	snprintf(p, sizeof(p), "rm -rf %s", T);
	(void)!system(p);
}

TEST_MAIN(TEST(test_fc_vsock_agent))
