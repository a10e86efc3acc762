//! The net's memory plan: gradient buffers are allocated only when backward can run, and the
//! numbers do not depend on when that happened.

use crema::proto::{NetParameter, Phase};
use crema::spec::from_yaml_str;
use crema::testing::assert_close;
use crema::Net;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// x (2x3) -> InnerProduct (2 outputs, with bias) -> y; EuclideanLoss against t (TRAIN only).
const NET: &str = "
force_backward: true
layer:
  - name: data
    type: Input
    top: [x, t]
    input_param: { shape: [ { dim: [2, 3] }, { dim: [2, 2] } ] }
  - { name: ip, type: InnerProduct, bottom: x, top: y,
      inner_product_param: { num_output: 2, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } } }
  - { name: loss, type: EuclideanLoss, bottom: [y, t], top: loss, include: { phase: TRAIN } }
  - { name: silence, type: Silence, bottom: t, include: { phase: TEST } }
";

const X: [f32; 6] = [0.5, -1.0, 2.0, 1.5, 0.25, -0.75];
const T: [f32; 4] = [1.0, -2.0, 0.5, 0.0];

fn build(phase: Phase) -> Net {
    let p = from_yaml_str::<NetParameter>(NET, "<memory net>").unwrap_or_else(|e| panic!("{e}"));
    let mut net = Net::for_phase(&p, phase, &mut StdRng::seed_from_u64(3)).unwrap();
    net.blob_mut("x").unwrap().data.copy_from_slice(&X);
    net.blob_mut("t").unwrap().data.copy_from_slice(&T);
    net
}

#[test]
fn a_forward_only_net_holds_no_gradient_memory() {
    let mut net = build(Phase::Test);
    net.forward().unwrap();
    let m = net.memory_use();
    // Blobs x (6), t (4), y (4); learnable W (2x3) and b (2); four bytes a value.
    assert_eq!(m.blob_data, (6 + 4 + 4) * 4);
    assert_eq!(m.param_data, (6 + 2) * 4);
    assert_eq!((m.blob_diff, m.param_diff), (0, 0));
    assert_eq!(m.total(), (6 + 4 + 4 + 6 + 2) * 4);
    assert!(net.blobs().all(|(_, b)| !b.has_diff() && b.diff.is_empty()));
    // Forward again (reshapes every top): still nothing.
    net.forward().unwrap();
    assert_eq!(net.memory_use(), m);
    // Asking for them allocates zeros of the right size.
    net.ensure_diffs();
    let m = net.memory_use();
    assert_eq!((m.blob_diff, m.param_diff), ((6 + 4 + 4) * 4, (6 + 2) * 4));
    assert!(net
        .params()
        .iter()
        .all(|p| p.diff.iter().all(|&d| d == 0.0)));
}

#[test]
fn the_first_backward_allocates_and_computes_the_gradients() {
    let mut net = build(Phase::Train);
    let loss = net.forward().unwrap();
    assert_eq!(net.memory_use().param_diff, 0);
    net.backward().unwrap();
    let (w, b) = (net.params()[0].data.clone(), net.params()[1].data.clone());
    // An f64 reference: y = x W^T + b, loss = |y - t|^2 / (2 N), dy = (y - t) / N.
    let mut dy = [0f64; 4];
    let mut want_loss = 0f64;
    for i in 0..2 {
        for o in 0..2 {
            let y: f64 = (0..3)
                .map(|k| X[i * 3 + k] as f64 * w[o * 3 + k] as f64)
                .sum::<f64>()
                + b[o] as f64;
            let r = y - T[i * 2 + o] as f64;
            want_loss += r * r / 4.0;
            dy[i * 2 + o] = r / 2.0;
        }
    }
    assert!((loss as f64 - want_loss).abs() < 1e-5 * want_loss.max(1.0));
    let dw: Vec<f32> = (0..6)
        .map(|j| {
            (0..2)
                .map(|i| dy[i * 2 + j / 3] * X[i * 3 + j % 3] as f64)
                .sum::<f64>() as f32
        })
        .collect();
    let db: Vec<f32> = (0..2).map(|o| (dy[o] + dy[2 + o]) as f32).collect();
    let dx: Vec<f32> = (0..6)
        .map(|j| {
            (0..2)
                .map(|o| dy[(j / 3) * 2 + o] * w[o * 3 + j % 3] as f64)
                .sum::<f64>() as f32
        })
        .collect();
    assert_close(&net.params()[0].diff, &dw, 1e-5);
    assert_close(&net.params()[1].diff, &db, 1e-5);
    assert_close(&net.blob("x").unwrap().diff, &dx, 1e-5);
    let m = net.memory_use();
    assert_eq!((m.blob_diff, m.param_diff), (m.blob_data, m.param_data));

    // The same net with its buffers allocated up front gives the same numbers.
    let mut eager = build(Phase::Train);
    eager.ensure_diffs();
    eager.forward_backward().unwrap();
    for (a, b) in net.params().iter().zip(eager.params()) {
        assert_eq!(a.diff, b.diff);
    }
    assert_eq!(net.blob("x").unwrap().diff, eager.blob("x").unwrap().diff);
}

