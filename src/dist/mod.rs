//! Data-parallel training across processes: `mpirun -np K crema train --solver S` runs K
//! synchronous workers (MPI ranks), each with its own copy of the nets (Caffe's multi-GPU
//! `P2PSync` semantics):
//!
//! - every rank builds the nets from the same `random_seed` (rank 0 draws one and sends it
//!   when the solver has none) and takes rank 0's weights, so all start equal;
//! - each train-net data layer reads its rank's share of the records (`Layer::shard`; the
//!   K batches of one step are exactly the records one process with K x `batch_size` reads);
//! - after the backward passes of each iteration the parameter gradients and the loss are
//!   averaged over the ranks with MPI allreduce ([`crate::solver::GradientSync`]) and every
//!   rank applies the same update, so the weights stay identical: the effective batch is
//!   K x `batch_size`, and the rate schedule, momentum and `iter_size` behave as in one process
//!   with the larger batch;
//! - rank 0 alone tests, snapshots and logs; signals are agreed on once per iteration
//!   ([`Cluster::agree`]), so every rank stops or snapshots at the same iteration.
//!
//! Built with the `mpi` cargo feature (Open MPI through the `mpi` crate). Without a launcher
//! (no MPI environment) or with one rank, [`Cluster::from_env`] gives `None` and nothing changes.

#[cfg(feature = "mpi")]
mod open_mpi;
#[cfg(feature = "mpi")]
pub use open_mpi::Cluster;

/// True when an MPI launcher (`mpirun`/`mpiexec` of Open MPI or MPICH, PMIx/PMI) started this
/// process.
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Communication time spent averaging gradients: seconds and calls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    pub seconds: f64,
    pub calls: u64,
}

impl CommStats {
    /// Milliseconds per call (0 before the first).
    pub fn ms_per_call(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.seconds * 1e3 / self.calls as f64
        }
    }
}

#[cfg(not(feature = "mpi"))]
mod no_mpi {
    use super::CommStats;
    use crate::proto::SolverParameter;
    use crate::solver::{Action, Solver};
    use crate::{Error, Net, Result};

    /// Without the `mpi` feature there is no cluster: [`Cluster::from_env`] is `None` in one
    /// process and an error under a launcher with more than one rank.
    pub enum Cluster {}

    impl Cluster {
        pub fn from_env() -> Result<Option<Cluster>> {
            // The world size the launcher announces.
            let size: Option<usize> = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
                .iter()
                .find_map(|v| std::env::var(v).ok()?.parse().ok());
            match size {
                Some(n) if n > 1 && super::launched_by_mpi() => Err(Error::config(format!(
                    "started by an MPI launcher with {n} ranks, but this crema was built \
                     without the `mpi` feature"
                ))),
                _ => Ok(None),
            }
        }
        pub fn rank(&self) -> usize {
            match *self {}
        }
        pub fn size(&self) -> usize {
            match *self {}
        }
        pub fn is_root(&self) -> bool {
            match *self {}
        }
        pub fn prepare(&self, _: &mut SolverParameter) -> Result<()> {
            match *self {}
        }
        pub fn attach(&self, _: &mut Solver) -> Result<()> {
            match *self {}
        }
        pub fn agree(&self, _: Action) -> Action {
            match *self {}
        }
        pub fn check_same_iter(&self, _: i32) -> Result<()> {
            match *self {}
        }
        pub fn pids(&self) -> Vec<u32> {
            match *self {}
        }
        pub fn average_gradients(&self, _: &mut Net) -> Result<f64> {
            match *self {}
        }
        pub fn stats(&self) -> CommStats {
            match *self {}
        }
        pub fn abort(&self, _: i32) -> ! {
            match *self {}
        }
    }
}
#[cfg(not(feature = "mpi"))]
pub use no_mpi::Cluster;
