# SPDX-License-Identifier: MIT
"""vsock host side (docs/firecracker.md E): the uds_path listener and the guest-agent stand-in.

Guest listeners are simulated by `agent_cmd`: a helper process forked before the jail (the jail
has no shell) receives each accepted connection over SCM_RIGHTS and runs the command with the
connection as stdin/stdout. When the VMM process dies, the helper sees EOF and kills the agents.
"""
import array
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from .sysc import set_comm

HOST_PORT_BASE = 1 << 30


class AgentHelper:
    def __init__(self, sock, pid):
        self.sock = sock
        self.pid = pid

    @classmethod
    def start(cls, cmd, env, agent_env, recorder, escape=None):
        """escape: (fd of the real "/", cwd) when called inside the jail (still as root)."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            a.close()
            try:
                if escape is not None:
                    os.fchdir(escape[0])
                    os.chroot(".")
                    os.chdir(escape[1] if os.path.isdir(escape[1]) else "/")
                    os.close(escape[0])
                set_comm("fc-agent-helper")
                _helper_main(b, cmd, env, agent_env or {}, recorder)
            finally:
                os._exit(0)
        b.close()
        return cls(a, pid)

    def watch(self, on_guest_event):
        """Guest events the agents report (see GUEST_EVENTS), delivered on a thread."""
        def loop():
            while True:
                try:
                    msg = self.sock.recv(256)
                except OSError:
                    return
                if not msg:
                    return
                kind, _, word = msg.decode().partition("\0")
                if kind == "guest":
                    on_guest_event(word)
        threading.Thread(target=loop, daemon=True).start()

    def send(self, conn_fd, port, host_uds, vm_id, boot_id):
        msg = ("%d\0%s\0%s\0%s" % (port, host_uds, vm_id, boot_id or "")).encode()
        self.sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   array.array("i", [conn_fd]))])

    def transport_reset(self):
        """Snapshot taken: every open guest connection is closed (the agents see EOF)."""
        try:
            self.sock.send(b"reset\0")
        except OSError:
            pass


GUEST_EVENTS = ("reboot", "panic", "poweroff", "vcpu_error")


def _proc_table():
    """pid -> (ppid, start time) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            out[int(d)] = (int(rest[1]), rest[19])
        except (OSError, IndexError, ValueError):
            pass
    return out


def _note_descendants(roots, seen):
    """Add every descendant of roots to seen (pid -> start time): what a guest runs dies with
    it, even a process in a session of its own (the agent's app) or one its agent left."""
    table = _proc_table()
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    todo = list(roots)
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in seen:
                seen[k] = table[k][1]
                todo.append(k)


def _kill_seen(seen):
    table = _proc_table()
    for pid, start in seen.items():
        if table.get(pid, (None, None))[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _helper_main(sock, cmd, env, agent_env, recorder):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setsid()
    procs = []
    seen = {}       # descendants of the agents (pid -> start time), killed with the guest
    conns = {}      # agent pid -> its connection (kept to reset the transport)
    ctl = {}        # read end of an agent's guest-control pipe -> leftover bytes
    while True:
        r, _, _ = select.select([sock] + list(ctl), [], [], 0.5)
        _note_descendants([p.pid for p in procs], seen)
        for p in procs[:]:
            if p.poll() is not None:
                procs.remove(p)
                c = conns.pop(p.pid, None)
                if c is not None:
                    c.close()
        for fd in [x for x in r if x is not sock]:
            data = os.read(fd, 256)
            if not data:
                os.close(fd)
                del ctl[fd]
                continue
            buf = ctl[fd] + data
            *lines, ctl[fd] = buf.split(b"\n")
            for line in lines:
                word = line.decode("ascii", "replace").strip()
                if word in GUEST_EVENTS:
                    try:
                        sock.send(("guest\0" + word).encode())
                    except OSError:
                        pass
        if sock not in r:
            continue
        fds = array.array("i")
        try:
            msg, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        except OSError:
            msg = b""
        if not msg:
            break
        if msg == b"reset\0":
            for c in conns.values():
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            recorder.event("vsock_transport_reset", connections=len(conns))
            continue
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
        if not fds:
            continue
        port, host_uds, vm_id, boot_id = msg.decode().split("\0")
        e = dict(env)
        e.update({k: str(v) for k, v in agent_env.items()})
        e.update({"FAKE_FC_VM_ID": vm_id, "FAKE_FC_VSOCK_PORT": port,
                  "FAKE_FC_VSOCK_UDS": host_uds, "FAKE_FC_GUEST_CTL_FD": "3",
                  "FAKE_FC_GUEST_BOOT_ID": boot_id})
        e.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        try:
            # fd 3 of the agent: write "reboot", "panic", "poweroff" or "vcpu_error" lines to
            # act as the guest kernel would (docs/firecracker.md B).
            p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=fds[0], stdout=fds[0],
                                 env=e, close_fds=True, pass_fds=(3,), start_new_session=True,
                                 preexec_fn=lambda: os.dup2(wfd, 3))
            procs.append(p)
            conns[p.pid] = socket.socket(fileno=os.dup(fds[0]))
            ctl[rfd] = b""
            recorder.event("agent_spawned", port=int(port), pid=p.pid)
        except OSError as ex:
            os.close(rfd)
            sys.stderr.write("fake-firecracker: agent_cmd failed: %s\n" % ex)
        os.close(wfd)
        for fd in fds:
            os.close(fd)
    _note_descendants([p.pid for p in procs], seen)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    _kill_seen(seen)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


class VsockBackend:
    """Bound and listening at PUT /vsock time; connections are served by a thread."""

    def __init__(self, uds_path, vmm, helper, host_uds, knobs, recorder):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(uds_path)
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(128)
        self.vmm = vmm
        self.helper = helper
        self.host_uds = host_uds
        self.knobs = knobs
        self.rec = recorder
        self.next_port = HOST_PORT_BASE
        self.closed = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def transport_reset(self):
        if self.helper is not None:
            self.helper.transport_reset()

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.sock.close()

    def _loop(self):
        while not self.closed:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_cmd(self, conn):
        conn.settimeout(2.0)
        buf = b""
        while len(buf) < 32:
            try:
                c = conn.recv(1)
            except OSError:
                return None
            if not c:
                return None
            buf += c
            if c == b"\n":
                return buf
        return None

    def _serve(self, conn):
        line = self._read_cmd(conn)
        port = None
        if line is not None:
            words = line.decode("ascii", "replace").strip("\n").split(" ")
            if len(words) == 2 and words[0].upper() == "CONNECT" and words[1].isdigit() and \
                    int(words[1]) < 2**32:
                port = int(words[1])
        ports = self.knobs.get("agent_ports")
        # A paused guest answers the request once it runs again (the muxer queues it).
        while self.vmm.state == "Paused" and not self.closed:
            time.sleep(0.02)
        listening = (self.helper is not None and self.vmm.state == "Running" and
                     port is not None and (ports is None or port in ports))
        self.rec.event("vsock_connect", port=port, accepted=bool(listening))
        if not listening:
            conn.close()
            return
        with self.vmm.lock:
            hp = self.next_port
            self.next_port += 1
        try:
            conn.settimeout(None)
            conn.sendall(("OK %d\n" % hp).encode())
            self.helper.send(conn.fileno(), port, self.host_uds, self.vmm.id, self.vmm.boot_id)
        except OSError:
            pass
        conn.close()
