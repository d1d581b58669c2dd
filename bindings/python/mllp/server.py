"""mllp.Server and mllp.Connection: the MLLPServer component over libmllp's C API.

Lifetimes (the reason this module looks the way it does):

* The C callbacks are module-level CFUNCTYPE objects (one trampoline per event), alive for
  the whole process and also referenced by every Server, so ctypes can never collect one the
  library still holds. Each server registers them at construction, except the per-message
  StartTransfer/Transfer/EndTransfer ones, registered only while a handler is set.
* The library's user pointer is a small integer id. Trampolines map it to the Server through
  a weak reference, so the library never keeps a Server alive and a forgotten Server is
  collected (and freed) normally. The id stays in ``_SERVERS`` until the library calls the
  release callback, after the last callback that could receive it.
* Streams get their own ids in ``_STREAMS``: the file object is kept alive until the library
  calls the stream's close callback.
* ``weakref.finalize`` frees a server that was never closed, at collection or at interpreter
  exit (atexit runs while the interpreter is fully alive, so the Disconnected callbacks fired
  by ``mllp_server_free`` still work).
* No exception ever propagates into C: every trampoline catches everything and reports it
  through ``Server.handler_error_hook`` or ``sys.unraisablehook``.
"""

from __future__ import annotations

import ctypes
import itertools
import operator
import os
import sys
import threading
import traceback
import types
import weakref
from ctypes import byref, c_int, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Protocol,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from . import _lib
from ._errors import (
    ERR_BAD_STATE,
    REJECT_AE,
    ERR_BUFFER_TOO_SMALL,
    ERR_INVALID_ARGUMENT,
    ERR_NO_SUCH_CONNECTION,
    ERR_REENTRANT,
    OK,
    MLLPError,
    check,
)
from ._lib import lib
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
    Metrics,
    SSLClientAuthenticationEvent,
    SSLConnectionRequestEvent,
    SSLStatusEvent,
    StartTransferEvent,
    TransferEvent,
)
from .certificate import Certificate

__all__ = ["Server", "Connection", "Connections", "BytesLike", "build_ack"]

BytesLike = Union[bytes, bytearray, memoryview, str]
#: A connection id: the library's integer, or the reference's decimal string ("4294967296").
ConnectionId = Union[int, str]

_MAX_ID = 0xFFFFFFFFFFFFFFFF


def _parse_id(value: Any) -> Optional[int]:
    """The integer id for an int or a decimal string (the reference's ConnectionId); None when
    malformed (not digits, out of uint64 range, or another type)."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            return None
        n = int(value)
    elif isinstance(value, bytes):
        return _parse_id(value.decode("ascii", "replace"))
    elif isinstance(value, bool):
        return None
    else:
        try:
            n = operator.index(value)
        except TypeError:
            return None
    return n if 0 <= n <= _MAX_ID else None


def _conn_id(value: Any) -> int:
    """:func:`_parse_id` for the methods: a malformed id raises MLLPError 2002 (no such
    connection), as an unknown one does."""
    n = _parse_id(value)
    if n is None:
        raise MLLPError(ERR_NO_SUCH_CONNECTION, f"no connection has the id {value!r}")
    return n

E = TypeVar("E")
Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _text(raw: Optional[bytes]) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


def _bytes_at(ptr: Optional[int], n: int) -> bytes:
    return ctypes.string_at(ptr, n) if ptr and n else b""


def _to_bytes(data: BytesLike) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def _read_buffer(fn: Callable[..., int], *args: Any, text: bool) -> bytes:
    """Calls a getter under the header's buffer rule and returns the value (without NUL)."""
    n = c_size_t(0)
    rc = fn(*args, None, byref(n))
    for _ in range(16):  # the value may grow between the two calls; retry a few times
        if rc == OK:  # a NULL buffer is never OK per the header, but be lenient
            return b""
        if rc != ERR_BUFFER_TOO_SMALL:
            check(rc)
        cap = max(n.value, 1)
        buf = ctypes.create_string_buffer(cap)
        n = c_size_t(cap)
        rc = fn(*args, buf, byref(n))
        if rc == OK:
            size = n.value
            if text and size > 0:
                size -= 1  # the NUL
            return buf.raw[:size]
    raise MLLPError(ERR_BUFFER_TOO_SMALL, "the value kept changing size while being read")


def build_ack(message: BytesLike, code: int, text: Optional[str] = None) -> bytes:
    """Builds an HL7 ACK (unframed) for ``message`` with MSA-1 ``code`` (:data:`mllp.ACK_AA`
    ... ``ACK_CR``), MSA-2 its MSH-10 and the optional MSA-3 ``text``; MSH-10 of the ACK is a
    fresh control id (unique across connections, servers and restarts) and MSH-7 is now.
    Usable as an AckOut ``reply`` or with :meth:`Server.acknowledge_with`."""
    b = _to_bytes(message)
    t = None if text is None else text.encode("utf-8")
    # Each call makes a new control id, so a size query would waste one: start with a buffer
    # large enough for any ACK of this message and grow only if the library says so.
    cap = len(b) + 512 + (len(t) if t else 0)
    for _ in range(16):
        buf = ctypes.create_string_buffer(cap)
        n = c_size_t(cap)
        rc = lib.mllp_hl7_build_ack(b, len(b), int(code), t, buf, byref(n))
        if rc == OK:
            return buf.raw[: n.value]
        if rc != ERR_BUFFER_TOO_SMALL:
            check(rc)
        cap = max(n.value, cap * 2)
    raise MLLPError(ERR_BUFFER_TOO_SMALL, "the acknowledgement kept growing while being built")


def _report(where: str, exc: BaseException, server: Optional[Any] = None) -> None:
    """Reports an exception that cannot propagate (it happened inside a C callback): to the
    server's (or client's) ``handler_error_hook`` if set, else to ``sys.unraisablehook`` (whose default
    prints the traceback to stderr)."""
    try:
        hook = server.handler_error_hook if server is not None else None
        if hook is not None:
            try:
                hook(where, exc)
                return
            except BaseException as hook_exc:  # the hook itself failed: fall through
                exc = hook_exc
                where = f"{where} (in handler_error_hook)"
        msg = f"Exception ignored in mllp {where}"
        if sys.unraisablehook is sys.__unraisablehook__:
            # The default hook accepts only the interpreter's own argument type, which Python
            # code cannot build: print what it would print.
            try:
                sys.stderr.write(f"{msg}: {server!r}\n")
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
                sys.stderr.flush()
            except BaseException:
                pass
            return
        sys.unraisablehook(
            types.SimpleNamespace(  # a custom hook (pytest's, an application's) reads fields
                exc_type=type(exc),
                exc_value=exc,
                exc_traceback=exc.__traceback__,
                err_msg=msg,
                object=server,
            )
        )
    except BaseException:  # never let anything escape into C
        pass


# ---------------------------------------------------------------------------------------------
# Server registry (user pointer -> Server) and the release callback
# ---------------------------------------------------------------------------------------------

_ids = itertools.count(1)
#: id -> weak reference to its Server, for every id the library still holds. An entry leaves
#: only when the library releases the user pointer (``_release``).
_SERVERS: Dict[int, "weakref.ReferenceType[Server]"] = {}


