//! `TanH`: `y = tanh(x)`; runs in place (the derivative `1 - y^2` needs only `y`).

use super::{BlobCounts, Inplace, Layer};
use crate::proto::LayerParameter;
use crate::{Blob, Result};

/// `TanH` layer.
pub struct TanH;

/// Creates a `TanH` (no parameters).
pub fn create(_: &LayerParameter) -> Result<Box<dyn Layer>> {
    Ok(Box::new(TanH))
}

impl Layer for TanH {
    fn type_name(&self) -> &'static str {
        "TanH"
    }
    fn blob_counts(&self) -> BlobCounts {
        BlobCounts::exact(1, 1)
    }
    fn allows_inplace(&self) -> bool {
        true
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
        Inplace::map(bottom, top, f32::tanh);
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
            Inplace::backward(top, bottom, |_, y, dy| dy * (1.0 - y * y));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_close, check_layer_from, layer_from_yaml, run_forward};

    #[test]
    fn tanh_forward_hand_values_and_gradient() {
        let mut l = layer_from_yaml("type: TanH");
        let y = run_forward(&mut *l, &[(&[4], &[0.0, 1.0, -0.5, 30.0])]);
        assert_close(&y[0].data, &[0.0, 0.761_594, -0.462_117, 1.0], 1e-6);
        check_layer_from("type: TanH", &[&[2, 3, 4]]);
    }

    #[test]
    fn tanh_in_place_matches_out_of_place() {
        crate::testing::assert_inplace_matches("type: TanH", &[2, 3, 4]);
    }
}
