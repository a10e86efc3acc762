//! `crema forward`: one forward pass with input blobs from NumPy `.npy` files; the chosen blobs
//! are written back as `.npy` (Caffe's `extract_features` for people who live in NumPy).

use crate::Failure;
use anyhow::anyhow;
use crema::caffe::npy;
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (YAML; a Caffe .prototxt is imported on the fly).
    #[arg(long)]
    model: String,
    /// Weights (.caffemodel, current or V1); several are applied in order (comma list).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<String>,
    /// Input blob as NAME=FILE.npy (float32 or float64, C order); repeatable.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Blob to write (default: the net outputs); repeatable.
    #[arg(long = "output", value_name = "NAME")]
    outputs: Vec<String>,
    /// Directory for NAME.npy files (created if missing).
    #[arg(long)]
    out: String,
    /// Phase to build (TEST unless given).
    #[arg(long, default_value = "TEST", value_parser = crate::check::parse_phase)]
    phase: Phase,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let param = if a.model.ends_with(".prototxt") {
        crema::caffe::load_net_prototxt(&a.model)?
    } else {
        crema::spec::load_net(&a.model)?
    };
    let mut rng = StdRng::seed_from_u64(1701);
    let mut net = crema::Net::for_phase(&param, a.phase, &mut rng)?;
    for w in &a.weights {
        let trained = crema::caffe::caffemodel::read(w)?;
        let report = net.copy_trained_layers_from(&trained, w)?;
        if !a.json && !report.fresh.is_empty() {
            eprintln!(
                "warning: layers not in {w} keep their fillers: {}",
                report.fresh.join(", ")
            );
        }
    }
    for spec in &a.inputs {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input takes NAME=FILE.npy, got `{spec}`"))?;
        let src = npy::read_npy(file)?;
        let inputs: Vec<String> = net.input_names().iter().map(|s| s.to_string()).collect();
        let Some(dst) = net.blob_mut(name) else {
            return Err(Failure::User(anyhow!(
                "--input {name}: the net has no blob `{name}` (its inputs: {})",
                inputs.join(", ")
            )));
        };
        if dst.shape != src.shape {
            if !a.json {
                eprintln!(
                    "reshaping `{name}` from {} to {} (the shape of {file})",
                    dst.shape_string(),
                    src.shape_string()
                );
            }
            dst.reshape(&src.shape);
        }
        dst.data.copy_from_slice(&src.data);
    }
    net.forward()?;
    let names: Vec<String> = if a.outputs.is_empty() {
        net.output_names().iter().map(|s| s.to_string()).collect()
    } else {
        a.outputs.clone()
    };
    let dir = PathBuf::from(&a.out);
    std::fs::create_dir_all(&dir).map_err(|e| crema::Error::io(&dir, e))?;
    let mut written = serde_json::Map::new();
    for name in &names {
        let b = net
            .blob(name)
            .ok_or_else(|| anyhow!("--output {name}: the net has no blob `{name}`"))?;
        let path = dir.join(format!("{}.npy", name.replace('/', "_")));
        npy::write_npy(&path, b)?;
        if !a.json {
            eprintln!("{name:<24} {:<16} -> {}", b.shape_string(), path.display());
        }
        written.insert(
            name.clone(),
            serde_json::json!({"file": path.display().to_string(), "shape": b.shape}),
        );
    }
    if a.json {
        println!("{}", serde_json::json!({ "outputs": written }));
    }
    Ok(ExitCode::SUCCESS)
}
