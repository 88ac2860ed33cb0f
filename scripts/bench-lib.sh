# Shared by the benchmark scripts (bench.sh, bench-otlp.sh); sourced, not run.
# Expects HOST and WORK_DIR to be set; start_redis sets PORT and REDIS_PID.
# shellcheck shell=bash

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Stops a child started by the script, if it still runs.
stop_pid() { # pid
    if [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}

# A redis-server without persistence on a free loopback port, up when this returns.
# Arguments, if any, are extra redis-server options (e.g. --maxclients 20000).
# shellcheck disable=SC2120 # callers may pass none
start_redis() {
    local i j
    for ((i = 0; i < 5; i++)); do
        PORT="$(free_port)"
        redis-server --bind "$HOST" --port "$PORT" --save "" --appendonly no \
            --daemonize no --dir "$WORK_DIR" --logfile "$WORK_DIR/redis.log" "$@" &
        REDIS_PID=$!
        for ((j = 0; j < 50; j++)); do
            if [[ "$(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null)" == "PONG" ]]; then
                return 0
            fi
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        # Lost a race for the port, or slow start: stop it and try another port.
        stop_pid "$REDIS_PID"
        REDIS_PID=""
    done
    tail -n 20 "$WORK_DIR/redis.log" >&2 || true
    die "could not start redis-server on a free loopback port"
}

# GNU time at /usr/bin/time, for max RSS (%M) and the CPU of a whole process tree.
# Installed with apt-get when it is missing and we may (root, apt-get present).
require_gnu_time() {
    if [[ ! -x /usr/bin/time ]]; then
        if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "note: /usr/bin/time missing: installing Debian's 'time' package" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null ||
                { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null; } ||
                die "/usr/bin/time missing and 'apt-get install time' failed"
            [[ -x /usr/bin/time ]] ||
                die "/usr/bin/time still missing after 'apt-get install time' (try --reinstall)"
        else
            die "/usr/bin/time (GNU time) missing: install it (apt-get install time) and rerun"
        fi
    fi
    # busybox's time lacks -o; the figures need GNU time's -o and -f.
    /usr/bin/time -o /dev/null -f '%M' true 2>/dev/null ||
        die "/usr/bin/time is not GNU time (needs -o and -f %M): apt-get install time"
}
