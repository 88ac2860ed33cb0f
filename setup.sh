#!/usr/bin/env bash
# Brings up what a user needs to watch a redis-loadgen run, then builds the release binary
# when it is missing, so that this works on a fresh machine:
#   ./setup.sh && target/release/redis-loadgen --workload-profile high_throughput
#
# Docker mode (a Docker engine answers `docker info` and Compose is installed): starts
# docker-compose.yml (Redis, OpenTelemetry Collector, Prometheus, Grafana, Jaeger) with
# `up -d`, waits until every container is running and healthy, and prints the URLs.
#
# Native mode (no Docker engine, or SETUP_MODE=native): starts redis-server and a Prometheus
# that scrapes redis-loadgen's own /metrics (127.0.0.1:9464, every 5 s) on 127.0.0.1, from
# Debian packages (installed with apt when running as root). Data, logs and pid files live in
# one run directory (.run/native/). Grafana, Jaeger and the Collector need Docker.
#
# Rerunning is safe: services already up are left alone. ./status.sh shows their health and
# the current figures; ./cleanup.sh stops them (--remove-data also deletes their data).
# Settings (environment): see scripts/stack-lib.sh; LOADGEN_BIN is the binary to build/print.
set -euo pipefail

# shellcheck source=scripts/stack-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/stack-lib.sh"

# Explicit settings (an empty value means "not set"); the defaults are only preferences.
EXPLICIT_REDIS_PORT="${REDIS_PORT:-}"
EXPLICIT_PROMETHEUS_PORT="${PROMETHEUS_PORT:-}"
DEFAULT_BIN="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/redis-loadgen"
LOADGEN_BIN="${LOADGEN_BIN:-$DEFAULT_BIN}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-180}"

usage() {
    cat <<'USAGE'
usage: ./setup.sh
Starts the observability stack (Docker Compose, or a native redis-server + Prometheus without
a Docker engine) and builds target/release/redis-loadgen when it is missing.
Environment: SETUP_MODE=auto|docker|native, STACK_RUN_DIR, REDIS_PORT, PROMETHEUS_PORT,
LOADGEN_METRICS_PORT, SCRAPE_INTERVAL, HEALTH_TIMEOUT, LOADGEN_BIN (see scripts/stack-lib.sh).
USAGE
}

# ---------------------------------------------------------------------------------------------
# Packages (native mode)

# Installs the Debian packages behind the missing commands, or says how to when not root.
ensure_packages() {
    local missing=() cmd pkg
    for cmd in redis-server:redis-server redis-cli:redis-tools prometheus:prometheus \
        curl:curl python3:python3; do
        pkg="${cmd#*:}"
        cmd="${cmd%%:*}"
        if ! command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    # --no-install-recommends: the prometheus package recommends node-exporter, which would
    # start on machines where packages start services.
    local install="apt-get install -y --no-install-recommends ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing: ${missing[*]}; install them with your package manager and re-run"
    fi
    if [[ $(id -u) -ne 0 ]]; then
        die "missing: ${missing[*]}; install them and re-run: sudo $install"
    fi
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get update
    fi
    # shellcheck disable=SC2086 # $install is a word list built above
    if ! $install; then
        apt-get update
        # shellcheck disable=SC2086
        $install
    fi
}

# ---------------------------------------------------------------------------------------------
# Native mode

# Prints the port a native service should use: the running one's, the explicit one, the one it
# had last time, or the default; a taken port that was not asked for explicitly moves on to
# the next free one (6379 may be someone's own Redis, whose keys a load run would clobber).
pick_port() {
    local name=$1 env_var=$2 explicit=$3 state=$4 default=$5 running=$6 port i
    if [[ -n "$running" ]]; then
        if [[ -n "$explicit" && "$explicit" != "$running" ]]; then
            warn "$name is already running on port $running; $env_var=$explicit applies after ./cleanup.sh"
        fi
        printf '%s\n' "$running"
        return 0
    fi
    if [[ -n "$explicit" ]]; then
        [[ "$explicit" =~ ^[0-9]+$ ]] || die "$env_var must be a port number (got '$explicit')"
        port_open "$explicit" &&
            die "port $explicit ($env_var) is taken by another process; pick a free one"
        printf '%s\n' "$explicit"
        return 0
    fi
    port="${state:-$default}"
    for ((i = 0; i < 20; i++)); do
        if ! port_open "$((port + i))"; then
            if [[ $i -gt 0 ]]; then
                log "port $port is taken; $name uses $((port + i)) (set $env_var to choose)" >&2
            fi
            printf '%s\n' "$((port + i))"
            return 0
        fi
    done
    die "ports $port-$((port + 19)) are all taken; set $env_var to a free port"
}

