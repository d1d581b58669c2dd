"""End-to-end tests of mllp-listen's delivery options: --dedupe (also across kill -9 and a
restart on the same --out-dir), --batch, and --ack hl7's enhanced mode (MSH-15/16: accept
acknowledgement from the library, application acknowledgement from mllp-listen).

Run:  python3 -m pytest -q tests/listen/test_delivery.py
      (MLLP_LISTEN / MLLP_SAMPLES as for test_listen.py)

Clients: python-hl7's hl7.client.MLLPClient (written by nobody here) where it fits, the raw
client of test_listen.py where the test needs more than one reply frame or exact framing.
ACKs of enhanced mode and of batches are parsed with hl7apy (pip install hl7apy; those
assertions are skipped when it is missing). Every wait is bounded; 127.0.0.1 only.
"""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from test_listen import (ACK, CR, EB, LISTEN, NAK, SB, Client, hl7_ack_fields,  # noqa: F401
                         listen, msh, run_fail, sample)

IO_TIMEOUT = 10
INDEX = ".mllp-dedupe"

pytestmark = pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built")


def _msg(cid, body=b"PID|1||P1^^^H^MR||DOE^JOHN\r", msh15=b"", msh16=b"", app=b"SND",
         fac=b"FAC"):
    """An ADT^A01 with MSH-3 `app`, MSH-4 `fac`, MSH-10 `cid` and, when given, MSH-15/16."""
    m = b"MSH|^~\\&|%s|%s|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|%s|P|2.5" % (app, fac, cid)
    if msh15 or msh16:
        m += b"|||" + msh15 + b"|" + msh16
    return m + b"\r" + body


def visible(out_dir):
    """{name: bytes} of the stored messages (the index and temporary files are hidden)."""
    names = sorted(n for n in os.listdir(out_dir) if not n.startswith("."))
    for n in names:
        assert re.fullmatch(r"\d+-\d+-\d+\.hl7", n), n
    return {n: (Path(out_dir) / n).read_bytes() for n in names}


def no_temporary_files(out_dir):
    hidden = sorted(n for n in os.listdir(out_dir) if n.startswith("."))
    assert hidden == [INDEX], hidden


class Hl7Client:
    """python-hl7's MLLPClient with a bounded wait; replies are whole frames (<SB>..<EB><CR>)."""

    def __init__(self, port):
        from hl7.client import MLLPClient
        self.c = MLLPClient("127.0.0.1", port)
        self.c.socket.settimeout(IO_TIMEOUT)

    def send(self, message):
        data = self.c.send_message(message)
        # MLLPClient returns what one recv() gave; a reply may come in more than one piece
        deadline = time.monotonic() + IO_TIMEOUT
        while not data.endswith(EB + CR) and time.monotonic() < deadline:
            more = self.c.socket.recv(65536)
            if not more:
                break
            data += more
        assert data.startswith(SB) and data.endswith(EB + CR), data
        return data

    def close(self):
        self.c.close()


def hl7apy_parser():
    return pytest.importorskip("hl7apy.parser")


def parse_ack(frame):
    """An HL7 ACK message (unframed) parsed with hl7apy: (MSA-1, MSA-2, MSH-10)."""
    p = hl7apy_parser()
    m = p.parse_message(frame.replace(b"\n", b"\r").decode("utf-8"), find_groups=False)
    return m.msa.msa_1.value, m.msa.msa_2.value, m.msh.msh_10.value


def parse_batch_ack(frame):
    """A batch acknowledgement (FHS? BHS, ACK messages, BTS, FTS?) parsed with hl7apy (which
    has no batch parser: header and trailer segments, then each message on its own).
    Returns (header segment names, [(MSA-1, MSA-2)], BTS-1)."""
    p = hl7apy_parser()
    segs = [s for s in frame.decode("utf-8").split("\r") if s]
    heads, acks, bts1, cur = [], [], None, []

    def flush():
        if cur:
            m = p.parse_message("\r".join(cur) + "\r", find_groups=False)
            acks.append((m.msa.msa_1.value, m.msa.msa_2.value))
            cur.clear()

    for s in segs:
        name = s[:3]
        if name in ("FHS", "BHS"):
            flush()
            heads.append(p.parse_segment(s).name)
        elif name in ("BTS", "FTS"):
            flush()
            seg = p.parse_segment(s)
            if name == "BTS":
                bts1 = seg.bts_1.value
        elif name == "MSH":
            flush()
            cur.append(s)
        else:
            cur.append(s)
    flush()
    return heads, acks, bts1


