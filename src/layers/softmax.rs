//! `Softmax` over one axis (max-subtracted for stability).

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Softmax` layer.
pub struct Softmax {
    axis: i32,
}

/// Creates `Softmax` from `softmax_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Softmax {
        axis: p.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1),
    }))
}

/// `(outer, channels, inner)` of a softmax over `axis` of `shape`.
pub fn split_axis(b: &Blob, axis: i32) -> Result<(usize, usize, usize)> {
    let a = b.canonical_axis(axis)?;
    Ok((b.count_range(0, a), b.shape[a], b.count_from(a + 1)))
}

/// Softmax of `x` into `y` over the middle dimension of `(outer, c, inner)`.
pub fn softmax(x: &[f32], y: &mut [f32], outer: usize, c: usize, inner: usize) {
    for o in 0..outer {
        let base = o * c * inner;
        for i in 0..inner {
            let at = |j: usize| base + j * inner + i;
            let mut mx = f32::NEG_INFINITY;
            for j in 0..c {
                mx = mx.max(x[at(j)]);
            }
            let mut sum = 0.0;
            for j in 0..c {
                let e = (x[at(j)] - mx).exp();
                y[at(j)] = e;
                sum += e;
            }
            for j in 0..c {
                y[at(j)] /= sum;
            }
        }
    }
}

impl Layer for Softmax {
    fn backward_reads_top(&self) -> super::TopUse {
        super::TopUse::Values
    }
    fn type_name(&self) -> &'static str {
        "Softmax"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        bottom[0].canonical_axis(self.axis)?;
        top[0].reshape(&bottom[0].shape);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (o, c, i) = split_axis(bottom[0], self.axis)?;
        softmax(&bottom[0].data, &mut top[0].data, o, c, i);
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
        let (outer, c, inner) = split_axis(top[0], self.axis)?;
        let (y, dy) = (&top[0].data, &top[0].diff);
        let dx = &mut bottom[0].diff;
        for o in 0..outer {
            let base = o * c * inner;
            for i in 0..inner {
                let at = |j: usize| base + j * inner + i;
                let dot: f32 = (0..c).map(|j| y[at(j)] * dy[at(j)]).sum();
                for j in 0..c {
                    dx[at(j)] += y[at(j)] * (dy[at(j)] - dot);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn forward_hand_values() {
        let mut l = layer_from_yaml("type: Softmax");
        let t = run_forward(&mut *l, &[(&[2, 3], &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0])]);
        let e = [1f32.exp(), 2f32.exp(), 3f32.exp()];
        let s: f32 = e.iter().sum();
        assert_close(
            &t[0].data,
            &[e[0] / s, e[1] / s, e[2] / s, 1. / 3., 1. / 3., 1. / 3.],
            1e-6,
        );
        // axis 2 over a 1x2x2 blob: pairs along the last axis.
        let mut l = layer_from_yaml("type: Softmax\nsoftmax_param: { axis: -1 }");
        let t = run_forward(&mut *l, &[(&[1, 2, 2], &[0.0, 0.0, 1000.0, 0.0])]);
        assert_close(&t[0].data, &[0.5, 0.5, 1.0, 0.0], 1e-6);
    }

    #[test]
    fn gradients() {
        check_layer_from("type: Softmax", &[&[2, 4, 2, 3]]);
        check_layer_from("type: Softmax\nsoftmax_param: { axis: 2 }", &[&[2, 3, 4]]);
    }
}
