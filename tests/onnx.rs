//! ONNX export and import checked against onnxruntime (in the repository's `.venv`, which
//! scripts/setup.sh provisions; a missing venv fails these tests), and safetensors weights.
//! Every comparison: crema's forward pass against onnxruntime on the same inputs, within 1e-4
//! relative (see `close`).

use crema::caffe::npy;
use crema::onnx::{export_net, import_model, ExportOptions};
use crema::proto::{NetParameter, Phase};
use crema::testing::shared_data;
use crema::{Blob, Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: the ONNX tests need onnxruntime in the repository's venv; run \
         scripts/setup.sh (python3 -m venv .venv && .venv/bin/pip install onnxruntime numpy)",
        p.display()
    );
    p
}

/// Runs `model` with onnxruntime on `inputs`; returns its outputs by name.
fn run_ort(model: &Path, inputs: &[(&str, &Blob)]) -> HashMap<String, Blob> {
    let dir = tempfile::tempdir().unwrap();
    let (ind, outd) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&ind).unwrap();
    for (name, b) in inputs {
        npy::write_npy(ind.join(format!("{}.npy", name.replace('/', "_"))), b).unwrap();
    }
    let out = Command::new(python())
        .arg(root().join("tests/onnx/run_ort.py"))
        .arg(model)
        .arg(&ind)
        .arg(&outd)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "onnxruntime failed on {} (run scripts/setup.sh if onnxruntime is missing):\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|n| {
            let b = npy::read_npy(outd.join(format!("{}.npy", n.replace('/', "_")))).unwrap();
            (n.to_string(), b)
        })
        .collect()
}

/// `a` equals `b` within 1e-4 relative: `|a - b| <= 1e-4 * max(|b|, 1e-2 * max|b|)` elementwise
/// (the floor keeps values that cancel to near zero from demanding more than float32 gives).
fn close(a: &Blob, b: &Blob, what: &str) {
    assert_eq!(a.shape, b.shape, "{what}: shapes");
    let scale = b.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
        let tol = 1e-4 * y.abs().max(1e-2 * scale).max(1e-6);
        assert!(
            (x - y).abs() <= tol,
            "{what}: element {i}: crema {x} vs onnxruntime {y} (tolerance {tol})"
        );
        worst = worst.max((x - y).abs() / tol);
    }
    eprintln!(
        "{what}: {} values, worst at {worst:.3} of the tolerance",
        a.count()
    );
}

fn build(param: &NetParameter, weights: Option<&Path>) -> Net {
    let mut rng = StdRng::seed_from_u64(7);
    let mut net = Net::for_phase(param, Phase::Test, &mut rng).unwrap();
    if let Some(w) = weights {
        let t = crema::caffe::caffemodel::read(w).unwrap();
        let r = net.copy_trained_layers_from(&t, "w").unwrap();
        assert!(r.fresh.is_empty(), "layers without weights: {:?}", r.fresh);
    }
    net
}

