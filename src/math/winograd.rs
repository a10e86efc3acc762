//! Winograd minimal filtering F(4x4, 3x3) for stride-1, undilated 3x3 convolutions, over the six
//! points 0, 1, -1, 2, -2, inf (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016). (F(2x2, 5x5) over the same points was measured too and lost to im2col +
//! GEMM on every 5x5 layer of LeNet, CIFAR10-quick and CaffeNet: it writes 36 transformed values
//! per 4 outputs.)
//!
//! A forward pass runs in three phases over a chunk of whole images:
//! 1. every 6x6 input tile (tiles overlap by 2) of 8 channels at a time is transformed,
//!    `V = B^T d B`, into 36 matrices `V[xi]` of `tiles x C/group` (per group);
//! 2. one GEMM per position `xi` and group: `M[xi] = V[xi] U[xi]`, where `U[xi]` (`C/g x K/g`) holds
//!    the transformed weights `G w G^T` (cached by the layer, see [`WeightCache`]);
//! 3. every tile's 36 values are transformed back, `Y = A^T M A`, into an m x m output tile, plus
//!    the bias.
//!
//! That is 36 multiplies per 16 outputs and input channel instead of 144: 4x fewer (less the
//! waste of partial edge tiles). The transforms are exact in
//! real arithmetic; in f32 the result differs from im2col + GEMM by rounding only (a few ulps of
//! the largest partial sums). The backward passes stay im2col + GEMM.

use super::im2col::ConvGeom;
use super::scratch::{with_buffer, Scratch};
use super::simd::multiversion;
use rayon::prelude::*;
use std::cell::Cell;

/// Channels handled together (one AVX vector).
const L: usize = 8;
type Lanes = [f32; L];
/// Side of a transformed tile (`m + r - 1`).
const N: usize = 6;
/// Transformed positions per tile.
const XI: usize = N * N;
/// Below this many input or output channels per group the transforms cost more than they save.
pub const MIN_CHANNELS: usize = 16;
thread_local! {
    /// Floats of V and M one chunk of images may use (at least one image per chunk; per
    /// thread so tests can force chunking).
    static CHUNK_LIMIT: Cell<usize> = const { Cell::new(1 << 22) };
    static PAD: Scratch<Lanes> = const { Cell::new(Vec::new()) };
    static VBUF: Scratch<f32> = const { Cell::new(Vec::new()) };
    static MBUF: Scratch<f32> = const { Cell::new(Vec::new()) };
}

/// Output tile side.
const M: usize = 4;
/// Kernel side.
const R: usize = N + 1 - M;

/// A 3x3 convolution run by Winograd: `num` images of `geom`, `co` outputs in `group` groups.
#[derive(Debug, Clone, Copy)]
pub struct WinoConv {
    pub geom: ConvGeom,
    pub co: usize,
    pub group: usize,
    pub num: usize,
}

/// The tile grid of one chunk.
#[derive(Debug, Clone, Copy)]
struct Tiling {
    th: usize,
    tw: usize,
    /// Padded input plane (covers every tile).
    hp: usize,
    wp: usize,
    cg: usize,
    kg: usize,
    groups: usize,
    /// Tiles in the chunk.
    nt: usize,
}

impl Tiling {
    fn tiles(&self) -> usize {
        self.th * self.tw
    }
}

