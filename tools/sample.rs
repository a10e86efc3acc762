//! `crema sample`: generate text from a trained character model. The deploy net takes byte ids
//! in a 1 x 1 blob (`--data-blob`, T = 1, N = 1) and the sequence flag in `--cont-blob`, and
//! ends in per-byte probabilities (a Softmax over the vocabulary). The seed text is fed byte by
//! byte (cont = 0 on the first byte, 1 after), then each sampled byte is fed back; the
//! recurrent layers carry their state from one forward pass to the next.

use crate::Failure;
use anyhow::anyhow;
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Deploy model (YAML) with T = 1, N = 1 inputs.
    #[arg(long)]
    model: String,
    /// Trained weights (.caffemodel).
    #[arg(long)]
    weights: String,
    /// Text to prime the model with (at least one byte).
    #[arg(long, default_value = "\n")]
    seed_text: String,
    /// Number of bytes to generate.
    #[arg(long, default_value_t = 200)]
    length: usize,
    /// Sampling temperature (> 0; lower is more conservative; 0 picks the most likely byte).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 1701)]
    random_seed: u64,
    /// Input blob with the byte ids.
    #[arg(long, default_value = "data")]
    data_blob: String,
    /// Input blob with the sequence-continuation flags.
    #[arg(long, default_value = "cont")]
    cont_blob: String,
    /// Output blob with the probabilities (default: the net's only output).
    #[arg(long)]
    output_blob: Option<String>,
    /// Print one JSON object `{"seed_text": s, "text": t}` on stdout.
    #[arg(long)]
    json: bool,
}

/// Draws an index from `probs` sharpened by `temperature` (argmax when it is 0).
fn draw(probs: &[f32], temperature: f32, rng: &mut StdRng) -> usize {
    let argmax = || {
        probs
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &p)| if p > b.1 { (i, p) } else { b })
            .0
    };
    if temperature == 0.0 {
        return argmax();
    }
    let w: Vec<f64> = probs
        .iter()
        .map(|&p| (p.max(0.0) as f64).powf(1.0 / temperature as f64))
        .collect();
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return argmax();
    }
    let mut r = rng.gen::<f64>() * total;
    for (i, &v) in w.iter().enumerate() {
        r -= v;
        if r <= 0.0 {
            return i;
        }
    }
    w.len() - 1
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    if a.seed_text.is_empty() {
        return Err(Failure::User(anyhow!(
            "--seed-text needs at least one byte"
        )));
    }
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        return Err(Failure::User(anyhow!(
            "--temperature must be a finite number >= 0, got {}",
            a.temperature
        )));
    }
    let param = crema::spec::load_net(&a.model)?;
    let mut rng = StdRng::seed_from_u64(a.random_seed);
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut rng)?;
    let trained = crema::caffe::caffemodel::read(&a.weights)?;
    let report = net.copy_trained_layers_from(&trained, &a.weights)?;
    if !report.fresh.is_empty() {
        return Err(Failure::User(anyhow!(
            "{}: no trained weights for layer(s) {}; is this the right model?",
            a.weights,
            report.fresh.join(", ")
        )));
    }
    let output = match &a.output_blob {
        Some(o) => o.clone(),
        None => match net.output_names().as_slice() {
            [one] => one.to_string(),
            many => {
                return Err(Failure::User(anyhow!(
                    "the net has {} outputs ({}); choose one with --output-blob",
                    many.len(),
                    many.join(", ")
                )))
            }
        },
    };
    for name in [&a.data_blob, &a.cont_blob, &output] {
        let Some(b) = net.blob(name) else {
            return Err(Failure::User(anyhow!(
                "the net has no blob `{name}` (inputs: {})",
                net.input_names().join(", ")
            )));
        };
        if name != &output && b.count() != 1 {
            return Err(Failure::User(anyhow!(
                "input `{name}` has shape {}; sampling needs a deploy net with T = 1, N = 1 (shape [1, 1])",
                b.shape_string()
            )));
        }
    }
    let feed = |net: &mut crema::Net, byte: u8, cont: f32| -> Result<Vec<f32>, Failure> {
        if let Some(b) = net.blob_mut(&a.data_blob) {
            b.data[0] = byte as f32;
        }
        if let Some(b) = net.blob_mut(&a.cont_blob) {
            b.data[0] = cont;
        }
        net.forward()?;
        let probs = net
            .blob(&output)
            .map(|b| b.data.clone())
            .ok_or_else(|| Failure::Internal(anyhow!("output blob vanished")))?;
        Ok(probs)
    };
    let mut probs = Vec::new();
    for (i, &b) in a.seed_text.as_bytes().iter().enumerate() {
        probs = feed(&mut net, b, if i == 0 { 0.0 } else { 1.0 })?;
    }
    if probs.is_empty() || probs.len() > 256 {
        return Err(Failure::User(anyhow!(
            "output `{output}` has {} values; expected one probability per byte value (at most 256)",
            probs.len()
        )));
    }
    let mut out = Vec::with_capacity(a.length);
    let mut stdout = std::io::stdout();
    if !a.json {
        let _ = stdout.write_all(a.seed_text.as_bytes());
    }
    for _ in 0..a.length {
        let next = draw(&probs, a.temperature, &mut rng) as u8;
        out.push(next);
        if !a.json {
            let _ = stdout.write_all(&[next]);
            let _ = stdout.flush();
        }
        probs = feed(&mut net, next, 1.0)?;
    }
    if a.json {
        let obj = serde_json::json!({
            "seed_text": a.seed_text,
            "text": String::from_utf8_lossy(&out),
        });
        println!("{obj}");
    } else {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
