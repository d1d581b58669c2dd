//! The C ABI: a mechanical translation of [`crate::Server`]. No protocol logic lives here.
//!
//! Conventions (stated again in the generated header):
//! - Fallible functions return an `int` result code: `MLLP_OK` (0) or an error code. The
//!   reference's codes are kept (670, 671, 672, 1xx–3xx, socket errors 100xx); the library's
//!   own conditions use 2001–2099.
//! - The message of the last failure is kept per thread: `mllp_last_error_message()`.
//! - Output parameters are written only on success. Variable-size results use one rule: the
//!   caller passes a buffer and its capacity in `*len`; `*len` is set to the size the full value
//!   needs (for strings, including the terminating NUL). When `buf` is NULL or too small the
//!   function returns `MLLP_ERR_BUFFER_TOO_SMALL` and copies nothing.
//! - Every function runs inside a panic guard and checks every pointer before use. The
//!   mechanics (the guard, NULL checks, handle access, the buffer rule) live in [`macros`] and
//!   are used the same way by every `extern "C"` function.

#![allow(non_camel_case_types)]
// The C functions check their pointers themselves; marking them `unsafe` would only move the
// obligation to callers that cannot see Rust's signature anyway.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use crate::error::{describe_c, Error};

#[macro_use]
mod macros;
pub mod callbacks;
pub mod client;
pub mod connection;
pub mod server;
mod stream;
pub mod tls;

/// Success.
pub const MLLP_OK: c_int = 0;
/// Received a negative acknowledgement (reference code 670).
pub const MLLP_ERR_NAK_RECEIVED: c_int = 670;
/// Data was invalid: a timeout occurred or the message block was improperly formatted (671).
pub const MLLP_ERR_INVALID_DATA: c_int = 671;
/// Connection interrupted while transferring data (672).
pub const MLLP_ERR_INTERRUPTED: c_int = 672;
/// LocalPort cannot change while listening (106).
pub const MLLP_ERR_CANNOT_CHANGE_LOCAL_PORT: c_int = 106;
/// LocalHost cannot change while listening (107).
pub const MLLP_ERR_CANNOT_CHANGE_LOCAL_HOST: c_int = 107;
/// Operation would block: the connection's output queue is full (135).
pub const MLLP_ERR_WOULD_BLOCK: c_int = 135;
/// Timeout (201).
pub const MLLP_ERR_TIMEOUT: c_int = 201;
/// Action impossible in the present state (211).
pub const MLLP_ERR_BAD_STATE: c_int = 211;
/// Action impossible while not connected (reference code 212).
pub const MLLP_ERR_NOT_CONNECTED: c_int = 212;
/// Action impossible while listening (reference code 213).
pub const MLLP_ERR_LISTENING: c_int = 213;
/// Could not open file (303).
pub const MLLP_ERR_CANNOT_OPEN_FILE: c_int = 303;
/// Connection dropped by the remote host (reference code 1120).
pub const MLLP_ERR_DROPPED: c_int = 1120;
/// A required pointer was NULL or an argument out of range (2001).
pub const MLLP_ERR_INVALID_ARGUMENT: c_int = 2001;
/// No connection has that id: it never existed or has closed (2002).
pub const MLLP_ERR_NO_SUCH_CONNECTION: c_int = 2002;
/// The setting exists in the reference but has no meaning for this server (2003).
pub const MLLP_ERR_NOT_SUPPORTED: c_int = 2003;
/// Unknown setting name (2004).
pub const MLLP_ERR_UNKNOWN_SETTING: c_int = 2004;
/// Invalid value for a setting or property (2005).
pub const MLLP_ERR_INVALID_VALUE: c_int = 2005;
/// The call would wait for the thread that is delivering events, and was made from it (2006).
pub const MLLP_ERR_REENTRANT: c_int = 2006;
/// An internal panic was caught at the boundary (2007).
pub const MLLP_ERR_PANIC: c_int = 2007;
/// The buffer is NULL or too small; `*len` holds the size needed (2008).
pub const MLLP_ERR_BUFFER_TOO_SMALL: c_int = 2008;
/// A file or stream operation failed (2009).
pub const MLLP_ERR_IO: c_int = 2009;
/// The server has been shut down and has freed its reactor (2010).
pub const MLLP_ERR_SHUT_DOWN: c_int = 2010;
/// A synchronous send was interrupted by `mllp_server_interrupt` (2011).
pub const MLLP_ERR_SEND_INTERRUPTED: c_int = 2011;
/// MaxConnections reached; reported through the Error event (2012).
pub const MLLP_ERR_TOO_MANY_CONNECTIONS: c_int = 2012;
/// A connection was closed because the server-wide budget for buffered input
/// (MaxBufferedBytes) was spent and it held the most partial-message data; reported through
/// the Error and Disconnected events (2013).
pub const MLLP_ERR_MEMORY_BUDGET: c_int = 2013;

