#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Cosign-signed test images, made independently of the code under test: ECDSA P-256 keys and
signatures from Python's `cryptography`, simple-signing payloads and `sha256-<hex>.sig`
manifests laid out as cosign writes them, pushed to a real docker-registry with the v2 API.

  sign-fixture.py up DIR [PORT]   start a registry (or use the one on PORT), push the images and
                                  their signatures, write DIR/env (KEY=VALUE lines)
  sign-fixture.py down DIR        stop what up started, remove DIR

Images (each tag "1" of repository test/<name>, one distinct layer each):
  signed       one signature by key A
  unsigned     no .sig tag
  wrongkey     one signature by key B
  otherdigest  key A's signature of a payload naming the digest of "signed"
  tampered     key A's signature, the payload changed after signing
  otherrepo    key A's signature of a payload naming repository test/signed
  several      signatures: B, A for another digest, A tampered, then a good one by A
  multi        two platforms, key A signed the index; multiplat: A signed the amd64 manifest;
               multiother: B signed the index (DIGEST_<NAME>_INDEX/_AMD64/_ARM64)
Keys: KEY_A/KEY_B (cosign.pub-style PEM), KEY_A_ID/KEY_B_ID (sha256 of the DER public key),
KEY_BAD (not PEM), KEY_RSA (an RSA public key), KEY_PRIV (key A's private key, not a public one).
Exit status 77 when docker-registry or cryptography is missing.
"""
import base64
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("regfx", os.path.join(here, "registry-fixture.py"))
regfx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regfx)

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"


def push_blob(port, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    base = f"http://127.0.0.1:{port}/v2/{repo}"
    req = urllib.request.Request(base + "/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(req) as r:
        loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = f"http://127.0.0.1:{port}" + loc
    loc += ("&" if "?" in loc else "?") + "digest=" + digest
    req = urllib.request.Request(loc, method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return digest


def push_manifest(port, repo, tag, raw, media_type):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}",
                                 method="PUT", data=raw, headers={"Content-Type": media_type})
    urllib.request.urlopen(req).close()


def payload(reference, digest):
    """The simple-signing payload as cosign writes it (compact JSON, optional null)."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()


def sign(key, data):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def push_signatures(port, repo, digest, sigs):
    """sigs: [(payload bytes, base64 signature)] -> the sha256-<hex>.sig manifest (OCI)."""
    layers, diff_ids = [], []
    for data, sig in sigs:
        d = push_blob(port, repo, data)
        layers.append({"mediaType": SIMPLESIGNING, "size": len(data), "digest": d,
                       "annotations": {ANNOTATION: sig}})
        diff_ids.append(d)
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {}}).encode()
    cd = push_blob(port, repo, config)
    mt = "application/vnd.oci.image.manifest.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": mt,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "size": len(config), "digest": cd},
                "layers": layers}
    push_manifest(port, repo, "sha256-" + digest[7:] + ".sig", json.dumps(manifest).encode(), mt)


def push_image(d, port, name):
    lay = os.path.join(d, "layouts", name)
    desc, _ = regfx.make_manifest(lay, [({"etc/name": name.encode() + b"\n"}, "gzip")])
    regfx.finish_layout(lay, desc)
    regfx.http_push(lay, port, "test/" + name)
    return desc["digest"]


def push_multi(d, port, name):
    """A two-platform image (arm64/v8, amd64) under tag 1. Returns (index digest, {arch: manifest
    digest})."""
    lay = os.path.join(d, "layouts", name)
    repo = "test/" + name
    entries, digests = [], {}
    for arch in ("arm64", "amd64"):
        desc, raw = regfx.make_manifest(lay, [({"arch": f"{name} {arch}\n".encode()}, "gzip")],
                                        arch=arch)
        m = json.loads(raw)
        for b in [m["config"]] + m["layers"]:
            with open(os.path.join(lay, "blobs", "sha256", b["digest"][7:]), "rb") as f:
                push_blob(port, repo, f.read())
        push_manifest(port, repo, desc["digest"], raw, desc["mediaType"])
        desc["platform"] = {"architecture": arch, "os": "linux"}
        if arch == "arm64":
            desc["platform"]["variant"] = "v8"
        entries.append(desc)
        digests[arch] = desc["digest"]
    mt = "application/vnd.oci.image.index.v1+json"
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": entries}).encode()
    push_manifest(port, repo, "1", raw, mt)
    return "sha256:" + hashlib.sha256(raw).hexdigest(), digests


