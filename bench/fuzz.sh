#!/usr/bin/env bash
# Fuzzes the filter-pattern parser and evaluator (issue 10 §5) with cargo-fuzz on the stable
# toolchain: each target for RUNS executions, one niced libFuzzer process at a time, then prints
# the totals (executions, time, corpus size, crashes).
#
#   bench/fuzz.sh                        # 10,000,000 executions each of `parse` and `evaluate`
#   RUNS=200000 bench/fuzz.sh            # a quick run
#   TARGETS=evaluate bench/fuzz.sh       # one target
#   SANITIZER=address bench/fuzz.sh      # under AddressSanitizer (about 6x slower)
#
# What the targets assert: crates/filter-pattern/fuzz/fuzz_targets/*.rs (no panic; round trip
# of the canonical text; prefilter soundness; pinned event names; caret errors).
#
# Stable toolchain: with SANITIZER=none (the default) cargo-fuzz only passes stable `-C` flags
# (SanitizerCoverage instrumentation; `-O -a`: optimised, with debug assertions and overflow
# checks, so that an overflow in the decimal arithmetic is a crash, not a wrap); AddressSanitizer
# needs `-Zsanitizer`, for which the script sets RUSTC_BOOTSTRAP=1. The crate has no `unsafe`
# code, so a memory error could only come from a dependency; the default trades ASan for speed.
#
# The corpus grows across runs in target/fuzz/corpus/<target> (FUZZ_WORK=dir moves
# target/fuzz); it is seeded from crates/filter-pattern/fuzz/seeds/<target> and from every
# pattern and event of crates/filter-pattern/testdata/*.toml. Runs go in chunks of CHUNK
# executions so that a crash does not end the count: each crashing input is kept in
# target/fuzz/crashes/<target>/, and the script exits 1 at the end if there was any (turn each
# into a regression case).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-10000000}
TARGETS=${TARGETS:-parse evaluate}
SANITIZER=${SANITIZER:-none}
CHUNK=${CHUNK:-2000000}
MAX_CRASHES=${MAX_CRASHES:-10}
TIMEOUT_SECS=${TIMEOUT_SECS:-10}
CRATE=crates/filter-pattern
WORK=${FUZZ_WORK:-$PWD/target/fuzz}
DICT=$PWD/$CRATE/fuzz/filter-pattern.dict
SEEDS=$PWD/$CRATE/fuzz/seeds

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz"
    nice cargo install cargo-fuzz --locked
fi
if [[ $SANITIZER != none ]]; then
    export RUSTC_BOOTSTRAP=1
fi

# Seeds from the semantics corpus: each pattern for `parse`, each pattern and event for
# `evaluate` (its input is the pattern, a newline, then the event).
seeds=$WORK/testdata-seeds
rm -rf "$seeds"
mkdir -p "$seeds/parse" "$seeds/evaluate"
python3 - "$CRATE/testdata" "$seeds" <<'EOF'
import hashlib, pathlib, sys, tomllib
testdata, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def put(target, text):
    data = text.encode()
    (out / target / hashlib.sha1(data).hexdigest()).write_bytes(data)
for f in sorted(testdata.glob("*.toml")):
    for case in tomllib.loads(f.read_text()).get("case", []):
        pattern = case.get("pattern")
        if pattern is None:
            continue
        put("parse", pattern)
        if "\n" in pattern:
            continue
        for event in case.get("events", []):
            put("evaluate", pattern + "\n" + event)
EOF

echo "==> cargo fuzz build (sanitizer: $SANITIZER)"
(cd "$CRATE" && nice cargo fuzz build -s "$SANITIZER" -O -a) 2>&1 | tail -1

summary=()
total_crashes=0
for target in $TARGETS; do
    corpus=$WORK/corpus/$target
    crashes=$WORK/crashes/$target
    artifacts=$WORK/artifacts/$target/
    mkdir -p "$corpus" "$crashes" "$artifacts"
    log=$WORK/$target.log
    : >"$log"
    done_runs=0 secs=0 found=0 chunk_no=0
    start=$(date +%s)
    echo "==> $target: $RUNS executions (corpus $corpus)"
    while ((done_runs < RUNS)); do
        n=$((RUNS - done_runs < CHUNK ? RUNS - done_runs : CHUNK))
        chunk_no=$((chunk_no + 1))
        out=$WORK/$target.chunk.log
        set +e
        (cd "$CRATE" && nice cargo fuzz run -s "$SANITIZER" -O -a "$target" \
            "$corpus" "$SEEDS/$target" "$seeds/$target" -- \
            -runs="$n" -dict="$DICT" -timeout="$TIMEOUT_SECS" -print_final_stats=1 \
            -artifact_prefix="$artifacts") >"$out" 2>&1
        rc=$?
        set -e
        cat "$out" >>"$log"
        ran=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
        if [[ -z $ran ]]; then
            echo "bench/fuzz.sh: $target printed no statistics (exit $rc); see $log" >&2
            tail -20 "$out" >&2
            exit 2
        fi
        done_runs=$((done_runs + ran))
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
        printf '    chunk %d: %d executions (%s/s), %d so far\n' "$chunk_no" "$ran" "$rate" "$done_runs"
        if ((rc != 0)); then
            artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -1)
            if [[ -z $artifact || ! -f $artifact ]]; then
                echo "bench/fuzz.sh: $target failed (exit $rc) without an artifact; see $log" >&2
                tail -20 "$out" >&2
                exit 2
            fi
            found=$((found + 1))
            cp "$artifact" "$crashes/"
            echo "    CRASH ($(basename "$artifact")), kept in $crashes:"
            grep -m1 -A3 "panicked at" "$out" | sed 's/^/      /' || true
            if ((found >= MAX_CRASHES)); then
                echo "    $MAX_CRASHES crashes: stopping $target"
                break
            fi
        fi
    done
    secs=$(($(date +%s) - start))
    files=$(find "$corpus" -type f | wc -l)
    kib=$(find "$corpus" -type f -printf "%s\n" | awk "{ s += \$1 } END { printf \"%d\", s / 1024 }")
    total_crashes=$((total_crashes + found))
    summary+=("$(printf '%-9s %12d executions  %6d s  %8.0f exec/s  corpus %6d files (%d KiB)  crashes %d' \
        "$target" "$done_runs" "$secs" "$(awk -v r="$done_runs" -v s="$secs" 'BEGIN { print (s > 0 ? r / s : r) }')" \
        "$files" "$kib" "$found")")
done

echo "==> totals (sanitizer: $SANITIZER, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- "$CRATE" || echo ', uncommitted changes'))"
for line in "${summary[@]}"; do echo "    $line"; done
if ((total_crashes > 0)); then
    echo "bench/fuzz.sh: $total_crashes crashing inputs kept in $WORK/crashes/" >&2
    exit 1
fi
