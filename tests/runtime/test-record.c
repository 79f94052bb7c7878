/* SPDX-License-Identifier: MIT */
/* VM records: encode/decode round trip, atomic write + read back, strict rejection. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "internal.h"
#include "test.h"

static void fill(struct vm_record *r)
{
	memset(r, 0, sizeof(*r));
	vmm_handle_init(&r->h);
	strcpy(r->name, "web-1");
	r->index = 7;
	r->state = VM_STATE_RUNNING;
	strcpy(r->image, "127.0.0.1:5000/app:v1");
	strcpy(r->image_digest,
	       "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	strcpy(r->image_key,
	       "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
	inet_pton(AF_INET6, "fd42::10", &r->ip);
	r->has_ip = true;
	strcpy(r->error, "2026-11-29T15:00:00Z start: PUT /drives/rootfs: Drive config error: x");
	r->h.pid = 4242;
	r->h.start_time = 123456789;
	strcpy(r->h.api_socket, "/srv/jailer/firecracker/web-1/root/run/firecracker.socket");
	strcpy(r->h.agent_socket, "/srv/jailer/firecracker/web-1/root/v.sock");
	strcpy(r->h.jail_dir, "/srv/jailer/firecracker/web-1");
	strcpy(r->h.cgroup[0], "/sys/fs/cgroup/cpu,cpuacct/mvmfs/web-1");
	strcpy(r->h.cgroup[1], "/sys/fs/cgroup/memory/mvmfs/web-1");
	r->h.cgroup_version = 1;
	strcpy(r->rootfs, "/var/lib/mvmfs/images/x/rootfs.ext4");
	strcpy(r->vmm, "firecracker");
}

static void test_round_trip(void)
{
	struct vm_record a, b;
	struct err err = {};
	char *s = NULL;

	fill(&a);
	ASSERT_OK(record_encode(&a, &s));
	ASSERT_OK(record_decode(s, strlen(s), &b, &err));
	free(s);
	ASSERT_STREQ(b.name, a.name);
	ASSERT_EQ(b.index, 7);
	ASSERT_EQ(b.state, VM_STATE_RUNNING);
	ASSERT_STREQ(b.image, a.image);
	ASSERT_STREQ(b.image_digest, a.image_digest);
	ASSERT_STREQ(b.image_key, a.image_key);
	ASSERT_TRUE(b.has_ip);
	ASSERT_EQ(memcmp(&a.ip, &b.ip, sizeof(a.ip)), 0);
	ASSERT_STREQ(b.error, a.error);
	ASSERT_EQ(b.h.pid, 4242);
	ASSERT_EQ(b.h.start_time, 123456789);
	ASSERT_EQ(b.h.pidfd, -EBADF);
	ASSERT_STREQ(b.h.api_socket, a.h.api_socket);
	ASSERT_STREQ(b.h.agent_socket, a.h.agent_socket);
	ASSERT_STREQ(b.h.jail_dir, a.h.jail_dir);
	ASSERT_STREQ(b.h.cgroup[0], a.h.cgroup[0]);
	ASSERT_STREQ(b.h.cgroup[1], a.h.cgroup[1]);
	ASSERT_STREQ(b.h.cgroup[2], "");
	ASSERT_EQ(b.h.cgroup_version, 1);
	ASSERT_STREQ(b.rootfs, a.rootfs);
	ASSERT_STREQ(b.vmm, "firecracker");
}

static void test_file(void)
{
	char dir[] = "/tmp/mvmfs-rec-XXXXXX", sub[200];
	struct vm_record a, b;
	struct err err = {};

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof(sub), "%s/vms/web-1", dir);
	ASSERT_OK(mkdir_p(sub, 0700));
	fill(&a);
	a.state = VM_STATE_STOPPED;
	ASSERT_OK(record_write(dir, &a));
	ASSERT_OK(record_read(dir, "web-1", &b, &err));
	ASSERT_EQ(b.state, VM_STATE_STOPPED);
	ASSERT_ERRNO(record_read(dir, "web-2", &b, &err), ENOENT);
	ASSERT_OK(record_remove(dir, "web-1"));
	ASSERT_OK(record_remove(dir, "web-1"));
	ASSERT_OK(rm_rf(dir));
}

static void test_reject(void)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"{\"version\":2,\"name\":\"a\",\"state\":\"created\"}",
		"{\"version\":1,\"name\":\"-a\",\"state\":\"created\"}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"sleeping\"}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"created\",\"ip\":\"1.2.3.4\"}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"created\",\"index\":-1}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"created\",\"handle\":{\"pid\":\"1\"}}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"created\",\"handle\":{\"cgroups\":[1]}}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"created\",\"handle\":{\"cgroups\":["
		"\"a\",\"b\",\"c\",\"d\",\"e\"]}}",
		"{\"version\":1,\"name\":\"a\",\"name\":\"b\",\"state\":\"created\"}",
		"{\"version\":1,\"name\":\"a\\u0000b\",\"state\":\"created\"}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"starting\",\"launch\":1}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"starting\",\"launch\":{}}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"starting\",\"launch\":"
		"{\"in_progress\":true,\"uid\":-5}}",
		"{\"version\":1,\"name\":\"a\",\"state\":\"starting\",\"launch\":"
		"{\"in_progress\":1}}",
	};
	struct vm_record r;
	struct err err = {};

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int k = record_decode(bad[i], strlen(bad[i]), &r, &err);
		if (k >= 0)
			TEST_FAIL("accepted: %s", bad[i]);
	}
	{
		const char *ok =
			"{\"version\":1,\"name\":\"a\",\"state\":\"created\",\"future\":1}";
		ASSERT_OK(record_decode(ok, strlen(ok), &r, &err));
	}
	ASSERT_EQ(r.h.pidfd, -EBADF);
}

/* Intent first: a record written before the VMM is spawned says so, with the uid. */
static void test_launch_intent(void)
{
	struct vm_record a, b;
	struct err err = {};
	char *s = NULL;

	fill(&a);
	a.state = VM_STATE_STARTING;
	a.launching = true;
	a.launch_uid = 200007;
	ASSERT_OK(record_encode(&a, &s));
	ASSERT_TRUE(strstr(s, "\"launch\"") != NULL);
	ASSERT_OK(record_decode(s, strlen(s), &b, &err));
	free(s);
	ASSERT_TRUE(b.launching);
	ASSERT_EQ(b.launch_uid, 200007);
	a.launching = false;
	ASSERT_OK(record_encode(&a, &s));
	ASSERT_TRUE(strstr(s, "\"launch\"") == NULL);
	ASSERT_OK(record_decode(s, strlen(s), &b, &err));
	free(s);
	ASSERT_FALSE(b.launching);
}

