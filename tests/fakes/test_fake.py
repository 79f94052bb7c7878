#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Tests of the fake firecracker/jailer against docs/firecracker.md. Needs root (exit 77 otherwise)."""
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import fcctl  # noqa: E402
from fakefix import (AFTER, BEFORE, CG_PARENT, FIRECRACKER, HERE, UID, Jail, Netns,  # noqa: E402
                     _read, pid_alive, run_jailer, vsock_connect, wait_for)


class JailerFlags(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="fakefc-")
        self.addCleanup(shutil.rmtree, self.base, True)

    def args(self, **over):
        a = {"id": "vm-1", "exec-file": FIRECRACKER, "uid": str(UID), "gid": str(UID),
             "chroot-base-dir": self.base}
        a.update(over)
        out = []
        for k, v in a.items():
            if v is not None:
                out += ["--" + k, v]
        return out

    def check(self, args, msg):
        rc, err = run_jailer(args)
        self.assertEqual(rc, 1, err)
        self.assertIn(msg, err)
        self.assertEqual(os.listdir(self.base), [], "nothing may be created on a flag error")

    def test_errors(self):
        self.check(self.args(id=""), "Invalid instance ID: Invalid len (0);  the length must be "
                   "between 1 and 64")
        self.check(self.args(id="a" * 65), "Invalid instance ID: Invalid len (65);")
        self.check(self.args(id="ab_c"), "Invalid instance ID: Invalid char (_) at position 2")
        self.check(self.args(**{"exec-file": "/nonexistent/fc"}),
                   "Failed to canonicalize path /nonexistent/fc: No such file or directory "
                   "(os error 2)")
        self.check(self.args(**{"exec-file": HERE}), "%s is not a file" % HERE)
        self.check(self.args(uid="x"), "Invalid uid: x")
        self.check(self.args(gid="-1"), "Invalid gid: -1")
        self.check(self.args(**{"chroot-base-dir": "/nonexistent"}),
                   "Failed to canonicalize path /nonexistent:")
        self.check(self.args() + ["--cgroup-version", "3"],
                   "3 is an invalid cgroup version specifier")
        self.check(self.args() + ["--parent-cgroup", "a/../b"],
                   "Parent cgroup path is invalid. Path should not be absolute or contain '..' "
                   "or '.'")
        self.check(self.args() + ["--cgroup", "nonsense"], "Invalid format for cgroups: nonsense")
        self.check(self.args() + ["--cgroup", "nodot=1"], "Cgroup invalid file: nodot=1")
        self.check(self.args() + ["--resource-limit", "bar=1"], "Invalid resource argument: bar")
        self.check(self.args() + ["--resource-limit", "fsize"],
                   "Invalid format for resources limits: fsize")
        self.check(self.args() + ["--resource-limit", "fsize=x"],
                   "Invalid limit value for resource: x: invalid digit found in string")
        self.check(["--id=vm-1"] + self.args(id=None),
                   "Failed to parse arguments: Found argument 'id=vm-1' which wasn't expected")
        self.check(self.args(uid=None), "Argument 'uid' required, but not found.")
        self.check(self.args() + ["--id", "x"], "The argument 'id' was provided more than once.")
        self.check(self.args() + ["--netns"], "The argument 'netns' requires a value")

    def test_cgroup_v2_controller_unavailable(self):
        with open("/proc/mounts") as f:
            if " cgroup2 " not in f.read():
                self.skipTest("no cgroup2 mount")
        rc, err = run_jailer(self.args() + ["--cgroup-version", "2", "--cgroup",
                                            "nosuchctl.max=1"])
        self.assertEqual(rc, 1)
        self.assertIn("Controller nosuchctl is unavailable", err)

    def test_netns_errors(self):
        rc, err = run_jailer(self.args() + ["--netns", "/nonexistent/ns"])
        self.assertEqual(rc, 1)
        self.assertIn("Failed to open file /nonexistent/ns: No such file or directory", err)
        rc, err = run_jailer(self.args(id="vm-2") + ["--netns", FIRECRACKER])
        self.assertEqual(rc, 1)
        self.assertIn("Failed to join network namespace: netns: Invalid argument (os error 22)",
                      err)


