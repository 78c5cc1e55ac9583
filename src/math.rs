//! The one private math shim: `f32` functions that are hardware instructions wherever
//! the target has them, with `libm` (software, correctly rounded) as the fallback.
//!
//! `core` has no `f32::sqrt` on stable, and `libm` (built without its `arch` feature,
//! which Miri cannot run) computes `sqrtf` in software. That is fine on x86 and wasm for
//! the rare calls outside hot loops, but Adam takes one square root per parameter per
//! step, and on a Cortex-M4F software `sqrtf` costs tens of cycles where `vsqrt.f32`
//! costs 14. IEEE 754 square root is correctly rounded, so every branch returns the same
//! bits.

/// √x, correctly rounded (NaN for negative or NaN input).
#[inline]
pub(crate) fn sqrtf(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        x.sqrt()
    }
    #[cfg(all(not(feature = "std"), target_arch = "arm", target_abi = "eabihf"))]
    {
        let r: u32;
        // SAFETY: the hard-float ABI (`eabihf`) means the target has a VFP unit, and every
        // VFP version has `vsqrt.f32`. The value goes in and out through core registers
        // (the `sreg` class needs a target feature name this target does not report), via
        // s14, which is declared clobbered; no memory or stack is touched. Exercised by
        // the firmware test (`tests/firmware`), whose Adam steps are checked against the
        // host's values.
        unsafe {
            core::arch::asm!(
                "vmov s14, {x}",
                "vsqrt.f32 s14, s14",
                "vmov {r}, s14",
                x = in(reg) x.to_bits(),
                r = lateout(reg) r,
                out("s14") _,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        f32::from_bits(r)
    }
    #[cfg(all(
        not(feature = "std"),
        not(all(target_arch = "arm", target_abi = "eabihf"))
    ))]
    {
        libm::sqrtf(x)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqrt_matches_libm_bit_for_bit() {
        let mut x = 1.0e-30f32;
        while x < 1.0e30 {
            for v in [x, x * 1.1, x * 3.7, x.next_up()] {
                assert_eq!(super::sqrtf(v).to_bits(), libm::sqrtf(v).to_bits(), "{v}");
            }
            x *= 7.3;
        }
        assert!(super::sqrtf(-1.0).is_nan());
        assert_eq!(super::sqrtf(0.0), 0.0);
        assert_eq!(super::sqrtf(f32::INFINITY), f32::INFINITY);
    }
}
