//! HDF5 files through `hdf5-metno` (Debian's libhdf5): the list files `HDF5Data` reads, float
//! datasets read as f32 after their shape is checked, and f32 datasets written whole or appended
//! along the first axis.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Caffe's limit on the elements of one blob (`int` counts): no dataset larger is read.
pub const MAX_ELEMENTS: usize = i32::MAX as usize;

fn h5_err(path: &Path, what: &str, e: hdf5::Error) -> Error {
    Error::format(path, format!("{what}: {e}"))
}

/// Reads a list of `.h5` files, one per line (blank lines and `#` comments skipped); relative
/// paths resolve against the list file's folder.
pub fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let dir = list.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| dir.join(l))
        .collect();
    if files.is_empty() {
        return Err(Error::format(
            list,
            "lists no HDF5 files (expected one .h5 path per line)",
        ));
    }
    Ok(files)
}

/// Opens an HDF5 file for reading.
pub fn open(path: &Path) -> Result<hdf5::File> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such HDF5 file"),
        ));
    }
    hdf5::File::open(path).map_err(|e| h5_err(path, "not a readable HDF5 file", e))
}

/// Creates (truncates) an HDF5 file for writing.
pub fn create(path: &Path) -> Result<hdf5::File> {
    hdf5::File::create(path).map_err(|e| h5_err(path, "cannot create the HDF5 file", e))
}

/// The shape of the float dataset `name` in `file` (at path `path`), checked: it exists, holds
/// 32- or 64-bit floats, has at least one axis, and no more than [`MAX_ELEMENTS`] values.
pub fn float_shape(file: &hdf5::Group, path: &Path, name: &str) -> Result<Vec<usize>> {
    let ds = file.dataset(name).map_err(|_| {
        Error::format(
            path,
            format!(
                "has no dataset `{name}` (datasets: {})",
                file.member_names().unwrap_or_default().join(", ")
            ),
        )
    })?;
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5_err(path, &format!("dataset `{name}`"), e))?;
    if !matches!(dtype, hdf5::types::TypeDescriptor::Float(_)) {
        return Err(Error::format(
            path,
            format!("dataset `{name}` holds {dtype}; expected float32 or float64"),
        ));
    }
    let shape = ds.shape();
    if shape.is_empty() {
        return Err(Error::format(
            path,
            format!("dataset `{name}` is a scalar; expected at least one axis (N x ...)"),
        ));
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match count {
        Some(c) if c <= MAX_ELEMENTS => Ok(shape),
        _ => Err(Error::format(
            path,
            format!(
                "dataset `{name}` has shape {}, more than {MAX_ELEMENTS} values",
                crate::blob::shape_str(&shape)
            ),
        )),
    }
}

/// Reads the float dataset `name` as f32 after [`float_shape`] has checked it; returns the
/// shape and the values in row-major order.
pub fn read_f32(file: &hdf5::Group, path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let shape = float_shape(file, path, name)?;
    let ds = file
        .dataset(name)
        .map_err(|e| h5_err(path, &format!("dataset `{name}`"), e))?;
    let data = ds
        .read_raw::<f32>()
        .map_err(|e| h5_err(path, &format!("reading dataset `{name}`"), e))?;
    if data.len() != shape.iter().product::<usize>() {
        return Err(Error::format(
            path,
            format!("dataset `{name}` read {} values", data.len()),
        ));
    }
    Ok((shape, data))
}

/// Writes `data` (row-major, `shape`) as a new f32 dataset `name` under `group`.
pub fn write_f32(
    group: &hdf5::Group,
    path: &Path,
    name: &str,
    shape: &[usize],
    data: &[f32],
) -> Result<()> {
    let view = ndarray::ArrayViewD::from_shape(ndarray::IxDyn(shape), data)
        .map_err(|e| Error::format(path, format!("dataset `{name}`: {e}")))?;
    group
        .new_dataset_builder()
        .with_data(view)
        .create(name)
        .map_err(|e| h5_err(path, &format!("writing dataset `{name}`"), e))?;
    Ok(())
}

/// A dataset that grows along its first axis (chunked, unlimited N).
pub struct Appender {
    ds: hdf5::Dataset,
    name: String,
    rest: Vec<usize>,
    rows: usize,
}

impl Appender {
    /// Creates the empty dataset `name` of shape `0 x rest` in `file`.
    pub fn new(file: &hdf5::File, path: &Path, name: &str, rest: &[usize]) -> Result<Self> {
        let row: usize = rest.iter().product();
        let mut extents = vec![hdf5::Extent::resizable(0)];
        extents.extend(rest.iter().map(|&d| hdf5::Extent::fixed(d)));
        // Chunks of about 64 KiB (at least one row).
        let chunk_rows = (16384 / row.max(1)).max(1);
        let mut chunk = vec![chunk_rows];
        chunk.extend(rest.iter().map(|&d| d.max(1)));
        let ds = file
            .new_dataset::<f32>()
            .shape(hdf5::SimpleExtents::from_vec(extents))
            .chunk(chunk)
            .create(name)
            .map_err(|e| h5_err(path, &format!("creating dataset `{name}`"), e))?;
        Ok(Appender {
            ds,
            name: name.to_string(),
            rest: rest.to_vec(),
            rows: 0,
        })
    }

    /// The shape of one row.
    pub fn rest(&self) -> &[usize] {
        &self.rest
    }

    /// Appends `n` rows (`data` is `n x rest`, row-major).
    pub fn append(&mut self, path: &Path, n: usize, data: &[f32]) -> Result<()> {
        let name = &self.name;
        let mut shape = vec![n];
        shape.extend(&self.rest);
        let view = ndarray::ArrayViewD::from_shape(ndarray::IxDyn(&shape), data)
            .map_err(|e| Error::format(path, format!("dataset `{name}`: {e}")))?;
        let end = self.rows + n;
        let mut full = vec![end];
        full.extend(&self.rest);
        self.ds
            .resize(full)
            .map_err(|e| h5_err(path, &format!("growing dataset `{name}`"), e))?;
        let mut sel = vec![hdf5::SliceOrIndex::from(self.rows..end)];
        sel.extend(self.rest.iter().map(|_| hdf5::SliceOrIndex::from(..)));
        self.ds
            .write_slice(view, hdf5::Hyperslab::from(sel))
            .map_err(|e| h5_err(path, &format!("writing dataset `{name}`"), e))?;
        self.rows = end;
        Ok(())
    }
}
