//! `LSTM` with Caffe's semantics, run as one fused loop instead of Caffe's unrolled net.
//!
//! Per step t and stream n (gate order in the 4H pre-activation: i, f, o, g):
//! `a = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t * h_{t-1})`,
//! `i, f, o = sigmoid(a_i, a_f, a_o)`, `g = tanh(a_g)`, `c_t = cont_t * f * c_{t-1} + i * g`,
//! `h_t = o * tanh(c_t)`. Blobs (Caffe's order and shapes, so Caffe-trained weights load
//! unchanged): `W_xc [4H, I]`, `b_c [4H]`, `[W_xc_static [4H, S]]`, `W_hc [4H, H]`.
//!
//! Forward: one sgemm for every step's input projection, then per step one GEMM for the
//! recurrent term against the packed weight and one fused element-wise kernel (`lstm_step.rs`).
//! The activated gates, cells and masked previous states are kept for backward, which runs BPTT
//! over the whole sequence with one GEMM per step and one sgemm per weight for all steps at the
//! end. See `recurrent.rs` for bottoms and tops.

use super::lstm_step::{Backward, Forward};
use super::recurrent::{project_inputs, sized, Dims, ProjectionGrads, RecurrentConfig};
use super::{BlobCounts, Layer, SetupCtx};
use crate::math::packed::PackedB;
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `LSTM` layer.
#[derive(Default)]
pub struct Lstm {
    cfg: RecurrentConfig,
    dims: Dims,
    /// T*N x 4H activated gates (i, f, o, g) of the last forward.
    gates: Vec<f32>,
    /// T*N x H cell states and their tanh.
    cell: Vec<f32>,
    tanh_c: Vec<f32>,
    /// T*N x H masked previous hidden states `cont_t * h_{t-1}` (the inputs of `W_hc`).
    hm: Vec<f32>,
    /// N x H initial states used by the last forward.
    h0: Vec<f32>,
    c0: Vec<f32>,
    /// N x H final states carried into the next batch (without `expose_hidden`).
    carry_h: Vec<f32>,
    carry_c: Vec<f32>,
    /// N x 4H projection of the static input.
    stat_proj: Vec<f32>,
    /// Backward scratch: T*N x 4H gate pre-activation diffs, N x H running state diffs.
    dgates: Vec<f32>,
    dh: Vec<f32>,
    dc: Vec<f32>,
    /// The recurrent weight packed for the step GEMMs (`W_hc^T` in forward, `W_hc` in backward).
    packed: PackedB,
}

/// Creates `LSTM` from `recurrent_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Lstm {
        cfg: RecurrentConfig::parse(p, 2)?,
        ..Default::default()
    }))
}

impl Lstm {
    fn wh_index(&self) -> usize {
        if self.cfg.stat.is_some() {
            3
        } else {
            2
        }
    }
}

