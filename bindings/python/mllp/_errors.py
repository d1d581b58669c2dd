"""Result codes and the MLLPError exception."""

from __future__ import annotations

from typing import Dict

from ._lib import lib

OK = 0
#: Received a negative acknowledgement (reference code 670).
ERR_NAK_RECEIVED = 670
#: Data was invalid: a timeout occurred or the message block was improperly formatted (671).
ERR_INVALID_DATA = 671
#: Connection interrupted while transferring data (672).
ERR_INTERRUPTED = 672
#: LocalPort cannot change while listening (106).
ERR_CANNOT_CHANGE_LOCAL_PORT = 106
#: LocalHost cannot change while listening (107).
ERR_CANNOT_CHANGE_LOCAL_HOST = 107
#: Operation would block: the connection's output queue is full (135).
ERR_WOULD_BLOCK = 135
#: Timeout (201).
ERR_TIMEOUT = 201
#: Action impossible in the present state (211).
ERR_BAD_STATE = 211
#: Action impossible while not connected (212).
ERR_NOT_CONNECTED = 212
#: Action impossible while listening (213).
ERR_LISTENING = 213
#: Could not open file (303).
ERR_CANNOT_OPEN_FILE = 303
#: Connection dropped by the remote host (1120).
ERR_DROPPED = 1120
#: A required pointer was NULL or an argument out of range (2001).
ERR_INVALID_ARGUMENT = 2001
#: No connection has that id: it never existed or has closed (2002).
ERR_NO_SUCH_CONNECTION = 2002
#: The setting exists in the reference but has no meaning for this server (2003).
ERR_NOT_SUPPORTED = 2003
#: Unknown setting name (2004).
ERR_UNKNOWN_SETTING = 2004
#: Invalid value for a setting or property (2005).
ERR_INVALID_VALUE = 2005
#: The call would wait for the thread delivering events, and was made from it (2006).
ERR_REENTRANT = 2006
#: An internal panic was caught at the boundary (2007).
ERR_PANIC = 2007
#: The buffer is NULL or too small (2008); handled inside the binding.
ERR_BUFFER_TOO_SMALL = 2008
#: A file or stream operation failed (2009).
ERR_IO = 2009
#: The server has been shut down and has freed its reactor (2010).
ERR_SHUT_DOWN = 2010
#: A synchronous send was interrupted by Interrupt (2011).
ERR_SEND_INTERRUPTED = 2011
#: MaxConnections reached; reported through the Error event (2012).
ERR_TOO_MANY_CONNECTIONS = 2012
#: A connection was closed because the server-wide budget for buffered input
#: (MaxBufferedBytes) was spent and it held the most partial-message data (2013).
ERR_MEMORY_BUDGET = 2013
#: A certificate or key could not be loaded or used: wrong password, key mismatch, expired,
#: no private key, bad format (2020).
ERR_CERTIFICATE = 2020
#: The TLS handshake failed or did not finish in time (2021).
ERR_TLS_HANDSHAKE = 2021
#: The client's certificate was refused in SSLClientAuthentication (2022).
ERR_TLS_CLIENT_REJECTED = 2022
#: A malformed batch (ProcessBatch): no BTS, wrong BTS-1 count, FHS without FTS, no MSH
#: inside; refused whole, reported through the Error event (2030).
ERR_BAD_BATCH = 2030
#: A message could not be converted to UTF-8 (DecodeToUTF8): unmappable bytes or an
#: unsupported character set; refused, reported through the Error event (2031).
ERR_CHARSET = 2031
#: A resent message arrived while its original was still undecided on another connection
#: (DuplicateWindow); refused, reported through the Error event (2032).
ERR_DUPLICATE_IN_PROGRESS = 2032
#: A connection did not start with a valid PROXY protocol header (ProxyProtocol): wrong
#: signature, malformed, too long, or not complete within ProxyHeaderTimeout; closed,
#: reported through the Error event (2050).
ERR_PROXY_HEADER = 2050

#: The server's certificate was refused by the client: verification against
#: SSLServerCACerts / SSLAcceptServerCertStore, or the SSLServerAuthentication event (2023).
ERR_TLS_SERVER_REJECTED = 2023
#: Client: no acknowledgement within Timeout, after the retries (2040).
ERR_ACK_TIMEOUT = 2040
#: Client: the server answered MSA-1 AE or CE, after the retries; the text is in the
#: description (2041).
ERR_APP_ERROR = 2041
#: Client: the server answered MSA-1 AR or CR, after the retries (2042).
ERR_APP_REJECT = 2042
#: Client: an HL7 ACK whose MSA-2 matches no outstanding message; reported through the Error
#: event, the message keeps waiting (2043).
ERR_ACK_MISMATCH = 2043

#: HL7 MSA-1 reject codes for AckOutEvent.reject_code.
REJECT_AE = 1
REJECT_AR = 2

#: HL7 acknowledgement codes (MSA-1) for :meth:`mllp.Server.send_app_ack` and
#: :func:`mllp.build_ack`. ACK_AE / ACK_AR have the numbers of REJECT_AE / REJECT_AR.
ACK_AA = 0
ACK_AE = 1
ACK_AR = 2
ACK_CA = 3
ACK_CE = 4
ACK_CR = 5
#: Acknowledgement kinds the client reports besides the MSA-1 codes (see mllp.AckKind): the
#: MLLP commit ACK / NAK byte, and nothing (nothing expected, or nothing received).
ACK_ACK = 6
ACK_NAK = 7
ACK_NONE = -1

CODES: Dict[str, int] = {k: v for k, v in dict(globals()).items() if k.startswith("ERR_")}


__all__ = [
    "MLLPError",
    "check",
    "error_description",
    "CODES",
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
    "ERR_NOT_CONNECTED",
    "ERR_LISTENING",
    "ERR_DROPPED",
    "ERR_SHUT_DOWN",
    "ERR_BAD_BATCH",
    "ERR_CHARSET",
    "ERR_DUPLICATE_IN_PROGRESS",
    "ERR_TLS_SERVER_REJECTED",
    "ERR_ACK_TIMEOUT",
    "ERR_APP_ERROR",
    "ERR_APP_REJECT",
    "ERR_ACK_MISMATCH",
    "ERR_PROXY_HEADER",
    "REJECT_AE",
    "REJECT_AR",
    "ACK_AA",
    "ACK_AE",
    "ACK_AR",
    "ACK_CA",
    "ACK_CE",
    "ACK_CR",
    "ACK_ACK",
    "ACK_NAK",
    "ACK_NONE",
]


def error_description(code: int) -> str:
    """The library's description of a result code (the reference's wording where it has one)."""
    raw = lib.mllp_error_description(int(code))
    return raw.decode("utf-8", "replace") if raw else ""


class MLLPError(Exception):
    """A call into libmllp failed.

    ``code`` is the result code (the reference's numbers: 670-672, 1xx-3xx, 100xx socket
    errors; 2001-2099 for the library's own conditions); ``message`` is the library's message
    for the failure (``mllp_last_error_message``), or the code's description.
    """

    code: int
    message: str

    def __init__(self, code: int, message: str = "") -> None:
        self.code = int(code)
        self.message = message or error_description(code)
        super().__init__(self.code, self.message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def check(rc: int) -> None:
    """Raises MLLPError for a non-zero result code, with this thread's last error message."""
    if rc != OK:
        raw = lib.mllp_last_error_message()
        msg = raw.decode("utf-8", "replace") if raw else ""
        raise MLLPError(rc, msg)
