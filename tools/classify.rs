//! `crema classify`: top-k classes for images, following Caffe's `classify.py` and
//! `cpp_classification` (the pipeline lives in `crema::classify`); this file holds what only the
//! command line needs: expanding directories and list files, reading label files, printing.

use crate::Failure;
use crema::classify::{deploy_transform, Classifier, Crops, Mean};
use crema::data::photo::{self, DecodeLimits, Image};
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
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
    /// net's input. Default: the deploy net's Input `transform_param` (mean_file/mean_value).
    #[arg(long, conflicts_with = "mean_value")]
    mean: Option<PathBuf>,
    /// Per-channel mean in the net's channel order (B,G,R by default), or one value for all.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    mean_value: Option<Vec<f32>>,
    /// Multiply the input by this after subtracting the mean. Default: the deploy net's Input
    /// `transform_param { scale }`, else 1.
    #[arg(long)]
    scale: Option<f32>,
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
pub fn short_f64(v: f32) -> f64 {
    v.to_string().parse::<f64>().unwrap_or(v as f64)
}

/// Arguments as the command line would parse them (`crema classify ARGS`), so that other
/// commands (`crema studio`) classify with the very same defaults.
pub fn parse_args<I, T>(args: I) -> Result<Args, Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }
    let w = <Wrapper as clap::Parser>::try_parse_from(
        std::iter::once(std::ffi::OsString::from("classify"))
            .chain(args.into_iter().map(Into::into)),
    )
    .map_err(|e| user(e.to_string()))?;
    Ok(w.args)
}

/// The classifier and its class labels, built from the arguments exactly as `crema classify`
/// builds them (the net, its weights, the preprocessing, the labels file).
pub fn load(a: &Args) -> Result<(Classifier, Vec<String>), Failure> {
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
    // The training transform stored in the deploy net; flags override it.
    let trained_transform = match net.input_names().as_slice() {
        [input] => deploy_transform(&param, input).cloned(),
        _ => None,
    };
    let clf = Classifier::new(net, a.output_blob.as_deref(), |p| {
        if let Some(t) = &trained_transform {
            p.use_transform(t)?;
        }
        p.resize = resize;
        p.crops = if a.oversample {
            Crops::Oversample
        } else {
            Crops::Center
        };
        p.channel_swap = a.channel_swap.clone();
        p.raw_scale = a.raw_scale;
        if mean.is_some() {
            p.mean = mean;
        }
        if let Some(s) = a.scale {
            p.scale = s;
        }
        Ok(())
    })?;
    let classes = clf
        .net
        .blob(&clf.output)
        .map(|b| b.count_from(1))
        .unwrap_or(0);
    let labels = match &a.labels {
        Some(p) => {
            let l = load_labels(p)?;
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
    Ok((clf, labels))
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let (mut clf, labels) = load(&a)?;
    let inputs = expand_inputs(&a.images);
    if inputs.is_empty() {
        return Err(user(
            "no images found in the given directories or lists".into(),
        ));
    }
    let color = Some(clf.pre.channels == 3);
    let mut failed = 0usize;
    let mut saturation = Saturation::default();
    for chunk in inputs.chunks(a.batch_size) {
        let decoded: Vec<Result<Image, crema::Error>> = chunk
            .iter()
            .map(|(p, r)| match r {
                Err(e) => Err(crema::Error::Invalid(e.chain_text())),
                Ok(()) => photo::read(p, color, DecodeLimits::default()),
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
                    let msg = e.chain_text();
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
                    saturation.add(&s);
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
    if saturation.all_saturated() && clf.pre.scale == 1.0 {
        eprintln!(
            "warning: every image's top probability is 1 (>= 0.9999): a sign of unscaled input. \
             If the net was trained on scaled pixels (LeNet: 0.00390625), give --scale or put \
             `transform_param: {{ scale: ... }}` on the deploy net's Input layer"
        );
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

/// Tracks whether every image's output is a saturated probability distribution (top-1 at
/// least 0.9999), a sign that the input was not scaled as in training.
#[derive(Default)]
struct Saturation {
    images: usize,
    saturated: usize,
}

impl Saturation {
    fn add(&mut self, scores: &[f32]) {
        self.images += 1;
        let probabilities = scores.iter().all(|p| (0.0..=1.0).contains(p))
            && (scores.iter().sum::<f32>() - 1.0).abs() < 1e-3;
        let top = scores.iter().copied().fold(0.0f32, f32::max);
        if probabilities && top >= 0.9999 {
            self.saturated += 1;
        }
    }

    /// More than one image, all saturated.
    fn all_saturated(&self) -> bool {
        self.images > 1 && self.saturated == self.images
    }
}

/// Whether a token looks like a class id that may precede a label: `n02123045`, `7`, `7:`.
fn is_class_id(t: &str) -> bool {
    let t = t.strip_suffix(':').unwrap_or(t);
    let digits = t
        .strip_prefix(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(t);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a labels file: one class per line, in class order, with an optional leading id
/// (`n02123045 tabby, tabby cat` gives `tabby, tabby cat`). Trailing blank lines are ignored.
fn parse_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            match l.split_once(char::is_whitespace) {
                Some((id, rest)) if is_class_id(id) && !rest.trim().is_empty() => {
                    rest.trim().to_string()
                }
                _ => l.to_string(),
            }
        })
        .collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    labels
}

/// Reads a labels file (see [`parse_labels`]).
fn load_labels(path: &Path) -> Result<Vec<String>, crema::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| crema::Error::io(path, e))?;
    let labels = parse_labels(&text);
    if labels.is_empty() {
        return Err(crema::Error::format(path, "the labels file is empty"));
    }
    Ok(labels)
}

/// File extensions taken as images when a directory is classified.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "png", "bmp", "gif", "tif", "tiff", "webp", "pnm", "pbm", "pgm", "ppm",
];

fn has_extension(p: &Path, among: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| among.contains(&e.to_ascii_lowercase().as_str()))
}

/// The images of a directory: its files with an image extension, sorted, not recursive.
fn directory_images(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_extension(p, IMAGE_EXTENSIONS))
        .collect();
    files.sort();
    Ok(files)
}

/// The images of a list file: one path per line (an optional trailing integer label is
/// ignored; relative paths resolve against the list's directory; blank lines and `#` comments
/// are skipped).
fn listed_images(list: &Path) -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list)?;
    let dir = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let path = match line.rsplit_once(char::is_whitespace) {
                Some((p, label)) if label.parse::<i64>().is_ok() => p.trim_end(),
                _ => line,
            };
            dir.join(path)
        })
        .collect())
}

