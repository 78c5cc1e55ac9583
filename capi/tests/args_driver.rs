// The C ABI's argument checking, driven by arbitrary bytes: shared by the stable test
// `tests/args.rs` (seeded random inputs) and the cargo-fuzz target
// `capi/fuzz/fuzz_targets/args.rs` (`include!`d by both).
//
// The bytes choose a call (init + encode / encode_csr / decode / decode_csr, or a junk
// handle), dimensions (including 0 and overflowing ones), the architecture code, k,
// and for every buffer: NULL, a length near the right one (right, ±1, 0, other),
// misalignment or overlap with another buffer. Memory always honours the contract
// (every non-NULL pointer is valid for its stated length), so anything wrong is the
// library's fault. Checked: no panic reaches the caller (never SAE_ERR_PANIC); a
// failure has a message; outputs are untouched on error (dense and decode calls); on
// success the outputs obey the documented contract.

use sae_kernels_c::*;
use std::ffi::CStr;

struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        // Past the end: 255, which every choice below reads as "the right value".
        let b = self.data.get(self.pos).copied().unwrap_or(255);
        self.pos += 1;
        b
    }
    fn pick(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }
    /// A length near `right`: usually right, sometimes off by one, 0 or other.
    /// (At most 4096: huge shapes get short buffers, which must be refused.)
    fn len_near(&mut self, right: usize) -> usize {
        let len = match self.pick(32) {
            0 => right.saturating_add(1),
            1 => right.saturating_sub(1),
            2 => 0,
            3 => self.pick(64),
            _ => right,
        };
        len.min(4096)
    }
    fn f32(&mut self) -> f32 {
        match self.pick(16) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => 0.0,
            b => (b as f32 - 8.0) * 0.37 + (self.u8() as f32) * 0.01,
        }
    }
}

/// A caller buffer: its storage (bytes, so that a pointer may be misaligned) and the
/// pointer and length handed to the library.
struct Buf {
    store: Vec<u8>,
    off: usize,
    len: usize,
    null: bool,
}

impl Buf {
    fn new<T>(b: &mut Bytes<'_>, right: usize) -> Self {
        let len = b.len_near(right);
        let null = b.pick(48) == 0;
        let misalign = b.pick(64) == 0 && std::mem::align_of::<T>() > 1;
        let size = std::mem::size_of::<T>();
        // Room for the length plus alignment slack plus a misaligning byte.
        let seed = b.u8();
        let store: Vec<u8> = (0..len * size + 16)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        let base = store.as_ptr() as usize;
        let align = std::mem::align_of::<T>();
        let mut off = (align - base % align) % align;
        if misalign {
            off += 1;
        }
        Self {
            store,
            off,
            len,
            null,
        }
    }
    fn ptr<T>(&self) -> *const T {
        if self.null {
            std::ptr::null()
        } else {
            self.store[self.off..].as_ptr().cast()
        }
    }
    fn mut_ptr<T>(&mut self) -> *mut T {
        if self.null {
            std::ptr::null_mut()
        } else {
            self.store[self.off..].as_mut_ptr().cast()
        }
    }
    fn fill_f32(&mut self, b: &mut Bytes<'_>) {
        if self.null {
            return;
        }
        let n = self.len;
        let p = self.mut_ptr::<u8>();
        for i in 0..n {
            let v = b.f32().to_ne_bytes();
            // SAFETY: the storage holds `len` 4-byte values from `off` (see `new`);
            // byte writes need no alignment.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p.add(4 * i), 4) };
        }
    }
    fn snapshot(&self) -> Vec<u8> {
        self.store.clone()
    }
}

