#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Two real daemons side by side (their own state dirs, bridges, prefixes, mount points, jail
bases and uid ranges) with the Firecracker fake: a third one on a state dir in use refuses to
start; each daemon's VMs run on its own bridge with its own node-marked resources; restarts,
kill -9 and reaper passes of one never remove anything of the other, its cgroups included (both
may name a VM alike: each has its own, under mvmfs/NODE)."""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mvmfixture as mf  # noqa: E402
from mvmfixture import leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip", "nft"))
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
A = B = None


def sh(*argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True).stdout


def passes(d):
    with open(os.path.join(d.mnt, "metrics")) as f:
        for line in f:
            if line.startswith("mvmfs_reap_passes_total "):
                return int(line.split()[1])
    raise AssertionError("mvmfs_reap_passes_total not in metrics")


def wait_reap_passes(d, n=2):
    """n full reaper passes of d from now (--reap-interval 1s)."""
    p0 = passes(d)
    wait_for(lambda: passes(d) >= p0 + n, 10, f"{n} reaper passes")


def new_vm(d, name):
    os.mkdir(d.vm(name))
    d.write(name, "image", IMAGE)
    d.write(name, "state", "start")
    assert d.state_of(name) == "running", d.read(name, "error")


def resources(d):
    """Everything on the host marked with d's node id: a set of descriptions."""
    node = d.node_id()
    found = set()
    for ns in os.listdir("/run/netns"):
        if ns.startswith(f"mvmfs-{node}."):
            found.add("netns " + ns)
    for line in sh("ip", "-o", "link", "show").splitlines():
        m = re.search(r"alias (mvmfs:" + node + r":[^ \\]+)", line)
        if m:
            found.add(f"link {line.split(':')[1].strip().split('@')[0]} {m.group(1)}")
    for m in re.finditer(r'chain (vm_[0-9a-f]+) \{\s*comment "(mvmfs:' + node + r':[^"]+)"',
                         sh("nft", "list", "table", "bridge", "mvmfs")):
        found.add(f"chain {m.group(1)} {m.group(2)}")
    for cg in cgroups(d):
        found.add("cgroup " + cg)
    exec_dir = os.path.dirname(d.vm_jail("x"))
    for name in os.listdir(exec_dir) if os.path.isdir(exec_dir) else ():
        found.add("jail " + os.path.join(exec_dir, name))
    return found


def cgroups(d, name="*"):
    """d's VM cgroups (v1: one per controller hierarchy; v2: one), under its node's parent."""
    node = d.node_id()
    return sorted(c for c in glob.glob(f"/sys/fs/cgroup/*/mvmfs/{node}/{name}") +
                  glob.glob(f"/sys/fs/cgroup/mvmfs/{node}/{name}") if os.path.isdir(c))


def procs(cg):
    with open(os.path.join(cg, "cgroup.procs")) as f:
        return set(int(x) for x in f.read().split())


def noreflect(bridge):
    return sh("nft", "list", "chain", "inet", "mvmfs", f"noreflect_{bridge}")


def vm_state(d):
    return {n: (d.state_of(n), d.read(n, "pid").strip(), d.read(n, "ip").strip())
            for n in os.listdir(d.vm(""))}


def test_second_daemon_on_a_state_dir_refused():
    mnt = os.path.join(TMP, "third")
    os.makedirs(mnt)
    t0 = time.monotonic()
    r = subprocess.run(A.args[:-1] + [mnt], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=20)
    print(f"# refused after {time.monotonic() - t0:.2f} s: {r.stdout.strip()}")
    assert r.returncode == 1, (r.returncode, r.stdout)
    assert f"state dir {A.state} is in use by another mvmfs daemon (pid {A.proc.pid}" \
        in r.stdout, r.stdout
    assert not os.path.ismount(mnt)
    # Its own state dir but A's jail base (where jails are reaped by name): refused too.
    args = list(A.args[:-1]) + [mnt]
    args[args.index("--state-dir") + 1] = os.path.join(TMP, "third-state")
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=20)
    print(f"# {r.stdout.strip()}")
    assert r.returncode == 1, (r.returncode, r.stdout)
    assert f"jail base {A.jail} is in use by another mvmfs daemon (pid {A.proc.pid}" \
        in r.stdout, r.stdout
    assert not os.path.ismount(mnt)
    # The first one did not notice.
    assert os.path.isdir(A.vm("")) and open(os.path.join(A.mnt, "version")).read()


