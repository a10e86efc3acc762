//! What Convolution and Deconvolution share (Caffe's `BaseConvolutionLayer`): reading
//! `convolution_param` (also used by Im2col) and the layer itself, whose direction is a flag;
//! the arithmetic is [`super::conv_engine::ConvEngine`].

use super::conv_engine::ConvEngine;
use super::{BlobCounts, Layer, SetupCtx};
use crate::math::im2col::ConvGeom;
use crate::math::winograd::{WeightCache, WinoConv};
use crate::proto::{ConvolutionParameter, FillerParameter, LayerParameter};
use crate::{Blob, Result};

/// `convolution_param`, validated (2-D).
#[derive(Debug, Clone)]
pub struct ConvSpec {
    pub num_output: usize,
    pub bias_term: bool,
    pub group: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub axis: i32,
    pub weight_filler: FillerParameter,
    pub bias_filler: FillerParameter,
}

impl ConvSpec {
    /// Checks the input channels against `group` and creates the filled weight (of shape
    /// `[lead, c / group or num_output / group, kh, kw]`, as `weight_shape` says) and bias.
    /// Shared by Convolution and Deconvolution; returns `(channels, params)`.
    pub fn make_params(
        &self,
        bottom: &Blob,
        weight_shape: impl Fn(usize) -> [usize; 4],
        rng: &mut rand::rngs::StdRng,
    ) -> Result<(usize, Vec<Blob>)> {
        let (_, _, c, _, _) = self.split_shape(bottom)?;
        let g = self.group;
        crate::ensure!(
            c % g == 0,
            "input channels ({c}) must be divisible by group ({g})"
        );
        let mut w = Blob::new(&weight_shape(c));
        crate::filler::fill(&self.weight_filler, &mut w, rng)?;
        let mut params = vec![w];
        if self.bias_term {
            let mut b = Blob::new(&[self.num_output]);
            crate::filler::fill(&self.bias_filler, &mut b, rng)?;
            params.push(b);
        }
        Ok((c, params))
    }
}

/// One value per spatial axis from a repeated field (0, 1 or 2 values) or the `_h`/`_w` pair.
fn per_dim(
    name: &str,
    list: &[u32],
    hw: Option<(Option<u32>, Option<u32>)>,
    default: usize,
) -> Result<[usize; 2]> {
    if let Some((h, w)) = hw {
        if h.is_some() || w.is_some() {
            crate::ensure!(
                list.is_empty(),
                "either {name} or {name}_h/{name}_w should be specified, not both"
            );
            crate::ensure!(
                h.is_some() && w.is_some(),
                "{name}_h and {name}_w must both be given"
            );
            return Ok([h.unwrap_or(0) as usize, w.unwrap_or(0) as usize]);
        }
    }
    match list {
        [] => Ok([default; 2]),
        [v] => Ok([*v as usize; 2]),
        [a, b] => Ok([*a as usize, *b as usize]),
        _ => crate::bail!(
            "{name} has {} values; give 1 or one per spatial axis (2)",
            list.len()
        ),
    }
}

