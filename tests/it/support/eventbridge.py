"""EventBridge -> SQS on moto, for the `sqs` source's tests (boto3 from the test venv).

usage: eventbridge.py ENDPOINT setup VISIBILITY MAX_RECEIVES   -> {"queue_url", "dlq_url"}
       eventbridge.py ENDPOINT bad-queue                       -> {"queue_url", "dlq_url"}
       eventbridge.py ENDPOINT bad-rule                        -> {"queue_url"}
       eventbridge.py ENDPOINT put RECORD_JSON_FILE            -> {"put_ms", "failed"}
       eventbridge.py ENDPOINT send QUEUE_URL BODY_FILE        -> {"ok": bool, "error"}
       eventbridge.py ENDPOINT count QUEUE_URL                 -> {"visible", "in_flight"}
       eventbridge.py ENDPOINT purge QUEUE_URL                 -> {}
       eventbridge.py ENDPOINT trail NAME MULTI_REGION LOGGING  -> {"arn"} (a trail; 0/1 flags)
"""
import json
import sys
import time

import boto3

endpoint, command, *args = sys.argv[1:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
sqs = boto3.client("sqs", **kw)
out = {}
if command == "setup":
    visibility, max_receives = args
    dlq = sqs.create_queue(QueueName="rolewatch-dlq",
                           Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="rolewatch-events", Attributes={
        "VisibilityTimeout": visibility,
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
    })["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", **kw)
    events.put_rule(Name="rolewatch-iam", State="ENABLED", EventPattern=json.dumps(
        {"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"],
         "detail": {"eventSource": ["iam.amazonaws.com"]}}))
    events.put_targets(Rule="rolewatch-iam", Targets=[{"Id": "queue", "Arn": queue_arn,
                                                       "DeadLetterConfig": {"Arn": dlq_arn}}])
    rule_arn = events.describe_rule(Name="rolewatch-iam")["Arn"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
    out = {"queue_url": queue, "dlq_url": dlq}
elif command == "bad-queue":
    # Every setup mistake doctor reports: a short visibility timeout, the AWS-managed key, no
    # queue policy; a DLQ that keeps messages less long than the queue, with a message in it.
    dlq = sqs.create_queue(QueueName="bad-dlq", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody="left over")
    queue = sqs.create_queue(QueueName="bad-events", Attributes={
        "VisibilityTimeout": "10", "KmsMasterKeyId": "alias/aws/sqs"})["QueueUrl"]
    out = {"queue_url": queue, "dlq_url": dlq}
elif command == "bad-rule":
    # A queue whose policy names a rule that is disabled and targets another queue.
    queue = sqs.create_queue(QueueName="off-events", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    other = sqs.create_queue(QueueName="elsewhere")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", **kw)
    events.put_rule(Name="rolewatch-off", State="DISABLED", EventPattern=json.dumps(
        {"source": ["aws.iam"]}))
    events.put_targets(Rule="rolewatch-off", Targets=[{"Id": "other", "Arn": other_arn}])
    rule_arn = events.describe_rule(Name="rolewatch-off")["Arn"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
    out = {"queue_url": queue}
elif command == "put":
    with open(args[0]) as f:
        record = f.read()
    events = boto3.client("events", **kw)
    put_ms = int(time.time() * 1000)
    r = events.put_events(Entries=[{"Source": "aws.iam", "DetailType": "AWS API Call via CloudTrail",
                                    "Detail": record}])
    out = {"put_ms": put_ms, "failed": r["FailedEntryCount"]}
elif command == "send":
    with open(args[1]) as f:
        body = f.read()
    try:
        sqs.send_message(QueueUrl=args[0], MessageBody=body)
        out = {"ok": True}
    except Exception as e:  # the size limit
        out = {"ok": False, "error": str(e)}
elif command == "count":
    a = sqs.get_queue_attributes(QueueUrl=args[0], AttributeNames=["All"])["Attributes"]
    out = {"visible": int(a["ApproximateNumberOfMessages"]),
           "in_flight": int(a["ApproximateNumberOfMessagesNotVisible"])}
elif command == "trail":
    name, multi, logging = args
    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket=f"{name.lower()}-logs")
    ct = boto3.client("cloudtrail", **kw)
    arn = ct.create_trail(Name=name, S3BucketName=f"{name.lower()}-logs",
                          IsMultiRegionTrail=multi == "1")["TrailARN"]
    if logging == "1":
        ct.start_logging(Name=name)
    out = {"arn": arn}
elif command == "purge":
    sqs.purge_queue(QueueUrl=args[0])
print(json.dumps(out))
