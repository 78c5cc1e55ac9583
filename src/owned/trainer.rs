//! An owned trainer (model + optimizer + workspace), minibatch sources, held-out
//! evaluation, checkpoints and a progress bar.

use crate::error::{Error, Result};
use crate::format::alloc::{try_with_capacity, try_zeroed_f32};
use crate::metrics::{Metrics, Summary, eval_scratch_len, evaluate, metrics_state_len};
use crate::model::{
    Activation, Arch, DEFAULT_BLOCK_ROWS, Dims, LossParts, MAX_BLOCK_ROWS, Penalty, Weights,
    grad_batch_extra_len, grad_prepack_len,
};
use crate::optim::{Adam, L1Warmup, LrSchedule, Optim, OptimConfig, Optimizer};
use crate::owned::Sae;
use crate::toy::{ToyConfig, toy_init, toy_rng, toy_sample};
use crate::train::{
    AuxKConfig, DeadLatents, ModelMut, ModelRef, StepHyper, TrainOptions, train_step,
    train_step_workspace_len,
};
use rand_core::{Rng, SeedableRng};
use std::path::Path;
use std::{vec, vec::Vec};

/// What a [`Trainer`] does each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// The update rule (e.g. Adam, β = (0.9, 0.999), ε = 1e-8), gradient clipping and
    /// decoder constraint.
    pub optimizer: OptimConfig,
    /// Learning rate as a function of the step.
    pub lr: LrSchedule,
    /// L1 coefficient as a function of the step.
    pub l1: L1Warmup,
    /// Rows per minibatch (`≥ 1`).
    pub batch: usize,
    /// Track dead latents with this window in tokens ([`DeadLatents`]; SAELens:
    /// 1000 steps = `1000·batch` tokens). Needed for the AuxK loss; `None` = no
    /// tracking (and no AuxK).
    pub dead_window_tokens: Option<u64>,
}

/// A source of minibatches. Batch `step` must be a pure function of the source's
/// construction and `step`, so that a resumed run sees the same data.
pub trait BatchSource {
    /// Input width.
    fn d(&self) -> usize;
    /// Write minibatch number `step` (`out.len() / d` rows) into `out`.
    ///
    /// # Errors
    /// Implementation-defined.
    fn fill(&mut self, step: u64, out: &mut [f32]) -> Result<()>;
}

/// Minibatches from an in-memory `rows×d` array, shuffled with a seed: epoch `e` is a
/// Fisher–Yates permutation drawn from PCG-64 seeded with `seed + e`; each epoch yields
/// `rows / batch` full batches (the remainder of the permutation is skipped).
#[derive(Debug)]
pub struct ArrayBatches {
    data: Vec<f32>,
    d: usize,
    rows: usize,
    batch: usize,
    seed: u64,
    perm: Vec<usize>,
    epoch: Option<u64>,
}

impl ArrayBatches {
    /// Batches of `batch` rows from `data` (`rows×d`, `rows ≥ batch`).
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `d` or `batch` if zero, or `rows` if fewer rows than
    /// `batch`; [`Error::Length`] naming `data` if its length is not a multiple of `d`.
    pub fn new(data: Vec<f32>, d: usize, batch: usize, seed: u64) -> Result<Self> {
        crate::error::check_nonzero("d", d)?;
        crate::error::check_nonzero("batch", batch)?;
        if !data.len().is_multiple_of(d) {
            return Err(Error::Length {
                arg: "data",
                expected: data.len() / d * d,
                got: data.len(),
            });
        }
        let rows = data.len() / d;
        if rows < batch {
            return Err(Error::Dimension {
                arg: "rows",
                expected: batch,
                got: rows,
            });
        }
        Ok(Self {
            data,
            d,
            rows,
            batch,
            seed,
            perm: (0..rows).collect(),
            epoch: None,
        })
    }
}

impl BatchSource for ArrayBatches {
    fn d(&self) -> usize {
        self.d
    }

    fn fill(&mut self, step: u64, out: &mut [f32]) -> Result<()> {
        let d = self.d;
        crate::error::check_len("out", out.len(), self.batch * d)?;
        let per_epoch = (self.rows / self.batch) as u64;
        let epoch = step / per_epoch;
        if self.epoch != Some(epoch) {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(self.seed.wrapping_add(epoch));
            for (i, p) in self.perm.iter_mut().enumerate() {
                *p = i;
            }
            for i in (1..self.rows).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                self.perm.swap(i, j);
            }
            self.epoch = Some(epoch);
        }
        let start = (step % per_epoch) as usize * self.batch;
        for (r, o) in out.chunks_exact_mut(d).enumerate() {
            let src = self.perm[start + r];
            o.copy_from_slice(&self.data[src * d..(src + 1) * d]);
        }
        Ok(())
    }
}

