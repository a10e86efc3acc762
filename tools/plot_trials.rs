//! `crema plot DIR/trials.jsonl`: the trials of `crema tune`: the objective per trial with the
//! best so far, then one panel per parameter (value against objective; log10 of the value when
//! it spans more than a factor 20, the choice's index for text choices).

use crate::plot::{load_font, range, Series};
use crate::Failure;
use anyhow::{anyhow, Context};
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// Whether the file's first line is a trial line (`"trial"` and `"params"`).
pub fn is_trials_log(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            let first = t.lines().find(|l| !l.trim().is_empty())?.to_string();
            serde_json::from_str::<Value>(&first).ok()
        })
        .is_some_and(|v| v.get("trial").is_some() && v.get("params").is_some())
}

/// One panel: title, x label, points, best-so-far line (objective panel only).
struct Panel {
    title: String,
    x_desc: String,
    points: Series,
    line: Series,
}

fn panels(trials: &[Value], minimize: bool) -> Vec<Panel> {
    let obj = |t: &Value| t["objective"].as_f64();
    let mut points = Vec::new();
    let mut line = Vec::new();
    let mut best: Option<f64> = None;
    for t in trials {
        let i = t["trial"].as_f64().unwrap_or(0.0);
        if let Some(y) = obj(t) {
            points.push((i, y));
            best = Some(match best {
                Some(b) if (minimize && b <= y) || (!minimize && b >= y) => b,
                _ => y,
            });
        }
        if let Some(b) = best {
            line.push((i, b));
        }
    }
    let mut out = vec![Panel {
        title: "objective per trial (line: best so far)".into(),
        x_desc: "trial".into(),
        points,
        line,
    }];
    let mut names: Vec<String> = Vec::new();
    for t in trials {
        if let Some(p) = t["params"].as_object() {
            for k in p.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    for name in names {
        let vals: Vec<(&Value, Option<f64>)> = trials
            .iter()
            .map(|t| (&t["params"][&name], obj(t)))
            .collect();
        let nums: Vec<f64> = vals.iter().filter_map(|(v, _)| v.as_f64()).collect();
        let numeric = nums.len() == vals.len();
        let (lo, hi) = nums
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let log = numeric && lo > 0.0 && hi / lo > 20.0;
        let mut labels: Vec<String> = Vec::new();
        let mut points = Vec::new();
        for (v, y) in vals {
            let x = if numeric {
                let x = v.as_f64().unwrap_or(0.0);
                if log {
                    x.log10()
                } else {
                    x
                }
            } else {
                let s = v.to_string();
                match labels.iter().position(|l| *l == s) {
                    Some(i) => i as f64,
                    None => {
                        labels.push(s);
                        (labels.len() - 1) as f64
                    }
                }
            };
            if let Some(y) = y {
                points.push((x, y));
            }
        }
        let x_desc = if log {
            format!("log10({name})")
        } else if numeric {
            name.clone()
        } else {
            format!("{name}: {}", labels.join(", "))
        };
        out.push(Panel {
            title: name,
            x_desc,
            points,
            line: Vec::new(),
        });
    }
    out
}

pub fn run(
    log: &Path,
    out: &Path,
    width: u32,
    minimize: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut trials = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON line", log.display(), n + 1))?;
        trials.push(v);
    }
    let panels = panels(&trials, minimize);
    load_font()?;
    let h = 280 * panels.len() as u32;
    let draw = || -> anyhow::Result<()> {
        let mut pixels = vec![0u8; width as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (width, h)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
            let areas = root.split_evenly((panels.len(), 1));
            for (area, p) in areas.iter().zip(&panels) {
                let Some((x0, x1, y0, y1)) = range(&[&p.points, &p.line]) else {
                    continue;
                };
                let xpad = (x1 - x0) * 0.03;
                let mut chart = ChartBuilder::on(area)
                    .caption(&p.title, ("sans-serif", 18))
                    .margin(12)
                    .x_label_area_size(35)
                    .y_label_area_size(70)
                    .build_cartesian_2d(x0 - xpad..x1 + xpad, y0..y1)
                    .map_err(|e| anyhow!("{e}"))?;
                chart
                    .configure_mesh()
                    .x_desc(p.x_desc.as_str())
                    .y_desc("objective")
                    .draw()
                    .map_err(|e| anyhow!("{e}"))?;
                let color = Palette99::pick(0).to_rgba();
                chart
                    .draw_series(p.points.iter().map(|&q| Circle::new(q, 4, color.filled())))
                    .map_err(|e| anyhow!("{e}"))?;
                if !p.line.is_empty() {
                    let c2 = Palette99::pick(1).to_rgba();
                    chart
                        .draw_series(LineSeries::new(p.line.clone(), c2.stroke_width(2)))
                        .map_err(|e| anyhow!("{e}"))?;
                }
            }
            root.present().map_err(|e| anyhow!("{e}"))?;
        }
        image::RgbImage::from_raw(width, h, pixels)
            .ok_or_else(|| anyhow!("the plot buffer has the wrong size"))?
            .save(out)?;
        Ok(())
    };
    draw().with_context(|| format!("cannot draw {}", out.display()))?;
    let names: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "out": out.display().to_string(),
                "trials": trials.len(),
                "panels": names,
            })
        );
    } else {
        eprintln!(
            "wrote {} ({} trials; {})",
            out.display(),
            trials.len(),
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_so_far_and_log_axes() {
        let t: Vec<Value> = [
            r#"{"trial":0,"params":{"lr":0.001,"p":"inv"},"objective":0.5,"status":"ok"}"#,
            r#"{"trial":1,"params":{"lr":0.1,"p":"step"},"objective":null,"status":"diverged"}"#,
            r#"{"trial":2,"params":{"lr":0.01,"p":"inv"},"objective":0.7,"status":"ok"}"#,
            r#"{"trial":3,"params":{"lr":0.05,"p":"step"},"objective":0.6,"status":"ok"}"#,
        ]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        let p = panels(&t, false);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].points, vec![(0.0, 0.5), (2.0, 0.7), (3.0, 0.6)]);
        assert_eq!(
            p[0].line,
            vec![(0.0, 0.5), (1.0, 0.5), (2.0, 0.7), (3.0, 0.7)]
        );
        assert_eq!(p[1].x_desc, "log10(lr)");
        assert!((p[1].points[0].0 + 3.0).abs() < 1e-12);
        assert_eq!(p[2].x_desc, r#"p: "inv", "step""#);
        assert_eq!(p[2].points, vec![(0.0, 0.5), (0.0, 0.7), (1.0, 0.6)]);
        let m = panels(&t, true);
        assert_eq!(m[0].line.last(), Some(&(3.0, 0.5)));
    }
}