def restart(listen, lst, *args):
    """kill -9 the running listener (no shutdown at all), then start a new one."""
    lst.proc.send_signal(signal.SIGKILL)
    assert lst.wait(5) == -signal.SIGKILL
    return listen(*args)


# ---------------------------------------------------------------------------------------------
# --dedupe


@pytest.mark.parametrize("ack", ["mllp", "hl7"])
def test_dedupe_resent_gets_same_ack_and_no_second_file(listen, tmp_path, ack):
    out_dir = tmp_path / "out"
    lst = listen("--dedupe", "--ack", ack, "--out-dir", out_dir)
    m = _msg(b"DUP1")
    c = Hl7Client(lst.port)
    first = c.send(m)
    if ack == "mllp":
        assert first == SB + ACK + EB + CR
    else:
        assert hl7_ack_fields(first[1:-2]) == ("AA", "DUP1")
    lst.message_lines(1)
    again = c.send(m)  # same connection
    c.close()
    c2 = Hl7Client(lst.port)
    third = c2.send(m)  # another connection
    c2.close()
    assert again == first and third == first  # byte for byte, MSH-7 and MSH-10 included
    lst.no_more_lines()
    assert list(visible(out_dir).values()) == [m]
    assert lst.stderr().count("duplicate") >= 2
    # other messages still flow
    assert Client(lst.port).roundtrip(_msg(b"DUP2"))[:1] in (ACK, b"M")
    assert len(lst.message_lines(1)) == 1
    assert len(visible(out_dir)) == 2
    assert lst.stop()[0] == 0
    no_temporary_files(out_dir)


@pytest.mark.parametrize("ack", ["mllp", "hl7"])
def test_dedupe_survives_sigkill_and_restart(listen, tmp_path, ack):
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--ack", ack, "--out-dir", out_dir)
    lst = listen(*args)
    msgs = [_msg(b"K%d" % i) for i in range(5)]
    c = Hl7Client(lst.port)
    acks = [c.send(m) for m in msgs]
    c.close()
    assert len(lst.message_lines(len(msgs))) == len(msgs)
    files = visible(out_dir)
    assert sorted(files.values()) == sorted(msgs)

    for run in range(2):  # two restarts: what the first restart answered is still known
        lst = restart(listen, lst, *args)
        c = Hl7Client(lst.port)
        for m, a in zip(msgs, acks):
            assert c.send(m) == a, (run, msh(m, 10))  # the ORIGINAL bytes
        c.close()
        lst.no_more_lines()
        assert visible(out_dir) == files, "a resent message was stored again"

    # a new message after the restart is stored, and later recognised too
    new = _msg(b"K-new")
    c = Hl7Client(lst.port)
    a_new = c.send(new)
    assert lst.message_lines(1)[0].split()[3] == "K-new"
    lst = restart(listen, lst, *args)
    c = Hl7Client(lst.port)
    assert c.send(new) == a_new
    c.close()
    lst.no_more_lines()
    assert len(visible(out_dir)) == len(msgs) + 1
    assert lst.stop()[0] == 0


