#!/usr/bin/env bash
# Queue-path latency benchmark (issue 13 §5): EventBridge -> SQS -> rolewatch -> stdout and
# SNS on loopback against moto; see bench/queue_latency.py for what is measured.
#
#   bench/queue-latency.sh                    # builds the release binary
#   ROLEWATCH_BIN=target/release/rolewatch bench/queue-latency.sh 200 10 500
#
# Needs the test venv (moto[server], boto3): ROLEWATCH_TEST_PYTHON / ROLEWATCH_TEST_MOTO, or
# .venv/ as ./scripts/test makes it. Figures go to target/bench-data/queue/summary.json;
# bench/RESULTS.md has the last run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${ROLEWATCH_TEST_PYTHON:-.venv/bin/python}
MOTO=${ROLEWATCH_TEST_MOTO:-.venv/bin/moto_server}
WORK=${WORK:-target/bench-data/queue}
if [[ -z ${ROLEWATCH_BIN:-} ]]; then
    cargo build --release --locked -p rolewatch --bin rolewatch
    ROLEWATCH_BIN=target/release/rolewatch
fi
rm -rf "$WORK" && mkdir -p "$WORK"
exec "$PYTHON" bench/queue_latency.py "$ROLEWATCH_BIN" "$MOTO" "$(realpath "$WORK")" "$@"
