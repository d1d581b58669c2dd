"""Operations tests of examples-c/mllp-listen: --metrics (HTTP /metrics, /healthz, /readyz over
libmicrohttpd), the SIGTERM drain (--drain-timeout), SIGINT, --log-format text|json.

Run:  python3 -m pytest -q tests/ops
      (MLLP_LISTEN=path/to/mllp-listen, default build/examples-c/mllp-listen)

Everything on 127.0.0.1; every wait is bounded; no assertion is about how long something took.
/metrics is read with the Prometheus client's own parser (prometheus_client).
"""

import json
import os
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "listen"))
from test_listen import ACK, NAK, LISTEN, SB, EB, CR, Client, listen, run_fail, stored  # noqa: E402,F401

BOUND = 15  # seconds any single wait may take


def _help():
    if not LISTEN.is_file():
        return ""
    return run_fail(None, "--metrics", "127.0.0.1:0", "--port", "x")[2]


pytestmark = [
    pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built"),
    pytest.mark.skipif("without libmicrohttpd" in _help(), reason="mllp-listen built without --metrics"),
]


def msg(tag, pid=b"PID|1||123^^^H||DOE^JOHN"):
    return b"MSH|^~\\&|APP|FAC|RCV|RFAC|20240101000000||ADT^A01|" + tag + b"|P|2.5\r" + pid + b"\r"


def start(listen, *args):
    """mllp-listen with --metrics on a free port; returns (listener, base URL)."""
    lst = listen("--metrics", "127.0.0.1:0", *args)
    m = re.search(r"metrics on 127\.0\.0\.1:(\d+)", lst.stderr())
    assert m, lst.stderr()
    return lst, f"http://127.0.0.1:{m.group(1)}"


