#!/usr/bin/env bash
# Stops what setup.sh started, in either mode.
#
# Native mode: stops the redis-server and Prometheus named by the run directory's pid files,
# and only when that pid is still the process setup.sh started (redis-server working in the
# run directory, Prometheus running the run directory's config): a pid that was reused by
# something else is never signalled. Logs and data stay unless --remove-data, which deletes
# the whole run directory.
# Docker mode: `compose down` (containers and network; the named volumes, e.g. Prometheus's
# data, stay), or `compose down -v` with --remove-data.
#
# Usage: ./cleanup.sh [--remove-data]
# Environment: as setup.sh (SETUP_MODE=auto|docker|native, STACK_RUN_DIR).
set -euo pipefail

# shellcheck source=scripts/stack-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/stack-lib.sh"

REMOVE_DATA=0

usage() {
    echo "usage: ./cleanup.sh [--remove-data]   (--remove-data also deletes data and volumes)"
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

# Stops one native service (TERM, then KILL after 15 s) if its pid file names a process
# setup.sh started; otherwise leaves whatever has that pid alone.
stop_service() {
    local service=$1 label=$2 pidfile="$RUN_DIR/$1.pid" pid i
    if [[ ! -f "$pidfile" ]]; then
        log "$label: no pid file, not running"
        return 0
    fi
    pid="$(pid_from_file "$pidfile" || true)"
    if [[ -z "$pid" ]] || ! pid_alive "$pid"; then
        log "$label: not running${pid:+ (pid $pid has exited)}; removing the stale pid file"
        rm -f "$pidfile"
        return 0
    fi
    if ! "owns_$service" "$pid"; then
        log "$label: pid $pid is not the $label setup.sh started; leaving it alone (removing the stale pid file)"
        rm -f "$pidfile"
        return 0
    fi
    log "$label: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        log "$label: pid $pid still running after 15 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
    fi
    pid_alive "$pid" && die "$label: pid $pid did not stop"
    rm -f "$pidfile"
    log "$label: stopped"
}

cleanup_native() {
    resolve_run_dir
    read_state
    log "native stack (run dir $RUN_DIR)"
    stop_service prometheus Prometheus
    stop_service redis redis-server
    if [[ $REMOVE_DATA -eq 1 ]]; then
        # Only a directory setup.sh made (it holds the marker) is deleted as a whole.
        if have_native_state; then
            rm -rf "$RUN_DIR"
            log "removed $RUN_DIR (data, logs, config)"
        else
            log "$RUN_DIR is not a run directory of setup.sh (no $RUN_MARKER): not deleting it"
        fi
    else
        log "kept $RUN_DIR (data and logs); --remove-data deletes it"
    fi
}

cleanup_docker() {
    local profiles args=(down --remove-orphans)
    [[ $REMOVE_DATA -eq 0 ]] || args+=(-v)
    # `down` only covers the services of the active profiles: name them all, so a
    # redis-loadgen container started with --profile goes too.
    profiles="$("${COMPOSE[@]}" config --profiles 2>/dev/null | paste -sd, - || true)"
    log "Docker stack: ${COMPOSE[*]} ${args[*]}${profiles:+ (profiles: $profiles)}"
    (cd "$REPO_DIR" && COMPOSE_PROFILES="$profiles" "${COMPOSE[@]}" "${args[@]}")
    if [[ $REMOVE_DATA -eq 1 ]]; then
        log "Docker stack stopped; its volumes were removed"
    else
        log "Docker stack stopped; its named volumes (Prometheus and Grafana data) are kept: --remove-data deletes them"
    fi
}

main() {
    parse_args "$@"
    check_mode
    resolve_run_dir
    local did=0
    if [[ "$SETUP_MODE" != docker ]]; then
        if [[ "$SETUP_MODE" == native ]] || have_native_state || [[ -f "$RUN_DIR/redis.pid" || -f "$RUN_DIR/prometheus.pid" ]]; then
            cleanup_native
            did=1
        fi
    fi
    if [[ "$SETUP_MODE" != native ]]; then
        if docker_available && [[ -f "$COMPOSE_FILE_PATH" ]]; then
            cleanup_docker
            did=1
        elif [[ "$SETUP_MODE" == docker ]]; then
            die "SETUP_MODE=docker, but no Docker engine with Compose is available"
        fi
    fi
    if [[ $did -eq 0 ]]; then
        log "nothing to clean up (no native run dir at $RUN_DIR, no Docker engine with Compose)"
    fi
}

main "$@"
