#!/bin/sh
# The floor for bench/control-plane: the same jailer spawn and Firecracker API sequence the
# runtime issues, done by a shell loop with `curl --unix-socket`, against the same fake.
# Prints one start latency (ms) per VM on stdout.
# Usage: control-plane-floor.sh SRCDIR N WRITERS
set -eu
src=$1; n=$2; w=$3
T=$(mktemp -d /tmp/mcf-XXXXXX); chmod 755 "$T"
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/jail"
truncate -s 4096 "$T/vmlinux"; truncate -s 1M "$T/rootfs.ext4"; chmod 644 "$T/vmlinux" "$T/rootfs.ext4"
fc=$src/tests/fakes/firecracker; jailer=$src/tests/fakes/jailer
exec_name=$(basename "$(realpath "$fc")")
ms() { echo $(( $(date +%s%N) / 1000000 )); }

one() {  # one VM: prepare jail, spawn, configure, boot; then stop and clean
	id=$1; uid=$((500000 + $2))
	t0=$(ms)
	jd=$T/jail/$exec_name/$id; root=$jd/root
	mkdir -p "$root"
	ln "$T/vmlinux" "$root/vmlinux"; ln "$T/rootfs.ext4" "$root/rootfs.ext4"
	truncate -s 16M "$root/data.ext4"; chown $uid:$uid "$root/data.ext4"
	: > "$root/firecracker.log"; : > "$root/metrics.json"
	chown $uid:$uid "$root/firecracker.log" "$root/metrics.json"
	"$jailer" --id "$id" --exec-file "$fc" --uid $uid --gid $uid --chroot-base-dir "$T/jail" \
		--cgroup-version 1 --parent-cgroup mvmfs-floor --cgroup cpu.cfs_period_us=100000 \
		--cgroup cpu.cfs_quota_us=200000 --cgroup memory.limit_in_bytes=2147483648 \
		--cgroup memory.swappiness=0 -- --api-sock /run/firecracker.socket >/dev/null 2>&1 &
	pid=$!
	s=$root/run/firecracker.socket
	while ! curl -s --unix-socket "$s" -o /dev/null http://localhost/ 2>/dev/null; do sleep 0.005; done
	put() { curl -s -f --unix-socket "$s" -X PUT -H 'Content-Type: application/json' -d "$2" "http://localhost$1" >/dev/null; }
	put /logger '{"log_path":"firecracker.log","level":"Info","show_level":true,"show_log_origin":false}'
	put /metrics '{"metrics_path":"metrics.json"}'
	put /boot-source '{"kernel_image_path":"vmlinux","boot_args":"console=ttyS0 reboot=k panic=1"}'
	put /drives/rootfs '{"drive_id":"rootfs","path_on_host":"rootfs.ext4","is_root_device":true,"is_read_only":true}'
	put /drives/data '{"drive_id":"data","path_on_host":"data.ext4","is_root_device":false,"is_read_only":false}'
	put /machine-config '{"vcpu_count":2,"mem_size_mib":2048,"smt":false}'
	put /vsock '{"guest_cid":3,"uds_path":"v.sock"}'
	put /actions '{"action_type":"InstanceStart"}'
	until curl -s --unix-socket "$s" http://localhost/ | grep -q '"Running"'; do sleep 0.005; done
	t1=$(ms)
	echo $((t1 - t0))
	put /actions '{"action_type":"SendCtrlAltDel"}'
	wait $pid || true
	rm -rf "$jd"
	for c in /sys/fs/cgroup/cpu /sys/fs/cgroup/memory; do rmdir "$c/mvmfs-floor/$id" 2>/dev/null || true; done
}

i=0
while [ $i -lt $w ]; do
	( j=$i; while [ $j -lt $n ]; do one "f$j" $j; j=$((j + w)); done ) &
	i=$((i + 1))
done
wait
