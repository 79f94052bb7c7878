#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Unprivileged tests of the fake's parsers: serde-like errors, arg parser, knobs, strerror."""
import os
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from fakefc import args, knobs, schemas as S, sysc  # noqa: E402
from fakefc.api import Vmm  # noqa: E402
from fakefc.record import Recorder  # noqa: E402
from fakefc.serde import SerdeError, from_str  # noqa: E402

PRE = "An error occurred when deserializing the json body of a request: "


def err(body, schema):
    try:
        from_str(body, schema)
    except SerdeError as e:
        return str(e)
    return None


class Serde(unittest.TestCase):
    def test_messages_and_positions(self):
        cases = [
            ('{"mem_size_mib": 128}', S.MACHINE_CONFIG,
             "missing field `vcpu_count` at line 1 column 21"),
            ('{"vcpu_count":1,"foo":1}', S.MACHINE_CONFIG,
             "unknown field `foo`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, "
             "`cpu_template`, `track_dirty_pages`, `huge_pages` at line 1 column 21"),
            ('{"vcpu_count":1,"vcpu_count":1}', S.MACHINE_CONFIG,
             "duplicate field `vcpu_count` at line 1 column 28"),
            ('{"vcpu_count":"2"}', S.MACHINE_CONFIG,
             'invalid type: string "2", expected u8 at line 1 column 17'),
            ('{"vcpu_count":256}', S.MACHINE_CONFIG,
             "invalid value: integer `256`, expected u8 at line 1 column 17"),
            ('{"vcpu_count":-1}', S.MACHINE_CONFIG,
             "invalid value: integer `-1`, expected u8 at line 1 column 16"),
            ('{"vcpu_count":1.5}', S.MACHINE_CONFIG,
             "invalid type: floating point `1.5`, expected u8 at line 1 column 17"),
            ('{"vcpu_count":null}', S.MACHINE_CONFIG,
             "invalid type: null, expected u8 at line 1 column 18"),
            ('{"action_type":"Foo"}', S.ACTION,
             "unknown variant `Foo`, expected one of `FlushMetrics`, `InstanceStart`, "
             "`SendCtrlAltDel` at line 1 column 20"),
            ('{"state":"Stopped"}', S.VM_STATE,
             "unknown variant `Stopped`, expected `Paused` or `Resumed` at line 1 column 18"),
            ('{"iface_id":"a","host_dev_name":"t","guest_mac":"00:11"}', S.NET,
             "The provided MAC address is invalid. at line 1 column 56"),
            ('{"iface_id":"a","rx_rate_limiter":{"bytes":{}}}', S.NET_UPDATE,
             "unknown field `bytes`, expected `bandwidth` or `ops` at line 1 column 42"),
            ('{"iface_id":"a","rx_rate_limiter":{"ops":{"size":1}}}', S.NET_UPDATE,
             "missing field `refill_time` at line 1 column 51"),
            ('{"kernel_image_path":1}', S.BOOT_SOURCE,
             "invalid type: integer `1`, expected a string at line 1 column 22"),
            ('{"kernel_image_path":"k"', S.BOOT_SOURCE,
             "EOF while parsing an object at line 1 column 24"),
            ('{"kernel_image_path":"k"} x', S.BOOT_SOURCE,
             "trailing characters at line 1 column 27"),
            ('{"kernel_image_path" "k"}', S.BOOT_SOURCE, "expected `:` at line 1 column 22"),
            ('{"kernel_image_path":"k",}', S.BOOT_SOURCE, "trailing comma at line 1 column 26"),
            ('{\n  "kernel_image_path": "k",\n  "x": 1\n}', S.BOOT_SOURCE,
             "unknown field `x`, expected one of `kernel_image_path`, `initrd_path`, "
             "`boot_args` at line 3 column 5"),
            ('[]', S.BOOT_SOURCE,
             "invalid length 0, expected struct BootSourceConfig with 3 elements at line 1 "
             "column 2"),
        ]
        for body, schema, msg in cases:
            self.assertEqual(err(body, schema), msg, body)

    def test_accepts(self):
        self.assertEqual(from_str('{"metrics_path":"m","unknown":[1,{"a":null}]}', S.METRICS),
                         {"metrics_path": "m"})
        self.assertEqual(from_str('{"kernel_image_path":"k","initrd_path":null}',
                                  S.BOOT_SOURCE), {"kernel_image_path": "k",
                                                   "initrd_path": None})
        d = from_str('{"drive_id":"r","is_root_device":true,"rate_limiter":{"bandwidth":'
                     '{"size":1,"refill_time":2,"x":3}}}', S.DRIVE)
        self.assertEqual(d["rate_limiter"]["bandwidth"]["size"], 1)


