//! A built net (deploy phase, weights loaded) as an ONNX model. Blob shapes come from the built
//! net, so Caffe's shape rules (ceil pooling, crop offsets, slice points) become explicit
//! attributes; with `dynamic_batch` / `dynamic_spatial` the input dims are symbolic and a layer
//! whose ONNX form needs a fixed size there is refused, naming the layer.

use super::proto::tensor_shape_proto::{dimension, Dimension};
use super::proto::{
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::{attr_f, attr_i, attr_ints, tensor_f32, tensor_i64};
use crate::net::LayerEntry;
use crate::proto::eltwise_parameter::EltwiseOp;
use crate::proto::lrn_parameter::NormRegion;
use crate::proto::pooling_parameter::{PoolMethod, RoundMode};
use crate::{Blob, Error, Net, Result};
use std::collections::{HashMap, HashSet};

mod ops;
use ops::{eltwise, inner_product, lstm, pooling, reshape_to, scale_bias};

/// What to write.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// ONNX opset (17 ..= 21).
    pub opset: i64,
    /// Symbolic batch dimension (`N`) on every input.
    pub dynamic_batch: bool,
    /// Symbolic spatial dimensions (`H`, `W`) on 4-D inputs (fully convolutional nets).
    pub dynamic_spatial: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: 17,
            dynamic_batch: false,
            dynamic_spatial: false,
        }
    }
}

/// The model and what the user should know about it.
pub struct Exported {
    pub model: ModelProto,
    /// Remarks (e.g. an LSTM's `cont` input dropped), one line each.
    pub notes: Vec<String>,
}

struct Ctx<'a> {
    net: &'a Net,
    opts: &'a ExportOptions,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    notes: Vec<String>,
    /// ONNX value name of each blob (by index; crema may give an in-place top a new index).
    cur: Vec<String>,
    /// By blob name: writes left (the last one gets the blob's own name), whether an Input
    /// layer writes it (then the first one does), writes so far.
    writes_left: HashMap<String, usize>,
    is_input: HashSet<String>,
    version: HashMap<String, usize>,
}

fn err(l: &LayerEntry, msg: impl Into<String>) -> Error {
    Error::Layer {
        layer: l.name.clone(),
        ty: l.ty.clone(),
        message: msg.into(),
    }
}

fn dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

/// ONNX's IR version for an opset.
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

impl<'a> Ctx<'a> {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<super::proto::AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
    }
    fn init_f32(&mut self, name: String, d: &[i64], data: &[f32]) -> String {
        self.inits.push(tensor_f32(&name, d, data));
        name
    }
    fn init_i64(&mut self, name: String, data: &[i64]) -> String {
        self.inits
            .push(tensor_i64(&name, &[data.len() as i64], data));
        name
    }
    fn input(&self, l: &LayerEntry, k: usize) -> String {
        self.cur[l.bottom[k]].clone()
    }
    fn shape(&self, blob: usize) -> &'a [usize] {
        &self.net.blob_at(blob).shape
    }
    /// The next ONNX name of blob `b` (written by a layer now).
    fn define(&mut self, b: usize) -> String {
        let base = self.net.blob_name(b).to_string();
        let version = self.version.entry(base.clone()).or_default();
        *version += 1;
        let version = *version;
        let left = self.writes_left.entry(base.clone()).or_default();
        *left = left.saturating_sub(1);
        let input = self.is_input.contains(&base);
        let name = if (input && version == 1) || (!input && *left == 0) {
            base
        } else {
            format!("{base}__{version}")
        };
        self.cur[b] = name.clone();
        name
    }
    fn param(&self, l: &LayerEntry, k: usize) -> Result<&'a Blob> {
        let net = self.net;
        l.params
            .get(k)
            .map(|&p| &net.params()[p])
            .ok_or_else(|| err(l, format!("has no learnable blob {k}")))
    }
    /// A fixed shape for Reshape: the batch dim copied (0) when it is dynamic; refused when the
    /// spatial dims are dynamic.
    fn fixed_shape(&self, l: &LayerEntry, shape: &[usize]) -> Result<Vec<i64>> {
        if self.opts.dynamic_spatial {
            return Err(err(
                l,
                "needs fixed sizes in ONNX; export without dynamic spatial dims",
            ));
        }
        let mut d = dims(shape);
        if self.opts.dynamic_batch && !d.is_empty() {
            d[0] = 0;
        }
        Ok(d)
    }
    fn require_static(&self, l: &LayerEntry, axis: usize) -> Result<()> {
        if self.opts.dynamic_spatial || (self.opts.dynamic_batch && axis == 0) {
            return Err(err(
                l,
                format!("works on axis {axis}, whose size is dynamic in this export; export with fixed sizes"),
            ));
        }
        Ok(())
    }
    /// `data` shaped to broadcast against a blob of rank `rank` from `axis` on.
    fn broadcast_init(&mut self, name: String, p: &Blob, axis: usize, rank: usize) -> String {
        let mut d = dims(&p.shape);
        while axis + d.len() < rank {
            d.push(1);
        }
        self.init_f32(name, &d, &p.data)
    }
}

