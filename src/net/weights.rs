//! A net's learnable blobs as Caffe stores them: the net as a `NetParameter` with `blobs` (what a
//! `.caffemodel` holds), and copying trained layers into a net by name (fine-tuning).

use super::Net;
use crate::blob::{blob_to_proto, copy_blob_proto};
use crate::proto::NetParameter;
use crate::{Error, Result};
use std::collections::HashSet;

/// What loading weights into a net did, layer by layer.
#[derive(Debug, Default, Clone)]
pub struct CopyReport {
    /// Layers whose blobs were copied.
    pub copied: Vec<String>,
    /// Layers with learnable blobs that the file lacks (they keep their fillers).
    pub fresh: Vec<String>,
    /// Layers in the file that the net does not have.
    pub ignored: Vec<String>,
}

impl Net {
    /// The net as a `NetParameter` whose layers carry their learnable blobs (a `.caffemodel`).
    pub fn to_proto(&self, with_diff: bool) -> NetParameter {
        let mut out = NetParameter {
            name: Some(self.name.clone()),
            ..Default::default()
        };
        for (li, l) in self.layers().iter().enumerate() {
            let mut lp = l.param.clone();
            lp.blobs = self
                .layer_params(li)
                .into_iter()
                .map(|b| blob_to_proto(b, with_diff))
                .collect();
            out.layer.push(lp);
        }
        out
    }

    /// Copies blobs from a trained net by layer name (Caffe's `CopyTrainedLayersFrom`); `source`
    /// names the file in errors. A blob whose shape differs is [`Error::WeightShape`].
    pub fn copy_trained_layers_from(
        &mut self,
        trained: &NetParameter,
        source: &str,
    ) -> Result<CopyReport> {
        let mut report = CopyReport::default();
        let mut seen = HashSet::new();
        for src in &trained.layer {
            let name = src.name().to_string();
            let Some(li) = self.layers.iter().position(|l| l.name == name) else {
                if !src.blobs.is_empty() {
                    report.ignored.push(name);
                }
                continue;
            };
            seen.insert(li);
            let ids = self.layers[li].params.clone();
            if src.blobs.is_empty() && !ids.is_empty() {
                report.fresh.push(name);
                continue;
            }
            if ids.is_empty() {
                continue;
            }
            if src.blobs.len() != ids.len() {
                return Err(Error::format(
                    source,
                    format!(
                        "layer `{name}`: the file has {} blob(s), the net's layer has {}; rename the \
                         layer to learn it from scratch",
                        src.blobs.len(),
                        ids.len()
                    ),
                ));
            }
            for (bi, (&pid, bp)) in ids.iter().zip(&src.blobs).enumerate() {
                copy_blob_proto(bp, &mut self.params[pid], source, &name, bi)?;
            }
            report.copied.push(name);
        }
        for (li, l) in self.layers.iter().enumerate() {
            if !seen.contains(&li) && !l.params.is_empty() && !report.fresh.contains(&l.name) {
                report.fresh.push(l.name.clone());
            }
        }
        Ok(report)
    }
}
