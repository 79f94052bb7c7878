/* SPDX-License-Identifier: MIT */
/*
 * runtime/guest-config: the per-VM settings handed to the guest agent, and the kernel command
 * line. The settings travel as /mvmfs/vm.json inside a small cpio "newc" archive (libarchive)
 * appended to the project's base initramfs: the kernel unpacks concatenated archives, so the
 * agent finds the file in its rootfs at boot. Used by both backends at start.
 *
 * vm.json:
 *   {"version":1,"name":"web-1","address":"fd42::10","prefix_len":64,"gateway":"fd42::1",
 *    "mac":"02:..","mtu":1500,
 *    "image":{"entrypoint":[..],"cmd":[..],"env":["K=V",..],"workdir":"/srv","user":"1000:1000"},
 *    "agent":{"transport":"serial"|"vsock","port":1024,"heartbeat_ms":1000},
 *    "grace_ms":5000,
 *    "volumes":[{"uuid":"<32 hex: the disk's ext4 UUID>","path":"/data","fresh":true},..]}
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "err.h"

/* A volume for the agent to mount: found by the ext4 UUID of its disk. */
struct guest_config_volume {
	uint8_t uuid[16];
	const char *path; /* inside the container */
	bool fresh;	  /* never mounted: filled from the image's directory at path */
};

struct guest_config {
	const char *name; /* VM name: hostname */
	struct in6_addr addr;
	unsigned prefix_len;
	struct in6_addr gateway;
	const char *mac; /* "02:xx:.." or NULL */
	unsigned mtu;	 /* 0: leave the default */
	/* The image's process config, the JSON of struct img_prepared.config:
	 * {"entrypoint":[],"cmd":[],"env":[],"workdir":"","user":""}; NULL: an empty object. */
	const char *image_config_json;
	enum agent_transport transport;
	uint32_t vsock_port;   /* vsock transport only; 0: AGENT_DEFAULT_VSOCK_PORT */
	unsigned heartbeat_ms; /* 0: 1000 */
	unsigned grace_ms;     /* default in-guest grace when a stop has none; 0: 5000 */
	bool no_network;       /* tests: leave eth0 alone */
	const struct guest_config_volume *volumes; /* n_volumes (at most 16), or NULL */
	size_t n_volumes;
};

/* Render vm.json into a malloc'd NUL-terminated string. -EINVAL (with a message) when the image
 * config is not a JSON object of the expected shape, -ENOMEM. */
int guest_config_json(const struct guest_config *gc, char **ret, struct err *err);

/* Write out_path = base_initrd's bytes followed by a newc archive holding /mvmfs/vm.json
 * (gzip-compressed when the base is), atomically (temp + rename), mode 0644. -errno with a
 * message naming the file on failure. */
int guest_config_write_initrd(const struct guest_config *gc, const char *base_initrd,
			      const char *out_path, struct err *err);

/* Just the appended archive (uncompressed newc) into a malloc'd buffer; for tests. */
int guest_config_archive(const struct guest_config *gc, void **ret, size_t *ret_len,
			 struct err *err);

enum guest_cmdline_flavour {
	GUEST_CMDLINE_QEMU,	   /* microvm: tsc_early_khz (TCG), panic=-1 with -no-reboot */
	GUEST_CMDLINE_FIRECRACKER, /* reboot=k panic=1 and the i8042 words */
};

/* The kernel command line for the flavour; the TSC kHz is read
 * from /proc/cpuinfo for QEMU. Returns the length or -ENOBUFS/-errno. */
int guest_kernel_cmdline(enum guest_cmdline_flavour flavour, char *buf, size_t size);
