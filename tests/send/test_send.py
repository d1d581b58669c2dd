"""End-to-end tests of examples-c/mllp-send: the real binary against real servers.

Run:  python3 -m pytest -q tests/send
      (MLLP_SEND / MLLP_LISTEN = paths of the programs, default build/examples-c/...;
       MLLP_SAMPLES = dir of the HL7 samples, default tests/data)

Servers: python-hl7's asyncio `hl7.mllp.start_hl7_server` and simple-hl7 (node; installed by
tests/setup.sh into tests/send/node_modules), written by nobody here; build/examples-c/mllp-listen
(plain, HL7 ACKs, TLS, mutual TLS; certificates from tests/listen/test_tls.py's Pki); and
misbehaving raw-socket servers written below (NAK first, no ACK, wrong MSA-2, dropped
connection, AE). Every wait is bounded; nothing asserts on durations.
"""

import asyncio
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "listen"))

from test_listen import LISTEN, listen  # noqa: E402,F401  (listen: the mllp-listen fixture)
from test_tls import OPENSSL, Pki  # noqa: E402

SEND = Path(os.environ.get("MLLP_SEND", REPO / "build" / "examples-c" / "mllp-send"))
SAMPLES = Path(os.environ.get("MLLP_SAMPLES") or REPO / "tests" / "data")
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK, NAK = b"\x06", b"\x15"
RUN_TIMEOUT = 60
IO_TIMEOUT = 10
FAST = ["--retry-delay", "50"]  # the library's pause between attempts, kept short

pytestmark = pytest.mark.skipif(not SEND.is_file(), reason=f"{SEND} not built")


def sample(name):
    return (SAMPLES / name).read_bytes()


def msg(control_id, extra=b"PID|1||12345^^^HOSP^MR||DOE^JOHN\r"):
    return (b"MSH|^~\\&|SND|SNDF|RCV|RCVF|20240101120000||ADT^A01|" + control_id.encode()
            + b"|P|2.5\r" + extra)


def msh10(message):
    seg = message.split(b"\r", 1)[0]
    parts = seg.split(seg[3:4])
    return parts[9].decode() if len(parts) > 9 else ""


def hl7_ack(control_id, code="AA", text=""):
    ack = (b"MSH|^~\\&|RCV|RCVF|SND|SNDF|20240101120001||ACK|A" + control_id.encode()
           + b"|P|2.5\rMSA|" + code.encode() + b"|" + control_id.encode())
    if text:
        ack += b"|" + text.encode()
    return ack + b"\r"


def frame(payload):
    return SB + payload + EB + CR


def run_send(*args, stdin=None, timeout=RUN_TIMEOUT):
    """Runs mllp-send; returns (status, stdout lines, stderr text)."""
    p = subprocess.run([str(SEND), *map(str, args)], input=stdin, capture_output=True,
                       timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)
    out = p.stdout.decode("utf-8", "replace")
    assert out == "" or out.endswith("\n"), repr(out)
    return p.returncode, out.splitlines(), p.stderr.decode("utf-8", "replace")


def write(tmp_path, name, data):
    f = tmp_path / name
    f.write_bytes(data)
    return f


def free_port():
    """A port with nothing listening on it (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A scripted raw-socket server


class RawServer:
    """Accepts on 127.0.0.1; reads MLLP frames; for each frame calls
    `script(server, conn_no, frame_no, payload)` (frame_no counts all frames, from 0), which
    returns a list of actions: bytes (sent as they are) or "close". Records every connection
    and every frame received, in order."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.frames = []  # (conn_no, payload)
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = []
        self.accept_thread = threading.Thread(target=self._accept, daemon=True)
        self.accept_thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            t = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn, conn_no):
        conn.settimeout(0.2)
        buf = b""
        try:
            while not self.stopping:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buf += chunk
                while True:
                    end = buf.find(EB + CR)
                    if end < 0:
                        break
                    start = buf.find(SB)
                    payload, buf = buf[start + 1:end], buf[end + 2:]
                    with self.lock:
                        frame_no = len(self.frames)
                        self.frames.append((conn_no, payload))
                    for action in self.script(self, conn_no, frame_no, payload) or []:
                        if action == "close":
                            conn.close()
                            return
                        conn.sendall(action)
        except OSError:
            pass
        finally:
            conn.close()

    def payloads(self):
        with self.lock:
            return [p for _, p in self.frames]

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.accept_thread.join(5)
        for t in self.threads:
            t.join(5)


