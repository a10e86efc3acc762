//! `crema studio`: a small local web page over a directory: training runs with live curves
//! (from the `<snapshot_prefix>_log.jsonl` logs `crema train` writes), nets drawn as `crema draw`
//! draws them with their shapes, filters and activations, and `crema classify` in the browser.
//! The page is embedded in the binary; everything it shows comes from JSON endpoints under
//! `/api/` that scripts can use too. Only files under the served directory are read.

use crate::json::f32_json;
use crate::Failure;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crema::data::photo::{self, DecodeLimits};
use crema::proto::Phase;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to serve: its training logs, models, weights, labels and images.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Port to listen on (0: any free port; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind. The default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
}

/// Largest accepted upload (an image to classify), in bytes.
pub const MAX_UPLOAD: usize = 16 << 20;
/// How deep and how many files the directory listing walks.
const MAX_DEPTH: usize = 8;
const MAX_FILES: usize = 20_000;
/// Largest file `/api/file` serves.
const MAX_SERVED: u64 = 64 << 20;
/// Most patches drawn in a filter or activation grid.
const MAX_PATCHES: usize = 256;

const PAGE: &str = include_str!("studio/index.html");

struct Studio {
    root: PathBuf,
}

type Shared = Arc<Studio>;

/// An API error: a status and a message, sent as `{"error": message}`.
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        match f {
            Failure::User(e) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                crema::error::chain_text(e.as_ref()),
            ),
            Failure::Internal(e) => ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                crema::error::chain_text(e.as_ref()),
            ),
        }
    }
}

impl From<crema::Error> for ApiError {
    fn from(e: crema::Error) -> ApiError {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.chain_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The query string, or a 400 with a JSON error naming what is missing or malformed.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad(e.body_text()))
}

impl Studio {
    /// The file `rel` names under the served directory: canonicalized (so `..` and symlinks
    /// are resolved) and refused unless it stays inside.
    fn resolve(&self, rel: &str) -> ApiResult<PathBuf> {
        if rel.is_empty() {
            return Err(ApiError::bad("an empty path"));
        }
        let joined = self.root.join(rel);
        let canon = std::fs::canonicalize(&joined).map_err(|e| {
            // Say nothing about what lies outside: a path that leaves the directory is
            // refused whether it exists or not.
            if escapes(rel) {
                outside(rel)
            } else {
                ApiError(StatusCode::NOT_FOUND, format!("{rel}: {e}"))
            }
        })?;
        if !canon.starts_with(&self.root) {
            return Err(outside(rel));
        }
        Ok(canon)
    }

    fn resolve_opt(&self, rel: &Option<String>) -> ApiResult<Option<PathBuf>> {
        match rel.as_deref() {
            None | Some("") => Ok(None),
            Some(r) => self.resolve(r).map(Some),
        }
    }

    /// `p` relative to the served directory, with `/` separators.
    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn escapes(rel: &str) -> bool {
    Path::new(rel).is_absolute() || Path::new(rel).components().any(|c| c.as_os_str() == "..")
}

fn outside(rel: &str) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        format!("{rel}: outside the served directory"),
    )
}

