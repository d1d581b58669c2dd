#!/usr/bin/env bash
# mllp-listen --pg: group commit against one transaction per message, same PostgreSQL, same run.
#
#   bench/pg.sh [--rounds R] [--duration S] [--connections C] [--skip-build] [--out FILE]
#
# Starts its own PostgreSQL (tests/pg/pgserver.py: initdb into a temporary directory, 127.0.0.1
# on a free port, as the system user mllptest when run as root), with fsync=on and
# synchronous_commit=on, PostgreSQL's defaults, left alone on purpose: a commit that is not
# durable would make every ACK a lie, and a benchmark without the sync would measure nothing
# mllp-listen can promise. Every round runs, in an order rotated from round to round and each
# on a freshly started mllp-listen with a fresh table (mllp-bench's control ids repeat from run
# to run, and a table of duplicates would measure lookups):
#   group   mllp-listen --pg CONNINFO            (group commit: one transaction per round of
#                                                 everything queued, up to --pg-batch 500)
#   group1  mllp-listen --pg CONNINFO --pg-group 1   (one transaction, one COMMIT, per message)
# loaded by target/release/mllp-bench -c C --duration S --warmup 1s --json --server-pid PID
# (1 KiB ADT^A01, MLLP commit acknowledgements). Prints medians (msgs/s, p50, p99) and the
# per-round ratio group/group1 with its median. Defaults: 3 rounds, 5 s, 50 connections.
# Raw JSON lines (mllp-bench's, plus variant, round and the table's row count) go to
# bench/results/pg-<time>.jsonl (or --out FILE).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=3
DURATION=5
CONNS=50
SKIP_BUILD=0
RAW=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --connections) CONNS=$2; shift ;;
        --skip-build) SKIP_BUILD=1 ;;
        --out) RAW=$2; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "pg.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$SKIP_BUILD" = 0 ]; then
    cargo build --release -p mllp-bench >&2 || exit 1
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMLLP_BUILD_TESTS=OFF >/dev/null && cmake --build build -j2 --target mllp-listen >&2 || exit 1
fi
mkdir -p bench/results
[ -n "$RAW" ] || RAW="bench/results/pg-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
exec python3 - "$ROUNDS" "$DURATION" "$CONNS" "$RAW" <<'PYEOF'
import json, os, socket, statistics, subprocess, sys, time

rounds, duration, conns, raw = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, "tests/pg")
import pgserver  # noqa: E402

LISTEN, BENCH = "build/examples-c/mllp-listen", "target/release/mllp-bench"
VARIANTS = {"group": [], "group1": ["--pg-group", "1"]}

def listen(srv, table, extra):
    port = pgserver.free_port()
    p = subprocess.Popen([LISTEN, "--port", str(port), "--quiet", "--pg", srv.conninfo, "--pg-table", table, *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p, port
        except OSError:
            time.sleep(0.02)
    p.kill()
    sys.exit("mllp-listen did not start")

srv = pgserver.PgServer()
results = {v: [] for v in VARIANTS}
try:
    srv.start()
    settings = dict(srv.psql("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method')"))
    version = srv.psql("SHOW server_version")[0][0]
    print(f"PostgreSQL {version}: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())))
    assert settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
    names = list(VARIANTS)
    with open(raw, "a") as out:
        for r in range(1, rounds + 1):
            order = names[(r - 1) % len(names):] + names[:(r - 1) % len(names)]
            for v in order:
                table = f"bench_r{r}_{v}"
                p, port = listen(srv, table, VARIANTS[v])
                try:
                    b = subprocess.run([BENCH, "--port", str(port), "-c", str(conns), "-n", "100000000",
                                        "--duration", duration, "--warmup", "1s", "--json",
                                        "--server-pid", str(p.pid), "--scenario", f"pg-{v}-c{conns}"],
                                       capture_output=True, text=True, timeout=300)
                    res = json.loads(b.stdout.strip().splitlines()[-1])
                finally:
                    p.terminate()
                    p.wait(10)
                res.update(variant=v, round=r, rows=int(srv.psql(f"SELECT count(*) FROM {table}")[0][0]),
                           pg_version=version)
                out.write(json.dumps(res) + "\n")
                out.flush()
                results[v].append(res)
                print(f"round {r} {v:7s} {res['msgs_per_sec']:9.0f} msgs/s  p50 {res['p50_us']/1000:7.2f} ms  "
                      f"p99 {res['p99_us']/1000:7.2f} ms  errors {res['errors']} naks {res['naks']}  rows {res['rows']}",
                      flush=True)
finally:
    srv.destroy()

print(f"\n{conns} connections x 1 KiB, MLLP acks, {duration} s per run, {rounds} rounds (medians):")
for v in VARIANTS:
    rs = results[v]
    print(f"  {v:7s} {statistics.median(x['msgs_per_sec'] for x in rs):9.0f} msgs/s "
          f"(min {min(x['msgs_per_sec'] for x in rs):.0f}, max {max(x['msgs_per_sec'] for x in rs):.0f})  "
          f"p50 {statistics.median(x['p50_us'] for x in rs)/1000:.2f} ms  "
          f"p99 {statistics.median(x['p99_us'] for x in rs)/1000:.2f} ms")
ratios = [g["msgs_per_sec"] / o["msgs_per_sec"] for g, o in zip(results["group"], results["group1"])]
print("  group / group1 per round: " + ", ".join(f"{x:.1f}x" for x in ratios) +
      f"; median {statistics.median(ratios):.1f}x (bound: >= 5x) -> " +
      ("met" if statistics.median(ratios) >= 5 else "NOT MET"))
print(f"raw results: {raw}")
PYEOF
