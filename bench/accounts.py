#!/usr/bin/env python3
"""Many accounts, measured: one rolewatch watching N accounts (default 1,000) on the test
LookupEvents server, each member reached by sts:AssumeRole on moto.

    bench/accounts.py --binary target/release/rolewatch --accounts 1000 --cap 50 --rps 2

Reports the wall time of the first full poll round (every account polled once: one
LookupEvents per event name of the documented pattern; its credentials assumed first), with
`--poll-secs N` also of the second round (credentials cached: the steady cycle, measured
from the tick N seconds after the start to the last account polled again), requests per
account, the time to the
first alert for a change in the last account, peak RSS (VmHWM) and RSS per account against a
1-account run, and CPU time. Needs moto_server (ROLEWATCH_TEST_MOTO) and Python 3.11.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def run(args, n):
    moto_port = free_port()
    moto = subprocess.Popen(
        [args.moto, "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    lookup = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/servers/lookup_events.py"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    port = int(lookup.stdout.readline().split()[1])
    base = f"http://127.0.0.1:{port}"
    moto_url = f"http://127.0.0.1:{moto_port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(moto_url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    http(base + "/_control/accounts", json.dumps({"moto": moto_url}).encode())
    accounts = ["123456789012"] + [f"{200000000000 + i:012d}" for i in range(1, n)]
    last = accounts[-1]
    t = time.time() - 60
    record = {
        "eventVersion": "1.08", "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
        "eventSource": "iam.amazonaws.com", "eventName": "AttachRolePolicy",
        "awsRegion": "us-east-1", "eventID": "bench-last-account", "recipientAccountId": last,
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/admin/alice"},
        "requestParameters": {"roleName": "astronomer-remote-management",
                              "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
    }
    http(base + "/_control/events", json.dumps({"events": [{"record": record, "account": last}]}).encode())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = [f'[state]\npath = "{tmp}/state.db"\n',
               '[[source]]\ntype = "cloudtrail"\nname = "ct"\n'
               f'max_requests_per_sec = {args.rps}\nsweep_interval_secs = 0\n'
               f'poll_interval_secs = {args.poll_secs}\n',
               f'[daemon]\nmax_concurrent_polls = {args.cap}\nshutdown_grace_secs = 5\n',
               '[admin]\nenabled = false\n']
        for a in accounts:
            if a == "123456789012":
                cfg.append(f'[[account]]\nid = "{a}"\n')
            else:
                cfg.append(f'[[account]]\nid = "{a}"\nrole_arn = "arn:aws:iam::{a}:role/rolewatch-member"\n'
                           f'external_id = "bench-{a}"\n')
        path = os.path.join(tmp, "rolewatch.toml")
        with open(path, "w") as f:
            f.write("\n".join(cfg))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ENDPOINT_URL_CLOUDTRAIL=base, AWS_ENDPOINT_URL_STS=moto_url,
                   AWS_ENDPOINT_URL_IAM="http://127.0.0.1:9", RUST_LOG="warn")
        start = time.monotonic()
        daemon = subprocess.Popen([args.binary, "run", "--config", path], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        os.set_blocking(daemon.stdout.fileno(), False)
        first_alert = None
        round_s = None
        second_s = None
        rounds = 2 if args.poll_secs < 3600 else 1
        peak = 0
        buf = ""
        while time.monotonic() - start < args.timeout:
            time.sleep(0.5)
            try:
                chunk = daemon.stdout.read()
            except (TypeError, BlockingIOError):
                chunk = None
            if chunk:
                buf += chunk
            if first_alert is None and "bench-last-account" in buf:
                first_alert = time.monotonic() - start
            st = proc_status(daemon.pid)
            peak = max(peak, int(st["VmHWM"].split()[0]))
            by = http(base + "/_control/stats")["by_account"]
            polled = sum(1 for a in accounts if by.get(a, 0) >= args.names)
            if round_s is None and polled == n:
                round_s = time.monotonic() - start
            again = sum(1 for a in accounts if by.get(a, 0) >= 2 * args.names)
            if rounds == 2 and second_s is None and again == n:
                second_s = time.monotonic() - start - args.poll_secs
            if round_s is not None and first_alert is not None and (rounds == 1 or second_s is not None):
                break
        st = proc_status(daemon.pid)
        stats = http(base + "/_control/stats")
        daemon.terminate()
        daemon.wait(30)
    for p in (lookup, moto):
        p.terminate()
        p.wait(10)
    requests = [stats["by_account"].get(a, 0) for a in accounts]
    return {
        "accounts": n,
        "round_s": round_s,
        "second_round_s": second_s,
        "first_alert_last_account_s": first_alert,
        "requests_per_account": sum(requests) / n,
        "throttled": stats["throttled"],
        "max_in_flight": stats["max_in_flight"],
        "peak_rss_kb": peak,
        "cpu_s": st["cpu_s"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, "target/release/rolewatch"))
    p.add_argument("--moto", default=os.environ.get("ROLEWATCH_TEST_MOTO", "moto_server"))
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--cap", type=int, default=50)
    p.add_argument("--rps", type=float, default=2)
    p.add_argument("--names", type=int, default=4, help="LookupEvents per quiet poll")
    p.add_argument("--poll-secs", type=int, default=3600,
                   help="poll interval; under 3600 the second round is measured too")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    one = run(args, 1)
    many = run(args, args.accounts)
    many["rss_per_account_kb"] = (many["peak_rss_kb"] - one["peak_rss_kb"]) / (args.accounts - 1)
    print(json.dumps({"one": one, "many": many}, indent=2))


if __name__ == "__main__":
    main()
