#!/usr/bin/env bash
# Before/after comparison of mllp-listen: this tree's build against a baseline build, both
# measured against the reference responder (bench/ref-responder.c) in the same run.
#
#   bench/compare.sh --baseline DIR [--rounds R] [--duration SECS] [--warmup W]
#                    [--baseline-args ARGS] [--new-args ARGS] [--skip-build] [--out FILE]
#   bench/compare.sh --report RAW.jsonl [RAW.jsonl...]   # tables of earlier runs, pooled
#
# DIR: a directory holding an mllp-listen binary, or a built checkout (DIR/build/examples-c/
#      mllp-listen; build it there first with cargo build --release and the cmake build).
# Scenarios: 50 connections x 1 KiB and 1 connection x 1 KiB, MLLP commit acknowledgements.
# Every round runs every scenario once on each of the three servers (reference, baseline
# mllp-listen, this tree's mllp-listen), in an order rotated from round to round, each run on a
# freshly started server process. One load generator for all: this tree's
# target/release/mllp-bench. Prints medians of msg/s and server CPU us/msg, and the ratios
# new/ref, baseline/ref (per round, against the reference of the same round) and new/baseline.
# Raw JSON lines go to bench/results/compare-<time>.jsonl (or --out FILE).
# --baseline-args / --new-args: extra mllp-listen arguments for that server (split on spaces),
# e.g. --new-args "--config DuplicateWindow=100000" to measure a setting; baseline and new may
# then be the same binary.
# Defaults: 5 rounds of 3 s after a 0.5 s warm-up. Without --skip-build this tree is built
# first (cargo build --release --workspace, cmake Release build without tests), as bench/run.sh does.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARGS_GIVEN="$*"
cd "$ROOT"

