//! `ReLU`: `y = max(0, x) + negative_slope * min(0, x)`. Runs in place like Caffe (whose backward
//! then reads the top): for `negative_slope >= 0`, `y > 0` exactly when `x > 0`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::{Layer, TopUse};
use crate::proto::LayerParameter;
use crate::Result;

/// `ReLU` function.
pub struct ReLU {
    slope: f32,
}

/// Creates a `ReLU` from `relu_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let slope = p
        .relu_param
        .as_ref()
        .map(|r| r.negative_slope())
        .unwrap_or(0.0);
    boxed(ReLU { slope })
}

impl Elementwise for ReLU {
    const TYPE: &'static str = "ReLU";
    fn f(&self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.slope * x
        }
    }
    fn df(&self, x: f32, _: f32, dy: f32) -> f32 {
        if x > 0.0 {
            dy
        } else {
            self.slope * dy
        }
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromBoth { in_place: true }
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.01))
    }
    fn top_use(&self) -> TopUse {
        if self.slope >= 0.0 {
            TopUse::Sign
        } else {
            TopUse::Values
        }
    }
    fn keeps_sign(&self) -> bool {
        self.slope >= 0.0
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
