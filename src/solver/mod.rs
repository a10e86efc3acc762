//! The solver: Caffe's training loop (`Step`), testing, snapshots and resume.
//!
//! One iteration (Caffe's `Solver::Step`): zero the parameter diffs; test when due; run
//! `iter_size` forward/backward passes (diffs accumulate); update the smoothed loss; display;
//! apply the update (rate from the [`LrPolicy`], global L2 clipping, 1/iter_size normalisation,
//! L2/L1 weight decay with `decay_mult`, the type-specific rule writes the step into the diff,
//! `data -= diff`); `iter += 1`; snapshot when due or requested.
//!
//! The solver has three hooks: a [`Feeder`] that fills input blobs before each forward pass
//! (for nets with `Input` layers), an observer that receives [`Event`]s (logging, progress bars)
//! and an action source polled once per iteration (signals: snapshot, stop).

pub mod lr_policy;

mod adadelta;
mod adagrad;
mod adam;
mod nesterov;
mod rmsprop;
mod sgd;

pub use lr_policy::LrPolicy;

use crate::blob::{blob_to_proto, copy_blob_proto};
use crate::net::CopyReport;
use crate::proto::{NetParameter, NetState, Phase, SolverParameter, SolverState};
use crate::{Blob, Error, Net, Result};
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// The update rule (`type:` in the solver file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverType {
    Sgd,
    Nesterov,
    AdaGrad,
    RmsProp,
    AdaDelta,
    Adam,
}

impl SolverType {
    const ALL: [(&'static str, SolverType); 6] = [
        ("SGD", SolverType::Sgd),
        ("Nesterov", SolverType::Nesterov),
        ("AdaGrad", SolverType::AdaGrad),
        ("RMSProp", SolverType::RmsProp),
        ("AdaDelta", SolverType::AdaDelta),
        ("Adam", SolverType::Adam),
    ];

    /// Parses Caffe's type string.
    pub fn parse(name: &str) -> Result<SolverType> {
        if let Some((_, t)) = Self::ALL.iter().find(|(n, _)| *n == name) {
            return Ok(*t);
        }
        let names = Self::ALL.iter().map(|(n, _)| *n);
        let hint = crate::spec::nearest(name, names.clone())
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        Err(Error::Invalid(format!(
            "unknown solver type `{name}`{hint}; known: {}",
            names.collect::<Vec<_>>().join(", ")
        )))
    }

    /// Caffe's type string.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("SGD")
    }

    /// History blobs kept per learnable blob.
    pub fn history_per_param(self) -> usize {
        match self {
            SolverType::AdaDelta | SolverType::Adam => 2,
            _ => 1,
        }
    }
}

/// What an update rule needs besides the gradient and its history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpdateCtx {
    /// `rate * lr_mult`.
    pub lr: f32,
    pub momentum: f32,
    pub momentum2: f32,
    pub delta: f32,
    pub rms_decay: f32,
    /// Adam's time step, `iter + 1`.
    pub t: i32,
}

impl Default for UpdateCtx {
    fn default() -> Self {
        UpdateCtx {
            lr: 0.01,
            momentum: 0.0,
            momentum2: 0.999,
            delta: 1e-8,
            rms_decay: 0.99,
            t: 1,
        }
    }
}

/// Which net a [`Feeder`] call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCtx {
    /// TRAIN for the train net, TEST for test nets.
    pub phase: Phase,
    /// Index of the test net (0 for the train net).
    pub net: usize,
    /// The solver's iteration.
    pub iter: i32,
    /// The pass within the iteration: `0..iter_size` for training, `0..test_iter` for a test.
    pub pass: usize,
}

/// Fills a net's input blobs before a forward pass.
pub type Feeder = Box<dyn FnMut(&mut Net, &FeedCtx) -> Result<()>>;

/// Receives the solver's [`Event`]s.
pub type Observer = Box<dyn for<'a> FnMut(&Event<'a>)>;

/// Polled once per iteration for an external request.
pub type ActionSource = Box<dyn FnMut() -> Action>;

/// One named output value list (an output blob's elements) with its loss weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub values: Vec<f32>,
    pub loss_weight: f32,
}

