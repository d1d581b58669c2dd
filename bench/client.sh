#!/usr/bin/env bash
# The sending side measured against the load generator: 1 connection x 1 KiB, MLLP commit
# acknowledgements, against mllp-listen, all in the same run.
#
#   bench/client.sh [--rounds R] [--messages M] [--skip-build] [--out FILE]
#
# Every round runs, in an order rotated from round to round and each on a freshly started
# mllp-listen: mllp-bench's own closed loop (the baseline), mllp-bench --via-client (the same
# loop through mllp::client::Client, one blocking send at a time) and build/examples-c/mllp-send
# with a file of M messages (wall time of the whole process, start-up and file reading
# included). Then memory: mllp-bench --client-idle 1000 (1000 connected clients of the library,
# each sent one message; this process's RSS growth per client), plain and TLS.
# Prints medians, min-max and the median of the per-round ratios against the baseline.
# Defaults: 5 rounds of 20000 messages after 500 warm-up messages. Raw JSON lines go to
# bench/results/client-<time>.jsonl (or --out FILE).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=5
MESSAGES=20000
SKIP_BUILD=0
RAW=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --messages) MESSAGES=$2; shift ;;
        --skip-build) SKIP_BUILD=1 ;;
        --out) RAW=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "client.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$SKIP_BUILD" = 0 ]; then
    cargo build --release --workspace >&2 || exit 1
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMLLP_BUILD_TESTS=OFF >/dev/null && cmake --build build -j2 >&2 || exit 1
fi
mkdir -p bench/results
[ -n "$RAW" ] || RAW="bench/results/client-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
exec python3 - "$ROUNDS" "$MESSAGES" "$RAW" <<'EOF'
import json, os, socket, statistics, subprocess, sys, tempfile, time

rounds, messages, raw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
LISTEN, BENCH, SEND = "build/examples-c/mllp-listen", "target/release/mllp-bench", "build/examples-c/mllp-send"
work = tempfile.mkdtemp(prefix="mllp-client-bench.")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def listen(extra=()):
    port = free_port()
    p = subprocess.Popen([LISTEN, "--port", str(port), "--quiet", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p, port
        except OSError:
            time.sleep(0.02)
    p.kill()
    sys.exit("mllp-listen did not start")

def bench(port, *args):
    out = subprocess.run([BENCH, "--port", str(port), "--json", *args], capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])

# One file of `messages` 1 KiB messages for mllp-send: the generator's own message, one per id.
msg_file = os.path.join(work, "msgs.hl7")
pad = "NTE|1||" + ("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz0123456789.,," * 20)
with open(msg_file, "w") as f:
    for i in range(messages):
        head = f"MSH|^~\\&|MLLPSEND|BENCHFAC|RECEIVER|RECVFAC|20260101120000||ADT^A01^ADT_A01|S{i:09d}|P|2.5.1\r"
        body = "EVN|A01|20260101120000\rPID|1||4711^^^HOSP^MR||DOE^JANE^Q||19700101|F\rPV1|1|I|W^389^1^HOSP\r"
        m = head + body
        f.write(m + pad[: 1024 - len(m) - 1] + "\r")

def run_send(port):
    t0 = time.monotonic()
    r = subprocess.run([SEND, "--port", str(port), "--quiet", msg_file], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    secs = time.monotonic() - t0
    return {"msgs_per_sec": messages / secs if r.returncode == 0 else None, "seconds": secs, "exit": r.returncode}

modes = ["baseline", "client", "mllp-send"] if os.access(SEND, os.X_OK) else ["baseline", "client"]
results = {m: [] for m in modes}
with open(raw, "w") as out:
    for rnd in range(rounds):
        order = modes[rnd % len(modes):] + modes[: rnd % len(modes)]
        for m in order:
            p, port = listen()
            try:
                if m == "baseline":
                    r = bench(port, "-n", str(messages), "--warmup", "500", "--server-pid", str(p.pid))
                elif m == "client":
                    r = bench(port, "-n", str(messages), "--warmup", "500", "--via-client", "--server-pid", str(p.pid))
                else:
                    r = run_send(port)
            finally:
                p.terminate()
                p.wait()
            r.update(round=rnd, mode=m)
            out.write(json.dumps(r) + "\n")
            results[m].append(r)
            print(f"[client-bench] round {rnd + 1} {m}: {r.get('msgs_per_sec') or 0:,.0f} msg/s", file=sys.stderr)

    # Memory per client connection: 1000 clients, plain and TLS.
    mem = {}
    p, port = listen()
    try:
        mem["plain"] = bench(port, "--client-idle", "1000")
    finally:
        p.terminate(); p.wait()
    ca, cakey = os.path.join(work, "ca.pem"), os.path.join(work, "ca.key")
    cert, key, csr = os.path.join(work, "srv.pem"), os.path.join(work, "srv.key"), os.path.join(work, "srv.csr")
    ext = os.path.join(work, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for cmd in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench CA", "-keyout", cakey, "-out", ca],
                ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
                ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey, "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert]):
        subprocess.run(["openssl", *cmd], capture_output=True, check=True, cwd=work)
    p, port = listen(["--tls-cert", cert, "--tls-key", key])
    try:
        mem["tls"] = bench(port, "--client-idle", "1000", "--tls", "--tls-ca", ca, "--tls-server-name", "localhost")
    finally:
        p.terminate(); p.wait()
    for k, v in mem.items():
        v.update(mode=f"idle-{k}")
        out.write(json.dumps(v) + "\n")

med = statistics.median
base = {r["round"]: r["msgs_per_sec"] for r in results["baseline"] if r.get("msgs_per_sec")}
print(f"1 connection x 1 KiB, MLLP acknowledgements, against mllp-listen; {rounds} rounds of {messages} messages; raw: {raw}\n")
print("| sender | msg/s median | min–max | ratio to baseline: median of per-round ratios (min–max) | client CPU µs/msg median |")
print("|---|---:|---:|---:|---:|")
names = {"baseline": "mllp-bench (baseline)", "client": "mllp-bench --via-client (mllp::client)", "mllp-send": "mllp-send FILE"}
for m in modes:
    v = [r["msgs_per_sec"] for r in results[m] if r.get("msgs_per_sec")]
    ratios = [r["msgs_per_sec"] / base[r["round"]] for r in results[m] if r.get("msgs_per_sec") and r["round"] in base]
    cpu = [r["client_cpu_us_per_msg"] for r in results[m] if r.get("client_cpu_us_per_msg")]
    cpu_s = f"{med(cpu):.2f}" if cpu else "– (not measured)"
    print(f"| {names[m]} | {med(v):,.0f} | {min(v):,.0f}–{max(v):,.0f} | {med(ratios):.3f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {cpu_s} |" if v else f"| {names[m]} | – | – | – | – |")
print()
for k, v in mem.items():
    print(f"Memory per client connection ({k}): {v['bytes_per_client']:,.0f} bytes "
          f"(RSS {v['rss_before_kb']:,} → {v['rss_after_kb']:,} KiB for {v['clients']} clients, errors {v['errors']})")
EOF
