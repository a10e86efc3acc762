//! `Sigmoid`: `y = 1 / (1 + e^-x)`; runs in place (the derivative `y (1 - y)` needs only `y`).

use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// The logistic function, written so that neither branch overflows.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `Sigmoid` layer.
pub struct Sigmoid;

/// Creates a `Sigmoid` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(Sigmoid))
}

impl Layer for Sigmoid {
    fn type_name(&self) -> &'static str {
        "Sigmoid"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        true
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
        Inplace::map(bottom, top, sigmoid);
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
            Inplace::backward(top, bottom, |_, y, dy| dy * y * (1.0 - y));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn sigmoid_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Sigmoid");
        let y = run_forward(&mut *l, &[(&[4], &[0.0, 2.0, -2.0, -100.0])]);
        assert_close(&y[0].data, &[0.5, 0.880_797, 0.119_203, 0.0], 1e-6);
        check_layer_from("type: Sigmoid", &[&[2, 3, 4]]);
    }

    #[test]
    fn sigmoid_in_place_matches_out_of_place() {
        crate::testing::assert_inplace_matches("type: Sigmoid", &[2, 3, 4]);
    }
}
