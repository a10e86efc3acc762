//! `AbsVal`: `y = |x|`. Not in place: the derivative `sign(x)` is lost in `y`.

use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `AbsVal` layer.
pub struct AbsVal;

/// Creates an `AbsVal` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(AbsVal))
}

impl Layer for AbsVal {
    fn type_name(&self) -> &'static str {
        "AbsVal"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn kink(&self) -> Option<(f32, f32)> {
        Some((0.0, 0.011))
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
        Inplace::map(bottom, top, f32::abs);
        Ok(())
    }
    fn backward(
        &mut self,
        top: &[&Blob],
        down: &[bool],
        bottom: &mut [&mut Blob],
        _: &mut [&mut Blob],
    ) -> Result<()> {
        if down[0] {
            // Caffe's sign: 0 at 0.
            Inplace::backward(top, bottom, |x, _, dy| {
                if x > 0.0 {
                    dy
                } else if x < 0.0 {
                    -dy
                } else {
                    0.0
                }
            });
        }
        Ok(())
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
}
