//! The training step phase by phase: encoder GEMM, activation, decoder and loss,
//! backward products, the training layer, the optimizer sweep and the whole
//! `train_step`, each timed in interleaved rounds (best per-thread CPU time) and
//! printed with its share of the step and the GEMM phases as % of an FMA peak the
//! caller measured. `bench_sparse --breakdown` prints it for all its cases; `bench`
//! prints the tied dense case at (4096, 512, 4096) in its default run.

use super::{best_interleaved, normal};
use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
use sae_kernels::model::{
    Arch, Dims, ForwardOutputs, LossOptions, MAX_BLOCK_ROWS, Params, ParamsMut, Path,
    SPARSE_CROSSOVER, encode, encode_scratch_len, forward, forward_scratch_len,
    grad_batch_extra_len, grad_prepack_len, grad_scratch_len, loss_and_grad,
};
use sae_kernels::optim::{Optim, OptimConfig, Optimizer};
use sae_kernels::train::{
    DeadLatents, ModelMut, ModelRef, StepHyper, TrainOptions, loss_and_grad as train_loss_and_grad,
    train_step, train_step_workspace_len,
};
use std::hint::black_box;

/// The first line above the tables: how the phases are timed (`reps` rounds after a
/// warm-up round, as [`breakdown`] runs them).
pub fn print_header(reps: usize) {
    let rounds = if reps == 1 {
        "CPU time of 1 round after a warm-up".to_string()
    } else {
        format!("best CPU time of {reps} interleaved rounds")
    };
    println!("training step, phase by phase (cumulative timings, {rounds}, one thread)");
}

/// A model with unit-norm rows and data, so pre-activations `x·m_j` are ≈ N(0, 1).
pub struct Setup {
    pub dims: Dims,
    pub n: usize,
    pub m: Vec<f32>,
    pub x: Vec<f32>,
    /// Pre-activations without bias of the first rows, sorted (for setting densities).
    sample: Vec<f32>,
}

impl Setup {
    pub fn new(n: usize, d: usize, h: usize) -> Self {
        let dims = Dims::new(d, h).unwrap();
        let mut m = normal(h * d, 1);
        for row in m.chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let x = normal(n * d, 2);
        let rows = n.min(64);
        let zero = vec![0.0; h];
        let mut sample = vec![0.0; rows * h];
        let mut s = vec![0.0; encode_scratch_len(Arch::tied(), dims, 1)];
        let p = Params::tied(dims, &m, &zero).unwrap();
        // Only the positive half survives the ReLU; the distribution is symmetric.
        encode(p, &x[..rows * d], rows, &mut sample, &mut s).unwrap();
        sample.retain(|&v| v > 0.0);
        sample.sort_by(f32::total_cmp);
        Self {
            dims,
            n,
            m,
            x,
            sample,
        }
    }

    /// A bias giving about `density` active codes: minus the (1 − density) quantile.
    pub fn bias(&self, density: f64) -> Vec<f32> {
        // `sample` holds the positive half of a symmetric distribution.
        let k = self.sample.len() as f64;
        let q = ((1.0 - 2.0 * density) * k).clamp(0.0, k - 1.0) as usize;
        vec![-self.sample[q]; self.dims.h]
    }
}

/// The row-block size the owned `Trainer` sizes its workspace for at these shapes.
pub const TRAINER_BLOCK_ROWS: usize = MAX_BLOCK_ROWS;

/// SAELens' training options for an untied model (TopK: its AuxK and rescaling recipe).
fn saelens_options(topk: bool, d: usize) -> TrainOptions {
    if topk {
        TrainOptions::saelens_topk(d)
    } else {
        TrainOptions::default()
    }
}

/// SAELens' optimizer: Adam with gradient-norm clipping at 1, free decoder norms.
fn saelens_optim() -> OptimConfig {
    OptimConfig {
        rule: Optimizer::default(),
        max_grad_norm: Some(1.0),
        unit_norm_decoder: false,
    }
}

/// One model and batch with everything a training step needs, for the breakdown.
pub struct StepCase {
    pub name: String,
    pub arch: Arch,
    pub options: TrainOptions,
    pub optim: OptimConfig,
    pub dims: Dims,
    pub n: usize,
    pub x: Vec<f32>,
    pub params: Vec<f32>,
    pub dead: Option<Vec<bool>>,
    pub alpha: f32,
    pub path: Path,
}

