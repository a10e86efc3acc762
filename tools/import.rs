//! `crema import`: a Caffe prototxt (and weights) into a crema YAML model (and current-format
//! weights); `--reverse` (or `crema export`) writes a YAML model or solver back to prototxt.
//! `--onnx` on either side converts to and from ONNX (see `crema::onnx`); `crema export
//! --safetensors` writes the weights as safetensors.

use crate::Failure;
use anyhow::{anyhow, Context};
use crema::caffe::{self, Prototxt};
use crema::proto::{NetParameter, Phase, SolverParameter};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Caffe net or solver prototxt to import.
    #[arg(long, required_unless_present_any = ["reverse", "onnx"])]
    prototxt: Option<String>,
    /// An ONNX model to import instead: DIR gets deploy.yaml and weights.caffemodel.
    #[arg(long, conflicts_with_all = ["prototxt", "caffemodel", "reverse"])]
    onnx: Option<String>,
    /// Caffe weights (current or V1 format) to upgrade into DIR/weights.caffemodel.
    #[arg(long)]
    caffemodel: Option<String>,
    /// Output directory (created if missing); with --reverse, a .prototxt file or a directory.
    #[arg(long)]
    out: String,
    /// Write a crema YAML model or solver (--model) back to Caffe prototxt.
    #[arg(long, requires = "model")]
    reverse: bool,
    /// The YAML model or solver for --reverse.
    #[arg(long)]
    model: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// `crema export`: a crema YAML model or solver written back as Caffe prototxt (`--out`), a
