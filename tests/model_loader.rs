//! Every subcommand reads Caffe prototxt as well as YAML through `crema::load_net` /
//! `crema::load_solver`: `check`, `time`, `test`, `train`, `forward`, `draw` on Caffe's files and
//! the bench nets in ../shared; `crema test` says how much data it scored.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel);
    assert!(p.exists(), "missing shared file {}", p.display());
    p
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// LeNet's learnable values: conv1 20*25+20, conv2 50*20*25+50, ip1 500*800+500, ip2 10*500+10.
const LENET_PARAMS: u64 = 520 + 25_050 + 400_500 + 5_010;

#[test]
fn check_and_time_read_the_bench_prototxt() {
    let net = shared("bench/nets/lenet_b64.prototxt");
    let net = net.to_str().unwrap();
    let v = json(&run(&["check", "--model", net, "--json"]));
    assert_eq!(v["params"], LENET_PARAMS);
    assert_eq!(v["blobs"]["data"], serde_json::json!([64, 1, 28, 28]));
    assert_eq!(v["blobs"]["ip2"], serde_json::json!([64, 10]));
    let v = json(&run(&[
        "time",
        "--model",
        net,
        "--iterations",
        "1",
        "--json",
    ]));
    assert_eq!(v["iterations"], 1);
    let names: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]
    );
}

#[test]
fn check_upgrades_a_v1_prototxt_with_input_dim() {
    let net = shared("data/caffe/lenet_v1/lenet.prototxt");
    let v = json(&run(&["check", "--model", net.to_str().unwrap(), "--json"]));
    assert_eq!(v["params"], LENET_PARAMS);
    assert_eq!(v["blobs"]["data"], serde_json::json!([64, 1, 28, 28]));
    assert_eq!(v["blobs"]["prob"], serde_json::json!([64, 10]));
}

#[test]
fn a_prototxt_without_extension_is_sniffed() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("lenet_model");
    std::fs::copy(shared("bench/nets/lenet_b64.prototxt"), &model).unwrap();
    let v = json(&run(&[
        "check",
        "--model",
        model.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["params"], LENET_PARAMS);
    let dot = d.path().join("g.dot");
    let o = run(&[
        "draw",
        "--model",
        model.to_str().unwrap(),
        "--out",
        dot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let g = std::fs::read_to_string(&dot).unwrap();
    assert_eq!(g.matches("shape=box").count(), 9);
}

/// Caffe's trained LeNet (lenet_v2) scored on the 1000 MNIST digits through an IdxData layer,
/// as a prototxt: the deploy net's Input becomes IdxData and its Softmax an Accuracy.
fn lenet_test_prototxt(dir: &Path) -> PathBuf {
    let deploy = std::fs::read_to_string(shared("data/caffe/lenet_v2/lenet.prototxt")).unwrap();
    let body_start = deploy.find("layer {\n  name: \"conv1\"").unwrap();
    let body_end = deploy.rfind("layer {").unwrap();
    let data = format!(
        "name: \"LeNetTest\"\nlayer {{ name: \"mnist\" type: \"IdxData\" top: \"data\" top: \"label\"\n  \
         idx_data_param {{ source: \"{}\" label_source: \"{}\" batch_size: 100 }}\n  \
         transform_param {{ scale: 0.00390625 }} }}\n",
        shared("data/mnist/t10k-first1000-images-idx3-ubyte").display(),
        shared("data/mnist/t10k-first1000-labels-idx1-ubyte").display()
    );
    let tail = "layer { name: \"accuracy\" type: \"Accuracy\" bottom: \"ip2\" bottom: \"label\" \
                top: \"accuracy\" }\n";
    let p = dir.join("lenet_test.prototxt");
    std::fs::write(&p, format!("{data}{}{tail}", &deploy[body_start..body_end])).unwrap();
    p
}

#[test]
fn test_scores_caffe_lenet_from_a_prototxt_and_says_what_it_covered() {
    let d = tempfile::tempdir().unwrap();
    let model = lenet_test_prototxt(d.path());
    let weights = shared("data/caffe/lenet_v2/lenet_iter_10000.caffemodel");
    let score = |iters: Option<&str>| {
        let mut args = vec![
            "test",
            "--model",
            model.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--json",
        ];
        if let Some(n) = iters {
            args.extend(["--iterations", n]);
        }
        let o = run(&args);
        (json(&o), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // Exactly one pass over the 1000 digits: 990 right (expected.json, lenet_v2).
    let (v, err) = score(Some("10"));
    assert_eq!(v["iterations"], 10);
    assert_eq!(v["examples"], 1000);
    let acc = v["outputs"]["accuracy"].as_f64().unwrap();
    assert!((acc - 0.99).abs() < 1e-6, "{acc}");
    assert!(err.contains("x batch 100 = 1000 examples"), "{err}");
    assert!(
        err.contains("holds 1000 records: exactly one pass"),
        "{err}"
    );
    // Half a pass.
    let (v, err) = score(Some("5"));
    assert_eq!(v["examples"], 500);
    assert!(
        err.contains("50.0% of one pass (10 iterations cover them all)"),
        "{err}"
    );
    // The default, said as such: 50 x 100 = 5 passes.
    let (v, err) = score(None);
    assert_eq!(v["iterations"], 50);
    assert_eq!(v["examples"], 5000);
    let acc = v["outputs"]["accuracy"].as_f64().unwrap();
    assert!((acc - 0.99).abs() < 1e-6, "{acc}");
    assert!(err.contains("scored 50 iterations (the default"), "{err}");
    assert!(err.contains("5.00 passes"), "{err}");
}

#[test]
fn forward_reads_a_prototxt() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let v = json(&run(&[
        "forward",
        "--model",
        shared("bench/nets/lenet_b64.prototxt").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--output",
        "ip2",
        "--json",
    ]));
    assert_eq!(v["outputs"]["ip2"]["shape"], serde_json::json!([64, 10]));
    assert!(out.join("ip2.npy").exists());
}

/// A Caffe-style layout: the solver names its net and snapshot prefix from the Caffe root
/// (`examples/mnist/...`), and the snapshot directory does not exist yet.
#[test]
fn train_from_a_solver_prototxt_written_against_the_caffe_root() {
    let d = tempfile::tempdir().unwrap();
    let ex = d.path().join("examples/mnist");
    std::fs::create_dir_all(&ex).unwrap();
    std::fs::write(
        ex.join("mlp.prototxt"),
        r#"name: "mlp"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 4 } shape { dim: 8 }
    data_filler { type: "constant" value: 0.5 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#,
    )
    .unwrap();
    let solver = ex.join("mlp_solver.prototxt");
    std::fs::write(
        &solver,
        "net: \"examples/mnist/mlp.prototxt\"\nbase_lr: 0.1\nlr_policy: \"fixed\"\n\
         display: 1\nmax_iter: 3\nsnapshot_prefix: \"examples/mnist/snaps/mlp\"\n\
         solver_mode: CPU\nsolver_type: SGD\nrandom_seed: 1\n",
    )
    .unwrap();
    let o = run(&["train", "--solver", solver.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let snaps = ex.join("snaps");
    assert!(snaps.join("mlp_iter_3.caffemodel").exists(), "{}", text(&o));
    assert!(snaps.join("mlp_iter_3.solverstate").exists());
    assert!(snaps.join("mlp_log.jsonl").exists());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("Created directory {}", snaps.display())),
        "{err}"
    );
    // One JSON line per display (iterations 0, 1, 2) and the final loss (3); the loss falls.
    let losses: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 4, "{}", text(&o));
    assert!(losses[3] < losses[0], "{losses:?}");
}
