# SPDX-License-Identifier: MIT
"""Misbehaving servers on loopback for the fault tests and benchmarks: a TCP proxy that trickles
what the upstream sends (a slow registry), a TCP server that accepts and never answers (a silent
database or management API), distinct uncached test images, and small helpers (process lists of
one daemon's jails, RSS and fd counts)."""
import os
import select
import socket
import threading
import time

import mvmfixture as mf


class TrickleProxy:
    """127.0.0.1:port -> upstream; bytes from the upstream reach the client at `rate` bytes/s
    (per connection) while `trickle` is set; requests pass at full speed."""

    def __init__(self, upstream_port, rate=4096):
        self.up = upstream_port
        self.rate = rate
        self.trickle = True
        self.stopped = False
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.up))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, c, u):
        chunk = 1024
        try:
            while not self.stopped:
                r, _, _ = select.select([c, u], [], [], 0.5)
                if c in r:
                    d = c.recv(65536)
                    if not d:
                        break
                    u.sendall(d)
                if u in r:
                    d = u.recv(chunk if self.trickle else 65536)
                    if not d:
                        break
                    c.sendall(d)
                    if self.trickle:
                        time.sleep(len(d) / self.rate)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.ls.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class SilentServer:
    """Accepts TCP connections and never sends a byte (a frozen peer)."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.held = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.held.append(c)

    def stop(self):
        self.stopped = True
        self.ls.close()
        for c in self.held:
            c.close()


def push_distinct_images(reg, n, size=256 * 1024, tag="trickle"):
    """n images no store has seen (one random uncompressed layer of `size` bytes each), pushed
    to reg as test/<tag>-<i>:1. Returns the repository names."""
    rf = reg.rf
    names = []
    for i in range(n):
        lay = os.path.join(reg.dir, "layouts", f"{tag}-{i}")
        desc, _ = rf.make_manifest(lay, [({"blob": os.urandom(size)}, "none")])
        rf.finish_layout(lay, desc)
        rf.skopeo_push(lay, f"{reg.host}/test/{tag}-{i}:1")
        names.append(f"test/{tag}-{i}:1")
    return names


def jail_procs(d):
    """{pid: argv} of every process started for daemon d's jails (the fake jailer keeps its
    argv, which names our chroot base, for the VMM's whole life)."""
    out = {}
    key = f"--chroot-base-dir\0{d.jail}\0"
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if key in cmd:
            out[int(p)] = cmd.split("\0")
    return out


def procs_of(d, name):
    return [p for p, argv in jail_procs(d).items()
            if any(a == "--id" and i + 1 < len(argv) and argv[i + 1] == name
                   for i, a in enumerate(argv))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


__all__ = ["TrickleProxy", "SilentServer", "push_distinct_images", "jail_procs", "procs_of",
           "rss_kib", "nfds", "pct", "mounted", "mf"]
