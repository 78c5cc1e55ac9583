//! Decoding fuzzer bytes into shapes, lengths and floats (shared by the targets).
#![allow(dead_code)]

/// Reads the input front to back; past the end it yields zeros, so every input decodes.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// `0..=max`.
    pub fn upto(&mut self, max: usize) -> usize {
        self.u16() as usize % (max + 1)
    }

    /// A float: mostly small values on a grid (so that products are exact enough to
    /// compare), sometimes any bit pattern (NaN, ±∞, subnormals, huge values).
    pub fn f32(&mut self, style: Style) -> f32 {
        match style {
            Style::Grid => f32::from(self.u8() as i8) / 16.0,
            Style::Bits => f32::from_bits(self.u32()),
            Style::Mixed => match self.u8() {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => -0.0,
                4 => f32::from_bits(self.u32()),
                5 => f32::MIN_POSITIVE / 4.0,
                6 => 1e30,
                _ => f32::from(self.u8() as i8) / 16.0,
            },
        }
    }

    pub fn style(&mut self) -> Style {
        match self.u8() % 8 {
            0 => Style::Bits,
            1 | 2 => Style::Mixed,
            _ => Style::Grid,
        }
    }

    pub fn vec(&mut self, len: usize, style: Style) -> Vec<f32> {
        (0..len).map(|_| self.f32(style)).collect()
    }

    /// A buffer length near `want` (usually exact), or anything small.
    pub fn len_near(&mut self, want: Option<usize>) -> usize {
        let cap = 1 << 14;
        match (self.u8() % 16, want) {
            (0, _) => self.upto(64),
            (1, Some(w)) if w > 0 && w <= cap => w - 1,
            (2, Some(w)) if w < cap => w + 1,
            (_, Some(w)) if w <= cap => w,
            _ => self.upto(64),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Style {
    Grid,
    Bits,
    Mixed,
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
