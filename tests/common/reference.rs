//! An independent, naive f64 implementation of the seed's tied SAE, written from the
//! equations (loops only, no crate code), for the property and gradient tests.

pub struct Ref {
    pub codes: Vec<f64>,
    pub recon: Vec<f64>,
    pub row_sq: Vec<f64>,
    pub row_l1: Vec<f64>,
    pub loss: f64,
    pub dm: Vec<f64>,
    pub db: Vec<f64>,
    /// Smallest |pre-activation| seen (to keep ReLU decisions away from rounding).
    pub min_abs_pre: f64,
}

pub fn tied(m: &[f64], b: &[f64], x: &[f64], n: usize, d: usize, h: usize, alpha: f64) -> Ref {
    let mut pre = vec![0.0; n * h];
    let mut codes = vec![0.0; n * h];
    let mut min_abs_pre = f64::INFINITY;
    for i in 0..n {
        for j in 0..h {
            let mut s = b[j];
            for k in 0..d {
                s += x[i * d + k] * m[j * d + k];
            }
            pre[i * h + j] = s;
            codes[i * h + j] = if s > 0.0 { s } else { 0.0 };
            min_abs_pre = min_abs_pre.min(s.abs());
        }
    }
    let mut recon = vec![0.0; n * d];
    for i in 0..n {
        for k in 0..d {
            recon[i * d + k] = (0..h).map(|j| codes[i * h + j] * m[j * d + k]).sum();
        }
    }
    let row_sq: Vec<f64> = (0..n)
        .map(|i| {
            (0..d)
                .map(|k| (x[i * d + k] - recon[i * d + k]).powi(2))
                .sum()
        })
        .collect();
    let row_l1: Vec<f64> = (0..n)
        .map(|i| (0..h).map(|j| codes[i * h + j].abs()).sum())
        .collect();
    let loss = (0..n).map(|i| row_sq[i] + alpha * row_l1[i]).sum::<f64>() / n as f64;

    // Gradients from the chain rule, element by element.
    let nf = n as f64;
    let g: Vec<f64> = (0..n * d).map(|e| 2.0 / nf * (recon[e] - x[e])).collect();
    let mut dpre = vec![0.0; n * h];
    for i in 0..n {
        for j in 0..h {
            if pre[i * h + j] > 0.0 {
                let gm: f64 = (0..d).map(|k| g[i * d + k] * m[j * d + k]).sum();
                dpre[i * h + j] = gm + alpha / nf;
            }
        }
    }
    let mut dm = vec![0.0; h * d];
    let mut db = vec![0.0; h];
    for j in 0..h {
        for k in 0..d {
            dm[j * d + k] = (0..n)
                .map(|i| codes[i * h + j] * g[i * d + k] + dpre[i * h + j] * x[i * d + k])
                .sum();
        }
        db[j] = (0..n).map(|i| dpre[i * h + j]).sum();
    }
    Ref {
        codes,
        recon,
        row_sq,
        row_l1,
        loss,
        dm,
        db,
        min_abs_pre,
    }
}

/// The loss alone, in f64 (for finite differences).
pub fn loss(m: &[f64], b: &[f64], x: &[f64], n: usize, d: usize, h: usize, alpha: f64) -> f64 {
    let mut total = 0.0;
    for i in 0..n {
        let mut c = vec![0.0; h];
        for j in 0..h {
            let s = b[j] + (0..d).map(|k| x[i * d + k] * m[j * d + k]).sum::<f64>();
            c[j] = if s > 0.0 { s } else { 0.0 };
        }
        let mut sq = 0.0;
        for k in 0..d {
            let r: f64 = (0..h).map(|j| c[j] * m[j * d + k]).sum();
            sq += (x[i * d + k] - r).powi(2);
        }
        total += sq + alpha * c.iter().map(|v| v.abs()).sum::<f64>();
    }
    total / n as f64
}
