//! Train a tied SAE (d=16, h=64, 16 rows, 3 SGD then 2 Adam steps) on the Cortex-M4F, entirely in
//! static buffers with no allocator, and check every observation of the scenario
//! against the values the host computed (`tests/firmware_shared/expected.rs`, regenerated
//! and checked by the main crate's `tests/firmware_expected.rs`). Exit status 0 means every check
//! passed; 1 means a check failed or something panicked.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use panic_semihosting as _;
use sae_firmware::expected::EXPECTED;
use sae_firmware::say;
use sae_firmware::scenario::{self, Buffers, D, H, Kind, N, SCRATCH_LEN, STATE_LEN};

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` references (in .bss), without unsafe.
    static mut M: [f32; H * D] = [0.0; H * D];
    static mut B: [f32; H] = [0.0; H];
    static mut X: [f32; N * D] = [0.0; N * D];
    static mut CODES: [f32; N * H] = [0.0; N * H];
    static mut RECON: [f32; N * D] = [0.0; N * D];
    static mut GM: [f32; H * D] = [0.0; H * D];
    static mut GB: [f32; H] = [0.0; H];
    static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];
    static mut STATE: [f32; STATE_LEN] = [0.0; STATE_LEN];

    let buf = Buffers {
        m: black_box(M),
        b: black_box(B),
        x: black_box(X),
        codes: black_box(CODES),
        recon: black_box(RECON),
        gm: black_box(GM),
        gb: black_box(GB),
        scratch: black_box(SCRATCH),
        state: black_box(STATE),
    };
    let (mut checked, mut failed) = (0usize, 0usize);
    let mut first_loss = f32::NAN;
    let mut last_loss = f32::NAN;
    let mut observe = |kind: Kind, name: &'static str, step: usize, got: &[f32]| {
        if kind == Kind::Trace {
            return;
        }
        if name == "grad.loss" && step == 0 {
            first_loss = got[0];
        }
        if name == "adam.final_loss" {
            last_loss = got[0];
        }
        let Some(&(_, _, want)) = EXPECTED.iter().find(|e| e.0 == name && e.1 == step) else {
            say!("FAIL {}[{}]: no expected value", name, step);
            failed += 1;
            return;
        };
        checked += 1;
        let mut exp = [0.0f32; 1024];
        let err = if want.len() != got.len() || want.len() > exp.len() {
            f32::INFINITY
        } else {
            for (e, &w) in exp.iter_mut().zip(want) {
                *e = f32::from_bits(w);
            }
            scenario::rel_err(got, &exp[..want.len()])
        };
        let tol = scenario::tolerance(name);
        // `!(err <= tol)` so that a NaN error fails.
        if !(err <= tol) {
            say!("FAIL {}[{}]: rel err {:e} > {:e}", name, step, err, tol);
            failed += 1;
        } else {
            say!("ok   {}[{}]: rel err {:e} <= {:e}", name, step, err, tol);
        }
    };
    if let Err(e) = scenario::run(buf, &mut observe) {
        say!("FAIL library error: {}", e);
        failed += 1;
    }
    if checked != EXPECTED.len() {
        say!(
            "FAIL {} of {} expected observations checked",
            checked,
            EXPECTED.len()
        );
        failed += 1;
    }
    // !(a < b) so that NaN fails
    if !(last_loss < first_loss) {
        say!(
            "FAIL training did not lower the loss: {} -> {}",
            first_loss,
            last_loss
        );
        failed += 1;
    }
    say!(
        "loss {} -> {} after {} SGD and {} Adam steps",
        first_loss,
        last_loss,
        scenario::STEPS,
        scenario::ADAM_STEPS
    );
    if failed == 0 {
        say!("train_sae: {} checks passed, 0 failed", checked);
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        say!("train_sae: {} failed", failed);
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {}
}
