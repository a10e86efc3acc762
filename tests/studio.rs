//! `crema studio` end to end: the JSON endpoints over plain HTTP (path traversal, upload limit,
//! bad input, the numbers of a known log and net), and the page in headless Chromium driven
//! through chromedriver (WebDriver): curves that grow while a `crema train` child runs, LeNet's
//! layers in the Net view, and the CLI's top-1 for a CIFAR-10 photo in the Classify view.
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver` packages.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A child process killed (and reaped) when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `crema studio --dir dir --port 0` and returns it with the address it printed. Its
/// stdout is drained by a thread for as long as it runs.
fn start_studio(dir: &Path) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["studio", "--port", "0", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("crema studio starts");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find("http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line[i..].trim_end_matches('/').to_string());
                }
            }
        }
    });
    let guard = Guard(child);
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("crema studio prints its address");
    (guard, url)
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    let has_len = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if !has_len {
        req += &format!("Content-Length: {}\r\n", body.len());
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&resp[..text_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = resp[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

fn get_json(base: &str, path: &str) -> (u16, Value) {
    let (status, body) = http(base, "GET", path, &[], b"");
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, v)
}

/// The CIFAR-10 quick net of the `crema classify` tests, copied under `dir/cifar`.
fn copy_cifar(dir: &Path) {
    let c = dir.join("cifar");
    std::fs::create_dir_all(&c).unwrap();
    let src = data("caffe/cifar10_quick_v1");
    for (from, to) in [
        ("cifar10_quick.prototxt", "deploy.prototxt"),
        (
            "cifar10_quick_iter_5000.caffemodel",
            "cifar10_quick.caffemodel",
        ),
        ("mean.binaryproto", "mean.binaryproto"),
        ("dog10.png", "dog10.png"),
    ] {
        std::fs::copy(src.join(from), c.join(to)).unwrap();
    }
    std::fs::copy(
        root().join("models/cifar10_quick/labels.txt"),
        c.join("labels.txt"),
    )
    .unwrap();
}

/// LeNet (models/lenet/net.yaml, Fashion-MNIST) with a solver whose log is `lenet/lenet_log.jsonl`.
fn write_lenet(dir: &Path, max_iter: u32) -> PathBuf {
    let l = dir.join("lenet");
    std::fs::create_dir_all(&l).unwrap();
    std::fs::copy(root().join("models/lenet/net.yaml"), l.join("net.yaml")).unwrap();
    let solver = l.join("solver.yaml");
    std::fs::write(
        &solver,
        format!(
            "net: net.yaml\ntest_iter: 2\ntest_interval: 40\nbase_lr: 0.01\nmomentum: 0.9\n\
             weight_decay: 0.0005\nlr_policy: inv\ngamma: 0.0001\npower: 0.75\ndisplay: 10\n\
             max_iter: {max_iter}\nsnapshot: 0\nsnapshot_prefix: lenet\nrandom_seed: 3\n"
        ),
    )
    .unwrap();
    solver
}

#[test]
fn studio_json_endpoints_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("served");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "not for the page").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), d.join("escape.txt")).unwrap();
    copy_cifar(&d);
    write_lenet(&d, 1000);
    // A finished log: displays at 0, 100 (2 s apart: 50 it/s), a test at 100.
    std::fs::write(
        d.join("lenet/lenet_log.jsonl"),
        "{\"iter\":0,\"loss\":2.3,\"lr\":0.01,\"seconds\":1.0}\n\
         {\"iter\":100,\"phase\":\"TEST\",\"outputs\":{\"accuracy\":0.5,\"loss\":1.5}}\n\
         {\"iter\":100,\"loss\":1.2,\"lr\":0.0099,\"seconds\":3.0}\n\
         {\"iter\":1",
    )
    .unwrap();
    // A crema tune search in progress: a diverged trial, then the best, a half-written line.
    std::fs::create_dir(d.join("search")).unwrap();
    std::fs::write(
        d.join("search/trials.jsonl"),
        "{\"trial\":0,\"params\":{\"base_lr\":0.01},\"objective\":0.5,\"status\":\"ok\",\"seconds\":1.0}\n\
         {\"trial\":1,\"params\":{\"base_lr\":0.3},\"objective\":null,\"status\":\"diverged\",\"seconds\":0.2}\n\
         {\"trial\":2,\"params\":{\"base_lr\":0.05},\"objective\":0.75,\"status\":\"ok\",\"seconds\":1.1}\n\
         {\"trial\":3,\"par",
    )
    .unwrap();
    let (_studio, base) = start_studio(&d);

    // The listing names each kind of file once, relative to the served directory.
    let (s, files) = get_json(&base, "/api/files");
    assert_eq!(s, 200);
    assert_eq!(files["runs"][0]["path"], "lenet/lenet_log.jsonl");
    assert_eq!(files["solvers"], json!(["lenet/solver.yaml"]));
    assert_eq!(files["weights"], json!(["cifar/cifar10_quick.caffemodel"]));
    assert_eq!(files["labels"], json!(["cifar/labels.txt"]));
    assert_eq!(files["means"], json!(["cifar/mean.binaryproto"]));
    assert_eq!(files["images"], json!(["cifar/dog10.png"]));
    assert_eq!(files["trials"], json!(["search/trials.jsonl"]));
    // The symlink out of the directory is not listed.
    assert!(!files.to_string().contains("escape"), "{files}");

    // The run: its points, rate, ETA and solver, the half-written last line skipped.
    let (s, run) = get_json(&base, "/api/run?log=lenet/lenet_log.jsonl");
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["loss"], json!([[0.0, 2.3], [100.0, 1.2]]));
    assert_eq!(run["lr"], json!([[0.0, 0.01], [100.0, 0.0099]]));
    assert_eq!(run["tests"]["accuracy"], json!([[100.0, 0.5]]));
    assert_eq!(run["points"], 6);
    assert_eq!(run["unreadable_lines"], 1);
    assert_eq!(run["iters_per_second"], 50.0);
    assert_eq!(run["max_iter"], 1000.0);
    assert_eq!(run["eta_seconds"], 18.0, "(1000 - 100) / 50");
    assert_eq!(run["solver"]["path"], "lenet/solver.yaml");
    assert_eq!(run["solver"]["settings"]["lr_policy"], "inv");
    assert_eq!(run["solver"]["settings"]["base_lr"], 0.01);
    assert_eq!(run["solver"]["settings"]["snapshot_prefix"], "lenet/lenet");

    // The search: best so far (maximized unless told), the best trial, the diverged one.
    let (s, tr) = get_json(&base, "/api/trials?path=search/trials.jsonl");
    assert_eq!(s, 200, "{tr}");
    assert_eq!(tr["trials"].as_array().unwrap().len(), 3);
    assert_eq!(tr["best"], json!([[0, 0.5], [1, 0.5], [2, 0.75]]));
    assert_eq!(tr["best_trial"]["trial"], 2);
    assert_eq!(tr["params"], json!(["base_lr"]));
    assert_eq!(tr["diverged"], 1);
    assert_eq!(tr["unreadable_lines"], 1);
    let (_, tr) = get_json(&base, "/api/trials?path=search/trials.jsonl&minimize=true");
    assert_eq!(tr["best"], json!([[0, 0.5], [1, 0.5], [2, 0.5]]));
    assert_eq!(tr["best_trial"]["trial"], 0);

    // The net: LeNet's layers, TEST-phase shapes (batch 100) and parameter counts.
    let (s, net) = get_json(&base, "/api/net?model=lenet/net.yaml");
    assert_eq!(s, 200, "{net}");
    let names: Vec<&str> = net["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "data", "data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy",
            "loss"
        ]
    );
    let conv1 = &net["layers"][2];
    assert_eq!(conv1["tops"][0]["shape"], json!([100, 20, 24, 24]));
    assert_eq!(conv1["param_count"], 20 * 25 + 20);
    assert_eq!(net["layers"][6]["param_count"], 500 * 800 + 500);
    assert_eq!(
        net["param_count"],
        (20 * 25 + 20) + (50 * 20 * 25 + 50) + (500 * 800 + 500) + (10 * 500 + 10)
    );
    assert!(
        net["svg"].as_str().unwrap().contains("<svg"),
        "Graphviz SVG"
    );

    // Filters: the CIFAR conv1 (32 filters of 3x5x5) as a PNG grid.
    let (s, png) = http(
        &base,
        "GET",
        "/api/filters?model=cifar/deploy.prototxt&weights=cifar/cifar10_quick.caffemodel&layer=conv1",
        &[],
        b"",
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&png));
    assert!(png.starts_with(b"\x89PNG"));

    // Classify: the same numbers as the reference probabilities of the classify tests.
    let dog = std::fs::read(d.join("cifar/dog10.png")).unwrap();
    let q = "/api/classify?model=cifar/deploy.prototxt&weights=cifar/cifar10_quick.caffemodel\
             &labels=cifar/labels.txt&mean=cifar/mean.binaryproto&name=dog10.png";
    let (s, body) = http(&base, "POST", q, &[], &dog);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["top"].as_array().unwrap().len(), 5);
    assert_eq!(v["top"][0]["label"], "dog");
    assert_eq!(v["top"][0]["index"], 5);
    let p = v["top"][0]["prob"].as_f64().unwrap();
    assert!((p - 0.9980546).abs() < 1e-5, "{p}");

    // Refused: paths out of the directory (.., absolute, a symlink out), 403 with a JSON error.
    for path in [
        "/api/file?path=../secret.txt",
        "/api/file?path=..%2Fsecret.txt",
        "/api/file?path=%2Fetc%2Fpasswd",
        "/api/file?path=escape.txt",
        "/api/run?log=../../../../etc/passwd",
        "/api/net?model=../secret.txt",
        "/api/trials?path=escape.txt",
    ] {
        let (s, v) = get_json(&base, path);
        assert_eq!(s, 403, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("outside"), "{v}");
    }
    let (s, body) = http(&base, "GET", "/api/file?path=cifar/labels.txt", &[], b"");
    assert_eq!(s, 200);
    assert_eq!(body, std::fs::read(d.join("cifar/labels.txt")).unwrap());

    // An upload over 16 MiB: 413 before the body is sent (the client waits for 100-continue).
    let big = (16 << 20) + 1;
    let (s, body) = http(
        &base,
        "POST",
        q,
        &[
            ("Content-Length", big.to_string()),
            ("Expect", "100-continue".into()),
        ],
        b"",
    );
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&body));
    // A bad image and a bad model are JSON errors naming what failed; the server goes on.
    let (s, body) = http(&base, "POST", q, &[], b"not an image at all");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("dog10.png"), "{v}");
    let bad = q.replace("cifar/deploy.prototxt", "cifar/labels.txt");
    let (s, body) = http(&base, "POST", &bad, &[], &dog);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("labels.txt"), "{v}");
    // A missing parameter and an unknown page are JSON errors too.
    let (s, v) = get_json(&base, "/api/net");
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("model"), "{v}");
    let (s, v) = get_json(&base, "/nothing/here");
    assert_eq!(s, 404, "{v}");
    let (s, _) = get_json(&base, "/api/files");
    assert_eq!(s, 200, "still serving");
}

// ---------------------------------------------------------------------------------------------
// The page in Chromium

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (polling every 200 ms, up to `secs`) until the JavaScript expression is truthy, and
/// returns its value.
async fn wait_js(c: &fantoccini::Client, expr: &str, secs: u64, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap();
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({expr})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn js(c: &fantoccini::Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

fn save_screenshot(png: &[u8], name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("studio");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// The first trials of a real `crema tune` run, for the Tune view.
const TRIALS: &str = r#"{"objective":0.7288,"params":{"base_lr":0.00068736373,"momentum":0.9026533,"weight_decay":0.0039595063},"seconds":7.428,"status":"ok","trial":0}
{"objective":null,"params":{"base_lr":0.2786298,"momentum":0.5759866,"weight_decay":2.4982794e-6},"seconds":0.371,"status":"diverged","trial":1}
{"objective":0.7972,"params":{"base_lr":0.005087061,"momentum":0.79376435,"weight_decay":0.000015763078},"seconds":7.33,"status":"ok","trial":2}
{"objective":null,"params":{"base_lr":0.10242062,"momentum":0.9570977,"weight_decay":0.000099458295},"seconds":0.459,"status":"diverged","trial":3}
{"objective":0.73759997,"params":{"base_lr":0.0018699361,"momentum":0.63043106,"weight_decay":0.00090707047},"seconds":7.462,"status":"ok","trial":4}
{"objective":0.6886,"params":{"base_lr":0.0002526658,"momentum":0.84820884,"weight_decay":0.0057232277},"seconds":7.418,"status":"ok","trial":5}
{"objective":0.7993,"params":{"base_lr":0.0053401543,"momentum":0.791984,"weight_decay":0.0000152300145},"seconds":7.353,"status":"ok","trial":6}
{"objective":0.8369,"params":{"base_lr":0.008059564,"momentum":0.9690593,"weight_decay":1.0010494e-6},"seconds":7.372,"status":"ok","trial":7}
{"objective":null,"params":{"base_lr":0.012633718,"momentum":0.99,"weight_decay":1e-6},"seconds":3.332,"status":"diverged","trial":8}
{"objective":0.8082,"params":{"base_lr":0.00730502,"momentum":0.7682506,"weight_decay":0.000010535683},"seconds":7.602,"status":"ok","trial":9}
{"objective":0.839,"params":{"base_lr":0.0071933996,"momentum":0.96288884,"weight_decay":1.2369077e-6},"seconds":8.074,"status":"ok","trial":10}
{"objective":0.1,"params":{"base_lr":0.007470928,"momentum":0.99,"weight_decay":1e-6},"seconds":8.23,"status":"ok","trial":11}
"#;
/// The best objective among them, as the page prints it.
const TRIALS_BEST: &str = "0.839";

#[test]
fn studio_page_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    copy_cifar(d);
    let solver = write_lenet(d, 100_000);
    let log = d.join("lenet/lenet_log.jsonl");
    // A training run in progress for the whole test (killed at the end).
    let _train = Guard(
        Command::new(env!("CARGO_BIN_EXE_crema"))
            .args(["train", "--solver"])
            .arg(&solver)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("crema train starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while !log.exists() {
        assert!(Instant::now() < deadline, "crema train wrote no log");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first 12 trials of a real search (scripts/tune_lenet_compare.sh, bayes, seed 1).
    std::fs::create_dir(d.join("search")).unwrap();
    std::fs::write(d.join("search/trials.jsonl"), TRIALS).unwrap();
    let (_studio, base) = start_studio(d);

    let port = free_port();
    let profile = tempfile::tempdir().unwrap();
    let _driver = Guard(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver does not listen");
        std::thread::sleep(Duration::from_millis(100));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,860", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let c = fantoccini::ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        c.goto(&format!("{base}/")).await.unwrap();

        // Runs: the curves gain points while training runs.
        let first = wait_js(&c, "+document.getElementById('points').textContent", 300, "first points")
            .await
            .as_f64()
            .unwrap();
        let more = format!("+document.getElementById('points').textContent > {first}");
        wait_js(&c, &more, 300, "more points").await;
        wait_js(&c, "document.getElementById('progress').textContent.includes('it/s')", 300, "a rate").await;
        let progress = js(&c, "return document.getElementById('progress').textContent").await;
        assert!(
            progress.as_str().unwrap().contains("/ 100000") && progress.as_str().unwrap().contains("ETA"),
            "{progress}"
        );
        assert_eq!(
            js(&c, "return document.getElementById('solver-path').textContent").await,
            "lenet/solver.yaml"
        );
        // Two tests (iterations 0 and 40) drawn, two outputs each, for the screenshot.
        wait_js(
            &c,
            "document.querySelectorAll('#chart-test circle.pt').length >= 4",
            300,
            "a second test",
        )
        .await;
        save_screenshot(&c.screenshot().await.unwrap(), "runs.png");

        // Net: LeNet's layers in the table and in the graph.
        js(&c, "show('net'); document.getElementById('net-model').value = 'lenet/net.yaml'; drawNet();").await;
        wait_js(&c, "document.querySelectorAll('#layers tr.layer').length", 120, "the layer table").await;
        let names = js(&c, "return [...document.querySelectorAll('#layers tr.layer')].map(r => r.dataset.name)").await;
        assert_eq!(
            names,
            json!(["data", "data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy", "loss"])
        );
        let graph = js(&c, "return [...document.querySelectorAll('#graph g.node text')].map(t => t.textContent).join(' ')").await;
        for l in ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy", "loss"] {
            assert!(graph.as_str().unwrap().contains(l), "{l} in the graph: {graph}");
        }
        // The CIFAR net with weights: conv1's filters and its activations for the dog photo.
        js(&c, "const s = (id, v) => document.getElementById(id).value = v; \
                s('net-model', 'cifar/deploy.prototxt'); s('net-weights', 'cifar/cifar10_quick.caffemodel'); \
                s('net-mean', 'cifar/mean.binaryproto'); s('net-image', 'cifar/dog10.png'); drawNet();").await;
        wait_js(&c, "document.querySelector('#layers tr.layer[data-name=conv1]')", 120, "the CIFAR layers").await;
        js(&c, "document.querySelector('#layers tr.layer[data-name=conv1]').click()").await;
        let loaded = "(i => i && i.complete && i.naturalWidth > 0)(document.getElementById('ID'))";
        wait_js(&c, &loaded.replace("ID", "filters-img"), 120, "the filter grid").await;
        wait_js(&c, &loaded.replace("ID", "activations-img"), 120, "the activations").await;
        assert_eq!(js(&c, "return document.querySelectorAll('#layer-view .error').length").await, 0);
        save_screenshot(&c.screenshot().await.unwrap(), "net.png");

        // Classify: a bad model is an error on the page; the deploy net gives the CLI's top-1.
        js(&c, "show('classify'); const s = (id, v) => document.getElementById(id).value = v; \
                s('clf-model', 'lenet/net.yaml'); s('clf-weights', 'cifar/cifar10_quick.caffemodel'); \
                s('clf-labels', 'cifar/labels.txt'); s('clf-mean', 'cifar/mean.binaryproto'); \
                s('clf-image', 'cifar/dog10.png'); document.getElementById('clf-go').click();").await;
        wait_js(&c, "document.getElementById('clf-error').textContent", 120, "the error").await;
        js(&c, "document.getElementById('clf-model').value = 'cifar/deploy.prototxt'; \
                document.getElementById('clf-go').click();").await;
        wait_js(&c, "document.querySelectorAll('#top tr.top').length == 5", 120, "the top-5").await;
        let top = js(&c, "const r = document.querySelector('#top tr.top'); \
                          return [r.dataset.label, +r.dataset.prob, r.cells[2].textContent]").await;
        save_screenshot(&c.screenshot().await.unwrap(), "classify.png");

        // Tune: the trials, best first, and the best-so-far chart.
        js(&c, "show('tune'); document.getElementById('tune-trials').value = 'search/trials.jsonl'; startTune();").await;
        wait_js(&c, "document.querySelectorAll('#trials tr.trial').length == 12", 120, "the trials table").await;
        let best = js(&c, "return document.querySelector('#trials tr.trial').cells[1].textContent").await;
        assert_eq!(best, json!(TRIALS_BEST));
        assert!(js(&c, "return document.getElementById('tune-summary').textContent").await
            .as_str().unwrap().contains("12 trials"));
        save_screenshot(&c.screenshot().await.unwrap(), "tune.png");
        c.close().await.unwrap();

        let cli = Command::new(env!("CARGO_BIN_EXE_crema"))
            .arg("classify")
            .args(["--model", "cifar/deploy.prototxt", "--weights", "cifar/cifar10_quick.caffemodel",
                   "--labels", "cifar/labels.txt", "--mean", "cifar/mean.binaryproto", "--json",
                   "cifar/dog10.png"])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
        let line: Value = serde_json::from_slice(&cli.stdout).unwrap();
        let best = &line["top"][0];
        assert_eq!(top[0], best["label"]);
        assert_eq!(top[0], "dog");
        assert_eq!(top[1].as_f64(), best["prob"].as_f64(), "same probability as the CLI");
        assert_eq!(top[2], format!("{:.4}", best["prob"].as_f64().unwrap()));
        // The reference probability of dog10.png (expected.json, from Caffe).
        assert!((top[1].as_f64().unwrap() - 0.9980546).abs() < 1e-5, "{top}");
    });
}
