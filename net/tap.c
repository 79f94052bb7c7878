/* SPDX-License-Identifier: MIT */
/*
 * net: the VM's TAP, created persistent through /dev/net/tun and owned by the VM's uid:gid so the
 * jailed VMM (which drops to that uid) can attach to it. Must run on a thread inside the VM's
 * namespace: a TAP lives in the namespace of the file that created it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "plumbing.h"

int tap_create(const char *name, uid_t uid, gid_t gid)
{
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct ifreq ifr = {0};

	if (fd < 0)
		return -errno;
	if (strlen(name) >= IFNAMSIZ)
		return -ENAMETOOLONG;
	strcpy(ifr.ifr_name, name);
	/* Firecracker opens it with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR; VNET_HDR is per file. */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		/* EBUSY: it exists and a VMM holds it, so it was set up before. */
		return errno == EBUSY ? 0 : -errno;
	if (ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0 ||
	    ioctl(fd, TUNSETGROUP, (unsigned long)gid) < 0 || ioctl(fd, TUNSETPERSIST, 1UL) < 0)
		return -errno;
	return 0;
}
