#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Pause, suspend and resume end to end: the real daemon, a real FUSE mount and netlink, the
Firecracker/jailer fake (docs/suspend.md). The verbs' EINVAL and no-op cases, O_NONBLOCK writes
woken by poll() on state and health, EBUSY of rmdir and image while parked, the saved state in
metrics, a suspended VM across a daemon SIGKILL and a simulated reboot, and every call the fake
saw answered 2xx (no contract violation)."""
import errno
import os
import select
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mvmfixture as mf  # noqa: E402
from mvmfixture import expect_errno, fcctl, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
D = None


def nonblocking_with_poll(name, verb, want):
    """verb written O_NONBLOCK returns at once; poll() on state and health wakes; the state
    reaches want."""
    fds = [os.open(D.vm(name, a), os.O_RDONLY) for a in ("state", "health")]
    try:
        for fd in fds:
            os.read(fd, 4096)
        p = select.poll()
        for fd in fds:
            p.register(fd, select.POLLPRI)
        t0 = time.monotonic()
        assert D.write(name, "state", verb + "\n", os.O_NONBLOCK) == len(verb) + 1
        took = time.monotonic() - t0
        woken = set()
        end = time.monotonic() + 10
        while len(woken) < 2 and time.monotonic() < end:
            for fd, ev in p.poll(1000):
                if ev & select.POLLPRI:
                    woken.add(fd)
                    os.pread(fd, 4096, 0)
        assert woken == set(fds), woken
        wait_for(lambda: D.state_of(name) == want, 10, want)
        return took
    finally:
        for fd in fds:
            os.close(fd)


def test_setup():
    os.mkdir(D.vm("idle"))
    os.mkdir(D.vm("p1"))
    assert D.write("p1", "image", IMAGE + "\n") == len(IMAGE) + 1


def test_einval_on_idle():
    for verb in ("pause", "resume", "suspend"):
        expect_errno(errno.EINVAL, D.write, "idle", "state", verb + "\n")
    assert D.state_of("idle") == "created"


def test_pause_resume():
    assert D.write("p1", "state", "start\n") == 6
    assert D.state_of("p1") == "running", D.read("p1", "error")
    assert D.write("p1", "state", "resume\n") == 7       # no-op on running
    nonblocking_with_poll("p1", "pause", "paused")
    assert D.read("p1", "health").startswith("paused\n"), D.read("p1", "health")
    assert D.write("p1", "state", "pause\n") == 6        # no-op on paused
    expect_errno(errno.EBUSY, os.rmdir, D.vm("p1"))
    expect_errno(errno.EBUSY, D.write, "p1", "image", IMAGE + "\n")
    assert D.write("p1", "state", "resume\n") == 7
    assert D.state_of("p1") == "running"


def test_suspend_and_restore():
    pid = int(D.read("p1", "pid").strip())
    nonblocking_with_poll("p1", "suspend", "suspended")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z", 5, "VMM gone")
    assert D.read("p1", "pid").strip() == ""
    assert not os.path.exists(D.vm_jail("p1")), "jail left while suspended"
    h = D.read("p1", "health")
    assert h.startswith("suspended\n") and "\nsaved: suspended " in h, h
    m = open(D.vm("p1", "metrics")).read()
    line = [ln for ln in m.splitlines() if ln.startswith('mvmfs_vm_saved_state_bytes{vm="p1"}')]
    assert line and int(line[0].split()[-1]) > 0, line
    assert D.write("p1", "state", "suspend\n") == 8     # no-op on suspended
    assert D.write("p1", "state", "pause\n") == 6       # no-op on suspended
    expect_errno(errno.EBUSY, os.rmdir, D.vm("p1"))
    assert D.write("p1", "state", "start\n") == 6
    assert D.state_of("p1") == "running", D.read("p1", "error")
    assert D.read("p1", "error") == ""


def test_suspended_across_daemon_sigkill():
    assert D.write("p1", "state", "suspend\n") == 8
    D.kill9()
    D.start()
    assert D.state_of("p1") == "suspended", D.read("p1", "error")
    assert D.write("p1", "state", "resume\n") == 7
    assert D.state_of("p1") == "running", D.read("p1", "error")


def test_suspended_across_a_reboot():
    assert D.write("p1", "state", "suspend\n") == 8
    D.kill9()
    # What a reboot leaves: no VMM, no network namespace or links of the VM.
    D.kill_vmms()
    for ns in os.listdir("/run/netns"):
        subprocess.run(["ip", "netns", "del", ns])
    D.start()
    assert D.state_of("p1") == "suspended", D.read("p1", "error")
    assert D.write("p1", "state", "start\n") == 6
    assert D.state_of("p1") == "running", D.read("p1", "error")


def test_stop_discards_and_nothing_is_left():
    assert D.write("p1", "state", "suspend\n") == 8
    assert D.write("p1", "state", "stop\n") == 5
    assert D.state_of("p1") == "stopped"
    wait_for(lambda: not os.path.exists(os.path.join(D.state, "vms", "p1", "suspend")), 5,
             "saved state discarded")
    os.rmdir(D.vm("p1"))
    os.rmdir(D.vm("idle"))
    wait_for(lambda: not leftovers(D, "p1"), 5, "no leftovers")


def test_suspend_interrupted_by_a_daemon_sigkill():
    # The snapshot never completes (the fake's API hangs on it); the daemon dies meanwhile.
    # The next one must not take a half-written state for good: running or failed, never
    # suspended, and no saved state.
    fcctl.write_knobs(D.knobs, by_id={"cut": {"hang_on": "PUT /snapshot/create"}})
    os.mkdir(D.vm("cut"))
    D.write("cut", "image", IMAGE)
    assert D.write("cut", "state", "start\n") == 6
    assert D.write("cut", "state", "suspend\n", os.O_NONBLOCK) == 8
    wait_for(lambda: any(r.get("path") == "/snapshot/create" for r in D.records("cut")), 5,
             "snapshot/create sent")
    assert D.state_of("cut") == "suspending"
    D.kill9()
    fcctl.write_knobs(D.knobs)
    D.start()
    st = D.state_of("cut")
    assert st in ("running", "failed"), (st, D.read("cut", "error"))
    assert "suspend" in D.read("cut", "error"), D.read("cut", "error")
    assert not os.path.exists(os.path.join(D.state, "vms", "cut", "suspend", "state"))
    D.write("cut", "state", "kill")
    os.rmdir(D.vm("cut"))
    wait_for(lambda: not leftovers(D, "cut"), 10, "no leftovers")


def test_fake_saw_no_error_response():
    recs = [r for r in D.records("p1") if r.get("kind") == "call"]
    errs = [r for r in recs if r.get("status") is None or r["status"] >= 300]
    assert not errs, errs
    seq = [fcctl.describe(r) for r in recs]
    for want in ("PATCH /vm", "PUT /snapshot/create", "PUT /snapshot/load"):
        assert want in seq, seq


CASES = [(f.__name__, f) for f in (
    test_setup, test_einval_on_idle, test_pause_resume, test_suspend_and_restore,
    test_suspended_across_daemon_sigkill, test_suspended_across_a_reboot,
    test_stop_discards_and_nothing_is_left, test_suspend_interrupted_by_a_daemon_sigkill,
    test_fake_saw_no_error_response)]

rc = 1
try:
    D = mf.Daemon(TMP, REG)
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
