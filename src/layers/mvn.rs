//! `MVN`: subtracts the mean (and divides by `sqrt(var) + eps` with `normalize_variance`) over
//! each (item, channel), or over each item with `across_channels`.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `MVN` layer.
pub struct Mvn {
    normalize_variance: bool,
    across_channels: bool,
    eps: f32,
    /// `sqrt(var)` per group from the last forward.
    sigma: Vec<f32>,
}

/// Creates `MVN` from `mvn_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let m = p.mvn_param.unwrap_or_default();
    Ok(Box::new(Mvn {
        normalize_variance: m.normalize_variance(),
        across_channels: m.across_channels(),
        eps: m.eps(),
        sigma: Vec::new(),
    }))
}

impl Mvn {
    /// `(groups, group size)`.
    fn groups(&self, b: &Blob) -> (usize, usize) {
        let g = if self.across_channels {
            b.legacy_dim(0)
        } else {
            b.legacy_dim(0) * b.legacy_dim(1)
        };
        (g, b.count() / g.max(1))
    }
}

impl Layer for Mvn {
    fn backward_reads_top(&self) -> super::TopUse {
        super::TopUse::Values
    }
    fn type_name(&self) -> &'static str {
        "MVN"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        top[0].reshape(&bottom[0].shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (ng, dim) = self.groups(bottom[0]);
        let (x, y) = (&bottom[0].data, &mut top[0].data);
        self.sigma = vec![0.0; ng];
        for g in 0..ng {
            let r = g * dim..(g + 1) * dim;
            let mean = x[r.clone()].iter().map(|&v| v as f64).sum::<f64>() / dim.max(1) as f64;
            for i in r.clone() {
                y[i] = (x[i] as f64 - mean) as f32;
            }
            if self.normalize_variance {
                let var =
                    y[r.clone()].iter().map(|&v| (v * v) as f64).sum::<f64>() / dim.max(1) as f64;
                let sigma = var.sqrt() as f32;
                self.sigma[g] = sigma;
                let d = sigma + self.eps;
                y[r].iter_mut().for_each(|v| *v /= d);
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
        let (ng, dim) = self.groups(bottom[0]);
        let (y, dy) = (&top[0].data, &top[0].diff);
        let dx = &mut bottom[0].diff;
        let n = dim.max(1) as f32;
        for g in 0..ng {
            let r = g * dim..(g + 1) * dim;
            let mdy = dy[r.clone()].iter().sum::<f32>() / n;
            if !self.normalize_variance {
                for i in r {
                    dx[i] += dy[i] - mdy;
                }
                continue;
            }
            // y = c / d with c = x - mean, d = sigma + eps, sigma = sqrt(mean(c^2)); exactly:
            // dx = (dy - mean(dy) - y * mean(dy * y) * d / sigma) / d.
            let sigma = self.sigma[g];
            let d = sigma + self.eps;
            let mdyy = r.clone().map(|i| dy[i] * y[i]).sum::<f32>() / n;
            let k = if sigma > 0.0 { d / sigma } else { 0.0 };
            for i in r {
                dx[i] += (dy[i] - mdy - y[i] * mdyy * k) / d;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    fn naive(x: &[f32], groups: usize, var: bool, eps: f32) -> Vec<f32> {
        let dim = x.len() / groups;
        let mut out = Vec::new();
        for g in 0..groups {
            let s = &x[g * dim..(g + 1) * dim];
            let m: f32 = s.iter().sum::<f32>() / dim as f32;
            let v: f32 = s.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / dim as f32;
            for a in s {
                out.push(if var {
                    (a - m) / (v.sqrt() + eps)
                } else {
                    a - m
                });
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive() {
        let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 - 3.0).collect();
        let mut l = layer_from_yaml("type: MVN");
        let y = run_forward(&mut *l, &[(&[2, 3, 2, 2], &x)]);
        assert_close(&y[0].data, &naive(&x, 6, true, 1e-9), 1e-5);
        let mut l = layer_from_yaml("type: MVN\nmvn_param: { across_channels: true, eps: 0.1 }");
        let y = run_forward(&mut *l, &[(&[2, 3, 2, 2], &x)]);
        assert_close(&y[0].data, &naive(&x, 2, true, 0.1), 1e-5);
        let mut l = layer_from_yaml("type: MVN\nmvn_param: { normalize_variance: false }");
        let y = run_forward(&mut *l, &[(&[2, 3, 2, 2], &x)]);
        assert_close(&y[0].data, &naive(&x, 6, false, 0.0), 1e-5);
        // hand values: [1, 3] -> mean 2, std 1 -> [-1, 1]
        let mut l = layer_from_yaml("type: MVN");
        let y = run_forward(&mut *l, &[(&[1, 1, 2], &[1.0, 3.0])]);
        assert_close(&y[0].data, &[-1.0, 1.0], 1e-6);
    }

    #[test]
    fn gradients() {
        // Groups of a few values make the function strongly curved at step 1e-2; use 20.
        check_layer_from("type: MVN", &[&[2, 3, 4, 5]]);
        check_layer_from(
            "type: MVN\nmvn_param: { across_channels: true, eps: 0.01 }",
            &[&[2, 3, 2, 2]],
        );
        check_layer_from(
            "type: MVN\nmvn_param: { normalize_variance: false }",
            &[&[2, 3, 4]],
        );
    }
}
