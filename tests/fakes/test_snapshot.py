#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The fake's pause, snapshot/create and snapshot/load against docs/firecracker.md N.
Needs root (exit 77 otherwise)."""
import os
import shutil
import stat
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import fcctl  # noqa: E402
from fakefix import (AFTER, BEFORE, UID, Jail, Netns, pid_alive, vsock_connect,  # noqa: E402
                     wait_for)

RUNNING_ERR = ("Create snapshot error: Cannot save the microVM state: Operation not allowed: "
               "save/restore unavailable while running")
NOT_ALLOWED = ("Load snapshot error: Loading a microVM snapshot not allowed after configuring "
               "boot-specific resources.")
SERDE = "An error occurred when deserializing the json body of a request: "
LOAD_ERR = "Load snapshot error: Failed to restore from snapshot: "
MEM = {"backend_type": "File", "backend_path": "mem"}


def fault(test, r, msg):
    test.assertEqual(r.status, 400, r.raw)
    test.assertEqual(r.fault(), msg)


def exit_code(j):
    """The exit code the fake recorded (daemonized VMMs are not our children)."""
    ev = wait_for(lambda: fcctl.events(j.vdir, "exit"), 5)
    if not ev:
        return None
    wait_for(lambda: not pid_alive(j.pid), 5)
    return ev[-1]["code"]


class Snap:
    """A booted VM with a root disk, a data disk and vsock, paused and snapshotted; its files
    moved out of the jail as a runtime must before the jail goes."""

    def __init__(self, test, knobs=None, netns=None, nets=(), mem_mib=256, vsock=True,
                 vm_id="snap-a"):
        self.test = test
        self.j = Jail(test, vm_id=vm_id, knobs=knobs, netns=netns).started()
        c = self.c = self.j.client()
        self.j.put_file("rootfs.ext4", mode=0o400)
        self.j.put_file("data.ext4")
        ok = lambda r: test.assertEqual(r.status, 204, r.raw)  # noqa: E731
        ok(c.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": mem_mib}))
        ok(c.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": "rootfs.ext4",
                                    "is_root_device": True, "is_read_only": True}))
        ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": "data.ext4",
                                  "is_root_device": False, "is_read_only": False}))
        for n in nets:
            ok(c.put("/network-interfaces/" + n[0], {"iface_id": n[0], "host_dev_name": n[1]}))
        if vsock:
            ok(c.put("/vsock", {"guest_cid": 3, "uds_path": "v.sock"}))
        self.j.boot_minimal(c)
        self.boot_id = fcctl.events(self.j.vdir, "instance_started")[0]["boot_id"]
        ok(c.patch("/vm", {"state": "Paused"}))
        ok(c.put("/snapshot/create", {"snapshot_path": "state", "mem_file_path": "mem"}))
        self.out = os.path.join(self.j.base, "saved")
        os.mkdir(self.out)
        for f in ("state", "mem", "rootfs.ext4", "data.ext4"):
            os.rename(os.path.join(self.j.root, f), os.path.join(self.out, f))

    def jail(self, vm_id="snap-b", files=("state", "mem", "rootfs.ext4", "data.ext4"),
             knobs=None, netns=None):
        """A new jail with the same in-jail layout (hard links, as Firecracker's tests do)."""
        def prepare(j):
            os.makedirs(j.root, exist_ok=True)
            for f in files:
                os.link(os.path.join(self.out, f), os.path.join(j.root, f))
        j = Jail(self.test, vm_id=vm_id, knobs=knobs, netns=netns, prepare=prepare).started()
        return j, j.client()


class Pause(unittest.TestCase):
    def test_patch_vm(self):
        j = Jail(self).started()
        c = j.client()
        fault(self, c.patch("/vm", {"state": "Paused"}), BEFORE)
        fault(self, c.patch("/vm", {"state": "Paused", "x": 1}),
              SERDE + "unknown field `x`, expected `state` at line 1 column 23.")
        j.boot_minimal(c)
        for want, state in (("Paused", "Paused"), ("Paused", "Paused"), ("Resumed", "Running"),
                            ("Resumed", "Running")):
            r = c.patch("/vm", {"state": want})
            self.assertEqual(r.status, 204, r.raw)
            self.assertEqual(c.get("/").json()["state"], state)
        self.assertEqual([e["event"] for e in fcctl.events(j.vdir)
                          if e["event"] in ("paused", "resumed")], ["paused", "resumed"])
        fault(self, c.patch("/vm", {"state": "Stopped"}),
              SERDE + "unknown variant `Stopped`, expected `Paused` or `Resumed` at line 1 "
              "column 19.")


class Create(unittest.TestCase):
    def test_rules(self):
        j = Jail(self).started()
        c = j.client()
        body = {"snapshot_path": "state", "mem_file_path": "mem"}
        fault(self, c.put("/snapshot/create", body), BEFORE)
        fault(self, c.put("/snapshot/create", {"snapshot_path": "state"}),
              SERDE + "missing field `mem_file_path` at line 1 column 26.")
        self.assertEqual(c.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 300}).status,
                         204)
        j.boot_minimal(c)
        fault(self, c.put("/snapshot/create", body), RUNNING_ERR)
        self.assertFalse(os.path.exists(os.path.join(j.root, "state")), "a failed create "
                         "writes nothing")
        fault(self, c.put("/snapshot/create", dict(body, extra=1)),
              SERDE + "unknown field `extra`, expected one of `snapshot_type`, `snapshot_path`, "
              "`mem_file_path` at line 1 column 58.")
        self.assertEqual(c.patch("/vm", {"state": "Paused"}).status, 204)
        # An existing file (bigger than what is written) is truncated and overwritten.
        old = j.put_file("state", b"y" * 100000, mode=0o644)
        self.assertEqual(c.put("/snapshot/create", body).status, 204)
        for name in ("state", "mem"):
            st = os.stat(os.path.join(j.root, name))
            self.assertEqual((st.st_uid, st.st_gid), (UID, UID), name)
        self.assertLess(os.path.getsize(old), 100000)
        with open(old, "rb") as f:
            self.assertTrue(f.read().startswith(b"FAKEFC-SNAPSHOT\n"))
        self.assertEqual(os.path.getsize(os.path.join(j.root, "mem")), 300 << 20)
        self.assertEqual(c.get("/").json()["state"], "Paused")
        r = c.put("/snapshot/create", dict(body, snapshot_type="Diff"))
        self.assertEqual(r.status, 204, r.raw)
        # Not writable by the jail's uid: a clear error, the VM stays paused.
        os.mkdir(os.path.join(j.root, "ro"), 0o755)
        fault(self, c.put("/snapshot/create", {"snapshot_path": "ro/state",
                                               "mem_file_path": "mem"}),
              "Create snapshot error: Cannot save the microVM state: Cannot write snapshot "
              "file: Permission denied (os error 13)")
        self.assertEqual(c.get("/").json()["state"], "Paused")
        self.assertEqual([e["snapshot_type"] for e in fcctl.events(j.vdir, "snapshot_created")],
                         ["Full", "Diff"])

    def test_vsock_transport_reset(self):
        j = Jail(self, knobs={"agent_cmd": "cat"}).started()
        c = j.client()
        self.assertEqual(c.put("/vsock", {"guest_cid": 3, "uds_path": "v.sock"}).status, 204)
        j.boot_minimal(c)
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(os.path.join(j.root, "v.sock"))
        s.sendall(b"CONNECT 1024\n")
        self.assertTrue(s.recv(64).startswith(b"OK "))
        s.sendall(b"ping\n")
        self.assertEqual(s.recv(64), b"ping\n")
        self.assertEqual(c.patch("/vm", {"state": "Paused"}).status, 204)
        self.assertEqual(c.put("/snapshot/create", {"snapshot_path": "s",
                                                    "mem_file_path": "m"}).status, 204)
        self.assertEqual(s.recv(64), b"", "the open connection is closed by the reset")
        s.close()
        self.assertEqual(c.patch("/vm", {"state": "Resumed"}).status, 204)
        ok, echo = vsock_connect(os.path.join(j.root, "v.sock"), 1024, b"again\n")
        self.assertEqual(echo, b"again\n", "the guest listener survives")
        self.assertEqual(len(fcctl.events(j.vdir, "vsock_transport_reset")), 1)


