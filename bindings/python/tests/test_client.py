"""Tests of mllp.Client (the sender) against python-hl7's asyncio MLLP server, against an
mllp.Server of this binding, and against misbehaving servers written here with threading and
socket (NAK first, silence, wrong control id, dropped connection, AE with text), plus TLS and
garbage collection.

Every wait is bounded: the client's Timeout (1 s where a timeout is the point), deadlines on
do_events loops, socket timeouts in the raw servers. No assertion is about elapsed time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import mllp
import mllp.client as mllp_client

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK = SB + b"\x06" + EB + CR
NAK = SB + b"\x15" + EB + CR
SAMPLES = Path(
    os.environ.get("MLLP_SAMPLES") or Path(__file__).resolve().parents[3] / "tests" / "data"
)
ADT_A01 = (SAMPLES / "adt_a01.hl7").read_bytes()  # MSH-10 MSG00001
WAIT = 10.0


def hl7_message(control_id: str) -> bytes:
    return (
        "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20260101120000||ADT^A01|"
        f"{control_id}|P|2.5.1\rPID|1||12345^^^HOSP^MR||DOE^JOHN||19800101|M\r"
    ).encode()


def control_id_of(message: bytes) -> str:
    return message.split(b"\r")[0].split(b"|")[9].decode()


def hl7_ack(control_id: str, code: str = "AA", text: str = "") -> bytes:
    msa = f"MSA|{code}|{control_id}" + (f"|{text}" if text else "")
    return (
        f"MSH|^~\\&|RECVAPP|RECVFAC|SENDAPP|SENDFAC|20260101120001||ACK^A01|A{control_id}|P|2.5.1\r"
        f"{msa}\r"
    ).encode()


def frame(payload: bytes) -> bytes:
    return SB + payload + EB + CR


def drain(client: mllp.Client, what: str = "the queue to drain") -> None:
    deadline = time.monotonic() + WAIT
    while client.do_events(100) > 0:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


class Conn:
    """One accepted connection of a RawServer: frames in, bytes out."""

    def __init__(self, sock: socket.socket, n: int, stop: threading.Event) -> None:
        self.sock = sock
        self.n = n  # 1 for the first connection
        self.stop = stop
        self.buf = b""

    def read_frame(self) -> Optional[bytes]:
        """The next frame's payload; None at EOF or when the server stops."""
        while True:
            end = self.buf.find(EB + CR)
            if end >= 0:
                block, self.buf = self.buf[: end + 2], self.buf[end + 2 :]
                assert block[:1] == SB, block
                return block[1:-2]
            if self.stop.is_set():
                return None
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_closed(self) -> None:
        """Reads (and ignores) until the peer closes or the server stops."""
        while self.read_frame() is not None:
            pass


