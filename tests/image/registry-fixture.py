#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Test fixture for image/ fetching: real docker-registry instances (anonymous, htpasswd, bearer
token), a small token server, hand-built OCI test images pushed with skopeo, and an S3 server
(@20minutes/s3rver) holding an oci-archive.

  registry-fixture.py up DIR            start everything, write DIR/env (KEY=VALUE lines)
  registry-fixture.py down DIR          stop what DIR/pids lists, remove DIR
  registry-fixture.py s3-up DIR CACHE   start s3rver (npm-installed into CACHE), upload an archive
  registry-fixture.py token-server ...  (internal) the bearer-token service

Exit status 77 when a needed tool is missing (the caller skips).
"""
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

USER, PASSWORD = "user", "pass"
REFRESH_TOKEN = "refresh-token-of-user"  # what the token server takes as an OAuth2 refresh token


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, ok=(200, 401), timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status in ok:
                    return
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"fixture: {url} did not come up")


def spawn(d, name, argv, **kw):
    log = open(os.path.join(d, name + ".log"), "wb")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, **kw)
    with open(os.path.join(d, "pids"), "a") as f:
        f.write(f"{p.pid}\n")
    return p


# ---- hand-made OCI layouts ----

def tar_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode, ti.uid, ti.gid = len(data), 0, 0o644, 0, 0
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def put_blob(layout, data):
    h = hashlib.sha256(data).hexdigest()
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    if how == "zstd":
        out = subprocess.run(["zstd", "-q", "-c", "-"], input=data, stdout=subprocess.PIPE,
                             check=True).stdout
        return out, "application/vnd.oci.image.layer.v1.tar+zstd"
    return data, "application/vnd.oci.image.layer.v1.tar"


def make_manifest(layout, layers, arch="amd64", config_type="application/vnd.oci.image.config.v1+json"):
    descs, diff_ids = [], []
    for files, how in layers:
        raw = tar_bytes(files)
        data, mt = compress(raw, how)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        descs.append(dict(mediaType=mt, **put_blob(layout, data)))
    config = {"architecture": arch, "os": "linux",
              "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = dict(mediaType=config_type, **put_blob(layout, json.dumps(config).encode()))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    raw = json.dumps(manifest).encode()
    return dict(mediaType=manifest["mediaType"], **put_blob(layout, raw)), raw


def finish_layout(layout, top):
    top = dict(top)
    top["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [top]}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def build_images(d):
    """Returns {name: (layout dir, expected manifest digest or None, extra env)}."""
    out, env = {}, {}
    base = os.path.join(d, "layouts")

    lay = os.path.join(base, "simple")
    desc, _ = make_manifest(lay, [({"etc/hello": b"hello\n"}, "gzip"),
                                  ({"etc/world": b"world\n" * 100}, "gzip")])
    finish_layout(lay, desc)
    out["simple"] = lay
    env["SIMPLE_DIGEST"] = desc["digest"]

    lay = os.path.join(base, "mixed")
    desc, _ = make_manifest(lay, [({"plain": b"uncompressed layer\n"}, "none"),
                                  ({"zst": b"zstd layer\n" * 50}, "zstd")])
    finish_layout(lay, desc)
    out["mixed"] = lay
    env["MIXED_DIGEST"] = desc["digest"]

    lay = os.path.join(base, "tamper")
    desc, _ = make_manifest(lay, [({"victim": os.urandom(16).hex().encode() * 64}, "gzip")])
    finish_layout(lay, desc)
    out["tamper"] = lay
    env["TAMPER_DIGEST"] = desc["digest"]

    lay = os.path.join(base, "big")
    desc, _ = make_manifest(lay, [({"random": os.urandom(768 * 1024)}, "none")])
    finish_layout(lay, desc)
    out["big"] = lay
    env["BIG_DIGEST"] = desc["digest"]

    lay = os.path.join(base, "multi")
    entries = []
    for arch in ("arm64", "amd64"):
        desc, _ = make_manifest(lay, [({"arch": arch.encode() + b"\n"}, "gzip")], arch=arch)
        desc["platform"] = {"architecture": arch, "os": "linux"}
        if arch == "arm64":
            desc["platform"]["variant"] = "v8"
        entries.append(desc)
        env[arch.upper() + "_DIGEST"] = desc["digest"]
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": entries}
    idesc = dict(mediaType=index["mediaType"], **put_blob(lay, json.dumps(index).encode()))
    finish_layout(lay, idesc)
    out["multi"] = lay
    env["MULTI_DIGEST"] = idesc["digest"]

    # A layer type nobody can unpack (the registry takes it).
    lay = os.path.join(base, "bogus-layer")
    _, raw = make_manifest(lay, [({"x": b"x"}, "gzip")])
    m = json.loads(raw)
    m["layers"][0]["mediaType"] = "application/vnd.example.bogus.layer.v1"
    desc = dict(mediaType=m["mediaType"], **put_blob(lay, json.dumps(m).encode()))
    finish_layout(lay, desc)
    out["bogus-layer"] = lay

    # Not a container image: a config media type nobody can run.
    lay = os.path.join(base, "bogus")
    desc, raw = make_manifest(lay, [({"x": b"x"}, "gzip")],
                              config_type="application/vnd.example.bogus.config.v1+json")
    finish_layout(lay, desc)
    out["bogus"] = lay
    return out, env


def skopeo_push(layout, dest, creds=None, extra=()):
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra]
    if creds:
        argv.append("--dest-creds=" + creds)
    argv += [f"oci:{layout}:1", f"docker://{dest}"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def http_push(layout, port, repo):
    """Push an OCI layout byte-for-byte with the v2 API (skopeo would gzip a plain tar layer)."""
    with open(os.path.join(layout, "index.json")) as f:
        mdesc = json.load(f)["manifests"][0]
    blobdir = os.path.join(layout, "blobs", "sha256")
    with open(os.path.join(blobdir, mdesc["digest"][7:]), "rb") as f:
        raw = f.read()
    m = json.loads(raw)
    base = f"http://127.0.0.1:{port}/v2/{repo}"
    for desc in [m["config"]] + m["layers"]:
        with open(os.path.join(blobdir, desc["digest"][7:]), "rb") as f:
            data = f.read()
        req = urllib.request.Request(base + "/blobs/uploads/", method="POST", data=b"")
        with urllib.request.urlopen(req) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = f"http://127.0.0.1:{port}" + loc
        loc += ("&" if "?" in loc else "?") + "digest=" + desc["digest"]
        req = urllib.request.Request(loc, method="PUT", data=data,
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req).close()
    req = urllib.request.Request(base + "/manifests/1", method="PUT", data=raw,
                                 headers={"Content-Type": m["mediaType"]})
    urllib.request.urlopen(req).close()


def start_registry(d, name, auth_yaml=""):
    port = free_port()
    rd = os.path.join(d, name)
    os.makedirs(rd)
    with open(os.path.join(rd, "config.yml"), "w") as f:
        f.write(f"""version: 0.1
