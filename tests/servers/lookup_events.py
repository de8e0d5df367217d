#!/usr/bin/env python3
"""A CloudTrail LookupEvents server for rolewatch's tests (Python 3.11, stdlib only).

moto has no LookupEvents, so the tests run this instead. It speaks CloudTrail's awsJson1.1
protocol on loopback, the way the real service does as far as a poller can tell:

    POST /   Content-Type: application/x-amz-json-1.1
             X-Amz-Target: CloudTrail_20131101.LookupEvents   (any prefix; matched on suffix)
    {"StartTime": <epoch s>, "EndTime": <epoch s>, "MaxResults": 1..50, "NextToken": "...",
     "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"}]}

It also answers `CloudTrail_20131101.GetTrailStatus` (`{"Name": <trail name or ARN>}`) for the
trails a test declared (see `/_control/trails`); any other trail is `TrailNotFoundException`.

Events come back newest first, StartTime and EndTime are inclusive, at most one lookup
attribute is allowed, and a NextToken is only valid with the parameters that produced it.
Errors are `{"__type": <code>, "message": ...}` with the service's HTTP status; throttling
is HTTP 400 `ThrottlingException`, as CloudTrail sends it.

Tests load events and inject faults through a control API on the same port:

    POST /_control/events   {"events": [{"record": {...}, "visible_after_ms": 0,
                                         "cloudtrail_event_raw": "...", "event_time": 1.7e9}]}
    POST /_control/events.jsonl   one CloudTrail record (or one event spec as above) per line;
                                  the cheap way to load hundreds of thousands of records
    POST /_control/faults   {"throttle_next": N, "error_5xx_next": N, "status_5xx": 503,
                             "delay_ms": N, "delay_next": N, "rate_limit_per_sec": R}
    POST /_control/trails   {"trails": {"<name or ARN>": {"IsLogging": true,
                             "LatestDeliveryError": "...", "LatestDeliveryTime": <epoch s>,
                             "LatestCloudWatchLogsDeliveryError": "...", ...}}}
                            sets what GetTrailStatus answers for a trail (any of its reply
                            fields, as the API spells them); null forgets the trail
    POST /_control/accounts {"moto": "http://127.0.0.1:<port>", "keys": {"<access key id>": "<account>"}}
                            how a request's account is known (see Accounts below)
    GET  /_control/stats   (with `max_in_flight`: the most API requests answered at once)
    POST /_control/reset

Event specs may also override the fields LookupEvents derives from the record: `event_id`,
`event_name`, `event_source`, `username`, `read_only`, `access_key_id`, `resources`
(`[{"ResourceType", "ResourceName"}]`). With `cloudtrail_event_raw` the record may be absent,
which is how the tests send a `CloudTrailEvent` that is not JSON.

Faults: `throttle_next` and `error_5xx_next` answer the next N API requests with that error
(throttling first); `delay_ms` delays every API reply, or only the next `delay_next` ones when
that is given; `rate_limit_per_sec` throttles any request beyond R in a sliding one-second
window, like the real account-wide limit (0 turns it off). Fields not given keep their value.

Accounts: LookupEvents answers for the account of the request's credentials, as CloudTrail
does. The account is that of the access key in the request's SigV4 `Authorization` header:
from `keys` if listed there, else (with `moto` set) what moto's STS `GetCallerIdentity`
answers for that key and its `X-Amz-Security-Token` — moto knows the account of every key it
handed out by AssumeRole (and 123456789012 for any static key); moto checks no signature, so
the key id and token suffice. Answers are cached per key. An event spec with `"account":
"<12 digits>"` is visible to that account only; one without is visible to every account. The
fault `throttle_accounts: ["<account>", ...]` throttles every request of those accounts
(other accounts are unaffected), and `rate_limit_per_account_per_sec: R` applies the
sliding-window limit to each account separately, like CloudTrail's per-account quota. Stats
count requests per account (`by_account`; `"(unknown)"` when the account is not known).

Started as `python3 lookup_events.py --port 0`, it prints `LISTENING <port>` once it accepts
connections. It binds 127.0.0.1 only and exits on SIGTERM, SIGINT, or (with
`--exit-on-stdin-eof`) when its parent closes stdin, so a crashed test leaves nothing behind.
"""