/// What the solver reports while it runs.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// An update was applied; `iter` is the iteration just finished (before the increment).
    Iteration {
        iter: i32,
        loss: f32,
        smoothed_loss: f32,
        lr: f32,
    },
    /// A display interval (`iter % display == 0`): smoothed loss, rate, train-net outputs.
    Display {
        iter: i32,
        loss: f32,
        lr: f32,
        outputs: &'a [Output],
    },
    /// The loss shown after the last iteration (Caffe's final forward).
    FinalLoss { iter: i32, loss: f32, lr: f32 },
    /// A test net is about to run.
    Testing { iter: i32, net: usize },
    /// A test net's outputs, averaged over its `test_iter` passes.
    Tested {
        iter: i32,
        net: usize,
        outputs: &'a [Output],
    },
    /// A snapshot was written.
    Snapshot {
        iter: i32,
        model: &'a Path,
        state: &'a Path,
    },
}

/// What an external request (signal) asks the solver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Snapshot,
    Stop,
}

/// Caffe's solver: a train net, its test nets, the update rule and its history.
pub struct Solver {
    param: SolverParameter,
    kind: SolverType,
    policy: LrPolicy,
    net: Net,
    test_nets: Vec<Net>,
    iter: i32,
    current_step: i32,
    history: Vec<Blob>,
    losses: Vec<f32>,
    smoothed_loss: f32,
    requested_early_exit: bool,
    last_snapshot: Option<(i32, PathBuf)>,
    feeder: Option<Feeder>,
    observer: Option<Observer>,
    action: Option<ActionSource>,
}

/// Runs `passes` forward passes of `net` (calling `feed(net, pass)` before each) and returns
/// each output blob's element-wise mean and the mean loss (Caffe's test averaging).
pub fn score(
    net: &mut Net,
    passes: usize,
    mut feed: impl FnMut(&mut Net, usize) -> Result<()>,
) -> Result<(Vec<Output>, f32)> {
    let mut sums: Vec<(String, Vec<f64>, f32)> = Vec::new();
    let mut loss_sum = 0.0f64;
    for k in 0..passes {
        feed(net, k)?;
        let loss = net.forward()?;
        loss_sum += loss as f64;
        let outs = net.outputs();
        if sums.is_empty() {
            sums = outs
                .iter()
                .map(|(n, b)| {
                    (
                        n.to_string(),
                        b.data.iter().map(|&v| v as f64).collect(),
                        net.blob_loss_weight(n),
                    )
                })
                .collect();
        } else {
            for ((_, acc, _), (_, b)) in sums.iter_mut().zip(&outs) {
                for (a, &v) in acc.iter_mut().zip(&b.data) {
                    *a += v as f64;
                }
            }
        }
    }
    let n = passes.max(1) as f64;
    let outputs = sums
        .into_iter()
        .map(|(name, acc, w)| Output {
            name,
            values: acc.iter().map(|&a| (a / n) as f32).collect(),
            loss_weight: w,
        })
        .collect();
    Ok((outputs, (loss_sum / n) as f32))
}

/// An f32 as a JSON number with its shortest decimal form (0.01, not 0.009999999776);
/// NaN and Inf become `null`.
pub fn f32_json(x: f32) -> serde_json::Value {
    if !x.is_finite() {
        return serde_json::Value::Null;
    }
    x.to_string()
        .parse::<f64>()
        .map(serde_json::Value::from)
        .unwrap_or(serde_json::Value::Null)
}

/// A JSON line for an event, as FORMAT.md §4 specifies (`None` for events that have none):
/// `{"iter", "loss", "lr", "seconds"}` per display and `{"iter", "phase": "TEST", "outputs"}`
/// per test. An output blob with one element maps to a number, a larger one to an array.
/// `test_nets` > 1 adds `"net": i` to test lines.
pub fn event_json(e: &Event, seconds: f64, test_nets: usize) -> Option<serde_json::Value> {
    use serde_json::json;
    match e {
        Event::Display { iter, loss, lr, .. } | Event::FinalLoss { iter, loss, lr } => Some(
            json!({"iter": iter, "loss": f32_json(*loss), "lr": f32_json(*lr), "seconds": seconds}),
        ),
        Event::Tested { iter, net, outputs } => {
            let mut map = serde_json::Map::new();
            for o in outputs.iter() {
                let v = if o.values.len() == 1 {
                    f32_json(o.values[0])
                } else {
                    serde_json::Value::Array(o.values.iter().map(|&x| f32_json(x)).collect())
                };
                map.insert(o.name.clone(), v);
            }
            let mut v = json!({"iter": iter, "phase": "TEST", "outputs": map});
            if test_nets > 1 {
                v["net"] = json!(net);
            }
            Some(v)
        }
        _ => None,
    }
}

