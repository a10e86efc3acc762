//! What a wired net computes in backward: each top's loss weight and Caffe's need-backward
//! analysis (which layers run backward and which bottoms get a gradient).

use super::Net;
use crate::proto::LayerParameter;
use crate::{Error, Result};
use std::collections::HashSet;

/// The loss weight of each top of `lp`: the model's `loss_weight`, else 1 on top 0 of a loss
/// layer and 0 elsewhere. Also checks that `propagate_down` has one value per bottom.
pub(super) fn loss_weights(lp: &LayerParameter, is_loss: bool) -> Result<Vec<f32>> {
    let (name, ty) = (lp.name(), lp.r#type());
    if !lp.propagate_down.is_empty() && lp.propagate_down.len() != lp.bottom.len() {
        return Err(Error::Net(format!(
            "layer `{name}` (type {ty}) gives {} propagate_down value(s) for {} bottom(s)",
            lp.propagate_down.len(),
            lp.bottom.len()
        )));
    }
    if !lp.loss_weight.is_empty() {
        if lp.loss_weight.len() != lp.top.len() {
            return Err(Error::Net(format!(
                "layer `{name}` (type {ty}) gives {} loss_weight value(s) for {} top(s); give one per top",
                lp.loss_weight.len(),
                lp.top.len()
            )));
        }
        return Ok(lp.loss_weight.clone());
    }
    let first = if is_loss { 1.0 } else { 0.0 };
    Ok((0..lp.top.len())
        .map(|i| if i == 0 { first } else { 0.0 })
        .collect())
}

/// Sums the loss weights the layers give each blob.
pub(super) fn blob_loss_weights(net: &mut Net) {
    net.blob_loss_weight = vec![0.0; net.blobs.len()];
    for l in &net.layers {
        for (t, w) in l.top.iter().zip(&l.loss_weight) {
            net.blob_loss_weight[*t] += *w;
        }
    }
}

/// Caffe's two sweeps: which layers and bottoms need backward. With `force` every layer runs
/// backward and every bottom whose layer allows it gets a gradient (`force_backward`).
pub(super) fn analyse_backward(net: &mut Net, force: bool) {
    let mut blob_need = vec![false; net.blobs.len()];
    for l in net.layers.iter_mut() {
        l.bottom_need_backward = l
            .bottom
            .iter()
            .enumerate()
            .map(|(i, &b)| match l.param.propagate_down.get(i) {
                Some(&pd) => pd,
                None => blob_need[b],
            })
            .collect();
        let need = l.bottom_need_backward.iter().any(|&x| x)
            || l.params.iter().any(|&p| net.param_info[p].lr_mult != 0.0);
        l.need_backward = need;
        for &t in &l.top {
            // In place keeps the bottom's flag set when either needs it.
            blob_need[t] = need || (l.inplace && blob_need[t]);
        }
    }
    // Backward sweep: prune layers that do not reach a loss, and layers whose every top is read
    // only by consumers that decline its gradient. Without Split layers a blob can have several
    // consumers, so a blob is skipped only when it was consumed and no consumer wants it.
    let mut under_loss: HashSet<usize> = HashSet::new();
    let mut consumed: HashSet<usize> = HashSet::new();
    let mut wanted: HashSet<usize> = HashSet::new();
    for l in net.layers.iter_mut().rev() {
        let contributes = l
            .top
            .iter()
            .zip(&l.loss_weight)
            .any(|(t, w)| *w != 0.0 || under_loss.contains(t));
        let skip_down = !l.top.is_empty()
            && l.top
                .iter()
                .zip(&l.loss_weight)
                .all(|(t, w)| *w == 0.0 && consumed.contains(t) && !wanted.contains(t));
        if !contributes || skip_down {
            l.need_backward = false;
            l.bottom_need_backward.iter_mut().for_each(|x| *x = false);
        }
        if l.inplace {
            // Below an in-place layer its blob is an earlier version: forget what the readers
            // of the later version said.
            for t in &l.top {
                under_loss.remove(t);
                consumed.remove(t);
                wanted.remove(t);
            }
        }
        for (i, &b) in l.bottom.iter().enumerate() {
            if contributes {
                under_loss.insert(b);
            }
            consumed.insert(b);
            if l.bottom_need_backward[i] {
                wanted.insert(b);
            }
        }
    }
    if force {
        for l in net.layers.iter_mut() {
            l.need_backward = true;
            for i in 0..l.bottom.len() {
                l.bottom_need_backward[i] =
                    l.bottom_need_backward[i] || l.layer.allow_force_backward(i);
            }
        }
    }
}
