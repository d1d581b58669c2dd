"""Tests of the mllp Python binding against a real server, driven with the socket module.

Every wait is bounded: sockets have timeouts and `wait_for` gives up after a few seconds.
"""

from __future__ import annotations

import gc
import io
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

import mllp
import mllp.server as mllp_server

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK = b"\x0b\x06\x1c\r"
NAK = b"\x0b\x15\x1c\r"
SAMPLES = Path(
    os.environ.get("MLLP_SAMPLES") or Path(__file__).resolve().parents[3] / "tests" / "data"
)
ADT_A01 = (SAMPLES / "adt_a01.hl7").read_bytes()
SOCK_TIMEOUT = 5.0


def frame(msg: bytes) -> bytes:
    return SB + msg + EB + CR


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def connect(server: mllp.Server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.local_port), timeout=SOCK_TIMEOUT)
    s.settimeout(SOCK_TIMEOUT)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_frame(s: socket.socket) -> bytes:
    """Reads one MLLP frame (start block to end block + CR), returned whole."""
    buf = b""
    while not buf.endswith(EB + CR):
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    return buf


def is_closed_by_peer(s: socket.socket, timeout: float = SOCK_TIMEOUT) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest.fixture
def server() -> Iterator[mllp.Server]:
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    errors: List[BaseException] = []
    s.handler_error_hook = lambda where, exc: errors.append(exc)
    s._test_errors = errors  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        s.close()


def one_connection(server: mllp.Server) -> int:
    ids = wait_for(lambda: list(server.connections), what="a connection")
    assert len(ids) == 1
    return int(ids[0])


# ---------------------------------------------------------------------------------------------
# ConnectionRequest
# ---------------------------------------------------------------------------------------------


def test_connection_request_accept(server: mllp.Server) -> None:
    requests: List[mllp.ConnectionRequestEvent] = []
    connected: List[mllp.ConnectedEvent] = []

    @server.on_connection_request
    def on_request(e: mllp.ConnectionRequestEvent) -> None:
        assert e.accept is True  # accepted by default
        requests.append(e)

    server.on_connected = connected.append
    server.start_listening()
    assert server.listening
    with connect(server) as c:
        c.sendall(frame(ADT_A01))
        assert recv_exact(c, 4) == ACK
        assert requests[0].address == "127.0.0.1"
        assert requests[0].port == c.getsockname()[1]
        wait_for(lambda: connected, what="Connected")
        assert connected[0].status_code == 0 and connected[0].description == "OK"
        cid = connected[0].connection_id
        conn = server.connections[cid]
        assert conn.connection_id == cid and conn.connected
        assert conn.remote_host == "127.0.0.1" and conn.remote_port == c.getsockname()[1]
        assert conn.local_address == "127.0.0.1"
        assert conn.output_data == ADT_A01
        assert cid in server.connections and len(server.connections) == 1
    assert server.on_connection_request.handler is on_request


def test_connection_receiving_while_a_message_is_partly_sent(server: mllp.Server) -> None:
    server.start_listening()
    with connect(server) as c:
        cid = one_connection(server)
        conn = server.connections[cid]
        assert conn.receiving is False
        whole = frame(ADT_A01)
        c.sendall(whole[:20])  # a start block and part of the message
        wait_for(lambda: conn.receiving, what="receiving")
        c.sendall(whole[20:])
        assert recv_exact(c, 4) == ACK
        # The flag is published at the end of the reactor's turn, after the ACK was written.
        wait_for(lambda: not conn.receiving, what="receiving to end")


def test_connection_request_refuse(server: mllp.Server) -> None:
    requests: List[mllp.ConnectionRequestEvent] = []
    connected: List[mllp.ConnectedEvent] = []

    def refuse(e: mllp.ConnectionRequestEvent) -> None:
        requests.append(e)
        e.accept = False

    server.on_connection_request = refuse
    server.on_connected = connected.append
    server.start_listening()
    with connect(server) as c:
        assert is_closed_by_peer(c)
    assert len(requests) == 1
    assert connected == [] and server.connection_count == 0
    # Removing the handler accepts again.
    del server.on_connection_request
    with connect(server) as c:
        c.sendall(frame(b"MSH|^~\\&|X\r"))
        assert recv_exact(c, 4) == ACK


# ---------------------------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------------------------


