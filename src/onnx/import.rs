//! An ONNX graph (from `crema export --onnx` or PyTorch's exporter, same operator set) as a
//! crema model: a deploy `NetParameter` and the weights as a caffemodel `NetParameter`. ONNX
//! value names become blob names. After the layers are made, the net is built once to check that
//! each pooling's output size (Caffe's rounding) equals the ONNX one; a pooling that needs FLOOR
//! rounding gets it.

use super::proto::{
    tensor_shape_proto::dimension, type_proto, AttributeProto, ModelProto, NodeProto,
};
use super::tensor_values;
use crate::proto::eltwise_parameter::EltwiseOp;
use crate::proto::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::*;
use crate::{Error, Result};
use std::collections::HashMap;

mod ops;
use ops::node;

/// The imported model.
pub struct Imported {
    /// The deploy net (no blobs).
    pub net: NetParameter,
    /// The learnable blobs by layer (a caffemodel).
    pub weights: NetParameter,
    /// Remarks for the user (an LSTM's `cont` input added), one line each.
    pub notes: Vec<String>,
}

struct Const {
    dims: Vec<i64>,
    vals: Vec<f64>,
}

impl Const {
    fn f32(&self) -> Vec<f32> {
        self.vals.iter().map(|&v| v as f32).collect()
    }
    fn blob(&self, dims: &[i64]) -> BlobProto {
        BlobProto {
            shape: Some(BlobShape { dim: dims.to_vec() }),
            data: self.f32(),
            ..Default::default()
        }
    }
}

/// An ONNX pooling whose Caffe layer must give the same output size (checked once built).
struct PoolCheck {
    layer: usize,
    node: String,
    kernel: [i64; 2],
    stride: [i64; 2],
    pads: [i64; 4],
    ceil: bool,
}

struct Ctx<'a> {
    label: &'a str,
    consts: HashMap<String, Const>,
    rank: HashMap<String, usize>,
    /// ONNX value -> blob name (Identity, Cast, Squeeze and fused ops pass a blob through).
    alias: HashMap<String, String>,
    /// Values padded by a Pad node (for AveragePool): source value and spatial pads.
    padded: HashMap<String, (String, [i64; 2])>,
    /// Values that are a layer's top whose bias may still be fused in: layer index.
    open_bias: HashMap<String, usize>,
    consumers: HashMap<String, usize>,
    layers: Vec<LayerParameter>,
    blobs: Vec<Vec<BlobProto>>,
    pools: Vec<PoolCheck>,
    opset: i64,
    /// Fixed shapes where the importer knows them (graph inputs, Embed and LSTM outputs): an
    /// LSTM's `cont` input is sized from its input's T and N.
    dims: HashMap<String, Vec<i64>>,
    /// LSTM outputs Y (T x 1 x N x H in ONNX, T x N x H in Caffe) by LSTM layer: their Squeeze
    /// of axis 1 is the layer's top itself.
    lstm_y: HashMap<String, usize>,
    notes: Vec<String>,
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}
fn attr_i(n: &NodeProto, name: &str, d: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(d)
}
fn attr_f(n: &NodeProto, name: &str, d: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(d)
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

impl Ctx<'_> {
    fn err(&self, n: &NodeProto, msg: impl std::fmt::Display) -> Error {
        Error::format(
            self.label,
            format!("node `{}` (op {}): {msg}", n.name(), n.op_type()),
        )
    }
    fn blob(&self, v: &str) -> String {
        self.alias.get(v).cloned().unwrap_or_else(|| v.to_string())
    }
    fn rank_of(&self, v: &str) -> usize {
        self.rank.get(v).copied().unwrap_or(0)
    }
    fn konst(&self, n: &NodeProto, k: usize) -> Result<&Const> {
        let v = n.input.get(k).map(|s| s.as_str()).unwrap_or("");
        self.consts.get(v).ok_or_else(|| {
            self.err(
                n,
                format!("input {k} (`{v}`) must be a constant (an initializer)"),
            )
        })
    }
    fn opt_konst(&self, n: &NodeProto, k: usize) -> Option<&Const> {
        n.input
            .get(k)
            .filter(|s| !s.is_empty())
            .and_then(|v| self.consts.get(v))
    }
    fn push(
        &mut self,
        n: &NodeProto,
        ty: &str,
        bottoms: &[usize],
        blobs: Vec<BlobProto>,
        f: impl FnOnce(&mut LayerParameter),
    ) -> usize {
        let mut name = if n.name().is_empty() {
            format!("{}_{}", n.op_type(), self.layers.len())
        } else {
            n.name().to_string()
        };
        if self.layers.iter().any(|l| l.name() == name) {
            name = format!("{name}_{}", self.layers.len());
        }
        let mut lp = LayerParameter {
            name: Some(name),
            r#type: Some(ty.into()),
            bottom: bottoms.iter().map(|&k| self.blob(&n.input[k])).collect(),
            top: n.output.iter().take(1).cloned().collect(),
            ..Default::default()
        };
        f(&mut lp);
        self.layers.push(lp);
        self.blobs.push(blobs);
        self.layers.len() - 1
    }
    fn set_rank(&mut self, n: &NodeProto, r: usize) {
        for o in &n.output {
            self.rank.insert(o.clone(), r);
        }
    }
}

