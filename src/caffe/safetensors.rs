//! Weights as a `.safetensors` file (through the `safetensors` crate): one tensor per learnable
//! blob, named `LAYER.INDEX` (`conv1.0` the weights, `conv1.1` the bias), float32, in the blob's
//! shape. Reading gives a caffemodel-like `NetParameter` (layers with `blobs`, no types), so
//! every `--weights` that takes a caffemodel takes a safetensors file too (see
//! [`super::caffemodel::read`]).

use crate::proto::{BlobProto, BlobShape, LayerParameter, NetParameter};
use crate::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;

/// Whether `bytes` look like a safetensors file: an 8-byte little-endian header size that fits,
/// then a JSON object.
pub fn looks_like(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(head);
    let n = u64::from_le_bytes(n);
    (2..=(bytes.len() as u64).saturating_sub(8)).contains(&n) && bytes.get(8) == Some(&b'{')
}

/// Decodes a safetensors file held in memory into layers with blobs; `label` names it in errors.
pub fn decode(bytes: &[u8], label: &str) -> Result<NetParameter> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(label, format!("not a valid safetensors file: {e}")))?;
    // layer -> index -> blob; layers in the order they first appear in the file's offsets.
    let mut layers: BTreeMap<String, BTreeMap<usize, BlobProto>> = BTreeMap::new();
    let mut order: Vec<(usize, String)> = Vec::new();
    for (name, view) in st.iter() {
        let (layer, idx) = name
            .rsplit_once('.')
            .and_then(|(l, i)| Some((l, i.parse::<usize>().ok()?)))
            .ok_or_else(|| {
                Error::format(
                    label,
                    format!("tensor `{name}`: crema names tensors LAYER.INDEX (e.g. conv1.0)"),
                )
            })?;
        let data = view.data();
        let vals: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(Error::format(
                    label,
                    format!("tensor `{name}` is {other:?}; crema reads F32, F64 and BF16"),
                ))
            }
        };
        let blob = BlobProto {
            shape: Some(BlobShape {
                dim: view.shape().iter().map(|&d| d as i64).collect(),
            }),
            data: vals,
            ..Default::default()
        };
        let offset = data.as_ptr() as usize;
        if !layers.contains_key(layer) {
            order.push((offset, layer.to_string()));
        } else if let Some(o) = order.iter_mut().find(|o| o.1 == layer) {
            o.0 = o.0.min(offset);
        }
        let slot = layers.entry(layer.to_string()).or_default();
        if slot.insert(idx, blob).is_some() {
            return Err(Error::format(
                label,
                format!("tensor `{name}` appears twice"),
            ));
        }
    }
    order.sort();
    let mut net = NetParameter::default();
    for (_, name) in order {
        let blobs = layers.remove(&name).unwrap_or_default();
        let n = blobs.len();
        if blobs.keys().copied().ne(0..n) {
            return Err(Error::format(
                label,
                format!(
                    "layer `{name}`: blob indices {:?} are not 0..{n}",
                    blobs.keys().collect::<Vec<_>>()
                ),
            ));
        }
        net.layer.push(LayerParameter {
            name: Some(name),
            blobs: blobs.into_values().collect(),
            ..Default::default()
        });
    }
    if net.layer.is_empty() {
        return Err(Error::format(label, "the safetensors file holds no tensor"));
    }
    Ok(net)
}

/// Encodes the layers' blobs of `net` (a caffemodel `NetParameter`) as safetensors bytes.
pub fn encode(net: &NetParameter) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in &net.layer {
        for (i, b) in l.blobs.iter().enumerate() {
            let shape: Vec<usize> = match &b.shape {
                Some(s) => s.dim.iter().map(|&d| d.max(0) as usize).collect(),
                None => vec![b.data.len()],
            };
            let bytes = b.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            owned.push((format!("{}.{i}", l.name()), shape, bytes));
        }
    }
    let views = owned
        .iter()
        .map(|(n, s, d)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), d)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Invalid(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "crema".to_string());
    if let Some(n) = &net.name {
        meta.insert("net".to_string(), n.clone());
    }
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Invalid(format!("cannot encode safetensors: {e}")))
}

/// Writes the blobs of `net` as a `.safetensors` file, atomically.
pub fn write(path: impl AsRef<std::path::Path>, net: &NetParameter) -> Result<()> {
    super::write_atomic(path.as_ref(), &encode(net)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_names_order_shapes_and_values() {
        let blob = |dim: Vec<i64>, data: Vec<f32>| BlobProto {
            shape: Some(BlobShape { dim }),
            data,
            ..Default::default()
        };
        let net = NetParameter {
            layer: vec![
                LayerParameter {
                    name: Some("conv.1".into()),
                    blobs: vec![
                        blob(vec![2, 1, 1, 1], vec![1.5, -2.0]),
                        blob(vec![2], vec![0.25, 3.0]),
                    ],
                    ..Default::default()
                },
                LayerParameter {
                    name: Some("ip".into()),
                    blobs: vec![blob(vec![1, 3], vec![7.0, 8.0, 9.0])],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let bytes = encode(&net).unwrap();
        assert!(looks_like(&bytes));
        let back = decode(&bytes, "t.safetensors").unwrap();
        let names: Vec<_> = back.layer.iter().map(|l| l.name().to_string()).collect();
        assert_eq!(names.len(), 2);
        for l in &net.layer {
            let b = back.layer.iter().find(|x| x.name == l.name).unwrap();
            assert_eq!(b.blobs, l.blobs);
        }
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        assert!(!looks_like(b"\x0a\x05LeNet"));
        let e = decode(b"\x10\0\0\0\0\0\0\0{\"a\":1}", "w.safetensors")
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.safetensors"), "{e}");
        let v = vec![0u8; 4];
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &v).unwrap();
        let bytes = safetensors::serialize([("noindex", view)], None).unwrap();
        let e = decode(&bytes, "n.safetensors").unwrap_err().to_string();
        assert!(e.contains("LAYER.INDEX"), "{e}");
    }
}
