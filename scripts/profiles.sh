#!/usr/bin/env bash
# Runs every workload profile against one local redis-server it starts (free loopback port,
# no persistence, stopped on exit) and prints ops/s, p50/p99 and, for pubsub_test and
# stream_request_reply, delivery / request->reply latency. NOT a test: figures depend on the
# machine; compare within one run.
#
# Environment: DURATION (seconds per profile, default 5), PROFILES (default: all).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"
DURATION="${DURATION:-5}"
LOADGEN="$REPO_DIR/target/release/redis-loadgen"

cargo build --release --quiet
PROFILES="${PROFILES:-$("$LOADGEN" list-profiles | awk '{print $1}')}"

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-loadgen-profiles.XXXXXX")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$WORK_DIR" --logfile "$WORK_DIR/redis.log" &
REDIS_PID=$!
cleanup() {
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
for _ in $(seq 50); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

echo "machine: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), ${DURATION}s per profile"
printf '%-22s %12s %9s %9s  %s\n' profile "commands/s" "p50 ms" "p99 ms" "workload figures"
for profile in $PROFILES; do
    redis-cli -p "$PORT" flushall >/dev/null
    "$LOADGEN" --port "$PORT" --workload-profile "$profile" --duration "$DURATION" --quiet \
        --log-level error --output-file "$WORK_DIR/$profile.json"
    python3 - "$WORK_DIR/$profile.json" "$profile" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
extra = []
for op in ("RECEIVE", "REQUEST_REPLY", "EXEC"):
    if op in r["operations"]:
        o = r["operations"][op]
        extra.append("%s %.0f/s p50 %.3f p99 %.3f ms" % (op, o["ops_per_second"], o["latency_ms"]["p50"], o["latency_ms"]["p99"]))
for k in ("lost", "duplicated", "unanswered", "transactions_aborted"):
    if k in r.get("counters", {}):
        extra.append("%s %d" % (k, r["counters"][k]))
if r.get("checks"):
    extra.append("checks " + json.dumps(r["checks"], separators=(",", ":"))[:120])
print("%-22s %12.0f %9.3f %9.3f  %s" % (sys.argv[2], r["overall_throughput"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], "; ".join(extra)))
PY
done
