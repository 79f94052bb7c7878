#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End to end: the real mvmfs daemon, a real FUSE mount, a real registry, real netlink in a
private network namespace, and the Firecracker/jailer fake. Drives the mount with plain
syscalls, as scripts and monitoring do."""
import errno
import ipaddress
import os
import select
import shutil
import signal
import sys
import threading
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


def daemon(**kw):
    global D
    D = mf.Daemon(TMP, REG, **kw)
    return D


def test_ready_and_version():
    assert os.path.isdir(D.vm(""))
    v = open(os.path.join(D.mnt, "version")).read()
    assert v.endswith("\n") and v.strip(), repr(v)


def test_names():
    for bad in ("", "-web", "web_1", "web.1", "a" * 37, "wéb"):
        if bad == "":
            continue
        expect_errno(errno.EINVAL, os.mkdir, D.vm(bad))
    os.mkdir(D.vm("web-1"))
    expect_errno(errno.EEXIST, os.mkdir, D.vm("web-1"))
    assert sorted(os.listdir(D.vm(""))) == ["web-1"]
    for attr in ("state", "image", "ip", "health", "error", "log"):
        assert attr in os.listdir(D.vm("web-1")), attr


def test_ip_assigned_at_mkdir():
    ip = D.read("web-1", "ip")
    assert ip.endswith("\n")
    addr = ipaddress.IPv6Address(ip.strip())
    assert addr in ipaddress.IPv6Network("fd42:e2e::/64"), addr
    assert str(addr) == ip.strip(), "not RFC 5952 text"
    assert D.state_of("web-1") == "created"


def test_image_validation():
    expect_errno(errno.EINVAL, D.write, "web-1", "image", "UPPER/Case:tag\n")
    expect_errno(errno.EINVAL, D.write, "web-1", "image", "a b\n")
    assert D.write("web-1", "image", IMAGE + "\n") == len(IMAGE) + 1
    assert D.read("web-1", "image").strip() == IMAGE


def test_verbs_validation():
    expect_errno(errno.EINVAL, D.write, "web-1", "state", "launch\n")
    expect_errno(errno.EINVAL, D.write, "web-1", "state", "start\n\n")
    for ro in ("ip", "health", "error", "log"):
        expect_errno(errno.EACCES, os.open, D.vm("web-1", ro), os.O_WRONLY)


def test_start_blocks_until_running():
    n = D.write("web-1", "state", "start\n")
    assert n == 6
    assert D.state_of("web-1") == "running", D.read("web-1", "error")
    health = D.read("web-1", "health").splitlines()
    assert health[0] in ("starting", "healthy", "unhealthy"), health
    keys = {line.split(":")[0] for line in health[1:]}
    for k in ("vmm", "agent", "app", "net"):
        assert k in keys, health
    # start on a running VM succeeds and changes nothing
    assert D.write("web-1", "state", "start") == 5
    assert D.state_of("web-1") == "running"


def test_image_busy_while_running():
    expect_errno(errno.EBUSY, D.write, "web-1", "image", IMAGE)
    expect_errno(errno.EBUSY, os.rmdir, D.vm("web-1"))


def test_jail_as_contract_says():
    rep = fcctl.jailer_report(D.vm_jail("web-1"))
    text = str(rep)
    assert "--netns" in text and "--uid" in text, rep
    root = os.path.join(D.vm_jail("web-1"), "root")
    st = os.stat(root)
    assert st.st_uid != 0 and st.st_gid != 0, "jail not owned by the VM's uid"
    assert os.path.exists(os.path.join(root, "run", "firecracker.socket"))


def test_stop_start_kill_restart():
    assert D.write("web-1", "state", "stop\n") == 5
    assert D.state_of("web-1") == "stopped", D.read("web-1", "error")
    assert D.write("web-1", "state", "stop\n") == 5   # no-op on stopped
    assert D.write("web-1", "state", "start\n") == 6
    assert D.state_of("web-1") == "running"
    assert D.write("web-1", "state", "kill\n") == 5
    assert D.state_of("web-1") == "stopped"
    assert D.write("web-1", "state", "start\n") == 6
    assert D.write("web-1", "state", "restart\n") == 8
    assert D.state_of("web-1") == "running"
    assert D.write("web-1", "state", "stop\n") == 5
    assert D.state_of("web-1") == "stopped"


def test_fake_saw_no_error_response():
    recs = [r for r in D.records("web-1") if r.get("kind") == "call"]
    assert recs, "the fake recorded nothing"
    errs = [r for r in recs if r.get("status") is None or r["status"] >= 300]
    assert not errs, errs
    seq = [fcctl.describe(r) for r in recs]
    assert "PUT /actions InstanceStart" in seq, seq
    assert "PUT /boot-source" in seq and "PUT /machine-config" in seq, seq


def test_nonblocking_start_and_poll():
    fd = os.open(D.vm("web-1", "state"), os.O_RDONLY)
    try:
        os.read(fd, 64)
        assert D.write("web-1", "state", "start\n", os.O_NONBLOCK) == 6
        p = select.poll()
        p.register(fd, select.POLLPRI)
        ev = p.poll(10000)
        assert ev and ev[0][1] & select.POLLPRI, ev
        wait_for(lambda: D.state_of("web-1") == "running", 10, "running")
    finally:
        os.close(fd)


def test_concurrent_writers_one_busy():
    # Several rounds: the writers race the supervisor's commit of the first one's restart
    # (an accepted restart was answered EBUSY along with the refused ones, in most rounds).
    # Opened first, without O_TRUNC (a truncating open would wait for a blocked writer), and
    # released together.
    for _ in range(5):
        results = []
        bar = threading.Barrier(3)

        def w(verb):
            fd = os.open(D.vm("web-1", "state"), os.O_WRONLY)
            try:
                bar.wait()
                results.append(os.write(fd, verb.encode()))
            except OSError as e:
                results.append(e.errno)
            finally:
                os.close(fd)

        ts = [threading.Thread(target=w, args=("restart\n",)) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        why = (results, D.read("web-1", "state"), D.read("web-1", "health"),
               D.read("web-1", "error"))
        assert 8 in results, why
        assert all(r in (8, errno.EBUSY) for r in results), why
        assert D.state_of("web-1") == "running", why


def test_destroy_leaves_nothing():
    assert D.write("web-1", "state", "kill\n") == 5
    os.rmdir(D.vm("web-1"))
    expect_errno(errno.ENOENT, os.stat, D.vm("web-1"))
    wait_for(lambda: not leftovers(D, "web-1"), 5, "no leftovers: %s" % leftovers(D, "web-1"))


def test_crash_makes_failed_with_reason():
    fcctl.write_knobs(D.knobs, by_id={"crashy": {"crash_after_start_ms": 300,
                                                 "crash_exit_code": 150}})
    os.mkdir(D.vm("crashy"))
    D.write("crashy", "image", IMAGE)
    D.write("crashy", "state", "start")
    wait_for(lambda: D.state_of("crashy") == "failed", 5, "failed")
    err = D.read("crashy", "error")
    assert err.strip() and "150" in err, err
    os.rmdir(D.vm("crashy"))
    wait_for(lambda: not leftovers(D, "crashy"), 5, "no leftovers")


def test_refused_call_fails_start_with_fault_message():
    fcctl.write_knobs(D.knobs, by_id={"refused": {"refuse": {
        "PUT /machine-config": "Machine config error: vcpu count refused by test"}}})
    os.mkdir(D.vm("refused"))
    D.write("refused", "image", IMAGE)
    expect_errno(errno.EIO, D.write, "refused", "state", "start")
    assert D.state_of("refused") == "failed"
    err = D.read("refused", "error")
    assert "vcpu count refused by test" in err, err
    os.rmdir(D.vm("refused"))
    wait_for(lambda: not leftovers(D, "refused"), 5, "no leftovers")


def test_ignored_ctrl_alt_del_still_stops_at_deadline():
    fcctl.write_knobs(D.knobs, by_id={"stubborn": {"ignore_ctrl_alt_del": True}})
    os.mkdir(D.vm("stubborn"))
    D.write("stubborn", "image", IMAGE)
    D.write("stubborn", "state", "start")
    t0 = time.time()
    D.write("stubborn", "state", "stop")
    took = time.time() - t0
    assert D.state_of("stubborn") == "stopped"
    assert took >= 1.5, f"stopped after {took:.2f}s, before the 2 s deadline"
    os.rmdir(D.vm("stubborn"))
    wait_for(lambda: not leftovers(D, "stubborn"), 5, "no leftovers")


def write_no_trunc(name, verb):
    # Without O_TRUNC: the kernel takes the inode lock exclusively for a truncating open,
    # and a blocked writer of the same file holds it shared until its transition ends.
    fd = os.open(D.vm(name, "state"), os.O_WRONLY)
    try:
        return os.write(fd, verb.encode())
    finally:
        os.close(fd)


def test_kill_escalates_a_hung_stop():
    # The guest ignores the graceful stop: kill must not wait for the deadline (nor be
    # refused with EBUSY); both writers are answered and the VM ends stopped.
    fcctl.write_knobs(D.knobs, by_id={"hung": {"ignore_ctrl_alt_del": True}})
    os.mkdir(D.vm("hung"))
    D.write("hung", "image", IMAGE)
    D.write("hung", "state", "start")
    pid = int(D.read("hung", "pid"))
    stop = []
    t = threading.Thread(target=lambda: stop.append(D.write("hung", "state", "stop")))
    t.start()
    wait_for(lambda: D.state_of("hung") == "stopping", 5, "stopping")
    expect_errno(errno.EBUSY, write_no_trunc, "hung", "stop")
    expect_errno(errno.EBUSY, write_no_trunc, "hung", "start")
    t0 = time.time()
    assert write_no_trunc("hung", "kill") == 4
    print("# kill during a hung stop: stopped after %.2f s (deadline 2 s)" % (time.time() - t0))
    t.join(10)
    assert stop == [4], stop
    assert D.state_of("hung") == "stopped"
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), 5, "VMM gone")
    # A restart whose stop hangs: kill calls it off, the restart writer gets EIO.
    D.write("hung", "state", "start")
    res = []

    def restart():
        try:
            res.append(D.write("hung", "state", "restart"))
        except OSError as e:
            res.append(e.errno)

    t = threading.Thread(target=restart)
    t.start()
    wait_for(lambda: D.state_of("hung") == "stopping", 5, "stopping")
    assert write_no_trunc("hung", "kill") == 4
    t.join(10)
    assert res == [errno.EIO], res
    assert D.state_of("hung") == "stopped"
    assert "restart: called off by kill" in D.read("hung", "error")
    os.rmdir(D.vm("hung"))
    wait_for(lambda: not leftovers(D, "hung"), 5, "no leftovers")


def test_daemon_restart_readopts_running_vm():
    fcctl.write_knobs(D.knobs)
    os.mkdir(D.vm("keep"))
    D.write("keep", "image", IMAGE)
    D.write("keep", "state", "start")
    pid = D.read("keep", "pid").strip()
    ip = D.read("keep", "ip")
    D.stop()  # SIGTERM: unmount, exit 0, VMs keep running
    assert D.proc.returncode == 0, D.proc.returncode
    os.kill(int(pid), 0)
    D.start()
    assert D.state_of("keep") == "running", D.read("keep", "error")
    assert D.read("keep", "pid").strip() == pid
    assert D.read("keep", "ip") == ip
    D.write("keep", "state", "stop")
    os.rmdir(D.vm("keep"))
    wait_for(lambda: not leftovers(D, "keep"), 5, "no leftovers")


def test_vmm_killed_behind_our_back_fails_fast():
    os.mkdir(D.vm("victim"))
    D.write("victim", "image", IMAGE)
    D.write("victim", "state", "start")
    pid = int(D.read("victim", "pid").strip())
    os.kill(pid, signal.SIGKILL)
    t0 = time.time()
    wait_for(lambda: D.state_of("victim") == "failed", 2, "failed")
    assert time.time() - t0 < 1.5, time.time() - t0
    err = D.read("victim", "error")
    assert "signal" in err or "9" in err or "killed" in err.lower(), err
    os.rmdir(D.vm("victim"))
    wait_for(lambda: not leftovers(D, "victim"), 5, "no leftovers")


def test_sigkilled_daemon_readopts_and_cleans_stale_mount():
    os.mkdir(D.vm("sk"))
    D.write("sk", "image", IMAGE)
    D.write("sk", "state", "start")
    pid = D.read("sk", "pid").strip()
    D.proc.send_signal(signal.SIGKILL)
    D.proc.wait()
    D.log.close()
    D.start()  # stale mount at the mount point is cleaned up
    assert D.state_of("sk") == "running"
    assert D.read("sk", "pid").strip() == pid
    os.kill(int(pid), signal.SIGKILL)   # VMM killed behind the daemon's back
    wait_for(lambda: D.state_of("sk") == "failed", 2, "failed within a second or so")
    assert D.read("sk", "error").strip()
    os.rmdir(D.vm("sk"))
    wait_for(lambda: not leftovers(D, "sk"), 5, "no leftovers")


CASES = [(f.__name__, f) for f in (
    test_ready_and_version, test_names, test_ip_assigned_at_mkdir, test_image_validation,
    test_verbs_validation, test_start_blocks_until_running, test_image_busy_while_running,
    test_jail_as_contract_says, test_stop_start_kill_restart, test_fake_saw_no_error_response,
    test_nonblocking_start_and_poll, test_concurrent_writers_one_busy, test_destroy_leaves_nothing,
    test_crash_makes_failed_with_reason, test_refused_call_fails_start_with_fault_message,
    test_ignored_ctrl_alt_del_still_stops_at_deadline, test_kill_escalates_a_hung_stop,
    test_vmm_killed_behind_our_back_fails_fast,
    test_daemon_restart_readopts_running_vm,
    test_sigkilled_daemon_readopts_and_cleans_stale_mount)]

rc = 1
try:
    daemon()
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
