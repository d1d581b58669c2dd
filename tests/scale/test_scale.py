"""The scale-out recipe of docs/scale-out.md, run on loopback: two mllp-listen receivers
behind HAProxy (mode tcp, send-proxy-v2, health checks), committing to a PostgreSQL primary
with a synchronous standby; senders (mllp-send, resend on timeout) push messages while one
receiver is killed with SIGKILL. The senders finish and the table holds every message exactly
once, on the primary and on the standby.

Everything is started here and stopped at the end: PostgreSQL (initdb + pg_ctl as an
unprivileged user, pgserver.py), pg_basebackup for the standby, haproxy from the
distribution's package, the receivers. 127.0.0.1 only; every wait is bounded.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "pg"))
import pgserver  # noqa: E402

LISTEN = Path(os.environ.get("MLLP_LISTEN", ROOT / "build" / "examples-c" / "mllp-listen"))
SEND = Path(os.environ.get("MLLP_SEND", ROOT / "build" / "examples-c" / "mllp-send"))
SENDERS = 4
PER_SENDER = 300
TABLE = "hl7_message"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Standby:
    """A streaming replica of `primary` made with pg_basebackup -R, on its own port."""

    def __init__(self, primary):
        self.primary = primary
        self.root = tempfile.mkdtemp(prefix="mllp-pg-standby.")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = free_port()
        if os.geteuid() == 0:
            os.chown(self.root, primary.uid, primary.gid)
        basebackup = os.path.join(os.path.dirname(primary.pg_ctl), "pg_basebackup")
        if not os.access(basebackup, os.X_OK):
            basebackup = shutil.which("pg_basebackup") or basebackup
        primary._run([basebackup, "-h", "127.0.0.1", "-p", str(primary.port), "-U", primary.user,
                      "-D", self.data, "-R", "-X", "stream", "--checkpoint=fast"], timeout=120)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nport = {self.port}\nunix_socket_directories = '{self.root}'\nhot_standby = on\n")
        # pg_basebackup -R wrote primary_conninfo; name the standby for synchronous_standby_names.
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("\nprimary_conninfo = '"
                    f"host=127.0.0.1 port={primary.port} user={primary.user} application_name=standby1'\n")
        primary._run([primary.pg_ctl, "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"], timeout=70)

    def psql(self, sql):
        p = subprocess.run([self.primary.psql_exe, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            f"host=127.0.0.1 port={self.port} user={self.primary.user} dbname=postgres",
                            "-c", sql], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        return p.stdout.strip()

    def destroy(self):
        try:
            self.primary._run([self.primary.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop"],
                              timeout=70, check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


HAPROXY_CFG = """\
# The recipe of docs/scale-out.md, on loopback ports.
global
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    # MLLP connections are long-lived and often idle between messages.
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    option clitcpka
    option srvtcpka
    # A connect that fails on one receiver is retried on another.
    retries 3
    option redispatch

frontend mllp
    bind 127.0.0.1:{front}
    default_backend receivers

backend receivers
    balance leastconn
    # Each receiver learns the sender's own address from the PROXY v2 header; health checks
    # send the header too (a LOCAL command), so they are not refused as headerless.
    default-server send-proxy-v2 check check-send-proxy inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions
    server r1 127.0.0.1:{r1}
    server r2 127.0.0.1:{r2}
