//! The LSTM's time loops, forward and backward: per step one GEMM against the recurrent weight
//! packed once per pass ([`PackedB`]) and one fused element-wise kernel (gate non-linearities
//! and cell update, or their derivatives). The streams are split into contiguous parts that
//! run on rayon's threads from the first step to the last, so the loop has no barrier: a
//! stream's step t needs only that stream's step t-1. Nothing is allocated inside the loops.
//!
//! Layout (time-major, row r = t*N + stream): `gates` T*N x 4H in Caffe's gate order
//! (i, f, o, g), `cell`, `tanh_c`, `hm` (masked previous states) and `h` T*N x H.

use super::recurrent::{mask_diffs, mask_states};
use crate::math::activations::{sigmoid, tanh};
use crate::math::packed::PackedB;
use crate::math::simd::multiversion;

/// A buffer that the parts of the streams share, each touching only its own rows.
#[derive(Clone, Copy)]
struct Rows {
    ptr: *mut f32,
    len: usize,
    /// Values per row.
    width: usize,
}
// SAFETY: the loops below hand each part only the rows of its own streams (see `rows`).
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    fn new(v: &mut [f32], width: usize) -> Self {
        Rows {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            width,
        }
    }

    /// Rows `r..r + count`.
    ///
    /// # Safety
    /// No other live slice may overlap these rows: each part asks only for rows of its own
    /// streams, and never for the same rows twice at once.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, r: usize, count: usize) -> &mut [f32] {
        let (s, e) = (r * self.width, (r + count) * self.width);
        assert!(e <= self.len, "rows {r}+{count} out of range");
        std::slice::from_raw_parts_mut(self.ptr.add(s), e - s)
    }
}

/// How many parts to split `n` streams into: one per rayon thread, at least 8 streams each,
/// and one when already inside a parallel task.
fn parts(n: usize) -> usize {
    if crate::math::nested() {
        1
    } else {
        (n / 8).clamp(1, rayon::current_num_threads().max(1))
    }
}

/// Runs `f(s0, s1)` for every part `s0..s1` of `n` streams, in parallel when there are several.
fn for_parts(n: usize, f: impl Fn(usize, usize) + Sync) {
    use rayon::prelude::*;
    let p = parts(n);
    if p == 1 {
        return f(0, n);
    }
    (0..p)
        .into_par_iter()
        .for_each(|i| f(i * n / p, (i + 1) * n / p));
}

/// The forward pass's buffers (see the module doc for the layout). `gates` comes in holding
/// the input projections (bias included) and leaves holding the activated gates.
pub(crate) struct Forward<'a> {
    pub gates: &'a mut [f32],
    pub cell: &'a mut [f32],
    pub tanh_c: &'a mut [f32],
    pub hm: &'a mut [f32],
    pub h: &'a mut [f32],
    /// N x H initial states.
    pub h0: &'a [f32],
    pub c0: &'a [f32],
    /// T x N sequence-continuation flags.
    pub cont: &'a [f32],
    /// `W_hc^T` (H x 4H).
    pub w: &'a PackedB,
}

impl Forward<'_> {
    /// Runs all `steps` steps of `n` streams with hidden size `hid`.
    pub fn run(self, steps: usize, n: usize, hid: usize) {
        let g4 = 4 * hid;
        let gates = Rows::new(self.gates, g4);
        let [cell, tanh_c, hm, h] =
            [self.cell, self.tanh_c, self.hm, self.h].map(|v| Rows::new(v, hid));
        let (h0, c0, cont, w) = (self.h0, self.c0, self.cont, self.w);
        for_parts(n, |s0, s1| {
            let ns = s1 - s0;
            for t in 0..steps {
                let r = t * n + s0;
                let ct = &cont[r..r + ns];
                // SAFETY: rows r.. (step t) and r - n.. (step t-1) of this part's streams only;
                // the two steps' rows are disjoint.
                unsafe {
                    let (hprev, cprev) = if t == 0 {
                        (&h0[s0 * hid..s1 * hid], &c0[s0 * hid..s1 * hid])
                    } else {
                        (&*h.rows(r - n, ns), &*cell.rows(r - n, ns))
                    };
                    let hmt = hm.rows(r, ns);
                    mask_states(hmt, hprev, ct, hid);
                    let gt = gates.rows(r, ns);
                    if ct.iter().any(|&c| c != 0.0) {
                        w.gemm(ns, hmt, hid, true, gt, g4);
                    }
                    cell_forward(
                        gt,
                        cprev,
                        ct,
                        cell.rows(r, ns),
                        tanh_c.rows(r, ns),
                        h.rows(r, ns),
                    );
                }
            }
        });
    }
}

#[inline(always)]
fn cell_forward_body(
    gates: &mut [f32],
    cprev: &[f32],
    cont: &[f32],
    cell: &mut [f32],
    tanh_c: &mut [f32],
    h: &mut [f32],
) {
    let hid = cell.len() / cont.len();
    let rows = gates
        .chunks_exact_mut(4 * hid)
        .zip(cprev.chunks_exact(hid))
        .zip(cell.chunks_exact_mut(hid))
        .zip(tanh_c.chunks_exact_mut(hid))
        .zip(h.chunks_exact_mut(hid))
        .zip(cont);
    for (((((g, cp), c), tc), h), &cn) in rows {
        let (ifo, gg) = g.split_at_mut(3 * hid);
        ifo.iter_mut().for_each(|v| *v = sigmoid(*v));
        gg.iter_mut().for_each(|v| *v = tanh(*v));
        let (i, fo) = ifo.split_at(hid);
        let (f, o) = fo.split_at(hid);
        for k in 0..hid {
            let cv = cn * f[k] * cp[k] + i[k] * gg[k];
            let t = tanh(cv);
            c[k] = cv;
            tc[k] = t;
            h[k] = o[k] * t;
        }
    }
}

