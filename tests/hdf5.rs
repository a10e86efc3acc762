//! HDF5 end to end: a linear regression `y = 2x + 1` read by `HDF5Data` from two files and
//! learned by the solver; its `snapshot_format: HDF5` snapshot loaded back by the one weights
//! reader that every `--weights` goes through, and resumed from.

use crema::data::hdf5 as h5;
use crema::proto::{Phase, SolverParameter};
use crema::solver::Solver;
use crema::Net;
use rand::SeedableRng;
use std::path::Path;

/// Rows `x` evenly over [-1, 1] and `y = 2x + 1`, split over two files (24 and 16 rows).
fn write_regression(dir: &Path) -> String {
    let xs: Vec<f32> = (0..40).map(|i| -1.0 + 2.0 * i as f32 / 39.0).collect();
    for (name, part) in [("a.h5", &xs[..24]), ("b.h5", &xs[24..])] {
        let path = dir.join(name);
        let f = h5::create(&path).unwrap();
        let y: Vec<f32> = part.iter().map(|x| 2.0 * x + 1.0).collect();
        h5::write_f32(&f, &path, "data", &[part.len(), 1], part).unwrap();
        h5::write_f32(&f, &path, "label", &[part.len(), 1], &y).unwrap();
    }
    let list = dir.join("train.txt");
    std::fs::write(&list, "a.h5\nb.h5\n").unwrap();
    list.display().to_string()
}

fn solver(dir: &Path) -> Solver {
    let list = write_regression(dir);
    let text = format!(
        r#"
type: SGD
base_lr: 0.1
momentum: 0.9
lr_policy: fixed
max_iter: 300
random_seed: 5
display: 0
snapshot_format: HDF5
snapshot_prefix: {prefix}
net_param:
  name: linreg
  layer:
    - name: data
      type: HDF5Data
      top: [data, label]
      hdf5_data_param: {{ source: '{list}', batch_size: 8, shuffle: true }}
    - name: ip
      type: InnerProduct
      bottom: data
      top: ip
      inner_product_param:
        num_output: 1
        weight_filler: {{ type: constant, value: 0 }}
        bias_filler: {{ type: constant, value: 0 }}
    - name: loss
      type: EuclideanLoss
      bottom: [ip, label]
      top: loss
"#,
        prefix = dir.join("snap").display()
    );
    let p: SolverParameter = crema::spec::from_yaml_str(&text, "solver").unwrap();
    Solver::new(p).unwrap()
}

fn ip_params(net: &Net) -> (f32, f32) {
    let li = net
        .layers()
        .iter()
        .position(|l| l.name == "ip")
        .expect("ip layer");
    let p = net.layer_params(li);
    (p[0].data[0], p[1].data[0])
}

#[test]
fn learns_a_line_from_hdf5_files_and_snapshots_in_hdf5() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = solver(dir.path());
    s.solve(None).unwrap();
    let (w, b) = ip_params(s.net());
    eprintln!("learned w {w} b {b} after 300 iterations");
    assert!(
        (w - 2.0).abs() < 1e-3 && (b - 1.0).abs() < 1e-3,
        "w {w} b {b}"
    );

    // The final snapshot is Caffe's HDF5 layout.
    let model = dir.path().join("snap_iter_300.caffemodel.h5");
    let state = dir.path().join("snap_iter_300.solverstate.h5");
    assert!(model.exists() && state.exists());
    let f = h5::open(&model).unwrap();
    let (shape, wv) = h5::read_f32(&f, &model, "data/ip/0").unwrap();
    assert_eq!((shape, wv), (vec![1, 1], vec![w]));
    let (_, bv) = h5::read_f32(&f, &model, "data/ip/1").unwrap();
    assert_eq!(bv, vec![b]);

    // A deploy net takes the weights through the `--weights` reader: same outputs.
    let deploy = r#"
