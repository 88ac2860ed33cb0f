#!/usr/bin/env bash
# Health of the stack setup.sh started, in either mode, plus quick figures per app_name from
# Prometheus over the last minute: operations/s, p99 latency (ms) and error rate (%).
#
# Native mode: each service's pid (from the run directory's pid files) is alive and is the
# process setup.sh started, redis-server answers PING, Prometheus answers /-/ready; also shows
# whether Prometheus reaches redis-loadgen's /metrics (only up while a run with
# --prometheus-listen is going, so not a failure).
# Docker mode: every Compose container runs and passes its health check; Prometheus is ready.
#
# Exit 0 when everything is healthy, 1 when something is down or nothing is set up.
# Environment: as setup.sh (SETUP_MODE, STACK_RUN_DIR, ...); STATUS_WINDOW=1m is the range
# of the rate() queries; PROMETHEUS_URL overrides which Prometheus is asked.
set -euo pipefail

# shellcheck source=scripts/stack-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/stack-lib.sh"

STATUS_WINDOW="${STATUS_WINDOW:-1m}"
UNHEALTHY=0

usage() {
    echo "usage: ./status.sh   (SETUP_MODE=native|docker to look at one mode only)"
}

# One line per check: name, ok/DOWN/info, details.
report() {
    local name=$1 verdict=$2 details=$3
    printf '  %-14s %-5s %s\n' "$name" "$verdict" "$details"
    if [[ "$verdict" == "DOWN" ]]; then
        UNHEALTHY=1
    fi
}