multiversion!(
    /// One step of some streams: activates the gate pre-activations in place (sigmoid for
    /// i, f, o; tanh for g), then `c = cont f c_prev + i g`, `h = o tanh(c)`.
    fn cell_forward(
        gates: &mut [f32],
        cprev: &[f32],
        cont: &[f32],
        cell: &mut [f32],
        tanh_c: &mut [f32],
        h: &mut [f32]
    ) => cell_forward_body
);

/// The backward pass's buffers: the forward's saved values, the top diff and the running state
/// diffs (N x H; in: the final states' diffs, out: the initial states' diffs).
pub(crate) struct Backward<'a> {
    pub gates: &'a [f32],
    pub cell: &'a [f32],
    pub tanh_c: &'a [f32],
    pub c0: &'a [f32],
    pub cont: &'a [f32],
    /// T*N x H diff of the top h.
    pub dtop: &'a [f32],
    /// T*N x 4H gate pre-activation diffs (written).
    pub dgates: &'a mut [f32],
    pub dh: &'a mut [f32],
    pub dc: &'a mut [f32],
    /// `W_hc` (4H x H).
    pub w: &'a PackedB,
    /// Whether `dh`, `dc` must end as the initial states' diffs (else the last step's
    /// recurrent product is skipped).
    pub initial_diffs: bool,
}

impl Backward<'_> {
    /// Back-propagates through all `steps` steps of `n` streams with hidden size `hid`.
    pub fn run(self, steps: usize, n: usize, hid: usize) {
        let g4 = 4 * hid;
        let dgates = Rows::new(self.dgates, g4);
        let [dh, dc] = [self.dh, self.dc].map(|v| Rows::new(v, hid));
        let (gates, cell, tanh_c, c0) = (self.gates, self.cell, self.tanh_c, self.c0);
        let (cont, dtop, w, initial) = (self.cont, self.dtop, self.w, self.initial_diffs);
        for_parts(n, |s0, s1| {
            let ns = s1 - s0;
            // SAFETY: this part's rows of dh, dc (streams s0..s1) and of dgates at each step.
            let (dh, dc) = unsafe { (dh.rows(s0, ns), dc.rows(s0, ns)) };
            for t in (0..steps).rev() {
                let r = t * n + s0;
                let (a, b) = (r * hid, (r + ns) * hid);
                let ct = &cont[r..r + ns];
                let cprev = if t == 0 {
                    &c0[s0 * hid..s1 * hid]
                } else {
                    &cell[a - n * hid..b - n * hid]
                };
                // SAFETY: rows of step t of this part's streams.
                let dg = unsafe { dgates.rows(r, ns) };
                let saved = Saved {
                    gates: &gates[r * g4..(r + ns) * g4],
                    tanh_c: &tanh_c[a..b],
                    cprev,
                    cont: ct,
                };
                cell_backward(&saved, &dtop[a..b], dh, dc, dg);
                if t > 0 || initial {
                    // dh_{t-1} = cont_t * (da_t W_hc).
                    w.gemm(ns, dg, g4, false, dh, hid);
                    mask_diffs(dh, ct, hid);
                }
            }
        });
    }
}

/// What one step's backward reads from the forward pass, for some streams.
struct Saved<'a> {
    gates: &'a [f32],
    tanh_c: &'a [f32],
    cprev: &'a [f32],
    cont: &'a [f32],
}

#[inline(always)]
fn cell_backward_body(s: &Saved, dtop: &[f32], dh: &mut [f32], dc: &mut [f32], dgates: &mut [f32]) {
    let hid = dh.len() / s.cont.len();
    let rows = s
        .gates
        .chunks_exact(4 * hid)
        .zip(dgates.chunks_exact_mut(4 * hid))
        .zip(s.tanh_c.chunks_exact(hid))
        .zip(s.cprev.chunks_exact(hid))
        .zip(dtop.chunks_exact(hid))
        .zip(dh.chunks_exact(hid))
        .zip(dc.chunks_exact_mut(hid))
        .zip(s.cont);
    for (((((((g, dg), tc), cp), dt), dhr), dcr), &cn) in rows {
        let (i, f, o, gg) = (
            &g[..hid],
            &g[hid..2 * hid],
            &g[2 * hid..3 * hid],
            &g[3 * hid..],
        );
        let (di, rest) = dg.split_at_mut(hid);
        let (df, rest) = rest.split_at_mut(hid);
        let (dout, dgg) = rest.split_at_mut(hid);
        for k in 0..hid {
            let (iv, fv, ov, gv, t) = (i[k], f[k], o[k], gg[k], tc[k]);
            let dhv = dt[k] + dhr[k];
            let dcv = dcr[k] + dhv * ov * (1.0 - t * t);
            di[k] = dcv * gv * iv * (1.0 - iv);
            df[k] = dcv * cn * cp[k] * fv * (1.0 - fv);
            dout[k] = dhv * t * ov * (1.0 - ov);
            dgg[k] = dcv * iv * (1.0 - gv * gv);
            dcr[k] = dcv * cn * fv;
        }
    }
}

multiversion!(
    /// One step's backward for some streams: from the top diff plus the recurrent diff `dh`
    /// and the running cell diff `dc`, the gate pre-activation diffs; `dc` becomes the diff of
    /// the previous cell state.
    fn cell_backward(
        s: &Saved,
        dtop: &[f32],
        dh: &mut [f32],
        dc: &mut [f32],
        dgates: &mut [f32]
    ) => cell_backward_body
);