/// Runs `f` on the blocking pool; a panic becomes a 500 error instead of a dropped request.
async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    let r = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
    })
    .await;
    match r {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {msg}"),
            ))
        }
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )),
    }
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let root = std::fs::canonicalize(&a.dir).map_err(|e| crema::Error::io(&a.dir, e))?;
    if !root.is_dir() {
        return Err(Failure::User(anyhow::anyhow!(
            "--dir {}: not a directory",
            a.dir.display()
        )));
    }
    let addr: std::net::IpAddr = a.bind.parse().map_err(|e| {
        Failure::User(anyhow::anyhow!(
            "--bind {}: not an IP address ({e})",
            a.bind
        ))
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(anyhow::anyhow!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((addr, a.port))
            .await
            .map_err(|e| {
                Failure::User(anyhow::anyhow!(
                    "cannot listen on {}:{}: {e}",
                    a.bind,
                    a.port
                ))
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure::Internal(e.into()))?;
        println!(
            "crema studio: serving {} at http://{local}/",
            root.display()
        );
        let _ = std::io::stdout().flush();
        let app = router(Arc::new(Studio { root }));
        axum::serve(listener, app)
            .await
            .map_err(|e| Failure::Internal(anyhow::anyhow!("server failed: {e}")))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/files", get(api_files))
        .route("/api/file", get(api_file))
        .route("/api/run", get(api_run))
        .route("/api/trials", get(api_trials))
        .route("/api/net", get(api_net))
        .route("/api/filters", get(api_filters))
        .route("/api/activations", post(api_activations))
        .route("/api/classify", post(api_classify))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such page".into()) })
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Files

/// Every file under the root (not following symlinks that leave it), relative paths, sorted.
fn walk(root: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if out.len() >= MAX_FILES {
                break;
            }
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(canon) = std::fs::canonicalize(e.path()) else {
                continue;
            };
            if !canon.starts_with(root) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&canon) else {
                continue;
            };
            if meta.is_dir() {
                if depth + 1 < MAX_DEPTH && name != "target" {
                    stack.push((e.path(), depth + 1));
                }
            } else if meta.is_file() {
                let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((e.path(), mtime));
            }
        }
    }
    out.sort();
    out
}

fn ext_of(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

const IMAGE_EXTS: &[&str] = &[
    "jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "pnm", "pgm", "ppm",
];

/// Whether a model file is a solver (by name, as Caffe's files and crema's models are named).
fn is_solver_name(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().contains("solver"))
}

fn list_files(st: &Studio) -> Value {
    let mut runs = Vec::new();
    let mut models = Vec::new();
    let mut solvers = Vec::new();
    let mut weights = Vec::new();
    let mut labels = Vec::new();
    let mut means = Vec::new();
    let mut images = Vec::new();
    let mut trials = Vec::new();
    for (p, mtime) in walk(&st.root) {
        let rel = st.rel(&p);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = ext_of(&p);
        if name == "trials.jsonl" {
            trials.push(rel);
        } else if name.ends_with("_log.jsonl") {
            let secs = mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            runs.push(json!({"path": rel, "modified": secs}));
        } else if ["yaml", "yml", "prototxt"].contains(&ext.as_str()) {
            if is_solver_name(&p) {
                solvers.push(rel);
            } else {
                models.push(rel);
            }
        } else if ext == "caffemodel" || name.ends_with(".caffemodel.h5") {
            weights.push(rel);
        } else if (ext == "txt" && name.contains("label")) || name == "synset_words.txt" {
            labels.push(rel);
        } else if ext == "binaryproto" {
            means.push(rel);
        } else if IMAGE_EXTS.contains(&ext.as_str()) {
            images.push(rel);
        }
    }
    json!({
        "dir": st.root.display().to_string(),
        "runs": runs, "models": models, "solvers": solvers, "weights": weights,
        "labels": labels, "means": means, "images": images, "trials": trials,
    })
}

async fn api_files(State(st): State<Shared>) -> ApiResult<Json<Value>> {
    blocking(move || Ok(Json(list_files(&st)))).await
}

#[derive(serde::Deserialize)]
struct PathQuery {
    path: String,
}

async fn api_file(
    State(st): State<Shared>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    blocking(move || {
        let p = st.resolve(&q.path)?;
        let meta = std::fs::metadata(&p).map_err(|e| ApiError::bad(format!("{}: {e}", q.path)))?;
        if !meta.is_file() {
            return Err(ApiError::bad(format!("{}: not a file", q.path)));
        }
        if meta.len() > MAX_SERVED {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{}: larger than {} MiB", q.path, MAX_SERVED >> 20),
            ));
        }
        let bytes = std::fs::read(&p).map_err(|e| ApiError::bad(format!("{}: {e}", q.path)))?;
        let ty = match ext_of(&p).as_str() {
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            "bmp" => "image/bmp",
            "webp" => "image/webp",
            "tif" | "tiff" => "image/tiff",
            "json" | "jsonl" => "application/json",
            "yaml" | "yml" | "prototxt" | "txt" | "md" => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        };
        Ok(([(header::CONTENT_TYPE, ty)], bytes).into_response())
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Runs

#[derive(serde::Deserialize)]
struct RunQuery {
    log: String,
}

/// The curves and progress of a training log's last run (another `crema train` appending to
/// the same log starts a new run at a lower iteration, as `crema plot` splits them).
fn read_run(log: &Path, shown: &str) -> ApiResult<Value> {
    let text = std::fs::read_to_string(log).map_err(|e| ApiError::bad(format!("{shown}: {e}")))?;
    let mut lines: Vec<Value> = Vec::new();
    let mut bad = 0usize;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // The last line may be half written while training runs.
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.get("iter").and_then(Value::as_f64).is_some() => lines.push(v),
            _ => bad += 1,
        }
    }
    let iter_of = |v: &Value| v["iter"].as_f64().unwrap_or(0.0);
    let mut start = 0;
    for i in 1..lines.len() {
        if iter_of(&lines[i]) < iter_of(&lines[i - 1]) {
            start = i;
        }
    }
    let run = &lines[start..];
    let mut loss = Vec::new();
    let mut lr = Vec::new();
    let mut tests: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut timed: Vec<(f64, f64)> = Vec::new();
    for v in run {
        let it = iter_of(v);
        if v.get("phase").and_then(Value::as_str) == Some("TEST") {
            let prefix = match v.get("net").and_then(Value::as_u64) {
                Some(n) => format!("net{n}/"),
                None => String::new(),
            };
            if let Some(o) = v.get("outputs").and_then(Value::as_object) {
                for (name, x) in o {
                    if let Some(x) = x.as_f64() {
                        tests
                            .entry(format!("{prefix}{name}"))
                            .or_default()
                            .push(json!([it, x]));
                    }
                }
            }
        } else {
            if let Some(x) = v.get("loss").and_then(Value::as_f64) {
                loss.push(json!([it, x]));
            }
            if let Some(x) = v.get("lr").and_then(Value::as_f64) {
                lr.push(json!([it, x]));
            }
            if let Some(s) = v.get("seconds").and_then(Value::as_f64) {
                timed.push((it, s));
            }
        }
    }
    let iter = run.iter().map(iter_of).fold(0.0, f64::max);
    let rate = match (timed.first(), timed.last()) {
        (Some(a), Some(b)) if b.1 > a.1 && b.0 > a.0 => Some((b.0 - a.0) / (b.1 - a.1)),
        _ => None,
    };
    let points = loss.len() + lr.len() + tests.values().map(Vec::len).sum::<usize>();
    Ok(json!({
        "log": shown,
        "runs_in_log": if lines.is_empty() { 0 } else { lines[..].windows(2).filter(|w| iter_of(&w[1]) < iter_of(&w[0])).count() + 1 },
        "iter": iter,
        "seconds": timed.last().map(|t| t.1),
        "iters_per_second": rate,
        "points": points,
        "unreadable_lines": bad,
        "loss": loss,
        "lr": lr,
        "tests": tests,
    }))
}

