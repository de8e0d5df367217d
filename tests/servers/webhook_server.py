#!/usr/bin/env python3
"""A real HTTP(S) receiver for rolewatch's webhook and PagerDuty tests (stdlib only).

Each request is saved in the directory given on the command line as NNNN.json: the method,
the path, every header as received, the body (text) and the time it arrived (epoch ms),
written atomically. Requests are answered from a script of faults, one per request, then
with the default answer.

Options:
  --port N             listen on this port (0: pick a free one)
  --tls CERT KEY       serve HTTPS with this certificate chain and key
  --faults JSON        a list, one entry per request in order, each an object with
                       `status` (default 200), `retry_after` (a Retry-After header value),
                       `delay_ms` (wait before answering), `body` (the reply body)
  --status N           the default answer's status (default 200; 202 for PagerDuty)
  --body TEXT          the default answer's body (default {"ok":true})
  --exit-on-stdin-eof  stop when stdin closes (the test process died)

Prints `LISTENING <port>` once it accepts connections.
"""

import argparse
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--faults", default="[]")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--body", default='{"ok":true}')
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args()
    faults = json.loads(args.faults)
    lock = threading.Lock()
    state = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("webhook_server: " + (fmt % a) + "\n")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                state["n"] += 1
                n = state["n"]
                fault = faults[n - 1] if n - 1 < len(faults) else {}
            record = {
                "n": n,
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("utf-8", "surrogateescape"),
                "time_ms": int(time.time() * 1000),
                "fault": fault,
            }
            path = os.path.join(args.dir, "%04d.json" % n)
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.replace(path + ".tmp", path)
            if fault.get("delay_ms"):
                time.sleep(fault["delay_ms"] / 1000)
            status = fault.get("status", args.status)
            reply = fault.get("body", args.body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                if "retry_after" in fault:
                    self.send_header("Retry-After", str(fault["retry_after"]))
                self.end_headers()
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("LISTENING %d" % server.server_address[1], flush=True)
    if args.exit_on_stdin_eof:
        sys.stdin.read()
    else:
        threading.Event().wait()


if __name__ == "__main__":
    main()