class Load(unittest.TestCase):
    def test_restore(self):
        agent = 'echo "boot=$FAKE_FC_GUEST_BOOT_ID"'
        s = Snap(self, knobs={"agent_cmd": agent})
        j, c = s.jail(knobs={"agent_cmd": agent})
        self.assertEqual(c.put("/logger", {"log_path": "fc.log", "level": "Info"}).status, 204)
        self.assertEqual(c.put("/metrics", {"metrics_path": "fc.metrics"}).status, 204)
        fault(self, c.put("/snapshot/load", {"snapshot_path": "state"}),
              SERDE + "missing field: either `mem_backend` or `mem_file_path` is required.")
        fault(self, c.put("/snapshot/load", {"snapshot_path": "state", "mem_file_path": "mem",
                                             "mem_backend": MEM}),
              SERDE + "too many fields: either `mem_backend` or `mem_file_path` exclusively is "
              "required.")
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM, "x": 1})
        self.assertEqual(r.status, 400)
        self.assertIn("unknown field `x`", r.fault())
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM,
                                     "track_dirty_pages": True, "clock_realtime": True})
        self.assertEqual(r.status, 204, r.raw)
        self.assertNotIn(("Deprecation", "true"), r.headers)
        self.assertEqual(c.get("/").json()["state"], "Paused")
        mc = c.get("/machine-config").json()
        self.assertEqual((mc["vcpu_count"], mc["mem_size_mib"], mc["track_dirty_pages"]),
                         (2, 256, True))
        fault(self, c.put("/actions", {"action_type": "InstanceStart"}), AFTER)
        fault(self, c.put("/boot-source", {"kernel_image_path": "vmlinux"}), AFTER)
        fault(self, c.put("/logger", {"level": "Info"}), AFTER)
        fault(self, c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM}),
              AFTER)
        # The guest answers on vsock once resumed, and is the same boot.
        self.assertEqual(c.patch("/vm", {"state": "Resumed"}).status, 204)
        ok, out = vsock_connect(os.path.join(j.root, "v.sock"), 1024, b"x" * 38)
        self.assertEqual(out.strip(), ("boot=" + s.boot_id).encode())
        ev = fcctl.events(j.vdir, "snapshot_loaded")[0]
        self.assertEqual((ev["drives"], ev["vsock"], ev["clock_realtime"], ev["resume_vm"]),
                         (["rootfs.ext4", "data.ext4"], "v.sock", True, False))
        self.assertEqual(os.path.getsize(os.path.join(j.root, "fc.metrics")) > 0, True)
        self.assertEqual(c.patch("/vm", {"state": "Paused"}).status, 204)
        self.assertEqual(c.put("/snapshot/create", {"snapshot_path": "state2",
                                                    "mem_file_path": "mem2"}).status, 204)

    def test_deprecated_fields_and_resume_vm(self):
        s = Snap(self)
        j, c = s.jail()
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_file_path": "mem",
                                     "enable_diff_snapshots": True, "resume_vm": True})
        self.assertEqual(r.status, 204, r.raw)
        self.assertIn(("Deprecation", "true"), r.headers)
        self.assertEqual(c.get("/").json()["state"], "Running")
        self.assertTrue(c.get("/machine-config").json()["track_dirty_pages"])

    def test_boot_path_first(self):
        s = Snap(self)
        for first in (("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256}),
                      ("PUT", "/vsock", {"guest_cid": 3, "uds_path": "v2.sock"}),
                      ("PUT", "/boot-source", {"kernel_image_path": "nope"})):
            j, c = s.jail(vm_id="bp-%d" % len(first[1]))
            c.request(first[0], first[1], first[2])
            fault(self, c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM}),
                  NOT_ALLOWED)
            self.assertEqual(c.get("/").json()["state"], "Not started", "the process survives")
            j.kill()

    def check_fatal(self, s, body, msg, files=None, prepare=None, vm_id="fatal"):
        args = {"files": files} if files is not None else {}
        j, c = s.jail(vm_id=vm_id, **args)
        if prepare:
            prepare(j)
        fault(self, c.put("/snapshot/load", dict({"snapshot_path": "state",
                                                  "mem_backend": MEM}, **body)), LOAD_ERR + msg)
        self.assertEqual(exit_code(j), 1)
        return j

    def test_fatal(self):
        s = Snap(self)
        self.check_fatal(s, {}, "Failed to build microVM from snapshot: Failed to restore "
                         "devices: Block: backing file data.ext4: No such file or directory (os "
                         "error 2)", files=("state", "mem", "rootfs.ext4"), vm_id="f1")
        self.check_fatal(s, {"network_overrides": [{"iface_id": "eth0",
                                                    "host_dev_name": "tap1"}]},
                         "Unknown Network Device.", vm_id="f2")
        nv = Snap(self, vsock=False, vm_id="snap-nv")
        self.check_fatal(nv, {"vsock_override": {"uds_path": "other.sock"}},
                         "Unknown Vsock Device.", vm_id="f3")

        def unreadable(j):
            os.chown(os.path.join(j.root, "state"), 0, 0)
            os.chmod(os.path.join(j.root, "state"), 0o600)
        try:
            self.check_fatal(s, {}, "Failed to get snapshot state from file: Failed to open "
                             "snapshot file: Permission denied (os error 13)",
                             prepare=unreadable, vm_id="f4")
        finally:
            os.chown(os.path.join(s.out, "state"), UID, UID)
        self.check_fatal(s, {}, "Failed to load guest memory: Cannot open the memory file: No "
                         "such file or directory (os error 2)",
                         files=("state", "rootfs.ext4", "data.ext4"), vm_id="f5")

    def test_corrupt_state(self):
        s = Snap(self)
        path = os.path.join(s.out, "state")
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            data[40] ^= 0x20
            f.seek(0)
            f.write(data)
        j = self.check_fatal(s, {}, "Failed to get snapshot state from file: Snapshot file CRC "
                             "validation failed")
        self.assertTrue(fcctl.events(j.vdir, "exit")[0]["reason"].startswith("snapshot/load"))

    def test_vsock_override(self):
        s = Snap(self)
        j, c = s.jail(vm_id="vo")
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM,
                                     "vsock_override": {"uds_path": "other.sock"}})
        self.assertEqual(r.status, 204, r.raw)
        self.assertTrue(stat.S_ISSOCK(os.stat(os.path.join(j.root, "other.sock")).st_mode))
        self.assertEqual(c.get("/vm/config").json()["vsock"]["uds_path"], "other.sock")

    def test_uffd_backend(self):
        import socket
        s = Snap(self)
        j, c = s.jail(vm_id="uffd")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(os.path.join(j.root, "uffd.sock"))
        os.chown(os.path.join(j.root, "uffd.sock"), UID, UID)
        ls.listen(1)
        self.addCleanup(ls.close)
        r = c.put("/snapshot/load", {"snapshot_path": "state",
                                     "mem_backend": {"backend_type": "Uffd",
                                                     "backend_path": "uffd.sock"}})
        self.assertEqual(r.status, 204, r.raw)
        conn, _ = ls.accept()
        self.assertIn(b'"size": 268435456', conn.recv(4096))
        conn.close()