/// The solver under the root whose `snapshot_prefix` names this log, with its settings.
fn find_solver(st: &Studio, log: &Path) -> Option<Value> {
    for (p, _) in walk(&st.root) {
        if !is_solver_name(&p) || !["yaml", "yml", "prototxt"].contains(&ext_of(&p).as_str()) {
            continue;
        }
        let Ok(s) = crema::load_solver(&p) else {
            continue;
        };
        let want = PathBuf::from(format!("{}_log.jsonl", s.snapshot_prefix()));
        let want = if want.is_absolute() {
            want
        } else {
            p.parent().unwrap_or(Path::new("")).join(want)
        };
        if std::fs::canonicalize(&want).ok().as_deref() != Some(log) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let mut settings = serde_json::Map::new();
        settings.insert("type".into(), json!(s.r#type()));
        settings.insert("base_lr".into(), f32_json(s.base_lr()));
        settings.insert("lr_policy".into(), json!(s.lr_policy()));
        settings.insert("max_iter".into(), json!(s.max_iter()));
        settings.insert("momentum".into(), f32_json(s.momentum()));
        settings.insert("weight_decay".into(), f32_json(s.weight_decay()));
        settings.insert("display".into(), json!(s.display()));
        settings.insert("test_interval".into(), json!(s.test_interval()));
        settings.insert("snapshot".into(), json!(s.snapshot()));
        let prefix = Path::new(s.snapshot_prefix());
        let prefix = match prefix.strip_prefix(&st.root) {
            Ok(_) => st.rel(prefix),
            Err(_) => s.snapshot_prefix().to_string(),
        };
        settings.insert("snapshot_prefix".into(), json!(prefix));
        return Some(json!({
            "path": st.rel(&p),
            "max_iter": s.max_iter(),
            "settings": settings,
            "text": text,
        }));
    }
    None
}

async fn api_run(
    State(st): State<Shared>,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    blocking(move || {
        let log = st.resolve(&q.log)?;
        let mut v = read_run(&log, &q.log)?;
        let solver = find_solver(&st, &log);
        if let Some(s) = &solver {
            let max_iter = s["max_iter"].as_f64().unwrap_or(0.0);
            let iter = v["iter"].as_f64().unwrap_or(0.0);
            v["max_iter"] = json!(max_iter);
            v["eta_seconds"] = match v["iters_per_second"].as_f64() {
                Some(r) if r > 0.0 => json!(((max_iter - iter).max(0.0)) / r),
                _ => Value::Null,
            };
        }
        v["solver"] = solver.unwrap_or(Value::Null);
        Ok(Json(v))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Tune

#[derive(serde::Deserialize)]
struct TrialsQuery {
    path: String,
    /// The search minimized its objective (trials.jsonl does not say).
    #[serde(default)]
    minimize: bool,
}

/// The trials of a `crema tune` search so far: each line, the best so far after each trial,
/// the parameter names and the best trial (a half-written last line is skipped).
fn read_trials(path: &Path, shown: &str, minimize: bool) -> ApiResult<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ApiError::bad(format!("{shown}: {e}")))?;
    let mut trials = Vec::new();
    let mut bad = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.get("trial").is_some() && v.get("params").is_some() => trials.push(v),
            _ => bad += 1,
        }
    }
    let best: Vec<Value> = crate::plot_trials::best_so_far(&trials, minimize)
        .iter()
        .zip(&trials)
        .filter_map(|(b, t)| b.map(|b| json!([t["trial"], b])))
        .collect();
    let mut params: Vec<String> = Vec::new();
    for t in &trials {
        for k in t["params"].as_object().into_iter().flat_map(|m| m.keys()) {
            if !params.contains(k) {
                params.push(k.clone());
            }
        }
    }
    let best_trial = trials
        .iter()
        .filter(|t| t["objective"].is_number())
        .fold(None::<&Value>, |b, t| {
            let y = t["objective"].as_f64().unwrap_or(0.0);
            match b {
                Some(b) => {
                    let by = b["objective"].as_f64().unwrap_or(0.0);
                    Some(if (minimize && y < by) || (!minimize && y > by) {
                        t
                    } else {
                        b
                    })
                }
                None => Some(t),
            }
        })
        .cloned();
    let diverged = trials.iter().filter(|t| t["status"] == "diverged").count();
    Ok(json!({
        "trials": trials,
        "best": best,
        "params": params,
        "best_trial": best_trial,
        "diverged": diverged,
        "unreadable_lines": bad,
    }))
}

async fn api_trials(
    State(st): State<Shared>,
    q: Result<Query<TrialsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    blocking(move || {
        let path = st.resolve(&q.path)?;
        Ok(Json(read_trials(&path, &q.path, q.minimize)?))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Net

#[derive(serde::Deserialize)]
struct NetQuery {
    model: String,
    #[serde(default)]
    weights: Option<String>,
    #[serde(default)]
    layer: Option<String>,
}

fn user_err(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
}

fn build_net(model: &Path, weights: Option<&Path>) -> ApiResult<crema::Net> {
    let param = crema::load_net(model)?;
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut StdRng::seed_from_u64(1701))?;
    if let Some(w) = weights {
        let trained = crema::caffe::caffemodel::read(w)?;
        net.copy_trained_layers_from(&trained, &w.display().to_string())?;
    }
    Ok(net)
}

fn net_info(model: &Path, shown: &str) -> ApiResult<Value> {
    let param = crema::load_net(model)?;
    let dot = crate::draw::to_dot(&param, "LR");
    let svg = crate::draw::render(&dot, "svg", &PathBuf::from(format!("{shown}.dot")))?;
    let svg = String::from_utf8_lossy(&svg);
    // Shapes and parameter counts from the TEST-phase net, when it can be built here (its data
    // sources may be missing); the graph shows every layer, as `crema draw` does.
    let (built, note) =
        match crema::Net::for_phase(&param, Phase::Test, &mut StdRng::seed_from_u64(1701)) {
            Ok(n) => (Some(n), Value::Null),
            Err(e) => (
                None,
                json!(format!("shapes unavailable: {}", e.chain_text())),
            ),
        };
    let mut entries: HashMap<&str, &crema::net::LayerEntry> = HashMap::new();
    if let Some(n) = &built {
        for l in n.layers() {
            entries.insert(l.name.as_str(), l);
        }
    }
    let layers: Vec<Value> = param
        .layer
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = json!({
                "index": i,
                "node": format!("layer{i}"),
                "name": l.name(),
                "type": l.r#type(),
                "params": crate::draw::layer_label(l).into_iter().skip(2).collect::<Vec<_>>(),
                "bottoms": l.bottom,
            });
            match (built.as_ref(), entries.get(l.name())) {
                (Some(n), Some(e)) => {
                    let tops: Vec<Value> = e
                        .top
                        .iter()
                        .map(|&t| json!({"name": n.blob_name(t), "shape": n.blob_at(t).shape}))
                        .collect();
                    let shapes: Vec<Value> = e
                        .params
                        .iter()
                        .filter_map(|&p| n.params().get(p))
                        .map(|b| json!(b.shape))
                        .collect();
                    let count: usize = e
                        .params
                        .iter()
                        .filter_map(|&p| n.params().get(p))
                        .map(|b| b.count())
                        .sum();
                    v["tops"] = json!(tops);
                    v["param_shapes"] = json!(shapes);
                    v["param_count"] = json!(count);
                }
                _ => {
                    v["tops"] = json!(l.top.iter().map(|t| json!({"name": t})).collect::<Vec<_>>());
                    v["param_count"] = Value::Null;
                }
            }
            v
        })
        .collect();
    Ok(json!({
        "model": shown,
        "name": param.name(),
        "layers": layers,
        "param_count": built.as_ref().map(|n| n.param_count()),
        "note": note,
        "svg": svg,
    }))
}

async fn api_net(
    State(st): State<Shared>,
    q: Result<Query<NetQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    blocking(move || {
        let model = st.resolve(&q.model)?;
        net_info(&model, &q.model).map(Json)
    })
    .await
}

/// A patch of a grid: width, height and RGB pixels (rows).
type Patch = (usize, usize, Vec<[u8; 3]>);

/// A grid of equally sized RGB patches as a PNG (each patch scaled up to at least 24 pixels).
fn grid_png(patches: &[Patch]) -> ApiResult<Vec<u8>> {
    let Some(&(pw, ph, _)) = patches.first() else {
        return Err(user_err("nothing to draw"));
    };
    if pw == 0 || ph == 0 {
        return Err(user_err("nothing to draw"));
    }
    let scale = (24 / pw.max(ph)).clamp(1, 8);
    let side = (pw.max(ph) * scale).max(1);
    let n = patches.len();
    let cols = ((n as f64).sqrt().ceil() as usize)
        .max(1)
        .min((1200 / (side + 2)).max(1));
    let rows = n.div_ceil(cols);
    let (w, h) = (cols * (pw * scale + 2) + 2, rows * (ph * scale + 2) + 2);
    if w * h > 4096 * 4096 {
        return Err(user_err("the image grid would be too large"));
    }
    let mut img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255]));
    for (k, (_, _, data)) in patches.iter().enumerate() {
        let (gx, gy) = (
            2 + (k % cols) * (pw * scale + 2),
            2 + (k / cols) * (ph * scale + 2),
        );
        for y in 0..ph * scale {
            for x in 0..pw * scale {
                if let Some(px) = data.get((y / scale) * pw + x / scale) {
                    img.put_pixel((gx + x) as u32, (gy + y) as u32, image::Rgb(*px));
                }
            }
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(out.into_inner())
}

fn to_byte(x: f32, lo: f32, hi: f32) -> u8 {
    if hi > lo {
        (((x - lo) / (hi - lo)) * 255.0).clamp(0.0, 255.0) as u8
    } else {
        128
    }
}

fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// The filters of a learnable blob `[O, C, kh, kw]`: colour patches when C is 3 (channels in
/// the net's B,G,R order shown as R,G,B), else one grey patch per (output, input) pair; a 2-D
/// weight matrix is shown row by row.
fn filter_patches(shape: &[usize], data: &[f32]) -> ApiResult<Vec<Patch>> {
    let (lo, hi) = min_max(data);
    let mut patches = Vec::new();
    match *shape {
        [o, 3, kh, kw] => {
            let plane = kh * kw;
            for f in 0..o.min(MAX_PATCHES) {
                let base = f * 3 * plane;
                let px = (0..plane)
                    .map(|i| {
                        let c = |ch: usize| to_byte(data[base + ch * plane + i], lo, hi);
                        [c(2), c(1), c(0)]
                    })
                    .collect();
                patches.push((kw, kh, px));
            }
        }
        [o, c, kh, kw] => {
            let plane = kh * kw;
            'outer: for f in 0..o {
                for ch in 0..c {
                    if patches.len() >= MAX_PATCHES {
                        break 'outer;
                    }
                    let base = (f * c + ch) * plane;
                    let px = data[base..base + plane]
                        .iter()
                        .map(|&x| {
                            let g = to_byte(x, lo, hi);
                            [g, g, g]
                        })
                        .collect();
                    patches.push((kw, kh, px));
                }
            }
        }
        [o, i] => {
            let px = data[..o.min(MAX_PATCHES * 4) * i]
                .iter()
                .map(|&x| {
                    let g = to_byte(x, lo, hi);
                    [g, g, g]
                })
                .collect();
            patches.push((i, o.min(MAX_PATCHES * 4), px));
        }
        _ => {
            return Err(user_err(format!(
                "cannot draw a learnable blob of shape {shape:?} as filters"
            )))
        }
    }
    Ok(patches)
}

