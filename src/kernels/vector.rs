//! Vectorized element-wise operations and reductions on `f32` slices, built on `wide`.
//!
//! Every reduction has a fixed summation order for a given build: the slice is cut
//! into 8-lane chunks from its start (never by address alignment), each lane keeps its
//! own running sum, the lanes are combined by one fixed tree, and the tail (fewer than
//! 8 elements) is added last. The same inputs therefore always give the same bits,
//! whatever the slice's address. Different builds may differ in the last bits: `wide`
//! fuses multiply-adds only where the target has FMA.
//!
//! Slice-length mismatches are a caller bug inside this crate; the public wrappers in
//! the model layer validate lengths first. Here, two-slice functions process
//! `min(a.len(), b.len())` elements.

use wide::f32x8;

const LANES: usize = 8;

#[inline(always)]
fn load(chunk: &[f32]) -> f32x8 {
    // `chunks_exact(8)` guarantees the length; `try_into` cannot fail here.
    let arr: [f32; LANES] = chunk.try_into().unwrap_or([0.0; LANES]);
    f32x8::new(arr)
}

/// `a·b + c` lane by lane: `wide`'s `mul_add` (fused where the target has FMA), or,
/// with the `relaxed-simd` feature on a wasm32 build with
/// `-C target-feature=+simd128,+relaxed-simd`, relaxed SIMD's `f32x4.relaxed_madd`
/// on each half (the engine fuses it where its hardware has FMA, so the last bits may
/// differ from engine to engine; simd128 alone has no fused multiply-add). Used
/// where the multiply-adds are independent (the micro-kernel, axpy); the one-chain
/// reductions (`dot`, `sum_sq`) keep `mul_add`, because a fused chain waits for the
/// full multiply-add latency at every step (measured under Node 20: the one-vector
/// encode ran at 0.8× with fused dots).
#[inline(always)]
pub(crate) fn madd8(a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
    #[cfg(all(
        feature = "relaxed-simd",
        target_arch = "wasm32",
        target_feature = "relaxed-simd"
    ))]
    {
        use core::arch::wasm32::{f32x4_relaxed_madd, v128};
        // On wasm32 with simd128, `wide::f32x8` is two `v128` (32 plain bytes).
        let [a0, a1]: [v128; 2] = bytemuck::cast(a);
        let [b0, b1]: [v128; 2] = bytemuck::cast(b);
        let [c0, c1]: [v128; 2] = bytemuck::cast(c);
        bytemuck::cast([
            f32x4_relaxed_madd(a0, b0, c0),
            f32x4_relaxed_madd(a1, b1, c1),
        ])
    }
    #[cfg(not(all(
        feature = "relaxed-simd",
        target_arch = "wasm32",
        target_feature = "relaxed-simd"
    )))]
    {
        a.mul_add(b, c)
    }
}

/// Fixed pairwise reduction of the 8 lanes.
#[inline(always)]
pub(crate) fn hsum8(v: f32x8) -> f32 {
    let a = v.to_array();
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Σ xᵢ².
#[must_use]
pub fn sum_sq(x: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        let v = load(c);
        acc = v.mul_add(v, acc);
    }
    let mut s = hsum8(acc);
    for &t in tail {
        s += t * t;
    }
    s
}

/// Σ (aᵢ − bᵢ)² over the common length.
#[must_use]
pub fn sum_sq_diff(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = f32x8::ZERO;
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let d = load(x) - load(y);
        acc = d.mul_add(d, acc);
    }
    let mut s = hsum8(acc);
    for (x, y) in ta.iter().zip(tb) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// Σ |xᵢ|.
#[must_use]
pub fn l1(x: &[f32]) -> f32 {
    let whole = x.len() - x.len() % LANES;
    let mut lanes = [0.0f32; LANES];
    l1_lanes(&mut lanes, &x[..whole]);
    let mut s = lanes_sum(lanes);
    for &t in &x[whole..] {
        s += t.abs();
    }
    s
}

