//! `LRN`: local response normalisation, Caffe's two regions.
//!
//! ACROSS_CHANNELS: `s = k + alpha/n * sum_{window of n channels} x^2`, `y = x * s^-beta`.
//! WITHIN_CHANNEL: `s = 1 + alpha/n^2 * sum_{n x n window, zero padded} x^2`, `y = x * s^-beta`
//! (Caffe builds this one from Power/Pooling layers with shift 1, so `k` is not used there).
//! Items (ACROSS) or planes (WITHIN) run in parallel on rayon.

use super::{BlobCounts, Layer};
use crate::math::scratch::{with_buffer, Scratch};
use crate::math::simd::multiversion;
use crate::proto::lrn_parameter::NormRegion;
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use rayon::prelude::*;
use std::cell::Cell;

/// `LRN` layer.
pub struct Lrn {
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
    across: bool,
    shape: [usize; 4],
    /// `s` for every element (kept for backward).
    scale: Vec<f32>,
}

/// Creates `LRN` from `lrn_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let lp = p.lrn_param.unwrap_or_default();
    let size = lp.local_size() as usize;
    crate::ensure!(
        size % 2 == 1,
        "LRN only supports odd values for local_size, got {size}"
    );
    Ok(Box::new(Lrn {
        size,
        alpha: lp.alpha(),
        beta: lp.beta(),
        k: lp.k(),
        across: lp.norm_region() == NormRegion::AcrossChannels,
        shape: [0; 4],
        scale: Vec::new(),
    }))
}

thread_local! {
    static TMP: Scratch<f32> = const { Cell::new(Vec::new()) };
    static ACC: Scratch<f32> = const { Cell::new(Vec::new()) };
    static PART: Scratch<f32> = const { Cell::new(Vec::new()) };
}

/// Sliding sum over channels: `out[c] = sum_{|c'-c| <= half} v[c']` for `ch` planes of `plane`
/// (`acc` holds one plane).
fn channel_window_sum(
    v: &[f32],
    ch: usize,
    plane: usize,
    half: usize,
    acc: &mut [f32],
    out: &mut [f32],
) {
    acc.fill(0.0);
    for c in 0..half.min(ch) {
        acc.iter_mut()
            .zip(&v[c * plane..(c + 1) * plane])
            .for_each(|(a, x)| *a += x);
    }
    for c in 0..ch {
        if c + half < ch {
            let add = &v[(c + half) * plane..(c + half + 1) * plane];
            acc.iter_mut().zip(add).for_each(|(a, x)| *a += x);
        }
        if c > half {
            let sub = &v[(c - half - 1) * plane..(c - half) * plane];
            acc.iter_mut().zip(sub).for_each(|(a, x)| *a -= x);
        }
        out[c * plane..(c + 1) * plane].copy_from_slice(acc);
    }
}

/// Box sum over a `2*half+1` square window, zero padded: `out[y][x] = sum v[y'][x']` (`rows`
/// holds one plane).
fn box_sum(v: &[f32], h: usize, w: usize, half: usize, rows: &mut [f32], out: &mut [f32]) {
    // Rows first, then columns.
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(half), (x + half + 1).min(w));
            rows[y * w + x] = v[y * w + a..y * w + b].iter().sum();
        }
    }
    for y in 0..h {
        let (a, b) = (y.saturating_sub(half), (y + half + 1).min(h));
        for x in 0..w {
            out[y * w + x] = (a..b).map(|yy| rows[yy * w + x]).sum();
        }
    }
}

/// `s^-0.75` (Caffe's usual `beta`) as `1/sqrt(s*sqrt(s))`: two vectorisable square roots
/// instead of a `powf` call.
#[inline(always)]
fn neg_pow_075(s: f32) -> f32 {
    1.0 / (s * s.sqrt()).sqrt()
}

/// `s = k + a * s`, `y = x * p(s)`.
#[inline(always)]
fn scale_out_with(p: impl Fn(f32) -> f32, s: &mut [f32], x: &[f32], y: &mut [f32], k: f32, a: f32) {
    for ((s, y), x) in s.iter_mut().zip(y.iter_mut()).zip(x) {
        *s = k + a * *s;
        *y = x * p(*s);
    }
}

