//! Shared code of the firmware images: the training scenario and the host's results.
#![no_std]

pub mod expected;
pub mod scenario;

/// Print a line through semihosting (QEMU's stdout).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { cortex_m_semihosting::hprintln!($($t)*) };
}
