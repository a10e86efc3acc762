//! Snapshots (Caffe's `Snapshot`/`Restore`): `<prefix>_iter_<N>.caffemodel` with the train
//! net's weights and `<prefix>_iter_<N>.solverstate` with iteration, learning-rate step and
//! history, each written atomically; the prefix's directory is created when missing. With
//! `snapshot_format: HDF5` the weights are `<prefix>_iter_<N>.caffemodel.h5` (Caffe's HDF5
//! layout) and the state `<prefix>_iter_<N>.solverstate.h5` (Caffe's: datasets `iter`,
//! `current_step`, `learned_net` and group `history` of datasets `0`, `1`, ...).

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
        let state_path = self.snapshot_path(if h5 {
            ".solverstate.h5"
        } else {
            ".solverstate"
        });
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
        if h5 {
            write_state_h5(&state_path, &state, &self.history)?;
        } else {
            crate::caffe::write_atomic(&state_path, &state.encode_to_vec())?;
        }
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
        let state = if crate::caffe::caffemodel_h5::looks_like(&bytes) {
            read_state_h5(path)?
        } else {
            SolverState::decode(bytes.as_slice()).map_err(|e| {
                Error::format(path, format!("not a valid solverstate (SolverState): {e}"))
            })?
        };
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

/// Longest `learned_net` path a `.solverstate.h5` holds (a fixed-length ASCII string, as Caffe's
/// `H5LTmake_dataset_string` writes it).
const PATH_BYTES: usize = 4096;
type H5Path = hdf5::types::FixedAscii<PATH_BYTES>;

fn h5_err(path: &Path, e: hdf5::Error) -> Error {
    Error::format(path, e.to_string())
}

/// Writes a solver state in Caffe's HDF5 layout, whole (written beside, then renamed).
fn write_state_h5(path: &Path, state: &SolverState, history: &[crate::Blob]) -> Result<()> {
    use crate::data::hdf5 as h5;
    let tmp = path.with_extension("h5.tmp");
    {
        let f = h5::create(&tmp)?;
        for (name, v) in [
            ("iter", state.iter()),
            ("current_step", state.current_step()),
        ] {
            f.new_dataset_builder()
                .with_data(&[v][..])
                .create(name)
                .map_err(|e| h5_err(&tmp, e))?;
        }
        let learned = state.learned_net();
        let s = H5Path::from_ascii(learned.as_bytes()).map_err(|e| {
            Error::format(
                &tmp,
                format!("learned_net `{learned}` must be ASCII, under {PATH_BYTES} bytes: {e}"),
            )
        })?;
        f.new_dataset::<H5Path>()
            .shape(())
            .create("learned_net")
            .and_then(|d| d.write_scalar(&s))
            .map_err(|e| h5_err(&tmp, e))?;
        let g = f.create_group("history").map_err(|e| h5_err(&tmp, e))?;
        for (i, h) in history.iter().enumerate() {
            h5::write_f32(&g, &tmp, &i.to_string(), &h.shape, &h.data)?;
        }
        f.flush().map_err(|e| h5_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads a `.solverstate.h5` (Caffe's layout) into a [`SolverState`].
fn read_state_h5(path: &Path) -> Result<SolverState> {
    use crate::data::hdf5 as h5;
    let f = h5::open(path)?;
    let int = |name: &str| -> Result<i32> {
        let v: Vec<i32> = f
            .dataset(name)
            .and_then(|d| d.read_raw())
            .map_err(|e| Error::format(path, format!("dataset `{name}`: {e}")))?;
        v.first()
            .copied()
            .ok_or_else(|| Error::format(path, format!("dataset `{name}` is empty")))
    };
    let learned: H5Path = f
        .dataset("learned_net")
        .and_then(|d| d.read_scalar())
        .map_err(|e| Error::format(path, format!("dataset `learned_net`: {e}")))?;
    let mut history = Vec::new();
    for i in 0.. {
        let key = format!("history/{i}");
        if f.dataset(&key).is_err() {
            break;
        }
        let (shape, data) = h5::read_f32(&f, path, &key)?;
        history.push(crate::proto::BlobProto {
            shape: Some(crate::proto::BlobShape {
                dim: shape.iter().map(|&d| d as i64).collect(),
            }),
            data,
            ..Default::default()
        });
    }
    Ok(SolverState {
        iter: Some(int("iter")?),
        learned_net: Some(learned.as_str().to_string()),
        history,
        current_step: Some(int("current_step")?),
    })
}
