//! The C ABI's argument checking on seeded random inputs (the same driver as the
//! cargo-fuzz target `capi/fuzz`, which explores further): no panic crosses the
//! boundary, failures have messages, outputs are untouched on error, successful
//! outputs obey the contract. See `args_driver.rs`.

#[path = "args_driver.rs"]
mod args_driver;

#[test]
fn arbitrary_arguments_are_checked() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    // [op][0 = refused, 1 = ok]
    let mut seen = [[0usize; 2]; 5];
    let mut refused_init = 0;
    for _ in 0..8000 {
        let bytes: Vec<u8> = (0..160)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        match args_driver::run(&bytes) {
            None => refused_init += 1,
            Some((op, s)) => seen[op][usize::from(s == sae_kernels_c::SaeStatus::SAE_OK)] += 1,
        }
    }
    // The driver reaches both outcomes of every call (junk handles are always refused).
    println!("refused init: {refused_init}; per call [refused, ok]: {seen:?}");
    assert!(refused_init > 100);
    for (op, [bad, good]) in seen.iter().enumerate() {
        assert!(*bad > 10, "call {op}: only {bad} refusals");
        assert!(op == 4 || *good > 10, "call {op}: only {good} successes");
    }
    assert_eq!(seen[4][1], 0);
}
