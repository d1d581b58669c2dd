"""End-to-end tests of mllp-listen's resource bounds (issue 15), with the release binary.

- Under `ulimit -n 256`, 400 clients: the connections beyond the limit derived from the
  descriptor limit (256 less a reserve of 64) wait in the backlog; every client that gets in
  is served and its message file created; once clients leave, the backlog drains without a
  new arrival.
- An error storm (2 MiB of start blocks, 20,000 empty frames) costs a few stderr lines, not
  megabytes, and another client's round trips stay under 50 ms meanwhile (release build:
  the default binary, build/examples-c/mllp-listen, is built with CMAKE_BUILD_TYPE=Release).
- --idle-timeout closes silent connections; --max-buffered closes the clients holding the
  most partial data (error 2013) while complete messages keep being acknowledged.

Run:  python3 -m pytest -q tests/listen/test_limits.py   (MLLP_LISTEN as for test_listen.py)
Every wait is bounded; 127.0.0.1 only.
"""

import resource
import socket
import subprocess
import threading
import time

from test_listen import ACK, CR, EB, NAK, SB, Client, Listener, listen  # noqa: F401

MSG = b"MSH|^~\\&|SND|FAC|RCV|FAC|20240101||ADT^A01|%d|P|2.5\rPID|1||X\r"


class LimitedListener(Listener):
    """mllp-listen started with RLIMIT_NOFILE lowered to `nofile` (soft and hard)."""

    def __init__(self, tmp_path, nofile, *args):
        real_popen = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            return real_popen(*a, **kw)

        subprocess.Popen = popen
        try:
            super().__init__(tmp_path, *args)
        finally:
            subprocess.Popen = real_popen


def test_descriptor_limit_backlog_drains_and_files_are_created(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    out = tmp_path / "out"
    lst = LimitedListener(tmp_path, 256, "--out-dir", out, "--quiet")
    clients = []
    try:
        for i in range(400):
            c = Client(lst.port, timeout=30)
            c.send(MSG % i)
            clients.append(c)
        # All 400 are connected (the backlog holds the ones not yet accepted) before any
        # leaves: the later ones are accepted only because earlier ones close.
        for i, c in enumerate(clients):
            assert c.recv_frame(30) == ACK, f"client {i} not acknowledged"
            c.close()
        files = [p for p in out.iterdir() if not p.name.startswith(".")]
        assert len(files) == 400, f"{len(files)} message files; stderr: {lst.stderr()[-2000:]}"
        assert "Too many open files" not in lst.stderr()
        # And the server still serves new clients.
        c = Client(lst.port)
        assert c.roundtrip(MSG % 400) == ACK
        c.close()
    finally:
        for c in clients:
            c.close()
        lst.kill()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_accept_out_of_descriptors_is_retried_and_the_backlog_drains(tmp_path):
    """MaxConnections set high (no derived limit): accept runs out of descriptors (EMFILE).
    It is retried on a timer and after closes, so every client is answered once others
    leave, without a new arrival; stderr reports it a few times, not per retry."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    lst = LimitedListener(tmp_path, 128, "--config", "MaxConnections=100000")
    clients = []
    try:
        for i in range(300):
            c = Client(lst.port, timeout=30)
            c.send(MSG % i)
            clients.append(c)
        for i, c in enumerate(clients):
            assert c.recv_frame(30) in (ACK, NAK), f"client {i} not answered"
            c.close()
        err = lst.stderr()
        assert "Too many open files" in err
        assert err.count("Too many open files") <= 5, err[-2000:]
        c = Client(lst.port)
        assert c.roundtrip(MSG % 300) == ACK
        c.close()
    finally:
        for c in clients:
            c.close()
        lst.kill()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def probe_during(port, storm):
    """Runs storm(sock) on a connection of its own while a second client does round trips;
    returns the slowest round trip, seconds, and how many there were."""
    probe = Client(port)
    assert probe.roundtrip(MSG % 0) == ACK
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t = threading.Thread(target=storm, args=(s,))
    t.start()
    worst, n = 0.0, 0
    while t.is_alive():
        t0 = time.monotonic()
        assert probe.roundtrip(MSG % (n + 1)) == ACK
        worst = max(worst, time.monotonic() - t0)
        n += 1
        time.sleep(0.002)
    t.join()
    probe.close()
    s.close()
    return worst, n


def test_error_storms_are_a_few_stderr_lines_and_do_not_stall_others(listen):
    lst = listen()

    def start_blocks(s):
        s.sendall(SB * (2 << 20))
        s.sendall(SB + MSG % 99 + EB + CR)
        got = b""
        while not got.endswith(EB + CR):
            got += s.recv(4096)
        assert got == SB + ACK + EB + CR

    worst1, n1 = probe_during(lst.port, start_blocks)

    def empty_frames(s):
        n = 20000
        got = []

        def read():
            total = 0
            while total < 4 * n:
                b = s.recv(65536)
                assert b, "closed"
                got.append(b)
                total += len(b)

        r = threading.Thread(target=read)
        r.start()
        s.sendall((SB + EB + CR) * n)
        r.join(30)
        assert b"".join(got) == (SB + NAK + EB + CR) * n

    worst2, n2 = probe_during(lst.port, empty_frames)
    time.sleep(1.5)  # the "repeated N times" reports come at the end of their second
    err = lst.stderr()
    lines = err.splitlines()
    assert len(err) < 4096 and len(lines) <= 20, f"{len(err)} bytes of stderr: {err[:1000]}"
    assert any("repeated" in line for line in lines), err
    assert n1 > 0 and n2 > 0
    print(f"worst round trip: {worst1 * 1000:.2f} ms ({n1}) during start blocks, "
          f"{worst2 * 1000:.2f} ms ({n2}) during empty frames; stderr {len(err)} bytes")
    assert worst1 < 0.05, f"round trip {worst1 * 1000:.1f} ms during 2 MiB of start blocks"
    assert worst2 < 0.05, f"round trip {worst2 * 1000:.1f} ms during 20000 empty frames"


def test_idle_timeout_closes_silent_connections(listen):
    lst = listen("--idle-timeout", "1")
    idle = Client(lst.port)
    busy = Client(lst.port)
    for i in range(8):
        assert busy.roundtrip(MSG % i) == ACK
        time.sleep(0.25)
    assert idle.at_eof(3)
    assert busy.roundtrip(MSG % 9) == ACK


def test_max_buffered_closes_the_largest_partial_senders(listen):
    lst = listen("--max-buffered", str(4 << 20))
    sender = Client(lst.port)
    holders = []
    for i in range(8):
        c = Client(lst.port)
        try:
            c.send_raw(SB + b"x" * (1 << 20))
        except OSError:
            pass  # closed already: the budget at work
        holders.append(c)
        assert sender.roundtrip(MSG % i) == ACK
    closed = sum(1 for c in holders if c.at_eof(1))
    assert closed >= 4, f"{closed} of 8 closed; stderr: {lst.stderr()}"
    assert "2013" in lst.stderr()
    assert sender.roundtrip(MSG % 100) == ACK
