//! `Swish`: `y = x sigmoid(beta x)`. Not in place: the derivative needs `x`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::sigmoid::sigmoid;
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `Swish` layer.
pub struct Swish {
    beta: f32,
}

/// Creates a `Swish` from `swish_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let beta = p.swish_param.as_ref().map(|s| s.beta()).unwrap_or(1.0);
    boxed(Swish { beta })
}

impl Elementwise for Swish {
    const TYPE: &'static str = "Swish";
    fn f(&self, x: f32) -> f32 {
        x * sigmoid(self.beta * x)
    }
    fn df(&self, x: f32, _: f32, dy: f32) -> f32 {
        let b = self.beta;
        let s = sigmoid(b * x);
        dy * (s + b * x * s * (1.0 - s))
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromInput
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn swish_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Swish\nswish_param: { beta: 2 }");
        let y = run_forward(&mut *l, &[(&[3], &[0.0, 1.0, -1.0])]);
        assert_close(&y[0].data, &[0.0, 0.880_797, -0.119_203], 1e-6);
        check_layer_from("type: Swish", &[&[2, 3, 4]]);
        check_layer_from("type: Swish\nswish_param: { beta: 1.5 }", &[&[2, 3, 4]]);
    }

    #[test]
    fn swish_does_not_run_in_place() {
        // The derivative needs `x`.
        assert!(!crate::testing::layer_from_yaml("type: Swish").allows_inplace());
    }
}
