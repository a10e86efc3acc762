//! Caffe interop on real third-party files in `../shared/data` (see its README): every Caffe
//! prototxt imports, covered nets build with Caffe's blob shapes, trained Caffe weights (current
//! and V1 format) reproduce the reference outputs of an independent Caffe implementation.

use crema::caffe::{self, Prototxt};
use crema::proto::{NetParameter, Phase, SolverParameter};
use crema::{Blob, Net};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    let p = Path::new("../shared/data").join(rel);
    assert!(
        p.exists(),
        "test data {} is missing: these tests need the shared data folder at ../shared/data \
         (see its README.md)",
        p.display()
    );
    p
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(data("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn prototxt_files() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "prototxt") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&data("prototxt"), &mut v);
    v.sort();
    v
}

fn build(net: &NetParameter, phase: Phase) -> crema::Result<Net> {
    let mut rng = StdRng::seed_from_u64(5);
    Net::for_phase(net, phase, &mut rng)
}

fn shape(net: &Net, blob: &str) -> Vec<usize> {
    net.blob(blob)
        .unwrap_or_else(|| panic!("no blob {blob}"))
        .shape
        .clone()
}

/// Data layers read LMDB/LevelDB/HDF5 sources that are not here; for the build check each is
/// replaced by an `Input` layer with the shapes Caffe's data layer produces for Caffe's own
/// example data sets (MNIST 1x28x28, CIFAR-10 3x32x32, ImageNet 3x256x256 cropped).
fn with_inputs_for_data_layers(net: &NetParameter) -> NetParameter {
    let mut out = net.clone();
    for l in out.layer.iter_mut() {
        let (batch, source) = match l.r#type() {
            "Data" => {
                let d = l.data_param.clone().unwrap_or_default();
                // Batch capped at 4: the check is about C/H/W wiring, not memory.
                ((d.batch_size() as i64).min(4), d.source().to_string())
            }
            _ => continue,
        };
        let crop = l
            .transform_param
            .as_ref()
            .map(|t| t.crop_size() as i64)
            .unwrap_or(0);
        let chw: Vec<i64> = if source.contains("mnist") {
            vec![1, 28, 28]
        } else if source.contains("cifar") {
            vec![3, 32, 32]
        } else if crop > 0 {
            vec![3, crop, crop]
        } else {
            continue;
        };
        let mut shapes = vec![crema::proto::BlobShape {
            dim: [vec![batch], chw].concat(),
        }];
        if l.top.len() > 1 {
            shapes.push(crema::proto::BlobShape { dim: vec![batch] });
        }
        *l = crema::proto::LayerParameter {
            name: l.name.clone(),
            r#type: Some("Input".into()),
            top: l.top.clone(),
            include: l.include.clone(),
            exclude: l.exclude.clone(),
            input_param: Some(crema::proto::InputParameter { shape: shapes }),
            ..Default::default()
        };
    }
    out
}

/// The same net, cheap to build: input batches capped at 2 and constant weight fillers (the
/// build check is about wiring and shapes, not values); with `small_fc`, InnerProduct outputs
/// are capped at 16 too (AlexNet's fc6 alone has 38M weights), for nets whose shapes are not
/// compared with Caffe's.
fn light(net: &NetParameter, small_fc: bool) -> NetParameter {
    let mut out = net.clone();
    let constant = || {
        Some(crema::proto::FillerParameter {
            r#type: Some("constant".into()),
            ..Default::default()
        })
    };
    for l in out.layer.iter_mut() {
        if let Some(ip) = l.input_param.as_mut() {
            for s in ip.shape.iter_mut() {
                if let Some(n) = s.dim.first_mut() {
                    *n = (*n).min(2);
                }
            }
        }
        if let Some(c) = l.convolution_param.as_mut() {
            c.weight_filler = constant();
        }
        if let Some(c) = l.inner_product_param.as_mut() {
            c.weight_filler = constant();
            if small_fc {
                c.num_output = Some(c.num_output().min(16));
            }
        }
    }
    out
}

