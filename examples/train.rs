//! Train a tied SAE: `cargo run --release --example train [-- FLAGS]`.
//!
//! With no flags it trains on the built-in toy superposition benchmark (ground-truth
//! features, scored by MMCS); with `--input acts.npy` on real activations. Writes the
//! model, a metrics CSV and SVG plots to `--out` (default `out/train`).

use clap::Parser;
use plotters::prelude::*;
use sae_kernels::format::npy::read_npy;
use sae_kernels::metrics::{Summary, mmcs};
use sae_kernels::optim::{Decay, L1Warmup, LrSchedule};
use sae_kernels::toy::ToyConfig;
use sae_kernels::{
    ArrayBatches, BatchSource, Dims, Optimizer, TiedSae, ToyBatches, TrainConfig, Trainer,
    save_model,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Train a tied sparse autoencoder (c = ReLU(M·x + b), x̂ = Mᵀ·c) with Adam.
///
/// Without --input, trains on the toy superposition benchmark of Sharkey et al. (512
/// ground-truth features in 256 dimensions, ~5 active per sample) and reports how well
/// the learned dictionary recovers them (MMCS).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A 2-D .npy file (rows × d, float32 or float16) of activations to train on;
    /// 10% of the rows (at most 8192) are held out for evaluation.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Dictionary size h (number of features).
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// L1 sparsity coefficient α (reached after a linear warm-up over the first 5% of
    /// steps).
    #[arg(long, default_value_t = 0.1)]
    alpha: f32,
    /// Peak Adam learning rate (warm-up over 100 steps, cosine decay over the last 20%
    /// to 10% of the peak).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// Rows per minibatch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Number of optimizer steps.
    #[arg(long, default_value_t = 4000)]
    steps: u64,
    /// Seed for the initialisation, the shuffling and the toy data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
    /// Evaluate on the held-out rows every this many steps.
    #[arg(long, default_value_t = 200)]
    eval_every: u64,
    /// Toy benchmark: input width d.
    #[arg(long, default_value_t = 256)]
    toy_d: usize,
    /// Toy benchmark: number of ground-truth features G.
    #[arg(long, default_value_t = 512)]
    toy_features: usize,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("bad arguments");
            eprintln!("{line} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// One CSV/plot row.
struct Row {
    step: u64,
    loss: f64,
    s: Summary,
}

fn run(a: &Args) -> Result<(), String> {
    if a.hidden == 0 || a.batch == 0 || a.steps == 0 {
        return Err("--hidden, --batch and --steps must be at least 1".into());
    }
    if !(a.alpha.is_finite() && a.alpha >= 0.0) {
        return Err(format!("--alpha must be finite and >= 0, got {}", a.alpha));
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(format!("--lr must be finite and > 0, got {}", a.lr));
    }
    let too_big = |x: usize, y: usize| x.checked_mul(y).is_none_or(|p| p > 1 << 28);
    if a.input.is_none() && too_big(a.toy_features, a.toy_d) {
        return Err("--toy-features × --toy-d is too large (at most 2^28)".into());
    }
    if too_big(a.batch, a.toy_d.max(1)) && a.input.is_none() {
        return Err("--batch × --toy-d is too large (at most 2^28)".into());
    }
    let t0 = Instant::now();
    // Data: the toy benchmark, or a .npy file split into train / held-out.
    let (mut source, held, toy): (Box<dyn BatchSource>, Vec<f32>, Option<ToyBatches>) = match &a
        .input
    {
        None => {
            let cfg = ToyConfig::new(a.toy_d, a.toy_features);
            let toy = ToyBatches::new(cfg, a.seed).map_err(|e| format!("toy benchmark: {e}"))?;
            let held = toy
                .sample(8192, a.seed ^ 0xE7A1)
                .map_err(|e| format!("toy benchmark: {e}"))?;
            (Box::new(toy.clone()), held, Some(toy))
        }
        Some(path) => {
            let acts = read_npy(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let n_held = (acts.rows / 10).min(8192);
            if acts.rows - n_held < a.batch || n_held == 0 {
                return Err(format!(
                    "{}: {} rows is too few for --batch {} plus a held-out set",
                    path.display(),
                    acts.rows,
                    a.batch
                ));
            }
            let split = (acts.rows - n_held) * acts.d;
            let mut data = acts.data;
            let held = data.split_off(split);
            let src = ArrayBatches::new(data, acts.d, a.batch, a.seed)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            (Box::new(src), held, None)
        }
    };
    let d = source.d();
    if too_big(a.batch, d) {
        return Err(format!("--batch {} is too large for d = {d}", a.batch));
    }
    if too_big(a.hidden, d) {
        return Err(format!(
            "--hidden {} is too large for d = {d} (at most 2^28 dictionary entries)",
            a.hidden
        ));
    }
    let dims = Dims::new(d, a.hidden).map_err(|e| format!("--hidden: {e}"))?;
    let config = TrainConfig {
        optimizer: Optimizer::default(),
        lr: LrSchedule {
            peak: a.lr,
            warmup_steps: 100.min(a.steps / 10),
            decay: Decay::Cosine,
            decay_start: a.steps - a.steps / 5,
            total_steps: a.steps,
            final_scale: 0.1,
        },
        l1: L1Warmup {
            alpha: a.alpha,
            warmup_steps: a.steps / 20,
        },
        batch: a.batch,
    };
    let mut trainer =
        Trainer::new(TiedSae::new(dims, a.seed), config).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("--out {}: cannot create directory: {e}", a.out.display()))?;
    println!(
        "training a tied SAE: d = {d}, h = {}, {} steps of {} rows, alpha = {}, lr = {} ({})",
        a.hidden,
        a.steps,
        a.batch,
        a.alpha,
        a.lr,
        match &toy {
            Some(t) => format!(
                "toy benchmark: {} ground-truth features, {} mean active",
                t.config.g, t.config.mean_active
            ),
            None => format!("{} held-out rows", held.len() / d),
        }
    );
    let mut rows: Vec<Row> = Vec::new();
    trainer
        .fit(
            source.as_mut(),
            a.steps,
            &held,
            a.eval_every,
            true,
            &mut |step, loss, s| rows.push(Row { step, loss, s: *s }),
        )
        .map_err(|e| format!("training stopped at step {}: {e}", trainer.steps()))?;
    let train_secs = t0.elapsed().as_secs_f64();
    let (fin, counts) = trainer
        .evaluate(&held, held.len() / d)
        .map_err(|e| e.to_string())?;
    let sae = trainer.sae();
    let score = match &toy {
        Some(t) => {
            Some(mmcs(&t.features, t.config.g, sae.m(), a.hidden, d).map_err(|e| e.to_string())?)
        }
        None => None,
    };

    // Outputs.
    let out = &a.out;
    save_model(sae, &out.join("model.saek")).map_err(|e| format!("writing the model: {e}"))?;
    write_csv(&out.join("metrics.csv"), &rows).map_err(|e| format!("writing metrics.csv: {e}"))?;
    plot_curves(&out.join("loss_l0.svg"), &rows).map_err(|e| format!("plotting: {e}"))?;
    let freq: Vec<f64> = counts.iter().map(|&c| c / fin.rows as f64).collect();
    plot_hist(&out.join("feature_frequency.svg"), &freq).map_err(|e| format!("plotting: {e}"))?;

    println!();
    println!(
        "held-out evaluation ({} rows) after {} steps:",
        fin.rows,
        trainer.steps()
    );
    println!("  {:<34} {:>10}", "metric", "value");
    println!(
        "  {:<34} {:>10.5}",
        "MSE (mean ||x - x^||^2 per row)", fin.mse
    );
    println!("  {:<34} {:>10.5}", "FVU (vs per-coordinate mean)", fin.fvu);
    println!("  {:<34} {:>10.3}", "L0 (active features per row)", fin.l0);
    println!("  {:<34} {:>10.4}", "L1 (mean ||c||_1)", fin.l1);
    println!(
        "  {:<34} {:>10.4}",
        "dead fraction (no firing in set)", fin.dead_fraction
    );
    match score {
        Some(s) => println!("  {:<34} {:>10.4}", "MMCS vs ground truth", s),
        None => println!("  {:<34} {:>10}", "MMCS vs ground truth", "n/a"),
    }
    println!(
        "  {:<34} {:>9.1}s",
        "wall time (training + eval)", train_secs
    );
    println!();
    println!(
        "wrote {0}/model.saek, {0}/metrics.csv, {0}/loss_l0.svg, {0}/feature_frequency.svg",
        out.display()
    );
    Ok(())
}

fn write_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "step,loss,mse,l1,l0,fvu,dead_fraction")?;
    for r in rows {
        writeln!(
            f,
            "{},{},{},{},{},{},{}",
            r.step, r.loss, r.s.mse, r.s.l1, r.s.l0, r.s.fvu, r.s.dead_fraction
        )?;
    }
    f.flush()
}

