#!/usr/bin/env python3
"""Events for bench/catchup.sh: N CloudTrail records over the last 90 days, all with one of
the four event names the documented pattern pins (AttachRolePolicy, DetachRolePolicy,
SetPolicyVersion, CreatePolicyVersion), so that LookupEvents returns every one of them to
rolewatch. About 1% (`--match-share`) are on the vendor's role or policy and match; the rest
are the same calls on other roles and policies (including the near miss
`…/AstronomerCrossAccountRoleV2`), fetched and evaluated but not matched.

    catchup_events.py --count 100000 --end 1790000000 --cursor 1782310000 \\
        --output events.jsonl --manifest manifest.json

The records are built with tests/fixtures/cloudtrail/generate.py's `Gen` (realistic shape and
size). `--manifest` gets the counts: total, matching, and how many of each fall inside the
catch-up (eventTime at or after `--cursor` minus the 20-minute overlap).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/cloudtrail"))
import generate  # noqa: E402  (tests/fixtures/cloudtrail/generate.py)

NAMES = ("AttachRolePolicy", "DetachRolePolicy", "SetPolicyVersion", "CreatePolicyVersion")
OVERLAP_SECS = 20 * 60
DAY = 86_400


def record(gen: generate.Gen, name: str, when: datetime.datetime, matching: bool) -> dict:
    rng = gen.rng
    if name in ("AttachRolePolicy", "DetachRolePolicy"):
        if matching:
            params = {"roleName": generate.ROLE, "policyArn": rng.choice(generate.MANAGED_POLICIES)}
        else:
            params = {
                "roleName": rng.choice(generate.OTHER_ROLES),
                "policyArn": rng.choice(generate.MANAGED_POLICIES),
            }
    else:
        if matching:
            arn = generate.POLICY_ARN
        elif rng.random() < 0.1:
            arn = generate.POLICY_ARN + "V2"  # the near miss
        else:
            arn = f"arn:aws:iam::{generate.ACCOUNT}:policy/{rng.choice(generate.OTHER_ROLES)}-policy"
        if name == "CreatePolicyVersion":
            document = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
            params = {"policyArn": arn, "policyDocument": json.dumps(document), "setAsDefault": True}
        else:
            params = {"policyArn": arn, "versionId": f"v{rng.randint(1, 5)}"}
    return gen.base(when, gen.human(when), "iam.amazonaws.com", name, params, False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--end", type=int, required=True, help="newest eventTime, epoch seconds")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--cursor", type=int, required=True, help="the state's cursor, epoch s")
    parser.add_argument("--match-share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", required=True)
    parser.add_argument("--manifest", required=True)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    gen = generate.Gen(rng)
    # A few minutes inside the 90 days, so that no event ages out during the run.
    start = args.end - args.days * DAY + 3600
    catchup_from = args.cursor - OVERLAP_SECS
    counts = {"total": 0, "matching": 0, "in_catchup": 0, "matching_in_catchup": 0}
    by_name = dict.fromkeys(NAMES, 0)
    with open(args.output, "w", encoding="utf-8") as out:
        for i in range(args.count):
            t = start + (args.end - start) * i / args.count + rng.random()
            when = datetime.datetime.fromtimestamp(int(t), tz=datetime.timezone.utc)
            name = NAMES[i % len(NAMES)]
            matching = rng.random() < args.match_share
            out.write(json.dumps(record(gen, name, when, matching), separators=(",", ":")))
            out.write("\n")
            counts["total"] += 1
            by_name[name] += 1
            inside = int(t) >= catchup_from
            counts["in_catchup"] += inside
            counts["matching"] += matching
            counts["matching_in_catchup"] += matching and inside
    with open(args.manifest, "w", encoding="utf-8") as out:
        json.dump({**counts, "by_name": by_name}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