class JailLayout(unittest.TestCase):
    def test_layout_owner_modes_pidfile(self):
        j = Jail(self, cgroups=["memory.limit_in_bytes=268435456", "cpu.cfs_quota_us=200000",
                                "cpu.cfs_period_us=100000"]).started()
        self.assertEqual(j.proc.wait(5), 0, "daemonized jailer exits 0")
        st = os.stat(j.root)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (UID, UID, 0o700))
        for d in ("dev", "dev/net", "run"):
            st = os.stat(os.path.join(j.root, d))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (UID, 0o700), d)
        for d, (ma, mi) in (("dev/net/tun", (10, 200)), ("dev/kvm", (10, 232)),
                            ("dev/urandom", (1, 9))):
            st = os.stat(os.path.join(j.root, d))
            self.assertTrue(stat.S_ISCHR(st.st_mode), d)
            self.assertEqual((os.major(st.st_rdev), os.minor(st.st_rdev)), (ma, mi))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (UID, 0o600), d)
        st = os.stat(os.path.join(j.root, "firecracker"))
        self.assertEqual(st.st_uid, UID)
        self.assertEqual(stat.S_IMODE(st.st_mode), stat.S_IMODE(os.stat(FIRECRACKER).st_mode))
        # The pid file names the process that serves the API, jailed and unprivileged.
        with open("/proc/%d/status" % j.pid) as f:
            status = f.read()
        self.assertIn("Uid:\t%d\t%d\t%d\t%d" % ((UID,) * 4), status)
        self.assertIn("Gid:\t%d\t%d\t%d\t%d" % ((UID,) * 4), status)
        self.assertRegex(status, r"Groups:\s*\n")
        self.assertEqual(os.readlink("/proc/%d/root" % j.pid), j.root)
        self.assertEqual(os.readlink("/proc/%d/cwd" % j.pid), j.root)
        self.assertEqual(os.stat(j.sock).st_uid, UID)
        self.assertNotEqual(os.getsid(j.pid), os.getsid(0), "setsid")
        with open("/proc/%d/fd/0" % j.pid, "rb"):
            pass
        self.assertEqual(os.readlink("/proc/%d/fd/1" % j.pid), "/dev/null")
        # cgroups (v1 here): values written and the VMM is in the VM's cgroups.
        with open("/proc/%d/cgroup" % j.pid) as f:
            cg = f.read()
        self.assertIn(":memory:/%s/vm-1\n" % CG_PARENT, cg)
        with open("/sys/fs/cgroup/memory/%s/vm-1/memory.limit_in_bytes" % CG_PARENT) as f:
            self.assertEqual(f.read().strip(), "268435456")
        with open("/sys/fs/cgroup/cpu/%s/vm-1/cpu.cfs_quota_us" % CG_PARENT) as f:
            self.assertEqual(f.read().strip(), "200000")
        rep = fcctl.jailer_report(j.vdir)
        self.assertEqual(rep["firecracker_pid"], j.pid)
        self.assertEqual(rep["firecracker_argv"][:3], ["/firecracker", "--id", "vm-1"])
        self.assertEqual(rep["firecracker_argv"][3::2][:3],
                         ["--start-time-us", "--start-time-cpu-us", "--parent-cpu-time-us"])
        self.assertIn({"path": "/sys/fs/cgroup/memory/%s/vm-1/memory.limit_in_bytes" % CG_PARENT,
                       "value": "268435456"}, rep["cgroup_writes"])
        with open("/proc/%d/limits" % j.pid) as f:
            self.assertRegex(f.read(), r"Max open files\s+2048\s+2048")
        ev = fcctl.events(j.vdir, "firecracker_start")[0]
        self.assertEqual((ev["uid"], ev["gid"], ev["cwd"]), (UID, UID, "/"))

    def test_reused_jail_fails(self):
        j = Jail(self).started()
        j.kill()
        rc, err = run_jailer(j.argv[1:])
        self.assertEqual(rc, 1)
        self.assertIn("Failed to create /dev/net/tun via mknod inside the jail: File exists "
                      "(os error 17)", err)

    def test_symlinked_exec_names_the_jail(self):
        d = tempfile.mkdtemp(prefix="fakefc-exec-")
        self.addCleanup(shutil.rmtree, d, True)
        real = os.path.join(d, "firecracker-v1.16.1-x86_64")
        shutil.copy2(FIRECRACKER, real)
        link = os.path.join(d, "firecracker")
        os.symlink(real, link)
        j = Jail(self, exec_file=link).started()
        self.assertTrue(j.root.endswith("/firecracker-v1.16.1-x86_64/vm-1/root"))
        self.assertTrue(os.path.isfile(os.path.join(j.root, "firecracker-v1.16.1-x86_64")))
        self.assertTrue(os.path.isfile(os.path.join(j.root, "firecracker-v1.16.1-x86_64.pid")))

    def test_foreground_pid_is_jailer_pid(self):
        j = Jail(self, daemonize=False).started()
        self.assertEqual(j.pid, j.proc.pid)
        self.assertIsNone(j.proc.poll())

    def test_existing_api_socket(self):
        def prepare(j):
            os.makedirs(os.path.join(j.root, "run"))
            open(j.sock, "w").close()
        j = Jail(self, daemonize=False, prepare=prepare)
        j.proc.wait(10)
        self.assertEqual(j.proc.returncode, 1)
        self.assertIn(b"Failed to open the API socket at: /run/firecracker.socket. Check that it "
                      b"is not already used.", j.proc.stderr.read())


