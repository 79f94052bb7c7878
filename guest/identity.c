/* SPDX-License-Identifier: MIT */
/*
 * A template's identity: the VM's vm.json, sent by the host in IDENTITY pieces after the guest
 * was restored from a booted template (docs/template.md), then applied: the wall clock
 * stepped, the host's entropy added to the kernel's pool and the CRNG reseeded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

void identity_reset(struct identity_asm *a)
{
	free(a->buf);
	*a = (struct identity_asm){0};
}

int identity_piece(struct identity_asm *a, const struct agent_identity *p)
{
	if (p->offset == 0) {
		uint8_t *buf = malloc(p->total);

		if (!buf)
			return -ENOMEM;
		identity_reset(a);
		a->buf = buf;
		a->total = p->total;
	} else if (!a->buf || p->total != a->total || p->offset != a->have) {
		/* A piece out of order: the whole identity is void until one starts at 0. */
		identity_reset(a);
		a->broken = true;
		return -EPROTO;
	}
	/* The decoder checked offset + len <= total. */
	memcpy(a->buf + p->offset, p->data, p->len);
	a->have = p->offset + p->len;
	return 0;
}

int identity_finish(struct identity_asm *a, const struct agent_identity_end *e, bool vsock,
		    struct guest_vm *ret, char *errbuf, size_t errsz)
{
	int r;

	if (!a->buf || a->have != a->total || e->total != a->total) {
		snprintf(errbuf, errsz, "identity incomplete: %u of %u bytes%s", a->have, e->total,
			 a->broken ? " (a piece came out of order)" : "");
		identity_reset(a);
		return -EPROTO;
	}
	if (agent_crc32(0, a->buf, a->total) != e->crc) {
		snprintf(errbuf, errsz, "identity corrupt: CRC mismatch");
		identity_reset(a);
		return -EBADMSG;
	}
	r = guest_vm_parse((const char *)a->buf, a->total, ret, errbuf, errsz);
	identity_reset(a);
	if (r < 0)
		return r;
	if (ret->template || ret->vsock != vsock) {
		snprintf(errbuf, errsz, "identity: %s",
			 ret->template ? "is a template's" : "another agent transport");
		guest_vm_done(ret);
		return -EINVAL;
	}
	return 0;
}

int entropy_add(const uint8_t *data, size_t len)
{
	struct {
		struct rand_pool_info info;
		uint8_t buf[AGENT_ENTROPY_LEN];
	} req;
	int fd, r = 0;

	if (len > sizeof(req.buf))
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.info.entropy_count = (int)(len * 8);
	req.info.buf_size = (int)len;
	memcpy(req.buf, data, len);
	fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, RNDADDENTROPY, &req) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		r = -errno;
	close(fd);
	explicit_bzero(&req, sizeof(req));
	return r;
}