fn two(v: Option<Vec<i64>>, d: i64, c: &Ctx, n: &NodeProto, what: &str) -> Result<[i64; 2]> {
    match v.as_deref() {
        None => Ok([d, d]),
        Some([a, b]) => Ok([*a, *b]),
        Some(other) => Err(c.err(
            n,
            format!("{what} {other:?}: only 2-D (two values) is supported"),
        )),
    }
}

/// Symmetric `[b0, b1, e0, e1]` pads as Caffe's `[p0, p1]`.
fn sym_pads(c: &Ctx, n: &NodeProto) -> Result<[i64; 2]> {
    let p = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
    match p.as_slice() {
        [a, b, e0, e1] if a == e0 && b == e1 => Ok([*a, *b]),
        _ => Err(c.err(
            n,
            format!("pads {p:?} are not symmetric, which Caffe's layer cannot express"),
        )),
    }
}

fn check_auto_pad(c: &Ctx, n: &NodeProto) -> Result<()> {
    match attr(n, "auto_pad").and_then(|a| a.s.as_deref()) {
        None | Some(b"NOTSET") => Ok(()),
        Some(s) => Err(c.err(
            n,
            format!(
                "auto_pad {} is not supported; give explicit pads",
                String::from_utf8_lossy(s)
            ),
        )),
    }
}

/// Imports an ONNX model; `label` (the file) names it in errors.
pub fn import_model(m: &ModelProto, label: &str) -> Result<Imported> {
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::format(label, "the ONNX model has no graph"))?;
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map(|o| o.version())
        .unwrap_or(1);
    let mut c = Ctx {
        label,
        consts: HashMap::new(),
        rank: HashMap::new(),
        alias: HashMap::new(),
        padded: HashMap::new(),
        open_bias: HashMap::new(),
        consumers: HashMap::new(),
        layers: Vec::new(),
        blobs: Vec::new(),
        pools: Vec::new(),
        opset,
        dims: HashMap::new(),
        lstm_y: Default::default(),
        notes: Vec::new(),
    };
    for t in &g.initializer {
        let vals = tensor_values(t, &format!("initializer `{}`", t.name()))
            .map_err(|e| Error::format(label, e))?;
        c.consts.insert(
            t.name().to_string(),
            Const {
                dims: t.dims.clone(),
                vals,
            },
        );
    }
    for n in &g.node {
        for i in &n.input {
            *c.consumers.entry(i.clone()).or_default() += 1;
        }
    }
    // Inputs: one Input layer.
    let mut input = LayerParameter {
        name: Some("input".into()),
        r#type: Some("Input".into()),
        input_param: Some(InputParameter::default()),
        ..Default::default()
    };
    for vi in g.input.iter().filter(|v| !c.consts.contains_key(v.name())) {
        let Some(type_proto::Value::TensorType(tt)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(Error::format(
                label,
                format!("input `{}` is not a tensor", vi.name()),
            ));
        };
        let mut dim = Vec::new();
        for (i, d) in tt.shape.clone().unwrap_or_default().dim.iter().enumerate() {
            match &d.value {
                Some(dimension::Value::DimValue(v)) if *v > 0 => dim.push(*v),
                _ if i == 0 => dim.push(1),
                _ => {
                    return Err(Error::format(
                        label,
                        format!("input `{}`: dimension {i} is symbolic; crema needs fixed sizes after the batch axis", vi.name()),
                    ))
                }
            }
        }
        c.rank.insert(vi.name().to_string(), dim.len());
        c.dims.insert(vi.name().to_string(), dim.clone());
        input.top.push(vi.name().to_string());
        if let Some(ip) = input.input_param.as_mut() {
            ip.shape.push(BlobShape { dim });
        }
    }
    c.layers.push(input);
    c.blobs.push(Vec::new());
    for n in &g.node {
        node(&mut c, n)?;
    }
    let mut net = NetParameter {
        name: Some(g.name().to_string())
            .filter(|s| !s.is_empty())
            .or(Some("imported".into())),
        layer: c.layers,
        ..Default::default()
    };
    let mut weights = net.clone();
    for (l, b) in weights.layer.iter_mut().zip(c.blobs) {
        l.blobs = b;
    }
    weights.layer.retain(|l| !l.blobs.is_empty());
    fix_pool_rounding(&mut net, &c.pools, label)?;
    for l in &mut weights.layer {
        if let Some(src) = net.layer.iter().find(|x| x.name == l.name) {
            l.pooling_param = src.pooling_param;
        }
    }
    Ok(Imported {
        net,
        weights,
        notes: c.notes,
    })
}

