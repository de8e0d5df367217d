#!/usr/bin/env bash
# Benchmark of `rolewatch scan` (issue 2 §5) against the literal-search limit (ripgrep) and a
# JSON-aware baseline (jq) on >= 200 MB of real CloudTrail records as JSON lines.
#
#   bench/scan.sh                  # the full run (BENCH_MB=200)
#   BENCH_MB=40 JQ_RUNS=1 bench/scan.sh   # a quick smoke run
#   NO_HYPERFINE=1 bench/scan.sh          # time best-of-RUNS without hyperfine
#
# Targets: rolewatch within 2x of `rg -c -F -e …` and at least 50x faster than `jq -c
# 'select(…)'`, with the same matches as jq. The match counts must agree (the script fails
# otherwise); the speed targets are reported, and enforced only with STRICT=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_MB=${BENCH_MB:-200}
RUNS=${RUNS:-10}
JQ_RUNS=${JQ_RUNS:-3}
STRICT=${STRICT:-0}
CORPUS=../shared/fixtures/cloudtrail/bench/cloudtrail-real-full.jsonl.gz
SYNTHETIC=tests/fixtures/cloudtrail/astronomer-synthetic.jsonl
DATA_DIR=target/bench-data
DATA=$DATA_DIR/cloudtrail-${BENCH_MB}mb.jsonl

if [[ ! -f $CORPUS ]]; then
    echo "bench/scan.sh: $CORPUS not found." >&2
    echo "The benchmark needs the team's shared fixtures checked out beside this repository (../shared)." >&2
    exit 1
fi

install_with_apt() { # command package
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "==> installing $2 (for '$1')"
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
        else
            sudo apt-get update -qq && sudo apt-get install -y -qq "$2" >/dev/null
        fi
    fi
}
install_with_apt rg ripgrep
install_with_apt jq jq
# hyperfine is optional: without it the script times best-of-N runs itself.
install_with_apt hyperfine hyperfine || echo "    (hyperfine not installed; timing best-of-$RUNS runs instead)"

echo "==> cargo build --release"
cargo build --release --locked -p rolewatch
ROLEWATCH=target/release/rolewatch

# The data: the real corpus replicated until it reaches BENCH_MB, each copy followed by the 8
# synthetic Astronomer records (4 of which the documented pattern matches), so that the
# comparison is about real matches, not only about rejecting everything.
mkdir -p "$DATA_DIR"
want_bytes=$((BENCH_MB * 1000 * 1000))
if [[ ! -f $DATA ]] || (($(stat -c %s "$DATA") < want_bytes)); then
    echo "==> making $DATA (>= $BENCH_MB MB)"
    one=$DATA_DIR/one-copy.jsonl
    { gzip -dc "$CORPUS"; cat "$SYNTHETIC"; } >"$one"
    one_bytes=$(stat -c %s "$one")
    copies=$(((want_bytes + one_bytes - 1) / one_bytes))
    : >"$DATA.tmp"
    for ((i = 0; i < copies; i++)); do cat "$one" >>"$DATA.tmp"; done
    mv "$DATA.tmp" "$DATA"
    rm -f "$one"
fi
size_mb=$(awk -v b="$(stat -c %s "$DATA")" 'BEGIN { printf "%.1f", b / 1e6 }')
lines=$(wc -l <"$DATA")
echo "    $size_mb MB, $lines records"

# The documented pattern (src/rules.rs, DOCUMENTED_PATTERN) as a jq program: one of the four
# event names, and either a policyArn ending in AstronomerCrossAccountRole or exactly the role
# name. `?` and `// false` keep jq from failing or dropping a record on odd shapes (a
# requestParameters that is null or not an object, a policyArn that is not a string), where the
# pattern's condition is simply false.
JQ_PROGRAM='select(
  (.eventName? as $n | $n == "AttachRolePolicy" or $n == "DetachRolePolicy"
                    or $n == "SetPolicyVersion" or $n == "CreatePolicyVersion")
  and (((.requestParameters.policyArn? | strings | endswith("AstronomerCrossAccountRole")) // false)
       or .requestParameters.roleName? == "astronomer-remote-management"))'