def mapping_of(pid, path):
    """The smaps entry (kB fields) of pid's mapping of path."""
    out, cur = None, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                cur = {} if len(parts) >= 6 and parts[5] == path else None
                if cur is not None:
                    out = cur
            elif cur is not None and parts[0].endswith(":") and len(parts) >= 2 and \
                    parts[1].isdigit():
                cur[parts[0][:-1]] = int(parts[1])
    return out


class SharedMemory(unittest.TestCase):
    """Clones of one snapshot (a booted template) map one read-only memory file MAP_PRIVATE:
    the same inode, its pages shared, a guest's writes private copies; the file unchanged."""

    def clone(self, s, vm_id):
        j, c = s.jail(vm_id=vm_id, knobs={"guest_touch_mib": 4, "guest_dirty_mib": 1})
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM})
        self.assertEqual(r.status, 204, r.raw)
        return j, c

    def test_clones_share_pages(self):
        s = Snap(self, knobs={"guest_touch_mib": 4})
        mem = os.path.join(s.out, "mem")
        os.chown(mem, 0, 0)
        os.chmod(mem, 0o444)
        st = os.stat(mem)
        with open(mem, "rb") as f:
            before = f.read(8 << 20)
        self.assertNotEqual(before[4096:4096 + (4 << 20)].count(0), 4 << 20, "guest pages saved")
        clones = [self.clone(s, "sh-%d" % i) for i in range(2)]
        for j, c in clones:
            ev = fcctl.events(j.vdir, "snapshot_loaded")[0]
            self.assertEqual((ev["mem_file"]["dev"], ev["mem_file"]["ino"]),
                             (st.st_dev, st.st_ino))
            self.assertFalse(ev["mem_file"]["writable"])
        for j, c in clones:
            m = mapping_of(j.pid, os.path.join(j.root, "mem"))
            self.assertIsNotNone(m, "the memory file is mapped")
            # 4 MiB + the header page touched; 1 MiB of them written (private copies), the rest
            # shared with the other clone.
            self.assertGreaterEqual(m["Rss"], 4 << 10)
            self.assertGreaterEqual(m["Private_Dirty"], 1 << 10)
            self.assertGreaterEqual(m["Shared_Clean"], 3 << 10)
            self.assertLess(m["Pss"], m["Rss"] - (1 << 10))
        with open(mem, "rb") as f:
            self.assertEqual(f.read(8 << 20), before, "the clones' writes stay private")

    def test_create_over_the_mapped_file(self):
        s = Snap(self, knobs={"guest_touch_mib": 4})
        j, c = self.clone(s, "over")
        with open(os.path.join(s.out, "mem"), "rb") as f:
            before = f.read()
        r = c.put("/snapshot/create", {"snapshot_path": "state2", "mem_file_path": "mem"})
        self.assertEqual(r.status, 400)
        self.assertIn("contract violation", r.fault())
        self.assertEqual(len(fcctl.events(j.vdir, "contract_violation")), 1)
        with open(os.path.join(s.out, "mem"), "rb") as f:
            self.assertEqual(f.read(), before)
        # A new file at that name (the old one unlinked first: it stays mapped) is fine, and
        # holds the guest's memory as it is now (its own written pages included).
        os.unlink(os.path.join(j.root, "mem"))
        r = c.put("/snapshot/create", {"snapshot_path": "state2", "mem_file_path": "mem"})
        self.assertEqual(r.status, 204, r.raw)
        with open(os.path.join(j.root, "mem"), "rb") as f:
            after = f.read(4096 + (4 << 20))
        self.assertEqual(after[4096 + (1 << 20):], before[4096 + (1 << 20):4096 + (4 << 20)])
        self.assertNotEqual(after[4096:4096 + (1 << 20)], before[4096:4096 + (1 << 20)])


