//! `gemm` on arbitrary shapes, strides, α/β, epilogues and values, against the f64
//! reference `naive::gemm_f64`.
//!
//! Asserted:
//! - bad shapes (inner-dimension mismatch, wrong bias length, short pack buffer) give
//!   `Err` and leave C bit-for-bit unchanged;
//! - every element of C's buffer outside the view is never written;
//! - every element whose own inputs (α, row i of A, column j of B, bias j, and c_ij
//!   unless β = 0) are finite, and whose magnitudes cannot overflow f32, is within
//!   `2·(k+4)·u·mag + (k+4)·2⁻¹⁴⁹·max(1,|α|)` of the reference, where
//!   `mag = |α|·Σ_p|a_ip·b_pj| + |β·c_ij| + |bias_j|` and `u = 2⁻²⁴` (the standard
//!   bound for a k-term dot product, plus the α, β, bias and store roundings, plus
//!   underflow). Non-finite inputs elsewhere must not leak into such an element;
//! - β = 0 never reads C: C's view is filled with NaN first, so a read would show;
//! - the bias-ReLU epilogue never stores a negative value or −0.
//!
//! A late input byte picks the kernel: 0 (or none left) the selected one through
//! `gemm`, otherwise one of every kernel this machine can run (scalar, portable, and
//! AVX2 / AVX-512 where the CPU has them) through `gemm_with`.
//!
//! The byte after it may switch to 16-bit weights: `gemm_nt_half` /
//! `gemm_nt_half_with` (bf16 or f16) with `W` (`n×k`, row-major) = `Bᵀ` rounded to the
//! format, checked by the same rules against the reference on the widened weights (the
//! documented contract: `gemm` on the widened weights up to summation order). There an
//! inner-dimension mismatch is a `W` of length `n·k + 1`. Or to B packed beforehand:
//! `pack_b_with` (the picked kernel) into a buffer of `packed_b_len` floats, then
//! `gemm_packed`, under the same rules as `gemm`.
#![no_main]

mod common;

use common::{Input, bits};
use libfuzzer_sys::fuzz_target;
use sae_kernels::kernels::gemm::{
    Epilogue, Kernel, MatMut, MatRef, gemm, gemm_nt_half, gemm_nt_half_with, gemm_packed,
    gemm_with, naive::gemm_f64, pack_b_with, pack_len, packed_b_len, selected,
};
use sae_kernels::kernels::half::Half;