def test_message_arrives_through_transfer_events(server: mllp.Server) -> None:
    seen: List[Any] = []
    server.on_start_transfer = seen.append
    server.on_transfer = seen.append
    server.on_end_transfer = seen.append
    acks: List[mllp.AckOutEvent] = []
    server.on_ack_out = acks.append
    server.start_listening()
    with connect(server) as c:
        # Send in pieces, so Transfer may fire more than once.
        wire = frame(ADT_A01)
        c.sendall(wire[:100])
        time.sleep(0.05)
        c.sendall(wire[100:])
        assert recv_exact(c, 4) == ACK
        cid = one_connection(server)
    assert isinstance(seen[0], mllp.StartTransferEvent) and seen[0].message_seq == 1
    assert isinstance(seen[-1], mllp.EndTransferEvent) and seen[-1].message_seq == 1
    pieces = seen[1:-1]
    assert pieces and all(isinstance(p, mllp.TransferEvent) for p in pieces)
    assert b"".join(p.data for p in pieces) == ADT_A01
    assert pieces[-1].bytes_transferred == len(ADT_A01)
    assert all(e.connection_id == cid for e in seen)
    assert acks[0].message == ADT_A01 and acks[0].accept and acks[0].message_seq == 1


def test_transfer_handlers_set_removed_and_set_again_while_listening(server: mllp.Server) -> None:
    # The per-message trampolines are registered with the library only while a handler is set.
    seen: List[Any] = []
    server.start_listening()
    with connect(server) as c:
        c.sendall(frame(b"MSH|^~\\&|1\r"))
        assert recv_exact(c, 4) == ACK
        server.on_start_transfer = seen.append
        server.on_transfer = seen.append
        server.on_end_transfer = seen.append
        c.sendall(frame(b"MSH|^~\\&|2\r"))
        assert recv_exact(c, 4) == ACK
        assert [type(e).__name__ for e in seen] == [
            "StartTransferEvent", "TransferEvent", "EndTransferEvent"]
        assert seen[0].message_seq == 2 and seen[1].data == b"MSH|^~\\&|2\r"
        del server.on_transfer
        server.on_start_transfer = None
        server.on_end_transfer.clear()
        c.sendall(frame(b"MSH|^~\\&|3\r"))
        assert recv_exact(c, 4) == ACK
        assert len(seen) == 3
        server.on_transfer = lambda e: 1 / 0  # a raising Transfer handler still NAKs
        c.sendall(frame(b"MSH|^~\\&|4\r"))
        assert recv_exact(c, 4) == NAK
        server.on_transfer = seen.append
        c.sendall(frame(b"MSH|^~\\&|5\r"))
        assert recv_exact(c, 4) == ACK  # the failure of message 4 does not leak into 5
        assert seen[-1].data == b"MSH|^~\\&|5\r"


def test_ack_out_reject_sends_nak(server: mllp.Server) -> None:
    @server.on_ack_out
    def judge(e: mllp.AckOutEvent) -> None:
        e.accept = b"ADT^A01" not in e.message

    server.start_listening()
    with connect(server) as c:
        c.sendall(frame(ADT_A01))
        assert recv_exact(c, 4) == NAK
        c.sendall(frame(b"MSH|^~\\&|ORU\r"))
        assert recv_exact(c, 4) == ACK


def test_hl7_ack_mode_reject_code(server: mllp.Server) -> None:
    server.config("AckMode=HL7")

    @server.on_ack_out
    def judge(e: mllp.AckOutEvent) -> None:
        e.accept = False
        e.reject_code = mllp.REJECT_AR

    server.start_listening()
    with connect(server) as c:
        c.sendall(frame(ADT_A01))
        reply = recv_frame(c)
    assert b"MSA|AR|" in reply


def test_output_stream_and_output_file(server: mllp.Server, tmp_path: Path) -> None:
    server.config("CloseStreamAfterTransfer=False")
    sink = io.BytesIO()
    server.start_listening()
    with connect(server) as c:
        cid = one_connection(server)
        conn = server.connections[cid]
        conn.set_output_stream(sink, close=False)
        assert conn.output_stream is sink
        c.sendall(frame(ADT_A01))
        assert recv_exact(c, 4) == ACK
        assert sink.getvalue() == ADT_A01
        conn.output_stream = None  # cleared: the library releases it (sink not closed)
        assert not sink.closed and conn.output_stream is None
        out = tmp_path / "msg.hl7"
        conn.output_file_name = str(out)
        assert conn.output_file_name == str(out)
        c.sendall(frame(b"MSH|^~\\&|FILE\r"))
        assert recv_exact(c, 4) == ACK
        assert out.read_bytes() == b"MSH|^~\\&|FILE\r"
    assert not [k for k, v in mllp_server._STREAMS.items() if v.obj is sink]


# ---------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------


