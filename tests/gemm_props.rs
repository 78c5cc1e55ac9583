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
    Epilogue, Kernel, MatMut, MatRef, gemm, gemm_with, naive, pack_len,
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
    relu: bool,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (dim(), dim(), dim()),
        (layout(), layout(), layout()),
        prop_oneof![Just(1.0f32), Just(-0.5), Just(2.25), -3.0f32..3.0],
        prop_oneof![2 => Just(0.0f32), 1 => Just(1.0), 1 => Just(-1.5), 1 => -2.0f32..2.0],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_filter("keep debug-build cases small", |((m, n, k), ..)| {
            m * n * k <= 600_000
        })
        .prop_map(|((m, n, k), (la, lb, lc), alpha, beta, relu, seed)| Case {
            m,
            n,
            k,
            la,
            lb,
            lc,
            alpha,
            beta,
            relu,
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
        relu,
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
    let epi = if relu {
        Epilogue::BiasRelu(&bias)
    } else {
        Epilogue::None
    };
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
        for (lb, beta, relu) in [
            (Layout::ColMajor { pad: 0 }, 0.0, true),
            (Layout::RowMajor { pad: 1 }, 0.75, false),
            (Layout::Strided, 0.0, false),
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
                relu,
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
                for (alpha, beta, relu) in [
                    (0.5, 0.0, true),
                    (1.0, -1.0, false),
                    (1.0, 1.0, true),
                    (-2.0, 0.5, false),
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
                            relu,
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