/// [`l1`]'s 8 running lane sums, carried over consecutive pieces of one vector:
/// `lanes[l] += |x[8i + l]|` for the whole chunks of 8 of `x` (a piece whose length is
/// a multiple of 8; a shorter remainder is ignored). [`l1`] of a vector equals
/// [`lanes_sum`] of the lanes over its pieces in order, plus its tail added after.
#[inline(always)]
pub(crate) fn l1_lanes(lanes: &mut [f32; LANES], x: &[f32]) {
    let mut acc = f32x8::new(*lanes);
    for c in x.chunks_exact(LANES) {
        acc += load(c).abs();
    }
    *lanes = acc.to_array();
}

/// [`dot`]'s 8 running lane sums over consecutive pieces (whole chunks of 8, as
/// [`l1_lanes`]): `lanes[l] = a[8i + l]·b[8i + l] + lanes[l]`, fused as [`dot`] fuses it.
#[inline(always)]
pub(crate) fn dot_lanes(lanes: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    let mut acc = f32x8::new(*lanes);
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        acc = load(x).mul_add(load(y), acc);
    }
    *lanes = acc.to_array();
}

/// The lane sums of [`l1_lanes`] / [`dot_lanes`] combined as [`l1`] and [`dot`]
/// combine them.
#[inline(always)]
pub(crate) fn lanes_sum(lanes: [f32; LANES]) -> f32 {
    hsum8(f32x8::new(lanes))
}

/// Σ aᵢ bᵢ over the common length.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let whole = n - n % LANES;
    let mut lanes = [0.0f32; LANES];
    dot_lanes(&mut lanes, &a[..whole], &b[..whole]);
    let mut s = lanes_sum(lanes);
    for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
        s += x * y;
    }
    s
}

/// y ← a·x + y over the common length.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let av = f32x8::splat(a);
    let mut cy = y.chunks_exact_mut(LANES);
    let mut cx = x.chunks_exact(LANES);
    for (yc, xc) in (&mut cy).zip(&mut cx) {
        let r = madd8(av, load(xc), load(yc));
        yc.copy_from_slice(&r.to_array());
    }
    for (yv, xv) in cy.into_remainder().iter_mut().zip(cx.remainder()) {
        *yv += a * xv;
    }
}

/// The ReLU used everywhere in this crate: `x` if `x > 0`, `+0.0` if `x ≤ 0`
/// (so `-0.0` becomes `+0.0`), and NaN stays NaN so that a bad input shows up in
/// the loss instead of being silently zeroed.
#[inline(always)]
#[must_use]
pub fn relu(x: f32) -> f32 {
    if x <= 0.0 { 0.0 } else { x }
}

/// xᵢ ← relu(xᵢ) (see [`relu`] for the treatment of −0 and NaN).
pub fn relu_inplace(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        let v = load(c);
        // Lanes with v <= 0 become +0; NaN lanes compare false and are kept.
        let r = v.simd_le(f32x8::ZERO).select(f32x8::ZERO, v);
        c.copy_from_slice(&r.to_array());
    }
    for v in chunks.into_remainder() {
        *v = relu(*v);
    }
}

/// The masked backward step of a ReLU layer with an additive constant:
/// gᵢ ← gᵢ + add where the forward output `outᵢ > 0`, else `0`.
///
/// `out` is the ReLU's output, so `outᵢ > 0` exactly when the pre-activation was
/// `> 0`: this is relu'(0) = 0, as `jax.grad` computes it.
pub fn relu_backward_add(out: &[f32], add: f32, g: &mut [f32]) {
    let n = out.len().min(g.len());
    let (out, g) = (&out[..n], &mut g[..n]);
    let addv = f32x8::splat(add);
    let mut cg = g.chunks_exact_mut(LANES);
    let mut co = out.chunks_exact(LANES);
    for (gc, oc) in (&mut cg).zip(&mut co) {
        let on = load(oc).simd_gt(f32x8::ZERO);
        let r = on.select(load(gc) + addv, f32x8::ZERO);
        gc.copy_from_slice(&r.to_array());
    }
    for (gv, ov) in cg.into_remainder().iter_mut().zip(co.remainder()) {
        *gv = if *ov > 0.0 { *gv + add } else { 0.0 };
    }
}