impl ConvSpec {
    /// Reads and checks `convolution_param`; `need_output` is false for Im2col.
    pub fn parse(p: &ConvolutionParameter, need_output: bool) -> Result<ConvSpec> {
        let kernel = per_dim("kernel", &p.kernel_size, Some((p.kernel_h, p.kernel_w)), 0)?;
        crate::ensure!(
            kernel[0] > 0 && kernel[1] > 0,
            "convolution_param needs kernel_size (or kernel_h and kernel_w), all positive; got {}x{}",
            kernel[0],
            kernel[1]
        );
        let stride = per_dim("stride", &p.stride, Some((p.stride_h, p.stride_w)), 1)?;
        crate::ensure!(stride[0] > 0 && stride[1] > 0, "stride must be positive");
        let pad = per_dim("pad", &p.pad, Some((p.pad_h, p.pad_w)), 0)?;
        let dilation = per_dim("dilation", &p.dilation, None, 1)?;
        crate::ensure!(
            dilation[0] > 0 && dilation[1] > 0,
            "dilation must be positive"
        );
        let group = p.group() as usize;
        crate::ensure!(group > 0, "group must be positive");
        let num_output = p.num_output() as usize;
        if need_output {
            crate::ensure!(
                num_output > 0,
                "convolution_param.num_output must be set and positive"
            );
            crate::ensure!(
                num_output.is_multiple_of(group),
                "num_output ({num_output}) must be divisible by group ({group})"
            );
        }
        Ok(ConvSpec {
            num_output,
            bias_term: p.bias_term(),
            group,
            kernel,
            stride,
            pad,
            dilation,
            axis: p.axis(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
        })
    }

    /// Channel axis, number of items before it, channels and the two spatial sizes of `b`.
    pub fn split_shape(&self, b: &Blob) -> Result<(usize, usize, usize, usize, usize)> {
        let axis = b.canonical_axis(self.axis)?;
        crate::ensure!(
            b.num_axes() == axis + 3,
            "crema's convolution is 2-D: the bottom needs exactly 2 spatial axes after the channel axis {axis}, got shape {}",
            b.shape_string()
        );
        let num = b.count_range(0, axis);
        Ok((
            axis,
            num,
            b.shape[axis],
            b.shape[axis + 1],
            b.shape[axis + 2],
        ))
    }

    /// The im2col geometry over an image of `channels x h x w`.
    pub fn geom(&self, channels: usize, h: usize, w: usize) -> ConvGeom {
        ConvGeom {
            channels,
            height: h,
            width: w,
            kernel_h: self.kernel[0],
            kernel_w: self.kernel[1],
            pad_h: self.pad[0],
            pad_w: self.pad[1],
            stride_h: self.stride[0],
            stride_w: self.stride[1],
            dilation_h: self.dilation[0],
            dilation_w: self.dilation[1],
        }
    }

    /// Checks that the kernel (dilated) fits in the padded input.
    pub fn check_fits(&self, h: usize, w: usize) -> Result<()> {
        for (i, (d, name)) in [(h, "height"), (w, "width")].into_iter().enumerate() {
            let ext = self.dilation[i] * (self.kernel[i] - 1) + 1;
            crate::ensure!(
                d + 2 * self.pad[i] >= ext,
                "input {name} {d} (+2x pad {}) is smaller than the dilated kernel extent {ext}",
                self.pad[i]
            );
        }
        Ok(())
    }
}

/// `db[c] += sum over items and positions of d[n][c][:]` for `d` of `num x ch x plane`.
pub fn bias_backward(d: &[f32], num: usize, ch: usize, plane: usize, db: &mut [f32]) {
    for n in 0..num {
        for (c, acc) in db.iter_mut().enumerate().take(ch) {
            let s = (n * ch + c) * plane;
            *acc += d[s..s + plane].iter().sum::<f32>();
        }
    }
}

/// Adds `bias[c]` to every position of channel `c` of each item.
pub fn bias_forward(bias: &[f32], num: usize, ch: usize, plane: usize, y: &mut [f32]) {
    for n in 0..num {
        for (c, b) in bias.iter().enumerate().take(ch) {
            let s = (n * ch + c) * plane;
            y[s..s + plane].iter_mut().for_each(|v| *v += b);
        }
    }
}

/// Convolution (`transposed: false`) and Deconvolution (`transposed: true`): the same weights,
/// engine and bookkeeping, with the roles of bottom and top swapped in the engine. A
/// convolution's forward pass runs by Winograd F(4x4, 3x3) when [`WinoConv::applies`] (3x3,
/// stride 1, wide enough), with the transformed weights cached across passes.
pub struct ConvLayer {
    spec: ConvSpec,
    transposed: bool,
    channels: usize,
    engine: Option<ConvEngine>,
    winograd: WeightCache,
}

impl ConvLayer {
    /// Creates the layer from `convolution_param`.
    pub fn create(p: &LayerParameter, transposed: bool) -> Result<Box<dyn Layer>> {
        let cp = p.convolution_param.clone().unwrap_or_default();
        Ok(Box::new(ConvLayer {
            spec: ConvSpec::parse(&cp, true)?,
            transposed,
            channels: 0,
            engine: None,
            winograd: WeightCache::default(),
        }))
    }

