//! `Power`: `y = (shift + scale x)^power`. Not in place: the derivative needs `x`.

use super::neuron::{boxed, Derivative, Elementwise};
use super::Layer;
use crate::proto::LayerParameter;
use crate::Result;

/// `Power` layer.
pub struct Power {
    power: f32,
    scale: f32,
    shift: f32,
}

/// Creates a `Power` from `power_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let pp = p.power_param.unwrap_or_default();
    boxed(Power {
        power: pp.power(),
        scale: pp.scale(),
        shift: pp.shift(),
    })
}

impl Elementwise for Power {
    const TYPE: &'static str = "Power";
    fn f(&self, x: f32) -> f32 {
        let (p, a, b) = (self.power, self.scale, self.shift);
        if p == 1.0 {
            b + a * x
        } else {
            (b + a * x).powf(p)
        }
    }
    fn df(&self, x: f32, _: f32, dy: f32) -> f32 {
        let (p, a, b) = (self.power, self.scale, self.shift);
        if p == 1.0 {
            dy * a
        } else if p == 2.0 {
            dy * 2.0 * a * (b + a * x)
        } else {
            dy * p * a * (b + a * x).powf(p - 1.0)
        }
    }
    /// A constant output (`power: 0` or `scale: 0`) has no gradient to add.
    fn derivative(&self) -> Derivative {
        if self.power == 0.0 || self.scale == 0.0 {
            Derivative::Zero
        } else {
            Derivative::FromInput
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn power_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: Power\npower_param: { power: 2, scale: 3, shift: 1 }");
        let y = run_forward(&mut *l, &[(&[3], &[0.0, 1.0, -1.0])]);
        assert_close(&y[0].data, &[1.0, 16.0, 4.0], 1e-6);
        let mut l = layer_from_yaml("type: Power\npower_param: { power: 0.5, shift: 4 }");
        let y = run_forward(&mut *l, &[(&[2], &[0.0, 5.0])]);
        assert_close(&y[0].data, &[2.0, 3.0], 1e-6);
        check_layer_from(
            "type: Power\npower_param: { power: 2, scale: 0.5, shift: 1 }",
            &[&[2, 3, 4]],
        );
        check_layer_from(
            "type: Power\npower_param: { power: 0.5, scale: 0.5, shift: 5 }",
            &[&[2, 3, 4]],
        );
        check_layer_from(
            "type: Power\npower_param: { power: 3, scale: -0.7, shift: 0.2 }",
            &[&[2, 3, 4]],
        );
        check_layer_from(
            "type: Power\npower_param: { scale: 2.5, shift: 1 }",
            &[&[4, 3]],
        );
    }

    #[test]
    fn power_does_not_run_in_place_and_a_constant_has_no_gradient() {
        // The derivative needs `x`; a constant output adds no gradient.
        for p in ["power: 2", "power: 0", "scale: 0"] {
            let yaml = format!("type: Power\npower_param: {{ {p}, shift: 2 }}");
            assert!(!crate::testing::layer_from_yaml(&yaml).allows_inplace());
            check_layer_from(&yaml, &[&[3, 4]]);
        }
    }
}
