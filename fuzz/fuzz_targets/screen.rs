//! The encoder's bf16 screen against the plain encoder: the same codes, bit for bit.
//!
//! Models are large enough for the screen to run (`d ≥ 128`, `h ≥ 2048`), so their
//! weights come from a seeded generator, built once per shape and kept across inputs;
//! the input bytes choose the architecture (ReLU, JumpReLU, TopK with `k` up to 40;
//! tied or untied), how sparse the codes are (the bias shift), thresholds, a few
//! weights, biases and inputs set to fuzzed values (NaN, ±∞, subnormals, huge), rows
//! scaled up into dense ones, the row count and the block size. Each case encodes the
//! batch with the screen forbidden and allowed (`set_bf16_screen`), in one call and
//! through one `Encoder` in blocks, and asserts the same bits (and the same error, if
//! any). Where the CPU has no fast AVX512_BF16 both sides take the plain path.
#![no_main]

mod common;

use common::{Input, Style};
use libfuzzer_sys::fuzz_target;
use sae_kernels::model::{
    Activation, Arch, Dims, Encoder, Params, Penalty, Weights, encode, encode_scratch_len,
    set_bf16_screen,
};
use std::sync::OnceLock;

/// `(d, h)`: `d` below and above `KC` (768).
const SHAPES: [(usize, usize); 3] = [(128, 2048), (256, 2560), (800, 2048)];

/// Seeded weights of a shape: `W_enc` (`d×h`, about unit-spread pre-activations for
/// unit-spread inputs), its transpose (`M` of a tied model, `W_dec` of an untied one),
/// a bias spread and thresholds.
struct Base {
    w: Vec<f32>,
    wt: Vec<f32>,
    b: Vec<f32>,
    th: Vec<f32>,
}

/// Roughly normal values (a sum of four uniforms), deterministic.
fn normal(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..len).map(|_| (u() + u() + u() + u()) * 1.732).collect()
}

fn base(shape: usize) -> &'static Base {
    static BASES: [OnceLock<Base>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    BASES[shape].get_or_init(|| {
        let (d, h) = SHAPES[shape];
        let s = 1.0 / (d as f32).sqrt();
        let w: Vec<f32> = normal(d * h, 1 + shape as u64)
            .iter()
            .map(|v| v * s)
            .collect();
        let mut wt = vec![0.0f32; h * d];
        for p in 0..d {
            for j in 0..h {
                wt[j * d + p] = w[p * h + j];
            }
        }
        let b = normal(h, 10 + shape as u64)
            .iter()
            .map(|v| v * 0.05)
            .collect();
        let th = normal(h, 20 + shape as u64)
            .iter()
            .map(|v| 0.3 + v * 0.05)
            .collect();
        Base { w, wt, b, th }
    })
}

/// Set up to four fuzzed entries of `v` to fuzzed values.
fn poke(inp: &mut Input<'_>, v: &mut [f32]) {
    for _ in 0..inp.u8() % 5 {
        let i = inp.u32() as usize % v.len();
        v[i] = inp.f32(Style::Mixed);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let shape = inp.u8() as usize % SHAPES.len();
    let (d, h) = SHAPES[shape];
    let base = base(shape);
    let tied = inp.u8() % 2 == 0;
    let activation = match inp.u8() % 3 {
        0 => Activation::Relu,
        1 => Activation::JumpRelu,
        _ => Activation::TopK {
            k: 1 + inp.upto(39),
        },
    };
    let arch = Arch {
        weights: if tied {
            Weights::Tied
        } else {
            Weights::Untied { center_input: true }
        },
        activation,
        penalty: Penalty::None,
    };
    // The bias shift decides how sparse the codes are: dense, sparse as trained SAEs,
    // very sparse, or fuzzed.
    let shift = match inp.u8() % 4 {
        0 => 0.0,
        1 => -2.2,
        2 => -3.5,
        _ => f32::from(inp.u8() as i8) / 32.0,
    };
    let mut b: Vec<f32> = base.b.iter().map(|v| v + shift).collect();
    poke(&mut inp, &mut b);
    let mut th = base.th.clone();
    poke(&mut inp, &mut th);
    // A fuzzed weight, sometimes: the models are shared, so a copy.
    let poke_w = inp.u8() % 8 == 0;
    let (mut w, mut wt) = (None, None);
    if poke_w {
        let mut c = if tied {
            base.wt.clone()
        } else {
            base.w.clone()
        };
        poke(&mut inp, &mut c);
        if tied {
            wt = Some(c);
        } else {
            w = Some(c);
        }
    }
    let w = w.as_deref().unwrap_or(&base.w);
    let wt = wt.as_deref().unwrap_or(&base.wt);
    let bd = vec![0.0f32; d];
    let dims = Dims::new(d, h).unwrap();
    let p = match (tied, activation == Activation::JumpRelu) {
        (true, false) => Params::new(arch, dims, [wt, &b[..]]),
        (true, true) => Params::new(arch, dims, [wt, &b[..], &th[..]]),
        (false, false) => Params::new(arch, dims, [w, &b[..], wt, &bd[..]]),
        (false, true) => Params::new(arch, dims, [w, &b[..], wt, &bd[..], &th[..]]),
    };
    let Ok(p) = p else {
        return;
    };
    // Inputs: seeded rows with fuzzed scales (dense rows) and entries.
    let n = 1 + inp.upto(47);
    let mut x = normal(n * d, u64::from(inp.u16()));
    for _ in 0..inp.u8() % 4 {
        let r = inp.upto(n - 1);
        let s = f32::from(inp.u8()) / 4.0;
        x[r * d..(r + 1) * d].iter_mut().for_each(|v| *v *= s);
    }
    poke(&mut inp, &mut x);
    let block = 1 + inp.upto(n - 1);

    let run = |on: bool| {
        set_bf16_screen(on);
        let mut codes = vec![f32::NAN; n * h];
        let mut s = vec![0.0f32; encode_scratch_len(arch, dims, n)];
        let whole = encode(p, &x, n, &mut codes, &mut s).map(|()| codes);
        let mut codes = vec![f32::NAN; n * h];
        let mut s = vec![0.0f32; encode_scratch_len(arch, dims, block)];
        let blocks = Encoder::new(p, block, &mut s).and_then(|mut enc| {
            for r0 in (0..n).step_by(block) {
                let r = block.min(n - r0);
                enc.encode(
                    &x[r0 * d..(r0 + r) * d],
                    r,
                    &mut codes[r0 * h..(r0 + r) * h],
                )?;
            }
            Ok(codes)
        });
        [whole, blocks]
    };
    let plain = run(false);
    let screened = run(true);
    for (what, (a, b)) in ["one call", "in blocks"]
        .iter()
        .zip(plain.iter().zip(&screened))
    {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                for (q, (u, v)) in a.iter().zip(b).enumerate() {
                    assert_eq!(
                        u.to_bits(),
                        v.to_bits(),
                        "{what}: row {} feature {}: plain {u:e}, screened {v:e}",
                        q / h,
                        q % h
                    );
                }
            }
            (Err(e), Err(f)) => assert_eq!(e, f, "{what}: different errors"),
            _ => panic!("{what}: one side failed: plain {a:?}, screened {b:?}"),
        }
    }
});
