//! The mechanical part of the C surface: the panic boundary, argument checks, handle access and
//! the buffer rule, used the same way by every `extern "C"` function of this module.
//!
//! Every exported function stays a literal `#[no_mangle] pub extern "C" fn` item (cbindgen reads
//! those, not macro output) whose whole body is wrapped in [`ffi_panic_boundary!`]. Inside the
//! body, the `try_*!` macros check one argument each; when it is NULL or invalid they record the
//! failure as the calling thread's last error, with a message naming the argument, and return
//! its code from the body. They are meant for bodies that return a result code (`c_int`).
//!
//! ```ignore
//! #[no_mangle]
//! pub extern "C" fn mllp_server_get_local_port(server: *const mllp_server, out: *mut u16) -> c_int {
//!     ffi_panic_boundary! {
//!         let s = try_ref_from_ptr!(server);
//!         let out = try_out!(out);
//!         out.set(s.server.local_port())
//!     }
//! }
//! ```

use std::any::Any;
use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use super::{fail_with, MLLP_OK};
use crate::error::code;

/// Runs a function body inside `catch_unwind`, so that no panic unwinds into the host (since
/// Rust 1.81 that aborts the process, a JVM or CLR with it).
///
/// A caught panic is recorded as the thread's last error (`MLLP_ERR_PANIC`, with the panic's
/// message) and the function returns its [`PanicDefault`]: `MLLP_ERR_PANIC` for a result code,
/// NULL for a pointer, nothing for `void`. `ffi_panic_boundary!(default = expr; body)` states
/// another value (for functions documented never to return NULL).
///
/// `return` inside the body returns from the body, i.e. from the function.
macro_rules! ffi_panic_boundary {
    (default = $default:expr; $($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(ret) => ret,
            Err(payload) => {
                $crate::ffi::macros::record_panic(payload.as_ref());
                $default
            }
        }
    };
    ($($body:tt)*) => {
        $crate::ffi::macros::ffi_panic_boundary!(
            default = $crate::ffi::macros::PanicDefault::panic_default();
            $($body)*
        )
    };
}

/// Borrows the object behind a handle argument (`*const` or `*mut` to a [`Handle`] type).
/// NULL returns `MLLP_ERR_INVALID_ARGUMENT`, "`<argument>` is NULL".
///
/// The borrow is shared even for `*mut` handles: a handle may be used from several threads at
/// once, so the objects use interior mutability and no `&mut` to them is ever formed.
macro_rules! try_ref_from_ptr {
    ($ptr:ident) => {
        match $crate::ffi::macros::ref_from_ptr($ptr) {
            Some(r) => r,
            None => return $crate::ffi::macros::null_argument(stringify!($ptr)),
        }
    };
}

/// Checks an output pointer (`*mut T`) and returns an [`Out`] to write the result through once
/// the call has succeeded. NULL returns `MLLP_ERR_INVALID_ARGUMENT`.
macro_rules! try_out {
    ($ptr:ident) => {
        match $crate::ffi::macros::Out::new($ptr) {
            Some(o) => o,
            None => return $crate::ffi::macros::null_argument(stringify!($ptr)),
        }
    };
}

/// Checks the `buf`/`len` pair of a variable-size output and returns an [`OutBuf`] that
/// applies the buffer rule. Only a NULL `len` fails here (`MLLP_ERR_INVALID_ARGUMENT`); a NULL
/// `buf` is a zero-capacity buffer.
macro_rules! try_buf {
    ($buf:ident, $len:ident) => {
        match $crate::ffi::macros::OutBuf::new($buf, $len) {
            Some(o) => o,
            None => return $crate::ffi::macros::null_argument(stringify!($len)),
        }
    };
}

