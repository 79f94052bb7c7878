#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End to end, health reports and metrics through the real daemon (tests/integration/
mvmfixture.py: private namespaces, a registry, the Firecracker fake) with a real HTTP receiver
(tests/runtime/report-receiver.py) as the management API:
- reports arrive for create, start and stop with the right content (validated against
  docs/report.schema.json when python3-jsonschema is importable), a bearer token is sent;
- 503 answers are retried until accepted;
- with the receiver stopped for OUTAGE_S seconds (15 s instead of the issue's minute, to keep
  the suite short; the back-off is capped at 10 s, so a longer outage behaves the same), state
  writes and health reads stay as fast as with it up, and the newest reports arrive once it is
  back;
- a removed VM gets a last report with state "destroyed";
- the per-VM and node `metrics` files pass the strict checker (promcheck.py) and
  `promtool check metrics` when installed, and show the counters."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MVMFS_SRCDIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, HERE)
import mvmfixture as mf  # noqa: E402
import promcheck  # noqa: E402
from mvmfixture import wait_for  # noqa: E402

OUTAGE_S = 15

mf.need_root_fuse(tools=("unshare", "docker-registry", "skopeo", "ip"))
mf.enter_private_namespaces()
mf.setup_namespace()

TMP = mf.tmpdir()
REG = mf.Registry(TMP)
IMAGE = f"{REG.host}/test/simple:1"
D = None


