//! The committed C header is what cbindgen generates from `src/ffi`: this test fails when it
//! is stale. `MLLP_UPDATE_HEADER=1 cargo test --test header` writes it instead.

use std::path::Path;

#[test]
fn committed_header_matches_the_ffi_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root.join("include/mllp.h");
    if std::env::var_os("MLLP_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/mllp.h");
        return;
    }
    let committed = std::fs::read(&path).expect("read include/mllp.h");
    if committed != fresh {
        let (old, new) = (String::from_utf8_lossy(&committed), String::from_utf8_lossy(&fresh));
        let first = old
            .lines()
            .zip(new.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(old.lines().count().min(new.lines().count()));
        let excerpt = |s: &str| s.lines().skip(first.saturating_sub(2)).take(8).collect::<Vec<_>>().join("\n");
        panic!(
            "include/mllp.h is stale (first difference at line {}):\n--- committed\n{}\n+++ generated\n{}\n\
             regenerate it with `MLLP_UPDATE_HEADER=1 cargo test --test header` and commit it",
            first + 1,
            excerpt(&old),
            excerpt(&new)
        );
    }
}
