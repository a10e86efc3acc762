//! Solver integration tests: every update rule against a closed-form reference written here,
//! iter_size accumulation, snapshot/resume, caffemodel round trip, training to an accuracy.

use crema::proto::{NetParameter, Phase, SolverParameter};
use crema::solver::{Event, FeedCtx, Solver};
use crema::Net;
use std::cell::RefCell;
use std::rc::Rc;

const N: usize = 4;
const D: usize = 3;
const C: usize = 3;

/// One InnerProduct layer into a softmax loss: small enough that the gradient is written by
/// hand below. Bias: lr_mult 2, decay_mult 0 (Caffe's usual setting).
fn lsq_net(batch: usize) -> NetParameter {
    let yaml = format!(
        r#"
name: lsq
layer:
  - name: data
    type: Input
    top: [data, label]
    input_param: {{ shape: [ {{ dim: [{batch}, {D}] }}, {{ dim: [{batch}] }} ] }}
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    param: [ {{ lr_mult: 1, decay_mult: 1 }}, {{ lr_mult: 2, decay_mult: 0 }} ]
    inner_product_param:
      num_output: {C}
      weight_filler: {{ type: gaussian, std: 0.5 }}
      bias_filler: {{ type: constant, value: 0.1 }}
  - name: loss
    type: SoftmaxWithLoss
    bottom: [ip, label]
    top: loss
"#
    );
    crema::spec::from_yaml_str(&yaml, "lsq").unwrap()
}

/// The least-squares twin of [`lsq_net`]: InnerProduct into EuclideanLoss against a target.
fn euclid_net(batch: usize) -> NetParameter {
    let yaml = format!(
        r#"
name: euclid
layer:
  - name: data
    type: Input
    top: [data, target]
    input_param: {{ shape: [ {{ dim: [{batch}, {D}] }}, {{ dim: [{batch}, {C}] }} ] }}
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    param: [ {{ lr_mult: 1, decay_mult: 1 }}, {{ lr_mult: 2, decay_mult: 0 }} ]
    inner_product_param:
      num_output: {C}
      weight_filler: {{ type: gaussian, std: 0.5 }}
      bias_filler: {{ type: constant, value: 0.1 }}
  - name: loss
    type: EuclideanLoss
    bottom: [ip, target]
    top: loss
"#
    );
    crema::spec::from_yaml_str(&yaml, "euclid").unwrap()
}

/// Regression targets for the rows of `x`: a fixed linear map plus an offset per output.
fn targets(x: &[f32]) -> Vec<f32> {
    let mut t = Vec::new();
    for row in x.chunks(D) {
        for c in 0..C {
            t.push(
                (0..D)
                    .map(|j| row[j] * (0.3 * (c + 1) as f32 - 0.2 * j as f32))
                    .sum::<f32>()
                    + 0.5 * c as f32,
            );
        }
    }
    t
}

fn feed_euclid(net: &mut Net, iter: i32, row0: usize, n: usize) {
    let (x, _) = batch(iter, row0, n);
    net.blob_mut("target")
        .unwrap()
        .data
        .copy_from_slice(&targets(&x));
    net.blob_mut("data").unwrap().data.copy_from_slice(&x);
}

/// Gradient of `sum ||x W^T + b - t||^2 / (2N)` (f64).
fn euclid_grads(w: &[f64], b: &[f64], x: &[f32], t: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / D;
    let mut gw = vec![0.0; C * D];
    let mut gb = vec![0.0; C];
    for i in 0..n {
        for c in 0..C {
            let y = b[c]
                + (0..D)
                    .map(|j| w[c * D + j] * x[i * D + j] as f64)
                    .sum::<f64>();
            let r = (y - t[i * C + c] as f64) / n as f64;
            gb[c] += r;
            for j in 0..D {
                gw[c * D + j] += r * x[i * D + j] as f64;
            }
        }
    }
    (gw, gb)
}

/// Deterministic batch for iteration `iter`, rows `row0..row0+n`.
fn batch(iter: i32, row0: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for r in row0..row0 + n {
        for j in 0..D {
            x.push(((r * D + j) as f32 * 1.3 + iter as f32 * 0.7).sin() * 2.0);
        }
        y.push(((r + iter as usize) % C) as f32);
    }
    (x, y)
}

