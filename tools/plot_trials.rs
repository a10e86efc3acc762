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

/// The JSON lines of a trials file.
fn read_trials(log: &Path) -> anyhow::Result<Vec<Value>> {
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
    Ok(trials)
}

/// The best objective after each trial (`None` until one finished); `trials` in file order.
pub fn best_so_far(trials: &[Value], minimize: bool) -> Vec<Option<f64>> {
    let mut best: Option<f64> = None;
    trials
        .iter()
        .map(|t| {
            if let Some(y) = t["objective"].as_f64() {
                best = Some(match best {
                    Some(b) if (minimize && b <= y) || (!minimize && b >= y) => b,
                    _ => y,
                });
            }
            best
        })
        .collect()
}

/// The group a trials file belongs to: its directory's name without a trailing `-N` or `_N`.
fn group_name(log: &Path) -> String {
    let dir = log
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| log.display().to_string());
    match dir.rfind(['-', '_']) {
        Some(i)
            if i > 0 && dir[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < dir.len() =>
        {
            dir[..i].to_string()
        }
        _ => dir,
    }
}

/// Per group (in order of first appearance): its name, each file's best-so-far curve, and the
/// mean curve over the files, taken at each trial where every file of the group has a value.
type Group = (String, Vec<Series>, Series);

fn groups(runs: &[(String, Vec<Option<f64>>)]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (name, best) in runs {
        let curve: Series = best
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i as f64, b)))
            .collect();
        match out.iter_mut().find(|g| g.0 == *name) {
            Some(g) => g.1.push(curve),
            None => out.push((name.clone(), vec![curve], Vec::new())),
        }
    }
    for g in &mut out {
        let k = g.1.len() as f64;
        g.2 = g.1[0]
            .iter()
            .filter_map(|&(x, _)| {
                let ys: Vec<f64> =
                    g.1.iter()
                        .filter_map(|c| c.iter().find(|p| p.0 == x).map(|p| p.1))
                        .collect();
                (ys.len() == g.1.len()).then(|| (x, ys.iter().sum::<f64>() / k))
            })
            .collect();
    }
    out
}

/// `crema plot A/trials.jsonl B/trials.jsonl ...`: best so far per trial for each file (thin)
/// and each group's mean (thick), e.g. Bayesian against random search over several seeds.
pub fn compare(
    logs: &[std::path::PathBuf],
    out: &Path,
    width: u32,
    minimize: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut runs = Vec::new();
    for log in logs {
        let trials = read_trials(log)?;
        runs.push((group_name(log), best_so_far(&trials, minimize)));
    }
    let groups = groups(&runs);
    load_font()?;
    let h = (width * 3 / 5).max(300);
    crate::plot::render_png(out, width, h, |root| {
        let all: Vec<&Series> = groups.iter().flat_map(|g| g.1.iter()).collect();
        let Some((x0, x1, y0, y1)) = range(&all) else {
            return Err(anyhow!("no trial in these files has an objective"));
        };
        let mut chart = ChartBuilder::on(root)
            .caption(
                "best so far per trial (thick: mean over runs)",
                ("sans-serif", 20),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc("best objective")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, (name, curves, mean)) in groups.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            for c in curves {
                chart
                    .draw_series(LineSeries::new(c.clone(), color.mix(0.35).stroke_width(1)))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            chart
                .draw_series(LineSeries::new(mean.clone(), color.stroke_width(3)))
                .map_err(|e| anyhow!("{e}"))?
                .label(format!("{name} ({} runs)", curves.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(if minimize {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            })
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
    .with_context(|| format!("cannot draw {}", out.display()))?;
    let summary: Vec<Value> = groups
        .iter()
        .map(|(name, curves, mean)| {
            serde_json::json!({
                "group": name,
                "runs": curves.len(),
                "final_mean": mean.last().map(|p| p.1),
                "mean": mean.iter().map(|p| p.1).collect::<Vec<_>>(),
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({"out": out.display().to_string(), "groups": summary})
        );
    } else {
        for g in &summary {
            eprintln!(
                "{}: {} runs, mean best after the last trial {}",
                g["group"].as_str().unwrap_or(""),
                g["runs"],
                g["final_mean"]
            );
        }
        eprintln!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(
    log: &Path,
    out: &Path,
    width: u32,
    minimize: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let trials = read_trials(log)?;
    let panels = panels(&trials, minimize);
    load_font()?;
    let h = 280 * panels.len() as u32;
    crate::plot::render_png(out, width, h, |root| {
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
        Ok(())
    })
    .with_context(|| format!("cannot draw {}", out.display()))?;
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
        assert_eq!(
            best_so_far(&t, false),
            vec![Some(0.5), Some(0.5), Some(0.7), Some(0.7)]
        );
    }

    #[test]
    fn runs_group_by_directory_and_average_where_all_have_a_value() {
        assert_eq!(group_name(Path::new("t/bayes-1/trials.jsonl")), "bayes");
        assert_eq!(group_name(Path::new("t/random_12/trials.jsonl")), "random");
        assert_eq!(group_name(Path::new("t/lenet-x/trials.jsonl")), "lenet-x");
        assert_eq!(group_name(Path::new("t/run-/trials.jsonl")), "run-");
        let runs = vec![
            ("bayes".to_string(), vec![Some(0.5), Some(0.7), Some(0.7)]),
            ("random".to_string(), vec![Some(0.2), Some(0.4), Some(0.6)]),
            ("bayes".to_string(), vec![None, Some(0.6), Some(0.9)]),
        ];
        let g = groups(&runs);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0, "bayes");
        assert_eq!(g[0].1.len(), 2);
        // Trial 0 has no value in the second bayes run: the mean starts at trial 1.
        let close = |got: &Series, want: &[(f64, f64)]| {
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(
                    g.0 == w.0 && (g.1 - w.1).abs() < 1e-12,
                    "{got:?} vs {want:?}"
                );
            }
        };
        close(&g[0].2, &[(1.0, 0.65), (2.0, 0.8)]);
        close(&g[1].2, &[(0.0, 0.2), (1.0, 0.4), (2.0, 0.6)]);
    }
}
