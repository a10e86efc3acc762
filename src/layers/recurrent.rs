//! What `LSTM` and `RNN` share (Caffe's `RecurrentLayer`): `recurrent_param`, the bottom/top
//! layout and its checks, and the state carried from one batch to the next.
//!
//! Bottoms: `x` (T x N x ...), `cont` (T x N), optional `x_static` (N x ...), and with
//! `expose_hidden` one initial-state blob per recurrent state (1 x N x H). Tops: `h`
//! (T x N x H) and with `expose_hidden` the final states (1 x N x H). Without `expose_hidden`
//! the final states of one forward pass become the initial states of the next; `cont` decides
//! whether they are used, and no gradient crosses batches.

use super::{BlobCounts, SetupCtx};
use crate::proto::{FillerParameter, LayerParameter};
use crate::{math, Blob, Result};

/// Parsed `recurrent_param`, and the input sizes the weights were made for.
#[derive(Clone, Default)]
pub(crate) struct RecurrentConfig {
    /// Hidden (and output) size `H`.
    pub hidden: usize,
    pub weight_filler: FillerParameter,
    pub bias_filler: FillerParameter,
    pub expose_hidden: bool,
    /// Recurrent state blobs: 2 for LSTM (h, c), 1 for RNN (h).
    pub num_states: usize,
    /// Input size per step and static input size, fixed by the weights at setup.
    pub input: usize,
    pub stat: Option<usize>,
}

impl RecurrentConfig {
    /// Reads `recurrent_param` for a layer with `num_states` recurrent states.
    pub fn parse(p: &LayerParameter, num_states: usize) -> Result<Self> {
        let r = p.recurrent_param.clone().unwrap_or_default();
        crate::ensure!(
            r.num_output() > 0,
            "recurrent_param.num_output must be set and positive"
        );
        Ok(RecurrentConfig {
            hidden: r.num_output() as usize,
            weight_filler: r.weight_filler.clone().unwrap_or_default(),
            bias_filler: r.bias_filler.clone().unwrap_or_default(),
            expose_hidden: r.expose_hidden(),
            num_states,
            input: 0,
            stat: None,
        })
    }

    fn exposed(&self) -> usize {
        if self.expose_hidden {
            self.num_states
        } else {
            0
        }
    }

    /// x, cont, optional x_static, then the exposed initial states; h then the final states.
    pub fn blob_counts(&self) -> BlobCounts {
        let e = self.exposed();
        BlobCounts {
            min_bottom: Some(2 + e),
            max_bottom: Some(3 + e),
            exact_top: Some(1 + e),
            ..Default::default()
        }
    }

    /// Whether the bottoms include `x_static` (bottom 2).
    pub fn has_static(&self, num_bottoms: usize) -> bool {
        num_bottoms > 2 + self.exposed()
    }

    /// Index of the first exposed initial-state bottom.
    pub fn state_bottom(&self, num_bottoms: usize) -> usize {
        2 + usize::from(self.has_static(num_bottoms))
    }

    /// Validates the bottoms' shapes against each other.
    pub fn dims(&self, bottom: &[&Blob]) -> Result<Dims> {
        let x = bottom[0];
        crate::ensure!(
            x.num_axes() >= 2,
            "bottom 0 (x) must be T x N x ... (time-major), got shape {}",
            x.shape_string()
        );
        let (t, n) = (x.shape[0], x.shape[1]);
        let cont = bottom[1];
        crate::ensure!(
            cont.shape == [t, n],
            "bottom 1 (cont) must be T x N = {t}x{n} like x, got shape {}",
            cont.shape_string()
        );
        let input = x.count_from(2);
        let stat = if self.has_static(bottom.len()) {
            let s = bottom[2];
            crate::ensure!(
                s.num_axes() >= 1 && s.shape[0] == n,
                "bottom 2 (x_static) must be N x ... with N = {n}, got shape {}",
                s.shape_string()
            );
            Some(s.count_from(1))
        } else {
            None
        };
        if self.expose_hidden {
            let first = self.state_bottom(bottom.len());
            for (k, b) in bottom[first..].iter().enumerate() {
                crate::ensure!(
                    b.shape == [1, n, self.hidden],
                    "bottom {} (initial state {k}) must be 1 x N x num_output = 1x{n}x{}, got shape {}",
                    first + k,
                    self.hidden,
                    b.shape_string()
                );
            }
        }
        Ok(Dims { t, n, input, stat })
    }

    /// [`Self::dims`] at setup: remembers the input and static sizes the weights are made for.
    pub fn set_up(&mut self, bottom: &[&Blob]) -> Result<Dims> {
        let d = self.dims(bottom)?;
        self.input = d.input;
        self.stat = d.stat;
        Ok(d)
    }

