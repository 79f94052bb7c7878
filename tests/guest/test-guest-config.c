/* SPDX-License-Identifier: MIT */
/* runtime/guest-config: vm.json rendering, the appended newc archive, the initramfs writer, the
 * kernel command line; and the guest's own parser (guest/config.c) reading what the host wrote. */
#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../guest/agent.h"
#include "guest-config.h"
#include "test.h"

/* guest/config.c logs through this in the agent; unused by the parser path here. */
void agent_log(const char *fmt, ...)
{
	(void)fmt;
}

static const char *img_json = "{\"entrypoint\":[\"/bin/sh\"],\"cmd\":[\"/srv/app.sh\",\"x y\"],"
			      "\"env\":[\"GREETING=hi\",\"A=b=c\"],\"workdir\":\"/srv\","
			      "\"user\":\"app:web\",\"labels\":{\"ignored\":\"yes\"}}";

static void fill(struct guest_config *gc)
{
	memset(gc, 0, sizeof(*gc));
	gc->name = "web-1";
	inet_pton(AF_INET6, "fd42:feed::10", &gc->addr);
	inet_pton(AF_INET6, "fd42:feed::1", &gc->gateway);
	gc->prefix_len = 64;
	gc->mac = "02:00:00:00:00:10";
	gc->image_config_json = img_json;
	gc->transport = AGENT_TRANSPORT_VSOCK;
	gc->vsock_port = 1025;
	gc->heartbeat_ms = 500;
	gc->grace_ms = 3000;
}

static void test_json_parsed_by_the_guest(void)
{
	struct guest_config gc;
	struct guest_vm vm;
	struct err err = {};
	char *json = NULL, errbuf[256], addr[64];

	fill(&gc);
	ASSERT_OK(guest_config_json(&gc, &json, &err));
	ASSERT_TRUE(strstr(json, "ignored") == NULL); /* only known keys pass */
	ASSERT_OK(guest_vm_parse(json, strlen(json), &vm, errbuf, sizeof(errbuf)));
	ASSERT_STREQ(vm.name, "web-1");
	ASSERT_TRUE(vm.have_addr && vm.have_gateway);
	inet_ntop(AF_INET6, &vm.addr, addr, sizeof(addr));
	ASSERT_STREQ(addr, "fd42:feed::10");
	ASSERT_EQ(vm.prefix_len, 64);
	ASSERT_STREQ(vm.mac, "02:00:00:00:00:10");
	ASSERT_STREQ(vm.entrypoint[0], "/bin/sh");
	ASSERT_TRUE(vm.entrypoint[1] == NULL);
	ASSERT_STREQ(vm.cmd[1], "x y");
	ASSERT_STREQ(vm.env[1], "A=b=c");
	ASSERT_STREQ(vm.workdir, "/srv");
	ASSERT_STREQ(vm.user, "app:web");
	ASSERT_TRUE(vm.vsock);
	ASSERT_EQ(vm.port, 1025);
	ASSERT_EQ(vm.heartbeat_ms, 500);
	ASSERT_EQ(vm.grace_ms, 3000);
	ASSERT_EQ(vm.n_volumes, 0);
	guest_vm_done(&vm);
	free(json);
}

/* Volumes travel as {uuid, path, fresh}; the guest's parser is strict about them. */
static void test_volumes(void)
{
	static const struct guest_config_volume vols[] = {
		{{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 1, 2, 3, 4, 5, 6, 0xff},
		 "/var/lib/data",
		 true},
		{{0xaa}, "/srv/cache", false},
	};
	static const char *const bad[] = {
		"{\"volumes\":{}}",
		"{\"volumes\":[1]}",
		"{\"volumes\":[{\"uuid\":\"00\",\"path\":\"/a\",\"fresh\":true}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789ABCDEF\",\"path\":\"/a\","
		"\"fresh\":true}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"a\","
		"\"fresh\":true}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"/\","
		"\"fresh\":true}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"/a/../b\","
		"\"fresh\":true}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"/a\","
		"\"fresh\":1}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"/a\","
		"\"fresh\":true,\"x\":1}]}",
		"{\"volumes\":[{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"/a\","
		"\"fresh\":true},{\"uuid\":\"0123456789abcdef0123456789abcdef\",\"path\":\"/b\","
		"\"fresh\":true}]}",
	};
	struct guest_config gc;
	struct guest_vm vm;
	struct err err = {};
	char *json = NULL, errbuf[256];

	fill(&gc);
	gc.volumes = vols;
	gc.n_volumes = ELEMENTSOF(vols);
	ASSERT_OK(guest_config_json(&gc, &json, &err));
	ASSERT_TRUE(strstr(json, "\"uuid\":\"0123456789abcdef00010203040506ff\"") != NULL);
	ASSERT_OK(guest_vm_parse(json, strlen(json), &vm, errbuf, sizeof(errbuf)));
	ASSERT_EQ(vm.n_volumes, 2);
	ASSERT_STREQ(vm.volumes[0].path, "/var/lib/data");
	ASSERT_TRUE(vm.volumes[0].fresh && !vm.volumes[1].fresh);
	ASSERT_TRUE(memcmp(vm.volumes[0].uuid, vols[0].uuid, 16) == 0);
	ASSERT_EQ(vm.volumes[1].uuid[0], 0xaa);
	guest_vm_done(&vm);
	free(json);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (guest_vm_parse(bad[i], strlen(bad[i]), &vm, errbuf, sizeof(errbuf)) != -EINVAL)
			TEST_FAIL("accepted: %s", bad[i]);
	{
		struct guest_config_volume nopath = {{1}, NULL, true};

		gc.volumes = &nopath;
		gc.n_volumes = 1;
		ASSERT_ERRNO(guest_config_json(&gc, &json, &err), EINVAL);
	}
}