class RawServer:
    """A listener on 127.0.0.1 that runs ``behave(conn)`` on a thread per accepted connection."""

    def __init__(self, behave: Callable[[Conn], None]) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.received: List[bytes] = []
        self.errors: List[BaseException] = []
        self.threads: List[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(0.05)
            self.connections += 1
            t = threading.Thread(target=self._run, args=(Conn(s, self.connections, self.stop),), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn: Conn) -> None:
        try:
            self.behave(conn)
        except (ConnectionError, BrokenPipeError):
            pass  # the client went away: fine for these tests
        except BaseException as exc:  # reported by close()
            self.errors.append(exc)
        finally:
            conn.sock.close()

    def close(self) -> None:
        self.stop.set()
        self.accepter.join(5)
        self.sock.close()
        for t in self.threads:
            t.join(5)
        assert not self.errors, self.errors

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@pytest.fixture
def server() -> Iterator[mllp.Server]:
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    errors: List[BaseException] = []
    s.handler_error_hook = lambda where, exc: errors.append(exc)
    try:
        yield s
    finally:
        s.close()
    assert not errors, errors


def make_client(port: int, *settings: str, **kw: Any) -> mllp.Client:
    errors: List[BaseException] = []
    c = mllp.Client(remote_host="127.0.0.1", remote_port=port, timeout=kw.pop("timeout", 5), **kw)
    c.config("RetryDelay=10")
    for s in settings:
        c.config(s)
    c.handler_error_hook = lambda where, exc: errors.append(exc)
    c._test_errors = errors  # type: ignore[attr-defined]
    return c


class HL7Server:
    """python-hl7's asyncio MLLP server (``hl7.mllp.start_hl7_server``) on a thread of its own,
    answering each message with ``message.create_ack()``."""

    def __init__(self) -> None:
        hl7_mllp = pytest.importorskip("hl7.mllp")
        self.received: List[str] = []
        self.loop = asyncio.new_event_loop()

        async def handle(reader: Any, writer: Any) -> None:
            try:
                while not writer.is_closing():
                    message = await reader.readmessage()
                    self.received.append(str(message))
                    writer.writemessage(message.create_ack())
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def start() -> Any:
            return await hl7_mllp.start_hl7_server(handle, "127.0.0.1", 0)

        self.server = self.loop.run_until_complete(start())
        self.port = int(self.server.sockets[0].getsockname()[1])
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


# ---------------------------------------------------------------------------------------------
# Properties, config, lifetime
# ---------------------------------------------------------------------------------------------


def test_defaults_properties_and_config() -> None:
    with mllp.Client() as c:
        assert c.remote_host == "127.0.0.1"
        assert c.remote_port == 0
        assert (c.version, c.timeout, c.keep_alive, c.ssl_enabled) == (2, 10, False, False)
        assert c.connected is False and c.pending == 0 and c.ssl_cert is None
        assert c.config("AckMode") == "MLLP"
        c.remote_host, c.remote_port, c.local_host = "localhost", 2575, "127.0.0.1"
        c.version, c.timeout, c.keep_alive = 1, 3, True
        assert (c.remote_host, c.remote_port, c.local_host) == ("localhost", 2575, "127.0.0.1")
        assert (c.version, c.timeout, c.keep_alive) == (1, 3, True)
        assert c.config("MaxRetries=5") == "" and c.config("MaxRetries") == "5"
        with pytest.raises(mllp.MLLPError) as e:
            c.config("NoSuchSetting=1")
        assert e.value.code == mllp.ERR_UNKNOWN_SETTING
        with pytest.raises(mllp.MLLPError) as e:
            c.version = 3
        assert e.value.code == mllp.ERR_INVALID_VALUE
        with pytest.raises(mllp.MLLPError) as e:
            c.remote_port = 70000
        assert e.value.code == mllp.ERR_INVALID_ARGUMENT
        for bad in (b"", b"MSH|\x1c\r"):  # empty; framing bytes inside
            with pytest.raises(mllp.MLLPError) as e:
                c.send_async(bad)
            assert e.value.code == mllp.ERR_INVALID_ARGUMENT
            assert not isinstance(e.value, mllp.SendError)
        assert "mllp.Client" in repr(c)
    assert c.closed
    c.close()  # idempotent
    with pytest.raises(mllp.MLLPError) as e:
        c.remote_port
    assert e.value.code == mllp.ERR_BAD_STATE
    assert repr(c) == "<mllp.Client (closed)>"
    with mllp.Client(remote_port=9, version=1, timeout=4, config=["MaxRetries=0"]) as k:
        assert (k.remote_port, k.version, k.timeout, k.config("MaxRetries")) == (9, 1, 4, "0")
        assert k.config("AckMode") == "None"  # the default for version 1


def test_ack_kinds_and_codes() -> None:
    assert [int(k) for k in mllp.AckKind] == [-1, 0, 1, 2, 3, 4, 5, 6, 7]
    assert (mllp.ACK_ACK, mllp.ACK_NAK, mllp.ACK_NONE) == (6, 7, -1)
    assert mllp.ERR_ACK_TIMEOUT == 2040 and mllp.ERR_APP_ERROR == 2041
    assert mllp.ERR_APP_REJECT == 2042 and mllp.ERR_ACK_MISMATCH == 2043
    assert mllp.ERR_TLS_SERVER_REJECTED == 2023
    assert issubclass(mllp.SendError, mllp.MLLPError)


# ---------------------------------------------------------------------------------------------
# Against python-hl7 and the binding's own server
# ---------------------------------------------------------------------------------------------


def test_send_to_python_hl7_server() -> None:
    """python-hl7 is MLLP version 1 with HL7 acknowledgements: Version=1, AckMode=HL7."""
    hl7_server = HL7Server()
    try:
        with make_client(hl7_server.port, "AckMode=HL7", version=1) as c:
            acks: List[mllp.ClientAckInEvent] = []
            c.on_ack_in = acks.append
            r = c.send(ADT_A01)
            assert r == mllp.SendResult(r.message_id, mllp.AckKind.AA, 1)
            r2 = c.send(hl7_message("PYHL7-2").decode())  # str is UTF-8 encoded
            assert r2.ack_kind == mllp.AckKind.AA and r2.message_id > r.message_id
            assert [(a.control_id, a.kind, a.matched) for a in acks] == [
                ("MSG00001", mllp.AckKind.AA, True),
                ("PYHL7-2", mllp.AckKind.AA, True),
            ]
            assert acks[0].message_id == r.message_id
            assert acks[0].data.startswith(b"MSH|") and b"\rMSA|AA|MSG00001" in acks[0].data
            assert c._test_errors == []  # type: ignore[attr-defined]
        assert len(hl7_server.received) == 2
        assert hl7_server.received[0].startswith("MSH|^~\\&|ADT1|")
    finally:
        hl7_server.close()


def test_send_to_binding_server_mllp_and_hl7(server: mllp.Server) -> None:
    got: List[bytes] = []
    server.on_message = lambda e: got.append(e.data)
    server.start_listening()
    with make_client(server.local_port) as c:
        events: List[str] = []
        done: List[mllp.SendDoneEvent] = []
        c.on_connected = lambda e: events.append(f"connected {e.connection_id}")
        c.on_disconnected = lambda e: events.append(f"disconnected {e.connection_id}")
        c.on_send_done = done.append
        r = c.send(ADT_A01)
        assert (r.ack_kind, r.attempts) == (mllp.AckKind.ACK, 1)
        assert c.connected and c.pending == 0
        assert [(d.message_id, d.result_code, d.control_id, d.attempts) for d in done] == [
            (r.message_id, 0, "MSG00001", 1)
        ]
        assert done[0].description == "OK" and done[0].ack_kind == mllp.AckKind.ACK
        c.disconnect()
        assert not c.connected
        assert events == ["connected 1", "disconnected 1"]
    assert got == [ADT_A01]

    server.config("AckMode=HL7")  # for connections accepted from now on
    with make_client(server.local_port, "AckMode=HL7") as c:
        acks: List[mllp.ClientAckInEvent] = []
        c.on_ack_in = acks.append
        r = c.send(hl7_message("HL7-1"))
        assert (r.ack_kind, r.attempts) == (mllp.AckKind.AA, 1)
        assert [(a.control_id, a.matched, a.message_id) for a in acks] == [("HL7-1", True, r.message_id)]


def test_send_async_in_order(server: mllp.Server) -> None:
    server.start_listening()
    with make_client(server.local_port, "MaxOutstanding=4") as c:
        done: List[mllp.SendDoneEvent] = []
        c.on_send_done = done.append
        ids = [c.send_async(hl7_message(f"ASYNC-{i}")) for i in range(20)]
        assert c.pending == 20 and done == []  # nothing moves outside do_events
        drain(c)
        assert [d.message_id for d in done] == ids
        assert [d.control_id for d in done] == [f"ASYNC-{i}" for i in range(20)]
        assert all(d.result_code == 0 for d in done)
        assert c.pending == 0 and c.do_events(0) == 0


def test_reentrancy_and_raising_handlers(server: mllp.Server) -> None:
    server.start_listening()
    with make_client(server.local_port) as c:
        seen: Dict[str, Any] = {}

        def on_done(e: mllp.SendDoneEvent) -> None:
            if "inner" in seen:
                return
            try:
                c.send(ADT_A01)
            except mllp.MLLPError as exc:
                seen["reentrant"] = exc.code
            seen["port"] = c.remote_port  # properties are allowed
            seen["inner"] = c.send_async(hl7_message("INNER"))  # and so is send_async
            raise RuntimeError("boom")  # goes to handler_error_hook

        c.on_send_done = on_done
        assert c.send(ADT_A01).attempts == 1
        assert seen["reentrant"] == mllp.ERR_REENTRANT
        assert seen["port"] == server.local_port and seen["inner"] > 0
        drain(c)
        errors = c._test_errors  # type: ignore[attr-defined]
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert c.on_send_done.handler is on_done
        del c.on_send_done
        assert c.on_send_done.handler is None


# ---------------------------------------------------------------------------------------------
# Misbehaving servers
# ---------------------------------------------------------------------------------------------


def test_nak_first_then_ack() -> None:
    def behave(conn: Conn) -> None:
        count = 0
        while (msg := conn.read_frame()) is not None:
            count += 1
            conn.send(NAK if count == 1 else ACK)

    with RawServer(behave) as raw, make_client(raw.port, "MaxRetries=2") as c:
        acks: List[mllp.AckKind] = []
        c.on_ack_in = lambda e: acks.append(e.kind)
        r = c.send(ADT_A01)
        assert (r.ack_kind, r.attempts) == (mllp.AckKind.ACK, 2)
        assert acks == [mllp.AckKind.NAK, mllp.AckKind.ACK]


def test_ack_never_comes() -> None:
    with RawServer(Conn.wait_closed) as raw, make_client(raw.port, "MaxRetries=1", timeout=1) as c:
        done: List[mllp.SendDoneEvent] = []
        c.on_send_done = done.append
        with pytest.raises(mllp.SendError) as e:
            c.send(ADT_A01)
        assert e.value.code == mllp.ERR_ACK_TIMEOUT
        assert e.value.result.attempts == 2 and e.value.result.ack_kind == mllp.AckKind.NONE
        assert [(d.result_code, d.attempts) for d in done] == [(mllp.ERR_ACK_TIMEOUT, 2)]
        assert raw.connections == 2  # reconnected before the resend
        assert c.pending == 0


def test_close_ends_unfinished_messages_with_672() -> None:
    with RawServer(Conn.wait_closed) as raw:
        c = make_client(raw.port, timeout=5)
        done: List[mllp.SendDoneEvent] = []
        c.on_send_done = done.append
        ids = [c.send_async(ADT_A01) for _ in range(3)]
        c.do_events(300)  # connects and sends the first; no acknowledgement comes
        assert c.pending == 3
        c.close()
        assert [(d.message_id, d.result_code) for d in done] == [(i, mllp.ERR_INTERRUPTED) for i in ids]


@pytest.mark.parametrize("then_correct", [False, True])
def test_ack_for_the_wrong_control_id(then_correct: bool) -> None:
    def behave(conn: Conn) -> None:
        while (msg := conn.read_frame()) is not None:
            conn.send(frame(hl7_ack("SOMETHING-ELSE")))
            if then_correct:
                conn.send(frame(hl7_ack(control_id_of(msg))))

    with RawServer(behave) as raw, make_client(raw.port, "AckMode=HL7", "MaxRetries=0", timeout=1) as c:
        errors: List[mllp.ErrorEvent] = []
        acks: List[mllp.ClientAckInEvent] = []
        c.on_error = errors.append
        c.on_ack_in = acks.append
        if then_correct:
            r = c.send(hl7_message("RIGHT-1"))
            assert (r.ack_kind, r.attempts) == (mllp.AckKind.AA, 1)
        else:
            with pytest.raises(mllp.SendError) as e:
                c.send(hl7_message("RIGHT-1"))
            assert e.value.code == mllp.ERR_ACK_TIMEOUT
        assert [x.error_code for x in errors][:1] == [mllp.ERR_ACK_MISMATCH]
        assert (acks[0].control_id, acks[0].matched, acks[0].message_id) == ("SOMETHING-ELSE", False, 0)
        if then_correct:
            assert (acks[1].control_id, acks[1].matched) == ("RIGHT-1", True)


def test_dropped_before_the_ack_then_acked_after_reconnect() -> None:
    def behave(conn: Conn) -> None:
        msg = conn.read_frame()
        if msg is None:
            return
        if conn.n == 1:
            return  # closes without answering
        conn.send(frame(hl7_ack(control_id_of(msg))))
        conn.wait_closed()

    with RawServer(behave) as raw, make_client(raw.port, "AckMode=HL7", "MaxRetries=2") as c:
        events: List[str] = []
        c.on_connected = lambda e: events.append(f"connected {e.connection_id}")
        c.on_disconnected = lambda e: events.append(f"disconnected {e.connection_id}")
        r = c.send(hl7_message("DROP-1"))
        assert (r.ack_kind, r.attempts) == (mllp.AckKind.AA, 2)
        assert events[:3] == ["connected 1", "disconnected 1", "connected 2"]
        assert raw.connections == 2


def test_application_error_with_text() -> None:
    def behave(conn: Conn) -> None:
        while (msg := conn.read_frame()) is not None:
            conn.send(frame(hl7_ack(control_id_of(msg), "AE", "Unknown patient")))

    with RawServer(behave) as raw, make_client(raw.port, "AckMode=HL7", "MaxRetries=0") as c:
        done: List[mllp.SendDoneEvent] = []
        acks: List[mllp.ClientAckInEvent] = []
        c.on_send_done = done.append
        c.on_ack_in = acks.append
        with pytest.raises(mllp.SendError) as e:
            c.send(hl7_message("AE-1"))
        assert e.value.code == mllp.ERR_APP_ERROR
        assert e.value.result.ack_kind == mllp.AckKind.AE and e.value.result.attempts == 1
        assert [(a.kind, a.control_id, a.matched) for a in acks] == [(mllp.AckKind.AE, "AE-1", True)]
        assert "Unknown patient" in acks[0].text
        assert len(done) == 1 and done[0].result_code == mllp.ERR_APP_ERROR
        assert "Unknown patient" in done[0].description


def test_rejected_by_the_binding_server_after_retries(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    refused: List[int] = []

    def reject(e: mllp.AckOutEvent) -> None:
        refused.append(e.message_seq)
        e.accept, e.reject_code = False, mllp.REJECT_AR

    server.on_ack_out = reject
    server.start_listening()
    with make_client(server.local_port, "AckMode=HL7", "MaxRetries=1") as c:
        with pytest.raises(mllp.SendError) as e:
            c.send(hl7_message("AR-1"))
        assert e.value.code == mllp.ERR_APP_REJECT
        assert (e.value.result.ack_kind, e.value.result.attempts) == (mllp.AckKind.AR, 2)
    assert len(refused) == 2


def test_connection_refused() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with make_client(port, "MaxRetries=0", timeout=2) as c:
        with pytest.raises(mllp.MLLPError) as e:
            c.connect()
        assert e.value.code == 10061
        assert not c.connected


# ---------------------------------------------------------------------------------------------
# Lifetimes
# ---------------------------------------------------------------------------------------------


def test_gc_while_sending(server: mllp.Server) -> None:
    server.start_listening()
    c = make_client(server.local_port, "MaxOutstanding=3")
    cid = c._cid
    assert cid in mllp_client._CLIENTS
    done: List[int] = []

    def install() -> None:
        def on_done(e: mllp.SendDoneEvent) -> None:
            done.append(e.result_code)
            gc.collect()  # collection inside a callback, on the sending thread

        c.on_send_done = on_done  # the only references are the client's
        c.on_ack_in = lambda e: gc.collect()
        c.on_log = lambda e: None
        c.config("LogLevel=3")

    install()
    for _ in range(3):
        gc.collect()
    for i in range(30):
        c.send_async(hl7_message(f"GC-{i}"))
        if i % 10 == 0:
            assert c.send(hl7_message(f"GC-SYNC-{i}")).attempts == 1
        gc.collect()
    deadline = time.monotonic() + WAIT
    while c.do_events(50) > 0:
        gc.collect()
        assert time.monotonic() < deadline, "traffic did not finish"
    assert done == [0] * 33
    for _name, _reg, tramp in mllp_client._TRAMPOLINES:
        assert tramp in c._cfuncs  # every CFUNCTYPE registered is referenced by the client
    assert c._test_errors == []  # type: ignore[attr-defined]
    c.close()
    assert cid not in mllp_client._CLIENTS  # the library called the release callback


def test_unclosed_client_is_freed_by_gc(server: mllp.Server) -> None:
    gone = threading.Event()
    server.on_disconnected = lambda e: gone.set()
    server.start_listening()
    c = make_client(server.local_port)
    cid = c._cid
    c.on_send_done = lambda e: None
    c.send(ADT_A01)
    ref = weakref.ref(c)
    del c
    for _ in range(3):
        gc.collect()
    assert ref() is None
    assert cid not in mllp_client._CLIENTS
    assert gone.wait(WAIT)  # freeing closed the connection


# ---------------------------------------------------------------------------------------------
# TLS (the certificates of test_tls.py, made with the openssl command line tool)
# ---------------------------------------------------------------------------------------------

from test_tls import _openssl, pki  # noqa: E402,F401  (the module-scoped PKI fixture)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory, pki: Dict[str, Path]) -> Path:
    d = tmp_path_factory.mktemp("other-ca")
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
              "-subj", "/CN=Some Other CA"], d)
    return d / "ca.pem"


