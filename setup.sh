#!/usr/bin/env bash
# One-step setup for a new user: installs Redis (apt) if it is missing, starts a
# local redis-server on 127.0.0.1:6379 unless something already answers PING
# there, and builds the release binary. Afterwards:
#   target/release/redis-loadgen --workload-profile high_throughput
# Stop the Redis this script started with ./cleanup.sh.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="$REPO_DIR/.run"
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_PIDFILE="$RUN_DIR/redis-$REDIS_PORT.pid"
REDIS_LOGFILE="$RUN_DIR/redis-$REDIS_PORT.log"
STARTED_REDIS=0

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Installs redis-server and redis-tools with apt when they are missing.
install_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        log "Redis found: $(redis-server --version | head -n1)"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "redis-server is missing and apt-get is unavailable; install Redis (server + redis-cli) and re-run"
    [[ $(id -u) -eq 0 ]] ||
        die "redis-server is missing; install it as root: sudo apt-get install -y --no-install-recommends redis-server redis-tools"
    log "installing redis-server + redis-tools (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show redis-server redis-tools >/dev/null 2>&1; then
        apt-get update
    fi
    if ! apt-get install -y --no-install-recommends redis-server redis-tools; then
        apt-get update
        apt-get install -y --no-install-recommends redis-server redis-tools
    fi
}

# Keeps .run/ (pid file, log) out of git.
ignore_run_dir() {
    local gitignore="$REPO_DIR/.gitignore"
    if [[ ! -f "$gitignore" ]]; then
        printf '/target\n.run/\n' >"$gitignore"
    elif ! grep -qxF '.run/' "$gitignore"; then
        # Add a newline first if the file does not end with one.
        if [[ -s "$gitignore" && -n "$(tail -c1 "$gitignore")" ]]; then
            printf '\n' >>"$gitignore"
        fi
        printf '.run/\n' >>"$gitignore"
    fi
}

redis_answers() {
    [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

# Starts a throwaway (no persistence) redis-server on 127.0.0.1:6379 unless one answers.
start_redis() {
    if redis_answers; then
        log "Redis already answers PING on $REDIS_HOST:$REDIS_PORT; not starting another"
        return 0
    fi
    mkdir -p "$RUN_DIR"
    ignore_run_dir
    log "starting redis-server on $REDIS_HOST:$REDIS_PORT (pid file $REDIS_PIDFILE, log $REDIS_LOGFILE)"
    redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" \
        --save "" --appendonly no --daemonize yes \
        --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOGFILE" --dir "$RUN_DIR" ||
        die "redis-server failed to start; see $REDIS_LOGFILE"
    local i
    for ((i = 0; i < 50; i++)); do
        if redis_answers; then
            STARTED_REDIS=1
            log "Redis is up on $REDIS_HOST:$REDIS_PORT"
            return 0
        fi
        sleep 0.1
    done
    if [[ -f "$REDIS_LOGFILE" ]]; then
        tail -n 20 "$REDIS_LOGFILE" >&2
    fi
    die "Redis did not answer PING on $REDIS_HOST:$REDIS_PORT within 5 s (log: $REDIS_LOGFILE)"
}

# Builds the release binary (cargo is incremental: quick when nothing changed).
build_release() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found; install Rust (https://rustup.rs) and re-run"
    log "building release binary (cargo build --release)"
    (cd "$REPO_DIR" && cargo build --release)
}

print_next_steps() {
    cat <<MSG

Setup done. Next steps:
  target/release/redis-loadgen --workload-profile high_throughput
  target/release/redis-loadgen --help
MSG
    if [[ $STARTED_REDIS -eq 1 ]]; then
        printf '\nStop the Redis started here with: ./cleanup.sh   (add --remove-data to delete .run/ too)\n'
    else
        printf '\nRedis was already running on %s:%s; setup.sh did not start it.\n' "$REDIS_HOST" "$REDIS_PORT"
    fi
}

# On failure after Redis was started, say how to stop it.
on_exit() {
    local rc=$?
    if [[ $rc -ne 0 && $STARTED_REDIS -eq 1 ]]; then
        printf '\nsetup.sh failed (exit %s); the Redis it started is still running: ./cleanup.sh stops it.\n' "$rc" >&2
    fi
}

main() {
    trap on_exit EXIT
    install_redis
    start_redis
    build_release
    print_next_steps
}

main "$@"
