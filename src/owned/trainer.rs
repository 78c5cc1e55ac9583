//! An owned trainer (model + optimizer + workspace), minibatch sources, held-out
//! evaluation, checkpoints and a progress bar.

use crate::error::{Error, Result};
use crate::format::alloc::try_zeroed_f32;
use crate::metrics::{Metrics, Summary, eval_scratch_len, evaluate, metrics_state_len};
use crate::model::{DEFAULT_BLOCK_ROWS, Dims, LossParts};
use crate::optim::{Adam, L1Warmup, LrSchedule, Optim, Optimizer};
use crate::owned::TiedSae;
use crate::toy::{ToyConfig, toy_init, toy_rng, toy_sample};
use crate::train::{StepHyper, train_step, train_step_workspace_len};
use rand_core::{Rng, SeedableRng};
use std::path::Path;
use std::{vec, vec::Vec};

/// What a [`Trainer`] does each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// The update rule (default: Adam, β = (0.9, 0.999), ε = 1e-8).
    pub optimizer: Optimizer,
    /// Learning rate as a function of the step.
    pub lr: LrSchedule,
    /// L1 coefficient as a function of the step.
    pub l1: L1Warmup,
    /// Rows per minibatch (`≥ 1`).
    pub batch: usize,
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

/// A tied SAE with its optimizer state and workspace: everything training needs.
///
/// Steps are [`train_step`]s: transactional, so a batch with a NaN returns `Err` and
/// leaves the model and optimizer untouched.
#[derive(Clone, Debug)]
pub struct Trainer {
    sae: TiedSae,
    config: TrainConfig,
    opt_state: Vec<f32>,
    steps: u64,
    workspace: Vec<f32>,
    batch_buf: Vec<f32>,
    eval_scratch: Vec<f32>,
}

impl Trainer {
    /// A trainer for `sae` with a fresh optimizer.
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `batch` if zero; as [`Optimizer::validate`];
    /// [`Error::Alloc`] (never an abort) if the optimizer state, workspace or batch
    /// buffer does not fit in memory.
    pub fn new(sae: TiedSae, config: TrainConfig) -> Result<Self> {
        crate::error::check_nonzero("batch", config.batch)?;
        config.optimizer.validate()?;
        let dims = sae.dims();
        Ok(Self {
            opt_state: try_zeroed_f32(config.optimizer.state_len(dims), "optimizer state")?,
            steps: 0,
            workspace: try_zeroed_f32(
                train_step_workspace_len(dims, DEFAULT_BLOCK_ROWS),
                "workspace",
            )?,
            batch_buf: try_zeroed_f32(crate::error::mul("batch", config.batch, dims.d)?, "batch")?,
            eval_scratch: try_zeroed_f32(
                eval_scratch_len(dims, DEFAULT_BLOCK_ROWS),
                "eval scratch",
            )?,
            sae,
            config,
        })
    }