#[test]
fn clearing_param_diffs_allocates_them_for_the_solver() {
    let mut net = build(Phase::Train);
    net.clear_param_diffs();
    let m = net.memory_use();
    assert_eq!((m.blob_diff, m.param_diff), (0, (6 + 2) * 4));
    assert!(net
        .params()
        .iter()
        .all(|p| p.diff.iter().all(|&d| d == 0.0)));
}

/// A chain with in place, fan-out and a second loss: x -> ip1 -> relu (in place) -> ip2 -> y,
/// and h also feeds ip3 -> z; both y and z have Euclidean losses.
const CHAIN: &str = "
force_backward: true
layer:
  - name: data
    type: Input
    top: [x, t, u]
    input_param: { shape: [ { dim: [3, 4] }, { dim: [3, 2] }, { dim: [3, 5] } ] }
  - { name: ip1, type: InnerProduct, bottom: x, top: h,
      inner_product_param: { num_output: 6, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } } }
  - { name: relu, type: ReLU, bottom: h, top: h }
  - { name: ip2, type: InnerProduct, bottom: h, top: y,
      inner_product_param: { num_output: 2, weight_filler: { type: gaussian } } }
  - { name: ip3, type: InnerProduct, bottom: h, top: z,
      inner_product_param: { num_output: 5, weight_filler: { type: gaussian } } }
  - { name: loss, type: EuclideanLoss, bottom: [y, t], top: loss }
  - { name: loss2, type: EuclideanLoss, bottom: [z, u], top: loss2 }
";

fn chain() -> Net {
    let p = from_yaml_str::<NetParameter>(CHAIN, "<chain>").unwrap_or_else(|e| panic!("{e}"));
    let mut net = Net::for_phase(&p, Phase::Train, &mut StdRng::seed_from_u64(9)).unwrap();
    for (name, s) in [("x", 1.0f32), ("t", 0.5), ("u", -0.3)] {
        for (i, v) in net.blob_mut(name).unwrap().data.iter_mut().enumerate() {
            *v = s * (((i * 7 + 3) % 11) as f32 / 5.0 - 1.0);
        }
    }
    net
}

#[test]
fn passing_dead_diffs_along_gives_the_same_gradients_in_less_memory() {
    let mut plain = chain();
    let mut lean = chain();
    lean.reuse_dead_diffs(&["x"]).unwrap();
    assert!(lean.reuse_dead_diffs(&["nope"]).is_err());
    for _ in 0..2 {
        let (a, b) = (plain.forward().unwrap(), lean.forward().unwrap());
        assert_eq!(a, b);
        plain.backward().unwrap();
        lean.backward().unwrap();
        for (p, q) in plain.params().iter().zip(lean.params()) {
            assert_eq!(p.diff, q.diff);
        }
        // The kept input's gradient is there; h's buffer went back to the pool.
        assert_eq!(plain.blob("x").unwrap().diff, lean.blob("x").unwrap().diff);
        assert!(plain.blob("x").unwrap().asum_diff() > 0.0);
        assert!(lean.blob("h").unwrap().diff.is_empty());
    }
    let (p, l) = (plain.memory_use(), lean.memory_use());
    assert_eq!(p.param_diff, l.param_diff);
    // All diffs: x 12, t 6, u 15, h 18, y 6, z 15, two losses 1 each. Kept: x, the losses;
    // the rest share three buffers: z and u live together (15, 15), then t takes u's and y a
    // third (6), then h grows u's to 18.
    assert_eq!(p.blob_diff, (12 + 6 + 15 + 18 + 6 + 15 + 1 + 1) * 4);
    assert_eq!(l.blob_diff, (12 + 1 + 1 + 18 + 15 + 6) * 4, "{l:?}");
    // The whole-net gradient check still sees every gradient.
    let report = lean
        .check_net_gradients(&crema::testing::GradientChecker::default())
        .unwrap();
    assert!(report.ok(), "{report:?}");
}
