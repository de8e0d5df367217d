"""Queue-path latency benchmark (issue 13 §5): EventBridge -> SQS -> `rolewatch run` ->
stdout and SNS, all on loopback against moto.

    python bench/queue_latency.py ROLEWATCH_BIN MOTO_SERVER WORKDIR [STEADY_N RATE BURST_N]

Starts moto (EventBridge and SQS; a second for IAM and SNS), makes the rule, queue, DLQ and an SNS topic, runs `rolewatch run` with one `sqs`
source (default settings: 20 s long polls, up to 10 messages) and two channels (stdout, sns),
then:

* idle: the daemon's CPU over 30 s with nothing to read (long polls only);
* steady: STEADY_N events (default 200) put one by one at RATE per second (default 10);
* burst: BURST_N events (default 500) put as fast as PutEvents takes them, 10 per call.

Latency of each event = the channel's accept (the daemon's `alert_delivered` log line, its
own timestamp) minus the moment before PutEvents was called. Prints p50/p90/p99/max per
phase and channel, the daemon's CPU seconds per 1,000 events (utime+stime from /proc, the
idle rate subtracted), and its RSS idle, after the load and at peak (VmRSS, VmHWM; the
footprint target is 15 MB). Writes summary.json in WORKDIR.
"""
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime

import boto3