fn feed_rows(net: &mut Net, iter: i32, row0: usize, n: usize) {
    let (x, y) = batch(iter, row0, n);
    net.blob_mut("data").unwrap().data.copy_from_slice(&x);
    net.blob_mut("label").unwrap().data.copy_from_slice(&y);
}

fn solver_from(extra: &str, net: NetParameter) -> Solver {
    let text = format!("random_seed: 1701\nsnapshot_after_train: false\nmax_iter: 100\n{extra}");
    let mut p: SolverParameter = crema::spec::from_yaml_str(&text, "solver").unwrap();
    p.net_param = Some(net);
    Solver::new(p).unwrap()
}

/// Gradient of the mean softmax loss of `x W^T + b` (f64).
fn softmax_grads(w: &[f64], b: &[f64], x: &[f32], y: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let n = y.len();
    let mut gw = vec![0.0; C * D];
    let mut gb = vec![0.0; C];
    for i in 0..n {
        let logits: Vec<f64> = (0..C)
            .map(|c| {
                b[c] + (0..D)
                    .map(|j| w[c * D + j] * x[i * D + j] as f64)
                    .sum::<f64>()
            })
            .collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for c in 0..C {
            let d = (e[c] / s - if y[i] as usize == c { 1.0 } else { 0.0 }) / n as f64;
            gb[c] += d;
            for j in 0..D {
                gw[c * D + j] += d * x[i * D + j] as f64;
            }
        }
    }
    (gw, gb)
}

#[derive(Clone, Copy)]
struct Cfg {
    ty: &'static str,
    lr: f64,
    momentum: f64,
    momentum2: f64,
    delta: f64,
    rms_decay: f64,
    wd: f64,
    l1: bool,
    clip: f64,
    /// step policy: gamma 0.5 every 2 iterations when true.
    step: bool,
}

const BASE: Cfg = Cfg {
    ty: "SGD",
    lr: 0.1,
    momentum: 0.0,
    momentum2: 0.999,
    delta: 1e-8,
    rms_decay: 0.99,
    wd: 0.0,
    l1: false,
    clip: -1.0,
    step: false,
};

impl Cfg {
    fn yaml(&self) -> String {
        let mut s = format!(
            "type: {}\nbase_lr: {}\nmomentum: {}\nmomentum2: {}\ndelta: {}\nrms_decay: {}\n\
             weight_decay: {}\nregularization_type: {}\nclip_gradients: {}\n",
            self.ty,
            self.lr,
            self.momentum,
            self.momentum2,
            self.delta,
            self.rms_decay,
            self.wd,
            if self.l1 { "L1" } else { "L2" },
            self.clip
        );
        if self.step {
            s += "lr_policy: step\ngamma: 0.5\nstepsize: 2\n";
        } else {
            s += "lr_policy: fixed\n";
        }
        s
    }
}

