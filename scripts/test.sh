#!/usr/bin/env bash
# The project's test command (see README): installs Redis if it is missing,
# then checks formatting, runs clippy with warnings denied, and runs the whole
# test suite (`cargo test --all-targets`). Exits non-zero on any failure.
# Usage: scripts/test.sh   (from anywhere)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive

# Installs redis-server, redis-sentinel, redis-tools and openssl (the TLS tests make certificates with it)
# with apt when one of them is not on PATH.
ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 \
        && command -v openssl >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1; then
        return 0
    fi
    echo "== installing redis-server + redis-sentinel + redis-tools + openssl (apt)"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: redis-server is not installed and apt-get is unavailable;" >&2
        echo "       install Redis (redis-server, redis-tools) yourself and re-run." >&2
        exit 1
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: redis-server is not installed and this script is not running as root;" >&2
        echo "       run: sudo apt-get install -y --no-install-recommends redis-server redis-tools" >&2
        exit 1
    fi
    # Refresh the package lists only if the packages are not known yet.
    if ! apt-cache show redis-server redis-sentinel redis-tools openssl >/dev/null 2>&1; then
        apt-get update
    fi
    if ! apt-get install -y --no-install-recommends redis-server redis-sentinel redis-tools openssl; then
        apt-get update
        apt-get install -y --no-install-recommends redis-server redis-sentinel redis-tools openssl
    fi
}

ensure_redis

# Installs Debian's prometheus package (prometheus + promtool: tests/prometheus.rs checks the
# /metrics exposition with promtool and lets a real Prometheus scrape a run) when missing.
ensure_prometheus() {
    if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        return 0
    fi
    echo "== installing prometheus (apt)"
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
        echo "error: prometheus/promtool are not installed and apt-get is unavailable or this" >&2
        echo "       script is not running as root; run: sudo apt-get install -y prometheus" >&2
        exit 1
    fi
    if ! apt-cache show prometheus >/dev/null 2>&1; then
        apt-get update
    fi
    if ! apt-get install -y --no-install-recommends prometheus; then
        apt-get update
        apt-get install -y --no-install-recommends prometheus
    fi
}

ensure_prometheus

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --all-targets -- -D warnings

echo "== tests"
cargo test --all-targets