fn png_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
}

async fn api_filters(
    State(st): State<Shared>,
    q: Result<Query<NetQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    blocking(move || {
        let model = st.resolve(&q.model)?;
        let weights = st.resolve_opt(&q.weights)?;
        let layer = q
            .layer
            .clone()
            .ok_or_else(|| ApiError::bad("which layer? (layer=NAME)"))?;
        let net = build_net(&model, weights.as_deref())?;
        let entry = net
            .layers()
            .iter()
            .find(|l| l.name == layer)
            .ok_or_else(|| user_err(format!("{}: no layer `{layer}`", q.model)))?;
        let blob = entry
            .params
            .first()
            .and_then(|&p| net.params().get(p))
            .ok_or_else(|| user_err(format!("layer `{layer}` has no learnable weights")))?;
        let patches = filter_patches(&blob.shape, &blob.data)?;
        Ok(png_response(grid_png(&patches)?))
    })
    .await
}

/// Reads an uploaded body: 413 beyond [`MAX_UPLOAD`] (by Content-Length before reading, else
/// while reading).
async fn read_upload(headers: &HeaderMap, body: Body) -> ApiResult<Vec<u8>> {
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("uploads are limited to {} MiB", MAX_UPLOAD >> 20),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_UPLOAD as u64 {
            return Err(too_large());
        }
    }
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Err(ApiError::bad("no image in the request body"));
    }
    Ok(bytes.to_vec())
}

