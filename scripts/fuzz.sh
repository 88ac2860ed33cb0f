#!/usr/bin/env bash
# Fuzzes the RESP reply scanner (src/client/resp.rs) with cargo-fuzz / libFuzzer.
# Target: fuzz/fuzz_targets/resp_scan.rs (see its header for the invariants checked).
# Usage: scripts/fuzz.sh [extra libFuzzer flags...]   (from anywhere)
#   FUZZ_SECONDS=600 scripts/fuzz.sh        run longer (default 60 s)
#   FUZZ_SANITIZER=none scripts/fuzz.sh     skip AddressSanitizer (faster; scan is safe Rust)
# A crash leaves its input in fuzz/artifacts/resp_scan/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run resp_scan fuzz/artifacts/resp_scan/crash-<hash>
# Exits non-zero when the fuzzer finds a crash or an invariant violation.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# cargo-fuzz passes nightly-only flags (-Zsanitizer, sanitizer-coverage options); only a stable
# toolchain is installed here, and RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install --locked)"
    cargo install cargo-fuzz --locked
fi

# Seed an empty corpus with a few well-formed replies so the fuzzer starts from valid RESP
# (libFuzzer also mutates with the tokens in fuzz/resp.dict).
corpus=fuzz/corpus/resp_scan
mkdir -p "$corpus"
if [[ -z "$(ls -A "$corpus")" ]]; then
    i=0
    for seed in \
        '+OK\r\n' \
        '-ERR unknown command\r\n' \
        ':1000\r\n' \
        '$5\r\nhello\r\n' \
        '$-1\r\n' \
        '*3\r\n$3\r\nfoo\r\n:1\r\n$-1\r\n' \
        '*2\r\n*1\r\n+a\r\n%1\r\n+k\r\n$1\r\nv\r\n' \
        '%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n' \
        '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n' \
        '|1\r\n+ttl\r\n:3600\r\n~2\r\n#t\r\n,3.14\r\n' \
        '!9\r\nERR oops!\r\n' \
        '=8\r\ntxt:abcd\r\n' \
        '_\r\n' \
        '(12345678901234567890\r\n' \
        '+OK\r\n$2\r\nhi\r\n:5\r\n'; do
        printf '%b' "$seed" >"$corpus/seed-$i"
        i=$((i + 1))
    done
fi

exec cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" resp_scan "$corpus" -- \
    -max_total_time="${FUZZ_SECONDS:-60}" -dict=fuzz/resp.dict "$@"
