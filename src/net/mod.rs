//! The blob-based forward/backward executor. The `Net` owns every blob and every learnable
//! parameter and lends them to one layer call at a time.

mod analysis;
mod builder;
mod filter;
mod gradcheck;
mod params;
mod reuse;
mod weights;
mod wiring;

pub use filter::{filter_net, state_meets_rule};
pub use weights::CopyReport;

use crate::layers::Layer;
use crate::proto::{LayerParameter, NetParameter, NetState, Phase};
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;
use std::time::Instant;

/// One layer of a built net, with its wiring.
pub struct LayerEntry {
    /// Layer name (the weight-matching key).
    pub name: String,
    /// Caffe type string.
    pub ty: String,
    /// The layer itself.
    pub layer: Box<dyn Layer>,
    /// Indices of bottom blobs.
    pub bottom: Vec<usize>,
    /// Indices of top blobs.
    pub top: Vec<usize>,
    /// True when top 0 is bottom 0.
    pub inplace: bool,
    /// Indices into the net's parameter store, one per learnable blob of the layer.
    pub params: Vec<usize>,
    /// Loss weight of each top.
    pub loss_weight: Vec<f32>,
    /// Whether backward runs for this layer.
    pub need_backward: bool,
    /// Whether backward computes each bottom's gradient.
    pub bottom_need_backward: Vec<bool>,
    /// The parameters the layer was built from (phase filled in).
    pub param: LayerParameter,
    /// Accumulated forward seconds (for `crema time`).
    pub forward_time: f64,
    /// Accumulated backward seconds.
    pub backward_time: f64,
}

/// Solver-facing facts about one learnable blob (only owners are listed; shared blobs once).
#[derive(Debug, Clone)]
pub struct ParamInfo {
    /// Owning layer.
    pub layer: String,
    /// Index of the blob within the owning layer.
    pub index: usize,
    /// Sharing name (`ParamSpec.name`), empty if unshared.
    pub name: String,
    /// Learning-rate multiplier.
    pub lr_mult: f32,
    /// Weight-decay multiplier.
    pub decay_mult: f32,
    pub(crate) lr_set: bool,
    pub(crate) decay_set: bool,
}

/// Bytes a net's buffers hold (allocated lengths; the layers' own scratch is not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Values of the activation blobs.
    pub blob_data: usize,
    /// Gradients of the activation blobs (0 until backward can run).
    pub blob_diff: usize,
    /// Values of the learnable blobs.
    pub param_data: usize,
    /// Gradients of the learnable blobs (0 until backward can run).
    pub param_diff: usize,
}

impl MemoryUse {
    /// All four together.
    pub fn total(&self) -> usize {
        self.blob_data + self.blob_diff + self.param_data + self.param_diff
    }
}

/// A built network.
pub struct Net {
    /// Net name from the model file.
    pub name: String,
    /// Phase it was built for.
    pub phase: Phase,
    pub(crate) blobs: Vec<Blob>,
    pub(crate) blob_names: Vec<String>,
    pub(crate) layers: Vec<LayerEntry>,
    pub(crate) params: Vec<Blob>,
    pub(crate) param_info: Vec<ParamInfo>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
    pub(crate) blob_loss_weight: Vec<f32>,
    /// Gradient buffers passed from blob to blob in backward (`reuse_dead_diffs`), if asked.
    pub(crate) diff_plan: Option<reuse::DiffPlan>,
}

/// Borrows `shared` blobs immutably and `exclusive` blobs mutably from one slice at once.
/// Indices in `exclusive` must be distinct and absent from `shared`.
pub(crate) fn gather<'a>(
    blobs: &'a mut [Blob],
    shared: &[usize],
    exclusive: &[usize],
) -> (Vec<&'a Blob>, Vec<&'a mut Blob>) {
    let mut slots: Vec<Option<&'a mut Blob>> = blobs.iter_mut().map(Some).collect();
    let mut excl = Vec::with_capacity(exclusive.len());
    for &i in exclusive {
        excl.push(
            slots[i]
                .take()
                .expect("exclusive blob indices are distinct"),
        );
    }
    let refs: Vec<Option<&'a Blob>> = slots.into_iter().map(|s| s.map(|b| &*b)).collect();
    let sh = shared
        .iter()
        .map(|&i| refs[i].expect("shared blobs are not also borrowed mutably"))
        .collect();
    (sh, excl)
}

