//! Property tests of every GEMM kernel path against the naive `f64` reference.
//!
//! Each case runs on every kernel family available on this machine
//! ([`Kernel::ALL`] filtered by [`Kernel::is_available`]: scalar, portable, and on an
//! AVX-512 host also AVX2 and AVX-512), through [`gemm_with`], and through [`gemm`]
//! with the selected kernel.
//!
//! ## The bound
//! For every element, with `mag = Σ_p |α·a_ip·b_pj| + |β·c_ij| (+ |bias_j|)` as returned
//! by [`naive::gemm_f64`]:
//!
//! ```text
//! |got − want| ≤ (k + 4) · 2⁻²³ · mag
//! ```
//!
//! i.e. twice the classical worst-case bound `γ_k ≈ k·u` (`u = 2⁻²⁴`) of a
//! `k`-term dot product, plus a few roundings for α, β, the bias and the final
//! rounding to `f32`. ReLU is 1-Lipschitz, so the bound holds after it. Shapes go up to
//! 300 in each dimension (non-multiples of every `MR`/`NR`), with a separate test past
//! the `KC` block size, row-major, column-major (transposed views) and padded
//! strides, several α and β (including β = 0 with a NaN-filled C, which must never be
//! read), and both epilogues. Memory of C outside the view must be left untouched.

use proptest::prelude::*;
use sae_kernels::kernels::gemm::{
    Epilogue, Half, Kernel, MatMut, MatRef, bf16_dot_available, gemm, gemm_nt_half,
    gemm_nt_half_bf16_dot, gemm_nt_half_with, gemm_packed, gemm_with, naive, pack_b, pack_b_with,
    pack_len, packed_b_len,
};

/// How a matrix is laid out in its buffer.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `rs = cols + pad`, `cs = 1`.
    RowMajor { pad: usize },
    /// `rs = 1`, `cs = rows + pad` (a transposed view of a row-major buffer).
    ColMajor { pad: usize },
    /// Both strides > 1: `cs = 2`, `rs = 2·cols + 1`.
    Strided,
}

impl Layout {
    /// `(row_stride, col_stride, buffer length)`.
    fn strides(self, rows: usize, cols: usize) -> (usize, usize, usize) {
        let (rs, cs) = match self {
            Layout::RowMajor { pad } => (cols + pad, 1),
            Layout::ColMajor { pad } => (1, rows + pad),
            Layout::Strided => (2 * cols + 1, 2),
        };
        let len = (rows - 1) * rs + (cols - 1) * cs + 1;
        (rs, cs, len)
    }
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        3 => (0usize..3).prop_map(|pad| Layout::RowMajor { pad }),
        3 => (0usize..3).prop_map(|pad| Layout::ColMajor { pad }),
        1 => Just(Layout::Strided),
    ]
}

/// A dimension: mostly small (tile edges), sometimes up to 300.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 1usize..20, 2 => 1usize..80, 1 => 1usize..=300]
}

#[derive(Clone, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    la: Layout,
    lb: Layout,
    lc: Layout,
    alpha: f32,
    beta: f32,
    epi: Epi,
    seed: u64,
}

/// The epilogue a case asks for (over its bias).
#[derive(Clone, Copy, Debug)]
enum Epi {
    None,
    Bias,
    BiasRelu,
}

impl Epi {
    fn of(self, bias: &[f32]) -> Epilogue<'_> {
        match self {
            Epi::None => Epilogue::None,
            Epi::Bias => Epilogue::Bias(bias),
            Epi::BiasRelu => Epilogue::BiasRelu(bias),
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        (dim(), dim(), dim()),
        (layout(), layout(), layout()),
        prop_oneof![Just(1.0f32), Just(-0.5), Just(2.25), -3.0f32..3.0],
        prop_oneof![2 => Just(0.0f32), 1 => Just(1.0), 1 => Just(-1.5), 1 => -2.0f32..2.0],
        prop_oneof![Just(Epi::None), Just(Epi::Bias), Just(Epi::BiasRelu)],
        any::<u64>(),
    )
        .prop_filter("keep debug-build cases small", |((m, n, k), ..)| {
            m * n * k <= 600_000
        })
        .prop_map(|((m, n, k), (la, lb, lc), alpha, beta, epi, seed)| Case {
            m,
            n,
            k,
            la,
            lb,
            lc,
            alpha,
            beta,
            epi,
            seed,
        })
}