/// deploy net with its weights as ONNX (`--onnx`), its weights as safetensors (`--safetensors`).
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The YAML model or solver (a net or Caffe prototxt with --onnx / --safetensors).
    #[arg(long)]
    model: String,
    /// Output .prototxt file (or a directory).
    #[arg(long, required_unless_present_any = ["onnx", "safetensors"])]
    out: Option<String>,
    /// Write the net (TEST phase) with its weights as an ONNX model.
    #[arg(long, value_name = "OUT.onnx")]
    onnx: Option<String>,
    /// Write the net's weights as safetensors (tensors LAYER.INDEX).
    #[arg(long, value_name = "OUT.safetensors")]
    safetensors: Option<String>,
    /// Weights (.caffemodel or .safetensors); several are applied in order (comma list).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<String>,
    /// ONNX opset to write (17 to 21).
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// ONNX: a symbolic batch dimension on the inputs.
    #[arg(long)]
    dynamic_batch: bool,
    /// ONNX: symbolic height and width on 4-D inputs (fully convolutional nets).
    #[arg(long)]
    dynamic_spatial: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run_export(a: ExportArgs) -> Result<ExitCode, Failure> {
    if a.onnx.is_none() && a.safetensors.is_none() {
        let out = a.out.as_deref().unwrap_or_default();
        return reverse(&a.model, out, a.json);
    }
    if let Some(out) = &a.out {
        reverse(&a.model, out, false)?;
    }
    let param = crema::load_net(&a.model)?;
    let mut rng = StdRng::seed_from_u64(1701);
    let mut net = crema::Net::for_phase(&param, Phase::Test, &mut rng)?;
    if a.weights.is_empty() {
        eprintln!("warning: no --weights; the fillers' random weights are exported");
    }
    for w in &a.weights {
        let trained = crema::caffe::caffemodel::read(w)?;
        let report = net.copy_trained_layers_from(&trained, w)?;
        if !report.fresh.is_empty() {
            eprintln!(
                "warning: layers not in {w} keep their fillers: {}",
                report.fresh.join(", ")
            );
        }
    }
    let mut summary = serde_json::Map::new();
    if let Some(path) = &a.onnx {
        let opts = crema::onnx::ExportOptions {
            opset: a.opset,
            dynamic_batch: a.dynamic_batch,
            dynamic_spatial: a.dynamic_spatial,
        };
        let ex = crema::onnx::export_net(&net, &opts)?;
        crema::onnx::write_model(path, &ex.model)?;
        for n in &ex.notes {
            eprintln!("note: {n}");
        }
        let nodes = ex.model.graph.as_ref().map_or(0, |g| g.node.len());
        summary.insert("onnx".into(), serde_json::json!(path));
        summary.insert("nodes".into(), serde_json::json!(nodes));
        summary.insert("opset".into(), serde_json::json!(a.opset));
        summary.insert("notes".into(), serde_json::json!(ex.notes));
    }
    if let Some(path) = &a.safetensors {
        let mut p = net.to_proto(false);
        p.layer.retain(|l| !l.blobs.is_empty());
        crema::caffe::safetensors::write(path, &p)?;
        summary.insert("safetensors".into(), serde_json::json!(path));
        summary.insert("weight_layers".into(), serde_json::json!(p.layer.len()));
    }
    if a.json {
        println!("{}", serde_json::Value::Object(summary));
    } else {
        for (k, v) in &summary {
            eprintln!("{k}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    if a.reverse {
        let model = a.model.as_deref().unwrap_or_default();
        return reverse(model, &a.out, a.json);
    }
    let prototxt = match (&a.prototxt, &a.onnx) {
        (Some(p), _) => p.as_str(),
        (None, Some(_)) => "",
        (None, None) => return Err(Failure::User(anyhow!("--prototxt or --onnx is required"))),
    };
    let out = PathBuf::from(&a.out);
    let created = first_missing(&out);
    let summary = std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create {}", out.display()))
        .map_err(Failure::User)
        .and_then(|()| match &a.onnx {
            Some(onnx) => import_onnx(onnx, &out),
            None => import(prototxt, a.caffemodel.as_deref(), &out),
        });
    if summary.is_err() {
        // Leave no half-written folder behind; never remove one that was there before.
        if let Some(dir) = created {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let summary = summary?;
    if a.json {
        println!("{summary}");
    } else {
        for (k, v) in summary.as_object().into_iter().flatten() {
            if !v.is_null() {
                eprintln!("{k}: {v}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The topmost folder `create_dir_all(dir)` will create: `None` when `dir` exists already.
fn first_missing(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut cur = Some(dir);
    while let Some(d) = cur {
        // symlink_metadata: a dangling link exists (and is not ours to remove).
        if d.as_os_str().is_empty() || d.symlink_metadata().is_ok() {
            break;
        }
        missing = Some(d.to_path_buf());
        cur = d.parent();
    }
    missing
}

/// Imports a net or solver prototxt into `out`.
fn import(
    prototxt: &str,
    caffemodel: Option<&str>,
    out: &Path,
) -> Result<serde_json::Value, Failure> {
    match caffe::load_prototxt(prototxt)? {
        Prototxt::Net(net) => import_net(net, caffemodel, out),
        Prototxt::Solver(s) => {
            if caffemodel.is_some() {
                return Err(Failure::User(anyhow!(
                    "{prototxt} is a solver; --caffemodel goes with a net prototxt"
                )));
            }
            import_solver(*s, Path::new(prototxt), out)
        }
    }
}

/// Imports an ONNX model into `out`: deploy.yaml and weights.caffemodel, checked by building the
/// net and loading the weights into it.
fn import_onnx(onnx: &str, out: &Path) -> Result<serde_json::Value, Failure> {
    let m = crema::onnx::read_model(onnx)?;
    let im = crema::onnx::import_model(&m, onnx)?;
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = crema::Net::for_phase(&im.net, Phase::Test, &mut rng)?;
    net.copy_trained_layers_from(&im.weights, onnx)?;
    let model_path = out.join("deploy.yaml");
    write_yaml_checked(&im.net, &model_path)?;
    let wpath = out.join("weights.caffemodel");
    caffe::caffemodel::write(&wpath, &im.weights)?;
    for n in &im.notes {
        eprintln!("note: {n}");
    }
    Ok(serde_json::json!({
        "kind": "deploy",
        "model": model_path.display().to_string(),
        "layers": im.net.layer.len(),
        "weights": wpath.display().to_string(),
        "weight_layers": im.weights.layer.iter().map(|l| l.name().to_string()).collect::<Vec<_>>(),
        "notes": im.notes,
    }))
}

/// Writes YAML and checks that it reads back as the same message.
fn write_yaml_checked<M>(m: &M, path: &Path) -> Result<(), Failure>
where
    M: prost::Message + prost::Name + Default + PartialEq,
{
    let text = crema::spec::message_to_yaml(m);
    let back: M = crema::spec::from_yaml_str(&text, &path.display().to_string())
        .map_err(|e| Failure::Internal(anyhow!("the written YAML does not read back: {e}")))?;
    if &back != m {
        return Err(Failure::Internal(anyhow!(
            "the written YAML reads back as a different message ({})",
            path.display()
        )));
    }
    crema::caffe::write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn import_net(
    net: NetParameter,
    caffemodel: Option<&str>,
    out: &Path,
) -> Result<serde_json::Value, Failure> {
    let kind = if caffe::is_deploy(&net) {
        "deploy"
    } else {
        "net"
    };
    let model_path = out.join(format!("{kind}.yaml"));
    write_yaml_checked(&net, &model_path)?;
    let mut weights = serde_json::Value::Null;
    let mut copied = Vec::new();
    if let Some(cm) = caffemodel {
        let trained = crema::caffe::caffemodel::read(cm)?;
        let wpath = out.join("weights.caffemodel");
        // Prefer the shapes of the built net (legacy 4-D blobs become N-D); fall back to the
        // upgraded file as read when the net cannot be built here.
        let built = [Phase::Test, Phase::Train].into_iter().find_map(|ph| {
            let mut rng = StdRng::seed_from_u64(1);
            crema::Net::for_phase(&net, ph, &mut rng).ok()
        });
        let proto = match built {
            Some(mut n) => {
                let report = n.copy_trained_layers_from(&trained, cm)?;
                copied = report.copied.clone();
                if !report.fresh.is_empty() {
                    eprintln!(
                        "warning: layers without weights in {cm}: {}",
                        report.fresh.join(", ")
                    );
                }
                let mut p = n.to_proto(false);
                p.layer.retain(|l| !l.blobs.is_empty());
                p
            }
            None => {
                eprintln!(
                    "warning: the net cannot be built here, so {cm} is written as read \
                     (upgraded layers, blob shapes as in the file)"
                );
                let mut t = trained;
                t.layer.retain(|l| !l.blobs.is_empty());
                copied = t.layer.iter().map(|l| l.name().to_string()).collect();
                t
            }
        };
        caffe::caffemodel::write(&wpath, &proto)?;
        weights = serde_json::json!(wpath.display().to_string());
    }
    Ok(serde_json::json!({
        "kind": kind,
        "model": model_path.display().to_string(),
        "layers": net.layer.len(),
        "weights": weights,
        "weight_layers": copied,
    }))
}

/// Finds a solver's net file: relative to the solver's directory, to the working directory, or
/// (Caffe paths are relative to the Caffe root) to any ancestor of the solver's directory.
fn find_net_file(solver: &Path, p: &str) -> Option<PathBuf> {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    if p.exists() {
        return Some(p.to_path_buf());
    }
    let mut dir = solver.parent();
    while let Some(d) = dir {
        let c = d.join(p);
        if c.exists() {
            return Some(c);
        }
        dir = d.parent();
    }
    // Last resort: the file name beside the solver.
    let c = solver.parent()?.join(p.file_name()?);
    c.exists().then_some(c)
}

fn import_solver(
    mut s: SolverParameter,
    solver_path: &Path,
    out: &Path,
) -> Result<serde_json::Value, Failure> {
    let mut nets = Vec::new();
    let net_field = if s.net.is_some() {
        s.net.as_mut()
    } else {
        s.train_net.as_mut()
    };
    if let Some(np) = net_field {
        match find_net_file(solver_path, np) {
            Some(f) => {
                let net = caffe::load_net_prototxt(&f)?;
                let name = if caffe::is_deploy(&net) {
                    "deploy.yaml"
                } else {
                    "net.yaml"
                };
                write_yaml_checked(&net, &out.join(name))?;
                nets.push(out.join(name).display().to_string());
                *np = name.to_string();
            }
            None => eprintln!(
                "warning: the solver's net `{np}` was not found; solver.yaml keeps the path as \
                 written (import the net separately and point `net` at its YAML)"
            ),
        }
    }
    let path = out.join("solver.yaml");
    write_yaml_checked(&s, &path)?;
    Ok(serde_json::json!({
        "kind": "solver",
        "model": path.display().to_string(),
        "nets": nets,
    }))
}

fn reverse(model: &str, out: &str, json: bool) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(model).with_context(|| format!("cannot read {model}"))?;
    let (body, stem) = match crema::spec::from_yaml_str::<NetParameter>(&text, model) {
        Ok(net) => (caffe::to_prototxt(&net), "net"),
        Err(net_err) => match crema::spec::from_yaml_str::<SolverParameter>(&text, model) {
            Ok(s) => (caffe::to_prototxt(&s), "solver"),
            Err(_) => return Err(net_err.into()),
        },
    };
    let mut path = PathBuf::from(out);
    if path.is_dir() || out.ends_with('/') {
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {out}"))?;
        let s = Path::new(model)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(stem);
        path = path.join(format!("{s}.prototxt"));
    }
    crema::caffe::write_atomic(&path, body.as_bytes())?;
    if json {
        println!(
            "{}",
            serde_json::json!({"kind": stem, "prototxt": path.display().to_string()})
        );
    } else {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
