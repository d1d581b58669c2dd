//! The MLLP decoder, with framing bytes and maximum size changed mid-stream, against the
//! byte-at-a-time model of tests/oracles/framing.rs.
#![no_main]

#[path = "../../tests/oracles/framing.rs"]
mod framing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (init, ops) = framing::script_from_bytes(data);
    framing::check(init, &ops);
});
