//! Wiring blobs by name while layers are added: bottoms resolve to the current version of a
//! name, tops create blobs, and in place reuses the bottom's blob when that is exact.
//!
//! In place (`top == bottom`) overwrites the blob, so it is exact only while no earlier layer
//! reads the version it overwrites: that reader's backward would see the overwritten data.
//! Caffe refuses such a net ("produced by multiple sources"); here the in-place layer then
//! writes a new version of the name into a blob of its own, which is what the model means:
//! earlier readers keep the old version, later ones read the new. The usual chains
//! (`conv -> ReLU in place -> Dropout in place`) stay truly in place, with no extra memory.
//! A layer whose backward reads its own top (Sigmoid, TanH, Softmax, LRN: see
//! [`Layer::backward_reads_top`]) keeps that top the same way, so `Sigmoid -> TanH in place`
//! gives TanH a new version rather than overwriting the `y` Sigmoid's backward needs (Caffe
//! computes a wrong gradient there).

use super::Net;
use crate::layers::{Layer, TopUse};
use crate::proto::LayerParameter;
use crate::{Blob, Error, Result};
use std::collections::BTreeMap;

/// The blob bookkeeping of a net under construction.
#[derive(Default)]
pub(super) struct Wiring {
    /// The current version of each name.
    by_name: BTreeMap<String, usize>,
    /// The layer that produced (or last overwrote in place) each blob.
    producer: Vec<String>,
    /// Whether a layer has read each blob's current contents.
    read: Vec<bool>,
    /// What backwards need of each blob's current contents (its readers need the values; its
    /// producer what [`Layer::backward_reads_top`] says): a blob whose values are needed is
    /// never overwritten in place, one whose sign is needed only by a layer that keeps signs.
    kept: Vec<TopUse>,
}

impl Wiring {
    /// The blobs a layer reads, in order.
    pub fn bottoms(&self, lp: &LayerParameter) -> Result<Vec<usize>> {
        let mut ids = Vec::with_capacity(lp.bottom.len());
        for b in &lp.bottom {
            let Some(&id) = self.by_name.get(b) else {
                let near = crate::spec::nearest(b, self.by_name.keys().map(|s| s.as_str()));
                return Err(Error::MissingBottom {
                    layer: lp.name().to_string(),
                    ty: lp.r#type().to_string(),
                    blob: b.clone(),
                    suggestion: near.map(str::to_string),
                });
            };
            if ids.contains(&id) {
                return Err(Error::Net(format!(
                    "layer `{}` (type {}) reads blob `{b}` twice; give the second use its own \
                     copy with a Split layer",
                    lp.name(),
                    lp.r#type()
                )));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// The layers that produced `ids`.
    pub fn producers(&self, ids: &[usize]) -> Vec<String> {
        ids.iter().map(|&id| self.producer[id].clone()).collect()
    }

    /// Creates the blobs a layer writes (reusing its bottom's blob for exact in place) and
    /// records the layer's reads. Returns the top blobs and whether the layer runs in place.
    pub fn tops(
        &mut self,
        net: &mut Net,
        lp: &LayerParameter,
        layer: &dyn Layer,
        bottoms: &[usize],
    ) -> Result<(Vec<usize>, bool)> {
        let allows_inplace = layer.allows_inplace();
        let (name, ty) = (lp.name(), lp.r#type());
        let mut ids = Vec::with_capacity(lp.top.len());
        let mut inplace = false;
        for (ti, t) in lp.top.iter().enumerate() {
            if lp.top[..ti].contains(t) {
                return Err(Error::Net(format!(
                    "layer `{name}` (type {ty}) names top `{t}` twice"
                )));
            }
            if lp.bottom.get(ti) == Some(t) {
                check_inplace(lp, allows_inplace, t)?;
                let id = bottoms[ti];
                let exact = match self.kept[id] {
                    TopUse::Nothing => true,
                    TopUse::Sign => layer.keeps_sign(),
                    TopUse::Values => false,
                };
                if !exact {
                    // An earlier backward needs this version: write a new one.
                    ids.push(self.create(net, t, name));
                } else {
                    self.producer[id] = name.to_string();
                    inplace = true;
                    ids.push(id);
                }
                continue;
            }
            if let Some(&id) = self.by_name.get(t) {
                return Err(Error::DuplicateTop {
                    layer: name.to_string(),
                    ty: ty.to_string(),
                    blob: t.clone(),
                    producer: self.producer[id].clone(),
                });
            }
            ids.push(self.create(net, t, name));
        }
        if !inplace {
            for &b in bottoms {
                self.read[b] = true;
                self.kept[b] = TopUse::Values;
            }
        }
        let reads = layer.backward_reads_top();
        for &t in &ids {
            self.kept[t] = self.kept[t].max(reads);
        }
        Ok((ids, inplace))
    }

    /// The blobs no layer reads, sorted by name (the net outputs).
    pub fn unread(&self, net: &Net) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.read.len()).filter(|&id| !self.read[id]).collect();
        ids.sort_by(|&a, &b| net.blob_names[a].cmp(&net.blob_names[b]));
        ids
    }

    /// A new blob called `name`, now the current version of that name.
    fn create(&mut self, net: &mut Net, name: &str, producer: &str) -> usize {
        let id = net.blobs.len();
        // Gradient memory waits until backward can run (see `Net::ensure_diffs`).
        let mut blob = Blob::default();
        blob.defer_diff();
        net.blobs.push(blob);
        net.blob_names.push(name.to_string());
        self.producer.push(producer.to_string());
        self.read.push(false);
        self.kept.push(TopUse::Nothing);
        self.by_name.insert(name.to_string(), id);
        id
    }
}

/// Refuses in place for a layer that cannot run so.
fn check_inplace(lp: &LayerParameter, allows_inplace: bool, blob: &str) -> Result<()> {
    let ty = lp.r#type();
    let reason = if !allows_inplace {
        format!("{ty} cannot run in place; give the top a new name")
    } else if lp.bottom.len() != 1 || lp.top.len() != 1 {
        format!(
            "only a layer with one bottom and one top runs in place, and this one has {} and {}; \
             give the top a new name",
            lp.bottom.len(),
            lp.top.len()
        )
    } else {
        return Ok(());
    };
    Err(Error::BadInPlace {
        layer: lp.name().to_string(),
        ty: ty.to_string(),
        blob: blob.to_string(),
        reason,
    })
}
