//! The general N-D im2col + GEMM engine (Caffe's `im2col_nd` path), used by Convolution and
//! Deconvolution when the bottom has other than 2 spatial axes (1-D over `N x C x L`, 3-D over
//! `N x C x D x H x W`, ...). Same roles as [`super::conv_engine::ConvEngine`]: the "data" side
//! is the side im2col reads (a convolution's bottom, a deconvolution's top), `geom` describes one
//! of its images; the "out" side has `co` channels and `geom.col_cols()` positions per image;
//! weights are `co x (K/group)` with `K = geom.col_rows()`. One image per GEMM, one group at a
//! time, like Caffe; the 2-D engine's batching and Winograd stay on the 4-D path.

use crate::math::im2col_nd::{col2im_nd_add, im2col_nd, NdGeom};
use crate::math::{self};

/// Im2col_nd + GEMM for one layer.
#[derive(Debug, Clone)]
pub struct NdEngine {
    pub geom: NdGeom,
    pub co: usize,
    pub group: usize,
    pub num: usize,
}

impl NdEngine {
    fn k(&self) -> usize {
        self.geom.col_rows()
    }
    /// Positions per image on the out side.
    pub fn p(&self) -> usize {
        self.geom.col_cols()
    }
    fn data_len(&self) -> usize {
        self.geom.image_len()
    }
    fn out_len(&self) -> usize {
        self.co * self.p()
    }

    /// `out[g] = W[g] * col[g] + beta * out[g]` for every group.
    fn gemm_w_col(&self, w: &[f32], col: &[f32], beta: f32, out: &mut [f32]) {
        let (kg, cg, p) = (self.k() / self.group, self.co / self.group, self.p());
        for g in 0..self.group {
            let (a, b, c) = (
                &w[g * cg * kg..],
                &col[g * kg * p..],
                &mut out[g * cg * p..],
            );
            math::gemm(false, false, cg, p, kg, 1.0, a, b, beta, c);
        }
    }

    /// `col[g] = W[g]^T * out[g]`.
    fn gemm_wt_out(&self, w: &[f32], out: &[f32], col: &mut [f32]) {
        let (kg, cg, p) = (self.k() / self.group, self.co / self.group, self.p());
        for g in 0..self.group {
            let (a, b, c) = (
                &w[g * cg * kg..],
                &out[g * cg * p..],
                &mut col[g * kg * p..],
            );
            math::gemm(true, false, kg, p, cg, 1.0, a, b, 0.0, c);
        }
    }

    /// `dW[g] += out[g] * col[g]^T`.
    fn gemm_dw(&self, out: &[f32], col: &[f32], dw: &mut [f32]) {
        let (kg, cg, p) = (self.k() / self.group, self.co / self.group, self.p());
        for g in 0..self.group {
            let (a, b, c) = (
                &out[g * cg * p..],
                &col[g * kg * p..],
                &mut dw[g * cg * kg..],
            );
            math::gemm(false, true, cg, kg, p, 1.0, a, b, 1.0, c);
        }
    }

    /// Runs `f(image, col)` for every image with a column buffer of the right size.
    fn each(&self, mut f: impl FnMut(usize, &mut [f32])) {
        if self.data_len() == 0 || self.out_len() == 0 {
            return;
        }
        let mut col = vec![0.0; self.k() * self.p()];
        for n in 0..self.num {
            f(n, &mut col);
        }
    }

    /// Convolution forward: `out = conv(data, W) + bias`.
    pub fn conv_forward(&self, data: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let (dl, ol, p) = (self.data_len(), self.out_len(), self.p());
        self.each(|n, col| {
            im2col_nd(&data[n * dl..(n + 1) * dl], &self.geom, col);
            let o = &mut out[n * ol..(n + 1) * ol];
            self.gemm_w_col(w, col, 0.0, o);
            if let Some(b) = bias {
                for (plane, b) in o.chunks_mut(p).zip(b) {
                    plane.iter_mut().for_each(|v| *v += b);
                }
            }
        });
    }

