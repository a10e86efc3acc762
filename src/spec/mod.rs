//! Reading model and solver files (YAML whose keys are `caffe.proto`'s field names). The YAML
//! crate is used only in this module.
//!
//! The YAML is walked against the message descriptors of `caffe.proto`, so the schema of record
//! decides which keys exist, which fields repeat (a single value is accepted for a one-element
//! list), and which enum names are valid. Errors carry file, line, column, the layer and the
//! nearest valid key.

pub mod space;
mod yaml;

use crate::proto::{self, LayerParameter, NetParameter, SolverParameter};
use crate::{Error, Result};
use prost_reflect::DynamicMessage;
use std::path::{Path, PathBuf};

pub use yaml::to_yaml_string;

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.filter(|(_, s)| *s >= 0.75).map(|(c, _)| c)
}

/// Parses YAML text into any message of `caffe.proto`; `label` names the source in errors.
pub fn from_yaml_str<M: prost::Message + Default + prost::Name>(
    text: &str,
    label: &str,
) -> Result<M> {
    let desc = descriptor::<M>();
    let dynamic = yaml::parse(text, &desc, label)?;
    dynamic
        .transcode_to::<M>()
        .map_err(|e| Error::format(label, format!("internal transcode error: {e}")))
}

/// The reflection descriptor of a generated message type.
pub fn descriptor<M: prost::Name>() -> prost_reflect::MessageDescriptor {
    proto::POOL
        .get_message_by_name(&M::full_name())
        .unwrap_or_else(|| panic!("caffe.proto defines {}", M::full_name()))
}

/// A generated message as a reflection message (for writing YAML or prototxt).
pub fn to_dynamic<M: prost::Message + prost::Name>(m: &M) -> DynamicMessage {
    DynamicMessage::decode(descriptor::<M>(), m.encode_to_vec().as_slice())
        .expect("a message re-decodes with its own descriptor")
}

/// Writes any generated message as crema YAML.
pub fn message_to_yaml<M: prost::Message + prost::Name>(m: &M) -> String {
    to_yaml_string(&to_dynamic(m))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Resolves `p` against `dir` unless it is absolute or empty.
pub fn resolve(dir: &Path, p: &str) -> String {
    if p.is_empty() || Path::new(p).is_absolute() {
        p.to_string()
    } else {
        dir.join(p).display().to_string()
    }
}

/// Reads a YAML model file, upgrades legacy input fields and resolves relative paths.
pub fn load_net(path: impl AsRef<Path>) -> Result<NetParameter> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let mut net: NetParameter = from_yaml_str(&text, &path.display().to_string())?;
    resolve_net_paths(&mut net, &base_dir(path));
    upgrade_inputs(&mut net)?;
    Ok(net)
}

/// Reads a YAML solver file; `net`/`train_net`/`test_net`/`snapshot_prefix` resolve against its
/// directory, and the old `solver_type` enum becomes `type`.
pub fn load_solver(path: impl AsRef<Path>) -> Result<SolverParameter> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let mut s: SolverParameter = from_yaml_str(&text, &path.display().to_string())?;
    let dir = base_dir(path);
    resolve_solver_paths(&mut s, path, &|p| resolve(&dir, p));
    for n in embedded_nets(&mut s) {
        upgrade_inputs(n)?;
    }
    upgrade_solver_type(&mut s)?;
    Ok(s)
}

/// The nets a solver carries inline: `net_param`, `train_net_param`, `test_net_param`.
pub fn embedded_nets(s: &mut SolverParameter) -> impl Iterator<Item = &mut NetParameter> {
    s.net_param
        .iter_mut()
        .chain(s.train_net_param.iter_mut())
        .chain(s.test_net_param.iter_mut())
}

/// Rewrites every file path a solver read from `file` carries (its nets, weights, the snapshot
/// prefix, the paths inside embedded nets) with `resolve`. A missing `snapshot_prefix` becomes
/// the solver file's own stem, beside it.
pub fn resolve_solver_paths(
    s: &mut SolverParameter,
    file: &Path,
    resolve: &dyn Fn(&str) -> String,
) {
    for f in [&mut s.net, &mut s.train_net] {
        if let Some(p) = f.as_mut() {
            *p = resolve(p);
        }
    }
    for p in s.test_net.iter_mut().chain(s.weights.iter_mut()) {
        *p = resolve(p);
    }
    match s.snapshot_prefix.as_mut() {
        Some(p) => *p = resolve(p),
        None => {
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("solver");
            s.snapshot_prefix = Some(base_dir(file).join(stem).display().to_string());
        }
    }
    for n in embedded_nets(s) {
        map_net_paths(n, resolve);
    }
}

