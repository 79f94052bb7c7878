#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Helpers for tests that drive the fake Firecracker (tests/fakes/README.md).

Import it (sys.path.insert(0, "<srcdir>/tests/fakes"); import fcctl) or run it:
  fcctl.py calls  <vm_dir>     print the recorded calls, one per line
  fcctl.py seq    <vm_dir>     print the call sequence ("PUT /actions InstanceStart", ...)
  fcctl.py check  <vm_dir>     exit 1 (and list them) if any call got an error or no answer
  fcctl.py jailer <vm_dir>     print fake-jailer.json
<vm_dir> is <chroot-base>/<exec-file-name>/<id> (the parent of the jail's root/), or a
persistent record file <chroot-base>/fake-fc.records/<id>.calls.jsonl.
"""
import json
import os
import socket
import sys

CALLS = "fake-fc.calls.jsonl"
JAILER = "fake-jailer.json"
KNOBS_FILE = "fake-fc.knobs.json"
RECORD_DIR = "fake-fc.records"


def vm_dir(chroot_base, vm_id, exec_name="firecracker"):
    return os.path.join(chroot_base, exec_name, vm_id)


def record_file(chroot_base, vm_id):
    """The persistent per-id log (kept across jail deletion and restarts) that the fake jailer
    appends to when <chroot_base>/fake-fc.records/ exists or $FAKE_FC_RECORD_DIR is set."""
    return os.path.join(chroot_base, RECORD_DIR, "%s.calls.jsonl" % vm_id)


def records(vdir):
    """Every recorded line (kind "call" or "event"), in file order. vdir: a VM dir
    (<base>/<exec>/<id>) or a .jsonl file (e.g. record_file())."""
    path = vdir if os.path.isfile(vdir) or vdir.endswith(".jsonl") else os.path.join(vdir, CALLS)
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def calls(vdir):
    return [r for r in records(vdir) if r.get("kind") == "call"]


def events(vdir, name=None):
    return [r for r in records(vdir) if r.get("kind") == "event" and
            (name is None or r.get("event") == name)]


def describe(call):
    d = "%s %s" % (call.get("method"), call.get("path"))
    body = call.get("body")
    if call.get("path") == "/actions" and isinstance(body, dict):
        d += " " + str(body.get("action_type"))
    return d


def sequence(vdir):
    return [describe(c) for c in calls(vdir)]


def errors(vdir):
    """Calls answered with an error status, or never answered (status None)."""
    return [c for c in calls(vdir) if c.get("status") is None or c["status"] >= 300]


def assert_no_errors(vdir):
    errs = errors(vdir)
    if errs:
        raise AssertionError("fake firecracker answered with errors:\n" + "\n".join(
            "  %s -> %s %s" % (describe(c), c.get("status"), json.dumps(c.get("response")))
            for c in errs))


def jailer_report(vdir):
    with open(os.path.join(vdir, JAILER), encoding="utf-8") as f:
        return json.load(f)


def write_knobs(path, default=None, by_id=None):
    """path: a file for $FAKE_FC_KNOBS, or a chroot base dir (writes <dir>/fake-fc.knobs.json,
    which the fake jailer reads when the environment does not name a knobs file)."""
    if os.path.isdir(path):
        path = os.path.join(path, KNOBS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"default": default or {}, "by_id": by_id or {}}, f)
    os.rename(tmp, path)
    return path


def enable_records(chroot_base):
    """Make the fake jailer keep <base>/fake-fc.records/<id>.calls.jsonl for every VM."""
    os.makedirs(os.path.join(chroot_base, RECORD_DIR), exist_ok=True)


class Response:
    def __init__(self, status, headers, body, raw):
        self.status = status
        self.headers = headers      # list of (name, value) in wire order
        self.body = body            # bytes
        self.raw = raw              # the whole response as bytes

    def json(self):
        return json.loads(self.body) if self.body else None

    def fault(self):
        j = self.json()
        return j.get("fault_message") if isinstance(j, dict) else None


class Client:
    """A strict little HTTP/1.1 client over the API Unix socket (keeps the connection)."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def close(self):
        self.sock.close()

    def _read_until(self, sep):
        while sep not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("connection closed")
            self.buf += d
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_response(self):
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.split(": ", 1)) for x in lines[1:] if x]
        n = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("connection closed")
            self.buf += d
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(status, headers, body, head + body)

    def request(self, method, path, body=None, headers=None):
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        req = "%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, path)
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        if body is not None:
            req += "Content-Length: %d\r\n" % len(body)
        self.sock.sendall(req.encode() + b"\r\n" + (body or b""))
        return self.read_response()

    def get(self, path):
        return self.request("GET", path)

    def put(self, path, body):
        return self.request("PUT", path, body)

    def patch(self, path, body):
        return self.request("PATCH", path, body)


def _main(argv):
    if len(argv) != 3 or argv[1] not in ("calls", "seq", "check", "jailer"):
        sys.stderr.write(__doc__)
        return 2
    cmd, vdir = argv[1], argv[2]
    if cmd == "jailer" and vdir.endswith(".jsonl"):
        for e in events(vdir, "jailer"):
            print(json.dumps(e))
        return 0
    if cmd == "calls":
        for r in calls(vdir):
            print(json.dumps(r))
    elif cmd == "seq":
        print("\n".join(sequence(vdir)))
    elif cmd == "jailer":
        print(json.dumps(jailer_report(vdir), indent=1))
    else:
        try:
            assert_no_errors(vdir)
        except AssertionError as e:
            print(e)
            return 1
        print("%d calls, no error responses" % len(calls(vdir)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