    /// The model.
    #[must_use]
    pub fn sae(&self) -> &TiedSae {
        &self.sae
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

    /// One step on `n` rows of `x` (`n×d`) with this step's learning rate and L1
    /// coefficient; returns the loss parts before the update.
    ///
    /// # Errors
    /// As [`train_step`].
    pub fn step(&mut self, x: &[f32], n: usize) -> Result<LossParts> {
        let dims = self.sae.dims();
        let hyper = StepHyper {
            alpha: self.config.l1.alpha(self.steps),
            lr: self.config.lr.lr(self.steps),
        };
        let mut optim = Optim::new(self.config.optimizer, dims, &mut self.opt_state, self.steps)?;
        let parts = train_step(
            self.sae.params_mut(),
            &mut optim,
            x,
            n,
            hyper,
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
        let mut state = vec![0.0f64; metrics_state_len(dims)];
        let mut m = Metrics::new(dims, &mut state)?;
        evaluate(self.sae.params(), x, n, &mut m, &mut self.eval_scratch)?;
        Ok((m.summary(n as u64), m.feature_counts().to_vec()))
    }

    /// Serialise the model, optimizer state and step count (format below).
    ///
    /// ## Checkpoint format (version 1, little-endian)
    /// `b"SAEKCKPT"`, `u32` version = 1, `u64` d, `u64` h, `u64` steps, `u32` optimizer
    /// kind (0 = SGD, 1 = Adam), three `f32` (SGD: momentum, 0, 0; Adam: β1, β2, ε),
    /// `u64` length of the optimizer state, then the `f32`s of `M` (`h·d`), `b` (`h`)
    /// and the optimizer state. The schedules and batch size are not stored: resume
    /// with the same [`TrainConfig`].
    #[must_use]
    pub fn checkpoint_bytes(&self) -> Vec<u8> {
        let dims = self.sae.dims();
        let mut out = Vec::new();
        out.extend_from_slice(CKPT_MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        for v in [dims.d as u64, dims.h as u64, self.steps] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let (kind, a, b, c) = match self.config.optimizer {
            Optimizer::Sgd { momentum } => (0u32, momentum, 0.0, 0.0),
            Optimizer::Adam(x) => (1u32, x.beta1, x.beta2, x.eps),
        };
        out.extend_from_slice(&kind.to_le_bytes());
        for v in [a, b, c] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.opt_state.len() as u64).to_le_bytes());
        for s in [self.sae.m(), self.sae.b(), &self.opt_state[..]] {
            for v in s {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Rebuild a trainer from [`Trainer::checkpoint_bytes`] and the run's config.
    /// Continuing it gives bit-for-bit the same parameters as never having stopped
    /// (same build, same batches).
    ///
    /// # Errors
    /// [`Error::File`] naming `checkpoint` if the bytes are not a version-1
    /// checkpoint, are truncated, or their optimizer differs from `config`'s.
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
        if r.u32()? != 1 {
            return Err(bad("unsupported checkpoint version"));
        }
        let d = r.usize()?;
        let h = r.usize()?;
        let steps = r.u64()?;
        let kind = r.u32()?;
        let (a, b, c) = (r.f32()?, r.f32()?, r.f32()?);
        let opt = match kind {
            0 => Optimizer::Sgd { momentum: a },
            1 => Optimizer::Adam(Adam {
                beta1: a,
                beta2: b,
                eps: c,
            }),
            _ => return Err(bad("unknown optimizer kind")),
        };
        if opt != config.optimizer {
            return Err(bad("optimizer differs from the config's"));
        }
        let dims = Dims::new(d, h).map_err(|_| bad("zero or overflowing dimensions"))?;
        let n_state = r.usize()?;
        if n_state != opt.state_len(dims) {
            return Err(bad("optimizer state length does not match the dimensions"));
        }
        let m = r.f32s(dims.m_len())?;
        let bias = r.f32s(h)?;
        let state = r.f32s(n_state)?;
        if !r.b.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let mut t = Self::new(TiedSae::from_parts(dims, m, bias)?, config)?;
        t.opt_state = state;
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
    ) -> Result<()> {
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
        let mut fvu = f64::NAN;
        let end = self.steps.saturating_add(steps);
        let every = eval_every.max(1);
        while self.steps < end {
            let parts = self.step_from(source)?;
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
                bar.set_message(std::format!(
                    "loss {:.4}  L0 {:.2}  held-out FVU {fvu}",
                    parts.loss,
                    parts.l0
                ));
            }
        }
        bar.finish_and_clear();
        Ok(())
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
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        // Checked against the remaining bytes before allocating.
        let bytes = self.take(n.checked_mul(4).ok_or(Error::Overflow { arg: self.arg })?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Write a tied SAE to `path` in this crate's simple model format:
/// `b"SAEKTIED"`, `u32` version = 1, `u64` d, `u64` h, then `M` (`h·d` `f32`,
/// row-major, row `i` = feature `i`) and `b` (`h` `f32`), all little-endian.
///
/// # Errors
/// [`Error::File`] naming `path` if it cannot be written.
pub fn save_model(sae: &TiedSae, path: &Path) -> Result<()> {
    let dims = sae.dims();
    let mut out = Vec::with_capacity(28 + 4 * (dims.m_len() + dims.h));
    out.extend_from_slice(MODEL_MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(dims.d as u64).to_le_bytes());
    out.extend_from_slice(&(dims.h as u64).to_le_bytes());
    for v in sae.m().iter().chain(sae.b()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| io_err("path", &e))
}

/// Read a model written by [`save_model`].
///
/// # Errors
/// [`Error::File`] naming `path` if it cannot be read or is not a version-1 model
/// file of consistent length.
pub fn load_model(path: &Path) -> Result<TiedSae> {
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
    let m = r.f32s(dims.m_len())?;
    let b = r.f32s(h)?;
    if !r.b.is_empty() {
        return Err(bad("trailing bytes"));
    }
    TiedSae::from_parts(dims, m, b)
}
