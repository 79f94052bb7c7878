# SPDX-License-Identifier: MIT
"""The API router and the microVM manager's configuration state (docs/firecracker.md A)."""
import fcntl
import json
import mmap  # before the chroot: an extension module
import os
import struct
import sys
import threading
import time
import uuid

from . import VERSION, knobs as knobmod, schemas as S
from . import snapshot as snap
from .serde import SerdeError, from_str
from .sysc import io_error

BEFORE = "The requested operation is not supported before starting the microVM."
AFTER = "The requested operation is not supported after starting the microVM."
PAYLOAD_LIMIT_MMDS = 51200
TUNSETIFF = 0x400454CA
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
CMDLINE_MAX = 2048
DEFAULT_CMDLINE = ("reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux "
                   "i8042.dumbkbd swiotlb=noforce")
METRICS_PERIOD_S = 60
NOT_MODELLED = {"balloon", "cpu-config", "entropy", "serial", "hotplug", "pmem"}
LOAD_NOT_ALLOWED = ("Load snapshot error: Loading a microVM snapshot not allowed after "
                    "configuring boot-specific resources.")
CREATE_WHILE_RUNNING = ("Create snapshot error: Cannot save the microVM state: Operation not "
                        "allowed: save/restore unavailable while running")
MISSING_MEM = "missing field: either `mem_backend` or `mem_file_path` is required"
TOO_MANY_MEM = ("too many fields: either `mem_backend` or `mem_file_path` exclusively is "
                "required")


class Fault(Exception):
    """A 400 (or other status) with {"fault_message": msg}."""

    def __init__(self, msg, status=400):
        super().__init__(msg)
        self.msg = msg
        self.status = status


class Hang(Exception):
    pass


class _Fatal(Exception):
    """A failure inside snapshot/load: answered, then the process exits 1."""


def _checked_id(tok):
    if tok is None or tok == "":
        raise Fault("The ID cannot be empty.")
    if not all(c == "_" or c.isalnum() for c in tok):
        raise Fault("API Resource IDs can only contain alphanumeric characters and underscores.")
    return tok


def _parse(body, schema):
    try:
        return from_str(body, schema)
    except SerdeError as e:
        raise Fault("An error occurred when deserializing the json body of a request: %s." % e)


def _merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


