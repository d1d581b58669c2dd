"""End-to-end TLS tests of examples-c/mllp-listen (--tls-cert/--tls-key, --client-ca) with real
clients: python's `ssl` module and `openssl s_client`.

Certificates are made with the `openssl` command line tool in a temporary directory when the
tests run (no private key is committed). Every wait is bounded.

Run:  python3 -m pytest -q tests/listen/test_tls.py
"""

import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

from test_listen import (ACK, CR, EB, LISTEN, SB, Client, listen, run_fail,  # noqa: F401
                         sample)

OPENSSL = shutil.which("openssl")
pytestmark = [
    pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built"),
    pytest.mark.skipif(OPENSSL is None, reason="the openssl command line tool is not installed"),
]

MSG = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|TLS1|P|2.5\r"
ACK_FRAME = SB + ACK + EB + CR
IO_TIMEOUT = 10


# ---------------------------------------------------------------------------------------------
# Certificates, made once per test session with the openssl CLI


def _ossl(*args, cwd):
    p = subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr.decode()}"


class Pki:
    """ca/ (server and client CA), other/ (another CA); server, client, foreign, expired."""

    def __init__(self, d: Path):
        self.dir = d
        ext = d / "ext.cnf"
        ext.write_text(
            "[server]\n"
            "basicConstraints=CA:FALSE\n"
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth\n"
            "[client]\n"
            "basicConstraints=CA:FALSE\n"
            "extendedKeyUsage=clientAuth\n"
            "[ca]\n"
            "basicConstraints=critical,CA:TRUE\n"
            "keyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n")
        self.ca = self._ca("ca", "Test CA")
        self.other = self._ca("other", "Other CA")
        self.server = self._leaf("server", "localhost", "ca", "server")
        self.client = self._leaf("client", "good client", "ca", "client")
        self.foreign = self._leaf("foreign", "foreign client", "other", "client")
        self.expired = self._leaf("expired", "expired client", "ca", "client", expired=True)
        self.expired_server = self._leaf("expired-server", "localhost", "ca", "server",
                                         expired=True)

    def _key(self, name):
        _ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", f"{name}.key", cwd=self.dir)
        return self.dir / f"{name}.key"

    def _ca(self, name, cn):
        self._key(name)
        _ossl("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
              "-subj", f"/CN={cn}", "-extensions", "ca", "-config", self._req_cnf(), cwd=self.dir)
        return self.dir / f"{name}.pem"

    def _req_cnf(self):
        cnf = self.dir / "req.cnf"
        if not cnf.exists():
            cnf.write_text("[req]\ndistinguished_name=dn\n[dn]\n" + (self.dir / "ext.cnf").read_text())
        return cnf

    def _leaf(self, name, cn, ca, kind, expired=False):
        key = self._key(name)
        _ossl("req", "-new", "-key", key, "-out", f"{name}.csr", "-subj", f"/CN={cn}",
              "-config", self._req_cnf(), cwd=self.dir)
        if expired:
            # `openssl ca` is the CLI's way to set explicit (past) validity dates.
            db = self.dir / f"db-{name}"
            db.mkdir()
            (db / "index.txt").write_text("")
            (db / "serial").write_text("1000\n")
            cnf = db / "ca.cnf"
            cnf.write_text(
                "[ca]\ndefault_ca=d\n"
                f"[d]\ndir={db}\ndatabase=$dir/index.txt\nserial=$dir/serial\n"
                "new_certs_dir=$dir\ndefault_md=sha256\npolicy=p\ncopy_extensions=none\n"
                "unique_subject=no\n[p]\ncommonName=supplied\n"
                + (self.dir / "ext.cnf").read_text())
            _ossl("ca", "-batch", "-config", cnf, "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
                  "-in", f"{name}.csr", "-out", f"{name}.pem", "-startdate", "20000101000000Z",
                  "-enddate", "20010101000000Z", "-extensions", kind, "-notext", cwd=self.dir)
        else:
            _ossl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                  "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext.cnf",
                  "-extensions", kind, cwd=self.dir)
        return (self.dir / f"{name}.pem", key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_args(pki, client_ca=False):
    a = ["--tls-cert", pki.server[0], "--tls-key", pki.server[1]]
    if client_ca:
        a += ["--client-ca", pki.ca]
    return a


# ---------------------------------------------------------------------------------------------
# python ssl client


def client_ctx(pki, version=None, cert=None, maximum=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if maximum is not None:
        ctx.maximum_version = maximum
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def tls_connect(port, ctx, session=None, timeout=IO_TIMEOUT):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise


def recv_frame(s, timeout=IO_TIMEOUT):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(EB + CR):
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(f"closed; got {buf!r}")
        buf += chunk
    return buf


def tls_roundtrip(s, message=MSG):
    s.sendall(SB + message + EB + CR)
    return recv_frame(s)


def refused(port, ctx):
    """True when the server does not serve this client: the handshake fails, or the server
    closes the connection instead of acknowledging the message."""
    try:
        s = tls_connect(port, ctx)
    except (ssl.SSLError, OSError):
        return True
    try:
        s.sendall(SB + MSG + EB + CR)
        return recv_frame(s, timeout=5) != ACK_FRAME
    except (ssl.SSLError, OSError, EOFError):
        return True
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# Start-up


def test_help_mentions_tls():
    p = subprocess.run([str(LISTEN), "--help"], capture_output=True, timeout=10)
    out = p.stdout.decode()
    assert p.returncode == 0 and "--tls-cert" in out and "--client-ca" in out
    assert "not available" not in out


@pytest.mark.parametrize("which", ["cert", "key"])
def test_unreadable_file_exit_2(tmp_path, pki, which):
    args = {"cert": pki.server[0], "key": pki.server[1]}
    args[which] = tmp_path / "missing.pem"
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", args["cert"], "--tls-key",
                            args["key"])
    assert rc == 2 and "listening" not in out
    assert f"--tls-{which}" in err and "missing.pem" in err and "No such file" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_unreadable_client_ca_exit_2(tmp_path, pki):
    rc, out, err = run_fail(tmp_path, "--port", "0", *tls_args(pki), "--client-ca",
                            tmp_path / "nope.pem")
    assert rc == 2 and "--client-ca" in err and "nope.pem" in err
    assert len(err.strip().splitlines()) == 1, err
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    rc, out, err = run_fail(tmp_path, "--port", "0", *tls_args(pki), "--client-ca", junk)
    assert rc == 2 and "--client-ca" in err and "no PEM certificate" in err
    assert len(err.strip().splitlines()) == 1, err


def test_files_swapped_or_garbage_exit_2(tmp_path, pki):
    # key given as certificate and the other way round
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", pki.server[1], "--tls-key",
                            pki.server[0])
    assert rc == 2 and "--tls-cert" in err and len(err.strip().splitlines()) == 1, err
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", bad, "--tls-key", pki.server[1])
    assert rc == 2 and "--tls-cert" in err and len(err.strip().splitlines()) == 1, err
    assert "listening" not in out


