//! `crema convert`: data set conversions with progress bars.
//! - `--idx IMAGES [--idx-labels LABELS] --out DB [--backend lmdb|leveldb]`: IDX (gzipped or
//!   not) to a Caffe LMDB or LevelDB (Caffe's `convert_mnist_data`; keys `%08d`).
//! - `--list LIST [--root DIR] --out DB [--resize-height H --resize-width W] [--shuffle] [--gray]
//!   [--encoded [--encode-type png|jpg]] [--backend lmdb|leveldb]`: Caffe's `convert_imageset`
//!   (keys `%08d_path`).
//! - `--compute-mean DB_OR_IDX --out mean.binaryproto`: Caffe's `compute_image_mean` (an LMDB or
//!   LevelDB directory, told apart by its files, or an IDX file).
//! - `--idx-to-png IMAGES [--idx-labels LABELS] --out DIR [--first K] [--count N]`: writes IDX
//!   images as PNG files plus `DIR/list.txt` (`path label`, ready for ImageData or classify).
//! - `--seq2seq reverse|sort --count N [--min-length A --max-length B] [--seed S] --out FILE`:
//!   a deterministic toy data set of digit strings and their reversal (or sorted digits), as
//!   `source<TAB>target` lines for `SeqPairData` and `crema translate`.

use crate::Failure;
use anyhow::{anyhow, bail};
use crema::data::db::{Backend, DbWriter};
use crema::data::idx::IdxDataset;
use crema::data::image_list::{encode_image, read_image, read_list, write_png, Decode};
use crema::data::lmdb::sample_to_datum;
use crema::data::mean::{compute_mean, write_mean};
use crema::data::Dataset;
use crema::proto::Datum;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// IDX image file to convert to a database (gzipped or not).
    #[arg(long, value_name = "IMAGES")]
    idx: Option<PathBuf>,
    /// IDX label file that goes with --idx or --idx-to-png.
    #[arg(long, value_name = "LABELS")]
    idx_labels: Option<PathBuf>,
    /// Caffe image list (`path label` per line) to convert to a database.
    #[arg(long, value_name = "LIST")]
    list: Option<PathBuf>,
    /// Folder prepended to every path of --list.
    #[arg(long, default_value = "")]
    root: String,
    /// Compute the mean image of an LMDB or LevelDB (a directory) or an IDX file.
    #[arg(long, value_name = "DB_OR_IDX")]
    compute_mean: Option<PathBuf>,
    /// Write the images of an IDX file as PNG files into --out.
    #[arg(long, value_name = "IMAGES")]
    idx_to_png: Option<PathBuf>,
    /// Output: database directory, mean file, or PNG folder.
    #[arg(long)]
    out: PathBuf,
    /// Database written by --idx and --list (Caffe's `--backend`).
    #[arg(long, value_enum, default_value_t = Backend::Lmdb)]
    backend: Backend,
    /// Resize images to this height (with --resize-width).
    #[arg(long, default_value_t = 0)]
    resize_height: usize,
    /// Resize images to this width (with --resize-height).
    #[arg(long, default_value_t = 0)]
    resize_width: usize,
    /// Shuffle the records (fixed seed, reproducible).
    #[arg(long)]
    shuffle: bool,
    /// Store images as grey.
    #[arg(long)]
    gray: bool,
    /// Store encoded images (the original file when nothing changes, else re-encoded).
    #[arg(long)]
    encoded: bool,
    /// Encoding for --encoded: png or jpg (default: the file's own extension).
    #[arg(long)]
    encode_type: Option<String>,
    /// With --idx-to-png: index of the first image.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// With --idx-to-png: number of images (default: all); with --seq2seq: number of pairs.
    #[arg(long)]
    count: Option<usize>,
    /// Generate a sequence-to-sequence data set: `reverse` or `sort` digit strings.
    #[arg(long, value_name = "TASK")]
    seq2seq: Option<String>,
    /// With --seq2seq: shortest source.
    #[arg(long, default_value_t = 1)]
    min_length: usize,
    /// With --seq2seq: longest source.
    #[arg(long, default_value_t = 8)]
    max_length: usize,
    /// With --seq2seq: seed of the generator (the same seed gives the same file).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn bar(n: usize, what: &str) -> ProgressBar {
    let b = ProgressBar::new(n as u64);
    if let Ok(s) = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        b.set_style(s);
    }
    b.set_message(what.to_string());
    b
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let modes = [
        a.idx.is_some(),
        a.list.is_some(),
        a.compute_mean.is_some(),
        a.idx_to_png.is_some(),
        a.seq2seq.is_some(),
    ];
    if modes.iter().filter(|&&m| m).count() != 1 {
        return Err(Failure::User(anyhow!(
            "give exactly one of --idx, --list, --compute-mean, --idx-to-png, --seq2seq"
        )));
    }
    if (a.resize_height == 0) != (a.resize_width == 0) {
        return Err(Failure::User(anyhow!(
            "give both --resize-height and --resize-width, or neither"
        )));
    }
    let summary = if let Some(images) = &a.idx {
        idx_to_db(&a, images)?
    } else if let Some(list) = &a.list {
        list_to_db(&a, list)?
    } else if let Some(src) = &a.compute_mean {
        mean(&a, src)?
    } else if let Some(images) = &a.idx_to_png {
        idx_to_png(&a, images)?
    } else if let Some(task) = &a.seq2seq {
        seq_pairs(&a, task)?
    } else {
        unreachable!("exactly one mode is set")
    };
    if a.json {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

fn seq_pairs(a: &Args, task: &str) -> anyhow::Result<serde_json::Value> {
    use crema::data::seq_pairs::{generate, to_text};
    let n = a.count.ok_or_else(|| anyhow!("--seq2seq needs --count"))?;
    let pairs = generate(task, n, a.min_length, a.max_length, a.seed)?;
    std::fs::write(&a.out, to_text(&pairs)).map_err(|e| anyhow!("{}: {e}", a.out.display()))?;
    eprintln!("wrote {n} {task} pairs to {}", a.out.display());
    Ok(serde_json::json!({"out": a.out.display().to_string(), "pairs": n}))
}

fn shuffled(n: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(1701));
    }
    order
}

