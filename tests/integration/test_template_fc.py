#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Booted templates on the Firecracker backend end to end (docs/template.md): the real daemon on
a real FUSE mount and netlink, the Firecracker/jailer fake running the real guest agent in test
mode as each guest. Three VMs of one layout: exactly one snapshot/create (the first start
builds the template in its own jail), one snapshot/load per start, each in its own jail (uid,
netns), each VMM mapping the template's one memory file (same inode, root's, read-only), each
guest taking its own identity (name, address, MAC); a clone suspends into files of its own and
resumes; a corrupt template costs a cold boot that works and is rebuilt; --no-template boots;
and every call the fake saw was answered 2xx (no contract violation)."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mvmfixture as mf  # noqa: E402
from mvmfixture import fcctl, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
AGENT = os.path.join(mf.BUILD, "guest", "mvmfs-agent")
if not os.access(AGENT, os.X_OK):
    mf.skip("guest agent not built")
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
NAMES = ("w1", "w2", "w3")
# The guest: the agent reads the initramfs its VMM was given (in the jail): the template's on a
# template start (it then waits for its identity), the VM's own on a cold boot.
KNOBS = {"default": {"agent_cmd": f'exec {AGENT} --test-mode --ctl-fd 3 --boot-id '
                                  f'"$FAKE_FC_GUEST_BOOT_ID" --initrd '
                                  f'"$(dirname "$FAKE_FC_VSOCK_UDS")/initrd"'}}
D = None


def daemon_log():
    with open(os.path.join(TMP, "daemon.log"), errors="replace") as f:
        return f.read()


def template_dirs():
    d = os.path.join(D.state, "templates")
    return [os.path.join(d, n) for n in os.listdir(d) if "." not in n] if os.path.isdir(d) \
        else []


def identity_line(name):
    """The agent's line for the identity it took, once it is in the VM's log."""
    want = f"template: identity of '{name}' taken (address {D.read(name, 'ip').strip()}, MAC "

    def found():
        for line in D.read(name, "log").splitlines():
            if want in line:
                return line
        return None
    return wait_for(found, 15, lambda: f"{want!r} in the log of {name}:\n" + D.read(name, "log"))


def loads(name):
    return fcctl.events(fcctl.record_file(D.jail, name), "snapshot_loaded")


def calls(name, what):
    return [r for r in D.records(name) if r.get("kind") == "call" and
            fcctl.describe(r) == what]


def start(name):
    assert D.write(name, "state", "start\n") == 6
    assert D.state_of(name) == "running", D.read(name, "error")


def test_three_vms_from_one_template():
    macs = set()
    for n in NAMES:
        os.mkdir(D.vm(n))
        D.write(n, "image", IMAGE)
        start(n)
        line = identity_line(n)
        macs.add(line.split("MAC ")[1].split(")")[0])
    assert len(macs) == 3, macs
    assert "w1: template: built " in daemon_log(), D.log_tail()
    for n in NAMES:
        assert f"{n}: template: started from " in daemon_log(), D.log_tail()
    (tdir,) = template_dirs()
    st = os.stat(os.path.join(tdir, "mem"))
    assert st.st_uid == 0 and st.st_mode & 0o7777 == 0o444, oct(st.st_mode)
    # One snapshot/create for the layout (w1's first VMM), one load per start.
    assert len(calls("w1", "PUT /snapshot/create")) == 1
    assert sum(len(calls(n, "PUT /snapshot/create")) for n in NAMES) == 1
    for n in NAMES:
        assert len(calls(n, "PUT /snapshot/load")) == 1, n
        (ev,) = loads(n)
        assert (ev["mem_file"]["dev"], ev["mem_file"]["ino"]) == (st.st_dev, st.st_ino), ev
        assert not ev["mem_file"]["writable"], ev
        assert os.stat(os.path.join(D.vm_jail(n), "root", "mem")).st_ino == st.st_ino
    # Each in its own jail: jail dir, uid, netns.
    jails = [fcctl.jailer_report(D.vm_jail(n)) for n in NAMES]
    for key in ("chroot_dir", "uid", "netns"):
        assert len({j[key] for j in jails}) == 3, [j[key] for j in jails]
    # The template was built in w1's own jail, before w1's start from it.
    runs = [r for r in fcctl.events(fcctl.record_file(D.jail, "w1"), "jailer")]
    assert len(runs) == 2, runs


def test_clone_suspends_into_its_own_files():
    (tdir,) = template_dirs()
    tmem = os.path.join(tdir, "mem")
    before = open(tmem, "rb").read()
    assert D.write("w2", "state", "suspend\n") == 8
    assert D.state_of("w2") == "suspended", D.read("w2", "error")
    own = os.stat(os.path.join(D.state, "vms", "w2", "suspend", "mem"))
    assert own.st_ino != os.stat(tmem).st_ino
    start("w2")
    assert D.read("w2", "error") == ""
    (ev,) = loads("w2")[1:]
    assert ev["mem_file"]["ino"] != os.stat(tmem).st_ino, ev
    assert open(tmem, "rb").read() == before, "the template changed"
    wait_for(lambda: "clock: wall clock stepped by " in D.read("w2", "log"), 10, "clock step")


def test_corrupt_template_cold_boots_and_is_rebuilt():
    (tdir,) = template_dirs()
    assert D.write("w3", "state", "stop\n") == 5
    with open(os.path.join(tdir, "state"), "ab") as f:
        f.write(b"x")
    n_start = len(calls("w3", "PUT /actions InstanceStart"))
    start("w3")
    assert "w3: template: corrupt: checksum mismatch: cold boot" in daemon_log(), D.log_tail()
    assert len(calls("w3", "PUT /actions InstanceStart")) == n_start + 1
    assert not os.path.exists(tdir)
    assert D.write("w3", "state", "stop\n") == 5
    start("w3")
    assert len(template_dirs()) == 1
    assert daemon_log().count("w3: template: built ") == 1, D.log_tail()
    assert len(calls("w3", "PUT /snapshot/create")) == 1
    identity_line("w3")


def test_no_template_boots():
    D.stop()
    D.args.insert(-1, "--no-template")
    D.start()
    assert D.state_of("w1") == "running", D.read("w1", "error")
    assert D.write("w1", "state", "stop\n") == 5
    n_loads = len(calls("w1", "PUT /snapshot/load"))
    start("w1")
    assert "w1: template: off (--no-template): cold boot" in daemon_log(), D.log_tail()
    assert len(calls("w1", "PUT /snapshot/load")) == n_loads
    boot = [r for r in D.records("w1") if r.get("kind") == "call" and
            r.get("path") == "/boot-source"][-1]["body"]
    assert "vmname=w1" in boot["boot_args"], boot


def test_fake_saw_no_error_response():
    for n in NAMES:
        recs = D.records(n)
        errs = [r for r in recs if r.get("kind") == "call" and
                (r.get("status") is None or r["status"] >= 300)]
        assert not errs, errs
        assert not [r for r in recs if r.get("event") == "contract_violation"], n


def test_nothing_is_left():
    for n in NAMES:
        D.write(n, "state", "kill")
        os.rmdir(D.vm(n))
        wait_for(lambda: not leftovers(D, n), 10, lambda: leftovers(D, n))


CASES = [(f.__name__, f) for f in (
    test_three_vms_from_one_template, test_clone_suspends_into_its_own_files,
    test_corrupt_template_cold_boots_and_is_rebuilt, test_no_template_boots,
    test_fake_saw_no_error_response, test_nothing_is_left)]

rc = 1
try:
    D = mf.Daemon(TMP, REG, knobs=KNOBS, template=True)
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
