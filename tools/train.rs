//! `crema train`: run a solver file. Caffe-style log lines and a progress bar on stderr, JSON
//! lines on stdout with `--json`, and always a JSON-lines log `<snapshot_prefix>_log.jsonl`.

use crate::json::event_json;
use crate::Failure;
use crema::dist::Cluster;
use crema::solver::{Action, Event, Solver};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Solver file (YAML or Caffe prototxt).
    #[arg(long)]
    solver: PathBuf,
    /// Fine-tune: copy weights by layer name from these .caffemodel files (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "snapshot")]
    weights: Vec<PathBuf>,
    /// Resume from a .solverstate.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Print JSON lines on stdout (one per display interval and per test).
    #[arg(long)]
    json: bool,
}

/// A glog-style prefix (`I0118 10:20:30.123456 pid file:line]`), UTC, so that Caffe's
/// `parse_log.py` can read the log.
pub fn glog_prefix() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "I{m:02}{d:02} {:02}:{:02}:{:02}.{:06} {} solver.rs:0] ",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_micros(),
        std::process::id()
    )
}

fn fmt_outputs(kind: &str, outputs: &[crema::solver::Output]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut k = 0;
    for o in outputs {
        for v in &o.values {
            let mut line = format!("    {kind} net output #{k}: {} = {v}", o.name);
            if o.loss_weight != 0.0 {
                line += &format!(" (* {} = {} loss)", o.loss_weight, o.loss_weight * v);
            }
            lines.push(line);
            k += 1;
        }
    }
    lines
}

/// A number as Caffe's log prints it: plain, or in exponent form when very large or small.
fn num(x: f32) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-5) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

struct Logger {
    pb: ProgressBar,
    json: bool,
    log: Option<std::fs::File>,
    start: Instant,
    last_display: Option<(Instant, i32)>,
    display: i32,
    test_nets: usize,
}

impl Logger {
    fn line(&self, msg: &str) {
        let p = glog_prefix();
        self.pb.suspend(|| eprintln!("{p}{msg}"));
    }

    fn on(&mut self, e: &Event) {
        let seconds = self.start.elapsed().as_secs_f64();
        if let Some(v) = event_json(e, seconds, self.test_nets) {
            if self.json {
                println!("{v}");
            }
            if let Some(f) = self.log.as_mut() {
                let _ = writeln!(f, "{v}");
            }
        }
        match e {
            Event::Iteration {
                iter,
                smoothed_loss,
                lr,
                ..
            } => {
                self.pb.set_position((*iter + 1) as u64);
                self.pb
                    .set_message(format!("loss {smoothed_loss:.4}  lr {lr:.3e}"));
            }
            Event::Display {
                iter,
                loss,
                lr,
                outputs,
            } => {
                let now = Instant::now();
                let speed = match self.last_display {
                    Some((t, i)) if *iter > i => {
                        let dt = now.duration_since(t).as_secs_f64().max(1e-9);
                        format!(
                            " ({:.4} iter/s, {:.3}s/{} iters)",
                            (*iter - i) as f64 / dt,
                            dt,
                            self.display
                        )
                    }
                    _ => String::new(),
                };
                self.last_display = Some((now, *iter));
                self.line(&format!("Iteration {iter}{speed}, loss = {loss}"));
                for l in fmt_outputs("Train", outputs) {
                    self.line(&l);
                }
                self.line(&format!("Iteration {iter}, lr = {}", num(*lr)));
            }
            Event::FinalLoss { iter, loss, .. } => {
                self.line(&format!("Iteration {iter}, loss = {loss}"));
            }
            Event::Testing { iter, net } => {
                self.line(&format!("Iteration {iter}, Testing net (#{net})"));
            }
            Event::Tested { outputs, .. } => {
                for l in fmt_outputs("Test", outputs) {
                    self.line(&l);
                }
            }
            Event::DebugInfo { lines, .. } => {
                for l in lines.iter() {
                    self.line(l);
                }
            }
            Event::CreatedDir { path } => {
                self.line(&format!(
                    "Created directory {} for snapshots",
                    path.display()
                ));
            }
            Event::Snapshot { model, state, .. } => {
                self.line(&format!(
                    "Snapshotting to binary proto file {}",
                    model.display()
                ));
                self.line(&format!(
                    "Snapshotting solver state to binary proto file {}",
                    state.display()
                ));
            }
        }
    }
}

/// Fails early when snapshots cannot be written where the solver says.
fn check_writable(prefix: &str) -> Result<(), Failure> {
    let p = PathBuf::from(format!("{prefix}_probe"));
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    let probe = dir.join(format!(".crema_write_probe{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Failure::User(anyhow::anyhow!(
            "cannot write snapshots with prefix `{prefix}` (directory {}: {e}); create the \
             directory or change snapshot_prefix",
            dir.display()
        ))),
    }
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let cluster = crema::dist::Cluster::from_env()?.map(Rc::new);
    let r = train(a, cluster.clone());
    if let (Err(e), Some(c)) = (&r, &cluster) {
        // One rank failed: say why, then end every rank (no rank may wait in an allreduce).
        let (kind, code, e) = match e {
            Failure::User(e) => ("error", 1, e),
            Failure::Internal(e) => ("internal error", 2, e),
        };
        let msg = crema::error::chain_text(e.as_ref());
        eprintln!("{kind}: (MPI rank {} of {}) {msg}", c.rank(), c.size());
        c.abort(code);
    }
    r
}

