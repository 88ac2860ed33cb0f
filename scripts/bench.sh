#!/usr/bin/env bash
# Side-by-side benchmark of redis-loadgen vs redis-benchmark, plus memtier_benchmark and
# cachecannon when they are on PATH, in one run.
# NOT a test: it takes minutes and its figures depend on the machine.
#
# Starts its own redis-server (no persistence, --maxclients 20000) on a free loopback port,
# builds the release binary, then for each point (connections x pipeline depth) runs ROUNDS
# rounds; each round runs every tool once with the same load (SET/GET 1:1, 32-byte values,
# 10000 keys), rotating which tool goes first every round. Prints per-round figures and a
# median-of-rounds summary, one markdown table per point.
#
# Points: every depth in PIPELINES at 50 connections (the historical points), and every
# count in CONNECTIONS at pipeline 1 (how each tool copes with many connections). A point
# in both lists (50 connections, pipeline 1) runs once.
#
# Absolute figures drift from run to run (CPU frequency, noisy neighbours, cache
# state): compare the tools within one run, not across runs.
#
# Environment:
#   PIPELINES="1 100"            pipeline depths to test at 50 connections ("" for none)
#   CONNECTIONS="50 1000 10000"  connection counts to test at pipeline 1 ("" for none)
#   ROUNDS=3                     rounds per point
#   DURATION=8                   run length of redis-loadgen, memtier_benchmark and
#                                cachecannon, whole seconds
#   LOADGEN            a redis-loadgen binary to measure instead of building this tree's
#                      (e.g. an earlier release's, for a before/after comparison)
#   N                  redis-benchmark requests per test (SET and GET each), all depths
#   N_<P>              the same for one depth, e.g. N_1=400000 N_100=12000000
#                      (defaults: 400000 for P=1, 3000000 below P=50, 12000000 above;
#                      aim for about DURATION seconds per redis-benchmark run)
#                      redis-benchmark runs N requests, not DURATION: its time and CPU
#                      include its connect phase, which weighs at many connections
#                      (N_1=400000 over 10,000 connections is 40 requests each)
#
# How each tool gets C connections at pipeline depth P:
#   redis-loadgen      C=50: --clients 5 --threads-per-client 10, as always; otherwise
#                      --clients C/T --threads-per-client T --max-connections T, T the
#                      largest of 100 50 20 10 5 2 1 that divides C (1000: 10x100);
#                      --io-threads left at its default (the available cores)
#   redis-benchmark    -c C -P P (its single event loop)
#   memtier_benchmark  -t 2 -c C/2 --pipeline=P (skipped for odd C)
#   cachecannon        threads=2, connections=C, pipeline_depth=P in a generated TOML
#                      config; written from its documented config format
#
# Columns:
#   ops/s          redis-loadgen: overall_throughput from its JSON; redis-benchmark: all
#                  commands over all time (see below); memtier: its Totals line;
#                  cachecannon: throughput from its JSON result line
#   client us/op   client CPU (user+sys) per command. redis-loadgen: client_cpu.us_per_op
#                  from its JSON, which covers the measured run only (not the connect
#                  phase); peers: the whole process, from /usr/bin/time
#   proc us/op     whole-process CPU (/usr/bin/time user+sys) over all commands counted,
#                  for every tool: the like-for-like figure, connect phase included
#   max RSS MB     /usr/bin/time %M (KiB) / 1024
#   connect s      redis-loadgen's connect phase: seconds= of its "all connections up"
#                  log line on stderr; the peers do not report one
#   p50/p99 ms     redis-loadgen's JSON, memtier's Totals line; "-" for redis-benchmark
#                  (it times a pipeline batch as a whole) and cachecannon (GET and SET apart)
#
# Many connections need file descriptors and a server that accepts them: the script raises
# its open-file limit (ulimit -n, inherited by redis-server and every tool) to 65536, or to
# the hard limit when that is lower (and says so), and starts redis-server with
# --maxclients 20000 and --tcp-backlog 4096, so that a 10,000-connection storm is not met
# with dropped SYNs whose 1 s retransmits would land in whichever tool ran.
#
# A tool that fails (non-zero exit, unreadable output) is reported with the tail of its
# output and counted as failed in the summary; the run goes on, and the script exits 1.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_DIR"

