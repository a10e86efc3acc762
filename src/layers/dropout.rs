//! `Dropout`: in TRAIN keeps each value with probability `1 - p` and scales it by `1 / (1 - p)`
//! (Caffe's inverted dropout); in TEST it is the identity.

use super::{BlobCounts, Layer, SetupCtx};
use crate::proto::{LayerParameter, Phase};
use crate::{Blob, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `Dropout` layer.
pub struct Dropout {
    ratio: f32,
    train: bool,
    rng: StdRng,
    /// 1 where the value was kept in the last TRAIN forward.
    mask: Vec<bool>,
}

/// Creates `Dropout` from `dropout_param`; the phase comes from `LayerParameter.phase`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let ratio = p.dropout_param.unwrap_or_default().dropout_ratio();
    crate::ensure!(
        (0.0..1.0).contains(&ratio),
        "dropout_param.dropout_ratio must be in [0, 1), got {ratio}"
    );
    Ok(Box::new(Dropout {
        ratio,
        train: p.phase() == Phase::Train,
        rng: StdRng::seed_from_u64(0),
        mask: Vec::new(),
    }))
}

impl Layer for Dropout {
    fn keeps_sign(&self) -> bool {
        true
    }
    fn type_name(&self) -> &'static str {
        "Dropout"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn setup(&mut self, _: &[&Blob], ctx: &mut SetupCtx) -> Result<Vec<Blob>> {
        self.rng = StdRng::seed_from_u64(ctx.rng.gen());
        Ok(Vec::new())
    }
    fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        super::Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if !self.train {
            if let Some(b) = bottom.first() {
                top[0].data.copy_from_slice(&b.data);
            }
            return Ok(());
        }
        let n = top[0].count();
        let keep = 1.0 - self.ratio;
        let scale = 1.0 / keep;
        let rng = &mut self.rng;
        self.mask.clear();
        self.mask.extend((0..n).map(|_| rng.gen::<f32>() < keep));
        let mask = &self.mask;
        match bottom.first() {
            Some(b) => {
                for (i, y) in top[0].data.iter_mut().enumerate() {
                    *y = if mask[i] { b.data[i] * scale } else { 0.0 };
                }
            }
            None => {
                for (i, y) in top[0].data.iter_mut().enumerate() {
                    *y = if mask[i] { *y * scale } else { 0.0 };
                }
            }
        }
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
        let scale = 1.0 / (1.0 - self.ratio);
        let g = |i: usize, dy: f32| -> f32 {
            if !self.train {
                dy
            } else if self.mask[i] {
                dy * scale
            } else {
                0.0
            }
        };
        match top.first() {
            Some(t) => {
                for (i, d) in bottom[0].diff.iter_mut().enumerate() {
                    *d += g(i, t.diff[i]);
                }
            }
            None => {
                for (i, d) in bottom[0].diff.iter_mut().enumerate() {
                    *d = g(i, *d);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    fn ones(n: usize) -> Blob {
        Blob::from_data(&[n], vec![1.0; n]).unwrap()
    }

    #[test]
    fn train_scales_kept_values_and_drops_about_p() {
        let n = 10000;
        let mut h = Harness::new(
            "type: Dropout\ndropout_param: { dropout_ratio: 0.3 }",
            vec![ones(n)],
        )
        .unwrap();
        h.layer.reseed(7);
        h.forward().unwrap();
        let scale = 1.0 / 0.7;
        let kept = h.top[0].data.iter().filter(|&&v| v != 0.0).count();
        assert!(h.top[0]
            .data
            .iter()
            .all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
        let frac = kept as f32 / n as f32;
        assert!((frac - 0.7).abs() < 0.03, "kept fraction {frac}");
        // Backward uses the same mask and scale.
        h.top[0].diff = vec![1.0; n];
        h.backward(&[true]).unwrap();
        assert_close(&h.bottom[0].diff, &h.top[0].data, 1e-6);
        // Same seed, same mask; new forward, new mask.
        let first = h.top[0].data.clone();
        h.layer.reseed(7);
        h.forward().unwrap();
        assert_eq!(h.top[0].data, first);
        h.forward().unwrap();
        assert_ne!(h.top[0].data, first);
    }

    #[test]
    fn test_phase_is_identity() {
        let x = Blob::from_data(&[4], vec![1.0, -2.0, 3.0, 0.5]).unwrap();
        let mut h = Harness::new("type: Dropout\nphase: TEST", vec![x.clone()]).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[0].data, x.data);
        h.top[0].diff = vec![1.0, 2.0, 3.0, 4.0];
        h.backward(&[true]).unwrap();
        assert_eq!(h.bottom[0].diff, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn in_place_train() {
        let mut h = Harness::new("type: Dropout", vec![ones(64)]).unwrap();
        h.layer.reseed(3);
        h.forward().unwrap();
        let out = h.top[0].data.clone();
        let mut shared = ones(64);
        h.layer.reseed(3);
        h.layer.reshape(&[], &mut [&mut shared]).unwrap();
        h.layer.forward(&[], &mut [&mut shared], &mut []).unwrap();
        assert_eq!(shared.data, out);
        shared.diff = vec![1.0; 64];
        h.layer
            .backward(&[], &[true], &mut [&mut shared], &mut [])
            .unwrap();
        assert_eq!(shared.diff, out);
    }

    #[test]
    fn gradients() {
        check_layer_from("type: Dropout", &[&[2, 3, 4]]);
        check_layer_from(
            "type: Dropout\ndropout_param: { dropout_ratio: 0.2 }\nphase: TEST",
            &[&[5, 3]],
        );
    }
}
