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
//!
//! Files: `config` (the update rule's name, validation, building the nets), `event` (what the
//! solver reports and the hooks' types), `update` (clipping, decay, the rule, `data -= diff`),
//! `nan` (finding the layer that produced a NaN/Inf), `snapshot` (snapshot and restore),
//! `test` (test nets and [`score`]), `lr_policy`, and one file per update rule.

pub mod lr_policy;

mod config;
mod debug_info;
mod event;
mod nan;
mod snapshot;
mod sync;
mod test;
mod update;

mod adadelta;
mod adagrad;
mod adam;
mod nesterov;
mod rmsprop;
mod sgd;

pub use config::SolverType;
pub use event::{Action, ActionSource, Event, FeedCtx, Feeder, Observer, Output};
pub use lr_policy::LrPolicy;
pub use snapshot::ensure_parent_dir;
pub use sync::GradientSync;
pub use test::score;

use crate::net::CopyReport;
use crate::proto::{Phase, SolverParameter};
use crate::{Blob, Net, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use update::UpdateCtx;

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
    sync: Option<Box<dyn GradientSync>>,
}

impl Solver {
    /// Builds the train net and the test nets a solver describes (paths already resolved, as
    /// [`crate::model::load_solver`] does).
    pub fn new(param: SolverParameter) -> Result<Solver> {
        let kind = SolverType::parse(param.r#type())?;
        config::check_solver(&param, kind)?;
        let policy = LrPolicy::from_solver(&param)?;
        let mut rng = if param.random_seed() >= 0 {
            StdRng::seed_from_u64(param.random_seed() as u64)
        } else {
            StdRng::from_entropy()
        };
        let (net, test_nets) = config::build_nets(&param, &mut rng)?;
        let mut history = Vec::new();
        for _ in 0..kind.history_per_param() {
            for p in net.params() {
                history.push(Blob::new(&p.shape));
            }
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
            sync: None,
        })
    }

    /// Reads a solver file (YAML or Caffe prototxt) and builds the solver.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Solver> {
        Solver::new(crate::model::load_solver(path)?)
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

    /// Sets the data-parallel gradient averaging run after each iteration's backward passes.
    pub fn set_gradient_sync(&mut self, s: impl GradientSync + 'static) {
        self.sync = Some(Box::new(s));
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

    /// The test nets, mutably (to feed or inspect them from outside).
    pub fn test_nets_mut(&mut self) -> &mut [Net] {
        &mut self.test_nets
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
            if show && self.param.debug_info() {
                let lines = debug_info::lines(&self.net);
                let iter = self.iter;
                self.emit(&Event::DebugInfo {
                    iter,
                    lines: &lines,
                });
            }
            if let Some(s) = self.sync.as_mut() {
                s.sync(&mut self.net, &mut loss)?;
            }
            self.update_smoothed_loss(loss, start_iter);
            let lr = self.current_rate();
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
}