/// Strides for a `rows×cols` view: packed row- or column-major, padded, or arbitrary
/// (possibly zero or overlapping).
fn strides(inp: &mut Input<'_>, rows: usize, cols: usize) -> (usize, usize) {
    match inp.u8() % 8 {
        0..=2 => (cols, 1),
        3 => (1, rows),
        4 => (cols + 1 + inp.upto(3), 1),
        5 => (1, rows + 1 + inp.upto(3)),
        _ => (inp.upto(24), inp.upto(24)),
    }
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

fn scalar(inp: &mut Input<'_>) -> f32 {
    match inp.u8() % 8 {
        0 => 0.0,
        1 | 2 => 1.0,
        3 => -1.0,
        4 => 0.5,
        5 => {
            let s = inp.style();
            inp.f32(s)
        }
        _ => f32::from(inp.u8() as i8) / 8.0,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    // Shapes: mostly small; some cross the KC (256), MC (192) and NC (4096) blocks.
    let (m, n, k) = match inp.u8() % 10 {
        0..=4 => (inp.upto(20), inp.upto(20), inp.upto(40)),
        5 => (1 + inp.upto(5), 1 + inp.upto(5), 250 + inp.upto(50)),
        6 => (185 + inp.upto(15), 1 + inp.upto(3), 1 + inp.upto(3)),
        7 => (1 + inp.upto(1), 4090 + inp.upto(20), 1 + inp.upto(1)),
        _ => (inp.upto(3), inp.upto(3), inp.upto(3)),
    };
    let flags = inp.u8();
    let bad_inner = flags % 32 == 0;
    let b_rows = if bad_inner { k + 1 } else { k };

    let (ars, acs) = strides(&mut inp, m, k);
    let (brs, bcs) = strides(&mut inp, b_rows, n);
    let (crs, ccs) = strides(&mut inp, m, n);
    let (sa, sb, sc) = (inp.style(), inp.style(), inp.style());
    let a_len = extent(m, k, ars, acs) + inp.upto(2);
    let b_len = extent(b_rows, n, brs, bcs) + inp.upto(2);
    let c_len = extent(m, n, crs, ccs) + inp.upto(2);
    let a = inp.vec(a_len, sa);
    let b = inp.vec(b_len, sb);
    let mut c = inp.vec(c_len, sc);
    let alpha = scalar(&mut inp);
    let beta = scalar(&mut inp);
    let use_bias = flags & 0x20 != 0;
    let bias_len = match inp.u8() % 16 {
        0 => n + 1,
        1 if n > 0 => n - 1,
        _ => n,
    };
    let sbias = inp.style();
    let bias = inp.vec(bias_len, sbias);
    let need = pack_len(m, n, k);
    let short_pack = flags & 0x40 != 0 && flags & 0x80 != 0 && need > 0;
    let mut pack = vec![
        f32::NAN;
        if short_pack {
            need - 1
        } else {
            need + inp.upto(8)
        }
    ];

    let av = MatRef::new("a", &a, m, k, ars, acs).expect("a's buffer covers its extent");
    let bv = MatRef::new("b", &b, b_rows, n, brs, bcs).expect("b's buffer covers its extent");
    let Ok(probe) = MatMut::new("c", &mut c, m, n, crs, ccs) else {
        // Overlapping output strides are refused; nothing else to check.
        return;
    };
    drop(probe);
    // Which elements of C's buffer the view covers.
    let mut in_view = vec![false; c_len];
    for i in 0..m {
        for j in 0..n {
            in_view[i * crs + j * ccs] = true;
        }
    }
    if beta == 0.0 {
        // β = 0 must not read C.
        for (v, &inside) in c.iter_mut().zip(&in_view) {
            if inside {
                *v = f32::NAN;
            }
        }
    }
    let before = bits(&c);
    // With a bias: ReLU after it or not (`Epilogue::BiasRelu` / `Epilogue::Bias`).
    let relu = use_bias && inp.u8() % 2 == 0;
    let epi = match (use_bias, relu) {
        (true, true) => Epilogue::BiasRelu(&bias),
        (true, false) => Epilogue::Bias(&bias),
        (false, _) => Epilogue::None,
    };
    let expect_err = bad_inner || short_pack || (use_bias && bias_len != n);

    let pick = inp.u8() as usize;
    let kernels: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect();
    let mode = inp.u8() % 4;
    let half = match mode {
        1 => Some(Half::Bf16),
        2 => Some(Half::F16),
        _ => None,
    };
    let prepacked = mode == 3;
    // 16-bit weights: W = Bᵀ rounded (or one element too many for a bad inner
    // dimension), and its widened values as a k×n view for the reference.
    let (w16, wf): (Vec<u16>, Vec<f32>) = match half {
        Some(_) if bad_inner => (vec![0; n * k + 1], Vec::new()),
        Some(fmt) => {
            let w16: Vec<u16> = (0..n * k)
                .map(|q| fmt.from_f32(bv.at(q % k, q / k)))
                .collect();
            let wf = w16.iter().map(|&x| fmt.to_f32(x)).collect();
            (w16, wf)
        }
        None => (Vec::new(), Vec::new()),
    };
    let bv = match half {
        Some(_) if !bad_inner => {
            MatRef::new("w", &wf, k, n, 1, k).expect("the widened weights cover k×n")
        }
        _ => bv,
    };
    // B packed beforehand, into an unaligned buffer.
    let mut pbuf = vec![
        f32::NAN;
        if prepacked {
            packed_b_len(bv.rows(), bv.cols()) + 1
        } else {
            0
        }
    ];
    let cv = MatMut::new("c", &mut c, m, n, crs, ccs).expect("checked above");
    let res = match (half, pick) {
        (None, _) if prepacked => {
            let kern = if pick == 0 {
                selected()
            } else {
                kernels[(pick - 1) % kernels.len()]
            };
            let pb = pack_b_with(kern, bv, &mut pbuf[1..]).expect("sized by packed_b_len");
            gemm_packed(alpha, av, &pb, beta, cv, epi, &mut pack)
        }
        (None, 0) => gemm(alpha, av, bv, beta, cv, epi, &mut pack),
        (None, _) => {
            let kern = kernels[(pick - 1) % kernels.len()];
            gemm_with(kern, alpha, av, bv, beta, cv, epi, &mut pack)
        }
        (Some(fmt), 0) => gemm_nt_half(fmt, alpha, av, &w16, n, beta, cv, epi, &mut pack),
        (Some(fmt), _) => {
            let kern = kernels[(pick - 1) % kernels.len()];
            gemm_nt_half_with(kern, fmt, alpha, av, &w16, n, beta, cv, epi, &mut pack)
        }
    };
    if expect_err {
        assert!(res.is_err(), "bad arguments accepted: {res:?}");
        assert_eq!(bits(&c), before, "C written on error");
        return;
    }
    res.expect("valid arguments rejected");

    // The reference on a copy of C as it was before the call.
    let mut want: Vec<f32> = before.iter().map(|&x| f32::from_bits(x)).collect();
    let mut mag = vec![0.0f64; m * n];
    {
        let mut wv = MatMut::new("c", &mut want, m, n, crs, ccs).expect("same view");
        gemm_f64(alpha, av, bv, beta, &mut wv, epi, Some(&mut mag));
    }

    let u = f64::from(f32::EPSILON) / 2.0;
    let tiny = f64::from(f32::from_bits(1)); // 2⁻¹⁴⁹
    for (idx, &inside) in in_view.iter().enumerate() {
        if !inside {
            assert_eq!(
                c[idx].to_bits(),
                before[idx],
                "C[{idx}] outside the view written"
            );
        }
    }
    for i in 0..m {
        for j in 0..n {
            let idx = i * crs + j * ccs;
            let got = c[idx];
            if relu {
                assert!(!(got < 0.0), "ReLU stored {got} at ({i},{j})");
                assert_ne!(
                    got.to_bits(),
                    (-0.0f32).to_bits(),
                    "ReLU stored -0 at ({i},{j})"
                );
            }
            let c_old = f32::from_bits(before[idx]);
            let mut finite = alpha.is_finite()
                && (0..k).all(|p| av.at(i, p).is_finite() && bv.at(p, j).is_finite())
                && (beta == 0.0 || (beta.is_finite() && c_old.is_finite()))
                && (!use_bias || bias[j].is_finite());
            let sab: f64 = (0..k)
                .map(|p| (f64::from(av.at(i, p)) * f64::from(bv.at(p, j))).abs())
                .sum();
            let big = 1e30;
            finite &= sab < big && f64::from(alpha).abs() * sab < big && mag[i * n + j] < big;
            if !finite {
                continue;
            }
            let kk = k as f64 + 4.0;
            let tol = 2.0 * kk * u * mag[i * n + j] + kk * tiny * f64::from(alpha).abs().max(1.0);
            let err = (f64::from(got) - f64::from(want[idx])).abs();
            assert!(
                err <= tol,
                "C({i},{j}) = {got:e}, reference {:e}: error {err:e} > {tol:e} \
                 (m={m} n={n} k={k} alpha={alpha:e} beta={beta:e} bias={use_bias} relu={relu})",
                want[idx]
            );
        }
    }
});