/// SplitMix64 values in [-1, 1).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

const SENTINEL: f32 = 12345.5;

/// Run one case on `kernel` (`None`: through [`gemm`]) and check it.
fn check(case: &Case, kernel: Option<Kernel>) -> Result<(), TestCaseError> {
    let Case {
        m,
        n,
        k,
        la,
        lb,
        lc,
        alpha,
        beta,
        epi,
        seed,
    } = *case;
    let (ars, acs, alen) = la.strides(m, k);
    let (brs, bcs, blen) = lb.strides(k, n);
    let (crs, ccs, clen) = lc.strides(m, n);
    let a = fill(alen, seed);
    let b = fill(blen, seed ^ 1);
    let bias = fill(n, seed ^ 2);
    // C: sentinel outside the view; inside, NaN if β = 0 (must not be read).
    let mut c0 = vec![SENTINEL; clen];
    let init = fill(m * n, seed ^ 3);
    for i in 0..m {
        for j in 0..n {
            c0[i * crs + j * ccs] = if beta == 0.0 {
                f32::NAN
            } else {
                init[i * n + j]
            };
        }
    }
    let epi = epi.of(&bias);
    let av = MatRef::new("a", &a, m, k, ars, acs).unwrap();
    let bv = MatRef::new("b", &b, k, n, brs, bcs).unwrap();

    let mut want = c0.clone();
    let mut mag = vec![0.0f64; m * n];
    {
        let mut wv = MatMut::new("c", &mut want, m, n, crs, ccs).unwrap();
        naive::gemm_f64(alpha, av, bv, beta, &mut wv, epi, Some(&mut mag));
    }

    let mut got = c0.clone();
    let mut pack = vec![f32::NAN; pack_len(m, n, k)];
    let cv = MatMut::new("c", &mut got, m, n, crs, ccs).unwrap();
    match kernel {
        Some(kern) => gemm_with(kern, alpha, av, bv, beta, cv, epi, &mut pack),
        None => gemm(alpha, av, bv, beta, cv, epi, &mut pack),
    }
    .unwrap();

    let name = kernel.map_or("selected", Kernel::name);
    // The same product with B packed beforehand (into an unaligned, NaN-filled
    // buffer): the same bits, inside and outside the view.
    let mut again = c0.clone();
    let mut pb = vec![f32::NAN; packed_b_len(k, n) + 1];
    let packed = match kernel {
        Some(kern) => pack_b_with(kern, bv, &mut pb[1..]),
        None => pack_b(bv, &mut pb[1..]),
    }
    .unwrap();
    let cv = MatMut::new("c", &mut again, m, n, crs, ccs).unwrap();
    gemm_packed(alpha, av, &packed, beta, cv, epi, &mut pack).unwrap();
    for (idx, (g, p)) in got.iter().zip(&again).enumerate() {
        prop_assert!(
            g.to_bits() == p.to_bits(),
            "{name}: packed B gave {p} against {g} at {idx} in {case:?}"
        );
    }
    let gamma = (k as f64 + 4.0) * f64::powi(2.0, -23);
    let mut inside = vec![false; clen];
    for i in 0..m {
        for j in 0..n {
            let idx = i * crs + j * ccs;
            inside[idx] = true;
            let (g, w) = (f64::from(got[idx]), f64::from(want[idx]));
            let tol = gamma * mag[i * n + j];
            prop_assert!(
                (g - w).abs() <= tol,
                "{name}: C[{i},{j}] = {g}, want {w} (tol {tol:e}) in {case:?}"
            );
        }
    }
    for (idx, (&g, &ins)) in got.iter().zip(&inside).enumerate() {
        prop_assert!(
            ins || g == SENTINEL,
            "{name}: wrote outside the view at {idx} in {case:?}"
        );
    }
    Ok(())
}