log: {{ level: warn }}
storage: {{ filesystem: {{ rootdirectory: {rd}/data }}, delete: {{ enabled: true }} }}
http: {{ addr: 127.0.0.1:{port} }}
{auth_yaml}""")
    spawn(rd, "registry", ["docker-registry", "serve", os.path.join(rd, "config.yml")])
    wait_http(f"http://127.0.0.1:{port}/v2/")
    return port


def up(d):
    for tool in ("docker-registry", "skopeo", "htpasswd", "openssl", "zstd"):
        if not shutil.which(tool):
            print(f"fixture: {tool} not installed")
            sys.exit(77)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("fixture: python3 cryptography not installed")
        sys.exit(77)
    os.makedirs(d)
    images, env = build_images(d)

    port = start_registry(d, "anon")
    env["PORT_ANON"] = str(port)
    for name in ("simple", "tamper", "bogus"):
        skopeo_push(images[name], f"127.0.0.1:{port}/test/{name}:1")
    http_push(images["mixed"], port, "test/mixed")
    http_push(images["big"], port, "test/big")
    http_push(images["bogus-layer"], port, "test/bogus-layer")
    anon_port = port
    skopeo_push(images["multi"], f"127.0.0.1:{port}/test/multi:1", extra=["--all"])
    skopeo_push(images["simple"], f"127.0.0.1:{port}/test/docker:1", extra=["--format", "v2s2"])
    env["ANON_DATA"] = os.path.join(d, "anon", "data")

    hp = os.path.join(d, "htpasswd")
    with open(hp, "w") as f:
        f.write(subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                               stdout=subprocess.PIPE, text=True).stdout)
    port = start_registry(d, "basic", f"auth: {{ htpasswd: {{ realm: test-realm, path: {hp} }} }}\n")
    env["PORT_BASIC"] = str(port)
    skopeo_push(images["simple"], f"127.0.0.1:{port}/test/simple:1", creds=f"{USER}:{PASSWORD}")

    key, crt = os.path.join(d, "token.key"), os.path.join(d, "token.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-subj", "/CN=test-token", "-days", "2"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tport = free_port()
    spawn(d, "token", [sys.executable, os.path.abspath(__file__), "token-server", str(tport), key])
    wait_http(f"http://127.0.0.1:{tport}/health", ok=(200,))
    port = start_registry(d, "token", f"""auth: {{ token: {{ realm: "http://127.0.0.1:{tport}/token",
  service: test-registry, issuer: test-issuer, rootcertbundle: {crt} }} }}
