//! Turning a `NetParameter` into a wired [`Net`], in steps with one job each: filter the
//! layers for the state ([`super::filter`]), then per layer wire bottoms and tops
//! ([`super::wiring`]), set the layer up and register its parameters ([`super::params`]), size
//! its tops and record its loss weights; last, the backward analysis ([`super::analysis`]).

use super::analysis::{analyse_backward, blob_loss_weights, loss_weights};
use super::params::ParamTable;
use super::wiring::Wiring;
use super::{filter_net, LayerEntry, Net};
use crate::layers::{self, Layer, SetupCtx};
use crate::proto::{LayerParameter, NetParameter, NetState};
use crate::{Blob, Error, Result};
use rand::rngs::StdRng;

/// Builds the net for `state` (phase, level, stages).
pub fn build(param: &NetParameter, state: &NetState, rng: &mut StdRng) -> Result<Net> {
    refuse_legacy(param)?;
    let filtered = filter_net(param, state)?;
    let mut b = Builder {
        net: Net::empty(param.name(), state.phase()),
        wiring: Wiring::default(),
        params: ParamTable::default(),
    };
    for (li, lp) in filtered.layer.iter().enumerate() {
        b.add_layer(li, lp, rng)?;
    }
    let mut net = b.net;
    net.outputs = b.wiring.unread(&net);
    blob_loss_weights(&mut net);
    analyse_backward(&mut net, param.force_backward());
    Ok(net)
}

/// Old formats are upgraded where files are read (`spec::load_net`, `caffe::load_net_prototxt`),
/// not here; a model built in memory in an old format gets the fix.
fn refuse_legacy(param: &NetParameter) -> Result<()> {
    if !param.layers.is_empty() {
        return Err(Error::Net(
            "this net uses Caffe's old V1 `layers` format; upgrade it with `crema import`".into(),
        ));
    }
    if !param.input.is_empty() || !param.input_shape.is_empty() || !param.input_dim.is_empty() {
        return Err(Error::Net(
            "this net declares inputs with the legacy `input`/`input_shape`/`input_dim` fields; \
             turn them into an Input layer with `crema::spec::upgrade_inputs` (the model loaders \
             do this when they read a file)"
                .into(),
        ));
    }
    Ok(())
}

/// A net under construction.
struct Builder {
    net: Net,
    wiring: Wiring,
    params: ParamTable,
}

impl Builder {
    /// Wires, sets up and sizes layer `li` of the filtered model.
    fn add_layer(&mut self, li: usize, lp: &LayerParameter, rng: &mut StdRng) -> Result<()> {
        let mut lp = lp.clone();
        if lp.phase.is_none() {
            lp.set_phase(self.net.phase);
        }
        let (name, ty) = (lp.name().to_string(), lp.r#type().to_string());
        if name.is_empty() {
            return Err(Error::Net(format!("layer #{li} (type {ty}) has no name")));
        }
        let mut layer = layers::create(&lp).map_err(|e| e.in_layer(&name, &ty))?;
        layer
            .blob_counts()
            .check(&ty, lp.bottom.len(), lp.top.len())
            .map_err(|e| e.in_layer(&name, &ty))?;
        let bottom = self.wiring.bottoms(&lp)?;
        let bottom_from = self.wiring.producers(&bottom);
        let (top, inplace) = self.wiring.tops(&mut self.net, &lp, &*layer, &bottom)?;
        if ty == "Input" {
            self.net.inputs.extend(top.iter().copied());
        }
        let explain = |e: Error, net: &Net| with_bottoms(e, net, &bottom, &bottom_from);
        let created = {
            let (b, _) = super::gather(&mut self.net.blobs, &bottom, &[]);
            let r = layer.setup(&b, &mut SetupCtx { rng });
            r.map_err(|e| explain(e, &self.net).in_layer(&name, &ty))?
        };
        let created = with_embedded_blobs(&lp, created)?;
        let params = self
            .params
            .register(&mut self.net, &lp, layer.frozen_params(), created)?;
        {
            let shared: &[usize] = if inplace { &[] } else { &bottom };
            let (b, mut t) = super::gather(&mut self.net.blobs, shared, &top);
            let r = layer.reshape(&b, &mut t);
            r.map_err(|e| explain(e, &self.net).in_layer(&name, &ty))?;
        }
        let loss_weight = loss_weights(&lp, layer.is_loss())?;
        self.net
            .layers
            .push(entry(lp, layer, bottom, top, inplace, params, loss_weight));
        Ok(())
    }
}

/// A wired layer; the backward analysis fills in its flags.
fn entry(
    param: LayerParameter,
    layer: Box<dyn Layer>,
    bottom: Vec<usize>,
    top: Vec<usize>,
    inplace: bool,
    params: Vec<usize>,
    loss_weight: Vec<f32>,
) -> LayerEntry {
    LayerEntry {
        name: param.name().to_string(),
        ty: param.r#type().to_string(),
        layer,
        bottom,
        top,
        inplace,
        params,
        loss_weight,
        need_backward: false,
        bottom_need_backward: Vec::new(),
        param,
        forward_time: 0.0,
        backward_time: 0.0,
    }
}

/// Replaces the values of the blobs a layer created with those embedded in its parameters.
fn with_embedded_blobs(lp: &LayerParameter, mut created: Vec<Blob>) -> Result<Vec<Blob>> {
    if lp.blobs.is_empty() {
        return Ok(created);
    }
    let (name, ty) = (lp.name(), lp.r#type());
    if lp.blobs.len() != created.len() {
        return Err(Error::Net(format!(
            "layer `{name}` (type {ty}) embeds {} blob(s) but has {} learnable blob(s)",
            lp.blobs.len(),
            created.len()
        )));
    }
    for (i, (dst, src)) in created.iter_mut().zip(&lp.blobs).enumerate() {
        crate::blob::copy_blob_proto(src, dst, "the model's embedded blobs", name, i)?;
    }
    Ok(created)
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
