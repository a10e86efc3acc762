//! The importer's operator table: one ONNX node into Caffe layers.

use super::*;

pub(super) fn node(c: &mut Ctx, n: &NodeProto) -> Result<()> {
    if !n.domain().is_empty() && n.domain() != "ai.onnx" {
        return Err(c.err(
            n,
            format!("operators of domain `{}` are not supported", n.domain()),
        ));
    }
    let op = n.op_type();
    let x0 = n.input.first().cloned().unwrap_or_default();
    let r0 = c.rank_of(&x0);
    let out0 = n.output.first().cloned().unwrap_or_default();
    match op {
        "Constant" => {
            let t = attr(n, "value")
                .and_then(|a| a.t.as_ref())
                .ok_or_else(|| c.err(n, "only Constant with a tensor `value` is supported"))?;
            let vals = tensor_values(t, &format!("constant `{out0}`"))
                .map_err(|e| Error::format(c.label, e))?;
            c.consts.insert(
                out0,
                Const {
                    dims: t.dims.clone(),
                    vals,
                },
            );
        }
        "Conv" | "ConvTranspose" => {
            check_auto_pad(c, n)?;
            let w = c.konst(n, 1)?;
            if w.dims.len() != 4 {
                return Err(c.err(n, "only 2-D convolution (4-D weights) is supported"));
            }
            let wd = w.dims.clone();
            let mut blobs = vec![w.blob(&wd)];
            let group = attr_i(n, "group", 1);
            if let Some(b) = c.opt_konst(n, 2) {
                blobs.push(b.blob(&b.dims));
            }
            let k = two(attr_ints(n, "kernel_shape"), 0, c, n, "kernel_shape")?;
            let k = if k == [0, 0] { [wd[2], wd[3]] } else { k };
            let s = two(attr_ints(n, "strides"), 1, c, n, "strides")?;
            let d = two(attr_ints(n, "dilations"), 1, c, n, "dilations")?;
            let p = sym_pads(c, n)?;
            let transposed = op == "ConvTranspose";
            if transposed
                && (attr(n, "output_shape").is_some()
                    || attr_ints(n, "output_padding").is_some_and(|v| v.iter().any(|&x| x != 0)))
            {
                return Err(c.err(n, "output_shape / output_padding have no Caffe form"));
            }
            let num_output = if transposed { wd[1] * group } else { wd[0] };
            let bias = blobs.len() > 1;
            let u = |v: [i64; 2]| vec![v[0] as u32, v[1] as u32];
            c.push(
                n,
                if transposed {
                    "Deconvolution"
                } else {
                    "Convolution"
                },
                &[0],
                blobs,
                |l| {
                    l.convolution_param = Some(ConvolutionParameter {
                        num_output: Some(num_output as u32),
                        bias_term: Some(bias),
                        kernel_size: if k[0] == k[1] {
                            vec![k[0] as u32]
                        } else {
                            u(k)
                        },
                        stride: if s[0] == s[1] {
                            vec![s[0] as u32]
                        } else {
                            u(s)
                        },
                        pad: if p[0] == p[1] {
                            vec![p[0] as u32]
                        } else {
                            u(p)
                        },
                        dilation: if d[0] == d[1] {
                            vec![d[0] as u32]
                        } else {
                            u(d)
                        },
                        group: (group != 1).then_some(group as u32),
                        ..Default::default()
                    });
                },
            );
            c.set_rank(n, 4);
        }
        "MaxPool" | "AveragePool" => {
            check_auto_pad(c, n)?;
            if attr_ints(n, "dilations").is_some_and(|v| v.iter().any(|&x| x != 1)) {
                return Err(c.err(n, "dilated pooling has no Caffe form"));
            }
            if n.output.len() > 1 && c.consumers.get(&n.output[1]).copied().unwrap_or(0) > 0 {
                return Err(c.err(n, "the Indices output has no Caffe form"));
            }
            let k = two(attr_ints(n, "kernel_shape"), 0, c, n, "kernel_shape")?;
            let s = two(attr_ints(n, "strides"), 1, c, n, "strides")?;
            let mut pads: [i64; 4] = match attr_ints(n, "pads").as_deref() {
                None => [0; 4],
                Some([a, b, e, f]) => [*a, *b, *e, *f],
                Some(v) => {
                    return Err(c.err(n, format!("pads {v:?}: only 2-D pooling is supported")))
                }
            };
            let ave = op == "AveragePool";
            let include = attr_i(n, "count_include_pad", 0) == 1;
            let mut bottom_override = None;
            if let Some((from, p)) = c.padded.get(&x0).cloned() {
                if !ave || include || pads[0] != 0 || pads[1] != 0 {
                    return Err(c.err(n, "a Pad before pooling folds only into AveragePool with count_include_pad 0 and no begin pads"));
                }
                pads = [p[0], p[1], pads[2] + p[0], pads[3] + p[1]];
                bottom_override = Some(from);
            } else if ave
                && !include
                && pads.iter().any(|&v| v != 0)
                && (pads[0] != 0 || pads[1] != 0)
            {
                return Err(c.err(n, "AveragePool with begin pads and count_include_pad 0 divides differently from Caffe (whose divisor counts the padding)"));
            }
            if pads[2] < pads[0] || pads[3] < pads[1] {
                return Err(c.err(
                    n,
                    format!("pads {pads:?}: end pads smaller than begin pads have no Caffe form"),
                ));
            }
            let ceil = attr_i(n, "ceil_mode", 0) == 1;
            if ave && include && pads[..2] != pads[2..] {
                return Err(c.err(
                    n,
                    "AveragePool with count_include_pad 1 matches Caffe only with symmetric pads",
                ));
            }
            let li = c.push(n, "Pooling", &[0], vec![], |l| {
                l.pooling_param = Some(PoolingParameter {
                    pool: Some(if ave {
                        PoolMethod::Ave
                    } else {
                        PoolMethod::Max
                    } as i32),
                    kernel_h: Some(k[0] as u32),
                    kernel_w: Some(k[1] as u32),
                    stride_h: Some(s[0] as u32),
                    stride_w: Some(s[1] as u32),
                    pad_h: Some(pads[0] as u32),
                    pad_w: Some(pads[1] as u32),
                    ..Default::default()
                });
            });
            if let Some(from) = bottom_override {
                c.layers[li].bottom = vec![c.blob(&from)];
            }
            c.pools.push(PoolCheck {
                layer: li,
                node: n.name().to_string(),
                kernel: k,
                stride: s,
                pads,
                ceil,
            });
            c.set_rank(n, 4);
        }
        "Pad" => {
            let mode = attr(n, "mode")
                .and_then(|a| a.s.clone())
                .unwrap_or_else(|| b"constant".to_vec());
            let p = c
                .konst(n, 1)?
                .vals
                .iter()
                .map(|&v| v as i64)
                .collect::<Vec<_>>();
            let zero = c
                .opt_konst(n, 2)
                .is_none_or(|k| k.vals.iter().all(|&v| v == 0.0));
            match p.as_slice() {
                [0, 0, a, b, 0, 0, e, f]
                    if mode == b"constant" && zero && a == e && b == f && n.input.len() < 4 =>
                {
                    c.padded.insert(out0.clone(), (x0.clone(), [*a, *b]));
                    c.rank.insert(out0, 4);
                }
                _ => {
                    return Err(c.err(
                        n,
                        "only a symmetric zero Pad of H and W feeding an AveragePool is supported",
                    ))
                }
            }
        }
        "GlobalMaxPool" | "GlobalAveragePool" => {
            let ave = op == "GlobalAveragePool";
            c.push(n, "Pooling", &[0], vec![], |l| {
                l.pooling_param = Some(PoolingParameter {
                    pool: Some(if ave {
                        PoolMethod::Ave
                    } else {
                        PoolMethod::Max
                    } as i32),
                    global_pooling: Some(true),
                    ..Default::default()
                });
            });
            c.set_rank(n, r0);
        }
        "LRN" => {
            let (size, alpha, beta, bias) = (
                attr_i(n, "size", 5),
                attr_f(n, "alpha", 1e-4),
                attr_f(n, "beta", 0.75),
                attr_f(n, "bias", 1.0),
            );
            c.push(n, "LRN", &[0], vec![], |l| {
                l.lrn_param = Some(LrnParameter {
                    local_size: Some(size as u32),
                    alpha: Some(alpha),
                    beta: Some(beta),
                    k: Some(bias),
                    ..Default::default()
                });
            });
            c.set_rank(n, r0);
        }
        "BatchNormalization" => {
            let (scale, bias, mean, var) = (
                c.konst(n, 1)?,
                c.konst(n, 2)?,
                c.konst(n, 3)?,
                c.konst(n, 4)?,
            );
            let ch = mean.vals.len() as i64;
            let blobs = vec![
                mean.blob(&[ch]),
                var.blob(&[ch]),
                BlobProto {
                    shape: Some(BlobShape { dim: vec![1] }),
                    data: vec![1.0],
                    ..Default::default()
                },
            ];
            let affine =
                scale.vals.iter().any(|&v| v != 1.0) || bias.vals.iter().any(|&v| v != 0.0);
            let sb = vec![scale.blob(&[ch]), bias.blob(&[ch])];
            let eps = attr_f(n, "epsilon", 1e-5);
            let li = c.push(n, "BatchNorm", &[0], blobs, |l| {
                l.batch_norm_param = Some(BatchNormParameter {
                    use_global_stats: Some(true),
                    eps: Some(eps),
                    ..Default::default()
                });
            });
            if affine {
                let top = c.layers[li].top.clone();
                let name = format!("{}/scale", c.layers[li].name());
                c.layers.push(LayerParameter {
                    name: Some(name),
                    r#type: Some("Scale".into()),
                    bottom: top.clone(),
                    top,
                    scale_param: Some(ScaleParameter {
                        bias_term: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                c.blobs.push(sb);
            }
            c.set_rank(n, r0);
        }
        "Relu" | "Sigmoid" | "Tanh" | "Abs" | "Softplus" => {
            let ty = match op {
                "Relu" => "ReLU",
                "Tanh" => "TanH",
                "Abs" => "AbsVal",
                "Softplus" => "BNLL",
                o => o,
            };
            c.push(n, ty, &[0], vec![], |_| {});
            c.set_rank(n, r0);
        }
        "LeakyRelu" => {
            let a = attr_f(n, "alpha", 0.01);
            c.push(n, "ReLU", &[0], vec![], |l| {
                l.relu_param = Some(ReLuParameter {
                    negative_slope: Some(a),
                    ..Default::default()
                })
            });
            c.set_rank(n, r0);
        }
        "Elu" => {
            let a = attr_f(n, "alpha", 1.0);
            c.push(n, "ELU", &[0], vec![], |l| {
                l.elu_param = Some(EluParameter { alpha: Some(a) })
            });
            c.set_rank(n, r0);
        }
        "PRelu" => {
            let s = c.konst(n, 1)?;
            let cnt = s.vals.len() as i64;
            let b = s.blob(&[cnt]);
            c.push(n, "PReLU", &[0], vec![b], |l| {
                l.prelu_param = Some(PReLuParameter {
                    channel_shared: Some(cnt == 1),
                    ..Default::default()
                });
            });
            c.set_rank(n, r0);
        }
        "Gemm" => {
            if attr_f(n, "alpha", 1.0) != 1.0
                || attr_f(n, "beta", 1.0) != 1.0
                || attr_i(n, "transA", 0) != 0
                || r0 != 2
            {
                return Err(c.err(n, "only Gemm with alpha = beta = 1, transA = 0 on a 2-D input (an InnerProduct) is supported"));
            }
            let w = c.konst(n, 1)?;
            let trans_b = attr_i(n, "transB", 0) == 1;
            let num_output = if trans_b { w.dims[0] } else { w.dims[1] };
            let mut blobs = vec![w.blob(&w.dims)];
            if let Some(b) = c.opt_konst(n, 2) {
                if b.vals.len() as i64 != num_output {
                    return Err(c.err(n, "the bias C must have one value per output"));
                }
                blobs.push(b.blob(&[num_output]));
            }
            let bias = blobs.len() > 1;
            c.push(n, "InnerProduct", &[0], blobs, |l| {
                l.inner_product_param = Some(InnerProductParameter {
                    num_output: Some(num_output as u32),
                    bias_term: Some(bias),
                    transpose: (!trans_b).then_some(true),
                    ..Default::default()
                });
            });
            c.set_rank(n, 2);
        }
        "MatMul" => {
            let w = c.konst(n, 1)?;
            if w.dims.len() != 2 || r0 < 2 {
                return Err(c.err(
                    n,
                    "only MatMul of a tensor by a constant matrix (an InnerProduct) is supported",
                ));
            }
            let num_output = w.dims[1];
            let blobs = vec![w.blob(&w.dims)];
            let li = c.push(n, "InnerProduct", &[0], blobs, |l| {
                l.inner_product_param = Some(InnerProductParameter {
                    num_output: Some(num_output as u32),
                    bias_term: Some(false),
                    transpose: Some(true),
                    axis: Some(r0 as i32 - 1),
                    ..Default::default()
                });
            });
            c.open_bias.insert(out0, li);
            c.set_rank(n, r0);
        }
        "Add" | "Mul" | "Sum" | "Max" => binary(c, n, r0)?,
        "Flatten" => {
            let axis = attr_i(n, "axis", 1);
            if axis != 1 {
                return Err(c.err(
                    n,
                    format!("Flatten axis {axis}: only axis 1 matches Caffe's Flatten"),
                ));
            }
            c.push(n, "Flatten", &[0], vec![], |_| {});
            c.set_rank(n, 2);
        }
        "Reshape" => {
            let s = c
                .konst(n, 1)?
                .vals
                .iter()
                .map(|&v| v as i64)
                .collect::<Vec<_>>();
            if attr_i(n, "allowzero", 0) != 0 {
                return Err(c.err(n, "allowzero 1 has no Caffe form"));
            }
            let r = s.len();
            if let Some(d) = c.dims.get(&x0).and_then(|d| reshaped(d, &s)) {
                c.dims.insert(out0.clone(), d);
            }
            c.push(n, "Reshape", &[0], vec![], |l| {
                l.reshape_param = Some(ReshapeParameter {
                    shape: Some(BlobShape { dim: s }),
                    ..Default::default()
                });
            });
            c.set_rank(n, r);
        }
        "Softmax" => {
            let axis = attr_i(n, "axis", if c.opset >= 13 { -1 } else { 1 });
            let a = if axis < 0 { axis + r0 as i64 } else { axis };
            if c.opset < 13 && a != r0 as i64 - 1 {
                return Err(c.err(n, "Softmax before opset 13 flattens from `axis`; only the last axis matches Caffe"));
            }
            c.push(n, "Softmax", &[0], vec![], |l| {
                l.softmax_param = Some(SoftmaxParameter {
                    axis: Some(a as i32),
                    ..Default::default()
                })
            });
            c.set_rank(n, r0);
        }
        "Concat" => {
            let axis = attr_i(n, "axis", 1);
            let a = if axis < 0 { axis + r0 as i64 } else { axis };
            let all: Vec<usize> = (0..n.input.len()).collect();
            c.push(n, "Concat", &all, vec![], |l| {
                l.concat_param = Some(ConcatParameter {
                    axis: Some(a as i32),
                    ..Default::default()
                })
            });
            c.set_rank(n, r0);
        }
        "Split" => {
            let axis = attr_i(n, "axis", 0);
            let a = if axis < 0 { axis + r0 as i64 } else { axis };
            let sizes: Vec<i64> = match c.opt_konst(n, 1) {
                Some(k) => k.vals.iter().map(|&v| v as i64).collect(),
                None => attr_ints(n, "split")
                    .ok_or_else(|| c.err(n, "Split needs explicit split sizes"))?,
            };
            let points: Vec<u32> = sizes
                .iter()
                .take(sizes.len().saturating_sub(1))
                .scan(0i64, |acc, s| {
                    *acc += s;
                    Some(*acc as u32)
                })
                .collect();
            let outs = n.output.clone();
            let li = c.push(n, "Slice", &[0], vec![], |l| {
                l.slice_param = Some(SliceParameter {
                    axis: Some(a as i32),
                    slice_point: points,
                    ..Default::default()
                })
            });
            c.layers[li].top = outs;
            c.set_rank(n, r0);
        }
        "Identity" | "Dropout" | "Cast" => {
            let b = c.blob(&x0);
            c.alias.insert(out0, b);
            c.set_rank(n, r0);
        }
        "Gather" => {
            let w = c.konst(n, 0)?;
            if attr_i(n, "axis", 0) != 0 || w.dims.len() != 2 || n.input.len() != 2 {
                return Err(c.err(
                    n,
                    "only Gather of rows of a constant matrix (an Embed) is supported",
                ));
            }
            let (input_dim, num_output) = (w.dims[0], w.dims[1]);
            let blobs = vec![w.blob(&w.dims)];
            let ri = c.rank_of(&n.input[1]);
            let li = c.push(n, "Embed", &[1], blobs, |l| {
                l.embed_param = Some(EmbedParameter {
                    num_output: Some(num_output as u32),
                    input_dim: Some(input_dim as u32),
                    bias_term: Some(false),
                    ..Default::default()
                });
            });
            if let Some(d) = c.dims.get(&n.input[1]).cloned() {
                c.dims.insert(out0.clone(), [d, vec![num_output]].concat());
            }
            c.open_bias.insert(out0, li);
            c.set_rank(n, ri + 1);
        }
        "Slice" => slice_as_crop(c, n, r0)?,
        "LSTM" => lstm(c, n)?,
        "Squeeze" => {
            let axes: Option<Vec<i64>> = match c.opt_konst(n, 1) {
                Some(k) => Some(k.vals.iter().map(|&v| v as i64).collect()),
                None => attr_ints(n, "axes"),
            };
            let Some(&li) = c.lstm_y.get(&x0).filter(|_| axes.as_deref() == Some(&[1])) else {
                return Err(c.err(
                    n,
                    "only the Squeeze of axis 1 after an LSTM (its direction axis) is supported",
                ));
            };
            if let Some(d) = c.dims.get(&x0).cloned() {
                c.dims.insert(out0.clone(), d);
            }
            // The LSTM layer's top takes the squeezed name (a graph output keeps its name).
            if c.consumers.get(&x0) == Some(&1) {
                c.layers[li].top = vec![out0];
            } else {
                let b = c.blob(&x0);
                c.alias.insert(out0, b);
            }
            c.set_rank(n, 3);
        }
        "Pow" => {
            let e = c.konst(n, 1)?;
            if e.vals.len() != 1 {
                return Err(c.err(
                    n,
                    "only Pow with a scalar constant exponent (a Caffe Power) is supported",
                ));
            }
            let p = e.vals[0] as f32;
            c.push(n, "Power", &[0], vec![], |l| {
                l.power_param = Some(PowerParameter {
                    power: Some(p),
                    ..Default::default()
                })
            });
            c.set_rank(n, r0);
        }
        other => {
            return Err(c.err(
                n,
                format!("operator {other} is not supported by crema's importer"),
            ))
        }
    }
    // Ops that keep their input's shape carry its known dims on (so that an LSTM after
    // Cast -> Gather, or after an Embed's bias Add, can size its `cont` input).
    let keeps_shape = matches!(
        op,
        "Identity"
            | "Dropout"
            | "Cast"
            | "Relu"
            | "Sigmoid"
            | "Tanh"
            | "Abs"
            | "Softplus"
            | "LeakyRelu"
            | "Elu"
            | "PRelu"
            | "Softmax"
            | "Pow"
    ) || (matches!(op, "Add" | "Mul") && n.input.len() == 2);
    let x = n.input.iter().find(|i| !c.consts.contains_key(*i));
    if let (true, Some(d), Some(y)) = (keeps_shape, x.and_then(|x| c.dims.get(x)), n.output.first())
    {
        // A constant operand (a bias, a scale) must broadcast into x without growing it.
        let fits = n.input.iter().filter_map(|i| c.consts.get(i)).all(|k| {
            k.dims.len() <= d.len()
                && k.dims
                    .iter()
                    .rev()
                    .zip(d.iter().rev())
                    .all(|(&a, &b)| a == 1 || a == b)
        });
        if fits && !c.dims.contains_key(y) {
            c.dims.insert(y.clone(), d.clone());
        }
    }
    Ok(())
}

/// The dims after a Reshape to `shape` (0 copies the input's dim, one -1 takes the rest) of a
/// tensor of `dims`; None where they do not fit.
fn reshaped(dims: &[i64], shape: &[i64]) -> Option<Vec<i64>> {
    let count: i64 = dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d))?;
    let mut out: Vec<i64> = shape
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            if s == 0 {
                dims.get(i).copied()
            } else {
                Some(s)
            }
        })
        .collect::<Option<_>>()?;
    let known = out.iter().filter(|&&d| d != -1).try_fold(1i64, |a, &d| {
        if d > 0 {
            a.checked_mul(d)
        } else {
            None
        }
    })?;
    match out.iter().filter(|&&d| d == -1).count() {
        0 if known == count => Some(out),
        1 if count % known == 0 => {
            for d in &mut out {
                if *d == -1 {
                    *d = count / known;
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// Caffe's gate blocks i, f, o, g from ONNX's i, o, f, c (the swap is its own inverse).
fn caffe_gate_order(data: &[f32]) -> Vec<f32> {
    let per = data.len() / 4;
    [0usize, 2, 1, 3]
        .iter()
        .flat_map(|&g| data[g * per..(g + 1) * per].iter().copied())
        .collect()
}

/// A forward, single-direction ONNX LSTM with Caffe's activations as Caffe's LSTM layer. ONNX
/// runs every stream as one sequence from a zero state; Caffe's layer takes a `cont` input, which
/// becomes a new net input `NODE/cont` (T x N) to feed with 0 at t = 0 and 1 after.
fn lstm(c: &mut Ctx, n: &NodeProto) -> Result<()> {
    let (Some(x0), Some(out0)) = (n.input.first().cloned(), n.output.first().cloned()) else {
        return Err(c.err(n, "an LSTM needs inputs X, W, R and an output Y"));
    };
    let text = |name: &str| {
        attr(n, name)
            .and_then(|a| a.s.as_deref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    };
    if let Some(d) = text("direction").filter(|d| d != "forward") {
        return Err(c.err(
            n,
            format!("direction `{d}` has no Caffe form; only `forward` (one direction) imports"),
        ));
    }
    if attr_i(n, "layout", 0) != 0 {
        return Err(c.err(
            n,
            "layout 1 (batch first) has no Caffe form; layout 0 (X as T x N x input) expected",
        ));
    }
    if let Some(a) = attr(n, "activations") {
        let names: Vec<String> = a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
            .collect();
        if names != ["sigmoid", "tanh", "tanh"] {
            return Err(c.err(
                n,
                format!(
                    "activations {names:?} have no Caffe form; the default Sigmoid, Tanh, Tanh                      expected"
                ),
            ));
        }
    }
    for a in ["activation_alpha", "activation_beta", "clip"] {
        if attr(n, a).is_some() {
            return Err(c.err(
                n,
                format!("attribute `{a}` has no Caffe form; an LSTM without it expected"),
            ));
        }
    }
    if attr_i(n, "input_forget", 0) != 0 {
        return Err(c.err(
            n,
            "input_forget 1 (coupled gates) has no Caffe form; input_forget 0 expected",
        ));
    }
    let given = |k: usize| n.input.get(k).is_some_and(|s| !s.is_empty());
    if given(4) {
        return Err(c.err(
            n,
            "sequence_lens has no Caffe form; every stream must run the whole T steps (no input 4)",
        ));
    }
    if given(7) {
        return Err(c.err(
            n,
            "peepholes (input P) have no Caffe form; an LSTM without P expected",
        ));
    }
    for (k, what) in [(5, "initial_h"), (6, "initial_c")] {
        if given(k)
            && !c
                .opt_konst(n, k)
                .is_some_and(|v| v.vals.iter().all(|&x| x == 0.0))
        {
            return Err(c.err(
                n,
                format!(
                    "{what} must be absent or a constant of zeros: Caffe's LSTM starts each \
                     stream from a zero state (where cont is 0)"
                ),
            ));
        }
    }
    if n.output
        .iter()
        .skip(1)
        .any(|o| c.consumers.get(o).copied().unwrap_or(0) > 0)
    {
        return Err(c.err(
            n,
            "the outputs Y_h and Y_c have no Caffe form; only Y may be read",
        ));
    }
    let h = attr_i(n, "hidden_size", 0);
    let w = c.konst(n, 1)?;
    let r = c.konst(n, 2)?;
    if !(1..=i64::from(i32::MAX) / 8).contains(&h)
        || w.dims.len() != 3
        || w.dims[2] <= 0
        || w.dims[0] != 1
        || w.dims[1] != 4 * h
        || r.dims != [1, 4 * h, h]
    {
        return Err(c.err(
            n,
            format!(
                "W {:?} and R {:?} must be 1 x 4H x input and 1 x 4H x H for hidden_size H = {h}",
                w.dims, r.dims
            ),
        ));
    }
    let input = w.dims[2];
    let wx = caffe_gate_order(&w.f32());
    let wh = caffe_gate_order(&r.f32());
    let bias = match c.opt_konst(n, 3) {
        Some(b) if b.vals.len() as i64 == 8 * h => {
            let b = b.f32();
            let (wb, rb) = b.split_at(4 * h as usize);
            caffe_gate_order(&wb.iter().zip(rb).map(|(x, y)| x + y).collect::<Vec<_>>())
        }
        Some(b) => {
            return Err(c.err(
                n,
                format!("B has {} values; 8H = {} expected", b.vals.len(), 8 * h),
            ))
        }
        None => vec![0.0; 4 * h as usize],
    };
    let tn = match c.dims.get(&x0) {
        Some(d) if d.len() == 3 && d[2] == input => [d[0], d[1]],
        _ => {
            return Err(c.err(
                n,
                format!(
                    "the input `{x0}` must have a known fixed shape T x N x {input} (a graph input \
                     or an embedding of one), to size the `cont` input Caffe's LSTM needs"
                ),
            ))
        }
    };
    let blob = |dims: &[i64], data: Vec<f32>| BlobProto {
        shape: Some(BlobShape { dim: dims.to_vec() }),
        data,
        ..Default::default()
    };
    let blobs = vec![
        blob(&[4 * h, input], wx),
        blob(&[4 * h], bias),
        blob(&[4 * h, h], wh),
    ];
    let li = c.push(n, "LSTM", &[0], blobs, |l| {
        l.recurrent_param = Some(RecurrentParameter {
            num_output: Some(h as u32),
            ..Default::default()
        });
    });
    let cont = format!("{}/cont", c.layers[li].name());
    c.layers[li].bottom.push(cont.clone());
    c.layers[0].top.push(cont.clone());
    if let Some(ip) = c.layers[0].input_param.as_mut() {
        ip.shape.push(BlobShape { dim: tn.to_vec() });
    }
    c.rank.insert(cont.clone(), 2);
    c.notes.push(format!(
        "LSTM `{}`: Caffe's LSTM takes a `cont` input; feed the new net input `{cont}` (T x N) with \
         0 at t = 0 and 1 after to run every stream as one sequence, as the ONNX LSTM does",
        c.layers[li].name()
    ));
    c.dims.insert(out0.clone(), vec![tn[0], tn[1], h]);
    c.lstm_y.insert(out0, li);
    c.set_rank(n, 3);
    Ok(())
}