def test_key_mismatch_exit_2(tmp_path, pki):
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", pki.server[0], "--tls-key",
                            pki.client[1])
    assert rc == 2 and "listening" not in out
    assert "does not match" in err and "(2020)" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_expired_certificate_exit_2(tmp_path, pki):
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", pki.expired_server[0],
                            "--tls-key", pki.expired_server[1])
    assert rc == 2 and "listening" not in out
    assert "expired" in err and "(2020)" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_cert_and_key_must_come_together(tmp_path, pki):
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-cert", pki.server[0])
    assert rc == 2 and "--tls-cert and --tls-key" in err
    rc, out, err = run_fail(tmp_path, "--port", "0", "--tls-key", pki.server[1])
    assert rc == 2 and "--tls-cert and --tls-key" in err
    rc, out, err = run_fail(tmp_path, "--port", "0", "--client-ca", pki.ca)
    assert rc == 2 and "--client-ca" in err


def test_bad_tls_config_exit_2(tmp_path, pki):
    rc, out, err = run_fail(tmp_path, "--port", "0", *tls_args(pki), "--config",
                            "SSLEnabledProtocols=192")
    assert rc == 2 and "TLS 1.0/1.1 are not supported" in err, err
    rc, out, err = run_fail(tmp_path, "--port", "0", *tls_args(pki), "--config",
                            "SSLEnabledCipherSuites=TLS_RSA_WITH_RC4_128_SHA")
    assert rc == 2 and "not supported" in err, err


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_python_ssl_round_trip(listen, pki, version, name):
    lst = listen(*tls_args(pki))
    with tls_connect(lst.port, client_ctx(pki, version)) as s:
        assert s.version() == name
        assert tls_roundtrip(s) == ACK_FRAME
        assert tls_roundtrip(s, sample("adt_a01.hl7")) == ACK_FRAME
    lines = lst.message_lines(2)
    assert lines[0].endswith(" ADT^A01 TLS1")


