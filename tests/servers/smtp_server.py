#!/usr/bin/env python3
"""A real SMTP server for rolewatch's integration tests: aiosmtpd's Controller on loopback.

Each message received is saved in the directory given on the command line as NNNN.eml (the
bytes exactly as received) and NNNN.json (what a test checks: the envelope, whether the
session used TLS and who authenticated, every header as received, and each MIME part
decoded). Both files appear atomically (written, then renamed), the JSON last.

`headers` are as a mail client shows them: parsed by Python's `email` package with
`policy.default`, which decodes RFC 2047 encoded words; `raw_headers` are the same headers as
received, only unfolded, so that a test can tell whether anything was decoded.

Options:
  --port N            listen on this port (0: pick a free one)
  --starttls CERT KEY offer STARTTLS with this certificate chain and key, and require it
  --implicit-tls CERT KEY  TLS from the first byte (SMTPS)
  --auth USER PASSWORD require AUTH (PLAIN/LOGIN) with these credentials
  --delay-first-ms N  after saving the first message, wait N ms before the final 250:
                      a window in which a test can kill the client
  --exit-on-stdin-eof stop when stdin closes (the test process died)

Prints `LISTENING <port>` on stdout once it accepts connections, then `SAVED <n>` after
each message is saved.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import re
import socket
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def raw_headers(raw):
    """The top-level headers as received: (name, value) with the folding undone, nothing
    decoded."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0].decode("utf-8", "surrogateescape")
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", head)
    out = []
    for line in re.split(r"\r?\n", unfolded):
        name, _, value = line.partition(":")
        out.append([name, value.lstrip(" \t")])
    return out


def describe(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        try:
            body = part.get_content()
        except Exception as e:  # a test wants to see it, not a traceback
            body = f"<undecodable: {e}>"
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        parts.append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "transfer_encoding": part.get("Content-Transfer-Encoding"),
            "body": body,
        })
    return {
        "headers": [[k, str(v)] for k, v in msg.items()],
        "raw_headers": raw_headers(raw),
        "content_type": msg.get_content_type(),
        "parts": parts,
    }


class Handler:
    def __init__(self, directory, delay_first_ms):
        self.directory = directory
        self.delay_first_ms = delay_first_ms
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        info = describe(raw)
        info.update({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated_as": (
                session.auth_data.login.decode("utf-8", "replace")
                if isinstance(session.auth_data, LoginPassword) else None
            ),
            "received_at": time.time(),
        })
        base = os.path.join(self.directory, f"{n:04d}")
        write_atomically(base + ".eml", raw)
        write_atomically(base + ".json", json.dumps(info, indent=1).encode("utf-8"))
        print(f"SAVED {n}", flush=True)
        if n == 1 and self.delay_first_ms > 0:
            await asyncio.sleep(self.delay_first_ms / 1000)
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("directory")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", nargs=2, metavar=("USER", "PASSWORD"))
    p.add_argument("--delay-first-ms", type=int, default=0)
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    args = p.parse_args()

    os.makedirs(args.directory, exist_ok=True)
    handler = Handler(args.directory, args.delay_first_ms)

    kwargs = {}
    tls_context = None
    if args.starttls or args.implicit_tls:
        cert, key = args.starttls or args.implicit_tls
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(cert, key)
    if args.starttls:
        kwargs["tls_context"] = tls_context
        kwargs["require_starttls"] = True
    if args.auth:
        user, password = (s.encode("utf-8") for s in args.auth)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == user and auth_data.password == password)
            if ok:
                return AuthResult(success=True, auth_data=auth_data)
            # handled=False: aiosmtpd answers 535 itself.
            return AuthResult(success=False, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # AUTH only over TLS. aiosmtpd knows of STARTTLS only: with implicit TLS the whole
        # connection is encrypted, so its check is turned off.
        kwargs["auth_require_tls"] = not args.implicit_tls

    last_error = None
    for _ in range(5):
        port = args.port or free_port()
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            ssl_context=tls_context if args.implicit_tls else None,
            server_hostname="localhost",
            **kwargs,
        )
        try:
            controller.start()
            break
        except Exception as e:  # the port was taken in between: try another
            last_error = e
            if args.port:
                raise
    else:
        raise SystemExit(f"cannot start the SMTP server: {last_error}")

    print(f"LISTENING {port}", flush=True)

    stop = threading.Event()
    if args.exit_on_stdin_eof:
        def watch():
            sys.stdin.buffer.read()
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    controller.stop()


if __name__ == "__main__":
    main()