# ${-} not ${:-}: an empty list means no points of that kind.
PIPELINES="${PIPELINES-1 100}"
CONNECTIONS="${CONNECTIONS-50 1000 10000}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
LOADGEN="${LOADGEN:-}"
HOST=127.0.0.1
BASE_CONNS=50      # connections of the pipeline-depth points
PEER_THREADS=2     # memtier_benchmark and cachecannon threads: one per core here
WANT_NOFILE=65536  # open-file limit asked for
# shellcheck source=scripts/bench-lib.sh
source "$REPO_DIR/scripts/bench-lib.sh"

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Redis: ./setup.sh or apt-get install redis-server redis-tools)"
done
require_gnu_time
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
# Whole seconds: memtier's --test-time and cachecannon's duration take nothing else.
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive number of seconds (got '$DURATION')"
for p in $PIPELINES; do
    [[ "$p" =~ ^[1-9][0-9]*$ ]] || die "PIPELINES must hold positive integers (got '$p')"
done
for c in $CONNECTIONS; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must hold positive integers (got '$c')"
done

# The points, "connections:pipeline", each once, in the order given.
POINTS=()
add_point() { # connections pipeline
    local point="$1:$2" q
    for q in "${POINTS[@]}"; do
        if [[ "$q" == "$point" ]]; then
            return 0
        fi
    done
    POINTS+=("$point")
}
for p in $PIPELINES; do
    add_point "$BASE_CONNS" "$p"
done
for c in $CONNECTIONS; do
    add_point "$c" 1