/// Exports a built net (weights loaded) as an ONNX model.
pub fn export_net(net: &Net, opts: &ExportOptions) -> Result<Exported> {
    if !super::OPSETS.contains(&opts.opset) {
        return Err(Error::Config(format!(
            "--opset {}: crema writes opsets {} to {}",
            opts.opset,
            super::OPSETS.start(),
            super::OPSETS.end()
        )));
    }
    let nb = net.blobs().count();
    let mut writes = HashMap::new();
    let mut is_input = HashSet::new();
    for l in net.layers() {
        for &t in &l.top {
            let name = net.blob_name(t).to_string();
            *writes.entry(name.clone()).or_default() += 1;
            if l.ty == "Input" {
                is_input.insert(name);
            }
        }
    }
    let mut c = Ctx {
        net,
        opts,
        nodes: Vec::new(),
        inits: Vec::new(),
        notes: Vec::new(),
        cur: (0..nb).map(|b| net.blob_name(b).to_string()).collect(),
        writes_left: writes,
        is_input,
        version: HashMap::new(),
    };
    let mut inputs = Vec::new();
    for l in net.layers() {
        if l.ty == "Input" {
            for &t in &l.top {
                let name = c.define(t);
                inputs.push(value_info(&name, c.shape(t), opts));
            }
            continue;
        }
        layer(&mut c, l)?;
    }
    let outputs: Vec<ValueInfoProto> = net
        .output_names()
        .iter()
        .filter_map(|n| net.blob_index(n))
        .map(|b| {
            let name = c.cur[b].clone();
            let fixed = !opts.dynamic_batch && !opts.dynamic_spatial;
            value_info(&name, if fixed { c.shape(b) } else { &[] }, opts)
        })
        .collect();
    // Inputs no node reads (an LSTM's `cont`) are left out.
    let used: HashSet<&str> = c
        .nodes
        .iter()
        .flat_map(|n| n.input.iter().map(|s| s.as_str()))
        .chain(outputs.iter().map(|o| o.name()))
        .collect();
    let mut kept = Vec::new();
    for i in inputs {
        if used.contains(i.name()) {
            kept.push(i);
        } else {
            c.notes.push(format!(
                "input `{}` is not used by the ONNX graph and is left out",
                i.name()
            ));
        }
    }
    let graph = GraphProto {
        node: c.nodes,
        name: Some(net.name.clone()),
        initializer: c.inits,
        input: kept,
        output: outputs,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opts.opset),
        }],
        producer_name: Some("crema".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(Exported {
        model,
        notes: c.notes,
    })
}

