//! `crema.Blob`: one blob of a net (or one lent to a Python layer for a call), whose `.data`
//! and `.diff` are numpy arrays over crema's own memory.

use crate::net::Net;
use numpy::ndarray::{ArrayViewD, IxDyn};
use numpy::{PyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which blob of a net.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    /// An activation blob (index into the net's blobs).
    Blob(usize),
    /// A learnable blob (index into the net's parameter store).
    Param(usize),
}

/// A blob lent to a Python layer for one call.
pub(crate) struct Loan {
    ptr: *mut crema::Blob,
    /// False once the call has returned.
    alive: Arc<AtomicBool>,
    /// Bottoms in forward and tops in backward are read-only.
    writable: bool,
}

// SAFETY: a loan is only dereferenced while `alive` is true, that is during the Python layer
// call that made it, which runs on the thread holding the blob's borrow.
unsafe impl Send for Loan {}
unsafe impl Sync for Loan {}

pub(crate) enum Source {
    Net { net: Py<Net>, slot: Slot },
    Loan(Loan),
}

/// A blob: `data`, `diff` (numpy arrays aliasing crema's memory), `shape`, `count`,
/// `reshape(*shape)` and pycaffe's `num/channels/height/width`.
#[pyclass(module = "crema", frozen)]
pub struct Blob {
    pub(crate) src: Source,
}

impl Blob {
    pub(crate) fn in_net(net: Py<Net>, slot: Slot) -> Blob {
        Blob {
            src: Source::Net { net, slot },
        }
    }

    pub(crate) fn lent(ptr: *mut crema::Blob, alive: Arc<AtomicBool>, writable: bool) -> Blob {
        Blob {
            src: Source::Loan(Loan {
                ptr,
                alive,
                writable,
            }),
        }
    }

    /// Runs `f` on the blob (`writable` false when only reading).
    pub(crate) fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut crema::Blob) -> R,
    ) -> PyResult<R> {
        match &self.src {
            Source::Net { net, slot } => Net::with_net(net.bind(py), |n| {
                let b = match *slot {
                    Slot::Blob(i) => n.blob_at_mut(i),
                    Slot::Param(i) => &mut n.params_mut()[i],
                };
                f(b)
            }),
            Source::Loan(l) => {
                if !l.alive.load(Ordering::Acquire) {
                    return Err(PyRuntimeError::new_err(
                        "this blob was lent to a Python layer for one call, which has returned",
                    ));
                }
                // SAFETY: alive, see `Loan`.
                Ok(f(unsafe { &mut *l.ptr }))
            }
        }
    }

    fn writable(&self) -> bool {
        match &self.src {
            Source::Net { .. } => true,
            Source::Loan(l) => l.writable,
        }
    }

    /// A numpy array over the data (`diff` false) or the diff, kept alive by the net (or by
    /// this blob for a loan).
    pub(crate) fn view<'py>(
        slf: &Bound<'py, Self>,
        diff: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let py = slf.py();
        let me = slf.get();
        let (ptr, shape) = me.with(py, |b| {
            let v = if diff { b.diff_mut() } else { &mut b.data[..] };
            (v.as_mut_ptr(), b.shape.clone())
        })?;
        let container = match &me.src {
            Source::Net { net, .. } => net.bind(py).clone().into_any(),
            Source::Loan(_) => slf.clone().into_any(),
        };
        // SAFETY: `ptr` holds `count` values of the blob, which lives as long as `container`
        // (the net, or for a loan the call). As in pycaffe, a view taken before the blob is
        // reshaped to a different count must not be used afterwards.
        let arr = unsafe {
            let v = ArrayViewD::from_shape_ptr(IxDyn(&shape), ptr as *const f32);
            PyArrayDyn::borrow_from_array(&v, container)
        };
        if !me.writable() {
            arr.getattr("flags")?.setattr("writeable", false)?;
        }
        Ok(arr)
    }
}

/// Copies a numpy array into a blob's data (or diff), reshaping when the counts differ.
pub(crate) fn fill(
    b: &mut crema::Blob,
    values: &numpy::PyReadonlyArrayDyn<'_, f32>,
    diff: bool,
) -> PyResult<()> {
    let shape = values.shape().to_vec();
    if shape.iter().product::<usize>() != b.count() {
        b.reshape(&shape);
    }
    let dst = if diff { b.diff_mut() } else { &mut b.data[..] };
    match values.as_slice() {
        Ok(s) => dst.copy_from_slice(s),
        Err(_) => dst
            .iter_mut()
            .zip(values.as_array().iter())
            .for_each(|(d, &v)| *d = v),
    }
    Ok(())
}

#[pymethods]
impl Blob {
    /// The values, as a numpy array over crema's memory.
    #[getter]
    fn data<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        Blob::view(slf, false)
    }

    /// Assigning an array copies it in (`blob.data = x` as well as `blob.data[...] = x`).
    #[setter(data)]
    fn set_data(&self, py: Python<'_>, values: numpy::PyReadonlyArrayDyn<'_, f32>) -> PyResult<()> {
        self.set(py, values, false)
    }

    /// The gradient, as a numpy array over crema's memory.
    #[getter]
    fn diff<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        Blob::view(slf, true)
    }

    #[setter(diff)]
    fn set_diff(&self, py: Python<'_>, values: numpy::PyReadonlyArrayDyn<'_, f32>) -> PyResult<()> {
        self.set(py, values, true)
    }

    #[getter]
    fn shape(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        self.with(py, |b| b.shape.clone())
    }

    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |b| b.count())
    }

    #[getter]
    fn num(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |b| b.legacy_dim(0))
    }

    #[getter]
    fn channels(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |b| b.legacy_dim(1))
    }

    #[getter]
    fn height(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |b| b.legacy_dim(2))
    }

    #[getter]
    fn width(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |b| b.legacy_dim(3))
    }

    /// `blob.reshape(n, c, h, w)`: new shape (values kept when the count is unchanged).
    #[pyo3(signature = (*shape))]
    fn reshape(&self, py: Python<'_>, shape: Vec<usize>) -> PyResult<()> {
        if !self.writable() {
            return Err(PyValueError::new_err("a read-only blob cannot be reshaped"));
        }
        const MAX: usize = 1 << 32;
        if shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|c| c > MAX)
        {
            return Err(PyValueError::new_err(format!(
                "shape {shape:?} is too large"
            )));
        }
        self.with(py, |b| b.reshape(&shape))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |b| format!("<crema.Blob {}>", b.shape_string()))
    }
}

impl Blob {
    fn set(
        &self,
        py: Python<'_>,
        values: numpy::PyReadonlyArrayDyn<'_, f32>,
        diff: bool,
    ) -> PyResult<()> {
        if !self.writable() {
            return Err(PyValueError::new_err("this blob is read-only in this call"));
        }
        let want = self.with(py, |b| b.shape.clone())?;
        if values.shape() != want.as_slice() {
            return Err(PyValueError::new_err(format!(
                "array of shape {:?} for a blob of shape {:?} (reshape the blob first)",
                values.shape(),
                want
            )));
        }
        self.with(py, |b| fill(b, &values, diff))?
    }
}