impl StepCase {
    /// An untied model with SAELens' initialisation (`W_enc = W_decᵀ`, unit-norm
    /// decoder rows here) and `b_enc` set for about `density` active codes (ReLU).
    pub fn untied(
        name: &'static str,
        arch: Arch,
        n: usize,
        d: usize,
        h: usize,
        density: f64,
    ) -> Self {
        let st = Setup::new(n, d, h);
        let mut params = vec![0.0f32; arch.param_len(st.dims)];
        let b = st.bias(density);
        {
            let (we, rest) = params.split_at_mut(d * h);
            let (be, rest) = rest.split_at_mut(h);
            rest[..h * d].copy_from_slice(&st.m);
            be.copy_from_slice(&b);
            for i in 0..h {
                for j in 0..d {
                    we[j * h + i] = st.m[i * d + j];
                }
            }
        }
        let topk = matches!(arch.activation, sae_kernels::model::Activation::TopK { .. });
        Self {
            name: name.to_string(),
            arch,
            options: saelens_options(topk, d),
            optim: saelens_optim(),
            dims: st.dims,
            n,
            // With AuxK: every 10th latent dead, so that the AuxK term is exercised.
            dead: topk.then(|| (0..h).map(|i| i % 10 == 0).collect()),
            x: st.x,
            params,
            alpha: if topk { 0.0 } else { 1.0 },
            path: Path::Auto,
        }
    }

    /// The tied model at initialisation (half the codes active, so the automatic path
    /// is the dense one in every phase), Adam without clipping.
    pub fn tied_dense(n: usize, d: usize, h: usize) -> Self {
        let st = Setup::new(n, d, h);
        let mut params = st.m.clone();
        params.extend(vec![0.0; h]);
        Self {
            name: "tied, dense path".to_string(),
            arch: Arch::tied(),
            options: TrainOptions::default(),
            optim: Optimizer::default().into(),
            dims: st.dims,
            n,
            x: st.x,
            params,
            dead: None,
            alpha: 1e-3,
            path: Path::Auto,
        }
    }

    /// A trained SAELens folder (`train --out DIR`) and `n` rows of a real activation
    /// file drawn with a fixed seed, as the training run's shuffled batches are; the
    /// training options and penalty of `train`'s recipe for the architecture (standard:
    /// `--l1 1`; TopK: AuxK over no dead latent, as the folder does not record them).
    pub fn from_files(dir: &str, input: &str, n: usize, seed: u64) -> Result<Self, String> {
        use sae_kernels::model::Activation;
        let (_, sae) = sae_kernels::format::saelens::load(std::path::Path::new(dir))
            .map_err(|e| format!("--model {dir}: {e}"))?;
        let act = sae_kernels::format::npy::read_npy(std::path::Path::new(input))
            .map_err(|e| format!("--input {input}: {e}"))?;
        let (arch, dims) = (sae.arch(), sae.dims());
        if act.d != dims.d {
            return Err(format!(
                "--input has d = {}, the model d = {}",
                act.d, dims.d
            ));
        }
        let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = Vec::with_capacity(n * dims.d);
        for _ in 0..n {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = ((state >> 33) as usize) % act.rows;
            x.extend_from_slice(&act.data[r * act.d..(r + 1) * act.d]);
        }
        let topk = matches!(arch.activation, Activation::TopK { .. });
        if arch.is_tied() || !matches!(arch.activation, Activation::Relu | Activation::TopK { .. })
        {
            return Err("--model: only standard and TopK folders are supported".into());
        }
        Ok(Self {
            name: format!("{dir} on {n} rows of {input}"),
            arch,
            options: saelens_options(topk, dims.d),
            optim: saelens_optim(),
            dims,
            n,
            x,
            params: sae.as_flat().to_vec(),
            dead: topk.then(|| vec![false; dims.h]),
            alpha: if topk { 0.0 } else { 1.0 },
            path: Path::Auto,
        })
    }
}