/// Sets the input shapes of the model's Input layer.
fn with_inputs(mut p: NetParameter, shapes: &[&[i64]]) -> NetParameter {
    let l = p.layer.iter_mut().find(|l| l.r#type() == "Input").unwrap();
    let ip = l.input_param.as_mut().unwrap();
    ip.shape = shapes
        .iter()
        .map(|s| crema::proto::BlobShape { dim: s.to_vec() })
        .collect();
    p
}

fn random_blob(shape: &[usize], rng: &mut StdRng) -> Blob {
    let n = shape.iter().product();
    Blob::from_data(shape, (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()).unwrap()
}

/// crema forward with `inputs` (reshaping them) and its output blobs.
fn forward(net: &mut Net, inputs: &[(&str, &Blob)]) -> HashMap<String, Blob> {
    for (name, b) in inputs {
        let dst = net.blob_mut(name).unwrap();
        dst.reshape(&b.shape);
        dst.data.copy_from_slice(&b.data);
    }
    net.forward().unwrap();
    net.outputs()
        .into_iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect()
}

/// Exports `net`, runs it in onnxruntime and crema on `inputs`, compares every output.
/// Returns the model's folder (removed when dropped) and path.
fn check(
    net: &mut Net,
    opts: &ExportOptions,
    inputs: &[(&str, &Blob)],
    what: &str,
) -> (tempfile::TempDir, PathBuf) {
    let ex = export_net(net, opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{what}.onnx"));
    crema::onnx::write_model(&path, &ex.model).unwrap();
    if let Ok(keep) = std::env::var("CREMA_ONNX_KEEP") {
        std::fs::copy(&path, Path::new(&keep).join(format!("{what}.onnx"))).unwrap();
    }
    let fed: Vec<(&str, &Blob)> = inputs
        .iter()
        .copied()
        .filter(|(n, _)| {
            ex.model
                .graph
                .as_ref()
                .unwrap()
                .input
                .iter()
                .any(|i| i.name() == *n)
        })
        .collect();
    let ort = run_ort(&path, &fed);
    let ours = forward(net, inputs);
    assert_eq!(
        ort.len(),
        ours.len(),
        "{what}: outputs {:?} vs {:?}",
        ort.keys(),
        ours.keys()
    );
    for (name, b) in &ours {
        let o = ort
            .get(name)
            .unwrap_or_else(|| panic!("{what}: onnxruntime lacks output {name}"));
        close(b, o, &format!("{what} {name}"));
    }
    (dir, path)
}

fn mnist(n: usize) -> Blob {
    let bytes = std::fs::read(shared_data("mnist/t10k-first1000-images-idx3-ubyte")).unwrap();
    let px = &bytes[16..16 + n * 784];
    Blob::from_data(
        &[n, 1, 28, 28],
        px.iter().map(|&b| b as f32 / 256.0).collect(),
    )
    .unwrap()
}

fn lenet() -> (NetParameter, PathBuf) {
    let p = crema::load_net(root().join("models/lenet/deploy.yaml").to_str().unwrap()).unwrap();
    (
        with_inputs(p, &[&[4, 1, 28, 28]]),
        shared_data("caffe/lenet_v2/lenet_iter_10000.caffemodel"),
    )
}

#[test]
fn lenet_with_shared_weights_matches_onnxruntime() {
    let (p, w) = lenet();
    let mut net = build(&p, Some(&w));
    let x = mnist(4);
    check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &x)],
        "lenet",
    );
    // Dynamic batch: one model, two batch sizes.
    let opts = ExportOptions {
        dynamic_batch: true,
        ..Default::default()
    };
    let x = mnist(3);
    check(&mut net, &opts, &[("data", &x)], "lenet_dyn");
}

#[test]
fn cifar10_quick_with_shared_weights_and_photos_matches_onnxruntime() {
    let dir = "caffe/cifar10_quick_v1";
    let p = crema::caffe::load_net_prototxt(shared_data(&format!("{dir}/cifar10_quick.prototxt")))
        .unwrap();
    let p = with_inputs(p, &[&[3, 3, 32, 32]]);
    let mut net = build(
        &p,
        Some(&shared_data(&format!(
            "{dir}/cifar10_quick_iter_5000.caffemodel"
        ))),
    );
    let mean =
        crema::caffe::read_blob_proto(shared_data(&format!("{dir}/mean.binaryproto"))).unwrap();
    let mut data = Vec::new();
    for f in ["cat10.png", "dog10.png", "truck10.png"] {
        let img = crema::data::photo::read(
            shared_data(&format!("{dir}/{f}")),
            Some(true),
            Default::default(),
        )
        .unwrap();
        let x = img.planes(32, 32, &[2, 1, 0]);
        data.extend(x.iter().zip(&mean.data).map(|(v, m)| v - m));
    }
    let x = Blob::from_data(&[3, 3, 32, 32], data).unwrap();
    check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &x)],
        "cifar10_quick",
    );
}

