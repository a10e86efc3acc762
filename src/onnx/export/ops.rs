//! The exporter's multi-node layers: pooling (Caffe's rounding and divisor), Scale / Bias,
//! InnerProduct, Eltwise, LSTM, and Reshape to a built shape.

use super::*;

pub(super) fn reshape_to(c: &mut Ctx, l: &LayerEntry, out: &[usize]) -> Result<()> {
    let d = c.fixed_shape(l, out)?;
    let x = c.input(l, 0);
    let s = c.init_i64(format!("{}/shape", l.name), &d);
    let y = c.define(l.top[0]);
    c.node("Reshape", &l.name, vec![x, s], vec![y], vec![]);
    Ok(())
}

pub(super) fn pooling(c: &mut Ctx, l: &LayerEntry) -> Result<()> {
    let pp = l.param.pooling_param.unwrap_or_default();
    let name = l.name.as_str();
    if l.top.len() > 1 {
        return Err(err(
            l,
            "the MAX mask top has no ONNX form; give Pooling one top",
        ));
    }
    let method = pp.pool();
    if method == PoolMethod::Stochastic {
        return Err(err(l, "STOCHASTIC pooling has no ONNX operator"));
    }
    let shape = c.shape(l.bottom[0]).to_vec();
    if shape.len() != 4 {
        return Err(err(l, "only pooling over N x C x H x W exports"));
    }
    if pp.global_pooling() {
        let op = if method == PoolMethod::Max {
            "GlobalMaxPool"
        } else {
            "GlobalAveragePool"
        };
        unary(c, l, op, vec![]);
        return Ok(());
    }
    let two = |s: Option<u32>, h: Option<u32>, w: Option<u32>, d: u32| -> [usize; 2] {
        match (s, h, w) {
            (Some(v), _, _) => [v as usize; 2],
            (None, Some(a), Some(b)) => [a as usize, b as usize],
            _ => [d as usize; 2],
        }
    };
    let k = two(pp.kernel_size, pp.kernel_h, pp.kernel_w, 1);
    let s = two(pp.stride, pp.stride_h, pp.stride_w, 1);
    let p = two(pp.pad, pp.pad_h, pp.pad_w, 0);
    let ceil = pp.round_mode() == RoundMode::Ceil;
    let out = &c.shape(l.top[0])[2..].to_vec();
    let mut attrs = vec![
        attr_ints("kernel_shape", &[k[0] as i64, k[1] as i64]),
        attr_ints("strides", &[s[0] as i64, s[1] as i64]),
    ];
    let ave = method == PoolMethod::Ave;
    // With AVE and pad, the zeros of an explicit Pad count in the divisor like Caffe's padding;
    // the extra end pads (ceil rounding) do not.
    let (lead, tail): ([i64; 2], [i64; 2]) = if c.opts.dynamic_spatial {
        if p != [0, 0] || k[0] < s[0] || k[1] < s[1] {
            return Err(err(l, "pooling with pad (or a kernel smaller than its stride) needs fixed spatial sizes; export without dynamic spatial dims"));
        }
        attrs.push(attr_i("ceil_mode", i64::from(ceil)));
        ([0, 0], [0, 0])
    } else {
        let mut tail = [0i64; 2];
        for i in 0..2 {
            let need =
                (out[i] as i64 - 1) * s[i] as i64 + k[i] as i64 - (shape[2 + i] + p[i]) as i64;
            tail[i] = need.max(0);
        }
        ([p[0] as i64, p[1] as i64], tail)
    };
    let mut x = c.input(l, 0);
    let pads = if ave && lead != [0, 0] {
        let pads = c.init_i64(
            format!("{name}/pads"),
            &[0, 0, lead[0], lead[1], 0, 0, lead[0], lead[1]],
        );
        let padded = format!("{name}/padded");
        c.node(
            "Pad",
            &format!("{name}/pad"),
            vec![x, pads],
            vec![padded.clone()],
            vec![],
        );
        x = padded;
        let t = [(tail[0] - lead[0]).max(0), (tail[1] - lead[1]).max(0)];
        [0, 0, t[0], t[1]]
    } else {
        [lead[0], lead[1], tail[0], tail[1]]
    };
    attrs.push(attr_ints("pads", &pads));
    if ave {
        attrs.push(attr_i("count_include_pad", 0));
    }
    let y = c.define(l.top[0]);
    let op = if ave { "AveragePool" } else { "MaxPool" };
    c.node(op, name, vec![x], vec![y], attrs);
    Ok(())
}

