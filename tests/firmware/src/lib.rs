//! Shared code of the firmware images: the training scenario and the host's results
//! (`tests/firmware_shared/`, also compiled by the main crate's tests).
#![no_std]

// Both files live outside this crate, in `tests/firmware_shared/`, because the main
// crate's `tests/firmware_expected.rs` compiles them too and `cargo package` leaves out
// every folder holding a Cargo.toml (this one): there they ship with the crate.
#[path = "../../firmware_shared/expected.rs"]
pub mod expected;
#[path = "../../firmware_shared/scenario.rs"]
pub mod scenario;

/// Print a line through semihosting (QEMU's stdout).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { cortex_m_semihosting::hprintln!($($t)*) };
}