/// Reads a NUL-terminated UTF-8 string argument as `&str`. NULL or invalid UTF-8 returns
/// `MLLP_ERR_INVALID_ARGUMENT`.
macro_rules! try_str {
    ($ptr:ident) => {
        match $crate::ffi::macros::str_from_ptr($ptr, stringify!($ptr)) {
            Ok(Some(s)) => s,
            Ok(None) => return $crate::ffi::macros::null_argument(stringify!($ptr)),
            Err(rc) => return rc,
        }
    };
}

/// Reads an optional string argument: `None` for NULL, else as [`try_str!`].
macro_rules! try_opt_str {
    ($ptr:ident) => {
        match $crate::ffi::macros::str_from_ptr($ptr, stringify!($ptr)) {
            Ok(s) => s,
            Err(rc) => return rc,
        }
    };
}

/// Borrows `len` bytes at a `*const u8` argument. NULL is allowed only when `len` is 0;
/// otherwise it returns `MLLP_ERR_INVALID_ARGUMENT`.
macro_rules! try_slice {
    ($ptr:ident, $len:expr) => {
        match $crate::ffi::macros::slice_from_ptr($ptr, $len) {
            Some(s) => s,
            None => return $crate::ffi::macros::null_argument(stringify!($ptr)),
        }
    };
}

/// Unwraps a [`crate::Result`]; an error is recorded as the thread's last error and its code
/// returned.
macro_rules! try_mllp {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $crate::ffi::fail(e),
        }
    };
}

// For the recursive call in ffi_panic_boundary! (the others are used by name, via #[macro_use]).
pub(crate) use ffi_panic_boundary;

/// What an exported function returns after a caught panic.
pub(crate) trait PanicDefault {
    /// The value returned.
    fn panic_default() -> Self;
}

impl PanicDefault for c_int {
    fn panic_default() -> Self {
        code::PANIC
    }
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

/// Records a caught panic as the thread's last error.
pub(crate) fn record_panic(payload: &(dyn Any + Send)) {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    fail_with(code::PANIC, &format!("internal error: a panic was caught at the C boundary: {what}"));
}

/// Records "`what` is NULL" and returns `MLLP_ERR_INVALID_ARGUMENT`.
pub(crate) fn null_argument(what: &str) -> c_int {
    fail_with(code::INVALID_ARGUMENT, &format!("{what} is NULL"))
}

/// An opaque handle type: the host holds a `*mut Self` made by [`to_handle`] until it passes it
/// to the type's `_free` function, which gives it to [`free_handle`]. Implemented only for the
/// handle types, so handle access cannot be applied to other pointers by mistake.
pub(crate) trait Handle: Sized {}

/// Moves `value` to the heap and returns the handle the host will own.
pub(crate) fn to_handle<H: Handle>(value: H) -> *mut H {
    Box::into_raw(Box::new(value))
}

/// Borrows the object behind a handle; `None` for NULL.
pub(crate) fn ref_from_ptr<'a, H: Handle>(p: *const H) -> Option<&'a H> {
    // SAFETY: a non-NULL handle pointer was made by `to_handle` and stays valid until its
    // `_free` function, which the header says must not run concurrently with, or before, any
    // other call on the same handle. Only shared references are formed (see try_ref_from_ptr!).
    unsafe { p.as_ref() }
}

/// Drops the object behind a handle; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or was made by [`to_handle`], has not been freed, and is not used again.
pub(crate) unsafe fn free_handle<H: Handle>(p: *mut H) {
    if !p.is_null() {
        // SAFETY: the caller's contract: `p` came from Box::into_raw in `to_handle`, once.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Reads a NUL-terminated UTF-8 string; `Ok(None)` for NULL, `Err` (recorded) for bad UTF-8.
pub(crate) fn str_from_ptr<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, c_int> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: p is non-NULL and the header requires text arguments to be NUL-terminated strings
    // that stay valid for the duration of the call.
    let s = unsafe { CStr::from_ptr(p) };
    match s.to_str() {
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(fail_with(code::INVALID_ARGUMENT, &format!("{what} is not valid UTF-8"))),
    }
}

/// Borrows `len` bytes at `p`; `None` when `p` is NULL and `len` is not 0. The NULL check comes
/// before the slice is formed, also for `len` 0 (a slice never has a NULL pointer).
pub(crate) fn slice_from_ptr<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() {
        return None;
    }
    // SAFETY: p is non-NULL and the header requires `len` readable bytes at it for the duration
    // of the call; the library copies what it keeps.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A checked, non-NULL output pointer. Written only on success, by [`Out::set`].
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// `None` for NULL (for an optional output, `Out::new(p)` instead of [`try_out!`]).
    pub(crate) fn new(p: *mut T) -> Option<Self> {
        NonNull::new(p).map(Out)
    }

    /// Writes the result and returns `MLLP_OK`.
    pub(crate) fn set(self, value: T) -> c_int {
        // SAFETY: the pointer is non-NULL and the header requires output pointers to point to
        // writable, aligned storage for a T for the duration of the call. `write` does not read
        // or drop the (possibly uninitialized) old value.
        unsafe { self.0.as_ptr().write(value) };
        MLLP_OK
    }
}

/// A checked `buf`/`len` pair: the one implementation of the buffer rule. The caller passes a
/// buffer and its capacity (in elements) in `*len`; `*len` is set to the size the full value
/// needs; when `buf` is NULL or too small, `MLLP_ERR_BUFFER_TOO_SMALL` is returned and nothing
/// is copied.
pub(crate) struct OutBuf<T> {
    buf: *mut T,
    len: NonNull<usize>,
}

impl<T: Copy> OutBuf<T> {
    /// `None` when `len` is NULL.
    pub(crate) fn new(buf: *mut T, len: *mut usize) -> Option<Self> {
        NonNull::new(len).map(|len| OutBuf { buf, len })
    }

