//! Caffe's `DataTransformer`: `out = (pixel - mean) * scale` over a crop (random in TRAIN, centre
//! in TEST), mirrored at random in TRAIN; crema's augmentations run on the patch before the mean.

use super::augment::Augmenter;
use super::mean::{read_mean, MeanImage};
use super::{shape_text, Sample};
use crate::proto::{Phase, TransformationParameter};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::Rng;

/// What is subtracted before scaling.
#[derive(Debug, Clone)]
pub enum Mean {
    /// Nothing.
    None,
    /// A mean image the size of the uncropped input.
    Image(MeanImage),
    /// One value per channel (or one for all).
    Values(Vec<f32>),
}

/// A configured transform for one phase.
#[derive(Debug, Clone)]
pub struct Transformer {
    scale: f32,
    crop: usize,
    mirror: bool,
    train: bool,
    mean: Mean,
    aug: Option<Augmenter>,
    /// Decode encoded images as colour.
    pub force_color: bool,
    /// Decode encoded images as grey.
    pub force_gray: bool,
}

impl Transformer {
    /// Validates `transform_param` and reads its mean file.
    pub fn new(p: &TransformationParameter, phase: Phase) -> Result<Self> {
        if p.mean_file.is_some() && !p.mean_value.is_empty() {
            return Err(Error::config(
                "transform_param: give mean_file or mean_value, not both",
            ));
        }
        if p.force_color() && p.force_gray() {
            return Err(Error::config(
                "transform_param: force_color and force_gray cannot both be set",
            ));
        }
        let mean = match &p.mean_file {
            Some(f) => Mean::Image(read_mean(f)?),
            None if !p.mean_value.is_empty() => Mean::Values(p.mean_value.clone()),
            None => Mean::None,
        };
        let train = phase == Phase::Train;
        let aug = match &p.augmentation {
            Some(a) => {
                let a = Augmenter::new(a)?;
                (a.is_active() && train).then_some(a)
            }
            None => None,
        };
        Ok(Transformer {
            scale: p.scale(),
            crop: p.crop_size() as usize,
            mirror: p.mirror(),
            train,
            mean,
            aug,
            force_color: p.force_color(),
            force_gray: p.force_gray(),
        })
    }

    /// The identity transform (MemoryData without `transform_param`, tests).
    pub fn identity() -> Self {
        Transformer {
            scale: 1.0,
            crop: 0,
            mirror: false,
            train: false,
            mean: Mean::None,
            aug: None,
            force_color: false,
            force_gray: false,
        }
    }

    /// Output shape for an input of `[C, H, W]`; checks the crop and the mean against it.
    pub fn output_shape(&self, [c, h, w]: [usize; 3]) -> Result<[usize; 3]> {
        if self.crop > 0 && (self.crop > h || self.crop > w) {
            return Err(Error::config(format!(
                "crop_size {} is larger than the {h}x{w} input",
                self.crop
            )));
        }
        match &self.mean {
            Mean::Image(m) if m.shape != [c, h, w] => {
                return Err(Error::config(format!(
                    "mean_file is {}, the data is {}; the mean image must have the size of the \
                     uncropped input",
                    shape_text(m.shape),
                    shape_text([c, h, w])
                )))
            }
            Mean::Values(v) if v.len() != 1 && v.len() != c => {
                return Err(Error::config(format!(
                    "{} mean_value(s) for {c} channel(s); give one, or one per channel",
                    v.len()
                )))
            }
            _ => {}
        }
        Ok(if self.crop > 0 {
            [c, self.crop, self.crop]
        } else {
            [c, h, w]
        })
    }

