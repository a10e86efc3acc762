//! Net-level behaviour on the public API: fan-out, in place, phase/level/stage rules, sharing,
//! multipliers, loss weights, propagate_down, pruning, force_backward, outputs, and a numeric
//! check of the whole net.

use crema::proto::{NetParameter, NetState, Phase};
use crema::spec::from_yaml_str;
use crema::testing::assert_close;
use crema::{Blob, Net};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn param(yaml: &str) -> NetParameter {
    from_yaml_str::<NetParameter>(yaml, "<test net>").unwrap_or_else(|e| panic!("{e}"))
}

fn build(yaml: &str, phase: Phase) -> Net {
    let mut rng = StdRng::seed_from_u64(5);
    Net::for_phase(&param(yaml), phase, &mut rng).unwrap_or_else(|e| panic!("{e}"))
}

fn build_err(yaml: &str) -> String {
    let mut rng = StdRng::seed_from_u64(5);
    match Net::for_phase(&param(yaml), Phase::Train, &mut rng) {
        Ok(_) => panic!("expected the net to be rejected"),
        Err(e) => e.to_string(),
    }
}

/// Fills blob `name` with a fixed, varied pattern.
fn feed(net: &mut Net, name: &str, scale: f32) {
    let b = net
        .blob_mut(name)
        .unwrap_or_else(|| panic!("no blob {name}"));
    for (i, v) in b.data.iter_mut().enumerate() {
        *v = scale * (((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
    }
}

fn layer_names(net: &Net) -> Vec<String> {
    net.layers().iter().map(|l| l.name.clone()).collect()
}

fn param_of<'a>(net: &'a Net, layer: &str, k: usize) -> &'a Blob {
    let li = net
        .layers()
        .iter()
        .position(|l| l.name == layer)
        .unwrap_or_else(|| panic!("no layer {layer}"));
    net.layer_params(li)[k]
}

const INPUT: &str = "
  - name: data
    type: Input
    top: [data, target]
    input_param: { shape: [ { dim: [2, 4] }, { dim: [2, 3] } ] }";

#[test]
fn fan_out_sums_the_gradients_of_all_readers() {
    let yaml = format!(
        "layer:{INPUT}
  - {{ name: ip, type: InnerProduct, bottom: data, top: x,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: pa, type: Power, bottom: x, top: a, power_param: {{ scale: 2 }} }}
  - {{ name: pb, type: Power, bottom: x, top: b, power_param: {{ scale: -3, shift: 1 }} }}
  - {{ name: loss, type: EuclideanLoss, bottom: [a, b], top: loss }}
  - {{ name: silence, type: Silence, bottom: target }}"
    );
    let mut net = build(&yaml, Phase::Train);
    feed(&mut net, "data", 1.0);
    net.forward_backward().unwrap();
    let (da, db) = (&net.blob("a").unwrap().diff, &net.blob("b").unwrap().diff);
    let expect: Vec<f32> = da.iter().zip(db).map(|(a, b)| 2.0 * a - 3.0 * b).collect();
    assert!(expect.iter().any(|v| v.abs() > 1e-3));
    assert_close(&net.blob("x").unwrap().diff, &expect, 1e-5);
}

#[test]
fn in_place_relu_gives_the_same_numbers_as_a_copy() {
    let net_yaml = |relu_top: &str, next: &str| {
        format!(
            "force_backward: true
layer:{INPUT}
  - {{ name: ip1, type: InnerProduct, bottom: data, top: h,
      inner_product_param: {{ num_output: 5, weight_filler: {{ type: gaussian }}, bias_filler: {{ type: gaussian }} }} }}
  - {{ name: relu, type: ReLU, bottom: h, top: {relu_top}, relu_param: {{ negative_slope: 0.1 }} }}
  - {{ name: ip2, type: InnerProduct, bottom: {next}, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: loss, type: EuclideanLoss, bottom: [y, target], top: loss }}"
        )
    };
    let mut a = build(&net_yaml("h", "h"), Phase::Train);
    let mut b = build(&net_yaml("r", "r"), Phase::Train);
    assert!(a.layers()[2].inplace && !b.layers()[2].inplace);
    // In place there is one blob fewer.
    assert_eq!(a.blobs().count() + 1, b.blobs().count());
    for n in [&mut a, &mut b] {
        feed(n, "data", 1.0);
        feed(n, "target", 0.5);
    }
    let (la, lb) = (a.forward_backward().unwrap(), b.forward_backward().unwrap());
    assert_eq!(la, lb);
    assert_eq!(a.blob("h").unwrap().data, b.blob("r").unwrap().data);
    for (pa, pb) in a.params().iter().zip(b.params()) {
        assert_close(&pa.diff, &pb.diff, 1e-6);
    }
    assert_close(
        &a.blob("data").unwrap().diff,
        &b.blob("data").unwrap().diff,
        1e-6,
    );
    assert!(a.blob("data").unwrap().asum_diff() > 0.0);
}

const RULES: &str = "
layer:
  - { name: data, type: Input, top: x, input_param: { shape: { dim: [1, 2] } } }
  - { name: train_only, type: ReLU, bottom: x, top: a, include: { phase: TRAIN } }
  - { name: test_only, type: ReLU, bottom: x, top: b, include: { phase: TEST } }
  - { name: not_test, type: ReLU, bottom: x, top: c, exclude: { phase: TEST } }
  - { name: level2, type: ReLU, bottom: x, top: d, include: { min_level: 2 } }
  - { name: low_level, type: ReLU, bottom: x, top: e, include: { max_level: 1 } }
  - { name: stage_ab, type: ReLU, bottom: x, top: f, include: { stage: [a, b] } }
  - { name: stage_a_or_c, type: ReLU, bottom: x, top: g, include: [ { stage: a }, { stage: c } ] }
  - { name: not_b, type: ReLU, bottom: x, top: h, include: { not_stage: b } }
  - { name: exclude_c, type: ReLU, bottom: x, top: i, exclude: { stage: c } }
";

fn with_state(state: &str) -> Vec<String> {
    let state: NetState = from_yaml_str(state, "<state>").unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let net = Net::new(&param(RULES), &state, &mut rng).unwrap();
    layer_names(&net).into_iter().skip(1).collect()
}

#[test]
fn include_and_exclude_by_phase_level_and_stage() {
    assert_eq!(
        with_state("phase: TRAIN"),
        ["train_only", "not_test", "low_level", "not_b", "exclude_c"]
    );
    assert_eq!(
        with_state("phase: TEST"),
        ["test_only", "low_level", "not_b", "exclude_c"]
    );
    assert_eq!(
        with_state("phase: TEST\nlevel: 2"),
        ["test_only", "level2", "not_b", "exclude_c"]
    );
    assert_eq!(
        with_state("phase: TEST\nlevel: 1\nstage: [a]"),
        [
            "test_only",
            "low_level",
            "stage_a_or_c",
            "not_b",
            "exclude_c"
        ]
    );
    assert_eq!(
        with_state("phase: TEST\nstage: [b, a]"),
        [
            "test_only",
            "low_level",
            "stage_ab",
            "stage_a_or_c",
            "exclude_c"
        ]
    );
    assert_eq!(
        with_state("phase: TEST\nstage: [c]"),
        ["test_only", "low_level", "stage_a_or_c", "not_b"]
    );
    // for_phase uses level 0, no stages.
    let net = build(RULES, Phase::Test);
    assert_eq!(net.phase, Phase::Test);
    assert!(layer_names(&net).contains(&"test_only".to_string()));
    // Include and exclude together are refused.
    let e = build_err(
        "layer:
  - { name: data, type: Input, top: x, input_param: { shape: { dim: [1] } },
      include: { phase: TRAIN }, exclude: { phase: TEST } }",
    );
    assert!(
        e.contains("`data`") && e.contains("include and exclude"),
        "{e}"
    );
}

fn shared_net(mode: &str, second_outputs: u32) -> String {
    format!(
        "layer:
  - {{ name: data, type: Input, top: [data, target], input_param: {{ shape: [ {{ dim: [2, 4] }}, {{ dim: [2, {second_outputs}] }} ] }} }}
  - {{ name: ip_a, type: InnerProduct, bottom: data, top: a,
      param: {{ name: w, lr_mult: 2, decay_mult: 0.5 }},
      inner_product_param: {{ num_output: 3, bias_term: false, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: ip_b, type: InnerProduct, bottom: a, top: b,
      param: {{ name: w, share_mode: {mode} }},
      inner_product_param: {{ num_output: {second_outputs}, bias_term: false, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: loss, type: EuclideanLoss, bottom: [b, target], top: loss }}"
    )
}

#[test]
fn shared_params_are_one_blob_with_the_summed_gradient() {
    // W_a is 3x4, W_b is 4x3: same count, different shapes.
    let e = build_err(&shared_net("STRICT", 4));
    assert!(
        e.contains("`ip_b`")
            && e.contains("`ip_a`")
            && e.contains("`w`")
            && e.contains("3x4")
            && e.contains("4x3"),
        "{e}"
    );
    // Different counts are refused even when permissive.
    let e = build_err(&shared_net("PERMISSIVE", 5));
    assert!(e.contains("3x4") && e.contains("5x3"), "{e}");

    let mut net = build(&shared_net("PERMISSIVE", 4), Phase::Train);
    assert_eq!(net.params().len(), 1, "one stored blob");
    assert_eq!(net.param_info()[0].layer, "ip_a");
    assert_eq!(net.param_info()[0].lr_mult, 2.0);
    assert_eq!(net.param_info()[0].decay_mult, 0.5);
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.3);
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    // dW = da^T data (as 3x4) + db^T a (as 4x3, same memory).
    let (x, a) = (net.blob("data").unwrap(), net.blob("a").unwrap());
    let (da, db) = (&a.diff, &net.blob("b").unwrap().diff);
    let mut expect = vec![0.0f32; 12];
    for n in 0..2 {
        for o in 0..3 {
            for k in 0..4 {
                expect[o * 4 + k] += da[n * 3 + o] * x.data[n * 4 + k];
            }
        }
        for o in 0..4 {
            for k in 0..3 {
                expect[o * 3 + k] += db[n * 4 + o] * a.data[n * 3 + k];
            }
        }
    }
    assert_close(&net.params()[0].diff, &expect, 1e-5);
}

#[test]
fn lr_and_decay_multipliers_are_recorded() {
    let net = build(
        "layer:
  - { name: data, type: Input, top: x, input_param: { shape: { dim: [2, 3] } } }
  - { name: ip, type: InnerProduct, bottom: x, top: y,
      param: [ { lr_mult: 1, decay_mult: 1 }, { lr_mult: 2, decay_mult: 0 } ],
      inner_product_param: { num_output: 2 } }
  - { name: ip2, type: InnerProduct, bottom: y, top: z, param: { lr_mult: 0 },
      inner_product_param: { num_output: 2 } }",
        Phase::Train,
    );
    let info: Vec<(String, usize, f32, f32)> = net
        .param_info()
        .iter()
        .map(|p| (p.layer.clone(), p.index, p.lr_mult, p.decay_mult))
        .collect();
    assert_eq!(
        info,
        vec![
            ("ip".into(), 0, 1.0, 1.0),
            ("ip".into(), 1, 2.0, 0.0),
            ("ip2".into(), 0, 0.0, 1.0),
            ("ip2".into(), 1, 1.0, 1.0),
        ]
    );
}

fn weighted(weight: &str) -> String {
    format!(
        "layer:{INPUT}
  - {{ name: ip, type: InnerProduct, bottom: data, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: loss, type: EuclideanLoss, bottom: [y, target], top: loss {weight} }}"
    )
}

#[test]
fn loss_weight_scales_loss_and_gradients() {
    let mut one = build(&weighted(""), Phase::Train);
    let mut three = build(&weighted(", loss_weight: 3"), Phase::Train);
    let mut zero = build(&weighted(", loss_weight: 0"), Phase::Train);
    for n in [&mut one, &mut three, &mut zero] {
        feed(n, "data", 1.0);
        feed(n, "target", -0.5);
        n.clear_param_diffs();
    }
    let l1 = one.forward_backward().unwrap();
    let l3 = three.forward_backward().unwrap();
    assert!(l1 > 0.0);
    assert_close(&[l3], &[3.0 * l1], 1e-5);
    assert_eq!(one.blob_loss_weight("loss"), 1.0);
    assert_eq!(three.blob_loss_weight("loss"), 3.0);
    for (p1, p3) in one.params().iter().zip(three.params()) {
        let scaled: Vec<f32> = p1.diff.iter().map(|d| 3.0 * d).collect();
        assert_close(&p3.diff, &scaled, 1e-5);
    }
    // Weight 0: not a loss, nothing reaches back, the layer is pruned.
    assert_eq!(zero.forward_backward().unwrap(), 0.0);
    assert!(zero.params().iter().all(|p| p.asum_diff() == 0.0));
    assert!(zero.layers().iter().all(|l| !l.need_backward));
    // One weight per top.
    let e = build_err(&weighted(", loss_weight: [1, 2]"));
    assert!(e.contains("`loss`") && e.contains("loss_weight"), "{e}");
}

#[test]
fn propagate_down_false_stops_a_gradient() {
    let yaml = |pd: &str| {
        format!(
            "layer:{INPUT}
  - {{ name: ip_a, type: InnerProduct, bottom: data, top: a,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: ip_b, type: InnerProduct, bottom: data, top: b,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: loss, type: EuclideanLoss, bottom: [a, b], top: loss {pd} }}
  - {{ name: silence, type: Silence, bottom: target }}"
        )
    };
    let mut net = build(&yaml(", propagate_down: [true, false]"), Phase::Train);
    feed(&mut net, "data", 1.0);
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    assert!(net.blob("a").unwrap().asum_diff() > 0.0);
    assert_eq!(net.blob("b").unwrap().asum_diff(), 0.0);
    assert!(param_of(&net, "ip_a", 0).asum_diff() > 0.0);
    assert_eq!(param_of(&net, "ip_b", 0).asum_diff(), 0.0);
    assert!(!net.layers()[2].need_backward, "ip_b is skipped");
    let e = build_err(&yaml(", propagate_down: [true]"));
    assert!(e.contains("`loss`") && e.contains("propagate_down"), "{e}");
}

#[test]
fn a_declining_reader_does_not_cut_off_other_readers() {
    // `y` is read by two losses; the first declines its gradient, the second wants it.
    let yaml = |first: &str| {
        format!(
            "layer:{INPUT}
  - {{ name: ip, type: InnerProduct, bottom: data, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  {first}
  - {{ name: loss_b, type: EuclideanLoss, bottom: [y, target], top: loss_b }}"
        )
    };
    let mut both = build(
        &yaml("- { name: loss_a, type: EuclideanLoss, bottom: [y, target], top: loss_a, propagate_down: [false, false] }"),
        Phase::Train,
    );
    let mut only = build(&yaml(""), Phase::Train);
    for n in [&mut both, &mut only] {
        feed(n, "data", 1.0);
        feed(n, "target", 0.2);
        n.clear_param_diffs();
        n.forward_backward().unwrap();
    }
    assert!(only.params()[0].asum_diff() > 0.0);
    for (p, q) in both.params().iter().zip(only.params()) {
        assert_close(&p.diff, &q.diff, 1e-6);
    }
}

#[test]
fn an_in_place_layer_that_declines_leaves_its_input_without_gradient() {
    let mut net = build(
        &format!(
            "layer:{INPUT}
  - {{ name: ip, type: InnerProduct, bottom: data, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: relu, type: ReLU, bottom: y, top: y, propagate_down: false }}
  - {{ name: loss, type: EuclideanLoss, bottom: [y, target], top: loss }}"
        ),
        Phase::Train,
    );
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.2);
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    assert_eq!(net.blob("y").unwrap().asum_diff(), 0.0);
    assert!(net.params().iter().all(|p| p.asum_diff() == 0.0));
}

#[test]
fn a_branch_that_reaches_no_loss_gets_no_backward() {
    let mut net = build(
        &format!(
            "layer:{INPUT}
  - {{ name: ip, type: InnerProduct, bottom: data, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: side, type: InnerProduct, bottom: data, top: s,
      inner_product_param: {{ num_output: 2, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: side_relu, type: ReLU, bottom: s, top: s }}
  - {{ name: loss, type: EuclideanLoss, bottom: [y, target], top: loss }}"
        ),
        Phase::Train,
    );
    feed(&mut net, "data", 1.0);
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    let need: Vec<(String, bool)> = net
        .layers()
        .iter()
        .map(|l| (l.name.clone(), l.need_backward))
        .collect();
    assert_eq!(
        need,
        vec![
            ("data".into(), false),
            ("ip".into(), true),
            ("side".into(), false),
            ("side_relu".into(), false),
            ("loss".into(), true),
        ]
    );
    assert!(param_of(&net, "ip", 0).asum_diff() > 0.0);
    assert_eq!(param_of(&net, "side", 0).asum_diff(), 0.0);
    assert_eq!(param_of(&net, "side", 1).asum_diff(), 0.0);
    assert_eq!(net.blob("s").unwrap().asum_diff(), 0.0);
    // Nobody needs the input's gradient.
    assert_eq!(net.blob("data").unwrap().asum_diff(), 0.0);
    // Outputs: the blobs nobody reads, sorted by name.
    assert_eq!(net.output_names(), vec!["loss", "s"]);
}

#[test]
fn force_backward_reaches_the_inputs_but_not_the_labels() {
    let yaml = |force: bool| {
        format!(
            "force_backward: {force}
layer:
  - {{ name: data, type: Input, top: [data, label], input_param: {{ shape: [ {{ dim: [2, 4] }}, {{ dim: [2] }} ] }} }}
  - {{ name: ip, type: InnerProduct, bottom: data, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: loss, type: SoftmaxWithLoss, bottom: [y, label], top: loss }}"
        )
    };
    for force in [false, true] {
        let mut net = build(&yaml(force), Phase::Train);
        feed(&mut net, "data", 1.0);
        net.blob_mut("label").unwrap().data = vec![0.0, 2.0];
        net.forward_backward().unwrap();
        let got = net.blob("data").unwrap().asum_diff() > 0.0;
        assert_eq!(got, force);
        assert_eq!(net.blob("label").unwrap().asum_diff(), 0.0);
        let loss = net.layers().iter().find(|l| l.name == "loss").unwrap();
        assert_eq!(loss.bottom_need_backward, vec![true, false]);
    }
}

#[test]
fn net_outputs_are_the_unconsumed_blobs() {
    let net = build(
        "layer:
  - { name: data, type: Input, top: [x, unused], input_param: { shape: [ { dim: [2, 3] }, { dim: [1] } ] } }
  - { name: prob, type: Softmax, bottom: x, top: prob }
  - { name: act, type: TanH, bottom: x, top: t }
  - { name: t2, type: TanH, bottom: t, top: t }",
        Phase::Test,
    );
    assert_eq!(net.output_names(), vec!["prob", "t", "unused"]);
    assert_eq!(net.input_names(), vec!["x", "unused"]);
}

/// Loss of the net at its current inputs and params.
fn loss_at(net: &mut Net) -> f64 {
    net.forward().unwrap() as f64
}

#[test]
fn whole_net_gradient_matches_finite_differences() {
    let yaml = format!(
        "force_backward: true
layer:{INPUT}
  - {{ name: ip1, type: InnerProduct, bottom: data, top: h,
      inner_product_param: {{ num_output: 5, weight_filler: {{ type: gaussian, std: 0.5 }}, bias_filler: {{ type: gaussian }} }} }}
  - {{ name: act, type: TanH, bottom: h, top: h }}
  - {{ name: ip2, type: InnerProduct, bottom: h, top: y,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian, std: 0.5 }} }} }}
  - {{ name: sig, type: Sigmoid, bottom: y, top: p }}
  - {{ name: loss, type: EuclideanLoss, bottom: [p, target], top: loss, loss_weight: 2 }}
  - {{ name: xent, type: SigmoidCrossEntropyLoss, bottom: [y, target], top: xent }}"
    );
    let mut net = build(&yaml, Phase::Train);
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.5);
    net.blob_mut("target")
        .unwrap()
        .data
        .iter_mut()
        .for_each(|t| *t = t.abs());
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    let data_grad = net.blob("data").unwrap().diff.clone();
    let param_grads: Vec<Vec<f32>> = net.params().iter().map(|p| p.diff.clone()).collect();
    let h = 1e-2f32;
    let close = |a: f32, n: f64| {
        let n = n as f32;
        assert!(
            (a - n).abs() <= 2e-3 * a.abs().max(n.abs()).max(1.0),
            "analytic {a} vs numeric {n}"
        );
    };
    let mut checked = 0;
    for (i, &g) in data_grad.iter().enumerate() {
        let x = net.blob("data").unwrap().data[i];
        net.blob_mut("data").unwrap().data[i] = x + h;
        let plus = loss_at(&mut net);
        net.blob_mut("data").unwrap().data[i] = x - h;
        let minus = loss_at(&mut net);
        net.blob_mut("data").unwrap().data[i] = x;
        close(g, (plus - minus) / (2.0 * h as f64));
        checked += 1;
    }
    for (pi, grad) in param_grads.iter().enumerate() {
        for (i, &g) in grad.iter().enumerate() {
            let w = net.params()[pi].data[i];
            net.params_mut()[pi].data[i] = w + h;
            let plus = loss_at(&mut net);
            net.params_mut()[pi].data[i] = w - h;
            let minus = loss_at(&mut net);
            net.params_mut()[pi].data[i] = w;
            close(g, (plus - minus) / (2.0 * h as f64));
            checked += 1;
        }
    }
    assert_eq!(checked, 8 + 4 * 5 + 5 + 5 * 3 + 3);
}

#[test]
fn shape_mismatch_names_both_layers_and_both_shapes() {
    let e = build_err(
        "layer:
  - { name: data, type: Input, top: [data, label], input_param: { shape: [ { dim: [8, 6] }, { dim: [4] } ] } }
  - { name: ip3, type: InnerProduct, bottom: data, top: ip3, inner_product_param: { num_output: 10 } }
  - { name: loss, type: SoftmaxWithLoss, bottom: [ip3, label], top: loss }",
    );
    assert!(
        e.starts_with("layer `loss` (type SoftmaxWithLoss): "),
        "{e}"
    );
    assert!(
        e.contains("bottoms: `ip3` 8x10 from layer `ip3`, `label` 4 from layer `data`"),
        "{e}"
    );
}

#[test]
fn repeated_layer_names_are_accepted_unless_one_has_weights() {
    // Caffe's mnist_autoencoder names two loss layers `loss`: fine, neither has weights.
    let ok = "layer:
  - { name: data, type: Input, top: [x, y], input_param: { shape: [ { dim: [2, 3] }, { dim: [2, 3] } ] } }
  - { name: loss, type: EuclideanLoss, bottom: [x, y], top: l1 }
  - { name: loss, type: SigmoidCrossEntropyLoss, bottom: [x, y], top: l2 }
";
    let net = build(ok, Phase::Train);
    assert_eq!(layer_names(&net), vec!["data", "loss", "loss"]);
    let bad = "layer:
  - { name: data, type: Input, top: x, input_param: { shape: { dim: [2, 3] } } }
  - { name: fc, type: InnerProduct, bottom: x, top: a, inner_product_param: { num_output: 2 } }
  - { name: fc, type: InnerProduct, bottom: x, top: b, inner_product_param: { num_output: 2 } }
";
    let e = build_err(bad);
    assert!(e.contains("two layers are named `fc`"), "{e}");
    assert!(e.contains("rename one of them"), "{e}");
}

fn build_error(yaml: &str) -> crema::Error {
    let mut rng = StdRng::seed_from_u64(5);
    match Net::for_phase(&param(yaml), Phase::Train, &mut rng) {
        Ok(_) => panic!("expected the net to be rejected"),
        Err(e) => e,
    }
}

#[test]
fn wiring_errors_are_structured() {
    let e = build_error(
        "layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [2, 3] } } }
  - { name: ip, type: InnerProduct, bottom: dta, top: ip, inner_product_param: { num_output: 2 } }",
    );
    assert!(
        matches!(&e, crema::Error::MissingBottom { layer, blob, suggestion, .. }
            if layer == "ip" && blob == "dta" && suggestion.as_deref() == Some("data")),
        "{e:?}"
    );
    let e = build_error(
        "layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [2, 3] } } }
  - { name: a, type: InnerProduct, bottom: data, top: out, inner_product_param: { num_output: 2 } }
  - { name: b, type: InnerProduct, bottom: data, top: out, inner_product_param: { num_output: 2 } }",
    );
    assert!(
        matches!(&e, crema::Error::DuplicateTop { layer, blob, producer, .. }
            if layer == "b" && blob == "out" && producer == "a"),
        "{e:?}"
    );
    let e = build_error(
        "layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [2, 3] } } }
  - { name: soft, type: Softmax, bottom: data, top: data }",
    );
    assert!(
        matches!(&e, crema::Error::BadInPlace { layer, ty, blob, reason }
            if layer == "soft" && ty == "Softmax" && blob == "data"
                && reason.contains("give the top a new name")),
        "{e:?}"
    );
}

#[test]
fn legacy_input_fields_in_memory_get_the_fix() {
    let mut p = param("input: data\ninput_dim: [2, 3, 1, 1]\nlayer:\n  - { name: relu, type: ReLU, bottom: data, top: r }");
    let mut rng = StdRng::seed_from_u64(5);
    let e = Net::for_phase(&p, Phase::Train, &mut rng)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("upgrade_inputs"), "{e}");
    crema::spec::upgrade_inputs(&mut p).unwrap();
    let net = Net::for_phase(&p, Phase::Train, &mut rng).unwrap();
    assert_eq!(net.blob("r").unwrap().shape, vec![2, 3, 1, 1]);
}

/// `h` is read by `ip1`, then a ReLU runs "in place" on it, then `ip2` reads it. `relu_top`
/// names the ReLU's top (`h` for in place, `r` for the explicit copy) and `ip2` reads it.
fn reader_before_inplace(relu_top: &str) -> String {
    format!(
        "layer:{INPUT}
  - {{ name: ip0, type: InnerProduct, bottom: data, top: h,
      inner_product_param: {{ num_output: 5, weight_filler: {{ type: gaussian }}, bias_filler: {{ type: gaussian }} }} }}
  - {{ name: ip1, type: InnerProduct, bottom: h, top: a,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: relu, type: ReLU, bottom: h, top: {relu_top} }}
  - {{ name: ip2, type: InnerProduct, bottom: {relu_top}, top: b,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: sum, type: Eltwise, bottom: [a, b], top: y }}
  - {{ name: loss, type: EuclideanLoss, bottom: [y, target], top: loss }}"
    )
}

fn layer_index(net: &Net, name: &str) -> usize {
    net.layers()
        .iter()
        .position(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

fn net_check(net: &mut Net) -> crema::testing::GradientReport {
    let checker = crema::testing::GradientChecker::default();
    net.check_net_gradients(&checker).unwrap()
}

#[test]
fn in_place_after_an_earlier_reader_writes_a_new_version() {
    let mut a = build(&reader_before_inplace("h"), Phase::Train);
    let mut b = build(&reader_before_inplace("r"), Phase::Train);
    let (ip1, relu, ip2) = (
        layer_index(&a, "ip1"),
        layer_index(&a, "relu"),
        layer_index(&a, "ip2"),
    );
    // The ReLU writes a second blob called `h`: ip1 keeps the first, ip2 reads the second.
    let l = a.layers();
    assert!(!l[relu].inplace);
    assert_eq!(l[relu].bottom, l[ip1].bottom);
    assert_eq!(l[relu].top, l[ip2].bottom);
    assert_ne!(l[ip1].bottom, l[ip2].bottom);
    assert_eq!(a.blobs().filter(|(n, _)| *n == "h").count(), 2);
    assert_eq!(a.blobs().count(), b.blobs().count());
    // Exactly the numbers of the net that names the copy.
    for n in [&mut a, &mut b] {
        feed(n, "data", 1.0);
        feed(n, "target", 0.5);
        n.clear_param_diffs();
    }
    assert_eq!(a.forward_backward().unwrap(), b.forward_backward().unwrap());
    assert!(a.params().iter().all(|p| p.asum_diff() > 0.0));
    for (pa, pb) in a.params().iter().zip(b.params()) {
        assert_eq!(pa.diff, pb.diff);
    }
    let report = net_check(&mut a);
    assert!(report.ok(), "{:?}", report.failures);
    assert!(
        report.max_rel_error < 1e-3 && report.checked > 60,
        "{report:?}"
    );
}

#[test]
fn the_whole_net_check_catches_the_old_in_place_wiring() {
    // Re-create by hand the wiring the builder used to produce for this net: the ReLU
    // overwrites the blob ip1 read, so ip1's backward sees post-ReLU data.
    let mut net = build(&reader_before_inplace("h"), Phase::Train);
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.5);
    let (relu, ip2) = (layer_index(&net, "relu"), layer_index(&net, "ip2"));
    let old = net.layers()[relu].bottom.clone();
    let l = net.layers_mut();
    l[relu].top = old.clone();
    l[relu].inplace = true;
    l[ip2].bottom = old;
    let report = net_check(&mut net);
    assert!(!report.ok());
    assert!(report.max_rel_error > 0.05, "{report:?}");
    assert!(
        report.failures.iter().any(|f| f.contains("param `ip1` 0")),
        "{:?}",
        report.failures
    );
}

#[test]
fn in_place_chains_stay_in_place() {
    let yaml = "layer:
  - { name: data, type: Input, top: [data, target], input_param: { shape: [ { dim: [2, 2, 5, 5] }, { dim: [2, 3, 5, 5] } ] } }
  - { name: conv, type: Convolution, bottom: data, top: c,
      convolution_param: { num_output: 3, kernel_size: 3, pad: 1, weight_filler: { type: gaussian } } }
  - { name: relu, type: ReLU, bottom: c, top: c }
  - { name: drop, type: Dropout, bottom: c, top: c }
  - { name: loss, type: EuclideanLoss, bottom: [c, target], top: loss }";
    let mut net = build(yaml, Phase::Train);
    let l = net.layers();
    let conv = layer_index(&net, "conv");
    for name in ["relu", "drop"] {
        let i = layer_index(&net, name);
        assert!(l[i].inplace, "{name}");
        assert_eq!(l[i].top, l[conv].top, "{name}");
    }
    // data, target, c, loss: no extra buffer.
    assert_eq!(net.blobs().count(), 4);
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.3);
    let report = net_check(&mut net);
    assert!(report.ok(), "{:?}", report.failures);
    assert!(report.checked > 100, "{report:?}");
}

#[test]
fn in_place_after_two_readers_keeps_both_on_the_old_version() {
    let yaml = format!(
        "force_backward: true
layer:{INPUT}
  - {{ name: pa, type: Power, bottom: data, top: a, power_param: {{ scale: 2 }} }}
  - {{ name: pb, type: Power, bottom: data, top: b, power_param: {{ power: 2 }} }}
  - {{ name: tanh, type: TanH, bottom: data, top: data }}
  - {{ name: pc, type: Power, bottom: data, top: c, power_param: {{ scale: -1 }} }}
  - {{ name: cat, type: Concat, bottom: [a, b, c], top: y, concat_param: {{ axis: 1 }} }}
  - {{ name: ip, type: InnerProduct, bottom: y, top: z,
      inner_product_param: {{ num_output: 3, weight_filler: {{ type: gaussian }} }} }}
  - {{ name: loss, type: EuclideanLoss, bottom: [z, target], top: loss }}"
    );
    let mut net = build(&yaml, Phase::Train);
    let l = net.layers();
    let (pa, pb, tanh, pc) = (
        layer_index(&net, "pa"),
        layer_index(&net, "pb"),
        layer_index(&net, "tanh"),
        layer_index(&net, "pc"),
    );
    assert_eq!(l[pa].bottom, l[pb].bottom);
    assert_eq!(l[tanh].bottom, l[pa].bottom);
    assert_eq!(l[pc].bottom, l[tanh].top);
    assert_ne!(l[pc].bottom, l[pa].bottom);
    // Feeding `data` by name reaches the input, reading it by name gives the current version.
    assert_eq!(net.input_index("data"), Some(l[pa].bottom[0]));
    assert_eq!(net.blob_index("data"), Some(l[pc].bottom[0]));
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.5);
    net.forward().unwrap();
    // `a` is 2 * the input, not 2 * tanh(input).
    let input: Vec<f32> = (0..8)
        .map(|i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let doubled: Vec<f32> = input.iter().map(|x| 2.0 * x).collect();
    assert_close(&net.blob("a").unwrap().data, &doubled, 1e-6);
    let negated: Vec<f32> = input.iter().map(|x| -x.tanh()).collect();
    assert_close(&net.blob("c").unwrap().data, &negated, 1e-6);
    let report = net_check(&mut net);
    assert!(report.ok(), "{:?}", report.failures);
    // The 8 input values, the 6 targets and the 3x12 + 3 parameters.
    assert_eq!(report.checked + report.skipped, 8 + 6 + 36 + 3);
}

#[test]
fn in_place_after_a_layer_whose_backward_reads_its_top_writes_a_new_version() {
    // Sigmoid's backward uses its output y; TanH "in place" on it must not overwrite y. ReLU
    // (whose derivative reads only y) then runs truly in place on TanH's version.
    let yaml = "layer:
  - { name: data, type: Input, top: [data, target], input_param: { shape: [ { dim: [2, 5] }, { dim: [2, 5] } ] } }
  - { name: sig, type: Sigmoid, bottom: data, top: s }
  - { name: tanh, type: TanH, bottom: s, top: s }
  - { name: relu, type: ReLU, bottom: s, top: s }
  - { name: loss, type: EuclideanLoss, bottom: [s, target], top: loss }
force_backward: true";
    let mut net = build(yaml, Phase::Train);
    let inplace: Vec<bool> = net.layers().iter().map(|l| l.inplace).collect();
    assert_eq!(inplace, vec![false, false, false, false, false]);
    // data, target, Sigmoid's s, TanH's s (which ReLU does not overwrite either: TanH's
    // backward reads it), ReLU's s, loss.
    assert_eq!(net.blobs().count(), 6);
    feed(&mut net, "data", 1.0);
    feed(&mut net, "target", 0.3);
    let report = net_check(&mut net);
    assert!(report.ok(), "{:?}", report.failures);
}
