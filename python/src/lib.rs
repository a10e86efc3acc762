//! `crema._crema`: the native half of the `crema` Python package (pycaffe's habits on crema).
//!
//! Every call into the library goes through [`guard`]: crema errors become `crema.CremaError`
//! (with crema's message), a Python exception raised inside a Python layer comes back out as
//! itself, and a panic is caught here instead of crossing into Python.

mod blob;
mod io;
mod layer;
mod net;
mod solver;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

pyo3::create_exception!(
    crema,
    CremaError,
    PyRuntimeError,
    "An error reported by crema."
);

thread_local! {
    /// The exception a Python layer raised during the current library call, re-raised as is
    /// when the call returns its error.
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Remembers a Python layer's exception for [`guard`] to re-raise.
pub(crate) fn stash(e: PyErr) {
    PENDING.with(|p| *p.borrow_mut() = Some(e));
}

/// Turns a crema error into a Python exception (the stashed Python one if a layer raised).
pub(crate) fn to_py(e: crema::Error) -> PyErr {
    match PENDING.with(|p| p.borrow_mut().take()) {
        Some(original) => original,
        None => CremaError::new_err(e.chain_text()),
    }
}

/// Runs `f`, catching panics; errors become Python exceptions.
pub(crate) fn guard<R>(f: impl FnOnce() -> crema::Result<R>) -> PyResult<R> {
    PENDING.with(|p| p.borrow_mut().take());
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(CremaError::new_err(format!(
                "internal error in crema: {msg}"
            )))
        }
    }
}

/// Like [`guard`] with the GIL released while `f` runs (other Python threads go on).
pub(crate) fn guard_detached<R: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> crema::Result<R> + Send,
) -> PyResult<R> {
    PENDING.with(|p| p.borrow_mut().take());
    let r = py.detach(|| {
        catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into())
        })
    });
    match r {
        Ok(r) => r.map_err(to_py),
        Err(msg) => Err(CremaError::new_err(format!(
            "internal error in crema: {msg}"
        ))),
    }
}

/// Shares a `Send` value between threads by only ever lending it mutably: pyo3 classes must be
/// `Sync`, crema's layers are only `Send`. Sound for the reason `std::sync::Exclusive` is: no
/// `&T` is ever handed out, so two threads never touch the value at once.
pub(crate) struct Exclusive<T>(T);

// SAFETY: see above; only `get_mut` reaches the value.
unsafe impl<T: Send> Sync for Exclusive<T> {}

impl<T> Exclusive<T> {
    pub(crate) fn new(t: T) -> Self {
        Exclusive(t)
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Seed for the random generators of nets built from Python (0: from entropy).
static SEED: AtomicU64 = AtomicU64::new(0);

/// A generator for a new net: seeded by `set_random_seed`, else from entropy.
pub(crate) fn net_rng() -> rand::rngs::StdRng {
    use rand::SeedableRng;
    match SEED.load(Ordering::Relaxed) {
        0 => rand::rngs::StdRng::from_entropy(),
        s => rand::rngs::StdRng::seed_from_u64(s),
    }
}

/// Seeds the fillers of nets built afterwards (pycaffe's `caffe.set_random_seed`).
#[pyfunction]
fn set_random_seed(seed: u64) {
    SEED.store(seed.max(1), Ordering::Relaxed);
}

/// Reads a model file (YAML or prototxt) and returns it as crema YAML, upgraded and with the
/// defaults left out: two files define the same net when these strings are equal.
#[pyfunction]
fn model_to_yaml(path: std::path::PathBuf) -> PyResult<String> {
    guard(|| Ok(crema::spec::message_to_yaml(&crema::load_net(&path)?)))
}

/// `{"InnerProduct": "inner_product_param", ...}`: the LayerParameter field that holds each
/// layer type's parameters, from caffe.proto (pycaffe's `param_name_dict`).
#[pyfunction]
fn layer_param_fields() -> Vec<(String, String)> {
    let desc = crema::spec::descriptor::<crema::proto::LayerParameter>();
    desc.fields()
        .filter_map(|f| {
            let m = f.kind().as_message()?.name().to_string();
            let ty = m.strip_suffix("Parameter")?.to_string();
            f.name()
                .ends_with("_param")
                .then(|| (ty, f.name().to_string()))
        })
        .collect()
}

/// Every registered layer type.
#[pyfunction]
fn layer_types() -> Vec<&'static str> {
    crema::layers::known_types()
}

#[pymodule]
fn _crema(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crema::layers::set_python_layer_constructor(layer::create);
    m.add("CremaError", m.py().get_type::<CremaError>())?;
    m.add("TRAIN", 0)?;
    m.add("TEST", 1)?;
    m.add_function(wrap_pyfunction!(set_random_seed, m)?)?;
    m.add_function(wrap_pyfunction!(model_to_yaml, m)?)?;
    m.add_function(wrap_pyfunction!(layer_param_fields, m)?)?;
    m.add_function(wrap_pyfunction!(layer_types, m)?)?;
    m.add_class::<blob::Blob>()?;
    m.add_class::<net::Net>()?;
    m.add_class::<net::LayerInfo>()?;
    m.add_class::<solver::Solver>()?;
    m.add_class::<io::Classifier>()?;
    io::register(m)?;
    Ok(())
}
