//! Registering a layer's learnable blobs with the net: multipliers, frozen statistics, sharing
//! by `param { name }` (one blob, checked shapes and agreeing multipliers), repeated layer names.

use super::{Net, ParamInfo};
use crate::proto::{param_spec::DimCheckMode, LayerParameter, ParamSpec};
use crate::{Blob, Error, Result};
use std::collections::HashMap;

/// The parameter bookkeeping of a net under construction.
#[derive(Default)]
pub(super) struct ParamTable {
    /// Sharing name -> index of the owning blob in the net's parameter store.
    owner_of_name: HashMap<String, usize>,
    /// Layer name -> whether that layer has learnable blobs. Caffe accepts repeated names;
    /// weights are matched by name, so a repeat is refused only when one of the two has weights.
    layer_names: HashMap<String, bool>,
}

impl ParamTable {
    /// Adds the blobs `created` by layer `lp` to the net (or points them at the blobs they
    /// share) and returns their indices in the net's parameter store.
    pub fn register(
        &mut self,
        net: &mut Net,
        lp: &LayerParameter,
        frozen: bool,
        created: Vec<Blob>,
    ) -> Result<Vec<usize>> {
        let (name, ty) = (lp.name(), lp.r#type());
        if lp.param.len() > created.len() {
            return Err(Error::Net(format!(
                "layer `{name}` (type {ty}) declares {} `param` entries but has only {} learnable blob(s)",
                lp.param.len(),
                created.len()
            )));
        }
        let repeated = self
            .layer_names
            .insert(name.to_string(), !created.is_empty());
        if repeated.is_some_and(|had| had || !created.is_empty()) {
            return Err(Error::Net(format!(
                "two layers are named `{name}` and one has learnable blobs; weights are matched by \
                 layer name, so rename one of them"
            )));
        }
        let mut ids = Vec::with_capacity(created.len());
        for (pi, mut blob) in created.into_iter().enumerate() {
            // Gradient memory waits until backward can run (see `Net::ensure_diffs`).
            blob.defer_diff();
            let spec = lp.param.get(pi).cloned().unwrap_or_default();
            let info = ParamInfo::new(lp, pi, &spec, frozen)?;
            let id = match self.owner_of_name.get(&info.name) {
                Some(&owner) => {
                    share(net, owner, lp, &info, &spec, &blob)?;
                    if ids.contains(&owner) {
                        return Err(Error::Net(format!(
                            "layer `{name}` uses shared param `{}` twice",
                            info.name
                        )));
                    }
                    owner
                }
                None => {
                    let id = net.params.len();
                    if !info.name.is_empty() {
                        self.owner_of_name.insert(info.name.clone(), id);
                    }
                    net.param_info.push(info);
                    net.params.push(blob);
                    id
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }
}

impl ParamInfo {
    /// The facts of blob `index` of layer `lp` from its `param` entry (`spec`).
    fn new(lp: &LayerParameter, index: usize, spec: &ParamSpec, frozen: bool) -> Result<Self> {
        if frozen && spec.lr_mult.is_some_and(|v| v != 0.0) {
            return Err(Error::Net(format!(
                "layer `{}` (type {}): its blobs are statistics, not parameters; set lr_mult: 0 \
                 (or drop the `param` entries)",
                lp.name(),
                lp.r#type()
            )));
        }
        let live = if frozen { 0.0 } else { 1.0 };
        Ok(ParamInfo {
            layer: lp.name().to_string(),
            index,
            name: spec.name().to_string(),
            lr_mult: spec.lr_mult() * live,
            decay_mult: spec.decay_mult() * live,
            lr_set: spec.lr_mult.is_some(),
            decay_set: spec.decay_mult.is_some(),
        })
    }
}

/// Points one more layer's blob at the shared blob `owner`: the shapes must fit (`share_mode`)
/// and multipliers given in both places must agree.
fn share(
    net: &mut Net,
    owner: usize,
    lp: &LayerParameter,
    info: &ParamInfo,
    spec: &ParamSpec,
    blob: &Blob,
) -> Result<()> {
    let (name, ty, pname) = (lp.name(), lp.r#type(), &info.name);
    let o = &net.params[owner];
    let mode = spec.share_mode();
    let fits = match mode {
        DimCheckMode::Strict => o.shape == blob.shape,
        DimCheckMode::Permissive => o.count() == blob.count(),
    };
    let held = &mut net.param_info[owner];
    let owner_layer = held.layer.clone();
    if !fits {
        return Err(Error::Net(format!(
            "layer `{name}` (type {ty}) shares param `{pname}` with layer `{owner_layer}`, but the \
             shapes differ: {} (owner) vs {} ({})",
            o.shape_string(),
            blob.shape_string(),
            if mode == DimCheckMode::Strict {
                "STRICT compares shapes; PERMISSIVE compares counts"
            } else {
                "PERMISSIVE"
            }
        )));
    }
    let multipliers = [
        (
            "lr_mult",
            &mut held.lr_mult,
            &mut held.lr_set,
            info.lr_mult,
            info.lr_set,
        ),
        (
            "decay_mult",
            &mut held.decay_mult,
            &mut held.decay_set,
            info.decay_mult,
            info.decay_set,
        ),
    ];
    for (what, value, set, given, given_set) in multipliers {
        if !given_set {
            continue;
        }
        if *set && *value != given {
            return Err(Error::Net(format!(
                "layer `{name}`: shared param `{pname}` has {what} {given} here and {value} in \
                 layer `{owner_layer}`"
            )));
        }
        *value = given;
        *set = true;
    }
    Ok(())
}
