# SPDX-License-Identifier: MIT
"""Fixture for test_fake.py: one fake VM under the fake jailer, with full cleanup."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import fcctl  # noqa: E402

HERE = os.path.dirname(os.path.realpath(__file__))

JAILER = os.path.join(HERE, "jailer")
FIRECRACKER = os.path.join(HERE, "firecracker")
UID = 64123
BEFORE = "The requested operation is not supported before starting the microVM."
AFTER = "The requested operation is not supported after starting the microVM."
CG_PARENT = "fakefc-test-%d" % os.getpid()


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class Jail:
    """One fake VM under the fake jailer, in its own chroot base; cleans up everything."""

    def __init__(self, test, vm_id="vm-1", daemonize=True, netns=None, cgroups=(), knobs=None,
                 extra=(), uid=UID, exec_file=FIRECRACKER, jailer_args=(), prepare=None):
        self.test = test
        self.base = tempfile.mkdtemp(prefix="fakefc-")
        self.id = vm_id
        self.uid = uid
        self.exec_name = os.path.basename(os.path.realpath(exec_file))
        self.vdir = fcctl.vm_dir(self.base, vm_id, self.exec_name)
        self.root = os.path.join(self.vdir, "root")
        self.sock = os.path.join(self.root, "run/firecracker.socket")
        env = dict(os.environ)
        if knobs is not None:
            kp = os.path.join(self.base, "knobs.json")
            with open(kp, "w") as f:
                json.dump(knobs, f)
            env["FAKE_FC_KNOBS"] = kp
        self.argv = [JAILER, "--id", vm_id, "--exec-file", exec_file, "--uid", str(uid),
                     "--gid", str(uid), "--chroot-base-dir", self.base,
                     "--parent-cgroup", CG_PARENT] + list(jailer_args)
        if netns:
            self.argv += ["--netns", "/var/run/netns/" + netns]
        for c in cgroups:
            self.argv += ["--cgroup", c]
        if daemonize:
            self.argv.append("--daemonize")
        self.argv += ["--"] + list(extra)
        if prepare:
            prepare(self)
        self.proc = subprocess.Popen(self.argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        test.addCleanup(self.cleanup)
        self.pid = None
        self.clients = []

    def started(self, timeout=5.0):
        ok = wait_for(lambda: os.path.exists(self.sock), timeout)
        if not ok:
            out, err = self.proc.communicate(timeout=5) if self.proc.poll() is not None \
                else (b"", b"")
            raise AssertionError("API socket never appeared: %r %r" % (out, err))
        # With --new-pid-ns the parent writes the pid file after the child started.
        pidfile = os.path.join(self.root, self.exec_name + ".pid")
        wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, timeout)
        with open(pidfile) as f:
            self.pid = int(f.read())
        return self

    def client(self, timeout=5.0):
        # The socket file appears at bind(), a moment before listen(): retry like a runtime must.
        for _ in range(100):
            try:
                c = fcctl.Client(self.sock, timeout)
                break
            except ConnectionRefusedError:
                time.sleep(0.02)
        else:
            c = fcctl.Client(self.sock, timeout)
        self.clients.append(c)
        return c

    def put_file(self, name, data=b"x" * 512, owner=True, mode=0o600):
        p = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        if owner:
            os.chown(p, self.uid, self.uid)
        return p

    def boot_minimal(self, c):
        self.put_file("vmlinux")
        r = c.put("/boot-source", {"kernel_image_path": "vmlinux"})
        self.test.assertEqual(r.status, 204, r.body)
        r = c.put("/actions", {"action_type": "InstanceStart"})
        self.test.assertEqual(r.status, 204, r.body)

    def kill(self):
        for c in self.clients:
            try:
                c.close()
            except OSError:
                pass
        pids = [p for p in (self.pid, self.proc.pid) if p]
        try:
            pids.append(fcctl.jailer_report(self.vdir)["firecracker_pid"])
        except (OSError, ValueError, KeyError):
            pass
        # Sweep: anything still living in this jail (e.g. a pid file never read).
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.readlink("/proc/%s/root" % p) == self.root:
                        pids.append(int(p))
                except OSError:
                    pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        for p in pids:
            wait_for(lambda: not pid_alive(p), 5)

    def cleanup(self):
        self.kill()
        try:
            rep = fcctl.jailer_report(self.vdir)
            dirs = rep.get("cgroup_dirs_created", [])
        except (OSError, ValueError):
            dirs = []
        for c in ("cpu", "cpuset", "memory", "pids"):
            dirs.append("/sys/fs/cgroup/%s/%s/%s" % (c, CG_PARENT, self.id))
            dirs.append("/sys/fs/cgroup/%s/%s" % (c, CG_PARENT))
        for d in sorted(set(dirs), key=len, reverse=True):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        shutil.rmtree(self.base, ignore_errors=True)


def run_jailer(args, env=None):
    p = subprocess.run([JAILER] + args, capture_output=True, text=True, timeout=20, env=env)
    return p.returncode, p.stderr


class Netns:
    def __init__(self, test, name):
        self.name = name
        subprocess.run(["ip", "netns", "add", name], check=True)
        test.addCleanup(lambda: subprocess.run(["ip", "netns", "del", name]))

    def ip(self, *args):
        subprocess.run(["ip", "netns", "exec", self.name, "ip"] + list(args), check=True)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def vsock_connect(path, port, payload=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b"CONNECT %d\n" % port)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            d = s.recv(1)
            if not d:
                break
            buf += d
        if payload is None or not buf:
            return buf
        s.sendall(payload)
        out = b""
        while len(out) < len(payload):
            d = s.recv(4096)
            if not d:
                break
            out += d
        return buf, out
    finally:
        s.close()
