#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small registry (distribution v2 API, read only) that misbehaves on purpose, for the pull
bounds tests (test-img-bounds.c) and bench/image-pull. Images are built in memory with
store-fixture.py's helpers; repositories:

  test/fast:1        one tiny layer, served at full speed
  test/slow:1        one 256 KiB random layer, served at RATE bytes/s (default 4096)
  test/slow2:1 .. test/slow10:1  more such images (more trickling pulls)
  test/stall:1       one layer: 1 KiB of it, then nothing (the connection stays open)
  test/slowmanifest:1  its manifest trickles at one byte a second
  test/huge:1        a layer that declares 1 TiB
  test/bigconfig:1   a config blob that declares 100 MiB
  test/bomb:1        a gzip layer of 48 files of 1 MiB of zeros (about 50 KiB compressed)
  test/big:1         one layer of BIG_MB MiB of random data (default 20)
  test/redirect:1    blob GETs answer 307 to http://127.0.0.1:INNER_PORT/...
  test/token:1       every request answers 401 with a Bearer realm at 127.0.0.1:INNER_PORT
  test/escname:1     a layer entry whose name holds terminal escapes
  test/errbody:1     manifest GETs answer 404 with terminal escapes and 20 KiB of text
  /bucket/lrzip.tar  an "S3 object" (path style) with lrzip's magic: only an external
                     decompressor could read it

  hostile-registry.py DIR [BIND_ADDR]     (env HOSTILE_MINIMAL=1: test/redirect and
                                          test/token only, for a quick start)

