//! The batch splitter against the grammar of tests/oracles/batch.rs, on near-batches built
//! from the input and on the raw input itself.
#![no_main]

#[path = "../../tests/oracles/batch.rs"]
mod batch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    batch::check(data);
    batch::check(&batch::frame_from_bytes(data));
});