fn available() -> Vec<Kernel> {
    Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_kernel_matches_reference(case in case()) {
        for kern in available() {
            check(&case, Some(kern))?;
        }
        check(&case, None)?;
    }
}

/// Shapes just past the cache-block sizes (`KC`, `MC`, `NC` and every tile), so that
/// the multi-pass paths (β = 1 on later `KC` blocks, epilogue only on the last) run.
#[test]
fn block_edges() {
    let shapes = [
        (9, 50, 1000),
        (200, 7, 770),
        (3, 1600, 20),
        (130, 97, 33),
        (1, 300, 800),
        (4, 33, 777),
        (5, 49, 17),
    ];
    for (s, &(m, n, k)) in shapes.iter().enumerate() {
        for (lb, beta, epi) in [
            (Layout::ColMajor { pad: 0 }, 0.0, Epi::BiasRelu),
            (Layout::RowMajor { pad: 1 }, 0.75, Epi::Bias),
            (Layout::Strided, 0.0, Epi::None),
        ] {
            let case = Case {
                m,
                n,
                k,
                la: Layout::RowMajor { pad: 0 },
                lb,
                lc: Layout::RowMajor { pad: 2 },
                alpha: 1.5,
                beta,
                epi,
                seed: s as u64,
            };
            for kern in available() {
                check(&case, Some(kern)).unwrap();
            }
        }
    }
}

/// Small products with `m ≤ 4`, contiguous A rows and contiguous B columns: the
/// matrix-vector path of the x86 kernels, including every `k` remainder modulo the
/// vector width and every column remainder modulo 4.
#[test]
fn small_m_path() {
    // Every layout, so all three unpacked forms run (dot form: A rows and B columns
    // contiguous; axpy form: B rows and C rows contiguous; strided otherwise), on
    // every kernel, and m = 5 just past the unpacked range.
    let layouts = [
        Layout::RowMajor { pad: 1 },
        Layout::ColMajor { pad: 2 },
        Layout::Strided,
    ];
    for m in 1..=5 {
        for k in [1, 2, 7, 16, 17, 33, 100] {
            for n in [1, 3, 4, 9, 17] {
                for (alpha, beta, epi) in [
                    (0.5, 0.0, Epi::BiasRelu),
                    (1.0, -1.0, Epi::None),
                    (1.0, 1.0, Epi::BiasRelu),
                    (-2.0, 0.5, Epi::Bias),
                ] {
                    for (t, (&la, &lb)) in layouts
                        .iter()
                        .flat_map(|a| layouts.iter().map(move |b| (a, b)))
                        .enumerate()
                    {
                        let lc = if t % 2 == 0 {
                            Layout::RowMajor { pad: 0 }
                        } else {
                            Layout::ColMajor { pad: 1 }
                        };
                        let case = Case {
                            m,
                            n,
                            k,
                            la,
                            lb,
                            lc,
                            alpha,
                            beta,
                            epi,
                            seed: (m * 1000 + k * 10 + n + t * 100_000) as u64,
                        };
                        for kern in available() {
                            check(&case, Some(kern)).unwrap();
                        }
                        // And the row-major C for every layout pair.
                        let case = Case {
                            lc: Layout::RowMajor { pad: 2 },
                            ..case
                        };
                        check(&case, None).unwrap();
                    }
                }
            }
        }
    }
}

