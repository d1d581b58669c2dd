"""End-to-end tests of examples-c/mllp-listen: the real binary, real sockets, real files.

Run:  python3 -m pytest -q tests/listen
      (MLLP_LISTEN=path/to/mllp-listen, default build/examples-c/mllp-listen;
       MLLP_SAMPLES=dir of the HL7 samples, default tests/data)

Clients: python-hl7's `mllp_send` command (written by nobody here) where it fits, a raw-socket
client for what it cannot do (no ACK expected, other block characters, partial frames, ...).
Every wait is bounded.
"""

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LISTEN = Path(os.environ.get("MLLP_LISTEN", REPO / "build" / "examples-c" / "mllp-listen"))


SAMPLES = Path(os.environ.get("MLLP_SAMPLES") or REPO / "tests" / "data")
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK, NAK = b"\x06", b"\x15"
START_TIMEOUT = 10
IO_TIMEOUT = 10

pytestmark = pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built")


def sample(name):
    return (SAMPLES / name).read_bytes()


def msh(message, n):
    """MSH-n of the first MSH segment ('' when absent), split on the message's separator."""
    for seg in re.split(rb"[\r\n]", message):
        if seg.startswith(b"MSH") and len(seg) > 3:
            sep = seg[3:4]
            parts = seg.split(sep)
            return parts[n - 1].decode("utf-8", "replace") if len(parts) > n - 1 else ""
    return ""


def expected_line(conn, message):
    f9, f10 = msh(message, 9) or "-", msh(message, 10) or "-"
    return f"{conn} {len(message)} {f9} {f10}"


# ---------------------------------------------------------------------------------------------
# The program under test