done
((${#POINTS[@]} > 0)) || die "no points: PIPELINES and CONNECTIONS are both empty"

# Optional peers: used when installed, silently left out otherwise.
TOOLS=(redis-loadgen redis-benchmark)
PEERS_FOUND=()
PEERS_MISSING=()
for tool in memtier_benchmark cachecannon; do
    if command -v "$tool" >/dev/null 2>&1; then
        TOOLS+=("$tool")
        PEERS_FOUND+=("$tool")
    else
        PEERS_MISSING+=("$tool")
    fi
done

# Every connection is a descriptor in the tool and another in redis-server.
MAX_CONNS=$BASE_CONNS
for point in "${POINTS[@]}"; do
    c=${point%%:*}
    if ((c > MAX_CONNS)); then
        MAX_CONNS=$c
    fi
done
NOFILE_NOTE=""
if ! ulimit -n "$WANT_NOFILE" 2>/dev/null; then
    hard="$(ulimit -Hn)"
    ulimit -n "$hard" 2>/dev/null || true
    NOFILE_NOTE="asked for $WANT_NOFILE; the hard limit is $hard"
fi
NOFILE="$(ulimit -n)"
if [[ "$NOFILE" != unlimited ]] && ((NOFILE < MAX_CONNS + 100)); then
    echo "warning: open-file limit $NOFILE is too low for $MAX_CONNS connections;" \
        "raise the hard limit (ulimit -Hn) or expect EMFILE failures" >&2
fi

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-loadgen-bench.XXXXXX")"
REDIS_PID=""

cleanup() {
    stop_pid "$REDIS_PID"
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

requests_for() {
    local p=$1 var="N_$1"
    if [[ -n "${!var:-}" ]]; then
        echo "${!var}"
    elif [[ -n "${N:-}" ]]; then
        echo "$N"
    elif [[ "$p" -eq 1 ]]; then
        echo 400000
    elif [[ "$p" -lt 50 ]]; then
        echo 3000000
    else
        # ~3M ops/s per test at deep pipelines: both tests together take about as long as
        # one redis-loadgen run, so both tools see the machine in the same state.
        echo 12000000
    fi
}

# redis-loadgen's workers for C connections: "clients threads-per-client".
loadgen_shape() { # connections
    local c=$1 t
    if ((c == 50)); then
        echo "5 10" # the shape of every earlier run, kept comparable
        return 0
    fi
    for t in 100 50 20 10 5 2 1; do
        if ((c % t == 0)); then
            echo "$((c / t)) $t"
            return 0
        fi
    done
}

# Each *_cmd sets CMD (the command line) and AUX (a file the command writes or reads).
# shellcheck disable=SC2054 # the commas are part of the arguments (set,get)
bench_cmd() { # connections pipeline
    REQUESTS="$(requests_for "$2")"
    AUX=""
    CMD=(redis-benchmark -h "$HOST" -p "$PORT" -c "$1" -n "$REQUESTS" -P "$2" -d 32 -r 10000
        -t set,get --csv -q)
}

# shellcheck disable=SC2054 # the commas are part of the arguments (SET,GET)
loadgen_cmd() { # connections pipeline
    local clients tpc
    read -r clients tpc <<<"$(loadgen_shape "$1")"
    AUX="$WORK_DIR/loadgen.json"
    CMD=("$LOADGEN" --host "$HOST" --port "$PORT" --clients "$clients" --threads-per-client "$tpc")
    if (($1 != 50)); then
        CMD+=(--max-connections "$tpc")
    fi
    CMD+=(--operations SET,GET --operation-weights '{"SET":1,"GET":1}' --value-size 32
        --key-range 10000 --duration "$DURATION" --quiet --log-format text --output-file "$AUX")
    if [[ "$2" -gt 1 ]]; then
        CMD+=(--use-pipeline --pipeline-size "$2")
    fi
}

memtier_cmd() { # connections pipeline
    AUX="$WORK_DIR/memtier.json" # only for its exact command count
    CMD=(memtier_benchmark -s "$HOST" -p "$PORT" --protocol=redis -t "$PEER_THREADS"
        -c "$(($1 / PEER_THREADS))" --pipeline="$2" --ratio=1:1 -d 32 --key-maximum=10000
        --test-time="$DURATION" --hide-histogram --json-out-file="$AUX")
}

# cachecannon takes its settings from a TOML file only. No warm-up (the others have none)
# and no request timeout (the others have none: a slow reply is latency, not an error).
cachecannon_cmd() { # connections pipeline
    AUX="$WORK_DIR/cachecannon.toml"
    cat >"$AUX" <<EOF
[general]
duration = "${DURATION}s"
warmup = "0s"
threads = $PEER_THREADS

[target]
endpoints = ["$HOST:$PORT"]
protocol = "resp"

[connection]
connections = $1
pipeline_depth = $2
request_timeout = "0s"

[workload.keyspace]
length = 16
count = 10000
distribution = "uniform"

[workload.commands]
get = 1
set = 1

[workload.values]
length = 32

[admin]
format = "json"
color = "never"
EOF
    CMD=(cachecannon "$AUX")
}

# Sets CMD and AUX for one tool at one point; fails when the tool cannot express the point.
tool_cmd() { # tool connections pipeline
    case $1 in
        redis-loadgen) loadgen_cmd "$2" "$3" ;;
        redis-benchmark) bench_cmd "$2" "$3" ;;
        memtier_benchmark)
            (($2 % PEER_THREADS == 0)) || return 1
            memtier_cmd "$2" "$3"
            ;;
        cachecannon) cachecannon_cmd "$2" "$3" ;;
        *) die "unknown tool $1" ;;
    esac
}

# Prints a command so that it can be pasted into a shell.
show_cmd() {
    local arg out="  "
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            out+="$arg "
        else
            out+="'${arg//\'/\'\\\'\'}' "
        fi
    done
    echo "${out% }"
}

flush() { redis-cli -h "$HOST" -p "$PORT" flushall >/dev/null; }

# The server must have shed the previous run's connections (10,000 closes take it a
# moment) before the next tool connects, or that tool pays for them.
wait_server_idle() {
    local i n=""
    for ((i = 0; i < 100; i++)); do
        n="$(redis-cli -h "$HOST" -p "$PORT" info clients | tr -d '\r' | sed -n 's/^connected_clients://p')"
        if [[ "${n:-0}" -le 1 ]]; then # 1: this redis-cli
            return 0
        fi
        sleep 0.1
    done
    echo "warning: redis-server still has $n clients connected before the next run" >&2
}