/// [`relu_backward_add`] with a weight per element: gᵢ ← gᵢ + add·wᵢ where
/// `outᵢ > 0`, else `0` (the product rounded, then the sum: no fused multiply-add).
/// Branch-free, so it costs the same at any density.
pub fn relu_backward_add_weighted(out: &[f32], add: f32, w: &[f32], g: &mut [f32]) {
    let n = out.len().min(g.len()).min(w.len());
    let (out, w, g) = (&out[..n], &w[..n], &mut g[..n]);
    let addv = f32x8::splat(add);
    let mut cg = g.chunks_exact_mut(LANES);
    let mut co = out.chunks_exact(LANES);
    let mut cw = w.chunks_exact(LANES);
    for ((gc, oc), wc) in (&mut cg).zip(&mut co).zip(&mut cw) {
        let on = load(oc).simd_gt(f32x8::ZERO);
        let r = on.select(load(gc) + addv * load(wc), f32x8::ZERO);
        gc.copy_from_slice(&r.to_array());
    }
    let tail = cg
        .into_remainder()
        .iter_mut()
        .zip(co.remainder())
        .zip(cw.remainder());
    for ((gv, ov), wv) in tail {
        *gv = if *ov > 0.0 { *gv + add * wv } else { 0.0 };
    }
}

