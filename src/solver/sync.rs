//! The hook for data-parallel training: after the backward passes of an iteration the solver
//! hands the train net (parameter diffs accumulated over `iter_size` passes) and the iteration's
//! loss to a [`GradientSync`], which averages both across workers before the update. Every
//! worker then applies the same update to the same weights (Caffe's multi-GPU semantics). The
//! MPI implementation is `crate::dist`.

use crate::{Net, Result};

/// Averages the parameter gradients and the loss across data-parallel workers.
pub trait GradientSync {
    /// Replaces every parameter diff of `net` and `loss` with their means over all workers.
    /// Called once per iteration, on every worker, at the same point.
    fn sync(&mut self, net: &mut Net, loss: &mut f32) -> Result<()>;
}
