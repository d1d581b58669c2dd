//! Per-connection fields (the reference's MLLPConnection), addressed by connection id.
//!
//! Every function returns `MLLP_ERR_NO_SUCH_CONNECTION` for an id that is closed or never
//! existed (ids are never reused), and `MLLP_ERR_INVALID_ARGUMENT` for a NULL pointer. All may
//! be called from any thread, including from inside callbacks.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};

use super::callbacks::mllp_release_cb;
use super::rc;
use super::server::mllp_server;
use super::stream::{mllp_read_cb, mllp_write_cb, CStream};

/// Connected: writes 1 while the connection is open.
#[no_mangle]
pub extern "C" fn mllp_connection_get_connected(server: *const mllp_server, connection_id: u64, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        // An unknown or closed id fails (as for every connection field) rather than reading 0.
        try_mllp!(s.remote_port(connection_id.into()));
        out.set(s.connected(connection_id.into()) as u8)
    }
}

/// Receiving: 1 while a message is partly received on the connection (its start block came,
/// its end block not yet), else 0; for a host draining before shutdown (wait for these, close
/// the others). `MLLP_ERR_NO_SUCH_CONNECTION` for a closed or unknown id. Any thread.
#[no_mangle]
pub extern "C" fn mllp_connection_get_receiving(server: *const mllp_server, connection_id: u64, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(try_mllp!(s.receiving(connection_id.into())) as u8)
    }
}

/// RemoteHost: the client's IP address, under the buffer rule (`*len` = capacity in, size
/// needed with the NUL out).
#[no_mangle]
pub extern "C" fn mllp_connection_get_remote_host(
    server: *const mllp_server,
    connection_id: u64,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(s.remote_host(connection_id.into())))
    }
}

/// RemotePort: the client's port.
#[no_mangle]
pub extern "C" fn mllp_connection_get_remote_port(
    server: *const mllp_server,
    connection_id: u64,
    out: *mut u16,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(try_mllp!(s.remote_port(connection_id.into())))
    }
}

/// LocalAddress: the local interface the connection arrived on, under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_connection_get_local_address(
    server: *const mllp_server,
    connection_id: u64,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(s.local_address(connection_id.into())))
    }
}

/// Timeout: seconds a synchronous Send waits (0 = asynchronous).
#[no_mangle]
pub extern "C" fn mllp_connection_get_timeout(server: *const mllp_server, connection_id: u64, out: *mut u32) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(try_mllp!(s.timeout(connection_id.into())))
    }
}

/// Sets Timeout (seconds).
#[no_mangle]
pub extern "C" fn mllp_connection_set_timeout(server: *mut mllp_server, connection_id: u64, seconds: u32) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.set_timeout(connection_id.into(), seconds))
    }
}

/// InputData: the bytes Send sends (when no input stream or file is set), under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_connection_get_input_data(
    server: *const mllp_server,
    connection_id: u64,
    buf: *mut u8,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_slice(&try_mllp!(s.input_data(connection_id.into())))
    }
}

/// Sets InputData (InputDataB): `len` bytes at `data`, copied. `data` may be NULL when `len` is 0.
#[no_mangle]
pub extern "C" fn mllp_connection_set_input_data(
    server: *mut mllp_server,
    connection_id: u64,
    data: *const u8,
    len: usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let data = try_slice!(data, len);
        rc(s.set_input_data(connection_id.into(), data))
    }
}

/// InputFileName, under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_connection_get_input_file_name(
    server: *const mllp_server,
    connection_id: u64,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(s.input_file_name(connection_id.into())))
    }
}

/// Sets InputFileName: Send reads this file ("" clears it). Copied.
#[no_mangle]
pub extern "C" fn mllp_connection_set_input_file_name(
    server: *mut mllp_server,
    connection_id: u64,
    path: *const c_char,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let path = try_str!(path);
        rc(s.set_input_file_name(connection_id.into(), path))
    }
}

/// OutputData (OutputDataB): the last message received on the connection when no output
/// stream or OutputFileName took it (empty with KeepOutputData=False), under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_connection_get_output_data(
    server: *const mllp_server,
    connection_id: u64,
    buf: *mut u8,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_slice(&try_mllp!(s.output_data(connection_id.into())))
    }
}

/// OutputFileName, under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_connection_get_output_file_name(
    server: *const mllp_server,
    connection_id: u64,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(s.output_file_name(connection_id.into())))
    }
}

/// Sets OutputFileName: each message received on the connection is written to this file
/// (replacing its content) and fsynced before it is acknowledged ("" clears it). Copied.
#[no_mangle]
pub extern "C" fn mllp_connection_set_output_file_name(
    server: *mut mllp_server,
    connection_id: u64,
    path: *const c_char,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let path = try_str!(path);
        rc(s.set_output_file_name(connection_id.into(), path))
    }
}

/// Calls `close(user)` on drop unless disarmed: ownership of a stream passes to the library
/// on every path, failures included.
struct Owned(Cell<mllp_release_cb>, *mut c_void);
impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            // SAFETY: the host's close callback for its own pointer, called exactly once.
            unsafe { f(self.1) };
        }
    }
}

/// Sets the input stream (InputStream): Send reads `read` until it returns 0 (end) and sends
/// what it read; a negative return fails the Send with `MLLP_ERR_IO`. `read` runs on the
/// thread calling Send. The library takes `user` in every case, failures included: `close`, if
/// not NULL, is called exactly once with it: after a Send when CloseStreamAfterTransfer is True
/// (the default), when the stream is replaced or the connection closes, or at once when the
/// call fails or `read` is NULL (a NULL `read` clears the stream).
#[no_mangle]
pub extern "C" fn mllp_connection_set_input_stream(
    server: *mut mllp_server,
    connection_id: u64,
    read: mllp_read_cb,
    close: mllp_release_cb,
    user: *mut c_void,
) -> c_int {
    // Outside the boundary, so that `close` runs on every path, a caught panic included.
    let owned = Owned(Cell::new(close), user);
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let stream =
            read.map(|io| Box::new(CStream { io, close: take_close(&owned), user }) as Box<dyn std::io::Read + Send>);
        rc(s.set_input_stream(connection_id.into(), stream))
    }
}

/// Sets the output stream (OutputStream): each message received is passed to `write` (0 =
/// success; anything else fails the message, which is then refused) instead of being kept in
/// OutputData or OutputFileName. `write` runs on the thread that delivers events. The library
/// takes `user` in every case, failures included: `close`, if not NULL, is called exactly once
/// with it: after a message when CloseStreamAfterTransfer is True (the default), when the
/// stream is replaced or the connection closes, or at once when the call fails or `write` is
/// NULL (a NULL `write` clears the stream).
#[no_mangle]
pub extern "C" fn mllp_connection_set_output_stream(
    server: *mut mllp_server,
    connection_id: u64,
    write: mllp_write_cb,
    close: mllp_release_cb,
    user: *mut c_void,
) -> c_int {
    // Outside the boundary, so that `close` runs on every path, a caught panic included.
    let owned = Owned(Cell::new(close), user);
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let stream =
            write.map(|io| Box::new(CStream { io, close: take_close(&owned), user }) as Box<dyn std::io::Write + Send>);
        rc(s.set_output_stream(connection_id.into(), stream))
    }
}

/// Moves the close callback from the guard into a stream (the stream now calls it).
fn take_close(owned: &Owned) -> mllp_release_cb {
    owned.0.take()
}
