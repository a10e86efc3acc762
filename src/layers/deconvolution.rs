//! `Deconvolution`: transposed 2-D convolution (the data-gradient of a convolution run as a
//! forward pass), Caffe's semantics. Weight `[C_in, num_output/group, kh, kw]`, bias
//! `[num_output]`; output size `stride*(in-1) + dilation*(k-1) + 1 - 2*pad`. With the
//! `bilinear` weight filler, `group: C` and `bias_term: false` it is FCN's upsampling layer.

use super::base_conv::{bias_backward, bias_forward, ConvEngine, ConvSpec};
use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Deconvolution` layer.
pub struct Deconvolution {
    spec: ConvSpec,
    channels: usize,
    engine: Option<ConvEngine>,
}

/// Creates `Deconvolution` from `convolution_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let cp = p.convolution_param.clone().unwrap_or_default();
    Ok(Box::new(Deconvolution {
        spec: ConvSpec::parse(&cp, true)?,
        channels: 0,
        engine: None,
    }))
}

impl Layer for Deconvolution {
    fn type_name(&self) -> &'static str {
        "Deconvolution"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let (g, num_output, [kh, kw]) = (self.spec.group, self.spec.num_output, self.spec.kernel);
        let (c, params) =
            self.spec
                .make_params(bottom[0], |c| [c, num_output / g, kh, kw], ctx.rng)?;
        self.channels = c;
        Ok(params)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (axis, num, c, h, w) = self.spec.split_shape(bottom[0])?;
        crate::ensure!(
            c == self.channels,
            "input channels changed from {} to {c} (bottom {})",
            self.channels,
            bottom[0].shape_string()
        );
        let s = &self.spec;
        let mut out = [0usize; 2];
        for (i, n) in [h, w].into_iter().enumerate() {
            let full = s.stride[i] * n.saturating_sub(1) + s.dilation[i] * (s.kernel[i] - 1) + 1;
            crate::ensure!(
                n > 0 && full > 2 * s.pad[i],
                "deconvolution output would be empty: input {n}, pad {}",
                s.pad[i]
            );
            out[i] = full - 2 * s.pad[i];
        }
        let geom = s.geom(s.num_output, out[0], out[1]);
        debug_assert_eq!((geom.out_h(), geom.out_w()), (h, w));
        let mut shape = bottom[0].shape[..axis].to_vec();
        shape.extend([s.num_output, out[0], out[1]]);
        top[0].reshape(&shape);
        self.engine = Some(ConvEngine {
            geom,
            co: c,
            group: s.group,
            num,
        });
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let Some(e) = self.engine else {
            crate::bail!("Deconvolution forward before reshape");
        };
        let y = &mut top[0].data;
        e.deconv_forward(&bottom[0].data, &params[0].data, y);
        if self.spec.bias_term {
            let plane = e.geom.height * e.geom.width;
            bias_forward(&params[1].data, e.num, e.geom.channels, plane, y);
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let Some(e) = self.engine else {
            crate::bail!("Deconvolution backward before reshape");
        };
        let dy = &top[0].diff;
        if self.spec.bias_term {
            let plane = e.geom.height * e.geom.width;
            bias_backward(dy, e.num, e.geom.channels, plane, &mut params[1].diff);
        }
        let w = &mut *params[0];
        let b = &mut *bottom[0];
        let dx = if down[0] {
            Some(b.diff.as_mut_slice())
        } else {
            None
        };
        e.deconv_backward(dy, &b.data, &w.data, Some(&mut w.diff), dx);
        Ok(())
    }
    fn forward_flops(&self, _: &[&Blob], _: &[&Blob]) -> Option<f64> {
        let e = self.engine?;
        let k = (e.geom.col_rows() / e.group) as f64;
        Some(2.0 * e.num as f64 * e.co as f64 * e.geom.col_cols() as f64 * k)
    }
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
