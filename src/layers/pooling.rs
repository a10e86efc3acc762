//! `Pooling`: MAX (argmax mask kept for backward, optionally exposed as a second top), AVE
//! (Caffe's divisor: the window clipped to the *padded* input, so padded zeros count),
//! STOCHASTIC (TRAIN samples an element with probability proportional to its activation; TEST
//! outputs the probability-weighted average `sum x^2 / sum x`), global pooling, CEIL (default)
//! or FLOOR rounding, and Caffe's rule that drops a last window that starts in the padding.
//! Planes (item, channel) run in parallel on rayon; the per-plane kernels are in
//! [`super::pool_kernels`]. Caffe 1.0 pools only 4-D blobs; as a crema extension a 5-D bottom
//! (N x C x D x H x W) is pooled in 3-D (MAX or AVE, `kernel_size`/`stride`/`pad` applying to
//! all three axes, or `global_pooling`), with the same per-axis rules.

use super::pool_kernels::{self as k, Geom};
use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::{LayerParameter, Phase};
use crate::{Blob, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Pooled size along one axis (Caffe's `PoolingLayer::Reshape`).
pub fn pooled_size(n: usize, k: usize, s: usize, p: usize, ceil: bool) -> usize {
    let span = n + 2 * p - k;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    // A last window that would start in the padding is dropped.
    if p > 0 && (out - 1) * s >= n + p {
        out -= 1;
    }
    out
}

/// Why a bottom that is neither 4-D nor 5-D cannot be pooled (Caffe 1.0's PoolingLayer is 2-D
/// only; crema adds 3-D pooling of 5-D blobs as an extension, and nothing else).
fn not_4d(b: &Blob) -> String {
    format!(
        "Pooling needs a 4-D bottom (N x C x H x W), got {} ({} axes): Caffe 1.0 pools only 4-D blobs (crema also pools 5-D N x C x D x H x W in 3-D, as an extension); reshape first or pool with a strided Convolution",
        b.shape_string(),
        b.num_axes()
    )
}

/// `Pooling` layer.
pub struct Pooling {
    method: PoolMethod,
    global: bool,
    ceil: bool,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    train: bool,
    g: Geom,
    planes: usize,
    /// MAX / STOCHASTIC: index within the plane of the element each output took.
    mask: Vec<u32>,
    rng: StdRng,
    uniforms: Vec<f32>,
    /// kernel, stride and pad came from the single-value fields (or global pooling): the
    /// 3-D extension may use them for every axis.
    cube: bool,
    /// Set by reshape for a 5-D bottom (crema's 3-D extension).
    vol: Option<Vol>,
}

/// The 3-D window sweep of crema's extension (N x C x D x H x W, MAX or AVE): per axis the
/// same rules as Caffe's 2-D pooling (CEIL/FLOOR rounding, the last window dropped when it
/// starts in the padding, AVE divides by the window clipped to the padded input).
#[derive(Debug, Clone, Copy, Default)]
struct Vol {
    dims: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
    out: [usize; 3],
}

impl Vol {
    /// Values per (item, channel) volume in and out.
    fn lens(&self) -> (usize, usize) {
        (self.dims.iter().product(), self.out.iter().product())
    }
    /// Window of output `o` along axis `a`: `(start, end, padded size)` in input coordinates.
    fn range(&self, a: usize, o: usize) -> (usize, usize, usize) {
        let start = (o * self.s[a]) as isize - self.p[a] as isize;
        let end = (start + self.k[a] as isize).min((self.dims[a] + self.p[a]) as isize);
        let size = (end - start) as usize;
        (
            start.max(0) as usize,
            (end as usize).min(self.dims[a]),
            size,
        )
    }
    /// Calls `f(output index, input indices of the window, padded window size)`.
    fn windows(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>, usize)) {
        let [_, h, w] = self.dims;
        let mut o = 0;
        for oz in 0..self.out[0] {
            let (z0, z1, nz) = self.range(0, oz);
            for oy in 0..self.out[1] {
                let (y0, y1, ny) = self.range(1, oy);
                for ox in 0..self.out[2] {
                    let (x0, x1, nx) = self.range(2, ox);
                    let mut it = (z0..z1).flat_map(move |z| {
                        (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (z * h + y) * w + x))
                    });
                    f(o, &mut it, nz * ny * nx);
                    o += 1;
                }
            }
        }
    }
}

