//! On-device learning: train from one sample (or a small block) at a time, in one
//! fixed caller-provided slice.

use super::{
    DeadLatents, ModelMut, ModelRef, StepHyper, TrainOptions, train_step, train_step_workspace_len,
};
use crate::error::{Error, Result, check_len, check_nonzero};
use crate::model::{Arch, Dims, LossParts, MAX_BLOCK_ROWS};
use crate::optim::{L1Warmup, LrSchedule, Optim, OptimConfig};

/// Configuration of a [`StreamingTrainer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamConfig {
    /// The update rule, clipping and decoder constraint.
    pub optimizer: OptimConfig,
    /// Learning rate as a function of the step.
    pub lr: LrSchedule,
    /// L1 coefficient as a function of the step.
    pub l1: L1Warmup,
    /// Samples per step, `1 ..= MAX_BLOCK_ROWS` (1 = pure online learning).
    pub block_rows: usize,
}

/// The `f32` a [`StreamingTrainer`] for a model of `arch` with `options` needs:
/// optimizer state ([`OptimConfig::state_len`] of [`Arch::param_len`]), a
/// `block_rows×d` sample buffer, and the step workspace
/// ([`train_step_workspace_len`]`(arch, options, dims, block_rows, track_dead)`;
/// `track_dead`: whether [`StreamingTrainer::with_dead_latents`] is used). Saturates
/// on overflow.
#[must_use]
pub fn streaming_state_len(
    arch: Arch,
    options: TrainOptions,
    dims: Dims,
    config: &StreamConfig,
    track_dead: bool,
) -> usize {
    let rows = config.block_rows.clamp(1, MAX_BLOCK_ROWS);
    config
        .optimizer
        .state_len(arch.param_len(dims))
        .saturating_add(rows.saturating_mul(dims.d))
        .saturating_add(train_step_workspace_len(
            arch, options, dims, rows, track_dead,
        ))
}

/// A trainer that borrows everything it uses: the parameters and one state slice.
///
/// Samples are buffered until `block_rows` have arrived, then one transactional
/// [`train_step`] runs on the block. Nothing allocates; the memory is fixed at
/// construction.
///
/// ```
/// use sae_kernels::prelude::*;
/// use sae_kernels::optim::{L1Warmup, LrSchedule, Optimizer};
/// use sae_kernels::train::{StreamConfig, StreamingTrainer, streaming_state_len};
/// let dims = Dims::new(4, 8)?;
/// let (mut m, mut b) = ([0.0f32; 32], [0.0f32; 8]);
/// init_tied(ParamsMut::tied(dims, &mut m, &mut b)?, 1);
/// use sae_kernels::train::TrainOptions;
/// let cfg = StreamConfig { optimizer: Optimizer::default().into(), lr: LrSchedule::constant(1e-3),
///                          l1: L1Warmup::constant(1e-3), block_rows: 2 };
/// let len = streaming_state_len(Arch::tied(), TrainOptions::default(), dims, &cfg, false);
/// let mut state = vec![0.0f32; len]; // a static array on a device
/// let mut t = StreamingTrainer::new(ParamsMut::tied(dims, &mut m, &mut b)?, cfg, &mut state)?;
/// assert!(t.push(&[1.0, 0.0, 0.0, 0.0])?.is_none()); // buffered
/// assert!(t.push(&[0.0, 1.0, 0.0, 0.0])?.is_some()); // block full: one step
/// assert_eq!(t.steps(), 1);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamingTrainer<'a> {
    params: ModelMut<'a>,
    dead: Option<DeadLatents<'a>>,
    config: StreamConfig,
    opt_state: &'a mut [f32],
    buf: &'a mut [f32],
    workspace: &'a mut [f32],
    filled: usize,
    steps: u64,
}

impl<'a> StreamingTrainer<'a> {
    /// A fresh trainer: zeroes the optimizer state and starts at step 0.
    ///
    /// # Errors
    /// [`Error::Dimension`] naming `block_rows` if it is 0 or above
    /// [`MAX_BLOCK_ROWS`]; as [`OptimConfig::validate`]; [`Error::WorkspaceTooSmall`]
    /// naming `state` if it is shorter than [`streaming_state_len`].
    pub fn new(
        params: impl Into<ModelMut<'a>>,
        config: StreamConfig,
        state: &'a mut [f32],
    ) -> Result<Self> {
        Self::resume(params.into(), config, state, 0, true)
    }

    /// Track dead latents in `dead` (its mask feeds the AuxK loss of architectures
    /// that have one; without a tracker they train without AuxK). Size `state` with
    /// `track_dead = true` in [`streaming_state_len`].
    ///
    /// # Errors
    /// [`Error::Length`] naming `dead` unless it tracks `h` latents;
    /// [`Error::WorkspaceTooSmall`] naming `state` if the workspace is too small for
    /// tracking.
    pub fn with_dead_latents(mut self, dead: DeadLatents<'a>) -> Result<Self> {
        let dims = self.params.dims();
        check_len("dead", dead.len(), dims.h)?;
        let arch = self.params.arch();
        let need = train_step_workspace_len(arch, self.params.options, dims, 1, true);
        if self.workspace.len() < need {
            return Err(Error::WorkspaceTooSmall {
                arg: "state",
                needed: need,
                got: self.workspace.len(),
            });
        }
        self.dead = Some(dead);
        Ok(self)
    }