redis_ping() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == "PONG" ]]
}

prometheus_ready() {
    http_get "http://127.0.0.1:$1/-/ready" >/dev/null
}

# Prints the running pid of a service started earlier from this run directory, if any.
running_pid() {
    local service=$1 pid
    pid="$(pid_from_file "$RUN_DIR/$service.pid" 2>/dev/null)" || return 0
    if "owns_$service" "$pid"; then
        printf '%s\n' "$pid"
    fi
}

REDIS_STARTED=0
PROMETHEUS_STARTED=0

start_redis() {
    if [[ -n "$REDIS_RUNNING_PID" ]]; then
        redis_ping "$REDIS_PORT" ||
            die "redis-server (pid $REDIS_RUNNING_PID) runs but does not answer PING on 127.0.0.1:$REDIS_PORT; ./cleanup.sh, then re-run"
        log "redis-server is already running on 127.0.0.1:$REDIS_PORT (pid $REDIS_RUNNING_PID)"
        return 0
    fi
    mkdir -p "$RUN_DIR/redis"
    rm -f "$RUN_DIR/redis.pid"
    log "starting redis-server on 127.0.0.1:$REDIS_PORT (log $RUN_DIR/redis.log)"
    # A throwaway server for load runs: no persistence (the load's keys are not worth keeping).
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save "" --appendonly no --daemonize yes \
        --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log" --dir "$RUN_DIR/redis" ||
        die "redis-server failed to start; see $RUN_DIR/redis.log"
    REDIS_STARTED=1
    local i
    for ((i = 0; i < 100; i++)); do
        if redis_ping "$REDIS_PORT" && [[ -s "$RUN_DIR/redis.pid" ]]; then
            log "redis-server is up (pid $(pid_from_file "$RUN_DIR/redis.pid"))"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$RUN_DIR/redis.log" >&2 || true
    die "redis-server did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s (log: $RUN_DIR/redis.log)"
}

# Writes prometheus.yml for the current settings; prints "changed" when it differs from before.
write_prometheus_config() {
    local config="$RUN_DIR/prometheus.yml" new
    new="$(
        cat <<YAML
# Written by setup.sh (native mode); rewritten on every run.
global:
  scrape_interval: $SCRAPE_INTERVAL
  scrape_timeout: $SCRAPE_INTERVAL
  evaluation_interval: $SCRAPE_INTERVAL
scrape_configs:
  # redis-loadgen's own endpoint: run it with --prometheus-listen 127.0.0.1:$LOADGEN_METRICS_PORT
  - job_name: redis-loadgen
    static_configs:
      - targets: ['127.0.0.1:$LOADGEN_METRICS_PORT']
YAML
    )"
    if [[ -f "$config" && "$(cat "$config")" == "$new" ]]; then
        return 0
    fi
    printf '%s\n' "$new" >"$config.tmp"
    if command -v promtool >/dev/null 2>&1; then
        promtool check config "$config.tmp" >/dev/null 2>&1 || {
            promtool check config "$config.tmp" >&2 || true
            die "the generated Prometheus config is invalid (SCRAPE_INTERVAL=$SCRAPE_INTERVAL?)"
        }
    fi
    mv "$config.tmp" "$config"
    printf 'changed\n'
}

