//! `crema tune`: hyperparameter search. Each trial trains the solver in process for
//! `--budget-iters` iterations with the trial's values and scores a test-net output at the end.
//! Writes `DIR/trials.jsonl` (one line per finished trial; re-running with the same `--out`
//! continues from it), `DIR/best_solver.yaml` (and `DIR/best_net.yaml` when the space names
//! layer fields) and per-trial training logs in `DIR/trials/`.

use crate::json::{event_json, f32_json};
use crate::Failure;
use anyhow::anyhow;
use crema::proto::{NetParameter, SolverParameter};
use crema::solver::{Event, Solver};
use crema::tune::{Method, ParamValue, Searcher, Space};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    /// Gaussian process + expected improvement after Halton points.
    Bayes,
    /// Uniform random points.
    Random,
}

#[derive(clap::Args)]
pub struct Args {
    /// Solver file (YAML or Caffe prototxt); it needs a test net (`test_iter`).
    #[arg(long)]
    solver: PathBuf,
    /// Search space (YAML): `base_lr: {min: 1e-4, max: 0.3, scale: log}`, `lr_policy: [inv, step]`,
    /// `layer.drop1.dropout_param.dropout_ratio: {min: 0, max: 0.7}`.
    #[arg(long)]
    space: PathBuf,
    /// Number of trials in all (a resumed search runs the trials still missing).
    #[arg(long)]
    trials: usize,
    /// Trials run at once (a batch proposed with the constant liar).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Iterations per trial (default: the solver's max_iter).
    #[arg(long)]
    budget_iters: Option<i32>,
    /// The test-net output to optimize.
    #[arg(long, default_value = "accuracy")]
    objective: String,
    /// Maximize the objective (the default, unless its name contains "loss").
    #[arg(long, conflicts_with = "minimize")]
    maximize: bool,
    /// Minimize the objective.
    #[arg(long)]
    minimize: bool,
    /// Output folder.
    #[arg(long, default_value = "tune")]
    out: PathBuf,
    /// How points are chosen.
    #[arg(long, value_enum, default_value = "bayes")]
    method: MethodArg,
    /// Seed of the search (the training itself uses the solver's random_seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print each trial's JSON line on stdout.
    #[arg(long)]
    json: bool,
}

/// One finished trial.
struct Trial {
    trial: usize,
    values: Vec<ParamValue>,
    /// The objective as reported (not negated); `None` when diverged.
    objective: Option<f32>,
    seconds: f64,
}

impl Trial {
    fn json(&self, space: &Space) -> Value {
        let mut params = Map::new();
        for (p, v) in space.params.iter().zip(&self.values) {
            params.insert(p.name.clone(), v.to_json());
        }
        json!({
            "trial": self.trial,
            "params": params,
            "objective": self.objective.map(f32_json).unwrap_or(Value::Null),
            "status": if self.objective.is_some() { "ok" } else { "diverged" },
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
        })
    }
}

/// Reads the trials of an earlier run; each must fit the space.
fn read_trials(path: &Path, space: &Space) -> anyhow::Result<Vec<Trial>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crema::Error::io(path, e).into()),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let v: Value =
            serde_json::from_str(line).map_err(|e| anyhow!("{at}: not a JSON line ({e})"))?;
        let trial = v["trial"]
            .as_u64()
            .ok_or_else(|| anyhow!("{at}: expected a \"trial\" number"))?
            as usize;
        let params = v["params"]
            .as_object()
            .ok_or_else(|| anyhow!("{at}: expected a \"params\" object"))?;
        if params.len() != space.params.len() {
            return Err(anyhow!(
                "{at}: the trial has {} parameter(s), the space {} has {}; use another --out \
                 for another space",
                params.len(),
                space.file,
                space.params.len()
            ));
        }
        let mut values = Vec::new();
        for p in &space.params {
            let pv = params
                .get(&p.name)
                .and_then(|x| p.value_from_json(x))
                .ok_or_else(|| {
                    anyhow!(
                        "{at}: `{}` is missing or outside the space {}; use another --out for \
                         another space",
                        p.name,
                        space.file
                    )
                })?;
            values.push(pv);
        }
        let objective = match (v["status"].as_str(), v["objective"].as_f64()) {
            (Some("ok"), Some(x)) => Some(x as f32),
            (Some("diverged"), _) => None,
            _ => {
                return Err(anyhow!(
                    "{at}: expected \"status\": \"ok\" with a number \"objective\", or \
                     \"status\": \"diverged\""
                ))
            }
        };
        let seconds = v["seconds"].as_f64().unwrap_or(0.0);
        out.push(Trial {
            trial,
            values,
            objective,
            seconds,
        });
    }
    Ok(out)
}

/// The solver (and net) of a trial: the base with the trial's values.
fn configure(
    base: &SolverParameter,
    net: Option<&NetParameter>,
    space: &Space,
    values: &[ParamValue],
) -> crema::Result<(SolverParameter, Option<NetParameter>)> {
    let mut s = base.clone();
    let mut n = net.cloned();
    space.apply(values, &mut s, n.as_mut())?;
    Ok((s, n))
}