Writes DIR/env (PORT, INNER_PORT, <NAME>_DIGEST lines) once serving; every request is
appended to DIR/requests.log ("registry GET /v2/..." or "inner GET /..."). The inner server
(the address a redirect or realm points to) always listens on 127.0.0.1. Runs until killed.
"""
import gzip
import hashlib
import importlib.util
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("storefx", os.path.join(here, "store-fixture.py"))
storefx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(storefx)

RATE = int(os.environ.get("RATE", "4096"))
BIG_MB = int(os.environ.get("BIG_MB", "20"))
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"

blobs = {}  # "sha256:..." -> bytes
manifests = {}  # repo -> (digest, bytes)


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_blob(data):
    d = sha(data)
    blobs[d] = data
    return {"digest": d, "size": len(data)}


def add_image(repo, layer_tars, config_size=None, layer_sizes=None, level=6):
    descs, diff_ids = [], []
    for i, raw in enumerate(layer_tars):
        data = gzip.compress(raw, compresslevel=level, mtime=0)
        diff_ids.append(sha(raw))
        desc = dict(mediaType=OCI_LAYER_GZ, **add_blob(data))
        if layer_sizes and layer_sizes[i] is not None:
            desc["size"] = layer_sizes[i]
        descs.append(desc)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": ["/bin/app"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = dict(mediaType=OCI_CONFIG, **add_blob(json.dumps(config).encode()))
    if config_size is not None:
        cdesc["size"] = config_size
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                       "layers": descs}).encode()
    manifests[repo] = (sha(body), body)
    return sha(body)


def tar1(name, data):
    return storefx.tar_of([(name, "f", data)])


def build():
    env = {}
    env["FAST_DIGEST"] = add_image("test/fast", [tar1("hello", b"fast\n")])
    env["REDIRECT_DIGEST"] = add_image("test/redirect", [tar1("r", b"redirected\n")])
    env["TOKEN_DIGEST"] = add_image("test/token", [tar1("t", b"token\n")])
    env["ESCNAME_DIGEST"] = add_image("test/escname", [tar1("x\x1b]0;pwned\x07/../../evil", b"e")])
    if os.environ.get("HOSTILE_MINIMAL"):
        return env
    # Random data does not compress: gzip level 0 (stored) saves the fixture's start-up time.
    env["SLOW_DIGEST"] = add_image("test/slow", [tar1("slow", os.urandom(256 << 10))], level=0)
    env["SLOW2_DIGEST"] = add_image("test/slow2", [tar1("slow2", os.urandom(256 << 10))], level=0)
    # test/slow3 .. test/slow10: more trickling images (bench/image-pull's contention part).
    for i in range(3, 11):
        add_image(f"test/slow{i}", [tar1(f"slow{i}", os.urandom(256 << 10))], level=0)
    env["STALL_DIGEST"] = add_image("test/stall", [tar1("stall", os.urandom(64 << 10))], level=0)
    env["HUGE_DIGEST"] = add_image("test/huge", [tar1("huge", b"x")], layer_sizes=[1 << 40])
    env["BIGCONFIG_DIGEST"] = add_image("test/bigconfig", [tar1("c", b"c")],
                                        config_size=100 << 20)
    # Each file under any cap, together far over: the running total must stop it.
    bomb = storefx.tar_of([(f"z{i}", "f", bytes(1 << 20)) for i in range(48)])
    env["BOMB_DIGEST"] = add_image("test/bomb", [bomb], level=9)
    env["BIG_DIGEST"] = add_image("test/big", [tar1("big", os.urandom(BIG_MB << 20))], level=0)
    return env


def main():
    d = sys.argv[1]
    bind = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    os.makedirs(d, exist_ok=True)
    env = build()
    logf = os.path.join(d, "requests.log")
    lock = threading.Lock()

    def log(line):
        with lock, open(logf, "a") as f:
            f.write(line + "\n")

    class Inner(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            log(f"inner GET {self.path}")
            body = b'{"token":"inner"}'
            if self.path.startswith("/blob/") and self.path[6:] in blobs:
                body = blobs[self.path[6:]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    inner = ThreadingHTTPServer(("127.0.0.1", 0), Inner)
    inner.daemon_threads = True
    inner_port = inner.server_address[1]

    class Reg(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, code, body=b"", ctype="application/json", extra=()):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            log(f"registry GET {self.path}")
            p = self.path
            if p == "/v2/" or p == "/v2":
                return self.send(200, b"{}")
            if p == "/bucket/lrzip.tar":
                # An "S3 object" only an external program (lrzip) could decompress.
                return self.send(200, b"LRZI\x00\x06" + bytes(range(64)) * 16,
                                 "application/octet-stream", [("ETag", '"lrzip"')])
            parts = p.split("/")
            # /v2/<ns>/<name>/(manifests|blobs)/<ref>
            if len(parts) != 6 or parts[0] != "" or parts[1] != "v2":
                return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
            repo, kind, ref = parts[2] + "/" + parts[3], parts[4], parts[5]
            if repo == "test/token":
                realm = f"http://127.0.0.1:{inner_port}/token"
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', extra=[
                    ("WWW-Authenticate", f'Bearer realm="{realm}",service="hostile"')])
            if repo == "test/errbody" and kind == "manifests":
                msg = "\x1b[31mred\x1b]0;title\x07 \r\n" + "A" * 20000
                body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN",
                                               "message": msg}]}).encode()
                return self.send(404, body)
            if repo == "test/slowmanifest" and kind == "manifests":
                self.send_response(200)
                self.send_header("Content-Type", OCI_MANIFEST)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(3600):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass
                return
            if kind == "manifests":
                if repo not in manifests:
                    return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                dig, body = manifests[repo]
                return self.send(200, body, OCI_MANIFEST, [("Docker-Content-Digest", dig)])
            if kind != "blobs":
                return self.send(404)
            if repo == "test/redirect":
                loc = f"http://127.0.0.1:{inner_port}/blob/{ref}"
                return self.send(307, b"", "text/plain", [("Location", loc)])
            if ref not in blobs:
                # The 1 TiB layer: whoever asks gets an endless stream.
                if repo == "test/huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(1 << 40))
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(bytes(65536))
                    except OSError:
                        return
                return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            data = blobs[ref]
            is_layer = ref != json.loads(manifests[repo][1])["config"]["digest"] \
                if repo in manifests else True
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Docker-Content-Digest", ref)
            self.end_headers()
            try:
                if repo.startswith("test/slow") and is_layer:
                    chunk = max(1, RATE // 8)
                    for i in range(0, len(data), chunk):
                        self.wfile.write(data[i:i + chunk])
                        self.wfile.flush()
                        time.sleep(0.125)
                elif repo == "test/stall" and is_layer:
                    self.wfile.write(data[:1024])
                    self.wfile.flush()
                    time.sleep(3600)
                else:
                    self.wfile.write(data)
            except OSError:
                pass

        do_HEAD = do_GET

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        daemon_threads = True

    reg = Server((bind, 0), Reg)
    threading.Thread(target=inner.serve_forever, daemon=True).start()
    env["PORT"] = str(reg.server_address[1])
    env["INNER_PORT"] = str(inner_port)
    tmp = os.path.join(d, "env.tmp")
    with open(tmp, "w") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")
    os.rename(tmp, os.path.join(d, "env"))
    reg.serve_forever()


if __name__ == "__main__":
    main()
