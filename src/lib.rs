//! # sae-kernels
//!
//! Sparse autoencoders (SAEs) for interpretability, as fast allocation-free kernels.
//!
//! The seed model is the tied-weight SAE of Cunningham et al. (2023): each input row `x`
//! (width `d`) is encoded into `h` non-negative feature activations
//! `c = ReLU(M·x + b)` and reconstructed as `x̂ = Mᵀ·c`, where the rows of the
//! dictionary `M` (`h×d`) are the feature directions. Training minimises
//! `L = mean over rows of (‖x − x̂‖² + α·‖c‖₁)`: reconstruct well with few active
//! features.
//!
//! ## Layout
//! - [`kernels`]: SIMD building blocks with no SAE knowledge (the GEMM, vector ops).
//! - [`model`]: parameter views, scratch sizes, forward pass and exact backward pass.
//! - [`optim`]: in-place parameter updates (SGD, momentum, Adam) and schedules.
//! - [`train`]: the transactional training step and the streaming (on-device) trainer.
//! - [`metrics`]: streaming MSE, FVU, L0, L1, feature counts, dead fraction; MMCS.
//! - [`toy`]: the toy superposition benchmark (ground-truth features).
//! - `owned` (feature `std`): owned models on top of the same kernels.
//!
//! ## Memory
//! The core is `#![no_std]` and never allocates. Every operation takes its outputs and a
//! scratch slice from the caller; a `*_scratch_len` function says how many `f32` the
//! scratch needs, and that number depends on the model's dimensions, not on the batch
//! size.
//!
//! ## Errors
//! Bad input (wrong lengths, zero dimensions, short scratch, non-finite hyper-parameters)
//! gives an [`Error`] naming the argument, never a panic, and leaves the caller's
//! parameters unchanged.
//!
//! ## Example
//! ```
//! use sae_kernels::*;
//! let dims = Dims::new(8, 32)?;
//! let (mut m, mut b) = (vec![0.0; dims.m_len()], vec![0.0; dims.h]);
//! init_tied(TiedParamsMut::new(dims, &mut m, &mut b)?, 42);
//! let x: Vec<f32> = (0..4 * 8).map(|i| (i % 5) as f32 * 0.1).collect(); // n = 4 rows
//! let (mut gm, mut gb) = (vec![0.0; dims.m_len()], vec![0.0; dims.h]);
//! let mut scratch = vec![0.0; grad_scratch_len(dims, DEFAULT_BLOCK_ROWS)];
//! let before = loss_and_grad(
//!     TiedParams::new(dims, &m, &b)?, &x, 4, 1e-3,
//!     TiedParamsMut::new(dims, &mut gm, &mut gb)?, &mut scratch,
//! )?;
//! sgd_step(TiedParamsMut::new(dims, &mut m, &mut b)?, TiedParams::new(dims, &gm, &gb)?, 1e-2)?;
//! let after = forward(
//!     TiedParams::new(dims, &m, &b)?, &x, 4, 1e-3, ForwardOutputs::default(), &mut scratch,
//! )?;
//! assert!(after.loss < before.loss);
//! # Ok::<(), sae_kernels::Error>(())
//! ```
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod error;
#[cfg(feature = "std")]
pub mod format;
pub mod kernels;
mod math;
pub mod metrics;
pub mod model;
pub mod optim;
#[cfg(feature = "std")]
mod owned;
pub mod sparse;
pub mod toy;
pub mod train;

pub use error::{Error, Result};
pub use model::{
    DEFAULT_BLOCK_ROWS, Dims, ForwardOutputs, LossParts, Path, SPARSE_CROSSOVER, TiedParams,
    TiedParamsMut, decode, decode_scratch_len, encode, encode_scratch_len, forward,
    forward_scratch_len, forward_with, grad_scratch_len, init_tied, loss_and_grad,
    loss_and_grad_with,
};

// The untied SAE family (SAELens layout).
pub use model::{
    Activation, Penalty, UntiedConfig, UntiedParams, UntiedParamsMut, tied_to_untied,
    untied_decode, untied_decode_scratch_len, untied_encode, untied_encode_scratch_len,
    untied_forward, untied_forward_scratch_len, untied_grad_scratch_len, untied_loss_and_grad,
};

pub use optim::{Adam, Optim, OptimConfig, Optimizer, sgd_step};
#[cfg(feature = "std")]
pub use owned::{ActivationKind, TiedSae, UntiedSae};
#[cfg(feature = "std")]
pub use owned::{
    ArrayBatches, BatchSource, ToyBatches, TrainConfig, TrainSae, Trainer, load_model, save_model,
};
pub use train::{Arch, ModelMut, ModelRef, StepHyper, train_step, train_step_workspace_len};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