def test_send_bytes_and_input_data_fire_ack_in(server: mllp.Server) -> None:
    acks: List[mllp.AckInEvent] = []
    errors: List[mllp.ErrorEvent] = []
    server.on_ack_in = acks.append
    server.on_error = errors.append
    server.start_listening()
    with connect(server) as c:
        cid = one_connection(server)
        server.send_bytes(cid, ADT_A01)
        assert recv_frame(c) == frame(ADT_A01)
        c.sendall(ACK)
        wait_for(lambda: acks, what="AckIn")
        assert acks[0].connection_id == cid and acks[0].accepted is True

        conn = server.connections[cid]
        conn.input_data = b"MSH|^~\\&|OUT\r"
        assert conn.input_data == b"MSH|^~\\&|OUT\r"
        server.send(cid)
        assert recv_frame(c) == frame(b"MSH|^~\\&|OUT\r")
        c.sendall(NAK)
        wait_for(lambda: len(acks) == 2, what="second AckIn")
        assert acks[1].accepted is False
        wait_for(lambda: any(e.error_code == mllp.ERR_NAK_RECEIVED for e in errors), what="670")


def test_send_input_stream_and_file(server: mllp.Server, tmp_path: Path) -> None:
    closed = threading.Event()

    class Source(io.BytesIO):
        def close(self) -> None:
            closed.set()
            super().close()

    server.start_listening()
    with connect(server) as c:
        cid = one_connection(server)
        conn = server.connections[cid]
        conn.input_stream = Source(ADT_A01)
        conn.send()
        assert recv_frame(c) == frame(ADT_A01)
        assert closed.wait(SOCK_TIMEOUT)  # CloseStreamAfterTransfer=True by default
        assert conn.input_stream is None
        c.sendall(ACK)

        src = tmp_path / "in.hl7"
        src.write_bytes(b"MSH|^~\\&|FROMFILE\r")
        conn.input_file_name = src
        assert conn.input_file_name == str(src)
        conn.send()
        assert recv_frame(c) == frame(b"MSH|^~\\&|FROMFILE\r")


def test_synchronous_send_waits_for_ack_and_interrupt(server: mllp.Server) -> None:
    server.default_timeout = 5
    server.start_listening()
    with connect(server) as c:
        cid = one_connection(server)
        conn = server.connections[cid]
        assert conn.timeout == 5

        def answer() -> None:
            recv_frame(c)
            c.sendall(ACK)

        t = threading.Thread(target=answer)
        t.start()
        server.send_bytes(cid, b"MSH|^~\\&|SYNC\r")  # returns after the ACK (GIL released)
        t.join(SOCK_TIMEOUT)

        threading.Timer(0.3, server.interrupt, args=(cid,)).start()
        start = time.monotonic()
        with pytest.raises(mllp.MLLPError) as ei:
            server.send_bytes(cid, b"MSH|^~\\&|NOANSWER\r")
        assert ei.value.code == mllp.ERR_SEND_INTERRUPTED
        assert time.monotonic() - start < 4


# ---------------------------------------------------------------------------------------------
# Properties, config, errors
# ---------------------------------------------------------------------------------------------


def test_properties_and_config_round_trip(server: mllp.Server) -> None:
    assert server.version == 2 and server.default_timeout == 0 and server.keep_alive is False
    assert server.listening is False
    server.version = 1
    server.default_timeout = 7
    server.keep_alive = True
    assert (server.version, server.default_timeout, server.keep_alive) == (1, 7, True)
    assert server.config("ReceiveTimeout") == "60"
    assert server.config("ReceiveTimeout=12") == ""
    assert server.config("receivetimeout") == "12"  # names are case-insensitive
    server.config("LogLevel=3")
    assert server.config("LogLevel") == "3"
    server.local_port = 0
    assert server.local_host == "127.0.0.1"
    server.reset()
    assert server.version == 2 and server.config("ReceiveTimeout") == "60"
    assert server.local_host == ""
    with pytest.raises(AttributeError):
        server.listening = True  # type: ignore[misc]


def test_invalid_calls_raise_mllp_error(server: mllp.Server) -> None:
    with pytest.raises(mllp.MLLPError) as ei:
        server.config("NoSuchSetting")
    assert ei.value.code == 2004 == mllp.ERR_UNKNOWN_SETTING
    assert "NoSuchSetting" in ei.value.message
    with pytest.raises(mllp.MLLPError) as ei:
        server.version = 3
    assert ei.value.code == 2005
    with pytest.raises(mllp.MLLPError) as ei:
        server.config("FirewallHost=example.org")
    assert ei.value.code == mllp.ERR_NOT_SUPPORTED and ei.value.message
    with pytest.raises(mllp.MLLPError) as ei:
        server.disconnect(12345)
    assert ei.value.code == mllp.ERR_NO_SUCH_CONNECTION
    with pytest.raises(mllp.MLLPError) as ei:
        server.connection(12345).remote_host
    assert ei.value.code == 2002
    assert server.connection(12345).connected is False
    server.start_listening()
    with pytest.raises(mllp.MLLPError) as ei:
        server.local_port = 1
    assert ei.value.code == 106
    assert mllp.error_description(670)


