//! What a sparse autoencoder is, for every architecture: parameter views, scratch
//! plans, the forward pass and the exact backward pass.
//!
//! - [`Arch`] describes an architecture (tied or untied weights with optional input
//!   centring, an [`Activation`], a [`Penalty`]); [`Params`] / [`ParamsMut`] are views
//!   of its tensors (or of their gradients) over caller memory, listed by
//!   [`Params::tensors`] / [`ParamsMut::tensors_mut`] as named tensors
//!   ([`TensorRef`] / [`TensorMut`], with a [`Role`]) in the canonical order below.
//! - [`encode`], [`decode`], [`forward`] and [`loss_and_grad`] run one row-block loop
//!   each for every architecture, on the dense or the sparse path ([`Path`]).
//! - Each operation's scratch is one plan of slots ([`StackReq`]); its
//!   `*_scratch_len(arch, dims, block_rows)` is that plan's size, a `const fn`, so a
//!   `static` buffer can be sized by it:
//!
//! ```
//! use sae_kernels::model::{Arch, Dims, forward_scratch_len};
//! const ARCH: Arch = Arch::topk(8);
//! const DIMS: Dims = Dims { d: 32, h: 256 };
//! static SCRATCH: std::sync::Mutex<[f32; forward_scratch_len(ARCH, DIMS, 16)]> =
//!     std::sync::Mutex::new([0.0; forward_scratch_len(ARCH, DIMS, 16)]);
//! assert_eq!(SCRATCH.lock().unwrap().len(), forward_scratch_len(ARCH, DIMS, 16));
//! ```
//!
//! ## Tensors
//! | weights | tensors, in order |
//! |---|---|
//! | [`Weights::Tied`] | `M` (`h×d`), `b` (`h`)[, `threshold` (`h`)] |
//! | [`Weights::Untied`] | `W_enc` (`d×h`), `b_enc` (`h`), `W_dec` (`h×d`), `b_dec` (`d`)[, `threshold` (`h`)] |
//!
//! `threshold` is present exactly for [`Activation::JumpRelu`].
//!
//! ## The model
//! For each input row `x` (width `d`):
//!
//! ```text
//! x̄   = x − b_dec   with input centring, else x
//! pre = x̄·W_enc + b_enc                      (h; tied: W_enc = Mᵀ)
//! f   = act(pre)                             (h; ReLU, TopK or JumpReLU)
//! x̂   = f·W_dec (+ b_dec)                    (d; tied: W_dec = M, no b_dec)
//! L   = (1/n)·Σ_rows( ‖x − x̂‖² + α·P(f) ) (+ AuxK)
//! ```
//!
//! with the penalty `P` of [`Penalty`]. The squared error is summed over the `d`
//! coordinates and averaged over rows (SAELens' `mse.sum(-1).mean()`, the seed's loss).
//!
//! ## Gradients
//! With `G = (2/n)(X̂ − X)`, `w_i` the penalty weight (1 for L1, `‖W_dec,i‖` for the
//! decoder-norm penalty, 0 for none) and `mask = [f > 0]` (so relu'(0) = 0, as
//! `jax.grad`; for TopK the kept entries, for JumpReLU `pre > max(θ, 0)`):
//!
//! ```text
//! dPre   = (G·W_decᵀ + (α/n)·w) ⊙ mask                                  (n×h)
//! dW_dec = Fᵀ·G (+ (α/n)·(Σ_rows f_i)·W_dec,i / w_i per row i, decoder-norm penalty)
//! dW_enc = X̄ᵀ·dPre                                                      (d×h)
//! db_enc = Σ_rows dPre
//! db_dec = Σ_rows G − W_enc·(Σ_rows dPre)       (2nd term with input centring)
//! ```
//!
//! For tied weights both weight gradients are gradients of `M`: `dM = Fᵀ·G + dPreᵀ·X`,
//! summed into one buffer block by block exactly as the seed's model does. The
//! JumpReLU thresholds get SAELens' straight-through estimate when
//! [`LossOptions::jumprelu_bandwidth`] is `> 0`, else 0 (the loss is piecewise
//! constant in θ); see [`activation`].
//!
//! Each row block runs the dense GEMMs or the sparse path, as [`Path`] chooses. The
//! sparse path computes the same formulas over each row's active features
//! `A(r) = { j : f[r, j] > 0 }` only (a zero code contributes nothing to `X̂`, to
//! `Fᵀ·G` or, being masked, to the encoder gradients): gathered decoder rows for
//! `x̂_r`, one dot product per active feature for `dPre`, and the weight gradients
//! accumulated feature by feature over groups of row blocks (indices as `u32`, in the
//! scratch the dense path uses for `dPre` and the residuals). [`Path::Auto`] measures
//! each block's density after the encoder and goes sparse at or below
//! [`SPARSE_CROSSOVER`].
//!
//! ## NaN and infinity in `X`
//! Non-finite inputs are not rejected (checking would cost a pass over `X`); they
//! propagate into the codes, the loss and the gradients. Nothing here panics on them
//! or modifies the parameters; [`crate::train::train_step`] refuses non-finite
//! gradients.
//!
//! ## Memory
//! Rows are processed in blocks; each operation's scratch is described once (a list of
//! [`StackReq`] slots) and its `*_scratch_len(arch, dims, block_rows)` is that list's
//! size. Any scratch length `≥ *_scratch_len(arch, dims, 1)` works: the largest block
//! (up to [`MAX_BLOCK_ROWS`]) that fits is used, and for a given length every result
//! bit is fixed.

pub mod activation;
pub(crate) mod core;
mod decoder;
mod init;
pub(crate) mod params;
mod screen;
mod sparse_path;
mod split;
mod stack;
pub(crate) mod tensors;

pub use self::core::{
    AuxK, DEFAULT_BLOCK_ROWS, Encoder, ForwardOutputs, LossOptions, LossParts, MAX_BLOCK_ROWS,
    decode, decode_scratch_len, encode, encode_scratch_len, forward, forward_scratch_len,
    grad_batch_extra_len, grad_prepack_len, grad_scratch_len, loss_and_grad,
};
pub use decoder::{init_untied, normalize_decoder_rows, remove_parallel_decoder_grad};
pub use init::{InitRng, init_tied};
pub use params::{Activation, Arch, Dims, Params, ParamsMut, Penalty, Weights};
pub use screen::{bf16_screen, set_bf16_screen};
pub use sparse_path::{Path, SPARSE_CROSSOVER};
pub use stack::StackReq;
pub use tensors::{MAX_TENSORS, Role, TensorMut, TensorRef, Tensors, TensorsMut};