/// Expands the command line's image arguments: a directory gives its images, a `.txt` file is
/// a list of images, anything else is an image path. A directory or list that cannot be read
/// gives an `Err` entry in place of its images.
fn expand_inputs(args: &[PathBuf]) -> Vec<(PathBuf, Result<(), crema::Error>)> {
    let mut out = Vec::new();
    for a in args {
        let expanded = if a.is_dir() {
            directory_images(a)
        } else if has_extension(a, &["txt"]) {
            listed_images(a)
        } else {
            Ok(vec![a.clone()])
        };
        match expanded {
            Ok(paths) => out.extend(paths.into_iter().map(|p| (p, Ok(())))),
            Err(e) => out.push((a.clone(), Err(crema::Error::io(a, e)))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_leading_ids() {
        let l = parse_labels("n01440764 tench, Tinca tinca\nn02123045 tabby, tabby cat\n\n");
        assert_eq!(l, ["tench, Tinca tinca", "tabby, tabby cat"]);
        assert_eq!(
            parse_labels("airplane\nsea lion\n3: cat\n"),
            ["airplane", "sea lion", "cat"]
        );
        let syn =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/labels/synset_words.txt");
        let syn = load_labels(&syn).unwrap();
        assert_eq!(syn.len(), 1000);
        assert_eq!(syn[281], "tabby, tabby cat");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n\n").unwrap();
        let e = load_labels(&empty).unwrap_err().chain_text();
        assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");
    }

    #[test]
    fn inputs_expand_directories_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.png", "a.JPG", "notes.md", "c.txt"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "# images\nb.png 3\n/abs/x y.jpg\n\nsub dir/z.png\n").unwrap();
        let got: Vec<PathBuf> = expand_inputs(&[dir.path().to_path_buf(), list.clone()])
            .into_iter()
            .map(|(p, r)| {
                assert!(r.is_ok());
                p
            })
            .collect();
        let d = dir.path();
        assert_eq!(
            got,
            [
                d.join("a.JPG"),
                d.join("b.png"),
                d.join("b.png"),
                PathBuf::from("/abs/x y.jpg"),
                d.join("sub dir/z.png"),
            ]
        );
        let r = expand_inputs(&[d.join("nolist.txt")]);
        assert!(r[0]
            .1
            .as_ref()
            .unwrap_err()
            .chain_text()
            .contains("nolist.txt"));
    }

    #[test]
    fn saturation_needs_every_image_of_several() {
        let mut s = Saturation::default();
        s.add(&[0.0, 1.0, 0.0]);
        assert!(!s.all_saturated(), "one image is not a sign");
        s.add(&[0.99995, 0.00005]);
        assert!(s.all_saturated());
        s.add(&[0.7, 0.3]);
        assert!(!s.all_saturated());
        // Scores that are not probabilities never count.
        let mut raw = Saturation::default();
        raw.add(&[12.0, -3.0]);
        raw.add(&[15.0, 1.0]);
        assert!(!raw.all_saturated());
    }
}
