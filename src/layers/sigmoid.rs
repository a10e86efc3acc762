//! `Sigmoid`: `y = 1 / (1 + e^-x)`; runs in place (the derivative `y (1 - y)` needs only `y`).

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

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
    boxed(Sigmoid)
}

impl Elementwise for Sigmoid {
    const TYPE: &'static str = "Sigmoid";
    fn f(&self, x: f32) -> f32 {
        sigmoid(x)
    }
    fn df(&self, _: f32, y: f32, dy: f32) -> f32 {
        dy * y * (1.0 - y)
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromOutput
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