/* The boot id a suspended VM's restore must find again: 32 hex digits, strict. */
static void test_boot_id(void)
{
	static const char *const bad[] = {"\"00\"", "\"0123456789abcdef0123456789abcdeF\"",
					  "\"0123456789abcdef0123456789abcdef0\"", "12",
					  "\"0123456789abcdef0123456789abcdeg\""};
	struct vm_record a, b;
	struct err err = {};
	char *s = NULL, *p;

	fill(&a);
	a.state = VM_STATE_SUSPENDED;
	ASSERT_OK(record_encode(&a, &s));
	ASSERT_TRUE(strstr(s, "boot_id") == NULL);
	free(s);
	a.has_boot_id = true;
	for (int i = 0; i < AGENT_BOOT_ID_LEN; i++)
		a.boot_id[i] = (uint8_t)(0xf0 + i);
	ASSERT_OK(record_encode(&a, &s));
	ASSERT_TRUE(strstr(s, "\"boot_id\": \"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\"") != NULL);
	ASSERT_OK(record_decode(s, strlen(s), &b, &err));
	ASSERT_TRUE(b.has_boot_id);
	ASSERT_EQ(memcmp(a.boot_id, b.boot_id, AGENT_BOOT_ID_LEN), 0);
	ASSERT_EQ(b.state, VM_STATE_SUSPENDED);
	p = strstr(s, "\"f0f1");
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *t = NULL;

		ASSERT_TRUE(asprintf(&t, "%.*s%s%s", (int)(p - s), s, bad[i], p + 34) > 0);
		ASSERT_ERRNO(record_decode(t, strlen(t), &b, &err), EINVAL);
		free(t);
	}
	free(s);
}

TEST_MAIN(TEST(test_round_trip), TEST(test_file), TEST(test_reject), TEST(test_launch_intent),
	  TEST(test_boot_id))