# Reads one run's outputs; prints "ops client_us proc_us rss_mb connect_s p50 p99" ("-" for
# figures the tool does not give), or fails with a reason on stderr.
parse_run() { # tool timing-file stdout-file stderr-file aux-file requests
    python3 - "$@" <<'PY'
import csv, json, re, sys
tool, timing, out, err, aux, requests = sys.argv[1:7]
# GNU time's -o file: "Command exited with non-zero status" lines may come first.
rss_kib, user, system = open(timing).read().split("\n")[-2].split()
cpu = float(user) + float(system)
connect = p50 = p99 = None
if tool == "redis-benchmark":
    rps = {r["test"]: float(r["rps"]) for r in csv.DictReader(open(out))}
    if not {"SET", "GET"} <= rps.keys():
        sys.exit("redis-benchmark CSV lacks SET/GET rows: %r" % rps)
    # N SETs then N GETs: total commands over total time (the harmonic mean of the two
    # rates), the same figure the others report for their 1:1 mix. The arithmetic mean
    # would overstate it.
    ops = 2 / (1 / rps["SET"] + 1 / rps["GET"])
    count = 2 * int(requests)
    client_us = cpu * 1e6 / count
elif tool == "redis-loadgen":
    r = json.load(open(aux))
    ops, count = r["overall_throughput"], r["total_commands_count"]
    client_us = r["client_cpu"]["us_per_op"]
    p50, p99 = r["latency_ms"]["p50"], r["latency_ms"]["p99"]
    if r.get("failed_commands_count"):
        print("warning: redis-loadgen: %d failed commands %r" % (
            r["failed_commands_count"], r.get("errors_by_type")), file=sys.stderr)
    # Text log lines; colour codes stripped in case a build writes them to a file.
    log = re.sub(r"\x1b\[[0-9;]*m", "", open(err).read())
    for line in log.splitlines():
        if "all connections up" in line:
            m = re.search(r"\bseconds=([0-9.eE+-]+)", line)
            if m:
                connect = float(m.group(1))
    if connect is None:
        print("warning: redis-loadgen logged no 'all connections up ... seconds='",
              file=sys.stderr)
elif tool == "memtier_benchmark":
    header = totals = None
    for line in open(out):
        if line.startswith("Type "):
            header = re.split(r"\s{2,}", line.strip())  # "Avg. Latency": one space inside
        elif line.startswith("Totals "):
            totals = line.split()
    if not header or not totals or len(header) != len(totals):
        sys.exit("memtier_benchmark printed no readable Totals line")
    row = dict(zip(header, totals))
    ops = float(row["Ops/sec"])
    num = lambda v: None if v in (None, "---") else float(v)
    p50, p99 = num(row.get("p50 Latency")), num(row.get("p99 Latency"))
    count = json.load(open(aux))["ALL STATS"]["Totals"]["Count"]
    client_us = cpu * 1e6 / count if count else 0
elif tool == "cachecannon":
    result = None
    for line in open(out):
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("type") == "result":
                result = obj
    if result is None:
        sys.exit("cachecannon printed no JSON result line")
    ops, count = float(result["throughput"]), result["responses"]
    client_us = cpu * 1e6 / count if count else 0
    if result.get("errors"):
        print("warning: cachecannon: %d errors" % result["errors"], file=sys.stderr)
else:
    sys.exit("unknown tool " + tool)
if not count:
    sys.exit("%s counted no commands" % tool)
show = lambda v, spec: "-" if v is None else format(v, spec)
print(show(ops, ".0f"), show(client_us, ".3f"), show(cpu * 1e6 / count, ".3f"),
      show(int(rss_kib) / 1024, ".1f"), show(connect, ".3f"), show(p50, ".3f"),
      show(p99, ".3f"))
PY
}

