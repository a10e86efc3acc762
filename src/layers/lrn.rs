//! `LRN`: local response normalisation, Caffe's two regions.
//!
//! ACROSS_CHANNELS: `s = k + alpha/n * sum_{window of n channels} x^2`, `y = x * s^-beta`.
//! WITHIN_CHANNEL: `s = 1 + alpha/n^2 * sum_{n x n window, zero padded} x^2`, `y = x * s^-beta`
//! (Caffe builds this one from Power/Pooling layers with shift 1, so `k` is not used there).
//! Items (ACROSS) or planes (WITHIN) run in parallel on rayon.

use super::{BlobCounts, Layer};
use crate::proto::lrn_parameter::NormRegion;
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use rayon::prelude::*;

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

/// Sliding sum over channels: `out[c] = sum_{|c'-c| <= half} v[c']` for `ch` planes of `plane`.
fn channel_window_sum(v: &[f32], ch: usize, plane: usize, half: usize, out: &mut [f32]) {
    let mut acc = vec![0.0f32; plane];
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
        out[c * plane..(c + 1) * plane].copy_from_slice(&acc);
    }
}

/// Box sum over a `2*half+1` square window, zero padded: `out[y][x] = sum v[y'][x']`.
fn box_sum(v: &[f32], h: usize, w: usize, half: usize, out: &mut [f32]) {
    // Rows first, then columns.
    let mut rows = vec![0.0f32; h * w];
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

impl Layer for Lrn {
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
        let [_, c, h, w] = self.shape;
        let (plane, half) = (h * w, (self.size - 1) / 2);
        let x = &bottom[0].data;
        let (alpha, beta, k, n) = (self.alpha, self.beta, self.k, self.size as f32);
        let y = &mut top[0].data;
        if x.is_empty() {
            return Ok(());
        }
        if self.across {
            let item = c * plane;
            self.scale
                .par_chunks_mut(item)
                .zip(y.par_chunks_mut(item))
                .enumerate()
                .for_each(|(i, (s, y))| {
                    let x = &x[i * item..(i + 1) * item];
                    let sq: Vec<f32> = x.iter().map(|v| v * v).collect();
                    channel_window_sum(&sq, c, plane, half, s);
                    for ((s, y), x) in s.iter_mut().zip(y.iter_mut()).zip(x) {
                        *s = k + alpha / n * *s;
                        *y = x * s.powf(-beta);
                    }
                });
        } else {
            self.scale
                .par_chunks_mut(plane)
                .zip(y.par_chunks_mut(plane))
                .enumerate()
                .for_each(|(i, (s, y))| {
                    let x = &x[i * plane..(i + 1) * plane];
                    let sq: Vec<f32> = x.iter().map(|v| v * v).collect();
                    box_sum(&sq, h, w, half, s);
                    for ((s, y), x) in s.iter_mut().zip(y.iter_mut()).zip(x) {
                        *s = 1.0 + alpha / (n * n) * *s;
                        *y = x * s.powf(-beta);
                    }
                });
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
        let [_, c, h, w] = self.shape;
        let (plane, half) = (h * w, (self.size - 1) / 2);
        let (dy, y) = (&top[0].diff, &top[0].data);
        let b = &mut *bottom[0];
        let x = &b.data;
        let n = self.size as f32;
        let beta = self.beta;
        let scale = &self.scale;
        if x.is_empty() {
            return Ok(());
        }
        // dx = dy s^-beta - coef * x * window_sum(dy * y / s)
        let (unit, coef) = if self.across {
            (c * plane, 2.0 * self.alpha * beta / n)
        } else {
            (plane, 2.0 * self.alpha * beta / (n * n))
        };
        let across = self.across;
        b.diff.par_chunks_mut(unit).enumerate().for_each(|(i, dx)| {
            let r = i * unit..(i + 1) * unit;
            let (dy, y, s, x) = (&dy[r.clone()], &y[r.clone()], &scale[r.clone()], &x[r]);
            let ratio: Vec<f32> = dy
                .iter()
                .zip(y)
                .zip(s)
                .map(|((d, y), s)| d * y / s)
                .collect();
            let mut acc = vec![0.0; unit];
            if across {
                channel_window_sum(&ratio, c, plane, half, &mut acc);
            } else {
                box_sum(&ratio, h, w, half, &mut acc);
            }
            for j in 0..unit {
                dx[j] += dy[j] * s[j].powf(-beta) - coef * x[j] * acc[j];
            }
        });
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