fn gather_params<'a>(params: &'a mut [Blob], ids: &[usize]) -> Vec<&'a mut Blob> {
    gather(params, &[], ids).1
}

impl Net {
    /// A net with no layers (the builder's starting point).
    fn empty(name: &str, phase: Phase) -> Net {
        Net {
            name: name.to_string(),
            phase,
            blobs: Vec::new(),
            blob_names: Vec::new(),
            layers: Vec::new(),
            params: Vec::new(),
            param_info: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            blob_loss_weight: Vec::new(),
            diff_plan: None,
        }
    }

    /// Builds a net for `state` from a model (see `builder` for Caffe's rules).
    pub fn new(param: &NetParameter, state: &NetState, rng: &mut StdRng) -> Result<Net> {
        builder::build(param, state, rng)
    }

    /// Builds a net for a phase with level 0 and no stages.
    pub fn for_phase(param: &NetParameter, phase: Phase, rng: &mut StdRng) -> Result<Net> {
        let mut state = param.state.clone().unwrap_or_default();
        state.set_phase(phase);
        builder::build(param, &state, rng)
    }

    /// Makes every layer run backward, as `force_backward: true` in the model would have
    /// (Caffe's need-backward analysis again, forced).
    pub fn force_backward(&mut self) {
        analysis::analyse_backward(self, true);
    }

    /// Runs every layer forward and returns the weighted loss.
    pub fn forward(&mut self) -> Result<f32> {
        self.forward_range(0, self.layers.len())
    }

    /// Runs layers `start..end` forward; returns the loss they contribute.
    pub fn forward_range(&mut self, start: usize, end: usize) -> Result<f32> {
        let mut loss = 0.0f64;
        for li in start..end {
            loss += self.forward_layer(li)?;
        }
        Ok(loss as f32)
    }

    /// Runs layer `li` forward; returns the weighted loss of its tops.
    fn forward_layer(&mut self, li: usize) -> Result<f64> {
        let t0 = Instant::now();
        let l = &mut self.layers[li];
        let bottoms: &[usize] = if l.inplace { &[] } else { &l.bottom };
        let (b, mut t) = gather(&mut self.blobs, bottoms, &l.top);
        let mut p = gather_params(&mut self.params, &l.params);
        l.layer
            .reshape(&b, &mut t)
            .and_then(|_| l.layer.forward(&b, &mut t, &mut p))
            .map_err(|e| e.in_layer(&l.name, &l.ty))?;
        let mut loss = 0.0f64;
        for (tb, w) in t.iter().zip(&l.loss_weight) {
            if *w != 0.0 {
                loss += *w as f64 * tb.data.iter().map(|&v| v as f64).sum::<f64>();
            }
        }
        l.forward_time += t0.elapsed().as_secs_f64();
        Ok(loss)
    }

    /// Zeroes activation diffs, seeds the loss tops with their weights and runs backward.
    pub fn backward(&mut self) -> Result<()> {
        self.seed_loss_diffs();
        self.backward_range(0, self.layers.len())
    }

    /// Zeroes activation diffs and sets each loss top's diff to its loss weight (what
    /// [`Net::backward`] starts from; callers may then set other tops' diffs themselves).
    pub fn seed_loss_diffs(&mut self) {
        self.ensure_diffs();
        for b in self.blobs.iter_mut() {
            if b.has_diff() {
                b.zero_diff();
            }
        }
        for (b, &w) in self.blobs.iter_mut().zip(&self.blob_loss_weight) {
            if w != 0.0 {
                b.diff.iter_mut().for_each(|d| *d = w);
            }
        }
    }

    /// Runs the backward of layers `start..end`, last to first, from the diffs already in the
    /// blobs.
    pub fn backward_range(&mut self, start: usize, end: usize) -> Result<()> {
        self.ensure_diffs();
        for li in (start..end.min(self.layers.len())).rev() {
            self.backward_layer(li)?;
        }
        Ok(())
    }

