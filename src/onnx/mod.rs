//! ONNX interchange: a built net as an ONNX graph ([`export`]) and an ONNX graph as a crema
//! model with weights ([`import`]). The schema is the part of ONNX's `onnx.proto` in
//! `proto/onnx.proto` (same field numbers), compiled with prost like `caffe.proto`.
//!
//! Layer to operator mapping (both directions; see the README's "ONNX and safetensors"):
//! Convolution -> Conv, Deconvolution -> ConvTranspose, Pooling -> MaxPool / AveragePool (explicit
//! end pads reproduce Caffe's ceil rounding; AVE with pad goes through Pad so the divisor is
//! Caffe's) / GlobalMaxPool / GlobalAveragePool, LRN -> LRN, BatchNorm -> BatchNormalization,
//! Scale / Bias -> Mul / Add, ReLU -> Relu / LeakyRelu, PReLU -> PRelu, Sigmoid, TanH, ELU, AbsVal,
//! BNLL -> Softplus, Power -> Mul/Add/Pow, InnerProduct -> Flatten + Gemm (axis 1) or Reshape +
//! MatMul + Add, Softmax, Concat, Slice -> Split, Eltwise -> Sum / Mul / Max, Crop -> Slice,
//! Reshape / Flatten -> Reshape / Flatten, Dropout / Split -> Identity, Embed -> Cast + Gather,
//! LSTM -> LSTM (gates i,f,o,g reordered to ONNX's i,o,f,c) + Squeeze.

pub mod export;
pub mod import;

#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    //! Rust types generated from `proto/onnx.proto`.
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use export::{export_net, ExportOptions, Exported};
pub use import::{import_model, Imported};

use crate::{Error, Result};
use prost::Message;
use proto::attribute_proto::AttributeType;
use proto::tensor_proto::DataType;
use proto::{AttributeProto, ModelProto, TensorProto};
use std::path::Path;

/// The opsets `crema export --onnx` writes (every operator it emits has this form from 17 on).
pub const OPSETS: std::ops::RangeInclusive<i64> = 17..=21;

/// Reads an ONNX model file.
pub fn read_model(path: impl AsRef<Path>) -> Result<ModelProto> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let m = ModelProto::decode(bytes.as_slice())
        .map_err(|e| Error::format(path, format!("not a valid ONNX model (ModelProto): {e}")))?;
    if m.graph.is_none() {
        return Err(Error::format(path, "the ONNX model has no graph"));
    }
    Ok(m)
}

/// Writes an ONNX model file atomically.
pub fn write_model(path: impl AsRef<Path>, m: &ModelProto) -> Result<()> {
    crate::caffe::write_atomic(path.as_ref(), &m.encode_to_vec())
}

/// An INT attribute.
pub(crate) fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// A FLOAT attribute.
pub(crate) fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

/// An INTS attribute.
pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float tensor (raw little-endian data).
pub(crate) fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int64 tensor (raw little-endian data).
pub(crate) fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// The values of a numeric tensor as f64 (float, double, int32/64 and narrower ints), checked
/// against its dims; `what` names it in errors.
pub(crate) fn tensor_values(t: &TensorProto, what: &str) -> std::result::Result<Vec<f64>, String> {
    let mut count: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format!("{what}: negative dimension {d}"))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| format!("{what}: dimensions {:?} overflow", t.dims))?;
    }
    if t.data_location == Some(proto::tensor_proto::DataLocation::External as i32) {
        return Err(format!(
            "{what}: the tensor is stored in an external file, which crema does not read"
        ));
    }
    let dt = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let width = |dt: i32| -> Option<usize> {
        match DataType::try_from(dt).ok()? {
            DataType::Float | DataType::Int32 | DataType::Uint32 => Some(4),
            DataType::Double | DataType::Int64 | DataType::Uint64 => Some(8),
            DataType::Int8 | DataType::Uint8 | DataType::Bool => Some(1),
            DataType::Int16 | DataType::Uint16 => Some(2),
            _ => None,
        }
    };
    let Some(w) = width(dt) else {
        return Err(format!(
            "{what}: data type {dt} is not supported (float, double or integer)"
        ));
    };
    let vals: Vec<f64> = match raw {
        Some(r) => {
            if r.len() != count * w {
                return Err(format!(
                    "{what}: raw data has {} bytes, dims {:?} need {}",
                    r.len(),
                    t.dims,
                    count * w
                ));
            }
            r.chunks_exact(w)
                .map(|c| {
                    let mut b8 = [0u8; 8];
                    b8[..w].copy_from_slice(c);
                    match DataType::try_from(dt).unwrap_or(DataType::Undefined) {
                        DataType::Float => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        DataType::Double => f64::from_le_bytes(b8),
                        DataType::Int64 => i64::from_le_bytes(b8) as f64,
                        DataType::Uint64 => u64::from_le_bytes(b8) as f64,
                        DataType::Int32 => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        DataType::Uint32 => f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        DataType::Int16 => f64::from(i16::from_le_bytes([c[0], c[1]])),
                        DataType::Uint16 => f64::from(u16::from_le_bytes([c[0], c[1]])),
                        DataType::Int8 => f64::from(c[0] as i8),
                        _ => f64::from(c[0]),
                    }
                })
                .collect()
        }
        None => match DataType::try_from(dt).unwrap_or(DataType::Undefined) {
            DataType::Float => t.float_data.iter().map(|&v| f64::from(v)).collect(),
            DataType::Double => t.double_data.clone(),
            DataType::Int64 => t.int64_data.iter().map(|&v| v as f64).collect(),
            DataType::Uint64 | DataType::Uint32 => {
                t.uint64_data.iter().map(|&v| v as f64).collect()
            }
            _ => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        },
    };
    if vals.len() != count {
        return Err(format!(
            "{what}: {} values, dims {:?} need {count}",
            vals.len(),
            t.dims
        ));
    }
    Ok(vals)
}
