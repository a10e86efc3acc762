//! `Power`: `y = (shift + scale x)^power`. Not in place: the derivative needs `x`.

use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `Power` layer.
pub struct Power {
    power: f32,
    scale: f32,
    shift: f32,
}

/// Creates a `Power` from `power_param`.
pub fn create(p: &LayerParameter) -> Result<Box<dyn Layer>> {
    let pp = p.power_param.unwrap_or_default();
    Ok(Box::new(Power {
        power: pp.power(),
        scale: pp.scale(),
        shift: pp.shift(),
    }))
}

impl Layer for Power {
    fn type_name(&self) -> &'static str {
        "Power"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> Result<()> {
        Inplace::reshape(bottom, top);
        Ok(())
    }
    fn forward(
        &mut self,
        bottom: &[&Blob],
        top: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        let (p, a, b) = (self.power, self.scale, self.shift);
        if p == 1.0 {
            Inplace::map(bottom, top, |x| b + a * x);
        } else {
            Inplace::map(bottom, top, |x| (b + a * x).powf(p));
        }
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if !down[0] {
            return Ok(());
        }
        let (p, a, b) = (self.power, self.scale, self.shift);
        if p == 0.0 || a == 0.0 {
            // Constant output: nothing to add.
        } else if p == 1.0 {
            Inplace::backward(top, bottom, |_, _, dy| dy * a);
        } else if p == 2.0 {
            Inplace::backward(top, bottom, |x, _, dy| dy * 2.0 * a * (b + a * x));
        } else {
            Inplace::backward(top, bottom, |x, _, dy| {
                dy * p * a * (b + a * x).powf(p - 1.0)
            });
        }
        Ok(())
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
}
