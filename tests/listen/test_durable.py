"""End-to-end tests of mllp-listen --out-dir's durability rules, from the outside.

- The order of the system calls, read from `strace -f` (Debian's strace, installed by
  tests/setup.sh): for every acknowledged message, its file's data is synced (syncfs for a
  batch on ext4/XFS, fdatasync for a batch of one) after the data was written and before the
  file gets its final name, and the directory is fsynced after that name was given and before
  the acknowledgement naming the message (--ack hl7: MSA-2 is its MSH-10) is written to the
  socket.
  The checker itself is tested on made-up traces in each wrong order.
- A failed sync (EIO injected by strace into syncfs, or into the directory fsync) refuses the
  whole batch: no final name, no temporary file left, the accepted ones stored.
- A directory --out-dir creates is fsynced, and so is its parent, before the server listens.
- Temporary files (.tmp-PID-N) an earlier process left are removed at start-up, never given
  final names; kept while another mllp-listen uses the directory.
- kill -9 under load, then a restart: every acknowledged message is in a final file,
  byte-exact, and no temporary file is left.

Run:  python3 -m pytest -q tests/listen/test_durable.py   (MLLP_LISTEN as for test_listen.py)
Every wait is bounded; 127.0.0.1 only.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_listen import ACK, LISTEN, Client, Listener, listen  # noqa: F401

IO_TIMEOUT = 30  # strace slows every system call down
STRACE = shutil.which("strace")


def _can_trace():
    """strace is installed and may trace here (a container may forbid ptrace)."""
    if STRACE is None:
        return False
    try:
        return subprocess.run([STRACE, "-f", "-o", os.devnull, "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built")
needs_strace = pytest.mark.skipif(
    not _can_trace(), reason="strace not installed (tests/setup.sh) or ptrace not allowed")


def _msg(cid, body=b"PID|1||P1^^^H^MR||DOE^JOHN\r"):
    """An ADT^A01 with MSH-10 `cid`."""
    return b"MSH|^~\\&|SND|FAC|RCV|RFAC|20240101120000||ADT^A01^ADT_A01|%s|P|2.5\r%s" % (cid, body)


def final_files(out_dir):
    """{name: bytes} of the files under final names; asserts every name has the final form."""
    out = {}
    for n in os.listdir(out_dir):
        if n.startswith("."):
            continue
        assert re.fullmatch(r"\d+-\d+-\d+\.hl7", n), n
        out[n] = (Path(out_dir) / n).read_bytes()
    return out


def temporary_files(out_dir):
    return sorted(n for n in os.listdir(out_dir) if n.startswith(".tmp-"))


def syncfs_expected(path):
    """mllp-listen uses syncfs for batches on ext4 and XFS from Linux 5.8 (syncfs_usable)."""
    magic = subprocess.run(["stat", "-f", "-c", "%t", str(path)], capture_output=True,
                           text=True).stdout.strip()
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    return magic in ("ef53", "58465342") and (major, minor) >= (5, 8)


# ---------------------------------------------------------------------------------------------
# mllp-listen under strace


class Traced(Listener):
    """mllp-listen run as `strace -f -ttt -T -y -s 4096 -o TRACE -e trace=... mllp-listen`.
    Stopped by SIGTERM to mllp-listen itself (strace would detach, not stop it)."""

    CALLS = ("openat,write,writev,sendto,sendmsg,fdatasync,fsync,syncfs,rename,renameat,"
             "renameat2,link,linkat,mkdir,mkdirat,listen")

    def __init__(self, tmp_path, *args, inject=()):
        self.trace = tmp_path / f"trace-{time.monotonic_ns()}.txt"
        self.args = [STRACE, "-f", "-ttt", "-T", "-y", "-s", "4096", "-o", str(self.trace),
                     "-e", "trace=" + self.CALLS, *inject, "--", str(LISTEN), "--port", "0",
                     *map(str, args)]
        self.err_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.banner = self.next_line(IO_TIMEOUT)
        m = re.fullmatch(r"listening on (\S+):(\d+)", self.banner or "")
        if not m:
            self.kill()
            err = self.err_path.read_text("utf-8", "replace")
            raise AssertionError(f"no banner ({self.banner!r}); stderr: {err}")
        self.host, self.port = m.group(1), int(m.group(2))

    def traced_pid(self, timeout=10):
        deadline = time.monotonic() + timeout
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        while time.monotonic() < deadline:
            try:
                kids = Path(path).read_text().split()
            except OSError:
                kids = []
            if kids:
                return int(kids[0])
            time.sleep(0.01)
        raise AssertionError("strace started no process")

    def kill(self):
        # SIGKILL to strace would only detach it: kill the traced mllp-listen first.
        if self.proc.poll() is None:
            try:
                os.kill(self.traced_pid(1), signal.SIGKILL)
            except (AssertionError, ProcessLookupError):
                pass
        super().kill()

    def stop_traced(self, timeout=20):
        os.kill(self.traced_pid(), signal.SIGTERM)
        rc = self.wait(timeout)
        assert rc == 0, f"strace/mllp-listen exit {rc}; stderr: {self.stderr()}"
        return parse_strace(self.trace.read_text("utf-8", "replace"))


CALL = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
RESULT = re.compile(r"^(.*)\)\s+=\s+(-?\d+)(\S*)(?:\s.*?)?\s+<(\d+\.\d+)>$")


class Call:
    def __init__(self, pid, name, args, result, path, start, end):
        self.pid, self.name, self.args, self.result = pid, name, args, result
        self.path, self.start, self.end = path, start, end

    def fd_path(self):
        """The path strace -y shows for the first argument's descriptor ('' when none)."""
        m = re.match(r"-?\d+<([^>]*)>", self.args)
        return m.group(1) if m else ""

    def __repr__(self):
        return f"{self.name}({self.args[:120]}) = {self.result} @{self.start:.6f}-{self.end:.6f}"