def pub_pem(key):
    from cryptography.hazmat.primitives import serialization
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key):
    from cryptography.hazmat.primitives import serialization
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def up(d, port=None):
    if not shutil.which("docker-registry") and port is None:
        print("sign-fixture: docker-registry not installed")
        sys.exit(77)
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError:
        print("sign-fixture: python3 cryptography not installed")
        sys.exit(77)
    os.makedirs(d)
    env = {}
    if port is None:
        port = regfx.start_registry(d, "sig")
    env["PORT"] = str(port)
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {"a.pub": pub_pem(a), "b.pub": pub_pem(b), "bad.pub": b"not a key\n",
             "rsa.pub": pub_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
             "a.key": a.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())}
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    env.update(KEY_A=os.path.join(d, "a.pub"), KEY_B=os.path.join(d, "b.pub"),
               KEY_BAD=os.path.join(d, "bad.pub"), KEY_RSA=os.path.join(d, "rsa.pub"),
               KEY_PRIV=os.path.join(d, "a.key"), KEY_A_ID=key_id(a), KEY_B_ID=key_id(b))

    names = ["signed", "unsigned", "wrongkey", "otherdigest", "tampered", "otherrepo", "several"]
    dig = {n: push_image(d, port, n) for n in names}
    ref = {n: f"127.0.0.1:{port}/test/{n}" for n in names}

    def good(key, n):
        p = payload(ref[n], dig[n])
        return p, sign(key, p)

    def tampered(key, n):
        p = payload(ref[n], dig[n])
        s = sign(key, p)
        return p.replace(b'"optional":null', b'"optional":{"creator":"mallory"}'), s

    push_signatures(port, "test/signed", dig["signed"], [good(a, "signed")])
    push_signatures(port, "test/wrongkey", dig["wrongkey"], [good(b, "wrongkey")])
    p = payload(ref["otherdigest"], dig["signed"])
    push_signatures(port, "test/otherdigest", dig["otherdigest"], [(p, sign(a, p))])
    push_signatures(port, "test/tampered", dig["tampered"], [tampered(a, "tampered")])
    p = payload(ref["signed"], dig["otherrepo"])
    push_signatures(port, "test/otherrepo", dig["otherrepo"], [(p, sign(a, p))])
    p = payload(ref["several"], dig["signed"])
    push_signatures(port, "test/several", dig["several"],
                    [good(b, "several"), (p, sign(a, p)), tampered(a, "several"),
                     good(a, "several")])
    for n in names:
        env["DIGEST_" + n.upper()] = dig[n]

    # Multi-platform: cosign signs the index a tag names ("multi"), or a platform manifest
    # ("multiplat", signed for amd64 only); "multiother" has its index signed by key B.
    for n, key, which in (("multi", a, "index"), ("multiplat", a, "amd64"),
                          ("multiother", b, "index")):
        idx, plats = push_multi(d, port, n)
        target = idx if which == "index" else plats[which]
        p = payload(f"127.0.0.1:{port}/test/{n}", target)
        push_signatures(port, "test/" + n, target, [(p, sign(key, p))])
        env[f"DIGEST_{n.upper()}_INDEX"] = idx
        env[f"DIGEST_{n.upper()}_AMD64"] = plats["amd64"]
        env[f"DIGEST_{n.upper()}_ARM64"] = plats["arm64"]
    with open(os.path.join(d, "env"), "w") as f:
        for k, v in env.items():
            f.write(f"{k}={v}\n")


def main():
    cmd = sys.argv[1]
    if cmd == "up":
        try:
            up(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
        except SystemExit:
            raise
        except BaseException:
            regfx.down(sys.argv[2])
            raise
    elif cmd == "down":
        regfx.down(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} up|down DIR [PORT]")


if __name__ == "__main__":
    main()
