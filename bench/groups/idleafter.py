"""Report section of bench/groups/idleafter.sh: mllp-listen's resident memory per idle
connection after each sent one message of a given size (medians of the repetitions)."""
import statistics

ORDER = ["never-mllp", "1KiB-mllp", "1KiB-hl7", "64KiB-mllp", "4MiB-mllp"]


def _med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def section(rows):
    out = ["## Idle connections after traffic (mllp-listen)", "",
           "Each connection sends one message of the given size and waits for its acknowledgement, "
           "then all are held idle; server RSS growth divided by the connections held.", "",
           "| variant | connections held | server bytes/connection | runs ok/failed |",
           "|---|---|---|---|"]
    worst = None
    variants = [v for v in ORDER if any(r.get("variant") == v for r in rows)]
    for v in variants:
        got = [r for r in rows if r.get("variant") == v and r.get("opened")]
        per = _med(r.get("server_bytes_per_conn") for r in got)
        held = _med(r.get("opened") for r in got)
        bad = sum(1 for r in rows if r.get("variant") == v and not r.get("opened"))
        if per is not None:
            worst = per if worst is None else max(worst, per)
        out.append(f"| {v} | {'–' if held is None else f'{held:,.0f}'} | "
                   f"{'–' if per is None else f'{per:,.0f}'} | {len(got)}/{bad} |")
    out.append("")
    out.append("Target (≤ 1 KiB per idle connection whatever it sent): "
               + ("not measured." if worst is None else
                  f"worst {worst:,.0f} B — {'met' if worst <= 1024 else 'not met'}."))
    return out