start_prometheus() {
    local changed
    changed="$(write_prometheus_config)"
    if [[ -n "$PROMETHEUS_RUNNING_PID" ]]; then
        if [[ -n "$changed" ]]; then
            log "Prometheus config changed; reloading (SIGHUP to pid $PROMETHEUS_RUNNING_PID)"
            kill -HUP "$PROMETHEUS_RUNNING_PID"
        fi
        prometheus_ready "$PROMETHEUS_PORT" ||
            die "Prometheus (pid $PROMETHEUS_RUNNING_PID) runs but is not ready on 127.0.0.1:$PROMETHEUS_PORT; ./cleanup.sh, then re-run"
        log "Prometheus is already running on 127.0.0.1:$PROMETHEUS_PORT (pid $PROMETHEUS_RUNNING_PID)"
        return 0
    fi
    mkdir -p "$RUN_DIR/prometheus"
    log "starting Prometheus on 127.0.0.1:$PROMETHEUS_PORT (log $RUN_DIR/prometheus.log)"
    local launcher=()
    # Its own session: a Ctrl-C in the terminal that ran setup.sh must not reach it.
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid)
    fi
    "${launcher[@]}" prometheus \
        "--config.file=$RUN_DIR/prometheus.yml" \
        "--storage.tsdb.path=$RUN_DIR/prometheus" \
        --storage.tsdb.retention.time=30d \
        "--web.listen-address=127.0.0.1:$PROMETHEUS_PORT" \
        </dev/null >>"$RUN_DIR/prometheus.log" 2>&1 &
    local pid=$!
    printf '%s\n' "$pid" >"$RUN_DIR/prometheus.pid"
    PROMETHEUS_STARTED=1
    local i
    for ((i = 0; i < 300; i++)); do
        if ! pid_alive "$pid"; then
            tail -n 20 "$RUN_DIR/prometheus.log" >&2 || true
            die "Prometheus exited at start-up (log: $RUN_DIR/prometheus.log)"
        fi
        if prometheus_ready "$PROMETHEUS_PORT"; then
            owns_prometheus "$pid" || die "pid $pid is not the Prometheus just started"
            log "Prometheus is up (pid $pid)"
            wait_first_scrape
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$RUN_DIR/prometheus.log" >&2 || true
    die "Prometheus was not ready on 127.0.0.1:$PROMETHEUS_PORT within 30 s (log: $RUN_DIR/prometheus.log)"
}

# A fresh Prometheus scrapes for the first time ~5 s after it is ready: wait for that scrape
# attempt (the `up` series appears even while no redis-loadgen listens), so a run started right
# after setup.sh is scraped from its first interval on.
wait_first_scrape() {
    local i
    for ((i = 0; i < 150; i++)); do
        if http_get -G --data-urlencode 'query=up{job="redis-loadgen"}' \
            "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" | grep -q '"__name__":"up"'; then
            log "Prometheus is scraping 127.0.0.1:$LOADGEN_METRICS_PORT every $SCRAPE_INTERVAL"
            return 0
        fi
        sleep 0.1
    done
    warn "Prometheus has not scraped 127.0.0.1:$LOADGEN_METRICS_PORT yet after 15 s; see $RUN_DIR/prometheus.log"
}

write_state() {
    cat >"$RUN_DIR/$STATE_FILE" <<STATE
REDIS_PORT=$REDIS_PORT
PROMETHEUS_PORT=$PROMETHEUS_PORT
LOADGEN_METRICS_PORT=$LOADGEN_METRICS_PORT
SCRAPE_INTERVAL=$SCRAPE_INTERVAL
STATE
}

# On a failed native start, say what is still running and how to stop it.
on_native_exit() {
    local rc=$?
    if [[ $rc -ne 0 && $((REDIS_STARTED + PROMETHEUS_STARTED)) -gt 0 ]]; then
        printf '\nsetup.sh failed (exit %s); what it started may still run: ./cleanup.sh stops it.\n' "$rc" >&2
    fi
}