#[test]
fn mtcnn_det1_with_dynamic_sizes_matches_onnxruntime() {
    let dir = "caffe/mtcnn_det1";
    let p = crema::caffe::load_net_prototxt(shared_data(&format!("{dir}/det1.prototxt"))).unwrap();
    let mut net = build(&p, Some(&shared_data(&format!("{dir}/det1.caffemodel"))));
    let opts = ExportOptions {
        dynamic_batch: true,
        dynamic_spatial: true,
        ..Default::default()
    };
    let ex = export_net(&net, &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("det1.onnx");
    crema::onnx::write_model(&path, &ex.model).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    // One model, three input sizes (PNet runs on an image pyramid).
    for shape in [[1, 3, 12, 12], [2, 3, 31, 47], [1, 3, 64, 50]] {
        let x = random_blob(&shape, &mut rng);
        let ort = run_ort(&path, &[("data", &x)]);
        let ours = forward(&mut net, &[("data", &x)]);
        assert_eq!(ours.len(), 2, "PNet has two outputs");
        for (name, b) in &ours {
            close(b, &ort[name], &format!("det1 {shape:?} {name}"));
        }
    }
}

/// Random weights that keep activations at about unit scale (the models' own fillers make the
/// deep nets' outputs nearly uniform, which would make the comparison weak): weights uniform
/// with variance 2 / fan-in, biases uniform in [-0.2, 0.2].
fn randomize(net: &mut Net, rng: &mut StdRng) {
    for b in net.params_mut() {
        let s = if b.num_axes() >= 2 {
            (6.0 / (b.count() / b.shape[0]) as f32).sqrt()
        } else {
            0.2
        };
        for v in &mut b.data {
            *v = rng.gen_range(-s..s);
        }
    }
}

/// The model without its final Softmax, so that the compared outputs are the logits (a
/// saturated or flat softmax would hide differences).
fn logits(mut p: NetParameter) -> NetParameter {
    p.layer.retain(|l| l.r#type() != "Softmax");
    p
}

/// The output spreads: its standard deviation is at least `min`.
fn spread(b: &Blob, min: f32, what: &str) {
    let n = b.count() as f32;
    let mean = b.data.iter().sum::<f32>() / n;
    let sd = (b.data.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
    assert!(sd >= min, "{what}: outputs barely vary (sd {sd})");
}

fn random_weights_check(model: &str, shape: &[i64], what: &str) {
    let p = crema::load_net(root().join(model).to_str().unwrap()).unwrap();
    let p = logits(with_inputs(p, &[shape]));
    let mut net = build(&p, None);
    let mut rng = StdRng::seed_from_u64(11);
    randomize(&mut net, &mut rng);
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let x = random_blob(&dims, &mut rng);
    let x = Blob::from_data(&dims, x.data.iter().map(|v| v * 50.0).collect()).unwrap();
    check(&mut net, &ExportOptions::default(), &[("data", &x)], what);
    spread(net.outputs()[0].1, 1e-2, what);
}

#[test]
fn googlenet_with_random_weights_matches_onnxruntime() {
    random_weights_check(
        "models/googlenet/deploy.yaml",
        &[1, 3, 224, 224],
        "googlenet",
    );
}

#[test]
fn caffenet_with_random_weights_matches_onnxruntime() {
    random_weights_check("models/caffenet/deploy.yaml", &[1, 3, 227, 227], "caffenet");
}

#[test]
fn char_lstm_for_a_few_steps_matches_onnxruntime() {
    let p = crema::load_net(
        root()
            .join("models/char_lstm/deploy.yaml")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let (t, n) = (6usize, 2usize);
    let p = logits(with_inputs(
        p,
        &[&[t as i64, n as i64], &[t as i64, n as i64]],
    ));
    let mut net = build(&p, None);
    let mut rng = StdRng::seed_from_u64(5);
    randomize(&mut net, &mut rng);
    let chars: Vec<f32> = (0..t * n).map(|_| rng.gen_range(0..256) as f32).collect();
    let data = Blob::from_data(&[t, n], chars).unwrap();
    let cont = Blob::from_data(&[t, n], (0..t * n).map(|i| f32::from(i >= n)).collect()).unwrap();
    let ex = export_net(&net, &ExportOptions::default()).unwrap();
    assert!(
        ex.notes.iter().any(|s| s.contains("cont")),
        "{:?}",
        ex.notes
    );
    let (_d, path) = check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &data), ("cont", &cont)],
        "char_lstm",
    );
    spread(net.blob("predict").unwrap(), 1e-2, "char_lstm");
    // Back in: each ONNX LSTM becomes Caffe's LSTM with a new `cont` input (0 at t = 0, 1 after;
    // onnxruntime never sees it).
    let m = crema::onnx::read_model(&path).unwrap();
    let im = import_model(&m, "char_lstm.onnx").unwrap();
    assert_eq!(im.notes.len(), 2, "{:?}", im.notes);
    let back = import_and_check(
        &path,
        &[
            ("data", &data),
            ("lstm1/cont", &cont),
            ("lstm2/cont", &cont),
        ],
        "char_lstm import",
    );
    let lstms: Vec<&[String]> = back
        .layer
        .iter()
        .filter(|l| l.r#type() == "LSTM")
        .map(|l| l.bottom.as_slice())
        .collect();
    assert_eq!(lstms.len(), 2);
    assert_eq!(lstms[0][1], "lstm1/cont");
    // The imported net's output is the original net's (the weights went through ONNX's gate
    // order and back).
    let mut rng = StdRng::seed_from_u64(1);
    let mut imported = Net::for_phase(&back, Phase::Test, &mut rng).unwrap();
    imported
        .copy_trained_layers_from(&im.weights, "import")
        .unwrap();
    let ours = forward(
        &mut imported,
        &[
            ("data", &data),
            ("lstm1/cont", &cont),
            ("lstm2/cont", &cont),
        ],
    );
    assert_eq!(ours.len(), 1, "{:?}", ours.keys());
    let out = ours.values().next().unwrap();
    close(out, net.blob("predict").unwrap(), "char_lstm round trip");
}

/// One net with the layers the zoo models above do not use, and the corner cases of the mapping:
/// grouped dilated convolution, BatchNorm with a scale factor + Scale with bias, PReLU,
/// Deconvolution, Slice, Eltwise SUM with coefficients / PROD / MAX, Crop, AVE pooling with pad
/// and ceil rounding (the Pad path), MAX pooling of an odd size, Concat, Reshape, Flatten,
/// InnerProduct at axis 2, Softmax on axis 1, the ReLU family and Power.
const COVERAGE: &str = r#"
name: coverage
layer:
  - {name: input, type: Input, top: data, input_param: {shape: [{dim: [2, 4, 13, 11]}]}}
  - {name: conv, type: Convolution, bottom: data, top: conv,
     convolution_param: {num_output: 6, kernel_size: 3, pad: 2, dilation: 2, group: 2}}
  - {name: bn, type: BatchNorm, bottom: conv, top: conv}
  - {name: sc, type: Scale, bottom: conv, top: conv, scale_param: {bias_term: true}}
  - {name: prelu, type: PReLU, bottom: conv, top: conv}
  - {name: deconv, type: Deconvolution, bottom: conv, top: deconv,
     convolution_param: {num_output: 4, kernel_size: 4, stride: 2, pad: 1}}
  - {name: slice, type: Slice, bottom: deconv, top: [s1, s2], slice_param: {axis: 1, slice_point: [2]}}
  - {name: sum, type: Eltwise, bottom: [s1, s2], top: sum, eltwise_param: {operation: SUM, coeff: [0.5, -2]}}
  - {name: prod, type: Eltwise, bottom: [s1, s2], top: prod, eltwise_param: {operation: PROD}}
  - {name: max, type: Eltwise, bottom: [sum, prod], top: max, eltwise_param: {operation: MAX}}
  - {name: crop, type: Crop, bottom: [max, data], top: crop, crop_param: {axis: 2, offset: [3, 1]}}
  - {name: ave, type: Pooling, bottom: crop, top: ave, pooling_param: {pool: AVE, kernel_size: 3, stride: 2, pad: 1}}
  - {name: mx, type: Pooling, bottom: crop, top: mx, pooling_param: {pool: MAX, kernel_size: 3, stride: 2, pad: 1}}
  - {name: elu, type: ELU, bottom: ave, top: elu, elu_param: {alpha: 0.7}}
  - {name: sig, type: Sigmoid, bottom: mx, top: sig}
  - {name: cat, type: Concat, bottom: [elu, sig], top: cat}
  - {name: leaky, type: ReLU, bottom: cat, top: cat, relu_param: {negative_slope: 0.1}}
  - {name: pow, type: Power, bottom: cat, top: pow, power_param: {power: 2, scale: 0.5, shift: 1}}
  - {name: absv, type: AbsVal, bottom: pow, top: absv}
  - {name: tanh, type: TanH, bottom: absv, top: tanh}
  - {name: drop, type: Dropout, bottom: tanh, top: tanh}
  - {name: reshape, type: Reshape, bottom: tanh, top: r, reshape_param: {shape: {dim: [0, 4, -1]}}}
  - {name: ip, type: InnerProduct, bottom: r, top: ip, inner_product_param: {num_output: 5, axis: 2}}
  - {name: soft, type: Softmax, bottom: ip, top: soft, softmax_param: {axis: 1}}
  - {name: flat, type: Flatten, bottom: mx, top: flat}
  - {name: ip2, type: InnerProduct, bottom: flat, top: ip2, inner_product_param: {num_output: 3}}
"#;

#[test]
fn every_mapped_layer_matches_onnxruntime() {
    let p: NetParameter = crema::spec::from_yaml_str(COVERAGE, "coverage.yaml").unwrap();
    let mut net = build(&p, None);
    let mut rng = StdRng::seed_from_u64(4);
    randomize(&mut net, &mut rng);
    // BatchNorm's stored statistics: mean, variance (positive), and Caffe's scale factor.
    let bn = net
        .layers()
        .iter()
        .find(|l| l.ty == "BatchNorm")
        .unwrap()
        .params
        .clone();
    let params = net.params_mut();
    for v in &mut params[bn[1]].data {
        *v = v.abs() * 3.0 + 0.1;
    }
    params[bn[2]].data[0] = 2.5;
    let x = random_blob(&[2, 4, 13, 11], &mut rng);
    check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &x)],
        "coverage",
    );
    let (_d, path) = check(
        &mut net,
        &ExportOptions {
            dynamic_batch: true,
            opset: 19,
            ..Default::default()
        },
        &[("data", &x)],
        "coverage_dyn",
    );
    import_and_check(&path, &[("data", &x)], "coverage import");
}

