//! Turning a `NetParameter` into a wired [`Net`]: phase/level/stage filtering, blob wiring by
//! name, in-place detection, parameter sharing, loss weights and the need-backward analysis.

use super::{LayerEntry, Net, ParamInfo};
use crate::layers::{self, SetupCtx};
use crate::proto::{param_spec::DimCheckMode, NetParameter, NetState, NetStateRule, Phase};
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;
use std::collections::{BTreeSet, HashMap, HashSet};

/// True when `state` satisfies `rule` (Caffe's `StateMeetsRule`).
pub fn state_meets_rule(state: &NetState, rule: &NetStateRule) -> bool {
    if rule.phase.is_some() && rule.phase() != state.phase() {
        return false;
    }
    if rule.min_level.is_some() && state.level() < rule.min_level() {
        return false;
    }
    if rule.max_level.is_some() && state.level() > rule.max_level() {
        return false;
    }
    if !rule.stage.iter().all(|s| state.stage.contains(s)) {
        return false;
    }
    if rule.not_stage.iter().any(|s| state.stage.contains(s)) {
        return false;
    }
    true
}

/// Keeps the layers whose include/exclude rules admit `state` (Caffe's `FilterNet`).
pub fn filter_net(param: &NetParameter, state: &NetState) -> Result<NetParameter> {
    let mut out = param.clone();
    out.layer.clear();
    for l in &param.layer {
        if !l.include.is_empty() && !l.exclude.is_empty() {
            return Err(Error::Net(format!(
                "layer `{}` has both include and exclude rules; use one kind",
                l.name()
            )));
        }
        let keep = if l.include.is_empty() {
            !l.exclude.iter().any(|r| state_meets_rule(state, r))
        } else {
            l.include.iter().any(|r| state_meets_rule(state, r))
        };
        if keep {
            out.layer.push(l.clone());
        }
    }
    Ok(out)
}

fn shape_of(b: &Blob) -> String {
    b.shape_string()
}

/// Adds each bottom's name, shape and producing layer to a layer's own complaint, so a shape
/// mismatch names both layers and both shapes.
fn with_bottoms(e: Error, net: &Net, bottom_ids: &[usize], from: &[String]) -> Error {
    match e {
        Error::Config(m) if !bottom_ids.is_empty() => {
            let list: Vec<String> = bottom_ids
                .iter()
                .zip(from)
                .map(|(&id, layer)| {
                    format!(
                        "`{}` {} from layer `{layer}`",
                        net.blob_names[id],
                        crate::blob::shape_str(&net.blobs[id].shape),
                    )
                })
                .collect();
            Error::Config(format!("{m}; bottoms: {}", list.join(", ")))
        }
        other => other,
    }
}

