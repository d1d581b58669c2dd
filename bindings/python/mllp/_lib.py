"""Loading libmllp and declaring its C API (include/mllp.h) for ctypes.

Lookup order: the ``MLLP_LIBRARY`` environment variable (a path, authoritative), then the copy
inside this package (``mllp/libmllp.so``, put there by ``pip install`` / the wheel), then
``../../target/release/libmllp.so`` relative to ``bindings/python`` (running from the
repository after ``cargo build --release --lib``), then ``ctypes.util.find_library("mllp")``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_int,
    c_size_t,
    c_ssize_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional

__all__ = ["lib", "library_path"]


# ---------------------------------------------------------------------------------------------
# Event structs (field order and types exactly as in mllp.h)
# ---------------------------------------------------------------------------------------------


class ConnectionRequestStruct(Structure):
    _fields_ = [("address", c_char_p), ("port", c_uint16), ("accept", c_uint8)]


class StatusStruct(Structure):
    _fields_ = [("connection_id", c_uint64), ("status_code", c_int), ("description", c_char_p)]


class TransferBoundaryStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("message_seq", c_uint64),
        ("charset", c_char_p),
        ("encoding", c_char_p),
    ]


class TransferStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("bytes_transferred", c_uint64),
        ("data", c_void_p),
        ("len", c_size_t),
    ]


class AckOutStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("message_seq", c_uint64),
        ("accept", c_uint8),
        ("reject_code", c_int),
        ("message", c_void_p),
        ("message_len", c_size_t),
        ("defer", c_uint8),
        ("charset", c_char_p),
        ("encoding", c_char_p),
        ("reply", c_void_p),  # read-write: NULL = the library builds the reply
        ("reply_len", c_size_t),  # read-write
    ]


class MessageStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("message_seq", c_uint64),
        ("data", c_void_p),
        ("len", c_size_t),
        ("charset", c_char_p),
        ("encoding", c_char_p),
        ("decoded", c_uint8),
    ]


class DuplicateStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("message", c_void_p),
        ("message_len", c_size_t),
        ("control_id", c_char_p),
        ("reply", c_void_p),
        ("reply_len", c_size_t),
    ]


class AckInStruct(Structure):
    _fields_ = [("connection_id", c_uint64), ("accepted", c_uint8)]


class ErrorStruct(Structure):
    _fields_ = [("connection_id", c_uint64), ("error_code", c_int), ("description", c_char_p)]


class LogStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("log_level", c_int),
        ("message", c_char_p),
        ("log_type", c_char_p),
    ]


class SslClientAuthStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("cert_encoded", c_void_p),
        ("cert_encoded_len", c_size_t),
        ("cert_subject", c_char_p),
        ("cert_issuer", c_char_p),
        ("status", c_char_p),
        ("accept", c_uint8),
    ]


class SslConnectionRequestStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("supported_cipher_suites", c_char_p),
        ("supported_signature_algs", c_char_p),
        ("certificate", c_void_p),  # const mllp_certificate *
    ]


class SslStatusStruct(Structure):
    _fields_ = [("connection_id", c_uint64), ("message", c_char_p)]


class MetricsStruct(Structure):
    """mllp_metrics (mllp_server_get_metrics)."""

    _fields_ = [
        ("connections_accepted", c_uint64),
        ("connections_refused", c_uint64),
        ("connections_open", c_uint64),
        ("messages_received", c_uint64),
        ("messages_accepted", c_uint64),
        ("messages_refused", c_uint64),
        ("messages_duplicate", c_uint64),
        ("bytes_in", c_uint64),
        ("bytes_out", c_uint64),
        ("acks_sent", c_uint64),
        ("naks_sent", c_uint64),
        ("errors", c_uint64),
        ("tls_handshakes_completed", c_uint64),
        ("tls_handshakes_failed", c_uint64),
        ("ack_latency_count", c_uint64),
        ("ack_latency_sum_seconds", c_double),
    ]


# The client (sender)


class SendResultStruct(Structure):
    _fields_ = [("message_id", c_uint64), ("ack_kind", c_int), ("attempts", c_uint32)]


class ClientAckInStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("message_id", c_uint64),
        ("kind", c_int),
        ("control_id", c_char_p),
        ("text", c_char_p),
        ("data", c_void_p),
        ("len", c_size_t),
        ("matched", c_uint8),
    ]


class SendDoneStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("message_id", c_uint64),
        ("control_id", c_char_p),
        ("result_code", c_int),
        ("description", c_char_p),
        ("ack_kind", c_int),
        ("attempts", c_uint32),
    ]


class SslServerAuthStruct(Structure):
    _fields_ = [
        ("connection_id", c_uint64),
        ("cert_encoded", c_void_p),
        ("cert_encoded_len", c_size_t),
        ("cert_subject", c_char_p),
        ("cert_issuer", c_char_p),
        ("status", c_char_p),
        ("accept", c_uint8),  # read-write
    ]


# ---------------------------------------------------------------------------------------------
# Callback types
# ---------------------------------------------------------------------------------------------

CONNECTION_REQUEST_CB = CFUNCTYPE(None, c_void_p, POINTER(ConnectionRequestStruct))
STATUS_CB = CFUNCTYPE(None, c_void_p, POINTER(StatusStruct))
TRANSFER_BOUNDARY_CB = CFUNCTYPE(None, c_void_p, POINTER(TransferBoundaryStruct))
TRANSFER_CB = CFUNCTYPE(None, c_void_p, POINTER(TransferStruct))
ACK_OUT_CB = CFUNCTYPE(None, c_void_p, POINTER(AckOutStruct))
MESSAGE_CB = CFUNCTYPE(None, c_void_p, POINTER(MessageStruct))
DUPLICATE_CB = CFUNCTYPE(None, c_void_p, POINTER(DuplicateStruct))
ACK_IN_CB = CFUNCTYPE(None, c_void_p, POINTER(AckInStruct))
ERROR_CB = CFUNCTYPE(None, c_void_p, POINTER(ErrorStruct))
LOG_CB = CFUNCTYPE(None, c_void_p, POINTER(LogStruct))
SSL_CLIENT_AUTH_CB = CFUNCTYPE(None, c_void_p, POINTER(SslClientAuthStruct))
SSL_CONNECTION_REQUEST_CB = CFUNCTYPE(None, c_void_p, POINTER(SslConnectionRequestStruct))
SSL_STATUS_CB = CFUNCTYPE(None, c_void_p, POINTER(SslStatusStruct))
CLIENT_ACK_IN_CB = CFUNCTYPE(None, c_void_p, POINTER(ClientAckInStruct))
SEND_DONE_CB = CFUNCTYPE(None, c_void_p, POINTER(SendDoneStruct))
SSL_SERVER_AUTH_CB = CFUNCTYPE(None, c_void_p, POINTER(SslServerAuthStruct))
RELEASE_CB = CFUNCTYPE(None, c_void_p)
THREAD_CB = CFUNCTYPE(None, c_void_p)
READ_CB = CFUNCTYPE(c_ssize_t, c_void_p, c_void_p, c_size_t)
WRITE_CB = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


# ---------------------------------------------------------------------------------------------
# Locating and loading the library
# ---------------------------------------------------------------------------------------------


def _candidates() -> List[str]:
    out: List[str] = []
    env = os.environ.get("MLLP_LIBRARY")
    if env:
        out.append(env)
        return out  # an explicit path is authoritative: no silent fallback
    package = Path(__file__).resolve().parent
    # The wheel's copy: mllp/libmllp.so (a .dylib on macOS).
    for name in ("libmllp.so", "libmllp.dylib", "mllp.dll"):
        bundled = package / name
        if bundled.is_file():
            out.append(str(bundled))
    # mllp/_lib.py -> bindings/python -> ../../target/release/libmllp.so
    project = package.parent
    repo_lib = (project / ".." / ".." / "target" / "release" / "libmllp.so").resolve()
    if repo_lib.exists():
        out.append(str(repo_lib))
    found = ctypes.util.find_library("mllp")
    if found:
        out.append(found)
    return out


def _load() -> "tuple[ctypes.CDLL, str]":
    errors: List[str] = []
    for cand in _candidates():
        try:
            return ctypes.CDLL(cand), cand
        except OSError as e:  # try the next one
            errors.append(f"{cand}: {e}")
    detail = "; ".join(errors) if errors else "no candidate found"
    raise ImportError(
        "mllp: cannot load libmllp (install the package with `pip install ./bindings/python`, "
        "which builds it into the package, or set MLLP_LIBRARY to the path of libmllp.so, or "
        f"build it with `cargo build --release --lib`): {detail}"
    )


lib, library_path = _load()

_SERVER = c_void_p  # mllp_server *
_CERT = c_void_p  # mllp_certificate *
_P_SIZE = POINTER(c_size_t)


def _decl(name: str, restype: Optional[type], *argtypes: type) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_decl("mllp_version", c_char_p)
_decl("mllp_error_description", c_char_p, c_int)
_decl("mllp_last_error_code", c_int)
_decl("mllp_last_error_message", c_char_p)

_decl("mllp_server_on_connection_request", c_int, _SERVER, CONNECTION_REQUEST_CB)
_decl("mllp_server_on_connected", c_int, _SERVER, STATUS_CB)
_decl("mllp_server_on_disconnected", c_int, _SERVER, STATUS_CB)
_decl("mllp_server_on_start_transfer", c_int, _SERVER, TRANSFER_BOUNDARY_CB)
_decl("mllp_server_on_transfer", c_int, _SERVER, TRANSFER_CB)
_decl("mllp_server_on_end_transfer", c_int, _SERVER, TRANSFER_BOUNDARY_CB)
_decl("mllp_server_on_ack_out", c_int, _SERVER, ACK_OUT_CB)
_decl("mllp_server_on_ack_in", c_int, _SERVER, ACK_IN_CB)
_decl("mllp_server_on_message", c_int, _SERVER, MESSAGE_CB)
_decl("mllp_server_on_duplicate", c_int, _SERVER, DUPLICATE_CB)
_decl("mllp_server_on_error", c_int, _SERVER, ERROR_CB)
_decl("mllp_server_on_log", c_int, _SERVER, LOG_CB)
_decl("mllp_server_on_thread_start", c_int, _SERVER, THREAD_CB)
_decl("mllp_server_on_thread_stop", c_int, _SERVER, THREAD_CB)
_decl("mllp_server_set_user_data", c_int, _SERVER, c_void_p, RELEASE_CB)

_decl("mllp_connection_get_connected", c_int, _SERVER, c_uint64, POINTER(c_uint8))
_decl("mllp_connection_get_receiving", c_int, _SERVER, c_uint64, POINTER(c_uint8))
_decl("mllp_connection_get_remote_host", c_int, _SERVER, c_uint64, c_void_p, _P_SIZE)
_decl("mllp_connection_get_remote_port", c_int, _SERVER, c_uint64, POINTER(c_uint16))
_decl("mllp_connection_get_local_address", c_int, _SERVER, c_uint64, c_void_p, _P_SIZE)
_decl("mllp_connection_get_timeout", c_int, _SERVER, c_uint64, POINTER(c_uint32))
_decl("mllp_connection_set_timeout", c_int, _SERVER, c_uint64, c_uint32)
_decl("mllp_connection_get_input_data", c_int, _SERVER, c_uint64, c_void_p, _P_SIZE)
_decl("mllp_connection_set_input_data", c_int, _SERVER, c_uint64, c_char_p, c_size_t)
_decl("mllp_connection_get_input_file_name", c_int, _SERVER, c_uint64, c_void_p, _P_SIZE)
_decl("mllp_connection_set_input_file_name", c_int, _SERVER, c_uint64, c_char_p)
_decl("mllp_connection_get_output_data", c_int, _SERVER, c_uint64, c_void_p, _P_SIZE)
_decl("mllp_connection_get_output_file_name", c_int, _SERVER, c_uint64, c_void_p, _P_SIZE)
_decl("mllp_connection_set_output_file_name", c_int, _SERVER, c_uint64, c_char_p)
_decl("mllp_connection_set_input_stream", c_int, _SERVER, c_uint64, READ_CB, RELEASE_CB, c_void_p)
_decl("mllp_connection_set_output_stream", c_int, _SERVER, c_uint64, WRITE_CB, RELEASE_CB, c_void_p)

_decl("mllp_server_new", c_void_p)
_decl("mllp_server_free", c_int, _SERVER)
_decl("mllp_server_get_default_timeout", c_int, _SERVER, POINTER(c_uint32))
_decl("mllp_server_get_keep_alive", c_int, _SERVER, POINTER(c_uint8))
_decl("mllp_server_get_listening", c_int, _SERVER, POINTER(c_uint8))
_decl("mllp_server_get_local_port", c_int, _SERVER, POINTER(c_uint16))
_decl("mllp_server_get_version", c_int, _SERVER, POINTER(c_int))
_decl("mllp_server_get_connection_count", c_int, _SERVER, _P_SIZE)
_decl("mllp_server_set_default_timeout", c_int, _SERVER, c_uint32)
_decl("mllp_server_set_keep_alive", c_int, _SERVER, c_uint8)
_decl("mllp_server_set_local_port", c_int, _SERVER, c_uint16)
_decl("mllp_server_set_version", c_int, _SERVER, c_int)
_decl("mllp_server_get_local_host", c_int, _SERVER, c_void_p, _P_SIZE)
_decl("mllp_server_set_local_host", c_int, _SERVER, c_char_p)
_decl("mllp_server_config", c_int, _SERVER, c_char_p, c_void_p, _P_SIZE)
_decl("mllp_server_start_listening", c_int, _SERVER)
_decl("mllp_server_stop_listening", c_int, _SERVER)
_decl("mllp_server_shutdown", c_int, _SERVER)
_decl("mllp_server_reset", c_int, _SERVER)
_decl("mllp_server_disconnect", c_int, _SERVER, c_uint64)
_decl("mllp_server_interrupt", c_int, _SERVER, c_uint64)
_decl("mllp_server_send", c_int, _SERVER, c_uint64)
_decl("mllp_server_send_bytes", c_int, _SERVER, c_uint64, c_char_p, c_size_t)
_decl("mllp_server_do_events", c_int, _SERVER, c_uint32, _P_SIZE)
_decl("mllp_server_get_connections", c_int, _SERVER, POINTER(c_uint64), _P_SIZE)
_decl("mllp_server_acknowledge", c_int, _SERVER, c_uint64, c_uint64, c_uint8, c_int)
_decl("mllp_server_acknowledge_with", c_int, _SERVER, c_uint64, c_uint64, c_char_p, c_size_t)
_decl(
    "mllp_server_send_app_ack",
    c_int,
    _SERVER,
    c_uint64,
    c_char_p,
    c_size_t,
    c_int,
    c_char_p,
    POINTER(c_uint8),
)
_decl("mllp_server_get_duplicate_count", c_int, _SERVER, POINTER(c_uint64))
_decl("mllp_server_get_metrics", c_int, _SERVER, POINTER(MetricsStruct))
_decl("mllp_server_get_metrics_text", c_int, _SERVER, c_void_p, _P_SIZE)
_decl("mllp_hl7_build_ack", c_int, c_char_p, c_size_t, c_int, c_char_p, c_void_p, _P_SIZE)

# TLS
_decl("mllp_certificate_load", c_int, c_int, c_char_p, c_size_t, c_char_p, c_char_p, POINTER(_CERT))
_decl("mllp_certificate_free", None, _CERT)
_decl("mllp_certificate_get_field", c_int, _CERT, c_int, c_void_p, _P_SIZE)
_decl("mllp_certificate_get_encoded", c_int, _CERT, c_void_p, _P_SIZE)
_decl("mllp_certificate_get_private_key_available", c_int, _CERT, POINTER(c_uint8))
_decl("mllp_server_set_ssl_cert", c_int, _SERVER, _CERT)
_decl("mllp_server_get_ssl_cert", c_int, _SERVER, POINTER(_CERT))
_decl("mllp_server_get_ssl_enabled", c_int, _SERVER, POINTER(c_uint8))
_decl("mllp_server_set_ssl_enabled", c_int, _SERVER, c_uint8)
_decl("mllp_server_get_ssl_authenticate_clients", c_int, _SERVER, POINTER(c_uint8))
_decl("mllp_server_set_ssl_authenticate_clients", c_int, _SERVER, c_uint8)
_decl("mllp_connection_get_ssl_negotiated", c_int, _SERVER, c_uint64, c_char_p, c_void_p, _P_SIZE)
_decl("mllp_server_on_ssl_client_authentication", c_int, _SERVER, SSL_CLIENT_AUTH_CB)
_decl("mllp_server_on_ssl_connection_request", c_int, _SERVER, SSL_CONNECTION_REQUEST_CB)
_decl("mllp_server_on_ssl_status", c_int, _SERVER, SSL_STATUS_CB)

# The client (sender). Declared only when the loaded library has it, so that this package
# still loads an older libmllp (mllp.Client then raises ImportError when constructed).
_CLIENT = c_void_p  # mllp_client *
HAVE_CLIENT = hasattr(lib, "mllp_client_new")
if HAVE_CLIENT:
    _decl("mllp_client_new", c_void_p)
    _decl("mllp_client_free", c_int, _CLIENT)
    _decl("mllp_client_set_user_data", c_int, _CLIENT, c_void_p, RELEASE_CB)
    _decl("mllp_client_get_remote_host", c_int, _CLIENT, c_void_p, _P_SIZE)
    _decl("mllp_client_set_remote_host", c_int, _CLIENT, c_char_p)
    _decl("mllp_client_get_remote_port", c_int, _CLIENT, POINTER(c_uint16))
    _decl("mllp_client_set_remote_port", c_int, _CLIENT, c_uint16)
    _decl("mllp_client_get_local_host", c_int, _CLIENT, c_void_p, _P_SIZE)
    _decl("mllp_client_set_local_host", c_int, _CLIENT, c_char_p)
    _decl("mllp_client_get_version", c_int, _CLIENT, POINTER(c_int))
    _decl("mllp_client_set_version", c_int, _CLIENT, c_int)
    _decl("mllp_client_get_timeout", c_int, _CLIENT, POINTER(c_uint32))
    _decl("mllp_client_set_timeout", c_int, _CLIENT, c_uint32)
    _decl("mllp_client_get_keep_alive", c_int, _CLIENT, POINTER(c_uint8))
    _decl("mllp_client_set_keep_alive", c_int, _CLIENT, c_uint8)
    _decl("mllp_client_get_connected", c_int, _CLIENT, POINTER(c_uint8))
    _decl("mllp_client_get_ssl_enabled", c_int, _CLIENT, POINTER(c_uint8))
    _decl("mllp_client_set_ssl_enabled", c_int, _CLIENT, c_uint8)
    _decl("mllp_client_set_ssl_cert", c_int, _CLIENT, _CERT)
    _decl("mllp_client_get_pending", c_int, _CLIENT, _P_SIZE)
    _decl("mllp_client_config", c_int, _CLIENT, c_char_p, c_void_p, _P_SIZE)
    _decl("mllp_client_connect", c_int, _CLIENT)
    _decl("mllp_client_disconnect", c_int, _CLIENT)
    _decl("mllp_client_send", c_int, _CLIENT, c_char_p, c_size_t, POINTER(SendResultStruct))
    _decl("mllp_client_send_async", c_int, _CLIENT, c_char_p, c_size_t, POINTER(c_uint64))
    _decl("mllp_client_do_events", c_int, _CLIENT, c_uint32, _P_SIZE)
    _decl("mllp_client_on_connected", c_int, _CLIENT, STATUS_CB)
    _decl("mllp_client_on_disconnected", c_int, _CLIENT, STATUS_CB)
    _decl("mllp_client_on_ack_in", c_int, _CLIENT, CLIENT_ACK_IN_CB)
    _decl("mllp_client_on_send_done", c_int, _CLIENT, SEND_DONE_CB)
    _decl("mllp_client_on_error", c_int, _CLIENT, ERROR_CB)
    _decl("mllp_client_on_log", c_int, _CLIENT, LOG_CB)
    _decl("mllp_client_on_ssl_server_authentication", c_int, _CLIENT, SSL_SERVER_AUTH_CB)
    _decl("mllp_client_on_ssl_status", c_int, _CLIENT, SSL_STATUS_CB)