@pytest.fixture
def tls_server(pki: Dict[str, Path]) -> Iterator[mllp.Server]:
    with mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["server_key_pem"]) as cert:
        s = mllp.Server(local_host="127.0.0.1", local_port=0, ssl_enabled=True, ssl_cert=cert)
    s.start_listening()
    try:
        yield s
    finally:
        s.close()


def test_tls_trusted_ca(tls_server: mllp.Server, pki: Dict[str, Path]) -> None:
    ca_pem = pki["ca"].read_text()
    for setting in (f"SSLServerCACerts={ca_pem}", f"SSLAcceptServerCertStore={pki['ca']}"):
        with make_client(tls_server.local_port, setting, ssl_enabled=True) as c:
            auth: List[mllp.SSLServerAuthenticationEvent] = []
            c.on_ssl_server_authentication = auth.append
            r = c.send(ADT_A01)
            assert (r.ack_kind, r.attempts) == (mllp.AckKind.ACK, 1)
            assert c.config("SSLNegotiatedVersion") in ("TLS1.3", "TLS1.2")
            assert len(auth) == 1 and auth[0].accept is True and auth[0].status == "OK"
            assert "CN=localhost" in auth[0].cert_subject and auth[0].cert_encoded
            assert c._test_errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("override", [False, True])