class Listener:
    """A running mllp-listen: stdout lines arrive on a queue (read by a thread), stderr goes
    to a file."""

    def __init__(self, tmp_path, *args, expect_start=True):
        self.args = [str(LISTEN), "--port", "0", *map(str, args)]
        self.err_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = None
        self.banner = None
        if expect_start:
            self.banner = self.next_line(START_TIMEOUT)
            assert self.banner is not None, f"no banner; stderr: {self.stderr()}"
            m = re.fullmatch(r"listening on (\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)", self.banner)
            assert m, self.banner
            self.host, self.port = m.group(1), int(m.group(2))
            assert self.port > 0

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout=IO_TIMEOUT):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def message_lines(self, n, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line is None:
                break
            out.append(line)
        assert len(out) == n, f"expected {n} lines, got {out}; stderr: {self.stderr()}"
        return out

    def no_more_lines(self, wait=0.5):
        line = self.next_line(wait)
        assert line is None, f"unexpected stdout line {line!r}"

    def stderr(self):
        self._err.flush()
        return self.err_path.read_text("utf-8", "replace")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends `sig`; returns (exit status, seconds taken). Fails if not gone in `timeout`."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.wait(timeout)
        took = time.monotonic() - t0
        assert rc is not None, f"still running {timeout}s after {sig!r}; stderr: {self.stderr()}"
        self._reader.join(2)
        return rc, took

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


@pytest.fixture
def listen(tmp_path):
    started = []

    def start(*args, expect_start=True):
        lst = Listener(tmp_path, *args, expect_start=expect_start)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.kill()


def run_fail(tmp_path, *args, timeout=10):
    """Runs mllp-listen expecting it to exit by itself; returns (status, stdout, stderr)."""
    p = subprocess.run([str(LISTEN), *map(str, args)], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


# ---------------------------------------------------------------------------------------------
# Raw client


class Client:
    def __init__(self, port, host="127.0.0.1", sb=SB, eb=EB, cr=CR, timeout=IO_TIMEOUT):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sb, self.eb, self.cr = sb, eb, cr
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, message):
        self.sock.sendall(self.sb + message + self.eb + self.cr)

    def recv_frame(self, timeout=IO_TIMEOUT):
        """The next framed reply's payload (between start and end block)."""
        self.sock.settimeout(timeout)
        while True:
            i = self.buf.find(self.eb + self.cr)
            if i >= 0:
                frame, self.buf = self.buf[:i], self.buf[i + 2:]
                assert frame.startswith(self.sb), frame
                return frame[len(self.sb):]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk

    def roundtrip(self, message, timeout=IO_TIMEOUT):
        self.send(message)
        return self.recv_frame(timeout)

    def expect_silence(self, wait=1.0):
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        assert False, f"expected nothing back, got {data!r}"

    def at_eof(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def hl7_ack_fields(frame):
    """(MSA-1, MSA-2) of an HL7 ACK message."""
    for seg in frame.split(b"\r"):
        if seg.startswith(b"MSA"):
            parts = seg.split(seg[3:4])
            return parts[1].decode(), (parts[2].decode() if len(parts) > 2 else "")
    raise AssertionError(f"no MSA segment in {frame!r}")


def stored(out_dir):
    """{name: bytes} of the stored messages, in name order; asserts no temporary files."""
    names = sorted(os.listdir(out_dir))
    hidden = [n for n in names if n.startswith(".")]
    assert not hidden, f"temporary files left: {hidden}"
    for n in names:
        assert re.fullmatch(r"\d+-\d+-\d+\.hl7", n), n
    return {n: (Path(out_dir) / n).read_bytes() for n in names}


def mllp_send(port, message, tmp_path, timeout=20):
    """Delivers `message` with python-hl7's mllp_send; returns its stdout (the reply bytes)."""
    exe = shutil.which("mllp_send")
    if not exe:
        pytest.skip("mllp_send (pip install hl7) not installed")
    f = tmp_path / f"msg-{time.monotonic_ns()}.mllp"
    f.write_bytes(SB + message + EB + CR)
    p = subprocess.run([exe, "--port", str(port), "--file", str(f), "127.0.0.1"],
                       capture_output=True, timeout=timeout)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def as_mllp_send_delivers(message):
    # mllp_send strips <SB> and <CR> from both ends of each message it reads from a file.
    return message.strip(SB + CR)


# ---------------------------------------------------------------------------------------------
# Usage and start-up errors


def test_help(tmp_path):
    rc, out, err = run_fail(tmp_path, "--help")
    assert rc == 0
    assert "usage: mllp-listen" in out and "--out-dir" in out and "--reject-invalid" in out


@pytest.mark.parametrize("args,needle", [
    (["--port", "70000"], "--port"),
    (["--port", "12x"], "--port"),
    (["--port"], "--port"),
    (["--version", "3"], "--version"),
    (["--ack", "maybe"], "--ack"),
    (["--bogus"], "--bogus"),
    (["--config", "NoEquals"], "--config"),
    (["--config", "NoSuchSetting=1"], "unknown setting"),
    (["--config", "MaxMessageSize=abc"], "MaxMessageSize"),
    (["--config", "StartBlockChar=0x100"], "StartBlockChar"),
])
def test_bad_arguments_exit_2(tmp_path, args, needle):
    rc, out, err = run_fail(tmp_path, "--port", "0", *args)
    assert rc == 2, (out, err)
    assert needle.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1, err
    assert "listening" not in out


def test_client_ca_without_tls_cert_exit_2(tmp_path):
    rc, out, err = run_fail(tmp_path, "--port", "0", "--client-ca", "/nonexistent/ca.pem")
    assert rc == 2
    assert "--client-ca" in err and len(err.strip().splitlines()) == 1
    # checked before any file is read, also with only a key given
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-key", "k.pem", "--client-ca", "c.pem")
    assert rc == 2 and "--client-ca" in err


def test_tls_cert_and_key_need_each_other_exit_2(tmp_path):
    # (TLS itself is tested in test_tls.py)
    for args in (["--tls-cert", "c.pem"], ["--tls-key", "k.pem"]):
        rc, out, err = run_fail(tmp_path, "--port", "0", *args)
        assert rc == 2, (out, err)
        assert "--tls-cert and --tls-key must be given together" in err
        assert len(err.strip().splitlines()) == 1, err


def test_tls_files_missing_exit_2(tmp_path):
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", "c.pem", "--tls-key", "k.pem")
    assert rc == 2 and "listening" not in out
    assert "--tls-cert c.pem: cannot read" in err and len(err.strip().splitlines()) == 1, err


def test_port_in_use_exit_2(tmp_path):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        rc, out, err = run_fail(tmp_path, "--port", port)
        assert rc == 2, (out, err)
        assert "listening" not in out
        assert err.strip() and len(err.strip().splitlines()) == 1, err
    finally:
        holder.close()


def test_unusable_out_dir_exit_2(tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("x")
    for bad in (regular, regular / "sub"):
        rc, out, err = run_fail(tmp_path, "--port", "0", "--out-dir", bad)
        assert rc == 2, (bad, out, err)
        assert "--out-dir" in err and len(err.strip().splitlines()) == 1
        assert "listening" not in out


def _unwritable_dir(tmp_path):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    # root writes anywhere with a normal permission check: use a pseudo file system instead
    for d in ("/sys/kernel", "/sys", "/proc/1"):
        try:
            fd = os.open(os.path.join(d, ".mllp-listen-probe"), os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            if os.path.isdir(d):
                return Path(d)
            continue
        os.close(fd)
        os.unlink(os.path.join(d, ".mllp-listen-probe"))
    pytest.skip("no unwritable directory available")


def test_unwritable_out_dir_exit_2(tmp_path):
    ro = _unwritable_dir(tmp_path)
    try:
        rc, out, err = run_fail(tmp_path, "--port", "0", "--out-dir", ro)
        assert rc == 2, (out, err)
        assert "--out-dir" in err and len(err.strip().splitlines()) == 1
        assert "listening" not in out
    finally:
        if str(ro).startswith(str(tmp_path)):
            ro.chmod(0o755)


@pytest.mark.parametrize("ack", ["mllp", "hl7", "none"])
def test_storage_failure_refuses_the_message(listen, tmp_path, ack):
    """When a message cannot be stored it is refused (NAK / AE), not printed, and the
    reason is on stderr; the server carries on."""
    out_dir = tmp_path / "out"
    lst = listen("--ack", ack, "--out-dir", out_dir)
    c = Client(lst.port)
    shutil.rmtree(out_dir)  # the directory the program holds open is gone
    if ack == "none":
        c.send(sample("adt_a01.hl7"))
        c.expect_silence(1.0)
    else:
        r = c.roundtrip(sample("adt_a01.hl7"))
        assert r == NAK if ack == "mllp" else hl7_ack_fields(r) == ("AE", "MSG00001")
    lst.no_more_lines()
    assert "cannot store message" in lst.stderr()
    assert lst.proc.poll() is None
    assert lst.stop()[0] == 0


# ---------------------------------------------------------------------------------------------
# python-hl7's mllp_send


@pytest.mark.parametrize("name", ["adt_a01.hl7", "oru_r01.hl7"])
def test_mllp_send_mllp_mode(listen, tmp_path, name):
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir)
    reply = mllp_send(lst.port, sample(name), tmp_path)
    assert reply.rstrip(b"\n") == SB + ACK + EB + CR
    sent = as_mllp_send_delivers(sample(name))
    line = lst.message_lines(1)[0]
    conn = line.split()[0]
    assert line == expected_line(conn, sent)
    assert list(stored(out_dir).values()) == [sent]


@pytest.mark.parametrize("name", ["adt_a01.hl7", "oru_r01.hl7", "adt_a08_utf8.hl7"])
def test_mllp_send_hl7_mode(listen, tmp_path, name):
    out_dir = tmp_path / "out"
    lst = listen("--ack", "hl7", "--out-dir", out_dir)
    reply = mllp_send(lst.port, sample(name), tmp_path).rstrip(b"\n")
    assert reply.startswith(SB + b"MSH") and reply.endswith(EB + CR), reply
    code, ref = hl7_ack_fields(reply[1:-2])
    # The UTF-8 sample has MSH-15 AL (enhanced mode): a commit accept.
    assert code == ("CA" if msh(sample(name), 15) == "AL" else "AA")
    assert ref == msh(sample(name), 10)
    import hl7  # python-hl7 parses the ACK too
    parsed = hl7.parse(reply[1:-2].decode("utf-8"))
    assert str(parsed.segment("MSA")[1]) == code
    sent = as_mllp_send_delivers(sample(name))
    assert lst.message_lines(1)[0].split(" ", 1)[1] == expected_line(0, sent).split(" ", 1)[1]
    assert list(stored(out_dir).values()) == [sent]


def test_mllp_send_version_1_hl7(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--version", "1", "--ack", "hl7", "--out-dir", out_dir)
    for name in ("adt_a01.hl7", "oru_r01.hl7"):
        reply = mllp_send(lst.port, sample(name), tmp_path).rstrip(b"\n")
        assert hl7_ack_fields(reply[1:-2]) == ("AA", msh(sample(name), 10))
    lines = lst.message_lines(2)
    assert [l.split()[2] for l in lines] == ["ADT^A01^ADT_A01", "ORU^R01^ORU_R01"]
    lst.no_more_lines()
    files = stored(out_dir)
    assert list(files.values()) == [as_mllp_send_delivers(sample(n))
                                    for n in ("adt_a01.hl7", "oru_r01.hl7")]


# ---------------------------------------------------------------------------------------------
# Stored files and stdout lines (raw client: exact bytes)

ALL_SAMPLES = ["adt_a01.hl7", "oru_r01.hl7", "oru_r01_1mib_ed.hl7", "adt_a08_utf8.hl7",
               "batch_adt.hl7", "ack_aa.hl7", "not_hl7.txt"]


def test_out_dir_files_byte_identical(listen, tmp_path):
    out_dir = tmp_path / "new" / "nested" / "out"  # created, parents too
    lst = listen("--out-dir", out_dir)
    c = Client(lst.port)
    messages = [sample(n) for n in ALL_SAMPLES]
    for m in messages:
        assert c.roundtrip(m) == ACK
    lines = lst.message_lines(len(messages))
    conn = lines[0].split()[0]
    assert lines == [expected_line(conn, m) for m in messages]
    files = stored(out_dir)
    assert list(files.values()) == messages  # name order = arrival order
    assert len(files[sorted(files)[2]]) == len(sample("oru_r01_1mib_ed.hl7")) > 1_000_000
    c.close()
    rc, _ = lst.stop()
    assert rc == 0
    assert stored(out_dir) == files


def test_stdout_line_fields(listen, tmp_path):
    lst = listen()
    c = Client(lst.port)
    cases = [
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|ID1|P|2.5\r", "ADT^A01 ID1"),
        (b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01\rPID|1\r", "ORU^R01 -"),   # no MSH-10
        (b"MSH|^~\\&|A|B|C|D|20240101|||X9|P\r", "- X9"),                # empty MSH-9
        (b"MSH#^~\\&#A#B#C#D#20240101##ADT^A04#ID|2#P\r", "ADT^A04 ID|2"),  # own separator
        (b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A|B|C|D|T||ADT^A02|B1\rBTS|1\rFTS|1\r", "ADT^A02 B1"),
        (b"PID|1\nMSH|^~\\&|A|B|C|D|T||ACK|Z\n", "ACK Z"),  # LF segments, MSH not first
        (b"hello", "- -"),
    ]
    for m, _ in cases:
        assert c.roundtrip(m) == ACK
    lines = lst.message_lines(len(cases))
    for line, (m, fields) in zip(lines, cases):
        conn, n, rest = line.split(" ", 2)
        assert int(conn) > 0 and int(n) == len(m) and rest == fields, (line, m)


def test_connections_get_their_own_files(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir)
    clients = [Client(lst.port) for _ in range(4)]
    per_client = 5
    errors = []

    def run(i, c):
        try:
            for k in range(per_client):
                m = b"MSH|^~\\&|A|B|C|D|T||ADT^A01|C%dM%d|P|2.5\r" % (i, k)
                assert c.roundtrip(m) == ACK
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    lines = lst.message_lines(4 * per_client)
    assert len({l.split()[0] for l in lines}) == 4  # four connection ids
    files = stored(out_dir)
    assert len(files) == 4 * per_client
    assert sorted(msh(m, 10) for m in files.values()) == sorted(
        f"C{i}M{k}" for i in range(4) for k in range(per_client))


def test_existing_files_never_overwritten(listen, tmp_path):
    out_dir = tmp_path / "out"
    for run in range(2):
        lst = listen("--out-dir", out_dir, "--quiet")
        c = Client(lst.port)
        for k in range(3):
            assert c.roundtrip(b"MSH|^~\\&|A|B|C|D|T||ADT^A01|R%dK%d\r" % (run, k)) == ACK
        c.close()
        assert lst.stop()[0] == 0
    files = stored(out_dir)
    assert [msh(m, 10) for m in files.values()] == [f"R{r}K{k}" for r in range(2) for k in range(3)]


def test_quiet(listen, tmp_path):
    lst = listen("--quiet", "--config", "MaxMessageSize=10")
    c = Client(lst.port)
    assert c.roundtrip(sample("adt_a01.hl7")) == NAK  # too big: the library's error, not shown
    assert c.roundtrip(b"MSH|^~\\&|") == ACK
    lst.no_more_lines()
    rc, _ = lst.stop()
    assert rc == 0 and lst.stderr() == ""


# ---------------------------------------------------------------------------------------------
# --reject-invalid


def test_reject_invalid_mllp(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--reject-invalid", "--out-dir", out_dir)
    c = Client(lst.port)
    assert c.roundtrip(sample("not_hl7.txt")) == NAK
    for bad in (b"MSH", b"MSHX|^~\\&|", b"MSH\r", b"msh|^~\\&|", b" MSH|^~\\&|"):
        assert c.roundtrip(bad) == NAK, bad
    assert stored(out_dir) == {}
    good = [sample("adt_a01.hl7"), sample("batch_adt.hl7"), b"BHS|^~\\&|\rBTS|0\r",
            b"MSH^^~\\&^A\r"]
    for m in good:
        assert c.roundtrip(m) == ACK
    lines = lst.message_lines(len(good))  # only accepted messages are printed
    assert [int(l.split()[1]) for l in lines] == [len(m) for m in good]
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == good
    assert "rejected" in lst.stderr()


def test_reject_invalid_hl7_mode_sends_ar(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--reject-invalid", "--ack", "hl7", "--out-dir", out_dir)
    c = Client(lst.port)
    code, _ = hl7_ack_fields(c.roundtrip(sample("not_hl7.txt")))
    assert code == "AR"
    assert stored(out_dir) == {}
    code, ref = hl7_ack_fields(c.roundtrip(sample("oru_r01.hl7")))
    assert (code, ref) == ("AA", "LAB7731")
    assert list(stored(out_dir).values()) == [sample("oru_r01.hl7")]
    lst.message_lines(1)
    lst.no_more_lines()


def test_reject_invalid_version_1_none(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--reject-invalid", "--version", "1", "--out-dir", out_dir)
    c = Client(lst.port)
    c.send(sample("not_hl7.txt"))
    c.send(sample("adt_a01.hl7"))
    line = lst.message_lines(1)[0]
    assert line.split()[1:] == ["428", "ADT^A01^ADT_A01", "MSG00001"]
    c.expect_silence(0.5)
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7")]


# ---------------------------------------------------------------------------------------------
# Versions and ack modes


def test_version_1_sends_nothing_and_stores_once(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--version", "1", "--out-dir", out_dir)
    c = Client(lst.port)
    messages = [sample("adt_a01.hl7"), sample("oru_r01_1mib_ed.hl7"), sample("adt_a08_utf8.hl7")]
    for m in messages:
        c.send(m)
    lines = lst.message_lines(len(messages))
    conn = lines[0].split()[0]
    assert lines == [expected_line(conn, m) for m in messages]
    c.expect_silence(1.0)
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == messages
    c.close()
    assert lst.stop()[0] == 0
    assert list(stored(out_dir).values()) == messages  # still exactly once


def test_ack_none_with_version_2(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--ack", "none", "--out-dir", out_dir)
    c = Client(lst.port)
    c.send(sample("adt_a01.hl7"))
    c.send(sample("oru_r01.hl7"))
    assert len(lst.message_lines(2)) == 2
    c.expect_silence(0.5)
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7"), sample("oru_r01.hl7")]


def test_version_1_ack_hl7_raw(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--version", "1", "--ack", "hl7", "--out-dir", out_dir)
    c = Client(lst.port)
    assert hl7_ack_fields(c.roundtrip(sample("adt_a01.hl7"))) == ("AA", "MSG00001")
    # MSH-15 AL: enhanced mode, a commit accept.
    assert hl7_ack_fields(c.roundtrip(sample("adt_a08_utf8.hl7"))) == ("CA", "UTF0001")
    assert len(lst.message_lines(2)) == 2
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7"), sample("adt_a08_utf8.hl7")]


def test_ack_mode_from_config_is_honoured(listen, tmp_path):
    # AckMode given through --config instead of --ack: still printed and stored exactly once.
    out_dir = tmp_path / "out"
    lst = listen("--version", "1", "--config", "ackmode=hl7", "--out-dir", out_dir)
    c = Client(lst.port)
    assert hl7_ack_fields(c.roundtrip(sample("adt_a01.hl7")))[0] == "AA"
    assert len(lst.message_lines(1)) == 1
    lst.no_more_lines()
    assert len(stored(out_dir)) == 1


# ---------------------------------------------------------------------------------------------
# Library settings through --config


@pytest.mark.parametrize("ack", ["mllp", "hl7"])
def test_max_message_size(listen, tmp_path, ack):
    n = 200
    out_dir = tmp_path / "out"
    lst = listen("--config", f"MaxMessageSize={n}", "--ack", ack, "--out-dir", out_dir)
    c = Client(lst.port)
    head = b"MSH|^~\\&|A|B|C|D|T||ADT^A01|OK1|P|2.5\rNTE|1|"
    exact = head + b"x" * (n - len(head) - 1) + b"\r"
    over = head + b"y" * (n - len(head)) + b"\r"
    assert (len(exact), len(over)) == (n, n + 1)
    r = c.roundtrip(exact)
    assert r == ACK if ack == "mllp" else hl7_ack_fields(r)[0] == "AA"
    r = c.roundtrip(over)
    assert r == NAK if ack == "mllp" else hl7_ack_fields(r)[0] in ("AE", "AR")
    # the connection stays usable
    r = c.roundtrip(sample("adt_a01.hl7")[:n])
    assert r == ACK if ack == "mllp" else hl7_ack_fields(r)[0] == "AA"
    lines = lst.message_lines(2)
    assert [int(l.split()[1]) for l in lines] == [n, n]
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == [exact, sample("adt_a01.hl7")[:n]]
    assert re.search(r"^error: \d+ ", lst.stderr(), re.M), lst.stderr()


def test_empty_message_refused(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir)
    c = Client(lst.port)
    assert c.roundtrip(b"") == NAK
    assert c.roundtrip(sample("adt_a01.hl7")) == ACK
    assert len(lst.message_lines(1)) == 1
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7")]


def test_start_and_end_block_chars(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--config", "StartBlockChar=0x02", "--config", "endblockchar=0x03",
                 "--out-dir", out_dir)
    c = Client(lst.port, sb=b"\x02", eb=b"\x03")
    assert c.roundtrip(sample("adt_a01.hl7")) == ACK  # reply framed with the same characters
    assert c.roundtrip(sample("oru_r01.hl7")) == ACK
    assert len(lst.message_lines(2)) == 2
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7"), sample("oru_r01.hl7")]


def test_receive_timeout_discards_partial_frame(listen, tmp_path):
    out_dir = tmp_path / "out"
    lst = listen("--config", "ReceiveTimeout=1", "--out-dir", out_dir)
    c = Client(lst.port)
    c.send_raw(SB + b"MSH|^~\\&|PARTIAL|")
    time.sleep(2.5)
    assert c.roundtrip(sample("adt_a01.hl7")) == ACK  # same connection, still open
    line = lst.message_lines(1)[0]
    assert line.split()[1:] == ["428", "ADT^A01^ADT_A01", "MSG00001"]
    lst.no_more_lines()
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7")]
    assert "error:" in lst.stderr()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_banner(listen, tmp_path):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("::1 not available")
    lst = listen("--host", "::1")
    assert lst.banner == f"listening on [::1]:{lst.port}"
    c = Client(lst.port, host="::1")
    assert c.roundtrip(sample("adt_a01.hl7")) == ACK


def test_event_mode_doevents(listen, tmp_path):
    # Events delivered on the program's main thread instead of the library's thread.
    out_dir = tmp_path / "out"
    lst = listen("--config", "EventMode=DoEvents", "--out-dir", out_dir)
    c = Client(lst.port)
    for name in ("adt_a01.hl7", "oru_r01_1mib_ed.hl7"):
        assert c.roundtrip(sample(name)) == ACK
    assert len(lst.message_lines(2)) == 2
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7"), sample("oru_r01_1mib_ed.hl7")]
    rc, took = lst.stop(signal.SIGINT)
    assert rc == 0 and took < 5.0
    assert c.at_eof()


# ---------------------------------------------------------------------------------------------
# Signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_clients_connected(listen, tmp_path, sig):
    out_dir = tmp_path / "out"
    # SIGTERM drains: it waits --drain-timeout for the half-sent message (tests/ops), SIGINT not
    lst = listen("--out-dir", out_dir, "--drain-timeout", "1")
    idle = Client(lst.port)
    partial = Client(lst.port)
    partial.send_raw(SB + b"MSH|^~\\&|HALF")
    done = Client(lst.port)
    assert done.roundtrip(sample("adt_a01.hl7")) == ACK  # acknowledged ...
    lst.message_lines(1)
    rc, took = lst.stop(sig, timeout=5.0)
    assert rc == 0 and took < 5.0
    assert list(stored(out_dir).values()) == [sample("adt_a01.hl7")]  # ... so on disk
    for c in (idle, partial, done):
        assert c.at_eof(), "connection not closed by the shutdown"


def test_acknowledged_messages_on_disk_after_sigterm(listen, tmp_path):
    """Clients keep sending while SIGTERM arrives: every message that got its ACK is stored,
    every stored file is a complete message, no temporary file is left."""
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir, "--quiet")
    big = sample("oru_r01_1mib_ed.hl7")
    acked, errors = [], []
    stop = threading.Event()

    def blast(i):
        try:
            c = Client(lst.port, timeout=5)
        except OSError as e:
            errors.append(e)
            return
        k = 0
        while not stop.is_set():
            m = (b"MSH|^~\\&|A|B|C|D|T||ADT^A01|T%dN%d|P|2.5\r" % (i, k)) + (big if k % 4 == 3 else b"")
            try:
                r = c.roundtrip(m, timeout=5)
            except (OSError, EOFError):
                break
            if r == ACK:
                acked.append(m)
            k += 1
        c.close()

    threads = [threading.Thread(target=blast, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    rc, took = lst.stop(signal.SIGTERM, timeout=5.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert rc == 0 and took < 5.0
    assert not errors
    assert acked, "nothing was acknowledged before SIGTERM"
    files = list(stored(out_dir).values())
    assert set(files) >= set(acked)
    sent_ids = {msh(m, 10) for m in files}
    assert len(sent_ids) == len(files)  # each message at most once
    for f in files:  # complete messages only
        assert f.startswith(b"MSH|") and (len(f) < 200 or f.endswith(big))


# ---------------------------------------------------------------------------------------------
# Group commit (--out-dir): AckOut queues, a writer thread stores batches, then acknowledges


def _msg(tag, pad=b""):
    return b"MSH|^~\\&|A|B|C|D|T||ADT^A01|%s|P|2.5\r" % tag + (b"NTE|1|" + pad + b"\r" if pad else b"")


def _check_stored(out_dir, acked, lines=None):
    """Every acknowledged message is stored byte-identical, nothing is stored twice, every
    stored file is a message that was sent (by control id), and with `lines` the stdout lines
    are exactly one per stored file."""
    files = stored(out_dir)
    by_id = {}
    for name, data in files.items():
        mid = msh(data, 10)
        assert mid not in by_id, f"{mid} stored twice ({by_id[mid]}, {name})"
        by_id[mid] = name
    contents = set(files.values())
    missing = [msh(m, 10) for m in acked if m not in contents]
    assert not missing, f"acknowledged but not on disk: {missing[:10]}"
    if lines is not None:
        assert sorted(l.split()[3] for l in lines) == sorted(by_id), "lines differ from files"
    return files


@pytest.mark.parametrize("event_mode", [None, "DoEvents"])
def test_group_commit_many_concurrent_clients(listen, tmp_path, event_mode):
    out_dir = tmp_path / "out"
    extra = ["--config", "EventMode=DoEvents"] if event_mode else []
    lst = listen("--out-dir", out_dir, *extra)
    n_clients, per_client = 40, 12
    acked, errors = [], []
    start = threading.Barrier(n_clients)

    def run(i):
        try:
            c = Client(lst.port, timeout=20)
            start.wait(10)
            for k in range(per_client):
                m = _msg(b"G%dK%d" % (i, k), b"x" * (37 * k + i))
                assert c.roundtrip(m, timeout=20) == ACK
                acked.append(m)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(acked) == n_clients * per_client
    lines = lst.message_lines(len(acked), timeout=20)
    lst.no_more_lines()
    by_id = {msh(m, 10): m for m in acked}
    for line in lines:  # each line describes its message
        conn, n, f9, f10 = line.split()
        assert int(n) == len(by_id[f10]) and f9 == "ADT^A01", line
    # one connection id per client, its messages in order
    per_conn = {}
    for line in lines:
        per_conn.setdefault(line.split()[0], []).append(line.split()[3])
    assert len(per_conn) == n_clients
    for ids in per_conn.values():
        i = ids[0][1:].split("K")[0]
        assert ids == [f"G{i}K{k}" for k in range(per_client)], ids
    files = _check_stored(out_dir, acked, lines)
    assert len(files) == len(acked)
    # within a connection, name order is arrival order
    names = sorted(files)
    for i in range(n_clients):
        mine = [n for n in names if msh(files[n], 10).startswith(f"G{i}K")]
        assert [msh(files[n], 10) for n in mine] == [f"G{i}K{k}" for k in range(per_client)]
    assert lst.stop()[0] == 0
    assert stored(out_dir) == files


@pytest.mark.parametrize("ack", ["mllp", "hl7"])
def test_group_commit_pipelined_replies_in_order(listen, tmp_path, ack):
    """A client that sends many messages before reading any reply (more than the library's
    64 undecided replies per connection) gets every reply, in message order."""
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir, "--ack", ack, "--quiet")
    clients = [Client(lst.port, timeout=20) for _ in range(3)]
    n = 150
    sent = {i: [_msg(b"P%dN%d" % (i, k)) for k in range(n)] for i in range(len(clients))}

    def send_all(i):
        clients[i].send_raw(b"".join(SB + m + EB + CR for m in sent[i]))

    senders = [threading.Thread(target=send_all, args=(i,)) for i in range(len(clients))]
    for t in senders:
        t.start()
    for i, c in enumerate(clients):
        for k in range(n):
            r = c.recv_frame(timeout=20)
            if ack == "mllp":
                assert r == ACK, (i, k, r)
            else:
                assert hl7_ack_fields(r) == ("AA", f"P{i}N{k}"), (i, k, r)
    for t in senders:
        t.join(20)
    files = _check_stored(out_dir, [m for ms in sent.values() for m in ms])
    assert len(files) == len(clients) * n
    for i in range(len(clients)):
        assert [msh(m, 10) for m in files.values() if msh(m, 10).startswith(f"P{i}N")] == \
            [f"P{i}N{k}" for k in range(n)]
    assert lst.stop()[0] == 0


def test_group_commit_large_messages_past_the_queue_bound(listen, tmp_path):
    """More message bytes in flight than the writer's queue holds (64 MiB): the program
    waits for room instead of growing, and every message is still stored and acknowledged."""
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir, "--quiet")
    big = sample("oru_r01_1mib_ed.hl7")
    n_clients, per_client = 8, 10  # 80 MiB
    errors = []

    def run(i):
        try:
            c = Client(lst.port, timeout=30)
            c.send_raw(b"".join(SB + _msg(b"B%dN%d" % (i, k)) + big + EB + CR
                                for k in range(per_client)))
            for _ in range(per_client):
                assert c.recv_frame(timeout=30) == ACK
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors[:3]
    files = stored(out_dir)
    assert len(files) == n_clients * per_client
    assert sorted(files.values()) == sorted(_msg(b"B%dN%d" % (i, k)) + big
                                            for i in range(n_clients) for k in range(per_client))
    assert lst.stop()[0] == 0


@pytest.mark.parametrize("event_mode", [None, "DoEvents"])
def test_group_commit_sigterm_under_load(listen, tmp_path, event_mode):
    """Many clients, some pipelining, while SIGTERM arrives: exit 0 within 5 s; every message
    that got its ACK is on disk byte-identical; each stored at most once and complete; no
    temporary file left; replies that did come were in order."""
    out_dir = tmp_path / "out"
    extra = ["--config", "EventMode=DoEvents"] if event_mode else []
    lst = listen("--out-dir", out_dir, *extra)
    big = sample("oru_r01_1mib_ed.hl7")
    acked, errors = [], []
    stop = threading.Event()
    running = threading.Barrier(31)

    def closed_loop(i):
        try:
            c = Client(lst.port, timeout=10)
        except OSError as e:
            errors.append(e)
            running.abort()
            return
        running.wait(10)
        k = 0
        while not stop.is_set():
            m = _msg(b"L%dN%d" % (i, k)) + (big if i == 0 and k % 5 == 4 else b"")
            try:
                r = c.roundtrip(m, timeout=10)
            except (OSError, EOFError):
                break
            if r == ACK:
                acked.append(m)
            else:
                errors.append(("NAK", i, k))
            k += 1
        c.close()

    def pipelined(i):
        try:
            c = Client(lst.port, timeout=10)
        except OSError as e:
            errors.append(e)
            running.abort()
            return
        running.wait(10)
        k = 0
        while not stop.is_set():
            window = [_msg(b"W%dN%d" % (i, k + j)) for j in range(20)]
            try:
                c.send_raw(b"".join(SB + m + EB + CR for m in window))
                for m in window:
                    r = c.recv_frame(timeout=10)
                    if r != ACK:
                        errors.append(("NAK", i, msh(m, 10)))
                    acked.append(m)
            except (OSError, EOFError):
                break
            k += len(window)
        c.close()

    threads = [threading.Thread(target=closed_loop, args=(i,)) for i in range(25)]
    threads += [threading.Thread(target=pipelined, args=(i,)) for i in range(25, 30)]
    for t in threads:
        t.start()
    running.wait(10)
    time.sleep(1.5)
    before = len(acked)
    rc, took = lst.stop(signal.SIGTERM, timeout=5.0)
    stop.set()
    for t in threads:
        t.join(15)
    assert rc == 0 and took < 5.0, (rc, took)
    assert not errors, errors[:5]
    assert before > 30, f"only {before} messages acknowledged before SIGTERM"
    files = _check_stored(out_dir, acked)
    # what was queued when the signal came was stored and acknowledged before the
    # connections closed (not stored silently behind the clients' backs)
    unacked = {msh(f, 10) for f in files.values()} - {msh(m, 10) for m in acked}
    assert not unacked, f"stored but never acknowledged: {sorted(unacked)[:10]}"
    for f in files.values():  # complete messages only
        mid = msh(f, 10)
        assert re.fullmatch(r"[LW]\d+N\d+", mid), mid
        i, k = map(int, mid[1:].split("N"))
        assert f == _msg(mid.encode()) + (big if mid[0] == "L" and i == 0 and k % 5 == 4 else b"")


def test_group_commit_sigkill_under_load(listen, tmp_path):
    """Killed outright (no shutdown) while clients send: no acknowledgement may have left
    before its message was stored under its final name, complete. (Temporary files may
    remain; a power cut is not simulated, only the order of acknowledgement and storage.)"""
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir, "--quiet")
    acked, errors = [], []
    stop = threading.Event()

    def run(i):
        c = Client(lst.port, timeout=10)
        k = 0
        while not stop.is_set():
            m = _msg(b"K%dN%d" % (i, k), b"y" * (k % 300))
            try:
                r = c.roundtrip(m, timeout=10)
            except (OSError, EOFError):
                break
            if r == ACK:
                acked.append(m)
            else:
                errors.append(("NAK", i, k))
            k += 1
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    lst.proc.kill()
    lst.proc.wait(5)
    stop.set()
    for t in threads:
        t.join(15)
    assert not errors, errors[:5]
    assert acked
    final = {n: (out_dir / n).read_bytes() for n in os.listdir(out_dir) if not n.startswith(".")}
    for n in final:
        assert re.fullmatch(r"\d+-\d+-\d+\.hl7", n), n
    contents = set(final.values())
    missing = [msh(m, 10) for m in acked if m not in contents]
    assert not missing, f"acknowledged but not stored: {missing[:10]}"
    ids = [msh(f, 10) for f in final.values()]
    assert len(ids) == len(set(ids))
    for f in final.values():
        i, k = map(int, msh(f, 10)[1:].split("N"))
        assert f == _msg(b"K%dN%d" % (i, k), b"y" * (k % 300))