/// Time the phases of one training step of `c` cumulatively (each measurement adds a
/// phase to the previous one; interleaved rounds, best CPU time of each) and print
/// them with the GEMM phases' share of `peak`, running the step in blocks of `rows`
/// rows.
pub fn breakdown(c: &StepCase, rows: usize, reps: usize, peak: Option<f64>) {
    let (arch, dims, n) = (c.arch, c.dims, c.n);
    let Dims { d, h } = dims;
    let p_len = arch.param_len(dims);
    let (mut grads, mut grads2) = (vec![0.0f32; p_len], vec![0.0f32; p_len]);
    let (mut codes, mut codes2) = (vec![0.0f32; n * h], vec![0.0f32; n * h]);
    let mut s_enc = vec![0.0f32; encode_scratch_len(arch, dims, rows)];
    let mut s_fwd = vec![0.0f32; forward_scratch_len(arch, dims, rows)];
    let mut s_grad = vec![0.0f32; grad_scratch_len(arch, dims, rows)];
    let track = c.dead.is_some();
    let mut s_train = vec![0.0f32; c.options.grad_scratch_len(arch, dims, rows, track)];
    let mut ws = vec![0.0f32; train_step_workspace_len(arch, c.options, dims, rows, track)];
    // What the owned Trainer adds when its budget allows: the sparse area for the whole
    // batch, and the weights packed once for the dense blocks.
    let more = grad_batch_extra_len(arch, dims, n) + grad_prepack_len(arch, dims);
    let mut s_grad_more = vec![0.0f32; s_grad.len() + more];
    let mut ws_more = vec![0.0f32; ws.len() + more];
    let mut grads3 = vec![0.0f32; p_len];
    let mut pack = vec![0.0f32; pack_len(rows, h, d)];
    let mut opt_state = vec![0.0f32; c.optim.state_len(p_len)];
    let mut step_params = c.params.clone();
    let mut opt_params = c.params.clone();
    let mut step_state = opt_state.clone();
    let mut step_params2 = c.params.clone();
    let mut step_state2 = opt_state.clone();
    let (mut since, mut flags) = (vec![0u32; h], vec![false; 2 * h]);
    let dead = c.dead.as_deref();
    let lo = LossOptions {
        path: c.path,
        ..LossOptions::alpha(c.alpha)
    };
    let mut fired = vec![false; h];
    let p = || Params::from_flat(arch, dims, &c.params).unwrap();
    // The optimizer sweep alone runs on the training layer's gradients.
    let mut opt_grads = vec![0.0f32; p_len];
    {
        let m = ModelRef {
            params: p(),
            options: c.options,
        };
        train_loss_and_grad(
            m,
            &c.x,
            n,
            c.alpha,
            dead,
            &mut opt_grads,
            None,
            &mut s_train,
        )
        .unwrap();
    }
    // One train_step on `params` with optimizer state `state` and workspace `ws`.
    let whole_step = |params: &mut [f32],
                      state: &mut [f32],
                      dl: Option<&mut DeadLatents<'_>>,
                      ws: &mut [f32]| {
        let mut o = Optim::new(c.optim, dims, p_len, state, 0).unwrap();
        let model = ModelMut {
            params: ParamsMut::from_flat(arch, dims, params).unwrap(),
            options: c.options,
        };
        let hyper = StepHyper {
            alpha: c.alpha,
            lr: 1e-9,
        };
        black_box(train_step(model, &mut o, &c.x, n, hyper, dl, ws).unwrap());
    };
    let mut l0 = 0.0f32;
    let t = best_interleaved(
        reps,
        &mut [
            // 0: the encoder GEMM alone, block by block as the step runs it.
            &mut || {
                let enc = p().encoder();
                for r0 in (0..n).step_by(rows) {
                    let r = rows.min(n - r0);
                    let a = MatRef::row_major("x", &c.x[r0 * d..(r0 + r) * d], r, d).unwrap();
                    let cm = MatMut::row_major("c", &mut codes[r0 * h..(r0 + r) * h], r, h);
                    gemm(1.0, a, enc, 0.0, cm.unwrap(), Epilogue::None, &mut pack).unwrap();
                }
                black_box(&codes[0]);
            },
            // 1: + bias and activation (TopK selection), in the same blocks as 0 (one
            // `encode` over the whole batch would pack W_enc once instead of once per
            // block, and come out faster than 0 alone).
            &mut || {
                for r0 in (0..n).step_by(rows) {
                    let r = rows.min(n - r0);
                    let (x, out) = (
                        &c.x[r0 * d..(r0 + r) * d],
                        &mut codes2[r0 * h..(r0 + r) * h],
                    );
                    encode(p(), x, r, out, &mut s_enc).unwrap();
                }
            },
            // 2: + decoder, residual and loss.
            &mut || {
                let out = ForwardOutputs::default();
                black_box(forward(p(), &c.x, n, &lo, out, &mut s_fwd).unwrap());
            },
            // 3: + the backward products (the model core's loss_and_grad).
            &mut || {
                let g = ParamsMut::from_flat(arch, dims, &mut grads).unwrap();
                l0 = loss_and_grad(p(), &c.x, n, &lo, g, &mut s_grad).unwrap().l0;
            },
            // 4: + the training layer: rescaling, AuxK, fired latents.
            &mut || {
                let m = ModelRef {
                    params: p(),
                    options: c.options,
                };
                let f = track.then_some(&mut fired[..]);
                let g = &mut grads2;
                let l = train_loss_and_grad(m, &c.x, n, c.alpha, dead, g, f, &mut s_train);
                black_box(l.unwrap());
            },
            // 5: the optimizer sweep alone (on the last gradients).
            &mut || {
                let mut o = Optim::new(c.optim, dims, p_len, &mut opt_state, 0).unwrap();
                let mut pm = ParamsMut::from_flat(arch, dims, &mut opt_params).unwrap();
                let g = Params::from_flat(arch, dims, &opt_grads).unwrap().tensors();
                o.step(&mut pm.tensors_mut(), &g, 1e-9).unwrap();
            },
            // 6: the whole step (train_step), which must be about 4 + 5.
            &mut || {
                // The same dead latents as in 4 (tracking resets them after each step).
                let mut dl = dead.map(|dm| {
                    for (s, &dd) in since.iter_mut().zip(dm) {
                        *s = if dd { u32::MAX } else { 0 };
                    }
                    DeadLatents::new(&mut since, &mut flags, 1 << 20).unwrap()
                });
                whole_step(&mut step_params, &mut step_state, dl.as_mut(), &mut ws);
            },
            // 7: 3 with the Trainer's extra scratch.
            &mut || {
                let g = ParamsMut::from_flat(arch, dims, &mut grads3).unwrap();
                black_box(loss_and_grad(p(), &c.x, n, &lo, g, &mut s_grad_more).unwrap());
            },
            // 8: 6 with the Trainer's extra scratch (no dead-latent tracking).
            &mut || whole_step(&mut step_params2, &mut step_state2, None, &mut ws_more),
        ],
    );
    let nhd = (n * d * h) as f64;
    let pct = |flop: f64, secs: f64| match peak {
        Some(pk) => format!("{:>5.1}% of peak", 100.0 * flop / secs * 1e-9 / pk),
        None => String::new(),
    };
    let dense = match c.path {
        Path::Dense => true,
        Path::Sparse => false,
        Path::Auto => f64::from(l0) > f64::from(SPARSE_CROSSOVER) * h as f64,
    };
    println!(
        "\n{} (n, d, h) = ({n}, {d}, {h}), {rows}-row blocks, L0 {l0:.1}{}: whole step {:.1} ms",
        c.name,
        match dead {
            Some(m) if m.iter().any(|&v| v) => ", AuxK with 10 % dead",
            Some(_) => ", AuxK on, no dead latent",
            None => "",
        },
        t[6] * 1e3
    );
    let row = |what: &str, secs: f64, flop: f64| {
        println!(
            "  {what:<44} {:>8.2} ms {:>5.1}% {}",
            secs * 1e3,
            100.0 * secs / t[6],
            if flop > 0.0 {
                pct(flop, secs)
            } else {
                String::new()
            }
        );
    };
    row("encoder GEMM X·W_enc", t[0], 2.0 * nhd);
    row("bias + activation / selection", t[1] - t[0], 0.0);
    row(
        if dense {
            "decoder GEMM + residual, loss"
        } else {
            "decode (sparse) + residual, loss"
        },
        t[2] - t[1],
        if dense { 2.0 * nhd } else { 0.0 },
    );
    row(
        if dense {
            "backward products (3 GEMMs), masks, biases"
        } else {
            "backward products (sparse), biases"
        },
        t[3] - t[2],
        if dense { 6.0 * nhd } else { 0.0 },
    );
    row("training layer (rescaling, AuxK, fired)", t[4] - t[3], 0.0);
    row("optimizer sweep (Adam, clipping)", t[5], 0.0);
    row("rest of train_step (checks)", t[6] - t[4] - t[5], 0.0);
    row("loss_and_grad, + Trainer's extra scratch", t[7], 0.0);
    if dead.is_none() {
        row("whole step, + Trainer's extra scratch", t[8], 0.0);
    }
    if dense {
        println!(
            "  {:<44} {:>8.2} ms        {}",
            "loss + gradients (10·n·d·h FLOP)",
            t[3] * 1e3,
            pct(10.0 * nhd, t[3])
        );
        println!(
            "  {:<44} {:>8.2} ms        {}",
            "whole step incl. optimizer (10·n·d·h FLOP)",
            t[6] * 1e3,
            pct(10.0 * nhd, t[6])
        );
        println!(
            "  {:<44} {:>8.2} ms        {}",
            "  with the Trainer's extra scratch",
            t[8] * 1e3,
            pct(10.0 * nhd, t[8])
        );
        let g = whole_batch_gemms(c, reps);
        println!(
            "  {:<44} {:>8.2} ms        {}",
            "reference: its 5 products as whole-batch GEMMs",
            g * 1e3,
            pct(10.0 * nhd, g)
        );
    }
}