fn idx_to_db(a: &Args, images: &Path) -> anyhow::Result<serde_json::Value> {
    let ds = IdxDataset::open(images, a.idx_labels.as_deref())?;
    let mut w = DbWriter::create(a.backend, &a.out)?;
    let pb = bar(ds.len(), &format!("idx -> {}", w.backend().caffe_name()));
    for (k, i) in shuffled(ds.len(), a.shuffle).into_iter().enumerate() {
        let s = ds.get(i)?;
        let d = if a.encoded {
            Datum {
                data: Some(encode_image(&s, a.encode_type.as_deref().unwrap_or("png"))?),
                encoded: Some(true),
                label: Some(s.label),
                ..Default::default()
            }
        } else {
            sample_to_datum(&s)
        };
        w.put(format!("{k:08}").as_bytes(), &d)?;
        pb.inc(1);
    }
    let n = w.finish()?;
    pb.finish_and_clear();
    eprintln!("wrote {n} records to {}", a.out.display());
    Ok(serde_json::json!({"out": a.out.display().to_string(), "records": n}))
}

fn list_to_db(a: &Args, list: &Path) -> anyhow::Result<serde_json::Value> {
    let entries = read_list(list)?;
    if entries.is_empty() {
        bail!("{}: the list is empty", list.display());
    }
    let resize = (a.resize_height > 0).then_some((a.resize_height, a.resize_width));
    let decode = Decode {
        color: Some(!a.gray),
        resize,
    };
    let mut w = DbWriter::create(a.backend, &a.out)?;
    let pb = bar(
        entries.len(),
        &format!("images -> {}", w.backend().caffe_name()),
    );
    for (k, i) in shuffled(entries.len(), a.shuffle).into_iter().enumerate() {
        let (file, label) = &entries[i];
        let path = format!("{}{}", a.root, file);
        let what = || format!("{} line {}: {path}", list.display(), i + 1);
        let mut s = read_image(&path, decode).map_err(|e| anyhow!("{}: {e}", what()))?;
        s.label = *label;
        let d = if a.encoded {
            let ext = Path::new(file)
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            let enc = a.encode_type.clone().unwrap_or_else(|| {
                if ["png", "jpg", "jpeg"].contains(&ext.as_str()) {
                    ext.clone()
                } else {
                    "png".into()
                }
            });
            let same_ext = enc == ext || (enc == "jpg" && ext == "jpeg");
            let native = read_image(&path, Decode::default())?;
            let bytes = if same_ext && resize.is_none() && (native.channels == 3) != a.gray {
                std::fs::read(&path).map_err(|e| anyhow!("{}: {e}", what()))?
            } else {
                encode_image(&s, &enc)?
            };
            Datum {
                data: Some(bytes),
                encoded: Some(true),
                label: Some(*label),
                ..Default::default()
            }
        } else {
            sample_to_datum(&s)
        };
        w.put(format!("{k:08}_{file}").as_bytes(), &d)?;
        pb.inc(1);
    }
    let n = w.finish()?;
    pb.finish_and_clear();
    eprintln!("wrote {n} records to {}", a.out.display());
    Ok(serde_json::json!({"out": a.out.display().to_string(), "records": n}))
}

