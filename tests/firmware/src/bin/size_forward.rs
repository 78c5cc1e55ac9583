//! Size probe: a forward-only d=64, h=256 deployment. The weights are constants in
//! flash (as pretrained weights would be); the batch, outputs and scratch are in RAM.
//! Prints integers only (no float formatting), so the image is mostly the library.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use panic_semihosting as _;
use sae_firmware::say;
use sae_kernels::model::{Arch, Dims, ForwardOutputs, LossOptions, Params, forward, forward_scratch_len};

const D: usize = 64;
const H: usize = 256;
/// Rows per call (one row block).
const N: usize = 8;
const DIMS: Dims = Dims { d: D, h: H };
/// `forward_scratch_len(Arch::tied(), DIMS, N)`, a `const fn` evaluated at compile time (the
/// run-time query is checked against it): the row block's codes and activations plus
/// O(h). On this target the GEMM runs unpacked (weights read in place), so no pack
/// buffer scales with `h·d`.
const SCRATCH_LEN: usize = forward_scratch_len(Arch::tied(), DIMS, N);

/// Deterministic stand-in weights, computed at compile time into flash.
const fn weights<const L: usize>(seed: u64, scale: f32) -> [f32; L] {
    let mut a = [0.0f32; L];
    let mut s = seed;
    let mut i = 0;
    while i < L {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        a[i] = ((s >> 40) as f32 / 16_777_216.0 - 0.5) * scale;
        i += 1;
    }
    a
}

static M: [f32; H * D] = weights(1, 0.35);
static B: [f32; H] = weights(2, 0.1);

#[entry]
fn main() -> ! {
    static mut X: [f32; N * D] = [0.0; N * D];
    static mut CODES: [f32; N * H] = [0.0; N * H];
    static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];

    let dims = Dims::new(D, H).unwrap();
    let need = forward_scratch_len(Arch::tied(), dims, black_box(N));
    say!(
        "size_forward: d={} h={} n={} scratch {} of {} f32",
        D,
        H,
        N,
        need,
        SCRATCH_LEN
    );
    assert_eq!(need, SCRATCH_LEN, "compile-time and run-time scratch sizes differ");
    for (i, v) in X.iter_mut().enumerate() {
        *v = ((i * 37 % 101) as f32 - 50.0) * 0.02;
    }
    let p = Params::tied(dims, black_box(&M[..]), black_box(&B[..])).unwrap();
    let out = ForwardOutputs {
        codes: Some(&mut CODES[..]),
        ..Default::default()
    };
    let l = forward(
        p,
        black_box(&X[..]),
        N,
        &LossOptions::alpha(1e-3),
        out,
        &mut SCRATCH[..need],
    )
    .unwrap();
    let active = CODES.iter().filter(|&&c| c > 0.0).count();
    say!(
        "size_forward: loss bits {:#010x}, {} active codes",
        l.loss.to_bits(),
        active
    );
    let ok = l.loss.is_finite() && l.loss > 0.0 && active > 0;
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {}
}
