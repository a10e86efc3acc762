//! `crema.Solver`: pycaffe's `get_solver` / `SGDSolver` over crema's solver.

use crate::net::{Net, Owner};
use crate::{guard, guard_detached, Exclusive};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use std::path::PathBuf;

/// crema's solver, movable to the thread that runs it with the GIL released.
struct Inner(crema::solver::Solver);

// SAFETY: the only fields of `Solver` that are not `Send` are its hooks (feeder, observer,
// action source), boxed closures that the Python module never installs; everything else (nets,
// history, parameters) is `Send`.
unsafe impl Send for Inner {}

/// A solver read from a solver file (YAML or prototxt): `Solver(path)`.
#[pyclass(module = "crema")]
pub struct Solver {
    inner: Exclusive<Inner>,
}

impl Solver {
    /// The train net (`None`) or test net `i`.
    pub(crate) fn net_of(&mut self, test: Option<usize>) -> PyResult<&mut crema::Net> {
        match test {
            None => Ok(self.inner.get_mut().0.net_mut()),
            Some(i) => self
                .inner
                .get_mut()
                .0
                .test_nets_mut()
                .get_mut(i)
                .ok_or_else(|| PyIndexError::new_err(format!("no test net {i}"))),
        }
    }

    fn net_handle(slf: &Bound<'_, Solver>, test: Option<usize>) -> PyResult<Net> {
        Ok(Net {
            owner: Owner::Solver {
                solver: slf.clone().unbind(),
                test,
            },
        })
    }
}

#[pymethods]
impl Solver {
    #[new]
    fn new(path: PathBuf) -> PyResult<Solver> {
        let s = guard(|| crema::solver::Solver::from_file(&path))?;
        Ok(Solver {
            inner: Exclusive::new(Inner(s)),
        })
    }

    /// The train net (its blobs alias the solver's).
    #[getter]
    fn net(slf: &Bound<'_, Solver>) -> PyResult<Net> {
        Solver::net_handle(slf, None)
    }

    /// The test nets.
    #[getter]
    fn test_nets(slf: &Bound<'_, Solver>) -> PyResult<Vec<Net>> {
        let n = slf.try_borrow_mut()?.inner.get_mut().0.test_nets().len();
        (0..n).map(|i| Solver::net_handle(slf, Some(i))).collect()
    }

    /// Updates applied so far.
    #[getter]
    fn iter(&mut self) -> i32 {
        self.inner.get_mut().0.iter()
    }

    /// The smoothed training loss of the last `step`/`solve`.
    #[getter]
    fn smoothed_loss(&mut self) -> f32 {
        self.inner.get_mut().0.smoothed_loss()
    }

    /// The learning rate at the current iteration.
    #[getter]
    fn lr(&mut self) -> f32 {
        self.inner.get_mut().0.current_rate()
    }

    /// Runs `iters` iterations (tests and snapshots as the solver file says), GIL released.
    fn step(&mut self, py: Python<'_>, iters: i32) -> PyResult<()> {
        let inner = &mut self.inner;
        guard_detached(py, move || inner.get_mut().0.step(iters))
    }

    /// Caffe's `Solve`: optionally restore a `.solverstate`, then train to `max_iter`.
    #[pyo3(signature = (snapshot=None))]
    fn solve(&mut self, py: Python<'_>, snapshot: Option<PathBuf>) -> PyResult<()> {
        let inner = &mut self.inner;
        guard_detached(py, move || inner.get_mut().0.solve(snapshot.as_deref()))
    }

    /// Writes the weights and the solver state; returns their paths.
    fn snapshot(&mut self) -> PyResult<(PathBuf, PathBuf)> {
        guard(|| self.inner.get_mut().0.snapshot())
    }

    /// Resumes from a `.solverstate`.
    fn restore(&mut self, state: PathBuf) -> PyResult<()> {
        guard(|| self.inner.get_mut().0.restore(&state))
    }

    /// Runs test net `i` once over its `test_iter` batches; returns `{output: mean value}`.
    #[pyo3(signature = (i=0))]
    fn test(&mut self, py: Python<'_>, i: usize) -> PyResult<Vec<(String, f32)>> {
        let n = self.inner.get_mut().0.test_nets().len();
        if i >= n {
            return Err(PyIndexError::new_err(format!(
                "no test net {i} (the solver has {n})"
            )));
        }
        let inner = &mut self.inner;
        let outs = guard_detached(py, move || inner.get_mut().0.test(i))?;
        Ok(outs
            .into_iter()
            .map(|o| (o.name, o.values.first().copied().unwrap_or(0.0)))
            .collect())
    }
}