/// Runs `iters` updates of the rule in f64, straight from CAFFE_REFERENCE §3.4.
fn reference(cfg: Cfg, w0: &[f32], b0: &[f32], iters: i32, euclid: bool) -> (Vec<f64>, Vec<f64>) {
    let mut p = [
        w0.iter().map(|&v| v as f64).collect::<Vec<f64>>(),
        b0.iter().map(|&v| v as f64).collect::<Vec<f64>>(),
    ];
    let mults = [(1.0, 1.0), (2.0, 0.0)];
    let mut h1 = [vec![0.0; C * D], vec![0.0; C]];
    let mut h2 = h1.clone();
    let mut clipped = 0;
    for t in 0..iters {
        let rate = if cfg.step {
            cfg.lr * 0.5f64.powi(t / 2)
        } else {
            cfg.lr
        };
        let (x, y) = batch(t, 0, N);
        let (gw, gb) = if euclid {
            euclid_grads(&p[0], &p[1], &x, &targets(&x))
        } else {
            softmax_grads(&p[0], &p[1], &x, &y)
        };
        let mut g = [gw, gb];
        if cfg.clip >= 0.0 {
            let norm = g.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
            if norm > cfg.clip {
                clipped += 1;
                g.iter_mut().flatten().for_each(|v| *v *= cfg.clip / norm);
            }
        }
        for k in 0..2 {
            let (lr_mult, decay_mult) = mults[k];
            let lr = rate * lr_mult;
            let decay = cfg.wd * decay_mult;
            for i in 0..p[k].len() {
                let w = p[k][i];
                let mut gi = g[k][i];
                gi += if cfg.l1 {
                    decay * w.signum() * (w != 0.0) as i32 as f64
                } else {
                    decay * w
                };
                let (h, hh) = (&mut h1[k][i], &mut h2[k][i]);
                let step = match cfg.ty {
                    "SGD" => {
                        *h = cfg.momentum * *h + lr * gi;
                        *h
                    }
                    "Nesterov" => {
                        let old = *h;
                        *h = cfg.momentum * *h + lr * gi;
                        (1.0 + cfg.momentum) * *h - cfg.momentum * old
                    }
                    "AdaGrad" => {
                        *h += gi * gi;
                        lr * gi / (h.sqrt() + cfg.delta)
                    }
                    "RMSProp" => {
                        *h = cfg.rms_decay * *h + (1.0 - cfg.rms_decay) * gi * gi;
                        lr * gi / (h.sqrt() + cfg.delta)
                    }
                    "AdaDelta" => {
                        let rho = cfg.momentum;
                        *h = rho * *h + (1.0 - rho) * gi * gi;
                        let u = gi * ((*hh + cfg.delta) / (*h + cfg.delta)).sqrt();
                        *hh = rho * *hh + (1.0 - rho) * u * u;
                        lr * u
                    }
                    "Adam" => {
                        let (b1, b2) = (cfg.momentum, cfg.momentum2);
                        *h = b1 * *h + (1.0 - b1) * gi;
                        *hh = b2 * *hh + (1.0 - b2) * gi * gi;
                        let tt = t + 1;
                        let corr = (1.0 - b2.powi(tt)).sqrt() / (1.0 - b1.powi(tt));
                        lr * corr * *h / (hh.sqrt() + cfg.delta)
                    }
                    other => panic!("{other}"),
                };
                p[k][i] = w - step;
            }
        }
    }
    assert!(
        cfg.clip < 0.0 || clipped > 0,
        "clip_gradients {} never active",
        cfg.clip
    );
    let [w, b] = p;
    (w, b)
}

/// Checks the rule on the least-squares problem and on the softmax one.
fn check_rule(cfg: Cfg) {
    check_rule_on(cfg, true);
    check_rule_on(cfg, false);
}

fn check_rule_on(cfg: Cfg, euclid: bool) {
    let iters = 6;
    let mut s = if euclid {
        let mut s = solver_from(&cfg.yaml(), euclid_net(N));
        s.set_feeder(|net: &mut Net, c: &FeedCtx| {
            feed_euclid(net, c.iter, 0, N);
            Ok(())
        });
        s
    } else {
        let mut s = solver_from(&cfg.yaml(), lsq_net(N));
        s.set_feeder(|net: &mut Net, c: &FeedCtx| {
            feed_rows(net, c.iter, 0, N);
            Ok(())
        });
        s
    };
    let w0 = s.net().params()[0].data.clone();
    let b0 = s.net().params()[1].data.clone();
    assert!(w0.iter().any(|&v| v != 0.0));
    s.step(iters).unwrap();
    let (w, b) = reference(cfg, &w0, &b0, iters, euclid);
    let got_w = &s.net().params()[0].data;
    let got_b = &s.net().params()[1].data;
    let moved: f64 = w.iter().zip(&w0).map(|(a, &b)| (a - b as f64).abs()).sum();
    assert!(moved > 1e-3, "{}: weights barely moved ({moved})", cfg.ty);
    for (got, want) in got_w
        .iter()
        .chain(got_b.iter())
        .zip(w.iter().chain(b.iter()))
    {
        assert!(
            (*got as f64 - want).abs() <= 2e-5 * want.abs().max(1.0),
            "{} ({}, euclid {euclid}): got {got}, reference {want}\n got w {got_w:?} b {got_b:?}\n want w {w:?} b {b:?}",
            cfg.ty,
            cfg.yaml().replace('\n', " ")
        );
    }
    assert_eq!(s.iter(), iters);
}

#[test]
fn sgd_momentum_l2_step_policy() {
    check_rule(Cfg {
        momentum: 0.9,
        wd: 0.01,
        step: true,
        ..BASE
    });
}

#[test]
fn sgd_l1_with_clipping() {
    // The gradient norm here is ~0.5-1, so clip 0.1 is active.
    check_rule(Cfg {
        momentum: 0.5,
        wd: 0.05,
        l1: true,
        clip: 0.1,
        ..BASE
    });
}

#[test]
fn nesterov() {
    check_rule(Cfg {
        ty: "Nesterov",
        momentum: 0.9,
        wd: 0.01,
        ..BASE
    });
}

