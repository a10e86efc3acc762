//! Caffe's `Python` layer: `type: Python` with `python_param { module, layer, param_str }`
//! names a subclass of `crema.Layer` whose `setup/reshape/forward/backward` run on numpy views
//! of the blobs, as in pycaffe. The library calls [`create`] through its registry hook.

use crate::blob::Blob;
use crema::layers::{BlobCounts, Layer, SetupCtx};
use crema::proto::LayerParameter;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A layer whose methods are those of a Python object.
struct PythonLayer {
    obj: Py<PyAny>,
    name: String,
    /// Python's `setup(bottom, top)` runs at the first reshape, where the tops exist.
    set_up: bool,
}

/// Builds the Python object: `module.layer()` with `param_str` and `phase` set.
pub(crate) fn create(p: &LayerParameter) -> crema::Result<Box<dyn Layer>> {
    let pp = p.python_param.clone().unwrap_or_default();
    let name = p.name().to_string();
    let bad = |message: String| crema::Error::Layer {
        layer: name.clone(),
        ty: "Python".into(),
        message,
    };
    if pp.module().is_empty() || pp.layer().is_empty() {
        return Err(bad("python_param needs `module` and `layer`".into()));
    }
    Python::attach(|py| {
        let build = || -> PyResult<Py<PyAny>> {
            let module = py.import(pp.module())?;
            let class = module.getattr(pp.layer())?;
            let obj = class.call0()?;
            obj.setattr("param_str", pp.param_str())?;
            obj.setattr("phase", p.phase() as i32)?;
            obj.setattr("name", p.name())?;
            Ok(obj.unbind())
        };
        build().map_err(|e| {
            let err = bad(format!(
                "cannot create `{}.{}`: {}",
                pp.module(),
                pp.layer(),
                describe(py, &e)
            ));
            crate::stash(e);
            err
        })
    })
    .map(|obj| {
        Box::new(PythonLayer {
            obj,
            name: p.name().to_string(),
            set_up: false,
        }) as Box<dyn Layer>
    })
}

/// `TypeName: message` of a Python exception.
fn describe(py: Python<'_>, e: &PyErr) -> String {
    let ty = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    format!("{ty}: {}", e.value(py))
}

/// Sets the flag to false when the call is over, however it ends.
struct EndOfLoan(Arc<AtomicBool>);

impl Drop for EndOfLoan {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PythonLayer {
    /// Calls `method(first, [second,] last)` with the blobs lent as `crema.Blob`s.
    fn call(
        &self,
        method: &str,
        first: Vec<(*mut crema::Blob, bool)>,
        flags: Option<&[bool]>,
        last: Vec<(*mut crema::Blob, bool)>,
    ) -> crema::Result<()> {
        Python::attach(|py| {
            let alive = Arc::new(AtomicBool::new(true));
            let _end = EndOfLoan(alive.clone());
            let lend = |v: Vec<(*mut crema::Blob, bool)>| -> PyResult<Bound<'_, PyList>> {
                let blobs = v
                    .into_iter()
                    .map(|(p, w)| Py::new(py, Blob::lent(p, alive.clone(), w)))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, blobs)
            };
            let run = || -> PyResult<()> {
                let a = lend(first)?;
                let c = lend(last)?;
                let obj = self.obj.bind(py);
                match flags {
                    Some(f) => obj.call_method1(method, (a, f.to_vec(), c))?,
                    None => obj.call_method1(method, (a, c))?,
                };
                Ok(())
            };
            run().map_err(|e| {
                let err = crema::Error::Layer {
                    layer: self.name.clone(),
                    ty: "Python".into(),
                    message: format!("{method}: {}", describe(py, &e)),
                };
                crate::stash(e);
                err
            })
        })
    }
}

fn shared(b: &[&crema::Blob]) -> Vec<(*mut crema::Blob, bool)> {
    b.iter()
        .map(|b| (*b as *const crema::Blob as *mut crema::Blob, false))
        .collect()
}

fn exclusive(b: &mut [&mut crema::Blob]) -> Vec<(*mut crema::Blob, bool)> {
    b.iter_mut()
        .map(|b| (&mut **b as *mut crema::Blob, true))
        .collect()
}

impl Layer for PythonLayer {
    fn type_name(&self) -> &'static str {
        "Python"
    }

    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::default()
    }

    fn setup(
        &mut self,
        _bottom: &[&crema::Blob],
        _ctx: &mut SetupCtx,
    ) -> crema::Result<Vec<crema::Blob>> {
        Ok(Vec::new())
    }

    fn reshape(
        &mut self,
        bottom: &[&crema::Blob],
        top: &mut [&mut crema::Blob],
    ) -> crema::Result<()> {
        if !self.set_up {
            self.call("setup", shared(bottom), None, exclusive(top))?;
            self.set_up = true;
        }
        self.call("reshape", shared(bottom), None, exclusive(top))
    }

    fn forward(
        &mut self,
        bottom: &[&crema::Blob],
        top: &mut [&mut crema::Blob],
        _params: &mut [&mut crema::Blob],
    ) -> crema::Result<()> {
        self.call("forward", shared(bottom), None, exclusive(top))
    }

    fn backward(
        &mut self,
        top: &[&crema::Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut crema::Blob],
        _params: &mut [&mut crema::Blob],
    ) -> crema::Result<()> {
        // pycaffe's layers assign `bottom[i].diff[...]`; crema's backward adds into the diff
        // (a blob read by several layers sums their gradients): keep what is there, let
        // Python write into zeros, then add the kept values back.
        let kept: Vec<Vec<f32>> = bottom
            .iter_mut()
            .map(|b| {
                let d = b.diff_mut();
                let k = d.to_vec();
                d.fill(0.0);
                k
            })
            .collect();
        let r = self.call(
            "backward",
            shared(top),
            Some(propagate_down),
            exclusive(bottom),
        );
        for (b, k) in bottom.iter_mut().zip(kept) {
            for (d, v) in b.diff_mut().iter_mut().zip(k) {
                *d += v;
            }
        }
        r
    }
}
