//! `RNN` (Elman) with Caffe's semantics, run as one fused loop instead of Caffe's unrolled net.
//!
//! Per step t: `h_t = tanh(W_hh (cont_t * h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])`,
//! `o_t = tanh(W_ho h_t + b_o)`; the top is o (T x N x H). Blobs in Caffe's order:
//! `W_xh [H, I]`, `b_h [H]`, `[W_xh_static [H, S]]`, `W_hh [H, H]`, `W_ho [H, H]`, `b_o [H]`.
//! With `expose_hidden` the extra bottom is h_0 and the extra top h_T (1 x N x H).
//! See `recurrent.rs` for the shared bottoms, tops and carried state.

use super::recurrent::{add_col_sums, add_rows, mask_diffs, mask_states, project_inputs};
use super::recurrent::{sized, Dims, ProjectionGrads, RecurrentConfig};
use super::{BlobCounts, Layer, SetupCtx};
use crate::math::activations::tanh_in_place;
use crate::proto::LayerParameter;
use crate::{math, Blob, Result};

/// `RNN` layer.
#[derive(Default)]
pub struct Rnn {
    cfg: RecurrentConfig,
    dims: Dims,
    /// T*N x H hidden states of the last forward (after tanh).
    hidden: Vec<f32>,
    /// T*N x H masked previous hidden states `cont_t * h_{t-1}`.
    hm: Vec<f32>,
    /// N x H initial state used by the last forward, and the one carried to the next batch.
    h0: Vec<f32>,
    carry: Vec<f32>,
    /// N x H static projection (reused as its diff in backward).
    stat_proj: Vec<f32>,
    /// Backward scratch: T*N x H output pre-activation diffs, then hidden pre-activation diffs.
    dout: Vec<f32>,
    dpre: Vec<f32>,
    dh: Vec<f32>,
}

/// Creates `RNN` from `recurrent_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Rnn {
        cfg: RecurrentConfig::parse(p, 1)?,
        ..Default::default()
    }))
}

impl Rnn {
    /// Indices of W_hh, W_ho, b_o.
    fn idx(&self) -> (usize, usize, usize) {
        let o = usize::from(self.cfg.stat.is_some());
        (2 + o, 3 + o, 4 + o)
    }
}