def test_tls_untrusted_ca(tls_server: mllp.Server, other_ca: Path, override: bool) -> None:
    setting = f"SSLServerCACerts={other_ca.read_text()}"
    with make_client(tls_server.local_port, setting, "MaxRetries=0", ssl_enabled=True) as c:
        seen: List[mllp.SSLServerAuthenticationEvent] = []

        def decide(e: mllp.SSLServerAuthenticationEvent) -> None:
            seen.append(mllp.SSLServerAuthenticationEvent(**vars(e)))  # a copy, before the change
            if override:
                e.accept = True

        c.on_ssl_server_authentication = decide
        if override:
            assert c.send(ADT_A01).ack_kind == mllp.AckKind.ACK
        else:
            with pytest.raises(mllp.MLLPError) as e:
                c.send(ADT_A01)
            assert e.value.code == mllp.ERR_TLS_SERVER_REJECTED
        assert len(seen) == 1 and seen[0].accept is False and seen[0].status != "OK"


def test_tls_raising_handler_refuses(tls_server: mllp.Server, pki: Dict[str, Path]) -> None:
    setting = f"SSLServerCACerts={pki['ca'].read_text()}"
    with make_client(tls_server.local_port, setting, "MaxRetries=0", ssl_enabled=True) as c:
        def boom(e: mllp.SSLServerAuthenticationEvent) -> None:
            raise RuntimeError("no")

        c.on_ssl_server_authentication = boom
        with pytest.raises(mllp.MLLPError) as e:
            c.connect()
        assert e.value.code == mllp.ERR_TLS_SERVER_REJECTED
        assert len(c._test_errors) == 1  # type: ignore[attr-defined]


