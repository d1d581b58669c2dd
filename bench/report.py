#!/usr/bin/env python3
"""Turns the JSON lines written by bench/run.sh into the markdown report (medians of repeated
runs, ratios against the reference responder measured in the same run, target checks)."""
import argparse
import importlib.util
import json
import os
import statistics
from collections import defaultdict

SERVER_NAMES = {
    "listen": "mllp-listen",
    "ref": "reference (C epoll)",
    "python": "python-hl7",
    "node": "simple-hl7 (node)",
}
ORDER = ["listen", "ref", "python", "node"]


def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fr(r):
    return "–" if r is None else f"{r:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--machine", default="")
    ap.add_argument("--command", default="")
    ap.add_argument("--peers", default="")
    ap.add_argument("--note", default="")
    ap.add_argument("--elapsed", type=int, default=0)
    a = ap.parse_args()

    runs = defaultdict(list)  # (group, variant, server) -> [result]
    with open(a.raw) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            runs[(r.get("group"), r.get("variant"), r.get("server"))].append(r)

    def ok(r):
        # A run that measured nothing (server did not start, connection refused) is reported
        # as failed and left out of the medians.
        if str(r.get("variant", "")).startswith("idle"):
            return bool(r.get("opened"))
        return bool(r.get("messages"))

    def m(group, variant, server, key):
        return med(r.get(key) for r in runs.get((group, variant, server), []) if ok(r))

    def failed(group, variant, server):
        return sum(1 for r in runs.get((group, variant, server), []) if not ok(r))

    def total(group, variant, server, key):
        return sum(r.get(key) or 0 for r in runs.get((group, variant, server), []))

    def n(group, variant, server):
        return len(runs.get((group, variant, server), []))

    def deadline_hits(group, variant, server):
        # Deadline hits and stalls: one acknowledgement took > 1 s and > 20x the p99.
        def stalled(r):
            mx, p99 = r.get("max_us"), r.get("p99_us")
            return mx is not None and p99 is not None and mx > 1e6 and mx > 20 * p99
        return sum(1 for r in runs.get((group, variant, server), [])
                   if r.get("deadline_hit") or stalled(r))

    # The 10,000-idle-connection runs of the main group also belong to the idle scaling table.
    for (g, v, s), rs in list(runs.items()):
        if g == "main" and v == "idle-10000" and ("idle", v, s) not in runs:
            runs[("idle", v, s)] = rs
    servers = [s for s in ORDER if any(k[2] == s for k in runs)]
    out = []
    w = out.append
    w("# mllp benchmark report\n")
    w(f"- Machine: {a.machine}")
    w(f"- Command: `{a.command}`; took {a.elapsed} s")
    w(f"- Peers: {a.peers}")
    if a.note:
        w(f"- Note: {a.note}")
    w("- Values are medians over the repetitions (n = runs); ratios are against the reference "
      "responder measured in the same run. Server CPU is utime+stime of the server process from "
      "/proc over the measured interval, divided by the messages acknowledged in it.")
    w("- Peers always answer with an HL7 ACK (that is what they do); mllp-listen and the "
      "reference answer with the MLLP commit block unless the scenario says hl7.\n")

    # --- main ----------------------------------------------------------------------------
    main_variants = []
    for k in runs:
        if k[0] == "main" and not k[1].startswith("idle") and k[1] not in main_variants:
            main_variants.append(k[1])
    if main_variants:
        w("## Main scenarios\n")
        w("| scenario | server | n | msg/s | MB/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/msg "
          "| server RSS KiB | msg/s vs ref | CPU/msg vs ref | p50 vs ref | errors / NAKs |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for v in main_variants:
            base = v.replace("-hl7", "").replace("-outdir", "")
            for s in servers:
                if n("main", v, s) == 0:
                    continue
                mps = m("main", v, s, "msgs_per_sec")
                cpu = m("main", v, s, "server_cpu_us_per_msg")
                p50 = m("main", v, s, "p50_us")
                rmps = m("main", base, "ref", "msgs_per_sec")
                rcpu = m("main", base, "ref", "server_cpu_us_per_msg")
                rp50 = m("main", base, "ref", "p50_us")
                dh = deadline_hits("main", v, s)
                err = f"{int(total('main', v, s, 'errors'))} / {int(total('main', v, s, 'naks'))}"
                if dh:
                    err += f" ({dh} stalled / deadline hit)"
                fl = failed("main", v, s)
                if fl:
                    err += f" ({fl} run(s) failed: left out)"
                w(f"| {v} | {SERVER_NAMES.get(s, s)} | {n('main', v, s)} | {fmt(mps)} | "
                  f"{fmt(m('main', v, s, 'mb_per_sec'))} | {fmt(p50)} | {fmt(m('main', v, s, 'p99_us'))} | "
                  f"{fmt(m('main', v, s, 'p999_us'))} | {fmt(cpu)} | {fmt(m('main', v, s, 'server_rss_kb'))} | "
                  f"{fr(ratio(mps, rmps))} | {fr(ratio(cpu, rcpu))} | {fr(ratio(p50, rp50))} | {err} |")
        w("")

    idle_main = [k for k in runs if k[0] == "main" and k[1].startswith("idle")]
    if idle_main:
        v = idle_main[0][1]
        w(f"## Idle connections ({v})\n")
        w("| server | n | held | server RSS before → after KiB | bytes per idle connection | vs ref |")
        w("|---|---|---|---|---|---|")
        rb = m("main", v, "ref", "server_bytes_per_conn")
        for s in servers:
            if n("main", v, s) == 0:
                continue
            b = m("main", v, s, "server_bytes_per_conn")
            w(f"| {SERVER_NAMES.get(s, s)} | {n('main', v, s)} | {fmt(m('main', v, s, 'opened'))} | "
              f"{fmt(m('main', v, s, 'server_rss_before_kb'))} → {fmt(m('main', v, s, 'server_rss_after_kb'))} | "
              f"{fmt(b)} | {fr(ratio(b, rb))} |")
        w("")

    # --- targets ---------------------------------------------------------------------------
    if n("main", "c50-1KiB", "listen") and n("main", "c50-1KiB", "ref"):
        w("## Targets (mllp-listen, same run)\n")
        w("| target | measured | verdict |")
        w("|---|---|---|")

        def row(name, value, ok):
            verdict = "–" if ok is None else ("met" if ok else "**missed**")
            w(f"| {name} | {value} | {verdict} |")

        r = ratio(m("main", "c50-1KiB", "listen", "msgs_per_sec"), m("main", "c50-1KiB", "ref", "msgs_per_sec"))
        row("50 conn × 1 KiB msg/s ≥ 0.9× ref", fr(r), None if r is None else r >= 0.9)
        r = ratio(m("main", "c50-1KiB", "listen", "server_cpu_us_per_msg"),
                  m("main", "c50-1KiB", "ref", "server_cpu_us_per_msg"))
        row("50 conn × 1 KiB server CPU/msg ≤ 1.3× ref", fr(r), None if r is None else r <= 1.3)
        r = ratio(m("main", "c1-1KiB", "listen", "p50_us"), m("main", "c1-1KiB", "ref", "p50_us"))
        row("1 conn p50 latency ≤ 1.2× ref", fr(r), None if r is None else r <= 1.2)
        r = ratio(m("main", "c1-4MiB", "listen", "mb_per_sec"), m("main", "c1-4MiB", "ref", "mb_per_sec"))
        dh = deadline_hits("main", "c1-4MiB", "listen")
        row("4 MiB messages MB/s ≥ 0.5× ref" + (f" ({dh} run(s) stalled, see errors)" if dh else ""),
            fr(r), None if r is None else (r >= 0.5 and not dh))
        idle = [k[1] for k in idle_main]
        if idle:
            b = m("main", idle[0], "listen", "server_bytes_per_conn")
            held = m("main", idle[0], "listen", "opened")
            row(f"≤ 2 KiB per idle connection, {idle[0][5:]} held",
                f"{fmt(b)} B, {fmt(held)} held",
                None if b is None else (b <= 2048 and held is not None and held >= int(idle[0][5:])))
        r = ratio(m("main", "c50-1KiB-hl7", "listen", "server_cpu_us_per_msg"),
                  m("main", "c50-1KiB", "listen", "server_cpu_us_per_msg"))
        row("hl7 ack mode CPU/msg ≤ 1.2× mllp mode", fr(r), None if r is None else r <= 1.2)
        r = ratio(m("main", "c50-1KiB-outdir", "listen", "msgs_per_sec"),
                  m("main", "c1-1KiB-outdir", "listen", "msgs_per_sec"))
        row("--out-dir: 50 conn msg/s ≥ several (≥ 3)× 1 conn (group commit)", fr(r),
            None if r is None else r >= 3)
        w("")

    # --- tool check ------------------------------------------------------------------------
    if any(k[0] == "tool" for k in runs):
        one = m("tool", "one-process-c50", "ref", "msgs_per_sec")
        reps = defaultdict(float)
        for part in ("two-processes-c25-part1", "two-processes-c25-part2"):
            for r in runs.get(("tool", part, "ref"), []):
                reps[r.get("repeat")] += r.get("msgs_per_sec") or 0
        two = med(list(reps.values()))
        ccpu = m("tool", "one-process-c50", "ref", "client_cpu_us_per_msg")
        scpu = m("tool", "one-process-c50", "ref", "server_cpu_us_per_msg")
        w("## Is mllp-bench the bottleneck?\n")
        w("Against the reference, 50 connections from one mllp-bench process versus 2 processes "
          "× 25 connections at the same time:\n")
        w("| one process msg/s | two processes, sum msg/s | two / one | client CPU µs/msg | reference CPU µs/msg |")
        w("|---|---|---|---|---|")
        w(f"| {fmt(one)} | {fmt(two)} | {fr(ratio(two, one))} | {fmt(ccpu)} | {fmt(scpu)} |")
        w("")

    # --- scaling ---------------------------------------------------------------------------
    def scaling(group, title, key, variants, label, unit_note):
        present = [v for v in variants if any(k[0] == group and k[1] == v for k in runs)]
        if not present:
            return
        w(f"## {title}\n")
        w(unit_note + "\n")
        w("| " + label + " | " + " | ".join(SERVER_NAMES.get(s, s) for s in servers) + " | mllp-listen vs ref |")
        w("|---" * (len(servers) + 2) + "|")
        for v in present:
            cells = []
            for s in servers:
                val = m(group, v, s, key)
                dh = deadline_hits(group, v, s)
                errs = total(group, v, s, "errors")
                cell = fmt(val)
                if failed(group, v, s):
                    cell += f" ({failed(group, v, s)} run failed)"
                if dh:
                    cell += " (stalled)"
                elif errs:
                    cell += f" ({int(errs)} err)"
                cells.append(cell)
            r = ratio(m(group, v, "listen", key), m(group, v, "ref", key))
            w(f"| {v.lstrip('cs').replace('idle-', '')} | " + " | ".join(cells) + f" | {fr(r)} |")
        w("")

    scaling("conns", "Messages/s against connection count (1 KiB, mllp ack, closed loop)",
            "msgs_per_sec", ["c1", "c10", "c100", "c1000"], "connections", "msg/s (median):")
    scaling("conns", "Server CPU per message against connection count",
            "server_cpu_us_per_msg", ["c1", "c10", "c100", "c1000"], "connections", "µs of server CPU per message:")
    scaling("conns", "p99 latency against connection count", "p99_us",
            ["c1", "c10", "c100", "c1000"], "connections", "p99 µs:")
    sizes = ["s256", "s1K", "s16K", "s256K", "s1M", "s4M", "s16M"]
    scaling("sizes", "Throughput against message size (1 connection, closed loop)", "mb_per_sec",
            sizes, "message size", "MB/s (10^6 bytes of message content per second):")
    scaling("sizes", "Messages/s against message size (1 connection)", "msgs_per_sec",
            sizes, "message size", "msg/s:")
    scaling("idle", "Server memory against idle connection count", "server_bytes_per_conn",
            ["idle-1000", "idle-5000", "idle-10000"], "idle connections",
            "bytes of server RSS per idle connection ((RSS after − RSS before) / connections held):")

    # Groups from bench/groups: NAME.py's section(rows) returns markdown lines for group NAME.
    groups_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "groups")
    for g in sorted({k[0] for k in runs if k[0]}):
        path = os.path.join(groups_dir, f"{g}.py")
        if not os.path.exists(path):
            continue
        spec = importlib.util.spec_from_file_location(f"bench_group_{g}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        rows = [r for k, rs in runs.items() if k[0] == g for r in rs]
        out.extend(mod.section(rows))
        w("")

    print("\n".join(out))


if __name__ == "__main__":
    main()
