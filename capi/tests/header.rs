//! `include/sae_kernels.h` must be what cbindgen generates from the sources now.
//! Regenerate with `SAE_CAPI_BLESS=1 cargo test --test header`.

use std::path::Path;

#[test]
fn header_is_fresh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    let path = dir.join("include/sae_kernels.h");
    if std::env::var_os("SAE_CAPI_BLESS").is_some() {
        std::fs::write(&path, &out).unwrap();
        return;
    }
    let have = std::fs::read(&path).unwrap_or_default();
    assert!(
        have == out,
        "include/sae_kernels.h is stale: run `SAE_CAPI_BLESS=1 cargo test --test header` in capi/ and commit it"
    );
}
