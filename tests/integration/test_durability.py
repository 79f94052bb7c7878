#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Durability end to end: the real daemon is SIGKILLed in the middle of
each kind of transition, held open with the Firecracker fake's knobs, then restarted; every VM
must end in a correct state and nothing may be left of destroyed VMs. Then the leak reaper:
leftovers planted while the daemon is down and while it runs are reaped and counted, unmarked
look-alikes survive.

The safe direction per transition (what the restarted daemon decides):
  start    -> failed ("start: interrupted by a daemon restart"), VMM killed, jail/cgroups/net
              gone: a half-configured VMM is never trusted; a new start works at once.
  stop     -> stopped, VMM killed (the stop was asked; only its grace period is cut short).
  restart  -> stopped while in its stop phase (as stop), failed while in its start phase.
  kill     -> stopped (or failed, when the VMM was already dead but the daemon died before
              recording the stop) with the VMM gone; or untouched and running when the daemon
              died before the command reached the supervisor. Never "running" with a dead VMM.
  mkdir    -> the VM exists (created, with its address), or nothing exists: no state dir, no
              address lease.
  rmdir    -> the destroy is finished (a tombstone is written first); or, when the daemon died
              before the tombstone, the VM is still there, intact.
"""
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime"))
import mvmfixture as mf  # noqa: E402
import promcheck  # noqa: E402
from mvmfixture import fcctl, leases, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
D = None
CG_MOUNTS = [m for m in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup")
             if os.path.exists(os.path.join(m, "cgroup.procs"))][:1]


def alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive (the daemon that spawned it is gone; init reaps it soon).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def new_vm(name, start=True):
    os.mkdir(D.vm(name))
    D.write(name, "image", IMAGE)
    if start:
        D.write(name, "state", "start")
        assert D.state_of(name) == "running", D.read(name, "error")
        return D.read(name, "pid").strip()
    return None


def restart_after_kill9():
    D.kill9()
    D.start()


def destroy(name):
    if D.state_of(name) in ("running", "starting", "stopping"):
        D.write(name, "state", "kill")
    os.rmdir(D.vm(name))
    wait_for(lambda: not leftovers(D, name), 5, f"no leftovers of {name}: {leftovers(D, name)}")


def vmm_pid_of_jail(name):
    try:
        with open(os.path.join(D.vm_jail(name), "root", "firecracker.pid")) as f:
            return f.read().strip()
    except OSError:
        return None


def test_kill9_during_start():
    fcctl.write_knobs(D.knobs, by_id={"st": {"hang_on": "InstanceStart"}})
    new_vm("st", start=False)
    D.write("st", "state", "start", os.O_NONBLOCK)
    wait_for(lambda: D.state_of("st") == "starting", 5, "starting")
    # Held inside InstanceStart (the fake never answers it).
    wait_for(lambda: any(r.get("kind") == "call" and r.get("path") == "/actions"
                         for r in D.records("st")), 10, "InstanceStart sent")
    pid = vmm_pid_of_jail("st")
    assert pid and alive(pid), pid
    restart_after_kill9()
    assert D.state_of("st") == "failed", D.state_of("st")
    assert "interrupted" in D.read("st", "error"), D.read("st", "error")
    assert not alive(pid), "the half-started VMM survived"
    assert not os.path.exists(D.vm_jail("st")), "jail left"
    fcctl.write_knobs(D.knobs)
    D.write("st", "state", "start")   # a clean slate: starts at once
    assert D.state_of("st") == "running", D.read("st", "error")
    destroy("st")


def test_kill9_during_stop():
    fcctl.write_knobs(D.knobs, by_id={"sp": {"ignore_ctrl_alt_del": True}})
    pid = new_vm("sp")
    D.write("sp", "state", "stop", os.O_NONBLOCK)
    wait_for(lambda: D.state_of("sp") == "stopping", 5, "stopping")
    assert alive(pid)
    restart_after_kill9()
    assert D.state_of("sp") == "stopped", D.state_of("sp")
    assert not alive(pid), "VMM of an interrupted stop survived"
    assert not os.path.exists(D.vm_jail("sp"))
    destroy("sp")


def test_kill9_during_restart():
    # Stop phase: the guest ignores Ctrl-Alt-Del, the deadline is a minute away.
    fcctl.write_knobs(D.knobs, by_id={"rs": {"ignore_ctrl_alt_del": True}})
    pid = new_vm("rs")
    D.write("rs", "state", "restart", os.O_NONBLOCK)
    wait_for(lambda: D.state_of("rs") == "stopping", 5, "stopping")
    restart_after_kill9()
    assert D.state_of("rs") == "stopped", D.state_of("rs")
    assert not alive(pid)
    # Start phase: the old VMM stops at once, the new one is held in InstanceStart.
    fcctl.write_knobs(D.knobs)
    D.write("rs", "state", "start")
    pid = D.read("rs", "pid").strip()
    fcctl.write_knobs(D.knobs, by_id={"rs": {"boot_delay_ms": 60000}})
    D.write("rs", "state", "restart", os.O_NONBLOCK)
    wait_for(lambda: D.state_of("rs") == "starting" and vmm_pid_of_jail("rs") not in (None, pid),
             10, "the new VMM spawned")
    new_pid = vmm_pid_of_jail("rs")
    restart_after_kill9()
    assert D.state_of("rs") == "failed", D.state_of("rs")
    assert not alive(pid) and not alive(new_pid)
    assert not os.path.exists(D.vm_jail("rs"))
    fcctl.write_knobs(D.knobs)
    destroy("rs")


def test_kill9_during_kill():
    # Not holdable (SIGKILL is instant): race it at a few offsets; every outcome must be true.
    for delay in (0, 0.002, 0.01, 0.05):
        pid = new_vm("kl")
        D.write("kl", "state", "kill", os.O_NONBLOCK)
        time.sleep(delay)
        restart_after_kill9()
        st = D.state_of("kl")
        if st == "running":
            assert alive(pid) and D.read("kl", "pid").strip() == pid, "running, VMM dead"
        else:
            assert st in ("stopped", "failed"), st
            assert not alive(pid), f"{st} but the VMM lives"
            assert not os.path.exists(D.vm_jail("kl"))
        destroy("kl")


def burst(fn, names):
    """fn(name) on every name at once, the daemon SIGKILLed in the middle."""
    res = {}

    def one(n):
        try:
            fn(n)
            res[n] = 0
        except OSError as e:
            res[n] = e.errno

    ts = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in ts:
        t.start()
    time.sleep(0.03)
    D.kill9()
    for t in ts:
        t.join()
    D.start()
    return res


def test_kill9_during_mkdir():
    names = [f"mk{i}" for i in range(40)]
    res = burst(lambda n: os.mkdir(D.vm(n)), names)
    listed = set(os.listdir(D.vm("")))
    ls = leases(D)
    for n in names:
        if n in listed:
            assert D.state_of(n) == "created", (n, D.state_of(n))
            assert D.read(n, "ip").strip() == ls.get(n), (n, D.read(n, "ip"), ls.get(n))
        else:
            assert res[n] != 0, f"{n}: mkdir succeeded but the VM is gone"
            assert not os.path.exists(os.path.join(D.state, "vms", n)), f"{n}: state dir"
            assert n not in ls, f"{n}: address lease of a VM that does not exist"
    ips = [D.read(n, "ip") for n in names if n in listed]
    assert len(ips) == len(set(ips)), "duplicate address"
    print(f"# mkdir burst: {sum(n in listed for n in names)}/{len(names)} exist after kill -9")
    for n in names:
        if n in listed:
            os.rmdir(D.vm(n))
    for n in names:
        assert not leftovers(D, n), leftovers(D, n)


def test_kill9_during_rmdir():
    # Held open: a process in the VM's cgroup keeps the teardown retrying for a second.
    if not CG_MOUNTS:
        raise mf.SkipCase("no cgroup with cgroup.procs")
    new_vm("rm", start=False)
    cg = os.path.join(CG_MOUNTS[0], "mvmfs", D.node_id(), "rm")
    os.makedirs(cg, exist_ok=True)
    jail_root = os.path.join(D.vm_jail("rm"), "root")
    os.makedirs(jail_root, exist_ok=True)
    with open(os.path.join(D.vm_jail("rm"), ".mvmfs"), "w"):
        pass
    holder = subprocess.Popen([sys.executable, "-c",
                               "import os,sys,time; os.chroot(sys.argv[1]); time.sleep(600)",
                               jail_root])
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write(str(holder.pid))
    t = threading.Thread(target=_try_rmdir, args=("rm",))
    t.start()
    # The cleanup kills a process of our own jail at once, so the window between the tombstone
    # and the end of the destroy can be short: watch it closely. If the destroy still wins the
    # race, the kill lands after it (the burst below interrupts rmdirs at random points too).
    tomb = os.path.join(D.state, "vms", "rm", "destroying")
    end = time.time() + 5
    while not os.path.exists(tomb) and t.is_alive() and time.time() < end:
        time.sleep(0.001)
    D.kill9()
    t.join()
    D.start()
    assert "rm" not in os.listdir(D.vm("")), "an interrupted rmdir came back"
    wait_for(lambda: holder.poll() is not None, 5, "the process in our cgroup killed")
    wait_for(lambda: not leftovers(D, "rm"), 5, f"no leftovers: {leftovers(D, 'rm')}")
    # A burst too: each VM is either intact or entirely gone.
    names = [f"rb{i}" for i in range(20)]
    for n in names:
        new_vm(n, start=False)
    burst(lambda n: os.rmdir(D.vm(n)), names)
    listed = set(os.listdir(D.vm("")))
    for n in names:
        if n in listed:
            state, ip, lease = D.state_of(n), D.read(n, "ip").strip(), leases(D).get(n)
            assert state == "created" and ip == lease, (n, state, ip, lease)
            os.rmdir(D.vm(n))
        assert not leftovers(D, n), (n, leftovers(D, n))


def _try_rmdir(name):
    try:
        os.rmdir(D.vm(name))
    except OSError:
        pass


def metric(name, kind):
    with open(os.path.join(D.mnt, "metrics")) as f:
        for line in f:
            if line.startswith(f'{name}{{kind="{kind}"}} '):
                return int(line.split()[1])
    raise AssertionError(f"{name} kind={kind} not in metrics")


def plant_lease(name, addr):
    # Under the allocator's lock, as the daemon appends (it may be running).
    with open(os.path.join(D.state, "ipam", "lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        with open(os.path.join(D.state, "ipam", "leases"), "a") as f:
            f.write(f"A {name} {addr}\n")


def holders():
    return os.listdir(os.path.join(D.state, "images", "refs", "holders"))


def plant_hold(name):
    with open(os.path.join(D.state, "images", "refs", "holders", name), "w") as f:
        f.write("sha256:" + "0" * 64 + "\n")


def plant_ghosts(tag):
    """Leftovers with our marks (a started VM whose record vanishes is planted by the caller),
    and look-alikes without them. Returns (marked, unmarked) descriptions for checks."""
    exec_dir = os.path.dirname(D.vm_jail("x"))
    # Marked jail dir with a VMM-like process chrooted in it, and a cgroup holding it.
    j = os.path.join(exec_dir, f"gj{tag}")
    os.makedirs(os.path.join(j, "root"))
    open(os.path.join(j, ".mvmfs"), "w").close()
    p1 = subprocess.Popen([sys.executable, "-c",
                           "import os,sys,time; os.chroot(sys.argv[1]); time.sleep(600)",
                           os.path.join(j, "root")])
    with open(os.path.join(j, "root", "firecracker.pid"), "w") as f:
        f.write(str(p1.pid))
    # Our cgroup (under our node's parent), jail gone (unmarked dir), process chrooted in our
    # chroot base. The same under another node's parent and under the shared parent of old
    # (mvmfs/NAME, where only a record names a cgroup): not ours to reap.
    node = D.node_id()
    other_node = "ffffffff" if node != "ffffffff" else "eeeeeeee"
    p2 = cg = None
    others = []
    if CG_MOUNTS:
        for parent, name in ((node, f"gc{tag}"), (other_node, f"oc{tag}"), ("", f"lc{tag}")):
            r2 = os.path.join(exec_dir, name, "root")
            os.makedirs(r2)
            p = subprocess.Popen([sys.executable, "-c",
                                  "import os,sys,time; os.chroot(sys.argv[1]); time.sleep(600)",
                                  r2])
            c = os.path.join(CG_MOUNTS[0], "mvmfs", parent, name)
            os.makedirs(c)
            time.sleep(0.2)
            with open(os.path.join(c, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
            if parent == node:
                p2, cg, gc = p, c, os.path.dirname(r2)
            else:
                others.append((p, c, os.path.dirname(r2)))
    # Marked netns (this daemon's node id); state dir of an interrupted create (a data disk,
    # no record).
    subprocess.run(["ip", "netns", "add", f"mvmfs-{node}.gn{tag}"], check=True)
    sd = os.path.join(D.state, "vms", f"gs{tag}")
    os.makedirs(sd)
    with open(os.path.join(sd, "data.img"), "wb") as f:
        f.truncate(1 << 20)
    # Look-alikes without marks: must survive.
    uj = os.path.join(exec_dir, f"uj{tag}")
    os.makedirs(os.path.join(uj, "root"))
    subprocess.run(["ip", "netns", "add", f"other-{tag}"], check=True)
    # Another daemon's (node id) and an unmarked-form namespace: not ours either.
    subprocess.run(["ip", "netns", "add", f"mvmfs-{other_node}.gn{tag}"], check=True)
    subprocess.run(["ip", "link", "add", f"mvu{tag}", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", f"mvu{tag}", "alias", f"mvmfs:gl{tag}"], check=True)
    us = os.path.join(D.state, "vms", f"us{tag}")
    os.makedirs(us)
    with open(os.path.join(us, "record.json"), "w") as f:
        f.write("not a record")   # unreadable: nothing proves it dead
    # An address lease and an image hold of a name with no VM and no state dir; the same for
    # the name of the unreadable record (kept) and a hold whose name is no VM name (kept).
    # (distinct addresses per tag: the journal refuses a duplicate as corruption)
    n, t = int(tag[1:]) % 60000, ord(tag[0])
    plant_lease(f"gi{tag}", f"fd00:dead:{t:x}::{n:x}")
    plant_hold(f"gh{tag}")
    plant_lease(f"us{tag}", f"fd00:dead:{t:x}:1::{n:x}")
    plant_hold(f"us{tag}")
    plant_hold(f"other.{tag}")
    marked = dict(jail=j, p1=p1, p2=p2, cg=cg, netns=f"/run/netns/mvmfs-{node}.gn{tag}", state=sd,
                  gc=gc if CG_MOUNTS else None, lease=f"gi{tag}",
                  hold=f"gh{tag}")
    unmarked = dict(jail=uj, netns=f"/run/netns/other-{tag}", link=f"mvu{tag}", state=us,
                    other_netns=f"/run/netns/mvmfs-{other_node}.gn{tag}",
                    holds=(f"us{tag}", f"other.{tag}"), cgroups=others)
    return marked, unmarked


def check_reaped(m, u, timeout):
    wait_for(lambda: not os.path.exists(m["jail"]), timeout, "marked jail reaped")
    wait_for(lambda: m["p1"].poll() is not None, 3, "jailed process killed")
    if m["p2"]:
        wait_for(lambda: m["p2"].poll() is not None, 3, "process in our cgroup killed")
        wait_for(lambda: not os.path.exists(m["cg"]), 3, "our cgroup removed")
        assert os.path.isdir(m["gc"]), "an unmarked dir under the chroot base was removed"
        subprocess.run(["rm", "-rf", m["gc"]])
    wait_for(lambda: not os.path.exists(m["netns"]), 3, "marked netns reaped")
    wait_for(lambda: not os.path.exists(m["state"]), 3, "state dir without record reaped")
    wait_for(lambda: m["lease"] not in leases(D), 3, "lease of an unknown name reaped")
    wait_for(lambda: m["hold"] not in holders(), 3, "image hold of an unknown name reaped")
    assert u["state"].rsplit("/", 1)[1] in leases(D), "lease of a kept state dir reaped"
    for h in u["holds"]:
        assert h in holders(), f"image hold {h} reaped"
        os.unlink(os.path.join(D.state, "images", "refs", "holders", h))
    for p, c, d in u["cgroups"]:
        assert p.poll() is None and os.path.isdir(c), f"{c}: another node's (or old) killed"
        p.kill()
        p.wait()
        subprocess.run(["rm", "-rf", d])
        os.rmdir(c)
        if os.path.basename(os.path.dirname(c)) != "mvmfs":
            try:
                os.rmdir(os.path.dirname(c))
            except OSError:
                pass   # another run's look-alike in it
    assert os.path.isdir(u["jail"]), "unmarked jail removed"
    assert os.path.exists(u["netns"]), "unmarked netns removed"
    assert os.path.exists(u["other_netns"]), "another node's netns removed"
    subprocess.run(["ip", "netns", "del", os.path.basename(u["other_netns"])])
    assert subprocess.run(["ip", "link", "show", u["link"]], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0, \
        "a link with a mark that does not match its name was removed"
    assert os.path.exists(os.path.join(u["state"], "record.json")), "unreadable record removed"


def test_leaks_reaped_at_start():
    # A started VM whose record is lost while the daemon is down: everything of it is a leak.
    pid = new_vm("lost")
    D.kill9()
    subprocess.run(["rm", "-rf", os.path.join(D.state, "vms", "lost")], check=True)
    try:
        m, u = plant_ghosts(f"a{os.getpid()}")
    finally:
        D.start()
    assert "lost" not in os.listdir(D.vm(""))
    check_reaped(m, u, 5)
    wait_for(lambda: not alive(pid), 3, "the lost VM's VMM killed")
    wait_for(lambda: not leftovers(D, "lost"), 3,
             f"no leftovers of the lost VM: {leftovers(D, 'lost')}")
    assert "lost" not in holders(), "the lost VM's image hold was kept"
    assert metric("mvmfs_leaks_reaped_total", "vmm") >= 2
    assert metric("mvmfs_leaks_reaped_total", "net") >= 2   # lost's netns/links + ghost netns
    assert metric("mvmfs_leaks_reaped_total", "state") >= 1
    assert metric("mvmfs_leaks_reaped_total", "ip") >= 2     # lost's lease + the ghost lease
    assert metric("mvmfs_leaks_reaped_total", "image") >= 2  # lost's hold + the ghost hold


def test_leaks_reaped_while_running():
    keep = new_vm("keep")
    before = {k: metric("mvmfs_leaks_reaped_total", k) for k in ("vmm", "ip", "image")}
    m, u = plant_ghosts(f"b{os.getpid()}")
    check_reaped(m, u, 5)   # --reap-interval 1s
    for k, v in before.items():
        assert metric("mvmfs_leaks_reaped_total", k) > v, k
    with open(os.path.join(D.mnt, "metrics")) as f:
        fams, errs = promcheck.parse(f.read(), require_help=True)
    assert not errs, errs
    kinds = {lb.get("kind") for _n, lb, _v in fams["mvmfs_leaks_reaped_total"]}
    assert kinds == {"vmm", "net", "state", "ip", "image", "volume"}, kinds
    assert D.state_of("keep") == "running" and D.read("keep", "pid").strip() == keep
    assert "keep" in leases(D) and "keep" in holders(), "the reaper dropped a live VM's lease/hold"
    assert alive(keep), "the reaper touched a live VM"
    destroy("keep")


def test_stop_vms_on_exit():
    pid = new_vm("soe")
    D.stop()   # SIGTERM without the option: the VM keeps running
    assert alive(pid)
    D.args.insert(-1, "--stop-vms-on-exit")
    D.start()
    assert D.state_of("soe") == "running" and D.read("soe", "pid").strip() == pid
    D.stop()
    assert D.proc.returncode == 0
    assert not alive(pid), "--stop-vms-on-exit left the VMM running"
    D.args.remove("--stop-vms-on-exit")
    D.start()
    assert D.state_of("soe") == "stopped", D.state_of("soe")
    destroy("soe")


def test_adopt_record_before_node_ids():
    # A VM started before cgroups were nested per node: its record names mvmfs/NAME, where its
    # VMM runs. Re-adopted as it is; its destroy removes those cgroups.
    if not CG_MOUNTS:
        raise mf.SkipCase("no cgroup with cgroup.procs")
    pid = new_vm("old")
    D.stop()   # the VM keeps running
    path = os.path.join(D.state, "vms", "old", "record.json")
    with open(path) as f:
        rec = json.load(f)
    new = rec["handle"]["cgroups"]
    node = D.node_id()
    assert new and all(c.endswith(f"/mvmfs/{node}/old") for c in new), new
    legacy = [c.replace(f"/mvmfs/{node}/old", "/mvmfs/old") for c in new]
    for c in legacy:
        os.makedirs(c)
        with open(os.path.join(c, "cgroup.procs"), "w") as f:
            f.write(pid)
    for c in new:
        os.rmdir(c)
    rec["handle"]["cgroups"] = legacy
    with open(path + ".tmp", "w") as f:
        json.dump(rec, f)
    os.rename(path + ".tmp", path)
    D.start()
    assert D.state_of("old") == "running" and D.read("old", "pid").strip() == pid
    for c in legacy:
        with open(os.path.join(c, "cgroup.procs")) as f:
            assert pid in f.read().split(), c
    D.write("old", "state", "kill")
    wait_for(lambda: not alive(pid), 5, "the VMM killed")
    os.rmdir(D.vm("old"))
    wait_for(lambda: not any(os.path.exists(c) for c in legacy), 5, "its old cgroups removed")
    wait_for(lambda: not leftovers(D, "old"), 5, f"no leftovers: {leftovers(D, 'old')}")


CASES = [(f.__name__, f) for f in (
    test_kill9_during_start, test_kill9_during_stop, test_kill9_during_restart,
    test_kill9_during_kill, test_kill9_during_mkdir, test_kill9_during_rmdir,
    test_leaks_reaped_at_start, test_leaks_reaped_while_running, test_stop_vms_on_exit,
    test_adopt_record_before_node_ids)]

rc = 1
try:
    D = mf.Daemon(TMP, REG, extra=["--stop-timeout", "60s", "--reap-interval", "1s"])
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    if D:
        D.destroy_all()
        D.stop()
        D.kill_vmms()
        D.print_log_tail(rc)
    for cgm in CG_MOUNTS:
        for tag in (f"a{os.getpid()}", f"b{os.getpid()}"):
            try:
                os.rmdir(os.path.join(cgm, "mvmfs", f"gc{tag}"))
            except OSError:
                pass
    REG.stop()
    subprocess.run(["pkill", "-KILL", "-f", f"time.sleep\\(600\\).*{TMP}"],
                   stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", TMP])
sys.exit(rc)
