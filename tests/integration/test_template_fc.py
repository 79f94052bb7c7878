#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Booted templates on the Firecracker backend end to end (docs/template.md): the real daemon on
a real FUSE mount and netlink, the Firecracker/jailer fake running the real guest agent in test
mode as each guest. The template is built in the background by the daemon's own template VM
(its own id, jail, uid, netns), from daemon start, without any start: a start before it is
ready cold-boots at once (not delayed); then three VMs of the layout each load it (one
snapshot/load per start, each in its own jail, each VMM mapping the template's one memory file:
same inode, root's, read-only), each guest taking its own identity (name, address, MAC); a clone
suspends into files of its own and resumes; a corrupt template costs a cold boot that works and
is rebuilt in the background; a daemon stopped or SIGKILLed during a build leaves nothing once
restarted; --no-template builds nothing and boots; every call the fake saw was answered 2xx
(no contract violation)."""
import os
import re
import shutil
import subprocess
import sys
import time

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
BUILD_ID = "mvmfs-template-build-"  # + the template's key: the template VM's id
DELAY = os.path.join(TMP, "tpl-delay")
# The guest: the agent reads the initramfs its VMM was given (in the jail): the template's on a
# template start (it then waits for its identity), the VM's own on a cold boot. The template
# VM's guest first sleeps for the seconds in DELAY (a slow build, to start VMs meanwhile).
KNOBS = {"default": {"agent_cmd": f'case "$FAKE_FC_VSOCK_UDS" in *{BUILD_ID}*) '
                                  f'sleep "$(cat {DELAY} 2>/dev/null || echo 0)";; esac; '
                                  f'exec {AGENT} --test-mode --ctl-fd 3 --boot-id '
                                  f'"$FAKE_FC_GUEST_BOOT_ID" --initrd '
                                  f'"$(dirname "$FAKE_FC_VSOCK_UDS")/initrd"'}}
D = None
BUILDS = set()  # the template VMs' ids seen


def set_delay(s):
    with open(DELAY, "w") as f:
        f.write(str(s))


def daemon_log():
    with open(os.path.join(TMP, "daemon.log"), errors="replace") as f:
        return f.read()


def template_dirs():
    d = os.path.join(D.state, "templates")
    return [os.path.join(d, n) for n in os.listdir(d) if "." not in n] if os.path.isdir(d) \
        else []


def wait_template(timeout=20):
    """The one template, once built; its builder's id is remembered."""
    (tdir,) = wait_for(lambda: template_dirs() or None, timeout,
                       lambda: "a template:\n" + D.log_tail())
    BUILDS.add(BUILD_ID + os.path.basename(tdir))
    return tdir


def build_pids():
    out = subprocess.run(["pgrep", "-f", "--", f"--id {BUILD_ID}"], stdout=subprocess.PIPE,
                         text=True).stdout
    return [int(p) for p in out.split()]


def no_build_left(bid):
    """Nothing of the template VM bid: jail, cgroups, netns, process (leftovers) and no
    unfinished build dir."""
    found = leftovers(D, bid)
    d = os.path.join(D.state, "templates")
    found += [n for n in (os.listdir(d) if os.path.isdir(d) else []) if n.endswith(".build")]
    return found


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


def test_start_before_the_template_cold_boots_at_once():
    # The daemon started with a slow template build (DELAY): a start meanwhile cold-boots and
    # is not delayed by it.
    assert not template_dirs()
    os.mkdir(D.vm("w1"))
    D.write("w1", "image", IMAGE)
    t0 = time.monotonic()
    start("w1")
    took = time.monotonic() - t0
    assert not template_dirs(), "the start waited for the build"
    assert "w1: template: none yet for this layout, building it in the background: cold boot" \
        in daemon_log(), D.log_tail()
    assert "template: building " in daemon_log(), D.log_tail()
    assert len(calls("w1", "PUT /actions InstanceStart")) == 1
    assert not calls("w1", "PUT /snapshot/load")
    print(f"# cold start during the build: {took:.2f} s (wall clock, shared machine)")


def test_template_appears_without_a_start():
    tdir = wait_template()
    # Logged once the template VM is torn down, just after the template's rename.
    wait_for(lambda: re.search(r"template: built \S+ in [0-9.]+ s", daemon_log()), 10,
             D.log_tail)
    (bid,) = BUILDS
    # The template VM: one boot, one snapshot/create, in its own jail; its uid is outside the
    # VMs' range, its netns its own; then nothing of it is left.
    assert len(calls(bid, "PUT /snapshot/create")) == 1
    assert len(calls(bid, "PUT /actions InstanceStart")) == 1
    (jrun,) = fcctl.events(fcctl.record_file(D.jail, bid), "jailer")
    wait_for(lambda: not no_build_left(bid), 10, lambda: no_build_left(bid))
    st = os.stat(os.path.join(tdir, "mem"))
    assert st.st_uid == 0 and st.st_mode & 0o7777 == 0o444, oct(st.st_mode)
    assert sorted(os.listdir(tdir)) == ["initrd", "inputs", "mem", "mem.sum", "state",
                                        "state.sum"], os.listdir(tdir)


def test_three_vms_from_one_template():
    assert D.write("w1", "state", "stop\n") == 5
    macs = set()
    for n in NAMES:
        if not os.path.isdir(D.vm(n)):
            os.mkdir(D.vm(n))
            D.write(n, "image", IMAGE)
        start(n)
        line = identity_line(n)
        macs.add(line.split("MAC ")[1].split(")")[0])
    assert len(macs) == 3, macs
    for n in NAMES:
        assert f"{n}: template: started from " in daemon_log(), D.log_tail()
    (tdir,) = template_dirs()
    st = os.stat(os.path.join(tdir, "mem"))
    # No start made a snapshot: one load per start.
    for n in NAMES:
        assert not calls(n, "PUT /snapshot/create"), n
        assert len(calls(n, "PUT /snapshot/load")) == 1, n
        (ev,) = loads(n)
        assert (ev["mem_file"]["dev"], ev["mem_file"]["ino"]) == (st.st_dev, st.st_ino), ev
        assert not ev["mem_file"]["writable"], ev
        assert os.stat(os.path.join(D.vm_jail(n), "root", "mem")).st_ino == st.st_ino
    # Each in its own jail: jail dir, uid, netns; the template VM's are none of them.
    (bid,) = BUILDS
    jails = [fcctl.jailer_report(D.vm_jail(n)) for n in NAMES]
    (brun,) = fcctl.events(fcctl.record_file(D.jail, bid), "jailer")
    for key in ("uid", "netns"):
        vals = [j[key] for j in jails]
        assert len(set(vals)) == 3, vals
        if key in brun:
            assert brun[key] not in vals, (brun, vals)


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
    n_load = len(calls("w3", "PUT /snapshot/load"))
    start("w3")
    assert "w3: template: corrupt: checksum mismatch: cold boot" in daemon_log(), D.log_tail()
    assert len(calls("w3", "PUT /actions InstanceStart")) == n_start + 1
    # Rebuilt in the background (same key: the same template VM id, a second create).
    (bid,) = BUILDS
    wait_for(lambda: len(calls(bid, "PUT /snapshot/create")) == 2, 20, D.log_tail)
    wait_template()
    assert D.write("w3", "state", "stop\n") == 5
    start("w3")
    assert not calls("w3", "PUT /snapshot/create")
    assert len(calls("w3", "PUT /snapshot/load")) == n_load + 1
    identity_line("w3")


def test_shutdown_during_a_build_is_bounded_and_leaves_nothing():
    (bid,) = BUILDS
    D.stop()
    shutil.rmtree(os.path.join(D.state, "templates"))
    set_delay(60)
    D.start()
    wait_for(lambda: build_pids() or None, 10, "the template VM")
    t0 = time.monotonic()
    D.stop()
    took = time.monotonic() - t0
    assert took < 5, took
    assert re.search(r"template: not built: .*cancelled", daemon_log()), D.log_tail()
    wait_for(lambda: not no_build_left(bid), 10, lambda: no_build_left(bid))


def test_sigkill_during_a_build_leaks_nothing():
    (bid,) = BUILDS
    set_delay(60)
    D.start()
    pids = wait_for(lambda: build_pids() or None, 10, "the template VM")
    wait_for(lambda: os.path.isdir(D.vm_jail(bid)), 10, "its jail")
    D.kill9()
    # What the killed daemon's build left: the VMM, its jail, netns, cgroups, build dir.
    assert all(os.path.exists(f"/proc/{p}") for p in pids), pids
    assert no_build_left(bid), "nothing to clean up: the test proves nothing"
    set_delay(0)
    D.start()  # the reaper and template_gc clean up, then the build runs again
    wait_template()
    for p in pids:
        wait_for(lambda: not os.path.exists(f"/proc/{p}") or
                 " Z " in open(f"/proc/{p}/stat").read(), 10, f"the old VMM {p} gone")
    wait_for(lambda: not no_build_left(bid), 10, lambda: no_build_left(bid))
    assert D.state_of("w1") == "running", D.read("w1", "error")


def test_no_template_builds_nothing_and_boots():
    D.stop()
    shutil.rmtree(os.path.join(D.state, "templates"))
    n_builds = daemon_log().count("template: building ")
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
    time.sleep(0.5)
    assert daemon_log().count("template: building ") == n_builds, D.log_tail()
    assert not template_dirs() and not build_pids()


def test_fake_saw_no_error_response():
    for n in NAMES + tuple(BUILDS):
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
    for b in BUILDS:
        assert not no_build_left(b), no_build_left(b)


CASES = [(f.__name__, f) for f in (
    test_start_before_the_template_cold_boots_at_once, test_template_appears_without_a_start,
    test_three_vms_from_one_template, test_clone_suspends_into_its_own_files,
    test_corrupt_template_cold_boots_and_is_rebuilt,
    test_shutdown_during_a_build_is_bounded_and_leaves_nothing,
    test_sigkill_during_a_build_leaks_nothing, test_no_template_builds_nothing_and_boots,
    test_fake_saw_no_error_response, test_nothing_is_left)]

rc = 1
try:
    set_delay(4)  # the first build is slow: w1 starts meanwhile
    D = mf.Daemon(TMP, REG, knobs=KNOBS, template=True)
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