/// A certificate or key could not be loaded or used: wrong password, key mismatch, expired,
/// no private key, bad format (2020).
pub const MLLP_ERR_CERTIFICATE: c_int = 2020;
/// The TLS handshake failed or did not finish in time (2021).
pub const MLLP_ERR_TLS_HANDSHAKE: c_int = 2021;
/// The client's certificate was refused in SSLClientAuthentication (2022).
pub const MLLP_ERR_TLS_CLIENT_REJECTED: c_int = 2022;
/// The server's certificate was refused (client): verification failed and
/// SSLServerAuthentication did not override it (2023).
pub const MLLP_ERR_TLS_SERVER_REJECTED: c_int = 2023;

/// A batch (ProcessBatch) could not be split: no BTS or FTS, counts wrong, stray segments;
/// refused whole, nothing delivered (2030).
pub const MLLP_ERR_BAD_BATCH: c_int = 2030;
/// A message could not be converted from its character set (DecodeToUTF8); refused (2031).
pub const MLLP_ERR_CHARSET: c_int = 2031;
/// A resent message arrived while its original was still awaiting its answer on another
/// connection (DuplicateWindow); refused, to be resent later (2032).
pub const MLLP_ERR_DUPLICATE_IN_PROGRESS: c_int = 2032;

/// Client: no acknowledgement within Timeout, after the retries (2040).
pub const MLLP_ERR_ACK_TIMEOUT: c_int = 2040;
/// Client: the receiver answered MSA-1 AE or CE, after the retries; the text is in the
/// message (2041).
pub const MLLP_ERR_APP_ERROR: c_int = 2041;
/// Client: the receiver answered MSA-1 AR or CR, after the retries (2042).
pub const MLLP_ERR_APP_REJECT: c_int = 2042;
/// Client: an HL7 acknowledgement whose MSA-2 names no message awaiting one (late, or for
/// another message); reported through the Error event and never matched to another
/// message (2043).
pub const MLLP_ERR_ACK_MISMATCH: c_int = 2043;

/// Server: a connection did not start with a valid PROXY protocol header (ProxyProtocol):
/// wrong signature, malformed, too long, closed inside it, or not complete within
/// ProxyHeaderTimeout; the reason is in the message and the connection is closed (2050).
pub const MLLP_ERR_PROXY_HEADER: c_int = 2050;

/// Major version of this library (matches Cargo.toml).
pub const MLLP_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const MLLP_VERSION_MINOR: u32 = 1;
/// Patch version of this library.
pub const MLLP_VERSION_PATCH: u32 = 0;

thread_local! {
    static LAST_ERROR: RefCell<(c_int, CString)> = RefCell::new((0, CString::default()));
}

/// Records `e` as this thread's last failure and returns its code. Never panics (it runs in
/// the panic boundary's error path): while the thread is exiting, or re-entered, the record is
/// skipped.
pub(crate) fn fail(e: Error) -> c_int {
    let msg = CString::new(e.message.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = (e.code, msg);
        }
    });
    e.code
}

/// Records an error by code and message and returns the code.
pub(crate) fn fail_with(code: c_int, msg: &str) -> c_int {
    fail(Error::new(code, msg))
}

/// Turns a Rust result into a result code, recording the failure.
pub(crate) fn rc<T>(r: crate::Result<T>) -> c_int {
    match r {
        Ok(_) => MLLP_OK,
        Err(e) => fail(e),
    }
}

