//! `Threshold`: `y = 1` if `x > threshold`, else 0. Its derivative is zero wherever it exists,
//! so backward adds nothing (Caffe has no backward for it). Not in place: leaving the diff alone
//! in place would pass `dy` through as if it were `dx`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `Threshold` layer.
pub struct Threshold {
    threshold: f32,
}

/// Creates a `Threshold` from `threshold_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let threshold = p
        .threshold_param
        .as_ref()
        .map(|t| t.threshold())
        .unwrap_or(0.0);
    boxed(Threshold { threshold })
}

impl Elementwise for Threshold {
    const TYPE: &'static str = "Threshold";
    fn f(&self, x: f32) -> f32 {
        if x > self.threshold {
            1.0
        } else {
            0.0
        }
    }
    fn df(&self, _: f32, _: f32, _: f32) -> f32 {
        0.0
    }
    fn derivative(&self) -> Derivative {
        Derivative::Zero
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((self.threshold, 0.011))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn threshold_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Threshold\nthreshold_param: { threshold: 0.5 }");
        let y = run_forward(&mut *l, &[(&[4], &[0.5, 0.6, -1.0, 2.0])]);
        assert_eq!(y[0].data, vec![0.0, 1.0, 0.0, 1.0]);
        check_layer_from(
            "type: Threshold\nthreshold_param: { threshold: 0.3 }",
            &[&[2, 3, 4]],
        );
    }

    #[test]
    fn threshold_does_not_run_in_place() {
        // Leaving the diff alone would pass `dy` on.
        assert!(!crate::testing::layer_from_yaml("type: Threshold").allows_inplace());
    }
}
