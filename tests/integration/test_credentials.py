#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End to end, registry credentials: the real daemon (Firecracker fake) pulling from a
docker-registry with htpasswd, credentials from a credential helper named by --docker-config's
credHelpers. A good helper lets the VM start; a failing helper's message reaches the VM's
error file, a helper answering garbage does not leak the secret there, and a helper with
nothing stored means anonymous (the registry refuses)."""
import errno
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mvmfixture as mf  # noqa: E402
from mvmfixture import expect_errno, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "htpasswd", "ip"))
mf.enter_private_namespaces()
mf.setup_namespace()


class BasicRegistry:
    """A docker-registry with htpasswd auth holding test/simple:1."""

    def __init__(self, tmp):
        rf = self.rf = mf.load_registry_fixture()
        self.dir = os.path.join(tmp, "registry")
        os.makedirs(self.dir)
        images, _ = rf.build_images(self.dir)
        hp = os.path.join(self.dir, "htpasswd")
        with open(hp, "w") as f:
            f.write(subprocess.run(["htpasswd", "-Bbn", rf.USER, rf.PASSWORD], check=True,
                                   stdout=subprocess.PIPE, text=True).stdout)
        self.port = rf.start_registry(
            self.dir, "basic", f"auth: {{ htpasswd: {{ realm: test-realm, path: {hp} }} }}\n")
        self.host = f"127.0.0.1:{self.port}"
        rf.skopeo_push(images["simple"], f"{self.host}/test/simple:1",
                       creds=f"{rf.USER}:{rf.PASSWORD}")

    def stop(self):
        self.rf.down(self.dir)


TMP = mf.tmpdir()
REG = BasicRegistry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
BIN = os.path.join(TMP, "bin")
CONFIG = os.path.join(TMP, "docker-config.json")
SECRET = "s3cr3t-never-shown"
D = None

HELPERS = {
    "good": f"printf '{{\"ServerURL\":\"x\",\"Username\":\"{REG.rf.USER}\",\"Secret\":\"{REG.rf.PASSWORD}\"}}'",
    "fail": "echo 'vault is sealed'; exit 4",
    "garbage": f"printf '{{\"Username\":\"u\",\"Secret\":\"{SECRET}\"'",
    "none": "echo 'credentials not found in native keychain'; exit 1",
}


def write_helpers():
    os.makedirs(BIN)
    for name, body in HELPERS.items():
        p = os.path.join(BIN, "docker-credential-" + name)
        with open(p, "w") as f:
            f.write(f"#!/bin/sh\n[ \"$1\" = get ] || exit 3\ncat >/dev/null\n{body}\n")
        os.chmod(p, 0o755)


def use_helper(name):
    with open(CONFIG + ".tmp", "w") as f:
        f.write(f'{{"auths": {{"{REG.host}": {{}}}}, "credHelpers": {{"{REG.host}": "{name}"}}}}')
    os.rename(CONFIG + ".tmp", CONFIG)


def test_good_helper_starts():
    use_helper("good")
    os.mkdir(D.vm("c1"))
    D.write("c1", "image", IMAGE)
    D.write("c1", "state", "start")
    assert D.state_of("c1") == "running"
    D.write("c1", "state", "stop")


def test_failing_helper_message_in_error():
    use_helper("fail")   # read again at the next pull of the tag
    expect_errno(errno.EIO, D.write, "c1", "state", "start")
    err = D.read("c1", "error")
    print("# " + err.strip())
    assert "docker-credential-fail failed (exit status 4): vault is sealed" in err, err


def test_garbage_answer_does_not_leak_secret():
    use_helper("garbage")
    expect_errno(errno.EIO, D.write, "c1", "state", "start")
    err = D.read("c1", "error")
    print("# " + err.strip())
    assert "docker-credential-garbage" in err and SECRET not in err, err
    with open(os.path.join(TMP, "daemon.log"), errors="replace") as f:
        assert SECRET not in f.read(), "secret in the daemon log"


def test_nothing_stored_is_anonymous():
    use_helper("none")
    expect_errno(errno.EIO, D.write, "c1", "state", "start")
    err = D.read("c1", "error")
    print("# " + err.strip())
    assert "unauthorized" in err and "docker-credential" not in err, err
    use_helper("good")
    D.write("c1", "state", "start")
    assert D.state_of("c1") == "running"
    D.write("c1", "state", "kill")
    os.rmdir(D.vm("c1"))
    wait_for(lambda: not leftovers(D, "c1"), 5, "no leftovers")


CASES = [(f.__name__, f) for f in (
    test_good_helper_starts, test_failing_helper_message_in_error,
    test_garbage_answer_does_not_leak_secret, test_nothing_stored_is_anonymous)]

rc = 1
try:
    write_helpers()
    use_helper("good")
    os.environ["PATH"] = BIN + ":" + os.environ.get("PATH", "/usr/bin:/bin")
    D = mf.Daemon(TMP, REG, extra=["--docker-config", CONFIG])
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
