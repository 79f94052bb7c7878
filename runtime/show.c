/* SPDX-License-Identifier: MIT */
/*
 * The attribute files of a VM as text (vm_show): rendered from a snapshot taken under vm->lock,
 * formatted outside it; the log from the agent's ring or the console file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "log-text.h"

static int ret_str(char *s, char **ret, size_t *ret_len)
{
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}

static int show_log(struct vm *vm, char **ret, size_t *ret_len)
{
	char path[4200];
	_cleanup_close_ int fd = -EBADF;
	const size_t max = 64 * 1024;
	char *buf;
	off_t end, start;
	ssize_t n;

	pthread_mutex_lock(&vm->lock);
	if (vm->agent) {
		/* The app's own output when the agent is there (console stays in console.log). */
		int r = agent_log_copy(vm->agent, ret, ret_len);
		pthread_mutex_unlock(&vm->lock);
		if (r >= 0 && *ret_len > 0)
			return r;
		if (r >= 0)
			free(*ret);
	} else {
		pthread_mutex_unlock(&vm->lock);
	}
	snprintf(path, sizeof(path), "%s/vms/%s/console.log", vm->rt->cfg.state_dir, vm->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ret_str(strdup(""), ret, ret_len);
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	start = end > (off_t)max ? end - (off_t)max : 0;
	buf = malloc((size_t)(end - start) + 2);
	if (!buf)
		return -ENOMEM;
	n = pread(fd, buf, (size_t)(end - start), start);
	if (n < 0) {
		free(buf);
		return -errno;
	}
	n = (ssize_t)log_text_neutralize(buf, (size_t)n); /* the guest's console: no escapes */
	if (n > 0 && buf[n - 1] != '\n')
		buf[n++] = '\n';
	buf[n] = '\0';
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

int vm_show(struct vm *vm, enum vm_attr attr, char **ret, size_t *ret_len)
{
	struct vm_snap s;
	char *out = NULL;
	char ip[INET6_ADDRSTRLEN] = "";

	vm_snapshot(vm, &s);
	if (s.has_ip)
		inet_ntop(AF_INET6, &s.ip, ip, sizeof(ip));
	switch (attr) {
	case VM_ATTR_STATE:
		return ret_str(asprintf(&out, "%s\n", vm_state_to_string(s.state)) < 0 ? NULL : out,
			       ret, ret_len);
	case VM_ATTR_IMAGE:
		pthread_mutex_lock(&vm->lock);
		if (asprintf(&out, "%s\n", vm->image ? vm->image : "") < 0)
			out = NULL;
		pthread_mutex_unlock(&vm->lock);
		return ret_str(out, ret, ret_len);
	case VM_ATTR_IP:
		return ret_str(asprintf(&out, "%s\n", ip) < 0 ? NULL : out, ret, ret_len);
	case VM_ATTR_HEALTH:
		return health_render(&s, ret, ret_len);
	case VM_ATTR_ERROR:
		if (!s.error[0])
			return ret_str(strdup(""), ret, ret_len);
		return ret_str(asprintf(&out, "%s\n", s.error) < 0 ? NULL : out, ret, ret_len);
	case VM_ATTR_LOG:
		return show_log(vm, ret, ret_len);
	case VM_ATTR_CONFIG: {
		const struct runtime_config *c = &vm->rt->cfg;
		return ret_str(asprintf(&out,
					"vmm: %s\nvcpus: %u\nmem_mib: %u\nuid: %u\ngid: %u\n"
					"data_disk_bytes: %llu\nstop_timeout_ms: %u\nip: %s\n",
					vm->rt->ops->name, c->vcpus, c->mem_mib,
					(unsigned)(c->uid_base + vm->index),
					(unsigned)(c->uid_base + vm->index),
					(unsigned long long)c->data_disk_bytes, c->stop_timeout_ms,
					ip) < 0
				       ? NULL
				       : out,
			       ret, ret_len);
	}
	case VM_ATTR_PID:
		if (!s.pid)
			return ret_str(strdup(""), ret, ret_len);
		return ret_str(asprintf(&out, "%d\n", (int)s.pid) < 0 ? NULL : out, ret, ret_len);
	case VM_ATTR_METRICS:
		return metrics_vm_show(vm, ret, ret_len);
	default:
		return -EINVAL;
	}
}