#: sid -> Server for every server that is listening: a listening server with no other
#: reference keeps serving (as in the C# and Java bindings) until stop_listening(), shutdown(),
#: reset() or close(). Interpreter exit still frees it (its weakref.finalize runs at exit).
_LISTENING: Dict[int, "Server"] = {}
_listening_lock = threading.Lock()

#: How long :meth:`Server.do_events` waits for the first event by default (the reference's).
DEFAULT_DO_EVENTS_WAIT_MS = 100


def _lookup(user: Optional[int]) -> Optional["Server"]:
    ref = _SERVERS.get(user or 0)
    return ref() if ref is not None else None


def _release(user: Optional[int]) -> None:
    try:
        _SERVERS.pop(user or 0, None)
    except BaseException:
        pass


_release_c = _lib.RELEASE_CB(_release)


def _free_handle(handle: int, sid: int) -> None:
    """Frees a handle whose Server was collected or is being dropped at exit (finalizer)."""
    try:
        rc = lib.mllp_server_free(handle)
        if rc == ERR_REENTRANT:
            # The last reference died inside one of this server's callbacks (on the thread
            # delivering its events): free it from another thread once the callback returns.
            # Non-daemon, so interpreter exit waits for it.
            threading.Thread(
                target=lib.mllp_server_free, args=(handle,), name=f"mllp-free-{sid}"
            ).start()
        elif rc != OK:
            check(rc)
    except BaseException as exc:
        _report("finalizer (mllp_server_free)", exc)


# ---------------------------------------------------------------------------------------------
# Event trampolines: one per event, module-level, never collected
# ---------------------------------------------------------------------------------------------

_MESSAGE_EVENTS = ("start_transfer", "transfer", "end_transfer", "message", "ack_out")