def get(url, method="GET"):
    """(status, body text, headers) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=BOUND) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def wait_for(pred, what):
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"not within {BOUND} s: {what}")


def connect_refused_or_closed(port):
    """A new connection is refused, or closed without an answer."""
    try:
        c = Client(port, timeout=5)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    try:
        c.send(msg(b"LATE"))
    except OSError:
        return True
    return c.at_eof()


# ---------------------------------------------------------------------------------------------
# HTTP routes


def test_routes_methods_and_content_types(listen):
    lst, base = start(listen)
    assert get(base + "/healthz")[:2] == (200, "ok\n")
    assert get(base + "/readyz")[:2] == (200, "ok\n")
    status, body, headers = get(base + "/healthz", "HEAD")
    assert status == 200 and body == ""
    assert get(base + "/nope")[0] == 404
    assert get(base + "/metricsx")[0] == 404
    for method in ("POST", "PUT", "DELETE"):
        status, _, headers = get(base + "/healthz", method)
        assert status == 405 and "GET" in headers["Allow"]
    assert lst.stop()[0] == 0


def test_metrics_bind_only_the_given_address(listen):
    lst, base = start(listen)
    port = int(base.rsplit(":", 1)[1])
    # another local address of the loopback network: nothing listens there for us
    s = socket.socket()
    s.settimeout(5)
    try:
        with pytest.raises(OSError):
            s.connect(("127.0.0.2", port))
    finally:
        s.close()
    assert lst.stop()[0] == 0


def test_metrics_option_errors(tmp_path):
    for bad in ("nohostport", "127.0.0.1:99999", ":80", "127.0.0.1:x"):
        rc, _, err = run_fail(tmp_path, "--port", "0", "--metrics", bad)
        assert rc == 2 and "--metrics" in err, (bad, err)


def test_healthz_out_dir_unwritable(listen, tmp_path):
    out = tmp_path / "out"
    lst, base = start(listen, "--out-dir", out)
    assert get(base + "/healthz")[:2] == (200, "ok\n")
    out.chmod(0o500)
    try:
        if os.geteuid() == 0:
            # root writes through permissions: take the directory away instead (the program
            # holds it open; nothing can be created in a removed directory)
            import shutil
            shutil.rmtree(out)
        status, body, _ = get(base + "/healthz")
        assert status == 503 and "not writable" in body and str(out) in body, body
        assert get(base + "/readyz")[0] == 200  # still accepting
    finally:
        if out.exists():
            out.chmod(0o755)
    if os.geteuid() != 0:
        assert get(base + "/healthz")[:2] == (200, "ok\n")  # writable again
    assert lst.stop()[0] == 0


def test_metrics_counters_match_the_traffic(listen, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    lst, base = start(listen, "--reject-invalid", "--out-dir", tmp_path / "out")
    sent = [msg(b"M%d" % i) for i in range(7)]
    clients = [Client(lst.port) for _ in range(3)]
    for i, m in enumerate(sent):
        assert clients[i % 3].roundtrip(m) == ACK
    assert clients[0].roundtrip(b"NOT HL7") == NAK
    lst.message_lines(len(sent))
    status, body, headers = get(base + "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def v(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0)

    assert v("mllp_connections_accepted_total") == 3
    assert v("mllp_connections_open") == 3
    assert v("mllp_messages_received_total") == len(sent) + 1
    assert v("mllp_messages_total", result="accepted") == len(sent)
    assert v("mllp_messages_total", result="refused") == 1
    assert v("mllp_acks_sent_total", kind="ack") == len(sent)
    assert v("mllp_acks_sent_total", kind="nak") == 1
    framed = sum(len(m) + 3 for m in sent) + len(b"NOT HL7") + 3
    assert v("mllp_bytes_received_total") == framed
    assert v("mllp_bytes_sent_total") == 4 * (len(sent) + 1)  # <SB><ACK|NAK><EB><CR> each
    assert v("mllp_ack_latency_seconds_count") == len(sent) + 1
    assert lst.stop()[0] == 0


# ---------------------------------------------------------------------------------------------
# SIGTERM drains, SIGINT does not wait


@pytest.mark.parametrize("event_mode", [None, "DoEvents"])
def test_sigterm_drains(listen, tmp_path, event_mode):
    """A sender in the middle of a message finishes it and is acknowledged; idle connections
    close; new connections are refused; /readyz says draining, /healthz stays ok; exit 0."""
    out = tmp_path / "out"
    extra = ["--config", "EventMode=DoEvents"] if event_mode else []
    lst, base = start(listen, "--out-dir", out, "--drain-timeout", "60", *extra)
    idle = Client(lst.port)
    done = Client(lst.port)
    assert done.roundtrip(msg(b"BEFORE")) == ACK
    partial = Client(lst.port)
    half = msg(b"HALF")
    partial.send_raw(SB + half[:20])
    # the half frame has reached the server before the signal
    wait_for(lambda: get(base + "/healthz")[0] == 200, "healthz")
    time.sleep(0.2)
    lst.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: get(base + "/readyz")[:2] == (503, "draining\n"), "readyz draining")
    assert get(base + "/healthz")[:2] == (200, "ok\n")
    assert idle.at_eof(), "idle connection not closed by the drain"
    assert done.at_eof(), "answered connection not closed by the drain"
    assert connect_refused_or_closed(lst.port)
    assert lst.proc.poll() is None  # still waiting for the sender in the middle
    partial.send_raw(half[20:] + EB + CR)
    assert partial.recv_frame() == ACK
    assert partial.at_eof()
    assert lst.wait(BOUND) == 0, lst.stderr()
    assert sorted(stored(out).values()) == sorted([msg(b"BEFORE"), half])
    assert "draining" in lst.stderr()


def test_drain_timeout_closes_an_unfinished_message(listen, tmp_path):
    out = tmp_path / "out"
    lst, base = start(listen, "--out-dir", out, "--drain-timeout", "1")
    partial = Client(lst.port)
    partial.send_raw(SB + b"MSH|^~\\&|NEVER")
    time.sleep(0.2)
    lst.proc.send_signal(signal.SIGTERM)
    assert lst.wait(BOUND) == 0, lst.stderr()
    assert partial.at_eof()
    assert stored(out) == {}
    assert "drain timeout" in lst.stderr()


def test_sigint_does_not_drain(listen, tmp_path):
    out = tmp_path / "out"
    lst, base = start(listen, "--out-dir", out, "--drain-timeout", "3600")
    partial = Client(lst.port)
    partial.send_raw(SB + b"MSH|^~\\&|HALF")
    time.sleep(0.2)
    rc, _ = lst.stop(signal.SIGINT, timeout=BOUND)  # would be an hour if it drained
    assert rc == 0
    assert partial.at_eof()
    assert "draining" not in lst.stderr()


def test_sigint_cuts_a_drain_short(listen, tmp_path):
    lst, base = start(listen, "--drain-timeout", "3600")
    partial = Client(lst.port)
    partial.send_raw(SB + b"MSH|^~\\&|HALF")
    time.sleep(0.2)
    lst.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: get(base + "/readyz")[0] == 503, "readyz draining")
    rc, _ = lst.stop(signal.SIGINT, timeout=BOUND)
    assert rc == 0 and partial.at_eof()


def test_pipelined_sender_during_drain_gets_every_answer(listen, tmp_path):
    """Messages the server has received when SIGTERM comes are all stored and acknowledged;
    none is stored without its acknowledgement."""
    out = tmp_path / "out"
    lst = listen("--out-dir", out, "--quiet")
    c = Client(lst.port)
    window = [msg(b"P%d" % i) for i in range(50)]
    c.send_raw(b"".join(SB + m + EB + CR for m in window))
    lst.proc.send_signal(signal.SIGTERM)
    acked = []
    try:
        for m in window:
            assert c.recv_frame() == ACK
            acked.append(m)
    except (EOFError, OSError):
        pass
    assert lst.wait(BOUND) == 0, lst.stderr()
    assert sorted(stored(out).values()) == sorted(acked)


# ---------------------------------------------------------------------------------------------
# --log-format

MARKER = b"ZZMARKER7Q3"


def _traffic(lst):
    """Traffic that makes stderr lines: a stored message, one refused as invalid, a duplicate,
    a message too large (library error) — each carrying the marker in a PID field."""
    c = Client(lst.port)
    pid = b"PID|1||" + MARKER + b"^^^H||" + MARKER + b"^DOE"
    m = msg(b"LOG1", pid)
    assert c.roundtrip(m) == ACK
    assert c.roundtrip(m) == ACK  # --dedupe: answered as a duplicate, a stderr line
    assert c.roundtrip(MARKER + b" not HL7 " + MARKER) == NAK  # --reject-invalid
    big = msg(b"BIG", pid + b"\rOBX|" + MARKER * 400)
    c.send(big)  # MaxMessageSize: an error line, the connection closes
    c.at_eof()
    lst.message_lines(1)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_never_carry_message_content(listen, tmp_path, fmt):
    lst = listen("--log-format", fmt, "--reject-invalid", "--dedupe", "--out-dir", tmp_path / "out",
                 "--config", "MaxMessageSize=2048", "--config", "LogLevel=2")
    _traffic(lst)
    assert lst.stop()[0] == 0
    err = lst.stderr()
    assert MARKER.decode() not in err
    lines = err.splitlines()
    assert any("duplicate" in x for x in lines) and any("rejected" in x for x in lines), err
    assert any("error" in x for x in lines), err
    if fmt == "text":
        assert all(not x.startswith("{") for x in lines), err
        assert any(x.startswith("duplicate: ") for x in lines)
        assert any(x.startswith("rejected: message ") for x in lines)
        assert any(x.startswith("connection from 127.0.0.1:") for x in lines)
        return
    events = [json.loads(x) for x in lines]
    for e in events:
        assert {"time", "level", "connection", "event", "code", "message"} <= e.keys(), e
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]), e
        assert e["level"] in ("error", "warning", "info")
        assert e["connection"] is None or isinstance(e["connection"], int)
        assert e["code"] is None or isinstance(e["code"], int)
    kinds = {e["event"] for e in events}
    assert {"duplicate", "rejected", "error", "connection_request", "drain", "shutdown"} <= kinds, kinds
    dup = next(e for e in events if e["event"] == "duplicate")
    assert isinstance(dup["connection"], int) and dup["connection"] > 0
    lib = next(e for e in events if e["event"] == "error")
    assert isinstance(lib["code"], int) and lib["level"] == "error"


def test_log_format_json_usage_error(tmp_path):
    rc, _, err = run_fail(tmp_path, "--log-format", "json", "--port", "notaport")
    assert rc == 2
    e = json.loads(err.strip())
    assert e["level"] == "error" and e["event"] == "usage" and "--port" in e["message"]
    rc, _, err = run_fail(tmp_path, "--log-format", "yaml")
    assert rc == 2 and "--log-format" in err