/// Builds the net and gives every pooling the rounding whose output size is ONNX's.
fn fix_pool_rounding(net: &mut NetParameter, pools: &[PoolCheck], label: &str) -> Result<()> {
    for _round in 0..=pools.len() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let built = crate::Net::for_phase(net, Phase::Test, &mut rng)?;
        let mut changed = false;
        for pc in pools {
            let lp = &net.layer[pc.layer];
            let (Some(bi), Some(ti)) = (
                built.blob_index(&lp.bottom[0]),
                built.blob_index(&lp.top[0]),
            ) else {
                continue;
            };
            let (ins, outs) = (&built.blob_at(bi).shape, &built.blob_at(ti).shape);
            if ins.len() != 4 || outs.len() != 4 {
                continue;
            }
            let want: Vec<i64> = (0..2)
                .map(|i| {
                    let span = ins[2 + i] as i64 + pc.pads[i] + pc.pads[2 + i] - pc.kernel[i];
                    let s = pc.stride[i];
                    (if pc.ceil {
                        (span + s - 1).div_euclid(s)
                    } else {
                        span.div_euclid(s)
                    }) + 1
                })
                .collect();
            let got = [outs[2] as i64, outs[3] as i64];
            if want != got {
                let pp = net.layer[pc.layer]
                    .pooling_param
                    .get_or_insert_with(Default::default);
                if pp.round_mode() == RoundMode::Floor {
                    return Err(Error::format(
                        label,
                        format!("node `{}`: its output size {want:?} cannot be had from a Caffe pooling (which gives {got:?})", pc.node),
                    ));
                }
                pp.set_round_mode(RoundMode::Floor);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
    }
    Ok(())
}

/// Add / Mul / Sum / Max: a bias fused into the layer before it, a Scale / Bias / Power with a
/// constant, or an Eltwise of tensors.
fn binary(c: &mut Ctx, n: &NodeProto, r0: usize) -> Result<()> {
    let op = n.op_type();
    let out0 = n.output[0].clone();
    let konst_at = n.input.iter().position(|i| c.consts.contains_key(i));
    if let Some(ki) = konst_at {
        if n.input.len() != 2 || !(op == "Add" || op == "Mul") {
            return Err(c.err(
                n,
                "a constant operand is supported only for binary Add / Mul",
            ));
        }
        let xi = 1 - ki;
        let x = n.input[xi].clone();
        let k = &c.consts[&n.input[ki]];
        let r = c.rank_of(&x);
        // A bias after MatMul / Gather.
        if op == "Add" {
            if let Some(&li) = c.open_bias.get(&x) {
                let lp = &c.layers[li];
                let no = lp
                    .inner_product_param
                    .as_ref()
                    .and_then(|p| p.num_output)
                    .or(lp.embed_param.as_ref().and_then(|p| p.num_output));
                if c.consumers.get(&x).copied() == Some(1)
                    && no.is_some_and(|no| k.vals.len() == no as usize)
                {
                    let b = k.blob(&[k.vals.len() as i64]);
                    c.blobs[li].push(b);
                    let lp = &mut c.layers[li];
                    if let Some(p) = lp.inner_product_param.as_mut() {
                        p.bias_term = Some(true);
                    }
                    if let Some(p) = lp.embed_param.as_mut() {
                        p.bias_term = Some(true);
                    }
                    lp.top = vec![out0.clone()];
                    c.rank.insert(out0, r);
                    return Ok(());
                }
            }
        }
        if k.vals.len() == 1 {
            let v = k.vals[0] as f32;
            c.push(n, "Power", &[xi], vec![], |l| {
                l.power_param = Some(if op == "Mul" {
                    PowerParameter {
                        scale: Some(v),
                        ..Default::default()
                    }
                } else {
                    PowerParameter {
                        shift: Some(v),
                        ..Default::default()
                    }
                });
            });
            c.set_rank(n, r);
            return Ok(());
        }
        // A per-channel constant: its dims right-aligned against x, trailing ones dropped.
        let mut d = k.dims.clone();
        while d.last() == Some(&1) {
            d.pop();
        }
        let lead = k.dims.len();
        if lead > r || d.is_empty() {
            return Err(c.err(
                n,
                format!(
                    "a constant of dims {:?} against a rank-{r} tensor has no Caffe form",
                    k.dims
                ),
            ));
        }
        let axis = (r - lead) as i32;
        let num_axes = d.len() as i32;
        let b = k.blob(&d);
        let is_mul = op == "Mul";
        c.push(
            n,
            if is_mul { "Scale" } else { "Bias" },
            &[xi],
            vec![b],
            |l| {
                if is_mul {
                    l.scale_param = Some(ScaleParameter {
                        axis: Some(axis),
                        num_axes: Some(num_axes),
                        ..Default::default()
                    });
                } else {
                    l.bias_param = Some(BiasParameter {
                        axis: Some(axis),
                        num_axes: Some(num_axes),
                        ..Default::default()
                    });
                }
            },
        );
        c.set_rank(n, r);
        return Ok(());
    }
    let operation = match op {
        "Mul" => EltwiseOp::Prod,
        "Max" => EltwiseOp::Max,
        _ => EltwiseOp::Sum,
    };
    let all: Vec<usize> = (0..n.input.len()).collect();
    c.push(n, "Eltwise", &all, vec![], |l| {
        l.eltwise_param = Some(EltwiseParameter {
            operation: Some(operation as i32),
            ..Default::default()
        });
    });
    c.set_rank(n, r0);
    Ok(())
}

/// ONNX Slice with constant, finite bounds on the trailing axes (steps 1) as Caffe's Crop, whose
/// reference shape comes from a DummyData blob (Crop reads only its sizes from `axis` on).
fn slice_as_crop(c: &mut Ctx, n: &NodeProto, r0: usize) -> Result<()> {
    let vals = |k: usize| -> Result<Vec<i64>> {
        Ok(c.konst(n, k)?.vals.iter().map(|&v| v as i64).collect())
    };
    let (starts, ends) = (vals(1)?, vals(2)?);
    let axes: Vec<i64> = match c.opt_konst(n, 3) {
        Some(k) => k
            .vals
            .iter()
            .map(|&v| v as i64)
            .map(|a| if a < 0 { a + r0 as i64 } else { a })
            .collect(),
        None => (0..starts.len() as i64).collect(),
    };
    let steps_one = c
        .opt_konst(n, 4)
        .is_none_or(|k| k.vals.iter().all(|&v| v == 1.0));
    let first = axes.first().copied().unwrap_or(0);
    let trailing = !axes.is_empty()
        && axes.iter().enumerate().all(|(i, &a)| a == first + i as i64)
        && first + axes.len() as i64 == r0 as i64;
    let bounded = starts
        .iter()
        .zip(&ends)
        .all(|(&s, &e)| s >= 0 && e > s && e < i32::MAX as i64);
    if !steps_one
        || !trailing
        || !bounded
        || starts.len() != ends.len()
        || starts.len() != axes.len()
    {
        return Err(c.err(n, "only a Slice with steps 1 and finite, non-negative bounds on the trailing axes (a Caffe Crop) is supported"));
    }
    let mut dim = vec![1i64; first as usize];
    dim.extend(starts.iter().zip(&ends).map(|(s, e)| e - s));
    let refname = format!("{}/crop_shape", n.output[0]);
    let lname = format!(
        "{}/shape",
        if n.name().is_empty() {
            n.output[0].as_str()
        } else {
            n.name()
        }
    );
    c.layers.push(LayerParameter {
        name: Some(lname),
        r#type: Some("DummyData".into()),
        top: vec![refname.clone()],
        dummy_data_param: Some(DummyDataParameter {
            shape: vec![BlobShape { dim }],
            ..Default::default()
        }),
        ..Default::default()
    });
    c.blobs.push(Vec::new());
    let offset: Vec<u32> = starts.iter().map(|&v| v as u32).collect();
    let li = c.push(n, "Crop", &[0], vec![], |l| {
        l.crop_param = Some(CropParameter {
            axis: Some(first as i32),
            offset,
        });
    });
    c.layers[li].bottom.push(refname);
    c.set_rank(n, r0);
    Ok(())
}
