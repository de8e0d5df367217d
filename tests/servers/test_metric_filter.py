#!/usr/bin/env python3
"""A CloudWatch Logs TestMetricFilter stand-in for rolewatch's tests (Python 3.11, stdlib only).

moto 5.2.5 has no TestMetricFilter, and `rolewatch test-pattern --compare-aws` must be tested
against a service that can be made to disagree on purpose. This server speaks CloudWatch
Logs' awsJson1.1 protocol on loopback:

    POST /   Content-Type: application/x-amz-json-1.1
             X-Amz-Target: Logs_20140328.TestMetricFilter   (any prefix; matched on suffix)
    {"filterPattern": "ERROR", "logEventMessages": ["ERROR one", "fine"]}

    200 {"matches": [{"eventNumber": 1, "eventMessage": "ERROR one", "extractedValues": {}}]}

It checks a request as the service's model does: `filterPattern` a string of at most 1024
characters, `logEventMessages` a list of 1 to 50 strings, none of them empty; a request that
breaks one of these is HTTP 400 `ValidationException`. A request without an AWS4 signature is
HTTP 400 `MissingAuthenticationTokenException`.

It evaluates only a tiny subset of the language itself, so that a test of agreement has
something real to agree with: the empty or all-blank pattern (matches every message) and a
list of plain terms, unquoted (letters of any script, ASCII digits, `_`, `.`: what CloudWatch
Logs allows, docs/filter-pattern-semantics.md §2) or double-quoted (non-empty, no escapes), all
of which must occur in the message, case-sensitively; `extractedValues` is then `{}`. Any other
pattern (`-`/`?` terms, `x-y`, which the service reads as `x -y`, JSON, fields, a regex) is
HTTP 501 `NotImplementedByTestServer`: a test that needs one scripts the answer.

Tests script it through a control API on the same port:

    POST /_control/answers   {"answers": [{"reply": {...}} | {"error": {"status": 400,
                              "code": "ThrottlingException", "message": "Rate exceeded"}}]}
                             queued, one consumed by each valid API request, before the
                             settings below; `reply` is sent as the body verbatim
    POST /_control/settings  {"flip": ["<message>", ...],
                              "values": {"<message>": {"$field": "value"}},
                              "echo": {"<message>": "<eventMessage to answer instead>"},
                              "reject": {"<pattern>": "<InvalidParameterException message>"}}
                             lasting disagreements: `flip` inverts whether a message matches,
                             `values` sets the extractedValues of a matching message, `echo`
                             changes the eventMessage answered, `reject` answers HTTP 400
                             InvalidParameterException for that pattern; fields not given
                             keep their value
    GET  /_control/stats     {"calls": [{"target", "filterPattern", "messages", "status",
                              "code", "access_key", "content_type"}], "answers_left": N}
    POST /_control/reset     forgets answers, settings and statistics

Started as `python3 test_metric_filter.py --port 0`, it prints `LISTENING <port>` once it
accepts connections. It binds 127.0.0.1 only and exits on SIGTERM, SIGINT, or (with
`--exit-on-stdin-eof`) when its parent closes stdin, so a crashed test leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import threading
from awsjson import JSON_11, ApiError, JsonHandler, serve

MAX_MESSAGES = 50
MAX_PATTERN = 1024
UNQUOTED_TERM = re.compile(r"(?:[^\W\d_]|[0-9_.])+")
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


class State:
    """Scripted answers, lasting settings and the calls seen, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.answers = []
        self.settings = {"flip": [], "values": {}, "echo": {}, "reject": {}}
        self.calls = []

    def set_settings(self, body: dict) -> dict:
        with self.lock:
            for key in ("flip", "values", "echo", "reject"):
                if key in body:
                    expected = list if key == "flip" else dict
                    if not isinstance(body[key], expected):
                        raise ValueError(f"{key} must be a {expected.__name__}")
                    self.settings[key] = body[key]
            return dict(self.settings)

    def add_answers(self, answers: list) -> int:
        for answer in answers:
            if not isinstance(answer, dict) or not ({"reply", "error"} & answer.keys()):
                raise ValueError(f"an answer needs `reply` or `error`: {answer!r}")
        with self.lock:
            self.answers.extend(answers)
            return len(self.answers)

    def next_answer(self):
        with self.lock:
            return self.answers.pop(0) if self.answers else None

    def record(self, call: dict):
        with self.lock:
            self.calls.append(call)

    def stats(self) -> dict:
        with self.lock:
            return {"calls": list(self.calls), "answers_left": len(self.answers)}


STATE = State()


def terms(pattern: str) -> list[str]:
    """The plain terms of `pattern`, or NotImplementedByTestServer for anything else."""
    found = []
    rest = pattern.strip()
    while rest:
        if rest.startswith('"'):
            end = rest.find('"', 1)
            if end <= 1 or "\\" in rest[:end]:
                raise not_implemented(pattern)
            found.append(rest[1:end])
            rest = rest[end + 1 :]
            if rest and not rest[0].isspace():
                raise not_implemented(pattern)
        else:
            word = rest.split(None, 1)[0]
            if not UNQUOTED_TERM.fullmatch(word):
                raise not_implemented(pattern)
            found.append(word)
            rest = rest[len(word) :]
        rest = rest.lstrip()
    return found