    /// Convolution backward: `dW += dout (x) im2col(data)`, `ddata += col2im(W^T dout)`.
    pub fn conv_backward(
        &self,
        dout: &[f32],
        data: &[f32],
        w: &[f32],
        mut dw: Option<&mut [f32]>,
        mut ddata: Option<&mut [f32]>,
    ) {
        let (dl, ol) = (self.data_len(), self.out_len());
        self.each(|n, col| {
            let dy = &dout[n * ol..(n + 1) * ol];
            if let Some(dw) = dw.as_deref_mut() {
                im2col_nd(&data[n * dl..(n + 1) * dl], &self.geom, col);
                self.gemm_dw(dy, col, dw);
            }
            if let Some(dd) = ddata.as_deref_mut() {
                self.gemm_wt_out(w, dy, col);
                col2im_nd_add(col, &self.geom, &mut dd[n * dl..(n + 1) * dl]);
            }
        });
    }

    /// Deconvolution forward: `data = col2im(W^T out)` (the bias is added by the layer).
    pub fn deconv_forward(&self, out: &[f32], w: &[f32], data: &mut [f32]) {
        data.fill(0.0);
        let (dl, ol) = (self.data_len(), self.out_len());
        self.each(|n, col| {
            self.gemm_wt_out(w, &out[n * ol..(n + 1) * ol], col);
            col2im_nd_add(col, &self.geom, &mut data[n * dl..(n + 1) * dl]);
        });
    }