@pytest.fixture
def raw_server():
    started = []

    def start(script):
        s = RawServer(script)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def commit_ack(server, conn_no, frame_no, payload):
    return [frame(ACK)]


def hl7_aa(server, conn_no, frame_no, payload):
    return [frame(hl7_ack(msh10(payload)))]


# ---------------------------------------------------------------------------------------------
# Arguments and input errors: exit 2, nothing sent


def test_help():
    status, out, err = run_send("--help")
    text = "\n".join(out)
    assert status == 0, err
    for opt in ["--host", "--port", "--version", "--ack", "--timeout", "--retries", "--retry-delay",
                "--config", "--tls-ca", "--tls-cert", "--tls-key", "--server-name", "--quiet"]:
        assert opt in text, opt
    assert "Exit status" in text


@pytest.mark.parametrize("args", [
    [],                                     # no input
    ["--port", "0", "F"],
    ["--port", "65536", "F"],
    ["--port", "x", "F"],
    ["--version", "3", "F"],
    ["--ack", "maybe", "F"],
    ["--timeout", "0", "F"],
    ["--timeout", "-1", "F"],
    ["--retries", "-1", "F"],
    ["--retries", "x", "F"],
    ["--bogus", "F"],
    ["--port"],                             # value missing
    ["--config", "NoEquals", "F"],
    ["--config", "NoSuchSetting=1", "F"],   # refused by the library
    ["--tls-cert", "F", "F"],               # without --tls-key
    ["--tls-key", "F", "F"],                # without --tls-cert
    ["--server-name", "localhost", "F"],    # without TLS
    ["F", "-", "-"],                        # stdin twice
])
def test_bad_arguments_exit_2_and_nothing_sent(tmp_path, raw_server, args):
    srv = raw_server(commit_ack)
    good = write(tmp_path, "good.hl7", msg("A1"))
    args = [str(good) if a == "F" else a for a in args]
    status, out, err = run_send("--port", srv.port, *args, stdin=b"")
    assert status == 2, (args, out, err)
    assert out == []
    assert err.strip() and len(err.strip().splitlines()) == 1, err
    assert srv.connections == 0


@pytest.mark.parametrize("case", ["missing", "directory", "not_hl7", "empty", "blank_only",
                                  "text_before_msh", "second_missing"])
def test_unusable_input_exit_2_and_nothing_sent(tmp_path, raw_server, case):
    srv = raw_server(commit_ack)
    good = write(tmp_path, "good.hl7", msg("A1"))
    files = {
        "missing": [tmp_path / "nope.hl7"],
        "directory": [tmp_path],
        "not_hl7": [SAMPLES / "not_hl7.txt"],
        "empty": [write(tmp_path, "empty.hl7", b"")],
        "blank_only": [write(tmp_path, "blank.hl7", b"\n\r\n  \n")],
        "text_before_msh": [write(tmp_path, "pre.hl7", b"hello\n" + msg("A2"))],
        # every file is read before connecting: the good first one is not sent either
        "second_missing": [good, tmp_path / "nope.hl7"],
    }[case]
    status, out, err = run_send("--port", srv.port, *files)
    assert status == 2, (out, err)
    assert out == []
    assert len(err.strip().splitlines()) == 1, err
    assert srv.connections == 0


def test_hl7_ack_needs_control_ids_exit_2(tmp_path, raw_server):
    srv = raw_server(hl7_aa)
    no_id = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\rPID|1\r"
    f = write(tmp_path, "m.hl7", msg("H1") + no_id)
    status, out, err = run_send("--port", srv.port, "--ack", "hl7", f)
    assert status == 2 and out == [] and "MSH-10" in err, err
    assert srv.connections == 0
    # the same through --config (the mode is read back from the library)
    status, out, err = run_send("--port", srv.port, "--config", "AckMode=HL7", f)
    assert status == 2 and out == [] and "MSH-10" in err, err
    assert srv.connections == 0


def test_empty_stdin_exit_2(raw_server):
    srv = raw_server(commit_ack)
    status, out, err = run_send("--port", srv.port, "-", stdin=b"")
    assert status == 2 and out == [] and "standard input" in err
    assert srv.connections == 0


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize("case", ["ca_missing", "ca_not_pem", "cert_missing", "key_not_pem",
                                  "key_mismatch"])