def test_tls_client_certificate(pki: Dict[str, Path]) -> None:
    """Mutual TLS: the server asks for a client certificate; the client presents ssl_cert."""
    with mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["server_key_pem"]) as cert:
        s = mllp.Server(
            local_host="127.0.0.1", local_port=0, ssl_enabled=True, ssl_cert=cert,
            ssl_authenticate_clients=True,
        )
    try:
        s.config("SSLClientCACerts=" + pki["ca"].read_text())
        subjects: List[str] = []
        s.on_ssl_client_authentication = lambda e: subjects.append(e.cert_subject)
        s.start_listening()
        client_pem = pki["client_key"].read_bytes() + pki["client"].read_bytes()
        setting = f"SSLServerCACerts={pki['ca'].read_text()}"
        with make_client(s.local_port, setting, ssl_enabled=True) as c:
            with mllp.Certificate(mllp.CERT_PEM_KEY_BLOB, client_pem) as mine:
                c.ssl_cert = mine
            # The Certificate object is closed: the client kept its own reference.
            assert c.send(ADT_A01).ack_kind == mllp.AckKind.ACK
            assert c.ssl_cert is not None
            c.ssl_cert = None
            assert c.ssl_cert is None
        assert len(subjects) == 1 and "CN=test client" in subjects[0]
    finally:
        s.close()
