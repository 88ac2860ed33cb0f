#!/usr/bin/env bash
# Undoes setup.sh: stops the redis-server that setup.sh started (found by the
# pid file in .run/, and only if that pid is a redis-server process).
# Usage: ./cleanup.sh [--remove-data]   (--remove-data also deletes .run/)
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="$REPO_DIR/.run"
REDIS_PIDFILE="$RUN_DIR/redis-6379.pid"
REMOVE_DATA=0

log() { printf '==> %s\n' "$*"; }

usage() {
    echo "usage: $0 [--remove-data]"
}

parse_args() {
    local arg
    for arg in "$@"; do
        case "$arg" in
        --remove-data) REMOVE_DATA=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            exit 2
            ;;
        esac
    done
}

is_redis_pid() {
    local pid=$1 comm
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || ps -p "$pid" -o comm= 2>/dev/null || true)"
    [[ "$comm" == redis-server* ]]
}

# Stops the redis-server recorded in the pid file (TERM, then KILL after 10 s).
stop_redis() {
    if [[ ! -f "$REDIS_PIDFILE" ]]; then
        log "no pid file ($REDIS_PIDFILE): no Redis started by setup.sh is running"
        return 0
    fi
    local pid
    pid="$(tr -dc '0-9' <"$REDIS_PIDFILE")"
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
        log "pid file names no running process${pid:+ (pid $pid)}; removing stale pid file"
        rm -f "$REDIS_PIDFILE"
        return 0
    fi
    if ! is_redis_pid "$pid"; then
        log "pid $pid is not a redis-server process; leaving it alone (removing stale pid file)"
        rm -f "$REDIS_PIDFILE"
        return 0
    fi
    log "stopping redis-server (pid $pid)"
    kill -TERM "$pid"
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "redis-server (pid $pid) still running after 10 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$REDIS_PIDFILE"
    log "redis-server stopped"
}

remove_data() {
    if [[ $REMOVE_DATA -eq 1 ]]; then
        if [[ -d "$RUN_DIR" ]]; then
            rm -rf "$RUN_DIR"
            log "removed $RUN_DIR"
        else
            log "nothing to remove ($RUN_DIR does not exist)"
        fi
    elif [[ -d "$RUN_DIR" ]]; then
        log "kept $RUN_DIR (logs); pass --remove-data to delete it"
    fi
}

main() {
    parse_args "$@"
    stop_redis
    remove_data
}

main "$@"
