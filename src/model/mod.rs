//! What a sparse autoencoder is: parameters, workspace sizes, forward and backward.
//!
//! Three separate concepts, so that new variants slot in beside the tied model:
//! - parameters ([`TiedParams`], [`TiedParamsMut`]) are views over caller memory;
//! - the activation (here ReLU, fused into the encoder GEMM's epilogue);
//! - scratch memory, sized by the `*_scratch_len` functions in [`workspace`].

pub mod activation;
pub mod backward;
pub mod forward;
pub mod init;
pub mod params;
pub mod sparse_path;
pub mod tensors;
pub mod untied;
pub mod workspace;

pub use backward::{loss_and_grad, loss_and_grad_with};
pub use forward::{
    ForwardOutputs, LossParts, decode, decode_scratch_len, encode, forward, forward_with,
};
pub use init::init_tied;
pub use params::{Dims, TiedParams, TiedParamsMut};
pub use sparse_path::{Path, SPARSE_CROSSOVER, SPARSE_MAX_H};
pub use tensors::{MAX_TENSORS, Role, TensorMut, TensorRef, Tensors, TensorsMut};
pub use workspace::{
    DEFAULT_BLOCK_ROWS, MAX_BLOCK_ROWS, encode_scratch_len, forward_scratch_len, grad_scratch_len,
};

// The untied SAE family (SAELens layout).
pub use activation::Activation;
pub use untied::{
    AuxK, Penalty, UntiedConfig, UntiedParams, UntiedParamsMut, init_untied,
    normalize_decoder_rows, remove_parallel_decoder_grad, tied_to_untied, untied_decode,
    untied_decode_scratch_len, untied_encode, untied_encode_scratch_len, untied_forward,
    untied_forward_scratch_len, untied_grad_auxk_scratch_len, untied_grad_scratch_len,
    untied_loss_and_grad, untied_loss_and_grad_auxk,
};
