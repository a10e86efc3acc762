//! `crema draw`: the net as a Graphviz graph, as Caffe's `draw_net.py` draws it: layers are
//! coloured boxes (name, type and the main parameters), blobs are ellipses, edges follow the
//! data. `.dot` is written directly; `.svg`, `.png` and `.pdf` go through Graphviz's `dot`.

use crate::Failure;
use anyhow::anyhow;
use crema::proto::{LayerParameter, NetParameter, NetState, Phase};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (YAML or Caffe prototxt).
    #[arg(long)]
    model: PathBuf,
    /// Output: .dot, .svg, .png or .pdf.
    #[arg(long)]
    out: PathBuf,
    /// Which layers to draw: TRAIN, TEST or ALL (ignores include/exclude rules).
    #[arg(long, default_value = "ALL")]
    phase: String,
    /// Graph direction: LR, TB, RL or BT.
    #[arg(long, default_value = "LR")]
    rankdir: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn layer_color(ty: &str) -> &'static str {
    match ty {
        "Convolution" | "Deconvolution" => "#FF5050",
        "Pooling" => "#FF9900",
        "InnerProduct" => "#CC33FF",
        _ => "#6495ED",
    }
}

fn dims(v: &[u32], single: Option<u32>, default: u32) -> String {
    match (v.len(), single) {
        (_, Some(s)) => s.to_string(),
        (0, None) => default.to_string(),
        (1, None) => v[0].to_string(),
        _ => v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("x"),
    }
}

/// Name, type and the parameters Caffe's draw_net shows.
pub fn layer_label(l: &LayerParameter) -> Vec<String> {
    let ty = l.r#type();
    let mut lines = vec![l.name().to_string(), format!("({ty})")];
    if let Some(c) = &l.convolution_param {
        let k = dims(&c.kernel_size, c.kernel_h.map(|h| h.max(c.kernel_w())), 1);
        lines.push(format!(
            "kernel {k}, stride {}, pad {}",
            dims(&c.stride, c.stride_h, 1),
            dims(&c.pad, c.pad_h, 0)
        ));
        lines.push(format!("outputs {}", c.num_output()));
    }
    if let Some(p) = &l.pooling_param {
        let pool = crema::proto::pooling_parameter::PoolMethod::try_from(p.pool.unwrap_or(0))
            .map(|m| m.as_str_name().to_string())
            .unwrap_or_default();
        if p.global_pooling() {
            lines.push(format!("{pool} global"));
        } else {
            lines.push(format!(
                "{pool} kernel {}, stride {}, pad {}",
                p.kernel_size.or(p.kernel_h).unwrap_or(0),
                p.stride.or(p.stride_h).unwrap_or(1),
                p.pad.or(p.pad_h).unwrap_or(0)
            ));
        }
    }
    if let Some(p) = &l.inner_product_param {
        lines.push(format!("outputs {}", p.num_output()));
    }
    if let Some(p) = &l.recurrent_param {
        lines.push(format!("outputs {}", p.num_output()));
    }
    if let Some(p) = &l.dropout_param {
        lines.push(format!("ratio {}", p.dropout_ratio()));
    }
    lines
}

