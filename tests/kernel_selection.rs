//! The host's best GEMM kernel must not be skipped silently.
//!
//! - With `SAE_EXPECT_KERNEL=<name>` (`avx512`, `avx2`, `portable`; CI sets it per
//!   runner) the selected kernel must be exactly that one.
//! - Without it, on x86_64 with `std` and without the `force-portable` feature, the
//!   selection must be the best kernel the CPU reports (AVX-512F, else AVX2+FMA),
//!   unless `SAE_KERNEL` overrides the choice on purpose. Detection needs no `std`, so
//!   the same holds for `cargo test --no-default-features --test kernel_selection`.

use sae_kernels::kernels::active_kernel;
use sae_kernels::kernels::gemm::{Kernel, selected};

#[test]
fn expected_kernel_is_selected() {
    if let Ok(want) = std::env::var("SAE_EXPECT_KERNEL") {
        assert_eq!(
            active_kernel(),
            want,
            "SAE_EXPECT_KERNEL={want} but the GEMM selected {}",
            active_kernel()
        );
        let k = Kernel::ALL.into_iter().find(|k| k.name() == want);
        assert!(
            k.is_some_and(|k| k.is_available()),
            "{want} is not available"
        );
    }
}

#[test]
fn best_available_kernel_is_selected() {
    if std::env::var_os("SAE_KERNEL").is_some() {
        return; // an explicit override is in force
    }
    let best = if cfg!(feature = "force-portable") {
        Kernel::Portable
    } else if Kernel::Avx512.is_available() {
        Kernel::Avx512
    } else if Kernel::Avx2.is_available() {
        Kernel::Avx2
    } else {
        Kernel::Portable
    };
    assert_eq!(selected(), best);
    assert_eq!(active_kernel(), best.name());
}

#[cfg(all(target_arch = "x86_64", not(feature = "force-portable")))]
#[test]
fn detection_agrees_with_cpuid() {
    if std::env::var_os("SAE_KERNEL").is_some() {
        return;
    }
    if std::is_x86_feature_detected!("avx512f") {
        assert_eq!(selected(), Kernel::Avx512);
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert_eq!(selected(), Kernel::Avx2);
    }
}

/// The crate detects the CPU with `cpuid`/`xgetbv` from `core` (so that builds
/// without `std` get the AVX kernels too); it must agree with `std`'s detection.
/// Run it also as `cargo test --no-default-features --test kernel_selection`.
#[cfg(target_arch = "x86_64")]
#[test]
fn core_detection_agrees_with_std() {
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    let avx512 = avx2 && std::is_x86_feature_detected!("avx512f");
    assert_eq!(Kernel::Avx2.is_available(), avx2, "AVX2+FMA");
    assert_eq!(Kernel::Avx512.is_available(), avx512, "AVX-512F");
    assert!(Kernel::Scalar.is_available() && Kernel::Portable.is_available());
}
