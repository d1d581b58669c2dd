"""Tests of the HL7 features of the binding: the Message and Duplicate events, the
DuplicateWindow, ProcessBatch, DefaultCharset and DecodeToUTF8 settings, replies chosen by the
host (AckOutEvent.reply, acknowledge_with), application acknowledgements (send_app_ack) and
build_ack.

Real servers on 127.0.0.1; python-hl7's MLLPClient (``hl7.client``) or a plain socket is the
client. Every wait is bounded: sockets have timeouts and `wait_for` gives up after a few
seconds.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import hl7
import hl7.client
import pytest

import mllp

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK = b"\x0b\x06\x1c\r"
NAK = b"\x0b\x15\x1c\r"
SAMPLES = Path(
    os.environ.get("MLLP_SAMPLES") or Path(__file__).resolve().parents[3] / "tests" / "data"
)
BATCH = (SAMPLES / "batch_adt.hl7").read_bytes()
SOCK_TIMEOUT = 5.0


def frame(msg: bytes) -> bytes:
    return SB + msg + EB + CR


def unframe(wire: bytes) -> bytes:
    assert wire.startswith(SB) and wire.endswith(EB + CR), wire
    return wire[1:-2]


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def hl7_message(
    control_id: str,
    *,
    msh15: str = "",
    msh16: str = "",
    msh18: str = "",
    pid_name: bytes = b"DOE^JOHN",
    sender: str = "SENDAPP",
) -> bytes:
    """An ADT^A01 with the given MSH-10, MSH-15, MSH-16 and MSH-18 (segments end in CR)."""
    msh = (
        f"MSH|^~\\&|{sender}|SENDFAC|RECVAPP|RECVFAC|20260101120000||ADT^A01|{control_id}|P|2.5.1"
        f"|||{msh15}|{msh16}||{msh18}"
    ).encode("ascii")
    return msh + CR + b"PID|1||12345^^^HOSP^MR||" + pid_name + b"||19800101|M" + CR


def segments(msg: bytes) -> List[List[bytes]]:
    """The segments of an unframed HL7 message, each split into fields."""
    return [seg.split(b"|") for seg in msg.split(CR) if seg]


def field(msg: bytes, seg: str, n: int) -> str:
    """Field n of the first `seg` segment (MSH numbering for MSH: MSH-10 is field(.., 10))."""
    parsed = hl7.parse(msg.decode("latin-1"))
    return str(parsed.segment(seg)[n])


class Client:
    """python-hl7's MLLPClient with a timeout, reading whole frames."""

    def __init__(self, server: mllp.Server) -> None:
        self.c = hl7.client.MLLPClient("127.0.0.1", server.local_port)
        self.c.socket.settimeout(SOCK_TIMEOUT)
        self.pending = b""

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.c.close()

    def _read_frame(self, first: bytes = b"") -> bytes:
        buf = self.pending + first
        while EB + CR not in buf:
            chunk = self.c.socket.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {buf!r}")
            buf += chunk
        end = buf.index(EB + CR) + 2
        self.pending = buf[end:]
        return buf[:end]

    def send(self, msg: bytes) -> bytes:
        """Sends one framed message; returns the first reply frame (whole, framed)."""
        return self._read_frame(self.c.send_message(msg))

    def send_raw(self, data: bytes) -> None:
        self.c.socket.sendall(data)

    def recv_frame(self) -> bytes:
        return self._read_frame()

    def nothing_more(self, within: float = 0.3) -> bool:
        """True when no byte arrives within `within` seconds."""
        if self.pending:
            return False
        self.c.socket.settimeout(within)
        try:
            data = self.c.socket.recv(1)
        except socket.timeout:
            return True
        finally:
            self.c.socket.settimeout(SOCK_TIMEOUT)
        self.pending = data
        return False


class Recorder:
    """Records every event of a server in order, as (name, event)."""

    NAMES = ("start_transfer", "transfer", "end_transfer", "message", "ack_out", "duplicate", "error")

    def __init__(self, server: mllp.Server) -> None:
        self.events: List[Tuple[str, Any]] = []
        self.lock = threading.Lock()
        for name in self.NAMES:
            setattr(server, f"on_{name}", self._add(name))

    def _add(self, name: str) -> Callable[[Any], None]:
        def add(e: Any) -> None:
            with self.lock:
                self.events.append((name, e))

        return add

    def of(self, name: str) -> List[Any]:
        with self.lock:
            return [e for n, e in self.events if n == name]

    def names(self) -> List[str]:
        with self.lock:
            out: List[str] = []
            for n, _ in self.events:
                if not (out and out[-1] == n == "transfer"):  # collapse Transfer runs
                    out.append(n)
            return out


