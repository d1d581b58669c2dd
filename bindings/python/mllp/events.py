"""Event objects passed to handlers. Fields follow the reference's event parameters.

Events whose parameters are read-write in the reference (``accept`` of ConnectionRequest,
AckOut and SSLClientAuthentication, AckOut's ``reject_code``, ``defer`` and ``reply``, and
SSLConnectionRequest's ``certificate``) are written back to the library when the handler
returns.

``charset`` is MSH-18 as the message has it ("" when absent); ``encoding`` is the library's
normalised name for it ("8859/1", "UNICODE UTF-8", ...; "" when unknown, or for a message that
is not HL7 when there is no DefaultCharset setting).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from .certificate import Certificate

__all__ = [
    "ConnectionRequestEvent",
    "ConnectedEvent",
    "DisconnectedEvent",
    "StartTransferEvent",
    "TransferEvent",
    "EndTransferEvent",
    "MessageEvent",
    "AckOutEvent",
    "AckInEvent",
    "DuplicateEvent",
    "ErrorEvent",
    "LogEvent",
    "SSLClientAuthenticationEvent",
    "SSLConnectionRequestEvent",
    "SSLStatusEvent",
    "AckKind",
    "ClientAckInEvent",
    "SendDoneEvent",
    "SSLServerAuthenticationEvent",
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
    charset: str = ""
    encoding: str = ""


@dataclass
class TransferEvent:
    """A piece of an incoming message; ``bytes_transferred`` includes this piece."""

    connection_id: int
    bytes_transferred: int
    data: bytes


@dataclass
class EndTransferEvent:
    """A message finished arriving (fires just before Message, then AckOut)."""

    connection_id: int
    message_seq: int
    charset: str = ""
    encoding: str = ""


@dataclass
class MessageEvent:
    """The whole message in one event, after EndTransfer and before AckOut.

    ``data`` is UTF-8 when ``decoded`` is True (the DecodeToUTF8 setting converted it from
    ``encoding``); otherwise the bytes as received.
    """

    connection_id: int
    message_seq: int
    data: bytes
    charset: str = ""
    encoding: str = ""
    decoded: bool = False


@dataclass
class AckOutEvent:
    """An acknowledgement is about to be sent for ``message``.

    Set ``accept = False`` to send a negative acknowledgement; in HL7 ack mode
    ``reject_code`` (:data:`mllp.REJECT_AE`, the default, or :data:`mllp.REJECT_AR`) chooses
    MSA-1 of the rejection.

    Set ``defer = True`` to decide later: nothing is sent for this message until
    :meth:`mllp.Server.acknowledge` (or :meth:`mllp.Server.acknowledge_with`) is called with
    ``connection_id`` and ``message_seq``, from any thread (e.g. after a group commit). Replies
    still leave in message order.

    Set ``reply`` to bytes (str is UTF-8 encoded) to send exactly those as the acknowledgement
    instead of the one the library builds from ``accept`` / ``reject_code`` (HL7 ack mode: an
    unframed HL7 ACK message; MLLP ack mode: the one ACK/NAK byte). None (the default) lets the
    library build it.
    """

    connection_id: int
    message_seq: int
    message: bytes
    accept: bool = True
    reject_code: int = 1
    defer: bool = False
    charset: str = ""
    encoding: str = ""
    reply: Optional[Union[bytes, bytearray, memoryview, str]] = None


@dataclass
class AckInEvent:
    """A client acknowledged data the server sent: ``accepted`` True for ACK, False for NAK."""

    connection_id: int
    accepted: bool


@dataclass
class DuplicateEvent:
    """A resent message (DuplicateWindow) was answered with the acknowledgement its original
    got (``reply``, unframed, sent again byte for byte) and was not delivered."""

    connection_id: int
    message: bytes
    control_id: str
    reply: bytes


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


# ---------------------------------------------------------------------------------------------
# The client (sender). Connected, Disconnected, Error, Log and SSLStatus use the classes above;
# their ``connection_id`` is the client's connection number (1 for the first connect, +1 per
# reconnect; 0 when not connected).
# ---------------------------------------------------------------------------------------------


class AckKind(IntEnum):
    """The kind of an acknowledgement the client received (the library's ``MLLP_ACK_*``): an
    HL7 MSA-1 code, the MLLP commit byte (``ACK`` / ``NAK``), or ``NONE`` (nothing expected or
    nothing received)."""

    NONE = -1
    AA = 0
    AE = 1
    AR = 2
    CA = 3
    CE = 4
    CR = 5
    ACK = 6
    NAK = 7


@dataclass
class ClientAckInEvent:
    """An acknowledgement arrived. ``message_id`` is the message it answered (0, with
    ``matched`` False, when it matched none: late, mismatched or unsolicited); ``control_id``
    is MSA-2 ("" for a commit ACK/NAK byte); ``text`` is MSA-3 and the ERR text joined by "; ";
    ``data`` the acknowledgement as received, unframed."""

    connection_id: int
    message_id: int
    kind: AckKind
    control_id: str
    text: str
    data: bytes
    matched: bool


@dataclass
class SendDoneEvent:
    """A message's outcome: ``result_code`` 0 (``description`` "OK") when positively
    acknowledged (or written, AckMode=None), else the error code (2040 timeout, 2041 AE/CE,
    2042 AR/CR, 670 NAK, 1120 dropped, socket errors, ...). ``control_id`` is the message's
    MSH-10; ``ack_kind`` the kind of its last acknowledgement (``AckKind.NONE`` if none came);
    ``attempts`` 1 + resends."""

    connection_id: int
    message_id: int
    control_id: str
    result_code: int
    description: str
    ack_kind: AckKind
    attempts: int


@dataclass
class SSLServerAuthenticationEvent:
    """The TLS server presented its certificate. ``accept`` starts as the library's
    verification (against the SSLServerCACerts / SSLAcceptServerCertStore settings, or the
    system roots; ``status`` is "OK" or why it failed); set it either way. False (or a handler
    that raises) refuses the server: the connection fails with 2023
    (:data:`mllp.ERR_TLS_SERVER_REJECTED`)."""

    connection_id: int
    cert_encoded: bytes
    cert_subject: str
    cert_issuer: str
    status: str
    accept: bool = False


@dataclass(frozen=True)
class Metrics:
    """:attr:`Server.metrics`: the server's counters at one moment (``mllp_metrics``), counted
    since the server was created. :meth:`Server.metrics_text` adds errors per code, TLS
    failures per reason and the latency histogram's buckets (Prometheus text format)."""

    #: Connections accepted and admitted (on_connected fired).
    connections_accepted: int = 0
    #: Connections refused: ConnectionRequest, MaxConnections, PROXY header, TLS handshake.
    connections_refused: int = 0
    #: Connections open now.
    connections_open: int = 0
    #: Complete messages (frames) received.
    messages_received: int = 0
    #: Answered positively (ACK, AA, CA).
    messages_accepted: int = 0
    #: Answered negatively (NAK, AE, AR, CE, CR) or refused by the library.
    messages_refused: int = 0
    #: Answered from the duplicate window (DuplicateWindow).
    messages_duplicate: int = 0
    #: Application bytes received (decrypted, for TLS).
    bytes_in: int = 0
    #: Application bytes sent.
    bytes_out: int = 0
    #: Positive acknowledgements written.
    acks_sent: int = 0
    #: Negative acknowledgements written.
    naks_sent: int = 0
    #: Error events, all codes.
    errors: int = 0
    #: TLS handshakes completed.
    tls_handshakes_completed: int = 0
    #: TLS handshakes failed.
    tls_handshakes_failed: int = 0
    #: Acknowledgements whose latency was measured.
    ack_latency_count: int = 0
    #: Their sum, seconds: end block received -> acknowledgement written.
    ack_latency_sum_seconds: float = 0.0

    @classmethod
    def _from_struct(cls, s: object) -> "Metrics":
        return cls(**{f.name: getattr(s, f.name) for f in fields(cls)})