fn pair(
    name: &str,
    single: Option<u32>,
    h: Option<u32>,
    w: Option<u32>,
    default: Option<usize>,
) -> Result<Option<[usize; 2]>> {
    match (single, h, w) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            crate::bail!("either {name} or {name}_h/{name}_w should be specified, not both")
        }
        (Some(v), None, None) => Ok(Some([v as usize; 2])),
        (None, Some(a), Some(b)) => Ok(Some([a as usize, b as usize])),
        (None, None, None) => Ok(default.map(|d| [d; 2])),
        _ => crate::bail!("{name}_h and {name}_w must both be given"),
    }
}

/// Creates `Pooling` from `pooling_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let pp = p.pooling_param.unwrap_or_default();
    let global = pp.global_pooling();
    let kernel = pair("kernel", pp.kernel_size, pp.kernel_h, pp.kernel_w, None)?;
    crate::ensure!(
        global || kernel.is_some(),
        "pooling_param needs kernel_size (or kernel_h and kernel_w), or global_pooling"
    );
    crate::ensure!(
        !(global && kernel.is_some()),
        "with global_pooling: true, the kernel size cannot be specified"
    );
    let pad = pair("pad", pp.pad, pp.pad_h, pp.pad_w, Some(0))?.unwrap_or([0, 0]);
    let stride = pair("stride", pp.stride, pp.stride_h, pp.stride_w, Some(1))?.unwrap_or([1, 1]);
    let kernel = kernel.unwrap_or([0, 0]);
    if !global {
        crate::ensure!(
            kernel[0] > 0 && kernel[1] > 0,
            "kernel dimensions must be positive"
        );
        crate::ensure!(
            pad[0] < kernel[0] && pad[1] < kernel[1],
            "pad must be smaller than the kernel"
        );
    } else {
        crate::ensure!(
            pad == [0, 0] && stride == [1, 1],
            "with global_pooling: true, only pad 0 and stride 1 are allowed"
        );
    }
    crate::ensure!(stride[0] > 0 && stride[1] > 0, "stride must be positive");
    let method = pp.pool();
    if pad != [0, 0] {
        crate::ensure!(
            method != PoolMethod::Stochastic,
            "padding is implemented only for AVE and MAX pooling"
        );
    }
    Ok(Box::new(Pooling {
        method,
        global,
        ceil: pp.round_mode() == RoundMode::Ceil,
        kernel,
        stride,
        pad,
        train: p.phase() == Phase::Train,
        g: Geom::default(),
        planes: 0,
        mask: Vec::new(),
        rng: StdRng::seed_from_u64(0),
        uniforms: Vec::new(),
        cube: global
            || (pp.kernel_h.is_none()
                && pp.stride_h.is_none()
                && pp.stride_w.is_none()
                && pp.pad_h.is_none()
                && pp.pad_w.is_none()),
        vol: None,
    }))
}

impl Pooling {
    /// Planes per parallel task of the 2-D kernels: about 8 tasks per thread, so that small
    /// planes (CIFAR's 32 x 32) do not pay per-plane task overhead and the load still balances.
    fn group(&self) -> usize {
        self.planes
            .div_ceil(8 * rayon::current_num_threads())
            .max(1)
    }

    /// 4-D, or 5-D for the 3-D extension (MAX or AVE with single-value kernel/stride/pad).
    fn check_axes(&self, b: &Blob) -> Result<()> {
        if b.num_axes() == 5 {
            crate::ensure!(
                matches!(self.method, PoolMethod::Max | PoolMethod::Ave) && self.cube,
                "3-D pooling of {} (crema's extension; Caffe 1.0 pools only 4-D blobs) takes MAX or AVE with kernel_size, stride and pad (one value for all three axes) or global_pooling",
                b.shape_string()
            );
            return Ok(());
        }
        crate::ensure!(b.num_axes() == 4, "{}", not_4d(b));
        Ok(())
    }

