//! The training scenario the firmware runs, shared word for word with the host.
//!
//! The firmware (`tests/train_sae.rs`) runs it on a Cortex-M4F and compares each
//! observation with `expected.rs`; the host test `tests/firmware_expected.rs` of the
//! main crate runs the same code on the host, writes `expected.rs`
//! (`FIRMWARE_EXPECTED_UPDATE=1`) or checks that the committed file still matches.
//!
//! It is `no_std` and allocation-free: every buffer comes from the caller. The data are
//! generated from integers (exact on every target); the model is initialised with
//! [`init_tied`], then trained for [`STEPS`] SGD steps and [`ADAM_STEPS`] Adam steps on
//! one batch.

use sae_kernels::{
    Error,
    model::{
        Arch, Dims, ForwardOutputs, LossOptions, LossParts, Params, ParamsMut, encode,
        encode_scratch_len, forward, forward_scratch_len, grad_scratch_len, init_tied,
        loss_and_grad,
    },
    optim::{Optim, Optimizer},
};

/// Input width.
pub const D: usize = 16;
/// Dictionary size.
pub const H: usize = 64;
/// Rows in the batch.
pub const N: usize = 16;
/// SGD steps.
pub const STEPS: usize = 3;
/// Row-block size the scratch is cut for (`N / BLOCK` blocks: block accumulation runs).
pub const BLOCK: usize = 4;
/// L1 coefficient.
pub const ALPHA: f32 = 0.02;
/// Learning rate.
pub const LR: f32 = 0.05;
/// Adam steps after the SGD steps (PyTorch defaults for β1, β2, ε).
pub const ADAM_STEPS: usize = 2;
/// Adam's learning rate.
pub const ADAM_LR: f32 = 0.01;
/// Adam's state: two moments per parameter.
pub const STATE_LEN: usize = Optimizer::Adam(sae_kernels::optim::Adam {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
})
.state_len(Arch::tied().param_len(Dims { d: D, h: H }));
/// Seed of [`init_tied`].
pub const SEED: u64 = 2026;
/// Length of the caller's scratch buffer: the largest of the scenario's operations,
/// computed at compile time by the `const fn` size queries (the scenario checks it
/// against the run-time queries).
pub const SCRATCH_LEN: usize = {
    let dims = Dims { d: D, h: H };
    let grad = grad_scratch_len(Arch::tied(), dims, BLOCK);
    let fwd = forward_scratch_len(Arch::tied(), dims, BLOCK);
    let enc = encode_scratch_len(Arch::tied(), dims, N);
    let max = if grad > fwd { grad } else { fwd };
    if max > enc { max } else { enc }
};

/// Observations compared with the host's (`Check`) or only used by the host test
/// (`Trace`: the parameters before each evaluation, for the ReLU-margin check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Compared with `expected.rs` on the device.
    Check,
    /// Not stored; the host test uses it.
    Trace,
}

/// The caller's buffers.
pub struct Buffers<'a> {
    /// `H×D` dictionary.
    pub m: &'a mut [f32],
    /// `H` bias.
    pub b: &'a mut [f32],
    /// `N×D` batch.
    pub x: &'a mut [f32],
    /// `N×H` codes.
    pub codes: &'a mut [f32],
    /// `N×D` reconstruction.
    pub recon: &'a mut [f32],
    /// `H×D` gradient of `M`.
    pub gm: &'a mut [f32],
    /// `H` gradient of `b`.
    pub gb: &'a mut [f32],
    /// [`SCRATCH_LEN`] scratch.
    pub scratch: &'a mut [f32],
    /// [`STATE_LEN`] optimizer state (zeroed).
    pub state: &'a mut [f32],
}

fn parts(l: LossParts) -> [f32; 4] {
    [l.loss, l.sq_err, l.l1, l.l0]
}

