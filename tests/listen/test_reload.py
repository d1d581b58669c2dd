"""mllp-listen --client-crl and SIGHUP reload of the TLS files (--tls-cert, --tls-key,
--client-ca, --client-crl), with python's `ssl` module as the client.

Certificates and CRLs are made with the `openssl` command line tool (`openssl ca` with an
index file: -revoke, then -gencrl) in a temporary directory when the tests run. Every wait is
bounded; nothing asserts on durations. 127.0.0.1 only.

Run:  python3 -m pytest -q tests/listen/test_reload.py
"""

import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_listen import LISTEN, listen  # noqa: F401
from test_tls import (ACK_FRAME, OPENSSL, client_ctx, refused, tls_connect,  # noqa: F401
                      tls_roundtrip)

pytestmark = [
    pytest.mark.skipif(not LISTEN.is_file(), reason=f"{LISTEN} not built"),
    pytest.mark.skipif(OPENSSL is None, reason="the openssl command line tool is not installed"),
]

WAIT = 10


def _ossl(*args, cwd):
    p = subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr.decode()}"


class Pki:
    """One CA (`openssl ca` database in db/); servers one and two; clients good and revoked;
    CRLs: none revoked, `revoked` revoked (PEM and DER), and an expired one."""

    def __init__(self, d: Path):
        self.dir = d
        db = d / "db"
        db.mkdir()
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
        (db / "crlnumber").write_text("01\n")
        self.cnf = d / "ca.cnf"
        self.cnf.write_text(
            "[req]\ndistinguished_name=dn\n[dn]\n"
            "[ca]\ndefault_ca=d\n"
            f"[d]\ndir={db}\ndatabase=$dir/index.txt\nserial=$dir/serial\n"
            "crlnumber=$dir/crlnumber\nnew_certs_dir=$dir\ndefault_md=sha256\n"
            "default_days=2\ndefault_crl_days=2\npolicy=p\ncopy_extensions=none\n"
            "unique_subject=no\n[p]\ncommonName=supplied\n"
            "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
            "[server]\nbasicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth\n"
            "[client]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        self._key("ca")
        _ossl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "2",
              "-subj", "/CN=Reload CA", "-config", self.cnf, "-extensions", "v3_ca", cwd=d)
        self.ca = d / "ca.pem"
        self.server1 = self._leaf("server1", "localhost", "server")
        self.server2 = self._leaf("server2", "localhost", "server")
        self.good = self._leaf("good", "good client", "client")
        self.revoked = self._leaf("revoked", "revoked client", "client")
        self.crl_clean = self._gencrl("crl-clean.pem")
        _ossl("ca", "-config", self.cnf, "-cert", "ca.pem", "-keyfile", "ca.key",
              "-revoke", self.revoked[0], cwd=d)
        self.crl = self._gencrl("crl.pem")
        _ossl("crl", "-in", self.crl, "-outform", "DER", "-out", "crl.der", cwd=d)
        self.crl_der = d / "crl.der"
        self.crl_expired = self._gencrl("crl-expired.pem", "-crl_lastupdate", "20000101000000Z",
                                        "-crl_nextupdate", "20010101000000Z")

    def _key(self, name):
        _ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", f"{name}.key", cwd=self.dir)
        return self.dir / f"{name}.key"

    def _leaf(self, name, cn, kind):
        key = self._key(name)
        _ossl("req", "-new", "-key", key, "-out", f"{name}.csr", "-subj", f"/CN={cn}",
              "-config", self.cnf, cwd=self.dir)
        _ossl("ca", "-batch", "-config", self.cnf, "-cert", "ca.pem", "-keyfile", "ca.key",
              "-in", f"{name}.csr", "-out", f"{name}.pem", "-extensions", kind, "-notext",
              cwd=self.dir)
        return (self.dir / f"{name}.pem", key)

    def _gencrl(self, out, *extra):
        _ossl("ca", "-gencrl", "-config", self.cnf, "-cert", "ca.pem", "-keyfile", "ca.key",
              "-out", out, *extra, cwd=self.dir)
        return self.dir / out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("reload-pki"))


