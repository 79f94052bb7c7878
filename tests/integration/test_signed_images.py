#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End to end, signed images: the real daemon with --verify-key (the Firecracker fake as VMM) and
a real registry holding images and cosign signatures made with Python's cryptography
(tests/image/sign-fixture.py). A signed image starts and health names the key; an unsigned one,
one signed by another key, a signature for another digest and a tampered payload each fail the
start with EIO and an error naming the image, the digest and why; a key file that does not parse
keeps the daemon from starting."""
import errno
import importlib.util
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mvmfixture as mf  # noqa: E402
from mvmfixture import expect_errno, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "ip"))
try:
    import cryptography  # noqa: F401
except ImportError:
    mf.skip("needs python3-cryptography")
mf.enter_private_namespaces()
mf.setup_namespace()


class SignedRegistry:
    """sign-fixture.py's registry and keys; .env holds its KEY=VALUE lines."""

    def __init__(self, tmp):
        path = os.path.join(mf.SRC, "tests", "image", "sign-fixture.py")
        spec = importlib.util.spec_from_file_location("sign_fixture", path)
        self.sf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.sf)
        self.dir = os.path.join(tmp, "signed")
        self.sf.up(self.dir)
        with open(os.path.join(self.dir, "env")) as f:
            self.env = dict(line.rstrip("\n").split("=", 1) for line in f)
        self.host = "127.0.0.1:" + self.env["PORT"]

    def stop(self):
        self.sf.regfx.down(self.dir)


TMP = mf.tmpdir()
REG = SignedRegistry(TMP)
E = REG.env
D = None


def image(name):
    return f"{REG.host}/test/{name}:1"


def start_ok(name):
    os.mkdir(D.vm(name))
    D.write(name, "image", image(name))
    D.write(name, "state", "start")
    assert D.state_of(name) == "running"


def start_refused(name, why):
    os.mkdir(D.vm(name))
    D.write(name, "image", image(name))
    expect_errno(errno.EIO, D.write, name, "state", "start")
    assert D.state_of(name) == "failed"
    err = D.read(name, "error")
    print("# " + err.strip())
    digest = E["DIGEST_" + name.upper()]
    assert image(name) in err and digest in err and why in err, err
    # Nothing of the image was fetched: the store has no blob.
    blobs = os.path.join(D.state, "images", "blobs", "sha256")
    assert not os.listdir(blobs), os.listdir(blobs)


def rm(name):
    D.write(name, "state", "kill")
    os.rmdir(D.vm(name))
    wait_for(lambda: not leftovers(D, name), 5, "no leftovers")


def test_unsigned():
    start_refused("unsigned", "not signed (no sha256-")
    rm("unsigned")


def test_other_key():
    start_refused("wrongkey", "does not verify with any configured key")
    rm("wrongkey")


def test_other_digest():
    start_refused("otherdigest", "is for another image (" + E["DIGEST_SIGNED"] + ")")
    rm("otherdigest")


def test_tampered_payload():
    start_refused("tampered", "does not verify with any configured key")
    rm("tampered")


def test_signed_starts_and_health_names_key():
    start_ok("signed")
    health = D.read("signed", "health")
    want = f"image: ready {E['DIGEST_SIGNED']} signed by key {E['KEY_A_ID']}\n"
    assert want in health, health
    rm("signed")


def test_several_one_verifies():
    start_ok("several")
    assert f"signed by key {E['KEY_A_ID']}" in D.read("several", "health")
    rm("several")


def test_bad_key_refuses_to_start():
    r = subprocess.run([os.path.join(mf.BUILD, "daemon", "mvmfs"), "--vmm", "qemu",
                        "--state-dir", os.path.join(TMP, "other-state"),
                        "--verify-key", E["KEY_A"], "--verify-key", E["KEY_BAD"],
                        os.path.join(TMP, "other-mnt")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    print("# " + r.stdout.strip())
    assert r.returncode == 2, r
    assert E["KEY_BAD"] in r.stdout and "not a PEM public key" in r.stdout, r.stdout
    assert not os.path.exists(os.path.join(TMP, "other-state"))
    # The same key given as a --config key.
    conf = os.path.join(TMP, "mvmfs.conf")
    with open(conf, "w") as f:
        f.write(f"verify-key = {E['KEY_A']}\nverify-key = {E['KEY_RSA']}\n")
    r = subprocess.run([os.path.join(mf.BUILD, "daemon", "mvmfs"), "--vmm", "qemu",
                        "--state-dir", os.path.join(TMP, "other-state"), "--config", conf,
                        os.path.join(TMP, "other-mnt")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    print("# " + r.stdout.strip())
    assert r.returncode == 2 and "not an ECDSA P-256 key" in r.stdout, r


CASES = [(f.__name__, f) for f in (
    test_unsigned, test_other_key, test_other_digest, test_tampered_payload,
    test_signed_starts_and_health_names_key, test_several_one_verifies,
    test_bad_key_refuses_to_start)]

rc = 1
try:
    D = mf.Daemon(TMP, REG, extra=["--verify-key", E["KEY_A"]])
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
