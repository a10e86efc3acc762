//! What the solver reports while it runs ([`Event`]), what an outside request asks of it
//! ([`Action`]), and the types of its three hooks. Printing events is the caller's business
//! (the `crema` tool writes log lines and JSON lines).

use crate::proto::Phase;
use crate::{Net, Result};
use std::path::Path;

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
    /// `debug_info: true` at a display iteration: Caffe's per-layer `[Forward]`/`[Backward]`
    /// lines (mean absolute data and diff of each blob) and the parameters' norms.
    DebugInfo { iter: i32, lines: &'a [String] },
    /// The snapshot prefix's directory did not exist and was created for the first snapshot.
    CreatedDir { path: &'a Path },
}

/// What an external request (signal) asks the solver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Snapshot,
    Stop,
}
