"""TLS (Certificate, SSL properties and events, negotiated values) and deferred
acknowledgement, driven with Python's own ``ssl`` module.

The certificates are generated at test time with the ``openssl`` command line tool (no key
is ever committed); the tests are skipped with a message when it is missing.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import mllp

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK = b"\x0b\x06\x1c\r"
NAK = b"\x0b\x15\x1c\r"
MSG = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||42\r"
PFX_PASSWORD = "s3cret"


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


def recv_n(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


# ---------------------------------------------------------------------------------------------
# A throw-away PKI made with the openssl CLI
# ---------------------------------------------------------------------------------------------


def _openssl(args: List[str], cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line tool is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
              "-subj", "/CN=MLLP Test CA"], d)
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, cn, ext, serial in (
        ("server", "/CN=localhost/O=MLLP Test", "server.ext", "0x1001"),
        ("alt", "/CN=alt.localhost/O=MLLP Test", "server.ext", "0x1002"),
        ("client", "/CN=test client/O=MLLP Test", "client.ext", "0x1003"),
    ):
        _openssl(["req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", cn], d)
        _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-set_serial", serial, "-days", "2", "-extfile", ext, "-out", f"{name}.pem"], d)
        (d / f"{name}-key.pem").write_bytes((d / f"{name}.key").read_bytes() + (d / f"{name}.pem").read_bytes())
    _openssl(["pkcs12", "-export", "-inkey", "server.key", "-in", "server.pem", "-certfile", "ca.pem",
              "-out", "server.pfx", "-passout", f"pass:{PFX_PASSWORD}"], d)
    return {
        "dir": d,
        "ca": d / "ca.pem",
        "server": d / "server.pem",
        "server_key_pem": d / "server-key.pem",
        "alt_key_pem": d / "alt-key.pem",
        "client": d / "client.pem",
        "client_key": d / "client.key",
        "pfx": d / "server.pfx",
    }


def client_context(pki: Dict[str, Path], *, cert: bool = False, tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
    return ctx


def tls_connect(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.settimeout(5.0)
    return s


@pytest.fixture
def tls_server(pki: Dict[str, Path]) -> Iterator[mllp.Server]:
    errors: List[BaseException] = []
    with mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["server_key_pem"]) as cert:
        s = mllp.Server(local_host="127.0.0.1", local_port=0, ssl_enabled=True, ssl_cert=cert)
    # The certificate object is closed: the server kept its own reference.
    s.handler_error_hook = lambda where, exc: errors.append(exc)
    s._test_errors = errors  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        s.close()
    assert not errors, errors


# ---------------------------------------------------------------------------------------------
# Certificate
# ---------------------------------------------------------------------------------------------


def test_certificate_fields_from_files_and_blobs(pki: Dict[str, Path]) -> None:
    pem = mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["server_key_pem"], "", "*")
    assert pem.subject == "CN=localhost, O=MLLP Test"
    assert pem.issuer == "CN=MLLP Test CA"
    assert pem.serial_number.lstrip("0") == "1001"
    assert len(pem.thumbprint_sha1) == 40 and len(pem.thumbprint_sha256) == 64
    assert pem.effective_date and pem.expiration_date
    assert pem.encoded[:1] == b"\x30"  # DER SEQUENCE
    assert pem.private_key_available

    pfx_file = mllp.Certificate(mllp.CERT_PFX_FILE, str(pki["pfx"]), PFX_PASSWORD, "localhost")
    pfx_blob = mllp.Certificate(mllp.CERT_PFX_BLOB, pki["pfx"].read_bytes(), PFX_PASSWORD)
    pem_blob = mllp.Certificate(mllp.CERT_PEM_KEY_BLOB, pki["server_key_pem"].read_text())
    public = mllp.Certificate(mllp.CERT_PUBLIC_KEY_FILE, pki["server"])
    for c in (pfx_file, pfx_blob, pem_blob, public):
        assert c.thumbprint_sha256 == pem.thumbprint_sha256
        assert c == pem
    assert pfx_blob.private_key_available and not public.private_key_available
    by_thumb = mllp.Certificate(mllp.CERT_PFX_FILE, pki["pfx"], PFX_PASSWORD, f"Thumbprint={pem.thumbprint_sha1}")
    assert by_thumb.subject == pem.subject

    # Closing is idempotent; fields stay readable; the handle is gone.
    for c in (pem, pfx_file, pfx_blob, pem_blob, public, by_thumb):
        c.close()
        c.close()
        assert c.closed and c.subject
    with pytest.raises(mllp.MLLPError) as ei:
        mllp.Server().ssl_cert = pem
    assert ei.value.code == mllp.ERR_BAD_STATE


def test_certificate_errors(pki: Dict[str, Path]) -> None:
    with pytest.raises(mllp.MLLPError) as ei:
        mllp.Certificate(mllp.CERT_PFX_FILE, pki["pfx"], "wrong password", "*")
    assert ei.value.code == mllp.ERR_CERTIFICATE == 2020
    assert ei.value.message
    with pytest.raises(mllp.MLLPError) as ei:
        mllp.Certificate(mllp.CERT_PFX_BLOB, pki["pfx"].read_bytes(), "wrong")
    assert ei.value.code == 2020
    with pytest.raises(mllp.MLLPError) as ei:
        mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["server_key_pem"], "", "CN=nobody")
    assert ei.value.code == 2020
    with pytest.raises(mllp.MLLPError) as ei:
        mllp.Certificate(mllp.CERT_PFX_FILE, pki["dir"] / "missing.pfx", PFX_PASSWORD)
    assert ei.value.code == mllp.ERR_CANNOT_OPEN_FILE


def test_certificate_freed_by_gc(pki: Dict[str, Path]) -> None:
    import gc
    import weakref

    c = mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["server_key_pem"])
    finalizer = c._finalizer
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None and not finalizer.alive


def test_ssl_properties(pki: Dict[str, Path]) -> None:
    with mllp.Server() as s:
        assert not s.ssl_enabled and not s.ssl_authenticate_clients and s.ssl_cert is None
        s.ssl_enabled = True
        s.ssl_authenticate_clients = True
        assert s.ssl_enabled and s.ssl_authenticate_clients
        with mllp.Certificate(mllp.CERT_PFX_FILE, pki["pfx"], PFX_PASSWORD) as cert:
            s.ssl_cert = cert
        got = s.ssl_cert
        assert got is not None and got.subject == "CN=localhost, O=MLLP Test" and got == cert
        got.close()
        s.ssl_cert = None
        assert s.ssl_cert is None
        with pytest.raises(TypeError):
            s.ssl_cert = "server.pfx"  # type: ignore[assignment]
        # Listening with TLS on and no certificate fails there.
        s.local_host, s.local_port = "127.0.0.1", 0
        with pytest.raises(mllp.MLLPError) as ei:
            s.start_listening()
        assert ei.value.code == mllp.ERR_CERTIFICATE


# ---------------------------------------------------------------------------------------------
# TLS round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls12", [False, True], ids=["tls13", "tls12"])
def test_tls_round_trip_status_and_negotiated_version(
    tls_server: mllp.Server, pki: Dict[str, Path], tls12: bool
) -> None:
    statuses: List[mllp.SSLStatusEvent] = []
    requests: List[mllp.SSLConnectionRequestEvent] = []
    received: List[bytes] = []
    tls_server.on_ssl_status = statuses.append
    tls_server.on_ssl_connection_request = requests.append
    tls_server.on_transfer = lambda e: received.append(e.data)
    tls_server.start_listening()

    with tls_connect(tls_server.local_port, client_context(pki, tls12=tls12)) as s:
        assert s.version() == ("TLSv1.2" if tls12 else "TLSv1.3")
        s.sendall(frame(MSG))
        assert recv_n(s, 4) == ACK
        assert b"".join(received) == MSG
        (cid,) = list(tls_server.connections)
        conn = tls_server.connections[cid]
        assert conn.ssl_negotiated_version == ("TLS1.2" if tls12 else "TLS1.3")
        assert conn.ssl_negotiated("SSLNegotiatedVersion") == conn.ssl_negotiated_version
        assert conn.ssl_negotiated_cipher_suite
        assert wait_for(lambda: statuses, what="SSLStatus")
        assert all(e.connection_id == cid and e.message for e in statuses)
        assert len(requests) == 1 and requests[0].connection_id == cid
        assert requests[0].supported_cipher_suites


def test_ssl_connection_request_presents_another_certificate(
    tls_server: mllp.Server, pki: Dict[str, Path]
) -> None:
    alt = mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["alt_key_pem"])

    @tls_server.on_ssl_connection_request
    def choose(e: mllp.SSLConnectionRequestEvent) -> None:
        e.certificate = mllp.Certificate(mllp.CERT_PEM_KEY_FILE, pki["alt_key_pem"])  # only the event holds it

    tls_server.start_listening()
    with tls_connect(tls_server.local_port, client_context(pki)) as s:
        der = s.getpeercert(binary_form=True)
        assert der == alt.encoded
        s.sendall(frame(MSG))
        assert recv_n(s, 4) == ACK
    alt.close()


def _mtls_server(server: mllp.Server, pki: Dict[str, Path]) -> None:
    server.ssl_authenticate_clients = True
    server.config("SSLClientCACerts=" + pki["ca"].read_text())


def _refused(s: ssl.SSLSocket) -> bool:
    try:
        s.sendall(frame(MSG))
        return s.recv(4) == b""
    except (ssl.SSLError, ConnectionError, OSError):
        return True


def test_ssl_client_authentication_override(tls_server: mllp.Server, pki: Dict[str, Path]) -> None:
    events: List[mllp.SSLClientAuthenticationEvent] = []
    errors: List[mllp.ErrorEvent] = []
    refuse = threading.Event()

    @tls_server.on_ssl_client_authentication
    def auth(e: mllp.SSLClientAuthenticationEvent) -> None:
        events.append(dataclass_copy(e))
        if refuse.is_set():
            e.accept = False  # refuse a client the library would accept
        elif not e.cert_encoded:
            e.accept = True  # accept a client the library would refuse

    tls_server.on_error = errors.append
    _mtls_server(tls_server, pki)
    tls_server.start_listening()
    port = tls_server.local_port
    client_der = mllp.Certificate(mllp.CERT_PUBLIC_KEY_FILE, pki["client"]).encoded

    # A good client certificate: recommended, and kept.
    with tls_connect(port, client_context(pki, cert=True)) as s:
        s.sendall(frame(MSG))
        assert recv_n(s, 4) == ACK
    e = events[-1]
    assert e.accept and e.status == "OK"
    assert e.cert_subject == "CN=test client, O=MLLP Test" and e.cert_issuer == "CN=MLLP Test CA"
    assert e.cert_encoded == client_der

    # The same certificate refused by the handler: the server closes the connection.
    refuse.set()
    with tls_connect(port, client_context(pki, cert=True)) as s:
        assert _refused(s)
    assert events[-1].accept and events[-1].status == "OK"  # the library recommended it
    assert wait_for(lambda: any(x.error_code == mllp.ERR_TLS_CLIENT_REJECTED for x in errors))

    # No certificate: the library recommends refusing; the handler accepts.
    refuse.clear()
    with tls_connect(port, client_context(pki)) as s:
        s.sendall(frame(MSG))
        assert recv_n(s, 4) == ACK
    assert not events[-1].accept and events[-1].status != "OK" and events[-1].cert_encoded == b""


def dataclass_copy(e: Any) -> Any:
    import dataclasses

    return dataclasses.replace(e)


def test_ssl_client_authentication_raising_handler_refuses(
    tls_server: mllp.Server, pki: Dict[str, Path]
) -> None:
    def boom(e: mllp.SSLClientAuthenticationEvent) -> None:
        raise RuntimeError("boom")

    tls_server.on_ssl_client_authentication = boom
    _mtls_server(tls_server, pki)
    tls_server.start_listening()
    with tls_connect(tls_server.local_port, client_context(pki, cert=True)) as s:
        assert _refused(s)
    errs = tls_server._test_errors  # type: ignore[attr-defined]
    assert len(errs) == 1 and str(errs[0]) == "boom"
    errs.clear()


# ---------------------------------------------------------------------------------------------
# Deferred acknowledgement
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [True, False], ids=["ack", "nak"])
def test_deferred_ack_sent_by_acknowledge_from_another_thread(accept: bool) -> None:
    pending: List[Tuple[int, int]] = []
    with mllp.Server(local_host="127.0.0.1", local_port=0) as server:

        @server.on_ack_out
        def defer(e: mllp.AckOutEvent) -> None:
            assert e.defer is False
            e.defer = True
            pending.append((e.connection_id, e.message_seq))

        server.start_listening()
        with socket.create_connection(("127.0.0.1", server.local_port), timeout=5) as s:
            s.sendall(frame(MSG))
            wait_for(lambda: pending, what="AckOut")
            s.settimeout(0.3)
            with pytest.raises(socket.timeout):
                s.recv(1)  # nothing on the wire while the decision is open
            cid, seq = pending[0]
            assert seq == 1
            t = threading.Thread(target=server.acknowledge, args=(cid, seq, accept, mllp.REJECT_AE))
            t.start()
            t.join(5)
            s.settimeout(5)
            assert recv_n(s, 4) == (ACK if accept else NAK)
            # A sequence number not awaiting a decision is ignored.
            server.acknowledge(cid, 99)
        with pytest.raises(mllp.MLLPError) as ei:
            wait_for(lambda: server.connection_count == 0)
            server.acknowledge(cid, seq)
        assert ei.value.code == mllp.ERR_NO_SUCH_CONNECTION