@pytest.fixture
def server() -> Iterator[mllp.Server]:
    s = mllp.Server(local_host="127.0.0.1", local_port=0)
    errors: List[BaseException] = []
    s.handler_error_hook = lambda where, exc: errors.append(exc)
    try:
        yield s
        assert errors == [], errors  # no handler raised
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# Constants, settings
# ---------------------------------------------------------------------------------------------


def test_constants() -> None:
    assert (mllp.ERR_BAD_BATCH, mllp.ERR_CHARSET, mllp.ERR_DUPLICATE_IN_PROGRESS) == (2030, 2031, 2032)
    assert (mllp.ERR_NOT_CONNECTED, mllp.ERR_LISTENING, mllp.ERR_DROPPED, mllp.ERR_SHUT_DOWN) == (
        212,
        213,
        1120,
        2010,
    )
    for code in (2030, 2031, 2032, 212, 213, 1120, 2010):
        assert mllp.error_description(code), code
        assert code in mllp.CODES.values()
    assert [mllp.ACK_AA, mllp.ACK_AE, mllp.ACK_AR, mllp.ACK_CA, mllp.ACK_CE, mllp.ACK_CR] == list(
        range(6)
    )
    assert mllp.ACK_AE == mllp.REJECT_AE and mllp.ACK_AR == mllp.REJECT_AR
    assert "message" in mllp.EVENT_NAMES and "duplicate" in mllp.EVENT_NAMES


def test_new_settings_round_trip(server: mllp.Server) -> None:
    assert server.duplicate_count == 0
    assert server.config("DuplicateWindow") == "0"
    assert server.config("ProcessBatch") == "False"
    assert server.config("DefaultCharset") == ""
    assert server.config("DecodeToUTF8") == "False"
    server.config("DuplicateWindow=10")
    server.config("ProcessBatch=True")
    server.config("DecodeToUTF8=True")
    server.config("DefaultCharset=8859/1")
    assert server.config("DuplicateWindow") == "10"
    assert server.config("ProcessBatch") == "True"
    assert server.config("DecodeToUTF8") == "True"
    assert server.config("DefaultCharset") == "8859/1"
    server.config("DefaultCharset=")
    assert server.config("DefaultCharset") == ""
    with pytest.raises(mllp.MLLPError) as ei:
        server.config("DefaultCharset=NO-SUCH-CHARSET")
    assert ei.value.code == mllp.ERR_INVALID_VALUE
    with pytest.raises(mllp.MLLPError) as ei:
        server.config("DuplicateWindow=10000001")
    assert ei.value.code == mllp.ERR_INVALID_VALUE
    assert server.config("DuplicateCount") == "0"
    with pytest.raises(mllp.MLLPError):
        server.config("DuplicateCount=5")  # read-only
    server.reset()
    assert server.config("DuplicateWindow") == "0" and server.config("ProcessBatch") == "False"


# ---------------------------------------------------------------------------------------------
# (a) DuplicateWindow
# ---------------------------------------------------------------------------------------------


