# Group "tls" (sourced by bench/run.sh): TLS against plain TCP and against a bare rustls
# responder, all in the same run, interleaved per repetition.
#   - 50 connections x 1 KiB, closed loop: mllp-listen plain, mllp-listen TLS, tls-ref
#     (bench/mllp-bench/src/bin/tls-ref.rs: rustls + mio, MLLP framing, a fixed commit ACK,
#     nothing else); also with HL7 acknowledgements (mllp-listen --ack hl7, plain and TLS).
#   - a new TLS connection per message (bench/mllp-bench/src/bin/handshakes.rs, 4 closed
#     loops): handshakes/s, full (--no-resume) and resumed, mllp-listen against tls-ref.
#   - 2,000 idle TLS connections that each did one message round trip: server bytes each.
# Both servers use the same throw-away certificate (RSA-2048, made with openssl; TLS_KEY_ALG
# overrides, e.g. "ec -pkeyopt ec_paramgen_curve:P-256") and rustls's defaults as mllp uses
# them. tls-ref is started through run.sh's "ref" slot (REF pointing at it for the duration of
# each run) and its rows re-tagged "tls-ref"; handshakes rows are recorded with run.sh's
# record. Reported by tls.py.
TLS_REF_BIN="$ROOT/target/release/tls-ref"
TLS_HS_BIN="$ROOT/target/release/handshakes"
TLS_KEY_ALG=${TLS_KEY_ALG:-rsa:2048}
TLS_CERT="$WORK/tls-cert.pem" TLS_KEY="$WORK/tls-key.pem"
TLS_IDLE=${TLS_IDLE:-2000}
if ! command -v openssl >/dev/null; then
    say "tls: openssl not found: group skipped"
elif [ ! -x "$TLS_REF_BIN" ] || [ ! -x "$TLS_HS_BIN" ]; then
    say "tls: $TLS_REF_BIN or $TLS_HS_BIN missing (cargo build --release -p mllp-bench): group skipped"
elif ! openssl req -x509 -newkey $TLS_KEY_ALG -nodes -keyout "$TLS_KEY" -out "$TLS_CERT" -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>>"$WORK/bench.err"; then
    say "tls: openssl could not make a certificate: group skipped"
else
    TLS_LISTEN_ARGS=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
    TLS_REF_ARGS=(--cert "$TLS_CERT" --key "$TLS_KEY")
    # tls_ref VARIANT REPEAT [SERVER-ARGS...] -- BENCH-ARGS...: run_load against tls-ref.
    tls_ref_load() {
        local variant=$1 rep=$2 saved_ref=$REF
        shift 2
        REF=$TLS_REF_BIN
        run_load tls ref "$variant" "$rep" "$@"
        REF=$saved_ref
        sed -i '$ s/^{"group":"tls","server":"ref",/{"group":"tls","server":"tls-ref",/' "$RAW"
    }
    # tls_client SERVER VARIANT REPEAT HANDSHAKES-ARGS...: one handshakes run against
    # mllp-listen (listen) or tls-ref.
    tls_client() {
        local server=$1 variant=$2 rep=$3 saved_ref=$REF json
        shift 3
        if [ "$server" = tls-ref ]; then
            REF=$TLS_REF_BIN
            start_server ref "${TLS_REF_ARGS[@]}"
        else
            start_server listen "${TLS_LISTEN_ARGS[@]}"
        fi || { REF=$saved_ref; record tls "$server" "$variant" "$rep" '{"errors":1,"first_error":"server did not start"}'; return; }
        REF=$saved_ref
        json=$(timeout $((DURATION + 240)) "$TLS_HS_BIN" --port "$SERVER_PORT" --server-pid "$SERVER_PID" \
            --duration "$DURATION" --warmup "${WARMUP%s}" --deadline $((DURATION + 200)) \
            --scenario "$variant" --json "$@" 2>>"$WORK/bench.err" | tail -1)
        stop_server
        record tls "$server" "$variant" "$rep" "$json"
        say "tls/$variant/$server#$rep: $(echo "$json" | cut -c1-220)"
    }
    for rep in $(seq 1 "$REPEATS"); do
        if has "$SERVERS_SEL" listen; then
            run_load tls listen c50-1KiB-plain "$rep" -- --connections 50 --size 1024 --ack mllp
            run_load tls listen c50-1KiB-tls "$rep" "${TLS_LISTEN_ARGS[@]}" -- --connections 50 --size 1024 --ack mllp --tls
        fi
        tls_ref_load c50-1KiB-tls "$rep" "${TLS_REF_ARGS[@]}" -- --connections 50 --size 1024 --ack mllp --tls
        if has "$SERVERS_SEL" listen; then
            run_load tls listen c50-1KiB-hl7-plain "$rep" --ack hl7 -- --connections 50 --size 1024 --ack hl7
            run_load tls listen c50-1KiB-hl7-tls "$rep" --ack hl7 "${TLS_LISTEN_ARGS[@]}" -- --connections 50 --size 1024 --ack hl7 --tls
        fi
        for kind in resumed full; do
            hs_args=(--new-connection-per-message --connections 4 --size 1024)
            [ "$kind" = full ] && hs_args+=(--no-resume)
            has "$SERVERS_SEL" listen && tls_client listen "handshake-$kind" "$rep" "${hs_args[@]}"
            tls_client tls-ref "handshake-$kind" "$rep" "${hs_args[@]}"
        done
        has "$SERVERS_SEL" listen && tls_client listen "idle-tls-after-message" "$rep" --idle "$TLS_IDLE" --idle-message --hold 3
        tls_client tls-ref "idle-tls-after-message" "$rep" --idle "$TLS_IDLE" --idle-message --hold 3
    done
fi
