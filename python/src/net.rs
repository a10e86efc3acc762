//! `crema.Net`: pycaffe's `caffe.Net` over a crema net, owned or belonging to a solver.

use crate::blob::{fill, Blob, Slot};
use crate::solver::Solver;
use crate::{guard, guard_detached, Exclusive};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList};
use std::path::PathBuf;

/// Where the crema net lives.
pub(crate) enum Owner {
    Own(Box<Exclusive<crema::Net>>),
    /// The solver's train net (`None`) or test net `i`.
    Solver {
        solver: Py<Solver>,
        test: Option<usize>,
    },
}

/// A net: `Net(model, weights=None, phase=TEST)` or pycaffe's `Net(model, phase)`.
#[pyclass(module = "crema")]
pub struct Net {
    pub(crate) owner: Owner,
}

/// One layer as pycaffe's `net.layers` shows it: `name`, `type`, `blobs`.
#[pyclass(module = "crema", frozen)]
pub struct LayerInfo {
    #[pyo3(get)]
    name: String,
    #[pyo3(get, name = "type")]
    ty: String,
    #[pyo3(get)]
    blobs: Py<PyList>,
}

impl Net {
    /// Runs `f` on the crema net. Fails (instead of blocking) while another call uses it.
    pub(crate) fn with_net<R>(
        slf: &Bound<'_, Net>,
        f: impl FnOnce(&mut crema::Net) -> R,
    ) -> PyResult<R> {
        let py = slf.py();
        let mut me = slf.try_borrow_mut()?;
        match &mut me.owner {
            Owner::Own(n) => Ok(f(n.get_mut())),
            Owner::Solver { solver, test } => {
                let mut s = solver.bind(py).try_borrow_mut()?;
                let n = s.net_of(*test)?;
                Ok(f(n))
            }
        }
    }

    /// Index of the layer called `name`.
    fn layer_index(n: &crema::Net, name: &str) -> PyResult<usize> {
        n.layers()
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| PyKeyError::new_err(format!("the net has no layer `{name}`")))
    }

    /// Each blob name once (its latest version), in creation order.
    fn blob_slots(n: &crema::Net) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for (name, _) in n.blobs() {
            if !out.iter().any(|(o, _)| o == name) {
                let i = n.blob_index(name).unwrap_or(0);
                out.push((name.to_string(), i));
            }
        }
        out
    }

    fn blob_view<'py>(
        slf: &Bound<'py, Net>,
        i: usize,
        diff: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let b = Bound::new(slf.py(), Blob::in_net(slf.clone().unbind(), Slot::Blob(i)))?;
        Blob::view(&b, diff)
    }

    /// `{name: data or diff}` views of the blobs `slots` and of the named `extra` blobs (a name
    /// the net lacks is a KeyError): what `forward` and `backward` return.
    fn blob_dict<'py>(
        slf: &Bound<'py, Net>,
        mut slots: Vec<usize>,
        extra: Vec<String>,
        diff: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        for b in extra {
            let i = Net::with_net(slf, |n| n.blob_index(&b))?
                .ok_or_else(|| PyKeyError::new_err(format!("the net has no blob `{b}`")))?;
            slots.push(i);
        }
        let d = PyDict::new(slf.py());
        for i in slots {
            let name = Net::with_net(slf, |n| n.blob_name(i).to_string())?;
            d.set_item(name, Net::blob_view(slf, i, diff)?)?;
        }
        Ok(d)
    }

    /// Copies keyword arrays into the named blobs' data or diff.
    fn feed(slf: &Bound<'_, Net>, arrays: Option<&Bound<'_, PyDict>>, diff: bool) -> PyResult<()> {
        let Some(arrays) = arrays else { return Ok(()) };
        for (k, v) in arrays.iter() {
            let name: String = k.extract()?;
            let values: PyReadonlyArrayDyn<f32> = v.extract()?;
            Net::with_net(slf, |n| {
                let i = if diff {
                    n.blob_index(&name)
                } else {
                    n.input_index(&name).or_else(|| n.blob_index(&name))
                }
                .ok_or_else(|| PyKeyError::new_err(format!("the net has no blob `{name}`")))?;
                fill(n.blob_at_mut(i), &values, diff)
            })??;
        }
        Ok(())
    }
}

/// One layer's gradient check: name, largest relative error, values checked, failures.
type GradientRow = (String, f32, usize, Vec<String>);

fn phase_of(v: i64) -> PyResult<crema::proto::Phase> {
    match v {
        0 => Ok(crema::proto::Phase::Train),
        1 => Ok(crema::proto::Phase::Test),
        _ => Err(PyValueError::new_err(format!(
            "phase must be crema.TRAIN (0) or crema.TEST (1), got {v}"
        ))),
    }
}

