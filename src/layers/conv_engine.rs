//! The im2col + GEMM engine shared by Convolution, Deconvolution (and their backward passes).
//!
//! Speed: with at least as many images as threads, the batch is cut into one contiguous part
//! per thread and each part runs on its own thread with single-threaded OpenBLAS: every image
//! is unfolded into a small, cache-resident column buffer and multiplied straight into its
//! output (no reordering copies), and each part accumulates its own weight gradient, summed at
//! the end. Small images are grouped so one GEMM sees at least [`GEMM_COLS`] columns (their
//! outputs are then reordered). With fewer images than threads, each GEMM is split across the
//! threads instead. The column buffers are per-thread scratch reused across calls (Caffe shares
//! one col buffer the same way), so the hot path allocates nothing once warm.

use crate::math::conv_gemm;
use crate::math::im2col::{batch_to_rows, col2im_batch_add, im2col_batch, rows_to_batch, ConvGeom};
use crate::math::scratch::{with_buffer, Scratch};
use crate::math::{self};
use std::cell::Cell;

thread_local! {
    /// Largest column buffer (in floats) one chunk of images may need; bigger chunks are
    /// split (per thread so tests can force chunking).
    static COL_LIMIT: Cell<usize> = const { Cell::new(1 << 22) };
    static COL: Scratch<f32> = const { Cell::new(Vec::new()) };
    static BUF: Scratch<f32> = const { Cell::new(Vec::new()) };
    static PARTIALS: Scratch<f32> = const { Cell::new(Vec::new()) };
    static FLIPPED: Scratch<f32> = const { Cell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Tests turn [`conv_gemm`] off for convolutions started on one thread.
    static DIRECT: Cell<bool> = const { Cell::new(true) };
}

/// Whether a part may run on [`conv_gemm`].
fn direct_enabled() -> bool {
    #[cfg(test)]
    if !DIRECT.with(Cell::get) {
        return false;
    }
    conv_gemm::enabled()
}

/// Small images are grouped until one GEMM has at least this many columns.
const GEMM_COLS: usize = 256;

/// [`with_buffer`] for the column-side and out-side scratch buffers.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    with_buffer(&COL, a, |col| with_buffer(&BUF, b, |buf| f(col, buf)))
}

/// How a batch is spread: `parts` contiguous runs of `per` images (in parallel when more than
/// one), each processed `nb` images per GEMM (the GEMMs split across threads only when the
/// parts do not, see [`math::nested`]).
#[derive(Debug, Clone, Copy)]
struct Plan {
    parts: usize,
    per: usize,
    nb: usize,
}

/// Im2col + GEMM for one layer. The "data" side is the side im2col reads (a convolution's
/// bottom, a deconvolution's top): `geom` describes one of its images. The "out" side has `co`
/// channels and `out_h*out_w` positions per image. Weights are `co x (K/group)` with
/// `K = geom.col_rows()` in both layers.
#[derive(Debug, Clone, Copy)]
pub struct ConvEngine {
    pub geom: ConvGeom,
    pub co: usize,
    pub group: usize,
    pub num: usize,
}

