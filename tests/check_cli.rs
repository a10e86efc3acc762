//! `crema check` on broken and good models: exit status 1 with a message that names what is
//! wrong and where; exit 0 and every layer ok for the MLP's gradient check.

use std::path::Path;
use std::process::Command;

/// Writes `yaml` to a temporary file and runs `crema check` on it; returns (exit code, stderr).
fn check(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["check", "--model"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("panicked"),
        "crema panicked on a user error:\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

fn fails_with(yaml: &str, needles: &[&str]) {
    let (code, err) = check(yaml);
    assert_eq!(
        code, 1,
        "expected exit status 1, got {code}; stderr:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from:\n{err}");
    }
}

#[test]
fn misspelled_key_gives_file_line_column_and_suggestion() {
    fails_with(
        "name: t
layer:
  - name: data
    type: Input
    top: data
    input_param: { shape: { dim: [2, 3] } }
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    inner_product_param:
      num_ouput: 4
",
        &[
            "net.yaml:12:7:",
            "`num_ouput`",
            "did you mean `num_output`?",
        ],
    );
}

#[test]
fn unknown_layer_type_lists_known_types_and_the_nearest() {
    fails_with(
        "layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [2, 3] } } }
  - { name: ip, type: InnerProdcut, bottom: data, top: ip }
",
        &[
            "layer `ip`",
            "unknown layer type `InnerProdcut`",
            "did you mean `InnerProduct`?",
            "known types:",
            "EuclideanLoss",
            "Softmax",
        ],
    );
}

#[test]
fn missing_bottom_names_layer_and_blob() {
    fails_with(
        "layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [2, 3] } } }
  - { name: ip, type: InnerProduct, bottom: dat, top: ip, inner_product_param: { num_output: 2 } }
",
        &[
            "layer `ip`",
            "unknown bottom blob `dat`",
            "did you mean `data`?",
        ],
    );
}

#[test]
fn duplicate_top_names_both_producers() {
    fails_with(
        "layer:
  - { name: data, type: Input, top: data, input_param: { shape: { dim: [2, 3] } } }
  - { name: ip, type: InnerProduct, bottom: data, top: out, inner_product_param: { num_output: 2 } }
  - { name: ip2, type: InnerProduct, bottom: data, top: out, inner_product_param: { num_output: 2 } }
",
        &["layer `ip2`", "`out`", "produced by multiple sources", "layer `ip`"],
    );
}

#[test]
fn wrong_blob_count_names_layer_and_counts() {
    fails_with(
        "layer:
  - { name: data, type: Input, top: [data, label], input_param: { shape: [ { dim: [2, 3] }, { dim: [2] } ] } }
  - { name: loss, type: SoftmaxWithLoss, bottom: data, top: loss }
",
        &["layer `loss`", "SoftmaxWithLoss", "takes 2 bottom blob(s)", "got 1"],
    );
}

#[test]
fn shape_mismatch_names_both_layers_and_both_shapes() {
    fails_with(
        "layer:
  - { name: data, type: Input, top: [data, label], input_param: { shape: [ { dim: [8, 6] }, { dim: [4] } ] } }
  - { name: ip3, type: InnerProduct, bottom: data, top: ip3, inner_product_param: { num_output: 10 } }
  - { name: loss, type: SoftmaxWithLoss, bottom: [ip3, label], top: loss }
",
        &[
            "layer `loss` (type SoftmaxWithLoss)",
            "`ip3` 8x10 from layer `ip3`",
            "`label` 4 from layer `data`",
        ],
    );
}

#[test]
fn mlp_passes_the_gradient_check_as_json() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp/net.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["check", "--gradients", "--json", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blobs"]["ip3"], serde_json::json!([8, 10]));
    assert_eq!(v["blobs"]["data"], serde_json::json!([8, 1, 28, 28]));
    assert_eq!(
        v["params"].as_u64(),
        Some(784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10)
    );
    let grads = v["gradients"].as_array().unwrap();
    let layers: Vec<&str> = grads.iter().map(|g| g["layer"].as_str().unwrap()).collect();
    for l in ["ip1", "relu1", "ip2", "relu2", "ip3", "loss"] {
        assert!(layers.contains(&l), "{l} not checked: {layers:?}");
    }
    for g in grads {
        assert_eq!(g["ok"], serde_json::json!(true), "{g}");
        assert!(g["max_rel_error"].as_f64().unwrap() <= 1e-3, "{g}");
    }
}

#[test]
fn every_core_layer_passes_the_gradient_check_inside_a_net() {
    let yaml = "name: all
layer:
  - { name: data, type: Input, top: [data, target], input_param: { shape: [ { dim: [2, 3, 2, 2] }, { dim: [2, 12] } ] } }
  - { name: prelu, type: PReLU, bottom: data, top: data }
  - { name: elu, type: ELU, bottom: data, top: data }
  - { name: sig, type: Sigmoid, bottom: data, top: s }
  - { name: tanh, type: TanH, bottom: s, top: s }
  - { name: abs, type: AbsVal, bottom: s, top: a }
  - { name: pow, type: Power, bottom: a, top: p, power_param: { power: 2, shift: 1 } }
  - { name: exp, type: Exp, bottom: p, top: p, exp_param: { scale: 0.1 } }
  - { name: log, type: Log, bottom: p, top: l }
  - { name: bnll, type: BNLL, bottom: l, top: l }
  - { name: swish, type: Swish, bottom: l, top: w }
  - { name: split, type: Split, bottom: w, top: [w1, w2] }
  - { name: thr, type: Threshold, bottom: w2, top: t }
  - { name: clip, type: Clip, bottom: w1, top: c, clip_param: { min: -5, max: 5 } }
  - { name: flat, type: Flatten, bottom: c, top: f }
  - { name: reshape, type: Reshape, bottom: f, top: r, reshape_param: { shape: { dim: [0, -1] } } }
  - { name: l2, type: EuclideanLoss, bottom: [r, target], top: l2 }
  - { name: xent, type: SigmoidCrossEntropyLoss, bottom: [r, target], top: xent }
  - { name: silence, type: Silence, bottom: t }
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["check", "--gradients", "--json", "--model"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Sigmoid's backward reads its top, and the TanH after it runs "in place" on that top: the
    // builder gives TanH a new version of the blob, so the whole net passes too (Caffe would
    // overwrite `s` and compute a wrong gradient for `data`).
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let grads = v["gradients"].as_array().unwrap();
    assert_eq!(grads.len(), 19);
    let (net_row, layers) = grads.split_last().unwrap();
    assert!(layers.iter().all(|g| g["ok"] == serde_json::json!(true)));
    assert_eq!(net_row["layer"], "(net)");
    assert_eq!(net_row["ok"], serde_json::json!(true));
    assert_eq!(v["blobs"]["r"], serde_json::json!([2, 12]));
    assert_eq!(v["params"], serde_json::json!(3));
}

#[test]
fn a_caffe_prototxt_with_legacy_inputs_is_checked_with_a_net_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.prototxt");
    std::fs::write(
        &path,
        r#"name: "legacy"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 4 input_dim: 4
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "prob" type: "Softmax" bottom: "conv" top: "prob" }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["check", "--gradients", "--json", "--model"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blobs"]["data"], serde_json::json!([2, 3, 4, 4]));
    assert_eq!(v["blobs"]["prob"], serde_json::json!([2, 2, 2, 2]));
    assert_eq!(v["params"], serde_json::json!(2 * 3 * 9 + 2));
    let grads = v["gradients"].as_array().unwrap();
    let layers: Vec<&str> = grads.iter().map(|g| g["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["conv", "relu", "prob", "(net)"]);
    assert!(
        grads.iter().all(|g| g["ok"] == serde_json::json!(true)),
        "{grads:?}"
    );
}