def test_address_in_use(server: mllp.Server) -> None:
    server.start_listening()
    with mllp.Server(local_host="127.0.0.1", local_port=server.local_port) as other:
        with pytest.raises(mllp.MLLPError) as ei:
            other.start_listening()
        assert ei.value.code == 10048


# ---------------------------------------------------------------------------------------------
# Disconnect, shutdown, close
# ---------------------------------------------------------------------------------------------


def test_disconnect(server: mllp.Server) -> None:
    gone: List[mllp.DisconnectedEvent] = []
    server.on_disconnected = gone.append
    server.start_listening()
    with connect(server) as c:
        cid = one_connection(server)
        conn = server.connections[cid]
        conn.disconnect()
        assert is_closed_by_peer(c)
        wait_for(lambda: gone, what="Disconnected")
        assert gone[0].connection_id == cid
        assert not conn.connected and cid not in server.connections
        with pytest.raises(KeyError):
            server.connections[cid]


def test_shutdown_and_listen_again(server: mllp.Server) -> None:
    gone: List[mllp.DisconnectedEvent] = []
    server.on_disconnected = gone.append
    server.start_listening()
    port = server.local_port
    clients = [connect(server) for _ in range(3)]
    wait_for(lambda: server.connection_count == 3, what="3 connections")
    server.shutdown()
    for c in clients:
        assert is_closed_by_peer(c)
        c.close()
    wait_for(lambda: len(gone) == 3, what="3 Disconnected")
    wait_for(lambda: not server.listening, what="not listening")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT).close()
    server.local_port = port
    server.start_listening()
    with connect(server) as c:
        c.sendall(frame(b"MSH|^~\\&|AGAIN\r"))
        assert recv_exact(c, 4) == ACK


def test_stop_listening_keeps_connections(server: mllp.Server) -> None:
    server.start_listening()
    with connect(server) as c:
        one_connection(server)
        server.stop_listening()
        assert not server.listening
        c.sendall(frame(b"MSH|^~\\&|STILL\r"))
        assert recv_exact(c, 4) == ACK


def test_context_manager_and_idempotent_close() -> None:
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:
        s.start_listening()
        c = connect(s)
        one_connection(s)
    assert s.closed
    assert is_closed_by_peer(c)
    c.close()
    s.close()
    s.free()
    with pytest.raises(mllp.MLLPError) as ei:
        s.start_listening()
    assert ei.value.code == mllp.ERR_BAD_STATE
    assert "closed" in repr(s)


def test_close_inside_handler_is_reentrant(server: mllp.Server) -> None:
    results: List[Any] = []

    @server.on_connected
    def try_close(e: mllp.ConnectedEvent) -> None:
        try:
            server.close()
            results.append("closed?!")
        except mllp.MLLPError as exc:
            results.append(exc.code)
        # Queued calls work from a handler:
        results.append(server.config("ReceiveTimeout"))
        server.send_bytes(e.connection_id, b"MSH|^~\\&|HELLO\r")

    server.start_listening()
    with connect(server) as c:
        assert recv_frame(c) == frame(b"MSH|^~\\&|HELLO\r")
    wait_for(lambda: len(results) == 2)
    assert results == [mllp.ERR_REENTRANT, "60"]
    assert not server.closed