/// Caffe's `NetState::MergeFrom`: set fields override, stages append.
fn merge_state(into: &mut NetState, from: &NetState) {
    if from.phase.is_some() {
        into.phase = from.phase;
    }
    if from.level.is_some() {
        into.level = from.level;
    }
    into.stage.extend(from.stage.iter().cloned());
}

fn check_solver(p: &SolverParameter, kind: SolverType) -> Result<()> {
    let bad = |m: String| Err(Error::Invalid(m));
    if p.iter_size() < 1 {
        return bad(format!("iter_size must be >= 1, got {}", p.iter_size()));
    }
    if p.average_loss() < 1 {
        return bad(format!(
            "average_loss must be >= 1, got {}",
            p.average_loss()
        ));
    }
    if p.max_iter() < 0 {
        return bad(format!("max_iter must be >= 0, got {}", p.max_iter()));
    }
    match p.regularization_type() {
        "L1" | "L2" => {}
        other => {
            return bad(format!(
                "unknown regularization_type `{other}`; use L1 or L2"
            ))
        }
    }
    if p.test_iter.iter().any(|&t| t < 0) {
        return bad("test_iter must be >= 0".into());
    }
    match kind {
        SolverType::AdaGrad | SolverType::RmsProp if p.momentum() != 0.0 => {
            return bad(format!(
                "momentum cannot be used with {} (got {})",
                kind.name(),
                p.momentum()
            ));
        }
        SolverType::RmsProp if !(0.0..1.0).contains(&p.rms_decay()) => {
            return bad(format!(
                "rms_decay must be in [0, 1) for RMSProp, got {}",
                p.rms_decay()
            ));
        }
        _ => {}
    }
    if p.display.is_some() && p.display() < 0 {
        return bad("display must be >= 0".into());
    }
    Ok(())
}

impl Solver {
    /// Builds the train net and the test nets a solver describes (paths already resolved, as
    /// [`crate::spec::load_solver`] does).
    pub fn new(param: SolverParameter) -> Result<Solver> {
        let kind = SolverType::parse(param.r#type())?;
        check_solver(&param, kind)?;
        let policy = LrPolicy::from_solver(&param)?;
        let mut rng = if param.random_seed() >= 0 {
            StdRng::seed_from_u64(param.random_seed() as u64)
        } else {
            StdRng::from_entropy()
        };

        // The train net: exactly one of train_net_param, train_net, net_param, net.
        let sources = [
            param.train_net_param.is_some(),
            param.train_net.is_some(),
            param.net_param.is_some(),
            param.net.is_some(),
        ];
        let count = sources.iter().filter(|&&s| s).count();
        if count != 1 {
            return Err(Error::Invalid(format!(
                "a solver must name exactly one train net with one of `net`, `net_param`, \
                 `train_net`, `train_net_param`; this one names {count}"
            )));
        }
        let generic: Option<NetParameter> = if let Some(p) = &param.net_param {
            Some(p.clone())
        } else if let Some(f) = &param.net {
            Some(crate::spec::load_net(f)?)
        } else {
            None
        };
        let train_param = if let Some(p) = &param.train_net_param {
            p.clone()
        } else if let Some(f) = &param.train_net {
            crate::spec::load_net(f)?
        } else {
            generic.clone().unwrap_or_default()
        };
        let mut state = NetState::default();
        state.set_phase(Phase::Train);
        if let Some(s) = &train_param.state {
            merge_state(&mut state, s);
        }
        if let Some(s) = &param.train_state {
            merge_state(&mut state, s);
        }
        let net = Net::new(&train_param, &state, &mut rng)?;

        // Test nets: test_net_param, then test_net files, then the generic net for the rest.
        let mut test_params: Vec<NetParameter> = param.test_net_param.clone();
        for f in &param.test_net {
            test_params.push(crate::spec::load_net(f)?);
        }
        let specific = test_params.len();
        let n_iter = param.test_iter.len();
        match &generic {
            Some(g) => {
                if n_iter < specific {
                    return Err(Error::Invalid(format!(
                        "{specific} test net(s) but only {n_iter} `test_iter` value(s)"
                    )));
                }
                for _ in specific..n_iter {
                    test_params.push(g.clone());
                }
            }
            None if n_iter != specific => {
                return Err(Error::Invalid(format!(
                    "{specific} test net(s) need exactly {specific} `test_iter` value(s), got {n_iter}"
                )));
            }
            None => {}
        }
        if !param.test_state.is_empty() && param.test_state.len() != test_params.len() {
            return Err(Error::Invalid(format!(
                "{} `test_state` entries for {} test net(s)",
                param.test_state.len(),
                test_params.len()
            )));
        }
        if param.test_interval() < 0 {
            return Err(Error::Invalid(
                "test_interval must be >= 0 (0: no testing)".into(),
            ));
        }
        let mut test_nets = Vec::new();
        for (i, tp) in test_params.iter().enumerate() {
            let mut st = NetState::default();
            st.set_phase(Phase::Test);
            if let Some(s) = &tp.state {
                merge_state(&mut st, s);
            }
            if let Some(s) = param.test_state.get(i) {
                merge_state(&mut st, s);
            }
            test_nets.push(Net::new(tp, &st, &mut rng)?);
        }

        let per = kind.history_per_param();
        let mut history = Vec::new();
        for _ in 0..per {
            for p in net.params() {
                history.push(Blob::new(&p.shape));
            }
        }
        if param.snapshot() < 0 {
            return Err(Error::Invalid("snapshot must be >= 0".into()));
        }
        if (param.snapshot() > 0 || param.snapshot_after_train()) && param.snapshot_prefix.is_none()
        {
            return Err(Error::Invalid(
                "the solver writes snapshots but has no `snapshot_prefix` (set it, or set \
                 snapshot: 0 and snapshot_after_train: false)"
                    .into(),
            ));
        }
        Ok(Solver {
            param,
            kind,
            policy,
            net,
            test_nets,
            iter: 0,
            current_step: 0,
            history,
            losses: Vec::new(),
            smoothed_loss: 0.0,
            requested_early_exit: false,
            last_snapshot: None,
            feeder: None,
            observer: None,
            action: None,
        })
    }

    /// Reads a solver file and builds the solver.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Solver> {
        Solver::new(crate::spec::load_solver(path)?)
    }