def _t_connection_request(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("connection_request") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = ConnectionRequestEvent(_text(raw.address), int(raw.port), bool(raw.accept))
        if server._invoke("connection_request", handler, event, None):
            raw.accept = 1 if event.accept else 0
        else:
            raw.accept = 0  # fail closed: a handler that raised did not accept
    except BaseException as exc:
        _report("on_connection_request trampoline", exc)


_t_connection_request_c = _lib.CONNECTION_REQUEST_CB(_t_connection_request)


def _status_trampoline(name: str, cls: type) -> Any:
    def tramp(user: Optional[int], p: Any) -> None:
        try:
            server = _lookup(user)
            if server is None:
                return
            raw = p.contents
            if name == "disconnected":
                server._failed.discard(int(raw.connection_id))
                server._presented.pop(int(raw.connection_id), None)
            handler = server._handlers.get(name)
            if handler is None:
                return
            event = cls(int(raw.connection_id), int(raw.status_code), _text(raw.description))
            server._invoke(name, handler, event, None)
        except BaseException as exc:
            _report(f"on_{name} trampoline", exc)

    return _lib.STATUS_CB(tramp)


_t_connected = _status_trampoline("connected", ConnectedEvent)
_t_disconnected = _status_trampoline("disconnected", DisconnectedEvent)


def _boundary_trampoline(name: str, cls: type) -> Any:
    def tramp(user: Optional[int], p: Any) -> None:
        try:
            server = _lookup(user)
            if server is None:
                return
            raw = p.contents
            cid = int(raw.connection_id)
            if name == "start_transfer":
                server._failed.discard(cid)  # a new message starts clean
            handler = server._handlers.get(name)
            if handler is None:
                return
            event = cls(cid, int(raw.message_seq), _text(raw.charset), _text(raw.encoding))
            server._invoke(name, handler, event, cid)
        except BaseException as exc:
            _report(f"on_{name} trampoline", exc)

    return _lib.TRANSFER_BOUNDARY_CB(tramp)


_t_start_transfer = _boundary_trampoline("start_transfer", StartTransferEvent)
_t_end_transfer = _boundary_trampoline("end_transfer", EndTransferEvent)


def _t_transfer(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("transfer") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        cid = int(raw.connection_id)
        event = TransferEvent(cid, int(raw.bytes_transferred), _bytes_at(raw.data, raw.len))
        server._invoke("transfer", handler, event, cid)
    except BaseException as exc:
        _report("on_transfer trampoline", exc)


_t_transfer_c = _lib.TRANSFER_CB(_t_transfer)


def _t_message(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("message") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        cid = int(raw.connection_id)
        event = MessageEvent(
            cid,
            int(raw.message_seq),
            _bytes_at(raw.data, raw.len),
            _text(raw.charset),
            _text(raw.encoding),
            bool(raw.decoded),
        )
        server._invoke("message", handler, event, cid)
    except BaseException as exc:
        _report("on_message trampoline", exc)


_t_message_c = _lib.MESSAGE_CB(_t_message)

#: Per thread: the buffer behind the last AckOut reply a handler set. The library copies the
#: reply when the C callback returns, i.e. after the trampoline (and its locals) are gone, so
#: the buffer is kept here until the next AckOut trampoline on the same thread.
_reply_hold = threading.local()


def _t_ack_out(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        if server is None:
            return
        raw = p.contents
        cid = raw.connection_id
        failed = False
        if server._failed:  # rare: a handler raised earlier in this message
            failed = cid in server._failed
            server._failed.discard(cid)
        handler = server._handlers.get("ack_out")
        if getattr(_reply_hold, "buf", None) is not None:
            _reply_hold.buf = None  # the previous AckOut's callback has returned: copied
        if handler is not None:
            accept = bool(raw.accept)
            reject_code = raw.reject_code
            defer = bool(raw.defer)
            reply = _bytes_at(raw.reply, raw.reply_len) if raw.reply else None
            event = AckOutEvent(
                cid,
                raw.message_seq,
                _bytes_at(raw.message, raw.message_len),
                accept,
                reject_code,
                defer,
                _text(raw.charset),
                _text(raw.encoding),
                reply,
            )
            if server._invoke("ack_out", handler, event, None):
                # Written back only when changed (each ctypes field write has a cost).
                if bool(event.accept) != accept:
                    raw.accept = 1 if event.accept else 0
                if event.reject_code != reject_code:
                    raw.reject_code = int(event.reject_code)
                if bool(event.defer) != defer:
                    raw.defer = 1 if event.defer else 0
                if event.reply is not reply:
                    if event.reply is None:
                        raw.reply = None
                        raw.reply_len = 0
                    else:
                        b = _to_bytes(event.reply)
                        buf = ctypes.create_string_buffer(b, len(b))  # no NUL appended
                        _reply_hold.buf = buf
                        raw.reply = ctypes.addressof(buf)
                        raw.reply_len = len(b)
            else:
                failed = True
        if failed and server.nak_on_handler_error:
            raw.accept = 0  # a message whose handler raised is not acknowledged positively
    except BaseException as exc:
        _report("on_ack_out trampoline", exc)


_t_ack_out_c = _lib.ACK_OUT_CB(_t_ack_out)


def _t_ack_in(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("ack_in") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        server._invoke(
            "ack_in", handler, AckInEvent(int(raw.connection_id), bool(raw.accepted)), None
        )
    except BaseException as exc:
        _report("on_ack_in trampoline", exc)


_t_ack_in_c = _lib.ACK_IN_CB(_t_ack_in)


def _t_duplicate(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("duplicate") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = DuplicateEvent(
            int(raw.connection_id),
            _bytes_at(raw.message, raw.message_len),
            _text(raw.control_id),
            _bytes_at(raw.reply, raw.reply_len),
        )
        server._invoke("duplicate", handler, event, None)
    except BaseException as exc:
        _report("on_duplicate trampoline", exc)


_t_duplicate_c = _lib.DUPLICATE_CB(_t_duplicate)


def _t_error(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("error") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = ErrorEvent(int(raw.connection_id), int(raw.error_code), _text(raw.description))
        server._invoke("error", handler, event, None)
    except BaseException as exc:
        _report("on_error trampoline", exc)


_t_error_c = _lib.ERROR_CB(_t_error)


def _t_log(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("log") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = LogEvent(
            int(raw.connection_id), int(raw.log_level), _text(raw.message), _text(raw.log_type)
        )
        server._invoke("log", handler, event, None)
    except BaseException as exc:
        _report("on_log trampoline", exc)


_t_log_c = _lib.LOG_CB(_t_log)


def _t_ssl_client_authentication(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("ssl_client_authentication") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = SSLClientAuthenticationEvent(
            int(raw.connection_id),
            _bytes_at(raw.cert_encoded, raw.cert_encoded_len),
            _text(raw.cert_subject),
            _text(raw.cert_issuer),
            _text(raw.status),
            bool(raw.accept),
        )
        if server._invoke("ssl_client_authentication", handler, event, None):
            raw.accept = 1 if event.accept else 0
        else:
            raw.accept = 0  # fail closed: a handler that raised did not accept
    except BaseException as exc:
        _report("on_ssl_client_authentication trampoline", exc)


_t_ssl_client_authentication_c = _lib.SSL_CLIENT_AUTH_CB(_t_ssl_client_authentication)


def _t_ssl_connection_request(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("ssl_connection_request") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = SSLConnectionRequestEvent(
            int(raw.connection_id),
            _text(raw.supported_cipher_suites),
            _text(raw.supported_signature_algs),
        )
        if not server._invoke("ssl_connection_request", handler, event, None):
            return  # the server's SSLCert is presented
        cert = event.certificate
        if cert is None:
            return
        if not isinstance(cert, Certificate):
            raise TypeError(
                f"SSLConnectionRequestEvent.certificate must be an mllp.Certificate, not "
                f"{type(cert).__name__}"
            )
        # The library takes its own reference only after this trampoline has returned (and its
        # locals are gone): keep the certificate alive until the connection closes.
        server._presented[int(raw.connection_id)] = cert
        raw.certificate = cert._h()
    except BaseException as exc:
        _report("on_ssl_connection_request trampoline", exc, _lookup(user))


_t_ssl_connection_request_c = _lib.SSL_CONNECTION_REQUEST_CB(_t_ssl_connection_request)


def _t_ssl_status(user: Optional[int], p: Any) -> None:
    try:
        server = _lookup(user)
        handler = server._handlers.get("ssl_status") if server is not None else None
        if server is None or handler is None:
            return
        raw = p.contents
        event = SSLStatusEvent(int(raw.connection_id), _text(raw.message))
        server._invoke("ssl_status", handler, event, None)
    except BaseException as exc:
        _report("on_ssl_status trampoline", exc)


_t_ssl_status_c = _lib.SSL_STATUS_CB(_t_ssl_status)
# The reactor thread's Python thread state. ctypes runs every callback inside
# PyGILState_Ensure/Release; on a thread Python did not create, with no thread state of its own,
# that creates and destroys a thread state on every single callback (several microseconds, the
# largest part of an event's cost). The thread-start hook takes one extra PyGILState_Ensure
# that is kept until the thread-stop hook, so the state lives as long as the thread: each
# callback then only takes and drops the GIL. (Both hooks run on the reactor thread, once.)
_pyapi = getattr(ctypes, "pythonapi", None)
if _pyapi is not None and hasattr(_pyapi, "PyGILState_Ensure"):
    _gil_ensure = _pyapi.PyGILState_Ensure
    _gil_ensure.restype = c_int
    _gil_ensure.argtypes = []
    _gil_release = _pyapi.PyGILState_Release
    _gil_release.restype = None
    _gil_release.argtypes = [c_int]
else:  # not CPython: nothing to keep
    _gil_ensure = _gil_release = None
_held = threading.local()


def _thread_start(user: Optional[int]) -> None:
    try:
        if _gil_ensure is not None and not getattr(_held, "state", None):
            _held.state = (_gil_ensure(),)  # PyGILState_LOCKED: we are inside a callback
        server = _lookup(user)
        if server is not None:
            server._reactor_thread = threading.get_ident()  # see Server.close
    except BaseException as exc:
        _report("thread-start hook", exc)


def _thread_stop(user: Optional[int]) -> None:
    try:
        state = getattr(_held, "state", None)
        if state:
            _held.state = None
            _gil_release(state[0])  # the thread state goes when this callback returns
    except BaseException as exc:
        _report("thread-stop hook", exc)


_thread_start_c = _lib.THREAD_CB(_thread_start)
_thread_stop_c = _lib.THREAD_CB(_thread_stop)

#: (event name, registration function, trampoline)
_TRAMPOLINES: Tuple[Tuple[str, str, Any], ...] = (
    ("connection_request", "mllp_server_on_connection_request", _t_connection_request_c),
    ("connected", "mllp_server_on_connected", _t_connected),
    ("disconnected", "mllp_server_on_disconnected", _t_disconnected),
    ("start_transfer", "mllp_server_on_start_transfer", _t_start_transfer),
    ("transfer", "mllp_server_on_transfer", _t_transfer_c),
    ("end_transfer", "mllp_server_on_end_transfer", _t_end_transfer),
    ("message", "mllp_server_on_message", _t_message_c),
    ("ack_out", "mllp_server_on_ack_out", _t_ack_out_c),
    ("ack_in", "mllp_server_on_ack_in", _t_ack_in_c),
    ("duplicate", "mllp_server_on_duplicate", _t_duplicate_c),
    ("error", "mllp_server_on_error", _t_error_c),
    ("log", "mllp_server_on_log", _t_log_c),
    (
        "ssl_client_authentication",
        "mllp_server_on_ssl_client_authentication",
        _t_ssl_client_authentication_c,
    ),
    ("ssl_connection_request", "mllp_server_on_ssl_connection_request", _t_ssl_connection_request_c),
    ("ssl_status", "mllp_server_on_ssl_status", _t_ssl_status_c),
)
EVENT_NAMES: Tuple[str, ...] = tuple(t[0] for t in _TRAMPOLINES)
#: Events whose trampoline is registered with the library only while a handler is set: they
#: fire for every message (Transfer for every piece), and a ctypes callback costs several
#: microseconds even when it finds no handler. The others stay registered (Disconnected and
#: AckOut also do bookkeeping; the rest are rare).
_LAZY_EVENTS = frozenset(("start_transfer", "transfer", "end_transfer", "message"))
_REGISTER = {t[0]: (t[1], t[2]) for t in _TRAMPOLINES}

# ---------------------------------------------------------------------------------------------
# Streams (InputStream / OutputStream)
# ---------------------------------------------------------------------------------------------


class _StreamEntry:
    __slots__ = ("obj", "close_on_release", "pending", "server")

    def __init__(self, obj: Any, close_on_release: bool, server: "Server") -> None:
        self.obj = obj
        self.close_on_release = close_on_release
        self.pending = b""
        self.server: "weakref.ReferenceType[Server]" = weakref.ref(server)


def _stream_server(user: Optional[int]) -> Optional["Server"]:
    entry = _STREAMS.get(user or 0)
    return entry.server() if entry is not None else None


_stream_ids = itertools.count(1)
#: stream id -> entry, for every stream the library holds; left in the close callback.
_STREAMS: Dict[int, _StreamEntry] = {}


def _stream_read(user: Optional[int], buf: Optional[int], cap: int) -> int:
    try:
        entry = _STREAMS.get(user or 0)
        if entry is None or not buf:
            return -1
        if cap == 0:
            return 0
        if entry.pending:
            data, entry.pending = entry.pending[:cap], entry.pending[cap:]
        else:
            readinto = getattr(entry.obj, "readinto", None)
            if readinto is not None:
                view = memoryview((ctypes.c_char * cap).from_address(buf)).cast("B")
                n = readinto(view)
                return -1 if n is None else min(int(n), cap)
            chunk = entry.obj.read(cap)
            if chunk is None:  # a non-blocking stream with nothing to read: not an end
                return -1
            data = _to_bytes(chunk)
            if len(data) > cap:
                data, entry.pending = data[:cap], data[cap:]
        ctypes.memmove(buf, data, len(data))
        return len(data)
    except BaseException as exc:
        _report("input stream read", exc, _stream_server(user))
        return -1


_stream_read_c = _lib.READ_CB(_stream_read)


def _stream_write(user: Optional[int], data: Optional[int], n: int) -> int:
    try:
        entry = _STREAMS.get(user or 0)
        if entry is None:
            return -1
        chunk = _bytes_at(data, n)
        view = memoryview(chunk)
        while view:  # raw streams may write partially
            written = entry.obj.write(view)
            if written is None:  # some file-likes return None after writing everything
                break
            view = view[int(written) :]
        flush = getattr(entry.obj, "flush", None)
        if flush is not None:
            flush()
        return 0
    except BaseException as exc:
        _report("output stream write", exc, _stream_server(user))
        return -1


_stream_write_c = _lib.WRITE_CB(_stream_write)


def _stream_close(user: Optional[int]) -> None:
    entry: Optional[_StreamEntry] = None
    try:
        entry = _STREAMS.pop(user or 0, None)
        if entry is not None and entry.close_on_release:
            close = getattr(entry.obj, "close", None)
            if close is not None:
                close()
    except BaseException as exc:
        _report("stream close", exc, entry.server() if entry is not None else None)


_stream_close_c = _lib.RELEASE_CB(_stream_close)
_NULL_READ = _lib.READ_CB()
_NULL_WRITE = _lib.WRITE_CB()
_NULL_RELEASE = _lib.RELEASE_CB()

# ---------------------------------------------------------------------------------------------
# Handler slots: `server.on_x = fn`, `@server.on_x`, `server.on_x.handler`, `del server.on_x`
# ---------------------------------------------------------------------------------------------


class _HandlerOwner(Protocol):
    """What has ``on_<event>`` slots: a :class:`Server` or an :class:`mllp.Client`."""

    _handlers: Dict[str, Optional[Callable[[Any], Any]]]

    def _set_handler(self, name: str, fn: Optional[Callable[[Any], Any]]) -> None: ...


class HandlerSlot(Generic[E]):
    """What ``server.on_<event>`` (and ``client.on_<event>``) returns: call it with a function
    to register it (usable as a decorator); ``.handler`` is the current handler (or None);
    ``.clear()`` removes it."""

    __slots__ = ("_server", "_name")

    def __init__(self, server: _HandlerOwner, name: str) -> None:
        self._server = server
        self._name = name

    def __call__(self, fn: F) -> F:
        self._server._set_handler(self._name, fn)
        return fn

    @property
    def handler(self) -> Optional[Callable[[E], Any]]:
        return self._server._handlers.get(self._name)

    def clear(self) -> None:
        self._server._set_handler(self._name, None)

    def __repr__(self) -> str:
        return f"<mllp handler slot on_{self._name}: {self.handler!r}>"


class _Slot(Generic[E]):
    """Descriptor behind ``Server.on_<event>`` and ``Client.on_<event>``."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> "_Slot[E]": ...

    @overload
    def __get__(self, obj: _HandlerOwner, owner: type) -> HandlerSlot[E]: ...

    def __get__(self, obj: Optional[_HandlerOwner], owner: type) -> Any:
        if obj is None:
            return self
        return HandlerSlot(obj, self.name)

    def __set__(self, obj: _HandlerOwner, fn: Optional[Callable[[E], Any]]) -> None:
        obj._set_handler(self.name, fn)

    def __delete__(self, obj: _HandlerOwner) -> None:
        obj._set_handler(self.name, None)


# ---------------------------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------------------------


class Connection:
    """One client connection (the reference's MLLPConnection), addressed by its id.

    Every attribute reads or writes the library's current state; after the connection has
    closed, access raises :class:`MLLPError` 2002 (except :attr:`connected`, which is False).
    """

    __slots__ = ("_server", "connection_id")

    def __init__(self, server: "Server", connection_id: ConnectionId) -> None:
        self._server = server
        self.connection_id: int = _conn_id(connection_id)

    def __repr__(self) -> str:
        return f"<mllp.Connection {self.connection_id}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Connection)
            and other._server is self._server
            and other.connection_id == self.connection_id
        )

    def __hash__(self) -> int:
        return hash((id(self._server), self.connection_id))

    # -- read-only -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        out = c_uint8(0)
        rc = lib.mllp_connection_get_connected(self._server._h(), self.connection_id, byref(out))
        if rc == ERR_NO_SUCH_CONNECTION:
            return False
        check(rc)
        return bool(out.value)

    @property
    def receiving(self) -> bool:
        """True while a message is partly received (a start block came, its end block not yet)."""
        out = c_uint8(0)
        rc = lib.mllp_connection_get_receiving(self._server._h(), self.connection_id, byref(out))
        if rc == ERR_NO_SUCH_CONNECTION:
            return False
        check(rc)
        return bool(out.value)

    @property
    def remote_host(self) -> str:
        """The client's IP address."""
        h = self._server._h()
        return _text(
            _read_buffer(lib.mllp_connection_get_remote_host, h, self.connection_id, text=True)
        )

    @property
    def remote_port(self) -> int:
        """The client's port."""
        out = c_uint16(0)
        check(
            lib.mllp_connection_get_remote_port(self._server._h(), self.connection_id, byref(out))
        )
        return int(out.value)

    @property
    def local_address(self) -> str:
        """The local interface the connection arrived on."""
        h = self._server._h()
        return _text(
            _read_buffer(lib.mllp_connection_get_local_address, h, self.connection_id, text=True)
        )

    @property
    def output_data(self) -> bytes:
        """The last message received when no output stream or file took it."""
        h = self._server._h()
        return _read_buffer(lib.mllp_connection_get_output_data, h, self.connection_id, text=False)

    # -- read-write ----------------------------------------------------------------------

    @property
    def timeout(self) -> int:
        """Seconds a Send waits for the acknowledgement (0 = asynchronous)."""
        out = c_uint32(0)
        check(lib.mllp_connection_get_timeout(self._server._h(), self.connection_id, byref(out)))
        return int(out.value)

    @timeout.setter
    def timeout(self, seconds: int) -> None:
        if not 0 <= int(seconds) <= 0xFFFFFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"timeout out of range: {seconds}")
        check(lib.mllp_connection_set_timeout(self._server._h(), self.connection_id, int(seconds)))

    @property
    def input_data(self) -> bytes:
        """The bytes Send sends when no input stream or file is set (str is UTF-8 encoded)."""
        h = self._server._h()
        return _read_buffer(lib.mllp_connection_get_input_data, h, self.connection_id, text=False)

    @input_data.setter
    def input_data(self, data: BytesLike) -> None:
        b = _to_bytes(data)
        check(lib.mllp_connection_set_input_data(self._server._h(), self.connection_id, b, len(b)))

    @property
    def input_file_name(self) -> str:
        """A file Send reads ("" for none)."""
        h = self._server._h()
        return _text(
            _read_buffer(lib.mllp_connection_get_input_file_name, h, self.connection_id, text=True)
        )

    @input_file_name.setter
    def input_file_name(self, path: Union[str, "os.PathLike[str]"]) -> None:
        p = _fspath(path)
        check(lib.mllp_connection_set_input_file_name(self._server._h(), self.connection_id, p))

    @property
    def output_file_name(self) -> str:
        """A file each received message is written to (and fsynced) before its ACK."""
        h = self._server._h()
        return _text(
            _read_buffer(lib.mllp_connection_get_output_file_name, h, self.connection_id, text=True)
        )

    @output_file_name.setter
    def output_file_name(self, path: Union[str, "os.PathLike[str]"]) -> None:
        p = _fspath(path)
        check(lib.mllp_connection_set_output_file_name(self._server._h(), self.connection_id, p))

    @property
    def input_stream(self) -> Any:
        """A binary file-like object with read() (or readinto()) that Send reads until EOF.

        Setting it is :meth:`set_input_stream` with ``close=True``; None clears it. Reads
        the stream the library still holds (None once it has let go of it)."""
        return self._server._current_stream(self.connection_id, "in")

    @input_stream.setter
    def input_stream(self, stream: Any) -> None:
        self.set_input_stream(stream)

    @property
    def output_stream(self) -> Any:
        """A binary file-like object with write(): each received message is written to it
        instead of OutputData / OutputFileName. Setting it is :meth:`set_output_stream`."""
        return self._server._current_stream(self.connection_id, "out")

    @output_stream.setter
    def output_stream(self, stream: Any) -> None:
        self.set_output_stream(stream)

    def set_input_stream(self, stream: Any, close: bool = True) -> None:
        """Sets the InputStream. The object is kept alive until the library lets go of it
        (after a Send when CloseStreamAfterTransfer is True, when replaced, or when the
        connection closes); ``stream.close()`` is then called if ``close`` is True."""
        self._server._set_stream(self.connection_id, "in", stream, close)

    def set_output_stream(self, stream: Any, close: bool = True) -> None:
        """Sets the OutputStream; same lifetime rules as :meth:`set_input_stream`. Pass
        ``close=False`` to read e.g. an ``io.BytesIO`` after the library is done with it."""
        self._server._set_stream(self.connection_id, "out", stream, close)

    # -- TLS -----------------------------------------------------------------------------

    def ssl_negotiated(self, name: str) -> str:
        """A negotiated TLS value: ``name`` is SSLNegotiatedCipher, SSLNegotiatedCipherStrength,
        SSLNegotiatedCipherSuite, SSLNegotiatedKeyExchange, SSLNegotiatedKeyExchangeStrength or
        SSLNegotiatedVersion (e.g. "TLS1.3"); "" before the handshake completes or on a plain
        connection."""
        h = self._server._h()
        raw = name.encode("utf-8")
        return _text(
            _read_buffer(lib.mllp_connection_get_ssl_negotiated, h, self.connection_id, raw, text=True)
        )

    @property
    def ssl_negotiated_version(self) -> str:
        """SSLNegotiatedVersion, e.g. "TLS1.3" ("" on a plain connection)."""
        return self.ssl_negotiated("SSLNegotiatedVersion")

    @property
    def ssl_negotiated_cipher(self) -> str:
        """SSLNegotiatedCipher."""
        return self.ssl_negotiated("SSLNegotiatedCipher")

    @property
    def ssl_negotiated_cipher_strength(self) -> str:
        """SSLNegotiatedCipherStrength."""
        return self.ssl_negotiated("SSLNegotiatedCipherStrength")

    @property
    def ssl_negotiated_cipher_suite(self) -> str:
        """SSLNegotiatedCipherSuite."""
        return self.ssl_negotiated("SSLNegotiatedCipherSuite")

    @property
    def ssl_negotiated_key_exchange(self) -> str:
        """SSLNegotiatedKeyExchange."""
        return self.ssl_negotiated("SSLNegotiatedKeyExchange")

    @property
    def ssl_negotiated_key_exchange_strength(self) -> str:
        """SSLNegotiatedKeyExchangeStrength."""
        return self.ssl_negotiated("SSLNegotiatedKeyExchangeStrength")

    # -- methods -------------------------------------------------------------------------

    def acknowledge(self, message_seq: int, accept: bool = True, reject_code: int = REJECT_AE) -> None:
        """Server.acknowledge(connection_id, message_seq, accept, reject_code)."""
        self._server.acknowledge(self.connection_id, message_seq, accept, reject_code)

    def acknowledge_with(self, message_seq: int, reply: BytesLike) -> None:
        """Server.acknowledge_with(connection_id, message_seq, reply)."""
        self._server.acknowledge_with(self.connection_id, message_seq, reply)

    def send_app_ack(self, message: BytesLike, code: int, text: Optional[str] = None) -> bool:
        """Server.send_app_ack(connection_id, message, code, text)."""
        return self._server.send_app_ack(self.connection_id, message, code, text)

    def send(self) -> None:
        """Server.send(connection_id)."""
        self._server.send(self.connection_id)

    def send_bytes(self, data: BytesLike) -> None:
        """Server.send_bytes(connection_id, data)."""
        self._server.send_bytes(self.connection_id, data)

    def disconnect(self) -> None:
        """Server.disconnect(connection_id)."""
        self._server.disconnect(self.connection_id)

    def interrupt(self) -> None:
        """Server.interrupt(connection_id)."""
        self._server.interrupt(self.connection_id)


def _fspath(path: Any) -> bytes:
    p = os.fspath(path)
    return p if isinstance(p, bytes) else p.encode("utf-8")


class Connections(Mapping[int, Connection]):
    """A live view of the open connections, id -> :class:`Connection` (the reference's
    Connections map). Each access asks the library."""

    __slots__ = ("_server",)

    def __init__(self, server: "Server") -> None:
        self._server = server

    def ids(self) -> List[int]:
        h = self._server._h()
        for _ in range(16):
            n = c_size_t(0)
            rc = lib.mllp_server_get_connections(h, None, byref(n))
            if rc == OK:
                return []
            if rc != ERR_BUFFER_TOO_SMALL:
                check(rc)
            if n.value == 0:
                return []
            cap = n.value + 8  # headroom for clients arriving meanwhile
            arr = (c_uint64 * cap)()
            n = c_size_t(cap)
            rc = lib.mllp_server_get_connections(h, arr, byref(n))
            if rc == OK:
                return [int(arr[i]) for i in range(n.value)]
            if rc != ERR_BUFFER_TOO_SMALL:
                check(rc)
        raise MLLPError(ERR_BUFFER_TOO_SMALL, "the connection list kept growing")

    def __getitem__(self, connection_id: ConnectionId) -> Connection:
        """``connections[4294967296]`` or ``connections["4294967296"]`` (the reference's
        string id); KeyError when no open connection has that id or it is malformed."""
        cid = _parse_id(connection_id)
        if cid is None or cid not in self.ids():
            raise KeyError(connection_id)
        return Connection(self._server, cid)

    def __contains__(self, connection_id: object) -> bool:
        cid = _parse_id(connection_id)
        return cid is not None and cid in self.ids()

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids())

    def __len__(self) -> int:
        return self._server.connection_count

    def __repr__(self) -> str:
        return f"<mllp.Connections {self.ids()!r}>"


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------


class Server:
    """An MLLP server (the reference's MLLPServer).

    Events arrive on the library's reactor thread (or, with ``config("EventMode=DoEvents")``,
    on the thread calling :meth:`do_events`). Handlers take one event object::

        server = mllp.Server(local_host="127.0.0.1", local_port=2575)

        @server.on_transfer
        def got(e: mllp.TransferEvent) -> None:
            print(e.connection_id, e.data)

        server.on_ack_out = lambda e: setattr(e, "accept", b"MSH" in e.message)

    An exception raised by a handler never reaches the library: it goes to
    :attr:`handler_error_hook` (``hook(event_name, exception)``) or, when that is None, to
    ``sys.unraisablehook``. A handler that raises in ConnectionRequest refuses the connection;
    one that raises in StartTransfer / Transfer / EndTransfer / Message / AckOut makes the
    message's acknowledgement negative (unless :attr:`nak_on_handler_error` is False).

    ``close()`` (or leaving a ``with`` block) frees the server; it is idempotent. A server
    that is never closed is freed when collected or at interpreter exit.
    """

    on_connection_request: _Slot[ConnectionRequestEvent] = _Slot("connection_request")
    on_connected: _Slot[ConnectedEvent] = _Slot("connected")
    on_disconnected: _Slot[DisconnectedEvent] = _Slot("disconnected")
    on_start_transfer: _Slot[StartTransferEvent] = _Slot("start_transfer")
    on_transfer: _Slot[TransferEvent] = _Slot("transfer")
    on_end_transfer: _Slot[EndTransferEvent] = _Slot("end_transfer")
    on_message: _Slot[MessageEvent] = _Slot("message")
    on_ack_out: _Slot[AckOutEvent] = _Slot("ack_out")
    on_ack_in: _Slot[AckInEvent] = _Slot("ack_in")
    on_duplicate: _Slot[DuplicateEvent] = _Slot("duplicate")
    on_error: _Slot[ErrorEvent] = _Slot("error")
    on_log: _Slot[LogEvent] = _Slot("log")
    on_ssl_client_authentication: _Slot[SSLClientAuthenticationEvent] = _Slot(
        "ssl_client_authentication"
    )
    on_ssl_connection_request: _Slot[SSLConnectionRequestEvent] = _Slot("ssl_connection_request")
    on_ssl_status: _Slot[SSLStatusEvent] = _Slot("ssl_status")

    #: Called as ``hook(event_name, exception)`` when a handler raises; None uses
    #: ``sys.unraisablehook``.
    handler_error_hook: Optional[Callable[[str, BaseException], Any]]
    #: When True (the default) a message whose handler raised gets a negative acknowledgement.
    nak_on_handler_error: bool

    def __init__(
        self,
        *,
        local_host: Optional[str] = None,
        local_port: Optional[int] = None,
        version: Optional[int] = None,
        default_timeout: Optional[int] = None,
        keep_alive: Optional[bool] = None,
        ssl_enabled: Optional[bool] = None,
        ssl_cert: Optional[Certificate] = None,
        ssl_authenticate_clients: Optional[bool] = None,
        config: Iterable[str] = (),
    ) -> None:
        self._handle: Optional[int] = None
        self._handlers: Dict[str, Optional[Callable[[Any], Any]]] = {}
        self._failed: Set[int] = set()
        #: connection id -> the Certificate an SSLConnectionRequest handler chose (kept alive).
        self._presented: Dict[int, Certificate] = {}
        self._streams: Dict[Tuple[int, str], int] = {}
        self._lock = threading.Lock()
        #: While close() runs: the thread running it. The reactor thread's id once it started.
        #: A close() from either of them meanwhile comes from a handler fired by that close.
        self._closing_thread: Optional[int] = None
        self._reactor_thread: Optional[int] = None
        self._handler_lock = threading.Lock()  # registration of the _LAZY_EVENTS trampolines
        self.handler_error_hook = None
        self.nak_on_handler_error = True
        # The C callbacks this server registers (module-level objects, referenced here too).
        self._cfuncs: Tuple[Any, ...] = tuple(t[2] for t in _TRAMPOLINES) + (
            _thread_start_c,
            _thread_stop_c,
            _release_c,
            _stream_read_c,
            _stream_write_c,
            _stream_close_c,
        )

        handle = lib.mllp_server_new()
        if not handle:
            raise MemoryError("mllp_server_new returned NULL")
        self._sid = next(_ids)
        _SERVERS[self._sid] = weakref.ref(self)
        rc = lib.mllp_server_set_user_data(handle, self._sid, _release_c)
        if rc != OK:  # cannot happen for a non-NULL handle; release was not called
            _SERVERS.pop(self._sid, None)
            lib.mllp_server_free(handle)
            check(rc)
        check(lib.mllp_server_on_thread_start(handle, _thread_start_c))
        check(lib.mllp_server_on_thread_stop(handle, _thread_stop_c))
        for _name, register, tramp in _TRAMPOLINES:
            if _name not in _LAZY_EVENTS:  # those are registered when a handler is set
                check(getattr(lib, register)(handle, tramp))
        self._handle = handle
        self._finalizer = weakref.finalize(self, _free_handle, handle, self._sid)

        if local_host is not None:
            self.local_host = local_host
        if local_port is not None:
            self.local_port = local_port
        if version is not None:
            self.version = version
        if default_timeout is not None:
            self.default_timeout = default_timeout
        if keep_alive is not None:
            self.keep_alive = keep_alive
        if ssl_cert is not None:
            self.ssl_cert = ssl_cert
        if ssl_enabled is not None:
            self.ssl_enabled = ssl_enabled
        if ssl_authenticate_clients is not None:
            self.ssl_authenticate_clients = ssl_authenticate_clients
        for setting in config:
            self.config(setting)

    # -- lifetime ------------------------------------------------------------------------

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise MLLPError(ERR_BAD_STATE, "the server is closed")
        return h

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has freed the server."""
        return self._handle is None

    def close(self) -> None:
        """Shuts the server down (Disconnected fires for each client), stops its thread and
        frees it. Idempotent. Raises MLLPError 2006 when called from one of this server's
        handlers. No other call on this server may run concurrently on another thread.

        The handlers stay installed and the server usable until the library is done: the
        Disconnected events it fires for the open connections reach ``on_disconnected`` (in
        DoEvents mode on this thread, before close() returns)."""
        me = threading.get_ident()
        # Not a plain `with self._lock`: a handler fired by a running close() (on the reactor
        # thread, or in DoEvents mode on the closing thread itself) that calls close() must
        # fail with 2006 like any close() from a handler, not wait for the close that is
        # delivering it: that would never return.
        while not self._lock.acquire(timeout=0.05):
            closer = self._closing_thread
            if closer is not None and me in (closer, self._reactor_thread):
                raise MLLPError(
                    ERR_REENTRANT, "the server cannot be closed from inside its own callback"
                )
        try:
            h = self._handle
            if h is None:
                return
            self._closing_thread = me
            try:
                check(lib.mllp_server_free(h))
            finally:
                self._closing_thread = None
            self._handle = None
            self._finalizer.detach()
            self._root(False)
        finally:
            self._lock.release()

    free = close

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._handle is None:
            return "<mllp.Server (closed)>"
        try:
            return f"<mllp.Server {self.local_host or '*'}:{self.local_port} listening={self.listening}>"
        except MLLPError:
            return "<mllp.Server>"

    # -- handlers ------------------------------------------------------------------------

    def _set_handler(self, name: str, fn: Optional[Callable[[Any], Any]]) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(f"on_{name} handler must be callable or None, not {type(fn).__name__}")
        if name in _LAZY_EVENTS:
            with self._handler_lock:
                had = self._handlers.get(name) is not None
                self._handlers[name] = fn
                h = self._handle
                if h is not None and had != (fn is not None):
                    register, tramp = _REGISTER[name]
                    # Takes effect for the next event; a trampoline that still runs finds the
                    # handler (or None) in _handlers.
                    check(getattr(lib, register)(h, tramp if fn is not None else type(tramp)()))
            return
        self._handlers[name] = fn

    def _invoke(
        self, name: str, handler: Callable[[Any], Any], event: Any, cid: Optional[int]
    ) -> bool:
        try:
            handler(event)
            return True
        except BaseException as exc:
            if cid is not None and name in _MESSAGE_EVENTS:
                self._failed.add(cid)
            _report(f"on_{name} handler", exc, self)
            return False

    # -- properties ----------------------------------------------------------------------

    @property
    def local_host(self) -> str:
        """The interface listened on ("" = every interface); while listening, the bound one."""
        return _text(_read_buffer(lib.mllp_server_get_local_host, self._h(), text=True))

    @local_host.setter
    def local_host(self, host: str) -> None:
        check(lib.mllp_server_set_local_host(self._h(), (host or "").encode("utf-8")))

    @property
    def local_port(self) -> int:
        """The port (0 = any free port; while listening, the real one)."""
        out = c_uint16(0)
        check(lib.mllp_server_get_local_port(self._h(), byref(out)))
        return int(out.value)

    @local_port.setter
    def local_port(self, port: int) -> None:
        if not 0 <= int(port) <= 0xFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"port out of range: {port}")
        check(lib.mllp_server_set_local_port(self._h(), int(port)))

    @property
    def listening(self) -> bool:
        """True while accepting connections (read-only: use start/stop_listening)."""
        out = c_uint8(0)
        check(lib.mllp_server_get_listening(self._h(), byref(out)))
        return bool(out.value)

    @property
    def default_timeout(self) -> int:
        """Timeout (seconds) given to new connections; 0 = asynchronous sends."""
        out = c_uint32(0)
        check(lib.mllp_server_get_default_timeout(self._h(), byref(out)))
        return int(out.value)

    @default_timeout.setter
    def default_timeout(self, seconds: int) -> None:
        if not 0 <= int(seconds) <= 0xFFFFFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"timeout out of range: {seconds}")
        check(lib.mllp_server_set_default_timeout(self._h(), int(seconds)))

    @property
    def keep_alive(self) -> bool:
        """SO_KEEPALIVE on connections accepted from now on."""
        out = c_uint8(0)
        check(lib.mllp_server_get_keep_alive(self._h(), byref(out)))
        return bool(out.value)

    @keep_alive.setter
    def keep_alive(self, on: bool) -> None:
        check(lib.mllp_server_set_keep_alive(self._h(), 1 if on else 0))

    @property
    def version(self) -> int:
        """MLLP version, 1 or 2 (default 2)."""
        out = c_int(0)
        check(lib.mllp_server_get_version(self._h(), byref(out)))
        return int(out.value)

    @version.setter
    def version(self, version: int) -> None:
        v = int(version)
        if not -(2**31) <= v < 2**31:
            raise MLLPError(2005, f"invalid version: {version}")
        check(lib.mllp_server_set_version(self._h(), v))

    @property
    def ssl_enabled(self) -> bool:
        """SSLEnabled: accept TLS connections (takes effect at the next start_listening)."""
        out = c_uint8(0)
        check(lib.mllp_server_get_ssl_enabled(self._h(), byref(out)))
        return bool(out.value)

    @ssl_enabled.setter
    def ssl_enabled(self, on: bool) -> None:
        check(lib.mllp_server_set_ssl_enabled(self._h(), 1 if on else 0))

    @property
    def ssl_authenticate_clients(self) -> bool:
        """SSLAuthenticateClients: ask clients for a certificate (see the
        SSLClientAuthentication event and the SSLClientCACerts setting)."""
        out = c_uint8(0)
        check(lib.mllp_server_get_ssl_authenticate_clients(self._h(), byref(out)))
        return bool(out.value)

    @ssl_authenticate_clients.setter
    def ssl_authenticate_clients(self, on: bool) -> None:
        check(lib.mllp_server_set_ssl_authenticate_clients(self._h(), 1 if on else 0))

    @property
    def ssl_cert(self) -> Optional[Certificate]:
        """SSLCert: the server's certificate (with its private key), or None. Reading returns
        a new :class:`Certificate` each time. The server keeps its own reference to a
        certificate it is given, so the caller may close its object afterwards. Checked at
        the next start_listening (no key, key mismatch, expired: MLLPError 2020 there)."""
        out = ctypes.c_void_p(None)
        check(lib.mllp_server_get_ssl_cert(self._h(), byref(out)))
        return Certificate._from_handle(int(out.value)) if out.value else None

    @ssl_cert.setter
    def ssl_cert(self, cert: Optional[Certificate]) -> None:
        if cert is None:
            check(lib.mllp_server_set_ssl_cert(self._h(), None))
            return
        if not isinstance(cert, Certificate):
            raise TypeError(f"ssl_cert must be an mllp.Certificate or None, not {type(cert).__name__}")
        with cert._lock:  # not freed by a concurrent close() while the library copies it
            check(lib.mllp_server_set_ssl_cert(self._h(), cert._h()))

    @property
    def connection_count(self) -> int:
        """Number of open connections."""
        out = c_size_t(0)
        check(lib.mllp_server_get_connection_count(self._h(), byref(out)))
        return int(out.value)

    @property
    def metrics(self) -> Metrics:
        """The server's counters now (always on; reading takes no lock): connections,
        messages, bytes, acknowledgements, errors, TLS handshakes, latency count and sum."""
        out = _lib.MetricsStruct()
        check(lib.mllp_server_get_metrics(self._h(), byref(out)))
        return Metrics._from_struct(out)

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text exposition format 0.0.4 (for a ``/metrics``
        endpoint), with errors per code, TLS failures per reason and the latency histogram."""
        return _text(_read_buffer(lib.mllp_server_get_metrics_text, self._h(), text=True))

    @property
    def duplicate_count(self) -> int:
        """DuplicateCount: the number of resent messages answered from the DuplicateWindow so
        far (each fired :attr:`on_duplicate` and was not delivered)."""
        out = c_uint64(0)
        check(lib.mllp_server_get_duplicate_count(self._h(), byref(out)))
        return int(out.value)

    @property
    def connections(self) -> Connections:
        """The open connections: a live mapping id -> Connection."""
        self._h()
        return Connections(self)

    def connection(self, connection_id: ConnectionId) -> Connection:
        """A Connection for an id, without checking that it is open."""
        self._h()
        return Connection(self, connection_id)

    # -- methods -------------------------------------------------------------------------

    def config(self, setting: str) -> str:
        """``config("Name=Value")`` sets a setting (returns ""); ``config("Name")`` reads one."""
        raw = setting.encode("utf-8")
        h = self._h()
        if "=" in setting:
            check(lib.mllp_server_config(h, raw, None, None))
            return ""
        return _text(_read_buffer(lib.mllp_server_config, h, raw, text=True))

    def _root(self, on: bool) -> None:
        """Keeps this server referenced while it listens (see ``_LISTENING``)."""
        with _listening_lock:
            if on and self._handle is not None:
                _LISTENING[self._sid] = self
            else:
                _LISTENING.pop(self._sid, None)

    def start_listening(self) -> None:
        """Binds LocalHost:LocalPort and starts accepting connections. While it listens the
        server is kept alive even with no reference left (until :meth:`stop_listening`,
        :meth:`shutdown`, :meth:`reset` or :meth:`close`)."""
        check(lib.mllp_server_start_listening(self._h()))
        self._root(True)

    def stop_listening(self) -> None:
        """Stops accepting new connections; existing ones stay open. From here on the server
        lives only as long as something references it."""
        check(lib.mllp_server_stop_listening(self._h()))
        self._root(False)

    def shutdown(self) -> None:
        """Stops listening and disconnects every client (queued; returns at once)."""
        check(lib.mllp_server_shutdown(self._h()))
        self._root(False)

    def reset(self) -> None:
        """Shutdown, then every property and setting back to its default (handlers stay)."""
        check(lib.mllp_server_reset(self._h()))
        self._root(False)

    def disconnect(self, connection_id: ConnectionId) -> None:
        """Closes a connection (2002 if it is not open)."""
        check(lib.mllp_server_disconnect(self._h(), _conn_id(connection_id)))

    def interrupt(self, connection_id: ConnectionId) -> None:
        """Makes a synchronous send waiting on this connection fail with 2011."""
        check(lib.mllp_server_interrupt(self._h(), _conn_id(connection_id)))

    def send(self, connection_id: ConnectionId) -> None:
        """Sends the connection's input stream, InputFileName or InputData. With the
        connection's timeout > 0 waits for the acknowledgement (releases the GIL)."""
        check(lib.mllp_server_send(self._h(), _conn_id(connection_id)))

    def send_bytes(self, connection_id: ConnectionId, data: BytesLike) -> None:
        """Sends ``data`` (str is UTF-8 encoded) without touching InputData."""
        b = _to_bytes(data)
        check(lib.mllp_server_send_bytes(self._h(), _conn_id(connection_id), b, len(b)))

    def acknowledge(
        self,
        connection_id: ConnectionId,
        message_seq: int,
        accept: bool = True,
        reject_code: int = REJECT_AE,
    ) -> None:
        """Decides a message whose AckOut handler set ``defer``: ``accept`` True sends ACK
        (HL7 mode: MSA-1 AA), False a NAK (HL7 mode: ``reject_code``, REJECT_AE or
        REJECT_AR). Any thread, also inside handlers. Replies leave in message order, so an
        earlier undecided message holds this one back; a ``message_seq`` that is not awaiting
        a decision is ignored. MLLPError 2002 when the connection has closed."""
        check(
            lib.mllp_server_acknowledge(
                self._h(),
                _conn_id(connection_id),
                int(message_seq),
                1 if accept else 0,
                int(reject_code),
            )
        )

    def acknowledge_with(
        self, connection_id: ConnectionId, message_seq: int, reply: BytesLike
    ) -> None:
        """Decides a deferred message (see :meth:`acknowledge`) by sending exactly ``reply``
        (str is UTF-8 encoded) as its acknowledgement, framed by the library: in HL7 ack mode an
        unframed HL7 ACK message, in MLLP ack mode the one ACK/NAK byte. Same ordering rules as
        :meth:`acknowledge`. A positive reply (the ACK byte, MSA-1 AA or CA) is remembered by
        the DuplicateWindow."""
        b = _to_bytes(reply)
        check(
            lib.mllp_server_acknowledge_with(
                self._h(), _conn_id(connection_id), int(message_seq), b, len(b)
            )
        )

    def send_app_ack(
        self,
        connection_id: ConnectionId,
        message: BytesLike,
        code: int,
        text: Optional[str] = None,
    ) -> bool:
        """Sends an HL7 application acknowledgement (``code`` :data:`mllp.ACK_AA`, ``ACK_AE`` or
        ``ACK_AR``; ``text`` an optional MSA-3) for ``message``, a message received on that
        connection, as a message of its own built from its MSH, when its MSH-16 asks for one:
        AL always, ER only when ``code`` is not AA, SU only when it is, NE and empty never.
        Returns True when it was sent, False when MSH-16 said no."""
        b = _to_bytes(message)
        sent = c_uint8(0)
        check(
            lib.mllp_server_send_app_ack(
                self._h(),
                _conn_id(connection_id),
                b,
                len(b),
                int(code),
                None if text is None else text.encode("utf-8"),
                byref(sent),
            )
        )
        return bool(sent.value)

    def do_events(self, timeout_ms: int = DEFAULT_DO_EVENTS_WAIT_MS) -> int:
        """With EventMode=DoEvents, delivers queued events on this thread, waiting up to
        ``timeout_ms`` (100 ms by default, as the reference's DoEvents) for the first; returns
        how many were delivered. ``do_events(0)`` only delivers what is already queued."""
        if not 0 <= int(timeout_ms) <= 0xFFFFFFFF:
            raise MLLPError(ERR_INVALID_ARGUMENT, f"timeout out of range: {timeout_ms}")
        n = c_size_t(0)
        check(lib.mllp_server_do_events(self._h(), int(timeout_ms), byref(n)))
        return int(n.value)

    # -- streams -------------------------------------------------------------------------

    def _set_stream(self, cid: int, direction: str, stream: Any, close: bool) -> None:
        h = self._h()
        setter = (
            lib.mllp_connection_set_input_stream
            if direction == "in"
            else lib.mllp_connection_set_output_stream
        )
        if stream is None:
            self._streams.pop((cid, direction), None)
            null = _NULL_READ if direction == "in" else _NULL_WRITE
            check(setter(h, int(cid), null, _NULL_RELEASE, None))
            return
        need = "read" if direction == "in" else "write"
        if not hasattr(stream, need) and not (need == "read" and hasattr(stream, "readinto")):
            raise TypeError(f"the {direction}put stream needs a {need}() method")
        sid = next(_stream_ids)
        _STREAMS[sid] = _StreamEntry(stream, close, self)
        self._streams[(cid, direction)] = sid
        cb = _stream_read_c if direction == "in" else _stream_write_c
        # The library owns `sid` from here on, failures included: _stream_close runs once.
        check(setter(h, int(cid), cb, _stream_close_c, sid))

    def _current_stream(self, cid: int, direction: str) -> Any:
        sid = self._streams.get((cid, direction))
        entry = _STREAMS.get(sid) if sid is not None else None
        return entry.obj if entry is not None else None
