//! What an SAE is: its dimensions, its architecture, and views of its parameters (or of
//! their gradients) over caller memory.
//!
//! One description covers every architecture ([`Arch`]): the encoder is a `d×h` strided
//! view (the untied `W_enc`, or the tied `M` transposed, no copy), `b_enc`, the decoder
//! (`h×d`, row `i` = feature `i`'s direction), an optional `b_dec` with input centring,
//! an activation and a penalty. Tensors are listed in the canonical order of
//! [`super::tensors`]:
//!
//! | weights | tensors, in order |
//! |---|---|
//! | [`Weights::Tied`] | `M` (`h×d`), `b` (`h`)[, `threshold` (`h`)] |
//! | [`Weights::Untied`] | `W_enc` (`d×h`), `b_enc` (`h`), `W_dec` (`h×d`), `b_dec` (`d`)[, `threshold` (`h`)] |
//!
//! `threshold` is present exactly for [`Activation::JumpRelu`].

use super::tensors::{MAX_TENSORS, Role, TensorMut, TensorRef, Tensors, TensorsMut};
use crate::error::{Error, Result};
use crate::kernels::gemm::MatRef;

/// The dimensions of an SAE: input width `d` and dictionary size `h` (features).
///
/// Both fields are public so that a `const` can name a model's size (e.g. to size a
/// `static` scratch buffer with a `const fn` size function); [`Dims::new`] checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dims {
    /// Input (activation) width.
    pub d: usize,
    /// Number of dictionary features.
    pub h: usize,
}

impl Dims {
    /// Checked dimensions.
    ///
    /// # Errors
    /// [`Error::Dimension`] if `d` or `h` is 0; [`Error::Overflow`] if `h·d` overflows
    /// `usize`.
    pub const fn new(d: usize, h: usize) -> Result<Self> {
        if d == 0 {
            return Err(Error::Dimension {
                arg: "d",
                expected: usize::MAX,
                got: 0,
            });
        }
        if h == 0 {
            return Err(Error::Dimension {
                arg: "h",
                expected: usize::MAX,
                got: 0,
            });
        }
        if h.checked_mul(d).is_none() {
            return Err(Error::Overflow { arg: "m" });
        }
        Ok(Self { d, h })
    }

    /// Length of an `h×d` matrix (the dictionary `M`, `W_enc`, `W_dec`).
    #[must_use]
    pub const fn m_len(&self) -> usize {
        self.h.saturating_mul(self.d)
    }
}

/// How the encoder and decoder weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Weights {
    /// One dictionary `M` (`h×d`): the encoder is `Mᵀ`, the decoder `M` (Cunningham et
    /// al. 2023). No decoder bias.
    Tied,
    /// Separate `W_enc` (`d×h`) and `W_dec` (`h×d`) and a decoder bias `b_dec` (`d`),
    /// in SAELens' layout.
    Untied {
        /// Encode `x − b_dec` instead of `x` (SAELens `apply_b_dec_to_input`, default
        /// true; false for Gemma Scope).
        center_input: bool,
    },
}

/// The activation: how pre-activations `pre = x̄·W_enc + b_enc` become codes.
///
/// - `Relu`: `f = relu(pre)` (SAELens `standard`, the tied seed).
/// - `TopK { k }`: keep the `k` largest pre-activations of each row, ReLU on the kept
///   ones, 0 elsewhere (SAELens `topk`; ties go to the lowest index; see
///   [`super::activation`]). `k ≥ h` is ReLU.
/// - `JumpRelu`: `f_i = relu(pre_i)·1[pre_i > θ_i]` with the model's `threshold`
///   tensor (strict `>`; SAELens `jumprelu`). θ is trained through SAELens'
///   straight-through estimator when [`super::LossOptions::jumprelu_bandwidth`] is
///   `> 0` (see [`super::activation`]); otherwise its gradient is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `relu(pre)`.
    Relu,
    /// ReLU on the `k ≥ 1` largest pre-activations of each row.
    TopK {
        /// Features kept per row.
        k: usize,
    },
    /// `relu(pre)·1[pre > θ]` with per-feature thresholds (the `threshold` tensor).
    JumpRelu,
}