"""


def message(sender, i):
    return (f"MSH|^~\\&|SENDER{sender}|FAC|RECV|FAC|20260101120000||ADT^A01|S{sender}M{i:05d}|P|2.5\r"
            f"EVN|A01|20260101120000\rPID|1||{sender}{i:05d}^^^HOSP^MR||DOE^JANE\r")


@pytest.fixture
def stack(tmp_path):
    for exe in (LISTEN, SEND):
        if not os.access(exe, os.X_OK):
            pytest.fail(f"{exe} is not built (cmake --build build)")
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed (tests/setup.sh installs it)")
    if not pgserver.tools():
        pytest.fail("PostgreSQL server programs are not installed (tests/setup.sh installs them)")
    procs, cleanup = [], []
    primary = pgserver.PgServer()
    cleanup.append(primary.destroy)
    try:
        primary.start()
        standby = Standby(primary)
        cleanup.append(standby.destroy)
        # Commits wait until the standby has the WAL: an acknowledged message survives the
        # loss of the primary machine.
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
        primary.psql("SELECT pg_reload_conf()")
        wait_for(lambda: primary.psql("SELECT sync_state FROM pg_stat_replication") == [["sync"]], 30,
                 "the standby to be synchronous")
        ports = {"r1": free_port(), "r2": free_port(), "front": free_port()}
        receivers = {}
        for name in ("r1", "r2"):
            log = open(tmp_path / f"{name}.log", "w")
            p = subprocess.Popen([str(LISTEN), "--port", str(ports[name]), "--pg", primary.conninfo,
                                  "--config", "ProxyProtocol=V2", "--pg-timeout", "5"],
                                 stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            receivers[name] = p
            assert wait_port_proxy(ports[name]), f"{name} did not start"
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(**ports))
        check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        hlog = open(tmp_path / "haproxy.log", "w")
        haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=hlog, stderr=subprocess.STDOUT)
        procs.append(haproxy)
        assert wait_port(ports["front"]), "haproxy did not start"
        yield {"primary": primary, "standby": standby, "ports": ports, "receivers": receivers, "tmp": tmp_path}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        for c in reversed(cleanup):
            c()


def wait_port_proxy(port, timeout=20):
    """The receiver listens (probing with a PROXY v2 LOCAL header, so it logs no refusal)."""
    local = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.sendall(local)
            return True
        except OSError:
            time.sleep(0.05)
    return False


def test_a_receiver_killed_under_load_loses_and_doubles_nothing(stack):
    tmp, ports, primary = stack["tmp"], stack["ports"], stack["primary"]
    files = []
    for k in range(SENDERS):
        path = tmp / f"sender{k}.hl7"
        path.write_text("".join(message(k, i) for i in range(PER_SENDER)))
        files.append(path)
    senders = []
    for k, path in enumerate(files):
        out = open(tmp / f"sender{k}.out", "w")
        err = open(tmp / f"sender{k}.err", "w")
        # Resend on timeout: a message whose receiver died is sent again (through HAProxy, to
        # the other receiver); the shared table's unique key stores it once.
        p = subprocess.Popen([str(SEND), "--port", str(ports["front"]), "--timeout", "2", "--retries", "30",
                              "--retry-delay", "100", str(path)], stdout=out, stderr=err)
        senders.append(p)
    total = SENDERS * PER_SENDER

    def count():
        return int(primary.psql(f"SELECT count(*) FROM {TABLE}")[0][0]) if table_exists(primary) else 0

    # Kill r1 once a fifth of the messages are in.
    wait_for(lambda: count() >= total // 5, 120, "a fifth of the messages to be committed")
    victim = stack["receivers"]["r1"]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    for p in senders:
        p.wait(timeout=300)
    for k, p in enumerate(senders):
        err = (tmp / f"sender{k}.err").read_text()
        assert p.returncode == 0, f"sender {k} exited {p.returncode}: {err[-2000:]}"
        lines = (tmp / f"sender{k}.out").read_text().splitlines()
        assert [line.split()[0] for line in lines] == [f"S{k}M{i:05d}" for i in range(PER_SENDER)]
        assert all(line.split()[1] == "ACK" for line in lines), lines[:5]
    rows = primary.psql(f"SELECT count(*), count(DISTINCT msh10) FROM {TABLE}")
    assert rows == [[str(total), str(total)]], f"every message exactly once: {rows}"
    resent = sum(int(line.split()[2]) > 1 for k in range(SENDERS)
                 for line in (tmp / f"sender{k}.out").read_text().splitlines())
    # The kill cut connections in the middle of the load: some messages needed a resend.
    assert resent >= 1, "no message was resent: the killed receiver carried no connection"
    print(f"{total} messages, {resent} needed a resend after the kill; every one stored once")
    # The synchronous standby has them all too (replay may trail the flush by a moment).
    standby = stack["standby"]
    wait_for(lambda: standby.psql(f"SELECT count(*) FROM {TABLE}") == str(total), 30,
             "the standby to replay every row")


def table_exists(pg):
    return pg.psql(f"SELECT to_regclass('{TABLE}') IS NOT NULL")[0][0] == "t"


def test_the_receivers_see_the_senders_address_through_haproxy(stack):
    ports, primary = stack["ports"], stack["primary"]
    with socket.create_connection(("127.0.0.1", ports["front"]), 5) as s:
        s.settimeout(10)
        s.sendall(b"\x0b" + message(9, 1).encode() + b"\x1c\x0d")
        reply = b""
        while not reply.endswith(b"\x1c\x0d"):
            chunk = s.recv(4096)
            assert chunk, "connection closed before the acknowledgement"
            reply += chunk
        local_port = s.getsockname()[1]
    assert reply == b"\x0b\x06\x1c\x0d"
    # The stored peer is the sender's own address and port, not HAProxy's.
    cols = [c[0] for c in primary.psql(
        f"SELECT column_name FROM information_schema.columns WHERE table_name = '{TABLE}' ORDER BY ordinal_position")]
    host_col = next(c for c in cols if re.search(r"peer.*(host|addr)", c))
    port_col = next(c for c in cols if re.search(r"peer.*port", c))
    rows = primary.psql(f"SELECT {host_col}, {port_col} FROM {TABLE} WHERE msh10 = 'S9M00001'")
    assert rows == [["127.0.0.1", str(local_port)]], rows
