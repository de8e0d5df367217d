#!/usr/bin/env bash
# Catch-up benchmark (issue 3 §7): N CloudTrail events over the last 90 days in our
# LookupEvents server (tests/servers/lookup_events.py), all with the four event names the
# documented pattern pins (so every one is fetched), about 1% matching; a state whose cursor is
# 89 days old; then one `rolewatch once` at max_requests_per_sec = 2 under /usr/bin/time -v.
#
#   bench/catchup.sh                      # SIZES="25000 50000 100000", one after the other
#   SIZES=100000 bench/catchup.sh         # one size
#   ROLEWATCH_BIN=… PREPARE_BIN=… bench/catchup.sh   # given release binaries, no build
#   SERVER_RATE_LIMIT=2 WORK=target/bench-data/catchup-limited bench/catchup.sh
#                                         # the server throttles like CloudTrail's 2/s limit
#
# Reports per size: wall time (bound by the rate limit: requests / 2 per second), requests and
# throttled requests (server stats), events fetched, matches, peak RSS. RSS must not grow with
# the backlog: the catch-up goes oldest first in one-day windows, each committed to SQLite.
# Fails when the matches printed differ from the matching events inside the catch-up.
# Figures go to target/bench-data/catchup/<N>/summary.md; bench/RESULTS.md has the last run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZES=${SIZES:-"25000 50000 100000"}
CURSOR_AGE_DAYS=${CURSOR_AGE_DAYS:-89}
RPS=${RPS:-2}
WORK=${WORK:-target/bench-data/catchup}
# Make the server throttle beyond this many requests in any sliding second, as CloudTrail
# does account-wide (0: off).
SERVER_RATE_LIMIT=${SERVER_RATE_LIMIT:-0}
PYTHON=${ROLEWATCH_TEST_PYTHON:-python3}

mkdir -p "$WORK/bin"
if [[ -n ${ROLEWATCH_BIN:-} && -n ${PREPARE_BIN:-} ]]; then
    # Given binaries (e.g. built once for several concurrent runs of this script).
    cp "$ROLEWATCH_BIN" "$WORK/bin/rolewatch.$$"
    cp "$PREPARE_BIN" "$WORK/bin/prepare_state.$$"
else
    echo "==> cargo build --release (rolewatch, examples/prepare_state)"
    cargo build --release --locked -p rolewatch --bin rolewatch --example prepare_state
    # Private copies: a rebuild during the (long) run must not swap the binary under it.
    cp target/release/rolewatch "$WORK/bin/rolewatch.$$"
    cp target/release/examples/prepare_state "$WORK/bin/prepare_state.$$"
fi
ROLEWATCH=$WORK/bin/rolewatch.$$
PREPARE=$WORK/bin/prepare_state.$$

SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -f "$ROLEWATCH" "$PREPARE"
}
trap cleanup EXIT

field() { # file key  -> value of "key: value" from /usr/bin/time -v
    sed -n "s/^[[:space:]]*$2: //p" "$1" | head -1
}

for N in $SIZES; do
    DIR=$WORK/$N
    rm -rf "$DIR"
    mkdir -p "$DIR"
    NOW=$(date +%s)
    CURSOR=$((NOW - CURSOR_AGE_DAYS * 86400))
    echo "==> $N events: generating"
    "$PYTHON" bench/catchup_events.py --count "$N" --end "$NOW" --cursor "$CURSOR" \
        --output "$DIR/events.jsonl" --manifest "$DIR/manifest.json"

    "$PYTHON" tests/servers/lookup_events.py --port 0 >"$DIR/server.out" 2>"$DIR/server.err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q LISTENING "$DIR/server.out" 2>/dev/null && break
        sleep 0.1
    done
    PORT=$(sed -n 's/^LISTENING //p' "$DIR/server.out")
    [[ -n $PORT ]] || { echo "the LookupEvents server did not start:" >&2; cat "$DIR/server.err" >&2; exit 1; }
    echo "    loading into the LookupEvents server on port $PORT"
    curl -sf --data-binary "@$DIR/events.jsonl" -H 'Content-Type: application/x-ndjson' \
        "http://127.0.0.1:$PORT/_control/events.jsonl" >"$DIR/load.json"

    curl -sf -H 'Content-Type: application/json' \
        --data "{\"rate_limit_per_sec\": $SERVER_RATE_LIMIT}" \
        "http://127.0.0.1:$PORT/_control/faults" >/dev/null

    "$PREPARE" "$DIR/state.db" bench "$((CURSOR * 1000))" >/dev/null
    cat >"$DIR/rolewatch.toml" <<EOF
