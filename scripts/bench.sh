#!/usr/bin/env bash
# Side-by-side benchmark of redis-loadgen vs redis-benchmark, in one run.
# NOT a test: it takes minutes and its figures depend on the machine.
#
# Starts its own redis-server (no persistence) on a free loopback port, builds the
# release binary, then for each pipeline depth runs ROUNDS rounds; each round runs
# both tools with the same load (50 connections, SET/GET 1:1, 32-byte values,
# 10000 keys), flipping which tool goes first every round. Prints per-round
# figures and a median-of-rounds summary.
#
# Absolute figures drift from run to run (CPU frequency, noisy neighbours, cache
# state): compare the two tools within one run, not across runs.
#
# Environment:
#   PIPELINES="1 100"  pipeline depths to test
#   ROUNDS=3           rounds per pipeline depth
#   DURATION=8         redis-loadgen run length, seconds
#   N                  redis-benchmark requests per test (SET and GET each), all depths
#   N_<P>              the same for one depth, e.g. N_1=400000 N_100=12000000
#                      (defaults: 400000 for P=1, 3000000 below P=50, 12000000 above;
#                      aim for about DURATION seconds per redis-benchmark run)
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

PIPELINES="${PIPELINES:-1 100}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
LOADGEN="$REPO_DIR/target/release/redis-loadgen"
HOST=127.0.0.1
# shellcheck source=scripts/bench-lib.sh
source "$REPO_DIR/scripts/bench-lib.sh"

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Redis: ./setup.sh or apt-get install redis-server redis-tools)"
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
for p in $PIPELINES; do
    [[ "$p" =~ ^[1-9][0-9]*$ ]] || die "PIPELINES must hold positive integers (got '$p')"
done

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-loadgen-bench.XXXXXX")"
REDIS_PID=""

cleanup() {
    stop_pid "$REDIS_PID"
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

requests_for() {
    local p=$1 var="N_$1"
    if [[ -n "${!var:-}" ]]; then
        echo "${!var}"
    elif [[ -n "${N:-}" ]]; then
        echo "$N"
    elif [[ "$p" -eq 1 ]]; then
        echo 400000
    elif [[ "$p" -lt 50 ]]; then
        echo 3000000
    else
        # ~3M ops/s per test at deep pipelines: both tests together take about as long as
        # one redis-loadgen run, so both tools see the machine in the same state.
        echo 12000000
    fi
}

# shellcheck disable=SC2054 # the commas are part of the arguments (set,get)
bench_cmd() { # pipeline requests
    BENCH_CMD=(redis-benchmark -h "$HOST" -p "$PORT" -c 50 -n "$2" -P "$1" -d 32 -r 10000
        -t set,get --csv -q)
}

# shellcheck disable=SC2054 # the commas are part of the arguments (SET,GET)
loadgen_cmd() { # pipeline json-file
    LOADGEN_CMD=("$LOADGEN" --host "$HOST" --port "$PORT" --clients 5 --threads-per-client 10
        --operations SET,GET --operation-weights '{"SET":1,"GET":1}' --value-size 32
        --key-range 10000 --duration "$DURATION" --quiet --output-file "$2")
    if [[ "$1" -gt 1 ]]; then
        LOADGEN_CMD+=(--use-pipeline --pipeline-size "$1")
    fi
}

# Prints a command so that it can be pasted into a shell.
show_cmd() {
    local arg out="  "
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            out+="$arg "
        else
            out+="'${arg//\'/\'\\\'\'}' "
        fi
    done
    echo "${out% }"
}

flush() { redis-cli -h "$HOST" -p "$PORT" flushall >/dev/null; }

# Appends one row to $RESULTS: pipeline tool round ops/s us/op p50 p99
run_bench() { # pipeline round
    local p=$1 round=$2 n csv="$WORK_DIR/bench.csv" timing="$WORK_DIR/bench.time" cpu row
    n="$(requests_for "$p")"
    bench_cmd "$p" "$n"
    flush
    local TIMEFORMAT='%3U %3S'
    if ! { time "${BENCH_CMD[@]}" >"$csv" 2>"$WORK_DIR/bench.err"; } 2>"$timing"; then
        cat "$WORK_DIR/bench.err" >&2
        die "redis-benchmark failed"
    fi
    cpu="$(tail -n1 "$timing")"
    row="$(python3 - "$csv" "$n" "$cpu" <<'PY'
import csv, sys
path, n, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
rps = {r["test"]: float(r["rps"]) for r in csv.DictReader(open(path))}
if not {"SET", "GET"} <= rps.keys():
    sys.exit("redis-benchmark CSV lacks SET/GET rows: %r" % rps)
# N SETs then N GETs: total commands over total time (the harmonic mean of the two rates),
# the same figure redis-loadgen reports for its 1:1 mix. The arithmetic mean would overstate it.
ops = 2 / (1 / rps["SET"] + 1 / rps["GET"])
us = (float(cpu[0]) + float(cpu[1])) * 1e6 / (2 * n)
print(f"{ops:.0f} {us:.3f} - -")
PY
)"
    record "$p" redis-benchmark "$round" "$row"
}