#[test]
fn unsupported_layers_are_named() {
    let yaml = "name: t\nlayer:\n  - {name: input, type: Input, top: data, input_param: {shape: [{dim: [1, 4]}]}}\n  - {name: am, type: ArgMax, bottom: data, top: am}\n";
    let p: NetParameter = crema::spec::from_yaml_str(yaml, "t.yaml").unwrap();
    let net = build(&p, None);
    let e = export_net(&net, &ExportOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`am`") && e.contains("ArgMax"), "{e}");
    let e = export_net(
        &net,
        &ExportOptions {
            opset: 9,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("opset"), "{e}");
}

/// Imports an ONNX file and checks crema's forward of the import against onnxruntime on it.
fn import_and_check(path: &Path, inputs: &[(&str, &Blob)], what: &str) -> NetParameter {
    let m = crema::onnx::read_model(path).unwrap();
    let im = import_model(&m, &path.display().to_string()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = Net::for_phase(&im.net, Phase::Test, &mut rng).unwrap();
    let r = net.copy_trained_layers_from(&im.weights, "import").unwrap();
    assert!(
        r.fresh.is_empty(),
        "{what}: layers without weights {:?}",
        r.fresh
    );
    let ort = run_ort(path, inputs);
    let ours = forward(&mut net, inputs);
    for (name, o) in &ort {
        let b = ours
            .get(name)
            .or_else(|| net.blob(name))
            .unwrap_or_else(|| panic!("{what}: the imported net lacks blob {name}"));
        close(b, o, &format!("{what} {name}"));
    }
    im.net
}

#[test]
fn exported_models_import_back() {
    let (p, w) = lenet();
    let mut net = build(&p, Some(&w));
    let x = mnist(4);
    let (_d1, path) = check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &x)],
        "lenet_rt",
    );
    import_and_check(&path, &[("data", &x)], "lenet import");
    let p = crema::load_net(
        root()
            .join("models/googlenet/deploy.yaml")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let p = logits(with_inputs(p, &[&[1, 3, 224, 224]]));
    let mut net = build(&p, None);
    let mut rng = StdRng::seed_from_u64(2);
    randomize(&mut net, &mut rng);
    let x = random_blob(&[1, 3, 224, 224], &mut rng);
    let (_d2, path) = check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &x)],
        "googlenet_rt",
    );
    import_and_check(&path, &[("data", &x)], "googlenet import");
}

