//! `crema train`, `crema test`, `crema plot`, `crema draw`, `crema import` and the command
//! line's exit codes, as a user runs them.
//!
//! Children that run for a while write their output to files (never to pipes nobody reads), and
//! the tests wait for events (a file appearing) with a generous deadline, never for a time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn crema() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crema"))
}

fn run(args: &[&str]) -> Output {
    crema().args(args).output().unwrap()
}

/// Polls `check` every 20 ms until it gives a value; fails after five minutes (a loaded machine
/// may be slow, but an event that never comes must not hang the suite).
fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `done` holds; fails if the child exits first.
fn wait_for(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    poll(what, || {
        if done() {
            return Some(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // One last look: the event may have come just before the exit.
            assert!(done(), "crema exited ({status}) before {what}");
        }
        None
    })
}

/// Waits for the child to exit.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    poll("crema to exit", || child.try_wait().unwrap())
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small MLP on DummyData. With `constant: true` the data never changes (so that runs are
/// reproducible across processes); else Gaussian inputs with a constant label.
fn write_net(dir: &Path, file: &str, hidden: usize, last: &str, constant: bool) -> PathBuf {
    let filler = if constant {
        "{ type: uniform, min: -1, max: 1 }"
    } else {
        "{ type: gaussian, std: 1 }"
    };
    let data_filler = if constant {
        "{ type: constant, value: 0.5 }"
    } else {
        filler
    };
    let yaml = format!(
        r#"name: dmlp
layer:
  - name: data
    type: DummyData
    top: [data, label]
    dummy_data_param:
      shape: [ {{ dim: [16, 8] }}, {{ dim: [16] }} ]
      data_filler: [ {data_filler}, {{ type: constant, value: 1 }} ]
  - name: ip1
    type: InnerProduct
    bottom: data
    top: ip1
    inner_product_param: {{ num_output: {hidden}, weight_filler: {filler} }}
  - {{ name: relu1, type: ReLU, bottom: ip1, top: ip1 }}
  - name: {last}
    type: InnerProduct
    bottom: ip1
    top: out
    inner_product_param: {{ num_output: 3, weight_filler: {{ type: xavier }} }}
  - {{ name: loss, type: SoftmaxWithLoss, bottom: [out, label], top: loss }}
  - {{ name: accuracy, type: Accuracy, bottom: [out, label], top: accuracy, include: {{ phase: TEST }} }}
"#
    );
    let p = dir.join(file);
    std::fs::write(&p, yaml).unwrap();
    p
}

fn write_solver(dir: &Path, file: &str, net: &str, extra: &str) -> PathBuf {
    let yaml = format!(
        "net: {net}\nbase_lr: 0.05\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: step\n\
         gamma: 0.5\nstepsize: 20\nmax_iter: 40\ndisplay: 10\ntest_iter: 2\ntest_interval: 20\n\
         snapshot: 20\nrandom_seed: 5\n{extra}"
    );
    let p = dir.join(file);
    std::fs::write(&p, yaml).unwrap();
    p
}

#[test]
fn train_json_lines_snapshots_log_and_test() {
    let d = tempfile::tempdir().unwrap();
    write_net(d.path(), "net.yaml", 16, "ip2", false);
    let s = write_solver(
        d.path(),
        "solver.yaml",
        "net.yaml",
        "snapshot_prefix: snap/m\n",
    );
    std::fs::create_dir(d.path().join("snap")).unwrap();
    let o = run(&["train", "--solver", s.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Tests at 0, 20, 40; displays at 0, 10, 20, 30 and the final loss at 40.
    let tests: Vec<_> = lines.iter().filter(|v| v["phase"] == "TEST").collect();
    let shows: Vec<_> = lines.iter().filter(|v| v.get("lr").is_some()).collect();
    assert_eq!(tests.len(), 3, "{stdout}");
    assert_eq!(shows.len(), 5, "{stdout}");
    for v in &shows {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, vec!["iter", "loss", "lr", "seconds"]);
    }
    assert_eq!(shows[2]["lr"], 0.025); // step policy: 0.05 * 0.5^floor(20/20)
    let last = tests.last().unwrap();
    assert_eq!(last["iter"], 40);
    assert!(
        last["outputs"]["accuracy"].as_f64().unwrap() > 0.9,
        "{stdout}"
    );
    assert!(last["outputs"]["loss"].is_number());
    // Caffe-style log lines on stderr.
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "Iteration 10 (",
        "), loss = ",
        "Iteration 20, lr = 0.025",
        "Iteration 20, Testing net (#0)",
        "Test net output #0: accuracy = ",
        "Optimization Done.",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in\n{err}");
    }
    assert!(err
        .lines()
        .all(|l| !l.starts_with('I') || l.as_bytes()[5] == b' '));
    for f in [
        "m_iter_20.caffemodel",
        "m_iter_20.solverstate",
        "m_iter_40.caffemodel",
        "m_iter_40.solverstate",
    ] {
        assert!(d.path().join("snap").join(f).exists(), "{f}");
    }
    // The JSON-lines log holds the same lines.
    let log = std::fs::read_to_string(d.path().join("snap/m_log.jsonl")).unwrap();
    assert_eq!(log, stdout);

    // crema test scores the snapshot.
    let model = d.path().join("net.yaml");
    let w = d.path().join("snap/m_iter_40.caffemodel");
    let o = run(&[
        "test",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--iterations",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["iterations"], 3);
    assert!(v["outputs"]["accuracy"].as_f64().unwrap() > 0.9, "{v}");
    assert!(v["outputs"]["loss"].as_f64().unwrap() < 0.5, "{v}");

    // crema plot draws the log.
    let png = d.path().join("curve.png");
    let o = run(&[
        "plot",
        d.path().join("snap/m_log.jsonl").to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 5000);
}

#[test]
fn resume_through_the_cli_is_bit_identical() {
    let d = tempfile::tempdir().unwrap();
    write_net(d.path(), "net.yaml", 8, "ip2", true);
    let full = write_solver(d.path(), "full.yaml", "net.yaml", "snapshot_prefix: full\n");
    let o = run(&["train", "--solver", full.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let half = write_solver(d.path(), "half.yaml", "net.yaml", "snapshot_prefix: half\n");
    // First half: stop at 20 by max_iter, then resume the same solver to 40.
    let s = std::fs::read_to_string(&half).unwrap();
    std::fs::write(&half, s.replace("max_iter: 40", "max_iter: 20")).unwrap();
    let o = run(&["train", "--solver", half.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(&half, s).unwrap();
    let state = d.path().join("half_iter_20.solverstate");
    let o = run(&[
        "train",
        "--solver",
        half.to_str().unwrap(),
        "--snapshot",
        state.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let a = crema::caffe::caffemodel::read(d.path().join("full_iter_40.caffemodel")).unwrap();
    let b = crema::caffe::caffemodel::read(d.path().join("half_iter_40.caffemodel")).unwrap();
    let blobs = |n: &crema::proto::NetParameter| {
        n.layer
            .iter()
            .flat_map(|l| l.blobs.iter().map(|b| b.data.clone()))
            .collect::<Vec<_>>()
    };
    assert!(!blobs(&a).is_empty());
    assert_eq!(blobs(&a), blobs(&b));
    // --weights and --snapshot together are refused.
    let o = run(&[
        "train",
        "--solver",
        half.to_str().unwrap(),
        "--snapshot",
        state.to_str().unwrap(),
        "--weights",
        "x.caffemodel",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}

#[test]
fn huge_learning_rate_stops_with_a_named_layer() {
    let d = tempfile::tempdir().unwrap();
    write_net(d.path(), "net.yaml", 16, "ip2", false);
    let s = write_solver(
        d.path(),
        "solver.yaml",
        "net.yaml",
        "snapshot_prefix: nan\n",
    );
    let t = std::fs::read_to_string(&s).unwrap();
    std::fs::write(&s, t.replace("base_lr: 0.05", "base_lr: 1e30")).unwrap();
    let o = run(&["train", "--solver", s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("training diverged at iteration"), "{err}");
    assert!(err.contains("layer `ip"), "{err}");
    assert!(err.contains("Lower base_lr"), "{err}");
    // No snapshot of the bad state.
    let snaps: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".caffemodel"))
        .collect();
    assert!(snaps.is_empty());
}

#[test]
fn fine_tuning_with_a_renamed_layer() {
    let d = tempfile::tempdir().unwrap();
    write_net(d.path(), "net.yaml", 16, "ip2", false);
    let s = write_solver(
        d.path(),
        "solver.yaml",
        "net.yaml",
        "snapshot_prefix: base\n",
    );
    let o = run(&["train", "--solver", s.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // Same net with the last layer renamed: ip1 is copied, ip2b starts from its filler.
    write_net(d.path(), "ft.yaml", 16, "ip2b", false);
    let s2 = write_solver(
        d.path(),
        "ft_solver.yaml",
        "ft.yaml",
        "snapshot_prefix: ft\n",
    );
    let t = std::fs::read_to_string(&s2).unwrap();
    std::fs::write(
        &s2,
        t.replace("max_iter: 40", "max_iter: 0")
            .replace("snapshot: 20", "snapshot: 0"),
    )
    .unwrap();
    let w = d.path().join("base_iter_40.caffemodel");
    let o = run(&[
        "train",
        "--solver",
        s2.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("copied:  ip1\n"), "{err}");
    assert!(err.contains("fresh (kept their fillers): ip2b\n"), "{err}");
    assert!(err.contains("ignored (not in this net): ip2\n"), "{err}");
    // ip1 carries the trained values into the fine-tuned snapshot (max_iter 0: no update).
    let base = crema::caffe::caffemodel::read(&w).unwrap();
    let ft = crema::caffe::caffemodel::read(d.path().join("ft_iter_0.caffemodel")).unwrap();
    let find = |n: &crema::proto::NetParameter, name: &str| {
        n.layer
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.blobs[0].data.clone())
            .unwrap()
    };
    assert_eq!(find(&base, "ip1"), find(&ft, "ip1"));
    assert_ne!(find(&base, "ip2"), find(&ft, "ip2b"));

    // A shape mismatch names the layer, both shapes, and the fix.
    write_net(d.path(), "wide.yaml", 32, "ip2", false);
    let s3 = write_solver(
        d.path(),
        "wide_solver.yaml",
        "wide.yaml",
        "snapshot_prefix: wide\n",
    );
    let o = run(&[
        "train",
        "--solver",
        s3.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("layer `ip1`"), "{err}");
    assert!(
        err.contains("16 8") || err.contains("16x8") || err.contains("(16"),
        "{err}"
    );
    assert!(err.contains("rename the layer"), "{err}");
}

#[test]
fn sighup_snapshots_and_sigint_stops() {
    let d = tempfile::tempdir().unwrap();
    write_net(d.path(), "net.yaml", 16, "ip2", false);
    let s = write_solver(
        d.path(),
        "solver.yaml",
        "net.yaml",
        "snapshot_prefix: sig\n",
    );
    let t = std::fs::read_to_string(&s).unwrap();
    std::fs::write(
        &s,
        t.replace("max_iter: 40", "max_iter: 100000000")
            .replace("snapshot: 20", "snapshot: 0")
            .replace("test_interval: 20", "test_interval: 0"),
    )
    .unwrap();
    // Output to files: a pipe nobody reads fills up and blocks the child.
    let out_path = d.path().join("stdout.jsonl");
    let err_path = d.path().join("stderr.txt");
    let mut child = crema()
        .args(["train", "--solver", s.to_str().unwrap(), "--json"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Training is under way (signal handlers installed) once the log has its first line.
    let log = d.path().join("sig_log.jsonl");
    wait_for(&mut child, "the first log line", || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    let signal = |sig: &str, pid: u32| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let snapshots = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("sig_iter_") && n.ends_with(".solverstate"))
            .collect();
        v.sort();
        v
    };
    // SIGHUP: a snapshot, and training goes on.
    signal("-HUP", child.id());
    wait_for(&mut child, "the SIGHUP snapshot", || {
        !snapshots().is_empty()
    });
    assert_eq!(snapshots().len(), 1, "one SIGHUP, one snapshot");
    signal("-INT", child.id());
    let status = wait_exit(&mut child);
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("Optimization stopped early."), "{err}");
    // The HUP snapshot and the INT snapshot, at different iterations (training went on).
    let snap = snapshots();
    assert_eq!(snap.len(), 2, "{snap:?}");
    let iters: Vec<i32> = snap
        .iter()
        .map(|f| {
            <crema::proto::SolverState as prost::Message>::decode(
                std::fs::read(d.path().join(f)).unwrap().as_slice(),
            )
            .unwrap()
            .iter()
        })
        .collect();
    assert!(iters.iter().all(|&i| i > 0 && i < 100000000), "{iters:?}");
    assert_ne!(iters[0], iters[1]);
}

#[test]
fn killed_during_snapshots_leaves_only_complete_files() {
    let d = tempfile::tempdir().unwrap();
    // ~1 MB of weights, a snapshot every iteration: a kill lands in or near a write.
    write_net(d.path(), "net.yaml", 32768, "ip2", false);
    let s = write_solver(d.path(), "solver.yaml", "net.yaml", "snapshot_prefix: k\n");
    let t = std::fs::read_to_string(&s).unwrap();
    std::fs::write(
        &s,
        t.replace("max_iter: 40", "max_iter: 100000")
            .replace("snapshot: 20", "snapshot: 1")
            .replace("test_interval: 20", "test_interval: 0"),
    )
    .unwrap();
    let mut child = crema()
        .args(["train", "--solver", s.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Three snapshots are complete; the fourth is being written.
    let third = d.path().join("k_iter_3.solverstate");
    wait_for(&mut child, "the third snapshot", || third.exists());
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    wait_exit(&mut child);
    let mut models = 0;
    for e in std::fs::read_dir(d.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".caffemodel") {
            let net = crema::caffe::caffemodel::read(d.path().join(&name)).unwrap();
            let ip1 = net.layer.iter().find(|l| l.name() == "ip1").unwrap();
            assert_eq!(ip1.blobs[0].data.len(), 32768 * 8, "{name} is truncated");
            models += 1;
        } else if name.ends_with(".solverstate") {
            let bytes = std::fs::read(d.path().join(&name)).unwrap();
            let st =
                <crema::proto::SolverState as prost::Message>::decode(bytes.as_slice()).unwrap();
            assert_eq!(st.history.len(), 4, "{name}");
        }
    }
    assert!(models >= 3);
}

#[test]
fn draw_mlp_as_dot_and_svg() {
    let d = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp/net.yaml");
    let dot = d.path().join("net.dot");
    let o = run(&[
        "draw",
        "--model",
        model.to_str().unwrap(),
        "--out",
        dot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let g = std::fs::read_to_string(&dot).unwrap();
    assert!(g.starts_with("digraph \"MLP\""), "{g}");
    assert!(
        g.contains("label=\"ip1\\n(InnerProduct)\\noutputs 32\", shape=box"),
        "{g}"
    );
    assert!(g.contains("label=\"data\", shape=ellipse"), "{g}");
    // relu1 runs in place: ip1 appears as two blob nodes, so the graph has no cycle.
    assert_eq!(g.matches("label=\"ip1\", shape=ellipse").count(), 2, "{g}");
    let has_dot = Command::new("dot").arg("-V").output().is_ok();
    let svg = d.path().join("net.svg");
    let o = run(&[
        "draw",
        "--model",
        model.to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]);
    if has_dot {
        assert!(o.status.success(), "{}", text(&o));
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.contains("<svg") && s.contains("ip1"));
    } else {
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("Graphviz `dot` is not installed"));
    }
}

#[test]
fn draw_zoo_prototxts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/prototxt");
    let d = tempfile::tempdir().unwrap();
    for (m, layers) in [
        ("examples/mnist/lenet_train_test.prototxt", 11),
        ("models/bvlc_googlenet/train_val.prototxt", 166),
    ] {
        let out = d.path().join("g.dot");
        let o = run(&[
            "draw",
            "--model",
            root.join(m).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(o.status.success(), "{m}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["layers"], layers, "{m}");
        let g = std::fs::read_to_string(&out).unwrap();
        assert_eq!(g.matches("shape=box").count(), layers, "{m}");
    }
}

#[test]
fn usage_errors_exit_1_help_and_version_exit_0() {
    // FORMAT.md: a bad flag is a user error, exit 1 (clap's own default is 2).
    let o = run(&["train", "--solverr", "s.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--solverr"));
    let o = run(&["clasify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = run(&["classify", "--top-k", "many", "x.png"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for args in [&["--help"][..], &["--version"], &["train", "--help"]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert!(!o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn failed_import_removes_only_the_folder_it_created() {
    let d = tempfile::tempdir().unwrap();
    let lenet = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/prototxt/examples/mnist/lenet_train_test.prototxt");
    let missing_weights = d.path().join("nothere.caffemodel");
    // A new folder (two levels deep): the YAML is written, then the weights fail to load.
    let new = d.path().join("new/sub");
    let o = run(&[
        "import",
        "--prototxt",
        lenet.to_str().unwrap(),
        "--caffemodel",
        missing_weights.to_str().unwrap(),
        "--out",
        new.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothere.caffemodel"));
    assert!(
        !d.path().join("new").exists(),
        "the created folders are gone"
    );
    // A folder that was there before stays, with what it held.
    let old = d.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("keep.txt"), "mine").unwrap();
    let o = run(&[
        "import",
        "--prototxt",
        d.path().join("nothere.prototxt").to_str().unwrap(),
        "--out",
        old.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(old.join("keep.txt")).unwrap(),
        "mine"
    );
    // A success keeps its folder.
    let o = run(&[
        "import",
        "--prototxt",
        lenet.to_str().unwrap(),
        "--out",
        new.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(new.join("net.yaml").exists());
}

#[test]
fn plot_draws_the_last_of_two_appended_runs() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("log.jsonl");
    let mut lines = String::new();
    // Run 1: iterations 0..300; run 2 (appended, from 0 again): 0..200, lower loss.
    for (run, last, base) in [(1, 300, 2.0), (2, 200, 1.0)] {
        for it in (0..=last).step_by(50) {
            let loss = base / (1.0 + it as f64 / 100.0);
            lines += &format!(
                "{{\"iter\": {it}, \"loss\": {loss}, \"lr\": 0.01, \"seconds\": {run}}}\n"
            );
            if it % 100 == 0 {
                lines += &format!(
                    "{{\"iter\": {it}, \"phase\": \"TEST\", \"outputs\": {{\"accuracy\": {}}}}}\n",
                    0.5 + it as f64 / 1000.0
                );
            }
        }
    }
    std::fs::write(&log, lines).unwrap();
    let png = d.path().join("runs.png");
    let draw = |extra: &[&str]| {
        let mut args = vec![
            "plot",
            log.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        run(&args)
    };
    let o = draw(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["runs"].as_u64(), v["run"].as_u64()), (Some(2), Some(2)));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 runs (iterations 0-300, 0-200)"), "{err}");
    let o = draw(&["--run", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["run"], 1);
    let o = draw(&["--run", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds 2 run(s)"));
}