setup_native() {
    ensure_packages
    mkdir -p "$RUN_DIR"
    resolve_run_dir
    touch "$RUN_DIR/$RUN_MARKER"
    read_state
    trap on_native_exit EXIT

    REDIS_RUNNING_PID="$(running_pid redis)"
    PROMETHEUS_RUNNING_PID="$(running_pid prometheus)"
    local redis_running="" prometheus_running=""
    [[ -z "$REDIS_RUNNING_PID" ]] || redis_running="${STATE_REDIS_PORT:-6379}"
    [[ -z "$PROMETHEUS_RUNNING_PID" ]] || prometheus_running="${STATE_PROMETHEUS_PORT:-9090}"
    REDIS_PORT="$(pick_port redis-server REDIS_PORT "$EXPLICIT_REDIS_PORT" \
        "$STATE_REDIS_PORT" 6379 "$redis_running")"
    PROMETHEUS_PORT="$(pick_port Prometheus PROMETHEUS_PORT "$EXPLICIT_PROMETHEUS_PORT" \
        "$STATE_PROMETHEUS_PORT" 9090 "$prometheus_running")"
    LOADGEN_METRICS_PORT="${LOADGEN_METRICS_PORT:-${STATE_LOADGEN_METRICS_PORT:-9464}}"
    SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-${STATE_SCRAPE_INTERVAL:-5s}}"
    [[ "$LOADGEN_METRICS_PORT" =~ ^[0-9]+$ ]] ||
        die "LOADGEN_METRICS_PORT must be a port number (got '$LOADGEN_METRICS_PORT')"

    start_redis
    start_prometheus
    write_state
    build_binary
    print_native_summary
}