def test_side_by_side():
    new_vm(A, "a-web")
    new_vm(A, "a-two")
    new_vm(B, "b-web")
    na, nb = A.node_id(), B.node_id()
    assert re.fullmatch(r"[0-9a-f]{8}", na) and re.fullmatch(r"[0-9a-f]{8}", nb) and na != nb
    ra, rb = resources(A), resources(B)
    print(f"# node {na}: {sorted(ra)}")
    print(f"# node {nb}: {sorted(rb)}")
    for name in ("a-web", "a-two"):
        assert f"netns mvmfs-{na}.{name}" in ra, ra
        assert any(x.endswith(f"mvmfs:{na}:{name}") and x.startswith("chain") for x in ra)
        assert any(x.endswith(f"mvmfs:{na}:{name}") and x.startswith("link") for x in ra)
    assert f"netns mvmfs-{nb}.b-web" in rb, rb
    assert not ra & rb
    # Each VM's host end is an isolated port of its own daemon's bridge.
    for d, bridge in ((A, "mvmtest0"), (B, "mvmtest1")):
        for x in resources(d):
            if x.startswith("link "):
                veth = x.split()[1]
                info = sh("ip", "-d", "link", "show", "dev", veth)
                assert f"master {bridge}" in info and "isolated on" in info, info
        rule = f'iifname "{bridge}" oifname "{bridge}"'
        assert rule in noreflect(bridge), noreflect(bridge)
    assert A.read("a-web", "ip").startswith("fd42:e2e:")
    assert B.read("b-web", "ip").startswith("fd42:e2f:")


def test_same_name_own_cgroups():
    new_vm(A, "same")
    new_vm(B, "same")
    pa, pb = int(A.read("same", "pid")), int(B.read("same", "pid"))
    ca, cb = cgroups(A, "same"), cgroups(B, "same")
    print(f"# A: pid {pa} in {ca}; B: pid {pb} in {cb}")
    assert ca and len(ca) == len(cb) and not set(ca) & set(cb), (ca, cb)
    for cg in ca:
        assert pa in procs(cg) and pb not in procs(cg), (cg, procs(cg))
    for cg in cb:
        assert pb in procs(cg) and pa not in procs(cg), (cg, procs(cg))
    # Nothing of either in the shared parent of old.
    assert not glob.glob("/sys/fs/cgroup/*/mvmfs/same") + glob.glob("/sys/fs/cgroup/mvmfs/same")
    # B destroys its "same" and its reaper runs: A's VM of that name and its cgroups stay.
    ra, va = resources(A), vm_state(A)
    B.write("same", "state", "kill")
    os.rmdir(B.vm("same"))
    wait_for(lambda: not cgroups(B, "same") and not os.path.exists(B.vm_jail("same")), 5,
             "B's same gone")
    wait_reap_passes(B)
    assert resources(A) == ra, resources(A) ^ ra
    assert vm_state(A) == va, (va, vm_state(A))
    for cg in ca:
        assert pa in procs(cg), (cg, procs(cg))
    A.write("same", "state", "kill")
    os.rmdir(A.vm("same"))
    wait_for(lambda: not cgroups(A, "same"), 5, "A's same cgroups gone")


def check_untouched(d, before_res, before_vms, bridge):
    assert resources(d) == before_res, (before_res ^ resources(d))
    assert vm_state(d) == before_vms, (before_vms, vm_state(d))
    assert f'iifname "{bridge}" oifname "{bridge}"' in noreflect(bridge), noreflect(bridge)


