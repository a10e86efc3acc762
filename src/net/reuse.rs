//! Passing gradient buffers from blob to blob during backward, for callers that read no
//! activation gradient afterwards (`crema time`): [`Net::reuse_dead_diffs`].
//!
//! Backward visits the layers last to first. A blob's diff is first written by the last layer
//! that touches the blob (a reader's backward accumulates into it) and last read by the first
//! (its producer's backward). Outside that window nobody needs it, so the buffer goes back to a
//! pool and the next blob takes it, zeroed. At any time only the diffs of the blobs "between"
//! two layers are held, instead of one diff per blob: for a chain of layers, about the two
//! largest neighbouring diffs. Slots are assigned once, when the plan is made (a blob that grows
//! later grows its slot's buffer). Parameter gradients, net outputs, loss blobs and the blobs the
//! caller names keep their own diffs, as without the plan.

use super::Net;
use crate::{Blob, Error, Result};

/// Which blobs hand their diff on, and when (see the module documentation). Each shared blob
/// is assigned one of a few slots when the plan is made, so the buffers are the same every
/// iteration.
#[derive(Debug, Default)]
pub(crate) struct DiffPlan {
    /// Whether each blob's diff is passed around rather than owned.
    pub(crate) shared: Vec<bool>,
    /// The slot each shared blob borrows from.
    slot_of: Vec<usize>,
    /// Per layer: blobs that take a zeroed buffer before the layer's backward.
    take: Vec<Vec<usize>>,
    /// Per layer: blobs whose buffer goes back to its slot after the layer's backward.
    give: Vec<Vec<usize>>,
    /// The buffers not lent out.
    slots: Vec<Vec<f32>>,
}

impl DiffPlan {
    /// Bytes held by the buffers not lent out.
    pub(crate) fn slot_bytes(&self) -> usize {
        self.slots.iter().map(|v| v.capacity()).sum::<usize>() * std::mem::size_of::<f32>()
    }

    /// Assigns slots by walking backward once: a blob takes the free slot that fits it most
    /// tightly, else the largest free one (which grows), else a new one.
    fn assign(&mut self, counts: &[usize]) {
        let mut size: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        self.slot_of = vec![usize::MAX; counts.len()];
        for li in (0..self.take.len()).rev() {
            for &b in &self.take[li] {
                let n = counts[b];
                let fit = free
                    .iter()
                    .copied()
                    .filter(|&s| size[s] >= n)
                    .min_by_key(|&s| size[s]);
                let pick = fit.or_else(|| free.iter().copied().max_by_key(|&s| size[s]));
                let s = match pick {
                    Some(s) => {
                        free.retain(|&f| f != s);
                        s
                    }
                    None => {
                        size.push(0);
                        size.len() - 1
                    }
                };
                size[s] = size[s].max(n);
                self.slot_of[b] = s;
            }
            for &b in &self.give[li] {
                free.push(self.slot_of[b]);
            }
        }
        self.slots = vec![Vec::new(); size.len()];
    }

    /// Gives blob `b` (index `id`) its slot's buffer, zeroed.
    fn lend(&mut self, id: usize, b: &mut Blob) {
        let mut buf = std::mem::take(&mut self.slots[self.slot_of[id]]);
        let n = b.data.len();
        buf.clear();
        buf.reserve_exact(n);
        buf.resize(n, 0.0);
        b.set_diff(buf);
    }

    /// Puts blob `b`'s (index `id`) buffer back into its slot.
    fn reclaim(&mut self, id: usize, b: &mut Blob) {
        let buf = b.take_diff();
        let slot = &mut self.slots[self.slot_of[id]];
        if buf.capacity() > slot.capacity() {
            *slot = buf;
        }
    }
}

impl Net {
    /// Lets backward pass gradient buffers from one blob to the next once no later step of the
    /// backward pass reads them (see the module documentation), so a backward holds far fewer
    /// activation gradients at once. Afterwards the diffs of the blobs not kept are not
    /// available (empty); kept are the net outputs, the loss blobs, the learnable blobs' diffs
    /// and every version of the blobs named in `keep`. Meant for callers that read nothing but
    /// those (timing, training); a name that is not a blob is an error.
    pub fn reuse_dead_diffs(&mut self, keep: &[&str]) -> Result<()> {
        for k in keep {
            if self.blob_index(k).is_none() {
                return Err(Error::Net(format!(
                    "reuse_dead_diffs: the net has no blob `{k}` to keep"
                )));
            }
        }
        let n = self.blobs.len();
        let mut shared: Vec<bool> = (0..n)
            .map(|i| {
                !self.outputs.contains(&i)
                    && self.blob_loss_weight[i] == 0.0
                    && !keep.contains(&self.blob_names[i].as_str())
            })
            .collect();
        // First and last layer touching each blob, in forward order. A producer without
        // bottoms or parameters (Input, data layers) has nothing to do in backward, so the
        // buffer can go back after its first reader's backward instead.
        let mut span: Vec<Option<(usize, usize)>> = vec![None; n];
        for (li, l) in self.layers.iter().enumerate() {
            for &b in l.bottom.iter().chain(&l.top) {
                let s = span[b].get_or_insert((li, li));
                let source = &self.layers[s.0];
                if s.0 == s.1 && s.0 != li && source.bottom.is_empty() && source.params.is_empty() {
                    s.0 = li;
                }
                s.1 = li;
            }
        }
        let mut plan = DiffPlan {
            take: vec![Vec::new(); self.layers.len()],
            give: vec![Vec::new(); self.layers.len()],
            ..Default::default()
        };
        for b in 0..n {
            match span[b] {
                Some((first, last)) if shared[b] => {
                    plan.take[last].push(b);
                    plan.give[first].push(b);
                }
                _ => shared[b] = false,
            }
        }
        let counts: Vec<usize> = self.blobs.iter().map(|b| b.data.len()).collect();
        plan.assign(&counts);
        for (b, blob) in self.blobs.iter_mut().enumerate() {
            if shared[b] {
                blob.take_diff();
            }
        }
        plan.shared = shared;
        self.diff_plan = Some(plan);
        Ok(())
    }

    /// Before layer `li`'s backward: lend buffers to the blobs whose diff starts here.
    pub(super) fn lend_diffs(&mut self, li: usize) {
        if let Some(plan) = self.diff_plan.as_mut() {
            for i in 0..plan.take[li].len() {
                let b = plan.take[li][i];
                plan.lend(b, &mut self.blobs[b]);
            }
        }
    }

    /// After layer `li`'s backward: take back the buffers of the blobs whose diff ends here.
    pub(super) fn reclaim_diffs(&mut self, li: usize) {
        if let Some(plan) = self.diff_plan.as_mut() {
            for i in 0..plan.give[li].len() {
                let b = plan.give[li][i];
                plan.reclaim(b, &mut self.blobs[b]);
            }
        }
    }

    /// Whether blob `b`'s diff is lent by the plan rather than owned.
    pub(super) fn diff_is_lent(&self, b: usize) -> bool {
        self.diff_plan.as_ref().is_some_and(|p| p.shared[b])
    }
}