def parse_strace(text):
    """The completed calls of an `strace -f -ttt -T -y` log, unfinished/resumed pairs joined:
    [Call] in start order, each with start and end times (end = start + its -T duration)."""
    pending, calls = {}, []
    for line in text.splitlines():
        m = CALL.match(line)
        if not m:
            continue
        pid, t, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if rest.startswith(("+++", "---")):
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (t, rest[: -len("<unfinished ...>")].rstrip())
            continue
        r = re.match(r"<\.\.\. (\w+) resumed>\s?(.*)$", rest)
        if r:
            if pid not in pending:
                continue
            t, head = pending.pop(pid)
            rest = head + r.group(2)
        res = RESULT.match(rest)
        if not res:
            continue
        body, value, path, dur = res.group(1), int(res.group(2)), res.group(3), float(res.group(4))
        name, _, args = body.partition("(")
        calls.append(Call(pid, name, args, value, path.strip("<>"), t, t + dur))
    calls.sort(key=lambda c: c.start)
    return calls


def check_order(calls, out_dir, acked_ids):
    """For every control id in `acked_ids`: write of its data to a temporary file W, a data sync
    S covering that file (fdatasync/fsync of it, or syncfs) with W.end <= S.start and
    S.end <= R.start, the final name R (renameat2/renameat/linkat of that temporary file), a
    directory fsync D with R.end <= D.start and D.end <= A.start, and the acknowledgement A
    written to a socket. Returns {control id: (sync call name, final name)}."""
    out_dir = os.path.realpath(out_dir)
    ok = [c for c in calls if c.result >= 0]
    writes = [c for c in ok if c.name == "write" and "/.tmp-" in c.fd_path()]
    names = [c for c in ok if c.name in ("renameat2", "renameat", "linkat", "rename", "link")]
    dir_syncs = [c for c in ok if c.name == "fsync" and c.fd_path() == out_dir]
    sends = [c for c in ok if c.name in ("write", "writev", "sendto", "sendmsg")
             and ("socket:" in c.fd_path() or "TCP" in c.fd_path())]
    seen = {}
    for cid in acked_ids:
        w = [c for c in writes if f"|{cid}|" in c.args]
        assert len(w) == 1, f"{cid}: writes of its data to a temporary file: {w}"
        w = w[0]
        tmp = os.path.basename(w.fd_path())
        r = [c for c in names if f'"{tmp}"' in c.args]
        assert len(r) == 1, f"{cid}: final names given to {tmp}: {r}"
        r = r[0]
        final = re.findall(r'"([^"]+)"', r.args)[-1]
        syncs = [c for c in ok if w.end <= c.start and c.end <= r.start and
                 (c.name == "syncfs" or (c.name in ("fdatasync", "fsync")
                                         and os.path.basename(c.fd_path()) == tmp))]
        assert syncs, f"{cid}: no data sync of {tmp} between its write {w} and its name {r}"
        ack = re.compile(r"MSA\|AA\|" + re.escape(cid) + r"(\\r|\|)")
        a = [c for c in sends if ack.search(c.args)]
        assert len(a) == 1, f"{cid}: acknowledgements written: {a}"
        a = a[0]
        d = [c for c in dir_syncs if r.end <= c.start and c.end <= a.start]
        assert d, f"{cid}: no fsync of {out_dir} between its name {r} and its ACK {a}"
        seen[cid] = (syncs[-1].name, final)
    return seen


