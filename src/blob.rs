//! The N-D array every layer reads and writes: shape, data and diff, row-major (NCHW).

mod proto;

pub use proto::{
    blob_from_proto, blob_to_legacy_proto, blob_to_proto, copy_blob_proto, proto_shape,
};

use crate::{Error, Result};

/// An N-D float tensor with a gradient buffer of the same size. Plain data: the net owns every
/// blob and lends slices of them to one layer call at a time.
///
/// The gradient buffer may be *deferred* (see [`Blob::defer_diff`]): then `diff` is empty and
/// reshaping leaves it so, until [`Blob::ensure_diff`] (or [`Blob::diff_mut`],
/// [`Blob::zero_diff`]) allocates it. A net defers every diff until backward can run, so a
/// forward-only net holds no gradient memory. A blob made with [`Blob::new`] or
/// [`Blob::from_data`] has its diff from the start.
#[derive(Debug, Clone, Default)]
pub struct Blob {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values (`count()` of them).
    pub data: Vec<f32>,
    /// Gradient of the loss with respect to `data` (same length, or empty while deferred).
    pub diff: Vec<f32>,
    /// True while the diff is deferred: empty, and kept empty by `reshape`.
    deferred: bool,
}

/// Equal shapes, values and gradients (a deferred diff is an empty one).
impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.shape == other.shape && self.data == other.data && self.diff == other.diff
    }
}

/// `n` zeros. A fresh zeroed allocation: large ones come from the OS as zero pages that cost no
/// memory until written (unlike `Vec::resize`, which writes every value).
fn zeros(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

/// Resizes `v` to `n` values, zeros for new ones; a buffer that grows from empty is a fresh
/// zeroed allocation (see [`zeros`]).
fn resize_zeroed(v: &mut Vec<f32>, n: usize) {
    if v.is_empty() {
        *v = zeros(n);
    } else {
        v.resize(n, 0.0);
    }
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
            diff: zeros(data.len()),
            data,
            deferred: false,
        })
    }

    /// Changes the shape, growing or shrinking the buffers; keeps the allocation when possible.
    pub fn reshape(&mut self, shape: &[usize]) {
        if self.shape != shape {
            self.shape = shape.to_vec();
        }
        let n = shape.iter().product();
        if self.data.len() != n {
            resize_zeroed(&mut self.data, n);
        }
        if !self.deferred && self.diff.len() != n {
            resize_zeroed(&mut self.diff, n);
        }
    }

    /// Frees the gradient buffer and keeps it unallocated until [`Blob::ensure_diff`].
    pub fn defer_diff(&mut self) {
        self.diff = Vec::new();
        self.deferred = true;
    }

    /// Whether the gradient buffer is allocated (not deferred).
    pub fn has_diff(&self) -> bool {
        !self.deferred
    }

    /// Allocates a deferred gradient buffer (zeros); a no-op when it is allocated.
    pub fn ensure_diff(&mut self) {
        if self.deferred {
            self.diff = zeros(self.data.len());
            self.deferred = false;
        }
    }

    /// The gradient, allocated (zeros) first if it was deferred.
    pub fn diff_mut(&mut self) -> &mut [f32] {
        self.ensure_diff();
        &mut self.diff
    }

    /// Takes the gradient buffer out, leaving the diff deferred (a net's buffer plan).
    pub(crate) fn take_diff(&mut self) -> Vec<f32> {
        self.deferred = true;
        std::mem::take(&mut self.diff)
    }

    /// Installs `diff` (`count()` values) as the gradient buffer (a net's buffer plan).
    pub(crate) fn set_diff(&mut self, diff: Vec<f32>) {
        debug_assert_eq!(diff.len(), self.data.len());
        self.diff = diff;
        self.deferred = false;
    }

    /// Bytes held by the values and by the gradient (allocated lengths).
    pub fn bytes(&self) -> (usize, usize) {
        let f = std::mem::size_of::<f32>();
        (self.data.len() * f, self.diff.len() * f)
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

    /// Sets every diff value to zero (allocating a deferred diff, which starts as zeros).
    pub fn zero_diff(&mut self) {
        if self.deferred {
            self.ensure_diff();
        } else {
            self.diff.iter_mut().for_each(|d| *d = 0.0);
        }
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

    #[test]
    fn a_deferred_diff_stays_empty_through_reshapes_until_asked_for() {
        let mut b = Blob::new(&[2, 3]);
        assert!(b.has_diff());
        b.defer_diff();
        assert!(!b.has_diff());
        b.reshape(&[4, 5]);
        assert_eq!((b.data.len(), b.diff.len()), (20, 0));
        assert_eq!(b.bytes(), (80, 0));
        b.diff_mut()[3] = 2.0;
        assert_eq!(b.diff.len(), 20);
        assert_eq!(b.asum_diff(), 2.0);
        b.reshape(&[3]);
        assert_eq!(b.diff.len(), 3);
        let mut c = Blob::new(&[3]);
        c.defer_diff();
        c.zero_diff();
        assert_eq!(c.diff, vec![0.0; 3]);
    }
}
