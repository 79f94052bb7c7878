#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A management API stand-in for the report tests: a real HTTP server (threaded) that accepts
POSTed JSON documents and appends one line per request to --log:
  {"t": <unix time>, "path": ..., "auth": <Authorization header or null>, "status": <answered>,
   "body": <parsed JSON, or null>, "raw": <body text when it is not JSON>}
Behaviour is read from --ctl (a JSON file, re-read on every request, missing = defaults):
  {"status": 200, "delay": 0.0}   answer this status after sleeping delay seconds.
The listening port goes to --port-file once the socket is bound (--port 0: any free port).
With --tls-cert/--tls-key it serves HTTPS."""
import argparse
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def ctl(path):
    try:
        with open(path) as f:
            c = json.load(f)
    except (OSError, ValueError):
        c = {}
    return int(c.get("status", 200)), float(c.get("delay", 0.0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        n = int(self.headers.get("Content-Length") or 0)
        if n > 1 << 20:
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        raw = self.rfile.read(n).decode("utf-8", "replace")
        status, delay = ctl(self.server.ctl)
        if delay:
            time.sleep(delay)
        rec = {"t": time.time(), "path": self.path, "auth": self.headers.get("Authorization"),
               "ctype": self.headers.get("Content-Type"), "status": status}
        try:
            rec["body"] = json.loads(raw)
        except ValueError:
            rec["body"] = None
            rec["raw"] = raw
        with LOCK:
            with open(self.server.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
        body = b"{}" if status < 300 else b'{"error":"test receiver"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.log, srv.ctl = a.log, a.ctl
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