#[test]
fn adagrad() {
    check_rule(Cfg {
        ty: "AdaGrad",
        wd: 0.01,
        ..BASE
    });
}

#[test]
fn rmsprop() {
    check_rule(Cfg {
        ty: "RMSProp",
        rms_decay: 0.9,
        wd: 0.01,
        lr: 0.01,
        ..BASE
    });
}

#[test]
fn adadelta() {
    check_rule(Cfg {
        ty: "AdaDelta",
        lr: 1.0,
        momentum: 0.95,
        delta: 1e-6,
        wd: 0.01,
        ..BASE
    });
}

#[test]
fn adam_l1_clip() {
    check_rule(Cfg {
        ty: "Adam",
        lr: 0.01,
        momentum: 0.9,
        wd: 0.01,
        l1: true,
        clip: 0.2,
        step: true,
        ..BASE
    });
}

#[test]
fn iter_size_two_equals_double_batch() {
    for ty in ["SGD", "Adam"] {
        let cfg = Cfg {
            ty,
            momentum: 0.9,
            wd: 0.01,
            ..BASE
        };
        // Batch 2B, iter_size 1.
        let mut big = solver_from(&cfg.yaml(), euclid_net(2 * N));
        big.set_feeder(|net: &mut Net, c: &FeedCtx| {
            feed_euclid(net, c.iter, 0, 2 * N);
            Ok(())
        });
        // Batch B, iter_size 2: pass k gets rows k*B..(k+1)*B of the same big batch.
        let mut small = solver_from(&format!("{}iter_size: 2\n", cfg.yaml()), euclid_net(N));
        small.set_feeder(|net: &mut Net, c: &FeedCtx| {
            feed_euclid(net, c.iter, c.pass * N, N);
            Ok(())
        });
        assert_eq!(big.net().params()[0].data, small.net().params()[0].data);
        big.step(5).unwrap();
        small.step(5).unwrap();
        for (a, b) in big.net().params().iter().zip(small.net().params()) {
            for (x, y) in a.data.iter().zip(&b.data) {
                assert!((x - y).abs() < 1e-6, "{ty}: {:?} vs {:?}", a.data, b.data);
            }
        }
    }
}

/// A two-layer MLP on 2-D points for resume and accuracy tests.
fn mlp_net(batch: usize) -> NetParameter {
    let yaml = format!(
        r#"
name: blobs
layer:
  - name: data
    type: Input
    top: [data, label]
    input_param: {{ shape: [ {{ dim: [{batch}, 2] }}, {{ dim: [{batch}] }} ] }}
  - name: ip1
    type: InnerProduct
    bottom: data
    top: ip1
    inner_product_param: {{ num_output: 16, weight_filler: {{ type: xavier }} }}
  - {{ name: relu1, type: ReLU, bottom: ip1, top: ip1 }}
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: ip2
    inner_product_param: {{ num_output: 4, weight_filler: {{ type: xavier }} }}
  - {{ name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss }}
  - name: accuracy
    type: Accuracy
    bottom: [ip2, label]
    top: accuracy
    include: {{ phase: TEST }}
"#
    );
    crema::spec::from_yaml_str(&yaml, "blobs").unwrap()
}

/// Four Gaussian blobs at the corners of a square; class = corner. Deterministic per (seed, i).
fn point(seed: u64, i: usize) -> ([f32; 2], f32) {
    let h = |k: u64| {
        let mut z = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
            .wrapping_add(k);
        z ^= z >> 31;
        z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 29;
        (z >> 11) as f32 / (1u64 << 53) as f32
    };
    let class = (h(1) * 4.0) as usize % 4;
    let (cx, cy) = [(1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)][class];
    let noise = |a: f32, b: f32| (-2.0 * a.max(1e-7).ln()).sqrt() * (6.2831855 * b).cos() * 0.35;
    (
        [cx + noise(h(2), h(3)), cy + noise(h(4), h(5))],
        class as f32,
    )
}

fn feed_points(net: &mut Net, c: &FeedCtx) -> crema::Result<()> {
    let n = net.blob("label").unwrap().count();
    let seed = if c.phase == Phase::Train { 1 } else { 2 };
    let base = (c.iter as usize * 7 + c.pass) * n;
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let (p, l) = point(seed, base + i);
        x.extend_from_slice(&p);
        y.push(l);
    }
    net.blob_mut("data").unwrap().data.copy_from_slice(&x);
    net.blob_mut("label").unwrap().data.copy_from_slice(&y);
    Ok(())
}