/// A float tensor value; an empty `shape` leaves the shape out (dynamic outputs).
fn value_info(name: &str, shape: &[usize], opts: &ExportOptions) -> ValueInfoProto {
    let dim: Vec<Dimension> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let sym = match i {
                0 if opts.dynamic_batch => Some("N"),
                2 if opts.dynamic_spatial && shape.len() == 4 => Some("H"),
                3 if opts.dynamic_spatial && shape.len() == 4 => Some("W"),
                _ => None,
            };
            Dimension {
                value: Some(match sym {
                    Some(s) => dimension::Value::DimParam(s.into()),
                    None => dimension::Value::DimValue(d as i64),
                }),
                ..Default::default()
            }
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(super::proto::tensor_proto::DataType::Float as i32),
                shape: (!shape.is_empty()).then_some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One op on the layer's single bottom into its single top.
fn unary(c: &mut Ctx, l: &LayerEntry, op: &str, attrs: Vec<super::proto::AttributeProto>) {
    let x = c.input(l, 0);
    let y = c.define(l.top[0]);
    c.node(op, &l.name, vec![x], vec![y], attrs);
}

fn layer(c: &mut Ctx, l: &LayerEntry) -> Result<()> {
    let p = &l.param;
    let name = l.name.as_str();
    let rank = l.bottom.first().map(|&b| c.shape(b).len()).unwrap_or(0);
    match l.ty.as_str() {
        "Convolution" | "Deconvolution" => {
            let cp = p.convolution_param.clone().unwrap_or_default();
            let s = crate::layers::base_conv::ConvSpec::parse(&cp, true)
                .map_err(|e| err(l, e.to_string()))?;
            if rank < 3 || s.axis != 1 {
                return Err(err(
                    l,
                    "only convolution over N x C x spatial... (axis 1) has an ONNX form here",
                ));
            }
            // ONNX Conv/ConvTranspose are N-D: one value per spatial axis.
            let s = s.for_axes(rank - 2).map_err(|e| err(l, e.to_string()))?;
            let x = c.input(l, 0);
            let w = c.param(l, 0)?;
            let mut ins = vec![x, c.init_f32(format!("{name}/w"), &dims(&w.shape), &w.data)];
            if s.bias_term {
                let b = c.param(l, 1)?;
                ins.push(c.init_f32(format!("{name}/b"), &dims(&b.shape), &b.data));
            }
            let k = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
            let pads = [k(&s.pad), k(&s.pad)].concat();
            let attrs = vec![
                attr_ints("kernel_shape", &k(&s.kernel)),
                attr_ints("strides", &k(&s.stride)),
                attr_ints("dilations", &k(&s.dilation)),
                attr_ints("pads", &pads),
                attr_i("group", s.group as i64),
            ];
            let y = c.define(l.top[0]);
            let op = if l.ty == "Convolution" {
                "Conv"
            } else {
                "ConvTranspose"
            };
            c.node(op, name, ins, vec![y], attrs);
        }
        "Pooling" => pooling(c, l)?,
        "LRN" => {
            let lp = p.lrn_param.unwrap_or_default();
            if lp.norm_region() != NormRegion::AcrossChannels {
                return Err(err(
                    l,
                    "WITHIN_CHANNEL LRN has no ONNX operator; only ACROSS_CHANNELS exports",
                ));
            }
            unary(
                c,
                l,
                "LRN",
                vec![
                    attr_i("size", i64::from(lp.local_size())),
                    attr_f("alpha", lp.alpha()),
                    attr_f("beta", lp.beta()),
                    attr_f("bias", lp.k()),
                ],
            );
        }
        "BatchNorm" => {
            let bp = p.batch_norm_param.unwrap_or_default();
            if bp.use_global_stats == Some(false) {
                return Err(err(l, "use_global_stats: false normalizes with batch statistics, which ONNX inference does not"));
            }
            let (m, v, sf) = (c.param(l, 0)?, c.param(l, 1)?, c.param(l, 2)?);
            let f = match sf.data.first() {
                Some(&s) if s != 0.0 => 1.0 / s,
                _ => 0.0,
            };
            let ch = m.count() as i64;
            let mean: Vec<f32> = m.data.iter().map(|x| x * f).collect();
            let var: Vec<f32> = v.data.iter().map(|x| x * f).collect();
            let x = c.input(l, 0);
            let ins = vec![
                x,
                c.init_f32(format!("{name}/scale"), &[ch], &vec![1.0; ch as usize]),
                c.init_f32(format!("{name}/bias"), &[ch], &vec![0.0; ch as usize]),
                c.init_f32(format!("{name}/mean"), &[ch], &mean),
                c.init_f32(format!("{name}/var"), &[ch], &var),
            ];
            let y = c.define(l.top[0]);
            c.node(
                "BatchNormalization",
                name,
                ins,
                vec![y],
                vec![attr_f("epsilon", bp.eps())],
            );
        }
        "Scale" | "Bias" => scale_bias(c, l)?,
        "ReLU" => {
            let slope = p.relu_param.unwrap_or_default().negative_slope();
            if slope == 0.0 {
                unary(c, l, "Relu", vec![]);
            } else {
                unary(c, l, "LeakyRelu", vec![attr_f("alpha", slope)]);
            }
        }
        "PReLU" => {
            let s = c.param(l, 0)?;
            let slope = if s.count() == 1 {
                c.init_f32(format!("{name}/slope"), &[1], &s.data)
            } else {
                c.broadcast_init(format!("{name}/slope"), s, 1, rank)
            };
            let x = c.input(l, 0);
            let y = c.define(l.top[0]);
            c.node("PRelu", name, vec![x, slope], vec![y], vec![]);
        }
        "Sigmoid" => unary(c, l, "Sigmoid", vec![]),
        "TanH" => unary(c, l, "Tanh", vec![]),
        "AbsVal" => unary(c, l, "Abs", vec![]),
        "BNLL" => unary(c, l, "Softplus", vec![]),
        "ELU" => unary(
            c,
            l,
            "Elu",
            vec![attr_f("alpha", p.elu_param.unwrap_or_default().alpha())],
        ),
        "Power" => {
            let pp = p.power_param.unwrap_or_default();
            let mut x = c.input(l, 0);
            let steps = [
                ("Mul", pp.scale(), 1.0),
                ("Add", pp.shift(), 0.0),
                ("Pow", pp.power(), 1.0),
            ];
            let active: Vec<_> = steps.iter().filter(|s| s.1 != s.2).collect();
            if active.is_empty() {
                unary(c, l, "Identity", vec![]);
            }
            for (i, (op, v, _)) in active.iter().enumerate() {
                let k = c.init_f32(format!("{name}/{op}"), &[], &[*v]);
                let y = if i + 1 == active.len() {
                    c.define(l.top[0])
                } else {
                    format!("{name}/{op}_out")
                };
                c.node(
                    op,
                    &format!("{name}/{op}"),
                    vec![x, k],
                    vec![y.clone()],
                    vec![],
                );
                x = y;
            }
        }
        "InnerProduct" => inner_product(c, l)?,
        "Softmax" => {
            let axis =
                crate::blob::canonical_axis(p.softmax_param.unwrap_or_default().axis(), rank)?;
            unary(c, l, "Softmax", vec![attr_i("axis", axis as i64)]);
        }
        "Concat" => {
            let cp = p.concat_param.unwrap_or_default();
            let axis = if cp.axis.is_none() && cp.concat_dim.is_some() {
                cp.concat_dim() as usize
            } else {
                crate::blob::canonical_axis(cp.axis(), rank)?
            };
            let ins = (0..l.bottom.len()).map(|k| c.input(l, k)).collect();
            let y = c.define(l.top[0]);
            c.node(
                "Concat",
                name,
                ins,
                vec![y],
                vec![attr_i("axis", axis as i64)],
            );
        }
        "Slice" => {
            let sp = p.slice_param.clone().unwrap_or_default();
            let axis = if sp.axis.is_none() && sp.slice_dim.is_some() {
                sp.slice_dim() as usize
            } else {
                crate::blob::canonical_axis(sp.axis(), rank)?
            };
            c.require_static(l, axis)?;
            let sizes: Vec<i64> = l.top.iter().map(|&t| c.shape(t)[axis] as i64).collect();
            let x = c.input(l, 0);
            let split = c.init_i64(format!("{name}/split"), &sizes);
            let ys = l.top.iter().map(|&t| c.define(t)).collect();
            c.node(
                "Split",
                name,
                vec![x, split],
                ys,
                vec![attr_i("axis", axis as i64)],
            );
        }
        "Eltwise" => eltwise(c, l)?,
        "Crop" => {
            let cp = p.crop_param.clone().unwrap_or_default();
            let axis = crate::blob::canonical_axis(cp.axis(), rank)?;
            let out = c.shape(l.top[0]).to_vec();
            let (mut starts, mut ends, mut axes) = (vec![], vec![], vec![]);
            for (i, &size) in out.iter().enumerate().skip(axis) {
                c.require_static(l, i)?;
                let off = match cp.offset.as_slice() {
                    [] => 0,
                    [o] => *o,
                    v => v.get(i - axis).copied().unwrap_or(0),
                } as i64;
                starts.push(off);
                ends.push(off + size as i64);
                axes.push(i as i64);
            }
            let x = c.input(l, 0);
            let ins = vec![
                x,
                c.init_i64(format!("{name}/starts"), &starts),
                c.init_i64(format!("{name}/ends"), &ends),
                c.init_i64(format!("{name}/axes"), &axes),
            ];
            let y = c.define(l.top[0]);
            c.node("Slice", name, ins, vec![y], vec![]);
        }
        "Flatten" => {
            let fp = p.flatten_param.unwrap_or_default();
            if fp.axis() == 1 && fp.end_axis() == -1 {
                unary(c, l, "Flatten", vec![attr_i("axis", 1)]);
            } else {
                let out = c.shape(l.top[0]).to_vec();
                reshape_to(c, l, &out)?;
            }
        }
        "Reshape" => {
            let rp = p.reshape_param.clone().unwrap_or_default();
            if rp.axis() == 0 && rp.num_axes() == -1 {
                let d: Vec<i64> = rp.shape.clone().unwrap_or_default().dim;
                let x = c.input(l, 0);
                let s = c.init_i64(format!("{name}/shape"), &d);
                let y = c.define(l.top[0]);
                c.node("Reshape", name, vec![x, s], vec![y], vec![]);
            } else {
                let out = c.shape(l.top[0]).to_vec();
                reshape_to(c, l, &out)?;
            }
        }
        "Dropout" | "Split" => {
            let x = c.input(l, 0);
            let ys: Vec<String> = l.top.iter().map(|&t| c.define(t)).collect();
            for (k, y) in ys.into_iter().enumerate() {
                c.node(
                    "Identity",
                    &format!("{name}/{k}"),
                    vec![x.clone()],
                    vec![y],
                    vec![],
                );
            }
        }
        "Embed" => {
            let ep = p.embed_param.clone().unwrap_or_default();
            let w = c.param(l, 0)?;
            let x = c.input(l, 0);
            let wn = c.init_f32(format!("{name}/w"), &dims(&w.shape), &w.data);
            let idx = format!("{name}/index");
            c.node(
                "Cast",
                &format!("{name}/cast"),
                vec![x],
                vec![idx.clone()],
                vec![attr_i("to", 7)],
            );
            if ep.bias_term() {
                let b = c.param(l, 1)?;
                let bn = c.init_f32(format!("{name}/b"), &dims(&b.shape), &b.data);
                let g = format!("{name}/gather");
                c.node(
                    "Gather",
                    name,
                    vec![wn, idx],
                    vec![g.clone()],
                    vec![attr_i("axis", 0)],
                );
                let y = c.define(l.top[0]);
                c.node("Add", &format!("{name}/bias"), vec![g, bn], vec![y], vec![]);
            } else {
                let y = c.define(l.top[0]);
                c.node(
                    "Gather",
                    name,
                    vec![wn, idx],
                    vec![y],
                    vec![attr_i("axis", 0)],
                );
            }
        }
        "LSTM" => lstm(c, l)?,
        other => {
            return Err(err(
                l,
                format!("layer type {other} has no ONNX form in crema's exporter"),
            ))
        }
    }
    Ok(())
}
