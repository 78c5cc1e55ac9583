//! Training in fixed memory: the transactional step and the streaming (on-device)
//! trainer.
//!
//! [`train_step`] is loss + gradients + optimizer update as one call that either
//! succeeds or changes nothing. [`StreamingTrainer`] builds on it for firmware: it
//! owns no memory, takes samples one at a time (or in small blocks) and steps every
//! `block_rows` samples, all inside one slice sized by [`streaming_state_len`].

mod streaming;

pub use streaming::{StreamConfig, StreamingTrainer, streaming_state_len};

use crate::error::{Error, Result};
use crate::model::{Dims, LossParts, TiedParamsMut, grad_scratch_len, loss_and_grad};
use crate::optim::Optim;

/// The hyper-parameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepHyper {
    /// The L1 coefficient α of this step (finite).
    pub alpha: f32,
    /// The learning rate of this step (finite, `≥ 0`).
    pub lr: f32,
}

/// Workspace `f32` for [`train_step`] with row blocks of `block_rows`: the gradient
/// buffers (`h·d + h`) plus [`grad_scratch_len`]`(dims, block_rows)`.
#[must_use]
pub fn train_step_workspace_len(dims: Dims, block_rows: usize) -> usize {
    dims.m_len()
        .saturating_add(dims.h)
        .saturating_add(grad_scratch_len(
            crate::model::Arch::tied(),
            dims,
            block_rows,
        ))
}

/// One training step on a batch: loss, exact gradients and the optimizer update.
///
/// - `x`: `n×d` row-major;
/// - `workspace`: at least [`train_step_workspace_len`]`(dims, 1)` `f32` (more gives
///   larger row blocks, up to [`crate::model::MAX_BLOCK_ROWS`]); its contents on entry
///   do not matter.
///
/// Returns the batch's loss parts, computed with the parameters *before* the update.
///
/// **Transactional**: if the loss or any gradient is NaN/±∞ (for example because `x`
/// holds a NaN), or the update would make a parameter or the optimizer state
/// non-finite, nothing is updated: parameters, optimizer state and step count are
/// bit-for-bit as before the call.
///
/// # Errors
/// [`Error::NonFiniteStep`] naming `loss`, `grads.m`, `grads.b`, `params` or `state` as
/// above; otherwise as [`loss_and_grad`] and [`Optim::step`] (bad shapes or
/// hyper-parameters), [`Error::WorkspaceTooSmall`] naming `workspace`.
pub fn train_step(
    params: TiedParamsMut<'_>,
    optim: &mut Optim<'_>,
    x: &[f32],
    n: usize,
    hyper: StepHyper,
    workspace: &mut [f32],
) -> Result<LossParts> {
    let dims = params.dims;
    let p_len = dims.m_len() + dims.h;
    let need = train_step_workspace_len(dims, 1);
    if workspace.len() < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "workspace",
            needed: need,
            got: workspace.len(),
        });
    }
    crate::error::check_finite("lr", hyper.lr)?;
    let (grads, scratch) = workspace.split_at_mut(p_len);
    let (gm, gb) = grads.split_at_mut(dims.m_len());
    let parts = loss_and_grad(
        params.as_ref().into(),
        x,
        n,
        &crate::model::LossOptions::alpha(hyper.alpha),
        TiedParamsMut::new(dims, gm, gb)?.into(),
        scratch,
    )?;
    if !parts.loss.is_finite() {
        return Err(Error::NonFiniteStep { arg: "loss" });
    }
    let g = crate::model::TiedParams::new(dims, gm, gb)?;
    match optim.step(params, g, hyper.lr) {
        Err(Error::NonFinite { arg: "grads.m" }) => Err(Error::NonFiniteStep { arg: "grads.m" }),
        Err(Error::NonFinite { arg: "grads.b" }) => Err(Error::NonFiniteStep { arg: "grads.b" }),
        other => other.map(|()| parts),
    }
}
