//! Element-wise ("neuron") layers and the [`Inplace`] helper that lets them run in place.

use super::{BlobCounts, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};
use rayon::prelude::*;

/// Below this many elements, element-wise loops stay on one thread.
pub const PAR_MIN: usize = 1 << 15;

/// Helpers for layers with one bottom and one top of the same shape that may share a blob.
pub struct Inplace;

impl Inplace {
    /// Shapes `top[0]` like `bottom[0]` (nothing to do in place).
    pub fn reshape(bottom: &[&Blob], top: &mut [&mut Blob]) {
        if let Some(b) = bottom.first() {
            top[0].reshape(&b.shape);
        }
    }

    /// The input values: `bottom[0].data`, or `top[0].data` in place (before it is overwritten).
    pub fn input<'a>(bottom: &'a [&Blob], top: &'a [&mut Blob]) -> &'a [f32] {
        match bottom.first() {
            Some(b) => &b.data,
            None => &top[0].data,
        }
    }

    /// `y = f(x)` element-wise, in place or not.
    pub fn map(bottom: &[&Blob], top: &mut [&mut Blob], f: impl Fn(f32) -> f32 + Sync) {
        match bottom.first() {
            Some(b) => {
                let (x, y) = (&b.data, &mut top[0].data);
                if x.len() >= PAR_MIN {
                    y.par_iter_mut()
                        .zip(x.par_iter())
                        .for_each(|(y, &x)| *y = f(x));
                } else {
                    y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x));
                }
            }
            None => {
                let y = &mut top[0].data;
                if y.len() >= PAR_MIN {
                    y.par_iter_mut().for_each(|v| *v = f(*v));
                } else {
                    y.iter_mut().for_each(|v| *v = f(*v));
                }
            }
        }
    }

    /// Backward of an element-wise layer: `dx += g(x, y, dy)`, or in place `d := g(y, y, d)`.
    /// Layers that allow in place must give the same answer when `x` is replaced by `y`.
    pub fn backward(
        top: &[&Blob],
        bottom: &mut [&mut Blob],
        g: impl Fn(f32, f32, f32) -> f32 + Sync,
    ) {
        match top.first() {
            Some(t) => {
                let b = &mut *bottom[0];
                let (x, dx) = (&b.data, &mut b.diff);
                let (y, dy) = (&t.data, &t.diff);
                if x.len() >= PAR_MIN {
                    dx.par_iter_mut()
                        .zip(x.par_iter().zip(y.par_iter().zip(dy.par_iter())))
                        .for_each(|(dx, (&x, (&y, &dy)))| *dx += g(x, y, dy));
                } else {
                    for i in 0..x.len() {
                        dx[i] += g(x[i], y[i], dy[i]);
                    }
                }
            }
            None => {
                let b = &mut *bottom[0];
                let (y, d) = (&b.data, &mut b.diff);
                if y.len() >= PAR_MIN {
                    d.par_iter_mut()
                        .zip(y.par_iter())
                        .for_each(|(d, &y)| *d = g(y, y, *d));
                } else {
                    d.iter_mut().zip(y).for_each(|(d, &y)| *d = g(y, y, *d));
                }
            }
        }
    }
}

/// `ReLU`: `max(0, x) + negative_slope * min(0, x)`.
pub struct ReLU {
    slope: f32,
}

/// Creates a `ReLU` from `relu_param`.
pub fn create_relu(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let slope = p
        .relu_param
        .as_ref()
        .map(|r| r.negative_slope())
        .unwrap_or(0.0);
    Ok(Box::new(ReLU { slope }))
}

impl Layer for ReLU {
    fn type_name(&self) -> &'static str {
        "ReLU"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        true
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.01))
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let s = self.slope;
        Inplace::map(bottom, top, |x| if x > 0.0 { x } else { s * x });
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if down[0] {
            let s = self.slope;
            Inplace::backward(top, bottom, |x, _, dy| if x > 0.0 { dy } else { s * dy });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn relu_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: ReLU\nrelu_param: { negative_slope: 0.1 }");
        let y = run_forward(&mut *l, &[(&[4], &[-2.0, -0.5, 0.0, 3.0])]);
        assert_eq!(y[0].data, vec![-0.2, -0.05, 0.0, 3.0]);
        check_layer_from(
            "type: ReLU\nrelu_param: { negative_slope: 0.1 }",
            &[&[2, 3, 4]],
        );
        check_layer_from("type: ReLU", &[&[3, 5]]);
    }
}