    /// Transforms `s` into `out` (`output_shape(s.shape())` values), drawing crop offsets,
    /// mirroring and augmentations from `rng`.
    pub fn apply(&self, s: &Sample, rng: &mut StdRng, out: &mut [f32]) -> Result<()> {
        let [c, h, w] = s.shape();
        let [_, oh, ow] = self.output_shape([c, h, w])?;
        debug_assert_eq!(out.len(), c * oh * ow);
        let (h_off, w_off) = if self.crop == 0 {
            (0, 0)
        } else if self.train {
            (rng.gen_range(0..=h - oh), rng.gen_range(0..=w - ow))
        } else {
            ((h - oh) / 2, (w - ow) / 2)
        };
        let mirror = self.mirror && self.train && rng.gen::<bool>();
        // Source index of output element (ch, y, x).
        let src = |ch: usize, y: usize, x: usize| {
            let sx = if mirror { ow - 1 - x } else { x };
            (ch * h + h_off + y) * w + w_off + sx
        };
        for ch in 0..c {
            for y in 0..oh {
                let row = &mut out[(ch * oh + y) * ow..(ch * oh + y + 1) * ow];
                for (x, o) in row.iter_mut().enumerate() {
                    *o = s.data[src(ch, y, x)];
                }
            }
        }
        if let Some(a) = &self.aug {
            a.apply(out, [c, oh, ow], rng);
        }
        let scale = self.scale;
        match &self.mean {
            Mean::None => {
                if scale != 1.0 {
                    out.iter_mut().for_each(|v| *v *= scale);
                }
            }
            Mean::Values(m) => {
                for ch in 0..c {
                    let mv = if m.len() == 1 { m[0] } else { m[ch] };
                    for v in &mut out[ch * oh * ow..(ch + 1) * oh * ow] {
                        *v = (*v - mv) * scale;
                    }
                }
            }
            Mean::Image(m) => {
                for ch in 0..c {
                    for y in 0..oh {
                        for x in 0..ow {
                            let o = &mut out[(ch * oh + y) * ow + x];
                            *o = (*o - m.data[src(ch, y, x)]) * scale;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AugmentationParameter;
    use rand::SeedableRng;

    fn sample(c: usize, h: usize, w: usize) -> Sample {
        Sample {
            channels: c,
            height: h,
            width: w,
            data: (0..c * h * w).map(|v| v as f32).collect(),
            label: 3,
        }
    }

    fn param(yaml: &str) -> TransformationParameter {
        crate::spec::from_yaml_str(yaml, "t").unwrap()
    }

    fn run(t: &Transformer, s: &Sample, seed: u64) -> Vec<f32> {
        let o = t.output_shape(s.shape()).unwrap();
        let mut out = vec![0.0; o.iter().product()];
        t.apply(s, &mut StdRng::seed_from_u64(seed), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn center_crop_in_test_and_scale() {
        let t = Transformer::new(&param("{crop_size: 2, scale: 0.5}"), Phase::Test).unwrap();
        let s = sample(1, 4, 5);
        // Centre offsets: h (4-2)/2 = 1, w (5-2)/2 = 1.
        assert_eq!(run(&t, &s, 0), vec![3.0, 3.5, 5.5, 6.0]);
    }

    #[test]
    fn random_crops_cover_every_position_in_train() {
        let t = Transformer::new(&param("{crop_size: 2}"), Phase::Train).unwrap();
        let s = sample(1, 3, 3);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let o = run(&t, &s, seed);
            // Top-left value identifies the offset; the patch must be contiguous.
            let tl = o[0] as usize;
            assert_eq!(
                o,
                vec![tl as f32, tl as f32 + 1.0, tl as f32 + 3.0, tl as f32 + 4.0]
            );
            seen.insert(tl);
        }
        assert_eq!(seen, [0, 1, 3, 4].into_iter().collect());
    }

    #[test]
    fn mirror_only_in_train() {
        let s = sample(2, 1, 3);
        let tr = Transformer::new(&param("{mirror: true}"), Phase::Train).unwrap();
        let outs: std::collections::HashSet<Vec<i32>> = (0..50)
            .map(|k| run(&tr, &s, k).iter().map(|&v| v as i32).collect())
            .collect();
        let want: std::collections::HashSet<Vec<i32>> =
            [vec![0, 1, 2, 3, 4, 5], vec![2, 1, 0, 5, 4, 3]]
                .into_iter()
                .collect();
        assert_eq!(outs, want);
        let te = Transformer::new(&param("{mirror: true}"), Phase::Test).unwrap();
        for k in 0..20 {
            assert_eq!(run(&te, &s, k), s.data);
        }
    }

    #[test]
    fn mean_values_broadcast_and_per_channel() {
        let s = sample(3, 1, 2);
        let t = Transformer::new(&param("{mean_value: [1, 2, 3], scale: 2}"), Phase::Test).unwrap();
        assert_eq!(run(&t, &s, 0), vec![-2.0, 0.0, 0.0, 2.0, 2.0, 4.0]);
        let one = Transformer::new(&param("{mean_value: 1}"), Phase::Test).unwrap();
        assert_eq!(run(&one, &s, 0), vec![-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]);
        let two = Transformer::new(&param("{mean_value: [1, 2]}"), Phase::Test).unwrap();
        assert!(crate::testing::err_text(two.output_shape([3, 1, 2])).contains("2 mean_value"));
    }

    #[test]
    fn mean_file_subtracted_at_the_crop_and_mirror_position() {
        let mf = "../shared/data/caffe/cifar10_quick_v1/mean.binaryproto";
        let m = crate::data::mean::read_mean(mf).unwrap();
        let mut s = sample(3, 32, 32);
        s.data = m.data.iter().map(|v| v + 10.0).collect();
        let full = Transformer::new(&param(&format!("{{mean_file: {mf}}}")), Phase::Test).unwrap();
        assert!(run(&full, &s, 0).iter().all(|v| (v - 10.0).abs() < 1e-4));
        // Pixels = mean + their own column index: after mean subtraction the crop shows columns.
        for (i, v) in s.data.iter_mut().enumerate() {
            *v = m.data[i] + (i % 32) as f32;
        }
        let crop = Transformer::new(
            &param(&format!(
                "{{mean_file: {mf}, crop_size: 28, mirror: true, scale: 0.5}}"
            )),
            Phase::Train,
        )
        .unwrap();
        for seed in 0..10 {
            let o = run(&crop, &s, seed);
            let row: Vec<f32> = o[..28].iter().map(|v| v * 2.0).collect();
            let first = row[0];
            let asc = (0..28).all(|x| (row[x] - (first + x as f32)).abs() < 1e-3);
            let desc = (0..28).all(|x| (row[x] - (first - x as f32)).abs() < 1e-3);
            assert!(asc || desc, "{row:?}");
            // Every channel and row shows the same columns.
            assert!((o[28 * 28 * 2 + 28 * 5] * 2.0 - first).abs() < 1e-3);
        }
        let small = sample(3, 28, 28);
        assert!(crate::testing::err_text(full.output_shape(small.shape())).contains("mean_file"));
    }

    #[test]
    fn augmentation_only_in_train() {
        let p = TransformationParameter {
            augmentation: Some(AugmentationParameter {
                noise_prob: Some(1.0),
                noise_std: Some(5.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = sample(1, 4, 4);
        let te = Transformer::new(&p, Phase::Test).unwrap();
        assert_eq!(run(&te, &s, 1), s.data);
        let tr = Transformer::new(&p, Phase::Train).unwrap();
        let o = run(&tr, &s, 1);
        assert_ne!(o, s.data);
        assert_eq!(o, run(&tr, &s, 1), "same seed, same noise");
    }

    #[test]
    fn bad_configs() {
        assert!(Transformer::new(
            &param("{mean_value: 1, mean_file: x.binaryproto}"),
            Phase::Test
        )
        .is_err());
        let e = crate::testing::err_text(Transformer::new(
            &param("{mean_file: /nonexistent/mean.binaryproto}"),
            Phase::Test,
        ));
        assert!(e.contains("/nonexistent/mean.binaryproto"), "{e}");
        let t = Transformer::new(&param("{crop_size: 9}"), Phase::Test).unwrap();
        assert!(crate::testing::err_text(t.output_shape([1, 8, 8])).contains("crop_size 9"));
    }
}
