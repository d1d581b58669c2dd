# Group "durable" (sourced by bench/run.sh): mllp-listen --out-dir (group commit: one syncfs
# per batch on ext4/XFS, then the names, then one directory fsync) against fsync-ref
# (bench/fsync-ref.c: per message write, fdatasync, rename, directory fsync, then the ACK: the
# "one fdatasync per message" program), 1 KiB messages at 1, 10 and 50 connections, both in
# the same run, interleaved per repetition. Both write under $WORK (the same file system).
# Recorded as server "listen" and "fsync-ref" (started through run.sh's "ref" slot with REF
# pointing at fsync-ref for the duration of the run); reported by durable.py.
DURABLE_REF="$ROOT/target/bench/fsync-ref"
if gcc -O2 -o "$DURABLE_REF" "$ROOT/bench/fsync-ref.c"; then
    durable_fsync_ref() { # VARIANT REPEAT CONNECTIONS
        local saved_ref=$REF
        REF=$DURABLE_REF
        rm -rf "$WORK/durable-out"
        # run_load records the server name it was given; re-tag the row as fsync-ref.
        run_load durable ref "$1" "$2" --dir "$WORK/durable-out" -- --connections "$3" --size 1024 --ack mllp
        REF=$saved_ref
        sed -i '$ s/^{"group":"durable","server":"ref",/{"group":"durable","server":"fsync-ref",/' "$RAW"
        rm -rf "$WORK/durable-out"
    }
    for rep in $(seq 1 "$REPEATS"); do
        for c in 1 10 50; do
            durable_fsync_ref "c$c-1KiB" "$rep" "$c"
            if has "$SERVERS_SEL" listen; then
                rm -rf "$WORK/durable-out"
                run_load durable listen "c$c-1KiB" "$rep" --out-dir "$WORK/durable-out" -- --connections "$c" --size 1024 --ack mllp
                rm -rf "$WORK/durable-out"
            fi
        done
    done
else
    say "durable: gcc failed for bench/fsync-ref.c: group skipped"
fi
