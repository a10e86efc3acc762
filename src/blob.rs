//! The N-D array every layer reads and writes: shape, data and diff, row-major (NCHW).

mod proto;

pub use proto::{
    blob_from_proto, blob_to_legacy_proto, blob_to_proto, copy_blob_proto, proto_shape,
};

use crate::{Error, Result};

/// An N-D float tensor with a gradient buffer of the same size. Plain data: the net owns every
/// blob and lends slices of them to one layer call at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blob {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values (`count()` of them).
    pub data: Vec<f32>,
    /// Gradient of the loss with respect to `data` (same length).
    pub diff: Vec<f32>,
}

impl Blob {
    /// A zero-filled blob of the given shape.
    pub fn new(shape: &[usize]) -> Self {
        let mut b = Blob::default();
        b.reshape(shape);
        b
    }

    /// A blob holding `data` with the given shape (diff zeroed).
    pub fn from_data(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let count: usize = shape.iter().product();
        if count != data.len() {
            return Err(Error::Invalid(format!(
                "blob of shape {} needs {count} values, got {}",
                shape_str(shape),
                data.len()
            )));
        }
        Ok(Blob {
            shape: shape.to_vec(),
            diff: vec![0.0; data.len()],
            data,
        })
    }

    /// Changes the shape, growing or shrinking the buffers; keeps the allocation when possible.
    pub fn reshape(&mut self, shape: &[usize]) {
        if self.shape != shape {
            self.shape = shape.to_vec();
        }
        let n = shape.iter().product();
        if self.data.len() != n {
            self.data.resize(n, 0.0);
            self.diff.resize(n, 0.0);
        }
    }

    /// Makes this blob's shape equal to `other`'s.
    pub fn reshape_like(&mut self, other: &Blob) {
        let shape = other.shape.clone();
        self.reshape(&shape);
    }

    /// Number of elements.
    pub fn count(&self) -> usize {
        self.data.len()
    }

    /// Product of the dimensions in `start..end`.
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        self.shape[start..end].iter().product()
    }

    /// Product of the dimensions from `start` on.
    pub fn count_from(&self, start: usize) -> usize {
        self.shape[start..].iter().product()
    }

    /// Number of axes.
    pub fn num_axes(&self) -> usize {
        self.shape.len()
    }

    /// Turns a possibly negative axis index (Caffe's convention) into a real one.
    pub fn canonical_axis(&self, axis: i32) -> Result<usize> {
        canonical_axis(axis, self.shape.len())
    }

    /// Dimension `i`, or 1 when the blob has fewer axes (Caffe's legacy accessors).
    pub fn legacy_dim(&self, i: usize) -> usize {
        self.shape.get(i).copied().unwrap_or(1)
    }

    /// Shape as `2x3x4 (24)`, the form every message uses.
    pub fn shape_string(&self) -> String {
        format!("{} ({})", shape_str(&self.shape), self.count())
    }

    /// Sets every diff value to zero.
    pub fn zero_diff(&mut self) {
        self.diff.iter_mut().for_each(|d| *d = 0.0);
    }

    /// Sum of |data|.
    pub fn asum_data(&self) -> f32 {
        self.data.iter().map(|v| v.abs()).sum()
    }

    /// Sum of |diff|.
    pub fn asum_diff(&self) -> f32 {
        self.diff.iter().map(|v| v.abs()).sum()
    }
}

/// Turns a possibly negative axis index into a real one for a blob with `num_axes` axes.
pub fn canonical_axis(axis: i32, num_axes: usize) -> Result<usize> {
    let n = num_axes as i32;
    if axis < -n || axis >= n.max(1) {
        return Err(Error::config(format!(
            "axis {axis} is out of range for a blob with {num_axes} axes"
        )));
    }
    Ok(if axis < 0 {
        (axis + n) as usize
    } else {
        axis as usize
    })
}

/// Formats a shape as `2x3x4` (`scalar` for no axes).
pub fn shape_str(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_and_counts() {
        let mut b = Blob::new(&[2, 3, 4, 5]);
        assert_eq!(b.count(), 120);
        assert_eq!(b.count_range(1, 3), 12);
        assert_eq!(b.count_from(2), 20);
        b.reshape(&[6]);
        assert_eq!(b.data.len(), 6);
        assert_eq!(b.diff.len(), 6);
        assert_eq!(b.shape_string(), "6 (6)");
        assert_eq!(b.canonical_axis(-1).unwrap(), 0);
        assert!(b.canonical_axis(2).is_err());
        assert!(Blob::from_data(&[2, 2], vec![1.0; 3]).is_err());
    }
}
