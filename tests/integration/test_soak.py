#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Soak: many writers of random verbs (start, stop, kill, restart; blocking or
O_NONBLOCK) over several VMs of the real daemon with the Firecracker fake, a daemon SIGKILL in
the middle and a restart; then every VM must take stop, start, stop cleanly (no EBUSY left from
a transition that never ends) and, once every VM is destroyed, nothing is left: no VMM process,
jail, cgroup, netns, state dir or lease.

Short form in the integration suite (about 30 s). Long form by hand:
  MVMFS_SOAK_SECONDS=600 MVMFS_SOAK_VMS=10 MVMFS_SOAK_WRITERS=6 tests/integration/test_soak.py
(bench/soak runs exactly that). Prints ops/s, the EBUSY share, daemon RSS and open fds."""
import errno
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultfix as ff  # noqa: E402
import mvmfixture as mf  # noqa: E402
from mvmfixture import fcctl, leftovers, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
mf.enter_private_namespaces()
mf.setup_namespace()

SECONDS = float(os.environ.get("MVMFS_SOAK_SECONDS", "24"))
N_VMS = int(os.environ.get("MVMFS_SOAK_VMS", "6"))
N_WRITERS = int(os.environ.get("MVMFS_SOAK_WRITERS", "4"))
TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
D = None
VERBS = ("start", "stop", "kill", "restart")
IDLE = ("created", "stopped", "failed", "running")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.n = {}
        self.down = threading.Event()   # the daemon is being killed / restarted
        self.stop = threading.Event()

    def add(self, what):
        with self.lock:
            self.n[what] = self.n.get(what, 0) + 1


def writer(st, names, seed):
    rnd = random.Random(seed)
    while not st.stop.is_set():
        if st.down.is_set():
            time.sleep(0.05)
            continue
        name, verb = rnd.choice(names), rnd.choice(VERBS)
        flags = os.O_NONBLOCK if rnd.random() < 0.5 else 0
        try:
            D.write(name, "state", verb, flags)
            st.add("ok")
        except OSError as e:
            if st.down.is_set():
                continue   # the mount went away under us
            st.add(errno.errorcode.get(e.errno, str(e.errno)))
        time.sleep(rnd.random() * 0.05)


def sample(samples):
    try:
        samples.append((ff.rss_kib(D.proc.pid), ff.nfds(D.proc.pid)))
    except OSError:
        pass


def run_phase(st, names, seconds, samples):
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(1)
        sample(samples)


def settle_and_cycle(name):
    """Wait for any transition to end, then stop/start/stop must each succeed."""
    wait_for(lambda: D.state_of(name) in IDLE, 20, f"{name} out of its transition "
             f"(state {D.state_of(name)})")
    for verb, want in (("stop", ("stopped", "created", "failed")), ("start", ("running",)),
                       ("stop", ("stopped",))):
        try:
            D.write(name, "state", verb)
        except OSError as e:
            raise AssertionError(f"{name}: {verb} in state {D.state_of(name)}: {e}; error: "
                                 f"{D.read(name, 'error')}")
        s = D.state_of(name)
        assert s in want, f"{name}: after {verb}: {s} ({D.read(name, 'error')})"


def test_soak():
    names = [f"s{i}" for i in range(N_VMS)]
    # A few VMs whose guest ignores Ctrl-Alt-Del (stops end at the 2 s deadline) and one whose
    # VMM dies by itself after a while (exits racing the verbs).
    fcctl.write_knobs(D.knobs, by_id={"s0": {"ignore_ctrl_alt_del": True},
                                      "s1": {"crash_after_start_ms": 1500},
                                      "s2": {"api_delay_ms": 50},
                                      "s3": {"crash_after_start_ms": 700, "crash_signal": "SIGKILL"},
                                      "s4": {"agent_cmd": "exec cat"}})
    for n in names:
        os.mkdir(D.vm(n))
        D.write(n, "image", IMAGE)
    st = Stats()
    samples = []
    threads = [threading.Thread(target=writer, args=(st, names, i), daemon=True)
               for i in range(N_WRITERS)]
    t0 = time.time()
    for t in threads:
        t.start()
    run_phase(st, names, SECONDS / 2, samples)
    st.down.set()
    D.kill9()
    D.start()
    st.down.clear()
    first_phase, samples = samples, []
    run_phase(st, names, SECONDS / 2, samples)
    st.stop.set()
    for t in threads:
        t.join(30)
    elapsed = time.time() - t0
    total = sum(st.n.values())
    print(f"# {total} writes in {elapsed:.0f} s ({total / elapsed:.1f}/s) by {N_WRITERS} writers "
          f"over {N_VMS} VMs: " + ", ".join(f"{k} {v}" for k, v in sorted(st.n.items())))
    print(f"# EBUSY share {st.n.get('EBUSY', 0) / max(total, 1) * 100:.1f}%")
    for what, ss in (("before the SIGKILL", first_phase), ("after the restart", samples)):
        if not ss:
            continue
        q = max(1, len(ss) // 4)
        print(f"# daemon {what}: RSS {ss[0][0]} -> {ss[q - 1][0]} -> {ss[-1][0]} KiB "
              f"(first, quarter, last sample; max {max(s[0] for s in ss)}), open fds "
              f"{ss[0][1]} -> {ss[-1][1]} (max {max(s[1] for s in ss)})")
    unexpected = {k: v for k, v in st.n.items() if k not in ("ok", "EBUSY", "EIO")}
    assert not unexpected, f"unexpected errors: {unexpected}"
    fcctl.write_knobs(D.knobs)
    for n in names:
        settle_and_cycle(n)
    # One VMM process per running VM and none other (no orphan, no duplicate).
    for n in names:
        assert not ff.procs_of(D, n), f"{n} is stopped but VMM processes {ff.procs_of(D, n)} run"
    for n in names:
        os.rmdir(D.vm(n))
    for n in names:
        wait_for(lambda: not leftovers(D, n), 10, f"no leftovers of {n}: {leftovers(D, n)}")
    wait_for(lambda: not ff.jail_procs(D), 5, f"no VMM process left: {ff.jail_procs(D)}")


def main():
    global D
    rc = 1
    try:
        D = mf.Daemon(TMP, REG)
        rc = mf.run_tap([("soak", test_soak)])
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
        REG.stop()
        subprocess.run(["rm", "-rf", TMP])
    return rc


if __name__ == "__main__":
    sys.exit(main())
