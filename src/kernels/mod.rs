//! SIMD building blocks with no knowledge of SAEs: the GEMM and vector primitives.

pub(crate) mod dispatch_vector;
pub mod gemm;
pub mod vector;

/// The name of the GEMM micro-kernel this build selects on this machine
/// (`"avx512"`, `"avx2"`, `"portable"`; see [`gemm::Kernel`] and [`gemm::selected`]),
/// for benchmarks, logs and the test that no faster kernel was silently skipped.
#[must_use]
pub fn active_kernel() -> &'static str {
    gemm::kernel::active_name()
}
