//! `SigmoidCrossEntropyLoss`: logistic cross-entropy of logits `x` against targets `t` in [0, 1],
//! `-[t ln s(x) + (1 - t) ln(1 - s(x))]`, computed in the overflow-free form
//! `max(x, 0) - x t + ln(1 + e^-|x|)`. Targets equal to `ignore_label` are skipped. Normalised
//! like Caffe: `normalization` if given, else legacy `normalize` (true = VALID, false =
//! BATCH_SIZE), else BATCH_SIZE. The targets never get a gradient.

use super::sigmoid::sigmoid;
use super::softmax_loss::normalizer;
use super::{BlobCounts, Layer};
use crate::proto::loss_parameter::NormalizationMode;
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `SigmoidCrossEntropyLoss` layer.
pub struct SigmoidCrossEntropyLoss {
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
}

/// Creates a `SigmoidCrossEntropyLoss` from `loss_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let lp = p.loss_param.unwrap_or_default();
    let normalization = if lp.normalization.is_some() {
        lp.normalization()
    } else if lp.normalize.is_some() {
        if lp.normalize() {
            NormalizationMode::Valid
        } else {
            NormalizationMode::BatchSize
        }
    } else {
        NormalizationMode::BatchSize
    };
    Ok(Box::new(SigmoidCrossEntropyLoss {
        ignore_label: lp.ignore_label,
        normalization,
    }))
}

impl SigmoidCrossEntropyLoss {
    fn ignored(&self, t: f32) -> bool {
        self.ignore_label
            .is_some_and(|l| t as i32 == l && t.fract() == 0.0)
    }

    fn scale(&self, bottom: &Blob, targets: &[f32]) -> f32 {
        let outer = bottom.shape.first().copied().unwrap_or(1);
        let inner = bottom.count() / outer.max(1);
        let valid = targets.iter().filter(|&&t| !self.ignored(t)).count();
        normalizer(self.normalization, outer, inner, valid)
    }
}

impl Layer for SigmoidCrossEntropyLoss {
    fn type_name(&self) -> &'static str {
        "SigmoidCrossEntropyLoss"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(2, 1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        crate::ensure!(
            bottom[0].count() == bottom[1].count(),
            "logits and targets must have the same count: {} vs {}",
            bottom[0].shape_string(),
            bottom[1].shape_string()
        );
        top[0].reshape(&[]);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (x, t) = (&bottom[0].data, &bottom[1].data);
        let mut loss = 0.0f64;
        for (&x, &t) in x.iter().zip(t) {
            if self.ignored(t) {
                continue;
            }
            let l = x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
            loss += l as f64;
        }
        top[0].data[0] = (loss / self.scale(bottom[0], t) as f64) as f32;
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        crate::ensure!(
            !down.get(1).copied().unwrap_or(false),
            "SigmoidCrossEntropyLoss cannot backpropagate to its targets (bottom 1); set \
             propagate_down: [true, false]"
        );
        if !down[0] {
            return Ok(());
        }
        let t = bottom[1].data.clone();
        let alpha = top[0].diff[0] / self.scale(bottom[0], &t);
        let b = &mut *bottom[0];
        for ((g, &x), &t) in b.diff.iter_mut().zip(&b.data).zip(&t) {
            if !self.ignored(t) {
                *g += alpha * (sigmoid(x) - t);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, Harness};
    use crate::Blob;

    fn naive(x: &[f32], t: &[f32]) -> Vec<f64> {
        x.iter()
            .zip(t)
            .map(|(&x, &t)| {
                let s = 1.0 / (1.0 + (-(x as f64)).exp());
                -(t as f64 * s.ln() + (1.0 - t as f64) * (1.0 - s).ln())
            })
            .collect()
    }

    #[test]
    fn sigmoid_cross_entropy_matches_naive_and_normalizes() {
        let x = vec![0.5, -1.0, 2.0, 0.0, -3.0, 1.5];
        let t = vec![1.0, 0.0, 1.0, 1.0, -1.0, 0.0];
        let per = naive(&x, &t);
        let mk = |yaml: &str| {
            let mut h = Harness::new(
                yaml,
                vec![
                    Blob::from_data(&[2, 3], x.clone()).unwrap(),
                    Blob::from_data(&[2, 3], t.clone()).unwrap(),
                ],
            )
            .unwrap();
            h.forward().unwrap();
            h
        };
        // No ignore: BATCH_SIZE by default (Caffe), so divide by 2. Target -1 is just a value.
        let h = mk("type: SigmoidCrossEntropyLoss");
        let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let full: f64 = xs
            .iter()
            .zip(&t)
            .map(|(&x, &t)| x.max(0.0) - x * t as f64 + (-x.abs()).exp().ln_1p())
            .sum();
        assert_close(&h.top[0].data, &[(full / 2.0) as f32], 1e-5);
        // ignore_label -1 with VALID: 5 valid values.
        let mut h = mk(
            "type: SigmoidCrossEntropyLoss\nloss_param: { ignore_label: -1, normalization: VALID }",
        );
        let valid: f64 = per
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, v)| v)
            .sum();
        assert_close(&h.top[0].data, &[(valid / 5.0) as f32], 1e-5);
        h.top[0].diff = vec![1.0];
        h.backward(&[true, false]).unwrap();
        let s = |v: f32| 1.0 / (1.0 + (-v).exp());
        let expect: Vec<f32> = (0..6)
            .map(|i| if i == 4 { 0.0 } else { (s(x[i]) - t[i]) / 5.0 })
            .collect();
        assert_close(&h.bottom[0].diff, &expect, 1e-6);
        assert!(h.bottom[1].diff.iter().all(|&d| d == 0.0));
        assert!(h.backward(&[true, true]).is_err());
        // Legacy normalize: true means VALID.
        let h =
            mk("type: SigmoidCrossEntropyLoss\nloss_param: { ignore_label: -1, normalize: true }");
        assert_close(&h.top[0].data, &[(valid / 5.0) as f32], 1e-5);
        // Stable for large logits.
        let mut big = Harness::new(
            "type: SigmoidCrossEntropyLoss",
            vec![
                Blob::from_data(&[1, 2], vec![200.0, -200.0]).unwrap(),
                Blob::from_data(&[1, 2], vec![0.0, 1.0]).unwrap(),
            ],
        )
        .unwrap();
        big.forward().unwrap();
        assert_close(&big.top[0].data, &[400.0], 1e-3);
    }

    #[test]
    fn sigmoid_cross_entropy_gradient() {
        // Random targets are Gaussian here; the loss is defined for any real target and the
        // checker never differentiates the targets (allow_force_backward(1) is false).
        let r = check_layer_from("type: SigmoidCrossEntropyLoss", &[&[3, 4], &[3, 4]]);
        assert_eq!(r.checked, 12);
        check_layer_from(
            "type: SigmoidCrossEntropyLoss\nloss_param: { normalization: FULL }",
            &[&[2, 3, 2], &[2, 3, 2]],
        );
    }
}
