//! What a sparse autoencoder is, for every architecture: parameter views, scratch
//! plans, the forward pass and the exact backward pass.
//!
//! - [`Arch`] describes an architecture (tied or untied weights with optional input
//!   centring, an [`Activation`], a [`Penalty`]); [`Params`] / [`ParamsMut`] are views
//!   of its tensors (or of their gradients) over caller memory, listed by
//!   [`Params::tensors`] / [`ParamsMut::tensors_mut`] in the canonical order of
//!   [`tensors`].
//! - [`encode`], [`decode`], [`forward`] and [`loss_and_grad`] run one row-block loop
//!   each for every architecture ([`core`] has the formulas), on the dense or the
//!   sparse path ([`sparse_path`]).
//! - Each operation's scratch is one plan of slots ([`StackReq`]); its
//!   `*_scratch_len(arch, dims, block_rows)` is that plan's size.

pub mod activation;
pub mod core;
mod decoder;
pub mod init;
pub mod params;
pub mod sparse_path;
pub mod stack;
pub mod tensors;

pub use self::core::{
    AuxK, DEFAULT_BLOCK_ROWS, ForwardOutputs, LossOptions, LossParts, MAX_BLOCK_ROWS, decode,
    decode_scratch_len, encode, encode_scratch_len, forward, forward_scratch_len, grad_scratch_len,
    loss_and_grad,
};
pub use decoder::{init_untied, normalize_decoder_rows, remove_parallel_decoder_grad};
pub use init::init_tied;
pub use params::{
    Activation, Arch, Dims, Params, ParamsMut, Penalty, TiedParams, TiedParamsMut, Weights,
};
pub use sparse_path::{Path, SPARSE_CROSSOVER};
pub use stack::StackReq;
pub use tensors::{MAX_TENSORS, Role, TensorMut, TensorRef, Tensors, TensorsMut};