def test_large_message_over_tls(listen, pki):
    lst = listen(*tls_args(pki))
    big = sample("oru_r01_1mib_ed.hl7")
    with tls_connect(lst.port, client_ctx(pki)) as s:
        assert tls_roundtrip(s, big) == ACK_FRAME
    assert lst.message_lines(1)[0].split()[1] == str(len(big))


def s_client(port, version, message, extra=()):
    """Runs `openssl s_client` sending one frame; returns (stdout bytes, stderr text) once the
    ACK arrived or 10 s passed."""
    p = subprocess.Popen([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", version, "-brief",
                          "-CAfile", str(extra[0]), "-verify_return_error", "-servername",
                          "localhost", *map(str, extra[1:])],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(SB + message + EB + CR)
        p.stdin.flush()
        out = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while ACK_FRAME not in out and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.1)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        p.kill()
        p.wait(5)
        err = p.stderr.read().decode("utf-8", "replace")
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()
    return out, err


@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_openssl_s_client_round_trip(listen, pki, version, name):
    lst = listen(*tls_args(pki))
    out, err = s_client(lst.port, version, MSG, extra=(pki.ca,))
    assert ACK_FRAME in out, (out, err)
    assert f"Protocol version: {name}" in err, err
    assert "Verification: OK" in err, err
    assert lst.message_lines(1)[0].endswith(" ADT^A01 TLS1")


def test_openssl_s_client_mutual_tls(listen, pki):
    lst = listen(*tls_args(pki, client_ca=True))
    out, err = s_client(lst.port, "-tls1_3", MSG,
                        extra=(pki.ca, "-cert", pki.client[0], "-key", pki.client[1]))
    assert ACK_FRAME in out, (out, err)
    out, err = s_client(lst.port, "-tls1_2", MSG, extra=(pki.ca,))
    assert ACK_FRAME not in out


def test_tls10_and_tls11_clients_refused(listen, pki):
    lst = listen(*tls_args(pki))
    for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        ctx = client_ctx(pki)
        with warnings.catch_warnings():  # python deprecates these versions: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = v
        try:  # OpenSSL 3 refuses old protocols at its default security level: lower it
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with pytest.raises((ssl.SSLError, OSError)) as ei:
            tls_connect(lst.port, ctx).close()
        # refused by the server (an alert from it, or the connection closed), not locally
        assert "ALERT" in str(ei.value).upper() \
            or isinstance(ei.value, (ConnectionResetError, ssl.SSLEOFError)), ei.value
    deadline = time.monotonic() + 5
    while lst.stderr().count("TLS handshake failed") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lst.stderr().count("TLS handshake failed") == 2, lst.stderr()
    # still up and serving
    with tls_connect(lst.port, client_ctx(pki)) as s:
        assert tls_roundtrip(s) == ACK_FRAME
    assert lst.proc.poll() is None


def test_plaintext_client_on_tls_port(listen, pki):
    lst = listen(*tls_args(pki))
    # one plaintext client sends a whole message, another sends half a frame and waits
    plain = Client(lst.port)
    plain.send(MSG)
    half = Client(lst.port)
    half.send_raw(SB + b"MSH|^~\\&|HALF")
    # meanwhile a TLS client is served
    with tls_connect(lst.port, client_ctx(pki)) as s:
        assert tls_roundtrip(s) == ACK_FRAME
    # the plaintext clients get no MLLP reply: at most a TLS alert, then the connection closes
    for c in (plain, half):
        c.sock.settimeout(5)
        got = b""
        try:
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        assert SB not in got and EB + CR not in got, got
        assert got == b"" or got[0] == 0x15, f"not a TLS alert: {got!r}"  # 0x15: alert record
        c.close()
    assert len(lst.message_lines(1)) == 1
    lst.no_more_lines(0.3)
    assert "TLS handshake failed" in lst.stderr()