    /// The engine for `num` images of `c x h x w` and the top's spatial size.
    fn engine_for(
        &self,
        num: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<(ConvEngine, [usize; 2])> {
        let s = &self.spec;
        if !self.transposed {
            s.check_fits(h, w)?;
            let geom = s.geom(c, h, w);
            let out = [geom.out_h(), geom.out_w()];
            let (co, group) = (s.num_output, s.group);
            return Ok((
                ConvEngine {
                    geom,
                    co,
                    group,
                    num,
                },
                out,
            ));
        }
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
        Ok((
            ConvEngine {
                geom,
                co: c,
                group: s.group,
                num,
            },
            out,
        ))
    }

    /// The engine (after reshape) and the top's `(channels, plane)`.
    fn ready(&self, what: &str) -> Result<(ConvEngine, usize, usize)> {
        let Some(e) = self.engine else {
            crate::bail!("{} {what} before reshape", self.type_name());
        };
        Ok(if self.transposed {
            (e, e.geom.channels, e.geom.height * e.geom.width)
        } else {
            (e, e.co, e.geom.col_cols())
        })
    }
}

impl Layer for ConvLayer {
    fn type_name(&self) -> &'static str {
        if self.transposed {
            "Deconvolution"
        } else {
            "Convolution"
        }
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        let (g, m, [kh, kw]) = (self.spec.group, self.spec.num_output, self.spec.kernel);
        let shape = |c: usize| {
            if self.transposed {
                [c, m / g, kh, kw]
            } else {
                [m, c / g, kh, kw]
            }
        };
        let (c, params) = self.spec.make_params(bottom[0], shape, ctx.rng)?;
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
        let (engine, out) = self.engine_for(num, c, h, w)?;
        let mut shape = bottom[0].shape[..axis].to_vec();
        shape.extend([self.spec.num_output, out[0], out[1]]);
        top[0].reshape(&shape);
        self.engine = Some(engine);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let (e, ch, plane) = self.ready("forward")?;
        let bias = self.spec.bias_term.then(|| params[1].data.as_slice());
        let (x, w, y) = (&bottom[0].data, &params[0].data, &mut top[0].data);
        if !self.transposed {
            if WinoConv::applies(&e.geom, e.co, e.group) {
                let conv = WinoConv {
                    geom: e.geom,
                    co: e.co,
                    group: e.group,
                    num: e.num,
                };
                let u = self.winograd.get(&conv, w);
                conv.forward(x, u, bias, y);
            } else {
                e.conv_forward(x, w, bias, y);
            }
            return Ok(());
        }
        e.deconv_forward(x, w, y);
        if let Some(b) = bias {
            bias_forward(b, e.num, ch, plane, y);
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
        let (e, ch, plane) = self.ready("backward")?;
        let dy = &top[0].diff;
        if self.spec.bias_term {
            bias_backward(dy, e.num, ch, plane, &mut params[1].diff);
        }
        let w = &mut *params[0];
        let b = &mut *bottom[0];
        let dx = down[0].then_some(b.diff.as_mut_slice());
        if self.transposed {
            e.deconv_backward(dy, &b.data, &w.data, Some(&mut w.diff), dx);
        } else {
            e.conv_backward(dy, &b.data, &w.data, Some(&mut w.diff), dx);
        }
        Ok(())
    }
    fn forward_flops(&self, _: &[&Blob], _: &[&Blob]) -> Option<f64> {
        let e = self.engine?;
        let k = (e.geom.col_rows() / e.group) as f64;
        Some(2.0 * e.num as f64 * e.co as f64 * e.geom.col_cols() as f64 * k)
    }
}