pub(super) fn scale_bias(c: &mut Ctx, l: &LayerEntry) -> Result<()> {
    let name = l.name.as_str();
    let rank = c.shape(l.bottom[0]).len();
    let (axis, bias_term, is_scale) = if l.ty == "Scale" {
        let sp = l.param.scale_param.clone().unwrap_or_default();
        (sp.axis(), sp.bias_term(), true)
    } else {
        (
            l.param.bias_param.clone().unwrap_or_default().axis(),
            false,
            false,
        )
    };
    let axis = crate::blob::canonical_axis(axis, rank)?;
    let x = c.input(l, 0);
    let op = if is_scale { "Mul" } else { "Add" };
    let factor = if l.bottom.len() > 1 {
        let b = l.bottom[1];
        let mut d = c.fixed_shape(l, c.shape(b))?;
        if c.opts.dynamic_batch && axis == 0 {
            return Err(err(
                l,
                "a second bottom from axis 0 needs a fixed batch size",
            ));
        }
        while axis + d.len() < rank {
            d.push(1);
        }
        let s = c.init_i64(format!("{name}/shape"), &d);
        let r = format!("{name}/factor");
        let second = c.input(l, 1);
        c.node(
            "Reshape",
            &format!("{name}/reshape"),
            vec![second, s],
            vec![r.clone()],
            vec![],
        );
        r
    } else {
        let p = c.param(l, 0)?.clone();
        c.broadcast_init(
            format!("{name}/{}", if is_scale { "scale" } else { "bias" }),
            &p,
            axis,
            rank,
        )
    };
    if bias_term {
        let bi = if l.bottom.len() > 1 { 0 } else { 1 };
        let b = c.param(l, bi)?.clone();
        let bn = c.broadcast_init(format!("{name}/bias"), &b, axis, rank);
        let m = format!("{name}/mul");
        c.node("Mul", name, vec![x, factor], vec![m.clone()], vec![]);
        let y = c.define(l.top[0]);
        c.node("Add", &format!("{name}/add"), vec![m, bn], vec![y], vec![]);
    } else {
        let y = c.define(l.top[0]);
        c.node(op, name, vec![x, factor], vec![y], vec![]);
    }
    Ok(())
}

pub(super) fn inner_product(c: &mut Ctx, l: &LayerEntry) -> Result<()> {
    let ip = l.param.inner_product_param.clone().unwrap_or_default();
    let name = l.name.as_str();
    let rank = c.shape(l.bottom[0]).len();
    let axis = crate::blob::canonical_axis(ip.axis(), rank)?;
    let w = c.param(l, 0)?.clone();
    let bias = if ip.bias_term() {
        Some(c.param(l, 1)?.clone())
    } else {
        None
    };
    let x = c.input(l, 0);
    if axis == 1 {
        let flat = format!("{name}/flat");
        c.node(
            "Flatten",
            &format!("{name}/flatten"),
            vec![x],
            vec![flat.clone()],
            vec![attr_i("axis", 1)],
        );
        let mut ins = vec![
            flat,
            c.init_f32(format!("{name}/w"), &dims(&w.shape), &w.data),
        ];
        if let Some(b) = &bias {
            ins.push(c.init_f32(format!("{name}/b"), &dims(&b.shape), &b.data));
        }
        let y = c.define(l.top[0]);
        c.node(
            "Gemm",
            name,
            ins,
            vec![y],
            vec![attr_i("transB", i64::from(!ip.transpose()))],
        );
        return Ok(());
    }
    // Leading axes kept, the rest flattened, then x W^T (+ b).
    let mut shape = vec![0i64; axis];
    shape.push(-1);
    let s = c.init_i64(format!("{name}/shape"), &shape);
    let flat = format!("{name}/flat");
    c.node(
        "Reshape",
        &format!("{name}/reshape"),
        vec![x, s],
        vec![flat.clone()],
        vec![],
    );
    let (rows, cols) = (w.shape[0], w.shape[1]);
    let wt: Vec<f32> = if ip.transpose() {
        w.data.clone()
    } else {
        (0..cols)
            .flat_map(|j| (0..rows).map(move |i| (i, j)))
            .map(|(i, j)| w.data[i * cols + j])
            .collect()
    };
    let wd = if ip.transpose() {
        [rows as i64, cols as i64]
    } else {
        [cols as i64, rows as i64]
    };
    let wn = c.init_f32(format!("{name}/wT"), &wd, &wt);
    match bias {
        Some(b) => {
            let m = format!("{name}/matmul");
            c.node("MatMul", name, vec![flat, wn], vec![m.clone()], vec![]);
            let bn = c.init_f32(format!("{name}/b"), &dims(&b.shape), &b.data);
            let y = c.define(l.top[0]);
            c.node("Add", &format!("{name}/bias"), vec![m, bn], vec![y], vec![]);
        }
        None => {
            let y = c.define(l.top[0]);
            c.node("MatMul", name, vec![flat, wn], vec![y], vec![]);
        }
    }
    Ok(())
}

