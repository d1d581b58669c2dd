//! The reply queue of a connection against the model of tests/oracles/connection.rs:
//! replies leave in frame order whatever the order of the host's decisions.
#![no_main]

#[path = "../../tests/oracles/connection.rs"]
mod connection;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (mode, ops, cuts) = connection::script_from_bytes(data);
    connection::check(mode, &ops, &cuts);
});