#[pymethods]
impl Net {
    #[new]
    #[pyo3(signature = (model, weights=None, phase=None))]
    fn new(
        model: PathBuf,
        weights: Option<&Bound<'_, PyAny>>,
        phase: Option<i64>,
    ) -> PyResult<Net> {
        // pycaffe's `Net(model, phase)`: an int in the weights position is the phase.
        let (weights, phase) = match weights {
            Some(w) if w.is_instance_of::<PyInt>() => (None, Some(w.extract::<i64>()?)),
            Some(w) => (Some(w.extract::<PathBuf>()?), phase),
            None => (None, phase),
        };
        let phase = phase_of(phase.unwrap_or(1))?;
        let net = guard(|| {
            let param = crema::load_net(&model)?;
            let mut net = crema::Net::for_phase(&param, phase, &mut crate::net_rng())?;
            if let Some(w) = &weights {
                let trained = crema::caffe::caffemodel::read(w)?;
                net.copy_trained_layers_from(&trained, &w.display().to_string())?;
            }
            Ok(net)
        })?;
        Ok(Net {
            owner: Owner::Own(Box::new(Exclusive::new(net))),
        })
    }

    /// Ordered `name -> Blob` of the activations.
    #[getter]
    fn blobs<'py>(slf: &Bound<'py, Net>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let slots = Net::with_net(slf, |n| Net::blob_slots(n))?;
        let d = PyDict::new(py);
        for (name, i) in slots {
            d.set_item(name, Blob::in_net(slf.clone().unbind(), Slot::Blob(i)))?;
        }
        Ok(d)
    }

    /// Ordered `layer name -> [Blob]` of the learnable blobs.
    #[getter]
    fn params<'py>(slf: &Bound<'py, Net>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let layers: Vec<(String, Vec<usize>)> = Net::with_net(slf, |n| {
            n.layers()
                .iter()
                .filter(|l| !l.params.is_empty())
                .map(|l| (l.name.clone(), l.params.clone()))
                .collect()
        })?;
        let d = PyDict::new(py);
        for (name, ids) in layers {
            let blobs: Vec<Blob> = ids
                .into_iter()
                .map(|p| Blob::in_net(slf.clone().unbind(), Slot::Param(p)))
                .collect();
            d.set_item(name, blobs)?;
        }
        Ok(d)
    }

    /// The layers in order, each with `name`, `type` and `blobs`.
    #[getter]
    fn layers(slf: &Bound<'_, Net>) -> PyResult<Vec<LayerInfo>> {
        let py = slf.py();
        let layers: Vec<(String, String, Vec<usize>)> = Net::with_net(slf, |n| {
            n.layers()
                .iter()
                .map(|l| (l.name.clone(), l.ty.clone(), l.params.clone()))
                .collect()
        })?;
        layers
            .into_iter()
            .map(|(name, ty, ids)| {
                let blobs: Vec<Blob> = ids
                    .into_iter()
                    .map(|p| Blob::in_net(slf.clone().unbind(), Slot::Param(p)))
                    .collect();
                Ok(LayerInfo {
                    name,
                    ty,
                    blobs: PyList::new(py, blobs)?.unbind(),
                })
            })
            .collect()
    }

    /// Layer names in order (pycaffe's `net._layer_names`).
    #[getter]
    fn _layer_names(slf: &Bound<'_, Net>) -> PyResult<Vec<String>> {
        Net::with_net(slf, |n| n.layers().iter().map(|l| l.name.clone()).collect())
    }

    #[getter]
    fn inputs(slf: &Bound<'_, Net>) -> PyResult<Vec<String>> {
        Net::with_net(slf, |n| {
            n.input_names().into_iter().map(String::from).collect()
        })
    }

    #[getter]
    fn outputs(slf: &Bound<'_, Net>) -> PyResult<Vec<String>> {
        Net::with_net(slf, |n| {
            n.output_names().into_iter().map(String::from).collect()
        })
    }

    #[getter]
    fn name(slf: &Bound<'_, Net>) -> PyResult<String> {
        Net::with_net(slf, |n| n.name.clone())
    }

    /// pycaffe's `forward(blobs=None, start=None, end=None, **inputs)`: copies the inputs in,
    /// runs layers `start..=end` (GIL released) and returns `{name: data}` for the outputs (the
    /// tops of `end` when given) and the extra `blobs`, as views.
    #[pyo3(signature = (blobs=None, start=None, end=None, **inputs))]
    fn forward<'py>(
        slf: &Bound<'py, Net>,
        blobs: Option<Vec<String>>,
        start: Option<String>,
        end: Option<String>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        Net::feed(slf, inputs, false)?;
        let (s, e, outs) = Net::with_net(slf, |n| -> PyResult<_> {
            let s = start
                .as_deref()
                .map(|x| Net::layer_index(n, x))
                .transpose()?
                .unwrap_or(0);
            let (e, outs) = match end.as_deref() {
                Some(x) => {
                    let e = Net::layer_index(n, x)?;
                    (e + 1, n.layers()[e].top.clone())
                }
                None => (n.layers().len(), Net::output_slots(n)),
            };
            Ok((s, e, outs))
        })??;
        Net::with_net(slf, |n| {
            guard_detached(py, || n.forward_range(s, e).map(|_| ()))
        })??;
        Net::blob_dict(slf, outs, blobs.unwrap_or_default(), false)
    }

    /// pycaffe's `backward(diffs=None, start=None, end=None, **top_diffs)`: without top diffs
    /// the loss tops are seeded with their loss weights; given ones are copied into the named
    /// blobs' diffs. Runs layers `end..=start` backward (GIL released) and returns
    /// `{name: diff}` for the net inputs and the extra `diffs`.
    #[pyo3(signature = (diffs=None, start=None, end=None, **top_diffs))]
    fn backward<'py>(
        slf: &Bound<'py, Net>,
        diffs: Option<Vec<String>>,
        start: Option<String>,
        end: Option<String>,
        top_diffs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        Net::with_net(slf, |n| n.seed_loss_diffs())?;
        Net::feed(slf, top_diffs, true)?;
        let (lo, hi) = Net::with_net(slf, |n| -> PyResult<_> {
            let hi = match start.as_deref() {
                Some(x) => Net::layer_index(n, x)? + 1,
                None => n.layers().len(),
            };
            let lo = end
                .as_deref()
                .map(|x| Net::layer_index(n, x))
                .transpose()?
                .unwrap_or(0);
            Ok((lo, hi))
        })??;
        Net::with_net(slf, |n| guard_detached(py, || n.backward_range(lo, hi)))??;
        let outs: Vec<usize> = Net::with_net(slf, |n| {
            n.input_names()
                .iter()
                .filter_map(|x| n.input_index(x))
                .collect()
        })?;
        Net::blob_dict(slf, outs, diffs.unwrap_or_default(), true)
    }

    /// Propagates the input shapes through every layer (after `blobs[x].reshape(...)`).
    fn reshape(slf: &Bound<'_, Net>) -> PyResult<()> {
        Net::with_net(slf, |n| guard(|| n.reshape()))?
    }

    /// Writes the learned blobs as a `.caffemodel`.
    fn save(slf: &Bound<'_, Net>, path: PathBuf) -> PyResult<()> {
        Net::with_net(slf, |n| {
            guard(|| crema::caffe::caffemodel::write(&path, &n.to_proto(false)))
        })?
    }

    /// Copies learned blobs from a `.caffemodel` by layer name (pycaffe's `copy_from`).
    fn copy_from(slf: &Bound<'_, Net>, path: PathBuf) -> PyResult<()> {
        Net::with_net(slf, |n| {
            guard(|| {
                let trained = crema::caffe::caffemodel::read(&path)?;
                n.copy_trained_layers_from(&trained, &path.display().to_string())
                    .map(|_| ())
            })
        })?
    }

    /// Copies the learned blobs of layers of the same name from another net.
    fn share_with(slf: &Bound<'_, Net>, other: &Bound<'_, Net>) -> PyResult<()> {
        let proto = Net::with_net(other, |o| o.to_proto(false))?;
        Net::with_net(slf, |n| {
            guard(|| {
                n.copy_trained_layers_from(&proto, "the other net")
                    .map(|_| ())
            })
        })?
    }

    /// Numeric gradient check of every layer at the inputs it sees in one forward pass:
    /// `[(layer, max_rel_error, checked, failures)]`.
    #[pyo3(signature = (step=1e-2, threshold=1e-3, seed=1701))]
    fn check_gradients(
        slf: &Bound<'_, Net>,
        step: f32,
        threshold: f32,
        seed: u64,
    ) -> PyResult<Vec<GradientRow>> {
        let checker = crema::testing::GradientChecker {
            step,
            threshold,
            seed,
            max_per_blob: None,
        };
        let reports = Net::with_net(slf, |n| guard(|| n.check_gradients(&checker)))??;
        Ok(reports
            .into_iter()
            .map(|(name, r)| (name, r.max_rel_error, r.checked, r.failures))
            .collect())
    }

    /// pycaffe's `set_input_arrays(data, labels)`: replaces the samples of the first
    /// `MemoryData` layer (`data`: N x C x H x W, `labels`: N).
    fn set_input_arrays(
        slf: &Bound<'_, Net>,
        data: PyReadonlyArrayDyn<'_, f32>,
        labels: PyReadonlyArrayDyn<'_, f32>,
    ) -> PyResult<()> {
        let d: Vec<f32> = data.as_array().iter().copied().collect();
        let l: Vec<f32> = labels.as_array().iter().copied().collect();
        Net::with_net(slf, |n| {
            guard(|| {
                let name = n
                    .layers()
                    .iter()
                    .find(|l| l.ty == "MemoryData")
                    .map(|l| l.name.clone())
                    .ok_or_else(|| {
                        crema::Error::Invalid("the net has no MemoryData layer".into())
                    })?;
                let mem = crema::layers::memory_data(n, &name)?;
                mem.clear();
                mem.push(&d, &l)
            })
        })?
    }

    fn __repr__(slf: &Bound<'_, Net>) -> PyResult<String> {
        Net::with_net(slf, |n| {
            format!("<crema.Net {} ({} layers)>", n.name, n.layers().len())
        })
    }
}

impl Net {
    /// The output blobs' indices (sorted by name, as `output_names`).
    fn output_slots(n: &crema::Net) -> Vec<usize> {
        n.output_names()
            .iter()
            .filter_map(|x| n.blob_index(x))
            .collect()
    }
}
