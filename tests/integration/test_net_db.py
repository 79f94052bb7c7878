#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End to end with a real PostgreSQL behind a TCP proxy that can go silent: the real daemon
(--database-url through the proxy, default --database-timeout 5s), a real FUSE mount, the
Firecracker fake. A silent database fails that mkdir with EIO within 10 s while another VM's
stop/start/reads go on at normal speed; bad rows (scope, gateway, another local VM's address)
fail mkdir with EIO and a message naming the row. MVMFS_DB_BENCH=N repeats the silent mkdir N
times and prints its failure time (the benchmark; bench/db-silent runs it)."""
import errno
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mvmfixture as mf  # noqa: E402
import pgfixture  # noqa: E402
from mvmfixture import expect_errno, wait_for  # noqa: E402

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
why = pgfixture.available()
if why:
    mf.skip(why)
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
PG = pgfixture.Postgres()
PG.sql("CREATE DATABASE mvmfs")
PG.sql("CREATE TABLE instances (id text PRIMARY KEY, ip_address inet)", db="mvmfs")
PROXY = pgfixture.SilentProxy(PG.socket)
URL = f"postgresql://postgres@127.0.0.1:{PROXY.port}/mvmfs"
D = None


def log_since(mark):
    with open(os.path.join(D.tmp, "daemon.log"), errors="replace") as f:
        f.seek(mark)
        return f.read()


def log_mark():
    return os.path.getsize(os.path.join(D.tmp, "daemon.log"))


def row_ip(name):
    return PG.sql(f"SELECT host(ip_address) FROM instances WHERE id = '{name}'", db="mvmfs")


def test_mkdir_takes_the_database_address():
    os.mkdir(D.vm("a1"))
    ip = D.read("a1", "ip").strip()
    assert ip == row_ip("a1"), (ip, row_ip("a1"))
    assert ipaddress.IPv6Address(ip) in ipaddress.IPv6Network("fd42:e2e::/64")
    D.write("a1", "image", IMAGE)
    D.write("a1", "state", "start")
    assert D.state_of("a1") == "running", D.read("a1", "error")


def other_vm_ops():
    """Times of another VM's operations: stop, start, and reads of its files."""
    t = {}
    t0 = time.monotonic()
    D.write("a1", "state", "stop")
    t["stop"] = time.monotonic() - t0
    assert D.state_of("a1") == "stopped", D.read("a1", "error")
    t0 = time.monotonic()
    D.write("a1", "state", "start")
    t["start"] = time.monotonic() - t0
    assert D.state_of("a1") == "running", D.read("a1", "error")
    t0 = time.monotonic()
    for _ in range(20):
        for attr in ("state", "health", "ip", "config"):
            D.read("a1", attr)
    t["reads"] = time.monotonic() - t0
    return t


def silent_mkdir(name):
    """mkdir name against a silent database from a thread: (errno or 0, seconds)."""
    res = {}

    def run():
        t0 = time.monotonic()
        try:
            os.mkdir(D.vm(name))
            res["errno"] = 0
        except OSError as e:
            res["errno"] = e.errno
        res["secs"] = time.monotonic() - t0

    th = threading.Thread(target=run)
    th.start()
    return th, res


def test_silent_database_fails_only_that_mkdir():
    base = other_vm_ops()
    PROXY.silent(True)
    try:
        mark = log_mark()
        th, res = silent_mkdir("b1")
        time.sleep(0.3)   # the mkdir is waiting on the database now
        t0 = time.monotonic()
        during = other_vm_ops()
        others_done = time.monotonic() - t0
        th.join(15)
        assert not th.is_alive(), "mkdir still blocked after 15 s"
    finally:
        PROXY.silent(False)
    print(f"# mkdir with a silent database: errno {res['errno']} after {res['secs']:.2f} s")
    print(f"# another VM's operations without / with it: {base} / {during}")
    assert res["errno"] == errno.EIO, res
    assert 4.5 <= res["secs"] < 10, res
    # Not queued behind the mkdir: all done well before its deadline, and each at normal speed
    # (1.5x of the same operation without the fault, plus 0.3 s for scheduling noise).
    assert others_done < 6, others_done
    for k, v in during.items():
        assert v <= 1.5 * base[k] + 0.3, (k, v, base[k])
    assert "b1" not in os.listdir(D.vm(""))
    text = log_since(mark)
    assert "b1: create failed: database did not answer within 5.0 s" in text, text[-2000:]
    # Back: the same mkdir works, on a fresh connection, and takes its address from the row.
    t0 = time.monotonic()
    os.mkdir(D.vm("b1"))
    print(f"# mkdir after the database came back: {time.monotonic() - t0:.3f} s")
    assert D.read("b1", "ip").strip() == row_ip("b1")
    os.rmdir(D.vm("b1"))


def test_queued_mkdirs_fail_within_bounds():
    """mkdirs in vms/ are serialised by the kernel (the directory's lock): the first one
    waiting on a silent database holds up the others. The first gets the full deadline, the
    ones queued behind it a 1 s probe each, so all fail well within 10 s of being issued; an
    rmdir of another VM queued behind them too waits at most for that (the same lock)."""
    os.mkdir(D.vm("z1"))
    PROXY.silent(True)
    try:
        t0 = time.monotonic()
        calls = [silent_mkdir(f"q{i}") for i in range(3)]
        time.sleep(0.3)
        t1 = time.monotonic()
        os.rmdir(D.vm("z1"))
        rmdir_secs = time.monotonic() - t1
        for th, _ in calls:
            th.join(20)
        total = time.monotonic() - t0
    finally:
        PROXY.silent(False)
    secs = sorted(res["secs"] for _, res in calls)
    print(f"# 3 mkdirs queued on a silent database: {[round(s, 2) for s in secs]} s; "
          f"an rmdir of another VM queued with them: {rmdir_secs:.2f} s")
    for _, res in calls:
        assert res["errno"] == errno.EIO, res
    assert secs[-1] < 10 and total < 10, (secs, total)
    assert rmdir_secs < 10, rmdir_secs
    # It is back: the next mkdir works at once and clears the silent state.
    os.mkdir(D.vm("q0"))
    os.rmdir(D.vm("q0"))


def test_bad_rows_refused():
    a1 = D.read("a1", "ip").strip()
    rows = {
        "bad-gw": ("fd42:e2e::1", "the node bridge's gateway"),
        "bad-any": ("fd42:e2e::", "reserved address of the node prefix"),
        "bad-ll": ("fe80::5", "not a global or unique-local unicast address"),
        "bad-mc": ("ff05::2", "not a global or unique-local unicast address"),
        "bad-lo": ("::1", "not a global or unique-local unicast address"),
        "bad-v4": ("::ffff:10.0.0.1", "IPv4-mapped"),
        "bad-64": ("fd42:e2e::77/64", "a /64 network"),
        "bad-dup": (a1, "already held by VM 'a1' on this node"),
    }
    values = ", ".join(f"('{n}', '{v}')" for n, (v, _) in rows.items())
    PG.sql(f"INSERT INTO instances VALUES {values}", db="mvmfs")
    for name, (value, why) in rows.items():
        mark = log_mark()
        expect_errno(errno.EIO, os.mkdir, D.vm(name))
        assert name not in os.listdir(D.vm(""))
        text = log_since(mark)
        assert f"{name}: create failed" in text and why in text, (name, text[-1500:])
        line = [x for x in text.splitlines() if f"{name}: create failed" in x][0]
        assert f"'{name}'" in line, line   # the message names the row
        print("# " + line.split("create failed: ", 1)[1])
        # The platform's row is left as it was.
        assert PG.sql(f"SELECT count(*) FROM instances WHERE id = '{name}'", db="mvmfs") == "1"
    # The VM holding the address is untouched.
    assert D.state_of("a1") == "running" and D.read("a1", "ip").strip() == a1


def test_sigterm_with_a_silent_database():
    pid = D.read("a1", "pid").strip()
    PROXY.silent(True)
    try:
        th, res = silent_mkdir("c1")
        time.sleep(0.5)
        t0 = time.monotonic()
        D.proc.send_signal(signal.SIGTERM)
        try:
            D.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        secs = time.monotonic() - t0
        th.join(10)
    finally:
        PROXY.silent(False)
    print(f"# SIGTERM to exit with a mkdir waiting on a silent database: {secs:.2f} s; "
          f"the mkdir: errno {res.get('errno')} after {res.get('secs', 0):.2f} s")
    assert D.proc.poll() is not None, "daemon still running 10 s after SIGTERM"
    D.stop()
    assert secs < 5, secs
    assert res.get("errno"), res
    D.start()
    assert D.state_of("a1") == "running" and D.read("a1", "pid").strip() == pid
    assert "c1" not in os.listdir(D.vm(""))
    assert PG.sql("SELECT count(*) FROM instances WHERE id = 'c1'", db="mvmfs") == "0"


def bench_silent_mkdir():
    n = int(os.environ.get("MVMFS_DB_BENCH", "0"))
    if not n:
        return
    times = []
    PROXY.silent(True)
    try:
        for i in range(n):
            th, res = silent_mkdir(f"bench-{i}")
            th.join(30)
            assert res.get("errno") == errno.EIO, res
            times.append(res["secs"])
    finally:
        PROXY.silent(False)
    print(f"# BENCH silent-database mkdir failure: first {times[0]:.3f} s (full deadline), "
          f"then while it stays silent: " + " ".join(f"{t:.3f}" for t in times[1:]) +
          " s (1 s probes; wall clock)")


CASES = [(f.__name__, f) for f in (
    test_mkdir_takes_the_database_address, test_silent_database_fails_only_that_mkdir,
    test_queued_mkdirs_fail_within_bounds, test_bad_rows_refused, test_sigterm_with_a_silent_database, bench_silent_mkdir)]

rc = 1
try:
    D = mf.Daemon(TMP, REG, extra=["--database-url", URL])
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    rc = mf.daemon_teardown(D, rc)
    PROXY.stop()
    PG.destroy()
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
