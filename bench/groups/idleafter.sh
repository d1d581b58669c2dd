# Group "idleafter" (sourced by bench/run.sh): what an idle connection costs mllp-listen after
# traffic. Each of N connections sends one message of size S (one connection at a time, waiting
# for its acknowledgement), then all are held idle and the server's RSS growth per connection is
# recorded (mllp-bench --idle N --idle-after S). Plain and HL7 acknowledgements; a connection that
# never sent is the baseline. N is bounded by the open-file limit (max_idle); large sizes use
# fewer connections (mllp-bench sends one warm-up message first, so the server's one-time set-up
# is not counted per connection). IDLEAFTER_N / IDLEAFTER_BIG_N override the counts (e.g. for a smoke run).
IDLEAFTER_N=${IDLEAFTER_N:-10000}  # mllp-listen accepts at most the descriptor limit less 1/8 (MaxConnections=0)
IDLEAFTER_BIG_N=${IDLEAFTER_BIG_N:-1000}
idleafter_run() { # SERVER-ACK VARIANT REPEAT N SIZE
    local ack=$1 variant=$2 rep=$3 n size=$5 json
    n=$(max_idle "$4")
    start_server listen --ack "$ack" || { record idleafter listen "$variant" "$rep" '{"errors":1,"first_error":"server did not start"}'; return; }
    sleep 0.5 # let the server settle before the "before" RSS sample
    local after=()
    [ "$size" != 0 ] && after=(--idle-after "$size")
    json=$(timeout 400 "$BENCH" --port "$SERVER_PORT" --server-pid "$SERVER_PID" --idle "$n" "${after[@]}" \
        --sources 4 --hold 4 --deadline 380 --scenario "$variant" --json 2>>"$WORK/bench.err" | tail -1)
    stop_server
    record idleafter listen "$variant" "$rep" "$json"
    say "idleafter/$variant#$rep: $(echo "$json" | cut -c1-220)"
}
for rep in $(seq 1 "$SCALE_REPEATS"); do
    if has "$SERVERS_SEL" listen; then
        idleafter_run mllp "never-mllp" "$rep" "$IDLEAFTER_N" 0
        idleafter_run mllp "1KiB-mllp" "$rep" "$IDLEAFTER_N" 1K
        idleafter_run hl7 "1KiB-hl7" "$rep" "$IDLEAFTER_N" 1K
        idleafter_run mllp "64KiB-mllp" "$rep" "$IDLEAFTER_BIG_N" 64K
        idleafter_run mllp "4MiB-mllp" "$rep" "$IDLEAFTER_BIG_N" 4M
    fi
done
