//! An SAE of any architecture that owns its parameters (feature `std`).

use crate::error::{Error, Result, check_len, mul};
use crate::format::alloc::try_zeroed_f32;
use crate::model::{
    Activation, Arch, Dims, Params, ParamsMut, Penalty, Tensors, Weights, decode,
    decode_scratch_len, encode, encode_scratch_len, init_untied,
};
use crate::model::{DEFAULT_BLOCK_ROWS, init_tied};
use std::{vec, vec::Vec};

/// The largest row block [`Sae::encode`] uses.
const ENCODE_BLOCK_ROWS: usize = 4096;

/// An SAE (any [`Arch`]) owning its parameters: one buffer holding every tensor in
/// canonical order (see [`crate::model::Params`]), private so that its length always
/// matches the architecture and dimensions.
///
/// ```
/// use sae_kernels::{model::{Arch, Dims}, owned::Sae};
/// let sae = Sae::new(Arch::topk(4), Dims::new(16, 64)?, 7)?;
/// let x = vec![0.5; 2 * 16];
/// let codes = sae.encode(&x, 2)?;
/// assert!(codes.chunks(64).all(|row| row.iter().filter(|&&c| c > 0.0).count() <= 4));
/// let recon = sae.decode(&codes, 2)?;
/// assert_eq!(recon.len(), 2 * 16);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Sae {
    arch: Arch,
    dims: Dims,
    data: Vec<f32>,
}

impl Sae {
    /// A freshly initialised model: tied weights as [`init_tied`] (`M ~ N(0, 2/d)`,
    /// `b = 0`), untied ones as SAELens v6 ([`init_untied`] with decoder-row norm 0.1,
    /// `W_enc = W_decᵀ`, biases 0); JumpReLU thresholds start at 0.
    ///
    /// # Errors
    /// As [`Arch::validate`]; [`Error::Overflow`] if the parameter count overflows;
    /// [`Error::Alloc`] (never an abort) if the parameters do not fit in memory.
    pub fn new(arch: Arch, dims: Dims, seed: u64) -> Result<Self> {
        arch.validate()?;
        let len = arch.param_len(dims);
        if len == usize::MAX {
            return Err(Error::Overflow { arg: "params" });
        }
        let mut s = Self {
            arch,
            dims,
            data: try_zeroed_f32(len, "params")?,
        };
        if arch.is_tied() {
            init_tied(s.params_mut(), seed);
        } else {
            init_untied(s.params_mut(), seed, 0.1)?;
        }
        Ok(s)
    }

    /// A model from its tensors in canonical order (copied).
    ///
    /// # Errors
    /// As [`Params::new`] (a tensor count or length that does not match).
    pub fn from_tensors(arch: Arch, dims: Dims, tensors: &[&[f32]]) -> Result<Self> {
        let data: Vec<f32> = tensors.iter().flat_map(|t| t.iter().copied()).collect();
        arch.validate()?;
        if tensors.len() != arch.tensor_count() {
            return Err(Error::Length {
                arg: "tensors",
                expected: arch.tensor_count(),
                got: tensors.len(),
            });
        }
        let s = Self::from_flat(arch, dims, data)?;
        // Same total length: check each tensor's own length, naming it.
        for (t, want) in tensors.iter().zip(s.params().tensors()) {
            check_len(want.name, t.len(), want.data.len())?;
        }
        Ok(s)
    }

    /// A model from one buffer holding every tensor in canonical order.
    ///
    /// # Errors
    /// As [`Params::from_flat`].
    pub fn from_flat(arch: Arch, dims: Dims, data: Vec<f32>) -> Result<Self> {
        Params::from_flat(arch, dims, &data)?;
        Ok(Self { arch, dims, data })
    }

    /// A copy of the parameters behind a view.
    #[must_use]
    pub fn from_params(p: Params<'_>) -> Self {
        let data = p
            .tensors()
            .iter()
            .flat_map(|t| t.data.iter().copied())
            .collect();
        Self {
            arch: p.arch(),
            dims: p.dims(),
            data,
        }
    }