def send_pipelined(port, prefix, conns, per_conn, refused=None):
    """`conns` connections each send `per_conn` messages at once, then read the replies.
    Returns {control id: message} of those acknowledged with AA; those answered AE go to
    `refused` when given (else they are errors)."""
    acked, errors, lock = {}, [], threading.Lock()

    def run(i):
        try:
            c = Client(port, timeout=IO_TIMEOUT)
            msgs = {f"{prefix}{i}N{k}": _msg(b"%s%dN%d" % (prefix.encode(), i, k))
                    for k in range(per_conn)}
            c.send_raw(b"".join(b"\x0b" + m + b"\x1c\r" for m in msgs.values()))
            for cid, m in msgs.items():
                r = c.recv_frame(IO_TIMEOUT)
                if b"MSA|AA|" + cid.encode() in r:
                    with lock:
                        acked[cid] = m
                elif refused is not None and b"MSA|AE|" + cid.encode() in r:
                    with lock:
                        refused[cid] = m
                else:
                    errors.append((cid, r))
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
    assert not errors, errors[:5]
    return acked


@needs_strace
def test_batch_sync_order_under_strace(tmp_path):
    """Many connections at once: batches form. Every file's data is synced before its final
    name, every name made durable (directory fsync) before its ACK is written."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    lst = Traced(tmp_path, "--out-dir", out_dir, "--ack", "hl7", "--quiet")
    try:
        acked = send_pipelined(lst.port, "B", conns=20, per_conn=10)
        calls = lst.stop_traced()
    finally:
        lst.kill()
    assert len(acked) == 200
    seen = check_order(calls, out_dir, acked)
    files = final_files(out_dir)
    for cid, (_, final) in seen.items():
        assert files[final] == acked[cid], cid
    assert not temporary_files(out_dir)
    file_syncs = [c for c in calls if c.name == "fdatasync" and "/.tmp-" in c.fd_path()]
    syncfs = [c for c in calls if c.name == "syncfs"]
    if syncfs_expected(out_dir):
        # group commit: fewer data syncs than files (each syncfs covered a batch)
        assert syncfs, "no syncfs on ext4/XFS"
        assert len(syncfs) + len(file_syncs) < len(acked), (len(syncfs), len(file_syncs))
        assert all(c.fd_path() == os.path.realpath(out_dir) for c in syncfs)


@needs_strace
def test_single_messages_use_fdatasync_under_strace(tmp_path):
    """One connection, one message at a time: every batch holds one file, synced with
    fdatasync (never worse than a syncfs for one file), in the same order."""
    out_dir = tmp_path / "out"
    lst = Traced(tmp_path, "--out-dir", out_dir, "--ack", "hl7", "--quiet")
    acked = {}
    try:
        c = Client(lst.port, timeout=IO_TIMEOUT)
        for k in range(5):
            m = _msg(b"S%d" % k)
            r = c.roundtrip(m, IO_TIMEOUT)
            assert b"MSA|AA|S%d" % k in r, r
            acked[f"S{k}"] = m
        c.close()
        calls = lst.stop_traced()
    finally:
        lst.kill()
    seen = check_order(calls, out_dir, acked)
    assert {s for s, _ in seen.values()} == {"fdatasync"}, seen
    assert not [c for c in calls if c.name == "syncfs"]


@needs_strace
@pytest.mark.parametrize("fault", ["syncfs", "directory-fsync"])
def test_sync_failure_refuses_the_whole_batch(tmp_path, fault):
    """strace injects EIO: into every syncfs (each batch of several files is refused whole,
    batches of one still go through fdatasync), or into the first directory fsync (that
    batch's names are removed again and it is refused). A refused message (AE) is under no
    final name, an accepted one (AA) is stored byte-exact; no temporary file is left."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()  # exists: the first fsync mllp-listen makes is a batch's directory fsync
    if fault == "syncfs" and not syncfs_expected(out_dir):
        pytest.skip("syncfs is used on ext4 and XFS only (Linux 5.8+)")
    inject = {"syncfs": ["-e", "inject=syncfs:error=EIO"],
              "directory-fsync": ["-e", "inject=fsync:error=EIO:when=1"]}[fault]
    lst = Traced(tmp_path, "--out-dir", out_dir, "--ack", "hl7", inject=inject)
    refused = {}
    try:
        acked = send_pipelined(lst.port, "E", conns=20, per_conn=5, refused=refused)
        calls = lst.stop_traced()
    finally:
        lst.kill()
    assert len(acked) + len(refused) == 100
    failed = [c for c in calls if c.result < 0 and
              (c.name == "syncfs" if fault == "syncfs" else c.name == "fsync")]
    assert failed, "nothing was injected"
    assert refused, "a failed sync refused nothing"
    stored = list(final_files(out_dir).values())
    assert sorted(stored) == sorted(acked.values())
    for m in refused.values():
        assert m not in stored
    assert not temporary_files(out_dir)
    step = "syncfs" if fault == "syncfs" else "fsync directory"
    err = lst.err_path.read_text("utf-8", "replace")
    assert f"({step}: Input/output error); refusing it" in err, err
    check_order(calls, out_dir, acked)


EVENTS = {  # one message's calls as strace -f -ttt -T -y writes them (%s: start time)
    "open": '10 %s openat(3</o>, ".tmp-10-1", O_WRONLY|O_CREAT) = 7</o/.tmp-10-1> <0.000010>',
    "write": '10 %s write(7</o/.tmp-10-1>, "MSH|^~\\&|A|B|C|D|1||ADT^A01|X1|P|2.5\\r", 40)'
             ' = 40 <0.000010>',
    "syncfs": '10 %s syncfs(3</o>) = 0 <0.000100>',
    "name": '10 %s renameat2(3</o>, ".tmp-10-1", 3</o>, "0000000001-1-1.hl7",'
            ' RENAME_NOREPLACE) = 0 <0.000010>',
    "dirsync": '10 %s fsync(3</o>) = 0 <0.000100>',
    "ack": '11 %s sendto(9<socket:[1]>, "\\vMSH|...\\rMSA|AA|X1\\r\\34\\r", 30,'
           ' MSG_NOSIGNAL, NULL, 0) = 30 <0.000010>',
}


@pytest.mark.parametrize("order,error", [
    ("open write syncfs name dirsync ack", None),
    ("open write syncfs name ack dirsync", "no fsync of /o"),
    ("open write name syncfs dirsync ack", "no data sync"),
    ("open syncfs write name dirsync ack", "no data sync"),
])
def test_order_checker_on_made_up_traces(order, error):
    """The checker above must pass the right order and fail each wrong one."""
    lines = [EVENTS[e] % f"100.{(i + 1) * 1000:06d}" for i, e in enumerate(order.split())]
    calls = parse_strace("\n".join(lines))
    if error is None:
        assert check_order(calls, "/o", ["X1"]) == {"X1": ("syncfs", "0000000001-1-1.hl7")}
    else:
        with pytest.raises(AssertionError, match=error):
            check_order(calls, "/o", ["X1"])


@needs_strace
def test_created_out_dir_and_parents_fsynced_before_listening(tmp_path):
    """--out-dir a/b/out where a does not exist: each directory created is fsynced, and so is
    the directory holding its entry, before the server listens."""
    base = tmp_path / "base"
    base.mkdir()
    out_dir = base / "a" / "b" / "out"
    lst = Traced(tmp_path, "--out-dir", out_dir, "--quiet")
    try:
        calls = lst.stop_traced()
    finally:
        lst.kill()
    listen_at = min(c.start for c in calls if c.name == "listen")
    made = [c for c in calls if c.name in ("mkdir", "mkdirat") and c.result == 0]
    made_paths = [os.path.realpath(re.findall(r'"([^"]+)"', c.args)[0]) for c in made]
    want = [os.path.realpath(p) for p in (base / "a", base / "a" / "b", out_dir)]
    assert made_paths == want, made_paths
    fsyncs = [c for c in calls if c.name == "fsync" and c.result == 0]
    for mk, path in zip(made, made_paths):
        for d in (path, os.path.dirname(path)):
            f = [c for c in fsyncs if c.fd_path() == d and mk.end <= c.start and c.end <= listen_at]
            assert f, f"no fsync of {d} after creating {path} and before listen"


# ---------------------------------------------------------------------------------------------
# Leftovers of an earlier process


def test_leftovers_removed_at_startup_never_named(listen, tmp_path):
    """Temporary files of dead processes (a pid that does not exist, pid 1 which does: what
    counts is that no mllp-listen holds the directory, not whether a pid is alive) are
    removed, not renamed; stored files are untouched; numbering goes on after them."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "0000000005-1-1.hl7").write_bytes(_msg(b"OLD"))
    leftovers = {".tmp-99999-1": b"MSH|^~\\&|half", ".tmp-99999-2": _msg(b"CRASHED"),
                 ".tmp-1-7": _msg(b"PID1"), ".tmp-99999-probe": b""}
    for n, data in leftovers.items():
        (out_dir / n).write_bytes(data)
    (out_dir / ".other-hidden").write_bytes(b"x")  # not ours: left alone
    lst = listen("--out-dir", out_dir)
    assert temporary_files(out_dir) == []
    assert (out_dir / ".other-hidden").exists()
    assert final_files(out_dir) == {"0000000005-1-1.hl7": _msg(b"OLD")}
    err = lst.stderr()
    assert re.search(r"removed 4 temporary file\(s\) left by an earlier run", err), err
    c = Client(lst.port)
    assert c.roundtrip(_msg(b"NEW")) == ACK
    c.close()
    lst.message_lines(1)
    files = final_files(out_dir)
    assert set(files.values()) == {_msg(b"OLD"), _msg(b"NEW")}
    new = [n for n, d in files.items() if d == _msg(b"NEW")][0]
    assert int(new.split("-")[0]) > 5


def test_leftovers_kept_while_another_listener_uses_the_directory(listen, tmp_path):
    """A second mllp-listen on a directory a running one uses cannot tell that one's live
    temporary files from leftovers: it keeps them all (one line says so). The next start-up
    with the directory to itself removes them."""
    out_dir = tmp_path / "out"
    first = listen("--out-dir", out_dir)
    (out_dir / ".tmp-99999-1").write_bytes(b"left by a crash")
    second = listen("--out-dir", out_dir)
    assert temporary_files(out_dir) == [".tmp-99999-1"]
    assert re.search(r"kept 1 temporary file\(s\): another mllp-listen is using this directory",
                     second.stderr()), second.stderr()
    # both still store
    for lst, cid in ((first, b"F1"), (second, b"S1")):
        c = Client(lst.port)
        assert c.roundtrip(_msg(cid)) == ACK
        c.close()
    assert first.stop()[0] == 0 and second.stop()[0] == 0
    third = listen("--out-dir", out_dir)
    assert temporary_files(out_dir) == []
    assert "removed 1 temporary file(s)" in third.stderr()
    assert set(final_files(out_dir).values()) == {_msg(b"F1"), _msg(b"S1")}


def test_sigkill_under_load_then_restart(listen, tmp_path):
    """kill -9 while 20 connections send: after a restart on the same directory every
    acknowledged message is in a final file, byte-exact, once; no temporary file is left."""
    out_dir = tmp_path / "out"
    lst = listen("--out-dir", out_dir, "--quiet")
    acked, errors = [], []
    enough = threading.Event()
    stop = threading.Event()

    def run(i):
        c = Client(lst.port, timeout=10)
        k = 0
        while not stop.is_set():
            m = _msg(b"K%dN%d" % (i, k), b"PID|1||" + b"y" * (k % 700) + b"\r")
            try:
                r = c.roundtrip(m, timeout=10)
            except (OSError, EOFError):
                break
            if r == ACK:
                acked.append(m)
                if len(acked) >= 400:
                    enough.set()
            else:
                errors.append(("NAK", i, k))
            k += 1
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    assert enough.wait(30), f"only {len(acked)} acknowledged"
    lst.proc.send_signal(signal.SIGKILL)  # while the clients keep sending
    assert lst.wait(5) == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(15)
    assert not errors, errors[:5]
    left = temporary_files(out_dir)
    again = listen("--out-dir", out_dir, "--quiet")
    assert temporary_files(out_dir) == []
    if left:
        assert f"removed {len(left)} temporary file(s)" in again.stderr(), again.stderr()
    files = final_files(out_dir)
    contents = list(files.values())
    assert len(contents) == len(set(contents)), "a message stored twice"
    missing = [m for m in acked if m not in set(contents)]
    assert not missing, f"{len(missing)} acknowledged messages not stored, e.g. {missing[0][:60]!r}"
    # and the restarted server stores after the numbers already used
    c = Client(again.port)
    assert c.roundtrip(_msg(b"AFTER")) == ACK
    c.close()
    after = final_files(out_dir)
    assert len(after) == len(files) + 1