/// The epilogue's ReLU matches `vector::relu` exactly on signed zeros and NaN:
/// `relu(-0) = +0`, `relu(NaN) = NaN`, on every kernel and in both store paths.
#[test]
fn relu_edge_values() {
    for kern in available() {
        for &(m, n) in &[(8, 48), (16, 96), (3, 5), (1, 40)] {
            let k = 1;
            let a = vec![1.0f32; m * k];
            // B chosen so that the products are -0, +0, NaN, -1, 2 across columns.
            let pattern = [-0.0f32, 0.0, f32::NAN, -1.0, 2.0];
            let b: Vec<f32> = (0..k * n).map(|j| pattern[j % pattern.len()]).collect();
            let bias = vec![-0.0f32; n];
            let mut c = vec![f32::NAN; m * n];
            let mut pack = vec![0.0; pack_len(m, n, k)];
            gemm_with(
                kern,
                1.0,
                MatRef::row_major("a", &a, m, k).unwrap(),
                MatRef::row_major("b", &b, k, n).unwrap(),
                0.0,
                MatMut::row_major("c", &mut c, m, n).unwrap(),
                Epilogue::BiasRelu(&bias),
                &mut pack,
            )
            .unwrap();
            for (idx, &v) in c.iter().enumerate() {
                let want = sae_kernels::kernels::vector::relu(pattern[(idx % n) % pattern.len()]);
                assert!(
                    v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
                    "{}: {m}x{n} element {idx}: {v} vs {want}",
                    kern.name()
                );
            }
        }
    }
}

/// `k = 0`: C becomes `epilogue(β·C)`; with β = 0 the NaN in C is never read.
#[test]
fn empty_inner_dimension() {
    for kern in available() {
        let (m, n) = (3, 4);
        let mut c = vec![f32::NAN; m * n];
        let bias = [1.0, -1.0, 0.5, 0.0];
        gemm_with(
            kern,
            1.0,
            MatRef::row_major("a", &[], m, 0).unwrap(),
            MatRef::row_major("b", &[], 0, n).unwrap(),
            0.0,
            MatMut::row_major("c", &mut c, m, n).unwrap(),
            Epilogue::BiasRelu(&bias),
            &mut [],
        )
        .unwrap();
        assert_eq!(c, [1.0, 0.0, 0.5, 0.0].repeat(m), "{}", kern.name());
    }
}

/// A pack buffer shorter than `pack_len` is rejected before anything is written.
#[test]
fn short_pack_is_rejected() {
    let (m, n, k) = (20, 30, 40);
    let a = vec![1.0; m * k];
    let b = vec![1.0; k * n];
    let mut c = vec![7.0; m * n];
    let mut pack = vec![0.0; pack_len(m, n, k) - 1];
    let r = gemm(
        1.0,
        MatRef::row_major("a", &a, m, k).unwrap(),
        MatRef::row_major("b", &b, k, n).unwrap(),
        0.0,
        MatMut::row_major("c", &mut c, m, n).unwrap(),
        Epilogue::None,
        &mut pack,
    );
    assert!(r.is_err());
    assert!(c.iter().all(|&v| v == 7.0));
}

/// [`pack_b`] rejects a short buffer and [`gemm_packed`] checks shapes and the pack
/// buffer like [`gemm`], leaving C unchanged.
#[test]
fn packed_b_rejects_bad_arguments() {
    let (m, n, k) = (20, 30, 40);
    let a = vec![1.0; m * k];
    let b = vec![1.0; k * n];
    let bv = MatRef::row_major("b", &b, k, n).unwrap();
    let mut short = vec![0.0; packed_b_len(k, n) - 1];
    assert!(pack_b(bv, &mut short).is_err());
    let mut buf = vec![0.0; packed_b_len(k, n)];
    let packed = pack_b(bv, &mut buf).unwrap();
    let mut c = vec![7.0; m * n];
    let mut pack = vec![0.0; pack_len(m, n, k)];
    // Inner dimension mismatch (A is m×(k−1)).
    let r = gemm_packed(
        1.0,
        MatRef::row_major("a", &a[..m * (k - 1)], m, k - 1).unwrap(),
        &packed,
        0.0,
        MatMut::row_major("c", &mut c, m, n).unwrap(),
        Epilogue::None,
        &mut pack,
    );
    assert!(r.is_err());
    // Short pack buffer.
    let r = gemm_packed(
        1.0,
        MatRef::row_major("a", &a, m, k).unwrap(),
        &packed,
        0.0,
        MatMut::row_major("c", &mut c, m, n).unwrap(),
        Epilogue::None,
        &mut pack[1..],
    );
    assert!(r.is_err());
    assert!(c.iter().all(|&v| v == 7.0));
    // An empty B needs no buffer.
    assert_eq!(packed_b_len(0, n), 0);
    assert_eq!(packed_b_len(k, 0), 0);
}

