//! Per-plane pooling kernels (Caffe's window rules, see [`super::pooling`]).
//!
//! MAX and AVE run one output row at a time: each input row the row's windows touch is split
//! into `stride` phases (padded with -inf or 0), so window column `kx` of every output in the
//! row is one contiguous run, and the compare-select (or add) over the row vectorises. The
//! kernels are compiled twice, for AVX2+FMA (chosen at run time when the CPU has them) and for
//! the baseline target.

use crate::math::scratch::{with_buffer, Scratch};
use crate::math::simd::multiversion;
use std::cell::Cell;

thread_local! {
    static PHASES: Scratch<f32> = const { Cell::new(Vec::new()) };
}

/// Window geometry of one plane.
#[derive(Debug, Clone, Copy, Default)]
pub struct Geom {
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// Window of output row/col `o` along one axis: `(start, end, divisor extent)`, clipped to
    /// the input; the extent is clipped to the padded input only (Caffe's AVE divisor).
    fn span(o: usize, s: usize, k: usize, p: usize, n: usize) -> (usize, usize, usize) {
        let start = (o * s) as isize - p as isize;
        let end = (start + k as isize).min((n + p) as isize);
        let extent = (end - start) as usize;
        let (start, end) = (start.max(0) as usize, (end.min(n as isize)).max(0) as usize);
        (start, end.max(start), extent)
    }
    pub fn rows(&self, y: usize) -> (usize, usize, usize) {
        Self::span(y, self.sh, self.kh, self.ph, self.h)
    }
    pub fn cols(&self, x: usize) -> (usize, usize, usize) {
        Self::span(x, self.sw, self.kw, self.pw, self.w)
    }

    /// Visits every output `(oy, ox)` with its clipped window `(y0, y1, x0, x1)`.
    pub fn windows(&self, mut f: impl FnMut(usize, usize, [usize; 4])) {
        for oy in 0..self.oh {
            let (y0, y1, _) = self.rows(oy);
            for ox in 0..self.ow {
                let (x0, x1, _) = self.cols(ox);
                f(oy, ox, [y0, y1, x0, x1]);
            }
        }
    }

    /// Length of one phase of a padded input row.
    fn phase_len(&self) -> usize {
        self.ow + (self.kw - 1) / self.sw
    }
}

/// Splits input row `row` into `g.sw` phases of `len`: `ph[r*len + j]` is the padded row's
/// element `j*sw + r` (`fill` outside the row). The part inside the row is a copy (stride 1)
/// or a vectorised de-interleave (stride 2); edges and other strides go element by element.
#[inline(always)]
fn split_phases(g: &Geom, row: &[f32], fill: f32, len: usize, ph: &mut [f32]) {
    let (s, pw) = (g.sw, g.pw);
    let one = |ph: &mut [f32], j: usize| {
        for r in 0..s {
            ph[r * len + j] = row
                .get((j * s + r).wrapping_sub(pw))
                .copied()
                .unwrap_or(fill);
        }
    };
    if s > 2 {
        return (0..len).for_each(|j| one(ph, j));
    }
    // Phase columns j whose s elements all lie inside the row.
    let lo = pw.div_ceil(s).min(len);
    let hi = ((row.len() + pw) / s).clamp(lo, len);
    let src = &row[lo * s - pw..hi * s - pw];
    if s == 1 {
        ph[lo..hi].copy_from_slice(src);
    } else {
        let (even, odd) = ph.split_at_mut(len);
        let it = even[lo..hi].iter_mut().zip(&mut odd[lo..hi]);
        for ((e, o), pair) in it.zip(src.chunks_exact(2)) {
            *e = pair[0];
            *o = pair[1];
        }
    }
    (0..lo).chain(hi..len).for_each(|j| one(ph, j));
}

/// The contiguous run of phase values that window column `kx` reads for the row's outputs.
#[inline(always)]
fn tap<'a>(g: &Geom, ph: &'a [f32], len: usize, kx: usize) -> &'a [f32] {
    let start = (kx % g.sw) * len + kx / g.sw;
    &ph[start..start + g.ow]
}

#[inline(always)]
fn max_rows(g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32], ph: &mut [f32]) {
    let len = g.phase_len();
    for (oy, (best, arg)) in y.chunks_mut(g.ow).zip(mask.chunks_mut(g.ow)).enumerate() {
        let (y0, y1, _) = g.rows(oy);
        for (ox, (b, a)) in best.iter_mut().zip(arg.iter_mut()).enumerate() {
            *b = f32::MIN;
            *a = (y0 * g.w + g.cols(ox).0) as u32;
        }
        for iy in y0..y1 {
            split_phases(g, &x[iy * g.w..(iy + 1) * g.w], f32::NEG_INFINITY, len, ph);
            for kx in 0..g.kw {
                // Index of the element output ox reads: base + ox*sw (wraps for padding,
                // which never wins).
                let base = ((iy * g.w + kx) as u32).wrapping_sub(g.pw as u32);
                max_tap(best, arg, tap(g, ph, len, kx), base, g.sw as u32);
            }
        }
    }
}