/// The sparsity penalty `α·P(f)` of the training loss (the coefficient α is given per
/// call, see [`super::LossOptions`], so that it can follow a warm-up schedule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Penalty {
    /// No penalty (TopK, JumpReLU inference): the loss is the reconstruction error
    /// alone and α is ignored. The reported `l1` is still `Σ_i |f_i|`.
    None,
    /// `P(f) = Σ_i |f_i|` (the tied seed's penalty).
    L1,
    /// `P(f) = Σ_i |f_i|·‖W_dec,i‖₂` (Anthropic's April-2024 update; SAELens v6
    /// `standard`). At a decoder row of norm 0 the subgradient 0 is used.
    DecoderNormL1,
    /// `P(f) = Σ_i 1[f_i > 0]`, the L0 norm (SAELens v6 `jumprelu` training with
    /// `jumprelu_sparsity_loss_mode = "step"`, coefficient `l0_coefficient`; DeepMind's
    /// JumpReLU). With JumpReLU and thresholds `θ ≥ 0` it is SAELens'
    /// `Σ_i step(pre_i − θ_i)`. It is piecewise constant: its only gradient is the
    /// straight-through estimate for the thresholds (see [`super::activation`]), none
    /// reaches the pre-activations, so with other activations it adds to the loss only.
    L0,
}

/// An SAE architecture: weights layout, activation and penalty.
///
/// ```
/// use sae_kernels::model::{Activation, Arch, Penalty, Weights};
/// const TOPK: Arch = Arch::topk(32);
/// assert_eq!(TOPK.activation, Activation::TopK { k: 32 });
/// assert_eq!(Arch::tied().weights, Weights::Tied);
/// assert_eq!(Arch::standard().penalty, Penalty::DecoderNormL1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    /// Tied or untied weights (and input centring).
    pub weights: Weights,
    /// The activation.
    pub activation: Activation,
    /// The training penalty.
    pub penalty: Penalty,
}

impl Arch {
    /// The tied seed model: tied weights, ReLU, L1.
    #[must_use]
    pub const fn tied() -> Self {
        Self {
            weights: Weights::Tied,
            activation: Activation::Relu,
            penalty: Penalty::L1,
        }
    }

    /// SAELens v6 `standard`: untied, `b_dec` subtracted from the input, ReLU,
    /// decoder-norm-weighted L1.
    #[must_use]
    pub const fn standard() -> Self {
        Self {
            weights: Weights::Untied { center_input: true },
            activation: Activation::Relu,
            penalty: Penalty::DecoderNormL1,
        }
    }

    /// SAELens `topk`: untied, input centring, TopK with this `k`, no penalty.
    #[must_use]
    pub const fn topk(k: usize) -> Self {
        Self {
            weights: Weights::Untied { center_input: true },
            activation: Activation::TopK { k },
            penalty: Penalty::None,
        }
    }

    /// SAELens `jumprelu`: untied, input centring, JumpReLU, and the L0 penalty it is
    /// trained with by default ([`Penalty::L0`], SAELens' `"step"` mode).
    #[must_use]
    pub const fn jumprelu() -> Self {
        Self {
            weights: Weights::Untied { center_input: true },
            activation: Activation::JumpRelu,
            penalty: Penalty::L0,
        }
    }

    /// True for tied weights.
    #[must_use]
    pub const fn is_tied(&self) -> bool {
        matches!(self.weights, Weights::Tied)
    }

    /// True if `b_dec` is subtracted from the input before encoding.
    #[must_use]
    pub const fn centers_input(&self) -> bool {
        matches!(self.weights, Weights::Untied { center_input: true })
    }

    /// The number of tensors (2 to 5; see the [module docs](crate::model)).
    #[must_use]
    pub const fn tensor_count(&self) -> usize {
        let base = if self.is_tied() { 2 } else { 4 };
        base + matches!(self.activation, Activation::JumpRelu) as usize
    }

