# Group "large" (sourced by bench/run.sh): large messages at linear cost. mllp-listen against the
# reference responder (bench/ref-responder.c: scans for the end block, keeps nothing), same run,
# interleaved per repetition: one connection at 256 KiB, 1 MiB, 4 MiB, 16 MiB and 64 MiB (the
# default MaxMessageSize), and four connections at 4 MiB. Recorded per size: MB/s, server CPU
# per MiB and server minor page faults per MiB (mllp-bench --server-pid); reported by large.py.
# LARGE_SIZES / LARGE_C4_SIZES override the sizes (e.g. for a smoke run).
LARGE_SIZES=${LARGE_SIZES:-"256K 1M 4M 16M 64M"}
LARGE_C4_SIZES=${LARGE_C4_SIZES:-"4M"}
for rep in $(seq 1 "$REPEATS"); do
    for s in $(servers_for listen ref); do
        for z in $LARGE_SIZES; do
            run_load large "$s" "c1-s$z" "$rep" -- --connections 1 --size "$z" --ack mllp
        done
        for z in $LARGE_C4_SIZES; do
            run_load large "$s" "c4-s$z" "$rep" -- --connections 4 --size "$z" --ack mllp
        done
    done
done