    /// The untied equivalent of this model: for tied weights `W_enc = Mᵀ`, `W_dec = M`,
    /// `b_enc = b`, `b_dec = 0` and no input centring (same codes, reconstruction,
    /// loss); an untied model is returned as it is.
    #[must_use]
    pub fn to_untied(&self) -> Self {
        if !self.arch.is_tied() {
            return self.clone();
        }
        let Dims { d, h } = self.dims;
        let p = self.params();
        let m = p.decoder();
        let mut w_enc = vec![0.0; m.len()];
        for (i, row) in m.chunks_exact(d).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                w_enc[j * h + i] = v;
            }
        }
        let arch = Arch {
            weights: Weights::Untied {
                center_input: false,
            },
            ..self.arch
        };
        let b_dec = vec![0.0; d];
        let mut data = w_enc;
        data.extend_from_slice(p.b_enc());
        data.extend_from_slice(m);
        data.extend_from_slice(&b_dec);
        if let Some(t) = p.threshold() {
            data.extend_from_slice(t);
        }
        Self {
            arch,
            dims: self.dims,
            data,
        }
    }

    /// The same parameters under another activation or penalty (same tensors).
    ///
    /// # Errors
    /// As [`Params::with_arch`].
    pub fn with_arch(mut self, arch: Arch) -> Result<Self> {
        self.params().with_arch(arch)?;
        self.arch = arch;
        Ok(self)
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The dimensions (`d` = SAELens `d_in`, `h` = `d_sae`).
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// A read-only view for the no_std entry points.
    #[must_use]
    pub fn params(&self) -> Params<'_> {
        Params::from_flat(self.arch, self.dims, &self.data)
            .unwrap_or_else(|_| unreachable!("the length is an invariant"))
    }

    /// A mutable view (for optimizers).
    #[must_use]
    pub fn params_mut(&mut self) -> ParamsMut<'_> {
        ParamsMut::from_flat(self.arch, self.dims, &mut self.data)
            .unwrap_or_else(|_| unreachable!("the length is an invariant"))
    }

    /// The tensors in canonical order.
    #[must_use]
    pub fn tensors(&self) -> Tensors<'_> {
        self.params().tensors()
    }

    /// Every parameter, in canonical order.
    #[must_use]
    pub fn as_flat(&self) -> &[f32] {
        &self.data
    }

    /// Codes of `n` rows (`x`: `n×d` row-major) as a new `n×h` row-major vector.
    ///
    /// Rows are encoded in blocks of up to 4096 (each block packs the encoder once):
    /// besides the codes, the scratch memory is at most `4096·d` floats (input
    /// centring) plus the GEMM's pack buffer.
    ///
    /// # Errors
    /// As [`encode`] (e.g. [`Error::Length`] naming `x`).
    pub fn encode(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        check_len("x", x.len(), mul("x", n, self.dims.d)?)?;
        let mut codes = try_zeroed_f32(mul("codes", n, self.dims.h)?, "codes")?;
        let mut scratch = try_zeroed_f32(
            encode_scratch_len(self.arch, self.dims, n.min(ENCODE_BLOCK_ROWS)),
            "scratch",
        )?;
        encode(self.params(), x, n, &mut codes, &mut scratch)?;
        Ok(codes)
    }

    /// Reconstruction of `n` rows of codes (`codes`: `n×h`) as a new `n×d` vector.
    ///
    /// # Errors
    /// As [`decode`].
    pub fn decode(&self, codes: &[f32], n: usize) -> Result<Vec<f32>> {
        check_len("codes", codes.len(), mul("codes", n, self.dims.h)?)?;
        let mut recon = try_zeroed_f32(mul("recon", n, self.dims.d)?, "recon")?;
        let mut scratch =
            try_zeroed_f32(decode_scratch_len(self.dims, DEFAULT_BLOCK_ROWS), "scratch")?;
        decode(self.params(), codes, n, &mut recon, &mut scratch)?;
        Ok(recon)
    }
}

/// The penalty SAELens trains each activation with (v6): decoder-norm L1 for ReLU,
/// none for TopK, L0 for JumpReLU (its default `"step"` sparsity mode).
#[must_use]
pub fn saelens_penalty(activation: Activation) -> Penalty {
    match activation {
        Activation::Relu => Penalty::DecoderNormL1,
        Activation::TopK { .. } => Penalty::None,
        Activation::JumpRelu => Penalty::L0,
    }
}
