#!/usr/bin/env python3
"""Replicas on DynamoDB, measured (issue 15 §4): two `rolewatch run` on one table on moto,
one LookupEvents test server, each replica's DynamoDB traffic through its own counting proxy.

    bench/replicas.py --binary target/release/rolewatch --kills 20 --lease-secs 5

Reports:
  - takeover after SIGKILL of the leader, over --kills kills (kill → the survivor's /readyz
    says "leader"; and kill → its first LookupEvents request);
  - DynamoDB requests per replica while quiet (per minute, and per poll of the leader), by
    operation, with the write/read request units they cost at the stated prices;
  - DynamoDB requests per alert (a burst of --alerts matching events);
  - state commit latency (rolewatch_state_commit_seconds of the leader) for that burst, and
    for the same workload on the SQLite backend.
Needs moto_server (ROLEWATCH_TEST_MOTO or .venv) and Python 3.11.
"""

import argparse
import http.server as httpserver
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# On-demand prices assumed for the cost figures (USD per million request units, us-east-1).
PRICE_WRU = 0.625
PRICE_RRU = 0.125


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, body=None, timeout=30):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


class Counter:
    """What one replica sent to DynamoDB: per operation, requests, request units, latency."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.ops = {}

    def add(self, op, wru, rru, ms):
        with self.lock:
            o = self.ops.setdefault(op, {"n": 0, "wru": 0.0, "rru": 0.0, "ms": []})
            o["n"] += 1
            o["wru"] += wru
            o["rru"] += rru
            o["ms"].append(ms)

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.ops))


def units(op, body):
    """Request units of one request, items assumed ≤ 1 KB (writes) and ≤ 4 KB (reads):
    a transaction costs 2 per item; a strongly consistent read 1, an eventual one 0.5."""
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        req = {}
    consistent = 1.0 if req.get("ConsistentRead") else 0.5
    if op == "TransactWriteItems":
        items = req.get("TransactItems", [])
        return 2.0 * len(items), 0.0
    if op in ("PutItem", "UpdateItem", "DeleteItem"):
        return 1.0, 0.0
    if op == "BatchWriteItem":
        return float(sum(len(v) for v in req.get("RequestItems", {}).values())), 0.0
    if op == "GetItem":
        return 0.0, consistent
    if op == "BatchGetItem":
        n = sum(len(v.get("Keys", [])) for v in req.get("RequestItems", {}).values())
        return 0.0, 0.5 * n
    if op == "Query":
        return 0.0, consistent  # one 4 KB page or less: the state's queries are small
    return 0.0, 0.0


def proxy(upstream, counter):
    """A forwarding proxy to moto that counts DynamoDB requests (by X-Amz-Target)."""

    class Handler(httpserver.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            target = self.headers.get("X-Amz-Target", "")
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "content-length", "connection")}
            req = urllib.request.Request(upstream + self.path, data=body, headers=headers,
                                         method="POST")
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    status, data, rh = r.status, r.read(), r.headers
            except urllib.error.HTTPError as e:
                status, data, rh = e.code, e.read(), e.headers
            ms = (time.perf_counter() - t0) * 1000
            if target.startswith("DynamoDB_"):
                op = target.split(".", 1)[1]
                wru, rru = units(op, body)
                counter.add(op, wru, rru, ms)
            self.send_response(status)
            for k, v in rh.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                     "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST

    server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def record(event_id, t):
    return {
        "eventVersion": "1.08",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
        "eventSource": "iam.amazonaws.com", "eventName": "AttachRolePolicy",
        "awsRegion": "us-east-1", "eventID": event_id, "recipientAccountId": "123456789012",
        "userIdentity": {"type": "AssumedRole",
                         "arn": "arn:aws:sts::123456789012:assumed-role/admin/alice"},
        "sourceIPAddress": "198.51.100.7",
        "requestParameters": {"roleName": "astronomer-remote-management",
                              "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
    }


class Replica:
    def __init__(self, args, name, workdir, env, state):
        self.name = name
        self.admin = free_port()
        self.config = os.path.join(workdir, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(state)
            f.write(f'\n[[source]]\ntype = "cloudtrail"\nname = "ct"\n\n'
                    f'[admin]\nlisten = "127.0.0.1:{self.admin}"\n\n'
                    f'[daemon]\nshutdown_grace_secs = 3\n')
        self.args, self.env, self.workdir = args, env, workdir
        self.proc = None
        self.out = None

    def start(self):
        self.out = open(os.path.join(self.workdir, f"{self.name}.stdout"), "a")
        err = open(os.path.join(self.workdir, f"{self.name}.stderr"), "a")
        self.proc = subprocess.Popen([self.args.binary, "run", "--config", self.config],
                                     env=self.env, stdout=self.out, stderr=err,
                                     stdin=subprocess.DEVNULL)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def standing(self):
        """`replica` of /readyz (its body says it also while not ready: 503)."""
        url = f"http://127.0.0.1:{self.admin}/readyz"
        try:
            body = http(url, timeout=2)
        except urllib.error.HTTPError as e:
            body = e.read()
        except OSError:
            return None
        try:
            return json.loads(body)["replica"]
        except (ValueError, KeyError):
            return None

    def metrics(self):
        try:
            return http(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).decode()
        except OSError:
            return ""

    def lease_taken(self):
        """Unix times of this replica's lease_taken log lines."""
        out = []
        with open(os.path.join(self.workdir, f"{self.name}.stderr")) as f:
            for line in f:
                if '"lease_taken"' in line:
                    ts = json.loads(line)["timestamp"]
                    out.append(_unix(ts))
        return out

    def delivered(self):
        with open(os.path.join(self.workdir, f"{self.name}.stdout")) as f:
            return [json.loads(l) for l in f if l.startswith("{")]