    /// The total number of parameters (the length of a flat buffer holding every
    /// tensor in canonical order), saturating.
    #[must_use]
    pub const fn param_len(&self, dims: Dims) -> usize {
        let specs = specs(*self, dims);
        let mut total = 0usize;
        let mut i = 0;
        while i < self.tensor_count() {
            total = total.saturating_add(specs[i].len);
            i += 1;
        }
        total
    }

    /// Check the architecture's own parameters.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `k` if TopK has `k == 0`.
    pub const fn validate(&self) -> Result<()> {
        if let Activation::TopK { k: 0 } = self.activation {
            return Err(Error::OutOfRange {
                arg: "k",
                allowed: "k must be at least 1",
            });
        }
        Ok(())
    }
}

/// Name, role and length of one tensor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    pub name: &'static str,
    pub role: Role,
    pub len: usize,
}

const NONE_SPEC: Spec = Spec {
    name: "",
    role: Role::Threshold,
    len: 0,
};

/// The tensors of `arch` at `dims`, in canonical order (the first
/// `arch.tensor_count()` entries are meaningful).
pub(crate) const fn specs(arch: Arch, dims: Dims) -> [Spec; MAX_TENSORS] {
    let (d, h, m) = (dims.d, dims.h, dims.m_len());
    let mut s = [NONE_SPEC; MAX_TENSORS];
    let next = if arch.is_tied() {
        s[0] = Spec {
            name: "M",
            role: Role::Dictionary,
            len: m,
        };
        s[1] = Spec {
            name: "b",
            role: Role::EncoderBias,
            len: h,
        };
        2
    } else {
        s[0] = Spec {
            name: "W_enc",
            role: Role::EncoderWeight,
            len: m,
        };
        s[1] = Spec {
            name: "b_enc",
            role: Role::EncoderBias,
            len: h,
        };
        s[2] = Spec {
            name: "W_dec",
            role: Role::DecoderWeight,
            len: m,
        };
        s[3] = Spec {
            name: "b_dec",
            role: Role::DecoderBias,
            len: d,
        };
        4
    };
    if matches!(arch.activation, Activation::JumpRelu) {
        s[next] = Spec {
            name: "threshold",
            role: Role::Threshold,
            len: h,
        };
    }
    s
}

fn check_tensors(arch: Arch, dims: Dims, lens: &[usize]) -> Result<[Spec; MAX_TENSORS]> {
    arch.validate()?;
    if lens.len() != arch.tensor_count() {
        return Err(Error::Length {
            arg: "tensors",
            expected: arch.tensor_count(),
            got: lens.len(),
        });
    }
    let specs = specs(arch, dims);
    for (s, &len) in specs.iter().zip(lens) {
        crate::error::check_len(s.name, len, s.len)?;
    }
    Ok(specs)
}

/// A read-only view of an SAE's parameters (any architecture) over caller memory.
///
/// ```
/// use sae_kernels::model::{Arch, Dims, Params};
/// let dims = Dims::new(2, 3)?;
/// let (m, b) = ([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.0; 3]);
/// let tied = Params::tied(dims, &m, &b)?;
/// assert_eq!(tied.tensors().len(), 2);
/// let flat = vec![0.0; Arch::standard().param_len(dims)]; // W_enc, b_enc, W_dec, b_dec
/// let untied = Params::from_flat(Arch::standard(), dims, &flat)?;
/// assert_eq!(untied.tensors()[3].name, "b_dec");
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    arch: Arch,
    dims: Dims,
    /// Tied: `M` (`h×d`, the encoder transposed); untied: `W_enc` (`d×h`).
    enc: &'a [f32],
    b_enc: &'a [f32],
    /// `h×d` (tied: `M` again).
    dec: &'a [f32],
    /// `d` entries (empty when tied).
    b_dec: &'a [f32],
    /// `h` entries (empty unless JumpReLU).
    threshold: &'a [f32],
}

