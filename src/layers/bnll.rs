//! `BNLL` (binomial normal log-likelihood, softplus): `y = ln(1 + e^x)`, computed without
//! overflow. Runs in place: the derivative `sigmoid(x) = 1 - e^-y` needs only `y`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `BNLL` layer.
pub struct Bnll;

/// Creates a `BNLL` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    boxed(Bnll)
}

/// `ln(1 + e^x)` for any `x`.
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

impl Elementwise for Bnll {
    const TYPE: &'static str = "BNLL";
    fn f(&self, x: f32) -> f32 {
        softplus(x)
    }
    /// `e^y = 1 + e^x`, so `sigmoid(x) = 1 - e^-y = -expm1(-y)` (accurate for small `y`).
    fn df(&self, _: f32, y: f32, dy: f32) -> f32 {
        -dy * (-y).exp_m1()
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromOutput
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn bnll_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: BNLL");
        let y = run_forward(&mut *l, &[(&[4], &[0.0, 1.0, -1.0, 100.0])]);
        assert_close(
            &y[0].data,
            &[std::f32::consts::LN_2, 1.313_262, 0.313_262, 100.0],
            1e-5,
        );
        check_layer_from("type: BNLL", &[&[2, 3, 4]]);
    }

    #[test]
    fn bnll_in_place_matches_out_of_place() {
        crate::testing::assert_inplace_matches("type: BNLL", &[2, 3, 4]);
    }
}
