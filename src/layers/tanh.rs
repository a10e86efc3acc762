//! `TanH`: `y = tanh(x)`; runs in place (the derivative `1 - y^2` needs only `y`).

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `TanH` layer.
pub struct TanH;

/// Creates a `TanH` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    boxed(TanH)
}

impl Elementwise for TanH {
    const TYPE: &'static str = "TanH";
    fn f(&self, x: f32) -> f32 {
        x.tanh()
    }
    fn df(&self, _: f32, y: f32, dy: f32) -> f32 {
        dy * (1.0 - y * y)
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromOutput
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn tanh_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: TanH");
        let y = run_forward(&mut *l, &[(&[4], &[0.0, 1.0, -0.5, 30.0])]);
        assert_close(&y[0].data, &[0.0, 0.761_594, -0.462_117, 1.0], 1e-6);
        check_layer_from("type: TanH", &[&[2, 3, 4]]);
    }

    #[test]
    fn tanh_in_place_matches_out_of_place() {
        crate::testing::assert_inplace_matches("type: TanH", &[2, 3, 4]);
    }
}