""")
    env["PORT_TOKEN"] = str(port)
    skopeo_push(images["simple"], f"127.0.0.1:{port}/test/simple:1", creds=f"{USER}:{PASSWORD}")
    env["USER"], env["PASSWORD"] = USER, PASSWORD
    env["REFRESH_TOKEN"] = REFRESH_TOKEN

    # Fault injection in front of real registries: a proxy that breaks the first transfer of
    # every blob halfway, and one that redirects blob GETs to a "storage" port.
    fport = free_port()
    spawn(d, "flaky", [sys.executable, os.path.abspath(__file__), "proxy", "flaky", str(fport),
                       "0", str(anon_port), os.path.join(d, "flaky.log")])
    rport, sport = free_port(), free_port()
    spawn(d, "redirect", [sys.executable, os.path.abspath(__file__), "proxy", "redirect",
                          str(rport), str(sport), env["PORT_BASIC"], os.path.join(d, "redirect.log")])
    for p in (fport, rport):
        wait_http(f"http://127.0.0.1:{p}/v2/")
    env["PORT_FLAKY"], env["FLAKY_LOG"] = str(fport), os.path.join(d, "flaky.log")
    env["PORT_REDIRECT"], env["REDIRECT_LOG"] = str(rport), os.path.join(d, "redirect.log")

    with open(os.path.join(d, "env"), "w") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")


def down(d):
    pids = []
    for root, _, files in os.walk(d):  # every spawn() wrote its pid beside its log
        if "pids" in files:
            with open(os.path.join(root, "pids")) as f:
                pids += [int(x) for x in f.read().split()]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)  # each child leads its own session
        except OSError:
            pass
    for pid in pids:
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.02)
    shutil.rmtree(d, ignore_errors=True)


# ---- the token server ----

def token_server(port, keyfile):
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import parse_qs, urlparse
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    with open(keyfile, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    kid = ":".join(b32[i:i + 4] for i in range(0, 48, 4))

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urlparse(self.path)
            if u.path == "/health":
                return self.reply(200, {})
            q = parse_qs(u.query)
            auth = self.headers.get("Authorization", "")
            user = None
            if auth.startswith("Basic "):
                u_, _, p_ = base64.b64decode(auth[6:]).decode().partition(":")
                if (u_, p_) != (USER, PASSWORD):
                    return self.reply(401, {"details": "wrong username or password"})
                user = u_
            self.issue(user, q.get("scope", []), q.get("service", [""])[0])

        def issue(self, user, scopes, service):
            access = []
            for scope in scopes:
                if not scope:
                    continue
                typ, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": typ, "name": name,
                               "actions": actions.split(",") if user else []})
            now = int(time.time())
            claims = {"iss": "test-issuer", "sub": user or "", "aud": service,
                      "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                      "access": access}
            head = b64(json.dumps({"typ": "JWT", "alg": "RS256", "kid": kid}).encode())
            body = b64(json.dumps(claims).encode())
            sig = key.sign(head + b"." + body, padding.PKCS1v15(), hashes.SHA256())
            tok = (head + b"." + body + b"." + b64(sig)).decode()
            self.reply(200, {"token": tok, "access_token": tok, "expires_in": 300})

        def do_POST(self):
            """OAuth2: grant_type=refresh_token with REFRESH_TOKEN gets USER's access."""
            n = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(n).decode()) if 0 < n < 65536 else {}
            if (form.get("grant_type") != ["refresh_token"] or
                    form.get("refresh_token") != [REFRESH_TOKEN]):
                return self.reply(400, {"error": "invalid_grant"})
            self.issue(USER, form.get("scope", [""])[0].split(" "), form.get("service", [""])[0])

    HTTPServer(("127.0.0.1", port), H).serve_forever()


