//! Allocation in the std layer is fallible: a model or batch too large for memory is
//! an `Error::Alloc` naming the buffer, never an abort of the process.
//!
//! The sizes here (2^62 bytes) are valid `usize` byte counts that no allocator can
//! satisfy, so the allocator itself refuses. 64-bit targets only (on 32-bit ones
//! these dimensions overflow `usize` and are refused earlier as `Error::Overflow`).
#![cfg(target_pointer_width = "64")]

use sae_kernels::optim::{Decay, L1Warmup, LrSchedule};
use sae_kernels::{
    Error,
    model::{Arch, Dims, ParamsMut, init_tied},
    optim::Optimizer,
    owned::{Sae, TrainConfig, Trainer},
    train::TrainOptions,
};

fn config(batch: usize) -> TrainConfig {
    TrainConfig {
        optimizer: Optimizer::default().into(),
        lr: LrSchedule {
            peak: 1e-3,
            warmup_steps: 0,
            decay: Decay::Cosine,
            decay_start: 10,
            total_steps: 10,
            final_scale: 0.1,
        },
        l1: L1Warmup {
            alpha: 0.1,
            warmup_steps: 0,
        },
        batch,
        dead_window_tokens: None,
    }
}

#[test]
fn model_too_large_for_memory_is_an_error() {
    // h·d = 2^60 f32 = 2^62 bytes.
    let dims = Dims::new(1 << 20, 1 << 40).unwrap();
    let e = Sae::new(Arch::tied(), dims, 0).unwrap_err();
    assert_eq!(
        e,
        Error::Alloc {
            arg: "params",
            bytes: (1 << 62) + (1 << 42) // M and b
        }
    );
    assert!(e.to_string().contains("cannot allocate"), "{e}");
    // A size that fits is the seed's initialisation over one flat buffer.
    let small = Dims::new(8, 12).unwrap();
    let mut want = vec![0.0; Arch::tied().param_len(small)];
    init_tied(
        ParamsMut::from_flat(Arch::tied(), small, &mut want).unwrap(),
        5,
    );
    let sae = Sae::new(Arch::tied(), small, 5).unwrap();
    assert_eq!(sae.as_flat(), &want[..]);
    assert!(want.iter().any(|&v| v != 0.0));
}

#[test]
fn trainer_with_a_batch_too_large_for_memory_is_an_error() {
    let sae = Sae::new(Arch::tied(), Dims::new(4, 8).unwrap(), 1).unwrap();
    // batch·d = 2^58·4 f32 = 2^62 bytes: the batch buffer cannot be allocated.
    let e = Trainer::new(sae.clone(), TrainOptions::default(), config(1 << 58)).unwrap_err();
    assert_eq!(
        e,
        Error::Alloc {
            arg: "batch",
            bytes: 1 << 62
        }
    );
    // batch·d overflowing usize is refused before any allocation.
    let e = Trainer::new(sae.clone(), TrainOptions::default(), config(usize::MAX / 2)).unwrap_err();
    assert_eq!(e, Error::Overflow { arg: "batch" });
    // And a sensible batch still works.
    assert!(Trainer::new(sae, TrainOptions::default(), config(16)).is_ok());
}