FAILURES=0
# Shows why a run failed and records it as failed.
fail_run() { # connections pipeline tool round reason
    echo "  $3 round $4 FAILED: $5" >&2
    local f
    for f in "$WORK_DIR/run.err" "$WORK_DIR/run.out"; do
        if [[ -s "$f" ]]; then
            echo "  --- last lines of its ${f##*.}:" >&2
            tr '\r' '\n' <"$f" | grep -v '^[[:space:]]*$' | tail -n 20 | sed 's/^/    /' >&2
        fi
    done
    echo "$1 $2 $3 $4 FAIL" >>"$RESULTS"
    FAILURES=$((FAILURES + 1))
}

# Runs one tool once at one point, under /usr/bin/time, and records its figures.
run_tool() { # tool connections pipeline round
    local tool=$1 c=$2 p=$3 round=$4 rc=0 row
    local out="$WORK_DIR/run.out" err="$WORK_DIR/run.err" timing="$WORK_DIR/run.time"
    tool_cmd "$tool" "$c" "$p" || return 0
    flush
    wait_server_idle
    rm -f "$out" "$err" "$timing"
    if [[ -n "$AUX" && "$tool" != cachecannon ]]; then
        rm -f "$AUX"
    fi
    /usr/bin/time -o "$timing" -f '%M %U %S' "${CMD[@]}" >"$out" 2>"$err" || rc=$?
    if ((rc != 0)); then
        fail_run "$c" "$p" "$tool" "$round" "exit status $rc"
        return 0
    fi
    if ! row="$(parse_run "$tool" "$timing" "$out" "$err" "$AUX" "${REQUESTS:-0}")"; then
        fail_run "$c" "$p" "$tool" "$round" "its output could not be read"
        return 0
    fi
    echo "$c $p $tool $round $row" >>"$RESULTS"
    # shellcheck disable=SC2086 # row holds seven words
    print_row "$tool" "$round" $row
}

ROW_FMT='%-18s %5s %10s %13s %11s %11s %10s %8s %8s\n'
print_header() {
    # shellcheck disable=SC2059
    printf "$ROW_FMT" tool round "ops/s" "client us/op" "proc us/op" "max RSS MB" "connect s" \
        "p50 ms" "p99 ms"
}
print_row() { # tool round ops client_us proc_us rss connect p50 p99
    # shellcheck disable=SC2059
    printf "$ROW_FMT" "$@"
}

# One markdown table per point, medians over the rounds that succeeded.
print_summary() {
    python3 - "$RESULTS" "${POINTS[*]}" "${TOOLS[*]}" <<'PY'
import statistics, sys
path, points, tools = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows, failed = {}, {}
for line in open(path):
    f = line.split()
    key = (f[0], f[1], f[2])
    if f[4] == "FAIL":
        failed[key] = failed.get(key, 0) + 1
    else:
        rows.setdefault(key, []).append(f[4:])
def med(vals):
    vals = [float(v) for v in vals if v != "-"]
    return statistics.median(vals) if vals else None
show = lambda v, spec: "-" if v is None else format(v, spec)
cols = ["tool", "rounds", "ops/s", "client us/op", "proc us/op", "max RSS MB", "connect s",
        "p50 ms", "p99 ms"]
for point in points:
    c, p = point.split(":")
    print()
    print("### %s connections, pipeline %s" % (format(int(c), ","), p))
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for tool in tools:
        key = (c, p, tool)
        rs, nf = rows.get(key, []), failed.get(key, 0)
        if not rs and not nf:
            continue  # not run at this point (e.g. memtier at an odd count)
        rounds = str(len(rs)) + (" (%d failed)" % nf if nf else "")
        if rs:
            ops, cus, pus, rss, conn, p50, p99 = (med(col) for col in zip(*rs))
        else:
            ops = cus = pus = rss = conn = p50 = p99 = None
        print("| " + " | ".join([tool, rounds, show(ops, ".0f"), show(cus, ".3f"),
              show(pus, ".3f"), show(rss, ".1f"), show(conn, ".3f"), show(p50, ".3f"),
              show(p99, ".3f")]) + " |")
PY
}