@pytest.mark.parametrize("how", ["with", "close"])
@pytest.mark.parametrize("mode", ["Thread", "DoEvents"])
def test_close_fires_disconnected_for_every_connection(mode: str, how: str) -> None:
    """Closing a server with clients connected fires Disconnected exactly once per connection,
    status 0, before close() returns (or the with block ends); in DoEvents mode on the closing
    thread."""
    me = threading.get_ident()
    connected: List[int] = []
    disconnected: List[Any] = []
    clients: List[socket.socket] = []
    s = mllp.Server(local_host="127.0.0.1", local_port=0, config=[f"EventMode={mode}"])
    errors: List[BaseException] = []
    s.handler_error_hook = lambda where, exc: errors.append(exc)
    s.on_connected = lambda e: connected.append(e.connection_id) if e.status_code == 0 else None
    s.on_disconnected = lambda e: disconnected.append(
        (e.connection_id, e.status_code, threading.get_ident(), s.closed)
    )
    try:
        with s:
            s.start_listening()
            clients.extend(connect(s) for _ in range(3))
            deadline = time.monotonic() + SOCK_TIMEOUT
            while len(connected) < 3 and time.monotonic() < deadline:
                if mode == "DoEvents":
                    s.do_events(50)
                else:
                    time.sleep(0.005)
            assert len(connected) == 3
            assert disconnected == []
            if how == "close":
                s.close()
                assert s.closed
        assert s.closed
        got = list(disconnected)
        assert sorted(d[0] for d in got) == sorted(connected)  # exactly once each
        assert all(d[1] == 0 for d in got)
        assert all(d[3] is False for d in got)  # the server was still usable in the handler
        if mode == "DoEvents":
            assert all(d[2] == me for d in got)
        else:
            assert all(d[2] != me for d in got)
        assert errors == []
        for c in clients:
            assert is_closed_by_peer(c)
    finally:
        for c in clients:
            c.close()
        s.close()


@pytest.mark.parametrize("mode", ["Thread", "DoEvents"])
def test_close_from_a_disconnected_handler_during_close(mode: str) -> None:
    """A Disconnected handler fired by close() that calls close() itself gets MLLPError 2006
    (it must not wait for the close that is delivering it: that would never return)."""
    codes: List[int] = []
    s = mllp.Server(local_host="127.0.0.1", local_port=0, config=[f"EventMode={mode}"])
    seen: List[int] = []
    s.on_connected = lambda e: seen.append(e.connection_id)

    @s.on_disconnected
    def close_again(e: mllp.DisconnectedEvent) -> None:
        try:
            s.close()
            codes.append(0)
        except mllp.MLLPError as exc:
            codes.append(exc.code)

    s.start_listening()
    with connect(s) as c:
        deadline = time.monotonic() + SOCK_TIMEOUT
        while not seen and time.monotonic() < deadline:
            if mode == "DoEvents":
                s.do_events(50)
            else:
                time.sleep(0.005)
        assert seen
        # Closed on a helper thread so that a close() that hangs fails the test instead of
        # hanging it (in DoEvents mode the handler runs on that thread).
        done = threading.Event()
        threading.Thread(target=lambda: (s.close(), done.set()), daemon=True).start()
        assert done.wait(SOCK_TIMEOUT), "close() hung"
        assert s.closed
        assert codes == [mllp.ERR_REENTRANT]
        assert is_closed_by_peer(c)


# ---------------------------------------------------------------------------------------------
# Handlers that raise
# ---------------------------------------------------------------------------------------------


def test_raising_handler_does_not_break_the_server(server: mllp.Server) -> None:
    errors: List[BaseException] = server._test_errors  # type: ignore[attr-defined]
    calls = []

    @server.on_transfer
    def boom(e: mllp.TransferEvent) -> None:
        calls.append(e)
        if b"BAD" in e.data:
            raise ValueError("handler failure")

    server.start_listening()
    with connect(server) as c:
        c.sendall(frame(b"MSH|^~\\&|BAD\r"))
        assert recv_exact(c, 4) == NAK  # the message whose handler raised is refused
        c.sendall(frame(b"MSH|^~\\&|GOOD\r"))
        assert recv_exact(c, 4) == ACK
    assert len(errors) == 1 and isinstance(errors[0], ValueError)

    # nak_on_handler_error=False: the failure is only reported.
    server.nak_on_handler_error = False
    with connect(server) as c:
        c.sendall(frame(b"MSH|^~\\&|BAD\r"))
        assert recv_exact(c, 4) == ACK
    assert len(errors) == 2


def test_raising_handler_goes_to_unraisablehook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:

        @s.on_connection_request
        def bad(e: mllp.ConnectionRequestEvent) -> None:
            raise KeyboardInterrupt  # even BaseException stays out of C

        @s.on_ack_out
        def bad_ack(e: mllp.AckOutEvent) -> None:
            raise RuntimeError("x")

        s.start_listening()
        with connect(s) as c:
            assert is_closed_by_peer(c)  # a raising ConnectionRequest refuses
        s.on_connection_request = None
        with connect(s) as c:
            c.sendall(frame(ADT_A01))
            assert recv_exact(c, 4) == NAK
        # A raising error hook falls back to sys.unraisablehook too.
        s.handler_error_hook = lambda where, exc: 1 / 0
        with connect(s) as c:
            c.sendall(frame(ADT_A01))
            assert recv_exact(c, 4) == NAK
    assert [type(x.exc_value) for x in seen] == [KeyboardInterrupt, RuntimeError, ZeroDivisionError]
    assert "on_connection_request" in seen[0].err_msg