class Api(unittest.TestCase):
    def setUp(self):
        self.j = Jail(self).started()
        self.c = self.j.client()

    def fault(self, r, msg, status=400):
        self.assertEqual(r.status, status, r.raw)
        self.assertEqual(r.fault(), msg)

    def test_wire_format(self):
        r = self.c.put("/boot-source", {"kernel_image_path": "nope"})
        body = (b'{"fault_message":"Boot source error: The kernel file cannot be opened: No such '
                b'file or directory (os error 2)"}')
        self.assertEqual(r.raw, b"HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: "
                         b"keep-alive\r\nContent-Type: application/json\r\nContent-Length: %d"
                         b"\r\n\r\n" % len(body) + body)
        self.j.put_file("vmlinux")
        r = self.c.put("/boot-source", {"kernel_image_path": "vmlinux"})
        self.assertEqual(r.raw, b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: "
                         b"keep-alive\r\n\r\n")
        r = self.c.get("/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b'{"id":"vm-1","state":"Not started","vmm_version":'
                         b'"1.17.0-dev","app_name":"Firecracker"}')
        self.assertEqual(self.c.get("/version").json(), {"firecracker_version": "1.17.0-dev"})
        self.assertEqual(self.c.get("/machine-config").body,
                         b'{"vcpu_count":1,"mem_size_mib":128,"smt":false,'
                         b'"track_dirty_pages":false,"huge_pages":"None"}')
        r = self.c.put("/vsock", {"guest_cid": 3, "uds_path": "v.sock", "vsock_id": "x"})
        self.assertEqual(r.status, 204)
        self.assertIn(("Deprecation", "true"), r.headers)

    def test_expect_continue_and_limits(self):
        s = self.c.sock
        body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
        s.sendall(b"PUT /machine-config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d"
                  b"\r\n\r\n" % len(body))
        r = self.c.read_response()
        self.assertEqual(r.status, 100)
        self.assertTrue(r.raw.startswith(b"HTTP/1.1 100 \r\n"))
        s.sendall(body)
        self.assertEqual(self.c.read_response().status, 204)
        self.assertEqual(self.c.get("/machine-config").json()["vcpu_count"], 2)
        r = self.c.request("PUT", "/mmds", b"x" * 51201)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.body, b'{ "error": "Request payload with size 51201 is larger than '
                         b'the limit of 51200 allowed by server.\nAll previous unanswered '
                         b'requests will be dropped." }')
        c2 = self.j.client()
        r = c2.request("POST", "/actions", "{}")
        self.assertIn(b"Invalid HTTP Method: Unsupported HTTP method.", r.body)
        self.assertEqual(c2.get("/").status, 200, "the connection survives a parse error")

    def test_max_connections(self):
        extra = [self.j.client() for _ in range(9)]
        self.assertEqual(extra[-1].get("/").status, 200)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.j.sock)
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        s.close()
        self.assertEqual(data, b"HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close"
                         b"\r\nContent-Length: 40\r\n\r\n"
                         b'{ "error": "Too many open connections" }')
        extra[0].close()
        self.j.clients.remove(extra[0])
        time.sleep(0.1)
        self.assertEqual(self.j.client().get("/").status, 200)

    def test_router_errors(self):
        f = self.fault
        f(self.c.patch("/boot-source", {"kernel_image_path": "x"}),
          "Invalid request method and/or path: PATCH boot-source.")
        f(self.c.request("GET", "/", "{}"), "GET request cannot have a body.")
        f(self.c.request("PUT", "/boot-source"), "Empty PUT request.")
        f(self.c.request("PUT", "/boot-source", ""), "Empty PUT request.")
        f(self.c.request("PATCH", "/machine-config"), "Empty PATCH request.")
        f(self.c.patch("/machine-config", {}), "Empty PATCH request.")
        f(self.c.put("/drives", {}), "The ID cannot be empty.")
        f(self.c.put("/drives/a-b", {}),
          "API Resource IDs can only contain alphanumeric characters and underscores.")
        f(self.c.put("/drives/a", {"drive_id": "b", "is_root_device": False,
                                   "path_on_host": "x"}),
          "The id from the path does not match the id from the body!")
        f(self.c.put("/network-interfaces/a", {"iface_id": "b", "host_dev_name": "t"}),
          "The id from the path [a] does not match the id from the body [b]!")
        f(self.c.get("/nope"), "Invalid request method and/or path: GET nope.")
        pre = "An error occurred when deserializing the json body of a request: "
        f(self.c.put("/machine-config", '{"mem_size_mib": 128}'),
          pre + "missing field `vcpu_count` at line 1 column 21.")
        f(self.c.put("/drives/rootfs", '{"drive_id":"rootfs","is_root_device":true,'
                     '"path_on_host":"x","read_only":true}'),
          pre + "unknown field `read_only`, expected one of `drive_id`, `partuuid`, "
          "`is_root_device`, `cache_type`, `is_read_only`, `path_on_host`, `rate_limiter`, "
          "`io_engine`, `socket` at line 1 column 73.")
        f(self.c.put("/machine-config", '{"vcpu_count": 300, "mem_size_mib": 1}'),
          pre + "invalid value: integer `300`, expected u8 at line 1 column 18.")
        f(self.c.put("/actions", '{"action_type": "Reboot"}'),
          pre + "unknown variant `Reboot`, expected one of `FlushMetrics`, `InstanceStart`, "
          "`SendCtrlAltDel` at line 1 column 24.")
        f(self.c.put("/mmds/config", '{"network_interfaces": [], "version": "V3"}'),
          pre + "unknown variant `V3`, expected `V1` or `V2` at line 1 column 42.")
        f(self.c.put("/network-interfaces/e", {"iface_id": "e", "host_dev_name": "t",
                                               "guest_mac": "zz:00:00:00:00:00"}),
          pre + "The provided MAC address is invalid. at line 1 column 73.")
        f(self.c.put("/machine-config", {"vcpu_count": 3, "mem_size_mib": 128, "smt": True}),
          "Machine config error: The number of vCPUs must be greater than 0, less than 32 and "
          "must be 1 or an even number if SMT is enabled.")
        f(self.c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 0}),
          "Machine config error: The memory size (MiB) is either 0, or not a multiple of the "
          "configured page size.")
        # metrics do not deny unknown fields
        self.assertEqual(self.c.put("/metrics", {"metrics_path": "m", "x": 1}).status, 204)

    def test_phases(self):
        f = self.fault
        f(self.c.put("/actions", {"action_type": "SendCtrlAltDel"}), BEFORE)
        f(self.c.put("/actions", {"action_type": "FlushMetrics"}), BEFORE)
        f(self.c.patch("/vm", {"state": "Paused"}), BEFORE)
        f(self.c.put("/actions", {"action_type": "InstanceStart"}),
          "Start microvm error: Cannot start microvm without kernel configuration.")
        self.assertEqual(self.c.get("/").json()["state"], "Not started")
        # a malformed body in the wrong phase gets the parse error
        self.j.boot_minimal(self.c)
        self.assertEqual(self.c.get("/").json()["state"], "Running")
        f(self.c.put("/actions", {"action_type": "InstanceStart"}), AFTER)
        f(self.c.put("/boot-source", {"kernel_image_path": "vmlinux"}), AFTER)
        f(self.c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), AFTER)
        f(self.c.put("/logger", {"level": "Info"}), AFTER)
        f(self.c.put("/metrics", {"metrics_path": "m"}), AFTER)
        f(self.c.put("/vsock", {"guest_cid": 3, "uds_path": "v"}), AFTER)
        f(self.c.put("/drives/d", {"drive_id": "d", "is_root_device": False,
                                   "path_on_host": "vmlinux"}), "PCI is not enabled")
        self.assertTrue(self.c.put("/machine-config", '{"vcpu_count": "1"}').fault()
                        .startswith("An error occurred when deserializing"))
        self.assertEqual(self.c.patch("/vm", {"state": "Paused"}).status, 204)
        self.assertEqual(self.c.get("/").json()["state"], "Paused")
        self.assertEqual(self.c.patch("/vm", {"state": "Paused"}).status, 204)
        self.assertEqual(self.c.patch("/vm", {"state": "Resumed"}).status, 204)
        self.assertEqual(self.c.get("/").json()["state"], "Running")
        f(self.c.get("/mmds"), "MMDS error: The MMDS data store is not initialized.")
        self.assertEqual(self.c.put("/actions", {"action_type": "FlushMetrics"}).status, 204)

    def test_files_opened_as_jailed_uid(self):
        f = self.fault
        j = self.j
        j.put_file("vmlinux", owner=False)   # root-owned 0600: unreadable for the VM's uid
        f(self.c.put("/boot-source", {"kernel_image_path": "vmlinux"}),
          "Boot source error: The kernel file cannot be opened: Permission denied (os error 13)")
        j.put_file("k2")
        f(self.c.put("/boot-source", {"kernel_image_path": "k2", "initrd_path": "nope"}),
          "Boot source error: The initrd file cannot be opened due to invalid path or invalid "
          "permissions. No such file or directory (os error 2)")
        f(self.c.put("/boot-source", {"kernel_image_path": "k2", "boot_args": "a" * 2048}),
          "Boot source error: The kernel command line is invalid: Command line string is too "
          "large")
        self.assertEqual(self.c.put("/boot-source", {"kernel_image_path": "/k2"}).status, 204)
        j.put_file("ro.ext4", owner=False, mode=0o644)
        drv = {"drive_id": "rootfs", "is_root_device": True, "path_on_host": "ro.ext4"}
        f(self.c.put("/drives/rootfs", dict(drv, is_read_only=False)),
          "Drive config error: Unable to create the virtio block device: Virtio backend error: "
          "Error manipulating the backing file: Permission denied (os error 13) ro.ext4")
        self.assertEqual(self.c.put("/drives/rootfs", dict(drv, is_read_only=True)).status, 204)
        self.assertEqual(self.c.put("/drives/rootfs", dict(drv, is_read_only=True)).status, 204)
        f(self.c.put("/drives/other", dict(drv, drive_id="other", is_read_only=True)),
          "Drive config error: A root block device already exists!")
        f(self.c.put("/drives/d1", {"drive_id": "d1", "is_root_device": False,
                                    "path_on_host": "missing"}),
          "Drive config error: Unable to create the virtio block device: Virtio backend error: "
          "Error manipulating the backing file: No such file or directory (os error 2) missing")
        f(self.c.put("/drives/d1", {"drive_id": "d1", "is_root_device": False}),
          "Drive config error: Unable to create the virtio block device: Invalid block config.")
        j.put_file("data.ext4")
        self.assertEqual(self.c.put("/drives/data", {"drive_id": "data", "is_root_device": False,
                                                     "path_on_host": "data.ext4"}).status, 204)
        # logger / metrics files are created by the jailed uid
        self.assertEqual(self.c.put("/logger", {"log_path": "fc.log", "level": "debug",
                                                "show_level": True}).status, 204)
        st = os.stat(os.path.join(j.root, "fc.log"))
        self.assertEqual(st.st_uid, UID)
        f(self.c.put("/logger", {"log_path": "/dev/nope/x"}),
          "Logger error: Failed to open target file: No such file or directory (os error 2)")
        self.assertEqual(self.c.put("/metrics", {"metrics_path": "metrics.json",
                                                 "emit_id": True}).status, 204)
        f(self.c.put("/metrics", {"metrics_path": "m2"}),
          "Metrics error: Cannot initialize the metrics system due to bad user input: "
          "Reinitialization of metrics not allowed.")
        self.assertEqual(self.c.put("/actions", {"action_type": "InstanceStart"}).status, 204)
        self.assertEqual(self.c.put("/actions", {"action_type": "FlushMetrics"}).status, 204)
        with open(os.path.join(j.root, "metrics.json")) as fh:
            lines = [json.loads(x) for x in fh]
        self.assertEqual(len(lines), 2)
        self.assertEqual(list(lines[0])[:2], ["utc_timestamp_ms", "id"])
        self.assertEqual(lines[0]["id"], "vm-1")
        for g in ("block_rootfs", "block_data", "vcpu", "vmm", "vsock", "net", "i8042"):
            self.assertIn(g, lines[1])
        ev = fcctl.events(j.vdir, "instance_started")[0]
        self.assertEqual(ev["cmdline"], "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux "
                         "i8042.nomux i8042.dumbkbd swiotlb=noforce pci=off root=/dev/vda ro "
                         "virtio_mmio.device=4K@0xc0001000:5 virtio_mmio.device=4K@0xc0002000:6")
        with open(os.path.join(j.root, "fc.log")) as fh:
            self.assertIn("[vm-1:main:INFO]", fh.read())

    def test_vsock_bind_and_connect_without_agent(self):
        f = self.fault
        os.makedirs(os.path.join(self.j.root, "vs"))
        os.chown(os.path.join(self.j.root, "vs"), UID, UID)
        self.assertEqual(self.c.put("/vsock", {"guest_cid": 3, "uds_path": "/vs/v.sock"}).status,
                         204)
        host = os.path.join(self.j.root, "vs/v.sock")
        self.assertTrue(stat.S_ISSOCK(os.stat(host).st_mode))
        self.assertEqual(os.stat(host).st_uid, UID)
        # A second PUT deletes the old socket file first, then binds again.
        self.assertEqual(self.c.put("/vsock", {"guest_cid": 3, "uds_path": "/vs/v.sock"}).status,
                         204)
        open(os.path.join(self.j.root, "vs/taken"), "w").close()
        f(self.c.put("/vsock", {"guest_cid": 3, "uds_path": "/vs/taken"}),
          "Vsock config error: Cannot create backend for vsock device: Error binding to the "
          "host-side Unix socket: Address in use (os error 98)")
        os.makedirs(os.path.join(self.j.root, "rootonly"))
        f(self.c.put("/vsock", {"guest_cid": 3, "uds_path": "/rootonly/v.sock"}),
          "Vsock config error: Cannot create backend for vsock device: Error binding to the "
          "host-side Unix socket: Permission denied (os error 13)")
        self.assertEqual(self.c.put("/vsock", {"guest_cid": 3, "uds_path": "/vs/v.sock"}).status,
                         204)
        self.assertEqual(vsock_connect(host, 52), b"")    # before boot: closed
        self.j.boot_minimal(self.c)
        self.assertEqual(vsock_connect(host, 52), b"")    # nobody listens in the guest