def put(src: Path, dst: Path):
    """Replaces dst with a copy of src atomically (a reload never reads half a file)."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def live_files(tmp_path, pki, crl=None):
    """Copies of the files mllp-listen is started with (so a test can replace them)."""
    f = {"cert": tmp_path / "live-cert.pem", "key": tmp_path / "live-key.pem",
         "ca": tmp_path / "live-ca.pem", "crl": tmp_path / "live-crl.pem"}
    put(pki.server1[0], f["cert"])
    put(pki.server1[1], f["key"])
    put(pki.ca, f["ca"])
    put(crl or pki.crl_clean, f["crl"])
    return f


def der_of(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def presented(port, ctx):
    s = tls_connect(port, ctx)
    try:
        assert tls_roundtrip(s) == ACK_FRAME
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


def stderr_lines(lst, pattern):
    return [ln for ln in lst.stderr().splitlines() if pattern in ln]


def wait_stderr(lst, pattern, n):
    """Waits (bounded) until at least n stderr lines contain pattern; returns them."""
    deadline = time.monotonic() + WAIT
    while len(stderr_lines(lst, pattern)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = stderr_lines(lst, pattern)
    assert len(lines) >= n, f"waited for {n} stderr line(s) with {pattern!r}: {lst.stderr()}"
    return lines


def sighup(lst, n):
    """Sends SIGHUP and waits for the n-th reload line (either outcome); returns that line."""
    lst.proc.send_signal(signal.SIGHUP)
    return wait_stderr(lst, "SIGHUP:", n)[n - 1]


def mtls_args(f, crl=True):
    a = ["--tls-cert", f["cert"], "--tls-key", f["key"], "--client-ca", f["ca"]]
    return a + ["--client-crl", f["crl"]] if crl else a


# ---------------------------------------------------------------------------------------------
# --client-crl


@pytest.mark.parametrize("form", ["pem", "der"])
def test_client_crl_refuses_the_revoked_client(tmp_path, listen, pki, form):  # noqa: F811
    crl = pki.crl if form == "pem" else pki.crl_der
    lst = listen("--tls-cert", pki.server1[0], "--tls-key", pki.server1[1], "--client-ca",
                 pki.ca, "--client-crl", crl)
    assert not refused(lst.port, client_ctx(pki, cert=pki.good))
    assert refused(lst.port, client_ctx(pki, cert=pki.revoked))
    line = wait_stderr(lst, "2022", 1)[0]
    assert "certificate revoked" in line, line
    # The good client is still served after the refusal.
    assert not refused(lst.port, client_ctx(pki, cert=pki.good))


def test_client_crl_needs_client_ca(tmp_path, pki):
    p = subprocess.run([str(LISTEN), "--port", "0", "--tls-cert", pki.server1[0], "--tls-key",
                        pki.server1[1], "--client-crl", pki.crl], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    assert p.returncode == 2 and "--client-crl requires --client-ca" in err, err


def test_bad_client_crl_exit_2(tmp_path, pki):
    junk = tmp_path / "junk.crl"
    junk.write_text("-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n")
    for bad in (junk, tmp_path / "missing.crl"):
        p = subprocess.run([str(LISTEN), "--port", "0", "--tls-cert", pki.server1[0], "--tls-key",
                            pki.server1[1], "--client-ca", pki.ca, "--client-crl", bad],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        err = p.stderr.decode()
        assert p.returncode == 2 and "--client-crl" in err and bad.name in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_expired_crl_is_reported(tmp_path, listen, pki):  # noqa: F811
    lst = listen("--tls-cert", pki.server1[0], "--tls-key", pki.server1[1], "--client-ca",
                 pki.ca, "--client-crl", pki.crl_expired)
    line = wait_stderr(lst, "expired", 1)[0]
    assert "2020" in line and "SSLClientCRLs" in line, line
    # The CRL covers every certificate of the CA: none is accepted until a current one is set.
    assert refused(lst.port, client_ctx(pki, cert=pki.good))
    assert "revocation list expired" in wait_stderr(lst, "2022", 1)[0]


# ---------------------------------------------------------------------------------------------
# SIGHUP


def test_sighup_reloads_the_crl(tmp_path, listen, pki):  # noqa: F811
    f = live_files(tmp_path, pki)
    lst = listen(*mtls_args(f))
    good, revoked = client_ctx(pki, cert=pki.good), client_ctx(pki, cert=pki.revoked)
    assert not refused(lst.port, revoked)
    # Established before the reload: keeps working after it.
    kept = tls_connect(lst.port, revoked)
    assert tls_roundtrip(kept) == ACK_FRAME

    put(pki.crl, f["crl"])
    assert "reloaded TLS configuration" in sighup(lst, 1)
    assert refused(lst.port, revoked)
    assert not refused(lst.port, good)
    assert tls_roundtrip(kept) == ACK_FRAME
    kept.close()

    # DER works on reload as well.
    put(pki.crl_der, f["crl"])
    assert "reloaded TLS configuration" in sighup(lst, 2)
    assert refused(lst.port, revoked)


def test_sighup_new_certificate_under_load(tmp_path, listen, pki):  # noqa: F811
    f = live_files(tmp_path, pki)
    lst = listen("--tls-cert", f["cert"], "--tls-key", f["key"], "--quiet")
    ctx = client_ctx(pki)
    assert presented(lst.port, ctx) == der_of(pki.server1[0])

    stop = threading.Event()
    results = {"ok": 0, "failed": [], "seen": set()}

    def sender():
        # Every connection should be accepted: both certificates chain to the CA trusted.
        while not stop.is_set():
            try:
                results["seen"].add(presented(lst.port, ctx))
                results["ok"] += 1
            except Exception as e:  # noqa: BLE001 - any failure is a refused connection
                results["failed"].append(repr(e))

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        # Wait (bounded) until the senders are under way, then swap certificates a few times.
        deadline = time.monotonic() + WAIT
        while results["ok"] < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        pairs = [pki.server2, pki.server1, pki.server2]
        for i, (cert, key) in enumerate(pairs, 1):
            # Both files are in place before the signal: the reload reads the new pair.
            put(key, f["key"])
            put(cert, f["cert"])
            lst.proc.send_signal(signal.SIGHUP)
            # mllp-listen --quiet prints nothing for a good reload; an observed connection
            # with the new certificate shows it was applied.
            want = der_of(cert)
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                if presented(lst.port, ctx) == want:
                    break
                time.sleep(0.02)
            else:
                pytest.fail(f"reload {i}: the new certificate was never presented; "
                            f"stderr: {lst.stderr()}")
        count_before = results["ok"]
        deadline = time.monotonic() + WAIT
        while results["ok"] < count_before + 10 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
    assert results["failed"] == [], results["failed"][:5]
    assert results["seen"] == {der_of(pki.server1[0]), der_of(pki.server2[0])}
    assert "not reloaded" not in lst.stderr(), lst.stderr()


@pytest.mark.parametrize("which", ["cert", "key", "ca", "crl"])
def test_sighup_bad_file_keeps_the_old_configuration(tmp_path, listen, pki, which):  # noqa: F811
    f = live_files(tmp_path, pki, crl=pki.crl)
    lst = listen(*mtls_args(f))
    good, revoked = client_ctx(pki, cert=pki.good), client_ctx(pki, cert=pki.revoked)
    assert presented(lst.port, good) == der_of(pki.server1[0])
    assert refused(lst.port, revoked)
    wait_stderr(lst, "2022", 1)
    before = lst.stderr().splitlines()

    # A new, good server certificate with a bad companion file: nothing of it may apply.
    put(pki.server2[0], f["cert"])
    put(pki.server2[1], f["key"])
    bad = {
        "cert": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        "key": "not a key\n",
        "ca": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        "crl": "-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n",
    }[which]
    f[which].write_text(bad)
    line = sighup(lst, 1)
    assert "not reloaded" in line and f"live-{which}" in line, line

    # The old configuration: the old certificate, the revoked client still refused.
    assert presented(lst.port, good) == der_of(pki.server1[0])
    assert refused(lst.port, revoked)
    wait_stderr(lst, "2022", 2)
    after = lst.stderr().splitlines()
    new = [ln for ln in after if ln not in before and "2022" not in ln]
    assert new == [line], new

    # Fixed: the next SIGHUP applies everything.
    put({"cert": pki.server2[0], "key": pki.server2[1], "ca": pki.ca, "crl": pki.crl}[which],
        f[which])
    assert "reloaded TLS configuration" in sighup(lst, 2)
    assert presented(lst.port, good) == der_of(pki.server2[0])
    assert refused(lst.port, revoked)


def test_sighup_missing_file_one_line(tmp_path, listen, pki):  # noqa: F811
    f = live_files(tmp_path, pki)
    lst = listen("--tls-cert", f["cert"], "--tls-key", f["key"])
    ctx = client_ctx(pki)
    f["key"].unlink()
    line = sighup(lst, 1)
    assert "not reloaded" in line and "live-key.pem" in line and "No such file" in line, line
    assert presented(lst.port, ctx) == der_of(pki.server1[0])
    assert [ln for ln in lst.stderr().splitlines() if ln.strip()] == [line]


def test_sighup_without_tls_says_so(tmp_path, listen):  # noqa: F811
    lst = listen()
    line = sighup(lst, 1)
    assert "nothing to reload" in line, line
    assert lst.proc.poll() is None
