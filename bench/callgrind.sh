#!/usr/bin/env bash
# Instructions per message of mllp-listen, counted by valgrind's callgrind: repeatable for the
# same binary and load whatever else the machine is doing (unlike seconds). Two runs with a
# small and a large message count; their difference divided by the extra messages cancels
# start-up and shut-down.
#
#   bench/callgrind.sh [--listen BINARY] [--listen-args ARGS] [--connections N] [--small M] [--large M]
#                      [--ack mllp|hl7] [--size BYTES] [--bench-args ARGS]
#
# Defaults: this tree's build/examples-c/mllp-listen, 50 connections, 200 and 2000 messages
# per connection of 1 KiB, MLLP acknowledgements. Load: this tree's target/release/mllp-bench.
# --listen-args: extra mllp-listen arguments, split on spaces (e.g. "--config DuplicateWindow=100000").
# --bench-args: extra mllp-bench arguments, split on spaces. TLS: --listen-args "--tls-cert C
# --tls-key K" --bench-args --tls.
# --size: message size (mllp-bench's syntax: 1024, 256K, 16M); for large messages use few
# connections and messages, e.g. --size 16M --connections 1 --small 4 --large 20.
# Prints one line: instructions per message and per MiB of message (user space; system calls
# are the kernel's).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LISTEN="$ROOT/build/examples-c/mllp-listen"
BENCH="$ROOT/target/release/mllp-bench"
CONNS=50 SMALL=200 LARGE=2000 ACK=mllp LISTEN_ARGS="" BENCH_ARGS="" SIZE=1024
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) LISTEN=$2; shift ;;
        --listen-args) LISTEN_ARGS=$2; shift ;;
        --bench-args) BENCH_ARGS=$2; shift ;;
        --connections) CONNS=$2; shift ;;
        --small) SMALL=$2; shift ;;
        --large) LARGE=$2; shift ;;
        --ack) ACK=$2; shift ;;
        --size) SIZE=$2; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "callgrind.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
[ -x "$BENCH" ] || (cd "$ROOT" && cargo build --release -p mllp-bench >&2)
WORK=$(mktemp -d /tmp/mllp-callgrind.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Runs mllp-listen under callgrind for CONNS x $1 messages; prints its instruction total.
count() {
    local msgs=$1 log="$WORK/listen-$1.log" out="$WORK/cg-$1.out" port pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$out" "$LISTEN" --host 127.0.0.1 --port "$port" \
        --quiet --ack "$ACK" $LISTEN_ARGS >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$log" && break; sleep 0.1; done
    timeout 900 "$BENCH" --port "$port" --connections "$CONNS" --messages "$msgs" --size "$SIZE" --ack "$ACK" \
        --deadline 900 --json $BENCH_ARGS >"$WORK/bench-$1.json"
    kill -TERM "$pid"
    wait "$pid" || true
    grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
}
small=$(count "$SMALL")
large=$(count "$LARGE")
extra=$(( CONNS * (LARGE - SMALL) ))
# The content size mllp-bench reports (its parse of --size).
bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["size"])' "$WORK/bench-$LARGE.json")
per_msg=$(( (large - small) / extra ))
per_mib=$(( (large - small) * 1048576 / (extra * bytes) ))
echo "$(basename "$LISTEN") ($LISTEN): $per_msg instructions per message, $per_mib per MiB" \
     "($CONNS connections, $bytes bytes, --ack $ACK${BENCH_ARGS:+ $BENCH_ARGS}; totals $small and $large for $SMALL and $LARGE messages per connection)"
