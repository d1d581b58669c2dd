//! Generates `include/mllp.h` from the ffi module with cbindgen.
//!
//! The header is committed; CI regenerates it and fails when it differs. Generation is skipped
//! (with a warning) when MLLP_SKIP_HEADER is set, e.g. for builds from a read-only source tree.

use std::env;
use std::path::PathBuf;

fn main() {
    // A soname, so programs link against the ABI version, not the file name.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmllp.so.0");
    }
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=MLLP_SKIP_HEADER");
    if env::var_os("MLLP_SKIP_HEADER").is_some() {
        return;
    }
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    if !crate_dir.join("src/ffi").exists() || !crate_dir.join("cbindgen.toml").exists() {
        return;
    }
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    match cbindgen::Builder::new().with_src(crate_dir.join("src/ffi/mod.rs")).with_config(config).generate() {
        Ok(bindings) => {
            bindings.write_to_file(crate_dir.join("include/mllp.h"));
        }
        Err(e) => println!("cargo:warning=header not generated: {e}"),
    }
}
