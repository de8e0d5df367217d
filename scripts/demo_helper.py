#!/usr/bin/env python3
"""Helpers for scripts/demo: the AWS-side steps of the local demo, on loopback only.

    demo_helper.py free-port
    demo_helper.py wait-http URL SECONDS
    demo_helper.py setup-sns MOTO_URL          -> prints "TOPIC_ARN QUEUE_URL"
    demo_helper.py inject LOOKUP_PORT          -> adds an AttachRolePolicy on the vendor's role
    demo_helper.py receive-sqs MOTO_URL QUEUE_URL SECONDS   -> prints the SNS message, exit 1 if none
    demo_helper.py show-alert                  -> pretty-prints rolewatch's stdout JSON line (stdin)
    demo_helper.py metrics URL                 -> the alert and delivery lines of /metrics

setup-sns and receive-sqs need boto3 (installed with moto in .venv); the rest is stdlib.
"""

from __future__ import annotations

import datetime
import json
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid

REGION = "us-east-1"
ROLE = "astronomer-remote-management"


def free_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers HTTP: up
        except OSError:
            time.sleep(0.2)
    sys.exit(f"demo: {url} did not answer within {seconds} s")


def client(service: str, endpoint: str):
    import boto3  # noqa: PLC0415 (only these commands need it)

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def setup_sns(endpoint: str) -> None:
    sns = client("sns", endpoint)
    sqs = client("sqs", endpoint)
    topic = sns.create_topic(Name="rolewatch-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="rolewatch-demo")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    print(topic, queue)


def inject(port: int) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    event_id = str(uuid.uuid4())
    record = {
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEID1234567:jane.doe@example.com",
            "arn": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/jane.doe@example.com",
            "accountId": "111122223333",
            "accessKeyId": "ASIAEXAMPLE123456",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEID1234567",
                    "arn": "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0123456789abcdef",
                    "accountId": "111122223333",
                    "userName": "AWSReservedSSO_AdministratorAccess_0123456789abcdef",
                },
                "attributes": {"creationDate": now.isoformat().replace("+00:00", "Z"), "mfaAuthenticated": "false"},
            },
        },
        "eventTime": now.isoformat().replace("+00:00", "Z"),
        "eventSource": "iam.amazonaws.com",
        "eventName": "AttachRolePolicy",
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.23",
        "userAgent": "aws-cli/2.22.4 (rolewatch local demo)",
        "requestParameters": {
            "roleName": ROLE,
            "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
        },
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": event_id,
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }
    body = json.dumps({"events": [{"record": record}]}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/_control/events",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).read()
    print(event_id)


def receive_sqs(endpoint: str, queue: str, seconds: float) -> None:
    sqs = client("sqs", endpoint)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            envelope = json.loads(message["Body"])
            print(f"Subject: {envelope.get('Subject')}")
            attributes = envelope.get("MessageAttributes", {})
            for name in sorted(attributes):
                print(f"Attribute {name}: {attributes[name].get('Value')}")
            alert = json.loads(envelope["Message"])
            print(f"Message (JSON, default): event_id={alert.get('event_id')} "
                  f"event_name={alert.get('event_name')} rule={alert.get('rule')}")
            return
    sys.exit(f"demo: no message in the SQS queue within {seconds} s")


def metrics(url: str) -> None:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        if not line.startswith("#") and ("alert" in line or "deliver" in line):
            print(f"      {line}")


def show_alert() -> None:
    line = sys.stdin.readline()
    alert = json.loads(line)
    actor = alert.get("actor") or {}
    action = alert.get("action") or {}
    rows = [
        ("Rule", f"{alert.get('rule')} ({alert.get('severity')})"),
        ("Event", alert.get("event_name")),
        ("Role", action.get("role_name")),
        ("Policy", action.get("policy_arn")),
        ("By", actor.get("display_name")),
        ("Principal", actor.get("arn")),
        ("From", actor.get("source_ip_address")),
        ("When", alert.get("event_time")),
        ("Event ID", alert.get("event_id")),
        ("Console", alert.get("console_url")),
    ]
    for key, value in rows:
        if value is not None:
            print(f"      {key + ':':<11}{value}")


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "free-port":
        free_port()
    elif cmd == "wait-http":
        wait_http(args[0], float(args[1]))
    elif cmd == "setup-sns":
        setup_sns(args[0])
    elif cmd == "inject":
        inject(int(args[0]))
    elif cmd == "receive-sqs":
        receive_sqs(args[0], args[1], float(args[2]))
    elif cmd == "metrics":
        metrics(args[0])
    elif cmd == "show-alert":
        show_alert()
    else:
        sys.exit(f"demo_helper.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