run_loadgen() { # pipeline round
    local p=$1 round=$2 json="$WORK_DIR/loadgen.json" row
    loadgen_cmd "$p" "$json"
    flush
    rm -f "$json"
    if ! "${LOADGEN_CMD[@]}" >"$WORK_DIR/loadgen.out" 2>&1; then
        tail -n 20 "$WORK_DIR/loadgen.out" >&2
        die "redis-loadgen failed"
    fi
    row="$(python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("{:.0f} {:.3f} {:.3f} {:.3f}".format(
    r["overall_throughput"], r["client_cpu"]["us_per_op"],
    r["latency_ms"]["p50"], r["latency_ms"]["p99"]))
PY
)"
    record "$p" redis-loadgen "$round" "$row"
}

ROW_FMT='%-16s %5s %12s %14s %9s %9s\n'
print_header() {
    # shellcheck disable=SC2059
    printf "$ROW_FMT" tool round "ops/s" "client us/op" "p50 ms" "p99 ms"
}
print_row() { # pipeline tool round ops us p50 p99
    # shellcheck disable=SC2059
    printf "$ROW_FMT" "$2" "$3" "$4" "$5" "$6" "$7"
}

record() { # pipeline tool round "ops us p50 p99"
    local ops us p50 p99
    read -r ops us p50 p99 <<<"$4"
    echo "$1 $2 $3 $ops $us $p50 $p99" >>"$RESULTS"
    print_row "$1" "$2" "$3" "$ops" "$us" "$p50" "$p99"
}

print_summary() {
    python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    p, tool, _round, ops, us, p50, p99 = line.split()
    rows.setdefault((int(p), tool), []).append((ops, us, p50, p99))
def med(vals):
    vals = [float(v) for v in vals if v != "-"]
    return statistics.median(vals) if vals else None
fmt = "{:>8} {:<16} {:>6} {:>12} {:>14} {:>9} {:>9}"
print(fmt.format("pipeline", "tool", "rounds", "ops/s", "client us/op", "p50 ms", "p99 ms"))
for (p, tool), rs in sorted(rows.items()):
    ops, us, p50, p99 = (med(col) for col in zip(*rs))
    show = lambda v, spec: "-" if v is None else format(v, spec)
    print(fmt.format(p, tool, len(rs), show(ops, ".0f"), show(us, ".3f"),
                     show(p50, ".3f"), show(p99, ".3f")))
PY
}

echo "== build"
cargo build --release
[[ -x "$LOADGEN" ]] || die "$LOADGEN missing after the build"

start_redis
RESULTS="$WORK_DIR/results.txt"
: >"$RESULTS"

echo
echo "== machine"
echo "cpus (nproc): $(nproc)"
if [[ -r /proc/cpuinfo ]]; then
    echo "cpu model:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
fi
echo "kernel:       $(uname -sr)"
echo "server:       $(redis-server --version)"
echo "benchmark:    $(redis-benchmark --version)"
echo "loadgen:      $("$LOADGEN" --version 2>/dev/null || echo unknown)"
echo "redis-server: pid $REDIS_PID on $HOST:$PORT (--save \"\" --appendonly no)"
echo "settings:     PIPELINES=\"$PIPELINES\" ROUNDS=$ROUNDS DURATION=$DURATION"
echo "note: rounds alternate which tool runs first; FLUSHALL before every run."
echo "      absolute figures drift run to run: compare within one run."
echo "      redis-benchmark: ops/s = 2N / (N/SET rps + N/GET rps), i.e. all commands over all time;"
echo "                       us/op = (user+sys) / (2*N)"
echo "      redis-loadgen:   overall_throughput, client_cpu.us_per_op, latency_ms from its JSON"

for p in $PIPELINES; do
    bench_cmd "$p" "$(requests_for "$p")"
    loadgen_cmd "$p" "$WORK_DIR/loadgen.json"
    echo
    echo "== pipeline $p"
    echo "commands:"
    show_cmd "${BENCH_CMD[@]}"
    show_cmd "${LOADGEN_CMD[@]}"
    echo
    print_header
    for ((round = 1; round <= ROUNDS; round++)); do
        if ((round % 2 == 1)); then
            run_bench "$p" "$round"
            run_loadgen "$p" "$round"
        else
            run_loadgen "$p" "$round"
            run_bench "$p" "$round"
        fi
    done
done

echo
echo "== summary (median of $ROUNDS round(s))"
print_summary