    /// [`Self::dims`], checked against the input and static sizes the weights were made for.
    pub fn dims_as_set_up(&self, bottom: &[&Blob]) -> Result<Dims> {
        let (input, stat) = (self.input, self.stat);
        let d = self.dims(bottom)?;
        crate::ensure!(
            d.input == input,
            "input size changed: the weights expect {input} values per step, but x has shape {}",
            bottom[0].shape_string()
        );
        crate::ensure!(
            d.stat == stat,
            "static input changed since setup: weights expect {stat:?} static values, bottoms give {:?}",
            d.stat
        );
        crate::ensure!(d.t > 0, "x must have at least one time step");
        Ok(d)
    }

    /// Shapes the tops: h (T x N x H) and the exposed final states (1 x N x H).
    pub fn reshape_tops(&self, d: &Dims, top: &mut [&mut Blob]) {
        top[0].reshape(&[d.t, d.n, self.hidden]);
        for t in top.iter_mut().skip(1) {
            t.reshape(&[1, d.n, self.hidden]);
        }
    }

    /// The learnable blobs in Caffe's order, filled in that order: `W_x [width, I]`,
    /// `b [width]`, `[W_static [width, S]]`, `W_rec [width, H]`, then `extra` (shape, and
    /// whether it is a weight rather than a bias).
    pub fn make_params(
        &self,
        d: &Dims,
        width: usize,
        extra: &[(Vec<usize>, bool)],
        ctx: &mut SetupCtx,
    ) -> Result<Vec<Blob>> {
        let mut shapes = vec![(vec![width, d.input], true), (vec![width], false)];
        if let Some(s) = d.stat {
            shapes.push((vec![width, s], true));
        }
        shapes.push((vec![width, self.hidden], true));
        shapes.extend_from_slice(extra);
        let (wf, bf) = (&self.weight_filler, &self.bias_filler);
        shapes
            .iter()
            .map(|(shape, is_weight)| ctx.filled(shape, if *is_weight { wf } else { bf }))
            .collect()
    }

    /// Sets the initial states: the exposed bottoms, or else the states carried from the
    /// previous forward.
    pub fn initial_states<const S: usize>(
        &self,
        bottom: &[&Blob],
        init: [&mut Vec<f32>; S],
        carried: [&[f32]; S],
    ) {
        let sb = self.state_bottom(bottom.len());
        for (k, (v, c)) in init.into_iter().zip(carried).enumerate() {
            v.copy_from_slice(if self.expose_hidden {
                &bottom[sb + k].data
            } else {
                c
            });
        }
    }

    /// Hands on the final states: to the exposed tops (1, 2, ...), or else to `carry` for the
    /// next forward.
    pub fn final_states<const S: usize>(
        &self,
        last: [&[f32]; S],
        rest: &mut [&mut Blob],
        carry: [&mut Vec<f32>; S],
    ) {
        for (k, (l, c)) in last.into_iter().zip(carry).enumerate() {
            if self.expose_hidden {
                rest[k].data.copy_from_slice(l);
            } else {
                c.copy_from_slice(l);
            }
        }
    }

    /// Starts backward's running state diffs: the exposed final states' top diffs, else 0
    /// (no gradient crosses batches).
    pub fn final_state_diffs<const S: usize>(&self, top: &[&Blob], d: [&mut Vec<f32>; S]) {
        for (k, v) in d.into_iter().enumerate() {
            if self.expose_hidden {
                v.copy_from_slice(&top[1 + k].diff);
            } else {
                v.iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }

    /// Ends backward: adds the running state diffs into the exposed initial-state bottoms.
    pub fn add_initial_state_diffs<const S: usize>(
        &self,
        down: &[bool],
        bottom: &mut [&mut Blob],
        d: [&[f32]; S],
    ) {
        if !self.expose_hidden {
            return;
        }
        let sb = self.state_bottom(bottom.len());
        for (k, v) in d.into_iter().enumerate() {
            if down[sb + k] {
                math::axpy(1.0, v, &mut bottom[sb + k].diff);
            }
        }
    }
}

/// Sizes read from the bottoms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Dims {
    /// Time steps.
    pub t: usize,
    /// Independent streams.
    pub n: usize,
    /// Input size per step (product of x's dims from axis 2).
    pub input: usize,
    /// Static input size, when there is one.
    pub stat: Option<usize>,
}

/// The time-parallel part of a recurrent layer's forward pass: for all `T*N` rows of `x`
/// (bottom 0), `out = x W_x^T + b` (params 0 and 1), plus `x_static W_static^T` (bottom 2 and
/// param 2, an `N x width` block kept in `stat_proj`) added to every step when there is a
/// static input.
pub(crate) fn project_inputs(
    bottom: &[&Blob],
    params: &[&mut Blob],
    d: Dims,
    width: usize,
    out: &mut [f32],
    stat_proj: &mut [f32],
) {
    let (x, w, m, n) = (&bottom[0].data, &params[0].data, d.t * d.n, d.n);
    math::gemm(false, true, m, width, d.input, 1.0, x, w, 0.0, out);
    add_rows(out, &params[1].data);
    if let Some(s) = d.stat {
        let (xs, ws) = (&bottom[2].data, &params[2].data);
        math::gemm(false, true, n, width, s, 1.0, xs, ws, 0.0, stat_proj);
        for block in out.chunks_exact_mut(n * width) {
            math::axpy(1.0, stat_proj, block);
        }
    }
}

/// Adds `b` to every row of the row-major `rows x b.len()` matrix `m`.
pub(crate) fn add_rows(m: &mut [f32], b: &[f32]) {
    for row in m.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
    }
}

