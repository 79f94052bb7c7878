# SPDX-License-Identifier: MIT
"""Request body types of the endpoints the fake models (names = Firecracker's Rust structs)."""
import re

from .serde import Struct

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _mac(v):
    return None if _MAC.match(v) else "The provided MAC address is invalid."


def _ipv4(v):
    parts = v.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256 and
                               (p == "0" or not p.startswith("0")) for p in parts):
        return None
    return "invalid IPv4 address syntax"


LEVELS = {"off": "Off", "trace": "Trace", "debug": "Debug", "info": "Info", "warn": "Warn",
          "warning": "Warn", "error": "Error"}


def _level(v):
    if v.lower() in LEVELS:
        return None
    return "unknown variant `%s`, expected one of `Off`, `Trace`, `Debug`, `Info`, `Warn`, " \
           "`Error`" % v


TOKEN_BUCKET = Struct("TokenBucketConfig", [
    ("size", "u64", "req"), ("one_time_burst", ("opt", "u64"), "req"),
    ("refill_time", "u64", "req")], deny_unknown=False)
RATE_LIMITER = Struct("RateLimiterConfig", [
    ("bandwidth", ("opt", TOKEN_BUCKET), "req"), ("ops", ("opt", TOKEN_BUCKET), "req")])

BOOT_SOURCE = Struct("BootSourceConfig", [
    ("kernel_image_path", "str", "req"), ("initrd_path", ("opt", "str"), "req"),
    ("boot_args", ("opt", "str"), "req")])

CPU_TEMPLATES = ["C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"]
HUGE_PAGES = ["None", "Transparent", "2M"]
MACHINE_CONFIG = Struct("MachineConfig", [
    ("vcpu_count", "u8", "req"), ("mem_size_mib", "usize", "req"), ("smt", "bool", "default"),
    ("cpu_template", ("opt", ("enum", CPU_TEMPLATES)), "req"),
    ("track_dirty_pages", "bool", "default"), ("huge_pages", ("enum", HUGE_PAGES), "default")])
MACHINE_CONFIG_UPDATE = Struct("MachineConfigUpdate", [
    ("vcpu_count", ("opt", "u8"), "req"), ("mem_size_mib", ("opt", "usize"), "req"),
    ("smt", ("opt", "bool"), "req"), ("cpu_template", ("opt", ("enum", CPU_TEMPLATES)), "req"),
    ("track_dirty_pages", ("opt", "bool"), "req"),
    ("huge_pages", ("opt", ("enum", HUGE_PAGES)), "req")])

DRIVE = Struct("BlockDeviceConfig", [
    ("drive_id", "str", "req"), ("partuuid", ("opt", "str"), "req"),
    ("is_root_device", "bool", "req"), ("cache_type", ("enum", ["Unsafe", "Writeback"]), "default"),
    ("is_read_only", ("opt", "bool"), "req"), ("path_on_host", ("opt", "str"), "req"),
    ("rate_limiter", ("opt", RATE_LIMITER), "req"),
    ("io_engine", ("opt", ("enum", ["Sync", "Async"])), "req"), ("socket", ("opt", "str"), "req")])
DRIVE_UPDATE = Struct("BlockDeviceUpdateConfig", [
    ("drive_id", "str", "req"), ("path_on_host", ("opt", "str"), "req"),
    ("rate_limiter", ("opt", RATE_LIMITER), "req")])

NET = Struct("NetworkInterfaceConfig", [
    ("iface_id", "str", "req"), ("host_dev_name", "str", "req"),
    ("guest_mac", ("opt", ("custom", _mac, "MacAddr", "late")), "req"), ("mtu", ("opt", "u16"), "req"),
    ("rx_rate_limiter", ("opt", RATE_LIMITER), "req"),
    ("tx_rate_limiter", ("opt", RATE_LIMITER), "req")])
NET_UPDATE = Struct("NetworkInterfaceUpdateConfig", [
    ("iface_id", "str", "req"), ("rx_rate_limiter", ("opt", RATE_LIMITER), "req"),
    ("tx_rate_limiter", ("opt", RATE_LIMITER), "req")])

VSOCK = Struct("VsockDeviceConfig", [
    ("vsock_id", ("opt", "str"), "req"), ("guest_cid", "u32", "req"), ("uds_path", "str", "req")])

LOGGER = Struct("LoggerConfig", [
    ("log_path", ("opt", "path"), "req"), ("level", ("opt", ("custom", _level, "LevelFilter", "late")), "req"),
    ("show_level", ("opt", "bool"), "req"), ("show_log_origin", ("opt", "bool"), "req"),
    ("module", ("opt", "str"), "req")])

METRICS = Struct("MetricsConfig", [
    ("metrics_path", "path", "req"), ("emit_id", "bool", "default"),
    ("properties", ("opt", ("strmap", "str")), "req")], deny_unknown=False)

ACTION = Struct("ActionBody", [
    ("action_type", ("enum", ["FlushMetrics", "InstanceStart", "SendCtrlAltDel"]), "req")])

VM_STATE = Struct("Vm", [("state", ("enum", ["Paused", "Resumed"]), "req")])

MMDS_CONFIG = Struct("MmdsConfig", [
    ("version", ("enum", ["V1", "V2"]), "default"), ("network_interfaces", ("vec", "str"), "req"),
    ("ipv4_address", ("opt", ("custom", _ipv4, "IPv4 address")), "req"),
    ("imds_compat", "bool", "default")])

SNAPSHOT_CREATE = Struct("CreateSnapshotParams", [
    ("snapshot_type", ("enum", ["Full", "Diff"]), "default"), ("snapshot_path", "path", "req"),
    ("mem_file_path", "path", "req")])
MEM_BACKEND = Struct("MemBackendConfig", [
    ("backend_path", "path", "req"), ("backend_type", ("enum", ["File", "Uffd"]), "req")])
NETWORK_OVERRIDE = Struct("NetworkOverride", [
    ("iface_id", "str", "req"), ("host_dev_name", "str", "req")])
VSOCK_OVERRIDE = Struct("VsockOverride", [("uds_path", "str", "req")])
SNAPSHOT_LOAD = Struct("LoadSnapshotConfig", [
    ("snapshot_path", "path", "req"), ("mem_file_path", ("opt", "path"), "req"),
    ("mem_backend", ("opt", MEM_BACKEND), "req"), ("enable_diff_snapshots", "bool", "default"),
    ("track_dirty_pages", "bool", "default"), ("resume_vm", "bool", "default"),
    ("network_overrides", ("vec", NETWORK_OVERRIDE), "default"),
    ("vsock_override", ("opt", VSOCK_OVERRIDE), "default"),
    ("clock_realtime", "bool", "default")])
