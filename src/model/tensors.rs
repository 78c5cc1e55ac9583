//! Named tensors: how a model's parameters (and their gradients) are listed to the code
//! above the model — the optimizer, checkpoints, file formats — whatever the architecture.
//!
//! A parameter set is a short list (at most [`MAX_TENSORS`]) of named `f32` slices in a
//! fixed canonical order per architecture:
//!
//! | architecture | tensors, in order |
//! |---|---|
//! | tied | `M` (`h×d`, [`Role::Dictionary`]), `b` (`h`, [`Role::EncoderBias`]) |
//! | untied (SAELens layout) | `W_enc` (`d×h`), `b_enc` (`h`), `W_dec` (`h×d`), `b_dec` (`d`), then `threshold` (`h`) for JumpReLU |
//!
//! A gradient set lists the same tensors, in the same order, with the same lengths.
//! All matrices are row-major. The role tells generic code what a tensor is for (decoder
//! rows are the ones to normalise), so it never
//! has to match on names.

/// The most tensors any architecture has (untied JumpReLU: five).
pub const MAX_TENSORS: usize = 5;

/// What a tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Encoder weights `W_enc`, `d×h` row-major.
    EncoderWeight,
    /// Encoder bias `b_enc`, `h` entries.
    EncoderBias,
    /// Decoder weights `W_dec`, `h×d` row-major: row `i` is feature `i`'s direction.
    DecoderWeight,
    /// Decoder bias `b_dec`, `d` entries.
    DecoderBias,
    /// The tied dictionary `M`, `h×d` row-major, used as encoder (`Mᵀ`) and decoder.
    Dictionary,
    /// JumpReLU thresholds `θ`, `h` entries (trained through a straight-through
    /// estimate, see [`super::activation`]; kept `≥ 0` in training).
    Threshold,
}

impl Role {
    /// True for the tensors whose rows are feature directions (`h×d`): the decoder of
    /// an untied model and the tied dictionary.
    #[must_use]
    pub fn is_decoder(self) -> bool {
        matches!(self, Role::DecoderWeight | Role::Dictionary)
    }
}

/// A read-only named tensor.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// The name used in files (`"W_enc"`, `"b_dec"`, `"M"`, …).
    pub name: &'static str,
    /// What the tensor is for.
    pub role: Role,
    /// The values, row-major.
    pub data: &'a [f32],
}

/// A mutable named tensor.
#[derive(Debug)]
pub struct TensorMut<'a> {
    /// The name used in files (`"W_enc"`, `"b_dec"`, `"M"`, …).
    pub name: &'static str,
    /// What the tensor is for.
    pub role: Role,
    /// The values, row-major.
    pub data: &'a mut [f32],
}

/// A list of read-only named tensors (no allocation).
pub type Tensors<'a> = heapless::Vec<TensorRef<'a>, MAX_TENSORS>;
/// A list of mutable named tensors (no allocation).
pub type TensorsMut<'a> = heapless::Vec<TensorMut<'a>, MAX_TENSORS>;