from __future__ import annotations

import base64
import bisect
import collections
import datetime
import hashlib
import json
import threading
import re
import time
import urllib.error
import urllib.request
import uuid
from awsjson import JSON_11, ApiError, JsonHandler, serve

MAX_PAGE = 50
RETENTION_SECS = 90 * 24 * 3600
ATTRIBUTE_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)
RECENT_REQUESTS = 1000
# Below this many events a batch is inserted one by one; above it, appended and re-sorted.
INSORT_LIMIT = 64

# requestParameters keys from which CloudTrail's Event history derives a resource. "name" is
# a resource only in CloudTrail's own calls, where it names the trail.
RESOURCE_PARAMETERS = {
    "roleName": "AWS::IAM::Role",
    "policyArn": "AWS::IAM::Policy",
    "userName": "AWS::IAM::User",
    "groupName": "AWS::IAM::Group",
    "instanceProfileName": "AWS::IAM::InstanceProfile",
    "bucketName": "AWS::S3::Bucket",
    "trailName": "AWS::CloudTrail::Trail",
    "name": "AWS::CloudTrail::Trail",
}
DECODER = json.JSONDecoder()


class Event:
    """One stored event: what LookupEvents returns for it, plus when it becomes visible."""

    __slots__ = (
        "key",
        "time",
        "visible_at",
        "event_id",
        "event_name",
        "event_source",
        "username",
        "read_only",
        "access_key_id",
        "resources",
        "cloudtrail_event",
        "canonical",  # False: cloudtrail_event is a JSON line to re-serialise when sent
        "account",  # None: visible to every account
    )

    def attribute(self, key: str) -> tuple:
        """The values this event has for a lookup attribute (several for resources)."""
        if key == "EventId":
            return (self.event_id,)
        if key == "EventName":
            return (self.event_name,)
        if key == "ReadOnly":
            return (self.read_only,)
        if key == "Username":
            return (self.username,)
        if key == "EventSource":
            return (self.event_source,)
        if key == "AccessKeyId":
            return (self.access_key_id,)
        if key == "ResourceType":
            return tuple(r["ResourceType"] for r in self.resources)
        if key == "ResourceName":
            return tuple(r["ResourceName"] for r in self.resources)
        return ()

    def to_api(self) -> dict:
        out = {"EventId": self.event_id}
        if self.event_name is not None:
            out["EventName"] = self.event_name
        if self.read_only is not None:
            out["ReadOnly"] = self.read_only
        if self.access_key_id is not None:
            out["AccessKeyId"] = self.access_key_id
        out["EventTime"] = self.time
        if self.event_source is not None:
            out["EventSource"] = self.event_source
        if self.username is not None:
            out["Username"] = self.username
        out["Resources"] = self.resources
        if not self.canonical:
            # Bulk-loaded lines are kept as given and made compact only when sent, which
            # keeps a 200k-event load to one JSON parse per line.
            self.cloudtrail_event = json.dumps(
                json.loads(self.cloudtrail_event), separators=(",", ":")
            )
            self.canonical = True
        out["CloudTrailEvent"] = self.cloudtrail_event
        return out