    /// Sizes every top for the current input shapes without computing anything (pycaffe's
    /// `net.reshape()` after an input blob is reshaped).
    pub fn reshape(&mut self) -> Result<()> {
        for l in self.layers.iter_mut() {
            let bottoms: &[usize] = if l.inplace { &[] } else { &l.bottom };
            let (b, mut t) = gather(&mut self.blobs, bottoms, &l.top);
            l.layer
                .reshape(&b, &mut t)
                .map_err(|e| e.in_layer(&l.name, &l.ty))?;
        }
        Ok(())
    }

    fn backward_layer(&mut self, li: usize) -> Result<()> {
        self.lend_diffs(li);
        self.backward_layer_body(li)?;
        self.reclaim_diffs(li);
        Ok(())
    }

    fn backward_layer_body(&mut self, li: usize) -> Result<()> {
        let l = &mut self.layers[li];
        // In place, the shared diff holds the gradient of this layer's output. When the layer
        // does not turn it into the input's gradient, the input gets none through this layer
        // and must not inherit that value.
        let clear = l.inplace && !(l.need_backward && l.bottom_need_backward[0]);
        if l.need_backward {
            let t0 = Instant::now();
            let tops: &[usize] = if l.inplace { &[] } else { &l.top };
            let (t, mut b) = gather(&mut self.blobs, tops, &l.bottom);
            let mut p = gather_params(&mut self.params, &l.params);
            l.layer
                .backward(&t, &l.bottom_need_backward, &mut b, &mut p)
                .map_err(|e| e.in_layer(&l.name, &l.ty))?;
            l.backward_time += t0.elapsed().as_secs_f64();
        }
        if clear {
            let id = l.bottom[0];
            self.blobs[id].zero_diff();
        }
        Ok(())
    }

    /// Forward then backward; returns the loss.
    pub fn forward_backward(&mut self) -> Result<f32> {
        let loss = self.forward()?;
        self.backward()?;
        Ok(loss)
    }

    /// Index of the blob currently called `name` (the latest producer's).
    pub fn blob_index(&self, name: &str) -> Option<usize> {
        self.blob_names.iter().rposition(|n| n == name)
    }

    /// The blob called `name`.
    pub fn blob(&self, name: &str) -> Option<&Blob> {
        self.blob_index(name).map(|i| &self.blobs[i])
    }

