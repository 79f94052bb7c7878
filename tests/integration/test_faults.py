#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Faults end to end: the real daemon with the Firecracker fake, a registry behind a
proxy that trickles at 4 KiB/s, a management API that never answers.

  read-your-writes   after a write of a verb returns (blocking or O_NONBLOCK), `state` shows
                     the transition it started or its end, never the state before
  capacity           8 starts pulling through the trickling proxy take no capacity from other
                     VMs: mkdir, start of a cached image, stop, kill, rmdir and reads stay at
                     their speed without the pulls (short form of bench/faults)
  kill-while-pull    kill of a VM whose start is pulling: stopped within 2 s
  sigterm-bounded    SIGTERM with trickling pulls, a start hung in the VMM API and a silent
                     management API in flight: unmounted and exited 0 within 5 s, VMs left
                     running; the next daemon re-adopts them and ends the interrupted starts
                     failed, with no process left of them
  sigterm-flooding-guest  the same with a guest that floods its agent channel: the orderly
                     shutdown finishes (no watchdog)
  no-orphans         a SIGKILL during many starts (VMMs at every stage of their launch): after
                     the restart no VMM of ours runs without its VM knowing it, never two in
                     one jail, and nothing is left once every VM is destroyed
"""
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultfix as ff  # noqa: E402
import mvmfixture as mf  # noqa: E402
from mvmfixture import fcctl, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
N_PULLS = 8
# capacity: N_PULLS, kill-while-pulling: 1, sigterm-bounded: 4 (a pull's image must not be
# cached by an earlier case).
TRICKLED = ff.push_distinct_images(REG, N_PULLS + 5, size=96 * 1024)
PROXY = ff.TrickleProxy(REG.port)
SILENT = ff.SilentServer()
D = None


def start_daemon():
    global D
    D = mf.Daemon(TMP, REG, extra=["--insecure-registry", PROXY.host,
                                   "--report-url", f"http://127.0.0.1:{SILENT.port}/r"])


def timed(fn, *a):
    t0 = time.monotonic()
    fn(*a)
    return time.monotonic() - t0


def new_vm(name, image=IMAGE):
    os.mkdir(D.vm(name))
    D.write(name, "image", image)


def kill_rmdir(name):
    try:
        if D.state_of(name) not in ("created", "stopped", "failed"):
            D.write(name, "state", "kill")
        wait_for(lambda: D.state_of(name) in ("created", "stopped", "failed"), 10,
                 f"{name} idle")
        os.rmdir(D.vm(name))
    except FileNotFoundError:
        pass


def test_read_your_writes():
    fcctl.write_knobs(D.knobs, by_id={"ryw": {"ignore_ctrl_alt_del": True}})
    new_vm("ryw")
    for _ in range(5):
        D.write("ryw", "state", "start", os.O_NONBLOCK)
        s = D.state_of("ryw")
        assert s in ("starting", "running"), f"after start (O_NONBLOCK): {s}"
        wait_for(lambda: D.state_of("ryw") == "running", 10, "running")
        D.write("ryw", "state", "stop", os.O_NONBLOCK)
        s = D.state_of("ryw")
        assert s == "stopping", f"after stop (O_NONBLOCK): {s}"   # the stop lasts 2 s here
        wait_for(lambda: D.state_of("ryw") == "stopped", 10, "stopped")
        D.write("ryw", "state", "start", os.O_NONBLOCK)
        wait_for(lambda: D.state_of("ryw") == "running", 10, "running")
        D.write("ryw", "state", "kill", os.O_NONBLOCK)
        s = D.state_of("ryw")
        assert s in ("stopping", "stopped"), f"after kill (O_NONBLOCK): {s}"
        wait_for(lambda: D.state_of("ryw") == "stopped", 10, "stopped")
    D.write("ryw", "state", "start")
    assert D.state_of("ryw") == "running"
    D.write("ryw", "state", "restart", os.O_NONBLOCK)
    s = D.state_of("ryw")
    assert s == "stopping", f"after restart (O_NONBLOCK): {s}"
    wait_for(lambda: D.state_of("ryw") == "running", 15, "running again")
    D.write("ryw", "state", "kill")
    assert D.state_of("ryw") == "stopped"
    fcctl.write_knobs(D.knobs)
    kill_rmdir("ryw")


def other_ops(tag, n):
    """mkdir, image, start (cached image), read state+health, stop, start, kill, rmdir of n
    VMs no pull concerns: {op: [seconds]}."""
    t = {k: [] for k in ("mkdir", "start", "read", "stop", "kill", "rmdir")}
    for i in range(n):
        name = f"{tag}{i}"
        t["mkdir"].append(timed(os.mkdir, D.vm(name)))
        D.write(name, "image", IMAGE)
        t["start"].append(timed(D.write, name, "state", "start"))
        assert D.state_of(name) == "running", D.read(name, "error")
        t["read"].append(timed(lambda: (D.read(name, "state"), D.read(name, "health"))))
        t["stop"].append(timed(D.write, name, "state", "stop"))
        D.write(name, "state", "start")
        t["kill"].append(timed(D.write, name, "state", "kill"))
        t["rmdir"].append(timed(os.rmdir, D.vm(name)))
    return t


def pulling(name):
    return "pulling" in D.read(name, "health") or "resolving" in D.read(name, "health")


def start_pulls(names, first=0):
    for i, name in enumerate(names):
        new_vm(name, f"{PROXY.host}/{TRICKLED[first + i]}")
        D.write(name, "state", "start", os.O_NONBLOCK)
    wait_for(lambda: all(D.state_of(n) == "starting" for n in names), 10, "pulls starting")


def test_capacity():
    D.write  # noqa: B018
    other_ops("warm", 1)   # the image is cached from here on
    base = other_ops("base", 3)
    pulls = [f"pull{i}" for i in range(N_PULLS)]
    start_pulls(pulls)
    try:
        loaded = other_ops("load", 3)
        assert all(D.state_of(n) == "starting" for n in pulls), "a pull ended early"
    finally:
        for n in pulls:
            D.write(n, "state", "kill", os.O_NONBLOCK)
    for op in base:
        b, lo = statistics.median(base[op]), statistics.median(loaded[op])
        print(f"# {op}: median {b * 1000:.0f} ms without pulls, {lo * 1000:.0f} ms with "
              f"{N_PULLS} trickling pulls (max {max(loaded[op]) * 1000:.0f} ms)")
        # 1.5x is the benchmark's target (bench/faults); a loaded CI machine gets slack.
        assert lo <= 2.0 * b + 0.3, f"{op} slowed by the pulls: {b:.3f}s -> {lo:.3f}s"
    for n in pulls:
        wait_for(lambda: D.state_of(n) in ("stopped", "failed"), 120, f"{n} stopped")
        os.rmdir(D.vm(n))


def test_kill_while_pulling():
    new_vm("kp", f"{PROXY.host}/{TRICKLED[N_PULLS]}")
    D.write("kp", "state", "start", os.O_NONBLOCK)
    wait_for(lambda: pulling("kp"), 10, "pulling")
    time.sleep(0.5)
    t0 = time.monotonic()
    D.write("kp", "state", "kill")
    wait_for(lambda: D.state_of("kp") == "stopped", 2.5, "stopped after kill")
    dt = time.monotonic() - t0
    print(f"# kill of a pulling VM -> stopped in {dt * 1000:.0f} ms")
    assert dt <= 2.0, dt
    assert "cancel" in D.read("kp", "error"), D.read("kp", "error")
    os.rmdir(D.vm("kp"))


def test_sigterm_bounded():
    new_vm("keep")
    D.write("keep", "state", "start")
    keep_pid = D.read("keep", "pid").strip()
    pulls = [f"tp{i}" for i in range(4)]
    start_pulls(pulls, N_PULLS + 1)
    fcctl.write_knobs(D.knobs, by_id={"hung": {"hang_on": "InstanceStart"}})
    new_vm("hung")
    D.write("hung", "state", "start", os.O_NONBLOCK)
    wait_for(lambda: any(r.get("kind") == "call" and r.get("path") == "/actions"
                         for r in D.records("hung")), 10, "InstanceStart sent")
    hung_procs = ff.procs_of(D, "hung")
    assert hung_procs, "no VMM for the hung start"
    t0 = time.monotonic()
    D.proc.send_signal(signal.SIGTERM)
    try:
        rc = D.proc.wait(8)
    except subprocess.TimeoutExpired:
        rc = None
    dt = time.monotonic() - t0
    print(f"# SIGTERM -> exit in {dt * 1000:.0f} ms (4 trickling pulls, a hung InstanceStart, "
          "a silent report receiver)")
    D.log.close()
    D.check_sanitizers()
    assert rc == 0, f"exit status {rc}"
    assert dt <= 5.0, f"SIGTERM took {dt:.1f}s"
    assert not ff.mounted(D.mnt), "still mounted"
    assert mf_alive(keep_pid), "a running VM was stopped by the shutdown"
    fcctl.write_knobs(D.knobs)
    D.start()
    assert D.state_of("keep") == "running" and D.read("keep", "pid").strip() == keep_pid
    for n in pulls + ["hung"]:
        assert D.state_of(n) == "failed", (n, D.state_of(n))
        assert "interrupted" in D.read(n, "error"), D.read(n, "error")
    assert not ff.procs_of(D, "hung"), "the hung start's VMM survived the restart"
    D.write("hung", "state", "start")
    assert D.state_of("hung") == "running", D.read("hung", "error")
    for n in pulls + ["hung", "keep"]:
        kill_rmdir(n)
        wait_for(lambda: not leftovers(D, n), 5, f"no leftovers of {n}")


def test_sigterm_flooding_guest():
    # The guest's agent channel never stops sending (here: /dev/zero on the vsock connection).
    fcctl.write_knobs(D.knobs, by_id={"flood": {"agent_cmd": "exec cat /dev/zero"}})
    new_vm("flood")
    D.write("flood", "state", "start")
    pid = D.read("flood", "pid").strip()
    time.sleep(1.5)
    log_start = os.path.getsize(os.path.join(TMP, "daemon.log"))
    t0 = time.monotonic()
    D.proc.send_signal(signal.SIGTERM)
    try:
        rc = D.proc.wait(8)
    except subprocess.TimeoutExpired:
        rc = None
    dt = time.monotonic() - t0
    print(f"# SIGTERM -> exit in {dt * 1000:.0f} ms (a guest flooding its channel)")
    D.log.close()
    D.check_sanitizers()
    with open(os.path.join(TMP, "daemon.log"), errors="replace") as f:
        f.seek(log_start)
        assert "shutdown watchdog" not in f.read(), "the orderly shutdown hung"
    assert rc == 0 and dt <= 5.0, (rc, dt)
    assert mf_alive(pid), "the VM was stopped by the shutdown"
    fcctl.write_knobs(D.knobs)
    D.start()
    assert D.state_of("flood") == "running" and D.read("flood", "pid").strip() == pid
    kill_rmdir("flood")


def mf_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def set_jailer(path):
    i = D.args.index("--jailer")
    D.args[i + 1] = path


def test_no_orphans():
    names = [f"orph{i}" for i in range(6)]
    # A jailer that takes its time before it does anything (a loaded host): a SIGKILL finds
    # some launches before their jail, pid file or cgroup exists, others with a VMM in its
    # jail; every launch also waits a bit in the API.
    slow = os.path.join(TMP, "slow-jailer")
    with open(slow, "w") as f:
        f.write(f"#!/bin/sh\nsleep 1.5\nexec {os.path.join(mf.FAKES, 'jailer')} \"$@\"\n")
    os.chmod(slow, 0o755)
    real = D.args[D.args.index("--jailer") + 1]
    fcctl.write_knobs(D.knobs, default={"api_delay_ms": 150})
    D.kill9()
    set_jailer(slow)
    D.start()
    for n in names:
        new_vm(n)
    for n in names:
        D.write(n, "state", "start", os.O_NONBLOCK)
        time.sleep(0.4)
    D.kill9()
    set_jailer(real)
    D.start()
    fcctl.write_knobs(D.knobs)
    time.sleep(2.5)   # what a surviving slow jailer would have started by now
    running = {}
    for n in names:
        s = D.state_of(n)
        assert s in ("running", "failed"), (n, s)
        procs = ff.procs_of(D, n)
        if s == "running":
            running[n] = D.read(n, "pid").strip()
            assert procs == [int(running[n])], (n, procs, running[n])
        else:
            assert not procs, f"{n} is failed but VMM processes {procs} run"
    known = set()
    for n in os.listdir(D.vm("")):
        pid = D.read(n, "pid").strip()
        if pid:
            known.add(int(pid))
    stray = set(ff.jail_procs(D)) - known
    assert not stray, f"VMM processes no VM knows: {stray}"
    for n in names:
        if n not in running:
            D.write(n, "state", "start")
            assert D.state_of(n) == "running", D.read(n, "error")
        assert len(ff.procs_of(D, n)) == 1, (n, ff.procs_of(D, n))
    for n in names:
        kill_rmdir(n)
    wait_for(lambda: not ff.jail_procs(D), 5, "no VMM process left")
    for n in names:
        assert not leftovers(D, n), leftovers(D, n)


def main():
    rc = 1
    try:
        start_daemon()
        rc = mf.run_tap([
            ("read-your-writes", test_read_your_writes),
            ("capacity", test_capacity),
            ("kill-while-pulling", test_kill_while_pulling),
            ("sigterm-bounded", test_sigterm_bounded),
            ("sigterm-flooding-guest", test_sigterm_flooding_guest),
            ("no-orphans", test_no_orphans),
        ])
        if D.proc.poll() is None:
            D.destroy_all()
        D.stop()
    except Exception as e:  # noqa: BLE001
        mf.fixture_failed(e, D)
        rc = 1
    finally:
        if D:
            D.print_log_tail(rc)
            D.kill_vmms()
            subprocess.run(["umount", "-l", D.mnt], stderr=subprocess.DEVNULL)
        PROXY.stop()
        SILENT.stop()
        REG.stop()
        subprocess.run(["rm", "-rf", TMP])
    return rc


if __name__ == "__main__":
    sys.exit(main())
