#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Extra images for the store tests and the pull benchmark, pushed byte-for-byte to a running
docker-registry (registry-fixture.py's helpers, imported from the file beside this one).

  store-fixture.py push PORT DIR      hostile and bad-diff_id images -> test/hostile:1, test/baddiff:1
  store-fixture.py bench PORT DIR MB N   an MB-megabyte, N-layer image of random data -> bench/big:1

Prints KEY=VALUE lines (manifest digests) on stdout.
"""
import gzip
import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("regfx", os.path.join(here, "registry-fixture.py"))
regfx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regfx)


def tar_of(entries):
    """entries: list of (name, kind, payload) with kind in f (bytes), l (symlink target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid = 1700000000, 0, 0
            if kind == "f":
                ti.size, ti.mode = len(payload), 0o644
                t.addfile(ti, io.BytesIO(payload))
            elif kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
                t.addfile(ti)
    return buf.getvalue()


def image(layout, layers, bad_diff_id=False, level=6):
    descs, diff_ids = [], []
    for entries in layers:
        raw = tar_of(entries)
        data = gzip.compress(raw, compresslevel=level, mtime=0)
        did = "sha256:" + hashlib.sha256(raw).hexdigest()
        if bad_diff_id:
            did = "sha256:" + hashlib.sha256(raw + b"x").hexdigest()
        diff_ids.append(did)
        descs.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip",
                          **regfx.put_blob(layout, data)))
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": ["/bin/app"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = dict(mediaType="application/vnd.oci.image.config.v1+json",
                 **regfx.put_blob(layout, json.dumps(config).encode()))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    desc = dict(mediaType=manifest["mediaType"],
                **regfx.put_blob(layout, json.dumps(manifest).encode()))
    regfx.finish_layout(layout, desc)
    return desc["digest"]


def main():
    cmd, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(d, exist_ok=True)
    if cmd == "push":
        lay = os.path.join(d, "hostile")
        dig = image(lay, [[("ok", "f", b"fine\n")],
                          [("evil", "l", "/"), ("evil/etc/pwned", "f", b"x")]])
        regfx.http_push(lay, port, "test/hostile")
        print(f"HOSTILE_DIGEST={dig}")
        lay = os.path.join(d, "baddiff")
        dig = image(lay, [[("a", "f", b"a\n")]], bad_diff_id=True)
        regfx.http_push(lay, port, "test/baddiff")
        print(f"BADDIFF_DIGEST={dig}")
    elif cmd == "bench":
        mb, n = int(sys.argv[4]), int(sys.argv[5])
        per = mb * 1024 * 1024 // n
        layers = []
        for i in range(n):
            files = [(f"layer{i}", "d", None)]
            # Many files of mixed size, random (incompressible) data, like real layers.
            left, j = per, 0
            while left > 0:
                size = min(left, [4096, 65536, 1 << 20, 4 << 20][j % 4])
                files.append((f"layer{i}/f{j}", "f", os.urandom(size)))
                left -= size
                j += 1
            layers.append(files)
        lay = os.path.join(d, "big")
        dig = image(lay, layers, level=1)
        regfx.http_push(lay, port, "bench/big")
        print(f"BIG_DIGEST={dig}")
        print(f"BIG_LAYOUT={lay}")


if __name__ == "__main__":
    main()
