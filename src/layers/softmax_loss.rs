//! `SoftmaxWithLoss`: softmax over `axis`, then the mean negative log-likelihood of the labels,
//! with Caffe's `ignore_label`, normalization modes and FLT_MIN clamp.

use super::softmax::{softmax, split_axis};
use super::{BlobCounts, Layer};
use crate::proto::loss_parameter::NormalizationMode;
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// The bound on the label input (bottom 1) of a classifier over `axis` of bottom 0: its
/// number of classes. For `Layer::index_bound` of the losses and Accuracy.
pub(crate) fn class_bound(axis: i32, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
    if bottom != 1 {
        return None;
    }
    let s = &shapes[0];
    Some(s[crate::blob::canonical_axis(axis, s.len()).ok()?])
}

/// `SoftmaxWithLoss` layer; optional second top holds the probabilities.
pub struct SoftmaxWithLoss {
    axis: i32,
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    prob: Blob,
}

/// Resolves Caffe's `normalization` / legacy `normalize` pair.
pub fn normalization_mode(p: &LayerParameter) -> NormalizationMode {
    match p.loss_param.as_ref() {
        Some(lp) if lp.normalization.is_none() && lp.normalize.is_some() => {
            if lp.normalize() {
                NormalizationMode::Valid
            } else {
                NormalizationMode::BatchSize
            }
        }
        Some(lp) => lp.normalization(),
        None => NormalizationMode::Valid,
    }
}

/// Caffe's normaliser: FULL = outer*inner, VALID = non-ignored count, BATCH_SIZE = outer, NONE = 1;
/// at least 1.
pub fn normalizer(mode: NormalizationMode, outer: usize, inner: usize, valid: usize) -> f32 {
    let n = match mode {
        NormalizationMode::Full => (outer * inner) as f32,
        NormalizationMode::Valid => valid as f32,
        NormalizationMode::BatchSize => outer as f32,
        NormalizationMode::None => 1.0,
    };
    n.max(1.0)
}

/// Creates `SoftmaxWithLoss` from `softmax_param` and `loss_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(SoftmaxWithLoss {
        axis: p.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1),
        ignore_label: p.loss_param.as_ref().and_then(|l| l.ignore_label),
        normalization: normalization_mode(p),
        prob: Blob::default(),
    }))
}

/// A label value checked against `c` classes: `None` when it is the `ignore` label, an error
/// naming the range when it is not an integer in `0..c`.
pub fn check_label(v: f32, c: usize, ignore: Option<i32>) -> Result<Option<usize>> {
    let l = v as i32;
    if Some(l) == ignore {
        return Ok(None);
    }
    crate::ensure!(
        v.fract() == 0.0 && l >= 0 && (l as usize) < c,
        "label {v} is out of range: there are {c} classes (valid labels 0..{})",
        c.saturating_sub(1)
    );
    Ok(Some(l as usize))
}

impl SoftmaxWithLoss {
    fn label(&self, v: f32, c: usize) -> Result<Option<usize>> {
        check_label(v, c, self.ignore_label)
    }
}