/// `solver_type` (old enum) becomes `type`; both set is an error.
pub fn upgrade_solver_type(s: &mut SolverParameter) -> Result<()> {
    use proto::solver_parameter::SolverType;
    if let Some(v) = s.solver_type {
        if s.r#type.is_some() {
            return Err(Error::Invalid(
                "solver sets both `solver_type` (deprecated) and `type`; keep only `type`".into(),
            ));
        }
        let name = match SolverType::try_from(v).unwrap_or(SolverType::Sgd) {
            SolverType::Sgd => "SGD",
            SolverType::Nesterov => "Nesterov",
            SolverType::Adagrad => "AdaGrad",
            SolverType::Rmsprop => "RMSProp",
            SolverType::Adadelta => "AdaDelta",
            SolverType::Adam => "Adam",
        };
        s.r#type = Some(name.into());
        s.solver_type = None;
    }
    Ok(())
}

/// Resolves every file path a layer may carry against the model file's directory.
pub fn resolve_net_paths(net: &mut NetParameter, dir: &Path) {
    map_net_paths(net, &|p| resolve(dir, p));
}

/// Rewrites every file path a layer may carry (data sources, mean files, root folders) with
/// `resolve`.
pub fn map_net_paths(net: &mut NetParameter, resolve: &dyn Fn(&str) -> String) {
    for l in net.layer.iter_mut() {
        map_layer_paths(l, resolve);
    }
}

fn map_layer_paths(l: &mut LayerParameter, resolve: &dyn Fn(&str) -> String) {
    let fix = |p: &mut Option<String>| {
        if let Some(s) = p.as_mut() {
            *s = resolve(s);
        }
    };
    if let Some(t) = l.transform_param.as_mut() {
        fix(&mut t.mean_file);
    }
    if let Some(d) = l.data_param.as_mut() {
        fix(&mut d.source);
        fix(&mut d.mean_file);
    }
    if let Some(d) = l.image_data_param.as_mut() {
        fix(&mut d.source);
        fix(&mut d.mean_file);
        if d.root_folder.as_deref().is_some_and(|r| !r.is_empty()) {
            fix(&mut d.root_folder);
        }
    }
    if let Some(d) = l.idx_data_param.as_mut() {
        fix(&mut d.source);
        fix(&mut d.label_source);
    }
    if let Some(d) = l.text_data_param.as_mut() {
        fix(&mut d.source);
    }
    if let Some(d) = l.seq_pair_data_param.as_mut() {
        fix(&mut d.source);
    }
    if let Some(d) = l.hdf5_data_param.as_mut() {
        fix(&mut d.source);
    }
    if let Some(d) = l.hdf5_output_param.as_mut() {
        fix(&mut d.file_name);
    }
    if let Some(d) = l.window_data_param.as_mut() {
        fix(&mut d.source);
        fix(&mut d.mean_file);
    }
    if let Some(d) = l.infogain_loss_param.as_mut() {
        fix(&mut d.source);
    }
}

/// Caffe's input upgrade: `input` + `input_shape` / `input_dim` become an `Input` layer named
/// `input`, placed first.
pub fn upgrade_inputs(net: &mut NetParameter) -> Result<()> {
    if net.input.is_empty() {
        if !net.input_shape.is_empty() || !net.input_dim.is_empty() {
            return Err(Error::Invalid(
                "`input_shape`/`input_dim` given without `input` names".into(),
            ));
        }
        return Ok(());
    }
    let n = net.input.len();
    let shapes: Vec<proto::BlobShape> = if !net.input_shape.is_empty() {
        if net.input_shape.len() != n {
            return Err(Error::Invalid(format!(
                "{n} `input` blob(s) but {} `input_shape` entries",
                net.input_shape.len()
            )));
        }
        net.input_shape.clone()
    } else if !net.input_dim.is_empty() {
        if net.input_dim.len() != 4 * n {
            return Err(Error::Invalid(format!(
                "{n} `input` blob(s) need {} `input_dim` values (4 each), got {}",
                4 * n,
                net.input_dim.len()
            )));
        }
        net.input_dim
            .chunks(4)
            .map(|c| proto::BlobShape {
                dim: c.iter().map(|&d| d as i64).collect(),
            })
            .collect()
    } else {
        // A caffemodel may name inputs without shapes: just drop them.
        net.input.clear();
        return Ok(());
    };
    let layer = LayerParameter {
        name: Some("input".into()),
        r#type: Some("Input".into()),
        top: net.input.clone(),
        input_param: Some(proto::InputParameter { shape: shapes }),
        ..Default::default()
    };
    net.layer.insert(0, layer);
    net.input.clear();
    net.input_shape.clear();
    net.input_dim.clear();
    Ok(())
}

#[cfg(test)]
mod tests;
