//! `crema check --gradients` passes on models/gradcheck/net.yaml, a small net that combines
//! grouped+dilated+strided convolution, AVE pooling with pad, LRN, Concat, Eltwise,
//! BatchNorm+Scale, PReLU and Deconvolution.

use std::process::Command;

#[test]
fn gradcheck_net_passes_through_the_binary() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .current_dir(root)
        .args([
            "check",
            "--model",
            "models/gradcheck/net.yaml",
            "--gradients",
            "--json",
        ])
        .output()
        .expect("run crema");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crema check failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["blobs"]["deconv"], serde_json::json!([2, 4, 8, 8]));
    assert_eq!(v["blobs"]["cat"], serde_json::json!([2, 8, 4, 4]));
    let grads = v["gradients"].as_array().expect("gradients list");
    let names: Vec<&str> = grads.iter().filter_map(|g| g["layer"].as_str()).collect();
    for l in [
        "conv1", "pool1", "norm1", "cat", "elt", "bn", "scale", "prelu", "deconv", "ip1", "ip2",
        "sum", "loss",
    ] {
        assert!(names.contains(&l), "layer {l} was not checked: {names:?}");
    }
    for g in grads {
        assert_eq!(g["ok"], serde_json::json!(true), "{g}");
    }
}
