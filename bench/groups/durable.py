"""Report section of bench/groups/durable.sh: mllp-listen --out-dir against fsync-ref (one
fdatasync, rename and directory fsync per message), same run, medians of the repetitions."""
import statistics

CONNS = [1, 10, 50]


def _med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def _fmt(v):
    if v is None:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def section(rows):
    def pick(server, variant, key):
        return _med(r.get(key) for r in rows
                    if r.get("server") == server and r.get("variant") == variant and r.get("messages"))

    def count(server, variant, pred):
        return sum(1 for r in rows if r.get("server") == server and r.get("variant") == variant and pred(r))

    out = ["## Durable storage: mllp-listen --out-dir against one fdatasync per message", "",
           "1 KiB messages, closed loop. fsync-ref (bench/fsync-ref.c) stores each message on its "
           "own before its ACK: write a new file, fdatasync, rename, fsync the directory. "
           "mllp-listen --out-dir commits in groups: one syncfs for the batch's files (ext4/XFS), "
           "then the names, then one directory fsync. Same file system, same run, interleaved.", "",
           "| connections | fsync-ref msg/s | p50 µs | p99 µs | mllp-listen msg/s | p50 µs | p99 µs "
           "| msg/s vs fsync-ref | runs (ok/failed) |",
           "|---|---|---|---|---|---|---|---|---|"]
    ratio50 = None
    for c in CONNS:
        v = f"c{c}-1KiB"
        ref = pick("fsync-ref", v, "msgs_per_sec")
        lis = pick("listen", v, "msgs_per_sec")
        ratio = lis / ref if lis is not None and ref else None
        if c == 50:
            ratio50 = ratio
        ok = count("listen", v, lambda r: r.get("messages")) + count("fsync-ref", v, lambda r: r.get("messages"))
        bad = count("listen", v, lambda r: not r.get("messages")) + \
            count("fsync-ref", v, lambda r: not r.get("messages"))
        out.append(f"| {c} | {_fmt(ref)} | {_fmt(pick('fsync-ref', v, 'p50_us'))} | "
                   f"{_fmt(pick('fsync-ref', v, 'p99_us'))} | {_fmt(lis)} | {_fmt(pick('listen', v, 'p50_us'))} | "
                   f"{_fmt(pick('listen', v, 'p99_us'))} | {'–' if ratio is None else f'{ratio:.2f}×'} | {ok}/{bad} |")
    out.append("")
    if ratio50 is None:
        out.append("Target (50 connections ≥ 3× fsync-ref): not measured.")
    else:
        out.append(f"Target (50 connections ≥ 3× fsync-ref): {ratio50:.2f}× — "
                   f"{'met' if ratio50 >= 3 else 'not met'}.")
    return out
