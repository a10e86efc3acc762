//! crema's TRAIN-only pixel augmentations (`transform_param.augmentation`): Gaussian noise, blur
//! and sharpen, each applied to a sample with its own probability. They work on the cropped,
//! mirrored patch in raw pixel units (0-255), before mean subtraction and scaling; values are not
//! clamped.

use crate::proto::AugmentationParameter;
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Validated augmentation settings.
#[derive(Debug, Clone)]
pub struct Augmenter {
    noise_prob: f32,
    noise_std: f32,
    blur_prob: f32,
    blur_sigma: f32,
    sharpen_prob: f32,
    sharpen_strength: f32,
}

impl Augmenter {
    /// Checks probabilities (in [0, 1]) and strengths (noise_std >= 0, blur_sigma > 0,
    /// sharpen_strength >= 0).
    pub fn new(p: &AugmentationParameter) -> Result<Self> {
        for (name, v) in [
            ("noise_prob", p.noise_prob()),
            ("blur_prob", p.blur_prob()),
            ("sharpen_prob", p.sharpen_prob()),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::config(format!(
                    "augmentation.{name} is a probability in [0, 1], got {v}"
                )));
            }
        }
        let negative = |v: f32| v.is_nan() || v < 0.0;
        if negative(p.noise_std()) || negative(p.sharpen_strength()) {
            return Err(Error::config(
                "augmentation.noise_std and sharpen_strength must be >= 0",
            ));
        }
        if p.blur_sigma().is_nan() || p.blur_sigma() <= 0.0 {
            return Err(Error::config(format!(
                "augmentation.blur_sigma must be > 0, got {}",
                p.blur_sigma()
            )));
        }
        Ok(Augmenter {
            noise_prob: p.noise_prob(),
            noise_std: p.noise_std(),
            blur_prob: p.blur_prob(),
            blur_sigma: p.blur_sigma(),
            sharpen_prob: p.sharpen_prob(),
            sharpen_strength: p.sharpen_strength(),
        })
    }

    /// True when some augmentation can fire.
    pub fn is_active(&self) -> bool {
        (self.noise_prob > 0.0 && self.noise_std > 0.0)
            || self.blur_prob > 0.0
            || (self.sharpen_prob > 0.0 && self.sharpen_strength > 0.0)
    }

    /// Applies blur, then sharpen, then noise, each with its probability, to a CHW patch.
    pub fn apply(&self, data: &mut [f32], shape: [usize; 3], rng: &mut StdRng) {
        if self.blur_prob > 0.0 && rng.gen::<f32>() < self.blur_prob {
            gaussian_blur(data, shape, self.blur_sigma);
        }
        if self.sharpen_prob > 0.0 && rng.gen::<f32>() < self.sharpen_prob {
            sharpen(data, shape, self.sharpen_strength);
        }
        if self.noise_prob > 0.0 && self.noise_std > 0.0 && rng.gen::<f32>() < self.noise_prob {
            if let Ok(n) = Normal::new(0.0f32, self.noise_std) {
                for v in data.iter_mut() {
                    *v += n.sample(rng);
                }
            }
        }
    }
}

fn kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i32;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian blur of every channel (edges replicated), radius `ceil(3 sigma)`.
pub fn gaussian_blur(data: &mut [f32], [c, h, w]: [usize; 3], sigma: f32) {
    let k = kernel(sigma);
    let r = (k.len() / 2) as isize;
    let mut tmp = vec![0f32; h * w];
    for ch in data.chunks_exact_mut(h * w).take(c) {
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let xx = (x as isize + j as isize - r).clamp(0, w as isize - 1) as usize;
                    acc += kv * ch[y * w + xx];
                }
                tmp[y * w + x] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let yy = (y as isize + j as isize - r).clamp(0, h as isize - 1) as usize;
                    acc += kv * tmp[yy * w + x];
                }
                ch[y * w + x] = acc;
            }
        }
    }
}

/// Unsharp mask: `x + strength * (x - blur(x, sigma 1))`.
pub fn sharpen(data: &mut [f32], shape: [usize; 3], strength: f32) {
    let mut b = data.to_vec();
    gaussian_blur(&mut b, shape, 1.0);
    for (v, bl) in data.iter_mut().zip(&b) {
        *v += strength * (*v - bl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn blur_keeps_constants_and_spreads_a_spike() {
        let mut flat = vec![7.0; 2 * 5 * 6];
        gaussian_blur(&mut flat, [2, 5, 6], 1.3);
        assert!(flat.iter().all(|v| (v - 7.0).abs() < 1e-4));
        let mut spike = vec![0.0; 9 * 9];
        spike[4 * 9 + 4] = 1.0;
        gaussian_blur(&mut spike, [1, 9, 9], 1.0);
        let total: f32 = spike.iter().sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!(spike[4 * 9 + 4] < 0.2 && spike[4 * 9 + 5] > 0.05);
        // Symmetric.
        assert!((spike[4 * 9 + 3] - spike[3 * 9 + 4]).abs() < 1e-6);
    }

    #[test]
    fn sharpen_raises_contrast_at_an_edge() {
        let mut d: Vec<f32> = (0..8).map(|x| if x < 4 { 0.0 } else { 100.0 }).collect();
        sharpen(&mut d, [1, 1, 8], 1.0);
        assert!(d[3] < 0.0 && d[4] > 100.0, "{d:?}");
    }

    #[test]
    fn probabilities_and_validation() {
        let p = AugmentationParameter {
            noise_prob: Some(1.0),
            noise_std: Some(10.0),
            ..Default::default()
        };
        let a = Augmenter::new(&p).unwrap();
        let mut d = vec![100.0; 10000];
        a.apply(&mut d, [1, 100, 100], &mut StdRng::seed_from_u64(3));
        let var = d.iter().map(|v| (v - 100.0).powi(2)).sum::<f32>() / 1e4;
        assert!((var.sqrt() - 10.0).abs() < 0.5, "{var}");
        let off = AugmentationParameter::default();
        assert!(!Augmenter::new(&off).unwrap().is_active());
        let bad = AugmentationParameter {
            blur_prob: Some(1.5),
            ..Default::default()
        };
        assert!(Augmenter::new(&bad).is_err());
    }
}