impl Layer for Lstm {
    fn type_name(&self) -> &'static str {
        "LSTM"
    }
    fn blob_counts(&self) -> BlobCounts {
        self.cfg.blob_counts()
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let d = self.cfg.set_up(bottom)?;
        self.cfg.make_params(&d, 4 * self.cfg.hidden, &[], ctx)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let d = self.cfg.dims_as_set_up(bottom)?;
        let h = self.cfg.hidden;
        let (m, n) = (d.t * d.n, d.n);
        sized(&mut self.gates, m * 4 * h);
        sized(&mut self.dgates, m * 4 * h);
        for v in [&mut self.cell, &mut self.tanh_c, &mut self.hm] {
            sized(v, m * h);
        }
        for v in [
            &mut self.h0,
            &mut self.c0,
            &mut self.carry_h,
            &mut self.carry_c,
            &mut self.dh,
            &mut self.dc,
        ] {
            sized(v, n * h);
        }
        sized(&mut self.stat_proj, n * 4 * h);
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
        self.cfg.initial_states(
            bottom,
            [&mut self.h0, &mut self.c0],
            [&self.carry_h, &self.carry_c],
        );
        // Input projections of all steps at once.
        let out = &mut self.gates;
        project_inputs(bottom, params, self.dims, 4 * h, out, &mut self.stat_proj);
        self.packed
            .pack(true, h, 4 * h, &params[self.wh_index()].data);
        let (htop, rest) = top.split_at_mut(1);
        let hout = &mut htop[0].data;
        Forward {
            gates: &mut self.gates,
            cell: &mut self.cell,
            tanh_c: &mut self.tanh_c,
            hm: &mut self.hm,
            h: hout,
            h0: &self.h0,
            c0: &self.c0,
            cont: &bottom[1].data,
            w: &self.packed,
        }
        .run(steps, n, h);
        let last = (steps - 1) * n * h..steps * n * h;
        self.cfg.final_states(
            [&hout[last.clone()], &self.cell[last]],
            rest,
            [&mut self.carry_h, &mut self.carry_c],
        );
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
        let whi = self.wh_index();
        self.cfg
            .final_state_diffs(top, [&mut self.dh, &mut self.dc]);
        self.packed.pack(false, 4 * h, h, &params[whi].data);
        Backward {
            gates: &self.gates,
            cell: &self.cell,
            tanh_c: &self.tanh_c,
            c0: &self.c0,
            cont: &bottom[1].data,
            dtop: &top[0].diff,
            dgates: &mut self.dgates,
            dh: &mut self.dh,
            dc: &mut self.dc,
            w: &self.packed,
            initial_diffs: self.cfg.expose_hidden,
        }
        .run(steps, n, h);
        let grads = ProjectionGrads {
            dpre: &self.dgates,
            hm: &self.hm,
            w_rec: whi,
            dims: self.dims,
            hidden: h,
            width: 4 * h,
        };
        grads.add(down, bottom, params, &mut self.stat_proj);
        self.cfg
            .add_initial_state_diffs(down, bottom, [&self.dh, &self.dc]);
        Ok(())
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn index_bound(&self, bottom: usize, _shapes: &[Vec<usize>]) -> Option<usize> {
        (bottom == 1).then_some(2)
    }
    fn reseed(&mut self, _seed: u64) {
        // The only state across calls is the carried final state: start from zero again.
        self.carry_h.iter_mut().for_each(|v| *v = 0.0);
        self.carry_c.iter_mut().for_each(|v| *v = 0.0);
    }
    fn forward_flops(&self, _: &[&Blob], _: &[&Blob]) -> Option<f64> {
        let d = self.dims;
        let (h, m) = (self.cfg.hidden, (d.t * d.n) as f64);
        let g4 = (4 * h) as f64;
        let stat = d.stat.map_or(0.0, |s| 2.0 * (d.n * s) as f64 * g4);
        Some(2.0 * m * g4 * (self.cfg.input + h) as f64 + stat + 10.0 * m * h as f64)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, check_layer_with, Harness};
    use crate::testing::{GradientChecker, GradientReport};
    use crate::Blob;

    fn yaml(h: usize, expose: bool) -> String {
        format!(
            "type: LSTM\nrecurrent_param: {{ num_output: {h}, expose_hidden: {expose}, weight_filler: {{ type: uniform, min: -0.5, max: 0.5 }}, bias_filler: {{ type: uniform, min: -0.5, max: 0.5 }} }}"
        )
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// The lecture's LSTM, written out per element in f64 with Caffe's gate order (i, f, o, g)
    /// and Caffe's `cont` flush of both h and c. Returns h (T x N x H) and the final (h, c).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        cont: &[f32],
        xs: Option<&[f32]>,
        params: &[Blob],
        (steps, n, inp, s, hid): (usize, usize, usize, usize, usize),
        h0: &[f32],
        c0: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (wx, b) = (&params[0].data, &params[1].data);
        let wh = &params[params.len() - 1].data;
        let mut hs = vec![0.0f64; steps * n * hid];
        let mut h: Vec<f64> = h0.iter().map(|&v| v as f64).collect();
        let mut c: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
        for t in 0..steps {
            let mut hn = vec![0.0; n * hid];
            let mut cnew = vec![0.0; n * hid];
            for j in 0..n {
                let cf = cont[t * n + j] as f64;
                let pre = |row: usize| -> f64 {
                    let mut a = b[row] as f64;
                    for p in 0..inp {
                        a += wx[row * inp + p] as f64 * x[(t * n + j) * inp + p] as f64;
                    }
                    if let Some(xs) = xs {
                        let ws = &params[2].data;
                        for p in 0..s {
                            a += ws[row * s + p] as f64 * xs[j * s + p] as f64;
                        }
                    }
                    for p in 0..hid {
                        a += wh[row * hid + p] as f64 * cf * h[j * hid + p];
                    }
                    a
                };
                for k in 0..hid {
                    let i = sig(pre(k));
                    let f = sig(pre(hid + k));
                    let o = sig(pre(2 * hid + k));
                    let g = pre(3 * hid + k).tanh();
                    let cc = cf * f * c[j * hid + k] + i * g;
                    cnew[j * hid + k] = cc;
                    hn[j * hid + k] = o * cc.tanh();
                }
            }
            hs[t * n * hid..(t + 1) * n * hid].copy_from_slice(&hn);
            h = hn;
            c = cnew;
        }
        (hs, h, c)
    }

    fn wave(len: usize, a: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * a).sin()).collect()
    }

    fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    #[test]
    fn forward_matches_reference_with_static_input() {
        let (steps, n, inp, s, hid) = (4, 3, 2, 3, 5);
        let x = wave(steps * n * inp, 0.7);
        let cont = vec![0., 0., 0., 1., 1., 0., 1., 0., 1., 1., 1., 1.];
        let xs = wave(n * s, 1.3);
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
        assert_eq!(
            shapes,
            vec![vec![20, 2], vec![20], vec![20, 3], vec![20, 5]]
        );
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![steps, n, hid]);
        let zero = vec![0.0; n * hid];
        let dims = (steps, n, inp, s, hid);
        let (hs, hl, cl) = reference(&x, &cont, Some(&xs), &h.params, dims, &zero, &zero);
        assert_close(&h.top[0].data, &f32s(&hs), 1e-5);
        // Second batch: the final states carry over where cont is 1.
        h.bottom[1].data = vec![1., 0., 1., 1., 1., 1., 1., 1., 1., 0., 1., 1.];
        h.forward().unwrap();
        let (h0, c0) = (f32s(&hl), f32s(&cl));
        let (hs2, _, _) = reference(&x, &h.bottom[1].data, Some(&xs), &h.params, dims, &h0, &c0);
        assert_close(&h.top[0].data, &f32s(&hs2), 1e-5);
    }

    #[test]
    fn stream_parts_match_reference() {
        // 17 streams: split into parts that run on separate threads (at least 8 streams each).
        let (steps, n, inp, hid) = (3, 17, 2, 5);
        let x = wave(steps * n * inp, 0.3);
        let cont: Vec<f32> = (0..steps * n)
            .map(|i| ((i * 7) % 3 != 0) as u8 as f32)
            .collect();
        let mut h = Harness::new(
            &yaml(hid, false),
            vec![
                Blob::from_data(&[steps, n, inp], x.clone()).unwrap(),
                Blob::from_data(&[steps, n], cont.clone()).unwrap(),
            ],
        )
        .unwrap();
        h.forward().unwrap();
        let zero = vec![0.0; n * hid];
        let dims = (steps, n, inp, 0, hid);
        let (hs, _, _) = reference(&x, &cont, None, &h.params, dims, &zero, &zero);
        assert_close(&h.top[0].data, &f32s(&hs), 1e-5);
        check(
            &yaml(3, true),
            &[&[2, 17, 2], &[2, 17], &[1, 17, 3], &[1, 17, 3]],
        );
    }

    #[test]
    fn forward_matches_hand_values() {
        // One unit, one input, every weight 0.5, bias 0: a = 0.5 x + 0.5 h_prev.
        let x = Blob::from_data(&[2, 1, 1], vec![1.0, 2.0]).unwrap();
        let cont = Blob::from_data(&[2, 1], vec![0.0, 1.0]).unwrap();
        let mut h = Harness::new(&yaml(1, false), vec![x, cont]).unwrap();
        for p in h.params.iter_mut() {
            p.data.iter_mut().for_each(|v| *v = 0.5);
        }
        h.params[1].data.iter_mut().for_each(|v| *v = 0.0);
        h.forward().unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let c1 = s(0.5) * 0.5f64.tanh();
        let h1 = s(0.5) * c1.tanh();
        let a2 = 0.5 * 2.0 + 0.5 * h1;
        let c2 = s(a2) * c1 + s(a2) * a2.tanh();
        let h2 = s(a2) * c2.tanh();
        assert_close(&h.top[0].data, &[h1 as f32, h2 as f32], 1e-6);
    }

    #[test]
    fn cont_zero_cuts_the_state() {
        // Same inputs from step 2 on; with cont = 0 at step 2 the outputs from there on must
        // not depend on what came before.
        let (steps, n, inp) = (4, 2, 3);
        let mut x = wave(steps * n * inp, 0.9);
        let cont = Blob::from_data(&[steps, n], vec![0., 0., 1., 1., 0., 0., 1., 1.]).unwrap();
        let run = |x: &[f32]| {
            let mut h = Harness::new(
                &yaml(4, false),
                vec![
                    Blob::from_data(&[steps, n, inp], x.to_vec()).unwrap(),
                    cont.clone(),
                ],
            )
            .unwrap();
            h.forward().unwrap();
            h.top[0].data.clone()
        };
        let a = run(&x);
        x[..2 * n * inp]
            .iter_mut()
            .for_each(|v| *v = -3.0 * *v + 1.0);
        let b = run(&x);
        let nh = n * 4;
        assert!((0..2 * nh).any(|i| (a[i] - b[i]).abs() > 1e-3));
        assert_close(&a[2 * nh..], &b[2 * nh..], 0.0);
        // With cont = 1 the change does propagate.
        let mut h = Harness::new(
            &yaml(4, false),
            vec![
                Blob::from_data(&[steps, n, inp], x.clone()).unwrap(),
                Blob::from_data(&[steps, n], vec![0., 0., 1., 1., 1., 1., 1., 1.]).unwrap(),
            ],
        )
        .unwrap();
        h.forward().unwrap();
        assert!((2 * nh..4 * nh).any(|i| (h.top[0].data[i] - b[i]).abs() > 1e-4));
    }

    #[test]
    fn carried_state_is_cut_by_cont_and_reseed() {
        let x = Blob::from_data(&[2, 1, 2], wave(4, 0.5)).unwrap();
        let cont = Blob::from_data(&[2, 1], vec![0.0, 1.0]).unwrap();
        let mut h = Harness::new(&yaml(3, false), vec![x, cont]).unwrap();
        h.forward().unwrap();
        let first = h.top[0].data.clone();
        h.forward().unwrap();
        assert_close(&h.top[0].data, &first, 0.0); // cont = 0 at step 0: carry unused
        h.bottom[1].data = vec![1.0, 1.0];
        h.forward().unwrap();
        assert!((0..3).any(|i| (h.top[0].data[i] - first[i]).abs() > 1e-4));
        h.layer.reseed(0);
        h.forward().unwrap();
        assert_close(&h.top[0].data, &first, 0.0); // zero carry is cont = 0
    }

    #[test]
    fn expose_hidden_tops_are_final_states() {
        let (steps, n, inp, hid) = (3, 2, 2, 3);
        let x = wave(steps * n * inp, 0.4);
        let cont = vec![1.0; steps * n];
        let h0 = wave(n * hid, 2.1);
        let c0 = wave(n * hid, 0.3);
        let mut h = Harness::new(
            &yaml(hid, true),
            vec![
                Blob::from_data(&[steps, n, inp], x.clone()).unwrap(),
                Blob::from_data(&[steps, n], cont.clone()).unwrap(),
                Blob::from_data(&[1, n, hid], h0.clone()).unwrap(),
                Blob::from_data(&[1, n, hid], c0.clone()).unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(h.top.len(), 3);
        h.forward().unwrap();
        let dims = (steps, n, inp, 0, hid);
        let (hs, hl, cl) = reference(&x, &cont, None, &h.params, dims, &h0, &c0);
        assert_close(&h.top[0].data, &f32s(&hs), 1e-5);
        assert_close(&h.top[1].data, &f32s(&hl), 1e-5);
        assert_close(&h.top[2].data, &f32s(&cl), 1e-5);
        assert_eq!(h.top[2].shape, vec![1, n, hid]);
    }

    fn check(yaml: &str, shapes: &[&[usize]]) -> GradientReport {
        check_layer_with(
            yaml,
            shapes,
            &GradientChecker {
                max_per_blob: Some(40),
                ..Default::default()
            },
        )
    }

    #[test]
    fn gradients() {
        // Random 0/1 cont (index bound 2) resets streams in mid-sequence.
        check_layer_from(&yaml(3, false), &[&[4, 2, 2], &[4, 2]]);
        check(&yaml(4, false), &[&[5, 3, 2, 2], &[5, 3]]);
    }

    #[test]
    fn gradients_static_input_and_expose_hidden() {
        check(&yaml(3, false), &[&[3, 2, 2], &[3, 2], &[2, 3]]);
        check(
            &yaml(3, true),
            &[&[4, 2, 2], &[4, 2], &[2, 2], &[1, 2, 3], &[1, 2, 3]],
        );
        check(
            &yaml(2, true),
            &[&[3, 3, 2], &[3, 3], &[1, 3, 2], &[1, 3, 2]],
        );
    }

    #[test]
    fn shape_errors() {
        let bad = Harness::new(
            &yaml(3, false),
            vec![Blob::new(&[4, 2, 2]), Blob::new(&[4, 3])],
        );
        assert!(crate::testing::err_text(bad).contains("cont"));
        let bad = Harness::new(
            &yaml(3, true),
            vec![
                Blob::new(&[4, 2, 2]),
                Blob::new(&[4, 2]),
                Blob::new(&[1, 2, 3]),
                Blob::new(&[1, 2, 2]),
            ],
        );
        assert!(crate::testing::err_text(bad).contains("initial state"));
    }
}
