# shellcheck shell=bash
# Shared by setup.sh, status.sh and cleanup.sh (sourced, not run): where the native stack keeps
# its state, which mode to use, Compose detection, and the pid checks that make sure the
# scripts only ever signal processes they started themselves.
#
# Environment (all optional):
#   SETUP_MODE=auto|docker|native  auto: Docker when an engine answers and Compose exists
#   STACK_RUN_DIR                  native mode's run directory (default: <repo>/.run/native)
#   REDIS_PORT=6379                native redis-server port (the next free one if 6379 is taken)
#   PROMETHEUS_PORT=9090           native Prometheus port (the next free one if 9090 is taken)
#   LOADGEN_METRICS_PORT=9464      where native Prometheus scrapes redis-loadgen's /metrics
#   SCRAPE_INTERVAL=5s             native Prometheus's scrape interval
#   PROMETHEUS_URL                 the Prometheus status.sh asks (default: the stack's)
#   HEALTH_TIMEOUT=180             seconds setup.sh waits for the Docker stack to be healthy

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
COMPOSE_FILE_PATH="$REPO_DIR/docker-compose.yml"
SETUP_MODE="${SETUP_MODE:-auto}"
RUN_DIR="${STACK_RUN_DIR:-$REPO_DIR/.run/native}"
# The marker that makes a directory a run directory: --remove-data deletes a directory only
# when it holds this file, so a mistyped STACK_RUN_DIR can never cost unrelated files.
RUN_MARKER=".redis-loadgen-native-stack"
STATE_FILE="stack.env"

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

check_mode() {
    case "$SETUP_MODE" in
    auto | docker | native) ;;
    *) die "SETUP_MODE must be auto, docker or native (got '$SETUP_MODE')" ;;
    esac
}

# Makes RUN_DIR absolute (the pid checks compare paths) when it exists.
resolve_run_dir() {
    if [[ -d "$RUN_DIR" ]]; then
        RUN_DIR="$(cd "$RUN_DIR" && pwd -P)"
    fi
}

have_native_state() {
    [[ -f "$RUN_DIR/$RUN_MARKER" ]]
}

# Reads KEY=VALUE lines from the state file into STATE_<KEY> variables (not sourced: it is data).
read_state() {
    local key value
    [[ -f "$RUN_DIR/$STATE_FILE" ]] || return 0
    while IFS='=' read -r key value; do
        case "$key" in
        REDIS_PORT) STATE_REDIS_PORT="$value" ;;
        PROMETHEUS_PORT) STATE_PROMETHEUS_PORT="$value" ;;
        LOADGEN_METRICS_PORT) STATE_LOADGEN_METRICS_PORT="$value" ;;
        SCRAPE_INTERVAL) STATE_SCRAPE_INTERVAL="$value" ;;
        esac
    done <"$RUN_DIR/$STATE_FILE"
}
# shellcheck disable=SC2034 # read by the scripts that source this file
STATE_REDIS_PORT="" STATE_PROMETHEUS_PORT=""
# shellcheck disable=SC2034
STATE_LOADGEN_METRICS_PORT="" STATE_SCRAPE_INTERVAL=""

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    local port=$1
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
    else
        bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
    fi
}

# True when the process exists and is not a zombie (an exited child nobody reaped still
# answers kill -0, but it holds no port and does nothing).
pid_alive() {
    local pid=$1 stat
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
        stat="${stat##*) }"
        [[ "${stat:0:1}" != "Z" ]]
    fi
}

pid_from_file() {
    local file=$1
    [[ -f "$file" ]] || return 1
    tr -dc '0-9' <"$file"
}

proc_comm() {
    cat "/proc/$1/comm" 2>/dev/null || ps -p "$1" -o comm= 2>/dev/null || true
}

proc_args() {
    if [[ -r "/proc/$1/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -p "$1" -o args= 2>/dev/null || true
    fi
}

# Is pid $1 the redis-server setup.sh started? redis-server rewrites its command line
# ("redis-server 127.0.0.1:PORT"), so the check is its name plus its working directory, which
# redis-server changes to its --dir, the run directory's redis/ (plus the port as a fallback
# where /proc is missing).
owns_redis() {
    local pid=$1 cwd
    pid_alive "$pid" || return 1
    [[ "$(proc_comm "$pid")" == redis-server* ]] || return 1
    if [[ -e "/proc/$pid/cwd" ]]; then
        cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || return 1
        [[ "$cwd" == "$RUN_DIR/redis" ]]
    else
        [[ "$(proc_args "$pid")" == *":${STATE_REDIS_PORT:-x}"* ]]
    fi
}

# Is pid $1 the Prometheus setup.sh started? Its command line names this run directory's config.
owns_prometheus() {
    local pid=$1
    pid_alive "$pid" || return 1
    [[ "$(proc_comm "$pid")" == prometheus* ]] || return 1
    [[ "$(proc_args "$pid")" == *"--config.file=$RUN_DIR/prometheus.yml"* ]]
}

# Docker mode is possible when an engine answers `docker info` and Compose v2 (`docker
# compose`) or v1 (`docker-compose`) is installed. Sets COMPOSE (an array) when it is.
COMPOSE=()
docker_engine_up() {
    command -v docker >/dev/null 2>&1 || return 1
    if command -v timeout >/dev/null 2>&1; then
        timeout 20 docker info >/dev/null 2>&1
    else
        docker info >/dev/null 2>&1
    fi
}
find_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose -f "$COMPOSE_FILE_PATH")
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose -f "$COMPOSE_FILE_PATH")
    else
        return 1
    fi
}
docker_available() {
    docker_engine_up && find_compose
}

# The stack's containers, one "name state health" line each (health "-" without a check).
compose_containers() {
    local ids
    ids="$("${COMPOSE[@]}" ps -q 2>/dev/null || true)"
    [[ -n "$ids" ]] || return 0
    # shellcheck disable=SC2086 # one id per word
    docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}' $ids 2>/dev/null |
        sed 's|^/||'
}

# curl to 127.0.0.1/localhost with short timeouts; prints the body.
http_get() {
    curl -fsS --max-time 3 "$@" 2>/dev/null
}