class Robustness(unittest.TestCase):
    def test_mutated_bodies_fail_cleanly(self):
        """Random mutations of valid bodies: a value or a SerdeError, never another exception."""
        import random
        rnd = random.Random(1234)
        seeds = [('{"drive_id":"rootfs","is_root_device":true,"path_on_host":"a",'
                  '"rate_limiter":{"bandwidth":{"size":1,"refill_time":2}}}', S.DRIVE),
                 ('{"iface_id":"e","host_dev_name":"t","guest_mac":"06:00:ac:10:00:02",'
                  '"mtu":1500}', S.NET),
                 ('{"network_interfaces":["e"],"version":"V2","ipv4_address":"169.254.1.1"}',
                  S.MMDS_CONFIG),
                 ('{"vcpu_count":2,"mem_size_mib":2048,"smt":false}', S.MACHINE_CONFIG),
                 ('{"metrics_path":"/nonexistent/m","properties":{"a":"b"}}', S.METRICS)]
        alphabet = '{}[]":,\\ \n0123456789.-+eEtruefalsnl\x01\u00e9abc'
        for _ in range(3000):
            body, schema = rnd.choice(seeds)
            b = list(body)
            for _ in range(rnd.randint(1, 4)):
                op = rnd.randint(0, 2)
                pos = rnd.randint(0, len(b))
                if op == 0 and b:
                    del b[min(pos, len(b) - 1)]
                elif op == 1:
                    b.insert(pos, rnd.choice(alphabet))
                else:
                    b = b[:pos]
            try:
                from_str("".join(b), schema)
            except SerdeError:
                pass
        vmm = Vmm("vm", {}, Recorder(), lambda *a, **k: None)
        for _ in range(500):
            body, _ = rnd.choice(seeds)
            cut = body[:rnd.randint(0, len(body))]
            for path in ("/drives/a", "/network-interfaces/e", "/mmds/config", "/machine-config",
                         "/metrics", "/actions", "/vm", "/mmds"):
                for m in ("PUT", "PATCH"):
                    status, _, _ = vmm.handle(m, path, cut)
                    self.assertIn(status, (204, 400, 413))


class Router(unittest.TestCase):
    def setUp(self):
        self.vmm = Vmm("vm", {}, Recorder(), lambda *a, **k: None)

    def fault(self, method, path, body=None):
        status, obj, _ = self.vmm.handle(method, path, body)
        return status, obj and obj.get("fault_message")

    def test_router(self):
        self.assertEqual(self.fault("PATCH", "/logger", "{}"),
                         (400, "Invalid request method and/or path: PATCH logger."))
        self.assertEqual(self.fault("GET", "/vm"), (400, "Invalid request method and/or path: "
                                                   "GET vm."))
        self.assertEqual(self.fault("PUT", "/drives/", "{}"), (400, "The ID cannot be empty."))
        self.assertEqual(self.fault("PUT", "/actions", '{"action_type":"FlushMetrics"}'),
                         (400, "The requested operation is not supported before starting the "
                          "microVM."))
        self.assertEqual(self.fault("PUT", "/actions", '{"action_type":1}')[1],
                         PRE + "expected value at line 1 column 16.")
        self.vmm.mmds_limit = 10
        self.assertEqual(self.fault("PUT", "/mmds", '{"a":"0123456789"}'),
                         (413, "MMDS limit exceeded error: The MMDS patch request doesn't fit."))
        self.assertEqual(self.fault("PATCH", "/mmds", '{"a":1}'),
                         (400, "MMDS error: The MMDS data store is not initialized."))
        self.assertEqual(self.vmm.handle("PUT", "/mmds", '{"a":1}')[0], 204)
        self.assertEqual(self.vmm.handle("GET", "/mmds", None)[1], {"a": 1})
        self.assertEqual(self.vmm.handle("GET", "/vm/config", None)[1]["boot-source"],
                         {"kernel_image_path": "", "initrd_path": None, "boot_args": None})


class Args(unittest.TestCase):
    SPECS = {"id": args.Spec(required=True), "flag": args.Spec(False),
             "multi": args.Spec(multiple=True), "d": args.Spec(default="x")}

    def test_parse(self):
        v, extra = args.parse(self.SPECS, ["--id", "a", "--multi", "1", "--multi", "2", "--flag",
                                           "--", "--id", "b"])
        self.assertEqual(v, {"id": "a", "multi": ["1", "2"], "flag": True, "d": "x"})
        self.assertEqual(extra, ["--id", "b"])
        for argv, msg in ((["--id=a"], "Found argument 'id=a' which wasn't expected"),
                          (["--id", "a", "--id", "b"], "The argument 'id' was provided more "
                           "than once."),
                          (["--id"], "The argument 'id' requires a value, but none was "
                           "supplied."),
                          (["--id", "--flag"], "requires a value"),
                          (["--flag"], "Argument 'id' required, but not found."),
                          (["--id", "a", "stray"], "Found argument 'stray'")):
            with self.assertRaises(args.ArgError) as cm:
                args.parse(self.SPECS, argv)
            self.assertIn(msg, str(cm.exception))

    def test_instance_id(self):
        self.assertIsNone(args.validate_instance_id("a-B-9"))
        self.assertEqual(args.validate_instance_id(""),
                         "Invalid len (0);  the length must be between 1 and 64")
        self.assertEqual(args.validate_instance_id("ab_c"), "Invalid char (_) at position 2")


