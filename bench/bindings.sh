#!/usr/bin/env bash
# Receive rate of the language bindings against the C host, measured in the same run with the
# same load (mllp-bench). Hosts (bench/hosts/): c = build/examples-c/mllp-listen --quiet (the
# baseline), csharp = Receiver.cs (mono), java = Receiver.java (JNA), python = receiver.py
# (ctypes), cpp = receiver.cpp (mllp.hpp). Each takes every message's bytes and accepts it.
#
#   bench/bindings.sh [--repeats R] [--hosts c,csharp,java,python,cpp] [--loads 50x6000,1x20000]
#                     [--size BYTES] [--warmup 2s] [--duration SECS] [--transfer] [--skip-build]
#
# --repeats R   rounds (default 3). Each round starts every host in turn (c, csharp, java,
#               python, cpp, then the next round), warms it up, runs every load once, stops it;
#               so noise on this shared machine hits all hosts alike. Figures are medians.
# --loads       CONNECTIONSxMESSAGES per connection, comma-separated (default 50x6000,1x20000)
# --size        message size in bytes (default 1024)
# --warmup      mllp-bench warm-up inside each measured run (default 1s), after a separate
#               warm-up run (--prewarm, default 2s) when the host starts
# --duration    cap on each measured interval in seconds (default 8): a slow host is measured
#               on the messages it managed by then
# --transfer    hosts take the bytes from Transfer events instead of AckOut's message
#               (the C host is the same either way)
# Prints a markdown table and writes it to bench/results/bindings-latest.md; raw JSON lines to
# bench/results/bindings-runs-<time>.jsonl. Every step is bounded in time.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ARGS_GIVEN="$*"

REPEATS=3
HOSTS="c,csharp,java,python,cpp"
LOADS="50x6000,1x20000"
SIZE=1024
WARMUP=1s
PREWARM=2
DURATION=8
TRANSFER=0
SKIP_BUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --repeats) REPEATS=$2; shift ;;
        --hosts) HOSTS=$2; shift ;;
        --loads) LOADS=$2; shift ;;
        --size) SIZE=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --prewarm) PREWARM=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --transfer) TRANSFER=1 ;;
        --skip-build) SKIP_BUILD=1 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "bindings.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "[bindings] $*" >&2; }

OUT="$ROOT/bench/results"
HB="$ROOT/target/bench-hosts"      # host builds
WORK=$(mktemp -d /tmp/mllp-bindings.XXXXXX)
mkdir -p "$OUT" "$HB"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$OUT/bindings-runs-$STAMP.jsonl"
: >"$RAW"
LIBDIR="$ROOT/target/release"
BENCH="$LIBDIR/mllp-bench"
# JNA: JNA_JAR, else the one Maven fetched for bindings/java (bindings/java/test.sh), else Debian's.
JNA="${JNA_JAR:-$HOME/.m2/repository/net/java/dev/jna/jna/5.19.1/jna-5.19.1.jar}"
[ -f "$JNA" ] || JNA=/usr/share/java/jna.jar
HOST_PID=""
FIFO="$WORK/stdin"

