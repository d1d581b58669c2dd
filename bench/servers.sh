# Server helpers shared by bench/run.sh and bench/compare.sh (sourced, not run). They use the
# caller's SERVER_PID and SERVER_PORT variables and its say() for messages.

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_listening NAME LOG: waits until the server started as SERVER_PID printed "listening on"
# to LOG and accepts on SERVER_PORT; returns 1 (and stops it) if it did not come up in 10 s.
wait_listening() {
    local name=$1 log=$2 i
    for i in $(seq 1 100); do
        if grep -q "listening on" "$log" 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null; then
            sleep 0.1
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "$name did not start: $(tail -3 "$log" | tr '\n' ' ')"
    stop_server
    return 1
}

# Stops SERVER_PID (TERM, then KILL after 3 s) and waits for it.
stop_server() {
    [ -z "$SERVER_PID" ] && return
    kill "$SERVER_PID" 2>/dev/null
    local i
    for i in $(seq 1 30); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
