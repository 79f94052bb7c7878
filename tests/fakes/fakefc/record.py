# SPDX-License-Identifier: MIT
"""Recording of what the fake was asked: one JSON object per line, appended through an fd
opened before the jail (so the jailed uid needs no access to the file)."""
import json
import os
import threading
import time

_lock = threading.Lock()


def open_append(path, dir_fd=None):
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644,
                   dir_fd=dir_fd)


class Recorder:
    def __init__(self, fd=-1):
        self.fds = [fd] if fd >= 0 else []
        self.seq = 0

    @classmethod
    def open(cls, path, dir_fd=None):
        return cls(open_append(path, dir_fd))

    def also(self, path):
        """Append every record to a second file too (the persistent per-id log)."""
        self.fds.append(open_append(path))

    def write(self, obj):
        if not self.fds:
            return
        with _lock:
            self.seq += 1
            rec = {"seq": self.seq, "t": round(time.time(), 6)}
            rec.update(obj)
            line = json.dumps(rec, separators=(",", ":")) + "\n"
            for fd in self.fds:
                try:
                    os.write(fd, line.encode())
                except OSError:
                    pass

    def call(self, method, path, body, status, response, deprecated=False):
        rec = {"kind": "call", "method": method, "path": path, "body": body,
               "status": status, "response": response}
        if deprecated:
            rec["deprecation"] = True       # answered with a Deprecation header
        self.write(rec)

    def event(self, name, **kw):
        d = {"kind": "event", "event": name}
        d.update(kw)
        self.write(d)
