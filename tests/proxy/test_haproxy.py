"""End to end: mllp-listen behind HAProxy itself, with the PROXY protocol (send-proxy and
send-proxy-v2), and HAProxy's health checks.

Run:  python3 -m pytest -q tests/proxy
      (MLLP_LISTEN=path/to/mllp-listen, default build/examples-c/mllp-listen;
       HAPROXY=path/to/haproxy, default from PATH; tests/setup.sh installs it)

The message goes through HAProxy from a client socket bound to 127.0.0.2 (still loopback), so
the address mllp-listen reports ("connection from ADDR:PORT" on stderr, with LogLevel=2) can
only be the original client's if it came from the PROXY header: HAProxy itself connects from
127.0.0.1. Every wait is bounded.
"""

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LISTEN = Path(os.environ.get("MLLP_LISTEN", REPO / "build" / "examples-c" / "mllp-listen"))
HAPROXY = os.environ.get("HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK = b"\x06"
WAIT = 10
MSG = b"MSH|^~\\&|SND|SFAC|RCV|RFAC|20260101120000||ADT^A01|HAP1|P|2.5\rPID|1||HAP1\r"

pytestmark = [
    pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built"),
    pytest.mark.skipif(not Path(HAPROXY).is_file(), reason="haproxy not installed (tests/setup.sh)"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A subprocess whose stderr (and stdout) lines are collected by threads."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.out = queue.Queue()
        self.err = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self):
        for line in self.proc.stdout:
            self.out.put(line.decode("utf-8", "replace").rstrip("\n"))

    def _read_err(self):
        for line in self.proc.stderr:
            with self._lock:
                self.err.append(line.decode("utf-8", "replace").rstrip("\n"))

    def stderr(self):
        with self._lock:
            return list(self.err)

    def wait_stderr(self, pred, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.stderr()):
                return True
            time.sleep(0.05)
        return pred(self.stderr())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        return self.proc.returncode


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


def start_listen(procs, mode):
    p = Proc([str(LISTEN), "--host", "127.0.0.1", "--port", "0",
              "--config", f"ProxyProtocol={mode}", "--config", "LogLevel=2"])
    procs.append(p)
    banner = p.out.get(timeout=WAIT)
    m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", banner)
    assert m, banner
    return p, int(m.group(1))


def start_haproxy(procs, tmp_path, backends):
    """backends: list of (front port, server line options, backend port)."""
    cfg = ["global", "    maxconn 100",
           "defaults", "    mode tcp", "    timeout connect 5s",
           "    timeout client 30s", "    timeout server 30s"]
    for i, (front, opts, back) in enumerate(backends):
        cfg += [f"frontend fe{i}", f"    bind 127.0.0.1:{front}", f"    default_backend be{i}",
                f"backend be{i}", f"    server s{i} 127.0.0.1:{back} {opts}"]
    path = tmp_path / "haproxy.cfg"
    path.write_text("\n".join(cfg) + "\n")
    check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    p = Proc([HAPROXY, "-f", str(path), "-db"])
    procs.append(p)
    return p


def send_through(port):
    """Sends MSG to 127.0.0.1:port from 127.0.0.2; returns (the client's port, the reply)."""
    deadline = time.monotonic() + WAIT
    while True:
        s = socket.socket()
        s.settimeout(WAIT)
        s.bind(("127.0.0.2", 0))
        try:
            s.connect(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            # HAProxy still starting.
            s.close()
            assert time.monotonic() < deadline, "HAProxy never listened"
            time.sleep(0.05)
    with s:
        s.sendall(SB + MSG + EB + CR)
        reply = b""
        while not reply.endswith(EB + CR):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return s.getsockname()[1], reply


@pytest.mark.parametrize("mode,option", [("V2", "send-proxy-v2"), ("V1", "send-proxy"), ("Any", "send-proxy-v2")])
def test_original_client_address_through_haproxy(procs, tmp_path, mode, option):
    lst, lport = start_listen(procs, mode)
    front = free_port()
    hap = start_haproxy(procs, tmp_path, [(front, option, lport)])
    cport, reply = send_through(front)
    assert reply == SB + ACK + EB + CR, (reply, lst.stderr(), hap.stderr())
    line = lst.out.get(timeout=WAIT)
    assert line.endswith(f" {len(MSG)} ADT^A01 HAP1"), line
    want = f"connection from 127.0.0.2:{cport}"
    assert lst.wait_stderr(lambda err: want in err), (lst.stderr(), hap.stderr())
    assert not [e for e in lst.stderr() if e.startswith("error:")], lst.stderr()


def test_without_header_the_connection_is_refused(procs, tmp_path):
    """HAProxy configured without send-proxy: mllp-listen refuses with 2050."""
    lst, lport = start_listen(procs, "V2")
    front = free_port()
    start_haproxy(procs, tmp_path, [(front, "", lport)])
    _, reply = send_through(front)
    assert reply == b""
    assert lst.wait_stderr(lambda err: any(e.startswith("error: 2050 ") for e in err)), lst.stderr()
    assert lst.out.empty()


def test_health_checks_do_not_spam_errors(procs, tmp_path):
    """`check` with send-proxy-v2 (checks send a LOCAL header) and with a check port (plain TCP
    checks, no header): both every 100 ms; neither logs errors, and HAProxy sees the server up."""
    lst, lport = start_listen(procs, "V2")
    front1, front2 = free_port(), free_port()
    hap = start_haproxy(procs, tmp_path, [
        (front1, "send-proxy-v2 check inter 100ms", lport),
        (front2, f"send-proxy-v2 check port {lport} inter 100ms", lport),
    ])
    # Checks with a LOCAL header are connections from HAProxy's own address.
    checks = lambda err: sum(1 for e in err if e.startswith("connection from 127.0.0.1:")) >= 10
    assert lst.wait_stderr(checks), (lst.stderr(), hap.stderr())
    # A message still goes through while the checks run.
    cport, reply = send_through(front2)
    assert reply == SB + ACK + EB + CR
    assert lst.wait_stderr(lambda err: f"connection from 127.0.0.2:{cport}" in err)
    assert lst.wait_stderr(checks)
    assert not [e for e in lst.stderr() if e.startswith("error:")], lst.stderr()
    assert not [e for e in hap.stderr() if "DOWN" in e], hap.stderr()