fn plot_curves(path: &Path, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let max_step = rows.last().map_or(1, |r| r.step).max(1);
    let series: [(&str, Vec<(u64, f64)>); 2] = [
        (
            "training loss (mean per step)",
            rows.iter().map(|r| (r.step, r.loss)).collect(),
        ),
        (
            "held-out L0 (active features / row)",
            rows.iter().map(|r| (r.step, r.s.l0)).collect(),
        ),
    ];
    for (area, (title, pts)) in [left, right].iter().zip(series.iter()) {
        // Log scale: the loss falls by orders of magnitude early on.
        let pos = pts.iter().map(|p| p.1).filter(|&v| v > 0.0);
        let ymax = pos.clone().fold(1e-9f64, f64::max) * 1.2;
        let ymin = pos.fold(ymax, f64::min) / 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(*title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(0u64..max_step, (ymin..ymax).log_scale())?;
        chart.configure_mesh().x_desc("step").draw()?;
        chart.draw_series(LineSeries::new(pts.iter().copied(), &BLUE))?;
    }
    root.present()?;
    Ok(())
}

fn plot_hist(path: &Path, freq: &[f64]) -> Result<(), Box<dyn std::error::Error>> {
    // Histogram of log10(activation frequency); dead features go in the leftmost bin.
    const LO: f64 = -6.0;
    const BINS: usize = 24;
    let mut counts = [0u32; BINS];
    for &f in freq {
        let l = if f > 0.0 { f.log10().max(LO) } else { LO };
        let i = (((l - LO) / -LO * BINS as f64) as usize).min(BINS - 1);
        counts[i] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "feature activation frequency (held-out; leftmost bin includes dead)",
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(LO..0.0, 0u32..ymax + 1)?;
    chart
        .configure_mesh()
        .x_desc("log10(fraction of rows where the feature is active)")
        .y_desc("features")
        .draw()?;
    let w = -LO / BINS as f64;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = LO + i as f64 * w;
        Rectangle::new([(x0, 0), (x0 + w * 0.9, c)], BLUE.filled())
    }))?;
    root.present()?;
    Ok(())
}
