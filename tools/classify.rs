//! `crema classify`: top-k classes for images, following Caffe's `classify.py` and
//! `cpp_classification` (the pipeline lives in `crema::classify`).

use crate::Failure;
use crema::classify::{decode_image, Classifier, Crops, DecodeLimits, Image, Mean};
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Deploy model (YAML, or a Caffe .prototxt).
    #[arg(long)]
    model: PathBuf,
    /// Trained weights (.caffemodel, current or V1 format).
    #[arg(long)]
    weights: PathBuf,
    /// Class names, one per line in class order (an optional leading id such as `n02123045`
    /// is dropped). Without it classes are shown by index.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Mean image (.binaryproto); its per-channel mean is used when its size differs from the
    /// net's input.
    #[arg(long, conflicts_with = "mean_value")]
    mean: Option<PathBuf>,
    /// Per-channel mean in the net's channel order (B,G,R by default), or one value for all.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    mean_value: Option<Vec<f32>>,
    /// Multiply the input by this after subtracting the mean.
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
    /// Pixel range: values run from 0 to this (Caffe zoo weights expect 255).
    #[arg(long, default_value_t = 255.0)]
    raw_scale: f32,
    /// Net input channel i takes image channel (R=0, G=1, B=2) number i of this list.
    #[arg(long, value_delimiter = ',', default_value = "2,1,0")]
    channel_swap: Vec<usize>,
    /// One centre crop per image (the default).
    #[arg(long, conflicts_with = "oversample")]
    center_only: bool,
    /// Average Caffe's 10 crops: 4 corners and the centre, and their mirror images.
    #[arg(long)]
    oversample: bool,
    /// Resize images to H,W before cropping (default: straight to the net's input size).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    resize: Option<Vec<usize>>,
    /// How many classes to report per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// Blob to report (default: the net's only output).
    #[arg(long)]
    output_blob: Option<String>,
    /// Print one JSON line per image on stdout.
    #[arg(long)]
    json: bool,
    /// Images, directories of images, or .txt lists of image paths.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

fn user(msg: String) -> Failure {
    Failure::User(anyhow::anyhow!(msg))
}

/// One `--json` line, fields in FORMAT.md's order.
#[derive(serde::Serialize)]
struct Line<'a> {
    image: &'a str,
    top: Vec<Top<'a>>,
}

/// The `--json` line of an image that could not be classified.
#[derive(serde::Serialize)]
struct ErrorLine<'a> {
    image: &'a str,
    error: &'a str,
}

#[derive(serde::Serialize)]
struct Top<'a> {
    label: &'a str,
    index: usize,
    prob: f64,
}

/// A probability for JSON: the f32's shortest decimal form, not its f64 widening.
fn short_f64(v: f32) -> f64 {
    v.to_string().parse::<f64>().unwrap_or(v as f64)
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    if a.batch_size == 0 {
        return Err(user("--batch-size must be at least 1".into()));
    }
    if a.top_k == 0 {
        return Err(user("--top-k must be at least 1".into()));
    }
    let resize = match a.resize.as_deref() {
        None => None,
        Some([h, w]) if *h > 0 && *w > 0 => Some((*h, *w)),
        Some(r) => {
            return Err(user(format!(
                "--resize takes H,W (two positive numbers), got {r:?}"
            )))
        }
    };
    let mean = match (&a.mean, &a.mean_value) {
        (Some(f), _) => Some(Mean::from_binaryproto(f)?),
        (None, Some(v)) => Some(Mean::Values(v.clone())),
        (None, None) => None,
    };
    let param = crema::load_net(&a.model)?;
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut StdRng::seed_from_u64(1701))?;
    let trained = crema::caffe::caffemodel::read(&a.weights)?;
    let report = net.copy_trained_layers_from(&trained, &a.weights.display().to_string())?;
    if !report.fresh.is_empty() {
        eprintln!(
            "warning: {} has no weights for layer(s) {}; they keep their initial values",
            a.weights.display(),
            report.fresh.join(", ")
        );
    }
    let mut clf = Classifier::new(net, a.output_blob.as_deref(), |p| {
        p.resize = resize;
        p.crops = if a.oversample {
            Crops::Oversample
        } else {
            Crops::Center
        };
        p.channel_swap = a.channel_swap.clone();
        p.raw_scale = a.raw_scale;
        p.mean = mean;
        p.scale = a.scale;
    })?;
    let classes = clf
        .net
        .blob(&clf.output)
        .map(|b| b.count_from(1))
        .unwrap_or(0);
    let labels = match &a.labels {
        Some(p) => {
            let l = crema::classify::load_labels(p)?;
            if l.len() != classes {
                return Err(user(format!(
                    "{}: {} labels for the {classes} classes of output blob `{}`",
                    p.display(),
                    l.len(),
                    clf.output
                )));
            }
            l
        }
        None => (0..classes).map(|i| i.to_string()).collect(),
    };
    let inputs = crema::classify::expand_inputs(&a.images);
    if inputs.is_empty() {
        return Err(user(
            "no images found in the given directories or lists".into(),
        ));
    }
    let channels = clf.pre.channels;
    let mut failed = 0usize;
    for chunk in inputs.chunks(a.batch_size) {
        let decoded: Vec<Result<Image, crema::Error>> = chunk
            .iter()
            .map(|(p, r)| match r {
                Err(e) => Err(crema::Error::Invalid(e.to_string())),
                Ok(()) => decode_image(p, channels, DecodeLimits::default()),
            })
            .collect();
        let good: Vec<Image> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let mut scores = clf.classify(&good)?.into_iter();
        for ((path, _), r) in chunk.iter().zip(decoded) {
            let shown = path.display().to_string();
            match r {
                Err(e) => {
                    failed += 1;
                    let msg = e.to_string();
                    eprintln!("error: {msg}");
                    if a.json {
                        let line = ErrorLine {
                            image: &shown,
                            error: &msg,
                        };
                        let text = serde_json::to_string(&line)
                            .map_err(|e| Failure::Internal(e.into()))?;
                        println!("{text}");
                    }
                }
                Ok(_) => {
                    let s = scores
                        .next()
                        .ok_or_else(|| Failure::Internal(anyhow::anyhow!("missing scores")))?;
                    let top = crema::classify::top_k(&s, a.top_k);
                    if a.json {
                        let line = Line {
                            image: &shown,
                            top: top
                                .iter()
                                .map(|&(i, p)| Top {
                                    label: &labels[i],
                                    index: i,
                                    prob: short_f64(p),
                                })
                                .collect(),
                        };
                        let text = serde_json::to_string(&line)
                            .map_err(|e| Failure::Internal(e.into()))?;
                        println!("{text}");
                    } else {
                        println!("{shown}");
                        for (i, p) in top {
                            println!("  {p:.4} - \"{}\" ({i})", labels[i]);
                        }
                    }
                }
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} image(s) could not be classified",
            inputs.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