RG_ARGS=(-c -F -e AttachRolePolicy -e DetachRolePolicy -e SetPolicyVersion -e CreatePolicyVersion)

echo "==> match counts"
rolewatch_count=$("$ROLEWATCH" scan "$DATA" 2>/dev/null | wc -l)
jq_count=$(jq -c "$JQ_PROGRAM" "$DATA" | wc -l)
rg_count=$(rg "${RG_ARGS[@]}" "$DATA" || true)
echo "    rolewatch: $rolewatch_count matches"
echo "    jq:        $jq_count matches"
echo "    rg:        ${rg_count:-0} candidate lines (any of the four names; not a match count)"
if [[ $rolewatch_count != "$jq_count" ]]; then
    echo "bench/scan.sh: rolewatch and jq disagree on the matches" >&2
    exit 1
fi
"$ROLEWATCH" scan "$DATA" 2>&1 >/dev/null | sed 's/^/    /'

# Seconds of the best run of a command (output discarded). Timed with `date +%s%N` rather than
# /usr/bin/time, whose %e has a 10 ms resolution: too coarse next to rg's tens of milliseconds.
best_of() { # runs command...
    local runs=$1 best="" t start end
    shift
    for ((r = 0; r < runs; r++)); do
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1 || true
        end=$(date +%s%N)
        t=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
        if [[ -z $best ]] || awk -v t="$t" -v b="$best" 'BEGIN { exit !(t < b) }'; then best=$t; fi
    done
    echo "$best"
}

echo "==> timing (page cache warmed)"
cat "$DATA" >/dev/null
if [[ -z ${NO_HYPERFINE:-} ]] && command -v hyperfine >/dev/null 2>&1; then
    json=$DATA_DIR/hyperfine.json
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$json" \
        -N -n rolewatch "$ROLEWATCH scan $DATA" \
        -n rg "rg ${RG_ARGS[*]} $DATA" >/dev/null
    t_rw=$(jq '.results[] | select(.command == "rolewatch") | .min' "$json")
    t_rg=$(jq '.results[] | select(.command == "rg") | .min' "$json")
    hyperfine --runs "$JQ_RUNS" --export-json "$json" -n jq "jq -c '$JQ_PROGRAM' $DATA" >/dev/null
    t_jq=$(jq '.results[0].min' "$json")
else
    t_rw=$(best_of "$RUNS" "$ROLEWATCH" scan "$DATA")
    t_rg=$(best_of "$RUNS" rg "${RG_ARGS[@]}" "$DATA")
    t_jq=$(best_of "$JQ_RUNS" jq -c "$JQ_PROGRAM" "$DATA")
fi

awk -v rw="$t_rw" -v rg="$t_rg" -v jq="$t_jq" -v mb="$size_mb" -v strict="$STRICT" 'BEGIN {
    printf "    rolewatch scan   %8.3f s  %8.1f MB/s\n", rw, mb / rw
    printf "    rg -c -F         %8.3f s  %8.1f MB/s\n", rg, mb / rg
    printf "    jq select        %8.3f s  %8.1f MB/s\n", jq, mb / jq
    vs_rg = rw / rg; vs_jq = jq / rw
    ok_rg = vs_rg <= 2; ok_jq = vs_jq >= 50
    printf "    rolewatch / rg = %.2fx (target <= 2x): %s\n", vs_rg, ok_rg ? "met" : "MISSED"
    printf "    jq / rolewatch = %.1fx (target >= 50x): %s\n", vs_jq, ok_jq ? "met" : "MISSED"
    if (strict == 1 && !(ok_rg && ok_jq)) exit 1
}'