def test_client_that_never_says_hello_is_dropped(listen, pki):
    lst = listen(*tls_args(pki), "--config", "SSLHandshakeTimeout=1")
    t0 = time.monotonic()
    silent = Client(lst.port)
    # a TLS client connecting meanwhile is served
    with tls_connect(lst.port, client_ctx(pki)) as s:
        assert tls_roundtrip(s) == ACK_FRAME
    assert silent.at_eof(timeout=5), "the silent client was not dropped"
    took = time.monotonic() - t0
    assert 0.8 <= took < 4, took
    deadline = time.monotonic() + 5
    while "not completed within 1 s" not in lst.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "not completed within 1 s" in lst.stderr()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(listen, pki, version):
    lst = listen(*tls_args(pki))
    ctx = client_ctx(pki, version)
    with tls_connect(lst.port, ctx) as s:
        assert tls_roundtrip(s) == ACK_FRAME  # reading also takes in the TLS 1.3 ticket
        assert not s.session_reused
        session = s.session
    assert session is not None
    with tls_connect(lst.port, ctx, session=session) as s2:
        assert tls_roundtrip(s2) == ACK_FRAME
        assert s2.session_reused, "the session was not resumed"


def test_no_resumption_when_disabled(listen, pki):
    lst = listen(*tls_args(pki), "--config", "ReuseSSLSession=False")
    ctx = client_ctx(pki, ssl.TLSVersion.TLSv1_2)
    with tls_connect(lst.port, ctx) as s:
        assert tls_roundtrip(s) == ACK_FRAME
        session = s.session
    with tls_connect(lst.port, ctx, session=session) as s2:
        assert tls_roundtrip(s2) == ACK_FRAME
        assert not s2.session_reused


# ---------------------------------------------------------------------------------------------
# Mutual TLS


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_mutual_tls(listen, pki, version):
    lst = listen(*tls_args(pki, client_ca=True))
    # only the good client gets an ACK
    assert refused(lst.port, client_ctx(pki, version))
    assert refused(lst.port, client_ctx(pki, version, cert=pki.foreign))
    assert refused(lst.port, client_ctx(pki, version, cert=pki.expired))
    with tls_connect(lst.port, client_ctx(pki, version, cert=pki.client)) as s:
        assert tls_roundtrip(s) == ACK_FRAME
    lines = lst.message_lines(1)
    assert lines[0].endswith(" ADT^A01 TLS1")
    lst.no_more_lines(0.3)
    deadline = time.monotonic() + 5
    while lst.stderr().count("client certificate refused") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    err = lst.stderr()
    assert err.count("error: 2022 client certificate refused") == 3, err
    assert "no certificate" in err and "xpired" in err, err
    assert lst.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# Load


def test_hundred_concurrent_tls_clients(listen, pki):
    lst = listen(*tls_args(pki), "--quiet")
    ctx = client_ctx(pki)
    barrier = threading.Barrier(100, timeout=30)
    results, errors = [], []

    def run(i):
        try:
            with tls_connect(lst.port, ctx, timeout=30) as s:
                barrier.wait()
                m = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C%d|P|2.5\r" % i
                results.append(tls_roundtrip(s, m))
                results.append(tls_roundtrip(s, m))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert results == [ACK_FRAME] * 200
    assert lst.proc.poll() is None


def test_sigterm_with_tls_clients_connected(listen, pki):
    lst = listen(*tls_args(pki))
    s = tls_connect(lst.port, client_ctx(pki))
    assert tls_roundtrip(s) == ACK_FRAME
    silent = Client(lst.port)  # mid-handshake
    rc, took = lst.stop(signal.SIGTERM)
    assert rc == 0 and took < 5
    assert silent.at_eof()
    s.settimeout(5)
    try:
        assert s.recv(100) == b""
    except (ssl.SSLError, OSError):
        pass
    s.close()