/// Blob shapes Caffe reports for some of the nets (from Caffe's own logs / the model zoo).
fn caffe_shapes(file: &str) -> &'static [(&'static str, &'static [usize])] {
    match file {
        "examples/mnist/lenet.prototxt" => &[
            ("conv1", &[64, 20, 24, 24]),
            ("pool1", &[64, 20, 12, 12]),
            ("conv2", &[64, 50, 8, 8]),
            ("pool2", &[64, 50, 4, 4]),
            ("ip1", &[64, 500]),
            ("prob", &[64, 10]),
        ],
        "examples/cifar10/cifar10_quick.prototxt" => &[
            ("conv1", &[1, 32, 32, 32]),
            ("pool1", &[1, 32, 16, 16]),
            ("conv2", &[1, 32, 16, 16]),
            ("pool2", &[1, 32, 8, 8]),
            ("conv3", &[1, 64, 8, 8]),
            ("pool3", &[1, 64, 4, 4]),
            ("ip1", &[1, 64]),
            ("prob", &[1, 10]),
        ],
        "models/bvlc_alexnet/deploy.prototxt" => &[
            ("conv1", &[10, 96, 55, 55]),
            ("pool1", &[10, 96, 27, 27]),
            ("conv2", &[10, 256, 27, 27]),
            ("pool2", &[10, 256, 13, 13]),
            ("conv3", &[10, 384, 13, 13]),
            ("conv5", &[10, 256, 13, 13]),
            ("pool5", &[10, 256, 6, 6]),
            ("fc6", &[10, 4096]),
            ("prob", &[10, 1000]),
        ],
        "models/bvlc_googlenet/deploy.prototxt" => &[
            ("conv1/7x7_s2", &[10, 64, 112, 112]),
            ("pool1/3x3_s2", &[10, 64, 56, 56]),
            ("inception_3a/output", &[10, 256, 28, 28]),
            ("inception_4e/output", &[10, 832, 14, 14]),
            ("pool5/7x7_s1", &[10, 1024, 1, 1]),
            ("prob", &[10, 1000]),
        ],
        "examples/net_surgery/bvlc_caffenet_full_conv.prototxt" => &[
            ("pool5", &[1, 256, 13, 13]),
            ("fc6-conv", &[1, 4096, 8, 8]),
            ("fc8-conv", &[1, 1000, 8, 8]),
        ],
        _ => &[],
    }
}

/// Build failures that are crema restrictions outside the interop code, not missing layers:
/// Caffe accepts two layers with the same name (the autoencoder names both losses `loss`), the
/// net builder refuses them.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[];