fn mean(a: &Args, src: &Path) -> anyhow::Result<serde_json::Value> {
    let ds: Arc<dyn Dataset> = if src.is_dir() {
        Backend::detect(src)
            .unwrap_or(Backend::Lmdb)
            .open(src, Decode::default())?
    } else {
        Arc::new(IdxDataset::open(src, None)?)
    };
    let pb = bar(ds.len(), "mean");
    let m = compute_mean(ds.as_ref(), |k| {
        if k % 256 == 0 {
            pb.set_position(k as u64)
        }
    })?;
    pb.finish_and_clear();
    write_mean(&a.out, &m)?;
    let plane = m.shape[1] * m.shape[2];
    let channel_means: Vec<f64> = m
        .data
        .chunks(plane)
        .map(|c| c.iter().map(|&v| v as f64).sum::<f64>() / plane as f64)
        .collect();
    eprintln!(
        "mean of {} records ({}x{}x{}) written to {}; per-channel means {:?}",
        ds.len(),
        m.shape[0],
        m.shape[1],
        m.shape[2],
        a.out.display(),
        channel_means
    );
    Ok(serde_json::json!({
        "out": a.out.display().to_string(),
        "records": ds.len(),
        "shape": m.shape,
        "channel_means": channel_means,
    }))
}

fn idx_to_png(a: &Args, images: &Path) -> anyhow::Result<serde_json::Value> {
    let ds = IdxDataset::open(images, a.idx_labels.as_deref())?;
    if a.first >= ds.len() {
        bail!(
            "--first {} but {} has {} images",
            a.first,
            images.display(),
            ds.len()
        );
    }
    let end = a
        .count
        .map(|c| (a.first + c).min(ds.len()))
        .unwrap_or(ds.len());
    std::fs::create_dir_all(&a.out).map_err(|e| anyhow!("{}: {e}", a.out.display()))?;
    let pb = bar(end - a.first, "idx -> png");
    let mut list = String::new();
    let mut files = Vec::new();
    for i in a.first..end {
        let s = ds.get(i)?;
        let name = format!("{i:05}_label{}.png", s.label);
        write_png(a.out.join(&name), &s)?;
        list.push_str(&format!("{name} {}\n", s.label));
        files.push(
            serde_json::json!({"image": a.out.join(&name).display().to_string(), "label": s.label}),
        );
        pb.inc(1);
    }
    pb.finish_and_clear();
    let lp = a.out.join("list.txt");
    std::fs::write(&lp, list).map_err(|e| anyhow!("{}: {e}", lp.display()))?;
    eprintln!(
        "wrote {} PNG images and {} to {}",
        end - a.first,
        lp.display(),
        a.out.display()
    );
    Ok(serde_json::json!({"out": a.out.display().to_string(), "images": files}))
}
