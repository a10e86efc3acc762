//! Applying one update (Caffe's `ApplyUpdate`): the rate from the policy, the NaN/Inf check,
//! global L2 clipping, 1/iter_size normalisation, L1/L2 decay with `decay_mult`, the rule's
//! step written into the diff, then `data -= diff`.

use super::{adadelta, adagrad, adam, nesterov, rmsprop, sgd, Solver, SolverType};
use crate::Result;

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

impl Solver {
    /// Clips, normalises, regularises, computes and applies the update; returns the rate.
    pub(super) fn apply_update(&mut self) -> Result<f32> {
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
            regularize(&mut p.diff, &p.data, wd * decay_mult, l1);
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
        self.check_update(rate)?;
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
}

/// Adds the weight-decay gradient: `decay * sign(w)` (L1) or `decay * w` (L2).
fn regularize(diff: &mut [f32], data: &[f32], decay: f32, l1: bool) {
    if decay == 0.0 {
        return;
    }
    for (d, &w) in diff.iter_mut().zip(data) {
        *d += if l1 {
            if w > 0.0 {
                decay
            } else if w < 0.0 {
                -decay
            } else {
                0.0
            }
        } else {
            decay * w
        };
    }
}
