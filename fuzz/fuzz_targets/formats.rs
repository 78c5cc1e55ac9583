//! The file readers (`sae_kernels::format`) on arbitrary bytes.
//!
//! The first byte picks the reader:
//! - `0`: `saelens::parse_config` on the rest (a `cfg.json`);
//! - `1`: `saelens::parse_weights` on the rest (a `sae_weights.safetensors`), for one of
//!   the committed fixture configurations (picked by the second byte);
//! - `2`: `npy::read_npy` on the rest, written to a temporary file;
//! - `3`: `npz::CsrCodes::read_npz` on the rest (a SciPy CSR `.npz`, a zip archive),
//!   written to a temporary file;
//! - `4`: `Trainer::from_checkpoint` on the rest after one byte that picks the run's
//!   `TrainConfig` (SGD or Adam, with or without dead-latent tracking);
//! - `5`: `owned::load_model` on the rest, written to a temporary file.
//!
//! Asserted: no panic, no abort and no allocation beyond libFuzzer's malloc limit (the
//! readers promise to check sizes against the input before allocating); and on `Ok`
//! the result is consistent: the model has the configuration's dimensions, the
//! activations hold `rows·d` values with `rows, d ≥ 1`; the CSR codes validate and
//! survive `write_npz`/`read_npz` unchanged; a checkpoint's trainer re-serialises to
//! bytes that read back to the same trainer (same bytes again), with parameters of the
//! architecture's length; a model file has `h·d + h` parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sae_kernels::format::{npy, npz::CsrCodes, saelens};
use sae_kernels::optim::{Adam, L1Warmup, LrSchedule, OptimConfig, Optimizer};
use sae_kernels::owned::{TrainConfig, Trainer, load_model};
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

/// One scratch file per fuzzing process and extension.
fn scratch_path(ext: &str) -> PathBuf {
    let dir = std::env::var_os("FUZZ_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("sae-fuzz-{}.{ext}", std::process::id()))
}

/// `bytes` written to the scratch file with extension `ext`.
fn scratch_file(ext: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_path(ext);
    let mut f = std::fs::File::create(&path).expect("create scratch file");
    f.write_all(bytes).expect("write scratch file");
    path
}

/// The run configurations a checkpoint is read against (picked by `k`): the optimizer
/// must match the checkpoint's, the rest only sizes the trainer.
fn train_config(k: u8) -> TrainConfig {
    let rule = match k % 3 {
        0 => Optimizer::Adam(Adam::default()),
        1 => Optimizer::Sgd { momentum: 0.0 },
        _ => Optimizer::Sgd { momentum: 0.9 },
    };
    TrainConfig {
        optimizer: OptimConfig {
            rule,
            max_grad_norm: (k & 4 != 0).then_some(1.0),
            unit_norm_decoder: k & 8 != 0,
        },
        lr: LrSchedule::constant(1e-3),
        l1: L1Warmup::constant(0.1),
        batch: 1 + usize::from(k >> 5),
        dead_window_tokens: (k & 16 != 0).then_some(100),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 6 {
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
        2 => {
            let path = scratch_file("npy", rest);
            if let Ok(a) = npy::read_npy(&path) {
                assert!(a.rows >= 1 && a.d >= 1, "empty array accepted");
                assert_eq!(Some(a.data.len()), a.rows.checked_mul(a.d), "data length");
            }
        }
        3 => {
            let path = scratch_file("npz", rest);
            if let Ok(c) = CsrCodes::read_npz(&path) {
                c.validate().expect("read_npz returned invalid codes");
                let back = scratch_path("out.npz");
                c.write_npz(&back).expect("write_npz of read codes");
                let c2 = CsrCodes::read_npz(&back).expect("read_npz of written codes");
                assert_eq!(c, c2, "write_npz/read_npz round trip");
            }
        }
        4 => {
            let Some((&k, bytes)) = rest.split_first() else {
                return;
            };
            let config = train_config(k);
            if let Ok(t) = Trainer::from_checkpoint(bytes, config) {
                let sae = t.sae();
                assert_eq!(
                    sae.as_flat().len(),
                    sae.arch().param_len(sae.dims()),
                    "parameter length"
                );
                let b1 = t.checkpoint_bytes();
                let t2 = Trainer::from_checkpoint(&b1, config).expect("own checkpoint reads");
                assert_eq!(t2.steps(), t.steps(), "step count");
                assert_eq!(t2.checkpoint_bytes(), b1, "checkpoint round trip");
            }
        }
        _ => {
            let path = scratch_file("sae", rest);
            if let Ok(sae) = load_model(&path) {
                let dims = sae.dims();
                assert_eq!(
                    sae.as_flat().len(),
                    dims.h * dims.d + dims.h,
                    "model length"
                );
            }
        }
    }
});
