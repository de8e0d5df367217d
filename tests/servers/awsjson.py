"""What the test servers share: the awsJson1.1 error shape, the HTTP plumbing of a handler and
the command line (`--port`, `--verbose`, `--exit-on-stdin-eof`, `LISTENING <port>` on stdout).

Imported by lookup_events.py and test_metric_filter.py, which sit beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JSON_11 = "application/x-amz-json-1.1"


class ApiError(Exception):
    """An error reply in the awsJson1.1 shape."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class JsonHandler(BaseHTTPRequestHandler):
    """Request bodies (plain or chunked) in, JSON replies and awsJson1.1 errors out."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        if self.server.verbose:
            super().log_message(format, *args)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, body: dict, content_type: str = "application/json", extra=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_api_error(self, err: ApiError):
        self.send(
            err.status,
            {"__type": err.code, "message": err.message},
            JSON_11,
            {"x-amzn-ErrorType": err.code},
        )


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    verbose = False


def serve(handler: type[JsonHandler], description: str) -> None:
    """Parses the command line, listens on 127.0.0.1, says `LISTENING <port>` and serves until
    SIGTERM/SIGINT (or, with `--exit-on-stdin-eof`, until stdin closes)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (the parent died or dropped its handle)",
    )
    args = parser.parse_args()

    server = Server(("127.0.0.1", args.port), handler)
    server.verbose = args.verbose

    def stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.exit_on_stdin_eof:

        def watch_stdin():
            # os.read, not sys.stdin: a daemon thread blocked in a buffered read aborts
            # the interpreter at shutdown.
            while os.read(0, 4096):
                pass
            os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
