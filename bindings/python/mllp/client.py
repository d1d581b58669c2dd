"""mllp.Client: the MLLP client (sender) over libmllp's C API.

Threading: a client has no thread of its own. All its I/O happens, and every handler runs, on
the thread calling :meth:`Client.connect`, :meth:`Client.send`, :meth:`Client.do_events` or
:meth:`Client.disconnect`, inside those calls (which release the GIL while they wait). An
asynchronous send (:meth:`Client.send_async`) makes progress only inside ``do_events`` (or a
later blocking call). From inside a handler ``send_async``, properties and ``config`` are
allowed; ``send``, ``connect``, ``do_events`` and ``close`` raise :class:`MLLPError` 2006.

Lifetimes follow :mod:`mllp.server`: the C callbacks are module-level CFUNCTYPE objects (also
referenced by every Client), the library's user pointer is a small id mapped weakly to the
Client and dropped when the library calls the release callback, a client that is never closed
is freed when collected or at interpreter exit, and no exception ever propagates into C.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from ctypes import byref, c_int, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from . import _lib
from ._errors import (
    ERR_BAD_STATE,
    ERR_INVALID_ARGUMENT,
    ERR_REENTRANT,
    OK,
    MLLPError,
    check,
)
from ._lib import lib
from .certificate import Certificate
from .events import (
    AckKind,
    ClientAckInEvent,
    ConnectedEvent,
    DisconnectedEvent,
    ErrorEvent,
    LogEvent,
    SendDoneEvent,
    SSLServerAuthenticationEvent,
    SSLStatusEvent,
)
from .server import (
    DEFAULT_DO_EVENTS_WAIT_MS,
    BytesLike,
    _Slot,
    _bytes_at,
    _read_buffer,
    _report,
    _text,
    _to_bytes,
)

__all__ = ["Client", "SendResult", "SendError", "AckKind", "CLIENT_EVENT_NAMES"]


@dataclass(frozen=True)
class SendResult:
    """What :meth:`Client.send` reports: the message's id, the kind of its last acknowledgement
    (``AckKind.NONE`` if none came) and how many times it was sent (1 + resends)."""

    message_id: int
    ack_kind: AckKind
    attempts: int


class SendError(MLLPError):
    """A message :meth:`Client.send` accepted for sending failed: refused after its retries
    (2042 AR/CR, 2041 AE/CE, 670 NAK), no acknowledgement (2040), connection lost (1120),
    socket and TLS errors. An :class:`MLLPError` (``.code``, ``.message``) with the
    :class:`SendResult` as ``.result``."""

    result: SendResult

    def __init__(self, code: int, message: str, result: SendResult) -> None:
        super().__init__(code, message)
        self.result = result


def _kind(value: int) -> AckKind:
    try:
        return AckKind(int(value))
    except ValueError:  # a kind newer than this binding: keep the number
        return value  # type: ignore[return-value]


def _result(raw: Any) -> SendResult:
    return SendResult(int(raw.message_id), _kind(raw.ack_kind), int(raw.attempts))


# ---------------------------------------------------------------------------------------------
# Client registry (user pointer -> Client) and the release callback
# ---------------------------------------------------------------------------------------------

_ids = itertools.count(1)
#: id -> weak reference to its Client, for every id the library still holds; an entry leaves
#: only when the library releases the user pointer.
_CLIENTS: Dict[int, "weakref.ReferenceType[Client]"] = {}


def _lookup(user: Optional[int]) -> Optional["Client"]:
    ref = _CLIENTS.get(user or 0)
    return ref() if ref is not None else None


def _release(user: Optional[int]) -> None:
    try:
        _CLIENTS.pop(user or 0, None)
    except BaseException:
        pass


_release_c = _lib.RELEASE_CB(_release)


def _free_handle(handle: int, cid: int) -> None:
    """Frees the handle of a Client that was collected or is dropped at exit (finalizer)."""
    try:
        rc = lib.mllp_client_free(handle)
        if rc == ERR_REENTRANT:
            # Collected inside one of its own callbacks (only possible through a direct C
            # call: every method holds a reference): retry from another thread once it returned.
            def later() -> None:
                for _ in range(200):
                    time.sleep(0.05)
                    if lib.mllp_client_free(handle) != ERR_REENTRANT:
                        return

            threading.Thread(target=later, name=f"mllp-client-free-{cid}").start()
        elif rc != OK:
            check(rc)
    except BaseException as exc:
        _report("client finalizer (mllp_client_free)", exc)


# ---------------------------------------------------------------------------------------------
# Event trampolines: one per event, module-level, never collected
# ---------------------------------------------------------------------------------------------


def _handler_for(user: Optional[int], name: str) -> Tuple[Optional["Client"], Any]:
    client = _lookup(user)
    if client is None:
        return None, None
    return client, client._handlers.get(name)


def _status_trampoline(name: str, cls: type) -> Any:
    def tramp(user: Optional[int], p: Any) -> None:
        try:
            client, handler = _handler_for(user, name)
            if client is None or handler is None:
                return
            raw = p.contents
            event = cls(int(raw.connection_id), int(raw.status_code), _text(raw.description))
            client._invoke(name, handler, event)
        except BaseException as exc:
            _report(f"client on_{name} trampoline", exc)

    return _lib.STATUS_CB(tramp)


_t_connected = _status_trampoline("connected", ConnectedEvent)
_t_disconnected = _status_trampoline("disconnected", DisconnectedEvent)


def _t_ack_in(user: Optional[int], p: Any) -> None:
    try:
        client, handler = _handler_for(user, "ack_in")
        if client is None or handler is None:
            return
        raw = p.contents
        event = ClientAckInEvent(
            int(raw.connection_id),
            int(raw.message_id),
            _kind(raw.kind),
            _text(raw.control_id),
            _text(raw.text),
            _bytes_at(raw.data, raw.len),
            bool(raw.matched),
        )
        client._invoke("ack_in", handler, event)
    except BaseException as exc:
        _report("client on_ack_in trampoline", exc)


_t_ack_in_c = _lib.CLIENT_ACK_IN_CB(_t_ack_in)


def _t_send_done(user: Optional[int], p: Any) -> None:
    try:
        client, handler = _handler_for(user, "send_done")
        if client is None or handler is None:
            return
        raw = p.contents
        event = SendDoneEvent(
            int(raw.connection_id),
            int(raw.message_id),
            _text(raw.control_id),
            int(raw.result_code),
            _text(raw.description),
            _kind(raw.ack_kind),
            int(raw.attempts),
        )
        client._invoke("send_done", handler, event)
    except BaseException as exc:
        _report("client on_send_done trampoline", exc)


_t_send_done_c = _lib.SEND_DONE_CB(_t_send_done)


def _t_error(user: Optional[int], p: Any) -> None:
    try:
        client, handler = _handler_for(user, "error")
        if client is None or handler is None:
            return
        raw = p.contents
        event = ErrorEvent(int(raw.connection_id), int(raw.error_code), _text(raw.description))
        client._invoke("error", handler, event)
    except BaseException as exc:
        _report("client on_error trampoline", exc)


_t_error_c = _lib.ERROR_CB(_t_error)


def _t_log(user: Optional[int], p: Any) -> None:
    try:
        client, handler = _handler_for(user, "log")
        if client is None or handler is None:
            return
        raw = p.contents
        event = LogEvent(
            int(raw.connection_id), int(raw.log_level), _text(raw.message), _text(raw.log_type)
        )
        client._invoke("log", handler, event)
    except BaseException as exc:
        _report("client on_log trampoline", exc)


_t_log_c = _lib.LOG_CB(_t_log)


def _t_ssl_server_authentication(user: Optional[int], p: Any) -> None:
    try:
        client, handler = _handler_for(user, "ssl_server_authentication")
        if client is None or handler is None:
            return
        raw = p.contents
        event = SSLServerAuthenticationEvent(
            int(raw.connection_id),
            _bytes_at(raw.cert_encoded, raw.cert_encoded_len),
            _text(raw.cert_subject),
            _text(raw.cert_issuer),
            _text(raw.status),
            bool(raw.accept),
        )
        if client._invoke("ssl_server_authentication", handler, event):
            raw.accept = 1 if event.accept else 0
        else:
            raw.accept = 0  # fail closed: a handler that raised did not accept
    except BaseException as exc:
        _report("client on_ssl_server_authentication trampoline", exc)


_t_ssl_server_authentication_c = _lib.SSL_SERVER_AUTH_CB(_t_ssl_server_authentication)


def _t_ssl_status(user: Optional[int], p: Any) -> None:
    try:
        client, handler = _handler_for(user, "ssl_status")
        if client is None or handler is None:
            return
        raw = p.contents
        client._invoke("ssl_status", handler, SSLStatusEvent(int(raw.connection_id), _text(raw.message)))
    except BaseException as exc:
        _report("client on_ssl_status trampoline", exc)


_t_ssl_status_c = _lib.SSL_STATUS_CB(_t_ssl_status)

#: (event name, registration function, trampoline)
_TRAMPOLINES: Tuple[Tuple[str, str, Any], ...] = (
    ("connected", "mllp_client_on_connected", _t_connected),
    ("disconnected", "mllp_client_on_disconnected", _t_disconnected),
    ("ack_in", "mllp_client_on_ack_in", _t_ack_in_c),
    ("send_done", "mllp_client_on_send_done", _t_send_done_c),
    ("error", "mllp_client_on_error", _t_error_c),
    ("log", "mllp_client_on_log", _t_log_c),
    (
        "ssl_server_authentication",
        "mllp_client_on_ssl_server_authentication",
        _t_ssl_server_authentication_c,
    ),
    ("ssl_status", "mllp_client_on_ssl_status", _t_ssl_status_c),
)
CLIENT_EVENT_NAMES: Tuple[str, ...] = tuple(t[0] for t in _TRAMPOLINES)


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------


class Client:
    """An MLLP client (sender).

    ::

        with mllp.Client(remote_host="127.0.0.1", remote_port=2575) as client:
            client.config("AckMode=HL7")
            result = client.send(message)        # waits for the ACK; SendError if refused
            print(result.ack_kind, result.attempts)

    Handlers take one event object, as for :class:`mllp.Server`: ``client.on_send_done = fn``
    or ``@client.on_send_done``. An exception raised by a handler goes to
    :attr:`handler_error_hook` (``hook(event_name, exception)``) or ``sys.unraisablehook``; one
    raised by an SSLServerAuthentication handler refuses the server.

    ``close()`` (or leaving a ``with`` block) closes the connection and frees the client;
    messages still queued are dropped. A client never closed is freed when collected.
    """

    on_connected: _Slot[ConnectedEvent] = _Slot("connected")
    on_disconnected: _Slot[DisconnectedEvent] = _Slot("disconnected")
    on_ack_in: _Slot[ClientAckInEvent] = _Slot("ack_in")
    on_send_done: _Slot[SendDoneEvent] = _Slot("send_done")
    on_error: _Slot[ErrorEvent] = _Slot("error")
    on_log: _Slot[LogEvent] = _Slot("log")
    on_ssl_server_authentication: _Slot[SSLServerAuthenticationEvent] = _Slot(
        "ssl_server_authentication"
    )
    on_ssl_status: _Slot[SSLStatusEvent] = _Slot("ssl_status")

    #: Called as ``hook(event_name, exception)`` when a handler raises; None uses
    #: ``sys.unraisablehook``.
    handler_error_hook: Optional[Callable[[str, BaseException], Any]]

    def __init__(
        self,
        *,
        remote_host: Optional[str] = None,
        remote_port: Optional[int] = None,
        local_host: Optional[str] = None,
        version: Optional[int] = None,
        timeout: Optional[int] = None,
        keep_alive: Optional[bool] = None,
        ssl_enabled: Optional[bool] = None,
        ssl_cert: Optional[Certificate] = None,
        config: Iterable[str] = (),
    ) -> None:
        if not _lib.HAVE_CLIENT:
            raise ImportError(f"{_lib.library_path} has no MLLP client (mllp_client_new)")
        self._handle: Optional[int] = None
        self._handlers: Dict[str, Optional[Callable[[Any], Any]]] = {}
        self._ssl_cert: Optional[Certificate] = None
        self.handler_error_hook = None
        # The C callbacks this client registers (module-level objects, referenced here too).
        self._cfuncs: Tuple[Any, ...] = tuple(t[2] for t in _TRAMPOLINES) + (_release_c,)

        handle = lib.mllp_client_new()
        if not handle:
            raise MemoryError("mllp_client_new returned NULL")
        self._cid = next(_ids)
        _CLIENTS[self._cid] = weakref.ref(self)
        rc = lib.mllp_client_set_user_data(handle, self._cid, _release_c)
        if rc != OK:  # cannot happen for a non-NULL handle; release was not called
            _CLIENTS.pop(self._cid, None)
            lib.mllp_client_free(handle)
            check(rc)
        # Every event is registered once (none fires more than about once per message); a
        # trampoline with no handler returns at once.
        for _name, register, tramp in _TRAMPOLINES:
            check(getattr(lib, register)(handle, tramp))
        self._handle = handle
        self._finalizer = weakref.finalize(self, _free_handle, handle, self._cid)

        if remote_host is not None:
            self.remote_host = remote_host
        if remote_port is not None:
            self.remote_port = remote_port
        if local_host is not None:
            self.local_host = local_host
        if version is not None:
            self.version = version
        if timeout is not None:
            self.timeout = timeout
        if keep_alive is not None:
            self.keep_alive = keep_alive
        if ssl_cert is not None:
            self.ssl_cert = ssl_cert
        if ssl_enabled is not None:
            self.ssl_enabled = ssl_enabled
        for setting in config:
            self.config(setting)

    # -- lifetime ------------------------------------------------------------------------

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise MLLPError(ERR_BAD_STATE, "the client is closed")
        return h

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has freed the client."""
        return self._handle is None

    def close(self) -> None:
        """Closes the connection (Disconnected fires, on this thread), ends every message not
        finished (SendDone with result code 672, on this thread) and frees the client.
        Idempotent. MLLPError 2006 from one of its handlers."""
        h = self._handle
        if h is None:
            return
        check(lib.mllp_client_free(h))
        self._handle = None
        self._finalizer.detach()
        self._ssl_cert = None

    free = close

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._handle is None:
            return "<mllp.Client (closed)>"
        try:
            return (
                f"<mllp.Client {self.remote_host}:{self.remote_port} connected={self.connected} "
                f"pending={self.pending}>"
            )
        except MLLPError:
            return "<mllp.Client>"

    # -- handlers ------------------------------------------------------------------------

    def _set_handler(self, name: str, fn: Optional[Callable[[Any], Any]]) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(f"on_{name} handler must be callable or None, not {type(fn).__name__}")
        self._handlers[name] = fn

    def _invoke(self, name: str, handler: Callable[[Any], Any], event: Any) -> bool:
        try:
            handler(event)
            return True
        except BaseException as exc:
            _report(f"client on_{name} handler", exc, self)
            return False

    # -- properties ----------------------------------------------------------------------

    @property
    def remote_host(self) -> str:
        """The server's name or IP address (default "127.0.0.1")."""
        return _text(_read_buffer(lib.mllp_client_get_remote_host, self._h(), text=True))

    @remote_host.setter
    def remote_host(self, host: str) -> None:
        check(lib.mllp_client_set_remote_host(self._h(), (host or "").encode("utf-8")))

    @property
    def remote_port(self) -> int:
        """The server's port (default 0: must be set)."""
        out = c_uint16(0)
        check(lib.mllp_client_get_remote_port(self._h(), byref(out)))
        return int(out.value)

    @remote_port.setter
    def remote_port(self, port: int) -> None:
        if not 0 <= int(port) <= 0xFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"port out of range: {port}")
        check(lib.mllp_client_set_remote_port(self._h(), int(port)))

    @property
    def local_host(self) -> str:
        """The local interface to connect from ("" = any)."""
        return _text(_read_buffer(lib.mllp_client_get_local_host, self._h(), text=True))

    @local_host.setter
    def local_host(self, host: str) -> None:
        check(lib.mllp_client_set_local_host(self._h(), (host or "").encode("utf-8")))

    @property
    def version(self) -> int:
        """MLLP version, 1 or 2 (default 2). AckMode defaults to MLLP for 2 and None for 1."""
        out = c_int(0)
        check(lib.mllp_client_get_version(self._h(), byref(out)))
        return int(out.value)

    @version.setter
    def version(self, version: int) -> None:
        v = int(version)
        if not -(2**31) <= v < 2**31:
            raise MLLPError(2005, f"invalid version: {version}")
        check(lib.mllp_client_set_version(self._h(), v))

    @property
    def timeout(self) -> int:
        """Seconds for the connect, the TLS handshake and each acknowledgement (default 10;
        0 = no limit)."""
        out = c_uint32(0)
        check(lib.mllp_client_get_timeout(self._h(), byref(out)))
        return int(out.value)

    @timeout.setter
    def timeout(self, seconds: int) -> None:
        if not 0 <= int(seconds) <= 0xFFFFFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"timeout out of range: {seconds}")
        check(lib.mllp_client_set_timeout(self._h(), int(seconds)))

    @property
    def keep_alive(self) -> bool:
        """SO_KEEPALIVE on the connection."""
        out = c_uint8(0)
        check(lib.mllp_client_get_keep_alive(self._h(), byref(out)))
        return bool(out.value)

    @keep_alive.setter
    def keep_alive(self, on: bool) -> None:
        check(lib.mllp_client_set_keep_alive(self._h(), 1 if on else 0))

    @property
    def connected(self) -> bool:
        """True while connected (read-only: use :meth:`connect` / :meth:`disconnect`)."""
        out = c_uint8(0)
        check(lib.mllp_client_get_connected(self._h(), byref(out)))
        return bool(out.value)

    @property
    def ssl_enabled(self) -> bool:
        """SSLEnabled: connect with TLS. The server's certificate is checked against the
        SSLServerCACerts (PEM text) or SSLAcceptServerCertStore (a PEM file) setting, else the
        system roots; :attr:`on_ssl_server_authentication` may override the verdict."""
        out = c_uint8(0)
        check(lib.mllp_client_get_ssl_enabled(self._h(), byref(out)))
        return bool(out.value)

    @ssl_enabled.setter
    def ssl_enabled(self, on: bool) -> None:
        check(lib.mllp_client_set_ssl_enabled(self._h(), 1 if on else 0))

    @property
    def ssl_cert(self) -> Optional[Certificate]:
        """SSLCert: the client certificate (with its private key) for mutual TLS, or None.
        The library keeps its own reference, so the caller may close its object afterwards;
        reading returns the object last set here (the library has no getter)."""
        return self._ssl_cert

    @ssl_cert.setter
    def ssl_cert(self, cert: Optional[Certificate]) -> None:
        if cert is None:
            check(lib.mllp_client_set_ssl_cert(self._h(), None))
            self._ssl_cert = None
            return
        if not isinstance(cert, Certificate):
            raise TypeError(f"ssl_cert must be an mllp.Certificate or None, not {type(cert).__name__}")
        with cert._lock:  # not freed by a concurrent close() while the library copies it
            check(lib.mllp_client_set_ssl_cert(self._h(), cert._h()))
        self._ssl_cert = cert

    @property
    def pending(self) -> int:
        """The number of messages queued or awaiting an acknowledgement."""
        out = c_size_t(0)
        check(lib.mllp_client_get_pending(self._h(), byref(out)))
        return int(out.value)

    # -- methods -------------------------------------------------------------------------

    def config(self, setting: str) -> str:
        """``config("Name=Value")`` sets a setting (returns ""); ``config("Name")`` reads one:
        AckMode (MLLP, HL7, None), MaxRetries, RetryDelay, RetryMaxDelay, RetryOnNegative,
        MaxOutstanding, SSLServerCACerts, SSLAcceptServerCertStore, SSLServerName, ..."""
        raw = setting.encode("utf-8")
        h = self._h()
        if "=" in setting:
            check(lib.mllp_client_config(h, raw, None, None))
            return ""
        return _text(_read_buffer(lib.mllp_client_config, h, raw, text=True))

    def connect(self) -> None:
        """Connects (TLS handshake included), waiting up to :attr:`timeout`; Connected fires."""
        check(lib.mllp_client_connect(self._h()))

    def disconnect(self) -> None:
        """Closes the connection; queued messages stay queued. Disconnected fires."""
        check(lib.mllp_client_disconnect(self._h()))

    def send(self, data: BytesLike) -> SendResult:
        """Sends one message (str is UTF-8 encoded), connecting if needed, and waits until it is
        acknowledged (AckMode MLLP: the ACK byte; HL7: MSA-1 AA or CA; None: once written).
        Raises :class:`SendError` (an :class:`MLLPError` with ``.result``) when it failed
        after its retries, and MLLPError for a message refused before sending (2001: empty,
        containing a framing byte, or no MSH-10 with AckMode=HL7) or a call from a handler
        (2006)."""
        b = _to_bytes(data)
        r = _lib.SendResultStruct()
        r.ack_kind = int(AckKind.NONE)
        rc = lib.mllp_client_send(self._h(), b, len(b), byref(r))
        if rc == OK:
            return _result(r)
        raw = lib.mllp_last_error_message()
        msg = raw.decode("utf-8", "replace") if raw else ""
        if r.message_id or r.attempts:
            raise SendError(rc, msg, _result(r))
        raise MLLPError(rc, msg)

    def send_async(self, data: BytesLike) -> int:
        """Queues a message and returns its id at once; :attr:`on_send_done` reports the outcome
        later, inside :meth:`do_events` (or a blocking call)."""
        b = _to_bytes(data)
        out = c_uint64(0)
        check(lib.mllp_client_send_async(self._h(), b, len(b), byref(out)))
        return int(out.value)

    def do_events(self, timeout_ms: int = DEFAULT_DO_EVENTS_WAIT_MS) -> int:
        """Drives the connection and delivers events on this thread until nothing is queued or
        in flight, or ``timeout_ms`` (100 by default) passed; returns the number of messages
        still pending."""
        if not 0 <= int(timeout_ms) <= 0xFFFFFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"timeout out of range: {timeout_ms}")
        n = c_size_t(0)
        check(lib.mllp_client_do_events(self._h(), int(timeout_ms), byref(n)))
        return int(n.value)
