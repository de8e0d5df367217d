#!/usr/bin/env bash
# Footprint benchmark (issue 5 §9): what rolewatch costs while it waits.
#
#   bench/footprint.sh                       # release build, then 10 minutes of idle polling
#   DURATION_SECS=120 bench/footprint.sh     # a quick run
#   ROLEWATCH_BIN=target/release/rolewatch bench/footprint.sh   # a given binary, no build
#   SQS=1 bench/footprint.sh                 # with an idle `sqs` source too (moto's SQS; its
#                                            # 20-s long polls) beside the CloudTrail one
#
# Measures, against a quiet CloudTrail LookupEvents source (tests/servers/lookup_events.py on
# loopback, no events) polled every POLL_SECS (60):
#   - the stripped binary's size;
#   - startup: `rolewatch --version` (hyperfine when installed, else a timed loop) and the
#     time from exec of `rolewatch run` to its first "Polled" log line (STARTS runs, fresh
#     state each);
#   - idle RSS (VmRSS, and the peak VmHWM) and CPU (utime + stime from /proc/PID/stat) sampled
#     every SAMPLE_SECS over DURATION_SECS of `rolewatch run`.
# The first poll of a fresh state makes one LookupEvents call per event name (4 for the
# documented pattern) at the default 1 request/s, so "first Polled" is ~3 s by design.
# Targets: RSS <= 15 MB; ~0% CPU between polls. Figures go to $WORK/summary.md (and stdout);
# bench/RESULTS.md holds the last recorded run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION_SECS=${DURATION_SECS:-600}
SAMPLE_SECS=${SAMPLE_SECS:-5}
POLL_SECS=${POLL_SECS:-60}
STARTS=${STARTS:-10}
WORK=${WORK:-target/bench-data/footprint}
PYTHON=${ROLEWATCH_TEST_PYTHON:-python3}
if [[ -z ${ROLEWATCH_TEST_PYTHON:-} && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi

rm -rf "$WORK"
mkdir -p "$WORK"
if [[ -n ${ROLEWATCH_BIN:-} ]]; then
    cp "$ROLEWATCH_BIN" "$WORK/rolewatch"
else
    echo "==> cargo build --release --bin rolewatch"
    cargo build --release --locked --bin rolewatch
    # A private copy: a rebuild during the run must not swap the binary under it.
    cp target/release/rolewatch "$WORK/rolewatch"
fi
BIN=$WORK/rolewatch
# The release profile strips already; strip again in case the binary came from elsewhere.
if command -v strip >/dev/null 2>&1; then strip "$BIN" 2>/dev/null || true; fi

SERVER_PID=
RW_PID=
MOTO_PID=
cleanup() {
    if [[ -n $RW_PID ]]; then kill "$RW_PID" 2>/dev/null || true; fi
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n $MOTO_PID ]]; then kill "$MOTO_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

# --- the quiet source ------------------------------------------------------------------------
"$PYTHON" tests/servers/lookup_events.py --port 0 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q '^LISTENING' "$WORK/server.out" 2>/dev/null && break
    sleep 0.1
done
PORT=$(sed -n 's/^LISTENING //p' "$WORK/server.out")
[[ -n $PORT ]] || { echo "the LookupEvents server did not start" >&2; cat "$WORK/server.err" >&2; exit 1; }

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL_CLOUDTRAIL=http://127.0.0.1:$PORT
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
export RUST_LOG=${RUST_LOG:-info}

# --- the idle queue (SQS=1) -------------------------------------------------------------------
QUEUE_URL=
if [[ ${SQS:-0} == 1 ]]; then
    MOTO=${ROLEWATCH_TEST_MOTO:-$(dirname "$PYTHON")/moto_server}
    MOTO_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.out" 2>&1 &
    MOTO_PID=$!
    QUEUE_URL=$("$PYTHON" - "$MOTO_PORT" <<'PY'
import sys, time, boto3
url = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(100):
    try:
        sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        print(sqs.create_queue(QueueName="rolewatch-events",
                               Attributes={"VisibilityTimeout": "300"})["QueueUrl"])
        break
    except Exception:
        time.sleep(0.1)
PY
)
    [[ -n $QUEUE_URL ]] || { echo "moto's SQS did not start" >&2; exit 1; }
    export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$MOTO_PORT
fi

# The admin endpoint (when the binary has one) on a free port, not the default 9464, which
# another rolewatch may hold; it is part of the footprint, so it stays on.
HAS_ADMIN=no
if grep -aq '\[admin\] listen' "$BIN"; then HAS_ADMIN=yes; fi
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

config() { # state-path -> config file on stdout
    cat <<EOF
[state]
path = "$1"

[[source]]
type = "cloudtrail"
region = "us-east-1"
poll_interval_secs = $POLL_SECS
EOF
    if [[ -n $QUEUE_URL ]]; then
        printf '\n[[source]]\ntype = "sqs"\nname = "queue"\nqueue_url = "%s"\nregion = "us-east-1"\n' "$QUEUE_URL"
    fi
    if [[ $HAS_ADMIN == yes ]]; then
        printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$(free_port)"
    fi
}

now_ns() { date +%s%N; }

# --- size ------------------------------------------------------------------------------------
SIZE_BYTES=$(stat -c %s "$BIN")

# --- startup ---------------------------------------------------------------------------------
VERSION_MS=
if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N --warmup 3 --runs 50 --export-json "$WORK/version.json" "$BIN --version" >/dev/null
    VERSION_MS=$("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f ± %.2f" % (r["mean"] * 1000, r["stddev"] * 1000))' "$WORK/version.json")
else
    t0=$(now_ns)
    for _ in $(seq 50); do "$BIN" --version >/dev/null; done
    VERSION_MS=$(awk -v d="$(( $(now_ns) - t0 ))" 'BEGIN {printf "%.2f", d / 50 / 1e6}')
fi

FIRST_POLL_MS=()
POLL_STARTED_MS=()
for i in $(seq "$STARTS"); do
    dir=$WORK/start-$i
    mkdir -p "$dir"
    config "$dir/state.db" >"$dir/rolewatch.toml"
    t0=$(now_ns)
    "$BIN" run --config "$dir/rolewatch.toml" >"$dir/stdout" 2>"$dir/stderr" &
    RW_PID=$!
    t1=
    ts=
    for _ in $(seq 3000); do
        if [[ -z $ts ]] && grep -q 'No cursor in the state' "$dir/stderr"; then ts=$(now_ns); fi
        if grep -q 'Polled' "$dir/stderr"; then t1=$(now_ns); break; fi
        sleep 0.005
    done
    kill "$RW_PID" 2>/dev/null || true
    wait "$RW_PID" 2>/dev/null || true
    RW_PID=
    [[ -n $t1 ]] || { echo "run $i: no first poll within 15 s" >&2; cat "$dir/stderr" >&2; exit 1; }
    FIRST_POLL_MS+=($(( (t1 - t0) / 1000000 )))
    POLL_STARTED_MS+=($(( (${ts:-$t1} - t0) / 1000000 )))
done
read -r FP_MIN FP_MEDIAN FP_MAX < <(printf '%s\n' "${FIRST_POLL_MS[@]}" | sort -n |
    awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)], a[NR]}')
