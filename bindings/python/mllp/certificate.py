"""mllp.Certificate: the reference's Certificate type over ``mllp_certificate`` handles.

    cert = mllp.Certificate(mllp.CERT_PFX_FILE, "server.pfx", "password", "*")
    print(cert.subject, cert.thumbprint_sha256)
    server.ssl_cert = cert      # the server keeps its own reference
    cert.close()                # optional: also freed when collected

A Certificate is immutable and may be shared between threads and servers. ``close()`` (or
leaving a ``with`` block) frees the native handle; it is idempotent, and a certificate that
is never closed is freed when collected. The read-only fields are read once, when the
certificate is loaded, so they stay readable after ``close()``.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from ctypes import byref, c_size_t, c_uint8, c_void_p
from typing import Any, Optional, Union

from ._errors import ERR_BAD_STATE, ERR_BUFFER_TOO_SMALL, ERR_INVALID_ARGUMENT, OK, MLLPError, check
from ._lib import lib

__all__ = [
    "Certificate",
    "CERT_PFX_FILE",
    "CERT_PFX_BLOB",
    "CERT_PEM_KEY_FILE",
    "CERT_PEM_KEY_BLOB",
    "CERT_PUBLIC_KEY_FILE",
    "CERT_PUBLIC_KEY_BLOB",
    "CERT_AUTO",
]

#: Store type: PFX (PKCS#12) file; the store is its path (the reference's cstPFXFile).
CERT_PFX_FILE = 2
#: Store type: PFX (PKCS#12) data, binary or base64 (cstPFXBlob).
CERT_PFX_BLOB = 3
#: Store type: PEM file with a private key and optional certificates (cstPEMKeyFile).
CERT_PEM_KEY_FILE = 6
#: Store type: PEM data with a private key and optional certificates (cstPEMKeyBlob).
CERT_PEM_KEY_BLOB = 7
#: Store type: file with a PEM or DER public certificate (cstPublicKeyFile).
CERT_PUBLIC_KEY_FILE = 8
#: Store type: PEM or DER public certificate data (cstPublicKeyBlob).
CERT_PUBLIC_KEY_BLOB = 9
#: Store type: detect the format (a path if such a file exists, else data) (cstAuto).
CERT_AUTO = 99

_FIELD_SUBJECT = 1
_FIELD_ISSUER = 2
_FIELD_SERIAL_NUMBER = 3
_FIELD_EFFECTIVE_DATE = 4
_FIELD_EXPIRATION_DATE = 5
_FIELD_THUMBPRINT_SHA1 = 6
_FIELD_THUMBPRINT_SHA256 = 7

Store = Union[str, bytes, bytearray, memoryview, "os.PathLike[str]"]


def _read(fn: Any, *args: Any) -> bytes:
    n = c_size_t(0)
    rc = fn(*args, None, byref(n))
    for _ in range(8):
        if rc == OK:
            return b""
        if rc != ERR_BUFFER_TOO_SMALL:
            check(rc)
        cap = max(n.value, 1)
        buf = ctypes.create_string_buffer(cap)
        n = c_size_t(cap)
        rc = fn(*args, buf, byref(n))
        if rc == OK:
            return buf.raw[: n.value]
    raise MLLPError(ERR_BUFFER_TOO_SMALL, "the value kept changing size while being read")


def _field(handle: int, field: int) -> str:
    raw = _read(lib.mllp_certificate_get_field, handle, field)
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _store_bytes(store: Store) -> bytes:
    if isinstance(store, (bytes, bytearray, memoryview)):
        return bytes(store)
    p = os.fspath(store)
    return p if isinstance(p, bytes) else p.encode("utf-8")


class Certificate:
    """A certificate, possibly with its private key (the reference's Certificate type).

    ``Certificate(store_type, store, store_password="", subject="*")`` loads one as the
    reference's ``Certificate(storeType, store, storePassword, subject)``: ``store`` is a path
    (str or path-like) for the ``*_FILE`` store types, or the data (bytes; a str is UTF-8
    encoded, e.g. PEM text or base64) for the ``*_BLOB`` types. ``subject`` selects the
    certificate: ``*`` the first, an exact or substring match of the subject DN, or
    ``Thumbprint=<hex SHA-1 or SHA-256>``. Raises :class:`mllp.MLLPError` 2020
    (:data:`mllp.ERR_CERTIFICATE`) for a wrong password, bad data or no match, 303 when the
    file cannot be opened, 2003 for store types of other platforms.
    """

    __slots__ = (
        "_handle",
        "_finalizer",
        "_lock",
        "store_type",
        "subject",
        "issuer",
        "serial_number",
        "effective_date",
        "expiration_date",
        "thumbprint_sha1",
        "thumbprint_sha256",
        "encoded",
        "private_key_available",
        "__weakref__",
    )

    def __init__(
        self,
        store_type: int,
        store: Store,
        store_password: Optional[str] = "",
        subject: Optional[str] = "*",
    ) -> None:
        data = _store_bytes(store)
        out = c_void_p(None)
        check(
            lib.mllp_certificate_load(
                int(store_type),
                data,
                len(data),
                (store_password or "").encode("utf-8"),
                (subject if subject is not None else "*").encode("utf-8"),
                byref(out),
            )
        )
        self._adopt(int(out.value or 0))
        self.store_type = int(store_type)

    @classmethod
    def _from_handle(cls, handle: int) -> "Certificate":
        """Wraps a handle the library gave us (it becomes ours to free)."""
        self = cls.__new__(cls)
        self._adopt(handle)
        self.store_type = 0
        return self

    def _adopt(self, handle: int) -> None:
        if not handle:
            raise MLLPError(ERR_INVALID_ARGUMENT, "no certificate handle")
        self._handle: Optional[int] = handle
        self._lock = threading.Lock()
        # Frees the handle exactly once: at close(), at collection, or at interpreter exit.
        self._finalizer = weakref.finalize(self, lib.mllp_certificate_free, handle)
        try:
            #: The subject DN, e.g. ``CN=localhost, O=Example``.
            self.subject: str = _field(handle, _FIELD_SUBJECT)
            #: The issuer DN.
            self.issuer: str = _field(handle, _FIELD_ISSUER)
            #: The serial number in hexadecimal.
            self.serial_number: str = _field(handle, _FIELD_SERIAL_NUMBER)
            #: Not valid before, e.g. ``23-Jan-2000 15:00:00`` (UTC).
            self.effective_date: str = _field(handle, _FIELD_EFFECTIVE_DATE)
            #: Not valid after, same format.
            self.expiration_date: str = _field(handle, _FIELD_EXPIRATION_DATE)
            #: SHA-1 thumbprint, lowercase hex.
            self.thumbprint_sha1: str = _field(handle, _FIELD_THUMBPRINT_SHA1)
            #: SHA-256 thumbprint, lowercase hex.
            self.thumbprint_sha256: str = _field(handle, _FIELD_THUMBPRINT_SHA256)
            #: The DER encoding (the reference's EncodedB).
            self.encoded: bytes = _read(lib.mllp_certificate_get_encoded, handle)
            flag = c_uint8(0)
            check(lib.mllp_certificate_get_private_key_available(handle, byref(flag)))
            #: True when the store held the certificate's private key.
            self.private_key_available: bool = bool(flag.value)
        except BaseException:
            self.close()
            raise

    # -- lifetime ------------------------------------------------------------------------

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise MLLPError(ERR_BAD_STATE, "the certificate is closed")
        return h

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has freed the native handle."""
        return self._handle is None

    def close(self) -> None:
        """Frees the native handle (idempotent). Servers given the certificate keep their own
        reference, so closing it does not affect them."""
        with self._lock:
            self._handle = None
            self._finalizer()

    def __enter__(self) -> "Certificate":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other.encoded == self.encoded

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __repr__(self) -> str:
        state = " (closed)" if self._handle is None else ""
        return f"<mllp.Certificate {self.subject!r} sha256={self.thumbprint_sha256[:16]}…{state}>"
