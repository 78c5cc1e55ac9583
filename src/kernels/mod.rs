//! SIMD building blocks with no knowledge of SAEs: the GEMM and vector primitives.
//!
//! - [`isa`]: one token per instruction set (scalar, portable `wide`, AVX2+FMA,
//!   AVX-512F) and the one-time choice among them ([`isa::selected`]);
//! - [`gemm`]: the matrix product over strided views ([`mat`]);
//! - [`half`]: bf16 / f16 weight storage (widened to `f32` in the kernels);
//! - [`vector`]: element-wise operations and reductions (portable `wide` code);
//! - the row kernels of the sparse path (`dispatch_vector`, crate-private), which run
//!   on the selected instruction set.

pub(crate) mod dispatch_vector;
pub mod gemm;
pub mod half;
pub mod isa;
pub mod mat;
pub mod vector;

/// The name of the GEMM micro-kernel this build selects on this machine
/// (`"avx512"`, `"avx2"`, `"portable"`; see [`gemm::Kernel`] and [`gemm::selected`]),
/// for benchmarks, logs and the test that no faster kernel was silently skipped.
#[must_use]
pub fn active_kernel() -> &'static str {
    gemm::selected().name()
}
