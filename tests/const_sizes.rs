//! The size queries are `const fn`: firmware can declare `static` buffers sized by
//! them, the compile-time value is the run-time one, and a buffer of that size runs
//! the operation.

use sae_kernels::kernels::gemm::pack_len;
use sae_kernels::metrics::metrics_state_len;
use sae_kernels::model::{
    Arch, Dims, ForwardOutputs, LossOptions, Params, ParamsMut, decode, decode_scratch_len, encode,
    encode_scratch_len, forward, forward_scratch_len, grad_scratch_len, init_tied, loss_and_grad,
};
use sae_kernels::sparse::{csr_top_k_len, encode_csr_scratch_len, encode_sparse_scratch_len};
use std::hint::black_box;
use std::sync::Mutex;

const DIMS: Dims = match Dims::new(24, 96) {
    Ok(d) => d,
    Err(_) => panic!("valid dimensions"),
};
const ROWS: usize = 8;
const ARCHS: [Arch; 4] = [
    Arch::tied(),
    Arch::standard(),
    Arch::topk(4),
    Arch::jumprelu(),
];

/// Each size query of each architecture, evaluated at compile time.
const fn sizes(arch: Arch) -> [usize; 7] {
    [
        arch.param_len(DIMS),
        encode_scratch_len(arch, DIMS, ROWS),
        decode_scratch_len(DIMS, ROWS),
        forward_scratch_len(arch, DIMS, ROWS),
        grad_scratch_len(arch, DIMS, ROWS),
        encode_sparse_scratch_len(arch, DIMS),
        encode_csr_scratch_len(arch, DIMS, ROWS),
    ]
}

const SIZES: [[usize; 7]; 4] = [
    sizes(ARCHS[0]),
    sizes(ARCHS[1]),
    sizes(ARCHS[2]),
    sizes(ARCHS[3]),
];

// `static` buffers for the tied model, sized by the queries (as firmware declares them).
const TIED: Arch = Arch::tied();
static PARAMS: Mutex<[f32; TIED.param_len(DIMS)]> = Mutex::new([0.0; TIED.param_len(DIMS)]);
static GRADS: Mutex<[f32; TIED.param_len(DIMS)]> = Mutex::new([0.0; TIED.param_len(DIMS)]);
static ENCODE: Mutex<[f32; encode_scratch_len(TIED, DIMS, ROWS)]> =
    Mutex::new([0.0; encode_scratch_len(TIED, DIMS, ROWS)]);
static DECODE: Mutex<[f32; decode_scratch_len(DIMS, ROWS)]> =
    Mutex::new([0.0; decode_scratch_len(DIMS, ROWS)]);
static FORWARD: Mutex<[f32; forward_scratch_len(TIED, DIMS, ROWS)]> =
    Mutex::new([0.0; forward_scratch_len(TIED, DIMS, ROWS)]);
static GRAD: Mutex<[f32; grad_scratch_len(TIED, DIMS, ROWS)]> =
    Mutex::new([0.0; grad_scratch_len(TIED, DIMS, ROWS)]);
static METRICS: [f64; metrics_state_len(DIMS)] = [0.0; metrics_state_len(DIMS)];
static CSR: [u32; csr_top_k_len(ROWS, 4)] = [0; csr_top_k_len(ROWS, 4)];
static PACK: [f32; pack_len(64, 48, 32)] = [0.0; pack_len(64, 48, 32)];

#[test]
fn compile_time_sizes_equal_run_time_queries() {
    for (arch, want) in ARCHS.iter().zip(SIZES) {
        // black_box: computed at run time, not folded from the constants.
        let (a, dims, rows) = (black_box(*arch), black_box(DIMS), black_box(ROWS));
        let got = [
            a.param_len(dims),
            encode_scratch_len(a, dims, rows),
            decode_scratch_len(dims, rows),
            forward_scratch_len(a, dims, rows),
            grad_scratch_len(a, dims, rows),
            encode_sparse_scratch_len(a, dims),
            encode_csr_scratch_len(a, dims, rows),
        ];
        assert_eq!(got, want, "{arch:?}");
        // The constants are real sizes: a one-row block never needs more scratch.
        assert!(grad_scratch_len(a, dims, 1) <= want[4], "{arch:?}");
        assert!(want[0] > 0 && want[3] > 0 && want[4] > 0, "{arch:?}");
    }
    assert_eq!(METRICS.len(), metrics_state_len(black_box(DIMS)));
    assert_eq!(CSR.len(), csr_top_k_len(black_box(ROWS), black_box(4)));
    assert_eq!(PACK.len(), pack_len(black_box(64), 48, 32));
    // Other shapes in a const context: small (unpacked), large (capped blocks), empty.
    const PACKS: [usize; 3] = [
        pack_len(3, 5, 7),
        pack_len(200, 1000, 900),
        pack_len(0, 4, 4),
    ];
    let shapes = black_box([(3, 5, 7), (200, 1000, 900), (0, 4, 4)]);
    for ((m, n, k), want) in shapes.into_iter().zip(PACKS) {
        assert_eq!(pack_len(m, n, k), want, "{m}x{n}x{k}");
    }
}

#[test]
fn static_buffers_sized_by_the_queries_run_every_operation() {
    let n = 2 * ROWS + 3; // several blocks and a partial one
    let dims = DIMS;
    let x: Vec<f32> = (0..n * dims.d)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.07)
        .collect();
    let mut params = PARAMS.lock().unwrap();
    let mut grads = GRADS.lock().unwrap();
    init_tied(
        ParamsMut::from_flat(TIED, dims, &mut params[..]).unwrap(),
        9,
    );
    let p = Params::from_flat(TIED, dims, &params[..]).unwrap();
    let opts = LossOptions::alpha(1e-3);

    // Each operation with exactly its static buffer, and the same results as with a
    // heap buffer of the run-time size.
    let mut codes = vec![0.0; n * dims.h];
    encode(p, &x, n, &mut codes, &mut ENCODE.lock().unwrap()[..]).unwrap();
    let mut want = vec![0.0; n * dims.h];
    let mut heap = vec![0.0; encode_scratch_len(TIED, dims, black_box(ROWS))];
    encode(p, &x, n, &mut want, &mut heap).unwrap();
    assert_eq!(codes, want);
    assert!(codes.iter().any(|&c| c > 0.0));

    let mut recon = vec![0.0; n * dims.d];
    decode(p, &codes, n, &mut recon, &mut DECODE.lock().unwrap()[..]).unwrap();
    assert!(recon.iter().any(|&v| v != 0.0));

    let fwd = forward(
        p,
        &x,
        n,
        &opts,
        ForwardOutputs::default(),
        &mut FORWARD.lock().unwrap()[..],
    )
    .unwrap();
    let g = ParamsMut::from_flat(TIED, dims, &mut grads[..]).unwrap();
    let parts = loss_and_grad(p, &x, n, &opts, g, &mut GRAD.lock().unwrap()[..]).unwrap();
    assert_eq!(fwd.loss.to_bits(), parts.loss.to_bits());
    assert!(grads.iter().any(|&v| v != 0.0));

    // One slot fewer than a one-row block needs is refused.
    let short = grad_scratch_len(TIED, dims, 1) - 1;
    let mut s = vec![0.0; short];
    let g = ParamsMut::from_flat(TIED, dims, &mut grads[..]).unwrap();
    assert!(loss_and_grad(p, &x, n, &opts, g, &mut s).is_err());
}