#[inline(always)]
fn scale_out_body(s: &mut [f32], x: &[f32], y: &mut [f32], k: f32, a: f32, beta: f32) {
    if beta == 0.75 {
        scale_out_with(neg_pow_075, s, x, y, k, a)
    } else {
        scale_out_with(|v| v.powf(-beta), s, x, y, k, a)
    }
}

/// `dx += dy * p(s) - coef * x * acc` with `ins = [dy, s, x, acc]`.
#[inline(always)]
fn grad_in_with(p: impl Fn(f32) -> f32, dx: &mut [f32], ins: [&[f32]; 4], coef: f32) {
    let [dy, s, x, acc] = ins;
    let it = dx.iter_mut().zip(dy).zip(s).zip(x).zip(acc);
    for ((((dx, dy), s), x), acc) in it {
        *dx += dy * p(*s) - coef * x * acc;
    }
}

#[inline(always)]
fn grad_in_body(dx: &mut [f32], ins: [&[f32]; 4], coef: f32, beta: f32) {
    if beta == 0.75 {
        grad_in_with(neg_pow_075, dx, ins, coef)
    } else {
        grad_in_with(|v| v.powf(-beta), dx, ins, coef)
    }
}

multiversion!(fn scale_out(s: &mut [f32], x: &[f32], y: &mut [f32], k: f32, a: f32, beta: f32) => scale_out_body);
multiversion!(fn grad_in(dx: &mut [f32], ins: [&[f32]; 4], coef: f32, beta: f32) => grad_in_body);

impl Lrn {
    /// The unit of parallel work: an item (ACROSS_CHANNELS) or a plane (WITHIN_CHANNEL).
    fn unit(&self) -> usize {
        let [_, c, h, w] = self.shape;
        if self.across {
            c * h * w
        } else {
            h * w
        }
    }

    /// `out` = the region's window sum of `v` over one unit.
    fn window_sum(&self, v: &[f32], out: &mut [f32]) {
        let [_, c, h, w] = self.shape;
        let half = (self.size - 1) / 2;
        with_buffer(&PART, h * w, |part| {
            if self.across {
                channel_window_sum(v, c, h * w, half, part, out)
            } else {
                box_sum(v, h, w, half, part, out)
            }
        })
    }

    /// `alpha` over the window's size (`n` across channels, `n^2` within a channel).
    fn alpha_n(&self) -> f32 {
        let n = self.size as f32;
        self.alpha / if self.across { n } else { n * n }
    }
}