def test_dedupe_reused_control_id_is_stored_again(listen, tmp_path):
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--ack", "hl7", "--out-dir", out_dir)
    lst = listen(*args)
    a = _msg(b"SAME", b"PID|1||A^^^H^MR||FIRST^ONE\r")
    b = _msg(b"SAME", b"PID|1||B^^^H^MR||SECOND^TWO\r")
    c = Hl7Client(lst.port)
    ack_a = c.send(a)
    ack_b = c.send(b)
    assert hl7_ack_fields(ack_a[1:-2]) == ("AA", "SAME") == hl7_ack_fields(ack_b[1:-2])
    assert ack_a != ack_b  # each its own ACK (own MSH-10)
    lines = lst.message_lines(2)
    assert [l.split()[3] for l in lines] == ["SAME", "SAME"]
    assert sorted(visible(out_dir).values()) == sorted([a, b])
    # the same bytes with another sender (MSH-3) or facility (MSH-4) are not a duplicate
    other = [_msg(b"SAME", b"PID|1||A^^^H^MR||FIRST^ONE\r", app=b"OTHER"),
             _msg(b"SAME", b"PID|1||A^^^H^MR||FIRST^ONE\r", fac=b"OTHERFAC")]
    for m in other:
        assert hl7_ack_fields(c.send(m)[1:-2])[0] == "AA"
    assert len(lst.message_lines(2)) == 2
    c.close()
    # after a restart both versions are recognised, each with its own original ACK
    lst = restart(listen, lst, *args)
    c = Hl7Client(lst.port)
    assert c.send(b) == ack_b
    assert c.send(a) == ack_a
    c.close()
    lst.no_more_lines()
    assert len(visible(out_dir)) == 4
    assert lst.stop()[0] == 0