impl Layer for Rnn {
    fn backward_reads_top(&self) -> super::TopUse {
        super::TopUse::Values
    }
    fn type_name(&self) -> &'static str {
        "RNN"
    }
    fn blob_counts(&self) -> BlobCounts {
        self.cfg.blob_counts()
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let d = self.cfg.set_up(bottom)?;
        let h = self.cfg.hidden;
        // W_ho and b_o follow W_hh.
        let extra = [(vec![h, h], true), (vec![h], false)];
        self.cfg.make_params(&d, h, &extra, ctx)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let d = self.cfg.dims_as_set_up(bottom)?;
        let h = self.cfg.hidden;
        let (m, n) = (d.t * d.n, d.n);
        for v in [
            &mut self.hidden,
            &mut self.hm,
            &mut self.dout,
            &mut self.dpre,
        ] {
            sized(v, m * h);
        }
        for v in [
            &mut self.h0,
            &mut self.carry,
            &mut self.stat_proj,
            &mut self.dh,
        ] {
            sized(v, n * h);
        }
        self.dims = d;
        self.cfg.reshape_tops(&d, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let Dims { t: steps, n, .. } = self.dims;
        let h = self.cfg.hidden;
        let (m, nh) = (steps * n, n * h);
        let (whh, who, bo) = self.idx();
        let cont = &bottom[1].data;
        self.cfg
            .initial_states(bottom, [&mut self.h0], [&self.carry]);
        let out = &mut self.hidden;
        project_inputs(bottom, params, self.dims, h, out, &mut self.stat_proj);
        for t in 0..steps {
            let (done, cur) = self.hidden.split_at_mut(t * nh);
            let hprev = if t == 0 {
                &self.h0[..]
            } else {
                &done[(t - 1) * nh..]
            };
            let hm = &mut self.hm[t * nh..(t + 1) * nh];
            mask_states(hm, hprev, &cont[t * n..(t + 1) * n], h);
            let cur = &mut cur[..nh];
            math::gemm(false, true, n, h, h, 1.0, hm, &params[whh].data, 1.0, cur);
            tanh_in_place(cur);
        }
        let out = &mut top[0].data;
        math::gemm(
            false,
            true,
            m,
            h,
            h,
            1.0,
            &self.hidden,
            &params[who].data,
            0.0,
            out,
        );
        add_rows(out, &params[bo].data);
        tanh_in_place(out);
        let last = &self.hidden[(steps - 1) * nh..];
        self.cfg
            .final_states([last], &mut top[1..], [&mut self.carry]);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let Dims { t: steps, n, .. } = self.dims;
        let h = self.cfg.hidden;
        let (m, nh) = (steps * n, n * h);
        let (whh, who, bo) = self.idx();
        // Output layer: do' = dy * (1 - o^2).
        for ((d, &dy), &o) in self.dout.iter_mut().zip(&top[0].diff).zip(&top[0].data) {
            *d = dy * (1.0 - o * o);
        }
        math::gemm(
            true,
            false,
            h,
            h,
            m,
            1.0,
            &self.dout,
            &self.hidden,
            1.0,
            &mut params[who].diff,
        );
        add_col_sums(&self.dout, &mut params[bo].diff);
        // dpre first holds dL/dh from the output layer, then the pre-activation diffs.
        math::gemm(
            false,
            false,
            m,
            h,
            h,
            1.0,
            &self.dout,
            &params[who].data,
            0.0,
            &mut self.dpre,
        );
        self.cfg.final_state_diffs(top, [&mut self.dh]);
        let cont = &bottom[1].data;
        for t in (0..steps).rev() {
            let dp = &mut self.dpre[t * nh..(t + 1) * nh];
            let hs = &self.hidden[t * nh..(t + 1) * nh];
            for ((d, &hv), &carry) in dp.iter_mut().zip(hs).zip(&self.dh) {
                *d = (*d + carry) * (1.0 - hv * hv);
            }
            let w = &params[whh].data;
            math::gemm(false, false, n, h, h, 1.0, dp, w, 0.0, &mut self.dh);
            mask_diffs(&mut self.dh, &cont[t * n..(t + 1) * n], h);
        }
        let grads = ProjectionGrads {
            dpre: &self.dpre,
            hm: &self.hm,
            w_rec: whh,
            dims: self.dims,
            hidden: h,
            width: h,
        };
        grads.add(down, bottom, params, &mut self.stat_proj);
        self.cfg.add_initial_state_diffs(down, bottom, [&self.dh]);
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn index_bound(&self, bottom: usize, _shapes: &[Vec<usize>]) -> Option<usize> {
        (bottom == 1).then_some(2)
    }
    fn reseed(&mut self, _seed: u64) {
        self.carry.iter_mut().for_each(|v| *v = 0.0);
    }
    fn forward_flops(&self, _: &[&Blob], _: &[&Blob]) -> Option<f64> {
        let d = self.dims;
        let (h, m) = (self.cfg.hidden as f64, (d.t * d.n) as f64);
        let stat = d.stat.map_or(0.0, |s| 2.0 * (d.n * s) as f64 * h);
        Some(2.0 * m * h * (self.cfg.input as f64 + 2.0 * h) + stat)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_with, err_text, GradientChecker, Harness};
    use crate::Blob;

    fn yaml(h: usize, expose: bool) -> String {
        format!(
            "type: RNN\nrecurrent_param: {{ num_output: {h}, expose_hidden: {expose}, weight_filler: {{ type: uniform, min: -0.6, max: 0.6 }}, bias_filler: {{ type: uniform, min: -0.5, max: 0.5 }} }}"
        )
    }

    fn wave(len: usize, a: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * a).sin()).collect()
    }

    /// Naive f64 reference of Caffe's RNN; returns (o for all steps, final h).
    fn reference(
        x: &[f32],
        cont: &[f32],
        xs: Option<&[f32]>,
        p: &[Blob],
        (steps, n, inp, s, hid): (usize, usize, usize, usize, usize),
        h0: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let o = usize::from(xs.is_some());
        let (wx, bh, whh, who, bo) = (
            &p[0].data,
            &p[1].data,
            &p[2 + o].data,
            &p[3 + o].data,
            &p[4 + o].data,
        );
        let mut h: Vec<f64> = h0.iter().map(|&v| v as f64).collect();
        let mut out = Vec::new();
        for t in 0..steps {
            let mut hn = vec![0.0f64; n * hid];
            for j in 0..n {
                let c = cont[t * n + j] as f64;
                for r in 0..hid {
                    let mut a = bh[r] as f64;
                    for q in 0..inp {
                        a += wx[r * inp + q] as f64 * x[(t * n + j) * inp + q] as f64;
                    }
                    if let Some(xs) = xs {
                        for q in 0..s {
                            a += p[2].data[r * s + q] as f64 * xs[j * s + q] as f64;
                        }
                    }
                    for q in 0..hid {
                        a += whh[r * hid + q] as f64 * c * h[j * hid + q];
                    }
                    hn[j * hid + r] = a.tanh();
                }
            }
            for j in 0..n {
                for r in 0..hid {
                    let mut a = bo[r] as f64;
                    for q in 0..hid {
                        a += who[r * hid + q] as f64 * hn[j * hid + q];
                    }
                    out.push(a.tanh() as f32);
                }
            }
            h = hn;
        }
        (out, h.iter().map(|&v| v as f32).collect())
    }

    #[test]
    fn forward_matches_reference() {
        let (steps, n, inp, s, hid) = (3, 2, 2, 2, 3);
        let x = wave(steps * n * inp, 0.8);
        let cont = vec![0., 0., 1., 0., 1., 1.];
        let xs = wave(n * s, 1.7);
        let mut h = Harness::new(
            &yaml(hid, false),
            vec![
                Blob::from_data(&[steps, n, inp], x.clone()).unwrap(),
                Blob::from_data(&[steps, n], cont.clone()).unwrap(),
                Blob::from_data(&[n, s], xs.clone()).unwrap(),
            ],
        )
        .unwrap();
        let shapes: Vec<_> = h.params.iter().map(|p| p.shape.clone()).collect();
        let expect: Vec<Vec<usize>> = vec![
            vec![3, 2],
            vec![3],
            vec![3, 2],
            vec![3, 3],
            vec![3, 3],
            vec![3],
        ];
        assert_eq!(shapes, expect);
        h.forward().unwrap();
        let dims = (steps, n, inp, s, hid);
        let (o, hl) = reference(&x, &cont, Some(&xs), &h.params, dims, &[0.0; 6]);
        assert_close(&h.top[0].data, &o, 1e-5);
        // The next batch starts from the carried state where cont is 1.
        h.bottom[1].data = vec![1., 0., 1., 1., 1., 1.];
        h.forward().unwrap();
        let (o2, _) = reference(&x, &h.bottom[1].data, Some(&xs), &h.params, dims, &hl);
        assert_close(&h.top[0].data, &o2, 1e-5);
    }

    #[test]
    fn cont_zero_cuts_the_state() {
        let (steps, n, inp) = (4, 2, 2);
        let cont = Blob::from_data(&[steps, n], vec![1., 1., 1., 1., 0., 0., 1., 1.]).unwrap();
        let run = |x: Vec<f32>| {
            let mut h = Harness::new(
                &yaml(3, false),
                vec![Blob::from_data(&[steps, n, inp], x).unwrap(), cont.clone()],
            )
            .unwrap();
            h.forward().unwrap();
            h.top[0].data.clone()
        };
        let x = wave(steps * n * inp, 0.6);
        let mut y = x.clone();
        y[..2 * n * inp].iter_mut().for_each(|v| *v += 1.0);
        let (a, b) = (run(x), run(y));
        assert!((0..12).any(|i| (a[i] - b[i]).abs() > 1e-3));
        assert_close(&a[12..], &b[12..], 0.0);
    }

    #[test]
    fn gradients() {
        let c = GradientChecker {
            max_per_blob: Some(40),
            ..Default::default()
        };
        check_layer_with(&yaml(3, false), &[&[4, 2, 2], &[4, 2]], &c);
        check_layer_with(&yaml(2, false), &[&[3, 3, 2], &[3, 3], &[3, 2]], &c);
        check_layer_with(
            &yaml(3, true),
            &[&[5, 2, 3], &[5, 2], &[2, 2], &[1, 2, 3]],
            &c,
        );
        check_layer_with(&yaml(2, true), &[&[3, 2, 1], &[3, 2], &[1, 2, 2]], &c);
    }

    #[test]
    fn expose_hidden_and_errors() {
        let (steps, n, inp, hid) = (3, 2, 1, 2);
        let x = wave(steps * n * inp, 0.5);
        let cont = vec![1.0; steps * n];
        let h0 = wave(n * hid, 1.1);
        let mut h = Harness::new(
            &yaml(hid, true),
            vec![
                Blob::from_data(&[steps, n, inp], x.clone()).unwrap(),
                Blob::from_data(&[steps, n], cont.clone()).unwrap(),
                Blob::from_data(&[1, n, hid], h0.clone()).unwrap(),
            ],
        )
        .unwrap();
        h.forward().unwrap();
        let (o, hl) = reference(&x, &cont, None, &h.params, (steps, n, inp, 0, hid), &h0);
        assert_close(&h.top[0].data, &o, 1e-5);
        assert_close(&h.top[1].data, &hl, 1e-5);
        let e = err_text(Harness::new(
            &yaml(2, false),
            vec![Blob::new(&[3]), Blob::new(&[3, 1])],
        ));
        assert!(e.contains("T x N"), "{e}");
        let e = err_text(Harness::new(
            "type: RNN",
            vec![Blob::new(&[3, 1]), Blob::new(&[3, 1])],
        ));
        assert!(e.contains("num_output"), "{e}");
    }
}