impl<'a> Params<'a> {
    /// A view over the tensors of `arch`, in canonical order (see the
    /// [module docs](crate::model)).
    ///
    /// # Errors
    /// [`Error::Length`] naming `tensors` if their number is not
    /// `arch.tensor_count()`, or naming the first tensor (`"W_enc"`, `"b"`, …) whose
    /// length does not match `dims`; as [`Arch::validate`].
    pub fn new<const N: usize>(arch: Arch, dims: Dims, tensors: [&'a [f32]; N]) -> Result<Self> {
        let lens: [usize; N] = core::array::from_fn(|i| tensors[i].len());
        check_tensors(arch, dims, &lens)?;
        let get = |i: usize| tensors.get(i).copied().unwrap_or(&[]);
        let (enc, b_enc, dec, b_dec, th) = if arch.is_tied() {
            (get(0), get(1), get(0), &[][..], get(2))
        } else {
            (get(0), get(1), get(2), get(3), get(4))
        };
        Ok(Self {
            arch,
            dims,
            enc,
            b_enc,
            dec,
            b_dec,
            threshold: th,
        })
    }

    /// The tied seed model ([`Arch::tied`]) over `m` (`h×d`) and `b` (`h`).
    ///
    /// # Errors
    /// [`Error::Length`] naming `M` or `b`.
    pub fn tied(dims: Dims, m: &'a [f32], b: &'a [f32]) -> Result<Self> {
        Self::new(Arch::tied(), dims, [m, b])
    }

    /// A view over one flat buffer holding every tensor in canonical order
    /// (`arch.param_len(dims)` values).
    ///
    /// # Errors
    /// [`Error::Length`] naming `params` if the length is not `arch.param_len(dims)`;
    /// as [`Arch::validate`].
    pub fn from_flat(arch: Arch, dims: Dims, flat: &'a [f32]) -> Result<Self> {
        arch.validate()?;
        crate::error::check_len("params", flat.len(), arch.param_len(dims))?;
        let specs = specs(arch, dims);
        let mut parts: [&'a [f32]; MAX_TENSORS] = [&[]; MAX_TENSORS];
        let mut rest = flat;
        for (p, s) in parts.iter_mut().zip(&specs[..arch.tensor_count()]) {
            let (head, tail) = rest.split_at(s.len);
            *p = head;
            rest = tail;
        }
        let [a, b, c, d, e] = parts;
        match arch.tensor_count() {
            2 => Self::new(arch, dims, [a, b]),
            3 => Self::new(arch, dims, [a, b, c]),
            4 => Self::new(arch, dims, [a, b, c, d]),
            _ => Self::new(arch, dims, [a, b, c, d, e]),
        }
    }

    /// The same parameters under another activation or penalty (the weights layout
    /// must stay, and JumpReLU needs its `threshold` tensor: only moves between
    /// architectures with the same tensors are allowed).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming `arch` if the tensors differ; as
    /// [`Arch::validate`].
    pub fn with_arch(self, arch: Arch) -> Result<Self> {
        arch.validate()?;
        let same_tensors = arch.is_tied() == self.arch.is_tied()
            && arch.tensor_count() == self.arch.tensor_count();
        if !same_tensors {
            return Err(Error::OutOfRange {
                arg: "arch",
                allowed: "an architecture with the same tensors",
            });
        }
        Ok(Self { arch, ..self })
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The tensors in canonical order.
    #[must_use]
    pub fn tensors(&self) -> Tensors<'a> {
        let specs = specs(self.arch, self.dims);
        let data: [&'a [f32]; MAX_TENSORS] = if self.arch.is_tied() {
            [self.enc, self.b_enc, self.threshold, &[], &[]]
        } else {
            [self.enc, self.b_enc, self.dec, self.b_dec, self.threshold]
        };
        let mut out = Tensors::new();
        for (s, d) in specs.iter().zip(data).take(self.arch.tensor_count()) {
            // At most MAX_TENSORS entries: the push cannot fail.
            let _ = out.push(TensorRef {
                name: s.name,
                role: s.role,
                data: d,
            });
        }
        out
    }

    /// The encoder as a `d×h` view (tied: `M` transposed, no copy).
    #[must_use]
    pub fn encoder(&self) -> MatRef<'a> {
        let Dims { d, h } = self.dims;
        let view = if self.arch.is_tied() {
            MatRef::row_major("M", self.enc, h, d).map(MatRef::t)
        } else {
            MatRef::row_major("W_enc", self.enc, d, h)
        };
        // Lengths were checked at construction.
        view.unwrap_or_else(|_| unreachable!("checked at construction"))
    }

    /// The encoder bias, `h` entries.
    #[must_use]
    pub fn b_enc(&self) -> &'a [f32] {
        self.b_enc
    }

