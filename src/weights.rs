//! Weights in Caffe's formats: `BlobProto` <-> [`Blob`], a net's weights as a `.caffemodel`
//! (binary `NetParameter` with `blobs`), and copying trained layers into a net by name.

use crate::proto::{BlobProto, BlobShape, NetParameter};
use crate::{Blob, Error, Net, Result};
use prost::Message;
use std::io::Write;
use std::path::Path;

/// The shape a `BlobProto` declares: legacy `num/channels/height/width` when any is present,
/// else `shape.dim`.
pub fn proto_shape(p: &BlobProto) -> Vec<usize> {
    if p.num.is_some() || p.channels.is_some() || p.height.is_some() || p.width.is_some() {
        vec![
            p.num() as usize,
            p.channels() as usize,
            p.height() as usize,
            p.width() as usize,
        ]
    } else {
        p.shape
            .as_ref()
            .map(|s| s.dim.iter().map(|&d| d.max(0) as usize).collect())
            .unwrap_or_default()
    }
}

fn strip_leading_ones(s: &[usize]) -> &[usize] {
    let k = s.iter().take_while(|&&d| d == 1).count();
    &s[k.min(s.len().saturating_sub(1))..]
}

/// Copies a `BlobProto`'s values into `dst`, whose shape must match (legacy 4-D shapes match
/// when they agree after dropping leading 1s, as Caffe's legacy comparison allows).
pub fn copy_blob_proto(src: &BlobProto, dst: &mut Blob) -> std::result::Result<(), String> {
    let shape = proto_shape(src);
    let legacy =
        src.num.is_some() || src.channels.is_some() || src.height.is_some() || src.width.is_some();
    let same = shape == dst.shape
        || (legacy && strip_leading_ones(&shape) == strip_leading_ones(&dst.shape));
    if !same {
        return Err(format!(
            "shape mismatch: the file has {} but the net expects {}",
            crate::blob::shape_str(&shape),
            crate::blob::shape_str(&dst.shape)
        ));
    }
    let n = dst.count();
    if !src.double_data.is_empty() {
        if src.double_data.len() != n {
            return Err(format!(
                "holds {} values for a blob of {n}",
                src.double_data.len()
            ));
        }
        for (d, s) in dst.data.iter_mut().zip(&src.double_data) {
            *d = *s as f32;
        }
    } else {
        if src.data.len() != n {
            return Err(format!("holds {} values for a blob of {n}", src.data.len()));
        }
        dst.data.copy_from_slice(&src.data);
    }
    Ok(())
}

/// A `BlobProto` with N-D `shape` and float data (and diff when asked).
pub fn blob_to_proto(b: &Blob, with_diff: bool) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape {
            dim: b.shape.iter().map(|&d| d as i64).collect(),
        }),
        data: b.data.clone(),
        diff: if with_diff {
            b.diff.clone()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// A `Blob` from a `BlobProto` (its own shape).
pub fn proto_to_blob(p: &BlobProto) -> std::result::Result<Blob, String> {
    let mut b = Blob::new(&proto_shape(p));
    copy_blob_proto(p, &mut b)?;
    Ok(b)
}

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

    /// Copies blobs from a trained net by layer name (Caffe's `CopyTrainedLayersFrom`).
    pub fn copy_trained_layers_from(
        &mut self,
        trained: &NetParameter,
        source: &str,
    ) -> Result<CopyReport> {
        let mut report = CopyReport::default();
        let mut seen = std::collections::HashSet::new();
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
                copy_blob_proto(bp, &mut self.params[pid]).map_err(|m| {
                    Error::format(
                        source,
                        format!(
                            "cannot copy param {bi} of layer `{name}`: {m}; rename the layer to \
                             learn it from scratch"
                        ),
                    )
                })?;
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

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|f| f.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Saves a `NetParameter` (with blobs) as a binary `.caffemodel`, atomically.
pub fn save_caffemodel(path: impl AsRef<Path>, net: &NetParameter) -> Result<()> {
    write_atomic(path.as_ref(), &net.encode_to_vec())
}

/// Reads a binary `.caffemodel`, current or V1 format (upgraded to the current format, legacy
/// blob dimensions kept for [`copy_blob_proto`]), warning about layers with unknown fields.
pub fn load_caffemodel(path: impl AsRef<Path>) -> Result<NetParameter> {
    crate::caffe::caffemodel::read(path)
}
