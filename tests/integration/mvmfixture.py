# SPDX-License-Identifier: MIT
"""Fixtures for end-to-end tests of the real mvmfs daemon: a private network + mount namespace,
a docker-registry with a tiny image, the daemon itself on a temp mount point, and a TAP runner.

Everything a test creates lives in its private namespaces or under one temp dir, and is checked
to be gone at the end (jail dirs, cgroups, netns handles, links, processes)."""
import ctypes
import errno
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

SRC = os.environ.get("MVMFS_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MVMFS_BUILDDIR") or os.path.join(SRC, "build")
FAKES = os.path.join(SRC, "tests", "fakes")
sys.path.insert(0, FAKES)
import fcctl  # noqa: E402


def skip(why):
    print("1..0 # SKIP " + why)
    sys.exit(77)


def need_root_fuse(tools=()):
    if os.geteuid() != 0:
        skip("needs root")
    if not os.path.exists("/dev/fuse"):
        skip("needs /dev/fuse")
    for t in tools:
        if not shutil.which(t):
            skip(f"needs {t}")
    if not os.path.exists(os.path.join(BUILD, "daemon", "mvmfs")):
        skip("mvmfs daemon not built")


def enter_private_namespaces():
    """Re-run this script in fresh net + mount namespaces (so bridges, netns handles and mounts
    never touch the host), with its own /run/netns."""
    if os.environ.get("MVMFS_E2E_NS") == "1":
        return
    env = dict(os.environ, MVMFS_E2E_NS="1")
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                        sys.executable] + sys.argv, env=env)
    sys.exit(r.returncode)


