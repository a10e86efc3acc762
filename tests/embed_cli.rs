//! `crema embed` end to end: features, labels, the scatter and reconstruction pictures, and the
//! 1-NN accuracy in its JSON line.

use std::process::Command;

#[test]
fn embed_writes_features_pictures_and_accuracy() {
    let root = env!("CARGO_MANIFEST_DIR");
    let images = format!("{root}/../shared/data/mnist/t10k-first1000-images-idx3-ubyte");
    let labels = format!("{root}/../shared/data/mnist/t10k-first1000-labels-idx1-ubyte");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args([
            "embed",
            "--model",
            &format!("{root}/models/siamese/deploy.yaml"),
        ])
        .args(["--images", &images, "--labels", &labels, "--limit", "150"])
        .args(["--gallery-images", &images, "--gallery-labels", &labels])
        .args(["--gallery-limit", "150", "--json", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"], 150);
    assert_eq!(v["dim"], 2);
    // The gallery holds the same images, so each finds itself at distance 0.
    assert_eq!(v["nn_accuracy"], 1.0);
    let feats = crema::caffe::npy::read_npy(dir.path().join("features.npy")).unwrap();
    assert_eq!(feats.shape, vec![150, 2]);
    let labs = crema::caffe::npy::read_npy(dir.path().join("labels.npy")).unwrap();
    assert_eq!(&labs.data[..4], &[7.0, 2.0, 1.0, 0.0]);
    assert!(dir.path().join("embedding.png").exists());

    // A bad blob name is a user error.
    let bad = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args([
            "embed",
            "--model",
            &format!("{root}/models/siamese/deploy.yaml"),
        ])
        .args(["--images", &images, "--labels", &labels, "--limit", "10"])
        .args(["--blob", "nope", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}
