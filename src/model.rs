//! The one way to read a model or solver file, whatever its format: crema YAML or Caffe
//! prototxt. Every `crema` subcommand and the solver's `net:` go through [`load_net`] and
//! [`load_solver`].
//!
//! The format is decided by the extension (`.yaml`/`.yml`: YAML; `.prototxt`, `.pbtxt`, `.pt`,
//! `.txt`: prototxt), else by the content ([`sniff`]). A prototxt goes through Caffe's upgrades
//! (V1 `layers`, legacy `input_dim`, `solver_type`); a YAML file through the input upgrade.
//! Relative paths are resolved here, once:
//! - in YAML, against the file's own directory (FORMAT.md);
//! - in a prototxt, where they are found: Caffe reads them against the directory it runs in,
//!   usually the Caffe root (`net: "examples/mnist/lenet_train_test.prototxt"` in
//!   `examples/mnist/lenet_solver.prototxt`), so [`caffe_path`] tries the file's directory, each
//!   directory above it and the current directory.

use crate::proto::{NetParameter, SolverParameter};
use crate::{caffe, spec, Error, Result};
use std::path::{Path, PathBuf};

/// The two text formats a model or solver file may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// crema YAML (keys are `caffe.proto`'s field names).
    Yaml,
    /// Caffe's protobuf text format.
    Prototxt,
}

/// Reads a net definition (YAML or prototxt), upgraded to the current format, with its
/// relative paths resolved.
pub fn load_net(path: impl AsRef<Path>) -> Result<NetParameter> {
    load(
        path.as_ref(),
        |p| spec::load_net(p),
        |path| {
            let mut net = caffe::load_net_prototxt(path)?;
            let dir = base_dir(path);
            spec::map_net_paths(&mut net, &|p| caffe_path(&dir, p));
            Ok(net)
        },
    )
}

/// Reads a solver (YAML or prototxt), upgraded (`solver_type` becomes `type`), with its net,
/// weights and snapshot paths resolved. A missing `snapshot_prefix` becomes the solver file's
/// stem, beside it.
pub fn load_solver(path: impl AsRef<Path>) -> Result<SolverParameter> {
    load(
        path.as_ref(),
        |p| spec::load_solver(p),
        |path| {
            let mut s = caffe::load_solver_prototxt(path)?;
            let dir = base_dir(path);
            spec::resolve_solver_paths(&mut s, path, &|p| caffe_path(&dir, p));
            Ok(s)
        },
    )
}

/// Reads `path` with the reader for its format. When the content decided (no known extension)
/// and YAML fails, the prototxt reader gets a try (a prototxt of plain `key: value` lines looks
/// like YAML); if it fails too, the YAML error is the one reported.
fn load<T>(
    path: &Path,
    yaml: fn(&Path) -> Result<T>,
    prototxt: fn(&Path) -> Result<T>,
) -> Result<T> {
    match format_by_extension(path) {
        Some(Format::Yaml) => yaml(path),
        Some(Format::Prototxt) => prototxt(path),
        None => match format_of(path)? {
            Format::Prototxt => prototxt(path),
            Format::Yaml => yaml(path).or_else(|e| prototxt(path).map_err(|_| e)),
        },
    }
}

fn format_by_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "yaml" | "yml" => Some(Format::Yaml),
        "prototxt" | "pbtxt" | "pt" | "txt" => Some(Format::Prototxt),
        _ => None,
    }
}

/// The format of a file: by extension, else by content ([`sniff`]).
pub fn format_of(path: &Path) -> Result<Format> {
    if let Some(f) = format_by_extension(path) {
        return Ok(f);
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(sniff(&String::from_utf8_lossy(&bytes)))
}

/// Guesses the format of a text: a line `name {` (a message opened without a colon) means
/// prototxt; a line `- ...` (a YAML list item) or anything else means YAML. The first line that
/// decides wins; comments (`#`) and blank lines are skipped.
pub fn sniff(text: &str) -> Format {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            return Format::Yaml;
        }
        let ident_len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        if ident_len > 0 && line[ident_len..].trim_start().starts_with('{') {
            return Format::Prototxt;
        }
    }
    Format::Yaml
}

fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Resolves a relative path written in a Caffe prototxt that lives in `dir`. Candidates, in
/// order: `dir`, each directory above it, the current directory. The first candidate that holds
/// the path wins; failing that (a file still to be written, a data set not made yet), the one
/// that holds the most of the path's leading directories (`examples/mnist` of
/// `examples/mnist/snapshots/lenet`); failing that, `dir` (crema's rule for YAML). Absolute and
/// empty paths are kept as written.
pub fn caffe_path(dir: &Path, p: &str) -> String {
    let rel = Path::new(p);
    if p.is_empty() || rel.is_absolute() {
        return p.to_string();
    }
    let bases: Vec<&Path> = dir.ancestors().chain([Path::new(".")]).collect();
    if let Some(b) = bases.iter().find(|b| b.join(rel).exists()) {
        return b.join(rel).display().to_string();
    }
    // Leading directories of `rel` present under `base`.
    let depth = |base: &Path| {
        rel.ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty() && base.join(a).is_dir())
            .map(|a| a.components().count())
            .max()
            .unwrap_or(0)
    };
    let mut best = (0, dir);
    for b in &bases {
        let d = depth(b);
        if d > best.0 {
            best = (d, b);
        }
    }
    best.1.join(rel).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_prototxt_and_yaml() {
        assert_eq!(
            sniff("# c\nname: \"x\"\nlayer {\n  name: \"a\"\n}\n"),
            Format::Prototxt
        );
        assert_eq!(sniff("layer{ name: 'a' }"), Format::Prototxt);
        assert_eq!(sniff("name: x\nlayer:\n  - name: a\n"), Format::Yaml);
        assert_eq!(sniff("layer: { name: a }\n"), Format::Yaml);
        assert_eq!(sniff("base_lr: 0.01\nmax_iter: 3\n"), Format::Yaml);
    }

    #[test]
    fn caffe_paths_are_found_where_caffe_would_run() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mnist = root.join("examples/mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        std::fs::write(mnist.join("net.prototxt"), "").unwrap();
        std::fs::write(mnist.join("beside.prototxt"), "").unwrap();
        let r = |p: &str| caffe_path(&mnist, p);
        for (written, found) in [
            // Written against the Caffe root, two directories up.
            ("examples/mnist/net.prototxt", "net.prototxt"),
            // Beside the file (crema's rule).
            ("beside.prototxt", "beside.prototxt"),
            // Not there yet, but its directory is: the snapshot prefix.
            ("examples/mnist/lenet", "lenet"),
            // Only leading directories exist: under the directory holding most of them.
            ("examples/mnist/snaps/lenet", "snaps/lenet"),
            // Nowhere: beside the file.
            ("nowhere/x_lmdb", "nowhere/x_lmdb"),
        ] {
            assert_eq!(
                r(written),
                mnist.join(found).display().to_string(),
                "{written}"
            );
        }
        assert_eq!(r("/abs/path"), "/abs/path");
        assert_eq!(r(""), "");
    }
}