    /// Copies `src` under the buffer rule.
    pub(crate) fn put_slice(self, src: &[T]) -> c_int {
        self.put_parts(&[src])
    }

    /// Copies the concatenation of `parts` under the buffer rule (no temporary allocation).
    fn put_parts(self, parts: &[&[T]]) -> c_int {
        let needed: usize = parts.iter().map(|p| p.len()).sum();
        // SAFETY: `len` is non-NULL and the header requires it to point to the caller's size_t,
        // readable and writable for the duration of the call.
        let cap = unsafe { self.len.as_ptr().read() };
        // SAFETY: as above.
        unsafe { self.len.as_ptr().write(needed) };
        if self.buf.is_null() || cap < needed {
            let unit = if std::mem::size_of::<T>() == 1 { "bytes" } else { "entries" };
            return fail_with(code::BUFFER_TOO_SMALL, &format!("buffer too small: {needed} {unit} needed"));
        }
        let mut at = self.buf;
        for part in parts {
            // SAFETY: buf is non-NULL with room for `cap >= needed` elements (the caller's
            // promise for a capacity it passed), this part fits in what remains, and the
            // library's data cannot overlap the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        MLLP_OK
    }
}

impl OutBuf<c_char> {
    /// Copies `s` and a terminating NUL under the buffer rule (`*len` counts the NUL).
    pub(crate) fn put_str(self, s: &str) -> c_int {
        OutBuf { buf: self.buf.cast::<u8>(), len: self.len }.put_parts(&[s.as_bytes(), b"\0"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{mllp_last_error_code, mllp_last_error_message, MLLP_ERR_BUFFER_TOO_SMALL, MLLP_ERR_PANIC};

    fn last_message() -> String {
        // SAFETY: mllp_last_error_message never returns NULL and the string lives until the
        // next failing call on this thread.
        unsafe { CStr::from_ptr(mllp_last_error_message()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn buffer_rule() {
        let mut len = 2usize;
        let mut buf = [0u8; 8];
        let out = |buf: &mut [u8; 8], len: &mut usize| OutBuf::new(buf.as_mut_ptr(), len).unwrap();
        assert_eq!(out(&mut buf, &mut len).put_slice(b"abc"), MLLP_ERR_BUFFER_TOO_SMALL);
        assert_eq!(len, 3);
        assert_eq!(buf, [0; 8], "nothing copied");
        assert_eq!(out(&mut buf, &mut len).put_slice(b"abc"), MLLP_OK);
        assert_eq!(&buf[..3], b"abc");
        let mut len = 8usize;
        assert_eq!(OutBuf::new(buf.as_mut_ptr().cast::<c_char>(), &mut len).unwrap().put_str("ab"), MLLP_OK);
        assert_eq!(len, 3);
        assert_eq!(&buf[..3], b"ab\0");
        let mut len = 2usize;
        assert_eq!(
            OutBuf::new(buf.as_mut_ptr().cast::<c_char>(), &mut len).unwrap().put_str("ab"),
            MLLP_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 3, "the NUL is counted");
        let mut len = 100usize;
        assert_eq!(
            OutBuf::<u8>::new(std::ptr::null_mut(), &mut len).unwrap().put_slice(b"x"),
            MLLP_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 1, "a NULL buffer learns the size");
        let mut ids = [0u64; 2];
        let mut len = 2usize;
        assert_eq!(OutBuf::new(ids.as_mut_ptr(), &mut len).unwrap().put_slice(&[7, 8]), MLLP_OK);
        assert_eq!(ids, [7, 8]);
        assert!(OutBuf::<u8>::new(buf.as_mut_ptr(), std::ptr::null_mut()).is_none());
    }

    fn boundary_code(panic: bool) -> c_int {
        ffi_panic_boundary! {
            if panic {
                panic!("boom {}", 42);
            }
            MLLP_OK
        }
    }

    fn boundary_ptr() -> *const c_char {
        ffi_panic_boundary! {
            panic!("static message")
        }
    }

    static FALLBACK: &[u8] = b"fallback\0";

    fn boundary_default() -> *const c_char {
        ffi_panic_boundary! { default = FALLBACK.as_ptr().cast();
            panic!("static message")
        }
    }

    fn boundary_checks(server: *const crate::ffi::server::mllp_server, host: *const c_char) -> c_int {
        ffi_panic_boundary! {
            let _s = try_ref_from_ptr!(server);
            let _h = try_str!(host);
            MLLP_OK
        }
    }

    #[test]
    fn panic_boundary() {
        assert_eq!(boundary_code(false), MLLP_OK);
        assert_eq!(boundary_code(true), MLLP_ERR_PANIC);
        assert_eq!(mllp_last_error_code(), MLLP_ERR_PANIC);
        assert!(last_message().ends_with("boom 42"), "{}", last_message());
        assert!(boundary_ptr().is_null());
        assert!(last_message().ends_with("static message"));
        // SAFETY: the default is a static NUL-terminated string.
        assert_eq!(unsafe { CStr::from_ptr(boundary_default()) }.to_bytes(), b"fallback");
    }

    #[test]
    fn null_checks_name_the_argument() {
        let text = |b: &[u8]| std::ffi::CString::new(b).unwrap();
        assert_eq!(boundary_checks(std::ptr::null(), text(b"x").as_ptr()), code::INVALID_ARGUMENT);
        assert_eq!(last_message(), "server is NULL");
        let s = crate::ffi::server::mllp_server_new();
        assert_eq!(boundary_checks(s, std::ptr::null()), code::INVALID_ARGUMENT);
        assert_eq!(last_message(), "host is NULL");
        assert_eq!(boundary_checks(s, text(b"\xff").as_ptr()), code::INVALID_ARGUMENT);
        assert_eq!(last_message(), "host is not valid UTF-8");
        assert_eq!(boundary_checks(s, text(b"127.0.0.1").as_ptr()), MLLP_OK);
        assert_eq!(crate::ffi::server::mllp_server_free(s), MLLP_OK);
        assert!(slice_from_ptr(std::ptr::null(), 0).is_some());
        assert!(slice_from_ptr(std::ptr::null(), 1).is_none());
    }
}
