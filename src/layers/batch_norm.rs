//! `BatchNorm`: per-channel normalisation with batch statistics (TRAIN) or the stored running
//! statistics (TEST). No affine part (follow with `Scale`).
//!
//! Caffe's three blobs hold *sums*: `mean_sum[C]`, `var_sum[C]` and `scale_factor[1]`; the
//! effective statistics are `mean_sum / s` and `var_sum / s` (zero when `s == 0`). Each TRAIN
//! forward updates `s = s*maf + 1`, `mean_sum = mean_sum*maf + mean`,
//! `var_sum = var_sum*maf + m/(m-1) * var` (m = values per channel).

use super::{BlobCounts, Inplace, Layer, SetupCtx};
use crate::proto::{LayerParameter, Phase};
use crate::{Blob, Result};

/// `BatchNorm` layer.
pub struct BatchNorm {
    use_global_stats: bool,
    maf: f32,
    eps: f32,
    channels: usize,
    /// `1 / sqrt(var + eps)` per channel from the last forward.
    inv_std: Vec<f32>,
    /// The normalised output of the last forward, for backward (a layer in place after this
    /// one may overwrite the top).
    y_saved: Vec<f32>,
}

/// Creates `BatchNorm` from `batch_norm_param`; `use_global_stats` defaults to `phase == TEST`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let bn = p.batch_norm_param.unwrap_or_default();
    let use_global_stats = bn.use_global_stats.unwrap_or(p.phase() == Phase::Test);
    crate::ensure!(
        bn.eps() >= 0.0 && bn.eps().is_finite(),
        "batch_norm_param.eps must be a finite number >= 0, got {}",
        bn.eps()
    );
    Ok(Box::new(BatchNorm {
        use_global_stats,
        maf: bn.moving_average_fraction(),
        eps: bn.eps(),
        channels: 0,
        inv_std: Vec::new(),
        y_saved: Vec::new(),
    }))
}

fn channels_of(b: &Blob) -> usize {
    if b.num_axes() == 1 {
        1
    } else {
        b.legacy_dim(1)
    }
}

/// `(num, channels, spatial)` of a blob read as N x C x (rest).
fn geom(b: &Blob) -> (usize, usize, usize) {
    let n = b.legacy_dim(0);
    let c = channels_of(b);
    let s = if b.num_axes() > 2 { b.count_from(2) } else { 1 };
    (n, c, s)
}