    /// The decoder, `h×d` row-major (row `i` = feature `i`'s direction; tied: `M`).
    #[must_use]
    pub fn decoder(&self) -> &'a [f32] {
        self.dec
    }

    /// The decoder bias (`d`), or `None` for tied weights.
    #[must_use]
    pub fn b_dec(&self) -> Option<&'a [f32]> {
        (!self.arch.is_tied()).then_some(self.b_dec)
    }

    /// The JumpReLU thresholds (`h`), or `None` for other activations.
    #[must_use]
    pub fn threshold(&self) -> Option<&'a [f32]> {
        matches!(self.arch.activation, Activation::JumpRelu).then_some(self.threshold)
    }
}

/// A mutable view of SAE-shaped buffers (any architecture): the parameters
/// themselves, or their gradients (same tensors, same order, same lengths).
///
/// ```
/// use sae_kernels::model::{Arch, Dims, ParamsMut};
/// let dims = Dims::new(4, 8)?;
/// let mut grads = vec![0.0; Arch::topk(2).param_len(dims)];
/// let mut g = ParamsMut::from_flat(Arch::topk(2), dims, &mut grads)?;
/// let names: Vec<_> = g.tensors_mut().iter().map(|t| t.name).collect();
/// assert_eq!(names, ["W_enc", "b_enc", "W_dec", "b_dec"]);
/// # Ok::<(), sae_kernels::Error>(())
/// ```
#[derive(Debug)]
pub struct ParamsMut<'a> {
    arch: Arch,
    dims: Dims,
    /// Tied: `M`; untied: `W_enc`.
    enc: &'a mut [f32],
    b_enc: &'a mut [f32],
    /// Untied: `W_dec`; tied: `None` (the decoder is `enc`).
    dec: Option<&'a mut [f32]>,
    b_dec: &'a mut [f32],
    threshold: &'a mut [f32],
}

impl<'a> ParamsMut<'a> {
    /// A mutable view over the tensors of `arch`, in canonical order.
    ///
    /// # Errors
    /// As [`Params::new`].
    pub fn new<const N: usize>(
        arch: Arch,
        dims: Dims,
        tensors: [&'a mut [f32]; N],
    ) -> Result<Self> {
        let lens: [usize; N] = core::array::from_fn(|i| tensors[i].len());
        check_tensors(arch, dims, &lens)?;
        let mut it = tensors.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let (enc, b_enc) = (next(), next());
        let (dec, b_dec) = if arch.is_tied() {
            (None, Default::default())
        } else {
            (Some(next()), next())
        };
        let threshold = next();
        Ok(Self {
            arch,
            dims,
            enc,
            b_enc,
            dec,
            b_dec,
            threshold,
        })
    }

    /// The tied seed model ([`Arch::tied`]) over `m` (`h×d`) and `b` (`h`).
    ///
    /// # Errors
    /// [`Error::Length`] naming `M` or `b`.
    pub fn tied(dims: Dims, m: &'a mut [f32], b: &'a mut [f32]) -> Result<Self> {
        Self::new(Arch::tied(), dims, [m, b])
    }

    /// A mutable view over one flat buffer holding every tensor in canonical order.
    ///
    /// # Errors
    /// As [`Params::from_flat`].
    pub fn from_flat(arch: Arch, dims: Dims, flat: &'a mut [f32]) -> Result<Self> {
        arch.validate()?;
        crate::error::check_len("params", flat.len(), arch.param_len(dims))?;
        let specs = specs(arch, dims);
        let mut parts: [&'a mut [f32]; MAX_TENSORS] = Default::default();
        let mut rest = flat;
        for (p, s) in parts.iter_mut().zip(&specs[..arch.tensor_count()]) {
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(s.len);
            *p = head;
            rest = tail;
        }
        let [a, b, c, d, e] = parts;
        match arch.tensor_count() {
            2 => Self::new(arch, dims, [a, b]),
            3 => Self::new(arch, dims, [a, b, c]),
            4 => Self::new(arch, dims, [a, b, c, d]),
            _ => Self::new(arch, dims, [a, b, c, d, e]),
        }
    }

    /// The architecture.
    #[must_use]
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The dimensions.
    #[must_use]
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// Reborrow as a read-only view.
    #[must_use]
    pub fn as_ref(&self) -> Params<'_> {
        Params {
            arch: self.arch,
            dims: self.dims,
            enc: self.enc,
            b_enc: self.b_enc,
            dec: self.dec.as_deref().unwrap_or(self.enc),
            b_dec: self.b_dec,
            threshold: self.threshold,
        }
    }

    /// Reborrow as a shorter-lived mutable view.
    #[must_use]
    pub fn reborrow(&mut self) -> ParamsMut<'_> {
        ParamsMut {
            arch: self.arch,
            dims: self.dims,
            enc: self.enc,
            b_enc: self.b_enc,
            dec: self.dec.as_deref_mut(),
            b_dec: self.b_dec,
            threshold: self.threshold,
        }
    }