#[derive(serde::Deserialize)]
struct ClassifyQuery {
    model: String,
    weights: String,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    mean: Option<String>,
    #[serde(default)]
    layer: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The `crema classify` classifier for these files (its arguments, its defaults).
fn classifier(
    st: &Studio,
    q: &ClassifyQuery,
) -> ApiResult<(crema::classify::Classifier, Vec<String>)> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--model".into(),
        st.resolve(&q.model)?.into(),
        "--weights".into(),
        st.resolve(&q.weights)?.into(),
    ];
    if let Some(l) = st.resolve_opt(&q.labels)? {
        args.extend(["--labels".into(), l.into()]);
    }
    if let Some(m) = st.resolve_opt(&q.mean)? {
        args.extend(["--mean".into(), m.into()]);
    }
    args.push("upload".into());
    let a = crate::classify::parse_args(args)?;
    Ok(crate::classify::load(&a)?)
}

fn decode_upload(
    clf: &crema::classify::Classifier,
    bytes: &[u8],
    name: &str,
) -> ApiResult<photo::Image> {
    Ok(photo::decode(
        bytes,
        Some(clf.pre.channels == 3),
        DecodeLimits::default(),
        name,
    )?)
}

async fn api_classify(
    State(st): State<Shared>,
    q: Result<Query<ClassifyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let bytes = read_upload(&headers, body).await?;
    blocking(move || {
        let (mut clf, labels) = classifier(&st, &q)?;
        let name = q.name.clone().unwrap_or_else(|| "upload".into());
        let img = decode_upload(&clf, &bytes, &name)?;
        let scores = clf.classify(&[img])?;
        let s = scores
            .first()
            .ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "no scores".into()))?;
        let top: Vec<Value> = crema::classify::top_k(s, 5)
            .into_iter()
            .map(|(i, p)| {
                json!({
                    "label": labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
                    "index": i,
                    "prob": crate::classify::short_f64(p),
                })
            })
            .collect();
        Ok(Json(json!({"image": name, "top": top})))
    })
    .await
}