def test_unusable_tls_files_exit_2(tmp_path, raw_server, pki, case):
    srv = raw_server(commit_ack)
    good = write(tmp_path, "good.hl7", msg("A1"))
    junk = write(tmp_path, "junk.pem", b"not a certificate\n")
    args = {
        "ca_missing": ["--tls-ca", tmp_path / "nope.pem"],
        "ca_not_pem": ["--tls-ca", junk],
        "cert_missing": ["--tls-cert", tmp_path / "nope.pem", "--tls-key", pki.client[1]],
        "key_not_pem": ["--tls-cert", pki.client[0], "--tls-key", junk],
        "key_mismatch": ["--tls-cert", pki.client[0], "--tls-key", pki.server[1]],
    }[case]
    # (the library retries even a key mismatch, found before any socket opens: FAST)
    status, out, err = run_send("--port", srv.port, *FAST, *args, good)
    assert status == 2, (out, err)
    assert out == [] and err.strip()
    assert srv.connections == 0


# ---------------------------------------------------------------------------------------------
# python-hl7's asyncio server (HL7 ACKs built by python-hl7: MSA-1 AA, MSA-2 = MSH-10)


class Hl7PyServer:
    def __init__(self):
        import hl7
        import hl7.mllp
        self.hl7 = hl7
        self.received = queue.Queue()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.error = None

        async def handle(reader, writer):
            try:
                while True:
                    block = await reader.readblock()
                    self.received.put(block)
                    m = hl7.parse(block.decode("utf-8"))
                    writer.writemessage(m.create_ack())
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def main():
            self.server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0,
                                                          encoding="utf-8")
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(main())
                self.loop.run_forever()
                # connection handlers still waiting for input end here, before the loop closes
                tasks = asyncio.all_tasks(self.loop)
                for t in tasks:
                    t.cancel()
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                self.loop.close()
            except BaseException as e:  # noqa: BLE001
                self.error = e
                ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(IO_TIMEOUT) and self.error is None, self.error

    def messages(self):
        out = []
        while True:
            try:
                out.append(self.received.get_nowait())
            except queue.Empty:
                return out

    def stop(self):
        def close():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(5)


@pytest.fixture
def hl7py_server():
    pytest.importorskip("hl7.mllp")
    s = Hl7PyServer()
    yield s
    s.stop()


@pytest.mark.parametrize("version", ["2", "1"])
def test_python_hl7_server(hl7py_server, version):
    files = [SAMPLES / "adt_a01.hl7", SAMPLES / "oru_r01.hl7", SAMPLES / "adt_a08_utf8.hl7"]
    status, out, err = run_send("--port", hl7py_server.port, "--version", version, "--ack", "hl7",
                                *files)
    assert status == 0, (out, err)
    want = [f.read_bytes() for f in files]
    assert out == [f"{msh10(m)} AA 1" for m in want]
    assert hl7py_server.messages() == want


# ---------------------------------------------------------------------------------------------
# simple-hl7 (node)

NODE = shutil.which("node")
SIMPLE_HL7 = HERE / "node_modules" / "simple-hl7"