/// The scalar outputs of a test: (name, value).
type Outputs = Vec<(String, f32)>;

/// Trains one trial; `Ok(None)` when it diverged.
fn run_trial(
    mut s: SolverParameter,
    net: Option<NetParameter>,
    budget: i32,
    objective: &str,
    log: &Path,
) -> anyhow::Result<Option<f32>> {
    if let Some(n) = net {
        s.net = None;
        s.net_param = Some(n);
    }
    s.max_iter = Some(budget);
    s.test_interval = Some(budget);
    s.test_initialization = Some(false);
    s.snapshot = Some(0);
    s.snapshot_after_train = Some(false);
    s.snapshot_prefix = Some(log.with_extension("").display().to_string());
    let mut solver = Solver::new(s)?;
    let tests = solver.test_nets().len();
    let mut file = std::fs::File::create(log).map_err(|e| crema::Error::io(log, e))?;
    let last: Rc<RefCell<Option<Outputs>>> = Rc::new(RefCell::new(None));
    let (l2, start) = (last.clone(), Instant::now());
    solver.set_observer(move |e: &Event| {
        if let Some(v) = event_json(e, start.elapsed().as_secs_f64(), tests) {
            let _ = writeln!(file, "{v}");
        }
        if let Event::Tested {
            net: 0, outputs, ..
        } = e
        {
            *l2.borrow_mut() = Some(
                outputs
                    .iter()
                    .filter(|o| o.values.len() == 1)
                    .map(|o| (o.name.clone(), o.values[0]))
                    .collect(),
            );
        }
    });
    match solver.solve(None) {
        Ok(()) => {}
        Err(crema::Error::NotFinite(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let outs = last
        .borrow_mut()
        .take()
        .ok_or_else(|| anyhow!("the solver ran no test at the end of the trial"))?;
    let v = outs
        .iter()
        .find(|(n, _)| n == objective)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = outs.iter().map(|(n, _)| n.as_str()).collect();
            anyhow!(
                "the test net has no scalar output `{objective}`; its outputs: {} (choose one \
                 with --objective)",
                names.join(", ")
            )
        })?;
    Ok(v.is_finite().then_some(v))
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(|e| crema::Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| crema::Error::io(path, e))?;
    Ok(())
}

/// Writes `best_solver.yaml` (and `best_net.yaml`): the base solver with the best values, all
/// paths absolute, snapshots to `DIR/best`.
fn write_best(
    out: &Path,
    base: &SolverParameter,
    net: Option<&NetParameter>,
    space: &Space,
    best: &Trial,
) -> anyhow::Result<()> {
    let (mut s, n) = configure(base, net, space, &best.values)?;
    if let Some(n) = n {
        let p = out.join("best_net.yaml");
        write_atomic(&p, &crema::spec::message_to_yaml(&n))?;
        s.net = Some(p.display().to_string());
        s.net_param = None;
    }
    s.snapshot_prefix = Some(out.join("best").display().to_string());
    let head = format!(
        "# crema tune: trial {} of {}, objective {}\n",
        best.trial,
        out.join("trials.jsonl").display(),
        best.objective.map(|v| v.to_string()).unwrap_or_default()
    );
    write_atomic(
        &out.join("best_solver.yaml"),
        &(head + &crema::spec::message_to_yaml(&s)),
    )
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    if a.trials == 0 || a.parallel == 0 {
        return Err(Failure::User(anyhow!(
            "--trials and --parallel must be at least 1"
        )));
    }
    let space = Space::load(&a.space)?;
    let solver_path =
        std::fs::canonicalize(&a.solver).map_err(|e| crema::Error::io(&a.solver, e))?;
    let base = crema::load_solver(&solver_path)?;
    if base.test_iter.is_empty() {
        return Err(Failure::User(anyhow!(
            "{}: the objective is a test-net output, but the solver has no test net (`test_iter`)",
            a.solver.display()
        )));
    }
    let budget = a.budget_iters.unwrap_or(base.max_iter());
    if budget < 1 {
        return Err(Failure::User(anyhow!(
            "--budget-iters must be at least 1 (the solver's max_iter is {})",
            base.max_iter()
        )));
    }
    let net = if space.has_layer_params() {
        let n = match (&base.net_param, &base.net) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => crema::load_net(p)?,
            _ => {
                return Err(Failure::User(anyhow!(
                    "{}: the space names layer fields, which needs a solver with `net` or \
                     `net_param` (not train_net/test_net)",
                    space.file
                )))
            }
        };
        space.check_net(&n)?;
        Some(n)
    } else {
        None
    };
    let maximize = a.maximize || (!a.minimize && !a.objective.contains("loss"));

    std::fs::create_dir_all(a.out.join("trials")).map_err(|e| crema::Error::io(&a.out, e))?;
    let out = std::fs::canonicalize(&a.out).map_err(|e| crema::Error::io(&a.out, e))?;
    let trials_path = out.join("trials.jsonl");
    let mut trials = read_trials(&trials_path, &space)?;
    let key = |t: &Trial| {
        t.objective
            .map(|v| if maximize { -(v as f64) } else { v as f64 })
    };
    let best_of = |ts: &[Trial]| -> Option<usize> {
        (0..ts.len())
            .filter(|&i| key(&ts[i]).is_some())
            .min_by(|&i, &j| {
                key(&ts[i])
                    .partial_cmp(&key(&ts[j]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    };
    if !trials.is_empty() {
        eprintln!(
            "resuming {}: {} trial(s) done",
            trials_path.display(),
            trials.len()
        );
    }
    let method = match a.method {
        MethodArg::Bayes => Method::Bayes,
        MethodArg::Random => Method::Random,
    };
    let searcher = Searcher::new(method, space.params.len(), a.seed);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&trials_path)
        .map_err(|e| crema::Error::io(&trials_path, e))?;

    let pb = ProgressBar::new(a.trials as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} trials  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_position(trials.len().min(a.trials) as u64);
    let show_best = |pb: &ProgressBar, ts: &[Trial]| {
        if let Some(b) = best_of(ts) {
            pb.set_message(format!(
                "best {} = {} (trial {})",
                a.objective,
                ts[b].objective.unwrap_or(f32::NAN),
                ts[b].trial
            ));
        }
    };
    show_best(&pb, &trials);

    while trials.len() < a.trials {
        let n = a.parallel.min(a.trials - trials.len());
        let history: Vec<(Vec<f64>, Option<f64>)> = trials
            .iter()
            .map(|t| {
                let u = space
                    .params
                    .iter()
                    .zip(&t.values)
                    .map(|(p, v)| p.encode(v).unwrap_or(0.5))
                    .collect();
                (u, key(t))
            })
            .collect();
        let next = trials.iter().map(|t| t.trial + 1).max().unwrap_or(0);
        let batch: Vec<(usize, Vec<ParamValue>)> = searcher
            .propose(&history, n)
            .iter()
            .enumerate()
            .map(|(k, u)| (next + k, space.decode(u)))
            .collect();
        let mut configs = Vec::new();
        for (_, values) in &batch {
            configs.push(configure(&base, net.as_ref(), &space, values)?);
        }
        let results: Vec<anyhow::Result<(Option<f32>, f64)>> = std::thread::scope(|sc| {
            let handles: Vec<_> = batch
                .iter()
                .zip(configs)
                .map(|((i, _), (s, n))| {
                    let log = out.join("trials").join(format!("trial_{i}.jsonl"));
                    let objective = a.objective.as_str();
                    sc.spawn(move || {
                        let t = Instant::now();
                        let r = run_trial(s, n, budget, objective, &log)?;
                        Ok((r, t.elapsed().as_secs_f64()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a trial's thread panicked")))
                })
                .collect()
        });
        for ((i, values), r) in batch.into_iter().zip(results) {
            let (objective, seconds) = r.map_err(|e| {
                Failure::User(e.context(format!(
                    "trial {i} ({})",
                    space
                        .params
                        .iter()
                        .zip(&values)
                        .map(|(p, v)| format!("{} = {v}", p.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            })?;
            let t = Trial {
                trial: i,
                values,
                objective,
                seconds,
            };
            let line = t.json(&space).to_string();
            writeln!(file, "{line}")
                .and_then(|_| file.flush())
                .map_err(|e| crema::Error::io(&trials_path, e))?;
            if a.json {
                pb.suspend(|| println!("{line}"));
            }
            trials.push(t);
            if best_of(&trials) == Some(trials.len() - 1) {
                write_best(&out, &base, net.as_ref(), &space, &trials[trials.len() - 1])?;
            }
            pb.inc(1);
            show_best(&pb, &trials);
        }
    }
    pb.finish_and_clear();
    match best_of(&trials) {
        Some(b) => {
            let t = &trials[b];
            if !out.join("best_solver.yaml").exists() {
                write_best(&out, &base, net.as_ref(), &space, t)?;
            }
            let vals: Vec<String> = space
                .params
                .iter()
                .zip(&t.values)
                .map(|(p, v)| format!("{} = {v}", p.name))
                .collect();
            eprintln!(
                "best: trial {} with {} = {} ({}); {} trial(s) in {}; train it with: crema \
                 train --solver {}",
                t.trial,
                a.objective,
                t.objective.unwrap_or(f32::NAN),
                vals.join(", "),
                trials.len(),
                trials_path.display(),
                out.join("best_solver.yaml").display()
            );
        }
        None => eprintln!(
            "every trial diverged; see {} (try a smaller base_lr range)",
            trials_path.display()
        ),
    }
    eprintln!(
        "plot the trials with: crema plot {} --out {}{}",
        trials_path.display(),
        out.join("trials.png").display(),
        if maximize { "" } else { " --minimize" }
    );
    Ok(ExitCode::SUCCESS)
}