[state]
path = "$PWD/$DIR/state.db"

[[source]]
type = "cloudtrail"
name = "bench"
max_requests_per_sec = $RPS
EOF

    echo "    rolewatch once (cursor $CURSOR_AGE_DAYS days old, $RPS requests/s)"
    START=$(date +%s.%N)
    env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
        AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL_CLOUDTRAIL="http://127.0.0.1:$PORT" \
        /usr/bin/time -v -o "$DIR/time.txt" "$ROLEWATCH" once --config "$DIR/rolewatch.toml" \
        >"$DIR/alerts.jsonl" 2>"$DIR/rolewatch.log" || {
        echo "rolewatch once failed; tail of its log:" >&2
        tail -20 "$DIR/rolewatch.log" >&2
        exit 1
    }
    END=$(date +%s.%N)
    curl -sf "http://127.0.0.1:$PORT/_control/stats" | jq 'del(.recent_requests)' >"$DIR/stats.json"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=

    WALL=$(field "$DIR/time.txt" "Elapsed (wall clock) time (h:mm:ss or m:ss)")
    RSS_KB=$(field "$DIR/time.txt" "Maximum resident set size (kbytes)")
    CPU_USER=$(field "$DIR/time.txt" "User time (seconds)")
    CPU_SYS=$(field "$DIR/time.txt" "System time (seconds)")
    REQUESTS=$(jq .requests_total "$DIR/stats.json")
    THROTTLED=$(jq .throttled "$DIR/stats.json")
    MAX_1S=$(jq .max_requests_in_1s "$DIR/stats.json")
    POLLED=$(grep 'Polled' "$DIR/rolewatch.log" | tail -1)
    EVENTS=$(sed -n 's/.* events=\([0-9]*\).*/\1/p' <<<"$POLLED")
    WINDOWS=$(sed -n 's/.* windows=\([0-9]*\).*/\1/p' <<<"$POLLED")
    MATCHES=$(wc -l <"$DIR/alerts.jsonl")
    EXPECTED_EVENTS=$(jq .in_catchup "$DIR/manifest.json")
    EXPECTED_MATCHES=$(jq .matching_in_catchup "$DIR/manifest.json")
    SECS=$(echo "$END - $START" | bc)
    STATE_KB=$(du -k "$DIR/state.db" | cut -f1)

    cat >"$DIR/summary.md" <<EOF
| $N | $WALL | $REQUESTS | $THROTTLED | $MAX_1S | $WINDOWS | $EVENTS / $EXPECTED_EVENTS | $MATCHES / $EXPECTED_MATCHES | $((RSS_KB / 1024)) MiB ($RSS_KB kB) | $CPU_USER + $CPU_SYS s | $STATE_KB kB |
EOF
    printf '    wall %s (%.0f s), %s requests (%s throttled, at most %s in 1 s), %s windows,\n' \
        "$WALL" "$SECS" "$REQUESTS" "$THROTTLED" "$MAX_1S" "$WINDOWS"
    printf '    %s events fetched (expected %s), %s matches (expected %s), peak RSS %s kB\n' \
        "$EVENTS" "$EXPECTED_EVENTS" "$MATCHES" "$EXPECTED_MATCHES" "$RSS_KB"
    # An event exactly on the boundary of two catch-up windows is fetched by both (LookupEvents'
    # EndTime is inclusive) and counted twice here; the seen set makes it one alert.
    if ((EVENTS < EXPECTED_EVENTS || EVENTS > EXPECTED_EVENTS + WINDOWS)); then
        echo "bench/catchup.sh: $N events: $EVENTS fetched, expected $EXPECTED_EVENTS" >&2
        exit 1
    fi
    if [[ $MATCHES != "$EXPECTED_MATCHES" ]]; then
        echo "bench/catchup.sh: $N events: $MATCHES matches printed, expected $EXPECTED_MATCHES" >&2
        exit 1
    fi
done

echo
echo "| events loaded | wall | requests | throttled | max req in 1 s | windows | events fetched / in catch-up | matches / expected | peak RSS | CPU user + sys | state file |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for N in $SIZES; do cat "$WORK/$N/summary.md"; done
