//! `MultinomialLogisticLoss` (Caffe 1.0): bottoms are probabilities `p` of `N` items with
//! `D = count / N` classes and one label per item; loss `-sum_n log(max(p[n, l_n], 1e-20)) / N`,
//! gradient `-1 / (N max(p[n, l_n], 1e-20))` at the label and 0 elsewhere.

use super::hinge_loss::{check_one_label_per_item, num_dim, per_item_class_bound};
use super::softmax_loss::check_label;
use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// Caffe's `kLOG_THRESHOLD`: probabilities are clamped to at least this before the log.
pub const LOG_THRESHOLD: f32 = 1e-20;

/// `MultinomialLogisticLoss` layer.
pub struct MultinomialLogisticLoss;

/// Creates `MultinomialLogisticLoss` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(MultinomialLogisticLoss))
}

impl Layer for MultinomialLogisticLoss {
    fn type_name(&self) -> &'static str {
        "MultinomialLogisticLoss"
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
    fn index_bound(&self, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
        per_item_class_bound(bottom, shapes)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        check_one_label_per_item(bottom[0], bottom[1])?;
        top[0].reshape(&[]);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (n, d) = num_dim(bottom[0]);
        let mut loss = 0.0f64;
        for i in 0..n {
            let l = check_label(bottom[1].data[i], d, None)?.unwrap_or(0);
            loss -= (bottom[0].data[i * d + l].max(LOG_THRESHOLD) as f64).ln();
        }
        top[0].data[0] = (loss / n as f64) as f32;
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
        let (n, d) = num_dim(bottom[0]);
        let scale = -top[0].diff[0] / n as f32;
        for i in 0..n {
            let l = check_label(bottom[1].data[i], d, None)?.unwrap_or(0);
            let p = bottom[0].data[i * d + l].max(LOG_THRESHOLD);
            bottom[0].diff[i * d + l] += scale / p;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, err_text, GradientChecker, Harness};
    use crate::Blob;

    #[test]
    fn hand_values_and_clamp() {
        // -(ln 0.7 + ln 0.25) / 2, and a zero probability costs -ln(1e-20) = 46.0517.
        let p = Blob::from_data(&[2, 3], vec![0.7, 0.2, 0.1, 0.5, 0.25, 0.25]).unwrap();
        let y = Blob::from_data(&[2, 1, 1, 1], vec![0.0, 1.0]).unwrap();
        let mut h = Harness::new("type: MultinomialLogisticLoss", vec![p, y]).unwrap();
        h.forward().unwrap();
        let want = -((0.7f64).ln() + (0.25f64).ln()) / 2.0;
        assert_close(&h.top[0].data, &[want as f32], 1e-6);
        h.top[0].diff = vec![2.0];
        h.backward(&[true, false]).unwrap();
        assert_close(
            &h.bottom[0].diff,
            &[-1.0 / 0.7, 0.0, 0.0, 0.0, -4.0, 0.0],
            1e-5,
        );
        let p = Blob::from_data(&[1, 2], vec![0.0, 1.0]).unwrap();
        let y = Blob::from_data(&[1], vec![0.0]).unwrap();
        let mut h = Harness::new("type: MultinomialLogisticLoss", vec![p, y]).unwrap();
        h.forward().unwrap();
        assert_close(&h.top[0].data, &[46.0517], 1e-3);
        let p = Blob::from_data(&[1, 2], vec![0.5, 0.5]).unwrap();
        let y = Blob::from_data(&[1], vec![2.0]).unwrap();
        let mut h = Harness::new("type: MultinomialLogisticLoss", vec![p, y]).unwrap();
        assert!(err_text(h.forward()).contains("out of range"));
    }

    #[test]
    fn gradient() {
        // The shared checker at probabilities away from 0 (Caffe's test uses uniform [0.5, 1]).
        let p: Vec<f32> = (0..12).map(|i| 0.3 + 0.05 * i as f32).collect();
        let y = Blob::from_data(&[4], vec![0.0, 2.0, 1.0, 2.0]).unwrap();
        let mut h = Harness::new(
            "type: MultinomialLogisticLoss",
            vec![Blob::from_data(&[4, 3], p).unwrap(), y],
        )
        .unwrap();
        let r = h.check_gradients(&GradientChecker::default()).unwrap();
        assert!(r.ok() && r.checked == 12, "{:?}", r.failures);
    }
}