class NodeServer:
    def __init__(self, tmp_path):
        self.err_path = tmp_path / "node-stderr.txt"
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([NODE, str(HERE / "simple_hl7_server.js")], cwd=HERE,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next_line(IO_TIMEOUT)
        m = re.fullmatch(r"listening on (\d+)", first or "")
        assert m, f"{first!r}; stderr: {self.err_path.read_text()}"
        self.port = int(m.group(1))

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8").rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def messages(self, n):
        import json
        out = []
        for _ in range(n):
            line = self.next_line(IO_TIMEOUT)
            assert line and line.startswith("message "), line
            out.append(json.loads(line[len("message "):]).encode("utf-8"))
        return out

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


@pytest.fixture
def simple_hl7_server(tmp_path):
    if NODE is None:
        pytest.skip("node is not installed")
    assert SIMPLE_HL7.is_dir(), "simple-hl7 missing: run tests/setup.sh (npm install into tests/send)"
    s = NodeServer(tmp_path)
    yield s
    s.stop()


def test_simple_hl7_server(simple_hl7_server):
    files = [SAMPLES / "adt_a01.hl7", SAMPLES / "oru_r01.hl7", SAMPLES / "adt_a08_utf8.hl7"]
    status, out, err = run_send("--port", simple_hl7_server.port, "--ack", "hl7", *files)
    assert status == 0, (out, err)
    want = [f.read_bytes() for f in files]
    assert out == [f"{msh10(m)} AA 1" for m in want]
    assert simple_hl7_server.messages(3) == want


def test_simple_hl7_server_many_from_stdin(simple_hl7_server):
    msgs = [msg(f"N{i}") for i in range(20)]
    status, out, err = run_send("--port", simple_hl7_server.port, "--ack", "hl7", "--quiet", "-",
                                stdin=b"".join(m.replace(b"\r", b"\n") for m in msgs))
    assert status == 0, (out, err)
    assert out == [f"N{i} AA 1" for i in range(20)]
    assert err == ""
    assert simple_hl7_server.messages(20) == msgs


# ---------------------------------------------------------------------------------------------
# mllp-listen

needs_listen = pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built")


def listen_lines(lst, n):
    """mllp-listen's per-message lines: (byte-count, MSH-10)."""
    return [(int(l.split()[1]), l.split()[3]) for l in lst.message_lines(n)]


@needs_listen
def test_listen_commit_ack(listen):
    lst = listen()
    files = [SAMPLES / "adt_a01.hl7", SAMPLES / "oru_r01.hl7"]
    status, out, err = run_send("--port", lst.port, *files)
    assert status == 0, (out, err)
    want = [f.read_bytes() for f in files]
    assert out == [f"{msh10(m)} ACK 1" for m in want]
    assert listen_lines(lst, 2) == [(len(m), msh10(m)) for m in want]


@needs_listen
def test_listen_hl7_ack(listen):
    lst = listen("--ack", "hl7")
    status, out, err = run_send("--port", lst.port, "--ack", "hl7", SAMPLES / "adt_a01.hl7")
    assert status == 0, (out, err)
    assert out == ["MSG00001 AA 1"]
    assert listen_lines(lst, 1) == [(len(sample("adt_a01.hl7")), "MSG00001")]


@needs_listen
def test_listen_version_1_no_ack_prints_sent(listen):
    lst = listen("--version", "1")
    status, out, err = run_send("--port", lst.port, "--version", "1", "--ack", "none",
                                SAMPLES / "adt_a01.hl7", SAMPLES / "oru_r01.hl7")
    assert status == 0, (out, err)
    assert out == ["MSG00001 SENT 1", f"{msh10(sample('oru_r01.hl7'))} SENT 1"]
    assert len(lst.message_lines(2)) == 2


@needs_listen
def test_listen_large_message(listen):
    lst = listen()
    big = sample("oru_r01_1mib_ed.hl7")
    status, out, err = run_send("--port", lst.port, SAMPLES / "oru_r01_1mib_ed.hl7")
    assert status == 0, (out, err)
    assert out == [f"{msh10(big)} ACK 1"]
    assert listen_lines(lst, 1) == [(len(big), msh10(big))]


@needs_listen
def test_listen_batch_file_sends_each_message(listen):
    lst = listen()
    status, out, err = run_send("--port", lst.port, SAMPLES / "batch_adt.hl7")
    assert status == 0, (out, err)
    assert len(out) == 3 and all(l.endswith(" ACK 1") for l in out), out
    assert [l.split()[3] for l in lst.message_lines(3)] == [l.split()[0] for l in out]


# ---------------------------------------------------------------------------------------------
# Input forms: line endings, BOM, blank lines, stdin, several files, no MSH-10


def test_line_endings_bom_and_blank_lines(tmp_path, raw_server):
    srv = raw_server(commit_ack)
    a, b, c = sample("adt_a01.hl7"), sample("oru_r01.hl7"), msg("C3")
    lf = write(tmp_path, "lf.hl7", b"\xef\xbb\xbf" + a.replace(b"\r", b"\n") + b"\n\n"
               + b.replace(b"\r", b"\n"))
    crlf = write(tmp_path, "crlf.hl7", b"\r\n" + c.replace(b"\r", b"\r\n") + b"\r\n\r\n")
    status, out, err = run_send("--port", srv.port, lf, crlf)
    assert status == 0, (out, err)
    assert out == [f"{msh10(a)} ACK 1", f"{msh10(b)} ACK 1", "C3 ACK 1"]
    assert srv.payloads() == [a, b, c]  # every segment ends in CR, nothing else
    assert srv.connections == 1


def test_last_segment_without_newline_and_framed_input(tmp_path, raw_server):
    srv = raw_server(commit_ack)
    a, b = msg("F1"), msg("F2")
    f = write(tmp_path, "framed.mllp", frame(a) + frame(b).rstrip(b"\r").replace(EB, b""))
    status, out, err = run_send("--port", srv.port, f)
    assert status == 0, (out, err)
    assert out == ["F1 ACK 1", "F2 ACK 1"]
    assert srv.payloads() == [a, b]


def test_stdin_and_files_in_order(tmp_path, raw_server):
    srv = raw_server(commit_ack)
    m = [msg(f"S{i}") for i in range(4)]
    f1 = write(tmp_path, "one.hl7", m[0])
    f3 = write(tmp_path, "three.hl7", m[3].replace(b"\r", b"\r\n"))
    status, out, err = run_send("--port", srv.port, f1, "-", f3, stdin=m[1] + b"\n" + m[2])
    assert status == 0, (out, err)
    assert out == ["S0 ACK 1", "S1 ACK 1", "S2 ACK 1", "S3 ACK 1"]
    assert srv.payloads() == m


def test_message_without_control_id_prints_dash(tmp_path, raw_server):
    srv = raw_server(commit_ack)
    m = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\rPID|1\r"
    short = b"MSH|^~\\&|A|B\r"
    status, out, err = run_send("--port", srv.port, write(tmp_path, "m.hl7", m + short))
    assert status == 0, (out, err)
    assert out == ["- ACK 1", "- ACK 1"]
    assert srv.payloads() == [m, short]


# ---------------------------------------------------------------------------------------------
# Misbehaving servers


def test_nak_then_ack(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [frame(NAK if n == 0 else ACK)])
    status, out, err = run_send("--port", srv.port, *FAST, write(tmp_path, "m.hl7", msg("K1")))
    assert status == 0, (out, err)
    assert out == ["K1 ACK 2"]
    assert srv.payloads() == [msg("K1")] * 2


def test_nak_every_time_exit_1(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [frame(NAK if msh10(p) == "K2" else ACK)])
    f = write(tmp_path, "m.hl7", msg("K1") + msg("K2") + msg("K3"))
    status, out, err = run_send("--port", srv.port, *FAST, "--retries", "2", f)
    assert status == 1, (out, err)
    assert out == ["K1 ACK 1", "K2 NAK 3", "K3 ACK 1"]
    assert [msh10(p) for p in srv.payloads()] == ["K1", "K2", "K2", "K2", "K3"]


def test_ack_never_comes_exit_3(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [])
    f = write(tmp_path, "m.hl7", msg("T1") + msg("T2"))
    status, out, err = run_send("--port", srv.port, *FAST, "--timeout", "1", "--retries", "1", f)
    assert status == 3, (out, err)
    assert out == []
    lines = err.strip().splitlines()
    assert "T1" in lines[-1] and "1 more message not sent" in lines[-1], err
    # two attempts of the first message (a reconnect before the resend); the second never sent
    assert [msh10(p) for p in srv.payloads()] == ["T1", "T1"]


def test_failure_reason_printed_with_quiet(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [])
    status, out, err = run_send("--port", srv.port, "--quiet", "--timeout", "1", "--retries", "0",
                                write(tmp_path, "m.hl7", msg("Q1")))
    assert status == 3 and out == []
    assert len(err.strip().splitlines()) == 1 and "Q1" in err, err
    assert srv.payloads() == [msg("Q1")]


def test_quiet_success_has_empty_stderr(tmp_path, raw_server):
    srv = raw_server(commit_ack)
    status, out, err = run_send("--port", srv.port, "--quiet", write(tmp_path, "m.hl7", msg("Q2")))
    assert (status, out, err) == (0, ["Q2 ACK 1"], "")


def test_wrong_control_id_is_not_matched(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [frame(hl7_ack("SOMETHING-ELSE"))])
    status, out, err = run_send("--port", srv.port, "--ack", "hl7", "--timeout", "1",
                                "--retries", "0", write(tmp_path, "m.hl7", msg("W1")))
    assert status == 3, (out, err)
    assert out == []
    assert "W1" in err.strip().splitlines()[-1]


def test_wrong_control_id_then_right_one(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [frame(hl7_ack("OTHER")), frame(hl7_ack(msh10(p)))])
    status, out, err = run_send("--port", srv.port, "--ack", "hl7",
                                write(tmp_path, "m.hl7", msg("W2")))
    assert status == 0, (out, err)
    assert out == ["W2 AA 1"]
    assert srv.payloads() == [msg("W2")]


def test_connection_dropped_before_ack_then_ack(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: ["close"] if c == 1 else [frame(ACK)])
    status, out, err = run_send("--port", srv.port, *FAST, write(tmp_path, "m.hl7", msg("D1")))
    assert status == 0, (out, err)
    assert out == ["D1 ACK 2"]
    assert srv.connections == 2
    assert srv.frames == [(1, msg("D1")), (2, msg("D1"))]


def test_connection_dropped_every_time_exit_3(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: ["close"])
    status, out, err = run_send("--port", srv.port, *FAST, "--retries", "1",
                                write(tmp_path, "m.hl7", msg("D2") + msg("D3")))
    assert status == 3, (out, err)
    assert out == []
    assert [msh10(p) for p in srv.payloads()] == ["D2", "D2"]


def test_ae_on_one_of_three(tmp_path, raw_server):
    def script(s, c, n, p):
        cid = msh10(p)
        return [frame(hl7_ack(cid, "AE" if cid == "E2" else "AA", "bad PID"))]
    srv = raw_server(script)
    f = write(tmp_path, "m.hl7", msg("E1") + msg("E2") + msg("E3"))
    status, out, err = run_send("--port", srv.port, "--ack", "hl7", "--retries", "0", f)
    assert status == 1, (out, err)
    assert out == ["E1 AA 1", "E2 AE 1", "E3 AA 1"]
    assert [msh10(p) for p in srv.payloads()] == ["E1", "E2", "E3"]


def test_ae_is_resent_with_retries(tmp_path, raw_server):
    def script(s, c, n, p):
        cid = msh10(p)
        return [frame(hl7_ack(cid, "AE" if cid == "E2" else "AA"))]
    srv = raw_server(script)
    f = write(tmp_path, "m.hl7", msg("E1") + msg("E2") + msg("E3"))
    status, out, err = run_send("--port", srv.port, "--ack", "hl7", *FAST, "--retries", "2", f)
    assert status == 1, (out, err)
    assert out == ["E1 AA 1", "E2 AE 3", "E3 AA 1"]
    assert [msh10(p) for p in srv.payloads()] == ["E1", "E2", "E2", "E2", "E3"]


def test_config_passes_settings(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [frame(hl7_ack(msh10(p), "AE"))])
    status, out, err = run_send("--port", srv.port, "--ack", "hl7", "--config",
                                "RetryOnNegative=False", write(tmp_path, "m.hl7", msg("G1")))
    assert status == 1, (out, err)
    assert out == ["G1 AE 1"]  # not resent, though --retries is 3
    assert srv.payloads() == [msg("G1")]


@pytest.mark.parametrize("code", ["AR", "CE", "CR"])
def test_other_negative_kinds(tmp_path, raw_server, code):
    srv = raw_server(lambda s, c, n, p: [frame(hl7_ack(msh10(p), code))])
    status, out, err = run_send("--port", srv.port, "--ack", "hl7", "--retries", "0",
                                write(tmp_path, "m.hl7", msg("R1")))
    assert status == 1, (out, err)
    assert out == [f"R1 {code} 1"]


def test_commit_accept_ca_is_positive(tmp_path, raw_server):
    srv = raw_server(lambda s, c, n, p: [frame(hl7_ack(msh10(p), "CA"))])
    status, out, err = run_send("--port", srv.port, "--ack", "hl7",
                                write(tmp_path, "m.hl7", msg("C1")))
    assert status == 0, (out, err)
    assert out == ["C1 CA 1"]


def test_server_unreachable_exit_3(tmp_path):
    port = free_port()
    status, out, err = run_send("--port", port, *FAST, "--retries", "1",
                                write(tmp_path, "m.hl7", msg("U1")))
    assert status == 3, (out, err)
    assert out == []
    assert "U1" in err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# TLS against mllp-listen

needs_tls = [needs_listen, pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """tests/listen's Pki, plus two server certificates: one from the other CA (for
    localhost) and one from the test CA for another name (other.example only)."""
    p = Pki(tmp_path_factory.mktemp("pki"))
    with open(p.dir / "ext.cnf", "a") as f:
        f.write("[othername]\nbasicConstraints=CA:FALSE\nsubjectAltName=DNS:other.example\n"
                "extendedKeyUsage=serverAuth\n")
    p.foreign_server = p._leaf("foreign-server", "localhost", "other", "server")
    p.other_name = p._leaf("other-name", "other.example", "ca", "othername")
    return p


def tls_listen(listen, cert, *more):
    return listen("--tls-cert", cert[0], "--tls-key", cert[1], *more)


def tls_test(f):
    for m in needs_tls:
        f = m(f)
    return f


@tls_test
def test_tls_with_ca(listen, pki):
    lst = tls_listen(listen, pki.server)
    status, out, err = run_send("--port", lst.port, "--tls-ca", pki.ca, SAMPLES / "adt_a01.hl7")
    assert status == 0, (out, err)
    assert out == ["MSG00001 ACK 1"]
    assert listen_lines(lst, 1) == [(len(sample("adt_a01.hl7")), "MSG00001")]


@tls_test
def test_mutual_tls(listen, pki):
    lst = tls_listen(listen, pki.server, "--client-ca", pki.ca, "--ack", "hl7")
    status, out, err = run_send("--port", lst.port, "--ack", "hl7", "--tls-ca", pki.ca,
                                "--tls-cert", pki.client[0], "--tls-key", pki.client[1],
                                SAMPLES / "adt_a01.hl7", SAMPLES / "oru_r01.hl7")
    assert status == 0, (out, err)
    assert out == ["MSG00001 AA 1", f"{msh10(sample('oru_r01.hl7'))} AA 1"]
    assert len(lst.message_lines(2)) == 2


@tls_test
@pytest.mark.parametrize("who", ["none", "foreign"])
def test_mutual_tls_refuses_client_exit_3(listen, pki, who):
    lst = tls_listen(listen, pki.server, "--client-ca", pki.ca)
    cert = [] if who == "none" else ["--tls-cert", pki.foreign[0], "--tls-key", pki.foreign[1]]
    status, out, err = run_send("--port", lst.port, "--tls-ca", pki.ca, *cert, *FAST,
                                "--retries", "1", "--timeout", "5", SAMPLES / "adt_a01.hl7")
    assert status == 3, (out, err)
    assert out == [] and "MSG00001" in err.strip().splitlines()[-1]
    lst.no_more_lines()


@tls_test
def test_tls_server_from_another_ca_exit_3(listen, pki):
    lst = tls_listen(listen, pki.foreign_server)
    status, out, err = run_send("--port", lst.port, "--tls-ca", pki.ca, *FAST, "--retries", "1",
                                "--quiet", SAMPLES / "adt_a01.hl7")
    assert status == 3, (out, err)
    assert out == []
    assert len(err.strip().splitlines()) == 1, err
    lst.no_more_lines()


@tls_test
def test_tls_server_for_another_name(listen, pki):
    lst = tls_listen(listen, pki.other_name)
    status, out, err = run_send("--port", lst.port, "--tls-ca", pki.ca, *FAST, "--retries", "0",
                                "--quiet", SAMPLES / "adt_a01.hl7")
    assert status == 3, (out, err)
    assert out == [] and len(err.strip().splitlines()) == 1, err
    status, out, err = run_send("--port", lst.port, "--tls-ca", pki.ca, "--server-name",
                                "other.example", SAMPLES / "adt_a01.hl7")
    assert status == 0, (out, err)
    assert out == ["MSG00001 ACK 1"]
    assert listen_lines(lst, 1) == [(len(sample("adt_a01.hl7")), "MSG00001")]


@tls_test
def test_tls_to_plain_server_exit_3(listen, pki):
    lst = listen()
    status, out, err = run_send("--port", lst.port, "--tls-ca", pki.ca, "--timeout", "2",
                                "--retries", "0", SAMPLES / "adt_a01.hl7")
    assert status == 3, (out, err)
    assert out == []
