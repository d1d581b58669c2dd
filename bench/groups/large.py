"""Report section of bench/groups/large.sh: mllp-listen against the reference responder at large
message sizes (MB/s, server CPU and minor page faults per MiB), medians of the repetitions."""
import statistics

ORDER = ["c1-s256K", "c1-s1M", "c1-s4M", "c1-s16M", "c1-s64M", "c4-s4M"]


def _med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def _fmt(v):
    if v is None:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def section(rows):
    variants = [v for v in ORDER if any(r.get("variant") == v for r in rows)]
    variants += sorted({r.get("variant") for r in rows} - set(variants) - {None})

    def pick(server, variant, key):
        return _med(r.get(key) for r in rows
                    if r.get("server") == server and r.get("variant") == variant and r.get("messages"))

    out = ["## Large messages: mllp-listen against the reference responder", "",
           "Closed loop, MLLP acknowledgements. MB/s are 10^6 bytes of message content per second; "
           "CPU and minor page faults are the server process's, per MiB of content received.", "",
           "| variant | ref MB/s | listen MB/s | MB/s vs ref | ref CPU µs/MiB | listen CPU µs/MiB "
           "| CPU vs ref | listen faults/MiB | runs ok/failed |",
           "|---|---|---|---|---|---|---|---|---|"]
    cpu_c1 = {}
    ratios = {}
    for v in variants:
        ref = pick("ref", v, "mb_per_sec")
        lis = pick("listen", v, "mb_per_sec")
        rc = pick("ref", v, "server_cpu_us_per_mib")
        lc = pick("listen", v, "server_cpu_us_per_mib")
        r = lis / ref if lis is not None and ref else None
        ratios[v] = r
        if v.startswith("c1-") and lc is not None:
            cpu_c1[v] = lc
        ok = sum(1 for x in rows if x.get("variant") == v and x.get("messages"))
        bad = sum(1 for x in rows if x.get("variant") == v and not x.get("messages"))
        out.append(f"| {v} | {_fmt(ref)} | {_fmt(lis)} | {'–' if r is None else f'{r:.2f}×'} | {_fmt(rc)} | "
                   f"{_fmt(lc)} | {'–' if lc is None or not rc else f'{lc / rc:.2f}×'} | "
                   f"{_fmt(pick('listen', v, 'server_minflt_per_mib'))} | {ok}/{bad} |")
    out.append("")
    for v in ("c4-s4M", "c1-s16M"):
        r = ratios.get(v)
        out.append(f"Target {v} ≥ 0.9× the reference's MB/s: "
                   + ("not measured." if r is None else f"{r:.2f}× — {'met' if r >= 0.9 else 'not met'}."))
    if len(cpu_c1) >= 2:
        lo, hi = min(cpu_c1.values()), max(cpu_c1.values())
        spread = hi / lo - 1 if lo else None
        out.append(f"Target CPU/MiB flat within 10 % over {', '.join(cpu_c1)}: {lo:.0f}–{hi:.0f} µs/MiB, "
                   f"spread {spread * 100:.0f} % — {'met' if spread is not None and spread <= 0.10 else 'not met'}.")
    else:
        out.append("Target CPU/MiB flat within 10 %: not measured.")
    return out