/// Builds the net for `state` (phase, level, stages).
pub fn build(param: &NetParameter, state: &NetState, rng: &mut StdRng) -> Result<Net> {
    if !param.layers.is_empty() {
        return Err(Error::Net(
            "this net uses Caffe's old V1 `layers` format; upgrade it with `crema import`".into(),
        ));
    }
    let mut param = param.clone();
    crate::spec::upgrade_inputs(&mut param)?;
    let filtered = filter_net(&param, state)?;
    let phase = state.phase();
    let mut net = Net {
        name: param.name().to_string(),
        phase,
        blobs: Vec::new(),
        blob_names: Vec::new(),
        layers: Vec::new(),
        params: Vec::new(),
        param_info: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        blob_loss_weight: Vec::new(),
    };
    // Latest producer of each name, and which blobs have not been consumed yet.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut available: HashSet<usize> = HashSet::new();
    let mut producer: Vec<String> = Vec::new();
    let mut owner_of_name: HashMap<String, usize> = HashMap::new();
    // Layer name -> whether that layer has learnable blobs. Caffe accepts repeated names; weights
    // are matched by name, so a repeat is refused only when one of the two has weights.
    let mut layer_names: HashMap<String, bool> = HashMap::new();

    for (li, lp) in filtered.layer.iter().enumerate() {
        let mut lp = lp.clone();
        if lp.phase.is_none() {
            lp.set_phase(phase);
        }
        let name = lp.name().to_string();
        let ty = lp.r#type().to_string();
        if name.is_empty() {
            return Err(Error::Net(format!("layer #{li} (type {ty}) has no name")));
        }
        let mut layer = layers::create(&lp).map_err(|e| e.in_layer(&name, &ty))?;
        layer
            .blob_counts()
            .check(&ty, lp.bottom.len(), lp.top.len())
            .map_err(|e| e.in_layer(&name, &ty))?;
        // Bottoms.
        let mut bottom_ids = Vec::new();
        for (bi, b) in lp.bottom.iter().enumerate() {
            let id = match by_name.get(b) {
                Some(&id) => id,
                None => {
                    let known: Vec<&str> = by_name.keys().map(|s| s.as_str()).collect();
                    let near = crate::spec::nearest(b, known.iter().copied());
                    return Err(Error::Net(format!(
                        "layer `{name}` (type {ty}): unknown bottom blob `{b}` (input #{bi}){}; \
                         a bottom must be a top of an earlier layer",
                        near.map(|n| format!("; did you mean `{n}`?"))
                            .unwrap_or_default()
                    )));
                }
            };
            if bottom_ids.contains(&id) {
                return Err(Error::Net(format!(
                    "layer `{name}` (type {ty}) reads blob `{b}` twice; give the second use its own \
                     copy with a Split layer"
                )));
            }
            available.remove(&id);
            bottom_ids.push(id);
        }
        let bottom_from: Vec<String> = bottom_ids.iter().map(|&id| producer[id].clone()).collect();
        // Tops.
        let mut top_ids = Vec::new();
        let mut inplace = false;
        for (ti, t) in lp.top.iter().enumerate() {
            if lp.bottom.get(ti) == Some(t) {
                if !layer.allows_inplace() || lp.bottom.len() != 1 || lp.top.len() != 1 {
                    return Err(Error::Net(format!(
                        "layer `{name}` (type {ty}) writes its top `{t}` in place over its bottom, \
                         but {ty} cannot run in place; give the top a new name"
                    )));
                }
                inplace = true;
                let id = bottom_ids[ti];
                available.insert(id);
                producer[id] = name.clone();
                top_ids.push(id);
                continue;
            }
            if let Some(&id) = by_name.get(t) {
                return Err(Error::Net(format!(
                    "layer `{name}` (type {ty}): top blob `{t}` is produced by multiple sources \
                     (already produced by layer `{}`); rename one of them",
                    producer[id]
                )));
            }
            if top_ids.iter().any(|&id| net.blob_names[id] == *t) {
                return Err(Error::Net(format!(
                    "layer `{name}` (type {ty}) names top `{t}` twice"
                )));
            }
            let id = net.blobs.len();
            net.blobs.push(Blob::default());
            net.blob_names.push(t.clone());
            producer.push(name.clone());
            by_name.insert(t.clone(), id);
            available.insert(id);
            top_ids.push(id);
        }
        if ty == "Input" {
            net.inputs.extend(top_ids.iter().copied());
        }
        // Setup and parameters.
        let (bottom_refs, _) = super::gather(&mut net.blobs, &bottom_ids, &[]);
        let mut created = layer
            .setup(&bottom_refs, &mut SetupCtx { rng })
            .map_err(|e| with_bottoms(e, &net, &bottom_ids, &bottom_from).in_layer(&name, &ty))?;
        if !lp.blobs.is_empty() {
            if lp.blobs.len() != created.len() {
                return Err(Error::Net(format!(
                    "layer `{name}` (type {ty}) embeds {} blob(s) but has {} learnable blob(s)",
                    lp.blobs.len(),
                    created.len()
                )));
            }
            for (i, (dst, src)) in created.iter_mut().zip(&lp.blobs).enumerate() {
                crate::blob::copy_blob_proto(src, dst, "the model's embedded blobs", &name, i)?;
            }
        }
        if lp.param.len() > created.len() {
            return Err(Error::Net(format!(
                "layer `{name}` (type {ty}) declares {} `param` entries but has only {} learnable blob(s)",
                lp.param.len(),
                created.len()
            )));
        }
        let repeated = layer_names.insert(name.clone(), !created.is_empty());
        if repeated.is_some_and(|had| had || !created.is_empty()) {
            return Err(Error::Net(format!(
                "two layers are named `{name}` and one has learnable blobs; weights are matched by \
                 layer name, so rename one of them"
            )));
        }
        let frozen = layer.frozen_params();
        let mut param_ids = Vec::new();
        for (pi, blob) in created.into_iter().enumerate() {
            let spec = lp.param.get(pi);
            let (mut lr, mut decay) = (
                spec.map(|s| s.lr_mult()).unwrap_or(1.0),
                spec.map(|s| s.decay_mult()).unwrap_or(1.0),
            );
            if frozen {
                if spec.is_some_and(|s| s.lr_mult.is_some_and(|v| v != 0.0)) {
                    return Err(Error::Net(format!(
                        "layer `{name}` (type {ty}): its blobs are statistics, not parameters; \
                         set lr_mult: 0 (or drop the `param` entries)"
                    )));
                }
                lr = 0.0;
                decay = 0.0;
            }
            let pname = spec.map(|s| s.name().to_string()).unwrap_or_default();
            if !pname.is_empty() {
                if let Some(&owner) = owner_of_name.get(&pname) {
                    let o = &net.params[owner];
                    let mode = spec.map(|s| s.share_mode()).unwrap_or(DimCheckMode::Strict);
                    let fits = match mode {
                        DimCheckMode::Strict => o.shape == blob.shape,
                        DimCheckMode::Permissive => o.count() == blob.count(),
                    };
                    if !fits {
                        return Err(Error::Net(format!(
                            "layer `{name}` (type {ty}) shares param `{pname}` with layer `{}`, but \
                             the shapes differ: {} (owner) vs {} ({} mode)",
                            net.param_info[owner].layer,
                            shape_of(o),
                            shape_of(&blob),
                            if mode == DimCheckMode::Strict { "STRICT compares shapes; PERMISSIVE compares counts" } else { "PERMISSIVE" }
                        )));
                    }
                    let info = &mut net.param_info[owner];
                    if spec.is_some_and(|s| s.lr_mult.is_some()) {
                        if info.lr_set && info.lr_mult != lr {
                            return Err(Error::Net(format!(
                                "layer `{name}`: shared param `{pname}` has lr_mult {lr} here and {} in layer `{}`",
                                info.lr_mult, info.layer
                            )));
                        }
                        info.lr_mult = lr;
                        info.lr_set = true;
                    }
                    if spec.is_some_and(|s| s.decay_mult.is_some()) {
                        if info.decay_set && info.decay_mult != decay {
                            return Err(Error::Net(format!(
                                "layer `{name}`: shared param `{pname}` has decay_mult {decay} here and {} in layer `{}`",
                                info.decay_mult, info.layer
                            )));
                        }
                        info.decay_mult = decay;
                        info.decay_set = true;
                    }
                    if param_ids.contains(&owner) {
                        return Err(Error::Net(format!(
                            "layer `{name}` uses shared param `{pname}` twice"
                        )));
                    }
                    param_ids.push(owner);
                    continue;
                }
                owner_of_name.insert(pname.clone(), net.params.len());
            }
            param_ids.push(net.params.len());
            net.param_info.push(ParamInfo {
                layer: name.clone(),
                index: pi,
                name: pname,
                lr_mult: lr,
                decay_mult: decay,
                lr_set: spec.is_some_and(|s| s.lr_mult.is_some()),
                decay_set: spec.is_some_and(|s| s.decay_mult.is_some()),
            });
            net.params.push(blob);
        }
        // Shapes.
        {
            let (b, mut t) = super::gather(
                &mut net.blobs,
                if inplace { &[] } else { &bottom_ids },
                &top_ids,
            );
            let r = layer.reshape(&b, &mut t);
            r.map_err(|e| with_bottoms(e, &net, &bottom_ids, &bottom_from).in_layer(&name, &ty))?;
        }
        // Loss weights.
        let loss_weight: Vec<f32> = if !lp.loss_weight.is_empty() {
            if lp.loss_weight.len() != lp.top.len() {
                return Err(Error::Net(format!(
                    "layer `{name}` (type {ty}) gives {} loss_weight value(s) for {} top(s); give one per top",
                    lp.loss_weight.len(),
                    lp.top.len()
                )));
            }
            lp.loss_weight.clone()
        } else if layer.is_loss() {
            (0..lp.top.len())
                .map(|i| if i == 0 { 1.0 } else { 0.0 })
                .collect()
        } else {
            vec![0.0; lp.top.len()]
        };
        if !lp.propagate_down.is_empty() && lp.propagate_down.len() != lp.bottom.len() {
            return Err(Error::Net(format!(
                "layer `{name}` (type {ty}) gives {} propagate_down value(s) for {} bottom(s)",
                lp.propagate_down.len(),
                lp.bottom.len()
            )));
        }
        net.layers.push(LayerEntry {
            name,
            ty,
            layer,
            bottom: bottom_ids,
            top: top_ids,
            inplace,
            params: param_ids,
            loss_weight,
            need_backward: false,
            bottom_need_backward: Vec::new(),
            param: lp,
            forward_time: 0.0,
            backward_time: 0.0,
        });
    }
    net.outputs = {
        let by: BTreeSet<(&String, usize)> = available
            .iter()
            .map(|&id| (&net.blob_names[id], id))
            .collect();
        by.into_iter().map(|(_, id)| id).collect()
    };
    net.blob_loss_weight = vec![0.0; net.blobs.len()];
    for l in &net.layers {
        for (t, w) in l.top.iter().zip(&l.loss_weight) {
            net.blob_loss_weight[*t] += *w;
        }
    }
    analyse_backward(&mut net, param.force_backward());
    Ok(net)
}

/// Caffe's two sweeps: which layers and bottoms need backward.
fn analyse_backward(net: &mut Net, force: bool) {
    let mut blob_need = vec![false; net.blobs.len()];
    for l in net.layers.iter_mut() {
        let mut need = false;
        l.bottom_need_backward = l
            .bottom
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if l.param.propagate_down.is_empty() {
                    blob_need[b]
                } else {
                    l.param.propagate_down[i]
                }
            })
            .collect();
        need |= l.bottom_need_backward.iter().any(|&x| x);
        need |= l.params.iter().any(|&p| net.param_info[p].lr_mult != 0.0);
        l.need_backward = need;
        for &t in &l.top {
            // In place keeps the bottom's flag set when either needs it.
            blob_need[t] = if l.inplace {
                blob_need[t] || need
            } else {
                need
            };
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
    let _ = Phase::Train;
}