static void test_bad_image_config(void)
{
	static const char *const bad[] = {
		"[]", "{\"cmd\":\"not a list\"}", "{\"env\":[1]}", "{\"user\":5}", "{bad json",
	};
	struct guest_config gc;
	struct err err = {};
	char *json = NULL;

	fill(&gc);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		gc.image_config_json = bad[i];
		ASSERT_ERRNO(guest_config_json(&gc, &json, &err), EINVAL);
		ASSERT_TRUE(err.msg[0] != '\0');
	}
	gc.image_config_json = NULL; /* no config: an empty image object */
	ASSERT_OK(guest_config_json(&gc, &json, &err));
	free(json);
}

static void test_guest_parser_rejects(void)
{
	static const char *const bad[] = {
		"{\"address\":\"not-an-ip\"}",
		"{\"prefix_len\":129}",
		"{\"image\":{\"cmd\":[1]}}",
		"{\"name\":\"a\",\"name\":\"b\"}",
		"7",
		"{\"agent\":{\"transport\":3}}",
	};
	struct guest_vm vm;
	char errbuf[256];

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		ASSERT_ERRNO(guest_vm_parse(bad[i], strlen(bad[i]), &vm, errbuf, sizeof(errbuf)),
			     EINVAL);
	ASSERT_OK(guest_vm_parse("{}", 2, &vm, errbuf, sizeof(errbuf)));
	ASSERT_TRUE(vm.entrypoint && !vm.entrypoint[0]);
	ASSERT_FALSE(vm.vsock);
	guest_vm_done(&vm);
}

/* Read the newc archive back with libarchive: mvmfs/ and mvmfs/vm.json. */
static void check_archive(const void *data, size_t len, const char *want_name)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	char buf[4096];
	bool found = false;

	archive_read_support_format_cpio(a);
	archive_read_support_filter_all(a);
	ASSERT_EQ(archive_read_open_memory(a, data, len), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		if (strcmp(archive_entry_pathname(e), "mvmfs/vm.json") == 0) {
			la_ssize_t n = archive_read_data(a, buf, sizeof(buf) - 1);

			ASSERT_TRUE(n > 0);
			buf[n] = '\0';
			ASSERT_TRUE(strstr(buf, want_name) != NULL);
			ASSERT_EQ(archive_entry_mode(e) & 0777, 0644);
			found = true;
		}
	}
	ASSERT_TRUE(found);
	ASSERT_EQ(archive_format(a), ARCHIVE_FORMAT_CPIO_SVR4_NOCRC);
	archive_read_free(a);
}

static void test_archive(void)
{
	struct guest_config gc;
	struct err err = {};
	void *data = NULL;
	size_t len = 0;

	fill(&gc);
	ASSERT_OK(guest_config_archive(&gc, &data, &len, &err));
	ASSERT_TRUE(len > 0 && len % 4 == 0);
	ASSERT_TRUE(memcmp(data, "070701", 6) == 0);
	check_archive(data, len, "\"name\":\"web-1\"");
	free(data);
}

static void test_write_initrd_appends_aligned(void)
{
	char dir[] = "/tmp/test-guest-config.XXXXXX", base[128], out[128];
	struct guest_config gc;
	struct err err = {};
	unsigned char buf[4096];
	struct stat st;
	ssize_t n;
	int fd;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(base, sizeof(base), "%s/base", dir);
	snprintf(out, sizeof(out), "%s/vm-initrd", dir);
	fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, "BASE-ARCHIVE-7", 14), 14); /* 14 bytes: needs 2 bytes of padding */
	close(fd);
	fill(&gc);
	ASSERT_OK(guest_config_write_initrd(&gc, base, out, &err));
	ASSERT_OK(stat(out, &st));
	ASSERT_EQ(st.st_mode & 0777, 0644);
	fd = open(out, O_RDONLY);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	ASSERT_TRUE(n > 16);
	ASSERT_TRUE(memcmp(buf, "BASE-ARCHIVE-7\0\0", 16) == 0);
	ASSERT_TRUE(memcmp(buf + 16, "070701", 6) == 0);
	check_archive(buf + 16, (size_t)n - 16, "\"transport\":\"vsock\"");
	ASSERT_ERRNO(guest_config_write_initrd(&gc, "/nonexistent/base", out, &err), ENOENT);
	ASSERT_TRUE(strstr(err.msg, "/nonexistent/base") != NULL);
	unlink(out);
	unlink(base);
	rmdir(dir);
}

static void test_cmdline(void)
{
	char buf[512];

	ASSERT_OK(guest_kernel_cmdline(GUEST_CMDLINE_QEMU, buf, sizeof(buf)));
	ASSERT_TRUE(strstr(buf, "panic=-1") && strstr(buf, "cryptomgr.notests"));
	ASSERT_TRUE(strstr(buf, "rdinit=/init"));
	ASSERT_TRUE(strstr(buf, "tsc_early_khz=") != NULL);
	ASSERT_OK(guest_kernel_cmdline(GUEST_CMDLINE_FIRECRACKER, buf, sizeof(buf)));
	ASSERT_TRUE(strstr(buf, "reboot=k") && strstr(buf, "panic=1"));
	ASSERT_ERRNO(guest_kernel_cmdline(GUEST_CMDLINE_QEMU, buf, 10), ENOBUFS);
}

TEST_MAIN(TEST(test_json_parsed_by_the_guest), TEST(test_volumes), TEST(test_bad_image_config),
	  TEST(test_guest_parser_rejects), TEST(test_archive),
	  TEST(test_write_initrd_appends_aligned), TEST(test_cmdline))
