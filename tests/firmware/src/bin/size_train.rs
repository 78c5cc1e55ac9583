//! Size probe: training a d=64, h=256 tied SAE on the device. Parameters, gradients,
//! batch and scratch all live in RAM; a few SGD steps must lower the loss.
//! Prints integers only (no float formatting), so the image is mostly the library.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use panic_semihosting as _;
use sae_firmware::say;
use sae_kernels::{
    Arch, Dims, LossOptions, Params, ParamsMut, TiedParams, TiedParamsMut, grad_scratch_len,
    init_tied, loss_and_grad, sgd_step,
};

const D: usize = 64;
const H: usize = 256;
/// Rows per batch (one row block).
const N: usize = 8;
const STEPS: usize = 3;
/// ≥ `grad_scratch_len(Arch::tied(), dims, N)` (checked at run time), with headroom: the GEMM pack
/// buffer grows with the largest micro-kernel tile the library has.
const SCRATCH_LEN: usize = 40 * 1024;

#[entry]
fn main() -> ! {
    static mut M: [f32; H * D] = [0.0; H * D];
    static mut B: [f32; H] = [0.0; H];
    static mut GM: [f32; H * D] = [0.0; H * D];
    static mut GB: [f32; H] = [0.0; H];
    static mut X: [f32; N * D] = [0.0; N * D];
    static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];

    let dims = Dims::new(D, H).unwrap();
    let need = grad_scratch_len(Arch::tied(), dims, N);
    say!(
        "size_train: d={} h={} n={} scratch {} of {} f32",
        D,
        H,
        N,
        need,
        SCRATCH_LEN
    );
    assert!(
        need <= SCRATCH_LEN,
        "SCRATCH_LEN too small: raise it to the need printed above"
    );
    for (i, v) in X.iter_mut().enumerate() {
        *v = ((i * 37 % 101) as f32 - 50.0) * 0.02;
    }
    init_tied(
        ParamsMut::tied(dims, &mut M[..], &mut B[..]).unwrap(),
        black_box(5),
    );
    let mut losses = [0.0f32; STEPS];
    for l in losses.iter_mut() {
        let p = Params::tied(dims, &M[..], &B[..]).unwrap();
        let g = ParamsMut::tied(dims, &mut GM[..], &mut GB[..]).unwrap();
        *l = loss_and_grad(
            p,
            black_box(&X[..]),
            N,
            &LossOptions::alpha(1e-3),
            g,
            &mut SCRATCH[..need],
        )
        .unwrap()
        .loss;
        let p = TiedParamsMut::new(dims, &mut M[..], &mut B[..]).unwrap();
        sgd_step(p, TiedParams::new(dims, &GM[..], &GB[..]).unwrap(), 1e-3).unwrap();
    }
    say!(
        "size_train: loss bits {:#010x} -> {:#010x} in {} steps",
        losses[0].to_bits(),
        losses[STEPS - 1].to_bits(),
        STEPS
    );
    let ok = losses[STEPS - 1] < losses[0];
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {}
}
