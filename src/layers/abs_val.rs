//! `AbsVal`: `y = |x|`. Not in place: the derivative `sign(x)` is lost in `y`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `AbsVal` layer.
pub struct AbsVal;

/// Creates an `AbsVal` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    boxed(AbsVal)
}

impl Elementwise for AbsVal {
    const TYPE: &'static str = "AbsVal";
    fn f(&self, x: f32) -> f32 {
        x.abs()
    }
    /// Caffe's sign: 0 at 0.
    fn df(&self, x: f32, _: f32, dy: f32) -> f32 {
        if x > 0.0 {
            dy
        } else if x < 0.0 {
            -dy
        } else {
            0.0
        }
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromInput
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.011))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn abs_val_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: AbsVal");
        let y = run_forward(&mut *l, &[(&[4], &[-2.5, 0.0, 3.0, -0.0])]);
        assert_eq!(y[0].data, vec![2.5, 0.0, 3.0, 0.0]);
        check_layer_from("type: AbsVal", &[&[2, 3, 4]]);
    }

    #[test]
    fn abs_val_does_not_run_in_place() {
        // The derivative needs the sign of `x`.
        assert!(!crate::testing::layer_from_yaml("type: AbsVal").allows_inplace());
    }
}