class Receiver:
    def __init__(self, tmp):
        self.log = os.path.join(tmp, "reports.jsonl")
        self.ctl = os.path.join(tmp, "reports.ctl")
        self.port_file = os.path.join(tmp, "reports.port")
        self.port = 0
        self.proc = None
        self.set(200)
        self.start()

    def set(self, status, delay=0.0):
        with open(self.ctl + ".tmp", "w") as f:
            json.dump({"status": status, "delay": delay}, f)
        os.rename(self.ctl + ".tmp", self.ctl)

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "report-receiver.py"), "--port", str(self.port),
             "--port-file", self.port_file, "--log", self.log, "--ctl", self.ctl])
        wait_for(lambda: os.path.exists(self.port_file), 10, "receiver port")
        self.port = int(open(self.port_file).read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def records(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def docs(self, name, status=200):
        return [r["body"] for r in self.records()
                if r["status"] == status and r["body"] and r["body"].get("name") == name]

    def url(self):
        return f"http://127.0.0.1:{self.port}/report"


RX = Receiver(TMP)
TOKEN = os.path.join(TMP, "token")
with open(TOKEN, "w") as f:
    f.write("s3cret-token\n")


def newest(name, pred=lambda d: True):
    ds = [d for d in RX.docs(name) if pred(d)]
    return ds[-1] if ds else None


def wait_doc(name, pred, timeout=10, what=None):
    return wait_for(lambda: newest(name, pred), timeout, what or f"a report for {name}")


def schema_check(docs):
    try:
        import jsonschema
    except ImportError:
        print("# python3 jsonschema not importable: schema not validated")
        return
    schema = json.load(open(os.path.join(SRC, "docs", "report.schema.json")))
    for d in docs:
        jsonschema.validate(d, schema)


def test_create_start_stop_reported():
    os.mkdir(D.vm("r1"))
    ip = D.read("r1", "ip").strip()
    d = wait_doc("r1", lambda d: d["state"] == "created")
    assert d["ip"] == ip, d
    assert d["node"] == socket.gethostname(), d
    assert d["image"] == {"reference": None, "digest": None}, d
    assert d["health"]["verdict"] == "stopped", d
    D.write("r1", "image", IMAGE)
    D.write("r1", "state", "start")
    pid = int(D.read("r1", "pid"))
    health = D.read("r1", "health")
    digest = [ln.split()[2] for ln in health.splitlines() if ln.startswith("image: ready ")][0]
    d = wait_doc("r1", lambda d: d["state"] == "running" and d["pid"] == pid)
    assert d["image"] == {"reference": IMAGE, "digest": digest}, d
    assert d["health"]["checks"]["vmm"]["status"] == "running", d
    assert d["health"]["checks"]["vmm"]["since"], d
    assert set(d["health"]["checks"]) >= {"vmm", "agent", "app", "net"}, d
    assert d["counters"]["boots"] == 1, d
    D.write("r1", "state", "stop")
    d = wait_doc("r1", lambda d: d["state"] == "stopped")
    assert d["pid"] is None and d["counters"]["stops"] == 1, d
    docs = RX.docs("r1")
    seqs = [x["sequence"] for x in docs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    states = [x["state"] for x in docs]
    assert "starting" in states or "running" in states, states
    auth = {r["auth"] for r in RX.records()}
    assert auth == {"Bearer s3cret-token"}, auth
    assert {r["ctype"] for r in RX.records()} == {"application/json"}
    schema_check(docs)


def test_5xx_retried():
    RX.set(503)
    n503 = len([r for r in RX.records() if r["status"] == 503])
    D.write("r1", "state", "start")
    wait_for(lambda: len([r for r in RX.records() if r["status"] == 503]) >= n503 + 3, 15,
             "three 503 answers (retries)")
    RX.set(200)
    wait_doc("r1", lambda d: d["state"] == "running" and d["counters"]["boots"] == 2, 15)
    m = open(os.path.join(D.mnt, "metrics")).read()
    fams, errs = promcheck.parse(m, require_help=True)
    assert not errs, errs
    failed = [v for n, lbl, v in fams["mvmfs_reports_failed_total"]][0]
    assert failed >= 3, failed


def timed(fn, *a):
    t = time.monotonic()
    fn(*a)
    return time.monotonic() - t


def cycle_and_reads(ws, rs, n_reads=20):
    """One stop/start of r1 and health reads, durations appended to ws and rs (seconds)."""
    ws.append(timed(D.write, "r1", "state", "stop"))
    ws.append(timed(D.write, "r1", "state", "start"))
    rs.extend(timed(D.read, "r1", "health") for _ in range(n_reads))


def med(xs):
    return sorted(xs)[len(xs) // 2]


def test_receiver_down_changes_nothing_then_reports_resume():
    base_w, base_r = [], []
    for _ in range(5):
        cycle_and_reads(base_w, base_r)
    print(f"# receiver up:   state write median {med(base_w) * 1e3:.0f} ms, worst "
          f"{max(base_w) * 1e3:.0f} ms; health read median {med(base_r) * 1e3:.1f} ms, worst "
          f"{max(base_r) * 1e3:.1f} ms")
    RX.stop()
    t_end = time.monotonic() + OUTAGE_S
    out_w, out_r = [], []
    os.mkdir(D.vm("r2"))
    while time.monotonic() < t_end:
        cycle_and_reads(out_w, out_r)
    D.write("r1", "state", "stop")
    print(f"# receiver down {OUTAGE_S} s: {len(out_w) // 2} stop/start cycles, state write "
          f"median {med(out_w) * 1e3:.0f} ms, worst {max(out_w) * 1e3:.0f} ms; health read "
          f"median {med(out_r) * 1e3:.1f} ms, worst {max(out_r) * 1e3:.1f} ms")
    # Medians tell a systematic slow-down (a write waiting on the reporter would wait for its
    # timeouts every time); the worst cases only get a loose bound (a shared 2-core machine).
    assert med(out_w) < med(base_w) * 2 + 0.2, (med(out_w), med(base_w))
    assert med(out_r) < med(base_r) * 3 + 0.02, (med(out_r), med(base_r))
    assert max(out_w) < max(base_w) * 2 + 2.0, (max(out_w), max(base_w))
    assert max(out_r) < 1.0, max(out_r)
    m = open(os.path.join(D.mnt, "metrics")).read()
    fams, errs = promcheck.parse(m, require_help=True)
    assert not errs, errs
    queued = fams["mvmfs_report_queue_length"][0][2]
    coalesced = fams["mvmfs_reports_coalesced_total"][0][2]
    print(f"# during the outage: queue {queued:.0f}, coalesced {coalesced:.0f}")
    assert queued >= 1
    n_before = len(RX.records())
    t_back = time.monotonic()
    RX.start()
    wait_doc("r1", lambda d: d["state"] == "stopped" and
             d["counters"]["stops"] >= len(out_w) // 2 + 5, 15,
             "r1's newest report after the outage")
    wait_doc("r2", lambda d: d["state"] == "created", 15, "r2's report after the outage")
    print(f"# reports resumed {time.monotonic() - t_back:.1f} s after the receiver came back, "
          f"{len(RX.records()) - n_before} requests")
    # Coalesced: far fewer documents than the state changes made during the outage.
    assert len(RX.records()) - n_before <= 10, len(RX.records()) - n_before


def test_destroyed_reported():
    os.rmdir(D.vm("r2"))
    d = wait_doc("r2", lambda d: d["state"] == "destroyed")
    assert d["pid"] is None, d
    schema_check([d])


def check_prom(text):
    fams, errs = promcheck.parse(text, require_help=True)
    assert not errs, errs
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.returncode == 0, p.stdout
    else:
        print("# promtool not installed: test parser only")
    return fams


def value(fams, fam, **labels):
    for _n, lbl, v in fams[fam]:
        if all(lbl.get(k) == x for k, x in labels.items()):
            return v
    raise AssertionError(f"{fam}{labels} missing")


def test_metrics_files_strict():
    D.write("r1", "state", "start")
    # The first probe after start flushes Firecracker's metrics and accounts the lines.
    wait_for(lambda: value(check_prom(D.read("r1", "metrics")),
                           "mvmfs_vm_vmm_metrics_lines_total", vm="r1") >= 1, 10,
             "Firecracker metrics lines accounted")
    # The VMM's counters are deltas per line, summed by the daemon: add two lines as the VMM
    # would (the fake writes zeros) and wait for the next flush-and-read (every 10 s). Like
    # Firecracker, the fake writes at its own file offset (no O_APPEND): 64 KiB of empty lines
    # first keep its next lines from overwriting ours.
    path = os.path.join(D.vm_jail("r1"), "root", "metrics.json")
    now_ms = int(time.time() * 1000)
    with open(path, "a") as f:
        f.write("\n" * 65536)
        for i, (rx, blk, mmio) in enumerate(((1000, 4096, 7), (234, 512, 3))):
            f.write(json.dumps({"utc_timestamp_ms": now_ms + 1 + i,
                                "net": {"rx_bytes_count": rx, "tx_packets_count": 2},
                                "block": {"read_bytes": blk, "write_count": 1},
                                "vcpu": {"exit_mmio_read": mmio}}) + "\n")
    wait_for(lambda: value(check_prom(D.read("r1", "metrics")),
                           "mvmfs_vm_net_rx_bytes_total", vm="r1") >= 1234, 15,
             "the appended Firecracker lines accounted")
    vm = check_prom(D.read("r1", "metrics"))
    assert value(vm, "mvmfs_vm_net_rx_bytes_total", vm="r1") == 1234
    assert value(vm, "mvmfs_vm_net_tx_packets_total", vm="r1") == 4
    assert value(vm, "mvmfs_vm_block_read_bytes_total", vm="r1") == 4608
    assert value(vm, "mvmfs_vm_block_writes_total", vm="r1") == 2
    assert value(vm, "mvmfs_vm_vcpu_exits_total", vm="r1", kind="mmio_read") == 10
    assert value(vm, "mvmfs_vm_state", vm="r1", state="running") == 1
    assert value(vm, "mvmfs_vm_state", vm="r1", state="stopped") == 0
    assert value(vm, "mvmfs_vm_boots_total", vm="r1") >= 3
    assert value(vm, "mvmfs_vm_stops_total", vm="r1") >= 3
    assert value(vm, "mvmfs_vm_image_prepares_total", vm="r1") >= 3
    assert value(vm, "mvmfs_vm_image_prepare_seconds_total", vm="r1") > 0
    assert "mvmfs_vm_vcpu_exits_total" in vm and "mvmfs_vm_net_rx_bytes_total" in vm
    node = check_prom(open(os.path.join(D.mnt, "metrics")).read())
    assert value(node, "mvmfs_vms", state="running") == 1
    assert value(node, "mvmfs_node_info", node=socket.gethostname()) == 1
    assert value(node, "mvmfs_reports_sent_total") >= 5
    assert value(node, "mvmfs_vm_boots_total", vm="r1") >= 3
    D.write("r1", "state", "kill")


CASES = [(f.__name__, f) for f in (
    test_create_start_stop_reported, test_5xx_retried,
    test_receiver_down_changes_nothing_then_reports_resume, test_destroyed_reported,
    test_metrics_files_strict)]

rc = 1
try:
    D = mf.Daemon(TMP, REG, extra=["--report-url", RX.url(), "--report-token-file", TOKEN])
    rc = mf.run_tap(CASES)
except Exception as e:  # noqa: BLE001
    mf.fixture_failed(e, D)
finally:
    if D:
        D.destroy_all()
        D.stop()
        D.kill_vmms()
        D.print_log_tail(rc)
    RX.stop()
    REG.stop()
    shutil.rmtree(TMP, ignore_errors=True)
sys.exit(rc)