/// Every Caffe prototxt imports: parse, upgrade, YAML write and YAML re-read give the same
/// message. Nets whose layers crema has build with Caffe's shapes; the others fail naming the
/// missing layer type.
#[test]
fn every_caffe_prototxt_imports_and_covered_nets_build() {
    let files = prototxt_files();
    assert_eq!(files.len(), 70, "expected the 70 Caffe prototxt files");
    let known = crema::layers::known_types();
    let (mut nets, mut solvers, mut built, mut missing) = (0, 0, 0, Vec::new());
    let (mut bad, mut deviations) = (Vec::new(), Vec::new());
    for f in &files {
        let rel = f
            .strip_prefix(data("prototxt"))
            .unwrap()
            .display()
            .to_string();
        match caffe::load_prototxt(f).unwrap_or_else(|e| panic!("{rel}: {e}")) {
            Prototxt::Solver(s) => {
                let s = *s;
                solvers += 1;
                let yaml = crema::spec::message_to_yaml(&s);
                let back: SolverParameter = crema::spec::from_yaml_str(&yaml, &rel)
                    .unwrap_or_else(|e| panic!("{rel}: YAML does not read back: {e}\n{yaml}"));
                assert_eq!(back, s, "{rel}: solver YAML round trip");
                assert!(s.solver_type.is_none());
            }
            Prototxt::Net(net) => {
                nets += 1;
                assert!(
                    net.layers.is_empty() && net.input.is_empty(),
                    "{rel}: not upgraded"
                );
                let yaml = crema::spec::message_to_yaml(&net);
                let back: NetParameter = crema::spec::from_yaml_str(&yaml, &rel)
                    .unwrap_or_else(|e| panic!("{rel}: YAML does not read back: {e}\n{yaml}"));
                assert_eq!(back, net, "{rel}: net YAML round trip");
                let lacking: Vec<&str> = net
                    .layer
                    .iter()
                    .map(|l| l.r#type())
                    .filter(|t| !known.contains(t))
                    .collect();
                let test_net = light(
                    &with_inputs_for_data_layers(&net),
                    caffe_shapes(&rel).is_empty(),
                );
                let phase_dependent = net
                    .layer
                    .iter()
                    .any(|l| !l.include.is_empty() || !l.exclude.is_empty());
                for phase in [Phase::Train, Phase::Test] {
                    if phase == Phase::Train && !phase_dependent {
                        continue;
                    }
                    match build(&test_net, phase) {
                        Ok(n) => {
                            built += 1;
                            for (blob, s) in caffe_shapes(&rel) {
                                // The batch is capped (see `light`); C/H/W are Caffe's.
                                assert_eq!(&shape(&n, blob)[1..], &s[1..], "{rel}: blob {blob}");
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            if matches!(e, crema::Error::Spec { .. }) {
                                bad.push(format!(
                                    "{rel} ({phase:?}): a parse error at build time: {msg}"
                                ));
                                continue;
                            }
                            let names_type = net.layer.iter().any(|l| {
                                msg.contains(&format!("`{}`", l.r#type()))
                                    || msg.contains(&format!("(type {})", l.r#type()))
                            });
                            let known_deviation = KNOWN_DEVIATIONS
                                .iter()
                                .any(|(f, m)| *f == rel && msg.contains(m));
                            if known_deviation {
                                deviations.push(format!("{rel} ({phase:?}): {msg}"));
                            } else if !names_type {
                                bad.push(format!(
                                    "{rel} ({phase:?}): the error names no layer type: {msg}"
                                ));
                            } else if msg.contains("unknown layer type") {
                                if lacking.is_empty() {
                                    bad.push(format!("{rel}: {msg}"));
                                }
                                missing.push(format!("{rel}: {}", lacking.join(",")));
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "{nets} nets, {solvers} solvers; {built} net builds passed; lacking layers: {missing:#?}",
    );
    eprintln!("known deviations from Caffe: {deviations:#?}");
    // Issue 15's bar: no layer type left unsupported but WindowData and Python.
    let unsupported: Vec<&String> = missing
        .iter()
        .filter(|m| {
            let types = m.rsplit(": ").next().unwrap_or("");
            types.split(',').any(|t| t != "WindowData" && t != "Python")
        })
        .collect();
    assert!(
        unsupported.is_empty(),
        "layer types crema lacks: {unsupported:#?}"
    );
    assert!(
        bad.is_empty(),
        "{} failures:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert_eq!(nets + solvers, 70);
}

/// The V1 and the current LeNet prototxts describe the same net.
#[test]
fn v1_prototxt_upgrades_to_the_current_one() {
    let v1 = caffe::load_net_prototxt(data("caffe/lenet_v1/lenet.prototxt")).unwrap();
    let v2 = caffe::load_net_prototxt(data("caffe/lenet_v2/lenet.prototxt")).unwrap();
    let types = |n: &NetParameter| -> Vec<String> {
        n.layer.iter().map(|l| l.r#type().to_string()).collect()
    };
    assert_eq!(types(&v1), types(&v2));
    assert_eq!(v1.layer[0].input_param, v2.layer[0].input_param);
    assert!(caffe::is_deploy(&v1));
    let mtcnn = caffe::load_net_prototxt(data("caffe/mtcnn_det1/det1.prototxt")).unwrap();
    assert_eq!(mtcnn.layer[0].r#type(), "Input");
    assert_eq!(
        mtcnn.layer[0].input_param.as_ref().unwrap().shape[0].dim,
        [1, 3, 12, 12]
    );
}

fn mnist() -> (Vec<f32>, Vec<u8>) {
    let img = std::fs::read(data("mnist/t10k-first1000-images-idx3-ubyte")).unwrap();
    let lab = std::fs::read(data("mnist/t10k-first1000-labels-idx1-ubyte")).unwrap();
    assert_eq!(&img[..4], &[0, 0, 8, 3]);
    let pixels = img[16..].iter().map(|&p| p as f32 * 0.00390625).collect();
    (pixels, lab[8..].to_vec())
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn check_lenet(dir: &str, weights: &str, key: &str) {
    let exp = &expected()[key];
    let param = caffe::load_net_prototxt(data(&format!("{dir}/lenet.prototxt"))).unwrap();
    let trained = crema::caffe::caffemodel::read(data(&format!("{dir}/{weights}"))).unwrap();
    let mut net = build(&param, Phase::Test).unwrap();
    let report = net.copy_trained_layers_from(&trained, weights).unwrap();
    assert_eq!(report.copied, ["conv1", "conv2", "ip1", "ip2"]);
    let (pixels, labels) = mnist();
    let batch = 100;
    net.blob_mut("data").unwrap().reshape(&[batch, 1, 28, 28]);
    let mut wrong = Vec::new();
    for start in (0..1000).step_by(batch) {
        net.blob_mut("data")
            .unwrap()
            .data
            .copy_from_slice(&pixels[start * 784..(start + batch) * 784]);
        net.forward().unwrap();
        let prob = net.blob("prob").unwrap();
        for i in 0..batch {
            let p = &prob.data[i * 10..(i + 1) * 10];
            let n = start + i;
            if argmax(p) != labels[n] as usize {
                wrong.push(n as u64);
            }
            if let Some(e) = exp["prob"].get(n.to_string()) {
                for (k, (a, b)) in p.iter().zip(e.as_array().unwrap()).enumerate() {
                    let b = b.as_f64().unwrap() as f32;
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{key}: digit {n} class {k}: {a} vs {b}"
                    );
                }
            }
        }
    }
    let exp_wrong: Vec<u64> = exp["wrong_idx_in_first_1000"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(wrong, exp_wrong, "{key}: misclassified digits");
    assert_eq!(
        1000 - wrong.len() as u64,
        exp["correct_of_first_1000"].as_u64().unwrap()
    );
}

#[test]
fn lenet_v2_caffemodel_classifies_mnist_like_caffe() {
    check_lenet("caffe/lenet_v2", "lenet_iter_10000.caffemodel", "lenet_v2");
}

#[test]
fn lenet_v1_caffemodel_classifies_mnist_like_caffe() {
    check_lenet("caffe/lenet_v1", "lenet_iter_5000.caffemodel", "lenet_v1");
}

/// A PNG as BGR planes (alpha dropped, grey repeated), values 0..255.
fn read_png_bgr(path: &Path) -> (usize, usize, Vec<f32>) {
    let rgb = image::open(path).unwrap().to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut out = vec![0f32; 3 * h * w];
    for (i, px) in rgb.pixels().enumerate() {
        out[i] = px[2] as f32;
        out[h * w + i] = px[1] as f32;
        out[2 * h * w + i] = px[0] as f32;
    }
    (h, w, out)
}

#[test]
fn cifar10_quick_v1_reproduces_caffe_probabilities() {
    let exp = &expected()["cifar10_quick_v1"];
    let dir = "caffe/cifar10_quick_v1";
    let param = caffe::load_net_prototxt(data(&format!("{dir}/cifar10_quick.prototxt"))).unwrap();
    let trained =
        crema::caffe::caffemodel::read(data(&format!("{dir}/cifar10_quick_iter_5000.caffemodel")))
            .unwrap();
    let mean = caffe::read_blob_proto(data(&format!("{dir}/mean.binaryproto"))).unwrap();
    assert_eq!(mean.shape, [1, 3, 32, 32]);
    let mut net = build(&param, Phase::Test).unwrap();
    net.copy_trained_layers_from(&trained, "cifar").unwrap();
    for (i, img) in exp["images"].as_array().unwrap().iter().enumerate() {
        let (h, w, mut x) = read_png_bgr(&data(&format!("{dir}/{}", img.as_str().unwrap())));
        assert_eq!((h, w), (32, 32));
        for (v, m) in x.iter_mut().zip(&mean.data) {
            *v -= m;
        }
        net.blob_mut("data").unwrap().data.copy_from_slice(&x);
        net.forward().unwrap();
        let prob = &net.blob("prob").unwrap().data;
        let e = exp["prob"][i].as_array().unwrap();
        for (k, (a, b)) in prob.iter().zip(e).enumerate() {
            let b = b.as_f64().unwrap() as f32;
            assert!((a - b).abs() <= 1e-5, "{img}: class {k}: {a} vs {b}");
        }
    }
}

fn blob_of(v: &serde_json::Value) -> Blob {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let vals = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Blob::from_data(&shape, vals).unwrap()
}

/// MTCNN's PNet through `crema forward` with .npy files, input reshaped from the prototxt's
/// 12x12 to the given 39x52.
#[test]
fn mtcnn_det1_through_crema_forward() {
    let exp = &expected()["mtcnn_det1"];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.npy");
    caffe::npy::write_npy(&input, &blob_of(&exp["input"])).unwrap();
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["forward", "--model"])
        .arg(data("caffe/mtcnn_det1/det1.prototxt"))
        .arg("--weights")
        .arg(data("caffe/mtcnn_det1/det1.caffemodel"))
        .arg(format!("--input=data={}", input.display()))
        .args(["--output", "conv4-2", "--output", "prob1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "crema forward failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    for name in ["conv4-2", "prob1"] {
        let got = caffe::npy::read_npy(out.join(format!("{name}.npy"))).unwrap();
        let want = blob_of(&exp[name]);
        assert_eq!(got.shape, want.shape, "{name}");
        for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{name}[{i}]: {a} vs {b}"
            );
        }
    }
}

/// Weights written by crema decode with the schema and round-trip bit-exactly; the V1 file is
/// written in the current format and loads back to the same values.
#[test]
fn crema_written_caffemodel_round_trips_bit_exactly() {
    use prost::Message;
    let param = caffe::load_net_prototxt(data("caffe/lenet_v1/lenet.prototxt")).unwrap();
    let trained =
        crema::caffe::caffemodel::read(data("caffe/lenet_v1/lenet_iter_5000.caffemodel")).unwrap();
    let mut net = build(&param, Phase::Test).unwrap();
    net.copy_trained_layers_from(&trained, "v1").unwrap();
    let proto = net.to_proto(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.caffemodel");
    caffe::caffemodel::write(&path, &proto).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let decoded = NetParameter::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, proto);
    assert_eq!(decoded.encode_to_vec(), bytes, "re-encoding changes bytes");
    let back = crema::caffe::caffemodel::read(&path).unwrap();
    let mut net2 = build(&param, Phase::Test).unwrap();
    net2.copy_trained_layers_from(&back, "w").unwrap();
    for (a, b) in net.params().iter().zip(net2.params()) {
        assert_eq!(a.shape, b.shape);
        let (ab, bb): (Vec<u32>, Vec<u32>) = (
            a.data.iter().map(|v| v.to_bits()).collect(),
            b.data.iter().map(|v| v.to_bits()).collect(),
        );
        assert_eq!(ab, bb);
    }
    // The V1 file's values survive the upgrade bit for bit (legacy 4-D dims become N-D).
    let v1 = &trained
        .layer
        .iter()
        .find(|l| l.name() == "ip1")
        .unwrap()
        .blobs[0];
    assert!(v1.num.is_some() && v1.shape.is_none());
    let ip1 = decoded.layer.iter().find(|l| l.name() == "ip1").unwrap();
    assert_eq!(ip1.blobs[0].shape.as_ref().unwrap().dim, [500, 800]);
    assert_eq!(ip1.blobs[0].data, v1.data);
}

#[test]
fn crema_import_writes_yaml_and_current_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["import", "--json", "--prototxt"])
        .arg(data("caffe/lenet_v1/lenet.prototxt"))
        .arg("--caffemodel")
        .arg(data("caffe/lenet_v1/lenet_iter_5000.caffemodel"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["kind"], "deploy");
    let model = crema::spec::load_net(dir.path().join("deploy.yaml")).unwrap();
    let w = crema::caffe::caffemodel::read(dir.path().join("weights.caffemodel")).unwrap();
    assert!(w.layers.is_empty());
    let mut net = build(&model, Phase::Test).unwrap();
    let r = net.copy_trained_layers_from(&w, "w").unwrap();
    assert_eq!(r.copied.len(), 4);
    // And back to prototxt: it parses to the same net.
    let proto = dir.path().join("back.prototxt");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["export", "--model"])
        .arg(dir.path().join("deploy.yaml"))
        .arg("--out")
        .arg(&proto)
        .status()
        .unwrap();
    assert!(st.success());
    let again = caffe::load_net_prototxt(&proto).unwrap();
    assert_eq!(again, model);
}

#[test]
fn truncated_and_garbage_files_give_clear_errors() {
    let bytes = std::fs::read(data("caffe/lenet_v1/lenet_iter_5000.caffemodel")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.caffemodel");
    for cut in [1, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = crema::caffe::caffemodel::read(&p).unwrap_err().to_string();
        assert!(e.contains("cut.caffemodel"), "{e}");
    }
    let text = std::fs::read_to_string(data("caffe/lenet_v1/lenet.prototxt")).unwrap();
    std::fs::write(&p, &text).unwrap();
    let e = crema::caffe::caffemodel::read(&p).unwrap_err().to_string();
    assert!(e.contains("text"), "{e}");
    for cut in [5, text.len() / 3, text.len() - 3] {
        let e = caffe::parse_net(&text[..cut], "cut.prototxt")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cut.prototxt:"), "{e}");
    }
    let pt = dir.path().join("bin.prototxt");
    std::fs::write(&pt, &bytes[..4000]).unwrap();
    let e = caffe::load_net_prototxt(&pt).unwrap_err().to_string();
    assert!(e.contains("bin.prototxt"), "{e}");
    let typo = text.replacen("kernel_size", "kernel_sise", 1);
    let e = caffe::parse_net(&typo, "typo.prototxt")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ConvolutionParameter has no field named `kernel_sise`")
            && e.contains("did you mean `kernel_size`?"),
        "{e}"
    );
}

/// Resuming Caffe training from the V1 LeNet `.solverstate`: iteration counter, momentum history
/// and weights (its `learned_net`, a V1 caffemodel) are restored, and training continues.
#[test]
fn resumes_from_caffe_v1_solverstate() {
    use prost::Message;
    let dir = "caffe/lenet_v1";
    let mut sp =
        caffe::load_solver_prototxt(data(&format!("{dir}/lenet_solver.prototxt"))).unwrap();
    assert_eq!(sp.r#type(), "SGD");
    let mut net =
        caffe::load_net_prototxt(data(&format!("{dir}/lenet_train_test.prototxt"))).unwrap();
    // No LMDB here: the MNIST data layers become Input layers fed from the IDX files.
    for l in net.layer.iter_mut().filter(|l| l.r#type() == "Data") {
        let batch = l.data_param.as_ref().unwrap().batch_size() as i64;
        *l = crema::proto::LayerParameter {
            name: l.name.clone(),
            r#type: Some("Input".into()),
            top: l.top.clone(),
            include: l.include.clone(),
            input_param: Some(crema::proto::InputParameter {
                shape: vec![
                    crema::proto::BlobShape {
                        dim: vec![batch, 1, 28, 28],
                    },
                    crema::proto::BlobShape { dim: vec![batch] },
                ],
            }),
            ..Default::default()
        };
    }
    sp.net = None;
    sp.net_param = Some(net);
    sp.test_interval = Some(100_000); // no test pass during the one resumed step
    sp.snapshot = Some(0);
    sp.display = Some(0);
    sp.random_seed = Some(1);
    let mut solver = crema::solver::Solver::new(sp).unwrap();
    let state_path = data(&format!("{dir}/lenet_iter_5000.solverstate"));
    solver.restore(&state_path).unwrap();
    assert_eq!(solver.iter(), 5000);
    let state =
        crema::proto::SolverState::decode(std::fs::read(&state_path).unwrap().as_slice()).unwrap();
    assert_eq!(solver.history().len(), 8);
    for (h, p) in solver.history().iter().zip(&state.history) {
        assert_eq!(h.data, p.data, "momentum history restored");
    }
    assert!(solver.history().iter().any(|h| h.asum_data() > 0.0));
    let trained =
        crema::caffe::caffemodel::read(data(&format!("{dir}/lenet_iter_5000.caffemodel"))).unwrap();
    let ip2 = &trained
        .layer
        .iter()
        .find(|l| l.name() == "ip2")
        .unwrap()
        .blobs[0];
    let li = solver
        .net()
        .layers()
        .iter()
        .position(|l| l.name == "ip2")
        .unwrap();
    assert_eq!(
        solver.net().layer_params(li)[0].data,
        ip2.data,
        "weights restored"
    );
    let (pixels, labels) = mnist();
    solver.set_feeder(move |net: &mut Net, _ctx: &crema::solver::FeedCtx| {
        let n = net.blob("data").unwrap().count();
        net.blob_mut("data")
            .unwrap()
            .data
            .copy_from_slice(&pixels[..n]);
        let b = net.blob_mut("label").unwrap();
        for (d, &l) in b.data.iter_mut().zip(labels.iter()) {
            *d = l as f32;
        }
        Ok(())
    });
    let before = solver.history()[6].data.clone();
    solver.step(1).unwrap();
    assert_eq!(solver.iter(), 5001);
    assert_ne!(
        solver.history()[6].data,
        before,
        "momentum updated on resume"
    );
}

/// A mean file with Caffe's legacy `num: -1` (once a "capacity overflow" panic in the reader) is
/// a user error naming the file: exit status 1 from `crema classify`.
#[test]
fn mean_file_with_negative_num_is_a_user_error() {
    use prost::Message;
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.binaryproto");
    let p = crema::proto::BlobProto {
        num: Some(-1),
        channels: Some(3),
        height: Some(32),
        width: Some(32),
        data: vec![0.0; 3 * 32 * 32],
        ..Default::default()
    };
    std::fs::write(&bad, p.encode_to_vec()).unwrap();
    let e = caffe::read_blob_proto(&bad).unwrap_err().chain_text();
    assert!(
        e.contains("bad.binaryproto") && e.contains("negative"),
        "{e}"
    );
    let cifar = data("caffe/cifar10_quick_v1");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["classify", "--model"])
        .arg(cifar.join("cifar10_quick.prototxt"))
        .arg("--weights")
        .arg(cifar.join("cifar10_quick_iter_5000.caffemodel"))
        .arg("--mean")
        .arg(&bad)
        .arg(cifar.join("dog10.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.binaryproto") && err.contains("negative") && !err.contains("panicked"),
        "{err}"
    );
}