/// A 64-bit LCG (Knuth's MMIX constants); the top 24 bits give exact `f32` values.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 40
    }
    /// Uniform in `[-1, 1)` with a 2⁻²³ grid (exact).
    fn uniform(&mut self) -> f32 {
        self.next() as f32 * (1.0 / 8_388_608.0) - 1.0
    }
}

/// The batch: each row is a sparse mix of 3 of 8 fixed directions plus small noise.
pub fn make_data(x: &mut [f32]) {
    let mut rng = Lcg(0x5AE_F1A5);
    let mut dirs = [[0.0f32; D]; 8];
    for dir in dirs.iter_mut() {
        for v in dir.iter_mut() {
            *v = rng.uniform();
        }
    }
    for row in x.chunks_exact_mut(D) {
        for v in row.iter_mut() {
            *v = 0.05 * rng.uniform();
        }
        for _ in 0..3 {
            let k = (rng.next() % 8) as usize;
            let a = 0.5 + 0.5 * rng.uniform().abs();
            for (v, &g) in row.iter_mut().zip(&dirs[k]) {
                *v += a * g;
            }
        }
    }
}

/// Receives each observation: `(kind, name, step, values)`.
pub type Observer<'a> = dyn FnMut(Kind, &'static str, usize, &[f32]) + 'a;