/// An endless stream of toy-benchmark samples ([`crate::toy`]): the ground truth is
/// drawn from `seed`; batch `step` is drawn from a generator seeded with
/// `(seed, step)`, so any batch can be regenerated.
#[derive(Clone, Debug)]
pub struct ToyBatches {
    /// The benchmark's shape.
    pub config: ToyConfig,
    /// Ground-truth directions, `g×d`.
    pub features: Vec<f32>,
    /// Firing probabilities, `g`.
    pub probs: Vec<f32>,
    seed: u64,
}

impl ToyBatches {
    /// Draw a benchmark's ground truth.
    ///
    /// # Errors
    /// As [`toy_init`].
    pub fn new(config: ToyConfig, seed: u64) -> Result<Self> {
        let mut features = try_zeroed_f32(config.g.saturating_mul(config.d), "features")?;
        let mut probs = try_zeroed_f32(config.g, "probs")?;
        toy_init(&config, seed, &mut features, &mut probs)?;
        Ok(Self {
            config,
            features,
            probs,
            seed,
        })
    }

    /// `n` samples (`n×d`) from a generator seeded with `seed` (use a seed the
    /// training stream does not, e.g. for a held-out set).
    ///
    /// # Errors
    /// As [`toy_sample`].
    pub fn sample(&self, n: usize, seed: u64) -> Result<Vec<f32>> {
        let mut x = try_zeroed_f32(n.saturating_mul(self.config.d), "x")?;
        let mut rng = toy_rng(seed);
        toy_sample(
            &self.config,
            &self.features,
            &self.probs,
            &mut rng,
            &mut x,
            n,
            None,
        )?;
        Ok(x)
    }
}

impl BatchSource for ToyBatches {
    fn d(&self) -> usize {
        self.config.d
    }

    fn fill(&mut self, step: u64, out: &mut [f32]) -> Result<()> {
        let n = out.len() / self.config.d;
        let mut rng = toy_rng(
            self.seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(step.wrapping_add(1)),
        );
        toy_sample(
            &self.config,
            &self.features,
            &self.probs,
            &mut rng,
            out,
            n,
            None,
        )
    }
}

/// The model as SAELens would save it, from a model trained with `options`: a tied
/// model as its untied equivalent ([`Sae::to_untied`]); a model trained with
/// `rescale_acts_by_decoder_norm` with the decoder norms folded into the encoder
/// (SAELens' `_fold_norm_topk`: `W_enc[:, i] ·= n_i`, `b_enc_i ·= n_i`,
/// `W_dec,i /= n_i`), which gives the same codes and reconstructions with plain TopK.
///
/// # Errors
/// As [`TrainOptions::validate`].
pub fn inference_model(sae: &Sae, options: TrainOptions) -> Result<Sae> {
    options.validate(sae.arch())?;
    if !options.rescale_acts_by_decoder_norm {
        return Ok(sae.to_untied());
    }
    let dims = sae.dims();
    let mut eff = vec![0.0f32; options.effective_len(dims)];
    let (p, _) = crate::train::effective(sae.params(), options, &mut eff)?;
    Ok(Sae::from_params(p))
}

/// A model with its optimizer state, dead-latent counters and workspace: everything
/// training needs, for every architecture.
///
/// Steps are [`train_step`]s: transactional, so a batch with a NaN returns `Err` and
/// leaves the model, optimizer and counters untouched.
#[derive(Clone, Debug)]
pub struct Trainer {
    sae: Sae,
    options: TrainOptions,
    config: TrainConfig,
    opt_state: Vec<f32>,
    steps: u64,
    since: Vec<u32>,
    flags: Vec<bool>,
    workspace: Vec<f32>,
    batch_buf: Vec<f32>,
    eval_scratch: Vec<f32>,
}

/// Allocate `n` zeroed values, or [`Error::Alloc`] naming the buffer (never an abort).
fn try_zeroed<T: Clone + Default>(n: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, what)?;
    v.resize(n, T::default());
    Ok(v)
}

