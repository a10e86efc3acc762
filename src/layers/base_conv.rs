//! What Convolution and Deconvolution share (Caffe's `BaseConvolutionLayer`): reading
//! `convolution_param` (also used by Im2col) and the layer itself, whose direction is a flag;
//! the arithmetic is [`super::conv_engine::ConvEngine`].

use super::conv_engine::ConvEngine;
use super::conv_nd::NdEngine;
use super::{BlobCounts, Layer, SetupCtx};
use crate::math::im2col::ConvGeom;
use crate::math::im2col_nd::NdGeom;
use crate::math::winograd::{WeightCache, WinoConv};
use crate::proto::{ConvolutionParameter, FillerParameter, LayerParameter};
use crate::{Blob, Result};

/// `convolution_param`, validated. The per-axis lists hold 1 value (for every spatial axis) or
/// one per spatial axis; [`ConvSpec::for_axes`] expands them once the bottom is known.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    pub num_output: usize,
    pub bias_term: bool,
    pub group: usize,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub pad: Vec<usize>,
    pub dilation: Vec<usize>,
    /// Some value came from a `_h`/`_w` field (only valid with 2 spatial axes).
    pub hw_fields: bool,
    pub axis: i32,
    pub weight_filler: FillerParameter,
    pub bias_filler: FillerParameter,
}

impl ConvSpec {
    /// Checks the input channels against `group` and creates the filled weight (of shape
    /// `[lead, c / group or num_output / group, k...]`, as `weight_shape` says) and bias.
    /// Shared by Convolution and Deconvolution; returns `(channels, params)`.
    pub fn make_params(
        &self,
        bottom: &Blob,
        weight_shape: impl Fn(usize) -> Vec<usize>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<(usize, Vec<Blob>)> {
        let (_, _, c, _) = self.split_nd(bottom)?;
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

/// The values of a repeated field (`default` when empty) or of the `_h`/`_w` pair; the flag
/// says the pair was used.
fn per_dim(
    name: &str,
    list: &[u32],
    hw: Option<(Option<u32>, Option<u32>)>,
    default: usize,
) -> Result<(Vec<usize>, bool)> {
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
            return Ok((vec![h.unwrap_or(0) as usize, w.unwrap_or(0) as usize], true));
        }
    }
    if list.is_empty() {
        return Ok((vec![default], false));
    }
    Ok((list.iter().map(|&v| v as usize).collect(), false))
}

/// `v` expanded to `n` values (one value repeats), or an error naming the field.
fn expand(name: &str, v: &[usize], n: usize) -> Result<Vec<usize>> {
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v.to_vec()),
        l => crate::bail!("{name} has {l} values; give 1 or one per spatial axis ({n})"),
    }
}