fn message() -> String {
    // SAFETY: NUL-terminated, valid on this thread until the next failure.
    unsafe { CStr::from_ptr(sae_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn check_status(s: SaeStatus) {
    assert_ne!(s, SaeStatus::SAE_ERR_PANIC, "panic: {}", message());
    if s != SaeStatus::SAE_OK {
        assert!(!message().is_empty(), "{s:?} without a message");
    }
}

/// Read `n` f32 from a buffer's pointer (byte-wise, alignment-free).
fn read_f32s(buf: &Buf, n: usize) -> Vec<f32> {
    buf.store[buf.off..buf.off + 4 * n]
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Runs one case; returns the call made (0 encode, 1 encode_csr, 2 decode, 3
/// decode_csr, 4 junk handle) and its status, or `None` if `sae_model_init` refused.
pub fn run(data: &[u8]) -> Option<(usize, SaeStatus)> {
    let mut b = Bytes { data, pos: 0 };
    let op = b.pick(5);
    let big = b.pick(16) == 0;
    let (d, h) = if big {
        (1usize << (20 + b.pick(30)), 1usize << (20 + b.pick(30)))
    } else {
        (b.pick(10) + usize::from(b.pick(12) != 0), 1 + b.pick(40))
    };
    let arch = match b.pick(10) {
        0..=3 => SAE_ARCH_STANDARD,
        4..=6 => SAE_ARCH_TOPK,
        7 | 8 => SAE_ARCH_JUMPRELU,
        _ => b.u8() as u32,
    };
    let k = b.pick(6);
    let dh = d.saturating_mul(h);
    let mut w_enc = Buf::new::<f32>(&mut b, dh);
    let mut b_enc = Buf::new::<f32>(&mut b, h);
    let mut w_dec = Buf::new::<f32>(&mut b, dh);
    let mut b_dec = Buf::new::<f32>(&mut b, d);
    let thr_right = if arch == SAE_ARCH_JUMPRELU { h } else { 0 };
    let mut thr = Buf::new::<f32>(&mut b, thr_right);
    for w in [&mut w_enc, &mut b_enc, &mut w_dec, &mut b_dec, &mut thr] {
        w.fill_f32(&mut b);
    }
    let weights = SaeWeights {
        d_in: d,
        d_sae: h,
        architecture: arch,
        apply_b_dec_to_input: b.u8() as u32 % 3,
        k,
        w_enc: w_enc.ptr(),
        w_enc_len: w_enc.len,
        b_enc: b_enc.ptr(),
        b_enc_len: b_enc.len,
        w_dec: w_dec.ptr(),
        w_dec_len: w_dec.len,
        b_dec: b_dec.ptr(),
        b_dec_len: b_dec.len,
        threshold: thr.ptr(),
        threshold_len: thr.len,
    };
    let mut model = SaeModel {
        opaque: [0; SAE_MODEL_WORDS],
    };
    let junk = op == 4;
    if junk {
        for w in model.opaque.iter_mut() {
            *w = u64::from(b.u8()) * 0x0101_0101;
        }
    } else {
        // SAFETY: valid storage and weights (every pointer valid for its length).
        let s = unsafe { sae_model_init(&mut model, &weights) };
        check_status(s);
        if s != SaeStatus::SAE_OK {
            assert_eq!(model.opaque, [0; SAE_MODEL_WORDS], "model written on error");
            return None;
        }
        // A model that initialised has the right shapes.
        assert!(d >= 1 && w_enc.len == dh && b_enc.len == h && b_dec.len == d);
    }
    let n = b.pick(6);
    let block = 1 + b.pick(8);
    let mut slen = 0usize;
    let s = unsafe { sae_encode_csr_scratch_len(&model, block, &mut slen) };
    check_status(s);
    if junk {
        assert_eq!(s, SaeStatus::SAE_ERR_BAD_HANDLE);
    }
    let slen = if s == SaeStatus::SAE_OK {
        slen.min(1 << 16)
    } else {
        64
    };
    let mut x = Buf::new::<f32>(&mut b, n * d.min(4096));
    x.fill_f32(&mut b);
    let mut scratch = Buf::new::<f32>(&mut b, slen);
    let status = match op {
        0 | 4 => {
            let mut codes = Buf::new::<f32>(&mut b, n * h.min(4096));
            // Sometimes the output overlaps the input.
            let overlap = b.pick(12) == 0 && !x.null && x.len > 0;
            let before = codes.snapshot();
            let cp = if overlap {
                x.mut_ptr::<f32>()
            } else {
                codes.mut_ptr()
            };
            let clen = if overlap { x.len } else { codes.len };
            // SAFETY: every pointer is valid for its stated length.
            let s = unsafe {
                sae_encode(
                    &model,
                    x.ptr(),
                    x.len,
                    n,
                    cp,
                    clen,
                    scratch.mut_ptr(),
                    scratch.len,
                )
            };
            check_status(s);
            if overlap {
                assert_ne!(s, SaeStatus::SAE_OK, "overlapping x and codes accepted");
            }
            if s == SaeStatus::SAE_OK {
                assert!(n >= 1 && x.len == n * d && codes.len == n * h);
                let c = read_f32s(&codes, codes.len);
                assert!(c.iter().all(|&v| v >= 0.0 || v.is_nan()), "negative code");
            } else if !overlap {
                assert_eq!(codes.snapshot(), before, "codes written on error {s:?}");
            }
            s
        }
        1 => {
            let cap = b.len_near(n * h.min(64));
            let mut row_ptr = Buf::new::<usize>(&mut b, n + 1);
            let mut idx = Buf::new::<u32>(&mut b, cap);
            let mut val = Buf::new::<f32>(&mut b, cap);
            let capacity = idx.len.min(val.len);
            let mut nnz = usize::MAX;
            let kk = b.pick(4);
            // SAFETY: every pointer is valid for its stated length.
            let s = unsafe {
                sae_encode_csr(
                    &model,
                    x.ptr(),
                    x.len,
                    n,
                    kk,
                    row_ptr.mut_ptr(),
                    row_ptr.len,
                    idx.mut_ptr(),
                    val.mut_ptr(),
                    capacity,
                    scratch.mut_ptr(),
                    scratch.len,
                    &mut nnz,
                )
            };
            check_status(s);
            if s == SaeStatus::SAE_OK {
                assert!(nnz <= capacity);
                let rp: Vec<usize> = row_ptr.store[row_ptr.off..row_ptr.off + 8 * (n + 1)]
                    .chunks_exact(std::mem::size_of::<usize>())
                    .map(|c| usize::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                assert_eq!((rp[0], rp[n]), (0, nnz));
                let ix: Vec<u32> = idx.store[idx.off..idx.off + 4 * nnz]
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                let vs = read_f32s(&val, nnz);
                for w in rp.windows(2) {
                    assert!(w[0] <= w[1]);
                    if kk > 0 {
                        assert!(w[1] - w[0] <= kk);
                    }
                    let row = &ix[w[0]..w[1]];
                    assert!(row.windows(2).all(|p| p[0] < p[1]), "unsorted row");
                }
                assert!(ix.iter().all(|&j| (j as usize) < h));
                assert!(vs.iter().all(|&v| v > 0.0));
            } else if s == SaeStatus::SAE_ERR_CAPACITY {
                assert!(
                    nnz > capacity,
                    "capacity error with needed {nnz} <= {capacity}"
                );
            }
            s
        }
        2 => {
            let mut codes = Buf::new::<f32>(&mut b, n * h.min(4096));
            codes.fill_f32(&mut b);
            let mut recon = Buf::new::<f32>(&mut b, n * d.min(4096));
            let before = recon.snapshot();
            // SAFETY: every pointer is valid for its stated length.
            let s = unsafe {
                sae_decode(
                    &model,
                    codes.ptr(),
                    codes.len,
                    n,
                    recon.mut_ptr(),
                    recon.len,
                    scratch.mut_ptr(),
                    scratch.len,
                )
            };
            check_status(s);
            if s != SaeStatus::SAE_OK {
                assert_eq!(recon.snapshot(), before, "recon written on error {s:?}");
            }
            s
        }
        _ => {
            let nnz = b.pick(12);
            let mut rp = vec![0usize; n + 1];
            for i in 1..=n {
                rp[i] = (rp[i - 1] + b.pick(4)).min(if b.pick(8) == 0 { 99 } else { nnz });
            }
            let ix: Vec<u32> = (0..nnz).map(|_| (b.pick(h.min(255) + 2)) as u32).collect();
            let vs: Vec<f32> = (0..nnz).map(|_| b.f32()).collect();
            let rp_len = b.len_near(n + 1).min(rp.len());
            let mut recon = Buf::new::<f32>(&mut b, n * d.min(4096));
            let before = recon.snapshot();
            // SAFETY: every pointer is valid for its stated length.
            let s = unsafe {
                sae_decode_csr(
                    &model,
                    n,
                    rp.as_ptr(),
                    rp_len,
                    ix.as_ptr(),
                    vs.as_ptr(),
                    nnz,
                    recon.mut_ptr(),
                    recon.len,
                )
            };
            check_status(s);
            if s == SaeStatus::SAE_OK {
                assert!(rp.windows(2).all(|w| w[0] <= w[1]) && rp[n] <= nnz);
                assert!(ix[rp[0]..rp[n]].iter().all(|&j| (j as usize) < h));
            } else {
                assert_eq!(recon.snapshot(), before, "recon written on error {s:?}");
            }
            s
        }
    };
    Some((op, status))
}
