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
//! - Every function runs inside a panic guard and checks every pointer before use.

#![allow(non_camel_case_types)]
// The C functions check their pointers themselves; marking them `unsafe` would only move the
// obligation to callers that cannot see Rust's signature anyway.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{code, describe, Error};

pub mod callbacks;
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
/// Could not open file (303).
pub const MLLP_ERR_CANNOT_OPEN_FILE: c_int = 303;
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
/// A synchronous send was interrupted by `mllp_server_interrupt` (2011).
pub const MLLP_ERR_SEND_INTERRUPTED: c_int = 2011;
/// MaxConnections reached; reported through the Error event (2012).
pub const MLLP_ERR_TOO_MANY_CONNECTIONS: c_int = 2012;

/// A certificate or key could not be loaded or used: wrong password, key mismatch, expired,
/// no private key, bad format (2020).
pub const MLLP_ERR_CERTIFICATE: c_int = 2020;
/// The TLS handshake failed or did not finish in time (2021).
pub const MLLP_ERR_TLS_HANDSHAKE: c_int = 2021;
/// The client's certificate was refused in SSLClientAuthentication (2022).
pub const MLLP_ERR_TLS_CLIENT_REJECTED: c_int = 2022;

/// Major version of this library (matches Cargo.toml).
pub const MLLP_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const MLLP_VERSION_MINOR: u32 = 1;
/// Patch version of this library.
pub const MLLP_VERSION_PATCH: u32 = 0;

thread_local! {
    static LAST_ERROR: RefCell<(c_int, CString)> = RefCell::new((0, CString::default()));
}

/// Records `e` as this thread's last failure and returns its code.
pub(crate) fn fail(e: Error) -> c_int {
    let msg = CString::new(e.message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = (e.code, msg));
    e.code
}

/// Records an error by code and message and returns the code.
pub(crate) fn fail_with(code: c_int, msg: &str) -> c_int {
    fail(Error::new(code, msg))
}

/// Runs `f` inside the panic guard; a panic becomes `MLLP_ERR_PANIC`.
pub(crate) fn guard(f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => fail_with(code::PANIC, "internal error: a panic was caught at the C boundary"),
    }
}

/// Turns a Rust result into a result code, recording the failure.
pub(crate) fn rc<T>(r: crate::Result<T>) -> c_int {
    match r {
        Ok(_) => MLLP_OK,
        Err(e) => fail(e),
    }
}

/// Reads a NUL-terminated UTF-8 string argument.
pub(crate) fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a str, c_int> {
    if p.is_null() {
        return Err(fail_with(code::INVALID_ARGUMENT, &format!("{what} is NULL")));
    }
    // SAFETY: p is non-NULL and the caller promises a NUL-terminated string that outlives the call.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| fail_with(code::INVALID_ARGUMENT, &format!("{what} is not valid UTF-8")))
}

/// Borrows `len` bytes at `p` (NULL is allowed only when `len` is 0).
pub(crate) fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(fail_with(code::INVALID_ARGUMENT, &format!("{what} is NULL")));
    }
    // SAFETY: p is non-NULL and the caller promises `len` readable bytes for the call's duration.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Writes a plain value through an output pointer.
pub(crate) fn put<T>(out: *mut T, v: T) -> c_int {
    if out.is_null() {
        return fail_with(code::INVALID_ARGUMENT, "output pointer is NULL");
    }
    // SAFETY: out is non-NULL and the caller promises it points to writable storage for a T.
    unsafe { out.write(v) };
    MLLP_OK
}

/// Copies `src` to the caller's buffer under the buffer rule (see the module comment).
pub(crate) fn put_bytes(src: &[u8], buf: *mut u8, len: *mut usize) -> c_int {
    if len.is_null() {
        return fail_with(code::INVALID_ARGUMENT, "len is NULL");
    }
    // SAFETY: len is non-NULL and points to a size_t the caller owns.
    let cap = unsafe { *len };
    // SAFETY: as above.
    unsafe { *len = src.len() };
    if buf.is_null() || cap < src.len() {
        return fail_with(code::BUFFER_TOO_SMALL, &format!("buffer too small: {} bytes needed", src.len()));
    }
    // SAFETY: buf is non-NULL with room for `cap >= src.len()` bytes, and cannot overlap our data.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf, src.len()) };
    MLLP_OK
}

/// Copies a string and its NUL terminator under the buffer rule.
pub(crate) fn put_str(s: &str, buf: *mut c_char, len: *mut usize) -> c_int {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    put_bytes(&v, buf.cast(), len)
}

