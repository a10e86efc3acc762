//! `Deconvolution`: transposed N-D convolution (the data-gradient of a convolution run as a
//! forward pass), Caffe's semantics. Weight `[C_in, num_output/group, k...]`, bias
//! `[num_output]`; output size `stride*(in-1) + dilation*(k-1) + 1 - 2*pad`. With the
//! `bilinear` weight filler, `group: C` and `bias_term: false` it is FCN's upsampling layer.

use super::base_conv::ConvLayer;
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// Creates `Deconvolution` from `convolution_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    ConvLayer::create(p, true)
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    /// Direct transposed convolution: every input pixel scatters `x * w` into the output.
    #[allow(clippy::too_many_arguments)]
    fn naive_deconv(
        x: &[f32],
        [n, c, h, wd]: [usize; 4],
        w: &[f32],
        m: usize,
        k: usize,
        s: usize,
        p: usize,
        d: usize,
        g: usize,
    ) -> (Vec<f32>, [usize; 4]) {
        let oh = s * (h - 1) + d * (k - 1) + 1 - 2 * p;
        let ow = s * (wd - 1) + d * (k - 1) + 1 - 2 * p;
        let (cg, mg) = (c / g, m / g);
        let mut y = vec![0.0; n * m * oh * ow];
        for i in 0..n {
            for ci in 0..c {
                let grp = ci / cg;
                for iy in 0..h {
                    for ix in 0..wd {
                        let v = x[((i * c + ci) * h + iy) * wd + ix];
                        for mo in 0..mg {
                            let o = grp * mg + mo;
                            for ky in 0..k {
                                for kx in 0..k {
                                    let oy = (iy * s + ky * d) as isize - p as isize;
                                    let ox = (ix * s + kx * d) as isize - p as isize;
                                    if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                        continue;
                                    }
                                    y[((i * m + o) * oh + oy as usize) * ow + ox as usize] +=
                                        v * w[((ci * mg + mo) * k + ky) * k + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, [n, m, oh, ow])
    }

    #[test]
    fn forward_matches_direct_transposed_convolution() {
        for &(shape, m, k, s, p, d, g) in &[
            ([2, 3, 4, 5], 2, 3, 2, 1, 1, 1),
            ([1, 4, 3, 3], 6, 2, 1, 0, 2, 2),
            ([2, 2, 5, 4], 4, 1, 1, 0, 1, 1),
        ] {
            let yaml = format!("type: Deconvolution\nconvolution_param: {{ num_output: {m}, kernel_size: {k}, stride: {s}, pad: {p}, dilation: {d}, group: {g}, weight_filler: {{ type: gaussian }}, bias_term: false }}");
            let n: usize = shape.iter().product();
            let x =
                Blob::from_data(&shape, (0..n).map(|i| (i as f32 * 0.41).cos()).collect()).unwrap();
            let mut h = Harness::new(&yaml, vec![x]).unwrap();
            h.forward().unwrap();
            let (e, es) = naive_deconv(
                &h.bottom[0].data,
                shape,
                &h.params[0].data,
                m,
                k,
                s,
                p,
                d,
                g,
            );
            assert_eq!(h.top[0].shape, es.to_vec());
            assert_eq!(h.params[0].shape, vec![shape[1], m / g, k, k]);
            assert_close(&h.top[0].data, &e, 1e-4);
        }
    }

    #[test]
    fn bilinear_upsampling_doubles_size_and_keeps_constants() {
        // FCN-style 2x upsampling: kernel 4, stride 2, pad 1, one group per channel.
        let x = Blob::from_data(&[1, 2, 3, 3], [vec![1.0; 9], vec![2.0; 9]].concat()).unwrap();
        let mut h = Harness::new(
            "type: Deconvolution\nconvolution_param: { num_output: 2, group: 2, kernel_size: 4, stride: 2, pad: 1, bias_term: false, weight_filler: { type: bilinear } }",
            vec![x],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![1, 2, 6, 6]);
        // Interior pixels of a constant image stay constant.
        let t = &h.top[0].data;
        for y in 1..5 {
            for x in 1..5 {
                assert!((t[y * 6 + x] - 1.0).abs() < 1e-5);
                assert!((t[36 + y * 6 + x] - 2.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: Deconvolution\nconvolution_param: { num_output: 3, kernel_size: 3, stride: 2, pad: 1, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[2, 2, 3, 4]],
        );
        check_layer_from(
            "type: Deconvolution\nconvolution_param: { num_output: 4, kernel_h: 2, kernel_w: 3, group: 2, dilation: 2, weight_filler: { type: gaussian }, bias_filler: { type: gaussian } }",
            &[&[1, 4, 3, 3]],
        );
    }
}