def setup_namespace():
    os.makedirs("/run/netns", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/netns"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def load_registry_fixture():
    path = os.path.join(SRC, "tests", "image", "registry-fixture.py")
    spec = importlib.util.spec_from_file_location("registry_fixture", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Registry:
    """One anonymous docker-registry on 127.0.0.1 holding test/simple:1."""

    def __init__(self, tmp):
        rf = self.rf = load_registry_fixture()
        self.dir = os.path.join(tmp, "registry")
        os.makedirs(self.dir)
        images, _env = rf.build_images(self.dir)
        self.port = rf.start_registry(self.dir, "anon")
        rf.skopeo_push(images["simple"], f"127.0.0.1:{self.port}/test/simple:1")
        self.host = f"127.0.0.1:{self.port}"

    def stop(self):
        self.rf.down(self.dir)


SANITIZER_MARKERS = ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error: ")


class Daemon:
    """The real mvmfs on a temp mount point, with the Firecracker fake. Booted templates
    (docs/template.md) need a guest agent (the fake's agent_cmd knob): without template=True
    the daemon runs with --no-template and every start boots."""

    def __init__(self, tmp, registry, extra=(), knobs=None, template=False):
        self.tmp = tmp
        self.mnt = os.path.join(tmp, "mnt")
        self.state = os.path.join(tmp, "state")
        self.jail = os.path.join(tmp, "jail")
        for d in (self.mnt, self.state, self.jail):
            os.makedirs(d, exist_ok=True)
        fcctl.enable_records(self.jail)
        self.knobs = os.path.join(tmp, "knobs.json")
        fcctl.write_knobs(self.knobs, **(knobs or {}))
        # The fake only opens these; the qemu tests boot real ones.
        for f in ("vmlinux", "initrd"):
            with open(os.path.join(tmp, f), "wb") as fh:
                fh.write(b"\0" * 4096)
        self.args = [os.path.join(BUILD, "daemon", "mvmfs"),
                     "--state-dir", self.state, "--chroot-base", self.jail,
                     "--firecracker", os.path.join(FAKES, "firecracker"),
                     "--jailer", os.path.join(FAKES, "jailer"),
                     "--kernel", os.path.join(tmp, "vmlinux"),
                     "--initrd", os.path.join(tmp, "initrd"),
                     "--insecure-registry", registry.host,
                     "--bridge", "mvmtest0", "--ipv6-prefix", "fd42:e2e::/64",
                     "--data-disk-size", "64M", "--stop-timeout", "2s",
                     "--log-level", "debug"] + list(extra) + \
            ([] if template else ["--no-template"]) + [self.mnt]
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.tmp, "daemon.log"), "ab")
        self.log_start = self.log.tell()
        env = dict(os.environ, FAKE_FC_KNOBS=self.knobs)
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        end = time.time() + 20
        while time.time() < end:
            # statvfs always reaches the daemon: a dead mount's cached dentries can make
            # vms/ look present for a moment after a SIGKILL.
            try:
                os.statvfs(self.mnt)
                if os.path.isdir(os.path.join(self.mnt, "vms")):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError("mvmfs exited with %s:\n%s" % (self.proc.returncode,
                                                                     self.log_tail()))
            time.sleep(0.02)
        raise AssertionError("mvmfs not ready after 20 s:\n" + self.log_tail())

    def node_id(self):
        """This daemon's node identity (STATE_DIR/node-id), which marks its host resources."""
        with open(os.path.join(self.state, "node-id")) as f:
            return f.read().strip()

    def log_tail(self, n=40):
        try:
            with open(os.path.join(self.tmp, "daemon.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        self.log.close()
        self.check_sanitizers()

    def check_sanitizers(self):
        """A sanitizer build's report in this run's daemon log fails the test (TSan with
        halt_on_error=1 and ASan/LSan abort, but a report must fail even if they did not)."""
        with open(os.path.join(self.tmp, "daemon.log"), "rb") as f:
            f.seek(self.log_start)
            text = f.read().decode(errors="replace")
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                raise AssertionError("sanitizer report in the daemon log:\n" + text[i:i + 6000])

    def kill9(self):
        """SIGKILL the daemon (its mount goes stale; start() cleans it)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def kill_vmms(self):
        """Last-resort cleanup after a failed test: VMM processes of this daemon's jail."""
        subprocess.run(["pkill", "-KILL", "-f", "--", f"--chroot-base-dir {self.jail} "],
                       stderr=subprocess.DEVNULL)
        # The node's cgroup parent (mvmfs/NODE) outlives its VMs: remove it once empty.
        try:
            node = self.node_id()
        except OSError:
            return
        for cg in glob.glob(f"/sys/fs/cgroup/*/mvmfs/{node}") + glob.glob(
                f"/sys/fs/cgroup/mvmfs/{node}"):
            try:
                os.rmdir(cg)
            except OSError:
                pass

    def destroy_all(self):
        """Cleanup after the cases: kill and remove every VM still in the tree."""
        try:
            names = os.listdir(self.vm(""))
        except OSError:
            names = []
        for name in names:
            try:
                self.write(name, "state", "kill")
                os.rmdir(self.vm(name))
            except OSError:
                pass

    def print_log_tail(self, rc):
        """The daemon log's tail as TAP comments when the run failed (or E2E_LOG is set)."""
        if rc or os.environ.get("E2E_LOG"):
            print("# daemon log tail:\n# " + self.log_tail(60).replace("\n", "\n# "))

    def vm(self, name, *parts):
        return os.path.join(self.mnt, "vms", name, *parts)

    def read(self, name, attr):
        with open(self.vm(name, attr)) as f:
            return f.read()

    def write(self, name, attr, value, flags=0):
        fd = os.open(self.vm(name, attr), os.O_WRONLY | os.O_TRUNC | flags)
        try:
            return os.write(fd, value.encode())
        finally:
            os.close(fd)

    def state_of(self, name):
        return self.read(name, "state").strip()

    def vm_jail(self, name):
        return fcctl.vm_dir(self.jail, name)

    def records(self, name):
        return fcctl.records(fcctl.record_file(self.jail, name))


def expect_errno(e, fn, *a):
    try:
        fn(*a)
    except OSError as ex:
        if ex.errno != e:
            raise AssertionError(f"expected {errno.errorcode[e]}, got {ex!r}")
        return
    raise AssertionError(f"expected {errno.errorcode[e]}, call succeeded")


def wait_for(pred, timeout, what):
    """what: a description, or a callable giving one (evaluated on timeout, to show the state)."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


def leftovers(d, name):
    """Host resources a VM called name may have left: returns a list of descriptions."""
    found = []
    if os.path.exists(d.vm_jail(name)):
        found.append("jail dir " + d.vm_jail(name))
    # The VM's cgroups: mvmfs/NODE/NAME (mvmfs/NAME when recorded before node ids).
    node = d.node_id() if os.path.exists(os.path.join(d.state, "node-id")) else None
    pats = [f"mvmfs/{name}"] + ([f"mvmfs/{node}/{name}"] if node else [])
    for cg in [c for p in pats for c in glob.glob(f"/sys/fs/cgroup/*/{p}") +
               glob.glob(f"/sys/fs/cgroup/{p}")]:
        found.append("cgroup " + cg)
    if os.path.exists(os.path.join(d.state, "vms", name)):
        found.append("state dir " + os.path.join(d.state, "vms", name))
    if name in leases(d):
        found.append("address lease")
    # With or without a node id: /run/netns/mvmfs-NODE.NAME, alias mvmfs:NODE:NAME.
    for ns in glob.glob(f"/run/netns/mvmfs-{name}") + glob.glob(f"/run/netns/mvmfs-*.{name}"):
        found.append("netns " + os.path.basename(ns))
    out = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        if re.search(r"mvmfs:([0-9a-f]{1,8}:)?" + re.escape(name) + r"( |\\|$)", line):
            found.append("link " + line.split(":")[1].strip())
    out = subprocess.run(["pgrep", "-f", "--", f"--id {name} "], stdout=subprocess.PIPE, text=True)
    for pid in out.stdout.split():
        found.append("process " + pid)
    return found


def leases(d):
    """Live leases of the local address allocator: {name: addr} from its journal."""
    out = {}
    try:
        with open(os.path.join(d.state, "ipam", "leases")) as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and p[0] == "A":
                    out[p[1]] = p[2]
                elif len(p) == 2 and p[0] == "R":
                    out.pop(p[1], None)
    except FileNotFoundError:
        pass
    return out


def run_tap(cases):
    """Run (name, fn) cases in order; print TAP. Returns the exit status."""
    print(f"1..{len(cases)}", flush=True)
    failed = 0
    only = os.environ.get("TEST_ONLY")
    for i, (name, fn) in enumerate(cases, 1):
        if only and name not in only.split(","):
            print(f"ok {i} - {name} # SKIP not selected", flush=True)
            continue
        try:
            fn()
            print(f"ok {i} - {name}", flush=True)
        except SkipCase as s:
            print(f"ok {i} - {name} # SKIP {s}", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, then the next case runs
            failed += 1
            for line in traceback.format_exc().splitlines():
                print("# " + line)
            print(f"not ok {i} - {name}", flush=True)
    return 1 if failed else 0


def fixture_failed(e, d):
    """Report an error outside any case (setting up the daemon) as a failed TAP line, with
    the daemon d's log tail when it got that far."""
    print(f"# fixture failed: {e!r}")
    if d:
        print("# " + d.log_tail().replace("\n", "\n# "))
    print("not ok - fixture")


def daemon_teardown(d, rc):
    """End of a test script: destroy d's VMs, stop it (a sanitizer report in its log at exit
    fails the run), kill what is left, show its log tail when rc says the run failed. Returns
    the script's exit status."""
    if not d:
        return rc
    d.destroy_all()
    try:
        d.stop()
    except AssertionError as e:  # a sanitizer report at daemon exit
        print("# " + str(e).replace("\n", "\n# "))
        print("Bail out! sanitizer report in the daemon log", flush=True)
        rc = 1
    d.kill_vmms()
    d.print_log_tail(rc)
    return rc


class SkipCase(Exception):
    pass


def tmpdir():
    d = tempfile.mkdtemp(prefix="mvmfs-e2e-")
    os.chmod(d, 0o755)
    return d