#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: every parallel task writes a disjoint set of elements through it (see the callers).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl WinoConv {
    /// Whether Winograd applies and pays: a 3x3 kernel, stride 1, no dilation and at least
    /// [`MIN_CHANNELS`] input and output channels per group. Off when [`set_enabled`] said so
    /// or the environment has `CREMA_NO_WINOGRAD=1`.
    pub fn applies(geom: &ConvGeom, co: usize, group: usize) -> bool {
        let plain = geom.stride_h == 1
            && geom.stride_w == 1
            && geom.dilation_h == 1
            && geom.dilation_w == 1
            && geom.kernel_h == R
            && geom.kernel_w == R;
        let (cg, kg) = (geom.channels / group.max(1), co / group.max(1));
        enabled() && plain && cg >= MIN_CHANNELS && kg >= MIN_CHANNELS && geom.col_cols() > 0
    }

    fn cg(&self) -> usize {
        self.geom.channels / self.group
    }
    fn kg(&self) -> usize {
        self.co / self.group
    }

    /// Length of the transformed weights.
    pub fn u_len(&self) -> usize {
        XI * self.co * self.cg()
    }

    fn tiling(&self, nb: usize) -> Tiling {
        let (th, tw) = (self.geom.out_h().div_ceil(M), self.geom.out_w().div_ceil(M));
        Tiling {
            th,
            tw,
            hp: th * M + R - 1,
            wp: tw * M + R - 1,
            cg: self.cg(),
            kg: self.kg(),
            groups: self.group,
            nt: nb * th * tw,
        }
    }

    /// `U[xi][g][c][k] = (G w[g*K/g + k][c] G^T)[xi]` for weights `K x C/g x 3 x 3`.
    pub fn transform_weights(&self, w: &[f32], u: &mut [f32]) {
        let r = R;
        let g = g_matrix(r);
        let (cg, kg) = (self.cg(), self.kg());
        assert!(w.len() >= self.co * cg * r * r && u.len() >= self.u_len());
        let up = SyncPtr(u.as_mut_ptr());
        (0..self.group * cg).into_par_iter().for_each(|gc| {
            // SAFETY: task `gc` writes only the elements U[xi][g][c][..] of its own (g, c).
            unsafe { weight_unit(w, &g, r, cg, kg, self.group, gc, up) }
        });
    }

    /// `out = conv(x, w) + bias` with `u` the transformed weights of `w`.
    pub fn forward(&self, x: &[f32], u: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let t1 = self.tiling(1);
        let per_image = XI * t1.tiles() * (self.geom.channels + self.co);
        let nb = (CHUNK_LIMIT.with(Cell::get) / per_image.max(1)).clamp(1, self.num.max(1));
        let dl = self.geom.channels * self.geom.height * self.geom.width;
        let ol = self.co * self.geom.col_cols();
        let bias = bias.map(|b| &b[..self.co]);
        assert!(u.len() >= self.u_len() && x.len() >= self.num * dl && out.len() >= self.num * ol);
        for first in (0..self.num).step_by(nb) {
            let n = nb.min(self.num - first);
            let t = self.tiling(n);
            let xs = &x[first * dl..(first + n) * dl];
            let os = &mut out[first * ol..(first + n) * ol];
            with_buffer(&VBUF, XI * t.nt * self.geom.channels, |v| {
                with_buffer(&MBUF, XI * t.nt * self.co, |mm| {
                    self.chunk(&t, n, xs, u, bias, v, mm, os)
                })
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &self,
        t: &Tiling,
        n: usize,
        x: &[f32],
        u: &[f32],
        bias: Option<&[f32]>,
        v: &mut [f32],
        mm: &mut [f32],
        out: &mut [f32],
    ) {
        let (cb, kb) = (t.cg.div_ceil(L), t.kg.div_ceil(L));
        let geom = &self.geom;
        let vp = SyncPtr(v.as_mut_ptr());
        (0..n * t.groups * cb).into_par_iter().for_each(|unit| {
            with_buffer(&PAD, t.hp * t.wp, |pad| {
                // SAFETY: unit (image, group, channel block) writes only V[..][g][its tiles]
                // [its channels]; `v` holds XI * nt * C floats.
                unsafe { input_unit(x, geom, t, unit, pad, vp) }
            })
        });
        let v = &*v;
        mm.par_chunks_mut(t.nt * t.kg)
            .enumerate()
            .for_each(|(xg, m)| {
                let a = &v[xg * t.nt * t.cg..(xg + 1) * t.nt * t.cg];
                let b = &u[xg * t.cg * t.kg..(xg + 1) * t.cg * t.kg];
                super::gemm(false, false, t.nt, t.kg, t.cg, 1.0, a, b, 0.0, m);
            });
        let op = SyncPtr(out.as_mut_ptr());
        let mm = &*mm;
        let (oh, ow) = (geom.out_h(), geom.out_w());
        (0..n * t.groups * kb).into_par_iter().for_each(|unit| {
            // SAFETY: unit (image, group, output block) writes only its own output planes.
            unsafe { output_unit(mm, t, oh, ow, unit, bias, op) }
        });
    }
}

static SWITCH: super::Switch = super::Switch::new("CREMA_NO_WINOGRAD");

/// Whether convolutions may run by Winograd (see [`WinoConv::applies`]).
pub fn enabled() -> bool {
    SWITCH.on()
}

/// Turns Winograd on or off for the whole process (benchmarks compare it with im2col + GEMM).
pub fn set_enabled(on: bool) {
    SWITCH.set(on)
}

/// The 6 x r filter transform `G` (its row `j` scaled by `1 / prod_{l != j}(a_j - a_l)` over
/// the points `a = 0, 1, -1, 2, -2`; the last row is the point at infinity).
fn g_matrix(r: usize) -> Vec<f32> {
    const P: [f64; N - 1] = [0.0, 1.0, -1.0, 2.0, -2.0];
    let mut g = vec![0.0f32; N * r];
    for (j, &a) in P.iter().enumerate() {
        let f: f64 = P
            .iter()
            .enumerate()
            .filter(|&(l, _)| l != j)
            .map(|(_, &b)| a - b)
            .product();
        for k in 0..r {
            g[j * r + k] = (a.powi(k as i32) / f) as f32;
        }
    }
    g[(N - 1) * r + r - 1] = 1.0;
    g
}

/// Transforms the kernels of one (group, input channel) for every output channel of the group.
///
/// # Safety
/// `up` addresses the `XI * K * C/g` transformed weights and no other task writes this
/// `(g, c)`'s elements.
#[allow(clippy::too_many_arguments)]
unsafe fn weight_unit(
    w: &[f32],
    g: &[f32],
    r: usize,
    cg: usize,
    kg: usize,
    groups: usize,
    gc: usize,
    up: SyncPtr,
) {
    let (grp, c) = (gc / cg, gc % cg);
    let rr = r * r;
    let mut tmp = vec![0.0f32; N * r];
    let mut res = [0.0f32; XI];
    for k in 0..kg {
        let ker = &w[((grp * kg + k) * cg + c) * rr..][..rr];
        // tmp = G ker (N x r), res = tmp G^T (N x N).
        for i in 0..N {
            for b in 0..r {
                tmp[i * r + b] = (0..r).map(|a| g[i * r + a] * ker[a * r + b]).sum();
            }
        }
        for i in 0..N {
            for j in 0..N {
                res[i * N + j] = (0..r).map(|b| tmp[i * r + b] * g[j * r + b]).sum();
            }
        }
        for (xi, val) in res.iter().enumerate() {
            *up.0.add(((xi * groups + grp) * cg + c) * kg + k) = *val;
        }
    }
}

/// `B^T d` for one column of six lane vectors.
#[inline(always)]
fn bt(d: [Lanes; N]) -> [Lanes; N] {
    let mut y = [[0.0; L]; N];
    for l in 0..L {
        let [d0, d1, d2, d3, d4, d5] = [d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]];
        let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
        let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
        y[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        y[1][l] = a + b;
        y[2][l] = a - b;
        y[3][l] = c + e;
        y[4][l] = c - e;
        y[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    y
}

/// `A^T v`.
#[inline(always)]
fn at4(v: [Lanes; N]) -> [Lanes; 4] {
    let mut y = [[0.0; L]; 4];
    for l in 0..L {
        let (t1, t2) = (v[1][l] + v[2][l], v[1][l] - v[2][l]);
        let (t3, t4) = (v[3][l] + v[4][l], v[3][l] - v[4][l]);
        y[0][l] = v[0][l] + t1 + t3;
        y[1][l] = t2 + 2.0 * t4;
        y[2][l] = t1 + 4.0 * t3;
        y[3][l] = t2 + 8.0 * t4 + v[5][l];
    }
    y
}

multiversion! {
    /// Phase 1 for one (image, group, block of 8 channels): pads the channels into `pad`
    /// (lane-interleaved) and writes the transform of every tile into V.
    unsafe fn input_unit(x: &[f32], geom: &ConvGeom, t: &Tiling, unit: usize, pad: &mut [Lanes], vp: SyncPtr) => input_unit_body
}

#[inline(always)]
unsafe fn input_unit_body(
    x: &[f32],
    geom: &ConvGeom,
    t: &Tiling,
    unit: usize,
    pad: &mut [Lanes],
    vp: SyncPtr,
) {
    let cbs = t.cg.div_ceil(L);
    let (img, grp, cb) = (unit / (t.groups * cbs), (unit / cbs) % t.groups, unit % cbs);
    let lanes = (t.cg - cb * L).min(L);
    let (h, w) = (geom.height, geom.width);
    pad.fill([0.0; L]);
    for l in 0..lanes {
        let ch = grp * t.cg + cb * L + l;
        let plane = &x[(img * geom.channels + ch) * h * w..][..h * w];
        for (y, row) in plane.chunks_exact(w).enumerate() {
            let dst = &mut pad[(y + geom.pad_h) * t.wp + geom.pad_w..][..w];
            for (d, s) in dst.iter_mut().zip(row) {
                d[l] = *s;
            }
        }
    }
    let c0 = cb * L;
    for ty in 0..t.th {
        for tx in 0..t.tw {
            let mut d = [[[0.0; L]; N]; N];
            for (i, row) in d.iter_mut().enumerate() {
                row.copy_from_slice(&pad[(ty * M + i) * t.wp + tx * M..][..N]);
            }
            let mut cols = [[[0.0; L]; N]; N];
            for j in 0..N {
                let c = bt([d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]]);
                for i in 0..N {
                    cols[i][j] = c[i];
                }
            }
            let tile = img * t.tiles() + ty * t.tw + tx;
            for (i, row) in cols.iter().enumerate() {
                for (j, val) in bt(*row).iter().enumerate() {
                    let xg = (i * N + j) * t.groups + grp;
                    let dst = vp.0.add((xg * t.nt + tile) * t.cg + c0);
                    std::ptr::copy_nonoverlapping(val.as_ptr(), dst, lanes);
                }
            }
        }
    }
}

multiversion! {
    /// Phase 3 for one (image, group, block of 8 output channels): the inverse transform of
    /// every tile, plus the bias, into the output planes.
    unsafe fn output_unit(mm: &[f32], t: &Tiling, oh: usize, ow: usize, unit: usize, bias: Option<&[f32]>, op: SyncPtr) => output_unit_body
}

#[inline(always)]
unsafe fn output_unit_body(
    mm: &[f32],
    t: &Tiling,
    oh: usize,
    ow: usize,
    unit: usize,
    bias: Option<&[f32]>,
    op: SyncPtr,
) {
    let kbs = t.kg.div_ceil(L);
    let (img, grp, kb) = (unit / (t.groups * kbs), (unit / kbs) % t.groups, unit % kbs);
    let lanes = (t.kg - kb * L).min(L);
    let k0 = grp * t.kg + kb * L;
    let mut b = [0.0f32; L];
    if let Some(bias) = bias {
        b[..lanes].copy_from_slice(&bias[k0..k0 + lanes]);
    }
    let plane = oh * ow;
    let base = op.0.add((img * t.groups * t.kg + k0) * plane);
    for ty in 0..t.th {
        for tx in 0..t.tw {
            let tile = img * t.tiles() + ty * t.tw + tx;
            let mut d = [[[0.0; L]; N]; N];
            for (xi, v) in d.iter_mut().flatten().enumerate() {
                let src = &mm[((xi * t.groups + grp) * t.nt + tile) * t.kg + kb * L..];
                if lanes == L {
                    // A fixed-length copy: vector moves, not a call into memmove.
                    v.copy_from_slice(&src[..L]);
                } else {
                    v[..lanes].copy_from_slice(&src[..lanes]);
                }
            }
            let mut s = [[[0.0; L]; N]; M];
            for j in 0..N {
                let c = at4([d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]]);
                for i in 0..M {
                    s[i][j] = c[i];
                }
            }
            for (i, row) in s.iter().enumerate() {
                let oy = ty * M + i;
                if oy >= oh {
                    break;
                }
                let y = at4(*row);
                let cols = (ow - tx * M).min(M);
                for (jj, val) in y.iter().enumerate().take(cols) {
                    let dst = base.add(oy * ow + tx * M + jj);
                    for l in 0..lanes {
                        *dst.add(l * plane) = val[l] + b[l];
                    }
                }
            }
        }
    }
}

/// The transformed weights of one layer, recomputed only when the weights change: the transform
/// is kept with a copy of the weights it was made from and reused while they are bit-identical
/// (the solver and weight loading write the weights in place between forwards).
#[derive(Debug, Default)]
pub struct WeightCache {
    src: Vec<f32>,
    u: Vec<f32>,
    key: Option<(usize, usize, usize)>,
}

impl WeightCache {
    /// `U` for `w` under `conv`, transformed again if `w` or the shapes changed.
    pub fn get(&mut self, conv: &WinoConv, w: &[f32]) -> &[f32] {
        let key = Some((conv.co, conv.geom.channels, conv.group));
        if self.key != key || !same_bits(&self.src, w) {
            self.src.clear();
            self.src.extend_from_slice(w);
            self.u.resize(conv.u_len(), 0.0);
            conv.transform_weights(w, &mut self.u);
            self.key = key;
        }
        &self.u
    }
}

/// True when `a` and `b` hold the same bits (NaN and -0.0 included).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.chunks(64).zip(b.chunks(64)).all(|(x, y)| {
            x.iter()
                .zip(y)
                .fold(0u32, |acc, (p, q)| acc | (p.to_bits() ^ q.to_bits()))
                == 0
        })
}

#[cfg(test)]
#[path = "winograd_tests.rs"]
mod tests;
