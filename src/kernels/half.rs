//! 16-bit floating-point storage for weights: bfloat16 and IEEE binary16 (`f16`),
//! held as raw `u16` bits and widened to `f32` where they are used (in the GEMV loop
//! or the GEMM's packing; see [`crate::kernels::gemm::gemm_nt_half`]). Arithmetic
//! stays in `f32`.
//!
//! Widening is exact for both formats: every bf16 and every f16 value (subnormals,
//! ±0, ±∞ and NaN included) is representable in `f32`. So a product with 16-bit
//! weights equals the `f32` product with the widened weights, up to the usual `f32`
//! summation rounding; against the `f32` product with the *original* weights it
//! differs by at most the weights' own rounding: `|Δ| ≤ u_w · Σ_p |a_p·w_p|` with
//! `u_w = 2⁻⁸` for bf16 and `2⁻¹¹` for f16 (round to nearest even), plus, for f16
//! weights below its normal range (`|w| < 2⁻¹⁴`), an absolute `2⁻²⁵` per weight.

/// A 16-bit floating-point format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Half {
    /// bfloat16: the top 16 bits of an `f32` (8 exponent bits, 7 fraction bits).
    Bf16,
    /// IEEE 754 binary16 (5 exponent bits, 10 fraction bits).
    F16,
}

impl Half {
    /// Unit roundoff of the format (round to nearest): the largest relative error of
    /// storing a normal `f32` value in it.
    #[must_use]
    pub fn unit_roundoff(self) -> f32 {
        match self {
            Half::Bf16 => 1.0 / 256.0,
            Half::F16 => 1.0 / 2048.0,
        }
    }

    /// Widen one value to `f32` (exact).
    #[inline(always)]
    #[must_use]
    pub fn to_f32(self, bits: u16) -> f32 {
        match self {
            Half::Bf16 => bf16_to_f32(bits),
            Half::F16 => f16_to_f32(bits),
        }
    }

    /// Round one `f32` to this format (nearest, ties to even; NaN stays NaN).
    #[must_use]
    pub fn from_f32(self, x: f32) -> u16 {
        match self {
            Half::Bf16 => f32_to_bf16(x),
            Half::F16 => f32_to_f16(x),
        }
    }
}

/// bf16 bits → `f32` (exact: the bits become the top half of the `f32`).
#[inline(always)]
#[must_use]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `f32` → bf16 bits, rounding to nearest, ties to even; NaN stays (quiet) NaN.
#[must_use]
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x0040;
    }
    let round = 0x7FFF + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// IEEE binary16 bits → `f32` (exact, subnormals, infinities and NaN included).
#[inline(always)]
#[must_use]
pub fn f16_to_f32(bits: u16) -> f32 {
    let h = u32::from(bits);
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1F;
    let frac = h & 0x3FF;
    let mag = if exp == 0x1F {
        // ∞ or NaN (payload kept in the top fraction bits).
        0x7F80_0000 | (frac << 13)
    } else if exp != 0 {
        ((exp + 127 - 15) << 23) | (frac << 13)
    } else if frac == 0 {
        0
    } else {
        // Subnormal: value = frac · 2⁻²⁴, exact in f32.
        let v = (frac as f32) * f32::from_bits(0x3380_0000);
        return if sign != 0 { -v } else { v };
    };
    f32::from_bits(sign | mag)
}

/// `f32` → IEEE binary16 bits, rounding to nearest, ties to even (overflow to ±∞,
/// gradual underflow to subnormals and ±0; NaN stays NaN).
#[must_use]
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xFF) as i32;
    let frac = b & 0x7F_FFFF;
    if exp == 0xFF {
        return sign
            | 0x7C00
            | if frac != 0 {
                0x200 | (frac >> 13) as u16
            } else {
                0
            };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        // Subnormal or zero in f16: value / 2⁻²⁴, rounded to nearest even.
        if e < -10 {
            return sign;
        }
        let m = frac | 0x80_0000; // 24-bit significand
        let shift = (14 - e) as u32; // 14..=24
        let q = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let q = if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        };
        return sign | q as u16;
    }
    let q = ((e as u32) << 10) | (frac >> 13);
    let rem = frac & 0x1FFF;
    let q = if rem > 0x1000 || (rem == 0x1000 && q & 1 == 1) {
        q + 1 // may carry into the exponent, up to ∞: correct rounding
    } else {
        q
    };
    sign | q as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 16-bit pattern (a sample of them under Miri, which is slow).
    fn patterns() -> impl Iterator<Item = u16> {
        let step = if cfg!(miri) { 251 } else { 1 };
        (0..=u16::MAX)
            .step_by(step)
            .chain([0x0001, 0x8001, 0x7C00, 0xFC00, 0x7E00])
    }

    #[test]
    fn bf16_round_trip_and_rounding() {
        for bits in patterns() {
            let x = bf16_to_f32(bits);
            if x.is_nan() {
                assert!(bf16_to_f32(f32_to_bf16(x)).is_nan());
            } else {
                assert_eq!(f32_to_bf16(x), bits, "{bits:#x}");
            }
        }
        // Ties to even: 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷.
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), f32_to_bf16(1.0));
        assert_eq!(
            f32_to_bf16(1.0 + 3.0 / 256.0),
            f32_to_bf16(1.0 + 4.0 / 256.0)
        );
    }

    #[test]
    fn f16_round_trip() {
        for bits in patterns() {
            let x = f16_to_f32(bits);
            if x.is_nan() {
                assert!(f16_to_f32(f32_to_f16(x)).is_nan(), "{bits:#x}");
            } else {
                assert_eq!(f32_to_f16(x), bits, "{bits:#x} = {x}");
            }
        }
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        // Exact powers of two from their bits (`powi` may be inexact, e.g. under Miri).
        let (p24, p25) = (f32::from_bits(0x3380_0000), f32::from_bits(0x3300_0000));
        assert_eq!(f16_to_f32(0x0001), p24);
        assert_eq!(f16_to_f32(0x8001), -p24);
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert_eq!(f32_to_f16(65520.0), 0x7C00, "rounds up to ∞");
        assert_eq!(f32_to_f16(65519.0), 0x7BFF);
        assert_eq!(f32_to_f16(p25), 0, "tie to even (0)");
        assert_eq!(f32_to_f16(3.0 * p25), 2, "tie to even (2)");
    }
}
