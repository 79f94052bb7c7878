/* SPDX-License-Identifier: MIT */
/* Firecracker API bodies against their expected JSON (docs/firecracker.md A.4), and response
 * decoding. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "test.h"

static void test_bodies(void)
{
	char *s = NULL;

	ASSERT_OK(fc_json_logger("firecracker.log", &s));
	ASSERT_STREQ(s, "{\"log_path\":\"firecracker.log\",\"level\":\"Info\",\"show_level\":true,"
			"\"show_log_origin\":false}");
	free(s);
	ASSERT_OK(fc_json_metrics("metrics.json", &s));
	ASSERT_STREQ(s, "{\"metrics_path\":\"metrics.json\"}");
	free(s);
	ASSERT_OK(fc_json_boot_source("vmlinux", "initrd", "console=ttyS0 reboot=k panic=1", &s));
	ASSERT_STREQ(s, "{\"kernel_image_path\":\"vmlinux\",\"initrd_path\":\"initrd\","
			"\"boot_args\":\"console=ttyS0 reboot=k panic=1\"}");
	free(s);
	ASSERT_OK(fc_json_boot_source("vmlinux", NULL, NULL, &s));
	ASSERT_STREQ(s, "{\"kernel_image_path\":\"vmlinux\"}");
	free(s);
	ASSERT_OK(fc_json_drive("rootfs", "rootfs.ext4", true, true, &s));
	ASSERT_STREQ(s, "{\"drive_id\":\"rootfs\",\"path_on_host\":\"rootfs.ext4\","
			"\"is_root_device\":true,\"is_read_only\":true}");
	free(s);
	ASSERT_OK(fc_json_drive("data", "data.ext4", false, false, &s));
	ASSERT_STREQ(s, "{\"drive_id\":\"data\",\"path_on_host\":\"data.ext4\","
			"\"is_root_device\":false,\"is_read_only\":false}");
	free(s);
	ASSERT_OK(fc_json_machine_config(2, 2048, &s));
	ASSERT_STREQ(s, "{\"vcpu_count\":2,\"mem_size_mib\":2048,\"smt\":false}");
	free(s);
	ASSERT_ERRNO(fc_json_machine_config(0, 2048, &s), EINVAL);
	ASSERT_ERRNO(fc_json_machine_config(33, 2048, &s), EINVAL);
	ASSERT_OK(fc_json_net("eth0", "tap0", "02:00:00:00:00:01", &s));
	ASSERT_STREQ(s, "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
			"\"guest_mac\":\"02:00:00:00:00:01\"}");
	free(s);
	ASSERT_OK(fc_json_vsock(3, "v.sock", &s));
	ASSERT_STREQ(s, "{\"guest_cid\":3,\"uds_path\":\"v.sock\"}");
	free(s);
	ASSERT_OK(fc_json_action("InstanceStart", &s));
	ASSERT_STREQ(s, "{\"action_type\":\"InstanceStart\"}");
	free(s);
	ASSERT_OK(fc_json_action("SendCtrlAltDel", &s));
	ASSERT_STREQ(s, "{\"action_type\":\"SendCtrlAltDel\"}");
	free(s);
	ASSERT_OK(fc_json_snapshot_load("snapshot", "mem", NULL, NULL, &s));
	ASSERT_STREQ(s, "{\"snapshot_path\":\"snapshot\",\"mem_backend\":{\"backend_type\":"
			"\"File\",\"backend_path\":\"mem\"},\"resume_vm\":false}");
	free(s);
	ASSERT_OK(fc_json_snapshot_load("snapshot", "mem", "eth0", "tap0", &s));
	ASSERT_STREQ(s, "{\"snapshot_path\":\"snapshot\",\"mem_backend\":{\"backend_type\":"
			"\"File\",\"backend_path\":\"mem\"},\"resume_vm\":false,"
			"\"network_overrides\":[{\"iface_id\":\"eth0\",\"host_dev_name\":"
			"\"tap0\"}]}");
	free(s);
	/* Strings are escaped, not pasted. */
	ASSERT_OK(fc_json_boot_source("a\"b", NULL, "x\\y", &s));
	ASSERT_STREQ(s, "{\"kernel_image_path\":\"a\\\"b\",\"boot_args\":\"x\\\\y\"}");
	free(s);
}

static void test_instance_state(void)
{
	enum vmm_run_state st = VMM_RUN_UNKNOWN;
	const char *ok = "{\"id\":\"vm1\",\"state\":\"Running\",\"vmm_version\":\"1.17.0-dev\","
			 "\"app_name\":\"Firecracker\"}";

	ASSERT_OK(fc_json_instance_state(ok, strlen(ok), &st));
	ASSERT_EQ(st, VMM_RUN_RUNNING);
	ASSERT_OK(fc_json_instance_state("{\"state\":\"Not started\"}",
					 strlen("{\"state\":\"Not started\"}"), &st));
	ASSERT_EQ(st, VMM_RUN_NOT_STARTED);
	ASSERT_OK(fc_json_instance_state("{\"state\":\"Paused\"}", strlen("{\"state\":\"Paused\"}"),
					 &st));
	ASSERT_EQ(st, VMM_RUN_PAUSED);
	ASSERT_ERRNO(fc_json_instance_state("{\"state\":\"running\"}",
					    strlen("{\"state\":\"running\"}"), &st),
		     EINVAL);
	ASSERT_ERRNO(fc_json_instance_state("{\"state\":1}", strlen("{\"state\":1}"), &st), EINVAL);
	ASSERT_ERRNO(fc_json_instance_state("[]", strlen("[]"), &st), EINVAL);
	ASSERT_ERRNO(fc_json_instance_state("{\"state\":\"Running\",\"state\":\"Paused\"}",
					    strlen("{\"state\":\"Running\",\"state\":\"Paused\"}"),
					    &st),
		     EINVAL);
	ASSERT_ERRNO(fc_json_instance_state("{", strlen("{"), &st), EINVAL);
	ASSERT_ERRNO(fc_json_instance_state("", strlen(""), &st), EINVAL);
}

static void test_fault(void)
{
	char buf[256];
	const char *f =
		"{\"fault_message\":\"Drive config error: Unable to create the virtio block "
		"device: Virtio backend error: Error manipulating the backing file: No such "
		"file or directory (os error 2) rootfs.ext4\"}";
	const char *h =
		"{ \"error\": \"Request payload with size 60000 is larger than the limit of "
		"51200 allowed by server.\nAll previous unanswered requests will be "
		"dropped.\" }";

	fc_json_fault(f, strlen(f), buf, sizeof(buf));
	ASSERT_STREQ(buf, "Drive config error: Unable to create the virtio block device: Virtio "
			  "backend error: Error manipulating the backing file: No such file or "
			  "directory (os error 2) rootfs.ext4");
	fc_json_fault(h, strlen(h), buf, sizeof(buf));
	ASSERT_STREQ(buf, "Request payload with size 60000 is larger than the limit of 51200 "
			  "allowed by server. All previous unanswered requests will be dropped.");
	fc_json_fault("not json\n", 9, buf, sizeof(buf));
	ASSERT_STREQ(buf, "not json ");
	fc_json_fault(NULL, 0, buf, sizeof(buf));
	ASSERT_STREQ(buf, "");
	fc_json_fault(f, strlen(f), buf, 10);
	ASSERT_STREQ(buf, "Drive con");
}

TEST_MAIN(TEST(test_bodies), TEST(test_instance_state), TEST(test_fault))