    /// The dead-latent tracker, if any.
    #[must_use]
    pub fn dead_latents(&self) -> Option<&DeadLatents<'a>> {
        self.dead.as_ref()
    }

    /// Continue from a previous trainer's `state` slice and step count (for example
    /// after a reset of the device, with both kept in non-volatile memory). Samples
    /// that were buffered but not yet stepped on are dropped.
    ///
    /// # Errors
    /// As [`StreamingTrainer::new`].
    pub fn resume_from(
        params: impl Into<ModelMut<'a>>,
        config: StreamConfig,
        state: &'a mut [f32],
        steps: u64,
    ) -> Result<Self> {
        Self::resume(params.into(), config, state, steps, false)
    }

    fn resume(
        params: ModelMut<'a>,
        config: StreamConfig,
        state: &'a mut [f32],
        steps: u64,
        zero: bool,
    ) -> Result<Self> {
        check_nonzero("block_rows", config.block_rows)?;
        if config.block_rows > MAX_BLOCK_ROWS {
            return Err(Error::Dimension {
                arg: "block_rows",
                expected: MAX_BLOCK_ROWS,
                got: config.block_rows,
            });
        }
        config.optimizer.validate()?;
        let dims = params.dims();
        let arch = params.arch();
        params.options.validate(arch)?;
        let need = streaming_state_len(arch, params.options, dims, &config, false);
        if state.len() < need {
            return Err(Error::WorkspaceTooSmall {
                arg: "state",
                needed: need,
                got: state.len(),
            });
        }
        let (opt_state, rest) =
            state.split_at_mut(config.optimizer.state_len(arch.param_len(dims)));
        let (buf, workspace) = rest.split_at_mut(config.block_rows * dims.d);
        if zero {
            opt_state.fill(0.0);
        }
        Ok(Self {
            params,
            dead: None,
            config,
            opt_state,
            buf,
            workspace,
            filled: 0,
            steps,
        })
    }

    /// Add one sample (`d` values). When it completes a block, one training step runs
    /// and its loss parts (before the update) are returned; otherwise `None`.
    ///
    /// # Errors
    /// [`Error::Length`] naming `sample`. If the step fails (see [`train_step`], e.g.
    /// a NaN in the block), its error is returned, the block is discarded and the
    /// parameters and optimizer state are unchanged.
    pub fn push(&mut self, sample: &[f32]) -> Result<Option<LossParts>> {
        let d = self.params.dims().d;
        check_len("sample", sample.len(), d)?;
        self.buf[self.filled * d..(self.filled + 1) * d].copy_from_slice(sample);
        self.filled += 1;
        if self.filled < self.config.block_rows {
            return Ok(None);
        }
        self.filled = 0;
        let n = self.config.block_rows;
        step_on(
            &mut self.params,
            &self.config,
            self.opt_state,
            &mut self.steps,
            self.buf,
            n,
            self.dead.as_mut(),
            self.workspace,
        )
        .map(Some)
    }

    /// One step on a block of `n` rows given at once (`x`: `n×d`, `n ≥ 1`; any size,
    /// processed in row blocks inside the fixed workspace). Buffered samples stay
    /// buffered.
    ///
    /// # Errors
    /// As [`train_step`].
    pub fn step_block(&mut self, x: &[f32], n: usize) -> Result<LossParts> {
        step_on(
            &mut self.params,
            &self.config,
            self.opt_state,
            &mut self.steps,
            x,
            n,
            self.dead.as_mut(),
            self.workspace,
        )
    }

    /// The current parameters.
    #[must_use]
    pub fn params(&self) -> ModelRef<'_> {
        self.params.as_ref()
    }

    /// Successful steps so far.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Samples buffered toward the next block.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.filled
    }
}

#[allow(clippy::too_many_arguments)]
fn step_on(
    params: &mut ModelMut<'_>,
    config: &StreamConfig,
    opt_state: &mut [f32],
    steps: &mut u64,
    x: &[f32],
    n: usize,
    dead: Option<&mut DeadLatents<'_>>,
    workspace: &mut [f32],
) -> Result<LossParts> {
    let dims = params.dims();
    let p = params.arch().param_len(dims);
    let mut optim = Optim::new(config.optimizer, dims, p, opt_state, *steps)?;
    let hyper = StepHyper {
        alpha: config.l1.alpha(*steps),
        lr: config.lr.lr(*steps),
    };
    let parts = train_step(params.reborrow(), &mut optim, x, n, hyper, dead, workspace)?;
    *steps = optim.steps();
    Ok(parts)
}
