"""The README's install, receiver and build steps, run as written.

The blocks are read from bindings/python/README.md (the fenced block after each
``<!-- tested: NAME ... -->`` line), so the README and this test cannot drift apart:

1. ``install``: run with bash from the repository root, with ``HOME`` pointed at a temporary
   directory (the README's ``~/mllp-venv`` is a fresh venv there) and without ``PYTHONPATH`` /
   ``MLLP_LIBRARY``: ``pip install ./bindings/python`` builds the wheel (setuptools-rust, build
   isolation from PyPI) and ``import mllp`` must then load the library from site-packages.
2. ``receiver``: the five lines, saved as receiver.py and run by the venv's python (in the
   temporary directory, away from the source tree) on a free port instead of 2575; a real MLLP
   client (python-hl7's ``MLLPClient``) sends a message and must get an HL7 ACK back; then the
   ``sender`` block (sender.py, same venv) sends to it and must print its ``AA``.
3. ``build``: run after the venv's activation line; ``python -m build bindings/python`` must
   write the sdist and the same wheel as step 1 (same files, same libmllp.so), and
   ``auditwheel show`` must report the manylinux tag the README states.

Cargo reuses the repository's ``target/`` (``CARGO_TARGET_DIR`` unless already set), so only the
mllp crate itself is recompiled. Every step is bounded in time. ``MLLP_SKIP_README_TEST=1``
skips that test (it takes a minute or two); so does a missing ``cargo``.

``test_readme_sender`` is quick and always runs: the ``sender`` block, run by this interpreter
with this source tree's package, against an in-process ``mllp.Server`` (AckMode=HL7, the
receiver's setup) on a free port.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Dict

import pytest

HERE = Path(__file__).resolve().parents[1]  # bindings/python
REPO = HERE.parents[1]
README = HERE / "README.md"
SAMPLES = Path(os.environ.get("MLLP_SAMPLES") or REPO / "tests" / "data")

skip_slow = pytest.mark.skipif(
    os.environ.get("MLLP_SKIP_README_TEST") == "1", reason="MLLP_SKIP_README_TEST=1"
)


def readme_block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- tested: " + re.escape(name) + r"\b[^>]*-->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no block marked <!-- tested: {name} -->"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path) -> Dict[str, str]:
    """The environment of a new user's shell: no binding paths, HOME in the temporary dir."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "MLLP_LIBRARY", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDEVMODE"):
        env.pop(var, None)
    real_home = Path(os.path.expanduser("~"))
    # Rust's toolchain lives under the real HOME; keep it (and its crate cache) reachable.
    for var, default in (("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")):
        if var not in env and (real_home / default).is_dir():
            env[var] = str(real_home / default)
    env["HOME"] = str(home)
    env.setdefault("CARGO_TARGET_DIR", str(REPO / "target"))
    # `python3` is this interpreter (not a shim that needs the real HOME, e.g. pyenv's).
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_bash(script: str, env: Dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, (
        f"exit {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-6000:]}"
    )
    return p


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the receiver exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the receiver did not start listening")


def mllp_exchange(port: int, message: bytes) -> bytes:
    """python-hl7's MLLPClient when installed (setup.sh installs it), else a raw socket."""
    try:
        from hl7.client import MLLPClient
    except ImportError:  # pragma: no cover - CI has python-hl7
        MLLPClient = None
    if MLLPClient is not None:
        with MLLPClient("127.0.0.1", port) as client:
            client.socket.settimeout(10)
            reply = client.send_message(message)
            while not reply.endswith(b"\x1c\r"):
                chunk = client.socket.recv(4096)
                assert chunk, f"connection closed after {reply!r}"
                reply += chunk
            return reply
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x0b" + message + b"\x1c\r")
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            chunk = s.recv(4096)
            assert chunk, f"connection closed after {reply!r}"
            reply += chunk
        return reply


def wheel_contents(path: Path) -> Dict[str, str]:
    with zipfile.ZipFile(path) as z:
        return {
            n: hashlib.sha256(z.read(n)).hexdigest()
            for n in z.namelist()
            if not n.endswith(".dist-info/RECORD")
        }


def check_sender_output(out: str) -> None:
    """What the README's sender prints for a message its receiver acknowledged."""
    lines = out.splitlines()
    assert any(ln.startswith("ack AA MSG00001") for ln in lines), out
    assert any(re.fullmatch(r"sent \d+ AA 1", ln) for ln in lines), out


def test_readme_sender(tmp_path: Path) -> None:
    import mllp  # this source tree's package (test.sh puts it on PYTHONPATH)

    sender = readme_block("sender")
    assert "2575" in sender and len(sender.strip().splitlines()) <= 10, sender
    got = []
    with mllp.Server(local_host="127.0.0.1", local_port=0, config=["AckMode=HL7"]) as server:
        server.on_message = lambda e: got.append(e.data)
        server.start_listening()
        (tmp_path / "sender.py").write_text(sender.replace("2575", str(server.local_port)))
        env = dict(os.environ)
        env["PYTHONPATH"] = str(HERE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["MLLP_LIBRARY"] = str(Path(mllp.library_path).resolve())  # the library loaded here
        p = subprocess.run(
            [sys.executable, "sender.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert p.returncode == 0 and "Traceback" not in p.stderr, (p.stdout, p.stderr)
    check_sender_output(p.stdout)
    assert len(got) == 1 and got[0].startswith(b"MSH|^~\\&|APP|") and b"|MSG00001|" in got[0]


@skip_slow
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not on the PATH")
def test_readme_install_receiver_and_build(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)

    # 1. Install as written; then where does `import mllp` load the library from?
    install = readme_block("install")
    activate = [ln for ln in install.splitlines() if re.match(r"\s*(\.|source)\s.*activate", ln)]
    assert len(activate) == 1, install
    probe = 'python -c "import mllp, sys; print(mllp.library_path); print(sys.prefix)"'
    out = run_bash(install + "\n" + probe + "\n", env, timeout=600).stdout.splitlines()
    library, prefix = out[-2], out[-1]
    assert Path(prefix).resolve().is_relative_to(home.resolve()), prefix  # the README's venv
    assert Path(library).resolve() == (
        Path(prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        / "site-packages" / "mllp" / "libmllp.so"
    ).resolve(), library
    python = Path(prefix) / "bin" / "python"

    # 2. The five-line receiver against a real MLLP client.
    receiver = readme_block("receiver")
    assert len(receiver.strip().splitlines()) == 5, receiver
    assert "2575" in receiver
    port = free_port()
    work = tmp_path / "app"
    work.mkdir()
    (work / "receiver.py").write_text(receiver.replace("2575", str(port)))
    proc = subprocess.Popen(
        [str(python), "receiver.py"],
        cwd=work,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_listening(port, proc)
        message = (SAMPLES / "adt_a01.hl7").read_bytes()
        reply = mllp_exchange(port, message)
        # The README's sender, in the same venv, to the same receiver.
        (work / "sender.py").write_text(readme_block("sender").replace("2575", str(port)))
        sent = subprocess.run(
            [str(python), "sender.py"], cwd=work, env=env, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0 and "Traceback" not in sent.stderr, (sent.stdout, sent.stderr)
        check_sender_output(sent.stdout)
        out, err = proc.communicate("\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, (out, err)
    assert "Traceback" not in err, err
    assert reply.startswith(b"\x0bMSH|") and b"\rMSA|AA|MSG00001" in reply, reply
    assert "received MSH|^~\\&|ADT1" in out, out

    # 3. python -m build, as written, in the same venv.
    dist = HERE / "dist"
    had_dist = dist.exists()
    before = set(dist.glob("*")) if had_dist else set()
    build = readme_block("build")
    try:
        run_bash(activate[0] + "\n" + build, env, timeout=600)
        made = sorted(set(dist.glob("*")) - before) if had_dist else sorted(dist.glob("*"))
        names = sorted(p.name for p in made)
        text = README.read_text(encoding="utf-8")
        for name in names:
            assert f"bindings/python/dist/{name}" in text, f"README does not name {name}"
        wheels = [p for p in made if p.suffix == ".whl"]
        assert len(wheels) == 1 and any(n.endswith(".tar.gz") for n in names), names
        wheel = wheels[0]
        assert wheel.name.endswith("-py3-none-linux_x86_64.whl"), wheel.name
        with zipfile.ZipFile(wheel) as z:
            assert "mllp/libmllp.so" in z.namelist()
        sdist = next(p for p in made if p.name.endswith(".tar.gz"))
        with tarfile.open(sdist) as t:
            sdist_members = t.getnames()
        assert any(m.endswith("/rust/Cargo.toml") for m in sdist_members), sdist_members[:20]

        # The same wheel as pip's: same files with the same contents (RECORD aside).
        site = Path(library).parent.parent
        installed = {
            str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (site / "mllp").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        built = {n: h for n, h in wheel_contents(wheel).items() if n.startswith("mllp/")}
        assert built == installed

        # The README's manylinux statement, checked with auditwheel (from PyPI).
        tag = re.search(r"consistent with\s+\*\*`(manylinux_\d+_\d+_x86_64)`\*\*", text)
        assert tag, "README states no manylinux tag"
        show = run_bash(
            f"{activate[0]}\npip install -q auditwheel\nauditwheel show {wheel}", env, timeout=300
        )
        assert f'"{tag.group(1)}"' in " ".join(show.stdout.split()), show.stdout
    finally:
        if not had_dist:
            shutil.rmtree(dist, ignore_errors=True)
