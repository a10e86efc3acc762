//! `crema tune` end to end: a tiny search over an MLP on DummyData through the binary, its
//! `trials.jsonl`, `best_solver.yaml` trained by `crema train` from another directory, resume,
//! diverged trials, space errors and `crema plot` of the trials.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn crema() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crema"))
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An MLP with a Dropout layer on Gaussian inputs whose label is constant, so that accuracy
/// depends on how far training got.
fn write_model(dir: &Path) -> PathBuf {
    write(
        dir,
        "net.yaml",
        r#"name: dmlp
layer:
  - name: data
    type: DummyData
    top: [data, label]
    dummy_data_param:
      shape: [ { dim: [16, 8] }, { dim: [16] } ]
      data_filler: [ { type: gaussian, std: 1 }, { type: constant, value: 1 } ]
  - name: ip1
    type: InnerProduct
    bottom: data
    top: ip1
    inner_product_param: { num_output: 16, weight_filler: { type: gaussian, std: 1 } }
  - { name: relu1, type: ReLU, bottom: ip1, top: ip1 }
  - { name: drop1, type: Dropout, bottom: ip1, top: ip1 }
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: out
    inner_product_param: { num_output: 3, weight_filler: { type: xavier } }
  - { name: loss, type: SoftmaxWithLoss, bottom: [out, label], top: loss }
  - { name: accuracy, type: Accuracy, bottom: [out, label], top: accuracy, include: { phase: TEST } }
"#,
    );
    write(
        dir,
        "solver.yaml",
        "net: net.yaml\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: fixed\nmax_iter: 30\n\
         display: 10\ntest_iter: 2\ntest_interval: 30\nrandom_seed: 5\n",
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tiny_search_writes_trials_best_solver_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let solver = write_model(d.path());
    let space = write(
        d.path(),
        "space.yaml",
        "base_lr: {min: 1e-4, max: 0.5, scale: log}\n\
         momentum: {min: 0.5, max: 0.99}\n\
         layer.drop1.dropout_param.dropout_ratio: {min: 0, max: 0.7}\n",
    );
    let out = d.path().join("search");
    let args = |trials: &str, parallel: &str| {
        let mut c = crema();
        c.args([
            "tune",
            "--solver",
            solver.to_str().unwrap(),
            "--space",
            space.to_str().unwrap(),
            "--trials",
            trials,
            "--parallel",
            parallel,
            "--budget-iters",
            "20",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        c
    };
    let o = args("3", "1").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let file = out.join("trials.jsonl");
    let first = lines(&file);
    assert_eq!(first.len(), 3);
    // --json prints the same lines on stdout.
    let stdout: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stdout, first);
    for (i, t) in first.iter().enumerate() {
        assert_eq!(t["trial"], i);
        assert_eq!(t["status"], "ok", "{t}");
        let acc = t["objective"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{t}");
        assert!(t["seconds"].as_f64().unwrap() >= 0.0);
        let p = t["params"].as_object().unwrap();
        assert_eq!(p.len(), 3);
        let lr = p["base_lr"].as_f64().unwrap();
        assert!((1e-4..=0.5).contains(&lr), "{t}");
        let m = p["momentum"].as_f64().unwrap();
        assert!((0.5..=0.99).contains(&m), "{t}");
        let r = p["layer.drop1.dropout_param.dropout_ratio"]
            .as_f64()
            .unwrap();
        assert!((0.0..=0.7).contains(&r), "{t}");
        assert!(out.join(format!("trials/trial_{i}.jsonl")).exists());
    }
    // Three Halton points are three different points.
    assert_ne!(first[0]["params"], first[1]["params"]);
    assert_ne!(first[1]["params"], first[2]["params"]);

    // Resume: two more trials, run at once, numbered on; the first three are kept.
    let o = args("5", "2").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let all = lines(&file);
    assert_eq!(all.len(), 5);
    assert_eq!(&all[..3], &first[..]);
    let numbers: Vec<u64> = all.iter().map(|t| t["trial"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("3 trial(s) done"), "{err}");

    // best_solver.yaml holds the best trial's values and trains from another directory.
    // The best trial: the highest accuracy, the earliest among equals.
    let top = all
        .iter()
        .map(|t| t["objective"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let best = all
        .iter()
        .find(|t| t["objective"].as_f64() == Some(top))
        .unwrap();
    let head = format!("# crema tune: trial {} of", best["trial"]);
    let bs = std::fs::read_to_string(out.join("best_solver.yaml")).unwrap();
    assert!(bs.starts_with(&head), "{bs}");
    let lr = best["params"]["base_lr"].as_f64().unwrap();
    assert!(
        bs.contains(&format!("base_lr: {}", lr as f32)),
        "{bs}\n{best}"
    );
    let bn = std::fs::read_to_string(out.join("best_net.yaml")).unwrap();
    let ratio = best["params"]["layer.drop1.dropout_param.dropout_ratio"]
        .as_f64()
        .unwrap();
    assert!(
        bn.contains(&format!("dropout_ratio: {}", ratio as f32)),
        "{bn}\n{best}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let o = crema()
        .current_dir(elsewhere.path())
        .args([
            "train",
            "--solver",
            out.join("best_solver.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("best_log.jsonl").exists());

    // The trials plot: objective and best so far, one panel per parameter.
    let png = d.path().join("trials.png");
    let o = crema()
        .args([
            "plot",
            file.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trials"], 5);
    assert_eq!(v["panels"].as_array().unwrap().len(), 4);
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
}

#[test]
fn diverged_trials_get_the_worst_value_and_the_search_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let solver = write_model(d.path());
    let space = write(
        d.path(),
        "space.yaml",
        "base_lr: {min: 1e29, max: 1e30, scale: log}\n",
    );
    let out = d.path().join("nan");
    let o = crema()
        .args([
            "tune",
            "--solver",
            solver.to_str().unwrap(),
            "--space",
            space.to_str().unwrap(),
            "--trials",
            "2",
            "--budget-iters",
            "10",
            "--objective",
            "loss",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let all = lines(&out.join("trials.jsonl"));
    assert_eq!(all.len(), 2);
    for t in &all {
        assert_eq!(t["status"], "diverged", "{t}");
        assert_eq!(t["objective"], Value::Null);
    }
    assert!(String::from_utf8_lossy(&o.stderr).contains("every trial diverged"));
}

/// Runs `crema tune` over a space file `name` holding `yaml`; it must fail with exit code 1.
/// Returns its stderr.
fn space_error(dir: &Path, solver: &Path, name: &str, yaml: &str) -> String {
    let space = write(dir, name, yaml);
    let o = crema()
        .args([
            "tune",
            "--solver",
            solver.to_str().unwrap(),
            "--space",
            space.to_str().unwrap(),
            "--trials",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn space_errors_name_file_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let solver = write_model(d.path());
    let err = space_error(
        d.path(),
        &solver,
        "space.yaml",
        "base_lr: {min: 1e-4, max: 0.5, scale: log}\nmomentun: {min: 0.5, max: 0.99}\n",
    );
    assert!(err.contains("space.yaml:2:1: "), "{err}");
    assert!(err.contains("did you mean `momentum`"), "{err}");

    // A layer the net does not have: the key's position and the net's layers.
    let err = space_error(
        d.path(),
        &solver,
        "space2.yaml",
        "base_lr: {min: 1e-4, max: 0.5}\nlayer.drop2.dropout_param.dropout_ratio: {min: 0, max: 0.5}\n",
    );
    assert!(err.contains("space2.yaml:2:1: "), "{err}");
    assert!(
        err.contains("no layer `drop2` (did you mean `drop1`?)"),
        "{err}"
    );
}