class Vsock(unittest.TestCase):
    def test_agent_cmd_echo(self):
        j = Jail(self, knobs={"agent_cmd": "cat", "agent_ports": [52]}).started()
        c = j.client()
        self.assertEqual(c.put("/vsock", {"guest_cid": 3, "uds_path": "v.sock"}).status, 204)
        host = os.path.join(j.root, "v.sock")
        self.assertEqual(vsock_connect(host, 52), b"")    # before InstanceStart
        j.boot_minimal(c)
        ok, echo = vsock_connect(host, 52, b"hello agent\n")
        self.assertEqual(ok, b"OK 1073741824\n")
        self.assertEqual(echo, b"hello agent\n")
        ok, echo = vsock_connect(host, 52, b"again\n")
        self.assertEqual(ok, b"OK 1073741825\n")
        self.assertEqual(echo, b"again\n")
        self.assertEqual(vsock_connect(host, 53), b"")    # no listener on that port
        spawned = wait_for(lambda: [e["pid"] for e in fcctl.events(j.vdir, "agent_spawned")]
                           if len(fcctl.events(j.vdir, "agent_spawned")) == 2 else None)
        self.assertEqual(len(spawned or []), 2)
        helper = [p for p in os.listdir("/proc") if p.isdigit() and
                  _read("/proc/%s/comm" % p).strip() == "fc-agent-helper" and
                  _read("/proc/%s/stat" % p).split(") ")[1].split()[1] == str(j.pid)]
        self.assertEqual(len(helper), 1, "the agent helper is the VMM's child")
        # The agents die with the VMM (the guest dies with it).
        j.kill()
        for p in spawned + [int(helper[0])]:
            self.assertTrue(wait_for(lambda: not pid_alive(p), 5), "process %d survived" % p)


    def test_agent_reboots_guest(self):
        agent = 'read line; echo "ack $line"; echo poweroff >&3; sleep 0.3; echo reboot >&3; sleep 30'
        j = Jail(self, daemonize=False, knobs={"agent_cmd": agent}).started()
        c = j.client()
        self.assertEqual(c.put("/vsock", {"guest_cid": 3, "uds_path": "v.sock"}).status, 204)
        j.boot_minimal(c)
        ok, reply = vsock_connect(os.path.join(j.root, "v.sock"), 1024, b"stop\n")
        self.assertEqual((ok, reply), (b"OK 1073741824\n", b"ack stop\n"))
        self.assertEqual(j.proc.wait(5), 0)
        guest = [e["what"] for e in fcctl.events(j.vdir, "guest")]
        self.assertEqual(guest, ["poweroff", "reboot"])
        self.assertEqual(fcctl.events(j.vdir, "exit")[0]["reason"], "guest reboot (i8042 reset)")


