//! Arbitrary arguments to the C ABI (see `capi/tests/args_driver.rs`): no panic
//! crosses the boundary, failures have messages, outputs are untouched on error,
//! successful outputs obey the contract.
#![no_main]

#[allow(dead_code)]
mod driver {
    include!("../../tests/args_driver.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = driver::run(data);
});