name: linreg
layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [3, 1] } } }
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    inner_product_param: { num_output: 1 }
"#;
    let np = crema::spec::from_yaml_str(deploy, "deploy").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut net = Net::for_phase(&np, Phase::Test, &mut rng).unwrap();
    let trained = crema::caffe::caffemodel::read(&model).unwrap();
    net.copy_trained_layers_from(&trained, "snap").unwrap();
    net.blob_mut("data")
        .unwrap()
        .data
        .copy_from_slice(&[0.0, 1.0, -2.0]);
    net.forward().unwrap();
    let out = net.blob("ip").unwrap().data.clone();
    let want = [b, w + b, b - 2.0 * w];
    assert_eq!(out, want);
    assert!(
        (out[1] - 3.0).abs() < 2e-3 && (out[2] + 3.0).abs() < 4e-3,
        "{out:?}"
    );

    // Resuming from the state (whose learned_net is the .h5) restores the weights.
    let other = tempfile::tempdir().unwrap();
    let mut r = solver(other.path());
    r.restore(&state).unwrap();
    assert_eq!(r.iter(), 300);
    assert_eq!(ip_params(r.net()), (w, b));
    // SGD's history (the momentum) came back too: one blob per parameter, same values.
    assert_eq!(r.history().len(), 2);
    for (a, h) in r.history().iter().zip(s.history()) {
        assert_eq!((&a.shape, &a.data), (&h.shape, &h.data));
    }
}

/// Caffe's own `examples/hdf5_classification/train_val.prototxt` (its data files are not here:
/// written below in the same form, `data` N x 4 and `label` N) builds in both phases and reads
/// its batches.
#[test]
fn caffe_hdf5_classification_prototxt_runs() {
    let proto =
        crema::testing::shared_data("prototxt/examples/hdf5_classification/train_val.prototxt");
    if !proto.exists() {
        eprintln!("skipping: {} is not here", proto.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.h5");
    let f = h5::create(&path).unwrap();
    // 30 rows: x = (i, -i, 2i, 0.5) / 30, label i % 2.
    let x: Vec<f32> = (0..30)
        .flat_map(|i| {
            let v = i as f32 / 30.0;
            [v, -v, 2.0 * v, 0.5]
        })
        .collect();
    let y: Vec<f32> = (0..30).map(|i| (i % 2) as f32).collect();
    h5::write_f32(&f, &path, "data", &[30, 4], &x).unwrap();
    h5::write_f32(&f, &path, "label", &[30], &y).unwrap();
    drop(f);
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "train.h5\n").unwrap();
    let mut net = match crema::caffe::load_prototxt(&proto).unwrap() {
        crema::caffe::Prototxt::Net(n) => n,
        _ => panic!("a net"),
    };
    for l in net.layer.iter_mut() {
        if let Some(d) = l.hdf5_data_param.as_mut() {
            d.source = Some(list.display().to_string());
        }
    }
    for phase in [Phase::Train, Phase::Test] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut n = Net::for_phase(&net, phase, &mut rng).unwrap();
        n.forward().unwrap();
        assert_eq!(n.blob("data").unwrap().shape, vec![10, 4]);
        assert_eq!(n.blob("fc1").unwrap().shape, vec![10, 2]);
        // Batch 10 of 30 rows in order: rows 0..10, then 10..20.
        assert_eq!(n.blob("data").unwrap().data[4..8], x[4..8]);
        n.forward().unwrap();
        assert_eq!(n.blob("label").unwrap().data, y[10..20]);
        assert!(n.blob("loss").unwrap().data[0].is_finite());
    }
}

/// The value tests/hdf5/make_caffe_h5.py wrote for element `k` of blob `blob` of layer `layer`.
fn fixture_value(layer: usize, blob: usize, k: usize) -> f32 {
    ((7 * k + 3 * blob + layer) % 17) as f32 / 8.0 - 1.0
}