/// Adds the column sums of the row-major matrix `m` (rows of `acc.len()`) into `acc`.
pub(crate) fn add_col_sums(m: &[f32], acc: &mut [f32]) {
    for row in m.chunks_exact(acc.len()) {
        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
    }
}

/// `hm[j] = cont[j] * hprev[j]` for each stream `j` (rows of `h` values): the previous states
/// as the recurrent weight sees them, flushed where a sequence starts.
pub(crate) fn mask_states(hm: &mut [f32], hprev: &[f32], cont: &[f32], h: usize) {
    for ((m, p), &c) in hm.chunks_exact_mut(h).zip(hprev.chunks_exact(h)).zip(cont) {
        m.iter_mut().zip(p).for_each(|(m, &p)| *m = c * p);
    }
}

/// `dh[j] *= cont[j]` for each stream `j`: no gradient flows into a flushed previous state.
pub(crate) fn mask_diffs(dh: &mut [f32], cont: &[f32], h: usize) {
    for (row, &c) in dh.chunks_exact_mut(h).zip(cont) {
        row.iter_mut().for_each(|v| *v *= c);
    }
}

/// Where a recurrent layer's backward finds its blobs: `params` holds `W_x` (0), `b` (1),
/// `W_static` (2, with a static input) and the recurrent weight at `w_rec`; the bottoms are
/// `x`, `cont`, `[x_static]`.
pub(crate) struct ProjectionGrads<'a> {
    /// T*N x width pre-activation diffs of every step.
    pub dpre: &'a [f32],
    /// T*N x H masked previous states (the recurrent weight's inputs).
    pub hm: &'a [f32],
    pub w_rec: usize,
    pub dims: Dims,
    pub hidden: usize,
    pub width: usize,
}

impl ProjectionGrads<'_> {
    /// Adds the gradients of the recurrent weight, of the input projection (`W_x`, `b`,
    /// `W_static`) and, where `down` asks, of `x` and `x_static`; `dsum` (N x width) is scratch.
    pub fn add(
        &self,
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
        dsum: &mut [f32],
    ) {
        let Dims { t, n, input, stat } = self.dims;
        let (m, w, dpre) = (t * n, self.width, self.dpre);
        let (h, wr) = (self.hidden, self.w_rec);
        math::gemm(
            true,
            false,
            w,
            h,
            m,
            1.0,
            dpre,
            self.hm,
            1.0,
            &mut params[wr].diff,
        );
        let x = &bottom[0].data;
        math::gemm(
            true,
            false,
            w,
            input,
            m,
            1.0,
            dpre,
            x,
            1.0,
            &mut params[0].diff,
        );
        add_col_sums(dpre, &mut params[1].diff);
        if down[0] {
            let (wx, dx) = (&params[0].data, &mut bottom[0].diff);
            math::gemm(false, false, m, input, w, 1.0, dpre, wx, 1.0, dx);
        }
        if let Some(s) = stat {
            // The static input feeds every step: sum the diffs over time.
            dsum.copy_from_slice(&dpre[..n * w]);
            for block in dpre.chunks_exact(n * w).skip(1) {
                math::axpy(1.0, block, dsum);
            }
            let xs = &bottom[2].data;
            math::gemm(
                true,
                false,
                w,
                s,
                n,
                1.0,
                dsum,
                xs,
                1.0,
                &mut params[2].diff,
            );
            if down[2] {
                let (ws, dxs) = (&params[2].data, &mut bottom[2].diff);
                math::gemm(false, false, n, s, w, 1.0, dsum, ws, 1.0, dxs);
            }
        }
    }
}

/// Resizes `v` to `n` values (zeroed when the size changes).
pub(crate) fn sized(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.clear();
        v.resize(n, 0.0);
    }
}
