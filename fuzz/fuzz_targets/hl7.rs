//! The MSH reader and the ACK builder against field access by splitting
//! (tests/oracles/hl7.rs).
#![no_main]

#[path = "../../tests/oracles/hl7.rs"]
mod hl7;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (msg, code, ts, ctl, text) = hl7::case_from_bytes(data);
    hl7::check(&msg, code, &ts, &ctl, text.as_deref());
});
