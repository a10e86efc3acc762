//! Numeric gradient checks of a built net: each layer at the inputs it sees
//! ([`Net::check_gradients`]) and the whole net at once ([`Net::check_net_gradients`]), which
//! also catches wiring mistakes (a layer reading the wrong version of a blob, a gradient that is
//! not summed over readers, a shared parameter updated from one reader only).

use super::Net;
use crate::testing::{GradientChecker, GradientReport};
use crate::{Blob, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::{BTreeSet, HashSet};

/// A value the whole-net check perturbs: a top of a layer without bottoms, or a learnable blob.
#[derive(Clone, Copy)]
enum Slot {
    Blob(usize),
    Param(usize),
}

impl Net {
    /// Runs the numeric gradient check on every layer at the inputs it sees in one forward pass.
    /// Returns `(layer name, report)` for each layer that has something to check.
    pub fn check_gradients(
        &mut self,
        checker: &GradientChecker,
    ) -> Result<Vec<(String, GradientReport)>> {
        let mut out = Vec::new();
        for li in 0..self.layers.len() {
            let l = &self.layers[li];
            let (name, ty) = (l.name.clone(), l.ty.clone());
            // Copies with their gradient buffers (the net's may still be deferred).
            let with_diff = |b: &Blob| {
                let mut c = b.clone();
                c.ensure_diff();
                c
            };
            let mut bottoms: Vec<Blob> = l
                .bottom
                .iter()
                .map(|&b| with_diff(&self.blobs[b]))
                .collect();
            let mut params: Vec<Blob> = l
                .params
                .iter()
                .map(|&p| with_diff(&self.params[p]))
                .collect();
            let shapes: Vec<Vec<usize>> = bottoms.iter().map(|b| b.shape.clone()).collect();
            let top_count = l.top.len();
            let l = &mut self.layers[li];
            let down: Vec<bool> = (0..bottoms.len())
                .map(|i| {
                    l.layer.index_bound(i, &shapes).is_none() && l.layer.allow_force_backward(i)
                })
                .collect();
            if !bottoms.is_empty() && (down.iter().any(|&d| d) || !params.is_empty()) {
                let report = checker
                    .check(&mut *l.layer, &mut bottoms, &mut params, top_count, &down)
                    .map_err(|e| e.in_layer(&name, &ty))?;
                out.push((name, report));
            }
            // Restore the layer's own state for the real forward pass.
            self.forward_range(li, li + 1)?;
        }
        Ok(out)
    }

    /// Finite-difference check of the whole net against one backward pass of it.
    ///
    /// The objective is the total weighted loss or, for a net without a loss, a fixed random
    /// projection of its outputs (leaving out outputs of layers that differentiate none of
    /// their bottoms, such as Accuracy and ArgMax). Perturbed are the tops of the layers without
    /// bottoms (inputs and data layers, which are run once and then hold their data) and every
    /// learnable blob except frozen statistics; the analytic gradient is the net's own backward
    /// with `force_backward`. Left out are values whose gradient the model declines on purpose:
    /// everything upstream of a bottom whose gradient is not propagated (`propagate_down:
    /// false`, labels, indices) in a layer that feeds the objective.
    ///
    /// Layers are reseeded before every forward pass (Dropout keeps its mask) and parameters
    /// restored (BatchNorm keeps its statistics); on return, parameters, their diffs and the
    /// backward flags are as before, blobs hold the forward pass at the checked point and
    /// their diffs the gradient of the objective.
    pub fn check_net_gradients(&mut self, checker: &GradientChecker) -> Result<GradientReport> {
        self.forward()?;
        let saved_params = self.params.clone();
        let flags: Vec<(bool, Vec<bool>)> = self
            .layers
            .iter()
            .map(|l| (l.need_backward, l.bottom_need_backward.clone()))
            .collect();
        // The check reads every gradient it perturbs: no buffers are passed around meanwhile.
        let plan = self.diff_plan.take();
        let result = self.check_net_at_current_point(checker);
        self.diff_plan = plan;
        for (p, s) in self.params.iter_mut().zip(saved_params) {
            *p = s;
        }
        for (l, (need, bottom_need)) in self.layers.iter_mut().zip(flags) {
            l.need_backward = need;
            l.bottom_need_backward = bottom_need;
        }
        result
    }

    fn check_net_at_current_point(&mut self, checker: &GradientChecker) -> Result<GradientReport> {
        let mut rng = StdRng::seed_from_u64(checker.seed);
        let running: Vec<usize> = (0..self.layers.len())
            .filter(|&li| !self.layers[li].bottom.is_empty())
            .collect();
        let seeds = self.objective_seeds(&mut rng);
        let mut point = self.current_point(&running);
        let base = self.objective_at(&point, &running, &seeds, checker.seed)?;
        // Analytic gradients: one backward pass from the objective's seeds.
        super::analysis::analyse_backward(self, true);
        self.clear_param_diffs();
        for b in self.blobs.iter_mut() {
            b.zero_diff();
        }
        for (id, w) in &seeds {
            self.blobs[*id].diff.copy_from_slice(w);
        }
        self.backward_range(0, self.layers.len())?;
        let mut report = GradientReport::default();
        for k in self.checked_slots(&point, &seeds) {
            let (slot, count) = (point[k].0, point[k].1.len());
            let (what, analytic) = match slot {
                Slot::Blob(id) => (
                    format!("input `{}`", self.blob_names[id]),
                    &self.blobs[id].diff,
                ),
                Slot::Param(p) => {
                    let info = &self.param_info[p];
                    (
                        format!("param `{}` {}", info.layer, info.index),
                        &self.params[p].diff,
                    )
                }
            };
            let analytic = analytic.clone();
            for i in checker.pick(count, &mut rng) {
                let x = point[k].1[i];
                let what = format!("{what}[{i}]");
                checker.judge(&mut report, &what, analytic[i], |step| {
                    point[k].1[i] = x + step;
                    let plus = self.objective_at(&point, &running, &seeds, checker.seed)?;
                    point[k].1[i] = x - step;
                    let minus = self.objective_at(&point, &running, &seeds, checker.seed)?;
                    point[k].1[i] = x;
                    Ok((plus - base, base - minus))
                })?;
            }
        }
        self.objective_at(&point, &running, &seeds, checker.seed)?;
        Ok(report)
    }

    /// The blobs whose diffs seed the objective's backward, with the seed values: the loss
    /// weights, or random weights on the differentiable outputs of a net without a loss.
    fn objective_seeds(&self, rng: &mut StdRng) -> Vec<(usize, Vec<f32>)> {
        let weighted: Vec<(usize, Vec<f32>)> = (0..self.blobs.len())
            .filter(|&id| self.blob_loss_weight[id] != 0.0)
            .map(|id| (id, vec![self.blob_loss_weight[id]; self.blobs[id].count()]))
            .collect();
        if !weighted.is_empty() {
            return weighted;
        }
        let differentiable = |id: usize| {
            let Some(l) = self.layers.iter().rev().find(|l| l.top.contains(&id)) else {
                return true;
            };
            l.bottom.is_empty() || (0..l.bottom.len()).any(|i| l.layer.allow_force_backward(i))
        };
        self.outputs
            .iter()
            .filter(|&&id| differentiable(id))
            .map(|&id| {
                let w = (0..self.blobs[id].count())
                    .map(|_| StandardNormal.sample(&mut *rng))
                    .collect();
                (id, w)
            })
            .collect()
    }

    /// The values the check sets before each forward pass: every top of a layer without
    /// bottoms, then every learnable blob.
    fn current_point(&self, running: &[usize]) -> Vec<(Slot, Vec<f32>)> {
        let produced_by_running: HashSet<usize> = running
            .iter()
            .flat_map(|&li| self.layers[li].top.iter().copied())
            .filter(|&id| {
                !self
                    .layers
                    .iter()
                    .any(|l| l.bottom.is_empty() && l.top.contains(&id))
            })
            .collect();
        let inputs = (0..self.blobs.len())
            .filter(|id| !produced_by_running.contains(id))
            .map(|id| (Slot::Blob(id), self.blobs[id].data.clone()));
        let params = (0..self.params.len()).map(|p| (Slot::Param(p), self.params[p].data.clone()));
        inputs.chain(params).collect()
    }

    /// The objective after setting `point` and running the layers with bottoms forward.
    fn objective_at(
        &mut self,
        point: &[(Slot, Vec<f32>)],
        running: &[usize],
        seeds: &[(usize, Vec<f32>)],
        seed: u64,
    ) -> Result<f64> {
        for (slot, values) in point {
            let dst = match *slot {
                Slot::Blob(id) => &mut self.blobs[id].data,
                Slot::Param(p) => &mut self.params[p].data,
            };
            dst.copy_from_slice(values);
        }
        for &li in running {
            self.layers[li].layer.reseed(seed);
            self.forward_layer(li)?;
        }
        let mut total = 0.0f64;
        for (id, w) in seeds {
            for (&v, &w) in self.blobs[*id].data.iter().zip(w) {
                total += w as f64 * v as f64;
            }
        }
        Ok(total)
    }

    /// Indices into `point` of the values to check: those the objective depends on only
    /// through bottoms that are differentiated, leaving out frozen statistics.
    fn checked_slots(&self, point: &[(Slot, Vec<f32>)], seeds: &[(usize, Vec<f32>)]) -> Vec<usize> {
        // Which blobs feed the objective (a backward sweep).
        let mut feeds: HashSet<usize> = seeds.iter().map(|(id, _)| *id).collect();
        let mut contributes = vec![false; self.layers.len()];
        for (li, l) in self.layers.iter().enumerate().rev() {
            if l.top.iter().any(|t| feeds.contains(t)) {
                contributes[li] = true;
                feeds.extend(l.bottom.iter().copied());
            }
        }
        // Which slots each blob depends on (a forward sweep), and which are cut off somewhere.
        let mut depends: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); self.blobs.len()];
        for (k, (slot, _)) in point.iter().enumerate() {
            if let Slot::Blob(id) = slot {
                depends[*id].insert(k);
            }
        }
        let slot_of_param = |p: usize| {
            point
                .iter()
                .position(|(s, _)| matches!(s, Slot::Param(q) if *q == p))
        };
        let mut excluded: BTreeSet<usize> = BTreeSet::new();
        for (li, l) in self.layers.iter().enumerate() {
            if l.bottom.is_empty() {
                continue;
            }
            let shapes: Vec<Vec<usize>> = l
                .bottom
                .iter()
                .map(|&b| self.blobs[b].shape.clone())
                .collect();
            let mut d: BTreeSet<usize> =
                l.params.iter().filter_map(|&p| slot_of_param(p)).collect();
            if l.layer.frozen_params() {
                excluded.extend(d.iter().copied());
            }
            for (i, &b) in l.bottom.iter().enumerate() {
                let declined = l.param.propagate_down.get(i) == Some(&false)
                    || !l.layer.allow_force_backward(i)
                    || l.layer.index_bound(i, &shapes).is_some();
                if declined && contributes[li] {
                    excluded.extend(depends[b].iter().copied());
                }
                d.extend(depends[b].iter().copied());
            }
            for &t in &l.top {
                depends[t] = d.clone();
            }
        }
        (0..point.len()).filter(|k| !excluded.contains(k)).collect()
    }
}
