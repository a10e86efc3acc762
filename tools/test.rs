//! `crema test`: score a model in the TEST phase, averaging each output blob over iterations.

use crate::Failure;
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (YAML).
    #[arg(long)]
    model: PathBuf,
    /// Trained weights (.caffemodel, comma-separated for several).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<PathBuf>,
    /// Number of forward passes (batches) to average.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let param = crema::spec::load_net(&a.model)?;
    let mut rng = StdRng::seed_from_u64(1701);
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut rng)?;
    if a.weights.is_empty() {
        eprintln!("warning: no --weights given; scoring the fillers' initial weights");
    }
    for w in &a.weights {
        let trained = crema::caffe::caffemodel::read(w)?;
        let r = net.copy_trained_layers_from(&trained, &w.display().to_string())?;
        if !r.fresh.is_empty() {
            eprintln!(
                "warning: {} has no weights for layer(s) {}; they keep their fillers",
                w.display(),
                r.fresh.join(", ")
            );
        }
    }
    if a.iterations == 0 {
        return Err(Failure::User(anyhow::anyhow!("--iterations must be > 0")));
    }
    let (outputs, loss) = crema::solver::score(&mut net, a.iterations, |_, _| Ok(()))?;
    // Human results go to stdout, or to stderr when stdout carries JSON.
    let say = |s: String| {
        if a.json {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
    let mut map = serde_json::Map::new();
    let mut k = 0;
    for o in &outputs {
        for v in &o.values {
            let mut line = format!("{} = {v}", o.name);
            if o.loss_weight != 0.0 {
                line += &format!(" (* {} = {} loss)", o.loss_weight, o.loss_weight * v);
            }
            say(format!("Test net output #{k}: {line}"));
            k += 1;
        }
        let v = if o.values.len() == 1 {
            crema::solver::f32_json(o.values[0])
        } else {
            serde_json::Value::Array(
                o.values
                    .iter()
                    .map(|&x| crema::solver::f32_json(x))
                    .collect(),
            )
        };
        map.insert(o.name.clone(), v);
    }
    say(format!("Loss: {loss}"));
    if a.json {
        println!(
            "{}",
            serde_json::json!({"iterations": a.iterations, "outputs": map})
        );
    }
    Ok(ExitCode::SUCCESS)
}