/// The library's version string, e.g. "0.1.0". Static storage; never NULL. Any thread.
#[no_mangle]
pub extern "C" fn mllp_version() -> *const c_char {
    static V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// A description of a result code (the reference's wording where it has one). Static storage;
/// never NULL. Any thread.
#[no_mangle]
pub extern "C" fn mllp_error_description(code: c_int) -> *const c_char {
    static TABLE: once_cell::sync::Lazy<std::sync::Mutex<std::collections::HashMap<c_int, &'static CStr>>> =
        once_cell::sync::Lazy::new(Default::default);
    let r = catch_unwind(|| {
        let mut t = crate::shared::lock(&TABLE);
        *t.entry(code).or_insert_with(|| {
            let s = CString::new(describe(code)).unwrap_or_default();
            Box::leak(s.into_boxed_c_str())
        })
    });
    match r {
        Ok(s) => s.as_ptr(),
        Err(_) => c"Unknown error".as_ptr(),
    }
}

/// The code of the last failure on the calling thread (0 if none yet).
#[no_mangle]
pub extern "C" fn mllp_last_error_code() -> c_int {
    catch_unwind(|| LAST_ERROR.with(|l| l.borrow().0)).unwrap_or(code::PANIC)
}

/// The message of the last failure on the calling thread ("" if none yet). Never NULL. The
/// string stays valid until the next failing call on the same thread.
#[no_mangle]
pub extern "C" fn mllp_last_error_message() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|l| l.borrow().1.as_ptr())).unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_cargo() {
        assert_eq!(MLLP_VERSION_MAJOR.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(MLLP_VERSION_MINOR.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(MLLP_VERSION_PATCH.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
        // SAFETY: mllp_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(mllp_version()) }.to_str().unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn codes_match_the_core() {
        assert_eq!(MLLP_ERR_NAK_RECEIVED, code::NAK_RECEIVED);
        assert_eq!(MLLP_ERR_INVALID_DATA, code::INVALID_DATA);
        assert_eq!(MLLP_ERR_INTERRUPTED, code::INTERRUPTED);
        assert_eq!(MLLP_ERR_CANNOT_CHANGE_LOCAL_PORT, code::CANNOT_CHANGE_LOCAL_PORT);
        assert_eq!(MLLP_ERR_CANNOT_CHANGE_LOCAL_HOST, code::CANNOT_CHANGE_LOCAL_HOST);
        assert_eq!(MLLP_ERR_WOULD_BLOCK, code::WOULD_BLOCK);
        assert_eq!(MLLP_ERR_TIMEOUT, code::TIMEOUT);
        assert_eq!(MLLP_ERR_BAD_STATE, code::BAD_STATE);
        assert_eq!(MLLP_ERR_CANNOT_OPEN_FILE, code::CANNOT_OPEN_FILE);
        assert_eq!(MLLP_ERR_INVALID_ARGUMENT, code::INVALID_ARGUMENT);
        assert_eq!(MLLP_ERR_NO_SUCH_CONNECTION, code::NO_SUCH_CONNECTION);
        assert_eq!(MLLP_ERR_NOT_SUPPORTED, code::NOT_SUPPORTED);
        assert_eq!(MLLP_ERR_UNKNOWN_SETTING, code::UNKNOWN_SETTING);
        assert_eq!(MLLP_ERR_INVALID_VALUE, code::INVALID_VALUE);
        assert_eq!(MLLP_ERR_REENTRANT, code::REENTRANT);
        assert_eq!(MLLP_ERR_PANIC, code::PANIC);
        assert_eq!(MLLP_ERR_BUFFER_TOO_SMALL, code::BUFFER_TOO_SMALL);
        assert_eq!(MLLP_ERR_IO, code::IO);
        assert_eq!(MLLP_ERR_SEND_INTERRUPTED, code::SEND_INTERRUPTED);
        assert_eq!(MLLP_ERR_TOO_MANY_CONNECTIONS, code::TOO_MANY_CONNECTIONS);
        assert_eq!(MLLP_ERR_CERTIFICATE, code::CERTIFICATE);
        assert_eq!(MLLP_ERR_TLS_HANDSHAKE, code::TLS_HANDSHAKE);
        assert_eq!(MLLP_ERR_TLS_CLIENT_REJECTED, code::TLS_CLIENT_REJECTED);
    }

    #[test]
    fn buffer_rule() {
        let mut len = 2usize;
        let mut buf = [0u8; 8];
        assert_eq!(put_bytes(b"abc", buf.as_mut_ptr(), &mut len), MLLP_ERR_BUFFER_TOO_SMALL);
        assert_eq!(len, 3);
        assert_eq!(put_bytes(b"abc", buf.as_mut_ptr(), &mut len), MLLP_OK);
        assert_eq!(&buf[..3], b"abc");
        let mut len = 8usize;
        assert_eq!(put_str("ab", buf.as_mut_ptr().cast(), &mut len), MLLP_OK);
        assert_eq!(len, 3);
        assert_eq!(&buf[..3], b"ab\0");
    }
}
