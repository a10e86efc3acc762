//! Per-plane pooling kernels (Caffe's window rules, see [`super::pooling`]).
//!
//! MAX and AVE are separable: a horizontal pass reduces every input row once over the window
//! columns, then a vertical pass reduces the window rows. Outputs go 8 at a time (one AVX
//! register; rows of the intermediate are padded to a multiple of 8). The horizontal pass
//! reads each plane from a padded copy (-inf or 0 around the rows), so window column `kx` of
//! 8 outputs is one strided load (stride 2: one de-interleave gives two columns). MAX keeps
//! Caffe's argmax exactly: the first strictly greater element in row-major window order is
//! the first strictly greater row maximum (taken top to bottom) of the first strictly greater
//! element of that row. AVE backward runs the passes transposed: column sums of
//! `dy / divisor` per input row, then each padded row element gathers the sums of the windows
//! covering it, one stride phase at a time. The kernels are written once over [`Lanes`] and
//! compiled twice: AVX2 intrinsics (chosen at run time when the CPU has AVX2 and FMA) and
//! plain arrays for the baseline target. Several planes go per call (one parallel task). Where
//! the CPU has AVX-512, MAX runs straight over the windows instead (see [`wide`]).

use crate::math::scratch::{with_buffer, Scratch};
use std::cell::Cell;

thread_local! {
    static FLOATS: Scratch<f32> = const { Cell::new(Vec::new()) };
    static INDICES: Scratch<u32> = const { Cell::new(Vec::new()) };
}

/// Outputs per chunk (one AVX register of f32).
const L: usize = 8;

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

    /// Output row length padded to whole chunks.
    fn owp(&self) -> usize {
        self.ow.div_ceil(L) * L
    }

    /// Length of one phase of a padded input row (whole chunks of outputs for every tap),
    /// rounded up to whole chunks.
    fn phase_len(&self) -> usize {
        (self.owp() + (self.kw - 1) / self.sw).div_ceil(L) * L
    }

    /// Length of a padded input row: `pw` fill, the row, then fill past every value that a
    /// strided load of a tap reads (16 from a tap's start for stride 2).
    fn padded_w(&self) -> usize {
        (self.pw + self.w).max(self.owp() * self.sw + self.kw + 2 * L)
    }

    /// f32 scratch of the plane kernels: the phases of one row (AVE backward), one padded
    /// output row per input row, then the padded input plane (forward).
    fn floats(&self) -> usize {
        self.sw * self.phase_len() + self.h * (self.owp() + self.padded_w())
    }

    /// u32 scratch: the [`Plan`] tables, then a padded row of indices per input row.
    fn indices(&self) -> usize {
        2 * self.owp() + 2 * self.sw * self.phase_len() + self.h * self.owp()
    }
}

/// Row tables of one geometry, built once per call in the u32 scratch.
struct Plan<'a> {
    s: usize,
    pw: usize,
    /// Length of one phase.
    len: usize,
    owp: usize,
    /// Phase columns `lo..hi` where every phase lies inside the row (stride 1 and 2 move them
    /// in bulk; empty otherwise).
    bulk: (usize, usize),
    /// The other phase positions inside the row, as pairs `(phase offset, row element)`.
    edges: &'a [u32],
    /// Per padded output column: `ox*sw - pw` (wrapping).
    colbase: &'a [u32],
    /// Per padded output column: the first window column inside the row.
    kinit: &'a [u32],
}

impl<'a> Plan<'a> {
    /// Builds the tables at the front of `us`; returns them and the rest of `us`.
    #[inline(always)]
    fn new(g: &Geom, us: &'a mut [u32]) -> (Self, &'a mut [u32]) {
        let (s, pw, w, len, owp) = (g.sw, g.pw, g.w, g.phase_len(), g.owp());
        let (colbase, us) = us.split_at_mut(owp);
        let (kinit, us) = us.split_at_mut(owp);
        let (edges, rest) = us.split_at_mut(2 * s * len);
        for ox in 0..owp {
            colbase[ox] = ((ox * s) as u32).wrapping_sub(pw as u32);
            kinit[ox] = if ox < g.ow {
                (g.cols(ox).0 + pw - ox * s) as u32
            } else {
                0
            };
        }
        // Phase r, column j holds padded element j*s + r, row element j*s + r - pw; inside
        // the row for lo(r) <= j < hi(r).
        let range = |r: usize| {
            let lo = pw.saturating_sub(r).div_ceil(s).min(len);
            (lo, (pw + w).saturating_sub(r).div_ceil(s).clamp(lo, len))
        };
        let mut bulk = (0, 0);
        if s <= 2 {
            let (lo, hi) = (0..s)
                .map(range)
                .fold((0, len), |(lo, hi), (a, b)| (lo.max(a), hi.min(b)));
            if hi > lo {
                bulk = (lo, hi);
            }
        }
        let mut n = 0;
        for r in 0..s {
            let (a, b) = range(r);
            for j in (a..b).filter(|j| !(bulk.0..bulk.1).contains(j)) {
                edges[n] = (r * len + j) as u32;
                edges[n + 1] = (j * s + r - pw) as u32;
                n += 2;
            }
        }
        let plan = Plan {
            s,
            pw,
            len,
            owp,
            bulk,
            edges: &edges[..n],
            colbase,
            kinit,
        };
        (plan, rest)
    }