/// One chunk of a part: its images and the part's slices of the two per-image outputs.
struct Chunk<'a> {
    first: usize,
    nb: usize,
    col: &'a mut [f32],
    buf: &'a mut [f32],
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
    fn out_len(&self) -> usize {
        self.co * self.p()
    }

    fn plan(&self) -> Plan {
        let threads = rayon::current_num_threads().max(1);
        let num = self.num.max(1);
        let (k, p) = (self.k().max(1), self.p().max(1));
        let fit = (COL_LIMIT.with(Cell::get) / (k * p)).max(1);
        if threads > 1 && num >= threads {
            let per = num.div_ceil(threads);
            let nb = GEMM_COLS.div_ceil(p).clamp(1, per).min(fit);
            Plan {
                parts: num.div_ceil(per),
                per,
                nb,
            }
        } else {
            Plan {
                parts: 1,
                per: num,
                nb: fit.min(num),
            }
        }
    }

    /// Runs `f` on every chunk of the batch. `out` (when given) holds `stride` values per
    /// image; each part gets its images' slice. `dw` (when given) is the weight gradient: the
    /// first part accumulates into it, the others into zeroed partial sums added at the end.
    fn drive<F>(&self, stride: usize, out: Option<&mut [f32]>, dw: Option<&mut [f32]>, f: F)
    where
        F: Fn(&mut Chunk, Option<&mut [f32]>, Option<&mut [f32]>) + Sync,
    {
        self.drive_plan(self.plan(), true, stride, out, dw, f)
    }

    /// The plan for the [`conv_gemm`] route (one chunk per part, no scratch), when it applies:
    /// it runs each part on one thread, so it needs the batch spread over the threads (or a
    /// single thread).
    fn direct_plan(&self) -> Option<Plan> {
        let plan = self.plan();
        let one = rayon::current_num_threads() == 1 || math::nested();
        (direct_enabled() && (plan.parts > 1 || one)).then_some(Plan {
            nb: plan.per,
            ..plan
        })
    }

    /// The flipped sweep for the data gradient, where it exists and pays.
    fn flipped(&self) -> Option<ConvGeom> {
        conv_gemm::flipped_sweep(&self.geom).filter(|_| conv_gemm::flipped_pays(&self.geom))
    }

    /// [`Self::drive`] with a given plan; without `scratch` the chunks get empty buffers.
    fn drive_plan<F>(
        &self,
        plan: Plan,
        scratch: bool,
        stride: usize,
        out: Option<&mut [f32]>,
        mut dw: Option<&mut [f32]>,
        f: F,
    ) where
        F: Fn(&mut Chunk, Option<&mut [f32]>, Option<&mut [f32]>) + Sync,
    {
        let (k, p) = (self.k(), self.p());
        let sizes = if scratch {
            (k * plan.nb * p, self.co * plan.nb * p)
        } else {
            (0, 0)
        };
        let run = |s: usize, n: usize, mut out: Option<&mut [f32]>, mut dw: Option<&mut [f32]>| {
            with_scratch(sizes.0, sizes.1, |col, buf| {
                for first in (s..s + n).step_by(plan.nb) {
                    let nb = plan.nb.min(s + n - first);
                    let o = out
                        .as_deref_mut()
                        .map(|o| &mut o[(first - s) * stride..(first - s + nb) * stride]);
                    let mut c = Chunk {
                        first,
                        nb,
                        col: &mut col[..sizes.0.min(k * nb * p)],
                        buf: &mut buf[..sizes.1.min(self.co * nb * p)],
                    };
                    f(&mut c, o, dw.as_deref_mut());
                }
            })
        };
        if plan.parts == 1 {
            return run(0, self.num, out, dw);
        }
        let wl = dw.as_ref().map_or(0, |d| d.len());
        with_buffer(&PARTIALS, (plan.parts - 1) * wl, |partials| {
            partials.fill(0.0);
            let (mut out, mut first, mut rest) = (out, dw.as_deref_mut(), &mut *partials);
            rayon::scope(|sc| {
                for part in 0..plan.parts {
                    let s = part * plan.per;
                    let n = plan.per.min(self.num - s);
                    let o = out.take().map(|o| {
                        let (a, b) = o.split_at_mut(n * stride);
                        out = Some(b);
                        a
                    });
                    let acc = if part == 0 {
                        first.take()
                    } else if wl > 0 {
                        let (a, b) = std::mem::take(&mut rest).split_at_mut(wl);
                        rest = b;
                        Some(a)
                    } else {
                        None
                    };
                    let run = &run;
                    sc.spawn(move |_| run(s, n, o, acc));
                }
            });
            if let Some(dw) = dw {
                for part in partials.chunks(wl.max(1)) {
                    math::axpy(1.0, part, dw);
                }
            }
        })
    }

    /// The column matrix (`K x nb*P`) of images `c.first..` of `src`: a single image itself
    /// for a 1x1 sweep, else unfolded into `c.col`.
    fn unfold<'a>(&self, src: &'a [f32], c: &'a mut Chunk) -> &'a [f32] {
        let dl = self.data_len();
        let imgs = &src[c.first * dl..(c.first + c.nb) * dl];
        if c.nb == 1 && self.geom.is_pointwise() {
            return imgs;
        }
        im2col_batch(imgs, &self.geom, c.nb, c.col);
        c.col
    }

    /// The out-side values of images `c.first..` of `src` as a `co x nb*P` matrix: a single
    /// image itself, else reordered into `buf`.
    fn out_rows<'a>(
        &self,
        src: &'a [f32],
        first: usize,
        nb: usize,
        buf: &'a mut [f32],
    ) -> &'a [f32] {
        let ol = self.out_len();
        let imgs = &src[first * ol..(first + nb) * ol];
        if nb == 1 {
            return imgs;
        }
        batch_to_rows(imgs, nb, self.co, self.p(), buf);
        buf
    }

    /// `dst (+)= W * col (+ bias)` for the chunk's images (`dst` in image layout).
    #[allow(clippy::too_many_arguments)]
    fn w_col_into(
        &self,
        w: &[f32],
        col: &[f32],
        nb: usize,
        bias: Option<&[f32]>,
        add: bool,
        buf: &mut [f32],
        dst: &mut [f32],
    ) {
        let p = self.p();
        if nb > 1 {
            self.gemm_w_col(w, col, nb * p, 0.0, buf);
            return rows_to_batch(buf, nb, self.co, p, bias, add, dst);
        }
        self.gemm_w_col(w, col, p, if add { 1.0 } else { 0.0 }, dst);
        if let Some(b) = bias {
            for (plane, b) in dst.chunks_mut(p.max(1)).zip(b) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
    }

    /// `out[g] = W[g] * col[g] + beta * out[g]` for every group over `cols` columns.
    fn gemm_w_col(&self, w: &[f32], col: &[f32], cols: usize, beta: f32, out: &mut [f32]) {
        let (kg, cg) = (self.k() / self.group, self.co / self.group);
        for g in 0..self.group {
            let (a, b, c) = (
                &w[g * cg * kg..],
                &col[g * kg * cols..],
                &mut out[g * cg * cols..],
            );
            math::gemm(false, false, cg, cols, kg, 1.0, a, b, beta, c);
        }
    }

    /// `col[g] = W[g]^T * out[g]`.
    fn gemm_wt_out(&self, w: &[f32], out: &[f32], cols: usize, col: &mut [f32]) {
        let (kg, cg) = (self.k() / self.group, self.co / self.group);
        for g in 0..self.group {
            let (a, b, c) = (
                &w[g * cg * kg..],
                &out[g * cg * cols..],
                &mut col[g * kg * cols..],
            );
            math::gemm(true, false, kg, cols, cg, 1.0, a, b, 0.0, c);
        }
    }

    /// `dW[g] += out[g] * col[g]^T`.
    fn gemm_dw(&self, out: &[f32], col: &[f32], cols: usize, dw: &mut [f32]) {
        let (kg, cg) = (self.k() / self.group, self.co / self.group);
        for g in 0..self.group {
            let (a, b, c) = (
                &out[g * cg * cols..],
                &col[g * kg * cols..],
                &mut dw[g * cg * kg..],
            );
            math::gemm(false, true, cg, kg, cols, 1.0, a, b, 1.0, c);
        }
    }

    /// `ddata += col2im(W^T * out)` for the chunk's images (`out` as `co x nb*P` rows).
    fn fold_wt_out(&self, w: &[f32], out: &[f32], c: &mut Chunk, ddata: &mut [f32]) {
        self.gemm_wt_out(w, out, c.nb * self.p(), c.col);
        col2im_batch_add(c.col, &self.geom, c.nb, ddata);
    }

    /// The chunk's images of a batch whose images hold `len` values each.
    fn images<'a>(src: &'a [f32], c: &Chunk, len: usize) -> &'a [f32] {
        &src[c.first * len..(c.first + c.nb) * len]
    }

    /// Runs `f` with the flipped weights of [`conv_gemm::flip_weights`] when `flip` (else with
    /// an empty slice).
    fn with_flipped<R>(&self, w: &[f32], flip: bool, f: impl FnOnce(&[f32]) -> R) -> R {
        with_buffer(&FLIPPED, if flip { w.len() } else { 0 }, |wt| {
            if flip {
                conv_gemm::flip_weights(&self.geom, w, self.co, self.group, wt);
            }
            f(wt)
        })
    }

    /// Convolution forward: `out = conv(data, W) + bias`.
    pub fn conv_forward(&self, data: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        if let Some(plan) = self.direct_plan() {
            let (g, dl) = (&self.geom, self.data_len());
            return self.drive_plan(plan, false, self.out_len(), Some(out), None, |c, o, _| {
                if let Some(o) = o {
                    let x = Self::images(data, c, dl);
                    conv_gemm::forward(g, x, c.nb, w, self.co, self.group, bias, false, o);
                }
            });
        }
        self.drive(self.out_len(), Some(out), None, |c, o, _| {
            let nb = c.nb;
            let buf = std::mem::take(&mut c.buf);
            let col = self.unfold(data, c);
            if let Some(o) = o {
                self.w_col_into(w, col, nb, bias, false, buf, o);
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
        let flip = self.flipped();
        let need = ddata.is_some();
        let weights = dw.is_none() || conv_gemm::weights_pay(self.co / self.group);
        if let Some(plan) = self
            .direct_plan()
            .filter(|_| (!need || flip.is_some()) && weights)
        {
            let (g, dl, ol) = (&self.geom, self.data_len(), self.out_len());
            return self.with_flipped(w, need, |wt| {
                self.drive_plan(plan, false, dl, ddata, dw, |c, dd, dw| {
                    let (x, dy) = (Self::images(data, c, dl), Self::images(dout, c, ol));
                    if let Some(dw) = dw {
                        conv_gemm::backward_weights(g, x, c.nb, dy, self.co, self.group, dw);
                    }
                    if let (Some(dd), Some(gt)) = (dd, &flip) {
                        conv_gemm::backward_data(g, gt, dy, c.nb, wt, self.co, self.group, dd);
                    }
                })
            });
        }
        self.drive(self.data_len(), ddata, dw, |c, dd, dw| {
            let (first, nb) = (c.first, c.nb);
            let buf = std::mem::take(&mut c.buf);
            let dy = self.out_rows(dout, first, nb, buf);
            if let Some(dw) = dw {
                let col = self.unfold(data, c);
                self.gemm_dw(dy, col, nb * self.p(), dw);
            }
            if let Some(dd) = dd {
                self.fold_wt_out(w, dy, c, dd);
            }
        })
    }

    /// Deconvolution forward: `data = col2im(W^T out)` (the bias is added by the layer).
    pub fn deconv_forward(&self, out: &[f32], w: &[f32], data: &mut [f32]) {
        data.fill(0.0);
        if let (Some(plan), Some(gt)) = (self.direct_plan(), &self.flipped()) {
            let (dl, ol) = (self.data_len(), self.out_len());
            return self.with_flipped(w, true, |wt| {
                self.drive_plan(plan, false, dl, Some(data), None, |c, dd, _| {
                    if let Some(dd) = dd {
                        let x = Self::images(out, c, ol);
                        let (co, group) = (self.co, self.group);
                        conv_gemm::backward_data(&self.geom, gt, x, c.nb, wt, co, group, dd);
                    }
                })
            });
        }
        self.drive(self.data_len(), Some(data), None, |c, dd, _| {
            let buf = std::mem::take(&mut c.buf);
            let x = self.out_rows(out, c.first, c.nb, buf);
            if let Some(dd) = dd {
                self.fold_wt_out(w, x, c, dd);
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
        if let Some(plan) = self.direct_plan() {
            let (g, dl, ol) = (&self.geom, self.data_len(), self.out_len());
            return self.drive_plan(plan, false, ol, dout, dw, |c, dx, dw| {
                let x = Self::images(ddata, c, dl);
                if let Some(dw) = dw {
                    let o = Self::images(out, c, ol);
                    conv_gemm::backward_weights(g, x, c.nb, o, self.co, self.group, dw);
                }
                if let Some(dx) = dx {
                    conv_gemm::forward(g, x, c.nb, w, self.co, self.group, None, true, dx);
                }
            });
        }
        self.drive(self.out_len(), dout, dw, |c, dx, dw| {
            let (first, nb) = (c.first, c.nb);
            let buf = std::mem::take(&mut c.buf);
            let col = self.unfold(ddata, c);
            if let Some(dw) = dw {
                let x = self.out_rows(out, first, nb, buf);
                self.gemm_dw(x, col, nb * self.p(), dw);
            }
            if let Some(dx) = dx {
                self.w_col_into(w, col, nb, None, true, buf, dx);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::base_conv::ConvSpec;
    use crate::proto::ConvolutionParameter;

    /// Every product of the engine, for one chunking of the batch.
    fn run_all(e: &ConvEngine, seed: f32) -> [Vec<f32>; 6] {
        let (dl, ol, n) = (e.data_len(), e.out_len(), e.num);
        let wl = e.co * e.k() / e.group;
        let x: Vec<f32> = (0..n * dl).map(|i| (i as f32 * 0.3 + seed).sin()).collect();
        let w: Vec<f32> = (0..wl).map(|i| (i as f32 * 0.7).cos()).collect();
        let dy: Vec<f32> = (0..n * ol).map(|i| (i as f32 * 0.9).sin()).collect();
        let bias: Vec<f32> = (0..e.co).map(|i| i as f32 * 0.5).collect();
        let mut y = vec![0.0; n * ol];
        e.conv_forward(&x, &w, Some(&bias), &mut y);
        let (mut dw, mut dx) = (vec![0.25; wl], vec![0.5; x.len()]);
        e.conv_backward(&dy, &x, &w, Some(&mut dw), Some(&mut dx));
        let mut z = vec![0.0; x.len()];
        e.deconv_forward(&dy, &w, &mut z);
        let (mut dw2, mut dy2) = (vec![0.0; wl], vec![1.0; dy.len()]);
        e.deconv_backward(&x, &dy, &w, Some(&mut dw2), Some(&mut dy2));
        [y, dw, dx, z, dw2, dy2]
    }

    fn engine(yaml: &str, c: usize, h: usize, w: usize, num: usize) -> ConvEngine {
        let p = crate::spec::from_yaml_str::<ConvolutionParameter>(yaml, "t").unwrap();
        let spec = ConvSpec::parse(&p, true).unwrap();
        ConvEngine {
            geom: spec.geom(c, h, w),
            co: spec.num_output,
            group: spec.group,
            num,
        }
    }

    /// Parts, grouped images and forced chunks all give what one image at a time gives.
    #[test]
    fn every_plan_matches_one_image_at_a_time() {
        let cases = [
            (
                "{ num_output: 4, kernel_size: 3, pad: 1, stride: 2, group: 2 }",
                4,
                7,
                6,
            ),
            ("{ num_output: 6, kernel_size: 1 }", 3, 5, 4),
            // Wide enough for the direct weight gradient, padded for the flipped sweep.
            ("{ num_output: 16, kernel_size: 3, pad: 1 }", 3, 5, 6),
            (
                "{ num_output: 7, kernel_size: 5, pad: 2, group: 1 }",
                3,
                6,
                7,
            ),
            (
                "{ num_output: 2, kernel_h: 2, kernel_w: 3, dilation: 2, pad_h: 0, pad_w: 1 }",
                2,
                3,
                9,
            ),
        ];
        for (yaml, c, h, w) in cases {
            for num in [1, 2, 3, 5, 9] {
                let e = engine(yaml, c, h, w, num);
                let pool = |t| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .unwrap()
                };
                // One thread, one image per GEMM: the reference.
                let limit = e.k() * e.p();
                let reference = pool(1).install(|| {
                    COL_LIMIT.with(|l| l.set(limit));
                    DIRECT.with(|d| d.set(false));
                    run_all(&e, 0.1)
                });
                for t in [1, 2, 3] {
                    for direct in [false, true] {
                        let got = pool(t).install(|| {
                            DIRECT.with(|d| d.set(direct));
                            run_all(&e, 0.1)
                        });
                        for (a, b) in got.iter().zip(&reference) {
                            crate::testing::assert_close(a, b, 1e-4);
                        }
                    }
                }
            }
        }
    }
}