print_native_summary() {
    local bin already=()
    bin="$(display_bin)"
    [[ -z "$REDIS_RUNNING_PID" ]] || already+=(redis-server)
    [[ -z "$PROMETHEUS_RUNNING_PID" ]] || already+=(Prometheus)
    printf '\n'
    if [[ ${#already[@]} -eq 2 ]]; then
        printf 'The native stack was already up; nothing started.\n'
    else
        printf 'The native stack is up.\n'
    fi
    cat <<MSG
  Redis       127.0.0.1:$REDIS_PORT
  Prometheus  http://127.0.0.1:$PROMETHEUS_PORT  (scrapes redis-loadgen at 127.0.0.1:$LOADGEN_METRICS_PORT every $SCRAPE_INTERVAL)
  Run dir     $RUN_DIR  (data, logs, pid files)

Run a load that Prometheus sees:
  $bin --host 127.0.0.1 --port $REDIS_PORT --workload-profile high_throughput --duration 60 \\
    --prometheus-listen 127.0.0.1:$LOADGEN_METRICS_PORT --prometheus-linger 15s

Then: ./status.sh (health, ops/s, p99, errors per app_name) and ./cleanup.sh (stop; --remove-data deletes the data too).

Not in native mode: Grafana (dashboards), Jaeger (traces) and the OpenTelemetry Collector
(so --otel-endpoint has nothing to send to); query Prometheus directly instead, e.g.
  sum by (operation) (rate(redis_operations_total[1m]))
For the full stack, install Docker Engine with the Compose plugin
(https://docs.docker.com/engine/install/), then: ./cleanup.sh && ./setup.sh
MSG
}

# ---------------------------------------------------------------------------------------------
# Docker mode

# Waits (at most HEALTH_TIMEOUT s) until every container runs and passes its health check.
wait_healthy() {
    local deadline=$((SECONDS + HEALTH_TIMEOUT)) next_note=$((SECONDS + 10)) lines waiting
    log "waiting for the containers to be healthy (at most ${HEALTH_TIMEOUT} s)"
    while true; do
        lines="$(compose_containers)"
        # A one-shot container that finished successfully (exit 0) counts as done.
        waiting="$(awk '!(($2 == "running" && ($3 == "healthy" || $3 == "-")) || ($2 == "exited" && $4 == "0")) { print $1 " (" $2 ", " $3 ")" }' <<<"$lines")"
        if [[ -n "$lines" && -z "$waiting" ]]; then
            log "all containers are up: $(awk '{ print $1 }' <<<"$lines" | paste -sd ' ' -)"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            "${COMPOSE[@]}" ps >&2 || true
            die "not healthy after ${HEALTH_TIMEOUT} s: ${waiting:-no containers}; see: ${COMPOSE[*]} logs"
        fi
        if ((SECONDS >= next_note)); then
            log "still waiting for: $(paste -sd ' ' - <<<"$waiting")"
            next_note=$((SECONDS + 10))
        fi
        sleep 2
    done
}

setup_docker() {
    [[ -f "$COMPOSE_FILE_PATH" ]] || die "$COMPOSE_FILE_PATH is missing"
    local before
    before="$(compose_containers)"
    log "starting the stack: ${COMPOSE[*]} up -d"
    (cd "$REPO_DIR" && "${COMPOSE[@]}" up -d)
    wait_healthy
    build_binary
    local bin compose_cmd=docker-compose
    bin="$(display_bin)"
    [[ "${COMPOSE[0]}" != docker ]] || compose_cmd="docker compose"
    printf '\n'
    if [[ -n "$before" ]]; then
        printf 'The Docker stack was already up (compose up -d left it as it was, or updated it).\n'
    else
        printf 'The Docker stack is up.\n'
    fi
    cat <<MSG
  Grafana     http://localhost:3000  (admin / admin)
  Prometheus  http://localhost:9090
  Jaeger      http://localhost:16686
  Collector   OTLP gRPC localhost:4317, OTLP HTTP http://localhost:4318
  Redis       127.0.0.1:6379

Run a load that the dashboards show (the ports are published on 127.0.0.1 only):
  $bin --host 127.0.0.1 --port 6379 --workload-profile high_throughput --duration 60 \\
    --otel-endpoint http://127.0.0.1:4317
or inside the stack:
  $compose_cmd --profile loadgen run --rm redis-loadgen --duration 60

Then: ./status.sh (health, ops/s, p99, errors per app_name) and ./cleanup.sh (stop; --remove-data deletes the volumes too).
MSG
}

# ---------------------------------------------------------------------------------------------
# Both modes

# Builds the release binary when it is missing (cargo is incremental: quick when up to date).
build_binary() {
    if [[ -x "$LOADGEN_BIN" ]]; then
        return 0
    fi
    [[ "$LOADGEN_BIN" == "$DEFAULT_BIN" ]] || die "LOADGEN_BIN=$LOADGEN_BIN does not exist"
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found; install Rust (https://rustup.rs), then re-run to build $LOADGEN_BIN"
    log "building the release binary (cargo build --release)"
    (cd "$REPO_DIR" && cargo build --release)
    [[ -x "$LOADGEN_BIN" ]] || die "cargo build --release did not produce $LOADGEN_BIN"
}

# The binary's path as the user should type it: relative when run from the repository root.
display_bin() {
    if [[ "$PWD" == "$REPO_DIR" && "$LOADGEN_BIN" == "$REPO_DIR/"* ]]; then
        printf '%s\n' "${LOADGEN_BIN#"$REPO_DIR"/}"
    else
        printf '%s\n' "$LOADGEN_BIN"
    fi
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
    case "$SETUP_MODE" in
    native)
        log "native mode (SETUP_MODE=native)"
        setup_native
        ;;
    docker)
        docker_engine_up || die "SETUP_MODE=docker, but no Docker engine answers 'docker info'"
        find_compose || die "SETUP_MODE=docker, but neither 'docker compose' nor 'docker-compose' is installed"
        setup_docker
        ;;
    auto)
        if docker_engine_up; then
            if find_compose; then
                log "Docker engine found; using ${COMPOSE[*]}"
                setup_docker
                return 0
            fi
            log "a Docker engine answers, but Compose is missing (neither 'docker compose' nor 'docker-compose'); starting the NATIVE stack instead"
        elif command -v docker >/dev/null 2>&1; then
            log "no Docker engine is available ('docker info' fails: is the daemon running?); starting the NATIVE stack instead"
        else
            log "no Docker engine is available (docker is not installed); starting the NATIVE stack instead"
        fi
        setup_native
        ;;
    esac
}

main "$@"