impl ConvSpec {
    /// Reads and checks `convolution_param`; `need_output` is false for Im2col.
    pub fn parse(p: &ConvolutionParameter, need_output: bool) -> Result<ConvSpec> {
        let (kernel, hk) = per_dim("kernel", &p.kernel_size, Some((p.kernel_h, p.kernel_w)), 0)?;
        crate::ensure!(
            kernel.iter().all(|&k| k > 0),
            "convolution_param needs kernel_size (or kernel_h and kernel_w), all positive; got {kernel:?}"
        );
        let (stride, hs) = per_dim("stride", &p.stride, Some((p.stride_h, p.stride_w)), 1)?;
        crate::ensure!(stride.iter().all(|&s| s > 0), "stride must be positive");
        let (pad, hp) = per_dim("pad", &p.pad, Some((p.pad_h, p.pad_w)), 0)?;
        let (dilation, _) = per_dim("dilation", &p.dilation, None, 1)?;
        crate::ensure!(dilation.iter().all(|&d| d > 0), "dilation must be positive");
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
            hw_fields: hk || hs || hp,
            axis: p.axis(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
        })
    }

    /// The spec with every per-axis list holding exactly `n` values (Caffe's rules: one value
    /// for all axes or one per axis; `_h`/`_w` only with 2 spatial axes).
    pub fn for_axes(&self, n: usize) -> Result<ConvSpec> {
        crate::ensure!(
            !self.hw_fields || n == 2,
            "kernel_h/kernel_w, stride_h/stride_w and pad_h/pad_w need 2 spatial axes; this bottom has {n}: use kernel_size/stride/pad with one value per axis"
        );
        Ok(ConvSpec {
            kernel: expand("kernel_size", &self.kernel, n)?,
            stride: expand("stride", &self.stride, n)?,
            pad: expand("pad", &self.pad, n)?,
            dilation: expand("dilation", &self.dilation, n)?,
            ..self.clone()
        })
    }

    /// Channel axis, number of items before it, channels and the spatial sizes of `b` (Caffe's
    /// `num_spatial_axes = num_axes - axis - 1`, at least 1).
    pub fn split_nd(&self, b: &Blob) -> Result<(usize, usize, usize, Vec<usize>)> {
        let axis = b.canonical_axis(self.axis)?;
        crate::ensure!(
            b.num_axes() >= axis + 2,
            "convolution needs at least 1 spatial axis after the channel axis {axis}, got shape {}",
            b.shape_string()
        );
        Ok((
            axis,
            b.count_range(0, axis),
            b.shape[axis],
            b.shape[axis + 1..].to_vec(),
        ))
    }

    /// Channel axis, number of items before it, channels and the two spatial sizes of `b`,
    /// which must have exactly 2 spatial axes (Im2col).
    pub fn split_shape(&self, b: &Blob) -> Result<(usize, usize, usize, usize, usize)> {
        let (axis, num, c, sp) = self.split_nd(b)?;
        crate::ensure!(
            sp.len() == 2,
            "this layer is 2-D: the bottom needs exactly 2 spatial axes after the channel axis {axis}, got shape {}",
            b.shape_string()
        );
        Ok((axis, num, c, sp[0], sp[1]))
    }

    /// The 2-D im2col geometry over an image of `channels x h x w` (lists of 1 or 2 values).
    pub fn geom(&self, channels: usize, h: usize, w: usize) -> ConvGeom {
        let at = |v: &[usize], i: usize| v[if v.len() == 1 { 0 } else { i }];
        ConvGeom {
            channels,
            height: h,
            width: w,
            kernel_h: at(&self.kernel, 0),
            kernel_w: at(&self.kernel, 1),
            pad_h: at(&self.pad, 0),
            pad_w: at(&self.pad, 1),
            stride_h: at(&self.stride, 0),
            stride_w: at(&self.stride, 1),
            dilation_h: at(&self.dilation, 0),
            dilation_w: at(&self.dilation, 1),
        }
    }

    /// The N-D im2col geometry over an image of `channels x shape` (lists already expanded).
    pub fn nd_geom(&self, channels: usize, shape: &[usize]) -> NdGeom {
        NdGeom {
            channels,
            shape: shape.to_vec(),
            kernel: self.kernel.clone(),
            pad: self.pad.clone(),
            stride: self.stride.clone(),
            dilation: self.dilation.clone(),
        }
    }

    /// Checks that the kernel (dilated) fits in the padded input along every spatial axis
    /// (lists already expanded to `dims.len()` values).
    pub fn check_fits(&self, dims: &[usize]) -> Result<()> {
        let names = ["height", "width"];
        for (i, &d) in dims.iter().enumerate() {
            let ext = self.dilation[i] * (self.kernel[i] - 1) + 1;
            let name = if dims.len() == 2 {
                names[i].to_string()
            } else {
                format!("spatial axis {i}")
            };
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
/// engine and bookkeeping, with the roles of bottom and top swapped in the engine. With 2
/// spatial axes the 2-D engine runs (a convolution's forward pass by Winograd F(4x4, 3x3) when
/// [`WinoConv::applies`]: 3x3, stride 1, wide enough, with the transformed weights cached
/// across passes); with any other number (1-D, 3-D, ...) the N-D im2col engine
/// ([`NdEngine`]) runs, as Caffe's `im2col_nd` path does.
pub struct ConvLayer {
    spec: ConvSpec,
    transposed: bool,
    channels: usize,
    engine: Option<Engine>,
    winograd: WeightCache,
}

/// The engine chosen at reshape.
#[derive(Clone)]
enum Engine {
    Two(ConvEngine),
    Nd(NdEngine),
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

    /// The engine for `num` images of `c x dims` and the top's spatial size.
    fn engine_for(&self, num: usize, c: usize, dims: &[usize]) -> Result<(Engine, Vec<usize>)> {
        let s = &self.spec;
        let two = dims.len() == 2;
        if !self.transposed {
            s.check_fits(dims)?;
            let (co, group) = (s.num_output, s.group);
            if two {
                let geom = s.geom(c, dims[0], dims[1]);
                let out = vec![geom.out_h(), geom.out_w()];
                let e = ConvEngine {
                    geom,
                    co,
                    group,
                    num,
                };
                return Ok((Engine::Two(e), out));
            }
            let geom = s.nd_geom(c, dims);
            let out = geom.out_shape();
            let e = NdEngine {
                geom,
                co,
                group,
                num,
            };
            return Ok((Engine::Nd(e), out));
        }
        let mut out = vec![0usize; dims.len()];
        for (i, &n) in dims.iter().enumerate() {
            let full = s.stride[i] * n.saturating_sub(1) + s.dilation[i] * (s.kernel[i] - 1) + 1;
            crate::ensure!(
                n > 0 && full > 2 * s.pad[i],
                "deconvolution output would be empty: input {n}, pad {}",
                s.pad[i]
            );
            out[i] = full - 2 * s.pad[i];
        }
        let (co, group) = (c, s.group);
        if two {
            let geom = s.geom(s.num_output, out[0], out[1]);
            debug_assert_eq!((geom.out_h(), geom.out_w()), (dims[0], dims[1]));
            let e = ConvEngine {
                geom,
                co,
                group,
                num,
            };
            return Ok((Engine::Two(e), out));
        }
        let geom = s.nd_geom(s.num_output, &out);
        debug_assert_eq!(geom.out_shape(), dims);
        let e = NdEngine {
            geom,
            co,
            group,
            num,
        };
        Ok((Engine::Nd(e), out))
    }

    /// The engine (after reshape) and the top's `(num, channels, plane)`.
    fn ready(&self, what: &str) -> Result<(Engine, usize, usize, usize)> {
        let Some(e) = &self.engine else {
            crate::bail!("{} {what} before reshape", self.type_name());
        };
        let (num, co, data_ch, data_plane, out_plane) = match e {
            Engine::Two(e) => (
                e.num,
                e.co,
                e.geom.channels,
                e.geom.height * e.geom.width,
                e.geom.col_cols(),
            ),
            Engine::Nd(e) => (
                e.num,
                e.co,
                e.geom.channels,
                e.geom.shape.iter().product(),
                e.p(),
            ),
        };
        let e = e.clone();
        Ok(if self.transposed {
            (e, num, data_ch, data_plane)
        } else {
            (e, num, co, out_plane)
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
        let (_, _, _, dims) = self.spec.split_nd(bottom[0])?;
        self.spec = self.spec.for_axes(dims.len())?;
        let (g, m, kernel) = (self.spec.group, self.spec.num_output, &self.spec.kernel);
        let shape = |c: usize| {
            let mut s = if self.transposed {
                vec![c, m / g]
            } else {
                vec![m, c / g]
            };
            s.extend(kernel);
            s
        };
        let (c, params) = self.spec.make_params(bottom[0], shape, ctx.rng)?;
        self.channels = c;
        Ok(params)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (axis, num, c, dims) = self.spec.split_nd(bottom[0])?;
        crate::ensure!(
            dims.len() == self.spec.kernel.len(),
            "the bottom changed from {} to {} spatial axes (shape {})",
            self.spec.kernel.len(),
            dims.len(),
            bottom[0].shape_string()
        );
        crate::ensure!(
            c == self.channels,
            "input channels changed from {} to {c} (bottom {})",
            self.channels,
            bottom[0].shape_string()
        );
        let (engine, out) = self.engine_for(num, c, &dims)?;
        let mut shape = bottom[0].shape[..axis].to_vec();
        shape.push(self.spec.num_output);
        shape.extend(out);
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
        let (e, num, ch, plane) = self.ready("forward")?;
        let bias = self.spec.bias_term.then(|| params[1].data.as_slice());
        let (x, w, y) = (&bottom[0].data, &params[0].data, &mut top[0].data);
        match (&e, self.transposed) {
            (Engine::Two(e), false) => {
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
            (Engine::Nd(e), false) => {
                e.conv_forward(x, w, bias, y);
                return Ok(());
            }
            (Engine::Two(e), true) => e.deconv_forward(x, w, y),
            (Engine::Nd(e), true) => e.deconv_forward(x, w, y),
        }
        if let Some(b) = bias {
            bias_forward(b, num, ch, plane, y);
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
        let (e, num, ch, plane) = self.ready("backward")?;
        let dy = &top[0].diff;
        if self.spec.bias_term {
            bias_backward(dy, num, ch, plane, &mut params[1].diff);
        }
        let w = &mut *params[0];
        let b = &mut *bottom[0];
        let dx = down[0].then_some(b.diff.as_mut_slice());
        let dw = Some(w.diff.as_mut_slice());
        match (&e, self.transposed) {
            (Engine::Two(e), false) => e.conv_backward(dy, &b.data, &w.data, dw, dx),
            (Engine::Nd(e), false) => e.conv_backward(dy, &b.data, &w.data, dw, dx),
            (Engine::Two(e), true) => e.deconv_backward(dy, &b.data, &w.data, dw, dx),
            (Engine::Nd(e), true) => e.deconv_backward(dy, &b.data, &w.data, dw, dx),
        }
        Ok(())
    }
    fn forward_flops(&self, _: &[&Blob], _: &[&Blob]) -> Option<f64> {
        let (num, co, k, p, group) = match self.engine.as_ref()? {
            Engine::Two(e) => (e.num, e.co, e.geom.col_rows(), e.geom.col_cols(), e.group),
            Engine::Nd(e) => (e.num, e.co, e.geom.col_rows(), e.p(), e.group),
        };
        let k = (k / group) as f64;
        Some(2.0 * num as f64 * co as f64 * p as f64 * k)
    }
}
