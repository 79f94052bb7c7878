# SPDX-License-Identifier: MIT
"""The fake `firecracker` process: flags (docs/firecracker.md C), the API socket with micro-http's
wire behaviour (§A.1), lifecycle and exit codes (§B)."""
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback

from . import VERSION, args as argmod, knobs as knobmod
from .api import Hang, Vmm
from .record import Recorder
from .vsock import AgentHelper, VsockBackend

MAX_CONNECTIONS = 10
SERVER_FULL = (b"HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
               b"Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }")
DEFAULT_PAYLOAD = 51200
SIGNAL_EXIT = {signal.SIGSYS: 148, signal.SIGBUS: 149, signal.SIGSEGV: 150,
               signal.SIGXFSZ: 151, signal.SIGXCPU: 154, signal.SIGHUP: 156, signal.SIGILL: 157}

FLAGS = {
    "api-sock": argmod.Spec(default="/run/firecracker.socket"),
    "id": argmod.Spec(default="anonymous-instance"),
    "config-file": argmod.Spec(), "no-api": argmod.Spec(False), "metadata": argmod.Spec(),
    "log-path": argmod.Spec(), "level": argmod.Spec(), "module": argmod.Spec(),
    "show-level": argmod.Spec(False), "show-log-origin": argmod.Spec(False),
    "metrics-path": argmod.Spec(), "boot-timer": argmod.Spec(False),
    "seccomp-filter": argmod.Spec(), "no-seccomp": argmod.Spec(False),
    "http-api-max-payload-size": argmod.Spec(default=str(DEFAULT_PAYLOAD)),
    "mmds-size-limit": argmod.Spec(), "enable-pci": argmod.Spec(False),
    "start-time-us": argmod.Spec(), "start-time-cpu-us": argmod.Spec(),
    "parent-cpu-time-us": argmod.Spec(), "version": argmod.Spec(False),
    "help": argmod.Spec(False), "snapshot-version": argmod.Spec(False),
    "describe-snapshot": argmod.Spec(),
}


class Logger:
    """Firecracker's log line format: `<time> [<id>:<thread>[:<LEVEL>]] msg`."""
    ORDER = {"Off": 0, "Error": 1, "Warn": 2, "Info": 3, "Debug": 4, "Trace": 5}
    NAMES = {"ERROR": "Error", "WARN": "Warn", "INFO": "Info", "DEBUG": "Debug"}

    def __init__(self, vm_id):
        self.id = vm_id
        self.fd = 1
        self.level = "Info"
        self.show_level = False
        self.lock = threading.Lock()

    def configure(self, fd, cfg):
        if fd is not None:
            self.fd = fd
        if cfg.get("level"):
            from .schemas import LEVELS
            self.level = LEVELS[cfg["level"].lower()]
        if cfg.get("show_level") is not None:
            self.show_level = cfg["show_level"]

    def __call__(self, level, msg, thread="main"):
        if self.ORDER[self.NAMES[level]] > self.ORDER[self.level]:
            return
        t = time.time()
        lt = time.localtime(t)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + ".%09d" % int((t % 1) * 1e9)
        tag = "%s:%s" % (self.id, thread) + (":%s" % level if self.show_level else "")
        line = ("%s [%s] %s\n" % (stamp, tag, msg)).encode()
        with self.lock:
            try:
                os.write(self.fd, line)
            except OSError:
                pass


class Process:
    def __init__(self, vm_id, knobs, rec, logger):
        self.id = vm_id
        self.knobs = knobs
        self.rec = rec
        self.log = logger
        self.vmm = None
        self.exiting = threading.Lock()

    def exit(self, code, reason, signal_name=None):
        """Never returns. Flushes metrics like Firecracker does on its exit paths."""
        self.exiting.acquire()
        if self.vmm is not None:
            self.vmm.write_metrics()
        if signal_name:
            sig = getattr(signal, signal_name, None) if isinstance(signal_name, str) \
                else signal.Signals(int(signal_name))
            self.rec.event("exit", code=None, signal=int(sig), reason=reason)
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass        # SIGKILL/SIGSTOP cannot be handled anyway
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
            time.sleep(1)
            os._exit(2)
        self.rec.event("exit", code=code, reason=reason)
        if code == 0:
            self.log("INFO", "Vmm is stopping.")
            self.log("INFO", "Firecracker exiting successfully. exit_code=0")
        else:
            self.log("ERROR", "Firecracker exiting with error. exit_code=%d" % code)
        os._exit(code)