#[test]
fn mlp_learns_four_blobs() {
    let mut p: SolverParameter = crema::spec::from_yaml_str(
        "base_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: inv\ngamma: 0.0001\n\
         power: 0.75\nmax_iter: 150\ntest_iter: 10\ntest_interval: 150\ndisplay: 50\n\
         random_seed: 3\nsnapshot_after_train: false",
        "s",
    )
    .unwrap();
    p.net_param = Some(mlp_net(32));
    let mut s = Solver::new(p).unwrap();
    s.set_feeder(feed_points);
    let tested = Rc::new(RefCell::new(Vec::new()));
    let t2 = tested.clone();
    s.set_observer(move |e: &Event| {
        if let Event::Tested { iter, outputs, .. } = e {
            for o in outputs.iter() {
                t2.borrow_mut().push((*iter, o.name.clone(), o.values[0]));
            }
        }
    });
    s.solve(None).unwrap();
    let t = tested.borrow();
    // test_initialization (default true) tests at 0; the final test at 150.
    let acc: Vec<_> = t.iter().filter(|(_, n, _)| n == "accuracy").collect();
    assert_eq!(acc.len(), 2, "{t:?}");
    assert_eq!(acc[1].0, 150);
    assert!(
        acc[1].2 >= 0.97,
        "accuracy after 150 iterations: {}",
        acc[1].2
    );
    assert!(s.smoothed_loss() < 0.2, "loss {}", s.smoothed_loss());
}

fn resume_solver(ty: &str, dir: &std::path::Path, max_iter: i32) -> Solver {
    let text = format!(
        "type: {ty}\nbase_lr: 0.05\nmomentum: 0.9\nweight_decay: 0.001\nlr_policy: multistep\n\
         gamma: 0.5\nstepvalue: [3, 7, 12]\nmax_iter: {max_iter}\nsnapshot: 5\nrandom_seed: 11\n\
         snapshot_prefix: {}/run\ndisplay: 0\naverage_loss: 3",
        dir.display()
    );
    let mut p: SolverParameter = crema::spec::from_yaml_str(&text, "s").unwrap();
    p.net_param = Some(mlp_net(8));
    let mut s = Solver::new(p).unwrap();
    s.set_feeder(feed_points);
    s
}

#[test]
fn snapshot_resume_is_bit_identical() {
    for ty in ["SGD", "Adam"] {
        let dir = tempfile::tempdir().unwrap();
        let mut full = resume_solver(ty, dir.path(), 10);
        full.solve(None).unwrap();
        // Run 5 (snapshot at 5), then a fresh solver resumes from it and runs to 10.
        let dir2 = tempfile::tempdir().unwrap();
        let mut first = resume_solver(ty, dir2.path(), 5);
        first.solve(None).unwrap();
        let state = dir2.path().join("run_iter_5.solverstate");
        assert!(state.exists());
        let mut second = resume_solver(ty, dir2.path(), 10);
        second.solve(Some(&state)).unwrap();
        assert_eq!(second.iter(), 10);
        assert_eq!(full.current_step(), second.current_step());
        assert_eq!(full.current_step(), 2);
        for (a, b) in full.net().params().iter().zip(second.net().params()) {
            assert_eq!(a.data, b.data, "{ty}: weights differ after resume");
        }
        assert_eq!(full.history().len(), second.history().len());
        for (a, b) in full.history().iter().zip(second.history()) {
            assert_eq!(a.data, b.data, "{ty}: history differs after resume");
        }
    }
}

