/* SPDX-License-Identifier: MIT */
/* The agent's vm.json (written by the host into the initramfs): strict and leak-free on any
 * input. Invariants: fixed-size strings NUL-terminated, argv-style lists NULL-terminated. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_vm vm;
	char errbuf[256] = "";

	if (guest_vm_parse((const char *)data, size, &vm, errbuf, sizeof(errbuf)) < 0) {
		if (!memchr(errbuf, '\0', sizeof(errbuf)))
			__builtin_trap();
		return 0;
	}
	if (!memchr(vm.name, '\0', sizeof(vm.name)) || !memchr(vm.mac, '\0', sizeof(vm.mac)) ||
	    !vm.entrypoint || !vm.cmd || !vm.env)
		__builtin_trap();
	guest_vm_done(&vm);
	return 0;
}