def parse_event_time(value) -> float:
    """CloudTrail's ISO-8601 `eventTime` (or epoch seconds) as epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.datetime.fromisoformat(value)  # 3.11 reads a trailing Z
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed.timestamp()
    raise ValueError(f"eventTime {value!r} is neither ISO-8601 nor epoch seconds")


def derive_username(identity) -> str | None:
    if not isinstance(identity, dict):
        return None
    if isinstance(identity.get("userName"), str):
        return identity["userName"]
    kind = identity.get("type")
    arn = identity.get("arn")
    if kind == "AssumedRole" and isinstance(arn, str) and "/" in arn:
        return arn.rsplit("/", 1)[1]  # the role session name
    if kind == "Root":
        return "root"
    if isinstance(identity.get("invokedBy"), str):
        return identity["invokedBy"]
    return None


def derive_resources(record: dict) -> list:
    found = []
    params = record.get("requestParameters")
    if isinstance(params, dict):
        for name, value in params.items():
            kind = RESOURCE_PARAMETERS.get(name)
            if kind is None or not isinstance(value, str):
                continue
            if name == "name" and record.get("eventSource") != "cloudtrail.amazonaws.com":
                continue
            found.append({"ResourceType": kind, "ResourceName": value})
    for resource in record.get("resources") or ():
        if isinstance(resource, dict) and isinstance(resource.get("ARN"), str):
            entry = {"ResourceType": resource.get("type") or "", "ResourceName": resource["ARN"]}
            if entry not in found:
                found.append(entry)
    return found


def record_fields(record: dict) -> tuple:
    """What LookupEvents derives from a record: (time, id, name, source, user, ro, key, res)."""
    if "eventTime" not in record:
        raise ValueError(f"record {record.get('eventID')!r} has no eventTime")
    identity = record.get("userIdentity")
    read_only = record.get("readOnly")
    if isinstance(read_only, bool):
        read_only = "true" if read_only else "false"
    return (
        parse_event_time(record["eventTime"]),
        record.get("eventID"),
        record.get("eventName"),
        record.get("eventSource"),
        derive_username(identity),
        read_only,
        identity.get("accessKeyId") if isinstance(identity, dict) else None,
        derive_resources(record),
    )


def new_event(fields: tuple, seq: int, visible_at: float, cloudtrail_event: str, canonical: bool):
    event = Event()
    (
        event.time,
        event.event_id,
        event.event_name,
        event.event_source,
        event.username,
        event.read_only,
        event.access_key_id,
        event.resources,
    ) = fields
    if not isinstance(event.event_id, str):
        event.event_id = str(uuid.uuid4())
    event.key = (event.time, seq)
    event.visible_at = visible_at
    event.cloudtrail_event = cloudtrail_event
    event.canonical = canonical
    event.account = None
    return event


def make_event(spec: dict, seq: int, now: float) -> Event:
    """Builds a stored event from a control-API event spec."""
    record = spec.get("record")
    raw = spec.get("cloudtrail_event_raw")
    if record is None and raw is None:
        raise ValueError("an event needs a 'record' or a 'cloudtrail_event_raw'")
    if record is not None and not isinstance(record, dict):
        raise ValueError("'record' must be a JSON object")
    if raw is not None and not isinstance(raw, str):
        raise ValueError("'cloudtrail_event_raw' must be a string")
    record = record or {}
    if spec.get("event_time") is not None:
        record_for_fields = dict(record, eventTime=spec["event_time"])
    elif "eventTime" in record:
        record_for_fields = record
    else:
        raise ValueError(f"event {record.get('eventID')!r} has no eventTime and no 'event_time'")
    fields = list(record_fields(record_for_fields))
    for at, name in enumerate(
        (None, "event_id", "event_name", "event_source", "username", "read_only",
         "access_key_id", "resources")
    ):
        if name is not None and name in spec:
            fields[at] = spec[name]
    if isinstance(fields[5], bool):
        fields[5] = "true" if fields[5] else "false"
    if raw is None:
        raw = json.dumps(record, separators=(",", ":"))
    visible_at = now + float(spec.get("visible_after_ms") or 0) / 1000.0
    event = new_event(tuple(fields), seq, visible_at, raw, True)
    account = spec.get("account")
    if account is not None and not (isinstance(account, str) and re.fullmatch(r"\d{12}", account)):
        raise ValueError(f"'account' must be 12 digits, not {account!r}")
    event.account = account
    return event


class Store:
    """Events sorted by (eventTime, insertion order), with faults and request statistics."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.events: list[Event] = []
        self.keys: list[tuple] = []
        self.seq = 0
        self.index: dict[tuple, tuple] = {}  # (attr key, value) -> (keys, events)
        self.trails: dict[str, dict] = {}  # name or ARN -> the GetTrailStatus reply
        self.faults = {
            "throttle_next": 0,
            "error_5xx_next": 0,
            "status_5xx": 503,
            "delay_ms": 0,
            "delay_next": None,
            "rate_limit_per_sec": 0,
            "throttle_accounts": [],
            "rate_limit_per_account_per_sec": 0,
        }
        self.moto = None  # moto's URL, to ask the account of an access key
        self.key_accounts: dict[str, str] = {}  # access key id -> account (given or learnt)
        self.by_account: collections.Counter = collections.Counter()
        self.account_windows: dict[str, collections.deque] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests_total = 0
        self.by_operation: collections.Counter = collections.Counter()
        self.throttled = 0
        self.errors_5xx = 0
        self.errors_4xx = 0
        self.recent: collections.deque = collections.deque(maxlen=RECENT_REQUESTS)
        self.window: collections.deque = collections.deque()
        self.max_per_second = 0

    # -- loading ---------------------------------------------------------------------------

    def add(self, specs) -> int:
        """Adds control-API event specs; returns the number of events stored."""
        now = time.monotonic()
        with self.lock:
            built = []
            seq = self.seq
            for spec in specs:
                built.append(make_event(spec, seq, now))
                seq += 1
            self.seq = seq
            return self._insert(built)

    def add_lines(self, body: bytes) -> tuple:
        """Adds JSON lines (records or specs); returns (added, stored).

        One JSON parse per line and no copy of the record: the line itself becomes the
        CloudTrailEvent, made compact only when it is sent. 200k records of 1.4 KB load in
        about 8 s on a busy 2-core machine, most of it `json.loads`.
        """
        now = time.monotonic()
        with self.lock:
            built = []
            seq = self.seq
            for line in body.splitlines():
                if not line.strip():
                    continue
                text = line.decode().strip()
                item, end = DECODER.raw_decode(text)
                if end != len(text) or not isinstance(item, dict):
                    raise ValueError("each line must be one JSON object")
                if "record" in item or "cloudtrail_event_raw" in item:
                    built.append(make_event(item, seq, now))
                else:
                    built.append(new_event(record_fields(item), seq, now, text, False))
                seq += 1
            self.seq = seq
            return len(built), self._insert(built)

    def _insert(self, built: list) -> int:
        if len(built) <= INSORT_LIMIT:
            for event in built:
                at = bisect.bisect_right(self.keys, event.key)
                self.keys.insert(at, event.key)
                self.events.insert(at, event)
        else:
            self.events.extend(built)
            self.events.sort(key=lambda e: e.key)
            self.keys = [e.key for e in self.events]
        self.index.clear()
        return len(self.events)

    # -- faults and statistics -------------------------------------------------------------

    def set_trails(self, body: dict) -> list:
        trails = body.get("trails")
        if not isinstance(trails, dict):
            raise ValueError("'trails' must be an object of trail name or ARN -> status")
        with self.lock:
            for name, status in trails.items():
                if status is None:
                    self.trails.pop(name, None)
                elif isinstance(status, dict):
                    self.trails[name] = dict(status)
                else:
                    raise ValueError(f"the status of trail {name!r} must be an object or null")
            return sorted(self.trails)

    def trail_status(self, name: str):
        """The declared status of a trail named by name or ARN, or None."""
        def short(n: str) -> str:
            return n.split(":trail/", 1)[1] if ":trail/" in n else n

        with self.lock:
            if name in self.trails:
                return dict(self.trails[name])
            for declared, status in self.trails.items():
                if short(declared) == short(name):
                    return dict(status)
            return None

    def set_faults(self, body: dict):
        with self.lock:
            for name in self.faults:
                if name in body:
                    self.faults[name] = body[name]
            return dict(self.faults)

    def set_accounts(self, body: dict) -> dict:
        with self.lock:
            if "moto" in body:
                self.moto = body["moto"]
            for key, account in (body.get("keys") or {}).items():
                self.key_accounts[str(key)] = str(account)
            return {"moto": self.moto, "keys": len(self.key_accounts)}

    def account_of(self, access_key: str | None, token: str | None) -> str | None:
        """The account of an access key: listed, cached, or asked of moto (outside the lock)."""
        if access_key is None:
            return None
        with self.lock:
            known = self.key_accounts.get(access_key)
            moto = self.moto
        if known is not None or moto is None:
            return known
        account = ask_moto_account(moto, access_key, token)
        if account is not None:
            with self.lock:
                self.key_accounts[access_key] = account
        return account

    def admit(self, operation: str, received: float, summary: dict):
        """Counts an API request and decides its fault: (delay seconds, ApiError or None)."""
        with self.lock:
            account = summary.get("account")
            self.by_account[account or "(unknown)"] += 1
            per_account = self.faults["rate_limit_per_account_per_sec"]
            account_window = None
            if per_account and account is not None:
                account_window = self.account_windows.setdefault(account, collections.deque())
                while account_window and account_window[0] <= received - 1.0:
                    account_window.popleft()
                account_window.append(received)
            self.requests_total += 1
            self.by_operation[operation] += 1
            window = self.window
            while window and window[0] <= received - 1.0:
                window.popleft()
            window.append(received)
            self.max_per_second = max(self.max_per_second, len(window))
            self.recent.append(summary)

            faults = self.faults
            delay = 0.0
            if faults["delay_ms"]:
                if faults["delay_next"] is None:
                    delay = faults["delay_ms"] / 1000.0
                elif faults["delay_next"] > 0:
                    faults["delay_next"] -= 1
                    delay = faults["delay_ms"] / 1000.0
            error = None
            limit = faults["rate_limit_per_sec"]
            if account is not None and account in (faults["throttle_accounts"] or []):
                error = ApiError(400, "ThrottlingException", "Rate exceeded")
            elif account_window is not None and len(account_window) > per_account:
                error = ApiError(400, "ThrottlingException", "Rate exceeded")
            elif faults["throttle_next"] > 0:
                faults["throttle_next"] -= 1
                error = ApiError(400, "ThrottlingException", "Rate exceeded")
            elif limit and len(window) > limit:
                error = ApiError(400, "ThrottlingException", "Rate exceeded")
            elif faults["error_5xx_next"] > 0:
                faults["error_5xx_next"] -= 1
                status = int(faults["status_5xx"] or 503)
                code = "ServiceUnavailableException" if status == 503 else "InternalFailure"
                error = ApiError(status, code, "Injected server error")
            return delay, error

    def enter(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def record_outcome(self, summary: dict, status: int, code: str | None):
        with self.lock:
            summary["status"] = status
            if code is not None:
                summary["error"] = code
            if code == "ThrottlingException":
                self.throttled += 1
            if status >= 500:
                self.errors_5xx += 1
            elif status >= 400:
                self.errors_4xx += 1

    def stats(self) -> dict:
        with self.lock:
            now = time.monotonic()
            return {
                "requests_total": self.requests_total,
                "by_operation": dict(self.by_operation),
                "throttled": self.throttled,
                "errors_5xx": self.errors_5xx,
                "errors_4xx": self.errors_4xx,
                "max_requests_in_1s": self.max_per_second,
                "events_total": len(self.events),
                "events_visible": sum(1 for e in self.events if e.visible_at <= now),
                "faults": dict(self.faults),
                "by_account": dict(self.by_account),
                "max_in_flight": self.max_in_flight,
                "recent_requests": list(self.recent),
            }

    # -- querying --------------------------------------------------------------------------

    def _view(self, attribute, account=None):
        """The sorted (keys, events) a query scans: all events, or one attribute's; with an
        account, only the events visible to it."""
        if attribute is None and account is None:
            return self.keys, self.events
        cached = self.index.get((attribute, account))
        if cached is None:
            if account is None:
                key, value = attribute
                events = [e for e in self.events if value in e.attribute(key)]
            else:
                _, base = self._view(attribute)
                events = [e for e in base if e.account is None or e.account == account]
            cached = ([e.key for e in events], events)
            self.index[(attribute, account)] = cached
        return cached

    def lookup(self, start, end, attribute, limit, before, account=None):
        """One page, newest first; returns (events, key of the last one if more follow)."""
        now = time.monotonic()
        with self.lock:
            keys, events = self._view(attribute, account)
            lo = bisect.bisect_left(keys, (start, -1))
            hi = bisect.bisect_right(keys, (end, float("inf")))
            if before is not None:
                hi = min(hi, bisect.bisect_left(keys, before))
            page = []
            i = hi - 1
            while i >= lo and len(page) < limit:
                event = events[i]
                if event.visible_at <= now:
                    page.append(event)
                i -= 1
            more = False
            while i >= lo:
                if events[i].visible_at <= now:
                    more = True
                    break
                i -= 1
            return [e.to_api() for e in page], (page[-1].key if more and page else None)


STORE = Store()


def ask_moto_account(moto: str, access_key: str, token: str | None) -> str | None:
    """moto's STS GetCallerIdentity for `access_key`: the account it belongs to, or None."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/sts/aws4_request, "
            "SignedHeaders=host, Signature=0"
        ),
    }
    if token:
        headers["X-Amz-Security-Token"] = token
    request = urllib.request.Request(
        moto.rstrip("/") + "/",
        data=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    found = re.search(r"<Account>(\d{12})</Account>", text)
    return found.group(1) if found else None


CREDENTIAL = re.compile(r"Credential=([A-Za-z0-9]+)/")


def token_digest(params: dict) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def encode_token(digest: str, key: tuple) -> str:
    payload = json.dumps({"d": digest, "t": key[0], "s": key[1]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


def decode_token(token, digest: str) -> tuple:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        key = (float(payload["t"]), int(payload["s"]))
        token_digest_value = payload["d"]
    except Exception as err:  # noqa: BLE001 - anything unreadable is an invalid token
        raise ApiError(400, "InvalidNextTokenException", "Invalid NextToken") from err
    if token_digest_value != digest:
        raise ApiError(
            400,
            "InvalidNextTokenException",
            "NextToken was issued for different request parameters",
        )
    return key


def epoch_param(body: dict, name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, "SerializationException", f"{name} must be epoch seconds")
    return float(value)


def get_trail_status(body: dict) -> dict:
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "InvalidTrailNameException", "Name is required")
    status = STORE.trail_status(name)
    if status is None:
        raise ApiError(
            400, "TrailNotFoundException", f"Unknown trail: {name} for the user: 123456789012"
        )
    return status


def lookup_events(body: dict, summary: dict, account: str | None = None) -> dict:
    attributes = body.get("LookupAttributes") or []
    if not isinstance(attributes, list):
        raise ApiError(400, "SerializationException", "LookupAttributes must be a list")
    if len(attributes) > 1:
        raise ApiError(
            400,
            "InvalidLookupAttributesException",
            "You cannot have more than one lookup attribute",
        )
    attribute = None
    if attributes:
        item = attributes[0]
        key = item.get("AttributeKey") if isinstance(item, dict) else None
        value = item.get("AttributeValue") if isinstance(item, dict) else None
        if key not in ATTRIBUTE_KEYS:
            raise ApiError(
                400,
                "InvalidLookupAttributesException",
                f"AttributeKey must be one of {', '.join(ATTRIBUTE_KEYS)}",
            )
        if not isinstance(value, str) or not value:
            raise ApiError(
                400, "InvalidLookupAttributesException", "AttributeValue must be a non-empty string"
            )
        attribute = (key, value)

    limit = body.get("MaxResults", MAX_PAGE)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "InvalidMaxResultsException", "MaxResults must be between 1 and 50")

    now = time.time()
    start = epoch_param(body, "StartTime", now - RETENTION_SECS)
    end = epoch_param(body, "EndTime", now)
    if start > end:
        raise ApiError(400, "InvalidTimeRangeException", "StartTime is after EndTime")

    digest = token_digest(
        {
            "StartTime": body.get("StartTime"),
            "EndTime": body.get("EndTime"),
            "LookupAttributes": attributes,
            "MaxResults": body.get("MaxResults"),
        }
    )
    token = body.get("NextToken")
    before = None
    if token is not None:
        if not isinstance(token, str) or not token:
            raise ApiError(400, "InvalidNextTokenException", "Invalid NextToken")
        before = decode_token(token, digest)

    events, last_key = STORE.lookup(start, end, attribute, limit, before, account)
    summary["returned"] = len(events)
    reply = {"Events": events}
    if last_key is not None:
        reply["NextToken"] = encode_token(digest, last_key)
    return reply


class Handler(JsonHandler):
    server_version = "rolewatch-lookup-events/1"

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self):
        if self.path.split("?")[0] == "/_control/stats":
            self.read_body()
            self.send(200, STORE.stats())
        elif self.path.split("?")[0] == "/_control/health":
            self.read_body()
            self.send(200, {"ok": True})
        else:
            self.read_body()
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
            if path == "/_control/events":
                parsed = json.loads(body or b"{}")
                total = STORE.add(parsed.get("events") or [])
                self.send(200, {"added": len(parsed.get("events") or []), "total": total})
            elif path == "/_control/events.jsonl":
                added, total = STORE.add_lines(body)
                self.send(200, {"added": added, "total": total})
            elif path == "/_control/accounts":
                self.send(200, STORE.set_accounts(json.loads(body or b"{}")))
            elif path == "/_control/trails":
                self.send(200, {"trails": STORE.set_trails(json.loads(body or b"{}"))})
            elif path == "/_control/faults":
                self.send(200, {"faults": STORE.set_faults(json.loads(body or b"{}"))})
            elif path == "/_control/reset":
                with STORE.lock:
                    STORE.reset()
                self.send(200, {"reset": True})
            elif path == "/_control/stats":
                self.send(200, STORE.stats())
            else:
                self.send(404, {"message": f"no control route {path}"})
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            self.send(400, {"message": f"bad control request: {err}"})

    def api(self, body: bytes):
        received = time.time()
        target = self.headers.get("X-Amz-Target") or ""
        operation = target.rsplit(".", 1)[-1] if target else "(none)"
        summary = {"time": received, "operation": operation, "target": target}
        parsed = None
        try:
            parsed = json.loads(body or b"{}")
            if not isinstance(parsed, dict):
                raise ValueError("the body is not a JSON object")
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if parsed is not None:
            attributes = parsed.get("LookupAttributes") or []
            summary["attribute"] = attributes[0] if len(attributes) == 1 else attributes or None
            summary["start_time"] = parsed.get("StartTime")
            summary["end_time"] = parsed.get("EndTime")
            summary["max_results"] = parsed.get("MaxResults")
            summary["token"] = parsed.get("NextToken") is not None
        summary["content_type"] = self.headers.get("Content-Type")
        found = CREDENTIAL.search(self.headers.get("Authorization") or "")
        account = STORE.account_of(
            found.group(1) if found else None, self.headers.get("X-Amz-Security-Token")
        )
        summary["account"] = account

        delay, error = STORE.admit(operation, received, summary)
        STORE.enter()
        try:
            self.answer(operation, target, parsed, summary, delay, error)
        finally:
            STORE.leave()

    def answer(self, operation, target, parsed, summary, delay, error):
        account = summary.get("account")
        if delay:
            time.sleep(delay)
        try:
            if error is not None:
                raise error
            if operation not in ("LookupEvents", "GetTrailStatus") or "." not in target:
                raise ApiError(400, "UnknownOperationException", f"Unknown operation {target!r}")
            if parsed is None:
                raise ApiError(400, "SerializationException", "The request body is not JSON")
            if operation == "GetTrailStatus":
                reply = get_trail_status(parsed)
            else:
                reply = lookup_events(parsed, summary, account)
        except ApiError as err:
            STORE.record_outcome(summary, err.status, err.code)
            self.send_api_error(err)
            return
        except Exception as err:  # noqa: BLE001 - a bug here must not hang the client
            STORE.record_outcome(summary, 500, "InternalFailure")
            self.send_api_error(ApiError(500, "InternalFailure", f"server bug: {err!r}"))
            raise
        STORE.record_outcome(summary, 200, None)
        self.send(200, reply, JSON_11)


def main():
    serve(Handler, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