def test_default_report_prints_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:
        s.on_transfer = lambda e: 1 / 0
        s.start_listening()
        with connect(s) as c:
            c.sendall(frame(ADT_A01))
            assert recv_exact(c, 4) == NAK
    err = capsys.readouterr().err
    assert "Exception ignored in mllp on_transfer handler" in err
    assert "ZeroDivisionError" in err


def test_stream_failures(server: mllp.Server) -> None:
    errors: List[BaseException] = server._test_errors  # type: ignore[attr-defined]
    events: List[mllp.ErrorEvent] = []
    server.on_error = events.append

    class Broken:
        closed = False

        def read(self, n: int) -> bytes:
            raise OSError("cannot read")

        def write(self, data: bytes) -> int:
            raise OSError("disk full")

        def close(self) -> None:
            self.closed = True

    # Setting a stream on a closed/unknown connection fails, and the stream is released.
    orphan = Broken()
    with pytest.raises(mllp.MLLPError) as ei:
        server.connection(424242).output_stream = orphan
    assert ei.value.code == mllp.ERR_NO_SUCH_CONNECTION
    assert orphan.closed
    assert not [e for e in mllp_server._STREAMS.values() if e.obj is orphan]

    server.start_listening()
    with connect(server) as c:
        conn = server.connections[one_connection(server)]
        out = Broken()
        conn.output_stream = out
        c.sendall(frame(ADT_A01))
        assert recv_exact(c, 4) == NAK  # the write failed: the message is refused
        wait_for(lambda: any(e.error_code == mllp.ERR_IO for e in events), what="2009 event")
        wait_for(lambda: out.closed, what="output stream released")
        src = Broken()
        conn.input_stream = src
        with pytest.raises(mllp.MLLPError) as ei:
            conn.send()
        assert ei.value.code == mllp.ERR_IO
    assert [str(e) for e in errors] == ["disk full", "cannot read"]


def test_handler_type_check(server: mllp.Server) -> None:
    with pytest.raises(TypeError):
        server.on_log = 42  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# EventMode=DoEvents
# ---------------------------------------------------------------------------------------------


def test_do_events_delivers_on_calling_thread() -> None:
    with mllp.Server(local_host="127.0.0.1", local_port=0, config=["EventMode=DoEvents"]) as s:
        threads: List[int] = []
        data: List[bytes] = []

        @s.on_transfer
        def on_transfer(e: mllp.TransferEvent) -> None:
            threads.append(threading.get_ident())
            data.append(e.data)

        s.on_ack_out = lambda e: threads.append(threading.get_ident())
        s.start_listening()
        with connect(s) as c:
            c.sendall(frame(ADT_A01))
            c.settimeout(0.3)
            with pytest.raises(socket.timeout):
                c.recv(4)  # no ACK before the host delivered the events
            assert data == []
            deadline = time.monotonic() + SOCK_TIMEOUT
            while b"".join(data) != ADT_A01 or len(threads) < 2:
                assert time.monotonic() < deadline
                s.do_events(100)
            c.settimeout(SOCK_TIMEOUT)
            assert recv_exact(c, 4) == ACK
        assert set(threads) == {threading.get_ident()}
        assert s.do_events(10) >= 0


# ---------------------------------------------------------------------------------------------
# Lifetimes: GC under traffic, callbacks kept, release, interpreter exit
# ---------------------------------------------------------------------------------------------