/// A product above the `parallel` feature's work threshold (`m·n·k ≥ 2²⁶`; single-
/// threaded without the feature), with an epilogue and β ≠ 0, checked on a sample of
/// elements (a full f64 reference would be slow in debug builds). With `parallel`,
/// the rows are split across threads at `MC`-row boundaries (260 = 2·128 + 4).
#[test]
fn large_product_sampled() {
    let (m, n, k) = (260, 520, 500);
    let a = fill(m * k, 11);
    let b = fill(n * k, 12); // B = (n×k row-major)ᵀ, as in the encoder
    let bias = fill(n, 13);
    let c0 = fill(m * n, 14);
    // The selected kernel only: the row split is the same loop nest for every kernel,
    // and the scalar kernels are slow in debug builds.
    {
        let mut c = c0.clone();
        let mut pack = vec![f32::NAN; pack_len(m, n, k)];
        gemm(
            0.5,
            MatRef::row_major("a", &a, m, k).unwrap(),
            MatRef::row_major("b", &b, n, k).unwrap().t(),
            -1.0,
            MatMut::row_major("c", &mut c, m, n).unwrap(),
            Epilogue::BiasRelu(&bias),
            &mut pack,
        )
        .unwrap();
        let gamma = (k as f64 + 4.0) * f64::powi(2.0, -23);
        let mut s = 99u64;
        for _ in 0..3000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (i, j) = ((s >> 33) as usize % m, (s >> 13) as usize % n);
            let (mut v, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = 0.5 * f64::from(a[i * k + p]) * f64::from(b[j * k + p]);
                v += t;
                mag += t.abs();
            }
            let cb = -f64::from(c0[i * n + j]) + f64::from(bias[j]);
            v += cb;
            mag += f64::from(c0[i * n + j]).abs() + f64::from(bias[j]).abs();
            let want = v.max(0.0);
            let got = f64::from(c[i * n + j]);
            assert!(
                (got - want).abs() <= gamma * mag,
                "{}: C[{i},{j}] = {got}, want {want}",
                sae_kernels::kernels::active_kernel()
            );
        }
    }
}