class Knobs(unittest.TestCase):
    def test_select_and_match(self):
        doc = {"default": {"boot_delay_ms": 1, "refuse": {"GET /": "x"}},
               "by_id": {"b": {"refuse": {}}}}
        self.assertEqual(knobs.select(doc, "a")["refuse"], {"GET /": "x"})
        self.assertEqual(knobs.select(doc, "b"), {"boot_delay_ms": 1, "refuse": {}})
        self.assertEqual(knobs.select({"hang_on": "GET /"}, "z"), {"hang_on": "GET /"})
        self.assertTrue(knobs.matches("InstanceStart", "PUT", "/actions", "InstanceStart"))
        self.assertTrue(knobs.matches(["GET /", "PUT /actions SendCtrlAltDel"], "PUT",
                                      "/actions", "SendCtrlAltDel"))
        self.assertFalse(knobs.matches("PUT /actions InstanceStart", "PUT", "/actions",
                                       "FlushMetrics"))
        self.assertEqual(knobs.lookup({"PUT /actions": "a", "InstanceStart": "b"}, "PUT",
                                      "/actions", "InstanceStart"), "b")


class CgroupLogic(unittest.TestCase):
    """The jailer's cgroup steps against a fake hierarchy in a temp dir (mounts() replaced)."""

    def setUp(self):
        import tempfile
        import shutil
        self.d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.d)

    def put(self, rel, text):
        p = os.path.join(self.d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)

    def read(self, rel):
        with open(os.path.join(self.d, rel)) as f:
            return f.read()

    def test_v2(self):
        from fakefc.jailer import Cgroups, JailerError
        root = os.path.join(self.d, "unified")
        self.put("unified/cgroup.controllers", "cpu memory pids\n")
        self.put("unified/cgroup.subtree_control", "")
        cg = Cgroups(2, "fc/nested", "vm-1")
        cg.mounts = lambda: [("cgroup2", root, ["rw"])]
        cg.setup([("memory.max", "2147483648"), ("cpu.max", "200000 100000")], 4242)
        self.assertEqual(self.read("unified/fc/nested/vm-1/memory.max"), "2147483648\n")
        self.assertEqual(self.read("unified/fc/nested/vm-1/cpu.max"), "200000 100000\n")
        self.assertEqual(self.read("unified/fc/nested/vm-1/cgroup.procs"), "4242\n")
        for anc in ("unified", "unified/fc", "unified/fc/nested"):
            self.assertEqual(self.read(anc + "/cgroup.subtree_control"), "+cpu\n")
        with self.assertRaises(JailerError) as cm:
            cg.setup([("hugetlb.max", "1")], 1)
        self.assertEqual(str(cm.exception), "Controller hugetlb is unavailable")
        # no --cgroup: the pid goes into an existing parent, nothing is created
        cg = Cgroups(2, "fc", "vm-2")
        cg.mounts = lambda: [("cgroup2", root, ["rw"])]
        cg.setup([], 77)
        self.assertEqual(self.read("unified/fc/cgroup.procs"), "77\n")
        self.assertFalse(os.path.exists(os.path.join(root, "fc/vm-2")))

    def test_v1_cpuset_inherit_and_missing_hierarchy(self):
        from fakefc.jailer import Cgroups, JailerError
        cs = os.path.join(self.d, "cpuset")
        self.put("cpuset/cpuset.cpus", "0-3\n")
        self.put("cpuset/cpuset.mems", "0\n")
        cg = Cgroups(1, "firecracker", "vm-1")
        cg.mounts = lambda: [("cgroup", cs, ["rw", "cpuset"])]
        cg.setup([("cpuset.cpus", "1")], 99)
        w = [(x["path"][len(cs):], x["value"]) for x in cg.writes]
        self.assertEqual(w, [("/firecracker/cpuset.cpus", "0-3"),
                             ("/firecracker/vm-1/cpuset.cpus", "0-3"),
                             ("/firecracker/cpuset.mems", "0"),
                             ("/firecracker/vm-1/cpuset.mems", "0"),
                             ("/firecracker/vm-1/cpuset.cpus", "1"),
                             ("/firecracker/vm-1/tasks", "99")])
        with self.assertRaises(JailerError) as cm:
            cg.setup([("memory.limit_in_bytes", "1")], 1)
        self.assertEqual(str(cm.exception), "Controller memory is unavailable")
        cg.mounts = lambda: []
        with self.assertRaises(JailerError) as cm:
            cg.setup([("memory.limit_in_bytes", "1")], 1)
        self.assertEqual(str(cm.exception),
                         "Hierarchy not found: No hierarchy found for this cgroup version.")


class Strerror(unittest.TestCase):
    def test_musl(self):
        self.assertEqual(sysc.io_error(98), "Address in use (os error 98)")
        self.assertEqual(sysc.io_error(16), "Resource busy (os error 16)")
        self.assertEqual(sysc.io_error(OSError(2, "x")), "No such file or directory (os error 2)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
