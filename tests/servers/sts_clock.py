#!/usr/bin/env python3
"""A small STS stand-in whose credentials expire on the caller's clock.

moto's STS dates an assumed role's `Expiration` by the real time; a test that moves
rolewatch's clock (the SDK signs with it) would then see every new credential as expired at
once. Here `Expiration` is `DurationSeconds` (default 3600) after the request's
`X-Amz-Date`, the signer's time, so the SDK's credential cache can be driven through an hour
in a few seconds. Replies carry no `Date` header (the SDK would otherwise correct its signing
time toward the real one).

Query protocol (form-encoded POST, XML replies):

- `AssumeRole`: `RoleArn` arn:aws:iam::<account>:role/<name>; the credentials' access key
  names the account and a serial number (`ASIA<account><serial>`). Counted per account, with
  the ExternalId and session name of each call.
- `GetCallerIdentity`: the account of the request's access key (an issued one), else
  123456789012.

Control: `GET /stats` gives `{"assume_role": {"<account>": n}, "calls": [{"account",
"external_id", "session_name", "signed_at", "expiration"}]}`.

Command line as `awsjson.serve`: `--port`, `--verbose`, `--exit-on-stdin-eof`; prints
`LISTENING <port>`.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import threading
import uuid
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from awsjson import JsonHandler, serve  # noqa: E402

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
OWN = "123456789012"

LOCK = threading.Lock()
ISSUED: dict[str, str] = {}  # access key id -> account
CALLS: list[dict] = []


def signed_at(headers) -> datetime.datetime:
    raw = headers.get("X-Amz-Date", "")
    try:
        return datetime.datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        return datetime.datetime.now(datetime.timezone.utc)


def iso(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(JsonHandler):
    def send_response(self, code, message=None):
        # No `Date` header: the SDK would correct its signing time by the skew it sees
        # against the real time, which is the very clock this server lets the caller move.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                counts: dict[str, int] = {}
                for c in CALLS:
                    counts[c["account"]] = counts.get(c["account"], 0) + 1
                self.send(200, {"assume_role": counts, "calls": list(CALLS)})
            return
        self.send(404, {"message": "not found"})

    def reply_xml(self, status: int, body: str):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code: str, message: str):
        self.reply_xml(
            400,
            f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>x</RequestId></ErrorResponse>",
        )

    def do_POST(self):
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        action = form.get("Action")
        if action == "AssumeRole":
            m = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):role/(.+)", form.get("RoleArn", ""))
            if not m:
                self.error("ValidationError", "RoleArn is not a role ARN")
                return
            account, role = m.group(1), m.group(2)
            session = form.get("RoleSessionName", "")
            at = signed_at(self.headers)
            expiration = at + datetime.timedelta(seconds=int(form.get("DurationSeconds", 3600)))
            with LOCK:
                key = f"ASIA{account}{len(ISSUED):06d}"
                ISSUED[key] = account
                CALLS.append(
                    {
                        "account": account,
                        "external_id": form.get("ExternalId"),
                        "session_name": session,
                        "signed_at": iso(at),
                        "expiration": iso(expiration),
                    }
                )
            self.reply_xml(
                200,
                f'<AssumeRoleResponse xmlns="{NS}"><AssumeRoleResult><Credentials>'
                f"<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>"
                f"<SessionToken>token-{key}</SessionToken>"
                f"<Expiration>{iso(expiration)}</Expiration></Credentials>"
                f"<AssumedRoleUser><AssumedRoleId>AROA{account}:{session}</AssumedRoleId>"
                f"<Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn>"
                f"</AssumedRoleUser></AssumeRoleResult>"
                f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</AssumeRoleResponse>",
            )
            return
        if action == "GetCallerIdentity":
            m = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
            with LOCK:
                account = ISSUED.get(m.group(1), OWN) if m else OWN
            self.reply_xml(
                200,
                f'<GetCallerIdentityResponse xmlns="{NS}"><GetCallerIdentityResult>'
                f"<Arn>arn:aws:sts::{account}:assumed-role/x/y</Arn><UserId>U</UserId>"
                f"<Account>{account}</Account></GetCallerIdentityResult>"
                f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</GetCallerIdentityResponse>",
            )
            return
        self.error("InvalidAction", f"{action} is not served here")


if __name__ == "__main__":
    serve(Handler, __doc__.splitlines()[0])
