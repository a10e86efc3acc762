//! What Convolution, Deconvolution and Im2col share (Caffe's `BaseConvolutionLayer`): reading
//! `convolution_param` and the batched im2col + GEMM engine.
//!
//! Speed: a chunk of images is unfolded into ONE column buffer (`C*kh*kw` rows, `nb*out_h*out_w`
//! columns), so each group needs one large GEMM per chunk instead of one small GEMM per image.
//! The unfolding, folding and re-ordering run on rayon; the GEMMs on OpenBLAS threads; the two
//! never run at the same time. The column buffers are thread-local scratch shared by every
//! convolution on the thread and reused across calls (Caffe shares one col buffer the same way).

use crate::math::im2col::{batch_to_rows, col2im_batch_add, im2col_batch, rows_to_batch, ConvGeom};
use crate::math::{self};
use crate::proto::{ConvolutionParameter, FillerParameter};
use crate::{Blob, Result};
use std::cell::RefCell;

thread_local! {
    /// Largest column buffer (in floats) one chunk of images may need; bigger batches are
    /// split (per thread so tests can force chunking).
    static COL_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(1 << 24) };
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with the two scratch buffers grown to at least `a` and `b` floats.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (col, buf) = &mut *s;
        if col.len() < a {
            col.resize(a, 0.0);
        }
        if buf.len() < b {
            buf.resize(b, 0.0);
        }
        f(&mut col[..a], &mut buf[..b])
    })
}

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

/// Batched im2col + GEMM for one layer. The "data" side is the side im2col reads (a
/// convolution's bottom, a deconvolution's top): `geom` describes one of its images. The
/// "out" side has `co` channels and `out_h*out_w` positions per image. Weights are
/// `co x (K/group)` with `K = geom.col_rows()` in both layers.
#[derive(Debug, Clone, Copy)]
pub struct ConvEngine {
    pub geom: ConvGeom,
    pub co: usize,
    pub group: usize,
    pub num: usize,
}

impl ConvEngine {
    fn k(&self) -> usize {
        self.geom.col_rows()
    }
    fn p(&self) -> usize {
        self.geom.col_cols()
    }
    fn data_len(&self) -> usize {
        self.geom.channels * self.geom.height * self.geom.width
    }
    fn chunk(&self) -> usize {
        (COL_LIMIT.with(|c| c.get()) / (self.k() * self.p()).max(1)).clamp(1, self.num.max(1))
    }