/// Run the scenario, reporting each observation as `(kind, name, step, values)`.
///
/// # Errors
/// Any error of the library (none is expected).
pub fn run(buf: Buffers<'_>, observe: &mut Observer<'_>) -> Result<(), Error> {
    let dims = Dims::new(D, H)?;
    let params = Arch::tied().param_len(dims);
    let grad_len = grad_scratch_len(Arch::tied(), dims, BLOCK);
    let fwd_len = forward_scratch_len(Arch::tied(), dims, BLOCK);
    let enc_len = encode_scratch_len(Arch::tied(), dims, N);
    assert_eq!(
        grad_len.max(fwd_len).max(enc_len),
        SCRATCH_LEN,
        "compile-time and run-time scratch sizes differ"
    );
    let Buffers {
        m,
        b,
        x,
        codes,
        recon,
        gm,
        gb,
        scratch,
        state,
    } = buf;

    make_data(x);
    observe(Kind::Check, "x", 0, x);
    init_tied(ParamsMut::tied(dims, m, b)?, SEED);
    // Summary of the initial dictionary: Σm, Σm², first and last entry.
    let (s1, s2) = m
        .iter()
        .fold((0.0f32, 0.0f32), |(a, q), &v| (a + v, q + v * v));
    observe(Kind::Check, "init.m", 0, &[s1, s2, m[0], m[H * D - 1]]);

    for step in 0..STEPS {
        observe(Kind::Trace, "m", step, m);
        observe(Kind::Trace, "b", step, b);
        let p = Params::tied(dims, m, b)?;
        if step == 0 {
            let out = ForwardOutputs {
                codes: Some(&mut *codes),
                recon: Some(&mut *recon),
                ..Default::default()
            };
            let l = forward(
                p,
                x,
                N,
                &LossOptions::alpha(ALPHA),
                out,
                &mut scratch[..fwd_len],
            )?;
            observe(Kind::Check, "forward.loss", step, &parts(l));
            observe(Kind::Check, "forward.codes", step, codes);
            observe(Kind::Check, "forward.recon", step, recon);
        }
        let g = ParamsMut::tied(dims, gm, gb)?;
        let l = loss_and_grad(
            p,
            x,
            N,
            &LossOptions::alpha(ALPHA),
            g,
            &mut scratch[..grad_len],
        )?;
        observe(Kind::Check, "grad.loss", step, &parts(l));
        if step == 0 {
            observe(Kind::Check, "grad.m", step, gm);
            observe(Kind::Check, "grad.b", step, gb);
        }
        // Plain SGD: the optimizer with momentum 0 needs no state.
        let mut sgd = Optim::new(Optimizer::Sgd { momentum: 0.0 }, dims, params, &mut [], 0)?;
        sgd.step(
            &mut ParamsMut::tied(dims, m, b)?.tensors_mut(),
            &Params::tied(dims, gm, gb)?.tensors(),
            LR,
        )?;
    }

    observe(Kind::Trace, "m", STEPS, m);
    observe(Kind::Trace, "b", STEPS, b);
    observe(Kind::Check, "trained.m", STEPS, m);
    observe(Kind::Check, "trained.b", STEPS, b);
    let p = Params::tied(dims, m, b)?;
    let l = forward(
        p,
        x,
        N,
        &LossOptions::alpha(ALPHA),
        ForwardOutputs::default(),
        &mut scratch[..fwd_len],
    )?;
    observe(Kind::Check, "trained.loss", STEPS, &parts(l));
    encode(p, x, N, codes, &mut scratch[..enc_len])?;
    // Summary of the trained codes from `encode`: their sum and how many are active.
    let active = codes.iter().filter(|&&c| c > 0.0).count() as f32;
    observe(
        Kind::Check,
        "trained.codes",
        STEPS,
        &[codes.iter().sum::<f32>(), active],
    );

    // Then Adam, its moments in the caller's `state`.
    state.fill(0.0);
    let n_params = Arch::tied().param_len(dims);
    let mut opt = Optim::new(
        Optimizer::Adam(Default::default()),
        dims,
        n_params,
        state,
        0,
    )?;
    for k in 0..ADAM_STEPS {
        if k > 0 {
            observe(Kind::Trace, "m", STEPS + k, m);
            observe(Kind::Trace, "b", STEPS + k, b);
        }
        let p = Params::tied(dims, m, b)?;
        let g = ParamsMut::tied(dims, gm, gb)?;
        let l = loss_and_grad(
            p,
            x,
            N,
            &LossOptions::alpha(ALPHA),
            g,
            &mut scratch[..grad_len],
        )?;
        observe(Kind::Check, "adam.loss", k, &parts(l));
        opt.step(
            &mut ParamsMut::tied(dims, m, b)?.tensors_mut(),
            &Params::tied(dims, gm, gb)?.tensors(),
            ADAM_LR,
        )?;
    }
    observe(Kind::Trace, "m", STEPS + ADAM_STEPS, m);
    observe(Kind::Trace, "b", STEPS + ADAM_STEPS, b);
    observe(Kind::Check, "adam.m", ADAM_STEPS, m);
    observe(Kind::Check, "adam.b", ADAM_STEPS, b);
    let p = Params::tied(dims, m, b)?;
    let l = forward(
        p,
        x,
        N,
        &LossOptions::alpha(ALPHA),
        ForwardOutputs::default(),
        &mut scratch[..fwd_len],
    )?;
    observe(Kind::Check, "adam.final_loss", ADAM_STEPS, &parts(l));
    Ok(())
}

/// Norm-wise relative error `max|a − e| / max|e|` (absolute if `e` is all zero).
#[must_use]
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |s, v| s.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f32, |s, (a, e)| s.max((a - e).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

/// The bound each observation must meet on the device, relative to the host's value
/// (norm-wise, see [`rel_err`]).
///
/// The data are exact on every target, and `init_tied` is software `f64` on both, so
/// `x` and the initial dictionary must agree exactly. After that the host and the
/// Cortex-M4F differ only in rounding: the host may fuse multiply-adds or use another
/// GEMM tile (different summation order), the M4F multiplies then adds. Sums here have
/// at most 64 terms, about 1e-6 relative in the worst case; training for three steps
/// grows that a little. The host test checks that no pre-activation is within 1e-4 of
/// zero, so no ReLU decision (and no L0 count) can flip.
#[must_use]
pub fn tolerance(name: &str) -> f32 {
    match name {
        "x" | "init.m" => 0.0,
        "forward.loss" | "forward.codes" | "forward.recon" | "grad.m" | "grad.b" => 1e-5,
        _ => 5e-5,
    }
}
