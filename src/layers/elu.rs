//! `ELU`: `y = x` for `x > 0`, else `alpha (e^x - 1)`. Runs in place when `alpha >= 0` (then
//! `y > 0` exactly when `x > 0`, and the derivative `alpha e^x = y + alpha` needs only `y`).

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `ELU` layer.
pub struct Elu {
    alpha: f32,
}

/// Creates an `ELU` from `elu_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let alpha = p.elu_param.as_ref().map(|e| e.alpha()).unwrap_or(1.0);
    boxed(Elu { alpha })
}

impl Elementwise for Elu {
    const TYPE: &'static str = "ELU";
    fn f(&self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.alpha * x.exp_m1()
        }
    }
    fn df(&self, x: f32, y: f32, dy: f32) -> f32 {
        if x > 0.0 {
            dy
        } else {
            dy * (y + self.alpha)
        }
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromBoth {
            in_place: self.alpha >= 0.0,
        }
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.011))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn elu_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: ELU\nelu_param: { alpha: 0.5 }");
        let y = run_forward(&mut *l, &[(&[4], &[2.0, 0.0, -1.0, -10.0])]);
        assert_close(&y[0].data, &[2.0, 0.0, -0.316_060, -0.499_977], 1e-6);
        check_layer_from("type: ELU\nelu_param: { alpha: 0.5 }", &[&[2, 3, 4]]);
        check_layer_from("type: ELU", &[&[3, 5]]);
        assert!(!layer_from_yaml("type: ELU\nelu_param: { alpha: -1 }").allows_inplace());
    }

    #[test]
    fn elu_in_place_matches_out_of_place() {
        crate::testing::assert_inplace_matches("type: ELU\nelu_param: { alpha: 0.5 }", &[2, 3, 4]);
    }
}
