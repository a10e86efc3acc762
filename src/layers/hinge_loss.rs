//! `HingeLoss` (Caffe 1.0): one-vs-all hinge on scores `x` of `N` items with `D = count / N`
//! classes each. With `t_nk = 1 - x_nk` for the label `k = l_n` and `1 + x_nk` for the others,
//! the loss is `sum(max(0, t)) / N` (`norm: L1`, the default) or `sum(max(0, t)^2) / N` (`L2`).
//! Gradients: L1 `+-sign(max(0, t)) / N`, L2 `+-2 max(0, t) / N` (minus at the label).

use super::softmax_loss::check_label;
use super::{BlobCounts, Layer};
use crate::proto::hinge_loss_parameter::Norm;
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `HingeLoss` layer.
pub struct HingeLoss {
    norm: Norm,
    /// `max(0, t)` of the last forward, before the sign flip at the labels.
    margins: Vec<f32>,
}

/// Creates `HingeLoss` from `hinge_loss_param.norm`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(HingeLoss {
        norm: p
            .hinge_loss_param
            .as_ref()
            .map(|h| h.norm())
            .unwrap_or(Norm::L1),
        margins: Vec::new(),
    }))
}

/// `N` (axis 0, at least 1) and `D = count / N` of a per-item loss input.
pub fn num_dim(b: &Blob) -> (usize, usize) {
    let n = b.shape.first().copied().unwrap_or(1).max(1);
    (n, b.count() / n)
}

/// The bound on the label input (bottom 1) of a loss whose bottom 0 is N items of D class
/// scores: D. For `Layer::index_bound`.
pub(crate) fn per_item_class_bound(bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
    let s = &shapes[0];
    let n = s.first().copied().unwrap_or(1).max(1);
    (bottom == 1).then(|| s.iter().product::<usize>() / n)
}

/// Checks that `labels` holds one label per item of `x` (Caffe's `num` axis).
pub fn check_one_label_per_item(x: &Blob, labels: &Blob) -> Result<()> {
    let (n, _) = num_dim(x);
    crate::ensure!(
        labels.count() == n,
        "the label input must hold one label per item: the scores {} have {n} items, the labels \
         {} hold {}",
        x.shape_string(),
        labels.shape_string(),
        labels.count()
    );
    Ok(())
}

impl Layer for HingeLoss {
    fn type_name(&self) -> &'static str {
        "HingeLoss"
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
        self.margins.resize(bottom[0].count(), 0.0);
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
        let x = &bottom[0].data;
        let mut loss = 0.0f64;
        for i in 0..n {
            let label = check_label(bottom[1].data[i], d, None)?.unwrap_or(0);
            for j in 0..d {
                let v = x[i * d + j];
                let t = if j == label { 1.0 - v } else { 1.0 + v };
                let m = t.max(0.0);
                self.margins[i * d + j] = m;
                loss += match self.norm {
                    Norm::L1 => m as f64,
                    Norm::L2 => (m as f64) * (m as f64),
                };
            }
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
        let scale = top[0].diff[0] / n as f32;
        for i in 0..n {
            let label = check_label(bottom[1].data[i], d, None)?.unwrap_or(0);
            for j in 0..d {
                let m = self.margins[i * d + j];
                let g = match self.norm {
                    Norm::L1 => f32::from(m > 0.0),
                    Norm::L2 => 2.0 * m,
                };
                let sign = if j == label { -1.0 } else { 1.0 };
                bottom[0].diff[i * d + j] += scale * sign * g;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    /// Worked out by hand: scores [[0.5, -2, 0.2], [3, 1, -0.5]], labels [0, 1].
    /// Item 0: t = [1-0.5, 1-2, 1+0.2] = [0.5, -1, 1.2] -> max(0, t) = [0.5, 0, 1.2].
    /// Item 1: t = [1+3, 1-1, 1-0.5] = [4, 0, 0.5] -> [4, 0, 0.5].
    fn harness(norm: &str) -> Harness {
        let x = Blob::from_data(&[2, 3], vec![0.5, -2.0, 0.2, 3.0, 1.0, -0.5]).unwrap();
        let y = Blob::from_data(&[2], vec![0.0, 1.0]).unwrap();
        Harness::new(
            &format!("type: HingeLoss\nhinge_loss_param: {{ norm: {norm} }}"),
            vec![x, y],
        )
        .unwrap()
    }

    #[test]
    fn l1_and_l2_hand_values() {
        let mut h = harness("L1");
        h.forward().unwrap();
        // (0.5 + 1.2 + 4 + 0.5) / 2
        assert_close(&h.top[0].data, &[3.1], 1e-6);
        h.top[0].diff = vec![1.0];
        h.backward(&[true, false]).unwrap();
        assert_close(&h.bottom[0].diff, &[-0.5, 0.0, 0.5, 0.5, 0.0, 0.5], 1e-6);

        let mut h = harness("L2");
        h.forward().unwrap();
        // (0.25 + 1.44 + 16 + 0.25) / 2
        assert_close(&h.top[0].data, &[8.97], 1e-5);
        h.top[0].diff = vec![1.0];
        h.backward(&[true, false]).unwrap();
        assert_close(&h.bottom[0].diff, &[-0.5, 0.0, 1.2, 4.0, 0.0, 0.5], 1e-6);
    }

    #[test]
    fn gradients_and_label_errors() {
        check_layer_from("type: HingeLoss", &[&[5, 4], &[5]]);
        check_layer_from(
            "type: HingeLoss\nhinge_loss_param: { norm: L2 }",
            &[&[5, 2, 2], &[5]],
        );
        let x = Blob::from_data(&[1, 3], vec![0.0; 3]).unwrap();
        let mut h = Harness::new(
            "type: HingeLoss",
            vec![x.clone(), Blob::from_data(&[1], vec![3.0]).unwrap()],
        )
        .unwrap();
        assert!(err_text(h.forward()).contains("out of range"));
        let bad = Harness::new("type: HingeLoss", vec![x, Blob::new(&[2])]);
        assert!(err_text(bad).contains("one label per item"));
    }
}
