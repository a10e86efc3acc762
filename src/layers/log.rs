//! `Log`: `y = log_base(shift + scale x)` (`base: -1` means e). Not in place: the derivative
//! needs `x`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `Log` layer.
pub struct Log {
    inv_ln_base: f32,
    scale: f32,
    shift: f32,
}

/// Creates a `Log` from `log_param`; the base must be positive (and not 1) or -1.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let lp = p.log_param.unwrap_or_default();
    let base = lp.base();
    crate::ensure!(
        base == -1.0 || (base > 0.0 && base != 1.0),
        "log_param.base must be positive and not 1, or -1 (meaning e), got {base}"
    );
    let ln_base = if base == -1.0 { 1.0 } else { base.ln() };
    boxed(Log {
        inv_ln_base: 1.0 / ln_base,
        scale: lp.scale(),
        shift: lp.shift(),
    })
}

impl Elementwise for Log {
    const TYPE: &'static str = "Log";
    fn f(&self, x: f32) -> f32 {
        (self.shift + self.scale * x).ln() * self.inv_ln_base
    }
    fn df(&self, x: f32, _: f32, dy: f32) -> f32 {
        let (k, a, b) = (self.inv_ln_base, self.scale, self.shift);
        dy * a * k / (b + a * x)
    }
    fn derivative(&self) -> Derivative {
        Derivative::FromInput
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn log_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Log");
        let y = run_forward(&mut *l, &[(&[3], &[1.0, std::f32::consts::E, 0.5])]);
        assert_close(&y[0].data, &[0.0, 1.0, -std::f32::consts::LN_2], 1e-6);
        let mut l = layer_from_yaml("type: Log\nlog_param: { base: 2, scale: 2, shift: 4 }");
        let y = run_forward(&mut *l, &[(&[2], &[0.0, 2.0])]);
        assert_close(&y[0].data, &[2.0, 3.0], 1e-6);
        check_layer_from("type: Log\nlog_param: { shift: 5 }", &[&[2, 3, 4]]);
        check_layer_from(
            "type: Log\nlog_param: { base: 10, scale: 0.5, shift: 4 }",
            &[&[2, 3, 4]],
        );
    }

    #[test]
    fn log_does_not_run_in_place() {
        // The derivative needs `x`.
        assert!(!crate::testing::layer_from_yaml("type: Log").allows_inplace());
    }
}
