//! `crema classify` end to end: real Caffe weights and photos from `../shared/data`, checked
//! against the reference probabilities in `expected.json`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(rel: &str) -> PathBuf {
    let p = root().join("../shared/data").join(rel);
    assert!(
        p.exists(),
        "{} is missing: the tests need ../shared/data",
        p.display()
    );
    p
}

fn crema(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crema"))
        .arg("classify")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("expected.json")).unwrap()).unwrap()
}

/// The probabilities of a `--top-k` covering every class, by class index.
fn probs(line: &Value, classes: usize) -> Vec<f64> {
    let top = line["top"].as_array().expect("a top list");
    assert_eq!(top.len(), classes);
    let mut p = vec![f64::NAN; classes];
    for t in top {
        p[t["index"].as_u64().unwrap() as usize] = t["prob"].as_f64().unwrap();
    }
    p
}

fn assert_probs(got: &[f64], want: &Value, what: &str) {
    let want: Vec<f64> = want
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5,
            "{what}, class {i}: {g} vs expected {w}"
        );
    }
}

const CIFAR: &str = "caffe/cifar10_quick_v1";

fn cifar_args(model: &Path) -> Vec<String> {
    let d = data(CIFAR);
    vec![
        "--model".into(),
        model.display().to_string(),
        "--weights".into(),
        d.join("cifar10_quick_iter_5000.caffemodel")
            .display()
            .to_string(),
        "--mean".into(),
        d.join("mean.binaryproto").display().to_string(),
        "--labels".into(),
        "models/cifar10_quick/labels.txt".into(),
        "--top-k".into(),
        "10".into(),
        "--json".into(),
    ]
}

