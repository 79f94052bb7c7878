# SPDX-License-Identifier: MIT
"""A throwaway PostgreSQL 15 cluster on a private Unix socket (as user postgres when root), and a
TCP proxy in front of it that can go silent: while silent it accepts connections but forwards
nothing either way and closes nothing, like a frozen primary or a black-holed link."""
import os
import pwd
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading

PG_BIN = "/usr/lib/postgresql/15/bin"


def available():
    """None, or why a PostgreSQL cluster cannot be made here."""
    if not os.access(os.path.join(PG_BIN, "initdb"), os.X_OK):
        return f"{PG_BIN}/initdb missing (postgresql-15 not installed)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no user 'postgres'"
    return None


class Postgres:
    PORT = 5432  # only names the socket file: the server listens on no TCP port

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mvmfs-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.uid = self.gid = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, self.uid, self.gid)
        self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-A", "trust", "-U",
                   "postgres", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l",
                   os.path.join(self.dir, "server.log"), "-w", "-o",
                   f"-k {self.dir} -p {self.PORT} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off", "start"])
        self.socket = os.path.join(self.dir, f".s.PGSQL.{self.PORT}")

    def _demote(self):
        if self.uid is not None:
            os.setgid(self.gid)
            os.setuid(self.uid)

    def _run(self, argv):
        with open(os.path.join(self.dir, "cmd.log"), "ab") as log:
            subprocess.run(argv, stdout=log, stderr=log, check=True, preexec_fn=self._demote)

    def sql(self, statement, db="postgres"):
        """Run SQL with psql; returns its unaligned, tuples-only output."""
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-h", self.dir, "-p", str(self.PORT), "-U",
                            "postgres", "-d", db, "-c", statement],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise AssertionError(f"psql {statement!r}: {r.stderr}")
        return r.stdout.strip()

    def destroy(self):
        try:
            self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "immediate",
                       "-w", "stop"])
        except (subprocess.CalledProcessError, OSError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class SilentProxy:
    """127.0.0.1:port -> the server's Unix socket, in a thread; silent(True) stops forwarding."""

    def __init__(self, unix_path):
        self.unix_path = unix_path
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self._silent = threading.Event()
        self._quit = threading.Event()
        self.pairs = {}  # socket -> its peer
        self.accepted = 0
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def silent(self, on):
        if on:
            self._silent.set()
        else:
            self._silent.clear()

    def _close(self, s):
        peer = self.pairs.pop(s, None)
        self.pairs.pop(peer, None)
        for x in (s, peer):
            if x is not None:
                x.close()

    def _main(self):
        while not self._quit.is_set():
            sel = selectors.DefaultSelector()
            sel.register(self.lsock, selectors.EVENT_READ)
            if not self._silent.is_set():
                for s in self.pairs:
                    sel.register(s, selectors.EVENT_READ)
            events = sel.select(0.02)
            sel.close()
            for key, _ in events:
                s = key.fileobj
                if s is self.lsock:
                    c, _ = self.lsock.accept()
                    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        u.connect(self.unix_path)
                    except OSError:
                        c.close()
                        u.close()
                        continue
                    self.pairs[c] = u
                    self.pairs[u] = c
                    self.accepted += 1
                    continue
                if s not in self.pairs:
                    continue
                try:
                    data = s.recv(65536)
                    if data:
                        self.pairs[s].sendall(data)
                        continue
                except OSError:
                    pass
                self._close(s)

    def stop(self):
        self._quit.set()
        self.thread.join()
        for s in list(self.pairs):
            if s in self.pairs:
                self._close(s)
        self.lsock.close()