impl Layer for Lrn {
    fn backward_reads_top(&self) -> super::TopUse {
        super::TopUse::Values
    }
    fn type_name(&self) -> &'static str {
        "LRN"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let b = bottom[0];
        crate::ensure!(
            b.num_axes() == 4,
            "LRN needs a 4-D bottom (N x C x H x W), got {}",
            b.shape_string()
        );
        self.shape = [b.shape[0], b.shape[1], b.shape[2], b.shape[3]];
        top[0].reshape(&b.shape);
        self.scale.resize(b.count(), 0.0);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        let (x, y, unit) = (&bottom[0].data, &mut top[0].data, self.unit());
        if x.is_empty() {
            return Ok(());
        }
        // WITHIN_CHANNEL is Caffe's Power/Pooling composition with shift 1: `k` is not used.
        let k = if self.across { self.k } else { 1.0 };
        let (a, beta) = (self.alpha_n(), self.beta);
        let mut scale = std::mem::take(&mut self.scale);
        scale
            .par_chunks_mut(unit)
            .zip(y.par_chunks_mut(unit))
            .enumerate()
            .for_each(|(i, (s, y))| {
                let x = &x[i * unit..(i + 1) * unit];
                with_buffer(&TMP, unit, |sq| {
                    sq.iter_mut().zip(x).for_each(|(q, v)| *q = v * v);
                    self.window_sum(sq, s);
                });
                scale_out(s, x, y, k, a, beta);
            });
        self.scale = scale;
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _params: &mut [&mut Blob],
    ) -> Result<()> {
        let b = &mut *bottom[0];
        if down[0] && !b.data.is_empty() {
            // dx = dy s^-beta - 2 alpha_n beta * x * window_sum(dy * y / s)
            let (dy, y, x, unit) = (&top[0].diff, &top[0].data, &b.data, self.unit());
            let (coef, beta) = (2.0 * self.alpha_n() * self.beta, self.beta);
            b.diff.par_chunks_mut(unit).enumerate().for_each(|(i, dx)| {
                let r = i * unit..(i + 1) * unit;
                let (dy, y, s, x) = (&dy[r.clone()], &y[r.clone()], &self.scale[r.clone()], &x[r]);
                with_buffer(&TMP, unit, |ratio| {
                    let it = ratio.iter_mut().zip(dy).zip(y).zip(s);
                    it.for_each(|(((q, d), y), s)| *q = d * y / s);
                    with_buffer(&ACC, unit, |acc| {
                        self.window_sum(ratio, acc);
                        grad_in(dx, [dy, s, x, acc], coef, beta);
                    })
                })
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    fn input(shape: [usize; 4]) -> Blob {
        let n = shape.iter().product();
        Blob::from_data(
            &shape,
            (0..n).map(|i| (i as f32 * 0.77).sin() * 2.0).collect(),
        )
        .unwrap()
    }

    #[test]
    fn across_channels_matches_direct_formula() {
        let shape = [2, 7, 3, 2];
        let mut h = Harness::new(
            "type: LRN\nlrn_param: { local_size: 5, alpha: 0.3, beta: 0.75, k: 2 }",
            vec![input(shape)],
        )
        .unwrap();
        h.forward().unwrap();
        let x = &h.bottom[0].data;
        let [n, c, hh, ww] = shape;
        let plane = hh * ww;
        let mut e = vec![0.0; x.len()];
        for i in 0..n {
            for ch in 0..c {
                for p in 0..plane {
                    let mut s = 0.0;
                    for cc in ch.saturating_sub(2)..(ch + 3).min(c) {
                        s += x[(i * c + cc) * plane + p].powi(2);
                    }
                    let idx = (i * c + ch) * plane + p;
                    e[idx] = x[idx] * (2.0 + 0.3 / 5.0 * s).powf(-0.75);
                }
            }
        }
        assert_eq!(h.top[0].shape, shape.to_vec());
        assert_close(&h.top[0].data, &e, 1e-5);
    }

    #[test]
    fn within_channel_matches_direct_formula() {
        let shape = [1, 2, 5, 4];
        let mut h = Harness::new(
            "type: LRN\nlrn_param: { local_size: 3, alpha: 0.5, beta: 0.6, norm_region: WITHIN_CHANNEL }",
            vec![input(shape)],
        )
        .unwrap();
        h.forward().unwrap();
        let x = &h.bottom[0].data;
        let (hh, ww) = (5isize, 4isize);
        let mut e = vec![0.0; x.len()];
        for ch in 0..2 {
            for y in 0..hh {
                for xx in 0..ww {
                    let mut s = 0.0;
                    for dy in -1..=1 {
                        for dx in -1..=1 {
                            let (yy, xq) = (y + dy, xx + dx);
                            if yy >= 0 && yy < hh && xq >= 0 && xq < ww {
                                s += x[(ch * 20 + yy * ww + xq) as usize].powi(2);
                            }
                        }
                    }
                    let idx = (ch * 20 + y * ww + xx) as usize;
                    e[idx] = x[idx] * (1.0 + 0.5 / 9.0 * s).powf(-0.6);
                }
            }
        }
        assert_close(&h.top[0].data, &e, 1e-5);
    }

    #[test]
    fn fast_power_matches_powf() {
        for i in 0..2000 {
            let s = 1.0 + i as f32 * 0.37;
            let (a, b) = (super::neg_pow_075(s), s.powf(-0.75));
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * b, "{s}: {a} vs {b}");
        }
    }

    #[test]
    fn rejects_even_size_and_checks_gradients() {
        assert!(Harness::new(
            "type: LRN\nlrn_param: { local_size: 4 }",
            vec![input([1, 4, 2, 2])]
        )
        .is_err());
        check_layer_from(
            "type: LRN\nlrn_param: { local_size: 3, alpha: 0.8, beta: 0.75, k: 1.5 }",
            &[&[2, 5, 3, 2]],
        );
        check_layer_from(
            "type: LRN\nlrn_param: { local_size: 3, alpha: 0.8, beta: 0.75, norm_region: WITHIN_CHANNEL }",
            &[&[2, 2, 4, 3]],
        );
    }
}
