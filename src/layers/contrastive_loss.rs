//! `ContrastiveLoss` (Caffe 1.0, Hadsell et al. 2006): bottoms `a`, `b` (`N` feature vectors
//! each) and `y` (`N` similarity labels, nonzero = similar). With `d = ||a_n - b_n||`, the loss
//! is `sum_n [y_n d^2 + (1 - y_n) max(margin - d, 0)^2] / (2N)`; with
//! `contrastive_loss_param.legacy_version: true` the dissimilar term is
//! `max(margin - d^2, 0)` instead. The gradient of the (non-legacy) dissimilar term uses
//! Caffe's `d + 1e-4` in the denominator, so it stays finite at `d = 0`.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `ContrastiveLoss` layer.
pub struct ContrastiveLoss {
    margin: f32,
    legacy: bool,
    /// `a - b` and the squared distances of the last forward.
    diff: Vec<f32>,
    dist_sq: Vec<f32>,
}

/// Creates `ContrastiveLoss` from `contrastive_loss_param` (`margin` 1, `legacy_version` false).
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let c = p.contrastive_loss_param.unwrap_or_default();
    Ok(Box::new(ContrastiveLoss {
        margin: c.margin(),
        legacy: c.legacy_version(),
        diff: Vec::new(),
        dist_sq: Vec::new(),
    }))
}

/// `N` and the feature length of a pair-loss input, checked against its partner and labels.
pub fn pair_dims(a: &Blob, b: &Blob, labels: Option<&Blob>) -> Result<(usize, usize)> {
    let n = a.shape.first().copied().unwrap_or(1).max(1);
    crate::ensure!(
        a.shape == b.shape,
        "the paired feature inputs must have the same shape: {} vs {}",
        a.shape_string(),
        b.shape_string()
    );
    if let Some(y) = labels {
        crate::ensure!(
            y.count() == n,
            "the label input must hold one value per pair: {} pairs, labels {}",
            n,
            y.shape_string()
        );
    }
    Ok((n, a.count() / n))
}

impl ContrastiveLoss {
    /// Per pair: the dissimilar term and whether it is active.
    fn dissimilar(&self, dist_sq: f32) -> (f32, bool) {
        if self.legacy {
            let m = self.margin - dist_sq;
            (m.max(0.0), m > 0.0)
        } else {
            let m = self.margin - dist_sq.sqrt();
            (m.max(0.0).powi(2), m > 0.0)
        }
    }
}

impl Layer for ContrastiveLoss {
    fn type_name(&self) -> &'static str {
        "ContrastiveLoss"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(3, 1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
    fn index_bound(&self, bottom: usize, _: &[Vec<usize>]) -> Option<usize> {
        (bottom == 2).then_some(2)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (n, _) = pair_dims(bottom[0], bottom[1], Some(bottom[2]))?;
        self.diff.resize(bottom[0].count(), 0.0);
        self.dist_sq.resize(n, 0.0);
        top[0].reshape(&[]);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (n, dim) = pair_dims(bottom[0], bottom[1], Some(bottom[2]))?;
        let mut loss = 0.0f64;
        for i in 0..n {
            let mut s = 0.0f32;
            for j in i * dim..(i + 1) * dim {
                let d = bottom[0].data[j] - bottom[1].data[j];
                self.diff[j] = d;
                s += d * d;
            }
            self.dist_sq[i] = s;
            loss += if bottom[2].data[i] as i32 != 0 {
                s as f64
            } else {
                self.dissimilar(s).0 as f64
            };
        }
        top[0].data[0] = (loss / (2.0 * n as f64)) as f32;
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let n = self.dist_sq.len().max(1);
        let dim = self.diff.len() / n;
        for (b, sign) in [(0usize, 1.0f32), (1, -1.0)] {
            if !down[b] {
                continue;
            }
            let alpha = sign * top[0].diff[0] / n as f32;
            for i in 0..n {
                let similar = bottom[2].data[i] as i32 != 0;
                let beta = if similar {
                    alpha
                } else {
                    match self.dissimilar(self.dist_sq[i]) {
                        (_, false) => continue,
                        _ if self.legacy => -alpha,
                        _ => {
                            let dist = self.dist_sq[i].sqrt();
                            -alpha * (self.margin - dist) / (dist + 1e-4)
                        }
                    }
                };
                let out = &mut bottom[b].diff[i * dim..(i + 1) * dim];
                for (g, &d) in out.iter_mut().zip(&self.diff[i * dim..(i + 1) * dim]) {
                    *g += beta * d;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, Harness};
    use crate::Blob;

    const A: [f32; 6] = [0.1, 0.2, 1.0, -0.5, 0.3, 0.3];
    const B: [f32; 6] = [0.4, -0.2, 0.0, 0.5, 0.3, 0.2];
    const Y: [f32; 3] = [1.0, 0.0, 0.0];

    /// f64 reference of Caffe's formula.
    fn reference(margin: f64, legacy: bool) -> f64 {
        let mut loss = 0.0;
        for i in 0..3 {
            let d2: f64 = (0..2)
                .map(|j| (A[2 * i + j] as f64 - B[2 * i + j] as f64).powi(2))
                .sum();
            loss += if Y[i] != 0.0 {
                d2
            } else if legacy {
                (margin - d2).max(0.0)
            } else {
                (margin - d2.sqrt()).max(0.0).powi(2)
            };
        }
        loss / 6.0
    }

    fn run(yaml: &str) -> f32 {
        let b = vec![
            Blob::from_data(&[3, 2, 1, 1], A.to_vec()).unwrap(),
            Blob::from_data(&[3, 2, 1, 1], B.to_vec()).unwrap(),
            Blob::from_data(&[3, 1, 1, 1], Y.to_vec()).unwrap(),
        ];
        let mut h = Harness::new(yaml, b).unwrap();
        h.forward().unwrap();
        h.top[0].data[0]
    }

    #[test]
    fn forward_matches_f64_reference() {
        // Pair 0 similar: d^2 = 0.09 + 0.16 = 0.25. Pair 1: d^2 = 1 + 1 = 2 (d = 1.414, beyond
        // margin 1, inactive unless the margin grows). Pair 2: d^2 = 0.01 (d = 0.1).
        let got = run("type: ContrastiveLoss");
        assert_close(&[got], &[reference(1.0, false) as f32], 1e-6);
        assert_close(&[got], &[((0.25 + 0.81) / 6.0) as f32], 1e-6);
        let got = run(
            "type: ContrastiveLoss\ncontrastive_loss_param: { margin: 2.5, legacy_version: true }",
        );
        assert_close(&[got], &[reference(2.5, true) as f32], 1e-6);
        let got = run("type: ContrastiveLoss\ncontrastive_loss_param: { margin: 2 }");
        assert_close(&[got], &[reference(2.0, false) as f32], 1e-6);
    }

    #[test]
    fn gradients_both_versions_and_shape_error() {
        check_layer_from("type: ContrastiveLoss", &[&[6, 3], &[6, 3], &[6]]);
        check_layer_from(
            "type: ContrastiveLoss\ncontrastive_loss_param: { margin: 3, legacy_version: true }",
            &[&[6, 3, 1, 1], &[6, 3, 1, 1], &[6, 1, 1, 1]],
        );
        let bad = Harness::new(
            "type: ContrastiveLoss",
            vec![Blob::new(&[2, 3]), Blob::new(&[2, 4]), Blob::new(&[2])],
        );
        assert!(err_text(bad).contains("same shape"));
    }
}
