//! `model::encode` applies the bias and a ReLU in the GEMM's store for every
//! activation, then TopK / JumpReLU on `relu(pre)`, and takes row blocks as large as
//! its scratch allows (not capped at `MAX_BLOCK_ROWS`). Checked here bit for bit
//! against the unfused definition built from public pieces: the pre-activations by
//! the same GEMM without epilogue, the bias added by `vector::axpy`, then
//! `topk_relu_row` / `jumprelu_row` on the raw pre-activations. The data has ties,
//! ±0, rows with fewer than `k` positive pre-activations, negative and NaN
//! thresholds, and NaN inputs.

use sae_kernels::kernels::gemm::{Epilogue, MatMut, MatRef, gemm, pack_len};
use sae_kernels::kernels::vector;
use sae_kernels::model::activation::{jumprelu_row, topk_relu_row};
use sae_kernels::model::{Arch, Dims, MAX_BLOCK_ROWS, Params, encode, encode_scratch_len};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    /// Multiples of 1/8 in [-1, 1): many exact ties.
    fn coarse(&mut self) -> f32 {
        (self.next() % 16) as f32 / 8.0 - 1.0
    }
}

/// The unfused definition, one row block at a time of `block` rows (the block size
/// decides whether a product of at most 4 rows runs unpacked, which sums in another
/// order, so the reference uses the same blocks as the encode under test).
#[allow(clippy::too_many_arguments)]
fn reference(
    arch: Arch,
    dims: Dims,
    t: [&[f32]; 5],
    x: &[f32],
    n: usize,
    block: usize,
    center: bool,
) -> Vec<f32> {
    let Dims { d, h } = dims;
    let [w_enc, b_enc, _, b_dec, th] = t;
    let mut out = vec![0.0; n * h];
    let mut sel = vec![0.0; h];
    for r0 in (0..n).step_by(block) {
        let rows = block.min(n - r0);
        let mut xin = x[r0 * d..(r0 + rows) * d].to_vec();
        if center {
            for row in xin.chunks_exact_mut(d) {
                for (v, &b) in row.iter_mut().zip(b_dec) {
                    *v -= b;
                }
            }
        }
        let pre = &mut out[r0 * h..(r0 + rows) * h];
        let mut pack = vec![0.0; pack_len(rows, h, d)];
        gemm(
            1.0,
            MatRef::row_major("x", &xin, rows, d).unwrap(),
            MatRef::row_major("w_enc", w_enc, d, h).unwrap(),
            0.0,
            MatMut::row_major("pre", pre, rows, h).unwrap(),
            Epilogue::None,
            &mut pack,
        )
        .unwrap();
        for row in pre.chunks_exact_mut(h) {
            vector::axpy(1.0, b_enc, row);
            match arch.activation {
                sae_kernels::model::Activation::TopK { k } => topk_relu_row(row, k, &mut sel),
                sae_kernels::model::Activation::JumpRelu => jumprelu_row(row, th),
                sae_kernels::model::Activation::Relu => vector::relu_inplace(row),
            }
        }
    }
    out
}

#[test]
fn fused_encode_equals_the_unfused_definition() {
    let mut rng = Rng(0x5eed);
    let (d, h) = (24, 96);
    let dims = Dims::new(d, h).unwrap();
    let w_enc: Vec<f32> = (0..d * h).map(|_| rng.coarse() * 0.5).collect();
    // Some features with a strongly negative bias: rows with few positives.
    let b_enc: Vec<f32> = (0..h)
        .map(|j| if j % 3 == 0 { -4.0 } else { rng.coarse() })
        .collect();
    let w_dec = vec![0.0; h * d];
    let b_dec: Vec<f32> = (0..d).map(|_| rng.coarse() * 0.25).collect();
    // Thresholds: positive, zero, negative, NaN.
    let th: Vec<f32> = (0..h)
        .map(|j| match j % 5 {
            0 => 0.0,
            1 => -0.5,
            2 => f32::NAN,
            _ => rng.coarse().abs(),
        })
        .collect();
    let n = 300; // more than MAX_BLOCK_ROWS: one block only with enough scratch
    assert!(n > MAX_BLOCK_ROWS);
    let mut x: Vec<f32> = (0..n * d).map(|_| rng.coarse() * 2.0).collect();
    x[7 * d + 3] = f32::NAN; // a NaN row
    x[11 * d + 5] = -f32::NAN;
    for row in x.chunks_exact_mut(d).skip(20).step_by(17) {
        row.fill(-3.0); // rows with few positive pre-activations
    }
    for arch in [
        Arch::standard(),
        Arch::topk(5),
        Arch::topk(40),
        Arch::jumprelu(),
    ] {
        let jump = arch.activation == sae_kernels::model::Activation::JumpRelu;
        let tensors: Vec<&[f32]> = if jump {
            vec![&w_enc, &b_enc, &w_dec, &b_dec, &th]
        } else {
            vec![&w_enc, &b_enc, &w_dec, &b_dec]
        };
        let p = if jump {
            Params::new(arch, dims, [&w_enc, &b_enc, &w_dec, &b_dec, &th]).unwrap()
        } else {
            Params::new(arch, dims, [&w_enc, &b_enc, &w_dec, &b_dec]).unwrap()
        };
        let t = [tensors[0], tensors[1], tensors[2], tensors[3], &th[..]];
        // One block for the whole batch, the capped size, small and unpacked blocks.
        for block in [n, MAX_BLOCK_ROWS, 64, 7, 3, 1] {
            let mut scratch = vec![0.0; encode_scratch_len(arch, dims, block)];
            // Exactly the plan for `block` rows: the block used is `block` (the
            // length grows with the block because of input centring).
            let mut got = vec![f32::NAN; n * h];
            encode(p, &x, n, &mut got, &mut scratch).unwrap();
            let want = reference(arch, dims, t, &x, n, block, true);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{arch:?}, block {block}: code {i} (row {}): {a} vs {b}",
                    i / h
                );
            }
            if arch == Arch::topk(5) {
                // Rows where fewer than k codes are positive exist (the check covers them).
                assert!(
                    want.chunks_exact(h)
                        .any(|r| r.iter().filter(|&&v| v > 0.0).count() < 5)
                );
            }
        }
    }
}

#[test]
fn encode_blocks_grow_past_max_block_rows_with_scratch() {
    let (d, h) = (8, 16);
    let dims = Dims::new(d, h).unwrap();
    let arch = Arch::standard(); // centres its input: the scratch grows with the block
    let one = encode_scratch_len(arch, dims, 1);
    let cap = encode_scratch_len(arch, dims, MAX_BLOCK_ROWS);
    let big = encode_scratch_len(arch, dims, 1000);
    assert!(one < cap && cap < big, "{one} {cap} {big}");
    assert_eq!(big - cap, (1000 - MAX_BLOCK_ROWS) * d);
    // Without centring the length stops growing once the pack buffer is at its cap.
    let tied = Arch::tied();
    assert_eq!(
        encode_scratch_len(tied, dims, 1000),
        encode_scratch_len(tied, dims, 128)
    );
}
