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
use sae_kernels::model::{
    Arch, Dims, LossOptions, Params, ParamsMut, grad_scratch_len, init_tied, loss_and_grad,
};
use sae_kernels::optim::{Optim, Optimizer};

const D: usize = 64;
const H: usize = 256;
/// Rows per batch (one row block).
const N: usize = 8;
const STEPS: usize = 3;
const DIMS: Dims = Dims { d: D, h: H };
/// `grad_scratch_len(Arch::tied(), DIMS, N)`, a `const fn` evaluated at compile time (the
/// run-time query is checked against it): the row block's codes and activations plus
/// O(h). On this target the GEMM runs unpacked (weights read in place), so no pack
/// buffer scales with `h·d`.
const SCRATCH_LEN: usize = grad_scratch_len(Arch::tied(), DIMS, N);

#[entry]
fn main() -> ! {
    static mut M: [f32; H * D] = [0.0; H * D];
    static mut B: [f32; H] = [0.0; H];
    static mut GM: [f32; H * D] = [0.0; H * D];
    static mut GB: [f32; H] = [0.0; H];
    static mut X: [f32; N * D] = [0.0; N * D];
    static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];

    let dims = Dims::new(D, H).unwrap();
    let need = grad_scratch_len(Arch::tied(), dims, black_box(N));
    say!(
        "size_train: d={} h={} n={} scratch {} of {} f32",
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
        let rule = Optimizer::Sgd { momentum: 0.0 };
        let pc = Arch::tied().param_len(dims);
        let mut sgd = Optim::new(rule, dims, pc, &mut [], 0).unwrap();
        let mut p = ParamsMut::tied(dims, &mut M[..], &mut B[..]).unwrap();
        let g = Params::tied(dims, &GM[..], &GB[..]).unwrap();
        sgd.step(&mut p.tensors_mut(), &g.tensors(), 1e-3).unwrap();
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