    /// Deconvolution backward: `dW += out (x) im2col(ddata)`, `dout += W im2col(ddata)`.
    pub fn deconv_backward(
        &self,
        ddata: &[f32],
        out: &[f32],
        w: &[f32],
        mut dw: Option<&mut [f32]>,
        mut dout: Option<&mut [f32]>,
    ) {
        let (dl, ol) = (self.data_len(), self.out_len());
        self.each(|n, col| {
            im2col_nd(&ddata[n * dl..(n + 1) * dl], &self.geom, col);
            if let Some(dw) = dw.as_deref_mut() {
                self.gemm_dw(&out[n * ol..(n + 1) * ol], col, dw);
            }
            if let Some(dx) = dout.as_deref_mut() {
                self.gemm_w_col(w, col, 1.0, &mut dx[n * ol..(n + 1) * ol]);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    /// Row-major multi-index of `i` in `shape`.
    fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut idx = vec![0; shape.len()];
        for a in (0..shape.len()).rev() {
            idx[a] = i % shape[a];
            i /= shape[a];
        }
        idx
    }

    /// Direct N-D convolution in f64, the oracle. `x` is `n x c x dims`, `w` is
    /// `m x c/g x k`; every per-axis list has one value per spatial axis.
    #[allow(clippy::too_many_arguments)]
    fn naive_nd(
        x: &[f32],
        (n, c, dims): (usize, usize, &[usize]),
        w: &[f32],
        b: Option<&[f32]>,
        m: usize,
        (k, s, p, d): (&[usize], &[usize], &[usize], &[usize]),
        g: usize,
    ) -> (Vec<f32>, Vec<usize>) {
        let na = dims.len();
        let out: Vec<usize> = (0..na)
            .map(|a| (dims[a] + 2 * p[a] - (d[a] * (k[a] - 1) + 1)) / s[a] + 1)
            .collect();
        let (plane, oplane, kvol) = (
            dims.iter().product::<usize>(),
            out.iter().product::<usize>(),
            k.iter().product::<usize>(),
        );
        let (cg, mg) = (c / g, m / g);
        let mut y = vec![0.0f32; n * m * oplane];
        for i in 0..n {
            for o in 0..m {
                let grp = o / mg;
                for op in 0..oplane {
                    let oi = unravel(op, &out);
                    let mut acc = b.map_or(0.0, |b| f64::from(b[o]));
                    for ci in 0..cg {
                        let cin = grp * cg + ci;
                        'taps: for kp in 0..kvol {
                            let ki = unravel(kp, k);
                            let mut at = 0usize;
                            for a in 0..na {
                                let pos = (oi[a] * s[a] + ki[a] * d[a]) as isize - p[a] as isize;
                                if pos < 0 || pos >= dims[a] as isize {
                                    continue 'taps;
                                }
                                at = at * dims[a] + pos as usize;
                            }
                            acc += f64::from(x[(i * c + cin) * plane + at])
                                * f64::from(w[(o * cg + ci) * kvol + kp]);
                        }
                    }
                    y[(i * m + o) * oplane + op] = acc as f32;
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend(out);
        (y, shape)
    }

    fn input(shape: &[usize]) -> Blob {
        let count = shape.iter().product();
        Blob::from_data(
            shape,
            (0..count).map(|i| (i as f32 * 0.731).sin()).collect(),
        )
        .unwrap()
    }

    fn list(v: &[usize]) -> String {
        let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        format!("[{}]", s.join(", "))
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn forward_matches_direct_nd_convolution() {
        // (input shape, m, kernel, stride, pad, dilation, group, bias)
        let cases: &[(
            &[usize],
            usize,
            &[usize],
            &[usize],
            &[usize],
            &[usize],
            usize,
            bool,
        )] = &[
            // 3-D, batch 2, 3x3x3 kernel, per-axis stride/pad/dilation, groups.
            (
                &[2, 4, 5, 6, 7],
                6,
                &[3, 3, 3],
                &[1, 2, 1],
                &[1, 0, 2],
                &[1, 1, 2],
                2,
                true,
            ),
            // 3-D, batch 3, 2x3x1 kernel, stride 2 and pad 1 for every axis.
            (&[3, 2, 5, 4, 6], 3, &[2, 3, 1], &[2], &[1], &[1], 1, true),
            // 3-D, batch 1, one kernel size for all axes, no bias.
            (&[1, 3, 4, 5, 6], 2, &[3], &[1], &[1], &[1], 1, false),
            // 1-D over N x C x L: stride, pad, dilation, groups.
            (&[3, 4, 11], 6, &[3], &[2], &[1], &[2], 2, true),
            // 1-D, 1x1 kernel.
            (&[2, 3, 5], 4, &[1], &[1], &[0], &[1], 1, true),
        ];
        for &(shape, m, k, s, p, d, g, bias) in cases {
            let yaml = format!(
                "type: Convolution\nconvolution_param: {{ num_output: {m}, kernel_size: {}, stride: {}, pad: {}, dilation: {}, group: {g}, bias_term: {bias}, weight_filler: {{ type: gaussian }}, bias_filler: {{ type: gaussian }} }}",
                list(k), list(s), list(p), list(d)
            );
            let mut h = Harness::new(&yaml, vec![input(shape)]).unwrap();
            h.forward().unwrap();
            let na = shape.len() - 2;
            let full = |v: &[usize]| {
                if v.len() == 1 {
                    vec![v[0]; na]
                } else {
                    v.to_vec()
                }
            };
            let mut wshape = vec![m, shape[1] / g];
            wshape.extend(full(k));
            assert_eq!(h.params[0].shape, wshape, "{yaml}");
            let (e, es) = naive_nd(
                &h.bottom[0].data,
                (shape[0], shape[1], &shape[2..]),
                &h.params[0].data,
                bias.then(|| h.params[1].data.as_slice()),
                m,
                (&full(k), &full(s), &full(p), &full(d)),
                g,
            );
            assert_eq!(h.top[0].shape, es, "{yaml}");
            assert_close(&h.top[0].data, &e, 1e-4);
        }
    }

    /// `axis: 2` over a 4-D blob: 2x3 items of 4 channels, 1 spatial axis of 9.
    #[test]
    fn channel_axis_other_than_one() {
        let x = input(&[2, 3, 4, 9]);
        let mut h = Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 5, kernel_size: 4, stride: 2, pad: 1, axis: 2, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            vec![x.clone()],
        )
        .unwrap();
        h.forward().unwrap();
        // (9 + 2 - 4) / 2 + 1 = 4
        assert_eq!(h.top[0].shape, vec![2, 3, 5, 4]);
        let (e, _) = naive_nd(
            &x.data,
            (6, 4, &[9]),
            &h.params[0].data,
            Some(&h.params[1].data),
            5,
            (&[4], &[2], &[1], &[1]),
            1,
        );
        assert_close(&h.top[0].data, &e, 1e-4);
    }

    /// Deconvolution is the adjoint of convolution with the same weights:
    /// `<deconv(y), x> = <y, conv(x)>`; its output size is `s*(in-1) + d*(k-1) + 1 - 2p`.
    #[test]
    fn deconvolution_is_the_adjoint_of_convolution() {
        let p = "num_output: 4, kernel_size: [3, 2, 3], stride: [2, 1, 2], pad: [1, 0, 1], dilation: [1, 2, 1], group: 2, bias_term: false, weight_filler: { type: gaussian }";
        let x = input(&[2, 6, 5, 6, 7]);
        let mut conv = Harness::new(
            &format!("type: Convolution\nconvolution_param: {{ {p} }}"),
            vec![x.clone()],
        )
        .unwrap();
        conv.forward().unwrap();
        // Conv output: (5+2-3)/2+1 = 3, (6-3)/1+1 = 4, (7+2-3)/2+1 = 4.
        assert_eq!(conv.top[0].shape, vec![2, 4, 3, 4, 4]);
        let ys = conv.top[0].shape.clone();
        let y = Blob::from_data(
            &ys,
            (0..ys.iter().product::<usize>())
                .map(|i| (i as f32 * 0.37).cos())
                .collect(),
        )
        .unwrap();
        // The deconvolution from 4 to 6 channels takes the conv weight [4, 3, k] as its own
        // [C_in = 4, num_output / group = 3, k].
        let q = p.replace("num_output: 4", "num_output: 6");
        let mut de = Harness::new(
            &format!("type: Deconvolution\nconvolution_param: {{ {q} }}"),
            vec![y.clone()],
        )
        .unwrap();
        assert_eq!(de.params[0].shape, conv.params[0].shape);
        de.params[0].data = conv.params[0].data.clone();
        de.forward().unwrap();
        // s*(in-1) + d*(k-1) + 1 - 2p: 2*2+2+1-2 = 5, 1*3+2*1+1 = 6, 2*3+2+1-2 = 7.
        assert_eq!(de.top[0].shape, x.shape);
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum()
        };
        let (l, r) = (
            dot(&de.top[0].data, &x.data),
            dot(&y.data, &conv.top[0].data),
        );
        assert!((l - r).abs() < 1e-3 * r.abs().max(1.0), "{l} vs {r}");
    }

    #[test]
    fn nd_shapes_and_errors() {
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_size: 4 }",
            vec![Blob::new(&[1, 2, 3, 5, 5])],
        ));
        assert!(
            e.contains("spatial axis 0 3 (+2x pad 0) is smaller than the dilated kernel extent 4"),
            "{e}"
        );
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_size: 3, dilation: [1, 1, 3] }",
            vec![Blob::new(&[1, 2, 5, 5, 6])],
        ));
        assert!(e.contains("spatial axis 2 6"), "{e}");
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_size: [3, 3] }",
            vec![Blob::new(&[1, 2, 5, 5, 5])],
        ));
        assert!(
            e.contains("kernel_size has 2 values; give 1 or one per spatial axis (3)"),
            "{e}"
        );
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_h: 3, kernel_w: 3 }",
            vec![Blob::new(&[1, 2, 5, 5, 5])],
        ));
        assert!(e.contains("need 2 spatial axes; this bottom has 3"), "{e}");
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_size: 1 }",
            vec![Blob::new(&[4, 2])],
        ));
        assert!(e.contains("at least 1 spatial axis"), "{e}");
        let e = err_text(Harness::new(
            "type: Deconvolution\nconvolution_param: { num_output: 2, kernel_size: 1, pad: 1 }",
            vec![Blob::new(&[1, 2, 1, 3, 3])],
        ));
        assert!(e.contains("deconvolution output would be empty"), "{e}");
        // Weight [num_output, C/group, kD, kH, kW] and a 4-axis kernel on a 6-D blob.
        let h = Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_size: [2, 1, 3, 2], group: 2 }",
            vec![Blob::new(&[1, 2, 3, 2, 4, 5])],
        )
        .unwrap();
        assert_eq!(h.params[0].shape, vec![4, 1, 2, 1, 3, 2]);
        assert_eq!(h.top[0].shape, vec![1, 4, 2, 2, 2, 4]);
    }

    #[test]
    fn nd_gradients() {
        check_layer_from(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_size: [3, 2, 2], stride: [2, 1, 1], pad: [1, 0, 1], dilation: [1, 2, 1], group: 2, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[2, 2, 4, 5, 3]],
        );
        check_layer_from(
            "type: Convolution\nconvolution_param: { num_output: 3, kernel_size: 3, stride: 2, pad: 1, dilation: 2, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[3, 2, 7]],
        );
        check_layer_from(
            "type: Deconvolution\nconvolution_param: { num_output: 4, kernel_size: [2, 3, 2], stride: [2, 1, 2], pad: [0, 1, 1], group: 2, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[2, 2, 2, 3, 3]],
        );
    }
}