async fn api_activations(
    State(st): State<Shared>,
    q: Result<Query<ClassifyQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let q = query(q)?;
    let bytes = read_upload(&headers, body).await?;
    blocking(move || {
        let layer = q
            .layer
            .clone()
            .ok_or_else(|| ApiError::bad("which layer? (layer=NAME)"))?;
        let (mut clf, _) = classifier(&st, &q)?;
        let img = decode_upload(&clf, &bytes, q.name.as_deref().unwrap_or("upload"))?;
        clf.classify(&[img])?;
        let net = &clf.net;
        let entry = net
            .layers()
            .iter()
            .find(|l| l.name == layer)
            .ok_or_else(|| user_err(format!("{}: no layer `{layer}`", q.model)))?;
        let &top = entry
            .top
            .first()
            .ok_or_else(|| user_err(format!("layer `{layer}` has no top")))?;
        let b = net.blob_at(top);
        // The first image of the batch: C planes of H x W (a vector is one row).
        let (c, h, w) = match b.shape.as_slice() {
            [_, c, h, w] => (*c, *h, *w),
            [_, n] => (1, 1, *n),
            s => return Err(user_err(format!("cannot draw a blob of shape {s:?}"))),
        };
        let data = &b.data[..(c * h * w).min(b.data.len())];
        let plane = h * w;
        let patches: Vec<_> = (0..c.min(MAX_PATCHES))
            .map(|k| {
                let p = &data[k * plane..(k + 1) * plane];
                let (lo, hi) = min_max(p);
                (
                    w,
                    h,
                    p.iter()
                        .map(|&x| {
                            let g = to_byte(x, lo, hi);
                            [g, g, g]
                        })
                        .collect(),
                )
            })
            .collect();
        Ok(png_response(grid_png(&patches)?))
    })
    .await
}