impl Layer for BatchNorm {
    fn type_name(&self) -> &'static str {
        "BatchNorm"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn frozen_params(&self) -> bool {
        true
    }
    fn setup(&mut self, bottom: &[&Blob], _: &mut SetupCtx) -> Result<Vec<Blob>> {
        crate::ensure!(
            bottom[0].num_axes() >= 1,
            "BatchNorm needs a bottom with at least one axis, got {}",
            bottom[0].shape_string()
        );
        self.channels = channels_of(bottom[0]);
        Ok(vec![
            Blob::new(&[self.channels]),
            Blob::new(&[self.channels]),
            Blob::new(&[1]),
        ])
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let x = Inplace::input_blob(bottom, top);
        crate::ensure!(
            channels_of(x) == self.channels,
            "BatchNorm was set up for {} channels, bottom now has shape {}",
            self.channels,
            x.shape_string()
        );
        Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        params: &mut [&mut Blob],
    ) -> Result<()> {
        let (n, c, s) = geom(Inplace::input_blob(bottom, top));
        let m = n * s;
        let mut mean = vec![0f32; c];
        let mut var = vec![0f32; c];
        {
            let x: &[f32] = match bottom.first() {
                Some(b) => &b.data,
                None => &top[0].data,
            };
            if self.use_global_stats {
                let sf = params[2].data[0];
                let k = if sf == 0.0 { 0.0 } else { 1.0 / sf };
                for ch in 0..c {
                    mean[ch] = params[0].data[ch] * k;
                    var[ch] = params[1].data[ch] * k;
                }
            } else {
                for ch in 0..c {
                    let mut sum = 0f64;
                    for i in 0..n {
                        let o = (i * c + ch) * s;
                        sum += x[o..o + s].iter().map(|&v| v as f64).sum::<f64>();
                    }
                    let mu = sum / m.max(1) as f64;
                    let mut sq = 0f64;
                    for i in 0..n {
                        let o = (i * c + ch) * s;
                        sq += x[o..o + s]
                            .iter()
                            .map(|&v| (v as f64 - mu) * (v as f64 - mu))
                            .sum::<f64>();
                    }
                    mean[ch] = mu as f32;
                    var[ch] = (sq / m.max(1) as f64) as f32;
                }
            }
        }
        self.inv_std = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        // y = (x - mean) * inv_std
        let write = |x: &[f32], y: &mut [f32]| {
            for i in 0..n {
                for (ch, (&mu, &is)) in mean.iter().zip(&self.inv_std).enumerate() {
                    let o = (i * c + ch) * s;
                    for j in o..o + s {
                        y[j] = (x[j] - mu) * is;
                    }
                }
            }
        };
        match bottom.first() {
            Some(b) => write(&b.data, &mut top[0].data),
            None => {
                let x = top[0].data.clone();
                write(&x, &mut top[0].data);
            }
        }
        if !self.use_global_stats {
            let maf = self.maf;
            params[2].data[0] = params[2].data[0] * maf + 1.0;
            let corr = if m > 1 {
                m as f32 / (m - 1) as f32
            } else {
                1.0
            };
            for (s, m) in params[0].data.iter_mut().zip(&mean) {
                *s = *s * maf + m;
            }
            for (s, v) in params[1].data.iter_mut().zip(&var) {
                *s = *s * maf + corr * v;
            }
        }
        // Backward reads y from this copy (Caffe's `x_norm_`): a layer in place after this one
        // (Scale, ReLU) overwrites the top.
        self.y_saved.clone_from(&top[0].data);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if !down[0] {
            return Ok(());
        }
        let (n, c, s) = geom(bottom[0]);
        let m = (n * s).max(1) as f32;
        let inplace = top.is_empty();
        let dy: Vec<f32> = match top.first() {
            Some(t) => t.diff.clone(),
            None => bottom[0].diff.clone(),
        };
        let y: &[f32] = &self.y_saved;
        // Global stats: dx = dy * inv_std. Batch stats:
        // dx = inv_std * (dy - mean(dy) - y * mean(dy * y)) per channel.
        let mut dx = vec![0f32; dy.len()];
        for ch in 0..c {
            let is = self.inv_std[ch];
            let (mut mdy, mut mdyy) = (0f64, 0f64);
            if !self.use_global_stats {
                for i in 0..n {
                    let o = (i * c + ch) * s;
                    for j in o..o + s {
                        mdy += dy[j] as f64;
                        mdyy += (dy[j] * y[j]) as f64;
                    }
                }
                mdy /= m as f64;
                mdyy /= m as f64;
            }
            let (mdy, mdyy) = (mdy as f32, mdyy as f32);
            for i in 0..n {
                let o = (i * c + ch) * s;
                for j in o..o + s {
                    dx[j] = is * (dy[j] - mdy - y[j] * mdyy);
                }
            }
        }
        let d = &mut bottom[0].diff;
        if inplace {
            d.copy_from_slice(&dx);
        } else {
            d.iter_mut().zip(&dx).for_each(|(d, v)| *d += v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    fn input() -> Blob {
        // 2 x 2 x 3
        let x: Vec<f32> = vec![
            1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0, 5.0, 6.0, -10.0, 0.0, 10.0,
        ];
        Blob::from_data(&[2, 2, 3], x).unwrap()
    }

    #[test]
    fn train_uses_batch_stats_and_updates_blobs_like_caffe() {
        let mut h = Harness::new(
            "type: BatchNorm\nbatch_norm_param: { moving_average_fraction: 0.5, eps: 0 }",
            vec![input()],
        )
        .unwrap();
        h.forward().unwrap();
        // channel 0: 1..6 -> mean 3.5, var 35/12; channel 1: 10,20,30,-10,0,10 -> mean 10,
        // var (0+100+400+400+100+0)/6 = 1000/6.
        let (m0, v0) = (3.5f32, 35.0f32 / 12.0);
        let (m1, v1) = (10.0f32, 1000.0f32 / 6.0);
        let x = input().data;
        let expect: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if (i / 3) % 2 == 0 {
                    (v - m0) / v0.sqrt()
                } else {
                    (v - m1) / v1.sqrt()
                }
            })
            .collect();
        assert_close(&h.top[0].data, &expect, 1e-5);
        // s = 0*0.5 + 1; sums = 0*0.5 + stats; variance unbiased with m = 6.
        assert_close(&h.params[2].data, &[1.0], 0.0);
        assert_close(&h.params[0].data, &[m0, m1], 1e-5);
        assert_close(&h.params[1].data, &[v0 * 6.0 / 5.0, v1 * 6.0 / 5.0], 1e-3);
        // Second pass: s = 1.5, mean_sum = 1.5 * mean.
        h.forward().unwrap();
        assert_close(&h.params[2].data, &[1.5], 1e-6);
        assert_close(&h.params[0].data, &[1.5 * m0, 1.5 * m1], 1e-4);
    }

    #[test]
    fn test_phase_uses_stored_stats_over_scale_factor() {
        let mut h = Harness::new(
            "type: BatchNorm\nphase: TEST\nbatch_norm_param: { eps: 0.5 }",
            vec![input()],
        )
        .unwrap();
        h.params[0].data = vec![2.0, 4.0];
        h.params[1].data = vec![7.0, 15.0];
        h.params[2].data = vec![2.0];
        h.forward().unwrap();
        // mean 1, 2; var 3.5, 7.5 -> std sqrt(4) = 2, sqrt(8)
        let x = input().data;
        let expect: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if (i / 3) % 2 == 0 {
                    (v - 1.0) / 2.0
                } else {
                    (v - 2.0) / 8f32.sqrt()
                }
            })
            .collect();
        assert_close(&h.top[0].data, &expect, 1e-5);
        // Stored stats are not touched in TEST.
        assert_eq!(h.params[2].data, vec![2.0]);
        // scale_factor 0 means zero statistics.
        h.params[2].data = vec![0.0];
        h.forward().unwrap();
        let e: Vec<f32> = x.iter().map(|v| v / 0.5f32.sqrt()).collect();
        assert_close(&h.top[0].data, &e, 1e-5);
    }

    #[test]
    fn in_place_matches_out_of_place() {
        let mut h = Harness::new("type: BatchNorm", vec![input()]).unwrap();
        h.forward().unwrap();
        let dy: Vec<f32> = (0..12).map(|i| (i as f32 * 0.9).sin()).collect();
        h.top[0].diff = dy.clone();
        h.bottom[0].diff = vec![0.0; 12];
        h.backward(&[true]).unwrap();
        let mut h2 = Harness::new("type: BatchNorm", vec![input()]).unwrap();
        let mut shared = input();
        let mut pr: Vec<&mut Blob> = h2.params.iter_mut().collect();
        h2.layer.reshape(&[], &mut [&mut shared]).unwrap();
        h2.layer.forward(&[], &mut [&mut shared], &mut pr).unwrap();
        assert_close(&shared.data, &h.top[0].data, 1e-6);
        shared.diff = dy;
        h2.layer
            .backward(&[], &[true], &mut [&mut shared], &mut pr)
            .unwrap();
        assert_close(&shared.diff, &h.bottom[0].diff, 1e-5);
    }

    #[test]
    fn gradients() {
        check_layer_from(
            "type: BatchNorm\nbatch_norm_param: { use_global_stats: false }",
            &[&[3, 2, 2, 3]],
        );
        check_layer_from("type: BatchNorm", &[&[5, 3]]);
        // Global stats: plain per-channel affine map.
        check_layer_from(
            "type: BatchNorm\nbatch_norm_param: { use_global_stats: true }",
            &[&[2, 2, 3]],
        );
    }
}