ROUNDS=5
DURATION=3
WARMUP=0.5s
BASELINE=""
BASE_ARGS=""
NEW_ARGS=""
SKIP_BUILD=0
RAW=""
REPORT=()
while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) BASELINE=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --skip-build) SKIP_BUILD=1 ;;
        --baseline-args) BASE_ARGS=$2; shift ;;
        --new-args) NEW_ARGS=$2; shift ;;
        --out) RAW=$2; shift ;;
        --report) shift; REPORT=("$@"); break ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    [ $# -gt 0 ] && shift
done

say() { echo "[compare] $*" >&2; }

# summarize RAW.jsonl... : the result tables (medians, per-round ratios) on stdout
summarize() {
python3 - "$@" <<'EOF'
import json, statistics, sys
from collections import defaultdict

rows = []
for i, path in enumerate(sys.argv[1:]):  # rounds of different files are different rounds
    for l in open(path):
        if l.strip():
            r = json.loads(l)
            r["round"] = (i, r["round"])
            rows.append(r)
ok = defaultdict(dict)      # (scenario, server) -> {round: result}
failed = defaultdict(int)
for r in rows:
    if r.get("errors", 1) or r.get("deadline_hit") or not r.get("msgs_per_sec"):
        failed[(r["scenario"], r["server"])] += 1
    else:
        ok[(r["scenario"], r["server"])][r["round"]] = r

med = lambda v: statistics.median(v) if v else None
def f(v, d=None):
    if v is None: return "–"
    if d is not None: return f"{v:.{d}f}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
def fr(v): return "–" if v is None else f"{v:.3f}×"

scenarios = [("c50-1KiB", "50 conn × 1 KiB"), ("c1-1KiB", "1 conn × 1 KiB")]
names = {"ref": "reference", "baseline": "baseline mllp-listen", "new": "new mllp-listen"}
metrics = [("msgs_per_sec", "msg/s"), ("server_cpu_us_per_msg", "server CPU µs/msg"),
           ("user_us_per_msg", "server user-space CPU µs/msg")]
for r in rows:  # server CPU per message split by the utime:stime ratio of the run
    u, k = r.get("server_utime_ticks"), r.get("server_stime_ticks")
    if u is not None and k and r.get("server_cpu_us_per_msg") is not None:
        r["user_us_per_msg"] = r["server_cpu_us_per_msg"] * u / (u + k)

print("| scenario | server | runs | msg/s median | msg/s min–max | server CPU µs/msg median | CPU min–max | of it user space, µs/msg | p50 µs median |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for sc, label in scenarios:
    for s in ("ref", "baseline", "new"):
        rs = list(ok[(sc, s)].values())
        m = [r["msgs_per_sec"] for r in rs]
        c = [r["server_cpu_us_per_msg"] for r in rs if "server_cpu_us_per_msg" in r]
        p = [r["p50_us"] for r in rs]
        u = [r["user_us_per_msg"] for r in rs if "user_us_per_msg" in r]
        runs = f"{len(rs)}" + (f" (+{failed[(sc, s)]} failed)" if failed[(sc, s)] else "")
        print(f"| {label} | {names[s]} | {runs} | {f(med(m))} | {f(min(m)) if m else '–'}–{f(max(m)) if m else '–'} "
              f"| {f(med(c))} | {f(min(c)) if c else '–'}–{f(max(c)) if c else '–'} | {f(med(u), 3) if u else '–'} | {f(med(p))} |")
print()
print("Ratios: median over rounds of the per-round ratio (both servers of a ratio measured in the")
print("same round); in brackets the ratio of the medians. \"new vs baseline, relative to ref\" is")
print("median(new/ref) ÷ median(baseline/ref). Verdict: within 5 % means msg/s ≥ 0.95× and CPU/msg")
print("≤ 1.05× there. User-space CPU (server CPU/msg × utime/(utime+stime) of the run, 10 ms")
print("ticks) is the library's own share; the rest is the kernel's TCP work.")
print()
print("| scenario | metric | new/ref | baseline/ref | new/baseline | new vs baseline, relative to ref | verdict |")
print("|---|---|---:|---:|---:|---:|---|")
for sc, label in scenarios:
    for key, mlabel in metrics:
        def per_round(a, b):
            A, B = ok[(sc, a)], ok[(sc, b)]
            return med([A[k][key] / B[k][key] for k in A if k in B and key in A[k] and B[k].get(key)])
        def of_medians(a, b):
            x = med([r[key] for r in ok[(sc, a)].values() if key in r])
            y = med([r[key] for r in ok[(sc, b)].values() if key in r])
            return x / y if x is not None and y else None
        nr, br, nb = per_round("new", "ref"), per_round("baseline", "ref"), per_round("new", "baseline")
        rel = nr / br if nr is not None and br else None
        if rel is None:
            verdict = "–"
        elif key == "user_us_per_msg":
            verdict = "(diagnostic)"
        elif key == "msgs_per_sec":
            verdict = "within 5 %" if rel >= 0.95 else f"**worse by {100 * (1 - rel):.1f} %**"
        else:
            verdict = "within 5 %" if rel <= 1.05 else f"**worse by {100 * (rel - 1):.1f} %**"
        print(f"| {label} | {mlabel} | {fr(nr)} ({fr(of_medians('new', 'ref'))}) | {fr(br)} ({fr(of_medians('baseline', 'ref'))}) "
              f"| {fr(nb)} ({fr(of_medians('new', 'baseline'))}) | {fr(rel)} | {verdict} |")
EOF
}

if [ ${#REPORT[@]} -gt 0 ]; then
    echo "Pooled results of: ${REPORT[*]}"
    echo
    summarize "${REPORT[@]}"
    exit 0
fi

[ -n "$BASELINE" ] || { say "--baseline DIR is required (see --help)"; exit 2; }
BASE_LISTEN=""
for cand in "$BASELINE/mllp-listen" "$BASELINE/build/examples-c/mllp-listen" "$BASELINE/examples-c/mllp-listen"; do
    [ -x "$cand" ] && [ ! -d "$cand" ] && { BASE_LISTEN=$(cd "$(dirname "$cand")" && pwd)/mllp-listen; break; }
done
[ -n "$BASE_LISTEN" ] || { say "no mllp-listen binary in $BASELINE (or its build/examples-c/)"; exit 2; }

BENCH="$ROOT/target/release/mllp-bench"
NEW_LISTEN="$ROOT/build/examples-c/mllp-listen"
REF="$ROOT/target/bench/ref-responder"

# ------------------------------------------------------------------------------------------
# Build (the same commands as bench/run.sh)

if [ "$SKIP_BUILD" = 0 ]; then
    say "building (cargo build --release, cmake, gcc)"
    cargo build --release --workspace >&2 || { say "cargo build failed"; exit 1; }
    { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMLLP_BUILD_TESTS=OFF >/dev/null &&
        cmake --build build -j2 >/dev/null; } || { say "cmake build failed"; exit 1; }
fi
mkdir -p "$ROOT/target/bench"
gcc -O2 -o "$REF" bench/ref-responder.c || { say "gcc failed"; exit 1; }
for b in "$BENCH" "$NEW_LISTEN"; do
    [ -x "$b" ] || { say "missing $b (build this tree, or drop --skip-build)"; exit 1; }
done
[ "$BASE_LISTEN" -ef "$NEW_LISTEN" ] && [ "$BASE_ARGS" = "$NEW_ARGS" ] &&
    { say "baseline and new are the same binary with the same arguments"; exit 2; }

WORK=$(mktemp -d /tmp/mllp-compare.XXXXXX)
mkdir -p "$ROOT/bench/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=${RAW:-"$ROOT/bench/results/compare-$STAMP.jsonl"}
: >"$RAW"
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------
# Servers (start/stop as in bench/run.sh, with the mllp-listen binary chosen per server)

# free_port, wait_listening, stop_server
source "$ROOT/bench/servers.sh"

# start_server NAME -> SERVER_PID, SERVER_PORT; returns 1 if it did not come up.
start_server() {
    local name=$1
    SERVER_PORT=$(free_port)
    local log="$WORK/server-$name.log"
    case "$name" in
        ref)      "$REF" --host 127.0.0.1 --port "$SERVER_PORT" >"$log" 2>&1 & ;;
        # shellcheck disable=SC2086 # the extra arguments are split on purpose
        baseline) "$BASE_LISTEN" --host 127.0.0.1 --port "$SERVER_PORT" --quiet --ack mllp $BASE_ARGS >"$log" 2>&1 & ;;
        # shellcheck disable=SC2086
        new)      "$NEW_LISTEN" --host 127.0.0.1 --port "$SERVER_PORT" --quiet --ack mllp $NEW_ARGS >"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    wait_listening "$name" "$log"
}

# run_load SERVER SCENARIO ROUND BENCH-ARGS...
run_load() {
    local server=$1 scenario=$2 round=$3; shift 3
    local json=""
    if start_server "$server"; then
        local deadline=$((${DURATION%.*} + 60))
        local before after
        before=$(cut -d' ' -f14,15 "/proc/$SERVER_PID/stat" 2>/dev/null)
        json=$(timeout $((deadline + 15)) "$BENCH" --port "$SERVER_PORT" --server-pid "$SERVER_PID" \
            --warmup "$WARMUP" --duration "$DURATION" --messages 100000000 --deadline "$deadline" \
            --scenario "$scenario" --json "$@" 2>>"$WORK/bench.err" | tail -1)
        after=$(cut -d' ' -f14,15 "/proc/$SERVER_PID/stat" 2>/dev/null)
        stop_server
        # utime and stime ticks of the server over the whole run (warm-up included): their
        # ratio splits server_cpu_us_per_msg into user space (the library) and kernel.
        if [ -n "$json" ] && [ -n "$before" ] && [ -n "$after" ]; then
            set -- $before $after
            json="${json%\}},\"server_utime_ticks\":$(($3 - $1)),\"server_stime_ticks\":$(($4 - $2))}"
        fi
    fi
    # mllp-bench's line carries the scenario (--scenario); a failed run gets a line of its own.
    [ -z "$json" ] && json="{\"scenario\":\"$scenario\",\"errors\":1,\"first_error\":\"no output (server did not start or bench failed)\"}"
    printf '{"server":"%s","round":%s,"loadavg":"%s",%s\n' "$server" "$round" \
        "$(cut -d' ' -f1 /proc/loadavg)" "${json#\{}" >>"$RAW"
    say "round $round $scenario $server: $(echo "$json" | grep -o '"msgs_per_sec":[0-9.]*\|"server_cpu_us_per_msg":[0-9.]*\|"errors":[0-9]*' | tr '\n' ' ')"
}

# ------------------------------------------------------------------------------------------
# Rounds

SERVERS=(ref baseline new)
START_TIME=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "baseline: $BASE_LISTEN; new: $NEW_LISTEN; load generator: $BENCH"
for round in $(seq 1 "$ROUNDS"); do
    k=$(((round - 1) % 3))
    order=("${SERVERS[@]:k}" "${SERVERS[@]:0:k}")
    for s in "${order[@]}"; do
        run_load "$s" c50-1KiB "$round" --connections 50 --size 1024 --ack mllp
    done
    for s in "${order[@]}"; do
        run_load "$s" c1-1KiB "$round" --connections 1 --size 1024 --ack mllp
    done
done
END_TIME=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------------------------------
# Report

echo "# mllp-listen: new vs baseline, against the reference responder"
echo
echo "Command: \`bench/compare.sh $ARGS_GIVEN\` ($ROUNDS rounds, ${DURATION} s per run after a $WARMUP warm-up, $((END_TIME - START_TIME)) s in all)  "
echo "new: \`$NEW_LISTEN $NEW_ARGS\`  "
echo "baseline: \`$BASE_LISTEN $BASE_ARGS\`  "
echo "Machine: $(nproc) CPUs, Linux $(uname -r); load average before $LOAD_BEFORE, after $LOAD_AFTER  "
echo "Raw results: \`$RAW\`"
echo
summarize "$RAW"
say "raw results: $RAW"
