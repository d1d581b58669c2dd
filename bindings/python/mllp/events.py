"""Event objects passed to handlers. Fields follow the reference's event parameters.

Events whose parameters are read-write in the reference (``accept`` of ConnectionRequest,
AckOut and SSLClientAuthentication, AckOut's ``reject_code`` and ``defer``, and
SSLConnectionRequest's ``certificate``) are written back to the library when the handler
returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .certificate import Certificate

__all__ = [
    "ConnectionRequestEvent",
    "ConnectedEvent",
    "DisconnectedEvent",
    "StartTransferEvent",
    "TransferEvent",
    "EndTransferEvent",
    "AckOutEvent",
    "AckInEvent",
    "ErrorEvent",
    "LogEvent",
    "SSLClientAuthenticationEvent",
    "SSLConnectionRequestEvent",
    "SSLStatusEvent",
]


@dataclass
class ConnectionRequestEvent:
    """A client asks to connect. Set ``accept = False`` to refuse it."""

    address: str
    port: int
    accept: bool = True


@dataclass
class ConnectedEvent:
    """A connection completed: ``status_code`` 0 and ``description`` "OK" when normal."""

    connection_id: int
    status_code: int
    description: str


@dataclass
class DisconnectedEvent:
    """A connection closed: ``status_code`` 0 when normal, else the error code."""

    connection_id: int
    status_code: int
    description: str


@dataclass
class StartTransferEvent:
    """A message starts arriving (``message_seq`` counts messages per connection from 1)."""

    connection_id: int
    message_seq: int


@dataclass
class TransferEvent:
    """A piece of an incoming message; ``bytes_transferred`` includes this piece."""

    connection_id: int
    bytes_transferred: int
    data: bytes


@dataclass
class EndTransferEvent:
    """A message finished arriving (fires just before AckOut)."""

    connection_id: int
    message_seq: int


@dataclass
class AckOutEvent:
    """An acknowledgement is about to be sent for ``message``.

    Set ``accept = False`` to send a negative acknowledgement; in HL7 ack mode
    ``reject_code`` (:data:`mllp.REJECT_AE`, the default, or :data:`mllp.REJECT_AR`) chooses
    MSA-1 of the rejection.

    Set ``defer = True`` to decide later: nothing is sent for this message until
    :meth:`mllp.Server.acknowledge` is called with ``connection_id`` and ``message_seq``, from
    any thread (e.g. after a group commit). Replies still leave in message order.
    """

    connection_id: int
    message_seq: int
    message: bytes
    accept: bool = True
    reject_code: int = 1
    defer: bool = False


@dataclass
class AckInEvent:
    """A client acknowledged data the server sent: ``accepted`` True for ACK, False for NAK."""

    connection_id: int
    accepted: bool


@dataclass
class ErrorEvent:
    """Something went wrong on a connection (``connection_id`` 0: on the server)."""

    connection_id: int
    error_code: int
    description: str


@dataclass
class LogEvent:
    """A log line (see the LogLevel setting); ``log_type`` is INFO, VERBOSE or DEBUG."""

    connection_id: int
    log_level: int
    message: str
    log_type: str


@dataclass
class SSLClientAuthenticationEvent:
    """A TLS client presented its certificate (or none: ``cert_encoded`` is empty).

    ``accept`` starts as the library's verification result against the SSLClientCACerts
    setting (``status`` is "OK" or why it failed); it is a recommendation: set it either way.
    False closes the connection.
    """

    connection_id: int
    cert_encoded: bytes
    cert_subject: str
    cert_issuer: str
    status: str
    accept: bool = False


@dataclass
class SSLConnectionRequestEvent:
    """A TLS ClientHello arrived. Set ``certificate`` to a :class:`mllp.Certificate` to present
    it on this connection instead of the server's ``ssl_cert`` (the library takes its own
    reference when the handler returns). The lists are comma-separated."""

    connection_id: int
    supported_cipher_suites: str
    supported_signature_algs: str
    certificate: Optional["Certificate"] = None


@dataclass
class SSLStatusEvent:
    """Progress of a secure connection (informational)."""

    connection_id: int
    message: str