/// The 16-bit-weight product `A·Wᵀ` ([`gemm_nt_half_with`]) on every kernel, for
/// bf16 and f16, unpacked (m ≤ 4) and packed shapes, row-major and strided A:
/// - against the f64 reference on the *widened* weights (widening is exact), with the
///   bound of every `f32` product, `(k + 4)·2⁻²³·mag`;
/// - against the `f32` [`gemm`] on the *original* weights, with the bound that adds
///   the weights' own rounding: `u_w·Σ_p|α·a_ip·w_jp|` (`u_w = 2⁻⁸` bf16, `2⁻¹¹`
///   f16; the weights here are ≥ 2⁻¹⁴ in magnitude or 0, so no f16 subnormals) plus
///   both products' summation bounds.
#[test]
fn half_weights_match_reference() {
    for format in [Half::Bf16, Half::F16] {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 37, 100),
            (2, 17, 16),
            (3, 5, 17),
            (4, 50, 300),
            (5, 9, 7),
            (37, 60, 129),
        ] {
            for a_rowmajor in [true, false] {
                for (alpha, beta, epi) in [
                    (1.0, 0.0, Epi::BiasRelu),
                    (0.5, -1.0, Epi::None),
                    (1.0, 0.5, Epi::Bias),
                ] {
                    let x = fill(m * k, (m * 31 + n * 7 + k) as u64);
                    // Weights away from f16's subnormal range: |w| ≥ 2⁻¹⁴ or 0.
                    let w32: Vec<f32> = fill(n * k, 99 + k as u64)
                        .into_iter()
                        .map(|v| if v.abs() < 1e-3 { 0.0 } else { v * 3.0 })
                        .collect();
                    let w16: Vec<u16> = w32.iter().map(|&v| format.from_f32(v)).collect();
                    let wide: Vec<f32> = w16.iter().map(|&v| format.to_f32(v)).collect();
                    let bias = fill(n, 5);
                    let c0 = fill(m * n, 6);
                    let epi = epi.of(&bias);
                    // A as row-major, or as a strided (column-major) view of Aᵀ.
                    let xt: Vec<f32> = (0..k * m).map(|t| x[(t % m) * k + t / m]).collect();
                    let av = if a_rowmajor {
                        MatRef::row_major("a", &x, m, k).unwrap()
                    } else {
                        MatRef::row_major("at", &xt, k, m).unwrap().t()
                    };
                    // Reference on the widened weights.
                    let mut want = c0.clone();
                    let mut mag = vec![0.0f64; m * n];
                    naive::gemm_f64(
                        alpha,
                        av,
                        MatRef::row_major("w", &wide, n, k).unwrap().t(),
                        beta,
                        &mut MatMut::row_major("c", &mut want, m, n).unwrap(),
                        epi,
                        Some(&mut mag),
                    );
                    // The f32 product on the original weights, and its error scale.
                    let mut f32c = c0.clone();
                    let mut mag32 = vec![0.0f64; m * n];
                    naive::gemm_f64(
                        alpha,
                        av,
                        MatRef::row_major("w", &w32, n, k).unwrap().t(),
                        beta,
                        &mut MatMut::row_major("c", &mut f32c, m, n).unwrap(),
                        epi,
                        Some(&mut mag32),
                    );
                    for kern in available() {
                        let mut got = c0.clone();
                        let mut pack = vec![f32::NAN; pack_len(m, n, k)];
                        gemm_nt_half_with(
                            kern,
                            format,
                            alpha,
                            av,
                            &w16,
                            n,
                            beta,
                            MatMut::row_major("c", &mut got, m, n).unwrap(),
                            epi,
                            &mut pack,
                        )
                        .unwrap();
                        let u = f64::from(f32::EPSILON);
                        let uw = f64::from(format.unit_roundoff());
                        for e in 0..m * n {
                            let (g, r, r32) =
                                (f64::from(got[e]), f64::from(want[e]), f64::from(f32c[e]));
                            let tol = (k + 4) as f64 * u * mag[e];
                            let label = format!(
                                "{format:?} {} m={m} n={n} k={k} rowmajor={a_rowmajor} e={e}",
                                kern.name()
                            );
                            assert!((g - r).abs() <= tol, "{label}: {g} vs widened {r}");
                            let tol32 = uw * mag32[e] + tol + (k + 4) as f64 * u * mag32[e];
                            assert!((g - r32).abs() <= tol32, "{label}: {g} vs f32 {r32}");
                        }
                    }
                }
            }
        }
    }
}

/// Bad arguments to the 16-bit product are refused and leave C untouched.
#[test]
fn half_weights_reject_bad_arguments() {
    let x = [1.0f32; 6];
    let w = [0u16; 6];
    let mut c = [7.0f32; 4];
    let run = |w: &[u16], n: usize, c: &mut [f32]| {
        let rows = c.len() / n;
        gemm_nt_half(
            Half::F16,
            1.0,
            MatRef::row_major("a", &x[..rows * 3], rows, 3).unwrap(),
            w,
            n,
            0.0,
            MatMut::row_major("c", c, rows, n).unwrap(),
            Epilogue::None,
            &mut [],
        )
    };
    assert!(run(&w[..5], 2, &mut c).is_err(), "short W");
    assert!(
        run(&w, 3, &mut c[..3]).is_err() || c[..3] != [7.0; 3],
        "n·k = 9 > 6"
    );
    assert_eq!(c, [7.0; 4]);
    // A packed shape with no pack buffer.
    let x8 = [1.0f32; 8 * 3];
    let mut c8 = [7.0f32; 16];
    let r = gemm_nt_half(
        Half::Bf16,
        1.0,
        MatRef::row_major("a", &x8, 8, 3).unwrap(),
        &w,
        2,
        0.0,
        MatMut::row_major("c", &mut c8, 8, 2).unwrap(),
        Epilogue::None,
        &mut [],
    );
    assert!(r.is_err() && c8 == [7.0; 16]);
    assert!(run(&w, 2, &mut c).is_ok(), "valid call");
    assert_eq!(c, [0.0; 4]);
}