native_status() {
    local pid port
    read_state
    printf '== native stack (run dir %s)\n' "$RUN_DIR"

    port="${STATE_REDIS_PORT:-6379}"
    pid="$(pid_from_file "$RUN_DIR/redis.pid" 2>/dev/null || true)"
    if [[ -z "$pid" ]]; then
        report redis-server DOWN "not running (no pid file); ./setup.sh starts it"
    elif ! owns_redis "$pid"; then
        report redis-server DOWN "pid $pid is gone or is not the redis-server setup.sh started; ./setup.sh restarts it"
    elif [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" != "PONG" ]]; then
        report redis-server DOWN "pid $pid alive, but no PONG on 127.0.0.1:$port"
    else
        report redis-server ok "127.0.0.1:$port, pid $pid, PING -> PONG"
    fi

    port="${STATE_PROMETHEUS_PORT:-9090}"
    PROMETHEUS_URL="${PROMETHEUS_URL:-http://127.0.0.1:$port}"
    pid="$(pid_from_file "$RUN_DIR/prometheus.pid" 2>/dev/null || true)"
    if [[ -z "$pid" ]]; then
        report prometheus DOWN "not running (no pid file); ./setup.sh starts it"
    elif ! owns_prometheus "$pid"; then
        report prometheus DOWN "pid $pid is gone or is not the Prometheus setup.sh started; ./setup.sh restarts it"
    elif ! http_get "$PROMETHEUS_URL/-/ready" >/dev/null; then
        report prometheus DOWN "pid $pid alive, but $PROMETHEUS_URL/-/ready does not answer 200"
    else
        report prometheus ok "$PROMETHEUS_URL, pid $pid, ready"
        local target="127.0.0.1:${STATE_LOADGEN_METRICS_PORT:-9464}" up
        up="$(prom_query "up{job=\"redis-loadgen\"}" | awk '{ print $2 }' | head -n1)"
        if [[ "$up" == "1" ]]; then
            report "scrape target" info "$target up at the last scrape (a redis-loadgen run is being scraped)"
        else
            report "scrape target" info "$target down at the last scrape: no redis-loadgen running with --prometheus-listen $target"
        fi
    fi
    printf '  not in native mode: Grafana, Jaeger, OpenTelemetry Collector (they need Docker)\n'
}

docker_status() {
    local lines name state health code
    printf '== Docker stack (%s)\n' "${COMPOSE[*]}"
    lines="$(compose_containers)"
    if [[ -z "$lines" ]]; then
        report compose DOWN "no containers; ./setup.sh starts them"
        return 0
    fi
    while read -r name state health code; do
        if [[ "$state" == "running" && ("$health" == "healthy" || "$health" == "-") ]]; then
            if [[ "$health" == "-" ]]; then
                report "$name" ok "running (no health check)"
            else
                report "$name" ok "running, healthy"
            fi
        elif [[ "$state" == "exited" && "$code" == "0" ]]; then
            report "$name" info "finished (exit 0)"
        else
            report "$name" DOWN "$state, health: $health${code:+, exit code $code}"
        fi
    done <<<"$lines"
    PROMETHEUS_URL="${PROMETHEUS_URL:-http://127.0.0.1:9090}"
    if http_get "$PROMETHEUS_URL/-/ready" >/dev/null; then
        report prometheus-api ok "$PROMETHEUS_URL ready"
    else
        report prometheus-api DOWN "$PROMETHEUS_URL/-/ready does not answer 200"
    fi
    printf '  Grafana http://localhost:3000 (admin/admin), Jaeger http://localhost:16686\n'
}

# Runs an instant PromQL query; prints "app_name value" per series ("-" when unlabelled).
prom_query() {
    local body
    body="$(curl -fsS --max-time 5 -G --data-urlencode "query=$1" \
        "$PROMETHEUS_URL/api/v1/query" 2>/dev/null)" || return 0
    python3 -c '
import json, sys
doc = json.load(sys.stdin)
for s in doc.get("data", {}).get("result", []):
    print(s["metric"].get("app_name", "-"), s["value"][1])
' <<<"$body" 2>/dev/null || true
}

# The figures per app_name, from the rates over the last STATUS_WINDOW.
quick_numbers() {
    command -v python3 >/dev/null 2>&1 || {
        printf '  (python3 is missing: no figures)\n'
        return 0
    }
    local w="$STATUS_WINDOW" ops p99 err
    local total="sum by (app_name) (rate(redis_operations_total[$w]))"
    printf '\n== last %s per app_name (%s)\n' "$w" "$PROMETHEUS_URL"
    if ! http_get "$PROMETHEUS_URL/-/ready" >/dev/null; then
        printf '  Prometheus does not answer: no figures\n'
        return 0
    fi
    ops="$(prom_query "$total")"
    if [[ -z "$ops" ]]; then
        printf '  no redis-loadgen data in the last %s: start a run (see ./setup.sh output)\n' "$w"
        return 0
    fi
    p99="$(prom_query "histogram_quantile(0.99, sum by (app_name, le) (rate(redis_operation_duration_milliseconds_bucket[$w])))")"
    # No error series yet means 0 errors, not "no data": fill them in with 0 x the total.
    err="$(prom_query "100 * (sum by (app_name) (rate(redis_operations_total{status=\"error\"}[$w])) or $total * 0) / $total")"
    python3 -c '
import math, sys

def table(text):
    out = {}
    for line in text.splitlines():
        if line.strip():
            app, value = line.split(" ", 1)
            out[app] = float(value)
    return out

def fmt(v, digits):
    return "-" if v is None or math.isnan(v) or math.isinf(v) else "%.*f" % (digits, v)

ops, p99, err = (table(t) for t in sys.argv[1:4])
print("  %-16s %12s %10s %9s" % ("app_name", "ops/s", "p99 ms", "errors %"))
for app in sorted(ops):
    print("  %-16s %12s %10s %9s" % (app, fmt(ops[app], 1), fmt(p99.get(app), 3), fmt(err.get(app), 2)))
' "$ops" "$p99" "$err"
}

main() {
    case "${1:-}" in
    "") ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
    check_mode
    resolve_run_dir
    local native=0 docker=0
    case "$SETUP_MODE" in
    native) native=1 ;;
    docker)
        docker_available || die "SETUP_MODE=docker, but no Docker engine with Compose is available"
        docker=1
        ;;
    auto)
        have_native_state && native=1
        if docker_available && [[ -f "$COMPOSE_FILE_PATH" && -n "$(compose_containers)" ]]; then
            docker=1
        fi
        ;;
    esac
    if [[ $native -eq 0 && $docker -eq 0 ]]; then
        printf 'Nothing is set up (no Docker stack running, no native run dir at %s): run ./setup.sh\n' "$RUN_DIR"
        exit 1
    fi
    if [[ $native -eq 1 ]]; then
        native_status
    fi
    if [[ $docker -eq 1 ]]; then
        docker_status
    fi
    quick_numbers
    if [[ $UNHEALTHY -ne 0 ]]; then
        printf '\nSomething is down (see above).\n'
        exit 1
    fi
    printf '\nAll healthy.\n'
}

main "$@"
