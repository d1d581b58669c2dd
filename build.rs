//! Gives the shared library its soname, so programs link against the ABI version, not the
//! file name. The C header is not generated here (an ordinary build never writes into the
//! source tree): `tests/header.rs` checks it, `MLLP_UPDATE_HEADER=1 cargo test --test header`
//! regenerates it.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmllp.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
