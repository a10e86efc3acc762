//! `crema embed`: runs a deploy net over labelled IDX images and writes the chosen blob's
//! features (`features.npy`, `labels.npy`), a scatter plot of their first two dimensions
//! coloured by class (`embedding.png`), and the 1-nearest-neighbour accuracy of the features
//! (leave-one-out within the images, or against `--gallery-images`). With `--reconstruction
//! BLOB` it also draws the first inputs above that blob's values (`reconstructions.png`), for
//! autoencoders.

use crate::Failure;
use anyhow::anyhow;
use crema::data::idx::IdxDataset;
use crema::data::Dataset;
use crema::proto::Phase;
use crema::{Blob, Net};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Deploy model (YAML or prototxt) whose input takes the images.
    #[arg(long)]
    model: String,
    /// Trained weights (.caffemodel); several are applied in order (comma list).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<String>,
    /// IDX image file (gzipped or not).
    #[arg(long)]
    images: PathBuf,
    /// IDX label file.
    #[arg(long)]
    labels: PathBuf,
    /// Use only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Blob holding the features (default: the first net output).
    #[arg(long)]
    blob: Option<String>,
    /// Reference images for the nearest-neighbour accuracy (default: leave-one-out among
    /// `--images`).
    #[arg(long, requires = "gallery_labels")]
    gallery_images: Option<PathBuf>,
    /// Labels of the reference images.
    #[arg(long, requires = "gallery_images")]
    gallery_labels: Option<PathBuf>,
    /// Use only the first N reference images.
    #[arg(long)]
    gallery_limit: Option<usize>,
    /// Also draw the first inputs above this blob's values (an autoencoder's output).
    #[arg(long)]
    reconstruction: Option<String>,
    /// Class names, one a line in label order (for the plot's legend).
    #[arg(long)]
    class_names: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Features (`n x dim`), labels, and the first inputs and reconstructions when asked.
