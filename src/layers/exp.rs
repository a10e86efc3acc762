//! `Exp`: `y = base^(shift + scale x)` (`base: -1` means e). Runs in place: the derivative
//! `ln(base) scale y` needs only `y`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `Exp` layer, stored as `y = outer e^(inner x)`.
pub struct Exp {
    inner: f32,
    outer: f32,
}

/// Creates an `Exp` from `exp_param`; the base must be positive or -1.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let ep = p.exp_param.unwrap_or_default();
    let base = ep.base();
    crate::ensure!(
        base == -1.0 || base > 0.0,
        "exp_param.base must be positive or -1 (meaning e), got {base}"
    );
    let ln_base = if base == -1.0 { 1.0 } else { base.ln() };
    boxed(Exp {
        inner: ln_base * ep.scale(),
        outer: (ln_base * ep.shift()).exp(),
    })
}

impl Elementwise for Exp {
    const TYPE: &'static str = "Exp";
    fn f(&self, x: f32) -> f32 {
        self.outer * (self.inner * x).exp()
    }
    fn df(&self, _: f32, y: f32, dy: f32) -> f32 {
        dy * y * self.inner
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromOutput
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, err_text, layer_from_yaml, run_forward};

    #[test]
    fn exp_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Exp");
        let y = run_forward(&mut *l, &[(&[3], &[0.0, 1.0, -1.0])]);
        assert_close(&y[0].data, &[1.0, std::f32::consts::E, 0.367_879], 1e-6);
        let mut l = layer_from_yaml("type: Exp\nexp_param: { base: 2, scale: 3, shift: 1 }");
        let y = run_forward(&mut *l, &[(&[2], &[0.0, 1.0])]);
        assert_close(&y[0].data, &[2.0, 16.0], 1e-5);
        check_layer_from("type: Exp", &[&[2, 3, 4]]);
        check_layer_from(
            "type: Exp\nexp_param: { base: 2, scale: 0.5, shift: -1 }",
            &[&[2, 3, 4]],
        );
        let p =
            crate::testing::layer_param_from_yaml("type: Exp\nexp_param: { base: -2 }").unwrap();
        assert!(err_text(super::create(&p)).contains("base"));
    }

    #[test]
    fn exp_in_place_matches_out_of_place() {
        crate::testing::assert_inplace_matches(
            "type: Exp\nexp_param: { base: 2, scale: 0.5 }",
            &[2, 3, 4],
        );
    }
}