/// A NUL-terminated copy of `s` for an event struct (a NUL inside becomes a space).
pub(crate) fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// As [`c_text`], without allocating for the empty string (MSH-18 is usually empty, and these
/// strings are made for several events of every message).
pub(crate) fn c_text_or_empty(s: &str) -> std::borrow::Cow<'static, std::ffi::CStr> {
    if s.is_empty() {
        std::borrow::Cow::Borrowed(c_empty())
    } else {
        std::borrow::Cow::Owned(c_text(s))
    }
}

/// The empty C string, in static storage.
pub(crate) fn c_empty() -> &'static std::ffi::CStr {
    std::ffi::CStr::from_bytes_with_nul(EMPTY).unwrap_or_default()
}

/// `mllp_version()`'s string, NUL-terminated.
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
/// The empty C string.
static EMPTY: &[u8] = b"\0";

/// The library's version string, e.g. "0.1.0". Static storage; never NULL. Any thread.
#[no_mangle]
pub extern "C" fn mllp_version() -> *const c_char {
    ffi_panic_boundary! { default = VERSION.as_ptr().cast();
        VERSION.as_ptr().cast()
    }
}

/// A description of a result code (the reference's wording where it has one). Static storage;
/// never NULL. Any thread.
#[no_mangle]
pub extern "C" fn mllp_error_description(code: c_int) -> *const c_char {
    ffi_panic_boundary! { default = describe_c(c_int::MIN).as_ptr();
        describe_c(code).as_ptr()
    }
}

/// The code of the last failure on the calling thread (0 if none yet).
#[no_mangle]
pub extern "C" fn mllp_last_error_code() -> c_int {
    ffi_panic_boundary! {
        LAST_ERROR.with(|l| l.borrow().0)
    }
}

/// The message of the last failure on the calling thread ("" if none yet). Never NULL. The
/// string stays valid until the next failing call on the same thread.
#[no_mangle]
pub extern "C" fn mllp_last_error_message() -> *const c_char {
    ffi_panic_boundary! { default = EMPTY.as_ptr().cast();
        LAST_ERROR.with(|l| l.borrow().1.as_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_constants_match_cargo() {
        assert_eq!(MLLP_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(MLLP_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(MLLP_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
        // SAFETY: mllp_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(mllp_version()) }.to_str().unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }

    /// `#define MLLP_OK 0` / `#define MLLP_ERR_<NAME> <n>` lines of the generated header.
    fn header_codes() -> Vec<(String, i32)> {
        let header = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/include/mllp.h"));
        header
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (Some("#define"), Some(name), Some(value), None) = (w.next(), w.next(), w.next(), w.next()) else {
                    return None;
                };
                if name != "MLLP_OK" && !name.starts_with("MLLP_ERR_") {
                    return None;
                }
                Some((name.to_string(), value.parse().unwrap_or_else(|_| panic!("{name} = {value} is a number"))))
            })
            .collect()
    }

    fn c_name(name: &str) -> String {
        if name == "OK" {
            "MLLP_OK".to_string()
        } else {
            format!("MLLP_ERR_{name}")
        }
    }

    /// The header's result codes and the table in src/error.rs (`codes!`) are the same set.
    #[test]
    fn header_codes_match_the_table() {
        let header = header_codes();
        for &(name, value) in crate::error::NAMED_CODES {
            let c = c_name(name);
            let found = header.iter().find(|(n, _)| *n == c);
            assert_eq!(found.map(|(_, v)| *v), Some(value), "include/mllp.h defines {c} as {value}");
        }
        for (n, v) in &header {
            assert!(
                crate::error::NAMED_CODES.iter().any(|&(name, value)| c_name(name) == *n && value == *v),
                "{n} = {v} in include/mllp.h is in the codes! table of src/error.rs"
            );
        }
        assert_eq!(header.len(), crate::error::NAMED_CODES.len(), "no code defined twice");
    }

    #[test]
    fn error_description_is_static() {
        for &(_, c) in crate::error::NAMED_CODES.iter().chain(&[("", 10048), ("", 301), ("", -7)]) {
            let p = mllp_error_description(c);
            assert_eq!(p, mllp_error_description(c), "same pointer twice for {c}");
            // SAFETY: mllp_error_description returns a static NUL-terminated string.
            let d = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
            assert_eq!(d, crate::error::describe(c));
        }
        assert_eq!(crate::error::describe(-7), "Unknown error");
    }
}
