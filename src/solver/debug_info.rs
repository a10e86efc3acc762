//! Caffe's `debug_info: true` log lines (`Net::ForwardDebugInfo`, `BackwardDebugInfo`, the
//! all-parameter norms of `Net::Backward`), printed at display iterations as Caffe does. Each
//! per-blob number is Caffe's mean absolute value (`asum / count`). crema computes them once
//! forward and backward have both run, from the blobs as they stand then, so a blob a later
//! layer overwrote in place (`ReLU` on `ip1`) shows its final value where Caffe, printing
//! during the pass, shows the one before.

use crate::{Blob, Net};

fn mean_abs(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().map(|x| x.abs() as f64).sum::<f64>() / v.len() as f64
}

/// `[Forward]` lines (every layer's tops and params, first to last), `[Backward]` lines (bottoms
/// that get a gradient and param diffs, last to first) and the `All net params` norms line.
pub fn lines(net: &Net) -> Vec<String> {
    let mut out = Vec::new();
    let params = net.params();
    for (li, l) in net.layers().iter().enumerate() {
        for &t in &l.top {
            out.push(format!(
                "    [Forward] Layer {}, top blob {} data: {}",
                l.name,
                net.blob_name(t),
                mean_abs(&net.blob_at(t).data)
            ));
        }
        for (k, p) in net.layer_params(li).iter().enumerate() {
            out.push(format!(
                "    [Forward] Layer {}, param blob {k} data: {}",
                l.name,
                mean_abs(&p.data)
            ));
        }
    }
    for (li, l) in net.layers().iter().enumerate().rev() {
        if !l.need_backward {
            continue;
        }
        for (k, &b) in l.bottom.iter().enumerate() {
            if l.bottom_need_backward.get(k).copied().unwrap_or(false) {
                out.push(format!(
                    "    [Backward] Layer {}, bottom blob {} diff: {}",
                    l.name,
                    net.blob_name(b),
                    mean_abs(&net.blob_at(b).diff)
                ));
            }
        }
        for (k, p) in net.layer_params(li).iter().enumerate() {
            out.push(format!(
                "    [Backward] Layer {}, param blob {k} diff: {}",
                l.name,
                mean_abs(&p.diff)
            ));
        }
    }
    out.push(norms_line(params));
    out
}

/// Caffe's `All net params (data, diff): L1 norm = (a, b); L2 norm = (c, d)`.
fn norms_line(params: &[Blob]) -> String {
    let (mut a1, mut d1, mut a2, mut d2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for p in params {
        for &v in &p.data {
            a1 += v.abs() as f64;
            a2 += (v as f64) * (v as f64);
        }
        for &v in &p.diff {
            d1 += v.abs() as f64;
            d2 += (v as f64) * (v as f64);
        }
    }
    format!(
        "    [Backward] All net params (data, diff): L1 norm = ({a1}, {d1}); L2 norm = ({}, {})",
        a2.sqrt(),
        d2.sqrt()
    )
}

#[cfg(test)]
mod tests {
    use crate::proto::Phase;
    use rand::SeedableRng;

    #[test]
    fn forward_backward_and_norm_lines_by_hand() {
        let yaml = "name: t\nlayer:\n  - { name: in, type: Input, top: [x, y], input_param: { \
                    shape: [ { dim: [1, 2] }, { dim: [1, 1] } ] } }\n  - { name: ip, type: \
                    InnerProduct, bottom: x, top: z, inner_product_param: { num_output: 1, \
                    weight_filler: { type: constant, value: 0.5 }, bias_filler: { type: \
                    constant, value: -1 } } }\n  - { name: loss, type: EuclideanLoss, bottom: \
                    [z, y], top: l }\n";
        let p = crate::spec::from_yaml_str(yaml, "t").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut net = crate::Net::for_phase(&p, Phase::Train, &mut rng).unwrap();
        net.blob_mut("x").unwrap().data = vec![2.0, -4.0];
        net.blob_mut("y").unwrap().data = vec![1.0];
        net.forward_backward().unwrap();
        let l = super::lines(&net);
        // z = 0.5*2 - 0.5*4 - 1 = -2; loss = (-2 - 1)^2 / 2 = 4.5; dz = -3.
        assert!(
            l.contains(&"    [Forward] Layer ip, top blob z data: 2".to_string()),
            "{l:#?}"
        );
        assert!(l.contains(&"    [Forward] Layer ip, param blob 0 data: 0.5".to_string()));
        assert!(l.contains(&"    [Forward] Layer loss, top blob l data: 4.5".to_string()));
        assert!(l.contains(&"    [Backward] Layer loss, bottom blob z diff: 3".to_string()));
        // dW = dz * x = (-6, 12): mean |.| 9; db = -3.
        assert!(l.contains(&"    [Backward] Layer ip, param blob 0 diff: 9".to_string()));
        assert!(l.contains(&"    [Backward] Layer ip, param blob 1 diff: 3".to_string()));
        let last = l.last().unwrap();
        // data: |0.5| + |0.5| + |-1| = 2, sqrt(0.25 + 0.25 + 1); diff: 6 + 12 + 3, sqrt(36+144+9).
        let want = format!(
            "    [Backward] All net params (data, diff): L1 norm = (2, 21); L2 norm = ({}, {})",
            1.5f64.sqrt(),
            189f64.sqrt()
        );
        assert_eq!(last, &want);
    }
}
