//! Binary `.caffemodel` files: a serialized `NetParameter` whose layers carry `blobs`.
//!
//! Reading decodes straight from the one buffer the file is read into (no second copy of the
//! file), upgrades V1 files to the current format, and warns on stderr, naming the layer, when a
//! layer carries fields `caffe.proto` does not declare (a fork's custom parameters), which are
//! skipped. Writing encodes with the generated prost types, so packed fields are packed exactly
//! where `caffe.proto` declares `[packed = true]`.

use crate::proto::NetParameter;
use crate::{Error, Result};
use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message;
use std::path::Path;

/// The top-level fields of one message on the wire: `(number, wire type, payload)`. The payload
/// of a length-delimited field is its contents; of other fields, its raw encoding. `None` when
/// the bytes are not a well-formed message.
fn wire_fields(mut buf: &[u8]) -> Option<Vec<(u32, WireType, &[u8])>> {
    let mut out = Vec::new();
    while buf.has_remaining() {
        let (tag, wt) = decode_key(&mut buf).ok()?;
        let start = buf;
        let payload = match wt {
            WireType::Varint => {
                decode_varint(&mut buf).ok()?;
                &start[..start.len() - buf.len()]
            }
            WireType::SixtyFourBit => {
                let s = start.get(..8)?;
                buf = &buf[8..];
                s
            }
            WireType::ThirtyTwoBit => {
                let s = start.get(..4)?;
                buf = &buf[4..];
                s
            }
            WireType::LengthDelimited => {
                let n = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let s = buf.get(..n)?;
                buf = &buf[n..];
                s
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        out.push((tag, wt, payload));
    }
    Some(out)
}

/// For every layer (current or V1) that carries field numbers `caffe.proto` does not declare:
/// the layer's name and those numbers.
pub fn layers_with_unknown_fields(bytes: &[u8]) -> Vec<(String, Vec<u32>)> {
    let Some(top) = wire_fields(bytes) else {
        return Vec::new();
    };
    let v2 = crate::proto::message("LayerParameter");
    let v1 = crate::proto::message("V1LayerParameter");
    let mut out = Vec::new();
    for (tag, wt, payload) in top {
        let (desc, name_field) = match (tag, wt) {
            (100, WireType::LengthDelimited) => (&v2, 1),
            (2, WireType::LengthDelimited) => (&v1, 4),
            _ => continue,
        };
        let Some(fields) = wire_fields(payload) else {
            continue;
        };
        let mut name = String::new();
        let mut unknown = Vec::new();
        for (t, _, p) in &fields {
            if *t == name_field {
                name = String::from_utf8_lossy(p).into_owned();
            }
            if desc.get_field(*t).is_none() && !unknown.contains(t) {
                unknown.push(*t);
            }
        }
        if !unknown.is_empty() {
            out.push((name, unknown));
        }
    }
    out
}

/// Decodes a caffemodel held in memory, warns about unknown layer fields and upgrades it.
pub fn decode(bytes: &[u8], label: &str) -> Result<NetParameter> {
    let mut net = NetParameter::decode(bytes).map_err(|e| {
        let texty = bytes.iter().take(256).all(|b| b.is_ascii() && (*b >= 32 || b.is_ascii_whitespace()));
        Error::format(
            label,
            format!(
                "not a valid caffemodel (binary NetParameter): {e}{}",
                if texty && !bytes.is_empty() {
                    " (the file looks like text: a .prototxt is read with --prototxt, not as weights)"
                } else {
                    " (truncated or not a caffemodel?)"
                }
            ),
        )
    })?;
    if net.layer.is_empty() && net.layers.is_empty() {
        return Err(Error::format(
            label,
            if bytes.is_empty() {
                "the file is empty, not a caffemodel".to_string()
            } else {
                "decodes to a NetParameter without any layer: not a caffemodel".to_string()
            },
        ));
    }
    for (layer, fields) in layers_with_unknown_fields(bytes) {
        let nums: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        eprintln!(
            "warning: {label}: layer `{layer}` has fields caffe.proto does not declare (numbers {}); \
             they are skipped",
            nums.join(", ")
        );
    }
    crate::caffe::upgrade::upgrade_net(&mut net)
        .map_err(|e| Error::format(label, e.to_string()))?;
    Ok(net)
}

/// Reads weights by path: a `.caffemodel` (current or V1 format, upgraded to the current
/// format), a `.caffemodel.h5` (by extension or signature; see [`super::caffemodel_h5`]) or a
/// `.safetensors` file (by extension or content; see [`super::safetensors`]). Every
/// `--weights` goes through here.
pub fn read(path: impl AsRef<Path>) -> Result<NetParameter> {
    let path = path.as_ref();
    if super::caffemodel_h5::is_h5_path(path) {
        return super::caffemodel_h5::read(path);
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if super::caffemodel_h5::looks_like(&bytes) {
        return super::caffemodel_h5::read(path);
    }
    let label = path.display().to_string();
    let st_ext = path.extension().is_some_and(|e| e == "safetensors");
    if st_ext || super::safetensors::looks_like(&bytes) {
        let st = super::safetensors::decode(&bytes, &label);
        if st.is_ok() || st_ext {
            return st;
        }
    }
    decode(&bytes, &label)
}

/// Writes a `NetParameter` with blobs as a binary `.caffemodel`, atomically.
pub fn write(path: impl AsRef<Path>, net: &NetParameter) -> Result<()> {
    super::write_atomic(path.as_ref(), &net.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{BlobProto, BlobShape, LayerParameter};

    fn sample() -> NetParameter {
        NetParameter {
            name: Some("n".into()),
            layer: vec![LayerParameter {
                name: Some("ip".into()),
                r#type: Some("InnerProduct".into()),
                loss_weight: vec![1.0, 2.0],
                blobs: vec![BlobProto {
                    shape: Some(BlobShape { dim: vec![2, 3] }),
                    data: vec![1.0, -2.5, 3.0, f32::MIN_POSITIVE, 5.0, -0.0],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn packed_exactly_where_declared() {
        let bytes = sample().encode_to_vec();
        let top = wire_fields(&bytes).unwrap();
        let layer = top.iter().find(|f| f.0 == 100).unwrap().2;
        let lf = wire_fields(layer).unwrap();
        // loss_weight (5) is not packed: two 32-bit entries.
        assert_eq!(
            lf.iter()
                .filter(|f| f.0 == 5 && f.1 == WireType::ThirtyTwoBit)
                .count(),
            2
        );
        let blob = lf.iter().find(|f| f.0 == 7).unwrap().2;
        let bf = wire_fields(blob).unwrap();
        // BlobProto.data (5) is packed: one length-delimited field of 6 floats.
        let data: Vec<_> = bf.iter().filter(|f| f.0 == 5).collect();
        assert_eq!(data.len(), 1);
        assert_eq!(
            (data[0].1, data[0].2.len()),
            (WireType::LengthDelimited, 24)
        );
        // BlobShape.dim (1) is packed.
        let shape = wire_fields(bf.iter().find(|f| f.0 == 7).unwrap().2).unwrap();
        assert_eq!(shape.len(), 1);
        assert_eq!(shape[0].1, WireType::LengthDelimited);
    }

    #[test]
    fn unknown_layer_fields_are_found_and_skipped() {
        let mut bytes = Vec::new();
        let mut layer = sample().layer[0].clone();
        layer.blobs.clear();
        let mut lb = layer.encode_to_vec();
        // Field 4242, varint 7: a fork's custom parameter.
        prost::encoding::encode_key(4242, WireType::Varint, &mut lb);
        prost::encoding::encode_varint(7, &mut lb);
        prost::encoding::encode_key(100, WireType::LengthDelimited, &mut bytes);
        prost::encoding::encode_varint(lb.len() as u64, &mut bytes);
        bytes.extend_from_slice(&lb);
        assert_eq!(
            layers_with_unknown_fields(&bytes),
            vec![("ip".to_string(), vec![4242])]
        );
        let net = decode(&bytes, "x").unwrap();
        assert_eq!(net.layer[0].name(), "ip");
    }

    #[test]
    fn truncated_and_garbage_files_are_errors() {
        let bytes = sample().encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut], "t");
        }
        assert!(decode(&bytes[..bytes.len() - 3], "t").is_err());
        let e = decode(b"name: \"LeNet\"\nlayer {\n", "t.caffemodel")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.caffemodel") && e.contains("text"), "{e}");
        assert!(decode(b"", "e").unwrap_err().to_string().contains("empty"));
        let mut seed = 3u64;
        for _ in 0..500 {
            let g: Vec<u8> = (0..64)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = decode(&g, "g");
            let _ = layers_with_unknown_fields(&g);
        }
    }
}