BIN, MOTO, WORK = sys.argv[1:4]
STEADY_N = int(sys.argv[4]) if len(sys.argv) > 4 else 200
RATE = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
BURST_N = int(sys.argv[6]) if len(sys.argv) > 6 else 500
TICKS = os.sysconf("SC_CLK_TCK")
os.makedirs(WORK, exist_ok=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kb(pid):
    """(VmRSS, VmHWM) in kB."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                got[k] = int(v.split()[0])
    return got.get("VmRSS", 0), got.get("VmHWM", 0)


# The policy each event says was attached (created in moto below, so the analysis reads it).
EXTRA_ARN = "arn:aws:iam::123456789012:policy/BenchExtra"


def record(event_id):
    now = datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "eventVersion": "1.10", "eventTime": now, "eventSource": "iam.amazonaws.com",
        "eventName": "AttachRolePolicy", "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7", "userAgent": "bench",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDABENCH",
                         "arn": "arn:aws:iam::123456789012:user/bench",
                         "accountId": "123456789012", "userName": "bench"},
        "requestParameters": {"roleName": "astronomer-remote-management",
                              "policyArn": EXTRA_ARN},
        "responseElements": None, "requestID": str(uuid.uuid4()), "eventID": event_id,
        "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True,
        "recipientAccountId": "123456789012", "eventCategory": "Management",
    }


def entry(event_id):
    return {"Source": "aws.iam", "DetailType": "AWS API Call via CloudTrail",
            "Detail": json.dumps(record(event_id))}


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def start_moto(name):
    """A moto server on a free loopback port: (process, endpoint)."""
    port = free_port()
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


# EventBridge and SQS on one moto (its rule delivers into its queue); IAM and SNS on a
# second, as they are separate services in AWS: one single-threaded Python process for
# everything would make each service wait for the others' requests.
moto, endpoint = start_moto("moto")
moto2, endpoint2 = start_moto("moto-iam-sns")
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
kw2 = dict(kw, endpoint_url=endpoint2)
sqs = boto3.client("sqs", **kw)
events = boto3.client("events", **kw)
sns = boto3.client("sns", **kw2)
dlq = sqs.create_queue(QueueName="bench-dlq",
                       Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue = sqs.create_queue(QueueName="bench-events", Attributes={
    "VisibilityTimeout": "60",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})})["QueueUrl"]
queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
events.put_rule(Name="bench-iam", State="ENABLED", EventPattern=json.dumps(
    {"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"]}))
events.put_targets(Rule="bench-iam", Targets=[{"Id": "q", "Arn": queue_arn}])
topic = sns.create_topic(Name="bench-alerts")["TopicArn"]
# The vendor's role as the install guide makes it, so that each alert's change analysis reads
# IAM as it does in an account (a baseline, the attached policy's documents).
iam = boto3.client("iam", **kw2)
policy_arn = iam.create_policy(PolicyName="AstronomerCrossAccountRole", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
        "ec2:Describe*", "eks:DescribeCluster", "s3:GetObject"]}]}))["Policy"]["Arn"]
iam.create_role(RoleName="astronomer-remote-management", AssumeRolePolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
     "Principal": {"AWS": "arn:aws:iam::406882777402:root"},
     "Condition": {"StringEquals": {"sts:ExternalId": "bench"}}}]}))
iam.attach_role_policy(RoleName="astronomer-remote-management", PolicyArn=policy_arn)
iam.create_policy(PolicyName="BenchExtra", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                             "Action": ["s3:ListBucket"]}]}))

config = os.path.join(WORK, "rolewatch.toml")
with open(config, "w") as f:
    f.write(f"""[state]
path = "{WORK}/state.db"

[[source]]
type = "sqs"
name = "queue"
queue_url = "{queue}"
dlq_url = "{dlq}"

[[channel]]
type = "stdout"
name = "stdout"

[[channel]]
type = "sns"
name = "sns"
topic_arn = "{topic}"

[admin]
enabled = false

[daemon]
log_format = "json"
shutdown_grace_secs = 10
""")
env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL_IAM=endpoint2,
           AWS_ENDPOINT_URL_SNS=endpoint2, AWS_ACCESS_KEY_ID="testing",
           AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1", RUST_LOG="info",
           AWS_EC2_METADATA_DISABLED="true")
out_path, err_path = os.path.join(WORK, "stdout.jsonl"), os.path.join(WORK, "stderr.jsonl")
daemon = subprocess.Popen([BIN, "run", "--config", config], env=env,
                          stdout=open(out_path, "w"), stderr=open(err_path, "w"))


def delivered():
    """{(channel, event_id): accept time (s)} from the daemon's log."""
    seen = {}
    with open(err_path) as f:
        for line in f:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("event") == "alert_delivered" and v.get("event_id"):
                t = datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")).timestamp()
                seen[(v["channel"], v["event_id"])] = t
    return seen


try:
    deadline = time.time() + 60
    while "Reading the queue" not in open(err_path).read():
        if time.time() > deadline or daemon.poll() is not None:
            sys.exit("rolewatch did not start: " + open(err_path).read()[-2000:])
        time.sleep(0.2)
    time.sleep(2)

    # Idle: long polls only.
    idle_s = 30
    c0, t0 = cpu_seconds(daemon.pid), time.time()
    time.sleep(idle_s)
    idle_rate = (cpu_seconds(daemon.pid) - c0) / (time.time() - t0)
    idle_rss, _ = memory_kb(daemon.pid)

    put = {}
    # When PutEvents returned: moto routes an event into the queue before it returns.
    queued = {}
    phases = {"steady": [], "burst": []}
    c_load, t_load = cpu_seconds(daemon.pid), time.time()
    for n in range(STEADY_N):
        eid = f"steady-{n}-{uuid.uuid4()}"
        start = time.time()
        put[eid] = start
        r = events.put_events(Entries=[entry(eid)])
        assert r["FailedEntryCount"] == 0, r
        phases["steady"].append(eid)
        time.sleep(max(0.0, start + 1 / RATE - time.time()))
    for n in range(0, BURST_N, 10):
        batch = [f"burst-{n + i}-{uuid.uuid4()}" for i in range(min(10, BURST_N - n))]
        now = time.time()
        for eid in batch:
            put[eid] = now
        r = events.put_events(Entries=[entry(e) for e in batch])
        assert r["FailedEntryCount"] == 0, r
        done = time.time()
        for eid in batch:
            queued[eid] = done
        phases["burst"].extend(batch)
    burst_put_s = time.time() - put[phases["burst"][0]] if phases["burst"] else 0.0

    want = {(c, e) for e in put for c in ("stdout", "sns")}
    deadline = time.time() + 180
    while True:
        seen = delivered()
        if want <= set(seen):
            break
        if time.time() > deadline:
            sys.exit(f"only {len(want & set(seen))} of {len(want)} deliveries after 180 s")
        time.sleep(0.5)
    load_wall = max(seen[k] for k in want) - t_load
    load_cpu = cpu_seconds(daemon.pid) - c_load - idle_rate * load_wall
    total = len(put)
    rss, hwm = memory_kb(daemon.pid)

    summary = {"idle_cpu_percent": round(100 * idle_rate, 3),
               "idle_rss_mb": round(idle_rss / 1024, 1), "rss_after_load_mb": round(rss / 1024, 1),
               "peak_rss_mb": round(hwm / 1024, 1),
               "events": total, "steady_rate_per_s": RATE,
               "burst_put_s": round(burst_put_s, 2),
               "cpu_s_per_1000_events": round(1000 * load_cpu / total, 3), "latency_ms": {}}
    print(f"idle: {100 * idle_rate:.3f}% of one core over {idle_s} s (long polls only), "
          f"RSS {idle_rss / 1024:.1f} MB")
    print(f"after the load: RSS {rss / 1024:.1f} MB, peak {hwm / 1024:.1f} MB (target <= 15 MB)")
    print(f"burst: {BURST_N} events put in {burst_put_s:.2f} s (PutEvents into moto, 10 per call)")
    for phase, ids in phases.items():
        for ch in ("stdout", "sns"):
            lat = [1000 * (seen[(ch, e)] - put[e]) for e in ids]
            row = {p: round(pct(lat, p)) for p in (50, 90, 99)}
            row["max"] = round(max(lat))
            row["n"] = len(lat)
            summary["latency_ms"][f"{phase}/{ch}"] = row
            print(f"{phase:6} {ch:6} n={len(lat):4}  p50 {row[50]:5} ms  p90 {row[90]:5} ms  "
                  f"p99 {row[99]:5} ms  max {row['max']:5} ms")
            if phase == "burst":
                # From the moment the event was in the queue (PutEvents returned): what
                # moto's own slowness to accept a burst adds is left out.
                lat = [1000 * (seen[(ch, e)] - queued[e]) for e in ids]
                row = {p: round(pct(lat, p)) for p in (50, 90, 99)}
                row["max"] = round(max(lat))
                row["n"] = len(lat)
                summary["latency_ms"][f"burst-from-queued/{ch}"] = row
                print(f"  from queued {ch:6}  p50 {row[50]:5} ms  p90 {row[90]:5} ms  "
                      f"p99 {row[99]:5} ms  max {row['max']:5} ms")
    print(f"CPU: {summary['cpu_s_per_1000_events']} s per 1,000 events "
          f"({total} events, idle rate subtracted)")
    with open(os.path.join(WORK, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
finally:
    daemon.terminate()
    try:
        daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        daemon.kill()
    moto.terminate()
    moto2.terminate()
