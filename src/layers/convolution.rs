//! `Convolution`: N-D convolution as im2col + GEMM (Caffe's semantics: kernel, stride, pad,
//! dilation with one value for all spatial axes or one per axis, group, bias_term, axis;
//! `num_spatial_axes = num_axes - axis - 1`). Weight `[num_output, C/group, k...]`, bias
//! `[num_output]`. Two spatial axes run on [`super::conv_engine`] (batching, the 1x1 fast path,
//! Winograd); any other number (1-D, 3-D, ...) on [`super::conv_nd`].

use super::base_conv::ConvLayer;
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// Creates `Convolution` from `convolution_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    ConvLayer::create(p, false)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    /// Direct convolution (7 nested loops), the oracle. `x` is `n x c x h x w`, `w` is
    /// `m x c/g x kh x kw`. Returns the output and its shape.
    #[allow(clippy::too_many_arguments)]
    pub fn naive_conv(
        x: &[f32],
        [n, c, h, wd]: [usize; 4],
        w: &[f32],
        b: Option<&[f32]>,
        m: usize,
        [kh, kw]: [usize; 2],
        [sh, sw]: [usize; 2],
        [ph, pw]: [usize; 2],
        [dh, dw]: [usize; 2],
        g: usize,
    ) -> (Vec<f32>, [usize; 4]) {
        let oh = (h + 2 * ph - (dh * (kh - 1) + 1)) / sh + 1;
        let ow = (wd + 2 * pw - (dw * (kw - 1) + 1)) / sw + 1;
        let (cg, mg) = (c / g, m / g);
        let mut y = vec![0.0; n * m * oh * ow];
        for i in 0..n {
            for o in 0..m {
                let grp = o / mg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = b.map_or(0.0, |b| b[o]);
                        for ci in 0..cg {
                            let cin = grp * cg + ci;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * sh + ky * dh) as isize - ph as isize;
                                    let ix = (ox * sw + kx * dw) as isize - pw as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    s += x[((i * c + cin) * h + iy as usize) * wd + ix as usize]
                                        * w[((o * cg + ci) * kh + ky) * kw + kx];
                                }
                            }
                        }
                        y[((i * m + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        (y, [n, m, oh, ow])
    }

    fn input(shape: [usize; 4]) -> Blob {
        let count = shape.iter().product();
        Blob::from_data(
            &shape,
            (0..count).map(|i| (i as f32 * 0.731).sin()).collect(),
        )
        .unwrap()
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn forward_matches_direct_convolution() {
        // (shape, m, kernel, stride, pad, dilation, group)
        let cases: &[(
            [usize; 4],
            usize,
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            usize,
        )] = &[
            ([2, 3, 7, 5], 4, [3, 3], [1, 1], [0, 0], [1, 1], 1),
            ([2, 4, 9, 7], 6, [3, 2], [2, 1], [1, 2], [1, 1], 2),
            ([1, 6, 11, 10], 3, [3, 3], [2, 3], [2, 1], [2, 2], 3),
            ([3, 4, 5, 5], 8, [1, 1], [1, 1], [0, 0], [1, 1], 1),
            ([2, 4, 6, 6], 4, [1, 1], [1, 1], [0, 0], [1, 1], 4),
            ([1, 2, 8, 8], 2, [1, 1], [2, 2], [1, 1], [1, 1], 1),
            // LeNet's conv2: 8-wide output rows, two to a register tile.
            ([3, 20, 12, 12], 50, [5, 5], [1, 1], [0, 0], [1, 1], 1),
            // Winograd F(4x4, 3x3) (wide enough, stride 1), with and without groups.
            ([3, 16, 7, 9], 17, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            ([2, 32, 6, 5], 32, [3, 3], [1, 1], [2, 2], [1, 1], 2),
        ];
        for &(shape, m, k, s, p, d, g) in cases {
            let yaml = format!(
                "type: Convolution\nconvolution_param: {{ num_output: {m}, kernel_h: {}, kernel_w: {}, stride_h: {}, stride_w: {}, pad_h: {}, pad_w: {}, dilation: [{}, {}], group: {g}, weight_filler: {{ type: gaussian }}, bias_filler: {{ type: gaussian }} }}",
                k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]
            );
            let mut h = Harness::new(&yaml, vec![input(shape)]).unwrap();
            h.forward().unwrap();
            let (e, es) = naive_conv(
                &h.bottom[0].data,
                shape,
                &h.params[0].data,
                Some(&h.params[1].data),
                m,
                k,
                s,
                p,
                d,
                g,
            );
            assert_eq!(h.top[0].shape, es.to_vec(), "{yaml}");
            assert_close(&h.top[0].data, &e, 1e-4);
        }
    }

    #[test]
    fn shapes_and_errors() {
        let h = Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 5, kernel_size: 3, stride: 2, pad: 1 }",
            vec![Blob::new(&[2, 3, 9, 8])],
        )
        .unwrap();
        assert_eq!(h.top[0].shape, vec![2, 5, 5, 4]);
        assert_eq!(h.params[0].shape, vec![5, 3, 3, 3]);
        assert_eq!(h.params[1].shape, vec![5]);
        let h = Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_size: [3, 1], dilation: 2, group: 2, bias_term: false }",
            vec![Blob::new(&[1, 6, 7, 4])],
        )
        .unwrap();
        assert_eq!(h.top[0].shape, vec![1, 4, 3, 4]);
        assert_eq!(h.params.len(), 1);
        assert_eq!(h.params[0].shape, vec![4, 3, 3, 1]);
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_size: 3, group: 2 }",
            vec![Blob::new(&[1, 3, 7, 4])],
        ));
        assert!(e.contains("divisible by group"), "{e}");
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 4 }",
            vec![Blob::new(&[1, 3, 7, 4])],
        ));
        assert!(e.contains("kernel"), "{e}");
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_size: 9 }",
            vec![Blob::new(&[1, 3, 7, 4])],
        ));
        assert!(e.contains("smaller than"), "{e}");
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_size: 3, kernel_h: 2, kernel_w: 2 }",
            vec![Blob::new(&[1, 3, 7, 4])],
        ));
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn axis_and_flops() {
        let mut x = input([2, 3, 2, 4]);
        x.shape = vec![2, 3, 2, 4, 1];
        let e = err_text(Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_size: 2 }",
            vec![x.clone()],
        ));
        // 3 spatial axes (2, 4, 1): the N-D path, whose last axis is too small for kernel 2.
        assert!(
            e.contains(
                "input spatial axis 2 1 (+2x pad 0) is smaller than the dilated kernel extent 2"
            ),
            "{e}"
        );
        let mut h = Harness::new(
            "type: Convolution\nconvolution_param: { num_output: 2, kernel_h: 2, kernel_w: 1, axis: 2, bias_term: false, weight_filler: { type: gaussian } }",
            vec![x.clone()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 3, 2, 3, 1]);
        let (e, _) = naive_conv(
            &x.data,
            [6, 2, 4, 1],
            &h.params[0].data,
            None,
            2,
            [2, 1],
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        );
        assert_close(&h.top[0].data, &e, 1e-5);
        let refs: Vec<&Blob> = h.bottom.iter().collect();
        let tops: Vec<&Blob> = h.top.iter().collect();
        assert_eq!(
            h.layer.forward_flops(&refs, &tops),
            Some(2.0 * 6.0 * 2.0 * 3.0 * 4.0)
        );
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Convolution\nconvolution_param: { num_output: 3, kernel_size: 3, stride: 2, pad: 1, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[2, 2, 5, 6]],
        );
        check_layer_from(
            "type: Convolution\nconvolution_param: { num_output: 4, kernel_h: 2, kernel_w: 3, dilation: 2, group: 2, pad_h: 1, pad_w: 0, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[2, 4, 6, 7]],
        );
        check_layer_from(
            "type: Convolution\nconvolution_param: { num_output: 3, kernel_size: 1, bias_term: false, weight_filler: { type: gaussian } }",
            &[&[2, 4, 3, 3]],
        );
    }
}
