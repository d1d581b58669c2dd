"""Report section of bench/groups/tls.sh: mllp-listen over TLS against plain TCP and against a
bare rustls responder (tls-ref) measured in the same run; medians of the repetitions."""
import statistics


def _med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def _fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def _ratio(a, b):
    return None if a is None or not b else a / b


def _fr(r):
    return "–" if r is None else f"{r:.2f}×"


def section(rows):
    def ok(r):
        return bool(r.get("messages") or r.get("handshakes") or r.get("opened"))

    def pick(server, variant, key):
        return _med(r.get(key) for r in rows
                    if r.get("server") == server and r.get("variant") == variant and ok(r))

    def runs(server, variant):
        rs = [r for r in rows if r.get("server") == server and r.get("variant") == variant]
        return f"{sum(1 for r in rs if ok(r))}/{sum(1 for r in rs if not ok(r))}"

    out = ["## TLS: against plain TCP and a bare rustls responder", "",
           "tls-ref (bench/mllp-bench/src/bin/tls-ref.rs) is rustls on one mio thread answering "
           "every MLLP frame with a fixed commit ACK: the cost of TLS itself. Same certificate, "
           "same rustls configuration (ring, server's suite order, tickets), same run.", "",
           "### 50 connections × 1 KiB, closed loop", "",
           "| scenario | server | msg/s | p50 µs | p99 µs | server CPU µs/msg | runs (ok/failed) |",
           "|---|---|---|---|---|---|---|"]
    load = [("plain", "listen", "c50-1KiB-plain"), ("TLS", "listen", "c50-1KiB-tls"),
            ("TLS", "tls-ref", "c50-1KiB-tls"), ("plain, HL7 ACK", "listen", "c50-1KiB-hl7-plain"),
            ("TLS, HL7 ACK", "listen", "c50-1KiB-hl7-tls")]
    for label, server, variant in load:
        out.append(f"| {label} | {'mllp-listen' if server == 'listen' else server} | "
                   f"{_fmt(pick(server, variant, 'msgs_per_sec'))} | {_fmt(pick(server, variant, 'p50_us'))} | "
                   f"{_fmt(pick(server, variant, 'p99_us'))} | "
                   f"{_fmt(pick(server, variant, 'server_cpu_us_per_msg'))} | {runs(server, variant)} |")
    plain = pick("listen", "c50-1KiB-plain", "msgs_per_sec")
    tls = pick("listen", "c50-1KiB-tls", "msgs_per_sec")
    ref = pick("tls-ref", "c50-1KiB-tls", "msgs_per_sec")
    hplain = pick("listen", "c50-1KiB-hl7-plain", "msgs_per_sec")
    htls = pick("listen", "c50-1KiB-hl7-tls", "msgs_per_sec")
    cpu = _ratio(pick("listen", "c50-1KiB-tls", "server_cpu_us_per_msg"),
                 pick("listen", "c50-1KiB-plain", "server_cpu_us_per_msg"))
    r = _ratio(tls, plain)
    out += ["", f"TLS / plain: {_fr(r)} the rate at {_fr(cpu)} the server CPU per message; "
            f"with HL7 ACKs {_fr(_ratio(htls, hplain))}; mllp-listen TLS / tls-ref: {_fr(_ratio(tls, ref))}.",
            f"Target (TLS ≥ 0.85× plain, 50 connections): "
            f"{'not measured' if r is None else ('met' if r >= 0.85 else 'not met')}.", "",
            "### A new TLS connection per message (4 closed loops: connect, handshake, 1 KiB, ACK, close)", "",
            "| handshake | server | handshakes/s | resumed | p50 µs | p99 µs | server CPU µs each | runs (ok/failed) |",
            "|---|---|---|---|---|---|---|---|"]
    for kind in ["full", "resumed"]:
        v = f"handshake-{kind}"
        for server in ["listen", "tls-ref"]:
            share = pick(server, v, "resumed_share")
            out.append(f"| {kind} | {'mllp-listen' if server == 'listen' else server} | "
                       f"{_fmt(pick(server, v, 'handshakes_per_sec'))} | "
                       f"{'–' if share is None else f'{share * 100:.0f}%'} | {_fmt(pick(server, v, 'p50_us'))} | "
                       f"{_fmt(pick(server, v, 'p99_us'))} | {_fmt(pick(server, v, 'server_cpu_us_per_handshake'))} | "
                       f"{runs(server, v)} |")
    for kind in ["full", "resumed"]:
        v = f"handshake-{kind}"
        out.append(f"- {kind}: mllp-listen at "
                   f"{_fr(_ratio(pick('listen', v, 'handshakes_per_sec'), pick('tls-ref', v, 'handshakes_per_sec')))} "
                   f"tls-ref's rate.")
    v = "idle-tls-after-message"
    out += ["", "### Idle TLS connections (each did one message round trip first)", "",
            "| server | connections | bytes of server RSS each | runs (ok/failed) |", "|---|---|---|---|"]
    for server in ["listen", "tls-ref"]:
        out.append(f"| {'mllp-listen' if server == 'listen' else server} | {_fmt(pick(server, v, 'opened'))} | "
                   f"{_fmt(pick(server, v, 'server_bytes_per_conn'))} | {runs(server, v)} |")
    return out