def test_gc_under_traffic_on_several_connections() -> None:
    n_conn, n_msg = 6, 60
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:
        received = [0]
        lock = threading.Lock()

        def count(e: mllp.EndTransferEvent) -> None:
            with lock:
                received[0] += 1
            gc.collect()  # collection on the reactor thread too

        s.on_end_transfer = count
        s.on_transfer = lambda e: bytes(e.data)  # lambdas referenced only by the server
        s.on_ack_out = lambda e: setattr(e, "accept", True)
        s.on_log = lambda e: None
        s.config("LogLevel=3")
        del count
        s.start_listening()
        failures: List[BaseException] = []

        def client(k: int) -> None:
            try:
                with connect(s) as c:
                    for i in range(n_msg):
                        c.sendall(frame(ADT_A01.replace(b"ADT", b"A%02d" % (i % 100))))
                        assert recv_exact(c, 4) == ACK
            except BaseException as exc:  # reported below
                failures.append(exc)

        workers = [threading.Thread(target=client, args=(k,)) for k in range(n_conn)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while any(w.is_alive() for w in workers):
            gc.collect()
            assert time.monotonic() < deadline, "traffic did not finish"
            time.sleep(0.001)
        for w in workers:
            w.join()
        assert failures == []
        assert received[0] == n_conn * n_msg


def test_callbacks_stay_alive_and_release_runs() -> None:
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    sid = s._sid
    assert sid in mllp_server._SERVERS
    got: List[bytes] = []

    def make_handler() -> None:
        def handler(e: mllp.TransferEvent) -> None:
            got.append(e.data)

        s.on_transfer = handler  # the only reference to `handler` is the server's

    make_handler()
    for _ in range(3):
        gc.collect()
    s.start_listening()
    with connect(s) as c:
        c.sendall(frame(ADT_A01))
        assert recv_exact(c, 4) == ACK
    assert got == [ADT_A01]
    # Every CFUNCTYPE registered with the library is referenced by the server.
    for _name, _reg, tramp in mllp_server._TRAMPOLINES:
        assert tramp in s._cfuncs
    s.close()
    assert sid not in mllp_server._SERVERS  # the library called the release callback


def test_unclosed_server_is_freed_by_gc() -> None:
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    sid = s._sid
    s.on_transfer = lambda e: None
    s.start_listening()
    c = connect(s)
    one_connection(s)
    s.stop_listening()  # a listening server is kept alive (test_unreferenced_listening_...)
    ref = weakref.ref(s)
    del s
    for _ in range(3):
        gc.collect()
    assert ref() is None
    assert is_closed_by_peer(c)  # freeing shut the connection
    c.close()
    wait_for(lambda: sid not in mllp_server._SERVERS, what="release")


def test_server_dropped_inside_its_own_handler() -> None:
    """The last reference dies on the reactor thread: the free is deferred, not refused."""
    holder: List[mllp.Server] = [mllp.Server(local_host="127.0.0.1", local_port=0)]
    sid = holder[0]._sid
    done = threading.Event()

    def drop(e: mllp.ConnectedEvent) -> None:
        holder[0].stop_listening()  # else the listening server stays alive unreferenced
        holder.clear()
        done.set()

    holder[0].on_connected = drop
    holder[0].start_listening()
    port = holder[0].local_port
    c = socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT)
    assert done.wait(SOCK_TIMEOUT)
    del drop
    gc.collect()
    assert is_closed_by_peer(c)
    c.close()
    wait_for(lambda: sid not in mllp_server._SERVERS, what="release after deferred free")


def test_unreferenced_listening_server_keeps_serving() -> None:
    """Like C# and Java: a listening server with no reference left is not collected; it is
    released by stop_listening() (or shutdown/reset/close) and collected after that."""
    got: List[bytes] = []

    def start() -> "tuple[int, int, weakref.ReferenceType[mllp.Server]]":
        s = mllp.Server(local_host="127.0.0.1", local_port=0)
        s.on_message = lambda e: got.append(e.data)
        s.start_listening()
        return s.local_port, s._sid, weakref.ref(s)

    port, sid, ref = start()
    for _ in range(3):
        gc.collect()
    assert ref() is not None and sid in mllp_server._LISTENING
    c = socket.create_connection(("127.0.0.1", port), timeout=SOCK_TIMEOUT)
    c.settimeout(SOCK_TIMEOUT)
    c.sendall(frame(ADT_A01))
    assert recv_exact(c, 4) == ACK
    assert got == [ADT_A01]
    server = ref()
    assert server is not None
    server.stop_listening()
    assert sid not in mllp_server._LISTENING
    del server
    for _ in range(3):
        gc.collect()
    assert ref() is None  # collected once it stopped listening
    assert is_closed_by_peer(c)
    c.close()
    wait_for(lambda: sid not in mllp_server._SERVERS, what="release")


@pytest.mark.parametrize("how", ["shutdown", "reset", "close"])
def test_listening_registry_released(how: str) -> None:
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    assert s._sid not in mllp_server._LISTENING
    s.start_listening()
    assert mllp_server._LISTENING.get(s._sid) is s
    getattr(s, how)()
    assert s._sid not in mllp_server._LISTENING
    s.close()


def test_do_events_waits_100_ms_by_default() -> None:
    assert mllp.DEFAULT_DO_EVENTS_WAIT_MS == 100
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:
        s.config("EventMode=DoEvents")
        s.start_listening()
        t0 = time.monotonic()
        assert s.do_events() == 0  # nothing queued: waits the default 100 ms
        waited = time.monotonic() - t0
        assert 0.08 <= waited < 2.0, waited
        t0 = time.monotonic()
        s.do_events(0)
        assert time.monotonic() - t0 < 0.08