def _usage_error(msg):
    sys.stderr.write("Arguments parsing error: %s \n\nFor more information try --help.\n" % msg)
    return 153


def main(argv, ctx=None):
    """argv[0] is the program name. ctx (from the fake jailer): knobs_doc, recorder, helper_env,
    jail_root. Returns an exit code (or never returns)."""
    try:
        vals, extra = argmod.parse(FLAGS, argv[1:])
    except argmod.ArgError as e:
        return _usage_error(str(e))
    if extra:
        return _usage_error("Found argument '%s' which wasn't expected, or isn't valid in this "
                            "context." % extra[0])
    if "version" in vals:
        print("Firecracker v%s\n" % VERSION)
        return 0
    if "help" in vals:
        print("Firecracker v%s (fake)\n" % VERSION)
        return 0
    if "no-api" in vals and "config-file" not in vals:
        return _usage_error("Argument 'config-file' required, but not found.")
    if "seccomp-filter" in vals and "no-seccomp" in vals:
        return _usage_error("Argument 'seccomp-filter' cannot be used together with argument "
                            "'no-seccomp'.")
    vm_id = vals["id"]
    err = argmod.validate_instance_id(vm_id)
    if err:
        sys.stderr.write("Firecracker panicked at 'Invalid instance ID: %s'\n" % err)
        sys.stderr.flush()
        os.abort()
    if "level" in vals and vals["level"] not in ("Error", "Warning", "Info", "Debug", "Trace",
                                                 "Off"):
        sys.stderr.write("Error: InvalidLogLevel(\"%s\")\n" % vals["level"])
        return 152
    try:
        payload_limit = int(vals["http-api-max-payload-size"])
        mmds_limit = int(vals.get("mmds-size-limit", payload_limit))
    except ValueError:
        return _usage_error("invalid value for http-api-max-payload-size/mmds-size-limit")

    ctx = ctx or {}
    doc = ctx.get("knobs_doc")
    if doc is None:
        doc = knobmod.read_file()
    knobs = knobmod.select(doc, vm_id)
    rec = ctx.get("recorder")
    if rec is None:
        path = os.environ.get("FAKE_FC_RECORD")
        rec = Recorder.open(path) if path else Recorder()
    helper = ctx.get("helper")
    if helper is None and knobs.get("agent_cmd") and "recorder" not in ctx:
        helper = AgentHelper.start(knobs["agent_cmd"], dict(os.environ), knobs.get("agent_env"),
                                   rec)
    jail_root = ctx.get("jail_root")

    logger = Logger(vm_id)
    if "log-path" in vals:
        try:
            logger.fd = os.open(vals["log-path"], os.O_RDWR | os.O_NONBLOCK | os.O_CREAT |
                                os.O_CLOEXEC, 0o644)
        except OSError as e:
            sys.stderr.write("Error: Logger(%s)\n" % e)
            return 1
    if vals.get("level"):
        logger.level = {"Warning": "Warn"}.get(vals["level"], vals["level"])
    logger.show_level = "show-level" in vals
    proc = Process(vm_id, knobs, rec, logger)

    for sig, code in SIGNAL_EXIT.items():
        signal.signal(sig, lambda s, f, c=code: proc.exit(c, "signal %d" % s))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def vsock_factory(uds_path, vmm):
        host = os.path.join(jail_root, uds_path.lstrip("/")) if jail_root else \
            os.path.abspath(uds_path)
        return VsockBackend(uds_path, vmm, helper, host, knobs, rec)

    vmm = Vmm(vm_id, knobs, rec, logger, enable_pci="enable-pci" in vals,
              on_exit=lambda code, reason, signal=None: proc.exit(code, reason, signal),
              vsock_factory=vsock_factory)
    proc.vmm = vmm
    vmm.mmds_limit = mmds_limit
    if helper is not None:
        helper.watch(lambda word: _guest_event(proc, vmm, word))
    if "metrics-path" in vals:
        try:
            vmm.metrics_fd = vmm._open_sink(vals["metrics-path"])
            vmm.metrics_inited = True
        except OSError as e:
            sys.stderr.write("Error: Metrics(%s)\n" % e)
            return 1

    logger("INFO", "Running Firecracker v%s" % VERSION)
    rec.event("firecracker_start", pid=os.getpid(), uid=os.getuid(), gid=os.getgid(),
              argv=argv, cwd=os.getcwd())
    if "config-file" in vals:
        code = _boot_from_file(vmm, vals["config-file"])
        if code:
            return code
    if "no-api" in vals:
        while True:
            time.sleep(3600)

    sock_path = vals["api-sock"]
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if os.path.lexists(sock_path):
            raise OSError(98, "Address in use")
        lsock.bind(sock_path)
        lsock.listen(128)
    except OSError:
        msg = "Failed to open the API socket at: %s. Check that it is not already used." \
            % sock_path
        logger("ERROR", msg)
        sys.stderr.write("Error: %s\n" % msg)
        rec.event("exit", code=1, reason=msg)
        return 1
    logger("INFO", "Listening on API socket (\"%s\")." % sock_path)
    logger("INFO", "API server started.", thread="fc_api")
    Server(lsock, vmm, rec, payload_limit).serve()
    return 0