def not_implemented(pattern: str) -> ApiError:
    return ApiError(
        501,
        "NotImplementedByTestServer",
        f"the test server evaluates only plain terms; script an answer for {pattern!r}",
    )


def validate(body) -> tuple[str, list[str]]:
    """The request's pattern and messages, checked as the service's model checks them."""
    if not isinstance(body, dict):
        raise ApiError(400, "SerializationException", "the request body is not a JSON object")
    pattern = body.get("filterPattern")
    messages = body.get("logEventMessages")
    if not isinstance(pattern, str):
        raise ApiError(400, "ValidationException", "filterPattern is required")
    if len(pattern) > MAX_PATTERN:
        raise ApiError(
            400,
            "ValidationException",
            "1 validation error detected: Value at 'filterPattern' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_PATTERN}",
        )
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        count = len(messages) if isinstance(messages, list) else 0
        raise ApiError(
            400,
            "ValidationException",
            f"1 validation error detected: Value at 'logEventMessages' failed to satisfy "
            f"constraint: Member must have length between 1 and {MAX_MESSAGES} (got {count})",
        )
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, str) or not message:
            raise ApiError(
                400,
                "ValidationException",
                f"1 validation error detected: Value at 'logEventMessages.{index}.member' "
                "failed to satisfy constraint: Member must have length greater than or equal "
                "to 1",
            )
    return pattern, messages


def evaluate(pattern: str, messages: list[str], settings: dict) -> dict:
    """The reply for a valid request: the subset's evaluation, with the settings' lies."""
    if pattern in settings["reject"]:
        raise ApiError(400, "InvalidParameterException", settings["reject"][pattern])
    needed = terms(pattern)
    matches = []
    for number, message in enumerate(messages, start=1):
        hit = all(term in message for term in needed)
        if message in settings["flip"]:
            hit = not hit
        if hit:
            matches.append(
                {
                    "eventNumber": number,
                    "eventMessage": settings["echo"].get(message, message),
                    "extractedValues": settings["values"].get(message, {}),
                }
            )
    return {"matches": matches}


class Handler(JsonHandler):
    server_version = "rolewatch-test-metric-filter/1"

    def do_GET(self):
        self.read_body()
        if self.path.split("?")[0] == "/_control/stats":
            self.send(200, STATE.stats())
        else:
            self.send(404, {"message": f"no route GET {self.path}"})

    def do_POST(self):
        path = self.path.split("?")[0]
        body = self.read_body()
        if path.startswith("/_control/"):
            self.control(path, body)
        elif path == "/":
            self.api(body)
        else:
            self.send(404, {"message": f"no route POST {self.path}"})

    def control(self, path: str, body: bytes):
        try:
            parsed = json.loads(body or b"{}")
            if path == "/_control/answers":
                self.send(200, {"answers_left": STATE.add_answers(parsed.get("answers") or [])})
            elif path == "/_control/settings":
                self.send(200, {"settings": STATE.set_settings(parsed)})
            elif path == "/_control/reset":
                with STATE.lock:
                    STATE.reset()
                self.send(200, {"reset": True})
            else:
                self.send(404, {"message": f"no control route {path}"})
        except (ValueError, TypeError, AttributeError) as err:
            self.send(400, {"message": f"bad control request: {err}"})

    def api(self, body: bytes):
        target = self.headers.get("X-Amz-Target") or ""
        signed = CREDENTIAL.search(self.headers.get("Authorization") or "")
        call = {
            "target": target,
            "content_type": self.headers.get("Content-Type"),
            "access_key": signed.group(1) if signed else None,
            "filterPattern": None,
            "messages": None,
        }
        try:
            try:
                parsed = json.loads(body or b"{}")
            except (ValueError, UnicodeDecodeError):
                parsed = None
            if isinstance(parsed, dict):
                call["filterPattern"] = parsed.get("filterPattern")
                messages = parsed.get("logEventMessages")
                call["messages"] = len(messages) if isinstance(messages, list) else None
            if not target.endswith(".TestMetricFilter"):
                raise ApiError(400, "UnknownOperationException", f"Unknown operation {target!r}")
            if signed is None:
                raise ApiError(
                    400,
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token",
                )
            pattern, messages = validate(parsed)
            answer = STATE.next_answer()
            if answer is not None and "error" in answer:
                err = answer["error"]
                raise ApiError(int(err.get("status", 400)), err["code"], err.get("message", ""))
            if answer is not None:
                reply = answer["reply"]
            else:
                with STATE.lock:
                    settings = json.loads(json.dumps(STATE.settings))
                reply = evaluate(pattern, messages, settings)
        except ApiError as err:
            call.update(status=err.status, code=err.code)
            STATE.record(call)
            self.send_api_error(err)
            return
        except Exception as err:  # noqa: BLE001 - a bug here must not hang the client
            call.update(status=500, code="InternalFailure")
            STATE.record(call)
            self.send_api_error(ApiError(500, "InternalFailure", f"server bug: {err!r}"))
            raise
        call.update(status=200, code=None)
        STATE.record(call)
        self.send(200, reply, JSON_11)


def main():
    serve(Handler, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
