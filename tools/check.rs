//! `crema check`: build a model, print blob shapes and the parameter count; optionally run the
//! numeric gradient check on every layer and on the whole net (the row `(net)`).

use crate::Failure;
use crema::proto::Phase;
use crema::testing::GradientChecker;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (YAML or Caffe prototxt).
    #[arg(long)]
    model: String,
    /// Run a numeric gradient check of every layer and of the whole net.
    #[arg(long)]
    gradients: bool,
    /// Phase to build (TRAIN or TEST).
    #[arg(long, default_value = "TRAIN", value_parser = parse_phase)]
    phase: Phase,
    /// Check at most this many elements per blob in the gradient check.
    #[arg(long, default_value_t = 64)]
    max_per_blob: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Parses `TRAIN`/`TEST` (any case).
pub fn parse_phase(s: &str) -> Result<Phase, String> {
    match s.to_ascii_uppercase().as_str() {
        "TRAIN" => Ok(Phase::Train),
        "TEST" => Ok(Phase::Test),
        _ => Err(format!("phase must be TRAIN or TEST, got `{s}`")),
    }
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let param = crema::load_net(&a.model)?;
    let mut rng = StdRng::seed_from_u64(1701);
    let mut net = crema::Net::for_phase(&param, a.phase, &mut rng)?;
    let blobs: Vec<(String, Vec<usize>)> = net
        .blobs()
        .map(|(n, b)| (n.to_string(), b.shape.clone()))
        .collect();
    let params = net.param_count();
    let mut gradients = Vec::new();
    let mut ok = true;
    if a.gradients {
        fill_inputs(&mut net, &mut rng);
        let checker = GradientChecker {
            max_per_blob: Some(a.max_per_blob),
            ..Default::default()
        };
        let mut reports = net.check_gradients(&checker)?;
        reports.push(("(net)".to_string(), net.check_net_gradients(&checker)?));
        for (layer, report) in reports {
            ok &= report.ok();
            if !a.json {
                let skipped = match report.skipped {
                    0 => String::new(),
                    n => format!(" ({n} skipped: step straddles a kink)"),
                };
                eprintln!(
                    "{:<24} max relative error {:.3e} over {} values{skipped}: {}",
                    layer,
                    report.max_rel_error,
                    report.checked,
                    if report.ok() { "ok" } else { "FAILED" }
                );
                for f in &report.failures {
                    eprintln!("    {f}");
                }
            }
            gradients.push(serde_json::json!({
                "layer": layer, "max_rel_error": report.max_rel_error, "ok": report.ok()
            }));
        }
    }
    if a.json {
        let mut obj = serde_json::json!({
            "blobs": blobs.iter().map(|(n, s)| (n.clone(), serde_json::json!(s))).collect::<serde_json::Map<_, _>>(),
            "params": params,
        });
        if a.gradients {
            obj["gradients"] = serde_json::Value::Array(gradients);
        }
        println!("{obj}");
    } else {
        println!("net `{}` ({:?} phase)", net.name, a.phase);
        for (n, s) in &blobs {
            println!("  {n:<24} {}", crema::blob::shape_str(s));
        }
        println!("parameters: {params}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Fills the net's Input blobs: Gaussian noise, or valid indices where a consumer needs them.
pub fn fill_inputs(net: &mut crema::Net, rng: &mut StdRng) {
    let inputs: Vec<String> = net.input_names().iter().map(|s| s.to_string()).collect();
    for name in inputs {
        let Some(idx) = net.input_index(&name) else {
            continue;
        };
        let mut bound = None;
        for l in net.layers() {
            if let Some(pos) = l.bottom.iter().position(|&b| b == idx) {
                let shapes: Vec<Vec<usize>> = l
                    .bottom
                    .iter()
                    .map(|&b| net.blob_at(b).shape.clone())
                    .collect();
                if let Some(n) = l.layer.index_bound(pos, &shapes) {
                    bound = Some(n);
                }
            }
        }
        let b = net.blob_at_mut(idx);
        match bound {
            Some(n) => b
                .data
                .iter_mut()
                .for_each(|v| *v = rng.gen_range(0..n.max(1)) as f32),
            None => b
                .data
                .iter_mut()
                .for_each(|v| *v = StandardNormal.sample(rng)),
        }
    }
}