/// A `.caffemodel.h5` in Caffe's `Net::ToHDF5` layout, written by h5py (HDF5 2.0.0, not crema's
/// writer; tests/hdf5/make_caffe_h5.py): the one weights reader returns every layer
/// (parameterless ones with no blobs; in name order) with Caffe's shapes and the values, and a net given those
/// weights computes conv -> ReLU -> inner product as worked out here in f64.
#[test]
fn a_caffemodel_h5_in_caffes_layout_loads_and_runs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hdf5/caffe_layout.caffemodel.h5");
    let w = crema::caffe::caffemodel::read(&path).unwrap();
    // HDF5 lists groups by name (Caffe's H5Gcreate2 keeps no creation order); Caffe copies by
    // layer name, as crema does.
    let names: Vec<&str> = w.layer.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["conv1", "data", "ip1", "prob", "relu1"]);
    let order = ["data", "conv1", "relu1", "ip1", "prob"];
    let by_name = |n: &str| w.layer.iter().find(|l| l.name() == n).unwrap();
    let shapes: Vec<Vec<Vec<i64>>> = order
        .iter()
        .map(|n| by_name(n))
        .map(|l| {
            l.blobs
                .iter()
                .map(|b| b.shape.clone().unwrap().dim)
                .collect()
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            vec![],
            vec![vec![2, 1, 3, 3], vec![2]],
            vec![],
            vec![vec![3, 8], vec![3]],
            vec![]
        ]
    );
    for (li, l) in order.iter().map(|n| by_name(n)).enumerate() {
        for (bi, b) in l.blobs.iter().enumerate() {
            let want: Vec<f32> = (0..b.data.len())
                .map(|k| fixture_value(li, bi, k))
                .collect();
            assert_eq!(b.data, want, "{} blob {bi}", l.name());
        }
    }

    let model = r"
name: h5net
layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [1, 1, 4, 4] } } }
  - { name: conv1, type: Convolution, bottom: data, top: conv1, convolution_param: { num_output: 2, kernel_size: 3 } }
  - { name: relu1, type: ReLU, bottom: conv1, top: conv1 }
  - { name: ip1, type: InnerProduct, bottom: conv1, top: ip1, inner_product_param: { num_output: 3 } }
  - { name: prob, type: Softmax, bottom: ip1, top: prob }
";
    let p: crema::proto::NetParameter = crema::spec::from_yaml_str(model, "h5net.yaml").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut net = Net::for_phase(&p, Phase::Test, &mut rng).unwrap();
    let report = net
        .copy_trained_layers_from(&w, &path.display().to_string())
        .unwrap();
    assert!(report.fresh.is_empty() && report.ignored.is_empty());
    let x: Vec<f64> = (0..16).map(|i| (i as f64 - 7.5) / 4.0).collect();
    net.blob_mut("data")
        .unwrap()
        .data
        .iter_mut()
        .zip(&x)
        .for_each(|(d, v)| *d = *v as f32);
    net.forward().unwrap();
    // conv1: 2 outputs of 2x2 from the 4x4 input, 3x3 kernel, bias; then ReLU.
    let v = |l: usize, b: usize, k: usize| fixture_value(l, b, k) as f64;
    let mut conv = Vec::new();
    for o in 0..2 {
        for y in 0..2 {
            for xx in 0..2 {
                let mut s = v(1, 1, o);
                for ky in 0..3 {
                    for kx in 0..3 {
                        s += v(1, 0, o * 9 + ky * 3 + kx) * x[(y + ky) * 4 + xx + kx];
                    }
                }
                conv.push(s.max(0.0));
            }
        }
    }
    let ip: Vec<f64> = (0..3)
        .map(|o| v(3, 1, o) + (0..8).map(|k| v(3, 0, o * 8 + k) * conv[k]).sum::<f64>())
        .collect();
    let got = &net.blob("ip1").unwrap().data;
    for (g, w) in got.iter().zip(&ip) {
        assert!((*g as f64 - w).abs() < 1e-5, "ip1 {got:?} vs {ip:?}");
    }
}
