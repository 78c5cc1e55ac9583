//! The file readers (`sae_kernels::format`) on arbitrary bytes.
//!
//! The first byte picks the reader:
//! - `0`: `saelens::parse_config` on the rest (a `cfg.json`);
//! - `1`: `saelens::parse_weights` on the rest (a `sae_weights.safetensors`), for one of
//!   the committed fixture configurations (picked by the second byte);
//! - `2`: `npy::read_npy` on the rest, written to a temporary file.
//!
//! Asserted: no panic, no abort and no allocation beyond libFuzzer's malloc limit (the
//! readers promise to check sizes against the input before allocating); and on `Ok`
//! the result is consistent: the model has the configuration's dimensions, the
//! activations hold `rows·d` values with `rows, d ≥ 1`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sae_kernels::format::{npy, saelens};
use std::io::Write;
use std::path::PathBuf;

const CONFIGS: &[&[u8]] = &[
    include_bytes!("../../tests/fixtures/saelens/standard/cfg.json"),
    include_bytes!("../../tests/fixtures/saelens/topk/cfg.json"),
    include_bytes!("../../tests/fixtures/saelens/jumprelu/cfg.json"),
    include_bytes!("../../tests/fixtures/saelens/standard_bf16/cfg.json"),
    include_bytes!("../../tests/fixtures/saelens/jumprelu_f16/cfg.json"),
    include_bytes!("../../tests/fixtures/saelens/prev6_topk/cfg.json"),
];

/// One scratch file per fuzzing process.
fn npy_path() -> PathBuf {
    let dir = std::env::var_os("FUZZ_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("sae-fuzz-{}.npy", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(cfg) = saelens::parse_config(rest) {
                assert!(cfg.d_in >= 1 && cfg.d_sae >= 1, "zero dimension accepted");
            }
        }
        1 => {
            let Some((&k, bytes)) = rest.split_first() else {
                return;
            };
            let cfg = saelens::parse_config(CONFIGS[usize::from(k) % CONFIGS.len()])
                .expect("committed fixture configurations parse");
            if let Ok(sae) = saelens::parse_weights(&cfg, bytes) {
                let dims = sae.dims();
                assert_eq!((dims.d, dims.h), (cfg.d_in, cfg.d_sae), "model dimensions");
            }
        }
        _ => {
            let path = npy_path();
            let mut f = std::fs::File::create(&path).expect("create scratch file");
            f.write_all(rest).expect("write scratch file");
            drop(f);
            if let Ok(a) = npy::read_npy(&path) {
                assert!(a.rows >= 1 && a.d >= 1, "empty array accepted");
                assert_eq!(Some(a.data.len()), a.rows.checked_mul(a.d), "data length");
            }
        }
    }
});