def _guest_event(proc, vmm, word):
    """What the guest kernel would make Firecracker do (x86, reboot=k panic=1; §B)."""
    rec = proc.rec
    rec.event("guest", what=word)
    if vmm.state == "Not started":
        return
    if word == "reboot":
        proc.exit(0, "guest reboot (i8042 reset)")
    elif word == "panic":
        time.sleep(1.0)
        proc.exit(0, "guest panic (panic=1 reboot)")
    elif word == "vcpu_error":
        proc.exit(1, "vCPU emulation error")
    # "poweroff": the guest halts, the process stays alive (no ACPI on x86).


def _boot_from_file(vmm, path):
    from .api import Fault
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        sys.stderr.write("Error: Configuration for VMM from one single json failed: %s\n" % e)
        return 1
    steps = [("logger", "PUT", "/logger"), ("metrics", "PUT", "/metrics"),
             ("machine-config", "PUT", "/machine-config"), ("boot-source", "PUT", "/boot-source")]
    try:
        for key, m, p in steps:
            if cfg.get(key) is not None:
                st, body, _ = vmm.handle(m, p, json.dumps(cfg[key]))
                if st >= 400:
                    raise Fault(body["fault_message"])
        for d in cfg.get("drives") or []:
            st, body, _ = vmm.handle("PUT", "/drives/%s" % d.get("drive_id"), json.dumps(d))
            if st >= 400:
                raise Fault(body["fault_message"])
        for n in cfg.get("network-interfaces") or []:
            st, body, _ = vmm.handle("PUT", "/network-interfaces/%s" % n.get("iface_id"),
                                     json.dumps(n))
            if st >= 400:
                raise Fault(body["fault_message"])
        for key, p in (("vsock", "/vsock"), ("mmds-config", "/mmds/config")):
            if cfg.get(key) is not None:
                st, body, _ = vmm.handle("PUT", p, json.dumps(cfg[key]))
                if st >= 400:
                    raise Fault(body["fault_message"])
    except Fault as e:
        sys.stderr.write("Error: Configuration for VMM from one single json failed: %s\n" % e.msg)
        return 1
    st, body, _ = vmm.handle("PUT", "/actions", '{"action_type":"InstanceStart"}')
    if st >= 400:
        sys.stderr.write("Error: Could not Start MicroVM from one single json: %s\n"
                         % body["fault_message"])
        return 1
    return 0