    /// Reshape for a 5-D bottom (the 3-D extension).
    fn reshape_3d(&mut self, b: &Blob, top: &mut [&mut Blob]) -> Result<()> {
        let dims = [b.shape[2], b.shape[3], b.shape[4]];
        let k = if self.global {
            dims
        } else {
            [self.kernel[0]; 3]
        };
        let (s, p) = ([self.stride[0]; 3], [self.pad[0]; 3]);
        let mut out = [0; 3];
        for a in 0..3 {
            crate::ensure!(
                dims[a] + 2 * p[a] >= k[a] && dims[a] > 0,
                "kernel {} is larger than the padded input {} along spatial axis {a} of {}",
                k[a],
                dims[a] + 2 * p[a],
                b.shape_string()
            );
            out[a] = pooled_size(dims[a], k[a], s[a], p[a], self.ceil);
        }
        let v = Vol { dims, k, s, p, out };
        self.planes = b.shape[0] * b.shape[1];
        let shape = [b.shape[0], b.shape[1], out[0], out[1], out[2]];
        for t in top.iter_mut() {
            t.reshape(&shape);
        }
        self.mask.resize(self.planes * v.lens().1, 0);
        self.vol = Some(v);
        Ok(())
    }

    /// Forward of the 3-D extension: MAX (first maximum, its index kept in the mask) or AVE.
    fn forward_3d(&mut self, v: &Vol, bottom: &[&Blob], top: &mut [&mut Blob]) {
        let (ip, op) = v.lens();
        if ip == 0 || op == 0 {
            return;
        }
        let x = &bottom[0].data;
        let (first, rest) = top.split_at_mut(1);
        let y = &mut first[0].data;
        let max = self.method == PoolMethod::Max;
        y.par_chunks_mut(op)
            .zip(self.mask.par_chunks_mut(op))
            .enumerate()
            .for_each(|(i, (y, m))| {
                let x = &x[i * ip..(i + 1) * ip];
                v.windows(|o, win, size| {
                    if max {
                        let (mut best, mut at) = (f32::MIN, 0);
                        for j in win {
                            if x[j] > best {
                                (best, at) = (x[j], j);
                            }
                        }
                        y[o] = best;
                        m[o] = at as u32;
                    } else {
                        y[o] = win.map(|j| x[j]).sum::<f32>() / size as f32;
                    }
                });
            });
        if let (true, Some(t)) = (max, rest.first_mut()) {
            for (d, &m) in t.data.iter_mut().zip(&self.mask) {
                *d = m as f32;
            }
        }
    }
}