def test_restart_and_reap_of_one_keep_the_other():
    ra, va = resources(A), vm_state(A)
    # B: graceful restart, kill -9 + restart, reaper passes, a destroy, a new VM.
    B.stop()
    B.start()
    wait_reap_passes(B)
    B.kill9()
    B.start()
    wait_reap_passes(B)
    B.write("b-web", "state", "kill")
    os.rmdir(B.vm("b-web"))
    wait_for(lambda: not leftovers(B, "b-web"), 15,
             lambda: "b-web gone: %s" % leftovers(B, "b-web"))
    new_vm(B, "b-new")
    wait_reap_passes(B)
    check_untouched(A, ra, va, "mvmtest0")
    # And the other way round.
    rb, vb = resources(B), vm_state(B)
    A.kill9()
    A.start()
    wait_reap_passes(A)
    A.write("a-two", "state", "kill")
    os.rmdir(A.vm("a-two"))
    wait_for(lambda: not leftovers(A, "a-two"), 15,
             lambda: "a-two gone: %s" % leftovers(A, "a-two"))
    wait_reap_passes(A)
    check_untouched(B, rb, vb, "mvmtest1")


def test_each_reaps_only_its_own():
    na, nb = A.node_id(), B.node_id()
    ra, va = resources(A), vm_state(A)
    # A is down: B's reaper passes see A's live VMs and a leftover of A's, and leave them.
    A.stop()
    ghost_a, ghost_b = f"mvmfs-{na}.ghost-a", f"mvmfs-{nb}.ghost-b"
    subprocess.run(["ip", "netns", "add", ghost_a], check=True)
    subprocess.run(["ip", "netns", "add", ghost_b], check=True)
    wait_for(lambda: not os.path.exists(f"/run/netns/{ghost_b}"), 5, "B reaps its own leftover")
    wait_reap_passes(B)
    assert os.path.exists(f"/run/netns/{ghost_a}"), "B removed a leftover of A's"
    assert resources(A) == ra | {f"netns {ghost_a}"}, resources(A) ^ ra
    # A comes back: its VMs are re-adopted, its leftover reaped.
    A.start()
    wait_for(lambda: not os.path.exists(f"/run/netns/{ghost_a}"), 5, "A reaps its leftover")
    assert vm_state(A) == va
    assert resources(A) == ra


def test_empty_parent_removed_at_exit():
    # B's VMs destroyed, B stops: its mvmfs/NODE goes; A's (VMs running) stays.
    node_b, node_a = B.node_id(), A.node_id()
    parents = (lambda n: glob.glob(f"/sys/fs/cgroup/*/mvmfs/{n}") +
               glob.glob(f"/sys/fs/cgroup/mvmfs/{n}"))
    assert parents(node_b) and parents(node_a)
    B.destroy_all()
    wait_for(lambda: not cgroups(B), 5, "B's VM cgroups gone")
    B.stop()
    try:
        assert not parents(node_b), parents(node_b)
        assert parents(node_a) and cgroups(A)
    finally:
        B.start()


CASES = [(f.__name__, f) for f in (
    test_second_daemon_on_a_state_dir_refused, test_side_by_side, test_same_name_own_cgroups,
    test_restart_and_reap_of_one_keep_the_other, test_each_reaps_only_its_own,
    test_empty_parent_removed_at_exit)]

rc = 1
try:
    A = mf.Daemon(os.path.join(TMP, "a"), REG, extra=["--reap-interval", "1s"])
    B = mf.Daemon(os.path.join(TMP, "b"), REG,
                  extra=["--reap-interval", "1s", "--bridge", "mvmtest1", "--ipv6-prefix",
                         "fd42:e2f::/64", "--uid-base", "300000"])
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, A)
    if B:
        print("# B: " + B.log_tail().replace("\n", "\n# "))
finally:
    for d in (A, B):
        if d:
            if d.proc and d.proc.poll() is not None:
                try:
                    d.start()
                except AssertionError:
                    pass
            d.destroy_all()
            try:
                d.stop()
            except AssertionError as e:
                print("# " + str(e).replace("\n", "\n# "))
                print("Bail out! sanitizer report in a daemon log", flush=True)
                rc = 1
            d.kill_vmms()
            d.print_log_tail(rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