def test_connection_ids_as_int_and_reference_string() -> None:
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:
        s.start_listening()
        assert len(s.connections) == 0 and s.connection_count == 0
        with connect(s) as c:
            cid = one_connection(s)
            assert len(s.connections) == 1 and s.connection_count == 1
            for key in (cid, str(cid)):
                conn = s.connections[key]
                assert conn.connection_id == cid and isinstance(conn.connection_id, int)
                assert key in s.connections
                assert s.connections.get(key) == conn
                assert s.connection(key) == conn
            # Unknown and malformed ids: KeyError from the mapping, 2002 from the methods.
            unknown = cid + 4294967296
            for bad in (unknown, str(unknown), "abc", "", "-1", " 1", "1.0", -1, 2**64, 1.0, None):
                with pytest.raises(KeyError):
                    s.connections[bad]  # type: ignore[index]
                assert bad not in s.connections
                assert s.connections.get(bad) is None  # type: ignore[arg-type]
            for bad in (unknown, str(unknown), "abc", -1, 2**64):
                with pytest.raises(mllp.MLLPError) as ei:
                    s.send_bytes(bad, b"x")  # type: ignore[arg-type]
                assert ei.value.code == mllp.ERR_NO_SUCH_CONNECTION
                with pytest.raises(mllp.MLLPError) as ei:
                    s.disconnect(bad)  # type: ignore[arg-type]
                assert ei.value.code == mllp.ERR_NO_SUCH_CONNECTION
            # The reference's string id works for every method.
            s.send_bytes(str(cid), b"MSH|^~\\&|STR\r")
            assert recv_frame(c) == frame(b"MSH|^~\\&|STR\r")
            s.disconnect(str(cid))
            assert is_closed_by_peer(c)
        wait_for(lambda: len(s.connections) == 0, what="disconnect")


EXIT_SCRIPT = textwrap.dedent(r"""
    import socket, sys, threading, mllp
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    gone = []
    s.on_transfer = lambda e: print("transfer", len(e.data), flush=True)
    s.on_disconnected = lambda e: print("disconnected", e.connection_id, flush=True)
    s.on_log = lambda e: None
    s.config("LogLevel=3")
    s.start_listening()
    c = socket.create_connection(("127.0.0.1", s.local_port), timeout=5)
    c.sendall(b"\x0bMSH|^~\\&|EXIT\r\x1c\r")
    assert c.recv(4) == b"\x0b\x06\x1c\r"
    # A second server in a reference cycle, also left open.
    t = mllp.Server(local_host="127.0.0.1", local_port=0)
    t.on_connected = lambda e: t.connection_count
    t.start_listening()
    d = socket.create_connection(("127.0.0.1", t.local_port), timeout=5)
    # Traffic still flowing while the interpreter exits (without the binding's atexit free,
    # the reactor thread would call into a finalizing interpreter and abort the process).
    def spam():
        e = socket.create_connection(("127.0.0.1", s.local_port), timeout=5)
        while True:
            try:
                e.sendall(b"\x0bMSH|^~\\&|SPAM\r\x1c\r")
                e.recv(4)
            except Exception:
                return
    threading.Thread(target=spam, daemon=True).start()
    import time; time.sleep(0.2)
    print("exiting", flush=True)
    """)


@pytest.mark.parametrize("how", ["return", "sys.exit"])
def test_interpreter_exit_with_open_server(how: str) -> None:
    script = EXIT_SCRIPT + ("sys.exit(0)\n" if how == "sys.exit" else "")
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(mllp.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    )
    env.setdefault("MLLP_LIBRARY", mllp.library_path)
    p = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        timeout=30,
        env=env,
    )
    out = p.stdout.decode()
    assert p.returncode == 0, (p.returncode, out, p.stderr.decode())
    assert "transfer 14" in out and "exiting" in out
    assert "disconnected" in out.split("exiting", 1)[1]  # freed at exit, handlers still ran
    assert "Traceback" not in p.stderr.decode(), p.stderr.decode()


def test_library_info() -> None:
    assert mllp.library_version() == "0.1.0"
    assert os.path.exists(mllp.library_path) or "mllp" in mllp.library_path
    assert mllp.CODES["ERR_UNKNOWN_SETTING"] == 2004
    e = mllp.MLLPError(670)
    assert e.code == 670 and e.message and str(e).startswith("[670]")
