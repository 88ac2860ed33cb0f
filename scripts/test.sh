#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need when it is missing
# (Redis, openssl, Prometheus + promtool, shellcheck, docker-compose with apt; rotel and
# check-jsonschema from PyPI into target/tools), then checks formatting, runs clippy with
# warnings denied, and runs the whole test suite (`cargo test --all-targets`). Exits non-zero
# on any failure.
# Usage: scripts/test.sh   (from anywhere)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive

# Installs redis-server, redis-sentinel, redis-tools and openssl (the TLS tests make certificates with it)
# with apt when one of them is not on PATH.
# Installs Debian packages with apt (root only), refreshing the package lists when a package
# is unknown or the first install fails. Without apt or root: prints the command and exits 1.
# Usage: apt_install WHY PACKAGE...
apt_install() {
    local why="$1"
    shift
    echo "== installing $* (apt)"
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
        echo "error: $why, and apt-get is unavailable or this script is not running as root;" >&2
        echo "       run: sudo apt-get install -y --no-install-recommends $*" >&2
        exit 1
    fi
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        apt-get update
    fi
    if ! apt-get install -y --no-install-recommends "$@"; then
        apt-get update
        apt-get install -y --no-install-recommends "$@"
    fi
}

ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 \
        && command -v openssl >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1; then
        return 0
    fi
    apt_install "redis-server, redis-sentinel, redis-cli or openssl is missing" \
        redis-server redis-sentinel redis-tools openssl
}

ensure_redis

# Installs Debian's prometheus package (prometheus + promtool: tests/prometheus.rs checks the
# /metrics exposition with promtool and lets a real Prometheus scrape a run; tests/dashboards.rs
# runs every Grafana dashboard query against one) when missing.
ensure_prometheus() {
    if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        return 0
    fi
    apt_install "prometheus is missing" prometheus
}

ensure_prometheus

# Installs shellcheck (tests/stack_scripts.rs lints setup.sh, status.sh, cleanup.sh) when missing.
ensure_shellcheck() {
    if command -v shellcheck >/dev/null 2>&1; then
        return 0
    fi
    apt_install "shellcheck is missing" shellcheck
}

ensure_shellcheck

# Installs rotel (a Rust OpenTelemetry collector; tests/otlp.rs sends it OTLP metrics) when
# missing: it ships on PyPI as a pre-release wheel holding the binary (needs libpython3.11).
# The wheel is unpacked into target/tools/rotel; ROTEL_AGENT tells the tests where it is.
ROTEL_VERSION=0.0.1a15
ensure_rotel() {
    local dir="$PWD/target/tools/rotel-$ROTEL_VERSION"
    export ROTEL_AGENT="$dir/rotel/rotel-agent"
    if [[ -x "$ROTEL_AGENT" ]]; then
        return 0
    fi
    echo "== installing rotel $ROTEL_VERSION (PyPI wheel)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install "pip is needed to download rotel" python3-pip
    fi
    if ! ldconfig -p 2>/dev/null | grep -q 'libpython3\.11\.so\.1\.0'; then
        apt_install "rotel needs libpython3.11" libpython3.11
    fi
    local download
    download="$(mktemp -d)"
    python3 -m pip download --quiet --pre --no-deps --dest "$download" "rotel==$ROTEL_VERSION"
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 -m zipfile -e "$download"/rotel-*.whl "$dir"
    rm -rf "$download"
    # zipfile drops the executable bit.
    chmod +x "$ROTEL_AGENT"
    "$ROTEL_AGENT" --version >/dev/null
}

ensure_rotel

# Installs Debian's docker-compose (v1.29; tests/stack_config.rs runs `docker-compose config -q`
# on docker-compose.yml, which needs no Docker engine) when missing.
ensure_docker_compose() {
    if command -v docker-compose >/dev/null 2>&1; then
        return 0
    fi
    apt_install "docker-compose is missing" docker-compose
}

ensure_docker_compose

# Installs check-jsonschema (PyPI; tests/stack_config.rs validates docker-compose.yml against
# the compose-spec schema bundled in it, `--builtin-schema vendor.compose-spec`) when missing.
# pip installs it with its dependencies into target/tools (`--target`: no venv, and no change
# to the system's Python); a wrapper runs it with the Python that installed it (some of the
# dependencies are compiled for that Python). CHECK_JSONSCHEMA tells the tests where it is.
CHECK_JSONSCHEMA_VERSION=0.39.0
ensure_check_jsonschema() {
    local dir="$PWD/target/tools/check-jsonschema-$CHECK_JSONSCHEMA_VERSION"
    export CHECK_JSONSCHEMA="$dir/check-jsonschema"
    if [[ -x "$CHECK_JSONSCHEMA" ]] && "$CHECK_JSONSCHEMA" --version >/dev/null 2>&1; then
        return 0
    fi
    echo "== installing check-jsonschema $CHECK_JSONSCHEMA_VERSION (PyPI)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install "pip is needed to install check-jsonschema" python3-pip
    fi
    local python
    python="$(python3 -c 'import sys; print(sys.executable)')"
    rm -rf "$dir"
    mkdir -p "$dir"
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check \
        --no-warn-script-location \
        --target "$dir/lib" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    cat >"$CHECK_JSONSCHEMA" <<EOF
#!/bin/sh
PYTHONPATH="$dir/lib\${PYTHONPATH:+:\$PYTHONPATH}" exec "$python" -m check_jsonschema "\$@"
EOF
    chmod +x "$CHECK_JSONSCHEMA"
    "$CHECK_JSONSCHEMA" --version >/dev/null
}

ensure_check_jsonschema

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --all-targets -- -D warnings

echo "== tests"
cargo test --all-targets