#[test]
fn caffemodel_decodes_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = resume_solver("SGD", dir.path(), 5);
    s.solve(None).unwrap();
    let path = dir.path().join("run_iter_5.caffemodel");
    let bytes = std::fs::read(&path).unwrap();
    let np = <NetParameter as prost::Message>::decode(bytes.as_slice()).unwrap();
    let with_blobs: Vec<_> = np
        .layer
        .iter()
        .filter(|l| !l.blobs.is_empty())
        .map(|l| (l.name().to_string(), l.blobs.len()))
        .collect();
    assert_eq!(
        with_blobs,
        vec![("ip1".to_string(), 2), ("ip2".to_string(), 2)]
    );
    assert_eq!(
        np.layer[1].blobs[0].shape.as_ref().unwrap().dim,
        vec![16i64, 2]
    );
    // Loads into a freshly built net (other seed) and reproduces the weights exactly.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(99);
    let mut fresh = Net::for_phase(&mlp_net(8), Phase::Test, &mut rng).unwrap();
    let report = fresh
        .copy_trained_layers_from(&crema::caffe::caffemodel::read(&path).unwrap(), "x")
        .unwrap();
    assert_eq!(report.copied, vec!["ip1", "ip2"]);
    for (a, b) in fresh.params().iter().zip(s.net().params()) {
        assert_eq!(a.data, b.data);
    }
    // The solverstate points at the caffemodel and holds one history blob per param.
    let st = <crema::proto::SolverState as prost::Message>::decode(
        std::fs::read(dir.path().join("run_iter_5.solverstate"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(st.iter(), 5);
    assert_eq!(st.history.len(), 4);
    assert!(st.learned_net().ends_with("run_iter_5.caffemodel"));
}

#[test]
fn failed_snapshot_write_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.caffemodel");
    crema::caffe::write_atomic(&target, b"good").unwrap();
    // A write that fails half-way (its temporary file cannot be renamed over a directory we
    // put in its place) must leave no partial file under the final name.
    let blocked = dir.path().join("blocked.caffemodel");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("x"), b"x").unwrap();
    assert!(crema::caffe::write_atomic(&blocked, b"new").is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"good");
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    // Overwriting goes through a temporary file: the old content is there until the rename.
    crema::caffe::write_atomic(&target, b"better").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"better");
}

#[test]
fn diverging_training_names_the_layer_and_keeps_weights_finite() {
    let mut p: SolverParameter = crema::spec::from_yaml_str(
        "base_lr: 1e30\nmomentum: 0.9\nweight_decay: 0.0005\nmax_iter: 50\nrandom_seed: 1\n\
         snapshot_after_train: false",
        "s",
    )
    .unwrap();
    p.net_param = Some(mlp_net(8));
    let mut s = Solver::new(p).unwrap();
    s.set_feeder(feed_points);
    let e = s.solve(None).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, crema::Error::NotFinite(_)), "{text}");
    assert!(text.contains("diverged at iteration"), "{text}");
    assert!(text.contains("layer `ip"), "{text}");
    for p in s.net().params() {
        assert!(p.data.iter().all(|v| v.is_finite()));
    }
}

/// Caffe's own LeNet solver files: the policies and types they name, at a few iterations.
#[test]
fn caffe_lenet_solvers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/prototxt/examples/mnist");
    let read = |f: &str| -> SolverParameter {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let desc = crema::spec::descriptor::<SolverParameter>();
        let mut p: SolverParameter = prost_reflect::DynamicMessage::parse_text_format(desc, &text)
            .unwrap()
            .transcode_to()
            .unwrap();
        crema::spec::upgrade_solver_type(&mut p).unwrap();
        p
    };
    let rate = |p: &SolverParameter, iters: &[i32]| -> Vec<f32> {
        let pol = crema::solver::LrPolicy::from_solver(p).unwrap();
        let mut step = 0;
        iters
            .iter()
            .map(|&i| pol.rate(p.base_lr(), i, &mut step))
            .collect()
    };
    use crema::solver::SolverType;
    let lenet = read("lenet_solver.prototxt");
    let r = rate(&lenet, &[0, 5000, 10000]);
    for (got, want) in r
        .iter()
        .zip([0.01, 0.01 * 1.5f64.powf(-0.75), 0.01 * 2f64.powf(-0.75)])
    {
        assert!((*got as f64 - want).abs() < 1e-8, "{r:?}");
    }
    let ms = read("lenet_multistep_solver.prototxt");
    let r = rate(&ms, &[0, 4999, 5000, 7000, 8000, 9000, 9500]);
    let want = [0.01, 0.01, 0.009, 0.0081, 0.00729, 0.006561, 0.0059049];
    for (got, w) in r.iter().zip(want) {
        assert!((*got as f64 - w).abs() < 1e-8, "{r:?}");
    }
    for (f, ty) in [
        ("lenet_solver_adam.prototxt", SolverType::Adam),
        ("lenet_solver_rmsprop.prototxt", SolverType::RmsProp),
        ("lenet_adadelta_solver.prototxt", SolverType::AdaDelta),
    ] {
        let p = read(f);
        assert_eq!(SolverType::parse(p.r#type()).unwrap(), ty, "{f}");
    }
}
