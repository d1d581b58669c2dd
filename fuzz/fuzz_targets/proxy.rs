//! The PROXY protocol header parser, fed in pieces, against the reading of the
//! specification in tests/oracles/proxy.rs.
#![no_main]

#[path = "../../tests/oracles/proxy.rs"]
mod proxy;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (mode, input, cuts) = proxy::case_from_bytes(data);
    proxy::check(mode, &input, &cuts);
});