class NetworkRestore(unittest.TestCase):
    def test_taps(self):
        ns = "fakefc-sn-%d" % os.getpid()
        n = Netns(self, ns)
        for t in ("tap0", "tap1"):
            n.ip("tuntap", "add", t, "mode", "tap", "user", str(UID))
        s = Snap(self, netns=ns, nets=(("eth0", "tap0"),))
        s.j.kill()          # the old VMM let go of tap0
        j, c = s.jail(vm_id="n1", netns=ns)
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM,
                                     "network_overrides": [{"iface_id": "eth0",
                                                            "host_dev_name": "tap1"}]})
        self.assertEqual(r.status, 204, r.raw)
        self.assertEqual(fcctl.events(j.vdir, "snapshot_loaded")[0]["taps"], ["tap1"])
        j.kill()
        j, c = s.jail(vm_id="n2", netns=ns)
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM})
        self.assertEqual(r.status, 204, r.raw)
        self.assertEqual(fcctl.events(j.vdir, "snapshot_loaded")[0]["taps"], ["tap0"])
        j.kill()
        n.ip("link", "del", "tap0")
        j, c = s.jail(vm_id="n3", netns=ns)
        r = c.put("/snapshot/load", {"snapshot_path": "state", "mem_backend": MEM})
        self.assertEqual(r.status, 400)
        self.assertIn("Invalid TUN/TAP Backend provided by tap0", r.fault())
        self.assertEqual(exit_code(j), 1)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("test_snapshot: needs root (jailer, chroot, netns)")
        sys.exit(77)
    unittest.main(verbosity=2)