/// y ← s·(y − x) over the common length (in place of `y`).
pub fn sub_scale_inplace(s: f32, y: &mut [f32], x: &[f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let sv = f32x8::splat(s);
    let mut cy = y.chunks_exact_mut(LANES);
    let mut cx = x.chunks_exact(LANES);
    for (yc, xc) in (&mut cy).zip(&mut cx) {
        let r = sv * (load(yc) - load(xc));
        yc.copy_from_slice(&r.to_array());
    }
    for (yv, xv) in cy.into_remainder().iter_mut().zip(cx.remainder()) {
        *yv = s * (*yv - xv);
    }
}

/// True when every element is finite (no NaN, no ±∞).
#[must_use]
pub fn all_finite(x: &[f32]) -> bool {
    // x·0 is ±0 for finite x and NaN for NaN/±∞; NaN poisons the running sum.
    let mut acc = f32x8::ZERO;
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        let v = load(c);
        acc += v * f32x8::ZERO;
    }
    let mut s = hsum8(acc);
    for &t in tail {
        s += t * 0.0;
    }
    s == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> [f32; 37] {
        let mut out = [0.0; 37];
        let mut s = seed;
        for v in out.iter_mut().take(n) {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *v = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        }
        out
    }

    #[test]
    fn reductions_match_scalar() {
        for n in 0..37 {
            let a = data(n, 1);
            let b = data(n, 2);
            let (a, b) = (&a[..n], &b[..n]);
            let r_sq: f64 = a.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let r_d: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| f64::from(x - y).powi(2))
                .sum();
            let r_l1: f64 = a.iter().map(|&x| f64::from(x).abs()).sum();
            let r_dot: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let tol = 1e-5 * (1.0 + n as f64);
            assert!((f64::from(sum_sq(a)) - r_sq).abs() < tol, "sum_sq n={n}");
            assert!(
                (f64::from(sum_sq_diff(a, b)) - r_d).abs() < tol,
                "sum_sq_diff n={n}"
            );
            assert!((f64::from(l1(a)) - r_l1).abs() < tol, "l1 n={n}");
            assert!((f64::from(dot(a, b)) - r_dot).abs() < tol, "dot n={n}");
        }
    }

    #[test]
    fn relu_semantics() {
        let mut x = [
            -1.0,
            -0.0,
            0.0,
            2.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            3.0,
            -5.0,
            f32::NAN,
        ];
        relu_inplace(&mut x);
        assert_eq!(x[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(x[1].to_bits(), 0.0f32.to_bits(), "-0 becomes +0");
        assert_eq!(x[3], 2.0);
        assert!(
            x[4].is_nan() && x[9].is_nan(),
            "NaN propagates in SIMD and tail"
        );
        assert_eq!(x[5], f32::INFINITY);
        assert_eq!(x[6], 0.0);
        assert_eq!(x[8], 0.0);
    }

    #[test]
    fn relu_backward_masks_at_zero() {
        let out = [0.0, 1.0, 0.0, 2.0, 0.0, 0.5, 0.0, 3.0, 0.0, 4.0];
        let mut g = [1.0; 10];
        relu_backward_add(&out, 0.5, &mut g);
        assert_eq!(g, [0.0, 1.5, 0.0, 1.5, 0.0, 1.5, 0.0, 1.5, 0.0, 1.5]);
    }

    /// The weighted mask against its element-wise definition, bit for bit, over the
    /// SIMD body and the tail: NaN, ±0 and negative outputs give 0, the weight's
    /// product is rounded before the sum.
    #[test]
    fn weighted_relu_backward_is_the_elementwise_definition() {
        let out: [f32; 19] = core::array::from_fn(|i| match i % 6 {
            0 => 0.0,
            1 => -0.0,
            2 => f32::NAN,
            3 => -1.0,
            _ => 0.25 * i as f32,
        });
        let w: [f32; 19] = core::array::from_fn(|i| 0.1 + 0.37 * i as f32);
        let g0: [f32; 19] = core::array::from_fn(|i| 1.0 / (1.0 + i as f32));
        let add = 0.013f32;
        let mut g = g0;
        relu_backward_add_weighted(&out, add, &w, &mut g);
        for i in 0..19 {
            let want = if out[i] > 0.0 {
                g0[i] + add * w[i]
            } else {
                0.0
            };
            assert_eq!(g[i].to_bits(), want.to_bits(), "element {i}");
        }
        assert!(g.iter().filter(|&&v| v != 0.0).count() >= 6);
    }

    #[test]
    fn axpy_and_diff() {
        let x: [f32; 11] = core::array::from_fn(|i| i as f32);
        let mut y = [1.0f32; 11];
        axpy(2.0, &x, &mut y);
        assert!(
            y.iter()
                .enumerate()
                .all(|(i, &v)| v == 1.0 + 2.0 * i as f32)
        );
        sub_scale_inplace(0.5, &mut y, &x);
        assert!(
            y.iter()
                .enumerate()
                .all(|(i, &v)| v == 0.5 * (1.0 + i as f32))
        );
    }

    #[test]
    fn finiteness() {
        let mut x = [1.0f32; 19];
        assert!(all_finite(&x));
        for i in [0, 7, 8, 18] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let old = x[i];
                x[i] = bad;
                assert!(!all_finite(&x), "i={i} bad={bad}");
                x[i] = old;
            }
        }
        assert!(all_finite(&[f32::MAX, -f32::MAX, f32::MIN_POSITIVE]));
    }

    #[test]
    fn reduction_is_address_independent() {
        let mut big = [0.0f32; 64];
        for (i, v) in big.iter_mut().enumerate() {
            *v = ((i * 7919) % 101) as f32 * 1e-3 + 1e4 * (i % 3) as f32;
        }
        let want = sum_sq(&big[..40]);
        let mut shifted = [0.0f32; 65];
        shifted[1..41].copy_from_slice(&big[..40]);
        assert_eq!(sum_sq(&shifted[1..41]).to_bits(), want.to_bits());
    }
}