#[test]
fn cifar10_prototxt_matches_reference_probabilities() {
    let d = data(CIFAR);
    let mut args = cifar_args(&d.join("cifar10_quick.prototxt"));
    let imgs = ["dog10.png", "cat10.png", "truck10.png"];
    args.extend(imgs.iter().map(|i| d.join(i).display().to_string()));
    args.extend(["--batch-size".into(), "2".into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = crema(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    let exp = expected();
    let want = &exp["cifar10_quick_v1"]["prob"];
    assert_eq!(lines.len(), 3);
    for (k, (line, img)) in lines.iter().zip(imgs).enumerate() {
        assert!(line["image"].as_str().unwrap().ends_with(img));
        assert_eq!(line.as_object().unwrap().len(), 2, "exactly image and top");
        assert_probs(&probs(line, 10), &want[k], img);
        let best = &line["top"][0];
        let label = if img == "truck10.png" { "truck" } else { "dog" };
        assert_eq!(best["label"], label, "{img}");
    }
}

#[test]
fn cifar10_yaml_and_directory_argument() {
    // The imported YAML of the same deploy net; the directory gives its PNGs sorted.
    let args = cifar_args(&root().join("models/cifar10_quick/deploy.yaml"));
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = data(CIFAR).display().to_string();
    a.push(&dir);
    let o = crema(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    let exp = expected();
    let want = &exp["cifar10_quick_v1"]["prob"];
    let order = [("cat10.png", 1), ("dog10.png", 0), ("truck10.png", 2)];
    assert_eq!(lines.len(), 3);
    for (line, (img, k)) in lines.iter().zip(order) {
        assert!(line["image"].as_str().unwrap().ends_with(img));
        assert_probs(&probs(line, 10), &want[k], img);
    }
}

#[test]
fn bad_images_fail_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::write(t.join("text.jpg"), "not a jpeg at all\n").unwrap();
    let full = std::fs::read(data("images/chelsea.png")).unwrap();
    std::fs::write(t.join("cut.png"), &full[..full.len() / 3]).unwrap();
    // A valid PNG signature and IHDR claiming 100000x100000 pixels.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut bomb = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    bomb.extend(13u32.to_be_bytes());
    bomb.extend(&ihdr);
    bomb.extend(crc32(&ihdr).to_be_bytes());
    std::fs::write(t.join("bomb.png"), bomb).unwrap();
    let d = data(CIFAR);
    let args = cifar_args(&d.join("cifar10_quick.prototxt"));
    let mut a: Vec<String> = args;
    for p in [
        t.join("missing.png"),
        d.join("dog10.png"),
        t.join("text.jpg"),
        t.join("cut.png"),
        t.join("bomb.png"),
        data("images/chelsea.png"),
    ] {
        a.push(p.display().to_string());
    }
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = crema(&a);
    assert_eq!(o.status.code(), Some(1));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 6);
    let err = |i: usize| lines[i]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err(0).contains("missing.png") && err(0).contains("No such file"),
        "{}",
        err(0)
    );
    assert!(lines[1]["top"].is_array());
    assert!(err(2).contains("text.jpg"), "{}", err(2));
    assert!(err(3).contains("cut.png"), "{}", err(3));
    assert!(
        err(4).contains("bomb.png") && err(4).contains("too large"),
        "{}",
        err(4)
    );
    // A 451x300 photo into the 32x32 net: resized down and classified.
    assert_eq!(lines[5]["top"].as_array().unwrap().len(), 10);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("4 of 6 image(s) could not be classified"),
        "{stderr}"
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The first three MNIST test digits written as grey PNGs, and a list file naming them.
fn mnist_digits(dir: &Path) -> PathBuf {
    let idx = std::fs::read(data("mnist/t10k-first1000-images-idx3-ubyte")).unwrap();
    for k in 0..3 {
        let px = idx[16 + k * 784..16 + (k + 1) * 784].to_vec();
        let img = image::GrayImage::from_raw(28, 28, px).unwrap();
        img.save(dir.join(format!("digit{k}.png"))).unwrap();
    }
    let list = dir.join("list.txt");
    std::fs::write(&list, "digit0.png 7\ndigit1.png 2\ndigit2.png 1\n").unwrap();
    list
}

/// Checks three JSON lines against the reference LeNet probabilities of the three digits.
fn assert_lenet_reference(lines: &[Value]) {
    let exp = expected();
    assert_eq!(lines.len(), 3);
    for (k, line) in lines.iter().enumerate() {
        assert!(line["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!("digit{k}.png")));
        assert_probs(
            &probs(line, 10),
            &exp["lenet_v2"]["prob"][k.to_string()],
            "digit",
        );
    }
}

#[test]
fn lenet_deploy_yaml_carries_the_training_scale() {
    // models/lenet/deploy.yaml has `transform_param: { scale: 0.00390625 }` on its Input layer:
    // with Caffe's MNIST weights and no --scale flag, the reference probabilities come back.
    let tmp = tempfile::tempdir().unwrap();
    let list = mnist_digits(tmp.path()).display().to_string();
    let w = data("caffe/lenet_v2/lenet_iter_10000.caffemodel");
    let w = w.display().to_string();
    let base = [
        "--model",
        "models/lenet/deploy.yaml",
        "--weights",
        &w,
        "--top-k",
        "10",
    ];
    let mut args = base.to_vec();
    args.extend(["--json", &list]);
    let o = crema(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_lenet_reference(&json_lines(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"));
    // A flag overrides the stored transform: unscaled pixels saturate every probability, and
    // the command says what that is a sign of.
    let mut args = base.to_vec();
    args.extend(["--scale", "1", "--json", &list]);
    let o = crema(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    assert!(lines
        .iter()
        .all(|l| l["top"][0]["prob"].as_f64().unwrap() >= 0.9999));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unscaled input") && err.contains("--scale"),
        "{err}"
    );
}

#[test]
fn lenet_classifies_grey_mnist_pngs() {
    // The first three MNIST test digits written as grey PNGs, then classified by Caffe's LeNet
    // prototxt with Caffe's MNIST scaling: the reference probabilities come back.
    let tmp = tempfile::tempdir().unwrap();
    let list = mnist_digits(tmp.path());
    let d = data("caffe/lenet_v2");
    let o = crema(&[
        "--model",
        &d.join("lenet.prototxt").display().to_string(),
        "--weights",
        &d.join("lenet_iter_10000.caffemodel").display().to_string(),
        "--scale",
        "0.00390625",
        "--top-k",
        "10",
        "--json",
        &list.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    assert_lenet_reference(&lines);
    for line in &lines {
        // No labels: the label is the class index.
        assert_eq!(line["top"][0]["label"], line["top"][0]["index"].to_string());
    }
}

#[test]
fn photos_with_oversampling_and_human_output() {
    // Photos larger than the net's 32x32 input: resize to 40x40, 10 crops averaged (the crops
    // themselves are unit-tested in the library; here: the command's human output).
    let d = data(CIFAR);
    let o = crema(&[
        "--model",
        &d.join("cifar10_quick.prototxt").display().to_string(),
        "--weights",
        &d.join("cifar10_quick_iter_5000.caffemodel")
            .display()
            .to_string(),
        "--mean",
        &d.join("mean.binaryproto").display().to_string(),
        "--labels",
        "models/cifar10_quick/labels.txt",
        "--resize",
        "40,40",
        "--oversample",
        "--top-k",
        "3",
        &data("images").display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    // Five photos, each with its name and three `prob - "label" (index)` lines.
    let names = out.lines().filter(|l| !l.starts_with("  ")).count();
    assert_eq!(names, 5, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(rows.len(), 15, "{out}");
    for r in rows {
        let (p, rest) = r.trim().split_once(" - ").unwrap();
        let p: f64 = p.parse().unwrap();
        assert!((0.0..=1.0).contains(&p) && rest.starts_with('"'), "{r}");
    }
    // Flags that contradict each other or the net are user errors.
    let e = crema(&[
        "--model",
        &d.join("cifar10_quick.prototxt").display().to_string(),
        "--weights",
        &d.join("cifar10_quick_iter_5000.caffemodel")
            .display()
            .to_string(),
        "--resize",
        "16,16",
        &d.join("dog10.png").display().to_string(),
    ]);
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("smaller than the net's input"));
}