def test_dedupe_messages_without_control_id_are_never_duplicates(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--dedupe", "--out-dir", out_dir)
    c = Client(lst.port)
    for m in (_msg(b""), _msg(b""), b"not hl7 at all", b"not hl7 at all"):
        assert c.roundtrip(m) == ACK
    assert len(lst.message_lines(4)) == 4
    assert len(visible(out_dir)) == 4


def test_dedupe_record_without_its_file_stores_again(listen, tmp_path):
    """A record whose file is gone (what a crash between writing the record and naming the
    file leaves) is no hit: the resend is stored, once, and acknowledged anew."""
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--ack", "hl7", "--out-dir", out_dir)
    lst = listen(*args)
    m = _msg(b"LOST1")
    c = Hl7Client(lst.port)
    first = c.send(m)
    c.close()
    lst.message_lines(1)
    (name,) = visible(out_dir)
    lst = restart(listen, lst, *args)
    os.unlink(out_dir / name)
    c = Hl7Client(lst.port)
    second = c.send(m)
    assert hl7_ack_fields(second[1:-2]) == ("AA", "LOST1") and second != first
    assert c.send(m) == second  # and now that one is the original
    c.close()
    assert lst.message_lines(1)[0].split()[3] == "LOST1"
    lst.no_more_lines()
    assert list(visible(out_dir).values()) == [m]
    lst = restart(listen, lst, *args)
    c = Hl7Client(lst.port)
    assert c.send(m) == second
    c.close()
    assert list(visible(out_dir).values()) == [m]


def test_dedupe_torn_index_tail_is_cut_off(listen, tmp_path):
    """A crash in the middle of an append leaves a partial record: start-up cuts it off and
    the records before it still count."""
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--out-dir", out_dir)
    lst = listen(*args)
    m1, m2 = _msg(b"T1"), _msg(b"T2")
    c = Client(lst.port)
    assert c.roundtrip(m1) == ACK
    lst.message_lines(1)
    lst.proc.send_signal(signal.SIGKILL)
    lst.wait(5)
    index = out_dir / INDEX
    good = index.read_bytes()
    with open(index, "ab") as f:
        f.write(b"4 3 2 18 99 1 0000")  # cut short
    lst = listen(*args)
    assert index.read_bytes() == good
    c = Client(lst.port)
    assert c.roundtrip(m1) == ACK
    lst.no_more_lines()
    assert c.roundtrip(m2) == ACK
    lst.message_lines(1)
    assert sorted(visible(out_dir).values()) == [m1, m2]
    assert lst.stop()[0] == 0
    lst = listen(*args)
    c = Client(lst.port)
    assert c.roundtrip(m2) == ACK and c.roundtrip(m1) == ACK
    lst.no_more_lines()
    assert len(visible(out_dir)) == 2


def test_dedupe_index_is_not_a_stored_file_and_numbers_continue(listen, tmp_path):
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--out-dir", out_dir, "--quiet")
    lst = listen(*args)
    c = Client(lst.port)
    for i in range(3):
        assert c.roundtrip(_msg(b"N%d" % i)) == ACK
    c.close()
    lst = restart(listen, lst, *args)
    c = Client(lst.port)
    for i in range(3, 6):
        assert c.roundtrip(_msg(b"N%d" % i)) == ACK
    c.close()
    assert lst.stop()[0] == 0
    files = visible(out_dir)
    assert [msh(v, 10) for v in files.values()] == [f"N{i}" for i in range(6)]  # name order
    assert (out_dir / INDEX).is_file()


def test_dedupe_needs_acknowledgements_exit_2(tmp_path):
    for args in (["--ack", "none"], ["--version", "1"]):
        rc, out, err = run_fail(tmp_path, "--port", "0", "--dedupe", *args)
        assert rc == 2, (out, err)
        assert "--dedupe" in err and len(err.strip().splitlines()) == 1


def test_dedupe_without_out_dir_is_the_librarys_window(listen, tmp_path):
    lst = listen("--dedupe", "--ack", "hl7")
    c = Hl7Client(lst.port)
    m = _msg(b"MEM1")
    first = c.send(m)
    assert c.send(m) == first
    c.close()
    assert len(lst.message_lines(1)) == 1
    lst.no_more_lines()


@pytest.mark.parametrize("ack", ["mllp", "hl7"])
def test_dedupe_many_after_restart(listen, tmp_path, ack):
    """Several connections resend everything after a kill -9: every reply is the original,
    nothing is stored twice."""
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--ack", ack, "--out-dir", out_dir, "--quiet")
    lst = listen(*args)
    clients = [Client(lst.port) for _ in range(4)]
    sent = {i: [_msg(b"M%dN%d" % (i, k)) for k in range(30)] for i in range(4)}
    acks = {}
    for i, c in enumerate(clients):
        c.send_raw(b"".join(SB + m + EB + CR for m in sent[i]))
    for i, c in enumerate(clients):
        acks[i] = [c.recv_frame() for _ in sent[i]]
    files = visible(out_dir)
    assert len(files) == 120
    lst = restart(listen, lst, *args)
    clients = [Client(lst.port) for _ in range(4)]
    for i, c in enumerate(clients):
        c.send_raw(b"".join(SB + m + EB + CR for m in sent[i]))
    for i, c in enumerate(clients):
        assert [c.recv_frame() for _ in sent[i]] == acks[i]
    assert visible(out_dir) == files
    assert lst.stop()[0] == 0


# ---------------------------------------------------------------------------------------------
# --batch


def batch_messages():
    """The messages of tests/data/batch_adt.hl7 as ProcessBatch delivers them: from each MSH
    to the next MSH or batch trailer, segment terminators kept."""
    segs = [s + b"\r" for s in sample("batch_adt.hl7").split(b"\r") if s]
    out = []
    for s in segs:
        if s.startswith(b"MSH"):
            out.append(s)
        elif s[:3] in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        else:
            out[-1] += s
    return out


def test_batch_mllp_one_file_and_line_per_message(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--batch", "--out-dir", out_dir)
    c = Client(lst.port)
    assert c.roundtrip(sample("batch_adt.hl7")) == ACK  # one reply for the frame
    c.expect_silence(0.5)
    expected = batch_messages()
    assert len(expected) == 3
    lines = lst.message_lines(3)
    conn = lines[0].split()[0]
    assert lines == [f"{conn} {len(m)} ADT^A04^ADT_A01 B0000{i}" for i, m in enumerate(expected)]
    lst.no_more_lines()
    files = visible(out_dir)
    assert list(files.values()) == expected  # name order = batch order
    # name's seq part: each message its own seq
    assert len({n.split("-")[2] for n in files}) == 3
    # a plain message on the same connection still works
    assert c.roundtrip(sample("adt_a01.hl7")) == ACK
    assert len(lst.message_lines(1)) == 1


def test_batch_hl7_batch_ack(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--batch", "--ack", "hl7", "--out-dir", out_dir)
    c = Hl7Client(lst.port)
    reply = c.send(sample("batch_adt.hl7"))[1:-2]
    c.close()
    lines = lst.message_lines(3)
    assert [l.split()[3] for l in lines] == ["B00000", "B00001", "B00002"]
    assert list(visible(out_dir).values()) == batch_messages()
    heads, acks, bts1 = parse_batch_ack(reply)
    assert "BHS" in heads, reply
    assert acks == [("AA", "B00000"), ("AA", "B00001"), ("AA", "B00002")], reply
    assert bts1 == "3"


def test_batch_without_the_option_is_one_message(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir)
    c = Client(lst.port)
    assert c.roundtrip(sample("batch_adt.hl7")) == ACK
    assert len(lst.message_lines(1)) == 1
    assert list(visible(out_dir).values()) == [sample("batch_adt.hl7")]


def test_batch_malformed_is_refused_whole(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--batch", "--out-dir", out_dir)
    c = Client(lst.port)
    wrong_count = sample("batch_adt.hl7").replace(b"BTS|3", b"BTS|2")
    assert c.roundtrip(wrong_count) == NAK
    lst.no_more_lines()
    assert visible(out_dir) == {}
    assert "2030" in lst.stderr()


def test_batch_with_dedupe_after_restart(listen, tmp_path):
    """Each message of a batch is recorded on its own: the whole batch resent after a kill -9
    is acknowledged and nothing is stored again."""
    out_dir = tmp_path / "out"
    args = ("--batch", "--dedupe", "--out-dir", out_dir)
    lst = listen(*args)
    c = Client(lst.port)
    assert c.roundtrip(sample("batch_adt.hl7")) == ACK
    lst.message_lines(3)
    files = visible(out_dir)
    assert c.roundtrip(sample("batch_adt.hl7")) == ACK  # the library's window
    lst.no_more_lines()
    lst = restart(listen, lst, *args)
    c = Client(lst.port)
    assert c.roundtrip(sample("batch_adt.hl7")) == ACK  # the index
    lst.no_more_lines()
    assert visible(out_dir) == files


# ---------------------------------------------------------------------------------------------
# --ack hl7, enhanced mode (MSH-15 accept / MSH-16 application acknowledgement)


@pytest.mark.parametrize("out", [True, False])
def test_enhanced_al_al_accept_then_application_ack(listen, tmp_path, out):
    out_dir = tmp_path / "out"
    lst = listen("--ack", "hl7", *(["--out-dir", out_dir] if out else []))
    c = Client(lst.port)
    m = _msg(b"ENH1", msh15=b"AL", msh16=b"AL")
    c.send(m)
    accept = c.recv_frame()
    app_ack = c.recv_frame()
    assert hl7_ack_fields(accept) == ("CA", "ENH1"), accept
    assert hl7_ack_fields(app_ack) == ("AA", "ENH1"), app_ack
    code, ref, cid1 = parse_ack(accept)
    assert (code, ref) == ("CA", "ENH1")
    code, ref, cid2 = parse_ack(app_ack)
    assert (code, ref) == ("AA", "ENH1")
    assert cid1 and cid2 and cid1 != cid2
    c.expect_silence(0.5)
    assert lst.message_lines(1)[0].split()[3] == "ENH1"
    if out:
        assert list(visible(out_dir).values()) == [m]


@pytest.mark.parametrize("msh15,msh16,expect", [
    (b"NE", b"AL", ["AA"]),        # no accept ack, the application ack only
    (b"AL", b"NE", ["CA"]),        # accept ack only
    (b"AL", b"ER", ["CA"]),        # application ack only on error
    (b"ER", b"SU", ["AA"]),        # accept ack only on error; application ack on success
    (b"", b"AL", ["CA", "AA"]),    # empty MSH-15 with MSH-16 valued: accept ack always
    (b"SU", b"", ["CA"]),          # enhanced by MSH-15 alone
])
def test_enhanced_msh15_msh16_combinations(listen, tmp_path, msh15, msh16, expect):
    out_dir = tmp_path / "out"
    lst = listen("--ack", "hl7", "--out-dir", out_dir)
    c = Client(lst.port)
    m = _msg(b"E2", msh15=msh15, msh16=msh16)
    c.send(m)
    got = [hl7_ack_fields(c.recv_frame()) for _ in expect]
    assert got == [(code, "E2") for code in expect]
    c.expect_silence(0.7)
    lst.message_lines(1)
    assert list(visible(out_dir).values()) == [m]


def test_enhanced_storage_failure_ce_and_ae(listen, tmp_path):
    import shutil
    out_dir = tmp_path / "out"
    lst = listen("--ack", "hl7", "--out-dir", out_dir)
    c = Client(lst.port)
    shutil.rmtree(out_dir)
    c.send(_msg(b"E3", msh15=b"AL", msh16=b"ER"))
    accept = c.recv_frame()
    app_ack = c.recv_frame()
    assert hl7_ack_fields(accept) == ("CE", "E3")
    assert hl7_ack_fields(app_ack) == ("AE", "E3")
    assert parse_ack(app_ack)[0] == "AE"
    lst.no_more_lines()
    assert "cannot store message" in lst.stderr()


def test_original_mode_unchanged(listen, tmp_path):
    lst = listen("--ack", "hl7")
    c = Client(lst.port)
    c.send(_msg(b"O1"))
    assert hl7_ack_fields(c.recv_frame()) == ("AA", "O1")
    c.expect_silence(0.5)


def test_enhanced_dedupe_after_restart_original_accept_ack(listen, tmp_path):
    """--dedupe in enhanced mode records the accept acknowledgement (CA) it sent; a resend
    after kill -9 gets those bytes again and no second application acknowledgement."""
    out_dir = tmp_path / "out"
    args = ("--dedupe", "--ack", "hl7", "--out-dir", out_dir)
    lst = listen(*args)
    c = Client(lst.port)
    m = _msg(b"ED1", msh15=b"AL", msh16=b"AL")
    c.send(m)
    accept = c.recv_frame()
    assert parse_ack(accept)[:2] == ("CA", "ED1")
    assert hl7_ack_fields(c.recv_frame()) == ("AA", "ED1")
    assert c.roundtrip(m) == accept  # within the run: the library's window
    c.expect_silence(0.5)
    lst.message_lines(1)
    lst = restart(listen, lst, *args)
    c = Client(lst.port)
    assert c.roundtrip(m) == accept
    c.expect_silence(0.5)
    # NE for the accept ack: nothing was sent, nothing is sent again, nothing stored twice
    ne = _msg(b"ED2", msh15=b"NE", msh16=b"AL")
    c.send(ne)
    assert hl7_ack_fields(c.recv_frame()) == ("AA", "ED2")
    lst.message_lines(1)
    lst = restart(listen, lst, *args)
    c = Client(lst.port)
    c.send(ne)
    c.expect_silence(0.7)
    lst.no_more_lines()
    assert sorted(visible(out_dir).values()) == sorted([m, ne])


def test_help_documents_the_options(tmp_path):
    rc, out, _ = run_fail(tmp_path, "--help")
    assert rc == 0
    for word in ("--dedupe", "--batch", "MSH-15", "MSH-16"):
        assert word in out, word


@pytest.mark.parametrize("out", [True, False])
def test_enhanced_pipelined_each_accept_ack_before_its_application_ack(listen, tmp_path, out):
    """Many enhanced-mode messages sent before any reply is read: per message its CA, then
    its AA, in message order."""
    out_dir = tmp_path / "out"
    lst = listen("--ack", "hl7", "--quiet", *(["--out-dir", out_dir] if out else []))
    c = Client(lst.port, timeout=20)
    n = 80
    c.send_raw(b"".join(SB + _msg(b"PE%d" % i, msh15=b"AL", msh16=b"AL") + EB + CR
                        for i in range(n)))
    got = [hl7_ack_fields(c.recv_frame(timeout=20)) for _ in range(2 * n)]
    assert got == [x for i in range(n) for x in (("CA", f"PE{i}"), ("AA", f"PE{i}"))]
    c.expect_silence(0.3)
    if out:
        assert len(visible(out_dir)) == n