cleanup() {
    [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null
    exec 9>&- 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------
# Build: the release library and mllp-bench, the cmake build (mllp-listen), the hosts.

if [ "$SKIP_BUILD" = 0 ]; then
    say "building (cargo build --release, cmake, mcs, javac, c++)"
    cargo build --release --workspace >&2 || { say "cargo build failed"; exit 1; }
    { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j2 >/dev/null; } \
        || { say "cmake build failed"; exit 1; }
    has() { case ",$HOSTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
    if has csharp; then
        mcs -nologo -target:library -unsafe -optimize+ -nowarn:1591 -out:"$HB/Mllp.dll" \
            bindings/csharp/src/*.cs >&2 &&
        mcs -nologo -target:exe -optimize+ -r:"$HB/Mllp.dll" -r:Mono.Posix -out:"$HB/Receiver.exe" \
            bench/hosts/Receiver.cs >&2 || { say "C# host build failed: skipping it"; HOSTS=${HOSTS//csharp/}; }
    fi
    if has java; then
        rm -rf "$HB/java" && mkdir -p "$HB/java/classes" &&
        javac -nowarn -d "$HB/java/classes" -cp "$JNA" bindings/java/src/main/java/mllp/*.java &&
        javac -d "$HB/java/classes" -cp "$JNA:$HB/java/classes" bench/hosts/Receiver.java \
            || { say "Java host build failed: skipping it"; HOSTS=${HOSTS//java/}; }
    fi
    if has cpp; then
        c++ -O2 -std=c++17 -Iinclude -Ibindings/cpp/include -o "$HB/receiver-cpp" bench/hosts/receiver.cpp \
            -L"$LIBDIR" -lmllp -Wl,-rpath,"$LIBDIR" -pthread \
            || { say "C++ host build failed: skipping it"; HOSTS=${HOSTS//cpp/}; }
    fi
fi
IFS=, read -r -a HOST_LIST <<<"$HOSTS"
IFS=, read -r -a LOAD_LIST <<<"$LOADS"
MODE_ARG=()
[ "$TRANSFER" = 1 ] && MODE_ARG=(--transfer)

# ------------------------------------------------------------------------------------------
# Hosts. Each reads stdin until EOF (a FIFO held open on fd 9 by this script, so a host
# never outlives the script even if it is killed) and stops on SIGTERM.

mkfifo "$FIFO"
exec 9<>"$FIFO"

# start_host NAME -> HOST_PID, HOST_PORT; returns 1 if it did not come up.
start_host() {
    local name=$1 log="$WORK/host-$1.log"
    : >"$log"
    case "$name" in
        c)      exec "$ROOT/build/examples-c/mllp-listen" --host 127.0.0.1 --port 0 --quiet ;;
        csharp) LD_LIBRARY_PATH="$LIBDIR" exec mono --optimize=all "$HB/Receiver.exe" "${MODE_ARG[@]}" ;;
        java)   exec java -Djna.library.path="$LIBDIR" -cp "$HB/java/classes:$JNA" Receiver "${MODE_ARG[@]}" ;;
        python) MLLP_LIBRARY="$LIBDIR/libmllp.so" PYTHONPATH="$ROOT/bindings/python" \
                    exec python3 "$ROOT/bench/hosts/receiver.py" "${MODE_ARG[@]}" ;;
        cpp)    exec "$HB/receiver-cpp" "${MODE_ARG[@]}" ;;
    esac <"$FIFO" >"$log" 2>"$log.err" &
    HOST_PID=$!
    local i
    for i in $(seq 1 150); do
        HOST_PORT=$(sed -n '1s/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$log")
        [ -n "$HOST_PORT" ] && return 0
        kill -0 "$HOST_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "$name did not start: $(tail -3 "$log.err" | tr '\n' ' ')"
    stop_host
    return 1
}

stop_host() {
    [ -z "$HOST_PID" ] && return
    kill "$HOST_PID" 2>/dev/null
    local i
    for i in $(seq 1 50); do
        kill -0 "$HOST_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$HOST_PID" 2>/dev/null
    wait "$HOST_PID" 2>/dev/null
    HOST_PID=""
}

# bench LOAD-NAME CONNS MSGS ROUND HOST [extra args]: one measured run, recorded as JSON.
bench() {
    local load=$1 conns=$2 msgs=$3 round=$4 host=$5
    local deadline=$((DURATION + 60)) json
    json=$(timeout $((deadline + 15)) "$BENCH" --port "$HOST_PORT" --server-pid "$HOST_PID" \
        --connections "$conns" --messages "$msgs" --size "$SIZE" --warmup "$WARMUP" \
        --duration "$DURATION" --deadline "$deadline" --scenario "$load" --json 2>>"$WORK/bench.err" | tail -1)
    [ -z "$json" ] && json='{"errors":1,"first_error":"no output"}'
    printf '{"host":"%s","load":"%s","round":%s,%s\n' "$host" "$load" "$round" "${json#\{}" >>"$RAW"
    say "round $round $load $host: $(echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%s msgs/s, server %s us/msg, p50 %s us, errors %s" % (d.get("msgs_per_sec"), d.get("server_cpu_us_per_msg"), d.get("p50_us"), d.get("errors")))' 2>/dev/null)"
}

T0=$(date +%s)
for round in $(seq 1 "$REPEATS"); do
    for host in "${HOST_LIST[@]}"; do
        [ -z "$host" ] && continue
        if ! start_host "$host"; then
            printf '{"host":"%s","load":"*","round":%s,"errors":1,"first_error":"host did not start"}\n' \
                "$host" "$round" >>"$RAW"
            continue
        fi
        # Warm-up run (JIT, connection set-up paths), not recorded.
        timeout $((PREWARM + 30)) "$BENCH" --port "$HOST_PORT" --connections 50 --messages 100000000 \
            --size "$SIZE" --duration "$PREWARM" --deadline $((PREWARM + 20)) --json >/dev/null 2>&1
        for load in "${LOAD_LIST[@]}"; do
            bench "$load" "${load%x*}" "${load#*x}" "$round" "$host"
        done
        stop_host
    done
done
ELAPSED=$(( $(date +%s) - T0 ))

# ------------------------------------------------------------------------------------------
# Report

CMD="bench/bindings.sh${ARGS_GIVEN:+ $ARGS_GIVEN}"
python3 - "$RAW" "$OUT/bindings-latest.md" "$CMD" "$REPEATS" "$SIZE" "$ELAPSED" "$TRANSFER" "$HOSTS" <<'EOF'
import json, platform, os, statistics, sys, time
raw, out, cmd, repeats, size, elapsed, transfer, hosts = sys.argv[1:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
names = {"c": "C (mllp-listen --quiet)", "csharp": "C# (Mono)", "java": "Java (JNA)",
         "python": "Python (ctypes)", "cpp": "C++ (mllp.hpp)"}
target = {"csharp": 0.7, "java": 0.7, "python": 0.3}
order = [h for h in hosts.split(",") if h]
loads = []
for r in rows:
    if r["load"] != "*" and r["load"] not in loads:
        loads.append(r["load"])

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    return "—" if x is None else f"{x:,.{nd}f}"

lines = []
w = lines.append
w("# Bindings: receive rate against the C host\n")
w(f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
  f"{os.cpu_count()} CPUs, {platform.machine()}, {elapsed} s).  ")
w(f"Medians of {repeats} rounds; hosts interleaved per round (each started, warmed up, every load "
  f"run once, stopped). Messages: {size} bytes; each host takes every message's bytes "
  f"({'from Transfer events' if transfer == '1' else 'AckOut message'}) and accepts it. Ratio = "
  "host msgs/s ÷ C host msgs/s (same run). Server CPU = utime+stime of the host process per "
  "message (mllp-bench --server-pid).\n")
for load in loads:
    conns, msgs = load.split("x")
    w(f"## {conns} connection{'s' if conns != '1' else ''} × {msgs} messages\n")
    w("| host | msgs/s (median) | min–max | ratio vs C | target | server CPU µs/msg | p50 µs | p99 µs | errors |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    def stats(h):
        rs = [r for r in rows if r["host"] == h and r["load"] == load]
        ok = [r for r in rs if not r.get("errors") and r.get("msgs_per_sec")]
        rates = [r["msgs_per_sec"] for r in ok]
        return (med(rates), (min(rates), max(rates)) if rates else None,
                med([r.get("server_cpu_us_per_msg") for r in ok]), med([r.get("p50_us") for r in ok]),
                med([r.get("p99_us") for r in ok]), sum(1 for r in rs if r.get("errors")), len(ok))
    base = stats("c")[0]
    for h in order:
        rate, rng, cpu, p50, p99, errs, n = stats(h)
        ratio = rate / base if rate and base else None
        t = target.get(h)
        verdict = "" if t is None or ratio is None else (" ✓" if ratio >= t else " ✗")
        w(f"| {names.get(h, h)} | {fmt(rate)} | {fmt(rng[0]) + '–' + fmt(rng[1]) if rng else '—'} | "
          f"{'—' if ratio is None else f'{ratio:.2f}×'}{verdict} | {'' if t is None else f'≥ {t}×'} | "
          f"{fmt(cpu, 1)} | {fmt(p50)} | {fmt(p99)} | {errs} |")
    w("")
w(f"Raw results: `bench/results/{os.path.basename(raw)}`.")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
sys.stdout.write(text)
EOF