echo "== build"
if [[ -z "$LOADGEN" ]]; then
    cargo build --release
    LOADGEN="$REPO_DIR/target/release/redis-loadgen"
fi
[[ -x "$LOADGEN" ]] || die "$LOADGEN is not an executable redis-loadgen"

start_redis --maxclients 20000 --tcp-backlog 4096
RESULTS="$WORK_DIR/results.txt"
: >"$RESULTS"

echo
echo "== machine"
echo "cpus (nproc): $(nproc)"
if [[ -r /proc/cpuinfo ]]; then
    echo "cpu model:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
fi
echo "kernel:       $(uname -sr)"
echo "server:       $(redis-server --version)"
echo "benchmark:    $(redis-benchmark --version)"
echo "loadgen:      $("$LOADGEN" --version 2>/dev/null || echo unknown)"
if ((${#PEERS_FOUND[@]} > 0)); then
    echo "peers found:  ${PEERS_FOUND[*]}${PEERS_MISSING[*]:+ (not on PATH: ${PEERS_MISSING[*]})}"
else
    echo "peers found:  none (not on PATH: ${PEERS_MISSING[*]})"
fi
if command -v memtier_benchmark >/dev/null 2>&1; then
    echo "memtier:      $(memtier_benchmark --version 2>&1 | head -n1) ($(command -v memtier_benchmark))"
fi
if command -v cachecannon >/dev/null 2>&1; then
    echo "cachecannon:  $(cachecannon --version 2>&1 | head -n1) ($(command -v cachecannon))"
fi
echo "redis-server: pid $REDIS_PID on $HOST:$PORT (--save \"\" --appendonly no --maxclients 20000" \
    "--tcp-backlog 4096; maxclients in force:" \
    "$(redis-cli -h "$HOST" -p "$PORT" config get maxclients | tail -n1))"
echo "open files:   ulimit -n $NOFILE${NOFILE_NOTE:+ ($NOFILE_NOTE)}"
echo "settings:     PIPELINES=\"$PIPELINES\" CONNECTIONS=\"$CONNECTIONS\" ROUNDS=$ROUNDS DURATION=$DURATION"
echo "points:       ${POINTS[*]} (connections:pipeline)"
echo "note: rounds rotate which tool runs first; FLUSHALL before every run."
echo "      absolute figures drift run to run: compare within one run."
echo "      redis-benchmark: ops/s = 2N / (N/SET rps + N/GET rps), i.e. all commands over all time;"
echo "                       us/op = (user+sys) / (2*N)"
echo "      redis-loadgen:   overall_throughput, client_cpu.us_per_op, latency_ms from its JSON;"
echo "                       connect s from its 'all connections up' log line"
echo "      proc us/op:      whole-process user+sys (/usr/bin/time) / commands, every tool"

for point in "${POINTS[@]}"; do
    c=${point%%:*}
    p=${point#*:}
    echo
    echo "== $c connections, pipeline $p"
    echo "commands:"
    for tool in "${TOOLS[@]}"; do
        if ! tool_cmd "$tool" "$c" "$p"; then
            echo "  ($tool skipped: $c connections do not split over $PEER_THREADS threads)"
            continue
        fi
        show_cmd "${CMD[@]}"
        if [[ "$tool" == cachecannon ]]; then
            echo "    config: $(grep '=' "$AUX" | tr '\n' ' ' | tr -s ' ')"
        fi
    done
    echo
    print_header
    for ((round = 1; round <= ROUNDS; round++)); do
        # Rotate the order so that no tool always runs first or right after another.
        for ((i = 0; i < ${#TOOLS[@]}; i++)); do
            run_tool "${TOOLS[(i + round - 1) % ${#TOOLS[@]}]}" "$c" "$p" "$round"
        done
    done
done

echo
echo "== summary (median of $ROUNDS round(s))"
print_summary
if ((FAILURES > 0)); then
    echo
    die "$FAILURES run(s) failed: see above"
fi
