//! Fine-tuning a real Caffe model end to end: `crema train --weights` with Caffe's LeNet weights
//! (../shared/data/caffe/lenet_v2) into crema's LeNet whose last layer is renamed, trained on the
//! real MNIST digits in ../shared/data/mnist through IdxData.

use std::path::PathBuf;
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    assert!(
        p.exists(),
        "missing test data {} (../shared/data beside the project)",
        p.display()
    );
    p
}

#[test]
fn fine_tune_caffe_lenet_with_a_renamed_last_layer() {
    let dir = tempfile::tempdir().unwrap();
    let images = shared("mnist/t10k-first1000-images-idx3-ubyte");
    let labels = shared("mnist/t10k-first1000-labels-idx1-ubyte");
    let weights = shared("caffe/lenet_v2/lenet_iter_10000.caffemodel");
    let net = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/lenet/net.yaml"
    ))
    .unwrap();
    let mut out = Vec::new();
    for line in net.lines() {
        let line = if line.trim_start().starts_with("source:") {
            format!("      source: {}", images.display())
        } else if line.trim_start().starts_with("label_source:") {
            format!("      label_source: {}", labels.display())
        } else if line.trim() == "- name: ip2" {
            "  - name: ip2_ft".to_string()
        } else {
            line.to_string()
        };
        out.push(line);
    }
    let net_text = out.join("\n");
    assert!(
        net_text.contains("name: ip2_ft"),
        "the LeNet model changed shape"
    );
    std::fs::write(dir.path().join("net.yaml"), net_text).unwrap();
    std::fs::write(
        dir.path().join("solver.yaml"),
        "net: net.yaml\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: fixed\n\
         max_iter: 30\ndisplay: 10\ntest_iter: 10\ntest_interval: 30\ntest_initialization: false\n\
         snapshot: 0\nsnapshot_prefix: ft\nrandom_seed: 7\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["train", "--json", "--solver"])
        .arg(dir.path().join("solver.yaml"))
        .arg("--weights")
        .arg(&weights)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "crema train failed:\n{err}");
    let line = |prefix: &str| {
        err.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in the report:\n{err}"))
            .to_string()
    };
    let copied = line("copied:");
    for l in ["conv1", "conv2", "ip1"] {
        assert!(copied.contains(l), "{copied}");
    }
    assert!(!copied.contains("ip2"), "{copied}");
    assert!(line("fresh").contains("ip2_ft"), "{err}");
    assert!(line("ignored").contains("ip2"), "{err}");
    // The copied conv/ip1 features make a fresh classifier good after 30 iterations.
    let test: serde_json::Value = stdout
        .lines()
        .rfind(|l| l.contains("\"TEST\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no TEST line:\n{stdout}"));
    let acc = test["outputs"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "accuracy after fine-tuning {acc}");
}