def wait(cond, timeout, what, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise SystemExit(f"timed out: {what}")


def histogram(text, name):
    """(count, sum, [(le, cumulative)]) summed over the label sets of `name`."""
    buckets, count, total = {}, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
    order = sorted(buckets.items(), key=lambda kv: float("inf") if kv[0] == "+Inf" else float(kv[0]))
    return count, total, order


def quantile(order, count, q):
    for le, c in order:
        if c >= q * count:
            return le
    return "+Inf"


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def burst(lookup_url, prefix, n):
    t = time.time() - 30
    events = [{"record": record(f"{prefix}-{i:04d}", t)} for i in range(n)]
    http(lookup_url + "/_control/events", json.dumps({"events": events}).encode())
    return {f"{prefix}-{i:04d}" for i in range(n)}


def lookup_requests(lookup_url):
    return json.loads(http(lookup_url + "/_control/stats"))["requests_total"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/rolewatch"))
    ap.add_argument("--moto", default=os.environ.get("ROLEWATCH_TEST_MOTO")
                    or os.path.join(ROOT, ".venv/bin/moto_server"))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--lease-secs", type=int, default=5)
    ap.add_argument("--quiet-secs", type=int, default=180)
    ap.add_argument("--alerts", type=int, default=100)
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="rolewatch-replicas-")
    moto_port = free_port()
    moto = subprocess.Popen([args.moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lookup = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/servers/lookup_events.py"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lookup_url = "http://127.0.0.1:%d" % int(lookup.stdout.readline().split()[1])
    moto_url = f"http://127.0.0.1:{moto_port}"
    wait(lambda: _up(moto_url), 30, "moto")
    replicas = []
    try:
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "ROLEWATCH__"))}
        base_env.update({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": moto_url, "AWS_ENDPOINT_URL_CLOUDTRAIL": lookup_url,
            "RUST_LOG": "info",
        })
        state = (f'[state]\nbackend = "dynamodb"\ntable = "rolewatch-bench"\n'
                 f'region = "us-east-1"\nlease_secs = {args.lease_secs}\ncreate_table = true\n')
        counters = {}
        for name in ("a", "b"):
            c = Counter()
            p = proxy(moto_url, c)
            env = dict(base_env, AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{p.server_port}")
            counters[name] = c
            replicas.append(Replica(args, name, workdir, env, state))
        a, b = replicas
        a.start()
        wait(lambda: a.standing() == "leader", 60, "a leads")
        b.start()
        wait(lambda: b.standing() == "follower", 60, "b follows")
        time.sleep(5)

        # -- quiet -----------------------------------------------------------------------
        polls0 = _polls(a.metrics())
        for c in counters.values():
            c.reset()
        t0 = time.monotonic()
        time.sleep(args.quiet_secs)
        quiet = {n: c.snapshot() for n, c in counters.items()}
        minutes = (time.monotonic() - t0) / 60
        polls = _polls(a.metrics()) - polls0
        print(f"## Quiet, {args.quiet_secs} s, lease {args.lease_secs} s; the leader polled "
              f"{polls:.0f} times (the default schedule)")
        for n, ops in quiet.items():
            role = "leader" if n == "a" else "follower"
            total = sum(o["n"] for o in ops.values())
            wru = sum(o["wru"] for o in ops.values())
            rru = sum(o["rru"] for o in ops.values())
            month = 43200 / minutes
            cost = month * (wru * PRICE_WRU + rru * PRICE_RRU) / 1e6
            detail = ", ".join(f"{op} {o['n'] / minutes:.1f}" for op, o in sorted(ops.items()))
            per_poll = f"; {total / polls:.1f} per poll" if role == "leader" and polls else ""
            print(f"- {role}: {total / minutes:.1f} requests/min{per_poll} ({detail}); "
                  f"{wru / minutes:.1f} WRU + {rru / minutes:.1f} RRU per min = "
                  f"${cost:.2f}/month")

        # -- a burst of alerts ---------------------------------------------------------
        for c in counters.values():
            c.reset()
        ids = burst(lookup_url, "burst", args.alerts)
        t0 = time.monotonic()
        wait(lambda: ids <= {d.get("event_id") for r in replicas for d in r.delivered()},
             300, "the burst delivered", step=0.2)
        took = time.monotonic() - t0
        time.sleep(3)
        got = {n: c.snapshot() for n, c in counters.items()}
        print(f"\n## A burst of {args.alerts} matching events: all delivered {took:.1f} s after "
              f"they were added (the next scheduled poll finds them)")
        both_wru = both_rru = 0.0
        for n, ops in got.items():
            role = "leader" if n == "a" else "follower"
            total = sum(o["n"] for o in ops.values())
            wru = sum(o["wru"] for o in ops.values())
            rru = sum(o["rru"] for o in ops.values())
            both_wru += wru
            both_rru += rru
            detail = ", ".join(f"{op} {o['n']}" for op, o in sorted(ops.items()))
            print(f"- {role}: {total} requests ({detail}), {total / args.alerts:.1f} per alert "
                  "(the quiet background included)")
            tw = ops.get("TransactWriteItems", {}).get("ms", [])
            if tw:
                print(f"  TransactWriteItems at moto: p50 {pct(tw, .5):.1f} ms, "
                      f"p99 {pct(tw, .99):.1f} ms")
        per = (both_wru * PRICE_WRU + both_rru * PRICE_RRU) / 1e6 / args.alerts
        print(f"- both: {both_wru / args.alerts:.1f} WRU + {both_rru / args.alerts:.1f} RRU "
              f"per alert = ${per * 1e6:.2f} per million alerts")
        count, total, order = histogram(a.metrics(), "rolewatch_state_commit_seconds")
        print(f"- leader's page commits (rolewatch_state_commit_seconds): {count:.0f}, mean "
              f"{1000 * total / max(count, 1):.1f} ms, p50 ≤ {quantile(order, count, .5)} s, "
              f"p99 ≤ {quantile(order, count, .99)} s")

        # -- takeover ------------------------------------------------------------------
        times, readyz, first_poll = [], [], []
        for k in range(args.kills):
            leader = next(r for r in replicas if r.standing() == "leader")
            other = next(r for r in replicas if r is not leader)
            wait(lambda: other.standing() == "follower", 60, "a follower")
            before = lookup_requests(lookup_url)
            taken_before = other.lease_taken()
            t0 = time.monotonic()
            killed_at = time.time()
            leader.kill()
            wait(lambda: len(other.lease_taken()) > len(taken_before), 10 * args.lease_secs,
                 "takeover")
            times.append(other.lease_taken()[-1] - killed_at)
            polled = said = None
            end = time.monotonic() + 60
            while (polled is None or said is None) and time.monotonic() < end:
                if polled is None and lookup_requests(lookup_url) > before:
                    polled = time.monotonic() - t0
                if said is None and other.standing() == "leader":
                    said = time.monotonic() - t0
                time.sleep(0.01)
            if polled is None or said is None:
                raise SystemExit("the new leader neither polled nor said so")
            first_poll.append(polled)
            readyz.append(said)
            leader.start()
            wait(lambda: leader.standing() == "follower", 60, "the killed one follows")
            # Kill at a random point of the renewal cycle.
            time.sleep((k % 7) * args.lease_secs / 7)
        print(f"\n## Takeover after SIGKILL of the leader, {args.kills} kills, lease "
              f"{args.lease_secs} s (expected: a lease after the last renewal, which was 0 to "
              f"lease/3 before the kill, plus up to lease/3 until the follower's next check: "
              f"{args.lease_secs * 2 / 3:.1f} to {args.lease_secs * 4 / 3:.1f} s)")
        print(f"- kill → the survivor's lease_taken (its log's timestamp): min {min(times):.2f} s, "
              f"p50 {pct(times, .5):.2f} s, p90 {pct(times, .9):.2f} s, "
              f"max {max(times):.2f} s, mean {statistics.mean(times):.2f} s")
        print(f"- kill → its /readyz says replica \"leader\" (polled every 10 ms): min {min(readyz):.2f} s, "
              f"p50 {pct(readyz, .5):.2f} s, max {max(readyz):.2f} s")
        print(f"- kill → its first LookupEvents request: min {min(first_poll):.2f} s, "
              f"p50 {pct(first_poll, .5):.2f} s, max {max(first_poll):.2f} s")
        for r in replicas:
            r.kill()

        # -- the same burst on SQLite --------------------------------------------------
        sq = Replica(args, "sqlite", workdir, base_env,
                     f'[state]\npath = "{os.path.join(workdir, "state.db")}"\n')
        replicas.append(sq)
        sq.start()
        wait(lambda: sq.standing() in ("sole", "leader"), 60, "sqlite up")
        wait(lambda: _polls(sq.metrics()) >= 1, 60, "sqlite polled")
        ids = burst(lookup_url, "sqlite", args.alerts)
        wait(lambda: ids <= {d.get("event_id") for d in sq.delivered()}, 300,
             "the sqlite burst delivered", step=0.2)
        count, total, order = histogram(sq.metrics(), "rolewatch_state_commit_seconds")
        print(f"\n## The same burst on SQLite: page commits {count:.0f}, mean "
              f"{1000 * total / max(count, 1):.2f} ms, p50 ≤ {quantile(order, count, .5)} s, "
              f"p99 ≤ {quantile(order, count, .99)} s")
    finally:
        for r in replicas:
            r.kill()
        moto.kill()
        lookup.kill()


def _unix(ts):
    """RFC 3339 (as the daemon logs it, UTC) to unix seconds."""
    import datetime
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _up(url):
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1)
        return True
    except OSError:
        return False


def _polls(text):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("rolewatch_poll_completed_total"))


if __name__ == "__main__":
    main()