impl Layer for SoftmaxWithLoss {
    fn type_name(&self) -> &'static str {
        "SoftmaxWithLoss"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(2),
            min_top: Some(1),
            max_top: Some(2),
            ..Default::default()
        }
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn index_bound(&self, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
        class_bound(self.axis, bottom, shapes)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (outer, _, inner) = split_axis(bottom[0], self.axis)?;
        crate::ensure!(
            outer * inner == bottom[1].count(),
            "the number of labels must match the number of predictions: prediction shape {} \
             (softmax axis {}) needs {} labels, label shape is {}",
            bottom[0].shape_string(),
            self.axis,
            outer * inner,
            bottom[1].shape_string()
        );
        top[0].reshape(&[]);
        self.prob.reshape(&bottom[0].shape);
        if top.len() > 1 {
            top[1].reshape(&bottom[0].shape);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (outer, c, inner) = split_axis(bottom[0], self.axis)?;
        softmax(&bottom[0].data, &mut self.prob.data, outer, c, inner);
        let labels = &bottom[1].data;
        let mut loss = 0.0f64;
        let mut valid = 0;
        for o in 0..outer {
            for i in 0..inner {
                if let Some(l) = self.label(labels[o * inner + i], c)? {
                    let p = self.prob.data[o * c * inner + l * inner + i].max(f32::MIN_POSITIVE);
                    loss -= (p as f64).ln();
                    valid += 1;
                }
            }
        }
        top[0].data[0] = (loss / normalizer(self.normalization, outer, inner, valid) as f64) as f32;
        if top.len() > 1 {
            top[1].data.copy_from_slice(&self.prob.data);
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
        let (outer, c, inner) = split_axis(bottom[0], self.axis)?;
        let labels = bottom[1].data.clone();
        let mut valid = 0;
        let mut grad = self.prob.data.clone();
        for o in 0..outer {
            for i in 0..inner {
                match self.label(labels[o * inner + i], c)? {
                    Some(l) => {
                        grad[o * c * inner + l * inner + i] -= 1.0;
                        valid += 1;
                    }
                    None => (0..c).for_each(|j| grad[o * c * inner + j * inner + i] = 0.0),
                }
            }
        }
        let scale = top[0].diff[0] / normalizer(self.normalization, outer, inner, valid);
        crate::math::axpy(scale, &grad, &mut bottom[0].diff);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, err_text, layer_from_yaml, run_forward, Harness};
    use crate::Blob;

    #[test]
    fn forward_hand_values_and_normalization() {
        let x = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        let lse = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
        let (l0, l1) = (lse - 3.0, 3f32.ln());
        let mut l = layer_from_yaml("type: SoftmaxWithLoss");
        let t = run_forward(&mut *l, &[(&[2, 3], &x), (&[2], &[2.0, 1.0])]);
        assert!((t[0].data[0] - (l0 + l1) / 2.0).abs() < 1e-6);
        // ignore_label with VALID divides by the one valid label; NONE does not divide.
        let mut l = layer_from_yaml("type: SoftmaxWithLoss\nloss_param: { ignore_label: 1 }");
        let t = run_forward(&mut *l, &[(&[2, 3], &x), (&[2], &[2.0, 1.0])]);
        assert!((t[0].data[0] - l0).abs() < 1e-6);
        let mut l = layer_from_yaml("type: SoftmaxWithLoss\nloss_param: { normalization: NONE }");
        let t = run_forward(&mut *l, &[(&[2, 3], &x), (&[2], &[2.0, 1.0])]);
        assert!((t[0].data[0] - (l0 + l1)).abs() < 1e-5);
        // legacy normalize: false means BATCH_SIZE; with an ignored label still divides by 2.
        let mut l = layer_from_yaml(
            "type: SoftmaxWithLoss\nloss_param: { ignore_label: 1, normalize: false }",
        );
        let t = run_forward(&mut *l, &[(&[2, 3], &x), (&[2], &[2.0, 1.0])]);
        assert!((t[0].data[0] - l0 / 2.0).abs() < 1e-6);
        // FULL over a spatial axis counts outer*inner.
        let mut l = layer_from_yaml(
            "type: SoftmaxWithLoss\nloss_param: { normalization: FULL, ignore_label: 0 }",
        );
        let t = run_forward(
            &mut *l,
            &[(&[1, 2, 2], &[0.0, 0.0, 0.0, 0.0]), (&[1, 2], &[1.0, 0.0])],
        );
        assert!((t[0].data[0] - 2f32.ln() / 2.0).abs() < 1e-6);
    }

    #[test]
    fn fully_wrong_prediction_costs_87_3365() {
        let mut l = layer_from_yaml("type: SoftmaxWithLoss");
        let t = run_forward(&mut *l, &[(&[1, 2], &[0.0, 1000.0]), (&[1], &[0.0])]);
        assert!((t[0].data[0] - 87.3365).abs() < 1e-3, "{}", t[0].data[0]);
    }

    #[test]
    fn bad_label_is_an_error() {
        let x = Blob::from_data(&[1, 3], vec![0.0; 3]).unwrap();
        let y = Blob::from_data(&[1], vec![3.0]).unwrap();
        let mut h = Harness::new("type: SoftmaxWithLoss", vec![x, y]).unwrap();
        assert!(err_text(h.forward()).contains("out of range"));
    }

    #[test]
    fn gradients() {
        check_layer_from("type: SoftmaxWithLoss", &[&[4, 5], &[4]]);
        check_layer_from(
            "type: SoftmaxWithLoss\nloss_param: { ignore_label: 0 }",
            &[&[2, 3, 2, 2], &[2, 1, 2, 2]],
        );
        // Like Caffe, only the loss top is differentiated (the probability top is an output).
        check_layer_from("type: SoftmaxWithLoss\nsoftmax_param: { axis: 2 }\nloss_param: { normalization: BATCH_SIZE }", &[&[3, 2, 4], &[3, 2]]);
    }
}
