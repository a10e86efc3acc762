//! `EuclideanLoss`: `sum((a - b)^2) / (2 N)` with `N` the size of axis 0; gradients flow to both
//! bottoms (`+(a - b)/N` and `-(a - b)/N`, times the loss weight).

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `EuclideanLoss` layer.
pub struct EuclideanLoss {
    diff: Vec<f32>,
}

/// Creates an `EuclideanLoss` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(EuclideanLoss { diff: Vec::new() }))
}

fn num(b: &Blob) -> usize {
    b.shape.first().copied().unwrap_or(1).max(1)
}

impl Layer for EuclideanLoss {
    fn type_name(&self) -> &'static str {
        "EuclideanLoss"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(2, 1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (a, b) = (bottom[0], bottom[1]);
        crate::ensure!(
            a.count() == b.count() && num(a) == num(b),
            "the two inputs must have the same number of items and values: {} vs {}",
            a.shape_string(),
            b.shape_string()
        );
        self.diff.resize(a.count(), 0.0);
        top[0].reshape(&[]);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (a, b) = (&bottom[0].data, &bottom[1].data);
        let mut sum = 0.0f64;
        for ((d, &a), &b) in self.diff.iter_mut().zip(a).zip(b) {
            *d = a - b;
            sum += (*d as f64) * (*d as f64);
        }
        top[0].data[0] = (sum / (2.0 * num(bottom[0]) as f64)) as f32;
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let n = num(bottom[0]) as f32;
        for (i, sign) in [(0, 1.0f32), (1, -1.0)] {
            if !down[i] {
                continue;
            }
            let alpha = sign * top[0].diff[0] / n;
            for (g, &d) in bottom[i].diff.iter_mut().zip(&self.diff) {
                *g += alpha * d;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    #[test]
    fn euclidean_loss_hand_values_both_gradients_and_shape_error() {
        let a = Blob::from_data(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Blob::from_data(&[2, 2], vec![0.0, 2.0, 5.0, 3.0]).unwrap();
        let mut h = Harness::new("type: EuclideanLoss", vec![a, b]).unwrap();
        h.forward().unwrap();
        // (1 + 0 + 4 + 1) / (2 * 2)
        assert_close(&h.top[0].data, &[1.5], 1e-6);
        h.top[0].diff = vec![2.0];
        h.backward(&[true, true]).unwrap();
        assert_close(&h.bottom[0].diff, &[1.0, 0.0, -2.0, 1.0], 1e-6);
        assert_close(&h.bottom[1].diff, &[-1.0, 0.0, 2.0, -1.0], 1e-6);
        check_layer_from("type: EuclideanLoss", &[&[3, 4], &[3, 4]]);
        let bad = Harness::new(
            "type: EuclideanLoss",
            vec![Blob::new(&[2, 3]), Blob::new(&[2, 4])],
        );
        let msg = err_text(bad);
        assert!(msg.contains("2x3") && msg.contains("2x4"), "{msg}");
    }
}
