#!/usr/bin/env bash
# Benchmarks of mllp-listen (the C receiver on libmllp's C ABI) against a featureless reference
# responder and the MLLP servers users would otherwise pick, all measured in the same run with
# the same load (mllp-bench).
#
#   bench/run.sh [--quick] [--repeats R] [--scale-repeats R] [--duration SECS]
#                [--groups main,tool,conns,sizes,idle,...] [--servers listen,ref,python,node]
#                [--skip-build]
#
# --quick: one repetition of everything and 2 s runs (default: 3 repetitions of 3 s, medians).
# --scale-repeats: repetitions of the scaling groups (conns, sizes, idle; default: --repeats).
# Writes a markdown report to stdout and bench/results/latest.md, and every raw result line
# (JSON) to bench/results/runs-<time>.jsonl. Every run is bounded in time (mllp-bench's
# --deadline plus `timeout`); servers are stopped after each run.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARGS_GIVEN="$*"
cd "$ROOT"

REPEATS=3
DURATION=3
WARMUP=0.5s
QUICK=0
# Built-in groups, then every bench/groups/NAME.sh (see "Groups from bench/groups" below).
GROUPS_SEL="main,tool,conns,sizes,idle"
for f in "$ROOT"/bench/groups/*.sh; do
    [ -e "$f" ] && GROUPS_SEL+=",$(basename "$f" .sh)"
done
SERVERS_SEL="listen,ref,python,node"
SKIP_BUILD=0
SCALE_REPEATS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; REPEATS=1; DURATION=2 ;;
        --repeats) REPEATS=$2; shift ;;
        --scale-repeats) SCALE_REPEATS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --groups) GROUPS_SEL=$2; shift ;;
        --servers) SERVERS_SEL=$2; shift ;;
        --skip-build) SKIP_BUILD=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "[bench] $*" >&2; }
has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

OUT="$ROOT/bench/results"
WORK=$(mktemp -d /tmp/mllp-bench.XXXXXX)
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/runs-$STAMP.jsonl"
: > "$RAW"
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------
# Build

BENCH="$ROOT/target/release/mllp-bench"
LISTEN="$ROOT/build/examples-c/mllp-listen"
REF="$ROOT/target/bench/ref-responder"
if [ "$SKIP_BUILD" = 0 ]; then
    say "building (cargo build --release, cmake, gcc)"
    cargo build --release -p mllp-bench >&2 || { say "cargo build failed"; exit 1; }
    { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j2 >/dev/null; } \
        || say "cmake build failed: mllp-listen results will be missing"
fi
mkdir -p "$ROOT/target/bench"
gcc -O2 -o "$REF" bench/ref-responder.c || { say "gcc failed"; exit 1; }

# ------------------------------------------------------------------------------------------
# Peers

PEERS_NOTE=""
if has "$SERVERS_SEL" python; then
    if ! python3 -c 'import hl7.mllp' 2>/dev/null; then
        say "installing python-hl7 (pip install hl7)"
        python3 -m pip install --quiet hl7 >&2 2>&1 || true
    fi
    if python3 -c 'import hl7.mllp' 2>/dev/null; then
        PEERS_NOTE+="python-hl7 $(python3 -c 'import importlib.metadata as m; print(m.version("hl7"))'); "
    else
        say "python-hl7 could not be installed: skipping that peer"
        SERVERS_SEL=${SERVERS_SEL//python/}
    fi
fi
if has "$SERVERS_SEL" node; then
    NODE_DIR="$ROOT/bench/peers/node"
    if command -v node >/dev/null && command -v npm >/dev/null; then
        if [ ! -d "$NODE_DIR/node_modules/simple-hl7" ]; then
            say "installing simple-hl7 (npm install)"
            (cd "$NODE_DIR" && timeout 300 npm install --no-audit --no-fund >&2 2>&1) || true
        fi
    fi
    if [ -d "$NODE_DIR/node_modules/simple-hl7" ] && command -v node >/dev/null; then
        PEERS_NOTE+="simple-hl7 $(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/simple-hl7/package.json") on node $(node --version); "
    else
        say "node / simple-hl7 not available: skipping that peer"
        SERVERS_SEL=${SERVERS_SEL//node/}
    fi
fi

# ------------------------------------------------------------------------------------------
# Limits

NOFILE_NOTE=""
if ! ulimit -n 30000 2>/dev/null; then
    hard=$(ulimit -Hn)
    ulimit -n "$hard" 2>/dev/null || true
    NOFILE_NOTE="open-file limit could not be raised to 30000; using $(ulimit -n)"
    say "$NOFILE_NOTE"
fi
NOFILE=$(ulimit -n)
max_idle() { # largest idle count both ends can hold: each side needs one descriptor per connection
    local want=$1
    if [ "$NOFILE" != unlimited ] && [ "$want" -gt $((NOFILE - 100)) ]; then
        echo $((NOFILE - 100))
    else
        echo "$want"
    fi
}

# ------------------------------------------------------------------------------------------
# Servers

# free_port, wait_listening, stop_server
source "$ROOT/bench/servers.sh"

# start_server NAME [MODE-ARGS...] -> SERVER_PID, SERVER_PORT; returns 1 if it did not come up.
start_server() {
    local name=$1; shift
    SERVER_PORT=$(free_port)
    local log="$WORK/server-$name.log"
    case "$name" in
        listen) "$LISTEN" --host 127.0.0.1 --port "$SERVER_PORT" --quiet "$@" >"$log" 2>&1 & ;;
        ref)    "$REF" --host 127.0.0.1 --port "$SERVER_PORT" "$@" >"$log" 2>&1 & ;;
        python) python3 "$ROOT/bench/peers/python_hl7_server.py" "$SERVER_PORT" >"$log" 2>&1 & ;;
        node)   node "$ROOT/bench/peers/node/server.js" "$SERVER_PORT" >"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    wait_listening "$name" "$log"
}

# record GROUP SERVER VARIANT REPEAT JSON
record() {
    local line=$5
    [ -z "$line" ] && line='{"errors":1,"first_error":"no output"}'
    printf '{"group":"%s","server":"%s","variant":"%s","repeat":%s,%s\n' "$1" "$2" "$3" "$4" "${line#\{}" >>"$RAW"
}

# run_load GROUP SERVER VARIANT REPEAT SERVER-ARGS -- BENCH-ARGS...
run_load() {
    local group=$1 server=$2 variant=$3 rep=$4; shift 4
    local sargs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do sargs+=("$1"); shift; done
    shift
    start_server "$server" "${sargs[@]}" || { record "$group" "$server" "$variant" "$rep" '{"errors":1,"first_error":"server did not start"}'; return; }
    local deadline=$((DURATION + 60))
    local json
    json=$(timeout $((deadline + 15)) "$BENCH" --port "$SERVER_PORT" --server-pid "$SERVER_PID" \
        --warmup "$WARMUP" --duration "$DURATION" --messages 100000000 --deadline "$deadline" \
        --scenario "$variant" --json "$@" 2>>"$WORK/bench.err" | tail -1)
    stop_server
    record "$group" "$server" "$variant" "$rep" "$json"
    say "$group/$variant/$server#$rep: $(echo "$json" | cut -c1-220)"
}

# run_idle GROUP SERVER N REPEAT
run_idle() {
    local group=$1 server=$2 n=$3 rep=$4
    n=$(max_idle "$n")
    start_server "$server" || { record "$group" "$server" "idle-$n" "$rep" '{"errors":1,"first_error":"server did not start"}'; return; }
    sleep 0.5 # let the server settle before the "before" RSS sample
    local json
    json=$(timeout 200 "$BENCH" --port "$SERVER_PORT" --server-pid "$SERVER_PID" --idle "$n" \
        --hold 3 --deadline 180 --scenario "idle-$3" --json 2>>"$WORK/bench.err" | tail -1)
    stop_server
    record "$group" "$server" "idle-$3" "$rep" "$json"
    say "$group/idle-$3/$server#$rep: $(echo "$json" | cut -c1-220)"
}

servers_for() { # the selected servers among those given
    local s out=()
    for s in "$@"; do has "$SERVERS_SEL" "$s" && out+=("$s"); done
    echo "${out[@]}"
}

# ------------------------------------------------------------------------------------------
# Scenarios

ALL=$(servers_for listen ref python node)
START_TIME=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

if has "$GROUPS_SEL" main; then
    for rep in $(seq 1 "$REPEATS"); do
        # Interleave servers within each repetition so slow drifts of the machine hit all alike.
        for s in $ALL; do
            run_load main "$s" c1-1KiB "$rep" -- --connections 1 --size 1024 --ack mllp
            run_load main "$s" c50-1KiB "$rep" -- --connections 50 --size 1024 --ack mllp
            run_load main "$s" c1-4MiB "$rep" -- --connections 1 --size 4M --ack mllp
        done
        if has "$SERVERS_SEL" listen; then
            run_load main listen c50-1KiB-hl7 "$rep" --ack hl7 -- --connections 50 --size 1024 --ack hl7
            rm -rf "$WORK/out"
            run_load main listen c1-1KiB-outdir "$rep" --out-dir "$WORK/out" -- --connections 1 --size 1024 --ack mllp
            rm -rf "$WORK/out"
            run_load main listen c50-1KiB-outdir "$rep" --out-dir "$WORK/out" -- --connections 50 --size 1024 --ack mllp
            rm -rf "$WORK/out"
        fi
        for s in $ALL; do
            run_idle main "$s" 10000 "$rep"
        done
    done
fi

if has "$GROUPS_SEL" tool && has "$SERVERS_SEL" ref; then
    # Is mllp-bench the bottleneck? Against the reference: one process with 50 connections
    # versus two processes with 25 each, at the same time. Same sum => the tool is not the limit.
    for rep in $(seq 1 "$REPEATS"); do
        run_load tool ref one-process-c50 "$rep" -- --connections 50 --size 1024
        start_server ref && {
            deadline=$((DURATION + 60))
            pids=()
            for k in 1 2; do
                timeout $((deadline + 15)) "$BENCH" --port "$SERVER_PORT" --server-pid "$SERVER_PID" \
                    --warmup "$WARMUP" --duration "$DURATION" --messages 100000000 --deadline "$deadline" \
                    --connections 25 --threads 1 --scenario "two-processes-c25-part$k" --json \
                    >"$WORK/tool$k.json" 2>>"$WORK/bench.err" &
                pids+=($!)
            done
            wait "${pids[@]}"
            stop_server
            record tool ref "two-processes-c25-part1" "$rep" "$(tail -1 "$WORK/tool1.json")"
            record tool ref "two-processes-c25-part2" "$rep" "$(tail -1 "$WORK/tool2.json")"
            say "tool/two-processes#$rep: $(cut -c1-120 "$WORK/tool1.json") / $(cut -c1-120 "$WORK/tool2.json")"
        }
    done
fi

SCALE_REPEATS=${SCALE_REPEATS:-$REPEATS}
if has "$GROUPS_SEL" conns; then
    for rep in $(seq 1 "$SCALE_REPEATS"); do
        for s in $ALL; do
            for c in 1 10 100 1000; do
                run_load conns "$s" "c$c" "$rep" -- --connections "$c" --size 1024 --ack mllp
            done
        done
    done
fi

if has "$GROUPS_SEL" sizes; then
    for rep in $(seq 1 "$SCALE_REPEATS"); do
        for s in $ALL; do
            for z in 256 1K 16K 256K 1M 4M 16M; do
                run_load sizes "$s" "s$z" "$rep" -- --connections 1 --size "$z" --ack mllp
            done
        done
    done
fi

if has "$GROUPS_SEL" idle; then
    for rep in $(seq 1 "$SCALE_REPEATS"); do
        for s in $ALL; do
            # 10,000 idle connections are measured in the main group already.
            for n in 1000 5000 $(has "$GROUPS_SEL" main || echo 10000); do
                run_idle idle "$s" "$n" "$rep"
            done
        done
    done
fi

# Groups from bench/groups: NAME.sh is sourced when NAME is selected (all are by default). It
# runs its scenarios with the helpers above (start_server, stop_server, run_load, run_idle,
# record, say; REPEATS, SCALE_REPEATS, DURATION, WARMUP, WORK, BENCH, LISTEN, REF) and records
# its results under group NAME; bench/groups/NAME.py, if present, reports them (report.py).
for f in "$ROOT"/bench/groups/*.sh; do
    [ -e "$f" ] || continue
    g=$(basename "$f" .sh)
    has "$GROUPS_SEL" "$g" && source "$f"
done

END_TIME=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------------------------------
# Report

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MACHINE="$(nproc) CPUs ($CPU_MODEL), $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r), loopback; load average before $LOAD_BEFORE, after $LOAD_AFTER"
CMDLINE="bench/run.sh $ARGS_GIVEN (repeats $REPEATS, scaling repeats $SCALE_REPEATS, ${DURATION}s per run after a $WARMUP warm-up)"
python3 "$ROOT/bench/report.py" "$RAW" \
    --machine "$MACHINE" --command "$CMDLINE" --peers "${PEERS_NOTE:-none}" \
    --note "$NOFILE_NOTE" --elapsed $((END_TIME - START_TIME)) >"$OUT/latest.md"
cat "$OUT/latest.md"
say "raw results: $RAW; report: $OUT/latest.md"
