"""mllp: Python binding (ctypes) for libmllp, an MLLP (HL7 v2 over TCP) server.

    import mllp

    with mllp.Server(local_host="127.0.0.1", local_port=2575) as server:
        @server.on_transfer
        def received(e: mllp.TransferEvent) -> None:
            print(e.connection_id, e.data)

        server.start_listening()
        ...

See :class:`Server` for the threading and error rules.
"""

from __future__ import annotations

from ._errors import (
    OK,
    ERR_NAK_RECEIVED,
    ERR_INVALID_DATA,
    ERR_INTERRUPTED,
    ERR_CANNOT_CHANGE_LOCAL_PORT,
    ERR_CANNOT_CHANGE_LOCAL_HOST,
    ERR_WOULD_BLOCK,
    ERR_TIMEOUT,
    ERR_BAD_STATE,
    ERR_CANNOT_OPEN_FILE,
    ERR_INVALID_ARGUMENT,
    ERR_NO_SUCH_CONNECTION,
    ERR_NOT_SUPPORTED,
    ERR_UNKNOWN_SETTING,
    ERR_INVALID_VALUE,
    ERR_REENTRANT,
    ERR_PANIC,
    ERR_BUFFER_TOO_SMALL,
    ERR_IO,
    ERR_SEND_INTERRUPTED,
    ERR_TOO_MANY_CONNECTIONS,
    ERR_CERTIFICATE,
    ERR_TLS_HANDSHAKE,
    ERR_TLS_CLIENT_REJECTED,
    ERR_NOT_CONNECTED,
    ERR_LISTENING,
    ERR_DROPPED,
    ERR_SHUT_DOWN,
    ERR_BAD_BATCH,
    ERR_CHARSET,
    ERR_DUPLICATE_IN_PROGRESS,
    ERR_PROXY_HEADER,
    REJECT_AE,
    REJECT_AR,
    ACK_AA,
    ACK_AE,
    ACK_AR,
    ACK_CA,
    ACK_CE,
    ACK_CR,
    CODES,
    MLLPError,
    error_description,
)
from .certificate import (
    CERT_AUTO,
    CERT_PEM_KEY_BLOB,
    CERT_PEM_KEY_FILE,
    CERT_PFX_BLOB,
    CERT_PFX_FILE,
    CERT_PUBLIC_KEY_BLOB,
    CERT_PUBLIC_KEY_FILE,
    Certificate,
)
from ._lib import library_path, lib as _cdll
from .events import (
    AckInEvent,
    AckOutEvent,
    ConnectedEvent,
    ConnectionRequestEvent,
    DisconnectedEvent,
    DuplicateEvent,
    EndTransferEvent,
    ErrorEvent,
    LogEvent,
    MessageEvent,
    SSLClientAuthenticationEvent,
    SSLConnectionRequestEvent,
    SSLStatusEvent,
    StartTransferEvent,
    TransferEvent,
)
from .server import (
    DEFAULT_DO_EVENTS_WAIT_MS,
    EVENT_NAMES,
    Connection,
    ConnectionId,
    Connections,
    HandlerSlot,
    Server,
    build_ack,
)

__version__ = "0.1.0"


def library_version() -> str:
    """The loaded libmllp's version string (``mllp_version()``)."""
    raw = _cdll.mllp_version()
    return raw.decode("utf-8", "replace") if raw else ""


__all__ = [
    "Server",
    "Certificate",
    "Connection",
    "Connections",
    "ConnectionId",
    "DEFAULT_DO_EVENTS_WAIT_MS",
    "HandlerSlot",
    "MLLPError",
    "CODES",
    "EVENT_NAMES",
    "error_description",
    "library_path",
    "library_version",
    "build_ack",
    "AckInEvent",
    "AckOutEvent",
    "ConnectedEvent",
    "ConnectionRequestEvent",
    "DisconnectedEvent",
    "DuplicateEvent",
    "EndTransferEvent",
    "ErrorEvent",
    "LogEvent",
    "MessageEvent",
    "SSLClientAuthenticationEvent",
    "SSLConnectionRequestEvent",
    "SSLStatusEvent",
    "StartTransferEvent",
    "TransferEvent",
    "OK",
    "ERR_NAK_RECEIVED",
    "ERR_INVALID_DATA",
    "ERR_INTERRUPTED",
    "ERR_CANNOT_CHANGE_LOCAL_PORT",
    "ERR_CANNOT_CHANGE_LOCAL_HOST",
    "ERR_WOULD_BLOCK",
    "ERR_TIMEOUT",
    "ERR_BAD_STATE",
    "ERR_CANNOT_OPEN_FILE",
    "ERR_INVALID_ARGUMENT",
    "ERR_NO_SUCH_CONNECTION",
    "ERR_NOT_SUPPORTED",
    "ERR_UNKNOWN_SETTING",
    "ERR_INVALID_VALUE",
    "ERR_REENTRANT",
    "ERR_PANIC",
    "ERR_BUFFER_TOO_SMALL",
    "ERR_IO",
    "ERR_SEND_INTERRUPTED",
    "ERR_TOO_MANY_CONNECTIONS",
    "ERR_CERTIFICATE",
    "ERR_TLS_HANDSHAKE",
    "ERR_TLS_CLIENT_REJECTED",
    "REJECT_AE",
    "CERT_PFX_FILE",
    "CERT_PFX_BLOB",
    "CERT_PEM_KEY_FILE",
    "CERT_PEM_KEY_BLOB",
    "CERT_PUBLIC_KEY_FILE",
    "CERT_PUBLIC_KEY_BLOB",
    "CERT_AUTO",
    "REJECT_AR",
    "ERR_NOT_CONNECTED",
    "ERR_LISTENING",
    "ERR_DROPPED",
    "ERR_SHUT_DOWN",
    "ERR_BAD_BATCH",
    "ERR_CHARSET",
    "ERR_DUPLICATE_IN_PROGRESS",
    "ERR_PROXY_HEADER",
    "ACK_AA",
    "ACK_AE",
    "ACK_AR",
    "ACK_CA",
    "ACK_CE",
    "ACK_CR",
]