# ---- fault-injecting proxies ----

def proxy(mode, port, storage_port, upstream, logfile):
    import http.client
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    broken = set()
    lock = threading.Lock()

    def log(line):
        with lock, open(logfile, "a") as f:
            f.write(line + "\n")

    def forward(h, path, headers):
        c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
        c.request(h.command, path, headers=headers)
        return c.getresponse()

    class P(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def relay(self, r, cut=None):
            body = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if cut is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
            if cut is not None:
                self.close_connection = True

        def do_GET(self):
            if mode == "count":
                # Logs every request; keeps Host (SigV4 signs it) and a HEAD's Content-Length.
                log(f"{self.command} {self.path}")
                r = forward(self, self.path, dict(self.headers.items()))
                body = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                if r.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            blob = "/blobs/sha256:" in self.path
            hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            if self.server.server_port == storage_port:
                # The redirect target: never given the registry's credentials.
                log(f"storage auth={'present' if 'Authorization' in self.headers else 'absent'}")
                hdrs.pop("Authorization", None)
                hdrs["Authorization"] = "Basic " + base64.b64encode(
                    f"{USER}:{PASSWORD}".encode()).decode()
                return self.relay(forward(self, self.path, hdrs))
            if mode == "redirect" and blob:
                r = forward(self, self.path, dict(hdrs, Range="bytes=0-0"))
                r.read()
                if r.status in (200, 206):  # authorised: send the client elsewhere
                    log("redirect")
                    # With a small body, as distribution's redirects have.
                    loc = f"http://127.0.0.1:{storage_port}{self.path}"
                    body = f'<a href="{loc}">Temporary Redirect</a>.\n'.encode()
                    self.send_response(307)
                    self.send_header("Location", loc)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                return self.relay(forward(self, self.path, hdrs))
            if mode == "flaky" and self.path.endswith("/manifests/schema1"):
                # What an old registry still serves: a signed schema 1 manifest.
                body = json.dumps({"schemaVersion": 1, "name": "test/simple", "tag": "schema1",
                                   "architecture": "amd64", "fsLayers": [], "history": [],
                                   "signatures": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type",
                                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            r = forward(self, self.path, hdrs)
            if mode == "flaky" and blob and r.status == 200:
                with lock:
                    first = self.path not in broken
                    broken.add(self.path)
                if first:
                    log("cut")
                    return self.relay(r, cut=int(r.getheader("Content-Length", "0")) // 2)
            if "Range" in self.headers:
                log(f"range {self.headers['Range']} -> {r.status}")
            self.relay(r)

        do_HEAD = do_GET

    servers = [ThreadingHTTPServer(("127.0.0.1", port), P)]
    if storage_port:
        servers.append(ThreadingHTTPServer(("127.0.0.1", storage_port), P))
        threading.Thread(target=servers[1].serve_forever, daemon=True).start()
    servers[0].serve_forever()


# ---- S3 ----

def s3_up(d, cache):
    if not shutil.which("node") or not shutil.which("npm") or not shutil.which("skopeo"):
        print("fixture: node/npm/skopeo not installed")
        sys.exit(77)
    mod = os.path.join(cache, "node_modules", "@20minutes", "s3rver")
    if not os.path.isdir(mod):
        os.makedirs(cache, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", cache,
                            "@20minutes/s3rver"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if r.returncode != 0 or not os.path.isdir(mod):
            print("fixture: npm install @20minutes/s3rver failed (offline?)")
            sys.exit(77)
    os.makedirs(d)
    images, env = build_images(d)
    port = free_port()
    script = os.path.join(d, "s3rver.js")
    with open(script, "w") as f:
        f.write(f"""const S3rver = require({json.dumps(mod)});
new S3rver({{port: {port}, address: '127.0.0.1', silent: true, directory: {json.dumps(os.path.join(d, 's3data'))},
  configureBuckets: [{{name: 'images'}}]}}).run().then(() => console.log('ready'));
""")
    spawn(d, "s3rver", ["node", script])
    wait_http(f"http://127.0.0.1:{port}/", ok=(200, 403, 404, 400))
    for name, extra in (("simple", []), ("multi", ["--all"])):
        arch = os.path.join(d, name + ".tar")
        subprocess.run(["skopeo", "copy", "--quiet", *extra, f"oci:{images[name]}:1",
                        f"oci-archive:{arch}"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["curl", "-sf", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
                        "--user", "S3RVER:S3RVER", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                        "--data-binary", "@" + arch,
                        f"http://127.0.0.1:{port}/images/oci/{name}.tar"], check=True)
    # A tampered archive: the simple image with one byte of its largest blob flipped.
    src, bad = os.path.join(d, "simple.tar"), os.path.join(d, "tampered.tar")
    with tarfile.open(src) as tin, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as tout:
        members = tin.getmembers()
        lay = images["simple"]
        with open(os.path.join(lay, "index.json")) as f:
            mdig = json.load(f)["manifests"][0]["digest"][7:]
        with open(os.path.join(lay, "blobs", "sha256", mdig)) as f:
            layer = json.load(f)["layers"][-1]["digest"][7:]
        victim = next(m for m in members if m.name.endswith("blobs/sha256/" + layer))
        for m in members:
            data = tin.extractfile(m).read() if m.isfile() else None
            if m is victim:
                data = data[:10] + bytes([data[10] ^ 0xff]) + data[11:]
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    env["TAMPERED_BLOB"] = "sha256:" + os.path.basename(victim.name)
    subprocess.run(["curl", "-sf", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
                    "--user", "S3RVER:S3RVER", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                    "--data-binary", "@" + bad,
                    f"http://127.0.0.1:{port}/images/oci/tampered.tar"], check=True)
    env["PORT_S3"] = str(port)
    # A request-counting proxy in front of s3rver (which logs nothing useful when silent).
    cport = free_port()
    spawn(d, "s3count", [sys.executable, os.path.abspath(__file__), "proxy", "count", str(cport),
                         "0", str(port), os.path.join(d, "s3count-requests.log")])
    wait_http(f"http://127.0.0.1:{cport}/", ok=(200, 403, 404, 400))
    env["PORT_S3_COUNT"], env["S3_COUNT_LOG"] = str(cport), os.path.join(d, "s3count-requests.log")
    with open(os.path.join(d, "env"), "w") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")


def main():
    cmd = sys.argv[1]
    if cmd == "up":
        try:
            up(sys.argv[2])
        except BaseException:
            down(sys.argv[2])
            raise
    elif cmd == "s3-up":
        try:
            s3_up(sys.argv[2], sys.argv[3])
        except SystemExit as e:
            if e.code != 77:
                down(sys.argv[2])
            raise
        except BaseException:
            down(sys.argv[2])
            raise
    elif cmd == "down":
        down(sys.argv[2])
    elif cmd == "proxy":
        proxy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    elif cmd == "token-server":
        token_server(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit("usage: registry-fixture.py up|down|s3-up DIR")


if __name__ == "__main__":
    main()