class Vmm:
    def __init__(self, vm_id, knobs, recorder, logger, enable_pci=False, on_exit=None,
                 vsock_factory=None):
        self.id = vm_id
        self.knobs = knobs
        self.rec = recorder
        self.log = logger
        self.enable_pci = enable_pci
        self.on_exit = on_exit          # fn(code, reason) -> never returns
        self.vsock_factory = vsock_factory
        self.state = "Not started"
        self.boot = None                # dict + fds
        self.boot_fds = []
        self.machine = {"vcpu_count": 1, "mem_size_mib": 128, "smt": False,
                        "track_dirty_pages": False, "huge_pages": "None"}
        self.drives = []                # list of dicts (root first); each has "_fd"
        self.nets = []                  # list of dicts; each has "_fd"
        self.vsock = None               # (cfg, backend)
        self.logger_cfg = None
        self.metrics_fd = -1
        self.metrics_cfg = None
        self.metrics_inited = False
        self.mmds = None                # store (None = not initialised)
        self.mmds_cfg = None
        self.mmds_limit = PAYLOAD_LIMIT_MMDS   # --mmds-size-limit
        self.i8042_pending = 0
        self.deprecated = False
        self.lock = threading.Lock()
        self.boot_path = False          # a boot-path resource was configured: no snapshot/load
        self.boot_id = None             # the guest's boot (InstanceStart, or the snapshot's)
        self.mem_fd = None              # the memory file a restored guest runs from
        self.mem_map = None             # its MAP_PRIVATE mapping (the guest's memory)
        self.mem_id = None              # (st_dev, st_ino) of that file
        self.guest_anon = None          # a cold-booted guest's touched memory (guest_touch_mib)
        self.fatal = None               # (code, reason): exit once the answer is sent
        self.restored = None            # what the load restored, for the record
        self.cmdline_override = None    # the snapshot's guest command line, once restored

    # ------------------------------------------------------------------ router
    def handle(self, method, path, body):
        """body: str or None. Returns (status, obj-or-None, deprecated)."""
        self.deprecated = False
        toks = [t for t in path.lstrip("/").split("/")]
        if toks and toks[-1] == "" and len(toks) > 1:
            toks = toks[:-1]        # split_terminator drops one trailing empty token
        first = toks[0] if toks else ""
        rest = toks[1:]
        nxt = rest[0] if rest else None
        action = None
        try:
            if method == "PUT" and first == "actions" and body is not None:
                try:
                    action = json.loads(body).get("action_type")
                except (ValueError, AttributeError):
                    action = None
            self._knob_gate(method, path, action, body)
            return self._route(method, first, nxt, body) + (self.deprecated,)
        except Fault as f:
            return f.status, {"fault_message": f.msg}, self.deprecated

    def _knob_gate(self, method, path, action, body):
        k = self.knobs
        delay = k.get("api_delay_ms")
        if delay:
            time.sleep(delay / 1000.0)
        if knobmod.matches(k.get("hang_on"), method, path, action):
            raise Hang()
        if knobmod.matches(k.get("crash_on"), method, path, action):
            try:
                rbody = json.loads(body) if body is not None else None
            except ValueError:
                rbody = body
            self.rec.call(method, path, rbody, None, None)
            self.crash("crash_on %s %s" % (method, path))
        msg = knobmod.lookup(k.get("refuse"), method, path, action)
        if msg is not None:
            raise Fault(str(msg))

    def _route(self, m, first, nxt, body):
        if m == "GET":
            if body is not None:
                raise Fault("GET request cannot have a body.")
            if first == "":
                return 200, self.instance_info()
            if first == "version":
                return 200, {"firecracker_version": VERSION}
            if first == "machine-config":
                return 200, self.machine_json()
            if first == "vm" and nxt == "config":
                return 200, self.full_config()
            if first == "mmds":
                return self.get_mmds()
            if first == "balloon":
                raise Fault("Balloon config error: No balloon device found.")
        elif m == "PUT":
            if body is None:
                raise Fault("Empty PUT request.")
            h = {"actions": self.put_actions, "boot-source": self.put_boot_source,
                 "logger": self.put_logger, "machine-config": self.put_machine_config,
                 "metrics": self.put_metrics, "vsock": self.put_vsock}.get(first)
            if h:
                return h(body)
            if first == "drives":
                return self.put_drive(nxt, body)
            if first == "network-interfaces":
                return self.put_net(nxt, body)
            if first == "mmds":
                if nxt is None:
                    return self.put_mmds(body)
                if nxt == "config":
                    return self.put_mmds_config(body)
                raise Fault("Invalid request method and/or path: PUT mmds.")
            if first == "snapshot" and nxt == "create":
                return self.put_snapshot_create(body)
            if first == "snapshot" and nxt == "load":
                return self.put_snapshot_load(body)
            if first in NOT_MODELLED:
                raise Fault("fake-firecracker: PUT /%s is not modelled by the fake" % first)
        elif m == "PATCH":
            if body is None:
                raise Fault("Empty PATCH request.")
            if first == "machine-config":
                return self.patch_machine_config(body)
            if first == "drives":
                return self.patch_drive(nxt, body)
            if first == "network-interfaces":
                return self.patch_net(nxt, body)
            if first == "vm":
                return self.patch_vm(body)
            if first == "mmds":
                return self.patch_mmds(body)
            if first in NOT_MODELLED:
                raise Fault("fake-firecracker: PATCH /%s is not modelled by the fake" % first)
        elif m == "DELETE":
            if first in ("drives", "network-interfaces", "pmem"):
                _checked_id(nxt)
                if self.state == "Not started":
                    raise Fault(BEFORE)
                if not self.enable_pci:
                    raise Fault("PCI is not enabled")
                raise Fault("fake-firecracker: hot-unplug is not modelled by the fake")
        raise Fault("Invalid request method and/or path: %s %s." % (m, first))

    # ------------------------------------------------------------------ helpers
    def started(self):
        return self.state != "Not started"

    def preboot(self):
        if self.started():
            raise Fault(AFTER)

    def postboot(self):
        if not self.started():
            raise Fault(BEFORE)

    def instance_info(self):
        return {"id": self.id, "state": self.state, "vmm_version": VERSION,
                "app_name": "Firecracker"}

    def machine_json(self):
        m = self.machine
        out = {"vcpu_count": m["vcpu_count"], "mem_size_mib": m["mem_size_mib"], "smt": m["smt"]}
        if m.get("cpu_template") not in (None, "None"):
            out["cpu_template"] = m["cpu_template"]
        out["track_dirty_pages"] = m["track_dirty_pages"]
        out["huge_pages"] = m["huge_pages"]
        return out

    @staticmethod
    def _public(d):
        return {k: v for k, v in d.items() if not k.startswith("_")}

    def full_config(self):
        drives = []
        for d in self.drives:
            drives.append({"drive_id": d["drive_id"], "partuuid": d.get("partuuid"),
                           "is_root_device": d["is_root_device"],
                           "cache_type": d.get("cache_type", "Unsafe"),
                           "is_read_only": d.get("is_read_only"),
                           "path_on_host": d.get("path_on_host"),
                           "rate_limiter": d.get("rate_limiter"),
                           "io_engine": d.get("io_engine") or "Sync", "socket": d.get("socket")})
        nets = []
        for n in self.nets:
            nets.append({"iface_id": n["iface_id"], "host_dev_name": n["host_dev_name"],
                         "guest_mac": n.get("guest_mac"), "mtu": n.get("mtu"),
                         "rx_rate_limiter": n.get("rx_rate_limiter"),
                         "tx_rate_limiter": n.get("tx_rate_limiter")})
        b = self.boot or {"kernel_image_path": "", "initrd_path": None, "boot_args": None}
        mmds_cfg = None
        if self.mmds_cfg:
            mmds_cfg = {"version": self.mmds_cfg["version"],
                        "network_interfaces": self.mmds_cfg["network_interfaces"],
                        "ipv4_address": self.mmds_cfg["ipv4_address"],
                        "imds_compat": self.mmds_cfg["imds_compat"]}
        return {"balloon": None, "drives": drives,
                "boot-source": {"kernel_image_path": b["kernel_image_path"],
                                "initrd_path": b.get("initrd_path"),
                                "boot_args": b.get("boot_args")},
                "cpu-config": None, "logger": None, "machine-config": self.machine_json(),
                "metrics": None, "mmds-config": mmds_cfg, "network-interfaces": nets,
                "vsock": ({"guest_cid": self.vsock[0]["guest_cid"],
                           "uds_path": self.vsock[0]["uds_path"]} if self.vsock else None),
                "entropy": None, "pmem": [], "memory-hotplug": None}

    # ------------------------------------------------------------------ boot source
    def put_boot_source(self, body):
        cfg = _parse(body, S.BOOT_SOURCE)
        self.preboot()
        self.boot_path = True
        fds = []
        try:
            fds.append(os.open(cfg["kernel_image_path"], os.O_RDONLY | os.O_CLOEXEC))
        except OSError as e:
            raise Fault("Boot source error: The kernel file cannot be opened: %s" % io_error(e))
        if cfg.get("initrd_path") is not None:
            try:
                fds.append(os.open(cfg["initrd_path"], os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                raise Fault("Boot source error: The initrd file cannot be opened due to invalid "
                            "path or invalid permissions. %s" % io_error(e))
        args = cfg.get("boot_args")
        err = None
        if args is not None:
            if len(args.encode()) >= CMDLINE_MAX:
                err = "Command line string is too large"
            elif any(not (0x20 <= ord(c) < 0x7F) for c in args):
                err = "String contains a non-printable ASCII character"
        if err:
            for fd in fds:
                os.close(fd)
            raise Fault("Boot source error: The kernel command line is invalid: %s" % err)
        for fd in self.boot_fds:
            os.close(fd)
        self.boot_fds = fds
        self.boot = cfg
        return 204, None

    # ------------------------------------------------------------------ machine config
    def _validate_machine(self, m):
        v = m["vcpu_count"]
        if v < 1 or v > 32 or (m["smt"] and v > 1 and v % 2):
            raise Fault("Machine config error: The number of vCPUs must be greater than 0, less "
                        "than 32 and must be 1 or an even number if SMT is enabled.")
        if m["mem_size_mib"] == 0 or (m["huge_pages"] != "None" and m["mem_size_mib"] % 2):
            raise Fault("Machine config error: The memory size (MiB) is either 0, or not a "
                        "multiple of the configured page size.")

    def put_machine_config(self, body):
        cfg = _parse(body, S.MACHINE_CONFIG)
        if "cpu_template" in cfg and cfg["cpu_template"] is not None:
            self.deprecated = True
        self.preboot()
        self.boot_path = True
        m = {"vcpu_count": cfg["vcpu_count"], "mem_size_mib": cfg["mem_size_mib"],
             "smt": cfg.get("smt", False), "track_dirty_pages": cfg.get("track_dirty_pages", False),
             "huge_pages": cfg.get("huge_pages", "None"),
             "cpu_template": cfg.get("cpu_template") or self.machine.get("cpu_template")}
        self._validate_machine(m)
        self.machine = m
        return 204, None

    def patch_machine_config(self, body):
        cfg = _parse(body, S.MACHINE_CONFIG_UPDATE)
        if all(v is None for v in cfg.values()):
            raise Fault("Empty PATCH request.")
        if cfg.get("cpu_template") is not None:
            self.deprecated = True
        self.preboot()
        self.boot_path = True
        m = dict(self.machine)
        m.update({k: v for k, v in cfg.items() if v is not None})
        self._validate_machine(m)
        self.machine = m
        return 204, None

    # ------------------------------------------------------------------ drives
    def put_drive(self, pid, body):
        pid = _checked_id(pid)
        cfg = _parse(body, S.DRIVE)
        if cfg["drive_id"] != pid:
            raise Fault("The id from the path does not match the id from the body!")
        if self.started():
            if not self.enable_pci:
                raise Fault("PCI is not enabled")
            if any(d["drive_id"] == pid for d in self.drives):
                raise Fault("Device ID in use")
        else:
            self.boot_path = True
        if (cfg.get("path_on_host") is None) == (cfg.get("socket") is None):
            raise Fault("Drive config error: Unable to create the virtio block device: Invalid "
                        "block config.")
        if cfg.get("socket") is not None:
            raise Fault("fake-firecracker: vhost-user block devices are not modelled by the fake")
        if cfg["is_root_device"] and any(d["is_root_device"] and d["drive_id"] != pid
                                          for d in self.drives):
            raise Fault("Drive config error: A root block device already exists!")
        ro = bool(cfg.get("is_read_only"))
        path = cfg["path_on_host"]
        try:
            fd = os.open(path, (os.O_RDONLY if ro else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            raise Fault("Drive config error: Unable to create the virtio block device: Virtio "
                        "backend error: Error manipulating the backing file: %s %s"
                        % (io_error(e), path))
        cfg["_fd"] = fd
        for i, d in enumerate(self.drives):
            if d["drive_id"] == pid:
                os.close(d["_fd"])
                del self.drives[i]
                break
        if cfg["is_root_device"]:
            self.drives.insert(0, cfg)
        else:
            self.drives.append(cfg)
        return 204, None

    def patch_drive(self, pid, body):
        pid = _checked_id(pid)
        cfg = _parse(body, S.DRIVE_UPDATE)
        if cfg["drive_id"] != pid:
            raise Fault("The id from the path does not match the id from the body!")
        self.postboot()
        d = next((d for d in self.drives if d["drive_id"] == pid), None)
        if d is None:
            raise Fault("Drive config error: Unable to patch the block device: Failed perform "
                        "action on device: Device not found Please verify the request arguments.")
        if cfg.get("path_on_host") is not None:
            try:
                fd = os.open(cfg["path_on_host"], (os.O_RDONLY if d.get("is_read_only")
                                                   else os.O_RDWR) | os.O_CLOEXEC)
            except OSError as e:
                raise Fault("Drive config error: Unable to patch the block device: %s %s"
                            % (io_error(e), cfg["path_on_host"]))
            os.close(d["_fd"])
            d["_fd"] = fd
            d["path_on_host"] = cfg["path_on_host"]
        elif cfg.get("rate_limiter") is None:
            raise Fault("Drive config error: Unable to patch the block device: Running method "
                        "expected different backend.")
        if cfg.get("rate_limiter") is not None:
            d["rate_limiter"] = cfg["rate_limiter"]
        return 204, None

    # ------------------------------------------------------------------ network
    def _open_tap(self, name):
        pre = "Network config error: Could not create the network device: Open tap device failed: "
        if len(name.encode()) >= 16:
            raise Fault(pre + "Invalid interface name")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise Fault(pre + "Error while opening the tun device: %s" % io_error(e))
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError as e:
            os.close(fd)
            raise Fault(pre + "Error while creating ifreq structure: %s. Invalid TUN/TAP Backend "
                        "provided by %s. Check our documentation on setting up the network "
                        "devices." % (io_error(e), name))
        try:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 12))
        except OSError as e:
            os.close(fd)
            raise Fault(pre + "Error while setting the vnet header size: %s" % io_error(e))
        return fd

    def put_net(self, pid, body):
        pid = _checked_id(pid)
        cfg = _parse(body, S.NET)
        if cfg["iface_id"] != pid:
            raise Fault("The id from the path [%s] does not match the id from the body [%s]!"
                        % (pid, cfg["iface_id"]))
        if self.started():
            if not self.enable_pci:
                raise Fault("PCI is not enabled")
            if any(n["iface_id"] == pid for n in self.nets):
                raise Fault("Device ID in use")
        else:
            self.boot_path = True
        mac = cfg.get("guest_mac")
        if mac is not None:
            mac = mac.lower()
            cfg["guest_mac"] = mac
            if any(n.get("guest_mac") == mac and n["iface_id"] != pid for n in self.nets):
                raise Fault("Network config error: The MAC address is already in use: %s" % mac)
        if cfg.get("mtu") is not None and cfg["mtu"] < 68:
            raise Fault("Network config error: Could not create the network device: MTU %d is "
                        "out of range [68, 65535]" % cfg["mtu"])
        # The old device of the same id is destroyed before the new one opens its TAP.
        for i, n in enumerate(self.nets):
            if n["iface_id"] == pid:
                os.close(n["_fd"])
                del self.nets[i]
                self.log("WARN", "Network interface %s replaced" % pid)
                break
        cfg["_fd"] = self._open_tap(cfg["host_dev_name"])
        self.nets.append(cfg)
        return 204, None

    def patch_net(self, pid, body):
        pid = _checked_id(pid)
        cfg = _parse(body, S.NET_UPDATE)
        if cfg["iface_id"] != pid:
            raise Fault("The id from the path [%s] does not match the id from the body [%s]!"
                        % (pid, cfg["iface_id"]))
        self.postboot()
        n = next((n for n in self.nets if n["iface_id"] == pid), None)
        if n is None:
            raise Fault("Network config error: Unable to update the net device: Failed perform "
                        "action on device: Device not found")
        for k in ("rx_rate_limiter", "tx_rate_limiter"):
            if cfg.get(k) is not None:
                n[k] = cfg[k]
        return 204, None

    # ------------------------------------------------------------------ vsock
    def put_vsock(self, body):
        cfg = _parse(body, S.VSOCK)
        if cfg.get("vsock_id") is not None:
            self.deprecated = True
        self.preboot()
        self.boot_path = True
        if self.vsock is not None:
            old_cfg, old = self.vsock
            try:
                os.unlink(old_cfg["uds_path"])
            except OSError:
                pass
            old.close()
            self.vsock = None
        try:
            backend = self.vsock_factory(cfg["uds_path"], self)
        except OSError as e:
            msg = io_error(e)
            if e.errno is None and "too long" in str(e):
                msg = "path must be shorter than SUN_LEN"
            raise Fault("Vsock config error: Cannot create backend for vsock device: Error "
                        "binding to the host-side Unix socket: %s" % msg)
        self.vsock = (cfg, backend)
        return 204, None

    # ------------------------------------------------------------------ logger / metrics
    @staticmethod
    def _open_sink(path):
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def put_logger(self, body):
        cfg = _parse(body, S.LOGGER)
        self.preboot()
        fd = None
        if cfg.get("log_path") is not None:
            try:
                fd = self._open_sink(cfg["log_path"])
            except OSError as e:
                raise Fault("Logger error: Failed to open target file: %s" % io_error(e))
        self.logger_cfg = cfg
        self.log.configure(fd, cfg)
        return 204, None

    def put_metrics(self, body):
        cfg = _parse(body, S.METRICS)
        self.preboot()
        if self.metrics_inited:
            raise Fault("Metrics error: Cannot initialize the metrics system due to bad user "
                        "input: Reinitialization of metrics not allowed.")
        try:
            fd = self._open_sink(cfg["metrics_path"])
        except OSError as e:
            raise Fault("Metrics error: Cannot initialize the metrics system due to bad user "
                        "input: %s" % io_error(e))
        self.metrics_fd = fd
        self.metrics_cfg = cfg
        self.metrics_inited = True
        return 204, None

    def write_metrics(self):
        if self.metrics_fd < 0:
            return
        line = {"utc_timestamp_ms": int(time.time() * 1000)}
        cfg = self.metrics_cfg or {}
        if cfg.get("emit_id"):
            line["id"] = self.id
        if cfg.get("properties"):
            line["properties"] = cfg["properties"]
        z = lambda *names: {n: 0 for n in names}  # noqa: E731
        blk = z("activate_fails", "cfg_fails", "no_avail_buffer", "event_fails", "execute_fails",
                "invalid_reqs_count", "flush_count", "queue_event_count",
                "rate_limiter_event_count", "update_count", "update_fails", "read_bytes",
                "write_bytes", "read_count", "write_count", "rate_limiter_throttled_events",
                "io_engine_throttled_events", "remaining_reqs_count")
        net = z("activate_fails", "cfg_fails", "mac_address_updates", "no_rx_avail_buffer",
                "no_tx_avail_buffer", "event_fails", "rx_queue_event_count",
                "rx_event_rate_limiter_count", "rx_tap_event_count", "rx_bytes_count",
                "rx_packets_count", "rx_fails", "rx_count", "tap_read_fails", "tap_write_fails",
                "tx_bytes_count", "tx_malformed_frames", "tx_fails", "tx_count",
                "tx_packets_count", "tx_queue_event_count", "tx_rate_limiter_event_count",
                "tx_spoofed_mac_count", "rx_rate_limiter_throttled", "tx_rate_limiter_throttled")
        line["api_server"] = z("process_startup_time_us", "process_startup_time_cpu_us")
        line["balloon"] = z("activate_fails", "inflate_count", "deflate_count", "event_fails")
        line["block"] = dict(blk)
        for d in self.drives:
            line["block_%s" % d["drive_id"]] = dict(blk)
        line["deprecated_api"] = z("deprecated_http_api_calls", "deprecated_cmd_line_api_calls")
        line["get_api_requests"] = z("instance_info_count", "machine_cfg_count", "mmds_count",
                                     "vmm_version_count")
        line["i8042"] = z("error_count", "missed_read_count", "missed_write_count",
                          "read_count", "reset_count", "write_count")
        line["uart"] = z("error_count", "flush_count", "missed_read_count", "missed_write_count",
                         "read_count", "write_count")
        line["latencies_us"] = z("full_create_snapshot", "diff_create_snapshot", "load_snapshot",
                                 "pause_vm", "resume_vm", "vmm_full_create_snapshot",
                                 "vmm_diff_create_snapshot", "vmm_load_snapshot",
                                 "vmm_pause_vm", "vmm_resume_vm")
        line["logger"] = z("missed_metrics_count", "metrics_fails", "missed_log_count",
                           "log_fails")
        line["mmds"] = z("rx_accepted", "rx_accepted_err", "rx_accepted_unusual", "rx_bad_eth",
                         "rx_invalid_token", "rx_no_token", "rx_count", "tx_bytes", "tx_count",
                         "tx_errors", "tx_frames", "connections_created",
                         "connections_destroyed")
        line["net"] = dict(net)
        for n in self.nets:
            line["net_%s" % n["iface_id"]] = dict(net)
        line["patch_api_requests"] = z("drive_count", "drive_fails", "network_count",
                                       "network_fails", "machine_cfg_count", "machine_cfg_fails",
                                       "mmds_count", "mmds_fails")
        line["put_api_requests"] = z("actions_count", "actions_fails", "boot_source_count",
                                     "boot_source_fails", "drive_count", "drive_fails",
                                     "logger_count", "logger_fails", "machine_cfg_count",
                                     "machine_cfg_fails", "cpu_cfg_count", "cpu_cfg_fails",
                                     "metrics_count", "metrics_fails", "network_count",
                                     "network_fails", "mmds_count", "mmds_fails",
                                     "vsock_count", "vsock_fails")
        line["seccomp"] = z("num_faults")
        line["vcpu"] = z("exit_io_in", "exit_io_out", "exit_mmio_read", "exit_mmio_write",
                         "failures")
        line["vmm"] = z("panic_count")
        line["signals"] = z("sigbus", "sigsegv", "sigxfsz", "sigxcpu", "sigpipe", "sighup",
                            "sigill")
        line["vsock"] = z("activate_fails", "cfg_fails", "rx_queue_event_fails",
                          "tx_queue_event_fails", "ev_queue_event_fails", "muxer_event_fails",
                          "conn_event_fails", "rx_queue_event_count", "tx_queue_event_count",
                          "rx_bytes_count", "tx_bytes_count", "rx_packets_count",
                          "tx_packets_count", "conns_added", "conns_killed", "conns_removed",
                          "killq_resync", "tx_flush_fails", "tx_write_fails", "rx_read_fails")
        line["entropy"] = z("activate_fails", "entropy_event_fails", "entropy_event_count",
                            "entropy_bytes", "host_rng_fails", "entropy_rate_limiter_throttled",
                            "rate_limiter_event_count")
        line["interrupts"] = z("triggers", "config_updates")
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        try:
            os.write(self.metrics_fd, data)
        except OSError:
            pass

    # ------------------------------------------------------------------ mmds
    def _mmds_usable(self):
        if self.started() and self.mmds_cfg is None:
            raise Fault("MMDS error: The MMDS data store is not initialized.")

    def get_mmds(self):
        self._mmds_usable()
        return 200, ({} if self.mmds is None else self.mmds)

    def put_mmds(self, body):
        try:
            data = json.loads(body)
        except ValueError as e:
            raise Fault("An error occurred when deserializing the json body of a request: %s."
                        % e)
        self._mmds_usable()
        if len(json.dumps(data, separators=(",", ":"))) > self.mmds_limit:
            raise Fault("MMDS limit exceeded error: The MMDS patch request doesn't fit.", 413)
        self.mmds = data
        return 204, None

    def patch_mmds(self, body):
        try:
            data = json.loads(body)
        except ValueError as e:
            raise Fault("An error occurred when deserializing the json body of a request: %s."
                        % e)
        self._mmds_usable()
        if self.mmds is None:
            raise Fault("MMDS error: The MMDS data store is not initialized.")
        new = _merge_patch(self.mmds, data)
        if len(json.dumps(new, separators=(",", ":"))) > self.mmds_limit:
            raise Fault("MMDS limit exceeded error: The MMDS patch request doesn't fit.", 413)
        self.mmds = new
        return 204, None

    def put_mmds_config(self, body):
        cfg = _parse(body, S.MMDS_CONFIG)
        version = cfg.get("version", "V1")
        if version == "V1":
            self.deprecated = True
        self.preboot()
        self.boot_path = True
        ifs = cfg["network_interfaces"]
        if not ifs:
            raise Fault("MMMDS config error: The list of network interface IDs that allow "
                        "forwarding MMDS requests is empty.")
        known = {n["iface_id"] for n in self.nets}
        if any(i not in known for i in ifs):
            raise Fault("MMMDS config error: The list of network interface IDs provided contains "
                        "at least one ID that does not correspond to any existing network "
                        "interface.")
        addr = cfg.get("ipv4_address") or "169.254.169.254"
        o = [int(p) for p in addr.split(".")]
        if not (o[0] == 169 and o[1] == 254 and 1 <= o[2] <= 254):
            raise Fault("MMMDS config error: The MMDS IPv4 address is not link local.")
        self.mmds_cfg = {"version": version, "network_interfaces": ifs, "ipv4_address": addr,
                         "imds_compat": cfg.get("imds_compat", False)}
        if self.mmds is None:
            self.mmds = {}
        return 204, None

    # ------------------------------------------------------------------ vm state
    def patch_vm(self, body):
        cfg = _parse(body, S.VM_STATE)
        self.postboot()
        new = "Paused" if cfg["state"] == "Paused" else "Running"
        if new != self.state:
            self.rec.event("paused" if new == "Paused" else "resumed")
        self.state = new
        return 204, None

    # ------------------------------------------------------------------ snapshots
    def snapshot_doc(self, snapshot_type):
        pub = lambda d, keys: {k: d.get(k) for k in keys}  # noqa: E731
        return {
            "version": snap.FORMAT_VERSION, "firecracker_version": VERSION,
            "snapshot_type": snapshot_type, "boot_id": self.boot_id,
            "machine": dict(self.machine),
            "mem_size_bytes": self.machine["mem_size_mib"] << 20,
            "kernel_cmdline": self.kernel_cmdline() if self.boot else None,
            "drives": [pub(d, ("drive_id", "path_on_host", "is_root_device", "is_read_only",
                               "partuuid", "cache_type", "io_engine", "rate_limiter"))
                       for d in self.drives],
            "nets": [pub(n, ("iface_id", "host_dev_name", "guest_mac", "mtu",
                             "rx_rate_limiter", "tx_rate_limiter")) for n in self.nets],
            "vsock": ({"guest_cid": self.vsock[0]["guest_cid"],
                       "uds_path": self.vsock[0]["uds_path"]} if self.vsock else None),
            "mmds_cfg": self.mmds_cfg,
        }

    def guest_pages(self):
        """The guest memory the fake models (guest_touch_mib): what a Full snapshot writes after
        the memory file's header page. Bytes, or b"" when not modelled."""
        if self.guest_anon is not None:
            return bytes(self.guest_anon)
        if self.mem_map is not None:
            n = int(self.knobs.get("guest_touch_mib") or 0) << 20
            return bytes(self.mem_map[snap.PAGE:snap.PAGE + n]) if n else b""
        return b""

    def put_snapshot_create(self, body):
        cfg = _parse(body, S.SNAPSHOT_CREATE)
        self.postboot()
        if self.state != "Paused":
            raise Fault(CREATE_WHILE_RUNNING)
        # The memory file a restored guest runs from must stay unchanged while it is mapped
        # (docs/firecracker.md N): truncating and rewriting it would change the guest's own
        # memory under it. Firecracker does not check; the fake refuses and records it.
        if self.mem_id is not None:
            try:
                st = os.stat(cfg["mem_file_path"])
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == self.mem_id:
                self.rec.event("contract_violation", what="snapshot/create over the mapped "
                               "memory file", path=cfg["mem_file_path"])
                raise Fault("fake-firecracker: contract violation: mem_file_path %s is the "
                            "memory file this guest runs from (it must stay unchanged while "
                            "mapped)" % cfg["mem_file_path"])
        stype = cfg.get("snapshot_type", "Full")
        if stype == "Diff":
            self.log("WARN", "Diff snapshots are in developer preview.")
        doc = self.snapshot_doc(stype)
        try:
            snap.write_file(cfg["snapshot_path"], snap.encode_state(doc))
        except OSError as e:
            raise Fault("Create snapshot error: Cannot save the microVM state: Cannot write "
                        "snapshot file: %s" % io_error(e))
        try:
            pages = self.guest_pages()
            head = snap.mem_header(self.boot_id, doc["mem_size_bytes"])
            snap.write_file(cfg["mem_file_path"],
                            head + b"\0" * (snap.PAGE - len(head)) + pages if pages else head,
                            size=doc["mem_size_bytes"])
        except OSError as e:
            raise Fault("Create snapshot error: Cannot save the microVM memory: %s"
                        % io_error(e))
        # TRANSPORT_RESET: open guest connections close, guest listeners stay.
        if self.vsock is not None:
            self.vsock[1].transport_reset()
        self.rec.event("snapshot_created", snapshot_path=cfg["snapshot_path"],
                       mem_file_path=cfg["mem_file_path"], snapshot_type=stype,
                       boot_id=self.boot_id)
        return 204, None

    def put_snapshot_load(self, body):
        cfg = _parse(body, S.SNAPSHOT_LOAD)
        mb, mf = cfg.get("mem_backend"), cfg.get("mem_file_path")
        if mb is not None and mf is not None:
            raise Fault("An error occurred when deserializing the json body of a request: %s."
                        % TOO_MANY_MEM)
        if mb is None and mf is None:
            raise Fault("An error occurred when deserializing the json body of a request: %s."
                        % MISSING_MEM)
        if mf is not None or cfg.get("enable_diff_snapshots"):
            self.deprecated = True
        self.preboot()
        if self.boot_path:
            self.log("INFO", LOAD_NOT_ALLOWED)
            raise Fault(LOAD_NOT_ALLOWED)
        if mb is None:
            mb = {"backend_type": "File", "backend_path": mf}
        try:
            self._restore(cfg, mb)
        except _Fatal as e:
            msg = "Load snapshot error: Failed to restore from snapshot: %s" % e
            self.log("ERROR", msg)
            # The process is too dirty to go on: answer, then exit 1.
            self.fatal = (1, "snapshot/load: %s" % e)
            raise Fault(msg)
        return 204, None

    def _restore(self, cfg, mb):
        """Everything here is fatal on failure (docs/firecracker.md N)."""
        opened = []
        try:
            try:
                doc = snap.read_state(cfg["snapshot_path"])
            except OSError as e:
                raise _Fatal("Failed to get snapshot state from file: Failed to open snapshot "
                             "file: %s" % io_error(e))
            except snap.SnapshotError as e:
                raise _Fatal("Failed to get snapshot state from file: %s" % e)
            size = int(doc["mem_size_bytes"])
            mem_fd = None
            if mb["backend_type"] == "File":
                try:
                    mem_fd = os.open(mb["backend_path"], os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise _Fatal("Failed to load guest memory: Cannot open the memory file: %s"
                                 % io_error(e))
                opened.append(mem_fd)
                try:
                    snap.check_mem_fd(mem_fd, size, doc["boot_id"])
                except snap.SnapshotError as e:
                    raise _Fatal(str(e))
            else:
                import socket
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                try:
                    s.connect(mb["backend_path"])
                    s.sendall(json.dumps([{"base_host_virt_addr": 0, "size": size,
                                           "offset": 0, "page_size": 4096,
                                           "page_size_kib": 4}]).encode())
                except OSError as e:
                    s.close()
                    raise _Fatal("Failed to load guest memory: Cannot connect to UDS in order "
                                 "to send information on handling guest memory page-faults "
                                 "due to: %s" % io_error(e))
                opened.append(os.dup(s.fileno()))
                s.close()
            nets = [dict(n) for n in doc["nets"]]
            for o in cfg.get("network_overrides", []):
                n = next((n for n in nets if n["iface_id"] == o["iface_id"]), None)
                if n is None:
                    raise _Fatal("Unknown Network Device.")
                n["host_dev_name"] = o["host_dev_name"]
            vs = dict(doc["vsock"]) if doc.get("vsock") else None
            if cfg.get("vsock_override") is not None:
                if vs is None:
                    raise _Fatal("Unknown Vsock Device.")
                vs["uds_path"] = cfg["vsock_override"]["uds_path"]
            drives = []
            for d in doc["drives"]:
                d = dict(d)
                try:
                    d["_fd"] = os.open(d["path_on_host"], (os.O_RDONLY if d.get("is_read_only")
                                                           else os.O_RDWR) | os.O_CLOEXEC)
                except OSError as e:
                    raise _Fatal("Failed to build microVM from snapshot: Failed to restore "
                                 "devices: Block: backing file %s: %s"
                                 % (d["path_on_host"], io_error(e)))
                opened.append(d["_fd"])
                drives.append(d)
            for n in nets:
                try:
                    n["_fd"] = self._open_tap(n["host_dev_name"])
                except Fault as f:
                    raise _Fatal("Failed to build microVM from snapshot: Failed to restore "
                                 "devices: Net: %s" % f.msg)
                opened.append(n["_fd"])
            backend = None
            if vs is not None:
                try:
                    backend = self.vsock_factory(vs["uds_path"], self)
                except OSError as e:
                    raise _Fatal("Failed to build microVM from snapshot: Failed to restore "
                                 "devices: Vsock: Error binding to the host-side Unix socket: "
                                 "%s" % io_error(e))
        except Exception:
            for fd in opened:
                os.close(fd)
            raise
        m = dict(doc["machine"])
        m["track_dirty_pages"] = bool(cfg.get("track_dirty_pages") or
                                      cfg.get("enable_diff_snapshots"))
        self.machine = m
        self.drives, self.nets = drives, nets
        self.vsock = ({"guest_cid": vs["guest_cid"], "uds_path": vs["uds_path"]}, backend) \
            if vs is not None else None
        self.mmds_cfg = doc.get("mmds_cfg")
        if self.mmds_cfg is not None:
            self.mmds = {}          # MMDS data is not in the snapshot
        self.mem_fd = opened[0] if mb["backend_type"] == "File" else None
        if self.mem_fd is not None:
            self._map_memory(size)
        self.boot_id = doc["boot_id"]
        self.cmdline_override = doc.get("kernel_cmdline")
        self.boot = {"kernel_image_path": "", "initrd_path": None, "boot_args": None}
        self.state = "Running" if cfg.get("resume_vm") else "Paused"
        self.restored = {"snapshot_path": cfg["snapshot_path"], "mem_backend": mb,
                         "boot_id": self.boot_id, "resume_vm": bool(cfg.get("resume_vm")),
                         "clock_realtime": bool(cfg.get("clock_realtime")),
                         "track_dirty_pages": m["track_dirty_pages"],
                         "drives": [d["path_on_host"] for d in drives],
                         "taps": [n["host_dev_name"] for n in nets],
                         "vsock": vs["uds_path"] if vs else None}
        if self.mem_id is not None:
            self.restored["mem_file"] = {"dev": self.mem_id[0], "ino": self.mem_id[1],
                                         "writable": os.access(mb["backend_path"], os.W_OK)}
        self.rec.event("snapshot_loaded", **self.restored)
        self.write_metrics()
        threading.Thread(target=self._metrics_loop, daemon=True).start()

    def _map_memory(self, size):
        """The File backend: the memory file mapped MAP_PRIVATE (read-only fd, copy-on-write
        pages), its pages faulted in as the guest touches them: the header page and
        guest_touch_mib after it; then guest_dirty_mib of them written (private copies)."""
        st = os.fstat(self.mem_fd)
        self.mem_id = (st.st_dev, st.st_ino)
        self.mem_map = mmap.mmap(self.mem_fd, size, flags=mmap.MAP_PRIVATE,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
        touch = min(int(self.knobs.get("guest_touch_mib") or 0) << 20, size - snap.PAGE)
        acc = 0
        for off in range(0, snap.PAGE + max(touch, 0), snap.PAGE):
            acc ^= self.mem_map[off]
        dirty = min(int(self.knobs.get("guest_dirty_mib") or 0) << 20, max(touch, 0))
        for off in range(snap.PAGE, snap.PAGE + dirty, snap.PAGE):
            self.mem_map[off] = (self.mem_map[off] + 1) & 0xff

    # ------------------------------------------------------------------ actions
    def put_actions(self, body):
        cfg = _parse(body, S.ACTION)
        a = cfg["action_type"]
        if a == "InstanceStart":
            self.preboot()
            return self.instance_start()
        self.postboot()
        if a == "FlushMetrics":
            self.write_metrics()
            return 204, None
        # SendCtrlAltDel: 4 scan-code bytes into a 16-byte buffer nobody drains if ignored.
        if self.knobs.get("ignore_ctrl_alt_del"):
            if self.i8042_pending + 4 > 16:
                raise Fault("Internal VMM error: I8042 error: i8042 internal buffer full.")
            self.i8042_pending += 4
            self.rec.event("ctrl_alt_del_ignored")
            return 204, None
        delay = self.knobs.get("ctrl_alt_del_exit_ms", 100) / 1000.0
        code = int(self.knobs.get("exit_on_ctrl_alt_del_code", 0))
        self._arm_cad(delay, code)
        return 204, None

    def _arm_cad(self, delay, code):
        t = threading.Timer(delay, self._cad_fire, args=(code,))
        t.daemon = True
        t.start()

    def _cad_fire(self, code):
        # A paused guest cannot react to the keyboard interrupt until it is resumed.
        if self.state == "Paused":
            self._arm_cad(0.05, code)
            return
        self.on_exit(code, "SendCtrlAltDel")

    def instance_start(self):
        if self.boot is None:
            raise Fault("Start microvm error: Cannot start microvm without kernel configuration.")
        delay = self.knobs.get("boot_delay_ms")
        if delay:
            time.sleep(delay / 1000.0)
        fail = self.knobs.get("exit_on_start")
        if fail:
            raise Fault("Start microvm error: %s" % fail)
        self.state = "Running"
        self.boot_id = uuid.uuid4().hex
        touch = int(self.knobs.get("guest_touch_mib") or 0) << 20
        if touch:
            # The booted guest's memory: private to this VMM, pages of a pattern (not zero).
            self.guest_anon = bytearray(touch)
            for off in range(0, touch, snap.PAGE):
                self.guest_anon[off] = 1 + (off // snap.PAGE) % 251
        self.rec.event("instance_started", cmdline=self.kernel_cmdline(), boot_id=self.boot_id)
        self.log("INFO", "Artificially kick devices.")
        self.write_metrics()
        threading.Thread(target=self._metrics_loop, daemon=True).start()
        crash = self.knobs.get("crash_after_start_ms")
        if crash is not None:
            t = threading.Timer(crash / 1000.0, self.crash)
            t.daemon = True
            t.start()
        if self.knobs.get("swap_links"):
            t = threading.Timer(self.knobs.get("swap_after_ms", 200) / 1000.0, self._swap_links)
            t.daemon = True
            t.start()
        return 204, None

    def _swap_links(self):
        """A compromised VMM: replace files of its jail by symlinks (e.g. run/ -> another VM's
        run/). Only inside a jail (as the jail's uid, root = the jail)."""
        if os.getuid() == 0:
            sys.stderr.write("fake-firecracker: swap_links ignored outside a jail\n")
            return
        for rel, target in sorted((self.knobs.get("swap_links") or {}).items()):
            path = "/" + rel.lstrip("/")
            try:
                if os.path.lexists(path):
                    os.rename(path, path + ".orig")
                os.symlink(target, path)
                self.rec.event("swapped", path=path, target=target)
            except OSError as e:
                sys.stderr.write("fake-firecracker: swap %s: %s\n" % (path, e))

    def _metrics_loop(self):
        while True:
            time.sleep(METRICS_PERIOD_S)
            if self.state != "Paused":
                self.write_metrics()

    def crash(self, reason="crash_after_start_ms"):
        sig = self.knobs.get("crash_signal")
        if sig:
            self.on_exit(None, reason, signal=sig)
        self.on_exit(int(self.knobs.get("crash_exit_code", 1)), reason)

    def kernel_cmdline(self):
        """The final guest command line (docs/firecracker.md J.3), for the record."""
        if self.cmdline_override is not None:
            return self.cmdline_override
        b = self.boot or {}
        parts = [b["boot_args"] if b.get("boot_args") is not None else DEFAULT_CMDLINE]
        if not self.enable_pci:
            parts.append("pci=off")
        root = next((d for d in self.drives if d["is_root_device"]), None)
        if root is not None:
            dev = ("PARTUUID=%s" % root["partuuid"]) if root.get("partuuid") else "/dev/vda"
            parts.append("root=%s %s" % (dev, "ro" if root.get("is_read_only") else "rw"))
        n = len(self.drives) + len(self.nets) + (1 if self.vsock else 0)
        if not self.enable_pci:
            for i in range(n):
                parts.append("virtio_mmio.device=4K@0x%x:%d" % (0xc0001000 + i * 0x1000, 5 + i))
        return " ".join(parts)