    /// Adds the phases back into the row they were split from (the transpose of
    /// [`Plan::split`]; positions in the padding are dropped).
    ///
    /// # Safety
    /// `V`'s instructions run on this CPU.
    #[inline(always)]
    unsafe fn merge<V: Lanes>(&self, ph: &[f32], row: &mut [f32]) {
        let (s, len, (lo, hi)) = (self.s, self.len, self.bulk);
        let dst = &mut row[(lo * s).saturating_sub(self.pw)..];
        let whole = (hi - lo) / L * L;
        // SAFETY (V calls): the caller's contract.
        if s == 1 {
            for j in (0..whole).step_by(L) {
                unsafe { V::store(dst, j, V::add(V::load(dst, j), V::load(ph, lo + j))) };
            }
            let tail = dst[whole..hi - lo].iter_mut().zip(&ph[lo + whole..hi]);
            tail.for_each(|(d, v)| *d += v);
        } else if s == 2 {
            for j in (0..whole).step_by(L) {
                let (e, o) = unsafe { (V::load(ph, lo + j), V::load(ph, len + lo + j)) };
                unsafe { V::interleave_add(dst, 2 * j, e, o) };
            }
            for j in lo + whole..hi {
                dst[2 * (j - lo)] += ph[j];
                dst[2 * (j - lo) + 1] += ph[len + j];
            }
        }
        for e in self.edges.chunks_exact(2) {
            row[e[1] as usize] += ph[e[0] as usize];
        }
    }
}

/// Eight f32 and u32 lanes: AVX2 registers ([`Avx`]), or plain arrays ([`Arr`]) that the
/// baseline build vectorises as it can. The plane kernels are written once over this and
/// compiled for both.
///
/// The methods are `unsafe` only because the AVX2 ones need a CPU with AVX2; slices are
/// bounds-checked.
trait Lanes {
    type F: Copy;
    type I: Copy;
    /// `v[at..at + 8]`.
    unsafe fn load(v: &[f32], at: usize) -> Self::F;
    unsafe fn store(v: &mut [f32], at: usize, x: Self::F);
    unsafe fn load_i(v: &[u32], at: usize) -> Self::I;
    unsafe fn store_i(v: &mut [u32], at: usize, x: Self::I);
    /// Lanes as an array (to store part of them).
    unsafe fn array(x: Self::F) -> [f32; L];
    unsafe fn array_i(x: Self::I) -> [u32; L];
    unsafe fn splat(x: f32) -> Self::F;
    unsafe fn splat_i(x: u32) -> Self::I;
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F;
    /// Wrapping.
    unsafe fn add_i(a: Self::I, b: Self::I) -> Self::I;
    /// `(v[at], v[at + 2], ..)` and `(v[at + 1], v[at + 3], ..)`: 16 values de-interleaved.
    unsafe fn deinterleave(v: &[f32], at: usize) -> (Self::F, Self::F);
    /// `v[at..at + 16] += (e[0], o[0], e[1], o[1], ..)`.
    unsafe fn interleave_add(v: &mut [f32], at: usize, e: Self::F, o: Self::F);
    /// `(v[at], v[at + s], .., v[at + 7s])`.
    unsafe fn strided(v: &[f32], at: usize, s: usize) -> Self::F;
    /// One step of a running max: where `v > best` (strictly; NaN never), `best = v` and
    /// `arg = idx`.
    unsafe fn fold(best: &mut Self::F, arg: &mut Self::I, v: Self::F, idx: Self::I);
}

/// Plain arrays, for CPUs without AVX2 (and as the reference copy in tests).
struct Arr;