fn train(a: Args, cluster: Option<Rc<Cluster>>) -> Result<ExitCode, Failure> {
    let mut param = crema::load_solver(&a.solver)?;
    if let Some(c) = &cluster {
        c.prepare(&mut param)?;
    }
    let root = cluster.as_ref().is_none_or(|c| c.is_root());
    let prefix = param.snapshot_prefix().to_string();
    let weights: Vec<PathBuf> = if !a.weights.is_empty() {
        a.weights.clone()
    } else if a.snapshot.is_none() {
        param.weights.iter().map(PathBuf::from).collect()
    } else {
        Vec::new()
    };
    let max_iter = param.max_iter().max(0) as u64;
    let display = param.display();
    let mut solver = Solver::new(param)?;
    let quiet_line = |msg: String| {
        if root {
            eprintln!("{}{msg}", glog_prefix())
        }
    };
    quiet_line(format!(
        "Solving {} ({} solver, {} learnable values)",
        solver.net().name,
        solver.kind().name(),
        solver.net().param_count()
    ));
    let reports = solver.copy_weights(&weights)?;
    for (file, r) in weights.iter().zip(reports).filter(|_| root) {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        eprintln!("Fine-tuning from {}:", file.display());
        eprintln!("  copied:  {}", list(&r.copied));
        eprintln!("  fresh (kept their fillers): {}", list(&r.fresh));
        eprintln!("  ignored (not in this net): {}", list(&r.ignored));
    }

    if let Some(c) = &cluster {
        c.attach(&mut solver)?;
        let pids: Vec<String> = c.pids().iter().map(|p| p.to_string()).collect();
        quiet_line(format!(
            "Data-parallel on {} MPI ranks (pids {}): each reads its share of every batch of \
             {} x batch_size; rank 0 tests, snapshots and logs",
            c.size(),
            pids.join(", "),
            c.size()
        ));
    }

    // Rank 0 (or the only process) logs; the other ranks stay quiet.
    let log_path = PathBuf::from(format!("{prefix}_log.jsonl"));
    let log = if root {
        // The log lives beside the snapshots: their directory is made now, not at the first.
        if let Some(dir) = crema::solver::ensure_parent_dir(&log_path)? {
            quiet_line(format!(
                "Created directory {} for snapshots and the training log",
                dir.display()
            ));
        }
        check_writable(&prefix)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Failure::User(crema::Error::io(&log_path, e).into()))?;
        Some(f)
    } else {
        None
    };
    let target = if root {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(max_iter), target);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} it  {msg}  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let logger = Rc::new(RefCell::new(Logger {
        pb: pb.clone(),
        json: a.json,
        log,
        start: Instant::now(),
        last_display: None,
        display,
        test_nets: solver.test_nets().len(),
    }));
    if root {
        let l2 = logger.clone();
        solver.set_observer(move |e: &Event| l2.borrow_mut().on(e));
    }

    // Ctrl-C: snapshot and stop (a second Ctrl-C aborts at once); SIGHUP: snapshot, continue.
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let sig_err = |e: std::io::Error| {
        Failure::Internal(anyhow::anyhow!("cannot install signal handler: {e}"))
    };
    // The shutdown hook is registered first so that only a second Ctrl-C aborts.
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        stop.clone(),
    )
    .map_err(sig_err)?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone()).map_err(sig_err)?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).map_err(sig_err)?;
    let (s2, h2, c2) = (stop.clone(), hup.clone(), cluster.clone());
    solver.set_action_source(move || {
        let local = if s2.load(Ordering::Relaxed) {
            Action::Stop
        } else if h2.swap(false, Ordering::Relaxed) {
            Action::Snapshot
        } else {
            Action::None
        };
        // Under MPI a signal to any rank reaches every rank at this same iteration.
        match &c2 {
            Some(c) => c.agree(local),
            None => local,
        }
    });

    let result = solver.solve(a.snapshot.as_deref());
    pb.finish_and_clear();
    result?;
    if let Some(c) = &cluster {
        c.check_same_iter(solver.iter())?;
        let st = c.stats();
        quiet_line(format!(
            "All {} ranks ended at iteration {}; gradient allreduce {:.3} ms per iteration \
             ({} iterations, {:.3} s in all)",
            c.size(),
            solver.iter(),
            st.ms_per_call(),
            st.calls,
            st.seconds
        ));
    }
    if root {
        let lg = logger.borrow();
        if solver.stopped_early() {
            lg.line("Optimization stopped early.");
        } else {
            lg.line("Optimization Done.");
        }
        eprintln!("training log: {}", log_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
