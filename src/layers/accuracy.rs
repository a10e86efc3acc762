//! `Accuracy`: fraction of items whose label is among the top-k scores (no backward).

use super::softmax_loss::class_bound;
use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Accuracy` layer; optional second top holds per-class accuracy.
pub struct Accuracy {
    top_k: usize,
    axis: i32,
    ignore_label: Option<i32>,
}

/// Creates `Accuracy` from `accuracy_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let a = p.accuracy_param.unwrap_or_default();
    Ok(Box::new(Accuracy {
        top_k: a.top_k() as usize,
        axis: a.axis(),
        ignore_label: a.ignore_label,
    }))
}

impl Layer for Accuracy {
    fn type_name(&self) -> &'static str {
        "Accuracy"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts {
            exact_bottom: Some(2),
            min_top: Some(1),
            max_top: Some(2),
            ..Default::default()
        }
    }
    fn index_bound(&self, bottom: usize, shapes: &[Vec<usize>]) -> Option<usize> {
        class_bound(self.axis, bottom, shapes)
    }
    fn allow_force_backward(&self, _: usize) -> bool {
        false
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let a = bottom[0].canonical_axis(self.axis)?;
        let c = bottom[0].shape[a];
        crate::ensure!(
            self.top_k <= c,
            "top_k {} is larger than the number of classes {c}",
            self.top_k
        );
        let n = bottom[0].count_range(0, a) * bottom[0].count_from(a + 1);
        crate::ensure!(
            n == bottom[1].count(),
            "the number of labels must match the number of predictions: {} needs {n} labels, label shape is {}",
            bottom[0].shape_string(),
            bottom[1].shape_string()
        );
        top[0].reshape(&[]);
        if top.len() > 1 {
            top[1].reshape(&[c]);
        }
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let a = bottom[0].canonical_axis(self.axis)?;
        let (outer, c, inner) = (
            bottom[0].count_range(0, a),
            bottom[0].shape[a],
            bottom[0].count_from(a + 1),
        );
        let x = &bottom[0].data;
        let mut correct = 0usize;
        let mut count = 0usize;
        let mut per_class = vec![0usize; c];
        let mut per_class_n = vec![0usize; c];
        for o in 0..outer {
            for i in 0..inner {
                let lv = bottom[1].data[o * inner + i];
                let l = lv as i32;
                if Some(l) == self.ignore_label {
                    continue;
                }
                crate::ensure!(
                    l >= 0 && (l as usize) < c,
                    "label {lv} is out of range for {c} classes"
                );
                let l = l as usize;
                let score = x[o * c * inner + l * inner + i];
                // Caffe: correct when fewer than k classes score strictly higher.
                let higher = (0..c)
                    .filter(|&j| x[o * c * inner + j * inner + i] > score)
                    .count();
                count += 1;
                per_class_n[l] += 1;
                if higher < self.top_k {
                    correct += 1;
                    per_class[l] += 1;
                }
            }
        }
        top[0].data[0] = if count == 0 {
            0.0
        } else {
            correct as f32 / count as f32
        };
        if top.len() > 1 {
            for j in 0..c {
                top[1].data[j] = if per_class_n[j] == 0 {
                    0.0
                } else {
                    per_class[j] as f32 / per_class_n[j] as f32
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{layer_from_yaml, run_forward};

    #[test]
    fn top1_top2_ignore_and_per_class() {
        let x = [
            0.1, 0.7, 0.2, /* */ 0.5, 0.3, 0.2, /* */ 0.2, 0.3, 0.5, /* */ 0.3, 0.3,
            0.4,
        ];
        let y = [1.0, 1.0, 0.0, 2.0];
        let mut l = layer_from_yaml("type: Accuracy");
        let t = run_forward(&mut *l, &[(&[4, 3], &x), (&[4], &y)]);
        assert_eq!(t[0].data[0], 0.5);
        let mut l = layer_from_yaml("type: Accuracy\naccuracy_param: { top_k: 2 }");
        let t = run_forward(&mut *l, &[(&[4, 3], &x), (&[4], &y)]);
        assert_eq!(t[0].data[0], 0.75);
        let mut l = layer_from_yaml("type: Accuracy\naccuracy_param: { ignore_label: 0 }");
        let t = run_forward(&mut *l, &[(&[4, 3], &x), (&[4], &y)]);
        assert!((t[0].data[0] - 2.0 / 3.0).abs() < 1e-6);
        let bottom = vec![
            crate::Blob::from_data(&[4, 3], x.to_vec()).unwrap(),
            crate::Blob::from_data(&[4], y.to_vec()).unwrap(),
        ];
        let mut h =
            crate::testing::Harness::new("type: Accuracy\ntop: [acc, per_class]", bottom).unwrap();
        h.forward().unwrap();
        assert_eq!(h.top[1].data, vec![0.0, 0.5, 1.0]);
    }
}