def test_duplicate_answered_with_the_original_ack(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    server.config("DuplicateWindow=10")
    rec = Recorder(server)
    server.start_listening()
    msg = hl7_message("DUP0001")
    with Client(server) as c:
        first = c.send(msg)
        assert field(unframe(first), "MSA", 1) == "AA"
        assert field(unframe(first), "MSA", 2) == "DUP0001"
        second = c.send(msg)
        assert second == first  # byte for byte, the original's MSH-10 and MSH-7 included
        wait_for(lambda: rec.of("duplicate"), what="Duplicate")
    assert len(rec.of("message")) == 1
    assert len(rec.of("ack_out")) == 1
    assert len(rec.of("start_transfer")) == 1 and len(rec.of("end_transfer")) == 1
    (dup,) = rec.of("duplicate")
    assert dup.message == msg and dup.control_id == "DUP0001" and dup.reply == unframe(first)
    assert dup.connection_id == rec.of("message")[0].connection_id
    assert server.duplicate_count == 1
    assert server.config("DuplicateCount") == "1"

    # From another connection: still a duplicate (the window is the server's).
    with Client(server) as c:
        assert c.send(msg) == first
    wait_for(lambda: len(rec.of("duplicate")) == 2, what="second Duplicate")
    assert server.duplicate_count == 2 and len(rec.of("message")) == 1

    # The same MSH-3/4/10 with other bytes is not a duplicate: delivered, with its own ACK.
    other = hl7_message("DUP0001", pid_name=b"DOE^JANE")
    with Client(server) as c:
        third = c.send(other)
    assert third != first and field(unframe(third), "MSA", 1) == "AA"
    wait_for(lambda: len(rec.of("message")) == 2, what="Message of the changed message")
    assert rec.of("message")[1].data == other
    assert server.duplicate_count == 2 and len(rec.of("duplicate")) == 2


def test_metrics_count_known_traffic(server: mllp.Server) -> None:
    server.config("DuplicateWindow=10")
    server.config("MaxMessageSize=200")
    server.on_ack_out = lambda e: setattr(e, "accept", b"NAKME" not in e.message)
    assert server.metrics == mllp.Metrics()
    server.start_listening()
    frames = [
        (hl7_message("MET1"), ACK),
        (hl7_message("MET1"), ACK),  # a resend: answered from the window
        (hl7_message("NAKME"), NAK),
        (b"x" * 300, NAK),  # larger than MaxMessageSize: refused by the library (671)
    ]
    with Client(server) as c:
        for msg, reply in frames:
            assert c.send(msg) == reply
        m = wait_for(
            lambda: (lambda m: m if m.acks_sent + m.naks_sent == 4 else None)(server.metrics),
            what="four replies counted",
        )
        assert m.connections_accepted == 1 and m.connections_open == 1
        assert m.messages_received == 4
        assert (m.messages_accepted, m.messages_refused, m.messages_duplicate) == (1, 2, 1)
        assert m.bytes_in == sum(len(frame(f)) for f, _ in frames)
        assert m.bytes_out == 16
        assert (m.acks_sent, m.naks_sent) == (2, 2)
        assert m.errors == 1
        assert m.ack_latency_count == 4 and m.ack_latency_sum_seconds > 0
        text = server.metrics_text()
        lines = text.splitlines()
        assert "# TYPE mllp_ack_latency_seconds histogram" in lines
        assert 'mllp_messages_total{result="duplicate"} 1' in lines
        assert 'mllp_errors_total{code="671"} 1' in lines
        assert 'mllp_ack_latency_seconds_bucket{le="+Inf"} 4' in lines
    wait_for(lambda: server.metrics.connections_open == 0, what="connection closed")


def test_duplicate_window_off_by_default(server: mllp.Server) -> None:
    rec = Recorder(server)
    server.start_listening()
    msg = hl7_message("NODUP1")
    with Client(server) as c:
        assert c.send(msg) == ACK
        assert c.send(msg) == ACK
    wait_for(lambda: len(rec.of("message")) == 2, what="two Message events")
    assert rec.of("duplicate") == [] and server.duplicate_count == 0


# ---------------------------------------------------------------------------------------------
# (b) ProcessBatch
# ---------------------------------------------------------------------------------------------


def test_batch_mllp_mode_one_message_event_each_and_one_reply(server: mllp.Server) -> None:
    server.config("ProcessBatch=True")
    rec = Recorder(server)
    server.start_listening()
    with Client(server) as c:
        assert c.send(BATCH) == ACK
        assert c.nothing_more()  # one reply for the whole frame
    messages = rec.of("message")
    assert len(messages) == 3
    assert [field(m.data, "MSH", 10) for m in messages] == ["B00000", "B00001", "B00002"]
    assert all(m.data.startswith(b"MSH|") for m in messages)
    seqs = [m.message_seq for m in messages]
    assert len(set(seqs)) == 3 and seqs == sorted(seqs)
    assert [a.message_seq for a in rec.of("ack_out")] == seqs
    # Each message gets its own StartTransfer/Transfer/EndTransfer/Message/AckOut, in order.
    assert rec.names() == ["start_transfer", "transfer", "end_transfer", "message", "ack_out"] * 3


def test_batch_hl7_mode_batch_acknowledgement(server: mllp.Server) -> None:
    server.config("ProcessBatch=True")
    server.config("AckMode=HL7")
    rec = Recorder(server)
    server.start_listening()
    with Client(server) as c:
        reply = unframe(c.send(BATCH))
        assert c.nothing_more()
    assert len(rec.of("message")) == 3
    segs = segments(reply)
    names = [s[0] for s in segs]
    assert b"BHS" in names and b"BTS" in names
    if names[0] == b"FHS":
        assert names[-1] == b"FTS"
    msas = [s for s in segs if s[0] == b"MSA"]
    assert [s[1] for s in msas] == [b"AA"] * 3
    assert [s[2] for s in msas] == [b"B00000", b"B00001", b"B00002"]
    assert names.count(b"MSH") == 3
    bts = next(s for s in segs if s[0] == b"BTS")
    assert bts[1] == b"3"


def test_malformed_batch_refused_whole(server: mllp.Server) -> None:
    server.config("ProcessBatch=True")
    rec = Recorder(server)
    server.start_listening()
    bad = BATCH.replace(b"BTS|3", b"BTS|5")
    assert bad != BATCH
    with Client(server) as c:
        assert c.send(bad) == NAK
    wait_for(lambda: rec.of("error"), what="Error 2030")
    assert [e.error_code for e in rec.of("error")] == [mllp.ERR_BAD_BATCH]
    assert rec.of("message") == [] and rec.of("ack_out") == []


def test_batch_not_split_without_process_batch(server: mllp.Server) -> None:
    rec = Recorder(server)
    server.start_listening()
    with Client(server) as c:
        assert c.send(BATCH) == ACK
    wait_for(lambda: rec.of("message"), what="Message")
    assert [m.data for m in rec.of("message")] == [BATCH]


# ---------------------------------------------------------------------------------------------
# (c) character sets
# ---------------------------------------------------------------------------------------------


def test_decode_to_utf8_from_8859_1(server: mllp.Server) -> None:
    server.config("DecodeToUTF8=True")
    rec = Recorder(server)
    server.start_listening()
    msg = hl7_message("CS0001", msh18="8859/1", pid_name=b"REN\xe9^MARIE")
    with Client(server) as c:
        assert c.send(msg) == ACK
    (m,) = rec.of("message")
    assert b"REN\xc3\xa9^MARIE" in m.data and b"\xe9^" not in m.data
    assert m.data == msg.replace(b"\xe9", "é".encode("utf-8"))
    assert m.charset == "8859/1" and m.encoding == "8859/1" and m.decoded is True
    for name in ("start_transfer", "end_transfer", "ack_out"):
        (e,) = rec.of(name)
        assert (e.charset, e.encoding) == ("8859/1", "8859/1"), name
    assert rec.of("ack_out")[0].message == m.data
    assert b"".join(t.data for t in rec.of("transfer")) == m.data


def test_no_decoding_by_default_but_encoding_reported(server: mllp.Server) -> None:
    rec = Recorder(server)
    server.start_listening()
    msg = hl7_message("CS0002", msh18="8859/1", pid_name=b"REN\xe9")
    with Client(server) as c:
        assert c.send(msg) == ACK
    (m,) = rec.of("message")
    assert m.data == msg and m.decoded is False
    assert m.charset == "8859/1" and m.encoding == "8859/1"


def test_default_charset_and_aliases(server: mllp.Server) -> None:
    server.config("DecodeToUTF8=True")
    server.config("DefaultCharset=latin1")  # an alias of 8859/1
    rec = Recorder(server)
    server.start_listening()
    msg = hl7_message("CS0003", pid_name=b"M\xfcLLER")  # no MSH-18
    utf8 = hl7_message("CS0004", msh18="UNICODE UTF-8", pid_name="MÜLLER".encode("utf-8"))
    with Client(server) as c:
        assert c.send(msg) == ACK
        assert c.send(utf8) == ACK
    first, second = rec.of("message")
    assert first.charset == "" and first.encoding == "8859/1" and first.decoded is True
    assert b"M\xc3\xbcLLER" in first.data
    assert second.charset == "UNICODE UTF-8" and second.encoding == "UNICODE UTF-8"
    assert second.data == utf8


def test_unconvertible_message_refused_with_2031(server: mllp.Server) -> None:
    server.config("DecodeToUTF8=True")
    server.config("AckMode=HL7")
    rec = Recorder(server)
    server.start_listening()
    # A lone 0xE9 is not UTF-8.
    msg = hl7_message("CS0005", msh18="UNICODE UTF-8", pid_name=b"REN\xe9")
    with Client(server) as c:
        reply = unframe(c.send(msg))
    assert field(reply, "MSA", 1) == "AE" and field(reply, "MSA", 2) == "CS0005"
    wait_for(lambda: rec.of("error"), what="Error 2031")
    assert [e.error_code for e in rec.of("error")] == [mllp.ERR_CHARSET]
    assert rec.of("message") == []


def test_unknown_msh18_passed_through(server: mllp.Server) -> None:
    server.config("DecodeToUTF8=True")
    rec = Recorder(server)
    server.start_listening()
    msg = hl7_message("CS0006", msh18="NO-SUCH-SET", pid_name=b"REN\xe9")
    with Client(server) as c:
        assert c.send(msg) == ACK
    (m,) = rec.of("message")
    assert m.data == msg and m.decoded is False and m.charset == "NO-SUCH-SET"


# ---------------------------------------------------------------------------------------------
# (d) replies chosen by the host
# ---------------------------------------------------------------------------------------------


def test_acknowledge_with_from_deferred_ack_out(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    server.config("DuplicateWindow=10")
    pending: List[mllp.AckOutEvent] = []

    def defer(e: mllp.AckOutEvent) -> None:
        e.defer = True
        pending.append(e)

    server.on_ack_out = defer
    dups: List[mllp.DuplicateEvent] = []
    server.on_duplicate = dups.append
    server.start_listening()
    msg = hl7_message("DEF001")
    custom = mllp.build_ack(msg, mllp.ACK_AA, "stored in the archive")
    with Client(server) as c:
        c.send_raw(frame(msg))
        e = wait_for(lambda: pending, what="AckOut")[0]
        assert c.nothing_more(0.2)  # undecided: nothing sent
        # From another thread, as after a commit.
        t = threading.Thread(
            target=server.acknowledge_with, args=(e.connection_id, e.message_seq, custom)
        )
        t.start()
        t.join(SOCK_TIMEOUT)
        assert c.recv_frame() == frame(custom)  # exactly those bytes
        # A positive reply given this way is remembered by the DuplicateWindow.
        assert c.send(msg) == frame(custom)
    wait_for(lambda: dups, what="Duplicate")
    assert dups[0].reply == custom and len(pending) == 1


def test_ack_out_reply_sent_instead(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    seen: List[mllp.AckOutEvent] = []
    replies = {}

    def reply(e: mllp.AckOutEvent) -> None:
        assert e.reply is None  # the library builds it unless told otherwise
        seen.append(e)
        e.reply = replies[field(e.message, "MSH", 10)]

    server.on_ack_out = reply
    server.start_listening()
    m1, m2 = hl7_message("RPL001"), hl7_message("RPL002")
    replies["RPL001"] = b"MSH|^~\\&|RECVAPP|RECVFAC|SENDAPP|SENDFAC|20260101120001||ACK|X1|P|2.5.1\rMSA|AE|RPL001|mine\r"
    replies["RPL002"] = "MSH|^~\\&|R|F|S|F|20260101120002||ACK|X2|P|2.5.1\rMSA|AA|RPL002|é\r"  # str
    with Client(server) as c:
        assert c.send(m1) == frame(replies["RPL001"])
        assert c.send(m2) == frame(replies["RPL002"].encode("utf-8"))
    assert len(seen) == 2


def test_ack_out_reply_mllp_mode(server: mllp.Server) -> None:
    server.on_ack_out = lambda e: setattr(e, "reply", b"\x15")
    server.start_listening()
    with Client(server) as c:
        assert c.send(hl7_message("RPL003")) == NAK


# ---------------------------------------------------------------------------------------------
# (e) application acknowledgements
# ---------------------------------------------------------------------------------------------


def test_send_app_ack(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    got: List[mllp.MessageEvent] = []
    server.on_message = got.append
    server.start_listening()
    al = hl7_message("APP001", msh16="AL")
    with Client(server) as c:
        accept = unframe(c.send(al))
        # Enhanced mode (MSH-16 valued): the reply is an accept ACK.
        assert field(accept, "MSA", 1) == "CA" and field(accept, "MSA", 2) == "APP001"
        (m,) = got
        assert server.send_app_ack(m.connection_id, m.data, mllp.ACK_AA) is True
        app = unframe(c.recv_frame())
        assert field(app, "MSH", 9).startswith("ACK")
        assert field(app, "MSA", 1) == "AA" and field(app, "MSA", 2) == "APP001"
        assert b"\rMSA|AA|APP001" in app
        assert field(app, "MSH", 10) != field(accept, "MSH", 10)
        # With a text, through the Connection.
        conn = server.connection(m.connection_id)
        assert conn.send_app_ack(m.data, mllp.ACK_AE, "could not file it") is True
        app2 = unframe(c.recv_frame())
        assert field(app2, "MSA", 1) == "AE" and field(app2, "MSA", 3) == "could not file it"

        # MSH-16 NE: never; ER: only when not AA; SU: only when AA.
        for control_id, msh16, code, expected in (
            ("APP002", "NE", mllp.ACK_AA, False),
            ("APP003", "ER", mllp.ACK_AA, False),
            ("APP004", "ER", mllp.ACK_AR, True),
            ("APP005", "SU", mllp.ACK_AE, False),
            ("APP006", "SU", mllp.ACK_AA, True),
        ):
            msg = hl7_message(control_id, msh16=msh16)
            c.send(msg)
            assert server.send_app_ack(m.connection_id, msg, code) is expected, control_id
            if expected:
                app = unframe(c.recv_frame())
                assert field(app, "MSA", 2) == control_id
            else:
                assert c.nothing_more(0.2), control_id
        # No MSH-15/16 at all: original mode, no application ACK.
        plain = hl7_message("APP007")
        assert field(unframe(c.send(plain)), "MSA", 1) == "AA"
        assert server.send_app_ack(m.connection_id, plain, mllp.ACK_AA) is False
        with pytest.raises(mllp.MLLPError) as ei:
            server.send_app_ack(999999, al, mllp.ACK_AA)
        assert ei.value.code == mllp.ERR_NO_SUCH_CONNECTION


def test_enhanced_mode_accept_ack_never(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    got: List[mllp.MessageEvent] = []
    server.on_message = got.append
    server.start_listening()
    with Client(server) as c:
        c.send_raw(frame(hl7_message("ENH001", msh15="NE", msh16="AL")))
        wait_for(lambda: got, what="Message")
        assert c.nothing_more(0.3)  # MSH-15 NE: no accept ACK
        assert server.send_app_ack(got[0].connection_id, got[0].data, mllp.ACK_AA)
        assert field(unframe(c.recv_frame()), "MSA", 1) == "AA"


# ---------------------------------------------------------------------------------------------
# (f) build_ack
# ---------------------------------------------------------------------------------------------


def test_build_ack() -> None:
    msg = hl7_message("BLD001")
    a1 = mllp.build_ack(msg, mllp.ACK_AA)
    a2 = mllp.build_ack(msg, mllp.ACK_AA)
    assert isinstance(a1, bytes) and a1.startswith(b"MSH|^~\\&|")
    assert not a1.startswith(SB) and EB not in a1
    for a in (a1, a2):
        assert field(a, "MSA", 1) == "AA" and field(a, "MSA", 2) == "BLD001"
        assert field(a, "MSH", 9).startswith("ACK")
        assert field(a, "MSH", 7)  # now
        assert field(a, "MSH", 10)
    assert field(a1, "MSH", 10) != field(a2, "MSH", 10)
    ids = {field(mllp.build_ack(msg, mllp.ACK_AA), "MSH", 10) for _ in range(50)}
    assert len(ids) == 50
    ce = mllp.build_ack(msg, mllp.ACK_CE, "bad PID")
    assert field(ce, "MSA", 1) == "CE" and field(ce, "MSA", 3) == "bad PID"
    codes = [field(mllp.build_ack(msg, c), "MSA", 1) for c in range(6)]
    assert codes == ["AA", "AE", "AR", "CA", "CE", "CR"]
    # str is UTF-8 encoded; a large message needs no second try from the caller.
    big = hl7_message("BLD002") + b"NTE|1||" + b"x" * 100000 + CR
    assert field(mllp.build_ack(big.decode("ascii"), mllp.ACK_AR), "MSA", 2) == "BLD002"
    with pytest.raises(mllp.MLLPError) as ei:
        mllp.build_ack(msg, 42)
    assert ei.value.code == mllp.ERR_INVALID_VALUE


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


def test_raising_message_handler_naks(server: mllp.Server) -> None:
    errors: List[BaseException] = []
    server.handler_error_hook = lambda where, exc: errors.append(exc)

    def boom(e: mllp.MessageEvent) -> None:
        raise RuntimeError("boom")

    server.on_message = boom
    server.start_listening()
    with Client(server) as c:
        assert c.send(hl7_message("RAISE1")) == NAK
        assert len(errors) == 1
        errors.clear()
        server.on_message = None  # the trampoline is unregistered again
        assert c.send(hl7_message("RAISE2")) == ACK
    assert server.on_message.handler is None


def test_message_event_in_do_events_mode() -> None:
    with mllp.Server(local_host="127.0.0.1", local_port=0) as s:
        s.config("EventMode=DoEvents")
        got: List[Tuple[int, mllp.MessageEvent]] = []
        s.on_message = lambda e: got.append((threading.get_ident(), e))
        s.on_ack_out = lambda e: setattr(e, "reply", b"\x15")
        s.start_listening()
        with Client(s) as c:
            c.send_raw(frame(hl7_message("DOEV01")))
            deadline = time.monotonic() + 5
            # Events (and so the reply) happen only inside do_events on this thread.
            while time.monotonic() < deadline and not select.select([c.c.socket], [], [], 0)[0]:
                s.do_events(20)
            assert c.recv_frame() == NAK
        assert len(got) == 1 and got[0][0] == threading.get_ident()
        assert got[0][1].data == hl7_message("DOEV01")


# ---------------------------------------------------------------------------------------------
# The finer points of the contract
# ---------------------------------------------------------------------------------------------


def test_duplicate_in_progress_on_another_connection_refused(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    server.config("DuplicateWindow=10")
    pending: List[mllp.AckOutEvent] = []

    def defer(e: mllp.AckOutEvent) -> None:
        e.defer = True
        pending.append(e)

    server.on_ack_out = defer
    rec_err: List[mllp.ErrorEvent] = []
    server.on_error = rec_err.append
    server.start_listening()
    msg = hl7_message("INP001")
    with Client(server) as a, Client(server) as b:
        a.send_raw(frame(msg))
        e = wait_for(lambda: pending, what="AckOut")[0]
        refused = unframe(b.send(msg))  # the original is undecided on connection a
        assert field(refused, "MSA", 1) == "AR" and field(refused, "MSA", 2) == "INP001"
        wait_for(lambda: rec_err, what="Error 2032")
        assert [x.error_code for x in rec_err] == [mllp.ERR_DUPLICATE_IN_PROGRESS]
        server.acknowledge(e.connection_id, e.message_seq)
        original = a.recv_frame()
        assert field(unframe(original), "MSA", 1) == "AA"
        # Now decided: a resend on b is a duplicate.
        assert b.send(msg) == original
    assert len(pending) == 1 and server.duplicate_count == 1


def test_duplicate_in_progress_on_the_same_connection_waits(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    server.config("DuplicateWindow=10")
    pending: List[mllp.AckOutEvent] = []

    def defer(e: mllp.AckOutEvent) -> None:
        e.defer = True
        pending.append(e)

    server.on_ack_out = defer
    dups: List[mllp.DuplicateEvent] = []
    server.on_duplicate = dups.append
    server.start_listening()
    msg = hl7_message("INP002")
    with Client(server) as c:
        c.send_raw(frame(msg) + frame(msg))
        e = wait_for(lambda: pending, what="AckOut")[0]
        assert c.nothing_more(0.2)
        server.acknowledge(e.connection_id, e.message_seq)
        first = c.recv_frame()
        assert c.recv_frame() == first  # the resend got the original's answer
    wait_for(lambda: dups, what="Duplicate")
    assert len(pending) == 1 and server.duplicate_count == 1


def test_duplicate_log_lines(server: mllp.Server) -> None:
    server.config("DuplicateWindow=10")
    logs: List[mllp.LogEvent] = []
    server.on_log = logs.append
    server.start_listening()
    msg = hl7_message("LOG001")
    with Client(server) as c:
        assert c.send(msg) == ACK
        assert c.send(msg) == ACK
        assert c.send(hl7_message("LOG001", pid_name=b"OTHER")) == ACK

    def reused() -> bool:  # the library's wording: "control id 'X' reused by a different message"
        return any("reused" in x.message and "control id" in x.message for x in logs)

    wait_for(reused, what="the reused-control-id Log line")
    info = [x.message for x in logs if x.log_level == 1]
    assert any("LOG001" in m and "duplicate" in m for m in info), info
    assert any("LOG001" in m and "reused" in m for m in info), info


def test_original_still_a_duplicate_after_control_id_reuse(server: mllp.Server) -> None:
    server.config("DuplicateWindow=10")
    got: List[mllp.MessageEvent] = []
    server.on_message = got.append
    server.start_listening()
    a = hl7_message("REUSE1")
    b = hl7_message("REUSE1", pid_name=b"OTHER")
    with Client(server) as c:
        for m in (a, b, a):
            assert c.send(m) == ACK
    assert [m.data for m in got] == [a, b] and server.duplicate_count == 1


def test_not_remembered_rejected_evicted_or_without_control_id(server: mllp.Server) -> None:
    server.config("DuplicateWindow=2")
    accept = {"yes": True}
    server.on_ack_out = lambda e: setattr(e, "accept", accept["yes"])
    got: List[mllp.MessageEvent] = []
    server.on_message = got.append
    server.start_listening()
    with Client(server) as c:
        # Rejected: not remembered, the resend is delivered again.
        accept["yes"] = False
        rej = hl7_message("NRM001")
        assert c.send(rej) == NAK
        accept["yes"] = True
        assert c.send(rej) == ACK
        # Empty MSH-10 and no MSH: never duplicates.
        empty = hl7_message("")
        assert c.send(empty) == ACK and c.send(empty) == ACK
        assert c.send(b"not hl7 at all\r") == ACK and c.send(b"not hl7 at all\r") == ACK
        # Window of 2: the first is forgotten after two more.
        for cid in ("NRM002", "NRM003", "NRM004"):
            assert c.send(hl7_message(cid)) == ACK
        assert c.send(hl7_message("NRM002")) == ACK
    assert len(got) == 2 + 4 + 4 and server.duplicate_count == 0


def test_batch_one_rejected_naks_the_frame(server: mllp.Server) -> None:
    server.config("ProcessBatch=True")
    server.on_ack_out = lambda e: setattr(e, "accept", b"B00001" not in e.message)
    got: List[mllp.MessageEvent] = []
    server.on_message = got.append
    server.start_listening()
    with Client(server) as c:
        assert c.send(BATCH) == NAK
        assert c.nothing_more()
    assert len(got) == 3


def test_batch_without_fhs_hl7_mode(server: mllp.Server) -> None:
    server.config("ProcessBatch=True")
    server.config("AckMode=HL7")
    server.on_ack_out = lambda e: setattr(e, "accept", b"B00001" not in e.message)
    server.start_listening()
    start = BATCH.index(b"BHS|")
    end = BATCH.index(b"FTS|")
    bhs_only = BATCH[start:end]
    with Client(server) as c:
        reply = unframe(c.send(bhs_only))
    names = [s[0] for s in segments(reply)]
    assert names[0] == b"BHS" and names[-1] == b"BTS" and b"FHS" not in names
    msas = [s[1] for s in segments(reply) if s[0] == b"MSA"]
    assert msas == [b"AA", b"AE", b"AA"]


def test_enhanced_mode_accept_ack_rules(server: mllp.Server) -> None:
    server.config("AckMode=HL7")
    decision = {"accept": True, "code": mllp.REJECT_AE}

    def decide(e: mllp.AckOutEvent) -> None:
        e.accept = decision["accept"]
        e.reject_code = decision["code"]

    server.on_ack_out = decide
    server.start_listening()
    with Client(server) as c:
        for msh15, accept, code, expected in (
            ("AL", True, mllp.REJECT_AE, "CA"),
            ("AL", False, mllp.REJECT_AE, "CE"),
            ("AL", False, mllp.REJECT_AR, "CR"),
            ("ER", True, mllp.REJECT_AE, None),
            ("ER", False, mllp.REJECT_AR, "CR"),
            ("SU", True, mllp.REJECT_AE, "CA"),
            ("SU", False, mllp.REJECT_AE, None),
            ("NE", False, mllp.REJECT_AE, None),
        ):
            decision.update(accept=accept, code=code)
            cid = f"ENH{msh15}{int(accept)}{code}"
            c.send_raw(frame(hl7_message(cid, msh15=msh15)))
            if expected is None:
                assert c.nothing_more(0.2), cid
            else:
                r = unframe(c.recv_frame())
                assert (field(r, "MSA", 1), field(r, "MSA", 2)) == (expected, cid)


def test_ack_carries_msh18_and_app_ack_errors(server: mllp.Server) -> None:
    msg = hl7_message("CS0100", msh18="8859/1")
    assert field(mllp.build_ack(msg, mllp.ACK_AA), "MSH", 18) == "8859/1"
    server.start_listening()
    with Client(server) as c:
        assert c.send(hl7_message("X1")) == ACK
        cid = wait_for(lambda: list(server.connections), what="connection")[0]
        with pytest.raises(mllp.MLLPError) as ei:
            server.send_app_ack(cid, b"not hl7", mllp.ACK_AA)
        assert ei.value.code == mllp.ERR_INVALID_VALUE
        with pytest.raises(mllp.MLLPError) as ei:
            server.send_app_ack(cid, hl7_message("X2", msh16="AL"), mllp.ACK_CA)
        assert ei.value.code == mllp.ERR_INVALID_VALUE