/// The row blocks a [`Trainer`] sizes its workspace for: the largest (up to
/// [`MAX_BLOCK_ROWS`]) whose workspace stays within [`TRAINER_WORKSPACE_BUDGET`] `f32`,
/// at least [`DEFAULT_BLOCK_ROWS`]. Larger blocks let the encoder GEMM pack the weights
/// fewer times per batch and the sparse path group more rows per feature (measured with
/// `bench_sparse --breakdown --rows N`: TopK k = 32 at (1024, 384, 3072), 256-row blocks
/// take about 0.7× the step time of 64-row blocks).
fn trainer_block_rows(len: impl Fn(usize) -> usize) -> usize {
    let mut rows = MAX_BLOCK_ROWS;
    while rows > DEFAULT_BLOCK_ROWS && len(rows) > TRAINER_WORKSPACE_BUDGET {
        rows /= 2;
    }
    rows.max(DEFAULT_BLOCK_ROWS)
}

/// A [`Trainer`]'s workspace: [`train_step_workspace_len`] plus, within
/// [`TRAINER_WORKSPACE_BUDGET`], [`grad_batch_extra_len`] for its batch size, so that
/// the sparse path keeps a whole batch in one super-block up to the crossover density
/// (the area grows only once the row blocks are the largest, which they are within the
/// budget), and then [`grad_prepack_len`] if that fits too, so that dense steps pack
/// the weights once instead of once per row block.
fn trainer_workspace_len(
    arch: Arch,
    options: TrainOptions,
    dims: Dims,
    rows: usize,
    track: bool,
    batch: usize,
) -> usize {
    let base = train_step_workspace_len(arch, options, dims, rows, track);
    let extra =
        grad_batch_extra_len(arch, dims, batch).min(TRAINER_WORKSPACE_BUDGET.saturating_sub(base));
    let with_area = base.saturating_add(extra);
    // Room for the weights packed once per step, when the whole area fits too.
    let packed = with_area.saturating_add(grad_prepack_len(arch, dims));
    if extra == grad_batch_extra_len(arch, dims, batch) && packed <= TRAINER_WORKSPACE_BUDGET {
        packed
    } else {
        with_area
    }
}

/// The workspace (`f32`) above which a [`Trainer`] takes smaller row blocks: 64 MiB.
const TRAINER_WORKSPACE_BUDGET: usize = 16 << 20;

impl Trainer {
    /// A trainer for `sae` (any architecture)
    /// with training `options`, a fresh optimizer and fresh dead-latent counters.
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `batch` if zero; as [`OptimConfig::validate`] and
    /// [`TrainOptions::validate`]; [`Error::Alloc`] (never an abort) if the optimizer state,
    /// workspace or batch buffer does not fit in memory.
    pub fn new(sae: impl Into<Sae>, options: TrainOptions, config: TrainConfig) -> Result<Self> {
        let sae = sae.into();
        crate::error::check_nonzero("batch", config.batch)?;
        config.optimizer.validate()?;
        options.validate(sae.arch())?;
        let dims = sae.dims();
        let arch = sae.arch();
        let track = config.dead_window_tokens.is_some();
        let rows = trainer_block_rows(|r| train_step_workspace_len(arch, options, dims, r, track));
        Ok(Self {
            opt_state: try_zeroed(
                config.optimizer.state_len(arch.param_len(dims)),
                "optimizer state",
            )?,
            steps: 0,
            since: try_zeroed(if track { dims.h } else { 0 }, "dead counters")?,
            flags: try_zeroed(if track { 2 * dims.h } else { 0 }, "dead counters")?,
            workspace: try_zeroed(
                trainer_workspace_len(arch, options, dims, rows, track, config.batch),
                "workspace",
            )?,
            batch_buf: try_zeroed(crate::error::mul("batch", config.batch, dims.d)?, "batch")?,
            eval_scratch: try_zeroed(eval_scratch_len(arch, options, dims, rows), "eval scratch")?,
            sae,
            options,
            config,
        })
    }

    /// The model (as trained: see [`inference_model`] for the one to save).
    #[must_use]
    pub fn sae(&self) -> &Sae {
        &self.sae
    }

    /// The training options.
    #[must_use]
    pub fn options(&self) -> TrainOptions {
        self.options
    }