class Knobs(unittest.TestCase):
    def test_ctrl_alt_del_exits_zero(self):
        j = Jail(self, daemonize=False).started()
        c = j.client()
        j.boot_minimal(c)
        self.assertEqual(c.put("/actions", {"action_type": "SendCtrlAltDel"}).status, 204)
        self.assertEqual(j.proc.wait(5), 0)
        self.assertTrue(os.path.exists(j.sock), "Firecracker never deletes its API socket")
        self.assertEqual(fcctl.events(j.vdir, "exit")[0]["code"], 0)
        fcctl.assert_no_errors(j.vdir)
        self.assertEqual(fcctl.sequence(j.vdir), ["PUT /boot-source", "PUT /actions InstanceStart",
                                                  "PUT /actions SendCtrlAltDel"])

    def test_ctrl_alt_del_waits_while_paused(self):
        j = Jail(self, daemonize=False).started()
        c = j.client()
        j.boot_minimal(c)
        self.assertEqual(c.patch("/vm", {"state": "Paused"}).status, 204)
        self.assertEqual(c.put("/actions", {"action_type": "SendCtrlAltDel"}).status, 204)
        time.sleep(0.5)
        self.assertIsNone(j.proc.poll())
        self.assertEqual(c.patch("/vm", {"state": "Resumed"}).status, 204)
        self.assertEqual(j.proc.wait(5), 0)

    def test_ignore_ctrl_alt_del(self):
        j = Jail(self, daemonize=False, knobs={"ignore_ctrl_alt_del": True}).started()
        c = j.client()
        j.boot_minimal(c)
        for _ in range(4):
            self.assertEqual(c.put("/actions", {"action_type": "SendCtrlAltDel"}).status, 204)
        r = c.put("/actions", {"action_type": "SendCtrlAltDel"})
        self.assertEqual(r.fault(), "Internal VMM error: I8042 error: i8042 internal buffer full.")
        time.sleep(0.5)
        self.assertIsNone(j.proc.poll())
        with self.assertRaises(AssertionError):
            fcctl.assert_no_errors(j.vdir)

    def test_crash_after_start(self):
        j = Jail(self, daemonize=False, knobs={"crash_after_start_ms": 100,
                                               "crash_exit_code": 3}).started()
        j.boot_minimal(j.client())
        self.assertEqual(j.proc.wait(5), 3)
        j2 = Jail(self, vm_id="vm-2", daemonize=False,
                  knobs={"crash_after_start_ms": 50, "crash_signal": "SIGKILL"}).started()
        j2.boot_minimal(j2.client())
        self.assertEqual(j2.proc.wait(5), -signal.SIGKILL)

    def test_crash_on_request(self):
        j = Jail(self, daemonize=False, knobs={"crash_on": "PUT /machine-config",
                                               "crash_signal": "SIGABRT"}).started()
        c = j.client()
        self.assertEqual(c.get("/").status, 200)
        with self.assertRaises(ConnectionError):
            c.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
        self.assertEqual(j.proc.wait(5), -signal.SIGABRT)
        self.assertIsNone(fcctl.calls(j.vdir)[-1]["status"])

    def test_hang_refuse_by_id(self):
        knobs = {"default": {"refuse": {"PUT /machine-config": "no memory for you"}},
                 "by_id": {"vm-2": {"hang_on": "InstanceStart", "refuse": {}}}}
        j1 = Jail(self, knobs=knobs).started()
        c1 = j1.client()
        r = c1.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
        self.assertEqual((r.status, r.fault()), (400, "no memory for you"))
        j2 = Jail(self, vm_id="vm-2", knobs=knobs).started()
        c2 = j2.client(timeout=1.0)
        self.assertEqual(c2.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
                         .status, 204)
        j2.put_file("vmlinux")
        self.assertEqual(c2.put("/boot-source", {"kernel_image_path": "vmlinux"}).status, 204)
        with self.assertRaises(socket.timeout):
            c2.put("/actions", {"action_type": "InstanceStart"})
        unanswered = [c for c in fcctl.calls(j2.vdir) if c["status"] is None]
        self.assertEqual(len(unanswered), 1)
        self.assertTrue(pid_alive(j2.pid))

    def test_start_failure_and_delay(self):
        j = Jail(self, knobs={"exit_on_start": "Kvm error: Error creating KVM object: "
                              "Permission denied (os error 13)"}).started()
        c = j.client()
        j.put_file("vmlinux")
        c.put("/boot-source", {"kernel_image_path": "vmlinux"})
        r = c.put("/actions", {"action_type": "InstanceStart"})
        self.assertEqual(r.fault(), "Start microvm error: Kvm error: Error creating KVM object: "
                         "Permission denied (os error 13)")
        self.assertEqual(c.get("/").json()["state"], "Not started")
        j2 = Jail(self, vm_id="vm-2", knobs={"boot_delay_ms": 400}).started()
        c2 = j2.client()
        t0 = time.monotonic()
        j2.boot_minimal(c2)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)