class ParseError(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent_continue = False


def _response(status, body=None, version="HTTP/1.1", deprecated=False, raw=None):
    head = "%s %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n" % (version, status)
    if deprecated:
        head += "Deprecation: true\r\n"
    if raw is None and body is None:
        return (head + "\r\n").encode()
    data = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
    head += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
    return head.encode() + data


class Server:
    def __init__(self, lsock, vmm, rec, payload_limit):
        self.lsock = lsock
        self.vmm = vmm
        self.rec = rec
        self.limit = payload_limit
        self.conns = {}

    def serve(self):
        while True:
            fds = [self.lsock] + [c.sock for c in self.conns.values()]
            r, _, _ = select.select(fds, [], [])
            for s in r:
                if s is self.lsock:
                    try:
                        cs, _ = self.lsock.accept()
                    except OSError:
                        continue
                    if len(self.conns) >= MAX_CONNECTIONS:
                        try:
                            cs.send(SERVER_FULL)
                        except OSError:
                            pass
                        cs.close()
                        continue
                    self.conns[cs.fileno()] = Conn(cs)
                    continue
                c = self.conns.get(s.fileno())
                if c is None:
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(c)
                    continue
                c.buf += data
                self._process(c)

    def _drop(self, c):
        self.conns.pop(c.sock.fileno(), None)
        c.sock.close()

    def _send(self, c, data):
        try:
            c.sock.sendall(data)
        except OSError:
            self._drop(c)
            return False
        return True

    def _process(self, c):
        while c.sock.fileno() >= 0:
            try:
                req = self._parse(c)
            except ParseError as e:
                body = ('{ "error": "%s\nAll previous unanswered requests will be dropped." }'
                        % e).encode()
                # micro-http drops what it buffered, answers, and keeps the connection.
                self.rec.call(None, None, None, 400, {"error": str(e)})
                c.buf = b""
                c.sent_continue = False
                self._send(c, _response(400, raw=body))
                return
            if req is None:
                return
            method, path, version, body = req
            if not self._dispatch(c, method, path, version, body):
                return

    def _parse(self, c):
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.buf) > 65536:
                raise ParseError("Invalid request.")
            return None
        head = c.buf[:end].decode("utf-8", "replace").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) != 3:
            raise ParseError("Invalid request.")
        method, uri, version = parts
        if method not in ("GET", "PUT", "PATCH", "DELETE"):
            raise ParseError("Invalid HTTP Method: Unsupported HTTP method.")
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise ParseError("Invalid HTTP Version: Unsupported HTTP version.")
        if uri.startswith("http://"):
            slash = uri.find("/", 7)
            uri = uri[slash:] if slash >= 0 else "/"
        if not uri.startswith("/"):
            raise ParseError("Invalid URI: Invalid URI format.")
        length = 0
        expect = False
        for line in head[1:]:
            if ":" not in line:
                raise ParseError("Invalid header. Reason: Header is incorrectly formatted. "
                                 "Key: %s" % line)
            k, v = line.split(":", 1)
            k, v = k.strip().lower(), v.strip()
            if k == "content-length":
                if not v.isdigit():
                    raise ParseError("Invalid header. Reason: Invalid value. Key:Content-Length; "
                                     "Value:%s" % v)
                length = int(v)
                if length > self.limit:
                    raise ParseError("Request payload with size %d is larger than the limit of "
                                     "%d allowed by server." % (length, self.limit))
            elif k == "expect" and v.lower() == "100-continue":
                expect = True
            elif k == "transfer-encoding" and v.lower() == "chunked":
                raise ParseError("Invalid header. Reason: Unsupported feature. "
                                 "Key: Transfer-Encoding; Value: chunked")
        have = len(c.buf) - (end + 4)
        if have < length:
            if expect and not c.sent_continue:
                c.sent_continue = True
                self._send(c, b"HTTP/1.1 100 \r\nServer: Firecracker API\r\nConnection: "
                           b"keep-alive\r\n\r\n")
            return None
        body = c.buf[end + 4:end + 4 + length]
        c.buf = c.buf[end + 4 + length:]
        c.sent_continue = False
        return method, uri, version, (body.decode("utf-8", "replace") if length else None)

    def _dispatch(self, c, method, path, version, body):
        try:
            rbody = json.loads(body) if body is not None else None
        except ValueError:
            rbody = body
        log = self.vmm.log
        m = method.capitalize()
        if body is None or path == "/mmds":
            log("INFO", "The API server received a %s request on %s." % (m, json.dumps(path)),
                thread="fc_api")
        else:
            log("INFO", "The API server received a %s request on %s with body %s."
                % (m, json.dumps(path), json.dumps(body)), thread="fc_api")
        try:
            status, obj, depr = self.vmm.handle(method, path, body)
        except Hang:
            self.rec.call(method, path, rbody, None, None)
            self.vmm.log("WARN", "fake: hanging on %s %s (knob hang_on)" % (method, path))
            while True:
                time.sleep(3600)
        except Exception as e:  # a bug of the fake: loud (500 never comes from Firecracker)
            traceback.print_exc()
            status, obj, depr = 500, {"fault_message": "fake-firecracker bug: %r" % e}, False
            self.rec.event("fake_bug", error=traceback.format_exc())
        self.rec.call(method, path, rbody, status, obj, deprecated=depr)
        if status < 300:
            log("INFO", "The request was executed successfully. Status code: %s."
                % {200: "200 OK", 204: "204 No Content"}.get(status, status), thread="fc_api")
        else:
            log("ERROR", "Received Error. Status code: %s. Message: %s"
                % ({400: "400 Bad Request", 413: "413 Payload Too Large"}.get(status, status),
                   obj.get("fault_message") if isinstance(obj, dict) else obj),
                thread="fc_api")
        ok = self._send(c, _response(status, obj, "HTTP/1.1", depr))
        if self.vmm.fatal is not None:
            code, reason = self.vmm.fatal
            self.vmm.on_exit(code, reason)
        return ok
