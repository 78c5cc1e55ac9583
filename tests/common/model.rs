//! Random tied models whose pre-activations stay away from the ReLU kink.
use super::TestRng;
use super::reference;

pub struct Case {
    pub n: usize,
    pub d: usize,
    pub h: usize,
    pub alpha: f32,
    pub m: Vec<f32>,
    pub b: Vec<f32>,
    pub x: Vec<f32>,
}

pub fn f64v(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

impl Case {
    /// A random case; the bias is nudged until every |pre-activation| ≥ `margin`
    /// so that f32 and f64 agree on every ReLU decision.
    pub fn random(
        rng: &mut TestRng,
        n: usize,
        d: usize,
        h: usize,
        alpha: f32,
        margin: f64,
    ) -> Self {
        let m = rng.vec(h * d, (2.0 / d as f32).sqrt());
        let x = rng.vec(n * d, 1.0);
        let mut b = rng.vec(h, 0.3);
        for j in 0..h {
            for _ in 0..1000 {
                let close = (0..n).any(|i| {
                    let s = f64::from(b[j])
                        + (0..d)
                            .map(|k| f64::from(x[i * d + k]) * f64::from(m[j * d + k]))
                            .sum::<f64>();
                    s.abs() < margin
                });
                if !close {
                    break;
                }
                b[j] += 3.0 * margin as f32;
            }
        }
        Self {
            n,
            d,
            h,
            alpha,
            m,
            b,
            x,
        }
    }

    pub fn reference(&self) -> reference::Ref {
        reference::tied(
            &f64v(&self.m),
            &f64v(&self.b),
            &f64v(&self.x),
            self.n,
            self.d,
            self.h,
            f64::from(self.alpha),
        )
    }
}
