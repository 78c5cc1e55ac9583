//! On-device learning: train from one sample (or a small block) at a time, in one
//! fixed caller-provided slice.

use super::{StepHyper, train_step, train_step_workspace_len};
use crate::error::{Error, Result, check_len, check_nonzero};
use crate::model::{Dims, LossParts, MAX_BLOCK_ROWS, TiedParams, TiedParamsMut};
use crate::optim::{L1Warmup, LrSchedule, Optim, Optimizer};

/// Configuration of a [`StreamingTrainer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamConfig {
    /// The update rule.
    pub optimizer: Optimizer,
    /// Learning rate as a function of the step.
    pub lr: LrSchedule,
    /// L1 coefficient as a function of the step.
    pub l1: L1Warmup,
    /// Samples per step, `1 ..= MAX_BLOCK_ROWS` (1 = pure online learning).
    pub block_rows: usize,
}

/// The `f32` a [`StreamingTrainer`] needs: optimizer state
/// ([`Optimizer::state_len`]), a `block_rows×d` sample buffer, and the step workspace
/// ([`train_step_workspace_len`]`(dims, block_rows)`). Saturates on overflow.
#[must_use]
pub fn streaming_state_len(dims: Dims, config: &StreamConfig) -> usize {
    let rows = config.block_rows.clamp(1, MAX_BLOCK_ROWS);
    config
        .optimizer
        .state_len(dims)
        .saturating_add(rows.saturating_mul(dims.d))
        .saturating_add(train_step_workspace_len(dims, rows))
}

/// A trainer that borrows everything it uses: the parameters and one state slice.
///
/// Samples are buffered until `block_rows` have arrived, then one transactional
/// [`train_step`] runs on the block. Nothing allocates; the memory is fixed at
/// construction.
///
/// ```
/// use sae_kernels::*;
/// use sae_kernels::optim::{L1Warmup, LrSchedule, Optimizer};
/// use sae_kernels::train::{StreamConfig, StreamingTrainer, streaming_state_len};
/// let dims = Dims::new(4, 8)?;
/// let (mut m, mut b) = ([0.0f32; 32], [0.0f32; 8]);
/// init_tied(TiedParamsMut::new(dims, &mut m, &mut b)?, 1);
/// let cfg = StreamConfig { optimizer: Optimizer::default(), lr: LrSchedule::constant(1e-3),
///                          l1: L1Warmup::constant(1e-3), block_rows: 2 };
/// let mut state = vec![0.0f32; streaming_state_len(dims, &cfg)]; // a static array on a device
/// let mut t = StreamingTrainer::new(TiedParamsMut::new(dims, &mut m, &mut b)?, cfg, &mut state)?;
/// assert!(t.push(&[1.0, 0.0, 0.0, 0.0])?.is_none()); // buffered
/// assert!(t.push(&[0.0, 1.0, 0.0, 0.0])?.is_some()); // block full: one step
/// assert_eq!(t.steps(), 1);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamingTrainer<'a> {
    params: TiedParamsMut<'a>,
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
    /// [`MAX_BLOCK_ROWS`]; as [`Optimizer::validate`]; [`Error::WorkspaceTooSmall`]
    /// naming `state` if it is shorter than [`streaming_state_len`].
    pub fn new(
        params: TiedParamsMut<'a>,
        config: StreamConfig,
        state: &'a mut [f32],
    ) -> Result<Self> {
        Self::resume(params, config, state, 0, true)
    }

    /// Continue from a previous trainer's `state` slice and step count (for example
    /// after a reset of the device, with both kept in non-volatile memory). Samples
    /// that were buffered but not yet stepped on are dropped.
    ///
    /// # Errors
    /// As [`StreamingTrainer::new`].
    pub fn resume_from(
        params: TiedParamsMut<'a>,
        config: StreamConfig,
        state: &'a mut [f32],
        steps: u64,
    ) -> Result<Self> {
        Self::resume(params, config, state, steps, false)
    }

    fn resume(
        params: TiedParamsMut<'a>,
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
        let dims = params.dims;
        let need = streaming_state_len(dims, &config);
        if state.len() < need {
            return Err(Error::WorkspaceTooSmall {
                arg: "state",
                needed: need,
                got: state.len(),
            });
        }
        let (opt_state, rest) = state.split_at_mut(config.optimizer.state_len(dims));
        let (buf, workspace) = rest.split_at_mut(config.block_rows * dims.d);
        if zero {
            opt_state.fill(0.0);
        }
        Ok(Self {
            params,
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
        let d = self.params.dims.d;
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
            self.workspace,
        )
    }

    /// The current parameters.
    #[must_use]
    pub fn params(&self) -> TiedParams<'_> {
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

fn step_on(
    params: &mut TiedParamsMut<'_>,
    config: &StreamConfig,
    opt_state: &mut [f32],
    steps: &mut u64,
    x: &[f32],
    n: usize,
    workspace: &mut [f32],
) -> Result<LossParts> {
    let dims = params.dims;
    let mut optim = Optim::new(config.optimizer, dims, opt_state, *steps)?;
    let hyper = StepHyper {
        alpha: config.l1.alpha(*steps),
        lr: config.lr.lr(*steps),
    };
    let view = TiedParamsMut {
        m: &mut *params.m,
        b: &mut *params.b,
        dims,
    };
    let parts = train_step(view, &mut optim, x, n, hyper, workspace)?;
    *steps = optim.steps();
    Ok(parts)
}