    /// Chunks `(first image, images)`.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> {
        let (num, c) = (self.num, self.chunk());
        (0..num).step_by(c).map(move |s| (s, c.min(num - s)))
    }

    /// `out[g] = W[g] * col[g]` for every group over `cols` columns.
    fn gemm_w_col(&self, w: &[f32], col: &[f32], cols: usize, out: &mut [f32]) {
        let (kg, cg) = (self.k() / self.group, self.co / self.group);
        for g in 0..self.group {
            math::gemm(
                false,
                false,
                cg,
                cols,
                kg,
                1.0,
                &w[g * cg * kg..],
                &col[g * kg * cols..],
                0.0,
                &mut out[g * cg * cols..],
            );
        }
    }

    /// `col[g] = W[g]^T * out[g]`.
    fn gemm_wt_out(&self, w: &[f32], out: &[f32], cols: usize, col: &mut [f32]) {
        let (kg, cg) = (self.k() / self.group, self.co / self.group);
        for g in 0..self.group {
            math::gemm(
                true,
                false,
                kg,
                cols,
                cg,
                1.0,
                &w[g * cg * kg..],
                &out[g * cg * cols..],
                0.0,
                &mut col[g * kg * cols..],
            );
        }
    }

    /// `dW[g] += out[g] * col[g]^T`.
    fn gemm_dw(&self, out: &[f32], col: &[f32], cols: usize, dw: &mut [f32]) {
        let (kg, cg) = (self.k() / self.group, self.co / self.group);
        for g in 0..self.group {
            math::gemm(
                false,
                true,
                cg,
                kg,
                cols,
                1.0,
                &out[g * cg * cols..],
                &col[g * kg * cols..],
                1.0,
                &mut dw[g * cg * kg..],
            );
        }
    }

    /// Convolution forward: `out = conv(data, W) + bias`.
    pub fn conv_forward(&self, data: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let (k, p, dl, ol) = (self.k(), self.p(), self.data_len(), self.co * self.p());
        let c = self.chunk();
        with_scratch(k * c * p, self.co * c * p, |col, buf| {
            for (s, nb) in self.chunks() {
                let cols = nb * p;
                im2col_batch(&data[s * dl..(s + nb) * dl], &self.geom, nb, col);
                self.gemm_w_col(w, col, cols, buf);
                rows_to_batch(
                    buf,
                    nb,
                    self.co,
                    p,
                    bias,
                    false,
                    &mut out[s * ol..(s + nb) * ol],
                );
            }
        })
    }

    /// Convolution backward: `dW += dout (x) im2col(data)`, `ddata += col2im(W^T dout)`.
    pub fn conv_backward(
        &self,
        dout: &[f32],
        data: &[f32],
        w: &[f32],
        dw: Option<&mut [f32]>,
        ddata: Option<&mut [f32]>,
    ) {
        let (k, p, dl, ol) = (self.k(), self.p(), self.data_len(), self.co * self.p());
        let c = self.chunk();
        let mut dw = dw;
        let mut ddata = ddata;
        with_scratch(k * c * p, self.co * c * p, |col, buf| {
            for (s, nb) in self.chunks() {
                let cols = nb * p;
                batch_to_rows(&dout[s * ol..(s + nb) * ol], nb, self.co, p, buf);
                if let Some(dw) = dw.as_deref_mut() {
                    im2col_batch(&data[s * dl..(s + nb) * dl], &self.geom, nb, col);
                    self.gemm_dw(buf, col, cols, dw);
                }
                if let Some(dd) = ddata.as_deref_mut() {
                    self.gemm_wt_out(w, buf, cols, col);
                    col2im_batch_add(col, &self.geom, nb, &mut dd[s * dl..(s + nb) * dl]);
                }
            }
        })
    }

    /// Deconvolution forward: `data = col2im(W^T out)` (+ bias per data channel afterwards).
    pub fn deconv_forward(&self, out: &[f32], w: &[f32], data: &mut [f32]) {
        let (k, p, dl, ol) = (self.k(), self.p(), self.data_len(), self.co * self.p());
        let c = self.chunk();
        data.fill(0.0);
        with_scratch(k * c * p, self.co * c * p, |col, buf| {
            for (s, nb) in self.chunks() {
                let cols = nb * p;
                batch_to_rows(&out[s * ol..(s + nb) * ol], nb, self.co, p, buf);
                self.gemm_wt_out(w, buf, cols, col);
                col2im_batch_add(col, &self.geom, nb, &mut data[s * dl..(s + nb) * dl]);
            }
        })
    }

    /// Deconvolution backward: `dW += out (x) im2col(ddata)`, `dout += W im2col(ddata)`.
    pub fn deconv_backward(
        &self,
        ddata: &[f32],
        out: &[f32],
        w: &[f32],
        dw: Option<&mut [f32]>,
        dout: Option<&mut [f32]>,
    ) {
        let (k, p, dl, ol) = (self.k(), self.p(), self.data_len(), self.co * self.p());
        let c = self.chunk();
        let mut dw = dw;
        let mut dout = dout;
        with_scratch(k * c * p, self.co * c * p, |col, buf| {
            for (s, nb) in self.chunks() {
                let cols = nb * p;
                im2col_batch(&ddata[s * dl..(s + nb) * dl], &self.geom, nb, col);
                if let Some(dw) = dw.as_deref_mut() {
                    batch_to_rows(&out[s * ol..(s + nb) * ol], nb, self.co, p, buf);
                    self.gemm_dw(buf, col, cols, dw);
                }
                if let Some(dx) = dout.as_deref_mut() {
                    self.gemm_w_col(w, col, cols, buf);
                    rows_to_batch(
                        buf,
                        nb,
                        self.co,
                        p,
                        None,
                        true,
                        &mut dx[s * ol..(s + nb) * ol],
                    );
                }
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_batches_match_one_chunk() {
        let spec = ConvSpec::parse(
            &crate::spec::from_yaml_str::<ConvolutionParameter>(
                "{ num_output: 4, kernel_size: 3, pad: 1, stride: 2, group: 2 }",
                "t",
            )
            .unwrap(),
            true,
        )
        .unwrap();
        let e = ConvEngine {
            geom: spec.geom(4, 7, 6),
            co: 4,
            group: 2,
            num: 5,
        };
        let dl = 4 * 7 * 6;
        let ol = 4 * e.geom.col_cols();
        let x: Vec<f32> = (0..5 * dl).map(|i| (i as f32 * 0.3).sin()).collect();
        let w: Vec<f32> = (0..4 * 18).map(|i| (i as f32 * 0.7).cos()).collect();
        let dy: Vec<f32> = (0..5 * ol).map(|i| (i as f32 * 0.9).sin()).collect();
        let run = || {
            let mut y = vec![0.0; 5 * ol];
            e.conv_forward(&x, &w, Some(&[0.5, 1.0, 1.5, 2.0]), &mut y);
            let (mut dw, mut dx) = (vec![0.0; w.len()], vec![0.0; x.len()]);
            e.conv_backward(&dy, &x, &w, Some(&mut dw), Some(&mut dx));
            let mut z = vec![0.0; x.len()];
            e.deconv_forward(&dy, &w, &mut z);
            let (mut dw2, mut dy2) = (vec![0.0; w.len()], vec![0.0; dy.len()]);
            e.deconv_backward(&x, &dy, &w, Some(&mut dw2), Some(&mut dy2));
            [y, dw, dx, z, dw2, dy2]
        };
        let whole = run();
        COL_LIMIT.with(|c| c.set(e.k() * e.p() * 2)); // chunks of 2 images: 2 + 2 + 1
        assert_eq!(e.chunks().count(), 3);
        let parts = run();
        COL_LIMIT.with(|c| c.set(1 << 24));
        for (a, b) in whole.iter().zip(&parts) {
            crate::testing::assert_close(a, b, 1e-4);
        }
    }
}