/// CPU time of the dense step's five products as single whole-batch GEMMs (k = n for
/// the two weight-gradient products instead of one block's rows): `X·W_enc`,
/// `C·W_dec`, `Cᵀ·G`, `G·W_decᵀ`, `dPreᵀ·X`, on the case's shapes. The step cannot be
/// faster than these at the GEMM's own efficiency.
fn whole_batch_gemms(c: &StepCase, reps: usize) -> f64 {
    let (n, Dims { d, h }) = (c.n, c.dims);
    let p = Params::from_flat(c.arch, c.dims, &c.params).unwrap();
    let (enc, dec) = (
        p.encoder(),
        MatRef::row_major("W_dec", p.decoder(), h, d).unwrap(),
    );
    let mut pack = vec![
        0.0f32;
        pack_len(n, h, d)
            .max(pack_len(h, d, n))
            .max(pack_len(n, d, h))
    ];
    let (mut cm, mut g, mut dw) = (
        vec![0.1f32; n * h],
        vec![0.1f32; n * d],
        vec![0.0f32; h * d],
    );
    let x = &c.x;
    best_interleaved(
        reps,
        &mut [&mut || {
            let e = Epilogue::None;
            let xm = MatRef::row_major("x", x, n, d).unwrap();
            let out = MatMut::row_major("c", &mut cm, n, h).unwrap();
            gemm(1.0, xm, enc, 0.0, out, e, &mut pack).unwrap();
            let cr = MatRef::row_major("c", &cm, n, h).unwrap();
            let out = MatMut::row_major("g", &mut g, n, d).unwrap();
            gemm(1.0, cr, dec, 0.0, out, e, &mut pack).unwrap();
            let gr = MatRef::row_major("g", &g, n, d).unwrap();
            let out = MatMut::row_major("dw", &mut dw, h, d).unwrap();
            gemm(1.0, cr.t(), gr, 0.0, out, e, &mut pack).unwrap();
            let out = MatMut::row_major("c", &mut cm, n, h).unwrap();
            gemm(1.0, gr, dec.t(), 0.0, out, e, &mut pack).unwrap();
            let cr = MatRef::row_major("c", &cm, n, h).unwrap();
            let out = MatMut::row_major("dw", &mut dw, h, d).unwrap();
            gemm(1.0, cr.t(), xm, 1.0, out, e, &mut pack).unwrap();
            black_box(&dw[0]);
        }],
    )[0]
}
