#!/usr/bin/env bash
# What OTLP export costs: the high_throughput profile with and without --otel-endpoint
# pointing at a real collector (rotel), in alternating rounds against one redis-server.
# NOT a test: its figures depend on the machine. Prints per-round ops/s and the client's CPU
# time per command (user + system, from the report's client_cpu), and their medians: on a
# shared 2-core box throughput swings with the neighbours, while CPU per command shows what
# the export itself costs the load generator.
#
# Needs rotel: ROTEL_AGENT=/path/to/rotel-agent, or the copy scripts/test.sh installs in
# target/tools. Uses the release binary (built here).
#
# Environment:
#   ROUNDS=3          rounds (each: one run without OTLP, one with, order flipped per round)
#   DURATION=8        seconds per run
#   PROTOCOL=grpc     grpc or http
#   EXPORT_MS=1000    --otel-export-interval (1 s: five times the default rate)
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
PROTOCOL="${PROTOCOL:-grpc}"
EXPORT_MS="${EXPORT_MS:-1000}"
TARGET="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
LOADGEN="$TARGET/release/redis-loadgen"
ROTEL_AGENT="${ROTEL_AGENT:-$REPO_DIR/target/tools/rotel-0.0.1a15/rotel/rotel-agent}"
HOST=127.0.0.1
# shellcheck source=scripts/bench-lib.sh
source "$REPO_DIR/scripts/bench-lib.sh"

for tool in redis-server redis-cli python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
[[ -x "$ROTEL_AGENT" ]] || die "rotel-agent not found at $ROTEL_AGENT (run scripts/test.sh once, or set ROTEL_AGENT)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-loadgen-bench-otlp.XXXXXX")"
REDIS_PID=""
ROTEL_PID=""

cleanup() {
    stop_pid "$REDIS_PID"
    stop_pid "$ROTEL_PID"
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() { # port
    local i
    for ((i = 0; i < 100; i++)); do
        if python3 -c "import socket,sys; socket.create_connection(('$HOST', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

echo "== building the release binary"
cargo build --release --quiet

start_redis

GRPC_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
# No debug log: the collector should cost what a real one costs, not print every point.
"$ROTEL_AGENT" start --otlp-grpc-endpoint "$HOST:$GRPC_PORT" \
    --otlp-http-endpoint "$HOST:$HTTP_PORT" --exporter blackhole >"$WORK_DIR/rotel.log" 2>&1 &
ROTEL_PID=$!
wait_port "$GRPC_PORT" || die "rotel did not start"
case "$PROTOCOL" in
grpc) ENDPOINT="http://$HOST:$GRPC_PORT" ;;
http) ENDPOINT="http://$HOST:$HTTP_PORT" ;;
*) die "PROTOCOL must be grpc or http (got '$PROTOCOL')" ;;
esac

run() { # label json [extra args...]
    local label=$1 json=$2
    shift 2
    redis-cli -h "$HOST" -p "$PORT" flushall >/dev/null
    "$LOADGEN" --host "$HOST" --port "$PORT" --workload-profile high_throughput \
        --duration "$DURATION" --metrics-interval 1 --quiet --output-file "$json" "$@" \
        >"$WORK_DIR/run.out" 2>&1 || {
        tail -n 20 "$WORK_DIR/run.out" >&2
        die "redis-loadgen failed ($label)"
    }
    if grep -q "OTLP.*failed" "$WORK_DIR/run.out"; then
        tail -n 20 "$WORK_DIR/run.out" >&2
        die "OTLP export failed during the run"
    fi
    python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
print("%.0f %.3f" % (r["overall_throughput"], r["client_cpu"]["us_per_op"]))' "$json"
}

printf '%-6s %14s %14s %14s %14s\n' round "off ops/s" "otlp ops/s" "off cpu us/op" "otlp cpu us/op"
OFF=()
ON=()
OFF_CPU=()
ON_CPU=()
for ((r = 1; r <= ROUNDS; r++)); do
    otlp_args=(--otel-endpoint "$ENDPOINT" --otel-protocol "$PROTOCOL" --otel-export-interval "$EXPORT_MS")
    if ((r % 2)); then
        read -r off off_cpu < <(run off "$WORK_DIR/off.json")
        read -r on on_cpu < <(run otlp "$WORK_DIR/on.json" "${otlp_args[@]}")
    else
        read -r on on_cpu < <(run otlp "$WORK_DIR/on.json" "${otlp_args[@]}")
        read -r off off_cpu < <(run off "$WORK_DIR/off.json")
    fi
    OFF+=("$off")
    ON+=("$on")
    OFF_CPU+=("$off_cpu")
    ON_CPU+=("$on_cpu")
    printf '%-6s %14s %14s %14s %14s\n' "$r" "$off" "$on" "$off_cpu" "$on_cpu"
done

python3 - "${OFF[*]}" "${ON[*]}" "${OFF_CPU[*]}" "${ON_CPU[*]}" <<'PY'
import statistics, sys
off, on, off_cpu, on_cpu = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:5])
print(f"median  {off:14.0f} {on:14.0f} {off_cpu:14.3f} {on_cpu:14.3f}")
print(f"OTLP on: throughput {100 * (on - off) / off:+.1f} %, client CPU per command {100 * (on_cpu - off_cpu) / off_cpu:+.1f} %")
PY