    /// The tensors in canonical order, mutable.
    #[must_use]
    pub fn tensors_mut(&mut self) -> TensorsMut<'_> {
        let specs = specs(self.arch, self.dims);
        let mut out = TensorsMut::new();
        let data: [&mut [f32]; MAX_TENSORS] = match self.dec.as_deref_mut() {
            None => [self.enc, self.b_enc, self.threshold, &mut [], &mut []],
            Some(dec) => [self.enc, self.b_enc, dec, self.b_dec, self.threshold],
        };
        for (s, d) in specs.iter().zip(data).take(self.arch.tensor_count()) {
            let _ = out.push(TensorMut {
                name: s.name,
                role: s.role,
                data: d,
            });
        }
        out
    }

    /// The decoder (`h×d` row-major; tied: `M`), mutable.
    #[must_use]
    pub fn decoder_mut(&mut self) -> &mut [f32] {
        match self.dec.as_deref_mut() {
            Some(d) => d,
            None => self.enc,
        }
    }

    /// Split into the pieces the backward pass writes.
    pub(crate) fn parts(self) -> GradParts<'a> {
        GradParts {
            enc: self.enc,
            b_enc: self.b_enc,
            dec: self.dec,
            b_dec: self.b_dec,
            threshold: self.threshold,
        }
    }
}

/// The mutable pieces of a [`ParamsMut`] (tied: `dec` is `None`, the decoder is `enc`).
pub(crate) struct GradParts<'a> {
    pub enc: &'a mut [f32],
    pub b_enc: &'a mut [f32],
    pub dec: Option<&'a mut [f32]>,
    pub b_dec: &'a mut [f32],
    pub threshold: &'a mut [f32],
}

impl<'a> From<Params<'a>> for Tensors<'a> {
    fn from(p: Params<'a>) -> Self {
        p.tensors()
    }
}

/// `Err(Dimension)` naming `grads.d` or `grads.h` unless gradients of dimensions
/// `grads` fit a model of dimensions `params`.
pub(crate) fn check_grad_dims(params: Dims, grads: Dims) -> Result<()> {
    let (arg, expected, got) = if grads.d != params.d {
        ("grads.d", params.d, grads.d)
    } else if grads.h != params.h {
        ("grads.h", params.h, grads.h)
    } else {
        return Ok(());
    };
    Err(Error::Dimension { arg, expected, got })
}

/// `Err` unless a gradient view fits a parameter view: same dimensions and the same
/// architecture's tensors.
pub(crate) fn check_grads(params: &Params<'_>, grads: &ParamsMut<'_>) -> Result<()> {
    check_grad_dims(params.dims, grads.dims)?;
    if params.arch.is_tied() != grads.arch.is_tied()
        || params.arch.tensor_count() != grads.arch.tensor_count()
    {
        return Err(Error::OutOfRange {
            arg: "grads",
            allowed: "gradients with the model's tensors",
        });
    }
    Ok(())
}
