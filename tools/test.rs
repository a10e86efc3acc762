//! `crema test`: score a model in the TEST phase, averaging each output blob over iterations.

use crate::Failure;
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (YAML or Caffe prototxt).
    #[arg(long)]
    model: PathBuf,
    /// Trained weights (.caffemodel, comma-separated for several).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<PathBuf>,
    /// Number of forward passes (batches) to average [default: 50].
    #[arg(long)]
    iterations: Option<usize>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// How much data the scored iterations cover: examples per iteration (the first data
/// layer's batch) and, when that layer knows it, the records in its data set.
struct Coverage {
    batch: Option<usize>,
    records: Option<(String, usize)>,
}

fn coverage(net: &crema::Net) -> Coverage {
    let sources: Vec<_> = net
        .layers()
        .iter()
        .filter(|l| l.bottom.is_empty() && !l.top.is_empty())
        .collect();
    let data = sources
        .iter()
        .find(|l| l.layer.dataset_len().is_some())
        .or(sources.first());
    Coverage {
        batch: data.and_then(|l| net.blob_at(l.top[0]).shape.first().copied()),
        records: data.and_then(|l| Some((l.name.clone(), l.layer.dataset_len()?))),
    }
}

/// The line that says what was scored, e.g. `scored 50 iterations x 100 = 5000 examples
/// (--iterations default); layer `mnist` reads 10000 records: 0.5 of one pass`.
fn coverage_text(iterations: usize, given: bool, c: &Coverage) -> String {
    let default = if given {
        ""
    } else {
        " (the default; set --iterations)"
    };
    let mut s = match c.batch {
        Some(b) => format!(
            "scored {iterations} iterations{default} x batch {b} = {} examples",
            iterations.saturating_mul(b)
        ),
        None => format!("scored {iterations} iterations{default}"),
    };
    if let (Some(b), Some((layer, n))) = (c.batch, &c.records) {
        let seen = iterations.saturating_mul(b);
        let passes = seen as f64 / (*n).max(1) as f64;
        s += &format!("; data layer `{layer}` holds {n} records: ");
        s += &if seen == *n {
            "exactly one pass".to_string()
        } else if seen < *n {
            format!(
                "{:.1}% of one pass ({} iterations cover them all)",
                passes * 100.0,
                n.div_ceil(b)
            )
        } else {
            format!("{passes:.2} passes, so some records are scored more than once")
        };
    }
    s
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let param = crema::load_net(&a.model)?;
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
    let iterations = a.iterations.unwrap_or(50);
    if iterations == 0 {
        return Err(Failure::User(anyhow::anyhow!("--iterations must be > 0")));
    }
    let cover = coverage(&net);
    let (outputs, loss) = crema::solver::score(&mut net, iterations, |_, _| Ok(()))?;
    eprintln!(
        "{}",
        coverage_text(iterations, a.iterations.is_some(), &cover)
    );
    // Human results go to stdout, or to stderr when stdout carries JSON.
    let say = |s: String| {
        if a.json {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
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
    }
    say(format!("Loss: {loss}"));
    if a.json {
        let mut v = serde_json::json!({
            "iterations": iterations,
            "outputs": crate::json::outputs_json(&outputs),
        });
        if let Some(b) = cover.batch {
            v["examples"] = serde_json::json!(iterations.saturating_mul(b));
        }
        println!("{v}");
    }
    Ok(ExitCode::SUCCESS)
}
