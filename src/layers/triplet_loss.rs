//! `TripletLoss` (crema extension, Schroff et al. 2015): bottoms anchor `a`, positive `p` and
//! negative `n` embeddings (`N` vectors each); loss `sum_i max(0, margin + d(a_i, p_i) -
//! d(a_i, n_i)) / N` with `d` the squared Euclidean distance, or the plain Euclidean distance
//! with `triplet_loss_param { squared: false }` (its gradient divides by `d + 1e-4`, as
//! `ContrastiveLoss` does, so it stays finite at 0). `margin` defaults to 1.

use super::contrastive_loss::pair_dims;
use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `TripletLoss` layer.
pub struct TripletLoss {
    margin: f32,
    squared: bool,
    /// `a - p`, `a - n` and their (squared) distances of the last forward.
    ap: Vec<f32>,
    an: Vec<f32>,
    dist_ap: Vec<f32>,
    dist_an: Vec<f32>,
}

/// Creates `TripletLoss` from `triplet_loss_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let t = p.triplet_loss_param.unwrap_or_default();
    crate::ensure!(
        t.margin().is_finite() && t.margin() >= 0.0,
        "triplet_loss_param.margin must be a finite number >= 0, got {}",
        t.margin()
    );
    Ok(Box::new(TripletLoss {
        margin: t.margin(),
        squared: t.squared(),
        ap: Vec::new(),
        an: Vec::new(),
        dist_ap: Vec::new(),
        dist_an: Vec::new(),
    }))
}

/// `x - y` into `out`, and the squared norm of the difference.
fn diff_sq(x: &[f32], y: &[f32], out: &mut [f32]) -> f32 {
    let mut s = 0.0;
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        *o = a - b;
        s += *o * *o;
    }
    s
}

impl TripletLoss {
    /// The distance from a squared norm.
    fn dist(&self, sq: f32) -> f32 {
        if self.squared {
            sq
        } else {
            sq.sqrt()
        }
    }

    /// d(dist)/d(x - y) = `factor * (x - y)`.
    fn factor(&self, dist: f32) -> f32 {
        if self.squared {
            2.0
        } else {
            1.0 / (dist + 1e-4)
        }
    }
}

impl Layer for TripletLoss {
    fn type_name(&self) -> &'static str {
        "TripletLoss"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(3, 1)
    }
    fn is_loss(&self) -> bool {
        true
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        let (n, _) = pair_dims(bottom[0], bottom[1], None)?;
        pair_dims(bottom[0], bottom[2], None)?;
        for v in [&mut self.ap, &mut self.an] {
            v.resize(bottom[0].count(), 0.0);
        }
        self.dist_ap.resize(n, 0.0);
        self.dist_an.resize(n, 0.0);
        top[0].reshape(&[]);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (n, dim) = pair_dims(bottom[0], bottom[1], None)?;
        let mut loss = 0.0f64;
        for i in 0..n {
            let r = i * dim..(i + 1) * dim;
            let a = &bottom[0].data[r.clone()];
            let sp = diff_sq(a, &bottom[1].data[r.clone()], &mut self.ap[r.clone()]);
            let sn = diff_sq(a, &bottom[2].data[r.clone()], &mut self.an[r]);
            self.dist_ap[i] = self.dist(sp);
            self.dist_an[i] = self.dist(sn);
            loss += (self.margin + self.dist_ap[i] - self.dist_an[i]).max(0.0) as f64;
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
        let n = self.dist_ap.len().max(1);
        let dim = self.ap.len() / n;
        let scale = top[0].diff[0] / n as f32;
        for i in 0..n {
            if self.margin + self.dist_ap[i] - self.dist_an[i] <= 0.0 {
                continue;
            }
            let fp = scale * self.factor(self.dist_ap[i]);
            let fn_ = scale * self.factor(self.dist_an[i]);
            let r = i * dim..(i + 1) * dim;
            let (ap, an) = (&self.ap[r.clone()], &self.an[r.clone()]);
            for j in 0..dim {
                // loss = d(a - p) - d(a - n): anchor gets both, p and n the opposite signs.
                let (gp, gn) = (fp * ap[j], fn_ * an[j]);
                if down[0] {
                    bottom[0].diff[r.start + j] += gp - gn;
                }
                if down[1] {
                    bottom[1].diff[r.start + j] -= gp;
                }
                if down[2] {
                    bottom[2].diff[r.start + j] += gn;
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

    const A: [f32; 4] = [0.0, 0.0, 1.0, 1.0];
    const P: [f32; 4] = [0.5, 0.0, 1.0, 2.0];
    const N: [f32; 4] = [0.0, 2.0, 1.2, 1.0];

    fn harness(yaml: &str) -> Harness {
        let b = [A, P, N]
            .iter()
            .map(|v| Blob::from_data(&[2, 2], v.to_vec()).unwrap())
            .collect();
        Harness::new(yaml, b).unwrap()
    }

    #[test]
    fn squared_and_plain_hand_values_and_gradient() {
        // Triplet 0: d(a,p) = 0.25, d(a,n) = 4 -> max(0, 1 + 0.25 - 4) = 0.
        // Triplet 1: d(a,p) = 1, d(a,n) = 0.04 -> 1 + 1 - 0.04 = 1.96. Mean: 0.98.
        let mut h = harness("type: TripletLoss");
        h.forward().unwrap();
        assert_close(&h.top[0].data, &[0.98], 1e-6);
        h.top[0].diff = vec![1.0];
        h.backward(&[true, true, true]).unwrap();
        // Triplet 1 only: d/da = 2(a-p) - 2(a-n) = 2(0,-1) - 2(-0.2,0), halved by the mean.
        assert_close(&h.bottom[0].diff, &[0.0, 0.0, 0.2, -1.0], 1e-6);
        assert_close(&h.bottom[1].diff, &[0.0, 0.0, 0.0, 1.0], 1e-6);
        assert_close(&h.bottom[2].diff, &[0.0, 0.0, -0.2, 0.0], 1e-6);
        // Plain distances, margin 0.5: triplet 0: 0.5 + 0.5 - 2 < 0; triplet 1: 0.5 + 1 - 0.2.
        let mut h =
            harness("type: TripletLoss\ntriplet_loss_param: { margin: 0.5, squared: false }");
        h.forward().unwrap();
        assert_close(&h.top[0].data, &[0.65], 1e-6);
    }

    #[test]
    fn gradients_and_errors() {
        check_layer_from(
            "type: TripletLoss\ntriplet_loss_param: { margin: 2 }",
            &[&[5, 3], &[5, 3], &[5, 3]],
        );
        check_layer_from(
            "type: TripletLoss\ntriplet_loss_param: { margin: 1, squared: false }",
            &[&[5, 3], &[5, 3], &[5, 3]],
        );
        let bad = Harness::new(
            "type: TripletLoss",
            vec![Blob::new(&[2, 3]), Blob::new(&[2, 3]), Blob::new(&[3, 3])],
        );
        assert!(err_text(bad).contains("same shape"));
        let p = crate::testing::layer_param_from_yaml(
            "type: TripletLoss\ntriplet_loss_param: { margin: -1 }",
        )
        .unwrap();
        assert!(err_text(crate::layers::create(&p)).contains("margin"));
    }
}