    /// The model as SAELens would save it ([`inference_model`]).
    ///
    /// # Errors
    /// As [`inference_model`].
    pub fn inference_model(&self) -> Result<Sae> {
        inference_model(&self.sae, self.options)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Successful steps so far.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Fraction of latents dead by the training-time rule ([`DeadLatents`]), or `None`
    /// without tracking.
    #[must_use]
    pub fn dead_fraction(&self) -> Option<f64> {
        let w = self.config.dead_window_tokens?;
        let h = self.since.len().max(1);
        Some(self.since.iter().filter(|&&c| u64::from(c) > w).count() as f64 / h as f64)
    }

    /// One step on `n` rows of `x` (`n×d`) with this step's learning rate and
    /// sparsity coefficient; returns the loss parts before the update.
    ///
    /// # Errors
    /// As [`train_step`].
    pub fn step(&mut self, x: &[f32], n: usize) -> Result<LossParts> {
        let dims = self.sae.dims();
        let arch = self.sae.arch();
        let hyper = StepHyper {
            alpha: self.config.l1.alpha(self.steps),
            lr: self.config.lr.lr(self.steps),
        };
        let mut optim = Optim::new(
            self.config.optimizer,
            dims,
            arch.param_len(dims),
            &mut self.opt_state,
            self.steps,
        )?;
        let mut dead = match self.config.dead_window_tokens {
            Some(w) => Some(DeadLatents::new(&mut self.since, &mut self.flags, w)?),
            None => None,
        };
        let parts = train_step(
            ModelMut {
                params: self.sae.params_mut(),
                options: self.options,
            },
            &mut optim,
            x,
            n,
            hyper,
            dead.as_mut(),
            &mut self.workspace,
        )?;
        self.steps = optim.steps();
        Ok(parts)
    }

    /// One step on the source's minibatch number [`Trainer::steps`].
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `source.d` if the source's width differs from the
    /// model's; as [`BatchSource::fill`] and [`Trainer::step`].
    pub fn step_from(&mut self, source: &mut dyn BatchSource) -> Result<LossParts> {
        let d = self.sae.dims().d;
        if source.d() != d {
            return Err(Error::Dimension {
                arg: "source.d",
                expected: d,
                got: source.d(),
            });
        }
        let mut buf = core::mem::take(&mut self.batch_buf);
        let res = source
            .fill(self.steps, &mut buf)
            .and_then(|()| self.step(&buf, self.config.batch));
        self.batch_buf = buf;
        res
    }

    /// Metrics of the current model on `n` rows of `x` (`n×d`); the dead fraction is
    /// over all `n` rows. Also returns the per-feature activation counts (`h`).
    ///
    /// # Errors
    /// As [`evaluate`].
    pub fn evaluate(&mut self, x: &[f32], n: usize) -> Result<(Summary, Vec<f64>)> {
        let dims = self.sae.dims();
        let mut state = try_zeroed::<f64>(metrics_state_len(dims), "metrics")?;
        let mut m = Metrics::new(dims, &mut state)?;
        let model = ModelRef {
            params: self.sae.params(),
            options: self.options,
        };
        evaluate(model, x, n, &mut m, &mut self.eval_scratch)?;
        Ok((m.summary(n as u64), m.feature_counts().to_vec()))
    }

    /// Serialise the model, architecture, training options, optimizer state,
    /// dead-latent counters and step count (format below).
    ///
    /// ## Checkpoint format (version 3, little-endian)
    /// `b"SAEKCKPT"`, `u32` version = 3, `u64` d, `u64` h, `u64` steps;
    /// the architecture: `u8` weights (0 tied, 1 untied, 2 untied with input
    /// centring), `u8` activation (0 ReLU, 1 TopK, 2 JumpReLU), `u64` k, `u8` penalty
    /// (0 none, 1 L1, 2 decoder-norm L1, 3 L0); the options: `u8`
    /// rescale_acts_by_decoder_norm, `u8` AuxK present, `u64` k_aux, `f32` coefficient,
    /// `f32` jumprelu_bandwidth;
    /// the optimizer: `u32` kind (0 = SGD, 1 = Adam), three `f32` (SGD: momentum, 0, 0;
    /// Adam: β1, β2, ε), `f32` max_grad_norm (NaN = none), `u8` unit_norm_decoder;
    /// `u64` length of the optimizer state; `u64` number of dead counters (0 or h);
    /// then the `f32`s of every tensor in canonical order, the optimizer state, and the
    /// `u32` dead counters. The schedules, batch size and dead window are not stored:
    /// resume with the same [`TrainConfig`].
    #[must_use]
    pub fn checkpoint_bytes(&self) -> Vec<u8> {
        let dims = self.sae.dims();
        let arch = self.sae.arch();
        let mut out = Vec::new();
        out.extend_from_slice(CKPT_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        for v in [dims.d as u64, dims.h as u64, self.steps] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(match arch.weights {
            Weights::Tied => 0,
            Weights::Untied {
                center_input: false,
            } => 1,
            Weights::Untied { center_input: true } => 2,
        });
        let (act, k) = match arch.activation {
            Activation::Relu => (0u8, 0u64),
            Activation::TopK { k } => (1, k as u64),
            Activation::JumpRelu => (2, 0),
        };
        out.push(act);
        out.extend_from_slice(&k.to_le_bytes());
        out.push(match arch.penalty {
            Penalty::None => 0,
            Penalty::L1 => 1,
            Penalty::DecoderNormL1 => 2,
            Penalty::L0 => 3,
        });
        let o = self.options;
        out.push(u8::from(o.rescale_acts_by_decoder_norm));
        out.push(u8::from(o.aux.is_some()));
        let (ka, c) = o
            .aux
            .map_or((0u64, 0.0f32), |a| (a.k_aux as u64, a.coefficient));
        out.extend_from_slice(&ka.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&o.jumprelu_bandwidth.to_le_bytes());
        let oc = self.config.optimizer;
        let (kind, a, b, c) = match oc.rule {
            Optimizer::Sgd { momentum } => (0u32, momentum, 0.0, 0.0),
            Optimizer::Adam(x) => (1u32, x.beta1, x.beta2, x.eps),
        };
        out.extend_from_slice(&kind.to_le_bytes());
        for v in [a, b, c, oc.max_grad_norm.unwrap_or(f32::NAN)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(u8::from(oc.unit_norm_decoder));
        out.extend_from_slice(&(self.opt_state.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.since.len() as u64).to_le_bytes());
        for v in self.sae.as_flat() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.opt_state {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.since {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Rebuild a trainer from [`Trainer::checkpoint_bytes`] and the run's config.
    /// Continuing it gives bit-for-bit the same parameters as never having stopped
    /// (same build, same batches).
    ///
    /// # Errors
    /// [`Error::File`] naming `checkpoint` if the bytes are not a version-3 (or the
    /// earlier version-2, read with a JumpReLU bandwidth of 0) checkpoint, are truncated, or their optimizer or dead tracking differs from
    /// `config`'s.
    pub fn from_checkpoint(bytes: &[u8], config: TrainConfig) -> Result<Self> {
        let bad = |what| Error::File {
            arg: "checkpoint",
            what,
        };
        let mut r = Reader {
            b: bytes,
            arg: "checkpoint",
        };
        if r.take(8)? != CKPT_MAGIC {
            return Err(bad("not a sae-kernels checkpoint (bad magic)"));
        }
        // Version 2 (before JumpReLU training) is version 3 without the bandwidth.
        let version = r.u32()?;
        if version != 2 && version != 3 {
            return Err(bad("unsupported checkpoint version"));
        }
        let d = r.usize()?;
        let h = r.usize()?;
        let steps = r.u64()?;
        let dims = Dims::new(d, h).map_err(|_| bad("zero or overflowing dimensions"))?;
        let weights = match r.u8()? {
            0 => Weights::Tied,
            1 => Weights::Untied {
                center_input: false,
            },
            2 => Weights::Untied { center_input: true },
            _ => return Err(bad("unknown weights layout")),
        };
        let (act, k) = (r.u8()?, r.usize()?);
        let activation = match act {
            0 => Activation::Relu,
            1 => Activation::TopK { k },
            2 => Activation::JumpRelu,
            _ => return Err(bad("unknown activation")),
        };
        let penalty = match r.u8()? {
            0 => Penalty::None,
            1 => Penalty::L1,
            2 => Penalty::DecoderNormL1,
            3 => Penalty::L0,
            _ => return Err(bad("unknown penalty")),
        };
        let arch = Arch {
            weights,
            activation,
            penalty,
        };
        let rescale = r.u8()? != 0;
        let has_aux = r.u8()? != 0;
        let k_aux = r.usize()?;
        let coefficient = r.f32()?;
        let jumprelu_bandwidth = if version >= 3 { r.f32()? } else { 0.0 };
        let options = TrainOptions {
            rescale_acts_by_decoder_norm: rescale,
            aux: has_aux.then_some(AuxKConfig { k_aux, coefficient }),
            jumprelu_bandwidth,
        };
        options
            .validate(arch)
            .map_err(|_| bad("invalid architecture or options"))?;
        let kind = r.u32()?;
        let (a, b, c, clip) = (r.f32()?, r.f32()?, r.f32()?, r.f32()?);
        let unit = r.u8()? != 0;
        let rule = match kind {
            0 => Optimizer::Sgd { momentum: a },
            1 => Optimizer::Adam(Adam {
                beta1: a,
                beta2: b,
                eps: c,
            }),
            _ => return Err(bad("unknown optimizer kind")),
        };
        let opt = OptimConfig {
            rule,
            max_grad_norm: (!clip.is_nan()).then_some(clip),
            unit_norm_decoder: unit,
        };
        if opt != config.optimizer {
            return Err(bad("optimizer differs from the config's"));
        }
        let n_state = r.usize()?;
        if n_state != opt.state_len(arch.param_len(dims)) {
            return Err(bad("optimizer state length does not match the dimensions"));
        }
        let n_dead = r.usize()?;
        let want_dead = if config.dead_window_tokens.is_some() {
            h
        } else {
            0
        };
        if n_dead != want_dead {
            return Err(bad("dead-latent tracking differs from the config's"));
        }
        let data = r.f32s(arch.param_len(dims))?;
        let state = r.f32s(n_state)?;
        let since = r.u32s(n_dead)?;
        if !r.b.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let sae = Sae::from_flat(arch, dims, data)?;
        let mut t = Self::new(sae, options, config)?;
        t.opt_state = state;
        t.since = since;
        t.steps = steps;
        Ok(t)
    }

    /// Write [`Trainer::checkpoint_bytes`] to `path`.
    ///
    /// # Errors
    /// [`Error::File`] naming `path` if it cannot be written.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.checkpoint_bytes()).map_err(|e| io_err("path", &e))
    }

    /// Read a checkpoint written by [`Trainer::save_checkpoint`].
    ///
    /// # Errors
    /// [`Error::File`] naming `path` if it cannot be read; as
    /// [`Trainer::from_checkpoint`].
    pub fn load_checkpoint(path: &Path, config: TrainConfig) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| io_err("path", &e))?;
        Self::from_checkpoint(&bytes, config)
    }

    /// Train for `steps` more steps from `source`, evaluating on the held-out rows
    /// `eval` (`n×d`, may be empty) every `eval_every` steps (and after the last),
    /// calling `on_eval(step, mean training loss since the last call, held-out
    /// summary)` (not called when `eval` is empty). With `progress`, an indicatif bar on
    /// stderr shows the live batch loss and L0 and the last held-out FVU.
    ///
    /// Returns the wall-clock seconds spent in the training steps themselves (batch
    /// fill, loss, gradients, update; not the evaluations).
    ///
    /// # Errors
    /// The first failing step's or evaluation's error (the model keeps the state of
    /// the last successful step).
    pub fn fit(
        &mut self,
        source: &mut dyn BatchSource,
        steps: u64,
        eval: &[f32],
        eval_every: u64,
        progress: bool,
        on_eval: &mut dyn FnMut(u64, f64, &Summary),
    ) -> Result<f64> {
        let d = self.sae.dims().d;
        let n_eval = eval.len() / d;
        let bar = if progress {
            let bar = indicatif::ProgressBar::new(steps);
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}",
            )
            .map(|s| s.progress_chars("=> "));
            if let Ok(s) = style {
                bar.set_style(s);
            }
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let (mut loss_sum, mut loss_n) = (0.0f64, 0u32);
        let mut step_secs = 0.0f64;
        let mut fvu = f64::NAN;
        let end = self.steps.saturating_add(steps);
        let every = eval_every.max(1);
        while self.steps < end {
            let t0 = std::time::Instant::now();
            let parts = self.step_from(source)?;
            step_secs += t0.elapsed().as_secs_f64();
            loss_sum += f64::from(parts.loss);
            loss_n += 1;
            bar.inc(1);
            if self.steps.is_multiple_of(every) || self.steps == end {
                let loss = loss_sum / f64::from(loss_n.max(1));
                (loss_sum, loss_n) = (0.0, 0);
                if n_eval > 0 {
                    let (s, _) = self.evaluate(eval, n_eval)?;
                    fvu = s.fvu;
                    on_eval(self.steps, loss, &s);
                }
            }
            if progress && (self.steps.is_multiple_of(10) || self.steps == end) {
                let fvu = if fvu.is_nan() {
                    std::string::String::from("-")
                } else {
                    std::format!("{fvu:.4}")
                };
                let dead = self
                    .dead_fraction()
                    .map_or(std::string::String::new(), |f| {
                        std::format!("  dead {f:.3}")
                    });
                bar.set_message(std::format!(
                    "loss {:.4}  L0 {:.2}  held-out FVU {fvu}{dead}",
                    parts.loss,
                    parts.l0
                ));
            }
        }
        bar.finish_and_clear();
        Ok(step_secs)
    }
}

const CKPT_MAGIC: &[u8; 8] = b"SAEKCKPT";
const MODEL_MAGIC: &[u8; 8] = b"SAEKTIED";

/// Map an I/O error to a one-line [`Error::File`].
pub(crate) fn io_err(arg: &'static str, e: &std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    let what = match e.kind() {
        K::NotFound => "file not found",
        K::PermissionDenied => "permission denied",
        K::UnexpectedEof => "file is truncated",
        K::InvalidData => "file contents are malformed",
        _ => "input/output error",
    };
    Error::File { arg, what }
}

struct Reader<'a> {
    b: &'a [u8],
    arg: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::File {
                arg: self.arg,
                what: "file is truncated",
            });
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        let t = self.take(4)?;
        Ok(u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| Error::Overflow { arg: self.arg })
    }
    fn f32(&mut self) -> Result<f32> {
        self.u32().map(f32::from_bits)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        let bytes = self.take(n.checked_mul(4).ok_or(Error::Overflow { arg: self.arg })?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        // Checked against the remaining bytes before allocating.
        let bytes = self.take(n.checked_mul(4).ok_or(Error::Overflow { arg: self.arg })?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Write a tied ReLU SAE ([`Arch::tied`]'s tensors `M`, `b`) to `path` in this
/// crate's simple model format: `b"SAEKTIED"`, `u32` version = 1, `u64` d, `u64` h,
/// then `M` (`h·d` `f32`, row-major, row `i` = feature `i`) and `b` (`h` `f32`), all
/// little-endian. Other architectures are saved as SAELens folders
/// ([`crate::format::saelens::save`]).
///
/// # Errors
/// [`Error::OutOfRange`] naming `sae` unless its weights are tied and its activation
/// is ReLU; [`Error::File`] naming `path` if it cannot be written.
pub fn save_model(sae: &Sae, path: &Path) -> Result<()> {
    if !sae.arch().is_tied() || sae.arch().activation != Activation::Relu {
        return Err(Error::OutOfRange {
            arg: "sae",
            allowed: "a tied ReLU model (save other architectures with format::saelens::save)",
        });
    }
    let dims = sae.dims();
    let mut out = Vec::with_capacity(28 + 4 * (dims.m_len() + dims.h));
    out.extend_from_slice(MODEL_MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(dims.d as u64).to_le_bytes());
    out.extend_from_slice(&(dims.h as u64).to_le_bytes());
    // `M` then `b`: the tied model's canonical order.
    for v in sae.as_flat() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| io_err("path", &e))
}

/// Read a model written by [`save_model`]: an [`Sae`] of architecture [`Arch::tied`].
///
/// # Errors
/// [`Error::File`] naming `path` if it cannot be read or is not a version-1 model
/// file of consistent length.
pub fn load_model(path: &Path) -> Result<Sae> {
    let bytes = std::fs::read(path).map_err(|e| io_err("path", &e))?;
    let mut r = Reader {
        b: &bytes,
        arg: "path",
    };
    let bad = |what| Error::File { arg: "path", what };
    if r.take(8)? != MODEL_MAGIC {
        return Err(bad("not a sae-kernels tied model (bad magic)"));
    }
    if r.u32()? != 1 {
        return Err(bad("unsupported model version"));
    }
    let (d, h) = (r.usize()?, r.usize()?);
    let dims = Dims::new(d, h).map_err(|_| bad("zero or overflowing dimensions"))?;
    let params = r.f32s(Arch::tied().param_len(dims))?;
    if !r.b.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Sae::from_flat(Arch::tied(), dims, params)
}
