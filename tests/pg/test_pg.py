"""End-to-end tests of mllp-listen --pg: a PostgreSQL table as the store, group commit across
connections, duplicates answered from the table (also by a second mllp-listen sharing it),
outages (PostgreSQL stopped, restarted, down at start-up), kill -9 under load.

Run:  python3 -m pytest -q tests/pg
      (MLLP_LISTEN as for tests/listen; needs initdb/pg_ctl/psql: tests/setup.sh installs them)

Each test run starts its own PostgreSQL (pgserver.py: initdb into a temporary directory,
127.0.0.1 on a free port; as root it runs as the system user mllptest). The table is
inspected with psql. Every wait is bounded; no assertion is about how long something took.
"""

import hashlib
import re
import signal
import subprocess
import threading
import time

import pytest

import pgserver
from test_listen import ACK, LISTEN, NAK, Client, hl7_ack_fields, run_fail

IO_TIMEOUT = 20


def _skip_reason():
    if not LISTEN.is_file():
        return f"{LISTEN} not built"
    # exits at once either way: a bad --pg-table, or "built without libpq"
    p = subprocess.run([str(LISTEN), "--pg", "host=127.0.0.1", "--pg-table", "-"], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    if "built without libpq" in p.stderr:
        return "mllp-listen built without --pg (libpq not found at build time)"
    if not pgserver.tools():
        return "PostgreSQL server programs (initdb, pg_ctl, psql) not installed"
    return None


# computed once, at collection
_REASON = _skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def msg(cid, app=b"SND", fac=b"FAC", body=b"PID|1||P1^^^H^MR||DOE^JOHN\r", charset=b""):
    m = b"MSH|^~\\&|%s|%s|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|%s|P|2.5" % (app, fac, cid)
    if charset:
        m += b"||||||" + charset  # MSH-13..17 empty, MSH-18
    return m + b"\r" + body


def rows(srv, table, cols="msh10, encode(message, 'hex'), encode(ack, 'hex')"):
    return srv.psql(f"SELECT {cols} FROM {table} ORDER BY id")


def count(srv, table, where="true"):
    return int(srv.psql(f"SELECT count(*) FROM {table} WHERE {where}")[0][0])


def start_pg_listener(listen, srv, table, *extra):
    return listen("--pg", srv.conninfo, "--pg-table", table, *extra)


def wait_stderr(lst, needle, timeout=IO_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in lst.stderr():
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------------
# Start-up


@pytest.mark.parametrize("conninfo, needle", [
    ("bogus=1", "invalid connection option"),
    ("host=127.0.0.1 port=abc", "invalid port"),
    ("host=127.0.0.1 port=70000", "invalid port"),
    ("postgresql://u@127.0.0.1:99999/db", "invalid port"),
    ("host='unterminated", "unterminated"),
    ("postgresql://[::1", "invalid"),
])
def test_malformed_conninfo_exit_2_one_line(tmp_path, conninfo, needle):
    rc, out, err = run_fail(tmp_path, "--port", "0", "--pg", conninfo)
    assert rc == 2, (rc, out, err)
    assert "listening" not in out
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and err.startswith("mllp-listen: --pg"), err


@pytest.mark.parametrize("args, needle", [
    (["--pg", "host=127.0.0.1", "--pg-table", "Bad-Name"], "--pg-table"),
    (["--pg", "host=127.0.0.1", "--pg-table", "a.b.c"], "--pg-table"),
    (["--pg", "host=127.0.0.1", "--pg-table", "1abc"], "--pg-table"),
    (["--pg-table", "x"], "needs --pg"),
    (["--pg-batch", "10"], "needs --pg"),
    (["--pg", "host=127.0.0.1", "--pg-batch", "0"], "--pg-batch"),
    (["--pg", "host=127.0.0.1", "--pg-timeout", "x"], "--pg-timeout"),
    (["--pg", "host=127.0.0.1", "--pg-group", "-1"], "--pg-group"),
    (["--pg", "host=127.0.0.1", "--ack", "none"], "needs acknowledgements"),
])
def test_bad_pg_options_exit_2(tmp_path, args, needle):
    rc, out, err = run_fail(tmp_path, "--port", "0", *args)
    assert rc == 2, (rc, out, err)
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_pg_with_out_dir_exit_2(tmp_path):
    rc, _, err = run_fail(tmp_path, "--port", "0", "--pg", "host=127.0.0.1", "--out-dir",
                          tmp_path / "d")
    assert rc == 2 and "--out-dir" in err, err


def test_help_lists_pg_options(tmp_path):
    rc, out, _ = run_fail(tmp_path, "--help")
    assert rc == 0
    for opt in ("--pg CONNINFO", "--pg-table", "--pg-batch", "--pg-group", "--pg-timeout"):
        assert opt in out, opt


# ---------------------------------------------------------------------------------------------
# Storing


def test_concurrent_connections_each_message_once(listen, pg_shared, table):
    """8 connections x 30 messages, plus one message all of them send: every message is
    acknowledged and is a row exactly once, with its columns right."""
    lst = start_pg_listener(listen, pg_shared, table)
    conns, per = 8, 30
    acks, errors, lock = {}, [], threading.Lock()
    shared = msg(b"SHARED")

    def sender(c):
        try:
            cl = Client(lst.port, timeout=IO_TIMEOUT)
            local_port = cl.sock.getsockname()[1]
            for i in range(per):
                m = msg(b"C%d-%d" % (c, i), fac=b"FAC%d" % c)
                r = cl.roundtrip(m, IO_TIMEOUT)
                with lock:
                    acks[m] = (r, local_port)
            r = cl.roundtrip(shared, IO_TIMEOUT)
            with lock:
                acks.setdefault(shared, (r, local_port))
                if r != ACK:
                    errors.append(("shared", r))
            cl.close()
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(e)

    ts = [threading.Thread(target=sender, args=(c,)) for c in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    assert all(r == ACK for r, _ in acks.values())
    got = pg_shared.psql(
        f"SELECT msh3, msh4, msh9, msh10, msh18, encode(sha256, 'hex'), encode(message, 'hex'), "
        f"encode(ack, 'hex'), peer_host, peer_port, received_at <= now() FROM {table} ORDER BY id")
    assert len(got) == conns * per + 1
    by_msg = {}
    for r in got:
        m = bytes.fromhex(r[6])
        assert m not in by_msg, "stored twice"
        by_msg[m] = r
    assert set(by_msg) == set(acks)
    for m, r in by_msg.items():
        msh3, msh4, msh9, msh10, msh18, sha, _, ack, host, port, past = r
        fields = m.split(b"\r")[0].split(b"|")
        assert (msh3, msh4, msh9, msh10) == tuple(f.decode() for f in
                                                  (fields[2], fields[3], fields[8], fields[9]))
        assert msh18 == ""
        assert sha == hashlib.sha256(m).hexdigest()
        assert ack == "06"
        assert host == "127.0.0.1" and past == "t"
        if m != shared:
            assert int(port) == acks[m][1]
    # one stdout line per stored message; the other copies of SHARED were duplicates
    lines = lst.message_lines(conns * per + 1)
    assert all(re.fullmatch(r"\d+ \d+ ADT\^A01\^ADT_A01 \S+", ln) for ln in lines)
    lst.no_more_lines(0.3)


def test_resend_gets_original_ack_stored_once_also_via_second_listener(listen, pg_shared, table):
    a = start_pg_listener(listen, pg_shared, table)
    b = start_pg_listener(listen, pg_shared, table)
    m = msg(b"R1")
    for port in (a.port, a.port, b.port):
        c = Client(port)
        assert c.roundtrip(m) == ACK
        c.close()
    assert count(pg_shared, table) == 1
    assert wait_stderr(b, "duplicate: message 1") and "original acknowledgement sent again" in b.stderr()
    # same key, other bytes: a new message
    m2 = msg(b"R1", body=b"PID|1||P2\r")
    c = Client(b.port)
    assert c.roundtrip(m2) == ACK
    c.close()
    assert count(pg_shared, table) == 2
    assert count(pg_shared, table, "msh10 = 'R1'") == 2


def test_hl7_mode_duplicate_gets_stored_ack_byte_for_byte(listen, pg_shared, table):
    a = start_pg_listener(listen, pg_shared, table, "--ack", "hl7")
    b = start_pg_listener(listen, pg_shared, table, "--ack", "hl7")
    m = msg(b"H1")
    c = Client(a.port)
    first = c.roundtrip(m)
    c.close()
    assert hl7_ack_fields(first) == ("AA", "H1")
    stored = pg_shared.psql(f"SELECT encode(ack, 'hex') FROM {table}")
    assert stored == [[first.hex()]]
    for port in (a.port, b.port, b.port):
        c = Client(port)
        again = c.roundtrip(m)
        c.close()
        assert again == first  # the original ACK, its MSH-10 and MSH-7 included
    assert count(pg_shared, table) == 1


def test_concurrent_duplicates_across_two_listeners(listen, pg_shared, table):
    """The same 40 messages sent at once to two receivers: each stored once, every copy
    acknowledged (the second one waits for the first's COMMIT, then finds its row)."""
    a = start_pg_listener(listen, pg_shared, table)
    b = start_pg_listener(listen, pg_shared, table)
    msgs = [msg(b"D%d" % i) for i in range(40)]
    results, lock = [], threading.Lock()

    def sender(port):
        c = Client(port, timeout=IO_TIMEOUT)
        for m in msgs:
            c.send(m)
        got = [c.recv_frame(IO_TIMEOUT) for _ in msgs]
        c.close()
        with lock:
            results.extend(got)

    ts = [threading.Thread(target=sender, args=(p,)) for p in (a.port, b.port, a.port, b.port)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(results) == 4 * len(msgs)
    assert set(results) == {ACK}
    assert count(pg_shared, table) == len(msgs)


def test_pipelined_messages_replies_in_order_and_group_1(listen, pg_shared, table):
    lst = start_pg_listener(listen, pg_shared, table, "--pg-group", "1", "--pg-batch", "7")
    c = Client(lst.port)
    msgs = [msg(b"P%d" % i) for i in range(25)]
    for m in msgs:
        c.send(m)
    assert [c.recv_frame() for _ in msgs] == [ACK] * len(msgs)
    c.close()
    assert [r[0] for r in rows(pg_shared, table, "msh10")] == ["P%d" % i for i in range(25)]


def test_fields_not_utf8_and_messages_without_key(listen, pg_shared, table):
    """MSH-4 in ISO-8859-1 is stored as text (read as Latin-1), the message bytes exactly;
    a message with an empty MSH-10, and one that is not HL7, are stored each time."""
    lst = start_pg_listener(listen, pg_shared, table)
    latin = msg(b"L1", fac=b"H\xf4PITAL", charset=b"8859/1")
    nokey = msg(b"")
    other = b"not an HL7 message"
    c = Client(lst.port)
    for m in (latin, nokey, nokey, other, other):
        assert c.roundtrip(m) == ACK
    c.close()
    got = rows(pg_shared, table, "msh4, msh10 IS NULL, msh18, encode(message, 'hex')")
    assert got[0] == ["H\u00f4PITAL", "f", "8859/1", latin.hex()]
    assert [r[1:] for r in got[1:]] == [["t", "", nokey.hex()], ["t", "", nokey.hex()],
                                         ["t", "", other.hex()], ["t", "", other.hex()]]


def test_custom_table_in_schema(listen, pg_shared, table):
    pg_shared.psql(f"CREATE SCHEMA IF NOT EXISTS s_{table}")
    name = f"s_{table}.msgs"
    lst = start_pg_listener(listen, pg_shared, name)
    c = Client(lst.port)
    assert c.roundtrip(msg(b"S1")) == ACK
    c.close()
    assert count(pg_shared, name) == 1


# ---------------------------------------------------------------------------------------------
# Faults


def _send_one(port, m, timeout=IO_TIMEOUT):
    c = Client(port, timeout=timeout)
    try:
        return c.roundtrip(m, timeout)
    finally:
        c.close()


def _until_accepted(port, make, accepted, limit=60.0):
    """Sends make(i) (a new message each time) until one is accepted; returns it."""
    deadline = time.monotonic() + limit
    i = 0
    while time.monotonic() < deadline:
        m = make(i)
        r = _send_one(port, m)
        if accepted(r):
            return m
        i += 1
        time.sleep(0.2)
    raise AssertionError("never accepted again")


# "immediate" is a crash of PostgreSQL (every process aborted, crash recovery at the next
# start): nothing acknowledged may be missing after it either.
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_stopped_while_sending_then_restarted(listen, pg_own, table, mode):
    lst = start_pg_listener(listen, pg_own, table, "--ack", "hl7", "--pg-timeout", "2")
    assert wait_stderr(lst, "pg: connected")
    outcome, lock, stop = {}, threading.Lock(), threading.Event()
    errors = []

    def sender(k):
        try:
            c = Client(lst.port, timeout=IO_TIMEOUT)
            i = 0
            while not stop.is_set():
                cid = b"K%d-%d" % (k, i)
                code, _ = hl7_ack_fields(c.roundtrip(msg(cid), IO_TIMEOUT))
                with lock:
                    outcome[cid.decode()] = code
                i += 1
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(outcome) < 100:
        time.sleep(0.05)
    pg_own.stop(mode)
    # while it is down: a message sent now cannot be committed: refused (AE), within the bound
    for i in range(3):
        code, _ = hl7_ack_fields(_send_one(lst.port, msg(b"DOWN%d" % i)))
        assert code == "AE"
    stop.set()
    for t in ts:
        t.join(60)
    assert not errors, errors
    codes = set(outcome.values())
    assert codes <= {"AA", "AE"} and "AA" in codes
    assert wait_stderr(lst, "database unavailable")
    pg_own.start()
    m = _until_accepted(lst.port, lambda i: msg(b"UP%d" % i),
                        lambda r: hl7_ack_fields(r)[0] == "AA")
    assert wait_stderr(lst, "database available again")
    stored = {r[0] for r in rows(pg_own, table, "msh10")}
    acked = {cid for cid, code in outcome.items() if code == "AA"}
    assert acked <= stored, sorted(acked - stored)[:5]  # nothing acknowledged that is missing
    assert not any(s.startswith("DOWN") for s in stored)
    assert m.split(b"|")[9].decode() in stored
    assert count(pg_own, table) == len(stored)  # once each
    # one line per change of state, not one per message
    assert lst.stderr().count("database unavailable") == 1, lst.stderr()


def test_database_down_at_startup_then_comes_up(listen, pg_factory, table):
    port = pgserver.free_port()
    conninfo = f"host=127.0.0.1 port={port} user={pgserver._server_user()[2]} dbname=postgres"
    lst = listen("--pg", conninfo, "--pg-table", table, "--pg-timeout", "1")
    assert lst.port  # listening although the database is not there
    for i in range(3):
        assert _send_one(lst.port, msg(b"EARLY%d" % i)) == NAK
    assert wait_stderr(lst, "database unavailable")
    srv = pg_factory(port=port)
    srv.start()
    m = _until_accepted(lst.port, lambda i: msg(b"LATE%d" % i), lambda r: r == ACK)
    assert wait_stderr(lst, "database available again")
    stored = [r[0] for r in rows(srv, table, "msh10")]
    assert stored == [m.split(b"|")[9].decode()]
    assert lst.stderr().count("database unavailable") == 1, lst.stderr()


def test_kill_9_under_load_every_ack_is_committed(listen, pg_shared, table):
    lst = start_pg_listener(listen, pg_shared, table, "--quiet")
    acked, lock = set(), threading.Lock()
    stop = threading.Event()

    def sender(k):
        try:
            c = Client(lst.port, timeout=IO_TIMEOUT)
        except OSError:
            return
        i = 0
        try:
            while not stop.is_set():
                # a few in flight per connection
                batch = [msg(b"X%d-%d" % (k, i + j)) for j in range(4)]
                for m in batch:
                    c.send(m)
                for m in batch:
                    r = c.recv_frame(IO_TIMEOUT)
                    if r == ACK:
                        with lock:
                            acked.add(m.split(b"|")[9].decode())
                i += 4
        except (OSError, EOFError, AssertionError):
            pass
        finally:
            c.close()

    ts = [threading.Thread(target=sender, args=(k,)) for k in range(10)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(acked) < 1500:
        time.sleep(0.02)
    lst.proc.send_signal(signal.SIGKILL)
    lst.proc.wait(10)
    stop.set()
    for t in ts:
        t.join(30)
    assert len(acked) > 0
    stored = [r[0] for r in rows(pg_shared, table, "msh10")]
    assert len(stored) == len(set(stored))
    missing = acked - set(stored)
    assert not missing, sorted(missing)[:5]


def test_sigterm_exits_cleanly(listen, pg_shared, table):
    lst = start_pg_listener(listen, pg_shared, table)
    assert _send_one(lst.port, msg(b"T1")) == ACK
    rc, _ = lst.stop(signal.SIGTERM, timeout=10)
    assert rc == 0


def test_database_down_sigterm_exits_cleanly(listen, table):
    port = pgserver.free_port()
    lst = listen("--pg", f"host=127.0.0.1 port={port} dbname=x", "--pg-table", table)
    c = Client(lst.port)
    c.send(msg(b"W1"))  # waits for its deadline, never acknowledged
    time.sleep(0.2)
    rc, _ = lst.stop(signal.SIGTERM, timeout=10)
    assert rc == 0
    c.close()