/// The bf16 dot-product path ([`gemm_nt_half_bf16_dot`]; `vdpbf16ps` where the CPU
/// has AVX512_BF16, else exactly [`gemm_nt_half`]) on packed shapes, odd `k`
/// included:
/// - with A and W already bf16-representable, the products are exact and only the
///   `f32` summation rounds: the f64 reference bound `(k + 4)·2⁻²³·mag` holds;
/// - with arbitrary f32 A, against the `f32` product: `(2·2⁻⁸ + 2⁻¹⁶)·mag` for the
///   rounding of both factors to bf16, plus the summation bounds;
/// - on a CPU with the feature, the result differs from the f32-compute path (so the
///   bf16 kernel really ran).
#[test]
fn bf16_dot_matches_reference() {
    let u = f64::from(f32::EPSILON);
    let mut differed = false;
    for &(m, n, k) in &[
        (5, 9, 7),
        (8, 48, 1),
        (37, 60, 129),
        (70, 100, 301),
        (9, 17, 2),
    ] {
        for (alpha, beta, epi) in [
            (1.0, 0.0, Epi::BiasRelu),
            (0.5, -1.0, Epi::None),
            (1.0, 0.5, Epi::Bias),
        ] {
            let x32 = fill(m * k, (m + 3 * k) as u64);
            let xb: Vec<f32> = x32
                .iter()
                .map(|&v| Half::Bf16.to_f32(Half::Bf16.from_f32(v)))
                .collect();
            let w32 = fill(n * k, (n + 5 * k) as u64);
            let w: Vec<u16> = w32.iter().map(|&v| Half::Bf16.from_f32(v)).collect();
            let wide: Vec<f32> = w.iter().map(|&v| Half::Bf16.to_f32(v)).collect();
            let bias = fill(n, 8);
            let c0 = fill(m * n, 9);
            let epi = epi.of(&bias);
            for (x, exact) in [(&xb, true), (&x32, false)] {
                let av = MatRef::row_major("a", x, m, k).unwrap();
                let mut want = c0.clone();
                let mut mag = vec![0.0f64; m * n];
                // Exact factors: reference on the bf16 values; else on the f32 ones.
                let wref = if exact { &wide } else { &w32 };
                naive::gemm_f64(
                    alpha,
                    av,
                    MatRef::row_major("w", wref, n, k).unwrap().t(),
                    beta,
                    &mut MatMut::row_major("c", &mut want, m, n).unwrap(),
                    epi,
                    Some(&mut mag),
                );
                let mut got = c0.clone();
                let mut pack = vec![f32::NAN; pack_len(m, n, k)];
                gemm_nt_half_bf16_dot(
                    Half::Bf16,
                    alpha,
                    av,
                    &w,
                    n,
                    beta,
                    MatMut::row_major("c", &mut got, m, n).unwrap(),
                    epi,
                    &mut pack,
                )
                .unwrap();
                let mut f32path = c0.clone();
                gemm_nt_half(
                    Half::Bf16,
                    alpha,
                    av,
                    &w,
                    n,
                    beta,
                    MatMut::row_major("c", &mut f32path, m, n).unwrap(),
                    epi,
                    &mut pack,
                )
                .unwrap();
                differed |= got
                    .iter()
                    .zip(&f32path)
                    .any(|(p, q)| p.to_bits() != q.to_bits());
                for e in 0..m * n {
                    let (g, r) = (f64::from(got[e]), f64::from(want[e]));
                    let sum = (k + 4) as f64 * u * mag[e];
                    let tol = if exact {
                        sum
                    } else {
                        (2.0 / 256.0 + 1.0 / 65536.0) * mag[e] + 2.0 * sum
                    };
                    assert!(
                        (g - r).abs() <= tol,
                        "m={m} n={n} k={k} exact={exact} e={e}: {g} vs {r} (tol {tol:e})"
                    );
                }
            }
        }
    }
    assert_eq!(
        differed,
        bf16_dot_available(),
        "the bf16 kernel must run exactly when the CPU has AVX512_BF16"
    );
}
