//! Snapshots (Caffe's `Snapshot`/`Restore`): `<prefix>_iter_<N>.caffemodel` with the train
//! net's weights and `<prefix>_iter_<N>.solverstate` with iteration, learning-rate step and
//! history, each written atomically; the prefix's directory is created when missing. With
//! `snapshot_format: HDF5` the weights are `<prefix>_iter_<N>.caffemodel.h5` (Caffe's HDF5
//! layout); the state stays a binary `.solverstate` whose `learned_net` names the `.h5`.

use super::{Event, Solver};
use crate::blob::{blob_to_proto, copy_blob_proto};
use crate::proto::SolverState;
use crate::{Error, Result};
use prost::Message;
use std::path::{Path, PathBuf};

/// Creates the directory that will hold `file` (a snapshot, a log beside the snapshots) when it
/// does not exist yet. Returns the directory when it had to be created.
pub fn ensure_parent_dir(file: &Path) -> Result<Option<PathBuf>> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(None);
    };
    if dir.is_dir() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Ok(Some(dir.to_path_buf()))
}

impl Solver {
    /// `<snapshot_prefix>_iter_<iter>` plus `ext`.
    pub fn snapshot_path(&self, ext: &str) -> PathBuf {
        PathBuf::from(format!(
            "{}_iter_{}{ext}",
            self.param.snapshot_prefix(),
            self.iter
        ))
    }

    /// Writes `<prefix>_iter_<N>.caffemodel` and `.solverstate`, each atomically (temporary
    /// file, fsync, rename). Returns both paths.
    pub fn snapshot(&mut self) -> Result<(PathBuf, PathBuf)> {
        if self.param.snapshot_prefix.is_none() {
            return Err(Error::Invalid(
                "cannot snapshot: the solver has no `snapshot_prefix`".into(),
            ));
        }
        use crate::proto::solver_parameter::SnapshotFormat;
        let h5 = self.param.snapshot_format() == SnapshotFormat::Hdf5;
        let model = self.snapshot_path(if h5 { ".caffemodel.h5" } else { ".caffemodel" });
        let state_path = self.snapshot_path(".solverstate");
        if let Some(dir) = ensure_parent_dir(&model)? {
            self.emit(&Event::CreatedDir { path: &dir });
        }
        let weights = self.net.to_proto(self.param.snapshot_diff());
        if h5 {
            crate::caffe::caffemodel_h5::write(&model, &weights, self.param.snapshot_diff())?;
        } else {
            crate::caffe::caffemodel::write(&model, &weights)?;
        }
        let state = SolverState {
            iter: Some(self.iter),
            learned_net: Some(model.display().to_string()),
            history: self
                .history
                .iter()
                .map(|h| blob_to_proto(h, false))
                .collect(),
            current_step: Some(self.current_step),
        };
        crate::caffe::write_atomic(&state_path, &state.encode_to_vec())?;
        self.last_snapshot = Some((self.iter, model.clone()));
        let iter = self.iter;
        self.emit(&Event::Snapshot {
            iter,
            model: &model,
            state: &state_path,
        });
        Ok((model, state_path))
    }

    /// Restores iteration, learning-rate step, history and weights from a `.solverstate`
    /// (Caffe's `Restore`). The `learned_net` path is tried as written, then beside the state.
    pub fn restore(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let state = SolverState::decode(bytes.as_slice()).map_err(|e| {
            Error::format(path, format!("not a valid solverstate (SolverState): {e}"))
        })?;
        if state.history.len() != self.history.len() {
            return Err(Error::format(
                path,
                format!(
                    "holds {} history blobs but this {} solver on this net needs {}; was it \
                     written by another solver type or net?",
                    state.history.len(),
                    self.kind.name(),
                    self.history.len()
                ),
            ));
        }
        let mut history = self.history.clone();
        let label = path.display().to_string();
        for (i, (h, p)) in history.iter_mut().zip(&state.history).enumerate() {
            copy_blob_proto(p, h, &label, "(solver history)", i).map_err(|e| match e {
                Error::WeightShape {
                    expected, found, ..
                } => Error::format(
                    path,
                    format!(
                        "history blob {i} has shape {} but this net's parameter {i} has {}; was \
                         the state written for another net?",
                        crate::blob::shape_str(&found),
                        crate::blob::shape_str(&expected)
                    ),
                ),
                other => other,
            })?;
        }
        if let Some(ln) = state.learned_net.as_deref().filter(|s| !s.is_empty()) {
            let mut model = PathBuf::from(ln);
            if !model.exists() {
                if let (Some(dir), Some(name)) = (path.parent(), model.file_name()) {
                    let beside = dir.join(name);
                    if beside.exists() {
                        model = beside;
                    }
                }
            }
            let trained = crate::caffe::caffemodel::read(&model)?;
            self.net
                .copy_trained_layers_from(&trained, &model.display().to_string())?;
        }
        self.history = history;
        self.iter = state.iter();
        self.current_step = state.current_step();
        Ok(())
    }
}
