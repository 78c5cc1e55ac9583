//! Training in fixed memory, for every architecture: the transactional step and the
//! streaming (on-device) trainer.
//!
//! [`train_step`] is loss + gradients + optimizer update as one call that either
//! succeeds or changes nothing. [`StreamingTrainer`] builds on it for firmware: it
//! owns no memory, takes samples one at a time (or in small blocks) and steps every
//! `block_rows` samples, all inside one slice sized by [`streaming_state_len`].
//!
//! The model is a [`ModelMut`] (a [`crate::model::ParamsMut`] of any architecture plus
//! its [`TrainOptions`]); a `ParamsMut` converts into one with `.into()`. Dead-latent
//! tracking ([`DeadLatents`]) is optional, and needed for the
//! AuxK loss of TopK training.

mod dead;
mod model;
mod streaming;

pub use dead::DeadLatents;
pub use model::{AuxKConfig, ModelMut, ModelRef, TrainOptions, grad_tensors, loss_and_grad};
pub use streaming::{StreamConfig, StreamingTrainer, streaming_state_len};

pub(crate) use model::effective;

use crate::error::{Error, Result};
use crate::model::tensors::Role;
use crate::model::{Arch, Dims, LossParts};
use crate::optim::Optim;

/// The hyper-parameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepHyper {
    /// The sparsity coefficient α of this step (finite; the tied L1 coefficient, the
    /// untied penalty's coefficient, unused without a penalty).
    pub alpha: f32,
    /// The learning rate of this step (finite, `≥ 0`).
    pub lr: f32,
}

/// Workspace `f32` for [`train_step`] on `arch` with `options`, row blocks of
/// `block_rows`: the gradient buffer ([`Arch::param_len`]) plus
/// [`TrainOptions::grad_scratch_len`] (`track_dead`: whether a [`DeadLatents`] is
/// passed). Saturates on overflow. A longer workspace is used too: beyond the largest
/// row blocks, it widens the sparse path's super-blocks
/// ([`crate::model::grad_batch_extra_len`] says how much a whole batch needs), and
/// beyond that holds the weights packed once for the dense blocks
/// ([`crate::model::grad_prepack_len`]).
#[must_use]
pub fn train_step_workspace_len(
    arch: Arch,
    options: TrainOptions,
    dims: Dims,
    block_rows: usize,
    track_dead: bool,
) -> usize {
    arch.param_len(dims)
        .saturating_add(options.grad_scratch_len(arch, dims, block_rows, track_dead))
}

/// One training step on a batch: loss, exact gradients and the optimizer update.
///
/// - `model`: the parameters and training options (a `ParamsMut` converts with
///   `.into()`);
/// - `optim`: bound to `model.arch().param_len(dims)` parameters;
/// - `x`: `n×d` row-major;
/// - `dead`: dead-latent tracking; the AuxK loss of an architecture that has one uses
///   its mask (from before this step), and after a successful step the batch's firing
///   is recorded in it;
/// - `workspace`: at least [`train_step_workspace_len`]`(arch, options, dims, 1,
///   dead.is_some())`
///   `f32` (more gives larger row blocks, up to [`crate::model::MAX_BLOCK_ROWS`]); its
///   contents on entry do not matter.
///
/// Returns the batch's loss parts (`loss` includes any AuxK term), computed with the
/// parameters *before* the update.
///
/// **Transactional**: if the loss or any gradient is NaN/±∞ (for example because `x`
/// holds a NaN), or the update would make a parameter or the optimizer state
/// non-finite, nothing is updated: parameters, optimizer state, step count and dead
/// counters are bit-for-bit as before the call.
///
/// With JumpReLU thresholds being trained ([`TrainOptions::jumprelu_bandwidth`]
/// `> 0`), a successful update ends by projecting them to `θ ≥ 0`, as SAELens does.
///
/// # Errors
/// [`Error::NonFiniteStep`] naming `loss`, a gradient (`grads.<name>`), `params` or
/// `state` as above; otherwise as [`loss_and_grad`] and [`Optim::step`] (bad shapes or
/// hyper-parameters); [`Error::WorkspaceTooSmall`] naming `workspace`;
/// [`Error::Length`] naming `dead` if it tracks other than `h` latents.
pub fn train_step<'m>(
    model: impl Into<ModelMut<'m>>,
    optim: &mut Optim<'_>,
    x: &[f32],
    n: usize,
    hyper: StepHyper,
    mut dead: Option<&mut DeadLatents<'_>>,
    workspace: &mut [f32],
) -> Result<LossParts> {
    let mut model = model.into();
    let dims = model.dims();
    let arch = model.arch();
    let p_len = arch.param_len(dims);
    let need = train_step_workspace_len(arch, model.options, dims, 1, dead.is_some());
    if workspace.len() < need {
        return Err(Error::WorkspaceTooSmall {
            arg: "workspace",
            needed: need,
            got: workspace.len(),
        });
    }
    if let Some(t) = dead.as_deref() {
        crate::error::check_len("dead", t.len(), dims.h)?;
    }
    crate::error::check_finite("lr", hyper.lr)?;
    let (grads, scratch) = workspace.split_at_mut(p_len);
    let parts = {
        let (mask, fired) = match dead.as_deref_mut() {
            Some(t) => {
                let (m, f) = t.masks();
                (Some(m), Some(f))
            }
            None => (None, None),
        };
        loss_and_grad(
            model.as_ref(),
            x,
            n,
            hyper.alpha,
            mask,
            grads,
            fired,
            scratch,
        )?
    };
    if !parts.loss.is_finite() {
        return Err(Error::NonFiniteStep { arg: "loss" });
    }
    let g = grad_tensors(arch, dims, grads)?;
    let train_thresholds = model.options.jumprelu_bandwidth > 0.0;
    let mut p = model.tensors_mut();
    match optim.step(&mut p, &g, hyper.lr) {
        Err(Error::NonFinite { arg }) if arg.starts_with("grads") => {
            Err(Error::NonFiniteStep { arg })
        }
        Err(e) => Err(e),
        Ok(()) => {
            if let Some(t) = dead {
                t.commit(n as u64);
            }
            if train_thresholds {
                // SAELens keeps trained JumpReLU thresholds ≥ 0 (projected before each
                // step; here after each update, which is the same sequence).
                for t in p.iter_mut().filter(|t| t.role == Role::Threshold) {
                    crate::model::activation::clamp_thresholds(t.data);
                }
            }
            Ok(parts)
        }
    }
}
