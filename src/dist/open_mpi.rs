//! The MPI cluster (Open MPI through the `mpi` crate): seed and weight agreement, sharding,
//! gradient allreduce, signal agreement, abort.

use super::CommStats;
use crate::proto::SolverParameter;
use crate::solver::{Action, GradientSync, Solver};
use crate::{Error, Net, Result};
use ::mpi::collective::SystemOperation;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::*;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// Gradients travel in buckets of this many values (4 MiB), one allreduce each.
const BUCKET: usize = 1 << 20;

/// This process's place among the MPI ranks. Dropping it finalizes MPI.
pub struct Cluster {
    // Declared first so that the communicator handles go before MPI_Finalize.
    world: SimpleCommunicator,
    stats: Rc<Cell<CommStats>>,
    _universe: Universe,
}

impl Cluster {
    /// Joins the MPI job when a launcher started this process and it has more than one rank;
    /// `None` otherwise (MPI is then not initialized at all, or finalized again for one rank).
    pub fn from_env() -> Result<Option<Cluster>> {
        if !super::launched_by_mpi() {
            return Ok(None);
        }
        let universe = ::mpi::initialize()
            .ok_or_else(|| Error::Invalid("MPI was initialized twice".into()))?;
        let world = universe.world();
        if world.size() <= 1 {
            return Ok(None);
        }
        Ok(Some(Cluster {
            world,
            stats: Rc::new(Cell::new(CommStats::default())),
            _universe: universe,
        }))
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// Rank 0: the one that tests, snapshots and logs.
    pub fn is_root(&self) -> bool {
        self.world.rank() == 0
    }

    /// Before the solver is built: one `random_seed` for all ranks (rank 0's, or one it draws
    /// when the solver has none), and no tests or snapshots on the ranks other than 0.
    pub fn prepare(&self, param: &mut SolverParameter) -> Result<()> {
        let mut seed: i64 = if param.random_seed() >= 0 {
            param.random_seed()
        } else {
            (rand::random::<u64>() >> 1) as i64
        };
        self.world.process_at_rank(0).broadcast_into(&mut seed);
        param.random_seed = Some(seed);
        if !self.is_root() {
            param.test_interval = Some(0);
            param.test_initialization = Some(false);
            param.snapshot = Some(0);
            param.snapshot_after_train = Some(false);
        }
        Ok(())
    }

    /// After the solver is built (and weights copied): the train net reads this rank's share
    /// of the data, takes rank 0's weights, and averages gradients every iteration.
    pub fn attach(&self, solver: &mut Solver) -> Result<()> {
        let (rank, size) = (self.rank(), self.size());
        let net = solver.net_mut();
        for l in net.layers_mut() {
            l.layer.shard(rank, size);
        }
        for p in net.params_mut() {
            self.world
                .process_at_rank(0)
                .broadcast_into(&mut p.data[..]);
        }
        solver.set_gradient_sync(MpiSync {
            world: SimpleCommunicator::world(),
            stats: self.stats.clone(),
            send: Vec::new(),
            recv: Vec::new(),
        });
        Ok(())
    }

    /// The action every rank takes this iteration: the strongest request of any rank (stop
    /// over snapshot over nothing). Ranks other than 0 do not snapshot, so they get
    /// [`Action::None`] for a snapshot.
    pub fn agree(&self, local: Action) -> Action {
        let code = |a: Action| match a {
            Action::None => 0i32,
            Action::Snapshot => 1,
            Action::Stop => 2,
        };
        let mut all = 0i32;
        self.world
            .all_reduce_into(&code(local), &mut all, SystemOperation::max());
        match all {
            2 => Action::Stop,
            1 if self.is_root() => Action::Snapshot,
            _ => Action::None,
        }
    }

    /// Checks that every rank ended at iteration `iter`.
    pub fn check_same_iter(&self, iter: i32) -> Result<()> {
        let (mut lo, mut hi) = (0i32, 0i32);
        self.world
            .all_reduce_into(&iter, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&iter, &mut hi, SystemOperation::max());
        if lo != hi {
            return Err(Error::Invalid(format!(
                "the MPI ranks ended at different iterations ({lo} to {hi})"
            )));
        }
        Ok(())
    }

    /// Every rank's process id, in rank order.
    pub fn pids(&self) -> Vec<u32> {
        let mut all = vec![0u32; self.size()];
        self.world
            .all_gather_into(&std::process::id(), &mut all[..]);
        all
    }

    /// Averages `net`'s parameter diffs over the ranks (as in training); returns the seconds
    /// it took.
    pub fn average_gradients(&self, net: &mut Net) -> Result<f64> {
        let t = Instant::now();
        allreduce_mean(&self.world, net, &mut 0.0, &mut Vec::new(), &mut Vec::new());
        Ok(t.elapsed().as_secs_f64())
    }

    /// Time spent averaging gradients so far.
    pub fn stats(&self) -> CommStats {
        self.stats.get()
    }

    /// Ends every rank of the job with exit status `code` (MPI_Abort); the caller prints the
    /// reason first.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

/// The [`GradientSync`] on MPI: all diffs and the loss packed into one buffer, summed with
/// allreduce bucket by bucket, divided by the number of ranks.
struct MpiSync {
    world: SimpleCommunicator,
    stats: Rc<Cell<CommStats>>,
    send: Vec<f32>,
    recv: Vec<f32>,
}

impl GradientSync for MpiSync {
    fn sync(&mut self, net: &mut Net, loss: &mut f32) -> Result<()> {
        let t = Instant::now();
        allreduce_mean(&self.world, net, loss, &mut self.send, &mut self.recv);
        let mut st = self.stats.get();
        st.seconds += t.elapsed().as_secs_f64();
        st.calls += 1;
        self.stats.set(st);
        Ok(())
    }
}

/// Replaces `net`'s parameter diffs and `loss` by their means over the ranks of `world`
/// (`send` and `recv` are scratch buffers kept between calls).
fn allreduce_mean(
    world: &SimpleCommunicator,
    net: &mut Net,
    loss: &mut f32,
    send: &mut Vec<f32>,
    recv: &mut Vec<f32>,
) {
    send.clear();
    for p in net.params() {
        send.extend_from_slice(&p.diff);
    }
    send.push(*loss);
    recv.resize(send.len(), 0.0);
    for (s, r) in send.chunks(BUCKET).zip(recv.chunks_mut(BUCKET)) {
        world.all_reduce_into(s, r, SystemOperation::sum());
    }
    let k = 1.0 / world.size() as f32;
    let mut at = 0;
    for p in net.params_mut() {
        let n = p.diff.len();
        for (d, &s) in p.diff.iter_mut().zip(&recv[at..at + n]) {
            *d = s * k;
        }
        at += n;
    }
    *loss = recv[at] * k;
}
