//! `crema plot`: training loss, test outputs and the learning rate against iterations, from the
//! JSON-lines training log (`<snapshot_prefix>_log.jsonl` or `crema train --json` output).

use crate::Failure;
use anyhow::{anyhow, Context};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Training log (JSON lines), or one or more `crema tune` trials.jsonl files (several are
    /// drawn as best-so-far curves, grouped by their directory's name without a trailing
    /// `-N`/`_N`: `bayes-1`, `bayes-2` and `random-1` make two groups, each with its mean).
    log: PathBuf,
    /// More trials.jsonl files to compare with the first.
    more: Vec<PathBuf>,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
    /// Which run to draw when several trainings were appended to one log (1 = the first;
    /// default: the last). A line with a lower iteration than the line before starts a run.
    #[arg(long)]
    run: Option<usize>,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1000)]
    width: u32,
    /// Print one JSON object on stdout (what was drawn).
    #[arg(long)]
    json: bool,
    /// For a `crema tune` trials.jsonl: the objective was minimized (best so far is the lowest).
    #[arg(long)]
    minimize: bool,
}

pub(crate) type Series = Vec<(f64, f64)>;

/// A named curve in a panel; `bool`: draw point markers (sparse test points).
type Curve<'a> = (String, &'a Series, bool);

/// The curves in a log: train loss, lr, and each test output (keyed `net/name`).
#[derive(Default)]
struct Curves {
    loss: Series,
    lr: Series,
    tests: BTreeMap<String, Series>,
}

/// Splits a log's iteration numbers (in line order) into runs: a line whose iteration is lower
/// than the line before starts a new run (another `crema train` appended to the same log).
/// Returns each run's range of lines.
fn split_runs(iters: &[f64]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..iters.len() {
        if iters[i] < iters[i - 1] {
            runs.push(start..i);
            start = i;
        }
    }
    if start < iters.len() {
        runs.push(start..iters.len());
    }
    runs
}

/// The lines of a log that carry an iteration, parsed, in file order.
fn read_lines(path: &Path) -> anyhow::Result<Vec<(f64, serde_json::Value)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
        if let Some(iter) = v.get("iter").and_then(|i| i.as_f64()) {
            lines.push((iter, v));
        }
    }
    Ok(lines)
}

/// The curves of one run's lines.
fn curves(lines: &[(f64, serde_json::Value)]) -> Curves {
    let mut c = Curves::default();
    for &(iter, ref v) in lines {
        if let Some(outs) = v.get("outputs").and_then(|o| o.as_object()) {
            let net = v.get("net").and_then(|n| n.as_u64()).unwrap_or(0);
            for (name, val) in outs {
                // Arrays (multi-element outputs) are plotted by their mean.
                let x = match val {
                    serde_json::Value::Array(a) if !a.is_empty() => {
                        a.iter().filter_map(|x| x.as_f64()).sum::<f64>() / a.len() as f64
                    }
                    other => match other.as_f64() {
                        Some(x) => x,
                        None => continue,
                    },
                };
                let key = if net > 0 {
                    format!("test #{net} {name}")
                } else {
                    format!("test {name}")
                };
                c.tests.entry(key).or_default().push((iter, x));
            }
        } else {
            if let Some(l) = v.get("loss").and_then(|l| l.as_f64()) {
                c.loss.push((iter, l));
            }
            if let Some(l) = v.get("lr").and_then(|l| l.as_f64()) {
                c.lr.push((iter, l));
            }
        }
    }
    c
}

/// Draws with plotters into an RGB buffer of `width` x `height` (white background) and writes
/// it to `out` as PNG through the `image` crate (one image/png version in the build): every
/// picture `crema plot` and `crema embed` make goes through here.
pub(crate) fn render_png(
    out: &Path,
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(&root)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    image::RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| anyhow!("the plot buffer has the wrong size"))?
        .save(out)?;
    Ok(())
}

/// Registers a TrueType font for the labels: `$CREMA_FONT`, else a common system font.
pub(crate) fn load_font() -> anyhow::Result<()> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("CREMA_FONT") {
        candidates.push(p.into());
    }
    for p in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
        "/Library/Fonts/Arial.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ] {
        candidates.push(p.into());
    }
    for c in &candidates {
        if let Ok(bytes) = std::fs::read(c) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err(anyhow!(
        "no TrueType font found for the plot labels (tried $CREMA_FONT and common DejaVu / \
         Liberation / Arial paths); set CREMA_FONT=/path/to/font.ttf"
    ))
}