impl Layer for Pooling {
    fn type_name(&self) -> &'static str {
        "Pooling"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(1),
            min_top: Some(1),
            max_top: Some(if self.method == PoolMethod::Max { 2 } else { 1 }),
            ..Default::default()
        }
    }
    fn setup(&mut self, bottom: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.check_axes(bottom[0])?;
        self.rng = StdRng::seed_from_u64(ctx.rng.gen());
        Ok(Vec::new())
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let b = bottom[0];
        self.check_axes(b)?;
        if b.num_axes() == 5 {
            return self.reshape_3d(b, top);
        }
        self.vol = None;
        let (h, w) = (b.shape[2], b.shape[3]);
        let kernel = if self.global { [h, w] } else { self.kernel };
        crate::ensure!(
            h + 2 * self.pad[0] >= kernel[0] && w + 2 * self.pad[1] >= kernel[1],
            "kernel {}x{} is larger than the padded input {}x{}",
            kernel[0],
            kernel[1],
            h + 2 * self.pad[0],
            w + 2 * self.pad[1]
        );
        let oh = pooled_size(h, kernel[0], self.stride[0], self.pad[0], self.ceil);
        let ow = pooled_size(w, kernel[1], self.stride[1], self.pad[1], self.ceil);
        self.g = Geom {
            h,
            w,
            kh: kernel[0],
            kw: kernel[1],
            sh: self.stride[0],
            sw: self.stride[1],
            ph: self.pad[0],
            pw: self.pad[1],
            oh,
            ow,
        };
        self.planes = b.shape[0] * b.shape[1];
        let shape = [b.shape[0], b.shape[1], oh, ow];
        for t in top.iter_mut() {
            t.reshape(&shape);
        }
        self.mask.resize(self.planes * oh * ow, 0);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        if let Some(v) = self.vol {
            self.forward_3d(&v, bottom, top);
            return Ok(());
        }
        let g = self.g;
        let (ip, op) = (g.h * g.w, g.oh * g.ow);
        if ip == 0 || op == 0 {
            return Ok(());
        }
        let x = &bottom[0].data;
        let (first, rest) = top.split_at_mut(1);
        let y = &mut first[0].data;
        match self.method {
            PoolMethod::Max => {
                let n = self.group();
                y.par_chunks_mut(n * op)
                    .zip(self.mask.par_chunks_mut(n * op))
                    .zip(x.par_chunks(n * ip))
                    .for_each(|((y, m), x)| k::max_planes(&g, x, y, m));
                if let Some(t) = rest.first_mut() {
                    for (d, &m) in t.data.iter_mut().zip(&self.mask) {
                        *d = m as f32;
                    }
                }
            }
            PoolMethod::Ave => {
                let n = self.group();
                y.par_chunks_mut(n * op)
                    .zip(x.par_chunks(n * ip))
                    .for_each(|(y, x)| k::ave_planes(&g, x, y));
            }
            PoolMethod::Stochastic if self.train => {
                let n = self.planes * op;
                self.uniforms.clear();
                let rng = &mut self.rng;
                self.uniforms.extend((0..n).map(|_| rng.gen::<f32>()));
                let u = &self.uniforms;
                y.par_chunks_mut(op)
                    .zip(self.mask.par_chunks_mut(op))
                    .enumerate()
                    .for_each(|(i, (y, m))| {
                        k::sto_train_plane(
                            &g,
                            &x[i * ip..(i + 1) * ip],
                            &u[i * op..(i + 1) * op],
                            y,
                            m,
                        )
                    });
            }
            PoolMethod::Stochastic => {
                y.par_chunks_mut(op)
                    .enumerate()
                    .for_each(|(i, y)| k::sto_test_plane(&g, &x[i * ip..(i + 1) * ip], y));
            }
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        if !down[0] {
            return Ok(());
        }
        let g = self.g;
        let (ip, op) = match &self.vol {
            Some(v) => v.lens(),
            None => (g.h * g.w, g.oh * g.ow),
        };
        if ip == 0 || op == 0 {
            return Ok(());
        }
        let dy = &top[0].diff;
        let b = &mut *bottom[0];
        let x = &b.data;
        let dx = &mut b.diff;
        let mask = &self.mask;
        let routed =
            self.method == PoolMethod::Max || (self.method == PoolMethod::Stochastic && self.train);
        if routed {
            dx.par_chunks_mut(ip).enumerate().for_each(|(i, dx)| {
                for (d, &m) in dy[i * op..(i + 1) * op]
                    .iter()
                    .zip(&mask[i * op..(i + 1) * op])
                {
                    dx[m as usize] += d;
                }
            });
        } else if let (Some(v), PoolMethod::Ave) = (&self.vol, self.method) {
            dx.par_chunks_mut(ip).enumerate().for_each(|(i, dx)| {
                let dy = &dy[i * op..(i + 1) * op];
                v.windows(|o, win, size| {
                    let d = dy[o] / size as f32;
                    win.for_each(|j| dx[j] += d);
                });
            });
        } else if self.method == PoolMethod::Ave {
            let n = self.group();
            dx.par_chunks_mut(n * ip)
                .zip(dy.par_chunks(n * op))
                .for_each(|(dx, dy)| k::ave_back_planes(&g, dy, dx));
        } else {
            // STOCHASTIC at TEST: y = S2 / S, dy/dx_i = (2 x_i - y) / S.
            dx.par_chunks_mut(ip).enumerate().for_each(|(i, dx)| {
                let (dy, x) = (&dy[i * op..(i + 1) * op], &x[i * ip..(i + 1) * ip]);
                g.windows(|oy, ox, [y0, y1, x0, x1]| {
                    let (s, s2) = k::window_sums(&g, x, [y0, y1, x0, x1], f32::MIN_POSITIVE);
                    let (yv, d) = (s2 / s, dy[oy * g.ow + ox] / s);
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            dx[iy * g.w + ix] += d * (2.0 * x[iy * g.w + ix] - yv);
                        }
                    }
                });
            });
        }
        Ok(())
    }
    fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }
}

#[cfg(test)]
mod tests {
    use super::pooled_size;
    use crate::testing::{assert_close, check_layer_with, err_text, GradientChecker, Harness};
    use crate::Blob;