class Network(unittest.TestCase):
    def test_tap_checked_in_netns(self):
        ns = "fakefc-%d" % os.getpid()
        n = Netns(self, ns)
        n.ip("tuntap", "add", "tap0", "mode", "tap", "user", str(UID))
        n.ip("tuntap", "add", "tapx", "mode", "tap", "user", "0")
        j = Jail(self, netns=ns).started()
        with open("/proc/%d/ns/net" % j.pid) as _:
            pass
        self.assertEqual(os.stat("/proc/%d/ns/net" % j.pid).st_ino,
                         os.stat("/var/run/netns/" + ns).st_ino)
        c = j.client()
        pre = "Network config error: Could not create the network device: Open tap device failed: "
        r = c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                               "guest_mac": "06:00:AC:10:00:02"})
        self.assertEqual(r.status, 204, r.body)
        # same TAP again under another id: busy (kernel)
        r = c.put("/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap0"})
        self.assertEqual(r.fault(), pre + "Error while creating ifreq structure: Resource "
                         "busy (os error 16). Invalid TUN/TAP Backend provided by tap0. "
                         "Check our documentation on setting up the network devices.")
        # a TAP that does not exist in the netns, or belongs to someone else: EPERM
        for name in ("tap9", "tapx"):
            r = c.put("/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": name})
            self.assertEqual(r.fault(), pre + "Error while creating ifreq structure: Operation "
                             "not permitted (os error 1). Invalid TUN/TAP Backend provided by "
                             "%s. Check our documentation on setting up the network devices."
                             % name)
        r = c.put("/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "a" * 16})
        self.assertEqual(r.fault(), pre + "Invalid interface name")
        r = c.put("/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap0",
                                               "guest_mac": "06:00:ac:10:00:02"})
        self.assertEqual(r.fault(), "Network config error: The MAC address is already in use: "
                         "06:00:ac:10:00:02")
        # re-PUT of the same id replaces the device (the TAP is released first)
        r = c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                               "mtu": 1500})
        self.assertEqual(r.status, 204, r.body)
        r = c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0",
                                               "mtu": 67})
        self.assertEqual(r.fault(), "Network config error: Could not create the network device: "
                         "MTU 67 is out of range [68, 65535]")
        self.assertEqual(c.put("/mmds/config", {"network_interfaces": ["eth0"],
                                                "version": "V2"}).status, 204)
        self.assertEqual(c.put("/mmds", {"vm": {"ipv6": "fd00::2"}}).status, 204)
        j.boot_minimal(c)
        self.assertEqual(c.get("/mmds").json(), {"vm": {"ipv6": "fd00::2"}})
        self.assertEqual(c.patch("/mmds", {"vm": {"ipv6": None, "x": 1}}).status, 204)
        self.assertEqual(c.get("/mmds").json(), {"vm": {"x": 1}})