    /// Index of the net input called `name` (a top of an Input layer). It differs from
    /// [`Net::blob_index`] only where a layer in place writes a new version of an input that
    /// an earlier layer reads.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs
            .iter()
            .copied()
            .find(|&i| self.blob_names[i] == name)
    }

    /// The blob called `name`, mutably, to feed it: the net input of that name, else the blob
    /// currently called so.
    pub fn blob_mut(&mut self, name: &str) -> Option<&mut Blob> {
        let i = self.input_index(name).or_else(|| self.blob_index(name))?;
        Some(&mut self.blobs[i])
    }

    /// Every blob with its name, in creation order.
    pub fn blobs(&self) -> impl Iterator<Item = (&str, &Blob)> {
        self.blob_names
            .iter()
            .map(|s| s.as_str())
            .zip(self.blobs.iter())
    }

    /// Names of the net inputs (tops of Input layers).
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|&i| self.blob_names[i].as_str())
            .collect()
    }

    /// Names of the net outputs (blobs nobody consumes), sorted by name.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .map(|&i| self.blob_names[i].as_str())
            .collect()
    }

    /// The output blobs with their names.
    pub fn outputs(&self) -> Vec<(&str, &Blob)> {
        self.outputs
            .iter()
            .map(|&i| (self.blob_names[i].as_str(), &self.blobs[i]))
            .collect()
    }

    /// Loss weight attached to a blob (0 if it is not a loss).
    pub fn blob_loss_weight(&self, name: &str) -> f32 {
        self.blob_index(name)
            .map(|i| self.blob_loss_weight[i])
            .unwrap_or(0.0)
    }

    /// The layers in execution order.
    pub fn layers(&self) -> &[LayerEntry] {
        &self.layers
    }

    /// The layers, mutably (timing counters, tools).
    pub fn layers_mut(&mut self) -> &mut [LayerEntry] {
        &mut self.layers
    }

    /// Name of blob `i`.
    pub fn blob_name(&self, i: usize) -> &str {
        &self.blob_names[i]
    }

    /// Blob `i`.
    pub fn blob_at(&self, i: usize) -> &Blob {
        &self.blobs[i]
    }

    /// Blob `i`, mutably.
    pub fn blob_at_mut(&mut self, i: usize) -> &mut Blob {
        &mut self.blobs[i]
    }

    /// The learnable blobs (owners only; shared blobs appear once).
    pub fn params(&self) -> &[Blob] {
        &self.params
    }

    /// The learnable blobs, mutably (the solver updates them).
    pub fn params_mut(&mut self) -> &mut [Blob] {
        &mut self.params
    }

    /// Facts the solver needs about each learnable blob.
    pub fn param_info(&self) -> &[ParamInfo] {
        &self.param_info
    }

    /// Total number of learnable values.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.count()).sum()
    }

    /// Allocates every gradient buffer the net deferred (each blob's and each learnable
    /// blob's diff, zeros; not those [`Net::reuse_dead_diffs`] lends out). A net holds no gradient memory until this runs: the first
    /// backward, [`Net::clear_param_diffs`] or a caller that wants to write diffs itself.
    pub fn ensure_diffs(&mut self) {
        for i in 0..self.blobs.len() {
            if !self.diff_is_lent(i) {
                self.blobs[i].ensure_diff();
            }
        }
        for p in self.params.iter_mut() {
            p.ensure_diff();
        }
    }

    /// What the net's blobs and learnable blobs hold, in bytes (see [`MemoryUse`]); the free
    /// buffers of [`Net::reuse_dead_diffs`] count as activation gradients.
    pub fn memory_use(&self) -> MemoryUse {
        let sum = |bs: &[Blob]| {
            bs.iter().fold((0, 0), |(d, g), b| {
                let (bd, bg) = b.bytes();
                (d + bd, g + bg)
            })
        };
        let (blob_data, mut blob_diff) = sum(&self.blobs);
        blob_diff += self.diff_plan.as_ref().map_or(0, |p| p.slot_bytes());
        let (param_data, param_diff) = sum(&self.params);
        MemoryUse {
            blob_data,
            blob_diff,
            param_data,
            param_diff,
        }
    }

    /// Zeroes every parameter diff (the solver does this before each iteration).
    pub fn clear_param_diffs(&mut self) {
        for p in self.params.iter_mut() {
            p.zero_diff();
        }
    }

    /// Copies parameter values from another net layer by layer name (test nets take the train
    /// net's weights this way). Layers missing from `other` keep their values.
    pub fn copy_params_from_net(&mut self, other: &Net) -> Result<()> {
        for l in &self.layers {
            if l.params.is_empty() {
                continue;
            }
            let Some(src) = other.layers.iter().find(|o| o.name == l.name) else {
                continue;
            };
            if src.params.len() != l.params.len() {
                return Err(Error::Net(format!(
                    "layer `{}` has {} learnable blobs here and {} in the other net",
                    l.name,
                    l.params.len(),
                    src.params.len()
                )));
            }
            for (&d, &s) in l.params.iter().zip(&src.params) {
                let (dst, srcb) = (&mut self.params[d], &other.params[s]);
                if dst.count() != srcb.count() {
                    return Err(Error::Net(format!(
                        "layer `{}`: cannot share weights, shapes {} vs {}",
                        l.name,
                        dst.shape_string(),
                        srcb.shape_string()
                    )));
                }
                dst.data.copy_from_slice(&srcb.data);
            }
        }
        Ok(())
    }

    /// The learnable blobs of layer `li`, in the layer's order.
    pub fn layer_params(&self, li: usize) -> Vec<&Blob> {
        self.layers[li]
            .params
            .iter()
            .map(|&p| &self.params[p])
            .collect()
    }

    /// Resets the per-layer timing counters.
    pub fn reset_timers(&mut self) {
        for l in self.layers.iter_mut() {
            l.forward_time = 0.0;
            l.backward_time = 0.0;
        }
    }
}
