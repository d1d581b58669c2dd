//! The reference's InputStream / OutputStream as C callbacks.

use std::ffi::{c_int, c_void};
use std::io;

use super::callbacks::mllp_release_cb;

/// Reads up to `cap` bytes into `buf`: returns the count, 0 at end of stream, or a negative
/// value on error.
pub type mllp_read_cb = Option<unsafe extern "C" fn(user: *mut c_void, buf: *mut u8, cap: usize) -> isize>;
/// Writes `len` bytes: returns 0 on success, anything else on error.
pub type mllp_write_cb = Option<unsafe extern "C" fn(user: *mut c_void, data: *const u8, len: usize) -> c_int>;

/// A host stream; `close` runs exactly once when the library lets go of it.
pub(crate) struct CStream<F> {
    pub io: F,
    pub close: mllp_release_cb,
    pub user: *mut c_void,
}

// SAFETY: the header documents that stream callbacks may run on the reactor thread or the
// thread calling Send; the host's callbacks and user pointer must allow that.
unsafe impl<F> Send for CStream<F> {}

impl<F> Drop for CStream<F> {
    fn drop(&mut self) {
        if let Some(close) = self.close {
            // SAFETY: the host's close callback for its own pointer, called exactly once.
            unsafe { close(self.user) };
        }
    }
}

impl io::Read for CStream<unsafe extern "C" fn(*mut c_void, *mut u8, usize) -> isize> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid writable region of buf.len() bytes for the call.
        let n = unsafe { (self.io)(self.user, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(io::Error::other(format!("input stream read callback returned {n}")));
        }
        Ok((n as usize).min(buf.len()))
    }
}

impl io::Write for CStream<unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for reads of buf.len() bytes for the call.
        let rc = unsafe { (self.io)(self.user, buf.as_ptr(), buf.len()) };
        if rc != 0 {
            return Err(io::Error::other(format!("output stream write callback returned {rc}")));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