impl Lanes for Arr {
    type F = [f32; L];
    type I = [u32; L];
    #[inline(always)]
    unsafe fn load(v: &[f32], at: usize) -> Self::F {
        v[at..at + L].try_into().unwrap()
    }
    #[inline(always)]
    unsafe fn store(v: &mut [f32], at: usize, x: Self::F) {
        v[at..at + L].copy_from_slice(&x)
    }
    #[inline(always)]
    unsafe fn load_i(v: &[u32], at: usize) -> Self::I {
        v[at..at + L].try_into().unwrap()
    }
    #[inline(always)]
    unsafe fn store_i(v: &mut [u32], at: usize, x: Self::I) {
        v[at..at + L].copy_from_slice(&x)
    }
    #[inline(always)]
    unsafe fn array(x: Self::F) -> [f32; L] {
        x
    }
    #[inline(always)]
    unsafe fn array_i(x: Self::I) -> [u32; L] {
        x
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::F {
        [x; L]
    }
    #[inline(always)]
    unsafe fn splat_i(x: u32) -> Self::I {
        [x; L]
    }
    #[inline(always)]
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F {
        std::array::from_fn(|l| a[l] / b[l])
    }
    #[inline(always)]
    unsafe fn add_i(a: Self::I, b: Self::I) -> Self::I {
        std::array::from_fn(|l| a[l].wrapping_add(b[l]))
    }
    #[inline(always)]
    unsafe fn strided(v: &[f32], at: usize, s: usize) -> Self::F {
        let v = &v[at..at + (L - 1) * s + 1];
        std::array::from_fn(|l| v[l * s])
    }
    #[inline(always)]
    unsafe fn deinterleave(v: &[f32], at: usize) -> (Self::F, Self::F) {
        let v = &v[at..at + 2 * L];
        (
            std::array::from_fn(|l| v[2 * l]),
            std::array::from_fn(|l| v[2 * l + 1]),
        )
    }
    #[inline(always)]
    unsafe fn interleave_add(v: &mut [f32], at: usize, e: Self::F, o: Self::F) {
        for (l, pair) in v[at..at + 2 * L].chunks_exact_mut(2).enumerate() {
            pair[0] += e[l];
            pair[1] += o[l];
        }
    }
    #[inline(always)]
    unsafe fn fold(best: &mut Self::F, arg: &mut Self::I, v: Self::F, idx: Self::I) {
        for l in 0..L {
            if v[l] > best[l] {
                best[l] = v[l];
                arg[l] = idx[l];
            }
        }
    }
}

/// AVX2 registers.
#[cfg(target_arch = "x86_64")]
struct Avx;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx {
    type F = std::arch::x86_64::__m256;
    type I = std::arch::x86_64::__m256i;
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load(v: &[f32], at: usize) -> Self::F {
        // SAFETY: the slice holds the 8 values read.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(v[at..at + L].as_ptr()) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store(v: &mut [f32], at: usize, x: Self::F) {
        // SAFETY: the slice holds the 8 values written.
        unsafe { std::arch::x86_64::_mm256_storeu_ps(v[at..at + L].as_mut_ptr(), x) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load_i(v: &[u32], at: usize) -> Self::I {
        // SAFETY: the slice holds the 8 values read.
        unsafe { std::arch::x86_64::_mm256_loadu_si256(v[at..at + L].as_ptr().cast()) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store_i(v: &mut [u32], at: usize, x: Self::I) {
        // SAFETY: the slice holds the 8 values written.
        unsafe { std::arch::x86_64::_mm256_storeu_si256(v[at..at + L].as_mut_ptr().cast(), x) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn array(x: Self::F) -> [f32; L] {
        let mut a = [0.0; L];
        // SAFETY: AVX2 (the caller's contract); `a` holds 8 values.
        unsafe { Self::store(&mut a, 0, x) };
        a
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn array_i(x: Self::I) -> [u32; L] {
        let mut a = [0; L];
        // SAFETY: AVX2 (the caller's contract); `a` holds 8 values.
        unsafe { Self::store_i(&mut a, 0, x) };
        a
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn splat(x: f32) -> Self::F {
        std::arch::x86_64::_mm256_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn splat_i(x: u32) -> Self::I {
        std::arch::x86_64::_mm256_set1_epi32(x as i32)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F {
        std::arch::x86_64::_mm256_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F {
        std::arch::x86_64::_mm256_mul_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F {
        std::arch::x86_64::_mm256_div_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn add_i(a: Self::I, b: Self::I) -> Self::I {
        std::arch::x86_64::_mm256_add_epi32(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn strided(v: &[f32], at: usize, s: usize) -> Self::F {
        // SAFETY (all three): AVX2 (the caller's contract); the reads are bounds-checked.
        match s {
            1 => unsafe { Self::load(v, at) },
            2 => unsafe { Self::deinterleave(v, at).0 },
            _ => unsafe { Self::load(&Arr::strided(v, at, s), 0) },
        }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn deinterleave(v: &[f32], at: usize) -> (Self::F, Self::F) {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 (the caller's contract); the loads are bounds-checked.
        let (a, b) = unsafe { (Self::load(v, at), Self::load(v, at + L)) };
        // a0 a2 b0 b2 | a4 a6 b4 b6, then the 64-bit pairs in order 0 2 1 3.
        let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        let fix = |x| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(x)));
        (fix(e), fix(o))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn interleave_add(v: &mut [f32], at: usize, e: Self::F, o: Self::F) {
        use std::arch::x86_64::*;
        // e0 o0 e1 o1 | e4 o4 e5 o5 and e2 o2 e3 o3 | e6 o6 e7 o7.
        let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
        let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
        let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
        // SAFETY: AVX2 (the caller's contract); the loads and stores are bounds-checked.
        unsafe {
            Self::store(v, at, _mm256_add_ps(Self::load(v, at), first));
            Self::store(v, at + L, _mm256_add_ps(Self::load(v, at + L), second));
        }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn fold(best: &mut Self::F, arg: &mut Self::I, v: Self::F, idx: Self::I) {
        use std::arch::x86_64::*;
        let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(v, *best);
        *best = _mm256_blendv_ps(*best, v, gt);
        let a = _mm256_blendv_ps(_mm256_castsi256_ps(*arg), _mm256_castsi256_ps(idx), gt);
        *arg = _mm256_castps_si256(a);
    }
}

/// Stores the first `dst.len()` (at most 8) lanes.
#[inline(always)]
fn store_part<T: Copy>(dst: &mut [T], v: [T; L]) {
    dst.iter_mut().zip(v).for_each(|(d, v)| *d = v);
}

/// Copies the rows of plane `x` into the padded plane `xp` (rows of `padded_w`, starting at
/// column `pw`), leaving the fill around them.
///
/// # Safety
/// `V`'s instructions run on this CPU.
#[inline(always)]
unsafe fn copy_rows<V: Lanes>(g: &Geom, x: &[f32], xp: &mut [f32]) {
    let (w, wp, whole) = (g.w, g.padded_w(), g.w / L * L);
    for (row, dst) in x.chunks_exact(w).zip(xp.chunks_exact_mut(wp)) {
        let dst = &mut dst[g.pw..g.pw + w];
        for j in (0..whole).step_by(L) {
            // SAFETY: the caller's contract.
            unsafe { V::store(dst, j, V::load(row, j)) };
        }
        dst[whole..].copy_from_slice(&row[whole..]);
    }
}

/// MAX over `x.len() / (h*w)` planes.
///
/// # Safety
/// `V`'s instructions run on this CPU.
#[inline(always)]
unsafe fn max_body<V: Lanes>(
    g: &Geom,
    x: &[f32],
    y: &mut [f32],
    mask: &mut [u32],
    fs: &mut [f32],
    us: &mut [u32],
) {
    let (w, ip, op) = (g.w, g.h * g.w, g.oh * g.ow);
    let (p, ha) = Plan::new(g, us);
    let (hb, xp) = fs[g.sw * p.len..].split_at_mut(g.h * p.owp);
    let (owp, wp, s) = (p.owp, g.padded_w(), g.sw);
    // The padded plane: -inf around every row (filled once), the rows copied in per plane.
    xp.fill(f32::NEG_INFINITY);
    let (zero, one) = unsafe { (V::splat_i(0), V::splat_i(1)) };
    let planes = x.chunks_exact(ip).zip(y.chunks_exact_mut(op));
    // SAFETY (every V call): the caller's contract.
    for ((x, y), mask) in planes.zip(mask.chunks_exact_mut(op)) {
        unsafe { copy_rows::<V>(g, x, xp) };
        // Horizontal: the first strictly greater element of every window row; its window
        // column first, then its plane index. Tap kx of outputs c.. reads the padded row at
        // c*s + kx with stride s.
        for iy in 0..g.h {
            let row = unsafe { V::splat_i((iy * w) as u32) };
            for c in (0..owp).step_by(L) {
                let (mut b, mut k) = unsafe { (V::splat(f32::MIN), V::load_i(p.kinit, c)) };
                let (at, mut kx, mut kv) = (iy * wp + c * s, 0, zero);
                while kx < g.kw {
                    // Stride 2: taps kx and kx + 1 are the two halves of one de-interleave.
                    if s == 2 && kx + 1 < g.kw {
                        let (e, o) = unsafe { V::deinterleave(xp, at + kx) };
                        unsafe { V::fold(&mut b, &mut k, e, kv) };
                        kv = unsafe { V::add_i(kv, one) };
                        unsafe { V::fold(&mut b, &mut k, o, kv) };
                        kx += 1;
                    } else {
                        let v = unsafe { V::strided(xp, at + kx, s) };
                        unsafe { V::fold(&mut b, &mut k, v, kv) };
                    }
                    kv = unsafe { V::add_i(kv, one) };
                    kx += 1;
                }
                unsafe {
                    V::store(hb, iy * owp + c, b);
                    let a = V::add_i(V::add_i(k, V::load_i(p.colbase, c)), row);
                    V::store_i(ha, iy * owp + c, a);
                }
            }
        }
        // Vertical: the first strictly greater row maximum, top to bottom.
        for oy in 0..g.oh {
            let (y0, y1, _) = g.rows(oy);
            let top = unsafe { V::splat_i((y0 * w) as u32) };
            for c in (0..owp).step_by(L) {
                let mut b = unsafe { V::splat(f32::MIN) };
                let mut a = unsafe {
                    V::add_i(
                        V::add_i(V::load_i(p.kinit, c), V::load_i(p.colbase, c)),
                        top,
                    )
                };
                for iy in y0..y1 {
                    let at = iy * owp + c;
                    unsafe { V::fold(&mut b, &mut a, V::load(hb, at), V::load_i(ha, at)) };
                }
                let (at, n) = (oy * g.ow + c, (g.ow - c).min(L));
                unsafe {
                    if n == L {
                        V::store(y, at, b);
                        V::store_i(mask, at, a);
                    } else {
                        store_part(&mut y[at..at + n], V::array(b));
                        store_part(&mut mask[at..at + n], V::array_i(a));
                    }
                }
            }
        }
    }
}

/// Divisor column extents of a chunk of the padded output row, as f32 (1 past the row).
#[inline(always)]
fn col_extents(g: &Geom, c: usize) -> [f32; L] {
    std::array::from_fn(|l| {
        if c + l < g.ow {
            g.cols(c + l).2 as f32
        } else {
            1.0
        }
    })
}

/// AVE over `x.len() / (h*w)` planes.
///
/// # Safety
/// `V`'s instructions run on this CPU.
#[inline(always)]
unsafe fn ave_body<V: Lanes>(g: &Geom, x: &[f32], y: &mut [f32], fs: &mut [f32], us: &mut [u32]) {
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    let (p, _) = Plan::new(g, us);
    let (hs, xp) = fs[g.sw * p.len..].split_at_mut(g.h * p.owp);
    let (owp, wp, s) = (p.owp, g.padded_w(), g.sw);
    xp.fill(0.0);
    // SAFETY (every V call): the caller's contract.
    for (x, y) in x.chunks_exact(ip).zip(y.chunks_exact_mut(op)) {
        unsafe { copy_rows::<V>(g, x, xp) };
        for iy in 0..g.h {
            for c in (0..owp).step_by(L) {
                let mut sum = unsafe { V::splat(0.0) };
                let (at, mut kx) = (iy * wp + c * s, 0);
                while kx < g.kw {
                    // Stride 2: taps kx and kx + 1 are the two halves of one de-interleave.
                    if s == 2 && kx + 1 < g.kw {
                        let (e, o) = unsafe { V::deinterleave(xp, at + kx) };
                        sum = unsafe { V::add(sum, V::add(e, o)) };
                        kx += 1;
                    } else {
                        sum = unsafe { V::add(sum, V::strided(xp, at + kx, s)) };
                    }
                    kx += 1;
                }
                unsafe { V::store(hs, iy * owp + c, sum) };
            }
        }
        for c in (0..owp).step_by(L) {
            let ex = unsafe { V::load(&col_extents(g, c), 0) };
            let n = (g.ow - c).min(L);
            for oy in 0..g.oh {
                let (y0, y1, ey) = g.rows(oy);
                let mut s = unsafe { V::splat(0.0) };
                for iy in y0..y1 {
                    s = unsafe { V::add(s, V::load(hs, iy * owp + c)) };
                }
                // Caffe divides by the window's padded area (exact in f32).
                let s = unsafe { V::div(s, V::mul(V::splat(ey as f32), ex)) };
                let at = oy * g.ow + c;
                unsafe {
                    if n == L {
                        V::store(y, at, s);
                    } else {
                        store_part(&mut y[at..at + n], V::array(s));
                    }
                }
            }
        }
    }
}

/// AVE backward over `dy.len() / (oh*ow)` planes, accumulated into `dx`.
///
/// # Safety
/// `V`'s instructions run on this CPU.
#[inline(always)]
unsafe fn ave_back_body<V: Lanes>(
    g: &Geom,
    dy: &[f32],
    dx: &mut [f32],
    fs: &mut [f32],
    us: &mut [u32],
) {
    let (w, ip, op) = (g.w, g.h * g.w, g.oh * g.ow);
    let (p, _) = Plan::new(g, us);
    let (ph, cs) = fs.split_at_mut(g.sw * p.len);
    // Rows of column sums: q0 zeros on the left (the most phase columns a window spans past
    // its first), the padded output row, zeros past it.
    let (owp, len, q0) = (p.owp, p.len, (g.kw - 1) / g.sw);
    let cw = q0 + len + L;
    let cs = &mut cs[..g.h * cw];
    // SAFETY (every V call): the caller's contract.
    for (dy, dx) in dy.chunks_exact(op).zip(dx.chunks_exact_mut(ip)) {
        // Vertical: every input row gets the sum of dy / divisor over the window rows that
        // cover it.
        cs.fill(0.0);
        for c in (0..owp).step_by(L) {
            let ex = col_extents(g, c);
            let n = (g.ow - c).min(L);
            for oy in 0..g.oh {
                let (y0, y1, ey) = g.rows(oy);
                let mut d = [0.0; L];
                d[..n].copy_from_slice(&dy[oy * g.ow + c..][..n]);
                let d: [f32; L] = std::array::from_fn(|l| d[l] / (ey as f32 * ex[l]));
                let d = unsafe { V::load(&d, 0) };
                for iy in y0..y1 {
                    let at = iy * cw + q0 + c;
                    unsafe { V::store(cs, at, V::add(V::load(cs, at), d)) };
                }
            }
        }
        // Horizontal: padded element j*s + r of the row gathers the column sums of the
        // outputs j - q whose window column q*s + r it is; then the phases go back into the
        // row.
        for iy in 0..g.h {
            for r in 0..g.sw {
                for j in (0..len).step_by(L) {
                    let (mut v, mut q) = (unsafe { V::splat(0.0) }, 0);
                    while q * g.sw + r < g.kw {
                        v = unsafe { V::add(v, V::load(cs, iy * cw + q0 + j - q)) };
                        q += 1;
                    }
                    unsafe { V::store(ph, r * len + j, v) };
                }
            }
            unsafe { p.merge::<V>(ph, &mut dx[iy * w..(iy + 1) * w]) };
        }
    }
}

/// Defines `$name`, which runs `$body::<Avx>` compiled for AVX2+FMA when the CPU has them and
/// `$body::<Arr>` otherwise, and `$avx`, the AVX2 copy (for tests).
macro_rules! dispatch {
    ($name:ident, $avx:ident, $body:ident, ($($a:ident: $t:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx($($a: $t),*) {
            // SAFETY: the caller checked AVX2.
            unsafe { $body::<Avx>($($a),*) }
        }
        fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                return unsafe { $avx($($a),*) };
            }
            // SAFETY: plain arrays run anywhere.
            unsafe { $body::<Arr>($($a),*) }
        }
    };
}

dispatch!(max_fast, max_avx2, max_body, (g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32], fs: &mut [f32], us: &mut [u32]));
dispatch!(ave_fast, ave_avx2, ave_body, (g: &Geom, x: &[f32], y: &mut [f32], fs: &mut [f32], us: &mut [u32]));
dispatch!(ave_back_fast, ave_back_avx2, ave_back_body, (g: &Geom, dy: &[f32], dx: &mut [f32], fs: &mut [f32], us: &mut [u32]));

/// Runs `f` with this thread's scratch for geometry `g`.
fn with_scratch<R>(g: &Geom, f: impl FnOnce(&mut [f32], &mut [u32]) -> R) -> R {
    with_buffer(&FLOATS, g.floats(), |fs| {
        with_buffer(&INDICES, g.indices(), |us| f(fs, us))
    })
}

/// MAX over every window of consecutive planes (`x` holds whole planes, `y` and `mask` as
/// many output planes): `y` gets the maxima, `mask` the plane index of the first maximal
/// element in window order (Caffe's strict `>`; the window's first element when none
/// exceeds `f32::MIN`).
pub fn max_planes(g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        return wide::max_planes(g, x, y, mask);
    }
    with_scratch(g, |fs, us| max_fast(g, x, y, mask, fs, us))
}

/// MAX straight over the windows, 16 outputs of a row at a time (AVX-512): where a mask
/// register picks the lanes, a tap costs one compare and two masked moves, so the window
/// loop beats the separable passes' blends (CaffeNet's three MAX pools in `crema time`:
/// 4.1-4.5 -> 2.2-2.5 ms a forward pass).
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{with_buffer, Geom, FLOATS};
    use std::arch::x86_64::*;

    /// Lanes of one register.
    const W: usize = 16;

    /// The padded plane's row length and rows: `pw` of -inf, the row, then -inf past every
    /// value a tap of a whole chunk of outputs reads (32 values from a tap for stride 2).
    fn padded(g: &Geom) -> (usize, usize) {
        let owc = g.ow.div_ceil(W) * W;
        let wq = (g.pw + g.w).max(owc * g.sw + g.kw + W);
        let hq = (g.ph + g.h).max((g.oh.max(1) - 1) * g.sh + g.kh);
        (wq, hq)
    }

    /// See [`super::max_planes`] (the caller checked AVX-512F).
    pub fn max_planes(g: &Geom, x: &[f32], y: &mut [f32], mask: &mut [u32]) {
        let (wq, hq) = padded(g);
        with_buffer(&FLOATS, wq * hq, |xp| {
            // SAFETY: the caller checked AVX-512F.
            unsafe { planes(g, x, y, mask, xp, wq) }
        })
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn planes(
        g: &Geom,
        x: &[f32],
        y: &mut [f32],
        mask: &mut [u32],
        xp: &mut [f32],
        wq: usize,
    ) {
        let (ip, op) = (g.h * g.w, g.oh * g.ow);
        // -inf around the rows: written once, each plane overwrites only the rows.
        xp.fill(f32::NEG_INFINITY);
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let step = _mm512_mullo_epi32(lane, _mm512_set1_epi32(g.sw as i32));
        let planes = x.chunks_exact(ip).zip(y.chunks_exact_mut(op));
        for ((x, y), mask) in planes.zip(mask.chunks_exact_mut(op)) {
            for (iy, row) in x.chunks_exact(g.w).enumerate() {
                let at = (g.ph + iy) * wq + g.pw;
                let dst = &mut xp[at..at + g.w];
                // Whole registers and a masked tail: no call into memcpy for short rows.
                for j in (0..g.w).step_by(W) {
                    let n = W.min(g.w - j);
                    let keep: __mmask16 = if n == W { !0 } else { (1u16 << n) - 1 };
                    let v = _mm512_maskz_loadu_ps(keep, row[j..j + n].as_ptr());
                    _mm512_mask_storeu_ps(dst[j..j + n].as_mut_ptr(), keep, v);
                }
            }
            for oy in 0..g.oh {
                let (y0, _, _) = g.rows(oy);
                for ox in (0..g.ow).step_by(W) {
                    let n = W.min(g.ow - ox);
                    // The window's first element (clipped) where no value exceeds f32::MIN.
                    let cols = _mm512_add_epi32(_mm512_set1_epi32((ox * g.sw) as i32), step);
                    let first = _mm512_max_epi32(
                        _mm512_sub_epi32(cols, _mm512_set1_epi32(g.pw as i32)),
                        _mm512_setzero_si512(),
                    );
                    let mut arg = _mm512_add_epi32(first, _mm512_set1_epi32((y0 * g.w) as i32));
                    let mut best = _mm512_set1_ps(f32::MIN);
                    for ky in 0..g.kh {
                        // Plane index of tap (ky, 0) at lane 0 (wrapping: padding never wins).
                        let iy = (oy * g.sh + ky) as i32 - g.ph as i32;
                        let base = iy.wrapping_mul(g.w as i32) - g.pw as i32;
                        let row = (oy * g.sh + ky) * wq + ox * g.sw;
                        for kx in 0..g.kw {
                            let at = row + kx;
                            let v = match g.sw {
                                1 => _mm512_loadu_ps(xp[at..at + W].as_ptr()),
                                2 => {
                                    let s = &xp[at..at + 2 * W];
                                    let lo = _mm512_loadu_ps(s.as_ptr());
                                    let hi = _mm512_loadu_ps(s.as_ptr().add(W));
                                    _mm512_permutex2var_ps(lo, even, hi)
                                }
                                sw => {
                                    let s = &xp[at..at + (W - 1) * sw + 1];
                                    _mm512_i32gather_ps::<4>(step, s.as_ptr())
                                }
                            };
                            let idx = _mm512_add_epi32(cols, _mm512_set1_epi32(base + kx as i32));
                            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                            best = _mm512_mask_mov_ps(best, gt, v);
                            arg = _mm512_mask_mov_epi32(arg, gt, idx);
                        }
                    }
                    let at = oy * g.ow + ox;
                    let keep: __mmask16 = if n == W { !0 } else { (1u16 << n) - 1 };
                    let (yd, md) = (&mut y[at..at + n], &mut mask[at..at + n]);
                    _mm512_mask_storeu_ps(yd.as_mut_ptr(), keep, best);
                    _mm512_mask_storeu_epi32(md.as_mut_ptr() as *mut i32, keep, arg);
                }
            }
        }
    }
}

/// AVE over every window of consecutive planes (Caffe's divisor: the window clipped to the
/// padded input).
pub fn ave_planes(g: &Geom, x: &[f32], y: &mut [f32]) {
    with_scratch(g, |fs, us| ave_fast(g, x, y, fs, us))
}

/// AVE backward of consecutive planes: every window adds `dy / divisor` to each input
/// element it covers (Caffe's rule), accumulated into `dx`.
pub fn ave_back_planes(g: &Geom, dy: &[f32], dx: &mut [f32]) {
    with_scratch(g, |fs, us| ave_back_fast(g, dy, dx, fs, us))
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

    /// Caffe's AVE backward: every window adds dy / divisor to the elements it covers.
    fn ave_back_reference(g: &Geom, dy: &[f32], dx: &mut [f32]) {
        g.windows(|oy, ox, [y0, y1, x0, x1]| {
            let d = dy[oy * g.ow + ox] / (g.rows(oy).2 * g.cols(ox).2) as f32;
            for iy in y0..y1 {
                dx[iy * g.w + x0..iy * g.w + x1]
                    .iter_mut()
                    .for_each(|v| *v += d);
            }
        })
    }

    /// Odd geometries: padding, strides 1/2/3/4, kernels bigger than the stride, ceil-mode
    /// last windows clipped, width 1, widths around multiples of 8, global windows.
    fn geoms() -> Vec<Geom> {
        let ceil = |n: usize, k: usize, s: usize, p: usize| {
            super::super::pooling::pooled_size(n, k, s, p, true)
        };
        let mut v = Vec::new();
        for (h, w, k, s, p) in [
            (32, 32, [3, 3], [2, 2], [0, 0]),
            (55, 55, [3, 3], [2, 2], [0, 0]),
            (13, 13, [3, 3], [2, 2], [0, 0]),
            (16, 16, [3, 3], [2, 2], [0, 0]),
            (7, 9, [3, 2], [2, 1], [1, 1]),
            (5, 6, [2, 2], [2, 2], [1, 1]),
            (9, 9, [3, 3], [3, 3], [2, 1]),
            (6, 11, [4, 3], [1, 3], [0, 2]),
            (4, 5, [4, 5], [1, 1], [0, 0]),
            (5, 1, [3, 1], [2, 1], [1, 0]),
            (3, 1, [2, 1], [1, 1], [0, 0]),
            (6, 17, [3, 3], [1, 1], [1, 1]),
            (8, 34, [3, 3], [2, 2], [1, 1]),
            (7, 19, [3, 5], [2, 3], [1, 2]),
            (10, 33, [2, 4], [2, 4], [1, 3]),
            (9, 40, [3, 3], [2, 2], [0, 0]),
            (7, 15, [7, 15], [1, 1], [0, 0]),
            (6, 23, [3, 4], [3, 2], [2, 3]),
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

    /// Inputs for one plane: few distinct values (so windows hold ties), the same with -inf,
    /// NaN and f32::MIN mixed in, and smooth distinct values.
    fn inputs(g: &Geom) -> Vec<Vec<f32>> {
        let n = g.h * g.w;
        let ties: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let odd = ties
            .iter()
            .enumerate()
            .map(|(i, &v)| match i % 11 {
                3 => f32::NEG_INFINITY,
                6 => f32::NAN,
                9 => f32::MIN,
                _ => v,
            })
            .collect();
        let smooth = (0..n).map(|i| (i as f32 * 0.917).sin()).collect();
        vec![ties, odd, smooth]
    }

    /// Both compiled copies of the plane kernels (the baseline body called directly, the
    /// dispatched one AVX2 where the CPU has it) give the window loop's maxima, argmax indices
    /// (ties, NaN and -inf included), averages and AVE gradients.
    /// The kernels under test: the plain-array copy, the AVX2 copy where the CPU has it, and
    /// the dispatched public functions, each over one plane.
    #[allow(clippy::type_complexity)]
    fn copies() -> Vec<(
        &'static str,
        fn(&Geom, &[f32], &mut [f32], &mut [u32]),
        fn(&Geom, &[f32], &mut [f32]),
        fn(&Geom, &[f32], &mut [f32]),
    )> {
        let mut v: Vec<(&'static str, _, _, _)> = vec![
            (
                "arrays",
                (|g, x, y, m| {
                    with_scratch(g, |fs, us| unsafe { max_body::<Arr>(g, x, y, m, fs, us) })
                }) as fn(&Geom, &[f32], &mut [f32], &mut [u32]),
                (|g, x, y| with_scratch(g, |fs, us| unsafe { ave_body::<Arr>(g, x, y, fs, us) }))
                    as fn(&Geom, &[f32], &mut [f32]),
                (|g, dy, dx| {
                    with_scratch(g, |fs, us| unsafe {
                        ave_back_body::<Arr>(g, dy, dx, fs, us)
                    })
                }) as fn(&Geom, &[f32], &mut [f32]),
            ),
            ("dispatched", max_planes, ave_planes, ave_back_planes),
        ];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            v.push(("avx512", wide::max_planes, ave_planes, ave_back_planes));
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY (all three): AVX2 and FMA checked just above.
            v.push((
                "avx2",
                |g, x, y, m| with_scratch(g, |fs, us| unsafe { max_avx2(g, x, y, m, fs, us) }),
                |g, x, y| with_scratch(g, |fs, us| unsafe { ave_avx2(g, x, y, fs, us) }),
                |g, dy, dx| with_scratch(g, |fs, us| unsafe { ave_back_avx2(g, dy, dx, fs, us) }),
            ));
        }
        v
    }

    /// Every compiled copy of the plane kernels gives the window loop's maxima, argmax indices
    /// (ties, NaN and -inf included), averages and AVE gradients, one plane at a time and
    /// over several planes in one call.
    #[test]
    fn plane_kernels_match_the_window_loop() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (name, max, ave, ave_back) in copies() {
            for g in geoms() {
                let n = g.oh * g.ow;
                let (mut y_all, mut m_all, mut a_all, mut d_all) = (vec![], vec![], vec![], vec![]);
                let (mut xs, mut xas, mut dys, mut starts) = (vec![], vec![], vec![], vec![]);
                for x in inputs(&g) {
                    let (mut y0, mut m0) = (vec![0.0; n], vec![0u32; n]);
                    max_reference(&g, &x, &mut y0, &mut m0);
                    let (mut y1, mut m1) = (vec![0.0; n], vec![0u32; n]);
                    max(&g, &x, &mut y1, &mut m1);
                    assert_eq!((bits(&y1), &m1), (bits(&y0), &m0), "{name} {g:?}");
                    y_all.extend(y0);
                    m_all.extend(m0);
                    xs.extend_from_slice(&x);
                    // AVE on finite inputs only (the second input holds -inf and NaN).
                    let x: Vec<f32> = x
                        .iter()
                        .map(|&v| {
                            if v.is_finite() && v != f32::MIN {
                                v
                            } else {
                                0.5
                            }
                        })
                        .collect();
                    let mut a0 = vec![0.0; n];
                    g.windows(|oy, ox, [y0, y1, x0, x1]| {
                        let (s, _) = window_sums(&g, &x, [y0, y1, x0, x1], 0.0);
                        let area = g.rows(oy).2 * g.cols(ox).2;
                        a0[oy * g.ow + ox] = s / area as f32;
                    });
                    let mut a1 = vec![0.0; n];
                    ave(&g, &x, &mut a1);
                    crate::testing::assert_close(&a1, &a0, 1e-5);
                    // Backward accumulates into a non-zero dx.
                    let dy: Vec<f32> = (0..n).map(|i| x[i % x.len()] + 0.25).collect();
                    let start: Vec<f32> = (0..g.h * g.w).map(|i| i as f32 * 0.01).collect();
                    let mut d0 = start.clone();
                    ave_back_reference(&g, &dy, &mut d0);
                    let mut d1 = start.clone();
                    ave_back(&g, &dy, &mut d1);
                    crate::testing::assert_close(&d1, &d0, 1e-5);
                    a_all.extend(a0);
                    xas.extend(x);
                    d_all.extend(d0);
                    dys.extend(dy);
                    starts.extend(start);
                }
                // The same planes in one call.
                let (mut y1, mut m1) = (vec![0.0; y_all.len()], vec![0; y_all.len()]);
                max(&g, &xs, &mut y1, &mut m1);
                assert_eq!((bits(&y1), &m1), (bits(&y_all), &m_all), "{name} {g:?}");
                let mut a1 = vec![0.0; a_all.len()];
                ave(&g, &xas, &mut a1);
                crate::testing::assert_close(&a1, &a_all, 1e-5);
                let mut d1 = starts;
                ave_back(&g, &dys, &mut d1);
                crate::testing::assert_close(&d1, &d_all, 1e-5);
            }
        }
    }

    /// Hand-worked: a 1x5 row, window 3, stride 2, pad 1 (windows [-1,2), [1,4), [3,5) after
    /// ceil clipping): ties go to the first element, AVE divides by the padded extent.
    #[test]
    fn small_row_by_hand() {
        let g = Geom {
            h: 1,
            w: 5,
            kh: 1,
            kw: 3,
            sh: 1,
            sw: 2,
            ph: 0,
            pw: 1,
            oh: 1,
            ow: 3,
        };
        let x = [2.0, 2.0, 5.0, 5.0, 1.0];
        let (mut y, mut m) = (vec![0.0; 3], vec![0; 3]);
        max_planes(&g, &x, &mut y, &mut m);
        assert_eq!((y, m), (vec![2.0, 5.0, 5.0], vec![0, 2, 3]));
        let mut a = vec![0.0; 3];
        ave_planes(&g, &x, &mut a);
        // Windows cover [pad, 2, 2], [2, 5, 5], [5, 1, pad]; extents 3, 3, 3 (clipped to the
        // padded row of 7).
        crate::testing::assert_close(&a, &[4.0 / 3.0, 4.0, 2.0], 1e-6);
        let mut dx = vec![0.0; 5];
        ave_back_planes(&g, &[3.0, 6.0, 9.0], &mut dx);
        crate::testing::assert_close(&dx, &[1.0, 3.0, 2.0, 5.0, 3.0], 1e-6);
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// Single-thread kernel times at CIFAR pool1 and CaffeNet pool1 shapes (run by hand with
    /// `cargo test --release --lib pool_kernels::timing -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn kernel_times() {
        for (planes, n) in [(3200, 32), (960, 55)] {
            let ow = super::super::pooling::pooled_size(n, 3, 2, 0, true);
            let g = Geom {
                h: n,
                w: n,
                kh: 3,
                kw: 3,
                sh: 2,
                sw: 2,
                ph: 0,
                pw: 0,
                oh: ow,
                ow,
            };
            let x: Vec<f32> = (0..planes * n * n)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let (mut y, mut m) = (vec![0.0; planes * ow * ow], vec![0; planes * ow * ow]);
            let mut dx = vec![0.0; x.len()];
            let time = |f: &mut dyn FnMut()| {
                (0..15)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .fold(f64::MAX, f64::min)
            };
            let tm = time(&mut || max_planes(&g, &x, &mut y, &mut m));
            let ts =
                time(&mut || with_scratch(&g, |fs, us| max_fast(&g, &x, &mut y, &mut m, fs, us)));
            println!("{planes}x{n}x{n}: separable max {ts:.3} ms (the AVX-512 window loop below)");
            let ta = time(&mut || ave_planes(&g, &x, &mut y));
            let tb = time(&mut || ave_back_planes(&g, &y, &mut dx));
            println!("{planes}x{n}x{n}: max {tm:.3} ms, ave {ta:.3} ms, ave back {tb:.3} ms");
        }
    }
}