    /// Direct pooling oracle for one plane. `ave` selects AVE, else MAX.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        h: usize,
        w: usize,
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        ceil: bool,
        ave: bool,
    ) -> Vec<f32> {
        let oh = pooled_size(h, k[0], s[0], p[0], ceil);
        let ow = pooled_size(w, k[1], s[1], p[1], ceil);
        let mut y = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = f32::MIN;
                let mut sum = 0.0;
                let mut pooled_area = 0;
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let iy = (oy * s[0] + ky) as isize - p[0] as isize;
                        let ix = (ox * s[1] + kx) as isize - p[1] as isize;
                        // Caffe counts positions inside the padded input.
                        if iy < (h + p[0]) as isize && ix < (w + p[1]) as isize {
                            pooled_area += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x[iy as usize * w + ix as usize];
                        best = best.max(v);
                        sum += v;
                    }
                }
                y.push(if ave { sum / pooled_area as f32 } else { best });
            }
        }
        y
    }

    fn input(shape: [usize; 4]) -> Blob {
        let n = shape.iter().product();
        Blob::from_data(
            &shape,
            (0..n)
                .map(|i| ((i * 7919) % 113) as f32 * 0.1 - 5.0)
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn output_sizes_follow_caffe() {
        assert_eq!(pooled_size(7, 3, 2, 0, true), 3);
        assert_eq!(pooled_size(8, 3, 2, 0, true), 4); // ceil
        assert_eq!(pooled_size(8, 3, 2, 0, false), 3); // floor
        assert_eq!(pooled_size(55, 3, 2, 0, true), 27); // CaffeNet pool1
        assert_eq!(pooled_size(32, 3, 2, 0, true), 16); // CIFAR pool1: ceil(29/2)+1
                                                        // pad 1: ceil((6+2-2)/2)+1 = 4, but window 3 starts at 6 >= 6+1? no: 3*2=6 < 7, kept
        assert_eq!(pooled_size(6, 2, 2, 1, true), 4);
        // pad 1, k 3, s 3, n 4: ceil((4+2-3)/3)+1 = 2; (2-1)*3 = 3 < 5 kept
        assert_eq!(pooled_size(4, 3, 3, 1, true), 2);
        // drop rule: n 5, k 2, s 2, p 1: ceil(5/2)+1 = 4, (4-1)*2 = 6 >= 6 -> 3
        assert_eq!(pooled_size(5, 2, 2, 1, true), 3);
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn max_and_ave_match_direct_pooling() {
        let cases: &[([usize; 4], [usize; 2], [usize; 2], [usize; 2], &str)] = &[
            ([2, 3, 7, 9], [3, 3], [2, 2], [0, 0], "CEIL"),
            ([1, 2, 8, 8], [3, 3], [2, 2], [0, 0], "FLOOR"),
            ([2, 2, 7, 5], [3, 2], [2, 1], [1, 1], "CEIL"),
            ([1, 3, 5, 6], [2, 2], [2, 2], [1, 1], "CEIL"),
            ([1, 1, 9, 9], [3, 3], [3, 3], [2, 1], "FLOOR"),
        ];
        for &(shape, k, s, p, mode) in cases {
            for ave in [false, true] {
                let yaml = format!(
                    "type: Pooling\npooling_param: {{ pool: {}, kernel_h: {}, kernel_w: {}, stride_h: {}, stride_w: {}, pad_h: {}, pad_w: {}, round_mode: {mode} }}",
                    if ave { "AVE" } else { "MAX" }, k[0], k[1], s[0], s[1], p[0], p[1]
                );
                let mut h = Harness::new(&yaml, vec![input(shape)]).unwrap();
                h.forward().unwrap();
                let plane = shape[2] * shape[3];
                let mut expect = Vec::new();
                for i in 0..shape[0] * shape[1] {
                    expect.extend(naive(
                        &h.bottom[0].data[i * plane..(i + 1) * plane],
                        shape[2],
                        shape[3],
                        k,
                        s,
                        p,
                        mode == "CEIL",
                        ave,
                    ));
                }
                assert_eq!(h.top[0].count(), expect.len(), "{yaml}");
                assert_close(&h.top[0].data, &expect, 1e-5);
            }
        }
    }

    #[test]
    fn global_pooling_mask_top_and_errors() {
        let x = Blob::from_data(
            &[1, 2, 2, 2],
            vec![1.0, 4.0, 2.0, 3.0, -1.0, -2.0, -3.0, -4.0],
        )
        .unwrap();
        let mut h = Harness::new(
            "type: Pooling\ntop: [p, m]\npooling_param: { pool: MAX, global_pooling: true }",
            vec![x.clone()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![1, 2, 1, 1]);
        assert_eq!(h.top[0].data, vec![4.0, -1.0]);
        assert_eq!(h.top[1].data, vec![1.0, 0.0]);
        let mut h = Harness::new(
            "type: Pooling\npooling_param: { pool: AVE, global_pooling: true }",
            vec![x],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].data, vec![2.5, -2.5]);
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { pool: MAX }",
            vec![Blob::new(&[1, 1, 3, 3])],
        ));
        assert!(e.contains("kernel_size"), "{e}");
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { kernel_size: 2, pad: 2 }",
            vec![Blob::new(&[1, 1, 3, 3])],
        ));
        assert!(e.contains("pad must be smaller"), "{e}");
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { kernel_size: 5 }",
            vec![Blob::new(&[1, 1, 3, 3])],
        ));
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn stochastic_train_samples_window_elements_and_test_averages() {
        let x = Blob::from_data(&[1, 1, 2, 2], vec![1.0, 0.0, 3.0, 0.0]).unwrap();
        let mut h = Harness::new(
            "type: Pooling\npooling_param: { pool: STOCHASTIC, kernel_size: 2 }",
            vec![x.clone()],
        )
        .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            h.layer.reseed(seed);
            h.forward().unwrap();
            seen.insert(h.top[0].data[0] as i32);
        }
        // Zero-valued elements have probability 0; the two positive ones both appear.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 3]);
        let mut h = Harness::new(
            "type: Pooling\nphase: TEST\npooling_param: { pool: STOCHASTIC, kernel_size: 2 }",
            vec![x],
        )
        .unwrap();
        h.forward().unwrap();
        assert_close(&h.top[0].data, &[10.0 / 4.0], 1e-6);
    }

    fn checker() -> GradientChecker {
        GradientChecker {
            step: 1e-3,
            threshold: 1e-2,
            ..Default::default()
        }
    }

    #[test]
    fn gradients() {
        for pool in ["MAX", "AVE"] {
            check_layer_with(
                &format!("type: Pooling\npooling_param: {{ pool: {pool}, kernel_size: 3, stride: 2, pad: 1 }}"),
                &[&[2, 2, 5, 6]],
                &checker(),
            );
            check_layer_with(
                &format!("type: Pooling\npooling_param: {{ pool: {pool}, kernel_h: 2, kernel_w: 3, stride_h: 2, stride_w: 1, round_mode: FLOOR }}"),
                &[&[1, 2, 5, 6]],
                &checker(),
            );
        }
        // STOCHASTIC needs non-negative inputs.
        for phase in ["TRAIN", "TEST"] {
            let n = 2 * 2 * 5 * 6;
            let x = Blob::from_data(
                &[2, 2, 5, 6],
                (0..n).map(|i| 0.5 + ((i * 37) % 17) as f32 * 0.3).collect(),
            )
            .unwrap();
            let mut h = Harness::new(&format!("type: Pooling\nphase: {phase}\npooling_param: {{ pool: STOCHASTIC, kernel_size: 3, stride: 2 }}"), vec![x]).unwrap();
            let r = h.check_gradients(&checker()).unwrap();
            assert!(r.ok(), "{phase}: {:?}", r.failures);
        }
    }

    /// Direct 3-D pooling in f64 for one volume: `(max or mean over the window clipped to the
    /// padded input, output sizes)` with Caffe's per-axis rules (CEIL, last window in the
    /// padding dropped).
    fn naive_3d(
        x: &[f32],
        d: [usize; 3],
        k: usize,
        s: usize,
        p: usize,
        ave: bool,
    ) -> (Vec<f32>, [usize; 3]) {
        let out = d.map(|n| {
            let mut o = (n + 2 * p - k).div_ceil(s) + 1;
            if p > 0 && (o - 1) * s >= n + p {
                o -= 1;
            }
            o
        });
        let mut y = Vec::new();
        for oz in 0..out[0] {
            for oy in 0..out[1] {
                for ox in 0..out[2] {
                    let o = [oz, oy, ox];
                    let (mut best, mut sum, mut size) = (f64::MIN, 0.0, 1usize);
                    let lo: Vec<isize> = (0..3).map(|a| (o[a] * s) as isize - p as isize).collect();
                    let hi: Vec<isize> = (0..3)
                        .map(|a| (lo[a] + k as isize).min((d[a] + p) as isize))
                        .collect();
                    for a in 0..3 {
                        size *= (hi[a] - lo[a]) as usize;
                    }
                    for z in lo[0].max(0)..hi[0].min(d[0] as isize) {
                        for yy in lo[1].max(0)..hi[1].min(d[1] as isize) {
                            for xx in lo[2].max(0)..hi[2].min(d[2] as isize) {
                                let v = f64::from(
                                    x[((z as usize) * d[1] + yy as usize) * d[2] + xx as usize],
                                );
                                best = best.max(v);
                                sum += v;
                            }
                        }
                    }
                    y.push(if ave { sum / size as f64 } else { best } as f32);
                }
            }
        }
        (y, out)
    }

    /// crema's 3-D extension: MAX and AVE over N x C x D x H x W match the direct oracle.
    #[test]
    fn three_d_extension_matches_direct_pooling() {
        let shape = [2, 3, 5, 6, 7];
        let n: usize = shape.iter().product();
        let x =
            Blob::from_data(&shape, (0..n).map(|i| (i as f32 * 0.917).sin()).collect()).unwrap();
        for (pool, ave) in [("MAX", false), ("AVE", true)] {
            for (k, s, p) in [(3, 2, 1), (2, 2, 0), (3, 1, 0)] {
                let yaml = format!("type: Pooling\npooling_param: {{ pool: {pool}, kernel_size: {k}, stride: {s}, pad: {p} }}");
                let mut h = Harness::new(&yaml, vec![x.clone()]).unwrap();
                h.forward().unwrap();
                let vol = 5 * 6 * 7;
                let mut expect = Vec::new();
                let mut out = [0; 3];
                for plane in 0..6 {
                    let (y, o) = naive_3d(
                        &x.data[plane * vol..(plane + 1) * vol],
                        [5, 6, 7],
                        k,
                        s,
                        p,
                        ave,
                    );
                    expect.extend(y);
                    out = o;
                }
                assert_eq!(h.top[0].shape, vec![2, 3, out[0], out[1], out[2]], "{yaml}");
                assert_close(&h.top[0].data, &expect, 1e-5);
            }
        }
        // k 3, s 2, p 1 along 5, 6, 7: ceil((5+2-3)/2)+1 = 3, ceil(5/2)+1 = 4, ceil(6/2)+1 = 4.
        let h = Harness::new(
            "type: Pooling\npooling_param: { pool: MAX, kernel_size: 3, stride: 2, pad: 1 }",
            vec![Blob::new(&shape)],
        )
        .unwrap();
        assert_eq!(h.top[0].shape, vec![2, 3, 3, 4, 4]);
        let mut h = Harness::new(
            "type: Pooling\npooling_param: { pool: AVE, global_pooling: true }",
            vec![x.clone()],
        )
        .unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].shape, vec![2, 3, 1, 1, 1]);
        let mean: f32 = x.data[..210].iter().sum::<f32>() / 210.0;
        assert!((h.top[0].data[0] - mean).abs() < 1e-5);
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { pool: MAX, kernel_h: 2, kernel_w: 2 }",
            vec![Blob::new(&shape)],
        ));
        assert!(e.contains("Caffe 1.0 pools only 4-D blobs"), "{e}");
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { pool: STOCHASTIC, kernel_size: 2 }",
            vec![Blob::new(&shape)],
        ));
        assert!(e.contains("MAX or AVE"), "{e}");
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { pool: MAX, kernel_size: 3 }",
            vec![Blob::new(&[1, 1, 2, 5, 5])],
        ));
        assert!(
            e.contains("kernel 3 is larger than the padded input 2 along spatial axis 0"),
            "{e}"
        );
        let e = err_text(Harness::new(
            "type: Pooling\npooling_param: { pool: MAX, kernel_size: 2 }",
            vec![Blob::new(&[1, 1, 2, 5, 5, 5])],
        ));
        assert!(e.contains("Caffe 1.0 pools only 4-D blobs"), "{e}");
    }

    #[test]
    fn three_d_gradients() {
        for pool in ["MAX", "AVE"] {
            check_layer_with(
                &format!("type: Pooling\npooling_param: {{ pool: {pool}, kernel_size: 3, stride: 2, pad: 1 }}"),
                &[&[2, 2, 4, 5, 3]],
                &checker(),
            );
        }
    }
}