class PidNamespace(unittest.TestCase):
    def test_new_pid_ns(self):
        j = Jail(self, daemonize=False, jailer_args=["--new-pid-ns"]).started()
        self.assertEqual(j.proc.wait(5), 0, "the parent writes the pid file and exits 0")
        self.assertNotEqual(j.pid, j.proc.pid)
        self.assertRegex(_read("/proc/%d/status" % j.pid), r"NSpid:\t%d\t1\n" % j.pid)
        c = j.client()
        self.assertEqual(c.get("/").json()["state"], "Not started")
        self.assertEqual(fcctl.jailer_report(j.vdir)["firecracker_pid"], j.pid)


class Helper(unittest.TestCase):
    def test_fcctl_check(self):
        j = Jail(self).started()
        c = j.client()
        j.boot_minimal(c)
        cli = [sys.executable, os.path.join(HERE, "fcctl.py")]
        p = subprocess.run(cli + ["check", j.vdir], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout)
        p = subprocess.run(cli + ["seq", j.vdir], capture_output=True, text=True)
        self.assertEqual(p.stdout.split("\n")[:2], ["PUT /boot-source",
                                                    "PUT /actions InstanceStart"])
        c.put("/boot-source", {"kernel_image_path": "vmlinux"})
        p = subprocess.run(cli + ["check", j.vdir], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("PUT /boot-source -> 400", p.stdout)


class CleanEnvironment(unittest.TestCase):
    def test_knobs_and_records_in_chroot_base(self):
        """A caller that spawns the jailer with an empty environment can still use knobs and
        keep a record that survives the removal of the jail."""
        def prepare(j):
            fcctl.write_knobs(j.base, by_id={"vm-1": {"refuse": {"GET /version": "nope"}}})
            fcctl.enable_records(j.base)
        j = Jail(self, prepare=prepare).started()
        c = j.client()
        self.assertEqual(c.get("/version").fault(), "nope")
        j.boot_minimal(c)
        j.kill()
        shutil.rmtree(j.vdir)
        rf = fcctl.record_file(j.base, "vm-1")
        self.assertEqual(fcctl.sequence(rf), ["GET /version", "PUT /boot-source",
                                              "PUT /actions InstanceStart"])
        self.assertEqual(fcctl.events(rf, "jailer")[0]["uid"], UID)
        self.assertEqual(len(fcctl.errors(rf)), 1)


class FirecrackerFlags(unittest.TestCase):
    def run_fc(self, *args):
        return subprocess.run([FIRECRACKER] + list(args), capture_output=True, text=True,
                              timeout=10)

    def test_flags(self):
        p = self.run_fc("--id=x")
        self.assertEqual(p.returncode, 153)
        self.assertIn("Arguments parsing error: Found argument 'id=x' which wasn't expected, or "
                      "isn't valid in this context. \n\nFor more information try --help.",
                      p.stderr)
        self.assertEqual(self.run_fc("--no-api").returncode, 153)
        self.assertEqual(self.run_fc("--level", "Loud").returncode, 152)
        self.assertEqual(self.run_fc("--id", "bad_id").returncode, -signal.SIGABRT)
        self.assertEqual(self.run_fc("--version").returncode, 0)

    def test_config_file_without_jailer(self):
        d = tempfile.mkdtemp(prefix="fakefc-cfg-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "vmlinux"), "w") as f:
            f.write("k")
        cfg = {"boot-source": {"kernel_image_path": os.path.join(d, "vmlinux")}, "drives": [],
               "machine-config": {"vcpu_count": 2, "mem_size_mib": 256}}
        with open(os.path.join(d, "vm.json"), "w") as f:
            json.dump(cfg, f)
        sock = os.path.join(d, "api.sock")
        rec = os.path.join(d, "calls.jsonl")
        p = subprocess.Popen([FIRECRACKER, "--api-sock", sock, "--config-file",
                              os.path.join(d, "vm.json")], env=dict(os.environ,
                                                                   FAKE_FC_RECORD=rec),
                             stdout=subprocess.DEVNULL)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        self.assertTrue(wait_for(lambda: os.path.exists(sock)))
        time.sleep(0.05)
        c = fcctl.Client(sock)
        self.addCleanup(c.close)
        self.assertEqual(c.get("/").json()["state"], "Running")
        self.assertEqual(c.get("/machine-config").json()["vcpu_count"], 2)
        self.assertEqual(c.put("/actions", {"action_type": "SendCtrlAltDel"}).status, 204)
        self.assertEqual(p.wait(5), 0)
        cfg["boot-source"]["kernel_image_path"] = "/nonexistent"
        with open(os.path.join(d, "bad.json"), "w") as f:
            json.dump(cfg, f)
        r = self.run_fc("--api-sock", sock + "2", "--config-file", os.path.join(d, "bad.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("Configuration for VMM from one single json failed: Boot source error",
                      r.stderr)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: the fake jailer needs root (chroot, mknod, setns, cgroups)")
        sys.exit(77)
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        print("SKIP: needs the cgroup v1 memory hierarchy")
        sys.exit(77)
    unittest.main(verbosity=2)