#[test]
fn pytorch_exported_lenet_imports_and_matches_onnxruntime() {
    let path = root().join("tests/onnx/torch_lenet.onnx");
    let mut rng = StdRng::seed_from_u64(9);
    let x = random_blob(&[2, 1, 28, 28], &mut rng);
    let m = crema::onnx::read_model(&path).unwrap();
    let input = m.graph.as_ref().unwrap().input[0].name().to_string();
    let net = import_and_check(&path, &[(&input, &x)], "torch lenet");
    let types: Vec<&str> = net.layer.iter().map(|l| l.r#type()).collect();
    assert!(
        types.contains(&"Convolution") && types.contains(&"InnerProduct"),
        "{types:?}"
    );
}

#[test]
fn import_names_unsupported_operators() {
    use crema::onnx::proto::{GraphProto, ModelProto, NodeProto};
    let m = ModelProto {
        graph: Some(GraphProto {
            node: vec![NodeProto {
                name: Some("topk".into()),
                op_type: Some("TopK".into()),
                input: vec!["x".into(), "k".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = import_model(&m, "m.onnx").err().unwrap().to_string();
    assert!(
        e.contains("m.onnx") && e.contains("TopK") && e.contains("`topk`"),
        "{e}"
    );
}

#[test]
fn safetensors_weights_load_wherever_caffemodels_do() {
    let (p, w) = lenet();
    let mut a = build(&p, Some(&w));
    let mut proto = a.to_proto(false);
    proto.layer.retain(|l| !l.blobs.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("lenet.safetensors");
    crema::caffe::safetensors::write(&st, &proto).unwrap();
    let mut b = build(&p, Some(&st));
    let x = mnist(2);
    let (ya, yb) = (
        forward(&mut a, &[("data", &x)]),
        forward(&mut b, &[("data", &x)]),
    );
    assert_eq!(ya["prob"].data, yb["prob"].data);
    // Through the command line: export, then forward with --weights x.safetensors.
    let exe = env!("CARGO_BIN_EXE_crema");
    let model = root().join("models/lenet/deploy.yaml");
    let st2 = dir.path().join("cli.safetensors");
    let onnx = dir.path().join("cli.onnx");
    let out = Command::new(exe)
        .args(["export", "--model"])
        .arg(&model)
        .arg("--weights")
        .arg(&w)
        .arg("--safetensors")
        .arg(&st2)
        .arg("--onnx")
        .arg(&onnx)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["weight_layers"], 4, "{j}");
    let back = crema::caffe::caffemodel::read(&st2).unwrap();
    assert_eq!(back.layer.len(), 4);
    let imported = dir.path().join("imported");
    let out = Command::new(exe)
        .args(["import", "--onnx"])
        .arg(&onnx)
        .arg("--out")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ip = crema::load_net(imported.join("deploy.yaml").to_str().unwrap()).unwrap();
    let ip = with_inputs(ip, &[&[2, 1, 28, 28]]);
    let mut c = build(&ip, Some(&imported.join("weights.caffemodel")));
    let yc = forward(&mut c, &[("data", &x)]);
    close(&yc["prob"], &ya["prob"], "lenet via export/import CLI");
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not safetensors").unwrap();
    let e = crema::caffe::caffemodel::read(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
}

/// A hand-made ONNX LSTM (hidden 2, input 3, T 3, N 2) with a non-zero recurrence bias R_b,
/// which crema's exporter never writes: the import (gates reordered, B = W_b + R_b) matches
/// onnxruntime. Then each variant Caffe's LSTM lacks is refused, naming the node.
#[test]
fn onnx_lstm_imports_and_its_variants_without_a_caffe_form_are_refused() {
    use crema::onnx::proto::attribute_proto::AttributeType;
    use crema::onnx::proto::tensor_proto::DataType;
    use crema::onnx::proto::tensor_shape_proto::{dimension, Dimension};
    use crema::onnx::proto::{
        type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
        TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let (t, n, i, h) = (3i64, 2i64, 3i64, 2i64);
    let mut rng = StdRng::seed_from_u64(9);
    let mut tensor = |name: &str, dims: &[i64]| TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: (0..dims.iter().product::<i64>())
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect(),
        ..Default::default()
    };
    let mut inits = vec![
        tensor("W", &[1, 4 * h, i]),
        tensor("R", &[1, 4 * h, h]),
        tensor("B", &[1, 8 * h]),
    ];
    inits.push(TensorProto {
        name: Some("axes".into()),
        dims: vec![1],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![1],
        ..Default::default()
    });
    let value = |name: &str, dims: &[i64]| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let int = |name: &str, v: i64| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    };
    let lstm = NodeProto {
        name: Some("rnn".into()),
        op_type: Some("LSTM".into()),
        input: vec!["x".into(), "W".into(), "R".into(), "B".into()],
        output: vec!["y4".into()],
        attribute: vec![int("hidden_size", h)],
        ..Default::default()
    };
    let model = |lstm: NodeProto, inits: Vec<TensorProto>| ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("lstm".into()),
            node: vec![
                lstm,
                NodeProto {
                    name: Some("squeeze".into()),
                    op_type: Some("Squeeze".into()),
                    input: vec!["y4".into(), "axes".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                },
            ],
            initializer: inits,
            input: vec![value("x", &[t, n, i])],
            output: vec![value("y", &[t, n, h])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lstm.onnx");
    crema::onnx::write_model(&path, &model(lstm.clone(), inits.clone())).unwrap();
    let x = random_blob(
        &[t as usize, n as usize, i as usize],
        &mut StdRng::seed_from_u64(3),
    );
    let cont = Blob::from_data(
        &[t as usize, n as usize],
        (0..t * n).map(|k| f32::from(k >= n)).collect(),
    )
    .unwrap();
    let back = import_and_check(&path, &[("x", &x), ("rnn/cont", &cont)], "hand-made LSTM");
    let input = back.layer.iter().find(|l| l.r#type() == "Input").unwrap();
    assert_eq!(input.top, ["x", "rnn/cont"]);
    let shapes = &input.input_param.as_ref().unwrap().shape;
    assert_eq!(shapes[1].dim, [t, n]);

    // Variants: (what changes, a word the error must contain).
    let zeros = |name: &str, dims: &[i64]| TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: vec![0.0; dims.iter().product::<i64>() as usize],
        ..Default::default()
    };
    let text = |name: &str, v: &str| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    };
    let acts = |v: [&str; 3]| AttributeProto {
        name: Some("activations".into()),
        r#type: Some(AttributeType::Strings as i32),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    // Zero initial states and the default activations spelled out import.
    let mut ok = lstm.clone();
    ok.input.extend(["".into(), "h0".into(), "c0".into()]);
    ok.attribute.push(acts(["Sigmoid", "Tanh", "Tanh"]));
    ok.attribute.push(text("direction", "forward"));
    let mut with_states = inits.clone();
    with_states.push(zeros("h0", &[1, n, h]));
    with_states.push(zeros("c0", &[1, n, h]));
    import_model(&model(ok, with_states.clone()), "ok.onnx").unwrap();

    let mut cases: Vec<(NodeProto, Vec<TensorProto>, &str)> = Vec::new();
    let mut v = lstm.clone();
    v.attribute.push(text("direction", "bidirectional"));
    cases.push((v, inits.clone(), "bidirectional"));
    let mut v = lstm.clone();
    v.attribute.push(text("direction", "reverse"));
    cases.push((v, inits.clone(), "reverse"));
    let mut v = lstm.clone();
    v.attribute.push(int("layout", 1));
    cases.push((v, inits.clone(), "layout"));
    let mut v = lstm.clone();
    v.attribute.push(acts(["Sigmoid", "Relu", "Tanh"]));
    cases.push((v, inits.clone(), "activations"));
    let mut v = lstm.clone();
    v.attribute.push(AttributeProto {
        name: Some("clip".into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(3.0),
        ..Default::default()
    });
    cases.push((v, inits.clone(), "clip"));
    let mut v = lstm.clone();
    v.attribute.push(int("input_forget", 1));
    cases.push((v, inits.clone(), "input_forget"));
    let mut v = lstm.clone();
    v.input
        .extend(["".into(), "".into(), "".into(), "P".into()]);
    let mut with_p = inits.clone();
    with_p.push(zeros("P", &[1, 3 * h]));
    cases.push((v, with_p, "peephole"));
    let mut v = lstm.clone();
    v.input.extend(["".into(), "h0".into()]);
    let mut nonzero = inits.clone();
    let mut h0 = zeros("h0", &[1, n, h]);
    h0.float_data[1] = 0.5;
    nonzero.push(h0);
    cases.push((v, nonzero, "initial_h"));
    // A graph input as the initial cell state (not a constant).
    let mut v = lstm.clone();
    v.input.extend(["".into(), "".into(), "c0".into()]);
    cases.push((v, inits.clone(), "initial_c"));
    let mut v = lstm.clone();
    v.input.push("x".into());
    cases.push((v, inits.clone(), "sequence_lens"));
    let mut v = lstm.clone();
    v.output.push("y_h".into());
    cases.push((v, inits.clone(), "Y_h"));
    for (node, inits, word) in cases {
        let mut m = model(node, inits);
        if word == "Y_h" {
            // Something reads Y_h.
            let g = m.graph.as_mut().unwrap();
            g.node.push(NodeProto {
                name: Some("read_h".into()),
                op_type: Some("Identity".into()),
                input: vec!["y_h".into()],
                output: vec!["h_out".into()],
                ..Default::default()
            });
        }
        let e = import_model(&m, "v.onnx").err().unwrap().to_string();
        assert!(
            e.contains("v.onnx") && e.contains("`rnn`") && e.contains(word),
            "{word}: {e}"
        );
    }
}

/// N-D convolution exports as ONNX Conv / ConvTranspose with one kernel, stride, dilation and
/// pad value per spatial axis: a 3-D Convolution (groups, per-axis stride and dilation), a 3-D
/// Deconvolution and a 1-D Convolution match onnxruntime.
#[test]
fn nd_convolution_matches_onnxruntime() {
    let yaml = r"
name: nd
layer:
  - { name: input, type: Input, top: [data, seq], input_param: { shape: [ { dim: [2, 4, 5, 6, 7] }, { dim: [3, 2, 11] } ] } }
  - name: conv3d
    type: Convolution
    bottom: data
    top: conv3d
    convolution_param: { num_output: 6, kernel_size: [3, 2, 3], stride: [2, 1, 1], pad: [1, 0, 2], dilation: [1, 2, 1], group: 2 }
  - name: deconv3d
    type: Deconvolution
    bottom: conv3d
    top: deconv3d
    convolution_param: { num_output: 3, kernel_size: [2, 3, 1], stride: [2, 1, 3], pad: [0, 1, 0] }
  - name: conv1d
    type: Convolution
    bottom: seq
    top: conv1d
    convolution_param: { num_output: 4, kernel_size: 3, stride: 2, pad: 1, dilation: 2, group: 2 }
";
    let p: NetParameter = crema::spec::from_yaml_str(yaml, "nd.yaml").unwrap();
    let mut net = build(&p, None);
    let mut rng = StdRng::seed_from_u64(11);
    randomize(&mut net, &mut rng);
    let x = random_blob(&[2, 4, 5, 6, 7], &mut rng);
    let s = random_blob(&[3, 2, 11], &mut rng);
    check(
        &mut net,
        &ExportOptions::default(),
        &[("data", &x), ("seq", &s)],
        "nd_conv",
    );
    assert_eq!(net.blob("conv3d").unwrap().shape, [2, 6, 3, 4, 9]);
    assert_eq!(net.blob("deconv3d").unwrap().shape, [2, 3, 6, 4, 25]);
    assert_eq!(net.blob("conv1d").unwrap().shape, [3, 4, 5]);
}