/// Graphviz DOT for the layers of `net` (already phase-filtered when asked).
pub fn to_dot(net: &NetParameter, rankdir: &str) -> String {
    let mut out = String::new();
    out += &format!(
        "digraph \"{}\" {{\n  rankdir={rankdir};\n  node [fontname=\"Helvetica\"];\n",
        esc(net.name())
    );
    // A blob name maps to its current node; an in-place layer creates a new node (same label)
    // so that the graph stays acyclic. Alternative producers (TRAIN/TEST data layers) share one.
    let mut current: HashMap<String, String> = HashMap::new();
    let mut nblob = 0usize;
    let mut blob_node = |out: &mut String, name: &str, current: &mut HashMap<String, String>| {
        let id = format!("blob{nblob}");
        nblob += 1;
        *out += &format!(
            "  {id} [label=\"{}\", shape=ellipse, style=filled, fillcolor=\"#E0E0E0\"];\n",
            esc(name)
        );
        current.insert(name.to_string(), id.clone());
        id
    };
    for (i, l) in net.layer.iter().enumerate() {
        let lid = format!("layer{i}");
        out += &format!(
            "  {lid} [label=\"{}\", shape=box, style=\"rounded,filled\", fillcolor=\"{}\"];\n",
            layer_label(l)
                .iter()
                .map(|s| esc(s))
                .collect::<Vec<_>>()
                .join("\\n"),
            layer_color(l.r#type())
        );
        for b in &l.bottom {
            let id = match current.get(b) {
                Some(id) => id.clone(),
                None => blob_node(&mut out, b, &mut current),
            };
            out += &format!("  {id} -> {lid};\n");
        }
        for t in &l.top {
            let inplace = l.bottom.contains(t);
            let id = match current.get(t) {
                Some(id) if !inplace => id.clone(),
                _ => blob_node(&mut out, t, &mut current),
            };
            out += &format!("  {lid} -> {id};\n");
        }
    }
    out += "}\n";
    out
}

/// Runs Graphviz's `dot -T{ext}` on `dot` and returns what it writes (`svg`, `png` or `pdf`);
/// `dot_path` is where the DOT text could be written instead (named in the error when `dot`
/// is missing). `crema studio` draws its Net view through this too.
pub fn render(dot: &str, ext: &str, dot_path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    use std::io::Write;
    let mut child = std::process::Command::new("dot")
        .arg(format!("-T{ext}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::User(anyhow!(
                    "Graphviz `dot` is not installed, so crema cannot write .{ext}; \
                     install graphviz, or write DOT with --out {}",
                    dot_path.display()
                ))
            } else {
                Failure::Internal(anyhow!("cannot run `dot`: {e}"))
            }
        })?;
    // Written from another thread so that neither side waits on a full pipe.
    let writer = child.stdin.take().map(|mut stdin| {
        let text = dot.to_string();
        std::thread::spawn(move || stdin.write_all(text.as_bytes()))
    });
    let out = child
        .wait_with_output()
        .map_err(|e| Failure::Internal(anyhow!("waiting for `dot`: {e}")))?;
    if let Some(w) = writer {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Failure::Internal(anyhow!("writing to `dot`: {e}"))),
            Err(_) => return Err(Failure::Internal(anyhow!("writing to `dot` failed"))),
        }
    }
    if !out.status.success() {
        return Err(Failure::Internal(anyhow!(
            "`dot` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

pub fn run(a: Args) -> Result<ExitCode, Failure> {
    let mut net = crema::load_net(&a.model)?;
    let phase = match a.phase.to_ascii_uppercase().as_str() {
        "ALL" => None,
        "TRAIN" => Some(Phase::Train),
        "TEST" => Some(Phase::Test),
        other => {
            return Err(Failure::User(anyhow!(
                "--phase must be TRAIN, TEST or ALL, got `{other}`"
            )))
        }
    };
    if let Some(p) = phase {
        let mut state = net.state.clone().unwrap_or_default();
        state.set_phase(p);
        net = crema::net::filter_net(&net, &NetState { ..state })?;
    }
    let rankdir = a.rankdir.to_ascii_uppercase();
    if !["LR", "TB", "RL", "BT"].contains(&rankdir.as_str()) {
        return Err(Failure::User(anyhow!(
            "--rankdir must be LR, TB, RL or BT, got `{}`",
            a.rankdir
        )));
    }
    let dot = to_dot(&net, &rankdir);
    let ext = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "dot" | "gv" => {
            std::fs::write(&a.out, &dot).map_err(|e| crema::Error::io(&a.out, e))?;
        }
        "svg" | "png" | "pdf" => {
            let bytes = render(&dot, &ext, &a.out.with_extension("dot"))?;
            std::fs::write(&a.out, bytes).map_err(|e| crema::Error::io(&a.out, e))?;
        }
        other => {
            return Err(Failure::User(anyhow!(
                "--out must end in .dot, .svg, .png or .pdf (got `.{other}`)"
            )))
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"out": a.out.display().to_string(), "layers": net.layer.len()})
        );
    } else {
        eprintln!("wrote {} ({} layers)", a.out.display(), net.layer.len());
    }
    Ok(ExitCode::SUCCESS)
}