pub(crate) fn range(series: &[&Series]) -> Option<(f64, f64, f64, f64)> {
    let pts: Vec<&(f64, f64)> = series
        .iter()
        .flat_map(|s| s.iter())
        .filter(|p| p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return None;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in pts {
        x0 = x0.min(p.0);
        x1 = x1.max(p.0);
        y0 = y0.min(p.1);
        y1 = y1.max(p.1);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(y1.abs() * 1e-3).max(1e-12);
    Some((x0, x1, y0 - pad, y1 + pad))
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    if crate::plot_trials::is_trials_log(&a.log) {
        if !a.more.is_empty() {
            let mut all = vec![a.log.clone()];
            all.extend(a.more.iter().cloned());
            return crate::plot_trials::compare(&all, &a.out, a.width, a.minimize, a.json);
        }
        return crate::plot_trials::run(&a.log, &a.out, a.width, a.minimize, a.json);
    }
    if let Some(extra) = a.more.first() {
        return Err(Failure::User(anyhow!(
            "{}: only crema tune trials files can be drawn together; {} is a training log",
            extra.display(),
            a.log.display()
        )));
    }
    let lines = read_lines(&a.log)?;
    let runs = split_runs(&lines.iter().map(|l| l.0).collect::<Vec<_>>());
    let run = match a.run {
        None => runs.len(),
        Some(k) if (1..=runs.len()).contains(&k) => k,
        Some(k) => {
            return Err(Failure::User(anyhow!(
                "{}: --run {k}, but the log holds {} run(s)",
                a.log.display(),
                runs.len()
            )))
        }
    };
    let chosen = runs.get(run.wrapping_sub(1)).cloned().unwrap_or(0..0);
    if runs.len() > 1 {
        let spans: Vec<String> = runs
            .iter()
            .map(|r| format!("{}-{}", lines[r.start].0, lines[r.end - 1].0))
            .collect();
        eprintln!(
            "{} holds {} runs (iterations {}); drawing run {run}{} (choose with --run K)",
            a.log.display(),
            runs.len(),
            spans.join(", "),
            if a.run.is_none() { ", the last" } else { "" }
        );
    }
    let curves = curves(&lines[chosen]);
    if curves.loss.is_empty() && curves.tests.is_empty() {
        return Err(Failure::User(anyhow!(
            "{}: no training or test lines (expected JSON lines with \"iter\" and \"loss\" or \
             \"outputs\")",
            a.log.display()
        )));
    }
    load_font()?;
    // Panels: losses (train loss + test outputs named *loss*), other test outputs, lr.
    let mut panels: Vec<(String, Vec<Curve>)> = Vec::new();
    let mut losses = Vec::new();
    if !curves.loss.is_empty() {
        losses.push(("train loss".to_string(), &curves.loss, false));
    }
    let mut others = Vec::new();
    for (k, s) in &curves.tests {
        if k.contains("loss") {
            losses.push((k.clone(), s, true));
        } else {
            others.push((k.clone(), s, true));
        }
    }
    if !losses.is_empty() {
        panels.push(("loss".into(), losses));
    }
    if !others.is_empty() {
        panels.push(("test outputs".into(), others));
    }
    if !curves.lr.is_empty() {
        panels.push((
            "learning rate".into(),
            vec![("lr".to_string(), &curves.lr, false)],
        ));
    }
    let h = 320 * panels.len() as u32;
    render_png(&a.out, a.width, h, |root| {
        let areas = root.split_evenly((panels.len(), 1));
        let mut color_i = 0;
        for (area, (title, series)) in areas.iter().zip(&panels) {
            let refs: Vec<&Series> = series.iter().map(|s| s.1).collect();
            let Some((x0, x1, y0, y1)) = range(&refs) else {
                continue;
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc("iteration")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| {
                    if v.abs() >= 1e-2 || *v == 0.0 {
                        format!("{v:.3}")
                    } else {
                        format!("{v:.1e}")
                    }
                })
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
            for (name, s, markers) in series {
                let color = Palette99::pick(color_i).to_rgba();
                color_i += 1;
                let pts: Vec<(f64, f64)> = s.iter().copied().filter(|p| p.1.is_finite()).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| anyhow!("{e}"))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if *markers {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(|e| anyhow!("{e}"))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }
        Ok(())
    })
    .with_context(|| format!("cannot draw {}", a.out.display()))?;
    let names: Vec<&str> = panels
        .iter()
        .flat_map(|p| p.1.iter().map(|s| s.0.as_str()))
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "out": a.out.display().to_string(),
                "series": names,
                "runs": runs.len(),
                "run": run
            })
        );
    } else {
        eprintln!("wrote {} ({})", a.out.display(), names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_where_the_iteration_goes_back() {
        assert_eq!(split_runs(&[]), Vec::<Range<usize>>::new());
        // One run: test and display lines share iterations.
        assert_eq!(split_runs(&[0., 0., 10., 20., 20., 30.]), vec![0..6]);
        // A second run appended from 0, a third resumed at 20.
        assert_eq!(
            split_runs(&[0., 10., 20., 0., 0., 10., 20., 30., 20., 30.]),
            vec![0..3, 3..8, 8..10]
        );
    }
}
