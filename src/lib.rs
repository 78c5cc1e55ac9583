//! # sae-kernels
//!
//! Sparse autoencoders (SAEs) for interpretability, as fast allocation-free kernels:
//! the seed's tied SAE (Cunningham et al. 2023) and the field's untied ones (SAELens
//! `standard`, `topk`, `jumprelu`), trained and run by one core.
//!
//! Each input row `x` (width `d`) is encoded into `h` feature activations
//! `f = act(x̄·W_enc + b_enc)` (`x̄ = x − b_dec` with input centring) and reconstructed
//! as `x̂ = f·W_dec (+ b_dec)`; the tied model has `W_enc = Mᵀ`, `W_dec = M`, no `b_dec`.
//! Training minimises `mean over rows of (‖x − x̂‖² + α·P(f))`.
//!
//! ## Where to start
//! - **Load a SAELens SAE and encode** (feature `std`): [`format::saelens::load`] gives
//!   an [`owned::Sae`]; call [`owned::Sae::encode`] / [`owned::Sae::decode`], or the
//!   no_std [`model::encode`] on [`owned::Sae::params`]. From the command line:
//!   `cargo run --release --example encode -- --sae DIR --input x.npy --output c.npy`.
//! - **Train on activations**: `cargo run --release --example train` (the main job;
//!   `--help` for real data and the SAELens architectures). In code, an
//!   [`owned::Trainer`] over an [`owned::Sae`] ([`owned::Trainer::step`],
//!   [`owned::Trainer::fit`], checkpoints) and [`format::saelens::save`] for the result;
//!   underneath, [`model::loss_and_grad`] on a [`model::Params`] view gives every
//!   tensor's gradient as a [`model::ParamsMut`] of the same architecture, and
//!   [`train::train_step`] applies an [`optim::Optim`] (Adam, SGD with momentum) to it.
//! - **Sparse features for an engine**: [`sparse`] ([`sparse::encode_sparse`] into a
//!   [`heapless::Vec`], [`sparse::encode_csr`] for batches, [`sparse::decode_sparse`]),
//!   for every architecture.
//! - **Firmware / WASM**: build with `default-features = false`; everything in
//!   [`model`], [`sparse`], [`optim`], [`train`] and [`metrics`] runs on caller memory.
//!   The size functions are `const fn`, so buffers can be `static`:
//!
//!   ```
//!   use sae_kernels::model::{Arch, Dims, grad_scratch_len};
//!   const ARCH: Arch = Arch::tied();
//!   const DIMS: Dims = Dims { d: 16, h: 64 };
//!   static mut PARAMS: [f32; ARCH.param_len(DIMS)] = [0.0; ARCH.param_len(DIMS)];
//!   const SCRATCH_LEN: usize = grad_scratch_len(ARCH, DIMS, 4); // 4-row blocks
//!   static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
//!   ```
//!
//!   `tests/firmware` trains a model this way on a Cortex-M4F with no allocator
//!   ([`train::StreamingTrainer`] does it sample by sample).
//! - One import for the common names: `use sae_kernels::prelude::*;` ([`prelude`]; no
//!   `Result` alias in it). Every item has one path: its module (the prelude and the
//!   root's [`Error`] and [`Result`] aside).
//!
//! ## Layout
//! - [`kernels`]: SIMD building blocks with no SAE knowledge (the GEMM, vector ops).
//! - [`model`]: architectures ([`model::Arch`]), parameter views, scratch plans, the
//!   forward and exact backward passes (dense and sparse), initialisation.
//! - [`optim`]: in-place parameter updates (SGD, momentum, Adam) and schedules.
//! - [`train`]: the transactional training step and the streaming (on-device) trainer.
//! - [`metrics`]: streaming MSE, FVU, L0, L1, feature counts, dead fraction; MMCS.
//! - [`sparse`]: sparse codes (top-k, CSR) and sparse decoding.
//! - [`toy`]: the toy superposition benchmark (ground-truth features).
//! - [`format`] (feature `std`): `.npy`/`.npz` files, SAELens folders.
//! - [`owned`] (feature `std`): the owned model [`owned::Sae`] and the
//!   [`owned::Trainer`] on the same kernels, batch sources, the native model file.
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
//! use sae_kernels::prelude::*;
//! let dims = Dims::new(8, 32)?;
//! let arch = Arch::tied();
//! let mut params = vec![0.0; arch.param_len(dims)];
//! init_tied(ParamsMut::from_flat(arch, dims, &mut params)?, 42);
//! let x: Vec<f32> = (0..4 * 8).map(|i| (i % 5) as f32 * 0.1).collect(); // n = 4 rows
//! let mut grads = vec![0.0; arch.param_len(dims)];
//! let mut scratch = vec![0.0; grad_scratch_len(arch, dims, DEFAULT_BLOCK_ROWS)];
//! let opts = LossOptions::alpha(1e-3);
//! let before = loss_and_grad(
//!     Params::from_flat(arch, dims, &params)?, &x, 4, &opts,
//!     ParamsMut::from_flat(arch, dims, &mut grads)?, &mut scratch,
//! )?;
//! for (w, g) in params.iter_mut().zip(&grads) {
//!     *w -= 1e-2 * g;
//! }
//! let p = Params::from_flat(arch, dims, &params)?;
//! let after = forward(p, &x, 4, &opts, ForwardOutputs::default(), &mut scratch)?;
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
pub mod owned;
pub mod sparse;
pub mod toy;
pub mod train;

pub use error::{Error, Result};

/// The names most programs need, in one import: `use sae_kernels::prelude::*;`.
///
/// It brings the model description, the core entry points and their scratch sizes,
/// the optimizer and training step, the owned [`owned::Sae`] and [`owned::Trainer`]
/// (feature `std`), and [`Error`]. It does not bring a `Result` alias, so
/// `fn main() -> Result<(), Box<dyn std::error::Error>>` keeps meaning `std`'s
/// `Result` (the crate's alias is [`crate::Result`]):
///
/// ```
/// use sae_kernels::prelude::*;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let sae = Sae::new(Arch::standard(), Dims::new(4, 16)?, 1)?;
///     let codes = sae.encode(&[0.5; 4], 1)?;
///     assert_eq!(codes.len(), 16);
///     Ok(())
/// }
/// ```
///
/// Every item here is also reachable by its own module path (e.g.
/// [`model::Arch`], [`optim::Optimizer`]); everything else only by its module path.
pub mod prelude {
    pub use crate::error::Error;
    pub use crate::model::{
        Activation, Arch, AuxK, DEFAULT_BLOCK_ROWS, Dims, ForwardOutputs, LossOptions, LossParts,
        Params, ParamsMut, Path, Penalty, Weights, decode, decode_scratch_len, encode,
        encode_scratch_len, forward, forward_scratch_len, grad_scratch_len, init_tied, init_untied,
        loss_and_grad,
    };
    pub use crate::optim::{Optim, OptimConfig, Optimizer};
    #[cfg(feature = "std")]
    pub use crate::owned::{Sae, TrainConfig, Trainer};
    pub use crate::train::{TrainOptions, train_step, train_step_workspace_len};
}

/// The `heapless` crate this crate's API uses (`sparse::encode_sparse` fills a
/// `heapless::Vec`), re-exported so callers need not match its version by hand.
pub use heapless;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