read -r PS_MIN PS_MEDIAN PS_MAX < <(printf '%s\n' "${POLL_STARTED_MS[@]}" | sort -n |
    awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)], a[NR]}')

# --- idle ------------------------------------------------------------------------------------
dir=$WORK/idle
mkdir -p "$dir"
config "$dir/state.db" >"$dir/rolewatch.toml"
"$BIN" run --config "$dir/rolewatch.toml" >"$dir/stdout" 2>"$dir/stderr" &
RW_PID=$!
CLK_TCK=$(getconf CLK_TCK)
echo "==> idle: $DURATION_SECS s of polling every $POLL_SECS s (pid $RW_PID), a sample every $SAMPLE_SECS s"
echo "elapsed_s rss_kb hwm_kb cpu_ticks" >"$dir/samples.txt"
start=$(now_ns)
while :; do
    elapsed=$(( ($(now_ns) - start) / 1000000000 ))
    [[ -d /proc/$RW_PID ]] || { echo "rolewatch exited during the idle run" >&2; cat "$dir/stderr" >&2; exit 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$RW_PID/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$RW_PID/status")
    # Fields 14 and 15 of /proc/PID/stat (after the parenthesised command name).
    ticks=$(sed 's/^.*) //' "/proc/$RW_PID/stat" | awk '{print $12 + $13}')
    echo "$elapsed $rss $hwm $ticks" >>"$dir/samples.txt"
    (( elapsed >= DURATION_SECS )) && break
    sleep "$SAMPLE_SECS"
done
ANON_KB=$(awk '/^RssAnon:/ {print $2}' "/proc/$RW_PID/status")
FILE_KB=$(awk '/^RssFile:/ {print $2}' "/proc/$RW_PID/status")
THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$RW_PID/status")
kill "$RW_PID"
wait "$RW_PID" 2>/dev/null || true
RW_PID=
POLLS=$(grep -c 'Polled' "$dir/stderr" || true)

# Per-sample CPU: an interval whose ticks did not move is idle; the polls are the rest.
read -r RSS_MIN RSS_MEAN RSS_MAX HWM_MAX TOTAL_TICKS WALL IDLE_INTERVALS BUSY_INTERVALS < <(
    awk -v tck="$CLK_TCK" 'NR == 1 {next}
        NR == 2 {t0 = $1; c0 = $4; pc = $4; pt = $1; min = $2; max = $2}
        NR > 2 {d = $4 - pc; if (d == 0) idle++; else busy++; pc = $4; pt = $1}
        {sum += $2; n++; if ($2 < min) min = $2; if ($2 > max) max = $2; if ($3 > hwm) hwm = $3}
        END {printf "%d %d %d %d %d %d %d %d\n", min, sum / n, max, hwm, pc - c0, pt - t0, idle, busy}' \
        "$dir/samples.txt")
CPU_SECS=$(awk -v t="$TOTAL_TICKS" -v k="$CLK_TCK" 'BEGIN {printf "%.2f", t / k}')
CPU_PCT=$(awk -v t="$TOTAL_TICKS" -v k="$CLK_TCK" -v w="$WALL" 'BEGIN {printf "%.3f", (w > 0) ? 100 * t / k / w : 0}')
PER_POLL_MS=$(awk -v t="$TOTAL_TICKS" -v k="$CLK_TCK" -v p="$POLLS" 'BEGIN {printf "%.0f", (p > 0) ? 1000 * t / k / p : 0}')

mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB (%d kB)", k / 1024, k}'; }
{
    echo "## Footprint ($(date -u +%Y-%m-%d), HEAD $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, admin endpoint: $HAS_ADMIN)"
    echo
    echo "| what | figure | target |"
    echo "|---|---|---|"
    echo "| stripped binary | $(awk -v b="$SIZE_BYTES" 'BEGIN {printf "%.1f MiB (%d bytes)", b / 1048576, b}') | |"
    echo "| \`rolewatch --version\` | $VERSION_MS ms | |"
    echo "| exec of \`rolewatch run\` → config read, state opened, first poll begins | median $PS_MEDIAN ms (min $PS_MIN, max $PS_MAX) | |"
    echo "| exec of \`rolewatch run\` → first \"Polled\" (quiet source, fresh state; $STARTS runs) | median $FP_MEDIAN ms (min $FP_MIN, max $FP_MAX) | |"
    echo "| idle RSS over ${WALL} s (VmRSS every $SAMPLE_SECS s) | min $(mib "$RSS_MIN"), mean $(mib "$RSS_MEAN"), max $(mib "$RSS_MAX") | ≤ 15 MB |"
    echo "| peak RSS (VmHWM) | $(mib "$HWM_MAX") | ≤ 15 MB |"
    echo "| at the end: RssAnon (heap, stacks) / RssFile (the mapped binary, libraries) / threads | $(mib "$ANON_KB") / $(mib "$FILE_KB") / $THREADS | |"
    echo "| sources | cloudtrail${QUEUE_URL:+, sqs (idle long polls)} | |"
    echo "| CPU over ${WALL} s, $POLLS polls every $POLL_SECS s | $CPU_SECS s = $CPU_PCT % of one core; ≈ $PER_POLL_MS ms per poll | ≈ 0 % between polls |"
    echo "| $SAMPLE_SECS-s intervals with no CPU tick at all / with some | $IDLE_INTERVALS / $BUSY_INTERVALS | |"
} | tee "$WORK/summary.md"