pub(super) fn eltwise(c: &mut Ctx, l: &LayerEntry) -> Result<()> {
    let ep = l.param.eltwise_param.clone().unwrap_or_default();
    let name = l.name.as_str();
    let mut ins: Vec<String> = (0..l.bottom.len()).map(|k| c.input(l, k)).collect();
    let op = match ep.operation() {
        EltwiseOp::Prod => "Mul",
        EltwiseOp::Max => "Max",
        EltwiseOp::Sum => {
            if !ep.coeff.is_empty() && ep.coeff.len() != ins.len() {
                return Err(err(l, "Eltwise needs one coeff per bottom"));
            }
            for (k, &co) in ep.coeff.iter().enumerate() {
                if co != 1.0 {
                    let kn = c.init_f32(format!("{name}/coeff{k}"), &[], &[co]);
                    let scaled = format!("{name}/scaled{k}");
                    c.node(
                        "Mul",
                        &format!("{name}/coeff{k}"),
                        vec![ins[k].clone(), kn],
                        vec![scaled.clone()],
                        vec![],
                    );
                    ins[k] = scaled;
                }
            }
            "Sum"
        }
    };
    let y = c.define(l.top[0]);
    if op == "Sum" || op == "Max" {
        c.node(op, name, ins, vec![y], vec![]);
        return Ok(());
    }
    // Mul is binary: a chain.
    let mut acc = ins[0].clone();
    for (k, next) in ins.iter().enumerate().skip(1) {
        let out = if k + 1 == ins.len() {
            y.clone()
        } else {
            format!("{name}/prod{k}")
        };
        c.node(
            "Mul",
            &format!("{name}/{k}"),
            vec![acc, next.clone()],
            vec![out.clone()],
            vec![],
        );
        acc = out;
    }
    Ok(())
}

/// Caffe's gate blocks i, f, o, g in ONNX's order i, o, f, c.
fn onnx_gate_order(data: &[f32]) -> Vec<f32> {
    let per = data.len() / 4;
    [0usize, 2, 1, 3]
        .iter()
        .flat_map(|&g| data[g * per..(g + 1) * per].iter().copied())
        .collect()
}

pub(super) fn lstm(c: &mut Ctx, l: &LayerEntry) -> Result<()> {
    let rp = l.param.recurrent_param.clone().unwrap_or_default();
    let name = l.name.as_str();
    if rp.expose_hidden() || l.bottom.len() != 2 {
        return Err(err(
            l,
            "only LSTM with bottoms x and cont (no static input, no expose_hidden) exports",
        ));
    }
    let h = rp.num_output() as usize;
    let xs = c.shape(l.bottom[0]).to_vec();
    let (wx, b, wh) = (
        c.param(l, 0)?.clone(),
        c.param(l, 1)?.clone(),
        c.param(l, 2)?.clone(),
    );
    let mut x = c.input(l, 0);
    if xs.len() != 3 {
        let s = c.init_i64(format!("{name}/shape"), &[0, 0, -1]);
        let r = format!("{name}/x3");
        c.node(
            "Reshape",
            &format!("{name}/reshape"),
            vec![x, s],
            vec![r.clone()],
            vec![],
        );
        x = r;
    }
    let input = wx.shape[1] as i64;
    let wn = c.init_f32(
        format!("{name}/W"),
        &[1, 4 * h as i64, input],
        &onnx_gate_order(&wx.data),
    );
    let rn = c.init_f32(
        format!("{name}/R"),
        &[1, 4 * h as i64, h as i64],
        &onnx_gate_order(&wh.data),
    );
    let mut bias = onnx_gate_order(&b.data);
    bias.extend(std::iter::repeat_n(0.0, 4 * h));
    let bn = c.init_f32(format!("{name}/B"), &[1, 8 * h as i64], &bias);
    let y4 = format!("{name}/Y");
    c.node(
        "LSTM",
        name,
        vec![x, wn, rn, bn],
        vec![y4.clone()],
        vec![attr_i("hidden_size", h as i64)],
    );
    let axes = c.init_i64(format!("{name}/axes"), &[1]);
    let y = c.define(l.top[0]);
    c.node(
        "Squeeze",
        &format!("{name}/squeeze"),
        vec![y4, axes],
        vec![y],
        vec![],
    );
    c.notes.push(format!(
        "LSTM `{name}`: its `cont` input is not exported; the ONNX LSTM runs each stream as one \
         sequence from a zero state (what crema does for cont = 0 at t = 0 and 1 after)"
    ));
    Ok(())
}