struct Embedded {
    feats: Vec<f32>,
    dim: usize,
    labels: Vec<i32>,
    pictures: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Runs `net` over the first `limit` records of `ds` in batches of the input blob's size.
fn embed(
    net: &mut Net,
    input: &str,
    blob: &str,
    scale: f32,
    ds: &IdxDataset,
    limit: Option<usize>,
    recon: Option<&str>,
) -> Result<Embedded, Failure> {
    let n = limit.unwrap_or(usize::MAX).min(ds.len());
    let in_shape = net
        .blob(input)
        .ok_or_else(|| anyhow!("the net has no input blob `{input}`"))?
        .shape
        .clone();
    let batch = in_shape.first().copied().unwrap_or(1).max(1);
    let per: usize = in_shape.iter().skip(1).product();
    let mut out = Embedded {
        feats: Vec::with_capacity(n * 2),
        dim: 0,
        labels: Vec::with_capacity(n),
        pictures: Vec::new(),
    };
    let mut start = 0;
    while start < n {
        let b = batch.min(n - start);
        let mut shape = in_shape.clone();
        shape[0] = b;
        let mut data = Vec::with_capacity(b * per);
        for i in start..start + b {
            let s = ds.get(i)?;
            if s.data.len() != per {
                return Err(Failure::User(anyhow!(
                    "{}: a record holds {} values but the net's input `{input}` takes {per}",
                    ds.describe(),
                    s.data.len()
                )));
            }
            data.extend(s.data.iter().map(|v| v * scale));
            out.labels.push(s.label);
        }
        let dst = net
            .blob_mut(input)
            .ok_or_else(|| anyhow!("no blob `{input}`"))?;
        dst.reshape(&shape);
        dst.data.copy_from_slice(&data);
        net.forward()?;
        let f = net
            .blob(blob)
            .ok_or_else(|| anyhow!("the net has no blob `{blob}`"))?;
        out.dim = f.count() / b;
        out.feats.extend_from_slice(&f.data);
        if let Some(r) = recon {
            let rb = net
                .blob(r)
                .ok_or_else(|| anyhow!("--reconstruction: the net has no blob `{r}`"))?;
            for i in 0..b.min(16usize.saturating_sub(out.pictures.len())) {
                out.pictures.push((
                    data[i * per..(i + 1) * per].to_vec(),
                    rb.data[i * per..(i + 1) * per].to_vec(),
                ));
            }
        }
        start += b;
    }
    Ok(out)
}

fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// 1-nearest-neighbour accuracy of `q` against `g` (`None`: leave-one-out within `q`).
fn nn_accuracy(q: &Embedded, g: Option<&Embedded>) -> f64 {
    let (gf, gl) = g
        .map(|g| (&g.feats, &g.labels))
        .unwrap_or((&q.feats, &q.labels));
    let d = q.dim.max(1);
    let gn = gl.len();
    let mut right = 0usize;
    for (i, &label) in q.labels.iter().enumerate() {
        let qi = &q.feats[i * d..(i + 1) * d];
        let mut best = (f32::INFINITY, -1);
        for j in 0..gn {
            if g.is_none() && j == i {
                continue;
            }
            let dd = dist2(qi, &gf[j * d..(j + 1) * d]);
            if dd < best.0 {
                best = (dd, gl[j]);
            }
        }
        right += usize::from(best.1 == label);
    }
    right as f64 / q.labels.len().max(1) as f64
}

fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

/// Scatter of the first two feature dimensions, one colour per class.
fn scatter(e: &Embedded, names: &[String], path: &Path) -> anyhow::Result<()> {
    let (w, h) = (900u32, 800u32);
    let d = e.dim;
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for p in e.feats.chunks(d) {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    let (px, py) = (((x1 - x0) * 0.05).max(1e-6), ((y1 - y0) * 0.05).max(1e-6));
    crate::plot::render_png(path, w, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("2-D embedding of {} images", e.labels.len()),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(x0 - px..x1 + px, y0 - py..y1 + py)
            .map_err(draw_err)?;
        chart.configure_mesh().draw().map_err(draw_err)?;
        let mut classes: Vec<i32> = e.labels.clone();
        classes.sort_unstable();
        classes.dedup();
        for (ci, &c) in classes.iter().enumerate() {
            let color = Palette99::pick(ci).to_rgba();
            let pts: Vec<(f32, f32)> = e
                .feats
                .chunks(d)
                .zip(&e.labels)
                .filter(|(_, &l)| l == c)
                .map(|(p, _)| (p[0], p[1]))
                .collect();
            let name = names
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| c.to_string());
            chart
                .draw_series(
                    pts.iter()
                        .map(|&p| Circle::new(p, 2, color.mix(0.6).filled())),
                )
                .map_err(draw_err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        Ok(())
    })
}

/// Inputs (top row) above their reconstructions (bottom row), each a square grey image scaled
/// to 0..255 from its own range [0, max(1, max value)].
fn grid(pics: &[(Vec<f32>, Vec<f32>)], path: &Path) -> anyhow::Result<()> {
    let per = pics.first().map(|p| p.0.len()).unwrap_or(0);
    let side = (per as f64).sqrt() as usize;
    if side * side != per || pics.is_empty() {
        return Err(anyhow!(
            "--reconstruction needs square single-channel inputs, got {per} values each"
        ));
    }
    let (cell, zoom) = (side * 3 + 4, 3);
    let (w, h) = (cell * pics.len(), cell * 2);
    let mut img = image::GrayImage::from_pixel(w as u32, h as u32, image::Luma([255]));
    for (k, (a, b)) in pics.iter().enumerate() {
        for (row, v) in [a, b].iter().enumerate() {
            let top = v.iter().cloned().fold(1.0f32, f32::max);
            for y in 0..side * zoom {
                for x in 0..side * zoom {
                    let p = v[(y / zoom) * side + x / zoom] / top;
                    let g = (p.clamp(0.0, 1.0) * 255.0).round() as u8;
                    img.put_pixel(
                        (k * cell + 2 + x) as u32,
                        (row * cell + 2 + y) as u32,
                        image::Luma([255 - g]),
                    );
                }
            }
        }
    }
    img.save(path)?;
    Ok(())
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let param = crema::load_net(&a.model)?;
    let mut rng = StdRng::seed_from_u64(1701);
    let mut net = Net::for_phase(&param, Phase::Test, &mut rng)?;
    for w in &a.weights {
        let trained = crema::caffe::caffemodel::read(w)?;
        net.copy_trained_layers_from(&trained, w)?;
    }
    let input = net
        .input_names()
        .first()
        .map(|s| s.to_string())
        .ok_or_else(|| anyhow!("{}: the model has no Input blob to feed", a.model))?;
    let blob = match &a.blob {
        Some(b) => b.clone(),
        None => net
            .output_names()
            .first()
            .map(|s| s.to_string())
            .ok_or_else(|| anyhow!("{}: the model has no output; pass --blob", a.model))?,
    };
    let scale = crema::classify::deploy_transform(&param, &input)
        .map(|t| t.scale())
        .unwrap_or(1.0);
    let ds = IdxDataset::open(&a.images, Some(&a.labels))?;
    let q = embed(
        &mut net,
        &input,
        &blob,
        scale,
        &ds,
        a.limit,
        a.reconstruction.as_deref(),
    )?;
    let gallery = match (&a.gallery_images, &a.gallery_labels) {
        (Some(gi), Some(gl)) => {
            let gds = IdxDataset::open(gi, Some(gl))?;
            Some(embed(
                &mut net,
                &input,
                &blob,
                scale,
                &gds,
                a.gallery_limit,
                None,
            )?)
        }
        _ => None,
    };
    let acc = nn_accuracy(&q, gallery.as_ref());
    std::fs::create_dir_all(&a.out).map_err(|e| crema::Error::io(&a.out, e))?;
    let n = q.labels.len();
    let feats = Blob::from_data(&[n, q.dim], q.feats.clone())?;
    let labels = Blob::from_data(&[n], q.labels.iter().map(|&l| l as f32).collect())?;
    crema::caffe::npy::write_npy(a.out.join("features.npy"), &feats)?;
    crema::caffe::npy::write_npy(a.out.join("labels.npy"), &labels)?;
    let names: Vec<String> = match &a.class_names {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| crema::Error::io(p, e))?
            .lines()
            .map(|l| l.trim().to_string())
            .collect(),
        None => Vec::new(),
    };
    let mut pictures = serde_json::Map::new();
    if q.dim >= 2 {
        crate::plot::load_font()?;
        let p = a.out.join("embedding.png");
        scatter(&q, &names, &p)?;
        pictures.insert("embedding".into(), p.display().to_string().into());
    }
    if a.reconstruction.is_some() {
        let p = a.out.join("reconstructions.png");
        grid(&q.pictures, &p)?;
        pictures.insert("reconstructions".into(), p.display().to_string().into());
    }
    let against = if gallery.is_some() {
        "gallery"
    } else {
        "leave-one-out"
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"images": n, "dim": q.dim, "blob": blob, "nn_accuracy": acc,
                "nn_reference": against, "out": a.out.display().to_string(), "pictures": pictures})
        );
    } else {
        eprintln!(
            "{n} images -> {}-D `{blob}` features in {}; 1-NN accuracy ({against}): {acc:.4}",
            q.dim,
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbour_accuracy_by_hand() {
        let e = |f: Vec<f32>, l: Vec<i32>| Embedded {
            feats: f,
            dim: 1,
            labels: l,
            pictures: Vec::new(),
        };
        // Points 0, 0.1 (class 0), 5, 5.2 (class 1), 0.2 (class 1): leave-one-out gets the
        // first four right and the last wrong (its neighbour 0.1 is class 0).
        let q = e(vec![0.0, 0.1, 5.0, 5.2, 0.2], vec![0, 0, 1, 1, 1]);
        assert!((nn_accuracy(&q, None) - 0.8).abs() < 1e-12);
        let g = e(vec![0.0, 5.0], vec![0, 1]);
        assert!((nn_accuracy(&q, Some(&g)) - 0.8).abs() < 1e-12);
    }
}