/// One window column for a row of outputs: where `v[i] > best[i]` (strictly; NaN never),
/// `best[i] = v[i]` and `arg[i] = base + i*step`. Blends and plain stores (the compiler's own
/// vectorisation of this loop uses masked stores, which are slow).
#[inline(always)]
fn max_tap(best: &mut [f32], arg: &mut [u32], v: &[f32], base: u32, step: u32) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        done = unsafe { max_tap_avx2(best, arg, v, base, step) };
    }
    let it = best.iter_mut().zip(arg.iter_mut()).zip(v).enumerate();
    for (i, ((b, a), &x)) in it.skip(done) {
        if x > *b {
            *b = x;
            *a = base.wrapping_add(i as u32 * step);
        }
    }
}

/// The AVX2 body of [`max_tap`] over whole groups of 8; returns how many it did.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_tap_avx2(
    best: &mut [f32],
    arg: &mut [u32],
    v: &[f32],
    base: u32,
    step: u32,
) -> usize {
    use std::arch::x86_64::*;
    let n = best.len().min(arg.len()).min(v.len()) / 8 * 8;
    let (bp, ap, vp) = (best.as_mut_ptr(), arg.as_mut_ptr(), v.as_ptr());
    let st = step as i32;
    let lanes = _mm256_setr_epi32(0, st, 2 * st, 3 * st, 4 * st, 5 * st, 6 * st, 7 * st);
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n, within all three slices.
        let (b, x) = (_mm256_loadu_ps(bp.add(i)), _mm256_loadu_ps(vp.add(i)));
        let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(x, b);
        let first = base.wrapping_add(i as u32 * step) as i32;
        let idx = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_set1_epi32(first), lanes));
        let a = _mm256_loadu_ps(ap.add(i) as *const f32);
        _mm256_storeu_ps(bp.add(i), _mm256_blendv_ps(b, x, gt));
        _mm256_storeu_ps(ap.add(i) as *mut f32, _mm256_blendv_ps(a, idx, gt));
        i += 8;
    }
    n
}

#[inline(always)]
fn ave_rows(g: &Geom, x: &[f32], y: &mut [f32], ph: &mut [f32]) {
    let len = g.phase_len();
    for (oy, sum) in y.chunks_mut(g.ow).enumerate() {
        let (y0, y1, ey) = g.rows(oy);
        sum.fill(0.0);
        for iy in y0..y1 {
            split_phases(g, &x[iy * g.w..(iy + 1) * g.w], 0.0, len, ph);
            for kx in 0..g.kw {
                sum.iter_mut()
                    .zip(tap(g, ph, len, kx))
                    .for_each(|(s, v)| *s += v);
            }
        }
        for (ox, s) in sum.iter_mut().enumerate() {
            *s /= (ey * g.cols(ox).2) as f32;
        }
    }
}

multiversion!(fn max_fast(g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32], ph: &mut [f32]) => max_rows);
multiversion!(fn ave_fast(g: &Geom, x: &[f32], y: &mut [f32], ph: &mut [f32]) => ave_rows);

/// MAX over every window of one plane: `y` gets the maxima, `mask` the plane index of the
/// first maximal element in window order (Caffe's strict `>`; the window's first element when
/// none exceeds `f32::MIN`).
pub fn max_plane(g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32]) {
    with_buffer(&PHASES, g.sw * g.phase_len(), |ph| {
        max_fast(g, x, y, mask, ph)
    })
}

/// AVE over every window of one plane (Caffe's divisor: the window clipped to the padded input).
pub fn ave_plane(g: &Geom, x: &[f32], y: &mut [f32]) {
    with_buffer(&PHASES, g.sw * g.phase_len(), |ph| ave_fast(g, x, y, ph))
}

/// `(start + sum x, sum x^2)` over a clipped window (STOCHASTIC TEST starts at
/// `f32::MIN_POSITIVE`, Caffe's guard against dividing by zero).
pub fn window_sums(g: &Geom, x: &[f32], [y0, y1, x0, x1]: [usize; 4], start: f32) -> (f32, f32) {
    let (mut s, mut s2) = (start, 0.0);
    for iy in y0..y1 {
        for v in &x[iy * g.w + x0..iy * g.w + x1] {
            s += v;
            s2 += v * v;
        }
    }
    (s, s2)
}