    /// Sets the function that fills input blobs before every forward pass.
    pub fn set_feeder(&mut self, f: impl FnMut(&mut Net, &FeedCtx) -> Result<()> + 'static) {
        self.feeder = Some(Box::new(f));
    }

    /// Sets the function that receives progress events.
    pub fn set_observer(&mut self, f: impl FnMut(&Event) + 'static) {
        self.observer = Some(Box::new(f));
    }

    /// Sets the function polled once per iteration for external requests (signals).
    pub fn set_action_source(&mut self, f: impl FnMut() -> Action + 'static) {
        self.action = Some(Box::new(f));
    }

    /// The solver parameters.
    pub fn param(&self) -> &SolverParameter {
        &self.param
    }

    /// The update rule.
    pub fn kind(&self) -> SolverType {
        self.kind
    }

    /// The train net.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The train net, mutably.
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }

    /// The test nets.
    pub fn test_nets(&self) -> &[Net] {
        &self.test_nets
    }

    /// Updates applied so far.
    pub fn iter(&self) -> i32 {
        self.iter
    }

    /// The multistep/step position of the learning-rate policy.
    pub fn current_step(&self) -> i32 {
        self.current_step
    }

    /// The history blobs (see CAFFE_REFERENCE §3.4 for the layout).
    pub fn history(&self) -> &[Blob] {
        &self.history
    }

    /// The smoothed training loss (mean of the last `average_loss` iterations).
    pub fn smoothed_loss(&self) -> f32 {
        self.smoothed_loss
    }

    /// True when an external Stop request ended the last `step`/`solve`.
    pub fn stopped_early(&self) -> bool {
        self.requested_early_exit
    }

    /// The last snapshot written (iteration, `.caffemodel` path).
    pub fn last_snapshot(&self) -> Option<&(i32, PathBuf)> {
        self.last_snapshot.as_ref()
    }

    /// The learning rate the policy gives at the current iteration (does not advance state).
    pub fn current_rate(&self) -> f32 {
        let mut step = self.current_step;
        self.policy.rate(self.param.base_lr(), self.iter, &mut step)
    }

    fn emit(&mut self, e: &Event) {
        if let Some(o) = self.observer.as_mut() {
            o(e);
        }
    }

    fn feed(&mut self, phase: Phase, net: usize, pass: usize) -> Result<()> {
        let ctx = FeedCtx {
            phase,
            net,
            iter: self.iter,
            pass,
        };
        if let Some(f) = self.feeder.as_mut() {
            let target = if phase == Phase::Train {
                &mut self.net
            } else {
                &mut self.test_nets[net]
            };
            f(target, &ctx)?;
        }
        Ok(())
    }

    /// Copies weights from `.caffemodel` files into the train and test nets by layer name
    /// (fine-tuning). Returns one report per file (for the train net).
    pub fn copy_weights(&mut self, files: &[impl AsRef<Path>]) -> Result<Vec<CopyReport>> {
        let mut reports = Vec::new();
        for f in files {
            let f = f.as_ref();
            let trained = crate::caffe::caffemodel::read(f)?;
            let label = f.display().to_string();
            reports.push(self.net.copy_trained_layers_from(&trained, &label)?);
            for t in self.test_nets.iter_mut() {
                t.copy_trained_layers_from(&trained, &label)?;
            }
        }
        Ok(reports)
    }

    /// Caffe's `Solve`: optionally restore, run up to `max_iter`, final snapshot, final
    /// loss display and final test.
    pub fn solve(&mut self, resume: Option<&Path>) -> Result<()> {
        if let Some(r) = resume {
            self.restore(r)?;
        }
        let start_iter = self.iter;
        self.step(self.param.max_iter() - self.iter)?;
        let snap = self.param.snapshot();
        if self.param.snapshot_after_train() && (snap == 0 || self.iter % snap != 0) {
            self.snapshot()?;
        }
        if self.requested_early_exit {
            return Ok(());
        }
        let display = self.param.display();
        if display > 0 && self.iter % display == 0 {
            self.feed(Phase::Train, 0, 0)?;
            let loss = self.net.forward()?;
            if !loss.is_finite() {
                return Err(self.diverged_forward(loss));
            }
            self.update_smoothed_loss(loss, start_iter);
            let (iter, l, lr) = (self.iter, self.smoothed_loss, self.current_rate());
            self.emit(&Event::FinalLoss { iter, loss: l, lr });
        }
        let ti = self.param.test_interval();
        if ti > 0 && self.iter % ti == 0 {
            self.test_all()?;
        }
        Ok(())
    }

    fn update_smoothed_loss(&mut self, loss: f32, start_iter: i32) {
        let avg = self.param.average_loss().max(1) as usize;
        if self.losses.len() < avg {
            let n = self.losses.len() as f32;
            self.losses.push(loss);
            self.smoothed_loss = (self.smoothed_loss * n + loss) / (n + 1.0);
        } else {
            let idx = ((self.iter - start_iter) as usize) % avg;
            self.smoothed_loss += (loss - self.losses[idx]) / avg as f32;
            self.losses[idx] = loss;
        }
    }

    /// Runs `iters` iterations (Caffe's `Step`).
    pub fn step(&mut self, iters: i32) -> Result<()> {
        let start_iter = self.iter;
        let stop_iter = self.iter + iters.max(0);
        self.losses.clear();
        self.smoothed_loss = 0.0;
        self.requested_early_exit = false;
        let iter_size = self.param.iter_size().max(1) as usize;
        while self.iter < stop_iter {
            self.net.clear_param_diffs();
            let ti = self.param.test_interval();
            if ti > 0 && self.iter % ti == 0 && (self.iter > 0 || self.param.test_initialization())
            {
                self.test_all()?;
            }
            let display = self.param.display();
            let show = display > 0 && self.iter % display == 0;
            let mut loss = 0.0f32;
            for pass in 0..iter_size {
                self.feed(Phase::Train, 0, pass)?;
                let l = self.net.forward()?;
                if !l.is_finite() {
                    return Err(self.diverged_forward(l));
                }
                self.net.backward()?;
                loss += l;
            }
            loss /= iter_size as f32;
            self.update_smoothed_loss(loss, start_iter);
            let lr = {
                let mut s = self.current_step;
                self.policy.rate(self.param.base_lr(), self.iter, &mut s)
            };
            if show {
                let outputs = self.train_outputs();
                let (iter, sl) = (self.iter, self.smoothed_loss);
                self.emit(&Event::Display {
                    iter,
                    loss: sl,
                    lr,
                    outputs: &outputs,
                });
            }
            let rate = self.apply_update()?;
            let (iter, sl) = (self.iter, self.smoothed_loss);
            self.emit(&Event::Iteration {
                iter,
                loss,
                smoothed_loss: sl,
                lr: rate,
            });
            self.iter += 1;
            let request = self.action.as_mut().map(|a| a()).unwrap_or(Action::None);
            let snap = self.param.snapshot();
            if (snap > 0 && self.iter % snap == 0) || request == Action::Snapshot {
                self.snapshot()?;
            }
            if request == Action::Stop {
                self.requested_early_exit = true;
                break;
            }
        }
        Ok(())
    }

    fn train_outputs(&self) -> Vec<Output> {
        self.net
            .outputs()
            .into_iter()
            .map(|(n, b)| Output {
                name: n.to_string(),
                values: b.data.clone(),
                loss_weight: self.net.blob_loss_weight(n),
            })
            .collect()
    }

    /// Runs every test net (Caffe's `TestAll`).
    pub fn test_all(&mut self) -> Result<Vec<Vec<Output>>> {
        let mut all = Vec::new();
        for i in 0..self.test_nets.len() {
            all.push(self.test(i)?);
        }
        Ok(all)
    }

    /// Runs test net `i` for `test_iter[i]` passes with the train net's current weights and
    /// returns each output blob's mean (Caffe's `Test`).
    pub fn test(&mut self, i: usize) -> Result<Vec<Output>> {
        let iter = self.iter;
        self.emit(&Event::Testing { iter, net: i });
        self.test_nets[i].copy_params_from_net(&self.net)?;
        let passes = self.param.test_iter.get(i).copied().unwrap_or(0).max(0) as usize;
        let feeder = &mut self.feeder;
        let (mut outputs, loss) = score(&mut self.test_nets[i], passes, |n, k| {
            let ctx = FeedCtx {
                phase: Phase::Test,
                net: i,
                iter,
                pass: k,
            };
            match feeder.as_mut() {
                Some(f) => f(n, &ctx),
                None => Ok(()),
            }
        })?;
        if self.param.test_compute_loss() {
            outputs.push(Output {
                name: "loss".into(),
                values: vec![loss],
                loss_weight: 0.0,
            });
        }
        self.emit(&Event::Tested {
            iter,
            net: i,
            outputs: &outputs,
        });
        Ok(outputs)
    }

    /// Clips, normalises, regularises, computes and applies the update; returns the rate.
    fn apply_update(&mut self) -> Result<f32> {
        let rate = self
            .policy
            .rate(self.param.base_lr(), self.iter, &mut self.current_step);
        self.check_gradients()?;
        self.clip_gradients();
        let n = self.net.params().len();
        let iter_size = self.param.iter_size().max(1);
        let wd = self.param.weight_decay();
        let l1 = self.param.regularization_type() == "L1";
        let info: Vec<(f32, f32)> = self
            .net
            .param_info()
            .iter()
            .map(|p| (p.lr_mult, p.decay_mult))
            .collect();
        let base = UpdateCtx {
            lr: rate,
            momentum: self.param.momentum(),
            momentum2: self.param.momentum2(),
            delta: self.param.delta(),
            rms_decay: self.param.rms_decay(),
            t: self.iter + 1,
        };
        let (first, second) = self.history.split_at_mut(n);
        for (i, p) in self.net.params_mut().iter_mut().enumerate() {
            let (lr_mult, decay_mult) = info.get(i).copied().unwrap_or((1.0, 1.0));
            // Normalize.
            if iter_size != 1 {
                let s = 1.0 / iter_size as f32;
                p.diff.iter_mut().for_each(|d| *d *= s);
            }
            // Regularize.
            let decay = wd * decay_mult;
            if decay != 0.0 {
                if l1 {
                    for (d, &w) in p.diff.iter_mut().zip(&p.data) {
                        let sign = if w > 0.0 {
                            1.0
                        } else if w < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        *d += decay * sign;
                    }
                } else {
                    for (d, &w) in p.diff.iter_mut().zip(&p.data) {
                        *d += decay * w;
                    }
                }
            }
            // Compute the update value.
            let c = UpdateCtx {
                lr: rate * lr_mult,
                ..base
            };
            let g = &mut p.diff;
            match self.kind {
                SolverType::Sgd => sgd::compute_update(&c, g, &mut first[i].data),
                SolverType::Nesterov => nesterov::compute_update(&c, g, &mut first[i].data),
                SolverType::AdaGrad => adagrad::compute_update(&c, g, &mut first[i].data),
                SolverType::RmsProp => rmsprop::compute_update(&c, g, &mut first[i].data),
                SolverType::AdaDelta => {
                    adadelta::compute_update(&c, g, &mut first[i].data, &mut second[i].data)
                }
                SolverType::Adam => {
                    adam::compute_update(&c, g, &mut first[i].data, &mut second[i].data)
                }
            }
        }
        // Refuse to write non-finite weights: the last good values stay.
        for (i, p) in self.net.params().iter().enumerate() {
            if p.data
                .iter()
                .zip(&p.diff)
                .any(|(&w, &d)| !(w - d).is_finite())
            {
                let owner = self
                    .net
                    .param_info()
                    .get(i)
                    .map(|pi| format!("param {} of layer `{}`", pi.index, pi.layer))
                    .unwrap_or_else(|| format!("param blob {i}"));
                return Err(Error::NotFinite(format!(
                    "training diverged at iteration {}: the update of {owner} is NaN or Inf \
                     (lr = {rate:e}); lower base_lr or set clip_gradients. {}",
                    self.iter,
                    self.kept_snapshot_text()
                )));
            }
        }
        for p in self.net.params_mut() {
            for (w, &d) in p.data.iter_mut().zip(&p.diff) {
                *w -= d;
            }
        }
        Ok(rate)
    }

    fn clip_gradients(&mut self) {
        let clip = self.param.clip_gradients();
        if clip < 0.0 {
            return;
        }
        let sumsq: f64 = self
            .net
            .params()
            .iter()
            .flat_map(|p| p.diff.iter())
            .map(|&d| d as f64 * d as f64)
            .sum();
        let norm = sumsq.sqrt() as f32;
        if norm > clip {
            let s = clip / norm;
            for p in self.net.params_mut() {
                p.diff.iter_mut().for_each(|d| *d *= s);
            }
        }
    }

    fn kept_snapshot_text(&self) -> String {
        match &self.last_snapshot {
            Some((i, p)) => format!(
                "The last good snapshot (iteration {i}) is kept: {}",
                p.display()
            ),
            None => "No snapshot was written (none was due yet).".into(),
        }
    }

    /// Where the first NaN/Inf is: the first layer (forward order) holding a bad parameter or
    /// producing a bad top; failing that, the first layer in backward order producing a bad
    /// parameter or bottom gradient.
    fn locate_non_finite(&self) -> Option<String> {
        let bad = |v: &[f32]| v.iter().any(|x| !x.is_finite());
        let net = &self.net;
        for (li, l) in net.layers().iter().enumerate() {
            for (k, p) in net.layer_params(li).into_iter().enumerate() {
                if bad(&p.data) {
                    return Some(format!(
                        "param {k} of layer `{}` ({}) holds NaN/Inf",
                        l.name, l.ty
                    ));
                }
            }
            for &t in &l.top {
                if bad(&net.blob_at(t).data) {
                    return Some(format!(
                        "layer `{}` ({}) produced NaN/Inf in its top `{}`",
                        l.name,
                        l.ty,
                        net.blob_name(t)
                    ));
                }
            }
        }
        for (li, l) in net.layers().iter().enumerate().rev() {
            if !l.need_backward {
                continue;
            }
            for (k, p) in net.layer_params(li).into_iter().enumerate() {
                if bad(&p.diff) {
                    return Some(format!(
                        "layer `{}` ({}) produced a NaN/Inf gradient for its param {k}",
                        l.name, l.ty
                    ));
                }
            }
            for (k, &b) in l.bottom.iter().enumerate() {
                if l.bottom_need_backward.get(k).copied().unwrap_or(false)
                    && bad(&net.blob_at(b).diff)
                {
                    return Some(format!(
                        "layer `{}` ({}) produced a NaN/Inf gradient for its bottom `{}`",
                        l.name,
                        l.ty,
                        net.blob_name(b)
                    ));
                }
            }
        }
        None
    }

    fn diverged(&self, what: &str, default_place: &str) -> Error {
        let place = self
            .locate_non_finite()
            .unwrap_or_else(|| default_place.to_string());
        Error::NotFinite(format!(
            "training diverged at iteration {}: {what}; {place}. Lower base_lr (now {:e}), set \
             clip_gradients, or check the data. {}",
            self.iter,
            self.param.base_lr(),
            self.kept_snapshot_text()
        ))
    }

    /// The error for a non-finite loss after a forward pass.
    fn diverged_forward(&self, loss: f32) -> Error {
        self.diverged(
            &format!("loss = {loss}"),
            "no layer output is NaN/Inf (the loss sum overflowed)",
        )
    }

    /// Checks the accumulated parameter gradients.
    fn check_gradients(&self) -> Result<()> {
        if self
            .net
            .params()
            .iter()
            .any(|p| p.diff.iter().any(|x| !x.is_finite()))
        {
            return Err(self.diverged(
                "a parameter gradient is NaN/Inf",
                "a parameter gradient is NaN/Inf",
            ));
        }
        Ok(())
    }

    /// `<snapshot_prefix>_iter_<iter>` plus `ext`.
    pub fn snapshot_path(&self, ext: &str) -> PathBuf {
        PathBuf::from(format!(
            "{}_iter_{}{ext}",
            self.param.snapshot_prefix(),
            self.iter
        ))
    }

    /// Writes `<prefix>_iter_<N>.caffemodel` and `.solverstate`, each atomically (temporary
    /// file, fsync, rename). Returns both paths.
    pub fn snapshot(&mut self) -> Result<(PathBuf, PathBuf)> {
        if self.param.snapshot_prefix.is_none() {
            return Err(Error::Invalid(
                "cannot snapshot: the solver has no `snapshot_prefix`".into(),
            ));
        }
        let model = self.snapshot_path(".caffemodel");
        let state_path = self.snapshot_path(".solverstate");
        crate::caffe::caffemodel::write(&model, &self.net.to_proto(self.param.snapshot_diff()))?;
        let state = SolverState {
            iter: Some(self.iter),
            learned_net: Some(model.display().to_string()),
            history: self
                .history
                .iter()
                .map(|h| blob_to_proto(h, false))
                .collect(),
            current_step: Some(self.current_step),
        };
        crate::caffe::write_atomic(&state_path, &state.encode_to_vec())?;
        self.last_snapshot = Some((self.iter, model.clone()));
        let iter = self.iter;
        self.emit(&Event::Snapshot {
            iter,
            model: &model,
            state: &state_path,
        });
        Ok((model, state_path))
    }

    /// Restores iteration, learning-rate step, history and weights from a `.solverstate`
    /// (Caffe's `Restore`). The `learned_net` path is tried as written, then beside the state.
    pub fn restore(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let state = SolverState::decode(bytes.as_slice()).map_err(|e| {
            Error::format(path, format!("not a valid solverstate (SolverState): {e}"))
        })?;
        if state.history.len() != self.history.len() {
            return Err(Error::format(
                path,
                format!(
                    "holds {} history blobs but this {} solver on this net needs {}; was it \
                     written by another solver type or net?",
                    state.history.len(),
                    self.kind.name(),
                    self.history.len()
                ),
            ));
        }
        let mut history = self.history.clone();
        let label = path.display().to_string();
        for (i, (h, p)) in history.iter_mut().zip(&state.history).enumerate() {
            copy_blob_proto(p, h, &label, "(solver history)", i)?;
        }
        if let Some(ln) = state.learned_net.as_deref().filter(|s| !s.is_empty()) {
            let mut model = PathBuf::from(ln);
            if !model.exists() {
                if let (Some(dir), Some(name)) = (path.parent(), model.file_name()) {
                    let beside = dir.join(name);
                    if beside.exists() {
                        model = beside;
                    }
                }
            }
            let trained = crate::caffe::caffemodel::read(&model)?;
            self.net
                .copy_trained_layers_from(&trained, &model.display().to_string())?;
        }
        self.history = history;
        self.iter = state.iter();
        self.current_step = state.current_step();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solver_type_names() {
        for (n, t) in SolverType::ALL {
            assert_eq!(SolverType::parse(n).unwrap(), t);
            assert_eq!(t.name(), n);
        }
        let e = SolverType::parse("Adamm").unwrap_err().to_string();
        assert!(e.contains("did you mean `Adam`"), "{e}");
    }

    #[test]
    fn merge_state_overrides_and_appends() {
        let mut a = NetState {
            phase: Some(Phase::Train as i32),
            level: None,
            stage: vec!["x".into()],
        };
        let b = NetState {
            phase: None,
            level: Some(2),
            stage: vec!["y".into()],
        };
        merge_state(&mut a, &b);
        assert_eq!(a.phase(), Phase::Train);
        assert_eq!(a.level(), 2);
        assert_eq!(a.stage, vec!["x".to_string(), "y".to_string()]);
    }

    #[test]
    fn rejects_momentum_with_adagrad() {
        let p: SolverParameter = crate::spec::from_yaml_str(
            "type: AdaGrad\nmomentum: 0.9\nsnapshot_after_train: false\nnet_param: { name: x }",
            "t",
        )
        .unwrap();
        let e = Solver::new(p).err().unwrap().to_string();
        assert!(e.contains("momentum cannot be used with AdaGrad"), "{e}");
    }
}