/// STOCHASTIC, TRAIN: picks the element where the running sum first reaches `u * total`.
pub fn sto_train_plane(g: &Geom, x: &[f32], u: &[f32], y: &mut [f32], mask: &mut [u32]) {
    g.windows(|oy, ox, [y0, y1, x0, x1]| {
        let (total, _) = window_sums(g, x, [y0, y1, x0, x1], 0.0);
        let thres = u[oy * g.ow + ox] * total;
        let mut cum = 0.0;
        let mut arg = y1.saturating_sub(1) * g.w + x1.saturating_sub(1);
        'found: for iy in y0..y1 {
            for ix in x0..x1 {
                cum += x[iy * g.w + ix];
                if cum >= thres {
                    arg = iy * g.w + ix;
                    break 'found;
                }
            }
        }
        y[oy * g.ow + ox] = x[arg];
        mask[oy * g.ow + ox] = arg as u32;
    })
}

/// STOCHASTIC, TEST: `sum x^2 / sum x` over the window.
pub fn sto_test_plane(g: &Geom, x: &[f32], y: &mut [f32]) {
    g.windows(|oy, ox, win| {
        let (s, s2) = window_sums(g, x, win, f32::MIN_POSITIVE);
        y[oy * g.ow + ox] = s2 / s;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain window loop (first strictly greater element wins).
    fn max_reference(g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32]) {
        g.windows(|oy, ox, [y0, y1, x0, x1]| {
            let (mut best, mut arg) = (f32::MIN, (y0 * g.w + x0) as u32);
            for iy in y0..y1 {
                for ix in x0..x1 {
                    if x[iy * g.w + ix] > best {
                        best = x[iy * g.w + ix];
                        arg = (iy * g.w + ix) as u32;
                    }
                }
            }
            y[oy * g.ow + ox] = best;
            mask[oy * g.ow + ox] = arg;
        })
    }

    fn geoms() -> Vec<Geom> {
        let ceil = |n: usize, k: usize, s: usize, p: usize| {
            super::super::pooling::pooled_size(n, k, s, p, true)
        };
        let mut v = Vec::new();
        for (h, w, k, s, p) in [
            (32, 32, [3, 3], [2, 2], [0, 0]),
            (7, 9, [3, 2], [2, 1], [1, 1]),
            (5, 6, [2, 2], [2, 2], [1, 1]),
            (9, 9, [3, 3], [3, 3], [2, 1]),
            (6, 11, [4, 3], [1, 3], [0, 2]),
            (4, 5, [4, 5], [1, 1], [0, 0]),
        ] {
            v.push(Geom {
                h,
                w,
                kh: k[0],
                kw: k[1],
                sh: s[0],
                sw: s[1],
                ph: p[0],
                pw: p[1],
                oh: ceil(h, k[0], s[0], p[0]),
                ow: ceil(w, k[1], s[1], p[1]),
            });
        }
        v
    }

    /// Both compiled copies of the row kernels give the reference's maxima, argmax indices
    /// (ties included) and averages.
    #[test]
    fn row_kernels_match_the_window_loop() {
        for g in geoms() {
            // Few distinct values, so windows hold ties.
            let x: Vec<f32> = (0..g.h * g.w).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let n = g.oh * g.ow;
            let (mut y0, mut m0) = (vec![0.0; n], vec![0u32; n]);
            max_reference(&g, &x, &mut y0, &mut m0);
            let mut ph = vec![0.0; g.sw * g.phase_len()];
            let (mut y1, mut m1) = (vec![0.0; n], vec![0u32; n]);
            max_rows(&g, &x, &mut y1, &mut m1, &mut ph);
            let (mut y2, mut m2) = (vec![0.0; n], vec![0u32; n]);
            max_plane(&g, &x, &mut y2, &mut m2);
            assert_eq!((&y1, &m1), (&y0, &m0), "{g:?}");
            assert_eq!((&y2, &m2), (&y0, &m0), "{g:?}");
            let mut a0 = vec![0.0; n];
            g.windows(|oy, ox, [y0, y1, x0, x1]| {
                let (s, _) = window_sums(&g, &x, [y0, y1, x0, x1], 0.0);
                let area = g.rows(oy).2 * g.cols(ox).2;
                a0[oy * g.ow + ox] = s / area as f32;
            });
            let (mut a1, mut a2) = (vec![0.0; n], vec![0.0; n]);
            ave_rows(&g, &x, &mut a1, &mut ph);
            ave_plane(&g, &x, &mut a2);
            crate::testing::assert_close(&a1, &a0, 1e-5);
            crate::testing::assert_close(&a2, &a0, 1e-5);
        }
    }
}
